//! Volume tools that work on the device directly, without the daemon: `mkfs` and `fsck`.
//!
//! These use plain positioned reads and writes: they run once, off the serving path, and must work
//! on any file or block device the user names. The daemon alone drives devices through io_uring.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, FileTypeExt, OpenOptionsExt};
use std::path::Path;

use vexfs_format::fsck::{self, FsckError, Report};
use vexfs_format::inode::Timestamp;
use vexfs_format::mkfs::{self, Layout, MkfsParams};
use vexfs_format::superblock::{Superblock, SUPERBLOCK_SLOTS};
use vexfs_format::{BlockAddr, BLOCK_SIZE};

/// Errors of the volume tools; each message names the path.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VolumeError {
    /// The device could not be opened or read.
    #[error("{path}: {source}")]
    Io {
        /// The device.
        path: String,
        /// The cause.
        source: io::Error,
    },
    /// Another process holds the device.
    #[error("{path} is in use by another process (is vexfsd serving it?)")]
    InUse {
        /// The device.
        path: String,
    },
    /// The device already holds a VexFS volume and `--force` was not given.
    #[error("{path} already holds a VexFS volume (label {label:?}); use --force to overwrite it")]
    HasVolume {
        /// The device.
        path: String,
        /// The existing volume's label.
        label: String,
    },
    /// A size was given for a block device, or none for a new file.
    #[error("{path}: {what}")]
    Size {
        /// The device.
        path: String,
        /// What is wrong.
        what: String,
    },
    /// The on-disk format refused the request (too small, not VexFS, ...).
    #[error("{path}: {source}")]
    Format {
        /// The device.
        path: String,
        /// The cause.
        source: vexfs_format::FormatError,
    },
}

fn io_error(path: &Path) -> impl Fn(io::Error) -> VolumeError + '_ {
    move |source| VolumeError::Io { path: path.display().to_string(), source }
}

pub use vexfs_format::units::parse_size;

/// How often a held lock is retried, 100 ms apart.
const LOCK_ATTEMPTS: u32 = 30;

/// Opens a device exclusively (an advisory lock the daemon also takes).
fn open_locked(path: &Path, write: bool, create: bool) -> Result<File, VolumeError> {
    let file = OpenOptions::new()
        .read(true)
        .write(write)
        .create(create)
        .truncate(false)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)
        .map_err(io_error(path))?;
    // A daemon killed a moment ago still holds the lock until the kernel has torn down its
    // io_uring (which holds the registered device file); give that a short while.
    for attempt in 0..LOCK_ATTEMPTS {
        // SAFETY: flock on a valid, owned file descriptor has no memory-safety preconditions.
        let locked = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if locked == 0 {
            return Ok(file);
        }
        let error = io::Error::last_os_error();
        if error.raw_os_error() != Some(libc::EWOULDBLOCK) {
            return Err(io_error(path)(error));
        }
        if attempt + 1 < LOCK_ATTEMPTS {
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }
    Err(VolumeError::InUse { path: path.display().to_string() })
}

/// The size of a file or block device in bytes.
fn device_size(file: &File, path: &Path) -> Result<u64, VolumeError> {
    use std::io::{Seek, SeekFrom};
    let mut handle = file;
    handle.seek(SeekFrom::End(0)).map_err(io_error(path))
}

/// Options of [`mkfs`].
#[derive(Clone, Debug, Default)]
pub struct MkfsOptions {
    /// Size of a new or resized image file; block devices use their whole size.
    pub size: Option<u64>,
    /// Overwrite an existing VexFS volume.
    pub force: bool,
    /// The volume label.
    pub label: String,
}

/// Creates a VexFS volume on `path` (an image file, created if missing, or a block device).
pub fn mkfs(path: &Path, options: &MkfsOptions) -> Result<Layout, VolumeError> {
    let exists = path.exists();
    let file = open_locked(path, true, true)?;
    let is_block = file.metadata().map_err(io_error(path))?.file_type().is_block_device();
    let size = match (is_block, options.size) {
        (true, Some(_)) => {
            return Err(VolumeError::Size {
                path: path.display().to_string(),
                what: "--size applies to image files; a block device is formatted whole".into(),
            })
        }
        (true, None) => device_size(&file, path)?,
        (false, Some(size)) => {
            file.set_len(size).map_err(io_error(path))?;
            size
        }
        (false, None) if exists => device_size(&file, path)?,
        (false, None) => {
            return Err(VolumeError::Size {
                path: path.display().to_string(),
                what: "a new image file needs --size".into(),
            })
        }
    };
    if !options.force {
        if let Ok(existing) = read_superblock(&file, path) {
            return Err(VolumeError::HasVolume { path: path.display().to_string(), label: existing.label_str() });
        }
    }
    let params =
        MkfsParams { size_bytes: size, uuid: random_uuid(), now: now(), label: &options.label, uid: 0, gid: 0 };
    let format_error = |source| VolumeError::Format { path: path.display().to_string(), source };
    let (layout, blocks) = mkfs::plan(&params).map_err(format_error)?;
    for (addr, block) in &blocks {
        file.write_all_at(block, addr.byte_offset()).map_err(io_error(path))?;
    }
    file.sync_all().map_err(io_error(path))?;
    Ok(layout)
}

fn read_superblock(file: &File, path: &Path) -> Result<Superblock, VolumeError> {
    let mut slots = Vec::new();
    for addr in SUPERBLOCK_SLOTS {
        let mut buf = vec![0u8; BLOCK_SIZE];
        file.read_exact_at(&mut buf, addr.byte_offset()).map_err(io_error(path))?;
        slots.push(Superblock::decode(&buf, addr));
    }
    let slot1 = slots.pop().expect("two slots");
    let slot0 = slots.pop().expect("two slots");
    Superblock::choose(slot0, slot1).map_err(|source| VolumeError::Format { path: path.display().to_string(), source })
}

/// Checks the volume on `path` without changing it.
pub fn fsck(path: &Path) -> Result<Report, VolumeError> {
    let file = open_locked(path, false, false)?;
    let size = device_size(&file, path)?;
    let mut read = |addr: BlockAddr, buf: &mut [u8]| file.read_exact_at(buf, addr.byte_offset());
    fsck::check(&mut read, size).map_err(|error| match error {
        FsckError::Superblock(source) => VolumeError::Format { path: path.display().to_string(), source },
        FsckError::Io(source) => io_error(path)(source),
        truncated @ FsckError::Truncated(_) => {
            VolumeError::Size { path: path.display().to_string(), what: truncated.to_string() }
        }
    })
}

fn random_uuid() -> [u8; 16] {
    let mut uuid = [0u8; 16];
    getrandom::fill(&mut uuid).expect("the kernel's random source is available");
    // RFC 4122 version 4, variant 1.
    uuid[6] = (uuid[6] & 0x0f) | 0x40;
    uuid[8] = (uuid[8] & 0x3f) | 0x80;
    uuid
}

fn now() -> Timestamp {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    Timestamp { sec: now.as_secs() as i64, nsec: now.subsec_nanos() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mkfs_then_fsck_is_clean_and_mkfs_refuses_to_overwrite() {
        let dir = std::env::temp_dir().join(format!("vexfs-client-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let image = dir.join("v.img");
        let options = MkfsOptions { size: Some(64 << 20), ..Default::default() };
        mkfs(&image, &options).unwrap();
        let report = fsck(&image).unwrap();
        assert!(report.is_clean(), "{:?}", report.problems);
        assert!(matches!(mkfs(&image, &options), Err(VolumeError::HasVolume { .. })));
        let small = dir.join("small.img");
        assert!(matches!(
            mkfs(&small, &MkfsOptions { size: Some(1 << 20), ..Default::default() }),
            Err(VolumeError::Format { .. })
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
