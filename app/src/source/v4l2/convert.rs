//! Camera pixel formats into pool frames (I420), written in place.
//!
//! NV12 and YUYV are converted row by row straight from the driver's mmap'ed
//! buffer into a pool frame: no allocation, one pass. MJPEG is decoded in
//! software with jpeg-decoder, which allocates its own output for every
//! picture; that call runs in [`crate::alloc_count::engine_scope`], counted
//! apart like the CPU detector's engine, and on the board it is the job of
//! the RK3588's JPEG decoder (MPP, `MPP_VIDEO_CodingMJPEG`) behind the same
//! [`crate::decode::Decoder`] seam the H.264 path uses.

use crate::frame::{FrameBuf, FrameTooLarge};
use std::fmt;

/// Why a captured frame could not be converted.
#[derive(Debug)]
pub enum ConvertError {
    /// The buffer holds fewer bytes than the mode says a frame has.
    Short {
        /// Bytes a frame of the mode has.
        need: usize,
        /// Bytes the driver filled.
        got: usize,
    },
    /// The picture does not fit the camera's pool frames.
    TooLarge(FrameTooLarge),
    /// The JPEG decoder refused the frame.
    Jpeg(String),
}

impl fmt::Display for ConvertError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConvertError::Short { need, got } => {
                write!(f, "short frame: {got} bytes, the mode needs {need}")
            }
            ConvertError::TooLarge(e) => e.fmt(f),
            ConvertError::Jpeg(e) => write!(f, "MJPEG frame: {e}"),
        }
    }
}

impl std::error::Error for ConvertError {}

impl From<FrameTooLarge> for ConvertError {
    fn from(e: FrameTooLarge) -> Self {
        ConvertError::TooLarge(e)
    }
}

fn check(src: &[u8], need: usize) -> Result<(), ConvertError> {
    if src.len() < need {
        return Err(ConvertError::Short {
            need,
            got: src.len(),
        });
    }
    Ok(())
}

/// NV12 (a Y plane of `stride`-byte rows, then the interleaved CbCr plane
/// at `stride * height` with the same stride) into `dst`.
pub fn nv12(
    src: &[u8],
    stride: usize,
    width: u32,
    height: u32,
    dst: &mut FrameBuf,
) -> Result<(), ConvertError> {
    let (w, h) = (width as usize, height as usize);
    let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
    let stride = stride.max(2 * cw);
    let need = stride * h + stride * (ch.max(1) - 1) + 2 * cw;
    check(src, need)?;
    let (y, u, v) = dst.planes_mut(width, height)?;
    for (row, out) in y.chunks_exact_mut(w.max(1)).take(h).enumerate() {
        out.copy_from_slice(&src[row * stride..row * stride + w]);
    }
    let uv = &src[stride * h..];
    for row in 0..ch {
        let line = &uv[row * stride..row * stride + 2 * cw];
        let (u_row, v_row) = (
            &mut u[row * cw..(row + 1) * cw],
            &mut v[row * cw..(row + 1) * cw],
        );
        for (i, pair) in line.chunks_exact(2).enumerate() {
            u_row[i] = pair[0];
            v_row[i] = pair[1];
        }
    }
    Ok(())
}

/// YUYV 4:2:2 (`Y0 Cb Y1 Cr` per two pixels, `stride`-byte rows) into
/// `dst`; chroma of each row pair is averaged down to 4:2:0.
pub fn yuyv(
    src: &[u8],
    stride: usize,
    width: u32,
    height: u32,
    dst: &mut FrameBuf,
) -> Result<(), ConvertError> {
    let (w, h) = (width as usize, height as usize);
    let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
    let stride = stride.max(4 * cw);
    let need = stride * (h.max(1) - 1) + 4 * cw;
    check(src, need)?;
    let (y, u, v) = dst.planes_mut(width, height)?;
    for (row, out) in y.chunks_exact_mut(w.max(1)).take(h).enumerate() {
        let line = &src[row * stride..];
        for (x, px) in out.iter_mut().enumerate() {
            *px = line[2 * x];
        }
    }
    for row in 0..ch {
        let top = &src[2 * row * stride..2 * row * stride + 4 * cw];
        let below = if 2 * row + 1 < h {
            &src[(2 * row + 1) * stride..(2 * row + 1) * stride + 4 * cw]
        } else {
            top
        };
        let (u_row, v_row) = (
            &mut u[row * cw..(row + 1) * cw],
            &mut v[row * cw..(row + 1) * cw],
        );
        for i in 0..cw {
            u_row[i] = (top[4 * i + 1] as u16 + below[4 * i + 1] as u16).div_ceil(2) as u8;
            v_row[i] = (top[4 * i + 3] as u16 + below[4 * i + 3] as u16).div_ceil(2) as u8;
        }
    }
    Ok(())
}

/// One MJPEG frame into `dst`, at the size the JPEG itself says.
pub fn mjpeg(src: &[u8], dst: &mut FrameBuf) -> Result<(), ConvertError> {
    let (pixels, info) = crate::alloc_count::engine_scope(|| {
        let mut decoder = jpeg_decoder::Decoder::new(src);
        let pixels = decoder
            .decode()
            .map_err(|e| ConvertError::Jpeg(e.to_string()))?;
        let info = decoder
            .info()
            .ok_or_else(|| ConvertError::Jpeg("no frame header".into()))?;
        Ok::<_, ConvertError>((pixels, info))
    })?;
    let (width, height) = (info.width as u32, info.height as u32);
    let (w, h) = (width as usize, height as usize);
    let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
    let (y, u, v) = dst.planes_mut(width, height)?;
    match info.pixel_format {
        jpeg_decoder::PixelFormat::L8 => {
            check(&pixels, w * h)?;
            // Grey: full-range samples into the video range the decoders give.
            for (out, &g) in y.iter_mut().zip(&pixels) {
                *out = luma(g, g, g);
            }
            u.fill(128);
            v.fill(128);
        }
        jpeg_decoder::PixelFormat::RGB24 => {
            check(&pixels, 3 * w * h)?;
            for (out, px) in y.iter_mut().zip(pixels.chunks_exact(3)) {
                *out = luma(px[0], px[1], px[2]);
            }
            for row in 0..ch {
                for col in 0..cw {
                    let (mut r, mut g, mut b, mut n) = (0u32, 0u32, 0u32, 0u32);
                    for yy in 2 * row..(2 * row + 2).min(h) {
                        for xx in 2 * col..(2 * col + 2).min(w) {
                            let p = &pixels[3 * (yy * w + xx)..];
                            r += p[0] as u32;
                            g += p[1] as u32;
                            b += p[2] as u32;
                            n += 1;
                        }
                    }
                    let (r, g, b) = (
                        ((r + n / 2) / n) as i32,
                        ((g + n / 2) / n) as i32,
                        ((b + n / 2) / n) as i32,
                    );
                    u[row * cw + col] =
                        (128 + ((-38 * r - 74 * g + 112 * b + 128) >> 8)).clamp(16, 240) as u8;
                    v[row * cw + col] =
                        (128 + ((112 * r - 94 * g - 18 * b + 128) >> 8)).clamp(16, 240) as u8;
                }
            }
        }
        other => {
            return Err(ConvertError::Jpeg(format!(
                "pixel format {other:?} (only grey and colour JPEGs)"
            )))
        }
    }
    crate::alloc_count::engine_scope(|| drop(pixels));
    Ok(())
}

/// BT.601 video-range luma of a full-range RGB pixel.
fn luma(r: u8, g: u8, b: u8) -> u8 {
    (16 + ((66 * r as i32 + 129 * g as i32 + 25 * b as i32 + 128) >> 8)) as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 4x2 YUYV picture with 8 bytes of row padding.
    fn yuyv_4x2() -> Vec<u8> {
        let mut buf = vec![0xEEu8; 16 * 2];
        buf[..8].copy_from_slice(&[10, 100, 20, 200, 30, 110, 40, 210]);
        buf[16..24].copy_from_slice(&[50, 102, 60, 202, 70, 112, 80, 212]);
        buf
    }

    #[test]
    fn yuyv_rows_are_split_and_chroma_averaged() {
        let mut f = FrameBuf::new(8, 8);
        yuyv(&yuyv_4x2(), 16, 4, 2, &mut f).unwrap();
        let img = f.image();
        assert_eq!((img.width, img.height), (4, 2));
        assert_eq!(img.y, &[10, 20, 30, 40, 50, 60, 70, 80]);
        assert_eq!(img.u, &[101, 111]);
        assert_eq!(img.v, &[201, 211]);
    }

    #[test]
    fn yuyv_with_an_odd_height_uses_the_last_row_alone() {
        let mut f = FrameBuf::new(8, 8);
        let src = yuyv_4x2();
        yuyv(&src[..8], 16, 4, 1, &mut f).unwrap();
        let img = f.image();
        assert_eq!(img.y, &[10, 20, 30, 40]);
        assert_eq!(img.u, &[100, 110]);
        assert_eq!(img.v, &[200, 210]);
    }

    #[test]
    fn nv12_planes_are_copied_and_deinterleaved() {
        // 4x2, stride 6: Y rows, then one CbCr row.
        let src = [
            1, 2, 3, 4, 0, 0, //
            5, 6, 7, 8, 0, 0, //
            100, 200, 101, 201, 0, 0,
        ];
        let mut f = FrameBuf::new(4, 4);
        nv12(&src, 6, 4, 2, &mut f).unwrap();
        let img = f.image();
        assert_eq!(img.y, &[1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(img.u, &[100, 101]);
        assert_eq!(img.v, &[200, 201]);
    }

    #[test]
    fn short_and_oversize_frames_are_errors_not_panics() {
        let mut f = FrameBuf::new(4, 4);
        let e = nv12(&[0u8; 10], 6, 4, 2, &mut f).unwrap_err();
        assert!(
            matches!(e, ConvertError::Short { need: 16, got: 10 }),
            "{e}"
        );
        let e = yuyv(&[0u8; 12], 8, 4, 2, &mut f).unwrap_err();
        assert!(matches!(e, ConvertError::Short { .. }), "{e}");
        let e = yuyv(&[0u8; 4096], 32, 16, 16, &mut f).unwrap_err();
        assert!(matches!(e, ConvertError::TooLarge(_)), "{e}");
        let e = mjpeg(b"not a jpeg", &mut f).unwrap_err();
        assert!(matches!(e, ConvertError::Jpeg(_)), "{e}");
    }

    #[test]
    fn raw_conversion_does_not_allocate() {
        let mut f = FrameBuf::new(640, 480);
        let src_yuyv = vec![128u8; 1280 * 480];
        let src_nv12 = vec![128u8; 640 * 480 * 3 / 2];
        let before = crate::alloc_count::thread_counts();
        for _ in 0..10 {
            yuyv(&src_yuyv, 1280, 640, 480, &mut f).unwrap();
            nv12(&src_nv12, 640, 640, 480, &mut f).unwrap();
        }
        let after = crate::alloc_count::thread_counts();
        assert_eq!(after.ours - before.ours, 0);
    }

    #[test]
    fn an_mjpeg_frame_decodes_at_its_own_size_with_its_colours() {
        // A 64x48 JPEG: left half red, right half blue (what ffmpeg's mjpeg
        // encoder would send from a camera).
        let (w, h) = (64u16, 48u16);
        let mut rgb = Vec::new();
        for _ in 0..h {
            for x in 0..w {
                rgb.extend_from_slice(if x < w / 2 {
                    &[255, 0, 0]
                } else {
                    &[0, 0, 255]
                });
            }
        }
        let mut jpeg = Vec::new();
        jpeg_encoder::Encoder::new(&mut jpeg, 95)
            .encode(&rgb, w, h, jpeg_encoder::ColorType::Rgb)
            .unwrap();
        let mut f = FrameBuf::new(640, 480);
        mjpeg(&jpeg, &mut f).unwrap();
        let img = f.image();
        assert_eq!((img.width, img.height), (64, 48));
        let (y_red, y_blue) = (img.y[10 * 64 + 5] as i32, img.y[10 * 64 + 60] as i32);
        // BT.601: red Y 81, Cr 240; blue Y 41, Cb 240.
        assert!(
            (y_red - 81).abs() <= 4 && (y_blue - 41).abs() <= 4,
            "{y_red} {y_blue}"
        );
        let (v_red, u_blue) = (img.v[5 * 32 + 2] as i32, img.u[5 * 32 + 30] as i32);
        assert!(v_red >= 230 && u_blue >= 230, "{v_red} {u_blue}");
    }
}
