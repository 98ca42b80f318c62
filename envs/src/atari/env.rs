//! [`AtariEnv`]: one Atari 2600 game with Gymnasium's `ALE/{Game}-v5` semantics.

use std::path::PathBuf;

use super::ale::{ACTION_NAMES, Ale};
use super::roms::find_rom;
use crate::env::{Env, Out, RgbImage, Step};
use crate::error::{EnvError, Result};
use crate::params::ResolvedParams;
use crate::rng::{DEFAULT_SEED, splitmix64};
use crate::space::{Action, BoxSpace, Dtype, Space};

/// What an observation is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ObsType {
    /// The RGB screen, `u8` of shape (210, 160, 3).
    Rgb,
    /// The grayscale screen (ALE's palette luminance), `u8` of shape (210, 160).
    Grayscale,
}

/// How an [`AtariEnv`] plays; the defaults are Gymnasium's `ALE/{Game}-v5`.
#[derive(Clone, Debug, PartialEq)]
pub struct AtariConfig {
    /// RGB (default) or grayscale observations.
    pub obs_type: ObsType,
    /// Emulator frames per step; the step's reward is the sum over them (v5: 4).
    pub frameskip: u32,
    /// Probability that ALE repeats the previous frame's action instead of the new one,
    /// at every frame (sticky actions, Machado et al. 2018; v5: 0.25).
    pub repeat_action_probability: f32,
    /// All 18 actions rather than the game's minimal set (v5: false).
    pub full_action_space: bool,
    /// Game mode (`None`: the game's default).
    pub mode: Option<i32>,
    /// Difficulty (`None`: the game's default).
    pub difficulty: Option<i32>,
    /// ALE truncates an episode after this many frames (v5: 108 000 = 30 min at 60 Hz;
    /// 0: no limit).
    pub max_num_frames_per_episode: u32,
}

impl Default for AtariConfig {
    fn default() -> Self {
        AtariConfig {
            obs_type: ObsType::Rgb,
            frameskip: 4,
            repeat_action_probability: 0.25,
            full_action_space: false,
            mode: None,
            difficulty: None,
            max_num_frames_per_episode: 108_000,
        }
    }
}

impl AtariConfig {
    /// All of `ALE/{Game}-v5`'s parameters.
    pub(super) fn from_params(p: &ResolvedParams) -> Result<Self> {
        Ok(AtariConfig {
            obs_type: match p.str("obs_type")? {
                "grayscale" => ObsType::Grayscale,
                _ => ObsType::Rgb,
            },
            frameskip: p.int("frameskip")? as u32,
            ..Self::game_from_params(p)?
        })
    }

    /// The parameters the raw and the preprocessed games share (sticky actions, action
    /// set, mode, difficulty, frame cap); the rest are the defaults.
    pub(super) fn game_from_params(p: &ResolvedParams) -> Result<Self> {
        let opt_int = |name: &str| -> Result<Option<i32>> {
            if p.is_set(name) {
                Ok(Some(p.int(name)? as i32))
            } else {
                Ok(None)
            }
        };
        Ok(AtariConfig {
            repeat_action_probability: p.float("repeat_action_probability")? as f32,
            full_action_space: p.bool("full_action_space")?,
            mode: opt_int("mode")?,
            difficulty: opt_int("difficulty")?,
            max_num_frames_per_episode: p.int("max_num_frames_per_episode")? as u32,
            ..AtariConfig::default()
        })
    }
}

/// One Atari 2600 game through the Arcade Learning Environment, as ale-py's
/// `AtariEnv` (`gymnasium.make("ALE/Breakout-v5")`) plays it:
///
/// - `reset(Some(seed))` sets ALE's `random_seed` from the seed and reloads the ROM
///   (as ale-py's `seed` does), so a seed and a sequence of actions give the same
///   episode, sticky actions included; `reset(None)` continues ALE's random stream.
/// - `step(a)` plays ALE action `action_set()[a]` for `frameskip` frames and sums the
///   rewards (no max-pooling of frames here); `terminated` is ALE's game over,
///   `truncated` its frame limit (`max_num_frames_per_episode`).
/// - Extras: `lives`, `episode_frame_number` and `frame_number`, as ale-py's `info`.
#[derive(Debug)]
pub struct AtariEnv {
    ale: Ale,
    game: String,
    rom: PathBuf,
    config: AtariConfig,
    actions: Vec<usize>,
    observation_space: Space,
    action_space: Space,
    /// The ROM is loaded and the game reset: `step` may be called.
    running: bool,
}

impl AtariEnv {
    /// The game `game` (`Breakout`, `breakout`, `space_invaders`, `SpaceInvaders`, ...)
    /// from the ROM directory (see [`super::rom_dir`]).
    pub fn new(game: &str, config: AtariConfig) -> Result<Self> {
        let rom = find_rom(game)?;
        Self::from_rom(game, rom, config)
    }

    /// A game from a ROM file.
    pub fn from_rom(game: &str, rom: PathBuf, config: AtariConfig) -> Result<Self> {
        if config.frameskip == 0 {
            return Err(EnvError::bad_param(game, "frameskip", "must be at least 1"));
        }
        let p = config.repeat_action_probability;
        if !(0.0..=1.0).contains(&p) {
            return Err(EnvError::bad_param(
                game,
                "repeat_action_probability",
                format!("must be in [0, 1], got {p}"),
            ));
        }
        let mut ale = Ale::new()?;
        ale.set_float("repeat_action_probability", p)?;
        let max_frames = i32::try_from(config.max_num_frames_per_episode)
            .map_err(|_| EnvError::bad_param(game, "max_num_frames_per_episode", "too large"))?;
        ale.set_int("max_num_frames_per_episode", max_frames)?;
        ale.set_int("random_seed", ale_seed(DEFAULT_SEED))?;
        ale.load_rom(&rom)?;
        // Check the mode and difficulty against what the game offers.
        if let Some(mode) = config.mode {
            let modes = ale.available_modes()?;
            if !modes.contains(&mode) {
                return Err(EnvError::bad_param(
                    game,
                    "mode",
                    format!("{mode} is not a mode of this game; its modes: {modes:?}"),
                ));
            }
        }
        if let Some(d) = config.difficulty {
            let ds = ale.available_difficulties()?;
            if !ds.contains(&d) {
                return Err(EnvError::bad_param(
                    game,
                    "difficulty",
                    format!("{d} is not a difficulty of this game; its difficulties: {ds:?}"),
                ));
            }
        }
        // Applied now for a first `reset(None)`; `seed` applies them after each reload.
        if let Some(mode) = config.mode {
            ale.set_mode(mode)?;
        }
        if let Some(d) = config.difficulty {
            ale.set_difficulty(d)?;
        }
        let actions = if config.full_action_space {
            ale.legal_action_set()?
        } else {
            ale.minimal_action_set()?
        };
        let (h, w) = ale.screen_shape();
        let shape: &[usize] = match config.obs_type {
            ObsType::Rgb => &[h, w, 3],
            ObsType::Grayscale => &[h, w],
        };
        let observation_space = Space::Box(BoxSpace::uniform(0.0, 255.0, shape, Dtype::U8));
        let action_space = Space::Discrete(actions.len());
        Ok(AtariEnv {
            ale,
            game: game.to_string(),
            rom,
            config,
            actions,
            observation_space,
            action_space,
            running: false,
        })
    }

    /// The ALE action each of this environment's actions plays.
    pub fn action_set(&self) -> &[usize] {
        &self.actions
    }

    /// ALE's names of this environment's actions (`NOOP`, `FIRE`, ...).
    pub fn action_names(&self) -> Vec<&'static str> {
        self.actions.iter().map(|&a| ACTION_NAMES[a]).collect()
    }

    /// Lives left (for an episodic-life wrapper).
    pub fn lives(&self) -> i32 {
        self.ale.lives()
    }

    /// The game's name, as given to the constructor.
    pub fn game(&self) -> &str {
        &self.game
    }

    /// The configuration.
    pub fn config(&self) -> &AtariConfig {
        &self.config
    }

    /// The emulator, e.g. for its game modes.
    pub fn ale(&self) -> &Ale {
        &self.ale
    }

    /// The emulator, mutably, for the preprocessing that drives it frame by frame
    /// (this environment's own `step_into` is then not used).
    pub(super) fn ale_mut(&mut self) -> &mut Ale {
        &mut self.ale
    }

    /// Reload the ROM with ALE's generator seeded from `seed` (ale-py's `seed`).
    pub(super) fn seed(&mut self, seed: u64) -> Result<()> {
        self.running = false;
        self.ale.set_int("random_seed", ale_seed(seed))?;
        self.ale.load_rom(&self.rom)?;
        if let Some(mode) = self.config.mode {
            self.ale.set_mode(mode)?;
        }
        if let Some(d) = self.config.difficulty {
            self.ale.set_difficulty(d)?;
        }
        Ok(())
    }

    fn write(&self, out: Out<'_>) -> Result<()> {
        let obs = out.obs.u8()?;
        match self.config.obs_type {
            ObsType::Rgb => self.ale.screen_rgb(obs)?,
            ObsType::Grayscale => self.ale.screen_grayscale(obs)?,
        }
        if let [lives, episode_frame, frame] = out.extras {
            *lives = f64::from(self.ale.lives());
            *episode_frame = f64::from(self.ale.episode_frame_number());
            *frame = f64::from(self.ale.frame_number());
        }
        Ok(())
    }
}

/// ALE's `random_seed` for an environment seed: non-negative 31 bits of a mix of it.
fn ale_seed(seed: u64) -> i32 {
    (splitmix64(seed) >> 33) as i32
}

/// Names of the extras an [`AtariEnv`] writes.
pub const EXTRA_NAMES: [&str; 3] = ["lives", "episode_frame_number", "frame_number"];

impl Env for AtariEnv {
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
        if let Some(seed) = seed {
            self.seed(seed)?;
        }
        self.running = false;
        self.ale.reset_game()?;
        self.write(out)?;
        self.running = true;
        Ok(())
    }

    fn step_into(&mut self, action: Action<'_>, out: Out<'_>) -> Result<Step> {
        let a = self.action_space.discrete_index(&action)?;
        if !self.running {
            return Err(EnvError::NeedsReset(
                "before reset or after the episode ended",
            ));
        }
        let ale_action = self.actions[a];
        let mut reward = 0i64;
        for _ in 0..self.config.frameskip {
            reward += i64::from(self.ale.act(ale_action, 1.0)?);
        }
        let terminated = self.ale.game_over(false);
        let truncated = self.ale.game_truncated();
        if terminated || truncated {
            self.running = false;
        }
        self.write(out)?;
        Ok(Step {
            reward: reward as f64,
            terminated,
            truncated,
        })
    }

    fn render_ansi(&self) -> String {
        format!(
            "{} (ALE): frame {} of the episode, {} lives{}\n",
            self.game,
            self.ale.episode_frame_number(),
            self.ale.lives(),
            if self.ale.game_over(true) {
                ", game over"
            } else {
                ""
            }
        )
    }

    fn render_rgb(&self) -> Option<RgbImage> {
        let (height, width) = self.ale.screen_shape();
        let mut pixels = vec![0u8; height * width * 3];
        self.ale.screen_rgb(&mut pixels).ok()?;
        Some(RgbImage {
            width,
            height,
            pixels,
        })
    }
}
