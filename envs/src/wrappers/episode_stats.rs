use std::collections::VecDeque;

use super::forward_spaces;
use crate::env::{Env, EpisodeEnd, Out, Step};
use crate::error::Result;
use crate::space::{Action, Space};

/// Running return and length of the current episode, and the last finished ones.
///
/// Used by [`EpisodeStatistics`] and by the vector environments, so both count the same
/// way. An environment decides how its episode ends count ([`Env::episode_end`]):
/// [`EpisodeTracker::record_end`] takes that answer.
#[derive(Clone, Debug)]
pub struct EpisodeTracker {
    ret: f64,
    len: u64,
    window: usize,
    returns: VecDeque<f64>,
    lengths: VecDeque<u64>,
    episodes: u64,
}

impl EpisodeTracker {
    /// Remember the last `window` finished episodes.
    pub fn new(window: usize) -> Self {
        EpisodeTracker {
            ret: 0.0,
            len: 0,
            window,
            returns: VecDeque::with_capacity(window),
            lengths: VecDeque::with_capacity(window),
            episodes: 0,
        }
    }

    /// Forget the running episode (on reset).
    pub fn start(&mut self) {
        self.ret = 0.0;
        self.len = 0;
    }

    /// Count a step; when it ends the episode, returns `(return, length)` of the episode
    /// (the sums of the rewards and steps counted: [`EpisodeEnd::Learner`]).
    #[inline]
    pub fn record(&mut self, step: &Step) -> Option<(f64, u64)> {
        self.record_end(step, || EpisodeEnd::Learner)
    }

    /// Count a step; when it ends the learner's episode, `end()` (an environment's
    /// [`Env::episode_end`]) says how that counts, and `(return, length)` is returned
    /// if a whole episode ended: the sums counted here for [`EpisodeEnd::Learner`],
    /// the environment's own for [`EpisodeEnd::Whole`], nothing for
    /// [`EpisodeEnd::Partial`]. The running sums restart either way.
    #[inline]
    pub fn record_end(
        &mut self,
        step: &Step,
        end: impl FnOnce() -> EpisodeEnd,
    ) -> Option<(f64, u64)> {
        self.ret += step.reward;
        self.len += 1;
        if !step.done() {
            return None;
        }
        let learner = (self.ret, self.len);
        self.start();
        let finished = match end() {
            EpisodeEnd::Learner => learner,
            EpisodeEnd::Partial => return None,
            EpisodeEnd::Whole { ret, len } => (ret, len),
        };
        if self.window > 0 {
            if self.returns.len() == self.window {
                self.returns.pop_front();
                self.lengths.pop_front();
            }
            self.returns.push_back(finished.0);
            self.lengths.push_back(finished.1);
        }
        self.episodes += 1;
        Some(finished)
    }

    /// Returns of the last finished episodes, oldest first.
    pub fn returns(&self) -> &VecDeque<f64> {
        &self.returns
    }

    /// Lengths of the last finished episodes, oldest first.
    pub fn lengths(&self) -> &VecDeque<u64> {
        &self.lengths
    }

    /// Number of finished (whole) episodes.
    pub fn episodes(&self) -> u64 {
        self.episodes
    }

    /// Return accumulated so far in the running episode.
    pub fn running_return(&self) -> f64 {
        self.ret
    }
}

/// Records each episode's return and length (Gymnasium's `RecordEpisodeStatistics`).
///
/// Adds the extras `episode_return` and `episode_length`: on the step that ends an
/// episode they hold its totals; on every other step they are 0. The last
/// `window` (default 100) episodes are kept in [`EpisodeStatistics::tracker`].
///
/// What an episode is, and its totals, follow the inner environment's
/// [`Env::episode_end`]: under the Atari protocol's episodic life the totals come at the
/// end of the game, not of each life, and are the game's unclipped score.
#[derive(Debug)]
pub struct EpisodeStatistics<E> {
    inner: E,
    tracker: EpisodeTracker,
    names: Vec<&'static str>,
}

impl<E: Env> EpisodeStatistics<E> {
    /// Wrap `inner`, keeping the last 100 episodes.
    pub fn new(inner: E) -> Self {
        Self::with_window(inner, 100)
    }

    /// Wrap `inner`, keeping the last `window` episodes.
    pub fn with_window(inner: E, window: usize) -> Self {
        let mut names = inner.extra_names().to_vec();
        names.extend(["episode_return", "episode_length"]);
        EpisodeStatistics {
            inner,
            tracker: EpisodeTracker::new(window),
            names,
        }
    }

    /// The statistics so far.
    pub fn tracker(&self) -> &EpisodeTracker {
        &self.tracker
    }

    /// The wrapped environment.
    pub fn inner(&self) -> &E {
        &self.inner
    }
}

impl<E: Env> Env for EpisodeStatistics<E> {
    forward_spaces!();
    fn observation_space(&self) -> &Space {
        self.inner.observation_space()
    }
    fn extra_names(&self) -> &[&'static str] {
        &self.names
    }
    fn reset_into(&mut self, seed: Option<u64>, out: Out<'_>) -> Result<()> {
        self.tracker.start();
        let k = self.names.len() - 2;
        let (inner_extras, own) = out.extras.split_at_mut(k);
        own.fill(0.0);
        self.inner.reset_into(
            seed,
            Out {
                obs: out.obs,
                action_mask: out.action_mask,
                extras: inner_extras,
            },
        )
    }
    #[inline]
    fn step_into(&mut self, action: Action<'_>, out: Out<'_>) -> Result<Step> {
        let k = self.names.len() - 2;
        let (inner_extras, own) = out.extras.split_at_mut(k);
        let step = self.inner.step_into(
            action,
            Out {
                obs: out.obs,
                action_mask: out.action_mask,
                extras: inner_extras,
            },
        )?;
        let inner = &self.inner;
        let (r, l) = self
            .tracker
            .record_end(&step, || inner.episode_end())
            .unwrap_or((0.0, 0));
        own[0] = r;
        own[1] = l as f64;
        Ok(step)
    }
}
