//! How far the int8 encoders (liveseg's kernel, Candle's Q8_0) stray from
//! the exact f32 one, measured where it matters for retrieval: per-text
//! cosine between the two embeddings, and whether each text's nearest
//! neighbours stay the same.
//! Texts: the golden edge cases plus the first `PER_BUCKET` benchmark texts
//! of each length (88 in all; the whole corpus takes minutes in a debug
//! build).
//! The thresholds sit just under what was measured (BENCHMARKS.md), so a
//! regression in the quantized path fails here. Needs the model files.

use liveseg_model::precision::Precision;
use liveseg_model::{Embedder, cosine};
use serde_json::Value;
use std::path::PathBuf;

/// Neighbours compared per text.
const TOP_K: usize = 10;
/// Benchmark texts taken from each of the short, medium and long buckets.
const PER_BUCKET: usize = 16;

fn fixture(name: &str) -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(name);
    serde_json::from_str(&std::fs::read_to_string(path).expect("fixture")).expect("fixture parses")
}

fn texts() -> Vec<String> {
    let mut out: Vec<String> = fixture("golden.json")
        .as_array()
        .expect("golden list")
        .iter()
        .map(|g| g["text"].as_str().expect("golden text").to_string())
        .collect();
    let bench = fixture("bench_texts.json");
    for bucket in ["short", "medium", "long"] {
        out.extend(
            bench[bucket]
                .as_array()
                .expect("bucket")
                .iter()
                .take(PER_BUCKET)
                .map(|t| t.as_str().expect("bench text").to_string()),
        );
    }
    out
}

fn model_dir() -> PathBuf {
    match std::env::var_os("LIVESEG_MODEL_DIR") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models/all-MiniLM-L6-v2"),
    }
}

fn embed_all(precision: Precision, texts: &[&str]) -> Vec<Vec<f32>> {
    let e = Embedder::load_with(&model_dir(), precision).unwrap_or_else(|e| panic!("{e}"));
    texts
        .chunks(16)
        .flat_map(|c| e.embed(c).expect("embed"))
        .collect()
}

/// Indices of the `TOP_K` texts most similar to text `i` (itself excluded).
fn neighbours(vs: &[Vec<f32>], i: usize) -> Vec<usize> {
    let mut sims: Vec<(f32, usize)> = vs
        .iter()
        .enumerate()
        .filter(|(j, _)| *j != i)
        .map(|(j, v)| (cosine(&vs[i], v), j))
        .collect();
    sims.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    sims.iter().take(TOP_K).map(|s| s.1).collect()
}

/// The least a precision must measure against f32; the same fields as
/// `Measured`.
type Floors = Measured;

/// How one quantized precision compares with f32 over the texts.
struct Measured {
    min_cosine: f64,
    mean_cosine: f64,
    mean_overlap: f64,
    min_overlap: f64,
}

fn measure(precision: Precision, texts: &[&str], exact: &[Vec<f32>]) -> Measured {
    let quant = embed_all(precision, texts);
    assert!(quant.iter().flatten().all(|v| v.is_finite()), "{precision}");
    let cosines: Vec<f64> = exact
        .iter()
        .zip(&quant)
        .map(|(a, b)| f64::from(cosine(a, b)))
        .collect();
    let min_cosine = cosines.iter().copied().fold(1.0, f64::min);
    let mean_cosine = cosines.iter().sum::<f64>() / cosines.len() as f64;

    let overlaps: Vec<f64> = (0..texts.len())
        .map(|i| {
            let a = neighbours(exact, i);
            let b = neighbours(&quant, i);
            a.iter().filter(|j| b.contains(j)).count() as f64 / TOP_K as f64
        })
        .collect();
    let min_overlap = overlaps.iter().copied().fold(1.0, f64::min);
    let mean_overlap = overlaps.iter().sum::<f64>() / overlaps.len() as f64;
    let same_first = (0..texts.len())
        .filter(|i| neighbours(exact, *i).first() == neighbours(&quant, *i).first())
        .count();
    eprintln!(
        "{precision} vs f32 over {} texts: cosine min {min_cosine:.5} mean {mean_cosine:.5}; \
         top-{TOP_K} overlap min {min_overlap:.2} mean {mean_overlap:.3}; \
         same nearest neighbour {same_first}/{}",
        texts.len(),
        texts.len()
    );
    Measured {
        min_cosine,
        mean_cosine,
        mean_overlap,
        min_overlap,
    }
}

fn check(precision: Precision, floor: Floors) {
    let owned = texts();
    let texts: Vec<&str> = owned.iter().map(String::as_str).collect();
    let exact = embed_all(Precision::F32, &texts);
    let got = measure(precision, &texts, &exact);
    assert!(
        got.min_cosine >= floor.min_cosine,
        "{precision}: min cosine {}",
        got.min_cosine
    );
    assert!(
        got.mean_cosine >= floor.mean_cosine,
        "{precision}: mean cosine {}",
        got.mean_cosine
    );
    assert!(
        got.mean_overlap >= floor.mean_overlap,
        "{precision}: mean top-{TOP_K} overlap {}",
        got.mean_overlap
    );
    assert!(
        got.min_overlap >= floor.min_overlap,
        "{precision}: min top-{TOP_K} overlap {}",
        got.min_overlap
    );
}

/// Candle's Q8_0; floors just under the measured figures (cosine min
/// 0.9985 / mean 0.9995, top-10 overlap min 0.9 / mean 0.989; BENCHMARKS.md).
#[test]
fn q8_0_keeps_embeddings_and_neighbours_close_to_f32() {
    check(
        Precision::Q8_0,
        Floors {
            min_cosine: 0.997,
            mean_cosine: 0.999,
            mean_overlap: 0.97,
            min_overlap: 0.8,
        },
    );
}

/// liveseg's int8 kernel (per-row inputs, per-channel weights); floors just
/// under the measured figures (cosine min 0.9935 / mean 0.9985, top-10
/// overlap min 0.8 / mean 0.965; BENCHMARKS.md).
#[test]
fn int8_keeps_embeddings_and_neighbours_close_to_f32() {
    check(
        Precision::Int8,
        Floors {
            min_cosine: 0.992,
            mean_cosine: 0.998,
            mean_overlap: 0.95,
            min_overlap: 0.7,
        },
    );
}
