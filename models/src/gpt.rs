//! A GPT-style causal Transformer backbone with a key/value cache for step-wise inference:
//! the sequence model of the Decision Transformer (DT) agent, and later of RA-DT.
//!
//! # Architecture
//!
//! [`Gpt`] maps token embeddings `[batch, seq, d_model]` to hidden states of the same
//! shape through `num_layers` pre-LayerNorm blocks and a final LayerNorm:
//!
//! ```text
//! x ← Dropout(x)                                       (GPT-2's embedding dropout)
//! for each block:
//!     x ← x + Dropout(SelfAttention(LN₁(x)))           causal, num_heads heads of d_model / num_heads
//!     x ← x + Dropout(W₂ · act(W₁ · LN₂(x) + b₁) + b₂)  act = GELU or ReLU, width mlp_ratio · d_model
//! y ← LN_f(x)
//! ```
//!
//! There is **no positional embedding** inside: as in DT, the caller adds whatever position
//! signal it wants (a timestep embedding) to the tokens before they enter. Attention is
//! therefore blind to where a key sits, only to what it holds and whether the mask lets it
//! through; that is what lets the cache below be a plain ring buffer.
//!
//! # The attention window
//!
//! Every token attends to itself and to the `context − 1` tokens before it (fewer at the
//! start). For `seq ≤ context` that is ordinary causal attention. [`Gpt::forward`] also
//! accepts `seq > context`: then the mask is a band of width `context` (sliding-window
//! attention), which is exactly what the cached [`Gpt::step`] computes, so a model can be
//! trained on sequences longer than its context with the same semantics it has at
//! inference. [`Gpt::forward_masked`] adds a padding mask (DT left-pads short windows).
//!
//! # Step-wise inference
//!
//! [`Gpt::init_cache`] makes a [`KvCache`]: per layer, keys and values of shape
//! `[batch, heads, context, d_head]`, preallocated and used as a ring buffer. [`Gpt::step`]
//! takes one new token per batch row, computes its query, key and value in every layer,
//! writes the key and value into the slot of the oldest token (in place, `slice_assign` on
//! a uniquely owned tensor) and attends to the filled slots. The order of slots does not
//! matter since attention has no positions. Per step and layer the cost is
//! `O(d_model²)` for the projections and MLP plus `O(len · d_model)` for attention over the
//! `len ≤ context` cached tokens; earlier tokens are never run again.
//! [`Gpt::step_many`] feeds several tokens per row at once (DT feeds 2–3 per environment
//! step) with the same result as that many calls of [`Gpt::step`].
//! [`KvCache::reset_row`] starts a new episode in one row of a batch, which a vectorised
//! actor needs; [`KvCache::reset`] clears every row.
//!
//! **The sliding cache is not a re-run on the last `context` tokens** once more than
//! `context` tokens have been fed and the model has more than one layer. A cached key in
//! layer 2 was computed from a layer-1 state that saw up to `context − 1` tokens before
//! *it*, some of which have left the window since; a fresh run over the window alone would
//! compute that state from fewer tokens. What the cache equals is the banded
//! [`Gpt::forward`] over the whole sequence (tested, to float rounding). For one layer
//! both coincide. A caller that wants DT's original inference (kzl/decision-transformer
//! re-runs the model on the last K steps at every step) calls [`Gpt::forward`] on its own
//! window of tokens instead, at `O(context)` times the cost per step; one that wants
//! train/inference parity with the cache trains on sequences longer than the context.
//!
//! # Relation to DT's GPT-2
//!
//! Follows the HuggingFace GPT-2 of kzl/decision-transformer (`trajectory_gpt2.py`) and
//! ml-jku/RA-DT: pre-LN blocks, fused query/key/value projection, scores scaled by
//! `1/√d_head`, blocked scores set to −10⁴ before the softmax (padding rows therefore get
//! a uniform average instead of NaN), LayerNorm ε = 10⁻⁵, dropout on the input, on the
//! attention weights and on both residual branches, weights `N(0, 0.02)` with the two
//! residual output projections `N(0, 0.02/√(2·num_layers))` (GPT-2's scheme, as RA-DT and
//! nanoGPT initialise; kzl's DT does not rescale), zero biases, LayerNorms at (1, 0).
//! Deviations: no token or position embedding tables (the DT agent owns its embeddings);
//! GELU is the exact erf form (GPT-2 uses the tanh approximation, within 5·10⁻⁴ of it) and
//! ReLU is offered because DT's gym experiments default to it; the causal mask is a band
//! of width `context` rather than a fixed `n_ctx` triangle. As in GPT-2, the key part of
//! the projection bias gets no gradient (a shift shared by all keys of a query cancels in
//! the softmax); it is kept so that the layout matches GPT-2's `c_attn`.
//!
//! # RA-DT
//!
//! RA-DT adds, in every block, a cross-attention sub-layer between the self-attention and
//! the MLP (HF's `GPT2Block`: `x ← x + CrossAttention(LN_cross(x), memory)`). The block
//! code is laid out for it: [`attend`] is the attention kernel shared by every attention,
//! the block's `forward` is the list of residual sub-layers with a marked place for the new
//! one, and the memory's keys and values (fixed during an episode) would be projected once
//! and kept beside the [`KvCache`].
//!
//! # Example
//!
//! ```
//! use agentry_models::burn::tensor::{Distribution, Tensor};
//! use agentry_models::{GptConfig, cpu};
//!
//! let device = cpu();
//! let gpt = GptConfig::new(16, 2, 4, 8).init_seeded(&device, 0).unwrap();
//! let tokens = Tensor::<3>::random([1, 5, 16], Distribution::Normal(0.0, 1.0), &device);
//! let full = gpt.forward(tokens.clone());
//!
//! let mut cache = gpt.init_cache(1, &device);
//! for t in 0..5 {
//!     let x = tokens.clone().slice([0..1, t..t + 1]).reshape([1, 16]);
//!     let y = gpt.step(x, &mut cache);
//!     let want = full.clone().slice([0..1, t..t + 1]).reshape([1, 16]);
//!     assert!((y - want).abs().max().into_scalar::<f32>() < 1e-4);
//! }
//! assert_eq!(cache.len(), 5);
//! ```

use std::fmt;

use burn::module::{Module, Param};
use burn::nn::{Dropout, DropoutConfig, LayerNorm, LayerNormConfig, Linear};
use burn::tensor::{Bool, Device, Tensor, TensorData, activation};
use rand::{Rng, RngExt, SeedableRng};
use rand_distr::StandardNormal;
use serde::{Deserialize, Serialize};

/// Standard deviation of the initial weights (GPT-2's `initializer_range`).
const INIT_STD: f32 = 0.02;
/// The score given to a key a query may not see (HF GPT-2's `masked_bias`).
const BLOCKED: f32 = -1.0e4;

/// The nonlinearity of the blocks' MLPs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GptActivation {
    /// GELU, exact (erf) form: GPT-2's choice (it uses the tanh approximation).
    #[default]
    Gelu,
    /// max(0, x): the default of DT's gym experiments (kzl/decision-transformer).
    Relu,
}

/// Builds a [`Gpt`]; see [the module docs](self).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GptConfig {
    /// Token width.
    pub d_model: usize,
    /// Number of blocks.
    pub num_layers: usize,
    /// Attention heads per block; must divide `d_model`.
    pub num_heads: usize,
    /// Most tokens a token attends to, itself included; also the cache's capacity.
    /// Counted in tokens, not environment steps: DT's K = 20 steps of 3 tokens is 60.
    pub context: usize,
    /// MLP hidden width as a multiple of `d_model` (4 in GPT-2).
    pub mlp_ratio: usize,
    /// Dropout probability on the input, the attention weights and both residual
    /// branches; active only on an autodiff device (DT uses 0.1).
    pub dropout: f64,
    /// The MLP nonlinearity.
    pub activation: GptActivation,
}

/// Why a [`GptConfig`] cannot build a model.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum GptConfigError {
    /// A size that must be positive is zero.
    Zero {
        /// The field's name.
        field: &'static str,
    },
    /// `d_model` is not a multiple of `num_heads`.
    HeadsDoNotDivide {
        /// The token width.
        d_model: usize,
        /// The number of heads.
        num_heads: usize,
    },
    /// `d_model · mlp_ratio` does not fit in a `usize`.
    TooWide,
    /// The dropout probability is not in `[0, 1)`.
    Dropout(f64),
}

impl fmt::Display for GptConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GptConfigError::Zero { field } => write!(f, "gpt: {field} must be at least 1"),
            GptConfigError::HeadsDoNotDivide { d_model, num_heads } => write!(
                f,
                "gpt: d_model = {d_model} is not divisible by num_heads = {num_heads}"
            ),
            GptConfigError::TooWide => write!(f, "gpt: d_model * mlp_ratio overflows"),
            GptConfigError::Dropout(p) => {
                write!(f, "gpt: dropout = {p} must be in [0, 1)")
            }
        }
    }
}

impl std::error::Error for GptConfigError {}

impl GptConfig {
    /// `num_layers` blocks of width `d_model` with `num_heads` heads attending to at most
    /// `context` tokens; MLP ratio 4, no dropout, GELU.
    pub fn new(d_model: usize, num_layers: usize, num_heads: usize, context: usize) -> Self {
        GptConfig {
            d_model,
            num_layers,
            num_heads,
            context,
            mlp_ratio: 4,
            dropout: 0.0,
            activation: GptActivation::Gelu,
        }
    }

    /// Use an MLP hidden width of `ratio · d_model`.
    pub fn with_mlp_ratio(mut self, ratio: usize) -> Self {
        self.mlp_ratio = ratio;
        self
    }

    /// Use dropout probability `p` (see [`dropout`](Self::dropout)).
    pub fn with_dropout(mut self, p: f64) -> Self {
        self.dropout = p;
        self
    }

    /// Use `activation` in the MLPs.
    pub fn with_activation(mut self, activation: GptActivation) -> Self {
        self.activation = activation;
        self
    }

    /// Check the sizes: all positive, `num_heads` divides `d_model`, dropout in `[0, 1)`.
    pub fn validate(&self) -> Result<(), GptConfigError> {
        for (field, value) in [
            ("d_model", self.d_model),
            ("num_layers", self.num_layers),
            ("num_heads", self.num_heads),
            ("context", self.context),
            ("mlp_ratio", self.mlp_ratio),
        ] {
            if value == 0 {
                return Err(GptConfigError::Zero { field });
            }
        }
        if !self.d_model.is_multiple_of(self.num_heads) {
            return Err(GptConfigError::HeadsDoNotDivide {
                d_model: self.d_model,
                num_heads: self.num_heads,
            });
        }
        if self.d_model.checked_mul(self.mlp_ratio).is_none() {
            return Err(GptConfigError::TooWide);
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(GptConfigError::Dropout(self.dropout));
        }
        Ok(())
    }

    /// Build the model on `device` with weights drawn from a generator seeded by `seed`
    /// (GPT-2's initialisation, see [the module docs](self#relation-to-dts-gpt-2)): the
    /// same seed gives the same network on every machine and thread.
    pub fn init_seeded(&self, device: &Device, seed: u64) -> Result<Gpt, GptConfigError> {
        self.validate()?;
        let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(seed);
        let d = self.d_model;
        let hidden = d * self.mlp_ratio;
        // GPT-2: the projections that write into the residual stream start smaller, by
        // 1/√(number of residual branches), so the stream's variance does not grow with depth.
        let out_std = INIT_STD / ((2 * self.num_layers) as f32).sqrt();
        let dropout = || DropoutConfig::new(self.dropout).init();
        let norm = || LayerNormConfig::new(d).init(device);
        let blocks = (0..self.num_layers)
            .map(|_| GptBlock {
                ln_attn: norm(),
                attn: GptAttention {
                    qkv: normal_linear(&mut rng, d, 3 * d, INIT_STD, device),
                    out: normal_linear(&mut rng, d, d, out_std, device),
                    dropout: dropout(),
                    num_heads: self.num_heads,
                },
                ln_mlp: norm(),
                mlp_in: normal_linear(&mut rng, d, hidden, INIT_STD, device),
                mlp_out: normal_linear(&mut rng, hidden, d, out_std, device),
                dropout: dropout(),
                relu: self.activation == GptActivation::Relu,
            })
            .collect();
        Ok(Gpt {
            blocks,
            ln_final: norm(),
            dropout: dropout(),
            d_model: d,
            num_heads: self.num_heads,
            context: self.context,
        })
    }
}

/// A linear layer `fan_in → fan_out` with weights `N(0, std²)` and zero bias.
fn normal_linear(
    rng: &mut impl Rng,
    fan_in: usize,
    fan_out: usize,
    std: f32,
    device: &Device,
) -> Linear {
    let weight: Vec<f32> = (0..fan_in * fan_out)
        .map(|_| std * rng.sample::<f32, _>(StandardNormal))
        .collect();
    Linear {
        weight: Param::from_tensor(Tensor::from_data(
            TensorData::new(weight, [fan_in, fan_out]),
            device,
        )),
        bias: Some(Param::from_tensor(Tensor::zeros([fan_out], device))),
    }
}

/// The GPT backbone; see [the module docs](self) and [`GptConfig`].
#[derive(Module, Debug)]
pub struct Gpt {
    blocks: Vec<GptBlock>,
    ln_final: LayerNorm,
    dropout: Dropout,
    d_model: usize,
    num_heads: usize,
    context: usize,
}

/// One pre-LN block: self-attention and MLP sub-layers, each `x ← x + f(LN(x))`.
#[derive(Module, Debug)]
pub struct GptBlock {
    ln_attn: LayerNorm,
    attn: GptAttention,
    // RA-DT: `ln_cross: Option<LayerNorm>` and `cross: Option<CrossAttention>` go here.
    ln_mlp: LayerNorm,
    mlp_in: Linear,
    mlp_out: Linear,
    dropout: Dropout,
    relu: bool,
}

/// Multi-head self-attention with a fused query/key/value projection.
#[derive(Module, Debug)]
pub struct GptAttention {
    /// `d_model → 3·d_model`: queries, keys, values side by side (GPT-2's `c_attn`).
    qkv: Linear,
    /// `d_model → d_model` after the heads are merged (GPT-2's `c_proj`).
    out: Linear,
    /// On the attention weights.
    dropout: Dropout,
    num_heads: usize,
}

/// Where a self-attention layer takes its keys and values from.
enum Keys<'a> {
    /// From the same tokens (training), under a mask `[batch or 1, 1, seq, seq]`, true
    /// where blocked.
    Own(&'a Tensor<4, Bool>),
    /// From the cache plus the new tokens (inference).
    Cached(&'a mut LayerKv, &'a StepPlan),
}

impl Gpt {
    /// The hidden states of a sequence, with attention causal and limited to the last
    /// `context` tokens ([module docs](self#the-attention-window)).
    ///
    /// # Shapes
    /// - `x`: `[batch, seq, d_model]`, any `seq`
    /// - output: `[batch, seq, d_model]`
    ///
    /// # Panics
    /// If the last dimension of `x` is not `d_model`.
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        self.forward_masked(x, None)
    }

    /// [`forward`](Self::forward) where no token attends to the tokens that `padding`
    /// marks. The outputs at padding positions are meaningless (finite) and should be
    /// left out of any loss; the other outputs do not depend on the padding tokens' values.
    ///
    /// # Shapes
    /// - `x`: `[batch, seq, d_model]`
    /// - `padding`: `[batch, seq]`, true at padding tokens (burn's `mask_pad` convention;
    ///   DT's `attention_mask` is its negation)
    /// - output: `[batch, seq, d_model]`
    ///
    /// # Panics
    /// If the last dimension of `x` is not `d_model`, or `padding` is not `[batch, seq]`.
    pub fn forward_masked(&self, x: Tensor<3>, padding: Option<Tensor<2, Bool>>) -> Tensor<3> {
        let [batch, seq, d] = x.dims();
        assert_eq!(
            d, self.d_model,
            "gpt: tokens of width {d}, expected {}",
            self.d_model
        );
        if seq == 0 {
            return x;
        }
        let device = x.device();
        let positions: Vec<usize> = (0..seq).collect();
        let band = window_mask(&positions, &positions, self.context, &[0], &device);
        let mask = match padding {
            None => band,
            Some(padding) => {
                assert_eq!(padding.dims(), [batch, seq], "gpt: padding mask shape");
                let padding = padding.reshape([batch, 1, 1, seq]);
                let shape = [batch, 1, seq, seq];
                band.expand(shape).bool_or(padding.expand(shape))
            }
        };
        let mut h = self.dropout.forward(x);
        for block in &self.blocks {
            h = block.forward(h, Keys::Own(&mask));
        }
        self.ln_final.forward(h)
    }

    /// An empty cache for `batch` sequences fed through [`step`](Self::step).
    pub fn init_cache(&self, batch: usize, device: &Device) -> KvCache {
        let d_head = self.d_model / self.num_heads;
        let shape = [batch, self.num_heads, self.context, d_head];
        let layers = self
            .blocks
            .iter()
            .map(|_| LayerKv {
                keys: Tensor::zeros(shape, device),
                values: Tensor::zeros(shape, device),
            })
            .collect();
        KvCache {
            layers,
            context: self.context,
            fed: 0,
            starts: vec![0; batch],
            device: device.clone(),
        }
    }

    /// The hidden state of one new token per row, attending to the row's cached tokens
    /// (at most `context − 1`, the oldest dropped); its keys and values enter the cache.
    /// Meant for an inference device (dropout off, no autodiff graph growing in the cache).
    ///
    /// # Shapes
    /// - `x`: `[batch, d_model]`
    /// - output: `[batch, d_model]`
    ///
    /// # Panics
    /// If `x` is not `[cache batch, d_model]` or `cache` was made by a model of another shape.
    pub fn step(&self, x: Tensor<2>, cache: &mut KvCache) -> Tensor<2> {
        let [batch, d] = x.dims();
        self.step_many(x.reshape([batch, 1, d]), cache)
            .reshape([batch, d])
    }

    /// [`step`](Self::step) for `n` new tokens per row at once, the same as `n` calls of
    /// it in order (to float rounding) at the cost of one pass with `n` queries.
    ///
    /// # Shapes
    /// - `x`: `[batch, n, d_model]`
    /// - output: `[batch, n, d_model]`
    ///
    /// # Panics
    /// As [`step`](Self::step).
    pub fn step_many(&self, x: Tensor<3>, cache: &mut KvCache) -> Tensor<3> {
        let [batch, n, d] = x.dims();
        assert_eq!(
            d, self.d_model,
            "gpt: tokens of width {d}, expected {}",
            self.d_model
        );
        assert_eq!(
            batch,
            cache.batch(),
            "gpt: {batch} rows for a cache of {}",
            cache.batch()
        );
        let [_, heads, context, d_head] = cache.layers[0].keys.dims();
        assert!(
            cache.layers.len() == self.blocks.len()
                && [heads, context, d_head] == [self.num_heads, self.context, d / self.num_heads],
            "gpt: the cache was made for another model"
        );
        if n == 0 {
            return x;
        }
        let plan = cache.plan(n);
        let mut h = self.dropout.forward(x);
        for (block, layer) in self.blocks.iter().zip(cache.layers.iter_mut()) {
            h = block.forward(h, Keys::Cached(layer, &plan));
        }
        cache.fed += n;
        self.ln_final.forward(h)
    }

    /// Token width.
    pub fn d_model(&self) -> usize {
        self.d_model
    }

    /// Number of blocks.
    pub fn num_layers(&self) -> usize {
        self.blocks.len()
    }

    /// Attention heads per block.
    pub fn num_heads(&self) -> usize {
        self.num_heads
    }

    /// Most tokens a token attends to, itself included.
    pub fn context(&self) -> usize {
        self.context
    }
}

impl GptBlock {
    /// The residual sub-layers in order.
    ///
    /// # Shapes
    /// - `x`: `[batch, n, d_model]` (`n` new tokens when the keys come from a cache)
    /// - output: `[batch, n, d_model]`
    fn forward(&self, x: Tensor<3>, keys: Keys<'_>) -> Tensor<3> {
        let a = self.attn.forward(self.ln_attn.forward(x.clone()), keys);
        let x = x + self.dropout.forward(a);
        // RA-DT's cross-attention sub-layer goes here:
        // x ← x + dropout(cross.forward(ln_cross(x), memory keys and values, memory mask)).
        let h = self.mlp_in.forward(self.ln_mlp.forward(x.clone()));
        let h = if self.relu {
            activation::relu(h)
        } else {
            activation::gelu(h)
        };
        x + self.dropout.forward(self.mlp_out.forward(h))
    }
}

impl GptAttention {
    /// # Shapes
    /// - `x`: `[batch, n, d_model]`, already normalised
    /// - output: `[batch, n, d_model]`
    fn forward(&self, x: Tensor<3>, keys: Keys<'_>) -> Tensor<3> {
        let [batch, n, d] = x.dims();
        let heads = self.num_heads;
        let d_head = d / heads;
        let qkv = self.qkv.forward(x);
        let split = |i: usize| {
            qkv.clone()
                .narrow(2, i * d, d)
                .reshape([batch, n, heads, d_head])
                .swap_dims(1, 2)
        };
        // Scaling the queries rather than the scores: fewer multiplications when stepping.
        let (q, k, v) = (
            split(0).mul_scalar(1.0 / (d_head as f32).sqrt()),
            split(1),
            split(2),
        );
        let context = match keys {
            Keys::Own(mask) => attend(q, k, v, Some(mask.clone()), &self.dropout),
            Keys::Cached(layer, plan) if plan.n == 1 => {
                // Written first, over the oldest token when full: then every written slot
                // is in the new token's window.
                layer.store(k, v, plan);
                let visible = layer.slots(plan.first + 1);
                attend_blocks(q, vec![visible], plan.mask.clone(), &self.dropout)
            }
            Keys::Cached(layer, plan) => {
                // Written after: the first new tokens still see what the last ones overwrite.
                // The old slots and the new tokens stay separate blocks, so that the cache
                // is read where it lies instead of being copied into one tensor.
                let mut blocks = Vec::with_capacity(2);
                if plan.old > 0 {
                    blocks.push(layer.slots(plan.old));
                }
                blocks.push((k.clone(), v.clone()));
                let context = attend_blocks(q, blocks, plan.mask.clone(), &self.dropout);
                layer.store(k, v, plan);
                context
            }
        };
        self.out
            .forward(context.swap_dims(1, 2).reshape([batch, n, d]))
    }
}

/// Scaled dot-product attention, the kernel every attention layer shares (self-attention
/// now, RA-DT's cross-attention later): `softmax(q kᵀ, blocked → −10⁴) v` with dropout
/// on the weights. `q` must already carry the `1/√d_head` factor.
///
/// # Shapes
/// - `q`: `[batch, heads, n, d_head]`
/// - `k`, `v`: `[batch, heads, m, d_head]`
/// - `mask`: broadcastable to `[batch, heads, n, m]`, true where a query may not look
/// - output: `[batch, heads, n, d_head]`
pub fn attend(
    q: Tensor<4>,
    k: Tensor<4>,
    v: Tensor<4>,
    mask: Option<Tensor<4, Bool>>,
    dropout: &Dropout,
) -> Tensor<4> {
    attend_blocks(q, vec![(k, v)], mask, dropout)
}

/// [`attend`] over keys and values given as consecutive blocks along the key axis (the
/// mask is over all of them, in order), without concatenating them.
fn attend_blocks(
    q: Tensor<4>,
    blocks: Vec<(Tensor<4>, Tensor<4>)>,
    mask: Option<Tensor<4, Bool>>,
    dropout: &Dropout,
) -> Tensor<4> {
    let (sizes, scores): (Vec<usize>, Vec<Tensor<4>>) = blocks
        .iter()
        .map(|(k, _)| (k.dims()[2], q.clone().matmul(k.clone().swap_dims(2, 3))))
        .unzip();
    let scores = if scores.len() == 1 {
        scores.into_iter().next().expect("one block")
    } else {
        Tensor::cat(scores, 3)
    };
    let scores = match mask {
        Some(mask) => scores.mask_fill(mask, BLOCKED),
        None => scores,
    };
    let weights = dropout.forward(activation::softmax(scores, 3));
    if blocks.len() == 1 {
        let (_, v) = blocks.into_iter().next().expect("one block");
        return weights.matmul(v);
    }
    let mut start = 0;
    let mut out: Option<Tensor<4>> = None;
    for ((_, v), size) in blocks.into_iter().zip(sizes) {
        let part = weights.clone().narrow(3, start, size).matmul(v);
        start += size;
        out = Some(match out {
            Some(sum) => sum + part,
            None => part,
        });
    }
    out.expect("at least one block")
}

/// The attention mask for queries at absolute positions `queries` over keys at `keys`:
/// true (blocked) where the key is in the query's future, `context` or more tokens in its
/// past, or before the start of the row's episode (`starts`, one per row, or one for all).
///
/// # Shapes
/// - output: `[starts.len(), 1, queries.len(), keys.len()]`
fn window_mask(
    queries: &[usize],
    keys: &[usize],
    context: usize,
    starts: &[usize],
    device: &Device,
) -> Tensor<4, Bool> {
    let mut blocked = Vec::with_capacity(starts.len() * queries.len() * keys.len());
    for &start in starts {
        for &q in queries {
            // Visible: max(start, q + 1 − context) ≤ p ≤ q.
            let first = start.max((q + 1).saturating_sub(context));
            blocked.extend(keys.iter().map(|&p| p < first || p > q));
        }
    }
    Tensor::from_data(
        TensorData::new(blocked, [starts.len(), 1, queries.len(), keys.len()]),
        device,
    )
}

/// Keys and values of earlier tokens for step-wise inference with [`Gpt::step`].
///
/// Per layer, a ring buffer of `context` slots (`[batch, heads, context, d_head]`): the
/// token at absolute position `p` (counted since the last [`reset`](Self::reset)) lives in
/// slot `p mod context`. All rows advance together; [`reset_row`](Self::reset_row) makes
/// a row forget what it holds. Cloning is cheap (tensors are shared until one copy writes).
#[derive(Clone, Debug)]
pub struct KvCache {
    layers: Vec<LayerKv>,
    context: usize,
    /// Tokens fed since the last reset: the absolute position of the next token.
    fed: usize,
    /// Per row, the absolute position of the first token of its current episode.
    starts: Vec<usize>,
    device: Device,
}

/// One layer's cached keys and values, `[batch, heads, context, d_head]`.
#[derive(Clone, Debug)]
struct LayerKv {
    keys: Tensor<4>,
    values: Tensor<4>,
}

/// What every layer does in one call of [`Gpt::step_many`] (the same in all layers).
struct StepPlan {
    /// Absolute position of the first new token.
    first: usize,
    /// New tokens per row.
    n: usize,
    /// Slots `0..old` hold earlier tokens, which the new ones may see.
    old: usize,
    /// True where a new token may not look, over the keys `[slots 0..old, new tokens]`
    /// (for one new token: over the slots after it is written); `None` if it may look
    /// everywhere.
    mask: Option<Tensor<4, Bool>>,
}

impl KvCache {
    /// Rows (sequences) in the cache.
    pub fn batch(&self) -> usize {
        self.starts.len()
    }

    /// Tokens held, the same for every row: `min(tokens fed since reset, context)`.
    pub fn len(&self) -> usize {
        self.fed.min(self.context)
    }

    /// True before the first step and after [`reset`](Self::reset).
    pub fn is_empty(&self) -> bool {
        self.fed == 0
    }

    /// How many of the held tokens belong to `row`'s current sequence (fed since the
    /// cache's or the row's last reset). The row's next token sees this many earlier
    /// tokens, at most `context − 1` of them.
    ///
    /// # Panics
    /// If `row` is not below [`batch`](Self::batch).
    pub fn row_len(&self, row: usize) -> usize {
        (self.fed - self.starts[row]).min(self.context)
    }

    /// The capacity: the model's context.
    pub fn capacity(&self) -> usize {
        self.context
    }

    /// Values the cache holds (× 4 bytes in f32): keys and values of every layer for
    /// `capacity` tokens, allocated up front.
    pub fn num_values(&self) -> usize {
        self.layers
            .iter()
            .map(|l| l.keys.shape().num_elements() + l.values.shape().num_elements())
            .sum()
    }

    /// The device the cache lives on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Forget every token of every row (the buffers are kept and overwritten).
    pub fn reset(&mut self) {
        self.fed = 0;
        self.starts.iter_mut().for_each(|s| *s = 0);
    }

    /// Forget `row`'s tokens: its next token starts a new sequence, as if alone. The
    /// other rows are untouched.
    ///
    /// # Panics
    /// If `row` is not below [`batch`](Self::batch).
    pub fn reset_row(&mut self, row: usize) {
        self.starts[row] = self.fed;
    }

    /// The absolute position of the token in each of the first `slots` slots, once the
    /// tokens before position `end` have been written.
    fn slot_positions(&self, slots: usize, end: usize) -> Vec<usize> {
        let c = self.context;
        // The newest p < end with p ≡ s (mod c); slots below `slots` are all written.
        (0..slots).map(|s| end - 1 - (end - 1 - s) % c).collect()
    }

    /// The plan for `n` new tokens per row.
    fn plan(&self, n: usize) -> StepPlan {
        let first = self.fed;
        let old = first.min(self.context);
        // Rows reset since the oldest token a new token could see need their own mask.
        let oldest_visible = (first + 1).saturating_sub(self.context);
        let rows_differ = self.starts.iter().any(|&s| s > oldest_visible);
        let starts: &[usize] = if rows_differ { &self.starts } else { &[0] };
        let mask = if n == 1 {
            // The new token is written first (over the oldest one when full), then every
            // written slot is in its window: only a row reset can hide one.
            let slots = (first + 1).min(self.context);
            rows_differ.then(|| {
                let keys = self.slot_positions(slots, first + 1);
                window_mask(&[first], &keys, self.context, starts, &self.device)
            })
        } else {
            let mut keys = self.slot_positions(old, first);
            keys.extend(first..first + n);
            let queries: Vec<usize> = (first..first + n).collect();
            Some(window_mask(
                &queries,
                &keys,
                self.context,
                starts,
                &self.device,
            ))
        };
        StepPlan {
            first,
            n,
            old,
            mask,
        }
    }
}

impl LayerKv {
    /// Write the new tokens' keys and values (`[batch, heads, n, d_head]`) into their
    /// slots: only the last `context` survive, wrapping around the ring at most once.
    fn store(&mut self, k: Tensor<4>, v: Tensor<4>, plan: &StepPlan) {
        let context = self.keys.dims()[2];
        let mut i = plan.n.saturating_sub(context);
        while i < plan.n {
            let slot = (plan.first + i) % context;
            let len = (context - slot).min(plan.n - i);
            if len == plan.n {
                self.write(slot, k.clone(), v.clone());
            } else {
                self.write(
                    slot,
                    k.clone().narrow(2, i, len),
                    v.clone().narrow(2, i, len),
                );
            }
            i += len;
        }
    }

    /// Overwrite slots `slot..slot + n` with `k` and `v` (`[batch, heads, n, d_head]`).
    fn write(&mut self, slot: usize, k: Tensor<4>, v: Tensor<4>) {
        let [batch, heads, n, d_head] = k.dims();
        let range = [0..batch, 0..heads, slot..slot + n, 0..d_head];
        // Moved out (a handle to `k` stands in for a moment), not cloned: a uniquely owned
        // buffer is written in place.
        let keys = std::mem::replace(&mut self.keys, k.clone());
        let values = std::mem::replace(&mut self.values, v.clone());
        self.keys = keys.slice_assign(range.clone(), k);
        self.values = values.slice_assign(range, v);
    }

    /// The keys and values in the first `min(count, context)` slots.
    fn slots(&self, count: usize) -> (Tensor<4>, Tensor<4>) {
        (
            slice_slots(&self.keys, count),
            slice_slots(&self.values, count),
        )
    }
}

/// `t[:, :, 0..min(count, slots)]`, without a copy when that is all of it.
fn slice_slots(t: &Tensor<4>, count: usize) -> Tensor<4> {
    if count >= t.dims()[2] {
        t.clone()
    } else {
        t.clone().narrow(2, 0, count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::module::{ModuleMapper, ModuleVisitor};
    use burn::nn::LinearConfig;
    use burn::optim::{AdamConfig, GradientsParams};

    /// `[batch, seq, d]` standard normal values from a seeded generator.
    fn tokens(seed: u64, [batch, seq, d]: [usize; 3], device: &Device) -> Tensor<3> {
        let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(seed);
        let values: Vec<f32> = (0..batch * seq * d)
            .map(|_| rng.sample(StandardNormal))
            .collect();
        Tensor::from_data(TensorData::new(values, [batch, seq, d]), device)
    }

    /// Multiplies every weight matrix (not the biases or norms) by a factor.
    struct Scale(f32);

    impl ModuleMapper for Scale {
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            let k = self.0;
            if D < 2 {
                param
            } else {
                param.map(|t| t.mul_scalar(k))
            }
        }
    }

    /// A model with weights 15× GPT-2's initial scale. At that scale attention is sharp and
    /// the residual branches are as large as the stream, so a cache that mixes up tokens
    /// cannot hide below the tolerance (at the initial scale, where attention is nearly
    /// uniform and the branches small, even the windowed re-run is within 1e-4).
    fn sharp(config: &GptConfig, seed: u64, device: &Device) -> Gpt {
        config
            .init_seeded(device, seed)
            .unwrap()
            .map(&mut Scale(15.0))
    }

    fn max_diff<const D: usize>(a: Tensor<D>, b: Tensor<D>) -> f32 {
        assert_eq!(a.dims(), b.dims());
        (a - b).abs().max().into_scalar::<f32>()
    }

    /// Row `t` of `[batch, seq, d]`, as `[batch, 1, d]`.
    fn at(x: &Tensor<3>, t: usize) -> Tensor<3> {
        x.clone().narrow(1, t, 1)
    }

    /// Feed `x` through a fresh cache in chunks of the given sizes (1 uses `step`) and
    /// return the outputs in order.
    fn run_cached(gpt: &Gpt, x: &Tensor<3>, chunks: &[usize]) -> Tensor<3> {
        let [batch, seq, d] = x.dims();
        let mut cache = gpt.init_cache(batch, &x.device());
        let mut outs = Vec::new();
        let mut t = 0;
        for &n in chunks.iter().cycle() {
            if t == seq {
                break;
            }
            let n = n.min(seq - t);
            let out = if n == 1 {
                gpt.step(x.clone().narrow(1, t, 1).reshape([batch, d]), &mut cache)
                    .reshape([batch, 1, d])
            } else {
                gpt.step_many(x.clone().narrow(1, t, n), &mut cache)
            };
            outs.push(out);
            t += n;
        }
        assert_eq!(cache.len(), seq.min(gpt.context()));
        Tensor::cat(outs, 1)
    }

    #[test]
    fn cached_steps_match_forward_within_the_context() {
        let device = crate::cpu();
        // Dropout is configured but inactive off an autodiff device.
        let gpt = sharp(&GptConfig::new(32, 2, 4, 32).with_dropout(0.1), 1, &device);
        let x = tokens(2, [2, 20, 32], &device);
        let full = gpt.forward(x.clone());
        for chunks in [&[1][..], &[3], &[2, 1, 5]] {
            let diff = max_diff(run_cached(&gpt, &x, chunks), full.clone());
            eprintln!("within context, chunks {chunks:?}: max |step - forward| = {diff:e}");
            assert!(diff <= 1e-4, "chunks {chunks:?}: {diff}");
        }
    }

    #[test]
    fn sliding_cache_matches_the_banded_forward() {
        let device = crate::cpu();
        let gpt = sharp(&GptConfig::new(32, 2, 4, 32), 3, &device);
        let x = tokens(4, [2, 80, 32], &device);
        let full = gpt.forward(x.clone());
        // 40 > context exercises a chunk that overwrites the whole ring.
        for chunks in [&[1][..], &[3], &[40], &[5, 1, 33]] {
            let diff = max_diff(run_cached(&gpt, &x, chunks), full.clone());
            eprintln!("sliding, chunks {chunks:?}: max |step - banded forward| = {diff:e}");
            assert!(diff <= 1e-4, "chunks {chunks:?}: {diff}");
        }
    }

    /// Step outputs against a fresh forward over only the last `context` tokens.
    fn windowed_rerun_diffs(gpt: &Gpt, x: &Tensor<3>) -> Vec<f32> {
        let [_, seq, _] = x.dims();
        let c = gpt.context();
        let cached = run_cached(gpt, x, &[1]);
        (c..seq)
            .map(|t| {
                let window = gpt.forward(x.clone().narrow(1, t + 1 - c, c));
                max_diff(at(&cached, t), at(&window, c - 1))
            })
            .collect()
    }

    #[test]
    fn one_layer_sliding_cache_equals_a_windowed_rerun() {
        let device = crate::cpu();
        let gpt = sharp(&GptConfig::new(32, 1, 4, 32), 5, &device);
        let x = tokens(6, [2, 80, 32], &device);
        let worst = windowed_rerun_diffs(&gpt, &x)
            .into_iter()
            .fold(0f32, f32::max);
        eprintln!("1 layer: max |step - forward(last 32 tokens)| = {worst:e}");
        assert!(worst <= 1e-4, "{worst}");
    }

    #[test]
    fn deeper_sliding_cache_is_not_a_windowed_rerun() {
        // Pins the documented semantics: past the context, a 2-layer model's cached keys
        // remember tokens that a re-run on the window alone no longer sees.
        let device = crate::cpu();
        let gpt = sharp(&GptConfig::new(32, 2, 4, 32), 5, &device);
        let x = tokens(6, [2, 80, 32], &device);
        let diffs = windowed_rerun_diffs(&gpt, &x);
        let worst = diffs.iter().copied().fold(0f32, f32::max);
        eprintln!("2 layers: max |step - forward(last 32 tokens)| = {worst:e}");
        assert!(worst > 1e-2, "{worst}");
    }

    #[test]
    fn reset_row_starts_that_row_afresh() {
        let device = crate::cpu();
        let gpt = sharp(&GptConfig::new(16, 2, 2, 8), 7, &device);
        let x = tokens(8, [2, 30, 16], &device);
        let mut cache = gpt.init_cache(2, &device);
        let mut outs = Vec::new();
        // Row 1 starts a new episode at token 11, after the ring has wrapped.
        for (t, n) in [(0, 3), (3, 1), (4, 7), (11, 1), (12, 1), (13, 3), (16, 14)] {
            if t == 11 {
                cache.reset_row(1);
                assert_eq!((cache.row_len(0), cache.row_len(1)), (8, 0));
            }
            outs.push(gpt.step_many(x.clone().narrow(1, t, n), &mut cache));
        }
        let cached = Tensor::cat(outs, 1);
        let row = |t: Tensor<3>, r: usize| t.narrow(0, r, 1);
        let whole = gpt.forward(row(x.clone(), 0));
        assert!(max_diff(row(cached.clone(), 0), whole) <= 1e-4);
        let fresh = gpt.forward(row(x.clone(), 1).narrow(1, 11, 19));
        assert!(max_diff(row(cached, 1).narrow(1, 11, 19), fresh) <= 1e-4);

        // A full reset behaves like a new cache.
        cache.reset();
        assert!(cache.is_empty());
        let again = run_cached(&gpt, &x.clone().narrow(1, 0, 5), &[1]);
        let y = gpt.step_many(x.clone().narrow(1, 0, 5), &mut cache);
        assert!(max_diff(y, again) <= 1e-6);
        assert_eq!(cache.len(), 5);
    }

    #[test]
    fn a_cloned_cache_is_independent() {
        // The cache is written in place; a clone must not see the other copy's writes.
        let device = crate::cpu();
        let gpt = sharp(&GptConfig::new(16, 2, 2, 8), 22, &device);
        let x = tokens(23, [1, 12, 16], &device);
        let other = tokens(24, [1, 12, 16], &device);
        let mut cache = gpt.init_cache(1, &device);
        let mut outs = vec![gpt.step_many(x.clone().narrow(1, 0, 6), &mut cache)];
        let mut fork = cache.clone();
        let forked = gpt.step_many(other.clone().narrow(1, 6, 6), &mut fork);
        outs.push(gpt.step_many(x.clone().narrow(1, 6, 6), &mut cache));
        let ours = Tensor::cat(outs, 1);
        assert!(max_diff(ours, gpt.forward(x.clone())) <= 1e-4);
        let theirs = Tensor::cat(vec![x.narrow(1, 0, 6), other.narrow(1, 6, 6)], 1);
        let want = gpt.forward(theirs).narrow(1, 6, 6);
        assert!(max_diff(forked, want) <= 1e-4);
    }

    #[test]
    fn padding_tokens_are_invisible() {
        let device = crate::cpu();
        let gpt = sharp(&GptConfig::new(16, 2, 2, 16), 9, &device);
        let real = tokens(10, [1, 10, 16], &device);
        let pad_mask = Tensor::<2, Bool>::from_data(
            TensorData::new((0..15).map(|t| t < 5).collect::<Vec<_>>(), [1, 15]),
            &device,
        );
        let alone = gpt.forward(real.clone());
        for seed in [11, 12] {
            // Left padding (as DT pads short windows) with arbitrary values.
            let padded = Tensor::cat(vec![tokens(seed, [1, 5, 16], &device), real.clone()], 1);
            let y = gpt.forward_masked(padded, Some(pad_mask.clone()));
            assert!(y.clone().is_finite().all().into_scalar::<bool>());
            assert!(max_diff(y.narrow(1, 5, 10), alone.clone()) <= 1e-4);
        }
    }

    #[test]
    fn forward_is_causal() {
        let device = crate::cpu();
        let gpt = sharp(&GptConfig::new(32, 2, 4, 32), 13, &device);
        let x = tokens(14, [2, 20, 32], &device);
        let changed = x
            .clone()
            .slice_assign([0..2, 12..13, 0..32], tokens(15, [2, 1, 32], &device));
        let (y, z) = (gpt.forward(x), gpt.forward(changed));
        assert_eq!(
            max_diff(y.clone().narrow(1, 0, 12), z.clone().narrow(1, 0, 12)),
            0.0
        );
        for t in 12..20 {
            assert!(
                max_diff(at(&y, t), at(&z, t)) > 1e-3,
                "token {t} ignores token 12"
            );
        }
    }

    /// Every float parameter's gradient, flattened (`None` if it has none).
    struct Grads<'a> {
        grads: &'a GradientsParams,
        out: Vec<Option<Vec<f32>>>,
    }

    impl ModuleVisitor for Grads<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let grad = self.grads.get::<D>(param.id);
            self.out
                .push(grad.map(|g| g.into_data().convert::<f32>().try_to_vec::<f32>().unwrap()));
        }
    }

    #[test]
    fn every_parameter_gets_a_finite_nonzero_gradient() {
        let device = crate::cpu_autodiff();
        let gpt = GptConfig::new(32, 2, 4, 16)
            .with_dropout(0.1)
            .init_seeded(&device, 16)
            .unwrap();
        // Longer than the context: the banded mask is in the graph too.
        let x = tokens(17, [2, 20, 32], &device);
        let w = tokens(18, [2, 20, 32], &device);
        let loss = (gpt.forward(x) * w).sum();
        let grads = GradientsParams::from_grads(loss.backward(), &gpt);
        let mut visitor = Grads {
            grads: &grads,
            out: Vec::new(),
        };
        gpt.visit(&mut visitor);
        // Per block: 2 norms × 2, qkv and out × 2, two MLP layers × 2; the final norm × 2.
        assert_eq!(visitor.out.len(), 2 * 12 + 2);
        for (i, grad) in visitor.out.iter().enumerate() {
            let grad = grad
                .as_ref()
                .unwrap_or_else(|| panic!("parameter {i}: no gradient"));
            assert!(grad.iter().all(|g| g.is_finite()), "parameter {i}");
            assert!(
                grad.iter().any(|&g| g != 0.0),
                "parameter {i}: zero gradient"
            );
        }
    }

    #[test]
    fn bad_configs_are_errors() {
        let device = crate::cpu();
        let ok = GptConfig::new(32, 2, 4, 16);
        assert_eq!(ok.validate(), Ok(()));
        let cases = [
            (
                GptConfig {
                    d_model: 0,
                    ..ok.clone()
                },
                GptConfigError::Zero { field: "d_model" },
            ),
            (
                GptConfig {
                    num_layers: 0,
                    ..ok.clone()
                },
                GptConfigError::Zero {
                    field: "num_layers",
                },
            ),
            (
                GptConfig {
                    num_heads: 0,
                    ..ok.clone()
                },
                GptConfigError::Zero { field: "num_heads" },
            ),
            (
                GptConfig {
                    context: 0,
                    ..ok.clone()
                },
                GptConfigError::Zero { field: "context" },
            ),
            (
                ok.clone().with_mlp_ratio(0),
                GptConfigError::Zero { field: "mlp_ratio" },
            ),
            (
                GptConfig {
                    num_heads: 3,
                    ..ok.clone()
                },
                GptConfigError::HeadsDoNotDivide {
                    d_model: 32,
                    num_heads: 3,
                },
            ),
            (
                ok.clone().with_mlp_ratio(usize::MAX),
                GptConfigError::TooWide,
            ),
            (ok.clone().with_dropout(1.0), GptConfigError::Dropout(1.0)),
            (ok.clone().with_dropout(-0.1), GptConfigError::Dropout(-0.1)),
        ];
        for (config, want) in cases {
            let err = config.init_seeded(&device, 0).unwrap_err();
            assert_eq!(err, want);
            assert!(err.to_string().starts_with("gpt: "));
        }
        assert!(ok.with_dropout(f64::NAN).validate().is_err());
        let msg = GptConfigError::HeadsDoNotDivide {
            d_model: 32,
            num_heads: 3,
        }
        .to_string();
        assert_eq!(msg, "gpt: d_model = 32 is not divisible by num_heads = 3");
    }

    #[test]
    fn init_is_seeded() {
        let device = crate::cpu();
        let config = GptConfig::new(16, 2, 2, 8).with_activation(GptActivation::Relu);
        let x = tokens(19, [1, 6, 16], &device);
        let run = |seed| {
            config
                .init_seeded(&device, seed)
                .unwrap()
                .forward(x.clone())
        };
        assert_eq!(max_diff(run(1), run(1)), 0.0);
        assert!(max_diff(run(1), run(2)) > 1e-3);
    }

    /// Tokens → GPT → token logits, with the one-hot position appended to each token
    /// (the backbone has none).
    #[derive(Module, Debug)]
    struct Copier {
        embed: Linear,
        gpt: Gpt,
        head: Linear,
    }

    #[test]
    fn learns_to_copy_the_token_two_back() {
        const VOCAB: usize = 4;
        const SEQ: usize = 8;
        const LAG: usize = 2;
        const BATCH: usize = 32;
        let device = crate::cpu_autodiff();
        let mut model = Copier {
            embed: LinearConfig::new(VOCAB + SEQ, 32).init(&device),
            gpt: GptConfig::new(32, 1, 2, SEQ)
                .init_seeded(&device, 20)
                .unwrap(),
            head: LinearConfig::new(32, VOCAB).init(&device),
        };
        let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(21);
        let mut batch = || {
            let ids: Vec<usize> = (0..BATCH * SEQ)
                .map(|_| rng.random_range(0..VOCAB))
                .collect();
            let mut x = vec![0f32; BATCH * SEQ * (VOCAB + SEQ)];
            let mut y = vec![0f32; BATCH * (SEQ - LAG) * VOCAB];
            for (i, &id) in ids.iter().enumerate() {
                let (b, t) = (i / SEQ, i % SEQ);
                x[i * (VOCAB + SEQ) + id] = 1.0;
                x[i * (VOCAB + SEQ) + VOCAB + t] = 1.0;
                if t >= LAG {
                    y[(b * (SEQ - LAG) + t - LAG) * VOCAB + ids[i - LAG]] = 1.0;
                }
            }
            (
                Tensor::<3>::from_data(TensorData::new(x, [BATCH, SEQ, VOCAB + SEQ]), &device),
                Tensor::<3>::from_data(TensorData::new(y, [BATCH, SEQ - LAG, VOCAB]), &device),
            )
        };
        let predict = |model: &Copier, x: Tensor<3>| {
            let h = model.gpt.forward(model.embed.forward(x));
            model.head.forward(h.narrow(1, LAG, SEQ - LAG))
        };
        let mut opt = AdamConfig::new().init();
        for _ in 0..300 {
            let (x, y) = batch();
            let log_p = activation::log_softmax(predict(&model, x), 2);
            let loss = -(log_p * y).sum().div_scalar((BATCH * (SEQ - LAG)) as f32);
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = opt.step(1e-2, model, grads);
        }
        let (x, y) = batch();
        let guess = predict(&model, x).argmax(2);
        let truth = y.argmax(2);
        let accuracy = guess.equal(truth).float().mean().into_scalar::<f32>();
        eprintln!("copy {LAG} back: accuracy {accuracy}");
        assert!(accuracy > 0.95, "accuracy {accuracy}");
    }

    /// Every float parameter's path in the record, shape and a weighted sum of its values.
    struct Layout {
        path: Vec<String>,
        out: Vec<(String, Vec<usize>, f64)>,
    }

    impl ModuleVisitor for Layout {
        fn enter_module(&mut self, name: &str, _container_type: &str) {
            self.path.push(name.to_string());
        }

        fn exit_module(&mut self, _name: &str, _container_type: &str) {
            self.path.pop();
        }

        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let t = param.val();
            let values = t
                .clone()
                .into_data()
                .convert::<f64>()
                .try_to_vec::<f64>()
                .unwrap();
            let sum = values
                .iter()
                .enumerate()
                .map(|(i, v)| v * ((i % 7) as f64 + 1.0))
                .sum();
            self.out.push((self.path.join("."), t.dims().to_vec(), sum));
        }
    }

    fn layout(gpt: &Gpt) -> Vec<(String, Vec<usize>, f64)> {
        let mut visitor = Layout {
            path: Vec::new(),
            out: Vec::new(),
        };
        gpt.visit(&mut visitor);
        visitor.out
    }

    #[test]
    fn a_model_without_cross_attention_is_as_before() {
        // Golden values printed by this code (commit 338b66b), to pin the parameters,
        // record layout and outputs of a seeded model before cross-attention is added.
        let device = crate::cpu();
        let gpt = GptConfig::new(16, 2, 2, 8).init_seeded(&device, 3).unwrap();
        assert_eq!(gpt.num_params(), 6592);
        // (path, shape, Σ value·(i mod 7 + 1)); biases and LayerNorm shifts start at 0.
        let block = |i: usize, sums: [f64; 4]| {
            let p = |name: &str| format!("blocks.{i}.{name}");
            vec![
                (p("ln_attn.gamma"), vec![16], 59.0),
                (p("ln_attn.beta"), vec![16], 0.0),
                (p("attn.qkv.weight"), vec![16, 48], sums[0]),
                (p("attn.qkv.bias"), vec![48], 0.0),
                (p("attn.out.weight"), vec![16, 16], sums[1]),
                (p("attn.out.bias"), vec![16], 0.0),
                (p("ln_mlp.gamma"), vec![16], 59.0),
                (p("ln_mlp.beta"), vec![16], 0.0),
                (p("mlp_in.weight"), vec![16, 64], sums[2]),
                (p("mlp_in.bias"), vec![64], 0.0),
                (p("mlp_out.weight"), vec![64, 16], sums[3]),
                (p("mlp_out.bias"), vec![16], 0.0),
            ]
        };
        let mut want = block(
            0,
            [
                -3.119295586e-1,
                1.200159752e0,
                -1.148861311e0,
                2.613882267e0,
            ],
        );
        want.extend(block(
            1,
            [
                -4.347022001e0,
                5.946288037e-1,
                9.230512498e-1,
                2.525765046e0,
            ],
        ));
        want.push(("ln_final.gamma".into(), vec![16], 59.0));
        want.push(("ln_final.beta".into(), vec![16], 0.0));
        let got = layout(&gpt);
        assert_eq!(got.len(), want.len());
        for ((path, shape, sum), (want_path, want_shape, want_sum)) in got.iter().zip(&want) {
            assert_eq!((path, shape), (want_path, want_shape));
            assert!(
                (sum - want_sum).abs() <= 1e-6,
                "{path}: {sum} vs {want_sum}"
            );
        }

        let x = tokens(4, [2, 6, 16], &device);
        let y: Vec<f32> = gpt.forward(x).into_data().try_to_vec().unwrap();
        let sum: f64 = y
            .iter()
            .enumerate()
            .map(|(i, &v)| v as f64 * ((i % 5) as f64 - 2.0))
            .sum();
        assert!((sum - 1.734581264e1).abs() <= 1e-4, "{sum}");
        let first = [-1.1189086f32, 1.160859, 0.90386796, -0.5211154];
        for (a, b) in y.iter().zip(first) {
            assert!((a - b).abs() <= 1e-5, "{a} vs {b}");
        }
    }
}
