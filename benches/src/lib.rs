//! VexFS benchmarks side by side with their anchors, in one run.
//!
//! Every comparison runs the two sides interleaved (VexFS, anchor, VexFS, anchor, ...) and reports
//! the median of the per-pair ratios: on a shared virtio disk absolute figures swing by tens of
//! percent minutes apart, so only a ratio taken in one run means anything.

pub mod embed;
pub mod engine;
pub mod mount;
pub mod vectors;

use std::path::{Path, PathBuf};
use std::time::Duration;

/// Sizes of one benchmark: `small` runs under `cargo test`, `large` is what `docs/BENCHMARKS.md`
/// reports.
pub fn parameter<T>(small_mode: bool, small: T, large: T) -> T {
    if small_mode {
        small
    } else {
        large
    }
}

/// One measured side of a pair: the figure (higher is better) and a checksum of what it read.
#[derive(Clone, Debug)]
pub struct Sample {
    pub value: f64,
    pub checksum: String,
}

/// The samples of one row of the table: `pairs[i] = (vexfs, anchor)`.
#[derive(Clone, Debug)]
pub struct Row {
    pub name: String,
    pub unit: &'static str,
    pub target: f64,
    pub pairs: Vec<(Sample, Sample)>,
}

impl Row {
    pub fn ratios(&self) -> Vec<f64> {
        self.pairs.iter().map(|(a, b)| a.value / b.value).collect()
    }

    pub fn median_ratio(&self) -> f64 {
        median(&self.ratios())
    }
}

pub fn median(values: &[f64]) -> f64 {
    assert!(!values.is_empty());
    let mut sorted = values.to_vec();
    sorted.sort_by(|a, b| a.total_cmp(b));
    let mid = sorted.len() / 2;
    if sorted.len() % 2 == 1 {
        sorted[mid]
    } else {
        (sorted[mid - 1] + sorted[mid]) / 2.0
    }
}

/// The markdown table of `rows`, with `anchor` naming the other side.
pub fn table(anchor: &str, rows: &[Row]) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "| workload | unit | VexFS (median) | {anchor} (median) | per-pair ratios | median ratio | target | met |\n"
    ));
    out.push_str("|---|---|---:|---:|---|---:|---:|---|\n");
    for row in rows {
        let ours = median(&row.pairs.iter().map(|(a, _)| a.value).collect::<Vec<_>>());
        let theirs = median(&row.pairs.iter().map(|(_, b)| b.value).collect::<Vec<_>>());
        let ratios = row.ratios().iter().map(|r| format!("{r:.2}")).collect::<Vec<_>>().join(", ");
        let ratio = row.median_ratio();
        let met = if ratio >= row.target { "yes" } else { "no" };
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {:.2}x | >= {:.2}x | {} |\n",
            row.name,
            row.unit,
            figure(ours),
            figure(theirs),
            ratios,
            ratio,
            row.target,
            met
        ));
    }
    out
}

/// A measured figure for a table: whole units from 100 up, three significant digits below.
pub fn figure(value: f64) -> String {
    if value.abs() >= 100.0 {
        format!("{value:.0}")
    } else if value.abs() >= 10.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.2}")
    }
}

/// The checksums every pair printed, so a reader can see the work was done.
pub fn checksums(rows: &[Row]) -> String {
    let mut out = String::new();
    for row in rows {
        for (i, (a, b)) in row.pairs.iter().enumerate() {
            out.push_str(&format!("{} pair {}: vexfs {} / anchor {}\n", row.name, i + 1, a.checksum, b.checksum));
        }
    }
    out
}

/// Kernel, date and device facts to print beside a table.
pub fn environment(path: &Path) -> String {
    let uname = command_line("uname", &["-r"]);
    let date = command_line("date", &["-u", "+%Y-%m-%d %H:%M UTC"]);
    let df = command_line("df", &["--output=source,fstype", &path.display().to_string()]);
    let device = df.lines().last().unwrap_or("?").split_whitespace().collect::<Vec<_>>().join(" ");
    format!("kernel {uname}, date {date}, device: files under {} on {device}", path.display())
}

fn command_line(program: &str, args: &[&str]) -> String {
    std::process::Command::new(program)
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|_| "?".to_owned())
}

pub fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// Whether `program` is on PATH.
pub fn have_program(program: &str) -> bool {
    std::process::Command::new("sh")
        .args(["-c", &format!("command -v {program} >/dev/null 2>&1")])
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// The workspace root (the directory holding `benches/`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("benches/ has a parent").to_path_buf()
}

/// The Python of the benchmarks' venv (`benches/setup.sh`): `$VEXFS_BENCH_VENV`, by default
/// `/var/tmp/vexfs-bench/venv`.
pub fn venv_python() -> std::path::PathBuf {
    let venv = std::env::var_os("VEXFS_BENCH_VENV")
        .map_or_else(|| std::path::PathBuf::from("/var/tmp/vexfs-bench/venv"), std::path::PathBuf::from);
    venv.join("bin/python")
}
