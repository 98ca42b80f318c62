use std::cell::UnsafeCell;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::*};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::{self, JoinHandle, Thread};

use std::time::{Duration, Instant};

use crossbeam_utils::CachePadded;

use super::buffers::{RawBuffers, VecBuffers};
use super::{Layout, Slot, VecAction, VecEnv, Work, run_slots};
use crate::env::Env;
use crate::error::{EnvError, Result};
use crate::space::Space;

/// Steps N environments on K threads: the calling thread takes the first slice and
/// K−1 worker threads one slice each (slices differ in size by at most one).
///
/// A step hands the workers the actions by pointer and wakes them through an epoch
/// counter; workers spin for up to half a millisecond and then park, so an idle vector environment (say,
/// while a learner trains) costs no CPU. Nothing is allocated per step. Dropping the
/// vector environment stops and joins its threads.
pub struct ThreadedVecEnv {
    bufs: VecBuffers,
    layout: Layout,
    main_slots: Vec<Slot>,
    shared: Arc<Shared>,
    workers: Vec<(JoinHandle<()>, Thread)>,
    num_envs: usize,
    ready: bool,
}

/// How long a thread spins for the next round (or for the workers) before it sleeps.
/// Waking a parked thread costs tens of microseconds on a virtual machine, more than a
/// round of most environments, so threads spin through the short gaps between rounds
/// and sleep only when the vector environment is left idle.
const SPIN: Duration = Duration::from_micros(500);
/// The first part of [`SPIN`], before spinning starts to yield the core.
const PURE_SPIN: Duration = Duration::from_micros(20);

/// Spin until `done()` holds or the spin budget is spent; returns whether it holds.
#[inline]
fn spin_until(mut done: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    loop {
        for _ in 0..64 {
            if done() {
                return true;
            }
            std::hint::black_box(());
        }
        if start.elapsed() > SPIN {
            return done();
        }
        // After a short pure spin, let a thread that shares this core run (when there
        // are more threads than cores, pure spinning would starve the one we wait for).
        if start.elapsed() > PURE_SPIN {
            thread::yield_now();
        }
    }
}

/// What a worker thread runs first: it builds (or receives) the slots it will own.
type WorkerInit = Box<dyn FnOnce() -> Result<Vec<Slot>> + Send>;

/// `threads` (clamped to `1..=n`) contiguous ranges covering `0..n`, sizes differing by at most one.
fn split(n: usize, threads: usize) -> Vec<Range<usize>> {
    let k = threads.clamp(1, n.max(1));
    (0..k).map(|t| (t * n / k)..((t + 1) * n / k)).collect()
}

/// A round of work as the workers see it: raw pointers valid until they report back.
#[derive(Clone, Copy)]
enum Command {
    Idle,
    Reset(Option<u64>, RawBuffers),
    Step(RawActions, usize, RawBuffers),
    Shutdown,
}

#[derive(Clone, Copy)]
enum RawActions {
    Discrete(*const usize, usize),
    MultiDiscrete(*const usize, usize),
    Continuous(*const f32, usize),
}

impl RawActions {
    fn of(a: &VecAction<'_>) -> Self {
        match a {
            VecAction::Discrete(x) => RawActions::Discrete(x.as_ptr(), x.len()),
            VecAction::MultiDiscrete(x) => RawActions::MultiDiscrete(x.as_ptr(), x.len()),
            VecAction::Continuous(x) => RawActions::Continuous(x.as_ptr(), x.len()),
        }
    }

    /// # Safety
    /// The slice this was made from is still alive and not mutated.
    unsafe fn get<'a>(self) -> VecAction<'a> {
        // SAFETY: forwarded from the caller.
        unsafe {
            match self {
                RawActions::Discrete(p, n) => VecAction::Discrete(std::slice::from_raw_parts(p, n)),
                RawActions::MultiDiscrete(p, n) => {
                    VecAction::MultiDiscrete(std::slice::from_raw_parts(p, n))
                }
                RawActions::Continuous(p, n) => {
                    VecAction::Continuous(std::slice::from_raw_parts(p, n))
                }
            }
        }
    }
}

struct Shared {
    /// Bumped by the main thread to start a round. (The two counters the threads spin
    /// on sit on cache lines of their own, so that a write to one does not evict the other.)
    epoch: CachePadded<AtomicU64>,
    /// The round's work; written by the main thread only while every worker is idle.
    command: UnsafeCell<Command>,
    /// Workers still busy with the current round.
    pending: CachePadded<AtomicUsize>,
    /// The main thread sleeps on `done_cv` (after spinning) while `pending > 0`.
    main_waiting: AtomicBool,
    done_lock: Mutex<()>,
    done_cv: Condvar,
    /// Per worker: parked waiting for the next epoch.
    sleeping: Vec<AtomicBool>,
    /// The first error of the round, and whether there is one (checked without locking).
    error: Mutex<Option<EnvError>>,
    failed: AtomicBool,
}

// SAFETY: `command` is written only by the main thread while `pending == 0` (no worker
// reads it), and read by workers only between an epoch bump and their `pending`
// decrement; the epoch/pending atomics order those accesses.
unsafe impl Sync for Shared {}
unsafe impl Send for Shared {}

impl ThreadedVecEnv {
    /// Vectorise `envs` (identical copies) over `threads` threads (clamped to
    /// `1..=envs.len()`; 1 steps everything on the calling thread).
    pub fn new(envs: Vec<Box<dyn Env>>, threads: usize) -> Result<Self> {
        let layout = Layout::of(&envs)?;
        let n = envs.len();
        let ranges = split(n, threads);
        let mut slots: Vec<Slot> = envs.into_iter().map(Slot::new).collect();
        let mut inits: Vec<WorkerInit> = Vec::new();
        for range in ranges.iter().skip(1).rev() {
            let mine: Vec<Slot> = slots.drain(range.clone()).collect();
            inits.push(Box::new(move || Ok(mine)));
        }
        inits.reverse();
        Self::start(layout, n, slots, ranges, inits)
    }

    /// Build `num_envs` copies with `make(i)` for copy `i`, each on the thread that will
    /// step it (so its memory is allocated, and stays warm, where it is used), spread over
    /// `threads` threads (clamped to `1..=num_envs`).
    pub fn from_fn<F>(num_envs: usize, threads: usize, make: F) -> Result<Self>
    where
        F: Fn(usize) -> Result<Box<dyn Env>> + Send + Sync + 'static,
    {
        if num_envs == 0 {
            return Err(EnvError::Invalid(
                "a vector environment needs at least one environment".into(),
            ));
        }
        let make = Arc::new(make);
        let ranges = split(num_envs, threads);
        let main_envs = ranges[0]
            .clone()
            .map(|i| make(i))
            .collect::<Result<Vec<_>>>()?;
        let layout = Layout::of(&main_envs)?;
        let inits: Vec<WorkerInit> = ranges[1..]
            .iter()
            .map(|range| {
                let (make, layout, range) = (Arc::clone(&make), layout.clone(), range.clone());
                Box::new(move || {
                    let envs = range.map(|i| make(i)).collect::<Result<Vec<_>>>()?;
                    layout.check(&envs)?;
                    Ok(envs.into_iter().map(Slot::new).collect())
                }) as WorkerInit
            })
            .collect();
        let slots = main_envs.into_iter().map(Slot::new).collect();
        Self::start(layout, num_envs, slots, ranges, inits)
    }

    /// Spawn one worker per `inits` entry (worker `w` owns `ranges[w + 1]`), wait until
    /// each has built its slots, and return the running vector environment. If a worker
    /// fails to start or to build, the others are stopped and joined.
    fn start(
        layout: Layout,
        n: usize,
        main_slots: Vec<Slot>,
        ranges: Vec<Range<usize>>,
        inits: Vec<WorkerInit>,
    ) -> Result<Self> {
        let k = ranges.len();
        let bufs = VecBuffers::new(
            n,
            layout.obs_space.dtype(),
            layout.obs_space.flat_dim(),
            layout.mask_len,
            layout.extra_names.clone(),
        );
        let shared = Arc::new(Shared {
            epoch: CachePadded::new(AtomicU64::new(0)),
            command: UnsafeCell::new(Command::Idle),
            pending: CachePadded::new(AtomicUsize::new(0)),
            main_waiting: AtomicBool::new(false),
            done_lock: Mutex::new(()),
            done_cv: Condvar::new(),
            sleeping: (1..k).map(|_| AtomicBool::new(false)).collect(),
            error: Mutex::new(None),
            failed: AtomicBool::new(false),
        });
        // Built before any thread starts, so that an early return joins what was started.
        let mut venv = ThreadedVecEnv {
            bufs,
            layout,
            main_slots,
            shared,
            workers: Vec::with_capacity(k - 1),
            num_envs: n,
            ready: false,
        };
        let (report, reports) = std::sync::mpsc::channel::<Result<()>>();
        for (w, init) in inits.into_iter().enumerate() {
            let shared = Arc::clone(&venv.shared);
            let base = ranges[w + 1].start;
            let report = report.clone();
            let handle = thread::Builder::new()
                .name(format!("agentry-vecenv-{}", w + 1))
                .spawn(move || match init() {
                    Ok(slots) => {
                        let _ = report.send(Ok(()));
                        worker_loop(shared, w, slots, base);
                    }
                    Err(e) => {
                        let _ = report.send(Err(e));
                    }
                })
                .map_err(|e| {
                    EnvError::Io(format!("could not start a vector-environment thread: {e}"))
                })?;
            let thread = handle.thread().clone();
            venv.workers.push((handle, thread));
        }
        drop(report);
        for _ in 0..venv.workers.len() {
            match reports.recv() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(e),
                Err(_) => {
                    return Err(EnvError::Io(
                        "a vector-environment thread died while starting".into(),
                    ));
                }
            }
        }
        Ok(venv)
    }

    /// Number of threads stepping environments (including the calling thread).
    pub fn threads(&self) -> usize {
        self.workers.len() + 1
    }

    fn run(&mut self, work: Work<'_>) -> Result<()> {
        let raw = self.bufs.raw();
        let shared = &*self.shared;
        let command = match work {
            Work::Reset(seed) => Command::Reset(seed, raw),
            Work::Step(actions, dim) => Command::Step(RawActions::of(&actions), dim, raw),
        };
        if !self.workers.is_empty() {
            // SAFETY: every worker finished the previous round (pending == 0), so none reads `command`.
            unsafe { *shared.command.get() = command };
            shared.pending.store(self.workers.len(), SeqCst);
            shared.epoch.fetch_add(1, SeqCst);
            for (w, (_, thread)) in self.workers.iter().enumerate() {
                if shared.sleeping[w].load(SeqCst) {
                    thread.unpark();
                }
            }
        }
        // SAFETY: the main slots are rows 0..main_slots.len(), which no worker touches.
        let mine = unsafe { run_slots(&mut self.main_slots, 0, work, &raw) };
        if !self.workers.is_empty() {
            wait_for_workers(shared);
        }
        let theirs = if shared.failed.swap(false, Acquire) {
            match shared
                .error
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take()
            {
                Some(e) => Err(e),
                None => Ok(()),
            }
        } else {
            Ok(())
        };
        let result = mine.and(theirs);
        self.ready = result.is_ok();
        result
    }
}

fn wait_for_workers(shared: &Shared) {
    if spin_until(|| shared.pending.load(Acquire) == 0) {
        return;
    }
    shared.main_waiting.store(true, SeqCst);
    let mut guard = shared
        .done_lock
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    while shared.pending.load(SeqCst) != 0 {
        guard = shared
            .done_cv
            .wait(guard)
            .unwrap_or_else(PoisonError::into_inner);
    }
    shared.main_waiting.store(false, SeqCst);
}

fn worker_loop(shared: Arc<Shared>, id: usize, mut slots: Vec<Slot>, base: usize) {
    let mut seen = 0u64;
    loop {
        while !spin_until(|| shared.epoch.load(Acquire) != seen) {
            shared.sleeping[id].store(true, SeqCst);
            if shared.epoch.load(SeqCst) == seen {
                thread::park();
            }
            shared.sleeping[id].store(false, SeqCst);
        }
        seen = shared.epoch.load(Acquire);
        // SAFETY: the main thread wrote `command` before bumping the epoch and does not
        // write it again until this worker has decremented `pending`.
        let command = unsafe { *shared.command.get() };
        let result = match command {
            Command::Shutdown => return,
            Command::Idle => Ok(()),
            // SAFETY: our slots own rows base..base+len; the main thread keeps the buffers
            // and actions alive and untouched until every worker reports back.
            Command::Reset(seed, raw) => unsafe {
                run_slots(&mut slots, base, Work::Reset(seed), &raw)
            },
            Command::Step(actions, dim, raw) => unsafe {
                run_slots(&mut slots, base, Work::Step(actions.get(), dim), &raw)
            },
        };
        if let Err(e) = result {
            let mut slot = shared.error.lock().unwrap_or_else(PoisonError::into_inner);
            if slot.is_none() {
                *slot = Some(e);
            }
            shared.failed.store(true, Release);
        }
        if shared.pending.fetch_sub(1, SeqCst) == 1 && shared.main_waiting.load(SeqCst) {
            let _guard = shared
                .done_lock
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            shared.done_cv.notify_one();
        }
    }
}

impl Drop for ThreadedVecEnv {
    fn drop(&mut self) {
        if self.workers.is_empty() {
            return;
        }
        // SAFETY: no round is running (every `run` waits for its workers).
        unsafe { *self.shared.command.get() = Command::Shutdown };
        self.shared.epoch.fetch_add(1, SeqCst);
        for (handle, thread) in self.workers.drain(..) {
            thread.unpark();
            let _ = handle.join();
        }
    }
}

impl VecEnv for ThreadedVecEnv {
    fn num_envs(&self) -> usize {
        self.num_envs
    }
    fn observation_space(&self) -> &Space {
        &self.layout.obs_space
    }
    fn action_space(&self) -> &Space {
        &self.layout.act_space
    }
    fn reset(&mut self, seed: Option<u64>) -> Result<&VecBuffers> {
        self.run(Work::Reset(seed))?;
        Ok(&self.bufs)
    }
    fn step(&mut self, actions: VecAction<'_>) -> Result<&VecBuffers> {
        if !self.ready {
            return Err(EnvError::NeedsReset(
                "on a vector environment that was not reset (or failed)",
            ));
        }
        self.layout.check_actions(&actions, self.num_envs)?;
        self.run(Work::Step(actions, self.layout.act_dim))?;
        Ok(&self.bufs)
    }
    fn buffers(&self) -> &VecBuffers {
        &self.bufs
    }
}
