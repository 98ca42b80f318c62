//! Classic control against Gymnasium: trajectories recorded from Gymnasium itself
//! (`fixtures/classic/generate.py`) are replayed from the same initial state with the
//! same actions, and every observation, reward and flag must agree (observations and
//! rewards within 1e-6; on Linux with glibc the observations agree bit for bit and the
//! rewards to within an ulp or two, the tolerance leaves room for other libms).

use agentry_envs::classic::{Acrobot, CartPole, MountainCar, MountainCarContinuous, Pendulum};
use agentry_envs::wrappers::TimeLimit;
use agentry_envs::{Action, Env, EnvError, EnvExt, Observation, Params};
use serde_json::Value;

/// An environment wrapped in its registry time limit, started from a given state.
///
/// `make` returns a `Box<dyn Env>` (no `set_state`), so the concrete type is built with
/// the recorded parameters and wrapped in the registry's `TimeLimit`; its spaces must
/// equal those of the registry's environment.
fn start(name: &str, params: &Value, state: &[f64]) -> Box<dyn Env> {
    let limit = agentry_envs::find(name).unwrap().max_episode_steps.unwrap();
    let float = |key: &str, default: f64| params.get(key).map_or(default, |v| v.as_f64().unwrap());
    let mut registry_params = Params::new();
    for (key, value) in params.as_object().unwrap() {
        registry_params = registry_params.with(key, value.as_f64().unwrap());
    }
    let env: Box<dyn Env> = match name {
        "cartpole" => {
            let mut e = CartPole::new();
            e.set_state(state).unwrap();
            Box::new(TimeLimit::new(e, limit))
        }
        "acrobot" => {
            let mut e = Acrobot::new();
            e.set_state(state).unwrap();
            Box::new(TimeLimit::new(e, limit))
        }
        "mountain-car" => {
            let mut e = MountainCar::new(float("goal_velocity", 0.0));
            e.set_state(state).unwrap();
            Box::new(TimeLimit::new(e, limit))
        }
        "pendulum" => {
            let mut e = Pendulum::new(float("g", 10.0));
            e.set_state(state).unwrap();
            Box::new(TimeLimit::new(e, limit))
        }
        "mountain-car-continuous" => {
            let mut e = MountainCarContinuous::new(float("goal_velocity", 0.0));
            e.set_state(state).unwrap();
            Box::new(TimeLimit::new(e, limit))
        }
        other => panic!("no fixture environment {other}"),
    };
    let registered = agentry_envs::make(name, &registry_params).unwrap();
    assert_eq!(env.observation_space(), registered.observation_space());
    assert_eq!(env.action_space(), registered.action_space());
    env
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-6 * (1.0 + b.abs())
}

fn replay(file: &str) -> usize {
    let path = format!(
        "{}/tests/fixtures/classic/{file}.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let data: Value = serde_json::from_str(&text).unwrap();
    let mut steps = 0;
    for ep in data["episodes"].as_array().unwrap() {
        let name = ep["name"].as_str().unwrap();
        let tag = format!(
            "{name} seed {} ({}, params {})",
            ep["seed"], ep["policy"], ep["params"]
        );
        let mut env = start(name, &ep["params"], &floats(&ep["initial_state"]));
        let actions = ep["actions"].as_array().unwrap();
        for (t, a) in actions.iter().enumerate() {
            let cont;
            let action = match a {
                Value::Number(n) => Action::Discrete(n.as_u64().unwrap() as usize),
                v => {
                    cont = floats(v).iter().map(|&x| x as f32).collect::<Vec<f32>>();
                    Action::Continuous(&cont)
                }
            };
            let got = env
                .step(action)
                .unwrap_or_else(|e| panic!("{tag} step {t}: {e}"));
            let Observation::F32(obs) = &got.obs else {
                panic!("f32 observations")
            };
            let want = floats(&ep["obs"][t]);
            for (g, w) in obs.iter().zip(&want) {
                assert!(
                    close(*g as f64, *w),
                    "{tag} step {t}: obs {obs:?} vs gymnasium {want:?}"
                );
            }
            let want_r = ep["reward"][t].as_f64().unwrap();
            assert!(
                close(got.reward, want_r),
                "{tag} step {t}: reward {} vs {want_r}",
                got.reward
            );
            assert_eq!(
                got.terminated,
                ep["terminated"][t].as_bool().unwrap(),
                "{tag} step {t}: terminated"
            );
            assert_eq!(
                got.truncated,
                ep["truncated"][t].as_bool().unwrap(),
                "{tag} step {t}: truncated"
            );
            steps += 1;
        }
        // Every recorded episode runs to its end; after a termination we refuse to go on.
        let last = actions.len() - 1;
        if ep["terminated"][last].as_bool().unwrap() {
            let again = env.step(
                env.action_space()
                    .sample(&mut agentry_envs::rng_from_seed(0))
                    .as_action(),
            );
            assert!(
                matches!(again, Err(EnvError::NeedsReset(_))),
                "{tag}: stepped past the end"
            );
        } else {
            assert!(
                ep["truncated"][last].as_bool().unwrap(),
                "{tag}: unfinished episode"
            );
        }
    }
    steps
}

#[test]
fn cartpole_matches_gymnasium() {
    assert!(replay("cartpole") > 500);
}

#[test]
fn acrobot_matches_gymnasium() {
    assert!(replay("acrobot") > 1500);
}

#[test]
fn mountain_car_matches_gymnasium() {
    assert!(replay("mountain-car") > 600);
}

#[test]
fn pendulum_matches_gymnasium() {
    assert!(replay("pendulum") > 600);
}

#[test]
fn mountain_car_continuous_matches_gymnasium() {
    assert!(replay("mountain-car-continuous") > 2000);
}
