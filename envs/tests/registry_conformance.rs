//! Every registered environment keeps the rules of `Env`: seeded determinism, thread-count
//! independence, observations inside the observation space, actions outside the action
//! space rejected, no step before reset, and a text rendering.

use agentry_envs::bench::RandomVector;
use agentry_envs::testing::registry_sample;
use agentry_envs::{
    Action, EnvError, EnvExt, Observation, OwnedAction, Params, Space, registry, rng_from_seed,
};

fn inside(space: &Space, obs: &Observation) -> bool {
    match (space, obs) {
        (Space::Box(b), Observation::F32(x)) => b.contains(x),
        (Space::Box(b), Observation::U8(x)) => {
            x.len() == b.len()
                && x.iter()
                    .zip(b.low.iter().zip(&b.high))
                    .all(|(v, (l, h))| (*v as f32) >= *l && (*v as f32) <= *h)
        }
        (Space::Discrete(n), Observation::F32(x)) => {
            x.len() == 1 && x[0] >= 0.0 && (x[0] as usize) < *n
        }
        _ => false,
    }
}

/// A random action, legal under `mask` when there is one.
fn pick(space: &Space, mask: &Option<Vec<bool>>, rng: &mut agentry_envs::EnvRng) -> OwnedAction {
    let a = space.sample(rng);
    match (a, mask) {
        (OwnedAction::Discrete(a), Some(mask)) if !mask[a] => {
            OwnedAction::Discrete(mask.iter().position(|&m| m).unwrap_or(a))
        }
        (a, _) => a,
    }
}

fn rollout(name: &str, seed: u64, steps: usize) -> Vec<(Observation, f64, bool, bool)> {
    let mut env = agentry_envs::make(name, &Params::new()).unwrap();
    let mut rng = rng_from_seed(seed + 1000);
    let (obs, mut info) = env.reset(Some(seed)).unwrap();
    assert!(
        inside(env.observation_space(), &obs),
        "{name}: reset observation {obs:?} outside {}",
        env.observation_space()
    );
    let mut trace = vec![(obs, 0.0, false, false)];
    for _ in 0..steps {
        let action = pick(env.action_space(), &info.action_mask, &mut rng);
        let t = env.step(action.as_action()).unwrap();
        assert!(
            inside(env.observation_space(), &t.obs),
            "{name}: observation {:?} outside {}",
            t.obs,
            env.observation_space()
        );
        assert!(t.reward.is_finite(), "{name}: reward {}", t.reward);
        info = t.info.clone();
        trace.push((t.obs.clone(), t.reward, t.terminated, t.truncated));
        if t.terminated || t.truncated {
            let (obs, i) = env.reset(None).unwrap();
            info = i;
            trace.push((obs, 0.0, false, false));
        }
    }
    trace
}

#[test]
fn every_environment_is_seeded_and_stays_in_its_spaces() {
    for spec in registry_sample() {
        let a = rollout(spec.name, 5, 400);
        let b = rollout(spec.name, 5, 400);
        assert_eq!(a, b, "{}: same seed, different trajectories", spec.name);
    }
}

#[test]
fn every_environment_rejects_bad_actions_and_steps_before_reset() {
    for spec in registry_sample() {
        let mut env = spec.make(&Params::new()).unwrap();
        let action = env.action_space().sample(&mut rng_from_seed(0));
        let before = env.step(action.as_action());
        assert!(
            matches!(before, Err(EnvError::NeedsReset(_))),
            "{}: step before reset gave {:?}",
            spec.name,
            before.map(|t| t.reward)
        );
        env.reset(Some(0)).unwrap();
        let bad = match env.action_space() {
            Space::Discrete(n) => vec![Action::Discrete(*n), Action::Discrete(usize::MAX)],
            Space::Box(_) => vec![
                Action::Continuous(&[1e9]),
                Action::Continuous(&[f32::NAN]),
                Action::Continuous(&[]),
            ],
            Space::MultiDiscrete(_) => vec![Action::MultiDiscrete(&[usize::MAX])],
        };
        for action in bad {
            let err = env.step(action).err();
            assert!(
                matches!(err, Some(EnvError::InvalidAction { .. })),
                "{}: {action} gave {err:?}",
                spec.name
            );
        }
        // The wrong kind of action is rejected too.
        let wrong = match env.action_space() {
            Space::Box(_) => Action::Discrete(0),
            _ => Action::Continuous(&[0.0]),
        };
        assert!(env.step(wrong).is_err(), "{}", spec.name);
        // The episode goes on after rejected actions.
        let ok = env.action_space().sample(&mut rng_from_seed(1));
        let (_, info) = env.reset(Some(0)).unwrap();
        let ok = match (ok, info.action_mask) {
            (OwnedAction::Discrete(_), Some(mask)) => {
                OwnedAction::Discrete(mask.iter().position(|&m| m).unwrap())
            }
            (a, _) => a,
        };
        env.step(ok.as_action()).unwrap();
        assert!(!env.render_ansi().is_empty(), "{}", spec.name);
    }
}

#[test]
fn vectorised_trajectories_do_not_depend_on_threads() {
    for spec in registry_sample() {
        let mut one = RandomVector::new(spec.name, &Params::new(), 5, 1, 9).unwrap();
        let mut three = RandomVector::new(spec.name, &Params::new(), 5, 3, 9).unwrap();
        for _ in 0..300 {
            one.step().unwrap();
            three.step().unwrap();
            let (a, b) = (one.buffers(), three.buffers());
            assert_eq!(a.obs(), b.obs(), "{}", spec.name);
            assert_eq!(a.rewards(), b.rewards(), "{}", spec.name);
            assert_eq!(a.terminated(), b.terminated(), "{}", spec.name);
            assert_eq!(a.truncated(), b.truncated(), "{}", spec.name);
            assert_eq!(a.extras(), b.extras(), "{}", spec.name);
            assert_eq!(a.action_masks(), b.action_masks(), "{}", spec.name);
        }
    }
}

#[test]
fn unknown_names_and_parameters_list_what_is_valid() {
    let err = agentry_envs::make("no-such-env", &Params::new())
        .err()
        .unwrap();
    for spec in registry() {
        assert!(err.to_string().contains(spec.name), "{err}");
    }
    let spec = &registry()[0];
    let err = spec
        .make(&Params::new().with("no_such_param", 1i64))
        .err()
        .unwrap();
    assert!(err.to_string().contains("max_episode_steps"), "{err}");
}
