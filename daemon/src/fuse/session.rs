//! A FUSE session: INIT negotiation, then worker threads that receive, decode and dispatch
//! requests to a [`Handler`] until the file system is unmounted.
//!
//! Invariants:
//! - INIT is answered on the mount's own fd before any worker starts; each worker then reads and
//!   answers on its own cloned fd.
//! - Every request that expects a reply gets exactly one: malformed requests get EIO, INIT after
//!   the first gets EIO, DESTROY gets an empty success, everything else goes to the handler with
//!   a [`Reply`] that answers EIO if dropped.
//! - INTERRUPT is never answered and never reaches the handler: it sets the interrupt token of
//!   the request it names ([`Reply::interrupt`]), when that request is a slow one still being
//!   handled; long waits look at the token and answer EINTR. An INTERRUPT for a request not (or no
//!   longer) registered is dropped: the request completes as it would have.
//! - Requests the handler calls slow ([`Handler::is_slow`]: they may wait for an embedder, a
//!   search or indexing) are answered on a pool of their own, [`SLOW_THREADS`] threads, so that a
//!   long wait holds neither a ring queue thread nor a device hand-off thread nor a `/dev/fuse`
//!   worker.
//! - A handler that panics does not take its thread down: the request is answered EIO (its
//!   [`Reply`] is dropped unanswered), the panic is logged with the request, and the thread goes
//!   on serving.
//! - `Handler::destroy` runs exactly once: on DESTROY, or when the session ends without one.
//!   (The kernel sends DESTROY only for `fuseblk` mounts; for ours, unmounting ends the reads.)

use std::cell::RefCell;
use std::collections::HashMap;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use zerocopy::FromBytes;

use super::abi;
use super::notify::Notifier;
use super::reply::Reply;
use super::request::{Operation, ParseOptions, Request};
use super::transport::{ClassicTransport, Received, ReplyChannel, RequestBuffer, Transport};
use super::uring;
use crate::service::{panic_message, Interrupt};

/// The file system behind a session.
pub trait Handler: Send + Sync + 'static {
    /// Called once INIT has been answered, before the first other request, with the agreed
    /// features and the session's [`Notifier`] for cache invalidations.
    fn init(&self, _info: &InitInfo, _notifier: Notifier) {}

    /// Answers one request through `reply`. Called concurrently from all worker threads.
    fn handle(&self, req: Request<'_>, reply: Reply<'_>);

    /// Whether the request with this opcode and node id may wait long (for an embedder, a search,
    /// indexing): it is then answered on the slow pool, and may be interrupted.
    fn is_slow(&self, _opcode: u32, _nodeid: u64) -> bool {
        false
    }

    /// Called once, when the kernel sends DESTROY or the session ends.
    fn destroy(&self) {}
}

/// How a session is run and what it asks of the kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionConfig {
    /// Worker threads, each with its own `/dev/fuse` fd; with FUSE-over-io_uring, also the
    /// number of hand-off threads.
    pub threads: usize,
    /// Largest WRITE payload, a multiple of 4096; also the size of each worker's request buffer
    /// (plus 8 KiB).
    pub max_write: u32,
    /// Let the kernel cache writes in the page cache and send them back in large WRITEs. The file
    /// system must then accept READ on files opened write-only (the kernel fills partial pages)
    /// and treat the kernel's `size` and `mtime` as authoritative.
    pub writeback_cache: bool,
    /// The readahead to ask for. INIT caps it at what the kernel offers (128 KiB by default);
    /// with `mountpoint` set, the session raises the mount's readahead to this after INIT.
    pub max_readahead: u32,
    /// Ask for FUSE-over-io_uring ([`super::uring`]): one queue per CPU, served by a thread
    /// pinned to that CPU with `uring_depth` entries, and
    /// `threads` hand-off threads for the requests that wait for the device. Used when the
    /// kernel offers it at INIT; `/dev/fuse` otherwise.
    pub uring: bool,
    pub uring_depth: usize,
    /// Where the session is mounted, for raising its readahead ([`super::mount::set_read_ahead`]).
    pub mountpoint: Option<std::path::PathBuf>,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            threads: 2,
            max_write: 1 << 20,
            writeback_cache: true,
            // Two of the largest READs in flight for a sequential reader.
            max_readahead: 2 << 20,
            uring: true,
            uring_depth: 8,
            mountpoint: None,
        }
    }
}

/// The protocol and features agreed at INIT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitInfo {
    pub proto_major: u32,
    /// The smaller of the kernel's minor version and ours.
    pub proto_minor: u32,
    /// What the kernel offered: a set of `abi::FUSE_*` INIT bits.
    pub kernel_flags: u64,
    /// What we enabled, a subset of `kernel_flags` (plus FUSE_INIT_EXT when flags2 is used).
    pub flags: u64,
    pub max_write: u32,
    pub max_readahead: u32,
    pub writeback_cache: bool,
    /// FUSE-over-io_uring was agreed: the ring queues are set up after INIT.
    pub uring: bool,
}

/// Most worker threads one session runs (each holds an fd and a `max_write` buffer).
const THREADS_MAX: usize = 64;
/// Threads that answer slow requests ([`Handler::is_slow`]). Up to this many long waits run at
/// once; more wait their turn, while every other request goes on being served.
pub const SLOW_THREADS: usize = 8;
/// The kernel counts `max_write` in pages (`max_pages`).
const PAGE_SIZE: u32 = 4096;
/// Bounds on `max_write`: one page, and a `max_pages` well inside the kernel's u16 field.
const MAX_WRITE_MIN: u32 = PAGE_SIZE;
const MAX_WRITE_MAX: u32 = 16 << 20;
/// The oldest kernel protocol we speak: 7.31 (Linux 5.8) has every feature we negotiate except
/// SETXATTR_EXT and INIT_EXT, which we then do without.
const KERNEL_MINOR_MIN: u32 = 31;

/// Requests every session asks for. Not asked: POSIX_LOCKS and FLOCK_LOCKS (so the kernel keeps
/// locks locally), DONT_MASK (so the kernel applies the umask), EXPORT_SUPPORT (no NFS export).
const FLAGS_WANTED: u64 = abi::FUSE_ASYNC_READ
    | abi::FUSE_ATOMIC_O_TRUNC
    | abi::FUSE_BIG_WRITES
    | abi::FUSE_PARALLEL_DIROPS
    | abi::FUSE_HANDLE_KILLPRIV_V2
    | abi::FUSE_MAX_PAGES
    | abi::FUSE_CACHE_SYMLINKS
    | abi::FUSE_DO_READDIRPLUS
    | abi::FUSE_READDIRPLUS_AUTO
    | abi::FUSE_ASYNC_DIO
    | abi::FUSE_SETXATTR_EXT
    | abi::FUSE_INIT_EXT;

/// Runs FUSE sessions; see the module documentation.
pub struct Session {
    _private: (),
}

impl Session {
    /// Serves the file system mounted with `fd` until it is unmounted. Returns an error if INIT
    /// fails or is refused, or if a worker fails; the file system stays mounted in that case.
    pub fn run<H: Handler>(fd: OwnedFd, handler: Arc<H>, config: SessionConfig) -> io::Result<()> {
        validate(&config)?;
        let main = ClassicTransport::new(fd);
        let Some(info) = serve_init(&main, &config)? else {
            return Err(io::Error::new(io::ErrorKind::ConnectionAborted, "unmounted before INIT"));
        };
        tracing::info!(minor = info.proto_minor, flags = format_args!("{:#x}", info.flags), "FUSE session initialized");
        if let Some(mountpoint) = &config.mountpoint {
            if let Err(err) = super::mount::set_read_ahead(mountpoint, u64::from(config.max_readahead)) {
                tracing::warn!(%err, "readahead left at the kernel's default");
            }
        }
        let (notifier, notifier_thread) = Notifier::start(Arc::new(main.clone_channel()?))?;
        handler.init(&info, notifier);
        let channels = (0..config.threads).map(|_| main.clone_channel()).collect::<io::Result<Vec<_>>>()?;
        let shared = Shared {
            handler,
            destroyed: AtomicBool::new(false),
            options: parse_options(&info),
            interrupts: Mutex::new(HashMap::new()),
        };
        let rings = if info.uring { ring_plan(&config) } else { None };
        let result = run_workers(&shared, &channels, &main, info.max_write, rings);
        shared.destroy_once();
        notifier_thread.stop();
        result
    }
}

fn validate(config: &SessionConfig) -> io::Result<()> {
    let invalid = |what: String| Err(io::Error::new(io::ErrorKind::InvalidInput, what));
    if config.threads == 0 || config.threads > THREADS_MAX {
        return invalid(format!("threads = {} is outside 1..={THREADS_MAX}", config.threads));
    }
    let write_ok =
        (MAX_WRITE_MIN..=MAX_WRITE_MAX).contains(&config.max_write) && config.max_write & (PAGE_SIZE - 1) == 0;
    if !write_ok {
        return invalid(format!("max_write = {} is not a multiple of 4096 in 4 KiB..=16 MiB", config.max_write));
    }
    Ok(())
}

/// State shared by the workers of one session.
struct Shared<H> {
    handler: Arc<H>,
    destroyed: AtomicBool,
    options: ParseOptions,
    /// The interrupt flags of the slow requests being handled, by `unique`.
    interrupts: Mutex<HashMap<u64, Arc<AtomicBool>>>,
}

impl<H: Handler> Shared<H> {
    fn destroy_once(&self) {
        if !self.destroyed.swap(true, Ordering::AcqRel) {
            self.handler.destroy();
        }
    }

    fn interrupt(&self, unique: u64) {
        match self.interrupts.lock().get(&unique) {
            Some(flag) => flag.store(true, Ordering::Release),
            None => tracing::debug!(unique, "INTERRUPT for a request not waiting; dropped"),
        }
    }
}

/// A slow request, waiting for a thread of the slow pool.
enum SlowJob<'c> {
    /// From a ring queue: the entry's buffers.
    Ring(uring::HandOff),
    /// From `/dev/fuse`: a copy of the request, answered on the channel it came on.
    Classic(Vec<u8>, &'c ClassicTransport),
}

/// Answers slow requests until every sender is gone.
fn serve_slow<H: Handler>(shared: &Shared<H>, jobs: &crossbeam_channel::Receiver<SlowJob<'_>>) {
    let staged = RefCell::new(Vec::new());
    for job in jobs.iter() {
        match job {
            SlowJob::Ring(job) => {
                job.complete(&staged, &|delivered, channel| dispatch_split(shared, channel, delivered, true))
            }
            SlowJob::Classic(bytes, channel) => dispatch(shared, channel, &bytes, true),
        }
    }
}

/// The opcode and node id of the request in `bytes` (a `fuse_in_header` first).
fn target(bytes: &[u8]) -> (u32, u64) {
    abi::fuse_in_header::read_from_prefix(bytes).map_or((0, 0), |(h, _)| (h.opcode, h.nodeid))
}

fn parse_options(info: &InitInfo) -> ParseOptions {
    ParseOptions { setxattr_ext: info.flags & abi::FUSE_SETXATTR_EXT != 0 }
}

/// Receives INIT and answers it. `Ok(None)` if the file system was unmounted first.
fn serve_init(transport: &dyn Transport, config: &SessionConfig) -> io::Result<Option<InitInfo>> {
    // INIT is small; the kernel still insists on a buffer of FUSE_MIN_READ_BUFFER bytes.
    let mut buf = vec![0u8; abi::FUSE_MIN_READ_BUFFER];
    let len = match transport.receive(&mut buf)? {
        Received::Request(len) => len,
        Received::Unmounted => return Ok(None),
    };
    let request = Request::parse(&buf[..len]).map_err(|err| io::Error::new(io::ErrorKind::InvalidData, err))?;
    let reply = Reply::new(&request, transport);
    let Operation::Init { major, minor, max_readahead, flags } = request.op else {
        reply.error(libc::EIO);
        let message = format!("first FUSE request is {}, not INIT", request.op.name());
        return Err(io::Error::new(io::ErrorKind::InvalidData, message));
    };
    match negotiate(major, minor, max_readahead, flags, config) {
        Ok((out, info)) => {
            reply.init(&out);
            Ok(Some(info))
        }
        Err(err) => {
            reply.error(libc::EPROTO);
            Err(err)
        }
    }
}

/// Chooses our INIT answer from the kernel's offer. Pure, so it is tested without a kernel.
fn negotiate(
    major: u32,
    minor: u32,
    kernel_readahead: u32,
    kernel_flags: u64,
    config: &SessionConfig,
) -> io::Result<(abi::fuse_init_out, InitInfo)> {
    if major != abi::FUSE_KERNEL_VERSION || minor < KERNEL_MINOR_MIN {
        let (version, minor_min) = (abi::FUSE_KERNEL_VERSION, KERNEL_MINOR_MIN);
        let needed = format!("major {version}, minor {minor_min} or newer");
        let message = format!("kernel FUSE protocol {major}.{minor} is not supported: vexfsd needs {needed}");
        return Err(io::Error::new(io::ErrorKind::Unsupported, message));
    }
    let mut wanted = FLAGS_WANTED;
    if config.writeback_cache {
        wanted |= abi::FUSE_WRITEBACK_CACHE;
    }
    if config.uring {
        wanted |= abi::FUSE_OVER_IO_URING;
    }
    let flags = wanted & kernel_flags;
    let max_readahead = config.max_readahead.min(kernel_readahead);
    let max_pages = u16::try_from(config.max_write / PAGE_SIZE).expect("max_write validated to at most 16 MiB");
    let out = abi::fuse_init_out {
        major: abi::FUSE_KERNEL_VERSION,
        minor: abi::FUSE_KERNEL_MINOR_VERSION,
        max_readahead,
        // Truncation keeps bits 0..31; bits 32..63 go in flags2.
        flags: flags as u32,
        flags2: (flags >> 32) as u32,
        max_write: config.max_write,
        time_gran: 1,
        max_pages,
        ..Default::default()
    };
    let info = InitInfo {
        proto_major: abi::FUSE_KERNEL_VERSION,
        proto_minor: minor.min(abi::FUSE_KERNEL_MINOR_VERSION),
        kernel_flags,
        flags,
        max_write: config.max_write,
        max_readahead,
        writeback_cache: flags & abi::FUSE_WRITEBACK_CACHE != 0,
        uring: flags & abi::FUSE_OVER_IO_URING != 0,
    };
    Ok((out, info))
}

/// The ring queues to set up: one per possible CPU.
#[derive(Debug, Clone, Copy)]
struct RingPlan {
    queues: usize,
    depth: usize,
    /// Threads that answer the requests that wait for the device ([`uring::HandOff`]).
    hand_off_threads: usize,
}

fn ring_plan(config: &SessionConfig) -> Option<RingPlan> {
    match uring::possible_cpus() {
        Ok(queues) => {
            Some(RingPlan { queues, depth: config.uring_depth.max(1), hand_off_threads: config.threads.max(1) })
        }
        Err(err) => {
            tracing::warn!(%err, "FUSE-over-io_uring not used: CPU count unknown");
            None
        }
    }
}

/// Runs one thread per channel, the slow pool and, with `rings`, one pinned thread per ring
/// queue and the device hand-off threads, and waits for all; the first error (or panic) is
/// returned. The queues are woken to stop once the channels report the unmount, in case the
/// kernel has not ended their commands itself.
fn run_workers<H: Handler>(
    shared: &Shared<H>,
    channels: &[ClassicTransport],
    device: &ClassicTransport,
    max_write: u32,
    rings: Option<RingPlan>,
) -> io::Result<()> {
    std::thread::scope(|scope| {
        let (slow_tx, slow_rx) = crossbeam_channel::unbounded::<SlowJob<'_>>();
        let slow = (0..SLOW_THREADS)
            .map(|index| {
                let jobs = slow_rx.clone();
                std::thread::Builder::new().name(format!("vexfs-slow-{index}")).spawn_scoped(scope, move || {
                    serve_slow(shared, &jobs);
                    Ok(())
                })
            })
            .collect::<io::Result<Vec<_>>>()?;
        drop(slow_rx);
        let workers = channels
            .iter()
            .enumerate()
            .map(|(index, channel)| {
                let slow_tx = slow_tx.clone();
                std::thread::Builder::new()
                    .name(format!("vexfs-fuse-{index}"))
                    .spawn_scoped(scope, move || worker(shared, channel, max_write, &slow_tx))
            })
            .collect::<io::Result<Vec<_>>>()?;
        let (wakers_tx, wakers) = crossbeam_channel::unbounded();
        let (hand_offs_tx, hand_offs) = crossbeam_channel::unbounded();
        let (queues, hand_off_threads) = match rings {
            Some(plan) => {
                let queues = (0..plan.queues)
                    .map(|qid| {
                        let (wakers_tx, hand_offs_tx, slow_tx) =
                            (wakers_tx.clone(), hand_offs_tx.clone(), slow_tx.clone());
                        std::thread::Builder::new().name(format!("vexfs-ring-{qid}")).spawn_scoped(scope, move || {
                            let send = move |job| {
                                slow_tx.send(SlowJob::Ring(job)).map_err(|e| match e.into_inner() {
                                    SlowJob::Ring(job) => job,
                                    SlowJob::Classic(..) => unreachable!("a ring queue sends ring jobs"),
                                })
                            };
                            let is_slow = |opcode, nodeid| shared.handler.is_slow(opcode, nodeid);
                            let divert = uring::Divert { is_slow: &is_slow, send: &send };
                            let queue = RingQueue { qid, depth: plan.depth, max_write: max_write as usize };
                            ring_queue(shared, device, queue, &wakers_tx, &hand_offs_tx, &divert)
                        })
                    })
                    .collect::<io::Result<Vec<_>>>()?;
                let hand_off_threads = (0..plan.hand_off_threads)
                    .map(|index| {
                        let hand_offs = hand_offs.clone();
                        std::thread::Builder::new().name(format!("vexfs-io-{index}")).spawn_scoped(scope, move || {
                            uring::serve_hand_offs(&hand_offs, &|delivered, channel| {
                                dispatch_split(shared, channel, delivered, false)
                            });
                            Ok(())
                        })
                    })
                    .collect::<io::Result<Vec<_>>>()?;
                (queues, hand_off_threads)
            }
            None => (Vec::new(), Vec::new()),
        };
        drop((wakers_tx, hand_offs_tx, hand_offs, slow_tx));
        let mut result = join_all(workers);
        // Each queue sends its waker once set up; one still setting up finds the connection gone.
        for waker in wakers.try_iter() {
            waker.wake();
        }
        result = result.and(join_all(queues));
        result = result.and(join_all(hand_off_threads));
        result.and(join_all(slow))
    })
}

fn join_all(threads: Vec<std::thread::ScopedJoinHandle<'_, io::Result<()>>>) -> io::Result<()> {
    let mut result = Ok(());
    for handle in threads {
        let outcome = handle.join().unwrap_or_else(|_| Err(io::Error::other("a FUSE worker thread panicked")));
        if let Err(err) = outcome {
            tracing::error!(%err, "FUSE worker stopped");
            result = result.and(Err(err));
        }
    }
    result
}

/// Where one ring queue runs: its CPU (and queue id), depth and payload buffer size.
struct RingQueue {
    qid: usize,
    depth: usize,
    max_write: usize,
}

/// Serves ring queue `qid` on CPU `qid`. A queue that fails before its first request leaves the
/// session on `/dev/fuse` (the kernel uses the rings only once every queue is registered); a
/// failure after that is an error of the session.
fn ring_queue<H: Handler>(
    shared: &Shared<H>,
    device: &ClassicTransport,
    plan: RingQueue,
    wakers: &crossbeam_channel::Sender<uring::QueueWaker>,
    hand_offs: &crossbeam_channel::Sender<uring::HandOff>,
    divert: &uring::Divert<'_>,
) -> io::Result<()> {
    let RingQueue { qid, depth, max_write } = plan;
    uring::pin_to_cpu(qid);
    let qid16 = u16::try_from(qid).map_err(|_| io::Error::other(format!("CPU {qid} beyond FUSE queue ids")))?;
    let mut queue = match uring::Queue::new(qid16, device.as_fd(), depth, max_write) {
        Ok(queue) => queue,
        Err(err) => {
            tracing::warn!(qid, %err, "FUSE ring queue not set up; requests stay on /dev/fuse");
            return Ok(());
        }
    };
    let _ = wakers.send(queue.waker());
    let handle =
        |delivered: uring::Delivered<'_>, channel: &dyn ReplyChannel| dispatch_split(shared, channel, delivered, false);
    match queue.run(&handle, Some(hand_offs), Some(divert)) {
        Ok(()) => Ok(()),
        Err(err) if queue.served() == 0 => {
            tracing::warn!(qid, %err, "FUSE ring queue refused; requests stay on /dev/fuse");
            Ok(())
        }
        Err(err) => Err(io::Error::new(err.kind(), format!("FUSE ring queue {qid}: {err}"))),
    }
}

/// Receives and dispatches requests until the file system is unmounted; slow ones go to the
/// slow pool as copies.
fn worker<'c, H: Handler>(
    shared: &Shared<H>,
    channel: &'c ClassicTransport,
    max_write: u32,
    slow: &crossbeam_channel::Sender<SlowJob<'c>>,
) -> io::Result<()> {
    let mut buf = RequestBuffer::new(max_write);
    loop {
        match channel.receive(buf.read_area())? {
            Received::Request(len) => {
                let bytes = buf.request(len);
                let (opcode, nodeid) = target(bytes);
                if shared.handler.is_slow(opcode, nodeid) {
                    if let Err(refused) = slow.send(SlowJob::Classic(bytes.to_vec(), channel)) {
                        if let SlowJob::Classic(bytes, _) = refused.into_inner() {
                            dispatch(shared, channel, &bytes, false);
                        }
                    }
                } else {
                    dispatch(shared, channel, bytes, false);
                }
            }
            Received::Unmounted => return Ok(()),
        }
    }
}

/// Decodes one contiguous request (`/dev/fuse`) and routes it.
fn dispatch<H: Handler>(shared: &Shared<H>, channel: &dyn ReplyChannel, bytes: &[u8], slow: bool) {
    match Request::parse_with(bytes, shared.options) {
        Ok(request) => route(shared, channel, request, slow),
        Err(err) => reply_malformed(channel, &err),
    }
}

/// Decodes one request delivered by a ring queue and routes it.
fn dispatch_split<H: Handler>(
    shared: &Shared<H>,
    channel: &dyn ReplyChannel,
    delivered: uring::Delivered<'_>,
    slow: bool,
) {
    match Request::parse_split(delivered.header, delivered.op_in, delivered.payload, shared.options) {
        Ok(request) => route(shared, channel, request, slow),
        Err(err) => reply_malformed(channel, &err),
    }
}

/// Routes one decoded request; independent of the transport it came on. A `slow` request can be
/// interrupted while it is handled.
fn route<H: Handler>(shared: &Shared<H>, channel: &dyn ReplyChannel, request: Request<'_>, slow: bool) {
    tracing::trace!(unique = request.unique, op = request.op.name(), nodeid = request.nodeid, "request");
    match request.op {
        Operation::Interrupt { unique } => shared.interrupt(unique),
        Operation::Init { .. } => {
            tracing::warn!(unique = request.unique, "INIT after the session started");
            Reply::new(&request, channel).error(libc::EIO);
        }
        Operation::Destroy => {
            shared.destroy_once();
            Reply::new(&request, channel).ok();
        }
        _ => {
            let (unique, op, nodeid) = (request.unique, request.op.name(), request.nodeid);
            let mut reply = Reply::new(&request, channel);
            if slow {
                let (token, flag) = Interrupt::new();
                shared.interrupts.lock().insert(unique, flag);
                reply = reply.with_interrupt(token);
            }
            // An unanswered reply answers EIO when dropped, also while unwinding.
            let handled =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| shared.handler.handle(request, reply)));
            if slow {
                shared.interrupts.lock().remove(&unique);
            }
            if let Err(panic) = handled {
                let reason = panic_message(panic.as_ref());
                tracing::error!(unique, op, nodeid, %reason, "request handler panicked; answered EIO");
            }
        }
    }
}

fn reply_malformed(channel: &dyn ReplyChannel, err: &super::request::RequestError) {
    tracing::error!(%err, "malformed FUSE request");
    if let Some(unique) = err.unique() {
        Reply::for_unique(unique, channel).error(libc::EIO);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KERNEL_FLAGS: u64 = (1 << 43) - 1;

    #[test]
    fn negotiate_with_a_6_18_kernel() {
        let config = SessionConfig::default();
        let (out, info) = negotiate(7, 45, 128 << 10, KERNEL_FLAGS, &config).expect("supported");
        assert_eq!((out.major, out.minor), (7, abi::FUSE_KERNEL_MINOR_VERSION));
        assert_eq!(info.proto_minor, 45);
        assert_eq!(out.max_write, 1 << 20);
        assert_eq!(out.max_pages, 256);
        assert_eq!(out.time_gran, 1);
        assert_eq!(out.max_readahead, 128 << 10, "never above the kernel's");
        assert!(info.writeback_cache);
        assert!(info.uring);
        assert_eq!(info.flags, FLAGS_WANTED | abi::FUSE_WRITEBACK_CACHE | abi::FUSE_OVER_IO_URING);
        assert_eq!(u64::from(out.flags), info.flags & 0xffff_ffff);
        assert_eq!(u64::from(out.flags2) << 32, abi::FUSE_OVER_IO_URING, "io_uring is agreed in flags2");
        for absent in [abi::FUSE_POSIX_LOCKS, abi::FUSE_FLOCK_LOCKS, abi::FUSE_DONT_MASK, abi::FUSE_EXPORT_SUPPORT] {
            assert_eq!(info.flags & absent, 0);
        }
    }

    #[test]
    fn negotiate_only_what_the_kernel_offers() {
        let config = SessionConfig { writeback_cache: false, uring: false, ..SessionConfig::default() };
        let offered = abi::FUSE_ASYNC_READ | abi::FUSE_WRITEBACK_CACHE | abi::FUSE_POSIX_LOCKS;
        let (out, info) = negotiate(7, 31, 1 << 20, offered, &config).expect("7.31 is supported");
        assert_eq!(info.flags, abi::FUSE_ASYNC_READ);
        assert_eq!(u64::from(out.flags), abi::FUSE_ASYNC_READ);
        assert!(!info.writeback_cache);
        assert_eq!(parse_options(&info), ParseOptions { setxattr_ext: false });
    }

    #[test]
    fn negotiate_refuses_old_or_foreign_protocols() {
        let config = SessionConfig::default();
        let err = negotiate(7, 30, 0, KERNEL_FLAGS, &config).expect_err("7.30 is too old");
        assert!(err.to_string().contains("7.30 is not supported"), "{err}");
        assert!(negotiate(8, 0, 0, KERNEL_FLAGS, &config).is_err());
    }

    #[test]
    fn config_is_validated() {
        assert!(validate(&SessionConfig::default()).is_ok());
        assert!(validate(&SessionConfig { threads: 0, ..SessionConfig::default() }).is_err());
        assert!(validate(&SessionConfig { max_write: 5000, ..SessionConfig::default() }).is_err());
        assert!(validate(&SessionConfig { max_write: 32 << 20, ..SessionConfig::default() }).is_err());
    }
}
