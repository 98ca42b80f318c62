//! Scalar functions, matrix–vector products and attention loops shared by the plain-Rust
//! step kernels ([`crate::xlstm::XLstmWeights`], [`crate::gpt::GptWeights`]), so that the
//! two models get the same care. The scalar functions are `#[inline(always)]` so that they
//! are compiled into the callers' AVX2 + FMA copies; the products ([`Packed`]) and the
//! attention loops ([`scores`], [`weighted_rows`]) choose their instructions through
//! [`Isa`].

use crate::inference::to_vec;

mod attend;
mod packed;
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

/// log σ(x) = −log(1 + e^−x), without overflow for large |x|.
#[inline(always)]
pub(crate) fn log_sigmoid(x: f32) -> f32 {
    if x >= 0.0 {
        -exp(-x).ln_1p()
    } else {
        x - exp(x).ln_1p()
    }
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
