//! Fixed-capacity object pools: the only place frame, packet and tensor
//! memory comes from.
//!
//! A [`Pool`] is filled once at start with `capacity` items and never grows.
//! [`Pool::try_take`] lends an item as a [`Lease`], an owned handle that puts
//! the item back when dropped, on whatever thread drops it. An empty pool
//! returns `None` and counts the miss: the caller drops its frame or packet
//! instead of allocating (heapless' `pool::object` and embassy's zero-copy
//! channel have the same shape).
//!
//! Neither taking nor returning allocates: the free list is a `Vec` created
//! with room for every item, so pushing back never reallocates, and moving a
//! buffer in or out of it moves only its pointer.

use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// A zeroed buffer whose pages are all resident now, for the items pools
/// and rings allocate at start. A zeroed allocation is mapped lazily, so a
/// buffer left untouched would bring its pages in when it is first used:
/// the process's RSS would creep up to the budget under load (a frame pool
/// whose fourth frame is needed only when the detector falls behind, a
/// pre-roll ring filling over minutes) instead of starting there. Writing
/// every byte once (with a value the optimiser cannot prove is already
/// there) makes the memory fixed at start in fact, as the budget says.
pub fn resident(len: usize) -> Box<[u8]> {
    let mut buf = vec![0u8; len].into_boxed_slice();
    buf.fill(0xff);
    // The optimiser may neither drop the fill above nor, after this, the
    // one below (it can no longer know the bytes are zero).
    std::hint::black_box(&mut buf[..]);
    buf.fill(0);
    buf
}

/// A fixed set of reusable items.
pub struct Pool<T> {
    shared: Arc<Shared<T>>,
}

impl<T> Clone for Pool<T> {
    fn clone(&self) -> Self {
        Pool {
            shared: Arc::clone(&self.shared),
        }
    }
}

struct Shared<T> {
    name: &'static str,
    capacity: usize,
    free: Mutex<Vec<T>>,
    in_use: AtomicUsize,
    high_water: AtomicUsize,
    exhausted: AtomicU64,
}

impl<T> Shared<T> {
    fn free_list(&self) -> MutexGuard<'_, Vec<T>> {
        // A panic while holding this lock cannot leave the Vec inconsistent
        // (push/pop are the only operations), so a poisoned lock is usable.
        self.free.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl<T> Pool<T> {
    /// Creates a pool holding exactly the given items.
    pub fn new(name: &'static str, items: impl IntoIterator<Item = T>) -> Self {
        let items: Vec<T> = items.into_iter().collect();
        let mut free = Vec::with_capacity(items.len());
        free.extend(items);
        Pool {
            shared: Arc::new(Shared {
                name,
                capacity: free.len(),
                free: Mutex::new(free),
                in_use: AtomicUsize::new(0),
                high_water: AtomicUsize::new(0),
                exhausted: AtomicU64::new(0),
            }),
        }
    }

    /// Creates a pool of `capacity` items made by `make`.
    pub fn with(name: &'static str, capacity: usize, mut make: impl FnMut() -> T) -> Self {
        Pool::new(name, (0..capacity).map(|_| make()))
    }

    /// Lends an item, or returns `None` (and counts it) when all are lent.
    pub fn try_take(&self) -> Option<Lease<T>> {
        let item = self.shared.free_list().pop();
        match item {
            Some(item) => {
                let in_use = self.shared.in_use.fetch_add(1, Ordering::Relaxed) + 1;
                self.shared.high_water.fetch_max(in_use, Ordering::Relaxed);
                Some(Lease {
                    item: Some(item),
                    shared: Arc::clone(&self.shared),
                })
            }
            None => {
                self.shared.exhausted.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }

    /// Drops every item not lent out, at shutdown: items that own outside
    /// resources (an NPU context) are released now rather than when the last
    /// clone of the pool goes (the metrics registry keeps one). Returns how
    /// many were dropped; `stats().capacity` keeps the configured figure.
    pub fn release_free(&self) -> usize {
        let items = std::mem::take(&mut *self.shared.free_list());
        items.len()
    }

    /// A snapshot of the pool's counters.
    pub fn stats(&self) -> PoolStats {
        PoolStats {
            name: self.shared.name,
            capacity: self.shared.capacity,
            in_use: self.shared.in_use.load(Ordering::Relaxed),
            high_water: self.shared.high_water.load(Ordering::Relaxed),
            exhausted: self.shared.exhausted.load(Ordering::Relaxed),
        }
    }
}

/// Counters of one pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolStats {
    /// What the pool holds ("frames", "packets", "tensors").
    pub name: &'static str,
    /// Items it was filled with; never changes.
    pub capacity: usize,
    /// Items lent right now.
    pub in_use: usize,
    /// Most items ever lent at once.
    pub high_water: usize,
    /// `try_take` calls that found the pool empty.
    pub exhausted: u64,
}

/// An item lent by a [`Pool`]; dropping it returns the item.
pub struct Lease<T> {
    // Always `Some` until `drop` takes it.
    item: Option<T>,
    shared: Arc<Shared<T>>,
}

impl<T> Deref for Lease<T> {
    type Target = T;
    fn deref(&self) -> &T {
        self.item
            .as_ref()
            .expect("lease holds its item until dropped")
    }
}

impl<T> DerefMut for Lease<T> {
    fn deref_mut(&mut self) -> &mut T {
        self.item
            .as_mut()
            .expect("lease holds its item until dropped")
    }
}

impl<T> Drop for Lease<T> {
    fn drop(&mut self) {
        if let Some(item) = self.item.take() {
            // Capacity was reserved for every item at creation: no realloc.
            self.shared.free_list().push(item);
            self.shared.in_use.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

impl<T: std::fmt::Debug> std::fmt::Debug for Lease<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lease")
            .field("pool", &self.shared.name)
            .field("item", &self.item)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lends_each_item_once_and_counts_misses() {
        let pool = Pool::with("t", 2, || 0u32);
        let a = pool.try_take().unwrap();
        let b = pool.try_take().unwrap();
        assert!(pool.try_take().is_none());
        assert!(pool.try_take().is_none());
        let s = pool.stats();
        assert_eq!(
            (s.capacity, s.in_use, s.high_water, s.exhausted),
            (2, 2, 2, 2)
        );
        drop(a);
        assert_eq!(pool.stats().in_use, 1);
        let c = pool.try_take().unwrap();
        drop((b, c));
        let s = pool.stats();
        assert_eq!((s.in_use, s.high_water), (0, 2));
    }

    #[test]
    fn items_keep_their_contents_across_leases() {
        let pool = Pool::with("t", 1, Vec::<u8>::new);
        {
            let mut v = pool.try_take().unwrap();
            v.reserve_exact(16);
            v.push(7);
        }
        let v = pool.try_take().unwrap();
        assert_eq!(v.as_slice(), &[7]);
        assert!(v.capacity() >= 16);
    }

    #[test]
    fn lease_returns_from_another_thread() {
        let pool = Pool::with("t", 1, || [0u8; 4]);
        let lease = pool.try_take().unwrap();
        std::thread::spawn(move || drop(lease)).join().unwrap();
        assert_eq!(pool.stats().in_use, 0);
        assert!(pool.try_take().is_some());
    }
}
