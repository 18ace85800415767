//! The VexFS engine and the adapters (front doors) that serve it.
//!
//! See `docs/ARCHITECTURE.md` for the map. In short: [`storage::Storage`] is the device as the
//! engine sees it ([`io`] implements it with io_uring, `io::sim` in memory); [`engine`] owns every
//! piece of state and policy; [`fuse`] decodes kernel FUSE requests into one engine call each.

pub mod btree;
pub mod embed;
pub mod engine;
pub mod fuse;
pub mod io;
pub mod storage;
pub mod text;
pub mod vector;
