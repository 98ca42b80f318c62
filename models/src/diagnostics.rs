//! Plasticity diagnostics of a layer's features (Moalla et al. 2024; Lyle et al. 2024):
//! effective rank, srank, feature rank, dead units and norms, computed from a batch of
//! features held as a row-major `N × D` matrix (N samples, D units).
//!
//! Singular values come from the eigenvalues of the smaller Gram matrix (XᵀX or XXᵀ,
//! in `f64`): Householder reduction to tridiagonal form, then implicit QL with
//! Wilkinson shifts, O(min(N, D)³) — a few milliseconds for a 256-unit layer.

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

/// Singular values of the row-major `rows × cols` matrix `x`, largest first
/// (`min(rows, cols)` of them).
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
    let mut gram = gram(x, rows, cols);
    let n = rows.min(cols);
    let mut s: Vec<f64> = symmetric_eigenvalues(&mut gram, n)
        .into_iter()
        .map(|l| l.max(0.0).sqrt())
        .collect();
    s.sort_by(|a, b| b.total_cmp(a));
    s
}

/// XᵀX (`cols ≤ rows`) or XXᵀ, whichever is smaller, row-major.
fn gram(x: &[f32], rows: usize, cols: usize) -> Vec<f64> {
    let n = rows.min(cols);
    let mut g = vec![0.0f64; n * n];
    if cols <= rows {
        for row in x.chunks_exact(cols.max(1)) {
            for a in 0..cols {
                let ra = row[a] as f64;
                if ra == 0.0 {
                    continue;
                }
                for b in a..cols {
                    g[a * n + b] += ra * row[b] as f64;
                }
            }
        }
    } else {
        for a in 0..rows {
            let ra = &x[a * cols..(a + 1) * cols];
            for b in a..rows {
                let rb = &x[b * cols..(b + 1) * cols];
                g[a * n + b] = ra.iter().zip(rb).map(|(p, q)| *p as f64 * *q as f64).sum();
            }
        }
    }
    for a in 0..n {
        for b in 0..a {
            g[a * n + b] = g[b * n + a];
        }
    }
    g
}

/// Eigenvalues of the symmetric `n × n` matrix `a` (destroyed): Householder reduction
/// to a tridiagonal matrix, then the implicit QL algorithm with Wilkinson shifts.
fn symmetric_eigenvalues(a: &mut [f64], n: usize) -> Vec<f64> {
    if n == 0 {
        return Vec::new();
    }
    let mut d = vec![0.0f64; n];
    let mut e = vec![0.0f64; n];
    // Householder: for each column k, reflect the part below the diagonal onto e₁.
    let mut v = vec![0.0f64; n];
    let mut p = vec![0.0f64; n];
    for k in 0..n.saturating_sub(2) {
        d[k] = a[k * n + k];
        let m = n - k - 1;
        let x: Vec<f64> = (0..m).map(|i| a[(k + 1 + i) * n + k]).collect();
        let norm = x.iter().map(|v| v * v).sum::<f64>().sqrt();
        if norm == 0.0 {
            e[k] = 0.0;
            continue;
        }
        let alpha = if x[0] > 0.0 { -norm } else { norm };
        e[k] = alpha;
        v[..m].copy_from_slice(&x);
        v[0] -= alpha;
        let vn = v[..m].iter().map(|t| t * t).sum::<f64>().sqrt();
        if vn == 0.0 {
            continue;
        }
        v[..m].iter_mut().for_each(|t| *t /= vn);
        // p = A₂₂ v, K = vᵀp, q = p − K v; A₂₂ ← A₂₂ − 2(v qᵀ + q vᵀ).
        for i in 0..m {
            let row = &a[(k + 1 + i) * n + k + 1..(k + 1 + i) * n + n];
            p[i] = row.iter().zip(&v[..m]).map(|(r, t)| r * t).sum();
        }
        let kk: f64 = p[..m].iter().zip(&v[..m]).map(|(x, y)| x * y).sum();
        for i in 0..m {
            p[i] -= kk * v[i];
        }
        for i in 0..m {
            let (vi, qi) = (v[i], p[i]);
            let row = &mut a[(k + 1 + i) * n + k + 1..(k + 1 + i) * n + n];
            for (j, r) in row.iter_mut().enumerate() {
                *r -= 2.0 * (vi * p[j] + qi * v[j]);
            }
        }
    }
    if n >= 2 {
        d[n - 2] = a[(n - 2) * n + n - 2];
        e[n - 2] = a[(n - 1) * n + n - 2];
    }
    d[n - 1] = a[(n - 1) * n + n - 1];
    e[n - 1] = 0.0;
    tridiagonal_eigenvalues(&mut d, &mut e);
    d
}

/// Eigenvalues (into `d`) of the symmetric tridiagonal matrix with diagonal `d` and
/// off-diagonal `e` (`e[i]` joins i and i + 1; `e` is destroyed), by implicit QL.
fn tridiagonal_eigenvalues(d: &mut [f64], e: &mut [f64]) {
    let n = d.len();
    for l in 0..n {
        for _iteration in 0..100 {
            let mut m = l;
            while m + 1 < n {
                let dd = d[m].abs() + d[m + 1].abs();
                if e[m].abs() <= f64::EPSILON * dd {
                    break;
                }
                m += 1;
            }
            if m == l {
                break;
            }
            let mut g = (d[l + 1] - d[l]) / (2.0 * e[l]);
            let mut r = g.hypot(1.0);
            g = d[m] - d[l] + e[l] / (g + r.copysign(g));
            let (mut s, mut c, mut p) = (1.0f64, 1.0f64, 0.0f64);
            let mut underflow = false;
            for i in (l..m).rev() {
                let f = s * e[i];
                let b = c * e[i];
                r = f.hypot(g);
                e[i + 1] = r;
                if r == 0.0 {
                    d[i + 1] -= p;
                    e[m] = 0.0;
                    underflow = true;
                    break;
                }
                s = f / r;
                c = g / r;
                g = d[i + 1] - p;
                r = (d[i] - g) * s + 2.0 * c * b;
                p = s * r;
                d[i + 1] = g + p;
                g = c * r - b;
            }
            if underflow {
                continue;
            }
            d[l] -= p;
            e[l] = g;
            e[m] = 0.0;
        }
    }
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

    /// Cyclic Jacobi, slow and simple: the reference the fast solver is checked against.
    fn jacobi_eigenvalues(a: &mut [f64], n: usize) -> Vec<f64> {
        for _sweep in 0..100 {
            let off: f64 = (0..n)
                .flat_map(|p| (0..n).filter(move |&q| q != p).map(move |q| (p, q)))
                .map(|(p, q)| a[p * n + q].powi(2))
                .sum();
            if off.sqrt() <= 1e-14 {
                break;
            }
            for p in 0..n {
                for q in p + 1..n {
                    let apq = a[p * n + q];
                    if apq.abs() <= 1e-300 {
                        continue;
                    }
                    let theta = (a[q * n + q] - a[p * n + p]) / (2.0 * apq);
                    let t = if theta == 0.0 {
                        1.0
                    } else {
                        theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt())
                    };
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
        let mut v: Vec<f64> = (0..n).map(|i| a[i * n + i]).collect();
        v.sort_by(|a, b| b.total_cmp(a));
        v
    }

    #[test]
    fn the_fast_eigensolver_agrees_with_jacobi_on_random_and_degenerate_matrices() {
        let mut z = 99u64;
        let mut next = || {
            z ^= z << 13;
            z ^= z >> 7;
            z ^= z << 17;
            (z >> 40) as f64 / (1u64 << 24) as f64 - 0.5
        };
        for (rows, cols) in [(40, 7), (7, 40), (33, 33), (64, 1), (1, 5), (3, 2)] {
            let mut x: Vec<f32> = (0..rows * cols).map(|_| next() as f32).collect();
            // Duplicate a column so the spectrum has a zero and repeated structure.
            if cols > 2 {
                for r in 0..rows {
                    x[r * cols + 1] = x[r * cols];
                }
            }
            let n = rows.min(cols);
            let g = gram(&x, rows, cols);
            let mut fast = symmetric_eigenvalues(&mut g.clone(), n);
            fast.sort_by(|a, b| b.total_cmp(a));
            let slow = jacobi_eigenvalues(&mut g.clone(), n);
            for (f, s) in fast.iter().zip(&slow) {
                assert!(
                    (f - s).abs() <= 1e-9 * slow[0].max(1.0),
                    "{rows}×{cols}: {f} vs {s}"
                );
            }
        }
        // The identity and a diagonal matrix.
        let mut eye = vec![0.0; 16];
        (0..4).for_each(|i| eye[i * 4 + i] = 2.0);
        assert_eq!(symmetric_eigenvalues(&mut eye, 4), vec![2.0; 4]);
    }
}
