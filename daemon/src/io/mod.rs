//! Device I/O (in progress).

/// A 4096-aligned I/O buffer (in progress).
#[derive(Debug)]
pub struct IoBuf(Vec<u8>);
