//! One type for "uniform or prioritized", chosen at run time from a config switch.

use rand::Rng;

use crate::batch::Batch;
use crate::element::Element;
use crate::error::Result;
use crate::prioritized::{Prioritization, PrioritizedReplay};
use crate::transition::{TransitionRef, TransitionSink};
use crate::uniform::UniformReplay;

/// Either replay memory, so a learner with a `prioritized` switch holds one type.
///
/// With `Uniform`, `beta` is ignored (every weight is 1) and
/// [`update_priorities`](Replay::update_priorities) does nothing.
#[derive(Clone, Debug, PartialEq)]
pub enum Replay<T = f32> {
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

    /// The item with insertion index `index`, if it is still held.
    pub fn get(&self, index: u64) -> Option<TransitionRef<'_, T>> {
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
            let header = if prioritization.is_some() { 66 } else { 42 };
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
}
