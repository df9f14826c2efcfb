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
    store: StoreSummary,
    upstream: Vec<UpstreamSummary>,
    sse: SseSummary,
    web: WebSummary,
}

#[derive(Serialize)]
struct StoreSummary {
    ok: bool,
    error: String,
    events: u64,
    bytes: u64,
    max_bytes: u64,
    max_events: u64,
    last_id: u64,
    written: u64,
    deleted: u64,
    lost: u64,
    snapshots_written: u64,
    snapshots_failed: u64,
    snapshot_pool_empty: u64,
    queue_dropped: u64,
}

#[derive(Serialize)]
struct UpstreamSummary {
    name: &'static str,
    target: String,
    up: bool,
    pending_events: u64,
    pending_bytes: u64,
    delivered: u64,
    failures: u64,
    rejected: u64,
    dropped: u64,
    clips_delivered: u64,
    clip_failures: u64,
    last_error: String,
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
    recording: Recording,
    /// The device and negotiated mode (V4L2 cameras only).
    #[serde(skip_serializing_if = "Option::is_none")]
    v4l2: Option<V4l2>,
    #[serde(skip_serializing_if = "Option::is_none")]
    latest_events: Option<Vec<EventJson<'a>>>,
}

/// A V4L2 camera's device and the mode it negotiated.
#[derive(Serialize)]
struct V4l2 {
    device: String,
    /// nv12, yuyv, mjpeg or h264; absent until the device was opened.
    #[serde(skip_serializing_if = "Option::is_none")]
    format: Option<&'static str>,
    width: u32,
    height: u32,
    stride: u32,
    fps: f64,
    buffers: u32,
    /// Bytes of one driver buffer's frame.
    frame_bytes: u32,
    /// Frames the driver dropped (no free buffer).
    driver_dropped: u64,
}

fn v4l2(c: &CameraMetrics) -> Option<V4l2> {
    let device = c.v4l2.device()?;
    let mode = c.v4l2.mode();
    Some(V4l2 {
        device,
        format: mode.as_ref().map(|m| m.format.as_str()),
        width: mode.as_ref().map_or(0, |m| m.width),
        height: mode.as_ref().map_or(0, |m| m.height),
        stride: mode.as_ref().map_or(0, |m| m.stride),
        fps: mode.as_ref().map_or(0.0, |m| m.fps),
        buffers: mode.as_ref().map_or(0, |m| m.buffers),
        frame_bytes: mode.as_ref().map_or(0, |m| m.frame_bytes),
        driver_dropped: c.v4l2.driver_dropped.get(),
    })
}

/// A camera's clips.
#[derive(Serialize)]
struct Recording {
    /// off, idle, recording or error.
    state: &'static str,
    /// The last write error ("" when fine).
    error: String,
    clips_opened: u64,
    clips_finished: u64,
    clips_truncated: u64,
    write_errors: u64,
    bytes_written: u64,
    /// Stream seconds the pre-roll ring holds.
    ring_seconds: f64,
    ring_bytes: f64,
}

fn recording(ctx: &WebContext, index: usize, c: &CameraMetrics) -> Recording {
    let r = &c.record;
    let error = r.error();
    let state = if !ctx.recording.get(index).copied().unwrap_or(false) {
        "off"
    } else if !error.is_empty() {
        "error"
    } else if r.recording.get() > 0.5 {
        "recording"
    } else {
        "idle"
    };
    Recording {
        state,
        error,
        clips_opened: r.clips_opened.get(),
        clips_finished: r.clips_finished.get(),
        clips_truncated: r.clips_truncated.get(),
        write_errors: r.write_errors.get(),
        bytes_written: r.bytes_written.get(),
        ring_seconds: r.ring_seconds.get(),
        ring_bytes: r.ring_bytes.get(),
    }
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
    clip: Option<String>,
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
        store: store_summary(ctx),
        upstream: upstream_summary(ctx),
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

fn store_summary(ctx: &WebContext) -> StoreSummary {
    let o = &ctx.registry.outputs;
    let (totals, limits, counters, error) = match &ctx.store {
        Some(s) => (
            s.totals(),
            Some(s.limits().clone()),
            Some(&s.counters),
            s.last_error(),
        ),
        None => (Default::default(), None, None, ctx.store_error.clone()),
    };
    let count =
        |c: Option<&std::sync::atomic::AtomicU64>| c.map_or(0, |c| c.load(Ordering::Relaxed));
    StoreSummary {
        ok: ctx.store.is_some() && error.is_empty(),
        error,
        events: totals.events,
        bytes: totals.bytes,
        max_bytes: limits.as_ref().map_or(0, |l| l.max_bytes),
        max_events: limits.as_ref().map_or(0, |l| l.max_events),
        last_id: totals.last_id,
        written: count(counters.map(|c| &c.written)),
        deleted: count(counters.map(|c| &c.deleted)),
        lost: count(counters.map(|c| &c.lost)),
        snapshots_written: o.snapshots_written.get(),
        snapshots_failed: o.snapshots_failed.get(),
        snapshot_pool_empty: o.snapshot_pool_empty.get(),
        queue_dropped: o.jobs_dropped.get(),
    }
}

fn upstream_summary(ctx: &WebContext) -> Vec<UpstreamSummary> {
    let totals = ctx.store.as_ref().map(|s| s.totals()).unwrap_or_default();
    crate::store::Sink::ALL
        .iter()
        .filter_map(|&sink| {
            let i = sink as usize;
            let m = &ctx.registry.outputs.upstream[i];
            let (target, last_error) = m.describe();
            (!target.is_empty()).then(|| UpstreamSummary {
                name: sink.as_str(),
                target,
                up: m.up.get() > 0.5,
                pending_events: totals.outbox_events[i],
                pending_bytes: totals.outbox_bytes[i],
                delivered: m.delivered.get(),
                failures: m.failures.get(),
                rejected: m.rejected.get(),
                dropped: totals.outbox_dropped[i],
                clips_delivered: m.clips_delivered.get(),
                clip_failures: m.clip_failures.get(),
                last_error,
            })
        })
        .collect()
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
        recording: recording(ctx, index, c),
        v4l2: v4l2(c),
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
        // The events thread writes the file shortly after the event; until
        // then (or when the pool was empty) the URL answers 404.
        snapshot: ctx.store.as_ref().map(|_| snapshot_url(e.id)),
        // Every event opens or extends its camera's clip while recording
        // is on; the URL answers 404 until the event is stored and the
        // clip's first fragment written.
        clip: (ctx.recording.get(e.camera).copied().unwrap_or(false) && ctx.store.is_some())
            .then(|| clip_url(e.id)),
    }
}

/// Where event `id`'s snapshot is served.
pub fn snapshot_url(id: u64) -> String {
    format!("/api/events/{id}/snapshot.jpg")
}

/// A stored event's document.
pub fn stored_event(r: &crate::store::EventRecord) -> StoredEventJson<'_> {
    StoredEventJson {
        id: r.id,
        camera: &r.camera,
        time_ms: r.unix_ms,
        pts_us: r.pts_us,
        class: &r.class,
        score: r.score,
        bbox: BoxJson {
            x0: r.bbox[0],
            y0: r.bbox[1],
            x1: r.bbox[2],
            y1: r.bbox[3],
        },
        snapshot: (r.snapshot_bytes > 0).then(|| snapshot_url(r.id)),
        clip: r.clip.map(|_| clip_url(r.id)),
        clip_id: r.clip,
    }
}

/// Where event `id`'s clip is served.
pub fn clip_url(id: u64) -> String {
    format!("/api/events/{id}/clip.mp4")
}

/// An event read from the store, as the API shows it (the same fields as
/// [`EventJson`]).
#[derive(Serialize)]
pub struct StoredEventJson<'a> {
    id: u64,
    camera: &'a str,
    time_ms: i64,
    pts_us: i64,
    class: &'a str,
    score: f32,
    bbox: BoxJson,
    snapshot: Option<String>,
    /// The clip the event belongs to (404 until its first fragment is
    /// written, or after retention deleted it).
    clip: Option<String>,
    /// The clip's id: the id of the event that opened it, shared by every
    /// event it covers.
    clip_id: Option<u64>,
}

/// Builds a page of stored events after `after`, at most `limit` (capped at
/// [`MAX_PAGE`]), as JSON; from the in-memory ring when there is no store.
pub fn events_page_json(ctx: &WebContext, after: u64, limit: usize) -> Result<Vec<u8>, String> {
    let Some(store) = &ctx.store else {
        return serde_json::to_vec(&events_page(ctx, after, limit)).map_err(|e| e.to_string());
    };
    let records = store
        .after(after, limit.min(MAX_PAGE))
        .map_err(|e| e.to_string())?;
    let page = StoredEventsPage {
        next_after: records.last().map_or(after, |r| r.id),
        events: records.iter().map(stored_event).collect(),
    };
    serde_json::to_vec(&page).map_err(|e| e.to_string())
}

#[derive(Serialize)]
struct StoredEventsPage<'a> {
    events: Vec<StoredEventJson<'a>>,
    next_after: u64,
}

/// Builds a page of in-memory events after `after`, at most `limit` (capped
/// at [`MAX_PAGE`]).
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
