//! Decoding of kernel FUSE requests into [`Request`] values.
//!
//! A request is a `fuse_in_header`, an opcode-specific fixed argument struct, then variable parts
//! (NUL-terminated names, WRITE data, xattr values) and, when the kernel adds any, extensions whose
//! length the header gives in 8-byte units. Invariants:
//! - Parsing never panics and never reads out of bounds: every malformed input (truncated body,
//!   missing NUL, size fields that disagree with the bytes present) is a [`RequestError`].
//! - Decoded values borrow names and payloads from the input; nothing is copied but the fixed
//!   argument structs, which are read with `read_from_prefix` so any alignment is accepted.
//! - The bytes may arrive in one piece (`/dev/fuse`: [`Request::parse`]) or as header, argument
//!   struct and payload in separate buffers (FUSE-over-io_uring: [`Request::parse_split`]); both
//!   decode through the same per-opcode code.

use std::ffi::OsStr;
use std::mem::size_of;
use std::os::unix::ffi::OsStrExt;

use zerocopy::{FromBytes, IntoBytes};

use super::abi;

/// One decoded kernel request.
#[derive(Debug, PartialEq, Eq)]
pub struct Request<'a> {
    /// The kernel's ID for this request; the reply must carry it.
    pub unique: u64,
    /// The inode the operation applies to (for entry operations, the parent directory).
    pub nodeid: u64,
    /// The caller's file system uid and gid. The kernel sends no supplementary groups.
    pub uid: u32,
    pub gid: u32,
    /// The calling thread's ID in the mounting PID namespace (0 if it is not visible there).
    pub pid: u32,
    pub op: Operation<'a>,
}

/// A point in time as the kernel encodes it: seconds since the epoch (negative before 1970) and
/// nanoseconds within the second.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Timestamp {
    pub secs: i64,
    pub nsecs: u32,
}

/// A SETATTR time: either a given instant or "the file system's current time".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeOrNow {
    At(Timestamp),
    Now,
}

/// SETATTR with one `Option` per `FATTR_*` bit: `None` means "leave unchanged".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SetAttr {
    /// The full mode; the kernel changes only the permission bits and passes the file type
    /// bits through unchanged.
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub size: Option<u64>,
    pub atime: Option<TimeOrNow>,
    pub mtime: Option<TimeOrNow>,
    pub ctime: Option<Timestamp>,
    /// Set when the change comes through an open file (ftruncate, futimens).
    pub fh: Option<u64>,
    pub lock_owner: Option<u64>,
    /// FATTR_KILL_SUIDGID: with HANDLE_KILLPRIV_V2 the file system must clear the set-user-ID
    /// bit and the set-group-ID bit (when group-executable) as part of this change.
    pub kill_suidgid: bool,
}

/// A POSIX or BSD lock request (GETLK, SETLK, SETLKW).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockRequest {
    pub fh: u64,
    pub owner: u64,
    pub start: u64,
    pub end: u64,
    /// `F_RDLCK`, `F_WRLCK` or `F_UNLCK`.
    pub lock_type: u32,
    pub pid: u32,
    /// FUSE_LK_FLOCK: a `flock(2)` lock rather than a POSIX record lock.
    pub flock: bool,
}

/// One entry of a BATCH_FORGET.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ForgetOne {
    pub nodeid: u64,
    pub nlookup: u64,
}

/// The entries of a BATCH_FORGET, decoded lazily from the request bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Forgets<'a> {
    /// Exactly `len() * 16` bytes of `fuse_forget_one` records.
    bytes: &'a [u8],
}

impl<'a> Forgets<'a> {
    pub fn len(&self) -> usize {
        self.bytes.len() / size_of::<abi::fuse_forget_one>()
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = ForgetOne> + 'a {
        self.bytes
            .chunks_exact(size_of::<abi::fuse_forget_one>())
            .filter_map(|chunk| abi::fuse_forget_one::read_from_bytes(chunk).ok())
            .map(|one| ForgetOne { nodeid: one.nodeid, nlookup: one.nlookup })
    }
}

/// The operations we decode, one variant per opcode, with Rust names for the kernel's fields.
/// `nodeid` in [`Request`] is the inode (or parent directory) each applies to.
#[derive(Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Operation<'a> {
    /// `flags` joins the kernel's `flags` and, with FUSE_INIT_EXT, `flags2` into one 64-bit set.
    Init {
        major: u32,
        minor: u32,
        max_readahead: u32,
        flags: u64,
    },
    Destroy,
    Lookup {
        name: &'a OsStr,
    },
    /// No reply.
    Forget {
        nlookup: u64,
    },
    /// No reply.
    BatchForget {
        forgets: Forgets<'a>,
    },
    /// `fh` is set when the kernel asks about an open file (fstat).
    Getattr {
        fh: Option<u64>,
    },
    Setattr(SetAttr),
    Readlink,
    Symlink {
        name: &'a OsStr,
        target: &'a OsStr,
    },
    /// `mode` includes the file type bits and already has the caller's umask applied (the
    /// kernel applies it because DONT_MASK is not negotiated); `umask` is for information.
    Mknod {
        name: &'a OsStr,
        mode: u32,
        rdev: u32,
        umask: u32,
    },
    /// `mode` holds permission bits with the umask already applied.
    Mkdir {
        name: &'a OsStr,
        mode: u32,
        umask: u32,
    },
    Unlink {
        name: &'a OsStr,
    },
    Rmdir {
        name: &'a OsStr,
    },
    Rename {
        name: &'a OsStr,
        newdir: u64,
        newname: &'a OsStr,
    },
    /// `flags` holds `RENAME_NOREPLACE`, `RENAME_EXCHANGE` or `RENAME_WHITEOUT`.
    Rename2 {
        name: &'a OsStr,
        newdir: u64,
        newname: &'a OsStr,
        flags: u32,
    },
    /// Makes `name` in directory `nodeid` a new link to inode `ino`.
    Link {
        ino: u64,
        name: &'a OsStr,
    },
    /// `flags` are the `open(2)` flags (without O_CREAT, O_EXCL and O_NOCTTY). With
    /// ATOMIC_O_TRUNC, O_TRUNC arrives here instead of as a SETATTR.
    Open {
        flags: u32,
        kill_suidgid: bool,
    },
    /// `flags` are the file's open flags.
    Read {
        fh: u64,
        offset: u64,
        size: u32,
        flags: u32,
        lock_owner: Option<u64>,
    },
    /// With the writeback cache, `cached` writes come from the page cache and `fh` is any handle
    /// of the inode that allows writing, not necessarily the writer's.
    Write {
        fh: u64,
        offset: u64,
        data: &'a [u8],
        flags: u32,
        cached: bool,
        kill_suidgid: bool,
        lock_owner: Option<u64>,
    },
    Statfs,
    Release {
        fh: u64,
        flags: u32,
        flush: bool,
        flock_release: bool,
        lock_owner: u64,
    },
    Fsync {
        fh: u64,
        datasync: bool,
    },
    Setxattr {
        name: &'a OsStr,
        value: &'a [u8],
        flags: u32,
        acl_kill_sgid: bool,
    },
    /// `size` 0 asks for the value's length only.
    Getxattr {
        name: &'a OsStr,
        size: u32,
    },
    /// `size` 0 asks for the list's length only.
    Listxattr {
        size: u32,
    },
    Removexattr {
        name: &'a OsStr,
    },
    Flush {
        fh: u64,
        lock_owner: u64,
    },
    Opendir {
        flags: u32,
    },
    Readdir {
        fh: u64,
        offset: u64,
        size: u32,
    },
    Readdirplus {
        fh: u64,
        offset: u64,
        size: u32,
    },
    Releasedir {
        fh: u64,
        flags: u32,
    },
    Fsyncdir {
        fh: u64,
        datasync: bool,
    },
    Access {
        mask: u32,
    },
    /// Like MKNOD of a regular file followed by OPEN: `mode` includes S_IFREG and the applied
    /// umask; `flags` are the `open(2)` flags.
    Create {
        name: &'a OsStr,
        flags: u32,
        mode: u32,
        umask: u32,
        kill_suidgid: bool,
    },
    /// No reply.
    Interrupt {
        unique: u64,
    },
    /// A restricted ioctl: `data` holds the `in_size` bytes the kernel copied in, and the reply
    /// may carry up to `out_size` bytes.
    Ioctl {
        fh: u64,
        flags: u32,
        cmd: u32,
        arg: u64,
        in_size: u32,
        out_size: u32,
        data: &'a [u8],
    },
    /// `mode` is a set of `FALLOC_FL_*` bits.
    Fallocate {
        fh: u64,
        offset: u64,
        length: u64,
        mode: u32,
    },
    /// Only SEEK_DATA and SEEK_HOLE reach the file system; the kernel handles the others.
    Lseek {
        fh: u64,
        offset: u64,
        whence: u32,
    },
    CopyFileRange {
        fh_in: u64,
        offset_in: u64,
        nodeid_out: u64,
        fh_out: u64,
        offset_out: u64,
        len: u64,
        flags: u64,
    },
    /// O_TMPFILE in directory `nodeid`; answered like CREATE.
    Tmpfile {
        flags: u32,
        mode: u32,
        umask: u32,
    },
    Poll {
        fh: u64,
        kh: u64,
        flags: u32,
        events: u32,
    },
    /// Lock requests arrive only if POSIX_LOCKS or FLOCK_LOCKS is negotiated, which we do not:
    /// they are decoded for completeness, for a handler to answer ENOSYS.
    Getlk(LockRequest),
    Setlk(LockRequest),
    Setlkw(LockRequest),
    Bmap {
        block: u64,
        blocksize: u32,
    },
    /// An opcode we do not decode; answer ENOSYS so the kernel stops sending it where it can.
    Unknown {
        opcode: u32,
    },
}

impl Operation<'_> {
    /// False for the operations the kernel expects no reply to.
    pub fn expects_reply(&self) -> bool {
        !matches!(
            self,
            Operation::Forget { .. }
                | Operation::BatchForget { .. }
                | Operation::Interrupt { .. }
                | Operation::Unknown { opcode: abi::FUSE_NOTIFY_REPLY }
        )
    }

    /// The kernel's opcode name, for logs.
    pub fn name(&self) -> &'static str {
        match self {
            Operation::Init { .. } => "INIT",
            Operation::Destroy => "DESTROY",
            Operation::Lookup { .. } => "LOOKUP",
            Operation::Forget { .. } => "FORGET",
            Operation::BatchForget { .. } => "BATCH_FORGET",
            Operation::Getattr { .. } => "GETATTR",
            Operation::Setattr(_) => "SETATTR",
            Operation::Readlink => "READLINK",
            Operation::Symlink { .. } => "SYMLINK",
            Operation::Mknod { .. } => "MKNOD",
            Operation::Mkdir { .. } => "MKDIR",
            Operation::Unlink { .. } => "UNLINK",
            Operation::Rmdir { .. } => "RMDIR",
            Operation::Rename { .. } => "RENAME",
            Operation::Rename2 { .. } => "RENAME2",
            Operation::Link { .. } => "LINK",
            Operation::Open { .. } => "OPEN",
            Operation::Read { .. } => "READ",
            Operation::Write { .. } => "WRITE",
            Operation::Statfs => "STATFS",
            Operation::Release { .. } => "RELEASE",
            Operation::Fsync { .. } => "FSYNC",
            Operation::Setxattr { .. } => "SETXATTR",
            Operation::Getxattr { .. } => "GETXATTR",
            Operation::Listxattr { .. } => "LISTXATTR",
            Operation::Removexattr { .. } => "REMOVEXATTR",
            Operation::Flush { .. } => "FLUSH",
            Operation::Opendir { .. } => "OPENDIR",
            Operation::Readdir { .. } => "READDIR",
            Operation::Readdirplus { .. } => "READDIRPLUS",
            Operation::Releasedir { .. } => "RELEASEDIR",
            Operation::Fsyncdir { .. } => "FSYNCDIR",
            Operation::Access { .. } => "ACCESS",
            Operation::Create { .. } => "CREATE",
            Operation::Interrupt { .. } => "INTERRUPT",
            Operation::Ioctl { .. } => "IOCTL",
            Operation::Fallocate { .. } => "FALLOCATE",
            Operation::Lseek { .. } => "LSEEK",
            Operation::CopyFileRange { .. } => "COPY_FILE_RANGE",
            Operation::Tmpfile { .. } => "TMPFILE",
            Operation::Poll { .. } => "POLL",
            Operation::Getlk(_) => "GETLK",
            Operation::Setlk(_) => "SETLK",
            Operation::Setlkw(_) => "SETLKW",
            Operation::Bmap { .. } => "BMAP",
            Operation::Unknown { .. } => "UNKNOWN",
        }
    }
}

/// What the kernel's encoding of a request depends on beyond the bytes themselves: the INIT
/// flags that were negotiated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParseOptions {
    /// FUSE_SETXATTR_EXT was granted, so SETXATTR carries the 16-byte `fuse_setxattr_in`
    /// rather than the 8-byte original.
    pub setxattr_ext: bool,
}

impl Default for ParseOptions {
    /// What [`super::session::Session`] negotiates with any kernel of protocol 7.33 or newer.
    fn default() -> Self {
        ParseOptions { setxattr_ext: true }
    }
}

/// Why a request could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RequestError {
    #[error("request of {len} bytes is shorter than the 40-byte fuse_in_header")]
    ShortHeader { len: usize },
    #[error("request {unique}: header says {header_len} bytes but {len} arrived")]
    LengthMismatch { unique: u64, header_len: u32, len: usize },
    #[error("request {unique} (opcode {opcode}): {reason}")]
    Body { unique: u64, opcode: u32, reason: BodyError },
}

impl RequestError {
    /// The request's `unique` when the header could be read, so that it can still be answered.
    pub fn unique(&self) -> Option<u64> {
        match self {
            RequestError::ShortHeader { .. } => None,
            RequestError::LengthMismatch { unique, .. } | RequestError::Body { unique, .. } => Some(*unique),
        }
    }
}

/// What is wrong with a request's arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BodyError {
    #[error("arguments truncated: {need} bytes needed, {have} present")]
    Truncated { need: usize, have: usize },
    #[error("name has no NUL terminator")]
    MissingNul,
    #[error("payload of {actual} bytes does not match the declared {declared}")]
    PayloadSize { declared: u32, actual: usize },
    #[error("extensions of {ext_len} bytes exceed the {body_len}-byte body")]
    Extensions { ext_len: usize, body_len: usize },
}

impl<'a> Request<'a> {
    /// Decodes one request as read from `/dev/fuse`, with the [`ParseOptions`] the session
    /// negotiates.
    pub fn parse(bytes: &'a [u8]) -> Result<Request<'a>, RequestError> {
        Request::parse_with(bytes, ParseOptions::default())
    }

    /// Decodes one contiguous request: header, arguments and extensions back to back, with the
    /// header's `len` equal to `bytes.len()`.
    pub fn parse_with(bytes: &'a [u8], options: ParseOptions) -> Result<Request<'a>, RequestError> {
        let (header, body) =
            abi::fuse_in_header::read_from_prefix(bytes).map_err(|_| RequestError::ShortHeader { len: bytes.len() })?;
        if header.len as usize != bytes.len() {
            return Err(RequestError::LengthMismatch {
                unique: header.unique,
                header_len: header.len,
                len: bytes.len(),
            });
        }
        let args = Args { op_in: None, rest: body };
        Request::decode(&header, args, options)
    }

    /// Decodes a request delivered in three buffers, as FUSE-over-io_uring does: `header` holds
    /// the `fuse_in_header`, `op_in` the opcode's fixed argument struct (if it has one) and
    /// `payload` everything after it (names, data, extensions).
    pub fn parse_split(
        header: &'a [u8],
        op_in: &'a [u8],
        payload: &'a [u8],
        options: ParseOptions,
    ) -> Result<Request<'a>, RequestError> {
        let (header, _) = abi::fuse_in_header::read_from_prefix(header)
            .map_err(|_| RequestError::ShortHeader { len: header.len() })?;
        let args = Args { op_in: Some(op_in), rest: payload };
        Request::decode(&header, args, options)
    }

    fn decode(
        header: &abi::fuse_in_header,
        mut args: Args<'a>,
        options: ParseOptions,
    ) -> Result<Request<'a>, RequestError> {
        let op = args
            .strip_extensions(header.total_extlen)
            .and_then(|()| decode_operation(header.opcode, args, options))
            .map_err(|reason| RequestError::Body { unique: header.unique, opcode: header.opcode, reason })?;
        Ok(Request {
            unique: header.unique,
            nodeid: header.nodeid,
            uid: header.uid,
            gid: header.gid,
            pid: header.pid,
            op,
        })
    }
}

/// A cursor over a request's arguments. The first fixed struct comes from `op_in` when the
/// transport delivers it apart (io_uring); everything else, in order, from `rest`.
struct Args<'a> {
    op_in: Option<&'a [u8]>,
    rest: &'a [u8],
}

impl<'a> Args<'a> {
    /// Drops the extensions (security context, supplementary groups) that end the request: we do
    /// not negotiate the features that add them, and they would otherwise read as payload.
    fn strip_extensions(&mut self, total_extlen: u16) -> Result<(), BodyError> {
        let ext_len = usize::from(total_extlen) * 8;
        let body_len = self.rest.len();
        let keep = body_len.checked_sub(ext_len).ok_or(BodyError::Extensions { ext_len, body_len })?;
        self.rest = &self.rest[..keep];
        Ok(())
    }

    /// Reads the fixed argument struct `T`.
    fn fetch<T: FromBytes + IntoBytes>(&mut self) -> Result<T, BodyError> {
        self.fetch_prefix(size_of::<T>())
    }

    /// Reads the first `len` bytes of `T` (an older, shorter form of the struct) and zeroes the
    /// remaining fields.
    fn fetch_prefix<T: FromBytes + IntoBytes>(&mut self, len: usize) -> Result<T, BodyError> {
        assert!(len <= size_of::<T>());
        let bytes = match self.op_in.take() {
            Some(op_in) => op_in.get(..len).ok_or(BodyError::Truncated { need: len, have: op_in.len() })?,
            None => self.bytes(len)?,
        };
        let mut value = T::new_zeroed();
        value.as_mut_bytes()[..len].copy_from_slice(bytes);
        Ok(value)
    }

    /// How many bytes the next fixed struct may be read from.
    fn fixed_len(&self) -> usize {
        self.op_in.map_or(self.rest.len(), <[u8]>::len)
    }

    /// Takes the next `len` variable-length bytes.
    fn bytes(&mut self, len: usize) -> Result<&'a [u8], BodyError> {
        if self.rest.len() < len {
            return Err(BodyError::Truncated { need: len, have: self.rest.len() });
        }
        let (head, tail) = self.rest.split_at(len);
        self.rest = tail;
        Ok(head)
    }

    /// Takes the next NUL-terminated name, without its NUL.
    fn name(&mut self) -> Result<&'a OsStr, BodyError> {
        let nul = self.rest.iter().position(|&b| b == 0).ok_or(BodyError::MissingNul)?;
        let name = &self.rest[..nul];
        self.rest = &self.rest[nul + 1..];
        Ok(OsStr::from_bytes(name))
    }

    /// Takes everything left, which must be exactly `declared` bytes.
    fn payload(&mut self, declared: u32) -> Result<&'a [u8], BodyError> {
        let actual = self.rest.len();
        if actual != declared as usize {
            return Err(BodyError::PayloadSize { declared, actual });
        }
        Ok(std::mem::take(&mut self.rest))
    }
}

/// One arm per opcode; each arm is one decoding call.
fn decode_operation<'a>(opcode: u32, mut args: Args<'a>, options: ParseOptions) -> Result<Operation<'a>, BodyError> {
    let a = &mut args;
    match opcode {
        abi::FUSE_INIT => init(a),
        abi::FUSE_DESTROY => Ok(Operation::Destroy),
        abi::FUSE_LOOKUP => Ok(Operation::Lookup { name: a.name()? }),
        abi::FUSE_FORGET => forget(a),
        abi::FUSE_BATCH_FORGET => batch_forget(a),
        abi::FUSE_GETATTR => getattr(a),
        abi::FUSE_SETATTR => setattr(a),
        abi::FUSE_READLINK => Ok(Operation::Readlink),
        abi::FUSE_SYMLINK => symlink(a),
        abi::FUSE_MKNOD => mknod(a),
        abi::FUSE_MKDIR => mkdir(a),
        abi::FUSE_UNLINK => Ok(Operation::Unlink { name: a.name()? }),
        abi::FUSE_RMDIR => Ok(Operation::Rmdir { name: a.name()? }),
        abi::FUSE_RENAME => rename(a),
        abi::FUSE_RENAME2 => rename2(a),
        abi::FUSE_LINK => link(a),
        abi::FUSE_OPEN => open(a),
        abi::FUSE_READ => read(a),
        abi::FUSE_WRITE => write(a),
        abi::FUSE_STATFS => Ok(Operation::Statfs),
        abi::FUSE_RELEASE => release(a),
        abi::FUSE_FSYNC => fsync(a).map(|(fh, datasync)| Operation::Fsync { fh, datasync }),
        abi::FUSE_SETXATTR => setxattr(a, options),
        abi::FUSE_GETXATTR => getxattr(a),
        abi::FUSE_LISTXATTR => listxattr(a),
        abi::FUSE_REMOVEXATTR => Ok(Operation::Removexattr { name: a.name()? }),
        abi::FUSE_FLUSH => flush(a),
        abi::FUSE_OPENDIR => opendir(a),
        abi::FUSE_READDIR => readdir(a).map(|(fh, offset, size)| Operation::Readdir { fh, offset, size }),
        abi::FUSE_READDIRPLUS => readdir(a).map(|(fh, offset, size)| Operation::Readdirplus { fh, offset, size }),
        abi::FUSE_RELEASEDIR => releasedir(a),
        abi::FUSE_FSYNCDIR => fsync(a).map(|(fh, datasync)| Operation::Fsyncdir { fh, datasync }),
        abi::FUSE_ACCESS => access(a),
        abi::FUSE_CREATE => create(a),
        abi::FUSE_INTERRUPT => interrupt(a),
        abi::FUSE_IOCTL => ioctl(a),
        abi::FUSE_FALLOCATE => fallocate(a),
        abi::FUSE_LSEEK => lseek(a),
        abi::FUSE_COPY_FILE_RANGE => copy_file_range(a),
        abi::FUSE_TMPFILE => tmpfile(a),
        abi::FUSE_POLL => poll(a),
        abi::FUSE_GETLK => lock(a).map(Operation::Getlk),
        abi::FUSE_SETLK => lock(a).map(Operation::Setlk),
        abi::FUSE_SETLKW => lock(a).map(Operation::Setlkw),
        abi::FUSE_BMAP => bmap(a),
        _ => Ok(Operation::Unknown { opcode }),
    }
}

/// The kernel sends 64 bytes since protocol 7.36 and 16 before; accept either.
fn init<'a>(a: &mut Args<'a>) -> Result<Operation<'a>, BodyError> {
    let len = a.fixed_len().min(size_of::<abi::fuse_init_in>());
    let len = len.max(abi::FUSE_COMPAT_INIT_IN_SIZE);
    let arg: abi::fuse_init_in = a.fetch_prefix(len)?;
    let mut flags = u64::from(arg.flags);
    if flags & abi::FUSE_INIT_EXT != 0 {
        flags |= u64::from(arg.flags2) << 32;
    }
    Ok(Operation::Init { major: arg.major, minor: arg.minor, max_readahead: arg.max_readahead, flags })
}

fn forget<'a>(a: &mut Args<'a>) -> Result<Operation<'a>, BodyError> {
    let arg: abi::fuse_forget_in = a.fetch()?;
    Ok(Operation::Forget { nlookup: arg.nlookup })
}

fn batch_forget<'a>(a: &mut Args<'a>) -> Result<Operation<'a>, BodyError> {
    let arg: abi::fuse_batch_forget_in = a.fetch()?;
    // `count` is at most u32::MAX, so the product fits in a u64 and, on 64-bit hosts, a usize.
    let len = u64::from(arg.count) * size_of::<abi::fuse_forget_one>() as u64;
    let len = usize::try_from(len).unwrap_or(usize::MAX);
    let bytes = a.bytes(len)?;
    Ok(Operation::BatchForget { forgets: Forgets { bytes } })
}

fn getattr<'a>(a: &mut Args<'a>) -> Result<Operation<'a>, BodyError> {
    let arg: abi::fuse_getattr_in = a.fetch()?;
    let fh = (arg.getattr_flags & abi::FUSE_GETATTR_FH != 0).then_some(arg.fh);
    Ok(Operation::Getattr { fh })
}

fn setattr<'a>(a: &mut Args<'a>) -> Result<Operation<'a>, BodyError> {
    let arg: abi::fuse_setattr_in = a.fetch()?;
    let valid = arg.valid;
    let has = |bit: u32| valid & bit != 0;
    Ok(Operation::Setattr(SetAttr {
        mode: has(abi::FATTR_MODE).then_some(arg.mode),
        uid: has(abi::FATTR_UID).then_some(arg.uid),
        gid: has(abi::FATTR_GID).then_some(arg.gid),
        size: has(abi::FATTR_SIZE).then_some(arg.size),
        atime: time_or_now(valid, abi::FATTR_ATIME, abi::FATTR_ATIME_NOW, arg.atime, arg.atimensec),
        mtime: time_or_now(valid, abi::FATTR_MTIME, abi::FATTR_MTIME_NOW, arg.mtime, arg.mtimensec),
        ctime: has(abi::FATTR_CTIME).then_some(timestamp(arg.ctime, arg.ctimensec)),
        fh: has(abi::FATTR_FH).then_some(arg.fh),
        lock_owner: has(abi::FATTR_LOCKOWNER).then_some(arg.lock_owner),
        kill_suidgid: has(abi::FATTR_KILL_SUIDGID),
    }))
}

/// The kernel sets FATTR_ATIME together with FATTR_ATIME_NOW for "now" (likewise for mtime).
fn time_or_now(valid: u32, bit: u32, now_bit: u32, secs: u64, nsecs: u32) -> Option<TimeOrNow> {
    if valid & now_bit != 0 {
        Some(TimeOrNow::Now)
    } else if valid & bit != 0 {
        Some(TimeOrNow::At(timestamp(secs, nsecs)))
    } else {
        None
    }
}

/// The kernel stores a signed `time64_t` in the u64 field; reinterpret it.
fn timestamp(secs: u64, nsecs: u32) -> Timestamp {
    Timestamp { secs: secs as i64, nsecs }
}

fn symlink<'a>(a: &mut Args<'a>) -> Result<Operation<'a>, BodyError> {
    let name = a.name()?;
    let target = a.name()?;
    Ok(Operation::Symlink { name, target })
}

fn mknod<'a>(a: &mut Args<'a>) -> Result<Operation<'a>, BodyError> {
    let arg: abi::fuse_mknod_in = a.fetch()?;
    let name = a.name()?;
    Ok(Operation::Mknod { name, mode: arg.mode, rdev: arg.rdev, umask: arg.umask })
}

fn mkdir<'a>(a: &mut Args<'a>) -> Result<Operation<'a>, BodyError> {
    let arg: abi::fuse_mkdir_in = a.fetch()?;
    let name = a.name()?;
    Ok(Operation::Mkdir { name, mode: arg.mode, umask: arg.umask })
}

fn rename<'a>(a: &mut Args<'a>) -> Result<Operation<'a>, BodyError> {
    let arg: abi::fuse_rename_in = a.fetch()?;
    let name = a.name()?;
    let newname = a.name()?;
    Ok(Operation::Rename { name, newdir: arg.newdir, newname })
}

fn rename2<'a>(a: &mut Args<'a>) -> Result<Operation<'a>, BodyError> {
    let arg: abi::fuse_rename2_in = a.fetch()?;
    let name = a.name()?;
    let newname = a.name()?;
    Ok(Operation::Rename2 { name, newdir: arg.newdir, newname, flags: arg.flags })
}

fn link<'a>(a: &mut Args<'a>) -> Result<Operation<'a>, BodyError> {
    let arg: abi::fuse_link_in = a.fetch()?;
    let name = a.name()?;
    Ok(Operation::Link { ino: arg.oldnodeid, name })
}

fn open<'a>(a: &mut Args<'a>) -> Result<Operation<'a>, BodyError> {
    let arg: abi::fuse_open_in = a.fetch()?;
    Ok(Operation::Open { flags: arg.flags, kill_suidgid: arg.open_flags & abi::FUSE_OPEN_KILL_SUIDGID != 0 })
}

fn read<'a>(a: &mut Args<'a>) -> Result<Operation<'a>, BodyError> {
    let arg: abi::fuse_read_in = a.fetch()?;
    let has_owner = arg.read_flags & abi::FUSE_READ_LOCKOWNER != 0;
    Ok(Operation::Read {
        fh: arg.fh,
        offset: arg.offset,
        size: arg.size,
        flags: arg.flags,
        lock_owner: has_owner.then_some(arg.lock_owner),
    })
}

fn write<'a>(a: &mut Args<'a>) -> Result<Operation<'a>, BodyError> {
    let arg: abi::fuse_write_in = a.fetch()?;
    let data = a.payload(arg.size)?;
    let has = |bit: u32| arg.write_flags & bit != 0;
    Ok(Operation::Write {
        fh: arg.fh,
        offset: arg.offset,
        data,
        flags: arg.flags,
        cached: has(abi::FUSE_WRITE_CACHE),
        kill_suidgid: has(abi::FUSE_WRITE_KILL_SUIDGID),
        lock_owner: has(abi::FUSE_WRITE_LOCKOWNER).then_some(arg.lock_owner),
    })
}

fn release<'a>(a: &mut Args<'a>) -> Result<Operation<'a>, BodyError> {
    let arg: abi::fuse_release_in = a.fetch()?;
    Ok(Operation::Release {
        fh: arg.fh,
        flags: arg.flags,
        flush: arg.release_flags & abi::FUSE_RELEASE_FLUSH != 0,
        flock_release: arg.release_flags & abi::FUSE_RELEASE_FLOCK_UNLOCK != 0,
        lock_owner: arg.lock_owner,
    })
}

fn fsync(a: &mut Args<'_>) -> Result<(u64, bool), BodyError> {
    let arg: abi::fuse_fsync_in = a.fetch()?;
    Ok((arg.fh, arg.fsync_flags & abi::FUSE_FSYNC_FDATASYNC != 0))
}

fn setxattr<'a>(a: &mut Args<'a>, options: ParseOptions) -> Result<Operation<'a>, BodyError> {
    let len = if options.setxattr_ext { size_of::<abi::fuse_setxattr_in>() } else { abi::FUSE_COMPAT_SETXATTR_IN_SIZE };
    let arg: abi::fuse_setxattr_in = a.fetch_prefix(len)?;
    let name = a.name()?;
    let value = a.payload(arg.size)?;
    Ok(Operation::Setxattr {
        name,
        value,
        flags: arg.flags,
        acl_kill_sgid: arg.setxattr_flags & abi::FUSE_SETXATTR_ACL_KILL_SGID != 0,
    })
}

fn getxattr<'a>(a: &mut Args<'a>) -> Result<Operation<'a>, BodyError> {
    let arg: abi::fuse_getxattr_in = a.fetch()?;
    let name = a.name()?;
    Ok(Operation::Getxattr { name, size: arg.size })
}

fn listxattr<'a>(a: &mut Args<'a>) -> Result<Operation<'a>, BodyError> {
    let arg: abi::fuse_getxattr_in = a.fetch()?;
    Ok(Operation::Listxattr { size: arg.size })
}

fn flush<'a>(a: &mut Args<'a>) -> Result<Operation<'a>, BodyError> {
    let arg: abi::fuse_flush_in = a.fetch()?;
    Ok(Operation::Flush { fh: arg.fh, lock_owner: arg.lock_owner })
}

fn opendir<'a>(a: &mut Args<'a>) -> Result<Operation<'a>, BodyError> {
    let arg: abi::fuse_open_in = a.fetch()?;
    Ok(Operation::Opendir { flags: arg.flags })
}

fn readdir(a: &mut Args<'_>) -> Result<(u64, u64, u32), BodyError> {
    let arg: abi::fuse_read_in = a.fetch()?;
    Ok((arg.fh, arg.offset, arg.size))
}

fn releasedir<'a>(a: &mut Args<'a>) -> Result<Operation<'a>, BodyError> {
    let arg: abi::fuse_release_in = a.fetch()?;
    Ok(Operation::Releasedir { fh: arg.fh, flags: arg.flags })
}

fn access<'a>(a: &mut Args<'a>) -> Result<Operation<'a>, BodyError> {
    let arg: abi::fuse_access_in = a.fetch()?;
    Ok(Operation::Access { mask: arg.mask })
}

fn create<'a>(a: &mut Args<'a>) -> Result<Operation<'a>, BodyError> {
    let arg: abi::fuse_create_in = a.fetch()?;
    let name = a.name()?;
    Ok(Operation::Create {
        name,
        flags: arg.flags,
        mode: arg.mode,
        umask: arg.umask,
        kill_suidgid: arg.open_flags & abi::FUSE_OPEN_KILL_SUIDGID != 0,
    })
}

fn interrupt<'a>(a: &mut Args<'a>) -> Result<Operation<'a>, BodyError> {
    let arg: abi::fuse_interrupt_in = a.fetch()?;
    Ok(Operation::Interrupt { unique: arg.unique })
}

fn ioctl<'a>(a: &mut Args<'a>) -> Result<Operation<'a>, BodyError> {
    let arg: abi::fuse_ioctl_in = a.fetch()?;
    let data = a.payload(arg.in_size)?;
    Ok(Operation::Ioctl {
        fh: arg.fh,
        flags: arg.flags,
        cmd: arg.cmd,
        arg: arg.arg,
        in_size: arg.in_size,
        out_size: arg.out_size,
        data,
    })
}

fn fallocate<'a>(a: &mut Args<'a>) -> Result<Operation<'a>, BodyError> {
    let arg: abi::fuse_fallocate_in = a.fetch()?;
    Ok(Operation::Fallocate { fh: arg.fh, offset: arg.offset, length: arg.length, mode: arg.mode })
}

fn lseek<'a>(a: &mut Args<'a>) -> Result<Operation<'a>, BodyError> {
    let arg: abi::fuse_lseek_in = a.fetch()?;
    Ok(Operation::Lseek { fh: arg.fh, offset: arg.offset, whence: arg.whence })
}

fn copy_file_range<'a>(a: &mut Args<'a>) -> Result<Operation<'a>, BodyError> {
    let arg: abi::fuse_copy_file_range_in = a.fetch()?;
    Ok(Operation::CopyFileRange {
        fh_in: arg.fh_in,
        offset_in: arg.off_in,
        nodeid_out: arg.nodeid_out,
        fh_out: arg.fh_out,
        offset_out: arg.off_out,
        len: arg.len,
        flags: arg.flags,
    })
}

/// TMPFILE carries `fuse_create_in` and a placeholder name for the unnamed file; the name is
/// meaningless and ignored.
fn tmpfile<'a>(a: &mut Args<'a>) -> Result<Operation<'a>, BodyError> {
    let arg: abi::fuse_create_in = a.fetch()?;
    Ok(Operation::Tmpfile { flags: arg.flags, mode: arg.mode, umask: arg.umask })
}

fn poll<'a>(a: &mut Args<'a>) -> Result<Operation<'a>, BodyError> {
    let arg: abi::fuse_poll_in = a.fetch()?;
    Ok(Operation::Poll { fh: arg.fh, kh: arg.kh, flags: arg.flags, events: arg.events })
}

fn lock(a: &mut Args<'_>) -> Result<LockRequest, BodyError> {
    let arg: abi::fuse_lk_in = a.fetch()?;
    Ok(LockRequest {
        fh: arg.fh,
        owner: arg.owner,
        start: arg.lk.start,
        end: arg.lk.end,
        lock_type: arg.lk.r#type,
        pid: arg.lk.pid,
        flock: arg.lk_flags & abi::FUSE_LK_FLOCK != 0,
    })
}

fn bmap<'a>(a: &mut Args<'a>) -> Result<Operation<'a>, BodyError> {
    let arg: abi::fuse_bmap_in = a.fetch()?;
    Ok(Operation::Bmap { block: arg.block, blocksize: arg.blocksize })
}

#[cfg(all(test, target_endian = "little"))]
mod tests {
    //! Goal: every decoder agrees with the kernel's byte layout, and no input makes parsing panic.
    //! Method: hand-written requests commented field by field (as the kernel would send them on a
    //! little-endian host), decoded and compared with the expected value; then random and
    //! structured-random bytes through `parse` and `parse_split`.

    use super::*;
    use proptest::prelude::*;

    fn name(s: &str) -> &OsStr {
        OsStr::new(s)
    }

    const INIT: [u8; 104] = [
        0x68, 0x00, 0x00, 0x00, // len = 104
        0x1a, 0x00, 0x00, 0x00, // opcode = FUSE_INIT (26)
        0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // unique = 1
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // nodeid = 0
        0x00, 0x00, 0x00, 0x00, // uid = 0
        0x00, 0x00, 0x00, 0x00, // gid = 0
        0x00, 0x00, 0x00, 0x00, // pid = 0
        0x00, 0x00, // total_extlen = 0
        0x00, 0x00, // padding
        0x07, 0x00, 0x00, 0x00, // major = 7
        0x2d, 0x00, 0x00, 0x00, // minor = 45
        0x00, 0x00, 0x02, 0x00, // max_readahead = 128 KiB
        0x01, 0x00, 0x00, 0x40, // flags = FUSE_INIT_EXT | FUSE_ASYNC_READ
        0x02, 0x00, 0x00, 0x00, // flags2 = bit 33 (FUSE_HAS_INODE_DAX)
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, // unused[11]
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ];

    #[test]
    fn init() {
        let req = Request::parse(&INIT).expect("valid INIT");
        assert_eq!(req.unique, 1);
        assert_eq!(
            req.op,
            Operation::Init {
                major: 7,
                minor: 45,
                max_readahead: 128 * 1024,
                flags: abi::FUSE_INIT_EXT | abi::FUSE_ASYNC_READ | abi::FUSE_HAS_INODE_DAX,
            }
        );
    }

    #[test]
    fn init_compat_16_bytes() {
        let mut bytes = INIT[..56].to_vec();
        bytes[0] = 56; // len
        bytes[52] = 0x01; // flags = FUSE_ASYNC_READ, no FUSE_INIT_EXT
        bytes[55] = 0x00;
        let req = Request::parse(&bytes).expect("valid 7.31-style INIT");
        let Operation::Init { minor, flags, .. } = req.op else { panic!("not INIT: {req:?}") };
        assert_eq!(minor, 45);
        assert_eq!(flags, abi::FUSE_ASYNC_READ);
    }

    const LOOKUP: [u8; 46] = [
        0x2e, 0x00, 0x00, 0x00, // len = 46
        0x01, 0x00, 0x00, 0x00, // opcode = FUSE_LOOKUP (1)
        0x0d, 0xf0, 0xad, 0xba, 0xef, 0xbe, 0xad, 0xde, // unique = 0xdeadbeef_baadf00d
        0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // nodeid = 1 (root)
        0xe8, 0x03, 0x00, 0x00, // uid = 1000
        0xe9, 0x03, 0x00, 0x00, // gid = 1001
        0x39, 0x30, 0x00, 0x00, // pid = 12345
        0x00, 0x00, // total_extlen = 0
        0x00, 0x00, // padding
        b'h', b'e', b'l', b'l', b'o', 0x00, // name = "hello\0"
    ];

    #[test]
    fn lookup() {
        let req = Request::parse(&LOOKUP).expect("valid LOOKUP");
        let expected = Request {
            unique: 0xdead_beef_baad_f00d,
            nodeid: 1,
            uid: 1000,
            gid: 1001,
            pid: 12345,
            op: Operation::Lookup { name: name("hello") },
        };
        assert_eq!(req, expected);
    }

    #[test]
    fn lookup_without_nul_is_an_error() {
        let mut bytes = LOOKUP;
        bytes[45] = b'!';
        let err = Request::parse(&bytes).expect_err("no NUL");
        assert_eq!(err, RequestError::Body { unique: 0xdead_beef_baad_f00d, opcode: 1, reason: BodyError::MissingNul });
        assert_eq!(err.unique(), Some(0xdead_beef_baad_f00d));
    }

    #[test]
    fn length_mismatch_and_short_header() {
        let err = Request::parse(&LOOKUP[..45]).expect_err("one byte short");
        assert_eq!(err, RequestError::LengthMismatch { unique: 0xdead_beef_baad_f00d, header_len: 46, len: 45 });
        let err = Request::parse(&LOOKUP[..39]).expect_err("header cut");
        assert_eq!(err, RequestError::ShortHeader { len: 39 });
        assert_eq!(err.unique(), None);
    }

    const WRITE: [u8; 84] = [
        0x54, 0x00, 0x00, 0x00, // len = 84
        0x10, 0x00, 0x00, 0x00, // opcode = FUSE_WRITE (16)
        0x07, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // unique = 7
        0x05, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // nodeid = 5
        0x00, 0x00, 0x00, 0x00, // uid = 0
        0x00, 0x00, 0x00, 0x00, // gid = 0
        0x01, 0x00, 0x00, 0x00, // pid = 1
        0x00, 0x00, // total_extlen = 0
        0x00, 0x00, // padding
        0x03, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // fh = 3
        0x00, 0x10, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // offset = 4096
        0x04, 0x00, 0x00, 0x00, // size = 4
        0x07, 0x00, 0x00, 0x00, // write_flags = CACHE | LOCKOWNER | KILL_SUIDGID
        0x2a, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // lock_owner = 42
        0x02, 0x80, 0x00, 0x00, // flags = O_RDWR | O_LARGEFILE
        0x00, 0x00, 0x00, 0x00, // padding
        0xde, 0xad, 0xbe, 0xef, // data
    ];

    #[test]
    fn write() {
        let req = Request::parse(&WRITE).expect("valid WRITE");
        assert_eq!(req.nodeid, 5);
        assert_eq!(
            req.op,
            Operation::Write {
                fh: 3,
                offset: 4096,
                data: &[0xde, 0xad, 0xbe, 0xef],
                flags: 0x8002,
                cached: true,
                kill_suidgid: true,
                lock_owner: Some(42),
            }
        );
    }

    #[test]
    fn write_with_wrong_size_is_an_error() {
        let mut bytes = WRITE;
        bytes[56] = 5; // size = 5, one more byte than present
        let err = Request::parse(&bytes).expect_err("size disagrees");
        assert_eq!(
            err,
            RequestError::Body {
                unique: 7,
                opcode: abi::FUSE_WRITE,
                reason: BodyError::PayloadSize { declared: 5, actual: 4 },
            }
        );
    }

    #[test]
    fn write_split_matches_contiguous() {
        let split = Request::parse_split(&WRITE[..40], &WRITE[40..80], &WRITE[80..], ParseOptions::default())
            .expect("valid split WRITE");
        assert_eq!(split, Request::parse(&WRITE).expect("valid WRITE"));
    }

    const SETATTR: [u8; 128] = [
        0x80, 0x00, 0x00, 0x00, // len = 128
        0x04, 0x00, 0x00, 0x00, // opcode = FUSE_SETATTR (4)
        0x09, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // unique = 9
        0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // nodeid = 2
        0x00, 0x00, 0x00, 0x00, // uid
        0x00, 0x00, 0x00, 0x00, // gid
        0x00, 0x00, 0x00, 0x00, // pid
        0x00, 0x00, 0x00, 0x00, // total_extlen, padding
        0xf9, 0x0a, 0x00, 0x00, // valid = MODE|SIZE|ATIME|MTIME|FH|ATIME_NOW|LOCKOWNER|KILL_SUIDGID
        0x00, 0x00, 0x00, 0x00, // padding
        0x0b, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // fh = 11
        0x00, 0x00, 0x10, 0x00, 0x00, 0x00, 0x00, 0x00, // size = 1 MiB
        0x63, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // lock_owner = 99
        0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // atime = 1 (overridden by ATIME_NOW)
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, // mtime = -1 (one second before 1970)
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // ctime (not valid)
        0x00, 0x00, 0x00, 0x00, // atimensec
        0x15, 0xcd, 0x5b, 0x07, // mtimensec = 123456789
        0x00, 0x00, 0x00, 0x00, // ctimensec
        0xa4, 0x81, 0x00, 0x00, // mode = S_IFREG | 0644
        0x00, 0x00, 0x00, 0x00, // unused4
        0x01, 0x00, 0x00, 0x00, // uid = 1 (not valid)
        0x02, 0x00, 0x00, 0x00, // gid = 2 (not valid)
        0x00, 0x00, 0x00, 0x00, // unused5
    ];

    #[test]
    fn setattr() {
        let req = Request::parse(&SETATTR).expect("valid SETATTR");
        let expected = SetAttr {
            mode: Some(0o100644),
            uid: None,
            gid: None,
            size: Some(1 << 20),
            atime: Some(TimeOrNow::Now),
            mtime: Some(TimeOrNow::At(Timestamp { secs: -1, nsecs: 123_456_789 })),
            ctime: None,
            fh: Some(11),
            lock_owner: Some(99),
            kill_suidgid: true,
        };
        assert_eq!(req.op, Operation::Setattr(expected));
    }

    const RENAME2: [u8; 68] = [
        0x44, 0x00, 0x00, 0x00, // len = 68
        0x2d, 0x00, 0x00, 0x00, // opcode = FUSE_RENAME2 (45)
        0x0a, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // unique = 10
        0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // nodeid = 1 (old parent)
        0x00, 0x00, 0x00, 0x00, // uid
        0x00, 0x00, 0x00, 0x00, // gid
        0x00, 0x00, 0x00, 0x00, // pid
        0x00, 0x00, 0x00, 0x00, // total_extlen, padding
        0x04, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // newdir = 4
        0x02, 0x00, 0x00, 0x00, // flags = RENAME_EXCHANGE
        0x00, 0x00, 0x00, 0x00, // padding
        b'a', b'.', b't', b'x', b't', 0x00, // name = "a.txt\0"
        b'b', b'.', b't', b'x', b't', 0x00, // newname = "b.txt\0"
    ];

    #[test]
    fn rename2() {
        let req = Request::parse(&RENAME2).expect("valid RENAME2");
        assert_eq!(req.op, Operation::Rename2 { name: name("a.txt"), newdir: 4, newname: name("b.txt"), flags: 2 });
    }

    #[test]
    fn rename2_truncated_struct_is_an_error() {
        let mut bytes = RENAME2[..52].to_vec();
        bytes[0] = 52; // len
        let err = Request::parse(&bytes).expect_err("struct cut");
        assert_eq!(
            err,
            RequestError::Body {
                unique: 10,
                opcode: abi::FUSE_RENAME2,
                reason: BodyError::Truncated { need: 16, have: 12 },
            }
        );
    }

    const BATCH_FORGET: [u8; 80] = [
        0x50, 0x00, 0x00, 0x00, // len = 80
        0x2a, 0x00, 0x00, 0x00, // opcode = FUSE_BATCH_FORGET (42)
        0x0b, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // unique = 11
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // nodeid = 0
        0x00, 0x00, 0x00, 0x00, // uid
        0x00, 0x00, 0x00, 0x00, // gid
        0x00, 0x00, 0x00, 0x00, // pid
        0x00, 0x00, 0x00, 0x00, // total_extlen, padding
        0x02, 0x00, 0x00, 0x00, // count = 2
        0x00, 0x00, 0x00, 0x00, // dummy
        0x05, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // [0].nodeid = 5
        0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // [0].nlookup = 1
        0x06, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // [1].nodeid = 6
        0x03, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // [1].nlookup = 3
    ];

    #[test]
    fn batch_forget() {
        let req = Request::parse(&BATCH_FORGET).expect("valid BATCH_FORGET");
        let Operation::BatchForget { forgets } = req.op else { panic!("not BATCH_FORGET: {req:?}") };
        assert!(!req.op.expects_reply());
        assert_eq!(forgets.len(), 2);
        let all: Vec<ForgetOne> = forgets.iter().collect();
        assert_eq!(all, [ForgetOne { nodeid: 5, nlookup: 1 }, ForgetOne { nodeid: 6, nlookup: 3 }]);
    }

    #[test]
    fn batch_forget_with_too_large_count_is_an_error() {
        let mut bytes = BATCH_FORGET;
        bytes[40] = 3; // count = 3, but only 2 records follow
        let err = Request::parse(&bytes).expect_err("count too large");
        assert_eq!(
            err,
            RequestError::Body {
                unique: 11,
                opcode: abi::FUSE_BATCH_FORGET,
                reason: BodyError::Truncated { need: 48, have: 32 },
            }
        );
    }

    const SETXATTR_EXT: [u8; 67] = [
        0x43, 0x00, 0x00, 0x00, // len = 67
        0x15, 0x00, 0x00, 0x00, // opcode = FUSE_SETXATTR (21)
        0x0c, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // unique = 12
        0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // nodeid = 2
        0x00, 0x00, 0x00, 0x00, // uid
        0x00, 0x00, 0x00, 0x00, // gid
        0x00, 0x00, 0x00, 0x00, // pid
        0x00, 0x00, 0x00, 0x00, // total_extlen, padding
        0x03, 0x00, 0x00, 0x00, // size = 3
        0x01, 0x00, 0x00, 0x00, // flags = XATTR_CREATE
        0x01, 0x00, 0x00, 0x00, // setxattr_flags = FUSE_SETXATTR_ACL_KILL_SGID
        0x00, 0x00, 0x00, 0x00, // padding
        b'u', b's', b'e', b'r', b'.', b'a', b'b', 0x00, // name = "user.ab\0"
        b'x', b'y', b'z', // value = "xyz"
    ];

    #[test]
    fn setxattr_ext_form() {
        let req = Request::parse(&SETXATTR_EXT).expect("valid SETXATTR");
        assert_eq!(req.op, Operation::Setxattr { name: name("user.ab"), value: b"xyz", flags: 1, acl_kill_sgid: true });
    }

    #[test]
    fn setxattr_compat_form() {
        // The 8-byte form: drop setxattr_flags and padding (bytes 48..56).
        let mut bytes = [&SETXATTR_EXT[..48], &SETXATTR_EXT[56..]].concat();
        bytes[0] = 59; // len
        let options = ParseOptions { setxattr_ext: false };
        let req = Request::parse_with(&bytes, options).expect("valid compat SETXATTR");
        assert_eq!(
            req.op,
            Operation::Setxattr { name: name("user.ab"), value: b"xyz", flags: 1, acl_kill_sgid: false }
        );
    }

    const CREATE_WITH_EXTENSION: [u8; 76] = [
        0x4c, 0x00, 0x00, 0x00, // len = 76
        0x23, 0x00, 0x00, 0x00, // opcode = FUSE_CREATE (35)
        0x0d, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // unique = 13
        0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // nodeid = 1
        0xe8, 0x03, 0x00, 0x00, // uid = 1000
        0xe8, 0x03, 0x00, 0x00, // gid = 1000
        0x10, 0x00, 0x00, 0x00, // pid = 16
        0x02, 0x00, // total_extlen = 2 (16 bytes at the end)
        0x00, 0x00, // padding
        0xc2, 0x80, 0x00, 0x00, // flags = O_RDWR | O_CREAT | O_EXCL | O_LARGEFILE
        0xa4, 0x81, 0x00, 0x00, // mode = S_IFREG | 0644
        0x12, 0x00, 0x00, 0x00, // umask = 022
        0x00, 0x00, 0x00, 0x00, // open_flags = 0
        b'n', b'e', b'w', 0x00, // name = "new\0"
        0x10, 0x00, 0x00, 0x00, // extension: fuse_ext_header.size = 16
        0x20, 0x00, 0x00, 0x00, // fuse_ext_header.type = FUSE_EXT_GROUPS (32)
        0x01, 0x00, 0x00, 0x00, // fuse_supp_groups.nr_groups = 1
        0x64, 0x00, 0x00, 0x00, // groups[0] = 100
    ];

    #[test]
    fn create_ignores_extensions() {
        let req = Request::parse(&CREATE_WITH_EXTENSION).expect("valid CREATE");
        assert_eq!(
            req.op,
            Operation::Create { name: name("new"), flags: 0x80c2, mode: 0o100644, umask: 0o022, kill_suidgid: false }
        );
    }

    #[test]
    fn extensions_longer_than_body_are_an_error() {
        let mut bytes = CREATE_WITH_EXTENSION;
        bytes[36] = 5; // total_extlen = 40 bytes > 36-byte body
        let err = Request::parse(&bytes).expect_err("extensions too long");
        assert_eq!(
            err,
            RequestError::Body {
                unique: 13,
                opcode: abi::FUSE_CREATE,
                reason: BodyError::Extensions { ext_len: 40, body_len: 36 },
            }
        );
    }

    #[test]
    fn unknown_opcode_decodes() {
        let mut bytes = LOOKUP;
        bytes[4] = 200; // opcode = 200
        let req = Request::parse(&bytes).expect("unknown opcodes still parse");
        assert_eq!(req.op, Operation::Unknown { opcode: 200 });
        assert!(req.op.expects_reply());
    }

    /// A header with a consistent `len`, a plausible opcode and random arguments.
    fn framed_request() -> impl Strategy<Value = Vec<u8>> {
        (0u32..60, 0u16..4, proptest::collection::vec(any::<u8>(), 0..256)).prop_map(|(opcode, total_extlen, body)| {
            let header = abi::fuse_in_header {
                len: (size_of::<abi::fuse_in_header>() + body.len()) as u32,
                opcode,
                unique: 1,
                total_extlen,
                ..Default::default()
            };
            [header.as_bytes(), &body].concat()
        })
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = Request::parse(&bytes);
            let _ = Request::parse_with(&bytes, ParseOptions { setxattr_ext: false });
        }

        #[test]
        fn framed_requests_never_panic(bytes in framed_request(), split in 40usize..200) {
            let _ = Request::parse(&bytes);
            let split = split.min(bytes.len());
            let (op_in, payload) = bytes[40..].split_at(split - 40);
            let _ = Request::parse_split(&bytes[..40], op_in, payload, ParseOptions::default());
        }
    }
}
