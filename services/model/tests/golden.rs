//! Golden test: Candle's embeddings against an independent float64 numpy
//! implementation (`scripts/model/reference.py`, fixture written by
//! `scripts/model/make_golden.py`) over texts chosen to break things:
//! subjects, bodies past 256 tokens, empty text, HTML, URLs, emoji, CJK,
//! accents. Needs the model files (`scripts/fetch-model.sh`).

use liveseg_model::{Embedder, cosine};
use serde::Deserialize;
use std::path::PathBuf;
use std::sync::OnceLock;

#[derive(Deserialize)]
struct Golden {
    name: String,
    text: String,
    tokens: usize,
    ids: Vec<u32>,
    embedding: Vec<f64>,
}

fn model_dir() -> PathBuf {
    match std::env::var_os("LIVESEG_MODEL_DIR") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models/all-MiniLM-L6-v2"),
    }
}

fn embedder() -> &'static Embedder {
    static E: OnceLock<Embedder> = OnceLock::new();
    E.get_or_init(|| Embedder::load(&model_dir()).unwrap_or_else(|e| panic!("{e}")))
}

fn golden() -> Vec<Golden> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/golden.json");
    let text = std::fs::read_to_string(&path).expect("golden fixture");
    serde_json::from_str(&text).expect("golden fixture parses")
}

#[test]
fn tokenization_matches_the_reference() {
    let g = golden();
    let texts: Vec<&str> = g.iter().map(|x| x.text.as_str()).collect();
    let tokens = embedder().tokenize(&texts).expect("tokenize");
    assert!(
        g.iter().any(|x| x.tokens == 256),
        "the fixture exercises truncation"
    );
    for (x, t) in g.iter().zip(&tokens) {
        assert_eq!(t.ids, x.ids, "{}: token ids", x.name);
        assert_eq!(t.ids.len(), x.tokens, "{}", x.name);
    }
}

#[test]
fn embeddings_match_the_float64_reference() {
    let g = golden();
    let texts: Vec<&str> = g.iter().map(|x| x.text.as_str()).collect();
    let got = embedder().embed(&texts).expect("embed");
    assert_eq!(got.len(), g.len());
    let mut worst = (1.0f64, 0.0f64);
    for (x, v) in g.iter().zip(&got) {
        assert_eq!(v.len(), 384, "{}", x.name);
        assert!(v.iter().all(|f| f.is_finite()), "{}: NaN or inf", x.name);
        let norm: f64 = v.iter().map(|f| f64::from(*f).powi(2)).sum::<f64>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5, "{}: norm {norm}", x.name);
        let reference: Vec<f32> = x.embedding.iter().map(|f| *f as f32).collect();
        let cos = f64::from(cosine(v, &reference));
        let max_abs = v
            .iter()
            .zip(&x.embedding)
            .map(|(a, b)| (f64::from(*a) - b).abs())
            .fold(0.0, f64::max);
        assert!(cos >= 0.99999, "{}: cosine {cos}", x.name);
        assert!(max_abs <= 1e-4, "{}: max abs diff {max_abs}", x.name);
        worst = (worst.0.min(cos), worst.1.max(max_abs));
    }
    eprintln!(
        "golden: {} texts, min cosine {:.9}, max abs diff {:.2e}",
        g.len(),
        worst.0,
        worst.1
    );
}

#[test]
fn batch_composition_does_not_change_a_result() {
    let g = golden();
    let texts: Vec<&str> = g.iter().map(|x| x.text.as_str()).collect();
    let together = embedder().embed(&texts).expect("embed all");
    // Alone, and in a reversed batch of a different size.
    let reversed: Vec<&str> = texts.iter().rev().take(17).copied().collect();
    let reversed_out = embedder().embed(&reversed).expect("embed reversed");
    for (i, text) in texts.iter().enumerate() {
        let alone = embedder().embed(&[text]).expect("embed one");
        assert_eq!(
            alone[0], together[i],
            "{}: alone vs in the full batch",
            g[i].name
        );
    }
    for (k, v) in reversed_out.iter().enumerate() {
        let i = texts.len() - 1 - k;
        assert_eq!(*v, together[i], "{}: reversed batch", g[i].name);
    }
}

/// The id stored with every vector names the model, the precision and the
/// files: the same files give the same id, each int8 form its own.
#[test]
fn the_model_id_names_precision_and_files() {
    let id = embedder().model_id();
    assert!(
        id.starts_with("sentence-transformers/all-MiniLM-L6-v2 f32 sha256:"),
        "{id}"
    );
    let hex = id.rsplit(':').next().unwrap_or_default();
    assert!(
        hex.len() == 12 && hex.chars().all(|c| c.is_ascii_hexdigit()),
        "{id}"
    );
    let again = Embedder::load(&model_dir()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(again.model_id(), id);
    use liveseg_model::precision::Precision;
    // "int8" keeps naming Candle's Q8_0 vectors, as in ids stored before
    // the int8 kernel; that kernel's vectors carry their own label.
    for (precision, label) in [
        (Precision::Q8_0, " int8 "),
        (Precision::Int8, " int8-rows "),
    ] {
        let other = Embedder::load_with(&model_dir(), precision).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            other.model_id(),
            id.replace(" f32 ", label),
            "same files, {precision}"
        );
    }
}
