//! The JSON documents of the API and the status page: what `/api/status`,
//! `/api/cameras`, `/api/events` and the SSE messages contain.
//!
//! They are built from the registry on request (a few hundred bytes per
//! camera); nothing here is cached or grows. Field names are the API's
//! contract with the status page and with scripts on the LAN. The
//! measurements come from the table of metric families (each struct
//! flattens the [`Fields`] of its document, under the keys the table gives
//! them); what is not a measurement (names, targets, errors, the mode) is
//! spelled out in the structs here.

use super::families::{Doc, Fields, Scrape};
use super::WebContext;
use crate::events::Event;
use crate::metrics::CameraMetrics;
use serde::Serialize;
use std::path::Path;

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
    /// rss_bytes, rss_peak_bytes, memory_budget_bytes, memory_limit_bytes,
    /// threads, open_fds.
    #[serde(flatten)]
    process: Fields<'a>,
    pools: Vec<PoolJson<'a>>,
    disk: Option<Disk<'a>>,
    events: EventsSummary<'a>,
    store: StoreSummary<'a>,
    upstream: Vec<UpstreamSummary<'a>>,
    /// clients, max_clients, lost.
    sse: Fields<'a>,
    /// connections, max_connections, refused.
    web: Fields<'a>,
}

#[derive(Serialize)]
struct StoreSummary<'a> {
    error: String,
    max_events: u64,
    last_id: u64,
    /// ok, events, bytes, max_bytes, written, deleted, lost, the snapshot
    /// outcomes, queue_dropped.
    #[serde(flatten)]
    counts: Fields<'a>,
}

#[derive(Serialize)]
struct UpstreamSummary<'a> {
    name: &'static str,
    target: String,
    last_error: String,
    /// up, pending_events, pending_bytes, delivered, failures, rejected,
    /// dropped, clips_delivered, clip_failures.
    #[serde(flatten)]
    counts: Fields<'a>,
}

#[derive(Serialize)]
struct PoolJson<'a> {
    camera: &'a str,
    name: &'static str,
    /// capacity, in_use, high_water, empty.
    #[serde(flatten)]
    counts: Fields<'a>,
}

/// The data directory's file system.
#[derive(Clone, Copy, Serialize)]
pub struct Disk<'a> {
    path: &'a str,
    /// Size in bytes.
    pub total_bytes: u64,
    /// Bytes available to vigil.
    pub free_bytes: u64,
}

#[derive(Serialize)]
struct EventsSummary<'a> {
    latest_id: u64,
    /// in_memory, evicted.
    #[serde(flatten)]
    counts: Fields<'a>,
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
    /// decode_fps, detect_fps, packets_received, frames_decoded,
    /// frames_detected, frames_dropped, packets_dropped, reconnects, events.
    #[serde(flatten)]
    counts: Fields<'a>,
    recording: Recording<'a>,
    /// The device and negotiated mode (V4L2 cameras only).
    #[serde(skip_serializing_if = "Option::is_none")]
    v4l2: Option<V4l2<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    latest_events: Option<Vec<EventJson<'a>>>,
}

/// A V4L2 camera's device and the mode it negotiated.
#[derive(Serialize)]
struct V4l2<'a> {
    device: String,
    /// nv12, yuyv, mjpeg or h264; absent until the device was opened.
    #[serde(skip_serializing_if = "Option::is_none")]
    format: Option<&'static str>,
    width: u32,
    height: u32,
    stride: u32,
    buffers: u32,
    /// Bytes of one driver buffer's frame.
    frame_bytes: u32,
    /// fps (0 when the device does not say), driver_dropped (frames the
    /// driver dropped for want of a free buffer).
    #[serde(flatten)]
    counts: Fields<'a>,
}

fn v4l2<'a>(s: Scrape<'a>, index: usize, c: &CameraMetrics) -> Option<V4l2<'a>> {
    let device = c.v4l2.device()?;
    let mode = c.v4l2.mode();
    Some(V4l2 {
        device,
        format: mode.map(|m| m.format),
        width: mode.map_or(0, |m| m.width),
        height: mode.map_or(0, |m| m.height),
        stride: mode.map_or(0, |m| m.stride),
        buffers: mode.map_or(0, |m| m.buffers),
        frame_bytes: mode.map_or(0, |m| m.frame_bytes),
        counts: Fields::new(s, Doc::V4l2, index),
    })
}

/// A camera's clips.
#[derive(Serialize)]
struct Recording<'a> {
    /// off, idle, recording or error.
    state: &'static str,
    /// The last write error ("" when fine).
    error: String,
    /// clips_opened, clips_finished, clips_truncated, write_errors,
    /// bytes_written, ring_seconds (stream seconds the pre-roll ring
    /// holds), ring_bytes.
    #[serde(flatten)]
    counts: Fields<'a>,
}

fn recording<'a>(s: Scrape<'a>, index: usize, c: &CameraMetrics) -> Recording<'a> {
    let r = &c.record;
    let error = r.error();
    let state = if !s.ctx.recording.get(index).copied().unwrap_or(false) {
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
        counts: Fields::new(s, Doc::Recording, index),
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

/// Builds `/api/status`.
pub fn status(ctx: &WebContext) -> Status<'_> {
    let r = &ctx.registry;
    let s = Scrape::new(ctx);
    Status {
        version: crate::version::get(),
        boot_slot: ctx.boot_slot.as_deref(),
        uptime_seconds: ctx.started.elapsed().as_secs_f64(),
        backend: r.backend,
        cpu_percent: r.process.cpu_percent.get(),
        load1: load1(),
        process: Fields::new(s, Doc::Status, 0),
        pools: r
            .pools()
            .iter()
            .enumerate()
            .map(|(i, lp)| PoolJson {
                camera: &lp.camera,
                name: lp.pool.stats().name,
                counts: Fields::new(s, Doc::Pool, i),
            })
            .collect(),
        disk: disk_usage(&ctx.data_dir),
        events: EventsSummary {
            latest_id: ctx.events.latest_id(),
            counts: Fields::new(s, Doc::Events, 0),
        },
        store: store_summary(s),
        upstream: upstream_summary(s),
        sse: Fields::new(s, Doc::Sse, 0),
        web: Fields::new(s, Doc::Web, 0),
    }
}

fn store_summary(s: Scrape<'_>) -> StoreSummary<'_> {
    let (error, max_events, last_id) = match s.store {
        Some((store, totals)) => (
            store.last_error(),
            store.limits().max_events,
            totals.last_id,
        ),
        None => (s.ctx.store_error.clone(), 0, 0),
    };
    StoreSummary {
        error,
        max_events,
        last_id,
        counts: Fields::new(s, Doc::Store, 0),
    }
}

fn upstream_summary(s: Scrape<'_>) -> Vec<UpstreamSummary<'_>> {
    crate::store::Sink::ALL
        .iter()
        .filter_map(|&sink| {
            let i = sink as usize;
            let (target, last_error) = s.ctx.registry.outputs.upstream[i].describe();
            (!target.is_empty()).then(|| UpstreamSummary {
                name: sink.as_str(),
                target,
                last_error,
                counts: Fields::new(s, Doc::Upstream, i),
            })
        })
        .collect()
}

/// Builds one camera's document; with its latest events when `with_events`.
pub fn camera<'a>(ctx: &'a WebContext, index: usize, with_events: bool) -> Camera<'a> {
    let c: &CameraMetrics = &ctx.registry.cameras[index];
    let scrape = Scrape::new(ctx);
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
        counts: Fields::new(scrape, Doc::Camera, index),
        recording: recording(scrape, index, c),
        v4l2: v4l2(scrape, index, c),
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
        clock_unsynced: r.clock_unsynced,
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
    /// The box's clock was not synchronised when the event was stored:
    /// `time_ms` may be far off.
    clock_unsynced: bool,
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

/// `/api/health`, the one public document: `ok` is true when the event
/// store is open and no camera is in state `error` (a camera still
/// connecting is not a fault: it retries by itself). It names no camera
/// and no reason; those are behind the login in `/api/status`.
#[derive(Serialize)]
pub struct Health {
    ok: bool,
    version: &'static str,
    /// A saved configuration is being applied: this process is stopping and
    /// has handed its sessions to the next one, so the page must wait for
    /// the next one (answered with 503 while true).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub restarting: bool,
}

/// The health document of `ctx`.
pub fn health(ctx: &WebContext) -> Health {
    let cameras_ok = ctx
        .registry
        .cameras
        .iter()
        .all(|c| c.state() != crate::metrics::CameraState::Error);
    let restarting = ctx.settings.as_ref().is_some_and(|s| s.restart_requested());
    Health {
        ok: ctx.store.is_some() && cameras_ok && !restarting,
        version: crate::version::get(),
        restarting,
    }
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

/// A camera URL safe to show: user info removed, query values hidden (the
/// one implementation lives with the configuration that holds the URLs).
pub use crate::config::redact_url;

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
