use rand::RngExt;

use super::{
    Cell, NUM_ACTIONS, action_index, moved, position_space, read_size, render_image, render_text,
};
use crate::env::{Env, Out, RgbImage, Step};
use crate::error::{EnvError, Result};
use crate::params::ResolvedParams;
use crate::rng::{DEFAULT_SEED, EnvRng, rng_from_seed};
use crate::space::{Action, Space};

/// How a [`DarkRoom`] is laid out.
#[derive(Clone, Debug, PartialEq)]
pub struct DarkRoomConfig {
    /// Grid width (10 in RA-DT's default room; 20 and 40 in the larger ones).
    pub width: usize,
    /// Grid height.
    pub height: usize,
    /// Steps per episode, after which the episode is truncated.
    pub max_steps: u64,
    /// Where each episode starts.
    pub start: Cell,
    /// The goal cell (ignored when `random_goal`).
    pub goal: Cell,
    /// Draw the goal uniformly from all cells at every reset.
    pub random_goal: bool,
}

impl Default for DarkRoomConfig {
    /// RA-DT's 10×10 room: start (0, 0), goal in the far corner, 100 steps.
    fn default() -> Self {
        DarkRoomConfig {
            width: 10,
            height: 10,
            max_steps: 100,
            start: (0, 0),
            goal: (9, 9),
            random_goal: false,
        }
    }
}

impl DarkRoomConfig {
    /// A `size × size` room with the goal at `goal` (RA-DT: 100 steps for 10×10).
    pub fn with_goal(size: usize, goal: Cell) -> Self {
        DarkRoomConfig {
            width: size,
            height: size,
            max_steps: (size * size) as u64,
            goal,
            ..Self::default()
        }
    }

    pub(super) fn from_params(p: &ResolvedParams) -> Result<Self> {
        let (width, height, max_steps) = read_size(p)?;
        let goal = p.cell("goal")?.unwrap_or((width - 1, height - 1));
        let start = p.cell("start")?.unwrap_or((0, 0));
        for (name, (x, y)) in [("goal", goal), ("start", start)] {
            if x >= width || y >= height {
                return Err(p.error(
                    name,
                    format!("cell {x},{y} is outside the {width}×{height} grid"),
                ));
            }
        }
        Ok(DarkRoomConfig {
            width,
            height,
            max_steps,
            start,
            goal,
            random_goal: p.bool("random_goal")?,
        })
    }
}

/// The standard split of a grid's goal cells into training and evaluation goals:
/// 80% / 20% of all `width × height` cells (80 / 20 for the 10×10 room), after a
/// shuffle with a fixed generator, so every user gets the same split.
///
/// RA-DT trains on 80 goals and evaluates on 20 unseen ones; its exact lists live in
/// its configuration files, which we do not reproduce — this split is agentry's own,
/// stable across versions (changing it would change published results).
pub fn goal_split(width: usize, height: usize) -> (Vec<Cell>, Vec<Cell>) {
    let mut cells: Vec<Cell> = (0..height)
        .flat_map(|y| (0..width).map(move |x| (x, y)))
        .collect();
    let mut rng = rng_from_seed(0x0D42_600A_1500);
    for i in (1..cells.len()).rev() {
        let j = rng.random_range(0..=i);
        cells.swap(i, j);
    }
    let train = cells.len() * 4 / 5;
    let eval = cells.split_off(train);
    (cells, eval)
}

/// Dark-Room (Laskin et al. 2022; RA-DT's version, Schmied et al. 2024): the agent sees
/// only its own cell and must find an invisible goal; every step spent on the goal gives
/// +1. Episodes never terminate; they are truncated after `max_steps`.
#[derive(Debug, Clone)]
pub struct DarkRoom {
    config: DarkRoomConfig,
    pos: Cell,
    goal: Cell,
    t: u64,
    rng: EnvRng,
    obs_space: Space,
    act_space: Space,
    ready: bool,
}

impl DarkRoom {
    /// A room laid out by `config` (an out-of-grid goal or start is an error).
    pub fn new(config: DarkRoomConfig) -> Result<Self> {
        let (w, h) = (config.width, config.height);
        if w == 0 || h == 0 || config.max_steps == 0 {
            return Err(EnvError::Invalid(format!(
                "a {w}×{h} dark room with {} steps",
                config.max_steps
            )));
        }
        for (what, (x, y)) in [("goal", config.goal), ("start", config.start)] {
            if x >= w || y >= h {
                return Err(EnvError::Invalid(format!(
                    "dark-room {what} {x},{y} is outside the {w}×{h} grid"
                )));
            }
        }
        Ok(DarkRoom {
            pos: config.start,
            goal: config.goal,
            t: 0,
            rng: rng_from_seed(DEFAULT_SEED),
            obs_space: position_space(w, h),
            act_space: Space::Discrete(NUM_ACTIONS),
            ready: false,
            config,
        })
    }

    /// The goal of the current episode.
    pub fn goal(&self) -> Cell {
        self.goal
    }

    /// The agent's cell.
    pub fn position(&self) -> Cell {
        self.pos
    }

    /// The layout.
    pub fn config(&self) -> &DarkRoomConfig {
        &self.config
    }

    fn write(&self, out: Out<'_>) -> Result<()> {
        let obs = out.obs.f32()?;
        obs[0] = self.pos.0 as f32;
        obs[1] = self.pos.1 as f32;
        Ok(())
    }
}

impl Env for DarkRoom {
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
        if self.config.random_goal {
            self.goal = (
                self.rng.random_range(0..self.config.width),
                self.rng.random_range(0..self.config.height),
            );
        }
        self.pos = self.config.start;
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
        self.t += 1;
        let truncated = self.t >= self.config.max_steps;
        self.ready = !truncated;
        self.write(out)?;
        Ok(Step {
            reward: if self.pos == self.goal { 1.0 } else { 0.0 },
            terminated: false,
            truncated,
        })
    }
    fn render_ansi(&self) -> String {
        let mut s = render_text(self.config.width, self.config.height, |c| {
            if c == self.pos {
                'A'
            } else if c == self.goal {
                'G'
            } else {
                '.'
            }
        });
        s.push_str(&format!(
            "step {}/{}, agent {:?}, goal {:?}\n",
            self.t, self.config.max_steps, self.pos, self.goal
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
                } else if c == self.goal {
                    [40, 200, 80]
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

    #[test]
    fn staying_on_the_goal_pays_every_step_and_the_episode_is_truncated() {
        let mut env = DarkRoom::new(DarkRoomConfig {
            goal: (1, 0),
            max_steps: 5,
            ..Default::default()
        })
        .unwrap();
        let (obs, _) = env.reset(Some(0)).unwrap();
        assert_eq!(obs.to_f32(), vec![0.0, 0.0]);
        let t = env.step(Action::Discrete(1)).unwrap();
        assert_eq!((t.obs.to_f32(), t.reward), (vec![1.0, 0.0], 1.0));
        let mut total = t.reward;
        for i in 0..4 {
            let t = env.step(Action::Discrete(4)).unwrap();
            total += t.reward;
            assert!(!t.terminated);
            assert_eq!(t.truncated, i == 3);
        }
        assert_eq!(total, 5.0);
        assert!(matches!(
            env.step(Action::Discrete(4)),
            Err(EnvError::NeedsReset(_))
        ));
    }

    #[test]
    fn walls_hold_the_agent_and_moves_follow_the_convention() {
        let mut env = DarkRoom::new(DarkRoomConfig::default()).unwrap();
        env.reset(None).unwrap();
        assert_eq!(
            env.step(Action::Discrete(0)).unwrap().obs.to_f32(),
            vec![0.0, 0.0]
        );
        assert_eq!(
            env.step(Action::Discrete(3)).unwrap().obs.to_f32(),
            vec![0.0, 0.0]
        );
        assert_eq!(
            env.step(Action::Discrete(2)).unwrap().obs.to_f32(),
            vec![0.0, 1.0]
        );
        assert_eq!(
            env.step(Action::Discrete(1)).unwrap().obs.to_f32(),
            vec![1.0, 1.0]
        );
        for _ in 0..20 {
            env.step(Action::Discrete(1)).unwrap();
        }
        assert_eq!(env.position(), (9, 1));
        assert!(env.step(Action::Discrete(5)).is_err());
    }

    #[test]
    fn the_goal_split_is_80_20_disjoint_and_covers_every_cell() {
        let (train, eval) = goal_split(10, 10);
        assert_eq!((train.len(), eval.len()), (80, 20));
        let mut all: Vec<Cell> = train.iter().chain(&eval).copied().collect();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), 100);
        assert_eq!(goal_split(10, 10), (train, eval), "the split is fixed");
        let (t, e) = goal_split(40, 20);
        assert_eq!((t.len(), e.len()), (640, 160));
    }

    #[test]
    fn random_goals_follow_the_seed_and_bad_layouts_are_errors() {
        let cfg = DarkRoomConfig {
            random_goal: true,
            ..Default::default()
        };
        let mut a = DarkRoom::new(cfg.clone()).unwrap();
        let mut b = DarkRoom::new(cfg).unwrap();
        let goals = |env: &mut DarkRoom, seed| {
            env.reset(Some(seed)).unwrap();
            (0..20)
                .map(|_| {
                    env.reset(None).unwrap();
                    env.goal()
                })
                .collect::<Vec<_>>()
        };
        let ga = goals(&mut a, 3);
        assert_eq!(ga, goals(&mut b, 3));
        assert!(ga.iter().collect::<std::collections::HashSet<_>>().len() > 5);
        assert!(
            DarkRoom::new(DarkRoomConfig {
                goal: (10, 0),
                ..Default::default()
            })
            .is_err()
        );
        let e = crate::make("dark-room", &crate::Params::new().with("goal", (3, 12)))
            .err()
            .unwrap();
        assert!(
            e.to_string().contains("goal") && e.to_string().contains("outside"),
            "{e}"
        );
        let env = crate::make(
            "dark-room",
            &crate::Params::new()
                .with("width", 40usize)
                .with("height", 20usize),
        )
        .unwrap();
        assert_eq!(
            env.observation_space().to_string(),
            "Box([0.0, 0.0], [39.0, 19.0], [2], f32)"
        );
    }

    #[test]
    fn renders_show_agent_and_goal() {
        let mut env = DarkRoom::new(DarkRoomConfig::with_goal(4, (2, 3))).unwrap();
        env.reset(None).unwrap();
        let text = env.render_ansi();
        assert!(
            text.starts_with("A...\n") && text.contains("..G."),
            "{text}"
        );
        let img = env.render_rgb().unwrap();
        assert_eq!(
            (img.width, img.height, img.pixels.len()),
            (32, 32, 32 * 32 * 3)
        );
    }
}
