//! The VexFS client library, used by the `vexfs` command-line tool:
//!
//! - [`volume`]: volume tools that work on the device directly, without the daemon (`mkfs`,
//!   `fsck`).
//! - [`collection`]: vector collections on a mounted volume: create, insert, k-NN and range
//!   search, delete, stats and sync, through the ioctls of `client/include/vexfs.h`, with
//!   requests split to fit the ioctl payload.
//! - [`vecfile`]: readers for the vector files the CLI takes (`.npy`, `.fvecs`).
//!
//! The query-socket client joins it in later work.
//!
//! Architecture Invariant: the client depends on `vexfs-format` only, never on the daemon. Every
//! collection ioctl goes through one `unsafe` call, in the private `sys` module.
#![deny(missing_docs)]

pub mod collection;
mod sys;
pub mod vecfile;
pub mod volume;
