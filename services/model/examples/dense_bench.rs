//! One dense product of the encoder's shapes, f32 against int8, in one
//! process: separates the kernels from the rest of a forward pass (and
//! from the run-to-run drift of whole-model figures on a shared VM, since
//! the two sides alternate every few milliseconds).
//!
//! `cargo run --release -p liveseg-model --example dense_bench -- [--seconds 2]`
//!
//! Prints, per shape (rows x inputs -> outputs), multiply-adds per second
//! of each precision and int8 / f32.

use liveseg_model::dense::Dense;
use liveseg_model::precision::Precision;
use std::time::{Duration, Instant};

/// Runs `f` in slices of about 20 ms until `budget` is spent; the calls
/// made and the time they took.
fn timed(budget: Duration, mut f: impl FnMut()) -> (u64, Duration) {
    let (mut calls, mut spent) = (0u64, Duration::ZERO);
    while spent < budget {
        let start = Instant::now();
        while start.elapsed() < Duration::from_millis(20) {
            f();
            calls += 1;
        }
        spent += start.elapsed();
    }
    (calls, spent)
}

fn main() {
    let seconds: f64 = std::env::args()
        .skip_while(|a| a != "--seconds")
        .nth(1)
        .map_or(2.0, |s| s.parse().expect("--seconds takes a number"));
    // (rows, inputs, outputs): a short text, a medium one and a batch of 8
    // long ones, through the FFN's up projection and down projection.
    let shapes = [
        (15, 384, 1536),
        (70, 384, 1536),
        (70, 1536, 384),
        (2000, 384, 1536),
    ];
    println!("| rows x in -> out | f32 G mul-add/s | int8 G mul-add/s | int8 / f32 |");
    println!("|---|---|---|---|");
    for (rows, inputs, outputs) in shapes {
        let w: Vec<f32> = (0..inputs * outputs)
            .map(|i| ((i * 7919) % 1000) as f32 / 5000.0 - 0.1)
            .collect();
        let x: Vec<f32> = (0..rows * inputs)
            .map(|i| ((i * 104_729) % 1000) as f32 / 500.0 - 1.0)
            .collect();
        let mut dst = vec![0.0f32; rows * outputs];
        let layers: Vec<Dense> = [Precision::F32, Precision::Int8]
            .into_iter()
            .map(|p| Dense::new(&w, vec![0.0; outputs], outputs, inputs, p).expect("dense"))
            .collect();
        let mut rates = [0.0f64; 2];
        // Alternate the two sides in slices so that drift hits both.
        let slice = Duration::from_secs_f64(seconds / 10.0);
        let mut totals = [(0u64, Duration::ZERO); 2];
        for _ in 0..10 {
            for (i, layer) in layers.iter().enumerate() {
                let (calls, spent) = timed(slice, || {
                    layer.product(&x, rows, &mut dst).expect("product");
                });
                totals[i].0 += calls;
                totals[i].1 += spent;
            }
        }
        for (rate, (calls, spent)) in rates.iter_mut().zip(totals) {
            *rate = (calls * (rows * inputs * outputs) as u64) as f64 / spent.as_secs_f64() / 1e9;
        }
        println!(
            "| {rows} x {inputs} -> {outputs} | {:.1} | {:.1} | {:.2} |",
            rates[0],
            rates[1],
            rates[1] / rates[0]
        );
    }
}
