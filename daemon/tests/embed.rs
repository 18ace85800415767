//! Goal: the builtin all-MiniLM-L6-v2 embedder reproduces sentence-transformers. Method: compare
//! with the reference vector in shared/README.md, check batching changes nothing, check one
//! semantic ordering, and print throughput. The model is found at `VEXFS_MODEL_DIR` or where
//! scripts/setup.sh installs it; these tests fail (not skip) without it, since setup installs it.

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Instant;

use vexfs_daemon::embed::minilm::MiniLm;
use vexfs_daemon::embed::{from_spec, Embedder, MINILM_NAME, MODELS_DIR_DEFAULT, SPEC_DEFAULT};

fn model_dir() -> PathBuf {
    match std::env::var_os("VEXFS_MODEL_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(MODELS_DIR_DEFAULT).join(MINILM_NAME),
    }
}

fn model() -> &'static MiniLm {
    static MODEL: OnceLock<MiniLm> = OnceLock::new();
    MODEL.get_or_init(|| {
        let dir = model_dir();
        MiniLm::load(&dir).unwrap_or_else(|e| panic!("loading {}: {e}", dir.display()))
    })
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    // The vectors are unit length, so the dot product is the cosine.
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

#[test]
fn embed_hello_world_matches_sentence_transformers() {
    let reference = [-0.034478, 0.031023, 0.006735, 0.026109, -0.039362];
    let vectors = model().embed(&["hello world"]).unwrap();
    assert_eq!(vectors.len(), 1);
    assert_eq!(vectors[0].len(), 384);
    for (i, (got, want)) in vectors[0].iter().zip(reference).enumerate() {
        assert!((got - want).abs() < 1e-4, "element {i}: got {got}, want {want}");
    }
    let norm = vectors[0].iter().map(|x| x * x).sum::<f32>().sqrt();
    assert!((norm - 1.0).abs() < 1e-4, "norm {norm}");
}

#[test]
fn embed_batch_equals_single() {
    let texts = [
        "hello world",
        "A much longer sentence, so that the batch needs padding for the short ones.",
        "",
        "Key rotation procedure for signing certificates",
    ];
    let batch = model().embed(&texts).unwrap();
    for (text, batched) in texts.iter().zip(&batch) {
        let single = &model().embed(&[text]).unwrap()[0];
        let diff = single.iter().zip(batched).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
        assert!(diff < 1e-5, "{text:?}: batched and single differ by {diff}");
    }
}

#[test]
fn embed_semantic_sanity() {
    let question = "How do I rotate the signing keys?";
    let vectors = model()
        .embed(&[question, "Key rotation procedure for signing certificates", "Recipe for banana bread"])
        .unwrap();
    let related = cosine(&vectors[0], &vectors[1]);
    let unrelated = cosine(&vectors[0], &vectors[2]);
    assert!(related > unrelated, "related {related} <= unrelated {unrelated}");
}

#[test]
fn embed_long_text_is_truncated_not_refused() {
    let text = "word ".repeat(2000);
    let vectors = model().embed(&[&text]).unwrap();
    assert_eq!(vectors[0].len(), 384);
}

#[test]
fn embed_from_spec_missing_model_dir_is_clear() {
    let error = from_spec(SPEC_DEFAULT, std::path::Path::new("/nonexistent")).err().unwrap();
    let message = error.to_string();
    assert!(message.contains("/nonexistent/all-minilm-l6-v2"), "{message}");
    assert!(message.contains("run scripts/setup.sh"), "{message}");
}

#[test]
fn embed_throughput() {
    // 256 sentences of about 40 words, varied so the tokenizer does real work.
    let words = ["vector", "index", "filesystem", "shard", "query", "journal", "commit", "latency"];
    let texts: Vec<String> =
        (0..256).map(|i| (0..40).map(|j| words[(i * 7 + j * 3) % words.len()]).collect::<Vec<_>>().join(" ")).collect();
    let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
    let model = model();
    model.embed(&texts[..32]).unwrap(); // warm up
    let started = Instant::now();
    let vectors = model.embed(&texts).unwrap();
    let seconds = started.elapsed().as_secs_f64();
    assert_eq!(vectors.len(), texts.len());
    println!(
        "embed_throughput: {} texts of 40 words in {seconds:.2} s = {:.1} texts/s ({} threads available)",
        texts.len(),
        texts.len() as f64 / seconds,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
}
