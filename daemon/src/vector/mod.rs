//! Vector collections: the vectors of every collection, kept in memory by shard-owning worker
//! threads and made durable in shard logs on the volume ([`crate::engine`] stores those as hidden
//! files, so they share the files' crash safety), and exact search over them.
//!
//! Front doors call [`Vectors`]; it never learns which door a request came through.

pub mod search;
mod service;
mod shard;
mod writer;

pub use service::{CollectionSpec, CollectionStats, Vectors, ID_MAX, K_MAX, QUERIES_MAX, RANGE_LIMIT_MAX, RESULTS_MAX};
pub use shard::ShardStats;
pub use writer::LOG_ARENA_BYTES_PER_WORKER;

use crate::engine::EngineError;

/// Why a vector operation failed.
#[derive(Debug, thiserror::Error)]
pub enum VectorError {
    /// Bad input from the caller; nothing was stored.
    #[error("{0}")]
    Invalid(String),
    #[error("directory {0} is not a collection")]
    NotCollection(u64),
    /// Assigning ids to a batch would pass [`ID_MAX`].
    #[error(
        "the collection's assigned ids are used up: {count} more from {next} would pass {ID_MAX}; give ids explicitly"
    )]
    IdsExhausted { next: u64, count: u64 },
    /// A search whose answer would exceed [`RESULTS_MAX`].
    #[error("{results} results requested (queries × k or × limit): at most {RESULTS_MAX} per request")]
    TooManyResults { results: u64 },
    /// A request panicked on the worker that owns this shard: the shard is closed, and every later
    /// request for it fails, until the daemon restarts and replays its log.
    #[error("shard {shard} failed: {reason}")]
    WorkerFailed { shard: u64, reason: String },
    #[error("shard log {shard} at byte {offset}: {reason}")]
    Corrupt { shard: u64, offset: u64, reason: String },
    /// An earlier append to this shard log failed; its later changes cannot be made durable.
    #[error("shard log {shard} cannot be written: {reason}")]
    LogFailed { shard: u64, reason: String, errno: i32 },
    #[error("the vector service is shutting down")]
    Closed,
    /// A text collection's embedder could not be loaded or failed.
    #[error(transparent)]
    Embed(#[from] crate::embed::EmbedError),
    #[error(transparent)]
    Engine(#[from] EngineError),
}

impl VectorError {
    pub fn invalid(message: impl Into<String>) -> VectorError {
        VectorError::Invalid(message.into())
    }
}
