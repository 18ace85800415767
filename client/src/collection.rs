//! Collections: directories on a VexFS mount that store vectors and search them by similarity
//! (`docs/COLLECTIONS.md`). A [`Collection`] owns the directory's file descriptor and drives the
//! ioctls of `client/include/vexfs.h` on it, through `vexfs_format::ioctl`'s wire structs.
//!
//! Invariants:
//! - Every ioctl request fits one payload ([`ioctl::PAYLOAD`] bytes in and out): deletes and
//!   searches are split into as many ioctls as needed ([`search_batch_max`]). When not even one
//!   query fits (a huge dimension, a huge k), the call fails with [`CollectionError::TooLarge`]
//!   before sending anything.
//! - Small inserts go in ioctls ([`insert_batch_max`] vectors each); an insert that would take
//!   more than [`STREAM_MIN_IOCTLS`] of them, or whose vectors do not fit one, is written to the
//!   collection's insert stream (`.vexfs-insert`) in batches of up to [`STREAM_BATCH_BYTES`], and
//!   the ids the daemon assigned are read back from the stream's receipts.
//! - Input is checked whole before the first ioctl (dimension, finite values, zero vectors under
//!   cosine, duplicate ids), so bad input stores nothing; only a failure of the daemon or the
//!   device can stop an insert part way ([`CollectionError::Interrupted`] says how far it got).
//! - errno is mapped to an error in one function, [`CollectionError::from_errno`]; every message
//!   names the collection's path.
//! - `sync` is requested on the last ioctl of a batch only: one sync makes every record pending
//!   in the collection durable, including those of the batch's earlier ioctls.

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io;
use std::io::Write;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use vexfs_format::collection::{ElemType, Metric, DIM_MAX, SHARDS_MAX};
use vexfs_format::ioctl::{self, Create, Delete, Insert, Search, SearchResult, Stats, TextSearch};
use zerocopy::{FromBytes, FromZeros, IntoBytes};

use crate::sys;

/// Bytes of one search result in a reply.
const RESULT_BYTES: usize = size_of::<SearchResult>();
/// The longest embedder name: the wire field holds 256 bytes with a terminating NUL.
pub const EMBEDDER_NAME_MAX: usize = 255;

/// Errors of collection operations; each message names the collection's path.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CollectionError {
    /// The directory could not be made or opened.
    #[error("{path}: {error}")]
    Open {
        /// The directory.
        path: String,
        /// The cause (part of the message, so not also a `source()`).
        error: io::Error,
    },
    /// The directory is not a collection (ENOTTY).
    #[error("{path} is not a VexFS collection (make one with `vexfs collection create`)")]
    NotCollection {
        /// The directory.
        path: String,
    },
    /// The directory is not on a VexFS mount, so it cannot become a collection (ENOTTY on create).
    #[error("{path} is not on a VexFS mount: collections live on a file system served by vexfsd")]
    NotVexfs {
        /// The directory.
        path: String,
    },
    /// The directory is a collection already (EEXIST on create).
    #[error("{path} is already a collection")]
    AlreadyCollection {
        /// The directory.
        path: String,
    },
    /// The directory has entries, so it cannot become a collection (ENOTEMPTY on create).
    #[error("{path} is not empty: only an empty directory can become a collection")]
    NotEmpty {
        /// The directory.
        path: String,
    },
    /// The daemon could not load the collection's embedding model (ENOENT on create).
    #[error(
        "{path}: vexfsd could not load the embedding model: it is not installed where vexfsd looks \
         (run scripts/setup.sh as root, or pass vexfsd --models-dir; the vexfsd log names the path)"
    )]
    ModelMissing {
        /// The collection.
        path: String,
    },
    /// The collection's embedding server (Ollama) does not answer (EHOSTUNREACH).
    #[error("{path}: the embedding server of this text collection does not answer (the vexfsd log has the URL)")]
    EmbedderUnreachable {
        /// The collection.
        path: String,
    },
    /// The daemon refused a request as invalid (EINVAL); nothing was stored.
    #[error("{path}: vexfsd refused the {op} request as invalid (the vexfsd log has the exact reason)")]
    Refused {
        /// The collection.
        path: String,
        /// The operation.
        op: &'static str,
    },
    /// Any other failure of an ioctl (ENOSPC, EIO, ...).
    #[error("{path}: {op} failed: {error}")]
    Io {
        /// The collection.
        path: String,
        /// The operation.
        op: &'static str,
        /// The cause (part of the message, so not also a `source()`).
        error: io::Error,
    },
    /// The caller's input is wrong (a dimension, a non-finite value, k = 0, ...).
    #[error("{path}: {what}")]
    Input {
        /// The collection.
        path: String,
        /// What is wrong.
        what: String,
    },
    /// Not even one query fits an ioctl.
    #[error(
        "{path}: {what}: more than the {payload} bytes of an ioctl's payload (the collection's query files, \
         .vexfs-query/, take queries of any size)",
        payload = ioctl::PAYLOAD
    )]
    TooLarge {
        /// The collection.
        path: String,
        /// What does not fit and how many bytes it needs.
        what: String,
    },
    /// The daemon's reply does not make sense (a daemon newer than this client, or a bug).
    #[error("{path}: the {op} reply from vexfsd is malformed: {what}")]
    Reply {
        /// The collection.
        path: String,
        /// The operation.
        op: &'static str,
        /// What is wrong.
        what: String,
    },
    /// An insert failed after some of its ioctls had stored their vectors.
    #[error("{error} ({done} of {total} vectors had been inserted before the failure)")]
    Interrupted {
        /// Vectors stored before the failure (the first `done` of the batch).
        done: usize,
        /// Vectors in the batch.
        total: usize,
        /// The failure (part of the message, so not also a `source()`).
        error: Box<CollectionError>,
    },
}

impl CollectionError {
    /// The error for an ioctl `op` on `path` that failed with `error` (its errno): the one place
    /// errno values are interpreted.
    pub fn from_errno(path: &Path, op: &'static str, error: io::Error) -> CollectionError {
        let path = path.display().to_string();
        match error.raw_os_error() {
            Some(libc::ENOTTY) if op == OP_CREATE => CollectionError::NotVexfs { path },
            Some(libc::ENOTTY) => CollectionError::NotCollection { path },
            Some(libc::EEXIST) => CollectionError::AlreadyCollection { path },
            Some(libc::ENOTEMPTY) => CollectionError::NotEmpty { path },
            Some(libc::EINVAL) => CollectionError::Refused { path, op },
            Some(libc::ENOENT) if op == OP_CREATE || op == OP_SEARCH_TEXT => CollectionError::ModelMissing { path },
            Some(libc::EHOSTUNREACH) => CollectionError::EmbedderUnreachable { path },
            _ => CollectionError::Io { path, op, error },
        }
    }
}

const OP_CREATE: &str = "create";
const OP_INSERT: &str = "insert";
const OP_KNN: &str = "k-NN search";
const OP_RANGE: &str = "range search";
const OP_DELETE: &str = "delete";
const OP_STATS: &str = "stats";
const OP_SYNC: &str = "sync";
const OP_SEARCH_TEXT: &str = "text search";

/// Parameters of a new collection ([`Collection::create`]).
#[derive(Clone, Debug)]
pub struct CreateOptions {
    /// Vector dimension, 1..=65536; for a text collection 0 takes the embedder's.
    pub dim: u32,
    /// The distance.
    pub metric: Metric,
    /// Shards, 1..=64; 0 for one per daemon worker.
    pub shards: u32,
    /// Makes a text collection (documents written into it are embedded).
    pub text: Option<TextOptions>,
}

/// Parameters of a text collection; zero and empty values ask for the daemon's defaults.
#[derive(Clone, Debug, Default)]
pub struct TextOptions {
    /// The name of an embedder vexfsd defines (`vexfsd --embedder NAME=SPEC`, or the builtin
    /// `all-minilm-l6-v2`); empty for the daemon's default.
    pub embedder: String,
    /// Target chunk length in bytes; 0 for the default.
    pub chunk_bytes: u32,
    /// Overlap between consecutive chunks in bytes.
    pub chunk_overlap: u32,
}

/// One search result.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Hit {
    /// The vector's id.
    pub id: u64,
    /// Its distance from the query (smaller is closer; see `docs/COLLECTIONS.md`).
    pub distance: f32,
}

/// One chunk a text search found ([`Collection::search_text`]).
#[derive(Clone, Debug, PartialEq)]
pub struct TextHit {
    /// The chunk's vector id.
    pub id: u64,
    /// Its distance from the query (for cosine, 1 - cosine similarity).
    pub distance: f32,
    /// The document: the collection's path joined with its name.
    pub path: PathBuf,
    /// The document's inode number.
    pub ino: u64,
    /// The chunk's number in the document, from 0.
    pub chunk: u32,
    /// The chunk's byte range in the document.
    pub start: u64,
    /// The end of that range.
    pub end: u64,
    /// The chunk's first bytes, whitespace folded.
    pub snippet: String,
}

/// A collection's parameters and counters.
#[derive(Clone, Debug, PartialEq)]
pub struct CollectionStats {
    /// Vector dimension.
    pub dim: u32,
    /// The distance.
    pub metric: Metric,
    /// The element type of stored vectors.
    pub elem: ElemType,
    /// Shards.
    pub shards: u32,
    /// Live vectors.
    pub vectors: u64,
    /// Rows deleted or replaced, not yet compacted away.
    pub dead_rows: u64,
    /// Bytes of the shard logs on the device.
    pub log_bytes: u64,
    /// Bytes acknowledged but not yet written to the logs (made durable by a sync).
    pub pending_bytes: u64,
    /// Memory the collection holds.
    pub memory_bytes: u64,
    /// Vectors inserted since this daemon opened the collection.
    pub inserts: u64,
    /// Vectors deleted since this daemon opened the collection.
    pub deletes: u64,
    /// Search requests answered.
    pub searches: u64,
    /// Queries answered (a request carries one or more).
    pub queries: u64,
    /// Total time spent answering searches, in microseconds.
    pub search_micros: u64,
    /// The search kernels in use, e.g. `avx2+fma`.
    pub simd: String,
    /// Text collections only.
    pub text: Option<TextStats>,
}

impl CollectionStats {
    /// Mean time per search request in microseconds; None before the first search.
    pub fn search_micros_mean(&self) -> Option<f64> {
        (self.searches > 0).then(|| self.search_micros as f64 / self.searches as f64)
    }
}

/// The counters of a text collection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TextStats {
    /// The embedder.
    pub embedder: String,
    /// Documents waiting to be embedded.
    pub docs_queued: u64,
    /// Documents embedded.
    pub docs_indexed: u64,
    /// Documents skipped (not UTF-8, or failed).
    pub docs_skipped: u64,
    /// Chunks stored.
    pub chunks: u64,
}

/// Why a batch of vectors or queries cannot be sent.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum BadVectors {
    /// The values do not split into vectors of the dimension.
    #[error("{len} values do not make whole vectors of dimension {dim}")]
    Ragged {
        /// Values given.
        len: usize,
        /// The dimension.
        dim: usize,
    },
    /// There are no vectors.
    #[error("no vectors")]
    Empty,
    /// A value is NaN or infinite.
    #[error("vector {index} component {component} is {value} (only finite values are allowed)")]
    NotFinite {
        /// The vector (0-based).
        index: usize,
        /// The component (0-based).
        component: usize,
        /// The value.
        value: f32,
    },
    /// A vector is all zeros, which has no direction under the cosine metric.
    #[error("vector {index} is all zeros: the cosine metric needs a direction")]
    Zero {
        /// The vector (0-based).
        index: usize,
    },
}

/// Checks that `values` are whole, finite vectors of dimension `dim` (and not zero under cosine),
/// as the daemon requires; returns how many vectors they are.
pub fn check_vectors(values: &[f32], dim: usize, metric: Metric) -> Result<usize, BadVectors> {
    assert!(dim > 0, "dimension 0");
    if !values.len().is_multiple_of(dim) {
        return Err(BadVectors::Ragged { len: values.len(), dim });
    }
    if values.is_empty() {
        return Err(BadVectors::Empty);
    }
    if let Some(at) = values.iter().position(|v| !v.is_finite()) {
        return Err(BadVectors::NotFinite { index: at / dim, component: at % dim, value: values[at] });
    }
    if metric == Metric::Cosine {
        if let Some(index) = values.chunks_exact(dim).position(|v| v.iter().all(|&x| x == 0.0)) {
            return Err(BadVectors::Zero { index });
        }
    }
    Ok(values.len() / dim)
}

/// Inserts that would take more ioctls than this go through the insert stream instead.
pub const STREAM_MIN_IOCTLS: usize = 8;
/// Bytes of one batch on the insert stream (at most, unless one vector is larger). The daemon
/// applies a batch whole, so this bounds both what it buffers and what one failure can refuse.
pub const STREAM_BATCH_BYTES: usize = 64 << 20;

/// Whether an insert of `count` vectors of dimension `dim` goes through the insert stream: when
/// it would take more than [`STREAM_MIN_IOCTLS`] ioctls, or one vector does not fit an ioctl.
///
/// Worked example: dimension 32 without ids fits 127 vectors an ioctl, so up to 1016 vectors go in
/// ioctls and 1017 stream.
pub fn insert_uses_stream(count: usize, dim: usize, with_ids: bool) -> bool {
    let batch = insert_batch_max(dim, with_ids);
    batch == 0 || count > STREAM_MIN_IOCTLS * batch
}

/// The most vectors of dimension `dim` one insert ioctl carries: each takes `dim * 4` bytes, plus
/// 8 for its id when ids are given. 0 when not even one fits.
///
/// Worked example: dimension 128 without ids takes 512 bytes a vector, and 16256 / 512 = 31.
pub fn insert_batch_max(dim: usize, with_ids: bool) -> usize {
    assert!(dim > 0, "dimension 0");
    let vector_bytes = dim.saturating_mul(4).saturating_add(if with_ids { 8 } else { 0 });
    ioctl::PAYLOAD / vector_bytes
}

/// Bytes of a search reply for `nq` queries of `k` results: the counts padded to 8 bytes, then
/// `nq * k` results. None on overflow.
fn search_reply_bytes(nq: usize, k: usize) -> Option<usize> {
    let counts = nq.checked_mul(4)?.checked_next_multiple_of(8)?;
    counts.checked_add(nq.checked_mul(k)?.checked_mul(RESULT_BYTES)?)
}

/// Bytes of a search request's payload for `nq` queries of dimension `dim` and a filter of
/// `filter_len` bytes (padded to 8). None on overflow.
fn search_request_bytes(nq: usize, dim: usize, filter_len: usize) -> Option<usize> {
    let filter = filter_len.checked_next_multiple_of(8)?;
    filter.checked_add(nq.checked_mul(dim)?.checked_mul(4)?)
}

/// The most queries one search ioctl carries: both the request (filter, queries) and the reply
/// (counts, `k` results per query) must fit the payload. 0 when not even one query fits.
///
/// Worked example: dimension 128, k = 10, no filter. The request fits 16256 / 512 = 31 queries;
/// the reply 99 (a query's count and results take 4 + 160 bytes, and 99 of them with the counts
/// padded take 400 + 15840 = 16240 bytes). So 31.
pub fn search_batch_max(dim: usize, k: usize, filter_len: usize) -> usize {
    assert!(dim > 0, "dimension 0");
    let fits = |nq: usize| {
        search_request_bytes(nq, dim, filter_len).is_some_and(|n| n <= ioctl::PAYLOAD)
            && search_reply_bytes(nq, k).is_some_and(|n| n <= ioctl::PAYLOAD)
    };
    // An upper bound from the unpadded sizes, then down past any padding; the loop is bounded
    // by the bound, which is at most PAYLOAD / 4.
    let request_max = ioctl::PAYLOAD / dim.saturating_mul(4);
    let reply_max = ioctl::PAYLOAD / k.saturating_mul(RESULT_BYTES).saturating_add(4);
    let mut nq = request_max.min(reply_max);
    while nq > 0 && !fits(nq) {
        nq -= 1;
    }
    nq
}

/// A collection directory, open.
#[derive(Debug)]
pub struct Collection {
    dir: File,
    path: PathBuf,
    dim: usize,
    metric: Metric,
}

impl Collection {
    /// Opens the collection at `path`; fails with [`CollectionError::NotCollection`] if the
    /// directory is not one.
    pub fn open(path: impl AsRef<Path>) -> Result<Collection, CollectionError> {
        let path = path.as_ref();
        let dir = open_dir(path)?;
        Collection::from_dir(path, dir)
    }

    /// Makes the directory at `path` a collection (creating it and its parents if missing; an
    /// existing directory must be empty) and opens it.
    pub fn create(path: impl AsRef<Path>, options: &CreateOptions) -> Result<Collection, CollectionError> {
        let path = path.as_ref();
        let mut request = create_request(options).map_err(|what| input(path, what))?;
        let made = missing_ancestor(path);
        std::fs::create_dir_all(path)
            .map_err(|error| CollectionError::Open { path: path.display().to_string(), error })?;
        let created = open_dir(path).and_then(|dir| {
            sys::ioctl(dir.as_fd(), ioctl::IOC_CREATE, request.as_mut_bytes())
                .map_err(|error| CollectionError::from_errno(path, OP_CREATE, error))?;
            Ok(dir)
        });
        match created {
            Ok(dir) => Collection::from_dir(path, dir),
            Err(error) => {
                // Leave no directories behind that only this failed call made (on a file system
                // other than VexFS, say). remove_dir removes only empty directories.
                if let Some(top) = made {
                    for dir in path.ancestors().take_while(|dir| dir.starts_with(&top)) {
                        let _ = std::fs::remove_dir(dir);
                    }
                }
                Err(error)
            }
        }
    }

    fn from_dir(path: &Path, dir: File) -> Result<Collection, CollectionError> {
        let mut collection = Collection { dir, path: path.to_path_buf(), dim: 1, metric: Metric::L2 };
        let stats = collection.stats()?;
        collection.dim = stats.dim as usize;
        collection.metric = stats.metric;
        Ok(collection)
    }

    /// The directory's path, as given.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The vector dimension.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// The distance.
    pub fn metric(&self) -> Metric {
        self.metric
    }

    /// Inserts `vectors` (whole vectors of [`Self::dim`] values) under `ids` (one per vector) or,
    /// without ids, under ids the daemon assigns. A vector whose id exists replaces it. With
    /// `sync`, the vectors are durable when this returns. Returns the ids, in input order.
    pub fn insert(&self, ids: Option<&[u64]>, vectors: &[f32], sync: bool) -> Result<Vec<u64>, CollectionError> {
        self.insert_with_progress(ids, vectors, sync, &mut |_| {})
    }

    /// [`Self::insert`], calling `progress` with the number of vectors stored so far after each
    /// ioctl or stream batch.
    pub fn insert_with_progress(
        &self,
        ids: Option<&[u64]>,
        vectors: &[f32],
        sync: bool,
        progress: &mut dyn FnMut(usize),
    ) -> Result<Vec<u64>, CollectionError> {
        let count = check_vectors(vectors, self.dim, self.metric).map_err(|bad| self.input(bad.to_string()))?;
        if let Some(ids) = ids {
            check_ids(ids, count).map_err(|what| self.input(what))?;
        }
        if insert_uses_stream(count, self.dim, ids.is_some()) {
            return self.insert_stream(ids, vectors, sync, progress);
        }
        let batch = insert_batch_max(self.dim, ids.is_some());
        let mut assigned = Vec::with_capacity(count);
        for start in (0..count).step_by(batch) {
            let end = (start + batch).min(count);
            let batch_ids = ids.map(|ids| &ids[start..end]);
            let batch_vectors = &vectors[start * self.dim..end * self.dim];
            let first_id = self
                .insert_batch(batch_ids, batch_vectors, sync && end == count)
                .map_err(|error| interrupted(start, count, error))?;
            match batch_ids {
                Some(batch_ids) => assigned.extend_from_slice(batch_ids),
                None => assigned.extend(first_id..first_id + (end - start) as u64),
            }
            progress(end);
        }
        assert_eq!(assigned.len(), count);
        Ok(assigned)
    }

    /// Inserts through the collection's insert stream: batches of up to [`STREAM_BATCH_BYTES`],
    /// each applied whole by the daemon when its last byte arrives, then (without `ids`) the
    /// stream's receipts for the ids it assigned, and with `sync` an fsync of the stream.
    fn insert_stream(
        &self,
        ids: Option<&[u64]>,
        vectors: &[f32],
        sync: bool,
        progress: &mut dyn FnMut(usize),
    ) -> Result<Vec<u64>, CollectionError> {
        let count = vectors.len() / self.dim;
        let path = self.path.join(ioctl::INSERT_STREAM_NAME);
        let fail = |error: io::Error| CollectionError::from_errno(&self.path, OP_INSERT, error);
        let mut stream = OpenOptions::new().read(true).write(true).open(&path).map_err(fail)?;
        let row_bytes = self.dim * 4 + if ids.is_some() { 8 } else { 0 };
        let per_batch = (STREAM_BATCH_BYTES / row_bytes).clamp(1, u32::MAX as usize);
        let mut receipts = Receipts::default();
        let mut assigned = Vec::with_capacity(count);
        for start in (0..count).step_by(per_batch) {
            let end = (start + per_batch).min(count);
            let batch_ids = ids.map(|ids| &ids[start..end]);
            let written = write_batch(&mut stream, self.dim, batch_ids, &vectors[start * self.dim..end * self.dim])
                .map_err(fail)
                .and_then(|()| receipts.next(&stream).map_err(|what| self.reply_error(OP_INSERT, what)));
            let receipt = written.map_err(|error| interrupted(start, count, error))?;
            if receipt.count != end - start {
                return Err(self
                    .reply_error(OP_INSERT, format!("a receipt for {} vectors, not {}", receipt.count, end - start)));
            }
            match (batch_ids, receipt.assigned_from) {
                (Some(batch_ids), _) => assigned.extend_from_slice(batch_ids),
                (None, Some(first)) => assigned.extend(first..first + (end - start) as u64),
                (None, None) => {
                    return Err(self.reply_error(OP_INSERT, "a receipt without the assigned ids".to_owned()))
                }
            }
            progress(end);
        }
        if sync {
            stream.sync_all().map_err(|error| CollectionError::from_errno(&self.path, OP_SYNC, error))?;
        }
        Ok(assigned)
    }

    /// One insert ioctl; returns the first assigned id.
    fn insert_batch(&self, ids: Option<&[u64]>, vectors: &[f32], sync: bool) -> Result<u64, CollectionError> {
        let count = vectors.len() / self.dim;
        let mut request = Insert::new_zeroed();
        request.dim = self.dim as u32;
        request.count = count as u32;
        request.flags = if sync { ioctl::INSERT_SYNC } else { 0 };
        let mut at = 0;
        if let Some(ids) = ids {
            assert_eq!(ids.len(), count);
            request.flags |= ioctl::INSERT_IDS;
            at = put(&mut request.payload, at, ids.iter().map(|id| id.to_le_bytes()));
        }
        put(&mut request.payload, at, vectors.iter().map(|v| v.to_le_bytes()));
        self.ioctl(ioctl::IOC_INSERT, OP_INSERT, request.as_mut_bytes())?;
        Ok(request.first_id)
    }

    /// The `k` nearest vectors to each query (whole vectors of [`Self::dim`] values), nearest
    /// first; only vectors that pass `filter`, when given, are considered.
    pub fn knn(&self, queries: &[f32], k: usize, filter: Option<&str>) -> Result<Vec<Vec<Hit>>, CollectionError> {
        if k == 0 {
            return Err(self.input("k must be at least 1".to_owned()));
        }
        self.search(ioctl::IOC_KNN, OP_KNN, queries, k, 0.0, filter)
    }

    /// Every vector within distance `radius` of each query, nearest first, at most `limit` per
    /// query; only vectors that pass `filter`, when given, are considered.
    pub fn range(
        &self,
        queries: &[f32],
        radius: f32,
        limit: usize,
        filter: Option<&str>,
    ) -> Result<Vec<Vec<Hit>>, CollectionError> {
        if !radius.is_finite() {
            return Err(self.input(format!("radius {radius} is not a finite number")));
        }
        if limit == 0 {
            return Err(self.input("the result limit must be at least 1".to_owned()));
        }
        self.search(ioctl::IOC_RANGE, OP_RANGE, queries, limit, radius, filter)
    }

    fn search(
        &self,
        cmd: u32,
        op: &'static str,
        queries: &[f32],
        k: usize,
        radius: f32,
        filter: Option<&str>,
    ) -> Result<Vec<Vec<Hit>>, CollectionError> {
        let filter = filter.unwrap_or("").as_bytes();
        check_vectors(queries, self.dim, self.metric)
            .map_err(|bad| self.input(format!("queries: {}", bad.to_string().replace("vector ", "query "))))?;
        let per_ioctl = search_batch_max(self.dim, k, filter.len());
        if per_ioctl == 0 {
            return Err(self.too_large(self.search_too_large(k, filter.len())));
        }
        let mut results = Vec::with_capacity(queries.len() / self.dim);
        for batch in queries.chunks(per_ioctl * self.dim) {
            results.extend(self.search_batch(cmd, op, batch, k, radius, filter)?);
        }
        Ok(results)
    }

    /// What does not fit when not one query fits a search ioctl.
    fn search_too_large(&self, k: usize, filter_len: usize) -> String {
        let request = search_request_bytes(1, self.dim, filter_len);
        if request.is_none_or(|n| n > ioctl::PAYLOAD) {
            let bytes = request.map_or("too many".to_owned(), |n| n.to_string());
            return format!("one query of dimension {} with a {filter_len}-byte filter takes {bytes} bytes", self.dim);
        }
        let most = (ioctl::PAYLOAD - 8) / RESULT_BYTES;
        let bytes = search_reply_bytes(1, k).map_or("too many".to_owned(), |n| n.to_string());
        format!("{k} results per query (at most {most} fit) take {bytes} bytes")
    }

    /// One search ioctl for the queries in `queries`.
    fn search_batch(
        &self,
        cmd: u32,
        op: &'static str,
        queries: &[f32],
        k: usize,
        radius: f32,
        filter: &[u8],
    ) -> Result<Vec<Vec<Hit>>, CollectionError> {
        let nq = queries.len() / self.dim;
        let mut request = Search::new_zeroed();
        request.dim = self.dim as u32;
        request.nq = nq as u32;
        request.k = k as u32;
        request.filter_len = filter.len() as u32;
        request.radius = radius;
        request.payload[..filter.len()].copy_from_slice(filter);
        let filter_bytes = filter.len().next_multiple_of(8);
        put(&mut request.payload, filter_bytes, queries.iter().map(|v| v.to_le_bytes()));
        self.ioctl(cmd, op, request.as_mut_bytes())?;
        parse_search_reply(&request.payload, nq, k).map_err(|what| self.reply_error(op, what))
    }

    /// Deletes the vectors with these ids; returns how many existed. With `sync`, the deletion is
    /// durable when this returns.
    pub fn delete(&self, ids: &[u64], sync: bool) -> Result<u64, CollectionError> {
        if ids.is_empty() {
            if sync {
                self.sync()?;
            }
            return Ok(0);
        }
        let mut deleted = 0;
        let batches = ids.len().div_ceil(ioctl::DELETE_IDS);
        for (index, batch) in ids.chunks(ioctl::DELETE_IDS).enumerate() {
            let mut request = Delete::new_zeroed();
            request.count = batch.len() as u32;
            request.flags = if sync && index + 1 == batches { ioctl::INSERT_SYNC } else { 0 };
            request.ids[..batch.len()].copy_from_slice(batch);
            self.ioctl(ioctl::IOC_DELETE, OP_DELETE, request.as_mut_bytes())?;
            deleted += request.deleted;
        }
        Ok(deleted)
    }

    /// The collection's parameters and counters.
    pub fn stats(&self) -> Result<CollectionStats, CollectionError> {
        let mut reply = Stats::new_zeroed();
        self.ioctl(ioctl::IOC_STATS, OP_STATS, reply.as_mut_bytes())?;
        stats_from_reply(&reply).map_err(|what| self.reply_error(OP_STATS, what))
    }

    /// The `k` chunks of a text collection nearest in meaning to `text` (the daemon embeds it
    /// with the collection's embedder), nearest first, optionally filtered on the documents'
    /// attributes (their `user.*` xattrs).
    pub fn search_text(&self, text: &str, k: usize, filter: Option<&str>) -> Result<Vec<TextHit>, CollectionError> {
        if k == 0 || k > ioctl::TEXT_K_MAX {
            return Err(self.input(format!("k = {k} is not in 1..={}", ioctl::TEXT_K_MAX)));
        }
        if text.trim().is_empty() {
            return Err(self.input("the query text is empty".to_owned()));
        }
        let filter = filter.unwrap_or("").as_bytes();
        let filter_at = text.len().next_multiple_of(8);
        if filter_at + filter.len() > ioctl::PAYLOAD {
            return Err(self.too_large(format!(
                "a query text of {} bytes and a filter of {} bytes",
                text.len(),
                filter.len()
            )));
        }
        let mut request = TextSearch::new_zeroed();
        request.k = k as u32;
        request.text_len = text.len() as u32;
        request.filter_len = filter.len() as u32;
        request.payload[..text.len()].copy_from_slice(text.as_bytes());
        request.payload[filter_at..filter_at + filter.len()].copy_from_slice(filter);
        self.ioctl(ioctl::IOC_SEARCH_TEXT, OP_SEARCH_TEXT, request.as_mut_bytes())?;
        parse_text_reply(&request.payload, request.count as usize, k, &self.path)
            .map_err(|what| self.reply_error(OP_SEARCH_TEXT, what))
    }

    /// Makes everything acknowledged so far durable (`docs/COLLECTIONS.md`, "Durability"); for
    /// a text collection, first waits until every document written into it is searchable.
    pub fn sync(&self) -> Result<(), CollectionError> {
        self.ioctl(ioctl::IOC_SYNC, OP_SYNC, &mut [])
    }

    fn ioctl(&self, cmd: u32, op: &'static str, arg: &mut [u8]) -> Result<(), CollectionError> {
        sys::ioctl(self.dir.as_fd(), cmd, arg).map_err(|error| CollectionError::from_errno(&self.path, op, error))
    }

    fn input(&self, what: String) -> CollectionError {
        input(&self.path, what)
    }

    fn too_large(&self, what: String) -> CollectionError {
        CollectionError::TooLarge { path: self.path.display().to_string(), what }
    }

    fn reply_error(&self, op: &'static str, what: String) -> CollectionError {
        CollectionError::Reply { path: self.path.display().to_string(), op, what }
    }
}

/// The error of an insert that failed after its first `done` of `total` vectors were stored: as
/// it is when nothing was stored, [`CollectionError::Interrupted`] otherwise.
fn interrupted(done: usize, total: usize, error: CollectionError) -> CollectionError {
    if done == 0 {
        error
    } else {
        CollectionError::Interrupted { done, total, error: Box::new(error) }
    }
}

/// Writes one insert-stream batch: its header, the ids if given, the values, little-endian.
fn write_batch(stream: &mut File, dim: usize, ids: Option<&[u64]>, vectors: &[f32]) -> io::Result<()> {
    let count = vectors.len() / dim;
    let header = ioctl::BatchHeader::new(dim as u32, count as u32, ids.is_some());
    stream.write_all(header.as_bytes())?;
    if let Some(ids) = ids {
        write_le(stream, ids.as_bytes(), 8)?;
    }
    write_le(stream, vectors.as_bytes(), 4)
}

/// Writes the memory image of values `width` bytes wide as little-endian: as it is on a
/// little-endian host, each value's bytes reversed otherwise.
fn write_le(out: &mut File, image: &[u8], width: usize) -> io::Result<()> {
    if cfg!(target_endian = "little") {
        return out.write_all(image);
    }
    let swapped: Vec<u8> = image.chunks_exact(width).flat_map(|value| value.iter().rev().copied()).collect();
    out.write_all(&swapped)
}

/// One line of the insert stream's receipts.
#[derive(Debug)]
struct Receipt {
    batch: u64,
    count: usize,
    assigned_from: Option<u64>,
}

/// Reads an insert stream's receipts in order: one JSON line per batch applied.
#[derive(Default)]
struct Receipts {
    /// Bytes of receipts read so far.
    at: u64,
    batches: u64,
}

impl Receipts {
    /// The receipt of the next batch, which the daemon has applied.
    fn next(&mut self, stream: &File) -> Result<Receipt, String> {
        let mut line = Vec::new();
        let mut buf = [0u8; 256];
        while !line.ends_with(b"\n") {
            let n = stream
                .read_at(&mut buf, self.at + line.len() as u64)
                .map_err(|e| format!("reading the receipt: {e}"))?;
            if n == 0 {
                return Err(format!("no receipt for batch {}", self.batches));
            }
            let end = buf[..n].iter().position(|&b| b == b'\n').map_or(n, |at| at + 1);
            line.extend_from_slice(&buf[..end]);
        }
        let text = String::from_utf8_lossy(&line);
        let value: serde_json::Value = serde_json::from_str(&text).map_err(|e| format!("receipt {text:?}: {e}"))?;
        let field = |name: &str| value.get(name).ok_or_else(|| format!("receipt {text:?} has no {name}"));
        let number =
            |name: &str| field(name)?.as_u64().ok_or_else(|| format!("receipt {text:?}: {name} is not a count"));
        let receipt = Receipt {
            batch: number("batch")?,
            count: number("count")? as usize,
            assigned_from: match field("assigned_from")? {
                serde_json::Value::Null => None,
                _ => Some(number("assigned_from")?),
            },
        };
        if receipt.batch != self.batches {
            return Err(format!("the receipt of batch {} where batch {} was expected", receipt.batch, self.batches));
        }
        self.at += line.len() as u64;
        self.batches += 1;
        Ok(receipt)
    }
}

fn input(path: &Path, what: String) -> CollectionError {
    CollectionError::Input { path: path.display().to_string(), what }
}

/// The outermost ancestor of `path` (or `path` itself) that does not exist, if any: what
/// `create_dir_all(path)` will make.
fn missing_ancestor(path: &Path) -> Option<PathBuf> {
    path.ancestors().take_while(|dir| !dir.as_os_str().is_empty() && !dir.exists()).last().map(Path::to_path_buf)
}

fn open_dir(path: &Path) -> Result<File, CollectionError> {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
        .open(path)
        .map_err(|error| CollectionError::Open { path: path.display().to_string(), error })
}

/// The create request for `options`, or what is wrong with them.
fn create_request(options: &CreateOptions) -> Result<Create, String> {
    let dim_min = if options.text.is_some() { 0 } else { 1 };
    if options.dim < dim_min || options.dim > DIM_MAX {
        return Err(format!("dimension {} is not in 1..={DIM_MAX}", options.dim));
    }
    if options.shards > SHARDS_MAX {
        return Err(format!("{} shards: at most {SHARDS_MAX} (0 for one per daemon worker)", options.shards));
    }
    let mut request = Create::new_zeroed();
    request.dim = options.dim;
    request.metric = options.metric as u32;
    request.shards = options.shards;
    if let Some(text) = &options.text {
        if text.embedder.len() > EMBEDDER_NAME_MAX || text.embedder.contains('\0') {
            return Err(format!("the embedder name must be at most {EMBEDDER_NAME_MAX} bytes, without NUL"));
        }
        request.flags = ioctl::CREATE_TEXT;
        request.chunk_bytes = text.chunk_bytes;
        request.chunk_overlap = text.chunk_overlap;
        ioctl::set_c_str(&mut request.embedder, &text.embedder);
    }
    Ok(request)
}

/// Checks that `ids` has one id per vector and no id twice.
fn check_ids(ids: &[u64], count: usize) -> Result<(), String> {
    if ids.len() != count {
        return Err(format!("{} ids for {count} vectors", ids.len()));
    }
    let mut seen = HashSet::with_capacity(ids.len());
    match ids.iter().find(|id| !seen.insert(**id)) {
        Some(duplicate) => Err(format!("id {duplicate} appears twice")),
        None => Ok(()),
    }
}

/// Writes `items` one after another into `payload` from byte `at`; returns the end.
fn put<const N: usize>(payload: &mut [u8], at: usize, items: impl Iterator<Item = [u8; N]>) -> usize {
    let mut end = at;
    for item in items {
        payload[end..end + N].copy_from_slice(&item);
        end += N;
    }
    end
}

/// Reads the hits of a text search reply (see `vexfs.h`, `vexfs_ioc_text_search`).
fn parse_text_reply(payload: &[u8], count: usize, k: usize, dir: &Path) -> Result<Vec<TextHit>, String> {
    if count > k {
        return Err(format!("{count} results, more than the {k} asked for"));
    }
    let header = size_of::<ioctl::TextHit>();
    let mut hits = Vec::with_capacity(count);
    let mut at = 0;
    for rank in 0..count {
        let bad = || format!("result {rank} runs past the payload");
        let raw = payload.get(at..at + header).ok_or_else(bad)?;
        let hit = ioctl::TextHit::read_from_bytes(raw).expect("the header's size");
        let (name_len, snippet_len) = (hit.name_len as usize, hit.snippet_len as usize);
        let name = payload.get(at + header..at + header + name_len).ok_or_else(bad)?;
        let snippet = payload.get(at + header + name_len..at + header + name_len + snippet_len).ok_or_else(bad)?;
        hits.push(TextHit {
            id: hit.id,
            distance: hit.distance,
            path: dir.join(std::ffi::OsStr::from_bytes(name)),
            ino: hit.ino,
            chunk: hit.chunk,
            start: hit.start,
            end: hit.end,
            snippet: String::from_utf8_lossy(snippet).into_owned(),
        });
        at += (header + name_len + snippet_len).next_multiple_of(8);
    }
    Ok(hits)
}

/// Splits a search reply's payload into each query's hits (see `vexfs.h`, `vexfs_ioc_search`).
fn parse_search_reply(payload: &[u8], nq: usize, k: usize) -> Result<Vec<Vec<Hit>>, String> {
    let results_at = (nq * 4).next_multiple_of(8);
    let mut out = Vec::with_capacity(nq);
    for query in 0..nq {
        let count = u32::from_le_bytes(payload[query * 4..query * 4 + 4].try_into().expect("4 bytes")) as usize;
        if count > k {
            return Err(format!("query {query} has {count} results, more than the {k} asked for"));
        }
        let hits = (0..count).map(|rank| {
            let at = results_at + (query * k + rank) * RESULT_BYTES;
            let result = SearchResult::read_from_bytes(&payload[at..at + RESULT_BYTES]).expect("16 bytes");
            Hit { id: result.id, distance: result.distance }
        });
        out.push(hits.collect());
    }
    Ok(out)
}

fn stats_from_reply(reply: &Stats) -> Result<CollectionStats, String> {
    let metric = u8::try_from(reply.metric)
        .ok()
        .and_then(Metric::from_u8)
        .ok_or_else(|| format!("unknown metric {} (is vexfsd newer than this vexfs?)", reply.metric))?;
    let elem = u8::try_from(reply.elem)
        .ok()
        .and_then(ElemType::from_u8)
        .ok_or_else(|| format!("unknown element type {} (is vexfsd newer than this vexfs?)", reply.elem))?;
    if reply.dim == 0 || reply.dim > DIM_MAX {
        return Err(format!("dimension {}", reply.dim));
    }
    let text = (reply.flags & ioctl::CREATE_TEXT != 0).then(|| TextStats {
        embedder: String::from_utf8_lossy(ioctl::c_str(&reply.embedder)).into_owned(),
        docs_queued: reply.docs_queued,
        docs_indexed: reply.docs_indexed,
        docs_skipped: reply.docs_skipped,
        chunks: reply.chunks,
    });
    Ok(CollectionStats {
        dim: reply.dim,
        metric,
        elem,
        shards: reply.shards,
        vectors: reply.vectors,
        dead_rows: reply.dead_rows,
        log_bytes: reply.log_bytes,
        pending_bytes: reply.pending_bytes,
        memory_bytes: reply.memory_bytes,
        inserts: reply.inserts,
        deletes: reply.deletes,
        searches: reply.searches,
        queries: reply.queries,
        search_micros: reply.search_micros,
        simd: String::from_utf8_lossy(ioctl::c_str(&reply.simd)).into_owned(),
        text,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The largest `nq` whose request and reply both fit, by trying every count.
    fn search_batch_brute(dim: usize, k: usize, filter_len: usize) -> usize {
        (0..=ioctl::PAYLOAD)
            .take_while(|&nq| {
                nq == 0
                    || (search_request_bytes(nq, dim, filter_len).is_some_and(|n| n <= ioctl::PAYLOAD)
                        && search_reply_bytes(nq, k).is_some_and(|n| n <= ioctl::PAYLOAD))
            })
            .last()
            .unwrap()
    }

    #[test]
    fn insert_batches_fill_the_payload() {
        assert_eq!(insert_batch_max(8, false), 508);
        assert_eq!(insert_batch_max(128, false), 31);
        assert_eq!(insert_batch_max(128, true), 31); // 16256 / 520
        assert_eq!(insert_batch_max(960, false), 4);
        assert_eq!(insert_batch_max(4064, false), 1);
        assert_eq!(insert_batch_max(4065, false), 0);
        assert_eq!(insert_batch_max(4062, true), 1);
        assert_eq!(insert_batch_max(4063, true), 0);
        assert_eq!(insert_batch_max(65_536, false), 0);
        assert_eq!(insert_batch_max(usize::MAX, true), 0);
        for dim in 1..5000 {
            for with_ids in [false, true] {
                let n = insert_batch_max(dim, with_ids);
                let bytes = |n: usize| n * (dim * 4 + if with_ids { 8 } else { 0 });
                assert!(bytes(n) <= ioctl::PAYLOAD && bytes(n + 1) > ioctl::PAYLOAD, "dim {dim}");
            }
        }
    }

    #[test]
    fn large_inserts_and_large_vectors_stream() {
        assert!(!insert_uses_stream(1016, 32, false));
        assert!(insert_uses_stream(1017, 32, false));
        assert!(!insert_uses_stream(8 * 31, 128, true));
        assert!(insert_uses_stream(8 * 31 + 1, 128, true));
        assert!(insert_uses_stream(1, 4065, false), "a vector larger than an ioctl streams");
        assert!(insert_uses_stream(1, 65_536, true));
    }

    #[test]
    fn search_batches_fit_request_and_reply() {
        assert_eq!(search_batch_max(128, 10, 0), 31);
        assert_eq!(search_batch_max(8, 10, 0), 99);
        assert_eq!(search_batch_max(8, 1, 0), 508);
        assert_eq!(search_batch_max(8, 1015, 0), 1); // 8 + 1015 * 16 = 16248
        assert_eq!(search_batch_max(8, 1016, 0), 0);
        assert_eq!(search_batch_max(4064, 1, 0), 1);
        assert_eq!(search_batch_max(4064, 1, 1), 0); // the filter's 8 bytes do not fit beside it
        assert_eq!(search_batch_max(4062, 1, 8), 1);
        assert_eq!(search_batch_max(32, usize::MAX, 0), 0);
        assert_eq!(search_batch_max(32, 1, usize::MAX), 0);
        for dim in [1, 2, 3, 7, 8, 31, 32, 100, 128, 700, 960, 4000, 4064, 5000] {
            for k in [1, 2, 3, 5, 10, 63, 100, 127, 500, 1000, 1015, 1016] {
                for filter_len in [0, 1, 8, 9, 100, 4000] {
                    assert_eq!(search_batch_max(dim, k, filter_len), search_batch_brute(dim, k, filter_len));
                }
            }
        }
    }

    #[test]
    fn search_reply_bytes_pads_the_counts() {
        assert_eq!(search_reply_bytes(1, 10), Some(8 + 160));
        assert_eq!(search_reply_bytes(2, 10), Some(8 + 320));
        assert_eq!(search_reply_bytes(3, 1), Some(16 + 48));
        assert_eq!(search_reply_bytes(usize::MAX, 1), None);
    }

    #[test]
    fn check_vectors_names_the_bad_value() {
        assert_eq!(check_vectors(&[1.0, 2.0, 3.0, 4.0], 2, Metric::L2), Ok(2));
        assert_eq!(check_vectors(&[1.0, 2.0, 3.0], 2, Metric::L2), Err(BadVectors::Ragged { len: 3, dim: 2 }));
        assert_eq!(check_vectors(&[], 2, Metric::L2), Err(BadVectors::Empty));
        let bad = check_vectors(&[1.0, 2.0, 3.0, f32::NAN], 2, Metric::Dot).unwrap_err();
        assert_eq!(bad.to_string(), "vector 1 component 1 is NaN (only finite values are allowed)");
        let bad = check_vectors(&[1.0, f32::INFINITY], 2, Metric::L2).unwrap_err();
        assert!(matches!(bad, BadVectors::NotFinite { index: 0, component: 1, .. }));
        assert_eq!(check_vectors(&[0.0, 0.0], 2, Metric::L2), Ok(1));
        assert_eq!(check_vectors(&[1.0, 0.0, 0.0, 0.0], 2, Metric::Cosine), Err(BadVectors::Zero { index: 1 }));
    }

    #[test]
    fn ids_must_match_and_be_unique() {
        assert_eq!(check_ids(&[1, 2, 3], 3), Ok(()));
        assert_eq!(check_ids(&[1, 2], 3), Err("2 ids for 3 vectors".to_owned()));
        assert_eq!(check_ids(&[1, 2, 1], 3), Err("id 1 appears twice".to_owned()));
    }

    #[test]
    fn search_reply_parses_per_query_results() {
        // Two queries, k = 2: counts [2, 1] (8 bytes), then results[0..2] for query 0 and
        // results[2..3] for query 1; results[3] is unused.
        let mut payload = vec![0u8; ioctl::PAYLOAD];
        payload[0..4].copy_from_slice(&2u32.to_le_bytes());
        payload[4..8].copy_from_slice(&1u32.to_le_bytes());
        for (slot, (id, distance)) in [(0, (7u64, 0.5f32)), (1, (9, 1.5)), (2, (4, 0.25))] {
            let result = SearchResult { id, distance, reserved: 0 };
            payload[8 + slot * 16..8 + slot * 16 + 16].copy_from_slice(result.as_bytes());
        }
        let hits = parse_search_reply(&payload, 2, 2).unwrap();
        assert_eq!(
            hits,
            vec![vec![Hit { id: 7, distance: 0.5 }, Hit { id: 9, distance: 1.5 }], vec![Hit { id: 4, distance: 0.25 }]]
        );
        payload[4..8].copy_from_slice(&3u32.to_le_bytes());
        assert!(parse_search_reply(&payload, 2, 2).unwrap_err().contains("query 1 has 3 results"));
    }

    #[test]
    fn create_request_checks_parameters() {
        let options = |dim, shards| CreateOptions { dim, metric: Metric::Cosine, shards, text: None };
        let request = create_request(&options(32, 4)).unwrap();
        assert_eq!((request.dim, request.metric, request.shards, request.flags), (32, 2, 4, 0));
        assert!(create_request(&options(0, 1)).err().unwrap().contains("dimension 0"));
        assert!(create_request(&options(65_537, 1)).err().unwrap().contains("dimension 65537"));
        assert!(create_request(&options(8, 65)).err().unwrap().contains("65 shards"));
        let text = TextOptions { embedder: "builtin:x".to_owned(), chunk_bytes: 500, chunk_overlap: 50 };
        let request = create_request(&CreateOptions { text: Some(text), ..options(384, 0) }).unwrap();
        assert_eq!(request.flags, ioctl::CREATE_TEXT);
        assert_eq!((request.chunk_bytes, request.chunk_overlap), (500, 50));
        assert_eq!(ioctl::c_str(&request.embedder), b"builtin:x");
        let long = TextOptions { embedder: "x".repeat(256), ..TextOptions::default() };
        assert!(create_request(&CreateOptions { text: Some(long), ..options(8, 0) }).is_err());
    }

    #[test]
    fn errno_maps_to_named_errors() {
        let path = Path::new("/mnt/vexfs/c");
        let error = |op, errno| CollectionError::from_errno(path, op, io::Error::from_raw_os_error(errno)).to_string();
        assert_eq!(
            error(OP_KNN, libc::ENOTTY),
            "/mnt/vexfs/c is not a VexFS collection (make one with `vexfs collection create`)"
        );
        assert!(error(OP_CREATE, libc::ENOTTY).contains("not on a VexFS mount"));
        assert_eq!(error(OP_CREATE, libc::EEXIST), "/mnt/vexfs/c is already a collection");
        assert!(error(OP_CREATE, libc::ENOTEMPTY).contains("is not empty"));
        assert_eq!(
            error(OP_INSERT, libc::EINVAL),
            "/mnt/vexfs/c: vexfsd refused the insert request as invalid (the vexfsd log has the exact reason)"
        );
        assert!(error(OP_SYNC, libc::ENOSPC).starts_with("/mnt/vexfs/c: sync failed: No space left"));
    }

    #[test]
    fn create_off_vexfs_fails_and_removes_the_directories_it_made() {
        let base = std::env::temp_dir().join(format!("vexfs-create-test-{}", std::process::id()));
        std::fs::create_dir_all(&base).unwrap();
        let path = base.join("a/b/c");
        let options = CreateOptions { dim: 4, metric: Metric::L2, shards: 0, text: None };
        match Collection::create(&path, &options) {
            Err(CollectionError::NotVexfs { path: named }) => assert_eq!(named, path.display().to_string()),
            other => panic!("{other:?}"),
        }
        assert!(!base.join("a").exists(), "left {} behind", base.join("a").display());
        assert!(base.exists());
        std::fs::remove_dir(&base).unwrap();
    }

    #[test]
    fn opening_a_plain_directory_is_not_a_collection() {
        // Any file system other than VexFS answers the collection ioctls with ENOTTY.
        let dir = std::env::temp_dir();
        match Collection::open(&dir) {
            Err(CollectionError::NotCollection { path }) => assert_eq!(path, dir.display().to_string()),
            other => panic!("{other:?}"),
        }
        let file = std::env::current_exe().unwrap();
        assert!(matches!(Collection::open(&file), Err(CollectionError::Open { .. })));
    }
}
