//! The disk thread: store calls and file reads that may block, kept off the
//! runtime.
//!
//! The runtime's workers drive every RTSP camera, every file camera's pacing,
//! the web server and the upstreams. A read or commit that waits on a slow
//! card, or on redb's one writer (held by the events thread through its
//! fsync), would stall all of them, and a camera that is not read loses
//! frames. So every store call and file read those tasks make is a job for
//! one fixed thread, `vigil-disk`, started with the pipeline and counted in
//! the thread set; the tasks only wait for its answer.
//!
//! The queue holds [`QUEUE`] jobs. A caller that finds it full either waits
//! for room ([`Disk::run`]: the upstream tasks, a fixed number) or is refused
//! at once ([`Disk::try_run`]: web requests, answered 503 and counted), so
//! the waiting callers are bounded by the tasks that exist and nothing
//! grows. A job that panics is caught and answered as [`DiskError::Failed`];
//! the thread lives on.
//!
//! It knows nothing of what the jobs do: the store, files and web are its
//! callers, never its imports.

use bytes::Bytes;
use std::future::Future;
use std::io::Read;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use tokio::sync::{mpsc, oneshot};

/// Jobs queued (or running) at most.
pub const QUEUE: usize = 32;

/// Bytes a [`ChunkReader`] reads per job.
pub const CHUNK: usize = 64 << 10;

type Job = Box<dyn FnOnce() + Send>;

/// Why a job did not run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DiskError {
    /// The queue is full ([`Disk::try_run`] only).
    Busy,
    /// The disk thread has stopped (shutdown).
    Stopped,
    /// The job panicked.
    Failed,
}

impl std::fmt::Display for DiskError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            DiskError::Busy => "the disk queue is full",
            DiskError::Stopped => "the disk thread has stopped",
            DiskError::Failed => "a disk job failed",
        })
    }
}

impl std::error::Error for DiskError {}

/// What the disk thread has done, for `/metrics`.
#[derive(Debug, Default)]
pub struct DiskStats {
    /// Jobs started.
    pub jobs: AtomicU64,
    /// Jobs refused because the queue was full.
    pub refused: AtomicU64,
    /// Jobs waiting in the queue now.
    pub queued: AtomicUsize,
    /// Jobs that panicked.
    pub failed: AtomicU64,
}

/// The disk thread and its queue.
pub struct Disk {
    tx: mpsc::Sender<Job>,
    stats: Arc<DiskStats>,
    stopping: Arc<AtomicBool>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Disk {
    /// Starts the thread `name` with a queue of `queue` jobs.
    pub fn start(name: &str, queue: usize) -> std::io::Result<Arc<Disk>> {
        let (tx, mut rx) = mpsc::channel::<Job>(queue.max(1));
        let stats = Arc::new(DiskStats::default());
        let stopping = Arc::new(AtomicBool::new(false));
        let (s, stop) = (stats.clone(), stopping.clone());
        let thread = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                while let Some(job) = rx.blocking_recv() {
                    // Counted before it runs: its caller, once answered,
                    // sees the counters with it.
                    s.queued.fetch_sub(1, Ordering::AcqRel);
                    s.jobs.fetch_add(1, Ordering::Relaxed);
                    if std::panic::catch_unwind(std::panic::AssertUnwindSafe(job)).is_err() {
                        s.failed.fetch_add(1, Ordering::Relaxed);
                    }
                    if stop.load(Ordering::Acquire) {
                        break;
                    }
                }
            })?;
        Ok(Arc::new(Disk {
            tx,
            stats,
            stopping,
            thread: Mutex::new(Some(thread)),
        }))
    }

    /// Whether the thread runs (false once stopped): the monitor pets the
    /// watchdog only while it does.
    pub fn alive(&self) -> bool {
        self.thread
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .is_some_and(|h| !h.is_finished())
    }

    /// The counters.
    pub fn stats(&self) -> &DiskStats {
        &self.stats
    }

    /// Runs `f` on the disk thread, waiting for room in the queue first.
    pub async fn run<T, F>(&self, f: F) -> Result<T, DiskError>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let (job, answer) = wrap(f);
        self.stats.queued.fetch_add(1, Ordering::AcqRel);
        if self.tx.send(job).await.is_err() {
            self.stats.queued.fetch_sub(1, Ordering::AcqRel);
            return Err(DiskError::Stopped);
        }
        answer.await.map_err(|_| DiskError::Failed)?
    }

    /// Runs `f` on the disk thread, or refuses at once ([`DiskError::Busy`],
    /// counted) when the queue is full. The answer is awaited from the
    /// returned future.
    pub fn try_run<T, F>(
        &self,
        f: F,
    ) -> Result<impl Future<Output = Result<T, DiskError>> + Send + 'static, DiskError>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let (job, answer) = wrap(f);
        self.stats.queued.fetch_add(1, Ordering::AcqRel);
        if let Err(e) = self.tx.try_send(job) {
            self.stats.queued.fetch_sub(1, Ordering::AcqRel);
            return Err(match e {
                mpsc::error::TrySendError::Full(_) => {
                    self.stats.refused.fetch_add(1, Ordering::Relaxed);
                    DiskError::Busy
                }
                mpsc::error::TrySendError::Closed(_) => DiskError::Stopped,
            });
        }
        Ok(async move { answer.await.map_err(|_| DiskError::Failed)? })
    }

    /// Stops the thread after the job it is running (queued jobs are
    /// dropped; their callers get [`DiskError::Failed`]) and joins it. Call
    /// from outside the runtime, once the tasks that use the disk are gone.
    pub fn stop(&self) {
        let Some(thread) = self
            .thread
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        else {
            return;
        };
        self.stopping.store(true, Ordering::Release);
        // Wakes an idle thread; a full queue wakes it anyway.
        self.stats.queued.fetch_add(1, Ordering::AcqRel);
        if self.tx.try_send(Box::new(|| ())).is_err() {
            self.stats.queued.fetch_sub(1, Ordering::AcqRel);
        }
        let _ = thread.join();
    }
}

/// `f` as a job that answers on the returned channel (a panic drops the
/// sender unanswered).
fn wrap<T, F>(f: F) -> (Job, oneshot::Receiver<Result<T, DiskError>>)
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let (tx, rx) = oneshot::channel();
    let job: Job = Box::new(move || {
        let _ = tx.send(Ok(f()));
    });
    (job, rx)
}

type Pending = Pin<
    Box<dyn Future<Output = Result<(std::fs::File, std::io::Result<Bytes>), DiskError>> + Send>,
>;

/// A file's next `remaining` bytes, read [`CHUNK`] bytes per disk job, for
/// bodies that hyper polls (web downloads, clip uploads): one chunk is in
/// flight at a time, so a reader holds at most two chunks (the one read and
/// the one being written).
pub struct ChunkReader {
    disk: Arc<Disk>,
    file: Option<std::fs::File>,
    pending: Option<Pending>,
    remaining: u64,
}

impl ChunkReader {
    /// Reads `remaining` bytes of `file` from its current position.
    pub fn new(disk: Arc<Disk>, file: std::fs::File, remaining: u64) -> ChunkReader {
        ChunkReader {
            disk,
            file: Some(file),
            pending: None,
            remaining,
        }
    }

    /// Bytes not yet handed out.
    pub fn remaining(&self) -> u64 {
        self.remaining
    }

    /// The next chunk; `None` at the end. A read error, a file shorter than
    /// announced or a stopped disk thread is an error and ends the reader.
    pub fn poll_chunk(&mut self, cx: &mut Context<'_>) -> Poll<Option<std::io::Result<Bytes>>> {
        if self.remaining == 0 {
            return Poll::Ready(None);
        }
        if self.pending.is_none() {
            let Some(mut file) = self.file.take() else {
                return Poll::Ready(None);
            };
            let n = (self.remaining as usize).min(CHUNK);
            let disk = self.disk.clone();
            self.pending = Some(Box::pin(async move {
                disk.run(move || {
                    let mut buf = vec![0u8; n];
                    let read = file.read_exact(&mut buf).map(|()| Bytes::from(buf));
                    (file, read)
                })
                .await
            }));
        }
        let Some(pending) = self.pending.as_mut() else {
            return Poll::Ready(None);
        };
        let done = std::task::ready!(pending.as_mut().poll(cx));
        self.pending = None;
        Poll::Ready(Some(match done {
            Ok((file, Ok(chunk))) => {
                self.file = Some(file);
                self.remaining -= chunk.len() as u64;
                Ok(chunk)
            }
            Ok((_, Err(e))) => {
                self.remaining = 0;
                Err(e)
            }
            Err(e) => {
                self.remaining = 0;
                Err(std::io::Error::other(e))
            }
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc as std_mpsc;
    use std::time::Duration;

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    #[test]
    fn jobs_run_in_order_on_the_named_thread() {
        let disk = Disk::start("test-disk", 4).unwrap();
        let rt = runtime();
        let names: Vec<String> = rt.block_on(async {
            let mut out = Vec::new();
            for i in 0..10 {
                let name = disk
                    .run(move || format!("{i} {}", std::thread::current().name().unwrap_or("")))
                    .await
                    .unwrap();
                out.push(name);
            }
            out
        });
        assert_eq!(names[0], "0 test-disk");
        assert_eq!(names[9], "9 test-disk");
        assert_eq!(disk.stats().jobs.load(Ordering::Relaxed), 10);
        assert_eq!(disk.stats().queued.load(Ordering::Relaxed), 0);
        disk.stop();
    }

    /// A full queue refuses `try_run` at once and counts it; `run` waits
    /// for room instead, and everything queued runs once the thread is free.
    #[test]
    fn a_full_queue_refuses_try_run_and_makes_run_wait() {
        let disk = Disk::start("test-disk", 2).unwrap();
        let rt = runtime();
        let (release, gate) = std_mpsc::channel::<()>();
        let (started, running) = std_mpsc::channel::<()>();
        rt.block_on(async {
            // One job holds the thread; two more fill the queue.
            let held = disk
                .try_run(move || {
                    started.send(()).unwrap();
                    gate.recv().unwrap();
                    1
                })
                .unwrap();
            running.recv_timeout(Duration::from_secs(5)).unwrap();
            let a = disk.try_run(|| 2).unwrap();
            let b = disk.try_run(|| 3).unwrap();
            assert_eq!(disk.try_run(|| 4).err(), Some(DiskError::Busy));
            assert_eq!(disk.stats().refused.load(Ordering::Relaxed), 1);
            assert_eq!(disk.stats().queued.load(Ordering::Relaxed), 2);
            // `run` waits for room rather than refusing.
            let waiting = disk.run(|| 5);
            tokio::pin!(waiting);
            assert!(
                tokio::time::timeout(Duration::from_millis(50), waiting.as_mut())
                    .await
                    .is_err(),
                "run did not wait for room"
            );
            release.send(()).unwrap();
            assert_eq!(held.await, Ok(1));
            assert_eq!((a.await, b.await), (Ok(2), Ok(3)));
            assert_eq!(waiting.await, Ok(5));
        });
        assert_eq!(disk.stats().jobs.load(Ordering::Relaxed), 4);
        disk.stop();
    }

    #[test]
    fn a_panicking_job_is_answered_and_the_thread_lives_on() {
        let disk = Disk::start("test-disk", 2).unwrap();
        let rt = runtime();
        rt.block_on(async {
            let r: Result<(), _> = disk.run(|| panic!("job panics (expected)")).await;
            assert_eq!(r, Err(DiskError::Failed));
            assert_eq!(disk.run(|| 7).await, Ok(7));
        });
        assert_eq!(disk.stats().failed.load(Ordering::Relaxed), 1);
        disk.stop();
    }

    #[test]
    fn after_stop_jobs_are_refused_and_stop_is_idempotent() {
        let disk = Disk::start("test-disk", 2).unwrap();
        assert!(disk.alive());
        disk.stop();
        assert!(!disk.alive());
        disk.stop();
        let rt = runtime();
        rt.block_on(async {
            assert_eq!(disk.run(|| 1).await, Err(DiskError::Stopped));
        });
        assert!(matches!(disk.try_run(|| 1), Err(DiskError::Stopped)));
    }

    #[test]
    fn the_chunk_reader_reads_a_file_in_chunks_and_reports_a_short_file() {
        let dir = crate::test_dir::TempDir::new("disk-chunks");
        let path = dir.0.join("f");
        let data: Vec<u8> = (0..(CHUNK * 2 + 100)).map(|i| i as u8).collect();
        std::fs::write(&path, &data).unwrap();
        let disk = Disk::start("test-disk", 2).unwrap();
        let rt = runtime();
        let read_all = |announced: u64| {
            let mut r =
                ChunkReader::new(disk.clone(), std::fs::File::open(&path).unwrap(), announced);
            rt.block_on(async {
                let mut got = Vec::new();
                let mut sizes = Vec::new();
                let mut error = None;
                while let Some(c) = std::future::poll_fn(|cx| r.poll_chunk(cx)).await {
                    match c {
                        Ok(c) => {
                            sizes.push(c.len());
                            got.extend_from_slice(&c);
                        }
                        Err(e) => error = Some(e.kind()),
                    }
                }
                (got, sizes, error)
            })
        };
        let (got, sizes, error) = read_all(data.len() as u64);
        assert_eq!(got, data);
        assert_eq!(sizes, [CHUNK, CHUNK, 100]);
        assert_eq!(error, None);
        let (got, _, error) = read_all(data.len() as u64 + 5);
        assert_eq!(got.len(), CHUNK * 2, "the short last chunk is not sent");
        assert_eq!(error, Some(std::io::ErrorKind::UnexpectedEof));
        disk.stop();
    }
}
