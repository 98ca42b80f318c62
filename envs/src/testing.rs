//! Small deterministic environments for tests of wrappers, vector environments and runtimes.
//!
//! They are public so that the other crates' tests use the same fakes instead of copying them.

use rand::RngExt;

use crate::env::{Env, EpisodeEnd, Out, Step};
use crate::error::{EnvError, Result};
use crate::rng::{DEFAULT_SEED, EnvRng, rng_from_seed};
use crate::space::{Action, BoxSpace, Dtype, Space};

/// Counts steps: the observation is `[t, start]` where `start` is drawn from the env's
/// generator at reset (so seeding shows in the observation); the reward is the action
/// taken; the episode terminates after `length` steps. Reports the extra `"t"`.
#[derive(Debug)]
pub struct CountEnv {
    length: u64,
    t: u64,
    start: f32,
    rng: EnvRng,
    obs_space: Space,
    act_space: Space,
    done: bool,
    /// When set, `step` panics at this step (to test panic handling).
    pub panic_at: Option<u64>,
}

impl CountEnv {
    /// An episode of `length` steps with `Discrete(3)` actions.
    pub fn new(length: u64) -> Self {
        CountEnv {
            length,
            t: 0,
            start: 0.0,
            rng: rng_from_seed(DEFAULT_SEED),
            obs_space: Space::Box(BoxSpace::new(vec![0.0, 0.0], vec![f32::INFINITY, 1000.0])),
            act_space: Space::Discrete(3),
            done: true,
            panic_at: None,
        }
    }

    fn write(&self, out: Out<'_>) -> Result<()> {
        let obs = out.obs.f32()?;
        obs[0] = self.t as f32;
        obs[1] = self.start;
        out.extras[0] = self.t as f64;
        Ok(())
    }
}

impl Env for CountEnv {
    fn observation_space(&self) -> &Space {
        &self.obs_space
    }
    fn action_space(&self) -> &Space {
        &self.act_space
    }
    fn extra_names(&self) -> &[&'static str] {
        &["t"]
    }
    fn reset_into(&mut self, seed: Option<u64>, out: Out<'_>) -> Result<()> {
        if let Some(s) = seed {
            self.rng = rng_from_seed(s);
        }
        self.t = 0;
        self.start = self.rng.random_range(0..1000u32) as f32;
        self.done = false;
        self.write(out)
    }
    fn step_into(&mut self, action: Action<'_>, out: Out<'_>) -> Result<Step> {
        self.act_space.check(&action)?;
        if self.done {
            return Err(EnvError::NeedsReset("after the episode ended"));
        }
        if self.panic_at == Some(self.t) {
            panic!("CountEnv asked to panic at step {}", self.t);
        }
        let Action::Discrete(a) = action else {
            unreachable!("checked above")
        };
        self.t += 1;
        self.done = self.t >= self.length;
        self.write(out)?;
        Ok(Step {
            reward: a as f64,
            terminated: self.done,
            truncated: false,
        })
    }
    fn render_ansi(&self) -> String {
        format!("t={} start={}", self.t, self.start)
    }
}

/// An environment with byte observations (a `[2, 2]` frame filled with `t`), for
/// testing `u8` buffers; otherwise like [`CountEnv`].
#[derive(Debug)]
pub struct ByteEnv {
    inner: CountEnv,
    space: Space,
}

impl ByteEnv {
    /// Episodes of `length` steps.
    pub fn new(length: u64) -> Self {
        ByteEnv {
            inner: CountEnv::new(length),
            space: Space::Box(BoxSpace::uniform(0.0, 255.0, &[2, 2], Dtype::U8)),
        }
    }
    fn write(&self, out: Out<'_>) -> Result<()> {
        out.obs.u8()?.fill(self.inner.t.min(255) as u8);
        out.extras[0] = self.inner.t as f64;
        Ok(())
    }
}

impl Env for ByteEnv {
    fn observation_space(&self) -> &Space {
        &self.space
    }
    fn action_space(&self) -> &Space {
        self.inner.action_space()
    }
    fn extra_names(&self) -> &[&'static str] {
        &["t"]
    }
    fn reset_into(&mut self, seed: Option<u64>, mut out: Out<'_>) -> Result<()> {
        let mut scratch = [0.0f32; 2];
        self.inner.reset_into(
            seed,
            Out {
                obs: crate::ObsMut::F32(&mut scratch),
                action_mask: &mut *out.action_mask,
                extras: &mut *out.extras,
            },
        )?;
        self.write(out.reborrow())
    }
    fn step_into(&mut self, action: Action<'_>, mut out: Out<'_>) -> Result<Step> {
        let mut scratch = [0.0f32; 2];
        let step = self.inner.step_into(
            action,
            Out {
                obs: crate::ObsMut::F32(&mut scratch),
                action_mask: &mut *out.action_mask,
                extras: &mut *out.extras,
            },
        )?;
        self.write(out.reborrow())?;
        Ok(step)
    }
    fn render_ansi(&self) -> String {
        self.inner.render_ansi()
    }
}

/// An environment that never ends by itself: the observation is always `[1.0]`, every
/// action (of `Discrete(2)`) earns reward 1. Wrapped in a time limit it is the test of
/// truncation handling: its only ending is truncation, so a correct learner's value is
/// `1 / (1 − γ)` everywhere, while one that treats truncation as termination learns
/// less.
#[derive(Debug)]
pub struct ConstantEnv {
    obs_space: Space,
    act_space: Space,
}

impl ConstantEnv {
    /// The environment.
    pub fn new() -> Self {
        ConstantEnv {
            obs_space: Space::Box(BoxSpace::new(vec![0.0], vec![2.0])),
            act_space: Space::Discrete(2),
        }
    }
}

impl Default for ConstantEnv {
    fn default() -> Self {
        Self::new()
    }
}

impl Env for ConstantEnv {
    fn observation_space(&self) -> &Space {
        &self.obs_space
    }
    fn action_space(&self) -> &Space {
        &self.act_space
    }
    fn reset_into(&mut self, _seed: Option<u64>, out: Out<'_>) -> Result<()> {
        out.obs.f32()?[0] = 1.0;
        Ok(())
    }
    fn step_into(&mut self, action: Action<'_>, out: Out<'_>) -> Result<Step> {
        self.act_space.check(&action)?;
        out.obs.f32()?[0] = 1.0;
        Ok(Step::running(1.0))
    }
    fn render_ansi(&self) -> String {
        "constant".into()
    }
}

/// A game with lives, as the Atari protocol's episodic life presents one: each life
/// lasts `life_steps` steps and ends the learner's episode (`terminated`); a reset after
/// a lost life continues the game, and after the last life the game is over and a reset
/// starts a new one. Every step earns a raw reward of 10 (the game's score) but the
/// learner sees 1 (a clipped reward), so [`Env::episode_end`] reports
/// [`EpisodeEnd::Partial`] after a lost life and, at the end of the game, its raw
/// return `10 × lives × life_steps` and length `lives × life_steps`. The observation is
/// `[lives left, steps into the game]`.
#[derive(Debug)]
pub struct LivesEnv {
    lives: u32,
    life_steps: u64,
    left: u32,
    steps: u64,
    space: Space,
    act_space: Space,
    running: bool,
}

impl LivesEnv {
    /// A game of `lives` lives of `life_steps` steps each.
    pub fn new(lives: u32, life_steps: u64) -> Self {
        LivesEnv {
            lives,
            life_steps,
            left: 0,
            steps: 0,
            space: Space::Box(BoxSpace::new(vec![0.0, 0.0], vec![1e9, 1e9])),
            act_space: Space::Discrete(2),
            running: false,
        }
    }

    fn write(&self, out: Out<'_>) -> Result<()> {
        let obs = out.obs.f32()?;
        obs[0] = self.left as f32;
        obs[1] = self.steps as f32;
        Ok(())
    }
}

impl Env for LivesEnv {
    fn observation_space(&self) -> &Space {
        &self.space
    }
    fn action_space(&self) -> &Space {
        &self.act_space
    }
    fn reset_into(&mut self, _seed: Option<u64>, out: Out<'_>) -> Result<()> {
        if self.left == 0 {
            self.left = self.lives;
            self.steps = 0;
        }
        self.running = true;
        self.write(out)
    }
    fn step_into(&mut self, action: Action<'_>, out: Out<'_>) -> Result<Step> {
        self.act_space.check(&action)?;
        if !self.running {
            return Err(EnvError::NeedsReset("after the life ended"));
        }
        self.steps += 1;
        let life_over = self.steps.is_multiple_of(self.life_steps);
        if life_over {
            self.left -= 1;
            self.running = false;
        }
        self.write(out)?;
        Ok(Step {
            reward: 1.0,
            terminated: life_over,
            truncated: false,
        })
    }
    fn render_ansi(&self) -> String {
        format!("{} lives left, step {}", self.left, self.steps)
    }
    fn episode_end(&self) -> EpisodeEnd {
        if self.left > 0 {
            EpisodeEnd::Partial
        } else {
            EpisodeEnd::Whole {
                ret: 10.0 * self.steps as f64,
                len: self.steps,
            }
        }
    }
}

/// Images to read: `1 × 36 × 36` byte frames with one half, left or right at random,
/// lit (noise on both halves, so that a network must compare them); the action naming
/// the lit half (0 left, 1 right) earns 1, the other 0. An episode is `length` such
/// images (1 unless [`with_length`](Self::with_length) says otherwise), then terminates.
/// The smallest frames the Nature CNN takes: a test that a CNN learner reads images.
#[derive(Debug)]
pub struct LitHalf {
    obs_space: Space,
    act_space: Space,
    rng: EnvRng,
    right: bool,
    length: u64,
    t: u64,
}

impl LitHalf {
    /// One-step episodes.
    pub fn new() -> Self {
        Self::with_length(1)
    }

    /// Episodes of `length` images.
    pub fn with_length(length: u64) -> Self {
        use rand::SeedableRng;
        LitHalf {
            obs_space: Space::Box(BoxSpace::uniform(0.0, 255.0, &[1, 36, 36], Dtype::U8)),
            act_space: Space::Discrete(2),
            rng: EnvRng::seed_from_u64(0),
            right: false,
            length: length.max(1),
            t: 0,
        }
    }

    fn draw(&mut self, out: Out<'_>) -> Result<()> {
        self.right = self.rng.random::<bool>();
        let px = out.obs.u8()?;
        for (i, p) in px.iter_mut().enumerate() {
            let lit = (i % 36 >= 18) == self.right;
            *p = self.rng.random_range(0..96) + if lit { 128 } else { 0 };
        }
        Ok(())
    }
}

impl Default for LitHalf {
    fn default() -> Self {
        Self::new()
    }
}

impl Env for LitHalf {
    fn observation_space(&self) -> &Space {
        &self.obs_space
    }
    fn action_space(&self) -> &Space {
        &self.act_space
    }
    fn reset_into(&mut self, seed: Option<u64>, out: Out<'_>) -> Result<()> {
        use rand::SeedableRng;
        if let Some(seed) = seed {
            self.rng = EnvRng::seed_from_u64(seed);
        }
        self.t = 0;
        self.draw(out)
    }
    fn step_into(&mut self, action: Action<'_>, out: Out<'_>) -> Result<Step> {
        self.act_space.check(&action)?;
        let Action::Discrete(a) = action else {
            unreachable!("checked")
        };
        let reward = if (a == 1) == self.right { 1.0 } else { 0.0 };
        self.t += 1;
        self.draw(out)?;
        Ok(Step {
            reward,
            terminated: self.t >= self.length,
            truncated: false,
        })
    }
    fn render_ansi(&self) -> String {
        format!("lit half: {}", if self.right { "right" } else { "left" })
    }
}

/// The registry entries that registry-wide tests (conformance, allocation-free stepping)
/// run: every entry, except that of the Atari games (two per ROM with the `atari`
/// feature) only Breakout's, preprocessed and raw, which stand for the rest: all games
/// share one binding, and stepping 216 emulators would take minutes.
pub fn registry_sample() -> impl Iterator<Item = &'static crate::registry::EnvSpec> {
    crate::registry::registry().into_iter().filter(|s| {
        let atari = s.name.starts_with("atari:") || s.name.starts_with("ALE/");
        !atari || s.name == "atari:Breakout" || s.name == "ALE/Breakout-v5"
    })
}
