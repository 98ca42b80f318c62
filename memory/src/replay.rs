//! One type for "uniform or prioritized", chosen at run time from a config switch.

use rand::Rng;

use crate::batch::Batch;
use crate::error::Result;
use crate::prioritized::{Prioritization, PrioritizedReplay};
use crate::transition::{TransitionRef, TransitionSink};
use crate::uniform::UniformReplay;

/// Either replay memory, so a learner with a `prioritized` switch holds one type.
///
/// With `Uniform`, `beta` is ignored (every weight is 1) and
/// [`update_priorities`](Replay::update_priorities) does nothing.
#[derive(Clone, Debug, PartialEq)]
pub enum Replay {
    /// Uniform sampling.
    Uniform(UniformReplay),
    /// Proportional prioritized sampling.
    Prioritized(PrioritizedReplay),
}

impl Replay {
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
    pub fn get(&self, index: u64) -> Option<TransitionRef<'_>> {
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
    pub fn sample<R: Rng + ?Sized>(&self, rng: &mut R, beta: f64, batch: &mut Batch) -> Result<()> {
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

impl TransitionSink for Replay {
    fn insert(&mut self, transition: TransitionRef<'_>) -> Result<()> {
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
            let mut restored = Replay::new(8, 2, prioritization).unwrap();
            restored.load_bytes(&saved).unwrap();
            assert_eq!(restored.to_bytes(), saved);
            replay.clear();
            assert!(replay.is_empty());
        }
    }
}
