//! The metrics registry: every count and gauge vigil exposes, in one place.
//!
//! Everything here is created at start (one [`CameraMetrics`] per configured
//! camera) and updated with relaxed atomics from the pipeline threads, so
//! recording a measurement never allocates or blocks a frame. The web layer
//! reads the registry to render the status page, the JSON API and the
//! Prometheus exposition (from the one table of families in
//! `web/families.rs`); nothing in this module knows about HTTP.
//!
//! **Invariant:** metrics knows nothing of sources, the store or the web: it
//! imports only the leaf modules `pool` and `packet`, and whoever measures
//! something converts it into the plain values kept here (e.g.
//! [`V4l2Mode`]).
//!
//! - `values`: [`Counter`], [`Gauge`], [`Histogram`], [`DropCounters`].
//! - `camera`: [`CameraMetrics`] and its state, recording and V4L2 parts.
//! - `outputs`: [`OutputMetrics`], [`UpstreamMetrics`].

mod camera;
mod outputs;
mod values;

pub use camera::{CameraMetrics, CameraState, CameraStatus, RecordMetrics, V4l2Metrics, V4l2Mode};
pub use outputs::{OutputMetrics, UpstreamMetrics};
pub use values::{
    Counter, DropCounters, DropReason, Gauge, Histogram, HistogramSnapshot, LATENCY_BUCKETS,
};

use crate::pool::PoolStats;
use std::sync::Arc;

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
