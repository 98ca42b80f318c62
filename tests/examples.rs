//! The examples in `examples/` run as a user runs them: their binaries (which `cargo
//! test` builds with the test binaries) with policies the `agent` binary trains and
//! exports, and stdin driven as a person would type.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// The built example `name` (`target/{profile}/examples/{name}`, beside this test's
/// `deps` directory).
fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let profile = exe.parent().and_then(Path::parent).unwrap();
    let path = profile
        .join("examples")
        .join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(
        path.exists(),
        "{} is not built: run the tests with `cargo test` (which builds the examples)",
        path.display()
    );
    path
}

fn agent(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_agent"))
        .args(args)
        .output()
        .expect("the agent binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Run `exe` with `args` in `dir`, `input` on its stdin.
fn run(exe: &Path, args: &[&str], dir: &Path, input: &str) -> Output {
    let mut child = Command::new(exe)
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("agentry-examples-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Train and export a small PPO policy for `env`.
fn exported(dir: &Path, env: &str, steps: &str) -> PathBuf {
    let run = dir.join(format!("{env}-run"));
    let file = dir.join(format!("{env}.agentry"));
    for args in [
        vec![
            "train",
            "-q",
            "--env",
            env,
            "--steps",
            steps,
            "--out",
            run.to_str().unwrap(),
        ],
        vec![
            "export",
            "--run",
            run.to_str().unwrap(),
            "--out",
            file.to_str().unwrap(),
        ],
    ] {
        let out = agent(&args);
        assert!(out.status.success(), "{}", text(&out.stderr));
    }
    file
}

/// A person at the keyboard: typos, a taken cell, then every cell in turn until the
/// games end, then end of input.
#[test]
fn tictactoe_is_played_from_stdin() {
    let dir = temp_dir("tictactoe");
    let policy = exported(&dir, "tictactoe", "4096");
    let exe = example("tictactoe");
    let mut typed = String::from("hello\n0\n5\n5\n");
    for _ in 0..3 {
        for cell in 1..=9 {
            typed.push_str(&format!("{cell}\n"));
        }
    }
    let out = run(&exe, &[policy.to_str().unwrap()], &dir, &typed);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    assert!(stdout.contains("`hello` is not a cell"), "{stdout}");
    assert!(stdout.contains("`0` is not a cell"), "{stdout}");
    assert!(stdout.contains("Cell 5 is taken"), "{stdout}");
    assert!(stdout.contains("The agent plays"), "{stdout}");
    let ended = ["You win!", "The agent wins.", "A draw."]
        .iter()
        .map(|s| stdout.matches(s).count())
        .sum::<usize>();
    assert!(ended >= 2, "at least two games finish: {stdout}");
    let tally = stdout.lines().last().unwrap();
    assert!(
        tally.contains(&format!("{ended} game(s)")) && tally.ends_with("Bye."),
        "{tally}"
    );
    // The agent never takes a taken cell: each game's moves are distinct.
    // (The board would refuse it and the example would exit with an error.)

    // A policy for another game is refused, naming it.
    let cartpole = exported(&dir, "cartpole", "512");
    let out = run(&exe, &[cartpole.to_str().unwrap()], &dir, "");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("not for tic-tac-toe"),
        "{}",
        text(&out.stderr)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_game_loop_runs_its_frames_and_reports_the_budget() {
    let dir = temp_dir("loop");
    let policy = exported(&dir, "cartpole", "2048");
    let out = run(
        &example("game_loop"),
        &[policy.to_str().unwrap(), "--frames", "400", "--fast"],
        &dir,
        "",
    );
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    assert!(
        stdout.contains("400 frames at 60 fps (budget 16.67 ms)") && stdout.contains("over budget"),
        "{stdout}"
    );
    // Drawn every 60 frames when stdout is not a terminal.
    assert_eq!(
        stdout.matches("  return ").count(),
        400usize.div_ceil(60),
        "{stdout}"
    );
    let out = run(&example("game_loop"), &["--fps", "0"], &dir, "");
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("--fps"), "{}", text(&out.stderr));
    let _ = std::fs::remove_dir_all(&dir);
}

/// The user-environment example trains its own game from Rust code to a ≥ 90% catch
/// rate (seeded) and, given arguments, is the `agent` command line with the game
/// registered.
#[test]
fn a_user_environment_trains_from_rust_and_through_the_cli() {
    let dir = temp_dir("custom");
    let exe = example("train_custom_env");
    let out = run(&exe, &[], &dir, "");
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    let rate: f64 = stdout
        .split("trained agent ")
        .nth(1)
        .and_then(|s| s.split(',').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no catch rate in {stdout}"));
    assert!(rate >= 0.9, "{stdout}");

    let run_dir = dir.join("cli-run");
    let out = run(
        &exe,
        &[
            "train",
            "-q",
            "--env",
            "catch",
            "--set",
            "env.width=7",
            "--steps",
            "1000",
            "--out",
            run_dir.to_str().unwrap(),
        ],
        &dir,
        "",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let config = std::fs::read_to_string(run_dir.join("config.toml")).unwrap();
    assert!(
        config.contains("name = \"catch\"") && config.contains("width = 7"),
        "{config}"
    );
    let out = run(&exe, &["envs"], &dir, "");
    assert!(text(&out.stdout).contains("catch a falling ball"));
    // A bad parameter of the user's game is a usage error naming it.
    let out = run(
        &exe,
        &[
            "train",
            "--env",
            "catch",
            "--set",
            "env.width=1",
            "--out",
            "x",
        ],
        &dir,
        "",
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("width"), "{}", text(&out.stderr));
    let _ = std::fs::remove_dir_all(&dir);
}
