//! Encoding of replies to kernel FUSE requests.
//!
//! A reply is a `fuse_out_header` followed by zero or more body parts, handed to the transport as
//! one vectored send: `iov[0]` is always exactly the 16-byte header, and the remaining slices
//! concatenate to the body. Invariants:
//! - A [`Reply`] answers one request exactly once. Its methods consume it; dropping it unanswered
//!   sends EIO and logs an error, so a handler bug can fail a system call but never leave the
//!   kernel (and the calling process) waiting forever.
//! - Requests that take no reply (FORGET, BATCH_FORGET, INTERRUPT) get a `Reply` that sends
//!   nothing, whatever the handler does with it.
//! - Bodies are sent from the caller's buffers; nothing is copied but the fixed-size structs.

use std::ffi::OsStr;
use std::io::{self, IoSlice};
use std::mem::size_of;
use std::os::unix::ffi::OsStrExt;
use std::time::Duration;

use zerocopy::IntoBytes;

use super::abi;
use super::request::{Request, Timestamp};
use super::transport::ReplyChannel;
use crate::service::Interrupt;

/// The attributes of an inode as the kernel caches them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FileAttr {
    pub ino: u64,
    pub size: u64,
    /// Allocated space in 512-byte units, as `st_blocks`.
    pub blocks: u64,
    pub atime: Timestamp,
    pub mtime: Timestamp,
    pub ctime: Timestamp,
    /// The full `st_mode`: file type bits (`S_IFMT`) and permission bits.
    pub mode: u32,
    pub nlink: u32,
    pub uid: u32,
    pub gid: u32,
    pub rdev: u32,
    /// Preferred I/O size, as `st_blksize`.
    pub blksize: u32,
}

impl FileAttr {
    fn to_abi(self) -> abi::fuse_attr {
        abi::fuse_attr {
            ino: self.ino,
            size: self.size,
            blocks: self.blocks,
            // The kernel reads these u64 fields back as signed `time64_t`.
            atime: self.atime.secs as u64,
            mtime: self.mtime.secs as u64,
            ctime: self.ctime.secs as u64,
            atimensec: self.atime.nsecs,
            mtimensec: self.mtime.nsecs,
            ctimensec: self.ctime.nsecs,
            mode: self.mode,
            nlink: self.nlink,
            uid: self.uid,
            gid: self.gid,
            rdev: self.rdev,
            blksize: self.blksize,
            flags: 0,
        }
    }
}

/// The type of a directory entry. The values are the `DT_*` constants, which equal the `S_IFMT`
/// bits of a mode shifted right by 12.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum FileType {
    NamedPipe = 1,
    CharDevice = 2,
    Directory = 4,
    BlockDevice = 6,
    RegularFile = 8,
    Symlink = 10,
    Socket = 12,
}

impl FileType {
    /// The type encoded in an `st_mode`, or `None` if its type bits name no file type.
    pub fn from_mode(mode: u32) -> Option<FileType> {
        match (mode & libc::S_IFMT) >> 12 {
            1 => Some(FileType::NamedPipe),
            2 => Some(FileType::CharDevice),
            4 => Some(FileType::Directory),
            6 => Some(FileType::BlockDevice),
            8 => Some(FileType::RegularFile),
            10 => Some(FileType::Symlink),
            12 => Some(FileType::Socket),
            _ => None,
        }
    }
}

/// File system statistics for STATFS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StatFs {
    /// Total data blocks, in `frsize` units.
    pub blocks: u64,
    pub bfree: u64,
    /// Free blocks available to unprivileged users.
    pub bavail: u64,
    pub files: u64,
    pub ffree: u64,
    pub bsize: u32,
    /// Longest file name.
    pub namelen: u32,
    pub frsize: u32,
}

/// `IOV_MAX`: the most slices one `writev(2)` accepts, the header included.
const IOV_MAX: usize = 1024;
/// Replies with this many body parts or fewer are sent without allocating.
const BODY_PARTS_INLINE_MAX: usize = 3;

/// The answer to one request, bound to its `unique` and to the transport it arrived on (replies on
/// `/dev/fuse` must be written to the fd the request was read from).
pub struct Reply<'a> {
    unique: u64,
    op_name: &'static str,
    transport: &'a dyn ReplyChannel,
    /// False for FORGET, BATCH_FORGET and INTERRUPT: the kernel waits for no answer.
    expects_reply: bool,
    answered: bool,
    /// Set when the kernel sends INTERRUPT for this request (registered for slow requests only).
    interrupt: Interrupt,
}

impl<'a> Reply<'a> {
    /// The reply to `request`, to be sent through `transport`.
    pub fn new(request: &Request<'_>, transport: &'a dyn ReplyChannel) -> Reply<'a> {
        Reply {
            unique: request.unique,
            op_name: request.op.name(),
            transport,
            expects_reply: request.op.expects_reply(),
            answered: false,
            interrupt: Interrupt::none(),
        }
    }

    /// This reply with `interrupt`, which the session sets when the kernel interrupts the request.
    pub(crate) fn with_interrupt(mut self, interrupt: Interrupt) -> Reply<'a> {
        self.interrupt = interrupt;
        self
    }

    /// Whether the caller still waits: long waits look at it and answer EINTR when it is set.
    pub fn interrupt(&self) -> Interrupt {
        self.interrupt.clone()
    }

    /// A reply to a request that could not be decoded, so only its `unique` is known.
    pub(crate) fn for_unique(unique: u64, transport: &'a dyn ReplyChannel) -> Reply<'a> {
        Reply {
            unique,
            op_name: "MALFORMED",
            transport,
            expects_reply: true,
            answered: false,
            interrupt: Interrupt::none(),
        }
    }

    pub fn unique(&self) -> u64 {
        self.unique
    }

    /// Fails the request with `errno` (a positive `E*` value; the kernel accepts 1..512).
    pub fn error(mut self, errno: i32) {
        assert!(errno > 0 && errno < 512, "errno {errno} out of the kernel's range 1..512");
        self.send(-errno, &[]);
    }

    /// Succeeds with an empty body (UNLINK, RMDIR, RENAME, SETXATTR, FSYNC, RELEASE, ...).
    pub fn ok(mut self) {
        self.send(0, &[]);
    }

    /// Answers LOOKUP, MKNOD, MKDIR, SYMLINK and LINK. Each such reply adds one to the kernel's
    /// lookup count of `attr.ino`, which FORGET later gives back.
    pub fn entry(mut self, attr: &FileAttr, generation: u64, entry_ttl: Duration, attr_ttl: Duration) {
        let out = entry_out(attr, generation, entry_ttl, attr_ttl);
        self.send(0, &[out.as_bytes()]);
    }

    /// Answers GETATTR and SETATTR.
    pub fn attr(mut self, attr: &FileAttr, ttl: Duration) {
        let (attr_valid, attr_valid_nsec) = ttl_parts(ttl);
        let out = abi::fuse_attr_out { attr_valid, attr_valid_nsec, dummy: 0, attr: attr.to_abi() };
        self.send(0, &[out.as_bytes()]);
    }

    /// Answers READ and READLINK. For READ, `data` may be shorter than asked (end of file) but
    /// never longer.
    pub fn data(mut self, data: &[u8]) {
        self.send(0, &[data]);
    }

    /// Like [`Reply::data`], from several buffers in one `writev(2)`, without copying them.
    pub fn data_vectored(mut self, parts: &[&[u8]]) {
        self.send(0, parts);
    }

    /// Answers WRITE and COPY_FILE_RANGE with the number of bytes written.
    pub fn write(mut self, size: u32) {
        let out = abi::fuse_write_out { size, padding: 0 };
        self.send(0, &[out.as_bytes()]);
    }

    /// Answers OPEN and OPENDIR; `open_flags` is a set of `FOPEN_*` bits.
    pub fn open(mut self, fh: u64, open_flags: u32) {
        let out = abi::fuse_open_out { fh, open_flags, backing_id: 0 };
        self.send(0, &[out.as_bytes()]);
    }

    /// Answers CREATE and TMPFILE: the new entry and its open handle. Like [`Reply::entry`], it
    /// adds one to the lookup count of `attr.ino`.
    pub fn create(
        mut self,
        attr: &FileAttr,
        generation: u64,
        entry_ttl: Duration,
        attr_ttl: Duration,
        fh: u64,
        open_flags: u32,
    ) {
        let entry = entry_out(attr, generation, entry_ttl, attr_ttl);
        let open = abi::fuse_open_out { fh, open_flags, backing_id: 0 };
        self.send(0, &[entry.as_bytes(), open.as_bytes()]);
    }

    pub fn statfs(mut self, st: &StatFs) {
        let out = abi::fuse_statfs_out {
            st: abi::fuse_kstatfs {
                blocks: st.blocks,
                bfree: st.bfree,
                bavail: st.bavail,
                files: st.files,
                ffree: st.ffree,
                bsize: st.bsize,
                namelen: st.namelen,
                frsize: st.frsize,
                padding: 0,
                spare: [0; 6],
            },
        };
        self.send(0, &[out.as_bytes()]);
    }

    /// Answers GETXATTR and LISTXATTR asked with `size` 0: the length the value or list needs.
    pub fn xattr_size(mut self, size: u32) {
        let out = abi::fuse_getxattr_out { size, padding: 0 };
        self.send(0, &[out.as_bytes()]);
    }

    /// Answers GETXATTR and LISTXATTR asked with a nonzero `size` (at most that many bytes;
    /// ERANGE when the value does not fit).
    pub fn xattr_data(mut self, data: &[u8]) {
        self.send(0, &[data]);
    }

    pub fn lseek(mut self, offset: u64) {
        let out = abi::fuse_lseek_out { offset };
        self.send(0, &[out.as_bytes()]);
    }

    /// Answers a restricted IOCTL: `result` is the ioctl's return value and `data` (at most the
    /// request's `out_size` bytes) is copied out to the caller's argument.
    pub fn ioctl(mut self, result: i32, data: &[u8]) {
        let out = abi::fuse_ioctl_out { result, flags: 0, in_iovs: 0, out_iovs: 0 };
        self.send(0, &[out.as_bytes(), data]);
    }

    pub fn poll(mut self, revents: u32) {
        let out = abi::fuse_poll_out { revents, padding: 0 };
        self.send(0, &[out.as_bytes()]);
    }

    pub fn bmap(mut self, block: u64) {
        let out = abi::fuse_bmap_out { block };
        self.send(0, &[out.as_bytes()]);
    }

    /// Answers READDIR or READDIRPLUS (whichever the buffer was filled for).
    pub fn dir(mut self, buf: &DirBuf) {
        self.send(0, &[buf.as_bytes()]);
    }

    pub(crate) fn init(mut self, out: &abi::fuse_init_out) {
        self.send(0, &[out.as_bytes()]);
    }

    /// Sends the header and `body` in one vectored write; an error is only logged, because the
    /// usual cause (the request was interrupted or the file system unmounted) needs no action.
    fn send(&mut self, error: i32, body: &[&[u8]]) {
        assert!(!self.answered, "request {} answered twice", self.unique);
        self.answered = true;
        if !self.expects_reply {
            tracing::debug!(unique = self.unique, op = self.op_name, "no-reply request answered");
            return;
        }
        let header = out_header(self.unique, error, body);
        if let Err(err) = send_vectored(self.transport, &header, body) {
            // ENOENT: the kernel no longer waits for this request (it was interrupted).
            if err.raw_os_error() == Some(libc::ENOENT) {
                tracing::debug!(unique = self.unique, op = self.op_name, "reply to a withdrawn request");
            } else {
                tracing::warn!(unique = self.unique, op = self.op_name, %err, "sending reply failed");
            }
        }
    }
}

/// The `fuse_out_header` of a message with `body`: a reply (`unique` of its request, `error` 0
/// or a negative errno) or a notification (`unique` 0, `error` the notification code).
pub(super) fn out_header(unique: u64, error: i32, body: &[&[u8]]) -> abi::fuse_out_header {
    assert!(body.len() < IOV_MAX, "reply with {} parts exceeds IOV_MAX", body.len());
    let body_len: usize = body.iter().map(|part| part.len()).sum();
    let len = size_of::<abi::fuse_out_header>() + body_len;
    let len = u32::try_from(len).expect("reply length exceeds u32");
    abi::fuse_out_header { len, error, unique }
}

/// `header` then `body` as one iovec array; small replies build it on the stack.
pub(super) fn send_vectored(
    transport: &dyn ReplyChannel,
    header: &abi::fuse_out_header,
    body: &[&[u8]],
) -> io::Result<()> {
    if body.len() > BODY_PARTS_INLINE_MAX {
        let iov: Vec<IoSlice<'_>> =
            std::iter::once(header.as_bytes()).chain(body.iter().copied()).map(IoSlice::new).collect();
        return transport.send(&iov);
    }
    let mut iov = [IoSlice::new(&[]); BODY_PARTS_INLINE_MAX + 1];
    iov[0] = IoSlice::new(header.as_bytes());
    for (slot, part) in iov[1..].iter_mut().zip(body) {
        *slot = IoSlice::new(part);
    }
    transport.send(&iov[..=body.len()])
}

impl Drop for Reply<'_> {
    fn drop(&mut self) {
        if self.answered || !self.expects_reply {
            return;
        }
        tracing::error!(unique = self.unique, op = self.op_name, "request dropped without a reply; answering EIO");
        self.send(-libc::EIO, &[]);
    }
}

fn entry_out(attr: &FileAttr, generation: u64, entry_ttl: Duration, attr_ttl: Duration) -> abi::fuse_entry_out {
    let (entry_valid, entry_valid_nsec) = ttl_parts(entry_ttl);
    let (attr_valid, attr_valid_nsec) = ttl_parts(attr_ttl);
    abi::fuse_entry_out {
        nodeid: attr.ino,
        generation,
        entry_valid,
        attr_valid,
        entry_valid_nsec,
        attr_valid_nsec,
        attr: attr.to_abi(),
    }
}

fn ttl_parts(ttl: Duration) -> (u64, u32) {
    (ttl.as_secs(), ttl.subsec_nanos())
}

/// The kernel rejects directory entries with longer names (`FUSE_NAME_MAX`).
const DIRENT_NAME_MAX: usize = 1024;

/// Builds a READDIR or READDIRPLUS payload of at most `size_max` bytes (the request's `size`).
///
/// Each record is a `fuse_dirent` (or `fuse_direntplus`), the name, and zero padding to a
/// multiple of 8 bytes (`FUSE_DIRENT_ALIGN`). Worked example: the name "hello" in READDIR takes
/// 24 + 5 = 29 bytes, padded to 32; in READDIRPLUS 152 + 5 = 157, padded to 160.
#[derive(Debug, Clone)]
pub struct DirBuf {
    bytes: Vec<u8>,
    size_max: usize,
    /// Set by the first push: READDIR and READDIRPLUS records cannot be mixed.
    plus: Option<bool>,
}

impl DirBuf {
    pub fn new(size_max: u32) -> DirBuf {
        DirBuf { bytes: Vec::new(), size_max: size_max as usize, plus: None }
    }

    /// Appends a READDIR record; returns false, leaving the buffer unchanged, when it does not
    /// fit. `next_offset` is the offset the kernel passes back to continue after this entry.
    pub fn push(&mut self, ino: u64, next_offset: u64, kind: FileType, name: &OsStr) -> bool {
        self.set_plus(false);
        let name = checked_name(name);
        let dirent = abi::fuse_dirent { ino, off: next_offset, namelen: name.len() as u32, r#type: kind as u32 };
        self.append(&[dirent.as_bytes(), name])
    }

    /// Appends a READDIRPLUS record: the entry as LOOKUP would return it, and the dirent. The
    /// kernel counts each record with a nonzero `attr.ino` as a lookup (to be given back by
    /// FORGET), except for "." and "..", which it skips.
    pub fn push_plus(
        &mut self,
        attr: &FileAttr,
        generation: u64,
        entry_ttl: Duration,
        attr_ttl: Duration,
        next_offset: u64,
        name: &OsStr,
    ) -> bool {
        self.set_plus(true);
        let name = checked_name(name);
        let kind = (attr.mode & libc::S_IFMT) >> 12;
        let plus = abi::fuse_direntplus {
            entry_out: entry_out(attr, generation, entry_ttl, attr_ttl),
            dirent: abi::fuse_dirent { ino: attr.ino, off: next_offset, namelen: name.len() as u32, r#type: kind },
        };
        self.append(&[plus.as_bytes(), name])
    }

    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    fn set_plus(&mut self, plus: bool) {
        let mode = *self.plus.get_or_insert(plus);
        assert_eq!(mode, plus, "READDIR and READDIRPLUS records mixed in one DirBuf");
    }

    fn append(&mut self, parts: &[&[u8]; 2]) -> bool {
        let record_len = abi::fuse_dirent_align(parts[0].len() + parts[1].len());
        if self.bytes.len() + record_len > self.size_max {
            return false;
        }
        let end = self.bytes.len() + record_len;
        self.bytes.extend_from_slice(parts[0]);
        self.bytes.extend_from_slice(parts[1]);
        self.bytes.resize(end, 0);
        true
    }
}

/// The kernel fails the whole READDIR with EIO on an empty name, one containing '/' or NUL, or
/// one longer than [`DIRENT_NAME_MAX`]; such a name is a bug upstream of this layer.
fn checked_name(name: &OsStr) -> &[u8] {
    let name = name.as_bytes();
    assert!(!name.is_empty(), "empty directory entry name");
    assert!(name.len() <= DIRENT_NAME_MAX, "directory entry name of {} bytes", name.len());
    assert!(!name.contains(&b'/') && !name.contains(&0), "directory entry name with '/' or NUL");
    name
}

#[cfg(all(test, target_endian = "little"))]
mod tests {
    //! Goal: each reply has the kernel's byte layout, and every request gets exactly one answer
    //! (or none, for the no-reply opcodes). Method: a capturing transport records each send as
    //! the concatenated bytes; expected bytes are written out field by field.

    use parking_lot::Mutex;
    use zerocopy::FromBytes;

    use super::*;
    use crate::fuse::request::Operation;

    #[derive(Default)]
    struct Capture {
        sent: Mutex<Vec<(usize, Vec<u8>)>>,
    }

    impl ReplyChannel for Capture {
        fn send(&self, iov: &[IoSlice<'_>]) -> io::Result<()> {
            assert_eq!(iov[0].len(), size_of::<abi::fuse_out_header>(), "iov[0] is the header");
            let bytes = iov.iter().flat_map(|part| part.iter().copied()).collect();
            self.sent.lock().push((iov.len(), bytes));
            Ok(())
        }
    }

    impl Capture {
        fn only(&self) -> Vec<u8> {
            let sent = self.sent.lock();
            assert_eq!(sent.len(), 1, "exactly one reply");
            sent[0].1.clone()
        }
    }

    fn request(op: Operation<'_>) -> Request<'_> {
        Request { unique: 0x1122_3344_5566_7788, nodeid: 1, uid: 0, gid: 0, pid: 0, op }
    }

    fn sample_attr() -> FileAttr {
        FileAttr {
            ino: 2,
            size: 6,
            blocks: 1,
            atime: Timestamp { secs: 10, nsecs: 1 },
            mtime: Timestamp { secs: -20, nsecs: 2 },
            ctime: Timestamp { secs: 30, nsecs: 3 },
            mode: libc::S_IFREG | 0o444,
            nlink: 1,
            uid: 1000,
            gid: 100,
            rdev: 0,
            blksize: 4096,
        }
    }

    #[test]
    fn error_reply_bytes() {
        let capture = Capture::default();
        Reply::new(&request(Operation::Statfs), &capture).error(libc::ENOENT);
        let expected: [u8; 16] = [
            0x10, 0x00, 0x00, 0x00, // len = 16
            0xfe, 0xff, 0xff, 0xff, // error = -ENOENT (-2)
            0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11, // unique
        ];
        assert_eq!(capture.only(), expected);
    }

    #[test]
    fn write_reply_bytes() {
        let capture = Capture::default();
        Reply::new(&request(Operation::Statfs), &capture).write(4096);
        let expected: [u8; 24] = [
            0x18, 0x00, 0x00, 0x00, // len = 24
            0x00, 0x00, 0x00, 0x00, // error = 0
            0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11, // unique
            0x00, 0x10, 0x00, 0x00, // fuse_write_out.size = 4096
            0x00, 0x00, 0x00, 0x00, // padding
        ];
        assert_eq!(capture.only(), expected);
    }

    #[test]
    fn entry_reply_layout() {
        let capture = Capture::default();
        let ttl = Duration::new(1, 500_000_000);
        Reply::new(&request(Operation::Statfs), &capture).entry(&sample_attr(), 7, ttl, Duration::ZERO);
        let bytes = capture.only();
        assert_eq!(bytes.len(), 16 + 128);
        let (header, body) = abi::fuse_out_header::read_from_prefix(&bytes).expect("header");
        assert_eq!(header.len, 144);
        assert_eq!(header.error, 0);
        let out = abi::fuse_entry_out::read_from_bytes(body).expect("entry");
        assert_eq!((out.nodeid, out.generation), (2, 7));
        assert_eq!((out.entry_valid, out.entry_valid_nsec), (1, 500_000_000));
        assert_eq!((out.attr_valid, out.attr_valid_nsec), (0, 0));
        assert_eq!(out.attr.mtime as i64, -20);
        assert_eq!(out.attr.mode, libc::S_IFREG | 0o444);
        assert_eq!(out.attr.blksize, 4096);
    }

    #[test]
    fn create_reply_is_entry_then_open() {
        let capture = Capture::default();
        let reply = Reply::new(&request(Operation::Statfs), &capture);
        reply.create(&sample_attr(), 0, Duration::ZERO, Duration::ZERO, 99, abi::FOPEN_KEEP_CACHE);
        let bytes = capture.only();
        assert_eq!(bytes.len(), 16 + 128 + 16);
        let open = abi::fuse_open_out::read_from_bytes(&bytes[144..]).expect("open_out");
        assert_eq!((open.fh, open.open_flags), (99, abi::FOPEN_KEEP_CACHE));
    }

    #[test]
    fn data_vectored_concatenates_parts() {
        let capture = Capture::default();
        let parts: [&[u8]; 5] = [b"a", b"bc", b"", b"def", b"g"];
        Reply::new(&request(Operation::Statfs), &capture).data_vectored(&parts);
        let sent = capture.sent.lock();
        assert_eq!(sent[0].0, 6, "header plus five parts, without coalescing");
        assert_eq!(&sent[0].1[16..], b"abcdefg");
        assert_eq!(sent[0].1[0], 23);
    }

    #[test]
    fn dropped_reply_answers_eio() {
        let capture = Capture::default();
        drop(Reply::new(&request(Operation::Readlink), &capture));
        let bytes = capture.only();
        let (header, _) = abi::fuse_out_header::read_from_prefix(&bytes).expect("header");
        assert_eq!(header.error, -libc::EIO);
        assert_eq!(header.unique, 0x1122_3344_5566_7788);
    }

    #[test]
    fn no_reply_requests_send_nothing() {
        let capture = Capture::default();
        drop(Reply::new(&request(Operation::Forget { nlookup: 1 }), &capture));
        Reply::new(&request(Operation::Interrupt { unique: 3 }), &capture).ok();
        assert!(capture.sent.lock().is_empty());
    }

    #[test]
    fn dir_records_are_aligned() {
        let mut buf = DirBuf::new(64);
        assert!(buf.push(2, 1, FileType::RegularFile, OsStr::new("hello")));
        assert_eq!(buf.len(), 32, "24 + 5 rounded up to 8");
        assert!(buf.push(3, 2, FileType::Directory, OsStr::new("abcdefgh")));
        assert_eq!(buf.len(), 64, "24 + 8 needs no padding");
        assert!(!buf.push(4, 3, FileType::Symlink, OsStr::new("x")), "buffer full");
        assert_eq!(buf.len(), 64);
        let expected_first: [u8; 32] = [
            0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // ino = 2
            0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // off = 1
            0x05, 0x00, 0x00, 0x00, // namelen = 5
            0x08, 0x00, 0x00, 0x00, // type = DT_REG
            b'h', b'e', b'l', b'l', b'o', 0x00, 0x00, 0x00, // name, zero padding
        ];
        assert_eq!(&buf.as_bytes()[..32], expected_first);
    }

    #[test]
    fn dirplus_record_layout() {
        let mut buf = DirBuf::new(4096);
        assert!(buf.push_plus(
            &sample_attr(),
            5,
            Duration::from_secs(1),
            Duration::from_secs(2),
            9,
            OsStr::new("hello")
        ));
        assert_eq!(buf.len(), 160, "152 + 5 rounded up to 8");
        let plus = abi::fuse_direntplus::read_from_prefix(buf.as_bytes()).expect("direntplus").0;
        assert_eq!((plus.entry_out.nodeid, plus.entry_out.generation), (2, 5));
        assert_eq!((plus.entry_out.entry_valid, plus.entry_out.attr_valid), (1, 2));
        assert_eq!((plus.dirent.ino, plus.dirent.off, plus.dirent.namelen), (2, 9, 5));
        assert_eq!(plus.dirent.r#type, FileType::RegularFile as u32);
        assert_eq!(&buf.as_bytes()[152..160], b"hello\0\0\0");
    }

    #[test]
    fn file_type_from_mode() {
        assert_eq!(FileType::from_mode(libc::S_IFDIR | 0o755), Some(FileType::Directory));
        assert_eq!(FileType::from_mode(libc::S_IFLNK | 0o777), Some(FileType::Symlink));
        assert_eq!(FileType::from_mode(0o644), None);
    }
}
