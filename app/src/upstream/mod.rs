//! Upstream delivery of events: one drainer task per configured upstream,
//! and the HTTP and MQTT clients they use.
//!
//! The outbox is part of the store (`store::Store`): an event is queued for
//! every configured upstream in the transaction that stores it. A drainer
//! takes the oldest queued event, sends it, and only then takes it off the
//! outbox, so delivery is at least once: a crash between the two sends it
//! again. Events go one at a time and in id order; while an upstream is
//! down the drainer retries the same event with a growing, jittered delay
//! (`upstream.retry_min` to `retry_max`) and the rest wait on disk, bounded
//! by the outbox quota. An event the upstream refuses outright (HTTP 4xx)
//! is given up after `upstream.max_attempts`, counted, so it cannot block
//! the queue forever.
//!
//! Drainers are tasks on the shared runtime (no thread of their own). Their
//! store reads and commits and the snapshot read run on the disk thread
//! (`crate::disk`): a commit waits for redb's one writer, which the events
//! thread holds through its fsync, and a runtime worker waiting there would
//! stall every camera. The snapshot is read into a buffer of the JPEG
//! buffer's size, allocated at start; a larger file is not one of ours and
//! the event goes without it.
//!
//! Payloads (docs/events.md):
//! - HTTP: `POST` of `{"event": <record>, "snapshot_jpeg": "<base64>"|null}`.
//! - MQTT, QoS 1, not retained: `<prefix>/<camera>/snapshot` with the JPEG
//!   bytes (when the event has one), then `<prefix>/<camera>/event` with the
//!   record's JSON; the event counts as delivered when both are acknowledged.
//!
//! With `[record] upstream = "upload"` each upstream also gets a clip task
//! ([`clips`]): HTTP receives every finished clip file, streamed; MQTT a
//! small notice with the clip's link.

pub mod clips;
mod error;
pub mod http;
pub mod mqtt;
pub mod probe;

pub use error::UpstreamError;

use crate::backoff::{seed_from, Backoff, Jitter};
use crate::config::{ClipDelivery, UpstreamConfig};
use crate::disk::{Disk, DiskError};
use crate::metrics::{OutputMetrics, UpstreamMetrics};
use crate::shutdown::Shutdown;
use crate::store::{EventRecord, Sink, Store};
use base64::Engine;
use std::sync::{Arc, PoisonError};
use std::time::Duration;
use tokio::sync::Notify;

/// Settle this many deliveries without forcing them to disk, then one
/// durable commit (a crash in between only redelivers them).
const DURABLE_EVERY: u32 = 64;
/// How long an idle drainer waits for new events before looking again
/// (and, for MQTT, keeps the connection alive meanwhile).
const IDLE_WAIT: Duration = Duration::from_secs(5);

/// One configured upstream and its client.
enum Client {
    // Boxed, both: one of each lives for the process; the enum stays small.
    Http(Box<http::HttpSink>),
    Mqtt {
        sink: Box<mqtt::MqttSink>,
        topic_prefix: String,
    },
}

impl Client {
    fn sink(&self) -> Sink {
        match self {
            Client::Http(_) => Sink::Http,
            Client::Mqtt { .. } => Sink::Mqtt,
        }
    }

    async fn deliver(
        &mut self,
        record: &EventRecord,
        jpeg: Option<&[u8]>,
        body: &mut Vec<u8>,
    ) -> Result<(), DeliveryError> {
        body.clear();
        match self {
            Client::Http(sink) => {
                body.extend_from_slice(b"{\"event\":");
                let _ = record.write_json(&mut *body);
                match jpeg {
                    Some(jpeg) => {
                        body.extend_from_slice(b",\"snapshot_jpeg\":\"");
                        let start = body.len();
                        body.resize(start + base64_len(jpeg.len()), 0);
                        let n = base64::engine::general_purpose::STANDARD
                            .encode_slice(jpeg, &mut body[start..])
                            .map_err(|e| DeliveryError::Rejected(format!("base64: {e}")))?;
                        body.truncate(start + n);
                        body.extend_from_slice(b"\"}");
                    }
                    None => body.extend_from_slice(b",\"snapshot_jpeg\":null}"),
                }
                sink.post_json(bytes::Bytes::copy_from_slice(body)).await
            }
            Client::Mqtt { sink, topic_prefix } => {
                let topic = |kind: &str| format!("{topic_prefix}/{}/{kind}", record.camera);
                if let Some(jpeg) = jpeg {
                    sink.publish(&topic("snapshot"), bytes::Bytes::copy_from_slice(jpeg))
                        .await?;
                }
                let _ = record.write_json(&mut *body);
                sink.publish(&topic("event"), bytes::Bytes::copy_from_slice(body))
                    .await
            }
        }
    }

    /// Waits up to `d`; an MQTT client keeps its connection alive meanwhile.
    async fn idle(&mut self, d: Duration) {
        match self {
            Client::Http(_) => tokio::time::sleep(d).await,
            Client::Mqtt { sink, .. } => sink.idle(d).await,
        }
    }
}

fn base64_len(n: usize) -> usize {
    n.div_ceil(3) * 4
}

/// Starts one drainer task per configured upstream on `runtime`, and, with
/// `clip_delivery` [`ClipDelivery::Upload`] (recording on, `record.upstream =
/// "upload"`), one clip task per configured upstream.
///
/// Fails before starting anything when a client refuses its configuration
/// (the HTTP client's refusals come wrapped in [`UpstreamError::Http`]).
#[allow(clippy::too_many_arguments)]
pub fn spawn_with_clips(
    runtime: &tokio::runtime::Runtime,
    config: &UpstreamConfig,
    clip_delivery: ClipDelivery,
    store: Arc<Store>,
    metrics: Arc<OutputMetrics>,
    committed: Arc<Notify>,
    shutdown: Shutdown,
    max_snapshot: usize,
    disk: Arc<Disk>,
) -> Result<(), UpstreamError> {
    let mut clients = Vec::new();
    let mut clip_clients = Vec::new();
    let upload = clip_delivery == ClipDelivery::Upload;
    if let (true, Some(h)) = (upload, &config.http) {
        let sink = http::HttpSink::new(&h.url, h.header.clone(), config.timeout)
            .map_err(|e| UpstreamError::Http(Box::new(e)))?;
        clip_clients.push(clips::ClipClient::Http(Box::new(sink)));
    }
    if let (true, Some(m)) = (upload, &config.mqtt) {
        let sink = mqtt::MqttSink::new(mqtt::MqttSettings {
            host: m.host.clone(),
            port: m.port,
            // Its own session: the same client id would make the broker
            // drop the event connection.
            client_id: match m.client_id.as_str() {
                "" => String::new(),
                id => format!("{id}-clips"),
            },
            username: m.username.clone(),
            password: m.password.clone(),
            keep_alive: Duration::from_secs(30),
            timeout: config.timeout,
            max_payload: clips::NOTICE_MAX,
        });
        clip_clients.push(clips::ClipClient::Mqtt {
            sink: Box::new(sink),
            topic_prefix: m.topic_prefix.clone(),
        });
    }
    if let Some(h) = &config.http {
        let sink = http::HttpSink::new(&h.url, h.header.clone(), config.timeout)
            .map_err(|e| UpstreamError::Http(Box::new(e)))?;
        clients.push(Client::Http(Box::new(sink)));
    }
    if let Some(m) = &config.mqtt {
        let sink = mqtt::MqttSink::new(mqtt::MqttSettings {
            host: m.host.clone(),
            port: m.port,
            client_id: m.client_id.clone(),
            username: m.username.clone(),
            password: m.password.clone(),
            keep_alive: Duration::from_secs(30),
            timeout: config.timeout,
            max_payload: max_snapshot + 4096,
        });
        clients.push(Client::Mqtt {
            sink: Box::new(sink),
            topic_prefix: m.topic_prefix.clone(),
        });
    }
    for client in clients {
        let sink = client.sink();
        let m = &metrics.upstream[sink as usize];
        *m.target.lock().unwrap_or_else(PoisonError::into_inner) = match &client {
            Client::Http(s) => s.describe(),
            Client::Mqtt { sink, .. } => sink.describe(),
        };
        let drainer = Drainer {
            client,
            store: store.clone(),
            metrics: metrics.clone(),
            committed: committed.clone(),
            backoff: Backoff::new(
                config.retry_min,
                config.retry_max,
                Jitter::Full,
                Duration::ZERO,
                seed_from(sink.as_str()),
            ),
            max_attempts: config.max_attempts,
            body: Vec::with_capacity(base64_len(max_snapshot) + 1024),
            snapshot: Vec::with_capacity(max_snapshot),
            max_snapshot,
            disk: disk.clone(),
        };
        runtime.spawn(drainer.run(shutdown.clone()));
    }
    for client in clip_clients {
        let label = format!("{}-clips", client.sink().as_str());
        let uploader = clips::ClipUploader {
            client,
            store: store.clone(),
            metrics: metrics.clone(),
            backoff: Backoff::new(
                config.retry_min,
                config.retry_max,
                Jitter::Full,
                Duration::ZERO,
                seed_from(&label),
            ),
            max_attempts: config.max_attempts,
            disk: disk.clone(),
        };
        runtime.spawn(uploader.run(shutdown.clone()));
    }
    Ok(())
}

struct Drainer {
    client: Client,
    store: Arc<Store>,
    metrics: Arc<OutputMetrics>,
    committed: Arc<Notify>,
    backoff: Backoff,
    max_attempts: u32,
    body: Vec<u8>,
    /// The snapshot being sent (its capacity is the largest one).
    snapshot: Vec<u8>,
    max_snapshot: usize,
    disk: Arc<Disk>,
}

impl Drainer {
    fn stats(&self) -> &UpstreamMetrics {
        &self.metrics.upstream[self.client.sink() as usize]
    }

    async fn run(mut self, mut shutdown: Shutdown) {
        let sink = self.client.sink();
        let mut attempts = 0u32;
        let mut settled_lazily = 0u32;
        let committed = self.committed.clone();
        while !shutdown.is_requested() {
            // Registered before looking, so a commit in between still wakes us.
            let notified = committed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let (next, has_jpeg) = match self.next(sink).await {
                Ok(next) => next,
                Err(NextError::Stopped) => break,
                Err(e) => {
                    self.stats().fail(&e.to_string());
                    self.pause(&mut shutdown).await;
                    continue;
                }
            };
            let Some(record) = next else {
                if settled_lazily > 0 && self.settle_durably(sink).await {
                    settled_lazily = 0;
                }
                tokio::select! {
                    _ = notified => {}
                    _ = self.client.idle(IDLE_WAIT) => {}
                    _ = shutdown.requested() => {}
                }
                continue;
            };
            let mut body = std::mem::take(&mut self.body);
            let jpeg = has_jpeg.then_some(self.snapshot.as_slice());
            let result = tokio::select! {
                r = self.client.deliver(&record, jpeg, &mut body) => r,
                _ = shutdown.requested() => break,
            };
            self.body = body;
            attempts += 1;
            let give_up = match &result {
                Ok(()) => {
                    self.stats().succeed();
                    self.backoff.reset();
                    true
                }
                Err(DeliveryError::Rejected(why)) if attempts >= self.max_attempts => {
                    self.stats().rejected.inc();
                    log::warn!(
                        "upstream {}: event {} given up after {attempts} attempts: {why}",
                        sink.as_str(),
                        record.id
                    );
                    true
                }
                Err(e) => {
                    self.stats().fail(&e.to_string());
                    log::debug!("upstream {}: event {}: {e}", sink.as_str(), record.id);
                    false
                }
            };
            if give_up {
                attempts = 0;
                settled_lazily += 1;
                let durable = settled_lazily >= DURABLE_EVERY;
                let store = self.store.clone();
                let id = record.id;
                match self.disk.run(move || store.settle(sink, id, durable)).await {
                    Ok(Ok(_)) if durable => settled_lazily = 0,
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => {
                        self.stats().fail(&e.to_string());
                        self.pause(&mut shutdown).await;
                    }
                    Err(DiskError::Stopped) => break,
                    Err(e) => {
                        self.stats().fail(&e.to_string());
                        self.pause(&mut shutdown).await;
                    }
                }
            } else {
                self.pause(&mut shutdown).await;
            }
        }
        if settled_lazily > 0 {
            self.settle_durably(sink).await;
        }
    }

    /// The oldest event still queued for `sink`, with its snapshot read into
    /// `self.snapshot` (true when there is one), on the disk thread.
    async fn next(&mut self, sink: Sink) -> Result<(Option<EventRecord>, bool), NextError> {
        let store = self.store.clone();
        let mut jpeg = std::mem::take(&mut self.snapshot);
        let answer = self
            .disk
            .run(move || {
                let next = store.next_pending(sink, 0);
                let has = match &next {
                    Ok(Some(r)) if r.snapshot_bytes > 0 => {
                        // Retention may have deleted the file meanwhile: send without.
                        read_within(&store.snapshot_path(r.id), &mut jpeg)
                    }
                    _ => false,
                };
                (next, has, jpeg)
            })
            .await;
        match answer {
            Ok((next, has, jpeg)) => {
                self.snapshot = jpeg;
                Ok((next.map_err(NextError::Store)?, has))
            }
            // The buffer went with the job: only at shutdown, or when the
            // job panicked (then a new one, of the same capacity).
            Err(DiskError::Stopped) => Err(NextError::Stopped),
            Err(e) => {
                self.snapshot = Vec::with_capacity(self.max_snapshot);
                Err(NextError::Disk(e))
            }
        }
    }

    /// Makes earlier lazy settlements durable; false on a store error.
    async fn settle_durably(&mut self, sink: Sink) -> bool {
        // Settling an id that is not queued changes nothing but commits durably.
        let store = self.store.clone();
        matches!(
            self.disk.run(move || store.settle(sink, 0, true)).await,
            Ok(Ok(_))
        )
    }

    /// Waits the next backoff delay (or until shutdown).
    async fn pause(&mut self, shutdown: &mut Shutdown) {
        let delay = self.backoff.next_delay();
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = shutdown.requested() => {}
        }
    }
}

/// Reads the file at `path` into `buf` when it fits its capacity (no
/// allocation); false when it is missing, larger, or unreadable.
fn read_within(path: &std::path::Path, buf: &mut Vec<u8>) -> bool {
    use std::io::Read;
    buf.clear();
    let Ok(mut f) = std::fs::File::open(path) else {
        return false;
    };
    let len = match f.metadata() {
        Ok(m) if m.len() <= buf.capacity() as u64 => m.len() as usize,
        _ => return false,
    };
    buf.resize(len, 0);
    if f.read_exact(buf).is_err() {
        buf.clear();
        return false;
    }
    true
}

/// Why the next event could not be taken.
#[derive(Debug)]
enum NextError {
    /// The store could not be read.
    Store(crate::store::StoreError),
    /// The disk thread failed the job.
    Disk(DiskError),
    /// The disk thread has stopped (shutdown).
    Stopped,
}

impl std::fmt::Display for NextError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NextError::Store(e) => write!(f, "{e}"),
            NextError::Disk(e) => write!(f, "{e}"),
            NextError::Stopped => f.write_str("stopped"),
        }
    }
}

/// Why a delivery did not happen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeliveryError {
    /// The upstream is unavailable or misbehaving (cannot connect, reset,
    /// timed out, refused the connection, answered 5xx, 408, 429 or
    /// garbage): the same event is retried after a backoff.
    Unavailable(String),
    /// The upstream refused this event (HTTP 4xx other than 408/429, an
    /// MQTT payload larger than the broker allows): retrying the same bytes
    /// cannot succeed, so the outbox gives up on it after a few attempts.
    Rejected(String),
}

impl std::fmt::Display for DeliveryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DeliveryError::Unavailable(s) => write!(f, "unavailable: {s}"),
            DeliveryError::Rejected(s) => write!(f, "rejected: {s}"),
        }
    }
}

impl std::error::Error for DeliveryError {}
