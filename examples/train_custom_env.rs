//! Train your own game with agentry from Rust code, then play it with the trained agent.
//!
//! The game is "catch": a ball falls down a `width`-column, 6-row grid from a random
//! column; the paddle on the bottom row moves left, stays or moves right each step; +1
//! for catching the ball, −1 for missing it. A random paddle catches about one ball in
//! `width`; a good one catches nearly all.
//!
//! ```text
//! cargo run --release --example train_custom_env                  # train, then play
//! cargo run --release --example train_custom_env -- train --env catch --set env.width=7 --steps 30000
//! cargo run --release --example train_custom_env -- envs          # `catch` is listed
//! ```
//!
//! Three steps make a game trainable, none of them a fork of agentry:
//! 1. implement [`Env`] for it (spaces, `reset_into`, `step_into`, `render_ansi`);
//! 2. [`register`] it under a name, with typed parameters;
//! 3. train it: here with [`train`] from Rust; or make this program the `agent` command
//!    line (`agentry::cli::main_with_args`) so that `agent train --env catch ...`,
//!    `agent eval`, `agent plot` and every other command know the game.
//!
//! With no arguments it trains PPO for 30,000 steps (seed 1) into
//! `target/example-runs/catch`, loads the run with [`Agent`] and plays 200 games,
//! printing the catch rate of the trained agent and of a random paddle. It exits with
//! an error if the agent catches fewer than 90% of the balls.

use std::path::PathBuf;
use std::process::ExitCode;

use agentry::Agent;
use agentry::agents::config::{ConfigRequest, resolve};
use agentry::agents::train::{Silent, Start, train};
use agentry::envs::registry::{EnvSpec, register};
use agentry::envs::{
    Action, BoxSpace, Env, EnvError, EnvExt, EnvRng, ParamKind, ParamSpec, Params, ResolvedParams,
    Space, Step, rng_from_seed,
};
use agentry::envs::{ObsMut, Out};
use rand::RngExt;

const ROWS: i64 = 6;

/// The game. Observations: the ball's column and row and the paddle's column, scaled
/// to [0, 1]. Actions: 0 left, 1 stay, 2 right.
struct Catch {
    width: i64,
    ball: (i64, i64),
    paddle: i64,
    rng: EnvRng,
    obs_space: Space,
    act_space: Space,
}

impl Catch {
    fn new(width: i64) -> Catch {
        Catch {
            width,
            ball: (0, 0),
            paddle: width / 2,
            rng: rng_from_seed(0),
            obs_space: Space::Box(BoxSpace::new(vec![0.0; 3], vec![1.0; 3])),
            act_space: Space::Discrete(3),
        }
    }

    fn write(&self, out: Out<'_>) -> Result<(), EnvError> {
        let ObsMut::F32(obs) = out.obs else {
            return Err(EnvError::Buffer("catch writes f32 observations".into()));
        };
        let w = (self.width - 1) as f32;
        obs.copy_from_slice(&[
            self.ball.0 as f32 / w,
            self.ball.1 as f32 / (ROWS - 1) as f32,
            self.paddle as f32 / w,
        ]);
        Ok(())
    }
}

impl Env for Catch {
    fn observation_space(&self) -> &Space {
        &self.obs_space
    }
    fn action_space(&self) -> &Space {
        &self.act_space
    }
    fn reset_into(&mut self, seed: Option<u64>, out: Out<'_>) -> Result<(), EnvError> {
        if let Some(seed) = seed {
            self.rng = rng_from_seed(seed);
        }
        self.ball = (self.rng.random_range(0..self.width), 0);
        self.paddle = self.width / 2;
        self.write(out)
    }
    fn step_into(&mut self, action: Action<'_>, out: Out<'_>) -> Result<Step, EnvError> {
        // An action outside the space is the caller's error, reported, never a panic.
        self.act_space.check(&action)?;
        let Action::Discrete(a) = action else {
            unreachable!("checked: Discrete(3)")
        };
        self.paddle = (self.paddle + a as i64 - 1).clamp(0, self.width - 1);
        self.ball.1 += 1;
        self.write(out)?;
        let landed = self.ball.1 == ROWS - 1;
        let reward = match (landed, self.ball.0 == self.paddle) {
            (false, _) => 0.0,
            (true, true) => 1.0,
            (true, false) => -1.0,
        };
        Ok(Step {
            reward,
            terminated: landed,
            truncated: false,
        })
    }
    fn render_ansi(&self) -> String {
        let mut rows = Vec::new();
        for y in 0..ROWS {
            let row: String = (0..self.width)
                .map(
                    |x| match (self.ball == (x, y), y == ROWS - 1 && x == self.paddle) {
                        (true, _) => 'o',
                        (false, true) => '=',
                        _ => '.',
                    },
                )
                .collect();
            rows.push(row);
        }
        rows.join("\n")
    }
}

fn build(params: &ResolvedParams) -> agentry::envs::Result<Box<dyn Env>> {
    Ok(Box::new(Catch::new(params.int("width")?)))
}

/// Register `catch` (call once, before anything builds it by name).
fn register_catch() -> Result<(), EnvError> {
    register(EnvSpec {
        name: "catch",
        aliases: &[],
        summary: "catch a falling ball with a paddle (examples/train_custom_env.rs)",
        params: vec![ParamSpec::new(
            "width",
            ParamKind::Int { min: 2, max: 64 },
            "5",
            "columns of the grid",
        )],
        max_episode_steps: None,
        build,
    })
}

/// Catch rate over `games` games of `width`, with `choose` picking the actions.
fn catch_rate(
    width: i64,
    games: u64,
    mut choose: impl FnMut(&agentry::envs::Observation) -> usize,
) -> Result<f64, Box<dyn std::error::Error>> {
    let mut env = agentry::envs::make("catch", &Params::new().with("width", width))?;
    let mut caught = 0;
    for game in 0..games {
        let (mut obs, _) = env.reset(Some(1000 + game))?;
        loop {
            let step = env.step(Action::Discrete(choose(&obs)))?;
            if step.terminated {
                caught += u64::from(step.reward > 0.0);
                break;
            }
            obs = step.obs;
        }
    }
    Ok(caught as f64 / games as f64)
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let out = PathBuf::from("target/example-runs/catch");
    if out.exists() {
        std::fs::remove_dir_all(&out)?;
    }
    let config = resolve(&ConfigRequest {
        algo: Some("ppo".into()),
        env: Some("catch".into()),
        steps: Some(30_000),
        seed: Some(1),
        // PPO's defaults with CleanRL's classic-control learning rate and more,
        // shorter rollouts: games of 5 steps need no long horizon.
        sets: [
            "env.width=5",
            "run.envs_per_actor=8",
            "ppo.rollout_steps=32",
            "ppo.learning_rate=1e-3",
            "ppo.epochs=10",
        ]
        .map(String::from)
        .to_vec(),
        ..ConfigRequest::default()
    })?;
    println!(
        "training PPO on catch for 30000 steps into {}",
        out.display()
    );
    let outcome = train(
        Start::New {
            config: Box::new(config),
            out: Some(out.clone()),
        },
        &mut Silent,
    )?;
    println!("trained: {} env steps", outcome.state.env_steps);

    let mut agent = Agent::load(&out)?;
    let trained = catch_rate(5, 200, |obs| match agent.act(obs) {
        Ok(Action::Discrete(a)) => a,
        _ => 1,
    })?;
    let mut rng = rng_from_seed(7);
    let random = catch_rate(5, 200, |_| rng.random_range(0..3))?;
    println!("catch rate over 200 games: trained agent {trained:.2}, random paddle {random:.2}");
    if trained < 0.9 {
        return Err(
            format!("the agent caught only {trained:.2} of the balls (expected ≥ 0.9)").into(),
        );
    }
    Ok(())
}

fn main() -> ExitCode {
    if let Err(e) = register_catch() {
        eprintln!("error: {e}");
        return ExitCode::FAILURE;
    }
    // With arguments, this program is the `agent` command line, `catch` included.
    if std::env::args_os().len() > 1 {
        return agentry::cli::main_with_args(std::env::args_os());
    }
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
