//! Goal: `knn` and `range` return what a straightforward f64 brute force returns, on every code
//! path (direct kernels, GEMM, GEMM falling back to direct on sparse blocks), for all four metrics,
//! and `merge` of per-shard answers equals the answer over all rows.
//!
//! Method: random data from a seed (dims 1..200, n 0..2000, 1..70 queries, k 1..50, random keep
//! masks), some of it quantized to small integers so that exact ties are common. Results are
//! compared with a reference that sorts every kept row by `(f64 distance, id)`. Float32 rounding
//! may reorder rows whose reference distances tie within [`tie_eps`], so the check is:
//! every returned id may belong (its reference distance is within the cutoff plus epsilon),
//! every row clearly inside the cutoff is returned, and every returned distance is within
//! [`distance_tol`] of the reference.

use std::cell::Cell;

use proptest::prelude::*;
use vexfs_format::collection::Metric;

use super::*;

/// Distances from the f32 paths may differ from the f64 reference by this much.
fn distance_tol(reference: f64) -> f64 {
    1e-3 * reference.abs().max(1.0)
}

/// Reference distances this close are treated as tied: the f32 paths may order them either way.
fn tie_eps(reference: f64) -> f64 {
    1e-4 * (1.0 + reference.abs())
}

/// A small, seedable generator (xorshift64*), so that a failing case is replayed by its seed.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in [-1, 1).
    fn unit(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }

    fn below(&mut self, bound: u64) -> u64 {
        self.next_u64() % bound
    }
}

/// The rows of a test, owning what a [`VectorSet`] borrows.
struct Dataset {
    dim: usize,
    data: Vec<f32>,
    sq_norms: Vec<f32>,
    ids: Vec<u64>,
}

impl Dataset {
    fn set(&self) -> VectorSet<'_> {
        VectorSet { dim: self.dim, data: &self.data, sq_norms: &self.sq_norms, ids: &self.ids }
    }
}

/// Random vectors: uniform in [-1, 1), or (`quantized`) small integers, which tie often.
fn random_vectors(rng: &mut Rng, count: usize, dim: usize, metric: Metric, quantized: bool) -> Vec<f32> {
    let mut data: Vec<f32> =
        (0..count * dim).map(|_| if quantized { rng.below(3) as f32 - 1.0 } else { rng.unit() }).collect();
    if metric == Metric::Cosine {
        for row in data.chunks_exact_mut(dim) {
            if !normalize(row) {
                row[0] = 1.0;
            }
        }
    }
    data
}

fn dataset(rng: &mut Rng, count: usize, dim: usize, metric: Metric, quantized: bool) -> Dataset {
    let data = random_vectors(rng, count, dim, metric, quantized);
    let sq_norms = data.chunks_exact(dim).map(kernels::norm_squared).collect();
    // Ids are distinct but neither sorted nor dense, so code that confuses rows with ids fails.
    let ids = (0..count as u64).map(|row| row.wrapping_mul(0x9e37_79b9) % 1_000_003 + row * 1_000_003).collect();
    Dataset { dim, data, sq_norms, ids }
}

/// Every kept row of `data` as `(distance, id)` in f64, nearest first, ties by id.
fn reference(data: &Dataset, metric: Metric, query: &[f32], keep: &[bool]) -> Vec<(f64, u64)> {
    let mut all: Vec<(f64, u64)> = data
        .data
        .chunks_exact(data.dim)
        .zip(&data.ids)
        .zip(keep)
        .filter(|(_, &kept)| kept)
        .map(|((row, &id), _)| {
            let pairs = query.iter().zip(row).map(|(&q, &x)| (f64::from(q), f64::from(x)));
            let distance = match metric {
                Metric::L2 => pairs.map(|(q, x)| (q - x) * (q - x)).sum::<f64>().sqrt(),
                Metric::Cosine => 1.0 - pairs.map(|(q, x)| q * x).sum::<f64>(),
                Metric::Dot => -pairs.map(|(q, x)| q * x).sum::<f64>(),
                Metric::Manhattan => pairs.map(|(q, x)| (q - x).abs()).sum::<f64>(),
            };
            (distance, id)
        })
        .collect();
    all.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    all
}

/// Checks one query's answer against the reference: the best `capacity` rows with distance
/// `<= bound` (knn: `bound = inf`), up to ties within [`tie_eps`].
fn check_answer(got: &[Neighbor], reference: &[(f64, u64)], capacity: usize, bound: f32) -> Result<(), String> {
    let bound = f64::from(bound);
    let reference_of = |id: u64| reference.iter().find(|r| r.1 == id).map(|r| r.0);
    let within: Vec<&(f64, u64)> = reference.iter().filter(|r| r.0 <= bound).take(capacity).collect();
    // The cutoff: the capacity-th best distance if the capacity binds, else the bound.
    let cutoff = if within.len() == capacity { within.last().map_or(f64::NEG_INFINITY, |r| r.0) } else { bound };
    let cutoff_eps = if cutoff.is_finite() { tie_eps(cutoff) } else { 0.0 };
    if got.len() > capacity {
        return Err(format!("{} results for capacity {capacity}", got.len()));
    }
    if bound.is_infinite() && got.len() != within.len() {
        return Err(format!("{} results, expected {}", got.len(), within.len()));
    }
    let mut seen = std::collections::HashSet::new();
    for neighbor in got {
        let Some(want) = reference_of(neighbor.id) else {
            return Err(format!("id {} is not a kept row", neighbor.id));
        };
        if !seen.insert(neighbor.id) {
            return Err(format!("id {} returned twice", neighbor.id));
        }
        if (f64::from(neighbor.distance) - want).abs() > distance_tol(want) {
            return Err(format!("id {}: distance {} vs reference {want}", neighbor.id, neighbor.distance));
        }
        if f64::from(neighbor.distance) > bound {
            return Err(format!("id {}: distance {} beyond the bound {bound}", neighbor.id, neighbor.distance));
        }
        if want > cutoff + cutoff_eps {
            return Err(format!("id {}: reference {want} beyond the cutoff {cutoff}", neighbor.id));
        }
    }
    for &&(distance, id) in &within {
        if distance < cutoff - cutoff_eps && !seen.contains(&id) {
            return Err(format!("missing id {id} at reference {distance} (cutoff {cutoff})"));
        }
    }
    Ok(())
}

/// Code paths under test: each forces one route through `Scan`.
fn path_params() -> Vec<(&'static str, SearchParams)> {
    let default = SearchParams::default();
    let small_blocks = SearchParams { row_block_rows_min: 1, row_block_rows_max: 37, ..default };
    vec![
        ("default", default),
        ("direct", SearchParams { gemm_queries_min: usize::MAX, ..small_blocks }),
        ("gemm", SearchParams { gemm_queries_min: 1, gemm_kept_fraction_min: 0.0, query_block: 7, ..small_blocks }),
        ("gemm-sparse-fallback", SearchParams { gemm_queries_min: 1, gemm_kept_fraction_min: 0.3, ..small_blocks }),
    ]
}

#[derive(Debug, Clone)]
struct Case {
    seed: u64,
    dim: usize,
    rows: usize,
    queries: usize,
    k: usize,
    kept_per_mille: u64,
    quantized: bool,
    limit: usize,
}

fn case_strategy() -> impl Strategy<Value = Case> {
    (
        any::<u64>(),
        prop_oneof![1usize..9, 1usize..200],
        prop_oneof![Just(0usize), 0usize..50, 0usize..2000],
        prop_oneof![Just(1usize), 1usize..70],
        prop_oneof![1usize..50, Just(usize::MAX / 2)],
        prop_oneof![Just(1000u64), Just(0), 0u64..1000, 1u64..40],
        any::<bool>(),
        prop_oneof![Just(usize::MAX), 1usize..50],
    )
        .prop_map(|(seed, dim, rows, queries, k, kept_per_mille, quantized, limit)| Case {
            seed,
            dim,
            rows,
            queries,
            k,
            kept_per_mille,
            quantized,
            limit,
        })
}

/// Runs one case for one metric on every path, checking knn and range.
fn check_case(case: &Case, metric: Metric) -> Result<(), String> {
    let mut rng = Rng(case.seed | 1);
    let data = dataset(&mut rng, case.rows, case.dim, metric, case.quantized);
    let queries = random_vectors(&mut rng, case.queries, case.dim, metric, case.quantized);
    let keep_mask: Vec<bool> = (0..case.rows).map(|_| rng.below(1000) < case.kept_per_mille).collect();
    let keep = |row: usize| keep_mask[row];
    let references: Vec<Vec<(f64, u64)>> =
        queries.chunks_exact(case.dim).map(|query| reference(&data, metric, query, &keep_mask)).collect();
    // A radius that admits a fair share of the first query's rows (or none, when none are kept).
    let radius = references[0].get(references[0].len() / 3).map_or(0.5, |r| r.0 as f32);
    for (name, params) in path_params() {
        let calls = Cell::new(0usize);
        let counting_keep = |row: usize| {
            calls.set(calls.get() + 1);
            keep(row)
        };
        let knn_answers = knn_with(&data.set(), metric, &queries, case.k, &counting_keep, &params);
        if calls.get() > case.rows {
            return Err(format!("{name}: keep called {} times for {} rows", calls.get(), case.rows));
        }
        let range_answers = range_with(&data.set(), metric, &queries, radius, &keep, case.limit, &params);
        if knn_answers.len() != case.queries || range_answers.len() != case.queries {
            return Err(format!("{name}: wrong number of answers"));
        }
        for (query_index, reference) in references.iter().enumerate() {
            check_answer(&knn_answers[query_index], reference, case.k, f32::INFINITY)
                .map_err(|e| format!("{name} {metric:?} knn query {query_index}: {e}"))?;
            check_answer(&range_answers[query_index], reference, case.limit, radius)
                .map_err(|e| format!("{name} {metric:?} range {radius} query {query_index}: {e}"))?;
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn search_matches_brute_force(case in case_strategy()) {
        for metric in Metric::ALL {
            if let Err(message) = check_case(&case, metric) {
                prop_assert!(false, "{}", message);
            }
        }
    }

    #[test]
    fn merge_of_shards_equals_the_whole(
        seed in any::<u64>(),
        dim in 1usize..40,
        rows in 0usize..400,
        shard_count in 1usize..5,
        k in 1usize..30,
    ) {
        // On the direct path every row's distance is computed the same way whatever the block
        // or shard, so sharded and whole answers are identical, ties included.
        let params = SearchParams { gemm_queries_min: usize::MAX, ..SearchParams::default() };
        for metric in Metric::ALL {
            let mut rng = Rng(seed | 1);
            let whole = dataset(&mut rng, rows, dim, metric, seed % 2 == 0);
            let queries = random_vectors(&mut rng, 5, dim, metric, seed % 2 == 0);
            let shards: Vec<Dataset> = (0..shard_count)
                .map(|shard| {
                    let members: Vec<usize> = (0..rows).filter(|row| row % shard_count == shard).collect();
                    Dataset {
                        dim,
                        data: members.iter().flat_map(|&row| whole.data[row * dim..][..dim].iter().copied()).collect(),
                        sq_norms: members.iter().map(|&row| whole.sq_norms[row]).collect(),
                        ids: members.iter().map(|&row| whole.ids[row]).collect(),
                    }
                })
                .collect();
            let parts = shards.iter().map(|shard| knn_with(&shard.set(), metric, &queries, k, &keep_all, &params)).collect();
            let expected = knn_with(&whole.set(), metric, &queries, k, &keep_all, &params);
            prop_assert_eq!(merge(parts, k), expected);
        }
    }
}

#[test]
fn each_path_runs_as_configured() {
    let mut rng = Rng(5);
    let data = dataset(&mut rng, 500, 24, Metric::L2, false);
    let queries = random_vectors(&mut rng, 20, 24, Metric::L2, false);
    let sparse = |row: usize| matches!(row % 100, 0);
    let expectations = [
        // (params, keep, metric, queries, direct blocks > 0, gemm blocks > 0)
        ("direct", &keep_all as &dyn Fn(usize) -> bool, Metric::L2, 20, true, false),
        ("gemm", &keep_all, Metric::Dot, 20, false, true),
        ("gemm", &keep_all, Metric::Manhattan, 20, true, false),
        ("gemm-sparse-fallback", &sparse, Metric::Cosine, 20, true, false),
        ("default", &keep_all, Metric::L2, 1, true, false),
        ("default", &keep_all, Metric::L2, 20, false, true),
    ];
    let params = path_params();
    for (name, keep, metric, query_count, direct, gemm) in expectations {
        let (_, params) = params.iter().find(|(n, _)| *n == name).expect("a known path");
        path_counts_take();
        knn_with(&data.set(), metric, &queries[..query_count * 24], 5, keep, params);
        let [direct_blocks, gemm_blocks] = path_counts_take();
        assert_eq!((direct_blocks > 0, gemm_blocks > 0), (direct, gemm), "{name} {metric:?} {query_count}");
    }
}

#[test]
fn empty_inputs() {
    let mut rng = Rng(7);
    let empty = dataset(&mut rng, 0, 5, Metric::L2, false);
    let queries = random_vectors(&mut rng, 3, 5, Metric::L2, false);
    for metric in Metric::ALL {
        assert_eq!(knn(&empty.set(), metric, &queries, 10, &keep_all), vec![Vec::<Neighbor>::new(); 3]);
        assert_eq!(range(&empty.set(), metric, &queries, 1.0, &keep_all, 10), vec![Vec::<Neighbor>::new(); 3]);
    }
    let full = dataset(&mut rng, 50, 5, Metric::L2, false);
    assert!(knn(&full.set(), Metric::L2, &[], 10, &keep_all).is_empty());
    assert_eq!(knn(&full.set(), Metric::L2, &queries, 0, &keep_all), vec![Vec::<Neighbor>::new(); 3]);
    assert_eq!(knn(&full.set(), Metric::L2, &queries, 10, &|_| false), vec![Vec::<Neighbor>::new(); 3]);
    assert_eq!(range(&full.set(), Metric::L2, &queries, -1.0, &keep_all, 10), vec![Vec::<Neighbor>::new(); 3]);
    assert!(merge(Vec::new(), 5).is_empty());
}

#[test]
fn k_larger_than_n_returns_every_kept_row_sorted() {
    let mut rng = Rng(11);
    let data = dataset(&mut rng, 30, 9, Metric::L2, false);
    let queries = random_vectors(&mut rng, 20, 9, Metric::L2, false);
    for (name, params) in path_params() {
        for answer in knn_with(&data.set(), Metric::L2, &queries, 1000, &|row| row % 3 != 0, &params) {
            assert_eq!(answer.len(), 20, "{name}");
            assert!(answer.windows(2).all(|pair| pair[0].distance <= pair[1].distance), "{name}");
        }
    }
}

#[test]
fn exact_ties_go_to_the_smaller_id_on_every_path() {
    // Ten copies of one vector: every distance ties, so the smallest ids win.
    let dim = 16;
    let data = Dataset {
        dim,
        data: [0.25f32; 16].repeat(10),
        sq_norms: vec![1.0; 10],
        ids: vec![90, 10, 80, 20, 70, 30, 60, 40, 50, 0],
    };
    let queries = [0.5f32; 16].repeat(12);
    for (name, params) in path_params() {
        for metric in [Metric::L2, Metric::Dot, Metric::Manhattan] {
            for answer in knn_with(&data.set(), metric, &queries, 3, &keep_all, &params) {
                let ids: Vec<u64> = answer.iter().map(|n| n.id).collect();
                assert_eq!(ids, [0, 10, 20], "{name} {metric:?}");
            }
        }
    }
}

#[test]
fn nan_rows_are_never_returned() {
    let mut rng = Rng(3);
    let mut data = dataset(&mut rng, 40, 8, Metric::L2, false);
    data.data[5 * 8 + 3] = f32::NAN;
    data.sq_norms[5] = f32::NAN;
    let queries = random_vectors(&mut rng, 10, 8, Metric::L2, false);
    for (name, params) in path_params() {
        for metric in Metric::ALL {
            for answer in knn_with(&data.set(), metric, &queries, 100, &keep_all, &params) {
                assert_eq!(answer.len(), 39, "{name} {metric:?}");
                assert!(answer.iter().all(|n| n.id != data.ids[5]), "{name} {metric:?}");
            }
        }
    }
}

#[test]
fn distance_follows_the_definitions() {
    let a = [1.0f32, 2.0, -2.0];
    let b = [0.0f32, 2.0, 1.0];
    assert_eq!(distance(Metric::L2, &a, &b), 10.0f32.sqrt());
    assert_eq!(distance(Metric::Dot, &a, &b), -2.0);
    assert_eq!(distance(Metric::Manhattan, &a, &b), 4.0);
    assert_eq!(distance(Metric::Cosine, &a, &b), -1.0);
    let mut v = [3.0f32, 4.0];
    assert!(normalize(&mut v));
    assert_eq!(v, [0.6, 0.8]);
    let mut zero = [0.0f32; 3];
    assert!(!normalize(&mut zero));
    assert_eq!(zero, [0.0; 3]);
}

/// Throughput of the paths, for choosing [`SearchParams::default`]. Not a benchmark: no
/// assertions on time. Run with `cargo test --release -p vexfs-daemon measure_throughput --
/// --ignored --nocapture`.
#[test]
#[ignore = "a measurement, run by hand"]
fn measure_throughput() {
    let parameter =
        |name: &str, default: usize| std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default);
    let (rows, dim, query_count, k) =
        (parameter("ROWS", 100_000), parameter("DIM", 128), parameter("QUERIES", 1000), 10);
    let mut rng = Rng(42);
    let data = dataset(&mut rng, rows, dim, Metric::L2, false);
    let queries = random_vectors(&mut rng, query_count, dim, Metric::L2, false);
    println!("simd: {}, {rows} rows x {dim} dims, {query_count} queries, k = {k}", kernels::simd_level());
    let default = SearchParams::default();
    let mut variants = vec![("direct", SearchParams { gemm_queries_min: usize::MAX, ..default })];
    for query_block in [64, 128, 256] {
        for row_block_bytes in [256 << 10, 512 << 10, 1 << 20] {
            variants.push(("gemm", SearchParams { query_block, row_block_bytes, row_block_rows_max: 8192, ..default }));
        }
    }
    for metric in [Metric::L2, Metric::Dot, Metric::Manhattan] {
        for (name, params) in &variants {
            if metric == Metric::Manhattan && *name != "direct" {
                continue;
            }
            let start = std::time::Instant::now();
            let answers = knn_with(&data.set(), metric, &queries, k, &keep_all, params);
            let seconds = start.elapsed().as_secs_f64();
            let checksum: u64 = answers.iter().flatten().map(|n| n.id).fold(0, u64::wrapping_add);
            println!(
                "{metric:?} {name} qb {} rows/block {}: {:.0} queries/s ({:.2} s, ids hash {checksum:x})",
                params.query_block,
                params.block_rows(dim),
                query_count as f64 / seconds,
                seconds
            );
        }
    }
    for per_mille in [1u64, 3, 10, 30, 100, 300] {
        let mask: Vec<bool> = (0..rows).map(|_| rng.below(1000) < per_mille).collect();
        for fraction in [0.0f32, 1.1] {
            let params = SearchParams { gemm_kept_fraction_min: fraction.min(1.0), ..default };
            let params = if fraction > 1.0 { SearchParams { gemm_queries_min: usize::MAX, ..params } } else { params };
            let start = std::time::Instant::now();
            let _ = knn_with(&data.set(), Metric::L2, &queries, k, &|row| mask[row], &params);
            let seconds = start.elapsed().as_secs_f64();
            let path = if fraction > 1.0 { "direct" } else { "gemm (packed)" };
            println!("L2 kept {per_mille}/1000 {path}: {:.0} queries/s", query_count as f64 / seconds);
        }
    }
    for few in [1usize, 2, 4, 8, 16] {
        for (name, gemm_queries_min) in [("direct", usize::MAX), ("gemm", 1)] {
            let params = SearchParams { gemm_queries_min, ..default };
            let start = std::time::Instant::now();
            let _ = knn_with(&data.set(), Metric::L2, &queries[..few * dim], k, &keep_all, &params);
            let seconds = start.elapsed().as_secs_f64();
            println!("L2 {few} queries {name}: {:.0} queries/s", few as f64 / seconds);
        }
    }
}
