//! The collection service: the one home of collections' policy, called by every front door with
//! the caller's credentials.
//!
//! A door decodes a request, makes one call here with a [`Caller`], and encodes the answer. What
//! the call may do is decided here, once for every door: who may read or change a collection
//! ([`access`], the table in `docs/COLLECTIONS.md`, "Permissions"), what input is valid, the
//! defaults of a new collection, and how much a request may make the daemon hold ([`limits`]).
//! Below it, [`crate::vector::Vectors`] keeps and searches vectors and [`crate::text::Texts`]
//! indexes documents; neither knows who asked.
//!
//! What the service owns besides the checks:
//! - the query-file language and the query files' contents ([`query`]);
//! - the insert stream's framing and its open streams ([`stream`]);
//! - the lifecycle of a collection: creation, teardown before `rmdir`, and the namespace changes
//!   the text indexer must hear of (a door reports them, the service passes them on).
//!
//! Architecture Invariant: doors call the vector and text services only through this module; a
//! request's permission is decided here, never in a door.

pub mod access;
pub mod caller;
pub mod limits;
pub mod query;
pub mod stream;

use std::sync::Arc;

use rustc_hash::FxHashSet;
use vexfs_format::collection::{validate_chunking, Attrs, CollectionRecord, Metric, SHARDS_MAX};

pub use caller::{Caller, Interrupt};

use crate::embed::EmbedError;
use crate::engine::{Attr, EngineError, EngineHandle};
use crate::storage::Storage;
use crate::text::{NewText, TextHit, TextStats, Texts, WaitError};
use crate::vector::search::filter::Filter;
use crate::vector::search::Neighbor;
use crate::vector::{CollectionSpec, CollectionStats, VectorError, Vectors};
use access::{Owner, EXEC, READ, WRITE};

/// Default chunking of text collections: about a paragraph or two of prose, or a function.
pub const CHUNK_BYTES_DEFAULT: u32 = 1000;
pub const CHUNK_OVERLAP_DEFAULT: u32 = 100;

/// Which kind of bound a request exceeded; each has its errno ([`crate::errno`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bound {
    /// One file or batch is too large (EFBIG).
    FileSize,
    /// The answer would be too large (E2BIG).
    Answer,
    /// The caller's share is used up (EDQUOT).
    Quota,
    /// Too many of something (ENOSPC).
    Count,
}

/// Why a collection request was refused or failed. Every variant names the problem.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServiceError {
    /// Bad input; nothing was changed.
    #[error("{0}")]
    Invalid(String),
    /// The mode bits forbid it.
    #[error("permission denied: {0}")]
    Access(String),
    /// Only the owner (or root) may.
    #[error("operation not permitted: {0}")]
    NotOwner(String),
    #[error("{message}")]
    Limit { bound: Bound, message: String },
    #[error("interrupted")]
    Interrupted,
    #[error("{0}: no such file")]
    NotFound(String),
    #[error("{0} exists")]
    Exists(String),
    /// A handle to something that is gone (a query file unlinked, a collection removed).
    #[error("stale handle")]
    Stale,
    #[error("not an open insert stream")]
    BadHandle,
    /// A request handler panicked; the daemon goes on serving.
    #[error("internal error: {0}")]
    Panicked(String),
    #[error(transparent)]
    Vector(#[from] VectorError),
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Embed(#[from] EmbedError),
}

impl ServiceError {
    pub fn invalid(message: impl Into<String>) -> ServiceError {
        ServiceError::Invalid(message.into())
    }

    pub fn limit(bound: Bound, message: impl Into<String>) -> ServiceError {
        ServiceError::Limit { bound, message: message.into() }
    }

    /// Whether the caller caused it (logged as information, not as an error of the daemon).
    pub fn is_callers(&self) -> bool {
        match self {
            ServiceError::Panicked(_) => false,
            ServiceError::Vector(e) => matches!(
                e,
                VectorError::Invalid(_)
                    | VectorError::NotCollection(_)
                    | VectorError::IdsExhausted { .. }
                    | VectorError::TooManyResults { .. }
            ),
            ServiceError::Engine(e) => !matches!(e, EngineError::Io(_) | EngineError::Corrupt(_) | EngineError::Failed),
            ServiceError::Embed(e) => matches!(e, EmbedError::BadSpec { .. } | EmbedError::Unknown { .. }),
            _ => true,
        }
    }
}

impl From<WaitError> for ServiceError {
    fn from(error: WaitError) -> ServiceError {
        match error {
            WaitError::Interrupted => ServiceError::Interrupted,
            WaitError::Stopped => ServiceError::Vector(VectorError::Closed),
        }
    }
}

pub type Result<T, E = ServiceError> = std::result::Result<T, E>;

/// The text of a panic's payload.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(text) = payload.downcast_ref::<&str>() {
        (*text).to_string()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        "a panic without a message".to_string()
    }
}

/// A new collection, as a door decoded it (`0` and empty fields take the defaults).
#[derive(Clone, Debug, Default)]
pub struct CreateRequest {
    pub dim: u32,
    /// The metric's wire number ([`Metric::from_u8`]).
    pub metric: u32,
    pub shards: u32,
    /// `Some` for a text collection.
    pub text: Option<TextRequest>,
}

/// A text collection's parameters as a door decoded them; zeros take the defaults.
#[derive(Clone, Debug, Default)]
pub struct TextRequest {
    /// A defined embedder's name; empty for the daemon's default.
    pub embedder: String,
    pub chunk_bytes: u32,
    pub chunk_overlap: u32,
}

/// Vectors to insert, as a door decoded them.
#[derive(Clone, Debug, Default)]
pub struct InsertRequest {
    /// The dimension the caller means: checked against the collection's.
    pub dim: u32,
    pub ids: Option<Vec<u64>>,
    /// Row-major, `count × dim`.
    pub values: Vec<f32>,
    /// Empty, or one set per vector.
    pub attrs: Vec<Attrs>,
    /// Durable before the call returns.
    pub sync: bool,
}

/// A k-NN or range search, as a door decoded it.
#[derive(Clone, Debug, Default)]
pub struct SearchRequest {
    /// The dimension the caller means: checked against the collection's.
    pub dim: u32,
    /// Row-major queries, `count × dim`.
    pub queries: Vec<f32>,
    /// k for k-NN; the most results per query for a range search.
    pub k: usize,
    /// `Some` for a range search.
    pub radius: Option<f32>,
    /// Filter-language text; None or empty for none.
    pub filter: Option<String>,
}

/// A collection's parameters and counters, with its indexing progress when it holds text.
#[derive(Clone, Debug, PartialEq)]
pub struct Stats {
    pub vectors: CollectionStats,
    pub text: Option<TextStats>,
}

/// The collection service over one engine (see the module documentation).
pub struct Collections<S: Storage> {
    texts: Arc<Texts<S>>,
    queries: query::QueryFiles,
    streams: stream::Streams,
}

impl<S: Storage> Collections<S> {
    pub fn new(texts: Arc<Texts<S>>) -> Collections<S> {
        Collections { texts, queries: query::QueryFiles::default(), streams: stream::Streams::default() }
    }

    fn vectors(&self) -> &Arc<Vectors<S>> {
        self.texts.vectors()
    }

    fn engine(&self) -> &EngineHandle<S> {
        self.vectors().engine()
    }

    /// The owner of inode `ino`.
    fn owner(&self, ino: u64) -> Result<Owner> {
        Ok(Owner::from(&self.engine().getattr(ino)?.record))
    }

    /// `dir`'s collection record, once `caller` has every permission in `mask` on it; `doing`
    /// names the operation in the refusal.
    fn collection(&self, caller: &Caller, dir: u64, mask: u32, doing: &str) -> Result<CollectionRecord> {
        let owner = self.owner(dir)?;
        let record = self.vectors().record(dir)?.ok_or(VectorError::NotCollection(dir))?;
        if !access::permits(caller, owner, mask) {
            let needed = if mask & WRITE != 0 { "write" } else { "read" };
            return Err(ServiceError::Access(format!(
                "{doing} needs {needed} permission on the collection's directory"
            )));
        }
        Ok(record)
    }

    /// Whether `dir` is a collection (no permission needed: it shows in its xattrs).
    pub fn is_collection(&self, dir: u64) -> bool {
        matches!(self.vectors().record(dir), Ok(Some(_)))
    }

    /// Makes the empty directory `dir` a collection. Only its owner (or root) may.
    pub fn create(&self, caller: &Caller, dir: u64, request: &CreateRequest) -> Result<CollectionRecord> {
        if !access::owns(caller, self.owner(dir)?) {
            return Err(ServiceError::NotOwner("only the directory's owner may make it a collection".into()));
        }
        let metric = u8::try_from(request.metric)
            .ok()
            .and_then(Metric::from_u8)
            .ok_or_else(|| ServiceError::invalid(format!("unknown metric {}", request.metric)))?;
        if request.shards > SHARDS_MAX {
            return Err(ServiceError::invalid(format!("{} shards: at most {SHARDS_MAX}", request.shards)));
        }
        let record = match &request.text {
            None => {
                let spec = CollectionSpec { dim: request.dim, metric, shards: request.shards, text: None };
                self.vectors().create(dir, &spec)?
            }
            Some(text) => self.texts.create(dir, &new_text(request, metric, text)?)?,
        };
        Ok(record)
    }

    /// Inserts vectors; returns their ids (assigned ones when the request gave none).
    pub fn insert(&self, caller: &Caller, dir: u64, request: InsertRequest) -> Result<Vec<u64>> {
        let record = self.collection(caller, dir, WRITE, "inserting")?;
        check_dim(request.dim, record.dim, "vectors")?;
        let sync = request.sync;
        let ids = self.vectors().insert(dir, request.ids.as_deref(), request.values, request.attrs)?;
        if sync {
            self.vectors().sync(dir)?;
        }
        Ok(ids)
    }

    /// Deletes vectors by id; returns how many existed.
    pub fn delete(&self, caller: &Caller, dir: u64, ids: &[u64], sync: bool) -> Result<u64> {
        self.collection(caller, dir, WRITE, "deleting")?;
        let deleted = self.vectors().delete(dir, ids)?;
        if sync {
            self.vectors().sync(dir)?;
        }
        Ok(deleted)
    }

    /// A k-NN or range search: per query, the neighbours nearest first.
    pub fn search(&self, caller: &Caller, dir: u64, request: &SearchRequest) -> Result<Vec<Vec<Neighbor>>> {
        let record = self.collection(caller, dir, READ, "searching")?;
        check_dim(request.dim, record.dim, "queries")?;
        let filter = parse_filter(request.filter.as_deref())?;
        Ok(match request.radius {
            Some(radius) => self.vectors().range(dir, &request.queries, radius, filter, request.k)?,
            None => self.vectors().knn(dir, &request.queries, request.k, filter)?,
        })
    }

    /// The `k` chunks of readable documents nearest in meaning to `text`, nearest first, with
    /// snippets. Documents the caller may not read (no read permission on the file, or no search
    /// permission on the directory) are left out while searching, so the answer keeps its k.
    pub fn search_text(
        &self,
        caller: &Caller,
        dir: u64,
        text: &str,
        k: usize,
        filter: Option<&str>,
        interrupt: &Interrupt,
    ) -> Result<Vec<TextHit>> {
        self.collection(caller, dir, READ, "searching")?;
        let filter = parse_filter(filter)?;
        self.texts.params(dir)?;
        let hidden = self.hidden_docs(caller, dir, interrupt)?;
        let mut hits = self.texts.search(dir, text, k, filter, hidden)?;
        // Owners may have changed since the search began: each hit is checked again.
        let may_search = access::permits(caller, self.owner(dir)?, EXEC);
        hits.retain(|hit| may_search && self.owner(hit.ino).is_ok_and(|o| access::permits(caller, o, READ)));
        for hit in &mut hits {
            hit.snippet = self.texts.snippet(hit.ino, hit.start, hit.end);
        }
        Ok(hits)
    }

    /// The documents of text collection `dir` that `caller` may not read.
    fn hidden_docs(&self, caller: &Caller, dir: u64, interrupt: &Interrupt) -> Result<FxHashSet<i64>> {
        if caller.is_root() {
            return Ok(FxHashSet::default());
        }
        let may_search = access::permits(caller, self.owner(dir)?, EXEC);
        let docs = self.texts.doc_owners(dir, interrupt)?;
        Ok(docs
            .into_iter()
            .filter(|&(_, owner)| !may_search || !access::permits(caller, owner, READ))
            .map(|(ino, _)| ino as i64)
            .collect())
    }

    /// Parameters and counters of `dir`'s collection.
    pub fn stats(&self, caller: &Caller, dir: u64, interrupt: &Interrupt) -> Result<Stats> {
        self.collection(caller, dir, READ, "reading statistics")?;
        let vectors = self.vectors().stats(dir)?;
        let text = self.texts.stats(dir, interrupt)?;
        Ok(Stats { vectors, text })
    }

    /// Makes every acknowledged change to `dir`'s vectors durable; in a text collection, first
    /// waits until every document in it is searchable.
    pub fn sync(&self, caller: &Caller, dir: u64, interrupt: &Interrupt) -> Result<()> {
        self.collection(caller, dir, WRITE, "syncing")?;
        self.texts.settle(dir, interrupt)?;
        self.vectors().sync(dir)?;
        Ok(())
    }

    /// The collection's parameters as `user.vexfs.*` attributes (name, value); None when `dir`
    /// is not a collection.
    pub fn params(&self, caller: &Caller, dir: u64) -> Result<Option<XattrList>> {
        let Some(record) = self.vectors().record(dir)? else { return Ok(None) };
        if !access::permits(caller, self.owner(dir)?, READ) {
            return Err(ServiceError::Access("reading parameters needs read permission on the directory".into()));
        }
        Ok(Some(param_xattrs(&record)))
    }

    /// Before directory `dir` is removed: when it is a collection, its pending vectors are
    /// written out (so nothing acknowledged is lost if the removal fails) and its memory, text
    /// index, query files and insert streams are dropped. The door has checked the removal.
    pub fn removing(&self, dir: u64) -> Result<()> {
        if !self.is_collection(dir) {
            return Ok(());
        }
        self.vectors().flush(dir)?;
        self.texts.forget(dir);
        self.vectors().forget(dir);
        self.queries.forget_collection(dir);
        self.streams.forget_collection(dir);
        Ok(())
    }

    /// A lookup or listing in `dir`: a text collection is opened in the background.
    pub fn dir_visited(&self, dir: u64) {
        self.texts.is_text(dir);
    }

    /// File `attr` was created or linked as `name` in `dir`.
    pub fn entry_added(&self, dir: u64, attr: &Attr, name: &[u8]) {
        self.texts.entry_added(dir, attr, name);
    }

    /// Names in `dir` were removed or renamed.
    pub fn names_changed(&self, dir: u64) {
        self.texts.names_changed(dir);
    }

    /// The content or xattrs of file `ino` changed, or a writer closed it.
    pub fn content_changed(&self, ino: u64) {
        self.texts.content_changed(ino);
    }

    /// The attributes of `attr.ino` were set (its owner, group or mode may have changed).
    pub fn attrs_changed(&self, attr: &Attr) {
        self.texts.owner_changed(attr);
    }

    /// `fsync` of file `ino`, whose data the door has made durable: a document is searchable,
    /// and its vectors durable, when this returns.
    pub fn fsync(&self, ino: u64, interrupt: &Interrupt) -> Result<()> {
        if let Some(dir) = self.texts.fsync(ino, interrupt)? {
            self.vectors().sync(dir)?;
        }
        Ok(())
    }

    /// Stops indexing and writes every open collection's pending vectors (at unmount).
    pub fn shutdown(&self) -> Result<()> {
        self.texts.stop();
        self.vectors().flush_all()?;
        Ok(())
    }
}

/// A text collection's parameters with the defaults filled in, checked.
fn new_text(request: &CreateRequest, metric: Metric, text: &TextRequest) -> Result<NewText> {
    if !text.embedder.is_empty() {
        crate::embed::registry::check_name(&text.embedder).map_err(ServiceError::Invalid)?;
    }
    let (chunk_bytes, chunk_overlap) = match (text.chunk_bytes, text.chunk_overlap) {
        (0, 0) => (CHUNK_BYTES_DEFAULT, CHUNK_OVERLAP_DEFAULT),
        (0, overlap) => (CHUNK_BYTES_DEFAULT, overlap),
        (bytes, overlap) => (bytes, overlap),
    };
    validate_chunking(chunk_bytes, chunk_overlap).map_err(ServiceError::Invalid)?;
    Ok(NewText {
        dim: request.dim,
        metric,
        shards: request.shards,
        embedder: text.embedder.clone(),
        chunk_bytes,
        chunk_overlap,
    })
}

fn check_dim(given: u32, dim: u32, what: &str) -> Result<()> {
    if given != dim {
        return Err(ServiceError::invalid(format!("{what} of dimension {given} for a collection of dimension {dim}")));
    }
    Ok(())
}

fn parse_filter(text: Option<&str>) -> Result<Option<Filter>> {
    match text {
        None | Some("") => Ok(None),
        Some(text) => Filter::parse(text).map(Some).map_err(|e| ServiceError::invalid(e.to_string())),
    }
}

/// Extended attributes as (name, value) pairs.
pub type XattrList = Vec<(Vec<u8>, Vec<u8>)>;

/// The read-only parameter xattrs of a collection, name and value.
pub fn param_xattrs(record: &CollectionRecord) -> XattrList {
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

/// The prefix of the read-only parameter xattrs; reserved on every inode.
pub const XATTR_PREFIX: &[u8] = b"user.vexfs.";
