//! Allocation-free inference for MLPs in plain Rust: the acting copy of a policy.
//!
//! Actors evaluate one observation at a time, where a tensor framework's per-call
//! overhead (tensor construction, dispatch, allocation) costs more than the arithmetic:
//! a 4-64-64-2 network is ~4,500 multiply-adds, under a microsecond. [`MlpWeights`]
//! copies the parameters of an [`Mlp`] out of burn into flat vectors and runs the same
//! function with caller-provided scratch space, so a call allocates nothing. Its outputs
//! match the burn module's to ~1e-6 (tested), which keeps PPO's probability ratio at 1
//! on the first epoch.
//!
//! ```
//! use agentry_models::{MlpConfig, cpu, inference::MlpWeights};
//! let mlp = MlpConfig::new(4, &[64, 64], 2).init_seeded(&cpu(), 7);
//! let weights = MlpWeights::from_mlp(&mlp);
//! let mut scratch = weights.scratch();
//! let mut logits = [0.0f32; 2];
//! weights.forward(&[0.1, 0.0, -0.2, 0.3], &mut scratch, &mut logits);
//! ```

use serde::{Deserialize, Serialize};

use crate::mlp::{Activation, Mlp};

/// One dense layer: `y = x·W + b` with `W` stored `[fan_in, fan_out]` row-major.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Dense {
    /// Input width.
    pub fan_in: usize,
    /// Output width.
    pub fan_out: usize,
    /// `fan_in × fan_out` weights, row-major.
    pub weight: Vec<f32>,
    /// `fan_out` biases.
    pub bias: Vec<f32>,
}

impl Dense {
    /// Keep the first `n` outputs (drop the weights and biases of the others).
    ///
    /// # Panics
    /// If the layer has fewer than `n` outputs.
    pub fn keep_outputs(&mut self, n: usize) {
        assert!(
            n <= self.fan_out,
            "{n} outputs of a layer of {}",
            self.fan_out
        );
        if n == self.fan_out {
            return;
        }
        let weight = self
            .weight
            .chunks_exact(self.fan_out)
            .flat_map(|row| &row[..n])
            .copied()
            .collect();
        self.weight = weight;
        self.bias.truncate(n);
        self.fan_out = n;
    }
}

/// A layer norm's scale, shift and ε.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Norm {
    /// Scale γ.
    pub gamma: Vec<f32>,
    /// Shift β.
    pub beta: Vec<f32>,
    /// ε added to the variance.
    pub epsilon: f32,
}

impl Norm {
    /// A copy of a burn layer norm's parameters (ε as `LayerNormConfig`'s default, which
    /// agentry's layer norms use).
    pub fn from_layer_norm(norm: &burn::nn::LayerNorm) -> Norm {
        norm_of(norm)
    }

    /// Normalise `z` in place: `(z − mean) / √(var + ε) · γ + β`.
    ///
    /// # Panics
    /// If `z` is not as wide as the norm.
    pub fn apply(&self, z: &mut [f32]) {
        assert_eq!(z.len(), self.gamma.len(), "layer norm width");
        layer_norm(self, z);
    }
}

/// The parameters of an [`Mlp`] as plain vectors; see the [module docs](self).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MlpWeights {
    /// The dense layers, input first.
    pub layers: Vec<Dense>,
    /// One layer norm per hidden layer, or none.
    pub norms: Vec<Norm>,
    /// The nonlinearity.
    pub activation: Activation,
}

/// Scratch space for [`MlpWeights::forward`]: two rows of the widest layer.
#[derive(Clone, Debug)]
pub struct Scratch {
    a: Vec<f32>,
    b: Vec<f32>,
}

/// burn's layer-norm ε (`LayerNormConfig`'s default), which `Mlp` uses.
pub(crate) const LAYER_NORM_EPS: f32 = 1e-5;

/// A burn layer norm's scale and shift as plain vectors.
pub(crate) fn norm_of(n: &burn::nn::LayerNorm) -> Norm {
    let gamma = to_vec(n.gamma.val().inner());
    let beta = n
        .beta
        .as_ref()
        .map(|b| to_vec(b.val().inner()))
        .unwrap_or_else(|| vec![0.0; gamma.len()]);
    Norm {
        gamma,
        beta,
        epsilon: LAYER_NORM_EPS,
    }
}

pub(crate) fn to_vec<const D: usize>(t: burn::tensor::Tensor<D>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .expect("a float tensor converts to f32")
}

impl MlpWeights {
    /// Copy the parameters out of `mlp` (on any device, autodiff or not).
    pub fn from_mlp(mlp: &Mlp) -> Self {
        let layers = mlp
            .layers()
            .iter()
            .map(|l| {
                let [fan_in, fan_out] = l.weight.val().dims();
                Dense {
                    fan_in,
                    fan_out,
                    weight: to_vec(l.weight.val().inner()),
                    bias: l
                        .bias
                        .as_ref()
                        .map(|b| to_vec(b.val().inner()))
                        .unwrap_or_else(|| vec![0.0; fan_out]),
                }
            })
            .collect();
        let norms = mlp.norms().iter().map(norm_of).collect();
        MlpWeights {
            layers,
            norms,
            activation: if mlp.is_relu() {
                Activation::Relu
            } else {
                Activation::Tanh
            },
        }
    }

    /// Check that the shapes fit together (a network read from a file may not):
    /// at least one layer, each layer's weights `fan_in × fan_out` and bias `fan_out`,
    /// each layer's input the previous one's output, one norm per hidden layer or none,
    /// and every value finite.
    pub fn check(&self) -> Result<(), String> {
        if self.layers.is_empty() {
            return Err("the network has no layers".into());
        }
        for (i, l) in self.layers.iter().enumerate() {
            if l.fan_in == 0 || l.fan_out == 0 {
                return Err(format!("layer {i} has a zero width"));
            }
            if l.fan_in.checked_mul(l.fan_out) != Some(l.weight.len()) || l.bias.len() != l.fan_out
            {
                return Err(format!(
                    "layer {i} claims {}×{} but holds {} weights and {} biases",
                    l.fan_in,
                    l.fan_out,
                    l.weight.len(),
                    l.bias.len()
                ));
            }
            if i > 0 && self.layers[i - 1].fan_out != l.fan_in {
                return Err(format!(
                    "layer {i} takes {} inputs but layer {} gives {}",
                    l.fan_in,
                    i - 1,
                    self.layers[i - 1].fan_out
                ));
            }
            if l.weight.iter().chain(&l.bias).any(|v| !v.is_finite()) {
                return Err(format!("layer {i} holds a NaN or infinite value"));
            }
        }
        let hidden = self.layers.len() - 1;
        if !self.norms.is_empty() {
            if self.norms.len() != hidden {
                return Err(format!(
                    "{} norm layers for {hidden} hidden layers",
                    self.norms.len()
                ));
            }
            for (i, n) in self.norms.iter().enumerate() {
                let w = self.layers[i].fan_out;
                if n.gamma.len() != w || n.beta.len() != w || n.epsilon.is_nan() || n.epsilon <= 0.0
                {
                    return Err(format!("norm layer {i} does not fit a width of {w}"));
                }
            }
        }
        Ok(())
    }

    /// Input width.
    pub fn input_dim(&self) -> usize {
        self.layers[0].fan_in
    }

    /// Output width.
    pub fn output_dim(&self) -> usize {
        self.layers[self.layers.len() - 1].fan_out
    }

    /// Width of the last hidden layer (the features), or the input width without one.
    pub fn feature_dim(&self) -> usize {
        self.layers[self.layers.len() - 1].fan_in
    }

    /// Keep the first `n` outputs (see [`Dense::keep_outputs`]).
    pub fn keep_outputs(&mut self, n: usize) {
        let last = self.layers.len() - 1;
        self.layers[last].keep_outputs(n);
    }

    /// Number of parameters.
    pub fn num_params(&self) -> usize {
        self.layers
            .iter()
            .map(|l| l.weight.len() + l.bias.len())
            .sum::<usize>()
            + self.norms.iter().map(|n| 2 * n.gamma.len()).sum::<usize>()
    }

    /// Scratch space sized for this network.
    pub fn scratch(&self) -> Scratch {
        let width = self
            .layers
            .iter()
            .map(|l| l.fan_in.max(l.fan_out))
            .max()
            .unwrap_or(0);
        Scratch {
            a: vec![0.0; width],
            b: vec![0.0; width],
        }
    }

    /// The network's output for one input row.
    ///
    /// # Panics
    /// If `x`, `out` or `scratch` do not fit the network (a programming error).
    pub fn forward(&self, x: &[f32], scratch: &mut Scratch, out: &mut [f32]) {
        self.run(x, scratch, out, None);
    }

    /// [`forward`](Self::forward), also writing the last hidden layer's pre-activations
    /// (after the layer norm, before the nonlinearity) into `features`.
    pub fn forward_with_features(
        &self,
        x: &[f32],
        scratch: &mut Scratch,
        out: &mut [f32],
        features: &mut [f32],
    ) {
        self.run(x, scratch, out, Some(features));
    }

    fn run(
        &self,
        x: &[f32],
        scratch: &mut Scratch,
        out: &mut [f32],
        mut features: Option<&mut [f32]>,
    ) {
        assert_eq!(x.len(), self.input_dim(), "input width");
        assert_eq!(out.len(), self.output_dim(), "output width");
        if let Some(f) = features.as_deref() {
            assert_eq!(f.len(), self.feature_dim(), "feature width");
        }
        let last = self.layers.len() - 1;
        if last == 0 {
            if let Some(f) = features {
                f.copy_from_slice(x);
            }
            dense(&self.layers[0], x, out);
            return;
        }
        let Scratch { a, b } = scratch;
        let (mut cur, mut next) = (a.as_mut_slice(), b.as_mut_slice());
        cur[..x.len()].copy_from_slice(x);
        let mut width = x.len();
        for (i, layer) in self.layers[..last].iter().enumerate() {
            let h = &mut next[..layer.fan_out];
            dense(layer, &cur[..width], h);
            if let Some(norm) = self.norms.get(i) {
                layer_norm(norm, h);
            }
            if i == last - 1
                && let Some(f) = features.as_deref_mut()
            {
                f.copy_from_slice(h);
            }
            match self.activation {
                Activation::Relu => h.iter_mut().for_each(|v| *v = v.max(0.0)),
                Activation::Tanh => h.iter_mut().for_each(|v| *v = tanh(*v)),
            }
            width = layer.fan_out;
            std::mem::swap(&mut cur, &mut next);
        }
        dense(&self.layers[last], &cur[..width], out);
    }
}

/// `y = x·W + b`, accumulated row by row of `W` (contiguous, so it vectorises).
#[inline]
/// y = xW + b. On x86-64 CPUs with AVX2 the same loop runs compiled for AVX2 (chosen
/// at run time; the build itself targets baseline x86-64): 8-wide instead of 4-wide,
/// with the same operations in the same order, so the results are bit for bit equal.
pub(crate) fn dense(layer: &Dense, x: &[f32], y: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2 (checked just above).
        unsafe { dense_avx2(layer, x, y) };
        return;
    }
    dense_body(layer, x, y);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn dense_avx2(layer: &Dense, x: &[f32], y: &mut [f32]) {
    dense_body(layer, x, y);
}

/// `Y[r] = X[r]·W + b` for `rows` inputs at once (`x`: `rows × fan_in`, `y`:
/// `rows × fan_out`): a register-blocked kernel, 4 rows × 16 outputs per block, with the
/// accumulators kept in registers across the whole `fan_in` loop. Every output is
/// accumulated as [`dense`] accumulates it (bias, then `x_i·w_i` for `i` in order), so the
/// results are bit for bit those of `rows` calls of `dense`.
pub(crate) fn dense_rows(layer: &Dense, x: &[f32], rows: usize, y: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2 (checked just above).
        unsafe { dense_rows_avx2(layer, x, rows, y) };
        return;
    }
    dense_rows_body(layer, x, rows, y);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn dense_rows_avx2(layer: &Dense, x: &[f32], rows: usize, y: &mut [f32]) {
    dense_rows_body(layer, x, rows, y);
}

/// Rows per block of [`dense_rows`].
const BLOCK_ROWS: usize = 4;
/// Outputs per block of [`dense_rows`].
const BLOCK_COLS: usize = 16;

#[inline(always)]
fn dense_rows_body(layer: &Dense, x: &[f32], rows: usize, y: &mut [f32]) {
    let (fan_in, fan_out) = (layer.fan_in, layer.fan_out);
    assert!(
        x.len() >= rows * fan_in && y.len() >= rows * fan_out,
        "sizes"
    );
    let full_rows = rows - rows % BLOCK_ROWS;
    let full_cols = fan_out - fan_out % BLOCK_COLS;
    for r0 in (0..full_rows).step_by(BLOCK_ROWS) {
        for j0 in (0..full_cols).step_by(BLOCK_COLS) {
            let mut acc = [[0f32; BLOCK_COLS]; BLOCK_ROWS];
            for a in &mut acc {
                a.copy_from_slice(&layer.bias[j0..j0 + BLOCK_COLS]);
            }
            for i in 0..fan_in {
                let w: &[f32; BLOCK_COLS] = layer.weight[i * fan_out + j0..][..BLOCK_COLS]
                    .try_into()
                    .expect("a block");
                for (r, a) in acc.iter_mut().enumerate() {
                    let xi = x[(r0 + r) * fan_in + i];
                    for (aj, &wj) in a.iter_mut().zip(w) {
                        *aj += xi * wj;
                    }
                }
            }
            for (r, a) in acc.iter().enumerate() {
                y[(r0 + r) * fan_out + j0..][..BLOCK_COLS].copy_from_slice(a);
            }
        }
        // The outputs past the last full block of columns, row by row.
        if full_cols < fan_out {
            for r in r0..r0 + BLOCK_ROWS {
                dense_cols(layer, &x[r * fan_in..(r + 1) * fan_in], full_cols, y, r);
            }
        }
    }
    for r in full_rows..rows {
        let yr = &mut y[r * fan_out..(r + 1) * fan_out];
        dense_body(layer, &x[r * fan_in..(r + 1) * fan_in], yr);
    }
}

/// Outputs `from..` of row `r` of [`dense_rows`].
#[inline(always)]
fn dense_cols(layer: &Dense, x: &[f32], from: usize, y: &mut [f32], r: usize) {
    let fan_out = layer.fan_out;
    let yr = &mut y[r * fan_out + from..(r + 1) * fan_out];
    yr.copy_from_slice(&layer.bias[from..]);
    for (&xi, row) in x.iter().zip(layer.weight.chunks_exact(fan_out)) {
        for (yj, &w) in yr.iter_mut().zip(&row[from..]) {
            *yj += xi * w;
        }
    }
}

#[inline(always)]
fn dense_body(layer: &Dense, x: &[f32], y: &mut [f32]) {
    y.copy_from_slice(&layer.bias);
    for (&xi, row) in x.iter().zip(layer.weight.chunks_exact(layer.fan_out)) {
        for (yj, &w) in y.iter_mut().zip(row) {
            *yj += xi * w;
        }
    }
}

pub(crate) fn layer_norm(norm: &Norm, z: &mut [f32]) {
    let n = z.len() as f32;
    let mean = z.iter().sum::<f32>() / n;
    let var = z.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / n;
    let inv = 1.0 / (var + norm.epsilon).sqrt();
    for ((v, g), b) in z.iter_mut().zip(&norm.gamma).zip(&norm.beta) {
        *v = (*v - mean) * inv * g + b;
    }
}

/// tanh to within ~1e-7 (absolute) of `f32::tanh`, several times faster and
/// branch-free so it vectorises (plain multiply-adds: `mul_add` without a target FMA is a
/// slow library call): a 13/6 rational minimax fit on `[-7.9, 7.9]`, the
/// interval beyond which tanh rounds to ±1 in f32 (coefficients as in Eigen's `ptanh`).
#[inline]
pub fn tanh(x: f32) -> f32 {
    const CLAMP: f32 = 7.905_311;
    const A1: f32 = 4.893_524_6e-3;
    const A3: f32 = 6.372_619_3e-4;
    const A5: f32 = 1.485_722_4e-5;
    const A7: f32 = 5.122_297e-8;
    const A9: f32 = -8.604_672e-11;
    const A11: f32 = 2.000_188e-13;
    const A13: f32 = -2.760_768_5e-16;
    const B0: f32 = 4.893_525e-3;
    const B2: f32 = 2.268_434_7e-3;
    const B4: f32 = 1.185_347_1e-4;
    const B6: f32 = 1.198_258_4e-6;
    let x = x.clamp(-CLAMP, CLAMP);
    let x2 = x * x;
    let p = x2 * A13 + A11;
    let p = x2 * p + A9;
    let p = x2 * p + A7;
    let p = x2 * p + A5;
    let p = x2 * p + A3;
    let p = x2 * p + A1;
    let p = x * p;
    let q = x2 * B6 + B4;
    let q = x2 * q + B2;
    let q = x2 * q + B0;
    p / q
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Keeping a layer's first outputs leaves exactly those outputs.
    #[test]
    fn keep_outputs_keeps_the_first_outputs() {
        let (fan_in, fan_out) = (3, 5);
        let full = Dense {
            fan_in,
            fan_out,
            weight: (0..fan_in * fan_out)
                .map(|i| (i as f32 * 0.37).sin())
                .collect(),
            bias: (0..fan_out).map(|i| i as f32 * 0.1).collect(),
        };
        let mut cut = full.clone();
        cut.keep_outputs(2);
        let x = [0.5, -1.0, 2.0];
        let (mut a, mut b) = (vec![0.0; 5], vec![0.0; 2]);
        dense(&full, &x, &mut a);
        dense(&cut, &x, &mut b);
        assert_eq!((cut.fan_out, cut.weight.len()), (2, 6));
        assert_eq!(&a[..2], &b[..]);
    }

    /// The blocked kernel gives exactly what `dense` gives, row by row, for every shape
    /// of block and remainder.
    #[test]
    fn dense_rows_equals_dense_bit_for_bit() {
        let mut z = 11u64;
        let mut next = || {
            z ^= z << 13;
            z ^= z >> 7;
            z ^= z << 17;
            (z >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        };
        for (fan_in, fan_out, rows) in
            [(3, 16, 4), (7, 37, 9), (256, 32, 400), (5, 3, 2), (1, 1, 1)]
        {
            let layer = Dense {
                fan_in,
                fan_out,
                weight: (0..fan_in * fan_out).map(|_| next()).collect(),
                bias: (0..fan_out).map(|_| next()).collect(),
            };
            let x: Vec<f32> = (0..rows * fan_in).map(|_| next()).collect();
            let mut y = vec![0.0; rows * fan_out];
            dense_rows(&layer, &x, rows, &mut y);
            for r in 0..rows {
                let mut want = vec![0.0; fan_out];
                dense(&layer, &x[r * fan_in..(r + 1) * fan_in], &mut want);
                assert_eq!(
                    &y[r * fan_out..(r + 1) * fan_out],
                    &want[..],
                    "{fan_in}×{fan_out}, row {r}"
                );
            }
        }
    }
    use crate::mlp::{Init, MlpConfig};
    use burn::tensor::{Distribution, Tensor};

    #[test]
    fn tanh_matches_std() {
        let mut worst = 0.0f32;
        let mut x = -12.0f32;
        while x < 12.0 {
            worst = worst.max((tanh(x) - x.tanh()).abs());
            x += 1e-3;
        }
        assert!(worst < 1e-6, "max |err| {worst}");
        assert_eq!(tanh(0.0), 0.0);
        assert!(tanh(f32::INFINITY) <= 1.0 && tanh(-100.0) >= -1.0);
    }

    #[test]
    fn matches_the_burn_module() {
        let device = crate::cpu();
        let configs = [
            MlpConfig::new(4, &[64, 64], 2).with_init(Init::Orthogonal {
                hidden_gain: 2f32.sqrt(),
                output_gain: 0.01,
            }),
            MlpConfig::new(5, &[16, 8], 3)
                .with_activation(Activation::Relu)
                .with_layer_norm(true),
            MlpConfig::new(3, &[], 2),
        ];
        for (k, config) in configs.iter().enumerate() {
            let mlp = config.init_seeded(&device, k as u64);
            let weights = MlpWeights::from_mlp(&mlp);
            let x = Tensor::<2>::random([6, config.input], Distribution::Normal(0.0, 2.0), &device);
            let (y, z) = mlp.forward_with_features(x.clone());
            let (x, y, z) = (to_vec(x), to_vec(y), to_vec(z));
            let mut scratch = weights.scratch();
            let (o, f) = (weights.output_dim(), weights.feature_dim());
            let mut out = vec![0.0; o];
            let mut feat = vec![0.0; f];
            for r in 0..6 {
                let row = &x[r * config.input..(r + 1) * config.input];
                weights.forward_with_features(row, &mut scratch, &mut out, &mut feat);
                for j in 0..o {
                    assert!((out[j] - y[r * o + j]).abs() < 1e-5, "config {k} out");
                }
                for j in 0..f {
                    assert!((feat[j] - z[r * f + j]).abs() < 1e-5, "config {k} features");
                }
            }
        }
    }

    #[test]
    fn seeded_init_is_reproducible() {
        let device = crate::cpu();
        let config = MlpConfig::new(4, &[8], 2);
        let a = MlpWeights::from_mlp(&config.init_seeded(&device, 1));
        let b = MlpWeights::from_mlp(&config.init_seeded(&device, 1));
        let c = MlpWeights::from_mlp(&config.init_seeded(&device, 2));
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(a.num_params(), 4 * 8 + 8 + 8 * 2 + 2);
    }
}
