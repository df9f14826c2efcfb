//! The SSD anchor (prior box) generator, computed once when a model loads.
//!
//! TensorFlow's SSD graphs compute their anchors inside the graph with ops
//! (Sqrt, Tile) that tract cannot evaluate, and the box encodings the model
//! emits are offsets from those anchors, so vigil regenerates them in code.
//! This is TF Object Detection's `MultipleGridAnchorGenerator` as configured by
//! `create_ssd_anchors`: per layer a square grid of cells, one anchor per
//! (cell, box spec), scales spaced evenly from `min_scale` to `max_scale`, one
//! box per aspect ratio plus an extra aspect-1 box at the geometric mean of
//! this layer's and the next layer's scale, and the lowest layer reduced to
//! three boxes. Order is layer, then row, then column, then box spec, exactly
//! as the graph concatenates them. For SSD-MobileNetV2-COCO these match
//! TensorFlow's own `Concatenate/concat:0` to about 1e-7.

/// One anchor in centre form, normalised to the model input (0..1), the form
/// the box decoder needs.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Anchor {
    /// Centre, vertical.
    pub cy: f32,
    /// Centre, horizontal.
    pub cx: f32,
    /// Height.
    pub h: f32,
    /// Width.
    pub w: f32,
}

/// The parameters of an SSD anchor generator (TF's `ssd_anchor_generator`
/// config with square feature maps and default strides and offsets).
#[derive(Clone, Copy, Debug)]
pub struct AnchorSpec {
    /// Cells per side of each layer's square feature map, lowest layer first.
    pub grids: &'static [usize],
    /// Scale of the lowest layer.
    pub min_scale: f64,
    /// Scale of the highest layer.
    pub max_scale: f64,
    /// Aspect ratios (width / height) of the boxes of every layer but the
    /// lowest one when `reduce_lowest` is set.
    pub aspect_ratios: &'static [f64],
    /// Adds, per layer, an aspect-1 box at scale `sqrt(s_i * s_{i+1})`.
    pub interpolated_box: bool,
    /// The lowest layer gets only three boxes: (0.1, 1), (s_0, 2), (s_0, 0.5).
    pub reduce_lowest: bool,
}

/// The anchors of `ssd_mobilenet_v2_coco_2018_03_29` (300x300 input).
pub const SSD_MOBILENET_V2: AnchorSpec = AnchorSpec {
    grids: &[19, 10, 5, 3, 2, 1],
    min_scale: 0.2,
    max_scale: 0.95,
    aspect_ratios: &[1.0, 2.0, 0.5, 3.0, 1.0 / 3.0],
    interpolated_box: true,
    reduce_lowest: true,
};

impl AnchorSpec {
    /// Boxes per cell of layer `layer`.
    fn boxes_per_cell(&self, layer: usize) -> usize {
        if layer == 0 && self.reduce_lowest {
            3
        } else {
            self.aspect_ratios.len() + usize::from(self.interpolated_box)
        }
    }

    /// How many anchors [`AnchorSpec::generate`] returns.
    pub fn count(&self) -> usize {
        self.grids
            .iter()
            .enumerate()
            .map(|(layer, g)| g * g * self.boxes_per_cell(layer))
            .sum()
    }

    /// Scale of layer `layer`; one past the last layer is 1.0.
    fn scale(&self, layer: usize) -> f64 {
        let layers = self.grids.len();
        if layer >= layers {
            1.0
        } else if layers == 1 {
            self.min_scale
        } else {
            self.min_scale + (self.max_scale - self.min_scale) * layer as f64 / (layers - 1) as f64
        }
    }

    /// Box spec `k` (scale, aspect ratio) of every cell of layer `layer`,
    /// for `k < boxes_per_cell(layer)`.
    fn box_spec(&self, layer: usize, k: usize) -> (f64, f64) {
        let scale = self.scale(layer);
        if layer == 0 && self.reduce_lowest {
            [(0.1, 1.0), (scale, 2.0), (scale, 0.5)][k]
        } else if k < self.aspect_ratios.len() {
            (scale, self.aspect_ratios[k])
        } else {
            ((scale * self.scale(layer + 1)).sqrt(), 1.0)
        }
    }

    /// Computes all anchors (start-up only: this allocates the table).
    pub fn generate(&self) -> Box<[Anchor]> {
        let mut anchors = Vec::with_capacity(self.count());
        for (layer, &grid) in self.grids.iter().enumerate() {
            let per_cell = self.boxes_per_cell(layer);
            let stride = 1.0 / grid as f64;
            for row in 0..grid {
                let cy = (row as f64 + 0.5) * stride;
                for col in 0..grid {
                    let cx = (col as f64 + 0.5) * stride;
                    for k in 0..per_cell {
                        let (scale, ratio) = self.box_spec(layer, k);
                        let root = ratio.sqrt();
                        anchors.push(Anchor {
                            cy: cy as f32,
                            cx: cx as f32,
                            h: (scale / root) as f32,
                            w: (scale * root) as f32,
                        });
                    }
                }
            }
        }
        anchors.into_boxed_slice()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f32, b: f64) -> bool {
        (f64::from(a) - b).abs() < 1e-6
    }

    #[test]
    fn ssd_mobilenet_v2_has_1917_anchors() {
        assert_eq!(SSD_MOBILENET_V2.count(), 1917);
        assert_eq!(SSD_MOBILENET_V2.generate().len(), 1917);
        // 19*19*3 + (100 + 25 + 9 + 4 + 1) * 6
        assert_eq!(19 * 19 * 3 + (100 + 25 + 9 + 4 + 1) * 6, 1917);
    }

    #[test]
    fn known_values_from_the_formula() {
        let a = SSD_MOBILENET_V2.generate();
        // Layer 0, cell (0, 0): the reduced specs (0.1, 1), (0.2, 2), (0.2, 0.5).
        let c0 = 0.5 / 19.0;
        assert!(close(a[0].cy, c0) && close(a[0].cx, c0));
        assert!(close(a[0].h, 0.1) && close(a[0].w, 0.1));
        assert!(close(a[1].h, 0.2 / 2f64.sqrt()) && close(a[1].w, 0.2 * 2f64.sqrt()));
        assert!(close(a[2].h, 0.2 * 2f64.sqrt()) && close(a[2].w, 0.2 / 2f64.sqrt()));
        // Layer 0, row 0, column 1 starts at index 3.
        assert!(close(a[3].cx, 1.5 / 19.0) && close(a[3].cy, c0));
        // Layer 0, row 1, column 0 starts at index 19 * 3.
        assert!(close(a[57].cy, 1.5 / 19.0) && close(a[57].cx, c0));

        // Layer 1 starts at 1083 with scale 0.2 + 0.75 / 5 = 0.35.
        let s1 = 0.35;
        let first = a[19 * 19 * 3];
        assert!(close(first.cy, 0.05) && close(first.cx, 0.05));
        assert!(close(first.h, s1) && close(first.w, s1));
        // Aspect 3: h = s / sqrt 3, w = s * sqrt 3.
        let r3 = a[1083 + 3];
        assert!(close(r3.h, s1 / 3f64.sqrt()) && close(r3.w, s1 * 3f64.sqrt()));
        // Interpolated box: sqrt(0.35 * 0.5).
        assert!(close(a[1083 + 5].h, (0.35f64 * 0.5).sqrt()));

        // The very last anchor: layer 5 (one cell, scale 0.95), interpolated
        // with the virtual scale 1.0, centred.
        let last = a[1916];
        assert!(close(last.cy, 0.5) && close(last.cx, 0.5));
        assert!(close(last.h, 0.95f64.sqrt()) && close(last.w, 0.95f64.sqrt()));
        // The one before it is aspect 1/3 at scale 0.95.
        let tall = a[1915];
        assert!(close(tall.h, 0.95 * 3f64.sqrt()) && close(tall.w, 0.95 / 3f64.sqrt()));
    }

    #[test]
    fn anchors_are_symmetric_and_in_range() {
        let a = SSD_MOBILENET_V2.generate();
        let mut start = 0;
        for (layer, &grid) in SSD_MOBILENET_V2.grids.iter().enumerate() {
            let per_cell = SSD_MOBILENET_V2.boxes_per_cell(layer);
            for row in 0..grid {
                for col in 0..grid {
                    for k in 0..per_cell {
                        let here = a[start + (row * grid + col) * per_cell + k];
                        // Mirror through the image centre: same size, mirrored centre.
                        let mirror = a[start + (col * grid + row) * per_cell + k];
                        assert!((here.cy - mirror.cx).abs() < 1e-6);
                        let flip = a[start + ((grid - 1 - row) * grid + col) * per_cell + k];
                        assert!((here.cy + flip.cy - 1.0).abs() < 1e-6);
                        assert_eq!((here.h, here.w), (flip.h, flip.w));
                        assert!(here.cy > 0.0 && here.cy < 1.0);
                        assert!(here.cx > 0.0 && here.cx < 1.0);
                        assert!(here.h > 0.0 && here.w > 0.0 && here.h < 1.7 && here.w < 1.7);
                        // Aspect ratio pairs r and 1/r are transposes.
                        assert!((here.h * here.w).sqrt() <= 1.0);
                    }
                }
            }
            start += grid * grid * per_cell;
        }
        assert_eq!(start, 1917);
    }
}
