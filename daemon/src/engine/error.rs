//! The engine's error type (its errno is in [`crate::errno`]).

use vexfs_format::FormatError;

use crate::storage::IoError;

/// Why an engine operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    #[error("no such file or directory")]
    NotFound,
    #[error("file exists")]
    Exists,
    #[error("not a directory")]
    NotDir,
    #[error("is a directory")]
    IsDir,
    #[error("directory not empty")]
    NotEmpty,
    #[error("no space left on device")]
    NoSpace,
    #[error("file name too long")]
    NameTooLong,
    #[error("invalid argument: {0}")]
    Invalid(&'static str),
    #[error("operation not permitted")]
    Permission,
    #[error("too many links")]
    TooManyLinks,
    #[error("no such attribute")]
    NoData,
    #[error("result does not fit the buffer")]
    Range,
    #[error("argument list too long")]
    TooBig,
    #[error("file too large")]
    FileTooBig,
    #[error("operation not supported")]
    NotSupported,
    #[error("no such device or address")]
    NoSuchOffset,
    #[error("{0}")]
    Io(#[from] IoError),
    #[error("metadata corruption: {0}")]
    Corrupt(#[from] FormatError),
    #[error("the volume is read-only after an earlier device error")]
    Failed,
    #[error("volume: {0}")]
    Volume(String),
}

/// The engine's result type.
pub type Result<T, E = EngineError> = std::result::Result<T, E>;
