//! Vector collections: the vectors of every collection, kept in memory by shard-owning worker
//! threads and made durable in shard logs on the volume ([`crate::engine`] stores those as hidden
//! files, so they share the files' crash safety), and exact search over them.
//!
//! Front doors call [`Vectors`]; it never learns which door a request came through.

pub mod search;
mod service;
mod shard;
mod writer;

pub use service::{CollectionSpec, CollectionStats, Vectors, K_MAX, QUERIES_MAX, RANGE_LIMIT_MAX};
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

    /// The errno a POSIX caller sees.
    pub fn errno(&self) -> i32 {
        match self {
            VectorError::Invalid(_) => libc::EINVAL,
            VectorError::NotCollection(_) => libc::ENOTTY,
            VectorError::Corrupt { .. } => libc::EIO,
            VectorError::LogFailed { errno, .. } => *errno,
            VectorError::Closed => libc::ESHUTDOWN,
            VectorError::Embed(e) => e.errno(),
            VectorError::Engine(e) => e.errno(),
        }
    }
}
