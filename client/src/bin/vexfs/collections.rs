//! The collection commands of `vexfs`: each parses its input, makes its calls on
//! `vexfs_client::collection` and prints the outcome, for people or (`--json`) for scripts.
//! Output is formatted by the pure `*_text` and `*_json` functions below, which the tests
//! snapshot. Input is checked whole before anything is sent, so a bad file stores nothing.

use std::io::{self, BufWriter, IsTerminal, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressState, ProgressStyle};
use serde_json::json;
use vexfs_client::collection::{
    check_vectors, insert_batch_max, Collection, CollectionStats, CreateOptions, Hit, TextHit, TextOptions,
};
use vexfs_client::vecfile;
use vexfs_format::collection::Metric;

/// Inserts of at least this many ioctls show a progress bar (when stderr is a terminal).
const PROGRESS_IOCTLS_MIN: usize = 20;

/// `vexfs collection ...`.
#[derive(Subcommand)]
pub enum CollectionCommand {
    /// Make DIR (created if missing; an existing directory must be empty) a vector collection.
    Create {
        /// The directory, on a VexFS mount.
        dir: PathBuf,
        /// Vector dimension, 1..=65536 (a text collection takes its embedder's).
        #[arg(long, required_unless_present = "embed")]
        dim: Option<u32>,
        /// The distance: l2 (Euclidean), cosine (1 - cos), dot (-a.b) or manhattan (L1); a text
        /// collection defaults to cosine.
        #[arg(long, value_parser = parse_metric, required_unless_present = "embed")]
        metric: Option<Metric>,
        /// Shards, 1..=64 (default: one per vexfsd worker).
        #[arg(long, default_value_t = 0, hide_default_value = true)]
        shards: u32,
        /// A text collection: documents written into it are chunked, embedded and indexed.
        #[arg(long)]
        embed: bool,
        /// The embedder of a text collection, by the name vexfsd defines it under (`vexfsd
        /// --embedder NAME=SPEC`; the builtin all-minilm-l6-v2 always exists). Default: vexfsd's
        /// --default-embedder.
        #[arg(long, requires = "embed", value_name = "NAME")]
        embedder: Option<String>,
        /// Target chunk length of a text collection, in bytes (default 1000).
        #[arg(long, requires = "embed", value_name = "N")]
        chunk_bytes: Option<u32>,
        /// Overlap of consecutive chunks of a text collection, in bytes (default 100).
        #[arg(long, requires = "embed", value_name = "N")]
        chunk_overlap: Option<u32>,
    },
}

/// Where the queries of `search` and `range` come from: a file, one vector inline, or (a text
/// collection's search) a text.
#[derive(Args)]
#[group(required = true, multiple = false)]
pub struct QueryArgs {
    /// A text collection: the text to search for by meaning.
    #[arg(value_name = "TEXT")]
    text: Option<String>,
    /// Queries: .npy (2-D float32 or float64, C order) or .fvecs.
    #[arg(long, value_name = "FILE")]
    query_file: Option<PathBuf>,
    /// One query inline, e.g. "0.1,0.2,-0.3".
    #[arg(long, value_name = "V1,V2,...", allow_hyphen_values = true)]
    vector: Option<String>,
}

fn parse_metric(name: &str) -> Result<Metric, String> {
    Metric::parse(name).ok_or_else(|| {
        let names: Vec<&str> = Metric::ALL.iter().map(|m| m.name()).collect();
        format!("unknown metric {name:?}: one of {}", names.join(", "))
    })
}

/// `vexfs collection create`.
pub fn collection(command: CollectionCommand) -> Result<()> {
    let CollectionCommand::Create { dir, dim, metric, shards, embed, embedder, chunk_bytes, chunk_overlap } = command;
    let text = embed.then(|| TextOptions {
        embedder: embedder.unwrap_or_default(),
        chunk_bytes: chunk_bytes.unwrap_or(0),
        chunk_overlap: chunk_overlap.unwrap_or(0),
    });
    // clap makes --dim and --metric required without --embed.
    let (dim, metric) = (dim.unwrap_or(0), metric.unwrap_or(Metric::Cosine));
    let collection = Collection::create(&dir, &CreateOptions { dim, metric, shards, text })?;
    let stats = collection.stats()?;
    let kind = if stats.text.is_some() { "text collection" } else { "collection" };
    print_lines(&[format!(
        "created {kind} {}: dimension {}, metric {}, {} shards",
        dir.display(),
        stats.dim,
        stats.metric.name(),
        stats.shards
    )])
}

/// `vexfs insert`.
pub fn insert(dir: &Path, file: &Path, sync: bool, json: bool) -> Result<()> {
    let collection = Collection::open(dir)?;
    let values = read_vectors(&collection, file)?;
    let count = values.len() / collection.dim();
    let ioctls = count.div_ceil(insert_batch_max(collection.dim(), false).max(1));
    let progress = progress_bar(count, ioctls);
    let ids = collection.insert_with_progress(None, &values, sync, &mut |done| progress.set_position(done as u64));
    progress.finish_and_clear();
    let ids = ids?;
    print_lines(&[if json { insert_json(&ids) } else { insert_text(&ids) }])
}

/// Reads a vector file and checks all of it against the collection; the errors name the file.
fn read_vectors(collection: &Collection, file: &Path) -> Result<Vec<f32>> {
    let (dim, values) = vecfile::read(file)?;
    if dim != collection.dim() {
        bail!(
            "{}: vectors of dimension {dim}, but {} has dimension {}; nothing was sent",
            file.display(),
            collection.path().display(),
            collection.dim()
        );
    }
    if let Err(bad) = check_vectors(&values, dim, collection.metric()) {
        bail!("{}: {bad}; nothing was sent", file.display());
    }
    Ok(values)
}

fn progress_bar(count: usize, ioctls: usize) -> ProgressBar {
    if ioctls < PROGRESS_IOCTLS_MIN || !io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let style = ProgressStyle::with_template("{bar:40} {pos}/{len} vectors, {rate} vectors/s, {eta} left")
        .expect("the progress template is valid")
        .with_key("rate", |state: &ProgressState, out: &mut dyn std::fmt::Write| {
            let _ = write!(out, "{:.0}", state.per_sec());
        });
    ProgressBar::new(count as u64).with_style(style)
}

/// `vexfs search`.
pub fn search(dir: &Path, queries: &QueryArgs, k: usize, filter: Option<&str>, json: bool) -> Result<()> {
    let collection = Collection::open(dir)?;
    if let Some(text) = &queries.text {
        let hits = collection.search_text(text, k, filter)?;
        let cosine = collection.metric() == Metric::Cosine;
        return print_lines(&if json { vec![text_results_json(0, &hits)] } else { text_results(&hits, cosine) });
    }
    let values = query_values(&collection, queries)?;
    let results = collection.knn(&values, k, filter)?;
    print_results(&results, json)
}

/// `vexfs range`.
pub fn range(
    dir: &Path,
    queries: &QueryArgs,
    radius: f32,
    limit: usize,
    filter: Option<&str>,
    json: bool,
) -> Result<()> {
    let collection = Collection::open(dir)?;
    if queries.text.is_some() {
        bail!("a range search takes query vectors (--query-file or --vector); search a text with `vexfs search`");
    }
    let values = query_values(&collection, queries)?;
    let results = collection.range(&values, radius, limit, filter)?;
    print_results(&results, json)
}

fn query_values(collection: &Collection, queries: &QueryArgs) -> Result<Vec<f32>> {
    match (&queries.query_file, &queries.vector) {
        (Some(file), _) => read_vectors(collection, file),
        (None, Some(text)) => {
            let values = parse_vector(text).context("--vector")?;
            if values.len() != collection.dim() {
                bail!(
                    "--vector has {} values, but {} has dimension {}",
                    values.len(),
                    collection.path().display(),
                    collection.dim()
                );
            }
            check_vectors(&values, collection.dim(), collection.metric()).context("--vector")?;
            Ok(values)
        }
        (None, None) => unreachable!("clap requires a text, --query-file or --vector"),
    }
}

/// Parses an inline vector: numbers separated by commas, optionally in brackets.
fn parse_vector(text: &str) -> Result<Vec<f32>> {
    let inner = text.trim();
    let inner = inner.strip_prefix('[').and_then(|t| t.strip_suffix(']')).unwrap_or(inner);
    inner
        .split(',')
        .enumerate()
        .map(|(index, item)| {
            let item = item.trim();
            item.parse::<f32>().with_context(|| format!("value {index} ({item:?}) is not a number"))
        })
        .collect()
}

fn print_results(results: &[Vec<Hit>], json: bool) -> Result<()> {
    let lines: Vec<String> = results
        .iter()
        .enumerate()
        .flat_map(|(query, hits)| if json { vec![results_json(query, hits)] } else { results_text(query, hits) })
        .collect();
    print_lines(&lines)
}

/// `vexfs delete`.
pub fn delete(dir: &Path, ids: &[u64], sync: bool, json: bool) -> Result<()> {
    let collection = Collection::open(dir)?;
    let deleted = collection.delete(ids, sync)?;
    let line = if json {
        json_object(&[("requested", json!(ids.len())), ("deleted", json!(deleted))])
    } else {
        format!("deleted {deleted} of {} ids", ids.len())
    };
    print_lines(&[line])
}

/// `vexfs sync`.
pub fn sync(path: &Path) -> Result<()> {
    if path.is_dir() {
        Collection::open(path)?.sync()?;
        return Ok(());
    }
    // A document: its fsync returns once its data is durable and it is searchable.
    let file = std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    file.sync_all().with_context(|| format!("fsync of {}", path.display()))
}

/// `vexfs stats`.
pub fn stats(dir: &Path, json: bool) -> Result<()> {
    let stats = Collection::open(dir)?.stats()?;
    if json {
        print_lines(&[stats_json(&stats)])
    } else {
        print_lines(&stats_text(&stats))
    }
}

/// Writes lines to stdout. A closed pipe (`vexfs search ... | head`) is not an error.
fn print_lines(lines: &[String]) -> Result<()> {
    let mut out = BufWriter::new(io::stdout().lock());
    let written = lines.iter().try_for_each(|line| writeln!(out, "{line}")).and_then(|()| out.flush());
    match written {
        Err(error) if error.kind() != io::ErrorKind::BrokenPipe => Err(error).context("writing to stdout"),
        _ => Ok(()),
    }
}

// ---- output formats ---------------------------------------------------------------------------

/// Maximal runs of consecutive ids, as (first, last).
fn id_runs(ids: &[u64]) -> Vec<(u64, u64)> {
    let mut runs: Vec<(u64, u64)> = Vec::new();
    for &id in ids {
        match runs.last_mut() {
            Some((_, last)) if last.checked_add(1) == Some(id) => *last = id,
            _ => runs.push((id, id)),
        }
    }
    runs
}

fn insert_text(ids: &[u64]) -> String {
    let runs: Vec<String> = id_runs(ids)
        .iter()
        .map(|&(first, last)| if first == last { first.to_string() } else { format!("{first}..{last}") })
        .collect();
    let noun = if ids.len() == 1 { "vector" } else { "vectors" };
    let label = if ids.len() == 1 { "id" } else { "ids" };
    format!("inserted {} {noun}, {label} {}", ids.len(), runs.join(", "))
}

fn insert_json(ids: &[u64]) -> String {
    let mut fields =
        vec![("inserted", json!(ids.len())), ("first_id", json!(ids.first())), ("last_id", json!(ids.last()))];
    let runs = id_runs(ids);
    if runs.len() > 1 {
        // Another writer inserted between our ioctls: say exactly which ids are ours.
        fields.push(("ranges", json!(runs.iter().map(|&(a, b)| [a, b]).collect::<Vec<_>>())));
    }
    json_object(&fields)
}

/// A JSON object with its keys in the given order, spaced as `{"key": value, ...}`.
fn json_object(fields: &[(&str, serde_json::Value)]) -> String {
    let fields: Vec<String> = fields.iter().map(|(key, value)| format!("{}: {value}", json!(key))).collect();
    format!("{{{}}}", fields.join(", "))
}

/// A float32 as JSON: its shortest round-tripping decimal (`0.1`, not `0.10000000149011612`).
fn json_f32(value: f32) -> String {
    serde_json::to_string(&value).expect("a float serializes")
}

/// One JSON line for a text query: each hit's id, distance, path, chunk and snippet, in the
/// layout of [`results_json`].
fn text_results_json(query: usize, hits: &[TextHit]) -> String {
    let results: Vec<String> = hits
        .iter()
        .map(|h| {
            format!(
                "{{\"id\": {}, \"distance\": {}, \"path\": {}, \"chunk\": {}, \"snippet\": {}}}",
                h.id,
                json_f32(h.distance),
                json!(h.path.display().to_string()),
                h.chunk,
                json!(h.snippet)
            )
        })
        .collect();
    format!("{{\"query\": {query}, \"results\": [{}]}}", results.join(", "))
}

/// Text hits for people: rank, score (cosine similarity, or the distance for other metrics), path
/// and chunk, then the snippet indented.
fn text_results(hits: &[TextHit], cosine: bool) -> Vec<String> {
    if hits.is_empty() {
        return vec!["no results (documents still being indexed show in `vexfs stats`)".to_owned()];
    }
    let mut lines = Vec::with_capacity(hits.len() * 2);
    for (rank, h) in hits.iter().enumerate() {
        let score =
            if cosine { format!("score {:.3}", 1.0 - h.distance) } else { format!("distance {:.4}", h.distance) };
        lines.push(format!("{:>2}. {score}  {}  chunk {}", rank + 1, h.path.display(), h.chunk));
        lines.push(format!("    {}", h.snippet));
    }
    lines
}

fn results_json(query: usize, hits: &[Hit]) -> String {
    let results: Vec<String> =
        hits.iter().map(|hit| format!("{{\"id\": {}, \"distance\": {}}}", hit.id, json_f32(hit.distance))).collect();
    format!("{{\"query\": {query}, \"results\": [{}]}}", results.join(", "))
}

fn results_text(query: usize, hits: &[Hit]) -> Vec<String> {
    let header = match hits.len() {
        0 => format!("query {query}: no results"),
        1 => format!("query {query}: 1 result"),
        n => format!("query {query}: {n} results"),
    };
    let rank_width = hits.len().to_string().len().max("rank".len());
    let id_width = hits.iter().map(|hit| hit.id.to_string().len()).max().unwrap_or(0).max("id".len());
    let mut lines = vec![header];
    if !hits.is_empty() {
        lines.push(format!("  {:>rank_width$}  {:>id_width$}  distance", "rank", "id"));
    }
    for (rank, hit) in hits.iter().enumerate() {
        lines.push(format!("  {:>rank_width$}  {:>id_width$}  {}", rank + 1, hit.id, hit.distance));
    }
    lines
}

/// `bytes` with a binary unit when that is shorter to read: `1536 (1.5 KiB)`.
fn bytes_text(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = None;
    for name in UNITS {
        if value < 1024.0 {
            break;
        }
        value /= 1024.0;
        unit = Some(name);
    }
    match unit {
        Some(unit) => format!("{bytes} ({value:.1} {unit})"),
        None => bytes.to_string(),
    }
}

fn stats_text(s: &CollectionStats) -> Vec<String> {
    let latency = match s.search_micros_mean() {
        Some(micros) => format!("{micros:.1} µs"),
        None => "- (no searches yet)".to_owned(),
    };
    let mut rows: Vec<(&str, String)> = vec![
        ("dimension", s.dim.to_string()),
        ("metric", s.metric.name().to_owned()),
        ("element type", s.elem.name().to_owned()),
        ("shards", s.shards.to_string()),
        ("vectors", s.vectors.to_string()),
        ("dead rows", s.dead_rows.to_string()),
        ("log bytes", bytes_text(s.log_bytes)),
        ("pending bytes", bytes_text(s.pending_bytes)),
        ("memory", bytes_text(s.memory_bytes)),
        ("inserts", s.inserts.to_string()),
        ("deletes", s.deletes.to_string()),
        ("searches", s.searches.to_string()),
        ("queries", s.queries.to_string()),
        ("mean search latency", latency),
        ("SIMD level", s.simd.clone()),
    ];
    if let Some(text) = &s.text {
        rows.extend([
            ("embedder", text.embedder.clone()),
            ("documents queued", text.docs_queued.to_string()),
            ("documents indexed", text.docs_indexed.to_string()),
            ("documents skipped", text.docs_skipped.to_string()),
            ("chunks", text.chunks.to_string()),
        ]);
    }
    let width = rows.iter().map(|(key, _)| key.len()).max().unwrap_or(0) + 1;
    rows.into_iter().map(|(key, value)| format!("{:<width$} {value}", format!("{key}:"))).collect()
}

fn stats_json(s: &CollectionStats) -> String {
    let mut fields = vec![
        ("dim", json!(s.dim)),
        ("metric", json!(s.metric.name())),
        ("elem", json!(s.elem.name())),
        ("shards", json!(s.shards)),
        ("vectors", json!(s.vectors)),
        ("dead_rows", json!(s.dead_rows)),
        ("log_bytes", json!(s.log_bytes)),
        ("pending_bytes", json!(s.pending_bytes)),
        ("memory_bytes", json!(s.memory_bytes)),
        ("inserts", json!(s.inserts)),
        ("deletes", json!(s.deletes)),
        ("searches", json!(s.searches)),
        ("queries", json!(s.queries)),
        ("search_micros", json!(s.search_micros)),
        ("search_micros_mean", json!(s.search_micros_mean())),
        ("simd", json!(s.simd)),
        ("text", json!(s.text.is_some())),
        ("embedder", json!(s.text.as_ref().map(|t| t.embedder.as_str()))),
    ];
    if let Some(text) = &s.text {
        fields.extend([
            ("docs_queued", json!(text.docs_queued)),
            ("docs_indexed", json!(text.docs_indexed)),
            ("docs_skipped", json!(text.docs_skipped)),
            ("chunks", json!(text.chunks)),
        ]);
    }
    json_object(&fields)
}

#[cfg(test)]
mod tests {
    use expect_test::expect;
    use vexfs_client::collection::TextStats;
    use vexfs_format::collection::ElemType;

    use super::*;

    fn sample_stats() -> CollectionStats {
        CollectionStats {
            dim: 32,
            metric: Metric::L2,
            elem: ElemType::F32,
            shards: 2,
            vectors: 1999,
            dead_rows: 1,
            log_bytes: 270_336,
            pending_bytes: 0,
            memory_bytes: 3 << 20,
            inserts: 2000,
            deletes: 1,
            searches: 4,
            queries: 80,
            search_micros: 1234,
            simd: "avx2+fma".to_owned(),
            text: None,
        }
    }

    #[test]
    fn insert_output() {
        let ids: Vec<u64> = (0..1000).collect();
        expect!["inserted 1000 vectors, ids 0..999"].assert_eq(&insert_text(&ids));
        expect![[r#"{"inserted": 1000, "first_id": 0, "last_id": 999}"#]].assert_eq(&insert_json(&ids));
        expect!["inserted 1 vector, id 7"].assert_eq(&insert_text(&[7]));
        let split = [10, 11, 12, 20, 21];
        expect!["inserted 5 vectors, ids 10..12, 20..21"].assert_eq(&insert_text(&split));
        expect![[r#"{"inserted": 5, "first_id": 10, "last_id": 21, "ranges": [[10,12],[20,21]]}"#]]
            .assert_eq(&insert_json(&split));
    }

    #[test]
    fn text_search_output() {
        let hits = [TextHit {
            id: 20971521,
            distance: 0.25,
            path: PathBuf::from("/mnt/vexfs/notes/a \"b\".md"),
            ino: 20,
            chunk: 1,
            start: 900,
            end: 1900,
            snippet: "Booking meeting rooms.".to_owned(),
        }];
        expect![[r#"{"query": 0, "results": [{"id": 20971521, "distance": 0.25, "path": "/mnt/vexfs/notes/a \"b\".md", "chunk": 1, "snippet": "Booking meeting rooms."}]}"#]]
        .assert_eq(&text_results_json(0, &hits));
        assert_eq!(
            text_results(&hits, true),
            [" 1. score 0.750  /mnt/vexfs/notes/a \"b\".md  chunk 1", "    Booking meeting rooms."]
        );
        assert!(text_results(&hits, false)[0].contains("distance 0.2500"));
        assert!(text_results(&[], true)[0].starts_with("no results"));
    }

    #[test]
    fn search_output() {
        let hits = [Hit { id: 17, distance: 0.0 }, Hit { id: 1234, distance: 0.1 }, Hit { id: 5, distance: 2.5e-8 }];
        expect![[r#"{"query": 3, "results": [{"id": 17, "distance": 0.0}, {"id": 1234, "distance": 0.1}, {"id": 5, "distance": 2.5e-8}]}"#]]
            .assert_eq(&results_json(3, &hits));
        expect![[r#"{"query": 0, "results": []}"#]].assert_eq(&results_json(0, &[]));
        expect![[r#"
            query 3: 3 results
              rank    id  distance
                 1    17  0
                 2  1234  0.1
                 3     5  0.000000025"#]]
        .assert_eq(&results_text(3, &hits).join("\n"));
        expect!["query 1: no results"].assert_eq(&results_text(1, &[]).join("\n"));
    }

    #[test]
    fn stats_output() {
        let stats = sample_stats();
        expect![[r#"
            dimension:           32
            metric:              l2
            element type:        float32
            shards:              2
            vectors:             1999
            dead rows:           1
            log bytes:           270336 (264.0 KiB)
            pending bytes:       0
            memory:              3145728 (3.0 MiB)
            inserts:             2000
            deletes:             1
            searches:            4
            queries:             80
            mean search latency: 308.5 µs
            SIMD level:          avx2+fma"#]]
        .assert_eq(&stats_text(&stats).join("\n"));
        expect![[r#"{"dim": 32, "metric": "l2", "elem": "float32", "shards": 2, "vectors": 1999, "dead_rows": 1, "log_bytes": 270336, "pending_bytes": 0, "memory_bytes": 3145728, "inserts": 2000, "deletes": 1, "searches": 4, "queries": 80, "search_micros": 1234, "search_micros_mean": 308.5, "simd": "avx2+fma", "text": false, "embedder": null}"#]]
            .assert_eq(&stats_json(&stats));
        let text = TextStats {
            embedder: "builtin:all-minilm-l6-v2".to_owned(),
            docs_queued: 1,
            docs_indexed: 2,
            docs_skipped: 0,
            chunks: 9,
        };
        let stats = CollectionStats { searches: 0, search_micros: 0, text: Some(text), ..stats };
        let lines = stats_text(&stats);
        expect!["mean search latency: - (no searches yet)"].assert_eq(&lines[13]);
        expect![[r#"
            embedder:            builtin:all-minilm-l6-v2
            documents queued:    1
            documents indexed:   2
            documents skipped:   0
            chunks:              9"#]]
        .assert_eq(&lines[15..].join("\n"));
        let json: serde_json::Value = serde_json::from_str(&stats_json(&stats)).unwrap();
        assert_eq!(json["embedder"], "builtin:all-minilm-l6-v2");
        assert_eq!(json["chunks"], 9);
        assert_eq!(json["search_micros_mean"], serde_json::Value::Null);
    }

    #[test]
    fn inline_vectors_parse() {
        assert_eq!(parse_vector("0.5,-1, 2e3").unwrap(), vec![0.5, -1.0, 2000.0]);
        assert_eq!(parse_vector(" [1, 2] ").unwrap(), vec![1.0, 2.0]);
        let error = format!("{:#}", parse_vector("1,x,3").unwrap_err());
        assert!(error.starts_with("value 1 (\"x\") is not a number"), "{error}");
        assert!(parse_vector("").is_err());
    }

    #[test]
    fn bytes_are_shown_with_units() {
        assert_eq!(bytes_text(0), "0");
        assert_eq!(bytes_text(1023), "1023");
        assert_eq!(bytes_text(1536), "1536 (1.5 KiB)");
        assert_eq!(bytes_text(5 << 30), "5368709120 (5.0 GiB)");
    }

    #[test]
    fn metrics_parse_by_name() {
        assert_eq!(parse_metric("COSINE"), Ok(Metric::Cosine));
        assert_eq!(
            parse_metric("hamming").unwrap_err(),
            "unknown metric \"hamming\": one of l2, cosine, dot, manhattan"
        );
    }
}
