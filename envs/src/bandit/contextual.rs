use rand_distr::{Distribution, StandardNormal};

use super::EXTRAS;
use crate::env::{Env, Out, Step};
use crate::error::{EnvError, Result};
use crate::params::{ParamKind, ParamSpec, ResolvedParams};
use crate::rng::{DEFAULT_SEED, EnvRng, rng_from_seed};
use crate::space::{Action, BoxSpace, Space};

/// How a [`ContextualBandit`] is set up.
#[derive(Clone, Debug, PartialEq)]
pub struct ContextualBanditConfig {
    /// Number of arms.
    pub arms: usize,
    /// Context dimension d.
    pub dim: usize,
    /// Reward noise σ.
    pub sigma: f64,
    /// Pulls per episode (then truncated).
    pub horizon: u64,
    /// Draw new arm parameters θ at every reset; otherwise once, from `instance_seed`.
    pub resample: bool,
    /// Seed of θ when drawn once.
    pub instance_seed: u64,
}

impl Default for ContextualBanditConfig {
    /// Five arms, d = 4, σ = 0.1, 100 pulls, θ redrawn every episode.
    fn default() -> Self {
        ContextualBanditConfig {
            arms: 5,
            dim: 4,
            sigma: 0.1,
            horizon: 100,
            resample: true,
            instance_seed: 0,
        }
    }
}

pub(super) fn params() -> Vec<ParamSpec> {
    vec![
        ParamSpec::new(
            "arms",
            ParamKind::Int {
                min: 1,
                max: 100_000,
            },
            "5",
            "number of arms",
        ),
        ParamSpec::new(
            "dim",
            ParamKind::Int {
                min: 1,
                max: 100_000,
            },
            "4",
            "context dimension d",
        ),
        ParamSpec::new(
            "sigma",
            ParamKind::Float { min: 0.0, max: 1e6 },
            "0.1",
            "reward noise σ",
        ),
        ParamSpec::new(
            "horizon",
            ParamKind::Int {
                min: 1,
                max: i64::MAX,
            },
            "100",
            "pulls per episode",
        ),
        ParamSpec::new(
            "resample",
            ParamKind::Bool,
            "true",
            "draw new arm parameters every episode",
        ),
        ParamSpec::new(
            "instance_seed",
            ParamKind::Int {
                min: 0,
                max: i64::MAX,
            },
            "0",
            "seed of the parameters when drawn once",
        ),
    ]
}

impl ContextualBanditConfig {
    pub(super) fn from_params(p: &ResolvedParams) -> Result<Self> {
        let (arms, dim) = (p.usize("arms")?, p.usize("dim")?);
        if arms.saturating_mul(dim) > 10_000_000 {
            return Err(p.error(
                "dim",
                format!("{arms} arms × {dim} dimensions is too large (at most 10⁷ parameters)"),
            ));
        }
        Ok(ContextualBanditConfig {
            arms,
            dim,
            sigma: p.float("sigma")?,
            horizon: p.usize("horizon")? as u64,
            resample: p.bool("resample")?,
            instance_seed: p.usize("instance_seed")? as u64,
        })
    }
}

/// A linear contextual bandit: each pull shows a context x ~ N(0, I_d) (the observation,
/// a `Box` of shape `[d]`); pulling arm a pays θₐᵀx + σ·N(0, 1), with every θₐ ~ N(0, I/d)
/// (so each arm's expected reward has unit variance over contexts), drawn at every reset
/// or once from `instance_seed`. The regret of a pull is maxₐ θₐᵀx − θᵀx of the arm pulled,
/// in the context it was pulled in.
///
/// ```
/// use agentry_envs::bandit::{ContextualBandit, ContextualBanditConfig};
/// use agentry_envs::{Action, EnvExt};
/// let mut env = ContextualBandit::new(ContextualBanditConfig::default()).unwrap();
/// let (context, _) = env.reset(Some(1)).unwrap();
/// assert_eq!(context.to_f32().len(), 4);
/// let best = env.optimal_arm();
/// let t = env.step(Action::Discrete(best)).unwrap();
/// assert_eq!(t.info.get("regret"), Some(0.0));
/// ```
#[derive(Debug, Clone)]
pub struct ContextualBandit {
    config: ContextualBanditConfig,
    theta: Vec<f64>,
    context: Vec<f64>,
    /// Expected reward of every arm in the current context.
    expected: Vec<f64>,
    best: usize,
    t: u64,
    rng: EnvRng,
    obs_space: Space,
    act_space: Space,
    ready: bool,
}

impl ContextualBandit {
    /// A contextual bandit set up by `config`, or [`EnvError::Invalid`] for no arms, a
    /// zero dimension or horizon, or a negative or non-finite σ.
    pub fn new(config: ContextualBanditConfig) -> Result<Self> {
        if config.arms == 0
            || config.dim == 0
            || config.horizon == 0
            || !(config.sigma.is_finite() && config.sigma >= 0.0)
        {
            return Err(EnvError::Invalid(format!(
                "a contextual bandit needs arms, dim and horizon ≥ 1 and a finite σ ≥ 0: {config:?}"
            )));
        }
        let mut b = ContextualBandit {
            theta: vec![0.0; config.arms * config.dim],
            context: vec![0.0; config.dim],
            expected: vec![0.0; config.arms],
            best: 0,
            t: 0,
            rng: rng_from_seed(DEFAULT_SEED),
            obs_space: Space::Box(BoxSpace::uniform(
                f32::NEG_INFINITY,
                f32::INFINITY,
                &[config.dim],
                crate::Dtype::F32,
            )),
            act_space: Space::Discrete(config.arms),
            ready: false,
            config,
        };
        let mut rng = rng_from_seed(b.config.instance_seed);
        draw_theta(&mut rng, &mut b.theta, b.config.dim);
        b.evaluate();
        Ok(b)
    }

    /// The setup.
    pub fn config(&self) -> &ContextualBanditConfig {
        &self.config
    }

    /// θ, arm after arm (`arms × dim`, row-major).
    pub fn theta(&self) -> &[f64] {
        &self.theta
    }

    /// The context the next pull is made in (valid after `reset`).
    pub fn context(&self) -> &[f64] {
        &self.context
    }

    /// The expected reward θₐᵀx of every arm in the current context.
    pub fn means(&self) -> &[f64] {
        &self.expected
    }

    /// The arm with the largest expected reward in the current context (first on ties).
    pub fn optimal_arm(&self) -> usize {
        self.best
    }

    /// Expected reward of `arm` in the current context (`None` for an arm that does not exist).
    pub fn expected_reward(&self, arm: usize) -> Option<f64> {
        self.expected.get(arm).copied()
    }

    /// Pulls made in this episode.
    pub fn pulls(&self) -> u64 {
        self.t
    }

    /// Recompute the expected rewards and the best arm for the current context.
    fn evaluate(&mut self) {
        let d = self.config.dim;
        for (e, th) in self.expected.iter_mut().zip(self.theta.chunks_exact(d)) {
            *e = th.iter().zip(&self.context).map(|(a, b)| a * b).sum();
        }
        self.best = super::multi_armed::argmax(&self.expected);
    }

    /// Draw the next context and write it as the observation.
    fn new_context(&mut self, out: Out<'_>) -> Result<()> {
        for x in &mut self.context {
            *x = StandardNormal.sample(&mut self.rng);
        }
        self.evaluate();
        let obs = out.obs.f32()?;
        for (o, x) in obs.iter_mut().zip(&self.context) {
            *o = *x as f32;
        }
        Ok(())
    }
}

fn draw_theta(rng: &mut EnvRng, theta: &mut [f64], dim: usize) {
    let scale = 1.0 / (dim as f64).sqrt();
    for t in theta {
        *t = scale * Distribution::<f64>::sample(&StandardNormal, rng);
    }
}

impl Env for ContextualBandit {
    fn observation_space(&self) -> &Space {
        &self.obs_space
    }
    fn action_space(&self) -> &Space {
        &self.act_space
    }
    fn extra_names(&self) -> &[&'static str] {
        &EXTRAS
    }
    fn reset_into(&mut self, seed: Option<u64>, mut out: Out<'_>) -> Result<()> {
        if let Some(seed) = seed {
            self.rng = rng_from_seed(seed);
        }
        if self.config.resample {
            draw_theta(&mut self.rng, &mut self.theta, self.config.dim);
        }
        self.t = 0;
        self.ready = true;
        self.new_context(out.reborrow())?;
        out.extras[0] = 0.0;
        out.extras[1] = self.best as f64;
        out.extras[2] = self.expected[self.best];
        Ok(())
    }
    #[inline]
    fn step_into(&mut self, action: Action<'_>, out: Out<'_>) -> Result<Step> {
        let arm = self.act_space.discrete_index(&action)?;
        if !self.ready {
            return Err(EnvError::NeedsReset(
                "before reset or after the episode ended",
            ));
        }
        let expected = self.expected[arm];
        let best_mean = self.expected[self.best];
        let noise: f64 = StandardNormal.sample(&mut self.rng);
        let reward = expected + self.config.sigma * noise;
        // The extras describe this pull, in the context it was made in.
        out.extras[0] = best_mean - expected;
        out.extras[1] = self.best as f64;
        out.extras[2] = best_mean;
        self.t += 1;
        let truncated = self.t >= self.config.horizon;
        self.ready = !truncated;
        self.new_context(out)?;
        Ok(Step {
            reward,
            terminated: false,
            truncated,
        })
    }
    fn render_ansi(&self) -> String {
        let mut s = format!(
            "pull {}/{}; context {:+.2?}\n",
            self.t, self.config.horizon, self.context
        );
        for (a, e) in self.expected.iter().enumerate() {
            s.push_str(&format!(
                "  arm {a}: expected {e:+.3}{}\n",
                if a == self.best { "  (best)" } else { "" }
            ));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::env::EnvExt;
    use crate::params::Params;

    fn env(config: ContextualBanditConfig) -> ContextualBandit {
        ContextualBandit::new(config).unwrap()
    }

    #[test]
    fn rewards_follow_theta_x_on_average() {
        // With x ~ N(0, I), E[r·x] = E[x xᵀ] θₐ = θₐ: estimate θ from rewards alone.
        let (arms, dim, n) = (3, 4, 30_000);
        let mut env = env(ContextualBanditConfig {
            arms,
            dim,
            horizon: u64::MAX,
            sigma: 0.5,
            ..Default::default()
        });
        env.reset(Some(2)).unwrap();
        let mut estimate = vec![0.0; arms * dim];
        let mut residual = 0.0;
        for i in 0..arms * n {
            let arm = i % arms;
            let x = env.context().to_vec();
            let expected: f64 = env.theta()[arm * dim..(arm + 1) * dim]
                .iter()
                .zip(&x)
                .map(|(a, b)| a * b)
                .sum();
            assert!((env.expected_reward(arm).unwrap() - expected).abs() < 1e-12);
            let t = env.step(Action::Discrete(arm)).unwrap();
            residual += t.reward - expected;
            for (e, xi) in estimate[arm * dim..(arm + 1) * dim].iter_mut().zip(&x) {
                *e += t.reward * xi / n as f64;
            }
        }
        // Noise averages out: residual mean ~ 0.5 / sqrt(90000) ≈ 0.0017.
        assert!((residual / (arms * n) as f64).abs() < 0.01);
        // Each component of the estimate has standard deviation about sqrt(2 / n) ≈ 0.008.
        for (e, t) in estimate.iter().zip(env.theta()) {
            assert!(
                (e - t).abs() < 0.05,
                "estimate {estimate:?} vs θ {:?}",
                env.theta()
            );
        }
    }

    #[test]
    fn regret_is_measured_in_the_context_of_the_pull() {
        let mut env = env(ContextualBanditConfig::default());
        let (obs, info) = env.reset(Some(4)).unwrap();
        assert_eq!(
            obs.to_f32(),
            env.context().iter().map(|x| *x as f32).collect::<Vec<_>>()
        );
        assert_eq!(info.get("regret"), Some(0.0));
        assert_eq!(info.get("optimal_arm"), Some(env.optimal_arm() as f64));
        let mut optimal_pulls = 0;
        for i in 0..100 {
            let arm = i % 5;
            let means = env.means().to_vec();
            let best = means.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let t = env.step(Action::Discrete(arm)).unwrap();
            assert_eq!(t.info.get("regret"), Some(best - means[arm]));
            assert_eq!(t.info.get("best_mean"), Some(best));
            let opt = t.info.get("optimal_arm").unwrap() as usize;
            assert_eq!(means[opt], best);
            optimal_pulls += usize::from(opt == arm);
            assert!(t.info.get("regret").unwrap() >= 0.0);
        }
        // The optimal arm depends on the context: cycling hits it about 1 in 5 times.
        assert!((5..=40).contains(&optimal_pulls), "{optimal_pulls}");
    }

    #[test]
    fn seeded_determinism_and_fresh_contexts() {
        let run = |seed: u64| {
            let mut e =
                crate::make("contextual-bandit", &Params::new().with("horizon", 30i64)).unwrap();
            let (first, _) = e.reset(Some(seed)).unwrap();
            let mut trace = vec![(first, 0.0, vec![])];
            for i in 0..30 {
                let t = e.step(Action::Discrete(i % 5)).unwrap();
                trace.push((t.obs, t.reward, t.info.extras));
            }
            trace
        };
        assert_eq!(run(8), run(8));
        assert_ne!(run(8), run(9));
        let trace = run(8);
        assert_ne!(trace[0].0, trace[1].0);
        // Never seeded: as if seeded with DEFAULT_SEED.
        let mut a = env(ContextualBanditConfig::default());
        let mut b = a.clone();
        assert_eq!(a.reset(None).unwrap(), b.reset(Some(DEFAULT_SEED)).unwrap());
    }

    #[test]
    fn resample_or_a_fixed_instance() {
        let mut env1 = env(ContextualBanditConfig::default());
        env1.reset(Some(1)).unwrap();
        let theta = env1.theta().to_vec();
        env1.reset(None).unwrap();
        assert_ne!(theta, env1.theta());
        let fixed = |seed| {
            let mut e = env(ContextualBanditConfig {
                resample: false,
                instance_seed: seed,
                ..Default::default()
            });
            e.reset(Some(3)).unwrap();
            e.reset(Some(4)).unwrap();
            e.theta().to_vec()
        };
        assert_eq!(fixed(7), fixed(7));
        assert_ne!(fixed(7), fixed(8));
        // θ ~ N(0, I/d): the sample variance over many arms is about 1/d.
        let e = env(ContextualBanditConfig {
            arms: 500,
            dim: 8,
            resample: false,
            ..Default::default()
        });
        let var = e.theta().iter().map(|t| t * t).sum::<f64>() / 4000.0;
        assert!((var - 0.125).abs() < 0.015, "{var}");
    }

    #[test]
    fn horizon_invalid_arms_and_needs_reset() {
        let mut env = env(ContextualBanditConfig {
            horizon: 3,
            ..Default::default()
        });
        assert!(matches!(
            env.step(Action::Discrete(0)),
            Err(EnvError::NeedsReset(_))
        ));
        env.reset(Some(0)).unwrap();
        let context = env.context().to_vec();
        assert!(matches!(
            env.step(Action::Discrete(5)),
            Err(EnvError::InvalidAction { .. })
        ));
        assert_eq!(
            env.context(),
            context,
            "an invalid action changed the state"
        );
        assert_eq!(env.pulls(), 0);
        let ends: Vec<(bool, bool)> = (0..3)
            .map(|_| {
                let t = env.step(Action::Discrete(1)).unwrap();
                (t.terminated, t.truncated)
            })
            .collect();
        assert_eq!(ends, [(false, false), (false, false), (false, true)]);
        assert!(matches!(
            env.step(Action::Discrete(0)),
            Err(EnvError::NeedsReset(_))
        ));
        assert!(env.render_ansi().contains("pull 3/3"));
    }

    #[test]
    fn bad_setups_are_errors() {
        for p in [
            Params::new().with("arms", 0i64),
            Params::new().with("dim", 0i64),
            Params::new().with("sigma", -0.1),
            Params::new().with("arms", 100_000i64).with("dim", 1000i64),
        ] {
            assert!(
                matches!(
                    crate::make("contextual-bandit", &p),
                    Err(EnvError::BadParam { .. })
                ),
                "{p:?}"
            );
        }
        assert!(
            ContextualBandit::new(ContextualBanditConfig {
                sigma: f64::NAN,
                ..Default::default()
            })
            .is_err()
        );
    }
}
