//! Letterbox geometry: how a picture is fitted, aspect kept, into a model
//! input of another shape, and how boxes found in that input map back to the
//! picture.
//!
//! YOLO models take a square input; a camera picture is scaled uniformly to
//! fit and the rest is border. Whoever places the picture (RGA on the NPU
//! path, `hw::rga::letterbox_rect`) and whoever reads the boxes back (the NPU
//! detector, `hw::npu`) must agree on the same rounding, so the geometry
//! lives here once, beside the decoders (`yolo`) whose boxes it maps. The
//! CPU detector (`ssd`, `preprocess`) stretches instead and needs none of it.

use super::BBox;

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
