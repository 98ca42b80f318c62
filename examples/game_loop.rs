//! A game loop with an embedded agent: CartPole at a fixed frame rate, drawn in the
//! terminal, the agent acting every frame inside the frame's time budget.
//!
//! ```text
//! cargo run --release --example game_loop                        # trains one first (~5 s)
//! cargo run --release --example game_loop -- policy.agentry --fps 30 --frames 900
//! cargo run --release --example game_loop -- --fast              # no sleeping: as fast as it goes
//! ```
//!
//! Each frame: the agent reads the observation and acts ([`Agent::act`], no allocation,
//! no thread), the simulation steps once, the frame is drawn, and the loop sleeps until
//! the next frame is due. The loop measures the agent's share of every frame and
//! counts the frames whose work overran the budget (1/fps); the summary at the end
//! prints both. When the pole falls or the episode reaches its time limit, the game
//! resets and the agent starts a new episode ([`Agent::reset_state`], which matters for
//! recurrent policies).
//!
//! Without a policy argument it trains PPO on CartPole (the `ppo-cartpole` preset,
//! 50,000 steps) into `target/example-runs/cartpole` once and reuses it afterwards.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use agentry::Agent;
use agentry::agents::config::{ConfigRequest, resolve};
use agentry::agents::train::{Silent, Start, train};
use agentry::envs::{EnvExt, Params, make};

struct Options {
    policy: Option<PathBuf>,
    fps: f64,
    frames: u64,
    fast: bool,
}

fn options() -> Result<Options, String> {
    let mut o = Options {
        policy: None,
        fps: 60.0,
        frames: 600,
        fast: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or_else(|| format!("{name} needs a value"));
        match arg.as_str() {
            "--fps" => {
                o.fps = value("--fps")?
                    .parse()
                    .ok()
                    .filter(|f: &f64| f.is_finite() && *f > 0.0)
                    .ok_or("--fps must be a positive number")?
            }
            "--frames" => {
                o.frames = value("--frames")?
                    .parse()
                    .map_err(|_| "--frames must be a whole number")?
            }
            "--fast" => o.fast = true,
            "-h" | "--help" => {
                return Err(
                    "usage: game_loop [POLICY_FILE_OR_RUN_DIR] [--fps F] [--frames N] [--fast]"
                        .into(),
                );
            }
            _ if arg.starts_with('-') => return Err(format!("unknown option `{arg}`")),
            _ => o.policy = Some(PathBuf::from(arg)),
        }
    }
    Ok(o)
}

fn load_agent(arg: Option<PathBuf>) -> Result<Agent, Box<dyn std::error::Error>> {
    if let Some(path) = arg {
        return Ok(Agent::load(&path)?);
    }
    let run = PathBuf::from("target/example-runs/cartpole");
    if let Ok(agent) = Agent::load(&run) {
        return Ok(agent);
    }
    let _ = std::fs::remove_dir_all(&run);
    eprintln!(
        "training a CartPole agent (PPO, 50000 steps) into {}",
        run.display()
    );
    let config = resolve(&ConfigRequest {
        algo: Some("ppo".into()),
        env: Some("cartpole".into()),
        steps: Some(50_000),
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

/// One line: the track, the cart, and the pole's lean.
fn draw(obs: &[f32], line: &mut String) {
    const WIDTH: usize = 61;
    let (x, angle) = (obs[0], obs[2]);
    let at = (((x + 2.4) / 4.8) * (WIDTH - 1) as f32)
        .round()
        .clamp(0.0, (WIDTH - 1) as f32) as usize;
    let pole = match angle {
        a if a > 0.07 => '/',
        a if a < -0.07 => '\\',
        _ => '|',
    };
    line.clear();
    line.push('[');
    for i in 0..WIDTH {
        line.push(if i == at { pole } else { '_' });
    }
    line.push(']');
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let o = options()?;
    let mut agent = load_agent(o.policy)?;
    let env = agent.info().env.clone();
    if env.name != "cartpole" {
        return Err(format!("this loop draws CartPole; the policy plays {}", env.name).into());
    }
    let mut game = make("cartpole", &Params::new())?;
    let budget = Duration::from_secs_f64(1.0 / o.fps);
    let live = std::io::stdout().is_terminal();
    let mut out = std::io::stdout().lock();
    let (mut obs, _) = game.reset(Some(0))?;
    let mut line = String::new();
    let (mut act_total, mut act_max, mut work_max) =
        (Duration::ZERO, Duration::ZERO, Duration::ZERO);
    let (mut late, mut episodes, mut ret, mut returns) = (0u64, 0u64, 0.0, 0.0);
    let mut next = Instant::now();
    for frame in 0..o.frames {
        let start = Instant::now();
        let t = Instant::now();
        let action = agent.act(&obs)?.into_owned();
        let acted = t.elapsed();
        let step = game.step(action.as_action())?;
        agent.observe(step.reward)?;
        ret += step.reward;
        obs = step.obs;
        if step.terminated || step.truncated {
            episodes += 1;
            returns += ret;
            ret = 0.0;
            agent.reset_state();
            obs = game.reset(Some(episodes))?.0;
        }
        draw(
            obs.as_f32().ok_or("CartPole observes f32 values")?,
            &mut line,
        );
        if live {
            write!(out, "\r{line} frame {frame:>5}  return {ret:>4.0}")?;
            out.flush()?;
        } else if frame % 60 == 0 {
            writeln!(out, "{line} frame {frame:>5}  return {ret:>4.0}")?;
        }
        let work = start.elapsed();
        act_total += acted;
        act_max = act_max.max(acted);
        work_max = work_max.max(work);
        late += u64::from(work > budget);
        if !o.fast {
            next += budget;
            match next.checked_duration_since(Instant::now()) {
                Some(wait) => std::thread::sleep(wait),
                // Behind schedule: start the next frame now, without trying to catch up.
                None => next = Instant::now(),
            }
        }
    }
    if live {
        writeln!(out)?;
    }
    let frames = o.frames.max(1);
    writeln!(
        out,
        "{} frames at {} fps (budget {:.2} ms): agent act mean {:.1} µs, max {:.1} µs; \
         frame work max {:.2} ms; {late} frame(s) over budget",
        o.frames,
        o.fps,
        budget.as_secs_f64() * 1e3,
        act_total.as_secs_f64() * 1e6 / frames as f64,
        act_max.as_secs_f64() * 1e6,
        work_max.as_secs_f64() * 1e3,
    )?;
    writeln!(
        out,
        "{episodes} episode(s) finished, mean return {:.1}",
        if episodes > 0 {
            returns / episodes as f64
        } else {
            ret
        }
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
