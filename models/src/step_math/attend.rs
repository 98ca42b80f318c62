//! The two halves of one query's attention over a key/value cache, register-blocked: the
//! scores `q·K` with the keys stored transposed (`d_head` rows of `len` contiguous
//! values), and the weighted sum of value rows. Portable loops, or AVX2 + FMA chosen
//! through [`Isa`].

use super::packed::{Isa, LANES};

/// `out[t] = scale · Σ_i q[i] · kt[i · stride + t]` for `t < out.len()`.
///
/// # Panics
/// If `kt` is shorter than `(q.len() − 1) · stride + out.len()`.
#[inline]
pub(crate) fn scores(isa: Isa, q: &[f32], scale: f32, kt: &[f32], stride: usize, out: &mut [f32]) {
    let len = out.len();
    if q.is_empty() {
        out.fill(0.0);
        return;
    }
    assert!(
        stride >= len && kt.len() >= (q.len() - 1) * stride + len,
        "scores: sizes"
    );
    match isa {
        Isa::Portable => {
            out.fill(0.0);
            for (i, &qi) in q.iter().enumerate() {
                let a = qi * scale;
                for (o, &k) in out.iter_mut().zip(&kt[i * stride..i * stride + len]) {
                    *o += a * k;
                }
            }
        }
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `Avx2Fma` is only made after checking the CPU; sizes checked above.
        Isa::Avx2Fma => unsafe { scores_avx2_fma(q, scale, kt, stride, out) },
    }
}

/// # Safety
/// AVX2 and FMA, and the sizes [`scores`] checks.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn scores_avx2_fma(q: &[f32], scale: f32, kt: &[f32], stride: usize, out: &mut [f32]) {
    use std::arch::x86_64::*;
    /// Positions per block: 8 registers of sums, one independent FMA chain each.
    const BLOCK: usize = 8 * LANES;
    let len = out.len();
    let kp = kt.as_ptr();
    let op = out.as_mut_ptr();
    // SAFETY: every load reads kt[i · stride + t] with i < q.len() and t < len, every store
    // writes out[t] with t < len (the caller checked the sizes).
    unsafe {
        let mut t0 = 0;
        while t0 + BLOCK <= len {
            let mut acc = [_mm256_setzero_ps(); 8];
            for (i, &qi) in q.iter().enumerate() {
                let a = _mm256_set1_ps(qi * scale);
                let row = kp.add(i * stride + t0);
                for (c, acc) in acc.iter_mut().enumerate() {
                    *acc = _mm256_fmadd_ps(a, _mm256_loadu_ps(row.add(c * LANES)), *acc);
                }
            }
            for (c, acc) in acc.iter().enumerate() {
                _mm256_storeu_ps(op.add(t0 + c * LANES), *acc);
            }
            t0 += BLOCK;
        }
        while t0 + LANES <= len {
            let mut acc = _mm256_setzero_ps();
            for (i, &qi) in q.iter().enumerate() {
                let k = _mm256_loadu_ps(kp.add(i * stride + t0));
                acc = _mm256_fmadd_ps(_mm256_set1_ps(qi * scale), k, acc);
            }
            _mm256_storeu_ps(op.add(t0), acc);
            t0 += LANES;
        }
        for t in t0..len {
            let mut s = 0.0;
            for (i, &qi) in q.iter().enumerate() {
                s = (qi * scale).mul_add(*kp.add(i * stride + t), s);
            }
            *op.add(t) = s;
        }
    }
}

/// `out[j] = Σ_t w[t] · v[t · out.len() + j]`: the rows of `v` weighted by `w`.
///
/// # Panics
/// If `v` is shorter than `w.len() · out.len()`.
#[inline]
pub(crate) fn weighted_rows(isa: Isa, w: &[f32], v: &[f32], out: &mut [f32]) {
    let dh = out.len();
    assert!(v.len() >= w.len() * dh, "weighted_rows: sizes");
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `Avx2Fma` is only made after checking the CPU; sizes checked above.
        Isa::Avx2Fma if dh.is_multiple_of(LANES) => unsafe { weighted_rows_avx2_fma(w, v, out) },
        _ => {
            out.fill(0.0);
            for (t, &wt) in w.iter().enumerate() {
                for (o, &vj) in out.iter_mut().zip(&v[t * dh..(t + 1) * dh]) {
                    *o += wt * vj;
                }
            }
        }
    }
}

/// # Safety
/// AVX2 and FMA, `out.len()` a multiple of [`LANES`], and the sizes [`weighted_rows`]
/// checks.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
// Index loops over the register arrays (`n` of 4 in use) read as the sums do.
#[allow(clippy::needless_range_loop)]
unsafe fn weighted_rows_avx2_fma(w: &[f32], v: &[f32], out: &mut [f32]) {
    use std::arch::x86_64::*;
    /// Columns per pass (4 registers) × 2 partial sums (even and odd rows).
    const COLS: usize = 4 * LANES;
    let dh = out.len();
    let vp = v.as_ptr();
    // SAFETY: loads read v[t · dh + j] with t < w.len() and j < dh; stores write out[j]
    // with j < dh (j steps by LANES and dh is a multiple of LANES).
    unsafe {
        let mut j0 = 0;
        while j0 < dh {
            let n = ((dh - j0) / LANES).min(COLS / LANES);
            let mut even = [_mm256_setzero_ps(); 4];
            let mut odd = [_mm256_setzero_ps(); 4];
            let pairs = w.len() / 2;
            for p in 0..pairs {
                let (t, u) = (2 * p, 2 * p + 1);
                let (a, b) = (_mm256_set1_ps(w[t]), _mm256_set1_ps(w[u]));
                for c in 0..n {
                    let vt = _mm256_loadu_ps(vp.add(t * dh + j0 + c * LANES));
                    let vu = _mm256_loadu_ps(vp.add(u * dh + j0 + c * LANES));
                    even[c] = _mm256_fmadd_ps(a, vt, even[c]);
                    odd[c] = _mm256_fmadd_ps(b, vu, odd[c]);
                }
            }
            if w.len() % 2 == 1 {
                let t = w.len() - 1;
                let a = _mm256_set1_ps(w[t]);
                for c in 0..n {
                    let vt = _mm256_loadu_ps(vp.add(t * dh + j0 + c * LANES));
                    even[c] = _mm256_fmadd_ps(a, vt, even[c]);
                }
            }
            for c in 0..n {
                let s = _mm256_add_ps(even[c], odd[c]);
                _mm256_storeu_ps(out.as_mut_ptr().add(j0 + c * LANES), s);
            }
            j0 += n * LANES;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{RngExt, SeedableRng};

    fn isas() -> Vec<Isa> {
        let mut v = vec![Isa::Portable];
        if Isa::detect() != Isa::Portable {
            v.push(Isa::detect());
        }
        v
    }

    #[test]
    fn scores_and_weighted_rows_match_naive_sums() {
        let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(5);
        let mut rand =
            |n: usize| -> Vec<f32> { (0..n).map(|_| rng.random::<f32>() * 2.0 - 1.0).collect() };
        for (dh, len, stride) in [
            (32, 200, 256),
            (8, 7, 7),
            (12, 75, 80),
            (64, 64, 64),
            (3, 1, 5),
        ] {
            let (q, kt, w, v) = (rand(dh), rand(dh * stride), rand(len), rand(len * dh));
            for isa in isas() {
                let mut s = vec![f32::NAN; len];
                scores(isa, &q, 0.5, &kt, stride, &mut s);
                for (t, st) in s.iter().enumerate() {
                    let want: f32 = (0..dh).map(|i| 0.5 * q[i] * kt[i * stride + t]).sum();
                    assert!((st - want).abs() < 1e-5, "{isa:?} {dh} {len} t {t}");
                }
                let mut o = vec![f32::NAN; dh];
                weighted_rows(isa, &w, &v, &mut o);
                for (j, oj) in o.iter().enumerate() {
                    let want: f32 = (0..len).map(|t| w[t] * v[t * dh + j]).sum();
                    assert!((oj - want).abs() < 1e-4, "{isa:?} {dh} {len} j {j}");
                }
            }
        }
    }
}
