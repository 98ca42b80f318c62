//! The bounded selection of the best `k` hits, and the order that makes it deterministic.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

/// One search result: a key's id and its inner product with the query.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Hit {
    /// The key's id (its insertion position in the index).
    pub id: u32,
    /// The inner product of the query and the stored key (cosine similarity for
    /// L2-normalised vectors).
    pub score: f32,
}

impl Hit {
    /// The ranking order of hits: higher score first, then lower id. It is total
    /// (`f32::total_cmp` on scores), so a top-k is one well-defined set whatever the
    /// order in which keys are scanned or how they are split across threads.
    pub fn rank(&self, other: &Hit) -> Ordering {
        other
            .score
            .total_cmp(&self.score)
            .then(self.id.cmp(&other.id))
    }
}

/// A hit ordered so that the heap's maximum is the *worst* hit kept.
#[derive(Clone, Copy, Debug)]
struct Worst(Hit);

impl PartialEq for Worst {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Worst {}
impl PartialOrd for Worst {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Worst {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.rank(&other.0)
    }
}

/// The best `k` hits offered so far, in a heap of at most `k` entries.
pub(crate) struct TopK {
    k: usize,
    heap: BinaryHeap<Worst>,
}

impl TopK {
    pub(crate) fn new(k: usize) -> Self {
        TopK {
            k,
            heap: BinaryHeap::with_capacity(k + 1),
        }
    }

    /// Whether `hit` would enter (before any filter is consulted).
    #[inline]
    pub(crate) fn accepts(&self, hit: &Hit) -> bool {
        if self.heap.len() < self.k {
            return self.k > 0;
        }
        match self.heap.peek() {
            Some(worst) => hit.rank(&worst.0) == Ordering::Less,
            None => false,
        }
    }

    /// Keeps `hit` if it is among the best `k`; `keep(id)` is asked only then, so a
    /// costly filter runs for few keys.
    #[inline]
    pub(crate) fn offer(&mut self, hit: Hit, keep: Option<&(dyn Fn(u32) -> bool + Sync)>) {
        if !self.accepts(&hit) || keep.is_some_and(|f| !f(hit.id)) {
            return;
        }
        if self.heap.len() == self.k {
            self.heap.pop();
        }
        self.heap.push(Worst(hit));
    }

    /// Adds the hits of another selection.
    pub(crate) fn merge(&mut self, other: TopK) {
        for w in other.heap {
            self.offer(w.0, None);
        }
    }

    /// The hits kept, best first.
    pub(crate) fn into_sorted(self) -> Vec<Hit> {
        let mut hits: Vec<Hit> = self.heap.into_iter().map(|w| w.0).collect();
        hits.sort_by(Hit::rank);
        hits
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_best_k_with_ties_to_the_lower_id() {
        let mut top = TopK::new(3);
        let scores = [0.5, 0.9, 0.5, 0.1, 0.9, 0.7, 0.5];
        for (id, &score) in scores.iter().enumerate() {
            top.offer(
                Hit {
                    id: id as u32,
                    score,
                },
                None,
            );
        }
        let ids: Vec<u32> = top.into_sorted().iter().map(|h| h.id).collect();
        assert_eq!(ids, [1, 4, 5]);
        let mut top = TopK::new(0);
        top.offer(Hit { id: 0, score: 1.0 }, None);
        assert!(top.into_sorted().is_empty());
    }

    #[test]
    fn the_filter_is_asked_only_for_hits_that_would_enter() {
        let asked = std::sync::Mutex::new(Vec::new());
        let keep = |id: u32| {
            asked.lock().unwrap().push(id);
            id != 2
        };
        let mut top = TopK::new(1);
        for (id, score) in [(0, 0.5), (1, 0.1), (2, 0.9), (3, 0.7)] {
            top.offer(Hit { id, score }, Some(&keep));
        }
        assert_eq!(*asked.lock().unwrap(), [0, 2, 3]);
        assert_eq!(top.into_sorted()[0].id, 3);
    }
}
