//! Tic-tac-toe: the agent plays one side against a built-in opponent.
//!
//! - [`game`]: the game alone — [`game::Board`], its rules, and perfect play from a
//!   solved table ([`game::best_moves`]) — for code that needs no environment (a
//!   terminal game against a trained agent, tests, opponents).
//! - [`TicTacToe`]: the environment, registered as `tictactoe` (alias `tic-tac-toe`);
//!   see its documentation for observations, rewards and the opponents.
//!
//! ```
//! use agentry_envs::tictactoe::{Opponent, TicTacToe, TicTacToeConfig};
//! use agentry_envs::{Action, EnvExt};
//!
//! let config = TicTacToeConfig { opponent: Opponent::Minimax, ..Default::default() };
//! let mut env = TicTacToe::new(config).unwrap();
//! let (obs, info) = env.reset(Some(7)).unwrap();
//! assert_eq!(obs.to_f32().len(), 27);
//! assert_eq!(info.action_mask, Some(vec![true; 9]));
//! let t = env.step(Action::Discrete(4)).unwrap(); // take the centre
//! assert_eq!(t.reward, 0.0);
//! assert!(!t.terminated && !t.truncated);
//! ```

mod env;
pub mod game;

pub use env::{IllegalMove, Opponent, TicTacToe, TicTacToeConfig};

use crate::env::Env;
use crate::error::Result;
use crate::params::{ParamKind, ParamSpec, ResolvedParams};
use crate::registry::EnvSpec;

/// The registry entries of this module: `tictactoe` (alias `tic-tac-toe`).
pub fn specs() -> Vec<EnvSpec> {
    vec![EnvSpec {
        name: "tictactoe",
        aliases: &["tic-tac-toe"],
        summary: "tic-tac-toe against a built-in opponent (random, minimax or eps-minimax), \
                  with legal-move masks",
        params: vec![
            ParamSpec::new(
                "opponent",
                ParamKind::Choice(&["random", "minimax", "eps-minimax"]),
                "random",
                "the built-in opponent: uniform random, perfect minimax, or minimax with random moves",
            ),
            ParamSpec::new(
                "epsilon",
                ParamKind::Float { min: 0.0, max: 1.0 },
                "0.2",
                "eps-minimax only: probability that the opponent moves uniformly at random",
            ),
            ParamSpec::new(
                "agent_first",
                ParamKind::Bool,
                "true",
                "the agent plays X and moves first (false: the opponent plays X and moves in reset)",
            ),
            ParamSpec::new(
                "illegal",
                ParamKind::Choice(&["lose", "error"]),
                "lose",
                "an occupied cell: lose (reward -1, terminated) or error (IllegalAction, state unchanged)",
            ),
        ],
        max_episode_steps: None,
        build,
    }]
}

fn build(p: &ResolvedParams) -> Result<Box<dyn Env>> {
    let opponent = match p.str("opponent")? {
        "random" => Opponent::Random,
        "minimax" => Opponent::Minimax,
        "eps-minimax" => Opponent::EpsMinimax {
            epsilon: p.float("epsilon")?,
        },
        other => return Err(p.error("opponent", format!("unknown opponent `{other}`"))),
    };
    let illegal = match p.str("illegal")? {
        "lose" => IllegalMove::Lose,
        "error" => IllegalMove::Error,
        other => return Err(p.error("illegal", format!("unknown policy `{other}`"))),
    };
    let config = TicTacToeConfig {
        opponent,
        agent_first: p.bool("agent_first")?,
        illegal,
    };
    Ok(Box::new(TicTacToe::new(config)?))
}
