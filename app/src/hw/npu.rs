//! The NPU detector: RGA letterboxes an MPP picture into the model's input,
//! RKNN runs the model, and the CPU backend's YOLO postprocessing reads the
//! int8 outputs in place.
//!
//! One [`NpuDetector`] per inference worker, each on its own NPU core, made
//! at start and kept (RKNN contexts are never churned, see `rknn`). RGA
//! reads a picture through an import of its dma-buf; importing costs a
//! kernel call and pins the buffer, so each decoder buffer is imported once
//! into a table of fixed capacity (the decoder buffers of every camera) and
//! released when its decoder's buffers are re-made (a new generation after
//! an info change), when the table is full (the least recently used), or at
//! teardown. Nothing here allocates per picture.

use super::rga::{self, ImRect, RgaBuffer, RgaLib};
use super::rknn::RknnModel;
use super::rknn_sys::RknnLib;
use crate::detect::coco::CocoLabels;
use crate::detect::letterbox::Letterbox;
use crate::detect::preprocess::check_image;
use crate::detect::yolo::{
    RawTensor, YoloPostprocess, Yolov5Head, Yolov8Head, YoloxHead, YOLOV5_COCO_ANCHORS,
};
use crate::detect::{DetectError, Detections, Detector};
use crate::image::{DmaBuf, ImageRef, Nv12};
use std::sync::Arc;

/// Classes of the zoo's COCO models.
const CLASSES: usize = 80;

/// The zoo's NMS threshold.
const IOU_THRESHOLD: f32 = 0.45;

/// The letterbox border: YOLO's grey, in each of R, G and B.
const BORDER: u8 = 114;

/// RGA3 wants YUV width strides in multiples of this (rockchip-api.md).
const RGA3_STRIDE_ALIGN: usize = 16;

/// Which output layout the model has (rknn_model_zoo's exports).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum YoloLayout {
    /// Three heads `[1, 3*(5+C), H, W]` with anchors.
    Yolov5,
    /// Three heads of (DFL boxes, class scores, optional score sum).
    Yolov8,
    /// Three heads `[1, 5+C, H, W]`, anchor-free.
    Yolox,
}

/// One imported decoder buffer.
struct Import {
    dma: DmaBuf,
    geometry: (u32, u32, usize, usize),
    buffer: RgaBuffer,
    last_used: u64,
}

/// A YOLO model on one NPU core, fed by RGA from dma-bufs.
///
/// Fields drop in declaration order, and that order is the teardown: the
/// RGA imports (`input` points into `model`'s input memory) are released
/// before `model` destroys that memory and its context. A release after the
/// memory is gone leaves RGA a handle to freed memory (issue 16; the RGA
/// double reports it).
pub struct NpuDetector {
    input: RgaBuffer,
    imports: Vec<Import>,
    model: RknnModel,
    rga: Arc<RgaLib>,
    post: YoloPostprocess,
    layout: YoloLayout,
    /// Where the last picture went in the input: the border around it is
    /// written by the CPU only when this changes.
    placed: Option<ImRect>,
    uses: u64,
    /// Imports released early because the table was full.
    pub evicted_imports: u64,
}

fn engine(e: impl std::fmt::Display) -> DetectError {
    DetectError::Engine(e.to_string())
}

impl NpuDetector {
    /// Loads `model` (a `.rknn` file's bytes) on the cores in `core_mask`,
    /// binds its memory and imports its input into RGA; up to `imports`
    /// decoder buffers are kept imported at once.
    pub fn new(
        rknn: Arc<RknnLib>,
        rga: Arc<RgaLib>,
        model: &[u8],
        core_mask: i32,
        layout: YoloLayout,
        imports: usize,
    ) -> Result<NpuDetector, DetectError> {
        let model = RknnModel::load(rknn, model, core_mask).map_err(engine)?;
        let (w, h, c) = model.input_shape();
        if c != 3 {
            return Err(engine(format!(
                "the model takes {c} channels; vigil feeds RGB (3)"
            )));
        }
        let input = RgaBuffer::import(
            rga.clone(),
            model.input_fd(),
            (w, h),
            (w, h),
            rga::FORMAT_RGB_888,
        )
        .map_err(engine)?;
        Ok(NpuDetector {
            input,
            imports: Vec::with_capacity(imports.max(1)),
            model,
            rga,
            post: YoloPostprocess::new(w, h, CLASSES, IOU_THRESHOLD),
            layout,
            placed: None,
            uses: 0,
            evicted_imports: 0,
        })
    }

    /// Imports currently held.
    pub fn imports(&self) -> usize {
        self.imports.len()
    }

    /// The table index of `p`'s buffer, importing it if needed.
    fn import(&mut self, p: &Nv12<'_>, dma: DmaBuf) -> Result<usize, DetectError> {
        self.uses += 1;
        let geometry = (p.width, p.height, p.stride, p.rows);
        if !p.stride.is_multiple_of(RGA3_STRIDE_ALIGN) {
            return Err(DetectError::BadImage(format!(
                "NV12 stride {} is not a multiple of {RGA3_STRIDE_ALIGN}, as RGA3 needs",
                p.stride
            )));
        }
        if let Some(i) = self
            .imports
            .iter()
            .position(|e| e.dma == dma && e.geometry == geometry)
        {
            self.imports[i].last_used = self.uses;
            return Ok(i);
        }
        // The decoder re-made its buffers (or an fd was reused): imports of
        // its other generations, or of this fd in another shape, are stale.
        self.imports.retain(|e| {
            e.dma.source != dma.source || (e.dma.generation == dma.generation && e.dma.fd != dma.fd)
        });
        if self.imports.len() == self.imports.capacity() {
            if let Some(oldest) = self
                .imports
                .iter()
                .enumerate()
                .min_by_key(|(_, e)| e.last_used)
                .map(|(i, _)| i)
            {
                self.imports.swap_remove(oldest);
                self.evicted_imports += 1;
            }
        }
        let buffer = RgaBuffer::import(
            self.rga.clone(),
            dma.fd,
            (p.width, p.height),
            (p.stride as u32, p.rows as u32),
            rga::FORMAT_NV12,
        )
        .map_err(engine)?;
        self.imports.push(Import {
            dma,
            geometry,
            buffer,
            last_used: self.uses,
        });
        Ok(self.imports.len() - 1)
    }
}

/// `(grid_h, grid_w)` of an NCHW output.
fn grid(i: usize, dims: &[u32]) -> Result<(usize, usize), DetectError> {
    match dims {
        [_, _, h, w] => Ok((*h as usize, *w as usize)),
        _ => Err(engine(format!("output {i} has dims {dims:?}, not NCHW"))),
    }
}

impl Detector for NpuDetector {
    fn detect(
        &mut self,
        image: ImageRef<'_>,
        min_score: f32,
        out: &mut Detections,
    ) -> Result<(), DetectError> {
        let ImageRef::Nv12(p @ Nv12 { dma: Some(dma), .. }) = image else {
            return Err(DetectError::BadImage(
                "the NPU detector reads decoder dma-bufs; this picture has none".into(),
            ));
        };
        check_image(&image)?;
        let i = self.import(&p, dma)?;
        let (w, h, _) = self.model.input_shape();
        let rect = rga::letterbox_rect(p.width, p.height, w, h);
        if self.placed != Some(rect) {
            // The CPU writes the border (RGA2, the only core that fills,
            // cannot reach memory above 4 GiB), flushed before RGA writes
            // the picture so no cache line lands on top of it later.
            self.model.input_mut().fill(BORDER);
            self.model.flush_input().map_err(engine)?;
            self.placed = Some(rect);
        }
        self.input
            .scale_into(&self.imports[i].buffer, rect)
            .map_err(engine)?;
        self.model.run().map_err(engine)?;
        let model = &self.model;
        let t = |i: usize| -> Result<(RawTensor<'_>, (usize, usize)), DetectError> {
            let (tensor, dims) = model
                .output(i)
                .ok_or_else(|| engine(format!("the model has no output {i}")))?;
            Ok((tensor, grid(i, dims)?))
        };
        match self.layout {
            YoloLayout::Yolov5 => {
                let head = |i: usize| {
                    t(i).map(|(tensor, (grid_h, grid_w))| Yolov5Head {
                        tensor,
                        grid_h,
                        grid_w,
                        anchors: YOLOV5_COCO_ANCHORS[i],
                    })
                };
                self.post
                    .yolov5(&[head(0)?, head(1)?, head(2)?], min_score, out)?;
            }
            YoloLayout::Yolov8 => {
                // Three outputs per head with the score sum, two without.
                let per = if model.outputs() >= 9 { 3 } else { 2 };
                let head = |i: usize| -> Result<Yolov8Head<'_>, DetectError> {
                    let (boxes, (grid_h, grid_w)) = t(per * i)?;
                    Ok(Yolov8Head {
                        boxes,
                        scores: t(per * i + 1)?.0,
                        score_sum: if per == 3 {
                            Some(t(per * i + 2)?.0)
                        } else {
                            None
                        },
                        grid_h,
                        grid_w,
                    })
                };
                self.post
                    .yolov8(&[head(0)?, head(1)?, head(2)?], min_score, out)?;
            }
            YoloLayout::Yolox => {
                let head = |i: usize| {
                    t(i).map(|(tensor, (grid_h, grid_w))| YoloxHead {
                        tensor,
                        grid_h,
                        grid_w,
                    })
                };
                self.post
                    .yolox(&[head(0)?, head(1)?, head(2)?], min_score, out)?;
            }
        }
        let letterbox = Letterbox::fit(p.width, p.height, w, h);
        for d in out.iter_mut() {
            d.bbox = letterbox.undo(d.bbox);
        }
        Ok(())
    }

    fn class_name(&self, class_id: u16) -> &'static str {
        CocoLabels::Contiguous80.name(class_id)
    }

    fn class_id(&self, name: &str) -> Option<u16> {
        CocoLabels::Contiguous80.id(name)
    }

    fn tensor_bytes(&self) -> usize {
        self.model.bound_bytes()
    }
}
