//! Classic bandit baselines: ε-greedy, UCB1 and Thompson sampling, and a loop that plays
//! any bandit environment and scores the agent by the regret the environment reports.
//!
//! ```
//! use agentry_agents::bandits::{run_bandit, Ucb1};
//! use agentry_envs::{make, Params};
//! let mut env = make("bandit", &Params::new().with("kind", "bernoulli").with("horizon", 500i64)).unwrap();
//! let mut agent = Ucb1::new(10);
//! let run = run_bandit(&mut *env, &mut agent, 500, 7).unwrap();
//! assert_eq!(run.regrets.len(), 500);
//! assert!(run.cumulative_regret() >= 0.0);
//! ```

use agentry_envs::{Action, Env, EnvError, EnvExt, EnvRng, rng_from_seed};
use rand::RngExt;
use rand_distr::{Beta, Distribution, StandardNormal};

/// An agent for a K-armed bandit.
pub trait BanditAgent {
    /// Number of arms.
    fn arms(&self) -> usize;
    /// The arm to pull next.
    fn select(&mut self, rng: &mut EnvRng) -> usize;
    /// Learn from the reward of a pull.
    fn update(&mut self, arm: usize, reward: f64);
    /// Forget everything (a new bandit instance).
    fn reset(&mut self);
}

/// Pull counts and mean rewards per arm, shared by the agents.
#[derive(Clone, Debug)]
struct ArmStats {
    counts: Vec<u64>,
    means: Vec<f64>,
}

impl ArmStats {
    fn new(arms: usize) -> Self {
        ArmStats {
            counts: vec![0; arms],
            means: vec![0.0; arms],
        }
    }

    fn update(&mut self, arm: usize, reward: f64) {
        self.counts[arm] += 1;
        self.means[arm] += (reward - self.means[arm]) / self.counts[arm] as f64;
    }

    fn reset(&mut self) {
        self.counts.fill(0);
        self.means.fill(0.0);
    }

    fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// The first arm not pulled yet.
    fn untried(&self) -> Option<usize> {
        self.counts.iter().position(|&c| c == 0)
    }
}

/// The index of the largest score; ties broken uniformly at random.
fn argmax_random_tie(scores: impl Iterator<Item = f64> + Clone, rng: &mut EnvRng) -> usize {
    let best = scores.clone().fold(f64::NEG_INFINITY, f64::max);
    let ties = scores.clone().filter(|s| *s == best).count().max(1);
    let pick = rng.random_range(0..ties);
    scores
        .enumerate()
        .filter(|(_, s)| *s == best)
        .nth(pick)
        .map_or(0, |(i, _)| i)
}

/// ε-greedy: a uniformly random arm with probability ε, else the best empirical mean.
/// ε may decay as ε₀ / (1 + decay · t).
#[derive(Clone, Debug)]
pub struct EpsilonGreedy {
    stats: ArmStats,
    epsilon: f64,
    decay: f64,
}

impl EpsilonGreedy {
    /// Constant ε.
    pub fn new(arms: usize, epsilon: f64) -> Self {
        Self::with_decay(arms, epsilon, 0.0)
    }

    /// ε₀ / (1 + decay · t) after t pulls.
    pub fn with_decay(arms: usize, epsilon: f64, decay: f64) -> Self {
        EpsilonGreedy {
            stats: ArmStats::new(arms),
            epsilon: epsilon.clamp(0.0, 1.0),
            decay: decay.max(0.0),
        }
    }
}

impl BanditAgent for EpsilonGreedy {
    fn arms(&self) -> usize {
        self.stats.counts.len()
    }
    fn select(&mut self, rng: &mut EnvRng) -> usize {
        let eps = self.epsilon / (1.0 + self.decay * self.stats.total() as f64);
        if rng.random::<f64>() < eps {
            rng.random_range(0..self.arms())
        } else {
            argmax_random_tie(self.stats.means.iter().copied(), rng)
        }
    }
    fn update(&mut self, arm: usize, reward: f64) {
        self.stats.update(arm, reward);
    }
    fn reset(&mut self) {
        self.stats.reset();
    }
}

/// UCB1 (Auer et al. 2002): pull every arm once, then the arm maximising
/// mean + c·√(ln t / n), with c = √2 by default.
#[derive(Clone, Debug)]
pub struct Ucb1 {
    stats: ArmStats,
    c: f64,
}

impl Ucb1 {
    /// UCB1 with c = √2.
    pub fn new(arms: usize) -> Self {
        Self::with_exploration(arms, std::f64::consts::SQRT_2)
    }

    /// UCB1 with exploration constant `c`.
    pub fn with_exploration(arms: usize, c: f64) -> Self {
        Ucb1 {
            stats: ArmStats::new(arms),
            c,
        }
    }
}

impl BanditAgent for Ucb1 {
    fn arms(&self) -> usize {
        self.stats.counts.len()
    }
    fn select(&mut self, rng: &mut EnvRng) -> usize {
        if let Some(arm) = self.stats.untried() {
            return arm;
        }
        let ln_t = (self.stats.total() as f64).ln();
        let c = self.c;
        let scores = self
            .stats
            .means
            .iter()
            .zip(&self.stats.counts)
            .map(move |(m, &n)| m + c * (ln_t / n as f64).sqrt());
        argmax_random_tie(scores, rng)
    }
    fn update(&mut self, arm: usize, reward: f64) {
        self.stats.update(arm, reward);
    }
    fn reset(&mut self) {
        self.stats.reset();
    }
}

/// The prior of [`ThompsonSampling`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Prior {
    /// Beta(1, 1) per arm, for 0/1 rewards.
    BetaBernoulli,
    /// N(0, prior_var) per arm with known reward noise σ, for real rewards.
    Gaussian {
        /// Prior variance of each mean.
        prior_var: f64,
        /// Known reward noise σ.
        sigma: f64,
    },
}

/// Thompson sampling: sample a mean per arm from its posterior, pull the largest.
#[derive(Clone, Debug)]
pub struct ThompsonSampling {
    stats: ArmStats,
    prior: Prior,
    sums: Vec<f64>,
}

impl ThompsonSampling {
    /// Thompson sampling with `prior`.
    pub fn new(arms: usize, prior: Prior) -> Self {
        ThompsonSampling {
            stats: ArmStats::new(arms),
            prior,
            sums: vec![0.0; arms],
        }
    }
}

impl BanditAgent for ThompsonSampling {
    fn arms(&self) -> usize {
        self.stats.counts.len()
    }
    fn select(&mut self, rng: &mut EnvRng) -> usize {
        let samples: Vec<f64> = (0..self.arms())
            .map(|a| {
                let n = self.stats.counts[a] as f64;
                match self.prior {
                    Prior::BetaBernoulli => {
                        let wins = self.sums[a].clamp(0.0, n);
                        Beta::new(1.0 + wins, 1.0 + n - wins).map_or(0.5, |b| b.sample(rng))
                    }
                    Prior::Gaussian { prior_var, sigma } => {
                        let precision = 1.0 / prior_var + n / (sigma * sigma);
                        let mean = (self.sums[a] / (sigma * sigma)) / precision;
                        let z: f64 = StandardNormal.sample(rng);
                        mean + z / precision.sqrt()
                    }
                }
            })
            .collect();
        argmax_random_tie(samples.iter().copied(), rng)
    }
    fn update(&mut self, arm: usize, reward: f64) {
        self.stats.update(arm, reward);
        self.sums[arm] += reward;
    }
    fn reset(&mut self) {
        self.stats.reset();
        self.sums.fill(0.0);
    }
}

/// Uniformly random pulls (the baseline every agent must beat).
#[derive(Clone, Debug)]
pub struct RandomArm {
    arms: usize,
}

impl RandomArm {
    /// Pull one of `arms` arms at random.
    pub fn new(arms: usize) -> Self {
        RandomArm { arms }
    }
}

impl BanditAgent for RandomArm {
    fn arms(&self) -> usize {
        self.arms
    }
    fn select(&mut self, rng: &mut EnvRng) -> usize {
        rng.random_range(0..self.arms)
    }
    fn update(&mut self, _arm: usize, _reward: f64) {}
    fn reset(&mut self) {}
}

/// What [`run_bandit`] measured.
#[derive(Clone, Debug, PartialEq)]
pub struct BanditRun {
    /// Reward of every pull.
    pub rewards: Vec<f64>,
    /// Regret of every pull, as the environment reported it.
    pub regrets: Vec<f64>,
    /// The arm of every pull.
    pub arms: Vec<usize>,
    /// Episodes started.
    pub episodes: u64,
    /// Fraction of arms never pulled in the first episode (a sign of too little exploration).
    pub arms_never_tried: f64,
}

impl BanditRun {
    /// Total regret.
    pub fn cumulative_regret(&self) -> f64 {
        self.regrets.iter().sum()
    }

    /// Total regret of the first `t` pulls.
    pub fn regret_at(&self, t: usize) -> f64 {
        self.regrets.iter().take(t).sum()
    }
}

/// Play `pulls` pulls of a bandit environment (one that reports `regret`) with `agent`,
/// seeding the environment and the agent's generator from `seed`. The agent is reset at
/// the start of every episode (each episode may be a new bandit instance).
pub fn run_bandit(
    env: &mut dyn Env,
    agent: &mut dyn BanditAgent,
    pulls: usize,
    seed: u64,
) -> Result<BanditRun, EnvError> {
    let regret_at = env
        .extra_names()
        .iter()
        .position(|n| *n == "regret")
        .ok_or_else(|| {
            EnvError::Invalid("this environment reports no `regret`; it is not a bandit".into())
        })?;
    match env.action_space().n() {
        Some(n) if n == agent.arms() => {}
        _ => {
            return Err(EnvError::Invalid(format!(
                "the agent has {} arms, the environment's action space is {}",
                agent.arms(),
                env.action_space()
            )));
        }
    }
    let mut rng = rng_from_seed(seed ^ 0xA5A5_5A5A);
    env.reset(Some(seed))?;
    agent.reset();
    let mut run = BanditRun {
        rewards: Vec::with_capacity(pulls),
        regrets: Vec::with_capacity(pulls),
        arms: Vec::with_capacity(pulls),
        episodes: 1,
        arms_never_tried: 0.0,
    };
    let mut tried = vec![false; agent.arms()];
    let mut first_episode = true;
    for _ in 0..pulls {
        let arm = agent.select(&mut rng);
        let t = env.step(Action::Discrete(arm))?;
        agent.update(arm, t.reward);
        run.rewards.push(t.reward);
        run.regrets.push(t.info.extras[regret_at].1);
        run.arms.push(arm);
        if first_episode {
            tried[arm] = true;
        }
        if t.terminated || t.truncated {
            first_episode = false;
            env.reset(None)?;
            agent.reset();
            run.episodes += 1;
        }
    }
    run.arms_never_tried = tried.iter().filter(|t| !**t).count() as f64 / tried.len().max(1) as f64;
    Ok(run)
}

#[cfg(test)]
mod tests {
    use super::*;
    use agentry_envs::Params;

    /// A fixed 10-armed Bernoulli instance with a clear gap, played in one long episode.
    fn instance(horizon: usize) -> Box<dyn Env> {
        let means = vec![0.9, 0.6, 0.5, 0.45, 0.4, 0.35, 0.3, 0.2, 0.1, 0.05];
        let p = Params::new()
            .with("kind", "bernoulli")
            .with("means", means)
            .with("resample", false)
            .with("horizon", horizon as i64);
        agentry_envs::make("bandit", &p).unwrap()
    }

    fn mean_regret(agent: &mut dyn BanditAgent, pulls: usize, seeds: u64) -> (f64, f64) {
        let (mut early, mut late) = (0.0, 0.0);
        for seed in 0..seeds {
            let run = run_bandit(&mut *instance(pulls), agent, pulls, seed).unwrap();
            early += run.regret_at(pulls / 10);
            late += run.cumulative_regret();
        }
        (early / seeds as f64, late / seeds as f64)
    }

    #[test]
    fn ucb1_regret_grows_logarithmically() {
        let (r_t, r_10t) = mean_regret(&mut Ucb1::new(10), 10_000, 5);
        let ratio = r_10t / r_t;
        // Linear growth would give 10; log growth ln(10⁴)/ln(10³) ≈ 1.33 asymptotically.
        println!("UCB1 regret(10T)/regret(T) = {r_10t:.1}/{r_t:.1} = {ratio:.2}");
        assert!(
            ratio < 2.5,
            "regret(10T)/regret(T) = {r_10t:.1}/{r_t:.1} = {ratio:.2}"
        );
        assert!(r_t > 0.0);
    }

    #[test]
    fn thompson_sampling_beats_random_by_far() {
        let (_, ts) = mean_regret(
            &mut ThompsonSampling::new(10, Prior::BetaBernoulli),
            2000,
            5,
        );
        let (_, random) = mean_regret(&mut RandomArm::new(10), 2000, 5);
        // Random: 2000 × mean gap (0.515) ≈ 1030.
        assert!(ts < 0.1 * random, "Thompson {ts:.1} vs random {random:.1}");
        let (_, gauss) = mean_regret(
            &mut ThompsonSampling::new(
                10,
                Prior::Gaussian {
                    prior_var: 1.0,
                    sigma: 0.5,
                },
            ),
            2000,
            5,
        );
        assert!(
            gauss < 0.2 * random,
            "Gaussian Thompson {gauss:.1} vs random {random:.1}"
        );
    }

    #[test]
    fn epsilon_greedy_explores_and_settles_on_the_best_arm() {
        let mut agent = EpsilonGreedy::new(10, 0.1);
        let run = run_bandit(&mut *instance(5000), &mut agent, 5000, 3).unwrap();
        let best = run.arms[4000..].iter().filter(|&&a| a == 0).count();
        assert!(best > 850, "best arm pulled {best} of the last 1000 times");
        assert_eq!(run.arms_never_tried, 0.0);
        // ε = 1 is uniform play: its regret is about the mean gap per pull.
        let run = run_bandit(
            &mut *instance(5000),
            &mut EpsilonGreedy::new(10, 1.0),
            5000,
            3,
        )
        .unwrap();
        assert!((run.cumulative_regret() / 5000.0 - 0.515).abs() < 0.05);
        // Greedy (ε = 0) never tries most arms.
        let run = run_bandit(
            &mut *instance(100),
            &mut EpsilonGreedy::new(10, 0.0),
            100,
            3,
        )
        .unwrap();
        assert!(run.arms_never_tried > 0.5, "{}", run.arms_never_tried);
    }

    #[test]
    fn agents_reset_between_episodes_and_mismatches_are_errors() {
        let mut env = agentry_envs::make("bandit", &Params::new().with("horizon", 50i64)).unwrap();
        let run = run_bandit(&mut *env, &mut Ucb1::new(10), 500, 0).unwrap();
        assert_eq!(run.episodes, 11);
        // UCB1 restarts by trying every arm in each new episode.
        assert_eq!(&run.arms[50..60], &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
        assert!(run_bandit(&mut *env, &mut Ucb1::new(3), 10, 0).is_err());
        let mut cartpole = agentry_envs::make("cartpole", &Params::new()).unwrap();
        assert!(run_bandit(&mut *cartpole, &mut Ucb1::new(2), 10, 0).is_err());
    }
}
