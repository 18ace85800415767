//! The device engine (`vexfs_daemon::io`: `Device`, `Arena`, `Ring`) against fio's io_uring engine
//! with fixed buffers, a registered file and `O_DIRECT`, on the same image file.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use vexfs_daemon::io::{Arena, Completion, Device, DeviceOptions, OpKind, Ring};

use crate::{parameter, Row, Sample};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pattern {
    RandRead,
    SeqWrite,
    SeqRead,
}

/// One fio-comparable job: pattern, block size and queue depth.
#[derive(Clone, Copy, Debug)]
pub struct Job {
    pub pattern: Pattern,
    pub block_size: usize,
    pub queue_depth: usize,
}

impl Job {
    fn name(&self) -> String {
        let what = match self.pattern {
            Pattern::RandRead => "random read",
            Pattern::SeqWrite => "sequential write",
            Pattern::SeqRead => "sequential read",
        };
        format!("{} KiB {what}, QD {}", self.block_size / 1024, self.queue_depth)
    }

    fn unit(&self) -> &'static str {
        match self.pattern {
            Pattern::RandRead => "IOPS",
            Pattern::SeqWrite | Pattern::SeqRead => "MiB/s",
        }
    }

    fn fio_rw(&self) -> &'static str {
        match self.pattern {
            Pattern::RandRead => "randread",
            Pattern::SeqWrite => "write",
            Pattern::SeqRead => "read",
        }
    }

    /// The job's figure from a run that did `ops` operations of `bytes` bytes in `elapsed`.
    fn figure(&self, ops: u64, bytes: u64, elapsed: Duration) -> f64 {
        match self.pattern {
            Pattern::RandRead => ops as f64 / elapsed.as_secs_f64(),
            Pattern::SeqWrite | Pattern::SeqRead => bytes as f64 / elapsed.as_secs_f64() / (1 << 20) as f64,
        }
    }
}

pub const JOBS: [Job; 3] = [
    Job { pattern: Pattern::RandRead, block_size: 4096, queue_depth: 32 },
    Job { pattern: Pattern::SeqWrite, block_size: 1 << 20, queue_depth: 4 },
    Job { pattern: Pattern::SeqRead, block_size: 1 << 20, queue_depth: 4 },
];

/// Target: the engine at least this fraction of fio.
pub const TARGET: f64 = 0.95;

#[derive(Clone, Debug)]
pub struct Config {
    pub image: PathBuf,
    pub image_bytes: u64,
    pub duration: Duration,
    pub pairs: usize,
}

impl Config {
    pub fn new(small: bool, dir: &Path) -> Config {
        Config {
            image: dir.join("engine.img"),
            image_bytes: parameter(small, 256 << 20, 1 << 30),
            duration: parameter(small, Duration::from_secs(1), Duration::from_secs(5)),
            pairs: 3,
        }
    }
}

/// Runs every job, interleaving VexFS and fio `pairs` times, and returns one row per job.
pub fn run(config: &Config) -> Result<Vec<Row>> {
    ensure!(config.pairs >= 1, "at least one pair");
    prepare_image(&config.image, config.image_bytes)?;
    let mut rows = Vec::new();
    for job in JOBS {
        let mut pairs = Vec::new();
        for pair in 0..config.pairs {
            let ours =
                run_vexfs(&config.image, job, config.duration).with_context(|| format!("vexfs {}", job.name()))?;
            let theirs = run_fio(&config.image, config.image_bytes, job, config.duration)
                .with_context(|| format!("fio {}", job.name()))?;
            eprintln!(
                "engine {} pair {}: vexfs {:.0} fio {:.0} {} (ratio {:.3})",
                job.name(),
                pair + 1,
                ours.value,
                theirs.value,
                job.unit(),
                ours.value / theirs.value
            );
            pairs.push((ours, theirs));
        }
        rows.push(Row { name: job.name(), unit: job.unit(), target: TARGET, pairs });
    }
    Ok(rows)
}

/// Writes `bytes` of non-zero data (each 4 KiB block starts with its own offset) and syncs, so no
/// read hits a hole.
fn prepare_image(path: &Path, bytes: u64) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut file = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .open(path)
        .with_context(|| format!("create {}", path.display()))?;
    let chunk = 1usize << 20;
    let mut buf = vec![0u8; chunk];
    let mut offset = 0u64;
    while offset < bytes {
        fill_pattern(&mut buf, offset);
        file.write_all(&buf)?;
        offset += chunk as u64;
    }
    file.sync_all()?;
    drop(file);
    Ok(())
}

fn fill_pattern(buf: &mut [u8], offset: u64) {
    for (i, block) in buf.chunks_mut(4096).enumerate() {
        let tag = (offset + (i as u64) * 4096) ^ 0x5645_5846_5342_454e;
        for (j, word) in block.chunks_mut(8).enumerate() {
            word.copy_from_slice(&tag.wrapping_add(j as u64).to_le_bytes());
        }
    }
}

/// A small xorshift generator: the benchmark needs speed and repeatability, not quality.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
}

/// Drives `job` through the engine's `Ring` for `duration`.
pub fn run_vexfs(image: &Path, job: Job, duration: Duration) -> Result<Sample> {
    let device = Device::open(image, &DeviceOptions::default())?;
    ensure!(device.is_direct(), "{} was not opened O_DIRECT", image.display());
    let size = device.geometry().size_bytes;
    let bs = job.block_size as u64;
    let blocks = size / bs;
    ensure!(blocks > job.queue_depth as u64, "image too small");
    let arena = Arena::new(job.block_size * job.queue_depth)?;
    let entries = (job.queue_depth as u32).next_power_of_two();
    let mut ring = Ring::new(&device, Some(&arena), entries)?;
    ensure!(ring.has_fixed_buffers(), "the arena could not be registered as fixed buffers");

    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    let mut next_seq = 0u64;
    let mut next_offset = |rng: &mut XorShift| match job.pattern {
        Pattern::RandRead => (rng.next() % blocks) * bs,
        Pattern::SeqWrite | Pattern::SeqRead => {
            let offset = (next_seq % blocks) * bs;
            next_seq += 1;
            offset
        }
    };
    let submit = |ring: &mut Ring, buf, offset, tag| -> Result<()> {
        let result = match job.pattern {
            Pattern::SeqWrite => ring.submit_write(buf, offset, tag),
            Pattern::RandRead | Pattern::SeqRead => ring.submit_read(buf, offset, tag),
        };
        result.map_err(|e| anyhow::anyhow!("{e}"))
    };

    let start = Instant::now();
    for tag in 0..job.queue_depth as u64 {
        let mut buf = arena.alloc(job.block_size);
        ensure!(buf.is_registered(), "buffer fell back to the heap");
        if job.pattern == Pattern::SeqWrite {
            fill_pattern(&mut buf, tag);
        }
        let offset = next_offset(&mut rng);
        submit(&mut ring, buf, offset, tag)?;
    }
    let mut completions: Vec<Completion> = Vec::with_capacity(job.queue_depth);
    let (mut ops, mut bytes, mut checksum) = (0u64, 0u64, 0u64);
    let mut stop = false;
    while ring.inflight() > 0 {
        ring.wait_completions(1, &mut completions)?;
        if !stop && start.elapsed() >= duration {
            stop = true;
        }
        for completion in completions.drain(..) {
            let n = completion.result.with_context(|| format!("{:?} at {}", completion.kind, completion.offset))?;
            ensure!(n == job.block_size, "short transfer: {n} of {} bytes", job.block_size);
            let buf = completion.buf.context("buffer not handed back")?;
            ops += 1;
            bytes += n as u64;
            if completion.kind == OpKind::Read {
                // Order-independent: completions arrive in any order.
                checksum = checksum.wrapping_add(u64::from_le_bytes(buf[..8].try_into().expect("8 bytes")));
            }
            if !stop {
                let offset = next_offset(&mut rng);
                // Back to the device at once, one enter per operation, as fio's default
                // `iodepth_batch_submit=1` does: holding replacements until every reaped
                // completion is processed starves the device (measured: 0.8x of fio, against
                // 1.0x this way).
                submit(&mut ring, buf, offset, completion.user_data)?;
                ring.submit()?;
            }
        }
    }
    let elapsed = start.elapsed();
    Ok(Sample { value: job.figure(ops, bytes, elapsed), checksum: format!("ops={ops} sum={checksum:016x}") })
}

/// The fio command line for `job` on `image`.
pub fn fio_args(image: &Path, image_bytes: u64, job: Job, duration: Duration) -> Vec<String> {
    vec![
        "--name=anchor".to_owned(),
        format!("--filename={}", image.display()),
        "--ioengine=io_uring".to_owned(),
        "--fixedbufs".to_owned(),
        "--registerfiles".to_owned(),
        "--direct=1".to_owned(),
        format!("--rw={}", job.fio_rw()),
        format!("--bs={}", job.block_size),
        format!("--iodepth={}", job.queue_depth),
        format!("--size={image_bytes}"),
        "--time_based".to_owned(),
        format!("--runtime={}ms", duration.as_millis()),
        "--norandommap".to_owned(),
        "--randrepeat=0".to_owned(),
        "--output-format=json".to_owned(),
    ]
}

pub fn run_fio(image: &Path, image_bytes: u64, job: Job, duration: Duration) -> Result<Sample> {
    let output = Command::new("fio").args(fio_args(image, image_bytes, job, duration)).output().context("run fio")?;
    if !output.status.success() {
        bail!("fio failed: {}", String::from_utf8_lossy(&output.stderr));
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    // fio may print notes before the JSON document.
    let json_start = stdout.find('{').context("no JSON in fio output")?;
    let doc: serde_json::Value = serde_json::from_str(&stdout[json_start..]).context("parse fio JSON")?;
    let side = match job.pattern {
        Pattern::SeqWrite => "write",
        Pattern::RandRead | Pattern::SeqRead => "read",
    };
    let stats = &doc["jobs"][0][side];
    let iops = stats["iops"].as_f64().context("fio iops")?;
    let bw_bytes = stats["bw_bytes"].as_f64().context("fio bw_bytes")?;
    let io_bytes = stats["io_bytes"].as_u64().context("fio io_bytes")?;
    let errors = doc["jobs"][0]["error"].as_i64().unwrap_or(0);
    ensure!(errors == 0, "fio job error {errors}");
    let value = match job.pattern {
        Pattern::RandRead => iops,
        Pattern::SeqWrite | Pattern::SeqRead => bw_bytes / (1 << 20) as f64,
    };
    Ok(Sample { value, checksum: format!("fio io_bytes={io_bytes}") })
}
