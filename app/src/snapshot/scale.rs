//! Fitting a picture into a snapshot buffer: the output size, the checks on
//! the source planes, and the nearest-neighbour copy.
//!
//! Nearest neighbour rather than a box filter: the copy runs on the inference
//! worker, whose time belongs to the next frame, and nearest neighbour reads
//! each output sample once (about 1.4 M byte reads for 1280x720) with no
//! per-pixel division; a snapshot is for a person to look at, the downscale
//! from a camera's `max_resolution` is usually 1.5x to 3x where its aliasing
//! is mild, and when no scaling is needed the copy is exact (row copies).
//! Samples are taken at pixel centres, so the picture is not shifted.
//!
//! A picture that already fits is copied as is, except that an odd last
//! column or row is dropped (I420 chroma wants even sizes): a crop, not a
//! resample, so no column is skipped in the middle.

use super::colour::{chroma_of_sum, rgb_to_yuv};
use super::PlanesMut;
use crate::image::{ImageRef, Nv12, Rgb8, I420};

/// The output size for a source picture, and the part of the source it maps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Fit {
    /// Output width (even, at least 2).
    pub dst_w: usize,
    /// Output height (even, at least 2).
    pub dst_h: usize,
    /// Source columns mapped onto the output (the full width when scaling).
    pub span_w: usize,
    /// Source rows mapped onto the output.
    pub span_h: usize,
}

/// The largest even size within `max_w` x `max_h` (both even, at least 2)
/// with the aspect of `src_w` x `src_h`, never larger than the source except
/// to reach the 2x2 minimum; `None` for an empty source.
pub(super) fn fit(src_w: u32, src_h: u32, max_w: u32, max_h: u32) -> Option<Fit> {
    if src_w == 0 || src_h == 0 {
        return None;
    }
    let (sw, sh, mw, mh) = (src_w as u64, src_h as u64, max_w as u64, max_h as u64);
    let (w, h, scaled) = if sw <= mw && sh <= mh {
        (sw, sh, false)
    } else if sw * mh >= sh * mw {
        // Width is the limit.
        (mw, (sh * mw + sw / 2) / sw, true)
    } else {
        ((sw * mh + sh / 2) / sh, mh, true)
    };
    let even = |v: u64| ((v & !1).max(2)) as usize;
    let (dst_w, dst_h) = (even(w), even(h));
    let span = |src: u64, dst: usize| {
        if scaled {
            src as usize
        } else {
            dst.min(src as usize)
        }
    };
    Some(Fit {
        dst_w,
        dst_h,
        span_w: span(sw, dst_w),
        span_h: span(sh, dst_h),
    })
}

/// Source indices of output samples `0, 1, 2, ...` when `span` source
/// samples map onto `dst` output samples, centre to centre:
/// `floor((2 i + 1) * span / (2 * dst))`, stepped without division.
///
/// The same sequence serves chroma: output chroma sample `i` sits at output
/// luma position `2 i + 1`, which lands in source chroma sample
/// `floor((2 i + 1) * span / (2 * dst))`.
#[derive(Clone, Debug)]
struct Steps {
    q: usize,
    r: usize,
    step_q: usize,
    step_r: usize,
    den: usize,
}

impl Steps {
    fn new(span: usize, dst: usize) -> Steps {
        let den = 2 * dst;
        Steps {
            q: span / den,
            r: span % den,
            step_q: (2 * span) / den,
            step_r: (2 * span) % den,
            den,
        }
    }
}

impl Iterator for Steps {
    type Item = usize;

    #[inline]
    fn next(&mut self) -> Option<usize> {
        let v = self.q;
        self.q += self.step_q;
        self.r += self.step_r;
        if self.r >= self.den {
            self.r -= self.den;
            self.q += 1;
        }
        Some(v)
    }
}

/// Why a source picture cannot be read, or `Ok` when every row the copy
/// reads is inside its planes.
pub(super) fn check(image: &ImageRef<'_>) -> Result<(), &'static str> {
    let (w, h) = image.size();
    let (w, h) = (w as usize, h as usize);
    if w == 0 || h == 0 {
        return Err("the picture is empty");
    }
    let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
    // Bytes needed for `rows` rows of `row` bytes at `stride`.
    let need = |stride: usize, row: usize, rows: usize| {
        stride.saturating_mul(rows - 1).saturating_add(row)
    };
    match image {
        ImageRef::I420(p) => {
            if p.y_stride < w || p.uv_stride < cw {
                return Err("a plane's stride is shorter than its row");
            }
            if p.y.len() < need(p.y_stride, w, h) {
                return Err("the luma plane is too short");
            }
            if p.u.len() < need(p.uv_stride, cw, ch) || p.v.len() < need(p.uv_stride, cw, ch) {
                return Err("a chroma plane is too short");
            }
        }
        ImageRef::Nv12(p) => {
            if p.stride < w {
                return Err("the stride is shorter than a row");
            }
            if p.rows < h {
                return Err("the luma plane has fewer rows than the picture");
            }
            let chroma_start = p.stride.saturating_mul(p.rows);
            if p.data.len() < chroma_start.saturating_add(need(p.stride, 2 * cw, ch)) {
                return Err("the planes are too short");
            }
        }
        ImageRef::Rgb8(p) => {
            if p.stride < 3 * w {
                return Err("the stride is shorter than a row");
            }
            if p.data.len() < need(p.stride, 3 * w, h) {
                return Err("the pixels are too short");
            }
        }
    }
    Ok(())
}

/// Copies `image` (already [`check`]ed) into `dst`, which is `fit.dst_w` x
/// `fit.dst_h`.
pub(super) fn copy(image: &ImageRef<'_>, fit: &Fit, dst: PlanesMut<'_>) {
    match image {
        ImageRef::I420(p) => copy_i420(p, fit, dst),
        ImageRef::Nv12(p) => copy_nv12(p, fit, dst),
        ImageRef::Rgb8(p) => copy_rgb(p, fit, dst),
    }
}

/// One output row from one source row.
#[inline]
fn sample_row(out: &mut [u8], line: &[u8], span: usize, dst: usize) {
    if span == dst {
        out.copy_from_slice(&line[..out.len()]);
    } else {
        for (o, sx) in out.iter_mut().zip(Steps::new(span, dst)) {
            *o = line[sx];
        }
    }
}

fn copy_luma(plane: &[u8], stride: usize, width: usize, fit: &Fit, dst: &mut [u8]) {
    let rows = dst.chunks_exact_mut(fit.dst_w);
    for (out, sy) in rows.zip(Steps::new(fit.span_h, fit.dst_h)) {
        let line = &plane[sy * stride..][..width];
        sample_row(out, line, fit.span_w, fit.dst_w);
    }
}

fn copy_i420(p: &I420<'_>, fit: &Fit, dst: PlanesMut<'_>) {
    let w = p.width as usize;
    let cw = w.div_ceil(2);
    copy_luma(p.y, p.y_stride, w, fit, dst.y);
    let half = fit.dst_w / 2;
    let rows = dst
        .u
        .chunks_exact_mut(half)
        .zip(dst.v.chunks_exact_mut(half));
    for ((u, v), cy) in rows.zip(Steps::new(fit.span_h, fit.dst_h)) {
        let at = cy * p.uv_stride;
        sample_row(u, &p.u[at..][..cw], fit.span_w, fit.dst_w);
        sample_row(v, &p.v[at..][..cw], fit.span_w, fit.dst_w);
    }
}

fn copy_nv12(p: &Nv12<'_>, fit: &Fit, dst: PlanesMut<'_>) {
    let w = p.width as usize;
    let cw = w.div_ceil(2);
    copy_luma(p.data, p.stride, w, fit, dst.y);
    let chroma = &p.data[p.stride * p.rows..];
    let half = fit.dst_w / 2;
    let rows = dst
        .u
        .chunks_exact_mut(half)
        .zip(dst.v.chunks_exact_mut(half));
    for ((u, v), cy) in rows.zip(Steps::new(fit.span_h, fit.dst_h)) {
        let line = &chroma[cy * p.stride..][..2 * cw];
        let cols = Steps::new(fit.span_w, fit.dst_w);
        for ((u, v), cx) in u.iter_mut().zip(v.iter_mut()).zip(cols) {
            *u = line[2 * cx];
            *v = line[2 * cx + 1];
        }
    }
}

/// RGB to YUV 4:2:0: each output luma sample from its nearest source pixel,
/// each chroma sample from the average of the four pixels its luma samples
/// came from.
fn copy_rgb(p: &Rgb8<'_>, fit: &Fit, dst: PlanesMut<'_>) {
    let (dw, half) = (fit.dst_w, fit.dst_w / 2);
    let row_bytes = 3 * p.width as usize;
    let mut rows = Steps::new(fit.span_h, fit.dst_h);
    let luma_pairs = dst.y.chunks_exact_mut(2 * dw);
    let chroma = dst
        .u
        .chunks_exact_mut(half)
        .zip(dst.v.chunks_exact_mut(half));
    for (ys, (us, vs)) in luma_pairs.zip(chroma) {
        let (y0, y1) = ys.split_at_mut(dw);
        let (sy0, sy1) = (next(&mut rows), next(&mut rows));
        let l0 = &p.data[sy0 * p.stride..][..row_bytes];
        let l1 = &p.data[sy1 * p.stride..][..row_bytes];
        let mut cols = Steps::new(fit.span_w, fit.dst_w);
        for i in 0..half {
            let (sx0, sx1) = (3 * next(&mut cols), 3 * next(&mut cols));
            let px = [
                &l0[sx0..sx0 + 3],
                &l0[sx1..sx1 + 3],
                &l1[sx0..sx0 + 3],
                &l1[sx1..sx1 + 3],
            ];
            let luma = |q: &[u8]| rgb_to_yuv(q[0], q[1], q[2]).y;
            y0[2 * i] = luma(px[0]);
            y0[2 * i + 1] = luma(px[1]);
            y1[2 * i] = luma(px[2]);
            y1[2 * i + 1] = luma(px[3]);
            let sum = |c: usize| px.iter().map(|q| q[c] as u32).sum::<u32>();
            let (u, v) = chroma_of_sum(sum(0), sum(1), sum(2));
            us[i] = u;
            vs[i] = v;
        }
    }
}

#[inline]
fn next(steps: &mut Steps) -> usize {
    // Steps never ends.
    steps.next().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dims(src: (u32, u32), max: (u32, u32)) -> (usize, usize) {
        let f = fit(src.0, src.1, max.0, max.1).unwrap();
        (f.dst_w, f.dst_h)
    }

    #[test]
    fn fits_keep_aspect_and_never_upscale() {
        assert_eq!(dims((1920, 1080), (1280, 720)), (1280, 720));
        assert_eq!(dims((640, 480), (1280, 720)), (640, 480));
        // 1080 * 720 / 1920 = 405, made even.
        assert_eq!(dims((1080, 1920), (1280, 720)), (404, 720));
        assert_eq!(dims((3840, 2160), (1280, 720)), (1280, 720));
        // 4:3 into 16:9 is height-limited: 2560 * 720 / 1920 = 960.
        assert_eq!(dims((2560, 1920), (1280, 720)), (960, 720));
        // A very wide picture keeps at least two rows.
        assert_eq!(dims((10000, 3), (1280, 720)), (1280, 2));
        assert_eq!(fit(0, 480, 1280, 720), None);
    }

    #[test]
    fn odd_sizes_crop_or_round_to_even() {
        let f = fit(641, 481, 1280, 720).unwrap();
        assert_eq!((f.dst_w, f.dst_h, f.span_w, f.span_h), (640, 480, 640, 480));
        // Scaled: 1281 x 721 is a little taller than 16:9, so height-limited:
        // 1281 * 720 / 721 = 1279.7 -> 1279, made even.
        let f = fit(1281, 721, 1280, 720).unwrap();
        assert_eq!(
            (f.dst_w, f.dst_h, f.span_w, f.span_h),
            (1278, 720, 1281, 721)
        );
        let f = fit(1, 1, 1280, 720).unwrap();
        assert_eq!((f.dst_w, f.dst_h, f.span_w, f.span_h), (2, 2, 1, 1));
        let f = fit(1921, 1081, 1280, 720).unwrap();
        assert_eq!((f.dst_w, f.dst_h), (1278, 720));
        let f = fit(1923, 1081, 1280, 720).unwrap();
        assert_eq!((f.dst_w, f.dst_h), (1280, 720));
    }

    #[test]
    fn steps_sample_pixel_centres() {
        let take = |span, dst, n| Steps::new(span, dst).take(n).collect::<Vec<_>>();
        assert_eq!(take(4, 4, 4), [0, 1, 2, 3]);
        // 3:2, centres at 0.75, 2.25.
        assert_eq!(take(3, 2, 2), [0, 2]);
        // 2x down: centres at 1, 3, 5.
        assert_eq!(take(6, 3, 3), [1, 3, 5]);
        // The last index stays inside the source.
        assert_eq!(*take(1920, 1280, 1280).last().unwrap(), 1919);
        assert_eq!(*take(1080, 404, 404).last().unwrap(), 1078);
        assert_eq!(take(1, 2, 2), [0, 0]);
    }

    #[test]
    fn short_planes_are_refused() {
        let y = [0u8; 16];
        let c = [0u8; 4];
        let good = I420 {
            width: 4,
            height: 4,
            y: &y,
            u: &c,
            v: &c,
            y_stride: 4,
            uv_stride: 2,
        };
        assert_eq!(check(&ImageRef::I420(good)), Ok(()));
        let short = I420 {
            y: &y[..15],
            ..good
        };
        assert!(check(&ImageRef::I420(short)).is_err());
        let narrow = I420 {
            y_stride: 3,
            ..good
        };
        assert!(check(&ImageRef::I420(narrow)).is_err());
        let nv = Nv12 {
            width: 4,
            height: 4,
            data: &[0u8; 24],
            stride: 4,
            rows: 4,
            dma: None,
        };
        assert_eq!(check(&ImageRef::Nv12(nv)), Ok(()));
        let nv_short = Nv12 {
            data: &[0u8; 23],
            ..nv
        };
        assert!(check(&ImageRef::Nv12(nv_short)).is_err());
        let rgb = Rgb8 {
            width: 2,
            height: 2,
            data: &[0u8; 12],
            stride: 6,
        };
        assert_eq!(check(&ImageRef::Rgb8(rgb)), Ok(()));
        let rgb_short = Rgb8 {
            data: &[0u8; 11],
            ..rgb
        };
        assert!(check(&ImageRef::Rgb8(rgb_short)).is_err());
    }
}
