//! Experience memories for agentry, with no deep-learning framework.
//!
//! # Design
//!
//! Packing experience and storing it are separate (as in acme's adders):
//!
//! - An **adder** ([`OneStep`], [`NStep`]) takes the [`Step`]s of *one* environment
//!   stream and completes transitions; a vector environment of N copies uses N adders.
//! - A **memory** ([`UniformReplay`], [`PrioritizedReplay`], or [`Replay`] for either)
//!   is a [`TransitionSink`]: it stores whatever [`TransitionRef`] it is given, in
//!   fixed-capacity ring storage that overwrites the oldest item.
//! - **Sampling** fills a caller-owned [`Batch`] whose arrays were allocated once;
//!   randomness comes from a generator the caller passes in, so runs are reproducible
//!   and the memory's saved state needs no RNG.
//!
//! Storage is flat and preallocated: observations of all items live in one
//! `Vec<T>` of `capacity × obs_dim` (and likewise the next observations), actions,
//! rewards, discounts and step counts in one `Vec` each. Inserting, sampling and
//! updating priorities allocate nothing.
//!
//! The observation element type `T` is an [`Element`]: `f32` (the default, for
//! vectors) or `u8` (image frames). Memories, adders, [`Step`]s, transitions and
//! [`Batch`]es of `u8` keep frames as bytes all the way to the minibatch, which the
//! learner converts to `f32` when it builds its input tensor; nothing in between holds
//! a float copy of a frame.
//!
//! ```
//! use agentry_memory::{Adder, Batch, NStep, PrioritizedReplay, Prioritization, Step};
//! use rand::SeedableRng;
//!
//! let mut replay = PrioritizedReplay::new(10_000, 4, Prioritization::default())?;
//! let mut adder = NStep::new(3, 0.99, 4)?; // one per environment
//! let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(0);
//! let mut batch = Batch::new(32, 4);
//! for t in 0..100 {
//!     let (obs, next_obs) = ([t as f32; 4], [t as f32 + 1.0; 4]);
//!     let step = Step {
//!         obs: &obs,
//!         action: t % 2,
//!         reward: 1.0,
//!         duration: 1, // primitive steps this step spans (more for a macro-action)
//!         terminated: false,
//!         truncated: t % 50 == 49, // a time limit: still bootstraps
//!         next_obs: &next_obs,
//!     };
//!     adder.add(&step, &mut replay)?;
//! }
//! replay.sample(&mut rng, 0.4, &mut batch)?;
//! // target_i = rewards[i] + discounts[i] * max_a Q(next_obs_i, a), loss weighted by weights[i]
//! let td_errors = vec![0.1; 32];
//! replay.update_priorities(batch.indices(), &td_errors)?;
//! # Ok::<(), agentry_memory::MemoryError>(())
//! ```
//!
//! # Stacked frames, each stored once
//!
//! An Atari observation is a stack of the last K frames (`[K, 84, 84]`), so consecutive
//! observations share K − 1 frames and a transition's next observation is a later
//! transition's observation. A memory built `with_frames(capacity, obs_dim, K)` stores
//! each distinct frame once, as Dopamine's replay does: each item keeps 2K frame ids,
//! frames are reference-counted and freed when the last item using them is
//! overwritten, and a frame being stored is first looked up among those stored
//! recently (by hash, then compared whole). Finding frames by content needs no
//! knowledge of episodes or of which environment a transition came from, and gives
//! back exactly the observations inserted, whatever an environment stacks at an
//! episode start. The frame pool grows in chunks of 4096 frames as it needs them (so a
//! frame-stacked memory allocates while it fills, unlike the others), never beyond
//! `2K × capacity` frames.
//!
//! ```
//! use agentry_memory::{Batch, TransitionRef, TransitionSink, UniformReplay};
//! use rand::SeedableRng;
//!
//! // Stacks of 4 frames of 3 bytes; the observation at step t holds frames t-3..=t.
//! let stack = |t: u8| -> Vec<u8> { (t..t + 4).flat_map(|f| [f; 3]).collect() };
//! let mut replay = UniformReplay::<u8>::with_frames(1000, 12, 4)?;
//! for t in 0..100u8 {
//!     let (obs, next_obs) = (stack(t), stack(t + 1));
//!     let t = TransitionRef { obs: &obs, action: 0, reward: 1.0, next_obs: &next_obs, discount: 0.99, steps: 1 };
//!     replay.insert(t)?;
//! }
//! assert_eq!(replay.frames_held(), Some(104)); // not 800
//! assert_eq!(replay.get(7).unwrap().next_obs, stack(8));
//! let mut batch = Batch::new(8, 12);
//! replay.sample(&mut rand_pcg::Pcg64Mcg::seed_from_u64(0), &mut batch)?;
//! # Ok::<(), agentry_memory::MemoryError>(())
//! ```
//!
//! # N-step transitions, termination and truncation
//!
//! The transition that starts at step `t` of an episode spans `k = min(n, steps left)`
//! steps and stores
//!
//! - `obs` = the observation at `t`, `action` = the action taken at `t`;
//! - `reward` = `r_t + γ r_(t+1) + … + γ^(k-1) r_(t+k-1)`;
//! - `next_obs` = the observation after step `t+k-1` — at an episode end, the *final*
//!   observation (which a vector environment keeps aside when it auto-resets);
//! - `discount` = `γ^k`, or **0 if the episode terminated** at step `t+k-1`;
//! - `steps` = `k`.
//!
//! That is for primitive actions (`Step::duration = 1`). A step may instead be a
//! macro-action that ran `d` primitive environment steps open-loop (Hosu, Rebedea and
//! Pascanu 2025), whose `reward` is already its discounted sum `Σ_{i<d} γ^i r_i`.
//! Discounting then counts primitive steps: with durations `d_t … d_(t+k-1)` and
//! `D_j = d_t + … + d_(t+j-1)` primitive steps before step `t+j` in the window,
//!
//! - `reward` = `Σ_{j<k} γ^(D_j) r_(t+j)`;
//! - `discount` = `γ^(D_k)`, or 0 if the episode terminated inside the window;
//! - `steps` = `D_k`, the primitive steps the window spans.
//!
//! A window still holds at most `n` (macro or primitive) steps. With every duration 1,
//! `D_j = j` and these are the formulas above. A duration of 0 is an error.
//!
//! The learner's target is `reward + discount · V(next_obs)`, with no `done` flag:
//! termination is already in `discount`. Following Gymnasium, a **truncated** episode
//! (a time limit) did not reach a terminal state, so its last windows keep `γ^k` and
//! bootstrap from the final observation; only `terminated` zeroes the discount (a step
//! with both flags counts as terminated). When either flag is set, the adder emits every
//! window still open — the full one and the shorter ones — so no transition crosses an
//! episode boundary and the adder starts the next episode empty. An episode still
//! running when the stream stops leaves up to `n - 1` steps pending; [`Adder::clear`]
//! drops them.
//!
//! # Prioritized replay
//!
//! [`PrioritizedReplay`] is the proportional variant of Schaul et al. (2016): priorities
//! `p = (|δ| + ε)^α` (clamped to `[1e-150, 1e150]`) in a [`SumTree`] (with a min tree over the same leaves for the
//! largest importance weight), new items at the largest priority so far, stratified
//! sampling, weights `(N·P(i))^-β / max w` with β annealed by the caller. Sampled
//! indices are insertion indices, so an update for an item overwritten since it was
//! sampled is skipped rather than applied to its replacement.
//!
//! # Memory use and saved state
//!
//! In memory: `capacity × (2·b·obs_dim + 16)` bytes for the items, with `b` bytes per
//! observation value (4 for `f32`, 1 for `u8`), plus `24 × capacity.next_power_of_two()`
//! for the prioritized trees — for a million CartPole transitions (obs_dim 4, f32)
//! about 48 MB, plus 25 MB of trees. Atari observations (4 stacked 84×84 `u8` frames,
//! obs_dim 28 224) kept whole take 56 464 bytes per transition: 56 GB for a million.
//! Stored once per frame they take `capacity × (8K + 16)` bytes plus `b·obs_dim/K` per
//! distinct frame: an Atari stream adds about one frame per transition (7 056 bytes),
//! plus the final frames of each episode, so about 7.1 KB per transition, 7.1 GB for a
//! million. Whole-observation arrays are zeroed allocations, so the operating system
//! commits their pages only as items fill them.
//!
//! `to_bytes` / `load_bytes` save and restore the contents, the ring position and (for
//! prioritized replay) the priorities, α, ε and the largest priority; there is no RNG
//! state in a memory. With `len` items held the saved state is exactly
//!
//! - uniform: `len × (2·b·obs_dim + 16) + 50` bytes;
//! - prioritized: `len × (2·b·obs_dim + 24) + 74` bytes (8 bytes per item for its
//!   priority; the trees' inner nodes are rebuilt on load);
//! - with frames stored once, `len × 2·b·obs_dim` becomes
//!   `8 + F·b·obs_dim/K + len × 8K` for the F distinct frames held,
//!
//! so about `capacity × (2·b·obs_dim + 16)` (+8 per item) for a full memory: 48 MB (56 MB)
//! for a million CartPole transitions. The format is little-endian:
//!
//! ```text
//! "AGRM", version u32 = 2, kind u8 (1 uniform, 2 prioritized), dtype u8 (1 f32, 2 u8),
//! capacity u64, obs_dim u64, stack u64 (0 whole, K frames), inserted u64,
//! [prioritized: alpha f64, epsilon f64, max_priority f64]
//! whole: obs, next_obs (len × obs_dim values of dtype each);
//! frames: F u64, F frames of obs_dim/K values, 2K u32 frame numbers per item;
//! then in slot order: actions u32, rewards f32, discounts f32, steps u32 (len each),
//! [prioritized: priorities f64 × len]
//! checksum u64 of every byte before it
//! ```
//!
//! Version 1, written before byte observations, is version 2 without dtype and stack
//! (its observations whole `f32`); it still loads.
//!
//! Loading goes into a memory built with the same element type, layout, capacity and
//! `obs_dim` (and α, ε), reading straight into its preallocated arrays, so it allocates
//! nothing whatever the input claims (but a frame store's pool grows to hold the frames
//! saved, as many as the input's length allows). Truncated, trailing, damaged (checksum) or mismatched input is a
//! [`MemoryError::Load`] and leaves the memory unchanged.
#![warn(missing_docs)]

pub mod adder;
pub mod batch;
pub mod bench;
mod codec;
pub mod dataset;
pub mod element;
pub mod error;
mod frames;
pub mod prioritized;
pub mod replay;
pub mod retrieval;
mod storage;
pub mod sum_tree;
#[cfg(test)]
mod testing;
pub mod transition;
pub mod uniform;

pub use adder::{Adder, NStep, OneStep};
pub use batch::Batch;
pub use dataset::{
    DatasetCounts, DatasetHeader, DatasetReader, DatasetWriter, EpisodeRecord, ObsType,
    Observations,
};
pub use element::Element;
pub use error::{MemoryError, Result};
pub use prioritized::{Prioritization, PrioritizedReplay};
pub use replay::Replay;
pub use sum_tree::SumTree;
pub use transition::{Step, Transition, TransitionRef, TransitionSink};
pub use uniform::UniformReplay;
