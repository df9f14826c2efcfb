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
    /// The JPEG's frame header could not be read or names a kind of JPEG
    /// that is not decoded here (the frame is dropped before decoding).
    JpegHeader(HeaderError),
    /// The JPEG's frame header asks for a picture larger than the camera's
    /// pool frames (`max_resolution`): dropped before decoding.
    JpegTooLarge(FrameTooLarge),
}

impl fmt::Display for ConvertError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConvertError::Short { need, got } => {
                write!(f, "short frame: {got} bytes, the mode needs {need}")
            }
            ConvertError::TooLarge(e) => e.fmt(f),
            ConvertError::Jpeg(e) => write!(f, "MJPEG frame: {e}"),
            ConvertError::JpegHeader(e) => write!(f, "MJPEG frame header: {e}"),
            ConvertError::JpegTooLarge(e) => write!(
                f,
                "MJPEG frame header says {}x{}, larger than max_resolution {}x{}; dropped before decoding",
                e.width, e.height, e.max_width, e.max_height
            ),
        }
    }
}

impl std::error::Error for ConvertError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ConvertError::TooLarge(e) | ConvertError::JpegTooLarge(e) => Some(e),
            ConvertError::JpegHeader(e) => Some(e),
            ConvertError::Short { .. } | ConvertError::Jpeg(_) => None,
        }
    }
}

/// Transient bytes per pixel of `max_resolution` that decoding one MJPEG
/// frame may allocate (inside jpeg-decoder, freed before the next frame):
/// the decoded component planes (at most 3 bytes a pixel for 4:4:4, padded
/// to whole MCUs), the RGB picture it returns (3), and one more for the MCU
/// padding, Huffman tables and row buffers. [`jpeg_header`] refuses the
/// progressive and lossless processes, whose coefficient buffers would add
/// 2 bytes per sample more.
pub const MJPEG_DECODE_BYTES_PER_PIXEL: u64 = 7;

/// What a JPEG's frame header (SOF) says: the picture's size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct JpegHeader {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
}

/// Why a JPEG's frame header could not be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeaderError {
    /// The frame does not start with a JPEG start-of-image marker.
    NotJpeg,
    /// The frame ends before its frame header does.
    Truncated,
    /// A scan or the end of the image comes before any frame header.
    NoFrameHeader,
    /// A marker segment's length is below its own two bytes.
    BadLength {
        /// Offset of the length field in the frame.
        offset: usize,
    },
    /// A coding process other than baseline or extended sequential Huffman
    /// (the SOF marker's second byte: 0xC2 progressive, 0xC3 lossless, ...).
    Process(u8),
    /// A sample precision other than 8 bits.
    Precision(u8),
    /// A component count other than 1 (grey) or 3 (colour).
    Components(u8),
    /// A width or height of 0 (a height given later by a DNL marker).
    ZeroSize,
}

impl fmt::Display for HeaderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HeaderError::NotJpeg => f.write_str("not a JPEG (no start-of-image marker)"),
            HeaderError::Truncated => f.write_str("ends before its frame header"),
            HeaderError::NoFrameHeader => f.write_str("no frame header before the scan"),
            HeaderError::BadLength { offset } => {
                write!(f, "marker segment length below 2 at byte {offset}")
            }
            HeaderError::Process(m) => write!(
                f,
                "coding process 0x{m:02X} (only baseline and extended sequential JPEG)"
            ),
            HeaderError::Precision(p) => write!(f, "{p}-bit samples (only 8-bit)"),
            HeaderError::Components(n) => {
                write!(f, "{n} components (only grey and colour JPEGs)")
            }
            HeaderError::ZeroSize => f.write_str("a width or height of 0"),
        }
    }
}

impl std::error::Error for HeaderError {}

/// Reads the size from `src`'s frame header without decoding or allocating.
///
/// Markers are found the way jpeg-decoder finds them (bytes between
/// segments skipped up to the next 0xFF, fill bytes and stuffed 0xFF00
/// ignored, every other segment skipped by its length), so the first frame
/// header seen here is the one the decoder would size its buffers from.
pub fn jpeg_header(src: &[u8]) -> Result<JpegHeader, HeaderError> {
    if !src.starts_with(&[0xFF, 0xD8]) {
        return Err(if [0xFF, 0xD8].starts_with(src) {
            HeaderError::Truncated
        } else {
            HeaderError::NotJpeg
        });
    }
    let byte = |i: usize| src.get(i).copied().ok_or(HeaderError::Truncated);
    let be16 = |i: usize| Ok::<_, HeaderError>(u16::from_be_bytes([byte(i)?, byte(i + 1)?]));
    let mut i = 2;
    loop {
        let marker = loop {
            while byte(i)? != 0xFF {
                i += 1;
            }
            let mut b = byte(i + 1)?;
            i += 2;
            while b == 0xFF {
                b = byte(i)?;
                i += 1;
            }
            if b != 0 {
                break b;
            }
        };
        match marker {
            // Baseline and extended sequential DCT, Huffman coded.
            0xC0 | 0xC1 => {
                // Length, precision, height, width, component count.
                let precision = byte(i + 2)?;
                let (height, width) = (be16(i + 3)?, be16(i + 5)?);
                let components = byte(i + 7)?;
                if precision != 8 {
                    return Err(HeaderError::Precision(precision));
                }
                if components != 1 && components != 3 {
                    return Err(HeaderError::Components(components));
                }
                if width == 0 || height == 0 {
                    return Err(HeaderError::ZeroSize);
                }
                return Ok(JpegHeader {
                    width: u32::from(width),
                    height: u32::from(height),
                });
            }
            // Every other SOF (0xC4 is DHT, 0xC8 reserved, 0xCC DAC).
            0xC2 | 0xC3 | 0xC5..=0xC7 | 0xC9..=0xCB | 0xCD..=0xCF => {
                return Err(HeaderError::Process(marker))
            }
            // Start of scan, end of image.
            0xDA | 0xD9 => return Err(HeaderError::NoFrameHeader),
            // Markers without a segment: RSTn, SOI, TEM.
            0xD0..=0xD8 | 0x01 => {}
            _ => {
                let len = usize::from(be16(i)?);
                if len < 2 {
                    return Err(HeaderError::BadLength { offset: i });
                }
                i += len;
            }
        }
    }
}

/// Refuses a `width` x `height` picture that does not fit `dst` (the
/// camera's `max_resolution`); no allocation either way.
fn fits(dst: &mut FrameBuf, width: u32, height: u32) -> Result<(), ConvertError> {
    dst.planes_mut(width, height)
        .map(drop)
        .map_err(ConvertError::JpegTooLarge)
}

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

/// One MJPEG frame into `dst`, at the size the JPEG itself says; a frame
/// whose header asks for more than `dst` holds is refused before decoding.
pub fn mjpeg(src: &[u8], dst: &mut FrameBuf) -> Result<(), ConvertError> {
    let header = jpeg_header(src).map_err(ConvertError::JpegHeader)?;
    fits(dst, header.width, header.height)?;
    let (pixels, info) = crate::alloc_count::engine_scope(|| {
        let mut decoder = jpeg_decoder::Decoder::new(src);
        let jpeg = |e: jpeg_decoder::Error| ConvertError::Jpeg(e.to_string());
        // The decoder's own reading of the header, checked again before it
        // sizes anything from it (read_info stops after the frame header).
        decoder.read_info().map_err(jpeg)?;
        let info = decoder
            .info()
            .ok_or_else(|| ConvertError::Jpeg("no frame header".into()))?;
        fits(dst, info.width.into(), info.height.into())?;
        let pixels = decoder.decode().map_err(jpeg)?;
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
        assert!(
            matches!(e, ConvertError::JpegHeader(HeaderError::NotJpeg)),
            "{e}"
        );
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

    /// A `w` x `h` JPEG from jpeg-encoder (what a camera's MJPEG encoder
    /// sends): colour or grey.
    fn encoded(w: u16, h: u16, grey: bool) -> Vec<u8> {
        let (colour, bpp) = if grey {
            (jpeg_encoder::ColorType::Luma, 1)
        } else {
            (jpeg_encoder::ColorType::Rgb, 3)
        };
        let pixels: Vec<u8> = (0..usize::from(w) * usize::from(h) * bpp)
            .map(|i| (i * 7 % 251) as u8)
            .collect();
        let mut jpeg = Vec::new();
        jpeg_encoder::Encoder::new(&mut jpeg, 90)
            .encode(&pixels, w, h, colour)
            .unwrap();
        jpeg
    }

    /// Offset of the SOF0 marker in `jpeg`.
    fn sof(jpeg: &[u8]) -> usize {
        jpeg.windows(2).position(|m| m == [0xFF, 0xC0]).unwrap()
    }

    /// `jpeg` with its frame header rewritten to say `w` x `h`.
    fn claiming(mut jpeg: Vec<u8>, w: u16, h: u16) -> Vec<u8> {
        let at = sof(&jpeg) + 5;
        jpeg[at..at + 2].copy_from_slice(&h.to_be_bytes());
        jpeg[at + 2..at + 4].copy_from_slice(&w.to_be_bytes());
        jpeg
    }

    #[test]
    fn an_mjpeg_header_saying_65000x65000_is_refused_before_any_allocation() {
        // A well-formed JPEG (tables, scan, end) whose frame header was
        // corrupted to 65000x65000: today's main hands it to jpeg-decoder,
        // which asks for 8125 x 8125 blocks of 64 bytes (4.2 GB) at once.
        let jpeg = claiming(encoded(64, 48, false), 65000, 65000);
        let mut f = FrameBuf::new(640, 480);
        let before = crate::alloc_count::thread_counts();
        let e = mjpeg(&jpeg, &mut f).unwrap_err();
        let after = crate::alloc_count::thread_counts();
        assert_eq!(
            (after.ours - before.ours, after.engine - before.engine),
            (0, 0),
            "allocations made for a refused frame"
        );
        let text = e.to_string();
        assert!(
            text.contains("65000x65000") && text.contains("640x480"),
            "{text}"
        );
        assert!(
            matches!(
                e,
                ConvertError::JpegTooLarge(FrameTooLarge {
                    width: 65000,
                    height: 65000,
                    max_width: 640,
                    max_height: 480
                })
            ),
            "{e:?}"
        );
    }

    #[test]
    fn an_oversize_mjpeg_frame_is_dropped_and_the_next_one_decodes() {
        let mut f = FrameBuf::new(32, 32);
        let e = mjpeg(&encoded(64, 48, false), &mut f).unwrap_err();
        assert!(matches!(e, ConvertError::JpegTooLarge(_)), "{e}");
        assert_eq!(
            e.to_string(),
            "MJPEG frame header says 64x48, larger than max_resolution 32x32; dropped before decoding"
        );
        mjpeg(&encoded(32, 16, true), &mut f).unwrap();
        assert_eq!(f.image().width, 32);
        assert_eq!(f.image().height, 16);
    }

    #[test]
    fn the_header_reader_gives_the_size_jpeg_decoder_reads() {
        for (w, h, grey) in [
            (1, 1, true),
            (17, 9, false),
            (64, 48, false),
            (320, 240, true),
        ] {
            let jpeg = encoded(w, h, grey);
            let mut d = jpeg_decoder::Decoder::new(&jpeg[..]);
            d.read_info().unwrap();
            let info = d.info().unwrap();
            assert_eq!(
                jpeg_header(&jpeg),
                Ok(JpegHeader {
                    width: info.width.into(),
                    height: info.height.into()
                })
            );
            assert_eq!((info.width, info.height), (w, h));
        }
    }

    #[test]
    fn a_truncated_header_is_an_error_at_every_length() {
        let jpeg = encoded(64, 48, false);
        // The frame header ends 10 bytes after its marker (3 components).
        let end = sof(&jpeg) + 10;
        for n in 0..end {
            assert_eq!(jpeg_header(&jpeg[..n]), Err(HeaderError::Truncated), "{n}");
        }
        assert!(jpeg_header(&jpeg[..end]).is_ok());
    }

    #[test]
    fn headers_refused_by_kind_name_what_is_wrong() {
        let jpeg = encoded(16, 16, false);
        let at = sof(&jpeg);
        let with = |i: usize, b: u8| {
            let mut j = jpeg.clone();
            j[i] = b;
            jpeg_header(&j)
        };
        assert_eq!(with(at + 1, 0xC2), Err(HeaderError::Process(0xC2)));
        assert_eq!(with(at + 4, 12), Err(HeaderError::Precision(12)));
        assert_eq!(with(at + 9, 4), Err(HeaderError::Components(4)));
        assert_eq!(
            jpeg_header(&claiming(jpeg.clone(), 16, 0)),
            Err(HeaderError::ZeroSize)
        );
        assert_eq!(jpeg_header(b"not a jpeg"), Err(HeaderError::NotJpeg));
        assert_eq!(
            jpeg_header(&[0xFF, 0xD8, 0xFF, 0xDA]),
            Err(HeaderError::NoFrameHeader)
        );
        assert_eq!(
            jpeg_header(&[0xFF, 0xD8, 0xFF, 0xE0, 0, 1]),
            Err(HeaderError::BadLength { offset: 4 })
        );
        let mut f = FrameBuf::new(64, 64);
        let e = mjpeg(&[0xFF, 0xD8, 0xFF, 0xDA], &mut f).unwrap_err();
        assert_eq!(
            e.to_string(),
            "MJPEG frame header: no frame header before the scan"
        );
    }

    /// A small deterministic generator (xorshift64) for the fuzz tests.
    fn xorshift(state: &mut u64) -> u64 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *state
    }

    #[test]
    fn garbage_and_mutated_frames_never_panic_and_agree_with_the_decoder() {
        let valid = encoded(40, 24, false);
        let mut seed = 0x9E37_79B9_7F4A_7C15u64;
        let mut agreed = 0;
        for round in 0..20_000 {
            let buf: Vec<u8> = if round % 2 == 0 {
                // Garbage, often starting like a JPEG.
                let len = (xorshift(&mut seed) % 48) as usize;
                let mut b: Vec<u8> = (0..len).map(|_| xorshift(&mut seed) as u8).collect();
                if round % 4 == 0 && len >= 2 {
                    b[..2].copy_from_slice(&[0xFF, 0xD8]);
                }
                b
            } else {
                // A valid frame with a few bytes of its headers changed,
                // then cut somewhere.
                let mut b = valid.clone();
                for _ in 0..1 + xorshift(&mut seed) % 3 {
                    let i = (xorshift(&mut seed) % 200) as usize % b.len();
                    b[i] = xorshift(&mut seed) as u8;
                }
                let cut = (xorshift(&mut seed) as usize) % (b.len() + 1);
                b.truncate(cut.max(200.min(b.len())));
                b
            };
            let ours = jpeg_header(&buf);
            let mut d = jpeg_decoder::Decoder::new(&buf[..]);
            if let (Ok(h), Ok(())) = (ours, d.read_info()) {
                let info = d.info().unwrap();
                assert_eq!(
                    (h.width, h.height),
                    (u32::from(info.width), u32::from(info.height)),
                    "{buf:02X?}"
                );
                agreed += 1;
            }
        }
        // The mutated frames mostly keep a readable header.
        assert!(agreed > 1000, "{agreed}");
    }
}
