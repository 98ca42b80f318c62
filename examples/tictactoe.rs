//! Play tic-tac-toe in the terminal against a trained agent.
//!
//! ```text
//! cargo run --release --example tictactoe                      # trains one first (~15 s)
//! cargo run --release --example tictactoe -- policy.agentry    # or any run directory
//! cargo run --release --example tictactoe -- --human-first
//! ```
//!
//! You type the cell of your move, 1 to 9 as on a phone's keypad read left to right,
//! top to bottom; a blank line or end of input quits. The agent plays with
//! [`Agent::act_masked`]: greedy among the empty cells, so it never makes an illegal
//! move. The environment's own 27-value observation (the agent's marks, the opponent's,
//! the empty cells) is built from the board here, exactly as the environment builds it.
//!
//! Without a policy argument it trains PPO (the `ppo-tictactoe` preset: 300,000 steps
//! against an ε-minimax opponent) into `target/example-runs/tictactoe` once and reuses
//! it afterwards.

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use agentry::Agent;
use agentry::agents::config::{ConfigRequest, resolve};
use agentry::agents::train::{Silent, Start, train};
use agentry::envs::Action;
use agentry::envs::tictactoe::game::{Board, Outcome, Player};

/// The agent's observation of `board` when it plays `me`.
fn observe(board: &Board, me: Player) -> [f32; 27] {
    let mut obs = [0.0; 27];
    for cell in 0..9 {
        let plane = match board.get(cell) {
            Some(p) if p == me => 0,
            Some(_) => 1,
            None => 2,
        };
        obs[9 * plane + cell] = 1.0;
    }
    obs
}

fn show(board: &Board, out: &mut impl Write) -> std::io::Result<()> {
    for row in 0..3 {
        let cells: Vec<String> = (0..3)
            .map(|col| {
                let cell = 3 * row + col;
                board
                    .get(cell)
                    .map_or((cell + 1).to_string(), |p| p.symbol().to_string())
            })
            .collect();
        writeln!(out, " {} ", cells.join(" | "))?;
        if row < 2 {
            writeln!(out, "---+---+---")?;
        }
    }
    Ok(())
}

/// The trained agent: the given run or file, else the example's own run (trained on
/// first use).
fn load_agent(arg: Option<PathBuf>) -> Result<Agent, Box<dyn std::error::Error>> {
    if let Some(path) = arg {
        return Ok(Agent::load(&path)?);
    }
    let run = PathBuf::from("target/example-runs/tictactoe");
    if let Ok(agent) = Agent::load(&run) {
        return Ok(agent);
    }
    let _ = std::fs::remove_dir_all(&run);
    eprintln!(
        "training an opponent for you (PPO, 300000 steps, ~15 s) into {}",
        run.display()
    );
    let config = resolve(&ConfigRequest {
        algo: Some("ppo".into()),
        env: Some("tictactoe".into()),
        ..ConfigRequest::default()
    })?;
    train(
        Start::New {
            config: Box::new(config),
            out: Some(run.clone()),
        },
        &mut Silent,
    )?;
    Ok(Agent::load(&run)?)
}

/// One game; `Ok(None)` when the human quit.
fn play(
    agent: &mut Agent,
    human_first: bool,
    input: &mut impl BufRead,
    out: &mut impl Write,
) -> Result<Option<Outcome>, Box<dyn std::error::Error>> {
    let (human, bot) = if human_first {
        (Player::X, Player::O)
    } else {
        (Player::O, Player::X)
    };
    writeln!(
        out,
        "You play {}, the agent plays {}.",
        human.symbol(),
        bot.symbol()
    )?;
    let mut board = Board::new();
    while board.outcome().is_none() {
        if board.to_move() == bot {
            let mut mask = [false; 9];
            board.legal_moves().write_mask(&mut mask);
            let cell = match agent.act_masked(&observe(&board, bot), &mask)? {
                Action::Discrete(cell) => cell,
                other => return Err(format!("the policy chose {other}, not a cell").into()),
            };
            board.play(cell)?;
            writeln!(out, "The agent plays {}.", cell + 1)?;
            continue;
        }
        show(&board, out)?;
        write!(out, "Your move (1-9): ")?;
        out.flush()?;
        let mut line = String::new();
        if input.read_line(&mut line)? == 0 || line.trim().is_empty() {
            writeln!(out)?;
            return Ok(None);
        }
        let cell = match line.trim().parse::<usize>() {
            Ok(n) if (1..=9).contains(&n) => n - 1,
            _ => {
                writeln!(
                    out,
                    "`{}` is not a cell: type a number from 1 to 9.",
                    line.trim()
                )?;
                continue;
            }
        };
        if !board.is_legal(cell) {
            writeln!(out, "Cell {} is taken; choose an empty one.", cell + 1)?;
            continue;
        }
        board.play(cell)?;
    }
    show(&board, out)?;
    let outcome = board.outcome().expect("the loop ends when the game does");
    match outcome {
        Outcome::Win(p) if p == human => writeln!(out, "You win!")?,
        Outcome::Win(_) => writeln!(out, "The agent wins.")?,
        Outcome::Draw => writeln!(out, "A draw.")?,
    }
    Ok(Some(outcome))
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let mut policy = None;
    let mut human_first = false;
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--human-first" => human_first = true,
            "-h" | "--help" => {
                println!("usage: tictactoe [POLICY_FILE_OR_RUN_DIR] [--human-first]");
                return Ok(());
            }
            _ if arg.starts_with('-') => return Err(format!("unknown option `{arg}`").into()),
            _ => policy = Some(PathBuf::from(arg)),
        }
    }
    let mut agent = load_agent(policy)?;
    let info = agent.info();
    if info.obs_dim != 27 || info.action.outputs() != 9 {
        return Err(format!(
            "{} is a policy for {}, not for tic-tac-toe",
            info.source.display(),
            info.env.name
        )
        .into());
    }
    let stdin = std::io::stdin();
    let mut input = stdin.lock();
    let mut out = std::io::stdout();
    let (mut games, mut score) = (0, [0; 3]);
    while let Some(outcome) = play(&mut agent, human_first, &mut input, &mut out)? {
        games += 1;
        score[match outcome {
            Outcome::Win(Player::X) if human_first => 0,
            Outcome::Win(Player::O) if !human_first => 0,
            Outcome::Draw => 1,
            Outcome::Win(_) => 2,
        }] += 1;
        // Take turns to move first.
        human_first = !human_first;
        writeln!(out)?;
    }
    writeln!(
        out,
        "{games} game(s): you won {}, drew {}, lost {}. Bye.",
        score[0], score[1], score[2]
    )?;
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
