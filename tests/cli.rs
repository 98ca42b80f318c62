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
