//! Grid-worlds: Dark-Room, Dark Key-Door, and grid-worlds drawn as ASCII maps.
//!
//! Conventions shared by all three (those of RA-DT's MiniHack-based rooms, Schmied et al.
//! 2024): cells are `(x, y)` with `x` the column (0 at the left) and `y` the row (0 at the
//! top); the five actions are 0 = up (y−1), 1 = right (x+1), 2 = down (y+1), 3 = left
//! (x−1), 4 = stay; a move into the border or a wall leaves the agent where it is. The
//! observation is the agent's cell `[x, y]` as two `f32`s — RA-DT's `tty_cursor`
//! observation holds the same numbers in (row, column) order, i.e. `[y, x]`.
//!
//! One MiniHack artefact is deliberately not copied: in RA-DT's environments the last step
//! of an episode pays nothing even on the goal (NLE checks the step limit before the
//! reward), so their best return is T − d; here every step on the goal pays.

mod ascii;
mod dark_room;
mod key_door;

pub use ascii::{GridMap, GridWorld, GridWorldConfig, Tile};
pub use dark_room::{DarkRoom, DarkRoomConfig, goal_split, switched_goal};
pub use key_door::{DarkKeyDoor, DarkKeyDoorConfig};

use crate::env::{Env, RgbImage};
use crate::error::Result;
use crate::params::{ParamKind, ParamSpec, ResolvedParams};
use crate::registry::EnvSpec;
use crate::space::{Action, BoxSpace, Space};

/// A cell `(x, y)`.
pub type Cell = (usize, usize);

/// Number of actions of every grid-world.
pub const NUM_ACTIONS: usize = 5;

/// Names of the actions, by index.
pub const ACTION_NAMES: [&str; NUM_ACTIONS] = ["up", "right", "down", "left", "stay"];

/// The cell one move from `(x, y)` in a `width × height` grid (the same cell at the border).
#[inline]
pub fn moved((x, y): Cell, action: usize, width: usize, height: usize) -> Cell {
    match action {
        0 => (x, y.saturating_sub(1)),
        1 => ((x + 1).min(width - 1), y),
        2 => (x, (y + 1).min(height - 1)),
        3 => (x.saturating_sub(1), y),
        _ => (x, y),
    }
}

/// The checked action index of a grid-world.
#[inline]
fn action_index(space: &Space, action: &Action<'_>) -> Result<usize> {
    space.discrete_index(action)
}

/// The observation space of a `width × height` grid: `[x, y]`.
fn position_space(width: usize, height: usize) -> Space {
    Space::Box(BoxSpace::new(
        vec![0.0, 0.0],
        vec![(width - 1) as f32, (height - 1) as f32],
    ))
}

/// Draw a grid as text; `glyph(cell)` gives each cell's character.
fn render_text(width: usize, height: usize, glyph: impl Fn(Cell) -> char) -> String {
    let mut s = String::with_capacity((width + 1) * height);
    for y in 0..height {
        for x in 0..width {
            s.push(glyph((x, y)));
        }
        s.push('\n');
    }
    s
}

/// Draw a grid as an RGB image with `px × px` pixels per cell; `colour(cell)` gives each cell's colour.
fn render_image(
    width: usize,
    height: usize,
    px: usize,
    colour: impl Fn(Cell) -> [u8; 3],
) -> RgbImage {
    let (w, h) = (width * px, height * px);
    let mut pixels = vec![0u8; w * h * 3];
    for (i, p) in pixels.chunks_exact_mut(3).enumerate() {
        let (x, y) = (i % w, i / w);
        let c = colour((x / px, y / px));
        // A one-pixel grid line in a darker shade.
        let line = x % px == 0 || y % px == 0;
        p.copy_from_slice(&if line { c.map(|v| v / 2) } else { c });
    }
    RgbImage {
        width: w,
        height: h,
        pixels,
    }
}

/// Grid size parameters shared by Dark-Room and Dark Key-Door.
fn size_params() -> Vec<ParamSpec> {
    vec![
        ParamSpec::new(
            "size",
            ParamKind::Int { min: 2, max: 256 },
            "10",
            "side of a square grid",
        ),
        ParamSpec::optional(
            "width",
            ParamKind::Int { min: 2, max: 256 },
            "grid width (overrides size), e.g. 40 for 40×20",
        ),
        ParamSpec::optional(
            "height",
            ParamKind::Int { min: 2, max: 256 },
            "grid height (overrides size)",
        ),
        ParamSpec::optional(
            "max_steps",
            ParamKind::Int {
                min: 1,
                max: 1_000_000,
            },
            "steps per episode (default width × height: 100, 400, 800 as RA-DT's 10×10, 20×20, 40×20)",
        ),
    ]
}

/// `(width, height, max_steps)` from [`size_params`].
fn read_size(p: &ResolvedParams) -> Result<(usize, usize, u64)> {
    let size = p.usize("size")?;
    let width = if p.is_set("width") {
        p.usize("width")?
    } else {
        size
    };
    let height = if p.is_set("height") {
        p.usize("height")?
    } else {
        size
    };
    let max_steps = if p.is_set("max_steps") {
        p.usize("max_steps")? as u64
    } else {
        (width * height) as u64
    };
    Ok((width, height, max_steps))
}

/// The registry entries of this module.
pub fn specs() -> Vec<EnvSpec> {
    let mut dark_room = size_params();
    dark_room.extend([
        ParamSpec::optional(
            "goal",
            ParamKind::Cell,
            "the invisible goal cell x,y (default: the far corner)",
        ),
        ParamSpec::optional("start", ParamKind::Cell, "the start cell x,y (default 0,0)"),
        ParamSpec::new(
            "random_goal",
            ParamKind::Bool,
            "false",
            "draw a new goal at every reset",
        ),
        ParamSpec::new(
            "switch_every",
            ParamKind::Int {
                min: 0,
                max: 1 << 40,
            },
            "0",
            "move the goal every this many episodes (0: never): a non-stationary task",
        ),
        ParamSpec::new(
            "switch_seed",
            ParamKind::Int {
                min: 0,
                max: i64::MAX,
            },
            "0",
            "seed of the goal sequence of switch_every (the same in every copy)",
        ),
    ]);
    let mut key_door = size_params();
    key_door.extend([
        ParamSpec::optional("key", ParamKind::Cell, "the key cell x,y"),
        ParamSpec::optional("door", ParamKind::Cell, "the door cell x,y"),
        ParamSpec::optional("start", ParamKind::Cell, "the start cell x,y (default 0,0)"),
        ParamSpec::new(
            "random",
            ParamKind::Bool,
            "false",
            "draw new key and door cells at every reset",
        ),
    ]);
    vec![
        EnvSpec {
            name: "dark-room",
            aliases: &["darkroom", "DarkRoom"],
            summary: "find an invisible goal from (x, y) alone; +1 per step on it (RA-DT's Dark-Room)",
            params: dark_room,
            max_episode_steps: None,
            build: |p| Ok(Box::new(DarkRoom::new(DarkRoomConfig::from_params(p)?)?) as Box<dyn Env>),
        },
        EnvSpec {
            name: "dark-key-door",
            aliases: &["key-door", "DarkKeyDoor"],
            summary: "pick up an invisible key (+1 once), then stand on an invisible door (+1 per step)",
            params: key_door,
            max_episode_steps: None,
            build: |p| {
                Ok(Box::new(DarkKeyDoor::new(DarkKeyDoorConfig::from_params(p)?)?) as Box<dyn Env>)
            },
        },
        EnvSpec {
            name: "grid-world",
            aliases: &["gridworld"],
            summary: "a grid-world drawn as an ASCII map: # wall, . floor, S start, G goal, L lava",
            params: ascii::params(),
            max_episode_steps: None,
            build: |p| {
                Ok(Box::new(GridWorld::new(GridWorldConfig::from_params(p)?)?) as Box<dyn Env>)
            },
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moves_stop_at_the_border() {
        assert_eq!(moved((0, 0), 0, 3, 3), (0, 0));
        assert_eq!(moved((0, 0), 3, 3, 3), (0, 0));
        assert_eq!(moved((0, 0), 1, 3, 3), (1, 0));
        assert_eq!(moved((0, 0), 2, 3, 3), (0, 1));
        assert_eq!(moved((2, 2), 1, 3, 3), (2, 2));
        assert_eq!(moved((2, 2), 2, 3, 3), (2, 2));
        assert_eq!(moved((1, 1), 4, 3, 3), (1, 1));
    }
}
