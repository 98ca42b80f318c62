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

/// A linear contextual bandit: each pull shows a context x ~ N(0, I_d); pulling arm a
/// pays θₐᵀx + σ·N(0, 1), with θₐ ~ N(0, I/d) drawn per episode (or once).
#[derive(Debug, Clone)]
pub struct ContextualBandit {
    config: ContextualBanditConfig,
    theta: Vec<f64>,
    context: Vec<f64>,
    t: u64,
    rng: EnvRng,
    obs_space: Space,
    act_space: Space,
    ready: bool,
}

impl ContextualBandit {
    /// A contextual bandit set up by `config`.
    pub fn new(config: ContextualBanditConfig) -> Result<Self> {
        if config.arms == 0
            || config.dim == 0
            || config.horizon == 0
            || !(config.sigma.is_finite() && config.sigma >= 0.0)
        {
            return Err(EnvError::Invalid(format!(
                "invalid contextual bandit {config:?}"
            )));
        }
        let mut b = ContextualBandit {
            theta: vec![0.0; config.arms * config.dim],
            context: vec![0.0; config.dim],
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
        Ok(b)
    }

    /// θ, arm after arm (`arms × dim`).
    pub fn theta(&self) -> &[f64] {
        &self.theta
    }

    /// The current context.
    pub fn context(&self) -> &[f64] {
        &self.context
    }

    /// Expected reward of `arm` in the current context.
    pub fn expected_reward(&self, arm: usize) -> f64 {
        let d = self.config.dim;
        self.theta[arm * d..(arm + 1) * d]
            .iter()
            .zip(&self.context)
            .map(|(a, b)| a * b)
            .sum()
    }

    fn best(&self) -> (usize, f64) {
        (0..self.config.arms)
            .map(|a| (a, self.expected_reward(a)))
            .fold((0, f64::NEG_INFINITY), |b, x| if x.1 > b.1 { x } else { b })
    }

    fn new_context(&mut self, out: Out<'_>) -> Result<()> {
        for x in &mut self.context {
            *x = StandardNormal.sample(&mut self.rng);
        }
        let obs = out.obs.f32()?;
        for (o, x) in obs.iter_mut().zip(&self.context) {
            *o = *x as f32;
        }
        out.extras[1] = self.best().0 as f64;
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
    fn reset_into(&mut self, seed: Option<u64>, out: Out<'_>) -> Result<()> {
        if let Some(seed) = seed {
            self.rng = rng_from_seed(seed);
        }
        if self.config.resample {
            draw_theta(&mut self.rng, &mut self.theta, self.config.dim);
        }
        self.t = 0;
        self.ready = true;
        out.extras[0] = 0.0;
        self.new_context(out)
    }
    #[inline]
    fn step_into(&mut self, action: Action<'_>, mut out: Out<'_>) -> Result<Step> {
        let arm = self.act_space.discrete_index(&action)?;
        if !self.ready {
            return Err(EnvError::NeedsReset(
                "before reset or after the episode ended",
            ));
        }
        let expected = self.expected_reward(arm);
        let noise: f64 = StandardNormal.sample(&mut self.rng);
        let reward = expected + self.config.sigma * noise;
        out.extras[0] = self.best().1 - expected;
        self.t += 1;
        let truncated = self.t >= self.config.horizon;
        self.ready = !truncated;
        self.new_context(out.reborrow())?;
        Ok(Step {
            reward,
            terminated: false,
            truncated,
        })
    }
    fn render_ansi(&self) -> String {
        let mut s = format!(
            "pull {}/{}; context {:.2?}\n",
            self.t, self.config.horizon, self.context
        );
        for a in 0..self.config.arms {
            s.push_str(&format!(
                "  arm {a}: expected {:+.3}\n",
                self.expected_reward(a)
            ));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::env::EnvExt;

    #[test]
    fn rewards_are_linear_in_the_context_on_average() {
        let mut env = ContextualBandit::new(ContextualBanditConfig {
            horizon: 100_000,
            sigma: 0.5,
            ..Default::default()
        })
        .unwrap();
        env.reset(Some(2)).unwrap();
        let (mut err, n) = (0.0, 20_000);
        for i in 0..n {
            let arm = i % 5;
            let expected = env.expected_reward(arm);
            let best = (0..5)
                .map(|a| env.expected_reward(a))
                .fold(f64::NEG_INFINITY, f64::max);
            let t = env.step(Action::Discrete(arm)).unwrap();
            err += t.reward - expected;
            assert!((t.info.get("regret").unwrap() - (best - expected)).abs() < 1e-12);
        }
        // Noise averages out: mean error ~ 0.5 / sqrt(20000) ≈ 0.0035.
        assert!((err / n as f64).abs() < 0.02, "{}", err / n as f64);
    }

    #[test]
    fn contexts_are_fresh_and_seeded() {
        let mut a = ContextualBandit::new(ContextualBanditConfig::default()).unwrap();
        let mut b = ContextualBandit::new(ContextualBanditConfig::default()).unwrap();
        let (oa, _) = a.reset(Some(8)).unwrap();
        let (ob, _) = b.reset(Some(8)).unwrap();
        assert_eq!(oa, ob);
        let next = a.step(Action::Discrete(0)).unwrap().obs;
        assert_ne!(next, oa);
        assert!(a.step(Action::Discrete(5)).is_err());
    }
}
