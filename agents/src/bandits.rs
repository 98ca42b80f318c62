//! Classic bandit baselines — ε-greedy, UCB1, Thompson sampling, LinUCB and uniform
//! random play — and [`run_bandit`], a loop that plays any bandit environment and scores
//! the agent by the regret the environment reports in its `regret` extra.
//!
//! ```
//! use agentry_agents::bandits::{run_bandit, Ucb1};
//! use agentry_envs::{make, Params};
//! let p = Params::new().with("kind", "bernoulli").with("horizon", 500i64);
//! let mut env = make("bandit", &p).unwrap();
//! let mut agent = Ucb1::new(10).unwrap();
//! let run = run_bandit(&mut env, &mut agent, 500, 7).unwrap();
//! assert_eq!(run.regrets.len(), 500);
//! assert!(run.cumulative_regret > 0.0);
//! assert_eq!(run.arms_never_tried, 0.0); // UCB1 starts by pulling every arm once
//! ```
//!
//! Agents see the observation as their context: the K-armed bandits observe a constant,
//! which every agent but [`LinUcb`] ignores.

use agentry_envs::{
    Action, Dtype, Env, EnvError, EnvRng, ObsMut, Out, Space, derive_seed, rng_from_seed,
};
use rand::RngExt;
use rand_distr::{Beta, Distribution, StandardNormal};

/// What can go wrong building a bandit agent or running one.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BanditError {
    /// A constructor argument outside its domain.
    #[error("bad bandit agent setting: {0}")]
    BadConfig(String),
    /// The agent and the environment do not fit together.
    #[error("agent and environment do not match: {0}")]
    Mismatch(String),
    /// The environment failed.
    #[error(transparent)]
    Env(#[from] EnvError),
}

fn bad<T>(message: String) -> Result<T, BanditError> {
    Err(BanditError::BadConfig(message))
}

fn check_arms(arms: usize) -> Result<(), BanditError> {
    if arms == 0 {
        return bad("a bandit agent needs at least one arm".into());
    }
    Ok(())
}

/// An agent for a (possibly contextual) bandit with a fixed number of arms.
///
/// `context` is the environment's observation at the pull (a constant for K-armed
/// bandits); agents that do not use contexts ignore it.
pub trait BanditAgent {
    /// Number of arms.
    fn arms(&self) -> usize;
    /// Length of the context the agent uses (`None`: it ignores the context).
    fn context_dim(&self) -> Option<usize>;
    /// The arm to pull next (ties broken with `rng`).
    fn select(&mut self, context: &[f32], rng: &mut EnvRng) -> usize;
    /// Learn from the reward of pulling `arm` in `context`.
    fn update(&mut self, arm: usize, context: &[f32], reward: f64);
    /// Forget everything (a new bandit instance).
    fn reset(&mut self);
}

/// Running argmax that breaks ties uniformly at random (reservoir sampling), so the
/// scores are computed once and nothing is allocated. NaN scores never win.
pub(crate) struct Argmax {
    pub(crate) best: usize,
    score: f64,
    ties: u32,
}

impl Argmax {
    pub(crate) fn new() -> Self {
        Argmax {
            best: 0,
            score: f64::NEG_INFINITY,
            ties: 0,
        }
    }

    pub(crate) fn offer(&mut self, index: usize, score: f64, rng: &mut EnvRng) {
        if score > self.score {
            (self.best, self.score, self.ties) = (index, score, 1);
        } else if score == self.score {
            self.ties += 1;
            if rng.random_range(0..self.ties) == 0 {
                self.best = index;
            }
        }
    }
}

/// Pull counts and mean rewards per arm.
#[derive(Clone, Debug)]
struct ArmStats {
    counts: Vec<u64>,
    means: Vec<f64>,
    total: u64,
}

impl ArmStats {
    fn new(arms: usize) -> Self {
        ArmStats {
            counts: vec![0; arms],
            means: vec![0.0; arms],
            total: 0,
        }
    }

    fn update(&mut self, arm: usize, reward: f64) {
        if let (Some(n), Some(m)) = (self.counts.get_mut(arm), self.means.get_mut(arm)) {
            *n += 1;
            *m += (reward - *m) / *n as f64;
            self.total += 1;
        }
    }

    fn reset(&mut self) {
        self.counts.fill(0);
        self.means.fill(0.0);
        self.total = 0;
    }

    /// The first arm not pulled yet.
    fn untried(&self) -> Option<usize> {
        self.counts.iter().position(|&c| c == 0)
    }
}

/// ε-greedy: a uniformly random arm with probability ε, else the arm with the best
/// empirical mean (ties at random; untried arms count as mean 0). ε may decay as
/// ε₀ / (1 + decay · t) after t pulls.
#[derive(Clone, Debug)]
pub struct EpsilonGreedy {
    stats: ArmStats,
    epsilon: f64,
    decay: f64,
}

impl EpsilonGreedy {
    /// Constant ε ∈ [0, 1].
    pub fn new(arms: usize, epsilon: f64) -> Result<Self, BanditError> {
        Self::with_decay(arms, epsilon, 0.0)
    }

    /// ε₀ / (1 + decay · t) after t pulls (ε₀ ∈ [0, 1], decay ≥ 0).
    pub fn with_decay(arms: usize, epsilon: f64, decay: f64) -> Result<Self, BanditError> {
        check_arms(arms)?;
        if !(0.0..=1.0).contains(&epsilon) {
            return bad(format!("ε = {epsilon} must lie in [0, 1]"));
        }
        if !(decay.is_finite() && decay >= 0.0) {
            return bad(format!("ε decay = {decay} must be finite and ≥ 0"));
        }
        Ok(EpsilonGreedy {
            stats: ArmStats::new(arms),
            epsilon,
            decay,
        })
    }

    /// The ε of the next pull.
    pub fn epsilon(&self) -> f64 {
        self.epsilon / (1.0 + self.decay * self.stats.total as f64)
    }

    /// Empirical mean reward of every arm.
    pub fn estimates(&self) -> &[f64] {
        &self.stats.means
    }
}

impl BanditAgent for EpsilonGreedy {
    fn arms(&self) -> usize {
        self.stats.counts.len()
    }
    fn context_dim(&self) -> Option<usize> {
        None
    }
    fn select(&mut self, _context: &[f32], rng: &mut EnvRng) -> usize {
        if rng.random::<f64>() < self.epsilon() {
            return rng.random_range(0..self.arms());
        }
        let mut best = Argmax::new();
        for (a, m) in self.stats.means.iter().enumerate() {
            best.offer(a, *m, rng);
        }
        best.best
    }
    fn update(&mut self, arm: usize, _context: &[f32], reward: f64) {
        self.stats.update(arm, reward);
    }
    fn reset(&mut self) {
        self.stats.reset();
    }
}

/// UCB1 (Auer, Cesa-Bianchi & Fischer 2002): pull every arm once, then the arm
/// maximising mean + c·√(ln t / n_a) after t pulls, with c = √2 by default (the paper's
/// index mean + √(2 ln t / n_a); ties at random).
#[derive(Clone, Debug)]
pub struct Ucb1 {
    stats: ArmStats,
    c: f64,
}

impl Ucb1 {
    /// UCB1 with c = √2.
    pub fn new(arms: usize) -> Result<Self, BanditError> {
        Self::with_exploration(arms, std::f64::consts::SQRT_2)
    }

    /// UCB1 with exploration constant `c` ≥ 0.
    pub fn with_exploration(arms: usize, c: f64) -> Result<Self, BanditError> {
        check_arms(arms)?;
        if !(c.is_finite() && c >= 0.0) {
            return bad(format!(
                "UCB exploration constant c = {c} must be finite and ≥ 0"
            ));
        }
        Ok(Ucb1 {
            stats: ArmStats::new(arms),
            c,
        })
    }

    /// Pulls of every arm.
    pub fn counts(&self) -> &[u64] {
        &self.stats.counts
    }
}

impl BanditAgent for Ucb1 {
    fn arms(&self) -> usize {
        self.stats.counts.len()
    }
    fn context_dim(&self) -> Option<usize> {
        None
    }
    fn select(&mut self, _context: &[f32], rng: &mut EnvRng) -> usize {
        if let Some(arm) = self.stats.untried() {
            return arm;
        }
        let ln_t = (self.stats.total as f64).ln();
        let mut best = Argmax::new();
        for (a, (m, &n)) in self.stats.means.iter().zip(&self.stats.counts).enumerate() {
            best.offer(a, m + self.c * (ln_t / n as f64).sqrt(), rng);
        }
        best.best
    }
    fn update(&mut self, arm: usize, _context: &[f32], reward: f64) {
        self.stats.update(arm, reward);
    }
    fn reset(&mut self) {
        self.stats.reset();
    }
}

/// The model behind [`ThompsonSampling`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Prior {
    /// Beta(1, 1) per arm, for rewards in {0, 1}. A reward r in between counts as r
    /// successes and 1 − r failures (clamped into [0, 1]).
    BetaBernoulli,
    /// Mean ~ N(0, prior_var) per arm and rewards ~ N(mean, σ²) with σ known.
    Gaussian {
        /// Prior variance of each mean (> 0).
        prior_var: f64,
        /// Known reward noise σ (> 0).
        sigma: f64,
    },
}

/// Thompson sampling: draw a mean per arm from its posterior, pull the largest.
#[derive(Clone, Debug)]
pub struct ThompsonSampling {
    prior: Prior,
    /// Beta: successes; Gaussian: sum of rewards.
    a: Vec<f64>,
    /// Beta: failures; Gaussian: number of pulls.
    b: Vec<f64>,
}

impl ThompsonSampling {
    /// Thompson sampling with `prior`.
    pub fn new(arms: usize, prior: Prior) -> Result<Self, BanditError> {
        check_arms(arms)?;
        if let Prior::Gaussian { prior_var, sigma } = prior
            && !(prior_var.is_finite() && prior_var > 0.0 && sigma.is_finite() && sigma > 0.0)
        {
            return bad(format!(
                "Gaussian Thompson sampling needs finite prior_var > 0 and σ > 0 (got {prior_var}, {sigma})"
            ));
        }
        Ok(ThompsonSampling {
            prior,
            a: vec![0.0; arms],
            b: vec![0.0; arms],
        })
    }

    /// Beta-Bernoulli Thompson sampling, for 0/1 rewards.
    pub fn bernoulli(arms: usize) -> Result<Self, BanditError> {
        Self::new(arms, Prior::BetaBernoulli)
    }

    /// Gaussian Thompson sampling with a N(0, 1) prior on each mean (the distribution the
    /// Gaussian bandits draw their means from) and known reward noise `sigma`.
    pub fn gaussian(arms: usize, sigma: f64) -> Result<Self, BanditError> {
        Self::new(
            arms,
            Prior::Gaussian {
                prior_var: 1.0,
                sigma,
            },
        )
    }

    /// The posterior mean of every arm's reward, written into `out` (one per arm).
    pub fn posterior_means(&self, out: &mut [f64]) {
        for (o, (a, b)) in out.iter_mut().zip(self.a.iter().zip(&self.b)) {
            *o = match self.prior {
                Prior::BetaBernoulli => (1.0 + a) / (2.0 + a + b),
                Prior::Gaussian { prior_var, sigma } => {
                    let s2 = sigma * sigma;
                    (a / s2) / (1.0 / prior_var + b / s2)
                }
            };
        }
    }
}

impl BanditAgent for ThompsonSampling {
    fn arms(&self) -> usize {
        self.a.len()
    }
    fn context_dim(&self) -> Option<usize> {
        None
    }
    fn select(&mut self, _context: &[f32], rng: &mut EnvRng) -> usize {
        let mut best = Argmax::new();
        for (arm, (&a, &b)) in self.a.iter().zip(&self.b).enumerate() {
            let sample = match self.prior {
                Prior::BetaBernoulli => {
                    Beta::new(1.0 + a, 1.0 + b).map_or(0.5, |beta| beta.sample(rng))
                }
                Prior::Gaussian { prior_var, sigma } => {
                    // Posterior precision 1/τ² + n/σ², mean (Σr/σ²) / precision.
                    let s2 = sigma * sigma;
                    let precision = 1.0 / prior_var + b / s2;
                    let z: f64 = StandardNormal.sample(rng);
                    (a / s2) / precision + z / precision.sqrt()
                }
            };
            best.offer(arm, sample, rng);
        }
        best.best
    }
    fn update(&mut self, arm: usize, _context: &[f32], reward: f64) {
        let (Some(a), Some(b)) = (self.a.get_mut(arm), self.b.get_mut(arm)) else {
            return;
        };
        match self.prior {
            Prior::BetaBernoulli => {
                let r = if reward.is_nan() {
                    0.0
                } else {
                    reward.clamp(0.0, 1.0)
                };
                *a += r;
                *b += 1.0 - r;
            }
            Prior::Gaussian { .. } => {
                *a += reward;
                *b += 1.0;
            }
        }
    }
    fn reset(&mut self) {
        self.a.fill(0.0);
        self.b.fill(0.0);
    }
}

/// LinUCB with disjoint linear models (Li, Chu, Langford & Schapire 2010, Algorithm 1):
/// per arm a ridge regression θ̂ₐ = Aₐ⁻¹bₐ with Aₐ = λI + Σ x xᵀ and bₐ = Σ r x, and the
/// pull maximising θ̂ₐᵀx + α·√(xᵀAₐ⁻¹x) (ties at random).
///
/// Aₐ⁻¹ is kept directly and updated with the Sherman–Morrison formula, so a pull costs
/// O(K·d²) and allocates nothing.
#[derive(Clone, Debug)]
pub struct LinUcb {
    arms: usize,
    dim: usize,
    alpha: f64,
    ridge: f64,
    /// Aₐ⁻¹ for every arm, `arms × dim × dim`, row-major.
    a_inv: Vec<f64>,
    /// bₐ for every arm, `arms × dim`.
    b: Vec<f64>,
    x: Vec<f64>,
    v: Vec<f64>,
}

impl LinUcb {
    /// LinUCB over `dim`-dimensional contexts with exploration `alpha` ≥ 0 and ridge λ = 1.
    pub fn new(arms: usize, dim: usize, alpha: f64) -> Result<Self, BanditError> {
        Self::with_ridge(arms, dim, alpha, 1.0)
    }

    /// LinUCB with ridge (prior precision) λ > 0.
    pub fn with_ridge(
        arms: usize,
        dim: usize,
        alpha: f64,
        ridge: f64,
    ) -> Result<Self, BanditError> {
        check_arms(arms)?;
        if dim == 0 {
            return bad("LinUCB needs a context dimension ≥ 1".into());
        }
        if !(alpha.is_finite() && alpha >= 0.0) {
            return bad(format!("LinUCB α = {alpha} must be finite and ≥ 0"));
        }
        if !(ridge.is_finite() && ridge > 0.0) {
            return bad(format!("LinUCB ridge λ = {ridge} must be finite and > 0"));
        }
        let mut agent = LinUcb {
            arms,
            dim,
            alpha,
            ridge,
            a_inv: vec![0.0; arms * dim * dim],
            b: vec![0.0; arms * dim],
            x: vec![0.0; dim],
            v: vec![0.0; dim],
        };
        agent.reset();
        Ok(agent)
    }

    /// The ridge estimate θ̂ of `arm`, written into `out` (length `dim`).
    pub fn estimate(&self, arm: usize, out: &mut [f64]) {
        let d = self.dim;
        let (Some(a_inv), Some(b)) = (
            self.a_inv.get(arm * d * d..(arm + 1) * d * d),
            self.b.get(arm * d..(arm + 1) * d),
        ) else {
            return;
        };
        for (o, row) in out.iter_mut().zip(a_inv.chunks_exact(d)) {
            *o = row.iter().zip(b).map(|(p, q)| p * q).sum();
        }
    }

    /// Copy `context` into `self.x` (missing entries as 0) and set `self.v = A⁻¹ₐ x`;
    /// returns xᵀA⁻¹ₐx and bₐᵀA⁻¹ₐx = θ̂ₐᵀx.
    fn project(&mut self, arm: usize) -> (f64, f64) {
        let d = self.dim;
        let a_inv = &self.a_inv[arm * d * d..(arm + 1) * d * d];
        for (v, row) in self.v.iter_mut().zip(a_inv.chunks_exact(d)) {
            *v = row.iter().zip(&self.x).map(|(p, q)| p * q).sum();
        }
        let b = &self.b[arm * d..(arm + 1) * d];
        let xv = self.x.iter().zip(&self.v).map(|(p, q)| p * q).sum();
        let bv = b.iter().zip(&self.v).map(|(p, q)| p * q).sum();
        (xv, bv)
    }

    fn load(&mut self, context: &[f32]) {
        self.x.fill(0.0);
        for (x, c) in self.x.iter_mut().zip(context) {
            *x = f64::from(*c);
        }
    }
}

impl BanditAgent for LinUcb {
    fn arms(&self) -> usize {
        self.arms
    }
    fn context_dim(&self) -> Option<usize> {
        Some(self.dim)
    }
    fn select(&mut self, context: &[f32], rng: &mut EnvRng) -> usize {
        self.load(context);
        let mut best = Argmax::new();
        for arm in 0..self.arms {
            let (xv, mean) = self.project(arm);
            best.offer(arm, mean + self.alpha * xv.max(0.0).sqrt(), rng);
        }
        best.best
    }
    fn update(&mut self, arm: usize, context: &[f32], reward: f64) {
        if arm >= self.arms || !reward.is_finite() {
            return;
        }
        self.load(context);
        let (xv, _) = self.project(arm);
        let d = self.dim;
        // Sherman–Morrison: (A + x xᵀ)⁻¹ = A⁻¹ − (A⁻¹x)(A⁻¹x)ᵀ / (1 + xᵀA⁻¹x), A symmetric.
        let scale = 1.0 / (1.0 + xv);
        let a_inv = &mut self.a_inv[arm * d * d..(arm + 1) * d * d];
        for (row, vi) in a_inv.chunks_exact_mut(d).zip(&self.v) {
            for (entry, vj) in row.iter_mut().zip(&self.v) {
                *entry -= scale * vi * vj;
            }
        }
        for (b, x) in self.b[arm * d..(arm + 1) * d].iter_mut().zip(&self.x) {
            *b += reward * x;
        }
    }
    fn reset(&mut self) {
        let d = self.dim;
        self.a_inv.fill(0.0);
        for m in self.a_inv.chunks_exact_mut(d * d) {
            for i in 0..d {
                m[i * d + i] = 1.0 / self.ridge;
            }
        }
        self.b.fill(0.0);
    }
}

/// Uniformly random pulls (the baseline every agent must beat).
#[derive(Clone, Debug)]
pub struct RandomArm {
    arms: usize,
}

impl RandomArm {
    /// Pull one of `arms` arms at random.
    pub fn new(arms: usize) -> Result<Self, BanditError> {
        check_arms(arms)?;
        Ok(RandomArm { arms })
    }
}

impl BanditAgent for RandomArm {
    fn arms(&self) -> usize {
        self.arms
    }
    fn context_dim(&self) -> Option<usize> {
        None
    }
    fn select(&mut self, _context: &[f32], rng: &mut EnvRng) -> usize {
        rng.random_range(0..self.arms)
    }
    fn update(&mut self, _arm: usize, _context: &[f32], _reward: f64) {}
    fn reset(&mut self) {}
}

/// What [`run_bandit`] measured.
#[derive(Clone, Debug, PartialEq)]
pub struct BanditRun {
    /// Reward of every pull.
    pub rewards: Vec<f64>,
    /// Regret of every pull, as the environment reported it (expected, not sampled).
    pub regrets: Vec<f64>,
    /// The arm of every pull.
    pub arms: Vec<usize>,
    /// Sum of `regrets`.
    pub cumulative_regret: f64,
    /// Pulls of the optimal arm, when the environment reports `optimal_arm`.
    pub optimal_pulls: Option<u64>,
    /// Episodes played (the agent is reset at the start of each; at least 1).
    pub episodes: u64,
    /// Fraction of the arms never pulled within an episode, averaged over the complete
    /// episodes (or taken from the one partial episode if none completed): a sign of too
    /// little exploration.
    pub arms_never_tried: f64,
}

impl BanditRun {
    /// Total regret of the first `t` pulls.
    pub fn regret_at(&self, t: usize) -> f64 {
        self.regrets.iter().take(t).sum()
    }

    /// Cumulative regret after every pull.
    pub fn regret_curve(&self) -> Vec<f64> {
        self.regrets
            .iter()
            .scan(0.0, |sum, r| {
                *sum += r;
                Some(*sum)
            })
            .collect()
    }

    /// Mean reward per pull (0 for no pulls).
    pub fn mean_reward(&self) -> f64 {
        self.rewards.iter().sum::<f64>() / self.rewards.len().max(1) as f64
    }
}

/// Play `pulls` pulls of a bandit environment with `agent` and score it by the `regret`
/// extra the environment reports.
///
/// The environment is reset with `seed`, and the agent's generator seeded from
/// `derive_seed(seed, 1)`, so a run is reproducible. Each episode may be a new bandit
/// instance, so the agent is reset at the start of every episode. The loop goes through
/// `reset_into`/`step_into` with buffers allocated once; the agent sees the observation
/// of each pull as its context.
///
/// Errors: the environment reports no `regret`, its action space is not `Discrete(K)`
/// with K = `agent.arms()`, its observations are not `f32`, or a contextual agent's
/// dimension differs from the observation's; and any error of the environment.
pub fn run_bandit<E, A>(
    env: &mut E,
    agent: &mut A,
    pulls: usize,
    seed: u64,
) -> Result<BanditRun, BanditError>
where
    E: Env + ?Sized,
    A: BanditAgent + ?Sized,
{
    let names = env.extra_names();
    let Some(regret_at) = names.iter().position(|n| *n == "regret") else {
        return Err(BanditError::Mismatch(
            "the environment reports no `regret`: it is not a bandit".into(),
        ));
    };
    let optimal_at = names.iter().position(|n| *n == "optimal_arm");
    let (arms, space) = (agent.arms(), env.action_space());
    if !matches!(space, Space::Discrete(n) if *n == arms) {
        return Err(BanditError::Mismatch(format!(
            "the agent has {arms} arms, the action space is {space}"
        )));
    }
    let obs_space = env.observation_space();
    let dim = obs_space.flat_dim();
    if obs_space.dtype() != Dtype::F32 {
        return Err(BanditError::Mismatch(
            "bandit agents read f32 observations".into(),
        ));
    }
    if let Some(d) = agent.context_dim()
        && d != dim
    {
        return Err(BanditError::Mismatch(format!(
            "the agent reads {d}-dimensional contexts, the observations have {dim} values"
        )));
    }

    let mut rng = rng_from_seed(derive_seed(seed, 1));
    // `context` is the observation the pull is made in; `next` receives the step's.
    let mut context = vec![0.0f32; dim];
    let mut next = vec![0.0f32; dim];
    let mut mask = vec![true; env.action_mask_len()];
    let mut extras = vec![0.0; names.len()];
    env.reset_into(
        Some(seed),
        Out {
            obs: ObsMut::F32(&mut context),
            action_mask: &mut mask,
            extras: &mut extras,
        },
    )?;
    agent.reset();

    let mut run = BanditRun {
        rewards: Vec::with_capacity(pulls),
        regrets: Vec::with_capacity(pulls),
        arms: Vec::with_capacity(pulls),
        cumulative_regret: 0.0,
        optimal_pulls: optimal_at.map(|_| 0),
        episodes: 1,
        arms_never_tried: 0.0,
    };
    let mut tried = vec![false; arms];
    let never_tried = |tried: &[bool]| tried.iter().filter(|t| !**t).count() as f64 / arms as f64;
    let (mut untried_sum, mut complete) = (0.0, 0u64);
    let mut ended = false;
    for _ in 0..pulls {
        // Reset lazily, so that `episodes` counts only episodes that had a pull.
        if ended {
            env.reset_into(
                None,
                Out {
                    obs: ObsMut::F32(&mut context),
                    action_mask: &mut mask,
                    extras: &mut extras,
                },
            )?;
            agent.reset();
            run.episodes += 1;
            ended = false;
        }
        let arm = agent.select(&context, &mut rng);
        let step = env.step_into(
            Action::Discrete(arm),
            Out {
                obs: ObsMut::F32(&mut next),
                action_mask: &mut mask,
                extras: &mut extras,
            },
        )?;
        agent.update(arm, &context, step.reward);
        let regret = extras[regret_at];
        run.rewards.push(step.reward);
        run.regrets.push(regret);
        run.arms.push(arm);
        run.cumulative_regret += regret;
        if let (Some(count), Some(i)) = (&mut run.optimal_pulls, optimal_at) {
            *count += u64::from(extras[i] == arm as f64);
        }
        tried[arm] = true;
        std::mem::swap(&mut context, &mut next);
        if step.done() {
            untried_sum += never_tried(&tried);
            complete += 1;
            tried.fill(false);
            ended = true;
        }
    }
    run.arms_never_tried = if complete > 0 {
        untried_sum / complete as f64
    } else {
        never_tried(&tried)
    };
    Ok(run)
}

#[cfg(test)]
mod tests {
    use super::*;
    use agentry_envs::Params;

    const MEANS: [f64; 10] = [0.9, 0.6, 0.5, 0.45, 0.4, 0.35, 0.3, 0.2, 0.1, 0.05];

    /// A fixed 10-armed Bernoulli instance with a clear gap (0.3), played in one episode
    /// of `horizon` pulls.
    fn instance(horizon: usize) -> Box<dyn Env> {
        let p = Params::new()
            .with("kind", "bernoulli")
            .with("means", MEANS.to_vec())
            .with("resample", false)
            .with("horizon", horizon as i64);
        agentry_envs::make("bandit", &p).unwrap()
    }

    /// Mean cumulative regret after `pulls / 10` and after `pulls` pulls, over `seeds` runs.
    fn mean_regret(agent: &mut dyn BanditAgent, pulls: usize, seeds: u64) -> (f64, f64) {
        let (mut early, mut late) = (0.0, 0.0);
        for seed in 0..seeds {
            let run = run_bandit(&mut instance(pulls), agent, pulls, seed).unwrap();
            early += run.regret_at(pulls / 10);
            late += run.cumulative_regret;
        }
        (early / seeds as f64, late / seeds as f64)
    }

    #[test]
    fn ucb1_regret_grows_logarithmically() {
        let (r_t, r_10t) = mean_regret(&mut Ucb1::new(10).unwrap(), 10_000, 5);
        let ratio = r_10t / r_t;
        // Linear growth gives 10; log growth tends to ln(10⁴)/ln(10³) ≈ 1.33.
        println!("UCB1 regret(T=1000) = {r_t:.1}, regret(10T) = {r_10t:.1}, ratio {ratio:.2}");
        assert!(
            ratio < 4.0,
            "regret(10T)/regret(T) = {r_10t:.1}/{r_t:.1} = {ratio:.2}"
        );
        assert!(ratio > 1.0 && r_t > 0.0);
        // Uniform play on the same instance grows linearly (ratio ≈ 10).
        let (u_t, u_10t) = mean_regret(&mut RandomArm::new(10).unwrap(), 10_000, 2);
        assert!(u_10t / u_t > 8.0, "random: {u_10t:.1}/{u_t:.1}");
    }

    #[test]
    fn thompson_sampling_beats_random_by_far() {
        let random = mean_regret(&mut RandomArm::new(10).unwrap(), 2000, 5).1;
        // Random: 2000 × mean gap (0.515) ≈ 1030.
        assert!((random / 2000.0 - 0.515).abs() < 0.03, "{random}");
        let ts = mean_regret(&mut ThompsonSampling::bernoulli(10).unwrap(), 2000, 5).1;
        println!("Thompson {ts:.1} vs random {random:.1}");
        assert!(ts < 0.1 * random, "Thompson {ts:.1} vs random {random:.1}");
        // The Gaussian model also works on 0/1 rewards (σ = 0.5 bounds their std).
        let gauss = mean_regret(&mut ThompsonSampling::gaussian(10, 0.5).unwrap(), 2000, 5).1;
        assert!(
            gauss < 0.2 * random,
            "Gaussian {gauss:.1} vs random {random:.1}"
        );
    }

    #[test]
    fn gaussian_thompson_sampling_on_gaussian_arms() {
        // Ten N(μ, 1) arms with μ ~ N(0, 1), a new instance every episode of 500 pulls.
        let p = Params::new().with("horizon", 500i64);
        let mut env = agentry_envs::make("bandit", &p).unwrap();
        let ts = run_bandit(
            &mut env,
            &mut ThompsonSampling::gaussian(10, 1.0).unwrap(),
            5000,
            1,
        )
        .unwrap();
        let random = run_bandit(&mut env, &mut RandomArm::new(10).unwrap(), 5000, 1).unwrap();
        assert_eq!(ts.episodes, 10);
        assert!(
            ts.cumulative_regret < 0.2 * random.cumulative_regret,
            "{} vs {}",
            ts.cumulative_regret,
            random.cumulative_regret
        );
    }

    #[test]
    fn greedy_gets_stuck_while_epsilon_greedy_does_not() {
        // Greedy (ε = 0) sticks with the first arm that pays once: untried arms keep their
        // estimate 0. With ε = 0.1 every arm is tried and the best one is found.
        let seeds = 20;
        let (mut stuck, mut greedy_untried, mut greedy_regret) = (0, 0.0, 0.0);
        let (mut found, mut eps_regret) = (0, 0.0);
        for seed in 0..seeds {
            let greedy = run_bandit(
                &mut instance(2000),
                &mut EpsilonGreedy::new(10, 0.0).unwrap(),
                2000,
                seed,
            )
            .unwrap();
            let best_late = greedy.arms[1000..].iter().filter(|&&a| a == 0).count();
            stuck += usize::from(best_late < 100);
            greedy_untried += greedy.arms_never_tried / seeds as f64;
            greedy_regret += greedy.cumulative_regret / seeds as f64;
            let eps = run_bandit(
                &mut instance(2000),
                &mut EpsilonGreedy::new(10, 0.1).unwrap(),
                2000,
                seed,
            )
            .unwrap();
            assert_eq!(eps.arms_never_tried, 0.0, "seed {seed}");
            let best_late = eps.arms[1000..].iter().filter(|&&a| a == 0).count();
            found += usize::from(best_late > 850);
            eps_regret += eps.cumulative_regret / seeds as f64;
        }
        println!(
            "greedy: stuck in {stuck}/{seeds}, {greedy_untried:.2} of arms untried, regret {greedy_regret:.0}; ε=0.1: best found in {found}/{seeds}, regret {eps_regret:.0}"
        );
        // The first paying arm is the best one with probability 0.9 / Σμ ≈ 0.23.
        assert!(stuck >= 8, "greedy stuck in only {stuck} of {seeds} runs");
        assert!(greedy_untried > 0.5, "{greedy_untried}");
        assert_eq!(found, seeds as usize);
        assert!(eps_regret < 0.5 * greedy_regret);
        // ε = 1 is uniform play: its regret is about the mean gap per pull.
        let run = run_bandit(
            &mut instance(5000),
            &mut EpsilonGreedy::new(10, 1.0).unwrap(),
            5000,
            3,
        )
        .unwrap();
        assert!((run.cumulative_regret / 5000.0 - 0.515).abs() < 0.05);
    }

    #[test]
    fn epsilon_decays() {
        let mut agent = EpsilonGreedy::with_decay(3, 0.5, 0.1).unwrap();
        assert_eq!(agent.epsilon(), 0.5);
        for _ in 0..10 {
            agent.update(1, &[], 1.0);
        }
        assert!((agent.epsilon() - 0.25).abs() < 1e-12);
        assert_eq!(agent.estimates(), &[0.0, 1.0, 0.0]);
        agent.reset();
        assert_eq!(agent.epsilon(), 0.5);
    }

    #[test]
    fn regret_matches_the_hand_computed_gaps() {
        // Means 0.2, 0.5, 0.9: pulling arm a costs 0.9 − μₐ = 0.7, 0.4, 0.
        let p = Params::new()
            .with("kind", "bernoulli")
            .with("arms", 3i64)
            .with("means", vec![0.2, 0.5, 0.9])
            .with("horizon", 100i64);
        let mut env = agentry_envs::make("bandit", &p).unwrap();
        let run = run_bandit(&mut env, &mut RandomArm::new(3).unwrap(), 300, 4).unwrap();
        let gaps = [0.7, 0.4, 0.0];
        for (arm, regret) in run.arms.iter().zip(&run.regrets) {
            assert!((regret - gaps[*arm]).abs() < 1e-12, "arm {arm}: {regret}");
        }
        let by_hand: f64 = run.arms.iter().map(|a| gaps[*a]).sum();
        assert!((run.cumulative_regret - by_hand).abs() < 1e-9);
        assert!((run.regret_curve()[299] - by_hand).abs() < 1e-9);
        let optimal = run.arms.iter().filter(|&&a| a == 2).count() as u64;
        assert_eq!(run.optimal_pulls, Some(optimal));
        assert!(run.rewards.iter().all(|r| *r == 0.0 || *r == 1.0));
        assert_eq!(run.episodes, 3);
    }

    #[test]
    fn arms_never_tried_is_averaged_over_episodes() {
        // An agent that always pulls arm 0 leaves 9 of 10 arms untried in every episode.
        struct Always;
        impl BanditAgent for Always {
            fn arms(&self) -> usize {
                10
            }
            fn context_dim(&self) -> Option<usize> {
                None
            }
            fn select(&mut self, _: &[f32], _: &mut EnvRng) -> usize {
                0
            }
            fn update(&mut self, _: usize, _: &[f32], _: f64) {}
            fn reset(&mut self) {}
        }
        let run = run_bandit(&mut instance(10), &mut Always, 35, 0).unwrap();
        assert!((run.arms_never_tried - 0.9).abs() < 1e-12);
        assert_eq!(run.optimal_pulls, Some(35));
        assert_eq!(run.cumulative_regret, 0.0);
        // Random play over 10-pull episodes misses about (0.9)¹⁰ ≈ 35 % of the arms.
        let run = run_bandit(
            &mut instance(10),
            &mut RandomArm::new(10).unwrap(),
            10_000,
            0,
        )
        .unwrap();
        assert!((run.arms_never_tried - 0.9f64.powi(10)).abs() < 0.02);
        // No pulls: nothing was tried.
        let run = run_bandit(&mut instance(10), &mut Always, 0, 0).unwrap();
        assert_eq!(run.arms_never_tried, 1.0);
    }

    #[test]
    fn runs_are_seeded() {
        let mut env = agentry_envs::make("bandit", &Params::new()).unwrap();
        let mut agent = ThompsonSampling::gaussian(10, 1.0).unwrap();
        let a = run_bandit(&mut env, &mut agent, 300, 5).unwrap();
        let b = run_bandit(&mut env, &mut agent, 300, 5).unwrap();
        let c = run_bandit(&mut env, &mut agent, 300, 6).unwrap();
        assert_eq!(a, b);
        assert_ne!(a.rewards, c.rewards);
    }

    #[test]
    fn agents_reset_between_episodes_and_mismatches_are_errors() {
        let mut env = agentry_envs::make("bandit", &Params::new().with("horizon", 50i64)).unwrap();
        let run = run_bandit(&mut env, &mut Ucb1::new(10).unwrap(), 500, 0).unwrap();
        assert_eq!(run.episodes, 10);
        // UCB1 restarts by trying every arm in each new episode.
        assert_eq!(&run.arms[50..60], &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
        assert!(matches!(
            run_bandit(&mut env, &mut Ucb1::new(3).unwrap(), 10, 0),
            Err(BanditError::Mismatch(_))
        ));
        let mut cartpole = agentry_envs::make("cartpole", &Params::new()).unwrap();
        assert!(matches!(
            run_bandit(&mut cartpole, &mut Ucb1::new(2).unwrap(), 10, 0),
            Err(BanditError::Mismatch(_))
        ));
        let mut contextual = agentry_envs::make("contextual-bandit", &Params::new()).unwrap();
        assert!(matches!(
            run_bandit(&mut contextual, &mut LinUcb::new(5, 3, 1.0).unwrap(), 10, 0),
            Err(BanditError::Mismatch(_))
        ));
    }

    #[test]
    fn constructors_reject_bad_settings() {
        assert!(EpsilonGreedy::new(0, 0.1).is_err());
        assert!(EpsilonGreedy::new(3, 1.5).is_err());
        assert!(EpsilonGreedy::new(3, f64::NAN).is_err());
        assert!(EpsilonGreedy::with_decay(3, 0.1, -1.0).is_err());
        assert!(Ucb1::with_exploration(3, -1.0).is_err());
        assert!(Ucb1::new(0).is_err());
        assert!(ThompsonSampling::gaussian(3, 0.0).is_err());
        assert!(
            ThompsonSampling::new(
                3,
                Prior::Gaussian {
                    prior_var: -1.0,
                    sigma: 1.0
                }
            )
            .is_err()
        );
        assert!(LinUcb::new(3, 0, 1.0).is_err());
        assert!(LinUcb::with_ridge(3, 2, 1.0, 0.0).is_err());
        assert!(RandomArm::new(0).is_err());
    }

    #[test]
    fn thompson_posteriors() {
        let mut ts = ThompsonSampling::bernoulli(2).unwrap();
        for r in [1.0, 1.0, 0.0, 1.0] {
            ts.update(0, &[], r);
        }
        let mut m = [0.0; 2];
        ts.posterior_means(&mut m);
        // Beta(1 + 3, 1 + 1) and the untouched Beta(1, 1).
        assert_eq!(m, [4.0 / 6.0, 0.5]);
        let mut ts = ThompsonSampling::gaussian(1, 2.0).unwrap();
        ts.update(0, &[], 3.0);
        ts.update(0, &[], 1.0);
        ts.posterior_means(&mut m[..1]);
        // Precision 1 + 2/4 = 1.5, mean (4/4)/1.5.
        assert!((m[0] - 1.0 / 1.5).abs() < 1e-12);
    }

    #[test]
    fn linucb_keeps_the_exact_inverse() {
        // After updates, A⁻¹ (kept by Sherman–Morrison) times A = λI + Σ x xᵀ is I, and
        // θ̂ solves the ridge regression.
        let (d, ridge) = (3, 0.5);
        let mut agent = LinUcb::with_ridge(2, d, 1.0, ridge).unwrap();
        let mut rng = rng_from_seed(1);
        let mut a = vec![0.0; d * d];
        for i in 0..d {
            a[i * d + i] = ridge;
        }
        let theta = [0.5, -1.0, 2.0];
        for _ in 0..50 {
            let x: Vec<f32> = (0..d)
                .map(|_| StandardNormal.sample(&mut rng))
                .collect::<Vec<f32>>();
            let r: f64 = theta.iter().zip(&x).map(|(t, x)| t * f64::from(*x)).sum();
            agent.update(1, &x, r);
            for i in 0..d {
                for j in 0..d {
                    a[i * d + j] += f64::from(x[i]) * f64::from(x[j]);
                }
            }
        }
        let a_inv = &agent.a_inv[d * d..];
        for i in 0..d {
            for j in 0..d {
                let p: f64 = (0..d).map(|k| a_inv[i * d + k] * a[k * d + j]).sum();
                assert!(
                    (p - f64::from(u8::from(i == j))).abs() < 1e-9,
                    "({i},{j}): {p}"
                );
            }
        }
        // Noise-free rewards: the ridge estimate is close to θ (shrunk by λ = 0.5 only).
        let mut est = [0.0; 3];
        agent.estimate(1, &mut est);
        for (e, t) in est.iter().zip(&theta) {
            assert!((e - t).abs() < 0.05, "{est:?}");
        }
        // Arm 0 is untouched.
        agent.estimate(0, &mut est);
        assert_eq!(est, [0.0; 3]);
    }

    #[test]
    fn linucb_learns_the_contextual_bandit() {
        // A fixed instance of the linear contextual bandit (5 arms, d = 4, σ = 0.1).
        let p = Params::new()
            .with("resample", false)
            .with("instance_seed", 3i64)
            .with("horizon", 3000i64);
        let mut env = agentry_envs::make("contextual-bandit", &p).unwrap();
        let lin = run_bandit(&mut env, &mut LinUcb::new(5, 4, 1.0).unwrap(), 3000, 0).unwrap();
        let random = run_bandit(&mut env, &mut RandomArm::new(5).unwrap(), 3000, 0).unwrap();
        // UCB1 ignores the context: every arm's mean over contexts is 0, so it plays blind.
        let ucb = run_bandit(&mut env, &mut Ucb1::new(5).unwrap(), 3000, 0).unwrap();
        let late = |r: &BanditRun| r.cumulative_regret - r.regret_at(1500);
        println!(
            "contextual regret: LinUCB {:.1}, UCB1 {:.1}, random {:.1}; LinUCB optimal pulls {:?}",
            lin.cumulative_regret,
            ucb.cumulative_regret,
            random.cumulative_regret,
            lin.optimal_pulls
        );
        assert!(lin.cumulative_regret < 0.1 * random.cumulative_regret);
        assert!(lin.cumulative_regret < 0.1 * ucb.cumulative_regret);
        // Sublinear: the second half costs much less than the first.
        assert!(late(&lin) < 0.5 * lin.regret_at(1500));
        assert!(lin.optimal_pulls.unwrap() > 2700);
    }
}
