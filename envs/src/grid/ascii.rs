use rand::RngExt;

use super::{Cell, NUM_ACTIONS, action_index, moved, position_space, render_image, render_text};
use crate::env::{Env, Out, RgbImage, Step};
use crate::error::{EnvError, Result};
use crate::params::{ParamKind, ParamSpec, ResolvedParams};
use crate::rng::{DEFAULT_SEED, EnvRng, rng_from_seed};
use crate::space::{Action, Space};

/// The largest map side accepted.
pub const MAX_SIDE: usize = 256;

/// The map used when none is given.
pub const DEFAULT_MAP: &str = "\
#########
#S..#...#
#.#.#.#.#
#.#...#L#
#...#..G#
#########";

/// One cell of a [`GridMap`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tile {
    /// `.` (and `S`, the start): walkable.
    Floor,
    /// `#`: blocks movement.
    Wall,
    /// `G`: ends the episode with the goal reward.
    Goal,
    /// `L`: lava or a trap; ends the episode with the lava reward.
    Lava,
}

/// A grid-world map parsed from ASCII art: `#` wall, `.` floor, `S` start (exactly one),
/// `G` goal (at least one), `L` lava. Rows are separated by newlines or `/`.
#[derive(Clone, Debug, PartialEq)]
pub struct GridMap {
    width: usize,
    height: usize,
    tiles: Vec<Tile>,
    start: Cell,
}

impl GridMap {
    /// Parse a map; errors name the line and column of the problem.
    ///
    /// ```
    /// use agentry_envs::grid::GridMap;
    /// let map = GridMap::parse("#####/#S.G#/#####").unwrap();
    /// assert_eq!((map.width(), map.height(), map.start()), (5, 3, (1, 1)));
    /// assert!(GridMap::parse("#S#/#.").unwrap_err().to_string().contains("line 2"));
    /// ```
    pub fn parse(text: &str) -> Result<Self> {
        if text.len() > MAX_SIDE * (MAX_SIDE + 2) {
            return Err(EnvError::Invalid(format!(
                "map of {} bytes is larger than {MAX_SIDE}×{MAX_SIDE}",
                text.len()
            )));
        }
        let lines: Vec<&str> = text
            .split(['\n', '/'])
            .map(|l| l.trim_end_matches(['\r', ' ', '\t']))
            .collect();
        let first = lines
            .iter()
            .position(|l| !l.is_empty())
            .ok_or_else(|| EnvError::Invalid("the map is empty".into()))?;
        let last = lines.iter().rposition(|l| !l.is_empty()).unwrap_or(first);
        let rows = &lines[first..=last];
        let width = rows[0].chars().count();
        if rows.len() > MAX_SIDE || width > MAX_SIDE {
            return Err(EnvError::Invalid(format!(
                "map is {width}×{} cells; at most {MAX_SIDE}×{MAX_SIDE}",
                rows.len()
            )));
        }
        let mut tiles = Vec::with_capacity(width * rows.len());
        let mut starts = Vec::new();
        let mut goals = 0;
        for (y, row) in rows.iter().enumerate() {
            let line = first + y + 1;
            let n = row.chars().count();
            if n != width {
                return Err(EnvError::Invalid(format!(
                    "map line {line} has {n} columns, the first row has {width}: every row must be as wide"
                )));
            }
            for (x, ch) in row.chars().enumerate() {
                tiles.push(match ch {
                    '#' => Tile::Wall,
                    '.' => Tile::Floor,
                    'S' => {
                        starts.push((x, y));
                        Tile::Floor
                    }
                    'G' => {
                        goals += 1;
                        Tile::Goal
                    }
                    'L' => Tile::Lava,
                    other => {
                        return Err(EnvError::Invalid(format!(
                            "map line {line}, column {}: unknown tile `{}`; valid tiles: # wall, . floor, S start, G goal, L lava",
                            x + 1,
                            other.escape_debug()
                        )));
                    }
                });
            }
        }
        let start = match starts.as_slice() {
            [s] => *s,
            [] => return Err(EnvError::Invalid("the map has no start `S`".into())),
            many => {
                return Err(EnvError::Invalid(format!(
                    "the map has {} starts `S`; it needs exactly one",
                    many.len()
                )));
            }
        };
        if goals == 0 {
            return Err(EnvError::Invalid("the map has no goal `G`".into()));
        }
        Ok(GridMap {
            width,
            height: rows.len(),
            tiles,
            start,
        })
    }

    /// Width in cells.
    pub fn width(&self) -> usize {
        self.width
    }

    /// Height in cells.
    pub fn height(&self) -> usize {
        self.height
    }

    /// The start cell.
    pub fn start(&self) -> Cell {
        self.start
    }

    /// The tile at `(x, y)` (outside the map: a wall).
    pub fn tile(&self, (x, y): Cell) -> Tile {
        if x < self.width && y < self.height {
            self.tiles[y * self.width + x]
        } else {
            Tile::Wall
        }
    }
}

/// How a [`GridWorld`] behaves.
#[derive(Clone, Debug, PartialEq)]
pub struct GridWorldConfig {
    /// The map.
    pub map: GridMap,
    /// Steps per episode, after which the episode is truncated.
    pub max_steps: u64,
    /// Reward of every step that reaches neither a goal nor lava.
    pub step_reward: f64,
    /// Reward for reaching a goal (the episode terminates).
    pub goal_reward: f64,
    /// Reward for stepping into lava (the episode terminates).
    pub lava_reward: f64,
    /// Probability that a random action is taken instead of the chosen one.
    pub slip: f64,
}

impl GridWorldConfig {
    /// The defaults (100 steps, rewards 0 / +1 / −1, no slip) on `map`.
    pub fn new(map: GridMap) -> Self {
        GridWorldConfig {
            map,
            max_steps: 100,
            step_reward: 0.0,
            goal_reward: 1.0,
            lava_reward: -1.0,
            slip: 0.0,
        }
    }

    pub(super) fn from_params(p: &ResolvedParams) -> Result<Self> {
        let text = match (p.opt_str("map")?, p.opt_str("map_file")?) {
            (Some(_), Some(_)) => {
                return Err(p.error("map_file", "give either map or map_file, not both"));
            }
            (Some(m), None) => m.to_string(),
            (None, Some(path)) => {
                let meta = std::fs::metadata(path)
                    .map_err(|e| p.error("map_file", format!("cannot read {path}: {e}")))?;
                if meta.len() > (MAX_SIDE * (MAX_SIDE + 2)) as u64 {
                    return Err(p.error(
                        "map_file",
                        format!("{path} is larger than a {MAX_SIDE}×{MAX_SIDE} map"),
                    ));
                }
                std::fs::read_to_string(path)
                    .map_err(|e| p.error("map_file", format!("cannot read {path}: {e}")))?
            }
            (None, None) => DEFAULT_MAP.to_string(),
        };
        let which = if p.is_set("map_file") {
            "map_file"
        } else {
            "map"
        };
        let map = GridMap::parse(&text).map_err(|e| p.error(which, e.to_string()))?;
        Ok(GridWorldConfig {
            map,
            max_steps: p.usize("max_steps")? as u64,
            step_reward: p.float("step_reward")?,
            goal_reward: p.float("goal_reward")?,
            lava_reward: p.float("lava_reward")?,
            slip: p.float("slip")?,
        })
    }
}

pub(super) fn params() -> Vec<ParamSpec> {
    let reward = ParamKind::Float {
        min: -1e6,
        max: 1e6,
    };
    vec![
        ParamSpec::optional(
            "map",
            ParamKind::Text,
            "the map as ASCII art, rows separated by newlines or `/` (default: a 9×6 maze)",
        ),
        ParamSpec::optional("map_file", ParamKind::Text, "a file holding the map"),
        ParamSpec::new(
            "max_steps",
            ParamKind::Int {
                min: 1,
                max: 1_000_000,
            },
            "100",
            "steps per episode (then truncated)",
        ),
        ParamSpec::new(
            "step_reward",
            reward.clone(),
            "0.0",
            "reward of an ordinary step",
        ),
        ParamSpec::new(
            "goal_reward",
            reward.clone(),
            "1.0",
            "reward for reaching a goal (terminates)",
        ),
        ParamSpec::new(
            "lava_reward",
            reward,
            "-1.0",
            "reward for stepping into lava (terminates)",
        ),
        ParamSpec::new(
            "slip",
            ParamKind::Float { min: 0.0, max: 1.0 },
            "0.0",
            "probability of a random action instead of the chosen one",
        ),
    ]
}

/// A grid-world on an ASCII [`GridMap`]: walls block, a goal or lava ends the episode.
#[derive(Debug, Clone)]
pub struct GridWorld {
    config: GridWorldConfig,
    pos: Cell,
    t: u64,
    rng: EnvRng,
    obs_space: Space,
    act_space: Space,
    ready: bool,
}

impl GridWorld {
    /// A grid-world behaving as `config` says (rewards must be finite, slip in [0, 1]).
    pub fn new(config: GridWorldConfig) -> Result<Self> {
        let c = &config;
        if ![c.step_reward, c.goal_reward, c.lava_reward]
            .iter()
            .all(|r| r.is_finite())
            || !(0.0..=1.0).contains(&c.slip)
            || c.max_steps == 0
        {
            return Err(EnvError::Invalid(format!(
                "grid-world rewards must be finite, slip in [0, 1] and max_steps ≥ 1 (got {c:?})"
            )));
        }
        let (w, h) = (c.map.width(), c.map.height());
        Ok(GridWorld {
            pos: c.map.start(),
            t: 0,
            rng: rng_from_seed(DEFAULT_SEED),
            obs_space: position_space(w, h),
            act_space: Space::Discrete(NUM_ACTIONS),
            ready: false,
            config,
        })
    }

    /// The map.
    pub fn map(&self) -> &GridMap {
        &self.config.map
    }

    /// The agent's cell.
    pub fn position(&self) -> Cell {
        self.pos
    }

    fn write(&self, out: Out<'_>) -> Result<()> {
        let obs = out.obs.f32()?;
        obs[0] = self.pos.0 as f32;
        obs[1] = self.pos.1 as f32;
        Ok(())
    }
}

impl Env for GridWorld {
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
        self.pos = self.config.map.start();
        self.t = 0;
        self.ready = true;
        self.write(out)
    }
    #[inline]
    fn step_into(&mut self, action: Action<'_>, out: Out<'_>) -> Result<Step> {
        let mut a = action_index(&self.act_space, &action)?;
        if !self.ready {
            return Err(EnvError::NeedsReset(
                "before reset or after the episode ended",
            ));
        }
        if self.config.slip > 0.0 && self.rng.random::<f64>() < self.config.slip {
            a = self.rng.random_range(0..NUM_ACTIONS);
        }
        let map = &self.config.map;
        let next = moved(self.pos, a, map.width(), map.height());
        if map.tile(next) != Tile::Wall {
            self.pos = next;
        }
        let (reward, terminated) = match map.tile(self.pos) {
            Tile::Goal => (self.config.goal_reward, true),
            Tile::Lava => (self.config.lava_reward, true),
            Tile::Floor | Tile::Wall => (self.config.step_reward, false),
        };
        self.t += 1;
        let truncated = self.t >= self.config.max_steps;
        self.ready = !(terminated || truncated);
        self.write(out)?;
        Ok(Step {
            reward,
            terminated,
            truncated,
        })
    }
    fn render_ansi(&self) -> String {
        let map = &self.config.map;
        let mut s = render_text(map.width(), map.height(), |c| {
            if c == self.pos {
                'A'
            } else {
                match map.tile(c) {
                    Tile::Wall => '#',
                    Tile::Floor => '.',
                    Tile::Goal => 'G',
                    Tile::Lava => 'L',
                }
            }
        });
        s.push_str(&format!(
            "step {}/{}, agent {:?}\n",
            self.t, self.config.max_steps, self.pos
        ));
        s
    }
    fn render_rgb(&self) -> Option<RgbImage> {
        let map = &self.config.map;
        Some(render_image(map.width(), map.height(), 8, |c| {
            if c == self.pos {
                return [40, 120, 255];
            }
            match map.tile(c) {
                Tile::Wall => [110, 110, 110],
                Tile::Floor => [30, 30, 30],
                Tile::Goal => [40, 200, 80],
                Tile::Lava => [220, 60, 30],
            }
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::env::EnvExt;

    #[test]
    fn parse_errors_say_what_and_where() {
        let cases = [
            ("", "empty"),
            ("#S.G#/#..#", "line 2 has 4 columns"),
            ("#S.G#/#.x.#", "line 2, column 3: unknown tile `x`"),
            ("#..G#", "no start"),
            ("#S.S#/#.G.#", "2 starts"),
            ("#S..#", "no goal"),
        ];
        for (map, want) in cases {
            let err = GridMap::parse(map).unwrap_err().to_string();
            assert!(err.contains(want), "{map:?}: {err}");
        }
        let huge = "#".repeat(300) + "/S/G";
        assert!(
            GridMap::parse(&huge)
                .unwrap_err()
                .to_string()
                .contains("at most")
        );
        let huge = "S".repeat(100_000);
        assert!(GridMap::parse(&huge).is_err());
    }

    #[test]
    fn a_custom_map_episode() {
        // Newline-separated, with surrounding blank lines and trailing spaces.
        let map = GridMap::parse("\n#####  \n#S.G#\n#.L.#\n#####\n").unwrap();
        let mut env = GridWorld::new(GridWorldConfig {
            step_reward: -0.1,
            ..GridWorldConfig::new(map.clone())
        })
        .unwrap();
        let (obs, _) = env.reset(Some(1)).unwrap();
        assert_eq!(obs.to_f32(), vec![1.0, 1.0]);
        let t = env.step(Action::Discrete(0)).unwrap(); // into the wall
        assert_eq!((t.obs.to_f32(), t.reward), (vec![1.0, 1.0], -0.1));
        env.step(Action::Discrete(1)).unwrap();
        let t = env.step(Action::Discrete(1)).unwrap();
        assert!(t.terminated && !t.truncated && t.reward == 1.0);
        assert!(matches!(
            env.step(Action::Discrete(4)),
            Err(EnvError::NeedsReset(_))
        ));
        // Lava ends the episode with its reward.
        let mut env = GridWorld::new(GridWorldConfig::new(map)).unwrap();
        env.reset(None).unwrap();
        env.step(Action::Discrete(1)).unwrap();
        let t = env.step(Action::Discrete(2)).unwrap();
        assert!(t.terminated && t.reward == -1.0);
        assert!(env.render_ansi().contains("#.A.#"));
    }

    #[test]
    fn slipping_follows_the_seed_and_time_limit_truncates() {
        let map = GridMap::parse(DEFAULT_MAP).unwrap();
        let cfg = GridWorldConfig {
            slip: 0.5,
            max_steps: 30,
            ..GridWorldConfig::new(map)
        };
        let run = |seed| {
            let mut env = GridWorld::new(cfg.clone()).unwrap();
            env.reset(Some(seed)).unwrap();
            (0..30)
                .map(|_| env.step(Action::Discrete(4)).unwrap())
                .map(|t| (t.obs.to_f32(), t.truncated))
                .collect::<Vec<_>>()
        };
        let a = run(7);
        assert_eq!(a, run(7));
        assert!(
            a.iter().any(|(o, _)| o != &vec![1.0, 1.0]),
            "slipping moves the agent"
        );
        assert!(a.last().unwrap().1);
    }

    #[test]
    fn registry_reads_maps_from_text_and_files() {
        let env = crate::make(
            "grid-world",
            &crate::Params::new().with("map", "###/#S#/#G#/###"),
        )
        .unwrap();
        assert_eq!(
            env.observation_space().to_string(),
            "Box([0.0, 0.0], [2.0, 3.0], [2], f32)"
        );
        let path = std::env::temp_dir().join(format!("agentry-map-{}.txt", std::process::id()));
        std::fs::write(&path, "####\n#SG#\n####\n").unwrap();
        let p = crate::Params::new().with("map_file", path.to_string_lossy().as_ref());
        assert!(crate::make("grid-world", &p).is_ok());
        std::fs::remove_file(&path).unwrap();
        let e = crate::make("grid-world", &p).err().unwrap().to_string();
        assert!(e.contains("map_file") && e.contains("cannot read"), "{e}");
        let e = crate::make("grid-world", &crate::Params::new().with("map", "#S#"))
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("no goal"), "{e}");
    }
}
