//! `vexfs`: the VexFS command-line tool.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use vexfs_client::volume::{self, MkfsOptions};

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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Mkfs { device, size, force, label } => run_mkfs(&device, MkfsOptions { size, force, label }),
        Command::Fsck { device, json } => run_fsck(&device, json),
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
    })
    .to_string()
}
