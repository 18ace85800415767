//! Distance kernels over `f32` slices, compiled once per instruction set and chosen at run time.
//!
//! Each public kernel is a `#[multiversion]` function: one clone is built with AVX2 + FMA (x86-64)
//! or NEON (AArch64) enabled, one for the baseline target, and the first call picks the best the
//! CPU has (`multiversion` caches the choice in an atomic, so later calls cost one indirect call).
//! The loop bodies are `#[inline(always)]` generic functions, so each clone gets its own copy
//! compiled with its features.
//!
//! Invariants:
//! - No `unsafe`: the dispatch is `multiversion`'s, the loops are plain slice code written with
//!   an array of [`LANES`] (or [`LANES_WIDE`]) partial sums so that LLVM vectorizes them (one
//!   scalar sum would serialize every add on the previous one, and LLVM may not reorder float
//!   adds by itself). The exact loop shape matters: see `reduce` before changing it, and check
//!   the AVX2 clone for packed `vfmadd…ps` on `ymm` registers.
//! - Fused multiply-add is used only in clones built with FMA: `f32::mul_add` without hardware FMA
//!   is a slow library call, and `a * b + c` is never fused by rustc.
//! - Results depend on the clone only by rounding: every clone sums in the same order, but FMA
//!   rounds once where `a * b + c` rounds twice.

use multiversion::multiversion;
use multiversion::target::{match_target, target_cfg_f};

/// Accumulator lanes for short vectors: one AVX register of eight `f32`.
pub const LANES: usize = 8;
/// Accumulator lanes from [`WIDE_FROM`] elements on: two registers, two FMA chains. One chain
/// waits on the FMA latency (about four cycles); with short vectors the CPU overlaps the chains
/// of consecutive rows instead, and the wider loop's longer tail costs more than it saves.
pub const LANES_WIDE: usize = 16;
/// The vector length from which [`LANES_WIDE`] is used (measured: 8 lanes win at 128 dimensions,
/// 16 lanes by 1.5× at 768).
pub const WIDE_FROM: usize = 256;

/// Which per-row quantity a row scan computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kernel {
    /// `q·x`.
    Dot,
    /// `Σ(q−x)²`.
    L2Squared,
    /// `Σ|q−x|`.
    L1,
}

/// The rows a scan visits: every row of a contiguous block, or the listed rows of a block.
#[derive(Clone, Copy, Debug)]
pub enum Rows<'a> {
    /// Rows `0..count` of the block.
    All(usize),
    /// The listed rows of the block (block-local indices).
    Listed(&'a [u32]),
}

impl Rows<'_> {
    pub fn len(&self) -> usize {
        match self {
            Rows::All(count) => *count,
            Rows::Listed(list) => list.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// `a·b`.
#[multiversion(targets("x86_64+avx2+fma", "aarch64+neon"))]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    if target_cfg_f!(target_feature = "fma") {
        reduce::<true, DotOp>(a, b)
    } else {
        reduce::<false, DotOp>(a, b)
    }
}

/// `Σ(a−b)²`, the squared Euclidean distance.
#[multiversion(targets("x86_64+avx2+fma", "aarch64+neon"))]
pub fn l2_squared(a: &[f32], b: &[f32]) -> f32 {
    if target_cfg_f!(target_feature = "fma") {
        reduce::<true, L2Op>(a, b)
    } else {
        reduce::<false, L2Op>(a, b)
    }
}

/// `Σ|a−b|`, the Manhattan distance.
#[multiversion(targets("x86_64+avx2+fma", "aarch64+neon"))]
pub fn l1(a: &[f32], b: &[f32]) -> f32 {
    // No multiply: FMA plays no part, but AVX2 doubles the vector width.
    reduce::<false, L1Op>(a, b)
}

/// `‖a‖²`.
pub fn norm_squared(a: &[f32]) -> f32 {
    dot(a, a)
}

/// Which instruction set the kernels run with: `"avx2+fma"`, `"neon"` or `"portable"`.
pub fn simd_level() -> &'static str {
    ["portable", "avx2+fma", "neon"][simd_level_index()]
}

/// The index into [`simd_level`]'s names of the selected clone (`multiversion` cannot return a
/// `&'static` from a clone).
#[multiversion(targets("x86_64+avx2+fma", "aarch64+neon"))]
fn simd_level_index() -> usize {
    match_target! {
        "x86_64+avx2+fma" => 1,
        "aarch64+neon" => 2,
        _ => 0,
    }
}

/// Computes `kernel(query, row)` for each row of `rows` in the row-major `block` of `dim`-float
/// rows, writing the results to `out[0..rows.len()]` in the order of `rows`.
///
/// This is the direct (non-GEMM) scan: dispatch happens once per block rather than once per
/// row, and the loop over rows is compiled together with the kernel body.
pub fn score_rows(kernel: Kernel, query: &[f32], block: &[f32], dim: usize, rows: Rows<'_>, out: &mut [f32]) {
    assert_eq!(query.len(), dim);
    assert!(dim > 0);
    assert!(out.len() >= rows.len());
    match rows {
        Rows::All(count) => {
            assert!(block.len() >= count * dim);
            score_rows_all(kernel, query, &block[..count * dim], &mut out[..count]);
        }
        Rows::Listed(list) => score_rows_listed(kernel, query, block, list, &mut out[..list.len()]),
    }
}

/// [`score_rows`] over every row of `block` (`out.len()` rows).
#[multiversion(targets("x86_64+avx2+fma", "aarch64+neon"))]
fn score_rows_all(kernel: Kernel, query: &[f32], block: &[f32], out: &mut [f32]) {
    let fma = target_cfg_f!(target_feature = "fma");
    match (kernel, fma) {
        (Kernel::Dot, true) => score_all_with::<true, DotOp>(query, block, out),
        (Kernel::Dot, false) => score_all_with::<false, DotOp>(query, block, out),
        (Kernel::L2Squared, true) => score_all_with::<true, L2Op>(query, block, out),
        (Kernel::L2Squared, false) => score_all_with::<false, L2Op>(query, block, out),
        (Kernel::L1, _) => score_all_with::<false, L1Op>(query, block, out),
    }
}

/// [`score_rows`] over the listed rows of `block`.
#[multiversion(targets("x86_64+avx2+fma", "aarch64+neon"))]
fn score_rows_listed(kernel: Kernel, query: &[f32], block: &[f32], list: &[u32], out: &mut [f32]) {
    let fma = target_cfg_f!(target_feature = "fma");
    match (kernel, fma) {
        (Kernel::Dot, true) => score_listed_with::<true, DotOp>(query, block, list, out),
        (Kernel::Dot, false) => score_listed_with::<false, DotOp>(query, block, list, out),
        (Kernel::L2Squared, true) => score_listed_with::<true, L2Op>(query, block, list, out),
        (Kernel::L2Squared, false) => score_listed_with::<false, L2Op>(query, block, list, out),
        (Kernel::L1, _) => score_listed_with::<false, L1Op>(query, block, list, out),
    }
}

#[inline(always)]
fn score_all_with<const FMA: bool, Op: PairOp>(query: &[f32], block: &[f32], out: &mut [f32]) {
    for (row, slot) in block.chunks_exact(query.len()).zip(out.iter_mut()) {
        *slot = reduce::<FMA, Op>(query, row);
    }
}

#[inline(always)]
fn score_listed_with<const FMA: bool, Op: PairOp>(query: &[f32], block: &[f32], list: &[u32], out: &mut [f32]) {
    let dim = query.len();
    for (&row_index, slot) in list.iter().zip(out.iter_mut()) {
        let start = row_index as usize * dim;
        *slot = reduce::<FMA, Op>(query, &block[start..start + dim]);
    }
}

/// One step of a reduction over pairs of elements: `acc + f(a, b)`.
trait PairOp {
    fn step<const FMA: bool>(acc: f32, a: f32, b: f32) -> f32;
}

struct DotOp;
struct L2Op;
struct L1Op;

impl PairOp for DotOp {
    #[inline(always)]
    fn step<const FMA: bool>(acc: f32, a: f32, b: f32) -> f32 {
        multiply_add::<FMA>(a, b, acc)
    }
}

impl PairOp for L2Op {
    #[inline(always)]
    fn step<const FMA: bool>(acc: f32, a: f32, b: f32) -> f32 {
        let diff = a - b;
        multiply_add::<FMA>(diff, diff, acc)
    }
}

impl PairOp for L1Op {
    #[inline(always)]
    fn step<const FMA: bool>(acc: f32, a: f32, b: f32) -> f32 {
        acc + (a - b).abs()
    }
}

/// `a · b + c`, fused in clones built with FMA (`f32::mul_add` without hardware FMA is a slow
/// library call). The two differ by rounding only.
#[inline(always)]
pub(crate) fn multiply_add<const FMA: bool>(a: f32, b: f32, c: f32) -> f32 {
    if FMA {
        a.mul_add(b, c)
    } else {
        a * b + c
    }
}

/// `Σ Op(a[i], b[i])`, summed in a fixed order: [`LANES`] or [`LANES_WIDE`] interleaved partial
/// sums over the longest prefix that is a multiple of the lane count, added in lane order, plus
/// one scalar sum over the rest.
///
/// Worked example, `len = 45` (< [`WIDE_FROM`], so 8 lanes): elements 0..40 go to the 8 partial
/// sums (element `i` to sum `i % 8`), elements 40..45 to the scalar sum.
///
/// The shape is what LLVM turns into packed FMAs reliably; measured variants that looked
/// equivalent (32 lanes, a second 8-lane tail loop, a pairwise final sum) came out as 2-wide or
/// scalar code, several times slower.
#[inline(always)]
fn reduce<const FMA: bool, Op: PairOp>(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    if a.len() >= WIDE_FROM {
        reduce_lanes::<FMA, Op, LANES_WIDE>(a, b)
    } else {
        reduce_lanes::<FMA, Op, LANES>(a, b)
    }
}

#[inline(always)]
fn reduce_lanes<const FMA: bool, Op: PairOp, const N: usize>(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; N];
    let a_main = a.chunks_exact(N);
    let b_main = b.chunks_exact(N);
    let (a_rest, b_rest) = (a_main.remainder(), b_main.remainder());
    for (x, y) in a_main.zip(b_main) {
        let x: &[f32; N] = x.try_into().expect("chunks_exact yields N elements");
        let y: &[f32; N] = y.try_into().expect("chunks_exact yields N elements");
        for lane in 0..N {
            acc[lane] = Op::step::<FMA>(acc[lane], x[lane], y[lane]);
        }
    }
    let mut rest = 0.0f32;
    for (&x, &y) in a_rest.iter().zip(b_rest) {
        rest = Op::step::<FMA>(rest, x, y);
    }
    acc.iter().sum::<f32>() + rest
}

#[cfg(test)]
mod tests {
    //! Goal: every kernel equals its scalar definition (computed in f64) for every length,
    //! including lengths that are not multiples of the lane counts, and the row scans equal the
    //! single-pair kernels exactly.
    use super::*;
    use proptest::prelude::*;

    fn reference(kernel: Kernel, a: &[f32], b: &[f32]) -> f64 {
        let pairs = a.iter().zip(b).map(|(&x, &y)| (f64::from(x), f64::from(y)));
        match kernel {
            Kernel::Dot => pairs.map(|(x, y)| x * y).sum(),
            Kernel::L2Squared => pairs.map(|(x, y)| (x - y) * (x - y)).sum(),
            Kernel::L1 => pairs.map(|(x, y)| (x - y).abs()).sum(),
        }
    }

    fn single(kernel: Kernel, a: &[f32], b: &[f32]) -> f32 {
        match kernel {
            Kernel::Dot => dot(a, b),
            Kernel::L2Squared => l2_squared(a, b),
            Kernel::L1 => l1(a, b),
        }
    }

    /// The f32 sums may differ from the f64 sum by rounding: bound it by the sum of magnitudes.
    fn assert_close(kernel: Kernel, a: &[f32], b: &[f32]) {
        let got = f64::from(single(kernel, a, b));
        let want = reference(kernel, a, b);
        // The rounding error of each kernel is bounded relative to the sum of the magnitudes of
        // its terms: |x·y| for a dot product, (|x| + |y|)² and |x| + |y| for the differences.
        let magnitude: f64 = a
            .iter()
            .zip(b)
            .map(|(&x, &y)| {
                let (x, y) = (f64::from(x).abs(), f64::from(y).abs());
                let term = match kernel {
                    Kernel::Dot => x * y,
                    Kernel::L2Squared => (x + y) * (x + y),
                    Kernel::L1 => x + y,
                };
                term + 1.0
            })
            .sum();
        let tolerance = 1e-5 * magnitude;
        assert!((got - want).abs() <= tolerance, "{kernel:?} len {}: {got} vs {want}", a.len());
    }

    const KERNELS: [Kernel; 3] = [Kernel::Dot, Kernel::L2Squared, Kernel::L1];

    #[test]
    fn kernels_exact_on_small_integers() {
        // Small integers are exact in f32, so every summation order gives the exact answer.
        for len in (0..=100usize).chain(250..=270).chain(511..=513) {
            let a: Vec<f32> = (0..len).map(|i| (i % 7) as f32 - 3.0).collect();
            let b: Vec<f32> = (0..len).map(|i| (i % 5) as f32 - 1.0).collect();
            for kernel in KERNELS {
                assert_eq!(f64::from(single(kernel, &a, &b)), reference(kernel, &a, &b), "{kernel:?} len {len}");
            }
            assert_eq!(f64::from(norm_squared(&a)), reference(Kernel::Dot, &a, &a));
        }
    }

    #[test]
    fn simd_level_is_named() {
        let level = simd_level();
        assert!(["avx2+fma", "neon", "portable"].contains(&level), "{level}");
        #[cfg(target_arch = "x86_64")]
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
            assert_eq!(level, "avx2+fma");
        }
    }

    proptest! {
        #[test]
        fn kernels_match_reference(
            pairs in prop::collection::vec((-100.0f32..100.0, -100.0f32..100.0), 0..300),
        ) {
            let (a, b): (Vec<f32>, Vec<f32>) = pairs.into_iter().unzip();
            for kernel in KERNELS {
                assert_close(kernel, &a, &b);
            }
        }

        #[test]
        fn row_scans_match_single_kernels(
            dim in 1usize..70,
            rows in 0usize..20,
            seed in any::<u64>(),
        ) {
            let mut state = seed | 1;
            let mut next = move || {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state % 2001) as f32 / 1000.0 - 1.0
            };
            let query: Vec<f32> = (0..dim).map(|_| next()).collect();
            let block: Vec<f32> = (0..rows * dim).map(|_| next()).collect();
            let listed: Vec<u32> = (0..rows as u32).rev().step_by(2).collect();
            for kernel in KERNELS {
                let mut out = vec![0.0; rows];
                score_rows(kernel, &query, &block, dim, Rows::All(rows), &mut out);
                for (row, got) in out.iter().enumerate() {
                    prop_assert_eq!(*got, single(kernel, &query, &block[row * dim..][..dim]));
                }
                let mut out = vec![0.0; listed.len()];
                score_rows(kernel, &query, &block, dim, Rows::Listed(&listed), &mut out);
                for (&row, got) in listed.iter().zip(&out) {
                    prop_assert_eq!(*got, single(kernel, &query, &block[row as usize * dim..][..dim]));
                }
            }
        }
    }
}
