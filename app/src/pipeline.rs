//! The running appliance: every pool, queue and thread, created once from the
//! configuration and torn down in order.
//!
//! ```text
//! source task (tokio) --PacketSink--> packet queue --> decoder thread (1 per camera)
//!   --Sampler--> frame pool --> frame queue --> inference workers (fixed N)
//!   --> Tracker --> EventRing (+ log, SSE)
//!                   --> snapshot pool --> job queue --> events thread (1)
//!                         --> snapshot files + store batch --> outbox --> upstream tasks
//! decoder thread --copy--> pre-roll ring (1 per camera) <-- events open clips
//!   --> clip writer thread (1) --> clips/<id>.mp4 (quota in the store)
//! ```
//!
//! Threads are fixed at start: `io_threads` tokio workers plus the runtime's
//! one blocking thread (spawned here, kept alive forever), one decoder thread
//! per camera, `detector.workers` inference threads, one events thread and one clip
//! writer thread (when the store opened), and the caller's thread running the monitor. Nothing here spawns a thread or task per frame, event
//! or reconnect: a source reconnects inside its own task.

use crate::alloc_count;
use crate::config::{CameraConfig, Config};
use crate::decode::{self, DecodeError, Decoder, Picture};
use crate::detect::{Detections, Detector};
use crate::events::{Event, EventRing, Tracker};
use crate::frame::{Frame, FrameBuf};
use crate::hw::Backend;
use crate::metrics::{CameraMetrics, CameraState, DropReason, Registry};
use crate::packet::{Codec, PacketBuf};
use crate::pool::Pool;
use crate::procstat::ProcSample;
use crate::queue::{BoundedQueue, PopError, WhenFull};
use crate::record::recorder::{CameraRecorder, ClipWriter};
use crate::sampler::Sampler;
use crate::shutdown::{self, Shutdown, ShutdownTrigger};
use crate::snapshot::{JpegWriter, SnapshotBuf};
use crate::source::sink::{PacketQueue, PacketSink};
use crate::source::{self, SourceSpec};
use crate::store::writer::{DrawnBox, EventJob, EventWriter, JobQueue, MAX_BOXES};
use crate::store::{Batch, Store, StoreLimits};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long blocked threads wait before re-checking for shutdown.
const POLL: Duration = Duration::from_millis(200);

/// Decoded frames waiting for an inference worker.
type FrameQueue = BoundedQueue<Frame>;

/// Makes a camera's decoder for a codec (called once per camera and codec,
/// from the camera's decoder thread).
pub type DecoderFactory = Arc<dyn Fn(Codec) -> Result<Box<dyn Decoder>, DecodeError> + Send + Sync>;

/// What the pipeline needs besides the configuration.
pub struct Parts {
    /// Which backends these parts are (for the status and metrics). The
    /// hardware backend's decoded pictures stay in MPP's buffer group; the
    /// software backend's are copied into each camera's frame pool.
    pub backend: Backend,
    /// One detector per inference worker (`config.detector.workers`).
    pub detectors: Vec<Box<dyn Detector>>,
    /// Makes a camera's decoder once its codec is known.
    pub decoder_factory: DecoderFactory,
    /// Which codecs `decoder_factory` can decode.
    pub accepts: fn(Codec) -> bool,
    /// Play file sources at their frame rate (false: as fast as decoded,
    /// for benchmarks and tests).
    pub paced: bool,
}

/// A running pipeline.
pub struct Pipeline {
    /// Every measurement.
    pub registry: Arc<Registry>,
    /// Recent events.
    pub events: Arc<EventRing>,
    /// The event store; `None` when it could not be opened (the reason is
    /// in `store_error`, and events are then kept only in memory).
    pub store: Option<Arc<Store>>,
    /// Why the store could not be opened ("" when it was).
    pub store_error: String,
    trigger: Arc<ShutdownTrigger>,
    runtime: Option<tokio::runtime::Runtime>,
    packet_queues: Vec<Arc<PacketQueue>>,
    frame_queue: Arc<FrameQueue>,
    tensors: Pool<Box<dyn Detector>>,
    decoders: Vec<JoinHandle<()>>,
    workers: Vec<JoinHandle<()>>,
    jobs: Option<Arc<JobQueue>>,
    writer: Option<JoinHandle<()>>,
    clip_writer: Option<JoinHandle<()>>,
    stop_clips: Arc<AtomicBool>,
    started: Instant,
}

/// Why the pipeline could not start.
#[derive(Debug)]
pub struct StartError(pub String);

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for StartError {}

/// The set of class ids a camera reports, as a 256-bit mask.
#[derive(Clone, Copy, Debug, Default)]
struct ClassSet([u64; 4]);

impl ClassSet {
    fn insert(&mut self, id: u16) {
        if let Some(word) = self.0.get_mut(usize::from(id) / 64) {
            *word |= 1 << (id % 64);
        }
    }
    fn contains(&self, id: u16) -> bool {
        self.0
            .get(usize::from(id) / 64)
            .is_some_and(|w| w & (1 << (id % 64)) != 0)
    }
}

/// What an inference worker needs to know about each camera.
struct CameraRoute {
    metrics: Arc<CameraMetrics>,
    classes: ClassSet,
    min_score: f32,
    tracker: Mutex<Tracker>,
    recorder: Option<Arc<CameraRecorder>>,
}

impl Pipeline {
    /// Allocates every pool and starts every thread and source.
    pub fn start(config: &Config, parts: Parts) -> Result<Pipeline, StartError> {
        if parts.detectors.len() != config.detector.workers {
            return Err(StartError(format!(
                "{} detectors for {} workers",
                parts.detectors.len(),
                config.detector.workers
            )));
        }
        let started = Instant::now();
        let (trigger, shutdown) = shutdown::channel();
        let trigger = Arc::new(trigger);
        let mut registry = Registry::new(
            config.cameras.iter().map(|c| c.name.as_str()),
            parts.backend.as_str(),
        );
        let (store, store_error) = match open_store(config) {
            Ok(s) => (Some(Arc::new(s)), String::new()),
            Err(e) => {
                log::error!("{e}; events are kept in memory only");
                (None, e.to_string())
            }
        };
        // Ids continue after the newest stored event, so a restart never
        // reuses one.
        let first_id = store.as_ref().map_or(1, |s| s.totals().last_id + 1);
        let events = Arc::new(EventRing::starting_at(
            config.events.ring_capacity,
            first_id,
        ));

        let total_frames: usize = config.cameras.iter().map(|c| c.frame_pool).sum();
        let frame_queue = Arc::new(FrameQueue::new(total_frames, WhenFull::DropOldest));
        let mut packet_pools = Vec::with_capacity(config.cameras.len());
        let mut packet_queues = Vec::with_capacity(config.cameras.len());
        let mut frame_pools = Vec::with_capacity(config.cameras.len());
        for cam in &config.cameras {
            let packets = Pool::with("packets", cam.packet_pool, || {
                PacketBuf::with_capacity(cam.packet_size)
            });
            let frames = match parts.backend {
                Backend::Software => {
                    FrameStore::Buffers(Pool::with("frames", cam.frame_pool, || {
                        FrameBuf::new(cam.max_width, cam.max_height)
                    }))
                }
                Backend::Hardware => {
                    FrameStore::Tickets(Pool::with("frames", cam.frame_pool, || ()))
                }
            };
            registry.add_pool(&cam.name, Box::new(packets.clone()));
            match &frames {
                FrameStore::Buffers(p) => registry.add_pool(&cam.name, Box::new(p.clone())),
                FrameStore::Tickets(p) => registry.add_pool(&cam.name, Box::new(p.clone())),
            }
            packet_queues.push(Arc::new(PacketQueue::new(
                cam.packet_pool,
                WhenFull::DropNewest,
            )));
            packet_pools.push(packets);
            frame_pools.push(frames);
        }
        // The detectors hold the tensor memory; lending a detector lends its tensors.
        let tensors = Pool::new("tensors", parts.detectors);
        registry.add_pool("", Box::new(tensors.clone()));
        let snapshots = store.as_ref().map(|_| {
            let e = &config.events;
            let pool = Pool::with("snapshots", e.snapshot_pool, || {
                SnapshotBuf::new(e.snapshot_width, e.snapshot_height)
            });
            registry.add_pool("", Box::new(pool.clone()));
            pool
        });
        let jobs = store
            .as_ref()
            .map(|_| Arc::new(JobQueue::new(config.events.queue, WhenFull::DropNewest)));
        let registry = Arc::new(registry);
        // Clips need the store: their files and quota live there.
        let recorders: Vec<Option<Arc<CameraRecorder>>> = registry
            .cameras
            .iter()
            .map(|metrics| {
                if !config.record.enabled {
                    return None;
                }
                if store.is_none() {
                    metrics
                        .record
                        .fail(&metrics.name, "no clips: the event store is not open");
                    return None;
                }
                Some(Arc::new(CameraRecorder::new(
                    &config.record,
                    metrics.clone(),
                )))
            })
            .collect();

        let runtime = build_runtime(config.io_threads)?;
        let mut pipeline = Pipeline {
            registry: registry.clone(),
            events: events.clone(),
            store: store.clone(),
            store_error,
            trigger,
            runtime: None,
            packet_queues: packet_queues.clone(),
            frame_queue: frame_queue.clone(),
            tensors: tensors.clone(),
            decoders: Vec::new(),
            workers: Vec::new(),
            jobs: jobs.clone(),
            writer: None,
            clip_writer: None,
            stop_clips: Arc::new(AtomicBool::new(false)),
            started,
        };

        let routes: Arc<Vec<CameraRoute>> = Arc::new(
            config
                .cameras
                .iter()
                .zip(&registry.cameras)
                .zip(&recorders)
                .map(|((cam, metrics), rec)| {
                    route(cam, metrics.clone(), rec.clone(), &tensors, config)
                })
                .collect(),
        );

        for (i, cam) in config.cameras.iter().enumerate() {
            let metrics = registry.cameras[i].clone();
            let queue = packet_queues[i].clone();
            let sink = PacketSink::new(packet_pools[i].clone(), queue.clone(), metrics.clone());
            let spec = SourceSpec::from_camera(cam, parts.paced);
            let stop = shutdown.clone();
            runtime.spawn(source::run(spec, sink, parts.accepts, stop));

            let ctx = DecodeContext {
                camera: i,
                packets: queue,
                frames: frame_pools[i].clone(),
                frame_queue: frame_queue.clone(),
                metrics,
                sampler: Sampler::new(cam.detect_fps),
                factory: parts.decoder_factory.clone(),
                recorder: recorders[i].clone(),
                started,
            };
            let handle = std::thread::Builder::new()
                .name(format!("vigil-dec-{i}"))
                .spawn(move || ctx.run())
                .map_err(|e| {
                    StartError(format!(
                        "cannot start decoder thread for camera {}: {e}",
                        cam.name
                    ))
                })?;
            pipeline.decoders.push(handle);
        }

        for w in 0..config.detector.workers {
            let ctx = WorkerContext {
                frames: frame_queue.clone(),
                tensors: tensors.clone(),
                routes: routes.clone(),
                registry: registry.clone(),
                events: events.clone(),
                snapshots: snapshots.clone(),
                jobs: jobs.clone(),
                started,
            };
            let handle = std::thread::Builder::new()
                .name(format!("vigil-det-{w}"))
                .spawn(move || ctx.run())
                .map_err(|e| StartError(format!("cannot start inference worker {w}: {e}")))?;
            pipeline.workers.push(handle);
        }
        if let (Some(store), Some(jobs)) = (&store, &jobs) {
            let committed = Arc::new(tokio::sync::Notify::new());
            let writer = EventWriter {
                store: store.clone(),
                jobs: jobs.clone(),
                cameras: config.cameras.iter().map(|c| c.name.clone()).collect(),
                batch: Batch::with_capacity(config.store.batch),
                jpeg: JpegWriter::new(
                    JpegWriter::capacity_for(
                        config.events.snapshot_width,
                        config.events.snapshot_height,
                    ),
                    config.events.snapshot_quality,
                ),
                flush_after: config.store.flush_after,
                metrics: registry.outputs.clone(),
                committed: committed.clone(),
            };
            let handle = std::thread::Builder::new()
                .name("vigil-evt".into())
                .spawn(move || crate::alloc_count::events_scope(|| writer.run()))
                .map_err(|e| StartError(format!("cannot start the events thread: {e}")))?;
            pipeline.writer = Some(handle);
            crate::upstream::spawn_with_clips(
                &runtime,
                &config.upstream,
                if config.record.enabled {
                    config.record.upstream
                } else {
                    crate::config::ClipDelivery::Link
                },
                store.clone(),
                registry.outputs.clone(),
                committed,
                shutdown.clone(),
                JpegWriter::capacity_for(
                    config.events.snapshot_width,
                    config.events.snapshot_height,
                ),
            )
            .map_err(StartError)?;
        }
        if let Some(store) = &store {
            let cams: Vec<Arc<CameraRecorder>> = recorders.iter().flatten().cloned().collect();
            if !cams.is_empty() {
                let writer = ClipWriter::new(
                    &config.record,
                    cams,
                    store.clone(),
                    started,
                    pipeline.stop_clips.clone(),
                );
                let handle = std::thread::Builder::new()
                    .name("vigil-rec".into())
                    // Files and store transactions per fragment: counted
                    // apart from the frame path, like the events thread.
                    .spawn(move || crate::alloc_count::events_scope(|| writer.run()))
                    .map_err(|e| StartError(format!("cannot start the clip writer: {e}")))?;
                pipeline.clip_writer = Some(handle);
            }
        }
        runtime.spawn(stop_on_signal(shutdown, pipeline.trigger.clone()));
        pipeline.runtime = Some(runtime);
        Ok(pipeline)
    }

    /// The async runtime's handle, for the web server's tasks (which then
    /// share the fixed `io_threads` and stop with the pipeline).
    pub fn runtime_handle(&self) -> Option<tokio::runtime::Handle> {
        self.runtime.as_ref().map(|rt| rt.handle().clone())
    }

    /// A handle observing shutdown.
    pub fn shutdown_handle(&self) -> Shutdown {
        self.trigger.subscribe()
    }

    /// Requests shutdown.
    pub fn request_shutdown(&self) {
        self.trigger.trigger();
    }

    /// Refreshes process and rate metrics; call about once a second with the
    /// previous sample.
    pub fn sample(&self, previous: &mut MonitorState) {
        let now = Instant::now();
        let elapsed = now.duration_since(previous.at).as_secs_f64().max(1e-3);
        for (i, cam) in self.registry.cameras.iter().enumerate() {
            let decoded = cam.frames_decoded.get();
            let detected = cam.frames_detected.get();
            if let Some(prev) = previous.cameras.get_mut(i) {
                cam.decode_fps.set((decoded - prev.0) as f64 / elapsed);
                cam.detect_fps.set((detected - prev.1) as f64 / elapsed);
                *prev = (decoded, detected);
            }
        }
        previous.at = now;
        if let Ok(s) = ProcSample::read_self() {
            let p = &self.registry.process;
            p.rss_bytes.set(s.rss_bytes as f64);
            p.rss_peak_bytes.set(s.rss_peak_bytes as f64);
            p.threads.set(s.threads as f64);
            p.open_fds.set(s.open_fds as f64);
            p.cpu_seconds.set(s.cpu_seconds());
            if previous.last.cpu_seconds() > 0.0 {
                let used = (s.cpu_seconds() - previous.last.cpu_seconds()).max(0.0);
                p.cpu_percent.set(100.0 * used / elapsed);
            }
            previous.last = s;
        }
        let counts = alloc_count::process_counts();
        self.registry
            .process
            .heap_allocations
            .set(counts.ours as f64);
        self.registry
            .process
            .engine_heap_allocations
            .set(counts.engine as f64);
    }

    /// Monitor state for [`Pipeline::sample`].
    pub fn monitor_state(&self) -> MonitorState {
        MonitorState {
            at: Instant::now(),
            cameras: vec![(0, 0); self.registry.cameras.len()],
            last: ProcSample::default(),
        }
    }

    /// Whether every decoder and inference thread is still running (none
    /// has panicked or returned): what the watchdog is petted on.
    pub fn threads_alive(&self) -> bool {
        self.decoders
            .iter()
            .chain(&self.workers)
            .chain(&self.writer)
            .chain(&self.clip_writer)
            .all(|h| !h.is_finished())
    }

    /// Time since start.
    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    /// Stops sources, drains the queues and joins every thread.
    pub fn stop(mut self) {
        self.shutdown_inner();
    }

    fn shutdown_inner(&mut self) {
        self.trigger.trigger();
        // Sources stop at their next await; then nothing feeds the decoders.
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_timeout(Duration::from_secs(5));
        }
        for q in &self.packet_queues {
            q.close();
        }
        for h in self.decoders.drain(..) {
            let _ = h.join();
        }
        self.frame_queue.close();
        for h in self.workers.drain(..) {
            let _ = h.join();
        }
        // No unit or event arrives any more: the clip writer closes every
        // open clip, writes out what the rings hold and stops.
        self.stop_clips.store(true, Ordering::Release);
        if let Some(h) = self.clip_writer.take() {
            let _ = h.join();
        }
        // The events thread commits what the workers queued, then stops.
        if let Some(jobs) = &self.jobs {
            jobs.close();
        }
        if let Some(h) = self.writer.take() {
            let _ = h.join();
        }
        // Frames still queued go back to their decoders, and the detectors
        // release their engines (NPU contexts, RGA imports) now, in order,
        // rather than whenever the last Arc goes.
        while let Some(frame) = self.frame_queue.try_pop() {
            drop(frame);
        }
        self.tensors.release_free();
        for cam in &self.registry.cameras {
            cam.set_state(CameraState::Stopped, "");
        }
    }
}

impl Drop for Pipeline {
    fn drop(&mut self) {
        if self.runtime.is_some() || !self.decoders.is_empty() {
            self.shutdown_inner();
        }
    }
}

/// Between-sample memory of the monitor.
pub struct MonitorState {
    at: Instant,
    cameras: Vec<(u64, u64)>,
    /// The last process reading.
    pub last: ProcSample,
}

fn open_store(config: &Config) -> Result<Store, crate::store::StoreError> {
    let limits = StoreLimits {
        max_bytes: config.store.max_bytes,
        max_events: config.store.max_events,
        max_age: config.store.max_age,
        outbox_max_bytes: config.upstream.outbox_max_bytes,
        cache_bytes: config.store.cache as usize,
    };
    let sinks = [
        config.upstream.http.is_some(),
        config.upstream.mqtt.is_some(),
    ];
    crate::record::recorder::repair_clips(&config.data_dir.join(crate::store::CLIP_DIR));
    Store::open(&config.data_dir, limits, sinks)
}

fn route(
    cam: &CameraConfig,
    metrics: Arc<CameraMetrics>,
    recorder: Option<Arc<CameraRecorder>>,
    tensors: &Pool<Box<dyn Detector>>,
    config: &Config,
) -> CameraRoute {
    let mut classes = ClassSet::default();
    if let Some(det) = tensors.try_take() {
        for name in &cam.classes {
            if let Some(id) = det.class_id(name) {
                classes.insert(id);
            }
        }
    }
    CameraRoute {
        metrics,
        classes,
        min_score: cam.min_score,
        tracker: Mutex::new(Tracker::new(config.events.track_timeout)),
        recorder,
    }
}

fn build_runtime(io_threads: usize) -> Result<tokio::runtime::Runtime, StartError> {
    let n = AtomicUsize::new(0);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(io_threads)
        // One blocking thread (hostname lookups), started now and never
        // retired, so the thread count does not move later.
        .max_blocking_threads(1)
        .thread_keep_alive(Duration::from_secs(100 * 365 * 86_400))
        .thread_name_fn(move || format!("vigil-io-{}", n.fetch_add(1, Ordering::Relaxed)))
        .enable_all()
        .build()
        .map_err(|e| StartError(format!("cannot start the async runtime: {e}")))?;
    rt.block_on(async { tokio::task::spawn_blocking(|| ()).await })
        .map_err(|e| StartError(format!("cannot start the blocking thread: {e}")))?;
    Ok(rt)
}

async fn stop_on_signal(mut shutdown: Shutdown, trigger: Arc<ShutdownTrigger>) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        log::error!("cannot install signal handlers; stop with SIGKILL");
        return;
    };
    tokio::select! {
        _ = term.recv() => log::info!("SIGTERM: shutting down"),
        _ = int.recv() => log::info!("SIGINT: shutting down"),
        _ = shutdown.requested() => return,
    }
    trigger.trigger();
}

/// Where a camera's decoded pictures are kept while they wait for a worker.
#[derive(Clone)]
enum FrameStore {
    /// Buffers the software decoder's pictures are copied into.
    Buffers(Pool<FrameBuf>),
    /// Tickets bounding how many MPP frames the pipeline holds.
    Tickets(Pool<()>),
}

struct DecodeContext {
    camera: usize,
    packets: Arc<PacketQueue>,
    frames: FrameStore,
    frame_queue: Arc<FrameQueue>,
    metrics: Arc<CameraMetrics>,
    sampler: Sampler,
    factory: DecoderFactory,
    recorder: Option<Arc<CameraRecorder>>,
    started: Instant,
}

impl DecodeContext {
    fn run(mut self) {
        // Created on the first packet, when the codec is known, then kept for
        // the life of the process and reset on every discontinuity.
        let mut decoder: Option<(Codec, Box<dyn Decoder>)> = None;
        let mut size = (0u32, 0u32);
        let mut unusable = false;
        // A codec the factory refused is not asked for again: otherwise every
        // packet would retry it and format the same error.
        let mut refused: Option<Codec> = None;
        loop {
            let packet = match self.packets.pop_timeout(POLL) {
                Ok(p) => p,
                Err(PopError::Timeout) => continue,
                Err(PopError::Closed) => break,
            };
            if let Some(rec) = &self.recorder {
                rec.on_packet(&packet, self.started.elapsed().as_millis() as u64);
            }
            if refused == Some(packet.codec) {
                self.metrics.packets_dropped.inc(DropReason::DecodeError);
                continue;
            }
            if decoder.as_ref().is_none_or(|(c, _)| *c != packet.codec) {
                match (self.factory)(packet.codec) {
                    Ok(d) => decoder = Some((packet.codec, d)),
                    Err(e) => {
                        refused = Some(packet.codec);
                        self.metrics.set_state(CameraState::Error, &e.to_string());
                        self.metrics.packets_dropped.inc(DropReason::DecodeError);
                        continue;
                    }
                }
            }
            let Some((codec, dec)) = decoder.as_mut() else {
                continue;
            };
            if packet.discontinuity {
                dec.reset();
                self.sampler.reset();
                unusable = false;
            }
            let codec = *codec;
            let ctx = &mut self;
            let result = dec.decode(&packet, &mut |pic| {
                ctx.metrics.frames_decoded.inc();
                if pic.size() != size {
                    size = pic.size();
                    ctx.metrics.set_format(codec, size.0, size.1);
                }
                if unusable || !ctx.sampler.take(pic.pts_us) {
                    ctx.metrics.frames_dropped.inc(DropReason::Sampling);
                    return;
                }
                let frame = match (&ctx.frames, pic.image) {
                    (FrameStore::Buffers(pool), Picture::Borrowed(image)) => {
                        let Some(mut frame) = pool.try_take() else {
                            ctx.metrics.frames_dropped.inc(DropReason::PoolEmpty);
                            return;
                        };
                        if let Err(e) = frame.copy_from(&image) {
                            unusable = true;
                            ctx.metrics.set_state(CameraState::Error, &e.to_string());
                            ctx.metrics.frames_dropped.inc(DropReason::DecodeError);
                            return;
                        }
                        frame.pts_us = pic.pts_us;
                        frame.camera = ctx.camera;
                        Frame::Cpu(frame)
                    }
                    (FrameStore::Tickets(pool), Picture::Mpp(picture)) => {
                        // Without a ticket the picture drops here and its
                        // frame goes straight back to the decoder.
                        let Some(ticket) = pool.try_take() else {
                            ctx.metrics.frames_dropped.inc(DropReason::PoolEmpty);
                            return;
                        };
                        Frame::Mpp {
                            picture,
                            camera: ctx.camera,
                            ticket,
                        }
                    }
                    _ => {
                        // A decoder of the other backend: cannot happen, as
                        // the parts come in matching pairs; counted if it does.
                        ctx.metrics.frames_dropped.inc(DropReason::DecodeError);
                        return;
                    }
                };
                if let Some(old) = ctx.frame_queue.push(frame) {
                    drop(old);
                    ctx.metrics.frames_dropped.inc(DropReason::QueueFull);
                }
            });
            if let Err(e) = result {
                self.metrics.packets_dropped.inc(DropReason::DecodeError);
                log::debug!("camera {}: {e}", self.metrics.name);
            }
        }
    }
}

struct WorkerContext {
    frames: Arc<FrameQueue>,
    tensors: Pool<Box<dyn Detector>>,
    routes: Arc<Vec<CameraRoute>>,
    registry: Arc<Registry>,
    events: Arc<EventRing>,
    snapshots: Option<Pool<SnapshotBuf>>,
    jobs: Option<Arc<JobQueue>>,
    started: Instant,
}

impl WorkerContext {
    /// Queues event `event` for the events thread with a copy of the
    /// picture (when a snapshot buffer is free) and the boxes to draw.
    fn queue_job(
        &self,
        event: Event,
        clip: Option<u64>,
        image: &crate::image::ImageRef<'_>,
        detections: &Detections,
        own: &crate::detect::Detection,
        detector: &dyn Detector,
    ) {
        let Some(jobs) = &self.jobs else { return };
        let outputs = &self.registry.outputs;
        let snapshot = self.snapshots.as_ref().and_then(|pool| {
            let Some(mut buf) = pool.try_take() else {
                outputs.snapshot_pool_empty.inc();
                return None;
            };
            match buf.copy_from(image) {
                Ok(()) => Some(buf),
                Err(e) => {
                    outputs.snapshots_failed.inc();
                    log::debug!("event {}: no snapshot: {e}", event.id);
                    None
                }
            }
        });
        let mut boxes = heapless::Vec::<DrawnBox, MAX_BOXES>::new();
        let drawn = |d: &crate::detect::Detection| DrawnBox {
            bbox: d.bbox,
            label: detector.class_name(d.class_id),
            score: d.score,
        };
        let _ = boxes.push(drawn(own));
        for d in detections.iter().filter(|d| !std::ptr::eq(*d, own)) {
            if boxes.push(drawn(d)).is_err() {
                break;
            }
        }
        if jobs
            .push(EventJob {
                event,
                clip,
                snapshot,
                boxes,
            })
            .is_some()
        {
            outputs.jobs_dropped.inc();
        }
    }

    fn run(self) {
        let mut detections = Detections::new();
        loop {
            let frame = match self.frames.pop_timeout(POLL) {
                Ok(f) => f,
                Err(PopError::Timeout) => continue,
                Err(PopError::Closed) => break,
            };
            let Some(mut detector) = self.tensors.try_take() else {
                // Cannot happen (one detector per worker); counted if it does.
                self.routes[frame.camera()]
                    .metrics
                    .frames_dropped
                    .inc(DropReason::PoolEmpty);
                continue;
            };
            let route = &self.routes[frame.camera()];
            let t0 = Instant::now();
            let image = frame.image();
            let result = detector.detect(image, route.min_score, &mut detections);
            self.registry.inference_latency.observe(t0.elapsed());
            if let Err(e) = result {
                log::error!("camera {}: {e}", route.metrics.name);
                continue;
            }
            route.metrics.frames_detected.inc();
            detections.retain(|d| route.classes.contains(d.class_id));
            route.metrics.detections.add(detections.len() as u64);
            let now_ms = self.started.elapsed().as_millis() as u64;
            let unix_ms = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as i64);
            let mut tracker = route.tracker.lock().unwrap_or_else(PoisonError::into_inner);
            tracker.update(&detections, now_ms, |d| {
                let mut event = Event {
                    id: 0,
                    camera: frame.camera(),
                    unix_ms,
                    pts_us: frame.pts_us(),
                    class_id: d.class_id,
                    class_name: detector.class_name(d.class_id),
                    score: d.score,
                    bbox: d.bbox,
                };
                let id = self.events.push(event);
                event.id = id;
                let clip = route
                    .recorder
                    .as_ref()
                    .and_then(|r| r.on_event(id, event.pts_us, now_ms));
                self.queue_job(event, clip, &image, &detections, d, &**detector);
                route.metrics.events.inc();
                let (w, h) = image.size();
                let (w, h) = (w as f32, h as f32);
                log::info!(
                    "event {id}: camera {} saw {} ({:.2}) at [{:.0}, {:.0}, {:.0}, {:.0}]",
                    route.metrics.name,
                    detector.class_name(d.class_id),
                    d.score,
                    d.bbox.x0 * w,
                    d.bbox.y0 * h,
                    d.bbox.x1 * w,
                    d.bbox.y1 * h
                );
            });
        }
    }
}

/// The parts for this machine: software decoding, the given CPU detectors.
pub fn software_parts(detectors: Vec<Box<dyn Detector>>, paced: bool) -> Parts {
    Parts {
        backend: Backend::Software,
        detectors,
        decoder_factory: Arc::new(decode::openh264::new_software_decoder),
        accepts: decode::openh264::software_accepts,
        paced,
    }
}

/// The parts for an RK3588: MPP decoding into groups of `decoder_buffers`
/// frames per camera, and the given detectors (NPU or CPU).
pub fn hardware_parts(
    mpp: Arc<crate::hw::mpp_sys::MppLib>,
    decoder_buffers: usize,
    detectors: Vec<Box<dyn Detector>>,
    paced: bool,
) -> Parts {
    Parts {
        backend: Backend::Hardware,
        detectors,
        decoder_factory: Arc::new(move |codec| {
            let decoder = decode::mpp::MppVideoDecoder::new(mpp.clone(), codec, decoder_buffers)?;
            Ok(Box::new(decoder) as Box<dyn Decoder>)
        }),
        // MPP decodes both codecs vigil's sources deliver.
        accepts: |_| true,
        paced,
    }
}
