use rand::RngExt;

use super::{check_state, gauge};
use crate::env::{Env, Out, Step};
use crate::error::{EnvError, Result};
use crate::rng::{DEFAULT_SEED, EnvRng, rng_from_seed};
use crate::space::{Action, BoxSpace, Space};

const GRAVITY: f64 = 9.8;
const MASS_CART: f64 = 1.0;
const MASS_POLE: f64 = 0.1;
const TOTAL_MASS: f64 = MASS_POLE + MASS_CART;
const LENGTH: f64 = 0.5; // half the pole's length
const POLEMASS_LENGTH: f64 = MASS_POLE * LENGTH;
const FORCE_MAG: f64 = 10.0;
const TAU: f64 = 0.02;
const THETA_THRESHOLD: f64 = 12.0 * 2.0 * std::f64::consts::PI / 360.0;
const X_THRESHOLD: f64 = 2.4;

/// CartPole-v1: push a cart left (0) or right (1) to keep its pole upright.
///
/// Observation `[x, ẋ, θ, θ̇]`; reward +1 on every step including the last;
/// `terminated` when |x| > 2.4 or |θ| > 12°. Euler integration with τ = 0.02 s.
#[derive(Debug, Clone)]
pub struct CartPole {
    state: [f64; 4],
    rng: EnvRng,
    obs_space: Space,
    act_space: Space,
    ready: bool,
}

impl Default for CartPole {
    fn default() -> Self {
        Self::new()
    }
}

impl CartPole {
    /// A new environment (call `reset` before stepping).
    pub fn new() -> Self {
        let high = [
            X_THRESHOLD as f32 * 2.0,
            f32::INFINITY,
            THETA_THRESHOLD as f32 * 2.0,
            f32::INFINITY,
        ];
        CartPole {
            state: [0.0; 4],
            rng: rng_from_seed(DEFAULT_SEED),
            obs_space: Space::Box(BoxSpace::new(
                high.iter().map(|h| -h).collect(),
                high.to_vec(),
            )),
            act_space: Space::Discrete(2),
            ready: false,
        }
    }

    /// The internal state `[x, ẋ, θ, θ̇]` in `f64`.
    pub fn state(&self) -> &[f64] {
        &self.state
    }

    /// Start from `state` (as after a reset).
    pub fn set_state(&mut self, state: &[f64]) -> Result<()> {
        check_state("CartPole", state, 4)?;
        self.state.copy_from_slice(state);
        self.ready = true;
        Ok(())
    }

    fn write(&self, out: Out<'_>) -> Result<()> {
        let obs = out.obs.f32()?;
        for (o, s) in obs.iter_mut().zip(&self.state) {
            *o = *s as f32;
        }
        Ok(())
    }
}

impl Env for CartPole {
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
        for s in &mut self.state {
            *s = self.rng.random_range(-0.05..0.05);
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
        let [x, x_dot, theta, theta_dot] = self.state;
        let force = if a == 1 { FORCE_MAG } else { -FORCE_MAG };
        let (sintheta, costheta) = theta.sin_cos();
        let temp = (force + POLEMASS_LENGTH * (theta_dot * theta_dot) * sintheta) / TOTAL_MASS;
        let thetaacc = (GRAVITY * sintheta - costheta * temp)
            / (LENGTH * (4.0 / 3.0 - MASS_POLE * (costheta * costheta) / TOTAL_MASS));
        let xacc = temp - POLEMASS_LENGTH * thetaacc * costheta / TOTAL_MASS;
        self.state = [
            x + TAU * x_dot,
            x_dot + TAU * xacc,
            theta + TAU * theta_dot,
            theta_dot + TAU * thetaacc,
        ];
        let [x, _, theta, _] = self.state;
        let terminated = !(-X_THRESHOLD..=X_THRESHOLD).contains(&x)
            || !(-THETA_THRESHOLD..=THETA_THRESHOLD).contains(&theta);
        self.ready = !terminated;
        self.write(out)?;
        Ok(Step {
            reward: 1.0,
            terminated,
            truncated: false,
        })
    }
    fn render_ansi(&self) -> String {
        let [x, _, theta, _] = self.state;
        format!(
            "|{}| x={x:+.3} θ={:+.1}°",
            gauge(x, -X_THRESHOLD, X_THRESHOLD, 41, 'C'),
            theta.to_degrees()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::super::contract;
    use super::*;
    use crate::env::EnvExt;

    fn at(state: [f64; 4]) -> CartPole {
        let mut env = CartPole::new();
        env.set_state(&state).unwrap();
        env
    }

    #[test]
    fn shared_contract() {
        contract::check(
            CartPole::new(),
            &[0.01, 0.0, 0.02, 0.0],
            Action::Discrete(1),
            &[
                Action::Discrete(2),
                Action::Continuous(&[1.0]),
                Action::MultiDiscrete(&[1]),
            ],
        );
    }

    #[test]
    fn initial_states_are_uniform_in_a_small_box_and_observed_as_f32() {
        let mut env = CartPole::new();
        let (mut lo, mut hi) = (f64::MAX, f64::MIN);
        for seed in 0..300 {
            let (obs, _) = env.reset(Some(seed)).unwrap();
            let state = env.state().to_vec();
            for (o, s) in obs.to_f32().iter().zip(&state) {
                assert!((-0.05..0.05).contains(s), "{state:?}");
                assert_eq!(*o, *s as f32);
                lo = lo.min(*s);
                hi = hi.max(*s);
            }
        }
        assert!(
            lo < -0.049 && hi > 0.049,
            "[{lo}, {hi}] does not fill the box"
        );
    }

    #[test]
    fn euler_integration_moves_position_with_the_old_velocity() {
        // Semi-implicit Euler would use the updated velocity; Gymnasium's "euler" does not.
        let mut env = at([0.0, 1.0, 0.0, 0.5]);
        env.step(Action::Discrete(1)).unwrap();
        assert_eq!(env.state()[0], 0.02);
        assert_eq!(env.state()[2], 0.01);
    }

    #[test]
    fn the_push_direction_follows_the_action_and_is_symmetric() {
        let mut right = at([0.0; 4]);
        let mut left = at([0.0; 4]);
        right.step(Action::Discrete(1)).unwrap();
        left.step(Action::Discrete(0)).unwrap();
        let (r, l) = (right.state(), left.state());
        assert!(r[1] > 0.0 && r[3] < 0.0, "{r:?}");
        for (a, b) in r.iter().zip(l) {
            assert_eq!(*a, -*b);
        }
    }

    #[test]
    fn termination_thresholds_are_strict_and_the_last_step_pays_one() {
        // On the boundary (|x| = 2.4, |θ| = 12°) the episode goes on.
        for state in [
            [2.4, 0.0, 0.0, 0.0],
            [-2.4, 0.0, 0.0, 0.0],
            [0.0, 0.0, THETA_THRESHOLD, 0.0],
            [0.0, 0.0, -THETA_THRESHOLD, 0.0],
        ] {
            let t = at(state).step(Action::Discrete(0)).unwrap();
            assert!(!t.terminated, "{state:?}");
        }
        for state in [
            [2.39, 1.0, 0.0, 0.0],
            [-2.39, -1.0, 0.0, 0.0],
            [0.0, 0.0, 0.2, 1.0],
            [0.0, 0.0, -0.2, -1.0],
        ] {
            let mut env = at(state);
            let t = env.step(Action::Discrete(1)).unwrap();
            assert!(t.terminated && !t.truncated, "{state:?}");
            assert_eq!(t.reward, 1.0);
            assert!(matches!(
                env.step(Action::Discrete(1)),
                Err(EnvError::NeedsReset(_))
            ));
        }
    }

    #[test]
    fn every_step_pays_one() {
        let trace = contract::random_run(&mut CartPole::new(), 3, 2000);
        assert!(contract::steps(&trace).filter(|s| s.terminated).count() > 20);
        assert!(contract::steps(&trace).all(|s| s.reward == 1.0 && !s.truncated));
    }

    #[test]
    fn render_shows_the_cart_and_the_angle() {
        let env = at([0.0, 0.0, 0.1, 0.0]);
        let text = env.render_ansi();
        assert!(text.contains('C') && text.contains("+5.7°"), "{text}");
    }
}
