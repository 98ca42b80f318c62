//! Seeded weight initialisers (our own generator, so a seed fixes the network).

use rand::{Rng, RngExt};
use rand_distr::StandardNormal;

/// `n` values uniform in `[-bound, bound)`.
pub(crate) fn uniform(rng: &mut impl Rng, n: usize, bound: f32) -> Vec<f32> {
    (0..n).map(|_| rng.random_range(-bound..bound)).collect()
}

/// A `rows × cols` row-major matrix with orthonormal columns (rows ≥ cols) or rows
/// (rows < cols), times `gain`: Saxe et al.'s orthogonal init. Drawn as the Q of a QR
/// decomposition of a Gaussian matrix with R's diagonal made positive, which is
/// uniform (Haar) over such matrices: Gram–Schmidt on Gaussian vectors gives exactly that Q.
pub(crate) fn orthogonal(rng: &mut impl Rng, rows: usize, cols: usize, gain: f32) -> Vec<f32> {
    let (long, short) = (rows.max(cols), rows.min(cols));
    // `short` orthonormal vectors of length `long`, in f64 for a clean orthogonalisation.
    let mut basis: Vec<Vec<f64>> = Vec::with_capacity(short);
    while basis.len() < short {
        let mut v: Vec<f64> = (0..long).map(|_| rng.sample(StandardNormal)).collect();
        for _pass in 0..2 {
            for b in &basis {
                let dot: f64 = v.iter().zip(b).map(|(x, y)| x * y).sum();
                v.iter_mut().zip(b).for_each(|(x, y)| *x -= dot * y);
            }
        }
        let norm = v.iter().map(|x| x * x).sum::<f64>().sqrt();
        if norm > 1e-8 {
            v.iter_mut().for_each(|x| *x /= norm);
            basis.push(v);
        }
    }
    let mut out = vec![0.0f32; rows * cols];
    for (j, b) in basis.iter().enumerate() {
        for (i, &x) in b.iter().enumerate() {
            // rows ≥ cols: vector j is column j; otherwise it is row j.
            let (r, c) = if rows >= cols { (i, j) } else { (j, i) };
            out[r * cols + c] = gain * x as f32;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn gram(m: &[f32], rows: usize, cols: usize, by_columns: bool) -> Vec<f64> {
        let n = if by_columns { cols } else { rows };
        let len = if by_columns { rows } else { cols };
        let at = |v: usize, k: usize| {
            if by_columns {
                m[k * cols + v] as f64
            } else {
                m[v * cols + k] as f64
            }
        };
        let mut g = vec![0.0; n * n];
        for a in 0..n {
            for b in 0..n {
                g[a * n + b] = (0..len).map(|k| at(a, k) * at(b, k)).sum();
            }
        }
        g
    }

    #[test]
    fn orthogonal_is_orthonormal_times_gain() {
        let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(3);
        for (rows, cols, by_columns) in [(64, 4, true), (4, 64, false), (16, 16, true)] {
            let gain = 2f32.sqrt();
            let m = orthogonal(&mut rng, rows, cols, gain);
            let g = gram(&m, rows, cols, by_columns);
            let n = rows.min(cols);
            for a in 0..n {
                for b in 0..n {
                    let want = if a == b { 2.0 } else { 0.0 };
                    assert!(
                        (g[a * n + b] - want).abs() < 1e-4,
                        "{rows}x{cols} G[{a},{b}]"
                    );
                }
            }
        }
    }

    #[test]
    fn uniform_stays_in_bounds() {
        let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(3);
        let v = uniform(&mut rng, 1000, 0.25);
        assert!(v.iter().all(|x| (-0.25..0.25).contains(x)));
        assert!(v.iter().any(|&x| x > 0.2) && v.iter().any(|&x| x < -0.2));
    }
}
