//! `vexfs-bench`: VexFS side by side with its anchors, printed as a markdown table.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use clap::{Parser, Subcommand};
use vexfs_benches::{checksums, embed, engine, environment, mount, table, vectors};

#[derive(Parser)]
#[command(name = "vexfs-bench", about = "VexFS benchmarks against fio and the host file system")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// The device engine (io_uring ring, fixed buffers) against fio's io_uring engine.
    Engine {
        #[command(flatten)]
        common: Common,
        /// Seconds per side; overrides the mode's default.
        #[arg(long)]
        secs: Option<f64>,
    },
    /// The FUSE mount against the host file system on the same disk.
    Mount {
        #[command(flatten)]
        common: Common,
        /// Directory holding `vexfs` and `vexfsd` (default: $VEXFS_BIN_DIR or target/release).
        #[arg(long)]
        bin_dir: Option<PathBuf>,
    },
    /// Vector collections: exact k-NN against FAISS IndexFlat, insert throughput, durable
    /// inserts against fio (needs benches/setup.sh).
    Vectors {
        #[command(flatten)]
        common: Common,
        /// Run only these workloads (default: all).
        #[arg(long, value_enum, value_delimiter = ',')]
        only: Vec<vectors::Workload>,
    },
    /// The builtin text embedder (all-MiniLM-L6-v2 with candle) against sentence-transformers
    /// running the same model on the same CPUs, in documents per second (needs benches/setup.sh
    /// and the model from scripts/setup.sh).
    Embed {
        #[command(flatten)]
        common: Common,
        /// Documents (1 to 3 KB of the data set's texts each); default 100, 8 with --small.
        #[arg(long)]
        documents: Option<usize>,
        /// Threads for each side (default: one per CPU).
        #[arg(long)]
        threads: Option<usize>,
        /// Seed of the document construction.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Directory holding all-minilm-l6-v2/.
        #[arg(long, default_value = vexfs_daemon::embed::MODELS_DIR_DEFAULT)]
        models_dir: PathBuf,
    },
}

/// Options every benchmark takes.
#[derive(clap::Args)]
struct Common {
    /// Small sizes and short runs (what `cargo test` runs).
    #[arg(long)]
    small: bool,
    /// Directory for the image and files (on the disk under test).
    #[arg(long, default_value = "/var/tmp/vexfs-bench")]
    dir: PathBuf,
    /// Interleaved pairs (VexFS, anchor) per workload.
    #[arg(long, default_value_t = 3)]
    pairs: usize,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let command_line = std::env::args().collect::<Vec<_>>().join(" ");
    match cli.command {
        Cmd::Engine { common: Common { small, dir, pairs }, secs } => {
            let mut config = engine::Config::new(small, &dir);
            config.pairs = pairs.max(1);
            if let Some(secs) = secs {
                config.duration = Duration::from_secs_f64(secs);
            }
            let rows = engine::run(&config)?;
            println!("`{command_line}`\n");
            println!("{}\n", environment(&dir));
            println!(
                "image {} ({} MiB), {:.1} s per side, {} pairs, fio job: {}\n",
                config.image.display(),
                config.image_bytes >> 20,
                config.duration.as_secs_f64(),
                config.pairs,
                engine::fio_args(&config.image, config.image_bytes, engine::JOBS[0], config.duration).join(" ")
            );
            print!("{}", table("fio", &rows));
            println!("\n```\n{}```", checksums(&rows));
        }
        Cmd::Mount { common: Common { small, dir, pairs }, bin_dir } => {
            let mut config = mount::Config::new(small, &dir, bin_dir.unwrap_or_else(mount::default_bin_dir));
            config.pairs = pairs.max(1);
            let transport = mount::enable_uring();
            let rows = mount::run(&config)?;
            println!("`{command_line}`\n");
            println!("{}, FUSE transport: {transport}\n", environment(&dir));
            print!("{}", table("host", &rows));
            println!("\n```\n{}```", checksums(&rows));
        }
        Cmd::Vectors { common: Common { small, dir, pairs }, only } => {
            let mut config = vectors::Config::new(small, &dir);
            config.pairs = pairs.max(1);
            if !only.is_empty() {
                config.workloads = only;
            }
            let report = vectors::run(&config)?;
            println!("`{command_line}`\n");
            println!(
                "{}, search kernels: {}\n",
                environment(&dir),
                vexfs_daemon::vector::search::kernels::simd_level()
            );
            if !report.knn.is_empty() {
                println!("{}", table("FAISS", &report.knn));
            }
            if !report.durable.is_empty() {
                println!("{}", table("fio", &report.durable));
            }
            if !report.rates.is_empty() {
                println!("| workload | unit | VexFS (median) | target | met |\n|---|---|---:|---:|---|");
                println!("{}", vectors::insert_lines(&config, &report));
            }
            let mut all = report.knn;
            all.extend(report.durable);
            println!("\n```\n{}```", checksums(&all));
        }
        Cmd::Embed { common: Common { small, dir, pairs }, documents, threads, seed, models_dir } => {
            let mut config = embed::Config::new(small, &dir);
            config.pairs = pairs.max(1);
            config.seed = seed;
            config.models_dir = models_dir;
            if let Some(documents) = documents {
                config.documents = documents;
            }
            if let Some(threads) = threads {
                config.threads = threads;
            }
            let outcome = embed::run(&config)?;
            println!("`{command_line}`\n");
            println!("{}, CPU: {}, {} threads per side\n", environment(&dir), embed::cpu(), config.threads);
            println!("{}\n", outcome.corpus);
            println!("anchor: {}\n", outcome.anchor);
            print!("{}", table("sentence-transformers", std::slice::from_ref(&outcome.row)));
            println!();
            println!("{}", embed::AGREEMENT_HEADER);
            println!("{}", embed::agreement_line(&outcome));
            println!("\n```\n{}```", checksums(std::slice::from_ref(&outcome.row)));
        }
    }
    Ok(())
}
