//! A sum tree with a min tree over the same leaves: O(log n) update, prefix search and
//! minimum, for proportional prioritized replay.

/// Non-negative `f64` priorities over `capacity` leaves, with their total, their smallest
/// positive value and proportional search, each kept up to date in O(log n).
///
/// The tree is an implicit complete binary tree over `L = capacity.next_power_of_two()`
/// leaves: node 1 is the root, node `j` has children `2j` and `2j + 1`, and leaf `i` is
/// node `L + i`. `sums` holds every node (`2L` values); `mins` holds only the inner
/// nodes (`L` values) and reads the leaves from `sums`, so the two trees cost 24 bytes
/// per leaf. A zero leaf is empty: it adds nothing to the sum, is ignored by the minimum
/// and is never found by [`SumTree::find`].
///
/// Inner nodes are recomputed from their children (never adjusted by differences), so
/// they are an exact function of the leaves and do not drift over millions of updates.
#[derive(Clone, Debug, PartialEq)]
pub struct SumTree {
    capacity: usize,
    leaves: usize,
    sums: Vec<f64>,
    mins: Vec<f64>,
}

impl SumTree {
    /// A tree of `capacity` empty leaves.
    ///
    /// # Panics
    ///
    /// If `capacity` is 0 or its next power of two overflows `usize`.
    pub fn new(capacity: usize) -> Self {
        assert!(capacity > 0, "a sum tree needs at least one leaf");
        let leaves = capacity
            .checked_next_power_of_two()
            .expect("sum-tree capacity too large");
        SumTree {
            capacity,
            leaves,
            sums: vec![0.0; 2 * leaves],
            mins: vec![f64::INFINITY; leaves],
        }
    }

    /// Number of leaves.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// The value of leaf `i`.
    ///
    /// # Panics
    ///
    /// If `i >= capacity`.
    pub fn get(&self, i: usize) -> f64 {
        assert!(i < self.capacity, "leaf {i} out of range");
        self.sums[self.leaves + i]
    }

    /// Sets leaf `i` to `priority` (0 empties it) and updates its ancestors.
    ///
    /// # Panics
    ///
    /// If `i >= capacity`, or `priority` is negative or not finite.
    pub fn set(&mut self, i: usize, priority: f64) {
        assert!(i < self.capacity, "leaf {i} out of range");
        assert!(
            priority.is_finite() && priority >= 0.0,
            "priority {priority} must be finite and >= 0"
        );
        let mut node = self.leaves + i;
        self.sums[node] = priority;
        node /= 2;
        while node >= 1 {
            self.sums[node] = self.sums[2 * node] + self.sums[2 * node + 1];
            self.mins[node] = self.min_of(2 * node).min(self.min_of(2 * node + 1));
            node /= 2;
        }
    }

    /// The minimum over the subtree at `node`, `+∞` if it holds only empty leaves.
    #[inline]
    fn min_of(&self, node: usize) -> f64 {
        if node >= self.leaves {
            let v = self.sums[node];
            if v > 0.0 { v } else { f64::INFINITY }
        } else {
            self.mins[node]
        }
    }

    /// The sum of all leaves.
    pub fn total(&self) -> f64 {
        self.sums[1]
    }

    /// The smallest non-zero leaf, `+∞` if every leaf is empty.
    pub fn min(&self) -> f64 {
        self.min_of(1)
    }

    /// The non-empty leaf `i` whose cumulative range `[S(i), S(i) + leaf i)` contains
    /// `u`, where `S(i)` is the sum of the leaves before `i`. For `u` uniform in
    /// `[0, total)` leaf `i` is found with probability `leaf i / total`.
    ///
    /// A `u` at or past the total (from rounding) gives the last non-empty leaf; a
    /// negative `u` the first. With every leaf empty it returns 0.
    pub fn find(&self, u: f64) -> usize {
        let mut u = u;
        let mut node = 1;
        while node < self.leaves {
            let left = 2 * node;
            let (l, r) = (self.sums[left], self.sums[left + 1]);
            // Only ever descend into a subtree with a positive sum, so the leaf reached
            // is non-empty whatever rounding did to `u`.
            if (u < l && l > 0.0) || r <= 0.0 {
                node = left;
            } else {
                u -= l;
                node = left + 1;
            }
        }
        node - self.leaves
    }

    /// Empties every leaf.
    pub fn clear(&mut self) {
        self.sums.fill(0.0);
        self.mins.fill(f64::INFINITY);
    }

    /// Sets the first leaves to `values`, in order, and empties the rest, rebuilding the
    /// inner nodes bottom-up in O(capacity) (cheaper than `set` on every leaf).
    ///
    /// # Panics
    ///
    /// If there are more values than leaves, or one is negative or not finite.
    pub fn assign(&mut self, values: impl IntoIterator<Item = f64>) {
        let l = self.leaves;
        let mut count = 0;
        for v in values {
            assert!(count < self.capacity, "more values than leaves");
            assert!(
                v.is_finite() && v >= 0.0,
                "priority {v} must be finite and >= 0"
            );
            self.sums[l + count] = v;
            count += 1;
        }
        self.sums[l + count..].fill(0.0);
        for node in (1..l).rev() {
            self.sums[node] = self.sums[2 * node] + self.sums[2 * node + 1];
            self.mins[node] = self.min_of(2 * node).min(self.min_of(2 * node + 1));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::chi_square;
    use rand::{RngExt, SeedableRng};

    #[test]
    fn sums_minimum_and_search_follow_the_leaves() {
        let mut tree = SumTree::new(5);
        assert_eq!((tree.total(), tree.min()), (0.0, f64::INFINITY));
        for (i, p) in [1.0, 2.0, 3.0, 4.0, 0.5].into_iter().enumerate() {
            tree.set(i, p);
        }
        assert_eq!(tree.total(), 10.5);
        assert_eq!(tree.min(), 0.5);
        // Cumulative ranges: [0,1) [1,3) [3,6) [6,10) [10,10.5).
        let found: Vec<usize> = [0.0, 0.99, 1.0, 2.99, 3.0, 5.99, 6.0, 9.99, 10.0, 10.49]
            .into_iter()
            .map(|u| tree.find(u))
            .collect();
        assert_eq!(found, [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]);
        // Past the total or below zero: the last / first non-empty leaf.
        assert_eq!(
            (tree.find(10.5), tree.find(1e9), tree.find(-1.0)),
            (4, 4, 0)
        );
        tree.set(4, 0.0);
        tree.set(0, 7.0);
        assert_eq!((tree.total(), tree.min()), (16.0, 2.0));
        assert_eq!(tree.find(100.0), 3);
        tree.set(0, 0.0);
        assert_eq!(tree.find(0.0), 1, "an empty leaf is never found");
        let mut rebuilt = SumTree::new(5);
        rebuilt.assign([0.0, 2.0, 3.0, 4.0]);
        assert_eq!(rebuilt, tree);
        tree.clear();
        assert_eq!(tree, SumTree::new(5));
    }

    #[test]
    fn a_single_leaf_tree_works() {
        let mut tree = SumTree::new(1);
        tree.set(0, 3.0);
        assert_eq!(
            (tree.total(), tree.min(), tree.find(2.0), tree.find(5.0)),
            (3.0, 3.0, 0, 0)
        );
    }

    #[test]
    fn inner_nodes_match_a_rebuild_after_many_random_updates() {
        let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(3);
        let mut tree = SumTree::new(1000);
        let mut leaves = vec![0.0; 1000];
        for _ in 0..20_000 {
            let i = rng.random_range(0..1000);
            let p = if rng.random_bool(0.1) {
                0.0
            } else {
                rng.random::<f64>() * 10.0
            };
            tree.set(i, p);
            leaves[i] = p;
        }
        let mut rebuilt = SumTree::new(1000);
        rebuilt.assign(leaves.iter().copied());
        assert_eq!(rebuilt, tree);
        let positive = leaves.iter().copied().filter(|&p| p > 0.0);
        assert_eq!(tree.min(), positive.fold(f64::INFINITY, f64::min));
    }

    #[test]
    fn search_frequencies_are_proportional_to_the_leaves() {
        // Chi-square goodness of fit of 100 000 uniform searches against p / total.
        let priorities = [1.0, 2.0, 0.0, 4.0, 8.0, 0.5, 16.0, 0.25];
        let mut tree = SumTree::new(priorities.len());
        for (i, &p) in priorities.iter().enumerate() {
            tree.set(i, p);
        }
        let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(7);
        let draws = 100_000;
        let mut counts = [0u32; 8];
        for _ in 0..draws {
            counts[tree.find(rng.random::<f64>() * tree.total())] += 1;
        }
        assert_eq!(counts[2], 0);
        let chi2 = chi_square(&counts, &priorities, draws);
        // 6 degrees of freedom (7 non-empty cells): P(chi2 > 22.46) = 0.001.
        assert!(chi2 < 22.46, "chi2 = {chi2}, counts {counts:?}");
    }
}
