//! The client's one doorway to `ioctl(2)`, the only `unsafe` code of the collection API.
//!
//! The collection ioctls are FUSE "restricted" ioctls: the kernel copies exactly the size encoded
//! in the command number from the argument pointer to the daemon, and the same number of bytes
//! back, following no pointers inside. So the whole contract is "the argument is a writable buffer
//! of exactly that size", which [`ioctl`] asserts before it calls the kernel.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

/// The argument size encoded in an ioctl command number (`_IOC_SIZE`, asm-generic encoding:
/// bits 16..30).
pub(crate) const fn ioc_size(cmd: u32) -> usize {
    ((cmd >> 16) & 0x3fff) as usize
}

/// Issues ioctl `cmd` on `fd` with `arg` as its in/out argument.
///
/// Panics unless `arg` is exactly as long as the size `cmd` encodes: a mismatch is a programmer
/// error, and a shorter buffer would let the kernel write past it.
pub(crate) fn ioctl(fd: BorrowedFd<'_>, cmd: u32, arg: &mut [u8]) -> io::Result<()> {
    assert_eq!(arg.len(), ioc_size(cmd), "ioctl {cmd:#x}: argument of {} bytes", arg.len());
    // `fd` is a live descriptor (borrowed for the call). The kernel reads and writes at most
    // `ioc_size(cmd)` bytes at `arg`'s pointer (the command is one of VexFS's restricted ioctls,
    // which carry no embedded pointers), and `arg` is a unique, writable borrow of exactly that many
    // bytes, asserted above; for a size of 0 the pointer is not dereferenced.
    // SAFETY: as explained above, the kernel touches only `arg`'s bytes.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), cmd as libc::Ioctl, arg.as_mut_ptr()) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use vexfs_format::ioctl as wire;

    #[test]
    fn ioc_size_decodes_the_command_numbers() {
        assert_eq!(ioc_size(wire::IOC_CREATE), size_of::<wire::Create>());
        assert_eq!(ioc_size(wire::IOC_INSERT), size_of::<wire::Insert>());
        assert_eq!(ioc_size(wire::IOC_KNN), size_of::<wire::Search>());
        assert_eq!(ioc_size(wire::IOC_RANGE), size_of::<wire::Search>());
        assert_eq!(ioc_size(wire::IOC_STATS), size_of::<wire::Stats>());
        assert_eq!(ioc_size(wire::IOC_DELETE), size_of::<wire::Delete>());
        assert_eq!(ioc_size(wire::IOC_SYNC), 0);
    }
}
