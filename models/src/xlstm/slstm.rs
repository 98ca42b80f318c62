//! The sLSTM: scalar memory with exponential gating and block-diagonal recurrent weights
//! ([`SLstmCell`]), and the post-up-projection block with its gated feed-forward network
//! ([`SLstmBlock`]). See [the module docs](super) for the equations.

use burn::module::{Module, Param};
use burn::nn::LayerNorm;
use burn::tensor::{Bool, Device, Tensor, activation};
use rand::SeedableRng;
use serde::{Deserialize, Serialize};

use super::XLstmConfigError;
use super::parts::{
    CausalConv, GatedFeedForward, Headwise, M_EMPTY, head_norm, layer_norm, param, reset_rows_of,
    small_init_std, up_dim,
};

/// What an [`SLstmCell`] carries from one step to the next: per unit the output h, the
/// cell c, the normaliser n and the stabiliser m, each `[batch, heads, 1, head_dim]`.
#[derive(Clone, Debug)]
pub struct SLstmCellState {
    h: Tensor<4>,
    c: Tensor<4>,
    n: Tensor<4>,
    m: Tensor<4>,
}

impl SLstmCellState {
    /// The empty state (h = c = n = 0, m = −∞).
    pub fn empty(batch: usize, heads: usize, head_dim: usize, device: &Device) -> Self {
        let shape = [batch, heads, 1, head_dim];
        SLstmCellState {
            h: Tensor::zeros(shape, device),
            c: Tensor::zeros(shape, device),
            n: Tensor::zeros(shape, device),
            m: Tensor::full(shape, M_EMPTY, device),
        }
    }

    /// Empty the rows where `reset` (`[batch]`) is true.
    pub fn reset_rows(&mut self, reset: &Tensor<1, Bool>) {
        self.h = reset_rows_of(self.h.clone(), reset, 0.0);
        self.c = reset_rows_of(self.c.clone(), reset, 0.0);
        self.n = reset_rows_of(self.n.clone(), reset, 0.0);
        self.m = reset_rows_of(self.m.clone(), reset, M_EMPTY);
    }
}

/// The sLSTM cell's own parameters: block-diagonal recurrent weights R and the gate
/// biases b (the inputs' contributions W·x come from the block). Per step, with gates in
/// the order i, f, z, o and (ĩ, f̃, z̃, õ) = W·x_t + R·h_{t−1} + b:
/// m_t = max(log σ(f̃) + m_{t−1}, ĩ), i' = exp(ĩ − m_t), f' = exp(log σ(f̃) + m_{t−1} − m_t),
/// c_t = f'c_{t−1} + i' tanh(z̃), n_t = f'n_{t−1} + i', h_t = σ(õ) c_t / n_t.
#[derive(Module, Debug)]
pub struct SLstmCell {
    /// `[heads, head_dim, 4 · head_dim]`: per head, h_{t−1} → (i, f, z, o).
    pub(super) recurrent: Param<Tensor<3>>,
    /// `[heads, 4, head_dim]`.
    pub(super) bias: Param<Tensor<3>>,
}

impl SLstmCell {
    /// The official init for block `block_index` of `num_blocks`: R = 0, biases 0 except
    /// the forget gate's "power law, block-dependent" profile over each head's units,
    /// b_f[j] = 5 − 12 (j / (head_dim − 1))^(0.3 + 1.3 · block_index / (num_blocks − 1)),
    /// from 5 (long memory) down to −7.
    fn init(
        heads: usize,
        head_dim: usize,
        block_index: usize,
        num_blocks: usize,
        device: &Device,
    ) -> Self {
        let ratio = if num_blocks > 1 {
            block_index as f64 / (num_blocks - 1) as f64
        } else {
            0.0
        };
        let forget: Vec<f32> = (0..head_dim)
            .map(|j| {
                let x = if head_dim > 1 {
                    j as f64 / (head_dim - 1) as f64
                } else {
                    0.0
                };
                (5.0 - 12.0 * x.powf(0.3 + 1.3 * ratio)) as f32
            })
            .collect();
        let mut bias = vec![0.0; heads * 4 * head_dim];
        for h in 0..heads {
            let at = (h * 4 + 1) * head_dim;
            bias[at..at + head_dim].copy_from_slice(&forget);
        }
        SLstmCell {
            recurrent: param(
                vec![0.0; heads * head_dim * 4 * head_dim],
                [heads, head_dim, 4 * head_dim],
                device,
            ),
            bias: param(bias, [heads, 4, head_dim], device),
        }
    }

    fn heads_and_dim(&self) -> (usize, usize) {
        let [heads, head_dim, _] = self.recurrent.dims();
        (heads, head_dim)
    }

    /// An empty state for `batch` rows.
    pub fn init_state(&self, batch: usize, device: &Device) -> SLstmCellState {
        let (heads, head_dim) = self.heads_and_dim();
        SLstmCellState::empty(batch, heads, head_dim, device)
    }

    /// A whole sequence, one step after another (the sLSTM has no parallel form: in
    /// training this loop is unrolled into the autodiff graph); continues from `state`
    /// and leaves the last step's state in it.
    ///
    /// # Shapes
    /// - `wx` (the inputs' gate contributions W·x, without bias):
    ///   `[batch, seq, heads, 4, head_dim]`, gates in the order i, f, z, o
    /// - output h: `[batch, heads, seq, head_dim]`
    pub fn forward(&self, wx: Tensor<5>, state: &mut SLstmCellState) -> Tensor<4> {
        let [batch, seq, heads, gates, head_dim] = wx.dims();
        let wx = wx + self.bias.val().unsqueeze::<5>();
        let recurrent = self.recurrent.val().unsqueeze::<4>();
        let outputs = (0..seq)
            .map(|t| {
                let wx_t = wx
                    .clone()
                    .narrow(1, t, 1)
                    .reshape([batch, heads, gates, head_dim]);
                self.update(wx_t, &recurrent, state)
            })
            .collect();
        Tensor::cat(outputs, 2)
    }

    /// One step; updates `state`.
    ///
    /// # Shapes
    /// - `wx` (W·x without bias): `[batch, heads, 4, head_dim]`, gates in the order i, f, z, o
    /// - output h: `[batch, heads, 1, head_dim]`
    pub fn step(&self, wx: Tensor<4>, state: &mut SLstmCellState) -> Tensor<4> {
        let wx = wx + self.bias.val().unsqueeze::<4>();
        self.update(wx, &self.recurrent.val().unsqueeze::<4>(), state)
    }

    /// `wxb` = W·x + b, `[batch, heads, 4, head_dim]`; `recurrent` = R as `[1, heads, head_dim, 4·head_dim]`.
    fn update(
        &self,
        wxb: Tensor<4>,
        recurrent: &Tensor<4>,
        state: &mut SLstmCellState,
    ) -> Tensor<4> {
        let [batch, heads, gates, head_dim] = wxb.dims();
        let raw = wxb
            + state
                .h
                .clone()
                .matmul(recurrent.clone())
                .reshape([batch, heads, gates, head_dim]);
        let gate = |g: usize| raw.clone().narrow(2, g, 1);
        let (input, forget, cell, output) = (gate(0), gate(1), gate(2), gate(3));
        let decayed_m = activation::log_sigmoid(forget) + state.m.clone();
        let m = decayed_m.clone().max_pair(input.clone());
        let input = (input - m.clone()).exp();
        let forget = (decayed_m - m.clone()).exp();
        state.c = forget.clone() * state.c.clone() + input.clone() * activation::tanh(cell);
        state.n = forget * state.n.clone() + input;
        state.m = m;
        state.h = activation::sigmoid(output) * state.c.clone() / state.n.clone();
        state.h.clone()
    }
}

/// Builds an [`SLstmBlock`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SLstmBlockConfig {
    /// Width of the residual stream (and of the sLSTM).
    pub d_model: usize,
    /// Heads (the block-diagonal structure of R and of the gate projections).
    pub num_heads: usize,
    /// Causal convolution length for the i and f gates' input (0: no convolution).
    pub conv_kernel: usize,
    /// Feed-forward up-projection factor (the official 1.3).
    pub ffn_proj_factor: f64,
    /// The feed-forward inner width is rounded up to a multiple of this (the official 64).
    pub round_up_to: usize,
    /// Position of this block in the stack (the forget-bias init depends on it).
    pub block_index: usize,
    /// Blocks in the stack (forget-bias init and Wang's init).
    pub num_blocks: usize,
}

impl SLstmBlockConfig {
    /// A block over a `d_model`-wide stream with the official defaults: conv kernel 4,
    /// feed-forward ×1.3 rounded up to a multiple of 64, block 0 of a 1-block stack.
    pub fn new(d_model: usize, num_heads: usize) -> Self {
        SLstmBlockConfig {
            d_model,
            num_heads,
            conv_kernel: 4,
            ffn_proj_factor: 1.3,
            round_up_to: 64,
            block_index: 0,
            num_blocks: 1,
        }
    }

    /// The feed-forward inner width.
    pub fn ffn_inner(&self) -> usize {
        up_dim(self.d_model, self.ffn_proj_factor, self.round_up_to)
    }

    /// Checks the sizes.
    pub fn validate(&self) -> Result<(), XLstmConfigError> {
        super::check_positive("d_model", self.d_model)?;
        super::check_factor("ffn_proj_factor", self.ffn_proj_factor)?;
        super::check_heads("sLSTM width (d_model)", self.d_model, self.num_heads)
    }

    /// The official init, drawn from a generator seeded by `seed`.
    ///
    /// # Panics
    /// If [`validate`](Self::validate) fails.
    pub fn init_seeded(&self, device: &Device, seed: u64) -> SLstmBlock {
        super::expect_valid(self.validate());
        self.init_with(&mut rand_pcg::Pcg64Mcg::seed_from_u64(seed), device)
    }

    pub(super) fn init_with(&self, rng: &mut impl rand::Rng, device: &Device) -> SLstmBlock {
        let (d, heads) = (self.d_model, self.num_heads);
        let head_dim = d / heads;
        let small = small_init_std(d);
        SLstmBlock {
            norm: layer_norm(d, device),
            conv: (self.conv_kernel > 0)
                .then(|| CausalConv::init_seeded(rng, self.conv_kernel, d, device)),
            gates_if: Headwise::init_seeded(rng, heads, head_dim, 2 * head_dim, small, device),
            gates_zo: Headwise::init_seeded(rng, heads, head_dim, 2 * head_dim, small, device),
            cell: SLstmCell::init(heads, head_dim, self.block_index, self.num_blocks, device),
            group_norm: param(vec![1.0; d], [d], device),
            ffn_norm: layer_norm(d, device),
            ffn: GatedFeedForward::init_seeded(rng, d, self.ffn_inner(), self.num_blocks, device),
            num_heads: heads,
        }
    }
}

/// The sLSTM block (the official `sLSTMBlock`): LN → causal conv + SiLU feeding the i and f
/// gates (z and o read the normed input directly), each through block-diagonal per-head
/// projections → [`SLstmCell`] → per-head norm → residual; then LN → gated feed-forward
/// (GELU) → residual.
#[derive(Module, Debug)]
pub struct SLstmBlock {
    pub(super) norm: LayerNorm,
    pub(super) conv: Option<CausalConv>,
    /// Per head `head_dim → 2 · head_dim`: the i and f gates, from the conv path.
    pub(super) gates_if: Headwise,
    /// Per head `head_dim → 2 · head_dim`: the z and o gates, from the normed input.
    pub(super) gates_zo: Headwise,
    pub(super) cell: SLstmCell,
    /// Per-head norm scale, `[d_model]`.
    pub(super) group_norm: Param<Tensor<1>>,
    pub(super) ffn_norm: LayerNorm,
    pub(super) ffn: GatedFeedForward,
    pub(super) num_heads: usize,
}

/// What an [`SLstmBlock`] carries from one token to the next.
#[derive(Clone, Debug)]
pub struct SLstmBlockState {
    cell: SLstmCellState,
    /// The last `conv_kernel − 1` inputs of the convolution.
    conv: Option<Tensor<3>>,
}

impl SLstmBlockState {
    /// Values the state holds (the cell's h, c, n, m and the convolution's window).
    pub fn num_values(&self) -> usize {
        let c = &self.cell;
        [&c.h, &c.c, &c.n, &c.m]
            .iter()
            .map(|t| t.shape().num_elements())
            .sum::<usize>()
            + self.conv.as_ref().map_or(0, |t| t.shape().num_elements())
    }

    /// Forget everything in the rows where `reset` (`[batch]`) is true.
    pub fn reset_rows(&mut self, reset: &Tensor<1, Bool>) {
        self.cell.reset_rows(reset);
        if let Some(conv) = &mut self.conv {
            *conv = reset_rows_of(conv.clone(), reset, 0.0);
        }
    }
}

impl SLstmBlock {
    /// The whole sequence from an empty state, causal (a loop over time for the cell).
    ///
    /// # Shapes
    /// - `x`: `[batch, seq, d_model]`
    /// - output: `[batch, seq, d_model]`
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let [batch, seq, d_model] = x.dims();
        let normed = self.norm.forward(x.clone());
        let conv = match &self.conv {
            Some(conv) => activation::silu(conv.forward(normed.clone())),
            None => normed.clone(),
        };
        let mut state = self.cell.init_state(batch, &x.device());
        let h = self
            .cell
            .forward(self.gate_inputs(normed, conv), &mut state);
        let y = self
            .normalise(h)
            .swap_dims(1, 2)
            .reshape([batch, seq, d_model]);
        self.feed_forward(x + y)
    }

    /// An empty state for `batch` rows.
    pub fn init_state(&self, batch: usize, device: &Device) -> SLstmBlockState {
        SLstmBlockState {
            cell: self.cell.init_state(batch, device),
            conv: self.conv.as_ref().and_then(|c| c.init_state(batch, device)),
        }
    }

    /// One token; updates `state`.
    ///
    /// # Shapes
    /// - `x`: `[batch, d_model]`
    /// - output: `[batch, d_model]`
    pub fn step(&self, x: Tensor<2>, state: &mut SLstmBlockState) -> Tensor<2> {
        let [batch, d_model] = x.dims();
        self.step_token(x.reshape([batch, 1, d_model]), state)
            .reshape([batch, d_model])
    }

    /// [`step`](Self::step) on `[batch, 1, d_model]`.
    pub(super) fn step_token(&self, x: Tensor<3>, state: &mut SLstmBlockState) -> Tensor<3> {
        let [batch, _, d_model] = x.dims();
        let (heads, head_dim) = (self.num_heads, d_model / self.num_heads);
        let normed = self.norm.forward(x.clone());
        let conv = match &self.conv {
            Some(conv) => activation::silu(conv.step(normed.clone(), &mut state.conv)),
            None => normed.clone(),
        };
        let wx = self
            .gate_inputs(normed, conv)
            .reshape([batch, heads, 4, head_dim]);
        let h = self.cell.step(wx, &mut state.cell);
        let y = self.normalise(h).reshape([batch, 1, d_model]);
        self.feed_forward(x + y)
    }

    /// W·x for the four gates, `[batch, seq, heads, 4, head_dim]`.
    fn gate_inputs(&self, normed: Tensor<3>, conv: Tensor<3>) -> Tensor<5> {
        let [batch, seq, d_model] = normed.dims();
        let shape = [batch, seq, self.num_heads, 2, d_model / self.num_heads];
        Tensor::cat(
            vec![
                self.gates_if.forward(conv).reshape(shape),
                self.gates_zo.forward(normed).reshape(shape),
            ],
            3,
        )
    }

    /// The per-head norm of `[batch, heads, seq, head_dim]`.
    fn normalise(&self, h: Tensor<4>) -> Tensor<4> {
        let [_, heads, _, head_dim] = h.dims();
        head_norm(h, self.group_norm.val().reshape([1, heads, 1, head_dim]))
    }

    fn feed_forward(&self, x: Tensor<3>) -> Tensor<3> {
        x.clone() + self.ffn.forward(self.ffn_norm.forward(x))
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{hot_gates, max_abs_diff, random};
    use super::*;

    #[test]
    fn xlstm_slstm_block_parallel_matches_recurrent() {
        let device = crate::cpu();
        let (batch, seq, d_model) = (2, 64, 32);
        let block = hot_gates(SLstmBlockConfig::new(d_model, 4).init_seeded(&device, 7), 8);
        let x = random([batch, seq, d_model], 1.0, 30, &device);
        let parallel = block.forward(x.clone());
        let mut state = block.init_state(batch, &device);
        let steps: Vec<_> = (0..seq)
            .map(|t| {
                block
                    .step(
                        x.clone().narrow(1, t, 1).reshape([batch, d_model]),
                        &mut state,
                    )
                    .reshape([batch, 1, d_model])
            })
            .collect();
        let diff = max_abs_diff(parallel, Tensor::cat(steps, 1));
        eprintln!("sLSTM block: max |sequence − step| = {diff:e}");
        assert!(diff < 1e-4, "{diff}");
    }

    #[test]
    fn xlstm_slstm_cell_stays_finite_at_30() {
        let device = crate::cpu();
        let (batch, seq, heads, head_dim) = (2, 64, 4, 8);
        let cell = SLstmCell::init(heads, head_dim, 0, 1, &device);
        let wx = random([batch, seq, heads, 4, head_dim], 30.0, 40, &device);
        let mut state = cell.init_state(batch, &device);
        let h = cell.forward(wx, &mut state);
        assert!(h.clone().is_finite().all().into_scalar::<bool>());
        // |h| = σ(o)·|c|/n ≤ 1 since |c| ≤ n.
        assert!(h.abs().max().into_scalar::<f32>() <= 1.0 + 1e-5);
    }

    #[test]
    fn xlstm_slstm_forget_bias_profile() {
        let device = crate::cpu();
        let cell = SLstmCell::init(2, 4, 0, 1, &device);
        let bias = cell.bias.val().into_data().try_to_vec::<f32>().unwrap();
        let forget = &bias[4..8];
        assert!((forget[0] - 5.0).abs() < 1e-6 && (forget[3] + 7.0).abs() < 1e-6);
        assert!(forget.windows(2).all(|w| w[0] > w[1]), "{forget:?}");
        assert_eq!(&bias[0..4], &[0.0; 4]);
        assert_eq!(&bias[12..16], &[0.0; 4]);
        assert_eq!(&bias[20..24], forget);
    }
}
