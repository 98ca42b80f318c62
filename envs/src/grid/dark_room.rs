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
    /// Move the goal every this many episodes (0: never), through a sequence of cells
    /// fixed by `switch_seed` alone, so every copy in a vector environment sees the same
    /// task at the same time (episodes all last `max_steps`).
    pub switch_every: u64,
    /// Seed of the goal sequence.
    pub switch_seed: u64,
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
            switch_every: 0,
            switch_seed: 0,
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
            switch_every: p.usize("switch_every")? as u64,
            switch_seed: p.usize("switch_seed")? as u64,
        })
    }
}

/// RA-DT's split of goal cells into 80 training and 20 evaluation goals (Schmied et al.
/// 2024, `make_train_test_pos` in ml-jku/RA-DT): all cells `(x, y)`, x-major, shuffled by
/// NumPy's `RandomState(43).permutation`, the first 100 kept; the first 80 train, the
/// next 20 evaluate. Reproduced here bit for bit (a Mersenne Twister and NumPy's bounded
/// Fisher–Yates shuffle), so the lists equal those in RA-DT's configuration files for the
/// 10×10, 20×20 and 40×20 rooms. A grid with fewer than 100 cells splits all its cells 80/20.
pub fn goal_split(width: usize, height: usize) -> (Vec<Cell>, Vec<Cell>) {
    let mut cells: Vec<Cell> = (0..width)
        .flat_map(|x| (0..height).map(move |y| (x, y)))
        .collect();
    let mut mt = Mt19937::new(43);
    for i in (1..cells.len()).rev() {
        let j = mt.bounded(i as u32) as usize;
        cells.swap(i, j);
    }
    cells.truncate(100);
    let eval = cells.split_off(cells.len() * 4 / 5);
    (cells, eval)
}

/// The 32-bit Mersenne Twister, seeded as NumPy's `RandomState(seed)` (`init_genrand`).
struct Mt19937 {
    state: [u32; 624],
    index: usize,
}

impl Mt19937 {
    fn new(seed: u32) -> Self {
        let mut state = [0u32; 624];
        state[0] = seed;
        for i in 1..624 {
            state[i] = 1_812_433_253u32
                .wrapping_mul(state[i - 1] ^ (state[i - 1] >> 30))
                .wrapping_add(i as u32);
        }
        Mt19937 { state, index: 624 }
    }

    fn next_u32(&mut self) -> u32 {
        if self.index >= 624 {
            for i in 0..624 {
                let y = (self.state[i] & 0x8000_0000) | (self.state[(i + 1) % 624] & 0x7fff_ffff);
                let mut v = self.state[(i + 397) % 624] ^ (y >> 1);
                if y & 1 != 0 {
                    v ^= 0x9908_b0df;
                }
                self.state[i] = v;
            }
            self.index = 0;
        }
        let mut y = self.state[self.index];
        self.index += 1;
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c_5680;
        y ^= (y << 15) & 0xefc6_0000;
        y ^ (y >> 18)
    }

    /// A uniform integer in `0..=max` by masked rejection (NumPy's legacy `rk_interval`).
    fn bounded(&mut self, max: u32) -> u32 {
        if max == 0 {
            return 0;
        }
        let mask = u32::MAX >> max.leading_zeros();
        loop {
            let v = self.next_u32() & mask;
            if v <= max {
                return v;
            }
        }
    }
}

/// The goal of task `phase` of a switching room: phase 0 is the configured goal, each
/// later phase a cell other than the start and the previous phase's goal, drawn from a
/// hash of (`switch_seed`, phase).
pub fn switched_goal(config: &DarkRoomConfig, phase: u64) -> Cell {
    (1..=phase).fold(config.goal, |previous, k| next_goal(config, previous, k))
}

/// The goal of phase `phase ≥ 1` after the previous phase's goal `previous`.
fn next_goal(config: &DarkRoomConfig, previous: Cell, phase: u64) -> Cell {
    let cells = (config.width * config.height) as u64;
    let mut salt = 0u64;
    loop {
        let mut z = config
            .switch_seed
            .wrapping_add(phase.wrapping_mul(0x9E37_79B9_7F4A_7C15))
            .wrapping_add(salt.wrapping_mul(0xD1B5_4A32_D192_ED03));
        // splitmix64's finaliser.
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        let i = (z % cells) as usize;
        let cell = (i % config.width, i / config.width);
        if (cell != config.start && cell != previous) || cells <= 2 {
            return cell;
        }
        salt += 1;
    }
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
    /// Episodes begun since the last seeded reset (for `switch_every`).
    episodes: u64,
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
            episodes: 0,
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
            self.episodes = 0;
        }
        self.episodes += 1;
        if let Some(phase) = (self.episodes - 1).checked_div(self.config.switch_every) {
            // Episodes advance one at a time: step the sequence from the current goal
            // (a seeded reset starts it again).
            let starts_phase = (self.episodes - 1).is_multiple_of(self.config.switch_every);
            self.goal = match (phase, starts_phase) {
                (0, _) => self.config.goal,
                (p, true) => next_goal(&self.config, self.goal, p),
                _ => self.goal,
            };
        } else if self.config.random_goal {
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
    fn the_goal_split_is_ra_dts() {
        let (train, eval) = goal_split(10, 10);
        assert_eq!((train.len(), eval.len()), (80, 20));
        // RA-DT's configs/env_params/dark_room.yaml, as NumPy's RandomState(43) gives them.
        assert_eq!(
            &train[..6],
            &[(2, 0), (0, 2), (1, 5), (2, 2), (5, 7), (9, 1)]
        );
        let want = [
            (9, 0),
            (8, 4),
            (3, 4),
            (6, 5),
            (7, 5),
            (5, 0),
            (3, 5),
            (9, 8),
            (8, 7),
            (3, 0),
            (6, 6),
            (5, 9),
            (1, 7),
            (5, 1),
            (1, 6),
            (5, 8),
            (2, 1),
            (4, 9),
            (6, 4),
            (6, 8),
        ];
        assert_eq!(eval, want);
        let mut all: Vec<Cell> = train.iter().chain(&eval).copied().collect();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), 100);
        let (t, e) = goal_split(20, 20);
        assert_eq!(
            (t.len(), &t[..2], &e[..3], e[19]),
            (
                80,
                &[(2, 15), (13, 11)][..],
                &[(16, 12), (9, 15), (1, 6)][..],
                (0, 18)
            )
        );
        let (t, e) = goal_split(40, 20);
        assert_eq!(
            (&t[..2], &e[..2], e[19]),
            (&[(29, 6), (38, 6)][..], &[(14, 13), (31, 2)][..], (12, 9))
        );
        let (t, e) = goal_split(3, 3);
        assert_eq!((t.len(), e.len()), (7, 2));
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

    #[test]
    fn a_switching_room_moves_its_goal_every_n_episodes_the_same_in_every_copy() {
        let cfg = DarkRoomConfig {
            width: 5,
            height: 5,
            max_steps: 3,
            goal: (4, 4),
            switch_every: 2,
            switch_seed: 7,
            ..DarkRoomConfig::default()
        };
        let mut a = DarkRoom::new(cfg.clone()).unwrap();
        let mut b = DarkRoom::new(cfg.clone()).unwrap();
        a.reset(Some(1)).unwrap();
        b.reset(Some(99)).unwrap();
        let mut goals = vec![a.goal()];
        for episode in 1..12 {
            a.reset(None).unwrap();
            b.reset(None).unwrap();
            assert_eq!(a.goal(), b.goal(), "episode {episode}");
            assert_eq!(a.goal(), switched_goal(&cfg, episode / 2));
            goals.push(a.goal());
        }
        assert_eq!(goals[0], (4, 4));
        for pair in goals.chunks(2) {
            assert_eq!(pair[0], pair[1]);
        }
        for w in goals.chunks(2).collect::<Vec<_>>().windows(2) {
            assert_ne!(w[0][0], w[1][0], "the goal moves at every switch");
            assert_ne!(w[1][0], (0, 0), "never onto the start");
        }
        // A seeded reset starts the sequence again.
        a.reset(Some(1)).unwrap();
        assert_eq!(a.goal(), (4, 4));
        // Through the registry.
        let env = crate::make(
            "dark-room",
            &crate::Params::new()
                .with("size", 5i64)
                .with("switch_every", 2i64)
                .with("switch_seed", 7i64),
        );
        assert!(env.is_ok());
    }
}
