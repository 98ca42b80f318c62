//! The embedding API end to end: runs trained by the `agent` binary, exported with
//! `agent export`, loaded with `agentry::Agent`, played in the user's own loop — which
//! must play exactly the episodes `agent eval` plays.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use agentry::Agent;
use agentry::agents::config::EnvConfig;
use agentry::agents::offline;
use agentry::agents::train::{self, EvalOptions};
use agentry::envs::{EnvExt, derive_seed, make};

fn agent(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_agent"))
        .args(args)
        .output()
        .expect("the agent binary runs")
}

fn ok(out: Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("agentry-embed-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Play `episodes` greedy episodes with `agent` in a loop of the user's kind (the
/// environment's own `reset`/`step`, the mask from its info), seeded as `agent eval`
/// seeds them; the returns and lengths.
fn play(agent: &mut Agent, env: &EnvConfig, episodes: usize, seed: u64) -> Vec<(f64, u64)> {
    let mut game = make(&env.name, &env.params).unwrap();
    (0..episodes)
        .map(|episode| {
            agent.reset_state();
            let (mut obs, mut info) = game.reset(Some(derive_seed(seed, episode as u64))).unwrap();
            let (mut ret, mut len) = (0.0, 0);
            loop {
                let action = match &info.action_mask {
                    Some(mask) => agent.act_masked(&obs, mask).unwrap(),
                    None => agent.act(&obs).unwrap(),
                }
                .into_owned();
                let step = game.step(action.as_action()).unwrap();
                agent.observe(step.reward).unwrap();
                ret += step.reward;
                len += 1;
                if step.terminated || step.truncated {
                    break;
                }
                (obs, info) = (step.obs, step.info);
            }
            (ret, len)
        })
        .collect()
}

fn mean(xs: &[(f64, u64)]) -> (f64, f64) {
    let n = xs.len() as f64;
    (
        xs.iter().map(|x| x.0).sum::<f64>() / n,
        xs.iter().map(|x| x.1 as f64).sum::<f64>() / n,
    )
}

/// The user's loop and `agent eval` play the same episodes, from the run directory and
/// from the exported file, for PPO (discrete, masked, continuous) and Rainbow with
/// macro-actions (played as their primitive actions by the agent, through the macro
/// wrapper by `agent eval`).
#[test]
fn exported_policies_act_in_a_user_loop_as_agent_eval_plays_them() {
    let root = temp_dir("online");
    let cases: [(&str, Vec<&str>); 4] = [
        ("cartpole", vec!["--env", "cartpole", "--steps", "2048"]),
        ("tictactoe", vec!["--env", "tictactoe", "--steps", "2048"]),
        ("pendulum", vec!["--env", "pendulum", "--steps", "2048"]),
        (
            "macros",
            vec![
                "--algo",
                "rainbow",
                "--env",
                "cartpole",
                "--steps",
                "600",
                "--set",
                "dqn.learning_starts=256",
                "--set",
                "rainbow.macro_repeat=3",
            ],
        ),
    ];
    for (name, train_args) in cases {
        let run = root.join(name);
        let mut args = vec!["train", "-q", "--seed", "3", "--out", s(&run)];
        args.extend(train_args);
        ok(agent(&args));
        let file = root.join(format!("{name}.agentry"));
        let said = ok(agent(&["export", "--run", s(&run), "--out", s(&file)]));
        assert!(
            said.contains("wrote") && said.contains("env steps"),
            "{said}"
        );

        let loaded = train::load_policy(&file).unwrap();
        let opts = EvalOptions {
            episodes: 3,
            deterministic: true,
            seed: 11,
            max_steps: 100_000,
        };
        let report = train::evaluate(&loaded, None, &opts, None).unwrap();
        for source in [&file, &run] {
            let mut a = Agent::load(source).unwrap();
            assert!(!a.info().recurrent);
            assert_eq!(a.info().env, loaded.meta.env, "{name}");
            let played = play(&mut a, &loaded.meta.env, 3, 11);
            let (ret, len) = mean(&played);
            assert!(
                (ret - report.return_mean).abs() < 1e-9 && (len - report.length_mean).abs() < 1e-9,
                "{name} from {}: the user's loop {played:?}, agent eval {} / {}",
                source.display(),
                report.return_mean,
                report.length_mean
            );
        }
    }
    // The file's `agent eval --policy` runs too.
    let out = ok(agent(&[
        "eval",
        "--policy",
        s(&root.join("cartpole.agentry")),
        "--episodes",
        "2",
    ]));
    assert!(out.contains("over 2 episodes"), "{out}");
    let _ = std::fs::remove_dir_all(&root);
}

/// Bad input to an agent is an error value naming the problem; damaged or
/// foreign-version files are refused with the reason.
#[test]
fn bad_observations_masks_and_files_are_clear_errors() {
    let root = temp_dir("bad");
    let run = root.join("run");
    ok(agent(&[
        "train",
        "-q",
        "--env",
        "tictactoe",
        "--steps",
        "512",
        "--out",
        s(&run),
    ]));
    let file = root.join("p.agentry");
    ok(agent(&["export", "--run", s(&run), "--out", s(&file)]));
    let mut a = Agent::load(&file).unwrap();
    let dim = a.info().obs_dim;
    let wide = vec![0.0f32; dim + 1];
    let e = a.act(&wide).unwrap_err().to_string();
    assert!(e.contains(&format!("reads {dim}")), "{e}");
    let mut nan = vec![0.0f32; dim];
    nan[1] = f32::NAN;
    assert!(a.act(&nan).unwrap_err().to_string().contains("finite"));
    let obs = vec![0.0f32; dim];
    let e = a.act_masked(&obs, &[true; 3]).unwrap_err().to_string();
    assert!(e.contains("mask has 3 entries"), "{e}");
    let e = a.act_masked(&obs, &[false; 9]).unwrap_err().to_string();
    assert!(e.contains("allows no action"), "{e}");
    // A legal move is chosen, always.
    let mut mask = [false; 9];
    mask[4] = true;
    assert_eq!(
        a.act_masked(&obs, &mask).unwrap(),
        agentry::envs::Action::Discrete(4)
    );
    let mut rng = <rand_pcg::Pcg64Mcg as rand::SeedableRng>::seed_from_u64(1);
    for _ in 0..20 {
        assert_eq!(
            a.sample_masked(&obs, &mask, &mut rng).unwrap(),
            agentry::envs::Action::Discrete(4)
        );
    }
    assert!(a.set_task(1).is_err());

    let bytes = std::fs::read(&file).unwrap();
    let damaged = root.join("damaged.agentry");
    let mut flipped = bytes.clone();
    let middle = flipped.len() / 2;
    flipped[middle] ^= 0x10;
    std::fs::write(&damaged, &flipped).unwrap();
    let e = Agent::load(&damaged).unwrap_err().to_string();
    assert!(
        e.contains("damaged") && e.contains("damaged.agentry"),
        "{e}"
    );
    std::fs::write(&damaged, &bytes[..bytes.len() - 100]).unwrap();
    assert!(Agent::load(&damaged).is_err());
    let mut other = bytes.clone();
    other[8..12].copy_from_slice(&99u32.to_le_bytes());
    std::fs::write(&damaged, &other).unwrap();
    let e = Agent::load(&damaged).unwrap_err().to_string();
    assert!(e.contains("version 99"), "{e}");
    let e = Agent::load(root.join("missing.agentry"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("missing.agentry"), "{e}");
    // The CLI says the same, with code 2.
    let out = agent(&["eval", "--policy", s(&damaged), "--episodes", "1"]);
    assert_eq!(out.status.code(), Some(2));
    let out = agent(&[
        "export",
        "--run",
        s(&root.join("nothing")),
        "--out",
        s(&file),
    ]);
    assert_eq!(out.status.code(), Some(2));
    let _ = std::fs::remove_dir_all(&root);
}

/// An LRAM policy exported from an offline run: the user's loop, feeding rewards back
/// through `observe`, plays the episodes `agent eval` plays; acting twice without
/// observing is refused.
#[test]
fn a_sequence_policy_carries_its_state_in_the_user_loop() {
    let root = temp_dir("seq");
    let expert = root.join("expert");
    ok(agent(&[
        "train",
        "-q",
        "--env",
        "cartpole",
        "--steps",
        "2048",
        "--out",
        s(&expert),
    ]));
    let data = root.join("data/cartpole.agds");
    ok(agent(&[
        "collect",
        "--run",
        s(&expert),
        "--episodes",
        "3",
        "--random-episodes",
        "2",
        "--reference-episodes",
        "3",
        "--out",
        s(&data),
    ]));
    let run = root.join("lram");
    ok(agent(&[
        "train",
        "-q",
        "--algo",
        "lram",
        "--dataset",
        s(&data),
        "--steps",
        "10",
        "--set",
        "lram.d_model=16",
        "--set",
        "lram.eval_episodes=0",
        "--set",
        "lram.deterministic=true",
        "--out",
        s(&run),
    ]));
    let file = root.join("lram.agentry");
    let said = ok(agent(&["export", "--run", s(&run), "--out", s(&file)]));
    assert!(
        said.contains("seq-policy") && said.contains("10 updates"),
        "{said}"
    );

    let policy = offline::load_run(&run).unwrap();
    let scores = offline::evaluate_policy(&policy, 2, 4, 100_000).unwrap();
    // `evaluate_policy` seeds task t's episode e with derive_seed(seed, t << 32 | e).
    for source in [&file, &run] {
        let mut a = Agent::load(source).unwrap();
        assert!(a.info().recurrent);
        assert_eq!(a.info().algo, "lram");
        assert_eq!(a.info().trained_steps, 10);
        assert_eq!(a.tasks().len(), 1);
        let env = a.info().env.clone();
        let mut game = make(&env.name, &env.params).unwrap();
        let mut total = 0.0;
        for episode in 0..2u64 {
            a.reset_state();
            let (mut obs, _) = game.reset(Some(derive_seed(4, episode))).unwrap();
            loop {
                let action = a.act(&obs).unwrap().into_owned();
                let step = game.step(action.as_action()).unwrap();
                a.observe(step.reward).unwrap();
                total += step.reward;
                if step.terminated || step.truncated {
                    break;
                }
                obs = step.obs;
            }
        }
        assert!(
            (total / 2.0 - scores[0].return_mean).abs() < 1e-9,
            "{}: {} vs agent eval {}",
            source.display(),
            total / 2.0,
            scores[0].return_mean
        );
        // Two actions without a reward between them would desynchronise the context.
        let obs = vec![0.0f32; a.info().obs_dim];
        a.act(&obs).unwrap();
        let e = a.act(&obs).unwrap_err().to_string();
        assert!(e.contains("observe"), "{e}");
        a.observe(1.0).unwrap();
        assert!(a.observe(1.0).is_err());
        assert!(a.observe(f64::NAN).is_err());
        a.reset_state();
        a.act(&obs).unwrap();
    }
    let out = ok(agent(&["eval", "--policy", s(&file), "--episodes", "1"]));
    assert!(out.contains("cartpole: return"), "{out}");
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn an_agent_moves_between_threads() {
    fn send<T: Send>() {}
    send::<Agent>();
}
