//! Mounting and unmounting a FUSE file system.
//!
//! As root we open `/dev/fuse` and call `mount(2)` ourselves. Otherwise `fusermount3` (setuid
//! root) does it and passes the `/dev/fuse` fd back over a Unix socket named by `_FUSE_COMMFD`
//! (`SCM_RIGHTS`), as libfuse does.

use std::ffi::{CString, OsStr, OsString};
use std::fs::{self, OpenOptions};
use std::io;
use std::mem::size_of;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

const FUSERMOUNT: &str = "fusermount3";

/// How the file system is presented.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountOptions {
    /// The mount's source, as `mount(8)` and `/proc/self/mountinfo` show it.
    pub fsname: String,
    /// The mount's type is `fuse.<subtype>`.
    pub subtype: String,
    /// Let users other than the mounting one in (root only, or `user_allow_other` in
    /// `/etc/fuse.conf`).
    pub allow_other: bool,
    /// Let the kernel check permissions from the mode bits. FUSE requests carry the caller's uid
    /// and gid but not its supplementary groups, so the file system itself cannot decide group
    /// access correctly; the kernel can.
    pub default_permissions: bool,
    /// Largest READ request the kernel sends.
    pub max_read: u32,
}

impl Default for MountOptions {
    fn default() -> Self {
        MountOptions {
            fsname: "vexfs".to_owned(),
            subtype: "vexfs".to_owned(),
            allow_other: true,
            default_permissions: true,
            max_read: 1 << 20,
        }
    }
}

/// Why mounting or unmounting failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MountError {
    #[error("mount point {} does not exist", path.display())]
    MissingMountPoint { path: PathBuf },
    #[error("mount point {} is not a directory", path.display())]
    NotADirectory { path: PathBuf },
    #[error("mount point {} is busy: already mounted (fstype {fstype})", path.display())]
    Busy { path: PathBuf, fstype: String },
    #[error("cannot inspect mount point {}: {source}", path.display())]
    Inspect { path: PathBuf, source: io::Error },
    #[error("invalid mount option: {reason}")]
    InvalidOption { reason: String },
    #[error("cannot open /dev/fuse: {source}")]
    OpenDevice { source: io::Error },
    #[error("mount(2) of {} failed: {source}", path.display())]
    Mount { path: PathBuf, source: io::Error },
    #[error("umount2(2) of {} failed: {source}", path.display())]
    Unmount { path: PathBuf, source: io::Error },
    #[error("cannot run {FUSERMOUNT}: {source}")]
    FusermountSpawn { source: io::Error },
    #[error("{FUSERMOUNT} failed for {} ({status}): {stderr}", path.display())]
    Fusermount { path: PathBuf, status: String, stderr: String },
}

impl MountError {
    /// A `sysexits(3)` code for a process that exits because of this error: 64 (usage) for a
    /// bad mount point or option, 69 (unavailable) when fusermount3 fails, 77 (no permission)
    /// for EPERM/EACCES, 71 (OS error) otherwise.
    pub fn exit_code(&self) -> u8 {
        const EX_USAGE: u8 = 64;
        const EX_UNAVAILABLE: u8 = 69;
        const EX_OSERR: u8 = 71;
        const EX_NOPERM: u8 = 77;
        match self {
            MountError::MissingMountPoint { .. }
            | MountError::NotADirectory { .. }
            | MountError::Busy { .. }
            | MountError::InvalidOption { .. } => EX_USAGE,
            MountError::FusermountSpawn { .. } | MountError::Fusermount { .. } => EX_UNAVAILABLE,
            MountError::Inspect { source, .. }
            | MountError::OpenDevice { source }
            | MountError::Mount { source, .. }
            | MountError::Unmount { source, .. } => match source.raw_os_error() {
                Some(libc::EPERM | libc::EACCES) => EX_NOPERM,
                _ => EX_OSERR,
            },
        }
    }
}

/// Mounts a FUSE file system at `mountpoint` and returns the `/dev/fuse` fd to serve it with
/// ([`super::session::Session::run`]).
pub fn mount(mountpoint: &Path, options: &MountOptions) -> Result<OwnedFd, MountError> {
    check_mount_point(mountpoint)?;
    if is_root() {
        mount_direct(mountpoint, options)
    } else {
        mount_fusermount(mountpoint, options)
    }
}

/// Unmounts `mountpoint`, lazily (`MNT_DETACH`) if it is busy.
pub fn unmount(mountpoint: &Path) -> Result<(), MountError> {
    if !is_root() {
        return fusermount(&[OsStr::new("-u"), OsStr::new("-z"), OsStr::new("--"), mountpoint.as_os_str()], mountpoint);
    }
    let target = c_string(mountpoint.as_os_str().as_bytes())?;
    let unmount_with = |flags: libc::c_int| {
        // SAFETY: `target` is a NUL-terminated string that outlives the call.
        let rc = unsafe { libc::umount2(target.as_ptr(), flags) };
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    };
    let result = match unmount_with(0) {
        Err(err) if err.raw_os_error() == Some(libc::EBUSY) => unmount_with(libc::MNT_DETACH),
        other => other,
    };
    result.map_err(|source| MountError::Unmount { path: mountpoint.to_owned(), source })
}

/// Refuses a mount point that is missing, not a directory, or already mounted on. The mount
/// table is checked first by the path as given, since a stale FUSE mount fails `stat(2)` with
/// ENOTCONN; then by the canonical path, to catch symlinks and `..`.
fn check_mount_point(path: &Path) -> Result<(), MountError> {
    let inspect = |source: io::Error| MountError::Inspect { path: path.to_owned(), source };
    let mounts = fs::read_to_string("/proc/self/mountinfo").map_err(inspect)?;
    let absolute = std::path::absolute(path).map_err(inspect)?;
    if let Some(fstype) = find_mount(&mounts, &absolute) {
        return Err(MountError::Busy { path: path.to_owned(), fstype });
    }
    let metadata = fs::metadata(path).map_err(|source| match source.kind() {
        io::ErrorKind::NotFound => MountError::MissingMountPoint { path: path.to_owned() },
        _ => inspect(source),
    })?;
    if !metadata.is_dir() {
        return Err(MountError::NotADirectory { path: path.to_owned() });
    }
    let canonical = fs::canonicalize(path).map_err(inspect)?;
    match find_mount(&mounts, &canonical) {
        Some(fstype) => Err(MountError::Busy { path: path.to_owned(), fstype }),
        None => Ok(()),
    }
}

/// The file system type mounted at `target` according to `mountinfo`, if any. The last mount on
/// a path hides the earlier ones, so the table is searched from the end.
fn find_mount(mountinfo: &str, target: &Path) -> Option<String> {
    find_mount_entry(mountinfo, target).map(|entry| entry.fstype)
}

fn find_mount_entry(mountinfo: &str, target: &Path) -> Option<MountEntry> {
    mountinfo.lines().rev().filter_map(parse_mountinfo_line).find(|entry| entry.mount_point == target)
}

/// The fields of one `/proc/self/mountinfo` line that we use.
#[derive(Debug, Clone, PartialEq, Eq)]
struct MountEntry {
    mount_point: PathBuf,
    /// `MAJ:MIN` of the superblock: also the name of its backing device info in `/sys/class/bdi`.
    device: String,
    fstype: String,
}

/// Splits one line of `/proc/self/mountinfo`. The line is
/// `ID PARENT MAJ:MIN ROOT MOUNT_POINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPER_OPTIONS`.
fn parse_mountinfo_line(line: &str) -> Option<MountEntry> {
    let mut fields = line.split(' ');
    let device = fields.nth(2)?.to_owned();
    let mount_point = fields.nth(1)?;
    let fstype = fields.skip_while(|field| *field != "-").nth(1)?;
    Some(MountEntry {
        mount_point: PathBuf::from(unescape_octal(mount_point)),
        device,
        fstype: unescape_octal(fstype).to_string_lossy().into_owned(),
    })
}

/// Sets the kernel's readahead for the FUSE mount at `mountpoint` to `bytes`. FUSE caps it at
/// INIT to what the kernel offered (128 KiB by default), so two 1 MiB READs in flight need this.
/// Reads only the mount table and sysfs: safe before INIT is answered.
pub fn set_read_ahead(mountpoint: &Path, bytes: u64) -> io::Result<()> {
    let mounts = fs::read_to_string("/proc/self/mountinfo")?;
    let absolute = std::path::absolute(mountpoint)?;
    let entry = find_mount_entry(&mounts, &absolute)
        .filter(|entry| entry.fstype.starts_with("fuse"))
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("no FUSE mount at {}", absolute.display())))?;
    fs::write(format!("/sys/class/bdi/{}/read_ahead_kb", entry.device), format!("{}\n", bytes / 1024))
}

/// Undoes the kernel's escaping of space, tab, newline and backslash as `\040`, `\011`, `\012`
/// and `\134` in mount table fields.
fn unescape_octal(field: &str) -> OsString {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escape = bytes
            .get(i + 1..i + 4)
            .filter(|digits| bytes[i] == b'\\' && digits.iter().all(|d| (b'0'..=b'7').contains(d)));
        match escape {
            Some(digits) => {
                let value = digits.iter().fold(0u32, |acc, d| acc * 8 + u32::from(d - b'0'));
                // Three octal digits can exceed 255 (\777); such a field is not an escape.
                out.push(u8::try_from(value).unwrap_or(b'?'));
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    OsString::from_vec(out)
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

fn c_string(bytes: &[u8]) -> Result<CString, MountError> {
    CString::new(bytes).map_err(|_| MountError::InvalidOption {
        reason: format!("{:?} contains a NUL byte", String::from_utf8_lossy(bytes)),
    })
}

fn mount_direct(mountpoint: &Path, options: &MountOptions) -> Result<OwnedFd, MountError> {
    let device = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/fuse")
        .map_err(|source| MountError::OpenDevice { source })?;
    let fd = OwnedFd::from(device);
    // SAFETY: getuid and getgid have no preconditions and cannot fail.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    let data = mount_data(fd.as_raw_fd(), uid, gid, options);
    let source = c_string(options.fsname.as_bytes())?;
    let target = c_string(mountpoint.as_os_str().as_bytes())?;
    let fstype = c_string(format!("fuse.{}", options.subtype).as_bytes())?;
    let data = c_string(data.as_bytes())?;
    let flags = libc::MS_NOSUID | libc::MS_NODEV;
    // `data` is an option string as the fuse file system's parser expects it.
    // SAFETY: every pointer is a NUL-terminated string that outlives the call.
    let rc = unsafe { libc::mount(source.as_ptr(), target.as_ptr(), fstype.as_ptr(), flags, data.as_ptr().cast()) };
    if rc != 0 {
        let source = io::Error::last_os_error();
        return Err(MountError::Mount { path: mountpoint.to_owned(), source });
    }
    Ok(fd)
}

/// The option string the kernel's fuse file system parses at `mount(2)`.
fn mount_data(fd: i32, uid: u32, gid: u32, options: &MountOptions) -> String {
    let mut data = format!("fd={fd},rootmode=40000,user_id={uid},group_id={gid}");
    if options.default_permissions {
        data.push_str(",default_permissions");
    }
    if options.allow_other {
        data.push_str(",allow_other");
    }
    data.push_str(&format!(",max_read={}", options.max_read));
    data
}

/// The `-o` options for fusermount3, which adds `fd`, `rootmode`, `user_id` and `group_id`
/// itself and always mounts nosuid,nodev for unprivileged users.
fn fusermount_options(options: &MountOptions) -> String {
    let mut opts = vec![
        "nosuid".to_owned(),
        "nodev".to_owned(),
        format!("fsname={}", escape_option(&options.fsname)),
        format!("subtype={}", escape_option(&options.subtype)),
        format!("max_read={}", options.max_read),
    ];
    if options.default_permissions {
        opts.push("default_permissions".to_owned());
    }
    if options.allow_other {
        opts.push("allow_other".to_owned());
    }
    opts.join(",")
}

/// fusermount3 splits options at commas and unescapes backslashes.
fn escape_option(value: &str) -> String {
    value.replace('\\', "\\\\").replace(',', "\\,")
}

fn mount_fusermount(mountpoint: &Path, options: &MountOptions) -> Result<OwnedFd, MountError> {
    let spawn_error = |source: io::Error| MountError::FusermountSpawn { source };
    let (ours, theirs) = UnixStream::pair().map_err(spawn_error)?;
    let child_fd = theirs.as_raw_fd();
    let mut command = Command::new(FUSERMOUNT);
    command
        .arg("-o")
        .arg(fusermount_options(options))
        .arg("--")
        .arg(mountpoint)
        .env("_FUSE_COMMFD", child_fd.to_string())
        .stdin(Stdio::null())
        .stderr(Stdio::piped());
    // The closure lets the child inherit its end of the socket pair.
    // SAFETY: it runs between fork and exec and calls only fcntl(2), which is async-signal-safe.
    unsafe {
        command.pre_exec(move || clear_cloexec(child_fd));
    }
    let child = command.spawn().map_err(spawn_error)?;
    drop(theirs);
    // fusermount3 sends the fd and exits; if it fails, it exits without sending and the socket
    // reports end of file.
    let received = receive_fd(&ours);
    let output = child.wait_with_output().map_err(spawn_error)?;
    let stderr = String::from_utf8_lossy(&output.stderr).trim().to_owned();
    match received {
        Ok(Some(fd)) if output.status.success() => Ok(fd),
        Ok(_) => Err(MountError::Fusermount { path: mountpoint.to_owned(), status: output.status.to_string(), stderr }),
        Err(source) => Err(MountError::Fusermount { path: mountpoint.to_owned(), status: source.to_string(), stderr }),
    }
}

fn clear_cloexec(fd: i32) -> io::Result<()> {
    // SAFETY: F_SETFD takes an int argument and touches only the flags of `fd`.
    let rc = unsafe { libc::fcntl(fd, libc::F_SETFD, 0) };
    if rc == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// One `cmsghdr` carrying one fd, as `CMSG_SPACE(sizeof(int))` lays it out on 64-bit Linux:
/// `cmsg_len`, `cmsg_level`, `cmsg_type`, the fd, and padding to 8 bytes.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, FromBytes, IntoBytes, KnownLayout, Immutable)]
struct ControlFd {
    len: usize,
    level: i32,
    kind: i32,
    fd: i32,
    padding: i32,
}
const _: () = assert!(size_of::<ControlFd>() == 24);
/// `CMSG_LEN(sizeof(int))`: the header (16 bytes on 64-bit) plus one fd, without the padding.
const CONTROL_FD_LEN: usize = 2 * size_of::<usize>() + size_of::<i32>();

/// Receives one fd sent with `SCM_RIGHTS`; `Ok(None)` if the peer closed without sending one.
fn receive_fd(socket: &UnixStream) -> io::Result<Option<OwnedFd>> {
    let mut byte = [0u8; 1];
    let mut iov = libc::iovec { iov_base: byte.as_mut_ptr().cast(), iov_len: byte.len() };
    let mut control = ControlFd::default();
    let mut msg = libc::msghdr {
        msg_name: std::ptr::null_mut(),
        msg_namelen: 0,
        msg_iov: &mut iov,
        msg_iovlen: 1,
        msg_control: control.as_mut_bytes().as_mut_ptr().cast(),
        msg_controllen: size_of::<ControlFd>(),
        msg_flags: 0,
    };
    let received = loop {
        // The kernel writes only within the buffers `msg` describes.
        // SAFETY: `msg` points at a live iovec over `byte` and at `control`, sized as declared.
        let rc = unsafe { libc::recvmsg(socket.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) };
        if rc >= 0 {
            break rc;
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    };
    let carries_fd = msg.msg_controllen >= CONTROL_FD_LEN
        && control.len == CONTROL_FD_LEN
        && control.level == libc::SOL_SOCKET
        && control.kind == libc::SCM_RIGHTS;
    if received == 0 || !carries_fd {
        return Ok(None);
    }
    // The kernel just installed this fd in our table for this message.
    // SAFETY: nothing else refers to the fd, so this is its only owner.
    Ok(Some(unsafe { OwnedFd::from_raw_fd(control.fd) }))
}

/// Runs fusermount3 with `args` and waits for it.
fn fusermount(args: &[&OsStr], mountpoint: &Path) -> Result<(), MountError> {
    let output = Command::new(FUSERMOUNT)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|source| MountError::FusermountSpawn { source })?;
    if output.status.success() {
        return Ok(());
    }
    Err(MountError::Fusermount {
        path: mountpoint.to_owned(),
        status: output.status.to_string(),
        stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw
35 22 0:31 / /tmp/with\\040space rw,nosuid,nodev shared:20 - fuse.vexfs vexfs rw,user_id=0,group_id=0
36 22 0:32 / /mnt/a\\134b rw master:3 - tmpfs tmpfs rw
";

    #[test]
    fn mountinfo_lookup_unescapes() {
        assert_eq!(find_mount(MOUNTINFO, Path::new("/")), Some("ext4".to_owned()));
        assert_eq!(find_mount(MOUNTINFO, Path::new("/tmp/with space")), Some("fuse.vexfs".to_owned()));
        assert_eq!(find_mount(MOUNTINFO, Path::new("/mnt/a\\b")), Some("tmpfs".to_owned()));
        assert_eq!(find_mount(MOUNTINFO, Path::new("/tmp")), None);
        let entry = find_mount_entry(MOUNTINFO, Path::new("/tmp/with space")).expect("mounted");
        assert_eq!(entry.device, "0:31");
    }

    #[test]
    fn unescape_leaves_other_backslashes() {
        assert_eq!(unescape_octal("a\\b\\12"), OsString::from("a\\b\\12"));
        assert_eq!(unescape_octal("\\011x"), OsString::from("\tx"));
    }

    #[test]
    fn mount_point_errors_name_the_path() {
        let missing = Path::new("/nonexistent/vexfs-mount-point");
        let err = check_mount_point(missing).expect_err("missing");
        assert_eq!(err.to_string(), "mount point /nonexistent/vexfs-mount-point does not exist");
        assert_eq!(err.exit_code(), 64);
        let err = check_mount_point(Path::new("/proc/self/mountinfo")).expect_err("a file");
        assert!(err.to_string().contains("is not a directory"), "{err}");
        let err = check_mount_point(Path::new("/proc")).expect_err("proc is a mount point");
        assert_eq!(err.to_string(), "mount point /proc is busy: already mounted (fstype proc)");
    }

    #[test]
    fn option_strings() {
        let options = MountOptions { fsname: "a,b".to_owned(), ..MountOptions::default() };
        assert_eq!(
            mount_data(5, 0, 0, &options),
            "fd=5,rootmode=40000,user_id=0,group_id=0,default_permissions,allow_other,max_read=1048576"
        );
        assert_eq!(
            fusermount_options(&options),
            "nosuid,nodev,fsname=a\\,b,subtype=vexfs,max_read=1048576,default_permissions,allow_other"
        );
    }
}
