//! The actor/learner runtime that every algorithm runs in.
//!
//! K actor threads each own a vector environment of M copies and an acting copy of the
//! policy. The learner (the calling thread) publishes work: a round number, the policy
//! version and the number of steps per environment. Each actor collects one chunk of
//! that many steps with the newest policy and sends it over a bounded crossbeam channel;
//! the learner takes the K chunks in actor order, updates, and publishes the next round.
//! In this synchronous mode every chunk is acted by the current version (policy lag 0,
//! logged anyway), and a run is deterministic for a given seed and (K, M): no result
//! depends on thread timing.
//!
//! An algorithm plugs in by implementing [`Learner`] (its update and the policy it
//! publishes) and [`Actor`] (how one actor turns policy + environments into a chunk).
//! An error or a panic in an actor or an environment stops the run and comes back as an
//! [`AgentError`] naming the actor; every thread is joined before [`run`] returns. An
//! actor that sends nothing for [`RunSpec::actor_timeout`] (an environment step that
//! hangs) ends the run with [`AgentError::Hung`]; its thread, stuck inside the
//! environment, cannot be stopped from outside and is left to end with the process
//! (the `agent` command exits on the error, so nothing is left behind there).

use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;

use agentry_envs::EnvError;
use agentry_envs::vector::VecEnv;
use crossbeam_channel::bounded;
use serde::{Deserialize, Serialize};

use crate::error::AgentError;

/// One finished episode.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Episode {
    /// Undiscounted return.
    pub ret: f64,
    /// Length in steps.
    pub len: u64,
}

/// What an actor sends: the algorithm's data plus what the runner counts.
pub trait Chunk: Send + 'static {
    /// Primitive environment steps the chunk holds.
    fn env_steps(&self) -> u64;
    /// Episodes that ended inside the chunk.
    fn episodes(&self) -> &[Episode];
}

/// One actor's side of an algorithm: acting with a published policy.
pub trait Actor: Send + 'static {
    /// The acting copy of the policy the learner publishes (no autodiff).
    type Policy: Send + Sync + 'static;
    /// What a chunk of experience holds.
    type Chunk: Chunk;
    /// Step every environment of `envs` `steps` times with `policy` and pack the result.
    /// `envs` has been reset; its buffers hold the current observations.
    fn collect(
        &mut self,
        policy: &Self::Policy,
        envs: &mut dyn VecEnv,
        steps: usize,
    ) -> Result<Self::Chunk, AgentError>;
}

/// Where the run stands when an update happens.
#[derive(Clone, Copy, Debug)]
pub struct Progress {
    /// Environment steps collected so far, this update's included.
    pub env_steps: u64,
    /// The run's total.
    pub total_steps: u64,
    /// Updates done before this one.
    pub updates: u64,
}

impl Progress {
    /// The fraction of the run still to go before this update's data: CleanRL's
    /// annealing factor `1 − (update − 1)/num_updates`, in steps.
    pub fn remaining_fraction(&self, batch_steps: u64) -> f64 {
        self.remaining_fraction_over(batch_steps, 0)
    }

    /// [`remaining_fraction`](Self::remaining_fraction) of a schedule spanning `span`
    /// steps instead of the run (0: the run's total), never below 0.
    pub fn remaining_fraction_over(&self, batch_steps: u64, span: u64) -> f64 {
        let span = if span == 0 { self.total_steps } else { span };
        let before = self.env_steps.saturating_sub(batch_steps);
        (1.0 - before as f64 / span as f64).max(0.0)
    }
}

/// The learner's side of an algorithm.
pub trait Learner {
    /// The algorithm's actor.
    type Actor: Actor;
    /// Steps per environment in a regular chunk.
    fn chunk_steps(&self) -> usize;
    /// The acting copy of the current parameters.
    fn policy(&self) -> <Self::Actor as Actor>::Policy;
    /// A new actor, the `index`-th of the run, whose sampling is seeded by `seed`.
    fn actor(&self, index: usize, seed: u64) -> Self::Actor;
    /// The names of the values [`update`](Self::update) returns, CleanRL-style
    /// (`losses/approx_kl`, ...).
    fn metric_names(&self) -> Vec<String>;
    /// Learn from one chunk per actor, in actor order; returns the metrics.
    fn update(
        &mut self,
        chunks: Vec<<Self::Actor as Actor>::Chunk>,
        progress: Progress,
    ) -> Result<Vec<f64>, AgentError>;
}

/// Counters that survive checkpoints.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RunState {
    /// Environment steps so far.
    pub env_steps: u64,
    /// Episodes finished so far.
    pub episodes: u64,
    /// Updates so far (= the policy version).
    pub updates: u64,
    /// Wall time of the earlier sessions of this run, seconds.
    pub wall_time_s: f64,
    /// The last 100 finished episodes.
    pub recent: VecDeque<Episode>,
    /// The best `episode_return_mean` seen (once 1 episode has finished).
    pub best_return_mean: Option<f64>,
}

/// How many recent episodes `episode_return_mean` averages.
pub const RECENT_EPISODES: usize = 100;

impl RunState {
    fn add(&mut self, e: Episode) {
        self.episodes += 1;
        if self.recent.len() == RECENT_EPISODES {
            self.recent.pop_front();
        }
        self.recent.push_back(e);
    }

    /// Mean return of the last 100 episodes (NaN before the first).
    pub fn return_mean(&self) -> f64 {
        mean(self.recent.iter().map(|e| e.ret))
    }

    /// Mean length of the last 100 episodes (NaN before the first).
    pub fn length_mean(&self) -> f64 {
        mean(self.recent.iter().map(|e| e.len as f64))
    }
}

fn mean(it: impl ExactSizeIterator<Item = f64>) -> f64 {
    let n = it.len();
    if n == 0 {
        f64::NAN
    } else {
        it.sum::<f64>() / n as f64
    }
}

/// The columns every algorithm's metrics start with (DESIGN.md's five, then the
/// runner's own).
pub const LEADING_COLUMNS: &[&str] = &[
    "env_steps",
    "wall_time_s",
    "episodes",
    "episode_return_mean",
    "episode_length_mean",
    "charts/SPS",
    "charts/policy_lag",
];

/// Whether to go on after an update.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Control {
    /// Keep going.
    Continue,
    /// Stop now (the state is consistent: between updates).
    Stop,
}

/// Builds actor `index`'s vector environment.
pub type MakeEnvs<'a> = dyn Fn(usize) -> Result<Box<dyn VecEnv>, EnvError> + Sync + 'a;

/// How to run: the environments, the number of actors, the seed and the target.
pub struct RunSpec<'a> {
    /// Builds each actor's environments (called on the actor's thread).
    pub make_envs: &'a MakeEnvs<'a>,
    /// Actor threads K.
    pub actors: usize,
    /// Environments per actor M (what `make_envs` builds).
    pub envs_per_actor: usize,
    /// The run's seed.
    pub seed: u64,
    /// Stop at exactly this many environment steps.
    pub total_steps: u64,
    /// How long the learner waits for an actor's chunk before it gives up on the run
    /// (`None`: forever).
    pub actor_timeout: Option<std::time::Duration>,
}

/// Work published to the actors.
struct Work<P> {
    round: u64,
    version: u64,
    policy: Arc<P>,
    steps: usize,
}

struct Board<P> {
    work: Mutex<(Option<Work<P>>, bool)>,
    ready: Condvar,
}

impl<P> Board<P> {
    fn publish(&self, work: Work<P>) {
        let mut guard = self.work.lock().unwrap_or_else(|e| e.into_inner());
        guard.0 = Some(work);
        self.ready.notify_all();
    }

    fn stop(&self) {
        let mut guard = self.work.lock().unwrap_or_else(|e| e.into_inner());
        guard.1 = true;
        self.ready.notify_all();
    }

    /// The first work newer than `after`, or `None` once stopped.
    fn wait(&self, after: u64) -> Option<(u64, u64, Arc<P>, usize)> {
        let mut guard = self.work.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if guard.1 {
                return None;
            }
            if let Some(w) = &guard.0
                && w.round > after
            {
                return Some((w.round, w.version, w.policy.clone(), w.steps));
            }
            guard = self.ready.wait(guard).unwrap_or_else(|e| e.into_inner());
        }
    }
}

struct Message<C> {
    actor: usize,
    version: u64,
    chunk: Result<C, AgentError>,
}

/// Run `f`, turning a panic into an error message (burn panics on a record that does
/// not fit a module, for instance).
pub(crate) fn catch<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|p| panic_message(p.as_ref()))
}

/// Copy row `i` of a vector environment's observations as f32 into `row`.
pub(crate) fn obs_row_of(
    obs: &agentry_envs::vector::ObsBuffer,
    dim: usize,
    i: usize,
    row: &mut Vec<f32>,
) {
    row.clear();
    if let Some(o) = obs.as_f32() {
        row.extend_from_slice(&o[i * dim..(i + 1) * dim]);
    } else if let Some(o) = obs.as_u8() {
        row.extend(o[i * dim..(i + 1) * dim].iter().map(|&v| v as f32));
    }
}

/// The text of a panic's payload.
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic with a non-text payload".to_string()
    }
}

/// The seed actor `index` resets its environments with, when the run starts at
/// `env_steps` (a resumed run starts fresh episodes with fresh seeds).
pub fn env_seed(seed: u64, index: usize, env_steps: u64) -> u64 {
    agentry_envs::derive_seed(agentry_envs::derive_seed(seed, index as u64), env_steps)
}

/// The seed of actor `index`'s sampling generator when the run starts at `env_steps`.
pub fn actor_seed(seed: u64, index: usize, env_steps: u64) -> u64 {
    env_seed(seed ^ 0xAC70_5EED, index, env_steps)
}

/// Run `learner` from `state` to `spec.total_steps`, calling `after_update` with the
/// learner, the state and the metrics row (the [`LEADING_COLUMNS`] then the learner's
/// [`metric_names`](Learner::metric_names)) after every update.
pub fn run<L, F>(
    learner: &mut L,
    spec: &RunSpec<'_>,
    state: &mut RunState,
    mut after_update: F,
) -> Result<(), AgentError>
where
    L: Learner,
    F: FnMut(&L, &RunState, &[f64]) -> Result<Control, AgentError>,
{
    if state.env_steps >= spec.total_steps {
        return Ok(());
    }
    let k = spec.actors.max(1);
    let m = spec.envs_per_actor.max(1) as u64;
    let board = Board::<<L::Actor as Actor>::Policy> {
        work: Mutex::new((None, false)),
        ready: Condvar::new(),
    };
    let (tx, rx) = bounded::<Message<<L::Actor as Actor>::Chunk>>(k);
    let start_steps = state.env_steps;
    let actors: Vec<L::Actor> = (0..k)
        .map(|i| learner.actor(i, actor_seed(spec.seed, i, start_steps)))
        .collect();
    let started = Instant::now();
    let wall_before = state.wall_time_s;

    // Each actor's environments are built here, in order (a failure names the actor),
    // and move into its thread. The threads are not scoped: when an environment step
    // hangs, the run can end without waiting for it (a thread stuck inside an
    // environment cannot be stopped from outside; it ends with the process).
    let board = Arc::new(board);
    // However the loop ends (finished, stopped, an error, a panic): stop the actors and
    // join every thread that is not stuck inside an environment.
    struct Joiner<P> {
        board: Arc<Board<P>>,
        handles: Vec<std::thread::JoinHandle<()>>,
        /// Actors known to hang: not waited for.
        hung: Vec<usize>,
    }
    impl<P> Drop for Joiner<P> {
        fn drop(&mut self) {
            self.board.stop();
            for (i, h) in self.handles.drain(..).enumerate() {
                if !self.hung.contains(&i) {
                    let _ = h.join();
                }
            }
        }
    }
    let mut joiner = Joiner {
        board: board.clone(),
        handles: Vec::with_capacity(k),
        hung: Vec::new(),
    };
    for (index, mut actor) in actors.into_iter().enumerate() {
        let seed = env_seed(spec.seed, index, start_steps);
        let envs = catch_unwind(AssertUnwindSafe(|| -> Result<_, AgentError> {
            let mut envs = (spec.make_envs)(index).map_err(|e| AgentError::actor_env(index, e))?;
            envs.reset(Some(seed))
                .map_err(|e| AgentError::actor_env(index, e))?;
            Ok(envs)
        }));
        let mut envs = match envs {
            Ok(Ok(envs)) => envs,
            Ok(Err(e)) => return Err(e),
            Err(p) => {
                return Err(AgentError::ActorPanicked {
                    actor: index,
                    message: panic_message(p.as_ref()),
                });
            }
        };
        let tx = tx.clone();
        let board = board.clone();
        let handle = std::thread::Builder::new()
            .name(format!("actor-{index}"))
            .spawn(move || {
                let mut last_round = 0;
                while let Some((round, version, policy, steps)) = board.wait(last_round) {
                    last_round = round;
                    let chunk = catch_unwind(AssertUnwindSafe(|| {
                        actor.collect(&policy, envs.as_mut(), steps)
                    }));
                    let chunk = match chunk {
                        Ok(Ok(c)) => Ok(c),
                        Ok(Err(e)) => Err(e.in_actor(index)),
                        Err(p) => Err(AgentError::ActorPanicked {
                            actor: index,
                            message: panic_message(p.as_ref()),
                        }),
                    };
                    let failed = chunk.is_err();
                    let sent = tx.send(Message {
                        actor: index,
                        version,
                        chunk,
                    });
                    if failed || sent.is_err() {
                        return;
                    }
                }
            })
            .map_err(|e| AgentError::Invalid(format!("starting actor thread {index}: {e}")))?;
        joiner.handles.push(handle);
    }
    drop(tx);

    let board = &*board;
    let result = (|| {
        let mut round = 0;
        let names = learner.metric_names();
        let mut row = Vec::with_capacity(LEADING_COLUMNS.len() + names.len());
        while state.env_steps < spec.total_steps {
            let remaining = spec.total_steps - state.env_steps;
            let per_env = (learner.chunk_steps() as u64).min(remaining / (k as u64 * m));
            if per_env == 0 {
                return Err(AgentError::Invalid(format!(
                    "{remaining} steps remain, fewer than the {} environments: the total \
                     must be a multiple of actors × envs_per_actor",
                    k as u64 * m
                )));
            }
            round += 1;
            let version = state.updates;
            board.publish(Work {
                round,
                version,
                policy: Arc::new(learner.policy()),
                steps: per_env as usize,
            });
            let mut chunks: Vec<Option<_>> = (0..k).map(|_| None).collect();
            let mut lag = 0u64;
            for _ in 0..k {
                let msg = match spec.actor_timeout {
                    None => rx.recv().map_err(|_| {
                        AgentError::Invalid("every actor stopped without a message".into())
                    })?,
                    Some(limit) => match rx.recv_timeout(limit) {
                        Ok(msg) => msg,
                        Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                            let waiting: Vec<usize> =
                                (0..k).filter(|&i| chunks[i].is_none()).collect();
                            joiner.hung = waiting.clone();
                            return Err(AgentError::Hung {
                                actors: waiting,
                                seconds: limit.as_secs_f64(),
                            });
                        }
                        Err(crossbeam_channel::RecvTimeoutError::Disconnected) => {
                            return Err(AgentError::Invalid(
                                "every actor stopped without a message".into(),
                            ));
                        }
                    },
                };
                let chunk = msg.chunk?;
                lag = lag.max(version - msg.version);
                chunks[msg.actor] = Some(chunk);
            }
            let chunks: Vec<_> = chunks
                .into_iter()
                .map(|c| c.expect("one chunk per actor"))
                .collect();
            for c in &chunks {
                state.env_steps += c.env_steps();
                for e in c.episodes() {
                    state.add(*e);
                }
            }
            let progress = Progress {
                env_steps: state.env_steps,
                total_steps: spec.total_steps,
                updates: state.updates,
            };
            let metrics = learner.update(chunks, progress)?;
            state.updates += 1;
            let session = started.elapsed().as_secs_f64();
            state.wall_time_s = wall_before + session;
            let ret = state.return_mean();
            if ret.is_finite() && state.best_return_mean.is_none_or(|b| ret > b) {
                state.best_return_mean = Some(ret);
            }
            row.clear();
            row.extend([
                state.env_steps as f64,
                state.wall_time_s,
                state.episodes as f64,
                ret,
                state.length_mean(),
                (state.env_steps - start_steps) as f64 / session.max(1e-9),
                lag as f64,
            ]);
            row.extend(metrics);
            if after_update(learner, state, &row)? == Control::Stop {
                break;
            }
        }
        Ok(())
    })();
    drop(rx);
    drop(joiner);
    result
}

#[cfg(test)]
mod tests {
    use super::Progress;

    /// CleanRL's annealing factor before each update's data, over the run or over a
    /// longer schedule of which the run is the start.
    #[test]
    fn annealing_spans_the_run_or_a_given_schedule() {
        let at = |env_steps| Progress {
            env_steps,
            total_steps: 1000,
            updates: 0,
        };
        // The first update's data: nothing done before it.
        assert_eq!(at(100).remaining_fraction(100), 1.0);
        assert!((at(600).remaining_fraction(100) - 0.5).abs() < 1e-12);
        assert!((at(1000).remaining_fraction(100) - 0.1).abs() < 1e-12);
        // A 10 000-step schedule: the same run only reaches its first tenth.
        assert!((at(1000).remaining_fraction_over(100, 10_000) - 0.91).abs() < 1e-12);
        assert_eq!(
            at(600).remaining_fraction_over(100, 0),
            at(600).remaining_fraction(100)
        );
        // Past a shorter schedule's end the factor stays at 0.
        assert_eq!(at(1000).remaining_fraction_over(100, 500), 0.0);
    }
}
