//! Side-by-side embedding benchmark: liveseg's Candle encoder in f32 and
//! int8 against ONNX Runtime f32 and int8 (the PyPI `onnxruntime`, through
//! `scripts/model/ort_bench.py`) on the same weights and texts
//! (`fixtures/bench_texts.json`), in one run, rounds interleaved (Candle
//! first on even rounds, ORT first on odd). Tokenization is inside the
//! timed region on both sides.
//!
//! ```sh
//! scripts/fetch-model.sh && scripts/model/setup-python.sh
//! target/py-model/bin/python scripts/model/build_onnx.py models/all-MiniLM-L6-v2
//! cargo run --release -p liveseg-model --example embed_bench -- --seconds 2 --rounds 2
//! ```
//!
//! `--buckets short,medium` and `--batches 1,8` pick cells;
//! `--precisions f32,int8,q8_0` picks the Candle sides (default f32,int8;
//! q8_0 is Candle's own quantized matmul, slow, for comparison);
//! `--onnx-dir DIR` reads the ONNX graphs from DIR instead of the model
//! directory; `--no-ort` times Candle alone (for quick iterations, not for
//! recorded figures).

use liveseg_model::Embedder;
use liveseg_model::precision::Precision;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

type Cell = (String, String, usize);

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn arg(name: &str, default: &str) -> String {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
        .unwrap_or_else(|| default.to_string())
}

fn quantile(sorted: &[Duration], q: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted.get(i).map_or(0.0, |d| d.as_secs_f64() * 1e3)
}

/// texts/s, p50 ms, p99 ms of one cell.
fn candle_cell(e: &Embedder, texts: &[String], batch: usize, secs: f64) -> (f64, f64, f64) {
    let mut i = 0;
    let mut next = |n: usize| -> Vec<&str> {
        (0..n)
            .map(|_| {
                i = (i + 1) % texts.len();
                texts[i].as_str()
            })
            .collect()
    };
    let warm = Instant::now();
    while warm.elapsed().as_secs_f64() < 0.5 {
        e.embed(&next(batch)).expect("embed");
    }
    let mut lat = Vec::new();
    let start = Instant::now();
    while start.elapsed().as_secs_f64() < secs {
        let b = next(batch);
        let t = Instant::now();
        e.embed(&b).expect("embed");
        lat.push(t.elapsed());
    }
    let total = start.elapsed().as_secs_f64();
    lat.sort();
    (
        (lat.len() * batch) as f64 / total,
        quantile(&lat, 0.5),
        quantile(&lat, 0.99),
    )
}

fn ort_round(secs: f64, threads: &str, onnx_dir: &str, cells: [&str; 2]) -> Vec<(Cell, Stats)> {
    let python = repo().join("target/py-model/bin/python");
    let out = Command::new(python)
        .arg(repo().join("scripts/model/ort_bench.py"))
        .args(["--seconds", &secs.to_string(), "--threads", threads])
        .args(["--model-dir", onnx_dir])
        .args(["--buckets", cells[0], "--batches", cells[1]])
        .output()
        .expect("running scripts/model/ort_bench.py (run scripts/model/setup-python.sh)");
    assert!(
        out.status.success(),
        "ort_bench.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .map(|v| {
            let cell = (
                format!("ort-{}", v["backend"].as_str().unwrap_or("?")),
                v["bucket"].as_str().unwrap_or("?").to_string(),
                v["batch"].as_u64().unwrap_or(0) as usize,
            );
            let f = |k: &str| v[k].as_f64().unwrap_or(0.0);
            (cell, (f("texts_per_s"), f("p50_ms"), f("p99_ms")))
        })
        .collect()
}

type Stats = (f64, f64, f64);

fn median(v: &[Stats], f: fn(&Stats) -> f64) -> f64 {
    let mut xs: Vec<f64> = v.iter().map(f).collect();
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

/// "texts/s (p50 / p99)" of a cell, and its median texts/s.
fn show(results: &BTreeMap<Cell, Vec<Stats>>, cell: &Cell) -> (String, f64) {
    match results.get(cell) {
        Some(v) => {
            let t = median(v, |x| x.0);
            let text = format!(
                "{t:.1} ({:.1} / {:.1})",
                median(v, |x| x.1),
                median(v, |x| x.2)
            );
            (text, t)
        }
        None => ("-".to_string(), f64::NAN),
    }
}

fn main() {
    let secs: f64 = arg("--seconds", "2").parse().expect("--seconds");
    let rounds: usize = arg("--rounds", "2").parse().expect("--rounds");
    let threads = arg("--threads", "2");
    let no_ort = std::env::args().any(|a| a == "--no-ort");
    let dir = repo().join("models/all-MiniLM-L6-v2");
    let onnx_dir = arg("--onnx-dir", &dir.display().to_string());
    let precisions = arg("--precisions", "f32,int8");
    let embedders: Vec<(String, Embedder)> = precisions
        .split(',')
        .map(|p| p.parse::<Precision>().expect("--precisions"))
        .map(|p| {
            let e = Embedder::load_with(&dir, p).unwrap_or_else(|err| panic!("{err}"));
            (format!("candle-{p}"), e)
        })
        .collect();
    let texts: Value = serde_json::from_str(
        &std::fs::read_to_string(repo().join("services/model/fixtures/bench_texts.json"))
            .expect("bench texts"),
    )
    .expect("bench texts parse");
    let bucket_arg = arg("--buckets", "short,medium,long");
    let buckets: Vec<&str> = bucket_arg.split(',').collect();
    let batch_arg = arg("--batches", "1,8,32");
    let batches: Vec<usize> = batch_arg
        .split(',')
        .map(|b| b.parse().expect("--batches"))
        .collect();
    let mut results: BTreeMap<Cell, Vec<Stats>> = BTreeMap::new();
    for round in 0..rounds {
        let candle_first = round % 2 == 0;
        for step in 0..2 {
            if (step == 0) == candle_first {
                for &b in &buckets {
                    let list: Vec<String> = texts[b]
                        .as_array()
                        .expect("bucket")
                        .iter()
                        .filter_map(|t| t.as_str().map(String::from))
                        .collect();
                    for &n in &batches {
                        for (name, e) in &embedders {
                            let r = candle_cell(e, &list, n, secs);
                            eprintln!("round {round} {name} {b} bs{n}: {:.1} texts/s", r.0);
                            results
                                .entry((name.clone(), b.into(), n))
                                .or_default()
                                .push(r);
                        }
                    }
                }
            } else if !no_ort {
                for (cell, r) in ort_round(secs, &threads, &onnx_dir, [&bucket_arg, &batch_arg]) {
                    eprintln!(
                        "round {round} {} {} bs{}: {:.1} texts/s",
                        cell.0, cell.1, cell.2, r.0
                    );
                    results.entry(cell).or_default().push(r);
                }
            }
        }
    }
    let q8 = embedders.iter().any(|(name, _)| name == "candle-q8_0");
    let (q8_head, q8_rule) = if q8 {
        (" candle q8_0 | q8_0 / ORT int8 |", "---|---|")
    } else {
        ("", "")
    };
    println!(
        "| bucket | batch | candle f32 texts/s (p50 / p99 ms) | ORT f32 | candle / ORT f32 \
         | candle int8 | ORT int8 | candle / ORT int8 |{q8_head}"
    );
    println!("|---|---|---|---|---|---|---|---|{q8_rule}");
    for &b in &buckets {
        for &n in &batches {
            let cell = |k: &str| (k.to_string(), b.to_string(), n);
            let (cf, cft) = show(&results, &cell("candle-f32"));
            let (of, oft) = show(&results, &cell("ort-f32"));
            let (cq, cqt) = show(&results, &cell("candle-int8"));
            let (oq, oqt) = show(&results, &cell("ort-int8"));
            let q8_cells = if q8 {
                let (c8, c8t) = show(&results, &cell("candle-q8_0"));
                format!(" {c8} | {:.2} |", c8t / oqt)
            } else {
                String::new()
            };
            println!(
                "| {b} | {n} | {cf} | {of} | {:.2} | {cq} | {oq} | {:.2} |{q8_cells}",
                cft / oft,
                cqt / oqt
            );
        }
    }
}
