//! How request bytes arrive from the kernel and reply bytes leave for it.
//!
//! [`Transport`] is the seam between the protocol (decoding, dispatch, reply encoding) and the
//! channel. [`ClassicTransport`] reads and writes `/dev/fuse`; a FUSE-over-io_uring transport
//! (`FUSE_IO_URING_CMD_REGISTER`, then `FUSE_IO_URING_CMD_COMMIT_AND_FETCH` per request) will
//! implement the same trait, delivering the same `fuse_in_header`, argument struct and payload in
//! ring buffers ([`super::request::Request::parse_split`]) and taking replies in the same vectored
//! form.

use std::fs::{File, OpenOptions};
use std::io::{self, IoSlice, Read, Write};
use std::mem::size_of;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use super::abi;

/// The outcome of waiting for a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Received {
    /// One whole request of this many bytes is at the start of the buffer.
    Request(usize),
    /// The file system was unmounted (or the connection aborted): no request will come again.
    Unmounted,
}

/// Where the replies to requests go: a `/dev/fuse` fd, or a FUSE-over-io_uring ring entry
/// ([`super::uring`]).
pub trait ReplyChannel {
    /// Sends one reply. `iov[0]` is the whole `fuse_out_header`; the other slices, concatenated,
    /// are the body. The reply must go out in one piece or not at all.
    fn send(&self, iov: &[IoSlice<'_>]) -> io::Result<()>;
}

/// A `/dev/fuse`-style channel to the kernel's FUSE connection: requests are read from it, and
/// replies and notifications written to it.
///
/// Implementation: [`ClassicTransport`] (`read`/`writev` on a `/dev/fuse` fd). The
/// FUSE-over-io_uring queues ([`super::uring`]) receive in ring buffers instead and answer
/// through a [`ReplyChannel`] per entry.
pub trait Transport: ReplyChannel + Send + Sync {
    /// Blocks until one request arrives and places it at the start of `buf`. Transient
    /// conditions are retried inside; [`Received::Unmounted`] ends the session.
    fn receive(&self, buf: &mut [u8]) -> io::Result<Received>;
}

/// `/dev/fuse`, one fd per worker thread.
///
/// The kernel keeps a list of requests in processing per fd, and a reply is matched against the
/// list of the fd it is written to: each worker must answer on the fd it read from, which
/// [`super::reply::Reply`] guarantees by borrowing the transport the request came on.
#[derive(Debug)]
pub struct ClassicTransport {
    device: File,
}

impl ClassicTransport {
    /// Wraps the fd returned by [`super::mount::mount`].
    pub fn new(fd: OwnedFd) -> ClassicTransport {
        ClassicTransport { device: File::from(fd) }
    }

    /// A new fd attached to the same connection (`FUSE_DEV_IOC_CLONE`), so another thread can
    /// read requests and write replies without sharing this fd's processing list.
    pub fn clone_channel(&self) -> io::Result<ClassicTransport> {
        // std opens with O_CLOEXEC.
        let device = OpenOptions::new().read(true).write(true).open("/dev/fuse")?;
        let session_fd =
            u32::try_from(self.device.as_raw_fd()).map_err(|_| io::Error::from_raw_os_error(libc::EBADF))?;
        // FUSE_DEV_IOC_CLONE reads one u32 through the pointer; `device` is an open fd we own.
        // SAFETY: the pointer refers to a live local for the duration of the call.
        let rc = unsafe {
            libc::ioctl(device.as_raw_fd(), abi::FUSE_DEV_IOC_CLONE as libc::Ioctl, &session_fd as *const u32)
        };
        if rc == -1 {
            return Err(io::Error::last_os_error());
        }
        Ok(ClassicTransport { device })
    }
}

impl Transport for ClassicTransport {
    /// Retries EINTR (a signal), EAGAIN (no request yet) and ENOENT (the request was interrupted
    /// and withdrawn between being queued and being read); maps ENODEV to
    /// [`Received::Unmounted`]. The loop ends when a request arrives or the connection ends.
    fn receive(&self, buf: &mut [u8]) -> io::Result<Received> {
        assert!(buf.len() >= abi::FUSE_MIN_READ_BUFFER, "the kernel refuses reads into {} bytes", buf.len());
        loop {
            match (&self.device).read(buf) {
                // The kernel never returns 0 on a live connection; treat it as the end.
                Ok(0) => return Ok(Received::Unmounted),
                Ok(len) => return Ok(Received::Request(len)),
                Err(err) => match err.raw_os_error() {
                    Some(libc::EINTR | libc::EAGAIN | libc::ENOENT) => continue,
                    Some(libc::ENODEV) => return Ok(Received::Unmounted),
                    _ => return Err(err),
                },
            }
        }
    }
}

impl AsFd for ClassicTransport {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.device.as_fd()
    }
}

impl ReplyChannel for ClassicTransport {
    /// One `writev(2)`: the kernel consumes a reply whole or fails it.
    fn send(&self, iov: &[IoSlice<'_>]) -> io::Result<()> {
        let len: usize = iov.iter().map(|part| part.len()).sum();
        let written = (&self.device).write_vectored(iov)?;
        if written != len {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                format!("short write of a FUSE reply: {written} of {len} bytes"),
            ));
        }
        Ok(())
    }
}

const PAGE_SIZE: usize = 4096;

/// Bytes in front of a WRITE request's data: `fuse_in_header` (40) + `fuse_write_in` (40).
pub const WRITE_PAYLOAD_OFFSET: usize = size_of::<abi::fuse_in_header>() + size_of::<abi::fuse_write_in>();
const _: () = assert!(WRITE_PAYLOAD_OFFSET == 80);

/// Room for the largest request beyond the WRITE payload (the headers, or the longest names and
/// xattr values of other requests); the kernel insists on at least 8 KiB in any case.
const REQUEST_OVERHEAD_MAX: usize = 8 * 1024;

#[repr(C, align(4096))]
#[derive(Clone, Copy, FromBytes, IntoBytes, KnownLayout, Immutable)]
struct Page([u8; PAGE_SIZE]);

/// A request buffer in which WRITE data lands 4096-byte aligned.
///
/// The kernel writes a request at the start of the buffer given to `read(2)`, and a WRITE's data
/// follows its 80 bytes of headers. So the buffer is a run of 4096-aligned pages and reads go in
/// at offset 4096 - 80 = 4016 of the first page: the data then starts exactly at the second page.
/// Worked example for a 1 MiB WRITE: header at 4016..4056, `fuse_write_in` at 4056..4096, data at
/// 4096..1052672. The engine hands that slice to an O_DIRECT write as it is, with no bounce copy.
/// Other requests are unaffected by where they start.
pub struct RequestBuffer {
    pages: Vec<Page>,
    /// Bytes usable from the read offset: `max_write` plus [`REQUEST_OVERHEAD_MAX`].
    capacity: usize,
}

impl RequestBuffer {
    const READ_OFFSET: usize = PAGE_SIZE - WRITE_PAYLOAD_OFFSET;

    pub fn new(max_write: u32) -> RequestBuffer {
        let capacity = max_write as usize + REQUEST_OVERHEAD_MAX;
        let page_count = (Self::READ_OFFSET + capacity).div_ceil(PAGE_SIZE);
        RequestBuffer { pages: vec![Page([0; PAGE_SIZE]); page_count], capacity }
    }

    /// Where the transport should place the next request.
    pub fn read_area(&mut self) -> &mut [u8] {
        let range = Self::READ_OFFSET..Self::READ_OFFSET + self.capacity;
        &mut self.pages.as_mut_bytes()[range]
    }

    /// The request of `len` bytes last placed in [`RequestBuffer::read_area`].
    pub fn request(&self, len: usize) -> &[u8] {
        assert!(len <= self.capacity);
        &self.pages.as_bytes()[Self::READ_OFFSET..Self::READ_OFFSET + len]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_payload_lands_page_aligned() {
        let mut buf = RequestBuffer::new(1 << 20);
        let area = buf.read_area();
        assert!(area.len() >= (1 << 20) + WRITE_PAYLOAD_OFFSET);
        let payload = &area[WRITE_PAYLOAD_OFFSET..];
        assert_eq!(payload.as_ptr() as usize % PAGE_SIZE, 0);
        assert!(payload.len() >= 1 << 20);
        let request = buf.request(WRITE_PAYLOAD_OFFSET + 4096);
        assert_eq!(request[WRITE_PAYLOAD_OFFSET..].as_ptr() as usize % PAGE_SIZE, 0);
    }
}
