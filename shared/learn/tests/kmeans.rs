//! Behaviour of k-means: recovery of planted structure, determinism, the
//! spherical variant, readable descriptions and input validation.

use liveseg_learn::kmeans::{
    Direction, KMeansError, KMeansOptions, Metric, describe, fit, silhouette_sample,
};

/// splitmix64 with Box-Muller normals: test data without a dependency.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn normal(&mut self) -> f64 {
        let u = self.uniform().max(1e-12);
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * self.uniform()).cos()
    }
}

/// `per` rows around each centre with standard deviation `sd`; rows are
/// interleaved so that blob membership is not simply a block of indices.
fn blobs(centres: &[Vec<f64>], per: usize, sd: f64, seed: u64) -> (Vec<f32>, Vec<usize>) {
    let mut rng = Rng(seed);
    let (mut x, mut labels) = (Vec::new(), Vec::new());
    for _ in 0..per {
        for (l, c) in centres.iter().enumerate() {
            x.extend(c.iter().map(|m| (m + sd * rng.normal()) as f32));
            labels.push(l);
        }
    }
    (x, labels)
}

/// True when the clustering and the truth partition rows identically
/// (up to relabelling): each true group maps to exactly one cluster and
/// no two groups share one.
fn same_partition(truth: &[usize], found: &[usize]) -> bool {
    let mut map = std::collections::HashMap::new();
    let mut back = std::collections::HashMap::new();
    truth
        .iter()
        .zip(found)
        .all(|(t, f)| *map.entry(t).or_insert(f) == f && *back.entry(f).or_insert(t) == t)
}

fn opts(k: usize) -> KMeansOptions {
    KMeansOptions {
        k,
        ..KMeansOptions::default()
    }
}

#[test]
fn well_separated_blobs_are_recovered() {
    let centres = vec![
        vec![0.0, 0.0, 0.0, 0.0],
        vec![10.0, 0.0, 5.0, 0.0],
        vec![0.0, 10.0, 0.0, -5.0],
    ];
    let (x, truth) = blobs(&centres, 100, 1.0, 7);
    let c = fit(&x, 4, &opts(3)).unwrap();
    assert!(
        same_partition(&truth, &c.assignments),
        "sizes {:?}",
        c.sizes
    );
    assert_eq!(c.sizes, vec![100, 100, 100]);
    let s = silhouette_sample(&c, &x, 300, 1).unwrap();
    assert!(s > 0.7, "silhouette {s}");
}

#[test]
fn uneven_blobs_come_out_largest_first() {
    let (mut x, _) = blobs(&[vec![0.0, 0.0]], 30, 0.5, 1);
    let (x2, _) = blobs(&[vec![20.0, 20.0]], 90, 0.5, 2);
    x.extend(x2);
    let c = fit(&x, 2, &opts(2)).unwrap();
    assert_eq!(c.sizes, vec![90, 30]);
    assert!(c.assignments[..30].iter().all(|&a| a == 1));
}

#[test]
fn deterministic_for_a_seed() {
    let (x, _) = blobs(
        &[
            vec![0.0, 0.0, 0.0],
            vec![3.0, 1.0, 0.0],
            vec![1.0, 3.0, 2.0],
        ],
        80,
        1.5,
        3,
    );
    let o = KMeansOptions {
        k: 4,
        seed: 42,
        ..KMeansOptions::default()
    };
    let a = fit(&x, 3, &o).unwrap();
    let b = fit(&x, 3, &o).unwrap();
    assert_eq!(a, b);
}

#[test]
fn more_restarts_never_give_higher_inertia() {
    let (x, _) = blobs(
        &[vec![0.0, 0.0], vec![4.0, 0.0], vec![2.0, 3.0]],
        60,
        1.2,
        9,
    );
    let one = fit(
        &x,
        2,
        &KMeansOptions {
            k: 5,
            restarts: 1,
            seed: 5,
            ..opts(5)
        },
    )
    .unwrap();
    let many = fit(
        &x,
        2,
        &KMeansOptions {
            k: 5,
            restarts: 8,
            seed: 5,
            ..opts(5)
        },
    )
    .unwrap();
    // Same seed: the first restart of `many` is `one`, so best-of can only improve.
    assert!(many.inertia <= one.inertia);
}

/// Two rays 20° apart with magnitudes from 1 to 100: only the direction
/// tells them apart. Spherical k-means finds the rays; plain k-means cuts
/// by magnitude instead.
#[test]
fn spherical_separates_by_direction_where_euclidean_cannot() {
    let mut rng = Rng(11);
    let (mut x, mut truth) = (Vec::new(), Vec::new());
    for i in 0..200 {
        let angle: f64 = if i % 2 == 0 { 0.35 } else { 0.70 };
        let r = 1.0 + 99.0 * rng.uniform();
        let a = angle + 0.01 * rng.normal();
        x.extend([
            (r * a.cos()) as f32,
            (r * a.sin()) as f32,
            (0.01 * r * rng.normal()) as f32,
        ]);
        truth.push(i % 2);
    }
    let base = KMeansOptions {
        k: 2,
        standardize: false,
        ..KMeansOptions::default()
    };
    let cos = fit(
        &x,
        3,
        &KMeansOptions {
            metric: Metric::Cosine,
            ..base.clone()
        },
    )
    .unwrap();
    let euc = fit(&x, 3, &base).unwrap();
    assert!(same_partition(&truth, &cos.assignments));
    assert!(!same_partition(&truth, &euc.assignments));
    // Spherical centroids are unit vectors.
    for c in cos.centroids.chunks(3) {
        let norm: f32 = c.iter().map(|v| v * v).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5);
    }
}

#[test]
fn cosine_reports_zero_rows_and_assigns_them_to_cluster_zero() {
    let mut x = vec![1.0, 0.1, 2.0, 0.1, 0.0, 0.0, 0.1, 1.0, 0.1, 3.0];
    x.extend([0.0, 0.0]);
    let o = KMeansOptions {
        k: 2,
        metric: Metric::Cosine,
        standardize: false,
        ..KMeansOptions::default()
    };
    let c = fit(&x, 2, &o).unwrap();
    assert_eq!(c.zero_rows, vec![2, 5]);
    assert_eq!(c.assignments[2], 0);
    assert_eq!(c.assign(&[0.0, 0.0]).unwrap(), 0);
    assert_ne!(c.assignments[0], c.assignments[3]);
    // Only four rows have a direction: k = 5 cannot be met.
    let err = fit(&x, 2, &KMeansOptions { k: 5, ..o }).unwrap_err();
    assert_eq!(err, KMeansError::KTooLarge { k: 5, rows: 4 });
}

#[test]
fn assign_of_a_training_row_returns_its_assignment_also_after_serde() {
    let (x, _) = blobs(
        &[
            vec![0.0, 5.0, 1.0],
            vec![2.0, 0.0, 1.0],
            vec![4.0, 4.0, 1.0],
        ],
        50,
        1.3,
        5,
    );
    for metric in [Metric::Euclidean, Metric::Cosine] {
        let c = fit(&x, 3, &KMeansOptions { metric, ..opts(3) }).unwrap();
        let json = serde_json::to_string(&c).unwrap();
        let back: liveseg_learn::kmeans::Clustering = serde_json::from_str(&json).unwrap();
        for (i, row) in x.chunks(3).enumerate() {
            assert_eq!(
                c.assign(row).unwrap(),
                c.assignments[i],
                "{metric:?} row {i}"
            );
            assert_eq!(back.assign(row).unwrap(), c.assignments[i]);
        }
        assert_eq!(c.assign_rows(&x).unwrap(), c.assignments);
    }
}

#[test]
fn constant_features_and_duplicate_points_are_handled() {
    // Three distinct points, repeated; a constant third feature.
    let pts = [[0.0, 0.0, 7.0], [5.0, 5.0, 7.0], [10.0, 0.0, 7.0]];
    let x: Vec<f32> = (0..30).flat_map(|i| pts[i % 3]).collect();
    let c = fit(&x, 3, &opts(3)).unwrap();
    assert_eq!(c.scale[2], 1.0);
    assert_eq!(c.sizes, vec![10, 10, 10]);
    assert!(c.inertia < 1e-9);
    // More clusters than distinct points: no panic; every row still assigned.
    let c = fit(&x, 3, &opts(4)).unwrap();
    assert_eq!(c.sizes.iter().sum::<usize>(), 30);
}

#[test]
fn describe_names_the_separating_feature_with_its_direction() {
    for seed in 20..26 {
        describe_planted_clicks_split(seed).unwrap();
    }
}

/// Engaged (1 in 4) vs dormant contacts differ only in clicks_30d; the
/// other two features have the same distribution in both groups.
fn describe_planted_clicks_split(seed: u64) -> Result<(), KMeansError> {
    let mut rng = Rng(seed);
    let (mut x, mut engaged) = (Vec::new(), Vec::new());
    for i in 0..400 {
        let e = i % 4 == 0;
        let clicks = if e {
            6.0 + 0.5 * rng.normal()
        } else {
            0.4 + 0.2 * rng.normal()
        };
        x.extend([
            (20.0 + 10.0 * rng.normal()) as f32,
            clicks as f32,
            (3.0 + rng.normal()) as f32,
        ]);
        engaged.push(usize::from(e));
    }
    let names: Vec<String> = ["days_since_last_open", "clicks_30d", "opens_7d"]
        .map(String::from)
        .into();
    let c = fit(&x, 3, &opts(2))?;
    assert!(same_partition(&engaged, &c.assignments), "seed {seed}");
    let d = describe(&c, &x, &names, 2)?;
    assert_eq!(d.len(), 2);
    let engaged_cluster = c.assignments[0];
    for desc in &d {
        let top = &desc.features[0];
        assert_eq!(top.feature, "clicks_30d", "seed {seed}");
        let (want, word) = if desc.cluster == engaged_cluster {
            (Direction::High, "high")
        } else {
            (Direction::Low, "low")
        };
        assert_eq!(top.direction, want, "seed {seed}: {desc:?}");
        // The noise features are not worth a word.
        assert!(
            desc.summary.starts_with(&format!("clicks_30d {word} ("))
                && !desc.summary.contains("opens_7d")
                && !desc.summary.contains("days_since"),
            "seed {seed}: {}",
            desc.summary
        );
        assert_eq!(desc.name, format!("{word} clicks_30d"));
    }
    let e = &d[engaged_cluster];
    assert_eq!(e.size, 100);
    assert!((e.share - 0.25).abs() < 1e-12);
    assert!(e.features[0].cluster_mean > 5.0 && e.features[0].overall_mean < 2.5);
    Ok(())
}

#[test]
fn errors_name_the_parameter_and_the_reason() {
    let x = vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
    let msg = |e: KMeansError| e.to_string();
    assert_eq!(fit(&x, 2, &opts(0)).unwrap_err(), KMeansError::ZeroK);
    assert!(msg(fit(&x, 2, &opts(0)).unwrap_err()).contains("k must be"));
    let e = fit(&x, 2, &opts(4)).unwrap_err();
    assert_eq!(e, KMeansError::KTooLarge { k: 4, rows: 3 });
    assert!(msg(e).contains("k = 4"));
    assert!(msg(fit(&x, 0, &opts(1)).unwrap_err()).contains("dim"));
    let e = fit(&x, 4, &opts(1)).unwrap_err();
    assert_eq!(e, KMeansError::Ragged { len: 6, dim: 4 });
    assert!(msg(e).contains("ragged"));
    let mut bad = x.clone();
    bad[5] = f32::NAN;
    let e = fit(&bad, 2, &opts(1)).unwrap_err();
    assert_eq!(e, KMeansError::NonFinite { row: 2, column: 1 });
    assert!(msg(e).contains("row 2, column 1"));
    bad[5] = f32::INFINITY;
    assert!(matches!(
        fit(&bad, 2, &opts(1)),
        Err(KMeansError::NonFinite { row: 2, column: 1 })
    ));
    assert!(
        msg(fit(
            &x,
            2,
            &KMeansOptions {
                restarts: 0,
                ..opts(1)
            }
        )
        .unwrap_err())
        .contains("restarts")
    );
    assert!(
        msg(fit(
            &x,
            2,
            &KMeansOptions {
                tolerance: f64::NAN,
                ..opts(1)
            }
        )
        .unwrap_err())
        .contains("tolerance")
    );

    let c = fit(&x, 2, &opts(2)).unwrap();
    assert_eq!(
        c.assign(&[1.0]).unwrap_err(),
        KMeansError::RowLength { len: 1, dim: 2 }
    );
    assert!(matches!(
        c.assign(&[1.0, f32::NAN]),
        Err(KMeansError::NonFiniteInRow { column: 1 })
    ));
    let names = vec!["a".to_string()];
    assert_eq!(
        describe(&c, &x, &names, 1).unwrap_err(),
        KMeansError::FeatureNames { names: 1, dim: 2 }
    );
    let one = fit(&x, 2, &opts(1)).unwrap();
    assert_eq!(
        silhouette_sample(&one, &x, 10, 0).unwrap_err(),
        KMeansError::SilhouetteUndefined
    );
}

#[test]
fn silhouette_is_lower_for_structureless_data() {
    let mut rng = Rng(3);
    let uniform: Vec<f32> = (0..600).map(|_| rng.uniform() as f32).collect();
    let (blobby, _) = blobs(&[vec![0.0, 0.0], vec![8.0, 8.0]], 150, 1.0, 4);
    let s_uniform =
        silhouette_sample(&fit(&uniform, 2, &opts(2)).unwrap(), &uniform, 300, 0).unwrap();
    let s_blobs = silhouette_sample(&fit(&blobby, 2, &opts(2)).unwrap(), &blobby, 300, 0).unwrap();
    assert!(s_blobs > s_uniform + 0.2, "{s_blobs} vs {s_uniform}");
}
