//! Output decoders for the YOLO models RK3588 users run on the NPU, as
//! exported by Rockchip's `airockchip/rknn_model_zoo` (read from its
//! `examples/*/cpp/postprocess.cc`), so a `.rknn` file from that zoo needs no
//! other glue than its output tensors.
//!
//! All three layouts are batch 1, NCHW, one tensor (or group of tensors) per
//! detection head, usually strides 8, 16 and 32; values arrive either as
//! `f32` or as `i8` with an affine `(zero_point, scale)` per tensor, which is
//! what `rknn_outputs_get` without `want_float`, or zero-copy output memory,
//! gives ([`RawTensor`]):
//!
//! - **YOLOv5** (`examples/yolov5`): one tensor per head, `[1, 3*(5+C), H, W]`:
//!   for each of the head's 3 anchors, channels x, y, w, h, objectness, C
//!   class scores, all already sigmoided by the exported model. Centre
//!   `(2x - 0.5 + col) * stride`, size `(2w)^2 * anchor`; score =
//!   objectness x best class. ([`YoloPostprocess::yolov5`])
//! - **YOLOv8 / YOLO11** (`examples/yolov8`, `examples/yolo11`): per head a box
//!   tensor `[1, 4*R, H, W]` of DFL logits (R = 16 bins for each of the left,
//!   top, right, bottom distances), a class tensor `[1, C, H, W]` (sigmoided),
//!   and optionally a `[1, 1, H, W]` score sum the zoo adds to skip empty cells
//!   fast. Distances are softmax expectations over the bins, in strides from
//!   the cell centre; score = best class. ([`YoloPostprocess::yolov8`])
//! - **YOLOX** (`examples/yolox`): one tensor per head, `[1, 5+C, H, W]`,
//!   anchor-free: centre `(x + col) * stride`, size `exp(w) * stride`,
//!   objectness and classes sigmoided in the model; score = objectness x best
//!   class. ([`YoloPostprocess::yolox`])
//!
//! (The RV1106 NHWC variants and RKNPU1's u8 outputs in the same files are not
//! covered: RK3588 is RKNPU2.) Candidates go through the shared
//! fixed-capacity [`Candidates`] list and per-class NMS, so decoding allocates
//! nothing. Boxes come out normalised to the model input; when the picture
//! was letterboxed into it, [`Letterbox::undo`](super::letterbox::Letterbox::undo)
//! maps them back.

use super::nms::{Candidates, MAX_CANDIDATES};
use super::{BBox, DetectError, Detections};

/// Most DFL bins per box side a YOLOv8 head may have (the zoo's models use 16).
pub const MAX_DFL_BINS: usize = 32;

/// The anchors (width, height in input pixels) of the COCO YOLOv5 models for
/// the stride 8, 16 and 32 heads, as in the zoo's `postprocess.cc`.
pub const YOLOV5_COCO_ANCHORS: [[[f32; 2]; 3]; 3] = [
    [[10.0, 13.0], [16.0, 30.0], [33.0, 23.0]],
    [[30.0, 61.0], [62.0, 45.0], [59.0, 119.0]],
    [[116.0, 90.0], [156.0, 198.0], [373.0, 326.0]],
];

/// One raw output tensor as the runtime hands it over.
///
/// The decoders index every tensor NCHW-linearly (`channel * H * W + row * W
/// + col`); a tensor kept in the NPU's native layout maps that logical index
/// to its own offset ([`RawTensor::I8Nc1hwc2`]), so it is read in place.
#[derive(Clone, Copy, Debug)]
pub enum RawTensor<'a> {
    /// Float output.
    F32(&'a [f32]),
    /// Affine-quantised int8 output: `value = (q - zero_point) * scale`.
    I8 {
        /// The quantised values.
        data: &'a [i8],
        /// The tensor's zero point.
        zero_point: i32,
        /// The tensor's scale (positive).
        scale: f32,
    },
    /// Affine-quantised int8 output in RKNPU2's native NC1HWC2 layout
    /// (`[1, C1, H, W, C2]`, C1 = ceil(C / C2), rows `w_stride` cells long):
    /// the logical NCHW element (c, row, col) is at
    /// `((c / c2) * height * w_stride + row * w_stride + col) * c2 + c % c2`.
    /// Padding channels and columns are never read. Build it with
    /// [`RawTensor::i8_nc1hwc2`] to have the shape checked up front (the
    /// decoders check it again).
    I8Nc1hwc2 {
        /// The quantised values, `ceil(channels / c2) * height * w_stride * c2`
        /// of them at least.
        data: &'a [i8],
        /// The tensor's zero point.
        zero_point: i32,
        /// The tensor's scale (positive).
        scale: f32,
        /// Logical channels (C of NCHW).
        channels: usize,
        /// Rows (H).
        height: usize,
        /// Columns (W).
        width: usize,
        /// Cells per stored row (W plus padding).
        w_stride: usize,
        /// Channels per block (C2; 16 for int8 on RK3588).
        c2: usize,
    },
}

impl<'a> RawTensor<'a> {
    /// An NC1HWC2 int8 tensor, refused with a clear error when `data` is too
    /// short for the shape, `c2` is 0 or `w_stride` is less than `width`.
    #[allow(clippy::too_many_arguments)]
    pub fn i8_nc1hwc2(
        data: &'a [i8],
        zero_point: i32,
        scale: f32,
        channels: usize,
        height: usize,
        width: usize,
        w_stride: usize,
        c2: usize,
    ) -> Result<RawTensor<'a>, DetectError> {
        let t = RawTensor::I8Nc1hwc2 {
            data,
            zero_point,
            scale,
            channels,
            height,
            width,
            w_stride,
            c2,
        };
        match t.layout_error() {
            None => Ok(t),
            Some(why) => Err(DetectError::Engine(why)),
        }
    }

    fn len(&self) -> usize {
        match self {
            RawTensor::F32(d) => d.len(),
            RawTensor::I8 { data, .. } => data.len(),
            RawTensor::I8Nc1hwc2 {
                channels,
                height,
                width,
                ..
            } => channels.saturating_mul(*height).saturating_mul(*width),
        }
    }

    /// For an NC1HWC2 tensor: why its shape is unusable or `data` does not
    /// hold all of it, if so.
    fn layout_error(&self) -> Option<String> {
        let RawTensor::I8Nc1hwc2 {
            data,
            channels,
            height,
            width,
            w_stride,
            c2,
            ..
        } = *self
        else {
            return None;
        };
        if c2 == 0 {
            return Some("NC1HWC2 tensor with C2 = 0 channels per block".into());
        }
        if w_stride < width {
            return Some(format!(
                "NC1HWC2 tensor: row stride {w_stride} is less than its width {width}"
            ));
        }
        let need = channels
            .div_ceil(c2)
            .checked_mul(height)
            .and_then(|n| n.checked_mul(w_stride))
            .and_then(|n| n.checked_mul(c2));
        match need {
            Some(need) if data.len() >= need => None,
            _ => Some(format!(
                "NC1HWC2 tensor [1, {}, {height}, {width}, {c2}] (w_stride {w_stride}) needs {} \
                 values, the buffer holds {}",
                channels.div_ceil(c2),
                need.map_or_else(|| "more than usize::MAX".to_string(), |n| n.to_string()),
                data.len()
            )),
        }
    }

    /// The raw int8 value at logical (NCHW-linear) index `i` of an int8
    /// tensor; `None` for a float one.
    #[inline]
    fn raw_i8(&self, i: usize) -> Option<i8> {
        match *self {
            RawTensor::F32(_) => None,
            RawTensor::I8 { data, .. } => Some(data[i]),
            RawTensor::I8Nc1hwc2 {
                data,
                height,
                width,
                w_stride,
                c2,
                ..
            } => {
                let plane = height * width;
                let (c, cell) = (i / plane, i % plane);
                let (row, col) = (cell / width, cell % width);
                Some(data[((c / c2) * height * w_stride + row * w_stride + col) * c2 + c % c2])
            }
        }
    }

    #[inline]
    fn get(&self, i: usize) -> f32 {
        match *self {
            RawTensor::F32(d) => d[i],
            RawTensor::I8 {
                data,
                zero_point,
                scale,
            } => (i32::from(data[i]) - zero_point) as f32 * scale,
            RawTensor::I8Nc1hwc2 {
                zero_point, scale, ..
            } => {
                let q = self.raw_i8(i).unwrap_or_default();
                (i32::from(q) - zero_point) as f32 * scale
            }
        }
    }

    /// The largest of `count` values at `start`, `start + step`, ...: its
    /// position in that sequence and its value. For int8 the maximum is
    /// taken on the raw values (dequantising is increasing for a positive
    /// scale), so only the winner is converted.
    #[inline]
    fn argmax(&self, start: usize, step: usize, count: usize) -> (usize, f32) {
        match *self {
            RawTensor::F32(d) => {
                let mut best = (0, f32::NEG_INFINITY);
                for k in 0..count {
                    let v = d[start + k * step];
                    if v > best.1 {
                        best = (k, v);
                    }
                }
                best
            }
            _ if count == 0 => (0, f32::NEG_INFINITY),
            RawTensor::I8 { data, .. } => {
                let mut best = (0, i8::MIN);
                for k in 0..count {
                    let v = data[start + k * step];
                    if k == 0 || v > best.1 {
                        best = (k, v);
                    }
                }
                (best.0, self.get(start + best.0 * step))
            }
            RawTensor::I8Nc1hwc2 { .. } => {
                let mut best = (0, i8::MIN);
                for k in 0..count {
                    let v = self.raw_i8(start + k * step).unwrap_or(i8::MIN);
                    if k == 0 || v > best.1 {
                        best = (k, v);
                    }
                }
                (best.0, self.get(start + best.0 * step))
            }
        }
    }

    /// Checks the length, for int8 the scale, and for NC1HWC2 the layout.
    fn check(&self, what: &str, head: usize, expected: usize) -> Result<(), DetectError> {
        if self.len() != expected {
            return Err(DetectError::Engine(format!(
                "head {head} {what}: {} values, expected {expected}",
                self.len()
            )));
        }
        if let RawTensor::I8 { scale, .. } | RawTensor::I8Nc1hwc2 { scale, .. } = *self {
            if !(scale > 0.0 && scale.is_finite()) {
                return Err(DetectError::Engine(format!(
                    "head {head} {what}: quantisation scale {scale} is not positive"
                )));
            }
        }
        match self.layout_error() {
            None => Ok(()),
            Some(why) => Err(DetectError::Engine(format!("head {head} {what}: {why}"))),
        }
    }
}

/// One YOLOv5 head: `[1, 3*(5+C), grid_h, grid_w]` and its three anchors.
#[derive(Clone, Copy, Debug)]
pub struct Yolov5Head<'a> {
    /// The head's output.
    pub tensor: RawTensor<'a>,
    /// Rows of cells.
    pub grid_h: usize,
    /// Columns of cells.
    pub grid_w: usize,
    /// (width, height) in input pixels of the head's anchors, in channel order.
    pub anchors: [[f32; 2]; 3],
}

/// One YOLOv8 / YOLO11 head as the zoo exports it.
#[derive(Clone, Copy, Debug)]
pub struct Yolov8Head<'a> {
    /// DFL box logits, `[1, 4*R, grid_h, grid_w]`.
    pub boxes: RawTensor<'a>,
    /// Class scores, `[1, C, grid_h, grid_w]`.
    pub scores: RawTensor<'a>,
    /// Per-cell sum of class scores, `[1, 1, grid_h, grid_w]`, if exported.
    pub score_sum: Option<RawTensor<'a>>,
    /// Rows of cells.
    pub grid_h: usize,
    /// Columns of cells.
    pub grid_w: usize,
}

/// One YOLOX head: `[1, 5+C, grid_h, grid_w]`.
#[derive(Clone, Copy, Debug)]
pub struct YoloxHead<'a> {
    /// The head's output.
    pub tensor: RawTensor<'a>,
    /// Rows of cells.
    pub grid_h: usize,
    /// Columns of cells.
    pub grid_w: usize,
}

/// Decodes YOLO outputs into [`Detections`] with a preallocated candidate
/// list; one per inference worker.
#[derive(Debug)]
pub struct YoloPostprocess {
    input_w: f32,
    input_h: f32,
    num_classes: usize,
    iou_threshold: f32,
    candidates: Box<Candidates<MAX_CANDIDATES>>,
}

/// Where a head's cell (row, col) is and how big a stride is, in input pixels.
#[derive(Clone, Copy)]
struct Cells {
    grid_w: usize,
    grid_h: usize,
    stride_x: f32,
    stride_y: f32,
}

impl YoloPostprocess {
    /// A decoder for a model with an `input_width` x `input_height` input and
    /// `num_classes` classes, suppressing same-class boxes whose IoU exceeds
    /// `iou_threshold` (the zoo uses 0.45).
    pub fn new(
        input_width: u32,
        input_height: u32,
        num_classes: usize,
        iou_threshold: f32,
    ) -> YoloPostprocess {
        YoloPostprocess {
            input_w: input_width as f32,
            input_h: input_height as f32,
            num_classes,
            iou_threshold,
            candidates: Box::new(Candidates::new()),
        }
    }

    /// Candidates dropped so far because more than [`MAX_CANDIDATES`]
    /// passed the threshold on one picture.
    pub fn evicted(&self) -> u64 {
        self.candidates.evicted()
    }

    fn cells(&self, head: usize, grid_h: usize, grid_w: usize) -> Result<Cells, DetectError> {
        if grid_h == 0 || grid_w == 0 {
            return Err(DetectError::Engine(format!(
                "head {head}: empty {grid_w}x{grid_h} grid"
            )));
        }
        Ok(Cells {
            grid_w,
            grid_h,
            stride_x: self.input_w / grid_w as f32,
            stride_y: self.input_h / grid_h as f32,
        })
    }

    /// Adds a box given as `[x0, y0, x1, y1]` in input pixels, clipped to
    /// the input.
    fn push(&mut self, class: usize, score: f32, [x0, y0, x1, y1]: [f32; 4]) {
        let bbox = BBox {
            x0: (x0 / self.input_w).clamp(0.0, 1.0),
            y0: (y0 / self.input_h).clamp(0.0, 1.0),
            x1: (x1 / self.input_w).clamp(0.0, 1.0),
            y1: (y1 / self.input_h).clamp(0.0, 1.0),
        };
        if bbox.area() > 0.0 {
            // Class counts fit u16: checked against the tensor sizes already,
            // and no model has 65536 classes.
            let class = u16::try_from(class).unwrap_or(u16::MAX);
            self.candidates.push(class, score, bbox);
        }
    }

    fn finish(&mut self, out: &mut Detections) {
        self.candidates.nms_into(self.iou_threshold, out);
    }

    /// Decodes YOLOv5 heads; keeps boxes whose objectness x class score is at
    /// least `min_score` (cells with objectness below it are skipped).
    pub fn yolov5(
        &mut self,
        heads: &[Yolov5Head<'_>],
        min_score: f32,
        out: &mut Detections,
    ) -> Result<(), DetectError> {
        out.clear();
        self.candidates.clear();
        let per_anchor = 5 + self.num_classes;
        for (h, head) in heads.iter().enumerate() {
            let cells = self.cells(h, head.grid_h, head.grid_w)?;
            let plane = cells.grid_h * cells.grid_w;
            head.tensor.check("output", h, 3 * per_anchor * plane)?;
            let t = head.tensor;
            for (a, &[anchor_w, anchor_h]) in head.anchors.iter().enumerate() {
                let base = a * per_anchor * plane;
                for row in 0..cells.grid_h {
                    for col in 0..cells.grid_w {
                        let at = |channel: usize| base + channel * plane + row * cells.grid_w + col;
                        let objectness = t.get(at(4));
                        if objectness < min_score {
                            continue;
                        }
                        let (class, class_score) = t.argmax(at(5), plane, self.num_classes);
                        let score = objectness * class_score;
                        if score < min_score {
                            continue;
                        }
                        let cx = (t.get(at(0)) * 2.0 - 0.5 + col as f32) * cells.stride_x;
                        let cy = (t.get(at(1)) * 2.0 - 0.5 + row as f32) * cells.stride_y;
                        let w = (t.get(at(2)) * 2.0).powi(2) * anchor_w;
                        let hh = (t.get(at(3)) * 2.0).powi(2) * anchor_h;
                        self.push(
                            class,
                            score,
                            [cx - w / 2.0, cy - hh / 2.0, cx + w / 2.0, cy + hh / 2.0],
                        );
                    }
                }
            }
        }
        self.finish(out);
        Ok(())
    }

    /// Decodes YOLOv8 / YOLO11 heads; keeps boxes whose best class score is
    /// at least `min_score`.
    pub fn yolov8(
        &mut self,
        heads: &[Yolov8Head<'_>],
        min_score: f32,
        out: &mut Detections,
    ) -> Result<(), DetectError> {
        out.clear();
        self.candidates.clear();
        for (h, head) in heads.iter().enumerate() {
            let cells = self.cells(h, head.grid_h, head.grid_w)?;
            let plane = cells.grid_h * cells.grid_w;
            let bins = head.boxes.len() / (4 * plane);
            if bins == 0 || bins > MAX_DFL_BINS {
                return Err(DetectError::Engine(format!(
                    "head {h} boxes: {} values is not 4 x 1..={MAX_DFL_BINS} bins x {plane} cells",
                    head.boxes.len()
                )));
            }
            head.boxes.check("boxes", h, 4 * bins * plane)?;
            head.scores.check("scores", h, self.num_classes * plane)?;
            if let Some(sum) = head.score_sum {
                sum.check("score sum", h, plane)?;
            }
            for row in 0..cells.grid_h {
                for col in 0..cells.grid_w {
                    let cell = row * cells.grid_w + col;
                    if let Some(sum) = head.score_sum {
                        if sum.get(cell) < min_score {
                            continue;
                        }
                    }
                    let (class, score) = head.scores.argmax(cell, plane, self.num_classes);
                    if score < min_score {
                        continue;
                    }
                    let mut dist = [0.0f32; 4];
                    for (side, d) in dist.iter_mut().enumerate() {
                        *d =
                            dfl_expectation(&head.boxes, (side * bins) * plane + cell, plane, bins);
                    }
                    let (cx, cy) = (col as f32 + 0.5, row as f32 + 0.5);
                    self.push(
                        class,
                        score,
                        [
                            (cx - dist[0]) * cells.stride_x,
                            (cy - dist[1]) * cells.stride_y,
                            (cx + dist[2]) * cells.stride_x,
                            (cy + dist[3]) * cells.stride_y,
                        ],
                    );
                }
            }
        }
        self.finish(out);
        Ok(())
    }

    /// Decodes YOLOX heads; keeps boxes whose objectness x class score is at
    /// least `min_score` (cells with objectness below it are skipped).
    pub fn yolox(
        &mut self,
        heads: &[YoloxHead<'_>],
        min_score: f32,
        out: &mut Detections,
    ) -> Result<(), DetectError> {
        out.clear();
        self.candidates.clear();
        let channels = 5 + self.num_classes;
        for (h, head) in heads.iter().enumerate() {
            let cells = self.cells(h, head.grid_h, head.grid_w)?;
            let plane = cells.grid_h * cells.grid_w;
            head.tensor.check("output", h, channels * plane)?;
            let t = head.tensor;
            for row in 0..cells.grid_h {
                for col in 0..cells.grid_w {
                    let cell = row * cells.grid_w + col;
                    let objectness = t.get(4 * plane + cell);
                    if objectness < min_score {
                        continue;
                    }
                    let (class, class_score) = t.argmax(5 * plane + cell, plane, self.num_classes);
                    let score = objectness * class_score;
                    if score < min_score {
                        continue;
                    }
                    let cx = (t.get(cell) + col as f32) * cells.stride_x;
                    let cy = (t.get(plane + cell) + row as f32) * cells.stride_y;
                    let w = t.get(2 * plane + cell).exp() * cells.stride_x;
                    let hh = t.get(3 * plane + cell).exp() * cells.stride_y;
                    self.push(
                        class,
                        score,
                        [cx - w / 2.0, cy - hh / 2.0, cx + w / 2.0, cy + hh / 2.0],
                    );
                }
            }
        }
        self.finish(out);
        Ok(())
    }
}

/// Softmax expectation of `bins` logits at `start`, `start + step`, ...: the
/// distance (in strides) one box side lies from the cell centre.
fn dfl_expectation(t: &RawTensor<'_>, start: usize, step: usize, bins: usize) -> f32 {
    let mut logits = [0.0f32; MAX_DFL_BINS];
    let mut max = f32::NEG_INFINITY;
    for (k, l) in logits[..bins].iter_mut().enumerate() {
        *l = t.get(start + k * step);
        max = max.max(*l);
    }
    let (mut sum, mut weighted) = (0.0, 0.0);
    for (k, l) in logits[..bins].iter().enumerate() {
        let e = (l - max).exp();
        sum += e;
        weighted += e * k as f32;
    }
    weighted / sum
}

#[cfg(test)]
mod tests;
