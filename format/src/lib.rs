//! The VexFS on-disk format as a pure crate: bytes in, typed values or typed errors out.
//!
//! Invariants:
//! - No I/O, no clock, no `unsafe`. Callers hand in block contents and get back decoded values.
//! - All integers on disk are little-endian; every metadata block starts with a [`block::MetaHeader`]
//!   whose crc32c covers the whole block, and names its own address to catch misdirected writes.
//! - The format version is independent of the crate version (see `docs/FORMAT.md`, "Version history").
#![forbid(unsafe_code)]

pub mod bitmap;
pub mod block;
pub mod collection;
pub mod error;
pub mod fsck;
pub mod inode;
pub mod ioctl;
pub mod items;
pub mod journal;
pub mod key;
pub mod mkfs;
pub mod node;
pub mod root;
pub mod superblock;
pub mod units;

pub use block::{BlockAddr, BlockKind, MetaHeader, BLOCK_SIZE};
pub use error::FormatError;
pub use key::{ItemKind, Key};
