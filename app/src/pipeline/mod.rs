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
//! V4L2 capture thread (1 per V4L2 camera, in place of the decoder thread)
//!   --convert--> frame pool --> frame queue   (H.264: packet pool --> decoder)
//! ```
//!
//! Threads are fixed at start: `io_threads` tokio workers plus the runtime's
//! one blocking thread (spawned here, kept alive forever), one decoder thread
//! per network or file camera and one capture thread per V4L2 camera,
//! `detector.workers` inference threads, one events thread and one clip
//! writer thread (when a camera records and the store opened), and the
//! caller's thread running the monitor. Nothing here spawns a thread or task
//! per frame, event or reconnect: a source reconnects inside its own task,
//! a V4L2 camera on its own thread.
//!
//! This file is the wiring: [`Pipeline::start`] allocates and starts in a
//! fixed order, one named step each, and [`Pipeline::stop`] tears down in
//! the reverse. The stages live beside it: `decode.rs` (a camera's decoder
//! thread), `v4l2.rs` (a V4L2 camera's capture thread), `infer.rs` (the
//! inference workers), `events.rs` (the events thread), `backend.rs` (which
//! backend, and its detectors and decoders), `monitor.rs` (what the monitor
//! samples) and `error.rs` ([`StartError`]).

pub mod backend;
mod decode;
mod error;
pub mod events;
mod infer;
mod monitor;
mod v4l2;

pub use backend::{hardware_parts, software_parts, DecoderFactory, Parts};
pub use error::{StartError, Thread};
pub use monitor::MonitorState;

use crate::config::Config;
use crate::detect::Detector;
use crate::disk::Disk;
use crate::events::EventRing;
use crate::frame::{Frame, FrameBuf};
use crate::hw::Backend;
use crate::metrics::{CameraState, Registry};
use crate::packet::PacketBuf;
use crate::pool::Pool;
use crate::queue::{BoundedQueue, WhenFull};
use crate::record::recorder::{CameraRecorder, ClipWriter};
use crate::shutdown::{self, Shutdown, ShutdownTrigger};
use crate::snapshot::JpegWriter;
use crate::source::sink::{PacketQueue, PacketSink};
use crate::source::{self, SourceSpec};
use crate::store::{Store, StoreLimits};
use decode::{DecodeStage, FrameStore, StageShared};
use events::{EventBuffers, JobQueue};
use infer::WorkerContext;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long blocked threads wait before re-checking for shutdown.
const POLL: Duration = Duration::from_millis(200);

/// Decoded frames waiting for an inference worker.
type FrameQueue = BoundedQueue<Frame>;

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
    /// The thread the runtime's tasks hand store calls and file reads to.
    pub disk: Arc<Disk>,
    trigger: Arc<ShutdownTrigger>,
    runtime: Option<tokio::runtime::Runtime>,
    packet_queues: Vec<Arc<PacketQueue>>,
    frame_queue: Arc<FrameQueue>,
    tensors: Pool<Box<dyn Detector>>,
    /// Decoder and V4L2 threads; each hands its stage back when joined.
    decoders: Vec<JoinHandle<DecodeStage>>,
    workers: Vec<JoinHandle<()>>,
    jobs: Option<Arc<JobQueue>>,
    writer: Option<JoinHandle<()>>,
    clip_writer: Option<JoinHandle<()>>,
    stop_clips: Arc<AtomicBool>,
    started: Instant,
}

/// Each camera's packet pool, packet queue and frame store, in camera order.
struct CameraPools {
    packets: Vec<Pool<PacketBuf>>,
    queues: Vec<Arc<PacketQueue>>,
    frames: Vec<FrameStore>,
}

impl Pipeline {
    /// Allocates every pool and starts every thread and source.
    pub fn start(config: &Config, mut parts: Parts) -> Result<Pipeline, StartError> {
        if parts.detectors.len() != config.detector.workers {
            return Err(StartError::Workers {
                detectors: parts.detectors.len(),
                workers: config.detector.workers,
            });
        }
        let started = Instant::now();
        let (trigger, shutdown) = shutdown::channel();
        let mut registry = Registry::new(
            config.cameras.iter().map(|c| c.name.as_str()),
            parts.backend.as_str(),
        );
        let (store, store_error) = open_store(config);
        let events = event_ring(config, store.as_deref());
        let frame_queue = Arc::new(FrameQueue::new(
            config.cameras.iter().map(|c| c.frame_pool).sum(),
            WhenFull::DropOldest,
        ));
        let cameras = camera_pools(config, parts.backend, &mut registry);
        // The detectors hold the tensor memory; lending a detector lends its tensors.
        let tensors = Pool::new("tensors", std::mem::take(&mut parts.detectors));
        registry.add_pool("", Box::new(tensors.clone()));
        let buffers = store
            .as_ref()
            .map(|_| EventBuffers::new(config, &mut registry));
        let registry = Arc::new(registry);
        let recorders = recorders(config, &registry, store.is_some());
        let runtime = build_runtime(config.io_threads)?;
        let disk =
            Disk::start("vigil-disk", crate::disk::QUEUE).map_err(|source| StartError::Spawn {
                thread: error::Thread::Disk,
                source,
            })?;
        let mut pipeline = Pipeline {
            registry: registry.clone(),
            events: events.clone(),
            store: store.clone(),
            store_error,
            disk: disk.clone(),
            trigger: Arc::new(trigger),
            runtime: None,
            packet_queues: cameras.queues.clone(),
            frame_queue: frame_queue.clone(),
            tensors: tensors.clone(),
            decoders: Vec::new(),
            workers: Vec::new(),
            jobs: buffers.as_ref().map(|b| b.jobs.clone()),
            writer: None,
            clip_writer: None,
            stop_clips: Arc::new(AtomicBool::new(false)),
            started,
        };
        let routes = infer::routes(config, &registry, &recorders, &tensors);
        pipeline.start_cameras(config, &parts, &cameras, &recorders, &runtime, &shutdown)?;
        pipeline.start_inference(
            config.detector.workers,
            &WorkerContext {
                frames: frame_queue,
                tensors,
                routes,
                registry: registry.clone(),
                events,
                snapshots: buffers.as_ref().map(|b| b.snapshots.clone()),
                jobs: buffers.as_ref().map(|b| b.jobs.clone()),
                started,
            },
        )?;
        if let (Some(store), Some(buffers)) = (&store, &buffers) {
            let committed = pipeline.start_events(config, store, &buffers.jobs)?;
            start_upstream(
                config, &runtime, store, &registry, committed, &shutdown, disk,
            )?;
        }
        if let Some(store) = &store {
            pipeline.start_clip_writer(config, &recorders, store)?;
        }
        if config.system.present {
            // The box's clock (decision 0008): one task, no thread.
            let plan = crate::timesync::Plan::for_box(config.system.ntp.clone());
            let clock = Box::new(crate::timesync::Kernel);
            runtime.spawn(crate::timesync::run(plan, clock, shutdown.clone()));
        }
        runtime.spawn(stop_on_signal(shutdown, pipeline.trigger.clone()));
        pipeline.runtime = Some(runtime);
        Ok(pipeline)
    }

    /// Starts every camera: a V4L2 camera's capture thread, or a network or
    /// file camera's source task and decoder thread.
    fn start_cameras(
        &mut self,
        config: &Config,
        parts: &Parts,
        cameras: &CameraPools,
        recorders: &[Option<Arc<CameraRecorder>>],
        runtime: &tokio::runtime::Runtime,
        shutdown: &Shutdown,
    ) -> Result<(), StartError> {
        let shared = StageShared {
            frame_queue: self.frame_queue.clone(),
            factory: parts.decoder_factory.clone(),
            started: self.started,
        };
        for (i, cam) in config.cameras.iter().enumerate() {
            let metrics = self.registry.cameras[i].clone();
            let stage = DecodeStage::new(
                i,
                cam,
                cameras.frames[i].clone(),
                metrics.clone(),
                recorders[i].clone(),
                &shared,
            );
            let handle = match (crate::config::classify(&cam.url, cam.codec), &cam.v4l2) {
                (Ok(crate::config::SourceKind::V4l2(path)), Some(request)) => v4l2::spawn(
                    i,
                    cam,
                    path,
                    *request,
                    stage,
                    cameras.packets[i].clone(),
                    shutdown.clone(),
                ),
                _ => {
                    let queue = cameras.queues[i].clone();
                    let sink = PacketSink::new(cameras.packets[i].clone(), queue.clone(), metrics);
                    let spec = SourceSpec::from_camera(cam, parts.paced);
                    runtime.spawn(source::run(spec, sink, parts.accepts, shutdown.clone()));
                    decode::spawn(i, queue, stage)
                }
            }
            .map_err(|source| StartError::Spawn {
                thread: Thread::Camera(cam.name.clone()),
                source,
            })?;
            self.decoders.push(handle);
        }
        Ok(())
    }

    /// Starts the `workers` inference threads.
    fn start_inference(&mut self, workers: usize, ctx: &WorkerContext) -> Result<(), StartError> {
        for w in 0..workers {
            let handle = ctx.spawn(w).map_err(|source| StartError::Spawn {
                thread: Thread::Worker(w),
                source,
            })?;
            self.workers.push(handle);
        }
        Ok(())
    }

    /// Starts the events thread; answers what it notifies after each
    /// commit.
    fn start_events(
        &mut self,
        config: &Config,
        store: &Arc<Store>,
        jobs: &Arc<JobQueue>,
    ) -> Result<Arc<tokio::sync::Notify>, StartError> {
        let (handle, committed) = events::start(config, store, jobs, &self.registry.outputs)?;
        self.writer = Some(handle);
        Ok(committed)
    }

    /// Starts the clip writer thread, when a camera records.
    fn start_clip_writer(
        &mut self,
        config: &Config,
        recorders: &[Option<Arc<CameraRecorder>>],
        store: &Arc<Store>,
    ) -> Result<(), StartError> {
        let cams: Vec<Arc<CameraRecorder>> = recorders.iter().flatten().cloned().collect();
        if cams.is_empty() {
            return Ok(());
        }
        let writer = ClipWriter::new(
            &config.record,
            cams,
            store.clone(),
            self.started,
            self.stop_clips.clone(),
        );
        let handle = std::thread::Builder::new()
            .name("vigil-rec".into())
            // Files and store transactions per fragment: counted
            // apart from the frame path, like the events thread.
            .spawn(move || crate::alloc_count::events_scope(|| writer.run()))
            .map_err(|source| StartError::Spawn {
                thread: Thread::ClipWriter,
                source,
            })?;
        self.clip_writer = Some(handle);
        Ok(())
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
        // The tasks that used it are gone: it finishes the job it runs.
        self.disk.stop();
        for q in &self.packet_queues {
            q.close();
        }
        // The stages (and their decoders) are kept until the detectors are
        // gone: a detector's RGA imports point into decoder buffers, and
        // an import must be released before the memory under it.
        let stages: Vec<DecodeStage> = self
            .decoders
            .drain(..)
            .filter_map(|h| h.join().ok())
            .collect();
        // Frames still queued are not worth an inference each on the way
        // out: on a slow CPU one takes seconds, and a restart to apply a
        // saved configuration waited minutes for a full queue on the
        // emulated board. They go back to their decoders now; each worker
        // finishes at most the frame it is on.
        while let Some(frame) = self.frame_queue.try_pop() {
            drop(frame);
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
        // Frames a worker left go back to their decoders, and the detectors
        // release their engines (NPU contexts, RGA imports) now, in order,
        // rather than whenever the last Arc goes.
        while let Some(frame) = self.frame_queue.try_pop() {
            drop(frame);
        }
        self.tensors.release_free();
        drop(stages);
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

/// Opens the event store (repairing clips a crash left open first); when it
/// cannot be opened, says why in the log and in the answer, and the
/// pipeline keeps events in memory only.
fn open_store(config: &Config) -> (Option<Arc<Store>>, String) {
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
    match Store::open(&config.data_dir, limits, sinks).map_err(|e| StartError::Store(Box::new(e))) {
        Ok(s) => (Some(Arc::new(s)), String::new()),
        Err(e) => {
            log::error!("{e}; events are kept in memory only");
            (None, e.to_string())
        }
    }
}

/// The ring of recent events. Ids continue after the newest stored event,
/// so a restart never reuses one.
fn event_ring(config: &Config, store: Option<&Store>) -> Arc<EventRing> {
    let first_id = store.map_or(1, |s| s.totals().last_id + 1);
    Arc::new(EventRing::starting_at(
        config.events.ring_capacity,
        first_id,
    ))
}

/// Every camera's packet pool, packet queue and frame pool (or MPP
/// tickets), registered for the status page.
fn camera_pools(config: &Config, backend: Backend, registry: &mut Registry) -> CameraPools {
    let mut pools = CameraPools {
        packets: Vec::with_capacity(config.cameras.len()),
        queues: Vec::with_capacity(config.cameras.len()),
        frames: Vec::with_capacity(config.cameras.len()),
    };
    for cam in &config.cameras {
        let packets = Pool::with("packets", cam.packet_pool, || {
            PacketBuf::with_capacity(cam.packet_size)
        });
        // V4L2 pictures are converted on the CPU into frame buffers
        // under either backend.
        let cpu_pictures = cam.v4l2.is_some() && !cam.compressed();
        let frames = match backend {
            _ if cpu_pictures => FrameStore::Buffers(Pool::with("frames", cam.frame_pool, || {
                FrameBuf::new(cam.max_width, cam.max_height)
            })),
            Backend::Software => FrameStore::Buffers(Pool::with("frames", cam.frame_pool, || {
                FrameBuf::new(cam.max_width, cam.max_height)
            })),
            Backend::Hardware => FrameStore::Tickets(Pool::with("frames", cam.frame_pool, || ())),
        };
        registry.add_pool(&cam.name, Box::new(packets.clone()));
        match &frames {
            FrameStore::Buffers(p) => registry.add_pool(&cam.name, Box::new(p.clone())),
            FrameStore::Tickets(p) => registry.add_pool(&cam.name, Box::new(p.clone())),
        }
        pools.queues.push(Arc::new(PacketQueue::new(
            cam.packet_pool,
            WhenFull::DropNewest,
        )));
        pools.packets.push(packets);
        pools.frames.push(frames);
    }
    pools
}

/// Each camera's recorder, for the cameras that record. Clips need the
/// store: their files and quota live there.
fn recorders(
    config: &Config,
    registry: &Registry,
    store_open: bool,
) -> Vec<Option<Arc<CameraRecorder>>> {
    registry
        .cameras
        .iter()
        .zip(&config.cameras)
        .map(|(metrics, cam)| {
            if !config.record.enabled || !cam.compressed() {
                return None;
            }
            if !store_open {
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
        .collect()
}

/// Starts the upstream drainers (and clip uploads) on the runtime.
fn start_upstream(
    config: &Config,
    runtime: &tokio::runtime::Runtime,
    store: &Arc<Store>,
    registry: &Registry,
    committed: Arc<tokio::sync::Notify>,
    shutdown: &Shutdown,
    disk: Arc<Disk>,
) -> Result<(), StartError> {
    crate::upstream::spawn_with_clips(
        runtime,
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
        JpegWriter::capacity_for(config.events.snapshot_width, config.events.snapshot_height),
        disk,
    )
    .map_err(StartError::Upstream)
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
        .map_err(StartError::Runtime)?;
    rt.block_on(async { tokio::task::spawn_blocking(|| ()).await })
        .map_err(StartError::BlockingThread)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detectors_must_match_the_workers() {
        let config = Config::parse("[[camera]]\nurl = \"a.h264\"\n", "t").unwrap();
        let Err(e) = Pipeline::start(&config, software_parts(Vec::new(), false)) else {
            panic!("started without detectors");
        };
        assert!(
            matches!(
                e,
                StartError::Workers {
                    detectors: 0,
                    workers
                } if workers == config.detector.workers
            ),
            "{e}"
        );
    }
}
