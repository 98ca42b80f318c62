//! Scalar functions, matrix–vector products and attention loops shared by the plain-Rust
//! step kernels ([`crate::xlstm::XLstmWeights`], [`crate::gpt::GptWeights`]), so that the
//! two models get the same care. The scalar functions are `#[inline(always)]` so that they
//! are compiled into the callers' AVX2 + FMA copies; the products ([`Packed`]) and the
//! attention loops ([`scores`], [`weighted_rows`]) choose their instructions through
//! [`Isa`].

use crate::inference::to_vec;

mod attend;
mod packed;
#[cfg(test)]
mod tests;
pub(crate) use attend::{scores, weighted_rows};
pub(crate) use packed::{Isa, Packed};

/// e^x to within ~2 ulp for x in [−87, 88] (clamped outside, so e^x of a very negative
/// x is ~1e−38 rather than 0), branch-free so that a loop over it vectorises: Cephes'
/// `expf` (range reduction by ln 2 in two parts, a degree-6 polynomial, then the power of
/// two put into the exponent bits). A softmax over thousands of cached keys spends most of
/// its time here; `f32::exp` is a library call per element.
#[inline(always)]
pub(crate) fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const C1: f32 = 0.693_359_4;
    const C2: f32 = -2.121_944_4e-4;
    let x = x.clamp(-87.0, 88.0);
    let n = (x * LOG2E + 0.5).floor();
    let r = x - n * C1 - n * C2;
    let p = 1.987_569_1e-4;
    let p = p * r + 1.398_199_9e-3;
    let p = p * r + 8.333_452e-3;
    let p = p * r + 4.166_579_6e-2;
    let p = p * r + 1.666_666_5e-1;
    let p = p * r + 0.5;
    let e = p * r * r + r + 1.0;
    e * f32::from_bits(((n as i32 + 127) as u32) << 23)
}

/// σ(x) = 1 / (1 + e^−x).
#[inline(always)]
pub(crate) fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + exp(-x))
}

/// x·σ(x).
#[inline(always)]
pub(crate) fn silu(x: f32) -> f32 {
    x * sigmoid(x)
}

/// log σ(x) = min(x, 0) − log(1 + e^−|x|), without overflow for large |x| and branch-free
/// (with [`exp`] and [`ln_1p`] rather than library calls) so that a loop over it
/// vectorises.
#[inline(always)]
pub(crate) fn log_sigmoid(x: f32) -> f32 {
    x.min(0.0) - ln_1p(exp(-x.abs()))
}

/// log(1 + y) for y in [0, 1], to within ~1e−7 absolute: the natural log of `1 + y`
/// (rounded to f32, the only error for a tiny y) by Cephes' `logf` (the mantissa brought
/// into [√½, √2), a degree-9 polynomial, the exponent's ln 2 added in two parts),
/// branch-free for vectorised loops.
#[inline(always)]
pub(crate) fn ln_1p(y: f32) -> f32 {
    const C1: f32 = -2.121_944_4e-4;
    const C2: f32 = 0.693_359_4;
    // 1 + y is in [1, 2]: halve it above √2, counting the halving in `e`.
    let z = 1.0 + y;
    let high = z > std::f32::consts::SQRT_2;
    let e = if high { 1.0 } else { 0.0 };
    let x = if high { z * 0.5 } else { z } - 1.0;
    let p = 7.037_683_6e-2;
    let p = p * x - 1.151_461_e-1;
    let p = p * x + 1.167_699_9e-1;
    let p = p * x - 1.242_014_1e-1;
    let p = p * x + 1.424_932_3e-1;
    let p = p * x - 1.666_805_8e-1;
    let p = p * x + 2.000_071_5e-1;
    let p = p * x - 2.499_999_4e-1;
    let p = p * x + 3.333_333e-1;
    let x2 = x * x;
    let t = p * x * x2 + e * C1 - 0.5 * x2;
    x + t + e * C2
}

/// Softmax over `v` in place without the division: `v ← e^(v − max v)`, returning the sum
/// the caller divides by. The maximum and the sum run over 8 lanes of partial results, so
/// the loops vectorise (a single running sum is a chain the compiler may not reorder).
#[inline(always)]
pub(crate) fn softmax_unnormalised(v: &mut [f32]) -> f32 {
    const L: usize = 8;
    let mut lanes = [f32::NEG_INFINITY; L];
    let mut chunks = v.chunks_exact(L);
    for c in &mut chunks {
        for (m, &x) in lanes.iter_mut().zip(c) {
            *m = m.max(x);
        }
    }
    let max = chunks.remainder().iter().fold(
        lanes.iter().copied().fold(f32::NEG_INFINITY, f32::max),
        |a, &x| a.max(x),
    );
    let mut sums = [0.0f32; L];
    let mut chunks = v.chunks_exact_mut(L);
    for c in &mut chunks {
        for (s, x) in sums.iter_mut().zip(c) {
            *x = exp(*x - max);
            *s += *x;
        }
    }
    let mut sum = sums.iter().sum::<f32>();
    for x in chunks.into_remainder() {
        *x = exp(*x - max);
        sum += *x;
    }
    sum
}

/// erf(x) to within 1.5e−7 (absolute; Abramowitz & Stegun 7.1.26), enough for a GELU
/// that agrees with burn's to float rounding; with [`exp`] rather than `f32::exp` (a
/// library call per element) so that a GELU over a hidden layer vectorises.
#[inline(always)]
pub(crate) fn erf(x: f32) -> f32 {
    let a = x.abs();
    let t = 1.0 / (1.0 + 0.327_591_1 * a);
    let poly = t
        * (0.254_829_6
            + t * (-0.284_496_74 + t * (1.421_413_7 + t * (-1.453_152_1 + t * 1.061_405_4))));
    let y = 1.0 - poly * exp(-a * a);
    y.copysign(x)
}

/// GELU, exact form: x/2 · (1 + erf(x/√2)) (burn's `gelu`).
#[inline(always)]
pub(crate) fn gelu(x: f32) -> f32 {
    0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2))
}

/// Layer norm over `z` in place with scale `gamma` and no shift (ε as given).
#[inline(always)]
pub(crate) fn scale_norm(z: &mut [f32], gamma: &[f32], epsilon: f32) {
    let n = z.len() as f32;
    let mean = z.iter().sum::<f32>() / n;
    let var = z.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / n;
    let inv = 1.0 / (var + epsilon).sqrt();
    for (v, g) in z.iter_mut().zip(gamma) {
        *v = (*v - mean) * inv * g;
    }
}

/// A burn `Linear` (biased or not) packed for the step kernels (see [`Packed`]).
pub(crate) fn packed_of(linear: &burn::nn::Linear) -> Packed {
    let [fan_in, fan_out] = linear.weight.val().dims();
    let weight = to_vec(linear.weight.val().inner());
    let bias = linear
        .bias
        .as_ref()
        .map(|b| to_vec(b.val().inner()))
        .unwrap_or_else(|| vec![0.0; fan_out]);
    Packed::dense(fan_in, fan_out, &weight, &bias)
}
