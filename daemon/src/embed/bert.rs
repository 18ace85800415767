//! A BERT encoder, the architecture of all-MiniLM-L6-v2, on candle's tensors and layers.
//!
//! Written here rather than taken from `candle-transformers`: that crate carries hundreds of
//! model families and was the longest single step of a cold release build (about 4.5 minutes on
//! the CI machine, on the critical path), for one encoder of a hundred lines. The weight names are
//! those of Hugging Face's `BertModel` checkpoints (`embeddings.*`, `encoder.layer.N.*`).
//!
//! Inference only: dropout is the identity, and the pooler is not loaded.

use candle_core::{DType, Module, Result, Tensor};
use candle_nn::{embedding, layer_norm, linear, Embedding, LayerNorm, Linear, VarBuilder};

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

struct Layer {
    query: Linear,
    key: Linear,
    value: Linear,
    attention_out: Linear,
    attention_norm: LayerNorm,
    intermediate: Linear,
    out: Linear,
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
        let e = vb.pp("embeddings");
        let layers = (0..c.num_hidden_layers)
            .map(|n| {
                let l = vb.pp(format!("encoder.layer.{n}"));
                let attention = l.pp("attention");
                Ok(Layer {
                    query: linear(h, h, attention.pp("self.query"))?,
                    key: linear(h, h, attention.pp("self.key"))?,
                    value: linear(h, h, attention.pp("self.value"))?,
                    attention_out: linear(h, h, attention.pp("output.dense"))?,
                    attention_norm: layer_norm(h, c.layer_norm_eps, attention.pp("output.LayerNorm"))?,
                    intermediate: linear(h, c.intermediate_size, l.pp("intermediate.dense"))?,
                    out: linear(c.intermediate_size, h, l.pp("output.dense"))?,
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
            head_dim: h / c.num_attention_heads,
            max_positions: c.max_position_embeddings,
        })
    }

    /// The last hidden states (batch, tokens, hidden) of token ids `ids` (batch, tokens), with
    /// token types `type_ids` and attention `mask` (1 for real tokens, 0 for padding; u32).
    pub fn forward(&self, ids: &Tensor, type_ids: &Tensor, mask: &Tensor) -> Result<Tensor> {
        let (_, tokens) = ids.dims2()?;
        if tokens > self.max_positions {
            candle_core::bail!("{tokens} tokens: the model has {} positions", self.max_positions);
        }
        let positions = Tensor::arange(0u32, tokens as u32, ids.device())?.unsqueeze(0)?;
        let x = self.words.forward(ids)?.add(&self.token_types.forward(type_ids)?)?;
        let x = x.broadcast_add(&self.positions.forward(&positions)?)?;
        let mut x = self.norm.forward(&x)?;
        // Padding gets the most negative score before the softmax, so no weight: (batch, 1, 1, tokens).
        let bias = ((mask.to_dtype(DType::F32)? - 1.0)?.neg()? * f64::from(f32::MIN))?.unsqueeze(1)?.unsqueeze(1)?;
        for layer in &self.layers {
            x = self.layer(layer, &x, &bias)?;
        }
        Ok(x)
    }

    fn layer(&self, l: &Layer, x: &Tensor, bias: &Tensor) -> Result<Tensor> {
        let (batch, tokens, hidden) = x.dims3()?;
        let heads = |t: Tensor| -> Result<Tensor> {
            t.reshape((batch, tokens, self.heads, self.head_dim))?.transpose(1, 2)?.contiguous()
        };
        let q = heads(l.query.forward(x)?)?;
        let k = heads(l.key.forward(x)?)?;
        let v = heads(l.value.forward(x)?)?;
        let scores = (q.matmul(&k.t()?)? / (self.head_dim as f64).sqrt())?.broadcast_add(bias)?;
        let weights = candle_nn::ops::softmax_last_dim(&scores)?;
        let context = weights.matmul(&v)?.transpose(1, 2)?.reshape((batch, tokens, hidden))?;
        let x = l.attention_norm.forward(&l.attention_out.forward(&context)?.add(x)?)?;
        let inner = l.intermediate.forward(&x)?.gelu_erf()?;
        l.out_norm.forward(&l.out.forward(&inner)?.add(&x)?)
    }
}
