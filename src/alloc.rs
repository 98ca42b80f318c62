//! A global allocator that counts heap allocations, so a program can check that a loop
//! allocates nothing (the `agent` binary uses it; `agent bench inference` reports
//! allocations per `act`).
//!
//! ```
//! #[global_allocator]
//! static GLOBAL: agentry::alloc::Counting<std::alloc::System> =
//!     agentry::alloc::Counting(std::alloc::System);
//!
//! fn main() {
//!     let before = agentry::alloc::allocations();
//!     let v = std::hint::black_box(vec![1u8; 16]);
//!     assert_eq!(agentry::alloc::allocations() - before, 1);
//!     drop(v);
//! }
//! ```
//!
//! The count is one relaxed atomic add per allocation (`alloc`, `alloc_zeroed` and
//! `realloc`; frees are not counted), over all threads: read it around code that runs
//! while no other thread allocates.

use std::alloc::{GlobalAlloc, Layout};
use std::sync::atomic::{AtomicU64, Ordering};

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

/// Allocator `A`, counting every allocation it makes; see the [module docs](self).
#[derive(Clone, Copy, Debug, Default)]
pub struct Counting<A>(pub A);

/// Allocations made through a [`Counting`] global allocator since the program started
/// (0 when the program's global allocator is not one).
pub fn allocations() -> u64 {
    ALLOCATIONS.load(Ordering::Relaxed)
}

// SAFETY: every call is forwarded to `A` unchanged; counting touches no memory `A` owns.
unsafe impl<A: GlobalAlloc> GlobalAlloc for Counting<A> {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller's contract for `alloc`, passed on.
        unsafe { self.0.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller's contract for `alloc_zeroed`, passed on.
        unsafe { self.0.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract for `dealloc`, passed on.
        unsafe { self.0.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller's contract for `realloc`, passed on.
        unsafe { self.0.realloc(ptr, layout, new_size) }
    }
}
