//! FUSE-over-io_uring: requests arrive in ring buffers, one queue per CPU.
//!
//! The kernel keeps one queue per possible CPU and puts a request on the queue of the CPU the
//! calling thread runs on. Each queue here is one thread pinned to that CPU with its own
//! io_uring: the caller sleeps, the queue thread wakes on the same CPU, answers, and the caller
//! wakes again on the same CPU. With `/dev/fuse` every request and every reply crosses CPUs, and
//! on a VM each cross-CPU wakeup of a halted virtual CPU is a trip through the hypervisor.
//!
//! Requests that wait for the device (READ, WRITE, FSYNC, FSYNCDIR, FALLOCATE) are handed off:
//! the queue moves the entry's buffers to a hand-off thread ([`serve_hand_offs`]) and goes on
//! serving its CPU; the hand-off thread answers into the buffers and signals the queue's eventfd,
//! and the queue commits the reply. A sequential reader thus overlaps with its readahead's device
//! reads on another CPU.
//!
//! Protocol (Linux 6.14+, `enable_uring` module parameter, FUSE_OVER_IO_URING agreed at INIT):
//! - each queue entry is a header buffer (`fuse_uring_req_header`: `in_out` holds the
//!   `fuse_in_header` and later our `fuse_out_header`, `op_in` the opcode's argument struct,
//!   `ring_ent_in_out` the commit id and payload length) and a payload buffer of at least
//!   `max_write` bytes (names, WRITE data, and the reply body);
//! - `FUSE_IO_URING_CMD_REGISTER` (an `IORING_OP_URING_CMD` with the two buffers as an iovec
//!   array in `addr`/`len` and `fuse_uring_cmd_req` in the 80-byte command area of a 128-byte
//!   SQE) hands an entry to the kernel; its completion means a request is in the entry;
//! - `FUSE_IO_URING_CMD_COMMIT_AND_FETCH` with the request's commit id delivers the reply
//!   written into the same entry and hands the entry back for the next request.
//!
//! The kernel starts routing requests to the rings only once every queue has an entry; until
//! then, and for FORGET and INTERRUPT always, requests still arrive on `/dev/fuse`, so the
//! classic workers keep running beside the queues. If a queue cannot be set up, the rings never
//! become ready and the session simply stays on `/dev/fuse`.
//!
//! A reply body goes straight into the entry's payload buffer when the request left it empty (READ
//! data, attributes); when the request's own payload is still borrowed (names, WRITE data) the
//! body is staged and copied in after the handler returns.

use std::cell::{Cell, RefCell};
use std::io::{self, IoSlice};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender};
use io_uring::{cqueue, opcode, squeue, types, IoUring};
use zerocopy::{FromBytes, IntoBytes};

use super::abi;
use super::reply::out_header;
use super::transport::ReplyChannel;

const PAGE_SIZE: usize = 4096;

#[repr(C, align(4096))]
#[derive(Clone, Copy, FromBytes, IntoBytes, zerocopy::KnownLayout, zerocopy::Immutable)]
struct Page([u8; PAGE_SIZE]);

/// Whether the kernel lets connections use io_uring (`/sys/module/fuse/parameters/enable_uring`,
/// off by default; root turns it on with `echo Y > ...`).
pub fn kernel_enabled() -> bool {
    std::fs::read_to_string("/sys/module/fuse/parameters/enable_uring")
        .map(|value| matches!(value.trim(), "Y" | "y" | "1"))
        .unwrap_or(false)
}

/// How many queues the kernel expects: one per possible CPU (`/sys/devices/system/cpu/possible`).
pub fn possible_cpus() -> io::Result<usize> {
    let list = std::fs::read_to_string("/sys/devices/system/cpu/possible")?;
    parse_cpu_list(list.trim())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, format!("unreadable CPU list {list:?}")))
}

/// The highest CPU number in a list such as `0-3,8`, plus one.
fn parse_cpu_list(list: &str) -> Option<usize> {
    let mut count = 0;
    for part in list.split(',') {
        let last = match part.split_once('-') {
            Some((_, last)) => last.parse::<usize>().ok()?,
            None => part.parse::<usize>().ok()?,
        };
        count = count.max(last + 1);
    }
    (count > 0).then_some(count)
}

/// The two buffers of a ring entry. They move to a hand-off thread and back with a request;
/// the heap memory the kernel was given never moves.
pub struct Buffers {
    /// A `fuse_uring_req_header` at offset 0 of one page.
    header: Box<[Page]>,
    payload: Box<[Page]>,
}

impl Buffers {
    fn header(&self) -> &abi::fuse_uring_req_header {
        let bytes = &self.header.as_bytes()[..size_of::<abi::fuse_uring_req_header>()];
        abi::fuse_uring_req_header::ref_from_bytes(bytes).expect("header size and alignment")
    }

    fn header_mut(&mut self) -> &mut abi::fuse_uring_req_header {
        let bytes = &mut self.header.as_mut_bytes()[..size_of::<abi::fuse_uring_req_header>()];
        abi::fuse_uring_req_header::mut_from_bytes(bytes).expect("header size and alignment")
    }

    /// The opcode and node id of the request in these buffers.
    fn target(&self) -> (u32, u64) {
        let in_header = &self.header().in_out[..size_of::<abi::fuse_in_header>()];
        abi::fuse_in_header::read_from_bytes(in_header).map_or((0, 0), |h| (h.opcode, h.nodeid))
    }

    /// Hands the request in these buffers to `handle` and writes the reply over it. Returns the
    /// commit id.
    fn answer(&mut self, staged: &RefCell<Vec<u8>>, handle: &Handle<'_>) -> u64 {
        let Buffers { header, payload } = self;
        let header = abi::fuse_uring_req_header::mut_from_bytes(
            &mut header.as_mut_bytes()[..size_of::<abi::fuse_uring_req_header>()],
        )
        .expect("header size and alignment");
        let commit_id = header.ring_ent_in_out.commit_id;
        let in_header = &header.in_out[..size_of::<abi::fuse_in_header>()];
        let unique = abi::fuse_in_header::read_from_bytes(in_header).map_or(commit_id, |h| h.unique);
        let payload = payload.as_mut_bytes();
        let capacity = payload.len();
        let payload_len = (header.ring_ent_in_out.payload_sz as usize).min(capacity);
        let (request_bytes, rest) = payload.split_at_mut(payload_len);
        let reply = EntryReply {
            header: Cell::new(None),
            direct: RefCell::new((payload_len == 0).then_some(rest)),
            staged,
            len: Cell::new(0),
        };
        handle(Delivered { header: in_header, op_in: &header.op_in, payload: request_bytes }, &reply);

        let (mut out, mut len) = match reply.header.take() {
            Some(out) => (out, reply.len.get()),
            None => (out_header(unique, -libc::EIO, &[]), 0),
        };
        if reply.direct.into_inner().is_none() {
            let staged = staged.borrow();
            if len > capacity {
                tracing::error!(unique, len, "FUSE reply larger than the ring payload buffer");
                (out.error, len) = (-libc::EIO, 0);
            }
            self.payload.as_mut_bytes()[..len].copy_from_slice(&staged[..len]);
        }
        out.len = (size_of::<abi::fuse_out_header>() + len) as u32;
        let header = self.header_mut();
        header.in_out[..size_of::<abi::fuse_out_header>()].copy_from_slice(out.as_bytes());
        header.ring_ent_in_out.payload_sz = len as u32;
        commit_id
    }
}

/// One ring entry: its buffers (away while a hand-off thread answers its request) and the iovec
/// array that names them to the kernel.
struct Entry {
    buffers: Option<Buffers>,
    /// Read by the kernel when the REGISTER command is submitted.
    iov: Box<[libc::iovec; 2]>,
    /// The commit id of the reply in flight, `None` while the entry is only registered: what to
    /// send again if the kernel asks for a retry.
    committing: Option<u64>,
}

impl Entry {
    fn new(payload_bytes: usize) -> Entry {
        let mut header = vec![Page([0; PAGE_SIZE]); 1].into_boxed_slice();
        let mut payload = vec![Page([0; PAGE_SIZE]); payload_bytes.div_ceil(PAGE_SIZE)].into_boxed_slice();
        let iov = Box::new([
            libc::iovec {
                iov_base: header.as_mut_bytes().as_mut_ptr().cast(),
                iov_len: size_of::<abi::fuse_uring_req_header>(),
            },
            libc::iovec { iov_base: payload.as_mut_bytes().as_mut_ptr().cast(), iov_len: payload.as_bytes().len() },
        ]);
        Entry { buffers: Some(Buffers { header, payload }), iov, committing: None }
    }
}

/// The request handler the queues and hand-off threads call.
pub type Handle<'h> = dyn Fn(Delivered<'_>, &dyn ReplyChannel) + Sync + 'h;

/// A request handed off by a queue: its entry's buffers, answered by a hand-off thread
/// ([`serve_hand_offs`]) and sent back to the queue.
pub struct HandOff {
    index: usize,
    buffers: Buffers,
    back: Sender<Answered>,
    wake: Arc<Wake>,
}

struct Answered {
    index: usize,
    buffers: Buffers,
    commit_id: u64,
}

/// Opcodes that wait for the device (data transfer, flushes): answered on hand-off threads so
/// that a queue thread keeps serving its CPU's other requests, and a streaming reader and the
/// device work in parallel on different CPUs.
fn hand_off(opcode: u32) -> bool {
    matches!(
        opcode,
        abi::FUSE_READ
            | abi::FUSE_WRITE
            | abi::FUSE_FSYNC
            | abi::FUSE_FSYNCDIR
            | abi::FUSE_FALLOCATE
            // Collection ioctls wait for the shard workers (a search scans whole shards).
            | abi::FUSE_IOCTL
    )
}

/// Answers handed-off requests until every queue has dropped its sender.
pub fn serve_hand_offs(jobs: &Receiver<HandOff>, handle: &Handle<'_>) {
    let staged = RefCell::new(Vec::new());
    for job in jobs.iter() {
        job.complete(&staged, handle);
    }
}

impl HandOff {
    /// Answers the request with `handle` (reply bodies staged in `staged` when needed) and
    /// hands the entry back to its queue.
    pub fn complete(mut self, staged: &RefCell<Vec<u8>>, handle: &Handle<'_>) {
        let commit_id = self.buffers.answer(staged, handle);
        let _ = self.back.send(Answered { index: self.index, buffers: self.buffers, commit_id });
        self.wake.signal();
    }
}

/// Where a queue sends requests that may wait long (a text fsync, a search, a query file): to a
/// pool of their own, so that they hold neither a queue thread nor the device hand-off threads.
pub struct Divert<'a> {
    /// Whether the request with this opcode and node id may wait long.
    pub is_slow: &'a (dyn Fn(u32, u64) -> bool + Sync),
    /// Hands it over; gives it back when nothing takes it.
    pub send: &'a (dyn Fn(HandOff) -> Result<(), HandOff> + Sync),
}

/// Where the reply to the request in an entry goes. A request that left the payload buffer empty
/// (READ, GETATTR, ...) is answered straight into it; otherwise the request borrows the buffer
/// while it is handled, so the body is staged and copied in after the handler returns.
struct EntryReply<'a> {
    header: Cell<Option<abi::fuse_out_header>>,
    /// The whole payload buffer, when the request left it empty.
    direct: RefCell<Option<&'a mut [u8]>>,
    staged: &'a RefCell<Vec<u8>>,
    /// Body bytes: in `direct` if it is there, else in `staged`.
    len: Cell<usize>,
}

impl ReplyChannel for EntryReply<'_> {
    fn send(&self, iov: &[IoSlice<'_>]) -> io::Result<()> {
        let header = iov
            .first()
            .and_then(|part| abi::fuse_out_header::read_from_bytes(part).ok())
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "reply without a fuse_out_header"))?;
        let body_len: usize = iov[1..].iter().map(|part| part.len()).sum();
        let mut direct = self.direct.borrow_mut();
        if let Some(buf) = direct.as_deref_mut() {
            if body_len > buf.len() {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("reply of {body_len} bytes exceeds the {}-byte ring payload buffer", buf.len()),
                ));
            }
            let mut at = 0;
            for part in &iov[1..] {
                buf[at..at + part.len()].copy_from_slice(part);
                at += part.len();
            }
        } else {
            let mut staged = self.staged.borrow_mut();
            staged.clear();
            for part in &iov[1..] {
                staged.extend_from_slice(part);
            }
        }
        self.len.set(body_len);
        self.header.set(Some(header));
        Ok(())
    }
}

/// A request as a queue delivers it: the `fuse_in_header` bytes, the opcode's argument struct
/// area and the payload.
pub struct Delivered<'a> {
    pub header: &'a [u8],
    pub op_in: &'a [u8],
    pub payload: &'a [u8],
}

/// A queue's eventfd, polled by its ring: written when a hand-off finishes or to stop it.
pub struct Wake {
    fd: OwnedFd,
    stop: AtomicBool,
}

impl Wake {
    fn new() -> io::Result<Wake> {
        // SAFETY: eventfd(2) takes no pointers; a non-negative result is a new fd we own.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just returned by eventfd and is owned by nothing else.
        Ok(Wake { fd: unsafe { OwnedFd::from_raw_fd(fd) }, stop: AtomicBool::new(false) })
    }

    fn signal(&self) {
        // The kernel reads a u64 in the machine's byte order.
        let value = 1u64;
        let one = value.as_bytes();
        // SAFETY: writes 8 bytes from a live local to an eventfd we own.
        let rc = unsafe { libc::write(self.fd.as_raw_fd(), one.as_ptr().cast(), one.len()) };
        if rc != 8 {
            tracing::warn!(err = %io::Error::last_os_error(), "signalling a FUSE ring queue failed");
        }
    }

    /// Resets the counter so the next poll waits for a new signal.
    fn clear(&self) {
        let mut count = [0u8; 8];
        // SAFETY: reads at most 8 bytes into a live local; EAGAIN (already clear) is fine.
        let _ = unsafe { libc::read(self.fd.as_raw_fd(), count.as_mut_ptr().cast(), count.len()) };
    }
}

/// Stops a queue thread (at shutdown).
#[derive(Clone)]
pub struct QueueWaker(Arc<Wake>);

impl QueueWaker {
    pub fn wake(&self) {
        self.0.stop.store(true, Ordering::Release);
        self.0.signal();
    }
}

const WAKE_TAG: u64 = u64::MAX;

/// One FUSE ring queue: an io_uring with 128-byte SQEs, the `/dev/fuse` fd as fixed file 0, and
/// `depth` entries. Created and run on the thread that serves it.
pub struct Queue {
    qid: u16,
    ring: IoUring<squeue::Entry128, cqueue::Entry>,
    entries: Vec<Entry>,
    /// Reply bodies of requests that use the payload buffer themselves.
    staged: RefCell<Vec<u8>>,
    wake: Arc<Wake>,
    answered: (Sender<Answered>, Receiver<Answered>),
    served: u64,
}

impl Queue {
    /// A queue for CPU `qid` on the connection of `device` (any `/dev/fuse` fd of it), with
    /// `depth` entries whose payload buffers hold `payload_bytes` (at least the agreed
    /// `max_write`, and at least 8 KiB).
    pub fn new(qid: u16, device: BorrowedFd<'_>, depth: usize, payload_bytes: usize) -> io::Result<Queue> {
        let depth = depth.max(1);
        // Room for every entry's command plus the wake poll.
        let ring = IoUring::<squeue::Entry128, cqueue::Entry>::builder()
            .setup_cqsize(2 * (depth as u32 + 1))
            .setup_single_issuer()
            .setup_defer_taskrun()
            .build((depth as u32 + 1).next_power_of_two())?;
        ring.submitter().register_files(&[device.as_raw_fd()])?;
        let wake = Arc::new(Wake::new()?);
        let payload_bytes = payload_bytes.max(abi::FUSE_MIN_READ_BUFFER);
        let entries = (0..depth).map(|_| Entry::new(payload_bytes)).collect();
        let answered = crossbeam_channel::unbounded();
        Ok(Queue { qid, ring, entries, staged: RefCell::default(), wake, answered, served: 0 })
    }

    pub fn waker(&self) -> QueueWaker {
        QueueWaker(Arc::clone(&self.wake))
    }

    /// Requests answered so far.
    pub fn served(&self) -> u64 {
        self.served
    }

    /// Registers every entry, then answers requests with `handle` until the connection ends
    /// (unmount or abort) or the queue is woken ([`QueueWaker::wake`]). Requests that may wait
    /// long go to `divert` and requests that wait for the device to `hand_offs`, when given.
    /// `handle` must answer through the channel it is given before it returns; a request left
    /// unanswered gets EIO.
    pub fn run(
        &mut self,
        handle: &Handle<'_>,
        hand_offs: Option<&Sender<HandOff>>,
        divert: Option<&Divert<'_>>,
    ) -> io::Result<()> {
        for index in 0..self.entries.len() {
            let sqe = self.register_sqe(index);
            self.push(&sqe)?;
        }
        self.arm_wake()?;
        let mut completed: Vec<(u64, i32)> = Vec::with_capacity(self.entries.len() + 1);
        loop {
            match self.ring.submit_and_wait(1) {
                Ok(_) => {}
                Err(err) if matches!(err.raw_os_error(), Some(libc::EINTR | libc::EAGAIN | libc::EBUSY)) => {}
                Err(err) => return Err(err),
            }
            completed.extend(self.ring.completion().map(|cqe| (cqe.user_data(), cqe.result())));
            for (tag, result) in completed.drain(..) {
                if tag == WAKE_TAG {
                    if self.wake.stop.load(Ordering::Acquire) {
                        return Ok(());
                    }
                    self.wake.clear();
                    self.commit_answered()?;
                    self.arm_wake()?;
                    continue;
                }
                let index = tag as usize;
                if result < 0 {
                    match -result {
                        // Not ready yet (REGISTER before INIT completes), or interrupted: send
                        // the same command again.
                        libc::EAGAIN | libc::EINTR => {
                            let sqe = match self.entries[index].committing {
                                Some(commit_id) => self.commit_sqe(index, commit_id),
                                None => self.register_sqe(index),
                            };
                            self.push(&sqe)?;
                        }
                        libc::ENOTCONN | libc::ENODEV | libc::ECONNABORTED | libc::ECANCELED => return Ok(()),
                        errno => return Err(io::Error::from_raw_os_error(errno)),
                    }
                    continue;
                }
                let mut buffers = self.entries[index].buffers.take().expect("a completed entry holds its buffers");
                let (opcode, nodeid) = buffers.target();
                if let Some(divert) = divert.filter(|d| (d.is_slow)(opcode, nodeid)) {
                    let job = HandOff { index, buffers, back: self.answered.0.clone(), wake: Arc::clone(&self.wake) };
                    match (divert.send)(job) {
                        Ok(()) => continue,
                        Err(job) => buffers = job.buffers,
                    }
                }
                if let Some(jobs) = hand_offs.filter(|_| hand_off(opcode)) {
                    let back = self.answered.0.clone();
                    let job = HandOff { index, buffers, back, wake: Arc::clone(&self.wake) };
                    if let Err(refused) = jobs.send(job) {
                        // No hand-off thread left: answer here.
                        let mut job = refused.into_inner();
                        let commit_id = job.buffers.answer(&self.staged, handle);
                        self.finish(index, job.buffers, commit_id)?;
                    }
                    continue;
                }
                let commit_id = buffers.answer(&self.staged, handle);
                self.finish(index, buffers, commit_id)?;
            }
        }
    }

    /// Puts an answered entry's buffers back and commits its reply.
    fn finish(&mut self, index: usize, buffers: Buffers, commit_id: u64) -> io::Result<()> {
        self.entries[index].buffers = Some(buffers);
        self.entries[index].committing = Some(commit_id);
        self.served += 1;
        let sqe = self.commit_sqe(index, commit_id);
        self.push(&sqe)
    }

    fn commit_answered(&mut self) -> io::Result<()> {
        while let Ok(answered) = self.answered.1.try_recv() {
            self.finish(answered.index, answered.buffers, answered.commit_id)?;
        }
        Ok(())
    }

    fn arm_wake(&mut self) -> io::Result<()> {
        let poll =
            opcode::PollAdd::new(types::Fd(self.wake.fd.as_raw_fd()), libc::POLLIN as u32).build().user_data(WAKE_TAG);
        self.push(&poll.into())
    }

    fn register_sqe(&self, index: usize) -> squeue::Entry128 {
        let iov = self.entries[index].iov.as_ptr() as u64;
        let sqe = self.cmd_sqe(abi::FUSE_IO_URING_CMD_REGISTER, 0).addr(Some(iov)).build().user_data(index as u64);
        with_len(sqe, 2)
    }

    fn commit_sqe(&self, index: usize, commit_id: u64) -> squeue::Entry128 {
        self.cmd_sqe(abi::FUSE_IO_URING_CMD_COMMIT_AND_FETCH, commit_id).build().user_data(index as u64)
    }

    fn cmd_sqe(&self, cmd_op: u32, commit_id: u64) -> opcode::UringCmd80 {
        let request = abi::fuse_uring_cmd_req { flags: 0, commit_id, qid: self.qid, padding: [0; 6] };
        let mut cmd = [0u8; 80];
        cmd[..size_of::<abi::fuse_uring_cmd_req>()].copy_from_slice(request.as_bytes());
        opcode::UringCmd80::new(types::Fixed(0), cmd_op).cmd(cmd)
    }

    fn push(&mut self, sqe: &squeue::Entry128) -> io::Result<()> {
        // The ring has a slot for every entry and the wake poll, and each entry has at most one
        // command queued, so a full ring only means unsubmitted commands: submit and retry.
        loop {
            // Every buffer the SQE names (an entry's iovec array and the buffers it points to)
            // lives in `self.entries`, which is neither dropped nor reallocated while the ring
            // (dropped first, with `self`) can still use them.
            // SAFETY: the memory the SQE names outlives the kernel's use of it.
            if unsafe { self.ring.submission().push(sqe) }.is_ok() {
                return Ok(());
            }
            self.ring.submit()?;
        }
    }
}

/// `sqe` with its `len` field (bytes 24..28 of the 64-byte SQE) set: the io-uring crate's
/// `UringCmd80` builder has no setter for it, and FUSE reads the iovec count from it.
fn with_len(sqe: squeue::Entry128, len: u32) -> squeue::Entry128 {
    // `Entry128` is `#[repr(C)]` over the kernel's 64-byte `io_uring_sqe` followed by 64 command
    // bytes, all plain integers with no padding and no invalid bit patterns.
    // SAFETY: `Entry128` and `[u8; 128]` have one size and every byte pattern is valid for both.
    let mut bytes: [u8; 128] = unsafe { std::mem::transmute(sqe) };
    // The kernel reads the field in the machine's byte order.
    bytes[24..28].copy_from_slice(len.as_bytes());
    // SAFETY: as above, converting back.
    unsafe { std::mem::transmute::<[u8; 128], squeue::Entry128>(bytes) }
}

/// Pins the calling thread to `cpu`; a failure (the CPU is offline) is logged and ignored.
pub fn pin_to_cpu(cpu: usize) {
    // SAFETY: cpu_set_t is a plain bit array; all zeros is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: CPU_SET writes one bit inside `set` after checking `cpu` against its size.
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: the pointer and size describe `set`, a live local; pid 0 is the calling thread.
    let rc = unsafe { libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set) };
    if rc != 0 {
        tracing::debug!(cpu, err = %io::Error::last_os_error(), "pinning a FUSE ring queue failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists() {
        assert_eq!(parse_cpu_list("0-1"), Some(2));
        assert_eq!(parse_cpu_list("0"), Some(1));
        assert_eq!(parse_cpu_list("0-3,8"), Some(9));
        assert_eq!(parse_cpu_list(""), None);
        assert_eq!(parse_cpu_list("x"), None);
    }

    #[test]
    fn register_sqe_names_two_iovecs() {
        let sqe = opcode::UringCmd80::new(types::Fixed(0), abi::FUSE_IO_URING_CMD_REGISTER).addr(Some(0x1000)).build();
        // SAFETY: as in `with_len`.
        let bytes: [u8; 128] = unsafe { std::mem::transmute(with_len(sqe, 2)) };
        assert_eq!(u32::read_from_bytes(&bytes[24..28]).unwrap(), 2);
        assert_eq!(u64::read_from_bytes(&bytes[16..24]).unwrap(), 0x1000, "addr untouched");
        assert_eq!(bytes[0], io_uring::opcode::UringCmd80::CODE);
    }
}
