//! Plasticity diagnostics of a layer's features (Moalla et al. 2024; Lyle et al. 2024):
//! effective rank, srank, feature rank, dead units and norms, computed from a batch of
//! features held as a row-major `N × D` matrix (N samples, D units).
//!
//! Singular values come from the eigenvalues of the `D × D` Gram matrix XᵀX (cyclic
//! Jacobi in `f64`), which is exact enough for these statistics and cheap for the layer
//! widths RL uses (D ≤ a few hundred).

/// What a layer's features say about its plasticity.
#[derive(Clone, Debug, PartialEq)]
pub struct FeatureStats {
    /// exp(entropy of σᵢ / Σσ) (Roy & Vetterli 2007).
    pub effective_rank: f64,
    /// Smallest k whose top-k singular values hold 99% of Σσ (Kumar et al. 2021).
    pub srank: usize,
    /// #{σᵢ / √N > 0.01} (Lyle et al. 2022).
    pub feature_rank: usize,
    /// Fraction of units that are dead (see [`Activation`]).
    pub dead_fraction: f64,
    /// Mean over samples of the features' L2 norm.
    pub mean_norm: f64,
}

/// How a unit counts as dead.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    /// ReLU features: dead when zero on every sample.
    Relu,
    /// Tanh (or any smooth) features: dead when their standard deviation over the batch is below 1e-3.
    Tanh,
}

/// Singular values of the row-major `rows × cols` matrix `x`, largest first.
///
/// # Panics
/// If `x.len() != rows * cols` (a programming error).
pub fn singular_values(x: &[f32], rows: usize, cols: usize) -> Vec<f64> {
    assert_eq!(
        x.len(),
        rows * cols,
        "matrix of {} values is not {rows} × {cols}",
        x.len()
    );
    let mut gram = vec![0.0f64; cols * cols];
    for row in x.chunks_exact(cols) {
        for a in 0..cols {
            let ra = row[a] as f64;
            if ra == 0.0 {
                continue;
            }
            for b in a..cols {
                gram[a * cols + b] += ra * row[b] as f64;
            }
        }
    }
    for a in 0..cols {
        for b in 0..a {
            gram[a * cols + b] = gram[b * cols + a];
        }
    }
    let mut s: Vec<f64> = symmetric_eigenvalues(&mut gram, cols)
        .into_iter()
        .map(|l| l.max(0.0).sqrt())
        .collect();
    s.sort_by(|a, b| b.total_cmp(a));
    s
}

/// Eigenvalues of the symmetric `n × n` matrix `a` (destroyed), by cyclic Jacobi rotations.
fn symmetric_eigenvalues(a: &mut [f64], n: usize) -> Vec<f64> {
    let scale: f64 = a
        .iter()
        .map(|x| x * x)
        .sum::<f64>()
        .sqrt()
        .max(f64::MIN_POSITIVE);
    for _sweep in 0..100 {
        let off: f64 = (0..n)
            .flat_map(|p| (0..n).filter(move |&q| q != p).map(move |q| (p, q)))
            .map(|(p, q)| a[p * n + q].powi(2))
            .sum();
        if off.sqrt() <= 1e-13 * scale {
            break;
        }
        for p in 0..n {
            for q in p + 1..n {
                let apq = a[p * n + q];
                if apq.abs() <= 1e-300 {
                    continue;
                }
                let (app, aqq) = (a[p * n + p], a[q * n + q]);
                let theta = (aqq - app) / (2.0 * apq);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let t = if theta == 0.0 { 1.0 } else { t };
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                for k in 0..n {
                    let (akp, akq) = (a[k * n + p], a[k * n + q]);
                    a[k * n + p] = c * akp - s * akq;
                    a[k * n + q] = s * akp + c * akq;
                }
                for k in 0..n {
                    let (apk, aqk) = (a[p * n + k], a[q * n + k]);
                    a[p * n + k] = c * apk - s * aqk;
                    a[q * n + k] = s * apk + c * aqk;
                }
            }
        }
    }
    (0..n).map(|i| a[i * n + i]).collect()
}

/// exp(−Σ pᵢ ln pᵢ) with pᵢ = σᵢ / Σσ (0 for an all-zero spectrum).
pub fn effective_rank(singular: &[f64]) -> f64 {
    let total: f64 = singular.iter().sum();
    if total <= 0.0 {
        return 0.0;
    }
    let entropy: f64 = singular
        .iter()
        .map(|s| s / total)
        .filter(|p| *p > 0.0)
        .map(|p| -p * p.ln())
        .sum();
    entropy.exp()
}

/// Smallest k with Σ_{i≤k} σᵢ ≥ (1 − δ)·Σσ, σ sorted largest first (δ = 0.01 in the papers).
pub fn srank(singular: &[f64], delta: f64) -> usize {
    let total: f64 = singular.iter().sum();
    if total <= 0.0 {
        return 0;
    }
    let mut acc = 0.0;
    for (k, s) in singular.iter().enumerate() {
        acc += s;
        if acc >= (1.0 - delta) * total {
            return k + 1;
        }
    }
    singular.len()
}

/// #{σᵢ / √N > ε} (ε = 0.01 in the papers).
pub fn feature_rank(singular: &[f64], samples: usize, epsilon: f64) -> usize {
    let root_n = (samples.max(1) as f64).sqrt();
    singular.iter().filter(|s| **s / root_n > epsilon).count()
}

/// Fraction of the `cols` units that are dead over the batch.
pub fn dead_fraction(x: &[f32], rows: usize, cols: usize, activation: Activation) -> f64 {
    if cols == 0 || rows == 0 {
        return 0.0;
    }
    let dead = (0..cols)
        .filter(|&j| {
            let col = x.iter().skip(j).step_by(cols).take(rows).map(|v| *v as f64);
            match activation {
                Activation::Relu => col.clone().all(|v| v == 0.0),
                Activation::Tanh => {
                    let mean = col.clone().sum::<f64>() / rows as f64;
                    let var = col.map(|v| (v - mean).powi(2)).sum::<f64>() / rows as f64;
                    var.sqrt() < 1e-3
                }
            }
        })
        .count();
    dead as f64 / cols as f64
}

/// Every statistic of [`FeatureStats`] for the row-major `rows × cols` features `x`.
pub fn feature_stats(x: &[f32], rows: usize, cols: usize, activation: Activation) -> FeatureStats {
    let s = singular_values(x, rows, cols);
    let mean_norm = if rows == 0 {
        0.0
    } else {
        x.chunks_exact(cols.max(1))
            .map(|r| r.iter().map(|v| (*v as f64).powi(2)).sum::<f64>().sqrt())
            .sum::<f64>()
            / rows as f64
    };
    FeatureStats {
        effective_rank: effective_rank(&s),
        srank: srank(&s, 0.01),
        feature_rank: feature_rank(&s, rows, 0.01),
        dead_fraction: dead_fraction(x, rows, cols, activation),
        mean_norm,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tol: f64) {
        assert!((a - b).abs() <= tol, "{a} vs {b}");
    }

    #[test]
    fn singular_values_of_known_matrices() {
        // diag(3, 2, 0) padded with a zero row.
        let x = [3.0, 0.0, 0.0, 0.0, 2.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0];
        let s = singular_values(&x, 4, 3);
        close(s[0], 3.0, 1e-9);
        close(s[1], 2.0, 1e-9);
        close(s[2], 0.0, 1e-6);
        // A rank-one matrix u vᵀ has one singular value ‖u‖‖v‖.
        let (u, v) = ([1.0f32, 2.0, 2.0], [3.0f32, 4.0]);
        let x: Vec<f32> = u
            .iter()
            .flat_map(|a| v.iter().map(move |b| a * b))
            .collect();
        let s = singular_values(&x, 3, 2);
        close(s[0], 15.0, 1e-6);
        close(s[1], 0.0, 1e-4);
        // A rotation of 2·I keeps both singular values at 2.
        let (c, sn) = (0.6f32, 0.8f32);
        let s = singular_values(&[2.0 * c, -2.0 * sn, 2.0 * sn, 2.0 * c], 2, 2);
        close(s[0], 2.0, 1e-6);
        close(s[1], 2.0, 1e-6);
    }

    #[test]
    fn ranks_follow_their_definitions() {
        close(effective_rank(&[1.0, 1.0, 1.0, 1.0]), 4.0, 1e-12);
        close(effective_rank(&[5.0, 0.0, 0.0]), 1.0, 1e-12);
        assert_eq!(srank(&[10.0, 5.0, 0.2], 0.01), 3);
        assert_eq!(srank(&[10.0, 5.0, 0.01], 0.01), 2);
        assert_eq!(feature_rank(&[10.0, 0.5, 0.05], 100, 0.01), 2);
        assert_eq!(srank(&[], 0.01), 0);
        assert_eq!(effective_rank(&[0.0, 0.0]), 0.0);
    }

    #[test]
    fn dead_units_and_collapsed_features() {
        // 4 samples × 3 units: unit 1 is always zero (dead ReLU), unit 2 constant (dead tanh).
        let x = [1.0, 0.0, 0.5, 2.0, 0.0, 0.5, 0.0, 0.0, 0.5, 3.0, 0.0, 0.5];
        close(dead_fraction(&x, 4, 3, Activation::Relu), 1.0 / 3.0, 1e-12);
        close(dead_fraction(&x, 4, 3, Activation::Tanh), 2.0 / 3.0, 1e-12);
        let stats = feature_stats(&x, 4, 3, Activation::Tanh);
        assert_eq!(stats.feature_rank, 2);
        assert!(
            stats.effective_rank > 1.0 && stats.effective_rank < 2.0,
            "{stats:?}"
        );
        // Random features in 8 dimensions have full rank; copies of one column have rank 1.
        let mut z = 12345u64;
        let random: Vec<f32> = (0..256 * 8)
            .map(|_| {
                z ^= z << 13;
                z ^= z >> 7;
                z ^= z << 17;
                (z >> 40) as f32 / (1u64 << 24) as f32 - 0.5
            })
            .collect();
        assert_eq!(
            feature_stats(&random, 256, 8, Activation::Tanh).feature_rank,
            8
        );
        let collapsed: Vec<f32> = random.chunks(8).flat_map(|r| [r[0]; 8]).collect();
        let stats = feature_stats(&collapsed, 256, 8, Activation::Tanh);
        assert_eq!((stats.feature_rank, stats.srank), (1, 1));
        close(stats.effective_rank, 1.0, 1e-6);
    }
}
