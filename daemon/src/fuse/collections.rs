//! The collection ioctls of `client/include/vexfs.h` on a collection directory. Each is decoded
//! from its wire struct ([`decode`], pure: every size, count, offset and flag checked), becomes
//! one call to the collection service with the caller's credentials, and its answer is encoded
//! back into the struct. Checks of meaning and defaults are the service's.

use vexfs_format::ioctl::{self, Create, Delete, Insert, Search, SearchResult, Stats, TextHit, TextSearch};
use zerocopy::{FromBytes, FromZeros, IntoBytes};

use crate::errno::Errno;
use crate::service::{
    Caller, Collections, CreateRequest, InsertRequest, Interrupt, SearchRequest, ServiceError, TextRequest,
};
use crate::storage::Storage;

/// An ioctl's outcome: the bytes to copy out, or an errno.
pub type IoctlResult = Result<Vec<u8>, i32>;

/// The errno of a refused or failed request, logged by whose fault it was.
pub fn fail(error: ServiceError) -> i32 {
    if error.is_callers() {
        tracing::info!(%error, "collection request refused");
    } else {
        tracing::error!(%error, "collection request failed");
    }
    error.errno()
}

fn invalid(message: String) -> i32 {
    fail(ServiceError::Invalid(message))
}

fn parse<T: FromBytes>(data: &[u8]) -> Result<T, i32> {
    T::read_from_bytes(data).map_err(|_| invalid(format!("ioctl payload of {} bytes has the wrong size", data.len())))
}

fn floats(bytes: &[u8]) -> Vec<f32> {
    bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()
}

fn text_field(bytes: &[u8], what: &str) -> Result<String, i32> {
    std::str::from_utf8(bytes).map(str::to_owned).map_err(|_| invalid(format!("the {what} is not UTF-8")))
}

/// A collection ioctl decoded from its wire struct, with the struct where the answer is written
/// into it.
pub enum Decoded {
    Create(CreateRequest),
    Insert(Box<Insert>, InsertRequest),
    Search(Box<Search>, SearchRequest),
    Stats,
    SearchText(Box<TextSearch>, TextQuery),
    Delete(Box<Delete>, bool),
    Sync,
}

/// A text search as its ioctl asks it.
pub struct TextQuery {
    pub text: String,
    pub k: usize,
    pub filter: Option<String>,
}

/// Decodes the ioctl `cmd`'s request from `data`; None when `cmd` is not one of ours. Pure: every
/// size, count, offset and flag is checked here before anything is called.
pub fn decode(cmd: u32, data: &[u8]) -> Option<Result<Decoded, i32>> {
    Some(match cmd {
        ioctl::IOC_CREATE => decode_create(data).map(Decoded::Create),
        ioctl::IOC_INSERT => decode_insert(data).map(|(raw, insert)| Decoded::Insert(raw, insert)),
        ioctl::IOC_KNN => decode_search(data, false).map(|(raw, search)| Decoded::Search(raw, search)),
        ioctl::IOC_RANGE => decode_search(data, true).map(|(raw, search)| Decoded::Search(raw, search)),
        ioctl::IOC_STATS => Ok(Decoded::Stats),
        ioctl::IOC_SEARCH_TEXT => decode_search_text(data).map(|(raw, query)| Decoded::SearchText(raw, query)),
        ioctl::IOC_DELETE => decode_delete(data).map(|(raw, sync)| Decoded::Delete(raw, sync)),
        ioctl::IOC_SYNC => Ok(Decoded::Sync),
        _ => return None,
    })
}

/// Answers a VexFS ioctl on directory `dir`: decode, one call to the collection service with the
/// caller's credentials, encode. None when `cmd` is not one of ours.
pub fn ioctl<S: Storage>(
    service: &Collections<S>,
    caller: &Caller,
    dir: u64,
    cmd: u32,
    data: &[u8],
    interrupt: &Interrupt,
) -> Option<IoctlResult> {
    Some(decode(cmd, data)?.and_then(|decoded| match decoded {
        Decoded::Create(new) => service.create(caller, dir, &new).map(|_| Vec::new()).map_err(fail),
        Decoded::Insert(mut raw, insert) => {
            let assigned = service.insert(caller, dir, insert).map_err(fail)?;
            raw.first_id = assigned.first().copied().unwrap_or(0);
            Ok(raw.as_bytes().to_vec())
        }
        Decoded::Search(raw, search) => {
            let results = service.search(caller, dir, &search).map_err(fail)?;
            Ok(encode_results(raw, search.k, &results))
        }
        Decoded::Stats => stats(service, caller, dir, interrupt),
        Decoded::SearchText(raw, query) => {
            let hits = service
                .search_text(caller, dir, &query.text, query.k, query.filter.as_deref(), interrupt)
                .map_err(fail)?;
            Ok(encode_hits(raw, &hits))
        }
        Decoded::Delete(mut raw, sync) => {
            raw.deleted = service.delete(caller, dir, &raw.ids[..raw.count as usize], sync).map_err(fail)?;
            Ok(raw.as_bytes().to_vec())
        }
        Decoded::Sync => service.sync(caller, dir, interrupt).map(|()| Vec::new()).map_err(fail),
    }))
}

fn decode_create(data: &[u8]) -> Result<CreateRequest, i32> {
    let request: Create = parse(data)?;
    if request.reserved != [0; 5] || request.flags & !ioctl::CREATE_TEXT != 0 {
        return Err(invalid("reserved fields or unknown flags are set".to_owned()));
    }
    let text = if request.flags & ioctl::CREATE_TEXT != 0 {
        Some(TextRequest {
            embedder: text_field(ioctl::c_str(&request.embedder), "embedder name")?,
            chunk_bytes: request.chunk_bytes,
            chunk_overlap: request.chunk_overlap,
        })
    } else {
        None
    };
    Ok(CreateRequest { dim: request.dim, metric: request.metric, shards: request.shards, text })
}

fn decode_insert(data: &[u8]) -> Result<(Box<Insert>, InsertRequest), i32> {
    let request: Box<Insert> = Box::new(parse(data)?);
    if request.flags & !(ioctl::INSERT_IDS | ioctl::INSERT_SYNC) != 0 {
        return Err(invalid(format!("unknown insert flags {:#x}", request.flags)));
    }
    let (count, dim) = (request.count as usize, request.dim as usize);
    let with_ids = request.flags & ioctl::INSERT_IDS != 0;
    let need = dim
        .checked_mul(4)
        .and_then(|row| row.checked_add(if with_ids { 8 } else { 0 }))
        .and_then(|row| row.checked_mul(count))
        .filter(|&need| count > 0 && dim > 0 && need <= ioctl::PAYLOAD)
        .ok_or_else(|| {
            invalid(format!(
                "{count} vectors of dimension {dim} do not fit one ioctl ({} bytes of payload); write larger batches to .vexfs-insert",
                ioctl::PAYLOAD
            ))
        })?;
    let (ids, values) = if with_ids {
        let ids =
            request.payload[..count * 8].chunks_exact(8).map(|b| u64::from_le_bytes(b.try_into().unwrap_or([0; 8])));
        (Some(ids.collect()), floats(&request.payload[count * 8..need]))
    } else {
        (None, floats(&request.payload[..need]))
    };
    let sync = request.flags & ioctl::INSERT_SYNC != 0;
    let insert = InsertRequest { dim: request.dim, ids, values, attrs: Vec::new(), sync };
    Ok((request, insert))
}

fn decode_search(data: &[u8], range: bool) -> Result<(Box<Search>, SearchRequest), i32> {
    let request: Box<Search> = Box::new(parse(data)?);
    let (nq, k, dim) = (request.nq as usize, request.k as usize, request.dim as usize);
    if k == 0 {
        return Err(invalid("k = 0: ask for at least one result".to_owned()));
    }
    let filter_bytes = (request.filter_len as usize).next_multiple_of(8);
    let need_in = nq.checked_mul(dim).and_then(|v| v.checked_mul(4)).and_then(|v| v.checked_add(filter_bytes));
    let need_out = nq.checked_mul(k).and_then(|r| r.checked_mul(size_of::<SearchResult>()));
    let need_out = need_out.and_then(|r| r.checked_add((nq * 4).next_multiple_of(8)));
    let fits = |need: Option<usize>| need.is_some_and(|n| n <= ioctl::PAYLOAD);
    if nq == 0 || dim == 0 || !fits(need_in) || !fits(need_out) {
        return Err(invalid(format!(
            "{nq} queries with k = {k} do not fit one ioctl ({} bytes of payload); use the query files",
            ioctl::PAYLOAD
        )));
    }
    let filter = match request.filter_len as usize {
        0 => None,
        len => Some(text_field(&request.payload[..len], "filter")?),
    };
    let queries = floats(&request.payload[filter_bytes..need_in.unwrap_or(0)]);
    let radius = range.then_some(request.radius);
    let search = SearchRequest { dim: request.dim, queries, k, radius, filter };
    Ok((request, search))
}

/// The results of `raw`'s queries written into its payload: a count per query, then k slots per
/// query. `decode_search` checked that they fit.
fn encode_results(mut raw: Box<Search>, k: usize, results: &[Vec<crate::vector::search::Neighbor>]) -> Vec<u8> {
    let nq = raw.nq as usize;
    raw.payload.fill(0);
    let (counts, rest) = raw.payload.split_at_mut((nq * 4).next_multiple_of(8));
    for (i, found) in results.iter().enumerate().take(nq) {
        counts[i * 4..i * 4 + 4].copy_from_slice(&(found.len().min(k) as u32).to_le_bytes());
        for (j, n) in found.iter().enumerate().take(k) {
            let at = (i * k + j) * size_of::<SearchResult>();
            let result = SearchResult { id: n.id, distance: n.distance, reserved: 0 };
            rest[at..at + size_of::<SearchResult>()].copy_from_slice(result.as_bytes());
        }
    }
    raw.as_bytes().to_vec()
}

fn decode_search_text(data: &[u8]) -> Result<(Box<TextSearch>, TextQuery), i32> {
    let request: Box<TextSearch> = Box::new(parse(data)?);
    let k = request.k as usize;
    if k == 0 || k > ioctl::TEXT_K_MAX {
        return Err(invalid(format!(
            "k = {k} is not in 1..={} for one ioctl; use the query files for more",
            ioctl::TEXT_K_MAX
        )));
    }
    let (text_len, filter_len) = (request.text_len as usize, request.filter_len as usize);
    let filter_at = text_len.next_multiple_of(8);
    if text_len == 0 || filter_at.saturating_add(filter_len) > ioctl::PAYLOAD {
        return Err(invalid(format!(
            "query text of {text_len} bytes and filter of {filter_len} do not fit the payload"
        )));
    }
    let text = text_field(&request.payload[..text_len], "query text")?;
    let filter = match filter_len {
        0 => None,
        len => Some(text_field(&request.payload[filter_at..filter_at + len], "filter")?),
    };
    Ok((request, TextQuery { text, k, filter }))
}

/// Text hits written into `raw`'s payload, as many as fit, each a [`TextHit`] header, the name
/// and the snippet, padded to 8 bytes.
fn encode_hits(mut raw: Box<TextSearch>, hits: &[crate::text::TextHit]) -> Vec<u8> {
    raw.payload.fill(0);
    raw.count = 0;
    let mut at = 0;
    for hit in hits {
        let name = &hit.name[..hit.name.len().min(u16::MAX as usize)];
        let snippet = hit.snippet.as_bytes();
        let snippet = &snippet[..snippet.len().min(u16::MAX as usize)];
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
        let out = &mut raw.payload[at..at + len];
        out[..size_of::<TextHit>()].copy_from_slice(header.as_bytes());
        out[size_of::<TextHit>()..][..name.len()].copy_from_slice(name);
        out[size_of::<TextHit>() + name.len()..][..snippet.len()].copy_from_slice(snippet);
        at += len;
        raw.count += 1;
    }
    raw.as_bytes().to_vec()
}

fn decode_delete(data: &[u8]) -> Result<(Box<Delete>, bool), i32> {
    let request: Box<Delete> = Box::new(parse(data)?);
    let count = request.count as usize;
    if count == 0 || count > ioctl::DELETE_IDS {
        return Err(invalid(format!("delete of {count} ids: 1..={} per ioctl", ioctl::DELETE_IDS)));
    }
    let sync = request.flags & ioctl::INSERT_SYNC != 0;
    Ok((request, sync))
}

fn stats<S: Storage>(service: &Collections<S>, caller: &Caller, dir: u64, interrupt: &Interrupt) -> IoctlResult {
    let stats = service.stats(caller, dir, interrupt).map_err(fail)?;
    let s = &stats.vectors;
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
    if let Some(t) = stats.text {
        out.docs_queued = t.docs_queued;
        out.docs_indexed = t.docs_indexed;
        out.docs_skipped = t.docs_skipped;
        out.chunks = t.chunks;
    }
    Ok(out.as_bytes().to_vec())
}
