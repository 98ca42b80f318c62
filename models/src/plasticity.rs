//! Remedies for plasticity loss that every learner can switch on from `[plasticity]`,
//! and the per-layer measurements that show whether a network is losing it.
//!
//! A learner holds one [`Plasticity`] per optimizer and calls it around each step:
//!
//! ```text
//! update(new data):    plasticity.begin_update(model)      // soft reset: drift toward θ₀
//!   every step:        plasticity.regularise(&model, &mut grads)   // L2 to 0 or to θ₀
//!                      let before = plasticity.before_step(&model);
//!                      model = optimizer.step(lr * plasticity.lr_scale(), model, grads);
//!                      model = plasticity.after_step(model, lr, before); // AdamW decay, NaP, ELR
//!   on a schedule:     hard_reset / shrink_perturb / redo  (with a freshly initialised copy)
//! ```
//!
//! The network describes itself through [`Layered`]: its layers (the unit of reporting,
//! of NaP and of resets) and its hidden units (for dormant-unit counts and ReDo).
//! Parameters are addressed by their position in the module's visiting order, which only
//! depends on the architecture, so a restored checkpoint or a freshly initialised copy
//! lines up with the initial parameters θ₀ kept here.
//!
//! What each remedy does, as we read the papers (`papers.md`; choices we made are noted):
//! - **Weight decay** ([`DecayKind`]): decoupled (AdamW: θ ← θ − η·λ·θ after the step),
//!   L2 toward zero (λ·θ added to the gradient) or L2 toward the initial parameters
//!   (λ·(θ − θ₀); Kumar et al.'s "regenerative" regularisation). Applied to the layers'
//!   weights and biases, never to layer-norm scales and offsets (decaying a scale toward
//!   zero would fight the normalisation).
//! - **Normalize-and-Project** (Lyle et al. 2024): a layer followed by a layer norm is
//!   invariant to scaling its weights and bias together, LN(c(Wx + b)) = LN(Wx + b);
//!   after each step (W, b), taken as one vector, is projected back to its initial norm,
//!   and each layer norm's (scale, offset) pair likewise. Output layers (no norm after
//!   them) are not projected. With the norms fixed, the learning rate and its schedule
//!   set the effective learning rate.
//! - **Soft parameter reset** (Galashov et al. 2024): on each batch of new data the
//!   parameters take one Ornstein–Uhlenbeck step toward their initial distribution
//!   N(μ₀, σ₀²) (μ₀, σ₀ the mean and standard deviation of each initial tensor):
//!   θ' = γθ + (1 − γ)μ₀ + √(1 − γ²)·σ₀·ε, ε ~ N(0, I) from the learner's seed; the
//!   steps on that data use the learning rate times γ² + (1 − γ²)/s. γ (one per layer,
//!   starting at 1, kept above `soft_reset_gamma_min` > 0) is learned by gradient
//!   descent on the loss: dL/dγ = ⟨∇L(θ'), θ − μ₀⟩, the gradient of the first step on
//!   the new data at the drifted mean (the paper's reparameterised sample adds a noise
//!   term to this gradient; we use its mean, ε = 0, which needs no extra backward pass).
//!   With γ fixed at 1 it is exactly the plain optimizer.
//! - **Hard reset** of chosen layers (Nikishin et al. 2022), **shrink-and-perturb** (Ash &
//!   Adams 2020: θ ← λ·θ + σ·θ_fresh) and **ReDo** (Sokar et al. 2023: a hidden unit whose
//!   mean |activation| is at most τ times its layer's average is dormant; its incoming
//!   weights and bias are redrawn from the initialiser, its outgoing weights set to zero).
//!   The learner resets its optimizer state after a hard reset or shrink-and-perturb;
//!   after ReDo the optimizer's moments of the recycled weights are kept (burn's optimizer
//!   state is not addressable per element).
//! - **Effective learning rate**: ELR = ‖Δθ‖/‖θ‖ per layer per step; with a target set,
//!   the learning rate is scaled each step so that the mean ELR of the layers tracks it.

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::optim::GradientsParams;
use burn::tensor::{Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::diagnostics::{self, FeatureStats};

/// How weight decay pulls the parameters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DecayKind {
    /// AdamW's decoupled decay: θ ← θ − η·λ·θ after each step.
    #[default]
    Decoupled,
    /// λ·θ added to the gradient (L2 toward zero).
    L2,
    /// λ·(θ − θ₀) added to the gradient (L2 toward the initial parameters).
    L2Init,
}

/// Which layers a hard reset reinitialises.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResetLayers {
    /// Every layer.
    All,
    /// The output layer of each network.
    Last,
    /// The last `n` layers of each network.
    LastN(usize),
}

/// `[plasticity]`: the remedies and the diagnostics' schedule, for any learner.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PlasticityConfig {
    /// Layer norm before each hidden nonlinearity.
    pub layer_norm: bool,
    /// Weight-decay coefficient λ (0: none).
    pub weight_decay: f64,
    /// How the decay pulls (`decoupled`, `l2`, `l2_init`).
    pub weight_decay_kind: DecayKind,
    /// Normalize-and-Project (needs `layer_norm`).
    pub nap: bool,
    /// Soft parameter reset with a learned per-layer drift γ.
    pub soft_reset: bool,
    /// Learning rate of γ (0: γ stays at `soft_reset_gamma`).
    pub soft_reset_gamma_lr: f64,
    /// γ's starting value (1: no drift).
    pub soft_reset_gamma: f64,
    /// γ's lower bound.
    pub soft_reset_gamma_min: f64,
    /// The prior's scale s in the step multiplier γ² + (1 − γ²)/s.
    pub soft_reset_s: f64,
    /// Environment steps between hard resets (0: never).
    pub hard_reset_every: u64,
    /// Which layers a hard reset reinitialises (`"all"`, `"last"`, `{ last_n = 2 }`).
    pub hard_reset_layers: ResetLayers,
    /// Environment steps between shrink-and-perturb passes (0: never).
    pub shrink_perturb_every: u64,
    /// Shrink factor λ of shrink-and-perturb.
    pub shrink: f64,
    /// Perturbation scale σ of shrink-and-perturb.
    pub perturb: f64,
    /// Updates between ReDo passes (0: never).
    pub redo_every: u64,
    /// ReDo's dormancy threshold τ (also the threshold of the logged dormant fraction).
    pub redo_tau: f64,
    /// Target effective learning rate ‖Δθ‖/‖θ‖ per step (0: no control).
    pub target_elr: f64,
    /// Updates between per-layer diagnostics (0: never).
    pub diagnostics_every: u64,
    /// Updates between capacity probes (0: never).
    pub probe_every: u64,
    /// Gradient steps of a capacity probe.
    pub probe_steps: usize,
}

impl Default for PlasticityConfig {
    fn default() -> Self {
        PlasticityConfig {
            layer_norm: false,
            weight_decay: 0.0,
            weight_decay_kind: DecayKind::Decoupled,
            nap: false,
            soft_reset: false,
            soft_reset_gamma_lr: 0.01,
            soft_reset_gamma: 1.0,
            soft_reset_gamma_min: 0.5,
            soft_reset_s: 0.5,
            hard_reset_every: 0,
            hard_reset_layers: ResetLayers::Last,
            shrink_perturb_every: 0,
            shrink: 0.4,
            perturb: 0.1,
            redo_every: 0,
            redo_tau: 0.1,
            target_elr: 0.0,
            diagnostics_every: 10,
            probe_every: 0,
            probe_steps: 100,
        }
    }
}

impl PlasticityConfig {
    /// A message naming the first inconsistent key, if any: `(key, message)`.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        let ranges: [(&'static str, f64, f64, f64); 8] = [
            ("plasticity.weight_decay", self.weight_decay, 0.0, 1e3),
            (
                "plasticity.soft_reset_gamma_lr",
                self.soft_reset_gamma_lr,
                0.0,
                1e3,
            ),
            (
                "plasticity.soft_reset_gamma",
                self.soft_reset_gamma,
                0.0,
                1.0,
            ),
            (
                "plasticity.soft_reset_gamma_min",
                self.soft_reset_gamma_min,
                1e-3,
                1.0,
            ),
            ("plasticity.shrink", self.shrink, 0.0, 1.0),
            ("plasticity.perturb", self.perturb, 0.0, 1e3),
            ("plasticity.redo_tau", self.redo_tau, 0.0, 1e3),
            ("plasticity.target_elr", self.target_elr, 0.0, 1.0),
        ];
        for (key, v, lo, hi) in ranges {
            if !(v.is_finite() && (lo..=hi).contains(&v)) {
                return Err((key, format!("{v} is not in [{lo}, {hi}]")));
            }
        }
        if !(self.soft_reset_s.is_finite() && self.soft_reset_s > 0.0 && self.soft_reset_s <= 1e3) {
            return Err((
                "plasticity.soft_reset_s",
                format!("{} is not in (0, 1000]", self.soft_reset_s),
            ));
        }
        if self.soft_reset_gamma < self.soft_reset_gamma_min {
            return Err((
                "plasticity.soft_reset_gamma",
                format!(
                    "{} is below plasticity.soft_reset_gamma_min = {}",
                    self.soft_reset_gamma, self.soft_reset_gamma_min
                ),
            ));
        }
        if self.nap && !self.layer_norm {
            return Err((
                "plasticity.nap",
                "Normalize-and-Project needs plasticity.layer_norm = true (it projects the \
                 weights that a layer norm makes scale-invariant)"
                    .into(),
            ));
        }
        if self.hard_reset_layers == ResetLayers::LastN(0) {
            return Err((
                "plasticity.hard_reset_layers",
                "last_n must be at least 1".into(),
            ));
        }
        if self.probe_every > 0 && self.probe_steps == 0 {
            return Err(("plasticity.probe_steps", "must be at least 1".into()));
        }
        Ok(())
    }
}

/// One layer of a network, as [`Layered::layers`] describes it.
#[derive(Clone, Debug)]
pub struct Layer {
    /// A name for the metric columns, e.g. `actor.0`.
    pub name: String,
    /// Layers between it and the output (0 for an output layer): "the last n layers"
    /// of a hard reset are those with `from_output < n`, on every path to an output.
    pub from_output: usize,
    /// The weight matrices (`[fan_in, fan_out]`): what NaP projects, with the biases.
    pub weights: Vec<ParamId>,
    /// The biases.
    pub others: Vec<ParamId>,
    /// Noise scales (σ of noisy layers): reset with the layer, never decayed or projected.
    pub noise: Vec<ParamId>,
    /// The scale and offset of the layer norm after it (empty when there is none).
    pub norm: Vec<ParamId>,
    /// For a hidden layer: its units, for dormancy and ReDo.
    pub units: Option<Units>,
}

/// The units of a hidden layer.
#[derive(Clone, Debug)]
pub struct Units {
    /// Number of units.
    pub width: usize,
    /// Tensors whose last axis indexes the units (incoming weights, biases, norm scale and offset).
    pub incoming: Vec<ParamId>,
    /// Weight matrices whose first axis indexes the units (the next layers' weights).
    pub outgoing: Vec<ParamId>,
}

/// A network that can describe its layers to [`Plasticity`].
pub trait Layered: Module + Clone {
    /// The layers, input first, network by network.
    fn layers(&self) -> Vec<Layer>;

    /// The post-activation features of every hidden layer for a batch, in the order of
    /// the layers with [`Layer::units`].
    ///
    /// # Shapes
    /// - `x`: `[batch, input]`
    /// - each output: `[batch, width]`
    fn hidden_activations(&self, x: Tensor<2>) -> Vec<Tensor<2>>;

    /// The outputs the capacity probe fits (every head's outputs side by side).
    ///
    /// # Shapes
    /// - `x`: `[batch, input]`
    /// - output: `[batch, outputs]`
    fn probe_outputs(&self, x: Tensor<2>) -> Tensor<2>;
}

/// A layer with its parameters as positions in the module's visiting order.
#[derive(Clone, Debug)]
struct LayerPos {
    name: String,
    from_output: usize,
    weights: Vec<usize>,
    others: Vec<usize>,
    noise: Vec<usize>,
    norm: Vec<usize>,
    units: Option<UnitsPos>,
}

impl LayerPos {
    /// Every parameter the layer owns (weights, biases, noise scales, norm).
    fn params(&self) -> impl Iterator<Item = &usize> {
        self.weights
            .iter()
            .chain(&self.others)
            .chain(&self.noise)
            .chain(&self.norm)
    }
}

#[derive(Clone, Debug)]
struct UnitsPos {
    width: usize,
    incoming: Vec<usize>,
    outgoing: Vec<usize>,
}

/// Host copies of a module's float parameters, in visiting order.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    values: Vec<Vec<f32>>,
}

impl Snapshot {
    /// The parameters of `model`.
    pub fn of<M: Module>(model: &M) -> Self {
        let mut r = Reader { values: Vec::new() };
        model.visit(&mut r);
        Snapshot { values: r.values }
    }

    /// Parameter `i`'s values.
    pub fn get(&self, i: usize) -> &[f32] {
        &self.values[i]
    }

    /// Number of parameter tensors.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// No parameters.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }
}

struct Reader {
    values: Vec<Vec<f32>>,
}

impl ModuleVisitor for Reader {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        self.values.push(to_vec(param.val()));
    }
}

fn to_vec<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .expect("f32 parameters")
}

struct Ids {
    ids: Vec<ParamId>,
}

impl ModuleVisitor for Ids {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        self.ids.push(param.id);
    }
}

/// The ids of a module's float parameters, in visiting order.
pub fn param_ids<M: Module>(model: &M) -> Vec<ParamId> {
    let mut v = Ids { ids: Vec::new() };
    model.visit(&mut v);
    v.ids
}

/// Rewrites selected parameters in place (by position), keeping ids and autodiff state.
struct Editor<'a> {
    pos: usize,
    edit: &'a mut dyn FnMut(usize, &mut Vec<f32>) -> bool,
}

impl ModuleMapper for Editor<'_> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let i = self.pos;
        self.pos += 1;
        let edit = &mut self.edit;
        param.map(|t| {
            let dims = t.dims();
            let mut values = to_vec(t.clone());
            if !edit(i, &mut values) {
                return t;
            }
            let require_grad = t.is_require_grad();
            let fresh = Tensor::<D>::from_data(TensorData::new(values, dims), &t.device());
            if require_grad {
                fresh.require_grad()
            } else {
                fresh
            }
        })
    }
}

/// Apply `edit(position, values) -> changed` to every float parameter of `model`.
pub fn edit_params<M: Module>(model: M, edit: &mut dyn FnMut(usize, &mut Vec<f32>) -> bool) -> M {
    model.map(&mut Editor { pos: 0, edit })
}

fn norm(v: &[f32]) -> f64 {
    v.iter().map(|&x| (x as f64).powi(2)).sum::<f64>().sqrt()
}

fn mean_std(v: &[f32]) -> (f32, f32) {
    if v.is_empty() {
        return (0.0, 0.0);
    }
    let n = v.len() as f64;
    let mean = v.iter().map(|&x| x as f64).sum::<f64>() / n;
    let var = v.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / n;
    (mean as f32, var.sqrt() as f32)
}

/// Per-layer step statistics accumulated between two reports.
#[derive(Clone, Debug, Default)]
struct StepStats {
    update_sq: Vec<f64>,
    elr: Vec<f64>,
    steps: usize,
}

/// What [`Plasticity::report`] puts in a metrics row, per layer.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LayerReport {
    /// ‖θ‖ of the layer's weights and biases.
    pub weight_norm: f64,
    /// Mean ‖Δθ‖ per optimizer step since the last report.
    pub update_norm: f64,
    /// Mean ‖Δθ‖/‖θ‖ per optimizer step since the last report.
    pub elr: f64,
    /// Feature statistics of the layer's post-activations (hidden layers).
    pub features: Option<FeatureStats>,
    /// Fraction of τ-dormant units (hidden layers).
    pub dormant: f64,
    /// Soft reset's γ.
    pub gamma: f64,
}

/// The learner-side state of the plasticity tools; see the [module docs](self).
#[derive(Clone, Debug)]
pub struct Plasticity {
    config: PlasticityConfig,
    layers: Vec<LayerPos>,
    /// θ₀.
    init: Snapshot,
    /// Per parameter: (mean, std) of θ₀.
    prior: Vec<(f32, f32)>,
    /// Per layer: ‖(W, b)₀‖ and ‖(scale, offset)₀‖ of its norm.
    init_norms: Vec<(f64, f64)>,
    /// Per layer: soft reset's γ.
    gamma: Vec<f64>,
    /// Parameters before this update's drift (for γ's gradient).
    pre_drift: Option<Snapshot>,
    /// Seed of soft reset's noise, and drifts taken (each draws from its own stream).
    seed: u64,
    drifts: u64,
    /// The effective-learning-rate controller's multiplier.
    lr_scale: f64,
    stats: StepStats,
    measure: bool,
    /// The last per-layer report, probe result and counters, for the metric rows.
    last_reports: Option<Vec<LayerReport>>,
    last_probe: f64,
    resets: u64,
    recycled: u64,
}

/// What is due in one update, from [`Plasticity::due`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Due {
    /// A hard reset.
    pub hard_reset: bool,
    /// Shrink-and-perturb.
    pub shrink_perturb: bool,
    /// ReDo.
    pub redo: bool,
    /// The per-layer diagnostics.
    pub diagnostics: bool,
    /// The capacity probe.
    pub probe: bool,
}

/// Whether a multiple of `every` lies in `(before, after]` (never for `every = 0`).
fn crossed(every: u64, before: u64, after: u64) -> bool {
    every > 0 && after / every > before / every
}

/// The persistent part of [`Plasticity`] (what a checkpoint holds).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PlasticityState {
    /// Soft reset's γ per layer.
    pub gamma: Vec<f64>,
    /// The ELR controller's learning-rate multiplier.
    pub lr_scale: f64,
    /// Resets done (hard, shrink-and-perturb, ReDo passes that recycled units): each
    /// draws a new network.
    #[serde(default)]
    pub resets: u64,
    /// Units ReDo recycled.
    #[serde(default)]
    pub recycled: u64,
    /// Soft reset's drifts taken.
    #[serde(default)]
    pub drifts: u64,
}

impl Plasticity {
    /// The tools for `model`, whose current parameters are taken as θ₀.
    pub fn new<M: Layered>(config: &PlasticityConfig, model: &M) -> Self {
        let ids = param_ids(model);
        let pos = |id: &ParamId| {
            ids.iter()
                .position(|x| x == id)
                .expect("a layer lists the model's own parameters")
        };
        let all = |v: &[ParamId]| v.iter().map(pos).collect::<Vec<usize>>();
        let layers: Vec<LayerPos> = model
            .layers()
            .iter()
            .map(|l| LayerPos {
                name: l.name.clone(),
                from_output: l.from_output,
                weights: all(&l.weights),
                others: all(&l.others),
                noise: all(&l.noise),
                norm: all(&l.norm),
                units: l.units.as_ref().map(|u| UnitsPos {
                    width: u.width,
                    incoming: all(&u.incoming),
                    outgoing: all(&u.outgoing),
                }),
            })
            .collect();
        let init = Snapshot::of(model);
        let prior = init.values.iter().map(|v| mean_std(v)).collect();
        let init_norms = layers
            .iter()
            .map(|l| {
                let w = joint_norm(l.weights.iter().chain(&l.others).map(|&i| init.get(i)));
                let n = joint_norm(l.norm.iter().map(|&i| init.get(i)));
                (w, n)
            })
            .collect();
        let n = layers.len();
        Plasticity {
            config: config.clone(),
            layers,
            init,
            prior,
            init_norms,
            gamma: vec![config.soft_reset_gamma; n],
            pre_drift: None,
            seed: 0,
            drifts: 0,
            lr_scale: 1.0,
            stats: StepStats {
                update_sq: vec![0.0; n],
                elr: vec![0.0; n],
                steps: 0,
            },
            measure: false,
            last_reports: None,
            last_probe: f64::NAN,
            resets: 0,
            recycled: 0,
        }
    }

    /// Draw soft reset's noise from `seed` (the learner's run seed).
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// The configuration.
    pub fn config(&self) -> &PlasticityConfig {
        &self.config
    }

    /// The layer names, in report order.
    pub fn layer_names(&self) -> Vec<&str> {
        self.layers.iter().map(|l| l.name.as_str()).collect()
    }

    /// What a checkpoint must keep.
    pub fn state(&self) -> PlasticityState {
        PlasticityState {
            gamma: self.gamma.clone(),
            lr_scale: self.lr_scale,
            resets: self.resets,
            recycled: self.recycled,
            drifts: self.drifts,
        }
    }

    /// Restore [`state`](Self::state).
    pub fn set_state(&mut self, state: PlasticityState) -> Result<(), String> {
        if state.gamma.len() != self.gamma.len() {
            return Err(format!(
                "plasticity state for {} layers, the network has {}",
                state.gamma.len(),
                self.gamma.len()
            ));
        }
        if !(state.lr_scale.is_finite() && state.lr_scale > 0.0)
            || state.gamma.iter().any(|g| !(0.0..=1.0).contains(g))
        {
            return Err("plasticity state out of range".into());
        }
        self.gamma = state.gamma;
        self.lr_scale = state.lr_scale;
        self.resets = state.resets;
        self.recycled = state.recycled;
        self.drifts = state.drifts;
        Ok(())
    }

    /// Soft reset's γ per layer.
    pub fn gammas(&self) -> &[f64] {
        &self.gamma
    }

    /// Measure per-step update norms from now on (until [`report`](Self::report)); the
    /// learner turns it on for the updates whose diagnostics it logs.
    pub fn set_measuring(&mut self, on: bool) {
        self.measure = on;
    }

    fn layer_of(&self) -> Vec<Option<usize>> {
        let mut of = vec![None; self.init.len()];
        for (l, layer) in self.layers.iter().enumerate() {
            for &i in layer.params() {
                of[i] = Some(l);
            }
        }
        of
    }

    /// The multiplier on the learning rate (ELR control; 1 without a target).
    pub fn lr_scale(&self) -> f64 {
        self.lr_scale
    }

    /// The start of an update on new data: soft reset's drift θ ← γθ + (1 − γ)μ₀.
    pub fn begin_update<M: Layered>(&mut self, model: M) -> M {
        if !self.config.soft_reset {
            return model;
        }
        if self.config.soft_reset_gamma_lr > 0.0 {
            self.pre_drift = Some(Snapshot::of(&model));
        }
        if self.gamma.iter().all(|&g| g == 1.0) {
            return model;
        }
        let of = self.layer_of();
        let (gamma, prior) = (&self.gamma, &self.prior);
        use rand::SeedableRng;
        use rand_distr::Distribution;
        let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(agentry_envs::derive_seed(
            agentry_envs::derive_seed(self.seed, 0x50F7),
            self.drifts,
        ));
        self.drifts += 1;
        edit_params(model, &mut |i, v| {
            let Some(l) = of[i] else { return false };
            let g = gamma[l];
            if g == 1.0 {
                return false;
            }
            let (mu, sigma) = prior[i];
            let spread = ((1.0 - g * g).max(0.0).sqrt() * sigma as f64) as f32;
            let g = g as f32;
            for x in v.iter_mut() {
                let e: f32 = rand_distr::StandardNormal.sample(&mut rng);
                *x = g * *x + (1.0 - g) * mu + spread * e;
            }
            true
        })
    }

    /// Gradient terms of the weight decay (L2 to zero or to θ₀), added to `grads`; the
    /// first call after [`begin_update`](Self::begin_update) also takes soft reset's
    /// γ step from these gradients.
    pub fn regularise<M: Module>(&mut self, model: &M, grads: &mut GradientsParams) {
        if let Some(pre) = self.pre_drift.take() {
            self.gamma_step(model, grads, &pre);
        }
        let lambda = self.config.weight_decay as f32;
        if lambda == 0.0 || self.config.weight_decay_kind == DecayKind::Decoupled {
            return;
        }
        let decayed = self.decayed();
        let to_init = self.config.weight_decay_kind == DecayKind::L2Init;
        let mut v = GradEdit {
            pos: 0,
            grads,
            edit: &mut |i, theta: Tensor<1>| {
                if !decayed[i] {
                    return None;
                }
                let pull = if to_init {
                    let init = Tensor::<1>::from_data(
                        TensorData::new(self.init.get(i).to_vec(), [self.init.get(i).len()]),
                        &theta.device(),
                    );
                    theta - init
                } else {
                    theta
                };
                Some(pull.mul_scalar(lambda))
            },
        };
        model.visit(&mut v);
    }

    /// The parameters weight decay applies to: layer weights and biases, not norms.
    fn decayed(&self) -> Vec<bool> {
        let mut d = vec![false; self.init.len()];
        for l in &self.layers {
            for &i in l.weights.iter().chain(&l.others) {
                d[i] = true;
            }
        }
        d
    }

    fn gamma_step<M: Module>(&mut self, model: &M, grads: &GradientsParams, pre: &Snapshot) {
        let mut gv = GradValues {
            grads,
            out: Vec::new(),
        };
        model.visit(&mut gv);
        let of = self.layer_of();
        let mut dgamma = vec![0.0f64; self.layers.len()];
        for (i, g) in gv.out.iter().enumerate() {
            let (Some(l), Some(g)) = (of[i], g) else {
                continue;
            };
            let mu = self.prior[i].0;
            dgamma[l] += g
                .iter()
                .zip(pre.get(i))
                .map(|(g, t)| *g as f64 * (*t - mu) as f64)
                .sum::<f64>();
        }
        let (lr, lo) = (
            self.config.soft_reset_gamma_lr,
            self.config.soft_reset_gamma_min,
        );
        for (g, d) in self.gamma.iter_mut().zip(dgamma) {
            if d.is_finite() {
                *g = (*g - lr * d).clamp(lo, 1.0);
            }
        }
    }

    /// Soft reset's step multiplier γ² + (1 − γ²)/s for layer `l`.
    fn step_multiplier(&self, l: usize) -> f64 {
        if !self.config.soft_reset {
            return 1.0;
        }
        let g2 = self.gamma[l].powi(2);
        g2 + (1.0 - g2) / self.config.soft_reset_s
    }

    fn needs_before(&self) -> bool {
        self.measure
            || self.config.target_elr > 0.0
            || (self.config.soft_reset
                && (0..self.layers.len()).any(|l| self.step_multiplier(l) != 1.0))
    }

    /// What [`after_step`](Self::after_step) needs from before the optimizer step (the
    /// parameters, when a step multiplier or a measurement needs them).
    pub fn before_step<M: Module>(&self, model: &M) -> Option<Snapshot> {
        self.needs_before().then(|| Snapshot::of(model))
    }

    /// After an optimizer step with learning rate `lr`: soft reset's step multiplier,
    /// decoupled weight decay, NaP's projection, and the ELR measurement and control.
    pub fn after_step<M: Module>(&mut self, model: M, lr: f64, before: Option<Snapshot>) -> M {
        let c = &self.config;
        let decoupled = c.weight_decay > 0.0 && c.weight_decay_kind == DecayKind::Decoupled;
        if before.is_none() && !decoupled && !c.nap {
            return model;
        }
        let of = self.layer_of();
        let decayed = self.decayed();
        let mult: Vec<f64> = (0..self.layers.len())
            .map(|l| self.step_multiplier(l))
            .collect();
        let decay = (lr * self.lr_scale * c.weight_decay) as f32;
        // First pass: multiplier and decay, parameter by parameter (a plain read when
        // neither applies).
        let edits = decoupled || mult.iter().any(|&m| m != 1.0);
        let mut after = vec![Vec::new(); self.init.len()];
        if !edits {
            after = Snapshot::of(&model).values;
        }
        let model = if !edits {
            model
        } else {
            edit_params(model, &mut |i, v| {
                let mut changed = false;
                if let (Some(b), Some(l)) = (&before, of[i])
                    && mult[l] != 1.0
                {
                    let m = mult[l] as f32;
                    v.iter_mut()
                        .zip(b.get(i))
                        .for_each(|(x, o)| *x = o + m * (*x - o));
                    changed = true;
                }
                if decoupled && decayed[i] {
                    v.iter_mut().for_each(|x| *x -= decay * *x);
                    changed = true;
                }
                after[i] = v.clone();
                changed
            })
        };
        // NaP: project each normalised layer's weights and its norm's (scale, offset).
        let mut scale = vec![1.0f32; self.init.len()];
        if c.nap {
            for (l, layer) in self.layers.iter().enumerate() {
                if layer.norm.is_empty() {
                    continue;
                }
                // LN(Wx + b) is invariant to scaling (W, b) together: project them as one.
                let wb: Vec<usize> = layer.weights.iter().chain(&layer.others).copied().collect();
                let now = joint_norm(wb.iter().map(|&i| after[i].as_slice()));
                if now > 0.0 {
                    for &i in &wb {
                        scale[i] = (self.init_norms[l].0 / now) as f32;
                    }
                }
                let now = joint_norm(layer.norm.iter().map(|&i| after[i].as_slice()));
                if now > 0.0 {
                    for &i in &layer.norm {
                        scale[i] = (self.init_norms[l].1 / now) as f32;
                    }
                }
            }
        }
        let model = if c.nap {
            edit_params(model, &mut |i, v| {
                if scale[i] == 1.0 {
                    return false;
                }
                v.iter_mut().for_each(|x| *x *= scale[i]);
                after[i].iter_mut().for_each(|x| *x *= scale[i]);
                true
            })
        } else {
            model
        };
        if let Some(b) = before {
            let n = self.layers.len();
            let (mut d2, mut w2) = (vec![0.0f64; n], vec![0.0f64; n]);
            for (i, a) in after.iter().enumerate() {
                let Some(l) = of[i] else { continue };
                d2[l] += a
                    .iter()
                    .zip(b.get(i))
                    .map(|(x, o)| ((x - o) as f64).powi(2))
                    .sum::<f64>();
                w2[l] += b.get(i).iter().map(|&o| (o as f64).powi(2)).sum::<f64>();
            }
            let elr: Vec<f64> = d2
                .iter()
                .zip(&w2)
                .map(|(d, w)| if *w > 0.0 { (d / w).sqrt() } else { 0.0 })
                .collect();
            if self.measure {
                for l in 0..n {
                    self.stats.update_sq[l] += d2[l].sqrt();
                    self.stats.elr[l] += elr[l];
                }
                self.stats.steps += 1;
            }
            let target = self.config.target_elr;
            if target > 0.0 {
                let mean = elr.iter().sum::<f64>() / n.max(1) as f64;
                if mean > 0.0 && mean.is_finite() {
                    // Half a step in log space toward the ratio that would have hit the target.
                    let ratio = (target / mean).clamp(0.1, 10.0);
                    self.lr_scale = (self.lr_scale * ratio.sqrt()).clamp(1e-4, 1e4);
                }
            }
        }
        model
    }

    /// The layers a hard reset reinitialises.
    fn reset_set(&self, which: &ResetLayers) -> Vec<usize> {
        let mut out = Vec::new();
        for (l, layer) in self.layers.iter().enumerate() {
            let keep = match which {
                ResetLayers::All => true,
                ResetLayers::Last => layer.from_output == 0,
                ResetLayers::LastN(n) => layer.from_output < *n,
            };
            if keep {
                out.push(l);
            }
        }
        out
    }

    /// Hard reset: the chosen layers (with their norms) take `fresh`'s values; soft
    /// reset's γ of those layers returns to its start. Returns the number of layers reset.
    pub fn hard_reset<M: Layered>(&mut self, model: M, fresh: &M) -> (M, usize) {
        let which = self.reset_set(&self.config.hard_reset_layers.clone());
        let fresh = Snapshot::of(fresh);
        let mut chosen = vec![false; self.init.len()];
        for &l in &which {
            let layer = &self.layers[l];
            for &i in layer.params() {
                chosen[i] = true;
            }
            self.gamma[l] = self.config.soft_reset_gamma;
        }
        let model = edit_params(model, &mut |i, v| {
            if !chosen[i] {
                return false;
            }
            v.copy_from_slice(fresh.get(i));
            true
        });
        (model, which.len())
    }

    /// Shrink-and-perturb: θ ← λ·θ + σ·θ_fresh for every layer's parameters (norm layers
    /// included, whose fresh values are their initial ones).
    pub fn shrink_perturb<M: Layered>(&self, model: M, fresh: &M) -> M {
        let fresh = Snapshot::of(fresh);
        let of = self.layer_of();
        let (lambda, sigma) = (self.config.shrink as f32, self.config.perturb as f32);
        edit_params(model, &mut |i, v| {
            if of[i].is_none() {
                return false;
            }
            v.iter_mut()
                .zip(fresh.get(i))
                .for_each(|(x, f)| *x = lambda * *x + sigma * f);
            true
        })
    }

    /// Per hidden layer (in [`Layered::hidden_activations`] order), each unit's score:
    /// its mean |activation| over the batch divided by the layer's average of those means.
    pub fn unit_scores<M: Layered>(model: &M, x: Tensor<2>) -> Vec<Vec<f64>> {
        model
            .hidden_activations(x)
            .into_iter()
            .map(|h| {
                let [rows, cols] = h.dims();
                let v = to_vec(h);
                unit_scores(&v, rows, cols)
            })
            .collect()
    }

    /// ReDo: recycle the τ-dormant units of every hidden layer, judged on the batch `x`:
    /// incoming weights, bias and norm entries from `fresh`, outgoing weights zero.
    /// Returns the model and the number of units recycled per hidden layer.
    pub fn redo<M: Layered>(&self, model: M, fresh: &M, x: Tensor<2>) -> (M, Vec<usize>) {
        let scores = Self::unit_scores(&model, x);
        let tau = self.config.redo_tau;
        let hidden: Vec<&UnitsPos> = self
            .layers
            .iter()
            .filter_map(|l| l.units.as_ref())
            .collect();
        let dormant: Vec<Vec<bool>> = scores
            .iter()
            .map(|s| s.iter().map(|&v| v <= tau).collect())
            .collect();
        let counts: Vec<usize> = dormant
            .iter()
            .map(|d| d.iter().filter(|&&b| b).count())
            .collect();
        if counts.iter().all(|&c| c == 0) {
            return (model, counts);
        }
        let fresh = Snapshot::of(fresh);
        // Per parameter: (layer, incoming?) when it holds a recycled unit's weights.
        let mut role: Vec<Vec<(usize, bool)>> = vec![Vec::new(); self.init.len()];
        for (h, units) in hidden.iter().enumerate() {
            if counts.get(h).copied().unwrap_or(0) == 0 {
                continue;
            }
            for &i in &units.incoming {
                role[i].push((h, true));
            }
            for &i in &units.outgoing {
                role[i].push((h, false));
            }
        }
        let model = edit_params(model, &mut |i, v| {
            if role[i].is_empty() {
                return false;
            }
            for &(h, incoming) in &role[i] {
                let width = hidden[h].width;
                let dead = &dormant[h];
                if incoming {
                    // The unit indexes the last axis: element k belongs to unit k % width.
                    for (k, x) in v.iter_mut().enumerate() {
                        if dead[k % width] {
                            *x = fresh.get(i)[k];
                        }
                    }
                } else {
                    // The unit indexes the first axis: rows of `len / width` values.
                    let row = v.len() / width;
                    for (u, chunk) in v.chunks_mut(row).enumerate() {
                        if dead[u] {
                            chunk.iter_mut().for_each(|x| *x = 0.0);
                        }
                    }
                }
            }
            true
        });
        (model, counts)
    }

    /// What is due in an update whose data took the run from `steps_before` to
    /// `steps_after` environment steps, `updates` updates having been done before it.
    /// The diagnostics (unless `diagnostics_every = 0`) are also due on the first update
    /// of a session, so the metric rows have values.
    pub fn due(&self, steps_before: u64, steps_after: u64, updates: u64) -> Due {
        let c = &self.config;
        let every = |n: u64| n > 0 && updates.is_multiple_of(n);
        Due {
            hard_reset: crossed(c.hard_reset_every, steps_before, steps_after),
            shrink_perturb: crossed(c.shrink_perturb_every, steps_before, steps_after),
            redo: every(c.redo_every) && updates > 0,
            diagnostics: c.diagnostics_every > 0
                && (updates.is_multiple_of(c.diagnostics_every) || self.last_reports.is_none()),
            probe: every(c.probe_every),
        }
    }

    /// The scheduled resets of `due` on `model`, judged (ReDo) on the batch `x`, with
    /// `fresh()` building a newly initialised network. Returns the model and whether the
    /// optimizer state must be reset (after a hard reset or shrink-and-perturb).
    pub fn maintain<M: Layered>(
        &mut self,
        model: M,
        fresh: impl Fn(u64) -> M,
        x: Tensor<2>,
        due: Due,
    ) -> (M, bool) {
        let mut model = model;
        let mut reset_optimizer = false;
        if due.hard_reset {
            let f = fresh(self.resets);
            model = self.hard_reset(model, &f).0;
            self.resets += 1;
            reset_optimizer = true;
        }
        if due.shrink_perturb {
            let f = fresh(self.resets);
            model = self.shrink_perturb(model, &f);
            self.resets += 1;
            reset_optimizer = true;
        }
        if due.redo {
            let f = fresh(self.resets);
            let (m, counts) = self.redo(model, &f, x);
            model = m;
            let recycled = counts.iter().sum::<usize>() as u64;
            if recycled > 0 {
                self.recycled += recycled;
                self.resets += 1;
            }
        }
        (model, reset_optimizer)
    }

    /// The diagnostics of `due`: the per-layer report on the batch `x` and the capacity
    /// probe (fitting with learning rate `lr`) against `fresh()`.
    pub fn diagnose<M: Layered>(
        &mut self,
        model: &M,
        fresh: impl Fn(u64) -> M,
        x: Tensor<2>,
        activation: diagnostics::Activation,
        lr: f64,
        due: Due,
    ) {
        if due.diagnostics {
            let r = self.report(model, x.clone(), activation);
            self.last_reports = Some(r);
        }
        if due.probe {
            let f = fresh(u64::MAX - self.resets);
            self.last_probe = capacity_probe(model, &f, x, self.config.probe_steps, lr);
        }
    }

    /// The metric columns this configuration logs (after the learner's own).
    pub fn metric_names(&self) -> Vec<String> {
        let c = &self.config;
        let mut names = Vec::new();
        for l in &self.layers {
            let mut stats = vec!["weight_norm", "update_norm", "elr"];
            if l.units.is_some() {
                stats.extend(["effective_rank", "srank", "feature_rank", "dormant"]);
            }
            if c.soft_reset {
                stats.push("gamma");
            }
            names.extend(stats.iter().map(|s| format!("plasticity/{}/{s}", l.name)));
        }
        if c.target_elr > 0.0 {
            names.push("plasticity/lr_scale".into());
        }
        if c.probe_every > 0 {
            names.push("plasticity/probe_loss".into());
        }
        if c.hard_reset_every > 0 || c.shrink_perturb_every > 0 || c.redo_every > 0 {
            names.push("plasticity/resets".into());
        }
        if c.redo_every > 0 {
            names.push("plasticity/recycled_units".into());
        }
        names
    }

    /// The values of [`metric_names`](Self::metric_names), from the last diagnostics.
    pub fn metric_row(&self) -> Vec<f64> {
        let c = &self.config;
        let mut row = Vec::new();
        for (l, layer) in self.layers.iter().enumerate() {
            let r = self.last_reports.as_ref().and_then(|r| r.get(l));
            let get = |f: &dyn Fn(&LayerReport) -> f64| r.map(f).unwrap_or(f64::NAN);
            row.extend([
                get(&|r| r.weight_norm),
                get(&|r| r.update_norm),
                get(&|r| r.elr),
            ]);
            if layer.units.is_some() {
                let feat = |f: &dyn Fn(&FeatureStats) -> f64| {
                    r.and_then(|r| r.features.as_ref())
                        .map(f)
                        .unwrap_or(f64::NAN)
                };
                row.extend([
                    feat(&|s| s.effective_rank),
                    feat(&|s| s.srank as f64),
                    feat(&|s| s.feature_rank as f64),
                    get(&|r| r.dormant),
                ]);
            }
            if c.soft_reset {
                row.push(self.gamma[l]);
            }
        }
        if c.target_elr > 0.0 {
            row.push(self.lr_scale);
        }
        if c.probe_every > 0 {
            row.push(self.last_probe);
        }
        if c.hard_reset_every > 0 || c.shrink_perturb_every > 0 || c.redo_every > 0 {
            row.push(self.resets as f64);
        }
        if c.redo_every > 0 {
            row.push(self.recycled as f64);
        }
        row
    }

    /// Per-layer statistics since the last report: weight norm, update norm and ELR
    /// (means per step), and for hidden layers the feature statistics and dormant
    /// fraction on the batch `x`. Resets the step statistics.
    pub fn report<M: Layered>(
        &mut self,
        model: &M,
        x: Tensor<2>,
        activation: diagnostics::Activation,
    ) -> Vec<LayerReport> {
        let snap = Snapshot::of(model);
        let acts: Vec<(Vec<f32>, usize, usize)> = model
            .hidden_activations(x)
            .into_iter()
            .map(|h| {
                let [r, c] = h.dims();
                (to_vec(h), r, c)
            })
            .collect();
        let steps = self.stats.steps.max(1) as f64;
        let mut hidden = 0;
        let tau = self.config.redo_tau;
        let reports = self
            .layers
            .iter()
            .enumerate()
            .map(|(l, layer)| {
                let w2: f64 = layer
                    .weights
                    .iter()
                    .chain(&layer.others)
                    .map(|&i| norm(snap.get(i)).powi(2))
                    .sum();
                let (features, dormant) = match &layer.units {
                    Some(_) => {
                        let (v, r, c) = &acts[hidden];
                        hidden += 1;
                        let stats = diagnostics::feature_stats(v, *r, *c, activation);
                        let scores = unit_scores(v, *r, *c);
                        let dormant = scores.iter().filter(|&&s| s <= tau).count() as f64
                            / scores.len().max(1) as f64;
                        (Some(stats), dormant)
                    }
                    None => (None, 0.0),
                };
                LayerReport {
                    weight_norm: w2.sqrt(),
                    update_norm: self.stats.update_sq[l] / steps,
                    elr: self.stats.elr[l] / steps,
                    features,
                    dormant,
                    gamma: self.gamma[l],
                }
            })
            .collect();
        let n = self.layers.len();
        self.stats = StepStats {
            update_sq: vec![0.0; n],
            elr: vec![0.0; n],
            steps: 0,
        };
        reports
    }
}

/// The capacity probe (Lyle et al. 2022; Moalla et al. 2024): a copy of `model` is
/// fitted for `steps` Adam steps (learning rate `lr`, minibatches of up to 256 rows of
/// `x`) to the [`Layered::probe_outputs`] of `fresh`, a freshly initialised network; the
/// result is the final mean squared error divided by the targets' variance (1: the copy
/// learned nothing; near 0: it can still fit a new function). For a policy this fits its
/// logits by squared error where the paper uses a KL divergence. `model` is not changed.
pub fn capacity_probe<M: Layered>(
    model: &M,
    fresh: &M,
    x: Tensor<2>,
    steps: usize,
    lr: f64,
) -> f64 {
    let [rows, _] = x.dims();
    if rows == 0 || steps == 0 {
        return f64::NAN;
    }
    let target = fresh.probe_outputs(x.clone()).detach();
    let t = to_vec(target.clone());
    let (_, std) = mean_std(&t);
    let var = (std as f64).powi(2).max(1e-12);
    let mut copy = model.clone();
    let mut opt = burn::optim::AdamConfig::new().init();
    let batch = rows.min(256);
    let mut last = f64::NAN;
    for step in 0..steps {
        let start = (step * batch) % rows;
        let end = (start + batch).min(rows);
        let xb = x.clone().slice(start..end);
        let tb = target.clone().slice(start..end);
        let loss = (copy.probe_outputs(xb) - tb).square().mean();
        last = loss.clone().into_scalar::<f32>() as f64;
        let grads = GradientsParams::from_grads(loss.backward(), &copy);
        copy = opt.step(lr, copy, grads);
    }
    let full = (copy.probe_outputs(x) - target).square().mean();
    let final_loss = full.into_scalar::<f32>() as f64;
    if final_loss.is_finite() {
        final_loss / var
    } else {
        last / var
    }
}

/// ‖(a, b, …)‖ of several tensors taken as one vector.
fn joint_norm<'a>(parts: impl Iterator<Item = &'a [f32]>) -> f64 {
    parts.map(|p| norm(p).powi(2)).sum::<f64>().sqrt()
}

/// Each unit's mean |activation| over the rows, divided by the mean of those means
/// (ReDo's score; all zero when the whole layer is silent).
pub fn unit_scores(x: &[f32], rows: usize, cols: usize) -> Vec<f64> {
    let mut means = vec![0.0f64; cols];
    for row in x.chunks_exact(cols.max(1)) {
        for (m, v) in means.iter_mut().zip(row) {
            *m += v.abs() as f64;
        }
    }
    means.iter_mut().for_each(|m| *m /= rows.max(1) as f64);
    let avg = means.iter().sum::<f64>() / cols.max(1) as f64;
    if avg <= 0.0 {
        return vec![0.0; cols];
    }
    means.into_iter().map(|m| m / avg).collect()
}

/// Gradient editing by position: `edit(i, θ_i)` returns a term to add to parameter i's gradient.
struct GradEdit<'a, F: FnMut(usize, Tensor<1>) -> Option<Tensor<1>>> {
    pos: usize,
    grads: &'a mut GradientsParams,
    edit: &'a mut F,
}

impl<F: FnMut(usize, Tensor<1>) -> Option<Tensor<1>>> ModuleVisitor for GradEdit<'_, F> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let i = self.pos;
        self.pos += 1;
        let Some(g) = self.grads.remove::<D>(param.id) else {
            return;
        };
        let dims = g.dims();
        let theta = param.val().inner().to_device(&g.device());
        let n = dims.iter().product::<usize>();
        let flat = theta.reshape([n]);
        let g = match (self.edit)(i, flat) {
            Some(term) => g + term.reshape(dims),
            None => g,
        };
        self.grads.register::<D>(param.id, g);
    }
}

/// Every parameter's gradient values (flattened), in visiting order.
struct GradValues<'a> {
    grads: &'a GradientsParams,
    out: Vec<Option<Vec<f32>>>,
}

impl ModuleVisitor for GradValues<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        self.out.push(self.grads.get::<D>(param.id).map(to_vec));
    }
}

/// `layers` with their names prefixed by `prefix` (for a model made of several
/// networks: `actor.0`, `critic.0`, ...).
pub fn prefixed(layers: Vec<Layer>, prefix: &str) -> Vec<Layer> {
    layers
        .into_iter()
        .map(|mut l| {
            l.name = format!("{prefix}.{}", l.name);
            l
        })
        .collect()
}

/// The ids of a layer norm's scale and offset.
pub fn norm_ids(norm: &burn::nn::LayerNorm) -> Vec<ParamId> {
    let mut ids = vec![norm.gamma.id];
    ids.extend(norm.beta.as_ref().map(|b| b.id));
    ids
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mlp::{Activation, Init, Mlp, MlpConfig};
    use burn::optim::AdamConfig;

    fn mlp(layer_norm: bool, relu: bool, seed: u64) -> Mlp {
        MlpConfig::new(4, &[16, 16], 3)
            .with_layer_norm(layer_norm)
            .with_activation(if relu {
                Activation::Relu
            } else {
                Activation::Tanh
            })
            .with_init(Init::Orthogonal {
                hidden_gain: 1.4,
                output_gain: 1.0,
            })
            .init_seeded(&crate::cpu_autodiff(), seed)
    }

    /// Inputs N(0, 1) and targets N(3, 2²), from a generator of our own (burn's global
    /// one is shared by the tests running in parallel).
    fn data(seed: u64) -> (Tensor<2>, Tensor<2>) {
        use rand::SeedableRng;
        use rand_distr::{Distribution as _, Normal};
        let device = crate::cpu_autodiff();
        let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(seed);
        let mut draw = |n: usize, mean: f32, std: f32| -> Vec<f32> {
            let d = Normal::new(mean, std).unwrap();
            (0..n).map(|_| d.sample(&mut rng)).collect()
        };
        let x = Tensor::<2>::from_data(TensorData::new(draw(32 * 4, 0.0, 1.0), [32, 4]), &device);
        let y = Tensor::<2>::from_data(TensorData::new(draw(32 * 3, 3.0, 2.0), [32, 3]), &device);
        (x, y)
    }

    /// `steps` Adam steps on an MSE regression with the hooks of `config`.
    fn train(config: &PlasticityConfig, mut model: Mlp, steps: usize) -> (Mlp, Plasticity) {
        let mut p = Plasticity::new(config, &model);
        let mut opt = AdamConfig::new().init();
        let (x, y) = data(7);
        for step in 0..steps {
            if step % 10 == 0 {
                model = p.begin_update(model);
            }
            let loss = (model.forward(x.clone()) - y.clone()).square().mean();
            let mut grads = GradientsParams::from_grads(loss.backward(), &model);
            p.regularise(&model, &mut grads);
            let before = p.before_step(&model);
            let lr = 1e-2;
            model = opt.step(lr * p.lr_scale(), model, grads);
            model = p.after_step(model, lr, before);
        }
        (model, p)
    }

    fn max_diff(a: &Snapshot, b: &Snapshot) -> f32 {
        a.values
            .iter()
            .zip(&b.values)
            .flat_map(|(x, y)| x.iter().zip(y).map(|(p, q)| (p - q).abs()))
            .fold(0.0, f32::max)
    }

    #[test]
    fn edits_and_reads_follow_the_same_positions() {
        let model = mlp(true, false, 1);
        let n = Snapshot::of(&model).len();
        assert_eq!(n, param_ids(&model).len());
        let model = edit_params(model, &mut |i, v| {
            v.iter_mut().for_each(|x| *x = i as f32);
            true
        });
        let snap = Snapshot::of(&model);
        for i in 0..n {
            assert!(snap.get(i).iter().all(|&x| x == i as f32));
        }
        // Ids and trainability survive the edit.
        let (x, y) = data(1);
        let loss = (model.forward(x) - y).square().mean();
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        let ids = param_ids(&model);
        assert!(grads.get::<2>(ids[0]).is_some());
    }

    #[test]
    fn nap_keeps_each_projected_layers_norm_after_100_steps() {
        let config = PlasticityConfig {
            layer_norm: true,
            nap: true,
            ..PlasticityConfig::default()
        };
        let model = mlp(true, true, 3);
        let init = Snapshot::of(&model);
        let layers = Layered::layers(&model);
        let ids = param_ids(&model);
        let pos = |id: ParamId| ids.iter().position(|x| *x == id).unwrap();
        let (trained, _) = train(&config, model, 100);
        let snap = Snapshot::of(&trained);
        let (plain, _) = train(&PlasticityConfig::default(), mlp(true, true, 3), 100);
        let plain = Snapshot::of(&plain);
        for layer in layers.iter().filter(|l| !l.norm.is_empty()) {
            // (W, b) as one vector keeps its initial norm.
            let wb = |s: &Snapshot| {
                joint_norm(
                    layer
                        .weights
                        .iter()
                        .chain(&layer.others)
                        .map(|&id| s.get(pos(id))),
                )
            };
            let (n0, n1) = (wb(&init), wb(&snap));
            assert!((n1 / n0 - 1.0).abs() < 1e-5, "{}: {n0} -> {n1}", layer.name);
            // Without the projection the same training moves the norm.
            let n_plain = wb(&plain);
            assert!((n_plain / n0 - 1.0).abs() > 1e-3, "{n0} vs {n_plain}");
            let joint = |s: &Snapshot| joint_norm(layer.norm.iter().map(|&id| s.get(pos(id))));
            assert!((joint(&snap) / joint(&init) - 1.0).abs() < 1e-5);
            // And the weights did learn something.
            assert!(max_diff(&init, &snap) > 1e-2);
        }
    }

    #[test]
    fn soft_reset_with_gamma_one_is_plain_adam() {
        let config = PlasticityConfig {
            soft_reset: true,
            soft_reset_gamma: 1.0,
            soft_reset_gamma_lr: 0.0,
            ..PlasticityConfig::default()
        };
        let (a, _) = train(&config, mlp(false, false, 5), 30);
        let (b, _) = train(&PlasticityConfig::default(), mlp(false, false, 5), 30);
        let (c, _) = train(&PlasticityConfig::default(), mlp(false, false, 5), 30);
        let (a, b, c) = (Snapshot::of(&a), Snapshot::of(&b), Snapshot::of(&c));
        assert_eq!(max_diff(&b, &c), 0.0, "plain Adam is deterministic");
        assert_eq!(max_diff(&a, &b), 0.0);
    }

    #[test]
    fn soft_reset_drifts_and_scales_steps_and_learns_gamma() {
        // A fixed γ < 1: one update's drift is θ' = γθ + (1 − γ)μ₀ + √(1 − γ²)σ₀ε.
        let config = PlasticityConfig {
            soft_reset: true,
            soft_reset_gamma: 0.8,
            soft_reset_gamma_lr: 0.0,
            ..PlasticityConfig::default()
        };
        let model = mlp(false, false, 2);
        let mut p = Plasticity::new(&config, &model).with_seed(4);
        let before = Snapshot::of(&model);
        let drifted = Snapshot::of(&p.begin_update(model.clone()));
        // The 16 × 16 hidden weights: the residual is noise of the predicted scale.
        let w = Layered::layers(&model)[1].weights[0];
        let i = param_ids(&model).iter().position(|x| *x == w).unwrap();
        let (mu, sigma) = p.prior[i];
        let residual: Vec<f32> = before
            .get(i)
            .iter()
            .zip(drifted.get(i))
            .map(|(b, d)| d - (0.8 * b + 0.2 * mu))
            .collect();
        let (m, sd) = mean_std(&residual);
        let want = (1.0f32 - 0.64).sqrt() * sigma;
        assert!(
            m.abs() < 0.3 * want && (sd / want - 1.0).abs() < 0.25,
            "{m} {sd} vs {want}"
        );
        // Seeded: the same drift again from the same state.
        let mut q = Plasticity::new(&config, &model).with_seed(4);
        assert_eq!(
            max_diff(&Snapshot::of(&q.begin_update(model)), &drifted),
            0.0
        );
        assert_eq!(p.state().drifts, 1);
        // Learned γ: fitting outputs of zero on a network with large outputs wants
        // the parameters pulled toward μ₀, so γ falls below 1.
        let config = PlasticityConfig {
            soft_reset: true,
            soft_reset_gamma_lr: 1e-3,
            ..PlasticityConfig::default()
        };
        let model = edit_params(mlp(false, false, 2), &mut |_, v| {
            v.iter_mut().for_each(|x| *x *= 3.0);
            true
        });
        let mut p = Plasticity::new(&config, &mlp(false, false, 2));
        let model = p.begin_update(model);
        let (x, _) = data(3);
        let loss = model.forward(x).square().mean();
        let mut grads = GradientsParams::from_grads(loss.backward(), &model);
        p.regularise(&model, &mut grads);
        let g = p.gammas();
        assert!(g.iter().any(|&g| g < 1.0), "{g:?}");
        assert!(g.iter().all(|&g| (0.5..=1.0).contains(&g)));
    }

    #[test]
    fn weight_decay_terms() {
        let model = mlp(true, false, 4);
        let init = Snapshot::of(&model);
        let shifted = edit_params(model, &mut |_, v| {
            v.iter_mut().for_each(|x| *x += 1.0);
            true
        });
        let (x, _) = data(2);
        let ids = param_ids(&shifted);
        let layers = Layered::layers(&shifted);
        let norm_param = layers[0].norm[0];
        let weight = layers[0].weights[0];
        for (kind, want) in [(DecayKind::L2Init, 0.5f32), (DecayKind::L2, f32::NAN)] {
            let config = PlasticityConfig {
                weight_decay: 0.5,
                weight_decay_kind: kind,
                ..PlasticityConfig::default()
            };
            let mut p = Plasticity::new(&config, &mlp(true, false, 4));
            let loss = shifted.forward(x.clone()).sum().mul_scalar(0.0);
            let mut grads = GradientsParams::from_grads(loss.backward(), &shifted);
            p.regularise(&shifted, &mut grads);
            let g = to_vec(grads.get::<2>(weight).unwrap());
            let w = ids.iter().position(|i| *i == weight).unwrap();
            for (k, gk) in g.iter().enumerate() {
                let expect = if want.is_nan() {
                    0.5 * (init.get(w)[k] + 1.0)
                } else {
                    want
                };
                assert!((gk - expect).abs() < 1e-5, "{kind:?}: {gk} vs {expect}");
            }
            // Layer-norm scales are not decayed.
            let g = to_vec(grads.get::<1>(norm_param).unwrap());
            assert!(g.iter().all(|v| v.abs() < 1e-6), "{g:?}");
        }
        // Decoupled: θ ← θ(1 − ηλ) after the step.
        let config = PlasticityConfig {
            weight_decay: 0.5,
            ..PlasticityConfig::default()
        };
        let model = mlp(false, false, 4);
        let mut p = Plasticity::new(&config, &model);
        let before = Snapshot::of(&model);
        let after = Snapshot::of(&p.after_step(model, 0.1, None));
        for i in 0..before.len() {
            for (b, a) in before.get(i).iter().zip(after.get(i)) {
                assert!((b * 0.95 - a).abs() < 1e-6);
            }
        }
    }

    #[test]
    fn hard_reset_and_shrink_perturb() {
        let config = PlasticityConfig::default();
        let model = mlp(true, false, 1);
        let fresh = mlp(true, false, 99);
        let mut p = Plasticity::new(&config, &model);
        let (old, new) = (Snapshot::of(&model), Snapshot::of(&fresh));
        let (reset, count) = p.hard_reset(model.clone(), &fresh);
        assert_eq!(count, 1);
        let got = Snapshot::of(&reset);
        // The output layer (weight and bias) is the fresh one's.
        let ids = param_ids(&reset);
        let out = &Layered::layers(&reset)[2];
        let last: Vec<usize> = [out.weights[0], out.others[0]]
            .iter()
            .map(|id| ids.iter().position(|x| x == id).unwrap())
            .collect();
        let n = got.len();
        for i in 0..n {
            let want = if last.contains(&i) {
                new.get(i)
            } else {
                old.get(i)
            };
            assert_eq!(got.get(i), want, "tensor {i}");
        }
        let sp = Snapshot::of(&p.shrink_perturb(model, &fresh));
        for i in 0..n {
            for ((s, o), f) in sp.get(i).iter().zip(old.get(i)).zip(new.get(i)) {
                assert!((s - (0.4 * o + 0.1 * f)).abs() < 1e-6);
            }
        }
        let all = PlasticityConfig {
            hard_reset_layers: ResetLayers::All,
            ..PlasticityConfig::default()
        };
        let mut p = Plasticity::new(&all, &mlp(true, false, 1));
        let (reset, count) = p.hard_reset(mlp(true, false, 1), &fresh);
        assert_eq!(count, 3);
        assert_eq!(max_diff(&Snapshot::of(&reset), &new), 0.0);
    }

    #[test]
    fn redo_reinitialises_exactly_the_dormant_units() {
        let config = PlasticityConfig {
            redo_tau: 0.1,
            ..PlasticityConfig::default()
        };
        let model = mlp(false, true, 6);
        let fresh = mlp(false, true, 60);
        let ids = param_ids(&model);
        let layers = Layered::layers(&model);
        let pos = |id: ParamId| ids.iter().position(|x| *x == id).unwrap();
        let (w0, b0, w1, b1, w2) = (
            pos(layers[0].weights[0]),
            pos(layers[0].others[0]),
            pos(layers[1].weights[0]),
            pos(layers[1].others[0]),
            pos(layers[2].weights[0]),
        );
        // Kill units 2 and 5 of the first hidden layer: zero weights, negative bias.
        let dead = [2usize, 5];
        let model = edit_params(model, &mut |i, v| {
            if i == w0 {
                for (k, x) in v.iter_mut().enumerate() {
                    if dead.contains(&(k % 16)) {
                        *x = 0.0;
                    }
                }
                true
            } else if i == b0 {
                dead.iter().for_each(|&u| v[u] = -1.0);
                true
            } else {
                false
            }
        });
        let (x, _) = data(5);
        let scores = Plasticity::unit_scores(&model, x.clone());
        let dormant: Vec<usize> = (0..16).filter(|&u| scores[0][u] <= 0.1).collect();
        assert_eq!(dormant, dead);
        // Whatever the second hidden layer has dormant is recycled too.
        let second: Vec<usize> = (0..16).filter(|&u| scores[1][u] <= 0.1).collect();
        let before = Snapshot::of(&model);
        let p = Plasticity::new(&config, &model);
        let (recycled, counts) = p.redo(model, &fresh, x);
        assert_eq!(counts, vec![2, second.len()]);
        let (after, new) = (Snapshot::of(&recycled), Snapshot::of(&fresh));
        for i in 0..after.len() {
            for (k, (a, b)) in after.get(i).iter().zip(before.get(i)).enumerate() {
                // A later layer's recycling wins (layers are processed input first).
                let recycled_in = ((i == w0 || i == b0) && dead.contains(&(k % 16)))
                    || ((i == w1 || i == b1) && second.contains(&(k % 16)));
                let recycled_out =
                    (i == w1 && dead.contains(&(k / 16))) || (i == w2 && second.contains(&(k / 3)));
                let want = if recycled_in {
                    new.get(i)[k]
                } else if recycled_out {
                    0.0
                } else {
                    *b
                };
                assert_eq!(*a, want, "tensor {i} element {k}");
            }
        }
    }

    #[test]
    fn the_capacity_probe_fits_a_fresh_network() {
        let (x, _) = data(9);
        let model = mlp(false, false, 1);
        let fresh = mlp(false, false, 2);
        let before = Snapshot::of(&model);
        let short = capacity_probe(&model, &fresh, x.clone(), 1, 1e-2);
        let long = capacity_probe(&model, &fresh, x.clone(), 300, 1e-2);
        assert!(long < 0.1 && long < short, "{short} -> {long}");
        assert_eq!(max_diff(&before, &Snapshot::of(&model)), 0.0);
        // A network whose units are all dead cannot fit anything.
        let dead = edit_params(mlp(false, true, 1), &mut |_, v| {
            v.iter_mut().for_each(|x| *x = -1.0);
            true
        });
        let stuck = capacity_probe(&dead, &fresh, x, 300, 1e-2);
        assert!(stuck > 0.5, "{stuck}");
    }

    #[test]
    fn elr_is_reported_and_tracks_a_target() {
        let config = PlasticityConfig {
            target_elr: 1e-3,
            ..PlasticityConfig::default()
        };
        let (model, mut p) = train(&config, mlp(false, false, 8), 150);
        p.set_measuring(true);
        let (model, mut p) = {
            // 20 more measured steps with the learned scale.
            let mut model = model;
            let mut opt = AdamConfig::new().init();
            let (x, y) = data(7);
            for _ in 0..20 {
                let loss = (model.forward(x.clone()) - y.clone()).square().mean();
                let grads = GradientsParams::from_grads(loss.backward(), &model);
                let before = p.before_step(&model);
                model = opt.step(1e-2 * p.lr_scale(), model, grads);
                model = p.after_step(model, 1e-2, before);
            }
            (model, p)
        };
        let (x, _) = data(1);
        let reports = p.report(&model, x, diagnostics::Activation::Tanh);
        assert_eq!(reports.len(), 3);
        let mean = reports.iter().map(|r| r.elr).sum::<f64>() / 3.0;
        assert!((mean / 1e-3).ln().abs() < 1.0, "mean ELR {mean}");
        assert!(
            reports
                .iter()
                .all(|r| r.weight_norm > 0.0 && r.update_norm > 0.0)
        );
        assert!(reports[0].features.is_some() && reports[2].features.is_none());
        assert!(p.lr_scale() < 0.9, "scale {}", p.lr_scale());
    }

    #[test]
    fn a_qnets_last_layers_are_its_stream_outputs_and_redo_silences_noisy_outgoing_weights() {
        let config = crate::qnet::QNetConfig {
            dueling: true,
            noisy: true,
            ..crate::qnet::QNetConfig::new(4, &[16, 16], 3)
        };
        let device = crate::cpu_autodiff();
        let net = config.init_seeded(&device, 1);
        let layers = Layered::layers(&net);
        let names: Vec<(&str, usize)> = layers
            .iter()
            .map(|l| (l.name.as_str(), l.from_output))
            .collect();
        assert_eq!(
            names,
            [
                ("trunk.0", 2),
                ("value.0", 1),
                ("value.1", 0),
                ("advantage.0", 1),
                ("advantage.1", 0)
            ]
        );
        let fresh = config.init_seeded(&device, 2);
        let (old, new) = (Snapshot::of(&net), Snapshot::of(&fresh));
        let ids = param_ids(&net);
        let pos = |id: ParamId| ids.iter().position(|x| *x == id).unwrap();
        let owned = |l: &Layer| -> Vec<usize> {
            l.weights
                .iter()
                .chain(&l.others)
                .chain(&l.noise)
                .chain(&l.norm)
                .map(|&id| pos(id))
                .collect()
        };
        for (which, reset) in [
            (ResetLayers::Last, vec!["value.1", "advantage.1"]),
            (
                ResetLayers::LastN(2),
                vec!["value.0", "value.1", "advantage.0", "advantage.1"],
            ),
        ] {
            let cfg = PlasticityConfig {
                hard_reset_layers: which,
                ..PlasticityConfig::default()
            };
            let mut p = Plasticity::new(&cfg, &net);
            let got = Snapshot::of(&p.hard_reset(net.clone(), &fresh).0);
            for l in &layers {
                let from_fresh = reset.contains(&l.name.as_str());
                for i in owned(l) {
                    let want = if from_fresh { new.get(i) } else { old.get(i) };
                    assert_eq!(got.get(i), want, "{}", l.name);
                }
            }
        }
        // A trunk unit's outgoing weights, μ and σ, in both streams.
        let trunk = layers[0].units.as_ref().unwrap();
        let sigmas = [&layers[1], &layers[3]].map(|l| pos(l.noise[0]));
        for s in sigmas {
            assert!(trunk.outgoing.iter().any(|&id| pos(id) == s));
        }
        // σ is neither decayed nor part of a layer's (W, b).
        let cfg = PlasticityConfig {
            weight_decay: 0.5,
            ..PlasticityConfig::default()
        };
        let mut p = Plasticity::new(&cfg, &net);
        let after = Snapshot::of(&p.after_step(net.clone(), 0.1, None));
        for s in sigmas {
            assert_eq!(after.get(s), old.get(s));
        }
    }
}
