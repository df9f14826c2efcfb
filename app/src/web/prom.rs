//! The Prometheus text exposition (format 0.0.4) of everything measured.
//!
//! Written by hand: the format is a few lines per family, the registry is
//! already atomics, and a client library would add a second registry to
//! keep in step. Names follow the Prometheus conventions (base units,
//! `_total` on counters, the standard `process_*` names where one exists),
//! and `promtool check metrics` runs on a live scrape in the system tests.

use super::WebContext;
use crate::metrics::{CameraMetrics, CameraState, DropReason, LATENCY_BUCKETS};
use std::fmt::Write;
use std::sync::atomic::Ordering;

/// The exposition's content type.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

const STATES: [CameraState; 4] = [
    CameraState::Connecting,
    CameraState::Streaming,
    CameraState::Error,
    CameraState::Stopped,
];

/// Renders every metric.
pub fn render(ctx: &WebContext) -> String {
    let mut out = String::with_capacity(16 << 10);
    let r = &ctx.registry;
    let p = &r.process;
    let w = &mut out;

    family(
        w,
        "vigil_build_info",
        "gauge",
        "Version and backend of the running vigil.",
    );
    let _ = writeln!(
        w,
        "vigil_build_info{{version=\"{}\",backend=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION"),
        r.backend
    );
    gauge(
        w,
        "process_resident_memory_bytes",
        "Resident memory size in bytes.",
        p.rss_bytes.get(),
    );
    gauge(
        w,
        "vigil_resident_memory_peak_bytes",
        "Highest resident memory size in bytes.",
        p.rss_peak_bytes.get(),
    );
    gauge(
        w,
        "vigil_memory_budget_bytes",
        "Memory budget computed from the configuration, in bytes.",
        r.memory_budget_bytes.get(),
    );
    gauge(
        w,
        "vigil_memory_limit_bytes",
        "Configured memory limit; three readings over it stop the process.",
        r.memory_limit_bytes.get(),
    );
    counter(
        w,
        "process_cpu_seconds_total",
        "Total user and system CPU time spent in seconds.",
        p.cpu_seconds.get(),
    );
    gauge(
        w,
        "process_open_fds",
        "Number of open file descriptors.",
        p.open_fds.get(),
    );
    gauge(
        w,
        "process_start_time_seconds",
        "Start time of the process since unix epoch in seconds.",
        ctx.started_unix,
    );
    gauge(
        w,
        "vigil_threads",
        "Threads in the process (fixed at start).",
        p.threads.get(),
    );
    family(
        w,
        "vigil_heap_allocations_total",
        "counter",
        "Heap allocations since start, by code area.",
    );
    let _ = writeln!(
        w,
        "vigil_heap_allocations_total{{area=\"vigil\"}} {}",
        p.heap_allocations.get()
    );
    let _ = writeln!(
        w,
        "vigil_heap_allocations_total{{area=\"inference_engine\"}} {}",
        p.engine_heap_allocations.get()
    );

    camera_counter(
        w,
        r.cameras.iter(),
        "vigil_camera_packets_received_total",
        "Access units received from the source.",
        |c| c.packets_received.get(),
    );
    camera_counter(
        w,
        r.cameras.iter(),
        "vigil_camera_received_bytes_total",
        "Compressed bytes received from the source.",
        |c| c.bytes_received.get(),
    );
    camera_counter(
        w,
        r.cameras.iter(),
        "vigil_camera_frames_decoded_total",
        "Pictures out of the decoder.",
        |c| c.frames_decoded.get(),
    );
    camera_counter(
        w,
        r.cameras.iter(),
        "vigil_camera_frames_detected_total",
        "Pictures the detector ran on.",
        |c| c.frames_detected.get(),
    );
    camera_counter(
        w,
        r.cameras.iter(),
        "vigil_camera_detections_total",
        "Objects detected above the threshold.",
        |c| c.detections.get(),
    );
    camera_counter(
        w,
        r.cameras.iter(),
        "vigil_camera_events_total",
        "Events raised.",
        |c| c.events.get(),
    );
    camera_counter(
        w,
        r.cameras.iter(),
        "vigil_camera_reconnects_total",
        "Source sessions opened after the first.",
        |c| c.reconnects.get(),
    );
    for (name, help, pick) in [
        (
            "vigil_record_clips_opened_total",
            "Clips opened by an event.",
            (|c| c.record.clips_opened.get()) as fn(&CameraMetrics) -> u64,
        ),
        (
            "vigil_record_clips_finished_total",
            "Clips written out and linked in the store.",
            |c| c.record.clips_finished.get(),
        ),
        (
            "vigil_record_clips_truncated_total",
            "Clips cut short (writer behind the ring, stream restart, disk refused).",
            |c| c.record.clips_truncated.get(),
        ),
        (
            "vigil_record_units_written_total",
            "Access units written into clips.",
            |c| c.record.units_written.get(),
        ),
        (
            "vigil_record_bytes_written_total",
            "Bytes written into clip files.",
            |c| c.record.bytes_written.get(),
        ),
        (
            "vigil_record_write_errors_total",
            "Clip writes that failed (disk full, read-only, quota).",
            |c| c.record.write_errors.get(),
        ),
        (
            "vigil_record_ring_refused_total",
            "Access units the pre-roll ring refused (larger than it, or a GOP longer than it).",
            |c| c.record.ring_refused.get(),
        ),
    ] {
        camera_counter(w, r.cameras.iter(), name, help, pick);
    }
    for (name, help, pick) in [
        (
            "vigil_record_recording",
            "1 while a clip is open or being written.",
            (|c| c.record.recording.get()) as fn(&CameraMetrics) -> f64,
        ),
        (
            "vigil_record_ring_bytes",
            "Bytes of compressed stream the pre-roll ring holds.",
            |c| c.record.ring_bytes.get(),
        ),
        (
            "vigil_record_ring_seconds",
            "Stream seconds the pre-roll ring holds.",
            |c| c.record.ring_seconds.get(),
        ),
    ] {
        family(w, name, "gauge", help);
        for c in &r.cameras {
            let _ = writeln!(w, "{name}{{camera=\"{}\"}} {}", c.name, pick(c));
        }
    }
    for (name, help, pick) in [
        (
            "vigil_camera_packets_dropped_total",
            "Access units thrown away, by reason.",
            (|c| &c.packets_dropped) as fn(&CameraMetrics) -> &crate::metrics::DropCounters,
        ),
        (
            "vigil_camera_frames_dropped_total",
            "Decoded pictures not detected on, by reason.",
            |c| &c.frames_dropped,
        ),
    ] {
        family(w, name, "counter", help);
        for c in &r.cameras {
            for why in DropReason::ALL {
                let _ = writeln!(
                    w,
                    "{name}{{camera=\"{}\",reason=\"{}\"}} {}",
                    c.name,
                    why.as_str(),
                    pick(c).get(why)
                );
            }
        }
    }
    family(
        w,
        "vigil_camera_decode_fps",
        "gauge",
        "Pictures decoded per second over the last second.",
    );
    for c in &r.cameras {
        let _ = writeln!(
            w,
            "vigil_camera_decode_fps{{camera=\"{}\"}} {}",
            c.name,
            c.decode_fps.get()
        );
    }
    family(
        w,
        "vigil_camera_detect_fps",
        "gauge",
        "Pictures detected on per second over the last second.",
    );
    for c in &r.cameras {
        let _ = writeln!(
            w,
            "vigil_camera_detect_fps{{camera=\"{}\"}} {}",
            c.name,
            c.detect_fps.get()
        );
    }
    // V4L2 cameras only: the device and the mode it negotiated.
    let v4l2: Vec<_> = r
        .cameras
        .iter()
        .filter_map(|c| c.v4l2.device().map(|d| (c, d, c.v4l2.mode())))
        .collect();
    if !v4l2.is_empty() {
        family(
            w,
            "vigil_v4l2_mode",
            "gauge",
            "1 for a V4L2 camera's device and the mode it negotiated (format \"\" until opened).",
        );
        for (c, device, mode) in &v4l2 {
            let (format, width, height) = mode
                .as_ref()
                .map_or(("", 0, 0), |m| (m.format.as_str(), m.width, m.height));
            let _ = writeln!(
                w,
                "vigil_v4l2_mode{{camera=\"{}\",device=\"{}\",format=\"{format}\",width=\"{width}\",height=\"{height}\"}} 1",
                c.name,
                label_value(device)
            );
        }
        family(
            w,
            "vigil_v4l2_fps",
            "gauge",
            "Frames per second the V4L2 device reports for its mode (0 when it does not say).",
        );
        for (c, _, mode) in &v4l2 {
            let _ = writeln!(
                w,
                "vigil_v4l2_fps{{camera=\"{}\"}} {}",
                c.name,
                mode.as_ref().map_or(0.0, |m| m.fps)
            );
        }
        family(
            w,
            "vigil_v4l2_buffer_bytes",
            "gauge",
            "Bytes of the V4L2 driver buffers mapped for the camera.",
        );
        for (c, _, mode) in &v4l2 {
            let _ = writeln!(
                w,
                "vigil_v4l2_buffer_bytes{{camera=\"{}\"}} {}",
                c.name,
                mode.as_ref()
                    .map_or(0, |m| m.buffers as u64 * m.frame_bytes as u64)
            );
        }
        family(
            w,
            "vigil_v4l2_driver_dropped_total",
            "counter",
            "Frames the V4L2 driver captured but dropped for want of a free buffer.",
        );
        for (c, _, _) in &v4l2 {
            let _ = writeln!(
                w,
                "vigil_v4l2_driver_dropped_total{{camera=\"{}\"}} {}",
                c.name,
                c.v4l2.driver_dropped.get()
            );
        }
    }
    family(
        w,
        "vigil_camera_state",
        "gauge",
        "1 for the state the camera is in, 0 for the others.",
    );
    for c in &r.cameras {
        let now = c.status().state;
        for s in STATES {
            let _ = writeln!(
                w,
                "vigil_camera_state{{camera=\"{}\",state=\"{}\"}} {}",
                c.name,
                s.as_str(),
                u8::from(s == now)
            );
        }
    }

    let h = r.inference_latency.snapshot();
    family(
        w,
        "vigil_inference_duration_seconds",
        "histogram",
        "Time the detector spent per picture.",
    );
    for (bound, count) in LATENCY_BUCKETS.iter().zip(&h.cumulative) {
        let _ = writeln!(
            w,
            "vigil_inference_duration_seconds_bucket{{le=\"{bound}\"}} {count}"
        );
    }
    let _ = writeln!(
        w,
        "vigil_inference_duration_seconds_bucket{{le=\"+Inf\"}} {}",
        h.count
    );
    let _ = writeln!(w, "vigil_inference_duration_seconds_sum {}", h.sum_seconds);
    let _ = writeln!(w, "vigil_inference_duration_seconds_count {}", h.count);

    counter(
        w,
        "vigil_events_evicted_total",
        "Events dropped from the in-memory ring because it was full.",
        ctx.events.evicted() as f64,
    );
    gauge(
        w,
        "vigil_events_in_memory",
        "Events held in the in-memory ring.",
        ctx.events.len() as f64,
    );

    type PoolPick = fn(&crate::pool::PoolStats) -> f64;
    let pool_families: [(&str, &str, &str, PoolPick); 4] = [
        (
            "vigil_pool_capacity",
            "gauge",
            "Items a fixed pool was filled with at start.",
            |s| s.capacity as f64,
        ),
        (
            "vigil_pool_in_use",
            "gauge",
            "Items lent out of a pool now.",
            |s| s.in_use as f64,
        ),
        (
            "vigil_pool_high_water",
            "gauge",
            "Most items ever lent out of a pool at once.",
            |s| s.high_water as f64,
        ),
        (
            "vigil_pool_exhausted_total",
            "counter",
            "Requests that found a pool empty.",
            |s| s.exhausted as f64,
        ),
    ];
    let stats: Vec<_> = r
        .pools()
        .iter()
        .map(|p| (p.camera.as_str(), p.pool.stats()))
        .collect();
    for (name, kind, help, pick) in pool_families {
        family(w, name, kind, help);
        for (camera, s) in &stats {
            let _ = writeln!(
                w,
                "{name}{{camera=\"{camera}\",pool=\"{}\"}} {}",
                s.name,
                pick(s)
            );
        }
    }

    let hub = &ctx.hub;
    gauge(
        w,
        "vigil_sse_clients",
        "Open /events streams.",
        hub.active() as f64,
    );
    gauge(
        w,
        "vigil_sse_clients_max",
        "Most /events streams allowed at once.",
        hub.capacity() as f64,
    );
    counter(
        w,
        "vigil_sse_streams_opened_total",
        "/events streams opened.",
        hub.opened.get() as f64,
    );
    counter(
        w,
        "vigil_sse_streams_rejected_total",
        "/events streams refused because every slot was taken.",
        hub.rejected.get() as f64,
    );
    counter(
        w,
        "vigil_sse_messages_lost_total",
        "Messages dropped from full stream queues (slow readers).",
        hub.lost.get() as f64,
    );

    let s = &ctx.stats;
    gauge(
        w,
        "vigil_http_connections",
        "Open HTTP connections.",
        s.open.load(Ordering::Relaxed) as f64,
    );
    gauge(
        w,
        "vigil_http_connections_max",
        "Most HTTP connections allowed at once.",
        ctx.config.max_connections as f64,
    );
    counter(
        w,
        "vigil_http_connections_accepted_total",
        "HTTP connections accepted.",
        s.accepted.get() as f64,
    );
    counter(
        w,
        "vigil_http_connections_refused_total",
        "HTTP connections refused at the cap because every connection was busy.",
        s.refused.get() as f64,
    );
    counter(
        w,
        "vigil_http_connections_evicted_total",
        "Connections without a request in flight closed to admit a new one at the cap.",
        s.evicted.get() as f64,
    );
    counter(
        w,
        "vigil_http_connections_idle_closed_total",
        "HTTP connections closed for idling past idle_timeout.",
        s.idle_closed.get() as f64,
    );
    family(
        w,
        "vigil_http_responses_total",
        "counter",
        "HTTP responses by status class.",
    );
    for (class, c) in ["2xx", "3xx", "4xx", "5xx"].iter().zip(&s.responses) {
        let _ = writeln!(
            w,
            "vigil_http_responses_total{{code=\"{class}\"}} {}",
            c.get()
        );
    }

    outputs(w, ctx);

    if let Some(d) = super::api::disk_usage(&ctx.data_dir) {
        gauge(
            w,
            "vigil_data_disk_size_bytes",
            "Size of the file system holding the data directory.",
            d.total_bytes as f64,
        );
        gauge(
            w,
            "vigil_data_disk_free_bytes",
            "Free bytes on the file system holding the data directory.",
            d.free_bytes as f64,
        );
    }
    out
}

/// Snapshots, the event store and the upstreams.
fn outputs(w: &mut String, ctx: &WebContext) {
    let o = &ctx.registry.outputs;
    let load = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed) as f64;
    gauge(
        w,
        "vigil_store_up",
        "1 when the event store is open and its last commit worked.",
        match &ctx.store {
            Some(s) if s.last_error().is_empty() => 1.0,
            _ => 0.0,
        },
    );
    if let Some(store) = &ctx.store {
        let t = store.totals();
        gauge(
            w,
            "vigil_store_events",
            "Events in the store.",
            t.events as f64,
        );
        gauge(
            w,
            "vigil_store_used_bytes",
            "Quota bytes the store's events and snapshots use.",
            t.bytes as f64,
        );
        gauge(
            w,
            "vigil_store_quota_bytes",
            "The store's byte quota (store.max_bytes).",
            store.limits().max_bytes as f64,
        );
        let c = &store.counters;
        counter(
            w,
            "vigil_store_events_written_total",
            "Events committed to the store.",
            load(&c.written),
        );
        counter(
            w,
            "vigil_store_events_deleted_total",
            "Events deleted by retention (bytes, count or age).",
            load(&c.deleted),
        );
        counter(
            w,
            "vigil_store_events_lost_total",
            "Events lost because a commit failed (full or failing disk).",
            load(&c.lost),
        );
        family(
            w,
            "vigil_upstream_pending_events",
            "gauge",
            "Events waiting in the outbox for delivery.",
        );
        for sink in crate::store::Sink::ALL {
            let _ = writeln!(
                w,
                "vigil_upstream_pending_events{{upstream=\"{}\"}} {}",
                sink.as_str(),
                t.outbox_events[sink as usize]
            );
        }
        family(
            w,
            "vigil_upstream_pending_bytes",
            "gauge",
            "Bytes of the events waiting in the outbox.",
        );
        for sink in crate::store::Sink::ALL {
            let _ = writeln!(
                w,
                "vigil_upstream_pending_bytes{{upstream=\"{}\"}} {}",
                sink.as_str(),
                t.outbox_bytes[sink as usize]
            );
        }
        family(
            w,
            "vigil_upstream_dropped_total",
            "counter",
            "Undelivered events dropped (outbox quota or retention).",
        );
        for sink in crate::store::Sink::ALL {
            let _ = writeln!(
                w,
                "vigil_upstream_dropped_total{{upstream=\"{}\"}} {}",
                sink.as_str(),
                t.outbox_dropped[sink as usize]
            );
        }
    }
    family(
        w,
        "vigil_snapshots_total",
        "counter",
        "Event snapshots by outcome.",
    );
    for (result, v) in [
        ("written", o.snapshots_written.get()),
        ("failed", o.snapshots_failed.get()),
        ("pool_empty", o.snapshot_pool_empty.get()),
    ] {
        let _ = writeln!(w, "vigil_snapshots_total{{result=\"{result}\"}} {v}");
    }
    counter(
        w,
        "vigil_event_queue_dropped_total",
        "Events dropped because the events thread's queue was full.",
        o.jobs_dropped.get() as f64,
    );
    type Pick = fn(&crate::metrics::UpstreamMetrics) -> f64;
    let families: [(&str, &str, &str, Pick); 6] = [
        (
            "vigil_upstream_up",
            "gauge",
            "1 when the last delivery attempt succeeded.",
            |m| m.up.get(),
        ),
        (
            "vigil_upstream_delivered_total",
            "counter",
            "Events delivered and acknowledged.",
            |m| m.delivered.get() as f64,
        ),
        (
            "vigil_upstream_failures_total",
            "counter",
            "Delivery attempts that failed and are retried.",
            |m| m.failures.get() as f64,
        ),
        (
            "vigil_upstream_rejected_total",
            "counter",
            "Events given up on after the upstream refused them.",
            |m| m.rejected.get() as f64,
        ),
        (
            "vigil_upstream_clips_delivered_total",
            "counter",
            "Clips delivered (record.upstream = upload): uploaded over HTTP, announced over MQTT.",
            |m| m.clips_delivered.get() as f64,
        ),
        (
            "vigil_upstream_clip_failures_total",
            "counter",
            "Clip delivery attempts that failed (retried or given up).",
            |m| m.clip_failures.get() as f64,
        ),
    ];
    for (name, kind, help, pick) in families {
        family(w, name, kind, help);
        for sink in crate::store::Sink::ALL {
            let m = &o.upstream[sink as usize];
            let _ = writeln!(w, "{name}{{upstream=\"{}\"}} {}", sink.as_str(), pick(m));
        }
    }
}

fn family(w: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(w, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

fn gauge(w: &mut String, name: &str, help: &str, v: f64) {
    family(w, name, "gauge", help);
    let _ = writeln!(w, "{name} {v}");
}

/// `s` escaped for a label value (backslash, double quote, newline).
fn label_value(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn counter(w: &mut String, name: &str, help: &str, v: f64) {
    family(w, name, "counter", help);
    let _ = writeln!(w, "{name} {v}");
}

fn camera_counter<'a>(
    w: &mut String,
    cameras: impl Iterator<Item = &'a std::sync::Arc<CameraMetrics>>,
    name: &str,
    help: &str,
    pick: fn(&CameraMetrics) -> u64,
) {
    family(w, name, "counter", help);
    for c in cameras {
        let _ = writeln!(w, "{name}{{camera=\"{}\"}} {}", c.name, pick(c));
    }
}
