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
/// to [−π, π); never terminates (the registry truncates at 200 steps).
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
