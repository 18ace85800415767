//! Harness for the VexFS integration tests: it finds (or builds) the `vexfs` and `vexfsd`
//! binaries, makes scratch volumes, serves them with `vexfsd` on a real FUSE mount, and cleans
//! up after the daemon even when a test panics.
//!
//! Invariants:
//! - A [`Mount`] borrows its [`TestVolume`], so a volume's scratch directory is never removed
//!   while a mount inside it is alive. [`ScratchDir`]'s `Drop` also detaches any mount it finds
//!   below itself first, and removes nothing if one remains.
//! - Every wait is bounded by a named timeout; running out of time is an error that says what
//!   was awaited and, for the daemon, carries its log.
//! - Mount tests need root and `/dev/fuse`. [`require_root_and_fuse`] prints a `SKIP` line and
//!   returns `false` otherwise, so such a test passes without running; with `CI=true` in the
//!   environment it fails instead, so that a green CI run has run every test.
//! - Helpers return `anyhow::Result`; tests turn errors into panics with `expect`, so a failure
//!   message carries the whole context chain.

pub mod content;
pub mod sys;
pub mod tree;

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

pub const KIB: u64 = 1024;
pub const MIB: u64 = 1024 * KIB;
pub const GIB: u64 = 1024 * MIB;

/// The file system type `vexfsd` mounts, as `/proc/self/mountinfo` shows it.
pub const FSTYPE: &str = "fuse.vexfs";

/// How long `vexfsd` may take from start until its mount appears.
pub const MOUNT_TIMEOUT: Duration = Duration::from_secs(20);
/// How long `vexfsd` may take to exit after an unmount, a signal or a refusal.
pub const EXIT_TIMEOUT: Duration = Duration::from_secs(20);
/// How long an unmount keeps retrying while the mount is busy.
pub const UNMOUNT_TIMEOUT: Duration = Duration::from_secs(15);
pub const MKFS_TIMEOUT: Duration = Duration::from_secs(180);
pub const FSCK_TIMEOUT: Duration = Duration::from_secs(300);
/// A first `cargo build --release --bins` of the whole workspace on two cores.
pub const BUILD_TIMEOUT: Duration = Duration::from_secs(1800);
/// How long a finished command's output pipes may stay open (held by a descendant).
const PIPE_DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
const POLL_INTERVAL: Duration = Duration::from_millis(20);

// ---- binaries ------------------------------------------------------------------------------

/// The workspace root: the parent of this crate's directory.
pub fn workspace_root() -> PathBuf {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest_dir.parent().expect("the tests crate sits inside the workspace").to_path_buf()
}

/// Where `vexfs` and `vexfsd` are taken from: `$VEXFS_BIN_DIR`, else `release/` under
/// `$CARGO_TARGET_DIR` when that is set, else `target/release` in the workspace.
pub fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("VEXFS_BIN_DIR") {
        return PathBuf::from(dir);
    }
    let target = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => workspace_root().join(dir),
        None => workspace_root().join("target"),
    };
    target.join("release")
}

#[derive(Clone, Debug)]
pub struct Binaries {
    pub vexfs: PathBuf,
    pub vexfsd: PathBuf,
}

impl Binaries {
    fn in_dir(dir: &Path) -> Binaries {
        Binaries { vexfs: dir.join("vexfs"), vexfsd: dir.join("vexfsd") }
    }

    fn missing(&self) -> Vec<&Path> {
        [self.vexfs.as_path(), self.vexfsd.as_path()].into_iter().filter(|path| !path.is_file()).collect()
    }
}

static BINARIES: OnceLock<Result<Binaries, String>> = OnceLock::new();

/// The `vexfs` and `vexfsd` binaries. When they are missing (and `VEXFS_BIN_DIR` is unset),
/// the first caller builds them with `cargo build --release --bins`; binaries that exist are
/// used as they are, so run `cargo build --release` after changing the daemon.
pub fn binaries() -> Result<&'static Binaries> {
    BINARIES
        .get_or_init(|| locate_binaries().map_err(|err| format!("{err:#}")))
        .as_ref()
        .map_err(|err| anyhow!("{err}"))
}

fn locate_binaries() -> Result<Binaries> {
    let dir = bin_dir();
    let binaries = Binaries::in_dir(&dir);
    if binaries.missing().is_empty() {
        return Ok(binaries);
    }
    if std::env::var_os("VEXFS_BIN_DIR").is_some() {
        bail!("VEXFS_BIN_DIR={} lacks {:?}", dir.display(), binaries.missing());
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo"));
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "--release", "--bins"]).current_dir(workspace_root());
    let output = run(&mut cmd, BUILD_TIMEOUT).context("building the VexFS binaries")?;
    if !output.success() {
        bail!("`cargo build --release --bins` failed:\n{output}");
    }
    let missing = binaries.missing();
    if !missing.is_empty() {
        bail!("`cargo build --release --bins` succeeded but {missing:?} do not exist");
    }
    Ok(binaries)
}

/// A conformance tool installed by `scripts/setup.sh` (`cargo install`): `$env_var` if set,
/// else the first of `PATH`, `$CARGO_HOME/bin`, `~/.cargo/bin`, `/root/.cargo/bin`.
pub fn find_tool(name: &str, env_var: &str) -> Result<PathBuf> {
    if let Some(path) = std::env::var_os(env_var) {
        return Ok(PathBuf::from(path));
    }
    let mut dirs: Vec<PathBuf> =
        std::env::var_os("PATH").map(|path| std::env::split_paths(&path).collect()).unwrap_or_default();
    if let Some(home) = std::env::var_os("CARGO_HOME") {
        dirs.push(PathBuf::from(home).join("bin"));
    }
    if let Some(home) = std::env::var_os("HOME") {
        dirs.push(PathBuf::from(home).join(".cargo/bin"));
    }
    dirs.push(PathBuf::from("/root/.cargo/bin"));
    dirs.into_iter()
        .map(|dir| dir.join(name))
        .find(|path| path.is_file())
        .ok_or_else(|| anyhow!("{name} not found in PATH or ~/.cargo/bin: run scripts/setup.sh (or set {env_var})"))
}

// ---- skipping --------------------------------------------------------------------------------

/// True when this process can mount FUSE file systems (root, and `/dev/fuse` opens). Otherwise
/// prints `SKIP <test>: <reason>` to the real stderr (past the test harness's capture) and
/// returns false; the caller returns early and the test passes.
pub fn require_root_and_fuse() -> bool {
    match root_and_fuse() {
        Ok(()) => true,
        Err(reason) => {
            let test = thread::current().name().unwrap_or("test").to_string();
            // Under CI a test that cannot run is a failure: a green run must have run it.
            if std::env::var("CI").is_ok_and(|ci| ci == "true") {
                panic!("{test} cannot run under CI=true: {reason}");
            }
            // One write, so the line is not split by the harness's own output.
            let line = format!("SKIP {test}: {reason}\n");
            let _ = io::stderr().write_all(line.as_bytes());
            false
        }
    }
}

fn root_and_fuse() -> std::result::Result<(), String> {
    if sys::geteuid() != 0 {
        return Err("needs root to mount FUSE file systems (run the tests as root)".into());
    }
    let meta = fs::metadata("/dev/fuse").map_err(|err| format!("no /dev/fuse ({err})"))?;
    if !meta.file_type().is_char_device() {
        return Err("/dev/fuse is not a character device".into());
    }
    OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/fuse")
        .map_err(|err| format!("cannot open /dev/fuse ({err})"))?;
    Ok(())
}

// ---- running commands ------------------------------------------------------------------------

/// What a finished command printed and how it ended.
#[derive(Debug)]
pub struct CmdOutput {
    pub program: String,
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl CmdOutput {
    pub fn success(&self) -> bool {
        self.status.success()
    }

    /// The exit code, or -1 when a signal ended the process.
    pub fn code(&self) -> i32 {
        self.status.code().unwrap_or(-1)
    }

    pub fn combined(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
}

impl fmt::Display for CmdOutput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{} ended with {}", self.program, self.status)?;
        writeln!(f, "--- stdout ---\n{}", self.stdout.trim_end())?;
        write!(f, "--- stderr ---\n{}", self.stderr.trim_end())
    }
}

/// Runs `cmd` (stdin closed) and collects its output; kills it and fails after `timeout`.
pub fn run(cmd: &mut Command, timeout: Duration) -> Result<CmdOutput> {
    match run_until(cmd, timeout)? {
        Finished::Exited(output) => Ok(output),
        Finished::TimedOut(output) => bail!("timed out after {timeout:?}:\n{output}"),
    }
}

/// How `run_until` ended.
pub enum Finished {
    Exited(CmdOutput),
    /// Still running at the deadline: killed with SIGKILL; `status` is the kill's.
    TimedOut(CmdOutput),
}

/// Like [`run`], but a timeout is a result rather than an error.
pub fn run_until(cmd: &mut Command, timeout: Duration) -> Result<Finished> {
    let program = format!("{cmd:?}");
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().with_context(|| format!("cannot start {program}"))?;
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());
    let exited = wait_child(&mut child, timeout)?;
    let status = match exited {
        Some(status) => status,
        None => {
            let _ = child.kill();
            child.wait().with_context(|| format!("reaping {program}"))?
        }
    };
    let output = CmdOutput { program, status, stdout: collect(stdout), stderr: collect(stderr) };
    Ok(match exited {
        Some(_) => Finished::Exited(output),
        None => Finished::TimedOut(output),
    })
}

fn drain<R: Read + Send + 'static>(pipe: Option<R>) -> mpsc::Receiver<Vec<u8>> {
    let (sender, receiver) = mpsc::channel();
    if let Some(mut pipe) = pipe {
        thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = pipe.read_to_end(&mut buf);
            let _ = sender.send(buf);
        });
    }
    receiver
}

fn collect(receiver: mpsc::Receiver<Vec<u8>>) -> String {
    match receiver.recv_timeout(PIPE_DRAIN_TIMEOUT) {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(_) => "<output unavailable: a descendant still holds the pipe>".to_string(),
    }
}

/// Waits up to `timeout` for `child` to exit; `None` if it is still running.
pub fn wait_child(child: &mut Child, timeout: Duration) -> Result<Option<ExitStatus>> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().context("waiting for a child process")? {
            return Ok(Some(status));
        }
        if Instant::now() >= deadline {
            return Ok(None);
        }
        thread::sleep(Duration::from_millis(5));
    }
}

/// Panics if `text` (output of `what`) shows a Rust panic.
pub fn assert_no_panic(text: &str, what: &str) {
    assert!(!text.contains("panicked"), "{what} panicked instead of reporting an error:\n{text}");
}

/// Panics unless `result` failed with `expected` (an errno); `what` names the operation.
pub fn expect_errno<T: fmt::Debug>(result: io::Result<T>, expected: i32, what: &str) {
    let expected_text = io::Error::from_raw_os_error(expected);
    match result {
        Ok(value) => panic!("{what}: succeeded ({value:?}), expected {expected_text}"),
        Err(err) => assert_eq!(sys::errno(&err), expected, "{what}: failed with {err}, expected {expected_text}"),
    }
}

/// Polls `condition` every 100 ms until it holds; fails after `timeout`, naming `what`.
pub fn wait_until(timeout: Duration, what: &str, mut condition: impl FnMut() -> Result<bool>) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        if condition()? {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        thread::sleep(Duration::from_millis(100));
    }
}

// ---- mount table -----------------------------------------------------------------------------

/// One line of `/proc/self/mountinfo`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MountEntry {
    pub mount_point: PathBuf,
    pub fstype: String,
    pub source: String,
}

/// Parses one mountinfo line: `id parent dev root MOUNT_POINT opts [optional...] - FSTYPE
/// SOURCE superopts`.
pub fn parse_mountinfo_line(line: &str) -> Option<MountEntry> {
    let (left, right) = line.split_once(" - ")?;
    let mount_point = left.split(' ').nth(4)?;
    let mut right = right.split(' ');
    let fstype = right.next()?;
    let source = right.next().unwrap_or("");
    Some(MountEntry {
        mount_point: PathBuf::from(unescape_mountinfo(mount_point)),
        fstype: unescape_mountinfo(fstype),
        source: unescape_mountinfo(source),
    })
}

/// Undoes the kernel's octal escapes (`\040` for a space, and so on).
fn unescape_mountinfo(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|digits| bytes[i] == b'\\' && digits.iter().all(|d| (b'0'..=b'7').contains(d)));
        match octal {
            Some(digits) => {
                let value = digits.iter().fold(0u32, |acc, d| acc * 8 + u32::from(d - b'0'));
                out.push(value as u8);
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub fn mounts() -> Result<Vec<MountEntry>> {
    let text = fs::read_to_string("/proc/self/mountinfo").context("reading /proc/self/mountinfo")?;
    Ok(text.lines().filter_map(parse_mountinfo_line).collect())
}

/// The topmost mount at `dir` (which must be an absolute, canonical path), if any.
pub fn mount_at(dir: &Path) -> Result<Option<MountEntry>> {
    Ok(mounts()?.into_iter().rfind(|entry| entry.mount_point == dir))
}

/// Detaches whatever is mounted at `dir` (a dead FUSE mount, usually): `fusermount3 -u -z`,
/// then `umount -l`, and waits until the mount table no longer lists it.
pub fn detach_mount(dir: &Path) -> Result<()> {
    if mount_at(dir)?.is_none() {
        return Ok(());
    }
    let attempts: [(&str, &[&str]); 2] = [("fusermount3", &["-u", "-z"]), ("umount", &["-l"])];
    let mut report = String::new();
    for (program, args) in attempts {
        let output = run(Command::new(program).args(args).arg(dir), Duration::from_secs(30))?;
        if !output.success() {
            report.push_str(&format!("{output}\n"));
        }
        if wait_unmounted(dir, Duration::from_secs(5))? {
            return Ok(());
        }
    }
    bail!("{} is still mounted after lazy unmounts:\n{report}", dir.display())
}

/// Polls the mount table until nothing is mounted at `dir`; false if `timeout` passed first.
fn wait_unmounted(dir: &Path, timeout: Duration) -> Result<bool> {
    let deadline = Instant::now() + timeout;
    loop {
        if mount_at(dir)?.is_none() {
            return Ok(true);
        }
        if Instant::now() >= deadline {
            return Ok(false);
        }
        thread::sleep(POLL_INTERVAL);
    }
}

// ---- scratch directories and volumes ---------------------------------------------------------

/// The directory scratch directories go in: `$VEXFS_TEST_TMPDIR`, else `/var/tmp` unless that is
/// a tmpfs (which refuses O_DIRECT), else `tests/work/` in the workspace.
pub fn scratch_base() -> PathBuf {
    if let Some(dir) = std::env::var_os("VEXFS_TEST_TMPDIR") {
        return PathBuf::from(dir);
    }
    let var_tmp = Path::new("/var/tmp");
    if var_tmp.is_dir() && !sys::is_tmpfs(var_tmp).unwrap_or(true) {
        return var_tmp.to_path_buf();
    }
    workspace_root().join("tests/work")
}

/// A fresh directory under [`scratch_base`], removed on drop unless `VEXFS_KEEP_TEMP=1`.
#[derive(Debug)]
pub struct ScratchDir {
    path: PathBuf,
}

impl ScratchDir {
    pub fn new(prefix: &str) -> Result<ScratchDir> {
        let base = scratch_base();
        fs::create_dir_all(&base).with_context(|| format!("creating {}", base.display()))?;
        let path = sys::mkdtemp(&base, prefix)
            .with_context(|| format!("creating a scratch directory in {}", base.display()))?;
        // Other users must be able to reach mounts inside it (the permission tests).
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755))?;
        Ok(ScratchDir { path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        if std::env::var_os("VEXFS_KEEP_TEMP").is_some_and(|v| v == "1") {
            eprintln!("keeping {}", self.path.display());
            return;
        }
        if let Err(err) = self.detach_mounts_below() {
            eprintln!("not removing {}: a mount below it remains: {err:#}", self.path.display());
            return;
        }
        if let Err(err) = fs::remove_dir_all(&self.path) {
            eprintln!("cannot remove {}: {err}", self.path.display());
        }
    }
}

impl ScratchDir {
    fn detach_mounts_below(&self) -> Result<()> {
        let below: BTreeSet<PathBuf> = mounts()?
            .into_iter()
            .map(|entry| entry.mount_point)
            .filter(|point| point.starts_with(&self.path))
            .collect();
        // Deepest first, so nested mounts come off before their parents.
        for point in below.iter().rev() {
            detach_mount(point)?;
        }
        Ok(())
    }
}

/// `--size` argument for a byte count: the largest exact unit (`8G`, `64M`, `1536K`).
pub fn size_arg(bytes: u64) -> String {
    for (unit, suffix) in [(GIB, "G"), (MIB, "M"), (KIB, "K")] {
        if bytes >= unit && bytes.is_multiple_of(unit) {
            return format!("{}{suffix}", bytes / unit);
        }
    }
    bytes.to_string()
}

/// `vexfs mkfs PATH --size SIZE [--force]`.
pub fn mkfs(path: &Path, size_bytes: u64, force: bool) -> Result<CmdOutput> {
    let mut cmd = Command::new(&binaries()?.vexfs);
    cmd.arg("mkfs").arg(path).arg("--size").arg(size_arg(size_bytes));
    if force {
        cmd.arg("--force");
    }
    run(&mut cmd, MKFS_TIMEOUT)
}

/// A VexFS image file made by `vexfs mkfs` in its own scratch directory, which also holds the
/// mount point, the daemon logs and any host-side files a test needs.
#[derive(Debug)]
pub struct TestVolume {
    scratch: ScratchDir,
    image: PathBuf,
    size_bytes: u64,
}

impl TestVolume {
    pub fn create(size_bytes: u64) -> Result<TestVolume> {
        let scratch = ScratchDir::new("vexfs-test-")?;
        let image = scratch.path().join("volume.img");
        let output = mkfs(&image, size_bytes, false)?;
        if !output.success() {
            bail!("vexfs mkfs failed:\n{output}");
        }
        let len = fs::metadata(&image)
            .with_context(|| format!("vexfs mkfs succeeded but {} is missing", image.display()))?
            .len();
        if len < size_bytes {
            bail!("vexfs mkfs --size {} made a {len}-byte image", size_arg(size_bytes));
        }
        Ok(TestVolume { scratch, image, size_bytes })
    }

    /// The image file.
    pub fn path(&self) -> &Path {
        &self.image
    }

    /// The scratch directory holding the image (on the host file system).
    pub fn dir(&self) -> &Path {
        self.scratch.path()
    }

    pub fn size_bytes(&self) -> u64 {
        self.size_bytes
    }
}

/// `vexfs fsck PATH [args]`: the exit code (-1 when killed by a signal) and stdout + stderr.
pub fn fsck_with(volume: &TestVolume, args: &[&str]) -> Result<(i32, String)> {
    let mut cmd = Command::new(&binaries()?.vexfs);
    cmd.arg("fsck").arg(volume.path()).args(args);
    let output = run(&mut cmd, FSCK_TIMEOUT).context("running vexfs fsck")?;
    Ok((output.code(), output.combined()))
}

/// `vexfs fsck PATH`: the exit code (0 clean, 1 inconsistent, 2 could not check) and output.
pub fn fsck(volume: &TestVolume) -> Result<(i32, String)> {
    fsck_with(volume, &[])
}

/// Panics unless `vexfs fsck` exits 0; `when` says at what point of the test.
pub fn assert_fsck_clean(volume: &TestVolume, when: &str) {
    let (code, output) = fsck(volume).expect("vexfs fsck could not run");
    assert_no_panic(&output, "vexfs fsck");
    assert_eq!(code, 0, "vexfs fsck {when}: exit {code}, expected 0 (clean):\n{output}");
}

// ---- the daemon ------------------------------------------------------------------------------

/// `vexfsd` options beyond `--device` and `--mount`.
#[derive(Clone, Debug, Default)]
pub struct MountOptions {
    pub cache_size: Option<String>,
    pub threads: Option<u32>,
    pub commit_interval_ms: Option<u64>,
    pub no_writeback_cache: bool,
    pub extra_args: Vec<String>,
}

impl MountOptions {
    fn args(&self) -> Vec<String> {
        let mut args = Vec::new();
        if let Some(size) = &self.cache_size {
            args.extend(["--cache-size".to_string(), size.clone()]);
        }
        if let Some(threads) = self.threads {
            args.extend(["--threads".to_string(), threads.to_string()]);
        }
        if let Some(ms) = self.commit_interval_ms {
            args.extend(["--commit-interval-ms".to_string(), ms.to_string()]);
        }
        if self.no_writeback_cache {
            args.push("--no-writeback-cache".to_string());
        }
        args.extend(self.extra_args.iter().cloned());
        args
    }
}

static LOG_SEQUENCE: AtomicUsize = AtomicUsize::new(0);

/// A running `vexfsd` serving a [`TestVolume`] at a mount directory. Its stdout and stderr go
/// to a log file in the volume's scratch directory. Dropping it unmounts (or kills and detaches)
/// without panicking; when the test is already panicking, it prints the end of the daemon log.
pub struct Mount<'v> {
    volume: &'v TestVolume,
    dir: PathBuf,
    options: MountOptions,
    child: Option<Child>,
    log_path: PathBuf,
}

impl<'v> Mount<'v> {
    /// Serves `volume` at `<scratch>/mnt` (created if needed) and waits for the mount.
    pub fn start(volume: &'v TestVolume, options: &MountOptions) -> Result<Mount<'v>> {
        Mount::start_at(volume, &volume.dir().join("mnt"), options)
    }

    /// Serves `volume` at `dir` (created if needed) and waits until `/proc/self/mountinfo`
    /// lists `fuse.vexfs` there. Fails with the daemon's log if it exits first.
    pub fn start_at(volume: &'v TestVolume, dir: &Path, options: &MountOptions) -> Result<Mount<'v>> {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let dir = dir.canonicalize().with_context(|| format!("resolving {}", dir.display()))?;
        if let Some(entry) = mount_at(&dir)? {
            bail!("{} is already a mount point ({entry:?})", dir.display());
        }
        let sequence = LOG_SEQUENCE.fetch_add(1, Ordering::Relaxed);
        let log_path = volume.dir().join(format!("vexfsd-{sequence}.log"));
        let child = spawn_vexfsd(volume.path(), &dir, &options.args(), &log_path)?;
        let mut mount = Mount { volume, dir, options: options.clone(), child: Some(child), log_path };
        mount.wait_mounted()?;
        Ok(mount)
    }

    fn wait_mounted(&mut self) -> Result<()> {
        let deadline = Instant::now() + MOUNT_TIMEOUT;
        loop {
            if mount_at(&self.dir)?.is_some_and(|entry| entry.fstype == FSTYPE) {
                return Ok(());
            }
            let child = self.child.as_mut().expect("a starting mount has a child");
            if let Some(status) = child.try_wait()? {
                self.child = None;
                bail!("vexfsd exited ({status}) before {} was mounted\n{}", self.dir.display(), self.log_excerpt());
            }
            if Instant::now() >= deadline {
                let found = mount_at(&self.dir)?
                    .map_or_else(|| "nothing is mounted there".to_string(), |entry| format!("found {entry:?}"));
                bail!(
                    "{} was not listed as {FSTYPE} in /proc/self/mountinfo within {MOUNT_TIMEOUT:?} ({found})\n{}",
                    self.dir.display(),
                    self.log_excerpt()
                );
            }
            thread::sleep(POLL_INTERVAL);
        }
    }

    /// The mount directory (absolute and canonical).
    pub fn path(&self) -> &Path {
        &self.dir
    }

    pub fn volume(&self) -> &'v TestVolume {
        self.volume
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// The daemon's whole log so far.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    fn log_excerpt(&self) -> String {
        log_tail(&self.log_path)
    }

    /// Unmounts with `fusermount3 -u` (retrying while busy) and requires the daemon to exit 0.
    pub fn unmount(mut self) -> Result<()> {
        let mut child = self.child.take().context("vexfsd is not running")?;
        let deadline = Instant::now() + UNMOUNT_TIMEOUT;
        loop {
            let output = run(Command::new("fusermount3").arg("-u").arg(&self.dir), Duration::from_secs(30))?;
            if output.success() {
                break;
            }
            if let Some(status) = child.try_wait()? {
                bail!("vexfsd had already exited ({status}) at unmount\n{output}\n{}", self.log_excerpt());
            }
            if Instant::now() >= deadline {
                self.child = Some(child);
                bail!("fusermount3 -u {} kept failing for {UNMOUNT_TIMEOUT:?}:\n{output}", self.dir.display());
            }
            thread::sleep(Duration::from_millis(200));
        }
        self.expect_clean_exit(child, "fusermount3 -u")
    }

    /// Sends `signal` (SIGTERM or SIGINT) and requires the daemon to unmount and exit 0.
    pub fn stop_with_signal(mut self, signal: libc::c_int) -> Result<()> {
        let child = self.child.take().context("vexfsd is not running")?;
        sys::kill(child.id(), signal).context("signalling vexfsd")?;
        self.expect_clean_exit(child, &format!("signal {signal}"))
    }

    fn expect_clean_exit(&mut self, mut child: Child, cause: &str) -> Result<()> {
        let Some(status) = wait_child(&mut child, EXIT_TIMEOUT)? else {
            self.child = Some(child);
            bail!("vexfsd did not exit within {EXIT_TIMEOUT:?} after {cause}\n{}", self.log_excerpt());
        };
        if !status.success() {
            bail!("vexfsd exited with {status} after {cause}, expected 0\n{}", self.log_excerpt());
        }
        if !wait_unmounted(&self.dir, Duration::from_secs(5))? {
            bail!("vexfsd exited 0 after {cause} but {} is still mounted", self.dir.display());
        }
        Ok(())
    }

    /// Kills the daemon with SIGKILL, then detaches the dead mount.
    pub fn kill9(mut self) -> Result<()> {
        let mut child = self.child.take().context("vexfsd is not running")?;
        child.kill().context("sending SIGKILL to vexfsd")?;
        if wait_child(&mut child, EXIT_TIMEOUT)?.is_none() {
            bail!("vexfsd did not die within {EXIT_TIMEOUT:?} of SIGKILL");
        }
        detach_mount(&self.dir)
    }

    /// Unmounts cleanly and serves the same volume again at the same place.
    pub fn remount(self) -> Result<Mount<'v>> {
        let (volume, dir, options) = (self.volume, self.dir.clone(), self.options.clone());
        self.unmount().context("unmounting for a remount")?;
        Mount::start_at(volume, &dir, &options).context("mounting again")
    }
}

impl Drop for Mount<'_> {
    fn drop(&mut self) {
        if thread::panicking() {
            eprintln!("{}", self.log_excerpt());
        }
        if let Some(mut child) = self.child.take() {
            stop_quietly(&mut child, &self.dir);
        }
        if let Err(err) = detach_mount(&self.dir) {
            eprintln!("cleanup: {err:#}");
        }
    }
}

/// Best-effort shutdown for `Drop`: unmount, then SIGKILL if the daemon lingers.
fn stop_quietly(child: &mut Child, dir: &Path) {
    if matches!(child.try_wait(), Ok(None)) {
        let _ = run(Command::new("fusermount3").arg("-u").arg(dir), Duration::from_secs(30));
        if matches!(wait_child(child, Duration::from_secs(10)), Ok(None)) {
            let _ = child.kill();
        }
    }
    let _ = wait_child(child, EXIT_TIMEOUT);
}

fn spawn_vexfsd(device: &Path, dir: &Path, args: &[String], log_path: &Path) -> Result<Child> {
    let log = File::create(log_path).with_context(|| format!("creating {}", log_path.display()))?;
    let mut cmd = Command::new(&binaries()?.vexfsd);
    cmd.arg("--device")
        .arg(device)
        .arg("--mount")
        .arg(dir)
        .args(args)
        .env("RUST_BACKTRACE", "1")
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    cmd.spawn().with_context(|| format!("cannot start {cmd:?}"))
}

/// The last lines of a daemon log, framed for a failure message.
pub fn log_tail(path: &Path) -> String {
    const LINES_MAX: usize = 80;
    let text = fs::read_to_string(path).unwrap_or_else(|err| format!("<unreadable: {err}>"));
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.len().saturating_sub(LINES_MAX);
    format!(
        "--- vexfsd log {} (last {} of {} lines) ---\n{}\n--- end of log ---",
        path.display(),
        lines.len() - start,
        lines.len(),
        lines[start..].join("\n")
    )
}

/// Runs `vexfsd --device DEVICE --mount DIR [args]` for input it must refuse. Returns its
/// output once it exits; if it is still running after `timeout` (it accepted the input), kills
/// it, detaches anything it mounted at `dir`, and fails.
pub fn run_vexfsd_expecting_refusal(device: &Path, dir: &Path, args: &[&str], timeout: Duration) -> Result<CmdOutput> {
    let mut cmd = Command::new(&binaries()?.vexfsd);
    cmd.arg("--device").arg(device).arg("--mount").arg(dir).args(args).env("RUST_BACKTRACE", "1");
    match run_until(&mut cmd, timeout)? {
        Finished::Exited(output) => Ok(output),
        Finished::TimedOut(output) => {
            let cleanup = match dir.canonicalize() {
                Ok(dir) => detach_mount(&dir).err(),
                Err(_) => None,
            };
            bail!(
                "vexfsd was still running after {timeout:?} instead of refusing (killed it; cleanup error: {cleanup:?}):\n{output}"
            )
        }
    }
}

/// An `.fvecs` file: each vector as its dimension (`i32`) then its values (`f32`), little-endian.
pub fn fvecs_bytes(dim: usize, values: &[f32]) -> Vec<u8> {
    let mut out = Vec::new();
    for row in values.chunks(dim) {
        out.extend_from_slice(&(dim as i32).to_le_bytes());
        row.iter().for_each(|v| out.extend_from_slice(&v.to_le_bytes()));
    }
    out
}

// ---- the vexfs CLI -------------------------------------------------------------------------

/// How long one `vexfs` command may run.
pub const CLI_TIMEOUT: Duration = Duration::from_secs(120);

/// A `vexfs` command line from paths, strings and numbers' text.
#[macro_export]
macro_rules! args {
    ($($arg:expr),* $(,)?) => { [$(std::ffi::OsString::from($arg)),*] };
}

/// Runs `vexfs ARGS`; panics if it cannot run or if its output shows a panic.
pub fn vexfs<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> CmdOutput {
    let mut cmd = Command::new(&binaries().expect("the vexfs binary").vexfs);
    cmd.args(args);
    let output = run(&mut cmd, CLI_TIMEOUT).expect("running vexfs");
    assert_no_panic(&output.combined(), "vexfs");
    output
}

/// Runs `vexfs ARGS` and requires exit 0 with nothing on stderr; returns stdout.
pub fn vexfs_ok<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> String {
    let output = vexfs(args);
    assert!(output.success() && output.stderr.is_empty(), "expected success:\n{output}");
    output.stdout
}

/// Runs `vexfs ARGS`, requires exit 1 with `vexfs <command>: ` and every one of `needles` on
/// stderr and nothing on stdout.
pub fn vexfs_fails<S: AsRef<std::ffi::OsStr>>(args: &[S], command: &str, needles: &[&str]) {
    let output = vexfs(args);
    assert_eq!(output.code(), 1, "expected exit 1:\n{output}");
    assert!(output.stdout.is_empty(), "printed results on failure:\n{output}");
    assert!(output.stderr.starts_with(&format!("vexfs {command}: ")), "{output}");
    for needle in needles {
        assert!(output.stderr.contains(needle), "stderr lacks {needle:?}:\n{output}");
    }
}

// ---- C programs and other users -------------------------------------------------------------

/// `tests/c/NAME.c` compiled with the system C compiler against `client/include/vexfs.h`, once per
/// test process (the binary lives in a scratch directory kept for the process's life).
pub fn c_program(name: &str) -> PathBuf {
    static PROGRAMS: OnceLock<std::sync::Mutex<Vec<(String, ScratchDir, PathBuf)>>> = OnceLock::new();
    let programs = PROGRAMS.get_or_init(Default::default);
    let mut programs = programs.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some((_, _, path)) = programs.iter().find(|(n, _, _)| n == name) {
        return path.clone();
    }
    let dir = ScratchDir::new("vexfs-c-").expect("a scratch directory for a C program");
    let root = workspace_root();
    let out = dir.path().join(name);
    let output = run(
        Command::new("cc")
            .args(["-std=c11", "-D_DEFAULT_SOURCE", "-Wall", "-Wextra", "-Werror", "-O2", "-I"])
            .arg(root.join("client/include"))
            .arg(root.join(format!("tests/c/{name}.c")))
            .arg("-o")
            .arg(&out)
            .arg("-lm"),
        Duration::from_secs(60),
    )
    .expect("running cc");
    assert!(output.success(), "compiling tests/c/{name}.c failed:\n{output}");
    programs.push((name.to_string(), dir, out.clone()));
    out
}

/// A user the multi-user tests act as: uid, gid and exactly these supplementary groups.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
}

impl User {
    /// `nobody` (65534, group `nogroup`), on every Debian system.
    pub fn nobody() -> User {
        User { uid: 65534, gid: 65534, groups: Vec::new() }
    }

    /// `daemon` (1, group `daemon`), the second unprivileged user every Debian system has.
    pub fn daemon() -> User {
        User { uid: 1, gid: 1, groups: Vec::new() }
    }

    /// This user with `groups` as its supplementary groups.
    pub fn with_groups(mut self, groups: &[u32]) -> User {
        self.groups = groups.to_vec();
        self
    }

    /// `program` to be run as this user (through util-linux's `setpriv`: real and effective ids,
    /// and the supplementary groups set exactly).
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new("setpriv");
        cmd.arg(format!("--reuid={}", self.uid)).arg(format!("--regid={}", self.gid));
        if self.groups.is_empty() {
            cmd.arg("--clear-groups");
        } else {
            let groups: Vec<String> = self.groups.iter().map(u32::to_string).collect();
            cmd.arg(format!("--groups={}", groups.join(",")));
        }
        cmd.arg(program);
        cmd
    }

    /// Runs `vexfs ARGS` as this user; panics if it cannot run or if its output shows a panic.
    pub fn vexfs<S: AsRef<std::ffi::OsStr>>(&self, args: &[S]) -> CmdOutput {
        let mut cmd = self.command(&binaries().expect("the vexfs binary").vexfs);
        cmd.args(args);
        let output = run(&mut cmd, CLI_TIMEOUT).expect("running vexfs as another user");
        assert_no_panic(&output.combined(), "vexfs");
        output
    }

    /// Runs `sh -c SCRIPT` as this user.
    pub fn sh(&self, script: &str) -> CmdOutput {
        let mut cmd = self.command("/bin/sh");
        cmd.arg("-c").arg(script);
        run(&mut cmd, CLI_TIMEOUT).expect("running sh as another user")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_line_parses() {
        let line = "36 35 0:52 / /var/tmp/vexfs-test-a\\040b/mnt rw,nosuid,nodev,relatime shared:1 - fuse.vexfs vexfs rw,user_id=0,group_id=0";
        let entry = parse_mountinfo_line(line).expect("parses");
        assert_eq!(entry.mount_point, PathBuf::from("/var/tmp/vexfs-test-a b/mnt"));
        assert_eq!(entry.fstype, "fuse.vexfs");
        assert_eq!(entry.source, "vexfs");
    }

    #[test]
    fn mountinfo_line_without_optional_fields_parses() {
        let line = "22 1 8:1 / / rw,relatime - ext4 /dev/vda rw";
        let entry = parse_mountinfo_line(line).expect("parses");
        assert_eq!(entry.mount_point, PathBuf::from("/"));
        assert_eq!(entry.fstype, "ext4");
        assert!(parse_mountinfo_line("garbage").is_none());
    }

    #[test]
    fn size_arg_uses_largest_exact_unit() {
        assert_eq!(size_arg(8 * GIB), "8G");
        assert_eq!(size_arg(64 * MIB), "64M");
        assert_eq!(size_arg(1536 * KIB), "1536K");
        assert_eq!(size_arg(MIB), "1M");
        assert_eq!(size_arg(1000), "1000");
    }

    #[test]
    fn bin_dir_defaults_into_the_workspace() {
        if std::env::var_os("VEXFS_BIN_DIR").is_none() && std::env::var_os("CARGO_TARGET_DIR").is_none() {
            assert_eq!(bin_dir(), workspace_root().join("target/release"));
        }
    }

    #[test]
    fn run_reports_exit_code_and_output() {
        let output = run(Command::new("sh").args(["-c", "echo out; echo err >&2; exit 3"]), Duration::from_secs(10))
            .expect("sh runs");
        assert_eq!(output.code(), 3);
        assert_eq!(output.stdout, "out\n");
        assert_eq!(output.stderr, "err\n");
    }

    #[test]
    fn run_times_out() {
        let err =
            run(Command::new("sleep").arg("10"), Duration::from_millis(200)).expect_err("sleep 10 outlives 200 ms");
        assert!(format!("{err:#}").contains("timed out"));
    }
}
