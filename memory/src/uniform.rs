//! Uniform experience replay.

use rand::{Rng, RngExt};

use crate::batch::Batch;
use crate::codec;
use crate::element::Element;
use crate::error::Result;
use crate::storage::Storage;
use crate::transition::{Transition, TransitionRef, TransitionSink};

/// A fixed-capacity ring of transitions sampled uniformly with replacement.
///
/// Storage is allocated once, at full capacity, in flat column arrays; once full, each
/// insertion overwrites the oldest item. Items are filled in through an adder (it is a
/// [`TransitionSink`]) and sampled into a caller-owned [`Batch`] without allocating.
///
/// ```
/// use agentry_memory::{Adder, Batch, NStep, Step, UniformReplay};
/// use rand::SeedableRng;
///
/// let mut replay = UniformReplay::new(1000, 2)?;
/// let mut adder = NStep::new(3, 0.99, 2)?;
/// for t in 0..10 {
///     let (obs, next_obs) = ([t as f32, 0.0], [t as f32 + 1.0, 0.0]);
///     let step = Step { obs: &obs, action: 1, reward: 1.0, duration: 1, terminated: t == 9, truncated: false, next_obs: &next_obs };
///     adder.add(&step, &mut replay)?;
/// }
/// assert_eq!(replay.len(), 10);
/// let mut batch = Batch::new(4, 2);
/// replay.sample(&mut rand_pcg::Pcg64Mcg::seed_from_u64(0), &mut batch)?;
/// assert_eq!(batch.weights(), [1.0; 4]);
/// # Ok::<(), agentry_memory::MemoryError>(())
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct UniformReplay<T: Element = f32> {
    storage: Storage<T>,
}

impl<T: Element> UniformReplay<T> {
    /// An empty memory of `capacity` transitions with observations of length `obs_dim`.
    pub fn new(capacity: usize, obs_dim: usize) -> Result<Self> {
        Ok(UniformReplay {
            storage: Storage::new(capacity, obs_dim, None)?,
        })
    }

    /// An empty memory of `capacity` transitions whose observations are stacks of
    /// `stack` frames (channel-first, `obs_dim / stack` values each), each distinct frame
    /// stored once (see the crate docs).
    pub fn with_frames(capacity: usize, obs_dim: usize, stack: usize) -> Result<Self> {
        Ok(UniformReplay {
            storage: Storage::new(capacity, obs_dim, Some(stack))?,
        })
    }

    /// Frames per observation when it stores frames once each, else None.
    pub fn frames_per_obs(&self) -> Option<usize> {
        self.storage.stack()
    }

    /// The distinct frames held when it stores frames once each, else None.
    pub fn frames_held(&self) -> Option<usize> {
        self.storage.frames()
    }

    /// Maximum number of items held.
    pub fn capacity(&self) -> usize {
        self.storage.capacity
    }

    /// Length of one observation.
    pub fn obs_dim(&self) -> usize {
        self.storage.obs_dim
    }

    /// Number of items held.
    pub fn len(&self) -> usize {
        self.storage.len()
    }

    /// Whether no item is held.
    pub fn is_empty(&self) -> bool {
        self.storage.inserted == 0
    }

    /// Items inserted since creation (or [`clear`](Self::clear)), overwritten ones included.
    pub fn inserted(&self) -> u64 {
        self.storage.inserted
    }

    /// A copy of the item with insertion index `index`, if it is still held.
    pub fn get(&self, index: u64) -> Option<Transition<T>> {
        self.storage.slot(index).map(|slot| self.storage.get(slot))
    }

    /// The item with insertion index `index`, borrowed, if it is still held and the
    /// observations are kept whole.
    pub(crate) fn view(&self, index: u64) -> Option<TransitionRef<'_, T>> {
        self.storage
            .slot(index)
            .and_then(|slot| self.storage.view(slot))
    }

    /// Fills every row of `batch` with an item drawn uniformly (with replacement) using
    /// `rng`, and sets every weight to 1. Allocates nothing.
    ///
    /// Fails if the memory is empty or `batch` is for another `obs_dim`.
    pub fn sample<R: Rng + ?Sized>(&self, rng: &mut R, batch: &mut Batch<T>) -> Result<()> {
        self.storage.check_batch(batch)?;
        let len = self.storage.len();
        for row in 0..batch.size() {
            let slot = rng.random_range(0..len);
            self.storage.gather(slot, batch, row);
        }
        batch.weights.fill(1.0);
        Ok(())
    }

    /// Forgets every item (the storage stays allocated).
    pub fn clear(&mut self) {
        self.storage.clear();
    }

    /// Exact size in bytes of [`to_bytes`](Self::to_bytes)' output now:
    /// `len × (2·b·obs_dim + 16) + 50`, with `b` bytes per value (4 for `f32`, 1 for `u8`);
    /// for stacks of K frames stored once, `F·b·obs_dim/K + len × (8K + 16) + 58` for the
    /// F distinct frames held.
    pub fn saved_len(&self) -> usize {
        codec::saved_len(&self.storage, false)
    }

    /// The contents and ring position as bytes (format in the crate docs).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.saved_len());
        codec::write_storage(&mut out, &self.storage, codec::KIND_UNIFORM, None);
        codec::finish(&mut out);
        out
    }

    /// Replaces the contents with state saved by [`to_bytes`](Self::to_bytes) from a
    /// memory of the same capacity and `obs_dim`. Truncated, damaged or mismatched input
    /// is an error and leaves this memory unchanged; nothing is allocated.
    pub fn load_bytes(&mut self, bytes: &[u8]) -> Result<()> {
        let (header, mut r) = codec::open(bytes, &self.storage, codec::KIND_UNIFORM)?;
        let cols = codec::read_columns(&mut r, &self.storage, header.inserted)?;
        codec::store_columns(&cols, &mut self.storage);
        Ok(())
    }
}

impl<T: Element> TransitionSink<T> for UniformReplay<T> {
    fn insert(&mut self, transition: TransitionRef<'_, T>) -> Result<()> {
        self.storage.insert(transition).map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::MemoryError;
    use crate::testing::{chi_square, fill, item};
    use rand::SeedableRng;

    #[test]
    fn samples_only_live_items_uniformly_and_rows_are_consistent() {
        let mut replay = UniformReplay::new(10, 2).unwrap();
        fill(&mut replay, 0..25); // items 15..25 are live
        assert_eq!((replay.len(), replay.inserted()), (10, 25));
        assert!(replay.get(14).is_none() && replay.get(25).is_none());
        assert_eq!(replay.get(24).unwrap().obs, [24.0, 24.5]);
        let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(1);
        let mut batch = Batch::new(50, 2);
        let mut counts = [0u32; 10];
        for _ in 0..2000 {
            replay.sample(&mut rng, &mut batch).unwrap();
            for row in 0..50 {
                let index = batch.indices()[row];
                assert!((15..25).contains(&index));
                counts[(index - 15) as usize] += 1;
                let x = index as f32;
                assert_eq!(&batch.obs()[2 * row..2 * row + 2], item(x).0);
                assert_eq!(&batch.next_obs()[2 * row..2 * row + 2], item(x).1);
                assert_eq!(batch.actions()[row], index as u32 % 4);
                assert_eq!(batch.steps()[row], 1 + index as u32 % 3);
            }
        }
        let chi2 = chi_square(&counts, &[1.0; 10], 100_000);
        // 9 degrees of freedom: P(chi2 > 27.88) = 0.001.
        assert!(chi2 < 27.88, "chi2 = {chi2}, counts {counts:?}");
    }

    #[test]
    fn empty_memory_and_wrong_batch_shape_are_errors() {
        let mut replay = UniformReplay::new(10, 2).unwrap();
        let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(1);
        assert_eq!(
            replay.sample(&mut rng, &mut Batch::new(4, 2)),
            Err(MemoryError::Empty)
        );
        fill(&mut replay, 0..3);
        assert!(matches!(
            replay.sample(&mut rng, &mut Batch::new(4, 3)),
            Err(MemoryError::Length { .. })
        ));
        let bad = replay.insert(TransitionRef {
            obs: &[1.0],
            action: 0,
            reward: 0.0,
            next_obs: &[1.0, 2.0],
            discount: 1.0,
            steps: 1,
        });
        assert!(matches!(bad, Err(MemoryError::Length { .. })));
        assert_eq!(replay.inserted(), 3);
        replay.clear();
        assert!(replay.is_empty());
    }

    #[test]
    fn save_load_round_trip_and_every_truncation_or_bit_flip_fails_cleanly() {
        for count in [0, 3, 7, 12] {
            let mut replay = UniformReplay::new(7, 2).unwrap();
            fill(&mut replay, 0..count);
            let bytes = replay.to_bytes();
            assert_eq!(bytes.len(), replay.saved_len());
            let mut restored = UniformReplay::new(7, 2).unwrap();
            fill(&mut restored, 100..104);
            let before = restored.clone();
            for cut in 0..bytes.len() {
                assert!(matches!(
                    restored.load_bytes(&bytes[..cut]),
                    Err(MemoryError::Load(_))
                ));
                assert_eq!(restored, before, "a failed load changed the memory");
            }
            for i in 0..bytes.len() {
                let mut damaged = bytes.clone();
                damaged[i] ^= 0x10;
                assert!(
                    restored.load_bytes(&damaged).is_err(),
                    "flip at byte {i} not caught"
                );
                assert_eq!(restored, before);
            }
            let mut longer = bytes.clone();
            longer.push(0);
            assert!(restored.load_bytes(&longer).is_err());
            restored.load_bytes(&bytes).unwrap();
            // Equal contents and position: the same future, the same bytes.
            assert_eq!(restored.to_bytes(), bytes);
            for i in 0..replay.inserted() {
                assert_eq!(restored.get(i), replay.get(i));
            }
            fill(&mut replay, 50..53);
            fill(&mut restored, 50..53);
            assert_eq!(restored.to_bytes(), replay.to_bytes());
        }
        let mut other = UniformReplay::<f32>::new(8, 2).unwrap();
        let err = other
            .load_bytes(&UniformReplay::<f32>::new(7, 2).unwrap().to_bytes())
            .unwrap_err();
        assert!(err.to_string().contains("capacity 7"), "{err}");
    }
}
