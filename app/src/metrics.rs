//! The metrics registry: every count and gauge vigil exposes, in one place.
//!
//! Everything here is created at start (one [`CameraMetrics`] per configured
//! camera) and updated with relaxed atomics from the pipeline threads, so
//! recording a measurement never allocates or blocks a frame. The web layer
//! reads the registry to render the status page, the JSON API and the
//! Prometheus exposition; nothing in this module knows about HTTP.

use crate::packet::Codec;
use crate::pool::PoolStats;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

/// A monotonically increasing count.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds one.
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    /// Adds `n`.
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    /// The current count.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A value that goes up and down; stored as f64 bits.
#[derive(Debug, Default)]
pub struct Gauge(AtomicU64);

impl Gauge {
    /// Sets the value.
    pub fn set(&self, v: f64) {
        self.0.store(v.to_bits(), Ordering::Relaxed);
    }
    /// The current value.
    pub fn get(&self) -> f64 {
        f64::from_bits(self.0.load(Ordering::Relaxed))
    }
}

/// Upper bounds (seconds) of the inference latency histogram buckets; the
/// implicit last bucket is +Inf. Spans NPU (a few ms) to emulated CPU (s).
pub const LATENCY_BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.02, 0.035, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5,
];

/// A fixed-bucket histogram of durations.
#[derive(Debug, Default)]
pub struct Histogram {
    // Non-cumulative counts per bucket; the last is +Inf.
    buckets: [AtomicU64; LATENCY_BUCKETS.len() + 1],
    sum_micros: AtomicU64,
    count: AtomicU64,
}

/// A consistent-enough copy of a [`Histogram`] for rendering.
#[derive(Clone, Debug, PartialEq)]
pub struct HistogramSnapshot {
    /// Cumulative counts for each bound of [`LATENCY_BUCKETS`], then +Inf.
    pub cumulative: [u64; LATENCY_BUCKETS.len() + 1],
    /// Sum of observations in seconds.
    pub sum_seconds: f64,
    /// Number of observations.
    pub count: u64,
}

impl Histogram {
    /// Records one duration.
    pub fn observe(&self, d: std::time::Duration) {
        let secs = d.as_secs_f64();
        let i = LATENCY_BUCKETS
            .iter()
            .position(|&b| secs <= b)
            .unwrap_or(LATENCY_BUCKETS.len());
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.sum_micros
            .fetch_add(d.as_micros() as u64, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// Cumulative bucket counts, sum and count.
    pub fn snapshot(&self) -> HistogramSnapshot {
        let mut cumulative = [0u64; LATENCY_BUCKETS.len() + 1];
        let mut running = 0;
        for (out, b) in cumulative.iter_mut().zip(&self.buckets) {
            running += b.load(Ordering::Relaxed);
            *out = running;
        }
        HistogramSnapshot {
            cumulative,
            sum_seconds: self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6,
            count: running,
        }
    }
}

/// Why a packet or frame was thrown away; each has its own counter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DropReason {
    /// The pool had nothing to lend.
    PoolEmpty,
    /// An access unit larger than a packet buffer.
    Oversize,
    /// Waiting for a key frame after a discontinuity.
    AwaitingKeyframe,
    /// The decoder rejected the data.
    DecodeError,
    /// A queue between stages was full.
    QueueFull,
    /// Not needed at the configured detection rate (not an error).
    Sampling,
}

impl DropReason {
    /// Every reason, in label order.
    pub const ALL: [DropReason; 6] = [
        DropReason::PoolEmpty,
        DropReason::Oversize,
        DropReason::AwaitingKeyframe,
        DropReason::DecodeError,
        DropReason::QueueFull,
        DropReason::Sampling,
    ];

    /// The Prometheus label value.
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::PoolEmpty => "pool_empty",
            DropReason::Oversize => "oversize",
            DropReason::AwaitingKeyframe => "awaiting_keyframe",
            DropReason::DecodeError => "decode_error",
            DropReason::QueueFull => "queue_full",
            DropReason::Sampling => "sampling",
        }
    }
}

/// Per-reason drop counters.
#[derive(Debug, Default)]
pub struct DropCounters([Counter; DropReason::ALL.len()]);

impl DropCounters {
    /// Counts one drop.
    pub fn inc(&self, why: DropReason) {
        self.0[why as usize].inc();
    }
    /// Drops counted for `why`.
    pub fn get(&self, why: DropReason) -> u64 {
        self.0[why as usize].get()
    }
    /// Drops for every reason but [`DropReason::Sampling`].
    pub fn lost(&self) -> u64 {
        DropReason::ALL
            .iter()
            .filter(|r| **r != DropReason::Sampling)
            .map(|r| self.get(*r))
            .sum()
    }
}

/// Where a camera is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CameraState {
    /// Opening its source (or waiting to retry).
    Connecting,
    /// Receiving and decoding.
    Streaming,
    /// Stopped by an error it cannot retry past (the reason says which).
    Error,
    /// Shut down.
    Stopped,
}

impl CameraState {
    /// Lower-case name for status output and labels.
    pub fn as_str(self) -> &'static str {
        match self {
            CameraState::Connecting => "connecting",
            CameraState::Streaming => "streaming",
            CameraState::Error => "error",
            CameraState::Stopped => "stopped",
        }
    }
}

/// A camera's state with its context, for status pages and logs.
#[derive(Clone, Debug, PartialEq)]
pub struct CameraStatus {
    /// The state.
    pub state: CameraState,
    /// Why it is in it (the last error while connecting or in error).
    pub reason: String,
    /// The stream's codec once known.
    pub codec: Option<Codec>,
    /// Decoded picture size once known.
    pub width: u32,
    /// Decoded picture height once known.
    pub height: u32,
}

/// Everything measured for one camera.
#[derive(Debug)]
pub struct CameraMetrics {
    /// The camera's configured name (the `camera` label).
    pub name: String,
    /// Access units received from the source.
    pub packets_received: Counter,
    /// Payload bytes received.
    pub bytes_received: Counter,
    /// Access units thrown away, by reason.
    pub packets_dropped: DropCounters,
    /// Pictures out of the decoder.
    pub frames_decoded: Counter,
    /// Decoded pictures not detected on, by reason.
    pub frames_dropped: DropCounters,
    /// Pictures the detector ran on.
    pub frames_detected: Counter,
    /// Objects detected (of reported classes, above threshold).
    pub detections: Counter,
    /// Events raised.
    pub events: Counter,
    /// Source sessions opened after the first.
    pub reconnects: Counter,
    /// Decode fps over the last second (set by the monitor).
    pub decode_fps: Gauge,
    /// Detection fps over the last second (set by the monitor).
    pub detect_fps: Gauge,
    /// The camera's clips.
    pub record: RecordMetrics,
    /// The V4L2 device and mode (V4L2 cameras only).
    pub v4l2: V4l2Metrics,
    status: Mutex<CameraStatus>,
}

/// A V4L2 camera's device and the mode it negotiated.
#[derive(Debug, Default)]
pub struct V4l2Metrics {
    /// The device node; empty for cameras of other kinds.
    device: Mutex<String>,
    mode: Mutex<Option<crate::source::v4l2::Mode>>,
    /// Frames the driver captured but dropped for want of a free buffer
    /// (gaps in its sequence numbers).
    pub driver_dropped: Counter,
}

impl V4l2Metrics {
    /// Marks the camera as a V4L2 one on `device` (at start).
    pub fn set_device(&self, device: &str) {
        let mut d = self.device.lock().unwrap_or_else(PoisonError::into_inner);
        d.clear();
        d.push_str(device);
    }

    /// The device node, when the camera is a V4L2 one.
    pub fn device(&self) -> Option<String> {
        let d = self.device.lock().unwrap_or_else(PoisonError::into_inner);
        (!d.is_empty()).then(|| d.clone())
    }

    /// Records the mode the device confirmed (at each open).
    pub fn set_mode(&self, mode: &crate::source::v4l2::Mode) {
        let mut m = self.mode.lock().unwrap_or_else(PoisonError::into_inner);
        *m = Some(mode.clone());
    }

    /// The mode of the last open, if the device was ever opened.
    pub fn mode(&self) -> Option<crate::source::v4l2::Mode> {
        self.mode
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// One camera's recording (`crate::record`).
#[derive(Debug, Default)]
pub struct RecordMetrics {
    /// Clips opened by an event.
    pub clips_opened: Counter,
    /// Clips finished and linked in the store.
    pub clips_finished: Counter,
    /// Clips cut short: the writer fell behind the ring, the stream
    /// restarted, too many clips were waiting, or the disk refused.
    pub clips_truncated: Counter,
    /// Access units written into clips.
    pub units_written: Counter,
    /// Bytes written into clip files.
    pub bytes_written: Counter,
    /// Clip writes that failed (disk full, read-only, quota).
    pub write_errors: Counter,
    /// Units the pre-roll ring refused (larger than the ring, or a group of
    /// pictures longer than it holds).
    pub ring_refused: Counter,
    /// 1 while a clip is open or being written.
    pub recording: Gauge,
    /// Bytes of compressed stream the ring holds.
    pub ring_bytes: Gauge,
    /// Stream seconds the ring holds (the pre-roll it can give).
    pub ring_seconds: Gauge,
    /// The last write error ("" once a clip was written since).
    pub last_error: Mutex<String>,
}

impl RecordMetrics {
    /// Records a write failure: counted, shown on the status page, logged
    /// once per distinct message.
    pub fn fail(&self, camera: &str, reason: &str) {
        self.write_errors.inc();
        let mut e = self
            .last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if *e != reason {
            log::error!("camera {camera}: recording: {reason}");
            e.clear();
            e.push_str(reason);
        }
    }

    /// Clears the error after a clip was written.
    pub fn ok(&self) {
        self.last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }

    /// The last write error.
    pub fn error(&self) -> String {
        self.last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl CameraMetrics {
    /// Fresh metrics for camera `name`, in state connecting.
    pub fn new(name: &str) -> Self {
        CameraMetrics {
            name: name.to_owned(),
            packets_received: Counter::default(),
            bytes_received: Counter::default(),
            packets_dropped: DropCounters::default(),
            frames_decoded: Counter::default(),
            frames_dropped: DropCounters::default(),
            frames_detected: Counter::default(),
            detections: Counter::default(),
            events: Counter::default(),
            reconnects: Counter::default(),
            decode_fps: Gauge::default(),
            detect_fps: Gauge::default(),
            record: RecordMetrics::default(),
            v4l2: V4l2Metrics::default(),
            status: Mutex::new(CameraStatus {
                state: CameraState::Connecting,
                reason: String::new(),
                codec: None,
                width: 0,
                height: 0,
            }),
        }
    }

    /// Moves to `state` for `reason`, logging the change once (repeats of the
    /// same state and reason are silent, so a retry loop does not flood logs).
    pub fn set_state(&self, state: CameraState, reason: &str) {
        let mut s = self.status.lock().unwrap_or_else(PoisonError::into_inner);
        if s.state == state && s.reason == reason {
            return;
        }
        match state {
            CameraState::Error => {
                log::error!("camera {}: {}: {}", self.name, state.as_str(), reason)
            }
            _ if reason.is_empty() => log::info!("camera {}: {}", self.name, state.as_str()),
            _ => log::warn!("camera {}: {}: {}", self.name, state.as_str(), reason),
        }
        s.state = state;
        s.reason.clear();
        s.reason.push_str(reason);
    }

    /// Records the stream's codec and picture size (on the decoder thread,
    /// only when they change).
    pub fn set_format(&self, codec: Codec, width: u32, height: u32) {
        let mut s = self.status.lock().unwrap_or_else(PoisonError::into_inner);
        s.codec = Some(codec);
        s.width = width;
        s.height = height;
    }

    /// Records a V4L2 mode's picture size (and codec, for H.264 cameras;
    /// raw and MJPEG pictures have none).
    pub fn set_format_of(&self, mode: &crate::source::v4l2::Mode) {
        let mut s = self.status.lock().unwrap_or_else(PoisonError::into_inner);
        s.codec = (mode.format == crate::source::v4l2::PixelFormat::H264).then_some(Codec::H264);
        s.width = mode.width;
        s.height = mode.height;
    }

    /// A copy of the current status.
    pub fn status(&self) -> CameraStatus {
        self.status
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// A source of pool counters (pools are generic over their item type).
pub trait PoolGauge: Send + Sync {
    /// The pool's counters now.
    fn stats(&self) -> PoolStats;
}

impl<T: Send> PoolGauge for crate::pool::Pool<T> {
    fn stats(&self) -> PoolStats {
        crate::pool::Pool::stats(self)
    }
}

/// A pool with the camera it belongs to ("" for shared pools).
pub struct LabelledPool {
    /// The owning camera's name, or empty.
    pub camera: String,
    /// The pool.
    pub pool: Box<dyn PoolGauge>,
}

/// Process-wide readings, refreshed by the monitor thread.
#[derive(Debug, Default)]
pub struct ProcessMetrics {
    /// Resident set size in bytes.
    pub rss_bytes: Gauge,
    /// Peak resident set size in bytes.
    pub rss_peak_bytes: Gauge,
    /// Threads in the process.
    pub threads: Gauge,
    /// Open file descriptors.
    pub open_fds: Gauge,
    /// CPU seconds (user + system) used so far.
    pub cpu_seconds: Gauge,
    /// CPU use over the last sample, in percent of one core.
    pub cpu_percent: Gauge,
    /// Heap allocations made outside the inference engine.
    pub heap_allocations: Gauge,
    /// Heap allocations made inside the inference engine.
    pub engine_heap_allocations: Gauge,
}

/// The registry handed to every component and to the web layer.
pub struct Registry {
    /// One entry per configured camera, in config order.
    pub cameras: Vec<Arc<CameraMetrics>>,
    /// Time spent in the detector per picture.
    pub inference_latency: Histogram,
    /// Events dropped from the in-memory ring because it was full.
    pub events_evicted: Counter,
    /// Process readings.
    pub process: ProcessMetrics,
    /// The memory budget computed from the configuration, in bytes.
    pub memory_budget_bytes: Gauge,
    /// The configured memory limit, in bytes.
    pub memory_limit_bytes: Gauge,
    /// Which backend runs decode and detection ("software" or "hardware").
    pub backend: &'static str,
    /// Snapshots, the store and the upstreams.
    pub outputs: Arc<OutputMetrics>,
    pools: Vec<LabelledPool>,
}

/// Counters of what happens to events after detection.
#[derive(Debug, Default)]
pub struct OutputMetrics {
    /// Snapshot files written.
    pub snapshots_written: Counter,
    /// Snapshots that could not be encoded or written (the event is stored
    /// without one).
    pub snapshots_failed: Counter,
    /// Events that found the snapshot pool empty (stored without one).
    pub snapshot_pool_empty: Counter,
    /// Events dropped because the events thread's queue was full.
    pub jobs_dropped: Counter,
    /// Events the events thread could not add to a batch.
    pub events_not_stored: Counter,
    /// Per upstream, indexed like `store::Sink`.
    pub upstream: [UpstreamMetrics; 2],
}

/// One upstream's delivery state.
#[derive(Debug, Default)]
pub struct UpstreamMetrics {
    /// Events delivered (acknowledged by the upstream).
    pub delivered: Counter,
    /// Delivery attempts that failed and will be retried.
    pub failures: Counter,
    /// Events given up on after the upstream refused them repeatedly.
    pub rejected: Counter,
    /// 1 while the last attempt succeeded, 0 after a failure.
    pub up: Gauge,
    /// Clips delivered (`record.upstream = "upload"`): uploaded over HTTP,
    /// announced over MQTT.
    pub clips_delivered: Counter,
    /// Clip delivery attempts that failed (retried, or given up after the
    /// upstream refused the clip `max_attempts` times).
    pub clip_failures: Counter,
    /// The configured target ("" when this upstream is not configured).
    pub target: Mutex<String>,
    /// The last failure ("" after a success).
    pub last_error: Mutex<String>,
}

impl UpstreamMetrics {
    /// Records a failure and its reason.
    pub fn fail(&self, reason: &str) {
        self.failures.inc();
        self.up.set(0.0);
        let mut e = self
            .last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        e.clear();
        e.push_str(reason);
    }

    /// Records a success.
    pub fn succeed(&self) {
        self.delivered.inc();
        self.up.set(1.0);
        self.last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }

    /// Records a failed clip delivery and its reason (the event counters
    /// and `up` are the event drainer's).
    pub fn clip_fail(&self, reason: &str) {
        self.clip_failures.inc();
        let mut e = self
            .last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        e.clear();
        e.push_str(reason);
    }

    /// The configured target and the last error.
    pub fn describe(&self) -> (String, String) {
        (
            self.target
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
            self.last_error
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
        )
    }
}

impl Registry {
    /// A registry for the given camera names.
    pub fn new<'a>(camera_names: impl IntoIterator<Item = &'a str>, backend: &'static str) -> Self {
        Registry {
            cameras: camera_names
                .into_iter()
                .map(|n| Arc::new(CameraMetrics::new(n)))
                .collect(),
            inference_latency: Histogram::default(),
            events_evicted: Counter::default(),
            process: ProcessMetrics::default(),
            memory_budget_bytes: Gauge::default(),
            memory_limit_bytes: Gauge::default(),
            backend,
            outputs: Arc::new(OutputMetrics::default()),
            pools: Vec::new(),
        }
    }

    /// Registers a pool for export (at start, before the registry is shared).
    pub fn add_pool(&mut self, camera: &str, pool: Box<dyn PoolGauge>) {
        self.pools.push(LabelledPool {
            camera: camera.to_owned(),
            pool,
        });
    }

    /// The registered pools.
    pub fn pools(&self) -> &[LabelledPool] {
        &self.pools
    }

    /// The metrics of camera `name`.
    pub fn camera(&self, name: &str) -> Option<&Arc<CameraMetrics>> {
        self.cameras.iter().find(|c| c.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn histogram_buckets_are_cumulative() {
        let h = Histogram::default();
        h.observe(Duration::from_millis(3));
        h.observe(Duration::from_millis(40));
        h.observe(Duration::from_secs(10));
        let s = h.snapshot();
        assert_eq!(s.count, 3);
        assert_eq!(s.cumulative[0], 1); // <= 5 ms
        assert_eq!(s.cumulative[4], 2); // <= 50 ms
        assert_eq!(s.cumulative[LATENCY_BUCKETS.len() - 1], 2);
        assert_eq!(s.cumulative[LATENCY_BUCKETS.len()], 3); // +Inf
        assert!((s.sum_seconds - 10.043).abs() < 1e-6);
    }

    #[test]
    fn drop_counters_separate_sampling_from_loss() {
        let d = DropCounters::default();
        d.inc(DropReason::Sampling);
        d.inc(DropReason::PoolEmpty);
        d.inc(DropReason::PoolEmpty);
        assert_eq!(d.get(DropReason::PoolEmpty), 2);
        assert_eq!(d.lost(), 2);
    }

    #[test]
    fn state_changes_keep_the_reason() {
        let c = CameraMetrics::new("door");
        c.set_state(CameraState::Error, "h265 needs the hardware decoder");
        let s = c.status();
        assert_eq!(s.state, CameraState::Error);
        assert_eq!(s.reason, "h265 needs the hardware decoder");
    }
}
