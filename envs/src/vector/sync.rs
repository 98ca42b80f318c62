use super::buffers::VecBuffers;
use super::{Layout, Slot, VecAction, VecEnv, Work, run_slots};
use crate::env::Env;
use crate::error::{EnvError, Result};
use crate::space::Space;

/// Steps N environments one after another on the calling thread.
pub struct SyncVecEnv {
    slots: Vec<Slot>,
    layout: Layout,
    bufs: VecBuffers,
    ready: bool,
}

impl SyncVecEnv {
    /// Vectorise `envs`, which must be identical copies (same spaces, mask and extras).
    pub fn new(envs: Vec<Box<dyn Env>>) -> Result<Self> {
        let layout = Layout::of(&envs)?;
        let bufs = VecBuffers::new(
            envs.len(),
            layout.obs_space.dtype(),
            layout.obs_space.flat_dim(),
            layout.mask_len,
            layout.extra_names.clone(),
        );
        Ok(SyncVecEnv {
            slots: envs.into_iter().map(Slot::new).collect(),
            layout,
            bufs,
            ready: false,
        })
    }

    fn run(&mut self, work: Work<'_>) -> Result<()> {
        let raw = self.bufs.raw();
        // SAFETY: `raw` points into `self.bufs`, borrowed mutably through `self` for the
        // whole call; every slot writes only its own row.
        let result = unsafe { run_slots(&mut self.slots, 0, work, &raw) };
        self.ready = result.is_ok();
        result
    }
}

impl VecEnv for SyncVecEnv {
    fn num_envs(&self) -> usize {
        self.slots.len()
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
        self.layout.check_actions(&actions, self.slots.len())?;
        self.run(Work::Step(actions, self.layout.act_dim))?;
        Ok(&self.bufs)
    }
    fn buffers(&self) -> &VecBuffers {
        &self.bufs
    }
}
