//! `vexfs`: the VexFS command-line tool. Volume tools (`mkfs`, `fsck`) work on the device; the
//! collection commands (`collection create`, `insert`, `search`, `range`, `delete`, `sync`,
//! `stats`) work on a directory of a mounted volume (`collections.rs`).

mod collections;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use vexfs_client::volume::{self, MkfsOptions};

use collections::{CollectionCommand, QueryArgs};

#[derive(Parser)]
#[command(name = "vexfs", version, about = "VexFS command-line tool")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create a VexFS volume on an image file (created if missing) or a block device.
    Mkfs {
        /// Image file or block device.
        device: PathBuf,
        /// Size of the image file, e.g. 8G, 512M (block devices are formatted whole).
        #[arg(long, value_parser = volume::parse_size)]
        size: Option<u64>,
        /// Overwrite an existing VexFS volume.
        #[arg(long)]
        force: bool,
        /// Volume label.
        #[arg(long, default_value = "")]
        label: String,
    },
    /// Check a volume and report every inconsistency. Exit 0: clean; 1: problems found;
    /// 2: the volume could not be checked.
    Fsck {
        /// Image file or block device.
        device: PathBuf,
        /// Print the report as one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Make a directory on a VexFS mount a vector collection.
    #[command(subcommand)]
    Collection(CollectionCommand),
    /// Insert the vectors of a .npy or .fvecs file into a collection; prints the assigned ids.
    Insert {
        /// The collection directory.
        dir: PathBuf,
        /// Vectors: .npy (2-D float32 or float64, C order) or .fvecs.
        file: PathBuf,
        /// Make the vectors durable before returning.
        #[arg(long)]
        sync: bool,
        /// Print {"inserted": N, "first_id": .., "last_id": ..}.
        #[arg(long)]
        json: bool,
    },
    /// The k nearest vectors to each query, nearest first; in a text collection, the chunks of
    /// documents nearest in meaning to a text: path, chunk, score, snippet.
    Search {
        /// The collection directory.
        dir: PathBuf,
        #[command(flatten)]
        queries: QueryArgs,
        /// Results per query.
        #[arg(short = 'k', value_name = "K", default_value_t = 10)]
        k: usize,
        /// Consider only vectors whose attributes match, e.g. 'lang = "en" and year >= 2020'.
        #[arg(long, value_name = "EXPR")]
        filter: Option<String>,
        /// One JSON object per query per line: {"query": 0, "results": [{"id": .., "distance": ..}]}
        /// (text results add "path", "chunk" and "snippet").
        #[arg(long)]
        json: bool,
    },
    /// Every vector within a distance of each query, nearest first.
    Range {
        /// The collection directory.
        dir: PathBuf,
        #[command(flatten)]
        queries: QueryArgs,
        /// The largest distance returned (may be negative for the dot metric).
        #[arg(long, allow_negative_numbers = true)]
        radius: f32,
        /// The most results per query.
        #[arg(long, default_value_t = 1000)]
        limit: usize,
        /// Consider only vectors whose attributes match, e.g. 'year in 2019..2021'.
        #[arg(long, value_name = "EXPR")]
        filter: Option<String>,
        /// One JSON object per query per line, as for search.
        #[arg(long)]
        json: bool,
    },
    /// Delete vectors by id.
    Delete {
        /// The collection directory.
        dir: PathBuf,
        /// Ids to delete.
        #[arg(required = true, value_name = "ID")]
        ids: Vec<u64>,
        /// Make the deletion durable before returning.
        #[arg(long)]
        sync: bool,
        /// Print {"requested": N, "deleted": M}.
        #[arg(long)]
        json: bool,
    },
    /// Make everything acknowledged in a collection durable; in a text collection, first wait
    /// until every document is searchable. On a document, wait for that document alone.
    Sync {
        /// The collection directory, or a document in a text collection.
        path: PathBuf,
    },
    /// A collection's parameters and counters.
    Stats {
        /// The collection directory.
        dir: PathBuf,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let (name, result) = match cli.command {
        Command::Mkfs { device, size, force, label } => return run_mkfs(&device, MkfsOptions { size, force, label }),
        Command::Fsck { device, json } => return run_fsck(&device, json),
        Command::Collection(command) => ("collection create", collections::collection(command)),
        Command::Insert { dir, file, sync, json } => ("insert", collections::insert(&dir, &file, sync, json)),
        Command::Search { dir, queries, k, filter, json } => {
            ("search", collections::search(&dir, &queries, k, filter.as_deref(), json))
        }
        Command::Range { dir, queries, radius, limit, filter, json } => {
            ("range", collections::range(&dir, &queries, radius, limit, filter.as_deref(), json))
        }
        Command::Delete { dir, ids, sync, json } => ("delete", collections::delete(&dir, &ids, sync, json)),
        Command::Sync { path } => ("sync", collections::sync(&path)),
        Command::Stats { dir, json } => ("stats", collections::stats(&dir, json)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("vexfs {name}: {error:#}");
            ExitCode::from(1)
        }
    }
}

fn run_mkfs(device: &std::path::Path, options: MkfsOptions) -> ExitCode {
    match volume::mkfs(device, &options) {
        Ok(layout) => {
            println!(
                "{}: VexFS volume of {} blocks ({} MiB), journal {} MiB",
                device.display(),
                layout.block_count,
                (layout.block_count * 4096) >> 20,
                (layout.journal_blocks * 4096) >> 20
            );
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("vexfs mkfs: {error}");
            ExitCode::from(1)
        }
    }
}

fn run_fsck(device: &std::path::Path, json: bool) -> ExitCode {
    let report = match volume::fsck(device) {
        Ok(report) => report,
        Err(error) => {
            eprintln!("vexfs fsck: {error}");
            return ExitCode::from(2);
        }
    };
    if json {
        println!("{}", report_json(&report));
    } else {
        print_report(device, &report);
    }
    if report.is_clean() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn print_report(device: &std::path::Path, report: &vexfs_format::fsck::Report) {
    for note in &report.notes {
        println!("note: {note}");
    }
    for problem in &report.problems {
        println!("problem: {problem}");
    }
    if report.problems_omitted > 0 {
        println!("... and {} more problems", report.problems_omitted);
    }
    let s = &report.stats;
    let verdict = if report.is_clean() {
        "clean".to_string()
    } else {
        format!("{} problems", report.problems.len() as u64 + report.problems_omitted)
    };
    println!(
        "{}: {verdict}: {} inodes ({} directories, {} files, {} symlinks), {} tree blocks, {} data blocks, {} of {} blocks free",
        device.display(),
        s.inodes,
        s.directories,
        s.regular_files,
        s.symlinks,
        s.tree_blocks,
        s.data_blocks,
        s.free_blocks,
        s.block_count
    );
    if s.collections > 0 {
        println!(
            "{}: {} collections: {} shard logs, {} log records ({} vectors inserted, {} deleted)",
            device.display(),
            s.collections,
            s.shard_logs,
            s.log_records,
            s.log_vectors,
            s.log_deletes
        );
    }
}

/// The report as one JSON object (`--json`), for scripts and tests.
fn report_json(report: &vexfs_format::fsck::Report) -> String {
    let problems: Vec<serde_json::Value> = report
        .problems
        .iter()
        .map(|p| serde_json::json!({ "block": p.block, "inode": p.ino, "what": p.what }))
        .collect();
    let s = &report.stats;
    serde_json::json!({
        "clean": report.is_clean(),
        "problems": problems,
        "problems_omitted": report.problems_omitted,
        "notes": report.notes,
        "inodes": s.inodes,
        "directories": s.directories,
        "regular_files": s.regular_files,
        "symlinks": s.symlinks,
        "tree_blocks": s.tree_blocks,
        "data_blocks": s.data_blocks,
        "free_blocks": s.free_blocks,
        "block_count": s.block_count,
        "journal_transactions": s.journal_transactions,
        "collections": s.collections,
        "shard_logs": s.shard_logs,
        "log_records": s.log_records,
        "log_vectors": s.log_vectors,
        "log_deletes": s.log_deletes,
    })
    .to_string()
}
