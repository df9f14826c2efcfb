//! The CPU detector: SSD-MobileNetV2-COCO (TF Object Detection's
//! `ssd_mobilenet_v2_coco_2018_03_29` frozen graph) run by tract.
//!
//! The graph is cut between TF's own pre- and postprocessing, which use ops
//! tract lacks (NonMaxSuppressionV2, TensorArray, Where): the input is
//! `Preprocessor/sub` (NHWC `[1, 300, 300, 3]`, RGB scaled to -1..1, filled by
//! [`preprocess`](super::preprocess)), the outputs `concat` (`[1, 1917, 1, 4]`
//! box encodings) and `concat_1` (`[1, 1917, 91]` class logits). Decoding
//! follows TF's `FasterRcnnBoxCoder` (scales 10, 10, 5, 5) against anchors from
//! [`anchors`](super::anchors), sigmoid scores, and per-class NMS at IoU 0.6,
//! which reproduces TensorFlow's own detections.
//!
//! Memory: the input tensor, the anchors and the candidate list are
//! allocated once in [`SsdMobilenetV2::load`]. `detect` itself allocates
//! nothing; tract allocates its intermediate tensors on every run (a constant
//! number per call), and every tract call is wrapped in
//! [`engine_scope`] so those allocations are counted apart from ours.

use std::path::Path;

use tract_tensorflow::prelude::*;

use super::anchors::{Anchor, SSD_MOBILENET_V2};
use super::coco::CocoLabels;
use super::nms::{Candidates, MAX_CANDIDATES};
use super::preprocess::{Normalisation, Resizer};
use super::{BBox, DetectError, Detections, Detector};
use crate::alloc_count::engine_scope;
use crate::image::ImageRef;

/// Input width and height of the model.
pub const INPUT_SIZE: usize = 300;
/// Class logits per anchor: background plus COCO ids 1..=90.
pub const NUM_CLASSES: usize = 91;
/// IoU above which a same-class box is suppressed (the model's pipeline.config).
pub const IOU_THRESHOLD: f32 = 0.6;

const INPUT_NODE: &str = "Preprocessor/sub";
const BOXES_NODE: &str = "concat";
const LOGITS_NODE: &str = "concat_1";
/// TF's `FasterRcnnBoxCoder` scale factors for (y, x, h, w).
const BOX_SCALES: [f32; 4] = [10.0, 10.0, 5.0, 5.0];

/// SSD-MobileNetV2-COCO on the CPU; class ids are COCO category ids
/// ([`CocoLabels::Ids91`]).
pub struct SsdMobilenetV2 {
    state: TypedSimpleState,
    /// The input tensor, shared with tract only for the duration of a run so
    /// that it is never copied or reallocated.
    input: Arc<Tensor>,
    resizer: Resizer,
    anchors: Box<[Anchor]>,
    candidates: Box<Candidates<MAX_CANDIDATES>>,
}

impl std::fmt::Debug for SsdMobilenetV2 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SsdMobilenetV2")
            .field("anchors", &self.anchors.len())
            .finish_non_exhaustive()
    }
}

fn model_error(path: &Path, reason: impl std::fmt::Display) -> DetectError {
    DetectError::Model {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

fn engine_error(e: TractError) -> DetectError {
    DetectError::Engine(format!("{e:#}"))
}

impl SsdMobilenetV2 {
    /// Loads and optimises the frozen graph at `path` (about half a second)
    /// to run on the calling thread.
    ///
    /// Single-threaded on purpose: tract's multithreaded executor would add a
    /// thread pool outside the pipeline's fixed, named thread set and
    /// allocate outside `engine_scope` (measured: about 2100 allocations per
    /// call, for 69 -> 60 ms on two cores). More throughput comes from more
    /// `detector.workers`, which the budget and thread count include.
    pub fn load(path: &Path) -> Result<SsdMobilenetV2, DetectError> {
        // A clearer reason than tract's for the commonest failure.
        std::fs::metadata(path).map_err(|e| model_error(path, e))?;
        let plan = tensorflow()
            .model_for_path(path)
            .and_then(|m| m.with_input_names([INPUT_NODE]))
            .and_then(|m| m.with_outputs_by_name([BOXES_NODE, LOGITS_NODE]))
            .and_then(|m| {
                let shape = [1, INPUT_SIZE, INPUT_SIZE, 3];
                m.with_input_fact(0, f32::fact(shape).into())
            })
            // Compacting first drops the anchor-generator subgraph, whose Tile
            // node tract's type inference cannot handle.
            .and_then(|m| m.into_compact())
            .and_then(|m| m.into_optimized())
            .and_then(|m| m.into_runnable())
            .map_err(|e| model_error(path, format!("{e:#}")))?;

        let anchors = SSD_MOBILENET_V2.generate();
        let expect = |ix: usize, want: &[usize]| -> Result<(), DetectError> {
            let fact = plan
                .model()
                .output_fact(ix)
                .map_err(|e| model_error(path, format!("{e:#}")))?;
            match fact.shape.as_concrete() {
                Some(shape) if shape == want && fact.datum_type == f32::datum_type() => Ok(()),
                _ => Err(model_error(
                    path,
                    format!("output {ix} is {fact:?}, expected f32 {want:?}"),
                )),
            }
        };
        expect(0, &[1, anchors.len(), 1, 4])?;
        expect(1, &[1, anchors.len(), NUM_CLASSES])?;

        let state = plan
            .spawn()
            .map_err(|e| model_error(path, format!("{e:#}")))?;
        let input = Tensor::zero::<f32>(&[1, INPUT_SIZE, INPUT_SIZE, 3])
            .map_err(|e| model_error(path, format!("{e:#}")))?;
        Ok(SsdMobilenetV2 {
            state,
            input: Arc::new(input),
            resizer: Resizer::new(INPUT_SIZE, INPUT_SIZE, Normalisation::MINUS_ONE_TO_ONE),
            anchors,
            candidates: Box::new(Candidates::new()),
        })
    }

    /// Turns raw outputs into candidates: every (anchor, class) pair whose
    /// sigmoid score reaches `min_score`, background excluded.
    fn collect(&mut self, encodings: &[f32], logits: &[f32], min_score: f32) {
        self.candidates.clear();
        // Compare logits, not probabilities: one exp per passing pair instead
        // of 172 530 per picture. The margin absorbs rounding; the exact test
        // follows.
        let p = min_score.clamp(1e-7, 1.0 - 1e-7);
        let min_logit = (p / (1.0 - p)).ln() - 1e-3;
        let rows = encodings
            .chunks_exact(4)
            .zip(logits.chunks_exact(NUM_CLASSES));
        for (anchor, (code, scores)) in self.anchors.iter().zip(rows) {
            let mut bbox = None;
            for (class, &logit) in scores.iter().enumerate().skip(1) {
                if logit < min_logit {
                    continue;
                }
                let score = 1.0 / (1.0 + (-logit).exp());
                if score < min_score {
                    continue;
                }
                let b = *bbox.get_or_insert_with(|| decode_box(code, anchor));
                if b.area() > 0.0 {
                    // class < NUM_CLASSES = 91.
                    self.candidates.push(class as u16, score, b);
                }
            }
        }
    }
}

/// TF's `FasterRcnnBoxCoder.decode` of `[ty, tx, th, tw]` against `anchor`,
/// clipped to the picture as TF's postprocessing does before NMS.
fn decode_box(code: &[f32], anchor: &Anchor) -> BBox {
    let ty = code[0] / BOX_SCALES[0];
    let tx = code[1] / BOX_SCALES[1];
    let h = (code[2] / BOX_SCALES[2]).exp() * anchor.h;
    let w = (code[3] / BOX_SCALES[3]).exp() * anchor.w;
    let cy = ty * anchor.h + anchor.cy;
    let cx = tx * anchor.w + anchor.cx;
    BBox {
        x0: (cx - w / 2.0).clamp(0.0, 1.0),
        y0: (cy - h / 2.0).clamp(0.0, 1.0),
        x1: (cx + w / 2.0).clamp(0.0, 1.0),
        y1: (cy + h / 2.0).clamp(0.0, 1.0),
    }
}

impl Detector for SsdMobilenetV2 {
    fn detect(
        &mut self,
        image: ImageRef<'_>,
        min_score: f32,
        out: &mut Detections,
    ) -> Result<(), DetectError> {
        out.clear();
        let input = Arc::get_mut(&mut self.input).ok_or_else(|| {
            DetectError::Engine("input tensor still shared with the engine".into())
        })?;
        let pixels = engine_scope(|| {
            input
                .to_plain_array_view_mut::<f32>()
                .ok()
                .and_then(|view| view.into_slice())
        })
        .ok_or_else(|| DetectError::Engine("input tensor is not a plain f32 array".into()))?;
        self.resizer.resize(&image, pixels)?;

        let input = TValue::from_const(Arc::clone(&self.input));
        let outputs = match engine_scope(|| self.state.run(tvec!(input))) {
            Ok(outputs) => outputs,
            Err(e) => {
                // A failed run leaves its values, our input among them, in the
                // state; clear them so the next call gets the tensor back.
                engine_scope(|| self.state.reset_turn()).map_err(engine_error)?;
                return Err(engine_error(e));
            }
        };
        let (encodings, logits) = engine_scope(|| -> TractResult<(&[f32], &[f32])> {
            Ok((
                outputs[0].try_as_plain_ram()?.as_slice::<f32>()?,
                outputs[1].try_as_plain_ram()?.as_slice::<f32>()?,
            ))
        })
        .map_err(engine_error)?;
        self.collect(encodings, logits, min_score);
        // Frees tract's output tensors (deallocation is not counted) and hands
        // the input tensor back to us alone.
        drop(outputs);
        self.candidates.nms_into(IOU_THRESHOLD, out);
        Ok(())
    }

    fn class_name(&self, class_id: u16) -> &'static str {
        CocoLabels::Ids91.name(class_id)
    }

    fn class_id(&self, name: &str) -> Option<u16> {
        CocoLabels::Ids91.id(name)
    }

    fn tensor_bytes(&self) -> usize {
        self.input.len() * std::mem::size_of::<f32>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alloc_count::thread_counts;
    use crate::detect::cli::decode_jpeg;
    use crate::detect::default_model_path;
    use crate::image::Rgb8;
    use std::path::PathBuf;
    use std::time::Instant;

    const DOG: &str = "/usr/share/darknet/data/dog.jpg";

    fn model() -> PathBuf {
        let path = default_model_path();
        assert!(
            path.is_file(),
            "model {} is missing: run `make model` (scripts/fetch-model.sh)",
            path.display()
        );
        path
    }

    fn dog() -> (Vec<u8>, u32, u32) {
        assert!(
            Path::new(DOG).is_file(),
            "{DOG} is missing: apt-get install darknet"
        );
        decode_jpeg(Path::new(DOG)).unwrap()
    }

    fn rgb(data: &[u8], width: u32, height: u32) -> ImageRef<'_> {
        ImageRef::Rgb8(Rgb8 {
            width,
            height,
            data,
            stride: 3 * width as usize,
        })
    }

    #[test]
    fn decode_box_matches_tf_box_coder() {
        let anchor = Anchor {
            cy: 0.5,
            cx: 0.4,
            h: 0.2,
            w: 0.1,
        };
        // Zero code: the anchor itself.
        let b = decode_box(&[0.0; 4], &anchor);
        assert!((b.x0 - 0.35).abs() < 1e-6 && (b.x1 - 0.45).abs() < 1e-6);
        assert!((b.y0 - 0.4).abs() < 1e-6 && (b.y1 - 0.6).abs() < 1e-6);
        // ty = 1 shifts by 0.1 anchor heights, th = 5 ln 2 doubles the height.
        let b = decode_box(&[1.0, 0.0, 5.0 * 2f32.ln(), 0.0], &anchor);
        assert!((b.y0 - 0.32).abs() < 1e-6 && (b.y1 - 0.72).abs() < 1e-6);
        // Clipped to the picture.
        let b = decode_box(&[0.0, -50.0, 0.0, 0.0], &anchor);
        assert_eq!((b.x0, b.x1), (0.0, 0.0));
    }

    #[test]
    fn missing_or_corrupt_model_is_a_model_error_naming_the_path() {
        let missing = Path::new("/nonexistent/ssd.pb");
        match SsdMobilenetV2::load(missing) {
            Err(e @ DetectError::Model { .. }) => {
                assert!(e.to_string().contains("/nonexistent/ssd.pb"), "{e}")
            }
            other => panic!("{other:?}"),
        }
        let corrupt = std::env::temp_dir().join(format!("vigil-corrupt-{}.pb", std::process::id()));
        std::fs::write(&corrupt, b"\x0a\xffthis is not a graph").unwrap();
        let result = SsdMobilenetV2::load(&corrupt);
        std::fs::remove_file(&corrupt).unwrap();
        match result {
            Err(e @ DetectError::Model { .. }) => {
                assert!(e.to_string().contains(&*corrupt.to_string_lossy()), "{e}")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn dog_jpg_gives_bicycle_dog_and_car() {
        let mut ssd = SsdMobilenetV2::load(&model()).unwrap();
        let (data, w, h) = dog();
        let mut out = Detections::new();
        ssd.detect(rgb(&data, w, h), 0.3, &mut out).unwrap();
        for d in &out {
            eprintln!("{} {:.3} {:?}", ssd.class_name(d.class_id), d.score, d.bbox);
        }
        for (name, score) in [("bicycle", 0.88), ("dog", 0.85), ("car", 0.62)] {
            let id = ssd.class_id(name).unwrap();
            let best = out
                .iter()
                .filter(|d| d.class_id == id)
                .map(|d| d.score)
                .fold(0.0, f32::max);
            assert!((best - score).abs() <= 0.02, "{name}: {best} vs {score}");
        }
        assert!(out.windows(2).all(|w| w[0].score >= w[1].score));
        // The same picture as I420 finds the same objects.
        let (y, u, v) = to_i420(&data, w as usize, h as usize);
        let image = ImageRef::I420(crate::image::I420 {
            width: w,
            height: h,
            y: &y,
            u: &u,
            v: &v,
            y_stride: w as usize,
            uv_stride: (w as usize).div_ceil(2),
        });
        let mut yuv_out = Detections::new();
        ssd.detect(image, 0.3, &mut yuv_out).unwrap();
        for name in ["bicycle", "dog", "car"] {
            let id = ssd.class_id(name).unwrap();
            assert!(
                yuv_out.iter().any(|d| d.class_id == id),
                "{name} in {yuv_out:?}"
            );
        }
    }

    /// BT.601 limited-range RGB to I420 (chroma averaged over 2x2).
    fn to_i420(rgb: &[u8], w: usize, h: usize) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
        let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
        let px = |x: usize, y: usize| {
            let p = &rgb[(y * w + x) * 3..][..3];
            (f32::from(p[0]), f32::from(p[1]), f32::from(p[2]))
        };
        let mut y_plane = vec![0; w * h];
        for y in 0..h {
            for x in 0..w {
                let (r, g, b) = px(x, y);
                y_plane[y * w + x] =
                    (16.0 + 0.256_79 * r + 0.504_13 * g + 0.097_91 * b).round() as u8;
            }
        }
        let (mut u_plane, mut v_plane) = (vec![0; cw * ch], vec![0; cw * ch]);
        for cy in 0..ch {
            for cx in 0..cw {
                let (mut r, mut g, mut b) = (0.0, 0.0, 0.0);
                let mut n = 0.0;
                for (x, y) in [(0, 0), (1, 0), (0, 1), (1, 1)] {
                    let (x, y) = (2 * cx + x, 2 * cy + y);
                    if x < w && y < h {
                        let p = px(x, y);
                        (r, g, b, n) = (r + p.0, g + p.1, b + p.2, n + 1.0);
                    }
                }
                let (r, g, b) = (r / n, g / n, b / n);
                u_plane[cy * cw + cx] =
                    (128.0 - 0.148_22 * r - 0.290_99 * g + 0.439_22 * b).round() as u8;
                v_plane[cy * cw + cx] =
                    (128.0 + 0.439_22 * r - 0.367_79 * g - 0.071_43 * b).round() as u8;
            }
        }
        (y_plane, u_plane, v_plane)
    }

    /// After warm-up, `detect` allocates nothing outside tract, and tract a
    /// constant number of times per call. Needs the counting allocator the
    /// crate root installs for tests.
    #[test]
    fn detect_does_not_allocate_after_warm_up() {
        let mut ssd = SsdMobilenetV2::load(&model()).unwrap();
        let (data, w, h) = dog();
        let image = rgb(&data, w, h);
        let mut out = Detections::new();
        for _ in 0..2 {
            ssd.detect(image, 0.3, &mut out).unwrap();
        }
        let mut engine_per_call = Vec::with_capacity(20);
        let mut times = Vec::with_capacity(20);
        let start = thread_counts();
        for _ in 0..20 {
            let before = thread_counts();
            let t = Instant::now();
            ssd.detect(image, 0.3, &mut out).unwrap();
            let elapsed = t.elapsed();
            let after = thread_counts();
            engine_per_call.push(after.engine - before.engine);
            times.push(elapsed);
        }
        let end = thread_counts();
        assert!(
            end.engine > start.engine,
            "is the counting allocator installed?"
        );
        assert_eq!(
            end.ours, start.ours,
            "detect allocated outside engine_scope"
        );
        assert!(
            engine_per_call.iter().all(|&n| n == engine_per_call[0]),
            "engine allocations vary: {engine_per_call:?}"
        );
        times.sort();
        eprintln!(
            "tract allocations per call: {}; inference median {:?}, min {:?}",
            engine_per_call[0], times[10], times[0]
        );
    }
}
