//! [`AtariPreprocessing`]: the common Atari protocol (Mnih et al. 2015; Machado et al.
//! 2018) over one game, as Gymnasium's `AtariPreprocessing` and the Stable-Baselines3 /
//! CleanRL wrappers define it, each part a switch of [`PreprocessConfig`].

use rand::RngExt;

use super::env::{AtariConfig, AtariEnv, EXTRA_NAMES};
use crate::env::{Env, EpisodeEnd, Out, RgbImage, Step};
use crate::error::{EnvError, Result};
use crate::rng::{DEFAULT_SEED, EnvRng, rng_from_seed, splitmix64};
use crate::space::{Action, BoxSpace, Dtype, Space};
use crate::wrappers::{AreaResize, max_pool};

/// ALE's action `NOOP`.
const NOOP: usize = 0;
/// ALE's action `FIRE`.
const FIRE: usize = 1;

/// The switches of [`AtariPreprocessing`]; the defaults are the common Atari protocol
/// (CleanRL's and Stable-Baselines3's `AtariWrapper`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PreprocessConfig {
    /// At each new game, a random number of `NOOP` frames in `1..=noop_max` (0: none),
    /// so that episodes do not all start alike (default 30).
    pub noop_max: u32,
    /// Emulator frames per step, with the same action; the step's reward is their sum
    /// (default 4).
    pub frame_skip: u32,
    /// The observation is the pixel-wise maximum of the last two frames of the skip,
    /// which removes the flicker of sprites drawn every other frame (default true).
    pub max_pool: bool,
    /// A life lost ends the learner's episode (`terminated`), but the game goes on: the
    /// next reset continues it with one `NOOP` step, and only a game over resets the
    /// game (Stable-Baselines3's `EpisodicLifeEnv`; default true). Episode statistics
    /// still report whole games ([`Env::episode_end`]).
    pub episodic_life: bool,
    /// For games whose action 1 is `FIRE` (and that have at least 3 actions): every
    /// reset ends with a `FIRE` step and then a step of action 2, which starts games
    /// that wait for `FIRE` (Stable-Baselines3's `FireResetEnv`; default true). Other
    /// games ignore it.
    pub fire_reset: bool,
    /// Frames are resized to `screen_size × screen_size` by area interpolation
    /// (OpenCV's `INTER_AREA`, as Gymnasium; 1 to 160, default 84).
    pub screen_size: usize,
    /// Grayscale frames (ALE's palette luminance; default true) rather than RGB.
    pub grayscale: bool,
    /// Rewards are clipped to their sign, −1, 0 or +1 (default true). Episode
    /// statistics still report the unclipped score.
    pub clip_rewards: bool,
}

impl Default for PreprocessConfig {
    fn default() -> Self {
        PreprocessConfig {
            noop_max: 30,
            frame_skip: 4,
            max_pool: true,
            episodic_life: true,
            fire_reset: true,
            screen_size: 84,
            grayscale: true,
            clip_rewards: true,
        }
    }
}

/// One Atari game with the common preprocessing; stack its frames with
/// [`FrameStack`](crate::wrappers::FrameStack) (the registry's `atari:{Game}` does,
/// 4 frames: observations `u8` of shape `[4, 84, 84]`).
///
/// It drives the emulator of an [`AtariEnv`] built with `frameskip` 1 directly (the
/// `AtariEnv`'s sticky actions, frame cap, mode and action set apply; its own
/// `step_into` is not used), and reads the screen only for the last two frames of each
/// skip, as Gymnasium's `AtariPreprocessing` does. Observations are `u8` frames of shape
/// `[screen_size, screen_size]` (grayscale) or `[screen_size, screen_size, 3]` (RGB,
/// each channel resized alike). Extras: `lives`, `episode_frame_number`,
/// `frame_number`, as [`AtariEnv`].
///
/// A reset, in the order CleanRL stacks the wrappers:
/// 1. A new game (the first reset, a seeded one, after a game over or truncation, or
///    whenever `episodic_life` is off, or after an episode that did not end with a lost
///    life): ALE's `reset_game`, then `noop_max` no-ops (a game over during them starts
///    another game; the count goes on). The observation is the screen after them, not
///    pooled. Otherwise (a life was lost and `episodic_life` is on) the game goes on
///    with one `NOOP` step (a whole skip).
/// 2. With `fire_reset`, a `FIRE` step and a step of action 2; if either ends the
///    learner's episode, step 1 runs again.
///
/// A step plays `frame_skip` frames and ends early when the game ends (ALE's game over
/// → `terminated`, its frame cap `max_num_frames_per_episode` → `truncated`). With
/// `episodic_life`, a life lost (with lives left) also sets `terminated`.
///
/// # Episode statistics
///
/// [`Env::episode_end`] reports [`EpisodeEnd::Partial`] after a lost life the game
/// goes on from, and otherwise [`EpisodeEnd::Whole`] with the game's raw score (every
/// frame's reward since ALE's reset, unclipped, the reset's no-op and `FIRE` frames
/// included) and its length in learner steps (over all lives; the steps a reset takes
/// are not counted). So a vector environment's `finished_episode` gives whole games,
/// unclipped, as CleanRL's `RecordEpisodeStatistics` beneath `EpisodicLifeEnv` and
/// `ClipRewardEnv` does.
///
/// # Differences from Gymnasium and Stable-Baselines3
///
/// - When a game ends inside a skip, Gymnasium's `AtariPreprocessing` returns a stale
///   observation (its max-pool buffers still hold frames of the previous step). Here the
///   final observation is the final frame, max-pooled with the frame before it when
///   that one was read (the game ended on the skip's last frame).
/// - Episodic life follows Stable-Baselines3 (checked after the whole skip, the game
///   goes on), not Gymnasium's `terminal_on_life_loss` (which ends the step at the frame
///   the life is lost and restarts the game at the next reset).
/// - The no-op counts come from this environment's own generator, seeded by
///   `reset_into(Some(seed))` ([`AtariPreprocessing::force_noops`] replays a given
///   count); ALE's seed is derived from the same seed differently from ale-py's.
/// - A reset that does not follow a lost life (say, after a time limit cut the
///   episode) starts a new game; Stable-Baselines3 would continue the game. The resets
///   inside a fire reset take no seed (Stable-Baselines3 passes the seed again).
#[derive(Debug)]
pub struct AtariPreprocessing {
    env: AtariEnv,
    config: PreprocessConfig,
    actions: Vec<usize>,
    /// `fire_reset` applies to this game.
    fire: bool,
    /// Draws the no-op counts.
    rng: EnvRng,
    /// The no-op count of the next new game, if forced.
    forced_noops: Option<u32>,
    /// The last frame read, and the one before it in the skip (`H × W` or `H × W × 3`).
    last: Vec<u8>,
    prev: Vec<u8>,
    /// Whether the observation pools `prev` with `last`.
    pooled: bool,
    /// The pooled frame.
    frame: Vec<u8>,
    resize: AreaResize,
    /// RGB only: one channel of the frame, and that channel resized.
    plane: Vec<u8>,
    small: Vec<u8>,
    observation_space: Space,
    action_space: Space,
    /// Lives after the last step (for episodic life).
    lives: i32,
    /// A game was started; `step_into` may be called.
    started: bool,
    running: bool,
    /// The last learner episode ended with a lost life (episodic life).
    life_lost: bool,
    /// The game's raw score so far, and the learner steps taken in it.
    game_return: f64,
    game_steps: u64,
}

/// The seed of the no-op generator for an environment seed (unlike ALE's, see
/// `AtariEnv`).
fn noop_seed(seed: u64) -> u64 {
    splitmix64(seed)
}

impl AtariPreprocessing {
    /// The preprocessing over `env`, which must be built with `frameskip` 1.
    pub fn new(env: AtariEnv, config: PreprocessConfig) -> Result<Self> {
        let name = env.game().to_string();
        if env.config().frameskip != 1 {
            return Err(EnvError::bad_param(
                &name,
                "frameskip",
                "the preprocessing skips frames itself: build the AtariEnv with frameskip 1",
            ));
        }
        if config.frame_skip == 0 {
            return Err(EnvError::bad_param(
                &name,
                "frame_skip",
                "must be at least 1",
            ));
        }
        let (h, w) = env.ale().screen_shape();
        let s = config.screen_size;
        if s == 0 || s > h.min(w) {
            return Err(EnvError::bad_param(
                &name,
                "screen_size",
                format!(
                    "must be in 1..={} (area interpolation shrinks the {h}×{w} screen), got {s}",
                    h.min(w)
                ),
            ));
        }
        let actions = env.action_set().to_vec();
        if config.noop_max > 0 && actions.first() != Some(&NOOP) {
            return Err(EnvError::bad_param(
                &name,
                "noop_max",
                "no-op resets need NOOP as action 0",
            ));
        }
        let fire = config.fire_reset && actions.len() >= 3 && actions[1] == FIRE;
        let channels = if config.grayscale { 1 } else { 3 };
        let shape: &[usize] = if config.grayscale {
            &[s, s]
        } else {
            &[s, s, 3]
        };
        let action_space = Space::Discrete(actions.len());
        Ok(AtariPreprocessing {
            env,
            actions,
            fire,
            rng: rng_from_seed(noop_seed(DEFAULT_SEED)),
            forced_noops: None,
            last: vec![0; h * w * channels],
            prev: vec![0; h * w * channels],
            pooled: false,
            frame: vec![0; h * w * channels],
            resize: AreaResize::new(h, w, s, s),
            plane: if config.grayscale {
                Vec::new()
            } else {
                vec![0; h * w]
            },
            small: if config.grayscale {
                Vec::new()
            } else {
                vec![0; s * s]
            },
            observation_space: Space::Box(BoxSpace::uniform(0.0, 255.0, shape, Dtype::U8)),
            action_space,
            config,
            lives: 0,
            started: false,
            running: false,
            life_lost: false,
            game_return: 0.0,
            game_steps: 0,
        })
    }

    /// The preprocessing over `game` (`Breakout`, `space_invaders`, ...) with
    /// Gymnasium's v5 settings otherwise: sticky actions 0.25, minimal action set, the
    /// 108 000-frame cap ([`AtariConfig::default`] with `frameskip` 1).
    pub fn from_game(game: &str, config: PreprocessConfig) -> Result<Self> {
        let base = AtariConfig {
            frameskip: 1,
            ..AtariConfig::default()
        };
        Self::new(AtariEnv::new(game, base)?, config)
    }

    /// The next new game (see the type's docs) takes exactly `noops` no-op frames
    /// instead of a random count; later games draw again. For replaying an episode of
    /// another implementation, which drew its own count.
    pub fn force_noops(&mut self, noops: u32) {
        self.forced_noops = Some(noops);
    }

    /// Whether resets press `FIRE` (`fire_reset` is on and the game has `FIRE` as
    /// action 1).
    pub fn fires_on_reset(&self) -> bool {
        self.fire
    }

    /// The switches.
    pub fn config(&self) -> &PreprocessConfig {
        &self.config
    }

    /// The game underneath (its emulator, action names, settings).
    pub fn inner(&self) -> &AtariEnv {
        &self.env
    }

    /// The current game's raw score so far.
    pub fn game_return(&self) -> f64 {
        self.game_return
    }

    /// Emulate up to `frame_skip` frames of ALE action `ale_action`, stopping when the
    /// game ends, and read the screens the observation needs; returns the summed reward.
    fn skip(&mut self, ale_action: usize) -> Result<i64> {
        let k = self.config.frame_skip;
        let pool = self.config.max_pool && k >= 2;
        let gray = self.config.grayscale;
        let mut reward = 0i64;
        self.pooled = false;
        for t in 0..k {
            reward += i64::from(self.env.ale_mut().act(ale_action, 1.0)?);
            if self.env.ale().game_over(true) {
                // Ended inside the skip: the final frame, pooled with the frame before
                // it only if that one was read (the skip's last two frames).
                grab(&self.env, gray, &mut self.last)?;
                self.pooled = pool && t + 1 == k;
                break;
            }
            if pool && t + 2 == k {
                grab(&self.env, gray, &mut self.prev)?;
            } else if t + 1 == k {
                grab(&self.env, gray, &mut self.last)?;
                self.pooled = pool;
            }
        }
        Ok(reward)
    }

    /// A new game: ALE's reset, then the no-ops.
    fn new_game(&mut self) -> Result<()> {
        let noops = match self.forced_noops.take() {
            Some(n) => n,
            None if self.config.noop_max > 0 => self.rng.random_range(1..=self.config.noop_max),
            None => 0,
        };
        self.env.ale_mut().reset_game()?;
        self.game_return = 0.0;
        self.game_steps = 0;
        for _ in 0..noops {
            self.game_return += f64::from(self.env.ale_mut().act(NOOP, 1.0)?);
            if self.env.ale().game_over(true) {
                self.env.ale_mut().reset_game()?;
                self.game_return = 0.0;
            }
        }
        grab(&self.env, self.config.grayscale, &mut self.last)?;
        self.pooled = false;
        self.started = true;
        Ok(())
    }

    /// Step 1 of a reset (see the type's docs): a new game, or the game goes on after
    /// a lost life.
    fn start(&mut self, seed: Option<u64>) -> Result<()> {
        let goes_on =
            seed.is_none() && self.started && self.life_lost && !self.env.ale().game_over(true);
        self.life_lost = false;
        if goes_on {
            let r = self.skip(NOOP)?;
            self.game_return += r as f64;
            if self.env.ale().game_over(true) {
                self.new_game()?;
            }
        } else {
            if let Some(seed) = seed {
                self.env.seed(seed)?;
                self.rng = rng_from_seed(noop_seed(seed));
            }
            self.new_game()?;
        }
        self.lives = self.env.ale().lives();
        Ok(())
    }

    /// One step of action `a` (an index into the action set), without reward clipping:
    /// `(raw reward, terminated, truncated)`, a lost life counting as `terminated` under
    /// episodic life.
    fn act(&mut self, a: usize) -> Result<(f64, bool, bool)> {
        let reward = self.skip(self.actions[a])? as f64;
        self.game_return += reward;
        let ale = self.env.ale();
        let mut terminated = ale.game_over(false);
        let truncated = ale.game_truncated();
        if self.config.episodic_life {
            let lives = ale.lives();
            if 0 < lives && lives < self.lives {
                terminated = true;
                self.life_lost = true;
            }
            self.lives = lives;
        }
        Ok((reward, terminated, truncated))
    }

    /// Write the observation (resized, pooled if so) and the extras.
    fn write(&mut self, out: Out<'_>) -> Result<()> {
        let obs = out.obs.u8()?;
        let s = self.config.screen_size;
        let want = if self.config.grayscale {
            s * s
        } else {
            s * s * 3
        };
        if obs.len() != want {
            return Err(EnvError::Buffer(format!(
                "the preprocessed Atari frame needs {want} bytes, the buffer holds {}",
                obs.len()
            )));
        }
        let screen: &[u8] = if self.pooled {
            max_pool(&self.prev, &self.last, &mut self.frame);
            &self.frame
        } else {
            &self.last
        };
        if self.config.grayscale {
            self.resize.resize(screen, obs);
        } else {
            for c in 0..3 {
                for (p, px) in self.plane.iter_mut().zip(screen.chunks_exact(3)) {
                    *p = px[c];
                }
                self.resize.resize(&self.plane, &mut self.small);
                for (px, v) in obs.chunks_exact_mut(3).zip(&self.small) {
                    px[c] = *v;
                }
            }
        }
        let ale = self.env.ale();
        if let [lives, episode_frame, frame] = out.extras {
            *lives = f64::from(ale.lives());
            *episode_frame = f64::from(ale.episode_frame_number());
            *frame = f64::from(ale.frame_number());
        }
        Ok(())
    }
}

/// Read the screen of `env` into `buf`, grayscale or RGB.
#[inline]
fn grab(env: &AtariEnv, grayscale: bool, buf: &mut [u8]) -> Result<()> {
    if grayscale {
        env.ale().screen_grayscale(buf)
    } else {
        env.ale().screen_rgb(buf)
    }
}

impl Env for AtariPreprocessing {
    fn observation_space(&self) -> &Space {
        &self.observation_space
    }

    fn action_space(&self) -> &Space {
        &self.action_space
    }

    fn extra_names(&self) -> &[&'static str] {
        &EXTRA_NAMES
    }

    fn reset_into(&mut self, seed: Option<u64>, out: Out<'_>) -> Result<()> {
        self.running = false;
        self.start(seed)?;
        if self.fire {
            // Stable-Baselines3's FireResetEnv, above episodic life.
            for a in [1, 2] {
                let (_, terminated, truncated) = self.act(a)?;
                if terminated || truncated {
                    self.start(None)?;
                }
            }
        }
        self.running = true;
        self.write(out)
    }

    #[inline]
    fn step_into(&mut self, action: Action<'_>, out: Out<'_>) -> Result<Step> {
        let a = self.action_space.discrete_index(&action)?;
        if !self.running {
            return Err(EnvError::NeedsReset(
                "before reset or after the episode ended",
            ));
        }
        let (raw, terminated, truncated) = self.act(a)?;
        self.game_steps += 1;
        if terminated || truncated {
            self.running = false;
        }
        self.write(out)?;
        let reward = if !self.config.clip_rewards {
            raw
        } else if raw > 0.0 {
            1.0
        } else if raw < 0.0 {
            -1.0
        } else {
            0.0
        };
        Ok(Step {
            reward,
            terminated,
            truncated,
        })
    }

    fn render_ansi(&self) -> String {
        self.env.render_ansi()
    }

    fn render_rgb(&self) -> Option<RgbImage> {
        self.env.render_rgb()
    }

    fn episode_end(&self) -> EpisodeEnd {
        if self.life_lost && !self.env.ale().game_over(true) {
            EpisodeEnd::Partial
        } else {
            EpisodeEnd::Whole {
                ret: self.game_return,
                len: self.game_steps,
            }
        }
    }
}
