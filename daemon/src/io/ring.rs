//! One io_uring bound to one device, and the queue-depth API over it.
//!
//! A [`Ring`] registers the device as fixed file 0 and, when given one, an [`Arena`] as fixed
//! buffers. Each operation occupies one slot from push until its CQE is reaped; the slot index is
//! the SQE's `user_data`, and the slot holds the operation's buffer, so the ring owns every buffer
//! the kernel may touch. At most `capacity()` operations are in flight, which is also the
//! submission queue size, so a push never finds the queue full, and the completion queue (twice
//! that size) never overflows.
//!
//! `Ring::push` is the only caller of `SubmissionQueue::push` in the code base.

use std::fmt;
use std::io;
use std::os::fd::AsRawFd;
use std::sync::Arc;

use io_uring::{opcode, squeue, types, IoUring};

use super::{assert_op, Arena, Device, IoBuf};
use crate::storage::IoError;

/// Entries per ring: deep enough for the engine's largest batches and QD 32 benchmarks, small
/// enough that a ring per thread costs little kernel memory.
pub const RING_ENTRIES_DEFAULT: u32 = 256;

/// `io_uring_enter` attempts per wait before giving up; each attempt either waits or was
/// interrupted by a signal, so reaching this means the thread is being signalled without pause.
const ENTER_ATTEMPTS_MAX: u32 = 1024;

/// The fixed-file index of the device in every ring.
const DEVICE_FIXED: types::Fixed = types::Fixed(0);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpKind {
    Read,
    Write,
    /// `fdatasync` of a file, cache flush of a block device.
    Fsync,
}

/// A reaped operation.
#[derive(Debug)]
pub struct Completion {
    /// The caller's tag for the operation.
    pub user_data: u64,
    pub kind: OpKind,
    /// The device offset the operation started at (0 for fsync).
    pub offset: u64,
    /// Bytes transferred, or the operation's error. A read or write may transfer fewer bytes than
    /// asked; the caller resubmits the rest.
    pub result: io::Result<usize>,
    /// The buffer passed to `submit_read`/`submit_write`, handed back; None for fsync and for
    /// borrowed buffers.
    pub buf: Option<IoBuf>,
}

/// Every slot is in flight; reap completions first. Carries the rejected buffer back.
#[derive(Debug, thiserror::Error)]
#[error("the ring has all {capacity} slots in flight")]
pub struct RingFull {
    pub capacity: usize,
    pub buf: Option<IoBuf>,
}

/// An operation in flight.
struct Slot {
    kind: OpKind,
    offset: u64,
    user_data: u64,
    buf: Option<IoBuf>,
}

/// An io_uring with the device as fixed file 0. See the module documentation.
pub struct Ring {
    uring: IoUring,
    /// The arena registered as fixed buffers, None if there is none or registration failed. The
    /// Arc keeps the region mapped while the kernel has it registered.
    arena: Option<Arc<Arena>>,
    slots: Vec<Option<Slot>>,
    slots_free: Vec<u32>,
    size_bytes: u64,
    read_only: bool,
}

impl Ring {
    /// Creates a ring of `entries` slots for `device`, registering `arena` as fixed buffers. A
    /// failed buffer registration (for example `RLIMIT_MEMLOCK`) only costs speed: it is logged
    /// and the ring uses plain reads and writes.
    pub fn new(device: &Device, arena: Option<&Arc<Arena>>, entries: u32) -> Result<Ring, IoError> {
        assert!(entries > 0 && entries.is_power_of_two(), "ring entries {entries}");
        let uring = build_uring(entries).map_err(IoError::Ring)?;
        uring.submitter().register_files(&[device.as_raw_fd()]).map_err(IoError::Ring)?;
        let arena = arena.filter(|arena| register_arena(&uring, arena)).cloned();
        let mut ring = Ring {
            uring,
            arena,
            slots: Vec::new(),
            slots_free: Vec::new(),
            size_bytes: device.geometry().size_bytes,
            read_only: device.is_read_only(),
        };
        let capacity = ring.uring.submission().capacity();
        ring.slots.resize_with(capacity, || None);
        ring.slots_free = (0..capacity as u32).rev().collect();
        Ok(ring)
    }

    /// Operations that may be in flight at once.
    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// Operations pushed and not yet reaped.
    pub fn inflight(&self) -> usize {
        self.slots.len() - self.slots_free.len()
    }

    /// Whether the arena is registered with this ring, so its buffers go out as fixed buffers.
    pub fn has_fixed_buffers(&self) -> bool {
        self.arena.is_some()
    }

    /// Queues a read of `buf.len()` bytes at `offset` into `buf`. The ring owns the buffer until
    /// the operation's [`Completion`] hands it back. Call [`Ring::submit`] or
    /// [`Ring::wait_completions`] to start it.
    pub fn submit_read(&mut self, mut buf: IoBuf, offset: u64, user_data: u64) -> Result<(), RingFull> {
        assert_op(offset, buf.as_ptr(), buf.len(), self.size_bytes);
        let entry = self.rw_entry(OpKind::Read, buf.as_mut_ptr(), buf.len(), offset);
        let slot = Slot { kind: OpKind::Read, offset, user_data, buf: Some(buf) };
        self.push(entry, slot)
    }

    /// Queues a write of `buf` at `offset`; as [`Ring::submit_read`].
    pub fn submit_write(&mut self, buf: IoBuf, offset: u64, user_data: u64) -> Result<(), RingFull> {
        assert!(!self.read_only, "write to a device opened read-only");
        assert_op(offset, buf.as_ptr(), buf.len(), self.size_bytes);
        let entry = self.rw_entry(OpKind::Write, buf.as_ptr().cast_mut(), buf.len(), offset);
        let slot = Slot { kind: OpKind::Write, offset, user_data, buf: Some(buf) };
        self.push(entry, slot)
    }

    /// Queues an `fdatasync` (a cache flush for a block device). It orders nothing: it covers the
    /// writes that completed before it was submitted.
    pub fn submit_fsync(&mut self, user_data: u64) -> Result<(), RingFull> {
        let entry = opcode::Fsync::new(DEVICE_FIXED).flags(types::FsyncFlags::DATASYNC).build();
        let slot = Slot { kind: OpKind::Fsync, offset: 0, user_data, buf: None };
        self.push(entry, slot)
    }

    /// Queues a transfer from or into memory the ring does not own.
    ///
    /// # Safety
    ///
    /// `[addr, addr + len)` must stay valid, and must not be read (for a read) or written (for a
    /// write) by anyone else, until the completion carrying `user_data` has been reaped by
    /// [`Ring::wait_completions`]. The kernel writes into it for a read and reads it for a write.
    pub(crate) unsafe fn submit_borrowed(
        &mut self,
        kind: OpKind,
        addr: *mut u8,
        len: usize,
        offset: u64,
        user_data: u64,
    ) -> Result<(), RingFull> {
        assert!(kind != OpKind::Fsync);
        assert!(kind == OpKind::Read || !self.read_only, "write to a device opened read-only");
        assert_op(offset, addr, len, self.size_bytes);
        let entry = self.rw_entry(kind, addr, len, offset);
        self.push(entry, Slot { kind, offset, user_data, buf: None })
    }

    /// Submits every queued operation without waiting; returns how many the kernel took.
    pub fn submit(&mut self) -> Result<usize, IoError> {
        for _ in 0..ENTER_ATTEMPTS_MAX {
            match self.uring.submit() {
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
                Err(e) if is_busy(&e) => return Ok(0),
                result => return result.map_err(IoError::Ring),
            }
        }
        Err(IoError::Ring(io::Error::from(io::ErrorKind::Interrupted)))
    }

    /// Submits every queued operation, waits until at least `min` completions are available
    /// (`min` at most [`Ring::inflight`]), and appends every available completion to `out`.
    /// Returns how many were appended.
    pub fn wait_completions(&mut self, min: usize, out: &mut Vec<Completion>) -> Result<usize, IoError> {
        assert!(min <= self.inflight(), "waiting for {min} of {} in flight", self.inflight());
        let mut reaped = 0;
        for _ in 0..ENTER_ATTEMPTS_MAX {
            match self.uring.submit_and_wait(min - reaped.min(min)) {
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => {}
                // The kernel could not post every completion (the completion queue or its
                // overflow list is full): reap, then ask again.
                Err(e) if is_busy(&e) => {}
                Err(e) => return Err(IoError::Ring(e)),
                Ok(_) => {}
            }
            reaped += self.reap(out);
            if reaped >= min {
                return Ok(reaped);
            }
        }
        Err(IoError::Ring(io::Error::from(io::ErrorKind::Interrupted)))
    }

    /// Waits for every operation in flight and drops their completions.
    pub(crate) fn drain(&mut self) -> Result<(), IoError> {
        let mut completions = Vec::with_capacity(self.inflight());
        while self.inflight() > 0 {
            self.wait_completions(self.inflight(), &mut completions)?;
            completions.clear();
        }
        Ok(())
    }

    fn rw_entry(&self, kind: OpKind, addr: *mut u8, len: usize, offset: u64) -> squeue::Entry {
        // The kernel caps one transfer at INT_MAX rounded down to a page and reports the rest as
        // a short transfer; larger requests are clamped the same way here.
        let len = u32::try_from(len).unwrap_or(u32::MAX) & !(super::IO_ALIGN as u32 - 1);
        let fixed = self.arena.as_ref().and_then(|arena| arena.fixed_index(addr, len as usize));
        match (kind, fixed) {
            (OpKind::Read, Some(index)) => {
                opcode::ReadFixed::new(DEVICE_FIXED, addr, len, index).offset(offset).build()
            }
            (OpKind::Read, None) => opcode::Read::new(DEVICE_FIXED, addr, len).offset(offset).build(),
            (OpKind::Write, Some(index)) => {
                opcode::WriteFixed::new(DEVICE_FIXED, addr, len, index).offset(offset).build()
            }
            (OpKind::Write, None) => opcode::Write::new(DEVICE_FIXED, addr, len).offset(offset).build(),
            (OpKind::Fsync, _) => unreachable!("fsync has no buffer"),
        }
    }

    /// Queues `entry` in a free slot that takes `slot` (and its buffer) until the CQE arrives.
    fn push(&mut self, entry: squeue::Entry, slot: Slot) -> Result<(), RingFull> {
        let Some(index) = self.slots_free.pop() else {
            return Err(RingFull { capacity: self.capacity(), buf: slot.buf });
        };
        let entry = entry.user_data(u64::from(index));
        // The entry names the device (fixed file 0, registered for the ring's lifetime) and
        // either the IoBuf moved into the slot below, which the slot keeps until `reap` hands it
        // back, or memory the caller of `submit_borrowed` promised to keep until its CQE.
        // SAFETY: everything the entry points at stays valid until its CQE is reaped.
        let pushed = unsafe { self.uring.submission().push(&entry) };
        assert!(pushed.is_ok(), "submission queue full with a free slot");
        self.slots[index as usize] = Some(slot);
        Ok(())
    }

    /// Moves every available CQE into `out`, releasing its slot.
    fn reap(&mut self, out: &mut Vec<Completion>) -> usize {
        let mut count = 0;
        for cqe in self.uring.completion() {
            let index = usize::try_from(cqe.user_data()).expect("slot index fits usize");
            let slot = self.slots[index].take().expect("a CQE for a free slot");
            self.slots_free.push(index as u32);
            let result = u32::try_from(cqe.result())
                .map(|bytes| bytes as usize)
                .map_err(|_| io::Error::from_raw_os_error(-cqe.result()));
            let Slot { kind, offset, user_data, buf } = slot;
            out.push(Completion { user_data, kind, offset, result, buf });
            count += 1;
        }
        count
    }
}

impl Drop for Ring {
    fn drop(&mut self) {
        if let Err(error) = self.drain() {
            // The kernel may still write into the buffers in flight: leak them rather than free
            // memory the device may still DMA into.
            tracing::error!(%error, inflight = self.inflight(), "ring drain failed; leaking buffers");
            std::mem::forget(std::mem::take(&mut self.slots));
            return;
        }
        // The kernel releases registered files asynchronously after the ring closes; unregister
        // now so that the device's lock is gone when the Device is dropped.
        let submitter = self.uring.submitter();
        let _ = submitter.unregister_files();
        if self.arena.is_some() {
            let _ = submitter.unregister_buffers();
        }
    }
}

impl fmt::Debug for Ring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ring")
            .field("capacity", &self.capacity())
            .field("inflight", &self.inflight())
            .field("fixed_buffers", &self.has_fixed_buffers())
            .finish()
    }
}

/// A ring with cooperative task running (completions are processed when the thread enters the
/// kernel anyway, saving an interrupt per completion) and submit-all (one failed SQE does not
/// stall the rest of the batch); plain setup on kernels without those flags.
fn build_uring(entries: u32) -> io::Result<IoUring> {
    let tuned = IoUring::builder().setup_coop_taskrun().setup_submit_all().build(entries);
    match tuned {
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => IoUring::new(entries),
        result => result,
    }
}

/// Registers `arena` as this ring's fixed buffers: a clone of the arena's template
/// registration where the kernel supports it (Linux 6.12+), a registration of its own otherwise.
fn register_arena(uring: &IoUring, arena: &Arc<Arena>) -> bool {
    if let Some(template) = arena.registration_template() {
        if uring.submitter().register_buffers_clone(template).is_ok() {
            return true;
        }
    }
    // The ring keeps the Arc<Arena> (stored when this returns true) and unregisters in Ring::drop.
    // SAFETY: the iovecs cover the arena's mapping, which stays mapped while registered.
    match unsafe { uring.submitter().register_buffers(&arena.iovecs()) } {
        Ok(()) => true,
        Err(error) => {
            let size = arena.size();
            tracing::warn!(%error, size, "cannot register the buffer arena; using unregistered I/O");
            false
        }
    }
}

fn is_busy(error: &io::Error) -> bool {
    matches!(error.raw_os_error(), Some(libc::EBUSY | libc::EAGAIN))
}
