//! The tic-tac-toe environment.

use std::fmt;

use rand::{Rng, RngExt};

use super::game::{Board, Outcome, Player, best_moves};
use crate::env::{Env, ObsMut, Out, Step};
use crate::error::{EnvError, Result};
use crate::rng::{DEFAULT_SEED, EnvRng, rng_from_seed};
use crate::space::{Action, BoxSpace, Dtype, Space};

/// The registry name, used in parameter errors.
const NAME: &str = "tictactoe";

/// Length of the observation: three 3×3 planes.
const OBS_LEN: usize = 27;

/// The built-in opponent the agent plays against.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Opponent {
    /// A uniformly random legal move.
    Random,
    /// Perfect play: uniformly at random among [`best_moves`] (never loses; wins as fast
    /// as it can; when it cannot win, all draw-holding moves are equally likely).
    Minimax,
    /// With probability `epsilon` a uniformly random legal move, otherwise [`Opponent::Minimax`].
    EpsMinimax {
        /// Probability of a random move, in `[0, 1]`.
        epsilon: f64,
    },
}

impl Opponent {
    /// The opponent's move on `board` (its turn), drawn with `rng`; `None` if the game is over.
    #[inline]
    pub fn choose<R: Rng + ?Sized>(&self, board: &Board, rng: &mut R) -> Option<usize> {
        let moves = match *self {
            Opponent::Random => board.legal_moves(),
            Opponent::Minimax => best_moves(board),
            Opponent::EpsMinimax { epsilon } => {
                if rng.random::<f64>() < epsilon {
                    board.legal_moves()
                } else {
                    best_moves(board)
                }
            }
        };
        moves.choose(rng)
    }

    fn uses_table(&self) -> bool {
        !matches!(self, Opponent::Random)
    }
}

impl fmt::Display for Opponent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Opponent::Random => f.write_str("random"),
            Opponent::Minimax => f.write_str("minimax"),
            Opponent::EpsMinimax { epsilon } => write!(f, "eps-minimax (epsilon {epsilon})"),
        }
    }
}

/// What happens when the agent picks an occupied cell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IllegalMove {
    /// The episode ends: reward −1, `terminated = true` (the board is left as it was).
    Lose,
    /// `step` returns [`EnvError::IllegalAction`] and the state does not change.
    Error,
}

/// The settings of a [`TicTacToe`] environment.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TicTacToeConfig {
    /// The built-in opponent (default [`Opponent::Random`]).
    pub opponent: Opponent,
    /// The agent plays X and moves first (default `true`); when `false` the opponent
    /// plays X and makes its first move inside `reset`.
    pub agent_first: bool,
    /// What an occupied cell does (default [`IllegalMove::Lose`]).
    pub illegal: IllegalMove,
}

/// The defaults are chosen for learning from scratch: a random opponent gives wins,
/// draws and losses from the first episode (against perfect play the best return is 0,
/// so the signal is sparse), and losing on an illegal move keeps maskless agents and
/// vector environments running. Train against `EpsMinimax` or `Minimax` for a strong player.
impl Default for TicTacToeConfig {
    fn default() -> Self {
        TicTacToeConfig {
            opponent: Opponent::Random,
            agent_first: true,
            illegal: IllegalMove::Lose,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    NotStarted,
    Running,
    /// The game is over; `Some(cell)` when the agent lost by playing the occupied `cell`.
    Over(Option<usize>),
}

/// Tic-tac-toe against a built-in [`Opponent`].
///
/// - **Actions**: `Discrete(9)`, the cell `3 * row + col`. The legal-action mask
///   ([`Env::action_mask_len`] = 9) marks the empty cells; it is written on reset and on
///   every step, and is all `false` once the game is over.
/// - **Observations**: `Box(0, 1, [3, 3, 3], f32)`, three one-hot 3×3 planes from the
///   agent's point of view, channels first: plane 0 the agent's marks, plane 1 the
///   opponent's, plane 2 the empty cells (element `9 * plane + cell`). Being relative to
///   the agent, the same network serves as X or as O; flattened it is 27 inputs for an MLP.
/// - **Rewards**: +1 win, 0 draw, −1 loss, on the step that ends the game — also when
///   the opponent's reply wins or fills the board. Every other step gives 0. A step
///   is the agent's move followed by the opponent's reply.
/// - **Termination**: `terminated` when the game ends (or on an illegal move with
///   [`IllegalMove::Lose`]); never `truncated` (no time limit: a game lasts at most 5 steps).
///
/// The opponent draws its moves from the environment's generator, so a seed fixes the
/// whole trajectory for given agent actions.
#[derive(Clone, Debug)]
pub struct TicTacToe {
    config: TicTacToeConfig,
    board: Board,
    agent: Player,
    phase: Phase,
    rng: EnvRng,
    obs_space: Space,
    act_space: Space,
}

impl TicTacToe {
    /// An environment with these settings; [`EnvError::BadParam`] if `epsilon` is not in `[0, 1]`.
    pub fn new(config: TicTacToeConfig) -> Result<Self> {
        if let Opponent::EpsMinimax { epsilon } = config.opponent
            && !(0.0..=1.0).contains(&epsilon)
        {
            return Err(EnvError::bad_param(
                NAME,
                "epsilon",
                format!("expected a probability in [0, 1], got {epsilon}"),
            ));
        }
        if config.opponent.uses_table() {
            // Build the solved table now rather than inside the first step.
            let _ = best_moves(&Board::new());
        }
        Ok(TicTacToe {
            config,
            board: Board::new(),
            agent: if config.agent_first {
                Player::X
            } else {
                Player::O
            },
            phase: Phase::NotStarted,
            rng: rng_from_seed(DEFAULT_SEED),
            obs_space: Space::Box(BoxSpace::uniform(0.0, 1.0, &[3, 3, 3], Dtype::F32)),
            act_space: Space::Discrete(9),
        })
    }

    /// The settings.
    pub fn config(&self) -> &TicTacToeConfig {
        &self.config
    }

    /// The current position.
    pub fn board(&self) -> &Board {
        &self.board
    }

    /// The side the agent plays (X when `agent_first`).
    pub fn agent(&self) -> Player {
        self.agent
    }

    /// The reward of a finished game for the agent.
    fn reward(&self, outcome: Outcome) -> f64 {
        match outcome {
            Outcome::Win(p) if p == self.agent => 1.0,
            Outcome::Win(_) => -1.0,
            Outcome::Draw => 0.0,
        }
    }

    /// Fail before any state changes if the caller's buffers do not fit.
    fn check_buffers(out: &Out<'_>) -> Result<()> {
        let obs_len = match &out.obs {
            ObsMut::F32(x) => x.len(),
            ObsMut::U8(_) => {
                return Err(EnvError::Buffer(
                    "observation buffer holds u8 but tictactoe writes f32".into(),
                ));
            }
        };
        if obs_len != OBS_LEN || out.action_mask.len() != 9 {
            return Err(EnvError::Buffer(format!(
                "tictactoe needs an observation of {OBS_LEN} and a mask of 9, got {obs_len} and {}",
                out.action_mask.len()
            )));
        }
        Ok(())
    }

    fn write(&self, out: Out<'_>) -> Result<()> {
        let obs = out.obs.f32()?;
        let own = self.board.marks(self.agent);
        let other = self.board.marks(self.agent.other());
        let empty = self.board.empty_cells();
        for cell in 0..9 {
            obs[cell] = f32::from(u8::from(own.contains(cell)));
            obs[9 + cell] = f32::from(u8::from(other.contains(cell)));
            obs[18 + cell] = f32::from(u8::from(empty.contains(cell)));
        }
        let legal = match self.phase {
            Phase::Running => self.board.legal_moves(),
            _ => Default::default(),
        };
        legal.write_mask(out.action_mask);
        Ok(())
    }

    /// The opponent moves (the game is not over).
    fn opponent_moves(&mut self) {
        if let Some(cell) = self.config.opponent.choose(&self.board, &mut self.rng) {
            // `choose` only returns legal moves, so this cannot fail.
            let _ = self.board.play(cell);
        }
    }

    /// End the game if it is over; returns the terminal step.
    fn finish(&mut self, out: Out<'_>) -> Result<Option<Step>> {
        let Some(outcome) = self.board.outcome() else {
            return Ok(None);
        };
        self.phase = Phase::Over(None);
        self.write(out)?;
        Ok(Some(Step {
            reward: self.reward(outcome),
            terminated: true,
            truncated: false,
        }))
    }
}

impl Env for TicTacToe {
    fn observation_space(&self) -> &Space {
        &self.obs_space
    }

    fn action_space(&self) -> &Space {
        &self.act_space
    }

    fn action_mask_len(&self) -> usize {
        9
    }

    fn reset_into(&mut self, seed: Option<u64>, out: Out<'_>) -> Result<()> {
        Self::check_buffers(&out)?;
        if let Some(s) = seed {
            self.rng = rng_from_seed(s);
        }
        self.board = Board::new();
        if !self.config.agent_first {
            self.opponent_moves();
        }
        self.phase = Phase::Running;
        self.write(out)
    }

    fn step_into(&mut self, action: Action<'_>, mut out: Out<'_>) -> Result<Step> {
        self.act_space.check(&action)?;
        let Action::Discrete(cell) = action else {
            // Not reached: `check` accepts only discrete actions for a `Discrete` space.
            return Err(EnvError::InvalidAction {
                action: action.to_string(),
                space: self.act_space.to_string(),
            });
        };
        match self.phase {
            Phase::NotStarted => return Err(EnvError::NeedsReset("before the first reset")),
            Phase::Over(_) => return Err(EnvError::NeedsReset("after the episode ended")),
            Phase::Running => {}
        }
        Self::check_buffers(&out)?;
        if let Err(e) = self.board.play(cell) {
            return match self.config.illegal {
                IllegalMove::Error => Err(EnvError::IllegalAction(e.to_string())),
                IllegalMove::Lose => {
                    self.phase = Phase::Over(Some(cell));
                    self.write(out)?;
                    Ok(Step {
                        reward: -1.0,
                        terminated: true,
                        truncated: false,
                    })
                }
            };
        }
        if let Some(step) = self.finish(out.reborrow())? {
            return Ok(step);
        }
        self.opponent_moves();
        if let Some(step) = self.finish(out.reborrow())? {
            return Ok(step);
        }
        self.write(out)?;
        Ok(Step::running(0.0))
    }

    fn render_ansi(&self) -> String {
        let mut s = self.board.render();
        let who = |p: Player| {
            if p == self.agent {
                format!("{p} (agent)")
            } else {
                format!("{p} (opponent)")
            }
        };
        s.push_str(&format!(
            "agent {} vs {} opponent {}\n",
            self.agent,
            self.config.opponent,
            self.agent.other()
        ));
        let status = match self.phase {
            Phase::NotStarted => "not started: call reset".to_string(),
            Phase::Running => format!(
                "{} to move (action = 3 * row + col)",
                who(self.board.to_move())
            ),
            Phase::Over(Some(cell)) => {
                format!("game over: the agent lost by playing the occupied cell {cell}")
            }
            Phase::Over(None) => match self.board.outcome() {
                Some(Outcome::Win(p)) => format!("game over: {} wins", who(p)),
                _ => "game over: draw".to_string(),
            },
        };
        s.push_str(&status);
        s.push('\n');
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::env::EnvExt;
    use crate::params::Params;
    use crate::registry::make;

    fn env(opponent: Opponent, agent_first: bool, illegal: IllegalMove) -> TicTacToe {
        TicTacToe::new(TicTacToeConfig {
            opponent,
            agent_first,
            illegal,
        })
        .unwrap()
    }

    fn mask_of(info: &crate::env::Info) -> Vec<bool> {
        info.action_mask.clone().unwrap()
    }

    /// The observation decoded back into (own, opponent, empty) cell sets.
    fn planes(obs: &[f32]) -> [Vec<usize>; 3] {
        std::array::from_fn(|p| (0..9).filter(|&c| obs[9 * p + c] == 1.0).collect())
    }

    /// Check the observation and mask against the board after any reset or step.
    fn check_consistent(e: &TicTacToe, obs: &[f32], mask: &[bool], done: bool) {
        assert_eq!(obs.len(), 27);
        assert!(obs.iter().all(|&v| v == 0.0 || v == 1.0));
        let [own, other, empty] = planes(obs);
        let b = e.board();
        assert_eq!(own, b.marks(e.agent()).iter().collect::<Vec<_>>());
        assert_eq!(other, b.marks(e.agent().other()).iter().collect::<Vec<_>>());
        assert_eq!(empty, b.empty_cells().iter().collect::<Vec<_>>());
        assert_eq!(mask.len(), 9);
        for (c, &legal) in mask.iter().enumerate() {
            let expected = !done && b.get(c).is_none();
            assert_eq!(legal, expected, "cell {c}, done {done}\n{b}");
        }
        if !done {
            assert_eq!(
                b.to_move(),
                e.agent(),
                "the agent moves after every reset/step"
            );
            assert!(!b.is_over());
        }
    }

    /// Explore every sequence of agent moves (cloning the env at each branch) and check
    /// the opponent's replies, the rewards, the masks and the observations.
    fn explore(e: &TicTacToe, mask: &[bool], stats: &mut [usize; 3]) {
        for a in (0..9).filter(|&a| mask[a]) {
            let mut next = e.clone();
            let before = *next.board();
            let t = next.step(Action::Discrete(a)).unwrap();
            let m = mask_of(&t.info);
            check_consistent(&next, t.obs.as_f32().unwrap(), &m, t.terminated);
            assert!(!t.truncated);
            let after_agent = before.after(a).unwrap();
            let b = *next.board();
            if b != after_agent {
                // The opponent replied: exactly one new mark, one of its optimal moves
                // when it plays minimax.
                let reply = (b.marks(next.agent().other()).bits()
                    ^ after_agent.marks(next.agent().other()).bits())
                .trailing_zeros() as usize;
                assert_eq!(after_agent.after(reply).unwrap(), b);
                if next.config().opponent == Opponent::Minimax {
                    assert!(best_moves(&after_agent).contains(reply), "{after_agent}");
                }
            }
            if t.terminated {
                let expected = match b.outcome().unwrap() {
                    Outcome::Win(p) if p == next.agent() => 1.0,
                    Outcome::Win(_) => -1.0,
                    Outcome::Draw => 0.0,
                };
                assert_eq!(t.reward, expected, "{b}");
                stats[(t.reward + 1.0) as usize] += 1;
                let again = next.step(Action::Discrete(0));
                assert!(matches!(again, Err(EnvError::NeedsReset(_))));
            } else {
                assert_eq!(t.reward, 0.0);
                explore(&next, &m, stats);
            }
        }
    }

    #[test]
    fn minimax_never_loses_to_any_sequence_of_agent_moves() {
        for agent_first in [true, false] {
            let mut stats = [0usize; 3];
            for seed in 0..8 {
                let mut e = env(Opponent::Minimax, agent_first, IllegalMove::Error);
                let (obs, info) = e.reset(Some(seed)).unwrap();
                let mask = mask_of(&info);
                check_consistent(&e, obs.as_f32().unwrap(), &mask, false);
                explore(&e, &mask, &mut stats);
            }
            let [losses, draws, wins] = stats;
            assert_eq!(wins, 0, "agent_first {agent_first}: the agent beat minimax");
            assert!(losses > 0 && draws > 0, "{stats:?}");
        }
    }

    #[test]
    fn exhaustive_play_against_random_gives_every_reward() {
        for agent_first in [true, false] {
            let mut stats = [0usize; 3];
            let mut e = env(Opponent::Random, agent_first, IllegalMove::Lose);
            let (obs, info) = e.reset(Some(3)).unwrap();
            check_consistent(&e, obs.as_f32().unwrap(), &mask_of(&info), false);
            explore(&e, &mask_of(&info), &mut stats);
            assert!(stats.iter().all(|&n| n > 0), "{stats:?}");
        }
    }

    #[test]
    fn minimax_against_minimax_always_draws() {
        let mut agent_rng = rng_from_seed(99);
        for agent_first in [true, false] {
            let mut e = env(Opponent::Minimax, agent_first, IllegalMove::Error);
            e.reset(Some(5)).unwrap();
            for _ in 0..300 {
                loop {
                    let a = best_moves(e.board()).choose(&mut agent_rng).unwrap();
                    let t = e.step(Action::Discrete(a)).unwrap();
                    if t.terminated {
                        assert_eq!(t.reward, 0.0, "\n{}", e.board());
                        assert_eq!(e.board().outcome(), Some(Outcome::Draw));
                        break;
                    }
                }
                e.reset(None).unwrap();
            }
        }
    }

    #[test]
    fn the_opponents_winning_reply_gives_minus_one_on_that_step() {
        // X: 0, O must take the centre; X: 1, O must block at 2; X: 3 ignores the
        // threat on 2-4-6, and O's reply at 6 wins: −1 on the step of the agent's move 3.
        for seed in 0..10 {
            let mut e = env(Opponent::Minimax, true, IllegalMove::Error);
            e.reset(Some(seed)).unwrap();
            for a in [0, 1] {
                let t = e.step(Action::Discrete(a)).unwrap();
                assert_eq!((t.reward, t.terminated), (0.0, false));
            }
            assert_eq!(*e.board(), "XXO .O. ...".parse().unwrap());
            let t = e.step(Action::Discrete(3)).unwrap();
            assert_eq!((t.reward, t.terminated, t.truncated), (-1.0, true, false));
            assert_eq!(*e.board(), "XXO XO. O..".parse().unwrap());
            assert_eq!(mask_of(&t.info), vec![false; 9]);
            assert!(e.render_ansi().contains("O (opponent) wins"));
        }
    }

    #[test]
    fn agent_second_sees_the_opponents_opening() {
        let mut e = env(Opponent::Random, false, IllegalMove::Lose);
        assert_eq!(e.agent(), Player::O);
        let mut counts = [0usize; 9];
        for i in 0..1800 {
            let (obs, info) = e.reset(if i == 0 { Some(1) } else { None }).unwrap();
            let [own, other, empty] = planes(obs.as_f32().unwrap());
            assert!(own.is_empty());
            assert_eq!(other.len(), 1);
            assert_eq!(empty.len(), 8);
            assert_eq!(mask_of(&info).iter().filter(|&&m| m).count(), 8);
            assert!(!mask_of(&info)[other[0]]);
            counts[other[0]] += 1;
        }
        // A uniform opening: 200 expected per cell.
        assert!(
            counts.iter().all(|&n| (140..260).contains(&n)),
            "{counts:?}"
        );
    }

    #[test]
    fn eps_minimax_mixes_random_and_perfect_replies() {
        // Against a corner opening the only non-losing reply is the centre.
        let centre_rate = |epsilon: f64| {
            let mut e = env(Opponent::EpsMinimax { epsilon }, true, IllegalMove::Error);
            e.reset(Some(11)).unwrap();
            let mut centre = 0;
            for _ in 0..2000 {
                e.step(Action::Discrete(0)).unwrap();
                centre += usize::from(e.board().get(4) == Some(Player::O));
                e.reset(None).unwrap();
            }
            centre as f64 / 2000.0
        };
        assert_eq!(centre_rate(0.0), 1.0);
        let r = centre_rate(1.0);
        assert!((r - 1.0 / 8.0).abs() < 0.03, "{r}");
        let r = centre_rate(0.2);
        assert!((r - (0.8 + 0.2 / 8.0)).abs() < 0.03, "{r}");
        let e = TicTacToe::new(TicTacToeConfig {
            opponent: Opponent::EpsMinimax { epsilon: 1.5 },
            ..Default::default()
        });
        assert!(matches!(e, Err(EnvError::BadParam { .. })));
        let e = TicTacToe::new(TicTacToeConfig {
            opponent: Opponent::EpsMinimax { epsilon: f64::NAN },
            ..Default::default()
        });
        assert!(matches!(e, Err(EnvError::BadParam { .. })));
    }

    #[test]
    fn illegal_move_with_error_leaves_the_state_unchanged() {
        for agent_first in [true, false] {
            let mut e = env(Opponent::Random, agent_first, IllegalMove::Error);
            e.reset(Some(2)).unwrap();
            let free = e.board().legal_moves().nth(0).unwrap();
            let t = e.step(Action::Discrete(free)).unwrap();
            assert!(!t.terminated);
            let taken = (0..9).find(|&c| e.board().get(c).is_some()).unwrap();
            let (board, render) = (*e.board(), e.render_ansi());
            let err = e.step(Action::Discrete(taken)).unwrap_err();
            assert!(matches!(err, EnvError::IllegalAction(_)), "{err}");
            assert!(err.to_string().contains("taken"), "{err}");
            assert_eq!(*e.board(), board);
            assert_eq!(e.render_ansi(), render);
            // The episode goes on.
            let free = e.board().legal_moves().nth(0).unwrap();
            e.step(Action::Discrete(free)).unwrap();
        }
    }

    #[test]
    fn illegal_move_with_lose_ends_the_episode() {
        for agent_first in [true, false] {
            let mut e = env(Opponent::Minimax, agent_first, IllegalMove::Lose);
            e.reset(Some(4)).unwrap();
            let taken = if agent_first {
                e.step(Action::Discrete(8)).unwrap();
                8
            } else {
                (0..9).find(|&c| e.board().get(c).is_some()).unwrap()
            };
            let board = *e.board();
            let t = e.step(Action::Discrete(taken)).unwrap();
            assert_eq!((t.reward, t.terminated, t.truncated), (-1.0, true, false));
            assert_eq!(mask_of(&t.info), vec![false; 9]);
            assert_eq!(*e.board(), board);
            check_consistent(&e, t.obs.as_f32().unwrap(), &mask_of(&t.info), true);
            assert!(
                e.render_ansi().contains("occupied cell"),
                "{}",
                e.render_ansi()
            );
            assert!(matches!(
                e.step(Action::Discrete(0)),
                Err(EnvError::NeedsReset(_))
            ));
        }
    }

    #[test]
    fn actions_outside_the_space_and_steps_without_reset_are_errors() {
        let mut e = env(Opponent::Random, true, IllegalMove::Lose);
        assert!(matches!(
            e.step(Action::Discrete(0)),
            Err(EnvError::NeedsReset(_))
        ));
        e.reset(Some(0)).unwrap();
        let board = *e.board();
        for bad in [
            Action::Discrete(9),
            Action::MultiDiscrete(&[1]),
            Action::Continuous(&[0.0]),
        ] {
            assert!(matches!(e.step(bad), Err(EnvError::InvalidAction { .. })));
            assert_eq!(*e.board(), board);
        }
        e.step(Action::Discrete(0)).unwrap();
        // Wrong buffers are refused before anything changes.
        let board = *e.board();
        let mut obs = [0.0f32; 26];
        let mut mask = [false; 9];
        let out = Out {
            obs: ObsMut::F32(&mut obs),
            action_mask: &mut mask,
            extras: &mut [],
        };
        assert!(matches!(
            e.step_into(Action::Discrete(1), out),
            Err(EnvError::Buffer(_))
        ));
        assert_eq!(*e.board(), board);
    }

    /// A random legal-move agent; returns every observation, mask and reward.
    fn rollout(
        e: &mut TicTacToe,
        seed: Option<u64>,
        episodes: usize,
    ) -> Vec<(Vec<f32>, Vec<bool>, f64)> {
        let mut agent_rng = rng_from_seed(1234);
        let mut trace = Vec::new();
        for i in 0..episodes {
            let (obs, info) = e.reset(if i == 0 { seed } else { None }).unwrap();
            trace.push((obs.to_f32(), mask_of(&info), 0.0));
            loop {
                let a = e.board().legal_moves().choose(&mut agent_rng).unwrap();
                let t = e.step(Action::Discrete(a)).unwrap();
                trace.push((t.obs.to_f32(), mask_of(&t.info), t.reward));
                if t.terminated {
                    break;
                }
            }
        }
        trace
    }

    #[test]
    fn same_seed_same_trajectory() {
        for opponent in [
            Opponent::Random,
            Opponent::Minimax,
            Opponent::EpsMinimax { epsilon: 0.3 },
        ] {
            for agent_first in [true, false] {
                let new = || env(opponent, agent_first, IllegalMove::Lose);
                let a = rollout(&mut new(), Some(17), 40);
                assert_eq!(a, rollout(&mut new(), Some(17), 40));
                assert_ne!(a, rollout(&mut new(), Some(18), 40), "{opponent}");
                // Reseeding an used environment restarts the stream.
                let mut used = new();
                rollout(&mut used, Some(3), 5);
                assert_eq!(a, rollout(&mut used, Some(17), 40));
                // Never seeded = seeded with DEFAULT_SEED.
                assert_eq!(
                    rollout(&mut new(), None, 40),
                    rollout(&mut new(), Some(DEFAULT_SEED), 40)
                );
            }
        }
    }

    #[test]
    fn render_shows_labels_marks_and_turn() {
        let mut e = env(Opponent::Minimax, true, IllegalMove::Lose);
        assert!(e.render_ansi().contains("not started"));
        e.reset(Some(0)).unwrap();
        e.step(Action::Discrete(0)).unwrap();
        let r = e.render_ansi();
        assert!(r.starts_with("    0 1 2\n  0 X . .\n  1 . O .\n"), "{r}");
        assert!(r.contains("X (agent) to move"), "{r}");
        assert!(r.contains("minimax"), "{r}");
        let mut e = env(Opponent::Random, true, IllegalMove::Lose);
        e.reset(Some(0)).unwrap();
        loop {
            let a = e.board().legal_moves().nth(0).unwrap();
            if e.step(Action::Discrete(a)).unwrap().terminated {
                break;
            }
        }
        assert!(e.render_ansi().contains("game over"), "{}", e.render_ansi());
    }

    #[test]
    fn registry_builds_with_parameters() {
        let mut e = make("Tic-Tac-Toe", &Params::new()).unwrap();
        assert_eq!(e.action_space(), &Space::Discrete(9));
        assert_eq!(e.observation_space().shape(), vec![3, 3, 3]);
        assert_eq!(e.action_mask_len(), 9);
        assert!(e.render_ansi().contains("random"));
        e.reset(Some(0)).unwrap();
        let params = Params::parse_assignments(&[
            "opponent=eps-minimax",
            "epsilon=0.5",
            "agent_first=false",
            "illegal=error",
        ])
        .unwrap();
        let mut e = make("tictactoe", &params).unwrap();
        let (_, info) = e.reset(Some(0)).unwrap();
        let taken = mask_of(&info).iter().position(|&m| !m).unwrap();
        assert!(matches!(
            e.step(Action::Discrete(taken)),
            Err(EnvError::IllegalAction(_))
        ));
        assert!(e.render_ansi().contains("eps-minimax (epsilon 0.5)"));
        for bad in [
            "epsilon=1.5",
            "opponent=perfect",
            "illegal=ignore",
            "agent_first=maybe",
        ] {
            let params = Params::parse_assignments(&[bad]).unwrap();
            let err = make("tictactoe", &params).err().unwrap();
            assert!(matches!(err, EnvError::BadParam { .. }), "{bad}: {err}");
        }
    }
}
