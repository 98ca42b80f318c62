//! Proportional prioritized experience replay (Schaul et al., 2016).

use rand::{Rng, RngExt};

use crate::batch::Batch;
use crate::codec::{self, f64s};
use crate::element::Element;
use crate::error::{MemoryError, Result};
use crate::storage::Storage;
use crate::sum_tree::SumTree;
use crate::transition::{Transition, TransitionRef, TransitionSink, check_len};

/// How TD errors become priorities: `p = (|δ| + epsilon)^alpha`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Prioritization {
    /// Priority exponent α: 0 is uniform sampling, 1 fully proportional. Rainbow
    /// (Hessel et al., 2018) uses 0.5; Schaul et al. (2016) 0.6 for the proportional variant.
    pub alpha: f64,
    /// Added to `|δ|` so that no item's priority, and chance of a replay, reaches zero.
    pub epsilon: f64,
}

impl Default for Prioritization {
    /// α = 0.5 (Rainbow, Hessel et al., 2018), ε = 1e-6.
    fn default() -> Self {
        Prioritization {
            alpha: 0.5,
            epsilon: 1e-6,
        }
    }
}

impl Prioritization {
    fn check(&self) -> Result<()> {
        if !(self.alpha.is_finite() && self.alpha >= 0.0) {
            return Err(MemoryError::InvalidConfig(format!(
                "priority exponent alpha = {} must be finite and >= 0",
                self.alpha
            )));
        }
        if !(self.epsilon.is_finite() && self.epsilon > 0.0) {
            return Err(MemoryError::InvalidConfig(format!(
                "priority offset epsilon = {} must be finite and > 0",
                self.epsilon
            )));
        }
        Ok(())
    }

    /// The priority of a TD error, `(|δ| + ε)^α`, kept within `[1e-150, 1e150]` so that
    /// no α makes it 0 (never sampled again) or makes the tree's sums overflow.
    pub fn priority(&self, td_error: f32) -> f64 {
        (f64::from(td_error).abs() + self.epsilon)
            .powf(self.alpha)
            .clamp(1e-150, 1e150)
    }
}

/// A fixed-capacity ring of transitions sampled in proportion to their priorities.
///
/// An item's chance of being drawn is `P(i) = p_i / Σ p`, with `p_i = (|δ_i| + ε)^α`
/// from its last TD error; a new item gets the largest priority given so far (1 before
/// any update), so it is replayed at least about as often as any other. The priorities
/// sit in a [`SumTree`], making insertion, update and each draw O(log capacity).
///
/// Sampling is stratified: `[0, Σ p)` is cut into `batch` equal segments and one item is
/// drawn in each, which lowers the variance of a batch's composition. Each row gets the
/// importance-sampling weight `w_i = (N·P(i))^-β / max_j w_j = (p_i / p_min)^-β`, which
/// is at most 1; the caller anneals β (typically from 0.4 to 1) and passes it to
/// [`sample`](Self::sample).
///
/// [`Batch::indices`] are insertion indices. [`update_priorities`](Self::update_priorities)
/// skips an index whose item has been overwritten since it was sampled, so a TD error
/// never lands on a transition it was not computed for.
///
/// ```
/// use agentry_memory::{Batch, PrioritizedReplay, Prioritization, TransitionRef, TransitionSink};
/// use rand::SeedableRng;
///
/// let mut replay = PrioritizedReplay::new(100, 1, Prioritization::default())?;
/// for i in 0..3 {
///     let t = TransitionRef { obs: &[i as f32], action: 0, reward: 0.0, next_obs: &[0.0], discount: 0.9, steps: 1 };
///     replay.insert(t)?;
/// }
/// let mut batch = Batch::new(2, 1);
/// let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(0);
/// replay.sample(&mut rng, 0.4, &mut batch)?;
/// let td_errors = [0.5, 2.0];
/// replay.update_priorities(batch.indices(), &td_errors)?;
/// # Ok::<(), agentry_memory::MemoryError>(())
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct PrioritizedReplay<T: Element = f32> {
    storage: Storage<T>,
    tree: SumTree,
    prioritization: Prioritization,
    max_priority: f64,
}

impl<T: Element> PrioritizedReplay<T> {
    /// An empty memory of `capacity` transitions with observations of length `obs_dim`.
    pub fn new(capacity: usize, obs_dim: usize, prioritization: Prioritization) -> Result<Self> {
        Self::build(Storage::new(capacity, obs_dim, None), prioritization)
    }

    /// An empty memory of `capacity` transitions whose observations are stacks of
    /// `stack` frames (channel-first, `obs_dim / stack` values each), each distinct frame
    /// stored once (see the crate docs).
    pub fn with_frames(
        capacity: usize,
        obs_dim: usize,
        stack: usize,
        prioritization: Prioritization,
    ) -> Result<Self> {
        Self::build(Storage::new(capacity, obs_dim, Some(stack)), prioritization)
    }

    /// Frames per observation when it stores frames once each, else None.
    pub fn frames_per_obs(&self) -> Option<usize> {
        self.storage.stack()
    }

    /// The distinct frames held when it stores frames once each, else None.
    pub fn frames_held(&self) -> Option<usize> {
        self.storage.frames()
    }

    fn build(storage: Result<Storage<T>>, prioritization: Prioritization) -> Result<Self> {
        prioritization.check()?;
        let storage = storage?;
        let capacity = storage.capacity;
        if capacity
            .checked_next_power_of_two()
            .is_none_or(|l| l > isize::MAX as usize / 16)
        {
            return Err(MemoryError::InvalidConfig(format!(
                "capacity {capacity} is too large"
            )));
        }
        Ok(PrioritizedReplay {
            storage,
            tree: SumTree::new(capacity),
            prioritization,
            max_priority: 1.0,
        })
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

    /// The priority exponent and offset.
    pub fn prioritization(&self) -> Prioritization {
        self.prioritization
    }

    /// The priority new items get: the largest given so far, at least 1.
    pub fn max_priority(&self) -> f64 {
        self.max_priority
    }

    /// A copy of the item with insertion index `index`, if it is still held.
    pub fn get(&self, index: u64) -> Option<Transition<T>> {
        self.storage.slot(index).map(|slot| self.storage.get(slot))
    }

    /// The priority `p = (|δ| + ε)^α` of the item with insertion index `index`, if it is
    /// still held.
    pub fn priority(&self, index: u64) -> Option<f64> {
        self.storage.slot(index).map(|slot| self.tree.get(slot))
    }

    /// Sum of the priorities of the items held.
    pub fn total_priority(&self) -> f64 {
        self.tree.total()
    }

    /// Fills every row of `batch` by stratified proportional sampling with `rng`, with
    /// importance-sampling weights for exponent `beta` (0 gives weights of 1). Allocates
    /// nothing.
    ///
    /// Fails if the memory is empty, `batch` is for another `obs_dim`, or `beta` is
    /// negative or not finite.
    pub fn sample<R: Rng + ?Sized>(
        &self,
        rng: &mut R,
        beta: f64,
        batch: &mut Batch<T>,
    ) -> Result<()> {
        self.storage.check_batch(batch)?;
        if !(beta.is_finite() && beta >= 0.0) {
            return Err(MemoryError::InvalidBeta(beta));
        }
        let total = self.tree.total();
        let segment = total / batch.size() as f64;
        let min = self.tree.min();
        for row in 0..batch.size() {
            let u = (row as f64 + rng.random::<f64>()) * segment;
            let slot = self.tree.find(u);
            self.storage.gather(slot, batch, row);
            // (N·P(i))^-β / (N·P_min)^-β: N and the total cancel.
            batch.weights[row] = if beta == 0.0 {
                1.0
            } else {
                (self.tree.get(slot) / min).powf(-beta) as f32
            };
        }
        Ok(())
    }

    /// Sets the priority of each item in `indices` (insertion indices, as in
    /// [`Batch::indices`]) from the matching TD error: `p = (|δ| + ε)^α`. Items
    /// overwritten since they were sampled are skipped; returns how many were updated.
    /// When an index appears twice the later error wins.
    ///
    /// Fails, changing nothing, if the slices differ in length, an error is not finite,
    /// or an index was never inserted.
    pub fn update_priorities(&mut self, indices: &[u64], td_errors: &[f32]) -> Result<usize> {
        check_len("td_errors", indices.len(), td_errors.len())?;
        for (position, (&index, &value)) in indices.iter().zip(td_errors).enumerate() {
            if !value.is_finite() {
                return Err(MemoryError::NonFiniteTdError { position, value });
            }
            if index >= self.storage.inserted {
                return Err(MemoryError::UnknownIndex {
                    index,
                    inserted: self.storage.inserted,
                });
            }
        }
        let mut updated = 0;
        for (&index, &td_error) in indices.iter().zip(td_errors) {
            if let Some(slot) = self.storage.slot(index) {
                let p = self.prioritization.priority(td_error);
                self.tree.set(slot, p);
                self.max_priority = self.max_priority.max(p);
                updated += 1;
            }
        }
        Ok(updated)
    }

    /// Forgets every item and the largest priority (the storage stays allocated).
    pub fn clear(&mut self) {
        self.storage.clear();
        self.tree.clear();
        self.max_priority = 1.0;
    }

    /// Exact size in bytes of [`to_bytes`](Self::to_bytes)' output now:
    /// `len × (2·b·obs_dim + 24) + 74`, with `b` bytes per value (4 for `f32`, 1 for `u8`);
    /// for stacks of K frames stored once, `F·b·obs_dim/K + len × (8K + 24) + 82` for the
    /// F distinct frames held.
    pub fn saved_len(&self) -> usize {
        codec::saved_len(&self.storage, true)
    }

    /// The contents, ring position, priorities and prioritization as bytes (format in
    /// the crate docs). The sum tree's inner nodes are rebuilt on load, not saved.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.saved_len());
        let p = self.prioritization;
        let header = [p.alpha, p.epsilon, self.max_priority];
        codec::write_storage(
            &mut out,
            &self.storage,
            codec::KIND_PRIORITIZED,
            Some(header),
        );
        for slot in 0..self.len() {
            out.extend_from_slice(&self.tree.get(slot).to_le_bytes());
        }
        codec::finish(&mut out);
        out
    }

    /// Replaces the contents with state saved by [`to_bytes`](Self::to_bytes) from a
    /// memory of the same capacity, `obs_dim` and prioritization. Truncated, damaged or
    /// mismatched input is an error and leaves this memory unchanged; nothing is
    /// allocated.
    pub fn load_bytes(&mut self, bytes: &[u8]) -> Result<()> {
        let (header, mut r) = codec::open(bytes, &self.storage, codec::KIND_PRIORITIZED)?;
        let (alpha, epsilon) = (r.f64("alpha")?, r.f64("epsilon")?);
        let max_priority = r.f64("max_priority")?;
        let p = self.prioritization;
        // Bit equality: any other α or ε would mix priorities of two definitions.
        if alpha.to_bits() != p.alpha.to_bits() || epsilon.to_bits() != p.epsilon.to_bits() {
            return Err(MemoryError::Load(format!(
                "saved with alpha {alpha} and epsilon {epsilon}, this memory has alpha {} and epsilon {}",
                p.alpha, p.epsilon
            )));
        }
        if !(max_priority.is_finite() && max_priority >= 1.0) {
            return Err(MemoryError::Load(format!(
                "invalid max priority {max_priority}"
            )));
        }
        let cols = codec::read_columns(&mut r, &self.storage, header.inserted)?;
        let len = cols_len(header.inserted, self.storage.capacity);
        let priorities = r.column(len, 8, "priorities")?;
        if let Some(p) =
            f64s(priorities).find(|p| !(p.is_finite() && *p > 0.0 && *p <= max_priority))
        {
            return Err(MemoryError::Load(format!(
                "priority {p} outside (0, max priority {max_priority}]"
            )));
        }
        codec::store_columns(&cols, &mut self.storage);
        // The tree's leaves are the first `len` slots; the rest are empty.
        self.tree.assign(f64s(priorities));
        self.max_priority = max_priority;
        Ok(())
    }
}

fn cols_len(inserted: u64, capacity: usize) -> usize {
    inserted.min(capacity as u64) as usize
}

impl<T: Element> TransitionSink<T> for PrioritizedReplay<T> {
    fn insert(&mut self, transition: TransitionRef<'_, T>) -> Result<()> {
        let slot = self.storage.insert(transition)?;
        self.tree.set(slot, self.max_priority);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{chi_square, fill, item};
    use rand::SeedableRng;

    fn rng(seed: u64) -> rand_pcg::Pcg64Mcg {
        rand_pcg::Pcg64Mcg::seed_from_u64(seed)
    }

    fn linear() -> Prioritization {
        Prioritization {
            alpha: 1.0,
            epsilon: 1e-6,
        }
    }

    #[test]
    fn new_items_get_the_max_priority_and_updates_follow_the_formula() {
        let mut replay = PrioritizedReplay::new(
            8,
            2,
            Prioritization {
                alpha: 0.5,
                epsilon: 0.01,
            },
        )
        .unwrap();
        fill(&mut replay, 0..3);
        assert_eq!(
            [replay.priority(0), replay.priority(2)],
            [Some(1.0), Some(1.0)]
        );
        assert_eq!(replay.update_priorities(&[0, 1], &[3.99, -0.24]), Ok(2));
        assert!((replay.priority(0).unwrap() - 2.0).abs() < 1e-6); // (3.99 + 0.01)^0.5
        assert!((replay.priority(1).unwrap() - 0.5).abs() < 1e-6); // (0.24 + 0.01)^0.5
        assert_eq!(replay.max_priority(), replay.priority(0).unwrap());
        fill(&mut replay, 3..4);
        assert_eq!(replay.priority(3), replay.priority(0));
        assert!((replay.total_priority() - (2.0 + 0.5 + 1.0 + 2.0)).abs() < 1e-6);
    }

    #[test]
    fn importance_weights_hand_computed() {
        // Priorities 1, 2, 4 (α = 1): P = 1/7, 2/7, 4/7, N = 3, β = 0.5.
        // w_i = (N·P_i)^-β / max_w = (p_i / p_min)^-β: 1, 2^-0.5, 4^-0.5 = 0.5.
        let mut replay = PrioritizedReplay::new(4, 2, linear()).unwrap();
        fill(&mut replay, 0..3);
        replay
            .update_priorities(&[0, 1, 2], &[1.0, 2.0, 4.0])
            .unwrap();
        let mut batch = Batch::new(7, 2);
        let expected = |index: u64| match index {
            0 => 1.0,
            1 => 0.5f32.sqrt(),
            _ => 0.5,
        };
        for seed in 0..20 {
            replay.sample(&mut rng(seed), 0.5, &mut batch).unwrap();
            for row in 0..7 {
                let w = batch.weights()[row];
                assert!((w - expected(batch.indices()[row])).abs() < 1e-6, "{w}");
            }
            // Seven strata of width 1 over cumulative ranges [0,1) [1,3) [3,7): the
            // composition of every batch is fixed.
            let mut indices = batch.indices().to_vec();
            indices.sort();
            assert_eq!(indices, [0, 1, 1, 2, 2, 2, 2]);
        }
        replay.sample(&mut rng(0), 0.0, &mut batch).unwrap();
        assert_eq!(batch.weights(), [1.0; 7]);
        assert!(matches!(
            replay.sample(&mut rng(0), -1.0, &mut batch),
            Err(MemoryError::InvalidBeta(_))
        ));
        assert!(replay.sample(&mut rng(0), f64::NAN, &mut batch).is_err());
    }

    #[test]
    fn sampling_frequencies_are_proportional_to_priorities() {
        let priorities = [1.0, 2.0, 3.0, 4.0, 0.5, 8.0, 0.25, 6.0];
        let mut replay = PrioritizedReplay::new(8, 2, linear()).unwrap();
        fill(&mut replay, 0..8);
        let td: Vec<f32> = priorities.iter().map(|&p| p as f32 - 1e-6).collect();
        replay
            .update_priorities(&[0, 1, 2, 3, 4, 5, 6, 7], &td)
            .unwrap();
        let mut batch = Batch::new(32, 2);
        let mut counts = [0u32; 8];
        let mut r = rng(11);
        for _ in 0..5000 {
            replay.sample(&mut r, 0.4, &mut batch).unwrap();
            for (row, &index) in batch.indices().iter().enumerate() {
                counts[index as usize] += 1;
                assert_eq!(&batch.obs()[2 * row..2 * row + 2], item(index as f32).0);
            }
        }
        // Stratification makes the counts less variable than multinomial ones, so the
        // chi-square bound (7 dof, P(chi2 > 24.32) = 0.001) is conservative.
        let chi2 = chi_square(&counts, &priorities, 5000 * 32);
        assert!(chi2 < 24.32, "chi2 = {chi2}, counts {counts:?}");
    }

    #[test]
    fn overwriting_replaces_the_priority_and_stale_updates_are_skipped() {
        let mut replay = PrioritizedReplay::new(4, 2, linear()).unwrap();
        fill(&mut replay, 0..4);
        replay
            .update_priorities(&[0, 1, 2, 3], &[10.0, 0.5, 0.5, 0.5])
            .unwrap();
        let max = replay.max_priority();
        assert!((max - 10.0).abs() < 1e-5);
        // Sampled indices 0 and 1, then two insertions overwrite them.
        fill(&mut replay, 4..6);
        assert_eq!((replay.priority(0), replay.priority(4)), (None, Some(max)));
        assert_eq!(replay.get(4).unwrap().obs, item(4.0).0);
        assert!((replay.total_priority() - (2.0 * max + 1.0)).abs() < 1e-5);
        // The TD errors of the old items must not land on the new ones.
        assert_eq!(
            replay.update_priorities(&[0, 1, 2, 5], &[7.0, 7.0, 3.0, 1.0]),
            Ok(2)
        );
        assert_eq!(replay.priority(4), Some(max));
        assert!((replay.priority(2).unwrap() - 3.0).abs() < 1e-5);
        assert!((replay.priority(5).unwrap() - 1.0).abs() < 1e-5);
        // Only live items are sampled.
        let mut batch = Batch::new(64, 2);
        replay.sample(&mut rng(3), 1.0, &mut batch).unwrap();
        assert!(batch.indices().iter().all(|i| (2..6).contains(i)));
        // Errors change nothing.
        let before = replay.clone();
        assert!(matches!(
            replay.update_priorities(&[2, 9], &[1.0, 1.0]),
            Err(MemoryError::UnknownIndex { index: 9, .. })
        ));
        assert!(matches!(
            replay.update_priorities(&[2, 3], &[1.0, f32::NAN]),
            Err(MemoryError::NonFiniteTdError { position: 1, .. })
        ));
        assert!(matches!(
            replay.update_priorities(&[2, 3], &[1.0]),
            Err(MemoryError::Length { .. })
        ));
        assert_eq!(replay, before);
    }

    #[test]
    fn extreme_alpha_keeps_priorities_positive_and_finite() {
        let mut replay = PrioritizedReplay::new(
            4,
            2,
            Prioritization {
                alpha: 1000.0,
                epsilon: 1e-6,
            },
        )
        .unwrap();
        fill(&mut replay, 0..4);
        replay
            .update_priorities(&[0, 1, 2, 3], &[0.0, 1e30, 0.5, 3.0])
            .unwrap();
        assert_eq!(
            (replay.priority(0), replay.priority(1)),
            (Some(1e-150), Some(1e150))
        );
        let mut batch = Batch::new(8, 2);
        replay.sample(&mut rng(0), 1.0, &mut batch).unwrap();
        assert!(
            batch
                .weights()
                .iter()
                .all(|w| w.is_finite() && (0.0..=1.0).contains(w))
        );
    }

    #[test]
    fn bad_configuration_and_empty_sampling_are_errors() {
        assert!(
            PrioritizedReplay::<f32>::new(
                4,
                2,
                Prioritization {
                    alpha: -1.0,
                    epsilon: 1e-6
                }
            )
            .is_err()
        );
        assert!(
            PrioritizedReplay::<f32>::new(
                4,
                2,
                Prioritization {
                    alpha: 0.5,
                    epsilon: 0.0
                }
            )
            .is_err()
        );
        assert!(PrioritizedReplay::<f32>::new(0, 2, Prioritization::default()).is_err());
        let replay = PrioritizedReplay::<f32>::new(4, 2, Prioritization::default()).unwrap();
        assert_eq!(
            replay.sample(&mut rng(0), 0.4, &mut Batch::new(2, 2)),
            Err(MemoryError::Empty)
        );
    }

    #[test]
    fn save_load_round_trip_and_every_truncation_or_bit_flip_fails_cleanly() {
        for count in [0, 3, 6, 11] {
            let mut replay = PrioritizedReplay::new(6, 2, Prioritization::default()).unwrap();
            fill(&mut replay, 0..count);
            let live: Vec<u64> = (count.saturating_sub(6) as u64..count as u64).collect();
            let td: Vec<f32> = live.iter().map(|&i| i as f32 * 0.7 - 2.0).collect();
            replay.update_priorities(&live, &td).unwrap();
            let bytes = replay.to_bytes();
            assert_eq!(bytes.len(), replay.saved_len());
            let mut restored = PrioritizedReplay::new(6, 2, Prioritization::default()).unwrap();
            fill(&mut restored, 100..102);
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
                damaged[i] ^= 0x01;
                assert!(
                    restored.load_bytes(&damaged).is_err(),
                    "flip at byte {i} not caught"
                );
                assert_eq!(restored, before);
            }
            restored.load_bytes(&bytes).unwrap();
            assert_eq!(restored.to_bytes(), bytes);
            assert_eq!(restored.max_priority(), replay.max_priority());
            for i in 0..replay.inserted() {
                assert_eq!(
                    (restored.get(i), restored.priority(i)),
                    (replay.get(i), replay.priority(i))
                );
            }
            if count > 0 {
                // Same state, same RNG: the same batches.
                let (mut a, mut b) = (Batch::new(5, 2), Batch::new(5, 2));
                replay.sample(&mut rng(9), 0.6, &mut a).unwrap();
                restored.sample(&mut rng(9), 0.6, &mut b).unwrap();
                assert_eq!(a, b);
            }
        }
        let saved = PrioritizedReplay::<f32>::new(6, 2, Prioritization::default())
            .unwrap()
            .to_bytes();
        let mut other = PrioritizedReplay::<f32>::new(
            6,
            2,
            Prioritization {
                alpha: 0.6,
                epsilon: 1e-6,
            },
        )
        .unwrap();
        assert!(
            other
                .load_bytes(&saved)
                .unwrap_err()
                .to_string()
                .contains("alpha")
        );
        let mut uniform = crate::UniformReplay::<f32>::new(6, 2).unwrap();
        assert!(
            uniform
                .load_bytes(&saved)
                .unwrap_err()
                .to_string()
                .contains("prioritized")
        );
    }
}
