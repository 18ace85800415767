//! Exact (brute-force) k-nearest-neighbour and range search over one shard's vectors.
//!
//! One call scans one [`VectorSet`] on the calling thread; the caller runs one call per shard on
//! each core and combines the answers with [`merge`]. Results are exact: they are the oracle the
//! approximate indexes are measured against (usearch `test_exact_search`).
//!
//! Code paths, chosen per call and per row block by [`SearchParams`]:
//! - **Direct**: for each query, a SIMD kernel ([`kernels`]) over the block's rows. Used for
//!   Manhattan, for calls with fewer than [`SearchParams::gemm_queries_min`] queries (one query
//!   is a matrix-vector product, where GEMM only adds packing), and for blocks where the filter
//!   keeps too few rows.
//! - **GEMM**: for L2, Cosine and Dot, the inner products of a block of queries with a block of
//!   rows come from one matrix product (`faer`, safe, single-threaded), as FAISS `IndexFlat`
//!   does with BLAS. Kept rows are first copied together when the filter drops some.
//!
//! Invariants:
//! - Both paths return the same neighbours with the same distances up to float rounding; for L2
//!   they return identical distances: the GEMM path only uses `‖q‖² + ‖x‖² − 2q·x` (which
//!   cancels badly for near neighbours) to rule rows out, with a proven error margin, and
//!   recomputes the rows it cannot rule out with the direct kernel.
//! - `keep(row)` is called at most once per row per call, and rows it refuses are never scored.
//! - Ties are broken by the smaller id ([`topk`]), so results do not depend on block sizes,
//!   paths, shard order or merge order.
//! - A NaN distance is never returned.

pub mod filter;
pub mod kernels;
pub mod topk;

#[cfg(test)]
mod tests;

use faer::linalg::matmul::matmul;
use faer::{Accum, MatMut, MatRef, Par};
use vexfs_format::collection::Metric;

use kernels::{Kernel, Rows};
use topk::TopK;

/// One search result: a vector's id and its distance from the query (smaller is closer).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Neighbor {
    pub id: u64,
    pub distance: f32,
}

/// `n` vectors of `dim` floats, row-major; `sq_norms[i]` = ‖row i‖² (the caller keeps them);
/// `ids[i]` its id.
///
/// `sq_norms` must be the squared norms as [`kernels::norm_squared`] computes them (any float32
/// summation order will do): the L2 GEMM path relies on them to within float rounding.
#[derive(Clone, Copy, Debug)]
pub struct VectorSet<'a> {
    pub dim: usize,
    pub data: &'a [f32],
    pub sq_norms: &'a [f32],
    pub ids: &'a [u64],
}

impl VectorSet<'_> {
    /// The number of vectors.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Checks that the slices agree with each other (a programmer error if not).
    fn assert_valid(&self) {
        assert!(self.dim > 0, "a vector set has dimension > 0");
        assert_eq!(self.data.len(), self.ids.len() * self.dim, "data holds ids.len() rows of dim floats");
        assert_eq!(self.sq_norms.len(), self.ids.len(), "one squared norm per row");
        // The L2 GEMM path trusts the squared norms; spot-check them in debug builds.
        for (row, &sq_norm) in self.data.chunks_exact(self.dim).zip(self.sq_norms).take(16) {
            let computed = kernels::norm_squared(row);
            debug_assert!(
                // Equal covers rows of finite values whose squared norm overflows to infinity.
                computed == sq_norm
                    || (computed - sq_norm).abs() <= 1e-4 * computed.abs().max(1.0)
                    || computed.is_nan(),
                "sq_norms[i] = ‖row i‖²: {sq_norm} vs {computed}"
            );
        }
    }
}

/// Tuning of the code paths. [`SearchParams::default`] is measured on x86-64 with AVX2 + FMA,
/// 1 MiB of L2 per core (see `tests::measure_throughput`); tests set extreme values to force
/// each path.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SearchParams {
    /// Calls with fewer queries use the direct kernels; GEMM needs a few queries to beat a
    /// matrix-vector product (measured crossover: about 8). `usize::MAX` disables GEMM.
    pub gemm_queries_min: usize,
    /// Queries per GEMM: the `query_block × rows` distance tile should fit in L2 cache.
    pub query_block: usize,
    /// Bytes of row data per row block (the rows scanned together), which should fit in L2.
    pub row_block_bytes: usize,
    /// Bounds on the rows per row block, whatever the dimension.
    pub row_block_rows_min: usize,
    pub row_block_rows_max: usize,
    /// A row block goes through GEMM only if the filter keeps at least this fraction of it;
    /// below it, the direct kernels over the few kept rows beat copying them together for GEMM
    /// (measured crossover: 0.3–1% of 1024 rows of 128 floats, 128 queries).
    pub gemm_kept_fraction_min: f32,
}

impl Default for SearchParams {
    fn default() -> SearchParams {
        SearchParams {
            gemm_queries_min: 8,
            query_block: 128,
            row_block_bytes: 512 * 1024,
            row_block_rows_min: 16,
            row_block_rows_max: 2048,
            gemm_kept_fraction_min: 0.004,
        }
    }
}

impl SearchParams {
    fn assert_valid(&self) {
        assert!(self.gemm_queries_min > 0);
        assert!(self.query_block > 0);
        assert!(self.row_block_rows_min > 0);
        assert!(self.row_block_rows_min <= self.row_block_rows_max);
        // Block-local row indices are `u32`.
        assert!(self.row_block_rows_max <= u32::MAX as usize);
        assert!((0.0..=1.0).contains(&self.gemm_kept_fraction_min));
    }

    /// Rows per row block for vectors of `dim` floats.
    fn block_rows(&self, dim: usize) -> usize {
        let rows = self.row_block_bytes / (dim * size_of::<f32>());
        rows.clamp(self.row_block_rows_min, self.row_block_rows_max)
    }
}

/// A `keep` that keeps every row.
pub fn keep_all(_row: usize) -> bool {
    true
}

/// Scales `v` to unit length (as Cosine collections store vectors and queries). Returns false,
/// leaving `v` unchanged, when it has no direction: zero, or with a non-finite norm.
pub fn normalize(v: &mut [f32]) -> bool {
    let norm = v.iter().map(|&x| f64::from(x) * f64::from(x)).sum::<f64>().sqrt();
    if norm == 0.0 || !norm.is_finite() {
        return false;
    }
    let scale = 1.0 / norm;
    for x in v.iter_mut() {
        *x = (f64::from(*x) * scale) as f32;
    }
    true
}

/// The distance between two vectors by the metric's definition, computed in f64 one element at
/// a time: the reference the fast paths are tested against.
pub fn distance(metric: Metric, a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    let pairs = a.iter().zip(b).map(|(&x, &y)| (f64::from(x), f64::from(y)));
    let value: f64 = match metric {
        Metric::L2 => pairs.map(|(x, y)| (x - y) * (x - y)).sum::<f64>().sqrt(),
        Metric::Cosine => 1.0 - pairs.map(|(x, y)| x * y).sum::<f64>(),
        Metric::Dot => -pairs.map(|(x, y)| x * y).sum::<f64>(),
        Metric::Manhattan => pairs.map(|(x, y)| (x - y).abs()).sum::<f64>(),
    };
    value as f32
}

/// The `k` nearest rows to each query among the rows `keep` accepts: one list per query
/// (`queries.len() / dim` of them), nearest first, each at most `k` long.
pub fn knn(
    set: &VectorSet<'_>,
    metric: Metric,
    queries: &[f32],
    k: usize,
    keep: &dyn Fn(usize) -> bool,
) -> Vec<Vec<Neighbor>> {
    knn_with(set, metric, queries, k, keep, &SearchParams::default())
}

/// [`knn`] with explicit tuning.
pub fn knn_with(
    set: &VectorSet<'_>,
    metric: Metric,
    queries: &[f32],
    k: usize,
    keep: &dyn Fn(usize) -> bool,
    params: &SearchParams,
) -> Vec<Vec<Neighbor>> {
    search(set, metric, queries, keep, params, || TopK::new(k, f32::INFINITY))
}

/// Every row `keep` accepts within `radius` of each query (`distance <= radius`), nearest first,
/// at most `limit` (the nearest) per query.
pub fn range(
    set: &VectorSet<'_>,
    metric: Metric,
    queries: &[f32],
    radius: f32,
    keep: &dyn Fn(usize) -> bool,
    limit: usize,
) -> Vec<Vec<Neighbor>> {
    range_with(set, metric, queries, radius, keep, limit, &SearchParams::default())
}

/// [`range`] with explicit tuning.
pub fn range_with(
    set: &VectorSet<'_>,
    metric: Metric,
    queries: &[f32],
    radius: f32,
    keep: &dyn Fn(usize) -> bool,
    limit: usize,
    params: &SearchParams,
) -> Vec<Vec<Neighbor>> {
    assert!(!radius.is_nan(), "the radius must be a number");
    search(set, metric, queries, keep, params, || TopK::new(limit, radius))
}

/// Combines per-shard results (`parts[shard][query]`, each list sorted) into the global `k`
/// nearest per query. Every shard must answer the same queries.
pub fn merge(parts: Vec<Vec<Vec<Neighbor>>>, k: usize) -> Vec<Vec<Neighbor>> {
    let query_count = parts.first().map_or(0, Vec::len);
    let mut collectors: Vec<TopK> = (0..query_count).map(|_| TopK::new(k, f32::INFINITY)).collect();
    for part in parts {
        assert_eq!(part.len(), query_count, "every shard answers every query");
        for (collector, list) in collectors.iter_mut().zip(part) {
            for neighbor in list {
                collector.push(neighbor.id, neighbor.distance);
            }
        }
    }
    collectors.into_iter().map(TopK::into_sorted).collect()
}

/// Runs one scan that offers every kept row to one collector per query.
fn search(
    set: &VectorSet<'_>,
    metric: Metric,
    queries: &[f32],
    keep: &dyn Fn(usize) -> bool,
    params: &SearchParams,
    collector: impl Fn() -> TopK,
) -> Vec<Vec<Neighbor>> {
    set.assert_valid();
    params.assert_valid();
    assert_eq!(queries.len() % set.dim, 0, "queries hold whole vectors of dim floats");
    let query_count = queries.len() / set.dim;
    let mut collectors: Vec<TopK> = (0..query_count).map(|_| collector()).collect();
    if query_count > 0 && !set.is_empty() {
        Scan::new(set, metric, queries, params).run(keep, &mut collectors);
    }
    let results: Vec<Vec<Neighbor>> = collectors.into_iter().map(TopK::into_sorted).collect();
    for list in &results {
        assert!(list.windows(2).all(|pair| pair[0].distance <= pair[1].distance), "results are sorted");
    }
    results
}

#[cfg(test)]
thread_local! {
    // Row blocks scanned by each path on this thread: `[direct, gemm]`. Tests read it to show
    // that each path ran.
    static PATH_COUNTS: std::cell::Cell<[usize; 2]> = const { std::cell::Cell::new([0, 0]) };
}

#[cfg(test)]
fn count_path(path: usize) {
    PATH_COUNTS.with(|counts| {
        let mut value = counts.get();
        value[path] += 1;
        counts.set(value);
    });
}

#[cfg(test)]
fn path_counts_take() -> [usize; 2] {
    PATH_COUNTS.with(|counts| counts.replace([0, 0]))
}

/// The state of one call's scan: inputs, plan and scratch buffers (allocated once per call).
struct Scan<'s, 'a> {
    set: &'s VectorSet<'a>,
    metric: Metric,
    queries: &'s [f32],
    params: &'s SearchParams,
    block_rows: usize,
    gemm: bool,
    /// `‖q‖²` per query, for the L2 GEMM path only.
    query_sq_norms: Vec<f32>,
    /// Block-local indices of the kept rows of the current block.
    kept: Vec<u32>,
    /// Per-row results of the current query × block: kernel values, then distances.
    scores: Vec<f32>,
    /// The kept rows copied together (GEMM on a filtered block), and their squared norms.
    packed: Vec<f32>,
    packed_sq_norms: Vec<f32>,
    /// The `query_block × rows` GEMM output, row-major.
    tile: Vec<f32>,
}

impl<'s, 'a> Scan<'s, 'a> {
    fn new(set: &'s VectorSet<'a>, metric: Metric, queries: &'s [f32], params: &'s SearchParams) -> Self {
        let dim = set.dim;
        let query_count = queries.len() / dim;
        let block_rows = params.block_rows(dim).min(set.len());
        let gemm = metric != Metric::Manhattan && query_count >= params.gemm_queries_min;
        let query_sq_norms = if gemm && metric == Metric::L2 {
            queries.chunks_exact(dim).map(kernels::norm_squared).collect()
        } else {
            Vec::new()
        };
        let tile_len = if gemm { params.query_block.min(query_count) * block_rows } else { 0 };
        Scan {
            set,
            metric,
            queries,
            params,
            block_rows,
            gemm,
            query_sq_norms,
            kept: Vec::with_capacity(block_rows),
            scores: vec![0.0; block_rows],
            packed: Vec::new(),
            packed_sq_norms: Vec::new(),
            tile: vec![0.0; tile_len],
        }
    }

    fn run(mut self, keep: &dyn Fn(usize) -> bool, collectors: &mut [TopK]) {
        let row_count = self.set.len();
        let mut block_start = 0;
        while block_start < row_count {
            let block_end = (block_start + self.block_rows).min(row_count);
            self.kept.clear();
            self.kept.extend((block_start..block_end).filter(|&row| keep(row)).map(|row| (row - block_start) as u32));
            let block_len = block_end - block_start;
            let kept_fraction = self.kept.len() as f32 / block_len as f32;
            if self.kept.is_empty() {
                // Nothing to score.
            } else if self.gemm && kept_fraction >= self.params.gemm_kept_fraction_min {
                #[cfg(test)]
                count_path(1);
                self.gemm_block(block_start..block_end, collectors);
            } else {
                #[cfg(test)]
                count_path(0);
                self.direct_block(block_start..block_end, collectors);
            }
            block_start = block_end;
        }
    }

    /// Scores the kept rows of one block against every query with the direct kernels.
    fn direct_block(&mut self, block: std::ops::Range<usize>, collectors: &mut [TopK]) {
        let dim = self.set.dim;
        let data = &self.set.data[block.start * dim..block.end * dim];
        let ids = &self.set.ids[block.clone()];
        let rows = if self.kept.len() == block.len() { Rows::All(block.len()) } else { Rows::Listed(&self.kept) };
        let kernel = match self.metric {
            Metric::L2 => Kernel::L2Squared,
            Metric::Cosine | Metric::Dot => Kernel::Dot,
            Metric::Manhattan => Kernel::L1,
        };
        for (query, collector) in self.queries.chunks_exact(dim).zip(collectors.iter_mut()) {
            let scores = &mut self.scores[..rows.len()];
            kernels::score_rows(kernel, query, data, dim, rows, scores);
            to_distances(self.metric, scores);
            offer(scores, rows, ids, collector);
        }
    }

    /// Scores the kept rows of one block against every query through GEMM.
    fn gemm_block(&mut self, block: std::ops::Range<usize>, collectors: &mut [TopK]) {
        let dim = self.set.dim;
        let all_kept = self.kept.len() == block.len();
        let ids = &self.set.ids[block.clone()];
        if !all_kept {
            self.pack(block.clone());
        }
        let operand = if all_kept {
            GemmRows {
                data: &self.set.data[block.start * dim..block.end * dim],
                sq_norms: &self.set.sq_norms[block.clone()],
                rows: Rows::All(block.len()),
                ids,
            }
        } else {
            GemmRows { data: &self.packed, sq_norms: &self.packed_sq_norms, rows: Rows::Listed(&self.kept), ids }
        };
        let row_count = operand.rows.len();
        let rows_t = MatRef::from_row_major_slice(operand.data, row_count, dim).transpose();
        let query_count = collectors.len();
        let mut query_start = 0;
        while query_start < query_count {
            let query_end = (query_start + self.params.query_block).min(query_count);
            let query_block = &self.queries[query_start * dim..query_end * dim];
            let tile = &mut self.tile[..(query_end - query_start) * row_count];
            let lhs = MatRef::from_row_major_slice(query_block, query_end - query_start, dim);
            let dst = MatMut::from_row_major_slice_mut(tile, query_end - query_start, row_count);
            matmul(dst, Accum::Replace, lhs, rows_t, 1.0f32, Par::Seq);
            for (offset, products) in tile.chunks_exact_mut(row_count).enumerate() {
                let query_index = query_start + offset;
                let query = &query_block[offset * dim..(offset + 1) * dim];
                let collector = &mut collectors[query_index];
                if self.metric == Metric::L2 {
                    let query_sq_norm = self.query_sq_norms[query_index];
                    offer_l2_refined(query, query_sq_norm, products, &operand, collector);
                } else {
                    to_distances(self.metric, products);
                    offer(products, operand.rows, operand.ids, collector);
                }
            }
            query_start = query_end;
        }
    }

    /// Copies the kept rows of `block` (and their squared norms) together into `packed`.
    fn pack(&mut self, block: std::ops::Range<usize>) {
        let dim = self.set.dim;
        let data = &self.set.data[block.start * dim..block.end * dim];
        self.packed.clear();
        self.packed_sq_norms.clear();
        for &row in &self.kept {
            let row = row as usize;
            self.packed.extend_from_slice(&data[row * dim..(row + 1) * dim]);
            self.packed_sq_norms.push(self.set.sq_norms[block.start + row]);
        }
    }
}

/// The right-hand operand of one GEMM: the rows it multiplies (the block itself, or its kept rows
/// packed together), their squared norms, and the way back from a GEMM column to an id.
struct GemmRows<'r> {
    /// `rows.len()` rows of `dim` floats, row-major: GEMM column `j` is row `j` here.
    data: &'r [f32],
    sq_norms: &'r [f32],
    /// Which block rows the columns are (`Listed` when packed).
    rows: Rows<'r>,
    /// The ids of the whole block.
    ids: &'r [u64],
}

/// Turns kernel values (`Σ(q−x)²`, `q·x` or `Σ|q−x|`) into the metric's distances, in place.
fn to_distances(metric: Metric, scores: &mut [f32]) {
    match metric {
        Metric::L2 => scores.iter_mut().for_each(|s| *s = s.sqrt()),
        Metric::Cosine => scores.iter_mut().for_each(|s| *s = 1.0 - *s),
        Metric::Dot => scores.iter_mut().for_each(|s| *s = -*s),
        Metric::Manhattan => {}
    }
}

/// Offers each row's distance to `collector`; `distances[j]` belongs to the `j`-th of `rows`.
#[inline]
fn offer(distances: &[f32], rows: Rows<'_>, ids: &[u64], collector: &mut TopK) {
    let mut threshold = collector.threshold();
    for (position, &distance) in distances.iter().enumerate() {
        // Most rows fail this test once the collector is full; it is the hot loop.
        if distance <= threshold {
            collector.push(ids[block_row(rows, position)], distance);
            threshold = collector.threshold();
        }
    }
}

/// The block-local row of the `position`-th of `rows`.
#[inline]
fn block_row(rows: Rows<'_>, position: usize) -> usize {
    match rows {
        Rows::All(_) => position,
        Rows::Listed(list) => list[position] as usize,
    }
}

/// Relative error bound of the L2 expansion, as a multiple of `‖q‖² + ‖x‖²`.
///
/// With unit roundoff `u = 2⁻²⁴` and `γ(n) = n·u/(1 − n·u)`: a float32 inner product of length
/// `dim` computed in any order errs by at most `γ(dim)·Σ|qᵢxᵢ| ≤ γ(dim)·(‖q‖² + ‖x‖²)/2`, and so
/// does each squared norm. `‖q‖² + ‖x‖² − 2q·x` therefore errs by at most
/// `(2γ(dim) + 4u)·(‖q‖² + ‖x‖²)` including its own two roundings; the exact kernel value it is
/// compared with errs by at most `γ(dim)·Σ(qᵢ−xᵢ)² ≤ 2γ(dim)·(‖q‖² + ‖x‖²)`; squaring the
/// threshold and computing the bound add a few `u`. Worked example: `dim = 128` gives about
/// `3.2e-5`, so a row is recomputed only if its estimate is within 0.0032% of the norms of the
/// threshold.
fn l2_expansion_error(dim: usize) -> f32 {
    let unit = f64::from(f32::EPSILON) / 2.0;
    let gamma = dim as f64 * unit / (1.0 - dim as f64 * unit);
    (4.0 * gamma + 16.0 * unit) as f32
}

/// The L2 GEMM path's offer: `products[j] = q·x_j`. A row whose lower bound on `‖q−x‖²` (from the
/// expansion minus its error bound) exceeds the threshold is skipped; any other row is scored
/// exactly with the direct kernel, so distances equal the direct path's.
fn offer_l2_refined(
    query: &[f32],
    query_sq_norm: f32,
    products: &mut [f32],
    operand: &GemmRows<'_>,
    collector: &mut TopK,
) {
    let dim = query.len();
    let keep_factor = 1.0 - l2_expansion_error(dim);
    // products[j] becomes a lower bound on the squared distance.
    for (value, &row_sq_norm) in products.iter_mut().zip(operand.sq_norms) {
        *value = keep_factor * (query_sq_norm + row_sq_norm) - 2.0 * *value;
    }
    let mut threshold = collector.threshold();
    // A negative threshold (a negative radius) admits nothing, and `threshold²` would be positive.
    if threshold < 0.0 {
        return;
    }
    let mut threshold_sq = threshold * threshold;
    for (position, &lower_bound) in products.iter().enumerate() {
        if lower_bound <= threshold_sq {
            let row = &operand.data[position * dim..(position + 1) * dim];
            let distance = kernels::l2_squared(query, row).sqrt();
            collector.push(operand.ids[block_row(operand.rows, position)], distance);
            threshold = collector.threshold();
            threshold_sq = threshold * threshold;
        }
    }
}
