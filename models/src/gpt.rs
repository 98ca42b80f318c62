//! A GPT-style causal Transformer backbone with a key/value cache for step-wise inference:
//! the sequence model of the Decision Transformer (DT) agent and, with cross-attention to
//! a memory of retrieved sub-trajectories, of the Retrieval-Augmented DT (RA-DT).
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
//!     x ← x + Dropout(CrossAttention(LN_cross(x), M))  only with cross-attention and a memory M
//!     x ← x + Dropout(W₂ · act(W₁ · LN₂(x) + b₁) + b₂)  act = GELU or ReLU, width mlp_ratio · d_model
//! y ← LN_f(x)
//! ```
//!
//! The cross-attention sub-layer exists only in a model built with
//! [`GptConfig::with_cross_attention`]; see [below](self#cross-attention-ra-dt).
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
//! [`GptWeights`] ([`kernel`]) runs the same single-token step in plain Rust on a copy of
//! the parameters with its own preallocated cache, without burn's per-operation overhead
//! (no cross-attention, one token per call).
//!
//! **With a memory** (cross-attention): RA-DT retrieves and then acts, so the memory is
//! fixed across many steps. [`KvCache::set_memory`] projects the memory's keys and values
//! once per layer and keeps them (`2 · num_layers · batch · m · d_model` values, counted by
//! [`KvCache::num_values`]), at a cost of `2 · num_layers · batch · m · d_model²`
//! multiply-adds; from then on every [`Gpt::step`] and [`Gpt::step_many`] also runs the
//! cross-attention, adding per new token and layer `2 · d_model²` for its query and output
//! projections and `O(m · d_model)` for attending to the memory, and nothing that grows
//! with the steps taken. [`KvCache::clear_memory`] goes back to no memory. Resets keep the
//! memory: retrieval is the caller's decision.
//!
//! The memory may change at any time (call [`KvCache::set_memory`] again, e.g. when the
//! agent refreshes its retrieval). Each token is processed with the memory in force when it
//! is fed; the cached keys and values of earlier tokens are not recomputed. For one layer
//! that makes the outputs after a change equal [`Gpt::forward_with_memory`] with the new
//! memory; with more layers the earlier tokens' cached keys still carry what they read
//! from the old memory (tested against a per-token reference). RA-DT's official inference
//! re-runs the model on its whole window with the current retrieval at every step; a caller
//! that wants exactly that calls [`Gpt::forward_with_memory`] on its window instead.
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
//! # Cross-attention (RA-DT)
//!
//! RA-DT (Schmied et al. 2024, ml-jku/RA-DT) lets the DT read retrieved sub-trajectories
//! through a cross-attention sub-layer in every block, between the self-attention and the
//! MLP, as HF's `GPT2Block` with `add_cross_attention`. With
//! [`GptConfig::with_cross_attention`] each block gets `LN_cross` and a [`GptCrossAttention`]:
//! queries `W_q · LN_cross(x)` from the block's stream, keys and values `W_kv · m` from the
//! memory tokens `m`, `num_heads` heads, an output projection, the same kernel [`attend`]
//! and the same dropouts (on the weights and on the residual branch) as the self-attention.
//!
//! - **The memory** ([`Memory`]) is a sequence of `d_model`-wide tokens per row,
//!   `[batch, m, d_model]`, with an optional padding mask `[batch, m]` (true = padding).
//!   It is not causally masked: every query sees every non-padding memory token of its row.
//!   Every layer reads the same tokens as given, with no LayerNorm, dropout or position of
//!   its own (HF's `encoder_hidden_states`): the caller embeds them. RA-DT embeds the
//!   retrieved steps into return/state/action tokens with its own copies of the DT's
//!   embeddings, adds timestep and memory-position embeddings and applies the embedding
//!   LayerNorm; the memory's padding is the retrieved trajectories' attention mask.
//! - **Rows without memory**: a row whose memory is empty (`m = 0`) or all padding gets no
//!   contribution: its sub-layer output is exactly zero, so it computes what the model
//!   without the sub-layer computes, and nothing flows back through the sub-layer from it.
//!   [`Gpt::forward_with_memory`] with no memory at all does the same for every row.
//!   (HF and RA-DT instead give such a row the average of the padding tokens' values.)
//!   Padding tokens are blocked with −10⁴ like the self-attention's, a weight that
//!   underflows to exactly 0, so their values never matter.
//! - **Parameters**: the new sub-layers are `Option` fields, so a model built without
//!   cross-attention has exactly the parameters, record and outputs it had before they
//!   existed. With it, the generator first draws every other weight as before and then
//!   the cross-attention's (`W_q`, `W_kv` from `N(0, 0.02)`, the output projection from
//!   `N(0, 0.02/√(2·num_layers))` as RA-DT's `c_proj`), so for one seed the two models
//!   share their other weights; a checkpoint of a model without cross-attention loads into
//!   one with it via `ModuleRecord::allow_partial`, the new sub-layers keeping their
//!   initialisation (what HF does when it adds cross-attention to a pretrained GPT-2).
//! - **Cost** of [`Gpt::forward_with_memory`], per layer, on top of [`Gpt::forward`]:
//!   `2·batch·m·d_model²` multiply-adds to project the memory's keys and values,
//!   `2·batch·seq·d_model²` for the queries and the output projection, and
//!   `2·batch·seq·m·d_model` for the attention itself.
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
//!
//! With cross-attention, the cache holds the memory's keys and values once:
//!
//! ```
//! use agentry_models::burn::tensor::{Bool, Distribution, Tensor};
//! use agentry_models::gpt::{GptConfig, Memory};
//! use agentry_models::cpu;
//!
//! let device = cpu();
//! let gpt = GptConfig::new(16, 2, 4, 8)
//!     .with_cross_attention(true)
//!     .init_seeded(&device, 0)
//!     .unwrap();
//! let tokens = Tensor::<3>::random([2, 5, 16], Distribution::Normal(0.0, 1.0), &device);
//! // Two rows of 6 memory tokens; the last two of row 1 are padding.
//! let padding = Tensor::<2, Bool>::from_data(
//!     [[false; 6], [false, false, false, false, true, true]],
//!     &device,
//! );
//! let memory = Memory::new(Tensor::random([2, 6, 16], Distribution::Normal(0.0, 1.0), &device))
//!     .with_padding(padding);
//! let full = gpt.forward_with_memory(tokens.clone(), Some(memory.clone()));
//!
//! let mut cache = gpt.init_cache(2, &device);
//! cache.set_memory(&gpt, memory);
//! assert_eq!(cache.memory_len(), 6);
//! let stepped = gpt.step_many(tokens, &mut cache);
//! assert!((stepped - full).abs().max().into_scalar::<f32>() < 1e-4);
//! ```

use std::fmt;

pub mod kernel;
pub use kernel::{GptRustCache, GptScratch, GptWeights, GptWeightsError};

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
    /// Give every block a cross-attention sub-layer reading a [`Memory`] (RA-DT); see
    /// [the module docs](self#cross-attention-ra-dt). Off by default (and when absent
    /// from a serialized config).
    #[serde(default)]
    pub cross_attention: bool,
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
    /// `context` tokens; MLP ratio 4, no dropout, GELU, no cross-attention.
    pub fn new(d_model: usize, num_layers: usize, num_heads: usize, context: usize) -> Self {
        GptConfig {
            d_model,
            num_layers,
            num_heads,
            context,
            mlp_ratio: 4,
            dropout: 0.0,
            activation: GptActivation::Gelu,
            cross_attention: false,
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

    /// Give every block a cross-attention sub-layer (RA-DT) if `on`; see
    /// [`cross_attention`](Self::cross_attention).
    pub fn with_cross_attention(mut self, on: bool) -> Self {
        self.cross_attention = on;
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
    /// same seed gives the same network on every machine and thread. The cross-attention's
    /// weights, if any, are drawn after all others, so they leave the rest unchanged.
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
        let mut blocks: Vec<GptBlock> = (0..self.num_layers)
            .map(|_| GptBlock {
                ln_attn: norm(),
                attn: GptAttention {
                    qkv: normal_linear(&mut rng, d, 3 * d, INIT_STD, device),
                    out: normal_linear(&mut rng, d, d, out_std, device),
                    dropout: dropout(),
                    num_heads: self.num_heads,
                },
                ln_cross: None,
                cross: None,
                ln_mlp: norm(),
                mlp_in: normal_linear(&mut rng, d, hidden, INIT_STD, device),
                mlp_out: normal_linear(&mut rng, hidden, d, out_std, device),
                dropout: dropout(),
                relu: self.activation == GptActivation::Relu,
            })
            .collect();
        if self.cross_attention {
            // Drawn last: the other weights are those of the same seed without it.
            for block in &mut blocks {
                block.ln_cross = Some(norm());
                block.cross = Some(GptCrossAttention {
                    q: normal_linear(&mut rng, d, d, INIT_STD, device),
                    kv: normal_linear(&mut rng, d, 2 * d, INIT_STD, device),
                    out: normal_linear(&mut rng, d, d, out_std, device),
                    dropout: dropout(),
                    num_heads: self.num_heads,
                });
            }
        }
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

/// One pre-LN block: self-attention, cross-attention (optional) and MLP sub-layers, each
/// `x ← x + f(LN(x))`.
#[derive(Module, Debug)]
pub struct GptBlock {
    ln_attn: LayerNorm,
    attn: GptAttention,
    /// `None` without cross-attention: then the record has no entry for it.
    ln_cross: Option<LayerNorm>,
    cross: Option<GptCrossAttention>,
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

/// Multi-head cross-attention: queries from the block's stream, keys and values from the
/// memory tokens (HF GPT-2's attention with `is_cross_attention`).
#[derive(Module, Debug)]
pub struct GptCrossAttention {
    /// `d_model → d_model`: the queries (GPT-2's `q_attn`).
    q: Linear,
    /// `d_model → 2·d_model`: the memory's keys and values side by side (GPT-2's `c_attn`
    /// of a cross-attention).
    kv: Linear,
    /// `d_model → d_model` after the heads are merged (GPT-2's `c_proj`).
    out: Linear,
    /// On the attention weights.
    dropout: Dropout,
    num_heads: usize,
}

/// What every block's cross-attention reads: a sequence of `d_model`-wide tokens per batch
/// row, some of which may be padding. See [the module docs](self#cross-attention-ra-dt).
///
/// Cloning is cheap (tensors are shared).
#[derive(Clone, Debug)]
pub struct Memory {
    /// `[batch, m, d_model]`, used as given by every layer (the caller embeds them,
    /// position information included).
    pub tokens: Tensor<3>,
    /// `[batch, m]`, true at padding tokens, which no query sees; `None` if there are none.
    pub padding: Option<Tensor<2, Bool>>,
}

impl Memory {
    /// A memory of `tokens` (`[batch, m, d_model]`) without padding.
    pub fn new(tokens: Tensor<3>) -> Self {
        Memory {
            tokens,
            padding: None,
        }
    }

    /// Mark the tokens where `padding` (`[batch, m]`) is true as padding.
    pub fn with_padding(mut self, padding: Tensor<2, Bool>) -> Self {
        self.padding = Some(padding);
        self
    }
}

/// One layer's keys and values of the memory, `[batch, heads, m, d_head]`.
#[derive(Clone, Debug)]
struct MemoryKv {
    keys: Tensor<4>,
    values: Tensor<4>,
}

/// The part of a memory that every layer shares: which tokens a query may not see and
/// which rows get no contribution.
#[derive(Clone, Debug)]
struct MemoryMask {
    /// `[batch, 1, 1, m]`, true at padding; `None` where nothing is padding.
    blocked: Option<Tensor<4, Bool>>,
    /// `[batch, 1, 1]`: 1 for a row with a real memory token, 0 for a row of padding only;
    /// `None` where every row has one.
    gate: Option<Tensor<3>>,
}

impl MemoryMask {
    /// From a padding mask `[batch, m]`, without reading it back from the device.
    fn new(padding: Option<Tensor<2, Bool>>) -> Self {
        match padding {
            None => MemoryMask {
                blocked: None,
                gate: None,
            },
            Some(padding) => {
                let [batch, m] = padding.dims();
                let real = padding.clone().bool_not().any_dim(1).float();
                MemoryMask {
                    blocked: Some(padding.reshape([batch, 1, 1, m])),
                    gate: Some(real.reshape([batch, 1, 1])),
                }
            }
        }
    }

    /// As [`new`](Self::new), dropping what the padding mask does not need (read once
    /// from the device: for a memory that serves many steps).
    fn checked(padding: Option<Tensor<2, Bool>>) -> Self {
        let Some(padding) = padding else {
            return MemoryMask::new(None);
        };
        let [batch, m] = padding.dims();
        let flags = padding
            .clone()
            .into_data()
            .try_to_vec::<bool>()
            .expect("a bool tensor");
        let rows: Vec<&[bool]> = flags.chunks(m).collect();
        debug_assert_eq!(rows.len(), batch);
        if !flags.iter().any(|&p| p) {
            return MemoryMask::new(None);
        }
        let mut mask = MemoryMask::new(Some(padding));
        if rows.iter().all(|row| row.iter().any(|&p| !p)) {
            mask.gate = None;
        }
        mask
    }
}

/// A memory as the blocks read it: per layer its keys and values, and the shared mask.
struct MemoryView<'a> {
    kv: &'a MemoryKv,
    mask: &'a MemoryMask,
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
        self.forward_masked_with_memory(x, padding, None)
    }

    /// [`forward`](Self::forward) where every block's cross-attention reads `memory`
    /// ([module docs](self#cross-attention-ra-dt)): every token sees all of its row's
    /// non-padding memory tokens. A row whose memory is empty or all padding, and every row
    /// when `memory` is `None`, gets no cross-attention contribution.
    ///
    /// # Shapes
    /// - `x`: `[batch, seq, d_model]`
    /// - `memory.tokens`: `[batch, m, d_model]`, any `m`; `memory.padding`: `[batch, m]`
    /// - output: `[batch, seq, d_model]`
    ///
    /// # Panics
    /// If the shapes do not fit, or `memory` is given to a model built without
    /// cross-attention.
    pub fn forward_with_memory(&self, x: Tensor<3>, memory: Option<Memory>) -> Tensor<3> {
        self.forward_masked_with_memory(x, None, memory)
    }

    /// [`forward_masked`](Self::forward_masked) and
    /// [`forward_with_memory`](Self::forward_with_memory) at once: `padding` (`[batch, seq]`)
    /// masks the sequence's own tokens, `memory.padding` the memory's.
    ///
    /// # Panics
    /// As those two.
    pub fn forward_masked_with_memory(
        &self,
        x: Tensor<3>,
        padding: Option<Tensor<2, Bool>>,
        memory: Option<Memory>,
    ) -> Tensor<3> {
        let [batch, seq, d] = x.dims();
        assert_eq!(
            d, self.d_model,
            "gpt: tokens of width {d}, expected {}",
            self.d_model
        );
        let memory = memory.and_then(|memory| self.check_memory(memory, batch));
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
        let memory = memory.map(|memory| (memory.tokens, MemoryMask::new(memory.padding)));
        let mut h = self.dropout.forward(x);
        for block in &self.blocks {
            h = match &memory {
                None => block.forward(h, Keys::Own(&mask), None),
                Some((tokens, mask_m)) => {
                    let kv = block.cross().memory_kv(tokens.clone());
                    let view = MemoryView {
                        kv: &kv,
                        mask: mask_m,
                    };
                    block.forward(h, Keys::Own(&mask), Some(view))
                }
            };
        }
        self.ln_final.forward(h)
    }

    /// Whether the blocks have cross-attention ([`GptConfig::with_cross_attention`]).
    pub fn has_cross_attention(&self) -> bool {
        self.blocks.iter().all(|b| b.cross.is_some())
    }

    /// Check a memory's shapes against the model and a batch of `batch` rows; `None` if it
    /// has no tokens (then it contributes nothing).
    fn check_memory(&self, memory: Memory, batch: usize) -> Option<Memory> {
        assert!(
            self.has_cross_attention(),
            "gpt: a memory given to a model built without cross-attention"
        );
        let [rows, m, d] = memory.tokens.dims();
        assert!(
            rows == batch && d == self.d_model,
            "gpt: memory of shape [{rows}, {m}, {d}] for {batch} rows of width {}",
            self.d_model
        );
        if let Some(padding) = &memory.padding {
            assert_eq!(padding.dims(), [batch, m], "gpt: memory padding mask shape");
        }
        (m > 0).then_some(memory)
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
            memory: None,
            context: self.context,
            fed: 0,
            starts: vec![0; batch],
            device: device.clone(),
        }
    }

    /// The hidden state of one new token per row, attending to the row's cached tokens
    /// (at most `context − 1`, the oldest dropped) and, with cross-attention, to the memory
    /// the cache holds ([`KvCache::set_memory`]); its keys and values enter the cache.
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
        let memory = cache.memory.as_ref();
        for (i, (block, layer)) in self.blocks.iter().zip(cache.layers.iter_mut()).enumerate() {
            let view = memory.map(|memory| MemoryView {
                kv: &memory.layers[i],
                mask: &memory.mask,
            });
            h = block.forward(h, Keys::Cached(layer, &plan), view);
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
    /// The residual sub-layers in order; the cross-attention only with a memory.
    ///
    /// # Shapes
    /// - `x`: `[batch, n, d_model]` (`n` new tokens when the keys come from a cache)
    /// - output: `[batch, n, d_model]`
    fn forward(&self, x: Tensor<3>, keys: Keys<'_>, memory: Option<MemoryView<'_>>) -> Tensor<3> {
        let x = self.self_attention_sublayer(x, keys);
        let x = match memory {
            Some(memory) => self.cross_attention_sublayer(x, memory),
            None => x,
        };
        self.mlp_sublayer(x)
    }

    /// `x + Dropout(SelfAttention(LN₁(x)))`.
    fn self_attention_sublayer(&self, x: Tensor<3>, keys: Keys<'_>) -> Tensor<3> {
        let a = self.attn.forward(self.ln_attn.forward(x.clone()), keys);
        x + self.dropout.forward(a)
    }

    /// `x + Dropout(CrossAttention(LN_cross(x), memory))`, the branch zeroed in rows
    /// without a real memory token.
    fn cross_attention_sublayer(&self, x: Tensor<3>, memory: MemoryView<'_>) -> Tensor<3> {
        let ln = self
            .ln_cross
            .as_ref()
            .expect("cross-attention without its LayerNorm");
        let c = self.cross().forward(
            ln.forward(x.clone()),
            memory.kv,
            memory.mask.blocked.clone(),
        );
        let c = match &memory.mask.gate {
            Some(gate) => c * gate.clone(),
            None => c,
        };
        x + self.dropout.forward(c)
    }

    /// `x + Dropout(W₂ · act(W₁ · LN₂(x) + b₁) + b₂)`.
    fn mlp_sublayer(&self, x: Tensor<3>) -> Tensor<3> {
        let h = self.mlp_in.forward(self.ln_mlp.forward(x.clone()));
        let h = if self.relu {
            activation::relu(h)
        } else {
            activation::gelu(h)
        };
        x + self.dropout.forward(self.mlp_out.forward(h))
    }

    /// The cross-attention; the callers have checked that the model has one.
    fn cross(&self) -> &GptCrossAttention {
        self.cross
            .as_ref()
            .expect("gpt: a memory given to a model built without cross-attention")
    }
}

impl GptCrossAttention {
    /// The memory's keys and values for this layer.
    ///
    /// # Shapes
    /// - `memory`: `[batch, m, d_model]`
    /// - output: keys and values, `[batch, heads, m, d_head]` each
    fn memory_kv(&self, memory: Tensor<3>) -> MemoryKv {
        let [batch, m, d] = memory.dims();
        let heads = self.num_heads;
        let kv = self.kv.forward(memory);
        let split = |i: usize| {
            kv.clone()
                .narrow(2, i * d, d)
                .reshape([batch, m, heads, d / heads])
                .swap_dims(1, 2)
        };
        MemoryKv {
            keys: split(0),
            values: split(1),
        }
    }

    /// # Shapes
    /// - `x`: `[batch, n, d_model]`, already normalised
    /// - `blocked`: `[batch, 1, 1, m]`, true at the memory's padding
    /// - output: `[batch, n, d_model]`
    fn forward(
        &self,
        x: Tensor<3>,
        memory: &MemoryKv,
        blocked: Option<Tensor<4, Bool>>,
    ) -> Tensor<3> {
        let [batch, n, d] = x.dims();
        let heads = self.num_heads;
        let d_head = d / heads;
        let q = self
            .q
            .forward(x)
            .reshape([batch, n, heads, d_head])
            .swap_dims(1, 2)
            .mul_scalar(1.0 / (d_head as f32).sqrt());
        let context = attend(
            q,
            memory.keys.clone(),
            memory.values.clone(),
            blocked,
            &self.dropout,
        );
        self.out
            .forward(context.swap_dims(1, 2).reshape([batch, n, d]))
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
/// and RA-DT's cross-attention): `softmax(q kᵀ, blocked → −10⁴) v` with dropout on the
/// weights. `q` must already carry the `1/√d_head` factor.
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
/// a row forget what it holds. With cross-attention it may also hold a memory's keys and
/// values ([`set_memory`](Self::set_memory)). Cloning is cheap (tensors are shared until
/// one copy writes).
#[derive(Clone, Debug)]
pub struct KvCache {
    layers: Vec<LayerKv>,
    /// The memory every step's cross-attention reads, if any.
    memory: Option<CacheMemory>,
    context: usize,
    /// Tokens fed since the last reset: the absolute position of the next token.
    fed: usize,
    /// Per row, the absolute position of the first token of its current episode.
    starts: Vec<usize>,
    device: Device,
}

/// A memory as the cache keeps it: per layer its keys and values, and the shared mask.
#[derive(Clone, Debug)]
struct CacheMemory {
    layers: Vec<MemoryKv>,
    mask: MemoryMask,
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
    /// `capacity` tokens, allocated up front, plus those of the memory if one is set.
    pub fn num_values(&self) -> usize {
        let tokens: usize = self
            .layers
            .iter()
            .map(|l| l.keys.shape().num_elements() + l.values.shape().num_elements())
            .sum();
        let memory: usize = self
            .memory
            .iter()
            .flat_map(|m| &m.layers)
            .map(|l| l.keys.shape().num_elements() + l.values.shape().num_elements())
            .sum();
        tokens + memory
    }

    /// Make every following [`Gpt::step`] and [`Gpt::step_many`] cross-attend to `memory`,
    /// whose keys and values are computed here, once per layer, with `gpt` (which must be
    /// the model that steps); it replaces any memory set before. A memory of no tokens is
    /// no memory. See [the module docs](self#step-wise-inference) for the cost and what a
    /// change of memory mid-sequence means. Call it on an inference device: the keys and
    /// values are kept as computed.
    ///
    /// # Shapes
    /// - `memory.tokens`: `[batch, m, d_model]`, `batch` the cache's; `memory.padding`:
    ///   `[batch, m]`
    ///
    /// # Panics
    /// If `gpt` has no cross-attention, was not the model that made the cache (in its
    /// shape), or the memory's shapes do not fit.
    pub fn set_memory(&mut self, gpt: &Gpt, memory: Memory) {
        assert!(
            gpt.blocks.len() == self.layers.len()
                && gpt.context == self.context
                && gpt.num_heads == self.layers[0].keys.dims()[1],
            "gpt: the cache was made for another model"
        );
        self.memory = gpt
            .check_memory(memory, self.batch())
            .map(|memory| CacheMemory {
                layers: gpt
                    .blocks
                    .iter()
                    .map(|block| block.cross().memory_kv(memory.tokens.clone()))
                    .collect(),
                mask: MemoryMask::checked(memory.padding),
            });
    }

    /// Forget the memory: the following steps have no cross-attention contribution.
    pub fn clear_memory(&mut self) {
        self.memory = None;
    }

    /// Tokens in the memory ([`set_memory`](Self::set_memory)) per row, padding included;
    /// 0 without one.
    pub fn memory_len(&self) -> usize {
        self.memory
            .as_ref()
            .map_or(0, |m| m.layers[0].keys.dims()[2])
    }

    /// The device the cache lives on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Forget every token of every row (the buffers are kept and overwritten). The memory
    /// stays.
    pub fn reset(&mut self) {
        self.fed = 0;
        self.starts.iter_mut().for_each(|s| *s = 0);
    }

    /// Forget `row`'s tokens: its next token starts a new sequence, as if alone. The
    /// other rows and the memory are untouched.
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

    /// Multiplies every weight matrix (not the biases or norms) by a factor (also used by
    /// the step kernel's tests).
    pub(super) struct Scale(pub(super) f32);

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
        run_cached_with(gpt, x, chunks, None)
    }

    /// [`run_cached`] with `memory` set in the cache first.
    fn run_cached_with(
        gpt: &Gpt,
        x: &Tensor<3>,
        chunks: &[usize],
        memory: Option<Memory>,
    ) -> Tensor<3> {
        let [batch, seq, d] = x.dims();
        let mut cache = gpt.init_cache(batch, &x.device());
        if let Some(memory) = memory {
            cache.set_memory(gpt, memory);
        }
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

    // Cross-attention (RA-DT).

    /// `[batch, m]` padding flags: row `r` is padding where `rows[r]` is true.
    fn flags(rows: &[Vec<bool>], device: &Device) -> Tensor<2, Bool> {
        let m = rows[0].len();
        let values: Vec<bool> = rows.iter().flatten().copied().collect();
        Tensor::from_data(TensorData::new(values, [rows.len(), m]), device)
    }

    /// A memory of `m` seeded tokens per row, the last `pads[r]` of row `r` padding.
    fn memory(seed: u64, [batch, m, d]: [usize; 3], pads: &[usize], device: &Device) -> Memory {
        let rows: Vec<Vec<bool>> = (0..batch)
            .map(|r| (0..m).map(|j| j + pads[r] >= m).collect())
            .collect();
        Memory::new(tokens(seed, [batch, m, d], device)).with_padding(flags(&rows, device))
    }

    fn cross_config() -> GptConfig {
        GptConfig::new(32, 2, 4, 16).with_cross_attention(true)
    }

    fn all_finite(t: Tensor<3>) -> bool {
        t.is_finite().all().into_scalar::<bool>()
    }

    #[test]
    fn cached_steps_with_memory_match_forward_with_memory() {
        let device = crate::cpu();
        let gpt = sharp(&cross_config().with_dropout(0.1), 30, &device);
        // Longer than the context (16): the sliding cache too. Row 2's memory is all padding.
        let x = tokens(31, [3, 40, 32], &device);
        let mem = memory(32, [3, 10, 32], &[0, 3, 10], &device);
        let full = gpt.forward_with_memory(x.clone(), Some(mem.clone()));
        assert!(all_finite(full.clone()));
        let mut cache = gpt.init_cache(3, &device);
        let without = cache.num_values();
        cache.set_memory(&gpt, mem.clone());
        assert_eq!(cache.memory_len(), 10);
        // Keys and values of 10 tokens × 32 wide, in 2 layers and 3 rows.
        assert_eq!(cache.num_values(), without + 2 * 2 * 3 * 10 * 32);
        cache.clear_memory();
        assert_eq!((cache.memory_len(), cache.num_values()), (0, without));
        for chunks in [&[1][..], &[3], &[2, 1, 5], &[20]] {
            let cached = run_cached_with(&gpt, &x, chunks, Some(mem.clone()));
            let diff = max_diff(cached, full.clone());
            eprintln!(
                "with memory, chunks {chunks:?}: max |step - forward_with_memory| = {diff:e}"
            );
            assert!(diff <= 1e-4, "chunks {chunks:?}: {diff}");
        }
    }

    #[test]
    fn sequence_padding_and_memory_combine() {
        let device = crate::cpu();
        let gpt = sharp(&cross_config(), 60, &device);
        let real = tokens(61, [1, 10, 32], &device);
        let mem = memory(62, [1, 6, 32], &[2], &device);
        let alone = gpt.forward_with_memory(real.clone(), Some(mem.clone()));
        let padded = Tensor::cat(vec![tokens(63, [1, 5, 32], &device), real], 1);
        let pad_mask = flags(&[(0..15).map(|t| t < 5).collect()], &device);
        let y = gpt.forward_masked_with_memory(padded, Some(pad_mask), Some(mem));
        assert!(max_diff(y.narrow(1, 5, 10), alone) <= 1e-4);
    }

    #[test]
    fn self_attention_stays_causal_with_memory() {
        let device = crate::cpu();
        let gpt = sharp(&cross_config(), 33, &device);
        let x = tokens(34, [2, 20, 32], &device);
        let mem = memory(35, [2, 6, 32], &[0, 2], &device);
        let changed = x
            .clone()
            .slice_assign([0..2, 12..13, 0..32], tokens(36, [2, 1, 32], &device));
        let y = gpt.forward_with_memory(x, Some(mem.clone()));
        let z = gpt.forward_with_memory(changed, Some(mem));
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

    #[test]
    fn memory_is_read_and_its_padding_is_invisible() {
        let device = crate::cpu();
        let gpt = sharp(&cross_config(), 37, &device);
        let x = tokens(38, [2, 12, 32], &device);
        let real = tokens(39, [2, 6, 32], &device);
        let without = gpt.forward_with_memory(x.clone(), None);
        let with = gpt.forward_with_memory(x.clone(), Some(Memory::new(real.clone())));
        let other = gpt.forward_with_memory(
            x.clone(),
            Some(Memory::new(tokens(40, [2, 6, 32], &device))),
        );
        let mut least = f32::INFINITY;
        for t in 0..12 {
            let read = max_diff(at(&with, t), at(&without, t));
            let which = max_diff(at(&with, t), at(&other, t));
            least = least.min(read).min(which);
            assert!(read > 1e-3 && which > 1e-3, "token {t}: {read} {which}");
        }
        eprintln!("memory read: min over tokens of max |change| = {least:e}");

        // The same real tokens with 3 padding tokens of arbitrary values: after them in row
        // 0, before them in row 1.
        let row = |t: &Tensor<3>, r: usize| t.clone().narrow(0, r, 1);
        let padding = flags(
            &[
                (0..9).map(|j| j >= 6).collect(),
                (0..9).map(|j| j < 3).collect(),
            ],
            &device,
        );
        for seed in [41, 42] {
            let junk = tokens(seed, [2, 3, 32], &device).mul_scalar(10.0);
            let padded = Tensor::cat(
                vec![
                    Tensor::cat(vec![row(&real, 0), row(&junk, 0)], 1),
                    Tensor::cat(vec![row(&junk, 1), row(&real, 1)], 1),
                ],
                0,
            );
            let memory = Memory::new(padded).with_padding(padding.clone());
            let y = gpt.forward_with_memory(x.clone(), Some(memory.clone()));
            let diff = max_diff(y, with.clone());
            eprintln!("padded memory (junk seed {seed}): max |y - unpadded| = {diff:e}");
            assert!(diff <= 1e-5, "{diff}");
            let stepped = run_cached_with(&gpt, &x, &[1, 4], Some(memory));
            assert!(max_diff(stepped, with.clone()) <= 1e-4);
        }
    }

    #[test]
    fn rows_without_memory_get_no_contribution() {
        let device = crate::cpu();
        let gpt = sharp(&cross_config(), 43, &device);
        // Same seed without cross-attention: the same other weights (drawn first).
        let plain = sharp(&GptConfig::new(32, 2, 4, 16), 43, &device);
        let x = tokens(44, [2, 10, 32], &device);
        let none = gpt.forward_with_memory(x.clone(), None);
        let diff = max_diff(none.clone(), plain.forward(x.clone()));
        eprintln!("no memory vs the model without cross-attention: {diff:e}");
        assert!(diff <= 1e-6, "{diff}");

        let empty = Memory::new(Tensor::zeros([2, 0, 32], &device));
        let y = gpt.forward_with_memory(x.clone(), Some(empty.clone()));
        assert_eq!(max_diff(y, none.clone()), 0.0);

        // Row 0's memory is all padding, row 1's all real.
        let mem = memory(45, [2, 5, 32], &[5, 0], &device);
        let y = gpt.forward_with_memory(x.clone(), Some(mem.clone()));
        assert!(all_finite(y.clone()));
        let row = |t: Tensor<3>, r: usize| t.narrow(0, r, 1);
        let diff = max_diff(row(y.clone(), 0), row(none.clone(), 0));
        eprintln!("all-padding row vs no memory: {diff:e}");
        assert!(diff <= 1e-6, "{diff}");
        let alone = gpt.forward_with_memory(
            row(x.clone(), 1),
            Some(Memory::new(row(mem.tokens.clone(), 1))),
        );
        assert!(max_diff(row(y.clone(), 1), alone) <= 1e-5);
        assert!(max_diff(row(y, 1), row(none.clone(), 1)) > 1e-3);

        // The same through the cache.
        let stepped = run_cached_with(&gpt, &x, &[1, 3], Some(mem));
        assert!(max_diff(row(stepped, 0), row(none.clone(), 0)) <= 1e-4);
        let mut cache = gpt.init_cache(2, &device);
        cache.set_memory(&gpt, empty);
        assert_eq!(cache.memory_len(), 0);
        assert!(max_diff(gpt.step_many(x, &mut cache), none) <= 1e-4);
    }

    /// The hidden states when the tokens from `phases[i].0` on (up to the next phase) read
    /// memory `phases[i].1`: what a cache computes when the memory changes between steps,
    /// built here from the blocks' sub-layers over the whole sequence at once.
    fn phased_reference(gpt: &Gpt, x: Tensor<3>, phases: &[(usize, Option<Memory>)]) -> Tensor<3> {
        let [_, seq, _] = x.dims();
        let positions: Vec<usize> = (0..seq).collect();
        let mask = window_mask(&positions, &positions, gpt.context, &[0], &x.device());
        let mut h = x;
        for block in &gpt.blocks {
            h = block.self_attention_sublayer(h, Keys::Own(&mask));
            let parts = phases
                .iter()
                .enumerate()
                .map(|(i, (start, memory))| {
                    let end = phases.get(i + 1).map_or(seq, |next| next.0);
                    let part = h.clone().narrow(1, *start, end - start);
                    match memory {
                        None => part,
                        Some(memory) => {
                            let kv = block.cross().memory_kv(memory.tokens.clone());
                            let mask = MemoryMask::new(memory.padding.clone());
                            block.cross_attention_sublayer(
                                part,
                                MemoryView {
                                    kv: &kv,
                                    mask: &mask,
                                },
                            )
                        }
                    }
                })
                .collect();
            h = block.mlp_sublayer(Tensor::cat(parts, 1));
        }
        gpt.ln_final.forward(h)
    }

    /// Feed `x` through a fresh cache, setting each phase's memory (or clearing it) before
    /// its first token, in chunks of 1 and 4.
    fn run_phased(gpt: &Gpt, x: &Tensor<3>, phases: &[(usize, Option<Memory>)]) -> Tensor<3> {
        let [batch, seq, _] = x.dims();
        let mut cache = gpt.init_cache(batch, &x.device());
        let mut outs = Vec::new();
        for (i, (start, memory)) in phases.iter().enumerate() {
            match memory {
                Some(memory) => cache.set_memory(gpt, memory.clone()),
                None => cache.clear_memory(),
            }
            let end = phases.get(i + 1).map_or(seq, |next| next.0);
            let mut t = *start;
            for n in [1, 4].into_iter().cycle() {
                if t == end {
                    break;
                }
                let n = n.min(end - t);
                outs.push(gpt.step_many(x.clone().narrow(1, t, n), &mut cache));
                t += n;
            }
        }
        Tensor::cat(outs, 1)
    }

    #[test]
    fn memory_can_change_mid_sequence() {
        let device = crate::cpu();
        let x = tokens(46, [2, 40, 32], &device);
        let a = memory(47, [2, 7, 32], &[0, 2], &device);
        let b = memory(48, [2, 4, 32], &[1, 0], &device);
        let phases = [
            (0, Some(a.clone())),
            (13, Some(b.clone())),
            (27, None),
            (33, Some(a)),
        ];

        let gpt = sharp(&cross_config(), 49, &device);
        let cached = run_phased(&gpt, &x, &phases);
        let diff = max_diff(cached.clone(), phased_reference(&gpt, x.clone(), &phases));
        eprintln!("memory changed mid-sequence: max |step - per-token reference| = {diff:e}");
        assert!(diff <= 1e-4, "{diff}");
        // With two layers the tokens after the change still see what earlier tokens read
        // from the old memory: not a re-run with the new one.
        let rerun = gpt.forward_with_memory(x.clone(), Some(b.clone()));
        let stale = max_diff(cached.narrow(1, 13, 14), rerun.narrow(1, 13, 14));
        eprintln!("2 layers: max |step - forward_with_memory(new memory)| = {stale:e}");
        assert!(stale > 1e-2, "{stale}");

        // With one layer the keys do not depend on the memory: a re-run with the new one.
        let one = sharp(
            &GptConfig::new(32, 1, 4, 16).with_cross_attention(true),
            50,
            &device,
        );
        let cached = run_phased(&one, &x, &phases);
        let rerun = one.forward_with_memory(x.clone(), Some(b));
        let diff = max_diff(cached.narrow(1, 13, 14), rerun.narrow(1, 13, 14));
        eprintln!("1 layer: max |step - forward_with_memory(new memory)| = {diff:e}");
        assert!(diff <= 1e-4, "{diff}");
    }

    #[test]
    fn every_parameter_gets_a_gradient_with_cross_attention() {
        let device = crate::cpu_autodiff();
        let gpt = cross_config()
            .with_dropout(0.1)
            .init_seeded(&device, 51)
            .unwrap();
        let x = tokens(52, [3, 20, 32], &device);
        let w = tokens(53, [3, 20, 32], &device);
        // Row 1 has two padding tokens, row 2 only padding.
        let mem = memory(54, [3, 6, 32], &[0, 2, 6], &device);
        let mem_tokens = mem.tokens.clone().require_grad();
        let mem = Memory {
            tokens: mem_tokens.clone(),
            ..mem
        };
        let loss = (gpt.forward_with_memory(x, Some(mem)) * w).sum();
        let grads = loss.backward();
        let g = mem_tokens.grad(&grads).expect("a gradient for the memory");
        let g: Vec<f32> = g.into_data().convert::<f32>().try_to_vec().unwrap();
        assert!(g.iter().all(|v| v.is_finite()));
        // [3, 6, 32] row-major: the padding tokens get exactly nothing, the others some.
        for (r, pads) in [0usize, 2, 6].into_iter().enumerate() {
            for j in 0..6 {
                let token = &g[(r * 6 + j) * 32..(r * 6 + j + 1) * 32];
                let padding = j + pads >= 6;
                assert_eq!(
                    token.iter().all(|&v| v == 0.0),
                    padding,
                    "memory row {r} token {j}"
                );
            }
        }
        let grads = GradientsParams::from_grads(grads, &gpt);
        let mut visitor = Grads {
            grads: &grads,
            out: Vec::new(),
        };
        gpt.visit(&mut visitor);
        // Per block: 12 as without, plus ln_cross, q, kv and out × 2; the final norm × 2.
        assert_eq!(visitor.out.len(), 2 * 20 + 2);
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
        // Golden values printed by the code before cross-attention existed (commit 338b66b):
        // parameter paths, shapes, weights and outputs of a seeded model.
        let device = crate::cpu();
        let gpt = GptConfig::new(16, 2, 2, 8).init_seeded(&device, 3).unwrap();
        assert!(!gpt.has_cross_attention());
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

    #[test]
    fn a_checkpoint_without_cross_attention_loads_into_a_model_with_it() {
        let device = crate::cpu();
        let plain = GptConfig::new(16, 2, 2, 8)
            .init_seeded(&device, 55)
            .unwrap();
        let bytes = plain.clone().into_record().into_bytes().unwrap();
        let fresh = GptConfig::new(16, 2, 2, 8)
            .with_cross_attention(true)
            .init_seeded(&device, 56)
            .unwrap();
        // 4·d² + 6·d per block: ln_cross 2·d, q d² + d, kv 2·d² + 2·d, out d² + d.
        assert_eq!(
            fresh.num_params(),
            plain.num_params() + 2 * (4 * 256 + 6 * 16)
        );
        let record = burn::store::ModuleRecord::from_bytes(bytes).unwrap();
        assert!(fresh.clone().try_load_record(record.clone()).is_err());
        let loaded = fresh.try_load_record(record.allow_partial(true)).unwrap();
        assert!(loaded.has_cross_attention());
        let x = tokens(57, [1, 6, 16], &device);
        assert_eq!(
            max_diff(
                loaded.forward_with_memory(x.clone(), None),
                plain.forward(x)
            ),
            0.0
        );
    }

    /// Sequence tokens and memory tokens → GPT with cross-attention → token logits.
    #[derive(Module, Debug)]
    struct Reader {
        embed: Linear,
        embed_memory: Linear,
        gpt: Gpt,
        head: Linear,
    }

    #[test]
    fn learns_to_copy_a_token_that_is_only_in_the_memory() {
        // Memory slot j holds a random id; the token at position t must output the id in
        // slot t mod SLOTS, which only the memory holds. One more memory token, padding,
        // claims a random slot with a random id: it must not be read.
        const VOCAB: usize = 4;
        const SLOTS: usize = 4;
        const SEQ: usize = 8;
        const BATCH: usize = 32;
        const M: usize = SLOTS + 1;
        let device = crate::cpu_autodiff();
        let mut model = Reader {
            embed: LinearConfig::new(SLOTS + SEQ, 32).init(&device),
            embed_memory: LinearConfig::new(VOCAB + SLOTS, 32).init(&device),
            gpt: GptConfig::new(32, 1, 2, SEQ)
                .with_cross_attention(true)
                .init_seeded(&device, 58)
                .unwrap(),
            head: LinearConfig::new(32, VOCAB).init(&device),
        };
        let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(59);
        let mut batch = || {
            let mut x = vec![0f32; BATCH * SEQ * (SLOTS + SEQ)];
            let mut mem = vec![0f32; BATCH * M * (VOCAB + SLOTS)];
            let mut pad = vec![false; BATCH * M];
            let mut y = vec![0f32; BATCH * SEQ * VOCAB];
            for b in 0..BATCH {
                let ids: Vec<usize> = (0..SLOTS).map(|_| rng.random_range(0..VOCAB)).collect();
                for (j, &id) in ids.iter().enumerate() {
                    mem[(b * M + j) * (VOCAB + SLOTS) + id] = 1.0;
                    mem[(b * M + j) * (VOCAB + SLOTS) + VOCAB + j] = 1.0;
                }
                let decoy = (b * M + SLOTS) * (VOCAB + SLOTS);
                mem[decoy + rng.random_range(0..VOCAB)] = 1.0;
                mem[decoy + VOCAB + rng.random_range(0..SLOTS)] = 1.0;
                pad[b * M + SLOTS] = true;
                for t in 0..SEQ {
                    x[(b * SEQ + t) * (SLOTS + SEQ) + t % SLOTS] = 1.0;
                    x[(b * SEQ + t) * (SLOTS + SEQ) + SLOTS + t] = 1.0;
                    y[(b * SEQ + t) * VOCAB + ids[t % SLOTS]] = 1.0;
                }
            }
            let memory =
                Tensor::<3>::from_data(TensorData::new(mem, [BATCH, M, VOCAB + SLOTS]), &device);
            (
                Tensor::<3>::from_data(TensorData::new(x, [BATCH, SEQ, SLOTS + SEQ]), &device),
                memory,
                Tensor::<2, Bool>::from_data(TensorData::new(pad, [BATCH, M]), &device),
                Tensor::<3>::from_data(TensorData::new(y, [BATCH, SEQ, VOCAB]), &device),
            )
        };
        let predict = |model: &Reader, x: Tensor<3>, memory: Tensor<3>, pad| {
            let memory = Memory::new(model.embed_memory.forward(memory)).with_padding(pad);
            let h = model
                .gpt
                .forward_with_memory(model.embed.forward(x), Some(memory));
            model.head.forward(h)
        };
        let mut opt = AdamConfig::new().init();
        for _ in 0..300 {
            let (x, memory, pad, y) = batch();
            let log_p = activation::log_softmax(predict(&model, x, memory, pad), 2);
            let loss = -(log_p * y).sum().div_scalar((BATCH * SEQ) as f32);
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = opt.step(1e-2, model, grads);
        }
        let (x, memory, pad, y) = batch();
        let guess = predict(&model, x, memory, pad).argmax(2);
        let accuracy = guess.equal(y.argmax(2)).float().mean().into_scalar::<f32>();
        eprintln!("copy from memory: accuracy {accuracy}");
        assert!(accuracy > 0.95, "accuracy {accuracy}");
    }
}
