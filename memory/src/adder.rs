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
//! `truncated` they keep `discount = γ^D` and bootstrap from the final observation.
//! Either way the episode's remaining windows are flushed at that step, so no transition
//! spans two episodes.
//!
//! Discounting counts primitive environment steps, not adder steps: a [`Step`] with
//! `duration = d` (a macro-action that ran `d` primitive steps) discounts everything
//! after it by `γ^d`. A window of steps with durations `d_0 … d_(k-1)` has reward
//! `Σ_j γ^(D_j) r_j`, where `D_j = d_0 + … + d_(j-1)`, and `discount = γ^(D_k)`, and
//! spans `steps = D_k` primitive steps. With every duration 1, `D_j = j` and this is the
//! ordinary n-step return.

use std::marker::PhantomData;

use crate::element::Element;
use crate::error::{MemoryError, Result};
use crate::transition::{Step, TransitionRef, TransitionSink, check_len};

/// Turns the steps of one environment stream (observations of element type `T`) into
/// transitions.
pub trait Adder<T: Element = f32> {
    /// Takes the next step of the stream and writes every transition it completes into
    /// `sink` (none, one, or — at an episode end — up to `n`).
    ///
    /// Fails if the observations do not have the adder's length or the step's
    /// `duration` is 0 (nothing is recorded then), or if the sink refuses a transition.
    fn add<S: TransitionSink<T> + ?Sized>(
        &mut self,
        step: &Step<'_, T>,
        sink: &mut S,
    ) -> Result<()>;

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

fn check_step<T>(obs_dim: usize, step: &Step<'_, T>) -> Result<()> {
    check_len("obs", obs_dim, step.obs.len())?;
    check_len("next_obs", obs_dim, step.next_obs.len())?;
    if step.duration == 0 {
        return Err(MemoryError::InvalidConfig(
            "step duration 0: a step spans at least one primitive environment step \
             (duration = 1 for a primitive action)"
                .into(),
        ));
    }
    Ok(())
}

/// `γ^d`, exactly `γ` for `d = 1`.
#[inline]
fn gamma_pow(gamma: f64, d: u32) -> f64 {
    match i32::try_from(d) {
        Ok(d) => gamma.powi(d),
        Err(_) => gamma.powf(f64::from(d)),
    }
}

/// The one-step adder: every step is emitted at once as a transition with
/// `steps = duration`, `discount = γ^duration` (0 if the step terminated the episode).
#[derive(Clone, Debug, PartialEq)]
pub struct OneStep<T = f32> {
    gamma: f32,
    obs_dim: usize,
    values: PhantomData<fn() -> T>,
}

impl<T: Element> OneStep<T> {
    /// An adder for observations of length `obs_dim`, discounting with `gamma` ∈ `[0, 1]`.
    pub fn new(gamma: f32, obs_dim: usize) -> Result<Self> {
        check_gamma(gamma)?;
        Ok(OneStep {
            gamma,
            obs_dim,
            values: PhantomData,
        })
    }

    /// The discount factor γ.
    pub fn gamma(&self) -> f32 {
        self.gamma
    }
}

impl<T: Element> Adder<T> for OneStep<T> {
    fn add<S: TransitionSink<T> + ?Sized>(
        &mut self,
        step: &Step<'_, T>,
        sink: &mut S,
    ) -> Result<()> {
        check_step(self.obs_dim, step)?;
        sink.insert(TransitionRef {
            obs: step.obs,
            action: step.action,
            reward: step.reward,
            next_obs: step.next_obs,
            discount: if step.terminated {
                0.0
            } else {
                gamma_pow(f64::from(self.gamma), step.duration) as f32
            },
            steps: step.duration,
        })
    }

    fn pending(&self) -> usize {
        0
    }

    fn clear(&mut self) {}
}

/// The n-step adder: the transition starting at step `t` spans `k = min(n, steps left in
/// the episode)` steps, with reward `Σ_{i<k} γ^(D_i) r_(t+i)`, the observation after
/// step `t+k-1` as `next_obs`, and `discount = γ^(D_k)` — or 0 if the episode
/// terminated at step `t+k-1` — where `D_i` is the number of primitive steps before
/// step `t+i` in the window (`D_i = i` when every duration is 1; see the
/// [module docs](self)). `steps` is `D_k`.
///
/// It keeps the last `n - 1` steps in preallocated ring storage, so adding allocates
/// nothing. Reward sums and powers of γ are computed in `f64`.
#[derive(Clone, Debug, PartialEq)]
pub struct NStep<T = f32> {
    n: usize,
    gamma: f32,
    obs_dim: usize,
    /// Ring of the pending steps' observations, `n × obs_dim`.
    obs: Vec<T>,
    actions: Vec<u32>,
    rewards: Vec<f32>,
    /// Primitive steps each pending step spans.
    durations: Vec<u32>,
    /// Sum of the pending steps' durations.
    spanned: u64,
    /// Ring position of the oldest pending step.
    head: usize,
    /// Number of pending steps.
    len: usize,
}

impl<T: Element> NStep<T> {
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
            obs: vec![T::default(); ring],
            actions: vec![0; n],
            rewards: vec![0.0; n],
            durations: vec![1; n],
            spanned: 0,
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
    fn emit_oldest<S: TransitionSink<T> + ?Sized>(
        &mut self,
        next_obs: &[T],
        terminated: bool,
        sink: &mut S,
    ) -> Result<()> {
        let gamma = f64::from(self.gamma);
        let mut reward = 0.0f64;
        let mut power = 1.0f64;
        for i in 0..self.len {
            let slot = (self.head + i) % self.n;
            reward += power * f64::from(self.rewards[slot]);
            power *= gamma_pow(gamma, self.durations[slot]);
        }
        // The window is every pending step; `add` keeps their total within u32.
        let steps = u32::try_from(self.spanned).unwrap_or(u32::MAX);
        let slot = self.head;
        self.head = (self.head + 1) % self.n;
        self.len -= 1;
        self.spanned -= u64::from(self.durations[slot]);
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

impl<T: Element> Adder<T> for NStep<T> {
    fn add<S: TransitionSink<T> + ?Sized>(
        &mut self,
        step: &Step<'_, T>,
        sink: &mut S,
    ) -> Result<()> {
        check_step(self.obs_dim, step)?;
        // The oldest window will span every pending step and this one: its primitive
        // step count must fit the `steps` field.
        let spanned = self.spanned + u64::from(step.duration);
        if spanned > u64::from(u32::MAX) {
            return Err(MemoryError::InvalidConfig(format!(
                "step duration {}: the n-step window would span {spanned} primitive steps, \
                 more than u32::MAX",
                step.duration
            )));
        }
        let slot = (self.head + self.len) % self.n;
        self.obs[slot * self.obs_dim..(slot + 1) * self.obs_dim].copy_from_slice(step.obs);
        self.actions[slot] = step.action;
        self.rewards[slot] = step.reward;
        self.durations[slot] = step.duration;
        self.spanned = spanned;
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
        self.spanned = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transition::Transition;
    use proptest::prelude::*;

    /// Feeds one episode of primitive steps (every duration 1): step `t` has observation
    /// `[base + t]`, next observation `[base + t + 1]` and action `t`, and the episode
    /// ends by `end` at its last step (or not at all).
    fn feed(
        adder: &mut impl Adder,
        out: &mut Vec<Transition>,
        base: f32,
        rewards: &[f32],
        end: End,
    ) -> Vec<usize> {
        feed_durations(adder, out, base, rewards, &vec![1; rewards.len()], end)
    }

    /// Like [`feed`], with step `t` spanning `durations[t]` primitive steps; observations
    /// count primitive time, so step `t`'s is `[base + d_0 + … + d_(t-1)]` and a
    /// transition's `next_obs - obs` is the number of primitive steps it spans.
    fn feed_durations(
        adder: &mut impl Adder,
        out: &mut Vec<Transition>,
        base: f32,
        rewards: &[f32],
        durations: &[u32],
        end: End,
    ) -> Vec<usize> {
        assert_eq!(rewards.len(), durations.len());
        let mut emitted_per_step = Vec::new();
        let mut time = 0u32;
        for (t, (&reward, &duration)) in rewards.iter().zip(durations).enumerate() {
            let last = t + 1 == rewards.len();
            let obs = [base + time as f32];
            time += duration;
            let next_obs = [base + time as f32];
            let before = out.len();
            adder
                .add(
                    &Step {
                        obs: &obs,
                        action: t as u32,
                        reward,
                        duration,
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
            duration: 1,
            terminated: false,
            truncated: false,
            next_obs: &[0.0, 0.0],
        };
        assert!(matches!(
            adder.add(&step, &mut out),
            Err(MemoryError::Length { what: "obs", .. })
        ));
        assert_eq!(adder.pending(), 0);
        assert!(NStep::<f32>::new(0, 0.9, 2).is_err());
        assert!(NStep::<f32>::new(3, 1.5, 2).is_err());
        assert!(NStep::<f32>::new(3, f32::NAN, 2).is_err());
        assert!(OneStep::<f32>::new(-0.1, 2).is_err());
    }

    #[test]
    fn n2_durations_3_1_discount_by_primitive_steps() {
        let mut adder = NStep::new(2, 0.5, 1).unwrap();
        let mut out = Vec::new();
        // A 3-step macro-action then a primitive one: the second reward is 3 primitive
        // steps later, so it is discounted by 0.5^3; the window spans 4 primitive steps.
        let per_step = feed_durations(
            &mut adder,
            &mut out,
            0.0,
            &[1.0, 2.0],
            &[3, 1],
            End::Terminated,
        );
        assert_eq!(per_step, [0, 2]);
        assert_close(
            &out,
            &[
                tr(0.0, 0, 1.0 + 0.125 * 2.0, 4.0, 0.0, 4),
                tr(3.0, 1, 2.0, 4.0, 0.0, 1),
            ],
        );

        out.clear();
        feed_durations(
            &mut adder,
            &mut out,
            10.0,
            &[1.0, 2.0],
            &[3, 1],
            End::Truncated,
        );
        assert_close(
            &out,
            &[
                tr(10.0, 0, 1.25, 14.0, 0.0625, 4),
                tr(13.0, 1, 2.0, 14.0, 0.5, 1),
            ],
        );

        out.clear();
        let per_step = feed_durations(
            &mut adder,
            &mut out,
            20.0,
            &[1.0, 2.0, 4.0],
            &[3, 1, 2],
            End::Running,
        );
        assert_eq!(per_step, [0, 1, 1]);
        assert_close(
            &out,
            &[
                tr(20.0, 0, 1.25, 24.0, 0.0625, 4),
                tr(23.0, 1, 2.0 + 0.5 * 4.0, 26.0, 0.125, 3),
            ],
        );
        assert_eq!(adder.pending(), 1);
    }

    #[test]
    fn one_step_discounts_by_the_duration() {
        let mut adder = OneStep::new(0.5, 1).unwrap();
        let mut out = Vec::new();
        feed_durations(
            &mut adder,
            &mut out,
            0.0,
            &[1.75, 3.0],
            &[3, 2],
            End::Terminated,
        );
        assert_close(
            &out,
            &[
                tr(0.0, 0, 1.75, 3.0, 0.125, 3),
                tr(3.0, 1, 3.0, 5.0, 0.0, 2),
            ],
        );
    }

    #[test]
    fn zero_duration_is_an_error_and_records_nothing() {
        let step = |duration, terminated| Step {
            obs: &[0.0],
            action: 0,
            reward: 1.0,
            duration,
            terminated,
            truncated: false,
            next_obs: &[1.0],
        };
        let mut out = Vec::new();
        let mut one = OneStep::new(0.5, 1).unwrap();
        let err = one.add(&step(0, false), &mut out).unwrap_err();
        assert!(matches!(err, MemoryError::InvalidConfig(_)), "{err}");
        assert!(err.to_string().contains("duration 0"), "{err}");
        assert!(out.is_empty());

        let mut adder = NStep::new(3, 0.5, 1).unwrap();
        adder.add(&step(2, false), &mut out).unwrap();
        for terminated in [false, true] {
            assert!(matches!(
                adder.add(&step(0, terminated), &mut out),
                Err(MemoryError::InvalidConfig(_))
            ));
            assert_eq!(adder.pending(), 1);
            assert!(out.is_empty());
        }
        // The pending step is intact: the episode goes on as if the bad step never came.
        adder.add(&step(1, true), &mut out).unwrap();
        assert_close(
            &out,
            &[
                tr(0.0, 0, 1.0 + 0.25, 1.0, 0.0, 3),
                tr(0.0, 0, 1.0, 1.0, 0.0, 1),
            ],
        );
    }

    #[test]
    fn a_window_must_span_at_most_u32_max_primitive_steps() {
        let step = |duration| Step {
            obs: &[0.0],
            action: 0,
            reward: 1.0,
            duration,
            terminated: false,
            truncated: false,
            next_obs: &[1.0],
        };
        let mut out = Vec::new();
        let mut adder = NStep::new(2, 0.5, 1).unwrap();
        adder.add(&step(u32::MAX), &mut out).unwrap();
        let err = adder.add(&step(1), &mut out).unwrap_err();
        assert!(matches!(err, MemoryError::InvalidConfig(_)), "{err}");
        assert_eq!(adder.pending(), 1);
        assert!(out.is_empty());

        // Alone in a window, the longest duration is fine (and γ^d underflows to 0).
        let mut adder = NStep::new(1, 0.5, 1).unwrap();
        adder.add(&step(u32::MAX), &mut out).unwrap();
        assert_close(&out, &[tr(0.0, 0, 1.0, 1.0, 0.0, u32::MAX)]);
    }

    /// One episode for the reference model: `(reward, duration)` per step, and its end.
    type Episode = (Vec<(f32, u32)>, End);

    /// The n-step transitions of whole episodes, straight from the definition: the
    /// window starting at step `t` covers steps `t..t+k`, step `t+j` is discounted by
    /// γ to the number of primitive steps before it in the window, the bootstrap by γ
    /// to all of them. Observations count primitive time as in [`feed_durations`].
    fn reference(n: usize, gamma: f32, episodes: &[Episode]) -> Vec<Transition> {
        let g = f64::from(gamma);
        let mut out = Vec::new();
        for (e, (steps, end)) in episodes.iter().enumerate() {
            let base = 1000.0 * e as f32;
            let len = steps.len();
            // time[t] = primitive steps before step t.
            let time: Vec<u32> = steps
                .iter()
                .scan(0, |acc, &(_, d)| {
                    let before = *acc;
                    *acc += d;
                    Some(before)
                })
                .chain(std::iter::once(steps.iter().map(|&(_, d)| d).sum()))
                .collect();
            for t in 0..len {
                let k = n.min(len - t);
                if k < n && *end == End::Running {
                    continue;
                }
                let reward: f64 = (0..k)
                    .map(|j| {
                        let before = time[t + j] - time[t];
                        g.powi(before as i32) * f64::from(steps[t + j].0)
                    })
                    .sum();
                let spanned = time[t + k] - time[t];
                let terminal_inside = *end == End::Terminated && t + k == len;
                out.push(tr(
                    base + time[t] as f32,
                    t as u32,
                    reward as f32,
                    base + time[t + k] as f32,
                    if terminal_inside {
                        0.0
                    } else {
                        g.powi(spanned as i32) as f32
                    },
                    spanned,
                ));
            }
        }
        out
    }

    /// Finished episodes and perhaps a running one, with durations in `durations`.
    fn episodes(durations: std::ops::Range<u32>) -> impl Strategy<Value = Vec<Episode>> {
        let step = (-10.0f32..10.0, durations);
        let end = prop_oneof![Just(End::Terminated), Just(End::Truncated)];
        let episode = (prop::collection::vec(step.clone(), 1..9), end);
        (
            prop::collection::vec(episode, 0..6),
            prop::collection::vec(step, 0..9),
        )
            .prop_map(|(mut done, running)| {
                if !running.is_empty() {
                    done.push((running, End::Running));
                }
                done
            })
    }

    fn feed_all(adder: &mut impl Adder, eps: &[Episode]) -> Vec<Transition> {
        let mut out = Vec::new();
        for (e, (steps, end)) in eps.iter().enumerate() {
            let (rewards, durations): (Vec<f32>, Vec<u32>) = steps.iter().copied().unzip();
            feed_durations(
                adder,
                &mut out,
                1000.0 * e as f32,
                &rewards,
                &durations,
                *end,
            );
        }
        out
    }

    /// Feeds `eps` to `adder` and compares with [`reference`] for window `n`.
    fn check_reference(
        adder: &mut impl Adder,
        n: usize,
        gamma: f32,
        eps: &[Episode],
    ) -> std::result::Result<(), TestCaseError> {
        let out = feed_all(adder, eps);
        let want = reference(n, gamma, eps);
        prop_assert_eq!(out.len(), want.len());
        for (g, w) in out.iter().zip(&want) {
            prop_assert_eq!(
                (&g.obs, g.action, &g.next_obs, g.steps),
                (&w.obs, w.action, &w.next_obs, w.steps)
            );
            prop_assert!((g.reward - w.reward).abs() <= 1e-4 * (1.0 + w.reward.abs()));
            prop_assert!((g.discount - w.discount).abs() <= 1e-6);
        }
        Ok(())
    }

    proptest! {
        #[test]
        fn nstep_matches_the_definition(n in 1usize..6, gamma in 0.0f32..=1.0, eps in episodes(1..2)) {
            check_reference(&mut NStep::new(n, gamma, 1).unwrap(), n, gamma, &eps)?;
        }

        #[test]
        fn nstep_with_durations_matches_the_definition(
            n in 1usize..6,
            gamma in 0.0f32..=1.0,
            eps in episodes(1..5),
        ) {
            check_reference(&mut NStep::new(n, gamma, 1).unwrap(), n, gamma, &eps)?;
            check_reference(&mut OneStep::new(gamma, 1).unwrap(), 1, gamma, &eps)?;
        }
    }
}
