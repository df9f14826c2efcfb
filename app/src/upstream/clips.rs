//! Clip delivery in upload mode (`[record] upstream = "upload"`): one task
//! per configured upstream, on the shared runtime, sends each finished clip
//! once the event that opened it left that upstream's outbox.
//!
//! - HTTP: the clip file itself, `POST`ed to the events URL on a connection
//!   of its own (events never wait behind a 30 MB upload), streamed from the
//!   file in 64 KiB chunks (`http::HttpSink::post_clip`).
//! - MQTT: a small JSON notice on `<prefix>/<camera>/clip` with the clip's
//!   link, never the clip (brokers are not made for megabytes). It uses its
//!   own connection, with the client id `<client_id>-clips`, so it cannot
//!   take over the event connection's session.
//!
//! Progress is the store's per-upstream cursor (`Store::clip_uploaded`):
//! finished clips are taken oldest first, and the cursor advances only once
//! the upstream acknowledged (at least once: a crash in between sends the
//! clip again). Failures retry with the event drainers' backoff; a clip the
//! upstream refuses (HTTP 4xx) is given up after `upstream.max_attempts`.
//! A clip retention deleted meanwhile is skipped.
//!
//! Store calls, the open and the file's reads run on the disk thread
//! (`crate::disk`), never on the runtime.

use super::{http, mqtt, DeliveryError};
use crate::backoff::Backoff;
use crate::disk::{ChunkReader, Disk, DiskError};
use crate::metrics::{OutputMetrics, UpstreamMetrics};
use crate::shutdown::Shutdown;
use crate::store::{Sink, Store};
use std::sync::Arc;
use std::time::Duration;

/// How often an idle uploader looks for a newly finished clip.
const POLL: Duration = Duration::from_secs(1);

/// The longest MQTT clip notice: the JSON with a camera name and numbers.
pub const NOTICE_MAX: usize = 1024;

/// Where finished clips go.
pub(super) enum ClipClient {
    /// The clip file, uploaded.
    Http(Box<http::HttpSink>),
    /// A notice with the clip's link.
    Mqtt {
        sink: Box<mqtt::MqttSink>,
        topic_prefix: String,
    },
}

impl ClipClient {
    pub(super) fn sink(&self) -> Sink {
        match self {
            ClipClient::Http(_) => Sink::Http,
            ClipClient::Mqtt { .. } => Sink::Mqtt,
        }
    }

    /// Waits up to `d`; an MQTT client keeps its connection alive meanwhile.
    async fn idle(&mut self, d: Duration) {
        match self {
            ClipClient::Http(_) => tokio::time::sleep(d).await,
            ClipClient::Mqtt { sink, .. } => sink.idle(d).await,
        }
    }
}

/// The MQTT clip notice: `{"clip":id,"camera":name,"bytes":n,"path":...}`.
pub fn notice_json(clip_id: u64, camera: &str, bytes: u64) -> String {
    let camera = serde_json::to_string(camera).unwrap_or_else(|_| "\"\"".into());
    format!(
        "{{\"clip\":{clip_id},\"camera\":{camera},\"bytes\":{bytes},\"path\":\"/api/events/{clip_id}/clip.mp4\"}}"
    )
}

/// What happened to one clip.
enum Outcome {
    /// Acknowledged by the upstream.
    Delivered,
    /// Retention deleted it before it went out: skipped.
    Gone,
}

pub(super) struct ClipUploader {
    pub client: ClipClient,
    pub store: Arc<Store>,
    pub metrics: Arc<OutputMetrics>,
    pub backoff: Backoff,
    pub max_attempts: u32,
    pub disk: Arc<Disk>,
}

impl ClipUploader {
    fn stats(&self) -> &UpstreamMetrics {
        &self.metrics.upstream[self.client.sink() as usize]
    }

    pub async fn run(mut self, mut shutdown: Shutdown) {
        let sink = self.client.sink();
        let mut attempts = 0u32;
        while !shutdown.is_requested() {
            let next = match self.next(sink).await {
                Ok(next) => next,
                Err(e) => {
                    self.stats().clip_fail(&e);
                    self.pause(&mut shutdown).await;
                    continue;
                }
            };
            let Some((clip_id, bytes)) = next else {
                tokio::select! {
                    _ = self.client.idle(POLL) => {}
                    _ = shutdown.requested() => {}
                }
                continue;
            };
            let result = tokio::select! {
                r = self.deliver(clip_id, bytes) => r,
                _ = shutdown.requested() => break,
            };
            attempts += 1;
            let done = match result {
                Ok(Outcome::Delivered) => {
                    self.stats().clips_delivered.inc();
                    self.backoff.reset();
                    log::debug!("upstream {}: clip {clip_id} delivered", sink.as_str());
                    true
                }
                Ok(Outcome::Gone) => {
                    log::debug!(
                        "upstream {}: clip {clip_id} deleted before delivery, skipped",
                        sink.as_str()
                    );
                    true
                }
                Err(DeliveryError::Rejected(why)) if attempts >= self.max_attempts => {
                    self.stats()
                        .clip_fail(&format!("clip {clip_id}: rejected: {why}"));
                    log::warn!(
                        "upstream {}: clip {clip_id} given up after {attempts} attempts: {why}",
                        sink.as_str()
                    );
                    true
                }
                Err(e) => {
                    self.stats().clip_fail(&format!("clip {clip_id}: {e}"));
                    log::debug!("upstream {}: clip {clip_id}: {e}", sink.as_str());
                    false
                }
            };
            if done {
                attempts = 0;
                let store = self.store.clone();
                let uploaded = self
                    .disk
                    .run(move || {
                        store
                            .clip_uploaded(sink, clip_id)
                            .map_err(|e| e.to_string())
                    })
                    .await
                    .unwrap_or_else(|e| Err(e.to_string()));
                if let Err(e) = uploaded {
                    self.stats().clip_fail(&e);
                    self.pause(&mut shutdown).await;
                }
            } else {
                self.pause(&mut shutdown).await;
            }
        }
        if let ClipClient::Mqtt { sink, .. } = &mut self.client {
            sink.disconnect().await;
        }
    }

    /// The next clip to send: the oldest finished one past the cursor, once
    /// the event that opened it is no longer waiting in the outbox.
    async fn next(&mut self, sink: Sink) -> Result<Option<(u64, u64)>, String> {
        let store = self.store.clone();
        let found = self.disk.run(move || {
            let Some((clip_id, bytes)) = store
                .next_clip_to_upload(sink, 0)
                .map_err(|e| e.to_string())?
            else {
                return Ok(None);
            };
            let pending = store.next_pending(sink, 0).map_err(|e| e.to_string())?;
            Ok(match pending {
                Some(event) if event.id <= clip_id => None,
                _ => Some((clip_id, bytes)),
            })
        });
        found.await.unwrap_or_else(|e| Err(e.to_string()))
    }

    async fn deliver(&mut self, clip_id: u64, bytes: u64) -> Result<Outcome, DeliveryError> {
        let store = self.store.clone();
        let open = matches!(self.client, ClipClient::Http(_));
        let found = self
            .disk
            .run(move || find(&store, clip_id, open))
            .await
            .map_err(|e: DiskError| DeliveryError::Unavailable(e.to_string()))?;
        let (camera, file) = match found {
            Found::Clip { camera, file } => (camera, file),
            Found::Gone => return Ok(Outcome::Gone),
            Found::Unreadable(why) => return Err(DeliveryError::Unavailable(why)),
        };
        match &mut self.client {
            ClipClient::Http(http) => {
                let Some((file, len)) = file else {
                    return Err(DeliveryError::Unavailable("clip not opened".into()));
                };
                let reader = ChunkReader::new(self.disk.clone(), file, len);
                http.post_clip(reader, clip_id, &camera).await?;
            }
            ClipClient::Mqtt { sink, topic_prefix } => {
                let topic_camera = if camera.is_empty() {
                    "unknown"
                } else {
                    &camera
                };
                let topic = format!("{topic_prefix}/{topic_camera}/clip");
                let notice = notice_json(clip_id, &camera, bytes);
                sink.publish(&topic, bytes::Bytes::from(notice)).await?;
            }
        }
        Ok(Outcome::Delivered)
    }

    async fn pause(&mut self, shutdown: &mut Shutdown) {
        let delay = self.backoff.next_delay();
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = shutdown.requested() => {}
        }
    }
}

/// A clip looked up on the disk thread.
enum Found {
    /// Its camera (the opening event's; "" when retention deleted that
    /// event while keeping the clip), and its file and length when asked
    /// to open it.
    Clip {
        camera: String,
        file: Option<(std::fs::File, u64)>,
    },
    /// Retention deleted it: skipped.
    Gone,
    /// The file cannot be opened though the clip is stored (a disk error
    /// may pass: retried).
    Unreadable(String),
}

/// Finds clip `clip_id`'s camera and, with `open`, opens its file. Blocks:
/// runs on the disk thread.
fn find(store: &Store, clip_id: u64, open: bool) -> Found {
    let path = store.clip_path(clip_id);
    let camera = match store.get(clip_id) {
        Ok(Some(record)) => record.camera,
        _ => String::new(),
    };
    let opened = if open {
        std::fs::File::open(&path)
            .and_then(|f| {
                let len = f.metadata()?.len();
                Ok((f, len))
            })
            .map(Some)
    } else if path.exists() {
        Ok(None)
    } else {
        Err(std::io::Error::from(std::io::ErrorKind::NotFound))
    };
    match opened {
        Ok(file) => Found::Clip { camera, file },
        Err(e) => match store.clip_bytes(clip_id) {
            Ok(None) => Found::Gone,
            _ => Found::Unreadable(format!("cannot open {}: {e}", path.display())),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mqtt_notice_is_json_with_the_clip_link() {
        let n: serde_json::Value =
            serde_json::from_str(&notice_json(40, "gate \"b\"", 3145728)).unwrap();
        assert_eq!(n["clip"], 40);
        assert_eq!(n["camera"], "gate \"b\"");
        assert_eq!(n["bytes"], 3145728);
        assert_eq!(n["path"], "/api/events/40/clip.mp4");
        assert!(notice_json(u64::MAX, &"x".repeat(200), u64::MAX).len() < NOTICE_MAX);
    }
}
