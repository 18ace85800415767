//! Opening a device: an image file or a block device, locked and measured.
//!
//! Invariants of an open [`Device`]:
//! - It holds a `flock` on its open file: exclusive by default, shared for non-exclusive opens, so
//!   a second daemon, mkfs, or a read-only fsck is refused while a writer has the device. A block
//!   device opened exclusively is also opened with `O_EXCL`, which the kernel refuses while the
//!   device is mounted or claimed by another `O_EXCL` opener; `flock` alone would miss a user that
//!   reaches the same disk through another device node.
//! - `size_bytes` is a positive multiple of 4096 (a partial last block is not used), and the
//!   logical block size and the DMA alignment both divide 4096.

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::sys::{self, statx_zeroed, Syscall};
use super::{IO_ALIGN, IO_ALIGN_U64};
use crate::storage::Geometry;

/// How to open a [`Device`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeviceOptions {
    /// Open `O_RDONLY`, for inspection tools. Writes through such a device are a programming error.
    pub read_only: bool,
    /// Take the exclusive lock (and `O_EXCL` for block devices). Without it the device takes a
    /// shared lock: other non-exclusive openers may coexist, an exclusive holder may not.
    pub exclusive: bool,
}

impl Default for DeviceOptions {
    /// Read-write and exclusive, as the daemon and mkfs open a device.
    fn default() -> DeviceOptions {
        DeviceOptions { read_only: false, exclusive: true }
    }
}

impl DeviceOptions {
    /// Read-only and shared, as fsck-like tools open a device.
    pub fn inspect() -> DeviceOptions {
        DeviceOptions { read_only: true, exclusive: false }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceKind {
    /// A regular file holding a disk image.
    File,
    Block,
}

/// Why a device could not be opened. Every message names the path.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DeviceError {
    #[error("device {}: no such file or device", path.display())]
    NotFound { path: PathBuf },
    #[error("device {} is neither a regular file nor a block device", path.display())]
    NotFileOrBlockDevice { path: PathBuf },
    #[error("device {} is in use by another process (already mounted?)", path.display())]
    InUse { path: PathBuf },
    #[error("device {}: permission denied ({source})", path.display())]
    Permission { path: PathBuf, source: io::Error },
    #[error("device {}: {reason}", path.display())]
    Geometry { path: PathBuf, reason: String },
    #[error("device {}: {op}: {source}", path.display())]
    Open { path: PathBuf, op: &'static str, source: io::Error },
}

/// An open, locked device. Closing it (drop) releases the lock once no ring holds the file.
#[derive(Debug)]
pub struct Device {
    fd: OwnedFd,
    path: PathBuf,
    kind: DeviceKind,
    geometry: Geometry,
    direct: bool,
    read_only: bool,
}

impl Device {
    /// Opens `path` (a regular file or a block device), locks it and reads its geometry.
    pub fn open(path: impl AsRef<Path>, options: &DeviceOptions) -> Result<Device, DeviceError> {
        let path = path.as_ref();
        let c_path = CString::new(path.as_os_str().as_bytes()).map_err(|_| DeviceError::Open {
            path: path.to_owned(),
            op: "open",
            source: io::Error::from(io::ErrorKind::InvalidInput),
        })?;
        let probe = stat_path(path, &c_path)?;
        let kind = kind_of(path, &probe)?;
        let (fd, direct) = open_fd(path, &c_path, kind, options, &probe)?;
        lock(path, fd.as_fd(), options)?;
        let geometry = measure(path, fd.as_fd(), kind, direct)?;
        tracing::debug!(path = %path.display(), ?kind, direct, ?geometry, "device open");
        let read_only = options.read_only;
        Ok(Device { fd, path: path.to_owned(), kind, geometry, direct, read_only })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn kind(&self) -> DeviceKind {
        self.kind
    }

    pub fn geometry(&self) -> Geometry {
        self.geometry
    }

    /// Whether the device was opened with `O_DIRECT` (false after the buffered fallback).
    pub fn is_direct(&self) -> bool {
        self.direct
    }

    pub fn is_read_only(&self) -> bool {
        self.read_only
    }
}

impl AsFd for Device {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl AsRawFd for Device {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

fn stat_path(path: &Path, c_path: &CStr) -> Result<libc::statx, DeviceError> {
    let mut statx = statx_zeroed();
    let call = Syscall::Statx { dirfd: libc::AT_FDCWD, path: c_path, flags: 0, statx: &mut statx };
    match sys::syscall(call) {
        Ok(_) => Ok(statx),
        Err(e) => Err(open_error(path, "statx", e)),
    }
}

fn kind_of(path: &Path, statx: &libc::statx) -> Result<DeviceKind, DeviceError> {
    match libc::mode_t::from(statx.stx_mode) & libc::S_IFMT {
        libc::S_IFREG => Ok(DeviceKind::File),
        libc::S_IFBLK => Ok(DeviceKind::Block),
        _ => Err(DeviceError::NotFileOrBlockDevice { path: path.to_owned() }),
    }
}

/// Opens with `O_DIRECT` where the file system supports it; returns the fd and whether it is
/// direct.
fn open_fd(
    path: &Path,
    c_path: &CStr,
    kind: DeviceKind,
    options: &DeviceOptions,
    probe: &libc::statx,
) -> Result<(OwnedFd, bool), DeviceError> {
    let access = if options.read_only { libc::O_RDONLY } else { libc::O_RDWR };
    let exclusive = if kind == DeviceKind::Block && options.exclusive { libc::O_EXCL } else { 0 };
    let flags = access | exclusive | libc::O_CLOEXEC;
    // statx reports dio_offset_align 0 for a file whose file system cannot do direct I/O on it.
    let direct_refused =
        kind == DeviceKind::File && probe.stx_mask & libc::STATX_DIOALIGN != 0 && probe.stx_dio_offset_align == 0;
    if !direct_refused {
        match open_raw(c_path, flags | libc::O_DIRECT) {
            Ok(fd) => return Ok((fd, true)),
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {}
            Err(e) => return Err(open_error(path, "open", e)),
        }
    }
    tracing::warn!(
        path = %path.display(),
        "the file system refuses O_DIRECT for this device; using buffered I/O"
    );
    let fd = open_raw(c_path, flags).map_err(|e| open_error(path, "open", e))?;
    Ok((fd, false))
}

fn open_raw(c_path: &CStr, flags: libc::c_int) -> io::Result<OwnedFd> {
    let fd = sys::syscall(Syscall::Open { path: c_path, flags })?;
    // SAFETY: open returned a new file descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// How often a held lock is retried, 100 ms apart.
const LOCK_ATTEMPTS: u32 = 30;

fn lock(path: &Path, fd: BorrowedFd<'_>, options: &DeviceOptions) -> Result<(), DeviceError> {
    let mode = if options.exclusive { libc::LOCK_EX } else { libc::LOCK_SH };
    // A daemon killed a moment ago holds the lock until the kernel has torn down its io_uring
    // (which holds the registered device file); give that a short while before refusing.
    for attempt in 0..LOCK_ATTEMPTS {
        match sys::syscall(Syscall::Flock { fd, operation: mode | libc::LOCK_NB }) {
            Ok(_) => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EWOULDBLOCK) => {
                if attempt + 1 < LOCK_ATTEMPTS {
                    std::thread::sleep(std::time::Duration::from_millis(100));
                }
            }
            Err(e) => return Err(open_error(path, "flock", e)),
        }
    }
    Err(DeviceError::InUse { path: path.to_owned() })
}

fn open_error(path: &Path, op: &'static str, source: io::Error) -> DeviceError {
    let path = path.to_owned();
    match source.raw_os_error() {
        Some(libc::ENOENT | libc::ENOTDIR | libc::ENXIO | libc::ENODEV) => DeviceError::NotFound { path },
        Some(libc::EACCES | libc::EPERM | libc::EROFS) => DeviceError::Permission { path, source },
        // O_EXCL on a block device that is mounted or held by another exclusive opener.
        Some(libc::EBUSY) => DeviceError::InUse { path },
        _ => DeviceError::Open { path, op, source },
    }
}

/// Reads the geometry from the open fd (not the path, which may have been replaced since).
fn measure(path: &Path, fd: BorrowedFd<'_>, kind: DeviceKind, direct: bool) -> Result<Geometry, DeviceError> {
    let mut statx = statx_zeroed();
    let call = Syscall::Statx { dirfd: fd.as_raw_fd(), path: c"", flags: libc::AT_EMPTY_PATH, statx: &mut statx };
    sys::syscall(call).map_err(|e| open_error(path, "statx", e))?;
    if kind_of(path, &statx)? != kind {
        return Err(DeviceError::NotFileOrBlockDevice { path: path.to_owned() });
    }
    let raw = match kind {
        DeviceKind::File => file_geometry(&statx, direct),
        DeviceKind::Block => block_geometry(path, fd, &statx)?,
    };
    validate(path, raw)
}

/// Geometry before validation: the size may not be a multiple of 4096 yet.
struct RawGeometry {
    size_bytes: u64,
    logical_block_size: u32,
    dio_mem_align: u32,
}

fn file_geometry(statx: &libc::statx, direct: bool) -> RawGeometry {
    let size_bytes = statx.stx_size;
    let reported = statx.stx_mask & libc::STATX_DIOALIGN != 0 && statx.stx_dio_offset_align != 0;
    let (logical_block_size, dio_mem_align) = match (direct, reported) {
        // Buffered I/O has no alignment rule; 512 is the sector, the unit a power cut may tear.
        (false, _) => (512, 1),
        (true, true) => (statx.stx_dio_offset_align, statx.stx_dio_mem_align.max(1)),
        // A file system that does not report its rule: assume the strictest one VexFS can meet.
        (true, false) => (IO_ALIGN as u32, IO_ALIGN as u32),
    };
    RawGeometry { size_bytes, logical_block_size, dio_mem_align }
}

fn block_geometry(path: &Path, fd: BorrowedFd<'_>, statx: &libc::statx) -> Result<RawGeometry, DeviceError> {
    let mut size_bytes = 0_u64;
    sys::syscall(Syscall::BlkGetSize64 { fd, size: &mut size_bytes })
        .map_err(|e| open_error(path, "ioctl BLKGETSIZE64", e))?;
    let mut sector_size: libc::c_int = 0;
    sys::syscall(Syscall::BlkSszGet { fd, size: &mut sector_size })
        .map_err(|e| open_error(path, "ioctl BLKSSZGET", e))?;
    let logical_block_size = u32::try_from(sector_size).unwrap_or(0);
    // Block devices report their DMA alignment through statx since Linux 6.11; before that the
    // logical block size is a safe bound.
    let dio_mem_align = if statx.stx_mask & libc::STATX_DIOALIGN != 0 && statx.stx_dio_mem_align != 0 {
        statx.stx_dio_mem_align
    } else {
        logical_block_size
    };
    Ok(RawGeometry { size_bytes, logical_block_size, dio_mem_align })
}

fn validate(path: &Path, raw: RawGeometry) -> Result<Geometry, DeviceError> {
    let refuse = |reason: String| Err(DeviceError::Geometry { path: path.to_owned(), reason });
    if !divides_block(raw.logical_block_size) {
        return refuse(format!(
            "logical block size {} does not divide the {IO_ALIGN}-byte volume block",
            raw.logical_block_size
        ));
    }
    if !divides_block(raw.dio_mem_align) {
        return refuse(format!(
            "direct I/O memory alignment {} does not divide the {IO_ALIGN}-byte buffer alignment",
            raw.dio_mem_align
        ));
    }
    let size_bytes = raw.size_bytes - raw.size_bytes % IO_ALIGN_U64;
    if size_bytes == 0 {
        return refuse(format!("{} bytes is too small to hold one {IO_ALIGN}-byte block", raw.size_bytes));
    }
    let RawGeometry { logical_block_size, dio_mem_align, .. } = raw;
    Ok(Geometry { size_bytes, logical_block_size, dio_mem_align })
}

fn divides_block(align: u32) -> bool {
    align != 0 && align.is_power_of_two() && (IO_ALIGN as u32).is_multiple_of(align)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::sys::fake;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// An image file under /tmp (ext4 here), removed on drop.
    struct TempImage(PathBuf);

    impl TempImage {
        fn new(size_bytes: u64) -> TempImage {
            static COUNTER: AtomicU32 = AtomicU32::new(0);
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let path = std::env::temp_dir().join(format!("vexfs-device-unit-{}-{n}.img", std::process::id()));
            std::fs::File::create(&path).unwrap().set_len(size_bytes).unwrap();
            TempImage(path)
        }
    }

    impl Drop for TempImage {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    #[test]
    fn o_direct_refusal_falls_back_to_buffered_io() {
        let image = TempImage::new(1 << 20);
        let _hook = fake::install(|call| match call {
            Syscall::Open { flags, .. } if *flags & libc::O_DIRECT != 0 => {
                Some(Err(io::Error::from_raw_os_error(libc::EINVAL)))
            }
            _ => None,
        });
        let device = Device::open(&image.0, &DeviceOptions::default()).unwrap();
        assert!(!device.is_direct());
        assert_eq!(device.geometry().size_bytes, 1 << 20);
        assert_eq!(device.geometry().logical_block_size, 512);
    }

    #[test]
    fn statx_without_direct_io_support_opens_buffered() {
        let image = TempImage::new(1 << 20);
        let _hook = fake::install(|call| {
            let result = fake::passthrough(call);
            if let Syscall::Statx { statx, .. } = call {
                statx.stx_dio_offset_align = 0;
                statx.stx_dio_mem_align = 0;
            }
            Some(result)
        });
        let device = Device::open(&image.0, &DeviceOptions::default()).unwrap();
        assert!(!device.is_direct());
    }

    #[test]
    fn a_logical_block_size_that_does_not_divide_4096_is_refused() {
        let image = TempImage::new(1 << 20);
        let _hook = fake::install(|call| {
            let result = fake::passthrough(call);
            if let Syscall::Statx { statx, .. } = call {
                statx.stx_dio_offset_align = 8192;
            }
            Some(result)
        });
        let error = Device::open(&image.0, &DeviceOptions::default()).unwrap_err();
        assert!(matches!(error, DeviceError::Geometry { .. }), "{error}");
        let message = error.to_string();
        assert!(message.contains("logical block size 8192"), "{message}");
        assert!(message.contains(image.0.to_str().unwrap()), "{message}");
    }

    #[test]
    fn a_busy_block_device_is_in_use() {
        let image = TempImage::new(1 << 20);
        let _hook = fake::install(|call| match call {
            Syscall::Open { .. } => Some(Err(io::Error::from_raw_os_error(libc::EBUSY))),
            _ => None,
        });
        let error = Device::open(&image.0, &DeviceOptions::default()).unwrap_err();
        assert!(matches!(error, DeviceError::InUse { .. }), "{error}");
        assert!(error.to_string().contains("in use by another process (already mounted?)"));
    }

    #[test]
    fn permission_errors_name_the_path() {
        let image = TempImage::new(1 << 20);
        let _hook = fake::install(|call| match call {
            Syscall::Open { .. } => Some(Err(io::Error::from_raw_os_error(libc::EACCES))),
            _ => None,
        });
        let error = Device::open(&image.0, &DeviceOptions::default()).unwrap_err();
        assert!(matches!(error, DeviceError::Permission { .. }), "{error}");
        assert!(error.to_string().contains(image.0.to_str().unwrap()));
    }

    #[test]
    fn validate_rounds_the_size_down_to_whole_blocks() {
        let raw = RawGeometry { size_bytes: 10_000, logical_block_size: 512, dio_mem_align: 4 };
        let geometry = validate(Path::new("x"), raw).unwrap();
        assert_eq!(geometry.size_bytes, 8192);
        let raw = RawGeometry { size_bytes: 4095, logical_block_size: 512, dio_mem_align: 4 };
        assert!(validate(Path::new("x"), raw).is_err());
        let raw = RawGeometry { size_bytes: 8192, logical_block_size: 4096, dio_mem_align: 8192 };
        assert!(validate(Path::new("x"), raw).is_err());
    }
}
