//! Server-Sent Events with a fixed number of streams and a fixed queue each.
//!
//! The Python predecessor leaked a thread per closed browser tab: its SSE
//! generator looped on `while True: try/except` and never noticed that the
//! client had gone. Here a stream is not a thread or a loop at all: it is a
//! [`SseStream`] body polled by the connection's task. When the connection
//! ends for any reason (the client closed it, a write failed, the heartbeat
//! found the peer gone, the server is stopping), hyper drops the body, and
//! `Drop` hands the slot back. There is nothing that could keep running.
//!
//! Memory is fixed the same way: [`Hub`] owns `max_clients` slots, each with
//! a queue allocated at start. Publishing never waits for a reader: when a
//! queue is full its oldest message is dropped and counted (per stream, sent
//! to that client as a `lost` event, and in total for the metrics), so a
//! stalled browser costs the pipeline nothing. Periodic status goes through a
//! single latest-wins cell instead of the queues, so it can neither crowd out
//! detections nor pile up.
//!
//! A stream opened with a session remembers the session's number, and ends
//! when that session does (logout, password change, expiry, eviction): the
//! web publisher asks [`Hub::end_sessions`] every tick which sessions are
//! gone, and each of their streams sends a last `session` event and ends.
//! That is one pass over the fixed slots per tick, no task or timer per
//! stream.

use crate::metrics::Counter;
use hyper::body::{Body, Bytes, Frame};
use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

/// Sent first on every stream: the reconnect delay for `EventSource`, and
/// bytes that make the response headers go out at once.
const PREAMBLE: &[u8] = b"retry: 3000\n: connected\n\n";
/// A comment line; browsers ignore it, a dead peer makes the write fail.
const HEARTBEAT: &[u8] = b": hb\n\n";
/// The last message of a stream whose session ended.
const SESSION_ENDED: &[u8] = b"event: session\ndata: {\"logged_in\":false}\n\n";

/// The fan-out point between the pipeline's publishers and the streams.
pub struct Hub {
    slots: Box<[Mutex<Slot>]>,
    queue_capacity: usize,
    heartbeat: Duration,
    active: AtomicUsize,
    latest: Mutex<Latest>,
    latest_generation: AtomicU64,
    /// Messages dropped from full stream queues, all streams together.
    pub lost: Counter,
    /// Streams opened.
    pub opened: Counter,
    /// Streams refused because every slot was taken.
    pub rejected: Counter,
}

struct Slot {
    in_use: bool,
    queue: VecDeque<Bytes>,
    /// Dropped since the client was last told.
    lost_unreported: u64,
    waker: Option<Waker>,
    /// The session the stream was opened with.
    session: Option<u64>,
    /// That session is gone: the stream ends.
    ended: bool,
}

#[derive(Default)]
struct Latest {
    message: Option<Bytes>,
}

impl Hub {
    /// A hub with `max_clients` streams of `queue_capacity` messages, every
    /// queue allocated now.
    pub fn new(max_clients: usize, queue_capacity: usize, heartbeat: Duration) -> Hub {
        Hub {
            slots: (0..max_clients)
                .map(|_| {
                    Mutex::new(Slot {
                        in_use: false,
                        queue: VecDeque::with_capacity(queue_capacity),
                        lost_unreported: 0,
                        waker: None,
                        session: None,
                        ended: false,
                    })
                })
                .collect(),
            queue_capacity,
            heartbeat,
            active: AtomicUsize::new(0),
            latest: Mutex::new(Latest::default()),
            latest_generation: AtomicU64::new(0),
            lost: Counter::default(),
            opened: Counter::default(),
            rejected: Counter::default(),
        }
    }

    /// Streams open now.
    pub fn active(&self) -> usize {
        self.active.load(Ordering::Relaxed)
    }

    /// The most streams that can be open at once.
    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// Queues `message` (one or more complete SSE events) on every open
    /// stream, dropping each full queue's oldest message. Never blocks on a
    /// reader.
    pub fn publish(&self, message: &Bytes) {
        if self.active() == 0 {
            return;
        }
        for slot in self.slots.iter() {
            let mut s = lock(slot);
            if !s.in_use {
                continue;
            }
            if s.queue.len() >= self.queue_capacity {
                s.queue.pop_front();
                s.lost_unreported += 1;
                self.lost.inc();
            }
            s.queue.push_back(message.clone());
            if let Some(w) = s.waker.take() {
                w.wake();
            }
        }
    }

    /// Replaces the latest-wins message (periodic status); every stream sends
    /// the newest one once, however many were set while it was busy.
    pub fn set_latest(&self, message: Bytes) {
        lock(&self.latest).message = Some(message);
        self.latest_generation.fetch_add(1, Ordering::Release);
        for slot in self.slots.iter() {
            if let Some(w) = lock(slot).waker.take() {
                w.wake();
            }
        }
    }

    /// Ends every stream whose session `gone` says has ended; each sends a
    /// last `session` event and finishes. `gone` is called without any slot
    /// locked.
    pub fn end_sessions(&self, gone: impl Fn(u64) -> bool) {
        if self.active() == 0 {
            return;
        }
        for slot in self.slots.iter() {
            let session = {
                let s = lock(slot);
                match s.session {
                    Some(id) if s.in_use && !s.ended => id,
                    _ => continue,
                }
            };
            if !gone(session) {
                continue;
            }
            let mut s = lock(slot);
            // The slot may have changed hands while `gone` ran.
            if s.in_use && s.session == Some(session) {
                s.ended = true;
                if let Some(w) = s.waker.take() {
                    w.wake();
                }
            }
        }
    }

    /// Opens a stream, or `None` when every slot is taken; with `session`,
    /// the stream ends when that session does ([`Hub::end_sessions`]).
    pub fn subscribe(self: &Arc<Self>, session: Option<u64>) -> Option<SseStream> {
        for (index, slot) in self.slots.iter().enumerate() {
            let mut s = lock(slot);
            if s.in_use {
                continue;
            }
            s.in_use = true;
            s.queue.clear();
            s.lost_unreported = 0;
            s.waker = None;
            s.session = session;
            s.ended = false;
            drop(s);
            self.active.fetch_add(1, Ordering::Relaxed);
            self.opened.inc();
            let mut heartbeat = tokio::time::interval(self.heartbeat);
            heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            return Some(SseStream {
                hub: self.clone(),
                index,
                preamble_sent: false,
                finished: false,
                // Start one behind so a new stream gets the current status.
                latest_seen: self
                    .latest_generation
                    .load(Ordering::Acquire)
                    .saturating_sub(1),
                heartbeat,
            });
        }
        self.rejected.inc();
        None
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One client's stream: an HTTP response body that yields queued messages,
/// the latest status and heartbeats, and frees its slot when dropped.
pub struct SseStream {
    hub: Arc<Hub>,
    index: usize,
    preamble_sent: bool,
    /// The session-ended message has been sent; nothing follows.
    finished: bool,
    latest_seen: u64,
    heartbeat: tokio::time::Interval,
}

impl SseStream {
    fn next_message(&mut self, cx: &mut Context<'_>) -> Option<Bytes> {
        if !self.preamble_sent {
            self.preamble_sent = true;
            return Some(Bytes::from_static(PREAMBLE));
        }
        {
            let mut s = lock(&self.hub.slots[self.index]);
            if s.ended {
                self.finished = true;
                return Some(Bytes::from_static(SESSION_ENDED));
            }
            if s.lost_unreported > 0 {
                let n = s.lost_unreported;
                s.lost_unreported = 0;
                return Some(Bytes::from(format!(
                    "event: lost\ndata: {{\"lost\":{n}}}\n\n"
                )));
            }
            if let Some(m) = s.queue.pop_front() {
                return Some(m);
            }
            // Register before checking the latest cell, so a concurrent
            // set_latest either is seen below or wakes us.
            match &s.waker {
                Some(w) if w.will_wake(cx.waker()) => {}
                _ => s.waker = Some(cx.waker().clone()),
            }
        }
        let generation = self.hub.latest_generation.load(Ordering::Acquire);
        if generation != self.latest_seen {
            self.latest_seen = generation;
            if let Some(m) = lock(&self.hub.latest).message.clone() {
                return Some(m);
            }
        }
        None
    }
}

impl Body for SseStream {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.finished {
            return Poll::Ready(None);
        }
        if let Some(m) = self.next_message(cx) {
            // Data is going out; the next heartbeat is a full period away.
            self.heartbeat.reset();
            return Poll::Ready(Some(Ok(Frame::data(m))));
        }
        match self.heartbeat.poll_tick(cx) {
            Poll::Ready(_) => Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(HEARTBEAT))))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.finished
    }
}

impl Drop for SseStream {
    fn drop(&mut self) {
        let mut s = lock(&self.hub.slots[self.index]);
        s.in_use = false;
        s.queue.clear();
        s.lost_unreported = 0;
        s.waker = None;
        s.session = None;
        s.ended = false;
        drop(s);
        self.hub.active.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::poll_fn;

    async fn next(stream: &mut SseStream) -> Bytes {
        let frame = poll_fn(|cx| Pin::new(&mut *stream).poll_frame(cx))
            .await
            .expect("streams never end")
            .expect("infallible");
        frame.into_data().expect("data frame")
    }

    fn try_next(stream: &mut SseStream) -> Option<Bytes> {
        let waker = Waker::noop();
        let mut cx = Context::from_waker(waker);
        match Pin::new(stream).poll_frame(&mut cx) {
            Poll::Ready(Some(Ok(f))) => f.into_data().ok(),
            _ => None,
        }
    }

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap()
    }

    #[test]
    fn slots_are_capped_and_freed_on_drop() {
        rt().block_on(async {
            let hub = Arc::new(Hub::new(2, 4, Duration::from_secs(5)));
            let a = hub.subscribe(None).expect("slot 1");
            let b = hub.subscribe(None).expect("slot 2");
            assert!(hub.subscribe(None).is_none());
            assert_eq!((hub.active(), hub.rejected.get()), (2, 1));
            drop(a);
            assert_eq!(hub.active(), 1);
            let c = hub.subscribe(None).expect("freed slot is reused");
            drop((b, c));
            assert_eq!(hub.active(), 0);
        });
    }

    #[test]
    fn slow_reader_loses_oldest_and_is_told() {
        rt().block_on(async {
            let hub = Arc::new(Hub::new(2, 3, Duration::from_secs(5)));
            let mut s = hub.subscribe(None).unwrap();
            assert_eq!(&next(&mut s).await[..], PREAMBLE);
            for i in 0..10 {
                hub.publish(&Bytes::from(format!("m{i}")));
            }
            assert_eq!(hub.lost.get(), 7);
            assert_eq!(
                &next(&mut s).await[..],
                b"event: lost\ndata: {\"lost\":7}\n\n"
            );
            for want in ["m7", "m8", "m9"] {
                assert_eq!(&next(&mut s).await[..], want.as_bytes());
            }
            assert!(try_next(&mut s).is_none(), "queue drained");
        });
    }

    #[test]
    fn publish_without_readers_keeps_nothing() {
        let hub = Arc::new(Hub::new(1, 2, Duration::from_secs(5)));
        for _ in 0..100 {
            hub.publish(&Bytes::from_static(b"x"));
        }
        assert_eq!(hub.lost.get(), 0);
        rt().block_on(async {
            let mut s = hub.subscribe(None).unwrap();
            next(&mut s).await;
            assert!(try_next(&mut s).is_none(), "nothing queued from before");
        });
    }

    #[test]
    fn heartbeat_when_idle_and_latest_status_once() {
        rt().block_on(async {
            let hub = Arc::new(Hub::new(1, 2, Duration::from_millis(200)));
            hub.set_latest(Bytes::from_static(b"s1"));
            let mut s = hub.subscribe(None).unwrap();
            next(&mut s).await;
            assert_eq!(
                &next(&mut s).await[..],
                b"s1",
                "a new stream gets the status"
            );
            hub.set_latest(Bytes::from_static(b"s2"));
            hub.set_latest(Bytes::from_static(b"s3"));
            assert_eq!(&next(&mut s).await[..], b"s3", "latest wins");
            let before = tokio::time::Instant::now();
            assert_eq!(&next(&mut s).await[..], HEARTBEAT);
            assert!(
                before.elapsed() >= Duration::from_millis(190),
                "a period after the last data"
            );
            assert_eq!(&next(&mut s).await[..], HEARTBEAT);
            assert!(before.elapsed() >= Duration::from_millis(390));
        });
    }

    #[test]
    fn a_publish_wakes_a_waiting_stream() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        rt.block_on(async {
            let hub = Arc::new(Hub::new(1, 2, Duration::from_secs(60)));
            let mut s = hub.subscribe(None).unwrap();
            next(&mut s).await;
            let publisher = hub.clone();
            let t = std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(50));
                publisher.publish(&Bytes::from_static(b"late"));
            });
            let got = tokio::time::timeout(Duration::from_secs(5), next(&mut s)).await;
            assert_eq!(&got.expect("woken by publish")[..], b"late");
            t.join().unwrap();
        });
    }

    /// One poll: a message, the end of the stream, or nothing yet.
    fn poll_once(stream: &mut SseStream) -> Poll<Option<Bytes>> {
        let mut cx = Context::from_waker(Waker::noop());
        Pin::new(stream)
            .poll_frame(&mut cx)
            .map(|f| f.map(|f| f.expect("infallible").into_data().expect("data")))
    }

    #[test]
    fn streams_end_when_their_session_expires_or_logs_out_and_only_then() {
        use crate::web::auth::{Auth, AuthConfig};
        let dir = crate::test_dir::TempDir::new("sse-session");
        let cfg = AuthConfig {
            iterations: 1,
            session_idle: Duration::from_secs(60),
            session_lifetime: Duration::from_secs(3600),
        };
        let auth = Auth::open(&dir.0, cfg).expect("open");
        let peer = std::net::IpAddr::from([10, 0, 0, 1]);
        let t0 = std::time::Instant::now();
        let code = auth.setup_code().expect("a setup code before setup");
        let a = auth.setup(peer, &code, "correct horse", t0).expect("setup");
        let b = auth
            .login(peer, "correct horse", t0 + Duration::from_secs(30))
            .expect("login");
        rt().block_on(async {
            let hub = Arc::new(Hub::new(3, 4, Duration::from_secs(60)));
            let mut sa = hub.subscribe(Some(a.id)).unwrap();
            let mut sb = hub.subscribe(Some(b.id)).unwrap();
            let mut anonymous = hub.subscribe(None).unwrap();
            for s in [&mut sa, &mut sb, &mut anonymous] {
                assert_eq!(&next(s).await[..], PREAMBLE);
            }
            let sweep = |t: std::time::Instant| hub.end_sessions(|id| !auth.session_live(id, t));
            // The clock is injected: a's idle timeout ends at exactly t0 + 60 s.
            let expiry = t0 + cfg.session_idle;
            sweep(expiry - Duration::from_nanos(1));
            assert!(poll_once(&mut sa).is_pending(), "still valid");
            sweep(expiry);
            assert_eq!(
                poll_once(&mut sa),
                Poll::Ready(Some(Bytes::from_static(SESSION_ENDED)))
            );
            assert_eq!(
                poll_once(&mut sa),
                Poll::Ready(None),
                "then the stream ends"
            );
            assert!(sa.is_end_stream());
            assert!(poll_once(&mut sb).is_pending(), "b was used later");
            assert!(poll_once(&mut anonymous).is_pending());
            // Publishing still reaches the others, and the ended one stays ended.
            hub.publish(&Bytes::from_static(b"m"));
            assert_eq!(
                poll_once(&mut sb),
                Poll::Ready(Some(Bytes::from_static(b"m")))
            );
            assert_eq!(poll_once(&mut sa), Poll::Ready(None));
            auth.logout(&b.token);
            sweep(expiry);
            assert_eq!(
                poll_once(&mut sb),
                Poll::Ready(Some(Bytes::from_static(SESSION_ENDED)))
            );
            assert_eq!(poll_once(&mut sb), Poll::Ready(None));
            // A stream opened without a session is never ended by one.
            hub.end_sessions(|_| true);
            assert_eq!(
                poll_once(&mut anonymous),
                Poll::Ready(Some(Bytes::from_static(b"m")))
            );
            assert!(poll_once(&mut anonymous).is_pending());
            // A slot freed by an ended stream is clean for the next one.
            drop((sa, sb));
            let mut c = hub.subscribe(Some(a.id)).unwrap();
            assert_eq!(&next(&mut c).await[..], PREAMBLE);
            assert!(poll_once(&mut c).is_pending());
        });
    }

    #[test]
    fn an_ended_session_wakes_its_waiting_stream() {
        rt().block_on(async {
            let hub = Arc::new(Hub::new(1, 2, Duration::from_secs(60)));
            let mut s = hub.subscribe(Some(7)).unwrap();
            next(&mut s).await;
            let sweeper = hub.clone();
            let t = std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(50));
                sweeper.end_sessions(|id| id == 7);
            });
            let got = tokio::time::timeout(Duration::from_secs(5), next(&mut s)).await;
            assert_eq!(&got.expect("woken by end_sessions")[..], SESSION_ENDED);
            t.join().unwrap();
        });
    }
}
