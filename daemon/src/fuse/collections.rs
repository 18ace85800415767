//! The collection part of the FUSE door: the ioctls of `client/include/vexfs.h` on a collection
//! directory, and the collection's parameters as read-only extended attributes. Each request
//! becomes one call to the vector service.

use vexfs_format::collection::{CollectionRecord, Metric, TextParams};
use vexfs_format::ioctl::{self, Create, Delete, Insert, Search, SearchResult, Stats};
use zerocopy::{FromBytes, FromZeros, IntoBytes};

use crate::engine::EngineError;
use crate::storage::Storage;
use crate::vector::search::filter::Filter;
use crate::vector::{CollectionSpec, VectorError, Vectors};

/// The prefix of the read-only parameter xattrs.
pub const XATTR_PREFIX: &[u8] = b"user.vexfs.";

/// Default chunking of text collections: about a paragraph or two of prose, or a function.
pub const CHUNK_BYTES_DEFAULT: u32 = 1000;
pub const CHUNK_OVERLAP_DEFAULT: u32 = 100;
/// The built-in embedder a text collection gets when none is named.
pub const EMBEDDER_DEFAULT: &str = "builtin:all-minilm-l6-v2";

/// An ioctl's outcome: the bytes to copy out, or an errno.
pub type IoctlResult = Result<Vec<u8>, i32>;

fn fail(error: VectorError) -> i32 {
    let caller_error = match &error {
        VectorError::Invalid(_) | VectorError::NotCollection(_) => true,
        VectorError::Engine(e) => !matches!(e, EngineError::Io(_) | EngineError::Corrupt(_) | EngineError::Failed),
        VectorError::Corrupt { .. } | VectorError::Closed => false,
    };
    if caller_error {
        tracing::info!(%error, "collection request refused");
    } else {
        tracing::error!(%error, "collection request failed");
    }
    error.errno()
}

fn invalid(message: String) -> i32 {
    fail(VectorError::Invalid(message))
}

fn parse<T: FromBytes>(data: &[u8]) -> Result<T, i32> {
    T::read_from_bytes(data).map_err(|_| invalid(format!("ioctl payload of {} bytes has the wrong size", data.len())))
}

fn floats(bytes: &[u8]) -> Vec<f32> {
    bytes.chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().expect("4 bytes"))).collect()
}

/// Answers a VexFS ioctl on directory `dir`; None when `cmd` is not one of ours.
pub fn ioctl<S: Storage>(vectors: &Vectors<S>, dir: u64, cmd: u32, data: &[u8]) -> Option<IoctlResult> {
    Some(match cmd {
        ioctl::IOC_CREATE => create(vectors, dir, data),
        ioctl::IOC_INSERT => insert(vectors, dir, data),
        ioctl::IOC_KNN => search(vectors, dir, data, false),
        ioctl::IOC_RANGE => search(vectors, dir, data, true),
        ioctl::IOC_STATS => stats(vectors, dir),
        ioctl::IOC_DELETE => delete(vectors, dir, data),
        ioctl::IOC_SYNC => vectors.sync(dir).map(|()| Vec::new()).map_err(fail),
        _ => return None,
    })
}

fn create<S: Storage>(vectors: &Vectors<S>, dir: u64, data: &[u8]) -> IoctlResult {
    let request: Create = parse(data)?;
    let metric = u8::try_from(request.metric)
        .ok()
        .and_then(Metric::from_u8)
        .ok_or_else(|| invalid(format!("unknown metric {}", request.metric)))?;
    if request.reserved != [0; 5] || request.flags & !ioctl::CREATE_TEXT != 0 {
        return Err(invalid("reserved fields or unknown flags are set".to_owned()));
    }
    let text = (request.flags & ioctl::CREATE_TEXT != 0)
        .then(|| -> Result<TextParams, i32> {
            let embedder = std::str::from_utf8(ioctl::c_str(&request.embedder))
                .map_err(|_| invalid("the embedder name is not UTF-8".to_owned()))?;
            Ok(TextParams {
                embedder: if embedder.is_empty() { EMBEDDER_DEFAULT.to_owned() } else { embedder.to_owned() },
                chunk_bytes: if request.chunk_bytes == 0 { CHUNK_BYTES_DEFAULT } else { request.chunk_bytes },
                chunk_overlap: if request.chunk_bytes == 0 && request.chunk_overlap == 0 {
                    CHUNK_OVERLAP_DEFAULT
                } else {
                    request.chunk_overlap
                },
            })
        })
        .transpose()?;
    let spec = CollectionSpec { dim: request.dim, metric, shards: request.shards, text };
    vectors.create(dir, &spec).map(|_| Vec::new()).map_err(fail)
}

fn insert<S: Storage>(vectors: &Vectors<S>, dir: u64, data: &[u8]) -> IoctlResult {
    let mut request: Insert = parse(data)?;
    if request.flags & !(ioctl::INSERT_IDS | ioctl::INSERT_SYNC) != 0 {
        return Err(invalid(format!("unknown insert flags {:#x}", request.flags)));
    }
    let record = record(vectors, dir)?;
    if request.dim != record.dim {
        return Err(invalid(format!(
            "vectors of dimension {} for a collection of dimension {}",
            request.dim, record.dim
        )));
    }
    let count = request.count as usize;
    let with_ids = request.flags & ioctl::INSERT_IDS != 0;
    let need = count * (record.dim as usize * 4 + if with_ids { 8 } else { 0 });
    if count == 0 || need > ioctl::PAYLOAD {
        return Err(invalid(format!(
            "{count} vectors of dimension {} do not fit one ioctl ({} bytes of payload); write larger batches to .vexfs-insert",
            record.dim,
            ioctl::PAYLOAD
        )));
    }
    let (ids, values) = if with_ids {
        let ids: Vec<u64> = request.payload[..count * 8]
            .chunks_exact(8)
            .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
            .collect();
        (Some(ids), floats(&request.payload[count * 8..need]))
    } else {
        (None, floats(&request.payload[..need]))
    };
    let assigned = vectors.insert(dir, ids.as_deref(), &values, Vec::new()).map_err(fail)?;
    if request.flags & ioctl::INSERT_SYNC != 0 {
        vectors.sync(dir).map_err(fail)?;
    }
    request.first_id = assigned.first().copied().unwrap_or(0);
    Ok(request.as_bytes().to_vec())
}

fn search<S: Storage>(vectors: &Vectors<S>, dir: u64, data: &[u8], range: bool) -> IoctlResult {
    let mut request: Search = parse(data)?;
    let record = record(vectors, dir)?;
    if request.dim != record.dim {
        return Err(invalid(format!(
            "queries of dimension {} for a collection of dimension {}",
            request.dim, record.dim
        )));
    }
    let (nq, k, dim) = (request.nq as usize, request.k as usize, record.dim as usize);
    if k == 0 {
        return Err(invalid("k = 0: ask for at least one result".to_owned()));
    }
    let filter_bytes = (request.filter_len as usize).next_multiple_of(8);
    let need_in = filter_bytes + nq * dim * 4;
    let need_out = (nq * 4).next_multiple_of(8) + nq * k * size_of::<SearchResult>();
    if nq == 0 || k == 0 || need_in > ioctl::PAYLOAD || need_out > ioctl::PAYLOAD {
        return Err(invalid(format!(
            "{nq} queries with k = {k} do not fit one ioctl ({} bytes of payload); use the query files",
            ioctl::PAYLOAD
        )));
    }
    let filter = if request.filter_len == 0 {
        None
    } else {
        let text = std::str::from_utf8(&request.payload[..request.filter_len as usize])
            .map_err(|_| invalid("the filter is not UTF-8".to_owned()))?;
        Some(Filter::parse(text).map_err(|e| invalid(e.to_string()))?)
    };
    let queries = floats(&request.payload[filter_bytes..need_in]);
    let results = if range {
        vectors.range(dir, &queries, request.radius, filter, k)
    } else {
        vectors.knn(dir, &queries, k, filter)
    }
    .map_err(fail)?;
    request.payload.fill(0);
    let (counts, rest) = request.payload.split_at_mut((nq * 4).next_multiple_of(8));
    for (i, found) in results.iter().enumerate() {
        counts[i * 4..i * 4 + 4].copy_from_slice(&(found.len() as u32).to_le_bytes());
        for (j, n) in found.iter().enumerate() {
            let at = (i * k + j) * size_of::<SearchResult>();
            let result = SearchResult { id: n.id, distance: n.distance, reserved: 0 };
            rest[at..at + size_of::<SearchResult>()].copy_from_slice(result.as_bytes());
        }
    }
    Ok(request.as_bytes().to_vec())
}

fn delete<S: Storage>(vectors: &Vectors<S>, dir: u64, data: &[u8]) -> IoctlResult {
    let mut request: Delete = parse(data)?;
    let count = request.count as usize;
    if count == 0 || count > ioctl::DELETE_IDS {
        return Err(invalid(format!("delete of {count} ids: 1..={} per ioctl", ioctl::DELETE_IDS)));
    }
    request.deleted = vectors.delete(dir, &request.ids[..count]).map_err(fail)?;
    if request.flags & ioctl::INSERT_SYNC != 0 {
        vectors.sync(dir).map_err(fail)?;
    }
    Ok(request.as_bytes().to_vec())
}

fn stats<S: Storage>(vectors: &Vectors<S>, dir: u64) -> IoctlResult {
    let s = vectors.stats(dir).map_err(fail)?;
    let mut out = Stats::new_zeroed();
    out.dim = s.dim;
    out.metric = s.metric as u32;
    out.elem = s.elem as u32;
    out.shards = s.shards;
    out.flags = if s.text.is_some() { ioctl::CREATE_TEXT } else { 0 };
    out.vectors = s.vectors;
    out.dead_rows = s.dead_rows;
    out.log_bytes = s.log_bytes;
    out.pending_bytes = s.pending_bytes;
    out.memory_bytes = s.memory_bytes;
    out.inserts = s.inserts;
    out.deletes = s.deletes;
    out.searches = s.searches;
    out.queries = s.queries;
    out.search_micros = s.search_micros;
    ioctl::set_c_str(&mut out.simd, s.simd);
    if let Some(text) = &s.text {
        ioctl::set_c_str(&mut out.embedder, &text.embedder);
    }
    Ok(out.as_bytes().to_vec())
}

fn record<S: Storage>(vectors: &Vectors<S>, dir: u64) -> Result<CollectionRecord, i32> {
    vectors.record(dir).map_err(fail)?.ok_or_else(|| fail(VectorError::NotCollection(dir)))
}

/// Extended attributes as (name, value) pairs.
pub type XattrList = Vec<(Vec<u8>, Vec<u8>)>;

/// The read-only parameter xattrs of a collection, name and value.
pub fn xattrs(record: &CollectionRecord) -> XattrList {
    let mut out = vec![
        (b"user.vexfs.dim".to_vec(), record.dim.to_string().into_bytes()),
        (b"user.vexfs.metric".to_vec(), record.metric.name().as_bytes().to_vec()),
        (b"user.vexfs.elem".to_vec(), record.elem.name().as_bytes().to_vec()),
        (b"user.vexfs.shards".to_vec(), record.shards.len().to_string().into_bytes()),
    ];
    if let Some(text) = &record.text {
        out.push((b"user.vexfs.embedder".to_vec(), text.embedder.as_bytes().to_vec()));
        out.push((b"user.vexfs.chunk_bytes".to_vec(), text.chunk_bytes.to_string().into_bytes()));
        out.push((b"user.vexfs.chunk_overlap".to_vec(), text.chunk_overlap.to_string().into_bytes()));
    }
    out
}
