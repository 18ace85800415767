//! FUSE front door: the kernel's FUSE protocol, decoded and encoded by us (no libfuse, no fuser).
//!
//! The layer has four parts, and only the last knows how bytes travel:
//! - [`abi`]: the kernel's wire structs and constants (`linux/fuse.h`), verbatim.
//! - [`request`]: bytes to a typed [`request::Request`], without `unsafe` and without panics.
//! - [`reply`]: typed answers to bytes, one [`reply::Reply`] per request, EIO if one is dropped.
//! - [`transport`]: the [`transport::Transport`] trait and the classic `/dev/fuse` channel, with
//!   request buffers that put WRITE data on a 4096-byte boundary for O_DIRECT.
//!
//! [`session`] runs INIT negotiation and the worker threads over these; [`notify`] sends the
//! kernel cache invalidations; [`mount`] mounts and unmounts; [`uring`] is the FUSE-over-io_uring
//! transport, which delivers the same header, argument struct and payload in ring buffers
//! ([`request::Request::parse_split`]) and takes the same vectored replies. [`ops`] adapts
//! requests to the engine, [`collections`] the collection ioctls and xattrs to the vector service,
//! [`special`] serves a collection's special files (insert stream, query files).
//!
//! Architecture invariant: the protocol layer (all but the engine adapter, `ops`) touches no
//! on-disk bytes and no engine state, and the adapter decodes nothing itself: it receives
//! [`request::Operation`] values and answers through [`reply::Reply`].

pub mod abi;
pub mod collections;
pub mod mount;
pub mod notify;
pub mod ops;
pub mod reply;
pub mod request;
pub mod session;
pub mod special;
pub mod transport;
pub mod uring;
