//! Colour arithmetic shared by the copy, the drawing and the encoder.
//!
//! A snapshot holds the camera's own YUV, which is BT.601 limited range
//! (Y 16..=235, Cb/Cr 16..=240), the convention `detect::preprocess` also
//! assumes. RGB pictures are converted into that range so every snapshot is
//! alike, and JPEG (JFIF), which wants full-range YCbCr, gets it through the
//! two lookup tables here, built at compile time: nothing allocates.

/// One YUV colour, limited range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Yuv {
    /// Luma.
    pub y: u8,
    /// Cb.
    pub u: u8,
    /// Cr.
    pub v: u8,
}

/// BT.601 full-swing RGB to limited-range YUV, in 8-bit fixed point (the
/// usual `(66 R + 129 G + 25 B + 128) >> 8` form, within one level of the
/// exact values).
pub(super) const fn rgb_to_yuv(r: u8, g: u8, b: u8) -> Yuv {
    let (r, g, b) = (r as i32, g as i32, b as i32);
    let y = ((66 * r + 129 * g + 25 * b + 128) >> 8) + 16;
    let u = ((-38 * r - 74 * g + 112 * b + 128) >> 8) + 128;
    let v = ((112 * r - 94 * g - 18 * b + 128) >> 8) + 128;
    Yuv {
        y: y as u8,
        u: u as u8,
        v: v as u8,
    }
}

/// Chroma of the average of four RGB pixels given as channel sums.
pub(super) fn chroma_of_sum(r: u32, g: u32, b: u32) -> (u8, u8) {
    let avg = |s: u32| ((s + 2) / 4) as u8;
    let c = rgb_to_yuv(avg(r), avg(g), avg(b));
    (c.u, c.v)
}

/// Limited-range luma (16..=235) to full range (0..=255), clamped.
pub(super) static LUMA_TO_FULL: [u8; 256] = range_table(16, 219);

/// Limited-range chroma (16..=240, 128 neutral) to full range, clamped.
pub(super) static CHROMA_TO_FULL: [u8; 256] = range_table(128, 224);

/// `out = (in - centre) * 255 / span + base`, rounded and clamped, where the
/// base is 0 for luma (centre 16) and 128 for chroma (centre 128).
const fn range_table(centre: i32, span: i32) -> [u8; 256] {
    let base = if centre == 128 { 128 } else { 0 };
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        let num = (i as i32 - centre) * 255;
        // Round half away from zero.
        let q = if num >= 0 {
            (num + span / 2) / span
        } else {
            (num - span / 2) / span
        };
        let v = q + base;
        t[i] = if v < 0 {
            0
        } else if v > 255 {
            255
        } else {
            v as u8
        };
        i += 1;
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn primaries_match_bt601_limited_range() {
        // Reference values from the BT.601 equations, rounded.
        let cases = [
            ((0, 0, 0), (16, 128, 128)),
            ((255, 255, 255), (235, 128, 128)),
            ((255, 0, 0), (82, 90, 240)),
            ((0, 255, 0), (145, 54, 34)),
            ((0, 0, 255), (41, 240, 110)),
        ];
        for ((r, g, b), (y, u, v)) in cases {
            let c = rgb_to_yuv(r, g, b);
            for (got, want) in [(c.y, y), (c.u, u), (c.v, v)] {
                assert!(
                    (got as i32 - want).abs() <= 1,
                    "rgb ({r},{g},{b}) -> {c:?}, want ({y},{u},{v})"
                );
            }
        }
    }

    #[test]
    fn range_tables_expand_limited_to_full() {
        assert_eq!(LUMA_TO_FULL[16], 0);
        assert_eq!(LUMA_TO_FULL[235], 255);
        assert_eq!(LUMA_TO_FULL[0], 0);
        assert_eq!(LUMA_TO_FULL[255], 255);
        assert_eq!(LUMA_TO_FULL[126], 128);
        assert_eq!(CHROMA_TO_FULL[128], 128);
        assert_eq!(CHROMA_TO_FULL[16], 0);
        assert_eq!(CHROMA_TO_FULL[240], 255);
        assert!(LUMA_TO_FULL.windows(2).all(|w| w[0] <= w[1]));
        assert!(CHROMA_TO_FULL.windows(2).all(|w| w[0] <= w[1]));
    }
}
