//! The kernel's FUSE wire ABI, mirrored from `include/uapi/linux/fuse.h` (protocol 7.45, Linux 6.18).
//!
//! Invariants:
//! - Every struct is `#[repr(C)]`, has no implicit padding (zerocopy's `IntoBytes` derive proves it)
//!   and has its size pinned against the header by a `const` assertion below its definition.
//! - Names are the kernel's, verbatim, so a struct can be checked against the header by eye. Rust
//!   names start at the module boundary: [`super::request`] decodes into Rust types,
//!   [`super::reply`] encodes from them, and nothing outside `fuse/` sees these structs.
//! - All integers are in host byte order: the kernel and the daemon share one machine.
//! - Requests are parsed by copying fixed-size arguments out of the byte stream
//!   (`FromBytes::read_from_prefix`), so a misaligned or truncated buffer is an error value,
//!   never undefined behaviour, and no `unsafe` is needed.

// Kernel names stay verbatim, and not every field of the kernel's structs is read.
#![allow(non_camel_case_types, dead_code)]

use std::mem::size_of;

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// Protocol major version; the kernel and the daemon must agree on it exactly.
pub const FUSE_KERNEL_VERSION: u32 = 7;
/// The newest protocol minor version this module describes.
pub const FUSE_KERNEL_MINOR_VERSION: u32 = 45;
/// The node ID of the root inode.
pub const FUSE_ROOT_ID: u64 = 1;
/// The kernel refuses reads from `/dev/fuse` into buffers smaller than this.
pub const FUSE_MIN_READ_BUFFER: usize = 8192;

// Opcodes (`enum fuse_opcode`).
pub const FUSE_LOOKUP: u32 = 1;
pub const FUSE_FORGET: u32 = 2;
pub const FUSE_GETATTR: u32 = 3;
pub const FUSE_SETATTR: u32 = 4;
pub const FUSE_READLINK: u32 = 5;
pub const FUSE_SYMLINK: u32 = 6;
pub const FUSE_MKNOD: u32 = 8;
pub const FUSE_MKDIR: u32 = 9;
pub const FUSE_UNLINK: u32 = 10;
pub const FUSE_RMDIR: u32 = 11;
pub const FUSE_RENAME: u32 = 12;
pub const FUSE_LINK: u32 = 13;
pub const FUSE_OPEN: u32 = 14;
pub const FUSE_READ: u32 = 15;
pub const FUSE_WRITE: u32 = 16;
pub const FUSE_STATFS: u32 = 17;
pub const FUSE_RELEASE: u32 = 18;
pub const FUSE_FSYNC: u32 = 20;
pub const FUSE_SETXATTR: u32 = 21;
pub const FUSE_GETXATTR: u32 = 22;
pub const FUSE_LISTXATTR: u32 = 23;
pub const FUSE_REMOVEXATTR: u32 = 24;
pub const FUSE_FLUSH: u32 = 25;
pub const FUSE_INIT: u32 = 26;
pub const FUSE_OPENDIR: u32 = 27;
pub const FUSE_READDIR: u32 = 28;
pub const FUSE_RELEASEDIR: u32 = 29;
pub const FUSE_FSYNCDIR: u32 = 30;
pub const FUSE_GETLK: u32 = 31;
pub const FUSE_SETLK: u32 = 32;
pub const FUSE_SETLKW: u32 = 33;
pub const FUSE_ACCESS: u32 = 34;
pub const FUSE_CREATE: u32 = 35;
pub const FUSE_INTERRUPT: u32 = 36;
pub const FUSE_BMAP: u32 = 37;
pub const FUSE_DESTROY: u32 = 38;
pub const FUSE_IOCTL: u32 = 39;
pub const FUSE_POLL: u32 = 40;
pub const FUSE_NOTIFY_REPLY: u32 = 41;
pub const FUSE_BATCH_FORGET: u32 = 42;
pub const FUSE_FALLOCATE: u32 = 43;
pub const FUSE_READDIRPLUS: u32 = 44;
pub const FUSE_RENAME2: u32 = 45;
pub const FUSE_LSEEK: u32 = 46;
pub const FUSE_COPY_FILE_RANGE: u32 = 47;
pub const FUSE_SETUPMAPPING: u32 = 48;
pub const FUSE_REMOVEMAPPING: u32 = 49;
pub const FUSE_SYNCFS: u32 = 50;
pub const FUSE_TMPFILE: u32 = 51;
pub const FUSE_STATX: u32 = 52;
pub const FUSE_COPY_FILE_RANGE_64: u32 = 53;

// Notification codes (`enum fuse_notify_code`): sent by the file system with `unique` 0 and the
// code in the `error` field of `fuse_out_header`.
pub const FUSE_NOTIFY_INVAL_INODE: i32 = 2;

// INIT flags. Bits 32..63 travel in `flags2` when FUSE_INIT_EXT is set, so they are kept here as
// one 64-bit space, as the kernel does.
pub const FUSE_ASYNC_READ: u64 = 1 << 0;
pub const FUSE_POSIX_LOCKS: u64 = 1 << 1;
pub const FUSE_FILE_OPS: u64 = 1 << 2;
pub const FUSE_ATOMIC_O_TRUNC: u64 = 1 << 3;
pub const FUSE_EXPORT_SUPPORT: u64 = 1 << 4;
pub const FUSE_BIG_WRITES: u64 = 1 << 5;
pub const FUSE_DONT_MASK: u64 = 1 << 6;
pub const FUSE_SPLICE_WRITE: u64 = 1 << 7;
pub const FUSE_SPLICE_MOVE: u64 = 1 << 8;
pub const FUSE_SPLICE_READ: u64 = 1 << 9;
pub const FUSE_FLOCK_LOCKS: u64 = 1 << 10;
pub const FUSE_HAS_IOCTL_DIR: u64 = 1 << 11;
pub const FUSE_AUTO_INVAL_DATA: u64 = 1 << 12;
pub const FUSE_DO_READDIRPLUS: u64 = 1 << 13;
pub const FUSE_READDIRPLUS_AUTO: u64 = 1 << 14;
pub const FUSE_ASYNC_DIO: u64 = 1 << 15;
pub const FUSE_WRITEBACK_CACHE: u64 = 1 << 16;
pub const FUSE_NO_OPEN_SUPPORT: u64 = 1 << 17;
pub const FUSE_PARALLEL_DIROPS: u64 = 1 << 18;
pub const FUSE_HANDLE_KILLPRIV: u64 = 1 << 19;
pub const FUSE_POSIX_ACL: u64 = 1 << 20;
pub const FUSE_ABORT_ERROR: u64 = 1 << 21;
pub const FUSE_MAX_PAGES: u64 = 1 << 22;
pub const FUSE_CACHE_SYMLINKS: u64 = 1 << 23;
pub const FUSE_NO_OPENDIR_SUPPORT: u64 = 1 << 24;
pub const FUSE_EXPLICIT_INVAL_DATA: u64 = 1 << 25;
pub const FUSE_MAP_ALIGNMENT: u64 = 1 << 26;
pub const FUSE_SUBMOUNTS: u64 = 1 << 27;
pub const FUSE_HANDLE_KILLPRIV_V2: u64 = 1 << 28;
pub const FUSE_SETXATTR_EXT: u64 = 1 << 29;
pub const FUSE_INIT_EXT: u64 = 1 << 30;
pub const FUSE_INIT_RESERVED: u64 = 1 << 31;
pub const FUSE_SECURITY_CTX: u64 = 1 << 32;
pub const FUSE_HAS_INODE_DAX: u64 = 1 << 33;
pub const FUSE_CREATE_SUPP_GROUP: u64 = 1 << 34;
pub const FUSE_HAS_EXPIRE_ONLY: u64 = 1 << 35;
pub const FUSE_DIRECT_IO_ALLOW_MMAP: u64 = 1 << 36;
pub const FUSE_PASSTHROUGH: u64 = 1 << 37;
pub const FUSE_NO_EXPORT_SUPPORT: u64 = 1 << 38;
pub const FUSE_HAS_RESEND: u64 = 1 << 39;
pub const FUSE_ALLOW_IDMAP: u64 = 1 << 40;
pub const FUSE_OVER_IO_URING: u64 = 1 << 41;
pub const FUSE_REQUEST_TIMEOUT: u64 = 1 << 42;

// Bits of `fuse_setattr_in::valid`.
pub const FATTR_MODE: u32 = 1 << 0;
pub const FATTR_UID: u32 = 1 << 1;
pub const FATTR_GID: u32 = 1 << 2;
pub const FATTR_SIZE: u32 = 1 << 3;
pub const FATTR_ATIME: u32 = 1 << 4;
pub const FATTR_MTIME: u32 = 1 << 5;
pub const FATTR_FH: u32 = 1 << 6;
pub const FATTR_ATIME_NOW: u32 = 1 << 7;
pub const FATTR_MTIME_NOW: u32 = 1 << 8;
pub const FATTR_LOCKOWNER: u32 = 1 << 9;
pub const FATTR_CTIME: u32 = 1 << 10;
pub const FATTR_KILL_SUIDGID: u32 = 1 << 11;

// Flags the file system returns in `fuse_open_out::open_flags`.
pub const FOPEN_DIRECT_IO: u32 = 1 << 0;
pub const FOPEN_KEEP_CACHE: u32 = 1 << 1;
pub const FOPEN_NONSEEKABLE: u32 = 1 << 2;
pub const FOPEN_CACHE_DIR: u32 = 1 << 3;
pub const FOPEN_STREAM: u32 = 1 << 4;
pub const FOPEN_NOFLUSH: u32 = 1 << 5;
pub const FOPEN_PARALLEL_DIRECT_WRITES: u32 = 1 << 6;
pub const FOPEN_PASSTHROUGH: u32 = 1 << 7;

// Per-request flags.
pub const FUSE_RELEASE_FLUSH: u32 = 1 << 0;
pub const FUSE_RELEASE_FLOCK_UNLOCK: u32 = 1 << 1;
pub const FUSE_GETATTR_FH: u32 = 1 << 0;
pub const FUSE_LK_FLOCK: u32 = 1 << 0;
pub const FUSE_WRITE_CACHE: u32 = 1 << 0;
pub const FUSE_WRITE_LOCKOWNER: u32 = 1 << 1;
pub const FUSE_WRITE_KILL_SUIDGID: u32 = 1 << 2;
pub const FUSE_READ_LOCKOWNER: u32 = 1 << 1;
pub const FUSE_IOCTL_COMPAT: u32 = 1 << 0;
pub const FUSE_IOCTL_UNRESTRICTED: u32 = 1 << 1;
pub const FUSE_IOCTL_RETRY: u32 = 1 << 2;
pub const FUSE_IOCTL_32BIT: u32 = 1 << 3;
pub const FUSE_IOCTL_DIR: u32 = 1 << 4;
pub const FUSE_IOCTL_COMPAT_X32: u32 = 1 << 5;
pub const FUSE_IOCTL_MAX_IOV: u32 = 256;
pub const FUSE_POLL_SCHEDULE_NOTIFY: u32 = 1 << 0;
pub const FUSE_FSYNC_FDATASYNC: u32 = 1 << 0;
pub const FUSE_OPEN_KILL_SUIDGID: u32 = 1 << 0;
pub const FUSE_SETXATTR_ACL_KILL_SGID: u32 = 1 << 0;

/// Size of `fuse_setxattr_in` the kernel sends unless FUSE_SETXATTR_EXT was negotiated: only
/// `size` and `flags`.
pub const FUSE_COMPAT_SETXATTR_IN_SIZE: usize = 8;
/// Size of `fuse_init_in` before protocol 7.36 added `flags2` and the reserved words.
pub const FUSE_COMPAT_INIT_IN_SIZE: usize = 16;

/// `FUSE_DEV_IOC_CLONE = _IOR(229, 0, uint32_t)`: attach a new `/dev/fuse` fd to the connection
/// of the fd whose number it is given, so each worker thread can read and answer on its own fd.
pub const FUSE_DEV_IOC_CLONE: u32 = ioc_read(229, 0, size_of::<u32>() as u32);

/// `_IOR(type, nr, size)` in the asm-generic ioctl encoding (x86, arm64, riscv): direction in
/// bits 30..31 (2 = the kernel reads from user space), size in 16..29, type in 8..15, nr in 0..7.
const fn ioc_read(kind: u32, nr: u32, size: u32) -> u32 {
    (2 << 30) | (size << 16) | (kind << 8) | nr
}
const _: () = assert!(FUSE_DEV_IOC_CLONE == 0x8004_e500);

#[repr(C)]
#[derive(Debug, Clone, Copy, Default, FromBytes, IntoBytes, KnownLayout, Immutable)]
pub(crate) struct fuse_attr {
    pub(crate) ino: u64,
    pub(crate) size: u64,
    pub(crate) blocks: u64,
    pub(crate) atime: u64,
    pub(crate) mtime: u64,
    pub(crate) ctime: u64,
    pub(crate) atimensec: u32,
    pub(crate) mtimensec: u32,
    pub(crate) ctimensec: u32,
    pub(crate) mode: u32,
    pub(crate) nlink: u32,
    pub(crate) uid: u32,
    pub(crate) gid: u32,
    pub(crate) rdev: u32,
    pub(crate) blksize: u32,
    pub(crate) flags: u32,
}
const _: () = assert!(size_of::<fuse_attr>() == 88);

#[repr(C)]
#[derive(Debug, Clone, Copy, Default, FromBytes, IntoBytes, KnownLayout, Immutable)]
pub(crate) struct fuse_kstatfs {
    pub(crate) blocks: u64,
    pub(crate) bfree: u64,
    pub(crate) bavail: u64,
    pub(crate) files: u64,
    pub(crate) ffree: u64,
    pub(crate) bsize: u32,
    pub(crate) namelen: u32,
    pub(crate) frsize: u32,
    pub(crate) padding: u32,
    pub(crate) spare: [u32; 6],
}
const _: () = assert!(size_of::<fuse_kstatfs>() == 80);

#[repr(C)]
#[derive(Debug, Clone, Copy, Default, FromBytes, IntoBytes, KnownLayout, Immutable)]
pub(crate) struct fuse_file_lock {
    pub(crate) start: u64,
    pub(crate) end: u64,
    pub(crate) r#type: u32,
    /// The owning thread group.
    pub(crate) pid: u32,
}
const _: () = assert!(size_of::<fuse_file_lock>() == 24);

#[repr(C)]
#[derive(Debug, Clone, Copy, Default, FromBytes, IntoBytes, KnownLayout, Immutable)]
pub(crate) struct fuse_entry_out {
    pub(crate) nodeid: u64,
    /// `nodeid` and `generation` together must be unique for the file system's lifetime.
    pub(crate) generation: u64,
    /// How long the kernel may cache the name, in seconds (plus `entry_valid_nsec`).
    pub(crate) entry_valid: u64,
    /// How long the kernel may cache the attributes, in seconds (plus `attr_valid_nsec`).
    pub(crate) attr_valid: u64,
    pub(crate) entry_valid_nsec: u32,
    pub(crate) attr_valid_nsec: u32,
    pub(crate) attr: fuse_attr,
}
const _: () = assert!(size_of::<fuse_entry_out>() == 128);

#[repr(C)]
#[derive(Debug, Clone, Copy, Default, FromBytes, IntoBytes, KnownLayout, Immutable)]
pub(crate) struct fuse_forget_in {
    pub(crate) nlookup: u64,
}
const _: () = assert!(size_of::<fuse_forget_in>() == 8);

#[repr(C)]
#[derive(Debug, Clone, Copy, Default, FromBytes, IntoBytes, KnownLayout, Immutable)]
pub(crate) struct fuse_forget_one {
    pub(crate) nodeid: u64,
    pub(crate) nlookup: u64,
}
const _: () = assert!(size_of::<fuse_forget_one>() == 16);

#[repr(C)]
#[derive(Debug, Clone, Copy, Default, FromBytes, IntoBytes, KnownLayout, Immutable)]
pub(crate) struct fuse_batch_forget_in {
    pub(crate) count: u32,
    pub(crate) dummy: u32,
}
const _: () = assert!(size_of::<fuse_batch_forget_in>() == 8);

#[repr(C)]
#[derive(Debug, Clone, Copy, Default, FromBytes, IntoBytes, KnownLayout, Immutable)]
pub(crate) struct fuse_getattr_in {
    pub(crate) getattr_flags: u32,
    pub(crate) dummy: u32,
    pub(crate) fh: u64,
}
const _: () = assert!(size_of::<fuse_getattr_in>() == 16);

#[repr(C)]
#[derive(Debug, Clone, Copy, Default, FromBytes, IntoBytes, KnownLayout, Immutable)]
pub(crate) struct fuse_attr_out {
    pub(crate) attr_valid: u64,
    pub(crate) attr_valid_nsec: u32,
    pub(crate) dummy: u32,
    pub(crate) attr: fuse_attr,
}
const _: () = assert!(size_of::<fuse_attr_out>() == 104);

#[repr(C)]
#[derive(Debug, Clone, Copy, Default, FromBytes, IntoBytes, KnownLayout, Immutable)]
pub(crate) struct fuse_mknod_in {
    pub(crate) mode: u32,
    pub(crate) rdev: u32,
    pub(crate) umask: u32,
    pub(crate) padding: u32,
}
const _: () = assert!(size_of::<fuse_mknod_in>() == 16);

#[repr(C)]
#[derive(Debug, Clone, Copy, Default, FromBytes, IntoBytes, KnownLayout, Immutable)]
pub(crate) struct fuse_mkdir_in {
    pub(crate) mode: u32,
    pub(crate) umask: u32,
}
const _: () = assert!(size_of::<fuse_mkdir_in>() == 8);

#[repr(C)]
#[derive(Debug, Clone, Copy, Default, FromBytes, IntoBytes, KnownLayout, Immutable)]
pub(crate) struct fuse_rename_in {
    pub(crate) newdir: u64,
}
const _: () = assert!(size_of::<fuse_rename_in>() == 8);

#[repr(C)]
#[derive(Debug, Clone, Copy, Default, FromBytes, IntoBytes, KnownLayout, Immutable)]
pub(crate) struct fuse_rename2_in {
    pub(crate) newdir: u64,
    pub(crate) flags: u32,
    pub(crate) padding: u32,
}
const _: () = assert!(size_of::<fuse_rename2_in>() == 16);

#[repr(C)]
#[derive(Debug, Clone, Copy, Default, FromBytes, IntoBytes, KnownLayout, Immutable)]
pub(crate) struct fuse_link_in {
    pub(crate) oldnodeid: u64,
}
const _: () = assert!(size_of::<fuse_link_in>() == 8);

#[repr(C)]
#[derive(Debug, Clone, Copy, Default, FromBytes, IntoBytes, KnownLayout, Immutable)]
pub(crate) struct fuse_setattr_in {
    /// Which of the fields below are meaningful: a set of FATTR_* bits.
    pub(crate) valid: u32,
    pub(crate) padding: u32,
    pub(crate) fh: u64,
    pub(crate) size: u64,
    pub(crate) lock_owner: u64,
    pub(crate) atime: u64,
    pub(crate) mtime: u64,
    pub(crate) ctime: u64,
    pub(crate) atimensec: u32,
    pub(crate) mtimensec: u32,
    pub(crate) ctimensec: u32,
    pub(crate) mode: u32,
    pub(crate) unused4: u32,
    pub(crate) uid: u32,
    pub(crate) gid: u32,
    pub(crate) unused5: u32,
}
const _: () = assert!(size_of::<fuse_setattr_in>() == 88);

#[repr(C)]
#[derive(Debug, Clone, Copy, Default, FromBytes, IntoBytes, KnownLayout, Immutable)]
pub(crate) struct fuse_open_in {
    pub(crate) flags: u32,
    /// FUSE_OPEN_* bits.
    pub(crate) open_flags: u32,
}
const _: () = assert!(size_of::<fuse_open_in>() == 8);

#[repr(C)]
#[derive(Debug, Clone, Copy, Default, FromBytes, IntoBytes, KnownLayout, Immutable)]
pub(crate) struct fuse_create_in {
    pub(crate) flags: u32,
    pub(crate) mode: u32,
    pub(crate) umask: u32,
    /// FUSE_OPEN_* bits.
    pub(crate) open_flags: u32,
}
const _: () = assert!(size_of::<fuse_create_in>() == 16);

#[repr(C)]
#[derive(Debug, Clone, Copy, Default, FromBytes, IntoBytes, KnownLayout, Immutable)]
pub(crate) struct fuse_open_out {
    pub(crate) fh: u64,
    /// FOPEN_* bits.
    pub(crate) open_flags: u32,
    pub(crate) backing_id: i32,
}
const _: () = assert!(size_of::<fuse_open_out>() == 16);

#[repr(C)]
#[derive(Debug, Clone, Copy, Default, FromBytes, IntoBytes, KnownLayout, Immutable)]
pub(crate) struct fuse_release_in {
    pub(crate) fh: u64,
    pub(crate) flags: u32,
    pub(crate) release_flags: u32,
    pub(crate) lock_owner: u64,
}
const _: () = assert!(size_of::<fuse_release_in>() == 24);

#[repr(C)]
#[derive(Debug, Clone, Copy, Default, FromBytes, IntoBytes, KnownLayout, Immutable)]
pub(crate) struct fuse_flush_in {
    pub(crate) fh: u64,
    pub(crate) unused: u32,
    pub(crate) padding: u32,
    pub(crate) lock_owner: u64,
}
const _: () = assert!(size_of::<fuse_flush_in>() == 24);

#[repr(C)]
#[derive(Debug, Clone, Copy, Default, FromBytes, IntoBytes, KnownLayout, Immutable)]
pub(crate) struct fuse_read_in {
    pub(crate) fh: u64,
    pub(crate) offset: u64,
    pub(crate) size: u32,
    pub(crate) read_flags: u32,
    pub(crate) lock_owner: u64,
    pub(crate) flags: u32,
    pub(crate) padding: u32,
}
const _: () = assert!(size_of::<fuse_read_in>() == 40);

#[repr(C)]
#[derive(Debug, Clone, Copy, Default, FromBytes, IntoBytes, KnownLayout, Immutable)]
pub(crate) struct fuse_write_in {
    pub(crate) fh: u64,
    pub(crate) offset: u64,
    pub(crate) size: u32,
    pub(crate) write_flags: u32,
    pub(crate) lock_owner: u64,
    pub(crate) flags: u32,
    pub(crate) padding: u32,
}
const _: () = assert!(size_of::<fuse_write_in>() == 40);

#[repr(C)]
#[derive(Debug, Clone, Copy, Default, FromBytes, IntoBytes, KnownLayout, Immutable)]
pub(crate) struct fuse_write_out {
    pub(crate) size: u32,
    pub(crate) padding: u32,
}
const _: () = assert!(size_of::<fuse_write_out>() == 8);

#[repr(C)]
#[derive(Debug, Clone, Copy, Default, FromBytes, IntoBytes, KnownLayout, Immutable)]
pub(crate) struct fuse_statfs_out {
    pub(crate) st: fuse_kstatfs,
}
const _: () = assert!(size_of::<fuse_statfs_out>() == 80);

#[repr(C)]
#[derive(Debug, Clone, Copy, Default, FromBytes, IntoBytes, KnownLayout, Immutable)]
pub(crate) struct fuse_fsync_in {
    pub(crate) fh: u64,
    pub(crate) fsync_flags: u32,
    pub(crate) padding: u32,
}
const _: () = assert!(size_of::<fuse_fsync_in>() == 16);

/// The FUSE_SETXATTR_EXT form. Without that flag the kernel sends only the first
/// [`FUSE_COMPAT_SETXATTR_IN_SIZE`] bytes (`size` and `flags`), then the name.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, FromBytes, IntoBytes, KnownLayout, Immutable)]
pub(crate) struct fuse_setxattr_in {
    pub(crate) size: u32,
    pub(crate) flags: u32,
    pub(crate) setxattr_flags: u32,
    pub(crate) padding: u32,
}
const _: () = assert!(size_of::<fuse_setxattr_in>() == 16);

#[repr(C)]
#[derive(Debug, Clone, Copy, Default, FromBytes, IntoBytes, KnownLayout, Immutable)]
pub(crate) struct fuse_getxattr_in {
    pub(crate) size: u32,
    pub(crate) padding: u32,
}
const _: () = assert!(size_of::<fuse_getxattr_in>() == 8);

#[repr(C)]
#[derive(Debug, Clone, Copy, Default, FromBytes, IntoBytes, KnownLayout, Immutable)]
pub(crate) struct fuse_getxattr_out {
    pub(crate) size: u32,
    pub(crate) padding: u32,
}
const _: () = assert!(size_of::<fuse_getxattr_out>() == 8);

#[repr(C)]
#[derive(Debug, Clone, Copy, Default, FromBytes, IntoBytes, KnownLayout, Immutable)]
pub(crate) struct fuse_lk_in {
    pub(crate) fh: u64,
    pub(crate) owner: u64,
    pub(crate) lk: fuse_file_lock,
    pub(crate) lk_flags: u32,
    pub(crate) padding: u32,
}
const _: () = assert!(size_of::<fuse_lk_in>() == 48);

#[repr(C)]
#[derive(Debug, Clone, Copy, Default, FromBytes, IntoBytes, KnownLayout, Immutable)]
pub(crate) struct fuse_lk_out {
    pub(crate) lk: fuse_file_lock,
}
const _: () = assert!(size_of::<fuse_lk_out>() == 24);

#[repr(C)]
#[derive(Debug, Clone, Copy, Default, FromBytes, IntoBytes, KnownLayout, Immutable)]
pub(crate) struct fuse_access_in {
    pub(crate) mask: u32,
    pub(crate) padding: u32,
}
const _: () = assert!(size_of::<fuse_access_in>() == 8);

#[repr(C)]
#[derive(Debug, Clone, Copy, Default, FromBytes, IntoBytes, KnownLayout, Immutable)]
pub(crate) struct fuse_init_in {
    pub(crate) major: u32,
    pub(crate) minor: u32,
    pub(crate) max_readahead: u32,
    pub(crate) flags: u32,
    /// INIT flag bits 32..63; meaningful only when `flags` has FUSE_INIT_EXT.
    pub(crate) flags2: u32,
    pub(crate) unused: [u32; 11],
}
const _: () = assert!(size_of::<fuse_init_in>() == 64);

#[repr(C)]
#[derive(Debug, Clone, Copy, Default, FromBytes, IntoBytes, KnownLayout, Immutable)]
pub(crate) struct fuse_init_out {
    pub(crate) major: u32,
    pub(crate) minor: u32,
    pub(crate) max_readahead: u32,
    pub(crate) flags: u32,
    pub(crate) max_background: u16,
    pub(crate) congestion_threshold: u16,
    pub(crate) max_write: u32,
    pub(crate) time_gran: u32,
    /// Read only by the kernel when `flags` has FUSE_MAX_PAGES.
    pub(crate) max_pages: u16,
    pub(crate) map_alignment: u16,
    /// INIT flag bits 32..63; read only by the kernel when `flags` has FUSE_INIT_EXT.
    pub(crate) flags2: u32,
    pub(crate) max_stack_depth: u32,
    pub(crate) request_timeout: u16,
    pub(crate) unused: [u16; 11],
}
const _: () = assert!(size_of::<fuse_init_out>() == 64);

#[repr(C)]
#[derive(Debug, Clone, Copy, Default, FromBytes, IntoBytes, KnownLayout, Immutable)]
pub(crate) struct fuse_interrupt_in {
    pub(crate) unique: u64,
}
const _: () = assert!(size_of::<fuse_interrupt_in>() == 8);

#[repr(C)]
#[derive(Debug, Clone, Copy, Default, FromBytes, IntoBytes, KnownLayout, Immutable)]
pub(crate) struct fuse_bmap_in {
    pub(crate) block: u64,
    pub(crate) blocksize: u32,
    pub(crate) padding: u32,
}
const _: () = assert!(size_of::<fuse_bmap_in>() == 16);

#[repr(C)]
#[derive(Debug, Clone, Copy, Default, FromBytes, IntoBytes, KnownLayout, Immutable)]
pub(crate) struct fuse_bmap_out {
    pub(crate) block: u64,
}
const _: () = assert!(size_of::<fuse_bmap_out>() == 8);

#[repr(C)]
#[derive(Debug, Clone, Copy, Default, FromBytes, IntoBytes, KnownLayout, Immutable)]
pub(crate) struct fuse_ioctl_in {
    pub(crate) fh: u64,
    pub(crate) flags: u32,
    pub(crate) cmd: u32,
    pub(crate) arg: u64,
    pub(crate) in_size: u32,
    pub(crate) out_size: u32,
}
const _: () = assert!(size_of::<fuse_ioctl_in>() == 32);

#[repr(C)]
#[derive(Debug, Clone, Copy, Default, FromBytes, IntoBytes, KnownLayout, Immutable)]
pub(crate) struct fuse_ioctl_out {
    pub(crate) result: i32,
    pub(crate) flags: u32,
    pub(crate) in_iovs: u32,
    pub(crate) out_iovs: u32,
}
const _: () = assert!(size_of::<fuse_ioctl_out>() == 16);

#[repr(C)]
#[derive(Debug, Clone, Copy, Default, FromBytes, IntoBytes, KnownLayout, Immutable)]
pub(crate) struct fuse_poll_in {
    pub(crate) fh: u64,
    /// The kernel's handle for a later FUSE_NOTIFY_POLL wakeup.
    pub(crate) kh: u64,
    pub(crate) flags: u32,
    pub(crate) events: u32,
}
const _: () = assert!(size_of::<fuse_poll_in>() == 24);

#[repr(C)]
#[derive(Debug, Clone, Copy, Default, FromBytes, IntoBytes, KnownLayout, Immutable)]
pub(crate) struct fuse_poll_out {
    pub(crate) revents: u32,
    pub(crate) padding: u32,
}
const _: () = assert!(size_of::<fuse_poll_out>() == 8);

#[repr(C)]
#[derive(Debug, Clone, Copy, Default, FromBytes, IntoBytes, KnownLayout, Immutable)]
pub(crate) struct fuse_fallocate_in {
    pub(crate) fh: u64,
    pub(crate) offset: u64,
    pub(crate) length: u64,
    pub(crate) mode: u32,
    pub(crate) padding: u32,
}
const _: () = assert!(size_of::<fuse_fallocate_in>() == 32);

#[repr(C)]
#[derive(Debug, Clone, Copy, Default, FromBytes, IntoBytes, KnownLayout, Immutable)]
pub(crate) struct fuse_in_header {
    /// Length of the whole request: this header, the arguments and any extensions.
    pub(crate) len: u32,
    pub(crate) opcode: u32,
    pub(crate) unique: u64,
    pub(crate) nodeid: u64,
    pub(crate) uid: u32,
    pub(crate) gid: u32,
    pub(crate) pid: u32,
    /// Length of the extensions at the end of the request, in 8-byte units.
    pub(crate) total_extlen: u16,
    pub(crate) padding: u16,
}
const _: () = assert!(size_of::<fuse_in_header>() == 40);

#[repr(C)]
#[derive(Debug, Clone, Copy, Default, FromBytes, IntoBytes, KnownLayout, Immutable)]
pub(crate) struct fuse_out_header {
    /// Length of the whole reply, this header included.
    pub(crate) len: u32,
    /// Zero or a negated errno.
    pub(crate) error: i32,
    pub(crate) unique: u64,
}
const _: () = assert!(size_of::<fuse_out_header>() == 16);

/// The fixed part of a directory entry; `namelen` bytes of name follow, then zero padding up to
/// the next multiple of 8 ([`fuse_dirent_align`]).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, FromBytes, IntoBytes, KnownLayout, Immutable)]
pub(crate) struct fuse_dirent {
    pub(crate) ino: u64,
    /// The offset of the next entry, as later passed back in READDIR's `offset`.
    pub(crate) off: u64,
    pub(crate) namelen: u32,
    /// The `DT_*` type, which is the `S_IFMT` bits of the mode shifted right by 12.
    pub(crate) r#type: u32,
}
const _: () = assert!(size_of::<fuse_dirent>() == 24);

/// `FUSE_NAME_OFFSET`.
pub(crate) const FUSE_NAME_OFFSET: usize = size_of::<fuse_dirent>();

#[repr(C)]
#[derive(Debug, Clone, Copy, Default, FromBytes, IntoBytes, KnownLayout, Immutable)]
pub(crate) struct fuse_direntplus {
    pub(crate) entry_out: fuse_entry_out,
    pub(crate) dirent: fuse_dirent,
}
const _: () = assert!(size_of::<fuse_direntplus>() == 152);

/// `FUSE_NAME_OFFSET_DIRENTPLUS`.
pub(crate) const FUSE_NAME_OFFSET_DIRENTPLUS: usize = size_of::<fuse_direntplus>();

/// `FUSE_DIRENT_ALIGN(x)`: directory records are padded to a multiple of 8 bytes.
pub(crate) const fn fuse_dirent_align(len: usize) -> usize {
    (len + size_of::<u64>() - 1) & !(size_of::<u64>() - 1)
}

#[repr(C)]
#[derive(Debug, Clone, Copy, Default, FromBytes, IntoBytes, KnownLayout, Immutable)]
pub(crate) struct fuse_lseek_in {
    pub(crate) fh: u64,
    pub(crate) offset: u64,
    pub(crate) whence: u32,
    pub(crate) padding: u32,
}
const _: () = assert!(size_of::<fuse_lseek_in>() == 24);

#[repr(C)]
#[derive(Debug, Clone, Copy, Default, FromBytes, IntoBytes, KnownLayout, Immutable)]
pub(crate) struct fuse_lseek_out {
    pub(crate) offset: u64,
}
const _: () = assert!(size_of::<fuse_lseek_out>() == 8);

#[repr(C)]
#[derive(Debug, Clone, Copy, Default, FromBytes, IntoBytes, KnownLayout, Immutable)]
pub(crate) struct fuse_copy_file_range_in {
    pub(crate) fh_in: u64,
    pub(crate) off_in: u64,
    pub(crate) nodeid_out: u64,
    pub(crate) fh_out: u64,
    pub(crate) off_out: u64,
    pub(crate) len: u64,
    pub(crate) flags: u64,
}
const _: () = assert!(size_of::<fuse_copy_file_range_in>() == 56);

/// FUSE_NOTIFY_INVAL_INODE: drop the cached attributes of `ino`, and, when `off` >= 0, its cached
/// pages from `off` for `len` bytes (`len` <= 0: to the end of the file).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, FromBytes, IntoBytes, KnownLayout, Immutable)]
pub(crate) struct fuse_notify_inval_inode_out {
    pub(crate) ino: u64,
    pub(crate) off: i64,
    pub(crate) len: i64,
}
const _: () = assert!(size_of::<fuse_notify_inval_inode_out>() == 24);

// FUSE-over-io_uring (`linux/fuse.h`, protocol 7.42+): each ring entry is a header buffer laid
// out as `fuse_uring_req_header` plus a payload buffer, registered with an
// `IORING_OP_URING_CMD` whose 80-byte command area holds a `fuse_uring_cmd_req`.

/// Bytes of `fuse_uring_req_header::in_out` (a `fuse_in_header` or `fuse_out_header`).
pub const FUSE_URING_IN_OUT_HEADER_SZ: usize = 128;
/// Bytes of `fuse_uring_req_header::op_in` (the opcode's argument struct).
pub const FUSE_URING_OP_IN_OUT_SZ: usize = 128;
/// `enum fuse_uring_cmd`: register an entry's buffers and wait for a request.
pub const FUSE_IO_URING_CMD_REGISTER: u32 = 1;
/// `enum fuse_uring_cmd`: commit the reply in an entry and wait for the next request.
pub const FUSE_IO_URING_CMD_COMMIT_AND_FETCH: u32 = 2;

/// The trailer of an entry's header buffer.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, FromBytes, IntoBytes, KnownLayout, Immutable)]
pub(crate) struct fuse_uring_ent_in_out {
    pub(crate) flags: u64,
    /// The request's id, to be echoed in the commit command.
    pub(crate) commit_id: u64,
    /// Bytes used in the payload buffer: the request's, then the reply's.
    pub(crate) payload_sz: u32,
    pub(crate) padding: u32,
    pub(crate) reserved: u64,
}
const _: () = assert!(size_of::<fuse_uring_ent_in_out>() == 32);

/// An entry's header buffer: `in_out`, `op_in`, then `ring_ent_in_out`.
#[repr(C)]
#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, KnownLayout, Immutable)]
pub(crate) struct fuse_uring_req_header {
    pub(crate) in_out: [u8; FUSE_URING_IN_OUT_HEADER_SZ],
    pub(crate) op_in: [u8; FUSE_URING_OP_IN_OUT_SZ],
    pub(crate) ring_ent_in_out: fuse_uring_ent_in_out,
}
const _: () = assert!(size_of::<fuse_uring_req_header>() == 288);

/// The command area of a FUSE `IORING_OP_URING_CMD` (its first 24 of 80 bytes).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, FromBytes, IntoBytes, KnownLayout, Immutable)]
pub(crate) struct fuse_uring_cmd_req {
    pub(crate) flags: u64,
    /// For COMMIT_AND_FETCH: the `commit_id` of the request being answered.
    pub(crate) commit_id: u64,
    /// The queue: the CPU whose requests it serves.
    pub(crate) qid: u16,
    pub(crate) padding: [u8; 6],
}
const _: () = assert!(size_of::<fuse_uring_cmd_req>() == 24);
