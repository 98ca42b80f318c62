//! The `agent` binary end to end.

use std::process::{Command, Output};

fn agent(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_agent"))
        .args(args)
        .output()
        .expect("the agent binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn envs_lists_every_registered_environment_with_spaces_and_parameters() {
    let out = agent(&["envs"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let listing = text(&out.stdout);
    for spec in agentry::envs::registry() {
        assert!(
            listing.lines().any(|l| l.starts_with(spec.name)),
            "{} missing:\n{listing}",
            spec.name
        );
        for p in spec.all_params() {
            assert!(
                listing.contains(&format!("{}: ", p.name)),
                "parameter {} of {} missing",
                p.name,
                spec.name
            );
        }
    }
    assert!(listing.contains("observation: Box("));
    assert!(listing.contains("action: Discrete(2)"));
}

#[test]
fn bench_envs_prints_the_single_figure_first_as_a_plain_number() {
    let out = agent(&[
        "bench",
        "envs",
        "--env",
        "cartpole",
        "--steps",
        "20000",
        "--num-envs",
        "4",
        "--threads",
        "2",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    let first = lines[0]
        .strip_suffix(" steps/s")
        .expect("first line ends in steps/s");
    assert!(first.parse::<u64>().is_ok_and(|x| x > 0), "{first}");
    assert!(lines.iter().all(|l| l.ends_with("steps/s")), "{stdout}");
}

#[test]
fn bench_envs_rejects_unknown_environments_and_bad_parameters_with_code_2() {
    let out = agent(&["bench", "envs", "--env", "cartpoel"]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.contains("cartpoel") && err.contains("cartpole") && err.contains("dark-room"),
        "{err}"
    );

    let out = agent(&[
        "bench",
        "envs",
        "--env",
        "dark-room",
        "--param",
        "size=banana",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.contains("size") && err.contains("int in"), "{err}");

    let out = agent(&[
        "bench",
        "envs",
        "--env",
        "cartpole",
        "--param",
        "colour=red",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.contains("colour") && err.contains("max_episode_steps"),
        "{err}"
    );

    let out = agent(&["bench", "envs", "--env", "cartpole", "--param", "oops"]);
    assert_eq!(out.status.code(), Some(2));

    let out = agent(&["bench", "envs", "--num-envs", "0"]);
    assert_eq!(out.status.code(), Some(2));

    let out = agent(&["frobnicate"]);
    assert_eq!(out.status.code(), Some(2));
}

fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("agentry-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

#[test]
fn train_resume_eval_and_plot_end_to_end() {
    let dir = temp_dir("run");
    let d = dir.to_str().unwrap();
    let out = agent(&[
        "train", "--env", "cartpole", "--steps", "2048", "--seed", "5", "--out", d,
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("2048 env steps"), "{stdout}");
    // Not a terminal: plain progress lines, no carriage returns.
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("env_steps 2048") && !stderr.contains('\r'),
        "{stderr}"
    );
    for f in ["config.toml", "metrics.csv", "summary.json"] {
        assert!(dir.join(f).exists(), "{f} missing");
    }
    let config = std::fs::read_to_string(dir.join("config.toml")).unwrap();
    assert!(
        config.contains("seed = 5") && config.contains("name = \"cartpole\""),
        "{config}"
    );

    let out = agent(&["train", "--resume", d, "--steps", "4096", "-q"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let metrics = std::fs::read_to_string(dir.join("metrics.csv")).unwrap();
    assert_eq!(metrics.lines().count(), 1 + 4096 / 256);
    assert!(metrics.lines().last().unwrap().starts_with("4096,"));

    let out = agent(&["eval", "--run", d, "--episodes", "3", "--deterministic"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("over 3 episodes"));
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["env_steps"], 4096);
    assert_eq!(summary["eval"]["episodes"], 3);

    let out = agent(&["eval", "--run", d, "--episodes", "1", "--render"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("step 1"), "frames are printed");

    let data = dir.join("data/expert.agds");
    let dd = data.to_str().unwrap();
    let out = agent(&[
        "collect",
        "--run",
        d,
        "--episodes",
        "4",
        "--random-episodes",
        "5",
        "--out",
        dd,
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("4 episodes") && stdout.contains("random policy"),
        "{stdout}"
    );
    assert!(data.exists());
    let out = agent(&[
        "collect",
        "--run",
        d,
        "--episodes",
        "4",
        "--epsilon",
        "2",
        "--out",
        dd,
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("--epsilon"));

    let svg = dir.join("curve.svg");
    let out = agent(&["plot", d, "--out", svg.to_str().unwrap(), "--smooth", "3"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let drawn = std::fs::read_to_string(&svg).unwrap();
    assert!(drawn.contains("episode_return_mean"));

    let out = agent(&["plot", d, "--metric", "losses/aproxkl", "--out", "x.png"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("losses/approx_kl"),
        "{}",
        text(&out.stderr)
    );

    // The in-context evaluation and plot are for offline sequence models: a PPO run
    // has neither, and says so.
    let out = agent(&["eval", "--run", d, "--in-context"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("--in-context"));
    let out = agent(&["plot", d, "--in-context", "--out", svg.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("in_context.csv"));
    assert!(text(&out.stderr).contains("agent eval --run DIR --in-context"));

    // A second `train` into the same directory is refused, naming --resume.
    let out = agent(&["train", "--env", "cartpole", "--steps", "2048", "--out", d]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("--resume"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_configuration_exits_2_with_one_line_naming_the_key() {
    let cases: &[(&[&str], &str)] = &[
        (
            &["--env", "cartpole", "--set", "ppo.learning_rat=3"],
            "ppo.learning_rat",
        ),
        (&["--env", "cartpole", "--set", "ppo.gamma=2"], "ppo.gamma"),
        (
            &["--env", "cartpole", "--set", "ppo.epochs=many"],
            "ppo.epochs",
        ),
        (&["--env", "cartpol"], "cartpole"),
        (&["--env", "mountain-car"], "--algo ppo --env cartpole"),
        (&["--env", "cartpole", "--algo", "sarsa"], "run.algo"),
        (&["--env", "dark-room", "--set", "env.size=1"], "env.size"),
        (
            &["--env", "cartpole", "--config", "/nonexistent/agentry.toml"],
            "agentry.toml",
        ),
        (
            &[
                "--env",
                "cartpole",
                "--algo",
                "rainbow",
                "--set",
                "rainbow.macros=[[0, 5]]",
            ],
            "macro 0 step 1: action 5",
        ),
        (
            &[
                "--env",
                "cartpole",
                "--algo",
                "rainbow",
                "--set",
                "rainbow.macros=[[]]",
            ],
            "macro 0 is empty",
        ),
        (
            &[
                "--env",
                "cartpole",
                "--algo",
                "dqn",
                "--set",
                "rainbow.noisy=true",
            ],
            "--algo rainbow",
        ),
    ];
    for (args, needle) in cases {
        let mut all = vec!["train"];
        all.extend_from_slice(args);
        let out = agent(&all);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            text(&out.stderr)
        );
        let err = text(&out.stderr);
        assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
    let out = agent(&["eval", "--run", "/nonexistent/run"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("not a run directory"));
}

/// DQN and Rainbow train, resume and evaluate from the command line, and the macro
/// experiment runs every variant and plots them.
#[test]
fn q_learners_and_the_macro_experiment_end_to_end() {
    let dir = temp_dir("rainbow");
    let d = dir.to_str().unwrap();
    let out = agent(&[
        "train",
        "--algo",
        "rainbow",
        "--env",
        "cartpole",
        "--steps",
        "1536",
        "--set",
        "dqn.learning_starts=256",
        "--out",
        d,
        "-q",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let config = std::fs::read_to_string(dir.join("config.toml")).unwrap();
    assert!(
        config.contains("[rainbow]") && !config.contains("[ppo]"),
        "{config}"
    );
    let out = agent(&["train", "--resume", d, "--steps", "2048", "-q"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = agent(&["eval", "--run", d, "--episodes", "2", "--deterministic"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("over 2 episodes"));

    let exp = temp_dir("macros");
    let out = agent(&[
        "experiment",
        "macros",
        "--seeds",
        "1",
        "--steps",
        "1200",
        "--out",
        exp.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let report = text(&out.stdout);
    for variant in [
        "rainbow ",
        "macros ",
        "macros-credit-learned",
        "macros-credit-prefix",
    ] {
        assert!(report.contains(variant), "{variant}: {report}");
    }
    assert!(exp.join("macros.png").exists());
    // A run with macros evaluates through the macro wrapper.
    let run = exp.join("macros-credit-learned-seed1");
    let out = agent(&[
        "eval",
        "--run",
        run.to_str().unwrap(),
        "--episodes",
        "2",
        "--max-steps",
        "300",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&exp);
}

/// `agent bench plasticity`: a small run prints the table and writes the JSON and the
/// plot; bad names and settings are usage errors naming the problem.
#[test]
fn bench_plasticity_runs_small_and_rejects_bad_input_with_code_2() {
    let dir = temp_dir("plasticity");
    let d = dir.to_str().unwrap();
    let small = [
        "bench",
        "plasticity",
        "--suite",
        "supervised",
        "--steps-per-task",
        "20",
    ];
    let mut args = small.to_vec();
    args.extend([
        "--seeds",
        "1",
        "--tasks",
        "2",
        "--last-tasks",
        "1",
        "--streams",
        "random_labels,permuted_inputs",
        "--interventions",
        "vanilla,hard_reset",
        "--out",
        d,
    ]);
    let out = agent(&args);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let table = text(&out.stdout);
    for row in [
        "random_labels    fresh ",
        "random_labels    vanilla",
        "permuted_inputs  hard_reset",
        "wrote",
    ] {
        assert!(table.contains(row), "{row}: {table}");
    }
    let json: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("plasticity-supervised.json")).unwrap(),
    )
    .unwrap();
    let runs = json["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 4);
    assert!(
        runs.iter()
            .all(|r| r["accuracy"].as_array().unwrap().len() == 2)
    );
    assert!(dir.join("plasticity-supervised.png").exists());
    let _ = std::fs::remove_dir_all(&dir);

    let cases: &[(&[&str], &str)] = &[
        (&["--streams", "shuffled"], "`shuffled`"),
        (&["--interventions", "vanilla,dropout"], "`dropout`"),
        (&["--seeds", "0"], "seeds"),
        (&["--tasks", "3", "--last-tasks", "4"], "last_tasks"),
        (&["--jobs", "0"], "jobs"),
        (&["--suite", "supervised,atari"], "`atari`"),
        (
            &["--suite", "rl", "--rl-interventions", "dropout"],
            "`dropout`",
        ),
        (&["--suite", "rl", "--rl-tasks", "1"], "two tasks"),
    ];
    for (bad, needle) in cases {
        let mut args = small.to_vec();
        args.extend_from_slice(bad);
        let out = agent(&args);
        assert_eq!(out.status.code(), Some(2), "{bad:?}: {}", text(&out.stderr));
        let err = text(&out.stderr);
        assert!(err.contains(needle) && !err.contains("panicked"), "{err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{bad:?}: {err}");
    }

    // The RL suite, tiny: two tasks of 4000 steps, one epoch, vanilla against fresh.
    let dir = temp_dir("plasticity-rl");
    let out = agent(&[
        "bench",
        "plasticity",
        "--suite",
        "rl",
        "--seeds",
        "1",
        "--rl-tasks",
        "2",
        "--rl-switch-every",
        "20",
        "--rl-epochs",
        "1",
        "--rl-interventions",
        "vanilla,fresh",
        "--out",
        dir.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let table = text(&out.stdout);
    assert!(
        table.contains("vanilla") && table.contains("fresh"),
        "{table}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("rl/plasticity-rl.json")).unwrap())
            .unwrap();
    let results = json.as_array().unwrap();
    assert_eq!(results.len(), 2);
    assert_eq!(results[0]["task_returns"][0].as_array().unwrap().len(), 2);
    assert!(dir.join("rl/plasticity-rl.png").exists());
    let _ = std::fs::remove_dir_all(&dir);
}

/// The values of the line of a benchmark table that starts with `what`.
fn row<'t>(table: &'t str, what: &str) -> Vec<&'t str> {
    let line = table.lines().find(|l| l.starts_with(what));
    let line = line.unwrap_or_else(|| panic!("no `{what}` line in\n{table}"));
    line[what.len()..].split_whitespace().collect()
}

/// `agent bench inference`: the MLP and the Nature CNN acting copies and PPO agents, a
/// bad `--net`; the binary counts allocations, and acting makes none.
#[test]
fn bench_inference_times_the_mlp_and_the_cnn() {
    let out = agent(&["bench", "inference", "--calls", "100"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let table = text(&out.stdout);
    assert!(table.contains("ns/call"), "{table}");
    for what in ["Agent::act (greedy)", "Agent::sample"] {
        assert_eq!(row(&table, what).last(), Some(&"0"), "{table}");
    }
    let out = agent(&["bench", "inference", "--net", "cnn", "--calls", "3"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let table = text(&out.stdout);
    assert!(table.contains("Nature CNN 4×84×84"), "{table}");
    assert_eq!(row(&table, "PPO Agent::act").last(), Some(&"0"), "{table}");
    let out = agent(&["bench", "inference", "--net", "rnn"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("`rnn`"));
}

/// `agent collect`, then LRAM and the DT trained offline on the dataset, evaluated, and
/// the offline flags' misuse and a damaged dataset refused with code 2.
#[test]
fn collect_then_offline_training_end_to_end() {
    let dir = temp_dir("offline");
    let d = |p: &str| dir.join(p).display().to_string();
    let out = agent(&[
        "train",
        "--env",
        "cartpole",
        "--steps",
        "4096",
        "-q",
        "--out",
        &d("expert"),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = agent(&[
        "collect",
        "--run",
        &d("expert"),
        "--episodes",
        "3",
        "--random-episodes",
        "3",
        "--out",
        &d("data/cartpole.agds"),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    for algo in ["lram", "dt"] {
        let run = d(algo);
        let small = [
            format!("{algo}.d_model=16"),
            format!("{algo}.context=5"),
            format!("{algo}.eval_episodes=1"),
            format!("{algo}.log_interval=5"),
        ];
        let data = d("data");
        let mut args = vec![
            "train",
            "--algo",
            algo,
            "--dataset",
            &data,
            "--steps",
            "10",
            "--out",
            &run,
            "-q",
        ];
        for s in &small {
            args.extend(["--set", s]);
        }
        let out = agent(&args);
        assert!(out.status.success(), "{algo}: {}", text(&out.stderr));
        assert!(
            text(&out.stdout).contains("10 updates"),
            "{}",
            text(&out.stdout)
        );
        let out = agent(&["eval", "--run", &run, "--episodes", "1"]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        let stdout = text(&out.stdout);
        assert!(
            stdout.contains("cartpole: return") && stdout.contains("normalised"),
            "{stdout}"
        );
        let summary = std::fs::read_to_string(dir.join(algo).join("summary.json")).unwrap();
        assert!(summary.contains("\"normalised_mean\""), "{summary}");
        // The embedding API's acting cost: on the plain-Rust kernels nothing is
        // allocated per step, LRAM token by token and the DT preset re-running its
        // window.
        let out = agent(&[
            "bench",
            "inference",
            "--policy",
            &run,
            "--calls",
            "30",
            "--episode-steps",
            "7",
        ]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        let table = text(&out.stdout);
        let kernels = row(&table, "Agent::act+observe (kernels)");
        assert_eq!(kernels.last(), Some(&"0"), "{algo}: {table}");
        assert_eq!(row(&table, "Agent::act+observe (burn)").len(), 2, "{table}");
    }
    // Offline algorithms take datasets, online ones environments.
    let out = agent(&["train", "--algo", "lram", "--env", "cartpole"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("--dataset"),
        "{}",
        text(&out.stderr)
    );
    let out = agent(&["train", "--algo", "ppo", "--dataset", &d("data")]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("--algo lram"),
        "{}",
        text(&out.stderr)
    );
    // A damaged dataset is named, with code 2, before anything trains.
    let bytes = std::fs::read(dir.join("data/cartpole.agds")).unwrap();
    std::fs::create_dir_all(dir.join("bad")).unwrap();
    std::fs::write(dir.join("bad/cut.agds"), &bytes[..bytes.len() / 2]).unwrap();
    let out = agent(&[
        "train",
        "--algo",
        "dt",
        "--dataset",
        &d("bad"),
        "--out",
        &d("x"),
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("cut.agds"),
        "{}",
        text(&out.stderr)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The two benchmarks of the sequence models and the retrieval index run small and
/// refuse bad input with code 2.
#[test]
fn bench_sequence_and_retrieval_run_small() {
    let out = agent(&[
        "bench",
        "sequence",
        "--d-model",
        "16",
        "--layers",
        "2",
        "--heads",
        "2",
        "--contexts",
        "4,8",
        "--batches",
        "1",
        "--steps",
        "2",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let table = text(&out.stdout);
    // Two header lines, then one row per context and engine (burn and rust by default).
    assert!(
        table.contains("dt/xlstm") && table.lines().count() == 6,
        "{table}"
    );
    let engines: Vec<&str> = table
        .lines()
        .skip(2)
        .filter_map(|l| l.split_whitespace().last())
        .collect();
    assert_eq!(engines, ["burn", "rust", "burn", "rust"], "{table}");
    let out = agent(&[
        "bench",
        "sequence",
        "--d-model",
        "16",
        "--layers",
        "2",
        "--heads",
        "2",
        "--contexts",
        "4",
        "--batches",
        "2",
        "--steps",
        "2",
        "--engine",
        "rust",
        "--tokens-per-step",
        "1",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let table = text(&out.stdout);
    assert!(table.contains("steps of 1 token(s)"), "{table}");
    let rows: Vec<&str> = table.lines().skip(2).collect();
    assert!(rows.len() == 1 && rows[0].ends_with("rust"), "{table}");
    let out = agent(&["bench", "sequence", "--contexts", "0"]);
    assert_eq!(out.status.code(), Some(2));
    let out = agent(&["bench", "sequence", "--tokens-per-step", "0"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("--tokens-per-step"),
        "{}",
        text(&out.stderr)
    );
    let out = agent(&["bench", "sequence", "--engine", "tensorflow"]);
    assert_eq!(out.status.code(), Some(2));
    let out = agent(&[
        "bench",
        "retrieval",
        "--dim",
        "32",
        "--sizes",
        "2000",
        "--key-types",
        "f32,i8",
        "--threads",
        "1",
        "--k",
        "5",
        "--queries",
        "5",
        "--hnsw-n",
        "0",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("exact search"),
        "{}",
        text(&out.stdout)
    );
    let out = agent(&["bench", "retrieval", "--key-types", "f64", "--hnsw-n", "0"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("f64"), "{}", text(&out.stderr));
}

/// `agent collect --learner q-learning`: a Q-table's learning history from scratch,
/// read by an Algorithm-Distillation-style DT; misuse refused with code 2.
#[test]
fn collect_records_a_q_learning_history_for_offline_learners() {
    let dir = temp_dir("q-history");
    let file = dir.join("goal-2-3.agds");
    let f = file.to_str().unwrap();
    let base = [
        "collect",
        "--learner",
        "q-learning",
        "--env",
        "dark-room",
        "-p",
        "goal=[2,3]",
        "--episodes",
        "30",
        "--seed",
        "4",
    ];
    let out = agent(&[&base[..], &["--out", f]].concat());
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("30 episodes, 3000 steps")
            && stdout.contains("mean return per 10 episodes"),
        "{stdout}"
    );
    // Three block means, the last above the first: it learnt while recording.
    let blocks: Vec<f64> = stdout
        .trim()
        .rsplit(": ")
        .next()
        .unwrap()
        .split(' ')
        .map(|b| b.parse().unwrap())
        .collect();
    assert_eq!(blocks.len(), 3, "{stdout}");
    assert!(blocks[2] > blocks[0], "{stdout}");
    let run = dir.join("ad");
    let out = agent(&[
        "train",
        "--algo",
        "dt",
        "--dataset",
        f,
        "--steps",
        "5",
        "--set",
        "dt.d_model=16",
        "--set",
        "dt.context=20",
        "--set",
        "dt.across_episodes=true",
        "--set",
        "dt.eval_episodes=0",
        "-q",
        "--out",
        run.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));

    let out = agent(&[
        "collect",
        "--learner",
        "sarsa",
        "--env",
        "dark-room",
        "--episodes",
        "3",
        "--out",
        f,
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("q-learning"),
        "{}",
        text(&out.stderr)
    );
    let out = agent(&[&base[..], &["--alpha", "1.5", "--out", f]].concat());
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("alpha"), "{}", text(&out.stderr));
    let out = agent(&[&base[..], &["--deterministic", "--out", f]].concat());
    assert_eq!(out.status.code(), Some(2));
    let out = agent(&[
        "collect",
        "--learner",
        "q-learning",
        "--episodes",
        "3",
        "--out",
        f,
    ]);
    assert_eq!(out.status.code(), Some(2), "--env is required");
    let out = agent(&[&base[..], &["--run", "somewhere", "--out", f]].concat());
    assert_eq!(out.status.code(), Some(2), "--run and --learner conflict");
    let _ = std::fs::remove_dir_all(&dir);
}
