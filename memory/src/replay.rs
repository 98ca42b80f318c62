//! One type for "uniform or prioritized", chosen at run time from a config switch.

use rand::Rng;

use crate::batch::Batch;
use crate::element::Element;
use crate::error::Result;
use crate::prioritized::{Prioritization, PrioritizedReplay};
use crate::transition::{Transition, TransitionRef, TransitionSink};
use crate::uniform::UniformReplay;

/// Either replay memory, so a learner with a `prioritized` switch holds one type.
///
/// With `Uniform`, `beta` is ignored (every weight is 1) and
/// [`update_priorities`](Replay::update_priorities) does nothing.
#[derive(Clone, Debug, PartialEq)]
pub enum Replay<T: Element = f32> {
    /// Uniform sampling.
    Uniform(UniformReplay<T>),
    /// Proportional prioritized sampling.
    Prioritized(PrioritizedReplay<T>),
}

impl<T: Element> Replay<T> {
    /// A prioritized memory when `prioritization` is given, a uniform one otherwise.
    pub fn new(
        capacity: usize,
        obs_dim: usize,
        prioritization: Option<Prioritization>,
    ) -> Result<Self> {
        Ok(match prioritization {
            Some(p) => Replay::Prioritized(PrioritizedReplay::new(capacity, obs_dim, p)?),
            None => Replay::Uniform(UniformReplay::new(capacity, obs_dim)?),
        })
    }

    /// [`new`](Self::new) for observations that are stacks of `stack` frames, each
    /// distinct frame stored once (see the crate docs).
    pub fn with_frames(
        capacity: usize,
        obs_dim: usize,
        stack: usize,
        prioritization: Option<Prioritization>,
    ) -> Result<Self> {
        Ok(match prioritization {
            Some(p) => {
                Replay::Prioritized(PrioritizedReplay::with_frames(capacity, obs_dim, stack, p)?)
            }
            None => Replay::Uniform(UniformReplay::with_frames(capacity, obs_dim, stack)?),
        })
    }

    /// Frames per observation when it stores frames once each, else None.
    pub fn frames_per_obs(&self) -> Option<usize> {
        match self {
            Replay::Uniform(r) => r.frames_per_obs(),
            Replay::Prioritized(r) => r.frames_per_obs(),
        }
    }

    /// The distinct frames held when it stores frames once each, else None.
    pub fn frames_held(&self) -> Option<usize> {
        match self {
            Replay::Uniform(r) => r.frames_held(),
            Replay::Prioritized(r) => r.frames_held(),
        }
    }

    /// Maximum number of items held.
    pub fn capacity(&self) -> usize {
        match self {
            Replay::Uniform(r) => r.capacity(),
            Replay::Prioritized(r) => r.capacity(),
        }
    }

    /// Number of items held.
    pub fn len(&self) -> usize {
        match self {
            Replay::Uniform(r) => r.len(),
            Replay::Prioritized(r) => r.len(),
        }
    }

    /// Whether no item is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Length of one observation.
    pub fn obs_dim(&self) -> usize {
        match self {
            Replay::Uniform(r) => r.obs_dim(),
            Replay::Prioritized(r) => r.obs_dim(),
        }
    }

    /// Items inserted since creation (or `clear`), overwritten ones included.
    pub fn inserted(&self) -> u64 {
        match self {
            Replay::Uniform(r) => r.inserted(),
            Replay::Prioritized(r) => r.inserted(),
        }
    }

    /// A copy of the item with insertion index `index`, if it is still held.
    pub fn get(&self, index: u64) -> Option<Transition<T>> {
        match self {
            Replay::Uniform(r) => r.get(index),
            Replay::Prioritized(r) => r.get(index),
        }
    }

    /// Forgets every item (the storage stays allocated).
    pub fn clear(&mut self) {
        match self {
            Replay::Uniform(r) => r.clear(),
            Replay::Prioritized(r) => r.clear(),
        }
    }

    /// Fills `batch`; `beta` is the importance-sampling exponent of prioritized replay.
    pub fn sample<R: Rng + ?Sized>(
        &self,
        rng: &mut R,
        beta: f64,
        batch: &mut Batch<T>,
    ) -> Result<()> {
        match self {
            Replay::Uniform(r) => r.sample(rng, batch),
            Replay::Prioritized(r) => r.sample(rng, beta, batch),
        }
    }

    /// Sets priorities from TD errors (prioritized); returns the number of items updated
    /// (always 0 for uniform replay).
    pub fn update_priorities(&mut self, indices: &[u64], td_errors: &[f32]) -> Result<usize> {
        match self {
            Replay::Uniform(_) => Ok(0),
            Replay::Prioritized(r) => r.update_priorities(indices, td_errors),
        }
    }

    /// The saved state (see the crate docs for the format).
    pub fn to_bytes(&self) -> Vec<u8> {
        match self {
            Replay::Uniform(r) => r.to_bytes(),
            Replay::Prioritized(r) => r.to_bytes(),
        }
    }

    /// Restores saved state; the memory is unchanged on error.
    pub fn load_bytes(&mut self, bytes: &[u8]) -> Result<()> {
        match self {
            Replay::Uniform(r) => r.load_bytes(bytes),
            Replay::Prioritized(r) => r.load_bytes(bytes),
        }
    }
}

impl<T: Element> TransitionSink<T> for Replay<T> {
    fn insert(&mut self, transition: TransitionRef<'_, T>) -> Result<()> {
        match self {
            Replay::Uniform(r) => r.insert(transition),
            Replay::Prioritized(r) => r.insert(transition),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::fill;
    use rand::SeedableRng;

    #[test]
    fn both_variants_behind_one_switch() {
        let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(5);
        for prioritization in [None, Some(Prioritization::default())] {
            let mut replay = Replay::new(8, 2, prioritization).unwrap();
            assert!(replay.is_empty());
            fill(&mut replay, 0..10);
            assert_eq!(
                (
                    replay.len(),
                    replay.inserted(),
                    replay.capacity(),
                    replay.obs_dim()
                ),
                (8, 10, 8, 2)
            );
            assert!(replay.get(1).is_none() && replay.get(2).is_some());
            let mut batch = Batch::new(4, 2);
            replay.sample(&mut rng, 1.0, &mut batch).unwrap();
            let updated = replay
                .update_priorities(batch.indices(), &[1.0, 2.0, 3.0, 4.0])
                .unwrap();
            assert_eq!(updated, if prioritization.is_some() { 4 } else { 0 });
            let saved = replay.to_bytes();
            let mut restored = Replay::<f32>::new(8, 2, prioritization).unwrap();
            restored.load_bytes(&saved).unwrap();
            assert_eq!(restored.to_bytes(), saved);
            replay.clear();
            assert!(replay.is_empty());
        }
    }

    /// Byte frames stay bytes from the adder to the batch and through saved state:
    /// `len × (2·obs_dim + 16)` bytes of items (+8 per item when prioritized).
    #[test]
    fn byte_frames_insert_sample_save_and_load() {
        use crate::adder::{Adder, NStep};
        use crate::transition::Step;
        let dim = 6;
        // Step t's observation is every pixel equal to t (mod 256).
        let frame = |t: u32| vec![(t % 256) as u8; dim];
        let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(3);
        for prioritization in [None, Some(Prioritization::default())] {
            let mut replay = Replay::<u8>::new(300, dim, prioritization).unwrap();
            let mut adder = NStep::new(3, 0.5, dim).unwrap();
            for t in 0..400u32 {
                let (obs, next_obs) = (frame(t), frame(t + 1));
                let step = Step {
                    obs: &obs,
                    action: t % 4,
                    reward: 1.0,
                    duration: 1,
                    terminated: t % 50 == 49,
                    truncated: false,
                    next_obs: &next_obs,
                };
                adder.add(&step, &mut replay).unwrap();
            }
            assert_eq!(replay.len(), 300);
            let mut batch = Batch::<u8>::new(32, dim);
            replay.sample(&mut rng, 0.4, &mut batch).unwrap();
            for row in 0..32 {
                let obs = &batch.obs()[row * dim..(row + 1) * dim];
                let next = &batch.next_obs()[row * dim..(row + 1) * dim];
                let t = obs[0];
                assert!(obs.iter().all(|&v| v == t));
                // Three steps on, or fewer at a termination.
                let k = batch.steps()[row] as u8;
                assert_eq!(next, vec![t.wrapping_add(k); dim].as_slice());
                assert_eq!(batch.actions()[row], u32::from(t) % 4, "row {row}");
            }
            let saved = replay.to_bytes();
            let per_item = 2 * dim + 16 + if prioritization.is_some() { 8 } else { 0 };
            let header = if prioritization.is_some() { 74 } else { 50 };
            assert_eq!(saved.len(), 300 * per_item + header);
            let mut restored = Replay::<u8>::new(300, dim, prioritization).unwrap();
            restored.load_bytes(&saved).unwrap();
            assert_eq!(restored, replay);
            // Bytes do not load into a memory of floats, nor floats into bytes.
            let mut floats = Replay::<f32>::new(300, dim, prioritization).unwrap();
            let e = floats.load_bytes(&saved).unwrap_err().to_string();
            assert!(e.contains("saved with u8 observations"), "{e}");
            let e = restored
                .load_bytes(&floats.to_bytes())
                .unwrap_err()
                .to_string();
            assert!(e.contains("saved with f32 observations"), "{e}");
            assert_eq!(restored, replay, "a failed load changes nothing");
        }
    }

    fn unhex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// State saved in format version 1 (before byte observations; written by commit
    /// 985a517 from 5 items of `testing::fill` into memories of capacity 4, priorities
    /// of items 2 and 3 then set from TD errors 0.5 and 2) loads as f32 observations.
    #[test]
    fn version_1_state_still_loads() {
        const UNIFORM: &str = "4147524d010000000104000000000000000200000000000000050000000000000000008040000090400000803f0000c03f000000400000204000004040000060400000a0400000b04000000040000020400000404000006040000080400000904000000000010000000200000003000000cdcccc3ecdcccc3dcdcc4c3e9a99993ea4707d3fa4707d3fa4707d3fa4707d3f02000000020000000300000001000000e7b2c8683ce55dac";
        const PRIORITIZED: &str = "4147524d0100000002040000000000000002000000000000000500000000000000000000000000e03f8dedb5a0f7c6b03e0c3c67c59ea0f63f00008040000090400000803f0000c03f000000400000204000004040000060400000a0400000b04000000040000020400000404000006040000080400000904000000000010000000200000003000000cdcccc3ecdcccc3dcdcc4c3e9a99993ea4707d3fa4707d3fa4707d3fa4707d3f02000000020000000300000001000000000000000000f03f000000000000f03f75331fe29fa0e63f0c3c67c59ea0f63f41fa54990579958d";
        for (hex, prioritization) in [
            (UNIFORM, None),
            (PRIORITIZED, Some(Prioritization::default())),
        ] {
            let mut old = Replay::<f32>::new(4, 2, prioritization).unwrap();
            old.load_bytes(&unhex(hex)).unwrap();
            let mut want = Replay::<f32>::new(4, 2, prioritization).unwrap();
            fill(&mut want, 0..5);
            want.update_priorities(&[2, 3], &[0.5, 2.0]).unwrap();
            assert_eq!(old, want);
            // Written again, it is version 2, which loads too.
            let mut again = Replay::<f32>::new(4, 2, prioritization).unwrap();
            again.load_bytes(&old.to_bytes()).unwrap();
            assert_eq!(again, want);
            assert_eq!(old.to_bytes()[4..8], 2u32.to_le_bytes());
            // A version-1 state claims f32: it does not load as bytes.
            let mut bytes = Replay::<u8>::new(4, 2, prioritization).unwrap();
            assert!(bytes.load_bytes(&unhex(hex)).is_err());
        }
    }

    /// Two interleaved streams of 4-frame stacks (frames of 5 bytes drawn at random,
    /// the reset stack repeating the first frame), episodes ending by termination and
    /// by truncation, 3-step transitions through one adder per stream: a memory that
    /// stores each frame once holds what a memory of whole observations holds, samples
    /// the same batches, and saves and loads exactly, with about one frame per item.
    #[test]
    fn stacked_frames_stored_once_come_back_exactly() {
        use crate::adder::{Adder, NStep};
        use crate::transition::Step;
        use rand::RngExt;
        let (k, frame, dim) = (4, 5, 20);
        for prioritization in [None, Some(Prioritization::default())] {
            let mut whole = Replay::<u8>::new(60, dim, prioritization).unwrap();
            let mut frames = Replay::<u8>::with_frames(60, dim, k, prioritization).unwrap();
            assert_eq!(frames.frames_per_obs(), Some(k));
            let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(8);
            let mut adders = [
                NStep::new(3, 0.9, dim).unwrap(),
                NStep::new(3, 0.9, dim).unwrap(),
            ];
            let new_frame = |rng: &mut rand_pcg::Pcg64Mcg| -> Vec<u8> {
                (0..frame).map(|_| rng.random::<u8>()).collect()
            };
            let reset = |rng: &mut rand_pcg::Pcg64Mcg| new_frame(rng).repeat(k);
            let mut stacks = [reset(&mut rng), reset(&mut rng)];
            let mut t = [0u32; 2];
            for step in 0..400u32 {
                let i = (step % 2) as usize;
                let mut next = stacks[i][frame..].to_vec();
                next.extend(new_frame(&mut rng));
                t[i] += 1;
                let (terminated, truncated) = (t[i] % 17 == 0, t[i] % 23 == 0);
                let s = Step {
                    obs: &stacks[i],
                    action: step % 3,
                    reward: 1.0,
                    duration: 1,
                    terminated,
                    truncated,
                    next_obs: &next,
                };
                let mut out = Vec::new();
                adders[i].add(&s, &mut out).unwrap();
                for tr in &out {
                    whole.insert(tr.view()).unwrap();
                    frames.insert(tr.view()).unwrap();
                }
                stacks[i] = if terminated || truncated {
                    t[i] = 0;
                    reset(&mut rng)
                } else {
                    next
                };
            }
            assert_eq!((frames.len(), frames.inserted()), (60, whole.inserted()));
            for index in 0..whole.inserted() {
                assert_eq!(frames.get(index), whole.get(index), "item {index}");
            }
            let held = frames.frames_held().unwrap();
            assert!((60..80).contains(&held), "{held} frames for 60 items");
            let (mut a, mut b) = (Batch::<u8>::new(16, dim), Batch::<u8>::new(16, dim));
            for seed in 0..5 {
                let mut r1 = rand_pcg::Pcg64Mcg::seed_from_u64(seed);
                let mut r2 = rand_pcg::Pcg64Mcg::seed_from_u64(seed);
                whole.sample(&mut r1, 0.5, &mut a).unwrap();
                frames.sample(&mut r2, 0.5, &mut b).unwrap();
                assert_eq!(a, b);
                let td: Vec<f32> = (0..16).map(|j| j as f32 * 0.1 + seed as f32).collect();
                whole.update_priorities(a.indices(), &td).unwrap();
                frames.update_priorities(b.indices(), &td).unwrap();
            }
            // Saved state: the held frames once, 2K numbers per item.
            let saved = frames.to_bytes();
            let extra = if prioritization.is_some() {
                24 + 8 * 60
            } else {
                0
            };
            assert_eq!(saved.len(), 58 + extra + held * frame + 60 * (8 * k + 16));
            let mut restored = Replay::<u8>::with_frames(60, dim, k, prioritization).unwrap();
            restored.load_bytes(&saved).unwrap();
            assert_eq!(restored, frames);
            assert_eq!(restored.to_bytes(), saved);
            assert_eq!(restored.frames_held(), Some(held));
            // Damage is caught: any cut, any flipped byte, a frame number out of range
            // (with a valid checksum), another layout.
            for cut in (0..saved.len()).step_by(7) {
                assert!(restored.load_bytes(&saved[..cut]).is_err());
            }
            for i in (0..saved.len()).step_by(5) {
                let mut damaged = saved.clone();
                damaged[i] ^= 0x04;
                assert!(restored.load_bytes(&damaged).is_err(), "flip at {i}");
            }
            let numbers_at = 42 + if prioritization.is_some() { 24 } else { 0 } + 8 + held * frame;
            let mut bad = saved[..saved.len() - 8].to_vec();
            bad[numbers_at..numbers_at + 4].copy_from_slice(&(held as u32).to_le_bytes());
            let sum = crate::codec::checksum(&bad);
            bad.extend_from_slice(&sum.to_le_bytes());
            let e = restored.load_bytes(&bad).unwrap_err().to_string();
            assert!(e.contains("frame number"), "{e}");
            assert_eq!(restored, frames, "failed loads change nothing");
            let e = restored
                .load_bytes(&whole.to_bytes())
                .unwrap_err()
                .to_string();
            assert!(e.contains("saved with whole observations"), "{e}");
            // Both go on alike after the load.
            let mut again = restored.clone();
            frames.clear();
            again.clear();
            assert_eq!(frames.frames_held(), Some(0));
            assert_eq!(again, frames);
        }
    }
}
