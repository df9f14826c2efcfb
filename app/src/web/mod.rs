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
//!
//! The server ([`server`]) knows nothing of routes: it accepts, bounds and
//! times out connections for any [`server::Handler`]; the routes implement
//! that trait for [`WebContext`], and this file wires the two together.

mod access;
pub mod api;
pub mod auth;
pub mod bodies;
mod families;
pub mod files;
#[cfg(test)]
mod golden;
pub mod history;
pub mod host;
mod pages;
pub mod prom;
mod routes;
pub mod server;
pub mod sse;
mod table;

use crate::config::WebConfig;
use crate::events::{Event, EventRing};
use crate::metrics::{CameraState, Registry};
use crate::shutdown::Shutdown;
use hyper::body::Bytes;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How often new events and camera state changes are pushed to streams.
pub const PUBLISH_EVERY: Duration = Duration::from_millis(250);
/// How often the status message (system and cameras) is refreshed.
const STATUS_EVERY: Duration = Duration::from_secs(2);
/// Events pushed per publisher tick at most; the rest wait for the next.
const EVENTS_PER_TICK: usize = 64;

pub use server::WebStats;

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
    /// The buffers documents are built in.
    pub bodies: Arc<bodies::Bodies>,
    /// The thread store and file reads run on.
    pub disk: Arc<crate::disk::Disk>,
    /// The configuration file the page edits (set by the caller; `None`
    /// when vigil runs from `--camera` flags).
    pub settings: Option<Arc<crate::settings::Service>>,
    /// The running upstreams, for the page's test event.
    pub upstream: crate::config::UpstreamConfig,
    /// One test event at a time.
    pub upstream_test: tokio::sync::Semaphore,
    /// One camera test (`crate::camera_probe`) or update install at a
    /// time: they share the budget's reserve.
    pub camera_test: Arc<tokio::sync::Semaphore>,
    /// System updates (set by the caller; `None` where vigil takes none).
    pub updater: Option<Arc<crate::update::Updater>>,
    /// When the process started.
    pub started: Instant,
    /// The same, as Unix seconds.
    pub started_unix: f64,
}

/// Why the web interface could not start.
#[derive(Debug)]
pub enum WebError {
    /// The `listen` address could not be bound: the port is taken, the
    /// address is not this machine's, or a low port needs privileges.
    Bind {
        /// The address from `listen`.
        addr: SocketAddr,
        /// The operating system's error (`AddrInUse`, ...).
        source: io::Error,
    },
    /// The bound listener could not be handed to the runtime, or its
    /// address read back.
    Listener(io::Error),
    /// The admin password file could not be read or is corrupt.
    Auth(auth::AuthError),
    /// The runtime the server was to run on has already stopped.
    RuntimeStopped,
}

impl std::fmt::Display for WebError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WebError::Bind { addr, source } => {
                write!(f, "cannot listen on {addr} (`listen`): {source}")
            }
            WebError::Listener(e) => write!(f, "web listener: {e}"),
            WebError::Auth(e) => write!(f, "admin password: {e}"),
            WebError::RuntimeStopped => f.write_str("the runtime has stopped"),
        }
    }
}

impl std::error::Error for WebError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            WebError::Bind { source, .. } | WebError::Listener(source) => Some(source),
            WebError::Auth(e) => Some(e),
            WebError::RuntimeStopped => None,
        }
    }
}

/// Binds the `listen` address; done before anything slow starts, so a busy
/// port fails fast. Hand the listener to [`start`].
pub fn bind(addr: SocketAddr) -> Result<std::net::TcpListener, WebError> {
    std::net::TcpListener::bind(addr).map_err(|source| WebError::Bind { addr, source })
}

impl WebContext {
    /// Builds the shared state; opens the admin password file in `data_dir`.
    pub fn new(
        config: &crate::config::Config,
        registry: Arc<Registry>,
        events: Arc<EventRing>,
        auth_config: auth::AuthConfig,
        started: Instant,
        disk: Arc<crate::disk::Disk>,
    ) -> Result<WebContext, WebError> {
        let auth = auth::Auth::open(&config.data_dir, auth_config).map_err(WebError::Auth)?;
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
            bodies: bodies::Bodies::new(config.cameras.len()),
            disk,
            settings: None,
            upstream: config.upstream.clone(),
            upstream_test: tokio::sync::Semaphore::new(1),
            camera_test: Arc::new(tokio::sync::Semaphore::new(1)),
            updater: None,
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
    listener.set_nonblocking(true).map_err(WebError::Listener)?;
    let _guard = runtime.enter();
    let listener = tokio::net::TcpListener::from_std(listener).map_err(WebError::Listener)?;
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
    let mut update_generation = 0;
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
        ctx.hub
            .end_sessions(|id| !ctx.auth.session_live(id, Instant::now()));
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
        // An update's progress: one message per change (the updater moves
        // its generation at most once per percent).
        if let Some(u) = &ctx.updater {
            let g = u.generation();
            if g != update_generation {
                update_generation = g;
                ctx.hub
                    .publish(&sse_message("update", &u.view(Instant::now())));
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error;

    #[test]
    fn a_taken_port_is_a_bind_error() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = taken.local_addr().expect("addr");
        match bind(addr) {
            Err(e @ WebError::Bind { .. }) => {
                let WebError::Bind { addr: a, source } = &e else {
                    unreachable!()
                };
                assert_eq!(*a, addr);
                assert_eq!(source.kind(), io::ErrorKind::AddrInUse);
                // The log line names the address and the setting.
                let text = e.to_string();
                assert!(
                    text.starts_with(&format!("cannot listen on {addr} (`listen`): ")),
                    "{text}"
                );
                assert!(e.source().is_some());
            }
            other => panic!("expected Bind, got {other:?}"),
        }
        drop(taken);
    }

    #[test]
    fn a_corrupt_password_file_is_an_auth_error() {
        let dir = std::env::temp_dir().join(format!("vigil-web-error-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("mkdir");
        std::fs::write(dir.join("admin-password"), "garbage\n").expect("write");
        let e = auth::Auth::open(&dir, auth::AuthConfig::default()).map_err(WebError::Auth);
        let _ = std::fs::remove_dir_all(&dir);
        match e {
            Err(
                e @ WebError::Auth(auth::AuthError::Storage(auth::StorageError::Corrupt { .. })),
            ) => {
                assert!(e.to_string().starts_with("admin password: "), "{e}");
                let cause = e.source().expect("the auth error");
                assert!(cause.source().is_some(), "and the storage error below it");
            }
            other => panic!("expected Auth(Storage(Corrupt)), got {other:?}"),
        }
    }
}
