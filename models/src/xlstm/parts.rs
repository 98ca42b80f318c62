//! Pieces both block kinds use: seeded initialisers, the causal depthwise convolution,
//! block-diagonal ("headwise") projections, the per-head norm and the gated feed-forward
//! network.

use burn::module::{Module, Param};
use burn::nn::{LayerNorm, LayerNormConfig, Linear};
use burn::tensor::{Device, Tensor, TensorData, activation};
use rand::{Rng, RngExt};
use rand_distr::StandardNormal;

use crate::init::uniform;

/// The epsilon of every layer and head norm (the official code's 1e-5).
pub(super) const NORM_EPS: f64 = 1e-5;

/// The initial stabiliser m₀, standing for −∞ ("nothing stored yet"): exp(m₀ − x) is exactly
/// 0 for any finite x, so the first step's forget gate contributes nothing, as in the
/// parallel form; unlike −∞ it cannot turn into NaN through `−∞ − (−∞)`.
pub(super) const M_EMPTY: f32 = -1e30;

/// `n` values from N(0, std²).
pub(super) fn normal(rng: &mut impl Rng, n: usize, std: f64) -> Vec<f32> {
    (0..n)
        .map(|_| (rng.sample::<f64, _>(StandardNormal) * std) as f32)
        .collect()
}

/// A tensor holding `values` (row-major) with `shape`.
pub(super) fn tensor<const D: usize>(
    values: Vec<f32>,
    shape: [usize; D],
    device: &Device,
) -> Tensor<D> {
    Tensor::from_data(TensorData::new(values, shape), device)
}

/// A trainable parameter holding `values` with `shape`.
pub(super) fn param<const D: usize>(
    values: Vec<f32>,
    shape: [usize; D],
    device: &Device,
) -> Param<Tensor<D>> {
    Param::from_tensor(tensor(values, shape, device))
}

/// A bias-free linear map `d_in → d_out` with N(0, std²) weights.
pub(super) fn linear_normal(
    rng: &mut impl Rng,
    d_in: usize,
    d_out: usize,
    std: f64,
    device: &Device,
) -> Linear {
    Linear {
        weight: param(normal(rng, d_in * d_out, std), [d_in, d_out], device),
        bias: None,
    }
}

/// A layer norm with a scale and no offset (the official `LayerNorm(bias=False)`).
pub(super) fn layer_norm(width: usize, device: &Device) -> LayerNorm {
    LayerNormConfig::new(width)
        .with_epsilon(NORM_EPS)
        .with_bias(false)
        .init(device)
}

/// "Small init" (Nguyen & Salazar 2019) for projections reading a `width`-wide stream.
pub(super) fn small_init_std(width: usize) -> f64 {
    (2.0 / (5.0 * width as f64)).sqrt()
}

/// Wang's init for projections writing back into the residual stream of a `num_blocks` stack.
pub(super) fn wang_init_std(width: usize, num_blocks: usize) -> f64 {
    2.0 / num_blocks as f64 / (width as f64).sqrt()
}

/// `n` values evenly spaced from `start` to `end` inclusive (`[start]` when `n` is 1).
pub(super) fn linspace(start: f32, end: f32, n: usize) -> Vec<f32> {
    if n == 1 {
        return vec![start];
    }
    (0..n)
        .map(|i| start + (end - start) * i as f32 / (n - 1) as f32)
        .collect()
}

/// `ceil(factor · width)` rounded up to a multiple of `multiple` (the official
/// `UpProjConfigMixin` with `round_proj_up_dim_up`).
pub(super) fn up_dim(width: usize, factor: f64, multiple: usize) -> usize {
    let raw = factor * width as f64;
    let multiple = multiple.max(1);
    ((raw / multiple as f64).ceil() as usize) * multiple
}

/// Causal depthwise 1-D convolution over time: each channel mixes its own last `kernel`
/// inputs, y_t = b + Σ_j w_j ⊙ x_{t−kernel+1+j}, inputs before the sequence being 0.
#[derive(Module, Debug)]
pub(super) struct CausalConv {
    /// `[kernel, channels]`; the last row multiplies the current input.
    pub(super) weight: Param<Tensor<2>>,
    /// `[channels]`.
    pub(super) bias: Param<Tensor<1>>,
}

impl CausalConv {
    /// PyTorch's `Conv1d` default for a depthwise kernel: weights and bias uniform in
    /// ±1/√kernel (fan-in is the kernel length).
    pub(super) fn init_seeded(
        rng: &mut impl Rng,
        kernel: usize,
        channels: usize,
        device: &Device,
    ) -> Self {
        let bound = 1.0 / (kernel as f32).sqrt();
        CausalConv {
            weight: param(
                uniform(rng, kernel * channels, bound),
                [kernel, channels],
                device,
            ),
            bias: param(uniform(rng, channels, bound), [channels], device),
        }
    }

    fn kernel(&self) -> usize {
        self.weight.dims()[0]
    }

    /// The whole sequence at once: `[batch, seq, channels]` → same shape.
    pub(super) fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let [batch, seq, channels] = x.dims();
        let kernel = self.kernel();
        let weight = self.weight.val();
        let tap = |j: usize| weight.clone().narrow(0, j, 1).unsqueeze::<3>();
        let mut y = x.clone() * tap(kernel - 1);
        if kernel > 1 {
            let past = Tensor::zeros([batch, kernel - 1, channels], &x.device());
            let padded = Tensor::cat(vec![past, x], 1);
            for j in 0..kernel - 1 {
                y = y + padded.clone().narrow(1, j, seq) * tap(j);
            }
        }
        y + self.bias.val().unsqueeze::<3>()
    }

    /// The rolling state for [`step`](Self::step): the last `kernel − 1` inputs
    /// (`[batch, kernel − 1, channels]`), or `None` for a kernel of length 1.
    pub(super) fn init_state(&self, batch: usize, device: &Device) -> Option<Tensor<3>> {
        let kernel = self.kernel();
        let channels = self.weight.dims()[1];
        (kernel > 1).then(|| Tensor::zeros([batch, kernel - 1, channels], device))
    }

    /// One time step: `[batch, 1, channels]` → same shape; shifts `state` by one.
    pub(super) fn step(&self, x: Tensor<3>, state: &mut Option<Tensor<3>>) -> Tensor<3> {
        let bias = self.bias.val().unsqueeze::<3>();
        match state {
            None => x * self.weight.val().unsqueeze::<3>() + bias,
            Some(past) => {
                let kernel = self.kernel();
                let window = Tensor::cat(vec![past.clone(), x], 1);
                let y = (window.clone() * self.weight.val().unsqueeze::<3>()).sum_dim(1) + bias;
                *past = window.narrow(1, 1, kernel - 1);
                y
            }
        }
    }
}

/// A block-diagonal linear map (the official `LinearHeadwiseExpand` without bias): the input
/// is cut into `heads` equal groups and each group has its own `d_in × d_out` matrix.
#[derive(Module, Debug)]
pub(super) struct Headwise {
    /// `[heads, d_in, d_out]`.
    pub(super) weight: Param<Tensor<3>>,
}

impl Headwise {
    /// N(0, std²) weights.
    pub(super) fn init_seeded(
        rng: &mut impl Rng,
        heads: usize,
        d_in: usize,
        d_out: usize,
        std: f64,
        device: &Device,
    ) -> Self {
        Headwise {
            weight: param(
                normal(rng, heads * d_in * d_out, std),
                [heads, d_in, d_out],
                device,
            ),
        }
    }

    /// `[batch, seq, heads · d_in]` → `[batch, seq, heads · d_out]`, head-major.
    pub(super) fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let [batch, seq, _] = x.dims();
        let [heads, d_in, d_out] = self.weight.dims();
        x.reshape([batch * seq, heads, d_in])
            .swap_dims(0, 1)
            .matmul(self.weight.val())
            .swap_dims(0, 1)
            .reshape([batch, seq, heads * d_out])
    }
}

/// Layer norm over the last axis (each head's features on their own), times `weight`
/// (broadcast against `x`), without offset: the official `MultiHeadLayerNorm`, which is
/// a group norm with one group per head.
pub(super) fn head_norm(x: Tensor<4>, weight: Tensor<4>) -> Tensor<4> {
    let centred = x.clone() - x.mean_dim(3);
    let var = (centred.clone() * centred.clone()).mean_dim(3);
    centred / var.add_scalar(NORM_EPS).sqrt() * weight
}

/// The official gated feed-forward network: `[g, u] = W_up x`, `y = W_down (GELU(g) ⊙ u)`,
/// no biases.
#[derive(Module, Debug)]
pub(super) struct GatedFeedForward {
    /// `d_model → 2 · inner`: the gate, then the value.
    pub(super) up: Linear,
    /// `inner → d_model`.
    pub(super) down: Linear,
    pub(super) inner: usize,
}

impl GatedFeedForward {
    /// Small init for the up-projection, Wang's init for the down-projection.
    pub(super) fn init_seeded(
        rng: &mut impl Rng,
        d_model: usize,
        inner: usize,
        num_blocks: usize,
        device: &Device,
    ) -> Self {
        GatedFeedForward {
            up: linear_normal(rng, d_model, 2 * inner, small_init_std(d_model), device),
            down: linear_normal(
                rng,
                inner,
                d_model,
                wang_init_std(d_model, num_blocks),
                device,
            ),
            inner,
        }
    }

    /// `[batch, seq, d_model]` → same shape.
    pub(super) fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let up = self.up.forward(x);
        let gate = up.clone().narrow(2, 0, self.inner);
        let value = up.narrow(2, self.inner, self.inner);
        self.down.forward(activation::gelu(gate) * value)
    }
}

/// Keep rows of a `[batch, …]` state tensor where `reset` is false, set the others to `value`.
pub(super) fn reset_rows_of<const D: usize>(
    t: Tensor<D>,
    reset: &Tensor<1, burn::tensor::Bool>,
    value: f32,
) -> Tensor<D> {
    let dims = t.dims();
    let mut shape = [1; D];
    shape[0] = dims[0];
    let mask = reset.clone().reshape(shape).expand(dims);
    t.mask_fill(mask, value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn to_vec<const D: usize>(t: Tensor<D>) -> Vec<f32> {
        t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap()
    }

    #[test]
    fn xlstm_parts_conv_step_matches_forward() {
        let device = crate::cpu();
        let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(1);
        for kernel in [1, 2, 4] {
            let conv = CausalConv::init_seeded(&mut rng, kernel, 5, &device);
            let x = tensor(normal(&mut rng, 2 * 7 * 5, 1.0), [2, 7, 5], &device);
            let full = to_vec(conv.forward(x.clone()));
            let mut state = conv.init_state(2, &device);
            let steps: Vec<_> = (0..7)
                .map(|t| conv.step(x.clone().narrow(1, t, 1), &mut state))
                .collect();
            let stepped = to_vec(Tensor::cat(steps, 1));
            let diff = full
                .iter()
                .zip(&stepped)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f32::max);
            assert!(diff < 1e-6, "kernel {kernel}: {diff}");
        }
    }

    #[test]
    fn xlstm_parts_up_dim_rounds_like_the_official_code() {
        assert_eq!(up_dim(32, 2.0, 64), 64);
        assert_eq!(up_dim(48, 2.0, 64), 128);
        assert_eq!(up_dim(64, 1.3, 64), 128);
        assert_eq!(up_dim(10, 1.3, 1), 13);
        assert_eq!(linspace(3.0, 6.0, 4), vec![3.0, 4.0, 5.0, 6.0]);
    }
}
