//! The VexFS client library: volume tools (`mkfs`, `fsck`) today; the query-socket client joins
//! it in later work.
#![deny(missing_docs)]

pub mod volume;
