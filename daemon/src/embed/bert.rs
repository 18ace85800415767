//! A BERT encoder, the architecture of all-MiniLM-L6-v2, on candle's tensors and layers.
//!
//! Written here rather than taken from `candle-transformers`: that crate carries hundreds of
//! model families and was the longest single step of a cold release build (about 4.5 minutes on
//! the CI machine, on the critical path), for one encoder of a hundred lines. The weight names are
//! those of Hugging Face's `BertModel` checkpoints (`embeddings.*`, `encoder.layer.N.*`).
//!
//! Inference only: dropout is the identity, and the pooler is not loaded.
//!
//! Texts are packed, not padded: a batch is the concatenation of its texts' tokens, one row each,
//! so the per-token layers (projections, feed-forward, layer norms) run on exactly the real tokens
//! and attention runs text by text over that text's own tokens. No padding means no attention
//! mask and no work on padded positions, and a text's vector does not depend on its batch beyond
//! float rounding.
//!
//! The projections and the feed-forward layer are candle's matrix products; the bias, the
//! activation and the skip connection after each are applied in place on the product's own
//! buffer ([`BiasAdd`], [`BiasGelu`], [`BiasResidual`]) rather than by candle's element-wise
//! operations, each of which would allocate, fill and first-touch another buffer of the same size.
//! Attention is [`Attention`], per text and head. GELU is the exact (erf) one, computed as
//! `x/2 · erfc(-x/√2)` with a vectorized erfc ([`erfc`]) instead of a scalar `erff` call per
//! element; softmax uses a vectorized `exp` ([`exp`]). Both agree with libm to about 1e-7
//! relative, the rounding of `f32` itself.

use candle_core::{CpuStorage, CustomOp1, InplaceOp2, InplaceOp3, Layout, Module, Result, Shape, Tensor};
use candle_nn::{embedding, layer_norm, Embedding, LayerNorm, VarBuilder};
use faer::linalg::matmul::matmul;
use faer::{Accum, MatMut, MatRef, Par};
use multiversion::multiversion;

use crate::vector::search::kernels::multiply_add;
use multiversion::target::target_cfg_f;

/// The parameters of `config.json` the encoder needs.
#[derive(Clone, Debug, PartialEq)]
pub struct BertConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    pub max_position_embeddings: usize,
    pub type_vocab_size: usize,
    pub layer_norm_eps: f64,
}

impl BertConfig {
    /// Reads a Hugging Face `config.json`. Refuses what this encoder does not implement (another
    /// activation, relative position embeddings).
    pub fn from_json(text: &str) -> std::result::Result<BertConfig, String> {
        let value: serde_json::Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
        let size = |key: &str| -> std::result::Result<usize, String> {
            value.get(key).and_then(serde_json::Value::as_u64).map(|n| n as usize).ok_or(format!("no integer {key:?}"))
        };
        let text_of =
            |key: &str, default: &'static str| value.get(key).and_then(|v| v.as_str()).unwrap_or(default).to_string();
        let activation = text_of("hidden_act", "gelu");
        if activation != "gelu" {
            return Err(format!("hidden_act {activation:?} is not supported (only \"gelu\")"));
        }
        let positions = text_of("position_embedding_type", "absolute");
        if positions != "absolute" {
            return Err(format!("position_embedding_type {positions:?} is not supported (only \"absolute\")"));
        }
        let config = BertConfig {
            vocab_size: size("vocab_size")?,
            hidden_size: size("hidden_size")?,
            num_hidden_layers: size("num_hidden_layers")?,
            num_attention_heads: size("num_attention_heads")?,
            intermediate_size: size("intermediate_size")?,
            max_position_embeddings: size("max_position_embeddings")?,
            type_vocab_size: size("type_vocab_size")?,
            layer_norm_eps: value.get("layer_norm_eps").and_then(serde_json::Value::as_f64).unwrap_or(1e-12),
        };
        if config.num_attention_heads == 0 || !config.hidden_size.is_multiple_of(config.num_attention_heads) {
            return Err(format!(
                "hidden_size {} is not a multiple of num_attention_heads {}",
                config.hidden_size, config.num_attention_heads
            ));
        }
        Ok(config)
    }
}

/// A dense layer, `x · weightᵀ + bias`, whose bias is added in place by the step that follows
/// the product.
struct Dense {
    weight: Tensor,
    bias: Tensor,
}

impl Dense {
    fn load(inputs: usize, outputs: usize, vb: VarBuilder) -> Result<Dense> {
        Ok(Dense { weight: vb.get((outputs, inputs), "weight")?, bias: vb.get(outputs, "bias")? })
    }

    /// `x · weightᵀ`, without the bias.
    fn product(&self, x: &Tensor) -> Result<Tensor> {
        x.matmul(&self.weight.t()?)
    }

    /// `x · weightᵀ + bias`.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let y = self.product(x)?;
        y.inplace_op2(&self.bias, &BiasAdd)?;
        Ok(y)
    }
}

struct Layer {
    /// The query, key and value projections as one (3 x hidden, hidden) matrix, so one matrix
    /// product reads the layer input once; the query rows are scaled by 1 / sqrt(head_dim) here,
    /// once, instead of scaling every attention score.
    qkv: Dense,
    attention_out: Dense,
    attention_norm: LayerNorm,
    intermediate: Dense,
    out: Dense,
    out_norm: LayerNorm,
}

/// The encoder: embeddings, then `num_hidden_layers` transformer layers.
pub struct Bert {
    words: Embedding,
    positions: Embedding,
    token_types: Embedding,
    norm: LayerNorm,
    layers: Vec<Layer>,
    heads: usize,
    head_dim: usize,
    max_positions: usize,
}

impl Bert {
    pub fn load(vb: VarBuilder, c: &BertConfig) -> Result<Bert> {
        let h = c.hidden_size;
        let head_dim = h / c.num_attention_heads;
        let e = vb.pp("embeddings");
        let layers = (0..c.num_hidden_layers)
            .map(|n| {
                let l = vb.pp(format!("encoder.layer.{n}"));
                let attention = l.pp("attention");
                let projection = |name: &str, scale: f64| -> Result<Dense> {
                    let Dense { weight, bias } = Dense::load(h, h, attention.pp(name))?;
                    Ok(Dense { weight: (weight * scale)?, bias: (bias * scale)? })
                };
                let q = projection("self.query", 1.0 / (head_dim as f64).sqrt())?;
                let k = projection("self.key", 1.0)?;
                let v = projection("self.value", 1.0)?;
                Ok(Layer {
                    qkv: Dense {
                        weight: Tensor::cat(&[q.weight, k.weight, v.weight], 0)?,
                        bias: Tensor::cat(&[q.bias, k.bias, v.bias], 0)?,
                    },
                    attention_out: Dense::load(h, h, attention.pp("output.dense"))?,
                    attention_norm: layer_norm(h, c.layer_norm_eps, attention.pp("output.LayerNorm"))?,
                    intermediate: Dense::load(h, c.intermediate_size, l.pp("intermediate.dense"))?,
                    out: Dense::load(c.intermediate_size, h, l.pp("output.dense"))?,
                    out_norm: layer_norm(h, c.layer_norm_eps, l.pp("output.LayerNorm"))?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Bert {
            words: embedding(c.vocab_size, h, e.pp("word_embeddings"))?,
            positions: embedding(c.max_position_embeddings, h, e.pp("position_embeddings"))?,
            token_types: embedding(c.type_vocab_size, h, e.pp("token_type_embeddings"))?,
            norm: layer_norm(h, c.layer_norm_eps, e.pp("LayerNorm"))?,
            layers,
            heads: c.num_attention_heads,
            head_dim,
            max_positions: c.max_position_embeddings,
        })
    }

    /// The last hidden states (tokens, hidden) of packed texts: `ids` and `type_ids` (tokens,
    /// u32) are the texts' token ids and token types one after the other, `lengths` the texts'
    /// token counts (summing to the number of tokens). Row `i` of the result is token `i`.
    pub fn forward(&self, ids: &Tensor, type_ids: &Tensor, lengths: &[usize]) -> Result<Tensor> {
        let tokens = ids.dims1()?;
        if lengths.iter().sum::<usize>() != tokens || lengths.contains(&0) {
            candle_core::bail!("{tokens} tokens, but text lengths {lengths:?}");
        }
        if let Some(&longest) = lengths.iter().max().filter(|&&n| n > self.max_positions) {
            candle_core::bail!("{longest} tokens: the model has {} positions", self.max_positions);
        }
        let positions: Vec<u32> = lengths.iter().flat_map(|&n| 0..n as u32).collect();
        let positions = Tensor::from_vec(positions, tokens, ids.device())?;
        let x = self.words.forward(ids)?.add(&self.token_types.forward(type_ids)?)?;
        let x = x.add(&self.positions.forward(&positions)?)?;
        let mut x = self.norm.forward(&x)?;
        for layer in &self.layers {
            x = self.layer(layer, &x, lengths)?;
        }
        Ok(x)
    }

    fn layer(&self, l: &Layer, x: &Tensor, lengths: &[usize]) -> Result<Tensor> {
        let qkv = l.qkv.forward(x)?;
        let context = qkv.apply_op1_no_bwd(&Attention { lengths, heads: self.heads, head_dim: self.head_dim })?;
        let attended = l.attention_out.product(&context)?;
        attended.inplace_op3(&l.attention_out.bias, x, &BiasResidual)?;
        let x = l.attention_norm.forward(&attended)?;
        let inner = l.intermediate.product(&x)?;
        inner.inplace_op2(&l.intermediate.bias, &BiasGelu)?;
        let out = l.out.product(&inner)?;
        out.inplace_op3(&l.out.bias, &x, &BiasResidual)?;
        l.out_norm.forward(&out)
    }
}

/// Self-attention of packed texts, each over its own tokens: from `qkv` (tokens, 3 x hidden),
/// every token's scaled query, key and value, to the context (tokens, hidden).
///
/// Per text and head, two small matrix products (`faer`, single-threaded) around a softmax, into
/// one scratch score matrix per thread: nothing is allocated per text or head. The heads are
/// shared out between candle's thread count of scoped threads (one spawn per layer, where
/// candle's batched matmul would hand every head's small product to its thread pool in turn):
/// equal work for every thread, whatever the texts' lengths. Each thread writes its heads'
/// columns for all tokens into its own buffer, and the context is assembled from those.
struct Attention<'a> {
    lengths: &'a [usize],
    heads: usize,
    head_dim: usize,
}

impl CustomOp1 for Attention<'_> {
    fn name(&self) -> &'static str {
        "attention"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let qkv = src_f32(storage, layout)?;
        let hidden = self.heads * self.head_dim;
        let tokens: usize = self.lengths.iter().sum();
        if layout.dims() != [tokens, 3 * hidden] {
            candle_core::bail!("attention over {:?} for {tokens} tokens of {hidden}", layout.dims());
        }
        let threads = candle_core::utils::get_num_threads().clamp(1, self.heads);
        let head_runs: Vec<std::ops::Range<usize>> =
            (0..threads).map(|t| self.heads * t / threads..self.heads * (t + 1) / threads).collect();
        let parts: Vec<Vec<f32>> = std::thread::scope(|scope| {
            let spawned: Vec<_> =
                head_runs[1..].iter().map(|heads| scope.spawn(|| self.attend(qkv, heads.clone()))).collect();
            let first = self.attend(qkv, head_runs[0].clone());
            std::iter::once(first).chain(spawned.into_iter().map(|t| t.join().expect("attention thread"))).collect()
        });
        let mut context = Vec::with_capacity(tokens * hidden);
        for token in 0..tokens {
            for (part, heads) in parts.iter().zip(&head_runs) {
                let width = heads.len() * self.head_dim;
                context.extend_from_slice(&part[token * width..(token + 1) * width]);
            }
        }
        Ok((CpuStorage::F32(context), Shape::from((tokens, hidden))))
    }
}

impl Attention<'_> {
    /// The context columns of `heads` for every token: (tokens, heads.len() x head_dim).
    fn attend(&self, qkv: &[f32], heads: std::ops::Range<usize>) -> Vec<f32> {
        let (d, hidden) = (self.head_dim, self.heads * self.head_dim);
        let width = heads.len() * d;
        let tokens: usize = self.lengths.iter().sum();
        let longest = self.lengths.iter().copied().max().unwrap_or(0);
        let mut scores = vec![0f32; longest * longest];
        let mut context = vec![0f32; tokens * width];
        let (mut qkv, mut rest) = (qkv, &mut context[..]);
        for &n in self.lengths {
            let (text_qkv, qkv_rest) = qkv.split_at(n * 3 * hidden);
            let (text_context, context_rest) = std::mem::take(&mut rest).split_at_mut(n * width);
            (qkv, rest) = (qkv_rest, context_rest);
            let qkv = MatRef::from_row_major_slice(text_qkv, n, 3 * hidden);
            let scores = &mut scores[..n * n];
            for (column, h) in heads.clone().enumerate() {
                let q = qkv.subcols(h * d, d);
                let k = qkv.subcols(hidden + h * d, d);
                let v = qkv.subcols(2 * hidden + h * d, d);
                matmul(MatMut::from_row_major_slice_mut(scores, n, n), Accum::Replace, q, k.transpose(), 1.0, Par::Seq);
                scores.chunks_exact_mut(n).for_each(softmax);
                let out = MatMut::from_row_major_slice_mut(text_context, n, width).subcols_mut(column * d, d);
                matmul(out, Accum::Replace, MatRef::from_row_major_slice(scores, n, n), v, 1.0, Par::Seq);
            }
        }
        context
    }
}

// In-place element-wise steps. Each takes contiguous f32 tensors: the destination (rows, n) is a
// fresh matrix product, a bias has n elements, a residual the destination's shape.

fn dst_f32<'a>(storage: &'a mut CpuStorage, layout: &Layout) -> Result<&'a mut [f32]> {
    match (storage, layout.contiguous_offsets()) {
        (CpuStorage::F32(data), Some((start, end))) => Ok(&mut data[start..end]),
        _ => candle_core::bail!("expected a contiguous f32 tensor"),
    }
}

fn src_f32<'a>(storage: &'a CpuStorage, layout: &Layout) -> Result<&'a [f32]> {
    match (storage, layout.contiguous_offsets()) {
        (CpuStorage::F32(data), Some((start, end))) => Ok(&data[start..end]),
        _ => candle_core::bail!("expected a contiguous f32 tensor"),
    }
}

/// `dst` and the bias each of its rows gets, checked to fit.
fn rows_and_bias<'a>(
    dst: &'a mut CpuStorage,
    dst_l: &Layout,
    bias: &'a CpuStorage,
    bias_l: &Layout,
) -> Result<(&'a mut [f32], &'a [f32])> {
    let (dst, bias) = (dst_f32(dst, dst_l)?, src_f32(bias, bias_l)?);
    if bias.is_empty() || !dst.len().is_multiple_of(bias.len()) {
        candle_core::bail!("a bias of {} for rows of {} elements", bias.len(), dst.len());
    }
    Ok((dst, bias))
}

/// `dst += bias`, row by row.
struct BiasAdd;

impl InplaceOp2 for BiasAdd {
    fn name(&self) -> &'static str {
        "bias-add"
    }

    fn cpu_fwd(&self, dst: &mut CpuStorage, dst_l: &Layout, bias: &CpuStorage, bias_l: &Layout) -> Result<()> {
        let (dst, bias) = rows_and_bias(dst, dst_l, bias, bias_l)?;
        dst.chunks_exact_mut(bias.len()).for_each(|row| row.iter_mut().zip(bias).for_each(|(y, b)| *y += b));
        Ok(())
    }
}

/// `dst += bias + residual`, row by row (the bias of a product and the skip connection).
struct BiasResidual;

impl InplaceOp3 for BiasResidual {
    fn name(&self) -> &'static str {
        "bias-residual"
    }

    fn cpu_fwd(
        &self,
        dst: &mut CpuStorage,
        dst_l: &Layout,
        bias: &CpuStorage,
        bias_l: &Layout,
        residual: &CpuStorage,
        residual_l: &Layout,
    ) -> Result<()> {
        let residual = src_f32(residual, residual_l)?;
        let (dst, bias) = rows_and_bias(dst, dst_l, bias, bias_l)?;
        if residual.len() != dst.len() {
            candle_core::bail!("a residual of {} for {} elements", residual.len(), dst.len());
        }
        for (row, skip) in dst.chunks_exact_mut(bias.len()).zip(residual.chunks_exact(bias.len())) {
            // The product plus its bias first, then the skip connection: the order of
            // `Linear` followed by `add`.
            row.iter_mut().zip(bias).zip(skip).for_each(|((y, b), s)| *y = (*y + b) + s);
        }
        Ok(())
    }
}

/// `dst = gelu(dst + bias)`, row by row.
struct BiasGelu;

impl InplaceOp2 for BiasGelu {
    fn name(&self) -> &'static str {
        "bias-gelu"
    }

    fn cpu_fwd(&self, dst: &mut CpuStorage, dst_l: &Layout, bias: &CpuStorage, bias_l: &Layout) -> Result<()> {
        let (mut rows, bias) = rows_and_bias(dst, dst_l, bias, bias_l)?;
        let (count, row_len) = (rows.len() / bias.len(), bias.len());
        // The feed-forward activations are the largest element-wise step (tokens x 1536): split
        // between the threads, in runs of whole rows.
        let threads = candle_core::utils::get_num_threads().clamp(1, count.max(1));
        std::thread::scope(|scope| {
            for i in (0..threads).rev() {
                let take = count * (i + 1) / threads - count * i / threads;
                let (run, rest) = std::mem::take(&mut rows).split_at_mut(take * row_len);
                rows = rest;
                let mut work = move || run.chunks_exact_mut(row_len).for_each(|row| bias_gelu(row, bias));
                if i == 0 {
                    work();
                } else {
                    scope.spawn(work);
                }
            }
        });
        Ok(())
    }
}

/// `row = gelu(row + bias)`, with GELU the exact one: `x/2 · (1 + erf(x/√2))`, evaluated as
/// `x/2 · erfc(-x/√2)`, which is the same function without the cancellation in `1 + erf` for
/// negative `x`.
#[multiversion(targets("x86_64+avx2+fma", "aarch64+neon"))]
fn bias_gelu(row: &mut [f32], bias: &[f32]) {
    if target_cfg_f!(target_feature = "fma") {
        bias_gelu_with::<true>(row, bias)
    } else {
        bias_gelu_with::<false>(row, bias)
    }
}

/// The loop of [`bias_gelu`], inlined into each of its clones.
#[inline(always)]
fn bias_gelu_with<const FMA: bool>(row: &mut [f32], bias: &[f32]) {
    for (y, b) in row.iter_mut().zip(bias) {
        let x = *y + b;
        *y = 0.5 * x * erfc::<FMA>(-x * std::f32::consts::FRAC_1_SQRT_2);
    }
}

/// `row = exp(row - max) / Σ exp(row - max)`. The maximum and the sum are kept in [`LANES`]
/// partial results (a single running sum would make each add wait for the previous one, and LLVM
/// does not reorder float adds by itself), so every pass vectorizes.
#[multiversion(targets("x86_64+avx2+fma", "aarch64+neon"))]
fn softmax(row: &mut [f32]) {
    let mut maxes = [f32::NEG_INFINITY; LANES];
    let mut chunks = row.chunks_exact(LANES);
    for chunk in chunks.by_ref() {
        maxes.iter_mut().zip(chunk).for_each(|(m, &y)| *m = if y > *m { y } else { *m });
    }
    let max = chunks.remainder().iter().chain(&maxes).copied().fold(f32::NEG_INFINITY, f32::max);
    if target_cfg_f!(target_feature = "fma") {
        row.iter_mut().for_each(|y| *y = exp::<true>(*y - max));
    } else {
        row.iter_mut().for_each(|y| *y = exp::<false>(*y - max));
    }
    let mut sums = [0f32; LANES];
    let mut chunks = row.chunks_exact(LANES);
    for chunk in chunks.by_ref() {
        sums.iter_mut().zip(chunk).for_each(|(s, &y)| *s += y);
    }
    let sum: f32 = sums.iter().chain(chunks.remainder()).sum();
    let scale = 1.0 / sum;
    row.iter_mut().for_each(|y| *y *= scale);
}

/// Partial results per reduction in [`softmax`]: one AVX register of `f32`.
const LANES: usize = 8;

/// The complementary error function, `erfc(u) = 1 - erf(u)`, with a relative error below 1.2e-7
/// everywhere: the Chebyshev fit of `erfcc` in Numerical Recipes in C (2nd ed., §6.2),
/// `t · exp(-u² + P(t))` with `t = 1 / (1 + |u|/2)`. Branch-free (a select for the sign), so
/// loops over it vectorize; it replaces libm's `erff`, which branches on the argument's range.
#[inline(always)]
fn erfc<const FMA: bool>(u: f32) -> f32 {
    const P: [f32; 10] = [
        -1.265_512_2,
        1.000_023_7,
        0.374_091_96,
        0.096_784_18,
        -0.186_288_06,
        0.278_868_07,
        -1.135_204,
        1.488_515_9,
        -0.822_152_2,
        0.170_872_77,
    ];
    let z = u.abs();
    let t = 1.0 / multiply_add::<FMA>(0.5, z, 1.0);
    let p = P.iter().rev().fold(0.0, |p, &c| multiply_add::<FMA>(p, t, c));
    let tail = t * exp::<FMA>(multiply_add::<FMA>(-z, z, p));
    if u >= 0.0 {
        tail
    } else {
        2.0 - tail
    }
}

/// `e^x` for `x <= 88` (below -87 it returns about 1e-38 rather than 0 or a subnormal), with a
/// relative error below 1e-7: Cephes' `expf`, `2^n · e^r` with `n` the nearest integer to
/// `x / ln 2` (found by adding and subtracting 1.5 · 2^23, which rounds to an integer),
/// `r = x - n ln 2` in two parts, and a degree-6 polynomial for `e^r`. Branch-free, so loops over
/// it vectorize.
#[inline(always)]
fn exp<const FMA: bool>(x: f32) -> f32 {
    const ROUND: f32 = 12_582_912.0; // 1.5 · 2^23
    let x = x.clamp(-87.0, 88.0);
    let shifted = multiply_add::<FMA>(x, std::f32::consts::LOG2_E, ROUND);
    let n = shifted - ROUND;
    let r = multiply_add::<FMA>(n, 2.121_944_4e-4, multiply_add::<FMA>(n, -0.693_359_4, x));
    let p = [1.987_569_1e-4, 1.398_199_9e-3, 8.333_452e-3, 4.166_579_6e-2, 1.666_666_5e-1, 5e-1]
        .iter()
        .fold(0.0, |p, &c| multiply_add::<FMA>(p, r, c));
    let e_r = multiply_add::<FMA>(p, r * r, r + 1.0);
    // 2^n from its exponent bits; n is in [-126, 127], so this is a normal float.
    let n = shifted.to_bits() as i32 - ROUND.to_bits() as i32;
    e_r * f32::from_bits(((n + 127) << 23) as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pseudo-random values in [-1, 1) (SplitMix64).
    fn values(seed: u64, count: usize) -> Vec<f32> {
        let mut state = seed;
        (0..count)
            .map(|_| {
                state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
                let mut z = state;
                z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
                z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
                ((z ^ (z >> 31)) >> 40) as f32 / (1u64 << 23) as f32 - 1.0
            })
            .collect()
    }

    #[test]
    fn exp_is_within_rounding_of_std() {
        for i in 0..=200_000 {
            let x = -87.0 + 87.0 * i as f32 / 200_000.0;
            let want = f64::from(x).exp();
            let relative = ((f64::from(exp::<false>(x)) - want) / want).abs();
            assert!(relative < 2e-7, "exp({x}): relative error {relative:e}");
            let relative = ((f64::from(exp::<true>(x)) - want) / want).abs();
            assert!(relative < 2e-7, "exp({x}) with FMA: relative error {relative:e}");
        }
    }

    #[test]
    fn erfc_matches_reference_values() {
        // erfc in double precision, to 16 significant digits (erfc(-u) = 2 - erfc(u)).
        let table = [
            (0.0, 1.0),
            (0.25, 0.723_673_609_831_763_3),
            (0.5, 0.479_500_122_186_953_5),
            (1.0, 0.157_299_207_050_285_1),
            (2.0, 4.677_734_981_047_266e-3),
            (3.0, 2.209_049_699_858_544e-5),
            (4.0, 1.541_725_790_028_002e-8),
            (-0.5, 1.520_499_877_813_046_5),
            (-2.0, 1.995_322_265_018_952_7),
        ];
        for (u, want) in table {
            for got in [erfc::<false>(u), erfc::<true>(u)] {
                let relative = ((f64::from(got) - want) / want).abs();
                assert!(relative < 3e-7, "erfc({u}) = {got}, want {want}: relative error {relative:e}");
            }
        }
    }

    #[test]
    fn softmax_rows_sum_to_one_and_match_f64() {
        for n in [1, 7, 8, 9, 33, 256] {
            let mut row: Vec<f32> = values(n as u64, n).iter().map(|x| 20.0 * x).collect();
            let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let exps: Vec<f64> = row.iter().map(|&x| f64::from(x - max).exp()).collect();
            let sum: f64 = exps.iter().sum();
            softmax(&mut row);
            for (got, e) in row.iter().zip(&exps) {
                assert!((f64::from(*got) - e / sum).abs() < 1e-6, "n {n}: {got} vs {}", e / sum);
            }
        }
    }

    /// The attention op against a plain f64 transcription of softmax(q kᵀ) v, per text and head.
    #[test]
    fn attention_matches_plain_computation() {
        let (heads, head_dim) = (3, 4);
        let hidden = heads * head_dim;
        let lengths = [3, 1, 6, 2];
        let tokens: usize = lengths.iter().sum();
        let qkv = values(7, tokens * 3 * hidden);
        let tensor = Tensor::from_vec(qkv.clone(), (tokens, 3 * hidden), &candle_core::Device::Cpu).unwrap();
        let context = tensor.apply_op1_no_bwd(&Attention { lengths: &lengths, heads, head_dim }).unwrap();
        let context: Vec<Vec<f32>> = context.to_vec2().unwrap();
        let at = |token: usize, column: usize| f64::from(qkv[token * 3 * hidden + column]);
        let mut start = 0;
        for n in lengths {
            for h in 0..heads {
                for (i, row) in context.iter().enumerate().skip(start).take(n) {
                    let scores: Vec<f64> = (start..start + n)
                        .map(|j| {
                            (0..head_dim).map(|c| at(i, h * head_dim + c) * at(j, hidden + h * head_dim + c)).sum()
                        })
                        .collect();
                    let max = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                    let weights: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
                    let total: f64 = weights.iter().sum();
                    for c in 0..head_dim {
                        let want: f64 = (start..start + n)
                            .zip(&weights)
                            .map(|(j, w)| w / total * at(j, 2 * hidden + h * head_dim + c))
                            .sum();
                        let got = f64::from(row[h * head_dim + c]);
                        assert!((got - want).abs() < 1e-6, "token {i} head {h} column {c}: {got} vs {want}");
                    }
                }
            }
            start += n;
        }
    }

    #[test]
    fn bias_steps_add_in_place() {
        let device = candle_core::Device::Cpu;
        let product = Tensor::from_vec(values(1, 12), (3, 4), &device).unwrap();
        let bias = Tensor::from_vec(values(2, 4), 4, &device).unwrap();
        let residual = Tensor::from_vec(values(3, 12), (3, 4), &device).unwrap();
        let want = product.broadcast_add(&bias).unwrap().add(&residual).unwrap().to_vec2::<f32>().unwrap();
        product.inplace_op3(&bias, &residual, &BiasResidual).unwrap();
        assert_eq!(product.to_vec2::<f32>().unwrap(), want);

        let product = Tensor::from_vec(values(4, 12), (3, 4), &device).unwrap();
        let want = product.broadcast_add(&bias).unwrap().gelu_erf().unwrap().to_vec2::<f32>().unwrap();
        product.inplace_op2(&bias, &BiasGelu).unwrap();
        for (got, want) in product.to_vec2::<f32>().unwrap().iter().flatten().zip(want.iter().flatten()) {
            assert!((got - want).abs() < 1e-6, "gelu: {got} vs candle's {want}");
        }
    }
}
