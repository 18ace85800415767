//! VexFS client library.
