//! Text collections: documents written into a text collection's directory are cut into chunks
//! ([`crate::embed::chunk`]), the chunks are embedded by the collection's embedder, and their
//! vectors are stored in the collection ([`crate::vector`]); a search by text finds chunks by
//! meaning and names the document, chunk and snippet.
//!
//! Indexing runs off the request path. Doors report what changed ([`Texts::entry_added`],
//! [`Texts::names_changed`], [`Texts::content_changed`], [`Texts::owner_changed`]) and return at
//! once: they never wait for room, for a lock held across I/O, or for an embedder. Each text
//! collection has its own queue of at most [`QUEUE_MAX`] documents; when it is full, the
//! collection is marked to be compared with its directory as a whole ([`Job::Dir`] with
//! versions), which finds every change the dropped jobs would have. Each embedder in use has one
//! indexing thread, which serves the collections that use it in turn, a round each: so a slow or
//! unreachable embedder delays only its own collections, and a collection with a long backlog
//! delays the others on its embedder by at most a round. [`Texts::fsync`] and [`Texts::sync`]
//! wait until what they cover is searchable, and give up when their caller interrupts.
//!
//! A text collection is opened by a background job ([`Job::Load`]) that the first request to
//! touch its directory queues: replaying its vectors can take a while, and a FUSE lookup must not
//! wait for it. Searches and stats wait for the load; changes reported meanwhile are kept, and
//! the comparison that follows the load catches what they missed.
//!
//! Invariants:
//! - A document's chunk `c` has vector id `ino << CHUNK_BITS | c` ([`chunk_id`]), so a document's
//!   vectors are found from its inode alone, and rewriting a document replaces them id for id.
//! - Every chunk vector carries the reserved attributes `vexfs.doc` (inode), `vexfs.start` and
//!   `vexfs.end` (the chunk's byte range in the document) and `vexfs.ctime` (the document's ctime
//!   in nanoseconds when it was read), then the document's `user.*` xattrs (without the `user.`
//!   prefix) as attributes of its own.
//! - A document is indexed when all its stored `vexfs.ctime`s equal its inode's ctime. ctime
//!   changes with every write, truncate, xattr change and rename, so a stale index is always
//!   detected: when a collection is loaded, every document whose ctime differs from its vectors'
//!   (or whose chunks disagree, or that has none) is queued again. This is how documents written
//!   but not indexed before a crash are caught up.
//! - Documents are the regular files directly in the collection's directory; each one's owner,
//!   group and mode are kept beside it ([`Doc::owner`]), updated by the door on every change, so
//!   that a search can leave out what its caller may not read.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use parking_lot::{Condvar, Mutex, MutexGuard};
use rustc_hash::FxHashSet;
use vexfs_format::collection::{
    AttrValue, Attrs, CollectionRecord, Metric, TextParams, ATTR_RESERVED_PREFIX, ATTR_STR_MAX,
};
use vexfs_format::inode::{file_type, Timestamp};

use crate::embed::chunk;
use crate::embed::registry::Registry;
use crate::engine::{Attr, EngineError, EngineHandle};
use crate::service::access::Owner;
use crate::service::Interrupt;
use crate::storage::Storage;
use crate::vector::search::filter::Filter;
use crate::vector::{CollectionSpec, VectorError, Vectors};

/// Bits of a chunk vector's id that number the chunk within its document.
pub const CHUNK_BITS: u32 = 20;
/// The most chunks one document is cut into; a document that needs more is stored but skipped.
pub const CHUNKS_PER_DOC_MAX: usize = 1 << 16;
/// Chunks embedded by one embedder call: bounds the text and vectors one round holds.
pub const CHUNKS_PER_ROUND_MAX: usize = 256;
/// The largest document indexed; a larger one is stored but skipped.
pub const DOC_BYTES_MAX: u64 = 16 << 20;
/// Documents one collection's queue holds; beyond, the collection is compared as a whole.
pub const QUEUE_MAX: usize = 1024;
/// Documents of one collection indexed per round, before the thread turns to the next collection.
const DOCS_PER_ROUND: usize = 32;
/// Directories remembered as not being text collections; the cache is cleared when full.
const PLAIN_CACHE_MAX: usize = 1 << 16;
/// Bytes read from a document per engine read.
const READ_BYTES: u32 = 1 << 20;
/// How often a waiting caller looks whether it was interrupted.
const WAIT_SLICE: Duration = Duration::from_millis(50);
/// How long stopping waits for the indexing threads to finish their rounds.
const STOP_WAIT_MAX: Duration = Duration::from_secs(5);
/// The longest snippet a text hit carries, in bytes.
pub const SNIPPET_BYTES_MAX: usize = 200;
/// The largest k of a text search.
pub const TEXT_K_MAX: usize = 1000;

const _: () = assert!(CHUNKS_PER_DOC_MAX <= 1 << CHUNK_BITS);

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

/// What a new text collection is, as the collection service passes it on (validated).
#[derive(Clone, Debug)]
pub struct NewText {
    /// The dimension; 0 means the embedder's.
    pub dim: u32,
    pub metric: Metric,
    pub shards: u32,
    /// The embedder's name; empty means the daemon's default.
    pub embedder: String,
    pub chunk_bytes: u32,
    pub chunk_overlap: u32,
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
    /// Read the collection's index state back from its vectors and directory.
    Load,
    /// (Re)index one document.
    Doc(u64),
    /// Compare the directory with the index: add new documents, drop removed ones, and with
    /// `versions` also queue every document whose ctime differs from its vectors'.
    Dir { versions: bool },
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
    /// Who may read it; None until first seen.
    owner: Option<Owner>,
}

struct Coll {
    params: TextParams,
    /// The defined name `params.embedder` resolves to: the indexing thread that serves this
    /// collection.
    embedder: String,
    docs: HashMap<u64, Doc>,
    queue: VecDeque<Job>,
    queued: HashSet<Job>,
    /// Jobs of the round being worked on.
    busy: Vec<Job>,
    loaded: bool,
}

impl Coll {
    fn pending(&self, pred: impl Fn(&Job) -> bool) -> bool {
        self.queue.iter().any(&pred) || self.busy.iter().any(&pred)
    }

    fn doc_jobs(&self) -> usize {
        self.queue.iter().filter(|j| matches!(j, Job::Doc(_))).count()
    }
}

#[derive(Default)]
struct State {
    /// Directories known not to be text collections.
    plain: HashSet<u64>,
    colls: HashMap<u64, Coll>,
    /// Document inode to its collection directory, for every open text collection.
    doc_dir: HashMap<u64, u64>,
    /// Per embedder name: collections with queued jobs and no round running, in turn order.
    ready: HashMap<String, VecDeque<u64>>,
    stop: bool,
}

impl State {
    /// Queues `job` for `dir`'s collection, keeping its queue bounded: a document job beyond
    /// [`QUEUE_MAX`] becomes one comparison of the whole directory. Returns whether the caller
    /// must wake the indexing threads.
    fn push(&mut self, dir: u64, job: Job) -> bool {
        let Some(coll) = self.colls.get_mut(&dir) else { return false };
        let job = match job {
            Job::Doc(_) if coll.doc_jobs() >= QUEUE_MAX => Job::Dir { versions: true },
            job => job,
        };
        if !coll.queued.insert(job) {
            return false;
        }
        if job == Job::Load {
            coll.queue.push_front(job);
        } else {
            coll.queue.push_back(job);
        }
        if coll.busy.is_empty() {
            let ready = self.ready.entry(coll.embedder.clone()).or_default();
            if !ready.contains(&dir) {
                ready.push_back(dir);
            }
        }
        true
    }
}

struct Inner<S: Storage> {
    vectors: Arc<Vectors<S>>,
    embedders: Arc<Registry>,
    state: Mutex<State>,
    /// Signalled when a job is queued or a round ends.
    changed: Condvar,
    /// The indexing thread of each embedder in use.
    threads: Mutex<HashMap<String, JoinHandle<()>>>,
}

/// The text-collection service over one vector service.
pub struct Texts<S: Storage> {
    inner: Arc<Inner<S>>,
}

/// Why a wait ended early.
pub enum WaitError {
    Interrupted,
    Stopped,
}

impl<S: Storage> Texts<S> {
    pub fn new(vectors: Arc<Vectors<S>>, embedders: Arc<Registry>) -> Texts<S> {
        let inner = Arc::new(Inner {
            vectors,
            embedders,
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
            threads: Mutex::new(HashMap::new()),
        });
        Texts { inner }
    }

    pub fn vectors(&self) -> &Arc<Vectors<S>> {
        &self.inner.vectors
    }

    pub fn embedders(&self) -> &Registry {
        &self.inner.embedders
    }

    fn engine(&self) -> &EngineHandle<S> {
        self.inner.vectors.engine()
    }

    /// Makes the empty directory `dir` a text collection. Its embedder is loaded first: a model
    /// that is not installed or a server that does not answer fails the create.
    pub fn create(&self, dir: u64, new: &NewText) -> Result<CollectionRecord, VectorError> {
        let name = if new.embedder.is_empty() { self.embedders().default_name() } else { &new.embedder };
        let name = self.embedders().resolve(name)?;
        let embedder = self.embedders().get(&name)?;
        let dim = embedder.dim() as u32;
        if new.dim != 0 && new.dim != dim {
            return Err(VectorError::invalid(format!(
                "dimension {} does not match the embedder {name}, which makes vectors of dimension {dim}",
                new.dim
            )));
        }
        let params =
            TextParams { embedder: name.clone(), chunk_bytes: new.chunk_bytes, chunk_overlap: new.chunk_overlap };
        let spec = CollectionSpec { dim, metric: new.metric, shards: new.shards, text: Some(params.clone()) };
        let record = self.inner.vectors.create(dir, &spec)?;
        let coll = Coll::new(params, name, true);
        self.inner.register(dir, coll);
        Ok(record)
    }

    /// Whether `dir` is a text collection. The first call for one queues its loading and
    /// returns without waiting for it.
    pub fn is_text(&self, dir: u64) -> bool {
        {
            let state = self.inner.state.lock();
            if state.colls.contains_key(&dir) {
                return true;
            }
            if state.plain.contains(&dir) {
                return false;
            }
        }
        match self.inner.vectors.record(dir) {
            Ok(Some(CollectionRecord { text: Some(params), .. })) => match self.embedders().resolve(&params.embedder) {
                Ok(name) => {
                    self.inner.register(dir, Coll::new(params, name, false));
                    true
                }
                Err(error) => {
                    tracing::warn!(dir, %error, "text collection not opened");
                    false
                }
            },
            Ok(_) => {
                let mut state = self.inner.state.lock();
                if state.plain.len() >= PLAIN_CACHE_MAX {
                    state.plain.clear();
                }
                state.plain.insert(dir);
                false
            }
            Err(error) => {
                tracing::warn!(dir, %error, "reading a collection record failed");
                false
            }
        }
    }

    /// File `attr` was created or linked as `name` in `dir`.
    pub fn entry_added(&self, dir: u64, attr: &Attr, name: &[u8]) {
        if !self.is_text(dir) || attr.record.kind() != file_type::REGULAR {
            return;
        }
        let mut state = self.inner.state.lock();
        let Some(coll) = state.colls.get_mut(&dir) else { return };
        let doc = coll.docs.entry(attr.ino).or_default();
        doc.name = name.to_vec();
        doc.owner = Some(Owner::from(&attr.record));
        state.doc_dir.insert(attr.ino, dir);
        drop(self.inner.queue(state, dir, Job::Doc(attr.ino)));
    }

    /// Names in `dir` were removed or renamed: its documents are compared with the index.
    pub fn names_changed(&self, dir: u64) {
        if self.is_text(dir) {
            drop(self.inner.queue(self.inner.state.lock(), dir, Job::Dir { versions: false }));
        }
    }

    /// The content or xattrs of file `ino` changed (or a writer closed it).
    pub fn content_changed(&self, ino: u64) {
        let state = self.inner.state.lock();
        if let Some(&dir) = state.doc_dir.get(&ino) {
            drop(self.inner.queue(state, dir, Job::Doc(ino)));
        }
    }

    /// File `attr`'s owner, group or mode may have changed: searches see the new ones at once.
    pub fn owner_changed(&self, attr: &Attr) {
        let mut state = self.inner.state.lock();
        let Some(&dir) = state.doc_dir.get(&attr.ino) else { return };
        if let Some(doc) = state.colls.get_mut(&dir).and_then(|c| c.docs.get_mut(&attr.ino)) {
            doc.owner = Some(Owner::from(&attr.record));
        }
    }

    /// For `fsync` of file `ino`: when it is a document, waits until its current content is
    /// searchable and returns its collection (whose vectors the caller then makes durable).
    pub fn fsync(&self, ino: u64, interrupt: &Interrupt) -> Result<Option<u64>, WaitError> {
        // A collection still loading may hold the document without knowing it yet.
        let state = self.inner.wait(self.inner.state.lock(), interrupt, |s| s.colls.values().any(|c| !c.loaded))?;
        let Some(&dir) = state.doc_dir.get(&ino) else { return Ok(None) };
        let job = Job::Doc(ino);
        let state = self.inner.queue(state, dir, job);
        drop(self.inner.wait(state, interrupt, |s| s.colls.get(&dir).is_some_and(|c| c.pending(|j| *j == job)))?);
        Ok(Some(dir))
    }

    /// For a sync of text collection `dir`: waits until every document in it is searchable.
    /// False when `dir` is not a text collection.
    pub fn settle(&self, dir: u64, interrupt: &Interrupt) -> Result<bool, WaitError> {
        if !self.is_text(dir) {
            return Ok(false);
        }
        let state = self.inner.queue(self.inner.state.lock(), dir, Job::Dir { versions: false });
        drop(self.inner.wait(state, interrupt, |s| {
            s.colls.get(&dir).is_some_and(|c| !c.loaded || !c.queue.is_empty() || !c.busy.is_empty())
        })?);
        Ok(true)
    }

    /// Indexing progress of `dir`; None when it is not a text collection. Waits for the load.
    pub fn stats(&self, dir: u64, interrupt: &Interrupt) -> Result<Option<TextStats>, WaitError> {
        if !self.is_text(dir) {
            return Ok(None);
        }
        let state = self.inner.loaded(dir, interrupt)?;
        let Some(coll) = state.colls.get(&dir) else { return Ok(None) };
        let docs_queued = coll.queue.iter().chain(&coll.busy).filter(|j| matches!(j, Job::Doc(_))).count() as u64;
        let mut stats = TextStats { docs_queued, ..TextStats::default() };
        for doc in coll.docs.values() {
            stats.chunks += u64::from(doc.chunks);
            if doc.skipped.is_some() {
                stats.docs_skipped += 1;
            } else if doc.version.is_some() {
                stats.docs_indexed += 1;
            }
        }
        Ok(Some(stats))
    }

    /// The documents of text collection `dir` with their owners (read now for those not seen
    /// yet), after its load.
    pub fn doc_owners(&self, dir: u64, interrupt: &Interrupt) -> Result<Vec<(u64, Owner)>, VectorError> {
        let (known, unknown): (Vec<_>, Vec<_>) = {
            let state = self.inner.loaded(dir, interrupt).map_err(|_| VectorError::Closed)?;
            let Some(coll) = state.colls.get(&dir) else { return Ok(Vec::new()) };
            coll.docs.iter().map(|(&ino, doc)| (ino, doc.owner)).partition(|(_, owner)| owner.is_some())
        };
        let mut out: Vec<(u64, Owner)> = known.into_iter().filter_map(|(ino, o)| Some((ino, o?))).collect();
        for (ino, _) in unknown {
            match self.engine().getattr(ino) {
                Ok(attr) => {
                    self.owner_changed(&attr);
                    out.push((ino, Owner::from(&attr.record)));
                }
                Err(EngineError::NotFound) => {}
                Err(error) => return Err(error.into()),
            }
        }
        Ok(out)
    }

    /// The `k` chunks nearest to `text` in text collection `dir`, nearest first, leaving out the
    /// documents in `hidden` (inode numbers).
    pub fn search(
        &self,
        dir: u64,
        text: &str,
        k: usize,
        filter: Option<Filter>,
        hidden: FxHashSet<i64>,
    ) -> Result<Vec<TextHit>, VectorError> {
        if k == 0 || k > TEXT_K_MAX {
            return Err(VectorError::invalid(format!("k = {k} is not in 1..={TEXT_K_MAX}")));
        }
        if text.trim().is_empty() {
            return Err(VectorError::invalid("the query text is empty"));
        }
        let params = self.params(dir)?;
        let embedder = self.embedders().get(&params.embedder)?;
        let query =
            embedder.embed(&[text])?.pop().ok_or_else(|| VectorError::invalid("the embedder returned nothing"))?;
        let filter = match (filter, hidden.is_empty()) {
            (filter, true) => filter,
            (None, false) => Some(Filter::NotIn(ATTR_DOC.to_string(), Arc::new(hidden))),
            (Some(filter), false) => {
                Some(Filter::And(vec![filter, Filter::NotIn(ATTR_DOC.to_string(), Arc::new(hidden))]))
            }
        };
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
                snippet: String::new(),
            });
        }
        Ok(hits)
    }

    /// The text parameters of text collection `dir`.
    pub fn params(&self, dir: u64) -> Result<TextParams, VectorError> {
        match self.inner.vectors.record(dir)? {
            None => Err(VectorError::NotCollection(dir)),
            Some(CollectionRecord { text: Some(text), .. }) => Ok(text),
            Some(_) => Err(VectorError::invalid(
                "this collection holds raw vectors, not documents: search it with a query vector",
            )),
        }
    }

    /// The start of `ino`'s bytes `start..end`, for display. Empty when unreadable.
    pub fn snippet(&self, ino: u64, start: u64, end: u64) -> String {
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
        state.plain.remove(&dir);
        if let Some(coll) = state.colls.remove(&dir) {
            for ino in coll.docs.keys() {
                state.doc_dir.remove(ino);
            }
            if let Some(ready) = state.ready.get_mut(&coll.embedder) {
                ready.retain(|&d| d != dir);
            }
        }
        self.inner.changed.notify_all();
    }

    /// Stops indexing after the current rounds. Documents still queued are indexed when their
    /// collection is next loaded (their ctime differs from their vectors').
    ///
    /// A thread still inside its embedder after [`STOP_WAIT_MAX`] (a server that does not
    /// answer) is left to finish on its own: it stores nothing once indexing has stopped.
    pub fn stop(&self) {
        self.inner.state.lock().stop = true;
        self.inner.changed.notify_all();
        let threads: Vec<(String, JoinHandle<()>)> = self.inner.threads.lock().drain().collect();
        let deadline = std::time::Instant::now() + STOP_WAIT_MAX;
        for (embedder, thread) in threads {
            while !thread.is_finished() && std::time::Instant::now() < deadline {
                std::thread::sleep(WAIT_SLICE / 5);
            }
            if thread.is_finished() {
                let _ = thread.join();
            } else {
                tracing::warn!(embedder, "an indexing thread is still waiting for its embedder; not waiting for it");
            }
        }
    }
}

impl<S: Storage> Drop for Texts<S> {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Coll {
    fn new(params: TextParams, embedder: String, loaded: bool) -> Coll {
        Coll {
            params,
            embedder,
            docs: HashMap::new(),
            queue: VecDeque::new(),
            queued: HashSet::new(),
            busy: Vec::new(),
            loaded,
        }
    }
}

impl<S: Storage> Inner<S> {
    fn engine(&self) -> &EngineHandle<S> {
        self.vectors.engine()
    }

    /// Adds text collection `dir` (queueing its load when it is not loaded) and starts its
    /// embedder's indexing thread if none runs yet.
    fn register(self: &Arc<Self>, dir: u64, coll: Coll) {
        let embedder = coll.embedder.clone();
        let loaded = coll.loaded;
        {
            let mut state = self.state.lock();
            if state.colls.contains_key(&dir) {
                return;
            }
            state.plain.remove(&dir);
            state.colls.insert(dir, coll);
            if !loaded {
                state.push(dir, Job::Load);
            }
        }
        self.changed.notify_all();
        let mut threads = self.threads.lock();
        if threads.contains_key(&embedder) || self.state.lock().stop {
            return;
        }
        let inner = Arc::clone(self);
        let name = embedder.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("vexfs-index-{embedder}"))
            .spawn(move || indexer_loop(&inner, &name));
        match spawned {
            Ok(thread) => {
                threads.insert(embedder, thread);
            }
            Err(error) => tracing::error!(%error, embedder, "cannot start an indexing thread"),
        }
    }

    /// Queues `job` for `dir` and wakes the indexing threads; never waits.
    fn queue<'a>(&self, mut state: MutexGuard<'a, State>, dir: u64, job: Job) -> MutexGuard<'a, State> {
        if state.push(dir, job) {
            self.changed.notify_all();
        }
        state
    }

    /// Waits while `pending` holds, looking at `interrupt` every [`WAIT_SLICE`].
    fn wait<'a>(
        &self,
        mut state: MutexGuard<'a, State>,
        interrupt: &Interrupt,
        pending: impl Fn(&State) -> bool,
    ) -> Result<MutexGuard<'a, State>, WaitError> {
        while pending(&state) {
            if state.stop {
                return Err(WaitError::Stopped);
            }
            if interrupt.is_set() {
                return Err(WaitError::Interrupted);
            }
            self.changed.wait_for(&mut state, WAIT_SLICE);
        }
        Ok(state)
    }

    /// The state once `dir`'s collection is loaded (or gone).
    fn loaded(&self, dir: u64, interrupt: &Interrupt) -> Result<MutexGuard<'_, State>, WaitError> {
        self.wait(self.state.lock(), interrupt, |s| s.colls.get(&dir).is_some_and(|c| !c.loaded))
    }

    /// Loads `dir`'s index state: the documents named by its vectors, with their versions and
    /// chunk counts, and the regular files of its directory with their owners.
    fn load(&self, dir: u64) -> Result<(), VectorError> {
        let mut docs: HashMap<u64, Doc> = HashMap::new();
        let mut disagree = HashSet::new();
        for (id, ctime) in self.vectors.scan_attr(dir, ATTR_CTIME)? {
            let (ino, chunk) = split_chunk_id(id);
            let doc = docs.entry(ino).or_default();
            doc.chunks = doc.chunks.max(chunk + 1);
            let version = match ctime {
                Some(AttrValue::Int(ctime)) => Some(ctime),
                _ => None,
            };
            // Chunks of two versions (a crash between the rounds of a long document): stale.
            if doc.version.is_some() && doc.version != version {
                disagree.insert(ino);
            }
            doc.version = doc.version.or(version);
        }
        for ino in disagree {
            if let Some(doc) = docs.get_mut(&ino) {
                doc.version = None;
            }
        }
        self.engine().readdir_attrs(dir, |item| {
            if item.dtype == DT_REG {
                let doc = docs.entry(item.ino).or_default();
                doc.name = item.name.clone();
                doc.owner = item.attr.as_ref().map(|a| Owner::from(&a.record));
            }
            true
        })?;
        let mut state = self.state.lock();
        let State { colls, doc_dir, .. } = &mut *state;
        let Some(coll) = colls.get_mut(&dir) else { return Ok(()) };
        for (ino, found) in docs {
            doc_dir.insert(ino, dir);
            // Documents reported while loading keep what they learned (name, owner).
            let doc = coll.docs.entry(ino).or_default();
            if doc.name.is_empty() {
                doc.name = found.name;
            }
            doc.owner = doc.owner.or(found.owner);
            doc.version = found.version;
            doc.chunks = found.chunks;
        }
        coll.loaded = true;
        state.push(dir, Job::Dir { versions: true });
        self.changed.notify_all();
        Ok(())
    }
}

/// `d_type` of a regular file in directory entries.
const DT_REG: u8 = 8;

fn ctime_ns(t: Timestamp) -> i64 {
    t.sec.saturating_mul(1_000_000_000).saturating_add(i64::from(t.nsec))
}

/// The indexing thread of embedder `embedder`: serves the collections that use it in turn, one
/// round each, until indexing stops.
fn indexer_loop<S: Storage>(inner: &Inner<S>, embedder: &str) {
    loop {
        let Some((dir, round)) = next_round(inner, embedder) else { return };
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run_round(inner, dir, &round)))
            .unwrap_or_else(|panic| {
                let reason = crate::service::panic_message(panic.as_ref());
                Err(VectorError::invalid(format!("indexing panicked: {reason}")))
            });
        if let Err(error) = outcome {
            tracing::error!(dir, %error, "indexing documents failed");
        }
        let mut state = inner.state.lock();
        let State { colls, ready, .. } = &mut *state;
        if let Some(coll) = colls.get_mut(&dir) {
            coll.busy.clear();
            if !coll.queue.is_empty() {
                ready.entry(coll.embedder.clone()).or_default().push_back(dir);
            }
        }
        inner.changed.notify_all();
    }
}

/// Waits for a collection of `embedder` with queued jobs and takes its next round: a load, a
/// comparison, or up to [`DOCS_PER_ROUND`] documents. None when indexing stops.
fn next_round<S: Storage>(inner: &Inner<S>, embedder: &str) -> Option<(u64, Vec<Job>)> {
    let mut state = inner.state.lock();
    loop {
        if state.stop {
            return None;
        }
        let State { colls, ready, .. } = &mut *state;
        while let Some(dir) = ready.get_mut(embedder).and_then(VecDeque::pop_front) {
            let Some(coll) = colls.get_mut(&dir) else { continue };
            let Some(first) = coll.queue.pop_front() else { continue };
            let mut round = vec![first];
            if let Job::Doc(_) = first {
                while round.len() < DOCS_PER_ROUND && matches!(coll.queue.front(), Some(Job::Doc(_))) {
                    round.extend(coll.queue.pop_front());
                }
            }
            for job in &round {
                coll.queued.remove(job);
            }
            coll.busy.clone_from(&round);
            return Some((dir, round));
        }
        inner.changed.wait(&mut state);
    }
}

fn run_round<S: Storage>(inner: &Inner<S>, dir: u64, round: &[Job]) -> Result<(), VectorError> {
    match round[0] {
        Job::Load => inner.load(dir),
        Job::Dir { versions } => reconcile(inner, dir, versions),
        Job::Doc(_) => {
            let inos: Vec<u64> =
                round.iter().filter_map(|j| if let Job::Doc(ino) = j { Some(*ino) } else { None }).collect();
            index_docs(inner, dir, &inos)
        }
    }
}

/// Compares `dir`'s regular files with its index: documents not indexed at their current ctime
/// are queued, documents no longer in the directory lose their vectors.
fn reconcile<S: Storage>(inner: &Inner<S>, dir: u64, versions: bool) -> Result<(), VectorError> {
    let mut present: HashMap<u64, (Vec<u8>, Option<Attr>)> = HashMap::new();
    match inner.engine().readdir_attrs(dir, |item| {
        if item.dtype == DT_REG {
            present.insert(item.ino, (item.name.clone(), item.attr));
        }
        true
    }) {
        Ok(()) => {}
        // The directory went away; `forget` clears the rest.
        Err(EngineError::NotFound) => return Ok(()),
        Err(e) => return Err(e.into()),
    }
    let mut stale = Vec::new();
    let mut gone = Vec::new();
    {
        let mut state = inner.state.lock();
        let State { colls, doc_dir, .. } = &mut *state;
        let Some(coll) = colls.get_mut(&dir) else { return Ok(()) };
        for (&ino, (name, attr)) in &present {
            let doc = coll.docs.entry(ino).or_default();
            doc.name.clone_from(name);
            if let Some(attr) = attr {
                doc.owner = Some(Owner::from(&attr.record));
                // Without `versions`, only documents never indexed are queued: changes to the
                // others arrive as their own jobs, so an unlink or a rename costs no reindexing.
                let current = ctime_ns(attr.record.ctime);
                if doc.version != Some(current) && (versions || doc.version.is_none()) {
                    stale.push(ino);
                }
            }
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
    }
    for (ino, chunks) in gone {
        delete_chunks(inner, dir, ino, 0, chunks)?;
    }
    let mut state = inner.state.lock();
    for ino in stale {
        state.push(dir, Job::Doc(ino));
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
    while (bytes.len() as u64) < record.size.min(DOC_BYTES_MAX) {
        let (buf, range) = engine.read(ino, bytes.len() as u64, READ_BYTES)?;
        if range.is_empty() {
            break;
        }
        bytes.extend_from_slice(&buf[range]);
    }
    bytes.truncate(DOC_BYTES_MAX as usize);
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
        // The reserved keys and the document's own share a vector's attribute bound.
        if attrs.len() + 4 >= vexfs_format::collection::ATTRS_MAX {
            break;
        }
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

/// One document of a round, read and chunked, ready to embed.
struct Ready {
    ino: u64,
    version: i64,
    text: String,
    chunks: Vec<chunk::Chunk>,
    attrs: Attrs,
    /// Chunk vectors stored before this round.
    old_chunks: u32,
}

/// (Re)indexes documents `inos` of `dir`: reads and chunks them, embeds their chunks
/// [`CHUNKS_PER_ROUND_MAX`] at a time, and replaces their vectors.
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
                ready.push(Ready { ino, version, text, chunks, attrs, old_chunks: doc.chunks });
            }
        }
    }
    let embedder = match inner.embedders.get(&params.embedder) {
        Ok(embedder) => embedder,
        Err(error) => {
            embedding_failed(inner, dir, &ready, &error.to_string());
            return Ok(());
        }
    };
    for doc in &ready {
        if let Err(error) = embed_doc(inner, dir, embedder.as_ref(), doc) {
            match error {
                VectorError::Embed(error) => {
                    embedding_failed(inner, dir, std::slice::from_ref(doc), &error.to_string());
                    continue;
                }
                other => return Err(other),
            }
        }
        delete_chunks(inner, dir, doc.ino, doc.chunks.len() as u32, doc.old_chunks)?;
        update_doc(inner, dir, doc.ino, |d| {
            d.version = Some(doc.version);
            d.chunks = doc.chunks.len() as u32;
            d.skipped = None;
        });
    }
    Ok(())
}

/// Embeds document `doc`'s chunks in rounds of [`CHUNKS_PER_ROUND_MAX`] and stores each round's
/// vectors (replacing the chunks of those ids).
fn embed_doc<S: Storage>(
    inner: &Inner<S>,
    dir: u64,
    embedder: &dyn crate::embed::Embedder,
    doc: &Ready,
) -> Result<(), VectorError> {
    for (round, chunks) in doc.chunks.chunks(CHUNKS_PER_ROUND_MAX).enumerate() {
        let texts: Vec<&str> = chunks.iter().map(|c| &doc.text[c.range()]).collect();
        let vectors = embedder.embed(&texts)?;
        if vectors.len() != chunks.len() {
            return Err(VectorError::invalid(format!(
                "the embedder returned {} vectors for {} chunks",
                vectors.len(),
                chunks.len()
            )));
        }
        if inner.state.lock().stop {
            return Err(VectorError::Closed);
        }
        let first = round * CHUNKS_PER_ROUND_MAX;
        let ids: Vec<u64> = (first..first + chunks.len()).map(|c| chunk_id(doc.ino, c)).collect();
        let mut attrs = Vec::with_capacity(chunks.len());
        for c in chunks {
            let mut a: Attrs = vec![
                (ATTR_DOC.to_string(), AttrValue::Int(doc.ino as i64)),
                (ATTR_START.to_string(), AttrValue::Int(c.start as i64)),
                (ATTR_END.to_string(), AttrValue::Int(c.end as i64)),
                (ATTR_CTIME.to_string(), AttrValue::Int(doc.version)),
            ];
            a.extend(doc.attrs.iter().cloned());
            attrs.push(a);
        }
        inner.vectors.insert_chunks(dir, &ids, vectors.concat(), attrs)?;
    }
    Ok(())
}

/// The embedder failed for `docs`: they stay unindexed until written again.
fn embedding_failed<S: Storage>(inner: &Inner<S>, dir: u64, docs: &[Ready], error: &str) {
    if docs.is_empty() {
        return;
    }
    tracing::error!(dir, %error, "embedding documents failed; they stay unindexed until written again");
    let reason = format!("embedding failed: {error}");
    for doc in docs {
        update_doc(inner, dir, doc.ino, |d| {
            d.skipped = Some(reason.clone());
            d.version = None;
        });
    }
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
        for (ino, chunk) in [(2u64, 0usize), (12345, 7), ((1 << 44) - 1, (1 << CHUNK_BITS) - 1)] {
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

    #[test]
    fn a_full_queue_turns_into_one_comparison() {
        let mut state = State::default();
        let params = TextParams { embedder: "e".into(), chunk_bytes: 100, chunk_overlap: 10 };
        state.colls.insert(7, Coll::new(params, "e".into(), true));
        for ino in 0..QUEUE_MAX as u64 + 100 {
            state.push(7, Job::Doc(ino));
        }
        let coll = &state.colls[&7];
        assert_eq!(coll.doc_jobs(), QUEUE_MAX);
        assert_eq!(coll.queue.len(), QUEUE_MAX + 1);
        assert_eq!(coll.queue.back(), Some(&Job::Dir { versions: true }));
        assert_eq!(state.ready["e"], VecDeque::from([7]));
        state.push(7, Job::Load);
        assert_eq!(state.colls[&7].queue.front(), Some(&Job::Load), "a load goes first");
    }
}
