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
    /// Draw new means at every reset (from the environment's generator). Otherwise every
    /// episode starts from the same instance: `means`, or means drawn once from
    /// `instance_seed` (a non-stationary bandit's drift and switches still draw from the
    /// environment's generator, and are undone at reset).
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
///
/// ```
/// use agentry_envs::bandit::{ArmKind, Bandit, BanditConfig};
/// use agentry_envs::{Action, EnvExt};
/// let mut env = Bandit::new(BanditConfig {
///     arms: 3,
///     kind: ArmKind::Bernoulli,
///     means: Some(vec![0.2, 0.5, 0.9]),
///     resample: false,
///     ..BanditConfig::default()
/// })
/// .unwrap();
/// env.reset(Some(0)).unwrap();
/// let t = env.step(Action::Discrete(0)).unwrap();
/// assert!((t.info.get("regret").unwrap() - 0.7).abs() < 1e-12);
/// assert_eq!(t.info.get("optimal_arm"), Some(2.0));
/// ```
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
    /// A bandit set up by `config`, or [`EnvError::Invalid`] if the setup is inconsistent
    /// (no arms, zero horizon, negative or non-finite σ or drift, `switch_every` = 0, means
    /// of the wrong length or outside [0, 1] for Bernoulli arms, `resample` with fixed means).
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
        match config.stationarity {
            Stationarity::Drift(std) if !(std.is_finite() && std >= 0.0) => {
                return bad(format!("drift σ = {std} must be finite and ≥ 0"));
            }
            Stationarity::Switch(0) => return bad("switch_every must be ≥ 1".into()),
            _ => {}
        }
        match (&config.means, config.kind) {
            (Some(m), _) if m.len() != config.arms || m.iter().any(|x| !x.is_finite()) => {
                return bad(format!("{} finite means needed, got {m:?}", config.arms));
            }
            (Some(m), ArmKind::Bernoulli) if m.iter().any(|x| !(0.0..=1.0).contains(x)) => {
                return bad(format!("Bernoulli means must lie in [0, 1], got {m:?}"));
            }
            (Some(_), _) if config.resample => {
                return bad("fixed means cannot be resampled; set resample = false".into());
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

    /// The arm means the next pull is paid from (with `resample`, valid after `reset`).
    pub fn means(&self) -> &[f64] {
        &self.means
    }

    /// The arm with the largest mean right now (the first on ties).
    pub fn optimal_arm(&self) -> usize {
        self.best
    }

    /// Pulls made in this episode.
    pub fn pulls(&self) -> u64 {
        self.t
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

    /// The non-stationary change after a pull.
    fn move_means(&mut self) {
        match self.config.stationarity {
            Stationarity::Stationary => {}
            Stationarity::Drift(std) => {
                let bernoulli = self.config.kind == ArmKind::Bernoulli;
                for m in &mut self.means {
                    let step: f64 = StandardNormal.sample(&mut self.rng);
                    *m += std * step;
                    if bernoulli {
                        *m = reflect_unit(*m);
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
    }
}

/// Reflect `x` at 0 and 1 until it lies in [0, 1] (a random walk with reflecting walls).
fn reflect_unit(x: f64) -> f64 {
    // The reflected walk is periodic with period 2: fold into [0, 2), then mirror (1, 2).
    let y = x.rem_euclid(2.0);
    if y > 1.0 { 2.0 - y } else { y }
}

/// Index of the largest value (the first on ties).
pub(super) fn argmax(v: &[f64]) -> usize {
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
            // Undo the last episode's drift or switches: every episode starts on the instance.
            self.initial_means();
        }
        self.t = 0;
        self.ready = true;
        out.obs.f32()?[0] = 0.0;
        out.extras[0] = 0.0;
        out.extras[1] = self.best as f64;
        out.extras[2] = self.means[self.best];
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
        // The extras describe this pull, before the means move.
        let best_mean = self.means[self.best];
        out.extras[0] = best_mean - mean;
        out.extras[1] = self.best as f64;
        out.extras[2] = best_mean;
        self.t += 1;
        self.move_means();
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
        let kind = match self.config.kind {
            ArmKind::Bernoulli => "Bernoulli".to_string(),
            ArmKind::Gaussian { sigma } => format!("Gaussian σ={sigma}"),
        };
        let mut s = format!(
            "{kind} bandit, pull {}/{}; arm means:\n",
            self.t, self.config.horizon
        );
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
    use crate::env::{EnvExt, Observation};
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

    /// Rewards, extras and observations of `pulls` pulls cycling through the arms.
    fn trace(env: &mut dyn Env, seed: u64, pulls: usize) -> Vec<(f64, Vec<(&'static str, f64)>)> {
        let (obs, _) = env.reset(Some(seed)).unwrap();
        assert_eq!(obs, Observation::F32(vec![0.0]));
        let n = env.action_space().n().unwrap();
        (0..pulls)
            .map(|i| {
                let t = env.step(Action::Discrete((i * 7) % n)).unwrap();
                assert_eq!(t.obs, Observation::F32(vec![0.0]));
                (t.reward, t.info.extras)
            })
            .collect()
    }

    #[test]
    fn regret_is_the_gap_in_expected_reward() {
        let mut env = fixed(&[0.2, 0.5, 0.9], ArmKind::Bernoulli);
        let (_, info) = env.reset(Some(0)).unwrap();
        assert_eq!(info.get("optimal_arm"), Some(2.0));
        assert_eq!(info.get("best_mean"), Some(0.9));
        assert_eq!(info.get("regret"), Some(0.0));
        for (arm, regret) in [(0, 0.7), (1, 0.4), (2, 0.0), (0, 0.7)] {
            let t = env.step(Action::Discrete(arm)).unwrap();
            assert!((t.info.get("regret").unwrap() - regret).abs() < 1e-12);
            assert_eq!(t.info.get("optimal_arm"), Some(2.0));
            assert_eq!(t.info.get("best_mean"), Some(0.9));
            assert!(t.reward == 0.0 || t.reward == 1.0);
        }
        assert_eq!(env.means(), &[0.2, 0.5, 0.9]);
        assert_eq!(env.optimal_arm(), 2);
        assert_eq!(env.pulls(), 4);
    }

    #[test]
    fn bernoulli_rewards_are_zero_or_one_with_the_arm_mean() {
        let mut env = fixed(&[0.0, 0.3, 1.0], ArmKind::Bernoulli);
        env.reset(Some(9)).unwrap();
        let mut ones = 0.0;
        for _ in 0..300 {
            assert_eq!(env.step(Action::Discrete(0)).unwrap().reward, 0.0);
            assert_eq!(env.step(Action::Discrete(2)).unwrap().reward, 1.0);
            ones += env.step(Action::Discrete(1)).unwrap().reward;
        }
        // 300 draws of Bernoulli(0.3): standard deviation of the mean ≈ 0.026.
        assert!((ones / 300.0 - 0.3).abs() < 0.1, "{}", ones / 300.0);
    }

    #[test]
    fn gaussian_rewards_follow_the_means_and_the_horizon_truncates() {
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
        let (mut sum, mut sq) = (0.0, 0.0);
        for i in 0..20_000 {
            let t = env.step(Action::Discrete(0)).unwrap();
            sum += t.reward;
            sq += (t.reward - 1.5) * (t.reward - 1.5);
            assert_eq!(t.truncated, i == 19_999, "pull {i}");
            assert!(!t.terminated);
        }
        assert!((sum / 20_000.0 - 1.5).abs() < 0.02);
        assert!(((sq / 20_000.0).sqrt() - 0.5).abs() < 0.02);
        assert!(matches!(
            env.step(Action::Discrete(0)),
            Err(EnvError::NeedsReset(_))
        ));
        // A reset starts a new episode of the full horizon.
        env.reset(None).unwrap();
        assert!(!env.step(Action::Discrete(1)).unwrap().truncated);
    }

    #[test]
    fn truncation_at_the_registry_horizon() {
        let mut env = crate::make("bandit", &Params::new().with("horizon", 3i64)).unwrap();
        for seed in [0, 1] {
            env.reset(Some(seed)).unwrap();
            let ends: Vec<(bool, bool)> = (0..3)
                .map(|_| {
                    let t = env.step(Action::Discrete(0)).unwrap();
                    (t.terminated, t.truncated)
                })
                .collect();
            assert_eq!(ends, [(false, false), (false, false), (false, true)]);
            assert!(matches!(
                env.step(Action::Discrete(0)),
                Err(EnvError::NeedsReset(_))
            ));
        }
    }

    #[test]
    fn seeded_determinism() {
        for (name, p) in [
            ("bandit", Params::new()),
            ("bandit", Params::new().with("kind", "bernoulli")),
            (
                "bandit-nonstationary",
                Params::new().with("mode", "drift").with("drift", 0.3),
            ),
            (
                "bandit-nonstationary",
                Params::new()
                    .with("mode", "switch")
                    .with("switch_every", 5i64),
            ),
        ] {
            let p = p.with("horizon", 40i64);
            let mut a = crate::make(name, &p).unwrap();
            let mut b = crate::make(name, &p).unwrap();
            assert_eq!(
                trace(&mut *a, 11, 40),
                trace(&mut *b, 11, 40),
                "{name} {p:?}"
            );
            assert_ne!(
                trace(&mut *a, 11, 40),
                trace(&mut *a, 12, 40),
                "{name} {p:?}"
            );
            // Never seeded: the same as seeding with DEFAULT_SEED.
            let mut c = crate::make(name, &p).unwrap();
            let (_, _) = c.reset(None).unwrap();
            let unseeded: Vec<f64> = (0..40)
                .map(|i| c.step(Action::Discrete((i * 7) % 10)).unwrap().reward)
                .collect();
            let seeded: Vec<f64> = trace(&mut *a, DEFAULT_SEED, 40)
                .into_iter()
                .map(|x| x.0)
                .collect();
            assert_eq!(unseeded, seeded, "{name} {p:?}");
        }
    }

    #[test]
    fn invalid_arms_are_errors_and_change_nothing() {
        let mut a = Bandit::new(BanditConfig::default()).unwrap();
        let mut b = a.clone();
        a.reset(Some(5)).unwrap();
        b.reset(Some(5)).unwrap();
        for bad in [
            Action::Discrete(10),
            Action::Discrete(usize::MAX),
            Action::Continuous(&[0.0]),
        ] {
            assert!(matches!(a.step(bad), Err(EnvError::InvalidAction { .. })));
        }
        assert_eq!(a.pulls(), 0);
        for arm in 0..10 {
            assert_eq!(
                a.step(Action::Discrete(arm)).unwrap(),
                b.step(Action::Discrete(arm)).unwrap()
            );
        }
    }

    #[test]
    fn no_pull_before_the_first_reset() {
        let mut env = Bandit::new(BanditConfig::default()).unwrap();
        assert!(matches!(
            env.step(Action::Discrete(0)),
            Err(EnvError::NeedsReset(_))
        ));
        env.reset(None).unwrap();
        assert!(env.step(Action::Discrete(0)).is_ok());
    }

    #[test]
    fn resampling_draws_new_means_each_episode_and_fixed_instances_stay() {
        let mut env = Bandit::new(BanditConfig::default()).unwrap();
        env.reset(Some(1)).unwrap();
        let first = env.means().to_vec();
        env.reset(None).unwrap();
        assert_ne!(first, env.means());
        env.reset(Some(1)).unwrap();
        assert_eq!(first, env.means());
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
        let other = Bandit::new(BanditConfig {
            resample: false,
            instance_seed: 6,
            ..Default::default()
        })
        .unwrap();
        assert_ne!(a.means(), other.means());
        // Registry: `resample` defaults to true without `means` and to false with them.
        let mut env = crate::make("bandit", &Params::new()).unwrap();
        let m0 = trace(&mut *env, 1, 1)[0].1.clone();
        let m1 = trace(&mut *env, 2, 1)[0].1.clone();
        assert_ne!(m0, m1);
        let p = Params::new()
            .with("arms", 2i64)
            .with("means", vec![0.25, 0.75]);
        let mut env = crate::make("bandit", &p).unwrap();
        for seed in [1, 2] {
            assert_eq!(trace(&mut *env, seed, 1)[0].1[2], ("best_mean", 0.75));
        }
    }

    #[test]
    fn gaussian_means_are_standard_normal_and_bernoulli_means_uniform() {
        let draw = |kind| {
            let mut env = Bandit::new(BanditConfig {
                arms: 1000,
                kind,
                ..Default::default()
            })
            .unwrap();
            env.reset(Some(3)).unwrap();
            let m = env.means();
            let mean = m.iter().sum::<f64>() / 1000.0;
            let var = m.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / 1000.0;
            (mean, var, m.iter().all(|x| (0.0..=1.0).contains(x)))
        };
        let (mean, var, _) = draw(ArmKind::Gaussian { sigma: 1.0 });
        assert!(mean.abs() < 0.1 && (var - 1.0).abs() < 0.15, "{mean} {var}");
        let (mean, var, unit) = draw(ArmKind::Bernoulli);
        assert!(unit && (mean - 0.5).abs() < 0.05 && (var - 1.0 / 12.0).abs() < 0.015);
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
            let mut best_means = std::collections::HashSet::new();
            for _ in 0..100 {
                let t = env.step(Action::Discrete(0)).unwrap();
                bests.insert(t.info.get("optimal_arm").unwrap() as usize);
                best_means.insert(t.info.get("best_mean").unwrap().to_bits());
            }
            assert!(bests.len() > 1, "{mode}: the best arm never changed");
            // Drift moves the best mean every pull; switching every 10 pulls gives 10 values.
            let expected = if mode == "drift" { 100 } else { 10 };
            assert_eq!(best_means.len(), expected, "{mode}");
        }
        // Switches happen exactly every `switch_every` pulls.
        let mut env = Bandit::new(BanditConfig {
            stationarity: Stationarity::Switch(3),
            ..Default::default()
        })
        .unwrap();
        env.reset(Some(0)).unwrap();
        let mut before = env.means().to_vec();
        for pull in 1..=9 {
            env.step(Action::Discrete(0)).unwrap();
            assert_eq!(env.means() != before, pull % 3 == 0, "pull {pull}");
            before = env.means().to_vec();
        }
        // Bernoulli means stay in [0, 1] under drift, and a fixed instance is restored at reset.
        let mut env = Bandit::new(BanditConfig {
            kind: ArmKind::Bernoulli,
            horizon: 5000,
            resample: false,
            instance_seed: 2,
            stationarity: Stationarity::Drift(0.2),
            ..Default::default()
        })
        .unwrap();
        env.reset(Some(0)).unwrap();
        let start = env.means().to_vec();
        for _ in 0..5000 {
            env.step(Action::Discrete(1)).unwrap();
            assert!(env.means().iter().all(|m| (0.0..=1.0).contains(m)));
        }
        assert_ne!(env.means(), start);
        env.reset(None).unwrap();
        assert_eq!(env.means(), start);
        assert_eq!(reflect_unit(-0.25), 0.25);
        assert_eq!(reflect_unit(1.25), 0.75);
        assert_eq!(reflect_unit(2.5), 0.5);
        assert!((reflect_unit(-1.75) - 0.25).abs() < 1e-12);
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
            Params::new().with("arms", 0i64),
            Params::new().with("horizon", 0i64),
            Params::new().with("sigma", -1.0),
        ] {
            assert!(
                matches!(crate::make("bandit", &p), Err(EnvError::BadParam { .. })),
                "{p:?}"
            );
        }
        for p in [
            Params::new().with("switch_every", 0i64),
            Params::new().with("drift", -0.1),
            Params::new().with("mode", "teleport"),
        ] {
            assert!(crate::make("bandit-nonstationary", &p).is_err(), "{p:?}");
        }
        for cfg in [
            BanditConfig {
                kind: ArmKind::Gaussian { sigma: f64::NAN },
                ..Default::default()
            },
            BanditConfig {
                arms: 0,
                ..Default::default()
            },
            BanditConfig {
                means: Some(vec![0.0; 10]),
                resample: true,
                ..Default::default()
            },
            BanditConfig {
                stationarity: Stationarity::Switch(0),
                ..Default::default()
            },
            BanditConfig {
                stationarity: Stationarity::Drift(f64::INFINITY),
                ..Default::default()
            },
        ] {
            assert!(
                matches!(Bandit::new(cfg.clone()), Err(EnvError::Invalid(_))),
                "{cfg:?}"
            );
        }
    }

    #[test]
    fn renders_the_means_and_marks_the_best() {
        let mut env = fixed(&[0.2, 0.9], ArmKind::Bernoulli);
        env.reset(Some(0)).unwrap();
        env.step(Action::Discrete(0)).unwrap();
        let text = env.render_ansi();
        assert!(text.contains("pull 1/1000"), "{text}");
        assert!(text.contains("1: +0.900  (best)"), "{text}");
    }
}
