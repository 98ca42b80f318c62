//! Fixed-capacity ring storage of transitions in flat, preallocated columns.

use crate::batch::Batch;
use crate::element::Element;
use crate::error::{MemoryError, Result};
use crate::frames::FrameStore;
use crate::transition::{Transition, TransitionRef, check_len};

/// How the observations are kept.
#[derive(Clone, Debug)]
pub(crate) enum Observations<T> {
    /// Every observation whole, `capacity × obs_dim` values per column.
    Whole { obs: Vec<T>, next_obs: Vec<T> },
    /// Stacks of frames, each distinct frame once.
    Frames(FrameStore<T>),
}

/// Transitions in column arrays allocated once at full capacity; the item with
/// insertion index `i` lives in slot `i % capacity`, so a new item overwrites the oldest.
#[derive(Clone, Debug)]
pub(crate) struct Storage<T> {
    pub(crate) capacity: usize,
    pub(crate) obs_dim: usize,
    /// Items inserted since creation (or the last `clear`): the next insertion index.
    pub(crate) inserted: u64,
    pub(crate) observations: Observations<T>,
    pub(crate) actions: Vec<u32>,
    pub(crate) rewards: Vec<f32>,
    pub(crate) discounts: Vec<f32>,
    pub(crate) steps: Vec<u32>,
}

/// Equal contents: the same shape, ring position and items held (however the frames
/// of a frame store are laid out).
impl<T: Element> PartialEq for Storage<T> {
    fn eq(&self, other: &Self) -> bool {
        (self.capacity, self.obs_dim, self.inserted, self.stack())
            == (other.capacity, other.obs_dim, other.inserted, other.stack())
            && (0..self.len()).all(|slot| self.get(slot) == other.get(slot))
    }
}

impl<T: Element> Storage<T> {
    /// Room for `capacity` items with observations of `obs_dim` values, kept whole, or
    /// as stacks of `stack` frames stored once each.
    pub(crate) fn new(capacity: usize, obs_dim: usize, stack: Option<usize>) -> Result<Self> {
        if capacity == 0 {
            return Err(MemoryError::InvalidConfig(
                "capacity must be at least 1".into(),
            ));
        }
        let values = capacity
            .checked_mul(obs_dim)
            .filter(|&f| f <= isize::MAX as usize / 4);
        let Some(values) = values else {
            return Err(MemoryError::InvalidConfig(format!(
                "capacity {capacity} × obs_dim {obs_dim} is too large"
            )));
        };
        let observations = match stack {
            Some(k) => Observations::Frames(FrameStore::new(capacity, obs_dim, k)?),
            // Zeroed allocations: the pages are only committed as items fill them.
            None => Observations::Whole {
                obs: vec![T::default(); values],
                next_obs: vec![T::default(); values],
            },
        };
        Ok(Storage {
            capacity,
            obs_dim,
            inserted: 0,
            observations,
            actions: vec![0; capacity],
            rewards: vec![0.0; capacity],
            discounts: vec![0.0; capacity],
            steps: vec![0; capacity],
        })
    }

    /// Frames per observation of a frame store, or None for whole observations.
    pub(crate) fn stack(&self) -> Option<usize> {
        match &self.observations {
            Observations::Whole { .. } => None,
            Observations::Frames(f) => Some(f.stack()),
        }
    }

    /// Distinct frames held by a frame store, or None for whole observations.
    pub(crate) fn frames(&self) -> Option<usize> {
        match &self.observations {
            Observations::Whole { .. } => None,
            Observations::Frames(f) => Some(f.frames()),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.inserted.min(self.capacity as u64) as usize
    }

    /// The insertion index of the oldest item still stored.
    pub(crate) fn oldest(&self) -> u64 {
        self.inserted - self.len() as u64
    }

    /// The slot of insertion index `index`, if that item is still stored.
    pub(crate) fn slot(&self, index: u64) -> Option<usize> {
        (index >= self.oldest() && index < self.inserted)
            .then(|| (index % self.capacity as u64) as usize)
    }

    /// The insertion index of the item in `slot` (which must be `< len()`).
    pub(crate) fn index_of_slot(&self, slot: usize) -> u64 {
        let oldest = self.oldest();
        let oldest_slot = (oldest % self.capacity as u64) as usize;
        let offset = if slot >= oldest_slot {
            slot - oldest_slot
        } else {
            slot + self.capacity - oldest_slot
        };
        oldest + offset as u64
    }

    /// Writes `t` over the oldest item (or into a free slot) and returns its slot.
    pub(crate) fn insert(&mut self, t: TransitionRef<'_, T>) -> Result<usize> {
        check_len("obs", self.obs_dim, t.obs.len())?;
        check_len("next_obs", self.obs_dim, t.next_obs.len())?;
        let slot = (self.inserted % self.capacity as u64) as usize;
        match &mut self.observations {
            Observations::Whole { obs, next_obs } => {
                let row = slot * self.obs_dim..(slot + 1) * self.obs_dim;
                obs[row.clone()].copy_from_slice(t.obs);
                next_obs[row].copy_from_slice(t.next_obs);
            }
            Observations::Frames(f) => {
                let occupied = self.inserted >= self.capacity as u64;
                f.put(slot, occupied, t.obs, t.next_obs);
            }
        }
        self.actions[slot] = t.action;
        self.rewards[slot] = t.reward;
        self.discounts[slot] = t.discount;
        self.steps[slot] = t.steps;
        self.inserted += 1;
        Ok(slot)
    }

    /// A copy of the item in `slot`.
    pub(crate) fn get(&self, slot: usize) -> Transition<T> {
        let mut t = Transition {
            obs: vec![T::default(); self.obs_dim],
            action: self.actions[slot],
            reward: self.rewards[slot],
            next_obs: vec![T::default(); self.obs_dim],
            discount: self.discounts[slot],
            steps: self.steps[slot],
        };
        self.write_obs(slot, &mut t.obs, &mut t.next_obs);
        t
    }

    /// The item in `slot`, borrowed, when observations are kept whole.
    pub(crate) fn view(&self, slot: usize) -> Option<TransitionRef<'_, T>> {
        let Observations::Whole { obs, next_obs } = &self.observations else {
            return None;
        };
        let row = slot * self.obs_dim..(slot + 1) * self.obs_dim;
        Some(TransitionRef {
            obs: &obs[row.clone()],
            action: self.actions[slot],
            reward: self.rewards[slot],
            next_obs: &next_obs[row],
            discount: self.discounts[slot],
            steps: self.steps[slot],
        })
    }

    /// Writes the observations of the item in `slot`.
    fn write_obs(&self, slot: usize, obs: &mut [T], next_obs: &mut [T]) {
        match &self.observations {
            Observations::Whole {
                obs: all,
                next_obs: all_next,
            } => {
                let row = slot * self.obs_dim..(slot + 1) * self.obs_dim;
                obs.copy_from_slice(&all[row.clone()]);
                next_obs.copy_from_slice(&all_next[row]);
            }
            Observations::Frames(f) => f.write(slot, obs, next_obs),
        }
    }

    /// Copies the item in `slot` into row `row` of `batch` (weight left to the caller).
    #[inline]
    pub(crate) fn gather(&self, slot: usize, batch: &mut Batch<T>, row: usize) {
        let d = self.obs_dim;
        batch.indices[row] = self.index_of_slot(slot);
        self.write_obs(
            slot,
            &mut batch.obs[row * d..(row + 1) * d],
            &mut batch.next_obs[row * d..(row + 1) * d],
        );
        batch.actions[row] = self.actions[slot];
        batch.rewards[row] = self.rewards[slot];
        batch.discounts[row] = self.discounts[slot];
        batch.steps[row] = self.steps[slot];
    }

    pub(crate) fn check_batch(&self, batch: &Batch<T>) -> Result<()> {
        check_len("batch obs_dim", self.obs_dim, batch.obs_dim())?;
        if self.inserted == 0 {
            return Err(MemoryError::Empty);
        }
        Ok(())
    }

    /// Forgets every item (the arrays stay allocated).
    pub(crate) fn clear(&mut self) {
        self.inserted = 0;
        if let Observations::Frames(f) = &mut self.observations {
            f.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(x: f32) -> (Vec<f32>, Vec<f32>) {
        (vec![x, -x], vec![x + 1.0, -x - 1.0])
    }

    #[test]
    fn ring_overwrites_the_oldest_and_maps_indices_to_slots() {
        let mut s = Storage::<f32>::new(3, 2, None).unwrap();
        for i in 0..5u32 {
            let (obs, next_obs) = t(i as f32);
            let slot = s
                .insert(TransitionRef {
                    obs: &obs,
                    action: i,
                    reward: i as f32,
                    next_obs: &next_obs,
                    discount: 0.5,
                    steps: 1,
                })
                .unwrap();
            assert_eq!(slot, i as usize % 3);
        }
        assert_eq!((s.len(), s.oldest(), s.inserted), (3, 2, 5));
        assert_eq!(
            [s.slot(1), s.slot(2), s.slot(3), s.slot(4), s.slot(5)],
            [None, Some(2), Some(0), Some(1), None]
        );
        assert_eq!(
            [s.index_of_slot(0), s.index_of_slot(1), s.index_of_slot(2)],
            [3, 4, 2]
        );
        let item = s.get(0);
        assert_eq!(
            (&item.obs[..], &item.next_obs[..], item.action),
            (&[3.0, -3.0][..], &[4.0, -4.0][..], 3)
        );
        assert!(Storage::<f32>::new(0, 2, None).is_err());
        assert!(Storage::<u8>::new(usize::MAX, 2, None).is_err());
    }
}
