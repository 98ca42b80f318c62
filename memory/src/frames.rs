//! Observations that are stacks of frames, each distinct frame stored once.
//!
//! An Atari observation stacks the last K frames, `[K, 84, 84]` channel-first, so the
//! observations of consecutive steps share K − 1 frames, and a transition's next
//! observation (n steps on) shares K − n of them with its observation and all of them
//! with later transitions' observations. Dopamine's replay stores each frame once and
//! rebuilds the stacks from time indices; this store does the same by content, which
//! needs no knowledge of the episode structure and is exact whatever the environment
//! stacks at an episode start: a transition holds 2K frame ids (its observation's
//! frames, then its next observation's), frames are reference-counted and freed when
//! the last transition using them is overwritten, and a frame being stored is first
//! looked up (hash, then a full comparison) among the recently stored ones.
//!
//! In steady state an Atari stream stores about one new frame per transition, plus the
//! final frames of each episode: `84·84 + 8K` bytes per transition instead of
//! `2·K·84·84`. The frame pool grows in chunks as frames are needed (never beyond
//! `2K × capacity` frames, the case where nothing is shared), so a memory that is not
//! yet full has not allocated for frames it does not hold.

use crate::element::Element;
use crate::error::{MemoryError, Result};

/// Frames per chunk of the pool.
const CHUNK: usize = 4096;
/// Entries of the direct-mapped cache of recently stored frames.
const CACHE: usize = 1 << 12;
/// No frame.
const NONE: u32 = u32::MAX;

/// The frame pool and each transition's frame ids; see the [module docs](self).
#[derive(Clone, Debug)]
pub(crate) struct FrameStore<T> {
    /// Frames per observation (K).
    stack: usize,
    /// Values per frame.
    frame_len: usize,
    /// The pool, `CHUNK` frames per chunk.
    chunks: Vec<Vec<T>>,
    /// References to each frame of the pool (0: free).
    refs: Vec<u32>,
    /// Free frames of the pool.
    free: Vec<u32>,
    /// Per transition slot, the frames of its observation, then of its next observation.
    ids: Vec<u32>,
    /// (hash, frame) of recently stored frames, indexed by the hash's low bits.
    cache: Vec<(u64, u32)>,
    /// Frames in use.
    live: usize,
}

impl<T: Element> FrameStore<T> {
    /// A store for `capacity` transitions of observations of `obs_dim` values, each a
    /// stack of `stack` frames.
    pub(crate) fn new(capacity: usize, obs_dim: usize, stack: usize) -> Result<Self> {
        if stack == 0 || obs_dim == 0 || !obs_dim.is_multiple_of(stack) {
            return Err(MemoryError::InvalidConfig(format!(
                "observations of {obs_dim} values are not a stack of {stack} frames"
            )));
        }
        let ids = capacity
            .checked_mul(2 * stack)
            .filter(|&n| n < NONE as usize);
        let Some(ids) = ids else {
            return Err(MemoryError::InvalidConfig(format!(
                "capacity {capacity} × 2 × {stack} frames is too many frame ids"
            )));
        };
        Ok(FrameStore {
            stack,
            frame_len: obs_dim / stack,
            chunks: Vec::new(),
            refs: Vec::new(),
            free: Vec::new(),
            ids: vec![NONE; ids],
            cache: vec![(0, NONE); CACHE],
            live: 0,
        })
    }

    /// Frames per observation.
    pub(crate) fn stack(&self) -> usize {
        self.stack
    }

    /// Distinct frames held.
    pub(crate) fn frames(&self) -> usize {
        self.live
    }

    /// Frames the pool has room for (allocated).
    #[cfg(test)]
    pub(crate) fn pool_frames(&self) -> usize {
        self.refs.len()
    }

    fn frame(&self, id: u32) -> &[T] {
        let i = id as usize;
        &self.chunks[i / CHUNK][(i % CHUNK) * self.frame_len..][..self.frame_len]
    }

    fn frame_mut(&mut self, id: u32) -> &mut [T] {
        let i = id as usize;
        let len = self.frame_len;
        &mut self.chunks[i / CHUNK][(i % CHUNK) * len..][..len]
    }

    /// Adds a chunk of free frames to the pool.
    fn grow(&mut self) {
        let base = self.refs.len();
        self.chunks.push(vec![T::default(); CHUNK * self.frame_len]);
        self.refs.resize(base + CHUNK, 0);
        // Popped lowest first.
        self.free
            .extend((base..base + CHUNK).rev().map(|i| i as u32));
    }

    /// `frame`'s id with one more reference: a frame already held, or a new one.
    fn acquire(&mut self, frame: &[T]) -> u32 {
        let hash = T::hash(frame);
        let entry = (hash as usize) & (CACHE - 1);
        let (cached_hash, cached) = self.cache[entry];
        if cached != NONE
            && cached_hash == hash
            && self.refs[cached as usize] > 0
            && self.frame(cached) == frame
        {
            self.refs[cached as usize] += 1;
            return cached;
        }
        if self.free.is_empty() {
            self.grow();
        }
        let id = self.free.pop().expect("a free frame after growing");
        self.frame_mut(id).copy_from_slice(frame);
        self.refs[id as usize] = 1;
        self.live += 1;
        self.cache[entry] = (hash, id);
        id
    }

    fn release(&mut self, id: u32) {
        let r = &mut self.refs[id as usize];
        *r -= 1;
        if *r == 0 {
            self.free.push(id);
            self.live -= 1;
        }
    }

    /// Stores the observations of the transition in `slot`, releasing the frames of the
    /// one it replaces when `occupied`. The lengths are the caller's to check.
    pub(crate) fn put(&mut self, slot: usize, occupied: bool, obs: &[T], next_obs: &[T]) {
        let per = 2 * self.stack;
        if occupied {
            for k in 0..per {
                let id = self.ids[slot * per + k];
                self.release(id);
            }
        }
        let frames = obs
            .chunks_exact(self.frame_len)
            .chain(next_obs.chunks_exact(self.frame_len));
        for (k, frame) in frames.enumerate() {
            let id = self.acquire(frame);
            self.ids[slot * per + k] = id;
        }
    }

    /// Writes the observations of the transition in `slot` into `obs` and `next_obs`.
    pub(crate) fn write(&self, slot: usize, obs: &mut [T], next_obs: &mut [T]) {
        let per = 2 * self.stack;
        let ids = &self.ids[slot * per..(slot + 1) * per];
        let outs = obs
            .chunks_exact_mut(self.frame_len)
            .chain(next_obs.chunks_exact_mut(self.frame_len));
        for (out, &id) in outs.zip(ids) {
            out.copy_from_slice(self.frame(id));
        }
    }

    /// Forgets every frame (the pool stays allocated).
    pub(crate) fn clear(&mut self) {
        self.refs.fill(0);
        self.free.clear();
        self.free
            .extend((0..self.refs.len()).rev().map(|i| i as u32));
        self.cache.fill((0, NONE));
        self.live = 0;
    }

    /// The saved form of the first `len` slots: the distinct frames they use, numbered
    /// in order of first use, and each slot's frame numbers.
    pub(crate) fn write_saved(&self, len: usize, out: &mut Vec<u8>) {
        let per = 2 * self.stack;
        let mut number = vec![NONE; self.refs.len()];
        let mut order = Vec::with_capacity(self.live);
        for &id in &self.ids[..len * per] {
            if number[id as usize] == NONE {
                number[id as usize] = order.len() as u32;
                order.push(id);
            }
        }
        out.extend_from_slice(&(order.len() as u64).to_le_bytes());
        for &id in &order {
            T::write_le(self.frame(id), out);
        }
        for &id in &self.ids[..len * per] {
            out.extend_from_slice(&number[id as usize].to_le_bytes());
        }
    }

    /// Checks saved frames (`frames` of them in `pool`) and frame numbers of `len`
    /// slots (`numbers`): every number names a frame, every frame is used.
    pub(crate) fn check_saved(&self, frames: usize, numbers: &[u8]) -> Result<()> {
        let mut used = vec![false; frames];
        for n in crate::codec::u32s(numbers) {
            match used.get_mut(n as usize) {
                Some(u) => *u = true,
                None => {
                    return Err(MemoryError::Load(format!(
                        "frame number {n} of {frames} saved frames"
                    )));
                }
            }
        }
        if let Some(unused) = used.iter().position(|u| !u) {
            return Err(MemoryError::Load(format!(
                "saved frame {unused} is used by no transition"
            )));
        }
        Ok(())
    }

    /// Replaces the contents with checked saved frames and frame numbers.
    pub(crate) fn load_saved(&mut self, frames: usize, pool: &[u8], numbers: &[u8]) {
        while self.refs.len() < frames {
            self.grow();
        }
        self.clear();
        // The frames take ids 0..frames: off the free list, which pops lowest first.
        let bytes = self.frame_len * T::BYTES;
        for (id, frame) in pool.chunks_exact(bytes).enumerate() {
            let popped = self.free.pop();
            debug_assert_eq!(popped, Some(id as u32));
            T::read_le(frame, self.frame_mut(id as u32));
        }
        for (slot_id, n) in self.ids.iter_mut().zip(crate::codec::u32s(numbers)) {
            *slot_id = n;
            self.refs[n as usize] += 1;
        }
        self.live = frames;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stream of 2-frame stacks of 3-value frames, frame `t` filled with `t`: the
    /// observation at step t is frames (t − 1, t).
    fn stack(t: u8) -> Vec<u8> {
        [t.saturating_sub(1), t]
            .iter()
            .flat_map(|&f| [f; 3])
            .collect()
    }

    #[test]
    fn a_stream_of_stacks_stores_each_frame_once_and_frees_what_it_overwrites() {
        let mut s = FrameStore::<u8>::new(4, 6, 2).unwrap();
        for t in 1..=4u8 {
            // 1-step transitions: (stack t, stack t + 1).
            s.put(t as usize - 1, false, &stack(t), &stack(t + 1));
        }
        // Frames 0..=5, each once.
        assert_eq!(s.frames(), 6);
        let (mut obs, mut next) = ([0u8; 6], [0u8; 6]);
        s.write(2, &mut obs, &mut next);
        assert_eq!((obs.to_vec(), next.to_vec()), (stack(3), stack(4)));
        // Overwriting slots 0 and 1 frees frames 0 and 1 (used by no one else).
        s.put(0, true, &stack(5), &stack(6));
        s.put(1, true, &stack(6), &stack(7));
        assert_eq!(s.frames(), 6, "frames 2..=7");
        s.write(1, &mut obs, &mut next);
        assert_eq!((obs.to_vec(), next.to_vec()), (stack(6), stack(7)));
        assert_eq!(s.pool_frames(), CHUNK);
        s.clear();
        assert_eq!(s.frames(), 0);
        assert!(FrameStore::<u8>::new(4, 7, 2).is_err());
        assert!(FrameStore::<u8>::new(usize::MAX / 2, 6, 2).is_err());
    }
}
