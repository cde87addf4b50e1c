//! Times `train_propensity` and batch scoring on 1M synthetic rows of 40
//! features (the size `liveseg model train` must handle in well under a
//! minute on a 2-core machine).
//!
//!   cargo run --release -p liveseg-learn --example train_bench [rows] [--dump FILE]
//!
//! `--dump FILE` also writes the rows for the scikit-learn peer
//! (`scripts/bench-train-peer.sh` runs both).

use std::time::Instant;

use liveseg_learn::{CalibrationMethod, Dataset, TrainOptions, train_propensity};
use rand::{Rng, SeedableRng};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let dump = args
        .iter()
        .position(|a| a == "--dump")
        .and_then(|i| args.get(i + 1))
        .cloned();
    let rows: usize = args
        .first()
        .filter(|a| !a.starts_with("--"))
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(1_000_000);
    let d = 40;
    let mut rng = rand::rngs::StdRng::seed_from_u64(42);
    let weights: Vec<f64> = (0..d)
        .map(|j| {
            if j % 4 == 0 {
                0.0
            } else {
                rng.random_range(-1.0..1.0)
            }
        })
        .collect();
    let started = Instant::now();
    let mut data = Dataset::new((0..d).map(|j| format!("f{j}")).collect());
    let mut row = vec![0f32; d];
    let mut labels = Vec::with_capacity(rows);
    for i in 0..rows {
        let mut z = -3.0;
        for (j, x) in row.iter_mut().enumerate() {
            // Mixed scales and offsets, as raw counts and recencies are.
            let v: f64 = rng.random_range(-1.7..1.7) + rng.random_range(-1.7..1.7);
            *x = (v * (1 + j % 5) as f64 + (j % 3) as f64 * 10.0) as f32;
            z += weights[j] * v;
        }
        let y = rng.random::<f64>() < 1.0 / (1.0 + (-z).exp());
        data.push(&row, y, i as i64)?;
        labels.push(u8::from(y));
    }
    if let Some(path) = &dump {
        // u64 rows, u64 features, f32 rows (row-major), u8 labels; little-endian.
        let mut bytes = Vec::with_capacity(16 + rows * d * 4 + rows);
        bytes.extend((rows as u64).to_le_bytes());
        bytes.extend((d as u64).to_le_bytes());
        for i in 0..rows {
            for v in data.row(i) {
                bytes.extend(v.to_le_bytes());
            }
        }
        bytes.extend(&labels);
        std::fs::write(path, bytes)?;
    }
    println!(
        "generated {rows} rows x {d} features ({} positives) in {:.2}s",
        data.positives(),
        started.elapsed().as_secs_f64()
    );

    let started = Instant::now();
    let a = train_propensity(
        &data,
        "bench",
        "synthetic",
        &TrainOptions::default(),
        CalibrationMethod::Platt,
        (0.7, 0.15),
    )?;
    let train_s = started.elapsed().as_secs_f64();
    println!(
        "train_propensity: {train_s:.2}s ({}; {} train rows); validation AUC {:.4} ECE {:.4}",
        a.meta.trainer, a.meta.rows.train, a.meta.validation.auc, a.meta.validation.ece
    );

    let started = Instant::now();
    let p = a.probabilities(&data)?;
    let score_s = started.elapsed().as_secs_f64();
    println!(
        "batch scoring (logit + calibration): {} rows in {score_s:.3}s = {:.1}M rows/s",
        p.len(),
        p.len() as f64 / score_s / 1e6
    );

    let started = Instant::now();
    let mut sum = 0.0f64;
    for i in 0..rows {
        sum += a.score(data.row(i)).probability as f64;
    }
    let single_s = started.elapsed().as_secs_f64();
    println!(
        "single-row score with contributions: {:.2}M rows/s (mean p {:.4})",
        rows as f64 / single_s / 1e6,
        sum / rows as f64
    );
    Ok(())
}
