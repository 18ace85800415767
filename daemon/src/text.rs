//! Text collections: documents written into a text collection's directory are cut into chunks
//! ([`crate::embed::chunk`]), the chunks are embedded by the collection's embedder, and their
//! vectors are stored in the collection ([`crate::vector`]); a search by text finds chunks by
//! meaning and names the document, chunk and snippet.
//!
//! Indexing runs on one background thread, off the write path: front doors report what changed
//! ([`Texts::file_changed`], [`Texts::entry_added`], [`Texts::dir_changed`]) and return. Jobs wait
//! in a bounded queue; a door that would overfill it waits for room (back-pressure), and
//! [`Texts::fsync`] / [`Texts::sync`] wait until what they cover is searchable.
//!
//! Invariants:
//! - A document's chunk `c` has vector id `ino << CHUNK_BITS | c` ([`chunk_id`]), so a document's
//!   vectors are found from its inode alone, and rewriting a document replaces them id for id.
//! - Every chunk vector carries the reserved attributes `vexfs.doc` (inode), `vexfs.start` and
//!   `vexfs.end` (the chunk's byte range in the document) and `vexfs.ctime` (the document's ctime
//!   in nanoseconds when it was read), then the document's `user.*` xattrs (without the `user.`
//!   prefix) as attributes of its own.
//! - A document is indexed when its stored `vexfs.ctime` equals its inode's ctime. ctime changes
//!   with every write, truncate, xattr change and rename, so a stale index is always detected:
//!   when a collection is first used after the daemon starts, every document whose ctime differs
//!   from its vectors' (or that has none) is queued again. This is how documents written but not
//!   indexed before a crash are caught up.
//! - Documents are the regular files directly in the collection's directory.

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;

use parking_lot::{Condvar, Mutex};
use vexfs_format::collection::{
    AttrValue, Attrs, CollectionRecord, Metric, TextParams, ATTR_RESERVED_PREFIX, ATTR_STR_MAX,
};
use vexfs_format::inode::{file_type, Timestamp};

use crate::embed::{self, chunk, Embedder};
use crate::engine::{EngineError, EngineHandle};
use crate::storage::Storage;
use crate::vector::search::filter::Filter;
use crate::vector::{CollectionSpec, VectorError, Vectors};

/// Bits of a chunk vector's id that number the chunk within its document.
pub const CHUNK_BITS: u32 = 20;
/// The most chunks one document is cut into; a document that needs more is skipped.
pub const CHUNKS_PER_DOC_MAX: usize = 1 << CHUNK_BITS;
/// The largest document indexed; a larger one is stored but skipped.
pub const DOC_BYTES_MAX: u64 = 16 << 20;
/// Jobs the indexing queue holds before front doors wait for room.
pub const QUEUE_MAX: usize = 1024;
/// Documents embedded together: their chunks share the embedder's batches.
const DOCS_PER_ROUND: usize = 32;
/// Bytes read from a document per engine read.
const READ_BYTES: u32 = 1 << 20;
/// The longest snippet a text hit carries, in bytes.
pub const SNIPPET_BYTES_MAX: usize = 200;
/// The largest k of a text search.
pub const TEXT_K_MAX: usize = 1000;

/// Reserved attribute keys of chunk vectors.
pub const ATTR_DOC: &str = "vexfs.doc";
pub const ATTR_START: &str = "vexfs.start";
pub const ATTR_END: &str = "vexfs.end";
pub const ATTR_CTIME: &str = "vexfs.ctime";

/// The vector id of chunk `chunk` of document `ino`.
pub fn chunk_id(ino: u64, chunk: usize) -> u64 {
    (ino << CHUNK_BITS) | chunk as u64
}

/// The document inode and chunk number of a chunk vector id.
pub fn split_chunk_id(id: u64) -> (u64, u32) {
    (id >> CHUNK_BITS, (id & ((1 << CHUNK_BITS) - 1)) as u32)
}

/// Text collection settings of the daemon.
#[derive(Clone, Debug)]
pub struct TextOptions {
    /// Where builtin models live, one directory per model (`--models-dir`).
    pub models_dir: PathBuf,
    /// The embedder of text collections created without one (`--embedder`).
    pub default_embedder: String,
}

impl Default for TextOptions {
    fn default() -> Self {
        TextOptions { models_dir: embed::MODELS_DIR_DEFAULT.into(), default_embedder: embed::SPEC_DEFAULT.into() }
    }
}

/// What a new collection is, as a front door asks for it.
#[derive(Clone, Debug)]
pub struct NewCollection {
    /// The dimension; 0 for a text collection means the embedder's.
    pub dim: u32,
    pub metric: Metric,
    pub shards: u32,
    /// For a text collection: the embedder spec (empty means the daemon's default) and chunking.
    pub text: Option<TextParams>,
}

/// One chunk a text search found.
#[derive(Clone, Debug, PartialEq)]
pub struct TextHit {
    pub id: u64,
    pub distance: f32,
    /// The document's name in the collection directory (empty if it is gone).
    pub name: Vec<u8>,
    pub ino: u64,
    pub chunk: u32,
    /// The chunk's byte range in the document.
    pub start: u64,
    pub end: u64,
    /// The chunk's first bytes (at most [`SNIPPET_BYTES_MAX`], on a char boundary), whitespace
    /// runs folded to one space.
    pub snippet: String,
}

/// A text collection's indexing progress, for `vexfs stats`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TextStats {
    /// Documents waiting to be (re)indexed, or being indexed.
    pub docs_queued: u64,
    /// Documents whose current content is searchable.
    pub docs_indexed: u64,
    /// Documents stored but not indexed (not UTF-8, too large, or the embedder failed).
    pub docs_skipped: u64,
    /// Chunk vectors of all documents.
    pub chunks: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Job {
    /// (Re)index one document.
    Doc { dir: u64, ino: u64 },
    /// Compare the directory with the index: add new documents, drop removed ones, and with
    /// `versions` (when the collection opens) also queue every document whose ctime differs
    /// from its vectors'.
    Dir { dir: u64, versions: bool },
}

impl Job {
    fn dir(self) -> u64 {
        match self {
            Job::Doc { dir, .. } | Job::Dir { dir, .. } => dir,
        }
    }
}

#[derive(Clone, Debug, Default)]
struct Doc {
    name: Vec<u8>,
    /// The ctime (ns) of the content the stored chunks came from; None when not indexed.
    version: Option<i64>,
    /// Chunk vectors stored for this document (ids `chunk_id(ino, 0..chunks)`).
    chunks: u32,
    /// Why the current content is not indexed.
    skipped: Option<String>,
}

struct Coll {
    params: TextParams,
    docs: HashMap<u64, Doc>,
}

#[derive(Default)]
struct State {
    /// Directories known to be text collections (true) or not (false).
    kinds: HashMap<u64, bool>,
    colls: HashMap<u64, Coll>,
    /// Document inode to its collection directory, for every open text collection.
    doc_dir: HashMap<u64, u64>,
    queue: VecDeque<Job>,
    queued: HashSet<Job>,
    busy: Vec<Job>,
    stop: bool,
}

impl State {
    fn push(&mut self, job: Job) {
        if self.queued.insert(job) {
            self.queue.push_back(job);
        }
    }

    fn pending(&self, pred: impl Fn(&Job) -> bool) -> bool {
        self.queue.iter().any(&pred) || self.busy.iter().any(&pred)
    }
}

struct Inner<S: Storage> {
    vectors: Arc<Vectors<S>>,
    options: TextOptions,
    embedders: Mutex<HashMap<String, Arc<dyn Embedder>>>,
    state: Mutex<State>,
    /// Signalled when a job is queued, when one finishes and when the queue has room.
    changed: Condvar,
}

/// The text-collection service over one vector service.
pub struct Texts<S: Storage> {
    inner: Arc<Inner<S>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl<S: Storage> Texts<S> {
    /// Starts the indexing thread.
    pub fn new(vectors: Arc<Vectors<S>>, options: TextOptions) -> Texts<S> {
        let inner = Arc::new(Inner {
            vectors,
            options,
            embedders: Mutex::new(HashMap::new()),
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
        });
        let worker = Arc::clone(&inner);
        let thread = std::thread::Builder::new()
            .name("vexfs-indexer".into())
            .spawn(move || indexer_loop(&worker))
            .expect("spawn the indexing thread");
        Texts { inner, thread: Mutex::new(Some(thread)) }
    }

    pub fn vectors(&self) -> &Arc<Vectors<S>> {
        &self.inner.vectors
    }

    fn engine(&self) -> &EngineHandle<S> {
        self.inner.vectors.engine()
    }

    /// Makes the empty directory `dir` a collection. A text collection's embedder is loaded
    /// first: a model that is not installed or a server that does not answer fails the create.
    pub fn create(&self, dir: u64, new: &NewCollection) -> Result<CollectionRecord, VectorError> {
        let mut spec = CollectionSpec { dim: new.dim, metric: new.metric, shards: new.shards, text: None };
        if let Some(text) = &new.text {
            let mut text = text.clone();
            if text.embedder.is_empty() {
                text.embedder = self.inner.options.default_embedder.clone();
            }
            let embedder = self.inner.embedder(&text.embedder)?;
            let dim = embedder.dim() as u32;
            if spec.dim != 0 && spec.dim != dim {
                return Err(VectorError::invalid(format!(
                    "dimension {} does not match the embedder {}, which makes vectors of dimension {dim}",
                    spec.dim, text.embedder
                )));
            }
            spec.dim = dim;
            spec.text = Some(text);
        }
        let record = self.inner.vectors.create(dir, &spec)?;
        self.inner.state.lock().kinds.insert(dir, record.text.is_some());
        Ok(record)
    }

    /// Whether `dir` is a text collection. The first call for a text collection opens it: its
    /// documents are listed and compared with its vectors, and stale ones are queued.
    pub fn is_text(&self, dir: u64) -> bool {
        let known = {
            let state = self.inner.state.lock();
            if state.colls.contains_key(&dir) {
                return true;
            }
            state.kinds.get(&dir).copied()
        };
        match known {
            Some(false) => false,
            _ => match self.inner.open(dir) {
                Ok(text) => text,
                Err(error) => {
                    tracing::warn!(dir, %error, "opening a text collection failed");
                    false
                }
            },
        }
    }

    /// A file was created or linked as `name` in `dir`.
    pub fn entry_added(&self, dir: u64, ino: u64, name: &[u8]) {
        if !self.is_text(dir) {
            return;
        }
        let mut state = self.inner.state.lock();
        let Some(coll) = state.colls.get_mut(&dir) else { return };
        coll.docs.entry(ino).or_default().name = name.to_vec();
        state.doc_dir.insert(ino, dir);
        drop(self.inner.enqueue(state, Job::Doc { dir, ino }));
    }

    /// Names in `dir` were removed or renamed: its documents are compared with the index.
    pub fn dir_changed(&self, dir: u64) {
        if self.is_text(dir) {
            drop(self.inner.enqueue(self.inner.state.lock(), Job::Dir { dir, versions: false }));
        }
    }

    /// The content or xattrs of file `ino` changed (or a writer closed it).
    pub fn file_changed(&self, ino: u64) {
        let state = self.inner.state.lock();
        if let Some(&dir) = state.doc_dir.get(&ino) {
            drop(self.inner.enqueue(state, Job::Doc { dir, ino }));
        }
    }

    /// For `fsync` of file `ino`: when it is a document, waits until its current content is
    /// searchable and makes its vectors durable. The caller has made the file's data durable.
    pub fn fsync(&self, ino: u64) -> Result<(), VectorError> {
        let mut state = self.inner.state.lock();
        let Some(&dir) = state.doc_dir.get(&ino) else { return Ok(()) };
        let job = Job::Doc { dir, ino };
        state = self.inner.enqueue(state, job);
        self.inner.wait_while(state, |j| *j == job);
        self.inner.vectors.sync(dir)
    }

    /// Makes every acknowledged change to `dir`'s vectors durable; for a text collection, first
    /// waits until every document in it is searchable.
    pub fn sync(&self, dir: u64) -> Result<(), VectorError> {
        if self.is_text(dir) {
            let state = self.inner.enqueue(self.inner.state.lock(), Job::Dir { dir, versions: false });
            self.inner.wait_while(state, |j| j.dir() == dir);
        }
        self.inner.vectors.sync(dir)
    }

    /// Indexing progress of `dir`; None when it is not a text collection.
    pub fn stats(&self, dir: u64) -> Option<TextStats> {
        if !self.is_text(dir) {
            return None;
        }
        let state = self.inner.state.lock();
        let coll = state.colls.get(&dir)?;
        let mut stats = TextStats {
            docs_queued: state
                .queue
                .iter()
                .chain(&state.busy)
                .filter(|j| matches!(j, Job::Doc { dir: d, .. } if *d == dir))
                .count() as u64,
            ..TextStats::default()
        };
        for doc in coll.docs.values() {
            stats.chunks += u64::from(doc.chunks);
            if doc.skipped.is_some() {
                stats.docs_skipped += 1;
            } else if doc.version.is_some() {
                stats.docs_indexed += 1;
            }
        }
        Some(stats)
    }

    /// The `k` chunks nearest to `text` in text collection `dir`, nearest first.
    pub fn search(&self, dir: u64, text: &str, k: usize, filter: Option<Filter>) -> Result<Vec<TextHit>, VectorError> {
        if k == 0 || k > TEXT_K_MAX {
            return Err(VectorError::invalid(format!("k = {k} is not in 1..={TEXT_K_MAX}")));
        }
        if text.trim().is_empty() {
            return Err(VectorError::invalid("the query text is empty"));
        }
        let params = self.params(dir)?;
        // Opens the collection's document table (names for the hits) if nothing has yet.
        self.is_text(dir);
        let embedder = self.inner.embedder(&params.embedder)?;
        let query = embedder.embed(&[text])?.pop().expect("one vector per text");
        let found = self.inner.vectors.knn(dir, &query, k, filter)?.pop().unwrap_or_default();
        let ids: Vec<u64> = found.iter().map(|n| n.id).collect();
        let attrs = self.inner.vectors.attrs(dir, &ids)?;
        let names: HashMap<u64, Vec<u8>> = {
            let state = self.inner.state.lock();
            let docs = state.colls.get(&dir).map(|c| &c.docs);
            ids.iter()
                .filter_map(|&id| {
                    let ino = split_chunk_id(id).0;
                    Some((ino, docs?.get(&ino)?.name.clone()))
                })
                .collect()
        };
        let mut hits = Vec::with_capacity(found.len());
        for (neighbor, attrs) in found.iter().zip(attrs) {
            let (ino, chunk) = split_chunk_id(neighbor.id);
            let int = |key: &str| -> u64 {
                attrs.as_ref().and_then(|a| a.iter().find(|(k, _)| k == key)).map_or(0, |(_, v)| match v {
                    AttrValue::Int(i) => *i as u64,
                    _ => 0,
                })
            };
            let (start, end) = (int(ATTR_START), int(ATTR_END));
            hits.push(TextHit {
                id: neighbor.id,
                distance: neighbor.distance,
                name: names.get(&ino).cloned().unwrap_or_default(),
                ino,
                chunk,
                start,
                end,
                snippet: self.snippet(ino, start, end),
            });
        }
        Ok(hits)
    }

    /// The text parameters of text collection `dir`.
    fn params(&self, dir: u64) -> Result<TextParams, VectorError> {
        match self.inner.vectors.record(dir)? {
            None => Err(VectorError::NotCollection(dir)),
            Some(CollectionRecord { text: Some(text), .. }) => Ok(text),
            Some(_) => Err(VectorError::invalid(
                "this collection holds raw vectors, not documents: search it with a query vector",
            )),
        }
    }

    /// The start of `ino`'s bytes `start..end`, for display. Empty when unreadable.
    fn snippet(&self, ino: u64, start: u64, end: u64) -> String {
        let want = (end.saturating_sub(start) as usize).min(SNIPPET_BYTES_MAX + 4);
        let Ok((buf, range)) = self.engine().read(ino, start, want as u32) else { return String::new() };
        let bytes = &buf[range];
        let text = match std::str::from_utf8(bytes) {
            Ok(text) => text,
            Err(e) => std::str::from_utf8(&bytes[..e.valid_up_to()]).unwrap_or_default(),
        };
        let mut cut = text.len().min(SNIPPET_BYTES_MAX);
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text[..cut].split_whitespace().collect::<Vec<_>>().join(" ")
    }

    /// `dir` (a collection) is being removed: forget its documents and queued jobs.
    pub fn forget(&self, dir: u64) {
        let mut state = self.inner.state.lock();
        state.kinds.remove(&dir);
        if let Some(coll) = state.colls.remove(&dir) {
            for ino in coll.docs.keys() {
                state.doc_dir.remove(ino);
            }
        }
        state.queue.retain(|j| j.dir() != dir);
        state.queued.retain(|j| j.dir() != dir);
        self.inner.changed.notify_all();
    }

    /// Stops indexing after the current round. Documents still queued are indexed when their
    /// collection is next opened (their ctime differs from their vectors').
    pub fn stop(&self) {
        self.inner.state.lock().stop = true;
        self.inner.changed.notify_all();
        if let Some(thread) = self.thread.lock().take() {
            let _ = thread.join();
        }
    }
}

impl<S: Storage> Drop for Texts<S> {
    fn drop(&mut self) {
        self.stop();
    }
}

impl<S: Storage> Inner<S> {
    fn engine(&self) -> &EngineHandle<S> {
        self.vectors.engine()
    }

    /// The embedder a spec names, loaded once and shared.
    fn embedder(&self, spec: &str) -> Result<Arc<dyn Embedder>, VectorError> {
        let mut embedders = self.embedders.lock();
        if let Some(embedder) = embedders.get(spec) {
            return Ok(Arc::clone(embedder));
        }
        let embedder: Arc<dyn Embedder> = Arc::from(embed::from_spec(spec, &self.options.models_dir)?);
        tracing::info!(spec, dim = embedder.dim(), "embedder loaded");
        embedders.insert(spec.to_string(), Arc::clone(&embedder));
        Ok(embedder)
    }

    /// Queues `job`, first waiting while the queue is full (unless stopping).
    fn enqueue<'a>(
        &self,
        mut state: parking_lot::MutexGuard<'a, State>,
        job: Job,
    ) -> parking_lot::MutexGuard<'a, State> {
        while state.queue.len() >= QUEUE_MAX && !state.queued.contains(&job) && !state.stop {
            self.changed.wait(&mut state);
        }
        state.push(job);
        self.changed.notify_all();
        state
    }

    /// Waits until no job `pending` selects is queued or running (or indexing stops).
    fn wait_while(&self, mut state: parking_lot::MutexGuard<'_, State>, pending: impl Fn(&Job) -> bool) {
        while state.pending(&pending) && !state.stop {
            self.changed.wait(&mut state);
        }
    }

    /// Opens `dir` if it is a text collection: loads its documents' index state from the
    /// vectors and queues a comparison with the directory. Returns whether it is one.
    fn open(&self, dir: u64) -> Result<bool, VectorError> {
        let Some(record) = self.vectors.record(dir)? else {
            self.state.lock().kinds.insert(dir, false);
            return Ok(false);
        };
        let Some(params) = record.text else {
            self.state.lock().kinds.insert(dir, false);
            return Ok(false);
        };
        let mut docs: HashMap<u64, Doc> = HashMap::new();
        for (id, ctime) in self.vectors.scan_attr(dir, ATTR_CTIME)? {
            let (ino, chunk) = split_chunk_id(id);
            let doc = docs.entry(ino).or_default();
            doc.chunks = doc.chunks.max(chunk + 1);
            if let Some(AttrValue::Int(ctime)) = ctime {
                doc.version = Some(ctime);
            }
        }
        // Names of the documents present; those absent are dropped by the queued comparison.
        self.engine().readdir(dir, 0, false, |item| {
            if item.dtype == DT_REG {
                docs.entry(item.ino).or_default().name = item.name.clone();
            }
            true
        })?;
        let mut state = self.state.lock();
        state.kinds.insert(dir, true);
        if !state.colls.contains_key(&dir) {
            for &ino in docs.keys() {
                state.doc_dir.insert(ino, dir);
            }
            state.colls.insert(dir, Coll { params, docs });
            state.push(Job::Dir { dir, versions: true });
            self.changed.notify_all();
        }
        Ok(true)
    }
}

/// `d_type` of a regular file in directory entries.
const DT_REG: u8 = 8;

fn ctime_ns(t: Timestamp) -> i64 {
    t.sec.saturating_mul(1_000_000_000).saturating_add(i64::from(t.nsec))
}

fn indexer_loop<S: Storage>(inner: &Inner<S>) {
    loop {
        let round = {
            let mut state = inner.state.lock();
            while state.queue.is_empty() && !state.stop {
                inner.changed.wait(&mut state);
            }
            if state.stop {
                return;
            }
            let first = state.queue.pop_front().expect("not empty");
            let mut round = vec![first];
            if let Job::Doc { dir, .. } = first {
                while round.len() < DOCS_PER_ROUND {
                    match state.queue.front() {
                        Some(&Job::Doc { dir: d, .. }) if d == dir => {
                            round.push(state.queue.pop_front().expect("front"))
                        }
                        _ => break,
                    }
                }
            }
            for job in &round {
                state.queued.remove(job);
            }
            state.busy.extend_from_slice(&round);
            inner.changed.notify_all();
            round
        };
        let outcome = match round[0] {
            Job::Dir { dir, versions } => reconcile(inner, dir, versions),
            Job::Doc { dir, .. } => {
                let inos: Vec<u64> = round
                    .iter()
                    .map(|j| match j {
                        Job::Doc { ino, .. } => *ino,
                        Job::Dir { .. } => unreachable!("rounds hold documents of one directory"),
                    })
                    .collect();
                index_docs(inner, dir, &inos)
            }
        };
        if let Err(error) = outcome {
            tracing::error!(dir = round[0].dir(), %error, "indexing documents failed");
        }
        let mut state = inner.state.lock();
        state.busy.clear();
        inner.changed.notify_all();
    }
}

/// Compares `dir`'s regular files with its index: documents not indexed at their current ctime
/// are queued, documents no longer in the directory lose their vectors.
fn reconcile<S: Storage>(inner: &Inner<S>, dir: u64, versions: bool) -> Result<(), VectorError> {
    let mut present: HashMap<u64, Vec<u8>> = HashMap::new();
    match inner.engine().readdir(dir, 0, false, |item| {
        if item.dtype == DT_REG {
            present.insert(item.ino, item.name.clone());
        }
        true
    }) {
        Ok(()) => {}
        // The directory went away; `forget` clears the rest.
        Err(EngineError::NotFound) => return Ok(()),
        Err(e) => return Err(e.into()),
    }
    let mut known = Vec::new();
    let mut gone = Vec::new();
    {
        let mut state = inner.state.lock();
        let State { colls, doc_dir, .. } = &mut *state;
        let Some(coll) = colls.get_mut(&dir) else { return Ok(()) };
        for (&ino, name) in &present {
            let doc = coll.docs.entry(ino).or_default();
            doc.name.clone_from(name);
            doc_dir.insert(ino, dir);
        }
        for (&ino, doc) in &coll.docs {
            if !present.contains_key(&ino) {
                gone.push((ino, doc.chunks));
            }
        }
        for &(ino, _) in &gone {
            coll.docs.remove(&ino);
            doc_dir.remove(&ino);
        }
        for (&ino, doc) in &coll.docs {
            known.push((ino, doc.version));
        }
    }
    for (ino, chunks) in gone {
        delete_chunks(inner, dir, ino, 0, chunks)?;
    }
    // Without `versions`, only documents never indexed are read: changes to the others arrive
    // as their own jobs, so the common case (an unlink, a rename) costs no inode reads.
    let stale: Vec<u64> = known
        .into_iter()
        .filter(|&(ino, version)| {
            if version.is_some() && !versions {
                return false;
            }
            let current = inner.engine().getattr(ino).map(|a| ctime_ns(a.record.ctime)).ok();
            current.is_none() || current != version
        })
        .map(|(ino, _)| ino)
        .collect();
    let mut state = inner.state.lock();
    for ino in stale {
        state.push(Job::Doc { dir, ino });
    }
    inner.changed.notify_all();
    Ok(())
}

/// Deletes chunk vectors `from..to` of document `ino`.
fn delete_chunks<S: Storage>(inner: &Inner<S>, dir: u64, ino: u64, from: u32, to: u32) -> Result<(), VectorError> {
    if from >= to {
        return Ok(());
    }
    let ids: Vec<u64> = (from..to).map(|c| chunk_id(ino, c as usize)).collect();
    inner.vectors.delete(dir, &ids)?;
    Ok(())
}

/// What reading a document gave.
enum Content {
    /// No longer a document of the collection.
    Gone,
    /// Stored but not indexed, with the reason.
    Skip {
        version: i64,
        reason: String,
    },
    Text {
        version: i64,
        text: String,
        attrs: Attrs,
    },
}

/// Reads document `ino` of `dir` and its `user.*` xattrs.
fn read_doc<S: Storage>(inner: &Inner<S>, dir: u64, ino: u64, name: &[u8]) -> Result<Content, VectorError> {
    let engine = inner.engine();
    let attr = match engine.getattr(ino) {
        Ok(attr) => attr,
        Err(EngineError::NotFound) => return Ok(Content::Gone),
        Err(e) => return Err(e.into()),
    };
    let record = attr.record;
    if record.nlink == 0 || record.kind() != file_type::REGULAR {
        return Ok(Content::Gone);
    }
    // Still linked here under the name we know (it may have been renamed away).
    if !name.is_empty() {
        match engine.child(dir, name) {
            Ok(Some(child)) if child == ino => {}
            Ok(_) | Err(EngineError::NotFound) => return Ok(Content::Gone),
            Err(e) => return Err(e.into()),
        }
    }
    let version = ctime_ns(record.ctime);
    if ino >> (64 - CHUNK_BITS) != 0 {
        return Ok(Content::Skip { version, reason: format!("inode {ino} is too large for chunk vector ids") });
    }
    if record.size > DOC_BYTES_MAX {
        return Ok(Content::Skip {
            version,
            reason: format!("{} bytes, larger than the {DOC_BYTES_MAX} bytes indexed", record.size),
        });
    }
    let mut bytes = Vec::with_capacity(record.size as usize);
    while (bytes.len() as u64) < record.size {
        let (buf, range) = engine.read(ino, bytes.len() as u64, READ_BYTES)?;
        if range.is_empty() {
            break;
        }
        bytes.extend_from_slice(&buf[range]);
    }
    let text = match String::from_utf8(bytes) {
        Ok(text) => text,
        Err(e) => {
            let at = e.utf8_error().valid_up_to();
            return Ok(Content::Skip { version, reason: format!("not UTF-8 text (invalid byte at offset {at})") });
        }
    };
    let mut attrs = Attrs::new();
    for key in engine.listxattr(ino)? {
        let Some(short) = key.strip_prefix(b"user.") else { continue };
        let (Ok(short), Ok(value)) = (std::str::from_utf8(short), engine.getxattr(ino, &key)) else { continue };
        if short.starts_with(ATTR_RESERVED_PREFIX) || short.is_empty() || value.len() > ATTR_STR_MAX {
            continue;
        }
        attrs.push((short.to_string(), attr_value(&value)));
    }
    Ok(Content::Text { version, text, attrs })
}

/// An xattr value as an attribute: an integer or float when the whole value reads as one,
/// otherwise the text (lossily decoded).
fn attr_value(value: &[u8]) -> AttrValue {
    let text = String::from_utf8_lossy(value);
    let trimmed = text.trim_end_matches(['\0', '\n']);
    if let Ok(int) = trimmed.parse::<i64>() {
        return AttrValue::Int(int);
    }
    if let Ok(float) = trimmed.parse::<f64>() {
        if float.is_finite() && !trimmed.eq_ignore_ascii_case("nan") && !trimmed.to_ascii_lowercase().contains("inf") {
            return AttrValue::Float(float);
        }
    }
    AttrValue::Str(trimmed.to_string())
}

/// One document of a round, ready to embed.
struct Ready {
    ino: u64,
    version: i64,
    text: String,
    chunks: Vec<chunk::Chunk>,
    attrs: Attrs,
}

/// (Re)indexes documents `inos` of `dir`: reads them, chunks them, embeds every chunk of the round
/// in one call, and replaces their vectors.
fn index_docs<S: Storage>(inner: &Inner<S>, dir: u64, inos: &[u64]) -> Result<(), VectorError> {
    let (params, known): (TextParams, Vec<(u64, Doc)>) = {
        let state = inner.state.lock();
        let Some(coll) = state.colls.get(&dir) else { return Ok(()) };
        let known = inos.iter().filter_map(|ino| Some((*ino, coll.docs.get(ino)?.clone()))).collect();
        (coll.params.clone(), known)
    };
    let mut ready = Vec::new();
    for (ino, doc) in known {
        let content = match read_doc(inner, dir, ino, &doc.name) {
            Ok(content) => content,
            Err(error) => {
                tracing::error!(dir, ino, %error, "reading a document to index failed");
                continue;
            }
        };
        match content {
            Content::Gone => {
                delete_chunks(inner, dir, ino, 0, doc.chunks)?;
                let mut state = inner.state.lock();
                if let Some(coll) = state.colls.get_mut(&dir) {
                    coll.docs.remove(&ino);
                }
                state.doc_dir.remove(&ino);
            }
            Content::Skip { version, reason } => {
                if doc.version == Some(version) && doc.skipped.is_some() {
                    continue;
                }
                skip_doc(inner, dir, ino, &doc, version, reason)?;
            }
            Content::Text { version, text, attrs } => {
                if doc.version == Some(version) && doc.skipped.is_none() {
                    continue;
                }
                let chunks = chunk::chunks(&text, params.chunk_bytes as usize, params.chunk_overlap as usize);
                if chunks.len() > CHUNKS_PER_DOC_MAX {
                    let reason = format!("{} chunks, more than the {CHUNKS_PER_DOC_MAX} indexed", chunks.len());
                    skip_doc(inner, dir, ino, &doc, version, reason)?;
                    continue;
                }
                ready.push((doc.chunks, Ready { ino, version, text, chunks, attrs }));
            }
        }
    }
    if ready.is_empty() {
        return Ok(());
    }
    let texts: Vec<&str> = ready.iter().flat_map(|(_, r)| r.chunks.iter().map(|c| &r.text[c.range()])).collect();
    let embedded = if texts.is_empty() {
        Ok(Vec::new())
    } else {
        inner.embedder(&params.embedder).and_then(|e| e.embed(&texts).map_err(VectorError::from))
    };
    let vectors = match embedded {
        Ok(vectors) => vectors,
        Err(error) => {
            tracing::error!(dir, %error, "embedding documents failed; they stay unindexed until written again");
            let reason = format!("embedding failed: {error}");
            for (_, r) in &ready {
                update_doc(inner, dir, r.ino, |d| {
                    d.skipped = Some(reason.clone());
                    d.version = None;
                });
            }
            return Ok(());
        }
    };
    drop(texts);
    let mut vectors = vectors.into_iter();
    for (old_chunks, r) in ready {
        let count = r.chunks.len();
        if count > 0 {
            let ids: Vec<u64> = (0..count).map(|c| chunk_id(r.ino, c)).collect();
            let mut flat = Vec::new();
            let mut attrs = Vec::with_capacity(count);
            for c in &r.chunks {
                flat.extend(vectors.next().expect("one vector per chunk"));
                let mut a: Attrs = vec![
                    (ATTR_DOC.to_string(), AttrValue::Int(r.ino as i64)),
                    (ATTR_START.to_string(), AttrValue::Int(c.start as i64)),
                    (ATTR_END.to_string(), AttrValue::Int(c.end as i64)),
                    (ATTR_CTIME.to_string(), AttrValue::Int(r.version)),
                ];
                a.extend(r.attrs.iter().cloned());
                attrs.push(a);
            }
            inner.vectors.insert_chunks(dir, &ids, flat, attrs)?;
        }
        delete_chunks(inner, dir, r.ino, count as u32, old_chunks)?;
        update_doc(inner, dir, r.ino, |d| {
            d.version = Some(r.version);
            d.chunks = count as u32;
            d.skipped = None;
        });
    }
    Ok(())
}

/// Document `ino` (as `doc` was) is stored but not indexed at `version`: its vectors go, and the
/// reason is logged and kept for `vexfs stats`.
fn skip_doc<S: Storage>(
    inner: &Inner<S>,
    dir: u64,
    ino: u64,
    doc: &Doc,
    version: i64,
    reason: String,
) -> Result<(), VectorError> {
    tracing::info!(dir, ino, name = %String::from_utf8_lossy(&doc.name), %reason, "document stored but not indexed");
    delete_chunks(inner, dir, ino, 0, doc.chunks)?;
    update_doc(inner, dir, ino, |d| {
        d.version = Some(version);
        d.chunks = 0;
        d.skipped = Some(reason);
    });
    Ok(())
}

fn update_doc<S: Storage>(inner: &Inner<S>, dir: u64, ino: u64, f: impl FnOnce(&mut Doc)) {
    let mut state = inner.state.lock();
    if let Some(doc) = state.colls.get_mut(&dir).and_then(|c| c.docs.get_mut(&ino)) {
        f(doc);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_ids_round_trip() {
        for (ino, chunk) in [(2u64, 0usize), (12345, 7), ((1 << 44) - 1, CHUNKS_PER_DOC_MAX - 1)] {
            assert_eq!(split_chunk_id(chunk_id(ino, chunk)), (ino, chunk as u32));
        }
    }

    #[test]
    fn xattr_values_become_typed_attributes() {
        assert_eq!(attr_value(b"2024"), AttrValue::Int(2024));
        assert_eq!(attr_value(b"-3\n"), AttrValue::Int(-3));
        assert_eq!(attr_value(b"0.5"), AttrValue::Float(0.5));
        assert_eq!(attr_value(b"en"), AttrValue::Str("en".into()));
        assert_eq!(attr_value(b"inf"), AttrValue::Str("inf".into()));
        assert_eq!(attr_value(b"NaN"), AttrValue::Str("NaN".into()));
    }
}
