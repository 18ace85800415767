//! The collection part of the FUSE door: the ioctls of `client/include/vexfs.h` on a collection
//! directory, and the collection's parameters as read-only extended attributes. Each request
//! becomes one call to the vector service.

use vexfs_format::collection::{CollectionRecord, Metric, TextParams};
use vexfs_format::ioctl::{self, Create, Delete, Insert, Search, SearchResult, Stats, TextHit, TextSearch};
use zerocopy::{FromBytes, FromZeros, IntoBytes};

use crate::engine::EngineError;
use crate::storage::Storage;
use crate::text::{NewCollection, Texts};
use crate::vector::search::filter::Filter;
use crate::vector::{VectorError, Vectors};

/// The prefix of the read-only parameter xattrs.
pub const XATTR_PREFIX: &[u8] = b"user.vexfs.";

/// Default chunking of text collections: about a paragraph or two of prose, or a function.
pub const CHUNK_BYTES_DEFAULT: u32 = 1000;
pub const CHUNK_OVERLAP_DEFAULT: u32 = 100;

/// An ioctl's outcome: the bytes to copy out, or an errno.
pub type IoctlResult = Result<Vec<u8>, i32>;

fn fail(error: VectorError) -> i32 {
    let caller_error = match &error {
        VectorError::Invalid(_) | VectorError::NotCollection(_) => true,
        VectorError::Engine(e) => !matches!(e, EngineError::Io(_) | EngineError::Corrupt(_) | EngineError::Failed),
        VectorError::Embed(e) => matches!(e, crate::embed::EmbedError::BadSpec { .. }),
        VectorError::Corrupt { .. } | VectorError::LogFailed { .. } | VectorError::Closed => false,
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
pub fn ioctl<S: Storage>(texts: &Texts<S>, dir: u64, cmd: u32, data: &[u8]) -> Option<IoctlResult> {
    let vectors = texts.vectors();
    Some(match cmd {
        ioctl::IOC_CREATE => create(texts, dir, data),
        ioctl::IOC_INSERT => insert(vectors, dir, data),
        ioctl::IOC_KNN => search(vectors, dir, data, false),
        ioctl::IOC_RANGE => search(vectors, dir, data, true),
        ioctl::IOC_STATS => stats(texts, dir),
        ioctl::IOC_SEARCH_TEXT => search_text(texts, dir, data),
        ioctl::IOC_DELETE => delete(vectors, dir, data),
        ioctl::IOC_SYNC => texts.sync(dir).map(|()| Vec::new()).map_err(fail),
        _ => return None,
    })
}

fn create<S: Storage>(texts: &Texts<S>, dir: u64, data: &[u8]) -> IoctlResult {
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
                // Empty: the daemon's default embedder (`vexfsd --embedder`).
                embedder: embedder.to_owned(),
                chunk_bytes: if request.chunk_bytes == 0 { CHUNK_BYTES_DEFAULT } else { request.chunk_bytes },
                chunk_overlap: if request.chunk_bytes == 0 && request.chunk_overlap == 0 {
                    CHUNK_OVERLAP_DEFAULT
                } else {
                    request.chunk_overlap
                },
            })
        })
        .transpose()?;
    let new = NewCollection { dim: request.dim, metric, shards: request.shards, text };
    texts.create(dir, &new).map(|_| Vec::new()).map_err(fail)
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
    let assigned = vectors.insert(dir, ids.as_deref(), values, Vec::new()).map_err(fail)?;
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
    // k comes from the caller: nq × k results can exceed usize.
    let results_bytes = nq.checked_mul(k).and_then(|n| n.checked_mul(size_of::<SearchResult>()));
    let need_out = results_bytes.map(|bytes| (nq * 4).next_multiple_of(8) + bytes);
    if nq == 0 || k == 0 || need_in > ioctl::PAYLOAD || need_out.is_none_or(|n| n > ioctl::PAYLOAD) {
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

fn search_text<S: Storage>(texts: &Texts<S>, dir: u64, data: &[u8]) -> IoctlResult {
    let mut request: TextSearch = parse(data)?;
    let k = request.k as usize;
    if k == 0 || k > ioctl::TEXT_K_MAX {
        return Err(invalid(format!(
            "k = {k} is not in 1..={} for one ioctl; use the query files for more",
            ioctl::TEXT_K_MAX
        )));
    }
    let (text_len, filter_len) = (request.text_len as usize, request.filter_len as usize);
    let filter_at = text_len.next_multiple_of(8);
    if text_len == 0 || filter_at + filter_len > ioctl::PAYLOAD {
        return Err(invalid(format!(
            "query text of {text_len} bytes and filter of {filter_len} do not fit the payload"
        )));
    }
    let text = std::str::from_utf8(&request.payload[..text_len])
        .map_err(|_| invalid("the query text is not UTF-8".to_owned()))?;
    let filter = if filter_len == 0 {
        None
    } else {
        let expr = std::str::from_utf8(&request.payload[filter_at..filter_at + filter_len])
            .map_err(|_| invalid("the filter is not UTF-8".to_owned()))?;
        Some(Filter::parse(expr).map_err(|e| invalid(e.to_string()))?)
    };
    let hits = texts.search(dir, text, k, filter).map_err(fail)?;
    request.payload.fill(0);
    request.count = 0;
    let mut at = 0;
    for hit in &hits {
        let name = &hit.name[..hit.name.len().min(u16::MAX as usize)];
        let snippet = hit.snippet.as_bytes();
        let header = TextHit {
            id: hit.id,
            ino: hit.ino,
            start: hit.start,
            end: hit.end,
            distance: hit.distance,
            chunk: hit.chunk,
            name_len: name.len() as u16,
            snippet_len: snippet.len() as u16,
            reserved: 0,
        };
        let len = (size_of::<TextHit>() + name.len() + snippet.len()).next_multiple_of(8);
        if at + len > ioctl::PAYLOAD {
            break;
        }
        let out = &mut request.payload[at..at + len];
        out[..size_of::<TextHit>()].copy_from_slice(header.as_bytes());
        out[size_of::<TextHit>()..][..name.len()].copy_from_slice(name);
        out[size_of::<TextHit>() + name.len()..][..snippet.len()].copy_from_slice(snippet);
        at += len;
        request.count += 1;
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

fn stats<S: Storage>(texts: &Texts<S>, dir: u64) -> IoctlResult {
    let s = texts.vectors().stats(dir).map_err(fail)?;
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
    if let Some(t) = texts.stats(dir) {
        out.docs_queued = t.docs_queued;
        out.docs_indexed = t.docs_indexed;
        out.docs_skipped = t.docs_skipped;
        out.chunks = t.chunks;
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
