//! The vector service: shard-owning worker threads and the API front doors call.
//!
//! Each worker thread owns the shards assigned to it (shard `s` of every collection goes to worker
//! `s % workers`) and is the only thread that touches them; its device I/O goes through its own
//! io_uring ring (the storage layer gives every thread one). A request is split by shard and each
//! part handed to the owner as a job; the caller waits for the owners' answers and merges them. A
//! search therefore runs on every core at once, each core scanning its own shards.
//!
//! A vector with id `i` lives in shard `i % shards`. Ids a caller does not give are assigned from a
//! per-collection counter that starts above the largest id stored.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, unbounded, Receiver, Sender};
use parking_lot::Mutex;
use vexfs_format::collection::{
    validate_attrs, AttrValue, Attrs, CollectionRecord, ElemType, Metric, TextParams, DIM_MAX, SHARDS_MAX,
};

use super::search::{self, filter::Filter, kernels, Neighbor};
use super::shard::{Shard, ShardStats};
use super::writer::LogWriter;
use super::VectorError;
use crate::engine::EngineHandle;
use crate::storage::Storage;

/// How long a shard worker waits without work before it writes its pending records out.
const FLUSH_IDLE: Duration = Duration::from_secs(1);

/// The largest k a k-NN search accepts.
pub const K_MAX: usize = 10_000;
/// The most results a range search returns per query.
pub const RANGE_LIMIT_MAX: usize = 100_000;
/// The most queries in one search request.
pub const QUERIES_MAX: usize = 100_000;
/// The most results one search request returns: queries × k, or queries × limit. 4 Mi results
/// are 64 MiB of (id, distance) pairs.
pub const RESULTS_MAX: usize = 1 << 22;
/// The largest vector id a caller may give or a collection assign: `i64::MAX`, so that ids fit
/// the signed 64-bit integers numpy, FAISS and JSON readers use for them.
pub const ID_MAX: u64 = i64::MAX as u64;

/// What a new collection is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CollectionSpec {
    pub dim: u32,
    pub metric: Metric,
    /// Shards; 0 means one per worker.
    pub shards: u32,
    pub text: Option<TextParams>,
}

/// A collection's parameters and counters, as `vexfs stats` shows them.
#[derive(Clone, Debug, PartialEq)]
pub struct CollectionStats {
    pub dim: u32,
    pub metric: Metric,
    pub elem: ElemType,
    pub shards: u32,
    pub text: Option<TextParams>,
    pub vectors: u64,
    pub dead_rows: u64,
    pub log_bytes: u64,
    pub pending_bytes: u64,
    pub memory_bytes: u64,
    pub inserts: u64,
    pub deletes: u64,
    pub searches: u64,
    pub queries: u64,
    /// Total time spent answering searches, in microseconds.
    pub search_micros: u64,
    pub simd: &'static str,
}

type Job = Box<dyn FnOnce(&mut Owned) + Send>;

/// What one worker owns: shards by shard-log inode, and the writer of their logs.
struct Owned {
    shards: HashMap<u64, Shard>,
    writer: LogWriter,
    /// Shards closed because a request panicked on them, with the panic's message: their memory
    /// may be half-changed, so they answer nothing until the daemon restarts and replays them.
    failed: HashMap<u64, String>,
}

struct Worker {
    jobs: Sender<Job>,
    thread: Option<JoinHandle<()>>,
}

#[derive(Default)]
struct Counters {
    inserts: AtomicU64,
    deletes: AtomicU64,
    searches: AtomicU64,
    queries: AtomicU64,
    search_micros: AtomicU64,
}

/// One shard's part of an insert batch.
#[derive(Default)]
struct Part {
    rows: Vec<u32>,
    ids: Vec<u64>,
    attrs: Vec<Attrs>,
    /// ‖row‖² per row, computed by the owner before the rows are applied.
    sq_norms: Vec<f32>,
    /// The index in the batch of the first value that is not finite, if any.
    bad: Option<usize>,
    /// The first row whose values are finite but whose squared norm is not (its distances would
    /// be infinite or NaN), if any.
    too_large: Option<usize>,
}

/// An open collection.
struct Open {
    record: CollectionRecord,
    next_id: AtomicU64,
    counters: Counters,
}

/// A collection's place in the table of open collections: the first request opens it (replays
/// its logs) holding only this slot's lock, so a long replay delays requests for this
/// collection alone.
#[derive(Default)]
struct Slot {
    open: std::sync::OnceLock<Arc<Open>>,
    opening: Mutex<()>,
}

/// The vector service over one engine.
pub struct Vectors<S: Storage> {
    engine: EngineHandle<S>,
    workers: Vec<Worker>,
    open: Mutex<HashMap<u64, Arc<Slot>>>,
}

impl<S: Storage> Vectors<S> {
    /// Starts `workers` shard-owning threads (at least one).
    pub fn new(engine: EngineHandle<S>, workers: usize) -> Vectors<S> {
        let workers = (0..workers.max(1))
            .map(|index| {
                let (jobs, queue) = unbounded::<Job>();
                let engine = engine.clone();
                let thread = std::thread::Builder::new()
                    .name(format!("vexfs-shard-{index}"))
                    .spawn(move || worker_loop(queue, engine, index))
                    .expect("spawn a shard worker");
                Worker { jobs, thread: Some(thread) }
            })
            .collect();
        Vectors { engine, workers, open: Mutex::new(HashMap::new()) }
    }

    pub fn engine(&self) -> &EngineHandle<S> {
        &self.engine
    }

    pub fn worker_count(&self) -> usize {
        self.workers.len()
    }

    /// Makes the empty directory `dir` a collection.
    pub fn create(&self, dir: u64, spec: &CollectionSpec) -> Result<CollectionRecord, VectorError> {
        if spec.dim == 0 || spec.dim > DIM_MAX {
            return Err(VectorError::invalid(format!("dimension {} is not in 1..={DIM_MAX}", spec.dim)));
        }
        let shards = if spec.shards == 0 { self.workers.len() as u32 } else { spec.shards };
        if shards > SHARDS_MAX {
            return Err(VectorError::invalid(format!("{shards} shards: at most {SHARDS_MAX}")));
        }
        let record = self.engine.collection_create(dir, shards as usize, |inos| CollectionRecord {
            dim: spec.dim,
            metric: spec.metric,
            elem: ElemType::F32,
            shards: inos,
            text: spec.text.clone(),
        })?;
        self.engine.sync()?;
        Ok(record)
    }

    /// The collection record of `dir`, or None when `dir` is not a collection.
    pub fn record(&self, dir: u64) -> Result<Option<CollectionRecord>, VectorError> {
        if let Some(open) = self.open.lock().get(&dir).and_then(|slot| slot.open.get().cloned()) {
            return Ok(Some(open.record.clone()));
        }
        Ok(self.engine.collection(dir)?)
    }

    /// Inserts vectors (`vectors.len() / dim` of them) with the given ids, or assigned ones when
    /// `ids` is None, and optional attributes (empty, or one entry per vector). Returns the ids.
    /// Acknowledged in memory; durable after [`Vectors::sync`]. A text collection's vectors come
    /// from its documents only ([`crate::text`]), so callers cannot insert into one.
    pub fn insert(
        &self,
        dir: u64,
        ids: Option<&[u64]>,
        vectors: Vec<f32>,
        attrs: Vec<Attrs>,
    ) -> Result<Vec<u64>, VectorError> {
        let open = self.open(dir)?;
        if open.record.text.is_some() {
            return Err(VectorError::invalid(
                "this is a text collection: its vectors come from the documents written into it",
            ));
        }
        if let Some(id) = ids.and_then(|ids| ids.iter().find(|&&id| id > ID_MAX)) {
            return Err(VectorError::invalid(format!("id {id} is above the largest id, {ID_MAX}")));
        }
        self.insert_open(&open, ids, vectors, attrs, false)
    }

    /// Inserts a document's chunk vectors into a text collection; their attributes may use the
    /// reserved `vexfs.` keys.
    pub(crate) fn insert_chunks(
        &self,
        dir: u64,
        ids: &[u64],
        vectors: Vec<f32>,
        attrs: Vec<Attrs>,
    ) -> Result<Vec<u64>, VectorError> {
        let open = self.open(dir)?;
        self.insert_open(&open, Some(ids), vectors, attrs, true)
    }

    fn insert_open(
        &self,
        open: &Arc<Open>,
        ids: Option<&[u64]>,
        mut vectors: Vec<f32>,
        attrs: Vec<Attrs>,
        reserved_keys: bool,
    ) -> Result<Vec<u64>, VectorError> {
        let dim = open.record.dim as usize;
        if vectors.is_empty() || !vectors.len().is_multiple_of(dim) {
            return Err(VectorError::invalid(format!(
                "{} values do not make whole vectors of dimension {dim}",
                vectors.len()
            )));
        }
        let count = vectors.len() / dim;
        if let Some(ids) = ids {
            if ids.len() != count {
                return Err(VectorError::invalid(format!("{} ids for {count} vectors", ids.len())));
            }
        }
        if !attrs.is_empty() && attrs.len() != count {
            return Err(VectorError::invalid(format!("{} attribute sets for {count} vectors", attrs.len())));
        }
        for (i, a) in attrs.iter().enumerate() {
            validate_attrs(a, reserved_keys)
                .map_err(|e| VectorError::invalid(format!("vector {i}: attributes: {e}")))?;
        }
        let cosine = open.record.metric == Metric::Cosine;
        if cosine {
            // Cosine rows are normalised here, so they are checked here, before.
            if let Some(bad) = first_non_finite(&vectors) {
                return Err(non_finite(&vectors, dim, bad));
            }
            for (i, v) in vectors.chunks_exact_mut(dim).enumerate() {
                if !search::normalize(v) {
                    return Err(VectorError::invalid(format!("vector {i} is all zeros: cosine needs a direction")));
                }
            }
        }
        let ids: Vec<u64> = match ids {
            Some(ids) => {
                let mut seen = std::collections::HashSet::with_capacity(ids.len());
                if let Some(dup) = ids.iter().find(|id| !seen.insert(**id)) {
                    return Err(VectorError::invalid(format!("id {dup} appears twice in one batch")));
                }
                let top = ids.iter().max().copied().unwrap_or(0);
                open.next_id.fetch_max(top.saturating_add(1), Ordering::AcqRel);
                ids.to_vec()
            }
            None => {
                let first = assign_ids(&open.next_id, count as u64)?;
                (first..first + count as u64).collect()
            }
        };
        // Each shard's part: its rows of the shared batch (in batch order), ids and attributes.
        let shard_count = open.record.shards.len();
        let mut parts: Vec<Part> = (0..shard_count).map(|_| Part::default()).collect();
        let mut attrs = attrs.into_iter();
        for (row, &id) in ids.iter().enumerate() {
            let part = &mut parts[(id % shard_count as u64) as usize];
            part.rows.push(row as u32);
            part.ids.push(id);
            if let Some(a) = attrs.next() {
                part.attrs.push(a);
            }
        }
        let batch = Arc::new(vectors);
        // First pass, on the owners in parallel: each part's squared norms, which also check the
        // values (a NaN or an infinity makes a norm non-finite). Nothing is applied unless every
        // part passes, so a bad value anywhere stores nothing.
        let jobs = parts.into_iter().map(|part| (Arc::clone(&batch), part)).collect();
        let parts = self.on_shards(open, jobs, move |_, (batch, mut part)| {
            measure_rows(&batch, dim, &mut part);
            Ok((batch, part))
        })?;
        if let Some(bad) = parts.iter().filter_map(|(_, part)| part.bad).min() {
            return Err(non_finite(&batch, dim, bad));
        }
        if let Some(row) = parts.iter().filter_map(|(_, part)| part.too_large).min() {
            return Err(too_large("vector", row));
        }
        self.on_owned_shards(open, parts, move |shard, writer, (batch, part)| {
            if part.ids.is_empty() {
                return Ok(());
            }
            let attrs = if part.attrs.iter().all(|a| a.is_empty()) { Vec::new() } else { part.attrs };
            shard.insert_rows(writer, batch, part.rows, part.ids, &part.sq_norms, attrs)?;
            shard.compact();
            Ok(())
        })?;
        open.counters.inserts.fetch_add(count as u64, Ordering::Relaxed);
        Ok(ids)
    }

    /// Deletes vectors by id; returns how many existed.
    pub fn delete(&self, dir: u64, ids: &[u64]) -> Result<u64, VectorError> {
        let open = self.open(dir)?;
        let shard_count = open.record.shards.len() as u64;
        let mut parts: Vec<Vec<u64>> = vec![Vec::new(); shard_count as usize];
        for &id in ids {
            parts[(id % shard_count) as usize].push(id);
        }
        let counts = self.on_owned_shards(&open, parts, |shard, writer, ids| {
            if ids.is_empty() {
                return Ok(0);
            }
            let deleted = shard.delete(writer, &ids)?;
            shard.compact();
            Ok(deleted)
        })?;
        let deleted: usize = counts.into_iter().sum();
        open.counters.deletes.fetch_add(deleted as u64, Ordering::Relaxed);
        Ok(deleted as u64)
    }

    /// The `k` nearest vectors to each query (`queries.len() / dim` of them), nearest first.
    pub fn knn(
        &self,
        dir: u64,
        queries: &[f32],
        k: usize,
        filter: Option<Filter>,
    ) -> Result<Vec<Vec<Neighbor>>, VectorError> {
        if k == 0 || k > K_MAX {
            return Err(VectorError::invalid(format!("k = {k} is not in 1..={K_MAX}")));
        }
        self.search(dir, queries, filter, k, move |shard, metric, queries, filter| {
            shard.knn(metric, queries, k, filter)
        })
    }

    /// Every vector within `radius` of each query, nearest first, at most `limit` per query.
    pub fn range(
        &self,
        dir: u64,
        queries: &[f32],
        radius: f32,
        filter: Option<Filter>,
        limit: usize,
    ) -> Result<Vec<Vec<Neighbor>>, VectorError> {
        if !radius.is_finite() {
            return Err(VectorError::invalid(format!("radius {radius} is not a finite number")));
        }
        if limit == 0 || limit > RANGE_LIMIT_MAX {
            return Err(VectorError::invalid(format!("limit {limit} is not in 1..={RANGE_LIMIT_MAX}")));
        }
        self.search(dir, queries, filter, limit, move |shard, metric, queries, filter| {
            shard.range(metric, queries, radius, filter, limit)
        })
    }

    /// Runs `search` on every shard of `dir`'s collection at once and merges the answers into the
    /// `keep` nearest per query.
    fn search(
        &self,
        dir: u64,
        queries: &[f32],
        filter: Option<Filter>,
        keep: usize,
        search: impl Fn(&Shard, Metric, &[f32], Option<&Filter>) -> Vec<Vec<Neighbor>> + Send + Sync + 'static,
    ) -> Result<Vec<Vec<Neighbor>>, VectorError> {
        let (open, queries) = self.prepare_queries(dir, queries)?;
        let started = Instant::now();
        let query_count = queries.len() / open.record.dim as usize;
        let results = query_count as u64 * keep as u64;
        if results > RESULTS_MAX as u64 {
            return Err(VectorError::TooManyResults { results });
        }
        let metric = open.record.metric;
        let shared = Arc::new((queries, filter));
        let parts = vec![Arc::clone(&shared); open.record.shards.len()];
        let results =
            self.on_shards(&open, parts, move |shard, job| Ok(search(shard, metric, &job.0, job.1.as_ref())))?;
        let merged = search::merge(results, keep);
        let c = &open.counters;
        c.searches.fetch_add(1, Ordering::Relaxed);
        c.queries.fetch_add(query_count as u64, Ordering::Relaxed);
        c.search_micros.fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
        Ok(merged)
    }

    /// Makes every acknowledged change to `dir`'s vectors durable.
    pub fn sync(&self, dir: u64) -> Result<(), VectorError> {
        self.flush(dir)?;
        self.engine.sync()?;
        Ok(())
    }

    /// Writes `dir`'s pending changes to its shard logs (durable at the engine's next commit).
    pub fn flush(&self, dir: u64) -> Result<(), VectorError> {
        let open = self.open(dir)?;
        let parts = vec![(); open.record.shards.len()];
        self.on_owned_shards(&open, parts, |shard, writer, ()| shard.flush(writer))?;
        Ok(())
    }

    /// The attributes of each of `ids` (None for an id not stored), in order.
    pub fn attrs(&self, dir: u64, ids: &[u64]) -> Result<Vec<Option<Attrs>>, VectorError> {
        let open = self.open(dir)?;
        let shard_count = open.record.shards.len();
        let mut parts: Vec<Vec<(usize, u64)>> = vec![Vec::new(); shard_count];
        for (at, &id) in ids.iter().enumerate() {
            parts[(id % shard_count as u64) as usize].push((at, id));
        }
        let found = self.on_shards(&open, parts, |shard, part| {
            Ok(part.into_iter().map(|(at, id)| (at, shard.attrs_of(id))).collect::<Vec<_>>())
        })?;
        let mut out = vec![None; ids.len()];
        for (at, attrs) in found.into_iter().flatten() {
            out[at] = attrs;
        }
        Ok(out)
    }

    /// Every stored id of `dir`'s collection with its value of attribute `key`, if any.
    pub fn scan_attr(&self, dir: u64, key: &'static str) -> Result<Vec<(u64, Option<AttrValue>)>, VectorError> {
        let open = self.open(dir)?;
        let parts = vec![(); open.record.shards.len()];
        let found = self.on_shards(&open, parts, move |shard, ()| Ok(shard.scan_attr(key)))?;
        Ok(found.into_iter().flatten().collect())
    }

    /// Parameters and counters of `dir`'s collection.
    pub fn stats(&self, dir: u64) -> Result<CollectionStats, VectorError> {
        let open = self.open(dir)?;
        let parts = vec![(); open.record.shards.len()];
        let shards: Vec<ShardStats> = self.on_shards(&open, parts, |shard, ()| Ok(shard.stats()))?;
        let sum = |f: fn(&ShardStats) -> u64| shards.iter().map(f).sum::<u64>();
        let c = &open.counters;
        Ok(CollectionStats {
            dim: open.record.dim,
            metric: open.record.metric,
            elem: open.record.elem,
            shards: open.record.shards.len() as u32,
            text: open.record.text.clone(),
            vectors: sum(|s| s.vectors),
            dead_rows: sum(|s| s.dead_rows),
            log_bytes: sum(|s| s.log_bytes),
            pending_bytes: sum(|s| s.pending_bytes),
            memory_bytes: sum(|s| s.memory_bytes),
            inserts: c.inserts.load(Ordering::Relaxed),
            deletes: c.deletes.load(Ordering::Relaxed),
            searches: c.searches.load(Ordering::Relaxed),
            queries: c.queries.load(Ordering::Relaxed),
            search_micros: c.search_micros.load(Ordering::Relaxed),
            simd: search::kernels::simd_level(),
        })
    }

    /// Writes every open collection's pending changes to its logs (before unmount or sync).
    pub fn flush_all(&self) -> Result<(), VectorError> {
        let dirs: Vec<u64> =
            self.open.lock().iter().filter(|(_, slot)| slot.open.get().is_some()).map(|(dir, _)| *dir).collect();
        for dir in dirs {
            self.flush(dir)?;
        }
        Ok(())
    }

    /// Closes `dir`'s collection without flushing (it is being removed): its shards leave their
    /// owners' memory. Call before removing the directory.
    pub fn forget(&self, dir: u64) {
        let Some(slot) = self.open.lock().remove(&dir) else { return };
        let Some(open) = slot.open.get() else { return };
        let parts = vec![(); open.record.shards.len()];
        let shards = open.record.shards.clone();
        let _ = self.run_on(&shards, parts, |owned, ino, ()| {
            owned.shards.remove(&ino);
            owned.failed.remove(&ino);
            owned.writer.forget(ino);
            Ok(())
        });
    }

    fn prepare_queries(&self, dir: u64, queries: &[f32]) -> Result<(Arc<Open>, Vec<f32>), VectorError> {
        let open = self.open(dir)?;
        let dim = open.record.dim as usize;
        if queries.is_empty() || !queries.len().is_multiple_of(dim) {
            return Err(VectorError::invalid(format!(
                "{} query values do not make whole vectors of dimension {dim}",
                queries.len()
            )));
        }
        if queries.len() / dim > QUERIES_MAX {
            return Err(VectorError::invalid(format!("{} queries: at most {QUERIES_MAX}", queries.len() / dim)));
        }
        if let Some(bad) = first_non_finite(queries) {
            return Err(VectorError::invalid(format!(
                "query {} component {} is {}",
                bad / dim,
                bad % dim,
                queries[bad]
            )));
        }
        // Cosine queries are normalised in f64 below; the others are scored as they are.
        if open.record.metric != Metric::Cosine {
            if let Some(i) = queries.chunks_exact(dim).position(|q| !kernels::norm_squared(q).is_finite()) {
                return Err(too_large("query", i));
            }
        }
        let mut queries = queries.to_vec();
        if open.record.metric == Metric::Cosine {
            for (i, q) in queries.chunks_exact_mut(dim).enumerate() {
                if !search::normalize(q) {
                    return Err(VectorError::invalid(format!("query {i} is all zeros: cosine needs a direction")));
                }
            }
        }
        Ok((open, queries))
    }

    /// The open collection of `dir`, opening it (replaying its shard logs on their owners) on
    /// first use. Only `dir`'s slot is locked while it opens.
    fn open(&self, dir: u64) -> Result<Arc<Open>, VectorError> {
        let slot = Arc::clone(self.open.lock().entry(dir).or_default());
        if let Some(open) = slot.open.get() {
            return Ok(Arc::clone(open));
        }
        let opening = slot.opening.lock();
        if let Some(open) = slot.open.get() {
            return Ok(Arc::clone(open));
        }
        let opened = self.replay(dir);
        drop(opening);
        match opened {
            Ok(open) => Ok(Arc::clone(slot.open.get_or_init(|| open))),
            Err(error) => {
                // Not kept: a directory that is no collection (or failed to open) leaves no slot.
                let mut table = self.open.lock();
                if table.get(&dir).is_some_and(|s| Arc::ptr_eq(s, &slot) && s.open.get().is_none()) {
                    table.remove(&dir);
                }
                Err(error)
            }
        }
    }

    /// Reads `dir`'s collection record, replays the shard logs its owners do not hold yet, and
    /// hands each owner its shard. The replays run on threads of their own, a few at a time, not
    /// on the owners: a long replay must not hold the workers that serve other collections.
    fn replay(&self, dir: u64) -> Result<Arc<Open>, VectorError> {
        let record = self.engine.collection(dir)?.ok_or(VectorError::NotCollection(dir))?;
        let dim = record.dim as usize;
        let parts = vec![(); record.shards.len()];
        let held = self.run_on(&record.shards, parts, |owned, ino, ()| Ok(owned.shards.contains_key(&ino)))?;
        let mut opened: Vec<Option<Shard>> = (0..record.shards.len()).map(|_| None).collect();
        let missing: Vec<usize> = (0..record.shards.len()).filter(|&i| !held[i]).collect();
        for batch in missing.chunks(self.workers.len()) {
            let shards = std::thread::scope(|scope| {
                let replays: Vec<_> = batch
                    .iter()
                    .map(|&i| {
                        let (engine, ino) = (&self.engine, record.shards[i]);
                        (i, scope.spawn(move || Shard::open(engine, ino, dim)))
                    })
                    .collect();
                replays.into_iter().map(|(i, replay)| (i, join_replay(record.shards[i], replay))).collect::<Vec<_>>()
            });
            for (i, shard) in shards {
                opened[i] = Some(shard?);
            }
        }
        let max_ids = self.run_on(&record.shards, opened, move |owned, ino, opened| {
            if let Some(shard) = opened {
                owned.shards.entry(ino).or_insert(shard);
            }
            // Gone since it was found held: the collection is being removed.
            let shard = owned.shards.get(&ino).ok_or(VectorError::Closed)?;
            Ok(shard.stats().max_id)
        })?;
        let next_id = max_ids.into_iter().flatten().max().map_or(0, |m| m.saturating_add(1));
        Ok(Arc::new(Open { record, next_id: AtomicU64::new(next_id), counters: Counters::default() }))
    }

    /// Runs `f` on every shard of `open` (on the shard's owner), with that shard's part.
    fn on_shards<P, R>(
        &self,
        open: &Open,
        parts: Vec<P>,
        f: impl Fn(&mut Shard, P) -> Result<R, VectorError> + Send + Sync + 'static,
    ) -> Result<Vec<R>, VectorError>
    where
        P: Send + 'static,
        R: Send + 'static,
    {
        self.on_owned_shards(open, parts, move |shard, _, part| f(shard, part))
    }

    /// [`Vectors::on_shards`] with the owner's log writer.
    fn on_owned_shards<P, R>(
        &self,
        open: &Open,
        parts: Vec<P>,
        f: impl Fn(&mut Shard, &mut LogWriter, P) -> Result<R, VectorError> + Send + Sync + 'static,
    ) -> Result<Vec<R>, VectorError>
    where
        P: Send + 'static,
        R: Send + 'static,
    {
        self.run_on(&open.record.shards, parts, move |owned, ino, part| {
            if let Some(reason) = owned.failed.get(&ino) {
                return Err(VectorError::WorkerFailed { shard: ino, reason: reason.clone() });
            }
            let shard = owned.shards.get_mut(&ino).ok_or(VectorError::Closed)?;
            f(shard, &mut owned.writer, part)
        })
    }

    /// Hands `f(owner state, shard inode, part)` to the owner of each of `shards` and collects the
    /// answers in shard order. The first error wins.
    fn run_on<P, R>(
        &self,
        shards: &[u64],
        parts: Vec<P>,
        f: impl Fn(&mut Owned, u64, P) -> Result<R, VectorError> + Send + Sync + 'static,
    ) -> Result<Vec<R>, VectorError>
    where
        P: Send + 'static,
        R: Send + 'static,
    {
        assert_eq!(shards.len(), parts.len());
        let f = Arc::new(f);
        let (answers, replies) = bounded::<(usize, Result<R, VectorError>)>(shards.len());
        for (index, (ino, part)) in shards.iter().copied().zip(parts).enumerate() {
            let f = Arc::clone(&f);
            let answers = answers.clone();
            let job: Job = Box::new(move |owned| {
                // A panic is contained to the shard it happened on (see `Owned::failed`): the
                // worker goes on serving its other shards.
                let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(owned, ino, part)))
                    .unwrap_or_else(|panic| {
                        let reason = crate::service::panic_message(panic.as_ref());
                        tracing::error!(shard = ino, %reason, "a request panicked on its shard; the shard is closed");
                        owned.shards.remove(&ino);
                        owned.failed.insert(ino, reason.clone());
                        Err(VectorError::WorkerFailed { shard: ino, reason })
                    });
                let _ = answers.send((index, result));
            });
            let worker = &self.workers[index % self.workers.len()];
            worker.jobs.send(job).map_err(|_| VectorError::Closed)?;
        }
        drop(answers);
        let mut results: Vec<Option<Result<R, VectorError>>> = (0..shards.len()).map(|_| None).collect();
        for (index, result) in replies.iter() {
            results[index] = Some(result);
        }
        results.into_iter().map(|r| r.unwrap_or(Err(VectorError::Closed))).collect()
    }
}

impl<S: Storage> Drop for Vectors<S> {
    fn drop(&mut self) {
        for worker in &mut self.workers {
            // Closing the channel ends the worker's loop.
            let (closed, _) = unbounded();
            worker.jobs = closed;
        }
        for worker in &mut self.workers {
            if let Some(thread) = worker.thread.take() {
                let _ = thread.join();
            }
        }
    }
}

/// Runs jobs; when idle for [`FLUSH_IDLE`], writes its shards' pending records to their logs, so
/// that acknowledged vectors nobody syncs still reach the device within the engine's commit
/// interval after that, as unsynced file data does.
fn worker_loop<S: Storage>(queue: Receiver<Job>, engine: EngineHandle<S>, index: usize) {
    let mut owned = Owned { shards: HashMap::new(), writer: LogWriter::start(engine, index), failed: HashMap::new() };
    loop {
        match queue.recv_timeout(FLUSH_IDLE) {
            Ok(job) => job(&mut owned),
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => flush_idle(&mut owned),
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => return,
        }
    }
}

/// The shard a replay thread built; a replay that panicked fails its shard as a request would.
fn join_replay(
    ino: u64,
    replay: std::thread::ScopedJoinHandle<'_, Result<Shard, VectorError>>,
) -> Result<Shard, VectorError> {
    replay.join().unwrap_or_else(|panic| {
        let reason = crate::service::panic_message(panic.as_ref());
        tracing::error!(shard = ino, %reason, "replaying a shard log panicked");
        Err(VectorError::WorkerFailed { shard: ino, reason })
    })
}

/// Writes every shard's pending records to its log; a shard whose flush panics is closed as a
/// request's would be.
fn flush_idle(owned: &mut Owned) {
    let inos: Vec<u64> = owned.shards.keys().copied().collect();
    for ino in inos {
        let Owned { shards, writer, failed } = &mut *owned;
        let Some(shard) = shards.get_mut(&ino) else { continue };
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| shard.flush(writer))) {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::error!(%error, "writing a shard log in the background failed"),
            Err(panic) => {
                let reason = crate::service::panic_message(panic.as_ref());
                tracing::error!(shard = ino, %reason, "a background flush panicked; the shard is closed");
                shards.remove(&ino);
                failed.insert(ino, reason);
            }
        }
    }
}

/// Takes `count` ids from a collection's counter; fails, taking none, when the last would pass
/// [`ID_MAX`].
fn assign_ids(next_id: &AtomicU64, count: u64) -> Result<u64, VectorError> {
    next_id
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |next| {
            next.checked_add(count).filter(|&end| end <= ID_MAX.saturating_add(1)).map(|_| next + count)
        })
        .map_err(|next| VectorError::IdsExhausted { next, count })
}

/// Fills `part.sq_norms` with the squared norms of its rows of `batch`, or sets `part.bad` to the
/// first value that is not finite, or `part.too_large` to the first row whose squared norm
/// overflows.
fn measure_rows(batch: &[f32], dim: usize, part: &mut Part) {
    part.sq_norms.reserve_exact(part.rows.len());
    for &row in &part.rows {
        let values = &batch[row as usize * dim..(row as usize + 1) * dim];
        let sq_norm = kernels::norm_squared(values);
        // A finite norm proves every value finite; a non-finite one may also come from large
        // finite values whose squares overflow, so look.
        if !sq_norm.is_finite() {
            match values.iter().position(|v| !v.is_finite()) {
                Some(at) => part.bad = Some(row as usize * dim + at),
                None => part.too_large = Some(row as usize),
            }
            return;
        }
        part.sq_norms.push(sq_norm);
    }
}

/// A vector or query whose values are finite but too large to square: its distances would be
/// infinite or NaN.
fn too_large(what: &str, index: usize) -> VectorError {
    VectorError::invalid(format!(
        "{what} {index}: its squared norm overflows float32 (the sum of its squared values must stay below 3.4e38)"
    ))
}

fn non_finite(batch: &[f32], dim: usize, bad: usize) -> VectorError {
    VectorError::invalid(format!(
        "vector {} component {} is {} (only finite values are stored)",
        bad / dim,
        bad % dim,
        batch[bad]
    ))
}

/// The index of the first NaN or infinity in `values`. Checks blocks with a branch-free fold the
/// compiler vectorises, and looks for the position only in a block that has one.
fn first_non_finite(values: &[f32]) -> Option<usize> {
    const BLOCK: usize = 1024;
    values.chunks(BLOCK).enumerate().find_map(|(block, chunk)| {
        let finite = chunk.iter().fold(true, |all, v| all & v.is_finite());
        if finite {
            None
        } else {
            chunk.iter().position(|v| !v.is_finite()).map(|at| block * BLOCK + at)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::fs::Creds;
    use crate::engine::{Clock, Engine, EngineOptions};
    use crate::errno::Errno;
    use crate::io::sim::SimStorage;
    use vexfs_format::inode::{Timestamp, ROOT_INO};
    use vexfs_format::mkfs::{image, MkfsParams};

    struct Still;

    impl Clock for Still {
        fn now(&self) -> Timestamp {
            Timestamp { sec: 1_800_000_000, nsec: 0 }
        }
    }

    fn collection(vectors: &Vectors<Arc<SimStorage>>, name: &str) -> u64 {
        let creds = Creds { uid: 0, gid: 0 };
        let dir = vectors.engine().mkdir(ROOT_INO, name.as_bytes(), 0o755, creds).expect("mkdir").ino;
        let spec = CollectionSpec { dim: 2, metric: Metric::L2, shards: 2, text: None };
        vectors.create(dir, &spec).expect("create");
        vectors.insert(dir, None, vec![0.0, 0.0, 1.0, 1.0, 2.0, 2.0, 3.0, 3.0], Vec::new()).expect("insert");
        dir
    }

    /// Goal: a panic while a worker serves a shard closes that shard only; the worker, its other
    /// shards and other collections go on, and the closed shard answers EIO.
    #[test]
    fn a_panic_closes_only_its_shard() {
        let params = MkfsParams { size_bytes: 64 << 20, uuid: [3; 16], now: Still.now(), label: "t", uid: 0, gid: 0 };
        let sim = Arc::new(SimStorage::from_image(image(&params).expect("image")));
        let options = EngineOptions { cache_bytes: 16 << 20, commit_interval: Duration::from_secs(3600) };
        let engine = Engine::open(sim, Arc::new(Still), options).expect("open");
        let vectors = Vectors::new(engine.handle(), 2);
        let (a, b) = (collection(&vectors, "a"), collection(&vectors, "b"));
        let open = vectors.open(a).expect("open a");
        let failed = vectors.on_shards(&open, vec![true, false], |_, boom| {
            assert!(!boom, "a bug on shard 0");
            Ok(())
        });
        let error = failed.expect_err("the panic is an error");
        assert!(matches!(&error, VectorError::WorkerFailed { reason, .. } if reason == "a bug on shard 0"), "{error}");
        assert_eq!(error.errno(), libc::EIO);
        let error = vectors.knn(a, &[0.0, 0.0], 1, None).expect_err("shard 0 of a is closed");
        assert!(matches!(error, VectorError::WorkerFailed { .. }), "{error}");
        // Shard 1 of `a` lives on the same worker as shard 1 of `b`; shard 0 of `b` shares the
        // failed shard's worker. Both go on.
        assert_eq!(vectors.knn(b, &[3.0, 3.0], 1, None).expect("b searches")[0][0].id, 3);
        assert_eq!(vectors.stats(b).expect("b stats").vectors, 4);
        drop(vectors);
        engine.close().expect("close");
    }
}
