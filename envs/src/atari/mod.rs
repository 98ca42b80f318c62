//! Atari 2600 games through the Arcade Learning Environment (ALE 0.12), behind the
//! cargo feature `atari`.
//!
//! - [`Ale`]: a safe handle on one emulator (ALE's C++ `ALEInterface` through a small C
//!   shim, `shim.cpp`, compiled by `build.rs`).
//! - [`AtariEnv`]: one game as an [`Env`](crate::Env) with Gymnasium's
//!   `ALE/{Game}-v5` semantics: RGB `u8` frames of shape (210, 160, 3) (or grayscale),
//!   sticky actions with probability 0.25, 4 frames per step with summed rewards, the
//!   minimal action set, 108 000 frames per episode at most.
//! - The registry names every ROM found `atari:{Game}` (`atari:Breakout`,
//!   `atari:SpaceInvaders`, ...), with Gymnasium's `ALE/{Game}-v5` as an alias.
//!
//! Setup, once per machine: `scripts/setup-atari.sh` builds ALE's `libale.a` and
//! installs the ale-py wheel for its ROMs. ROMs are looked up in `ALE_ROM_DIR`, else in
//! the installed `ale_py` package's `roms` directory ([`rom_dir`]).
//!
//! ```no_run
//! use agentry_envs::atari::{AtariConfig, AtariEnv};
//! use agentry_envs::{Action, EnvExt};
//! let mut env = AtariEnv::new("Breakout", AtariConfig::default()).unwrap();
//! let (obs, info) = env.reset(Some(0)).unwrap();
//! assert_eq!(obs.to_f32().len(), 210 * 160 * 3);
//! assert_eq!(info.get("lives"), Some(5.0));
//! let t = env.step(Action::Discrete(1)).unwrap(); // FIRE
//! assert!(!t.terminated);
//! ```

mod ale;
mod env;
mod roms;

pub use ale::{ACTION_NAMES, Ale, NUM_FULL_ACTIONS};
pub use env::{AtariConfig, AtariEnv, EXTRA_NAMES, ObsType};
pub use roms::{INSTALL_HINT, find_rom, game_name, rom_dir, roms_in};

use crate::env::Env;
use crate::error::{EnvError, Result};
use crate::params::{ParamKind, ParamSpec, ResolvedParams};
use crate::registry::EnvSpec;

/// The prefix of Atari names in the registry.
pub const PREFIX: &str = "atari:";

/// The parameters of every Atari game (ale-py's `AtariEnv` arguments, v5 defaults).
pub fn params() -> Vec<ParamSpec> {
    vec![
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

fn build(p: &ResolvedParams) -> Result<Box<dyn Env>> {
    let game = p.env().get(PREFIX.len()..).unwrap_or_default();
    Ok(Box::new(AtariEnv::new(game, AtariConfig::from_params(p)?)?))
}

/// One registry entry per ROM found (none when no ROM directory is found: asking for an
/// `atari:` name then gives [`resolve`]'s explanation).
pub fn specs() -> Vec<EnvSpec> {
    let Ok(dir) = rom_dir() else {
        return Vec::new();
    };
    roms_in(&dir)
        .into_iter()
        .map(|(stem, _)| {
            let game = game_name(&stem);
            // The registry holds `&'static str`s and lives as long as the process;
            // these few short strings are allocated once, when it is built.
            let name: &'static str = Box::leak(format!("{PREFIX}{game}").into_boxed_str());
            let alias: &'static str = Box::leak(format!("ALE/{game}-v5").into_boxed_str());
            EnvSpec {
                name,
                aliases: Box::leak(Box::new([alias])),
                summary: "an Atari 2600 game through the Arcade Learning Environment (Gymnasium's ALE v5)",
                params: params(),
                max_episode_steps: None,
                build,
            }
        })
        .collect()
}

/// The registry entry of an `atari:` name that does not match one exactly (such as
/// `atari:space_invaders`), or an error that says why its ROM is missing and how to
/// install the ROMs.
pub fn resolve(name: &str, specs: &'static [EnvSpec]) -> Result<&'static EnvSpec> {
    let game = name.get(PREFIX.len()..).unwrap_or(name);
    let rom = find_rom(game)?;
    let canonical = rom
        .file_stem()
        .and_then(|s| s.to_str())
        .map(|stem| format!("{PREFIX}{}", game_name(stem)))
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
