//! The local web interface: status page, live events (SSE), Prometheus
//! metrics, the JSON API and the admin session.
//!
//! It runs on the pipeline's tokio runtime (`io_threads` workers fixed at
//! start) and adds no thread of its own: connections are tasks, bounded in
//! number by `web.max_connections` and in time by the timeouts in
//! [`server`]. The pipeline never waits for the web: a publisher task reads
//! the event ring and the registry every [`PUBLISH_EVERY`] and hands copies
//! to the [`sse::Hub`], whose queues drop the oldest message for a slow
//! reader. Everything the server holds per client is fixed by the
//! configuration and counted in the memory budget.

pub mod api;
pub mod auth;
pub mod files;
pub mod history;
pub mod prom;
mod routes;
pub mod server;
pub mod sse;

use crate::config::WebConfig;
use crate::events::{Event, EventRing};
use crate::metrics::{CameraState, Counter, Registry};
use crate::shutdown::Shutdown;
use hyper::body::Bytes;
use std::path::PathBuf;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How often new events and camera state changes are pushed to streams.
pub const PUBLISH_EVERY: Duration = Duration::from_millis(250);
/// How often the status message (system and cameras) is refreshed.
const STATUS_EVERY: Duration = Duration::from_secs(2);
/// Events pushed per publisher tick at most; the rest wait for the next.
const EVENTS_PER_TICK: usize = 64;

/// Connection counters of the server.
#[derive(Debug, Default)]
pub struct WebStats {
    /// Connections open now.
    pub open: AtomicUsize,
    /// Connections accepted in all.
    pub accepted: Counter,
    /// Connections closed at once because the cap was reached.
    pub refused: Counter,
    /// Unproductive connections closed to admit a new one at the cap.
    pub evicted: Counter,
    /// Connections closed because nothing moved for `idle_timeout`.
    pub idle_closed: Counter,
    /// Streaming connections closed because the peer hung up.
    pub peer_gone: Counter,
    /// Responses by class: 2xx, 3xx, 4xx, 5xx.
    pub responses: [Counter; 4],
}

/// Everything the handlers read; shared by every connection.
pub struct WebContext {
    /// The `[web]` limits.
    pub config: WebConfig,
    /// The pipeline's measurements.
    pub registry: Arc<Registry>,
    /// Recent events.
    pub events: Arc<EventRing>,
    /// Camera URLs without credentials, in registry order.
    pub camera_urls: Vec<String>,
    /// The stream fan-out.
    pub hub: Arc<sse::Hub>,
    /// Connection counters.
    pub stats: WebStats,
    /// The admin password and sessions.
    pub auth: auth::Auth,
    /// Session lifetimes (for cookies).
    pub auth_config: auth::AuthConfig,
    /// RSS and CPU over the last hour.
    pub history: history::History,
    /// The RAUC slot booted from, when known.
    pub boot_slot: Option<String>,
    /// The data directory (disk use).
    pub data_dir: PathBuf,
    /// The event store (set by the caller after `new`; `None` when it did
    /// not open, with the reason in `store_error`).
    pub store: Option<Arc<crate::store::Store>>,
    /// Why the store did not open ("" when it did).
    pub store_error: String,
    /// Per camera, whether its events get clips (`record.enabled`, and
    /// the camera sends compressed video).
    pub recording: Vec<bool>,
    /// Permits for snapshot and clip downloads.
    pub files: Arc<files::FileSlots>,
    /// When the process started.
    pub started: Instant,
    /// The same, as Unix seconds.
    pub started_unix: f64,
}

/// Why the web interface could not start.
#[derive(Debug)]
pub struct WebError(pub String);

impl std::fmt::Display for WebError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for WebError {}

impl WebContext {
    /// Builds the shared state; opens the admin password file in `data_dir`.
    pub fn new(
        config: &crate::config::Config,
        registry: Arc<Registry>,
        events: Arc<EventRing>,
        auth_config: auth::AuthConfig,
        started: Instant,
    ) -> Result<WebContext, WebError> {
        let auth = auth::Auth::open(&config.data_dir, auth_config)
            .map_err(|e| WebError(format!("admin password: {e}")))?;
        let web = config.web.clone();
        let uptime = started.elapsed().as_secs_f64();
        let now_unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        Ok(WebContext {
            hub: Arc::new(sse::Hub::new(
                web.max_sse_clients,
                web.sse_queue,
                web.heartbeat,
            )),
            config: web,
            registry,
            events,
            camera_urls: config
                .cameras
                .iter()
                .map(|c| api::redact_url(&c.url))
                .collect(),
            stats: WebStats::default(),
            auth,
            auth_config,
            history: history::History::new(),
            boot_slot: std::fs::read_to_string("/proc/cmdline")
                .ok()
                .and_then(|c| api::boot_slot(&c)),
            data_dir: config.data_dir.clone(),
            store: None,
            store_error: String::new(),
            recording: config
                .cameras
                .iter()
                .map(|c| config.record.enabled && c.compressed())
                .collect(),
            files: Arc::default(),
            started,
            started_unix: now_unix - uptime,
        })
    }
}

/// Starts serving `listener` (bound by the caller, so a busy port fails
/// before anything else starts) on `runtime` until `shutdown`.
pub fn start(
    runtime: &tokio::runtime::Handle,
    listener: std::net::TcpListener,
    ctx: Arc<WebContext>,
    shutdown: Shutdown,
) -> Result<(), WebError> {
    listener
        .set_nonblocking(true)
        .map_err(|e| WebError(format!("web listener: {e}")))?;
    let _guard = runtime.enter();
    let listener = tokio::net::TcpListener::from_std(listener)
        .map_err(|e| WebError(format!("web listener: {e}")))?;
    runtime.spawn(publish(ctx.clone(), shutdown.clone()));
    runtime.spawn(server::accept_loop(listener, ctx, shutdown));
    Ok(())
}

/// Pushes new events and camera changes to the streams, refreshes the status
/// message and records the history, until shutdown.
async fn publish(ctx: Arc<WebContext>, mut shutdown: Shutdown) {
    let mut tick = tokio::time::interval(PUBLISH_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Streams carry events from when the server started, not the backlog.
    let mut last_id = ctx.events.latest_id();
    let mut found: Vec<Event> = Vec::with_capacity(EVENTS_PER_TICK);
    let mut states: Vec<(CameraState, String)> =
        vec![(CameraState::Stopped, String::new()); ctx.registry.cameras.len()];
    let mut last_status = Instant::now() - STATUS_EVERY;
    let mut had_readers = false;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.requested() => return,
        }
        // The history keeps its own spacing (one point per 10 s).
        let p = &ctx.registry.process;
        ctx.history
            .record(SystemTime::now(), p.rss_bytes.get(), p.cpu_percent.get());
        // With nobody listening, build nothing: just keep up with the ring.
        let readers = ctx.hub.active() > 0;
        if !readers {
            last_id = ctx.events.latest_id();
            had_readers = false;
            continue;
        }
        ctx.events.after(last_id, EVENTS_PER_TICK, &mut found);
        for e in &found {
            last_id = e.id;
            ctx.hub
                .publish(&sse_message("detection", &api::event(&ctx, e)));
        }
        for (i, cam) in ctx.registry.cameras.iter().enumerate() {
            let s = cam.status();
            if (s.state, s.reason.as_str()) != (states[i].0, states[i].1.as_str()) {
                states[i] = (s.state, s.reason);
                ctx.hub
                    .publish(&sse_message("camera", &api::camera(&ctx, i, false)));
            }
        }
        // A first reader gets a fresh status at once, not a stale one.
        if last_status.elapsed() >= STATUS_EVERY || !had_readers {
            last_status = Instant::now();
            let mut text = sse_text("status", &api::status(&ctx));
            for i in 0..ctx.registry.cameras.len() {
                text.push_str(&sse_text("camera", &api::camera(&ctx, i, false)));
            }
            ctx.hub.set_latest(Bytes::from(text));
        }
        had_readers = true;
    }
}

/// One SSE event: `event: NAME` and the JSON on one `data:` line (JSON
/// from serde_json has no raw newlines).
fn sse_text(name: &str, value: &impl serde::Serialize) -> String {
    let json = serde_json::to_string(value).unwrap_or_else(|_| "null".into());
    format!("event: {name}\ndata: {json}\n\n")
}

fn sse_message(name: &str, value: &impl serde::Serialize) -> Bytes {
    Bytes::from(sse_text(name, value))
}
