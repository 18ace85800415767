//! [`UringStorage`]: the engine's [`Storage`] over a [`Device`], with one [`Ring`] per thread.
//!
//! Each storage owns its rings in a registry; a thread finds its own ring through a thread-local
//! cache of weak references keyed by the storage's id. Dropping the storage therefore closes every
//! ring (and releases the device), and a thread that exits closes its rings in the cache's
//! destructor. A ring is only ever used by the thread that created it; its mutex is uncontended
//! and exists so that the registry can own it.
//!
//! A batch is pushed in full (up to the ring's capacity), submitted with one `io_uring_enter` that
//! also waits for every completion, and reaped. Short transfers are resumed, `EAGAIN`/`EINTR` are
//! retried a bounded number of times, and a batch larger than the ring keeps the ring full,
//! refilling it as completions arrive.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use parking_lot::Mutex;

use super::{Arena, Completion, Device, IoBuf, OpKind, Ring, RING_ENTRIES_DEFAULT};
use crate::storage::{Geometry, IoError, ReadOp, Storage, WriteOp};

/// Resubmissions of one operation after `EAGAIN`/`EINTR` before its error is reported.
const RETRY_MAX: u32 = 8;

/// Storage ids are never reused, so a stale thread-local entry cannot match a newer storage.
static STORAGE_ID_NEXT: AtomicU64 = AtomicU64::new(0);

type SharedRing = Arc<Mutex<Ring>>;

/// The rings of one storage, one per thread that used it.
#[derive(Default)]
struct RingRegistry {
    rings: Mutex<Vec<SharedRing>>,
}

/// The io_uring [`Storage`]. See the module documentation.
pub struct UringStorage {
    id: u64,
    device: Device,
    arena: Arc<Arena>,
    registry: Arc<RingRegistry>,
    ring_entries: u32,
}

impl UringStorage {
    /// A storage with [`RING_ENTRIES_DEFAULT`]-entry rings. Creates the calling thread's ring now,
    /// so that a kernel without io_uring (or with it disabled) fails here rather than on first I/O.
    pub fn new(device: Device, arena: Arc<Arena>) -> Result<UringStorage, IoError> {
        UringStorage::with_ring_entries(device, arena, RING_ENTRIES_DEFAULT)
    }

    /// As [`UringStorage::new`] with `ring_entries` (a power of two) per ring.
    pub fn with_ring_entries(device: Device, arena: Arc<Arena>, ring_entries: u32) -> Result<UringStorage, IoError> {
        let id = STORAGE_ID_NEXT.fetch_add(1, Ordering::Relaxed);
        let registry = Arc::default();
        let storage = UringStorage { id, device, arena, registry, ring_entries };
        storage.thread_ring()?;
        Ok(storage)
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    pub fn arena(&self) -> &Arc<Arena> {
        &self.arena
    }

    /// Rings currently open, one per thread that has used this storage and is still running.
    pub fn ring_count(&self) -> usize {
        self.registry.rings.lock().len()
    }

    fn with_ring<R>(&self, f: impl FnOnce(&mut Ring) -> Result<R, IoError>) -> Result<R, IoError> {
        let ring = self.thread_ring()?;
        let mut ring = ring.lock();
        f(&mut ring)
    }

    /// The calling thread's ring, created on first use.
    fn thread_ring(&self) -> Result<SharedRing, IoError> {
        if let Ok(Some(ring)) = THREAD_RINGS.try_with(|cache| cache.borrow_mut().get(self.id)) {
            return Ok(ring);
        }
        let ring = Ring::new(&self.device, Some(&self.arena), self.ring_entries)?;
        let ring = Arc::new(Mutex::new(ring));
        // During thread teardown the cache is gone: the ring then serves this call only.
        let cached = THREAD_RINGS.try_with(|cache| {
            cache.borrow_mut().insert(self.id, &ring, &self.registry);
        });
        if cached.is_ok() {
            self.registry.rings.lock().push(Arc::clone(&ring));
        }
        Ok(ring)
    }
}

impl Storage for UringStorage {
    fn geometry(&self) -> Geometry {
        self.device.geometry()
    }

    #[track_caller]
    fn read_batch(&self, ops: &mut [ReadOp<'_>]) -> Result<(), IoError> {
        let mut transfers: Vec<Transfer> =
            ops.iter_mut().map(|op| Transfer::new(op.offset, op.buf.as_mut_ptr(), op.buf.len())).collect();
        self.run_batch(OpKind::Read, &mut transfers)
    }

    #[track_caller]
    fn write_batch(&self, ops: &[WriteOp<'_>]) -> Result<(), IoError> {
        assert!(!self.device.is_read_only(), "write to a device opened read-only");
        // The kernel only reads through these pointers: a write never stores into its buffer.
        let mut transfers: Vec<Transfer> =
            ops.iter().map(|op| Transfer::new(op.offset, op.buf.as_ptr().cast_mut(), op.buf.len())).collect();
        self.run_batch(OpKind::Write, &mut transfers)
    }

    fn flush(&self) -> Result<(), IoError> {
        self.with_ring(flush_on)
    }

    fn alloc_buffer(&self, len: usize) -> IoBuf {
        self.arena.alloc(len)
    }

    fn alloc_write_buffer(&self, len: usize) -> IoBuf {
        self.arena.alloc_for_overwrite(len)
    }
}

impl UringStorage {
    #[track_caller]
    fn run_batch(&self, kind: OpKind, transfers: &mut [Transfer]) -> Result<(), IoError> {
        let size_bytes = self.device.geometry().size_bytes;
        for transfer in transfers.iter() {
            super::assert_op(transfer.offset, transfer.addr, transfer.len, size_bytes);
        }
        if transfers.is_empty() {
            return Ok(());
        }
        self.with_ring(|ring| Batch::new(kind, transfers).run(ring))
    }
}

impl fmt::Debug for UringStorage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UringStorage")
            .field("path", &self.device.path())
            .field("geometry", &self.device.geometry())
            .field("direct", &self.device.is_direct())
            .field("ring_count", &self.ring_count())
            .finish()
    }
}

/// Makes completed writes durable. An fsync that failed with an I/O error is never retried: the
/// kernel may already have dropped the dirty data it could not write, so a second fsync could
/// report success for lost writes.
fn flush_on(ring: &mut Ring) -> Result<(), IoError> {
    assert_eq!(ring.inflight(), 0, "a storage ring is idle between batches");
    let mut completions = Vec::with_capacity(1);
    for _ in 0..=RETRY_MAX {
        ring.submit_fsync(0).expect("an idle ring has a free slot");
        ring.wait_completions(1, &mut completions)?;
        let completion = completions.pop().expect("waited for one completion");
        match completion.result {
            Ok(_) => return Ok(()),
            Err(e) if is_retryable(&e) => continue,
            Err(e) => return Err(IoError::Flush(e)),
        }
    }
    Err(IoError::Flush(io::Error::from_raw_os_error(libc::EAGAIN)))
}

fn is_retryable(error: &io::Error) -> bool {
    matches!(error.raw_os_error(), Some(libc::EAGAIN | libc::EINTR))
}

/// One operation of a batch: `len` bytes at `offset` from or into `addr`, `done` of them so far.
struct Transfer {
    offset: u64,
    addr: *mut u8,
    len: usize,
    done: usize,
    retries: u32,
}

impl Transfer {
    fn new(offset: u64, addr: *mut u8, len: usize) -> Transfer {
        Transfer { offset, addr, len, done: 0, retries: 0 }
    }
}

/// What a completion means for its transfer.
enum Outcome {
    Finished,
    Resubmit,
    Failed(IoError),
}

/// The state of one batch on one ring.
struct Batch<'t> {
    kind: OpKind,
    transfers: &'t mut [Transfer],
    /// Transfers (by index) waiting to be pushed: the untouched ones, then resumptions.
    backlog: VecDeque<usize>,
    error: Option<IoError>,
}

impl<'t> Batch<'t> {
    fn new(kind: OpKind, transfers: &'t mut [Transfer]) -> Batch<'t> {
        let backlog = (0..transfers.len()).collect();
        Batch { kind, transfers, backlog, error: None }
    }

    /// Runs the batch to the end. Terminates because every completion either finishes a transfer,
    /// moves it forward by at least one byte, or spends one of its `RETRY_MAX` retries.
    fn run(mut self, ring: &mut Ring) -> Result<(), IoError> {
        let drain = DrainOnDrop(ring);
        let ring = &mut *drain.0;
        let mut completions = Vec::with_capacity(ring.capacity());
        loop {
            self.fill(ring);
            if ring.inflight() == 0 {
                break;
            }
            // With everything pushed, one enter waits for the whole batch; with a backlog, wake on
            // the first completion to refill the ring.
            let want = if self.backlog.is_empty() || self.error.is_some() { ring.inflight() } else { 1 };
            ring.wait_completions(want, &mut completions)?;
            for completion in completions.drain(..) {
                self.complete(completion);
            }
        }
        match self.error {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }

    /// Pushes backlog transfers while the ring has free slots and nothing has failed.
    fn fill(&mut self, ring: &mut Ring) {
        while self.error.is_none() && ring.inflight() < ring.capacity() {
            let Some(index) = self.backlog.pop_front() else {
                return;
            };
            let transfer = &self.transfers[index];
            let offset = transfer.offset + transfer.done as u64;
            // done < len, so the range is the untransferred tail of the caller's buffer, lent for
            // the whole batch; `run` returns (or the drain guard waits) after every CQE is reaped.
            // SAFETY: the buffer stays valid and untouched until this entry's CQE is reaped.
            let pushed = unsafe {
                let addr = transfer.addr.add(transfer.done);
                ring.submit_borrowed(self.kind, addr, transfer.len - transfer.done, offset, index as u64)
            };
            pushed.expect("a ring with a free slot accepts a push");
        }
    }

    fn complete(&mut self, completion: Completion) {
        let index = usize::try_from(completion.user_data).expect("index fits usize");
        match outcome(self.kind, &mut self.transfers[index], completion.result) {
            Outcome::Finished => {}
            Outcome::Resubmit => self.backlog.push_back(index),
            Outcome::Failed(error) => {
                self.error.get_or_insert(error);
            }
        }
    }
}

/// Applies one completion result to its transfer.
fn outcome(kind: OpKind, transfer: &mut Transfer, result: io::Result<usize>) -> Outcome {
    let op = match kind {
        OpKind::Read => "read",
        _ => "write",
    };
    let offset = transfer.offset + transfer.done as u64;
    let failed = |source| Outcome::Failed(IoError::Op { op, offset, source });
    match result {
        Err(e) if is_retryable(&e) && transfer.retries < RETRY_MAX => {
            transfer.retries += 1;
            Outcome::Resubmit
        }
        Err(e) => failed(e),
        // Offsets are checked against the device size, so zero bytes means the device shrank.
        Ok(0) => failed(io::Error::from(match kind {
            OpKind::Read => io::ErrorKind::UnexpectedEof,
            _ => io::ErrorKind::WriteZero,
        })),
        Ok(bytes) => {
            assert!(bytes <= transfer.len - transfer.done, "the kernel transferred more than asked");
            transfer.done += bytes;
            if transfer.done == transfer.len {
                Outcome::Finished
            } else {
                Outcome::Resubmit
            }
        }
    }
}

/// Waits for the ring's operations before the batch's borrowed buffers go back to the caller,
/// whether `run` returns early with an error or unwinds from a panic.
struct DrainOnDrop<'r>(&'r mut Ring);

impl Drop for DrainOnDrop<'_> {
    fn drop(&mut self) {
        if self.0.inflight() == 0 {
            return;
        }
        if let Err(error) = self.0.drain() {
            // Returning would hand the caller buffers the kernel may still write into.
            tracing::error!(%error, "cannot drain the ring of an aborted batch");
            std::process::abort();
        }
    }
}

thread_local! {
    static THREAD_RINGS: RefCell<ThreadRings> = RefCell::new(ThreadRings::default());
}

/// A thread's rings, weakly: the storage's registry owns them.
#[derive(Default)]
struct ThreadRings {
    entries: Vec<ThreadRing>,
}

struct ThreadRing {
    storage_id: u64,
    ring: Weak<Mutex<Ring>>,
    registry: Weak<RingRegistry>,
}

impl ThreadRings {
    fn get(&mut self, storage_id: u64) -> Option<SharedRing> {
        // Entries of dropped storages are pruned here, so the list holds live storages only.
        self.entries.retain(|entry| entry.ring.strong_count() > 0);
        let entry = self.entries.iter().find(|entry| entry.storage_id == storage_id)?;
        entry.ring.upgrade()
    }

    fn insert(&mut self, storage_id: u64, ring: &SharedRing, registry: &Arc<RingRegistry>) {
        let ring = Arc::downgrade(ring);
        let registry = Arc::downgrade(registry);
        self.entries.push(ThreadRing { storage_id, ring, registry });
    }
}

impl Drop for ThreadRings {
    /// The thread is exiting: close its rings in every storage still alive.
    fn drop(&mut self) {
        for entry in self.entries.drain(..) {
            let (Some(registry), Some(ring)) = (entry.registry.upgrade(), entry.ring.upgrade()) else {
                continue;
            };
            registry.rings.lock().retain(|other| !Arc::ptr_eq(other, &ring));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn transfer(len: usize) -> Transfer {
        Transfer::new(8192, std::ptr::null_mut(), len)
    }

    fn errno(code: i32) -> io::Result<usize> {
        Err(io::Error::from_raw_os_error(code))
    }

    #[test]
    fn a_short_transfer_is_resumed_where_it_stopped() {
        let mut t = transfer(3 * 4096);
        assert!(matches!(outcome(OpKind::Read, &mut t, Ok(4096)), Outcome::Resubmit));
        assert_eq!(t.done, 4096);
        assert!(matches!(outcome(OpKind::Read, &mut t, Ok(8192)), Outcome::Finished));
    }

    #[test]
    fn eagain_and_eintr_are_retried_within_the_budget() {
        let mut t = transfer(4096);
        for _ in 0..RETRY_MAX {
            assert!(matches!(outcome(OpKind::Write, &mut t, errno(libc::EAGAIN)), Outcome::Resubmit));
        }
        let last = outcome(OpKind::Write, &mut t, errno(libc::EINTR));
        assert!(matches!(last, Outcome::Failed(IoError::Op { op: "write", offset: 8192, .. })));
    }

    #[test]
    fn errors_name_the_offset_reached() {
        let mut t = transfer(2 * 4096);
        assert!(matches!(outcome(OpKind::Read, &mut t, Ok(4096)), Outcome::Resubmit));
        let failed = outcome(OpKind::Read, &mut t, errno(libc::EIO));
        assert!(matches!(failed, Outcome::Failed(IoError::Op { op: "read", offset: 12288, .. })));
    }

    #[test]
    fn zero_bytes_is_an_error_not_a_retry() {
        let mut t = transfer(4096);
        let Outcome::Failed(IoError::Op { source, .. }) = outcome(OpKind::Read, &mut t, Ok(0)) else {
            panic!("a zero-byte read must fail");
        };
        assert_eq!(source.kind(), io::ErrorKind::UnexpectedEof);
    }
}
