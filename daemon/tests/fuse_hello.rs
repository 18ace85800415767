//! Goal: prove the FUSE layer end to end against the real kernel, over both transports
//! (`/dev/fuse`, and FUSE-over-io_uring): mount, INIT, LOOKUP, GETATTR, READDIR(PLUS), OPEN, READ,
//! WRITE through the writeback cache, FSYNC, a dropped reply turning into EIO, attribute
//! invalidation through the notifier (now and deferred), unmount, and `Session::run` returning.
//!
//! Method: mount a tiny in-test `Handler` (a root directory with a read-only "hello" and a
//! writable in-memory "data") on a temporary directory, exercise it with `std::fs`, then unmount
//! and wait (bounded) for the session to end. WRITE data must arrive 4096-byte aligned (the
//! request buffer layout promises it; ring payload buffers are page-aligned). The io_uring run
//! turns on the `enable_uring` module parameter and checks that requests were answered by the
//! ring queue threads. Skips with a message unless run as root with `/dev/fuse` present.

#[allow(dead_code)]
mod common;

use std::ffi::OsStr;
use std::fs::{self, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use vexfs_daemon::fuse::mount::{mount, unmount, MountOptions};
use vexfs_daemon::fuse::notify::Notifier;
use vexfs_daemon::fuse::reply::{DirBuf, FileAttr, FileType, Reply, StatFs};
use vexfs_daemon::fuse::request::{Operation, Request, SetAttr};
use vexfs_daemon::fuse::session::{Handler, InitInfo, Session, SessionConfig};
use vexfs_daemon::fuse::uring;

const ROOT: u64 = 1;
const HELLO: u64 = 2;
const DATA: u64 = 3;
/// A file whose READ waits until the caller interrupts it (a slow request, as a text fsync is).
const SLOW: u64 = 4;
const HELLO_TEXT: &[u8] = b"hello\n";
/// Long enough that only an invalidation makes the kernel ask for attributes again.
const TTL: Duration = Duration::from_secs(600);
/// A LOOKUP of this name is dropped unanswered, which must reach the caller as EIO.
const DROPPED: &str = "dropped";
/// A LOOKUP of this name panics in the handler, which must reach the caller as EIO and cost the
/// session no thread.
const PANICS: &str = "panics";
/// How long a READ of `SLOW` waits for its interrupt before answering anyway.
const SLOW_WAIT_MAX: Duration = Duration::from_secs(20);
/// WRITE data must start on this boundary, for O_DIRECT without a copy.
const PAGE_SIZE: usize = 4096;
const SESSION_END_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Default)]
struct HelloFs {
    data: Mutex<Vec<u8>>,
    writes: AtomicU64,
    writes_unaligned: AtomicU64,
    init: Mutex<Option<InitInfo>>,
    notifier: Mutex<Option<Notifier>>,
    destroyed: AtomicBool,
    /// Added to `data`'s block count behind the kernel's back.
    extra_blocks: AtomicU64,
    /// Requests answered on ring queue threads (`vexfs-ring-*`).
    on_ring: AtomicU64,
    /// READs of `SLOW` that saw their interrupt, and those answered off the slow pool.
    interrupted: AtomicU64,
    slow_elsewhere: AtomicU64,
}

impl HelloFs {
    fn attr(&self, ino: u64) -> Option<FileAttr> {
        let (mode, nlink, size) = match ino {
            ROOT => (libc::S_IFDIR | 0o755, 2, 0),
            HELLO => (libc::S_IFREG | 0o444, 1, HELLO_TEXT.len() as u64),
            DATA => (libc::S_IFREG | 0o644, 1, self.data.lock().len() as u64),
            SLOW => (libc::S_IFREG | 0o444, 1, 4096),
            _ => return None,
        };
        let extra = if ino == DATA { self.extra_blocks.load(Ordering::SeqCst) } else { 0 };
        let blocks = size.div_ceil(512) + extra;
        Some(FileAttr { ino, size, blocks, mode, nlink, blksize: 4096, ..FileAttr::default() })
    }

    fn lookup(&self, parent: u64, name: &OsStr, reply: Reply<'_>) {
        let ino = match name.to_str() {
            Some(DROPPED) => return drop(reply),
            Some(PANICS) => panic!("a handler bug"),
            Some("slow") if parent == ROOT => SLOW,
            Some("hello") if parent == ROOT => HELLO,
            Some("data") if parent == ROOT => DATA,
            _ => return reply.error(libc::ENOENT),
        };
        let attr = self.attr(ino).expect("known inode");
        reply.entry(&attr, 0, TTL, TTL);
    }

    fn setattr(&self, ino: u64, set: &SetAttr, reply: Reply<'_>) {
        if let (DATA, Some(size)) = (ino, set.size) {
            self.data.lock().resize(size as usize, 0);
        }
        match self.attr(ino) {
            Some(attr) => reply.attr(&attr, TTL),
            None => reply.error(libc::ENOENT),
        }
    }

    fn open(&self, ino: u64, flags: u32, reply: Reply<'_>) {
        // ATOMIC_O_TRUNC is negotiated: truncation arrives as an OPEN flag, not a SETATTR.
        if ino == DATA && flags & libc::O_TRUNC as u32 != 0 {
            self.data.lock().clear();
        }
        // Direct I/O for SLOW: its READ is then the caller's own request, which a signal to the
        // caller interrupts (a readahead READ belongs to no caller).
        let fopen_direct_io = 1;
        reply.open(ino, if ino == SLOW { fopen_direct_io } else { 0 });
    }

    fn read(&self, ino: u64, offset: u64, size: u32, reply: Reply<'_>) {
        if ino == SLOW {
            return self.read_slow(reply);
        }
        let data = self.data.lock();
        let content: &[u8] = if ino == HELLO { HELLO_TEXT } else { &data };
        let start = (offset as usize).min(content.len());
        let end = (start + size as usize).min(content.len());
        reply.data(&content[start..end]);
    }

    /// Waits for the kernel's INTERRUPT, then answers EINTR (or data, if none comes).
    fn read_slow(&self, reply: Reply<'_>) {
        if !std::thread::current().name().is_some_and(|name| name.starts_with("vexfs-slow-")) {
            self.slow_elsewhere.fetch_add(1, Ordering::Relaxed);
        }
        let interrupt = reply.interrupt();
        let deadline = Instant::now() + SLOW_WAIT_MAX;
        while !interrupt.is_set() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        if interrupt.is_set() {
            self.interrupted.fetch_add(1, Ordering::Relaxed);
            return reply.error(libc::EINTR);
        }
        reply.data(&[0; 16]);
    }

    fn write(&self, offset: u64, payload: &[u8], reply: Reply<'_>) {
        self.writes.fetch_add(1, Ordering::Relaxed);
        if payload.as_ptr() as usize & (PAGE_SIZE - 1) != 0 {
            self.writes_unaligned.fetch_add(1, Ordering::Relaxed);
        }
        let mut data = self.data.lock();
        let end = offset as usize + payload.len();
        if data.len() < end {
            data.resize(end, 0);
        }
        data[offset as usize..end].copy_from_slice(payload);
        reply.write(payload.len() as u32);
    }

    fn readdir(&self, offset: u64, size: u32, plus: bool, reply: Reply<'_>) {
        let entries = [(".", ROOT), ("..", ROOT), ("hello", HELLO), ("data", DATA)];
        let mut buf = DirBuf::new(size);
        for (index, (name, ino)) in entries.iter().enumerate().skip(offset as usize) {
            let attr = self.attr(*ino).expect("known inode");
            let next = index as u64 + 1;
            let kind = FileType::from_mode(attr.mode).expect("file type");
            let pushed = if plus {
                buf.push_plus(&attr, 0, TTL, TTL, next, OsStr::new(name))
            } else {
                buf.push(*ino, next, kind, OsStr::new(name))
            };
            if !pushed {
                break;
            }
        }
        reply.dir(&buf);
    }
}

impl Handler for HelloFs {
    fn init(&self, info: &InitInfo, notifier: Notifier) {
        *self.init.lock() = Some(info.clone());
        *self.notifier.lock() = Some(notifier);
    }

    fn handle(&self, req: Request<'_>, reply: Reply<'_>) {
        if std::thread::current().name().is_some_and(|name| name.starts_with("vexfs-ring-")) {
            self.on_ring.fetch_add(1, Ordering::Relaxed);
        }
        match req.op {
            Operation::Lookup { name } => self.lookup(req.nodeid, name, reply),
            Operation::Getattr { .. } => match self.attr(req.nodeid) {
                Some(attr) => reply.attr(&attr, TTL),
                None => reply.error(libc::ENOENT),
            },
            Operation::Setattr(set) => self.setattr(req.nodeid, &set, reply),
            Operation::Open { flags, .. } => self.open(req.nodeid, flags, reply),
            Operation::Read { offset, size, .. } => self.read(req.nodeid, offset, size, reply),
            Operation::Write { offset, data, .. } => self.write(offset, data, reply),
            Operation::Opendir { .. } => reply.open(0, 0),
            Operation::Readdir { offset, size, .. } => self.readdir(offset, size, false, reply),
            Operation::Readdirplus { offset, size, .. } => self.readdir(offset, size, true, reply),
            Operation::Flush { .. }
            | Operation::Release { .. }
            | Operation::Releasedir { .. }
            | Operation::Fsync { .. }
            | Operation::Fsyncdir { .. } => reply.ok(),
            Operation::Statfs => reply.statfs(&StatFs { bsize: 4096, frsize: 4096, namelen: 255, ..StatFs::default() }),
            Operation::Forget { .. } | Operation::BatchForget { .. } => {}
            _ => reply.error(libc::ENOSYS),
        }
    }

    fn destroy(&self) {
        self.destroyed.store(true, Ordering::SeqCst);
    }

    fn is_slow(&self, _opcode: u32, nodeid: u64) -> bool {
        nodeid == SLOW
    }
}

/// Unmounts lazily if the test fails while mounted, so a failure cannot leave a dead mount.
struct MountGuard {
    path: PathBuf,
    mounted: bool,
}

impl Drop for MountGuard {
    fn drop(&mut self) {
        if self.mounted {
            let _ = unmount(&self.path);
        }
        let _ = fs::remove_dir(&self.path);
    }
}

fn can_mount() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    root && Path::new("/dev/fuse").exists()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Transport {
    Classic,
    Uring,
}

#[test]
fn fuse_hello_over_dev_fuse() {
    run_hello(Transport::Classic);
}

#[test]
fn fuse_hello_over_io_uring() {
    run_hello(Transport::Uring);
}

fn run_hello(transport: Transport) {
    if !can_mount() {
        common::cannot_run("fuse_hello needs root and /dev/fuse");
        return;
    }
    if transport == Transport::Uring && !enable_uring() {
        common::cannot_run("fuse_hello over io_uring: this kernel has no FUSE-over-io_uring");
        return;
    }
    let path = std::env::temp_dir().join(format!("vexfs-fuse-hello-{}-{transport:?}", std::process::id()));
    fs::create_dir_all(&path).expect("create mount point");
    let mut guard = MountGuard { path: path.clone(), mounted: false };
    let options = MountOptions { fsname: "vexfs-hello".to_owned(), ..MountOptions::default() };
    let fd = mount(&path, &options).expect("mount");
    guard.mounted = true;

    let fs = Arc::new(HelloFs::default());
    let (done_tx, done_rx) = mpsc::channel();
    let session_fs = Arc::clone(&fs);
    let config = SessionConfig { threads: 2, uring: transport == Transport::Uring, ..SessionConfig::default() };
    std::thread::spawn(move || {
        let _ = done_tx.send(Session::run(fd, session_fs, config));
    });

    check_read_only_file(&path);
    if transport == Transport::Uring {
        // The kernel switches to the rings once every queue has registered an entry.
        let deadline = Instant::now() + Duration::from_secs(10);
        while fs.on_ring.load(Ordering::Relaxed) == 0 && Instant::now() < deadline {
            let _ = fs::metadata(path.join("missing"));
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(fs.on_ring.load(Ordering::Relaxed) > 0, "no request reached a ring queue");
    }
    check_directory(&path);
    check_dropped_reply_is_eio(&path);
    check_panics_are_eio_and_cost_no_thread(&path);
    check_slow_requests_are_interrupted(&path, &fs);
    check_write_read_round_trip(&path, &fs);
    check_attribute_invalidation(&path, &fs);

    unmount(&path).expect("unmount");
    guard.mounted = false;
    let result = done_rx.recv_timeout(SESSION_END_TIMEOUT).expect("Session::run returns after unmount");
    result.expect("session ends cleanly");
    assert!(fs.destroyed.load(Ordering::SeqCst), "destroy runs when the session ends");
    let info = fs.init.lock().clone().expect("init called");
    assert!(info.writeback_cache);
    assert_eq!(info.max_write, 1 << 20);
    assert_eq!(info.uring, transport == Transport::Uring);
    if transport == Transport::Classic {
        assert_eq!(fs.on_ring.load(Ordering::Relaxed), 0);
    }
}

/// Turns on FUSE-over-io_uring in the kernel; false if this kernel does not have it.
fn enable_uring() -> bool {
    let parameter = Path::new("/sys/module/fuse/parameters/enable_uring");
    parameter.exists() && fs::write(parameter, "Y").is_ok() && uring::kernel_enabled()
}

/// Attributes are cached for `TTL`; a change behind the kernel's back shows only after the
/// notifier invalidates them, sent at once or through the notifier thread.
fn check_attribute_invalidation(path: &Path, fs: &HelloFs) {
    let data = path.join("data");
    let blocks = || fs::metadata(&data).expect("stat data").blocks();
    let before = blocks();
    fs.extra_blocks.store(8, Ordering::SeqCst);
    assert_eq!(blocks(), before, "attributes are served from the kernel's cache");
    let notifier = fs.notifier.lock().clone().expect("notifier given at init");
    notifier.inval_attrs(DATA);
    assert_eq!(blocks(), before + 8, "invalidated attributes are fetched again");

    fs.extra_blocks.store(16, Ordering::SeqCst);
    assert_eq!(blocks(), before + 8);
    notifier.inval_attrs_later(DATA);
    let deadline = Instant::now() + Duration::from_secs(10);
    while blocks() != before + 16 {
        assert!(Instant::now() < deadline, "deferred invalidation never arrived");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn check_read_only_file(path: &Path) {
    let hello = path.join("hello");
    assert_eq!(fs::read_to_string(&hello).expect("read hello"), "hello\n");
    let metadata = fs::metadata(&hello).expect("stat hello");
    assert!(metadata.is_file());
    assert_eq!(metadata.len(), 6);
    assert_eq!(metadata.permissions().mode() & 0o7777, 0o444);
    let missing = fs::metadata(path.join("missing")).expect_err("no such file");
    assert_eq!(missing.raw_os_error(), Some(libc::ENOENT));
}

fn check_directory(path: &Path) {
    let mut names: Vec<String> = fs::read_dir(path)
        .expect("read_dir")
        .map(|entry| entry.expect("entry").file_name().into_string().expect("utf-8"))
        .collect();
    names.sort();
    assert_eq!(names, ["data", "hello"]);
    assert!(fs::metadata(path).expect("stat root").is_dir());
}

fn check_dropped_reply_is_eio(path: &Path) {
    let err = fs::metadata(path.join(DROPPED)).expect_err("dropped reply");
    assert_eq!(err.raw_os_error(), Some(libc::EIO));
}

/// More panics than the session has threads of any kind: each is EIO, and the session serves on.
fn check_panics_are_eio_and_cost_no_thread(path: &Path) {
    for _ in 0..12 {
        let err = fs::metadata(path.join(PANICS)).expect_err("a panicking handler");
        assert_eq!(err.raw_os_error(), Some(libc::EIO));
    }
    check_directory(path);
}

/// A slow request runs on the slow pool, and a signal to its caller reaches it as an interrupt:
/// the caller is answered at once, not when the request would have finished.
fn check_slow_requests_are_interrupted(path: &Path, fs: &HelloFs) {
    let started = Instant::now();
    let mut cat = std::process::Command::new("cat").arg(path.join("slow")).spawn().expect("spawning cat");
    let deadline = Instant::now() + Duration::from_secs(5);
    // Give the READ time to reach the handler, then interrupt it.
    std::thread::sleep(Duration::from_millis(300));
    // SAFETY: kill(2) with a child's pid and a signal number has no memory effects.
    unsafe { libc::kill(cat.id() as libc::pid_t, libc::SIGTERM) };
    while cat.try_wait().expect("waiting for cat").is_none() {
        assert!(Instant::now() < deadline, "the interrupted reader is still waiting");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(started.elapsed() < SLOW_WAIT_MAX / 2, "answered only when the wait ran out");
    let seen = Instant::now() + Duration::from_secs(5);
    while fs.interrupted.load(Ordering::Relaxed) == 0 {
        assert!(Instant::now() < seen, "the handler never saw the interrupt");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(fs.slow_elsewhere.load(Ordering::Relaxed), 0, "a slow request ran off the slow pool");
    check_directory(path);
}

fn check_write_read_round_trip(path: &Path, fs: &HelloFs) {
    let pattern: Vec<u8> = (0..3usize << 20).map(|i| (i * 7 % 251) as u8).collect();
    let data = path.join("data");
    let mut file = OpenOptions::new().write(true).truncate(true).open(&data).expect("open data");
    file.write_all(&pattern).expect("write 3 MiB");
    file.sync_all().expect("fsync");
    drop(file);
    assert!(*fs.data.lock() == pattern, "the handler holds what was written");
    assert!(fs.writes.load(Ordering::Relaxed) > 0);
    assert_eq!(fs.writes_unaligned.load(Ordering::Relaxed), 0, "WRITE data is page-aligned");
    assert_eq!(fs::metadata(&data).expect("stat data").len(), 3 << 20);

    // O_DIRECT makes the kernel send READs instead of serving the page cache it just filled.
    let mut file = OpenOptions::new().read(true).custom_flags(libc::O_DIRECT).open(&data).expect("open O_DIRECT");
    let mut back = Vec::with_capacity(pattern.len());
    file.read_to_end(&mut back).expect("read back");
    assert!(back == pattern, "read back {} bytes, not the pattern", back.len());
}
