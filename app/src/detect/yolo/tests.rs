//! Tests of the YOLO decoders ([`super`]): synthetic output tensors with
//! objects planted at known cells, decoded from `f32` and from quantised
//! `i8` as the NPU hands them, for each of the three layouts; the NPU's
//! native NC1HWC2 layout is tested in [`native`]. Kept apart from the
//! decoders so each file stays one job and readable at its size.

mod native;

use super::*;
use native::Native;

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
