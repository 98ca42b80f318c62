//! Gymnasium's classic-control tasks: CartPole-v1, Acrobot-v1, MountainCar-v0,
//! Pendulum-v1 and MountainCarContinuous-v0.
//!
//! Dynamics, termination, rewards, observation bounds and initial-state distributions are
//! those of Gymnasium 1.x's reference implementation, computed in the same floating-point
//! precision and order of operations (including the places where Gymnasium computes in
//! `f32`), and checked step by step against trajectories recorded from Gymnasium itself
//! (`envs/tests/fixtures/classic/`). The time limits (500, 500, 200, 200, 999 steps) are
//! applied by the registry, as `gymnasium.make` does; the environments themselves never
//! truncate.
//!
//! One deliberate difference: Gymnasium clips out-of-range continuous actions; here an
//! action outside the action space is an error, so a policy clips to the bounds itself.
//! Random initial states come from our own generator, so a seed gives different (but
//! equally distributed) initial states than Gymnasium's; `set_state` starts from any state.

mod acrobot;
mod cartpole;
mod mountain_car;
mod pendulum;

pub use acrobot::Acrobot;
pub use cartpole::CartPole;
pub use mountain_car::{MountainCar, MountainCarContinuous};
pub use pendulum::Pendulum;

use crate::env::Env;
use crate::error::{EnvError, Result};
use crate::params::{ParamKind, ParamSpec};
use crate::registry::EnvSpec;

/// The registry entries of this module.
pub fn specs() -> Vec<EnvSpec> {
    vec![
        EnvSpec {
            name: "cartpole",
            aliases: &["CartPole-v1"],
            summary: "balance a pole on a cart (Gymnasium CartPole-v1): +1 per step, 500-step limit",
            params: vec![],
            max_episode_steps: Some(500),
            build: |_| Ok(Box::new(CartPole::new()) as Box<dyn Env>),
        },
        EnvSpec {
            name: "acrobot",
            aliases: &["Acrobot-v1"],
            summary: "swing a two-link arm above a line (Gymnasium Acrobot-v1): −1 per step, 500-step limit",
            params: vec![],
            max_episode_steps: Some(500),
            build: |_| Ok(Box::new(Acrobot::new()) as Box<dyn Env>),
        },
        EnvSpec {
            name: "mountain-car",
            aliases: &["MountainCar-v0"],
            summary: "drive an underpowered car up a hill (Gymnasium MountainCar-v0): −1 per step, 200-step limit",
            params: vec![goal_velocity()],
            max_episode_steps: Some(200),
            build: |p| Ok(Box::new(MountainCar::new(p.float("goal_velocity")?)) as Box<dyn Env>),
        },
        EnvSpec {
            name: "pendulum",
            aliases: &["Pendulum-v1"],
            summary: "swing a pendulum up and hold it (Gymnasium Pendulum-v1): continuous torque, 200-step limit",
            params: vec![ParamSpec::new(
                "g",
                ParamKind::Float {
                    min: 0.0,
                    max: 100.0,
                },
                "10.0",
                "gravity (m/s²)",
            )],
            max_episode_steps: Some(200),
            build: |p| Ok(Box::new(Pendulum::new(p.float("g")?)) as Box<dyn Env>),
        },
        EnvSpec {
            name: "mountain-car-continuous",
            aliases: &["MountainCarContinuous-v0"],
            summary: "mountain car with a continuous force (Gymnasium MountainCarContinuous-v0): 999-step limit",
            params: vec![goal_velocity()],
            max_episode_steps: Some(999),
            build: |p| {
                Ok(Box::new(MountainCarContinuous::new(p.float("goal_velocity")?)) as Box<dyn Env>)
            },
        },
    ]
}

fn goal_velocity() -> ParamSpec {
    ParamSpec::new(
        "goal_velocity",
        ParamKind::Float {
            min: -0.07,
            max: 0.07,
        },
        "0.0",
        "velocity the car must have at the goal",
    )
}

/// Check a state given to `set_state`.
fn check_state(env: &str, state: &[f64], len: usize) -> Result<()> {
    if state.len() != len {
        return Err(EnvError::Invalid(format!(
            "{env} state has {len} numbers, got {}",
            state.len()
        )));
    }
    if state.iter().any(|x| !x.is_finite()) {
        return Err(EnvError::Invalid(format!(
            "{env} state {state:?} is not finite"
        )));
    }
    Ok(())
}

/// A one-line gauge: `value` in `[lo, hi]` drawn as a marker on a track of `width` cells.
fn gauge(value: f64, lo: f64, hi: f64, width: usize, marker: char) -> String {
    let frac = ((value - lo) / (hi - lo)).clamp(0.0, 1.0);
    let pos = (frac * (width - 1) as f64).round() as usize;
    (0..width)
        .map(|i| if i == pos { marker } else { '-' })
        .collect()
}

/// Checks every classic-control environment shares: seeding, reset/step order,
/// `set_state`, invalid actions, observations inside the observation space.
#[cfg(test)]
mod contract {
    use crate::env::{Env, EnvExt, Step};
    use crate::error::{EnvError, Result};
    use crate::rng::{DEFAULT_SEED, rng_from_seed};
    use crate::space::{Action, Space};

    /// Access to the internal state, implemented by the five environments.
    pub(super) trait Stateful: Env + Clone {
        fn get(&self) -> Vec<f64>;
        fn put(&mut self, state: &[f64]) -> Result<()>;
    }

    macro_rules! stateful {
        ($($t:ty),*) => {$(
            impl Stateful for $t {
                fn get(&self) -> Vec<f64> {
                    self.state().to_vec()
                }
                fn put(&mut self, state: &[f64]) -> Result<()> {
                    self.set_state(state)
                }
            }
        )*};
    }
    stateful!(
        super::CartPole,
        super::Acrobot,
        super::MountainCar,
        super::MountainCarContinuous,
        super::Pendulum
    );

    /// Each observation, with the step that produced it (`None` after a reset).
    pub(super) type Trace = Vec<(Vec<f32>, Option<Step>)>;

    /// The steps of a trace.
    pub(super) fn steps(trace: &Trace) -> impl Iterator<Item = Step> + '_ {
        trace.iter().filter_map(|(_, s)| *s)
    }

    pub(super) fn assert_in_space(space: &Space, obs: &[f32]) {
        let Space::Box(b) = space else {
            panic!("classic-control observations are boxes")
        };
        assert!(b.contains(obs), "{obs:?} outside {space}");
    }

    /// `steps` uniformly random actions (actions drawn from `seed` too), resetting with
    /// `reset(None)` after each episode; checks every observation against the space.
    pub(super) fn random_run(env: &mut dyn Env, seed: u64, steps: usize) -> Trace {
        let mut actions = rng_from_seed(seed.wrapping_add(1000));
        let (obs, _) = env.reset(Some(seed)).unwrap();
        assert_in_space(env.observation_space(), &obs.to_f32());
        let mut trace = vec![(obs.to_f32(), None)];
        for _ in 0..steps {
            let a = env.action_space().sample(&mut actions);
            let t = env.step(a.as_action()).unwrap();
            assert_in_space(env.observation_space(), &t.obs.to_f32());
            assert!(t.reward.is_finite());
            let step = Step {
                reward: t.reward,
                terminated: t.terminated,
                truncated: t.truncated,
            };
            trace.push((t.obs.to_f32(), Some(step)));
            if t.terminated || t.truncated {
                let (obs, _) = env.reset(None).unwrap();
                assert_in_space(env.observation_space(), &obs.to_f32());
                trace.push((obs.to_f32(), None));
            }
        }
        trace
    }

    /// The shared contract. `start` is a valid non-terminal state, `good` a valid action
    /// and `bad` actions outside the action space.
    pub(super) fn check<E: Stateful>(env: E, start: &[f64], good: Action<'_>, bad: &[Action<'_>]) {
        let n = start.len();

        // Stepping before any reset, or after a failed set_state, is refused.
        let mut fresh = env.clone();
        assert!(matches!(fresh.step(good), Err(EnvError::NeedsReset(_))));
        let mut wrong = start.to_vec();
        wrong.push(0.0);
        assert!(matches!(fresh.put(&wrong), Err(EnvError::Invalid(_))));
        assert!(matches!(fresh.put(&start[1..]), Err(EnvError::Invalid(_))));
        for bad_value in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            let mut s = start.to_vec();
            s[n - 1] = bad_value;
            assert!(matches!(fresh.put(&s), Err(EnvError::Invalid(_))));
        }
        assert!(matches!(fresh.step(good), Err(EnvError::NeedsReset(_))));

        // set_state counts as a reset: the state is taken as given and stepping works.
        fresh.put(start).unwrap();
        assert_eq!(fresh.get(), start);
        fresh.step(good).unwrap();
        assert!(!fresh.render_ansi().is_empty());

        // Invalid actions are errors and change nothing.
        let mut a = env.clone();
        a.put(start).unwrap();
        let mut b = a.clone();
        for action in bad {
            assert!(
                matches!(a.step(*action), Err(EnvError::InvalidAction { .. })),
                "{action} accepted"
            );
            assert_eq!(a.get(), start, "{action} changed the state");
        }
        let (ta, tb) = (a.step(good).unwrap(), b.step(good).unwrap());
        assert_eq!((ta.obs, ta.reward), (tb.obs, tb.reward));
        assert_eq!(a.get(), b.get());

        // Same seed, same trajectory; another seed, another one; observations in space.
        let run = |seed| random_run(&mut env.clone(), seed, 600);
        let first = run(7);
        assert_eq!(first, run(7));
        assert_ne!(first[0].0, run(8)[0].0);

        // reset(None) continues the stream; a never-seeded env uses DEFAULT_SEED.
        let mut e = env.clone();
        let (o1, _) = e.reset(Some(7)).unwrap();
        let (o2, _) = e.reset(None).unwrap();
        assert_ne!(o1, o2);
        let (unseeded, _) = env.clone().reset(None).unwrap();
        let (default, _) = env.clone().reset(Some(DEFAULT_SEED)).unwrap();
        assert_eq!(unseeded, default);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::env::EnvExt;
    use crate::params::Params;
    use crate::space::Action;

    #[test]
    fn registry_names_aliases_and_gymnasium_time_limits() {
        let specs = specs();
        let table: Vec<_> = specs
            .iter()
            .map(|s| (s.name, s.aliases, s.max_episode_steps))
            .collect();
        assert_eq!(
            table,
            [
                ("cartpole", &["CartPole-v1"][..], Some(500)),
                ("acrobot", &["Acrobot-v1"][..], Some(500)),
                ("mountain-car", &["MountainCar-v0"][..], Some(200)),
                ("pendulum", &["Pendulum-v1"][..], Some(200)),
                (
                    "mountain-car-continuous",
                    &["MountainCarContinuous-v0"][..],
                    Some(999)
                ),
            ]
        );
        for spec in &specs {
            for name in std::iter::once(spec.name).chain(spec.aliases.iter().copied()) {
                let env = crate::make(name, &Params::new()).unwrap();
                assert_eq!(
                    env.observation_space(),
                    spec.make(&Params::new()).unwrap().observation_space()
                );
            }
        }
    }

    /// Steps until the episode ends with `action`; returns the step count and the last flags.
    fn run_out(name: &str, params: &Params, action: Action<'_>) -> (usize, bool, bool) {
        let mut env = crate::make(name, params).unwrap();
        env.reset(Some(1)).unwrap();
        for t in 1..=5000 {
            let s = env.step(action).unwrap();
            if s.terminated || s.truncated {
                return (t, s.terminated, s.truncated);
            }
        }
        panic!("{name} never ended");
    }

    #[test]
    fn the_registry_truncates_at_gymnasium_limits() {
        let none = Params::new();
        assert_eq!(
            run_out("pendulum", &none, Action::Continuous(&[0.0])),
            (200, false, true)
        );
        assert_eq!(
            run_out("MountainCar-v0", &none, Action::Discrete(1)),
            (200, false, true)
        );
        assert_eq!(
            run_out("mountain-car-continuous", &none, Action::Continuous(&[0.0])),
            (999, false, true)
        );
        assert_eq!(
            run_out("acrobot", &none, Action::Discrete(1)),
            (500, false, true)
        );
        let (t, terminated, truncated) = run_out("cartpole", &none, Action::Discrete(1));
        assert!(t < 50 && terminated && !truncated);
        let short = Params::new().with("max_episode_steps", 10i64);
        assert_eq!(
            run_out("acrobot", &short, Action::Discrete(1)),
            (10, false, true)
        );
    }

    #[test]
    fn parameters_are_typed_and_checked() {
        let g = |v: f64| crate::make("pendulum", &Params::new().with("g", v));
        assert!(g(9.81).is_ok());
        for bad in [-1.0, 1000.0, f64::NAN] {
            assert!(
                matches!(g(bad), Err(EnvError::BadParam { .. })),
                "g = {bad} accepted"
            );
        }
        for name in ["mountain-car", "mountain-car-continuous"] {
            let v = |v: f64| crate::make(name, &Params::new().with("goal_velocity", v));
            assert!(v(0.01).is_ok());
            assert!(matches!(v(0.5), Err(EnvError::BadParam { .. })));
        }
        assert!(crate::make("cartpole", &Params::new().with("g", 1.0)).is_err());
    }

    #[test]
    fn gauges_place_and_clamp_the_marker() {
        assert_eq!(gauge(0.0, -1.0, 1.0, 5, 'o'), "--o--");
        assert_eq!(gauge(-1.0, -1.0, 1.0, 5, 'o'), "o----");
        assert_eq!(gauge(9.0, -1.0, 1.0, 5, 'o'), "----o");
        assert_eq!(gauge(f64::NAN, -1.0, 1.0, 5, 'o').chars().count(), 5);
    }
}
