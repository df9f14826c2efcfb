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
//! was letterboxed into it, [`Letterbox::undo`] maps them back.

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

/// How a picture was letterboxed into the model input: scaled by `scale`
/// (same on both axes) and offset by `pad_x`, `pad_y` input pixels.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Letterbox {
    /// Source picture width in pixels.
    pub src_width: u32,
    /// Source picture height in pixels.
    pub src_height: u32,
    /// Model input width in pixels.
    pub dst_width: u32,
    /// Model input height in pixels.
    pub dst_height: u32,
    /// Input pixels per source pixel.
    pub scale: f32,
    /// Left padding in input pixels.
    pub pad_x: f32,
    /// Top padding in input pixels.
    pub pad_y: f32,
}

impl Letterbox {
    /// The centred letterbox the zoo's `convert_image_with_letterbox` makes:
    /// the largest uniform scale that fits, the scaled size rounded to whole
    /// pixels, the padding split evenly (odd pixel at the right/bottom).
    pub fn fit(src_width: u32, src_height: u32, dst_width: u32, dst_height: u32) -> Letterbox {
        let (sw, sh) = (src_width.max(1) as f32, src_height.max(1) as f32);
        let (dw, dh) = (dst_width as f32, dst_height as f32);
        let scale = (dw / sw).min(dh / sh);
        let (new_w, new_h) = ((sw * scale).round(), (sh * scale).round());
        Letterbox {
            src_width,
            src_height,
            dst_width,
            dst_height,
            scale,
            pad_x: ((dw - new_w) / 2.0).floor(),
            pad_y: ((dh - new_h) / 2.0).floor(),
        }
    }

    /// Maps a box normalised to the model input to one normalised to the
    /// source picture, clipped to it.
    pub fn undo(&self, b: BBox) -> BBox {
        let (dw, dh) = (self.dst_width as f32, self.dst_height as f32);
        let sx = self.scale * self.src_width.max(1) as f32;
        let sy = self.scale * self.src_height.max(1) as f32;
        let x = |v: f32| ((v * dw - self.pad_x) / sx).clamp(0.0, 1.0);
        let y = |v: f32| ((v * dh - self.pad_y) / sy).clamp(0.0, 1.0);
        BBox {
            x0: x(b.x0),
            y0: y(b.y0),
            x1: x(b.x1),
            y1: y(b.y1),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INPUT: u32 = 64;

    /// Quantises like the NPU does: `round(v / scale) + zp`, saturated.
    fn quantise(values: &[f32], zero_point: i32, scale: f32) -> Vec<i8> {
        values
            .iter()
            .map(|v| ((v / scale).round() as i32 + zero_point).clamp(-128, 127) as i8)
            .collect()
    }

    /// An NCHW tensor of `channels` planes of `gh` x `gw`, zero-filled.
    struct Nchw {
        data: Vec<f32>,
        gh: usize,
        gw: usize,
    }

    impl Nchw {
        fn new(channels: usize, gh: usize, gw: usize) -> Nchw {
            Nchw {
                data: vec![0.0; channels * gh * gw],
                gh,
                gw,
            }
        }
        fn set(&mut self, channel: usize, row: usize, col: usize, v: f32) {
            self.data[(channel * self.gh + row) * self.gw + col] = v;
        }
    }

    fn assert_box(b: BBox, px: [f32; 4], tolerance_px: f32) {
        let got = [b.x0, b.y0, b.x1, b.y1].map(|v| v * INPUT as f32);
        for (g, w) in got.iter().zip(px) {
            assert!((g - w).abs() <= tolerance_px, "box {got:?} vs {px:?}");
        }
    }

    // ---- YOLOv5 ----

    const C: usize = 3;

    fn v5_heads() -> [Nchw; 3] {
        [8, 4, 2].map(|g| Nchw::new(3 * (5 + C), g, g))
    }

    /// Writes one object at (row, col) of anchor `a` in `t`.
    fn v5_object(
        t: &mut Nchw,
        a: usize,
        row: usize,
        col: usize,
        xywh: [f32; 4],
        obj: f32,
        cls: [f32; C],
    ) {
        let base = a * (5 + C);
        for (k, v) in xywh.iter().enumerate() {
            t.set(base + k, row, col, *v);
        }
        t.set(base + 4, row, col, obj);
        for (k, v) in cls.iter().enumerate() {
            t.set(base + 5 + k, row, col, *v);
        }
    }

    fn run_v5(heads: &[Nchw; 3], quantised: bool) -> Detections {
        let q: Vec<Vec<i8>> = heads
            .iter()
            .map(|h| quantise(&h.data, -128, 1.0 / 255.0))
            .collect();
        let raw: Vec<Yolov5Head<'_>> = heads
            .iter()
            .zip(&q)
            .enumerate()
            .map(|(i, (h, q))| Yolov5Head {
                tensor: if quantised {
                    RawTensor::I8 {
                        data: q,
                        zero_point: -128,
                        scale: 1.0 / 255.0,
                    }
                } else {
                    RawTensor::F32(&h.data)
                },
                grid_h: h.gh,
                grid_w: h.gw,
                anchors: YOLOV5_COCO_ANCHORS[i],
            })
            .collect();
        let mut post = YoloPostprocess::new(INPUT, INPUT, C, 0.45);
        let mut out = Detections::new();
        post.yolov5(&raw, 0.25, &mut out).unwrap();
        out
    }

    #[test]
    fn yolov5_decodes_a_known_box_f32_and_int8() {
        let mut heads = v5_heads();
        // Stride 8 head, anchor 1 (16x30), cell row 3 col 5:
        // centre ((0.5*2 - 0.5 + 5) * 8, (0.75*2 - 0.5 + 3) * 8) = (44, 32),
        // size ((0.5*2)^2 * 16, (0.5*2)^2 * 30) = (16, 30).
        v5_object(
            &mut heads[0],
            1,
            3,
            5,
            [0.5, 0.75, 0.5, 0.5],
            0.9,
            [0.1, 0.8, 0.2],
        );
        for quantised in [false, true] {
            let out = run_v5(&heads, quantised);
            assert_eq!(out.len(), 1, "quantised {quantised}");
            assert_eq!(out[0].class_id, 1);
            assert!((out[0].score - 0.72).abs() < 0.01, "{}", out[0].score);
            assert_box(out[0].bbox, [36.0, 17.0, 52.0, 47.0], 0.3);
        }
    }

    #[test]
    fn yolov5_background_gives_nothing() {
        let heads = v5_heads();
        assert!(run_v5(&heads, false).is_empty());
        assert!(run_v5(&heads, true).is_empty());
    }

    /// One object seen by two neighbouring cells and by the stride 16 head,
    /// and another class at the same place.
    fn v5_merge_scene() -> [Nchw; 3] {
        let mut heads = v5_heads();
        v5_object(
            &mut heads[0],
            1,
            3,
            5,
            [0.5, 0.75, 0.5, 0.5],
            0.9,
            [0.1, 0.8, 0.2],
        );
        // Cell col 6 with x 0.0 predicts nearly the same box: (0 - 0.5 + 6) * 8 = 44.
        v5_object(
            &mut heads[0],
            1,
            3,
            6,
            [0.02, 0.75, 0.5, 0.5],
            0.7,
            [0.1, 0.8, 0.2],
        );
        // The stride 16 head sees it too, anchor 0 (30x61): near enough.
        // Centre ((2*0.625 - 0.5 + 2) * 16, (2*0.25 - 0.5 + 2) * 16) = (44, 32),
        // size (0.73^2 * 30, 0.70^2 * 61) = (16.0, 30.0).
        v5_object(
            &mut heads[1],
            0,
            2,
            2,
            [0.625, 0.25, 0.365, 0.35],
            0.6,
            [0.0, 0.9, 0.0],
        );
        // Another class at the same place is kept.
        v5_object(
            &mut heads[0],
            2,
            3,
            5,
            [0.5, 0.75, 0.35, 0.57],
            0.85,
            [0.9, 0.0, 0.0],
        );
        heads
    }

    #[test]
    fn yolov5_neighbouring_cells_merge() {
        let heads = v5_merge_scene();
        for quantised in [false, true] {
            let out = run_v5(&heads, quantised);
            let classes: Vec<u16> = out.iter().map(|d| d.class_id).collect();
            assert_eq!(classes, [0, 1], "quantised {quantised}: {out:?}");
            assert!((out[1].score - 0.72).abs() < 0.01);
        }
    }

    // ---- YOLOv8 ----

    const BINS: usize = 16;

    /// Box logits putting distance `d` (0..15, halves allowed) on one side.
    fn v8_side(t: &mut Nchw, side: usize, row: usize, col: usize, d: f32) {
        let lo = d.floor() as usize;
        t.set(side * BINS + lo, row, col, 20.0);
        if d > lo as f32 {
            t.set(side * BINS + lo + 1, row, col, 20.0);
        }
    }

    fn run_v8(boxes: &Nchw, scores: &Nchw, sum: Option<&Nchw>, quantised: bool) -> Detections {
        let qb = quantise(&boxes.data, 0, 20.0 / 127.0);
        let qs = quantise(&scores.data, -128, 1.0 / 255.0);
        let qsum = sum.map(|s| quantise(&s.data, -128, 3.0 / 255.0));
        let head = if quantised {
            Yolov8Head {
                boxes: RawTensor::I8 {
                    data: &qb,
                    zero_point: 0,
                    scale: 20.0 / 127.0,
                },
                scores: RawTensor::I8 {
                    data: &qs,
                    zero_point: -128,
                    scale: 1.0 / 255.0,
                },
                score_sum: qsum.as_deref().map(|data| RawTensor::I8 {
                    data,
                    zero_point: -128,
                    scale: 3.0 / 255.0,
                }),
                grid_h: boxes.gh,
                grid_w: boxes.gw,
            }
        } else {
            Yolov8Head {
                boxes: RawTensor::F32(&boxes.data),
                scores: RawTensor::F32(&scores.data),
                score_sum: sum.map(|s| RawTensor::F32(&s.data)),
                grid_h: boxes.gh,
                grid_w: boxes.gw,
            }
        };
        let mut post = YoloPostprocess::new(INPUT, INPUT, C, 0.45);
        let mut out = Detections::new();
        post.yolov8(&[head], 0.25, &mut out).unwrap();
        out
    }

    /// Stride 8 head with one object at row 2 col 3 (centre 28, 20):
    /// left 2, top 1, right 3, bottom 4.5 strides -> (12, 12, 52, 56).
    fn v8_tensors() -> (Nchw, Nchw, Nchw) {
        let (mut boxes, mut scores, mut sum) = (
            Nchw::new(4 * BINS, 8, 8),
            Nchw::new(C, 8, 8),
            Nchw::new(1, 8, 8),
        );
        for (side, d) in [2.0, 1.0, 3.0, 4.5].into_iter().enumerate() {
            v8_side(&mut boxes, side, 2, 3, d);
        }
        for (k, v) in [0.1, 0.05, 0.9].into_iter().enumerate() {
            scores.set(k, 2, 3, v);
        }
        sum.set(0, 2, 3, 1.05);
        (boxes, scores, sum)
    }

    #[test]
    fn yolov8_decodes_a_known_box_with_and_without_score_sum() {
        let (boxes, scores, sum) = v8_tensors();
        for quantised in [false, true] {
            for s in [None, Some(&sum)] {
                let out = run_v8(&boxes, &scores, s, quantised);
                assert_eq!(out.len(), 1, "quantised {quantised}");
                assert_eq!(out[0].class_id, 2);
                assert!((out[0].score - 0.9).abs() < 0.005);
                assert_box(out[0].bbox, [12.0, 12.0, 52.0, 56.0], 0.05);
            }
        }
    }

    #[test]
    fn yolov8_score_sum_skips_cells() {
        let (boxes, scores, mut sum) = v8_tensors();
        sum.set(0, 2, 3, 0.0);
        assert!(run_v8(&boxes, &scores, Some(&sum), false).is_empty());
    }

    #[test]
    fn yolov8_background_gives_nothing() {
        let (boxes, scores) = (Nchw::new(4 * BINS, 8, 8), Nchw::new(C, 8, 8));
        assert!(run_v8(&boxes, &scores, None, false).is_empty());
        assert!(run_v8(&boxes, &scores, None, true).is_empty());
    }

    #[test]
    fn yolov8_neighbouring_cells_merge() {
        let (mut boxes, mut scores, _) = v8_tensors();
        // Cell row 2 col 4 (centre 36, 20) predicting (12, 12, 52, 56) too:
        // left 3, top 1, right 2, bottom 4.5.
        for (side, d) in [3.0, 1.0, 2.0, 4.5].into_iter().enumerate() {
            v8_side(&mut boxes, side, 2, 4, d);
        }
        scores.set(2, 2, 4, 0.6);
        for quantised in [false, true] {
            let out = run_v8(&boxes, &scores, None, quantised);
            assert_eq!(out.len(), 1);
            assert!((out[0].score - 0.9).abs() < 0.005);
        }
    }

    #[test]
    fn yolov8_rejects_bad_shapes() {
        let (boxes, scores, _) = v8_tensors();
        let mut post = YoloPostprocess::new(INPUT, INPUT, C, 0.45);
        let mut out = Detections::new();
        let head = Yolov8Head {
            boxes: RawTensor::F32(&boxes.data[1..]),
            scores: RawTensor::F32(&scores.data),
            score_sum: None,
            grid_h: 8,
            grid_w: 8,
        };
        assert!(matches!(
            post.yolov8(&[head], 0.25, &mut out),
            Err(DetectError::Engine(_))
        ));
        let head = Yolov8Head {
            boxes: RawTensor::F32(&boxes.data),
            scores: RawTensor::F32(&scores.data),
            score_sum: None,
            grid_h: 4,
            grid_w: 8,
        };
        assert!(post.yolov8(&[head], 0.25, &mut out).is_err());
    }

    // ---- NC1HWC2 (the NPU's native layout) ----

    /// Channels per block, as RK3588 uses for int8.
    const C2: usize = 16;
    /// What the padding holds: a correct decoder never reads it, and were it
    /// read this value would win every argmax.
    const POISON: i8 = 127;

    /// An int8 tensor laid out NC1HWC2, rows padded to `gw + 3` cells.
    struct Native {
        data: Vec<i8>,
        channels: usize,
        gh: usize,
        gw: usize,
        ws: usize,
    }

    impl Native {
        /// Re-lays NCHW `q` (`gh` x `gw` planes) out as NC1HWC2 with [`C2`]
        /// channels per block.
        fn from_nchw(q: &[i8], gh: usize, gw: usize) -> Native {
            let channels = q.len() / (gh * gw);
            let ws = gw + 3;
            let mut data = vec![POISON; channels.div_ceil(C2) * gh * ws * C2];
            for c in 0..channels {
                for row in 0..gh {
                    for col in 0..gw {
                        data[((c / C2) * gh * ws + row * ws + col) * C2 + c % C2] =
                            q[(c * gh + row) * gw + col];
                    }
                }
            }
            Native {
                data,
                channels,
                gh,
                gw,
                ws,
            }
        }

        fn tensor(&self, zero_point: i32, scale: f32) -> RawTensor<'_> {
            RawTensor::i8_nc1hwc2(
                &self.data,
                zero_point,
                scale,
                self.channels,
                self.gh,
                self.gw,
                self.ws,
                C2,
            )
            .expect("a whole NC1HWC2 tensor")
        }
    }

    fn run_v5_native(heads: &[Nchw; 3]) -> Detections {
        let native: Vec<Native> = heads
            .iter()
            .map(|h| Native::from_nchw(&quantise(&h.data, -128, 1.0 / 255.0), h.gh, h.gw))
            .collect();
        let raw: Vec<Yolov5Head<'_>> = native
            .iter()
            .enumerate()
            .map(|(i, n)| Yolov5Head {
                tensor: n.tensor(-128, 1.0 / 255.0),
                grid_h: n.gh,
                grid_w: n.gw,
                anchors: YOLOV5_COCO_ANCHORS[i],
            })
            .collect();
        let mut post = YoloPostprocess::new(INPUT, INPUT, C, 0.45);
        let mut out = Detections::new();
        post.yolov5(&raw, 0.25, &mut out).unwrap();
        out
    }

    fn run_v8_native(boxes: &Nchw, scores: &Nchw, sum: Option<&Nchw>) -> Detections {
        let (gh, gw) = (boxes.gh, boxes.gw);
        let nb = Native::from_nchw(&quantise(&boxes.data, 0, 20.0 / 127.0), gh, gw);
        let ns = Native::from_nchw(&quantise(&scores.data, -128, 1.0 / 255.0), gh, gw);
        let nsum = sum.map(|s| Native::from_nchw(&quantise(&s.data, -128, 3.0 / 255.0), gh, gw));
        let head = Yolov8Head {
            boxes: nb.tensor(0, 20.0 / 127.0),
            scores: ns.tensor(-128, 1.0 / 255.0),
            score_sum: nsum.as_ref().map(|n| n.tensor(-128, 3.0 / 255.0)),
            grid_h: gh,
            grid_w: gw,
        };
        let mut post = YoloPostprocess::new(INPUT, INPUT, C, 0.45);
        let mut out = Detections::new();
        post.yolov8(&[head], 0.25, &mut out).unwrap();
        out
    }

    #[test]
    fn nc1hwc2_maps_logical_indices_to_native_offsets() {
        // 20 channels (C1 = 2, 12 padding channels in the second block), 2x3 cells,
        // rows of 6 cells: every logical value is found where NCHW puts it.
        let q: Vec<i8> = (0..20 * 2 * 3).map(|v| (v % 100) as i8).collect();
        let n = Native::from_nchw(&q, 2, 3);
        assert_eq!(n.data.len(), 2 * 2 * 6 * 16);
        let t = n.tensor(0, 1.0);
        assert_eq!(t.len(), q.len());
        for (i, &v) in q.iter().enumerate() {
            assert_eq!(t.get(i), f32::from(v), "logical {i}");
        }
        // Channels 1, 10, 19 (the last in the second block) of cell (1, 2):
        // values 11, 65, 19.
        let cell = 3 + 2;
        assert_eq!(t.argmax(6 + cell, 9 * 6, 3), (1, 65.0));
        assert_eq!(t.argmax(19 * 6 + cell, 6, 1), (0, 19.0));
    }

    #[test]
    fn yolov5_nc1hwc2_decodes_like_nchw() {
        assert!(run_v5_native(&v5_heads()).is_empty());
        // The merge scene: 24 channels per head, so anchors 1 and 2
        // straddle the two channel blocks.
        let heads = v5_merge_scene();
        let (nchw, native) = (run_v5(&heads, true), run_v5_native(&heads));
        assert_eq!(nchw.len(), 2, "{nchw:?}");
        assert_eq!(native, nchw);
    }

    #[test]
    fn yolov8_nc1hwc2_decodes_like_nchw() {
        let (mut boxes, mut scores, sum) = v8_tensors();
        for s in [None, Some(&sum)] {
            let native = run_v8_native(&boxes, &scores, s);
            assert_eq!(native.len(), 1);
            assert_eq!(native, run_v8(&boxes, &scores, s, true));
            assert_box(native[0].bbox, [12.0, 12.0, 52.0, 56.0], 0.05);
        }
        // With the neighbouring cell of `yolov8_neighbouring_cells_merge`.
        for (side, d) in [3.0, 1.0, 2.0, 4.5].into_iter().enumerate() {
            v8_side(&mut boxes, side, 2, 4, d);
        }
        scores.set(2, 2, 4, 0.6);
        let native = run_v8_native(&boxes, &scores, None);
        assert_eq!(native, run_v8(&boxes, &scores, None, true));
        let empty = (Nchw::new(4 * BINS, 8, 8), Nchw::new(C, 8, 8));
        assert!(run_v8_native(&empty.0, &empty.1, None).is_empty());
    }

    #[test]
    fn a_short_or_malformed_nc1hwc2_tensor_is_a_clear_error() {
        // 24 channels of 4x4 with stride 5: 2 blocks x 4 rows x 5 x 16 = 640.
        let q = vec![0i8; 639];
        let why = |e: DetectError| match e {
            DetectError::Engine(why) => why,
            e => panic!("{e}"),
        };
        let e = why(RawTensor::i8_nc1hwc2(&q, 0, 1.0, 24, 4, 4, 5, C2).unwrap_err());
        assert!(
            e.contains("needs 640 values") && e.contains("holds 639"),
            "{e}"
        );
        let e = why(RawTensor::i8_nc1hwc2(&q, 0, 1.0, 24, 4, 4, 5, 0).unwrap_err());
        assert!(e.contains("C2 = 0"), "{e}");
        let e = why(RawTensor::i8_nc1hwc2(&q, 0, 1.0, 24, 4, 4, 3, C2).unwrap_err());
        assert!(e.contains("row stride 3 is less than its width 4"), "{e}");
        // Built directly, the decoder refuses it before reading.
        let head = Yolov5Head {
            tensor: RawTensor::I8Nc1hwc2 {
                data: &q,
                zero_point: 0,
                scale: 1.0,
                channels: 3 * (5 + C),
                height: 4,
                width: 4,
                w_stride: 5,
                c2: C2,
            },
            grid_h: 4,
            grid_w: 4,
            anchors: YOLOV5_COCO_ANCHORS[0],
        };
        let mut post = YoloPostprocess::new(INPUT, INPUT, C, 0.45);
        let mut out = Detections::new();
        let e = why(post.yolov5(&[head], 0.25, &mut out).unwrap_err());
        assert!(
            e.starts_with("head 0 output: NC1HWC2") && e.contains("holds 639"),
            "{e}"
        );
        let q = vec![0i8; 640];
        assert!(RawTensor::i8_nc1hwc2(&q, 0, 1.0, 24, 4, 4, 5, C2).is_ok());
    }

    // ---- YOLOX ----

    fn run_yolox(t: &Nchw, quantised: bool) -> Detections {
        // Box channels need a signed range; one scale for the whole tensor
        // as the NPU does.
        let scale = 4.0 / 127.0;
        let q = quantise(&t.data, 0, scale);
        let tensor = if quantised {
            RawTensor::I8 {
                data: &q,
                zero_point: 0,
                scale,
            }
        } else {
            RawTensor::F32(&t.data)
        };
        let head = YoloxHead {
            tensor,
            grid_h: t.gh,
            grid_w: t.gw,
        };
        let mut post = YoloPostprocess::new(INPUT, INPUT, C, 0.45);
        let mut out = Detections::new();
        post.yolox(&[head], 0.25, &mut out).unwrap();
        out
    }

    fn yolox_object(t: &mut Nchw, row: usize, col: usize, xywh: [f32; 4], obj: f32, cls: [f32; C]) {
        for (k, v) in xywh.iter().enumerate() {
            t.set(k, row, col, *v);
        }
        t.set(4, row, col, obj);
        for (k, v) in cls.iter().enumerate() {
            t.set(5 + k, row, col, *v);
        }
    }

    #[test]
    fn yolox_decodes_a_known_box() {
        // Stride 16 head (4x4), row 1 col 2: centre ((0.5 + 2) * 16, (0.25 + 1) * 16)
        // = (40, 20), size (e^ln2 * 16, e^0 * 16) = (32, 16).
        let mut t = Nchw::new(5 + C, 4, 4);
        yolox_object(
            &mut t,
            1,
            2,
            [0.5, 0.25, 2f32.ln(), 0.0],
            0.95,
            [0.9, 0.1, 0.0],
        );
        for quantised in [false, true] {
            let out = run_yolox(&t, quantised);
            assert_eq!(out.len(), 1);
            assert_eq!(out[0].class_id, 0);
            assert!((out[0].score - 0.855).abs() < 0.03, "{}", out[0].score);
            assert_box(out[0].bbox, [24.0, 12.0, 56.0, 28.0], 0.6);
        }
    }

    #[test]
    fn yolox_background_and_merging() {
        let mut t = Nchw::new(5 + C, 4, 4);
        assert!(run_yolox(&t, false).is_empty());
        assert!(run_yolox(&t, true).is_empty());
        yolox_object(
            &mut t,
            1,
            2,
            [0.5, 0.25, 2f32.ln(), 0.0],
            0.95,
            [0.9, 0.1, 0.0],
        );
        // Cell col 1 predicting nearly the same box.
        yolox_object(
            &mut t,
            1,
            1,
            [1.45, 0.25, 2f32.ln(), 0.0],
            0.9,
            [0.8, 0.1, 0.0],
        );
        for quantised in [false, true] {
            let out = run_yolox(&t, quantised);
            assert_eq!(out.len(), 1);
            assert!((out[0].score - 0.855).abs() < 0.03);
        }
    }

    #[test]
    fn decoding_does_not_allocate() {
        use crate::alloc_count::thread_counts;
        let mut v5 = v5_heads();
        v5_object(
            &mut v5[0],
            1,
            3,
            5,
            [0.5, 0.75, 0.5, 0.5],
            0.9,
            [0.1, 0.8, 0.2],
        );
        let v5: Vec<Yolov5Head<'_>> = v5
            .iter()
            .enumerate()
            .map(|(i, h)| Yolov5Head {
                tensor: RawTensor::F32(&h.data),
                grid_h: h.gh,
                grid_w: h.gw,
                anchors: YOLOV5_COCO_ANCHORS[i],
            })
            .collect();
        let (boxes, scores, sum) = v8_tensors();
        let q = quantise(&boxes.data, 0, 20.0 / 127.0);
        let v8 = [Yolov8Head {
            boxes: RawTensor::I8 {
                data: &q,
                zero_point: 0,
                scale: 20.0 / 127.0,
            },
            scores: RawTensor::F32(&scores.data),
            score_sum: Some(RawTensor::F32(&sum.data)),
            grid_h: 8,
            grid_w: 8,
        }];
        let nb = Native::from_nchw(&q, 8, 8);
        let v8n = [Yolov8Head {
            boxes: nb.tensor(0, 20.0 / 127.0),
            ..v8[0]
        }];
        let mut x = Nchw::new(5 + C, 4, 4);
        yolox_object(
            &mut x,
            1,
            2,
            [0.5, 0.25, 2f32.ln(), 0.0],
            0.95,
            [0.9, 0.1, 0.0],
        );
        let yx = [YoloxHead {
            tensor: RawTensor::F32(&x.data),
            grid_h: 4,
            grid_w: 4,
        }];
        let mut post = YoloPostprocess::new(INPUT, INPUT, C, 0.45);
        let mut out = Detections::new();
        let before = thread_counts();
        for _ in 0..3 {
            post.yolov5(&v5, 0.25, &mut out).unwrap();
            assert_eq!(out.len(), 1);
            post.yolov8(&v8, 0.25, &mut out).unwrap();
            assert_eq!(out.len(), 1);
            post.yolov8(&v8n, 0.25, &mut out).unwrap();
            assert_eq!(out.len(), 1);
            post.yolox(&yx, 0.25, &mut out).unwrap();
            assert_eq!(out.len(), 1);
        }
        assert_eq!(thread_counts().ours, before.ours);
    }

    // ---- letterbox ----

    #[test]
    fn letterbox_round_trip() {
        let lb = Letterbox::fit(1280, 720, 640, 640);
        assert_eq!((lb.scale, lb.pad_x, lb.pad_y), (0.5, 0.0, 140.0));
        let model = BBox {
            x0: 0.25,
            y0: 140.0 / 640.0,
            x1: 0.75,
            y1: 320.0 / 640.0,
        };
        let src = lb.undo(model);
        let want = BBox {
            x0: 0.25,
            y0: 0.0,
            x1: 0.75,
            y1: 0.5,
        };
        for (g, w) in [src.x0, src.y0, src.x1, src.y1]
            .iter()
            .zip([want.x0, want.y0, want.x1, want.y1])
        {
            assert!((g - w).abs() < 1e-6, "{src:?}");
        }
        // Boxes reaching into the padding are clipped to the picture.
        let clipped = lb.undo(BBox {
            x0: 0.0,
            y0: 0.0,
            x1: 1.0,
            y1: 1.0,
        });
        assert_eq!((clipped.y0, clipped.y1), (0.0, 1.0));

        let tall = Letterbox::fit(480, 640, 640, 640);
        assert_eq!((tall.scale, tall.pad_x, tall.pad_y), (1.0, 80.0, 0.0));
    }
}
