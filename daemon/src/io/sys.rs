//! Every system call of device setup goes through [`syscall`], which unit tests can intercept to
//! reach the paths this machine cannot produce (a file system without `O_DIRECT`, a device with
//! 8 KiB sectors, a busy block device).
//!
//! Ring and arena calls do not go through here: they are exercised against the real kernel.

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

/// `BLKGETSIZE64` is `_IOR(0x12, 114, size_t)`; the libc crate does not define it.
const BLKGETSIZE64: libc::Ioctl = ioctl_read(0x12, 114, std::mem::size_of::<u64>());

/// The asm-generic `_IOR` encoding (x86, arm, riscv): direction 2 in bits 30..32, size in bits
/// 16..30, type in bits 8..16, number in bits 0..8. `_IOR(0x12, 114, 8)` is 0x8008_1272.
const fn ioctl_read(kind: u32, number: u32, size: usize) -> libc::Ioctl {
    ((2 << 30) | ((size as u32) << 16) | (kind << 8) | number) as libc::Ioctl
}

const _: () = assert!(BLKGETSIZE64 as u32 == 0x8008_1272);

/// One system call with its arguments and out-parameters.
pub(crate) enum Syscall<'a> {
    Open {
        path: &'a CStr,
        flags: libc::c_int,
    },
    Flock {
        fd: BorrowedFd<'a>,
        operation: libc::c_int,
    },
    /// `statx(dirfd, path, flags, mask)`; an fd with an empty path and `AT_EMPTY_PATH` stats the fd.
    Statx {
        dirfd: libc::c_int,
        path: &'a CStr,
        flags: libc::c_int,
        statx: &'a mut libc::statx,
    },
    BlkGetSize64 {
        fd: BorrowedFd<'a>,
        size: &'a mut u64,
    },
    BlkSszGet {
        fd: BorrowedFd<'a>,
        size: &'a mut libc::c_int,
    },
}

/// Runs `call`; returns the non-negative result or the errno as an error.
pub(crate) fn syscall(mut call: Syscall<'_>) -> io::Result<libc::c_int> {
    #[cfg(test)]
    if let Some(result) = fake::intercept(&mut call) {
        return result;
    }
    let status = real(&mut call);
    if status < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(status)
}

/// The statx mask device setup asks for.
pub(crate) const STATX_MASK: libc::c_uint = libc::STATX_TYPE | libc::STATX_SIZE | libc::STATX_DIOALIGN;

fn real(call: &mut Syscall<'_>) -> libc::c_int {
    match call {
        // SAFETY: path is a NUL-terminated string that outlives the call.
        Syscall::Open { path, flags } => unsafe { libc::open(path.as_ptr(), *flags) },
        // SAFETY: flock only reads its integer arguments.
        Syscall::Flock { fd, operation } => unsafe { libc::flock(fd.as_raw_fd(), *operation) },
        Syscall::Statx { dirfd, path, flags, statx } => {
            // SAFETY: path is NUL-terminated and statx points to a writable libc::statx.
            unsafe { libc::statx(*dirfd, path.as_ptr(), *flags, STATX_MASK, &mut **statx) }
        }
        Syscall::BlkGetSize64 { fd, size } => {
            // SAFETY: BLKGETSIZE64 writes one u64 through the pointer, which is valid.
            unsafe { libc::ioctl(fd.as_raw_fd(), BLKGETSIZE64, &mut **size as *mut u64) }
        }
        Syscall::BlkSszGet { fd, size } => {
            // SAFETY: BLKSSZGET writes one int through the pointer, which is valid.
            unsafe { libc::ioctl(fd.as_raw_fd(), libc::BLKSSZGET, &mut **size as *mut libc::c_int) }
        }
    }
}

/// A zeroed `statx` buffer.
pub(crate) fn statx_zeroed() -> libc::statx {
    // SAFETY: libc::statx is a plain C struct of integers, for which all-zero bytes are valid.
    unsafe { std::mem::zeroed() }
}

#[cfg(test)]
pub(crate) mod fake {
    //! A per-thread hook that sees each call before the kernel does. It returns `Some(result)` to
    //! replace the call, or `None` to let it through. A hook that only edits a result runs the
    //! call itself with [`passthrough`] and returns `Some` of that.

    use super::Syscall;
    use std::cell::Cell;
    use std::io;

    pub(crate) type Hook = fn(&mut Syscall<'_>) -> Option<io::Result<libc::c_int>>;

    thread_local! {
        static HOOK: Cell<Option<Hook>> = const { Cell::new(None) };
    }

    pub(super) fn intercept(call: &mut Syscall<'_>) -> Option<io::Result<libc::c_int>> {
        HOOK.with(|hook| hook.get()).and_then(|hook| hook(call))
    }

    /// Installs `hook` for the current thread until the returned guard is dropped.
    pub(crate) fn install(hook: Hook) -> Installed {
        HOOK.with(|cell| cell.set(Some(hook)));
        Installed(())
    }

    pub(crate) struct Installed(());

    impl Drop for Installed {
        fn drop(&mut self) {
            HOOK.with(|cell| cell.set(None));
        }
    }

    /// Runs the real call, for hooks that only edit its results.
    pub(crate) fn passthrough(call: &mut Syscall<'_>) -> io::Result<libc::c_int> {
        let status = super::real(call);
        if status < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(status)
    }
}
