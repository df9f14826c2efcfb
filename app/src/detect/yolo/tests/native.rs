//! Tests of the NPU's native NC1HWC2 int8 layout
//! ([`RawTensor::i8_nc1hwc2`]): NCHW test tensors re-laid out with poisoned
//! padding must decode exactly as their NCHW originals do, and short or
//! malformed tensors must be refused before anything is read.

use super::*;

/// Channels per block, as RK3588 uses for int8.
const C2: usize = 16;
/// What the padding holds: a correct decoder never reads it, and were it
/// read this value would win every argmax.
const POISON: i8 = 127;

/// An int8 tensor laid out NC1HWC2, rows padded to `gw + 3` cells.
pub(super) struct Native {
    data: Vec<i8>,
    channels: usize,
    gh: usize,
    gw: usize,
    ws: usize,
}

impl Native {
    /// Re-lays NCHW `q` (`gh` x `gw` planes) out as NC1HWC2 with [`C2`]
    /// channels per block.
    pub(super) fn from_nchw(q: &[i8], gh: usize, gw: usize) -> Native {
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

    pub(super) fn tensor(&self, zero_point: i32, scale: f32) -> RawTensor<'_> {
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
