//! Drawing a detection on a snapshot: the box outline and its label.
//!
//! Everything is drawn straight into the I420 planes, so no RGB copy of the
//! picture is ever made. Rectangles are aligned to even coordinates so each
//! covers whole chroma samples: the colour is exact on the outline and the
//! inside of the box keeps every one of its original samples. Label text is
//! written into luma only, on a strip whose chroma is the box colour, which
//! is all the legibility a 4:2:0 picture (and its JPEG) can carry.
//!
//! The glyphs are font8x8's ASCII table (other characters become `?`),
//! magnified by one pixel per 360 rows of picture so a label stays readable
//! on a 720p or 1080p snapshot. The score is formatted into a
//! `heapless::String`: nothing here allocates.

use core::fmt::Write as _;

use font8x8::legacy::BASIC_LEGACY;

use super::colour::{rgb_to_yuv, Yuv};
use super::PlanesMut;
use crate::detect::BBox;

/// Outline and label strip of an ordinary detection (green).
pub(super) const NORMAL: Yuv = rgb_to_yuv(0, 255, 0);
/// Outline and label strip of a highlighted detection (red).
pub(super) const HIGHLIGHT: Yuv = rgb_to_yuv(255, 0, 0);
/// Label text luma on [`NORMAL`] (black: green is bright).
pub(super) const NORMAL_TEXT_Y: u8 = 16;
/// Label text luma on [`HIGHLIGHT`] (white: red is dark).
pub(super) const HIGHLIGHT_TEXT_Y: u8 = 235;
/// Outline width in pixels.
pub(super) const LINE: usize = 2;
/// Outline width of a highlighted detection.
pub(super) const HIGHLIGHT_LINE: usize = 4;

/// Glyph magnification for a picture `height` rows tall.
pub(super) fn glyph_scale(height: usize) -> usize {
    (height / 360).clamp(1, 4)
}

/// Space around the text inside the label strip, in pixels.
fn padding(scale: usize) -> usize {
    scale
}

/// Label strip height for a picture `height` rows tall (even).
pub(super) fn strip_height(height: usize) -> usize {
    let s = glyph_scale(height);
    round_even(8 * s + 2 * padding(s))
}

fn round_even(v: usize) -> usize {
    v + (v & 1)
}

/// A normalised coordinate to an even pixel position in `0..=size`.
fn to_px(v: f32, size: usize) -> usize {
    let v = if v.is_nan() { 0.0 } else { v.clamp(0.0, 1.0) };
    let px = (v * size as f32).round() as usize;
    (px & !1).min(size)
}

/// Draws `bbox` with its label; see [`super::SnapshotBuf::draw_detection`].
pub(super) fn detection(
    p: &mut PlanesMut<'_>,
    bbox: &BBox,
    label: &str,
    score: f32,
    highlight: bool,
) {
    let (w, h) = (p.width, p.height);
    let (colour, text_y, line) = if highlight {
        (HIGHLIGHT, HIGHLIGHT_TEXT_Y, HIGHLIGHT_LINE)
    } else {
        (NORMAL, NORMAL_TEXT_Y, LINE)
    };
    let mut x0 = to_px(bbox.x0.min(bbox.x1), w);
    let mut x1 = to_px(bbox.x0.max(bbox.x1), w);
    let mut y0 = to_px(bbox.y0.min(bbox.y1), h);
    let mut y1 = to_px(bbox.y0.max(bbox.y1), h);
    // A box thinner than its two edges becomes a small solid square.
    (x0, x1) = widen(x0, x1, 2 * line, w);
    (y0, y1) = widen(y0, y1, 2 * line, h);

    fill(p, x0, y0, x1, y0 + line, colour);
    // Saturating: a picture narrower than two edges gets a solid box.
    fill(p, x0, y1.saturating_sub(line), x1, y1, colour);
    fill(p, x0, y0, x0 + line, y1, colour);
    fill(p, x1.saturating_sub(line), y0, x1, y1, colour);

    // "label NN%": the score as a whole percentage.
    let percent = if score.is_finite() {
        (score * 100.0).round().clamp(0.0, 100.0) as u32
    } else {
        0
    };
    let mut suffix = heapless::String::<8>::new();
    // " 100%" is 5 bytes: cannot fail.
    let _ = write!(suffix, " {percent}%");
    let chars = label.chars().count().saturating_add(suffix.len());

    let scale = glyph_scale(h);
    let pad = padding(scale);
    let strip_h = strip_height(h);
    let strip_w = round_even(chars.saturating_mul(8 * scale).saturating_add(2 * pad));
    let sy = if y0 >= strip_h { y0 - strip_h } else { y0 };
    // Keep the label on the picture when the box is at the right edge;
    // a label wider than the picture is clipped.
    let sx = if x0.saturating_add(strip_w) > w {
        w.saturating_sub(strip_w) & !1
    } else {
        x0
    };
    fill(p, sx, sy, sx.saturating_add(strip_w), sy + strip_h, colour);

    let (tx, ty) = (sx + pad, sy + pad);
    for (i, c) in label.chars().chain(suffix.chars()).enumerate() {
        let gx = tx + i * 8 * scale;
        if gx >= w {
            break;
        }
        glyph(p, gx, ty, c, scale, text_y);
    }
}

/// `(lo, hi)` widened to at least `min` pixels inside `0..=size`.
fn widen(lo: usize, hi: usize, min: usize, size: usize) -> (usize, usize) {
    if hi - lo >= min {
        return (lo, hi);
    }
    let hi = (lo + min).min(size);
    (hi.saturating_sub(min), hi)
}

/// Fills `[x0, x1) x [y0, y1)`, clipped to the picture, with `c`. With even
/// coordinates the chroma rectangle is exactly the luma one halved.
fn fill(p: &mut PlanesMut<'_>, x0: usize, y0: usize, x1: usize, y1: usize, c: Yuv) {
    let (x1, y1) = (x1.min(p.width), y1.min(p.height));
    if x0 >= x1 || y0 >= y1 {
        return;
    }
    for row in p.y.chunks_exact_mut(p.width).take(y1).skip(y0) {
        row[x0..x1].fill(c.y);
    }
    let cw = p.width / 2;
    let (cx0, cx1) = (x0 / 2, x1.div_ceil(2));
    let (cy0, cy1) = (y0 / 2, y1.div_ceil(2));
    for (plane, value) in [(&mut *p.u, c.u), (&mut *p.v, c.v)] {
        for row in plane.chunks_exact_mut(cw).take(cy1).skip(cy0) {
            row[cx0..cx1].fill(value);
        }
    }
}

/// Writes glyph `c` with its top-left corner at `(x, y)`, each font pixel a
/// `scale` x `scale` square of luma `value`, clipped to the picture.
fn glyph(p: &mut PlanesMut<'_>, x: usize, y: usize, c: char, scale: usize, value: u8) {
    let code = if c.is_ascii() {
        c as usize
    } else {
        '?' as usize
    };
    let bits = BASIC_LEGACY[code];
    for (gy, row_bits) in bits.iter().enumerate() {
        for sub in 0..scale {
            let py = y + gy * scale + sub;
            if py >= p.height {
                return;
            }
            let row = &mut p.y[py * p.width..][..p.width];
            // font8x8 keeps the leftmost pixel in bit 0.
            for gx in 0..8 {
                if row_bits & (1 << gx) == 0 {
                    continue;
                }
                let px = x + gx * scale;
                if px >= p.width {
                    break;
                }
                let end = (px + scale).min(p.width);
                row[px..end].fill(value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::{ImageRef, I420};
    use crate::snapshot::SnapshotBuf;

    /// A snapshot of `w` x `h` filled with a luma ramp and flat grey chroma.
    fn grey(w: u32, h: u32) -> SnapshotBuf {
        let y: Vec<u8> = (0..w * h).map(|i| 40 + (i % 7) as u8).collect();
        let c = vec![128u8; (w * h / 4) as usize];
        let src = I420 {
            width: w,
            height: h,
            y: &y,
            u: &c,
            v: &c,
            y_stride: w as usize,
            uv_stride: w as usize / 2,
        };
        let mut s = SnapshotBuf::new(w, h);
        s.copy_from(&ImageRef::I420(src)).unwrap();
        s
    }

    fn luma(s: &SnapshotBuf, x: usize, y: usize) -> u8 {
        let img = s.image();
        img.y[y * img.y_stride + x]
    }

    fn chroma(s: &SnapshotBuf, x: usize, y: usize) -> (u8, u8) {
        let img = s.image();
        let at = (y / 2) * img.uv_stride + x / 2;
        (img.u[at], img.v[at])
    }

    fn is_colour(s: &SnapshotBuf, x: usize, y: usize, c: Yuv) -> bool {
        luma(s, x, y) == c.y && chroma(s, x, y) == (c.u, c.v)
    }

    #[test]
    fn outline_has_the_box_colour_and_the_inside_is_untouched() {
        let mut s = grey(320, 240);
        let before = s.image().y.to_vec();
        let (u_before, v_before) = (s.image().u.to_vec(), s.image().v.to_vec());
        let bbox = BBox {
            x0: 0.25,
            y0: 0.25,
            x1: 0.75,
            y1: 0.75,
        };
        s.draw_detection(&bbox, "person", 0.87, false);
        // The box spans x 80..240, y 60..180.
        for (x, y) in [
            (80, 60),
            (81, 61),
            (239, 179),
            (160, 60),
            (80, 120),
            (238, 120),
        ] {
            assert!(is_colour(&s, x, y, NORMAL), "({x},{y}) not outlined");
        }
        // Inside, beyond the 2 px line, luma and chroma are as they were.
        let img = s.image();
        for y in 62..178 {
            for x in 82..238 {
                assert_eq!(img.y[y * 320 + x], before[y * 320 + x], "({x},{y})");
            }
        }
        for cy in 31..89 {
            for cx in 41..119 {
                assert_eq!(img.u[cy * 160 + cx], u_before[cy * 160 + cx]);
                assert_eq!(img.v[cy * 160 + cx], v_before[cy * 160 + cx]);
            }
        }
        // Outside the box and its label, nothing changed either.
        assert_eq!(luma(&s, 78, 120), before[120 * 320 + 78]);
        assert_eq!(luma(&s, 160, 200), before[200 * 320 + 160]);
    }

    #[test]
    fn label_sits_on_a_strip_above_the_box_with_text_pixels() {
        let mut s = grey(320, 240);
        let bbox = BBox {
            x0: 0.25,
            y0: 0.5,
            x1: 0.75,
            y1: 0.9,
        };
        s.draw_detection(&bbox, "person", 0.87, false);
        let strip_h = strip_height(240);
        assert_eq!(strip_h, 10);
        // Box top at y 120: the strip covers y 110..120 from x 80, and is
        // "person 87%" = 10 glyphs of 8 px plus 1 px padding each side.
        let (mut text, mut strip) = (0, 0);
        for y in 110..120 {
            for x in 80..162 {
                match luma(&s, x, y) {
                    NORMAL_TEXT_Y => text += 1,
                    v if v == NORMAL.y => strip += 1,
                    v => panic!("({x},{y}) is {v}, neither strip nor text"),
                }
                assert_eq!(chroma(&s, x, y), (NORMAL.u, NORMAL.v));
            }
        }
        assert!(text > 80, "too few text pixels: {text}");
        assert!(strip > text, "text should not fill the strip");
        // The first glyph, 'p', starts at (81, 111); its third font row is
        // 0x3B (bits 0, 1, 3, 4, 5 set, leftmost pixel in bit 0) and its
        // first is empty.
        let row = |y| -> Vec<bool> {
            (0..8)
                .map(|i| luma(&s, 81 + i, y) == NORMAL_TEXT_Y)
                .collect()
        };
        assert_eq!(
            row(113),
            [true, true, false, true, true, true, false, false]
        );
        assert_eq!(row(111), [false; 8]);
        // Nothing beyond the strip's right edge.
        assert_ne!(luma(&s, 164, 115), NORMAL.y);
        assert_ne!(luma(&s, 164, 115), NORMAL_TEXT_Y);
    }

    #[test]
    fn label_goes_inside_a_box_at_the_top_and_highlight_differs() {
        let mut s = grey(320, 240);
        let bbox = BBox {
            x0: 0.1,
            y0: 0.0,
            x1: 0.5,
            y1: 0.5,
        };
        s.draw_detection(&bbox, "car", 0.5, true);
        assert!(is_colour(&s, 32, 0, HIGHLIGHT));
        // 4 px line.
        assert!(is_colour(&s, 33, 50, HIGHLIGHT));
        assert!(is_colour(&s, 35, 50, HIGHLIGHT));
        assert!(!is_colour(&s, 37, 50, HIGHLIGHT));
        // The strip is inside the box from its top: white text on red.
        let white = (0..10)
            .flat_map(|y| (32..100).map(move |x| (x, y)))
            .filter(|&(x, y)| luma(&s, x, y) == HIGHLIGHT_TEXT_Y)
            .count();
        assert!(white > 30, "{white}");
        assert_ne!(NORMAL, HIGHLIGHT);
    }

    #[test]
    fn boxes_at_and_beyond_the_edges_clip_without_panicking() {
        let boxes = [
            BBox {
                x0: -0.5,
                y0: -0.5,
                x1: 1.5,
                y1: 1.5,
            },
            BBox {
                x0: 0.9,
                y0: 0.9,
                x1: 1.2,
                y1: 1.2,
            },
            BBox {
                x0: 1.0,
                y0: 1.0,
                x1: 1.0,
                y1: 1.0,
            },
            BBox {
                x0: 0.5,
                y0: 0.5,
                x1: 0.2,
                y1: 0.1,
            },
            BBox {
                x0: f32::NAN,
                y0: 0.0,
                x1: f32::INFINITY,
                y1: f32::NEG_INFINITY,
            },
            BBox {
                x0: 0.99,
                y0: 0.0,
                x1: 1.0,
                y1: 0.01,
            },
        ];
        for (w, h) in [(320, 240), (2, 2), (4, 2), (64, 1080)] {
            for (i, b) in boxes.iter().enumerate() {
                let mut s = grey(w, h);
                let long = "a very long label that is wider than the whole picture ünïcode";
                s.draw_detection(b, long, f32::NAN, i % 2 == 0);
                s.draw_detection(b, "", 2.0, i % 2 == 1);
            }
        }
        // The whole-picture box outlines the picture's border.
        let mut s = grey(320, 240);
        s.draw_detection(&boxes[0], "x", 0.1, false);
        assert!(is_colour(&s, 0, 239, NORMAL));
        assert!(is_colour(&s, 319, 239, NORMAL));
        assert!(is_colour(&s, 319, 120, NORMAL));
        // A box at the right edge keeps its label on the picture.
        let mut s = grey(320, 240);
        s.draw_detection(&boxes[1], "person", 0.9, false);
        let text = (0..320)
            .filter(|&x| (200..216).any(|y| luma(&s, x, y) == NORMAL_TEXT_Y))
            .count();
        assert!(text > 20, "{text}");
    }

    #[test]
    fn drawing_before_a_copy_does_nothing() {
        let mut s = SnapshotBuf::new(64, 64);
        s.draw_detection(
            &BBox {
                x0: 0.0,
                y0: 0.0,
                x1: 1.0,
                y1: 1.0,
            },
            "a",
            1.0,
            true,
        );
        assert_eq!(s.size(), (0, 0));
    }
}
