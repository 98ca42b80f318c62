//! Finding Atari ROMs: `ALE_ROM_DIR`, else the installed ale-py package's `roms`.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::error::{EnvError, Result};

/// How to get the ROMs, for error messages.
pub const INSTALL_HINT: &str = "run scripts/setup-atari.sh (it installs the ale-py 0.12.1 \
     wheel, which carries the ROMs: `pip install ale-py==0.12.1`), or set ALE_ROM_DIR to a \
     directory of ALE ROMs (*.bin)";

/// The ROM directory: `ALE_ROM_DIR` if set; else the `roms` directory of the `ale_py`
/// package that python3 found when this crate was built; else the one python3 finds now.
pub fn rom_dir() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("ALE_ROM_DIR") {
        let dir = PathBuf::from(dir);
        return if dir.is_dir() {
            Ok(dir)
        } else {
            Err(EnvError::Io(format!(
                "ALE_ROM_DIR={} is not a directory; {INSTALL_HINT}",
                dir.display()
            )))
        };
    }
    let baked = env!("AGENTRY_ALE_ROM_DIR");
    if !baked.is_empty() && Path::new(baked).is_dir() {
        return Ok(PathBuf::from(baked));
    }
    static PROBED: OnceLock<Option<PathBuf>> = OnceLock::new();
    PROBED.get_or_init(python_rom_dir).clone().ok_or_else(|| {
        EnvError::Io(format!(
            "no Atari ROMs found (ALE_ROM_DIR is not set and python3 cannot import ale_py); \
             {INSTALL_HINT}"
        ))
    })
}
include!("python_roms.rs");

/// Every ROM in `dir`, as (file stem such as `space_invaders`, path), sorted by stem.
pub fn roms_in(dir: &Path) -> Vec<(String, PathBuf)> {
    let mut roms: Vec<(String, PathBuf)> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "bin"))
        .filter_map(|p| Some((p.file_stem()?.to_str()?.to_string(), p)))
        .collect();
    roms.sort();
    roms
}

/// Gymnasium's name of a ROM: `space_invaders` → `SpaceInvaders`.
pub fn game_name(stem: &str) -> String {
    stem.split('_')
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect()
}

/// Names compare without case and underscores: `SpaceInvaders` = `space_invaders`.
fn same_game(a: &str, b: &str) -> bool {
    let norm = |s: &str| -> String {
        s.chars()
            .filter(|c| *c != '_' && *c != '-')
            .map(|c| c.to_ascii_lowercase())
            .collect()
    };
    norm(a) == norm(b)
}

/// The ROM file of `game` (`Breakout`, `breakout`, `SpaceInvaders`, `space_invaders`).
pub fn find_rom(game: &str) -> Result<PathBuf> {
    let dir = rom_dir()?;
    let roms = roms_in(&dir);
    roms.iter()
        .find(|(stem, _)| same_game(stem, game))
        .map(|(_, p)| p.clone())
        .ok_or_else(|| {
            let known = if roms.is_empty() {
                "it has no ROMs".to_string()
            } else {
                let names: Vec<String> = roms.iter().map(|(s, _)| game_name(s)).collect();
                format!("its games: {}", names.join(", "))
            };
            EnvError::Io(format!(
                "unknown Atari game `{game}`: no ROM for it in {} ({known}); {INSTALL_HINT}",
                dir.display()
            ))
        })
}
