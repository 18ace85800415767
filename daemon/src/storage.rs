//! The storage interface the engine is generic over.
//!
//! The engine never opens files: `vexfsd` opens the device (`crate::io::Device`) and hands the engine
//! a [`Storage`]. Tests hand it the simulator (`crate::io::sim::SimStorage`) instead.
//!
//! Contract, shared by every implementation:
//! - Offsets and lengths are multiples of the volume block size (4096), and every buffer is
//!   4096-byte aligned. Violations are programming errors and panic.
//! - A batch is submitted at once (one `io_uring_enter` for the io_uring backend) and the call
//!   returns when every operation in it has completed; short transfers are resumed internally.
//! - A completed write is not durable until a later [`Storage::flush`] has returned.
//! - Any failure is reported as [`IoError`]; the engine then refuses further writes.

use std::fmt;

/// Device geometry as the engine needs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    /// Usable size of the device in bytes.
    pub size_bytes: u64,
    /// The device's logical block size (the O_DIRECT offset/length alignment).
    pub logical_block_size: u32,
    /// The memory alignment O_DIRECT needs for buffers.
    pub dio_mem_align: u32,
}

/// One read of a batch: fill `buf` from device byte offset `offset`.
pub struct ReadOp<'a> {
    pub offset: u64,
    pub buf: &'a mut [u8],
}

/// One write of a batch: write `buf` at device byte offset `offset`.
pub struct WriteOp<'a> {
    pub offset: u64,
    pub buf: &'a [u8],
}

/// A device I/O failure.
#[derive(Debug, thiserror::Error)]
pub enum IoError {
    #[error("device {op} at byte offset {offset}: {source}")]
    Op { op: &'static str, offset: u64, source: std::io::Error },
    #[error("device flush: {0}")]
    Flush(std::io::Error),
    #[error("device I/O ring: {0}")]
    Ring(std::io::Error),
}

/// A block device as the engine sees it. See the module documentation for the contract.
pub trait Storage: Send + Sync + fmt::Debug + 'static {
    /// The device geometry, fixed for the lifetime of the storage.
    fn geometry(&self) -> Geometry;
    /// Reads every op of the batch; returns when all have completed.
    fn read_batch(&self, ops: &mut [ReadOp<'_>]) -> Result<(), IoError>;
    /// Writes every op of the batch; returns when all have completed (not necessarily durable).
    fn write_batch(&self, ops: &[WriteOp<'_>]) -> Result<(), IoError>;
    /// Makes every completed write durable (fdatasync of a file, cache flush of a block device).
    fn flush(&self) -> Result<(), IoError>;
    /// Allocates a buffer of `len` bytes (a multiple of 4096), 4096-aligned and zeroed, from memory
    /// that the backend registered with the kernel where it can (io_uring fixed buffers).
    fn alloc_buffer(&self, len: usize) -> crate::io::IoBuf;
    /// [`Storage::alloc_buffer`] for a caller that overwrites every byte before the buffer is
    /// written: its bytes may be stale instead of zero.
    fn alloc_write_buffer(&self, len: usize) -> crate::io::IoBuf {
        self.alloc_buffer(len)
    }
}

/// A shared storage is a storage: tests keep a handle on the simulator while the engine uses it.
impl<T: Storage> Storage for std::sync::Arc<T> {
    fn geometry(&self) -> Geometry {
        (**self).geometry()
    }

    fn read_batch(&self, ops: &mut [ReadOp<'_>]) -> Result<(), IoError> {
        (**self).read_batch(ops)
    }

    fn write_batch(&self, ops: &[WriteOp<'_>]) -> Result<(), IoError> {
        (**self).write_batch(ops)
    }

    fn flush(&self) -> Result<(), IoError> {
        (**self).flush()
    }

    fn alloc_buffer(&self, len: usize) -> crate::io::IoBuf {
        (**self).alloc_buffer(len)
    }

    fn alloc_write_buffer(&self, len: usize) -> crate::io::IoBuf {
        (**self).alloc_write_buffer(len)
    }
}
