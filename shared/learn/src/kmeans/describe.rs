//! Cluster descriptions a marketer can read, and a silhouette figure for
//! quality: the reporting half of k-means (the fitting half is `kmeans`).

use super::*;

/// Whether a cluster sits above or below the population on a feature.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Direction {
    High,
    Low,
}

/// One feature's contrast between a cluster and everyone described.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureContrast {
    pub feature: String,
    pub index: usize,
    /// Raw units.
    pub cluster_mean: f64,
    pub overall_mean: f64,
    /// (cluster mean − overall mean) / overall standard deviation; 0 for a
    /// constant feature. Comparable across features, so it ranks them.
    pub standardized_difference: f64,
    pub direction: Direction,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClusterDescription {
    pub cluster: usize,
    pub size: usize,
    /// size / rows described.
    pub share: f64,
    /// Up to `top` features, largest |standardized_difference| first.
    pub features: Vec<FeatureContrast>,
    /// e.g. `clicks_30d high (2.4 vs 0.6), days_since_last_open low (3 vs 41)`.
    pub summary: String,
    /// A short suggested label, unique within one `describe` call.
    pub name: String,
}

/// Below this many standard deviations a difference is not worth a word.
const NOTABLE: f64 = 0.2;
/// A summary also leaves out features under this fraction of the leading
/// feature's difference: next to a 1.7 sd split, a 0.3 sd wobble on another
/// feature is sampling noise to a reader, not what sets the cluster apart.
const RELATIVE_TO_LEADER: f64 = 0.5;

/// Describes each cluster of `c` over the raw rows `x` (usually the training
/// rows, but any population works: rows are assigned with the model, which
/// reproduces `c.assignments` on the training rows).
pub fn describe(
    c: &Clustering,
    x: &[f32],
    feature_names: &[String],
    top: usize,
) -> Result<Vec<ClusterDescription>, KMeansError> {
    let dim = c.dim;
    if feature_names.len() != dim {
        return Err(KMeansError::FeatureNames {
            names: feature_names.len(),
            dim,
        });
    }
    let labels = c.assign_rows(x)?;
    let n = labels.len();
    let (overall, var) = column_moments(x, dim);
    let k = c.k();
    let mut sums = vec![0f64; k * dim];
    let mut sizes = vec![0usize; k];
    for (row, &l) in x.chunks_exact(dim).zip(&labels) {
        sizes[l] += 1;
        for (s, v) in sums[l * dim..(l + 1) * dim].iter_mut().zip(row) {
            *s += f64::from(*v);
        }
    }
    let mut out = Vec::with_capacity(k);
    let mut used_names = std::collections::HashSet::new();
    for cl in 0..k {
        let mut features: Vec<FeatureContrast> = if sizes[cl] == 0 {
            Vec::new()
        } else {
            (0..dim)
                .map(|j| {
                    let cm = sums[cl * dim + j] / sizes[cl] as f64;
                    let sd = var[j].sqrt();
                    let z = if sd > 0.0 {
                        (cm - overall[j]) / sd
                    } else {
                        0.0
                    };
                    FeatureContrast {
                        feature: feature_names[j].clone(),
                        index: j,
                        cluster_mean: cm,
                        overall_mean: overall[j],
                        standardized_difference: z,
                        direction: if z >= 0.0 {
                            Direction::High
                        } else {
                            Direction::Low
                        },
                    }
                })
                .collect()
        };
        features.sort_by(|a, b| {
            b.standardized_difference
                .abs()
                .total_cmp(&a.standardized_difference.abs())
                .then(a.index.cmp(&b.index))
        });
        features.truncate(top);
        let leader = features
            .first()
            .map_or(0.0, |f| f.standardized_difference.abs());
        let bar = NOTABLE.max(RELATIVE_TO_LEADER * leader);
        let notable: Vec<&FeatureContrast> = features
            .iter()
            .filter(|f| f.standardized_difference.abs() >= bar)
            .collect();
        let summary = if sizes[cl] == 0 {
            "no rows".to_string()
        } else if notable.is_empty() {
            "close to average on every feature".to_string()
        } else {
            notable
                .iter()
                .map(|f| {
                    format!(
                        "{} {} ({} vs {})",
                        f.feature,
                        word(f.direction),
                        readable(f.cluster_mean),
                        readable(f.overall_mean)
                    )
                })
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut name = match notable.as_slice() {
            [] if sizes[cl] == 0 => "empty".to_string(),
            [] => "typical".to_string(),
            some => some
                .iter()
                .take(2)
                .map(|f| format!("{} {}", word(f.direction), f.feature))
                .collect::<Vec<_>>()
                .join(", "),
        };
        if !used_names.insert(name.clone()) {
            name = format!("{name} (cluster {cl})");
            used_names.insert(name.clone());
        }
        out.push(ClusterDescription {
            cluster: cl,
            size: sizes[cl],
            share: if n == 0 {
                0.0
            } else {
                sizes[cl] as f64 / n as f64
            },
            features,
            summary,
            name,
        });
    }
    Ok(out)
}

fn word(d: Direction) -> &'static str {
    match d {
        Direction::High => "high",
        Direction::Low => "low",
    }
}

/// Two significant-ish digits, no trailing zeros: 41, 2.4, 3, 0.06.
fn readable(v: f64) -> String {
    let s = if v.abs() >= 10.0 {
        format!("{v:.0}")
    } else if v.abs() >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    };
    let s = if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    };
    if s == "-0" { "0".to_string() } else { s }
}

/// Mean silhouette over at most `sample` rows of `x` (raw units) chosen
/// deterministically from `seed`, in the model's space and metric
/// (Euclidean distance, or `1 - cos`). −1..1; above ~0.5 the clusters are
/// well separated, near 0 they overlap. Cost is O(sample² · dim), so 2,000
/// rows is a good default. Zero rows (cosine) are left out. A row alone in
/// its cluster within the sample scores 0, as in scikit-learn.
pub fn silhouette_sample(
    c: &Clustering,
    x: &[f32],
    sample: usize,
    seed: u64,
) -> Result<f64, KMeansError> {
    let dim = c.dim;
    let labels = c.assign_rows(x)?;
    let mut rows: Vec<(usize, Vec<f32>)> = Vec::new();
    for (i, row) in x.chunks_exact(dim).enumerate() {
        let mut z = c.standardise(row);
        if normalise_if_cosine(c.metric, &mut z) {
            rows.push((labels[i], z));
        }
    }
    // Partial Fisher-Yates: the first `sample` entries become the sample.
    let mut rng = SplitMix64(seed);
    let m = sample.min(rows.len());
    for i in 0..m {
        let j = i + rng.below(rows.len() - i);
        rows.swap(i, j);
    }
    rows.truncate(m);
    let k = c.k();
    let mut counts = vec![0usize; k];
    rows.iter().for_each(|(l, _)| counts[*l] += 1);
    if counts.iter().filter(|&&n| n > 0).count() < 2 {
        return Err(KMeansError::SilhouetteUndefined);
    }
    let dist = |a: &[f32], b: &[f32]| match c.metric {
        Metric::Euclidean => f64::from(sq_dist(a, b)).sqrt(),
        Metric::Cosine => distance(Metric::Cosine, a, b),
    };
    let mut total = 0.0;
    let mut sums = vec![0f64; k];
    for (li, a) in &rows {
        sums.iter_mut().for_each(|s| *s = 0.0);
        for (lj, b) in &rows {
            sums[*lj] += dist(a, b);
        }
        if counts[*li] < 2 {
            continue;
        }
        let own = sums[*li] / (counts[*li] - 1) as f64;
        let other = (0..k)
            .filter(|&l| l != *li && counts[l] > 0)
            .map(|l| sums[l] / counts[l] as f64)
            .fold(f64::INFINITY, f64::min);
        let denom = own.max(other);
        if denom > 0.0 {
            total += (other - own) / denom;
        }
    }
    Ok(total / rows.len() as f64)
}
