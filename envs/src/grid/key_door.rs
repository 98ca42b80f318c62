use rand::RngExt;

use super::{
    Cell, NUM_ACTIONS, action_index, moved, position_space, read_size, render_image, render_text,
};
use crate::env::{Env, Out, RgbImage, Step};
use crate::error::{EnvError, Result};
use crate::params::ResolvedParams;
use crate::rng::{DEFAULT_SEED, EnvRng, rng_from_seed};
use crate::space::{Action, Space};

/// How a [`DarkKeyDoor`] room is laid out.
#[derive(Clone, Debug, PartialEq)]
pub struct DarkKeyDoorConfig {
    /// Grid width.
    pub width: usize,
    /// Grid height.
    pub height: usize,
    /// Steps per episode, after which the episode is truncated.
    pub max_steps: u64,
    /// Where each episode starts.
    pub start: Cell,
    /// The key's cell (ignored when `random`).
    pub key: Cell,
    /// The door's cell (ignored when `random`).
    pub door: Cell,
    /// Draw distinct key and door cells (not the start) at every reset.
    pub random: bool,
}

impl Default for DarkKeyDoorConfig {
    /// A 10×10 room, 100 steps, key in the top-right and door in the bottom-left corner.
    fn default() -> Self {
        DarkKeyDoorConfig {
            width: 10,
            height: 10,
            max_steps: 100,
            start: (0, 0),
            key: (9, 0),
            door: (0, 9),
            random: false,
        }
    }
}

impl DarkKeyDoorConfig {
    pub(super) fn from_params(p: &ResolvedParams) -> Result<Self> {
        let (width, height, max_steps) = read_size(p)?;
        let cfg = DarkKeyDoorConfig {
            width,
            height,
            max_steps,
            start: p.cell("start")?.unwrap_or((0, 0)),
            key: p.cell("key")?.unwrap_or((width - 1, 0)),
            door: p.cell("door")?.unwrap_or((0, height - 1)),
            random: p.bool("random")?,
        };
        for (name, (x, y)) in [("start", cfg.start), ("key", cfg.key), ("door", cfg.door)] {
            if x >= width || y >= height {
                return Err(p.error(
                    name,
                    format!("cell {x},{y} is outside the {width}×{height} grid"),
                ));
            }
        }
        if cfg.key == cfg.door {
            return Err(p.error("door", "the key and the door must be on different cells"));
        }
        Ok(cfg)
    }
}

/// Dark Key-Door (RA-DT's version of Algorithm Distillation's task): as in Dark-Room the
/// agent sees only its cell; it must first step on an invisible key (+1, once per
/// episode) and then on an invisible door, which pays +1 for every step spent on it
/// while holding the key (nothing before). Episodes are truncated after `max_steps`.
/// Whether the key is held is not observed: the agent must infer it from its history.
#[derive(Debug, Clone)]
pub struct DarkKeyDoor {
    config: DarkKeyDoorConfig,
    pos: Cell,
    key: Cell,
    door: Cell,
    has_key: bool,
    t: u64,
    rng: EnvRng,
    obs_space: Space,
    act_space: Space,
    ready: bool,
}

impl DarkKeyDoor {
    /// A room laid out by `config`.
    pub fn new(config: DarkKeyDoorConfig) -> Result<Self> {
        let (w, h) = (config.width, config.height);
        if w == 0 || h == 0 || config.max_steps == 0 {
            return Err(EnvError::Invalid(format!(
                "a {w}×{h} key-door room with {} steps",
                config.max_steps
            )));
        }
        for (what, (x, y)) in [
            ("start", config.start),
            ("key", config.key),
            ("door", config.door),
        ] {
            if x >= w || y >= h {
                return Err(EnvError::Invalid(format!(
                    "dark-key-door {what} {x},{y} is outside the {w}×{h} grid"
                )));
            }
        }
        if config.key == config.door {
            return Err(EnvError::Invalid(
                "the key and the door must be on different cells".into(),
            ));
        }
        Ok(DarkKeyDoor {
            pos: config.start,
            key: config.key,
            door: config.door,
            has_key: false,
            t: 0,
            rng: rng_from_seed(DEFAULT_SEED),
            obs_space: position_space(w, h),
            act_space: Space::Discrete(NUM_ACTIONS),
            ready: false,
            config,
        })
    }

    /// Whether the agent holds the key.
    pub fn has_key(&self) -> bool {
        self.has_key
    }

    /// `(key, door)` of the current episode.
    pub fn key_and_door(&self) -> (Cell, Cell) {
        (self.key, self.door)
    }

    fn random_cell(&mut self) -> Cell {
        (
            self.rng.random_range(0..self.config.width),
            self.rng.random_range(0..self.config.height),
        )
    }

    fn write(&self, out: Out<'_>) -> Result<()> {
        let obs = out.obs.f32()?;
        obs[0] = self.pos.0 as f32;
        obs[1] = self.pos.1 as f32;
        Ok(())
    }
}

impl Env for DarkKeyDoor {
    fn observation_space(&self) -> &Space {
        &self.obs_space
    }
    fn action_space(&self) -> &Space {
        &self.act_space
    }
    fn reset_into(&mut self, seed: Option<u64>, out: Out<'_>) -> Result<()> {
        if let Some(seed) = seed {
            self.rng = rng_from_seed(seed);
        }
        if self.config.random {
            // Rejection sampling: distinct cells, neither on the start.
            loop {
                let (k, d) = (self.random_cell(), self.random_cell());
                if k != d && k != self.config.start && d != self.config.start {
                    (self.key, self.door) = (k, d);
                    break;
                }
            }
        }
        self.pos = self.config.start;
        self.has_key = false;
        self.t = 0;
        self.ready = true;
        self.write(out)
    }
    #[inline]
    fn step_into(&mut self, action: Action<'_>, out: Out<'_>) -> Result<Step> {
        let a = action_index(&self.act_space, &action)?;
        if !self.ready {
            return Err(EnvError::NeedsReset(
                "before reset or after the episode ended",
            ));
        }
        self.pos = moved(self.pos, a, self.config.width, self.config.height);
        let mut reward = 0.0;
        if self.pos == self.key && !self.has_key {
            self.has_key = true;
            reward = 1.0;
        } else if self.pos == self.door && self.has_key {
            reward = 1.0;
        }
        self.t += 1;
        let truncated = self.t >= self.config.max_steps;
        self.ready = !truncated;
        self.write(out)?;
        Ok(Step {
            reward,
            terminated: false,
            truncated,
        })
    }
    fn render_ansi(&self) -> String {
        let key_shown = !self.has_key;
        let mut s = render_text(self.config.width, self.config.height, |c| {
            if c == self.pos {
                'A'
            } else if c == self.key && key_shown {
                'K'
            } else if c == self.door {
                'D'
            } else {
                '.'
            }
        });
        s.push_str(&format!(
            "step {}/{}, agent {:?}, {}\n",
            self.t,
            self.config.max_steps,
            self.pos,
            if self.has_key {
                "holding the key"
            } else {
                "no key yet"
            }
        ));
        s
    }
    fn render_rgb(&self) -> Option<RgbImage> {
        Some(render_image(
            self.config.width,
            self.config.height,
            8,
            |c| {
                if c == self.pos {
                    [40, 120, 255]
                } else if c == self.key && !self.has_key {
                    [230, 200, 40]
                } else if c == self.door {
                    [160, 90, 40]
                } else {
                    [30, 30, 30]
                }
            },
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::env::EnvExt;

    fn room() -> DarkKeyDoor {
        DarkKeyDoor::new(DarkKeyDoorConfig {
            width: 3,
            height: 1,
            max_steps: 10,
            start: (1, 0),
            key: (2, 0),
            door: (0, 0),
            random: false,
        })
        .unwrap()
    }

    #[test]
    fn the_door_pays_only_after_the_key() {
        let mut env = room();
        env.reset(Some(0)).unwrap();
        // Door first: nothing.
        assert_eq!(env.step(Action::Discrete(3)).unwrap().reward, 0.0);
        assert_eq!(env.step(Action::Discrete(4)).unwrap().reward, 0.0);
        // Key: +1 once.
        env.step(Action::Discrete(1)).unwrap();
        assert_eq!(env.step(Action::Discrete(1)).unwrap().reward, 1.0);
        assert!(env.has_key());
        assert_eq!(env.step(Action::Discrete(4)).unwrap().reward, 0.0);
        // Door with the key: +1 per step on it.
        env.step(Action::Discrete(3)).unwrap();
        assert_eq!(env.step(Action::Discrete(3)).unwrap().reward, 1.0);
        assert_eq!(env.step(Action::Discrete(4)).unwrap().reward, 1.0);
        let t = env.step(Action::Discrete(4)).unwrap();
        assert!(!t.terminated && !t.truncated);
        let t = env.step(Action::Discrete(4)).unwrap();
        assert!(t.truncated && !t.terminated && t.reward == 1.0);
        // A new episode needs the key again.
        env.reset(None).unwrap();
        assert!(!env.has_key());
        assert_eq!(env.step(Action::Discrete(3)).unwrap().reward, 0.0);
    }

    #[test]
    fn random_layouts_are_valid_and_seeded() {
        let cfg = DarkKeyDoorConfig {
            random: true,
            ..Default::default()
        };
        let mut a = DarkKeyDoor::new(cfg.clone()).unwrap();
        let mut b = DarkKeyDoor::new(cfg).unwrap();
        a.reset(Some(9)).unwrap();
        b.reset(Some(9)).unwrap();
        for _ in 0..50 {
            a.reset(None).unwrap();
            b.reset(None).unwrap();
            let (k, d) = a.key_and_door();
            assert_eq!((k, d), b.key_and_door());
            assert!(k != d && k != (0, 0) && d != (0, 0));
        }
        let e = crate::make("dark-key-door", &crate::Params::new().with("key", (0, 9)))
            .err()
            .unwrap();
        assert!(e.to_string().contains("different cells"), "{e}");
    }

    #[test]
    fn renders_hide_the_key_once_taken() {
        let mut env = room();
        env.reset(None).unwrap();
        assert!(env.render_ansi().starts_with("DAK\n"));
        env.step(Action::Discrete(1)).unwrap();
        assert!(env.render_ansi().starts_with("D.A\n"));
        assert!(env.render_rgb().is_some());
    }
}
