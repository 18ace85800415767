//! The `vexfs` collection commands against a real mount, as a shell user runs them.
//!
//! Goal: every command (`collection create`, `insert`, `search`, `range`, `delete`, `sync`,
//! `stats`) does what it prints, its `--json` output is one well-formed object per line, bad input
//! exits 1 with a message naming the file or directory and stores nothing, and results survive a
//! remount unchanged.
//!
//! Method: 2000 seeded random vectors of dimension 32 go in as two `.fvecs` files, the first 1900
//! through the collection's insert stream (more than `STREAM_MIN_IOCTLS` ioctls' worth) and the
//! last 100 in one insert ioctl, and 20 queries as a hand-written `.npy` file; the first ten
//! queries are inserted vectors. An
//! exact search in the test, in f64, is the oracle: each query's returned distances must equal
//! the oracle's k smallest, rank by rank, and each returned id must lie at its returned distance
//! (compared within a tolerance, so rounding in near-ties cannot fail the test). Without root or
//! `/dev/fuse` the test prints SKIP.

use std::fs;
use std::path::Path;

use vexfs_tests::{
    args, assert_fsck_clean, fvecs_bytes, require_root_and_fuse, vexfs_fails, vexfs_ok, Mount, MountOptions,
    TestVolume, MIB,
};

const DIM: usize = 32;
const VECTORS: usize = 2000;
/// Vectors of the first file, which the CLI sends through the insert stream: an ioctl carries 127
/// vectors of dimension 32, and inserts of more than 8 ioctls' worth (1016) stream
/// (`vexfs_client::collection::insert_uses_stream`). The other 100 take one ioctl.
const STREAMED: usize = 1900;
const QUERIES: usize = 20;
/// Queries 0..EXACT_QUERIES are the inserted vectors EXACT_STRIDE * i.
const EXACT_QUERIES: usize = 10;
const EXACT_STRIDE: usize = 100;
const K: usize = 10;
/// Distances of the daemon (f32) and the oracle (f64) agree within this.
const DISTANCE_TOLERANCE: f64 = 1e-4;
/// A seeded xorshift64* generator: the same vectors on every run.
struct Rng(u64);

impl Rng {
    /// Uniform in [-1, 1).
    fn next_f32(&mut self) -> f32 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let bits = self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 40;
        bits as f32 / (1u64 << 23) as f32 - 1.0
    }

    fn vectors(&mut self, count: usize, dim: usize) -> Vec<f32> {
        (0..count * dim).map(|_| self.next_f32()).collect()
    }
}

/// An `.npy` file as `np.save` writes a C-order float32 array of shape (rows, dim): the magic,
/// version 1.0, a u16 header length, the header dict padded with spaces and ended by a newline
/// so that the data starts at a multiple of 64, then the values.
fn npy_bytes(descr: &str, rows: usize, dim: usize, data: &[u8]) -> Vec<u8> {
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': ({rows}, {dim}), }}");
    while !(10 + header.len() + 1).is_multiple_of(64) {
        header.push(' ');
    }
    header.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(data);
    out
}

fn f32_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// One search result line of `--json` output, checked for shape.
struct QueryResults {
    query: usize,
    hits: Vec<(u64, f64)>,
}

/// Parses `--json` search output: one object per line, queries 0.. in order.
fn parse_results(stdout: &str) -> Vec<QueryResults> {
    let mut out = Vec::new();
    for (index, line) in stdout.lines().enumerate() {
        let value: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|error| panic!("line {index} is not JSON ({error}): {line}"));
        let object = value.as_object().unwrap_or_else(|| panic!("line {index} is not an object: {line}"));
        assert_eq!(object.len(), 2, "{line}");
        let query = object["query"].as_u64().unwrap_or_else(|| panic!("no query number: {line}")) as usize;
        assert_eq!(query, index, "queries out of order: {line}");
        let hits: Vec<(u64, f64)> = object["results"]
            .as_array()
            .unwrap_or_else(|| panic!("no results array: {line}"))
            .iter()
            .map(|hit| (hit["id"].as_u64().expect("an id"), hit["distance"].as_f64().expect("a distance")))
            .collect();
        assert!(hits.windows(2).all(|pair| pair[0].1 <= pair[1].1), "not sorted by distance: {line}");
        out.push(QueryResults { query, hits });
    }
    out
}

/// The exact search the daemon's results are checked against.
struct Oracle {
    vectors: Vec<f32>,
    deleted: Vec<u64>,
}

impl Oracle {
    /// Every live vector's (id, L2 distance) from `query`, nearest first.
    fn distances(&self, query: &[f32]) -> Vec<(u64, f64)> {
        let mut all: Vec<(u64, f64)> = self
            .vectors
            .chunks(DIM)
            .enumerate()
            .map(|(id, v)| {
                let squared: f64 = v.iter().zip(query).map(|(a, b)| (f64::from(*a) - f64::from(*b)).powi(2)).sum();
                (id as u64, squared.sqrt())
            })
            .filter(|(id, _)| !self.deleted.contains(id))
            .collect();
        all.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
        all
    }

    /// Checks one query's hits against the exact answer: the first `hits.len()` distances match
    /// rank by rank, and each id lies at the distance reported for it.
    fn check(&self, query: &[f32], hits: &[(u64, f64)], what: &str) {
        let exact = self.distances(query);
        for (rank, &(id, distance)) in hits.iter().enumerate() {
            assert!((distance - exact[rank].1).abs() < DISTANCE_TOLERANCE, "{what} rank {rank}: {hits:?}");
            let own = exact.iter().find(|(other, _)| *other == id).unwrap_or_else(|| panic!("{what}: id {id}"));
            assert!((distance - own.1).abs() < DISTANCE_TOLERANCE, "{what}: id {id} at {distance}, really {}", own.1);
        }
    }
}

fn stats_json(coll: &Path) -> serde_json::Value {
    let stdout = vexfs_ok(&args!["stats", coll, "--json"]);
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    serde_json::from_str(&stdout).unwrap_or_else(|error| panic!("stats --json is not JSON ({error}): {stdout}"))
}

fn vector_count(coll: &Path) -> u64 {
    stats_json(coll)["vectors"].as_u64().expect("a vector count")
}

/// `vexfs search DIR --query-file FILE -k K --json`: stdout.
fn search_json(coll: &Path, queries: &Path, k: usize) -> String {
    vexfs_ok(&args!["search", coll, "--query-file", queries, "-k", &k.to_string(), "--json"])
}

#[test]
fn cli_creates_inserts_searches_deletes_and_survives_remount() {
    if !require_root_and_fuse() {
        return;
    }
    let volume = TestVolume::create(256 * MIB).expect("creating a test volume with vexfs mkfs");
    let mut mount = Mount::start(&volume, &MountOptions::default()).expect("starting vexfsd");
    let coll = mount.path().join("vectors");
    let mut rng = Rng(0x5eed_cafe_f00d_0001);
    let vectors = rng.vectors(VECTORS, DIM);
    let mut queries = rng.vectors(QUERIES, DIM);
    for i in 0..EXACT_QUERIES {
        let row = i * EXACT_STRIDE;
        queries[i * DIM..(i + 1) * DIM].copy_from_slice(&vectors[row * DIM..(row + 1) * DIM]);
    }
    let data_file = volume.dir().join("data.fvecs");
    let tail_file = volume.dir().join("tail.fvecs");
    let query_file = volume.dir().join("queries.npy");
    let split = STREAMED * DIM;
    fs::write(&data_file, fvecs_bytes(DIM, &vectors[..split])).unwrap();
    fs::write(&tail_file, fvecs_bytes(DIM, &vectors[split..])).unwrap();
    fs::write(&query_file, npy_bytes("<f4", QUERIES, DIM, &f32_bytes(&queries))).unwrap();

    let created = vexfs_ok(&args!["collection", "create", &coll, "--dim", "32", "--metric", "l2", "--shards", "2"]);
    assert_eq!(created, format!("created collection {}: dimension 32, metric l2, 2 shards\n", coll.display()));
    let inserted = vexfs_ok(&args!["insert", &coll, &data_file]);
    assert_eq!(inserted, "inserted 1900 vectors, ids 0..1899\n");
    let inserted = vexfs_ok(&args!["insert", &coll, &tail_file]);
    assert_eq!(inserted, "inserted 100 vectors, ids 1900..1999\n");
    let stats = stats_json(&coll);
    assert_eq!((stats["vectors"].as_u64(), stats["dim"].as_u64()), (Some(VECTORS as u64), Some(DIM as u64)));
    assert_eq!((stats["metric"].as_str(), stats["shards"].as_u64()), (Some("l2"), Some(2)));

    let mut oracle = Oracle { vectors: vectors.clone(), deleted: Vec::new() };
    check_search(&coll, &query_file, &queries, &oracle);
    check_range(&coll, &query_file, &queries, &oracle);
    check_human_output(&coll, &vectors);
    check_bad_input(&mount, &coll, volume.dir());
    assert_eq!(vector_count(&coll), VECTORS as u64, "bad input changed the collection");
    check_wide_vectors(&mount, volume.dir());

    // Delete two of the vectors the exact queries find first.
    let deleted = vexfs_ok(&args!["delete", &coll, "0", "100", "--sync"]);
    assert_eq!(deleted, "deleted 2 of 2 ids\n");
    oracle.deleted = vec![0, 100];
    let results = parse_results(&search_json(&coll, &query_file, K));
    for r in &results {
        assert!(r.hits.iter().all(|(id, _)| *id != 0 && *id != 100), "a deleted id was found: {:?}", r.hits);
        oracle.check(&queries[r.query * DIM..(r.query + 1) * DIM], &r.hits, "after delete");
    }
    assert_eq!(vector_count(&coll), VECTORS as u64 - 2);
    vexfs_ok(&args!["sync", &coll]);

    let before = search_json(&coll, &query_file, K);
    mount = mount.remount().expect("remount");
    assert_eq!(search_json(&coll, &query_file, K), before, "results changed across a remount");
    assert_eq!(vector_count(&coll), VECTORS as u64 - 2);
    mount.unmount().expect("clean unmount");
    assert_fsck_clean(&volume, "after the CLI's collection commands");
}

/// k-NN through `--json`, k = 10 (one ioctl) and k = 100 (two: 20 queries' results do not fit one).
fn check_search(coll: &Path, query_file: &Path, queries: &[f32], oracle: &Oracle) {
    let results = parse_results(&search_json(coll, query_file, K));
    assert_eq!(results.len(), QUERIES);
    for r in &results {
        assert_eq!(r.hits.len(), K, "query {}: {:?}", r.query, r.hits);
        oracle.check(&queries[r.query * DIM..(r.query + 1) * DIM], &r.hits, &format!("k-NN query {}", r.query));
        if r.query < EXACT_QUERIES {
            let (id, distance) = r.hits[0];
            assert_eq!(id, (r.query * EXACT_STRIDE) as u64, "query {} is that vector", r.query);
            assert!(distance.abs() < 1e-3, "query {}: distance {distance} to itself", r.query);
        }
    }
    let wide = parse_results(&search_json(coll, query_file, 100));
    assert_eq!(wide.len(), QUERIES);
    for (narrow, wide) in results.iter().zip(&wide) {
        assert_eq!(wide.hits.len(), 100);
        assert_eq!(&wide.hits[..K], &narrow.hits[..], "k = 100 does not extend k = 10 (query {})", narrow.query);
    }
}

/// Range search through `--json`: every vector within the radius, nothing beyond it.
fn check_range(coll: &Path, query_file: &Path, queries: &[f32], oracle: &Oracle) {
    const RADIUS: f64 = 3.5;
    let stdout = vexfs_ok(&args!["range", coll, "--query-file", query_file, "--radius", "3.5", "--json"]);
    let results = parse_results(&stdout);
    assert_eq!(results.len(), QUERIES);
    let mut found = 0;
    for r in &results {
        let query = &queries[r.query * DIM..(r.query + 1) * DIM];
        oracle.check(query, &r.hits, &format!("range query {}", r.query));
        assert!(r.hits.len() < 1000, "the default limit cut query {}", r.query);
        assert!(r.hits.iter().all(|(_, d)| *d <= RADIUS), "query {}: beyond the radius", r.query);
        let inside = oracle.distances(query).iter().filter(|(_, d)| *d < RADIUS - DISTANCE_TOLERANCE).count();
        assert!(r.hits.len() >= inside, "query {}: {} results, {inside} within the radius", r.query, r.hits.len());
        found += r.hits.len();
    }
    assert!(found > QUERIES, "radius {RADIUS} found only {found} vectors: a weak test");
}

/// Human output of search (an inline query) and stats.
fn check_human_output(coll: &Path, vectors: &[f32]) {
    let inline: Vec<String> = vectors[5 * DIM..6 * DIM].iter().map(f32::to_string).collect();
    let inline = inline.join(",");
    let stdout = vexfs_ok(&args!["search", coll, "--vector", &inline, "-k", "3"]);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 5, "{stdout}");
    assert_eq!(lines[0], "query 0: 3 results");
    assert_eq!(lines[1].split_whitespace().collect::<Vec<_>>(), ["rank", "id", "distance"]);
    assert_eq!(lines[2].split_whitespace().take(3).collect::<Vec<_>>(), ["1", "5", "0"], "{stdout}");
    let stats = vexfs_ok(&args!["stats", coll]);
    assert!(stats.lines().any(|l| l.split_whitespace().collect::<Vec<_>>() == ["vectors:", "2000"]), "{stats}");
    assert!(stats.lines().any(|l| l.starts_with("dimension:") && l.ends_with(" 32")), "{stats}");
}

/// Vectors larger than an ioctl's payload (dimension 5000: 20 KB each) go in through the insert
/// stream; a query that large does not fit a search ioctl, and the error points to the query
/// files, which answer it.
fn check_wide_vectors(mount: &Mount<'_>, host_dir: &Path) {
    const WIDE: usize = 5000;
    let wide = mount.path().join("wide");
    vexfs_ok(&args!["collection", "create", &wide, "--dim", "5000", "--metric", "l2"]);
    let vectors = Rng(11).vectors(3, WIDE);
    let file = host_dir.join("wide.fvecs");
    fs::write(&file, fvecs_bytes(WIDE, &vectors)).unwrap();
    assert_eq!(vexfs_ok(&args!["insert", &wide, &file, "--sync"]), "inserted 3 vectors, ids 0..2\n");
    let query: Vec<String> = vectors[WIDE..2 * WIDE].iter().map(f32::to_string).collect();
    vexfs_fails(&args!["search", &wide, "--vector", &query.join(","), "-k", "1"], "search", &[".vexfs-query"]);
    let question = wide.join(".vexfs-query").join("q");
    fs::write(&question, format!("{{\"vector\": [{}], \"k\": 1}}\n", query.join(", "))).unwrap();
    let answer: serde_json::Value = serde_json::from_str(&fs::read_to_string(&question).unwrap()).unwrap();
    assert_eq!(answer["results"][0]["id"], 1, "{answer}");
}

/// Each kind of bad input exits 1 with a message naming the problem; none stores anything.
fn check_bad_input(mount: &Mount<'_>, coll: &Path, host_dir: &Path) {
    let mut rng = Rng(7);
    let wrong_dim = host_dir.join("wrong-dim.fvecs");
    fs::write(&wrong_dim, fvecs_bytes(16, &rng.vectors(10, 16))).unwrap();
    let insert = |file: &Path| args!["insert", coll, file];
    vexfs_fails(
        &insert(&wrong_dim),
        "insert",
        &["wrong-dim.fvecs", "dimension 16", "dimension 32", "nothing was sent"],
    );

    let mut values = rng.vectors(300, DIM);
    values[3 * DIM + 5] = f32::NAN;
    let nan = host_dir.join("nan.fvecs");
    fs::write(&nan, fvecs_bytes(DIM, &values)).unwrap();
    vexfs_fails(&insert(&nan), "insert", &["nan.fvecs", "vector 3 component 5 is NaN"]);

    let data = f32_bytes(&rng.vectors(4, DIM));
    let truncated = host_dir.join("truncated.npy");
    let bytes = npy_bytes("<f4", 4, DIM, &data);
    fs::write(&truncated, &bytes[..bytes.len() - 10]).unwrap();
    vexfs_fails(&insert(&truncated), "insert", &["truncated.npy", "truncated"]);
    let ints = host_dir.join("ints.npy");
    fs::write(&ints, npy_bytes("<i4", 4, DIM, &data)).unwrap();
    vexfs_fails(&insert(&ints), "insert", &["ints.npy", "dtype \"<i4\""]);
    let garbage = host_dir.join("garbage.npy");
    fs::write(&garbage, b"not numpy at all").unwrap();
    vexfs_fails(&insert(&garbage), "insert", &["garbage.npy", "not an npy file"]);

    let plain = mount.path().join("plain");
    fs::create_dir(&plain).unwrap();
    fs::write(plain.join("file"), b"x").unwrap();
    let search = |dir: &Path, file: &Path, k: &str| args!["search", dir, "--query-file", file, "-k", k];
    let queries = host_dir.join("queries.npy");
    vexfs_fails(&search(&plain, &queries, "5"), "search", &[&format!("{} is not a VexFS collection", plain.display())]);
    vexfs_fails(&search(coll, &wrong_dim, "5"), "search", &["wrong-dim.fvecs", "dimension 16"]);
    vexfs_fails(&search(coll, &queries, "5000"), "search", &["5000 results per query (at most 1015 fit)"]);
    vexfs_fails(&search(coll, &queries, "0"), "search", &["k must be at least 1"]);
    let missing = mount.path().join("missing");
    vexfs_fails(&search(&missing, &queries, "5"), "search", &["missing", "No such file"]);

    let create = |dir: &Path| args!["collection", "create", dir, "--dim", "4", "--metric", "dot"];
    vexfs_fails(&create(coll), "collection create", &["already a collection"]);
    vexfs_fails(&create(&plain), "collection create", &["is not empty"]);
    vexfs_fails(&create(&host_dir.join("host-dir")), "collection create", &["not on a VexFS mount"]);
}
