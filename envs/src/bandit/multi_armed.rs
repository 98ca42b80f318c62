use rand::RngExt;
use rand_distr::{Distribution, StandardNormal};

use super::EXTRAS;
use crate::env::{Env, Out, Step};
use crate::error::{EnvError, Result};
use crate::params::{ParamKind, ParamSpec, ResolvedParams};
use crate::rng::{DEFAULT_SEED, EnvRng, rng_from_seed};
use crate::space::{Action, BoxSpace, Space};

/// The reward distribution of the arms.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ArmKind {
    /// Rewards 0 or 1; means in [0, 1] (drawn U(0, 1)).
    Bernoulli,
    /// Rewards mean + σ·N(0, 1); means drawn N(0, 1).
    Gaussian {
        /// Noise standard deviation σ.
        sigma: f64,
    },
}

/// Whether and how the arm means change while the bandit is played.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Stationarity {
    /// The means stay put within an episode.
    Stationary,
    /// After every pull each mean takes a Gaussian random-walk step of this standard
    /// deviation (Bernoulli means are reflected into [0, 1]).
    Drift(f64),
    /// Every this many pulls all means are redrawn.
    Switch(u64),
}

/// How a [`Bandit`] is set up.
#[derive(Clone, Debug, PartialEq)]
pub struct BanditConfig {
    /// Number of arms K.
    pub arms: usize,
    /// Reward distribution.
    pub kind: ArmKind,
    /// Pulls per episode (the episode is then truncated).
    pub horizon: u64,
    /// Fixed arm means; `None` draws them (see `resample`).
    pub means: Option<Vec<f64>>,
    /// Draw new means at every reset (from the environment's generator); otherwise they
    /// are drawn once, from `instance_seed`.
    pub resample: bool,
    /// Seed of the means when they are drawn once.
    pub instance_seed: u64,
    /// Whether the means change during play.
    pub stationarity: Stationarity,
}

impl Default for BanditConfig {
    /// Ten Gaussian arms (σ = 1), 50 pulls, means redrawn every episode (as in Schmied et al. 2025).
    fn default() -> Self {
        BanditConfig {
            arms: 10,
            kind: ArmKind::Gaussian { sigma: 1.0 },
            horizon: 50,
            means: None,
            resample: true,
            instance_seed: 0,
            stationarity: Stationarity::Stationary,
        }
    }
}

pub(super) fn params() -> Vec<ParamSpec> {
    vec![
        ParamSpec::new(
            "arms",
            ParamKind::Int {
                min: 1,
                max: 1_000_000,
            },
            "10",
            "number of arms K",
        ),
        ParamSpec::new(
            "kind",
            ParamKind::Choice(&["gaussian", "bernoulli"]),
            "gaussian",
            "reward distribution of the arms",
        ),
        ParamSpec::new(
            "sigma",
            ParamKind::Float { min: 0.0, max: 1e6 },
            "1.0",
            "Gaussian reward noise σ",
        ),
        ParamSpec::new(
            "horizon",
            ParamKind::Int {
                min: 1,
                max: i64::MAX,
            },
            "50",
            "pulls per episode",
        ),
        ParamSpec::optional(
            "means",
            ParamKind::Floats,
            "fixed arm means, one per arm (default: drawn)",
        ),
        ParamSpec::optional(
            "resample",
            ParamKind::Bool,
            "draw new means every episode (default: true unless means are given)",
        ),
        ParamSpec::new(
            "instance_seed",
            ParamKind::Int {
                min: 0,
                max: i64::MAX,
            },
            "0",
            "seed of the means when they are drawn once",
        ),
    ]
}

impl BanditConfig {
    pub(super) fn from_params(p: &ResolvedParams, nonstationary: bool) -> Result<Self> {
        let arms = p.usize("arms")?;
        let kind = match p.str("kind")? {
            "bernoulli" => ArmKind::Bernoulli,
            _ => ArmKind::Gaussian {
                sigma: p.float("sigma")?,
            },
        };
        let means = p.floats("means")?;
        if let Some(m) = &means {
            if m.len() != arms {
                return Err(p.error("means", format!("{} means given for {arms} arms", m.len())));
            }
            if kind == ArmKind::Bernoulli && m.iter().any(|x| !(0.0..=1.0).contains(x)) {
                return Err(p.error("means", "Bernoulli means must lie in [0, 1]"));
            }
        }
        let resample = if p.is_set("resample") {
            p.bool("resample")?
        } else {
            means.is_none()
        };
        if resample && means.is_some() {
            return Err(p.error(
                "resample",
                "cannot resample fixed means; drop `means` or set resample=false",
            ));
        }
        let stationarity = if !nonstationary {
            Stationarity::Stationary
        } else if p.str("mode")? == "switch" {
            Stationarity::Switch(p.usize("switch_every")? as u64)
        } else {
            Stationarity::Drift(p.float("drift")?)
        };
        Ok(BanditConfig {
            arms,
            kind,
            horizon: p.usize("horizon")? as u64,
            means,
            resample,
            instance_seed: p.usize("instance_seed")? as u64,
            stationarity,
        })
    }
}

/// A K-armed bandit; see the [module docs](super).
#[derive(Debug, Clone)]
pub struct Bandit {
    config: BanditConfig,
    means: Vec<f64>,
    best: usize,
    t: u64,
    rng: EnvRng,
    obs_space: Space,
    act_space: Space,
    ready: bool,
}

impl Bandit {
    /// A bandit set up by `config`.
    pub fn new(config: BanditConfig) -> Result<Self> {
        let bad = |m: String| Err(EnvError::Invalid(m));
        if config.arms == 0 || config.horizon == 0 {
            return bad(format!(
                "a bandit needs arms ≥ 1 and horizon ≥ 1 (got {}, {})",
                config.arms, config.horizon
            ));
        }
        if let ArmKind::Gaussian { sigma } = config.kind
            && !(sigma.is_finite() && sigma >= 0.0)
        {
            return bad(format!("Gaussian noise σ = {sigma} must be finite and ≥ 0"));
        }
        match (&config.means, config.kind) {
            (Some(m), _) if m.len() != config.arms || m.iter().any(|x| !x.is_finite()) => {
                return bad(format!("{} finite means needed, got {m:?}", config.arms));
            }
            (Some(m), ArmKind::Bernoulli) if m.iter().any(|x| !(0.0..=1.0).contains(x)) => {
                return bad(format!("Bernoulli means must lie in [0, 1], got {m:?}"));
            }
            _ => {}
        }
        let mut bandit = Bandit {
            means: vec![0.0; config.arms],
            best: 0,
            t: 0,
            rng: rng_from_seed(DEFAULT_SEED),
            obs_space: Space::Box(BoxSpace::new(vec![0.0], vec![0.0])),
            act_space: Space::Discrete(config.arms),
            ready: false,
            config,
        };
        bandit.initial_means();
        Ok(bandit)
    }

    /// The current arm means.
    pub fn means(&self) -> &[f64] {
        &self.means
    }

    /// The setup.
    pub fn config(&self) -> &BanditConfig {
        &self.config
    }

    /// Means of a new episode: the fixed ones, or drawn from `instance_seed`.
    fn initial_means(&mut self) {
        match &self.config.means {
            Some(m) => self.means.copy_from_slice(m),
            None => {
                let mut rng = rng_from_seed(self.config.instance_seed);
                draw_means(self.config.kind, &mut rng, &mut self.means);
            }
        }
        self.update_best();
    }

    fn update_best(&mut self) {
        self.best = argmax(&self.means);
    }
}

/// Index of the largest value (the first on ties).
fn argmax(v: &[f64]) -> usize {
    v.iter()
        .enumerate()
        .fold(0, |best, (i, x)| if *x > v[best] { i } else { best })
}

fn draw_means(kind: ArmKind, rng: &mut EnvRng, means: &mut [f64]) {
    for m in means {
        *m = match kind {
            ArmKind::Bernoulli => rng.random::<f64>(),
            ArmKind::Gaussian { .. } => StandardNormal.sample(rng),
        };
    }
}

impl Env for Bandit {
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
            draw_means(self.config.kind, &mut self.rng, &mut self.means);
            self.update_best();
        } else if self.config.stationarity != Stationarity::Stationary {
            self.initial_means();
        }
        self.t = 0;
        self.ready = true;
        out.obs.f32()?[0] = 0.0;
        out.extras[0] = 0.0;
        out.extras[1] = self.best as f64;
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
        let mean = self.means[arm];
        let reward = match self.config.kind {
            ArmKind::Bernoulli => f64::from(self.rng.random::<f64>() < mean),
            ArmKind::Gaussian { sigma } => {
                mean + sigma * Distribution::<f64>::sample(&StandardNormal, &mut self.rng)
            }
        };
        out.extras[0] = self.means[self.best] - mean;
        out.extras[1] = self.best as f64;
        self.t += 1;
        match self.config.stationarity {
            Stationarity::Stationary => {}
            Stationarity::Drift(std) => {
                let bernoulli = self.config.kind == ArmKind::Bernoulli;
                for m in &mut self.means {
                    let step: f64 = StandardNormal.sample(&mut self.rng);
                    *m += std * step;
                    if bernoulli {
                        // Reflect into [0, 1].
                        *m = m.abs();
                        if *m > 1.0 {
                            *m = (2.0 - *m).max(0.0);
                        }
                    }
                }
                self.update_best();
            }
            Stationarity::Switch(every) => {
                if self.t.is_multiple_of(every) {
                    draw_means(self.config.kind, &mut self.rng, &mut self.means);
                    self.update_best();
                }
            }
        }
        let truncated = self.t >= self.config.horizon;
        self.ready = !truncated;
        out.obs.f32()?[0] = 0.0;
        Ok(Step {
            reward,
            terminated: false,
            truncated,
        })
    }
    fn render_ansi(&self) -> String {
        let mut s = format!("pull {}/{}; arm means:\n", self.t, self.config.horizon);
        for (i, m) in self.means.iter().enumerate() {
            s.push_str(&format!(
                "  {i:>3}: {m:+.3}{}\n",
                if i == self.best { "  (best)" } else { "" }
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

    fn fixed(means: &[f64], kind: ArmKind) -> Bandit {
        Bandit::new(BanditConfig {
            arms: means.len(),
            kind,
            horizon: 1000,
            means: Some(means.to_vec()),
            resample: false,
            ..Default::default()
        })
        .unwrap()
    }

    #[test]
    fn regret_is_the_gap_in_expected_reward() {
        let mut env = fixed(&[0.2, 0.5, 0.9], ArmKind::Bernoulli);
        let (_, info) = env.reset(Some(0)).unwrap();
        assert_eq!(info.get("best_arm"), Some(2.0));
        for (arm, regret) in [(0, 0.7), (1, 0.4), (2, 0.0)] {
            let t = env.step(Action::Discrete(arm)).unwrap();
            assert!((t.info.get("regret").unwrap() - regret).abs() < 1e-12);
            assert!(t.reward == 0.0 || t.reward == 1.0);
        }
    }

    #[test]
    fn rewards_follow_the_means_and_the_horizon_truncates() {
        let mut env = Bandit::new(BanditConfig {
            arms: 2,
            kind: ArmKind::Gaussian { sigma: 0.5 },
            horizon: 20_000,
            means: Some(vec![1.5, -1.0]),
            resample: false,
            ..Default::default()
        })
        .unwrap();
        env.reset(Some(4)).unwrap();
        let mut sum = 0.0;
        for i in 0..20_000 {
            let t = env.step(Action::Discrete(0)).unwrap();
            sum += t.reward;
            assert_eq!(t.truncated, i == 19_999);
            assert!(!t.terminated);
        }
        assert!((sum / 20_000.0 - 1.5).abs() < 0.02);
        assert!(matches!(
            env.step(Action::Discrete(0)),
            Err(EnvError::NeedsReset(_))
        ));
        assert!(env.step(Action::Discrete(2)).is_err());
    }

    #[test]
    fn resampling_draws_new_means_each_episode_and_fixed_instances_stay() {
        let mut env = Bandit::new(BanditConfig::default()).unwrap();
        env.reset(Some(1)).unwrap();
        let first = env.means().to_vec();
        env.reset(None).unwrap();
        assert_ne!(first, env.means());
        let cfg = BanditConfig {
            resample: false,
            instance_seed: 5,
            ..Default::default()
        };
        let (mut a, mut b) = (Bandit::new(cfg.clone()).unwrap(), Bandit::new(cfg).unwrap());
        a.reset(Some(1)).unwrap();
        b.reset(Some(2)).unwrap();
        assert_eq!(a.means(), b.means());
        a.reset(None).unwrap();
        assert_eq!(a.means(), b.means());
    }

    #[test]
    fn nonstationary_means_move() {
        for mode in ["drift", "switch"] {
            let p = Params::new()
                .with("mode", mode)
                .with("switch_every", 10i64)
                .with("drift", 0.1)
                .with("horizon", 100i64);
            let mut env = crate::make("bandit-nonstationary", &p).unwrap();
            env.reset(Some(3)).unwrap();
            let mut bests = std::collections::HashSet::new();
            for _ in 0..100 {
                let t = env.step(Action::Discrete(0)).unwrap();
                bests.insert(t.info.get("best_arm").unwrap() as usize);
            }
            assert!(bests.len() > 1, "{mode}: the best arm never changed");
        }
        // Bernoulli means stay in [0, 1] under drift.
        let mut env = Bandit::new(BanditConfig {
            kind: ArmKind::Bernoulli,
            horizon: 5000,
            stationarity: Stationarity::Drift(0.2),
            ..Default::default()
        })
        .unwrap();
        env.reset(Some(0)).unwrap();
        for _ in 0..5000 {
            env.step(Action::Discrete(1)).unwrap();
            assert!(env.means().iter().all(|m| (0.0..=1.0).contains(m)));
        }
    }

    #[test]
    fn bad_setups_are_errors() {
        for p in [
            Params::new().with("means", vec![0.1, 0.2]),
            Params::new()
                .with("arms", 2i64)
                .with("kind", "bernoulli")
                .with("means", vec![0.1, 1.2]),
            Params::new()
                .with("arms", 2i64)
                .with("means", vec![0.1, 0.2])
                .with("resample", true),
            Params::new().with("kind", "poisson"),
        ] {
            assert!(crate::make("bandit", &p).is_err(), "{p:?}");
        }
        assert!(
            Bandit::new(BanditConfig {
                kind: ArmKind::Gaussian { sigma: f64::NAN },
                ..Default::default()
            })
            .is_err()
        );
    }
}
