//! Atari 2600 games through the Arcade Learning Environment (ALE 0.12), behind the
//! cargo feature `atari`.
//!
//! - [`Ale`]: a safe handle on one emulator (ALE's C++ `ALEInterface` through a small C
//!   shim, `shim.cpp`, compiled by `build.rs`).
//! - [`AtariEnv`]: one game as an [`Env`] with Gymnasium's
//!   `ALE/{Game}-v5` semantics: RGB `u8` frames of shape (210, 160, 3) (or grayscale),
//!   sticky actions with probability 0.25, 4 frames per step with summed rewards, the
//!   minimal action set, 108 000 frames per episode at most.
//! - [`AtariPreprocessing`]: the common Atari protocol over a game, each part a switch
//!   of [`PreprocessConfig`]: no-op reset (up to 30), frame skip 4 with a max-pool of
//!   the last two frames, episodic life, fire on reset, 84×84 grayscale by area
//!   interpolation, rewards clipped to their sign; stacked by
//!   [`FrameStack`]. It is checked step by step against
//!   Gymnasium's `AtariPreprocessing` (`envs/tests/atari_fixtures.rs`). Episode
//!   statistics report whole games with their unclipped scores
//!   ([`Env::episode_end`]).
//!
//! The registry names two environments per ROM found:
//!
//! - `atari:{Game}` (`atari:Breakout`, `atari:SpaceInvaders`, ...): the preprocessed
//!   game, observations `u8` of shape `[4, 84, 84]`. Parameters: the game's
//!   (`repeat_action_probability` 0.25, `full_action_space`, `mode`, `difficulty`,
//!   `max_num_frames_per_episode` 108000) and one per switch (`noop_max` 30,
//!   `frame_skip` 4, `max_pool`, `episodic_life`, `fire_reset`, `screen_size` 84,
//!   `grayscale`, `frame_stack` 4, `clip_rewards`; the switches default to on).
//! - `ALE/{Game}-v5`: the raw game, as `gymnasium.make("ALE/{Game}-v5")`, with ale-py's
//!   parameters (`obs_type`, `frameskip` and the game's).
//!
//! Both are found without case and underscores (`atari:space_invaders`,
//! `ALE/pong-v5`).
//!
//! Setup, once per machine: `scripts/setup-atari.sh` builds ALE's `libale.a` and
//! installs the ale-py wheel for its ROMs. ROMs are looked up in `ALE_ROM_DIR`, else in
//! the installed `ale_py` package's `roms` directory ([`rom_dir`]).
//!
//! ```no_run
//! use agentry_envs::atari::{AtariConfig, AtariEnv};
//! use agentry_envs::{Action, EnvExt, Params, make};
//! let mut env = AtariEnv::new("Breakout", AtariConfig::default()).unwrap();
//! let (obs, info) = env.reset(Some(0)).unwrap();
//! assert_eq!(obs.to_f32().len(), 210 * 160 * 3);
//! assert_eq!(info.get("lives"), Some(5.0));
//! let t = env.step(Action::Discrete(1)).unwrap(); // FIRE
//! assert!(!t.terminated);
//!
//! // The common protocol, for a learner.
//! let mut env = make("atari:Breakout", &Params::new()).unwrap();
//! assert_eq!(env.observation_space().shape(), [4, 84, 84]);
//! let (obs, _) = env.reset(Some(0)).unwrap();
//! assert_eq!(obs.to_f32().len(), 4 * 84 * 84);
//! ```

mod ale;
mod env;
mod preprocess;
mod roms;

pub use ale::{ACTION_NAMES, Ale, NUM_FULL_ACTIONS};
pub use env::{AtariConfig, AtariEnv, EXTRA_NAMES, ObsType};
pub use preprocess::{AtariPreprocessing, PreprocessConfig};
pub use roms::{INSTALL_HINT, find_rom, game_name, rom_dir, roms_in};

use crate::env::Env;
use crate::error::{EnvError, Result};
use crate::params::{ParamKind, ParamSpec, ResolvedParams};
use crate::registry::EnvSpec;
use crate::wrappers::FrameStack;

/// The prefix of the preprocessed games' names in the registry (`atari:Breakout`).
pub const PREFIX: &str = "atari:";
/// The prefix and suffix of the raw games' names (Gymnasium's `ALE/Breakout-v5`).
pub const V5_PREFIX: &str = "ALE/";
/// See [`V5_PREFIX`].
pub const V5_SUFFIX: &str = "-v5";

/// The parameters the raw and the preprocessed games share (ale-py's, v5 defaults).
fn game_params() -> Vec<ParamSpec> {
    vec![
        ParamSpec::new(
            "repeat_action_probability",
            ParamKind::Float { min: 0.0, max: 1.0 },
            "0.25",
            "sticky actions: per-frame probability of repeating the last action (Machado et al. 2018; v5: 0.25)",
        ),
        ParamSpec::new(
            "full_action_space",
            ParamKind::Bool,
            "false",
            "all 18 actions rather than the game's minimal set",
        ),
        ParamSpec::optional(
            "mode",
            ParamKind::Int {
                min: 0,
                max: i32::MAX as i64,
            },
            "game mode (default: the game's)",
        ),
        ParamSpec::optional(
            "difficulty",
            ParamKind::Int {
                min: 0,
                max: i32::MAX as i64,
            },
            "difficulty (default: the game's)",
        ),
        ParamSpec::new(
            "max_num_frames_per_episode",
            ParamKind::Int {
                min: 0,
                max: i32::MAX as i64,
            },
            "108000",
            "truncate episodes after this many frames (v5: 108000, 30 minutes; 0: no limit)",
        ),
    ]
}

/// The parameters of a raw game, `ALE/{Game}-v5` (ale-py's `AtariEnv` arguments, v5
/// defaults).
pub fn params() -> Vec<ParamSpec> {
    let mut p = vec![
        ParamSpec::new(
            "obs_type",
            ParamKind::Choice(&["rgb", "grayscale"]),
            "rgb",
            "observation: RGB (210, 160, 3) or grayscale (210, 160) u8 frames",
        ),
        ParamSpec::new(
            "frameskip",
            ParamKind::Int { min: 1, max: 1000 },
            "4",
            "emulator frames per step; the rewards are summed (v5: 4)",
        ),
    ];
    p.extend(game_params());
    p
}

/// The parameters of a preprocessed game, `atari:{Game}`: the game's and one per switch
/// of [`PreprocessConfig`], defaults the common protocol.
pub fn preprocessing_params() -> Vec<ParamSpec> {
    let mut p = game_params();
    p.extend([
        ParamSpec::new(
            "noop_max",
            ParamKind::Int { min: 0, max: 1000 },
            "30",
            "a new game starts with a random number of no-op frames in 1..=noop_max (0: none)",
        ),
        ParamSpec::new(
            "frame_skip",
            ParamKind::Int { min: 1, max: 1000 },
            "4",
            "emulator frames per step, rewards summed",
        ),
        ParamSpec::new(
            "max_pool",
            ParamKind::Bool,
            "true",
            "observe the pixel-wise maximum of the skip's last two frames",
        ),
        ParamSpec::new(
            "episodic_life",
            ParamKind::Bool,
            "true",
            "a lost life ends the learner's episode (terminated); the game goes on",
        ),
        ParamSpec::new(
            "fire_reset",
            ParamKind::Bool,
            "true",
            "press FIRE, then action 2, after each reset (games with FIRE as action 1)",
        ),
        ParamSpec::new(
            "screen_size",
            ParamKind::Int { min: 1, max: 160 },
            "84",
            "frames resized to screen_size × screen_size by area interpolation",
        ),
        ParamSpec::new(
            "grayscale",
            ParamKind::Bool,
            "true",
            "grayscale frames rather than RGB",
        ),
        ParamSpec::new(
            "frame_stack",
            ParamKind::Int { min: 1, max: 64 },
            "4",
            "observations stack this many frames, oldest first: [frame_stack, screen_size, screen_size]",
        ),
        ParamSpec::new(
            "clip_rewards",
            ParamKind::Bool,
            "true",
            "rewards clipped to their sign (episode statistics stay unclipped)",
        ),
    ]);
    p
}

/// The game of a registry name: `(game, preprocessed)` for `atari:{game}` and
/// `ALE/{game}-v5`, in any case.
fn parse_name(name: &str) -> Option<(&str, bool)> {
    let starts = |p: &str| {
        name.get(..p.len())
            .is_some_and(|x| x.eq_ignore_ascii_case(p))
    };
    if starts(PREFIX) {
        return name.get(PREFIX.len()..).map(|g| (g, true));
    }
    let ends = name
        .len()
        .checked_sub(V5_SUFFIX.len())
        .and_then(|i| name.get(i..))
        .is_some_and(|x| x.eq_ignore_ascii_case(V5_SUFFIX));
    if starts(V5_PREFIX) && ends {
        return name
            .get(V5_PREFIX.len()..name.len() - V5_SUFFIX.len())
            .map(|g| (g, false));
    }
    None
}

/// Whether `name` has the form of an Atari name (`atari:…` or `ALE/…-v5`).
pub fn is_atari_name(name: &str) -> bool {
    parse_name(name).is_some()
}

fn build_v5(p: &ResolvedParams) -> Result<Box<dyn Env>> {
    let (game, _) = parse_name(p.env()).unwrap_or_default();
    Ok(Box::new(AtariEnv::new(game, AtariConfig::from_params(p)?)?))
}

fn build_preprocessed(p: &ResolvedParams) -> Result<Box<dyn Env>> {
    let (game, _) = parse_name(p.env()).unwrap_or_default();
    let base = AtariConfig {
        frameskip: 1,
        ..AtariConfig::game_from_params(p)?
    };
    let config = PreprocessConfig {
        noop_max: p.int("noop_max")? as u32,
        frame_skip: p.int("frame_skip")? as u32,
        max_pool: p.bool("max_pool")?,
        episodic_life: p.bool("episodic_life")?,
        fire_reset: p.bool("fire_reset")?,
        screen_size: p.usize("screen_size")?,
        grayscale: p.bool("grayscale")?,
        clip_rewards: p.bool("clip_rewards")?,
    };
    let env = AtariPreprocessing::new(AtariEnv::new(game, base)?, config)?;
    Ok(Box::new(FrameStack::new(env, p.usize("frame_stack")?)?))
}

/// Two registry entries per ROM found, `atari:{Game}` and `ALE/{Game}-v5` (none when no
/// ROM directory is found: asking for an Atari name then gives [`resolve`]'s
/// explanation).
pub fn specs() -> Vec<EnvSpec> {
    let Ok(dir) = rom_dir() else {
        return Vec::new();
    };
    // The registry holds `&'static str`s and lives as long as the process; these few
    // short strings are allocated once, when it is built.
    let leak = |s: String| -> &'static str { Box::leak(s.into_boxed_str()) };
    roms_in(&dir)
        .into_iter()
        .flat_map(|(stem, _)| {
            let game = game_name(&stem);
            [
                EnvSpec {
                    name: leak(format!("{PREFIX}{game}")),
                    aliases: &[],
                    summary: "an Atari 2600 game with the common preprocessing: no-op reset, \
                              frame skip 4 with max-pool, episodic life, fire reset, 4 stacked \
                              84×84 grayscale frames, clipped rewards",
                    params: preprocessing_params(),
                    max_episode_steps: None,
                    build: build_preprocessed,
                },
                EnvSpec {
                    name: leak(format!("{V5_PREFIX}{game}{V5_SUFFIX}")),
                    aliases: &[],
                    summary: "an Atari 2600 game as Gymnasium's ALE v5 (raw frames, sticky \
                              actions, frame skip 4)",
                    params: params(),
                    max_episode_steps: None,
                    build: build_v5,
                },
            ]
        })
        .collect()
}

/// The registry entry of an Atari name that does not match one exactly (such as
/// `atari:space_invaders` or `ALE/space_invaders-v5`), or an error that says why its
/// ROM is missing and how to install the ROMs.
pub fn resolve(name: &str, specs: &'static [EnvSpec]) -> Result<&'static EnvSpec> {
    let (game, preprocessed) = parse_name(name).unwrap_or((name, true));
    let rom = find_rom(game)?;
    let canonical = rom
        .file_stem()
        .and_then(|s| s.to_str())
        .map(|stem| {
            let game = game_name(stem);
            if preprocessed {
                format!("{PREFIX}{game}")
            } else {
                format!("{V5_PREFIX}{game}{V5_SUFFIX}")
            }
        })
        .unwrap_or_default();
    specs.iter().find(|s| s.name == canonical).ok_or_else(|| {
        // Found now but not when the registry was built (e.g. installed meanwhile).
        EnvError::Io(format!(
            "the ROM of `{game}` ({}) appeared after the registry was built; restart the program",
            rom.display()
        ))
    })
}

#[cfg(test)]
mod tests;
