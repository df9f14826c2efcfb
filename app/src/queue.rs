//! Bounded hand-off queues between pipeline stages.
//!
//! Producers never wait: a full queue applies the policy chosen when it was
//! made ([`WhenFull`]) and counts what it dropped. Consumers are plain threads
//! that block with a timeout, so they notice shutdown. Storage is a `VecDeque`
//! created with room for `capacity` items and never pushed past it, so no
//! operation allocates after construction.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

/// What a full queue does with a new item.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WhenFull {
    /// Keep the queued items; the new one is dropped.
    DropNewest,
    /// Drop the oldest queued item to make room; fresher data wins.
    DropOldest,
}

/// A fixed-capacity multi-producer, multi-consumer queue.
pub struct BoundedQueue<T> {
    state: Mutex<State<T>>,
    not_empty: Condvar,
    capacity: usize,
    policy: WhenFull,
    dropped: AtomicU64,
}

struct State<T> {
    items: VecDeque<T>,
    closed: bool,
}

/// Why [`BoundedQueue::pop_timeout`] returned nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PopError {
    /// Nothing arrived in time.
    Timeout,
    /// The queue was closed and is empty.
    Closed,
}

impl<T> BoundedQueue<T> {
    /// A queue holding at most `capacity` (at least 1) items.
    pub fn new(capacity: usize, policy: WhenFull) -> Self {
        let capacity = capacity.max(1);
        BoundedQueue {
            state: Mutex::new(State {
                items: VecDeque::with_capacity(capacity),
                closed: false,
            }),
            not_empty: Condvar::new(),
            capacity,
            policy,
            dropped: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State<T>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues `item` without waiting. Returns the item that was dropped to
    /// honour the capacity, if any (the new one or the oldest), so the caller
    /// can drop it outside the lock and account for it. After [`close`] every
    /// item is handed straight back.
    ///
    /// [`close`]: BoundedQueue::close
    pub fn push(&self, item: T) -> Option<T> {
        let mut state = self.lock();
        if state.closed {
            return Some(item);
        }
        let dropped = if state.items.len() < self.capacity {
            state.items.push_back(item);
            None
        } else {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            match self.policy {
                WhenFull::DropNewest => Some(item),
                WhenFull::DropOldest => {
                    let oldest = state.items.pop_front();
                    state.items.push_back(item);
                    oldest
                }
            }
        };
        drop(state);
        self.not_empty.notify_one();
        dropped
    }

    /// Takes the oldest item, waiting up to `timeout` for one.
    pub fn pop_timeout(&self, timeout: Duration) -> Result<T, PopError> {
        let mut state = self.lock();
        loop {
            if let Some(item) = state.items.pop_front() {
                return Ok(item);
            }
            if state.closed {
                return Err(PopError::Closed);
            }
            let (next, result) = self
                .not_empty
                .wait_timeout(state, timeout)
                .unwrap_or_else(PoisonError::into_inner);
            state = next;
            if result.timed_out() && state.items.is_empty() {
                return Err(if state.closed {
                    PopError::Closed
                } else {
                    PopError::Timeout
                });
            }
        }
    }

    /// Takes the oldest item if there is one.
    pub fn try_pop(&self) -> Option<T> {
        self.lock().items.pop_front()
    }

    /// Refuses further items and wakes every waiting consumer; queued items
    /// can still be popped.
    pub fn close(&self) {
        self.lock().closed = true;
        self.not_empty.notify_all();
    }

    /// Items queued now.
    pub fn len(&self) -> usize {
        self.lock().items.len()
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The fixed capacity.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Items dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drop_newest_keeps_the_queue() {
        let q = BoundedQueue::new(2, WhenFull::DropNewest);
        assert_eq!(q.push(1), None);
        assert_eq!(q.push(2), None);
        assert_eq!(q.push(3), Some(3));
        assert_eq!(q.dropped(), 1);
        assert_eq!(q.try_pop(), Some(1));
        assert_eq!(q.try_pop(), Some(2));
        assert_eq!(q.try_pop(), None);
    }

    #[test]
    fn drop_oldest_keeps_the_freshest() {
        let q = BoundedQueue::new(2, WhenFull::DropOldest);
        q.push(1);
        q.push(2);
        assert_eq!(q.push(3), Some(1));
        assert_eq!(q.len(), 2);
        assert_eq!(q.try_pop(), Some(2));
        assert_eq!(q.try_pop(), Some(3));
    }

    #[test]
    fn close_wakes_consumers_and_refuses_items() {
        let q = std::sync::Arc::new(BoundedQueue::<u8>::new(1, WhenFull::DropNewest));
        let q2 = q.clone();
        let waiter = std::thread::spawn(move || q2.pop_timeout(Duration::from_secs(30)));
        std::thread::sleep(Duration::from_millis(20));
        q.close();
        assert_eq!(waiter.join().unwrap(), Err(PopError::Closed));
        assert_eq!(q.push(9), Some(9));
    }

    #[test]
    fn pop_times_out_when_empty() {
        let q = BoundedQueue::<u8>::new(1, WhenFull::DropNewest);
        assert_eq!(
            q.pop_timeout(Duration::from_millis(5)),
            Err(PopError::Timeout)
        );
    }
}
