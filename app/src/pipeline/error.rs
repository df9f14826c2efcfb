//! Why vigil could not start: one kind per step that can refuse, so callers
//! (the command line's exit code, tests) match on the kind, not the text.
//!
//! Each kind's `Display` is the whole sentence the operator reads in the
//! log, the cause included (these are the lines vigil has always logged);
//! `source()` hands the cause itself to code that looks underneath, e.g. for
//! an `io::ErrorKind`.

use crate::detect::DetectError;
use crate::hw::loader::LoadError;
use crate::store::StoreError;
use std::fmt;
use std::path::PathBuf;

/// Why the pipeline (or the process around it) could not start.
#[derive(Debug)]
pub enum StartError {
    /// The detector model file cannot be found or read: a configuration
    /// mistake, like a bad flag.
    ModelMissing {
        /// `detector.model`.
        path: PathBuf,
        /// What the file system said.
        source: std::io::Error,
    },
    /// The model file could not be read into memory for the NPU.
    ModelRead {
        /// `detector.model`.
        path: PathBuf,
        /// What the file system said.
        source: std::io::Error,
    },
    /// A detector could not load the model.
    Detector {
        /// `detector.model`, when the detector's error does not name it.
        path: Option<PathBuf>,
        /// The detector's error.
        source: DetectError,
    },
    /// A vendor library (MPP, RGA, RKNN) could not be loaded.
    Library(LoadError),
    /// `backend = "hardware"` on a machine without usable RK3588 hardware.
    HardwareUnavailable {
        /// What is missing, as sentences.
        missing: Vec<String>,
    },
    /// The detector only runs on the NPU, which is not usable here.
    NpuUnavailable {
        /// `detector.kind`.
        kind: &'static str,
        /// What is missing, as sentences.
        missing: Vec<String>,
    },
    /// A camera's frame pool leaves the hardware decoder no reference
    /// pictures.
    FramePool {
        /// The camera's name.
        camera: String,
        /// Its `frame_pool`.
        frame_pool: usize,
        /// `hardware.decoder_buffers`.
        decoder_buffers: usize,
    },
    /// The memory budget exceeds `memory_limit`.
    OverBudget,
    /// The web port cannot be bound (in use, or not allowed):
    /// [`WebError::Bind`](crate::web::WebError::Bind).
    Web(crate::web::WebError),
    /// The data directory cannot be created.
    DataDir {
        /// `data_dir`.
        path: PathBuf,
        /// What the file system said.
        source: std::io::Error,
    },
    /// The event store could not be opened (the pipeline then keeps events
    /// in memory only; it does not refuse to start). Boxed: a `StoreError`
    /// carries its path and cause, and would make every `Result` here large.
    Store(Box<StoreError>),
    /// The detectors given are not one per inference worker.
    Workers {
        /// Detectors given.
        detectors: usize,
        /// `detector.workers`.
        workers: usize,
    },
    /// The async runtime could not be built.
    Runtime(std::io::Error),
    /// The runtime's one blocking thread could not be started.
    BlockingThread(tokio::task::JoinError),
    /// A pipeline thread could not be spawned.
    Spawn {
        /// Which thread.
        thread: Thread,
        /// What the OS said.
        source: std::io::Error,
    },
    /// An upstream client could not be set up.
    Upstream(crate::upstream::UpstreamError),
}

/// A thread the pipeline starts, for [`StartError::Spawn`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Thread {
    /// A camera's decoder or V4L2 capture thread (the camera's name).
    Camera(String),
    /// Inference worker N.
    Worker(usize),
    /// The events thread.
    Events,
    /// The clip writer thread.
    ClipWriter,
    /// The disk thread.
    Disk,
}

impl fmt::Display for Thread {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Thread::Camera(name) => write!(f, "the thread of camera {name}"),
            Thread::Worker(w) => write!(f, "inference worker {w}"),
            Thread::Events => f.write_str("the events thread"),
            Thread::ClipWriter => f.write_str("the clip writer"),
            Thread::Disk => f.write_str("the disk thread"),
        }
    }
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::ModelMissing { path, source } => write!(
                f,
                "detector model {}: {source} (run `make model`, or set detector.model / --model)",
                path.display()
            ),
            StartError::ModelRead { path, source } => {
                write!(f, "detector.model {}: {source}", path.display())
            }
            StartError::Detector {
                path: Some(path),
                source,
            } => write!(f, "detector.model {}: {source}", path.display()),
            StartError::Detector { path: None, source } => write!(f, "{source}"),
            StartError::Library(e) => write!(f, "{e}"),
            StartError::HardwareUnavailable { missing } => write!(
                f,
                "backend = \"hardware\" but the RK3588 hardware is not usable: {}",
                missing.join("; ")
            ),
            StartError::NpuUnavailable { kind, missing } => write!(
                f,
                "detector.kind = \"{kind}\" runs on the RK3588 NPU, which is not usable here: {}",
                missing.join("; ")
            ),
            StartError::FramePool {
                camera,
                frame_pool,
                decoder_buffers,
            } => write!(
                f,
                "camera {camera}: frame_pool ({frame_pool}) must be less than \
                 hardware.decoder_buffers ({decoder_buffers}): \
                 the decoder needs the rest of its group for reference pictures"
            ),
            StartError::OverBudget => {
                f.write_str("refusing to start: the memory budget exceeds memory_limit")
            }
            StartError::Web(e) => write!(f, "{e}"),
            StartError::DataDir { path, source } => write!(
                f,
                "cannot create the data directory {} (`data_dir`): {source}",
                path.display()
            ),
            StartError::Store(e) => write!(f, "{e}"),
            StartError::Workers { detectors, workers } => {
                write!(f, "{detectors} detectors for {workers} workers")
            }
            StartError::Runtime(e) => write!(f, "cannot start the async runtime: {e}"),
            StartError::BlockingThread(e) => write!(f, "cannot start the blocking thread: {e}"),
            StartError::Spawn { thread, source } => write!(f, "cannot start {thread}: {source}"),
            StartError::Upstream(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for StartError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StartError::ModelMissing { source, .. }
            | StartError::ModelRead { source, .. }
            | StartError::DataDir { source, .. }
            | StartError::Spawn { source, .. }
            | StartError::Runtime(source) => Some(source),
            StartError::Detector { source, .. } => Some(source),
            StartError::Library(e) => Some(e),
            StartError::Store(e) => Some(e.as_ref()),
            StartError::BlockingThread(e) => Some(e),
            StartError::HardwareUnavailable { .. }
            | StartError::NpuUnavailable { .. }
            | StartError::FramePool { .. }
            | StartError::OverBudget
            | StartError::Workers { .. } => None,
            StartError::Upstream(e) => Some(e),
            StartError::Web(e) => Some(e),
        }
    }
}
