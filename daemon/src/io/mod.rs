//! Device I/O: the io_uring backend of [`Storage`](crate::storage::Storage) and its in-memory
//! simulator.
//!
//! Codemap:
//! - [`Arena`] and [`IoBuf`]: 4096-aligned, zeroed buffers carved from one `mmap` region that every
//!   ring registers as fixed buffers.
//! - [`rows::RowVec`]: growable arrays for the vector tables in row memory the process keeps
//!   (a pool of populated huge-page chunks, moved into place with `mremap`).
//! - [`Device`]: opens an image file or a block device with `O_DIRECT`, locks it and reads its
//!   geometry.
//! - [`Ring`]: one io_uring with the device registered as fixed file 0, and the queue-depth API for
//!   benchmarks and future asynchronous callers. It is the only caller of
//!   `SubmissionQueue::push` in the code base.
//! - [`UringStorage`]: the engine's [`Storage`](crate::storage::Storage) over a `Device`, with one
//!   `Ring` per thread.
//! - [`sim::SimStorage`]: an in-memory `Storage` with crash images and fault injection.
//!
//! # Buffer ownership
//!
//! From the moment an operation is pushed onto a submission queue until its completion (CQE) is
//! reaped, the kernel may read or write the operation's buffer at any time. The code therefore
//! owns every buffer until its CQE arrives:
//! - [`Ring::submit_read`] and [`Ring::submit_write`] take the [`IoBuf`] by value and hand it back
//!   in the [`Completion`]; the caller cannot touch or free it in between.
//! - [`UringStorage`] borrows the caller's slices for the duration of `read_batch`/`write_batch`
//!   and returns only after every CQE of the batch has been reaped, on the error path too. If a
//!   panic unwinds out of a batch, a drain guard still waits for the outstanding CQEs; if even that
//!   fails, the process aborts, since returning would let the kernel write into freed memory.
//! - A [`Ring`] that is dropped waits for its operations before it releases their buffers, and
//!   leaks the buffers if it cannot.
//!
//! # Why one ring per thread
//!
//! A submission queue has a single producer; sharing one ring between threads would put a lock
//! around every `io_uring_enter` and serialize the threads' waits. A ring per thread needs no lock
//! on the I/O path, and each batch is one `io_uring_enter`. Rings are created lazily the first time
//! a thread uses a storage, live in the storage (so dropping it closes them and releases the
//! device), and a thread's rings are closed when the thread exits. SQPOLL and IOPOLL are not used:
//! the host's virtio disk refuses polled I/O, and an SQ polling thread was several times slower
//! than plain batched submission on two cores.
//!
//! # Fixed files and fixed buffers
//!
//! Every ring registers the device as fixed file 0 and the whole [`Arena`] as fixed buffers, so
//! the kernel neither looks up the file nor pins and unpins the buffer pages on each operation.
//! The arena is pinned once, by a template ring it keeps; other rings clone that registration,
//! which makes a new thread's ring cheap (Linux 6.12+; older kernels register again per ring).
//! Buffers outside the arena (heap fallback, or slices the caller allocated elsewhere) still work
//! with plain `READ`/`WRITE`. A registered file holds a reference to the open file, so a ring
//! unregisters the device when it is dropped; otherwise the device lock would outlive the
//! `Device`.
//!
//! # O_DIRECT
//!
//! The page cache would hold a second copy of every block the engine already caches, and would
//! hide write ordering from the engine. Devices are opened with `O_DIRECT`; every operation is a
//! multiple of 4096 bytes at a 4096-aligned offset from a 4096-aligned buffer, which satisfies any
//! device whose logical block size and DMA alignment divide 4096 (others are refused at open).
//! When a file system refuses `O_DIRECT`, the device falls back to buffered I/O with a warning:
//! correctness is unchanged because `flush` still issues `fdatasync`.

pub mod arena;
pub mod device;
pub mod ring;
pub mod rows;
pub mod sim;
mod sys;
pub mod uring;

pub use arena::{advise_huge_pages, Arena, ArenaStats, IoBuf};
pub use device::{Device, DeviceError, DeviceKind, DeviceOptions};
pub use ring::{Completion, OpKind, Ring, RingFull, RING_ENTRIES_DEFAULT};
pub use uring::UringStorage;

use vexfs_format::BLOCK_SIZE;

/// The unit of every offset, length and buffer alignment the engine uses.
pub const IO_ALIGN: usize = BLOCK_SIZE;
const IO_ALIGN_U64: u64 = IO_ALIGN as u64;

/// Checks the [`Storage`](crate::storage::Storage) contract for one operation; a violation is a
/// programming error in the caller.
#[track_caller]
pub(crate) fn assert_op(offset: u64, addr: *const u8, len: usize, size_bytes: u64) {
    assert!(len > 0, "I/O of zero bytes at offset {offset}");
    assert!(offset.is_multiple_of(IO_ALIGN_U64), "I/O offset {offset} is not a multiple of {IO_ALIGN}");
    assert!(len.is_multiple_of(IO_ALIGN), "I/O length {len} at offset {offset} is not a multiple of {IO_ALIGN}");
    assert!(
        (addr as usize).is_multiple_of(IO_ALIGN),
        "I/O buffer at {addr:p} (offset {offset}) is not {IO_ALIGN}-byte aligned"
    );
    let end = offset.checked_add(len as u64);
    assert!(
        end.is_some_and(|end| end <= size_bytes),
        "I/O of {len} bytes at offset {offset} runs past the device end {size_bytes}"
    );
}
