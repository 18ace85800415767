//! The FUSE mount (`vexfsd` serving an image file) against the host file system, both on the same
//! disk: large sequential write and read, and creating + stat'ing many empty files.

use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use xxhash_rust::xxh3::Xxh3;

use crate::{parameter, Row, Sample};

pub const TARGET_SEQUENTIAL: f64 = 0.70;
pub const TARGET_FILES: f64 = 0.50;

#[derive(Clone, Debug)]
pub struct Config {
    pub dir: PathBuf,
    pub bin_dir: PathBuf,
    pub file_bytes: u64,
    pub files: usize,
    pub pairs: usize,
}

impl Config {
    pub fn new(small: bool, dir: &Path, bin_dir: PathBuf) -> Config {
        Config {
            dir: dir.to_owned(),
            bin_dir,
            file_bytes: parameter(small, 128 << 20, 1 << 30),
            files: parameter(small, 10_000, 100_000),
            pairs: 3,
        }
    }
}

/// `VEXFS_BIN_DIR`, or the workspace's `target/release`.
pub fn default_bin_dir() -> PathBuf {
    std::env::var_os("VEXFS_BIN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/release"))
}

struct Measured {
    write: Sample,
    read: Sample,
    files: Sample,
}

/// Turns on FUSE-over-io_uring when this kernel has it (`vexfsd` then serves the mount over it,
/// its default) and names the transport the mounts use.
pub fn enable_uring() -> &'static str {
    let parameter = Path::new("/sys/module/fuse/parameters/enable_uring");
    if parameter.exists() {
        let _ = fs::write(parameter, "Y");
    }
    if vexfs_daemon::fuse::uring::kernel_enabled() {
        "FUSE-over-io_uring"
    } else {
        "/dev/fuse"
    }
}

pub fn run(config: &Config) -> Result<Vec<Row>> {
    for bin in ["vexfs", "vexfsd"] {
        let path = config.bin_dir.join(bin);
        ensure!(path.exists(), "{} missing: run `cargo build --release` or set VEXFS_BIN_DIR", path.display());
    }
    fs::create_dir_all(&config.dir)?;
    let mut measured = Vec::new();
    for pair in 0..config.pairs {
        let ours = run_vexfs(config).context("vexfs mount")?;
        let theirs = run_host(config).context("host file system")?;
        ensure!(
            ours.read.checksum == theirs.read.checksum,
            "the two sides read different bytes: {} vs {}",
            ours.read.checksum,
            theirs.read.checksum
        );
        eprintln!(
            "mount pair {}: write {:.0}/{:.0} MiB/s, read {:.0}/{:.0} MiB/s, files {:.0}/{:.0} per s",
            pair + 1,
            ours.write.value,
            theirs.write.value,
            ours.read.value,
            theirs.read.value,
            ours.files.value,
            theirs.files.value
        );
        measured.push((ours, theirs));
    }
    let mib = config.file_bytes >> 20;
    let row = |name: String, unit, target, pick: fn(&Measured) -> &Sample| Row {
        name,
        unit,
        target,
        pairs: measured.iter().map(|(a, b)| (pick(a).clone(), pick(b).clone())).collect(),
    };
    Ok(vec![
        row(format!("sequential write {mib} MiB, 1 MiB writes + fsync"), "MiB/s", TARGET_SEQUENTIAL, |m| &m.write),
        row(format!("sequential read {mib} MiB, caches dropped"), "MiB/s", TARGET_SEQUENTIAL, |m| &m.read),
        row(format!("create + stat {} empty files", config.files), "files/s", TARGET_FILES, |m| &m.files),
    ])
}

fn run_vexfs(config: &Config) -> Result<Measured> {
    let image = config.dir.join("mount.img");
    let mountpoint = config.dir.join("vexfs-mnt");
    let _ = fs::remove_file(&image);
    fs::create_dir_all(&mountpoint)?;
    let status = Command::new(config.bin_dir.join("vexfs"))
        .arg("mkfs")
        .arg(&image)
        .args(["--size", "4G"])
        .stdout(Stdio::null())
        .status()
        .context("run vexfs mkfs")?;
    ensure!(status.success(), "vexfs mkfs failed: {status}");
    let daemon = Daemon::start(&config.bin_dir, &image, &mountpoint)?;
    let result = workload(config, &mountpoint);
    daemon.stop()?;
    let _ = fs::remove_file(&image);
    result
}

fn run_host(config: &Config) -> Result<Measured> {
    let dir = config.dir.join("host");
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir)?;
    let result = workload(config, &dir);
    fs::remove_dir_all(&dir)?;
    result
}

/// The same work on either side: write, drop caches, read back, then the file storm.
fn workload(config: &Config, dir: &Path) -> Result<Measured> {
    let path = dir.join("big");
    let write = write_file(&path, config.file_bytes)?;
    drop_caches()?;
    let read = read_file(&path, config.file_bytes)?;
    fs::remove_file(&path)?;
    let files = create_and_stat(&dir.join("many"), config.files)?;
    Ok(Measured { write, read, files })
}

fn chunk_pattern(buf: &mut [u8], index: u64) {
    for (i, word) in buf.chunks_mut(8).enumerate() {
        let v = (index << 20 | i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        word.copy_from_slice(&v.to_le_bytes());
    }
}

const CHUNK: usize = 1 << 20;

fn write_file(path: &Path, bytes: u64) -> Result<Sample> {
    let mut buf = vec![0u8; CHUNK];
    let start = Instant::now();
    let mut file = File::create(path).with_context(|| format!("create {}", path.display()))?;
    let mut written = 0u64;
    let mut index = 0u64;
    while written < bytes {
        chunk_pattern(&mut buf, index);
        file.write_all(&buf)?;
        written += CHUNK as u64;
        index += 1;
    }
    file.sync_all()?;
    drop(file);
    let elapsed = start.elapsed();
    Ok(Sample { value: mib_per_s(written, elapsed), checksum: format!("wrote {written} bytes") })
}

fn read_file(path: &Path, bytes: u64) -> Result<Sample> {
    let mut buf = vec![0u8; CHUNK];
    let mut hasher = Xxh3::new();
    let start = Instant::now();
    let mut file = File::open(path)?;
    let mut total = 0u64;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        total += n as u64;
    }
    let elapsed = start.elapsed();
    ensure!(total == bytes, "read {total} of {bytes} bytes");
    Ok(Sample { value: mib_per_s(total, elapsed), checksum: format!("xxh3={:016x}", hasher.digest()) })
}

fn create_and_stat(dir: &Path, count: usize) -> Result<Sample> {
    fs::create_dir(dir)?;
    let start = Instant::now();
    for i in 0..count {
        File::create(dir.join(format!("f{i:06}")))?;
    }
    let mut sizes = 0u64;
    for i in 0..count {
        let meta = fs::metadata(dir.join(format!("f{i:06}")))?;
        sizes += meta.len() + 1;
    }
    let elapsed = start.elapsed();
    ensure!(sizes == count as u64, "stat saw non-empty files");
    let value = count as f64 / elapsed.as_secs_f64();
    fs::remove_dir_all(dir)?;
    Ok(Sample { value, checksum: format!("stat'ed {sizes} files") })
}

fn mib_per_s(bytes: u64, elapsed: Duration) -> f64 {
    bytes as f64 / elapsed.as_secs_f64() / (1 << 20) as f64
}

/// `sync; echo 3 > /proc/sys/vm/drop_caches` (needs root).
pub fn drop_caches() -> Result<()> {
    // SAFETY: sync(2) takes no arguments and cannot fail.
    unsafe { libc::sync() };
    fs::write("/proc/sys/vm/drop_caches", "3\n").context("drop caches (root needed)")
}

struct Daemon {
    child: Child,
    mountpoint: PathBuf,
}

impl Daemon {
    fn start(bin_dir: &Path, image: &Path, mountpoint: &Path) -> Result<Daemon> {
        let log_path = image.with_extension("vexfsd.log");
        let log = File::create(&log_path).with_context(|| format!("create {}", log_path.display()))?;
        let child = Command::new(bin_dir.join("vexfsd"))
            .arg("--device")
            .arg(image)
            .arg("--mount")
            .arg(mountpoint)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("start vexfsd")?;
        let mut daemon = Daemon { child, mountpoint: mountpoint.to_owned() };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !is_mounted(mountpoint)? {
            if let Some(status) = daemon.child.try_wait()? {
                bail!("vexfsd exited before mounting: {status}");
            }
            if Instant::now() > deadline {
                bail!("vexfsd did not mount {} in 20 s", mountpoint.display());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(daemon)
    }

    fn stop(mut self) -> Result<()> {
        let status = Command::new("fusermount3").arg("-u").arg(&self.mountpoint).status()?;
        ensure!(status.success(), "fusermount3 -u {} failed", self.mountpoint.display());
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait()? {
                ensure!(status.success(), "vexfsd exited with {status}");
                return Ok(());
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                bail!("vexfsd did not exit after unmount");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn is_mounted(mountpoint: &Path) -> Result<bool> {
    let mountpoint = fs::canonicalize(mountpoint)?;
    let info = fs::read_to_string("/proc/self/mountinfo")?;
    let wanted = mountpoint.to_string_lossy();
    Ok(info.lines().any(|line| {
        let fields: Vec<&str> = line.split(' ').collect();
        let fstype = line.split(" - ").nth(1).and_then(|rest| rest.split(' ').next());
        fields.get(4) == Some(&wanted.as_ref()) && fstype == Some("fuse.vexfs")
    }))
}
