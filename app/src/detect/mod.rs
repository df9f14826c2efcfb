//! Object detection: the seam between pictures and detections.
//!
//! A [`Detector`] takes an [`ImageRef`] and fills a fixed-capacity
//! [`Detections`] list; it owns its preallocated input tensor, so nothing here
//! allocates per frame. The CPU backend (`ssd`) runs SSD-MobileNetV2-COCO with
//! tract; the NPU backend (a later issue) runs RKNN models whose raw outputs are
//! decoded by `yolo`, the same postprocessing this module tests on this machine,
//! and mapped back to the picture through `letterbox`.

pub mod anchors;
pub mod cli;
pub mod coco;
pub mod letterbox;
pub mod nms;
pub mod preprocess;
pub mod ssd;
pub mod yolo;

use std::path::PathBuf;

use crate::image::ImageRef;

/// Where `make model` (scripts/fetch-model.sh) puts the SSD graph:
/// `$VIGIL_CACHE_DIR/models/ssd_mobilenet_v2_coco.pb`, with `VIGIL_CACHE_DIR`
/// defaulting to `$HOME/.cache/vigil` and `HOME` to `/root`; unset and empty
/// variables are alike, as in the scripts.
pub fn default_model_path() -> PathBuf {
    let var = |name| std::env::var_os(name).filter(|v| !v.is_empty());
    let cache = var("VIGIL_CACHE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            var("HOME")
                .map_or_else(|| PathBuf::from("/root"), PathBuf::from)
                .join(".cache/vigil")
        });
    cache.join("models/ssd_mobilenet_v2_coco.pb")
}

/// Most detections a single picture can report; further ones (lowest score
/// first) are dropped.
pub const MAX_DETECTIONS: usize = 64;

/// A box in normalised image coordinates (0..1), top-left and bottom-right.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BBox {
    /// Left edge.
    pub x0: f32,
    /// Top edge.
    pub y0: f32,
    /// Right edge.
    pub x1: f32,
    /// Bottom edge.
    pub y1: f32,
}

impl BBox {
    /// Intersection over union with `other` (0 when either is empty).
    pub fn iou(&self, other: &BBox) -> f32 {
        let ix0 = self.x0.max(other.x0);
        let iy0 = self.y0.max(other.y0);
        let ix1 = self.x1.min(other.x1);
        let iy1 = self.y1.min(other.y1);
        let inter = (ix1 - ix0).max(0.0) * (iy1 - iy0).max(0.0);
        let union = self.area() + other.area() - inter;
        if union <= 0.0 {
            0.0
        } else {
            inter / union
        }
    }

    /// Area (0 for an inverted box).
    pub fn area(&self) -> f32 {
        (self.x1 - self.x0).max(0.0) * (self.y1 - self.y0).max(0.0)
    }
}

/// One detected object.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Detection {
    /// Index into the detector's class table ([`Detector::class_name`]).
    pub class_id: u16,
    /// Confidence in 0..1.
    pub score: f32,
    /// Where, normalised to the input picture.
    pub bbox: BBox,
}

/// The fixed-capacity result list of one inference.
pub type Detections = heapless::Vec<Detection, MAX_DETECTIONS>;

/// Why a detector failed.
#[derive(Debug)]
pub enum DetectError {
    /// The model file could not be read or understood.
    Model {
        /// The model path.
        path: std::path::PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// The picture cannot be used (zero size, short planes).
    BadImage(String),
    /// The inference engine failed on a valid input.
    Engine(String),
    /// Results could not be written (the `detect` command's output).
    Output(std::io::Error),
}

impl std::fmt::Display for DetectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DetectError::Model { path, reason } => {
                write!(f, "cannot load model {}: {reason}", path.display())
            }
            DetectError::BadImage(why) => write!(f, "unusable image: {why}"),
            DetectError::Engine(why) => write!(f, "inference failed: {why}"),
            DetectError::Output(e) => write!(f, "cannot write results: {e}"),
        }
    }
}

impl std::error::Error for DetectError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            DetectError::Output(e) => Some(e),
            _ => None,
        }
    }
}

/// A loaded model ready to run, owned by one inference worker.
pub trait Detector: Send {
    /// Runs the model on `image` and writes detections scoring at least
    /// `min_score` into `out` (cleared first), best first.
    fn detect(
        &mut self,
        image: ImageRef<'_>,
        min_score: f32,
        out: &mut Detections,
    ) -> Result<(), DetectError>;

    /// The name of class `class_id` ("person"), or "unknown".
    fn class_name(&self, class_id: u16) -> &'static str;

    /// Looks a class up by name; `None` when the model has no such class.
    fn class_id(&self, name: &str) -> Option<u16>;

    /// Bytes of preallocated input tensor memory this detector holds.
    fn tensor_bytes(&self) -> usize;
}
