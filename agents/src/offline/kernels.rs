//! Acting with a sequence policy (LRAM, DT) through plain-Rust copies of its parts: the
//! encoders, embeddings and heads as [`MlpWeights`] and tables, the backbone through the
//! step kernels ([`XLstmWeights`], [`GptWeights`]). The same function as the burn path of
//! [`SeqActor`](super::SeqActor) (tested to 1e-4 over episodes longer than the context),
//! without burn's per-operation dispatch and without allocating per token.
//!
//! Covered: vector observations (MLP state encoders), token by token
//! (`inference = "cache"`) or re-running the window for every action
//! (`inference = "window"`: the window's tokens are kept, and for each action the
//! backbone starts afresh and reads them all, which is what burn's parallel forward over
//! the window computes; the Transformer takes them as one block,
//! [`GptWeights::prefill`], the xLSTM steps through them). Not covered, so acting stays
//! on burn: image observations (the Nature-CNN encoder) and a Transformer with
//! cross-attention (RA-DT).

use std::sync::Arc;

use agentry_models::gpt::{GptRustCache, GptScratch, GptWeights};
use agentry_models::inference::{Dense, Norm, Scratch};
use agentry_models::xlstm::{XLstmRustState, XLstmScratch, XLstmWeights};
use agentry_models::{Mlp, MlpWeights};
use burn::nn::Embedding;

use super::{ActionEncoder, Backbone, Encoder, ObsNorm, SeqModel};
use crate::config::{Inference, SeqConfig};
use crate::ppo::ActionKind;

/// The parameters of a sequence policy for plain-Rust acting, shared (read-only) by
/// every actor of the policy.
#[derive(Clone, Debug)]
pub struct SeqKernels {
    d: usize,
    max_timestep: usize,
    /// Per observation family, its state encoder.
    states: Vec<MlpWeights>,
    /// Per family, its action encoder (read when actions are in context).
    actions: Vec<ActionKernel>,
    /// Per family, its head.
    heads: Vec<MlpWeights>,
    rtg: MlpWeights,
    reward: MlpWeights,
    /// `[tasks, d]`.
    task: Option<Vec<f32>>,
    /// `[max_timestep, d]`.
    time: Option<Vec<f32>>,
    norm: Norm,
    backbone: BackboneKernel,
    /// With `inference = "window"`: the tokens a window holds.
    window: Option<usize>,
}

#[derive(Clone, Debug)]
enum ActionKernel {
    /// `[actions, d]`.
    Table(Vec<f32>),
    Linear(MlpWeights),
}

#[derive(Clone, Debug)]
enum BackboneKernel {
    XLstm(XLstmWeights),
    Gpt(GptWeights),
}

/// One episode's state and buffers for [`SeqKernels`]: the backbone's recurrent state or
/// KV cache (one sequence) and working space, all allocated up front.
#[derive(Clone, Debug)]
pub struct KernelRun {
    backbone: BackboneRun,
    /// Per MLP (states, actions, heads, rtg, reward, in [`SeqKernels`] order).
    scratch: Vec<Scratch>,
    token: Vec<f32>,
    out: Vec<f32>,
    /// A scalar or an action's scaled values, as an MLP's input.
    input: Vec<f32>,
    /// The last head output.
    pub(crate) logits: Vec<f32>,
    /// With window inference: the window's normalised tokens, `[keep, d]`, the oldest
    /// first, `held` of them.
    window: Vec<f32>,
    held: usize,
    /// With window inference on a Transformer: the working space and outputs of a
    /// prefill of `keep` tokens.
    prefill: Option<(GptScratch, Vec<f32>)>,
}

#[derive(Clone, Debug)]
enum BackboneRun {
    XLstm(XLstmRustState, XLstmScratch),
    Gpt(GptRustCache, GptScratch),
}

/// Fold `(x − shift) × scale` into the first layer: `W' = diag(scale) W` and
/// `b' = b − shiftᵀ W'`, so the kernels read raw observations.
fn fold_obs_norm(first: &mut Dense, norm: &ObsNorm) {
    let out = first.fan_out;
    for (i, row) in first.weight.chunks_exact_mut(out).enumerate() {
        for w in row.iter_mut() {
            *w *= norm.scale[i];
        }
        for (b, w) in first.bias.iter_mut().zip(row.iter()) {
            *b -= norm.shift[i] * w;
        }
    }
}

fn table(e: &Embedding) -> Vec<f32> {
    e.weight
        .val()
        .into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .expect("an f32 table")
}

impl SeqKernels {
    /// A copy of `model` for plain-Rust acting, or `None` when `config` or the model asks
    /// for something the kernels do not run (see the [module docs](self)).
    pub fn new(model: &SeqModel, config: &SeqConfig) -> Option<SeqKernels> {
        let states = model
            .states
            .iter()
            .zip(&model.obs_norm)
            .map(|(e, norm)| match e {
                Encoder::Mlp(m) => {
                    let mut w = MlpWeights::from_mlp(m);
                    if let Some(n) = norm {
                        fold_obs_norm(&mut w.layers[0], n);
                    }
                    Some(w)
                }
                Encoder::Cnn(_) => None,
            })
            .collect::<Option<Vec<_>>>()?;
        let backbone = match &model.backbone {
            Backbone::XLstm(x) => BackboneKernel::XLstm(XLstmWeights::from_model(x)),
            Backbone::Gpt(g) => BackboneKernel::Gpt(GptWeights::from_model(g).ok()?),
        };
        let mlp = |m: &Mlp| MlpWeights::from_mlp(m);
        Some(SeqKernels {
            d: config.d_model,
            max_timestep: config.max_timestep,
            states,
            actions: model
                .actions
                .iter()
                .map(|a| match a {
                    ActionEncoder::Table(e) => ActionKernel::Table(table(e)),
                    ActionEncoder::Linear(m) => ActionKernel::Linear(mlp(m)),
                })
                .collect(),
            heads: model.heads.iter().map(mlp).collect(),
            rtg: mlp(&model.rtg),
            reward: mlp(&model.reward),
            task: model.task.as_ref().map(table),
            time: model.time.as_ref().map(table),
            norm: Norm::from_layer_norm(&model.norm),
            backbone,
            window: (config.inference == Inference::Window).then(|| super::window_tokens(config)),
        })
    }

    /// The MLPs in the order [`KernelRun::scratch`] holds their scratch.
    fn mlps(&self) -> impl Iterator<Item = &MlpWeights> {
        let actions = self.actions.iter().filter_map(|a| match a {
            ActionKernel::Linear(m) => Some(m),
            ActionKernel::Table(_) => None,
        });
        self.states
            .iter()
            .chain(actions)
            .chain(&self.heads)
            .chain([&self.rtg, &self.reward])
    }

    /// An empty episode's state and buffers.
    pub fn run(&self) -> KernelRun {
        let backbone = match &self.backbone {
            BackboneKernel::XLstm(w) => BackboneRun::XLstm(w.state(1), w.scratch(1)),
            BackboneKernel::Gpt(w) => BackboneRun::Gpt(w.cache(1), w.scratch(1)),
        };
        let widest_in = self.mlps().map(MlpWeights::input_dim).max().unwrap_or(1);
        let widest_head = self.heads.iter().map(MlpWeights::output_dim).max();
        KernelRun {
            backbone,
            scratch: self.mlps().map(MlpWeights::scratch).collect(),
            token: vec![0.0; self.d],
            out: vec![0.0; self.d],
            input: vec![0.0; widest_in],
            logits: Vec::with_capacity(widest_head.unwrap_or(0)),
            window: vec![0.0; self.window.unwrap_or(0) * self.d],
            held: 0,
            prefill: match (&self.backbone, self.window) {
                (BackboneKernel::Gpt(w), Some(keep)) => {
                    Some((w.scratch(keep), vec![0.0; keep * self.d]))
                }
                _ => None,
            },
        }
    }

    fn linear_actions(&self) -> usize {
        self.actions
            .iter()
            .filter(|a| matches!(a, ActionKernel::Linear(_)))
            .count()
    }

    /// Add the row `id` of `table` (if any) to `token`.
    fn add_row(token: &mut [f32], table: &Option<Vec<f32>>, id: usize) {
        if let Some(t) = table {
            let d = token.len();
            token
                .iter_mut()
                .zip(&t[id * d..(id + 1) * d])
                .for_each(|(a, b)| *a += b);
        }
    }

    fn time_row(&self, t: usize) -> usize {
        t.min(self.max_timestep - 1)
    }

    /// Normalise `run.token` and feed it to the backbone, its output in `run.out`: token
    /// by token, or with window inference into the window, whose tokens are run through
    /// a fresh backbone when `output` asks for the output.
    fn feed(&self, run: &mut KernelRun, output: bool) {
        self.norm.apply(&mut run.token);
        let Some(keep) = self.window else {
            Self::step(&self.backbone, &mut run.backbone, &run.token, &mut run.out);
            return;
        };
        let d = self.d;
        if run.held == keep {
            run.window.copy_within(d.., 0);
            run.held -= 1;
        }
        run.window[run.held * d..(run.held + 1) * d].copy_from_slice(&run.token);
        run.held += 1;
        if !output {
            return;
        }
        run.reset_backbone();
        let tokens = &run.window[..run.held * d];
        match (&self.backbone, &mut run.backbone, &mut run.prefill) {
            (BackboneKernel::Gpt(w), BackboneRun::Gpt(cache, _), Some((scratch, outs))) => {
                let outs = &mut outs[..tokens.len()];
                w.prefill(tokens, cache, scratch, outs);
                run.out.copy_from_slice(&outs[outs.len() - d..]);
            }
            (backbone, state, _) => {
                for token in tokens.chunks_exact(d) {
                    Self::step(backbone, state, token, &mut run.out);
                }
            }
        }
    }

    fn step(backbone: &BackboneKernel, run: &mut BackboneRun, token: &[f32], out: &mut [f32]) {
        match (backbone, run) {
            (BackboneKernel::XLstm(w), BackboneRun::XLstm(state, scratch)) => {
                w.step(token, state, scratch, out)
            }
            (BackboneKernel::Gpt(w), BackboneRun::Gpt(cache, scratch)) => {
                w.step(token, cache, scratch, out)
            }
            _ => unreachable!("a run is made by its kernels"),
        }
    }

    /// The state and return-to-go tokens of step `t` of task `task` (observation family
    /// `family`, return scale `scale`); the head's outputs land in `run.logits`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn logits(
        &self,
        run: &mut KernelRun,
        obs: &[f32],
        family: usize,
        task: usize,
        t: usize,
        rtg: f32,
    ) {
        let t = self.time_row(t);
        self.states[family].forward(obs, &mut run.scratch[family], &mut run.token);
        Self::add_row(&mut run.token, &self.task, task);
        Self::add_row(&mut run.token, &self.time, t);
        self.feed(run, false);
        run.input[0] = rtg;
        let rtg_at = self.states.len() + self.linear_actions() + self.heads.len();
        self.rtg
            .forward(&run.input[..1], &mut run.scratch[rtg_at], &mut run.token);
        Self::add_row(&mut run.token, &self.time, t);
        self.feed(run, true);
        let head = &self.heads[family];
        run.logits.resize(head.output_dim(), 0.0);
        let head_at = self.states.len() + self.linear_actions() + family;
        head.forward(&run.out, &mut run.scratch[head_at], &mut run.logits);
    }

    /// The action (if `in_context`) and reward tokens of step `t`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn observe(
        &self,
        run: &mut KernelRun,
        family: usize,
        kind: &ActionKind,
        action: &[f32],
        in_context: bool,
        t: usize,
        reward: f32,
    ) {
        let t = self.time_row(t);
        if in_context {
            match (&self.actions[family], kind) {
                (ActionKernel::Table(e), _) => {
                    let (d, a) = (self.d, action[0] as usize);
                    run.token.copy_from_slice(&e[a * d..(a + 1) * d]);
                }
                (ActionKernel::Linear(m), ActionKind::Continuous { low, high }) => {
                    let n = action.len();
                    for (j, (x, &v)) in run.input[..n].iter_mut().zip(action).enumerate() {
                        *x = super::unit_action(v, low[j], high[j]);
                    }
                    let at = self.states.len()
                        + self.actions[..family]
                            .iter()
                            .filter(|a| matches!(a, ActionKernel::Linear(_)))
                            .count();
                    m.forward(&run.input[..n], &mut run.scratch[at], &mut run.token);
                }
                (ActionKernel::Linear(_), ActionKind::Discrete { .. }) => {
                    unreachable!("discrete actions have a table")
                }
            }
            Self::add_row(&mut run.token, &self.time, t);
            self.feed(run, false);
        }
        run.input[0] = reward;
        let at = self.states.len() + self.linear_actions() + self.heads.len() + 1;
        self.reward
            .forward(&run.input[..1], &mut run.scratch[at], &mut run.token);
        Self::add_row(&mut run.token, &self.time, t);
        self.feed(run, false);
    }
}

impl KernelRun {
    /// Forget the episode (the buffers are kept).
    pub fn reset(&mut self) {
        self.held = 0;
        self.reset_backbone();
    }

    fn reset_backbone(&mut self) {
        match &mut self.backbone {
            BackboneRun::XLstm(state, _) => state.reset(),
            BackboneRun::Gpt(cache, _) => cache.reset(),
        }
    }
}

/// Kernels shared by the actors of one policy, with their run.
pub(crate) type Fast = (Arc<SeqKernels>, Box<KernelRun>);
