//! Inner products of an `f32` query with stored keys: `f32`, `f16` (IEEE half, stored as
//! bits) and `i8` codes.
//!
//! Each kernel scores `N` consecutive keys at once (`N` = 1 or [`BLOCK`]), so the query
//! is loaded once per `N` keys and `2N` independent accumulators keep the FMA units busy.
//! On x86-64 with AVX2, FMA and F16C (checked once at run time) the kernels use those
//! instructions; elsewhere a portable version of the same loop, which the compiler
//! vectorises for the baseline target. For one key, the block kernel and the one-key
//! kernel perform the same operations in the same order, so a key's score does not
//! depend on where in a block it falls.

use std::sync::OnceLock;

/// Keys scored together by the block kernels.
pub(crate) const BLOCK: usize = 4;
/// Values per inner-loop step: two vectors of eight lanes.
const STEP: usize = 16;

/// Which instructions the kernels use on this machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Simd {
    /// AVX2 with FMA and F16C (x86-64).
    Avx2Fma,
    /// Portable code, vectorised by the compiler for the build target.
    Portable,
}

impl Simd {
    /// A short name for reports.
    pub fn name(self) -> &'static str {
        match self {
            Simd::Avx2Fma => "avx2+fma+f16c",
            Simd::Portable => "portable",
        }
    }
}

/// The instruction set the kernels use (detected once).
pub fn simd() -> Simd {
    static LEVEL: OnceLock<Simd> = OnceLock::new();
    *LEVEL.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
                && std::arch::is_x86_feature_detected!("f16c")
            {
                return Simd::Avx2Fma;
            }
        }
        Simd::Portable
    })
}

/// Scores of the `N` keys in `keys` (`N × q.len()` values) against `q`, into `out[..N]`.
#[inline]
pub(crate) fn dot_f32<const N: usize>(q: &[f32], keys: &[f32], out: &mut [f32]) {
    assert!(keys.len() == N * q.len() && out.len() >= N);
    #[cfg(target_arch = "x86_64")]
    if simd() == Simd::Avx2Fma {
        // SAFETY: the CPU has AVX2, FMA and F16C (checked by `simd`).
        unsafe { avx2::dot_f32::<N>(q, keys, out) };
        return;
    }
    portable::dot::<f32, N>(q, keys, out, |k: &f32| *k);
}

/// [`dot_f32`] for keys stored as `f16` bits.
#[inline]
pub(crate) fn dot_f16<const N: usize>(q: &[f32], keys: &[u16], out: &mut [f32]) {
    assert!(keys.len() == N * q.len() && out.len() >= N);
    #[cfg(target_arch = "x86_64")]
    if simd() == Simd::Avx2Fma {
        // SAFETY: as in `dot_f32`.
        unsafe { avx2::dot_f16::<N>(q, keys, out) };
        return;
    }
    portable::dot::<u16, N>(q, keys, out, |k: &u16| f16_to_f32(*k));
}

/// [`dot_f32`] for `i8` codes, without their scales (the caller multiplies).
#[inline]
pub(crate) fn dot_i8<const N: usize>(q: &[f32], keys: &[i8], out: &mut [f32]) {
    assert!(keys.len() == N * q.len() && out.len() >= N);
    #[cfg(target_arch = "x86_64")]
    if simd() == Simd::Avx2Fma {
        // SAFETY: as in `dot_f32`.
        unsafe { avx2::dot_i8::<N>(q, keys, out) };
        return;
    }
    portable::dot::<i8, N>(q, keys, out, |k: &i8| f32::from(*k));
}

/// The `f32` value of `f16` bits.
#[inline]
pub(crate) fn f16_to_f32(bits: u16) -> f32 {
    half::f16::from_bits(bits).to_f32()
}

/// The nearest `f16` (ties to even) of `x`, as bits.
#[inline]
pub(crate) fn f32_to_f16(x: f32) -> u16 {
    half::f16::from_f32(x).to_bits()
}

/// Sums the 16 lanes of an accumulator pair in the order the AVX2 kernel does: lane-wise
/// `a + b`, then the upper four lanes onto the lower four, then pairs, then the two.
#[inline]
fn reduce(a: &[f32; 8], b: &[f32; 8]) -> f32 {
    let mut s = [0f32; 8];
    for l in 0..8 {
        s[l] = a[l] + b[l];
    }
    let t = [s[0] + s[4], s[1] + s[5], s[2] + s[6], s[3] + s[7]];
    let u = [t[0] + t[2], t[1] + t[3]];
    u[0] + u[1]
}

mod portable {
    use super::{STEP, reduce};

    /// The loop the compiler vectorises: `N` keys, two eight-lane accumulators each.
    #[inline]
    pub(super) fn dot<T, const N: usize>(
        q: &[f32],
        keys: &[T],
        out: &mut [f32],
        value: impl Fn(&T) -> f32,
    ) {
        let dim = q.len();
        let body = dim / STEP * STEP;
        let mut acc0 = [[0f32; 8]; N];
        let mut acc1 = [[0f32; 8]; N];
        for j in (0..body).step_by(STEP) {
            let qa = &q[j..j + STEP];
            for n in 0..N {
                let k = &keys[n * dim + j..n * dim + j + STEP];
                for l in 0..8 {
                    acc0[n][l] += value(&k[l]) * qa[l];
                    acc1[n][l] += value(&k[8 + l]) * qa[8 + l];
                }
            }
        }
        for n in 0..N {
            let mut s = reduce(&acc0[n], &acc1[n]);
            for t in body..dim {
                s += value(&keys[n * dim + t]) * q[t];
            }
            out[n] = s;
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    use super::{STEP, f16_to_f32};

    /// Horizontal sum of `a + b`, in the order of [`super::reduce`].
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn hsum(a: __m256, b: __m256) -> f32 {
        let s = _mm256_add_ps(a, b);
        let t = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps::<1>(s));
        let u = _mm_add_ps(t, _mm_movehl_ps(t, t));
        _mm_cvtss_f32(_mm_add_ss(u, _mm_shuffle_ps::<0b01>(u, u)))
    }

    /// The shared loop: `load(ptr)` turns eight stored values at `ptr` into eight floats.
    ///
    /// # Safety
    /// The CPU has AVX2, FMA and F16C; `keys.len() == N * q.len()`; `load` reads at
    /// most eight values from the pointer it is given.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn dot<T, const N: usize>(
        q: &[f32],
        keys: &[T],
        out: &mut [f32],
        load: impl Fn(*const T) -> __m256,
        value: impl Fn(&T) -> f32,
    ) {
        let dim = q.len();
        let body = dim / STEP * STEP;
        let mut acc0 = [_mm256_setzero_ps(); N];
        let mut acc1 = [_mm256_setzero_ps(); N];
        let (qp, kp) = (q.as_ptr(), keys.as_ptr());
        let mut j = 0;
        while j < body {
            // SAFETY: j + 16 <= dim, so q[j..j + 16] and, for n < N, the key values
            // keys[n·dim + j..n·dim + j + 16] are in bounds.
            unsafe {
                let q0 = _mm256_loadu_ps(qp.add(j));
                let q1 = _mm256_loadu_ps(qp.add(j + 8));
                for n in 0..N {
                    let k = kp.add(n * dim + j);
                    acc0[n] = _mm256_fmadd_ps(load(k), q0, acc0[n]);
                    acc1[n] = _mm256_fmadd_ps(load(k.add(8)), q1, acc1[n]);
                }
            }
            j += STEP;
        }
        for n in 0..N {
            let mut s = hsum(acc0[n], acc1[n]);
            for t in body..dim {
                s += value(&keys[n * dim + t]) * q[t];
            }
            out[n] = s;
        }
    }

    /// # Safety
    /// The CPU has AVX2, FMA and F16C; `keys.len() == N * q.len()`.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn dot_f32<const N: usize>(q: &[f32], keys: &[f32], out: &mut [f32]) {
        // SAFETY: the caller's guarantees; the loader reads eight floats.
        unsafe { dot::<f32, N>(q, keys, out, |p| _mm256_loadu_ps(p), |k: &f32| *k) }
    }

    /// # Safety
    /// As for [`dot_f32`].
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn dot_f16<const N: usize>(q: &[f32], keys: &[u16], out: &mut [f32]) {
        // SAFETY: the caller's guarantees; the loader reads eight halves (16 bytes).
        unsafe {
            dot::<u16, N>(
                q,
                keys,
                out,
                |p| _mm256_cvtph_ps(_mm_loadu_si128(p.cast())),
                |k: &u16| f16_to_f32(*k),
            )
        }
    }

    /// # Safety
    /// As for [`dot_f32`].
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn dot_i8<const N: usize>(q: &[f32], keys: &[i8], out: &mut [f32]) {
        // SAFETY: the caller's guarantees; the loader reads eight bytes.
        unsafe {
            dot::<i8, N>(
                q,
                keys,
                out,
                |p| _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(p.cast()))),
                |k: &i8| f32::from(*k),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{RngExt, SeedableRng};

    fn exact(q: &[f32], k: impl Iterator<Item = f32>) -> f64 {
        q.iter().zip(k).map(|(&a, b)| a as f64 * b as f64).sum()
    }

    #[test]
    fn kernels_agree_with_f64_and_blocks_agree_with_single_keys() {
        let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(1);
        for dim in [1, 7, 8, 15, 16, 17, 33, 64, 100, 512] {
            let q: Vec<f32> = (0..dim).map(|_| rng.random_range(-1.0..1.0)).collect();
            let keys: Vec<f32> = (0..BLOCK * dim)
                .map(|_| rng.random_range(-1.0..1.0))
                .collect();
            let halves: Vec<u16> = keys.iter().map(|&x| f32_to_f16(x)).collect();
            let codes: Vec<i8> = (0..BLOCK * dim)
                .map(|_| rng.random_range(-127i32..=127) as i8)
                .collect();
            let (mut block, mut one) = ([0f32; BLOCK], [0f32; 1]);
            dot_f32::<BLOCK>(&q, &keys, &mut block);
            for n in 0..BLOCK {
                let key = &keys[n * dim..(n + 1) * dim];
                dot_f32::<1>(&q, key, &mut one);
                assert_eq!(one[0].to_bits(), block[n].to_bits(), "f32 dim {dim}");
                let want = exact(&q, key.iter().copied());
                assert!(
                    (one[0] as f64 - want).abs() < 1e-5 * dim as f64,
                    "dim {dim}"
                );
            }
            dot_f16::<BLOCK>(&q, &halves, &mut block);
            for n in 0..BLOCK {
                let key = &halves[n * dim..(n + 1) * dim];
                dot_f16::<1>(&q, key, &mut one);
                assert_eq!(one[0].to_bits(), block[n].to_bits(), "f16 dim {dim}");
                let want = exact(&q, key.iter().map(|&h| f16_to_f32(h)));
                assert!(
                    (one[0] as f64 - want).abs() < 1e-5 * dim as f64,
                    "dim {dim}"
                );
            }
            dot_i8::<BLOCK>(&q, &codes, &mut block);
            for n in 0..BLOCK {
                let key = &codes[n * dim..(n + 1) * dim];
                dot_i8::<1>(&q, key, &mut one);
                assert_eq!(one[0].to_bits(), block[n].to_bits(), "i8 dim {dim}");
                let want = exact(&q, key.iter().map(|&c| c as f32));
                assert!(
                    (one[0] as f64 - want).abs() < 1e-3 * dim as f64,
                    "dim {dim}"
                );
            }
        }
    }

    #[test]
    fn portable_and_simd_kernels_agree_to_rounding() {
        // The portable reduction mirrors the AVX2 one, but FMA rounds once where the
        // portable loop rounds twice, so only closeness is promised across machines.
        let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(2);
        let dim = 100;
        let q: Vec<f32> = (0..dim).map(|_| rng.random_range(-1.0..1.0)).collect();
        let k: Vec<f32> = (0..dim).map(|_| rng.random_range(-1.0..1.0)).collect();
        let mut fast = [0f32; 1];
        let mut slow = [0f32; 1];
        dot_f32::<1>(&q, &k, &mut fast);
        portable::dot::<f32, 1>(&q, &k, &mut slow, |x| *x);
        assert!((fast[0] - slow[0]).abs() < 1e-4);
    }
}
