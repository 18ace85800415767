//! Safe wrappers over the system calls the tests use that `std` does not offer.
//!
//! Every `unsafe` block of the crate lives here. Each wrapper passes only pointers to live,
//! correctly sized Rust values or NUL-terminated strings, and turns `-1` into `io::Error`.

use std::ffi::{CStr, CString, OsStr};
use std::fs::File;
use std::io;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

pub fn cstring(path: &Path) -> CString {
    CString::new(path.as_os_str().as_bytes()).unwrap_or_else(|_| panic!("path {} contains a NUL byte", path.display()))
}

fn check(ret: libc::c_int) -> io::Result<()> {
    if ret == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn check_size(ret: libc::ssize_t) -> io::Result<usize> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret as usize)
    }
}

/// The errno of an `io::Error` (0 when it carries none), for assertions.
pub fn errno(err: &io::Error) -> i32 {
    err.raw_os_error().unwrap_or(0)
}

pub fn geteuid() -> u32 {
    // SAFETY: geteuid takes no arguments and cannot fail.
    unsafe { libc::geteuid() }
}

/// `renameat2(AT_FDCWD, from, AT_FDCWD, to, flags)` through the raw system call, so it does
/// not depend on the C library's wrapper.
pub fn renameat2(from: &Path, to: &Path, flags: libc::c_uint) -> io::Result<()> {
    let from = cstring(from);
    let to = cstring(to);
    // SAFETY: both paths are NUL-terminated strings that outlive the call; the other
    // arguments are plain integers, as SYS_renameat2 expects.
    let ret = unsafe {
        libc::syscall(libc::SYS_renameat2, libc::AT_FDCWD, from.as_ptr(), libc::AT_FDCWD, to.as_ptr(), flags)
    };
    if ret == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

pub fn fallocate(file: &File, mode: libc::c_int, offset: u64, len: u64) -> io::Result<()> {
    // SAFETY: the descriptor is open for the duration of the call (borrowed from `file`).
    check(unsafe { libc::fallocate(file.as_raw_fd(), mode, offset as libc::off_t, len as libc::off_t) })
}

/// `lseek` with any `whence`, including `SEEK_DATA` and `SEEK_HOLE`.
pub fn lseek(file: &File, offset: u64, whence: libc::c_int) -> io::Result<u64> {
    // SAFETY: the descriptor is open for the duration of the call (borrowed from `file`).
    let ret = unsafe { libc::lseek(file.as_raw_fd(), offset as libc::off_t, whence) };
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret as u64)
    }
}

pub fn syncfs(file: &File) -> io::Result<()> {
    // SAFETY: the descriptor is open for the duration of the call (borrowed from `file`).
    check(unsafe { libc::syncfs(file.as_raw_fd()) })
}

/// The fields of `statvfs` the tests look at.
#[derive(Clone, Copy, Debug)]
pub struct FsStats {
    pub block_size: u64,
    pub fragment_size: u64,
    pub blocks: u64,
    pub blocks_free: u64,
    pub blocks_available: u64,
    pub files: u64,
    pub files_free: u64,
    pub name_max: u64,
}

impl FsStats {
    pub fn free_bytes(&self) -> u64 {
        self.blocks_free * self.fragment_size
    }

    pub fn total_bytes(&self) -> u64 {
        self.blocks * self.fragment_size
    }
}

pub fn statvfs(path: &Path) -> io::Result<FsStats> {
    let path = cstring(path);
    // SAFETY: statvfs is plain old data; all-zero bytes are a valid value.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `path` is NUL-terminated and `st` is a live, writable statvfs.
    check(unsafe { libc::statvfs(path.as_ptr(), &mut st) })?;
    Ok(FsStats {
        block_size: st.f_bsize,
        fragment_size: st.f_frsize,
        blocks: st.f_blocks,
        blocks_free: st.f_bfree,
        blocks_available: st.f_bavail,
        files: st.f_files,
        files_free: st.f_ffree,
        name_max: st.f_namemax,
    })
}

/// One timestamp argument of `utimensat`.
#[derive(Clone, Copy, Debug)]
pub enum Time {
    Now,
    Omit,
    At { sec: i64, nsec: i64 },
}

impl Time {
    fn timespec(self) -> libc::timespec {
        let (tv_sec, tv_nsec) = match self {
            Time::Now => (0, libc::UTIME_NOW),
            Time::Omit => (0, libc::UTIME_OMIT),
            Time::At { sec, nsec } => (sec, nsec),
        };
        libc::timespec { tv_sec, tv_nsec }
    }
}

/// `utimensat(AT_FDCWD, path, [atime, mtime], 0)`.
pub fn utimens(path: &Path, atime: Time, mtime: Time) -> io::Result<()> {
    let path = cstring(path);
    let times = [atime.timespec(), mtime.timespec()];
    // SAFETY: `path` is NUL-terminated and `times` is an array of two timespecs, as required.
    check(unsafe { libc::utimensat(libc::AT_FDCWD, path.as_ptr(), times.as_ptr(), 0) })
}

// ---- extended attributes ----------------------------------------------------------------

fn xattr_name(name: &str) -> CString {
    CString::new(name).unwrap_or_else(|_| panic!("xattr name {name:?} contains a NUL byte"))
}

pub fn setxattr(path: &Path, name: &str, value: &[u8], flags: libc::c_int) -> io::Result<()> {
    let path = cstring(path);
    let name = xattr_name(name);
    // SAFETY: `path` and `name` are NUL-terminated; `value` is valid for `value.len()` bytes.
    check(unsafe { libc::setxattr(path.as_ptr(), name.as_ptr(), value.as_ptr().cast(), value.len(), flags) })
}

/// `getxattr` into a caller-sized buffer; returns the value's length.
pub fn getxattr_into(path: &Path, name: &str, buf: &mut [u8]) -> io::Result<usize> {
    let path = cstring(path);
    let name = xattr_name(name);
    // SAFETY: `path` and `name` are NUL-terminated; `buf` is writable for `buf.len()` bytes
    // (a zero length only queries the size and writes nothing).
    check_size(unsafe { libc::getxattr(path.as_ptr(), name.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) })
}

pub fn getxattr(path: &Path, name: &str) -> io::Result<Vec<u8>> {
    let size = getxattr_into(path, name, &mut [])?;
    let mut buf = vec![0u8; size];
    let len = getxattr_into(path, name, &mut buf)?;
    buf.truncate(len);
    Ok(buf)
}

pub fn listxattr(path: &Path) -> io::Result<Vec<String>> {
    let path_c = cstring(path);
    // SAFETY: a null buffer with size 0 asks only for the needed size.
    let size = check_size(unsafe { libc::listxattr(path_c.as_ptr(), std::ptr::null_mut(), 0) })?;
    let mut buf = vec![0u8; size];
    // SAFETY: `buf` is writable for `buf.len()` bytes.
    let len = check_size(unsafe { libc::listxattr(path_c.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) })?;
    buf.truncate(len);
    Ok(buf
        .split(|&b| b == 0)
        .filter(|name| !name.is_empty())
        .map(|name| String::from_utf8_lossy(name).into_owned())
        .collect())
}

pub fn removexattr(path: &Path, name: &str) -> io::Result<()> {
    let path = cstring(path);
    let name = xattr_name(name);
    // SAFETY: `path` and `name` are NUL-terminated.
    check(unsafe { libc::removexattr(path.as_ptr(), name.as_ptr()) })
}

// ---- directory streams (opendir/readdir/telldir/seekdir) ---------------------------------

/// One entry returned by `readdir`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirEntry {
    pub name: String,
    pub ino: u64,
    pub kind: u8,
}

/// A C library directory stream, for tests of `telldir`/`seekdir` cookies.
pub struct DirStream {
    dir: *mut libc::DIR,
}

impl DirStream {
    pub fn open(path: &Path) -> io::Result<DirStream> {
        let path = cstring(path);
        // SAFETY: `path` is NUL-terminated.
        let dir = unsafe { libc::opendir(path.as_ptr()) };
        if dir.is_null() {
            return Err(io::Error::last_os_error());
        }
        Ok(DirStream { dir })
    }

    /// The next entry, `None` at the end; `.` and `..` are returned like any other.
    pub fn next_entry(&mut self) -> io::Result<Option<DirEntry>> {
        // readdir signals errors only through errno, so clear it first.
        // SAFETY: __errno_location returns this thread's errno slot.
        unsafe { *libc::__errno_location() = 0 };
        // SAFETY: `self.dir` is an open stream owned by this value.
        let entry = unsafe { libc::readdir(self.dir) };
        if entry.is_null() {
            let err = io::Error::last_os_error();
            return if errno(&err) == 0 { Ok(None) } else { Err(err) };
        }
        // SAFETY: readdir returned a valid dirent that stays valid until the next call on
        // this stream; d_name is NUL-terminated. Everything is copied out before returning.
        let (name, ino, kind) = unsafe {
            let entry = &*entry;
            let name = CStr::from_ptr(entry.d_name.as_ptr());
            (String::from_utf8_lossy(name.to_bytes()).into_owned(), entry.d_ino, entry.d_type)
        };
        Ok(Some(DirEntry { name, ino, kind }))
    }

    /// Up to `count` entries other than `.` and `..`.
    pub fn read_names(&mut self, count: usize) -> io::Result<Vec<String>> {
        let mut names = Vec::with_capacity(count.min(4096));
        while names.len() < count {
            match self.next_entry()? {
                None => break,
                Some(entry) if entry.name == "." || entry.name == ".." => {}
                Some(entry) => names.push(entry.name),
            }
        }
        Ok(names)
    }

    pub fn tell(&mut self) -> i64 {
        // SAFETY: `self.dir` is an open stream owned by this value.
        unsafe { libc::telldir(self.dir) }
    }

    pub fn seek(&mut self, position: i64) {
        // SAFETY: `self.dir` is an open stream; `position` came from telldir on it.
        unsafe { libc::seekdir(self.dir, position) }
    }
}

impl Drop for DirStream {
    fn drop(&mut self) {
        // SAFETY: `self.dir` is open and is not used after this.
        unsafe { libc::closedir(self.dir) };
    }
}

// ---- running one operation as another user ------------------------------------------------

/// An operation for `run_as`. Paths are prepared before `fork`, so the child allocates
/// nothing and makes only async-signal-safe calls.
pub enum UserOp {
    Stat(CString),
    OpenRead(CString),
    OpenWrite(CString),
    Create(CString),
    Unlink(CString),
    Chmod(CString, libc::mode_t),
    Chown(CString, libc::uid_t, libc::gid_t),
    Utimens(CString, Time, Time),
}

impl UserOp {
    pub fn stat(path: &Path) -> UserOp {
        UserOp::Stat(cstring(path))
    }
    pub fn open_read(path: &Path) -> UserOp {
        UserOp::OpenRead(cstring(path))
    }
    pub fn open_write(path: &Path) -> UserOp {
        UserOp::OpenWrite(cstring(path))
    }
    pub fn create(path: &Path) -> UserOp {
        UserOp::Create(cstring(path))
    }
    pub fn unlink(path: &Path) -> UserOp {
        UserOp::Unlink(cstring(path))
    }
    pub fn chmod(path: &Path, mode: libc::mode_t) -> UserOp {
        UserOp::Chmod(cstring(path), mode)
    }
    pub fn chown(path: &Path, uid: libc::uid_t, gid: libc::gid_t) -> UserOp {
        UserOp::Chown(cstring(path), uid, gid)
    }
    pub fn utimens(path: &Path, atime: Time, mtime: Time) -> UserOp {
        UserOp::Utimens(cstring(path), atime, mtime)
    }

    /// Runs in the forked child: returns 0 or the errno of the failed call.
    fn perform(&self) -> i32 {
        // SAFETY (all arms): every path is a NUL-terminated CString owned by `self`, and
        // every other argument is a plain integer or a live stack value.
        let ret = match self {
            UserOp::Stat(path) => {
                // SAFETY: stat is plain old data; all-zero bytes are a valid value.
                let mut st: libc::stat = unsafe { std::mem::zeroed() };
                // SAFETY: see above; `st` is writable.
                unsafe { libc::stat(path.as_ptr(), &mut st) }
            }
            UserOp::OpenRead(path) => open_close(path, libc::O_RDONLY),
            UserOp::OpenWrite(path) => open_close(path, libc::O_WRONLY),
            UserOp::Create(path) => open_close(path, libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL),
            // SAFETY: see above.
            UserOp::Unlink(path) => unsafe { libc::unlink(path.as_ptr()) },
            // SAFETY: see above.
            UserOp::Chmod(path, mode) => unsafe { libc::chmod(path.as_ptr(), *mode) },
            // SAFETY: see above.
            UserOp::Chown(path, uid, gid) => unsafe { libc::chown(path.as_ptr(), *uid, *gid) },
            UserOp::Utimens(path, atime, mtime) => {
                let times = [atime.timespec(), mtime.timespec()];
                // SAFETY: see above; `times` holds two timespecs.
                unsafe { libc::utimensat(libc::AT_FDCWD, path.as_ptr(), times.as_ptr(), 0) }
            }
        };
        if ret == -1 {
            errno(&io::Error::last_os_error())
        } else {
            0
        }
    }
}

fn open_close(path: &CStr, flags: libc::c_int) -> libc::c_int {
    // SAFETY: `path` is NUL-terminated; the mode argument is read only with O_CREAT.
    let fd = unsafe { libc::open(path.as_ptr(), flags | libc::O_CLOEXEC, 0o644 as libc::c_uint) };
    if fd >= 0 {
        // SAFETY: `fd` was just opened by this function and is closed once.
        unsafe { libc::close(fd) };
        0
    } else {
        -1
    }
}

/// Child exit codes that mean "could not become the user"; errno values stay below them.
const EXIT_SETGROUPS: i32 = 250;
const EXIT_SETGID: i32 = 251;
const EXIT_SETUID: i32 = 252;

/// Runs `op` in a forked child with the given uid and gid (and no supplementary groups), and
/// returns 0 if it succeeded or the errno it failed with. The caller must be root.
pub fn run_as(uid: libc::uid_t, gid: libc::gid_t, op: &UserOp) -> io::Result<i32> {
    // SAFETY: the child calls only async-signal-safe functions (setgroups, setgid, setuid,
    // the file system calls in `perform`, and _exit) on memory prepared before the fork, so
    // forking from a multi-threaded test process is sound.
    let pid = unsafe { libc::fork() };
    if pid == -1 {
        return Err(io::Error::last_os_error());
    }
    if pid == 0 {
        // SAFETY: as above; each call gets valid arguments, and _exit never returns.
        unsafe {
            if libc::setgroups(0, std::ptr::null()) == -1 {
                libc::_exit(EXIT_SETGROUPS);
            }
            if libc::setgid(gid) == -1 {
                libc::_exit(EXIT_SETGID);
            }
            if libc::setuid(uid) == -1 {
                libc::_exit(EXIT_SETUID);
            }
            libc::_exit(op.perform());
        }
    }
    let status = wait_pid(pid, Duration::from_secs(30))?;
    if !libc::WIFEXITED(status) {
        return Err(io::Error::other(format!(
            "child running as uid {uid} ended without exiting (wait status {status:#x})"
        )));
    }
    match libc::WEXITSTATUS(status) {
        EXIT_SETGROUPS | EXIT_SETGID | EXIT_SETUID => Err(io::Error::other(format!(
            "child could not switch to uid {uid} gid {gid} (exit {})",
            libc::WEXITSTATUS(status)
        ))),
        code => Ok(code),
    }
}

/// Waits for a forked child, killing it once `timeout` passes.
fn wait_pid(pid: libc::pid_t, timeout: Duration) -> io::Result<libc::c_int> {
    let deadline = Instant::now() + timeout;
    loop {
        let mut status: libc::c_int = 0;
        // SAFETY: `pid` is our child and `status` is a live c_int.
        let ret = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if ret == -1 {
            return Err(io::Error::last_os_error());
        }
        if ret == pid {
            return Ok(status);
        }
        if Instant::now() > deadline {
            // SAFETY: `pid` is our unreaped child, so the id cannot have been reused.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            // SAFETY: as above.
            unsafe { libc::waitpid(pid, &mut status, 0) };
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("child {pid} did not finish within {timeout:?}"),
            ));
        }
        thread::sleep(Duration::from_millis(5));
    }
}

/// Sends `signal` to process `pid`.
pub fn kill(pid: u32, signal: libc::c_int) -> io::Result<()> {
    let pid = libc::pid_t::try_from(pid).map_err(io::Error::other)?;
    // SAFETY: kill takes plain integers. Callers pass the id of a child they have not reaped
    // yet, so the id still names that child.
    check(unsafe { libc::kill(pid, signal) })
}

/// `mkdtemp(parent/prefixXXXXXX)`: a new directory with mode 0700.
pub fn mkdtemp(parent: &Path, prefix: &str) -> io::Result<PathBuf> {
    let mut template = parent.join(format!("{prefix}XXXXXX")).into_os_string().into_vec();
    template.push(0);
    // SAFETY: `template` is a writable NUL-terminated buffer ending in six X characters.
    let ret = unsafe { libc::mkdtemp(template.as_mut_ptr().cast()) };
    if ret.is_null() {
        return Err(io::Error::last_os_error());
    }
    template.pop();
    Ok(PathBuf::from(OsStr::from_bytes(&template)))
}

/// True when `path` is on a tmpfs.
pub fn is_tmpfs(path: &Path) -> io::Result<bool> {
    let path = cstring(path);
    // SAFETY: statfs is plain old data; all-zero bytes are a valid value.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: `path` is NUL-terminated and `st` is a live, writable statfs.
    check(unsafe { libc::statfs(path.as_ptr(), &mut st) })?;
    Ok(st.f_type == libc::TMPFS_MAGIC)
}
