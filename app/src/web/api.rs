//! The JSON documents of the API and the status page: what `/api/status`,
//! `/api/cameras`, `/api/events` and the SSE messages contain.
//!
//! They are built from the registry on request (a few hundred bytes per
//! camera); nothing here is cached or grows. Field names are the API's
//! contract with the status page and with scripts on the LAN, so they are
//! spelled out in structs rather than assembled ad hoc.

use super::WebContext;
use crate::events::Event;
use crate::metrics::CameraMetrics;
use serde::Serialize;
use std::path::Path;
use std::sync::atomic::Ordering;

/// Events returned by one `/api/events` page at most.
pub const MAX_PAGE: usize = 500;
/// Latest events shown per camera.
const LATEST_PER_CAMERA: usize = 5;

/// `/api/status`.
#[derive(Serialize)]
pub struct Status<'a> {
    version: &'static str,
    boot_slot: Option<&'a str>,
    uptime_seconds: f64,
    backend: &'static str,
    cpu_percent: f64,
    load1: Option<f64>,
    rss_bytes: f64,
    rss_peak_bytes: f64,
    memory_budget_bytes: f64,
    memory_limit_bytes: f64,
    threads: f64,
    open_fds: f64,
    pools: Vec<PoolJson<'a>>,
    disk: Option<Disk<'a>>,
    events: EventsSummary,
    sse: SseSummary,
    web: WebSummary,
}

#[derive(Serialize)]
struct PoolJson<'a> {
    camera: &'a str,
    name: &'static str,
    capacity: usize,
    in_use: usize,
    high_water: usize,
    empty: u64,
}

/// The data directory's file system.
#[derive(Serialize)]
pub struct Disk<'a> {
    path: &'a str,
    /// Size in bytes.
    pub total_bytes: u64,
    /// Bytes available to vigil.
    pub free_bytes: u64,
}

#[derive(Serialize)]
struct EventsSummary {
    latest_id: u64,
    in_memory: usize,
    evicted: u64,
}

#[derive(Serialize)]
struct SseSummary {
    clients: usize,
    max_clients: usize,
    lost: u64,
}

#[derive(Serialize)]
struct WebSummary {
    connections: usize,
    max_connections: usize,
    refused: u64,
}

/// One camera in `/api/cameras` and in SSE `camera` messages.
#[derive(Serialize)]
pub struct Camera<'a> {
    name: &'a str,
    url: &'a str,
    state: &'static str,
    reason: String,
    codec: Option<&'static str>,
    width: u32,
    height: u32,
    decode_fps: f64,
    detect_fps: f64,
    packets_received: u64,
    frames_decoded: u64,
    frames_detected: u64,
    frames_dropped: u64,
    packets_dropped: u64,
    reconnects: u64,
    events: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    latest_events: Option<Vec<EventJson<'a>>>,
}

/// An event as the API shows it.
#[derive(Serialize)]
pub struct EventJson<'a> {
    id: u64,
    camera: &'a str,
    time_ms: i64,
    pts_us: i64,
    class: &'static str,
    score: f32,
    bbox: BoxJson,
    snapshot: Option<String>,
}

#[derive(Serialize)]
struct BoxJson {
    x0: f32,
    y0: f32,
    x1: f32,
    y1: f32,
}

/// `/api/events`.
#[derive(Serialize)]
pub struct EventsPage<'a> {
    events: Vec<EventJson<'a>>,
    next_after: u64,
}

/// Builds `/api/status`.
pub fn status(ctx: &WebContext) -> Status<'_> {
    let r = &ctx.registry;
    let p = &r.process;
    Status {
        version: env!("CARGO_PKG_VERSION"),
        boot_slot: ctx.boot_slot.as_deref(),
        uptime_seconds: ctx.started.elapsed().as_secs_f64(),
        backend: r.backend,
        cpu_percent: p.cpu_percent.get(),
        load1: load1(),
        rss_bytes: p.rss_bytes.get(),
        rss_peak_bytes: p.rss_peak_bytes.get(),
        memory_budget_bytes: r.memory_budget_bytes.get(),
        memory_limit_bytes: r.memory_limit_bytes.get(),
        threads: p.threads.get(),
        open_fds: p.open_fds.get(),
        pools: r
            .pools()
            .iter()
            .map(|lp| {
                let s = lp.pool.stats();
                PoolJson {
                    camera: &lp.camera,
                    name: s.name,
                    capacity: s.capacity,
                    in_use: s.in_use,
                    high_water: s.high_water,
                    empty: s.exhausted,
                }
            })
            .collect(),
        disk: disk_usage(&ctx.data_dir),
        events: EventsSummary {
            latest_id: ctx.events.latest_id(),
            in_memory: ctx.events.len(),
            evicted: ctx.events.evicted(),
        },
        sse: SseSummary {
            clients: ctx.hub.active(),
            max_clients: ctx.hub.capacity(),
            lost: ctx.hub.lost.get(),
        },
        web: WebSummary {
            connections: ctx.stats.open.load(Ordering::Relaxed),
            max_connections: ctx.config.max_connections,
            refused: ctx.stats.refused.get(),
        },
    }
}

/// Builds one camera's document; with its latest events when `with_events`.
pub fn camera<'a>(ctx: &'a WebContext, index: usize, with_events: bool) -> Camera<'a> {
    let c: &CameraMetrics = &ctx.registry.cameras[index];
    let s = c.status();
    let latest_events = with_events.then(|| {
        let mut latest = Vec::with_capacity(LATEST_PER_CAMERA);
        ctx.events
            .latest(Some(index), LATEST_PER_CAMERA, &mut latest);
        latest.iter().map(|e| event(ctx, e)).collect()
    });
    Camera {
        name: &c.name,
        url: &ctx.camera_urls[index],
        state: s.state.as_str(),
        reason: s.reason,
        codec: s.codec.map(|c| c.as_str()),
        width: s.width,
        height: s.height,
        decode_fps: c.decode_fps.get(),
        detect_fps: c.detect_fps.get(),
        packets_received: c.packets_received.get(),
        frames_decoded: c.frames_decoded.get(),
        frames_detected: c.frames_detected.get(),
        frames_dropped: c.frames_dropped.lost(),
        packets_dropped: c.packets_dropped.lost(),
        reconnects: c.reconnects.get(),
        events: c.events.get(),
        latest_events,
    }
}

/// Builds an event's document.
pub fn event<'a>(ctx: &'a WebContext, e: &Event) -> EventJson<'a> {
    EventJson {
        id: e.id,
        camera: ctx
            .registry
            .cameras
            .get(e.camera)
            .map_or("", |c| c.name.as_str()),
        time_ms: e.unix_ms,
        pts_us: e.pts_us,
        class: e.class_name,
        score: e.score,
        bbox: BoxJson {
            x0: e.bbox.x0,
            y0: e.bbox.y0,
            x1: e.bbox.x1,
            y1: e.bbox.y1,
        },
        // Snapshots arrive with the event store (issue 6).
        snapshot: None,
    }
}

/// Builds a page of events after `after`, at most `limit` (capped at
/// [`MAX_PAGE`]).
pub fn events_page(ctx: &WebContext, after: u64, limit: usize) -> EventsPage<'_> {
    let mut found = Vec::with_capacity(limit.min(MAX_PAGE));
    ctx.events.after(after, limit.min(MAX_PAGE), &mut found);
    let next_after = found.last().map_or(after, |e| e.id);
    EventsPage {
        events: found.iter().map(|e| event(ctx, e)).collect(),
        next_after,
    }
}

/// Size and free space of the file system holding `path`.
pub fn disk_usage(path: &Path) -> Option<Disk<'_>> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: a NUL-terminated path and a statvfs the call fills.
    if unsafe { libc::statvfs(c.as_ptr(), &mut s) } != 0 {
        return None;
    }
    let frsize = s.f_frsize as u64;
    Some(Disk {
        path: path.to_str().unwrap_or(""),
        total_bytes: s.f_blocks as u64 * frsize,
        free_bytes: s.f_bavail as u64 * frsize,
    })
}

/// The 1-minute load average.
fn load1() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/loadavg").ok()?;
    text.split_whitespace().next()?.parse().ok()
}

/// The RAUC boot slot from the kernel command line (`rauc.slot=A`), read once
/// at start; `None` off a RAUC system.
pub fn boot_slot(cmdline: &str) -> Option<String> {
    cmdline
        .split_whitespace()
        .find_map(|w| w.strip_prefix("rauc.slot="))
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

/// A camera URL safe to show: user info (`user:password@`) removed.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.has_host() && (!u.username().is_empty() || u.password().is_some()) => {
            let _ = u.set_username("");
            let _ = u.set_password(None);
            u.to_string()
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boot_slot_from_cmdline() {
        assert_eq!(
            boot_slot("console=ttyS2 rauc.slot=B root=/dev/mmcblk0p3").as_deref(),
            Some("B")
        );
        assert_eq!(boot_slot("console=ttyS2 root=/dev/sda1"), None);
        assert_eq!(boot_slot("rauc.slot="), None);
    }

    #[test]
    fn urls_lose_their_credentials() {
        assert_eq!(
            redact_url("rtsp://admin:secret@10.0.0.5:554/stream1"),
            "rtsp://10.0.0.5:554/stream1"
        );
        assert_eq!(redact_url("rtsp://10.0.0.5/s"), "rtsp://10.0.0.5/s");
        assert_eq!(redact_url("/media/clip.mp4"), "/media/clip.mp4");
    }

    #[test]
    fn disk_usage_of_an_existing_dir() {
        let d = disk_usage(Path::new("/")).expect("statvfs /");
        assert!(d.total_bytes > 0 && d.free_bytes <= d.total_bytes);
        assert!(disk_usage(Path::new("/nonexistent/vigil")).is_none());
    }
}
