//! Embedding throughput: VexFS's builtin embedder (`vexfs_daemon::embed`, all-MiniLM-L6-v2 run in
//! process with candle) against sentence-transformers running the same model from the same
//! directory with PyTorch, on the same CPUs, in documents per second.
//!
//! Documents are built from the real text data set ([`documents`]) and chunked once, here, with
//! the chunker and sizes a text collection uses by default (`embed::chunk::chunks`, 1000 bytes,
//! 100 overlap). Both sides embed exactly those chunk texts, all of them in one call, each
//! batching them its own way (sentence-transformers sorts them by length and pads batches of 32;
//! the builtin embedder packs whole texts into batches of up to 2048 tokens, without padding),
//! with the same number of threads: `RAYON_NUM_THREADS` for candle, the embedder's own threads
//! (which follow candle's count) and the tokenizer here, `torch.set_num_threads` (and
//! `RAYON_NUM_THREADS` for its tokenizer) in the anchor. The anchor is one Python process for the whole run
//! (`benches/anchors/st_embed.py serve`), so loading the model is outside every measurement on both
//! sides, and each side has embedded a warm-up batch before the first pair. A side's figure is
//! documents / wall time of the one call that embeds all their chunks. Each pair also compares the
//! two sides' vectors chunk by chunk (cosine similarity).

use std::fmt::Write as _;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::Instant;

use anyhow::{bail, ensure, Context, Result};
use vexfs_daemon::embed::{self, chunk, MINILM_NAME, MODELS_DIR_DEFAULT, SPEC_DEFAULT};
use vexfs_daemon::service::{CHUNK_BYTES_DEFAULT, CHUNK_OVERLAP_DEFAULT};

use crate::{median, parameter, Row, Sample};

/// Target: VexFS embeds at least as many documents per second as sentence-transformers.
pub const THROUGHPUT_TARGET: f64 = 1.0;
/// Target: every chunk's two vectors have at least this cosine similarity.
pub const AGREEMENT_TARGET: f64 = 0.999;
/// Document sizes are drawn uniformly from this byte range ([`documents`]).
pub const DOCUMENT_BYTES: std::ops::Range<usize> = 1024..3072;

#[derive(Clone, Debug)]
pub struct Config {
    pub dir: PathBuf,
    /// `texts.json.gz` of the real data set (see `../shared/data/wordnet-minilm/README.md`).
    pub texts: PathBuf,
    /// Holds `all-minilm-l6-v2/`, as `scripts/setup.sh` installs it.
    pub models_dir: PathBuf,
    pub python: PathBuf,
    pub pairs: usize,
    pub documents: usize,
    pub seed: u64,
    /// Threads for each side (one side runs at a time).
    pub threads: usize,
}

impl Config {
    pub fn new(small: bool, dir: &Path) -> Config {
        Config {
            dir: dir.to_path_buf(),
            texts: crate::workspace_root().join("../shared/data/wordnet-minilm/texts.json.gz"),
            models_dir: PathBuf::from(MODELS_DIR_DEFAULT),
            python: crate::venv_python(),
            pairs: 3,
            documents: parameter(small, 8, 100),
            seed: 1,
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
        }
    }

    pub fn model_dir(&self) -> PathBuf {
        self.models_dir.join(MINILM_NAME)
    }
}

/// What is missing for this benchmark to run, if anything (the smoke test skips on it).
pub fn missing(config: &Config) -> Option<String> {
    let model = config.model_dir();
    if !model.join("model.safetensors").is_file() {
        return Some(format!("the model is not installed in {} (scripts/setup.sh)", model.display()));
    }
    if !config.texts.is_file() {
        return Some(format!("{} not found", config.texts.display()));
    }
    let imports = Command::new(&config.python)
        .args(["-c", "import importlib.util as u, sys; sys.exit(not (u.find_spec('sentence_transformers') and u.find_spec('torch')))"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if !imports.is_ok_and(|s| s.success()) {
        return Some(format!("{} cannot import sentence_transformers (benches/setup.sh)", config.python.display()));
    }
    None
}

/// The outcome of a run.
pub struct Outcome {
    pub row: Row,
    /// Per pair, the two sides' vectors compared over all chunks.
    pub agreement: Vec<Agreement>,
    pub chunks: usize,
    /// The documents and chunks, in words.
    pub corpus: String,
    /// The anchor's versions and token counts, in words.
    pub anchor: String,
}

/// SplitMix64: uniform doubles in [0, 1) from a seed.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_f64(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    }

    fn below(&mut self, n: usize) -> usize {
        ((self.next_f64() * n as f64) as usize).min(n - 1)
    }
}

/// `count` documents from `texts` (the data set's texts in corpus order), deterministic in `seed`:
/// for each document, SplitMix64(`seed`) draws a start row (uniform over the texts) and then a
/// target size (uniform in [`DOCUMENT_BYTES`]); the document is the texts from the start row on,
/// joined by newlines, up to and including the first that brings it to the target (wrapping to
/// row 0 past the end).
pub fn documents(texts: &[String], count: usize, seed: u64) -> Vec<String> {
    assert!(!texts.is_empty());
    let mut random = SplitMix64(seed);
    (0..count)
        .map(|_| {
            let mut row = random.below(texts.len());
            let target = DOCUMENT_BYTES.start + random.below(DOCUMENT_BYTES.len());
            let mut document = String::new();
            while document.len() < target {
                if !document.is_empty() {
                    document.push('\n');
                }
                document.push_str(&texts[row]);
                row = (row + 1) % texts.len();
            }
            document
        })
        .collect()
}

/// Each document's chunk texts, cut as a text collection cuts them by default.
pub fn chunk_texts(documents: &[String]) -> Vec<Vec<&str>> {
    documents
        .iter()
        .map(|d| {
            chunk::chunks(d, CHUNK_BYTES_DEFAULT as usize, CHUNK_OVERLAP_DEFAULT as usize)
                .into_iter()
                .map(|c| &d[c.range()])
                .collect()
        })
        .collect()
}

fn read_texts(path: &Path) -> Result<Vec<String>> {
    let file = std::fs::File::open(path).with_context(|| format!("open {}", path.display()))?;
    let texts: Vec<String> = serde_json::from_reader(BufReader::new(flate2::read::GzDecoder::new(file)))
        .with_context(|| format!("read {}", path.display()))?;
    ensure!(!texts.is_empty(), "{} holds no texts", path.display());
    Ok(texts)
}

/// The sentence-transformers process, serving one encode per request line.
struct Anchor {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
    log: PathBuf,
}

impl Anchor {
    /// Starts the anchor and waits for its ready line (model loaded, warm-up done).
    fn start(config: &Config) -> Result<(Anchor, serde_json::Value)> {
        let script = crate::workspace_root().join("benches/anchors/st_embed.py");
        let log = config.dir.join("st_embed.log");
        let threads = config.threads.to_string();
        let mut child = Command::new(&config.python)
            .arg(&script)
            .arg("serve")
            .arg(config.model_dir())
            .arg(&threads)
            .env("OMP_NUM_THREADS", &threads)
            .env("RAYON_NUM_THREADS", &threads)
            .env("HF_HUB_OFFLINE", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).with_context(|| format!("create {}", log.display()))?)
            .spawn()
            .context("start the sentence-transformers anchor")?;
        let stdin = child.stdin.take().context("anchor stdin")?;
        let stdout = BufReader::new(child.stdout.take().context("anchor stdout")?);
        let mut anchor = Anchor { child, stdin: Some(stdin), stdout, log };
        let ready = anchor.reply()?;
        ensure!(ready["ready"] == true, "st_embed.py did not report ready: {ready}");
        Ok((anchor, ready))
    }

    /// The anchor's next JSON line (other lines a library may print are skipped).
    fn reply(&mut self) -> Result<serde_json::Value> {
        loop {
            let mut line = String::new();
            if self.stdout.read_line(&mut line)? == 0 {
                let log = std::fs::read_to_string(&self.log).unwrap_or_default();
                let lines: Vec<&str> = log.lines().collect();
                let tail = lines[lines.len().saturating_sub(20)..].join("\n");
                bail!("st_embed.py exited ({}):\n{tail}", self.log.display());
            }
            if line.starts_with('{') {
                return serde_json::from_str(&line).with_context(|| format!("st_embed.py said {line:?}"));
            }
        }
    }

    fn encode(&mut self, chunks: &Path, out: &Path) -> Result<serde_json::Value> {
        let request = serde_json::json!({ "chunks": chunks, "out": out });
        let stdin = self.stdin.as_mut().context("anchor stdin closed")?;
        writeln!(stdin, "{request}")?;
        stdin.flush()?;
        self.reply()
    }
}

impl Drop for Anchor {
    fn drop(&mut self) {
        // End of input: the anchor exits.
        drop(self.stdin.take());
        let _ = self.child.wait();
    }
}

/// How closely two sets of vectors agree, row by row.
#[derive(Clone, Copy, Debug)]
pub struct Agreement {
    /// The lowest and the mean cosine similarity of corresponding rows.
    pub cosine_min: f64,
    pub cosine_mean: f64,
    /// The largest absolute difference of corresponding components.
    pub component_max: f64,
}

/// Compares the rows of `a` with those of `b` (`dim` columns, row-major).
fn agreement(a: &[Vec<f32>], b: &[f32], dim: usize) -> Agreement {
    let mut result = Agreement { cosine_min: f64::INFINITY, cosine_mean: 0.0, component_max: 0.0 };
    for (x, y) in a.iter().zip(b.chunks_exact(dim)) {
        let dot: f64 = x.iter().zip(y).map(|(p, q)| f64::from(*p) * f64::from(*q)).sum();
        let nx = x.iter().map(|p| f64::from(*p).powi(2)).sum::<f64>().sqrt();
        let ny = y.iter().map(|q| f64::from(*q).powi(2)).sum::<f64>().sqrt();
        let cosine = dot / (nx * ny);
        result.cosine_min = result.cosine_min.min(cosine);
        result.cosine_mean += cosine / a.len() as f64;
        for (p, q) in x.iter().zip(y) {
            result.component_max = result.component_max.max(f64::from((p - q).abs()));
        }
    }
    result
}

fn describe(documents: &[String], chunks: &[Vec<&str>], seed: u64) -> String {
    let mut sizes: Vec<usize> = documents.iter().map(String::len).collect();
    sizes.sort_unstable();
    let total: usize = chunks.iter().map(Vec::len).sum();
    let most = chunks.iter().map(Vec::len).max().unwrap_or(0);
    let mut histogram = String::new();
    for n in 1..=most {
        let docs = chunks.iter().filter(|c| c.len() == n).count();
        if docs > 0 {
            let _ = write!(histogram, "{}{n} chunks: {docs}", if histogram.is_empty() { "" } else { ", " });
        }
    }
    let chunk_bytes: Vec<f64> = chunks.iter().flatten().map(|c| c.len() as f64).collect();
    format!(
        "{} documents (seed {seed}; {} to {} bytes, median {}) in {total} chunks (documents by chunk count: {histogram}; \
         chunk median {:.0} bytes; chunk_bytes {CHUNK_BYTES_DEFAULT}, overlap {CHUNK_OVERLAP_DEFAULT})",
        documents.len(),
        sizes[0],
        sizes[sizes.len() - 1],
        sizes[sizes.len() / 2],
        median(&chunk_bytes),
    )
}

/// Runs the comparison: `config.pairs` pairs, VexFS first in each.
pub fn run(config: &Config) -> Result<Outcome> {
    ensure!(config.documents > 0 && config.threads > 0, "documents and threads must be positive");
    std::fs::create_dir_all(&config.dir)?;
    ensure!(config.python.exists(), "{} not found: run benches/setup.sh first", config.python.display());
    // candle's matrix kernels and the tokenizer both run on rayon's global pool, which reads this
    // when it is first built (below, by `current_num_threads`); candle reads it on every call.
    std::env::set_var("RAYON_NUM_THREADS", config.threads.to_string());
    ensure!(
        rayon::current_num_threads() == config.threads,
        "rayon's pool already has {} threads, want {}",
        rayon::current_num_threads(),
        config.threads
    );

    let texts = read_texts(&config.texts)?;
    let documents = documents(&texts, config.documents, config.seed);
    let chunks = chunk_texts(&documents);
    let flat: Vec<&str> = chunks.iter().flatten().copied().collect();
    let chunks_file = config.dir.join("embed-chunks.jsonl");
    let mut out = BufWriter::new(std::fs::File::create(&chunks_file)?);
    for document in &chunks {
        writeln!(out, "{}", serde_json::to_string(document)?)?;
    }
    out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    let vectors_file = config.dir.join("embed-st.npy");

    let embedder = embed::from_spec(SPEC_DEFAULT, &config.models_dir)?;
    embedder.embed(&flat[..flat.len().min(32)])?; // warm-up
    let (mut anchor, ready) = Anchor::start(config)?;

    let mut pairs = Vec::new();
    let mut agreements = Vec::new();
    let mut last = serde_json::Value::Null;
    for pair in 0..config.pairs {
        let start = Instant::now();
        let ours = embedder.embed(&flat)?;
        let seconds = start.elapsed().as_secs_f64();
        ensure!(ours.len() == flat.len(), "VexFS returned {} vectors for {} chunks", ours.len(), flat.len());
        let ours_rate = documents.len() as f64 / seconds;

        let theirs = anchor.encode(&chunks_file, &vectors_file)?;
        let theirs_rate = theirs["docs_per_s"].as_f64().context("anchor docs_per_s")?;
        ensure!(theirs["chunks"].as_u64() == Some(flat.len() as u64), "the anchor encoded other chunks: {theirs}");
        let (dim, their_vectors) = vexfs_client::vecfile::read(&vectors_file)?;
        ensure!(dim == embedder.dim() && their_vectors.len() == flat.len() * dim, "anchor vectors: wrong shape");
        let agrees = agreement(&ours, &their_vectors, dim);
        let (min, mean) = (agrees.cosine_min, agrees.cosine_mean);
        eprintln!(
            "embed pair {}: vexfs {ours_rate:.2} docs/s ({seconds:.1} s), sentence-transformers {theirs_rate:.2} \
             docs/s ({:.1} s), cosine min {min:.7} mean {mean:.7}",
            pair + 1,
            theirs["seconds"].as_f64().unwrap_or(0.0)
        );
        pairs.push((
            Sample {
                value: ours_rate,
                checksum: format!(
                    "{} chunks in {seconds:.2} s, against sentence-transformers: cosine min {min:.7} (1 - {:.1e}) \
                     mean {mean:.7}, largest component difference {:.1e}",
                    flat.len(),
                    1.0 - min,
                    agrees.component_max
                ),
            },
            Sample {
                value: theirs_rate,
                checksum: format!("{} chunks in {:.2} s", theirs["chunks"], theirs["seconds"].as_f64().unwrap_or(0.0)),
            },
        ));
        agreements.push(agrees);
        last = theirs;
    }
    let _ = std::fs::remove_file(&vectors_file);

    let corpus = describe(&documents, &chunks, config.seed);
    let anchor_description = format!(
        "sentence-transformers {} with torch {} ({} threads, max_seq_length {}); tokens per chunk after \
         truncation: mean {:.0}, {} of {} chunks truncated at 256",
        ready["sentence_transformers"].as_str().unwrap_or("?"),
        ready["torch"].as_str().unwrap_or("?"),
        ready["threads"],
        ready["max_seq_length"],
        last["tokens_mean"].as_f64().unwrap_or(f64::NAN),
        last["truncated"],
        flat.len(),
    );
    Ok(Outcome {
        row: Row {
            name: format!("embed {} documents ({} chunks), all-MiniLM-L6-v2", documents.len(), flat.len()),
            unit: "documents/s",
            target: THROUGHPUT_TARGET,
            pairs,
        },
        agreement: agreements,
        chunks: flat.len(),
        corpus,
        anchor: anchor_description,
    })
}

/// The header of the agreement table.
pub const AGREEMENT_HEADER: &str =
    "| agreement | cosine min | cosine mean | largest component difference | target | met |\n\
                                    |---|---:|---:|---:|---:|---|";

/// The agreement line for the report: the lowest and the mean cosine over every pair's chunks, and
/// the largest difference of any component.
pub fn agreement_line(outcome: &Outcome) -> String {
    let all = &outcome.agreement;
    let min = all.iter().map(|a| a.cosine_min).fold(f64::INFINITY, f64::min);
    let mean = all.iter().map(|a| a.cosine_mean).sum::<f64>() / all.len() as f64;
    let component = all.iter().map(|a| a.component_max).fold(0.0, f64::max);
    let met = if min > AGREEMENT_TARGET { "yes" } else { "no" };
    format!(
        "| VexFS vs sentence-transformers, {} chunks x {} pairs | {min:.7} (1 - {:.1e}) | {mean:.7} | {component:.1e} \
         | cosine min > {AGREEMENT_TARGET} | {met} |",
        outcome.chunks,
        all.len(),
        1.0 - min
    )
}

/// The CPU's model name and count, from /proc/cpuinfo.
pub fn cpu() -> String {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = info
        .lines()
        .find_map(|l| l.strip_prefix("model name").and_then(|r| r.split_once(':')).map(|(_, m)| m.trim().to_owned()))
        .unwrap_or_else(|| "?".to_owned());
    let count = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("{count} x {model}")
}
