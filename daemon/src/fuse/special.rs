//! The special files of a collection directory, which exist only in the daemon:
//!
//! - `.vexfs-insert`: a stream of insert batches, for batches larger than an ioctl payload. Each
//!   batch is a 32-byte header (`VXIB` magic, version 1, flags, dimension, count) followed by
//!   `count` u64 ids when flag bit 0 is set, then `count × dim` f32 values, all little-endian. A
//!   batch is applied when its last byte arrives, whole or not at all; `fsync` of the stream makes
//!   every applied batch durable (and fails with EINVAL if a batch is incomplete). Reading the
//!   stream (opened read-write; `pread` from offset 0, as the file position is past the writes)
//!   returns a receipt per batch applied through that open file, one JSON line each:
//!   `{"batch": 0, "count": 500, "assigned_from": 1000}`, the ids the daemon assigned being
//!   `assigned_from..assigned_from + count` (`null` when the batch carried ids).
//! - `.vexfs-query/`: a directory of query files, the interface for shell tools. Write JSON query
//!   objects into a file there (one per line: `{"vector": [..], "k": 10}`, `"filter"`, or
//!   `"radius"` and `"limit"` for a range search); reading the file back runs them and returns one
//!   JSON line per query, `{"query": 0, "results": [{"id": 17, "distance": 0.123}, ...]}`.
//!   Query files live in memory until unlinked or the daemon stops.
//!
//! Neither name is listed by readdir, and neither can be created, renamed or linked as a real
//! file inside a collection. Their node ids come from a range real inodes never reach.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use serde_json::Value;
use vexfs_format::ioctl::BatchHeader;

use super::reply::{DirBuf, FileAttr, FileType, Reply};
use super::request::{Operation, Request, Timestamp};
use crate::storage::Storage;
use crate::text::{TextHit, Texts};
use crate::vector::search::filter::Filter;
use crate::vector::search::Neighbor;
use crate::vector::{VectorError, Vectors};

/// The insert stream's name in a collection.
pub const INSERT_NAME: &[u8] = vexfs_format::ioctl::INSERT_STREAM_NAME.as_bytes();
/// The query directory's name in a collection.
pub const QUERY_DIR_NAME: &[u8] = b".vexfs-query";
/// Node ids of special files start here; real inode numbers stay far below.
pub const SPECIAL_BASE: u64 = 1 << 62;
/// Query files per collection, at most.
const QUERY_FILES_MAX: usize = 1024;
/// Bytes of query text per file, at most.
const QUERY_TEXT_MAX: usize = 64 << 20;
/// Special files change under the kernel's feet: never cache them.
const TTL: Duration = Duration::ZERO;
/// FOPEN_DIRECT_IO: reads and writes go to the daemon, bypassing the page cache.
const FOPEN_DIRECT_IO: u32 = 1;

/// Whether `nodeid` names a special file.
pub fn is_special(nodeid: u64) -> bool {
    nodeid >= SPECIAL_BASE
}

/// Whether `name` is reserved inside a collection directory.
pub fn is_reserved(name: &[u8]) -> bool {
    name == INSERT_NAME || name == QUERY_DIR_NAME
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Node {
    Insert { dir: u64 },
    QueryDir { dir: u64 },
    Query { dir: u64, name: Vec<u8> },
}

#[derive(Default)]
struct QueryFile {
    text: Vec<u8>,
    results: Option<Vec<u8>>,
    mtime: u64,
}

/// One open `.vexfs-insert`: bytes received and not yet applied, and the receipts of the batches
/// applied.
struct Stream {
    dir: u64,
    received: u64,
    buf: Vec<u8>,
    failed: bool,
    batches: u64,
    receipts: Vec<u8>,
}

#[derive(Default)]
struct Table {
    next_node: u64,
    nodes: HashMap<u64, Node>,
    ids: HashMap<Node, u64>,
    queries: HashMap<u64, QueryFile>,
    next_fh: u64,
    streams: HashMap<u64, Stream>,
}

impl Table {
    fn node_id(&mut self, node: Node) -> u64 {
        if let Some(&id) = self.ids.get(&node) {
            return id;
        }
        let id = SPECIAL_BASE + self.next_node;
        self.next_node += 1;
        self.nodes.insert(id, node.clone());
        self.ids.insert(node, id);
        id
    }

    fn remove(&mut self, id: u64) {
        if let Some(node) = self.nodes.remove(&id) {
            self.ids.remove(&node);
        }
        self.queries.remove(&id);
    }
}

/// The special files of every collection.
#[derive(Default)]
pub struct Special {
    table: Mutex<Table>,
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn attr_of(id: u64, node: &Node, size: u64, mtime: u64) -> FileAttr {
    let (mode, nlink) = match node {
        Node::Insert { .. } => (libc::S_IFREG | 0o666, 1),
        Node::QueryDir { .. } => (libc::S_IFDIR | 0o777, 2),
        Node::Query { .. } => (libc::S_IFREG | 0o666, 1),
    };
    let time = Timestamp { secs: mtime as i64, nsecs: 0 };
    FileAttr {
        ino: id,
        size,
        blocks: 0,
        atime: time,
        mtime: time,
        ctime: time,
        mode,
        nlink,
        uid: 0,
        gid: 0,
        rdev: 0,
        blksize: 4096,
    }
}

impl Special {
    /// The entry for `name` in collection `dir`, if it is one of the reserved names.
    pub fn lookup_in_collection(&self, dir: u64, name: &[u8], reply: Reply<'_>) {
        let node = if name == INSERT_NAME { Node::Insert { dir } } else { Node::QueryDir { dir } };
        let mut table = self.table.lock();
        let id = table.node_id(node.clone());
        reply.entry(&attr_of(id, &node, 0, now_secs()), 0, TTL, TTL);
    }

    /// Forgets the special files of a collection that is going away.
    pub fn forget_collection(&self, dir: u64) {
        let mut table = self.table.lock();
        let ids: Vec<u64> = table
            .nodes
            .iter()
            .filter(|(_, node)| matches!(node, Node::Insert { dir: d } | Node::QueryDir { dir: d } | Node::Query { dir: d, .. } if *d == dir))
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            table.remove(id);
        }
        table.streams.retain(|_, s| s.dir != dir);
    }

    /// Answers a request on a special node.
    pub fn handle<S: Storage>(&self, texts: &Texts<S>, req: &Request<'_>, reply: Reply<'_>) {
        let vectors = texts.vectors();
        let id = req.nodeid;
        let Some(node) = self.table.lock().nodes.get(&id).cloned() else {
            return reply.error(libc::ESTALE);
        };
        match (&node, &req.op) {
            (_, Operation::Forget { .. } | Operation::BatchForget { .. } | Operation::Interrupt { .. }) => {}
            (_, Operation::Getattr { .. }) => self.reply_attr(id, &node, reply),
            (Node::Query { .. }, Operation::Setattr(change)) => {
                if let Some(size) = change.size {
                    let mut table = self.table.lock();
                    let file = table.queries.entry(id).or_default();
                    file.text.truncate(size as usize);
                    file.results = None;
                    file.mtime = now_secs();
                }
                self.reply_attr(id, &node, reply);
            }
            (_, Operation::Setattr(_)) => self.reply_attr(id, &node, reply),
            (Node::Insert { dir }, Operation::Open { .. }) => {
                let mut table = self.table.lock();
                table.next_fh += 1;
                let fh = table.next_fh;
                let stream =
                    Stream { dir: *dir, received: 0, buf: Vec::new(), failed: false, batches: 0, receipts: Vec::new() };
                table.streams.insert(fh, stream);
                reply.open(fh, FOPEN_DIRECT_IO);
            }
            (Node::Insert { .. }, Operation::Read { fh, offset, size, .. }) => {
                self.read_receipts(*fh, *offset, *size, reply)
            }
            (Node::Insert { .. }, Operation::Write { fh, offset, data, .. }) => {
                let result = self.feed(vectors, *fh, *offset, data);
                match result {
                    Ok(()) => reply.write(data.len() as u32),
                    Err(errno) => reply.error(errno),
                }
            }
            (Node::Insert { dir }, Operation::Fsync { fh, .. }) => {
                let pending = self.table.lock().streams.get(fh).map_or(0, |s| s.buf.len());
                if pending > 0 {
                    tracing::info!(collection = dir, pending, "fsync of .vexfs-insert with an incomplete batch");
                    return reply.error(libc::EINVAL);
                }
                match vectors.sync(*dir) {
                    Ok(()) => reply.ok(),
                    Err(e) => reply.error(e.errno()),
                }
            }
            (Node::Insert { .. }, Operation::Release { fh, .. }) => {
                if let Some(stream) = self.table.lock().streams.remove(fh) {
                    if !stream.buf.is_empty() {
                        tracing::info!(
                            collection = stream.dir,
                            bytes = stream.buf.len(),
                            "incomplete insert batch discarded at close"
                        );
                    }
                }
                reply.ok();
            }
            (Node::Query { .. }, Operation::Open { flags, .. }) => {
                if flags & libc::O_TRUNC as u32 != 0 {
                    let mut table = self.table.lock();
                    let file = table.queries.entry(id).or_default();
                    file.text.clear();
                    file.results = None;
                }
                reply.open(0, FOPEN_DIRECT_IO);
            }
            (Node::Query { .. }, Operation::Write { offset, data, .. }) => {
                let end = *offset as usize + data.len();
                if end > QUERY_TEXT_MAX {
                    return reply.error(libc::EFBIG);
                }
                let mut table = self.table.lock();
                let file = table.queries.entry(id).or_default();
                if file.text.len() < end {
                    file.text.resize(end, 0);
                }
                file.text[*offset as usize..end].copy_from_slice(data);
                file.results = None;
                file.mtime = now_secs();
                reply.write(data.len() as u32);
            }
            (Node::Query { dir, .. }, Operation::Read { offset, size, .. }) => {
                let text = {
                    let table = self.table.lock();
                    let file = table.queries.get(&id);
                    match file.and_then(|f| f.results.clone()) {
                        Some(results) => Ok(results),
                        None => Err(file.map(|f| f.text.clone()).unwrap_or_default()),
                    }
                };
                let results = match text {
                    Ok(results) => results,
                    Err(text) => {
                        let results = run_queries(texts, *dir, &text);
                        let mut table = self.table.lock();
                        let file = table.queries.entry(id).or_default();
                        file.results = Some(results.clone());
                        results
                    }
                };
                let start = (*offset as usize).min(results.len());
                let end = (start + *size as usize).min(results.len());
                reply.data(&results[start..end]);
            }
            (Node::Query { .. }, Operation::Release { .. } | Operation::Fsync { .. } | Operation::Flush { .. }) => {
                reply.ok()
            }
            (Node::QueryDir { .. }, Operation::Opendir { .. }) => reply.open(0, 0),
            (Node::QueryDir { .. }, Operation::Releasedir { .. } | Operation::Fsyncdir { .. }) => reply.ok(),
            (Node::QueryDir { dir }, Operation::Readdir { offset, size, .. }) => {
                self.readdir(id, *dir, *offset, *size, false, reply)
            }
            (Node::QueryDir { dir }, Operation::Readdirplus { offset, size, .. }) => {
                self.readdir(id, *dir, *offset, *size, true, reply)
            }
            (Node::QueryDir { dir }, Operation::Lookup { name }) => {
                let name = name.as_bytes().to_vec();
                let mut table = self.table.lock();
                let node = Node::Query { dir: *dir, name };
                let Some(&qid) = table.ids.get(&node) else { return reply.error(libc::ENOENT) };
                let file = table.queries.entry(qid).or_default();
                let size = file.results.as_ref().map_or(file.text.len(), Vec::len) as u64;
                let mtime = file.mtime;
                reply.entry(&attr_of(qid, &node, size, mtime), 0, TTL, TTL);
            }
            (Node::QueryDir { dir }, Operation::Create { name, .. })
            | (Node::QueryDir { dir }, Operation::Mknod { name, .. }) => {
                let is_create = matches!(req.op, Operation::Create { .. });
                let name = name.as_bytes().to_vec();
                if name.is_empty() || name.len() > 255 || name.contains(&b'/') {
                    return reply.error(libc::EINVAL);
                }
                let mut table = self.table.lock();
                let count =
                    table.nodes.values().filter(|n| matches!(n, Node::Query { dir: d, .. } if d == dir)).count();
                let node = Node::Query { dir: *dir, name };
                if !table.ids.contains_key(&node) && count >= QUERY_FILES_MAX {
                    return reply.error(libc::ENOSPC);
                }
                let qid = table.node_id(node.clone());
                let mtime = now_secs();
                table.queries.insert(qid, QueryFile { mtime, ..QueryFile::default() });
                let attr = attr_of(qid, &node, 0, mtime);
                if is_create {
                    reply.create(&attr, 0, TTL, TTL, 0, FOPEN_DIRECT_IO);
                } else {
                    reply.entry(&attr, 0, TTL, TTL);
                }
            }
            (Node::QueryDir { dir }, Operation::Unlink { name }) => {
                let node = Node::Query { dir: *dir, name: name.as_bytes().to_vec() };
                let mut table = self.table.lock();
                match table.ids.get(&node).copied() {
                    Some(qid) => {
                        table.remove(qid);
                        reply.ok();
                    }
                    None => reply.error(libc::ENOENT),
                }
            }
            (_, Operation::Access { .. }) => reply.ok(),
            (_, Operation::Getxattr { .. }) => reply.error(libc::ENODATA),
            (_, Operation::Listxattr { size }) => {
                if *size == 0 {
                    reply.xattr_size(0)
                } else {
                    reply.xattr_data(&[])
                }
            }
            (_, Operation::Flush { .. }) => reply.error(libc::ENOSYS),
            (_, Operation::Statfs) => reply.error(libc::ENOSYS),
            _ => reply.error(libc::EPERM),
        }
    }

    fn reply_attr(&self, id: u64, node: &Node, reply: Reply<'_>) {
        let table = self.table.lock();
        let (size, mtime) = table
            .queries
            .get(&id)
            .map_or((0, now_secs()), |f| (f.results.as_ref().map_or(f.text.len(), Vec::len) as u64, f.mtime));
        reply.attr(&attr_of(id, node, size, mtime), TTL);
    }

    /// Lists a query directory: ".", "..", then the query files by name. With `plus`, the
    /// entries carry attributes (zero TTL).
    fn readdir(&self, id: u64, dir: u64, offset: u64, size: u32, plus: bool, reply: Reply<'_>) {
        let table = self.table.lock();
        let mut names: Vec<(u64, &[u8])> = table
            .nodes
            .iter()
            .filter_map(|(qid, node)| match node {
                Node::Query { dir: d, name } if *d == dir => Some((*qid, name.as_slice())),
                _ => None,
            })
            .collect();
        names.sort();
        let mut buf = DirBuf::new(size);
        let entries = [(id, &b"."[..], FileType::Directory), (dir, &b".."[..], FileType::Directory)]
            .into_iter()
            .chain(names.into_iter().map(|(qid, name)| (qid, name, FileType::RegularFile)));
        for (index, (ino, name, kind)) in entries.enumerate().skip(offset as usize) {
            let next = index as u64 + 1;
            let pushed = if plus {
                let node = if kind == FileType::Directory {
                    Node::QueryDir { dir }
                } else {
                    Node::Query { dir, name: name.to_vec() }
                };
                let size = table.queries.get(&ino).map_or(0, |f| f.results.as_ref().map_or(f.text.len(), Vec::len));
                buf.push_plus(&attr_of(ino, &node, size as u64, now_secs()), 0, TTL, TTL, next, OsStr::from_bytes(name))
            } else {
                buf.push(ino, next, kind, OsStr::from_bytes(name))
            };
            if !pushed {
                break;
            }
        }
        reply.dir(&buf);
    }

    /// Reads `size` bytes at `offset` of the receipts of insert stream `fh`.
    fn read_receipts(&self, fh: u64, offset: u64, size: u32, reply: Reply<'_>) {
        let table = self.table.lock();
        let Some(stream) = table.streams.get(&fh) else { return reply.error(libc::EBADF) };
        let start = (offset as usize).min(stream.receipts.len());
        let end = (start + size as usize).min(stream.receipts.len());
        reply.data(&stream.receipts[start..end]);
    }

    /// Appends `data` (at `offset`) to the stream `fh` and applies every batch it completes.
    fn feed<S: Storage>(&self, vectors: &Vectors<S>, fh: u64, offset: u64, data: &[u8]) -> Result<(), i32> {
        let mut table = self.table.lock();
        let stream = table.streams.get_mut(&fh).ok_or(libc::EBADF)?;
        if stream.failed {
            return Err(libc::EINVAL);
        }
        if offset != stream.received {
            tracing::info!(offset, expected = stream.received, ".vexfs-insert is written sequentially");
            stream.failed = true;
            return Err(libc::EINVAL);
        }
        stream.received += data.len() as u64;
        stream.buf.extend_from_slice(data);
        let dir = stream.dir;
        let mut buf = std::mem::take(&mut stream.buf);
        drop(table);
        let mut used = 0;
        let mut receipts = Vec::new();
        let result = loop {
            match parse_batch(&buf[used..]) {
                Ok(Some((batch, len))) => {
                    let given = batch.ids.is_some();
                    match vectors.insert(dir, batch.ids.as_deref(), batch.values, Vec::new()) {
                        Ok(ids) => receipts.push((ids.len(), (!given).then(|| ids[0]))),
                        Err(error) => break Err(error),
                    }
                    used += len;
                }
                Ok(None) => break Ok(()),
                Err(message) => break Err(VectorError::Invalid(format!(".vexfs-insert: {message}"))),
            }
        };
        buf.drain(..used);
        let mut table = self.table.lock();
        if let Some(stream) = table.streams.get_mut(&fh) {
            stream.buf = buf;
            if result.is_err() {
                stream.failed = true;
            }
            for (count, assigned_from) in receipts {
                let from = assigned_from.map_or_else(|| "null".to_owned(), |id| id.to_string());
                let line =
                    format!("{{\"batch\": {}, \"count\": {count}, \"assigned_from\": {from}}}\n", stream.batches);
                stream.receipts.extend_from_slice(line.as_bytes());
                stream.batches += 1;
            }
        }
        result.map_err(|error| {
            tracing::info!(%error, "insert batch refused");
            error.errno()
        })
    }
}

struct Batch {
    ids: Option<Vec<u64>>,
    values: Vec<f32>,
}

/// The first complete batch in `bytes` and its length; None when the batch is not complete yet.
fn parse_batch(bytes: &[u8]) -> Result<Option<(Batch, usize)>, String> {
    if bytes.len() < size_of::<BatchHeader>() {
        return Ok(None);
    }
    let header = BatchHeader::parse(bytes)?;
    // At most BATCH_BYTES_MAX, which fits usize.
    let len = header.batch_len() as usize;
    if bytes.len() < len {
        return Ok(None);
    }
    let start = size_of::<BatchHeader>();
    let ids_len = if header.with_ids() { header.count() * 8 } else { 0 };
    let ids = header.with_ids().then(|| {
        bytes[start..start + ids_len]
            .chunks_exact(8)
            .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
            .collect()
    });
    let values = bytes[start + ids_len..len]
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().expect("4 bytes")))
        .collect();
    Ok(Some((Batch { ids, values }, len)))
}

/// Runs the JSON queries in `text` (one object per line) and returns their JSON-lines answers,
/// in the shape `vexfs search --json` prints: `{"query": i, "results": [{"id": .., "distance": ..}]}`
/// (distances in their shortest exact float32 form); a text query's results add `path` (the
/// document's name in the collection), `chunk` and `snippet`. A query that fails answers
/// `{"query": i, "error": "..."}`.
fn run_queries<S: Storage>(texts: &Texts<S>, dir: u64, text: &[u8]) -> Vec<u8> {
    let mut out = String::new();
    let text = String::from_utf8_lossy(text);
    for (index, line) in text.lines().filter(|l| !l.trim().is_empty()).enumerate() {
        match run_query(texts, dir, line) {
            Ok(Found::Vectors(results)) => {
                let hits: Vec<String> =
                    results.iter().map(|n| format!("{{\"id\": {}, \"distance\": {}}}", n.id, n.distance)).collect();
                out.push_str(&format!("{{\"query\": {index}, \"results\": [{}]}}\n", hits.join(", ")));
            }
            Ok(Found::Text(results)) => {
                let hits: Vec<String> = results
                    .iter()
                    .map(|h| {
                        let path = Value::String(String::from_utf8_lossy(&h.name).into_owned());
                        let snippet = Value::String(h.snippet.clone());
                        format!(
                            "{{\"id\": {}, \"distance\": {}, \"path\": {path}, \"chunk\": {}, \"snippet\": {snippet}}}",
                            h.id, h.distance, h.chunk
                        )
                    })
                    .collect();
                out.push_str(&format!("{{\"query\": {index}, \"results\": [{}]}}\n", hits.join(", ")));
            }
            Err(message) => {
                let message = Value::String(message);
                out.push_str(&format!("{{\"query\": {index}, \"error\": {message}}}\n"));
            }
        }
    }
    out.into_bytes()
}

enum Found {
    Vectors(Vec<Neighbor>),
    Text(Vec<TextHit>),
}

fn run_query<S: Storage>(texts: &Texts<S>, dir: u64, line: &str) -> Result<Found, String> {
    let vectors = texts.vectors();
    let query: Value = serde_json::from_str(line).map_err(|e| format!("not a JSON object: {e}"))?;
    let object = query.as_object().ok_or("a query is a JSON object")?;
    let filter = match object.get("filter") {
        None | Some(Value::Null) => None,
        Some(Value::String(text)) => Some(Filter::parse(text).map_err(|e| e.to_string())?),
        Some(_) => return Err("\"filter\" is a string".to_owned()),
    };
    let number = |key: &str| object.get(key).and_then(Value::as_f64);
    let k = number("k").unwrap_or(10.0) as usize;
    match (object.get("text"), object.get("vector")) {
        (Some(_), Some(_)) => return Err("a query has a \"vector\" or a \"text\", not both".to_owned()),
        (Some(Value::String(text)), None) => {
            if object.contains_key("radius") {
                return Err("a text query is a k-NN search: \"radius\" applies to vectors only".to_owned());
            }
            return texts.search(dir, text, k, filter).map(Found::Text).map_err(|e| e.to_string());
        }
        (Some(_), None) => return Err("\"text\" is a string".to_owned()),
        (None, _) => {}
    }
    let vector: Vec<f32> = object
        .get("vector")
        .and_then(Value::as_array)
        .ok_or("the query has no \"vector\" array (or \"text\" string)")?
        .iter()
        .map(|v| v.as_f64().map(|f| f as f32).ok_or("\"vector\" holds a non-number"))
        .collect::<Result<_, _>>()?;
    let found = match number("radius") {
        Some(radius) => {
            let limit = number("limit").unwrap_or(1000.0) as usize;
            vectors.range(dir, &vector, radius as f32, filter, limit)
        }
        None => vectors.knn(dir, &vector, k, filter),
    }
    .map_err(|e| e.to_string())?;
    Ok(Found::Vectors(found.into_iter().next().unwrap_or_default()))
}
