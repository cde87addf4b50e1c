//! Behaviour of exact top-N search: agreement with a naive full sort,
//! exclusion, shard merging, lookalike ranking and NaN safety.

use liveseg_learn::neighbours::{
    Neighbour, NeighbourError, SeedProfile, SeedScoring, Similarity, TopN, rank_lookalikes,
    scan_into, top_n,
};
use std::time::Instant;

struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn uniform(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }
    /// A small integer in -3..=3: dot products and distances of such rows
    /// are exact in f32, so the naive f64 reference agrees bit for bit and
    /// ties are frequent.
    fn small_int(&mut self) -> f32 {
        (self.next_u64() % 7) as f32 - 3.0
    }
}

/// Rows drawn from a pool of 25 distinct rows, so duplicates (exact ties)
/// are common for every similarity.
fn tie_heavy_rows(n: usize, dim: usize, seed: u64) -> Vec<f32> {
    let mut rng = Rng(seed);
    let pool: Vec<f32> = (0..25 * dim).map(|_| rng.small_int()).collect();
    (0..n)
        .flat_map(|_| {
            let p = (rng.next_u64() % 25) as usize;
            pool[p * dim..(p + 1) * dim].to_vec()
        })
        .collect()
}

/// The reference: score every row in f64, sort all by (score desc, index asc).
fn naive(
    query: &[f32],
    rows: &[f32],
    dim: usize,
    n: usize,
    sim: Similarity,
    exclude: impl Fn(usize) -> bool,
) -> Vec<(usize, f64)> {
    let q: Vec<f64> = query.iter().map(|v| f64::from(*v)).collect();
    let qn = q.iter().map(|v| v * v).sum::<f64>().sqrt();
    let mut all: Vec<(usize, f64)> = rows
        .chunks(dim)
        .enumerate()
        .filter(|(i, _)| !exclude(*i))
        .map(|(i, r)| {
            let r: Vec<f64> = r.iter().map(|v| f64::from(*v)).collect();
            let d: f64 = q.iter().zip(&r).map(|(a, b)| a * b).sum();
            let rn = r.iter().map(|v| v * v).sum::<f64>().sqrt();
            let s = match sim {
                Similarity::Dot => d,
                Similarity::Cosine => d / (qn * rn),
                Similarity::NegEuclidean => -q
                    .iter()
                    .zip(&r)
                    .map(|(a, b)| (a - b).powi(2))
                    .sum::<f64>()
                    .sqrt(),
            };
            (i, s)
        })
        .filter(|(_, s)| s.is_finite())
        .collect();
    // Only finite scores remain; -0.0 and 0.0 tie, as in the library.
    all.sort_by(|a, b| {
        b.1.partial_cmp(&a.1)
            .unwrap_or(std::cmp::Ordering::Equal)
            .then(a.0.cmp(&b.0))
    });
    all.truncate(n);
    all
}

fn assert_matches(got: &[Neighbour], want: &[(usize, f64)], ctx: &str) {
    assert_eq!(got.len(), want.len(), "{ctx}");
    for (g, w) in got.iter().zip(want) {
        assert_eq!(g.index, w.0, "{ctx}: got {got:?}");
        assert!((f64::from(g.score) - w.1).abs() < 1e-5, "{ctx}");
    }
}

const SIMS: [Similarity; 3] = [
    Similarity::Cosine,
    Similarity::Dot,
    Similarity::NegEuclidean,
];

#[test]
fn top_n_equals_a_naive_full_sort_with_ties() {
    let (dim, rows_n) = (8, 300);
    let rows = tie_heavy_rows(rows_n, dim, 1);
    let mut rng = Rng(2);
    for trial in 0..5 {
        let query: Vec<f32> = (0..dim).map(|_| rng.small_int()).collect();
        if query.iter().all(|v| *v == 0.0) {
            continue;
        }
        for sim in SIMS {
            for n in [0, 1, 2, 7, 50, rows_n, rows_n + 10] {
                let got = top_n(&query, &rows, dim, n, sim, |_| false).unwrap();
                let ctx = format!("trial {trial} {sim:?} n {n}");
                assert_matches(&got, &naive(&query, &rows, dim, n, sim, |_| false), &ctx);
            }
        }
    }
}

#[test]
fn top_n_equals_naive_on_continuous_random_data() {
    let mut rng = Rng(5);
    let dim = 19; // not a multiple of 8: exercises the tail of the dot product
    let rows: Vec<f32> = (0..2000 * dim).map(|_| rng.uniform() - 0.5).collect();
    let query: Vec<f32> = (0..dim).map(|_| rng.uniform() - 0.5).collect();
    for sim in SIMS {
        for n in [1, 10, 100] {
            let got = top_n(&query, &rows, dim, n, sim, |_| false).unwrap();
            assert_matches(
                &got,
                &naive(&query, &rows, dim, n, sim, |_| false),
                &format!("{sim:?} {n}"),
            );
        }
    }
}

#[test]
fn excluded_rows_are_never_returned() {
    let rows = tie_heavy_rows(200, 8, 3);
    let query = vec![1.0, 2.0, 0.0, -1.0, 3.0, 0.0, 1.0, 1.0];
    let odd = |i: usize| i % 2 == 1;
    for sim in SIMS {
        let got = top_n(&query, &rows, 8, 40, sim, odd).unwrap();
        assert!(got.iter().all(|nb| nb.index % 2 == 0));
        assert_matches(
            &got,
            &naive(&query, &rows, 8, 40, sim, odd),
            &format!("{sim:?}"),
        );
    }
    assert!(
        top_n(&query, &rows, 8, 40, Similarity::Dot, |_| true)
            .unwrap()
            .is_empty()
    );
}

#[test]
fn merged_shards_equal_the_global_top_n() {
    let dim = 8;
    let rows = tie_heavy_rows(1000, dim, 4);
    let query = vec![2.0, -1.0, 0.0, 1.0, 3.0, 1.0, 0.0, -2.0];
    for sim in SIMS {
        let global = top_n(&query, &rows, dim, 25, sim, |_| false).unwrap();
        // Uneven shards, merged in reverse order: the answer must not care.
        let bounds = [0, 130, 400, 401, 777, 1000];
        let mut shards: Vec<TopN<usize>> = bounds
            .windows(2)
            .map(|w| {
                let mut t = TopN::new(25);
                let off = w[0];
                scan_into(
                    &query,
                    &rows[w[0] * dim..w[1] * dim],
                    dim,
                    sim,
                    &mut t,
                    |i| Some(off + i),
                )
                .unwrap();
                t
            })
            .collect();
        let mut merged = TopN::new(25);
        while let Some(s) = shards.pop() {
            merged.merge(s);
        }
        assert_eq!(merged.into_neighbours(), global, "{sim:?}");
    }
}

#[test]
fn top_n_carries_arbitrary_keys() {
    let mut t: TopN<String> = TopN::new(2);
    assert!(t.push("c-3".into(), 0.5));
    assert!(t.push("c-1".into(), 0.9));
    assert_eq!(t.threshold(), Some(0.5));
    assert!(!t.push("c-9".into(), 0.5)); // tie with a lower key already kept
    assert!(t.push("c-0".into(), 0.5)); // tie, lower key wins
    assert!(!t.push("c-nan".into(), f32::NAN));
    assert_eq!(
        t.into_sorted_vec(),
        vec![("c-1".to_string(), 0.9), ("c-0".to_string(), 0.5)]
    );
    let mut empty: TopN<u64> = TopN::new(0);
    assert!(!empty.push(1, 1.0) && empty.is_empty());
}

#[test]
fn nan_rows_are_never_returned_ahead_of_finite_ones() {
    let mut rng = Rng(6);
    let dim = 4;
    let mut rows: Vec<f32> = (0..100 * dim).map(|_| rng.uniform()).collect();
    for i in (0..100).step_by(7) {
        rows[i * dim + 2] = f32::NAN;
    }
    rows[50 * dim..51 * dim].fill(0.0); // no direction: cosine undefined
    let query = vec![0.5, 0.5, 0.5, 0.5];
    for sim in SIMS {
        let got = top_n(&query, &rows, dim, 100, sim, |_| false).unwrap();
        assert!(got.iter().all(|nb| nb.score.is_finite()));
        assert!(got.iter().all(|nb| nb.index % 7 != 0));
        let finite_rows = if sim == Similarity::Cosine {
            100 - 15 - 1
        } else {
            100 - 15
        };
        assert_eq!(got.len(), finite_rows, "{sim:?}");
        assert!(got.windows(2).all(|w| w[0].score >= w[1].score));
    }
    // A NaN in the query scores every row NaN: nothing to return, no panic.
    let got = top_n(
        &[f32::NAN, 0.0, 0.0, 1.0],
        &rows,
        dim,
        5,
        Similarity::Dot,
        |_| false,
    )
    .unwrap();
    assert!(got.is_empty());
}

/// Seeds around `a`; candidates 0..50 near `a`, 50..100 near the far `b`.
fn lookalike_world() -> (Vec<f32>, Vec<f32>) {
    let mut rng = Rng(8);
    let dim = 16;
    let a: Vec<f32> = (0..dim).map(|j| if j < 8 { 1.0 } else { 0.0 }).collect();
    let b: Vec<f32> = (0..dim).map(|j| if j < 8 { 0.0 } else { 1.0 }).collect();
    let around = |c: &[f32], rng: &mut Rng| {
        c.iter()
            .map(|v| v + 0.3 * (rng.uniform() - 0.5))
            .collect::<Vec<_>>()
    };
    let seeds: Vec<f32> = (0..10).flat_map(|_| around(&a, &mut rng)).collect();
    let mut cands = Vec::new();
    for i in 0..100 {
        // Interleave so that "near" is not just the lower indices.
        let c = if i % 2 == 0 { &a } else { &b };
        cands.extend(around(c, &mut rng));
    }
    (seeds, cands)
}

#[test]
fn lookalikes_rank_rows_near_the_seeds_above_far_rows() {
    let (seeds, cands) = lookalike_world();
    for sim in SIMS {
        for scoring in [
            SeedScoring::Centroid,
            SeedScoring::KNearestSeeds(3),
            SeedScoring::KNearestSeeds(50),
        ] {
            let p = SeedProfile::from_rows(&seeds, 16, sim)
                .unwrap()
                .with_scoring(scoring)
                .unwrap();
            let got = rank_lookalikes(&p, &cands, 16, 50, |_| false).unwrap();
            assert_eq!(got.len(), 50);
            assert!(
                got.iter().all(|nb| nb.index % 2 == 0),
                "{sim:?} {scoring:?}"
            );
            // Excluding half the near rows lets far rows in only after them.
            let got = rank_lookalikes(&p, &cands, 16, 30, |i| i % 4 == 0).unwrap();
            assert!(got[..25].iter().all(|nb| nb.index % 4 == 2));
            assert!(got[25..].iter().all(|nb| nb.index % 2 == 1));
        }
    }
}

#[test]
fn seed_profile_validates_its_input() {
    let (seeds, cands) = lookalike_world();
    let mut bad = seeds.clone();
    bad[16 * 3 + 5] = f32::INFINITY;
    assert_eq!(
        SeedProfile::from_rows(&bad, 16, Similarity::Dot).unwrap_err(),
        NeighbourError::NonFiniteSeed { row: 3, column: 5 }
    );
    let mut with_zero = seeds.clone();
    with_zero.extend([0.0; 16]);
    let p = SeedProfile::from_rows(&with_zero, 16, Similarity::Cosine).unwrap();
    assert_eq!(p.skipped, vec![10]);
    assert_eq!(p.seed_count(), 10);
    assert_eq!(
        SeedProfile::from_rows(&[0.0; 16], 16, Similarity::Cosine).unwrap_err(),
        NeighbourError::NoUsableSeeds
    );
    assert_eq!(
        p.clone()
            .with_scoring(SeedScoring::KNearestSeeds(0))
            .unwrap_err(),
        NeighbourError::ZeroSeedK
    );
    assert_eq!(
        rank_lookalikes(&p, &cands, 8, 5, |_| false).unwrap_err(),
        NeighbourError::DimMismatch {
            profile: 16,
            given: 8
        }
    );
    assert!(
        rank_lookalikes(&p, &cands[..20], 16, 5, |_| false)
            .unwrap_err()
            .to_string()
            .contains("candidates")
    );
}

#[test]
fn malformed_inputs_are_errors() {
    let rows = vec![1.0; 12];
    assert_eq!(
        top_n(&[], &rows, 0, 3, Similarity::Dot, |_| false).unwrap_err(),
        NeighbourError::ZeroDim
    );
    assert_eq!(
        top_n(&[1.0; 5], &rows, 5, 3, Similarity::Dot, |_| false).unwrap_err(),
        NeighbourError::Ragged {
            what: "rows",
            len: 12,
            dim: 5
        }
    );
    assert_eq!(
        top_n(&[1.0; 3], &rows, 4, 3, Similarity::Dot, |_| false).unwrap_err(),
        NeighbourError::QueryLength { len: 3, dim: 4 }
    );
    assert_eq!(
        top_n(&[0.0; 4], &rows, 4, 3, Similarity::Cosine, |_| false).unwrap_err(),
        NeighbourError::ZeroQuery
    );
}

/// Best and median of `reps` runs of `f`, in ms: the machine is shared, so
/// the best run is the closest to the code's own cost.
fn time_ms(reps: usize, mut f: impl FnMut()) -> (f64, f64) {
    f(); // warm-up: page faults and caches
    let mut t: Vec<f64> = (0..reps)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    t.sort_by(f64::total_cmp);
    (t[0], t[reps / 2])
}

/// Timings for the report: `cargo test -p liveseg-learn --test neighbours -- --ignored --nocapture`.
#[test]
#[ignore]
fn timing_top_n_100k_by_64() {
    let (n, dim) = (100_000, 64);
    let mut rng = Rng(9);
    let rows: Vec<f32> = (0..n * dim).map(|_| rng.uniform() - 0.5).collect();
    let query: Vec<f32> = (0..dim).map(|_| rng.uniform() - 0.5).collect();
    let mb = (n * dim * 4) as f64 / 1e6;
    println!("rows {n} x {dim} f32 = {mb:.1} MB; best / median of 15 runs");
    for sim in SIMS {
        for k in [10, 1000] {
            let (best, median) = time_ms(15, || {
                std::hint::black_box(top_n(&query, &rows, dim, k, sim, |_| false).unwrap());
            });
            println!(
                "top_n n={k} {sim:?}: {best:.2} / {median:.2} ms per query ({:.1} GB/s at best)",
                mb / best
            );
        }
    }
    let seeds: Vec<f32> = rows[..100 * dim].to_vec();
    for scoring in [SeedScoring::Centroid, SeedScoring::KNearestSeeds(5)] {
        let p = SeedProfile::from_rows(&seeds, dim, Similarity::Cosine)
            .unwrap()
            .with_scoring(scoring)
            .unwrap();
        let reps = if scoring == SeedScoring::Centroid {
            15
        } else {
            3
        };
        let (best, median) = time_ms(reps, || {
            std::hint::black_box(rank_lookalikes(&p, &rows, dim, 100, |i| i < 100).unwrap());
        });
        println!("rank_lookalikes 100 seeds {scoring:?} n=100 Cosine: {best:.2} / {median:.2} ms");
    }
    let (best, median) = time_ms(15, || {
        let mut merged = TopN::new(10);
        for shard in 0..8 {
            let (lo, hi) = (shard * n / 8, (shard + 1) * n / 8);
            let mut t = TopN::new(10);
            scan_into(
                &query,
                &rows[lo * dim..hi * dim],
                dim,
                Similarity::Cosine,
                &mut t,
                |i| Some(lo as u64 + i as u64),
            )
            .unwrap();
            merged.merge(t);
        }
        std::hint::black_box(merged);
    });
    println!("8 shards (u64 keys) scanned and merged, n=10 Cosine: {best:.2} / {median:.2} ms");
}
