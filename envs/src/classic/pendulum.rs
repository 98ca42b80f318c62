use std::f64::consts::PI;

use rand::RngExt;

use super::{check_state, gauge};
use crate::env::{Env, Out, Step};
use crate::error::{EnvError, Result};
use crate::rng::{DEFAULT_SEED, EnvRng, rng_from_seed};
use crate::space::{Action, BoxSpace, Space};

const MAX_SPEED: f64 = 8.0;
const MAX_TORQUE: f32 = 2.0;
const DT: f64 = 0.05;

/// Pendulum-v1: apply a torque in [−2, 2] to swing a pendulum upright and keep it there.
///
/// Observation `[cos θ, sin θ, θ̇]`; reward −(θ² + 0.1·θ̇² + 0.001·u²) with θ normalised
/// to [−π, π); never terminates (the registry truncates at 200 steps). The angular
/// velocity is clipped to [−8, 8].
///
/// Unlike Gymnasium, which clips the torque into [−2, 2], a torque outside the action
/// space (say 2.5, or NaN) is an [`EnvError::InvalidAction`] and leaves the state
/// unchanged: a policy clips to the bounds itself.
#[derive(Debug, Clone)]
pub struct Pendulum {
    state: [f64; 2],
    g: f64,
    last_u: Option<f32>,
    rng: EnvRng,
    obs_space: Space,
    act_space: Space,
    ready: bool,
}

impl Pendulum {
    /// A new environment with gravity `g` (Gymnasium's default is 10).
    pub fn new(g: f64) -> Self {
        Pendulum {
            state: [0.0; 2],
            g,
            last_u: None,
            rng: rng_from_seed(DEFAULT_SEED),
            obs_space: Space::Box(BoxSpace::new(
                vec![-1.0, -1.0, -MAX_SPEED as f32],
                vec![1.0, 1.0, MAX_SPEED as f32],
            )),
            act_space: Space::Box(BoxSpace::new(vec![-MAX_TORQUE], vec![MAX_TORQUE])),
            ready: false,
        }
    }

    /// The internal state `[θ, θ̇]` in `f64`.
    pub fn state(&self) -> &[f64] {
        &self.state
    }

    /// Start from `state` (as after a reset).
    pub fn set_state(&mut self, state: &[f64]) -> Result<()> {
        check_state("Pendulum", state, 2)?;
        self.state.copy_from_slice(state);
        self.last_u = None;
        self.ready = true;
        Ok(())
    }

    fn write(&self, out: Out<'_>) -> Result<()> {
        let [th, thdot] = self.state;
        let obs = out.obs.f32()?;
        obs.copy_from_slice(&[th.cos() as f32, th.sin() as f32, thdot as f32]);
        Ok(())
    }
}

/// θ mapped to [−π, π) (Python's floor modulo).
fn angle_normalize(x: f64) -> f64 {
    (x + PI).rem_euclid(2.0 * PI) - PI
}

impl Env for Pendulum {
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
        self.state = [
            self.rng.random_range(-PI..PI),
            self.rng.random_range(-1.0..1.0),
        ];
        self.last_u = None;
        self.ready = true;
        self.write(out)
    }
    #[inline]
    fn step_into(&mut self, action: Action<'_>, out: Out<'_>) -> Result<Step> {
        let u = self.act_space.continuous_values(&action)?[0];
        if !self.ready {
            return Err(EnvError::NeedsReset("before reset"));
        }
        let [th, thdot] = self.state;
        // As in Gymnasium, the torque terms are computed in f32 (the action's precision).
        let costs =
            angle_normalize(th).powi(2) + 0.1 * (thdot * thdot) + (0.001f32 * (u * u)) as f64;
        let newthdot = thdot + (3.0 * self.g / 2.0 * th.sin() + (3.0f32 * u) as f64) * DT;
        let newthdot = newthdot.clamp(-MAX_SPEED, MAX_SPEED);
        self.state = [th + newthdot * DT, newthdot];
        self.last_u = Some(u);
        self.write(out)?;
        Ok(Step::running(-costs))
    }
    fn render_ansi(&self) -> String {
        let th = angle_normalize(self.state[0]);
        let u = self
            .last_u
            .map_or(String::from("-"), |u| format!("{u:+.2}"));
        format!(
            "angle |{}| θ={:+.1}° torque {u}",
            gauge(th, -PI, PI, 41, 'o'),
            th.to_degrees()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::super::contract;
    use super::*;
    use crate::env::EnvExt;

    fn at(state: [f64; 2]) -> Pendulum {
        let mut env = Pendulum::new(10.0);
        env.set_state(&state).unwrap();
        env
    }

    #[test]
    fn shared_contract() {
        contract::check(
            Pendulum::new(10.0),
            &[1.0, 0.5],
            Action::Continuous(&[1.0]),
            &[
                Action::Continuous(&[2.5]),
                Action::Continuous(&[-2.0001]),
                Action::Continuous(&[f32::NAN]),
                Action::Continuous(&[f32::NEG_INFINITY]),
                Action::Continuous(&[0.0, 0.0]),
                Action::Discrete(0),
            ],
        );
    }

    #[test]
    fn the_torque_bounds_themselves_are_valid() {
        let mut env = at([0.0, 0.0]);
        env.step(Action::Continuous(&[2.0])).unwrap();
        env.step(Action::Continuous(&[-2.0])).unwrap();
    }

    #[test]
    fn initial_states_cover_every_angle_and_slow_speeds() {
        let mut env = Pendulum::new(10.0);
        let (mut lo, mut hi) = (0.0f64, 0.0f64);
        for seed in 0..300 {
            let (obs, _) = env.reset(Some(seed)).unwrap();
            let [th, thdot] = [env.state()[0], env.state()[1]];
            assert!((-PI..PI).contains(&th) && (-1.0..1.0).contains(&thdot));
            assert_eq!(
                obs.to_f32(),
                vec![th.cos() as f32, th.sin() as f32, thdot as f32]
            );
            (lo, hi) = (lo.min(th), hi.max(th));
        }
        assert!(lo < -3.0 && hi > 3.0);
    }

    #[test]
    fn angles_normalise_into_minus_pi_to_pi() {
        // Expected values computed by Gymnasium 1.4's `angle_normalize`, bit for bit.
        for (x, want) in [
            (PI, -PI),
            (-PI, -PI),
            (0.3, 0.2999999999999998),
            (1.5 * PI, -std::f64::consts::FRAC_PI_2),
            (-7.0, -0.7168146928204138),
            (4.0 * PI + 0.5, 0.5),
            (2.0 * PI, 0.0),
            (-1e-17, 0.0),
        ] {
            assert_eq!(angle_normalize(x), want, "angle_normalize({x})");
        }
    }

    #[test]
    fn costs_use_the_normalised_angle_speed_and_torque() {
        // Upside down (θ = π, normalised to −π): cost π².
        assert_eq!(
            at([PI, 0.0])
                .step(Action::Continuous(&[0.0]))
                .unwrap()
                .reward,
            -PI * PI
        );
        // Upright at rest: no cost, no motion.
        let mut env = at([0.0, 0.0]);
        assert_eq!(env.step(Action::Continuous(&[0.0])).unwrap().reward, 0.0);
        assert_eq!(env.state(), [0.0, 0.0]);
        let r = at([0.0, 0.0])
            .step(Action::Continuous(&[2.0]))
            .unwrap()
            .reward;
        assert!((r + 0.004).abs() < 1e-9, "{r}");
        let r = at([0.0, 1.0])
            .step(Action::Continuous(&[0.0]))
            .unwrap()
            .reward;
        assert_eq!(r, -0.1);
        // Two full turns cost as much as none.
        let r = at([4.0 * PI + 0.5, 0.0])
            .step(Action::Continuous(&[0.0]))
            .unwrap()
            .reward;
        assert!((r + 0.25).abs() < 1e-12, "{r}");
    }

    #[test]
    fn speed_is_clipped_to_eight() {
        let mut env = at([PI / 2.0, 7.9]);
        env.step(Action::Continuous(&[2.0])).unwrap();
        assert_eq!(env.state(), [PI / 2.0 + MAX_SPEED * DT, MAX_SPEED]);
        let mut env = at([-PI / 2.0, -7.9]);
        let t = env.step(Action::Continuous(&[-2.0])).unwrap();
        assert_eq!(t.obs.to_f32()[2], -8.0);
    }

    #[test]
    fn gravity_is_a_parameter() {
        let mut env = Pendulum::new(0.0);
        env.set_state(&[1.0, 0.5]).unwrap();
        env.step(Action::Continuous(&[0.0])).unwrap();
        assert_eq!(env.state(), [1.0 + 0.5 * DT, 0.5]);
        // Stronger gravity pulls a tilted pendulum faster.
        let fall = |g| {
            let mut env = Pendulum::new(g);
            env.set_state(&[0.5, 0.0]).unwrap();
            env.step(Action::Continuous(&[0.0])).unwrap();
            env.state()[1]
        };
        assert!(fall(20.0) > fall(10.0) && fall(10.0) > 0.0);
    }

    #[test]
    fn it_never_terminates() {
        let trace = contract::random_run(&mut Pendulum::new(10.0), 4, 3000);
        assert_eq!(trace.len(), 3001);
        assert!(contract::steps(&trace).all(|s| !s.done() && s.reward <= 0.0));
    }

    #[test]
    fn render_shows_the_angle_and_the_last_torque() {
        let mut env = at([0.0, 0.0]);
        assert!(env.render_ansi().contains("torque -"));
        env.step(Action::Continuous(&[1.5])).unwrap();
        assert!(
            env.render_ansi().contains("torque +1.50"),
            "{}",
            env.render_ansi()
        );
    }
}
