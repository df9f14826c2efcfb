//! A counting global allocator: the proof that the per-frame path does not
//! touch the heap after warm-up.
//!
//! The binary installs [`CountingAllocator`] as its global allocator, so the
//! counts are also exported as metrics. Each thread keeps its own tally and a
//! process-wide total is kept in atomics. Code that calls into a third-party
//! engine which allocates internally (tract for the CPU detector) wraps that
//! call in [`engine_scope`]; allocations inside it are tallied separately so a
//! test can assert "zero allocations in our code" and "a constant count per
//! engine call" as two different facts. The events thread and the clip
//! writer run inside [`events_scope`]: they handle one event or one clip
//! fragment at a time (never a frame), and encoding, storing and logging
//! allocate a bounded, transient amount that is counted apart from the
//! frame path's zero. The frame path's share of recording (copying each
//! unit into the pre-roll ring, opening clips on events) stays in the zero.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};

/// The system allocator with counters in front of it.
pub struct CountingAllocator;

static TOTAL_ALLOCATIONS: AtomicU64 = AtomicU64::new(0);
static TOTAL_ENGINE_ALLOCATIONS: AtomicU64 = AtomicU64::new(0);
static TOTAL_EVENT_ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

/// Whose allocations the current thread is making.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Scope {
    Ours,
    Engine,
    Events,
}

thread_local! {
    static THREAD_ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
    static THREAD_ENGINE_ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
    static THREAD_EVENT_ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
    static SCOPE: Cell<Scope> = const { Cell::new(Scope::Ours) };
}

#[inline]
fn count_one() {
    // `try_with` because the allocator runs during thread teardown too, after
    // thread-locals are gone; those allocations are still in the global total.
    let (total, thread) = match SCOPE.try_with(Cell::get).unwrap_or(Scope::Ours) {
        Scope::Ours => (&TOTAL_ALLOCATIONS, &THREAD_ALLOCATIONS),
        Scope::Engine => (&TOTAL_ENGINE_ALLOCATIONS, &THREAD_ENGINE_ALLOCATIONS),
        Scope::Events => (&TOTAL_EVENT_ALLOCATIONS, &THREAD_EVENT_ALLOCATIONS),
    };
    total.fetch_add(1, Ordering::Relaxed);
    let _ = thread.try_with(|c| c.set(c.get() + 1));
}

// SAFETY: every method forwards to `System` unchanged; counting has no effect
// on the memory returned.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count_one();
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count_one();
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count_one();
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

fn in_scope<R>(scope: Scope, f: impl FnOnce() -> R) -> R {
    struct Reset(Scope);
    impl Drop for Reset {
        fn drop(&mut self) {
            SCOPE.with(|c| c.set(self.0));
        }
    }
    let _reset = Reset(SCOPE.with(|c| c.replace(scope)));
    f()
}

/// Runs `f` with its allocations counted as the inference engine's, not ours.
pub fn engine_scope<R>(f: impl FnOnce() -> R) -> R {
    in_scope(Scope::Engine, f)
}

/// Runs `f` with its allocations counted as event handling's (the events
/// thread), not the frame path's.
pub fn events_scope<R>(f: impl FnOnce() -> R) -> R {
    in_scope(Scope::Events, f)
}

/// Allocations (alloc, alloc_zeroed and realloc calls) made so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AllocationCounts {
    /// Outside any [`engine_scope`].
    pub ours: u64,
    /// Inside an [`engine_scope`].
    pub engine: u64,
    /// Inside an [`events_scope`].
    pub events: u64,
}

/// Process-wide counts. Only meaningful when [`CountingAllocator`] is the
/// global allocator; otherwise both stay zero.
pub fn process_counts() -> AllocationCounts {
    AllocationCounts {
        ours: TOTAL_ALLOCATIONS.load(Ordering::Relaxed),
        engine: TOTAL_ENGINE_ALLOCATIONS.load(Ordering::Relaxed),
        events: TOTAL_EVENT_ALLOCATIONS.load(Ordering::Relaxed),
    }
}

/// Counts made by the calling thread.
pub fn thread_counts() -> AllocationCounts {
    AllocationCounts {
        ours: THREAD_ALLOCATIONS.with(Cell::get),
        engine: THREAD_ENGINE_ALLOCATIONS.with(Cell::get),
        events: THREAD_EVENT_ALLOCATIONS.with(Cell::get),
    }
}
