use rand::RngExt;

use super::{check_state, gauge};
use crate::env::{Env, Out, Step};
use crate::error::{EnvError, Result};
use crate::rng::{DEFAULT_SEED, EnvRng, rng_from_seed};
use crate::space::{Action, BoxSpace, Space};

const MIN_POSITION: f64 = -1.2;
const MAX_POSITION: f64 = 0.6;
const MAX_SPEED: f64 = 0.07;

fn state_space() -> Space {
    Space::Box(BoxSpace::new(
        vec![MIN_POSITION as f32, -MAX_SPEED as f32],
        vec![MAX_POSITION as f32, MAX_SPEED as f32],
    ))
}

fn render(position: f64, goal: f64) -> String {
    format!(
        "|{}| x={position:+.3} (goal ≥ {goal})",
        gauge(position, MIN_POSITION, MAX_POSITION, 41, 'o')
    )
}

/// MountainCar-v0: accelerate left (0), not at all (1) or right (2) to reach the flag at
/// x ≥ 0.5 (with velocity ≥ `goal_velocity`). Observation `[x, v]`; reward −1 per step.
#[derive(Debug, Clone)]
pub struct MountainCar {
    state: [f64; 2],
    goal_velocity: f64,
    rng: EnvRng,
    obs_space: Space,
    act_space: Space,
    ready: bool,
}

impl MountainCar {
    /// A new environment (call `reset` before stepping); Gymnasium's default `goal_velocity` is 0.
    pub fn new(goal_velocity: f64) -> Self {
        MountainCar {
            state: [0.0; 2],
            goal_velocity,
            rng: rng_from_seed(DEFAULT_SEED),
            obs_space: state_space(),
            act_space: Space::Discrete(3),
            ready: false,
        }
    }

    /// The internal state `[x, v]` in `f64`.
    pub fn state(&self) -> &[f64] {
        &self.state
    }

    /// Start from `state` (as after a reset).
    pub fn set_state(&mut self, state: &[f64]) -> Result<()> {
        check_state("MountainCar", state, 2)?;
        self.state.copy_from_slice(state);
        self.ready = true;
        Ok(())
    }

    fn write(&self, out: Out<'_>) -> Result<()> {
        let obs = out.obs.f32()?;
        obs[0] = self.state[0] as f32;
        obs[1] = self.state[1] as f32;
        Ok(())
    }
}

impl Env for MountainCar {
    fn observation_space(&self) -> &Space {
        &self.obs_space
    }
    fn action_space(&self) -> &Space {
        &self.act_space
    }
    fn reset_into(&mut self, seed: Option<u64>, out: Out<'_>) -> Result<()> {
        if let Some(seed) = seed {
            self.rng = rng_from_seed(seed);
        }
        self.state = [self.rng.random_range(-0.6..-0.4), 0.0];
        self.ready = true;
        self.write(out)
    }
    #[inline]
    fn step_into(&mut self, action: Action<'_>, out: Out<'_>) -> Result<Step> {
        let a = self.act_space.discrete_index(&action)?;
        if !self.ready {
            return Err(EnvError::NeedsReset(
                "before reset or after the episode ended",
            ));
        }
        let [mut position, mut velocity] = self.state;
        velocity += (a as f64 - 1.0) * 0.001 + (3.0 * position).cos() * -0.0025;
        velocity = velocity.clamp(-MAX_SPEED, MAX_SPEED);
        position += velocity;
        position = position.clamp(MIN_POSITION, MAX_POSITION);
        if position == MIN_POSITION && velocity < 0.0 {
            velocity = 0.0;
        }
        let terminated = position >= 0.5 && velocity >= self.goal_velocity;
        self.state = [position, velocity];
        self.ready = !terminated;
        self.write(out)?;
        Ok(Step {
            reward: -1.0,
            terminated,
            truncated: false,
        })
    }
    fn render_ansi(&self) -> String {
        render(self.state[0], 0.5)
    }
}

/// MountainCarContinuous-v0: a force in [−1, 1] drives the car; reaching x ≥ 0.45 (with
/// velocity ≥ `goal_velocity`) gives +100; every step costs 0.1·force².
///
/// Unlike Gymnasium, which clips the force into [−1, 1], a force outside the action
/// space (or NaN) is an [`EnvError::InvalidAction`] and leaves the state unchanged: a
/// policy clips to the bounds itself.
///
/// Gymnasium keeps this task's state in `f32` (after the first step of an episode, which
/// mixes `f64` and `f32`); this implementation rounds the same way, so trajectories agree.
#[derive(Debug, Clone)]
pub struct MountainCarContinuous {
    state: [f64; 2],
    /// The first step after a reset computes in `f64` (Gymnasium's reset state is `f64`).
    fresh: bool,
    goal_velocity: f64,
    rng: EnvRng,
    obs_space: Space,
    act_space: Space,
    ready: bool,
}

impl MountainCarContinuous {
    /// A new environment (call `reset` before stepping); Gymnasium's default `goal_velocity` is 0.
    pub fn new(goal_velocity: f64) -> Self {
        MountainCarContinuous {
            state: [0.0; 2],
            fresh: true,
            goal_velocity,
            rng: rng_from_seed(DEFAULT_SEED),
            obs_space: state_space(),
            act_space: Space::Box(BoxSpace::new(vec![-1.0], vec![1.0])),
            ready: false,
        }
    }

    /// The internal state `[x, v]` in `f64` (values representable in `f32` after the
    /// first step of an episode, as in Gymnasium).
    pub fn state(&self) -> &[f64] {
        &self.state
    }

    /// Start from `state` (as after a reset: the next step computes in `f64`).
    pub fn set_state(&mut self, state: &[f64]) -> Result<()> {
        check_state("MountainCarContinuous", state, 2)?;
        self.state.copy_from_slice(state);
        self.fresh = true;
        self.ready = true;
        Ok(())
    }

    fn write(&self, out: Out<'_>) -> Result<()> {
        let obs = out.obs.f32()?;
        obs[0] = self.state[0] as f32;
        obs[1] = self.state[1] as f32;
        Ok(())
    }
}

impl Env for MountainCarContinuous {
    fn observation_space(&self) -> &Space {
        &self.obs_space
    }
    fn action_space(&self) -> &Space {
        &self.act_space
    }
    fn reset_into(&mut self, seed: Option<u64>, out: Out<'_>) -> Result<()> {
        if let Some(seed) = seed {
            self.rng = rng_from_seed(seed);
        }
        self.state = [self.rng.random_range(-0.6..-0.4), 0.0];
        self.fresh = true;
        self.ready = true;
        self.write(out)
    }
    #[inline]
    fn step_into(&mut self, action: Action<'_>, out: Out<'_>) -> Result<Step> {
        let force = self.act_space.continuous_values(&action)?[0];
        if !self.ready {
            return Err(EnvError::NeedsReset(
                "before reset or after the episode ended",
            ));
        }
        // Gymnasium (NumPy 2 promotion rules): `force * power` is f32 and the cosine term
        // is rounded to f32 before the subtraction. The reset state is f64, so the first
        // step adds in f64; from then on the state is stored, and computed, in f32.
        let push = force * 0.0015f32;
        let [p, v] = self.state;
        let (position, velocity, terminated) = if self.fresh {
            let drag = (0.0025 * (3.0 * p).cos()) as f32;
            let mut velocity = (v + (push - drag) as f64).clamp(-MAX_SPEED, MAX_SPEED);
            let position = (p + velocity).clamp(MIN_POSITION, MAX_POSITION);
            if position == MIN_POSITION && velocity < 0.0 {
                velocity = 0.0;
            }
            (
                position,
                velocity,
                position >= 0.45 && velocity >= self.goal_velocity,
            )
        } else {
            let (p, v) = (p as f32, v as f32);
            let drag = (0.0025 * ((3.0f32 * p) as f64).cos()) as f32;
            let max_speed = MAX_SPEED as f32;
            let mut velocity = (v + (push - drag)).clamp(-max_speed, max_speed);
            let position = (p + velocity).clamp(MIN_POSITION as f32, MAX_POSITION as f32);
            if position == MIN_POSITION as f32 && velocity < 0.0 {
                velocity = 0.0;
            }
            let terminated = position >= 0.45f32 && velocity >= self.goal_velocity as f32;
            (position as f64, velocity as f64, terminated)
        };
        self.state = [position as f32 as f64, velocity as f32 as f64];
        self.fresh = false;
        self.ready = !terminated;
        self.write(out)?;
        let bonus = if terminated { 100.0 } else { 0.0 };
        Ok(Step {
            reward: bonus - (force as f64).powi(2) * 0.1,
            terminated,
            truncated: false,
        })
    }
    fn render_ansi(&self) -> String {
        render(self.state[0], 0.45)
    }
}

#[cfg(test)]
mod tests {
    use super::super::contract;
    use super::*;
    use crate::env::EnvExt;

    fn car(state: [f64; 2]) -> MountainCar {
        let mut env = MountainCar::new(0.0);
        env.set_state(&state).unwrap();
        env
    }

    fn cont(state: [f64; 2]) -> MountainCarContinuous {
        let mut env = MountainCarContinuous::new(0.0);
        env.set_state(&state).unwrap();
        env
    }

    #[test]
    fn shared_contract_discrete() {
        contract::check(
            MountainCar::new(0.0),
            &[-0.5, 0.0],
            Action::Discrete(2),
            &[Action::Discrete(3), Action::Continuous(&[1.0])],
        );
    }

    #[test]
    fn shared_contract_continuous() {
        contract::check(
            MountainCarContinuous::new(0.0),
            &[-0.5, 0.0],
            Action::Continuous(&[0.5]),
            &[
                Action::Continuous(&[1.5]),
                Action::Continuous(&[-1.0001]),
                Action::Continuous(&[f32::NAN]),
                Action::Continuous(&[f32::INFINITY]),
                Action::Continuous(&[0.0, 0.0]),
                Action::Continuous(&[]),
                Action::Discrete(0),
            ],
        );
    }

    #[test]
    fn cars_start_at_rest_in_the_valley() {
        let mut a = MountainCar::new(0.0);
        let mut b = MountainCarContinuous::new(0.0);
        for seed in 0..200 {
            a.reset(Some(seed)).unwrap();
            b.reset(Some(seed)).unwrap();
            for s in [a.state(), b.state()] {
                assert!((-0.6..-0.4).contains(&s[0]) && s[1] == 0.0, "{s:?}");
            }
        }
    }

    #[test]
    fn the_left_wall_stops_the_car() {
        let mut env = car([-1.19, -0.05]);
        let t = env.step(Action::Discrete(0)).unwrap();
        assert_eq!(env.state(), [MIN_POSITION, 0.0]);
        assert_eq!(t.obs.to_f32(), vec![-1.2f32, 0.0]);
        let mut env = cont([-1.19, -0.05]);
        env.step(Action::Continuous(&[-1.0])).unwrap();
        assert_eq!(env.state(), [MIN_POSITION as f32 as f64, 0.0]);
        // And in the f32 steps that follow the first one: four steps to the wall.
        env.set_state(&[-1.0, -0.06]).unwrap();
        let mut positions = vec![];
        for _ in 0..4 {
            env.step(Action::Continuous(&[-1.0])).unwrap();
            positions.push(env.state()[0]);
        }
        assert!(positions[2] > -1.2, "{positions:?}");
        assert_eq!(env.state(), [MIN_POSITION as f32 as f64, 0.0]);
    }

    #[test]
    fn velocity_is_clipped_to_the_maximum_speed() {
        let mut env = car([-0.8, 0.0699]);
        env.step(Action::Discrete(2)).unwrap();
        assert_eq!(env.state(), [-0.8 + MAX_SPEED, MAX_SPEED]);
        let mut env = cont([-0.8, 0.0699]);
        env.step(Action::Continuous(&[1.0])).unwrap();
        env.step(Action::Continuous(&[1.0])).unwrap();
        assert_eq!(env.state()[1], MAX_SPEED as f32 as f64);
    }

    #[test]
    fn the_flag_ends_the_episode_unless_too_slow() {
        let mut env = car([0.49, 0.02]);
        let t = env.step(Action::Discrete(1)).unwrap();
        assert!(t.terminated && !t.truncated);
        assert_eq!(t.reward, -1.0);
        assert!(matches!(
            env.step(Action::Discrete(1)),
            Err(EnvError::NeedsReset(_))
        ));
        let mut slow = MountainCar::new(0.05);
        slow.set_state(&[0.49, 0.02]).unwrap();
        assert!(!slow.step(Action::Discrete(1)).unwrap().terminated);
        // The continuous car's flag is at 0.45 and pays 100 minus the force cost.
        let mut env = cont([0.44, 0.02]);
        let t = env.step(Action::Continuous(&[1.0])).unwrap();
        assert!(t.terminated && !t.truncated);
        assert_eq!(t.reward, 100.0 - 0.1);
        assert!(env.step(Action::Continuous(&[0.0])).is_err());
        let mut slow = MountainCarContinuous::new(0.05);
        slow.set_state(&[0.44, 0.02]).unwrap();
        assert!(!slow.step(Action::Continuous(&[1.0])).unwrap().terminated);
    }

    #[test]
    fn rewards_are_minus_one_and_the_force_cost() {
        let trace = contract::random_run(&mut MountainCar::new(0.0), 1, 1000);
        assert!(contract::steps(&trace).all(|s| s.reward == -1.0 && !s.terminated));
        let mut env = cont([-0.5, 0.0]);
        let t = env.step(Action::Continuous(&[0.5])).unwrap();
        assert_eq!(t.reward, -(0.5f64 * 0.5) * 0.1);
        let t = env.step(Action::Continuous(&[-0.3])).unwrap();
        assert_eq!(t.reward, -(-0.3f32 as f64).powi(2) * 0.1);
    }

    #[test]
    fn the_continuous_state_is_kept_in_f32_after_the_first_step() {
        let mut env = MountainCarContinuous::new(0.0);
        let trace = contract::random_run(&mut env, 2, 500);
        assert_eq!(trace.len(), 501, "random forces do not reach the flag");
        for s in env.state() {
            assert_eq!(*s, *s as f32 as f64);
        }
    }

    #[test]
    fn render_marks_the_goal() {
        assert!(car([-0.5, 0.0]).render_ansi().contains("goal ≥ 0.5"));
        assert!(cont([-0.5, 0.0]).render_ansi().contains("goal ≥ 0.45"));
    }
}
