//! The one error type of the format crate.

use thiserror::Error;

/// Why a block or a volume could not be decoded.
///
/// Corruption variants carry the block address so that a caller (mount, fsck) can name the block.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FormatError {
    #[error("block {addr}: bad magic {found:#010x} (not a VexFS metadata block)")]
    BadMagic { addr: u64, found: u32 },
    #[error("block {addr}: checksum mismatch (stored {stored:#010x}, computed {computed:#010x})")]
    Checksum { addr: u64, stored: u32, computed: u32 },
    #[error("block {addr}: expected a {expected} block, found kind {found}")]
    WrongKind { addr: u64, expected: &'static str, found: u16 },
    #[error("block {addr}: header names block {found} (misdirected or stale write)")]
    Misdirected { addr: u64, found: u64 },
    #[error("block {addr}: {what}")]
    Malformed { addr: u64, what: String },
    #[error("not a VexFS volume (superblock magic is {found:02x?})")]
    NotVexfs { found: [u8; 8] },
    #[error("superblock: format version {found} is not supported (this build reads versions up to {supported})")]
    UnsupportedVersion { found: u32, supported: u32 },
    #[error("superblock: unknown incompatible feature flags {flags:#x}")]
    UnknownFeatures { flags: u64 },
    #[error("superblock: block size {found} is not supported (only {supported})")]
    UnsupportedBlockSize { found: u32, supported: u32 },
    #[error("device too small: {size} bytes, a VexFS volume needs at least {min} bytes")]
    TooSmall { size: u64, min: u64 },
    #[error(
        "superblock says the volume has {block_count} blocks, but the device holds only {device_blocks} \
         ({device_bytes} bytes): the device was truncated or the superblock is damaged"
    )]
    LargerThanDevice { block_count: u64, device_blocks: u64, device_bytes: u64 },
    #[error("value too large: {len} bytes (at most {max})")]
    TooLarge { len: usize, max: usize },
}

impl FormatError {
    /// Shorthand for a [`FormatError::Malformed`] error.
    pub fn malformed(addr: u64, what: impl Into<String>) -> Self {
        FormatError::Malformed { addr, what: what.into() }
    }

    /// True when the error means the bytes on the device are damaged (as opposed to
    /// unsupported or absent).
    pub fn is_corruption(&self) -> bool {
        matches!(
            self,
            FormatError::BadMagic { .. }
                | FormatError::Checksum { .. }
                | FormatError::WrongKind { .. }
                | FormatError::Misdirected { .. }
                | FormatError::Malformed { .. }
        )
    }
}
