//! Picture to model input: resize any [`ImageRef`] into a preallocated `f32`
//! NHWC RGB tensor, converting colour and normalising on the way.
//!
//! This is the CPU detector's whole preprocessing step, run once per frame,
//! so a [`Resizer`] allocates its filter tables once, for the largest picture
//! it accepts, and then writes straight into the tensor the engine reads
//! without allocating. Resizing is a plain stretch (no letterbox: TF Object
//! Detection's `fixed_shape_resizer` does not keep the aspect ratio either)
//! with an antialiased bilinear filter, a triangle kernel widened by the
//! downscale factor with pixel centres aligned, as PIL's `BILINEAR` and TF2's
//! `resize(antialias=True)` do; upscaling reduces to ordinary bilinear
//! interpolation. The result is rounded to whole 8-bit levels before
//! normalising, so the model sees the 8-bit picture a PIL or RGA resize would
//! hand it. Both choices are measured, on darknet's dog.jpg (768x576 to
//! 300x300) with SSD-MobileNetV2: this gives bicycle 0.882, dog 0.851, car
//! 0.623, the reference run's 0.882, 0.852, 0.620; plain 2x2-tap bilinear
//! gives bicycle 0.98 and loses the cat, and skipping the rounding moves the
//! dog to 0.834.
//!
//! YUV is BT.601 limited range, what H.264/H.265 cameras send unless their
//! VUI says otherwise. Chroma planes are resampled as pictures of their own
//! (centre siting); H.264's default left siting differs by a quarter of a
//! chroma pixel, which a 300x300 model input cannot see.

use super::DetectError;
use crate::image::{ImageRef, Nv12, I420};

/// Largest picture width or height a [`Resizer`] accepts (8K video is 7680
/// wide); its filter tables are sized for it.
pub const MAX_SOURCE_SIDE: usize = 8192;

/// How an 8-bit channel value `v` becomes a tensor value: `v * scale + offset`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Normalisation {
    /// Multiplier.
    pub scale: f32,
    /// Added after scaling.
    pub offset: f32,
}

impl Normalisation {
    /// MobileNet / TF Object Detection SSD: `v / 127.5 - 1`, range -1..1.
    pub const MINUS_ONE_TO_ONE: Normalisation = Normalisation {
        scale: 1.0 / 127.5,
        offset: -1.0,
    };
}

/// The filter taps of every destination sample along one axis: destination
/// sample `o` reads source samples `start[o]..start[o] + len[o]` with
/// normalised weights `weights[o * max_taps..][..len[o]]`.
#[derive(Debug)]
struct AxisTable {
    dst: usize,
    max_taps: usize,
    start: Box<[usize]>,
    len: Box<[usize]>,
    weights: Box<[f32]>,
}

impl AxisTable {
    /// Tables for `dst` samples from up to [`MAX_SOURCE_SIDE`] (start-up only:
    /// this allocates).
    fn new(dst: usize) -> AxisTable {
        // A triangle of half-width s covers at most 2s + 1 samples.
        let max_taps = 2 * MAX_SOURCE_SIDE.div_ceil(dst) + 2;
        AxisTable {
            dst,
            max_taps,
            start: vec![0; dst].into_boxed_slice(),
            len: vec![0; dst].into_boxed_slice(),
            weights: vec![0.0; dst * max_taps].into_boxed_slice(),
        }
    }

    /// Computes the taps for `src` source samples (1..=MAX_SOURCE_SIDE).
    fn fill(&mut self, src: usize) {
        let ratio = src as f32 / self.dst as f32;
        let support = ratio.max(1.0);
        for o in 0..self.dst {
            let centre = (o as f32 + 0.5) * ratio;
            let first = ((centre - support + 0.5).floor().max(0.0) as usize).min(src - 1);
            let end = ((centre + support + 0.5).floor() as usize)
                .clamp(first + 1, src)
                .min(first + self.max_taps);
            let weights = &mut self.weights[o * self.max_taps..][..end - first];
            let mut sum = 0.0;
            for (k, w) in weights.iter_mut().enumerate() {
                let t = ((first + k) as f32 + 0.5 - centre) / support;
                *w = (1.0 - t.abs()).max(0.0);
                sum += *w;
            }
            // The sample nearest the centre always has a positive weight, so
            // `sum` is positive; the guard only keeps NaN out of the tensor.
            let scale = 1.0 / sum.max(f32::MIN_POSITIVE);
            weights.iter_mut().for_each(|w| *w *= scale);
            self.start[o] = first;
            self.len[o] = end - first;
        }
    }

    fn taps(&self, o: usize) -> (usize, &[f32]) {
        (
            self.start[o],
            &self.weights[o * self.max_taps..][..self.len[o]],
        )
    }

    /// One past the last source sample `o` reads.
    fn end(&self, o: usize) -> usize {
        self.start[o] + self.len[o]
    }
}

/// One source plane of 8-bit samples, one or more channels interleaved.
struct Plane<'a> {
    data: &'a [u8],
    stride: usize,
    width: usize,
    height: usize,
}

/// Resizes pictures into one tensor size, with its filter tables and row
/// scratch allocated once.
#[derive(Debug)]
pub struct Resizer {
    width: usize,
    height: usize,
    norm: Normalisation,
    cols: AxisTable,
    rows: AxisTable,
    /// One horizontally filtered source row, up to 3 values per output column.
    row: Box<[f32]>,
}

impl Resizer {
    /// A resizer into `width` x `height` x 3 tensors normalised with `norm`.
    /// Start-up only: it allocates its tables, about 140 KiB for 300x300. A
    /// zero side is treated as 1.
    pub fn new(width: usize, height: usize, norm: Normalisation) -> Resizer {
        let (width, height) = (width.max(1), height.max(1));
        Resizer {
            width,
            height,
            norm,
            cols: AxisTable::new(width),
            rows: AxisTable::new(height),
            row: vec![0.0; width * 3].into_boxed_slice(),
        }
    }

    /// Values a destination tensor must hold: `width * height * 3`.
    pub fn tensor_len(&self) -> usize {
        self.width * self.height * 3
    }

    /// Resizes `image` into `dst` (NHWC RGB, [`Resizer::tensor_len`] values)
    /// without keeping the aspect ratio.
    ///
    /// Allocates nothing unless it fails (the error message).
    pub fn resize(&mut self, image: &ImageRef<'_>, dst: &mut [f32]) -> Result<(), DetectError> {
        check_image(image)?;
        let (w, h) = image.size();
        if w as usize > MAX_SOURCE_SIDE || h as usize > MAX_SOURCE_SIDE {
            return Err(DetectError::BadImage(format!(
                "{w}x{h} picture is larger than {MAX_SOURCE_SIDE} pixels a side"
            )));
        }
        if dst.len() != self.tensor_len() {
            return Err(DetectError::Engine(format!(
                "input tensor holds {} values, {}x{} RGB needs {}",
                dst.len(),
                self.width,
                self.height,
                self.tensor_len()
            )));
        }
        dst.fill(0.0);
        let norm = self.norm;
        match image {
            ImageRef::Rgb8(p) => {
                let plane = Plane {
                    data: p.data,
                    stride: p.stride,
                    width: w as usize,
                    height: h as usize,
                };
                self.resample::<3>(&plane, dst, 0);
                for v in dst.iter_mut() {
                    *v = v.round() * norm.scale + norm.offset;
                }
            }
            ImageRef::I420(p) => {
                // Y, U and V land in channels 0, 1 and 2, then become RGB in place.
                for (channel, plane) in i420_planes(p).iter().enumerate() {
                    self.resample::<1>(plane, dst, channel);
                }
                yuv_tensor_to_rgb(dst, norm);
            }
            ImageRef::Nv12(p) => {
                // Y lands in channel 0, the interleaved CbCr pairs in 1 and 2.
                let [y, uv] = nv12_planes(p);
                self.resample::<1>(&y, dst, 0);
                self.resample::<2>(&uv, dst, 1);
                yuv_tensor_to_rgb(dst, norm);
            }
        }
        Ok(())
    }

    /// Adds `plane`, resampled to the tensor size, into channels
    /// `first..first + C` of `dst` (which must hold zeros there). Each source
    /// row is filtered horizontally once, then added into the output rows
    /// whose vertical taps include it.
    fn resample<const C: usize>(&mut self, plane: &Plane<'_>, dst: &mut [f32], first: usize) {
        self.cols.fill(plane.width);
        self.rows.fill(plane.height);
        let row = &mut self.row[..self.width * C];
        // Output rows whose taps may still include the current source row;
        // tap ranges only move forwards.
        let mut next_oy = 0;
        for y in 0..plane.height {
            while next_oy < self.height && self.rows.end(next_oy) <= y {
                next_oy += 1;
            }
            if next_oy == self.height || self.rows.taps(next_oy).0 > y {
                continue;
            }
            let src = &plane.data[y * plane.stride..][..plane.width * C];
            for (ox, acc) in row.chunks_exact_mut(C).enumerate() {
                let (start, weights) = self.cols.taps(ox);
                let mut sum = [0.0f32; C];
                for (px, &w) in src[start * C..].chunks_exact(C).zip(weights) {
                    for (s, &v) in sum.iter_mut().zip(px) {
                        *s += w * f32::from(v);
                    }
                }
                acc.copy_from_slice(&sum);
            }
            for oy in next_oy..self.height {
                let (start, weights) = self.rows.taps(oy);
                if start > y {
                    break;
                }
                let Some(&wy) = weights.get(y - start) else {
                    continue;
                };
                let dst_row = &mut dst[oy * self.width * 3..][..self.width * 3];
                for (px, acc) in dst_row.chunks_exact_mut(3).zip(row.chunks_exact(C)) {
                    for (d, a) in px[first..first + C].iter_mut().zip(acc) {
                        *d += wy * a;
                    }
                }
            }
        }
    }
}

fn i420_planes<'a>(p: &I420<'a>) -> [Plane<'a>; 3] {
    let (w, h) = (p.width as usize, p.height as usize);
    let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
    let plane = |data, stride, width, height| Plane {
        data,
        stride,
        width,
        height,
    };
    [
        plane(p.y, p.y_stride, w, h),
        plane(p.u, p.uv_stride, cw, ch),
        plane(p.v, p.uv_stride, cw, ch),
    ]
}

fn nv12_planes<'a>(p: &Nv12<'a>) -> [Plane<'a>; 2] {
    let (w, h) = (p.width as usize, p.height as usize);
    let chroma = (p.stride * p.rows).min(p.data.len());
    [
        Plane {
            data: p.data,
            stride: p.stride,
            width: w,
            height: h,
        },
        Plane {
            data: &p.data[chroma..],
            stride: p.stride,
            width: w.div_ceil(2),
            height: h.div_ceil(2),
        },
    ]
}

/// Converts a tensor holding Y, Cb, Cr per pixel to normalised RGB in place.
fn yuv_tensor_to_rgb(dst: &mut [f32], norm: Normalisation) {
    for px in dst.chunks_exact_mut(3) {
        let rgb = yuv_to_rgb(px[0], px[1], px[2]);
        for (v, c) in px.iter_mut().zip(rgb) {
            *v = c.round() * norm.scale + norm.offset;
        }
    }
}

/// BT.601 limited-range YUV to RGB, each clamped to 0..=255.
#[inline]
fn yuv_to_rgb(y: f32, u: f32, v: f32) -> [f32; 3] {
    // 255/219 for luma; 255/224 * (2 - 2 Kr), ... for chroma (Kr 0.299, Kb 0.114).
    let c = (y - 16.0) * 1.164_383_6;
    let d = u - 128.0;
    let e = v - 128.0;
    [
        (c + 1.596_026_8 * e).clamp(0.0, 255.0),
        (c - 0.391_762_3 * d - 0.812_967_6 * e).clamp(0.0, 255.0),
        (c + 2.017_232_1 * d).clamp(0.0, 255.0),
    ]
}

/// Checks that a plane of `len` bytes holds `rows` rows of `row` bytes at
/// `stride`, naming the plane in the error.
fn check_plane(
    name: &str,
    len: usize,
    stride: usize,
    row: usize,
    rows: usize,
) -> Result<(), DetectError> {
    if stride < row {
        return Err(DetectError::BadImage(format!(
            "{name} stride {stride} is less than its row of {row} bytes"
        )));
    }
    let needed = stride * (rows - 1) + row;
    if len < needed {
        return Err(DetectError::BadImage(format!(
            "{name} plane has {len} bytes, needs {needed}"
        )));
    }
    Ok(())
}

/// Checks that `image` is non-empty and its planes are as large as its size
/// and strides say.
pub fn check_image(image: &ImageRef<'_>) -> Result<(), DetectError> {
    let (width, height) = image.size();
    if width == 0 || height == 0 {
        return Err(DetectError::BadImage(format!("{width}x{height} picture")));
    }
    let (w, h) = (width as usize, height as usize);
    match image {
        ImageRef::Rgb8(p) => check_plane("RGB", p.data.len(), p.stride, 3 * w, h),
        ImageRef::I420(p) => {
            let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
            check_plane("Y", p.y.len(), p.y_stride, w, h)?;
            check_plane("U", p.u.len(), p.uv_stride, cw, ch)?;
            check_plane("V", p.v.len(), p.uv_stride, cw, ch)
        }
        ImageRef::Nv12(p) => {
            if p.rows < h {
                return Err(DetectError::BadImage(format!(
                    "NV12 luma plane has {} rows for a {w}x{h} picture",
                    p.rows
                )));
            }
            let chroma = p.stride * p.rows;
            check_plane("Y", chroma.min(p.data.len()), p.stride, w, h)?;
            let [_, uv] = nv12_planes(p);
            check_plane(
                "CbCr",
                uv.data.len(),
                p.stride,
                2 * w.div_ceil(2),
                h.div_ceil(2),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::Rgb8;

    fn resize_into(
        image: &ImageRef<'_>,
        dst: &mut [f32],
        width: usize,
        height: usize,
        norm: Normalisation,
    ) -> Result<(), DetectError> {
        Resizer::new(width, height, norm).resize(image, dst)
    }

    #[test]
    fn nv12_gives_the_same_tensor_as_i420() {
        // A 37x21 picture with varied samples, as I420 and as NV12 with
        // stride and row padding full of garbage (as MPP aligns to 16).
        let (w, h) = (37usize, 21usize);
        let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
        let sample = |i: usize, k: usize| ((i * 31 + k * 17) % 251) as u8;
        let y: Vec<u8> = (0..w * h).map(|i| sample(i, 1)).collect();
        let u: Vec<u8> = (0..cw * ch).map(|i| sample(i, 2)).collect();
        let v: Vec<u8> = (0..cw * ch).map(|i| sample(i, 3)).collect();
        let (stride, rows) = (48usize, 32usize);
        let mut data = vec![0xEEu8; stride * rows * 3 / 2];
        for r in 0..h {
            data[r * stride..][..w].copy_from_slice(&y[r * w..][..w]);
        }
        for r in 0..ch {
            for c in 0..cw {
                data[stride * rows + r * stride + 2 * c] = u[r * cw + c];
                data[stride * rows + r * stride + 2 * c + 1] = v[r * cw + c];
            }
        }
        let planar = ImageRef::I420(I420 {
            width: w as u32,
            height: h as u32,
            y: &y,
            u: &u,
            v: &v,
            y_stride: w,
            uv_stride: cw,
        });
        let semi = ImageRef::Nv12(Nv12 {
            width: w as u32,
            height: h as u32,
            data: &data,
            stride,
            rows,
            dma: None,
        });
        let norm = Normalisation::MINUS_ONE_TO_ONE;
        let (mut a, mut b) = (vec![0.0; 16 * 12 * 3], vec![0.0; 16 * 12 * 3]);
        resize_into(&planar, &mut a, 16, 12, norm).unwrap();
        resize_into(&semi, &mut b, 16, 12, norm).unwrap();
        assert_eq!(a, b);
        // A chroma plane cut short is refused, not read out of bounds.
        let short = ImageRef::Nv12(Nv12 {
            data: &data[..stride * rows + stride * 3],
            ..match semi {
                ImageRef::Nv12(n) => n,
                _ => unreachable!(),
            }
        });
        let e = resize_into(&short, &mut b, 16, 12, norm).unwrap_err();
        assert!(e.to_string().contains("CbCr plane"), "{e}");
    }

    /// Tensor values back to 0..255 pixel values.
    fn pixels(t: &[f32]) -> Vec<f32> {
        let n = Normalisation::MINUS_ONE_TO_ONE;
        t.iter().map(|v| (v - n.offset) / n.scale).collect()
    }

    fn flat_rgb(width: u32, height: u32, stride: usize, rgb: [u8; 3]) -> Vec<u8> {
        let mut data = vec![0xAA; stride * height as usize];
        for row in data.chunks_exact_mut(stride) {
            for px in row[..3 * width as usize].chunks_exact_mut(3) {
                px.copy_from_slice(&rgb);
            }
        }
        data
    }

    struct Planes {
        y: Vec<u8>,
        u: Vec<u8>,
        v: Vec<u8>,
        y_stride: usize,
        uv_stride: usize,
    }

    /// A flat I420 picture whose padding bytes are garbage, to catch stride bugs.
    fn flat_i420(width: u32, height: u32, pad: usize, yuv: [u8; 3]) -> Planes {
        let (w, h) = (width as usize, height as usize);
        let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
        let plane = |stride: usize, cols: usize, rows: usize, value: u8| {
            let mut p = vec![0xEE; stride * rows];
            for row in p.chunks_exact_mut(stride) {
                row[..cols].fill(value);
            }
            p
        };
        Planes {
            y: plane(w + pad, w, h, yuv[0]),
            u: plane(cw + pad, cw, ch, yuv[1]),
            v: plane(cw + pad, cw, ch, yuv[2]),
            y_stride: w + pad,
            uv_stride: cw + pad,
        }
    }

    fn i420(p: &Planes, width: u32, height: u32) -> ImageRef<'_> {
        ImageRef::I420(I420 {
            width,
            height,
            y: &p.y,
            u: &p.u,
            v: &p.v,
            y_stride: p.y_stride,
            uv_stride: p.uv_stride,
        })
    }

    fn assert_flat(t: &[f32], rgb: [f32; 3], tolerance: f32) {
        for (i, v) in pixels(t).iter().enumerate() {
            let want = rgb[i % 3];
            assert!((v - want).abs() <= tolerance, "value {i}: {v} vs {want}");
        }
    }

    #[test]
    fn flat_rgb_any_size_and_stride() {
        for (w, h, pad) in [(1, 1, 0), (1, 1, 5), (7, 3, 0), (37, 23, 11), (640, 480, 0)] {
            let stride = 3 * w as usize + pad;
            let data = flat_rgb(w, h, stride, [200, 100, 50]);
            let img = ImageRef::Rgb8(Rgb8 {
                width: w,
                height: h,
                data: &data,
                stride,
            });
            for (tw, th) in [(13, 9), (1, 1), (300, 300)] {
                let mut t = vec![0.0; tw * th * 3];
                resize_into(&img, &mut t, tw, th, Normalisation::MINUS_ONE_TO_ONE).unwrap();
                assert_flat(&t, [200.0, 100.0, 50.0], 1e-3);
            }
        }
    }

    #[test]
    fn flat_yuv_colours_convert_to_bt601_rgb() {
        // (Y, U, V) -> expected RGB, BT.601 limited range.
        let cases = [
            ([16, 128, 128], [0.0, 0.0, 0.0]),
            ([235, 128, 128], [255.0, 255.0, 255.0]),
            ([126, 128, 128], [128.0, 128.0, 128.0]),
            ([81, 90, 240], [255.0, 0.0, 0.0]),
            ([145, 54, 34], [0.0, 255.0, 0.0]),
            ([41, 240, 110], [0.0, 0.0, 255.0]),
        ];
        for (w, h, pad) in [(1, 1, 0), (5, 3, 0), (5, 3, 7), (33, 17, 3), (320, 240, 64)] {
            for (yuv, rgb) in cases {
                let planes = flat_i420(w, h, pad, yuv);
                let mut t = vec![0.0; 8 * 6 * 3];
                resize_into(
                    &i420(&planes, w, h),
                    &mut t,
                    8,
                    6,
                    Normalisation::MINUS_ONE_TO_ONE,
                )
                .unwrap();
                assert_flat(&t, rgb, 2.0);
            }
        }
    }

    fn grey_row(values: &[u8]) -> Vec<u8> {
        values.iter().flat_map(|&v| [v, v, v]).collect()
    }

    /// Resizes a one-row grey picture to `out` x 1 and returns the red channel.
    fn resize_row(values: &[u8], out: usize) -> Vec<f32> {
        let data = grey_row(values);
        let img = ImageRef::Rgb8(Rgb8 {
            width: values.len() as u32,
            height: 1,
            data: &data,
            stride: data.len(),
        });
        let identity = Normalisation {
            scale: 1.0,
            offset: 0.0,
        };
        let mut t = vec![0.0; out * 3];
        resize_into(&img, &mut t, out, 1, identity).unwrap();
        t.iter().step_by(3).copied().collect()
    }

    #[test]
    fn upscaling_is_bilinear_with_aligned_centres() {
        // Output centres 0.25, 0.75, 1.25, 1.75 in source pixels; pixel centres at 0.5, 1.5.
        // 63.75 and 191.25, rounded to whole levels.
        let got = resize_row(&[0, 255], 4);
        assert_eq!(got, [0.0, 64.0, 191.0, 255.0]);
    }

    #[test]
    fn downscaling_uses_a_widened_triangle() {
        // 4 -> 2: output 0 is centred at 1.0 with half-width 2; source centres
        // 0.5, 1.5, 2.5 get weights 0.75, 0.75, 0.25.
        let got = resize_row(&[0, 100, 200, 255], 2);
        let want0 = (100.0f32 * 0.75 + 200.0 * 0.25) / 1.75;
        let want1 = (100.0f32 * 0.25 + 200.0 * 0.75 + 255.0 * 0.75) / 1.75;
        assert_eq!(got, [want0.round(), want1.round()]);
    }

    #[test]
    fn downscaling_does_not_alias() {
        // One-pixel stripes shrunk 4x average to mid-grey instead of picking
        // whichever stripe the sample lands on.
        let stripes: Vec<u8> = (0..64).map(|i| if i % 2 == 0 { 0 } else { 255 }).collect();
        for v in resize_row(&stripes, 16) {
            assert!((v - 127.5).abs() < 20.0, "{v}");
        }
    }

    #[test]
    fn i420_chroma_follows_its_own_plane() {
        // Left half red, right half blue, 4x2: chroma columns 0 and 1 differ.
        let planes = Planes {
            y: vec![81, 81, 41, 41, 81, 81, 41, 41],
            u: vec![90, 240],
            v: vec![240, 110],
            y_stride: 4,
            uv_stride: 2,
        };
        let mut t = vec![0.0; 4 * 2 * 3];
        resize_into(
            &i420(&planes, 4, 2),
            &mut t,
            4,
            2,
            Normalisation::MINUS_ONE_TO_ONE,
        )
        .unwrap();
        let p = pixels(&t);
        // Column 0 is pure red, column 3 pure blue.
        assert!((p[0] - 255.0).abs() < 2.0 && p[2] < 2.0);
        assert!(p[9] < 2.0 && (p[11] - 255.0).abs() < 2.0);
    }

    #[test]
    fn resizing_does_not_allocate() {
        use crate::alloc_count::thread_counts;
        let planes = flat_i420(641, 479, 3, [81, 90, 240]);
        let data = flat_rgb(33, 17, 99 + 5, [1, 2, 3]);
        let rgb = ImageRef::Rgb8(Rgb8 {
            width: 33,
            height: 17,
            data: &data,
            stride: 104,
        });
        let mut resizer = Resizer::new(300, 300, Normalisation::MINUS_ONE_TO_ONE);
        let mut t = vec![0.0; resizer.tensor_len()];
        let before = thread_counts();
        resizer.resize(&i420(&planes, 641, 479), &mut t).unwrap();
        resizer.resize(&rgb, &mut t).unwrap();
        assert_eq!(thread_counts().ours, before.ours);
    }

    #[test]
    fn bad_pictures_and_tensors_are_errors() {
        let data = [0u8; 12];
        let rgb = |width, height, stride| {
            ImageRef::Rgb8(Rgb8 {
                width,
                height,
                data: &data,
                stride,
            })
        };
        let run = |img: ImageRef<'_>, len: usize| {
            let mut t = vec![0.0; len];
            resize_into(&img, &mut t, 2, 2, Normalisation::MINUS_ONE_TO_ONE)
        };
        assert!(matches!(
            run(rgb(0, 2, 6), 12),
            Err(DetectError::BadImage(_))
        ));
        assert!(matches!(
            run(rgb(2, 3, 6), 12),
            Err(DetectError::BadImage(_))
        ));
        assert!(matches!(
            run(rgb(2, 2, 5), 12),
            Err(DetectError::BadImage(_))
        ));
        assert!(run(rgb(2, 2, 6), 12).is_ok());
        assert!(matches!(run(rgb(2, 2, 6), 11), Err(DetectError::Engine(_))));

        let planes = flat_i420(4, 4, 0, [16, 128, 128]);
        let short = Planes {
            v: vec![128; 3],
            ..flat_i420(4, 4, 0, [16, 128, 128])
        };
        assert!(run(i420(&planes, 4, 4), 12).is_ok());
        assert!(matches!(
            run(i420(&short, 4, 4), 12),
            Err(DetectError::BadImage(_))
        ));
        assert!(matches!(
            run(i420(&planes, 4, 5), 12),
            Err(DetectError::BadImage(_))
        ));
    }
}
