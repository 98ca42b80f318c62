//! Advantage and return targets, as pure functions over flat `[T × N]` rollouts
//! (step-major: element `t * N + i` is step `t` of environment `i`).
//!
//! Truncation is handled as Gymnasium intends, unlike CleanRL's `ppo.py`: a step that
//! ends its episode by `truncated` (a time limit) bootstraps from the value of its final
//! observation, a step that ends by `terminated` bootstraps with 0, and either way the
//! advantage trace does not flow across the episode boundary.

/// One rollout of `steps × num_envs` transitions, step-major.
#[derive(Clone, Copy, Debug)]
pub struct Rollout<'a> {
    /// Environments stepped in parallel (N).
    pub num_envs: usize,
    /// Rewards r_t.
    pub rewards: &'a [f32],
    /// V(s_t) of the observation each action was taken in.
    pub values: &'a [f32],
    /// V of the state after each step: V(s_{t+1}) within an episode (for the last step,
    /// the value of the observation the rollout stopped at), V(final observation) where
    /// the step was truncated; ignored where it terminated.
    pub next_values: &'a [f32],
    /// The step ended its episode in a terminal state.
    pub terminated: &'a [bool],
    /// The step ended its episode by truncation.
    pub truncated: &'a [bool],
}

impl Rollout<'_> {
    fn len(&self) -> usize {
        self.rewards.len()
    }

    fn check(&self) {
        let n = self.len();
        assert!(
            self.num_envs > 0 && n.is_multiple_of(self.num_envs),
            "rollout of {n} steps is not a multiple of {} environments",
            self.num_envs
        );
        for (name, len) in [
            ("values", self.values.len()),
            ("next_values", self.next_values.len()),
            ("terminated", self.terminated.len()),
            ("truncated", self.truncated.len()),
        ] {
            assert_eq!(
                len, n,
                "rollout field {name} has {len} entries, rewards {n}"
            );
        }
    }

    /// r_t + γ·V(next) (0 after a terminal step).
    #[inline]
    fn target(&self, k: usize, gamma: f32) -> f32 {
        let bootstrap = if self.terminated[k] {
            0.0
        } else {
            self.next_values[k]
        };
        self.rewards[k] + gamma * bootstrap
    }
}

/// Generalised advantage estimation (Schulman et al. 2016): writes the advantages Â_t and
/// the value targets Â_t + V(s_t) into `advantages` and `returns` (each `T × N`).
///
/// # Panics
/// If the slices differ in length or are not a multiple of `num_envs` (a programming error).
pub fn gae(
    rollout: &Rollout<'_>,
    gamma: f32,
    lambda: f32,
    advantages: &mut [f32],
    returns: &mut [f32],
) {
    rollout.check();
    assert_eq!(advantages.len(), rollout.len());
    assert_eq!(returns.len(), rollout.len());
    let n = rollout.num_envs;
    let steps = rollout.len() / n;
    for i in 0..n {
        let mut next_advantage = 0.0;
        for t in (0..steps).rev() {
            let k = t * n + i;
            let delta = rollout.target(k, gamma) - rollout.values[k];
            let episode_ends = rollout.terminated[k] || rollout.truncated[k];
            let carry = if episode_ends {
                0.0
            } else {
                gamma * lambda * next_advantage
            };
            advantages[k] = delta + carry;
            returns[k] = advantages[k] + rollout.values[k];
            next_advantage = advantages[k];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(r: &Rollout<'_>, gamma: f32, lambda: f32) -> (Vec<f32>, Vec<f32>) {
        let mut adv = vec![0.0; r.len()];
        let mut ret = vec![0.0; r.len()];
        gae(r, gamma, lambda, &mut adv, &mut ret);
        (adv, ret)
    }

    fn close(a: &[f32], b: &[f32]) {
        assert!(
            a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-5),
            "{a:?} vs {b:?}"
        );
    }

    #[test]
    fn hand_computed_single_environment() {
        // Three steps, no episode end; bootstrap V = 4 after the last.
        let r = Rollout {
            num_envs: 1,
            rewards: &[1.0, 2.0, 3.0],
            values: &[0.5, 1.0, 1.5],
            next_values: &[1.0, 1.5, 4.0],
            terminated: &[false; 3],
            truncated: &[false; 3],
        };
        let (g, l) = (0.9, 0.8);
        let d2 = 3.0 + g * 4.0 - 1.5; // 5.1
        let d1 = 2.0 + g * 1.5 - 1.0; // 2.35
        let d0 = 1.0 + g * 1.0 - 0.5; // 1.4
        let a2 = d2;
        let a1 = d1 + g * l * a2;
        let a0 = d0 + g * l * a1;
        let (adv, ret) = run(&r, g, l);
        close(&adv, &[a0, a1, a2]);
        close(&ret, &[a0 + 0.5, a1 + 1.0, a2 + 1.5]);
        // λ = 1 gives discounted returns minus values; λ = 0 the one-step TD errors.
        let (adv, _) = run(&r, g, 0.0);
        close(&adv, &[d0, d1, d2]);
        let (_, ret) = run(&r, g, 1.0);
        close(
            &ret,
            &[
                1.0 + g * (2.0 + g * (3.0 + g * 4.0)),
                2.0 + g * (3.0 + g * 4.0),
                3.0 + g * 4.0,
            ],
        );
    }

    #[test]
    fn episode_ends_cut_the_trace_and_bootstrap_correctly() {
        // Two environments, two steps; env 0 terminates at t=0, env 1 is truncated at t=0
        // with a final-observation value of 10.
        let r = Rollout {
            num_envs: 2,
            rewards: &[1.0, 1.0, 1.0, 1.0],
            values: &[2.0, 2.0, 3.0, 3.0],
            next_values: &[99.0, 10.0, 5.0, 5.0],
            terminated: &[true, false, false, false],
            truncated: &[false, true, false, false],
        };
        let (g, l) = (0.5, 0.9);
        let (adv, _) = run(&r, g, l);
        let a_t1 = 1.0 + g * 5.0 - 3.0;
        close(&adv, &[1.0 - 2.0, 1.0 + g * 10.0 - 2.0, a_t1, a_t1]);
    }

    /// An environment whose only ending is truncation: reward 1 every step, episodes cut
    /// after 3 steps. Its true value is the infinite discounted sum 1/(1−γ) in every state;
    /// bootstrapping from the final observation finds it, treating truncation as
    /// termination (CleanRL's `ppo.py`) does not.
    #[test]
    fn truncation_only_environment_keeps_its_value() {
        let (g, v) = (0.9f32, 10.0f32);
        let steps = 6;
        let truncated: Vec<bool> = (0..steps).map(|t| t % 3 == 2).collect();
        let r = Rollout {
            num_envs: 1,
            rewards: &vec![1.0; steps],
            values: &vec![v; steps],
            next_values: &vec![v; steps],
            terminated: &vec![false; steps],
            truncated: &truncated,
        };
        let (adv, ret) = run(&r, g, 0.95);
        close(&adv, &vec![0.0; steps]);
        close(&ret, &vec![v; steps]);
        // Treating the cut as terminal makes the last step's target 1, not 10.
        let wrong = Rollout {
            terminated: &truncated,
            truncated: &vec![false; steps],
            ..r
        };
        let (_, ret) = run(&wrong, g, 0.95);
        assert!((ret[2] - 1.0).abs() < 1e-6);
    }
}
