//! Vector collections: exact k-NN against FAISS `IndexFlat` on the real embedding data set, batch
//! insert throughput acknowledged in memory, and durable inserts against fio's sequential write
//! bandwidth on the same disk.
//!
//! The VexFS side is the vector service in process (`vexfs_daemon::vector::Vectors`) over a volume
//! on an image file, served by the io_uring engine with one shard worker per CPU: the same code the
//! mount's ioctls and query files reach, without the FUSE round trip (FAISS runs in process too).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use vexfs_client::volume::{self, MkfsOptions};
use vexfs_daemon::engine::fs::Creds;
use vexfs_daemon::engine::{Engine, EngineOptions, SystemClock};
use vexfs_daemon::io::{Arena, Device, DeviceOptions, UringStorage};
use vexfs_daemon::vector::{CollectionSpec, Vectors};
use vexfs_format::collection::Metric;
use vexfs_format::inode::ROOT_INO;

use crate::{median, Row, Sample};

/// Target: VexFS's exact k-NN at least as many queries per second as FAISS.
pub const KNN_TARGET: f64 = 1.0;
/// Target: inserts acknowledged in memory, vectors per second (dimension 128).
pub const INSERT_TARGET: f64 = 3.2e6;
/// Target: durable inserts at least this fraction of fio's sequential write bandwidth.
pub const DURABLE_TARGET: f64 = 0.8;

/// The parts of the run, selectable with `vexfs-bench vectors --only`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Workload {
    /// Exact k-NN against FAISS.
    Knn,
    /// Inserts acknowledged in memory.
    Insert,
    /// Durable inserts against fio.
    Durable,
}

#[derive(Clone, Debug)]
pub struct Config {
    pub workloads: Vec<Workload>,
    pub dir: PathBuf,
    /// The real data set (float16 .npy files; see `../shared/README.md`).
    pub data: PathBuf,
    pub python: PathBuf,
    pub pairs: usize,
    pub k: usize,
    /// Synthetic vectors for the insert measurements.
    pub insert_vectors: usize,
    pub insert_dim: usize,
    /// Row memory reserved before the insert measurements, as `vexfsd --vector-memory` does.
    pub vector_memory: usize,
    pub small: bool,
}

impl Config {
    pub fn new(small: bool, dir: &Path) -> Config {
        Config {
            workloads: vec![Workload::Knn, Workload::Insert, Workload::Durable],
            dir: dir.to_path_buf(),
            data: crate::workspace_root().join("../shared/data/wordnet-minilm"),
            python: crate::venv_python(),
            pairs: 3,
            k: 10,
            insert_vectors: crate::parameter(small, 100_000, 1_000_000),
            insert_dim: 128,
            vector_memory: crate::parameter(small, 128 << 20, 1 << 30),
            small,
        }
    }
}

/// A volume on an image file with the vector service over it.
struct Volume {
    engine: Option<Engine<UringStorage>>,
    vectors: Option<Vectors<UringStorage>>,
}

impl Volume {
    fn create(image: &Path, bytes: u64) -> Result<Volume> {
        let _ = std::fs::remove_file(image);
        volume::mkfs(image, &MkfsOptions { size: Some(bytes), force: true, label: "bench".into() })
            .with_context(|| format!("mkfs {}", image.display()))?;
        let device = Device::open(image, &DeviceOptions::default())?;
        let arena = Arena::new(256 << 20)?;
        let storage = UringStorage::new(device, arena)?;
        let options = EngineOptions { cache_bytes: 64 << 20, commit_interval: Duration::from_secs(5) };
        let engine = Engine::open(storage, Arc::new(SystemClock), options)?;
        let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
        let vectors = Vectors::new(engine.handle(), workers);
        Ok(Volume { engine: Some(engine), vectors: Some(vectors) })
    }

    fn vectors(&self) -> &Vectors<UringStorage> {
        self.vectors.as_ref().expect("open")
    }

    /// Removes the collection `name` (its shards leave memory, its logs the volume).
    fn remove(&self, name: &str, dir: u64) -> Result<()> {
        self.vectors().forget(dir);
        self.vectors().engine().rmdir(ROOT_INO, name.as_bytes())?;
        self.vectors().engine().sync()?;
        Ok(())
    }

    fn collection(&self, name: &str, dim: usize, metric: Metric) -> Result<u64> {
        let creds = Creds { uid: 0, gid: 0 };
        let dir = self.vectors().engine().mkdir(ROOT_INO, name.as_bytes(), 0o755, creds)?.ino;
        self.vectors().create(dir, &CollectionSpec { dim: dim as u32, metric, shards: 0, text: None })?;
        Ok(dir)
    }
}

impl Drop for Volume {
    fn drop(&mut self) {
        drop(self.vectors.take());
        if let Some(engine) = self.engine.take() {
            let _ = engine.close();
        }
    }
}

/// What [`run`] measured.
pub struct Report {
    /// Against FAISS.
    pub knn: Vec<Row>,
    /// Against fio.
    pub durable: Vec<Row>,
    /// Inserts acknowledged in memory, rows in reserved memory: one rate per round.
    pub rates: Vec<f64>,
    /// The same with rows in fresh memory (before any reserve); None when not measured.
    pub cold_rate: Option<f64>,
}

/// Runs every comparison.
pub fn run(config: &Config) -> Result<Report> {
    std::fs::create_dir_all(&config.dir)?;
    let wants = |workload| config.workloads.contains(&workload);
    let mut report = Report { knn: Vec::new(), durable: Vec::new(), rates: Vec::new(), cold_rate: None };
    if wants(Workload::Knn) {
        ensure!(config.python.exists(), "{} not found: run benches/setup.sh first", config.python.display());
        report.knn = knn_rows(config)?;
    }
    if wants(Workload::Insert) {
        // Nothing is reserved yet, and the k-NN tables have been unmapped: this round's rows
        // fault in fresh memory.
        report.cold_rate = Some(insert_rates(config, 1)?[0]);
    }
    vexfs_daemon::io::rows::reserve(config.vector_memory).context("reserve row memory")?;
    if wants(Workload::Insert) {
        report.rates = insert_rates(config, config.pairs)?;
    }
    if wants(Workload::Durable) {
        report.durable = durable_rows(config)?;
    }
    Ok(report)
}

fn anchor(config: &Config, args: &[&str]) -> Result<serde_json::Value> {
    let script = crate::workspace_root().join("benches/anchors/faiss_flat.py");
    let output = Command::new(&config.python).arg(&script).args(args).output().context("run the FAISS anchor")?;
    if !output.status.success() {
        bail!("faiss_flat.py {args:?} failed: {}", String::from_utf8_lossy(&output.stderr));
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout.lines().last().context("no output from faiss_flat.py")?;
    Ok(serde_json::from_str(line)?)
}

fn read_ids(path: &Path) -> Result<Vec<u64>> {
    let bytes = std::fs::read(path).with_context(|| format!("read {}", path.display()))?;
    Ok(bytes.chunks_exact(8).map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes"))).collect())
}

/// Exact k-NN of the data set's 1000 queries over its 116,659 base vectors, VexFS and FAISS
/// interleaved, for L2 (IndexFlatL2) and inner product (IndexFlatIP; VexFS metric `dot`).
fn knn_rows(config: &Config) -> Result<Vec<Row>> {
    let data_dir = config.dir.join("wordnet-f32");
    let data = data_dir.display().to_string();
    anchor(config, &["prepare", &config.data.display().to_string(), &data])?;
    let (dim, base) = vexfs_client::vecfile::read(&data_dir.join("base.npy"))?;
    let (qdim, mut queries) = vexfs_client::vecfile::read(&data_dir.join("queries.npy"))?;
    ensure!(dim == qdim, "base and queries differ in dimension");
    if config.small {
        queries.truncate(100 * dim);
    }
    let volume = Volume::create(&config.dir.join("vectors.img"), 2 << 30)?;
    let mut rows = Vec::new();
    for (metric, faiss_metric, name) in
        [(Metric::L2, "l2", "L2, IndexFlatL2"), (Metric::Dot, "ip", "inner product, IndexFlatIP")]
    {
        let dir = volume.collection(faiss_metric, dim, metric)?;
        for chunk in base.chunks(10_000 * dim) {
            volume.vectors().insert(dir, None, chunk.to_vec(), Vec::new())?;
        }
        volume.vectors().sync(dir)?;
        volume.vectors().knn(dir, &queries[..8 * dim], config.k, None)?; // warm-up
        let mut pairs = Vec::new();
        for pair in 0..config.pairs {
            let start = Instant::now();
            let found = volume.vectors().knn(dir, &queries, config.k, None)?;
            let seconds = start.elapsed().as_secs_f64();
            let ours = found.len() as f64 / seconds;
            let theirs = anchor(config, &["knn", &data, faiss_metric, &config.k.to_string()])?;
            let faiss_ids = read_ids(&data_dir.join(format!("faiss_{faiss_metric}_ids.u64")))?;
            // Agreement: the share of FAISS's top-k ids VexFS also returns (ties may differ).
            let mut same = 0usize;
            for (q, hits) in found.iter().enumerate() {
                let theirs = &faiss_ids[q * config.k..(q + 1) * config.k];
                same += hits.iter().filter(|h| theirs.contains(&h.id)).count();
            }
            let agreement = same as f64 / (found.len() * config.k) as f64;
            let qps = theirs["qps"].as_f64().context("faiss qps")?;
            eprintln!(
                "knn {name} pair {}: vexfs {ours:.0} q/s, faiss {qps:.0} q/s, agreement {agreement:.4}",
                pair + 1
            );
            pairs.push((
                Sample {
                    value: ours,
                    checksum: format!("{} queries, agreement with FAISS {agreement:.4}", found.len()),
                },
                Sample { value: qps, checksum: format!("faiss {} threads {}", theirs["faiss"], theirs["threads"]) },
            ));
        }
        rows.push(Row {
            name: format!("exact k-NN, k = {}, {name}", config.k),
            unit: "queries/s",
            target: KNN_TARGET,
            pairs,
        });
    }
    Ok(rows)
}

/// Clustered Gaussian vectors from a fixed seed (SplitMix64 + Box-Muller): 64 centres, spread 0.1.
pub fn synthetic(count: usize, dim: usize, seed: u64) -> Vec<f32> {
    let mut state = seed;
    let mut next = move || {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    };
    let centres: Vec<f32> = (0..64 * dim).map(|_| (next() * 2.0 - 1.0) as f32).collect();
    let mut out = Vec::with_capacity(count * dim);
    for i in 0..count {
        let centre = &centres[(i % 64) * dim..(i % 64 + 1) * dim];
        for &c in centre {
            let (u1, u2) = (next().max(1e-12), next());
            let gauss = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
            out.push(c + (0.1 * gauss) as f32);
        }
    }
    out
}

/// The insert calls' batches of 10,000 vectors, built before the clock starts: a caller hands
/// over a batch it has filled, as the mount's doors hand over the batches they decode.
fn batches(data: &[f32], dim: usize) -> Vec<Vec<f32>> {
    data.chunks(10_000 * dim).map(<[f32]>::to_vec).collect()
}

/// Vectors per second acknowledged in memory: batches of 10,000 inserted into a fresh collection,
/// timed from the first insert to the return of the last (searchable, not yet durable). One
/// figure per round; each round's collection is removed after it, in one long-lived service, as
/// in a daemon.
fn insert_rates(config: &Config, rounds: usize) -> Result<Vec<f64>> {
    let dim = config.insert_dim;
    let data = synthetic(config.insert_vectors, dim, 1);
    let volume = Volume::create(&config.dir.join("vectors.img"), 4 << 30)?;
    let mut rates = Vec::new();
    for round in 0..rounds {
        let name = format!("insert-{round}");
        let dir = volume.collection(&name, dim, Metric::L2)?;
        let batches = batches(&data, dim);
        let start = Instant::now();
        for batch in batches {
            volume.vectors().insert(dir, None, batch, Vec::new())?;
        }
        let rate = config.insert_vectors as f64 / start.elapsed().as_secs_f64();
        eprintln!("insert round {}: {rate:.0} vectors/s", round + 1);
        rates.push(rate);
        volume.remove(&name, dir)?;
    }
    Ok(rates)
}

/// Durable inserts (insert everything, then sync) as bytes of vector data per second, against
/// fio writing as many bytes sequentially (1 MiB, O_DIRECT, fsync at the end) on the same disk.
fn durable_rows(config: &Config) -> Result<Vec<Row>> {
    let dim = config.insert_dim;
    let data = synthetic(config.insert_vectors, dim, 2);
    let bytes = (data.len() * 4) as u64;
    let volume = Volume::create(&config.dir.join("vectors.img"), 4 << 30)?;
    let mut pairs = Vec::new();
    for round in 0..config.pairs {
        let name = format!("durable-{round}");
        let dir = volume.collection(&name, dim, Metric::L2)?;
        let batches = batches(&data, dim);
        let start = Instant::now();
        for batch in batches {
            volume.vectors().insert(dir, None, batch, Vec::new())?;
        }
        volume.vectors().sync(dir)?;
        let ours = bytes as f64 / start.elapsed().as_secs_f64() / (1 << 20) as f64;
        let stats = volume.vectors().stats(dir)?;
        volume.remove(&name, dir)?;
        let theirs = fio_write(&config.dir.join("fio-write.dat"), bytes)?;
        eprintln!("durable round {}: vexfs {ours:.0} MiB/s, fio {theirs:.0} MiB/s", round + 1);
        pairs.push((
            Sample { value: ours, checksum: format!("{} vectors, log {} bytes", stats.vectors, stats.log_bytes) },
            Sample { value: theirs, checksum: format!("fio wrote {bytes} bytes") },
        ));
    }
    Ok(vec![Row {
        name: format!("durable insert, {} x {dim}-d, then sync", config.insert_vectors),
        unit: "MiB/s",
        target: DURABLE_TARGET,
        pairs,
    }])
}

/// fio's sequential write of `bytes` to `path`: 1 MiB blocks, io_uring, O_DIRECT, QD 4, fsync at
/// the end; MiB/s including the fsync.
pub fn fio_write(path: &Path, bytes: u64) -> Result<f64> {
    let _ = std::fs::remove_file(path);
    let output = Command::new("fio")
        .args([
            "--name=anchor",
            &format!("--filename={}", path.display()),
            "--ioengine=io_uring",
            "--direct=1",
            "--rw=write",
            "--bs=1048576",
            "--iodepth=4",
            &format!("--size={bytes}"),
            "--end_fsync=1",
            "--output-format=json",
        ])
        .output()
        .context("run fio")?;
    if !output.status.success() {
        bail!("fio failed: {}", String::from_utf8_lossy(&output.stderr));
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let doc: serde_json::Value = serde_json::from_str(&stdout[stdout.find('{').context("fio JSON")?..])?;
    let job = &doc["jobs"][0];
    // job_runtime covers the writes and the final fsync.
    let millis = job["job_runtime"].as_f64().context("fio job_runtime")?;
    let _ = std::fs::remove_file(path);
    Ok(bytes as f64 / (millis / 1000.0) / (1 << 20) as f64)
}

/// The insert-rate lines for the report.
pub fn insert_lines(config: &Config, report: &Report) -> String {
    let rates = &report.rates;
    let per = rates.iter().map(|r| format!("{:.2}M", r / 1e6)).collect::<Vec<_>>().join(", ");
    let m = median(rates);
    let met = if m >= INSERT_TARGET { "yes" } else { "no" };
    format!(
        "| batch insert, 10,000 per call, acknowledged in memory, rows in reserved memory ({} MiB, as `vexfsd --vector-memory`) | vectors/s | {:.2}M (runs: {per}) | >= {:.1}M | {met} |\n\
         | the same, rows in fresh memory (no reserve) | vectors/s | {:.2}M (one run) | | |",
        config.vector_memory >> 20,
        m / 1e6,
        INSERT_TARGET / 1e6,
        report.cold_rate.unwrap_or(f64::NAN) / 1e6,
    )
}
