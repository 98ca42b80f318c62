//! Adders: turn the steps of one environment stream into the transitions a buffer stores.
//!
//! An adder sees one stream of consecutive steps (one environment; a vector environment
//! of N copies needs N adders) and writes each transition it completes into a
//! [`TransitionSink`]. Keeping this apart from the buffers means every buffer stores
//! whatever [`TransitionRef`] it is given and the n-step bookkeeping is written (and
//! tested) once.
//!
//! - [`OneStep`]: each step is a transition (`k = 1`), emitted at once.
//! - [`NStep`]: each step starts a window of up to `n` steps; a window is emitted when
//!   it is full or, shorter, when the episode ends inside it.
//!
//! Both follow Gymnasium's split of episode ends: when a step has `terminated` the
//! transitions whose window contains it get `discount = 0`; when it has only
//! `truncated` they keep `discount = γ^k` and bootstrap from the final observation.
//! Either way the episode's remaining windows are flushed at that step, so no transition
//! spans two episodes.

use crate::error::{MemoryError, Result};
use crate::transition::{Step, TransitionRef, TransitionSink, check_len};

/// Turns the steps of one environment stream into transitions.
pub trait Adder {
    /// Takes the next step of the stream and writes every transition it completes into
    /// `sink` (none, one, or — at an episode end — up to `n`).
    ///
    /// Fails if the observations do not have the adder's length (nothing is recorded
    /// then) or if the sink refuses a transition.
    fn add<S: TransitionSink + ?Sized>(&mut self, step: &Step<'_>, sink: &mut S) -> Result<()>;

    /// Steps received whose transitions have not been emitted yet (at most `n - 1`).
    fn pending(&self) -> usize;

    /// Forgets the pending steps, for a stream that stops mid-episode without an end
    /// flag (such as a manual reset); their transitions are never emitted.
    fn clear(&mut self);
}

fn check_gamma(gamma: f32) -> Result<()> {
    if (0.0..=1.0).contains(&gamma) {
        Ok(())
    } else {
        Err(MemoryError::InvalidConfig(format!(
            "discount factor gamma = {gamma} must be in [0, 1]"
        )))
    }
}

fn check_step(obs_dim: usize, step: &Step<'_>) -> Result<()> {
    check_len("obs", obs_dim, step.obs.len())?;
    check_len("next_obs", obs_dim, step.next_obs.len())
}

/// The one-step adder: every step is emitted at once as a transition with `k = 1`,
/// `discount = γ` (0 if the step terminated the episode).
#[derive(Clone, Debug, PartialEq)]
pub struct OneStep {
    gamma: f32,
    obs_dim: usize,
}

impl OneStep {
    /// An adder for observations of length `obs_dim`, discounting with `gamma` ∈ `[0, 1]`.
    pub fn new(gamma: f32, obs_dim: usize) -> Result<Self> {
        check_gamma(gamma)?;
        Ok(OneStep { gamma, obs_dim })
    }

    /// The discount factor γ.
    pub fn gamma(&self) -> f32 {
        self.gamma
    }
}

impl Adder for OneStep {
    fn add<S: TransitionSink + ?Sized>(&mut self, step: &Step<'_>, sink: &mut S) -> Result<()> {
        check_step(self.obs_dim, step)?;
        sink.insert(TransitionRef {
            obs: step.obs,
            action: step.action,
            reward: step.reward,
            next_obs: step.next_obs,
            discount: if step.terminated { 0.0 } else { self.gamma },
            steps: 1,
        })
    }

    fn pending(&self) -> usize {
        0
    }

    fn clear(&mut self) {}
}

/// The n-step adder: the transition starting at step `t` spans `k = min(n, steps left in
/// the episode)` steps, with reward `Σ_{i<k} γ^i r_(t+i)`, the observation after step
/// `t+k-1` as `next_obs`, and `discount = γ^k` — or 0 if the episode terminated at
/// step `t+k-1`.
///
/// It keeps the last `n - 1` steps in preallocated ring storage, so adding allocates
/// nothing. Reward sums and powers of γ are computed in `f64`.
#[derive(Clone, Debug, PartialEq)]
pub struct NStep {
    n: usize,
    gamma: f32,
    obs_dim: usize,
    /// Ring of the pending steps' observations, `n × obs_dim`.
    obs: Vec<f32>,
    actions: Vec<u32>,
    rewards: Vec<f32>,
    /// Ring position of the oldest pending step.
    head: usize,
    /// Number of pending steps.
    len: usize,
}

impl NStep {
    /// An adder of `n`-step windows (`n ≥ 1`) for observations of length `obs_dim`,
    /// discounting with `gamma` ∈ `[0, 1]`. With `n = 1` it emits what [`OneStep`] does.
    pub fn new(n: usize, gamma: f32, obs_dim: usize) -> Result<Self> {
        check_gamma(gamma)?;
        if n == 0 || n > u32::MAX as usize {
            return Err(MemoryError::InvalidConfig(format!(
                "n-step window n = {n} must be in 1..=u32::MAX"
            )));
        }
        let ring = n.checked_mul(obs_dim).ok_or_else(|| {
            MemoryError::InvalidConfig(format!("n = {n} × obs_dim = {obs_dim} is too large"))
        })?;
        Ok(NStep {
            n,
            gamma,
            obs_dim,
            obs: vec![0.0; ring],
            actions: vec![0; n],
            rewards: vec![0.0; n],
            head: 0,
            len: 0,
        })
    }

    /// The window length n.
    pub fn n(&self) -> usize {
        self.n
    }

    /// The discount factor γ.
    pub fn gamma(&self) -> f32 {
        self.gamma
    }

    /// Emits the window that starts at the oldest pending step and ends at the newest,
    /// then drops that oldest step.
    fn emit_oldest<S: TransitionSink + ?Sized>(
        &mut self,
        next_obs: &[f32],
        terminated: bool,
        sink: &mut S,
    ) -> Result<()> {
        let gamma = f64::from(self.gamma);
        let mut reward = 0.0f64;
        let mut power = 1.0f64;
        for i in 0..self.len {
            reward += power * f64::from(self.rewards[(self.head + i) % self.n]);
            power *= gamma;
        }
        let slot = self.head;
        let steps = self.len as u32;
        self.head = (self.head + 1) % self.n;
        self.len -= 1;
        sink.insert(TransitionRef {
            obs: &self.obs[slot * self.obs_dim..(slot + 1) * self.obs_dim],
            action: self.actions[slot],
            reward: reward as f32,
            next_obs,
            discount: if terminated { 0.0 } else { power as f32 },
            steps,
        })
    }
}

impl Adder for NStep {
    fn add<S: TransitionSink + ?Sized>(&mut self, step: &Step<'_>, sink: &mut S) -> Result<()> {
        check_step(self.obs_dim, step)?;
        let slot = (self.head + self.len) % self.n;
        self.obs[slot * self.obs_dim..(slot + 1) * self.obs_dim].copy_from_slice(step.obs);
        self.actions[slot] = step.action;
        self.rewards[slot] = step.reward;
        self.len += 1;
        if step.done() {
            // Every pending window ends here; the shorter ones are flushed too, so the
            // next step (the first of a new episode) starts with an empty ring.
            while self.len > 0 {
                if let Err(e) = self.emit_oldest(step.next_obs, step.terminated, sink) {
                    self.clear();
                    return Err(e);
                }
            }
        } else if self.len == self.n {
            self.emit_oldest(step.next_obs, false, sink)?;
        }
        Ok(())
    }

    fn pending(&self) -> usize {
        self.len
    }

    fn clear(&mut self) {
        self.head = 0;
        self.len = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transition::Transition;
    use proptest::prelude::*;

    /// Feeds one episode whose step `t` has observation `[base + t]`, next observation
    /// `[base + t + 1]` and action `t`, ending by `end` at its last step (or not at all).
    fn feed(
        adder: &mut impl Adder,
        out: &mut Vec<Transition>,
        base: f32,
        rewards: &[f32],
        end: End,
    ) -> Vec<usize> {
        let mut emitted_per_step = Vec::new();
        for (t, &reward) in rewards.iter().enumerate() {
            let last = t + 1 == rewards.len();
            let obs = [base + t as f32];
            let next_obs = [base + t as f32 + 1.0];
            let before = out.len();
            adder
                .add(
                    &Step {
                        obs: &obs,
                        action: t as u32,
                        reward,
                        terminated: last && end == End::Terminated,
                        truncated: last && end == End::Truncated,
                        next_obs: &next_obs,
                    },
                    out,
                )
                .unwrap();
            emitted_per_step.push(out.len() - before);
        }
        emitted_per_step
    }

    #[derive(Clone, Copy, Debug, PartialEq)]
    enum End {
        Terminated,
        Truncated,
        Running,
    }

    fn tr(obs: f32, action: u32, reward: f32, next: f32, discount: f32, steps: u32) -> Transition {
        Transition {
            obs: vec![obs],
            action,
            reward,
            next_obs: vec![next],
            discount,
            steps,
        }
    }

    fn assert_close(got: &[Transition], want: &[Transition]) {
        assert_eq!(got.len(), want.len(), "{got:?}\n{want:?}");
        for (g, w) in got.iter().zip(want) {
            assert_eq!(
                (&g.obs, g.action, &g.next_obs, g.steps),
                (&w.obs, w.action, &w.next_obs, w.steps)
            );
            assert!((g.reward - w.reward).abs() < 1e-6, "{g:?} vs {w:?}");
            assert!((g.discount - w.discount).abs() < 1e-7, "{g:?} vs {w:?}");
        }
    }

    #[test]
    fn n3_termination_at_step_2_flushes_both_windows_with_discount_0() {
        let mut adder = NStep::new(3, 0.5, 1).unwrap();
        let mut out = Vec::new();
        let per_step = feed(&mut adder, &mut out, 0.0, &[1.0, 2.0], End::Terminated);
        assert_eq!(per_step, [0, 2]);
        assert_close(
            &out,
            &[
                tr(0.0, 0, 1.0 + 0.5 * 2.0, 2.0, 0.0, 2),
                tr(1.0, 1, 2.0, 2.0, 0.0, 1),
            ],
        );
        assert_eq!(adder.pending(), 0);
    }

    #[test]
    fn n3_truncation_keeps_gamma_to_the_k_and_bootstraps_from_the_final_obs() {
        let mut adder = NStep::new(3, 0.5, 1).unwrap();
        let mut out = Vec::new();
        let per_step = feed(
            &mut adder,
            &mut out,
            10.0,
            &[1.0, 2.0, 3.0, 4.0, 5.0],
            End::Truncated,
        );
        assert_eq!(per_step, [0, 0, 1, 1, 3]);
        assert_close(
            &out,
            &[
                tr(10.0, 0, 1.0 + 0.5 * 2.0 + 0.25 * 3.0, 13.0, 0.125, 3),
                tr(11.0, 1, 2.0 + 0.5 * 3.0 + 0.25 * 4.0, 14.0, 0.125, 3),
                tr(12.0, 2, 3.0 + 0.5 * 4.0 + 0.25 * 5.0, 15.0, 0.125, 3),
                tr(13.0, 3, 4.0 + 0.5 * 5.0, 15.0, 0.25, 2),
                tr(14.0, 4, 5.0, 15.0, 0.5, 1),
            ],
        );
    }

    #[test]
    fn n3_termination_after_a_full_window_zeroes_every_window_containing_it() {
        let mut adder = NStep::new(3, 0.5, 1).unwrap();
        let mut out = Vec::new();
        feed(
            &mut adder,
            &mut out,
            20.0,
            &[1.0, 1.0, 1.0, 1.0],
            End::Terminated,
        );
        assert_close(
            &out,
            &[
                // The first window ends before the terminal step: it bootstraps.
                tr(20.0, 0, 1.75, 23.0, 0.125, 3),
                tr(21.0, 1, 1.75, 24.0, 0.0, 3),
                tr(22.0, 2, 1.5, 24.0, 0.0, 2),
                tr(23.0, 3, 1.0, 24.0, 0.0, 1),
            ],
        );
    }

    #[test]
    fn no_transition_crosses_an_episode_boundary() {
        let mut adder = NStep::new(3, 0.9, 1).unwrap();
        let mut out = Vec::new();
        // Episode e has observations in [100 e, 100 e + 99].
        feed(&mut adder, &mut out, 0.0, &[1.0, 2.0], End::Terminated);
        feed(&mut adder, &mut out, 100.0, &[1.0; 5], End::Truncated);
        feed(&mut adder, &mut out, 200.0, &[1.0], End::Truncated);
        feed(&mut adder, &mut out, 300.0, &[1.0; 4], End::Terminated);
        feed(&mut adder, &mut out, 400.0, &[1.0; 4], End::Running);
        assert_eq!(out.len(), 2 + 5 + 1 + 4 + 2);
        for t in &out {
            let episode = (t.obs[0] / 100.0).floor();
            // `next_obs` may be the final observation, one past the last step's obs.
            assert_eq!(((t.next_obs[0] - 1.0) / 100.0).floor(), episode, "{t:?}");
            assert_eq!(t.next_obs[0] - t.obs[0], t.steps as f32, "{t:?}");
        }
        assert_eq!(adder.pending(), 2);
        adder.clear();
        assert_eq!(adder.pending(), 0);
    }

    fn feed_three_episodes(adder: &mut impl Adder) -> Vec<Transition> {
        let mut out = Vec::new();
        feed(adder, &mut out, 0.0, &[1.0, 2.0], End::Terminated);
        feed(adder, &mut out, 10.0, &[1.0, 2.0, 3.0], End::Truncated);
        feed(adder, &mut out, 20.0, &[1.0, 2.0], End::Running);
        out
    }

    #[test]
    fn one_step_and_nstep_with_n_1_agree() {
        let a = feed_three_episodes(&mut OneStep::new(0.9, 1).unwrap());
        let b = feed_three_episodes(&mut NStep::new(1, 0.9, 1).unwrap());
        assert_eq!(a, b);
        assert_eq!(a.len(), 7);
        assert_close(
            &a[..2],
            &[tr(0.0, 0, 1.0, 1.0, 0.9, 1), tr(1.0, 1, 2.0, 2.0, 0.0, 1)],
        );
        assert_close(&a[4..5], &[tr(12.0, 2, 3.0, 13.0, 0.9, 1)]);
    }

    #[test]
    fn wrong_lengths_and_bad_parameters_are_errors() {
        let mut adder = NStep::new(3, 0.9, 2).unwrap();
        let mut out = Vec::new();
        let step = Step {
            obs: &[0.0],
            action: 0,
            reward: 0.0,
            terminated: false,
            truncated: false,
            next_obs: &[0.0, 0.0],
        };
        assert!(matches!(
            adder.add(&step, &mut out),
            Err(MemoryError::Length { what: "obs", .. })
        ));
        assert_eq!(adder.pending(), 0);
        assert!(NStep::new(0, 0.9, 2).is_err());
        assert!(NStep::new(3, 1.5, 2).is_err());
        assert!(NStep::new(3, f32::NAN, 2).is_err());
        assert!(OneStep::new(-0.1, 2).is_err());
    }

    /// The n-step transitions of whole episodes, straight from the definition.
    fn reference(n: usize, gamma: f32, episodes: &[(Vec<f32>, End)]) -> Vec<Transition> {
        let mut out = Vec::new();
        for (e, (rewards, end)) in episodes.iter().enumerate() {
            let base = 1000.0 * e as f32;
            let len = rewards.len();
            for t in 0..len {
                let k = n.min(len - t);
                if k < n && *end == End::Running {
                    continue;
                }
                let g = f64::from(gamma);
                let reward: f64 = (0..k)
                    .map(|i| g.powi(i as i32) * f64::from(rewards[t + i]))
                    .sum();
                let terminal_inside = *end == End::Terminated && t + k == len;
                out.push(tr(
                    base + t as f32,
                    t as u32,
                    reward as f32,
                    base + (t + k) as f32,
                    if terminal_inside {
                        0.0
                    } else {
                        g.powi(k as i32) as f32
                    },
                    k as u32,
                ));
            }
        }
        out
    }

    fn episodes() -> impl Strategy<Value = Vec<(Vec<f32>, End)>> {
        let end = prop_oneof![Just(End::Terminated), Just(End::Truncated)];
        let episode = (prop::collection::vec(-10.0f32..10.0, 1..9), end);
        (
            prop::collection::vec(episode, 0..6),
            prop::collection::vec(-10.0f32..10.0, 0..9),
        )
            .prop_map(|(mut done, running)| {
                if !running.is_empty() {
                    done.push((running, End::Running));
                }
                done
            })
    }

    proptest! {
        #[test]
        fn nstep_matches_the_definition(n in 1usize..6, gamma in 0.0f32..=1.0, eps in episodes()) {
            let mut adder = NStep::new(n, gamma, 1).unwrap();
            let mut out = Vec::new();
            for (e, (rewards, end)) in eps.iter().enumerate() {
                feed(&mut adder, &mut out, 1000.0 * e as f32, rewards, *end);
            }
            let want = reference(n, gamma, &eps);
            prop_assert_eq!(out.len(), want.len());
            for (g, w) in out.iter().zip(&want) {
                prop_assert_eq!((&g.obs, g.action, &g.next_obs, g.steps), (&w.obs, w.action, &w.next_obs, w.steps));
                prop_assert!((g.reward - w.reward).abs() <= 1e-4 * (1.0 + w.reward.abs()));
                prop_assert!((g.discount - w.discount).abs() <= 1e-6);
            }
        }
    }
}
