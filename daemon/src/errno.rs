//! The daemon's one errno mapping. Every error a front door answers with becomes the errno a
//! POSIX caller sees here and nowhere else, so that a refusal reads the same through every door
//! (FUSE requests and ioctls today, the query socket and ublk later).
//!
//! Families, in short: bad input is EINVAL; a bound exceeded is EFBIG (one file or batch too
//! large), E2BIG (an answer too large), EDQUOT (a user's share used up) or ENOSPC (a count);
//! permission is EACCES (the mode bits forbid it) or EPERM (only the owner or root may);
//! device errors and corruption are EIO; a volume latched read-only after a device error is EROFS.

use crate::embed::EmbedError;
use crate::engine::EngineError;
use crate::service::{Bound, ServiceError};
use crate::storage::IoError;
use crate::vector::VectorError;

/// An error with the errno a POSIX caller sees for it.
pub trait Errno {
    fn errno(&self) -> i32;
}

impl Errno for IoError {
    fn errno(&self) -> i32 {
        libc::EIO
    }
}

impl Errno for EngineError {
    fn errno(&self) -> i32 {
        match self {
            EngineError::NotFound => libc::ENOENT,
            EngineError::Exists => libc::EEXIST,
            EngineError::NotDir => libc::ENOTDIR,
            EngineError::IsDir => libc::EISDIR,
            EngineError::NotEmpty => libc::ENOTEMPTY,
            EngineError::NoSpace => libc::ENOSPC,
            EngineError::NameTooLong => libc::ENAMETOOLONG,
            EngineError::Invalid(_) => libc::EINVAL,
            EngineError::Permission => libc::EPERM,
            EngineError::TooManyLinks => libc::EMLINK,
            EngineError::NoData => libc::ENODATA,
            EngineError::Range => libc::ERANGE,
            EngineError::TooBig => libc::E2BIG,
            EngineError::FileTooBig => libc::EFBIG,
            EngineError::NotSupported => libc::EOPNOTSUPP,
            EngineError::NoSuchOffset => libc::ENXIO,
            EngineError::Io(e) => e.errno(),
            EngineError::Corrupt(_) | EngineError::Volume(_) => libc::EIO,
            EngineError::Failed => libc::EROFS,
        }
    }
}

impl Errno for EmbedError {
    /// ENOENT for a model that is not installed, EINVAL for a bad spec, EHOSTUNREACH for a
    /// server that does not answer, EIO for the rest.
    fn errno(&self) -> i32 {
        match self {
            EmbedError::ModelMissing { .. } => libc::ENOENT,
            EmbedError::BadSpec { .. } | EmbedError::Unknown { .. } => libc::EINVAL,
            EmbedError::HttpUnreachable { .. } => libc::EHOSTUNREACH,
            _ => libc::EIO,
        }
    }
}

impl Errno for VectorError {
    fn errno(&self) -> i32 {
        match self {
            VectorError::Invalid(_) => libc::EINVAL,
            VectorError::NotCollection(_) => libc::ENOTTY,
            VectorError::IdsExhausted { .. } => libc::ENOSPC,
            VectorError::TooManyResults { .. } => libc::E2BIG,
            VectorError::Corrupt { .. } | VectorError::WorkerFailed { .. } => libc::EIO,
            VectorError::LogFailed { errno, .. } => *errno,
            VectorError::Closed => libc::ESHUTDOWN,
            VectorError::Embed(e) => e.errno(),
            VectorError::Engine(e) => e.errno(),
        }
    }
}

impl Errno for Bound {
    fn errno(&self) -> i32 {
        match self {
            Bound::FileSize => libc::EFBIG,
            Bound::Answer => libc::E2BIG,
            Bound::Quota => libc::EDQUOT,
            Bound::Count => libc::ENOSPC,
        }
    }
}

impl Errno for ServiceError {
    fn errno(&self) -> i32 {
        match self {
            ServiceError::Invalid(_) => libc::EINVAL,
            ServiceError::Access(_) => libc::EACCES,
            ServiceError::NotOwner(_) => libc::EPERM,
            ServiceError::Limit { bound, .. } => bound.errno(),
            ServiceError::Interrupted => libc::EINTR,
            ServiceError::NotFound(_) => libc::ENOENT,
            ServiceError::Exists(_) => libc::EEXIST,
            ServiceError::Stale => libc::ESTALE,
            ServiceError::BadHandle => libc::EBADF,
            ServiceError::Panicked(_) => libc::EIO,
            ServiceError::Vector(e) => e.errno(),
            ServiceError::Engine(e) => e.errno(),
            ServiceError::Embed(e) => e.errno(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families() {
        assert_eq!(ServiceError::Access("x".into()).errno(), libc::EACCES);
        assert_eq!(ServiceError::NotOwner("x".into()).errno(), libc::EPERM);
        let limit = |bound| ServiceError::Limit { bound, message: String::new() }.errno();
        assert_eq!(limit(Bound::FileSize), libc::EFBIG);
        assert_eq!(limit(Bound::Answer), libc::E2BIG);
        assert_eq!(limit(Bound::Quota), libc::EDQUOT);
        assert_eq!(limit(Bound::Count), libc::ENOSPC);
        assert_eq!(ServiceError::from(VectorError::Engine(EngineError::Failed)).errno(), libc::EROFS);
        assert_eq!(ServiceError::from(EngineError::NotFound).errno(), libc::ENOENT);
    }
}
