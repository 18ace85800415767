//! The VexFS engine and the adapters (front doors) that serve it.
//!
//! See `docs/ARCHITECTURE.md` for the map. In short: [`storage::Storage`] is the device as the
//! engine sees it ([`io`] implements it with io_uring, `io::sim` in memory); [`engine`] owns every
//! piece of state and policy of the volume; [`service`] is the collection service, the one home of
//! collections' policy; [`fuse`] decodes kernel FUSE requests into one engine or service call
//! each; [`errno`] is the one errno mapping.

pub mod btree;
pub mod embed;
pub mod engine;
pub mod errno;
pub mod fuse;
pub mod io;
pub mod service;
pub mod storage;
pub mod text;
pub mod vector;
