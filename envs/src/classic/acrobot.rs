use std::f64::consts::PI;

use rand::RngExt;

use super::{check_state, gauge};
use crate::env::{Env, Out, Step};
use crate::error::{EnvError, Result};
use crate::rng::{DEFAULT_SEED, EnvRng, rng_from_seed};
use crate::space::{Action, BoxSpace, Space};

const DT: f64 = 0.2;
const L1: f64 = 1.0;
const M1: f64 = 1.0;
const M2: f64 = 1.0;
const LC1: f64 = 0.5;
const LC2: f64 = 0.5;
const I1: f64 = 1.0;
const I2: f64 = 1.0;
const G: f64 = 9.8;
const MAX_VEL_1: f64 = 4.0 * PI;
const MAX_VEL_2: f64 = 9.0 * PI;
const TORQUES: [f64; 3] = [-1.0, 0.0, 1.0];

/// Acrobot-v1: apply torque −1, 0 or +1 at the joint between two links to swing the
/// free end above the line one link-length over the pivot.
///
/// Observation `[cos θ₁, sin θ₁, cos θ₂, sin θ₂, θ̇₁, θ̇₂]`; reward −1 per step and 0 on
/// the terminating one. The "book" dynamics integrated with one RK4 step of 0.2 s.
#[derive(Debug, Clone)]
pub struct Acrobot {
    state: [f64; 4],
    rng: EnvRng,
    obs_space: Space,
    act_space: Space,
    ready: bool,
}

impl Default for Acrobot {
    fn default() -> Self {
        Self::new()
    }
}

impl Acrobot {
    /// A new environment (call `reset` before stepping).
    pub fn new() -> Self {
        let high = [1.0, 1.0, 1.0, 1.0, MAX_VEL_1 as f32, MAX_VEL_2 as f32];
        Acrobot {
            state: [0.0; 4],
            rng: rng_from_seed(DEFAULT_SEED),
            obs_space: Space::Box(BoxSpace::new(
                high.iter().map(|h| -h).collect(),
                high.to_vec(),
            )),
            act_space: Space::Discrete(3),
            ready: false,
        }
    }

    /// The internal state `[θ₁, θ₂, θ̇₁, θ̇₂]` in `f64`.
    pub fn state(&self) -> &[f64] {
        &self.state
    }

    /// Start from `state` (as after a reset).
    pub fn set_state(&mut self, state: &[f64]) -> Result<()> {
        check_state("Acrobot", state, 4)?;
        self.state.copy_from_slice(state);
        self.ready = true;
        Ok(())
    }

    fn write(&self, out: Out<'_>) -> Result<()> {
        let [t1, t2, d1, d2] = self.state;
        let obs = out.obs.f32()?;
        obs.copy_from_slice(&[
            t1.cos() as f32,
            t1.sin() as f32,
            t2.cos() as f32,
            t2.sin() as f32,
            d1 as f32,
            d2 as f32,
        ]);
        Ok(())
    }

    fn terminal(&self) -> bool {
        let [t1, t2, ..] = self.state;
        -t1.cos() - (t2 + t1).cos() > 1.0
    }
}

/// Time derivative of `[θ₁, θ₂, θ̇₁, θ̇₂]` under torque `a` (Sutton & Barto's equations).
fn dsdt(s: [f64; 4], a: f64) -> [f64; 4] {
    let [theta1, theta2, dtheta1, dtheta2] = s;
    let d1 = M1 * LC1 * LC1 + M2 * (L1 * L1 + LC2 * LC2 + 2.0 * L1 * LC2 * theta2.cos()) + I1 + I2;
    let d2 = M2 * (LC2 * LC2 + L1 * LC2 * theta2.cos()) + I2;
    let phi2 = M2 * LC2 * G * (theta1 + theta2 - PI / 2.0).cos();
    let phi1 = -M2 * L1 * LC2 * (dtheta2 * dtheta2) * theta2.sin()
        - 2.0 * M2 * L1 * LC2 * dtheta2 * dtheta1 * theta2.sin()
        + (M1 * LC1 + M2 * L1) * G * (theta1 - PI / 2.0).cos()
        + phi2;
    let ddtheta2 = (a + d2 / d1 * phi1 - M2 * L1 * LC2 * (dtheta1 * dtheta1) * theta2.sin() - phi2)
        / (M2 * LC2 * LC2 + I2 - d2 * d2 / d1);
    let ddtheta1 = -(d2 * ddtheta2 + phi1) / d1;
    [dtheta1, dtheta2, ddtheta1, ddtheta2]
}

/// One classical Runge–Kutta step of length `dt`.
fn rk4(y0: [f64; 4], a: f64, dt: f64) -> [f64; 4] {
    let dt2 = dt / 2.0;
    let add = |y: [f64; 4], h: f64, k: [f64; 4]| std::array::from_fn(|i| y[i] + h * k[i]);
    let k1 = dsdt(y0, a);
    let k2 = dsdt(add(y0, dt2, k1), a);
    let k3 = dsdt(add(y0, dt2, k2), a);
    let k4 = dsdt(add(y0, dt, k3), a);
    std::array::from_fn(|i| y0[i] + dt / 6.0 * (k1[i] + 2.0 * k2[i] + 2.0 * k3[i] + k4[i]))
}

/// Wrap `x` into `[lo, hi]` by whole periods (Gymnasium's `wrap`).
fn wrap(mut x: f64, lo: f64, hi: f64) -> f64 {
    let diff = hi - lo;
    while x > hi {
        x -= diff;
    }
    while x < lo {
        x += diff;
    }
    x
}

impl Env for Acrobot {
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
        // Gymnasium draws the initial state in f64 and stores it as f32.
        for s in &mut self.state {
            *s = self.rng.random_range(-0.1f64..0.1) as f32 as f64;
        }
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
        let ns = rk4(self.state, TORQUES[a], DT);
        self.state = [
            wrap(ns[0], -PI, PI),
            wrap(ns[1], -PI, PI),
            ns[2].clamp(-MAX_VEL_1, MAX_VEL_1),
            ns[3].clamp(-MAX_VEL_2, MAX_VEL_2),
        ];
        let terminated = self.terminal();
        self.ready = !terminated;
        self.write(out)?;
        Ok(Step {
            reward: if terminated { 0.0 } else { -1.0 },
            terminated,
            truncated: false,
        })
    }
    fn render_ansi(&self) -> String {
        let [t1, t2, ..] = self.state;
        let tip = -t1.cos() - (t2 + t1).cos();
        format!(
            "height |{}| {tip:+.2} (goal > 1.00)",
            gauge(tip, -2.0, 2.0, 41, 'o')
        )
    }
}

#[cfg(test)]
mod tests {
    use super::super::contract;
    use super::*;
    use crate::env::EnvExt;

    fn at(state: [f64; 4]) -> Acrobot {
        let mut env = Acrobot::new();
        env.set_state(&state).unwrap();
        env
    }

    #[test]
    fn shared_contract() {
        contract::check(
            Acrobot::new(),
            &[0.05, -0.05, 0.1, 0.0],
            Action::Discrete(2),
            &[Action::Discrete(3), Action::Continuous(&[1.0])],
        );
    }

    #[test]
    fn initial_states_are_small_and_stored_in_f32_precision() {
        let mut env = Acrobot::new();
        for seed in 0..200 {
            env.reset(Some(seed)).unwrap();
            for s in env.state() {
                assert!((-0.1..=0.1).contains(s));
                assert_eq!(*s, *s as f32 as f64);
            }
        }
    }

    #[test]
    fn the_tip_above_the_line_terminates_with_reward_zero() {
        assert!(!at([PI / 2.0, 0.0, 0.0, 0.0]).terminal());
        assert!(!at([2.0, 0.0, 0.0, 0.0]).terminal()); // tip at 0.83
        assert!(at([2.2, 0.0, 0.0, 0.0]).terminal()); // tip at 1.18
        let mut env = at([PI, 0.0, 0.0, 0.0]);
        let t = env.step(Action::Discrete(1)).unwrap();
        assert!(t.terminated && !t.truncated);
        assert_eq!(t.reward, 0.0);
        assert!(matches!(
            env.step(Action::Discrete(1)),
            Err(EnvError::NeedsReset(_))
        ));
        let t = at([0.0; 4]).step(Action::Discrete(1)).unwrap();
        assert!(!t.terminated);
        assert_eq!(t.reward, -1.0);
    }

    #[test]
    fn angles_wrap_and_velocities_are_bounded() {
        assert_eq!(wrap(PI, -PI, PI), PI);
        assert_eq!(wrap(3.5, -PI, PI), 3.5 - 2.0 * PI);
        assert_eq!(wrap(-10.0, -PI, PI), -10.0 + 2.0 * PI + 2.0 * PI);
        // From Gymnasium's trajectory (fixture acrobot, designed start): θ̇₂ hits 9π.
        let mut env = at([-0.2, 0.3, 1.0, 28.0]);
        env.step(Action::Discrete(0)).unwrap();
        assert_eq!(env.state()[3], MAX_VEL_2);
        let mut env = at([3.1, -3.1, 4.0 * PI, -9.0 * PI]);
        env.step(Action::Discrete(2)).unwrap();
        let s = env.state();
        assert!(s[0].abs() <= PI && s[1].abs() <= PI, "{s:?}");
        assert!(s[2].abs() <= MAX_VEL_1 && s[3].abs() <= MAX_VEL_2, "{s:?}");
    }

    #[test]
    fn torque_drives_the_second_joint_in_its_direction() {
        let mut plus = at([0.0; 4]);
        let mut minus = at([0.0; 4]);
        let mut none = at([0.0; 4]);
        plus.step(Action::Discrete(2)).unwrap();
        minus.step(Action::Discrete(0)).unwrap();
        none.step(Action::Discrete(1)).unwrap();
        assert!(plus.state()[3] > 0.1 && minus.state()[3] < -0.1);
        assert!((plus.state()[3] + minus.state()[3]).abs() < 1e-9);
        assert!(none.state().iter().all(|s| s.abs() < 1e-12));
    }

    #[test]
    fn random_play_stays_in_bounds_and_pays_minus_one() {
        let trace = contract::random_run(&mut Acrobot::new(), 5, 3000);
        assert!(
            contract::steps(&trace)
                .all(|s| s.reward == if s.terminated { 0.0 } else { -1.0 } && !s.truncated)
        );
    }
}
