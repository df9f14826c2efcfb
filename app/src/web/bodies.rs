//! The buffers responses are built in: a fixed number, each of a fixed
//! size, allocated at start.
//!
//! `/metrics`, `/api/status`, `/api/cameras`, `/api/history` and the pages
//! of `/api/events` are written whole before they are sent (their size is
//! in the headers, and a half-written document is of no use). Building
//! each into a fresh `Vec` let 64 clients hold 64 of them at once, and a
//! page of 500 events was held three times over (records, their JSON
//! views, the text). Here a response is written into one of [`BUFFERS`]
//! buffers of [`Bodies::size`] bytes, and hyper sends it from there: the
//! buffer comes back when the last byte has been handed to the socket. The
//! budget's web line counts all of them.
//!
//! A request that finds every buffer lent waits up to [`WAIT`] for one and
//! then gets 503 with `Retry-After` (counted): clients that read slowly can
//! delay others, never grow the memory. A document that would pass the
//! buffer's end stops there and is answered 500 (counted); the size is
//! chosen from the number of cameras so that this cannot happen with
//! vigil's own documents (the tests render the largest).

use hyper::body::Bytes;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Buffers in all: responses being built or sent at once.
pub const BUFFERS: usize = 4;

/// Every buffer holds at least this: a page of 500 events is some 200 KiB.
pub const BASE_BYTES: usize = 256 << 10;

/// Added per camera: `/metrics` writes some 4 KiB per camera and
/// `/api/cameras` some 2 KiB, with every counter at its longest.
pub const PER_CAMERA_BYTES: usize = 8 << 10;

/// How long a request waits for a free buffer before it is refused.
pub const WAIT: Duration = Duration::from_millis(250);

/// The buffers and their counters.
pub struct Bodies {
    permits: Arc<Semaphore>,
    free: Mutex<Vec<Vec<u8>>>,
    count: usize,
    size: usize,
    /// Requests refused because no buffer came free within [`WAIT`].
    pub busy: AtomicU64,
    /// Documents that did not fit their buffer (answered 500).
    pub overflowed: AtomicU64,
}

impl Bodies {
    /// The size of each buffer for a configuration with `cameras` cameras.
    pub fn size_for(cameras: usize) -> usize {
        BASE_BYTES + cameras * PER_CAMERA_BYTES
    }

    /// [`BUFFERS`] buffers of [`Bodies::size_for`] `cameras`, allocated now.
    pub fn new(cameras: usize) -> Arc<Bodies> {
        Bodies::with(BUFFERS, Bodies::size_for(cameras))
    }

    /// `count` buffers of `size` bytes.
    pub fn with(count: usize, size: usize) -> Arc<Bodies> {
        Arc::new(Bodies {
            permits: Arc::new(Semaphore::new(count)),
            free: Mutex::new((0..count).map(|_| Vec::with_capacity(size)).collect()),
            count,
            size,
            busy: AtomicU64::new(0),
            overflowed: AtomicU64::new(0),
        })
    }

    /// Bytes each buffer holds.
    pub fn size(&self) -> usize {
        self.size
    }

    /// Buffers lent now.
    pub fn in_use(&self) -> usize {
        self.count - self.permits.available_permits()
    }

    /// A buffer, waiting up to [`WAIT`] for one; `None` (counted) when none
    /// came free.
    pub async fn take(self: &Arc<Self>) -> Option<Lease> {
        let permit = tokio::time::timeout(WAIT, self.permits.clone().acquire_owned()).await;
        match permit {
            Ok(Ok(permit)) => Some(self.lend(permit)),
            _ => {
                self.busy.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }

    fn lend(self: &Arc<Self>, permit: OwnedSemaphorePermit) -> Lease {
        // A permit guarantees a buffer: there are as many as permits.
        let buf = self
            .free
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop()
            .unwrap_or_default();
        Lease {
            buf,
            home: self.clone(),
            overflow: false,
            _permit: permit,
        }
    }
}

/// One lent buffer: written into, then turned into the response's bytes.
/// It goes back (emptied) when dropped.
pub struct Lease {
    buf: Vec<u8>,
    home: Arc<Bodies>,
    overflow: bool,
    // Released after the buffer is back (fields drop in order, after Drop).
    _permit: OwnedSemaphorePermit,
}

impl Lease {
    /// Bytes written so far.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// Whether nothing has been written.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Bytes that can still be written.
    pub fn room(&self) -> usize {
        self.home.size - self.buf.len()
    }

    /// Appends `bytes` when they fit; otherwise writes nothing, marks the
    /// lease overflowed and answers false.
    pub fn push(&mut self, bytes: &[u8]) -> bool {
        if bytes.len() > self.room() {
            self.overflow = true;
            return false;
        }
        self.buf.extend_from_slice(bytes);
        true
    }

    /// Whether a write did not fit (the document is incomplete).
    pub fn overflowed(&self) -> bool {
        self.overflow
    }

    /// Forgets what was written.
    pub fn clear(&mut self) {
        self.buf.clear();
        self.overflow = false;
    }

    /// The document, as the response body; the buffer returns when hyper
    /// drops the bytes. `None` (counted) when it overflowed.
    pub fn into_bytes(self) -> Option<Bytes> {
        if self.overflow {
            self.home.overflowed.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        Some(Bytes::from_owner(self))
    }
}

impl AsRef<[u8]> for Lease {
    fn as_ref(&self) -> &[u8] {
        &self.buf
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        self.home
            .free
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(buf);
    }
}

impl std::io::Write for Lease {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        if self.push(data) {
            Ok(data.len())
        } else {
            Err(std::io::Error::new(
                std::io::ErrorKind::OutOfMemory,
                "response buffer full",
            ))
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl std::fmt::Write for Lease {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        if self.push(s.as_bytes()) {
            Ok(())
        } else {
            Err(std::fmt::Error)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    #[test]
    fn buffers_are_lent_up_to_the_count_then_refused_after_a_short_wait() {
        let bodies = Bodies::with(2, 64);
        runtime().block_on(async {
            let a = bodies.take().await.unwrap();
            let b = bodies.take().await.unwrap();
            assert_eq!(bodies.in_use(), 2);
            let t = tokio::time::Instant::now();
            assert!(bodies.take().await.is_none());
            assert!(t.elapsed() >= WAIT);
            assert_eq!(bodies.busy.load(Ordering::Relaxed), 1);
            // A buffer handed back is lent to the next request, emptied.
            let mut a = a;
            a.push(b"abc");
            drop(a);
            let c = bodies.take().await.unwrap();
            assert!(c.is_empty());
            drop((b, c));
            assert_eq!(bodies.in_use(), 0);
        });
    }

    /// A waiting request gets the buffer as soon as the response holding
    /// it has been sent (its bytes dropped), not only after [`WAIT`].
    #[test]
    fn a_waiting_request_gets_the_buffer_the_sent_response_returns() {
        let bodies = Bodies::with(1, 64);
        runtime().block_on(async {
            let mut a = bodies.take().await.unwrap();
            a.push(b"hello");
            let bytes = a.into_bytes().unwrap();
            assert_eq!(&bytes[..], b"hello");
            let waiter = {
                let bodies = bodies.clone();
                tokio::spawn(async move { bodies.take().await.is_some() })
            };
            tokio::task::yield_now().await;
            drop(bytes);
            assert!(waiter.await.unwrap());
        });
    }

    #[test]
    fn a_document_over_the_buffer_is_refused_not_grown() {
        let bodies = Bodies::with(1, 16);
        runtime().block_on(async {
            let mut l = bodies.take().await.unwrap();
            assert!(l.write_all(b"0123456789").is_ok());
            assert!(l.write_all(b"0123456789").is_err());
            assert_eq!(l.len(), 10, "nothing of the write that did not fit");
            assert!(l.overflowed());
            assert!(l.into_bytes().is_none());
            assert_eq!(bodies.overflowed.load(Ordering::Relaxed), 1);
            let l = bodies.take().await.unwrap();
            assert_eq!(l.room(), 16, "the buffer came back whole and empty");
        });
    }
}
