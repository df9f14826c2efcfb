//! Encoding a snapshot as a baseline JPEG into one preallocated buffer.
//!
//! The I420 planes go to `jpeg-encoder` as they are, through its
//! `ImageBuffer` trait (YCbCr input, 4:2:0 sampling): the encoder asks for
//! full-resolution rows, so each chroma sample is handed over twice and the
//! encoder's nearest subsampling picks it back out unchanged. Only the range
//! changes on the way (limited-range video to JFIF's full range, by table).
//! No RGB copy of the picture exists at any point.
//!
//! The output goes through a `std::io::Cursor` over the writer's fixed
//! buffer, so a JPEG larger than the buffer fails with a write error rather
//! than growing anything; the writer then tries once more at a lower quality
//! and otherwise reports [`SnapshotError::TooLarge`].
//!
//! `jpeg-encoder` allocates a little per call: the value lists of its four
//! default Huffman tables, its component list, the scan header's list and
//! three row buffers of 16 rows each (about 61 KB for a 1280-wide picture).
//! The count is constant, 9 per attempt (measured by
//! `encode_allocates_a_constant_count_inside_engine_scope`), so at most 18
//! per `encode`, all freed before it returns. Those calls run inside
//! [`engine_scope`](crate::alloc_count::engine_scope) and are tallied as a
//! third-party engine's, like tract's, not as vigil's own. Encoding happens
//! on the events thread, once per event, never per frame.

use std::io::{Cursor, ErrorKind};

use jpeg_encoder::{Encoder, EncodingError, ImageBuffer, JpegColorType, SamplingFactor};

use super::colour::{CHROMA_TO_FULL, LUMA_TO_FULL};
use super::{SnapshotBuf, SnapshotError};
use crate::alloc_count::engine_scope;
use crate::image::I420;

/// The quality vigil encodes snapshots at unless configured otherwise: 80
/// keeps faces and plates legible at about a fifth of the size of 95 (see
/// the sizes measured in this module's tests).
pub const DEFAULT_QUALITY: u8 = 80;

/// Smallest output buffer [`JpegWriter::capacity_for`] gives, for tiny
/// snapshots whose headers (about 600 bytes) would dominate.
const MIN_CAPACITY: usize = 64 * 1024;

/// Encodes snapshots into one preallocated buffer.
#[derive(Debug)]
pub struct JpegWriter {
    out: Box<[u8]>,
    quality: u8,
}

impl JpegWriter {
    /// A writer whose output buffer holds `capacity` bytes, at `quality`
    /// (clamped to 1..=100).
    pub fn new(capacity: usize, quality: u8) -> JpegWriter {
        JpegWriter {
            out: vec![0u8; capacity].into_boxed_slice(),
            quality: quality.clamp(1, 100),
        }
    }

    /// The output capacity vigil uses for a snapshot of at most
    /// `max_width` x `max_height`: one byte per pixel, at least 64 KiB.
    ///
    /// A 4:2:0 JPEG of a camera picture at quality 80 takes roughly 0.1 to
    /// 0.4 bytes per pixel (a synthetic 1280x720 scene of gradients, edges
    /// and light noise: 0.09), and even pure RGB noise, the worst any picture
    /// can be, takes 0.67 at quality 80 and 0.35 at 40 (measured in
    /// `capacity_policy_fits_real_pictures_and_noise_after_the_retry`). So one
    /// byte per pixel fits every picture at the default quality, and the
    /// retry at half quality is only needed above about 85. The floor covers
    /// the headers (about 600 bytes) of tiny snapshots. For a 1280x720
    /// snapshot that is 900 KiB, one buffer per writer.
    pub fn capacity_for(max_width: u32, max_height: u32) -> usize {
        let (w, h) = (max_width as usize, max_height as usize);
        (w.saturating_add(w & 1))
            .saturating_mul(h.saturating_add(h & 1))
            .max(MIN_CAPACITY)
    }

    /// The output buffer's size in bytes (its budget share).
    pub fn capacity(&self) -> usize {
        self.out.len()
    }

    /// The quality of the first attempt.
    pub fn quality(&self) -> u8 {
        self.quality
    }

    /// The quality of the retry when the first attempt does not fit: half
    /// the configured one (which roughly halves the size), at least 1.
    pub fn fallback_quality(&self) -> u8 {
        (self.quality / 2).max(1)
    }

    /// Encodes `snap` into the buffer and returns the JPEG bytes. When the
    /// result does not fit, retries once at [`Self::fallback_quality`], then
    /// returns [`SnapshotError::TooLarge`]. Never grows the buffer; see the
    /// module docs for the encoder's own allocations.
    pub fn encode(&mut self, snap: &SnapshotBuf) -> Result<&[u8], SnapshotError> {
        let image = snap.image();
        if image.width == 0 || image.height == 0 {
            return Err(SnapshotError::Empty);
        }
        if image.width > u16::MAX as u32 || image.height > u16::MAX as u32 {
            return Err(SnapshotError::Encode(format!(
                "{}x{} exceeds JPEG's 65535-pixel limit",
                image.width, image.height
            )));
        }
        let mut len = self.attempt(image, self.quality)?;
        if len.is_none() && self.fallback_quality() < self.quality {
            len = self.attempt(image, self.fallback_quality())?;
        }
        match len {
            Some(n) => Ok(&self.out[..n]),
            None => Err(SnapshotError::TooLarge {
                capacity: self.out.len(),
            }),
        }
    }

    /// One encoding at `quality`: the length written, or `None` when the
    /// buffer filled up.
    fn attempt(&mut self, image: I420<'_>, quality: u8) -> Result<Option<usize>, SnapshotError> {
        let mut cursor = Cursor::new(&mut self.out[..]);
        let result = engine_scope(|| {
            let mut encoder = Encoder::new(&mut cursor, quality);
            encoder.set_sampling_factor(SamplingFactor::F_2_2);
            encoder.encode_image(Planes(image))
        });
        match result {
            Ok(()) => Ok(Some(cursor.position() as usize)),
            Err(EncodingError::IoError(e)) if e.kind() == ErrorKind::WriteZero => Ok(None),
            Err(e) => Err(SnapshotError::Encode(e.to_string())),
        }
    }
}

/// The snapshot's planes as the encoder reads them. Dimensions are even and
/// at most 65535 (checked by [`JpegWriter::encode`]).
struct Planes<'a>(I420<'a>);

impl ImageBuffer for Planes<'_> {
    fn get_jpeg_color_type(&self) -> JpegColorType {
        JpegColorType::Ycbcr
    }

    fn width(&self) -> u16 {
        self.0.width as u16
    }

    fn height(&self) -> u16 {
        self.0.height as u16
    }

    fn fill_buffers(&self, y: u16, buffers: &mut [Vec<u8>; 4]) {
        let p = &self.0;
        let (w, y) = (p.width as usize, y as usize);
        let luma = &p.y[y * p.y_stride..][..w];
        let at = (y / 2) * p.uv_stride;
        let (u, v) = (&p.u[at..][..w / 2], &p.v[at..][..w / 2]);
        // Pushes stay within the capacity the encoder reserved for its
        // block rows (it pads each row to a multiple of 16 itself).
        let [b0, b1, b2, _] = buffers;
        b0.extend(luma.iter().map(|&s| LUMA_TO_FULL[s as usize]));
        for (out, plane) in [(b1, u), (b2, v)] {
            for &s in plane {
                let s = CHROMA_TO_FULL[s as usize];
                out.push(s);
                out.push(s);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alloc_count::thread_counts;
    use crate::detect::BBox;
    use crate::image::{ImageRef, Rgb8};

    /// A 3x2 grid of flat colours, each region `w/3` x `h/2`.
    const GRID: [[u8; 3]; 6] = [
        [255, 0, 0],
        [0, 255, 0],
        [0, 0, 255],
        [255, 255, 255],
        [0, 0, 0],
        [128, 128, 128],
    ];

    fn grid_rgb(w: usize, h: usize) -> Vec<u8> {
        let mut data = vec![0u8; 3 * w * h];
        for (i, px) in data.chunks_exact_mut(3).enumerate() {
            let (x, y) = (i % w, i / w);
            px.copy_from_slice(&GRID[(y * 2 / h) * 3 + x * 3 / w]);
        }
        data
    }

    fn snapshot_of_rgb(data: &[u8], w: u32, h: u32) -> SnapshotBuf {
        let mut s = SnapshotBuf::new(w, h);
        s.copy_from(&ImageRef::Rgb8(Rgb8 {
            width: w,
            height: h,
            data,
            stride: 3 * w as usize,
        }))
        .unwrap();
        s
    }

    /// A camera-like 1280x720 picture: smooth gradients, some edges and a
    /// little deterministic noise.
    fn scene() -> SnapshotBuf {
        let (w, h) = (1280usize, 720usize);
        let mut rng = 0x2545_f491_u32;
        let mut data = vec![0u8; 3 * w * h];
        for (i, px) in data.chunks_exact_mut(3).enumerate() {
            let (x, y) = (i % w, i / w);
            rng ^= rng << 13;
            rng ^= rng >> 17;
            rng ^= rng << 5;
            let noise = (rng % 9) as i32 - 4;
            let stripe = if (x / 40 + y / 60) % 5 == 0 { 60 } else { 0 };
            let r = (x * 255 / w) as i32 + stripe + noise;
            let g = (y * 255 / h) as i32 + noise;
            let b = 128 + ((x + y) % 64) as i32 - 32 + noise;
            for (c, v) in px.iter_mut().zip([r, g, b]) {
                *c = v.clamp(0, 255) as u8;
            }
        }
        snapshot_of_rgb(&data, w as u32, h as u32)
    }

    fn noise() -> SnapshotBuf {
        let (w, h) = (1280usize, 720usize);
        let mut rng = 0x9e37_79b9_u32;
        let data: Vec<u8> = (0..3 * w * h)
            .map(|_| {
                rng ^= rng << 13;
                rng ^= rng >> 17;
                rng ^= rng << 5;
                (rng >> 24) as u8
            })
            .collect();
        snapshot_of_rgb(&data, w as u32, h as u32)
    }

    fn decode(jpeg: &[u8]) -> (u16, u16, Vec<u8>) {
        let mut d = jpeg_decoder::Decoder::new(jpeg);
        let pixels = d.decode().expect("a valid JPEG");
        let info = d.info().unwrap();
        assert_eq!(info.pixel_format, jpeg_decoder::PixelFormat::RGB24);
        (info.width, info.height, pixels)
    }

    fn encoded_len(snap: &SnapshotBuf, quality: u8) -> usize {
        let mut w = JpegWriter::new(16 << 20, quality);
        w.encode(snap).unwrap().len()
    }

    #[test]
    fn encode_then_decode_gives_the_size_and_the_colours() {
        let (w, h) = (1278usize, 720usize);
        let snap = snapshot_of_rgb(&grid_rgb(w, h), w as u32, h as u32);
        let mut writer = JpegWriter::new(JpegWriter::capacity_for(1280, 720), DEFAULT_QUALITY);
        let jpeg = writer.encode(&snap).unwrap();
        assert_eq!(&jpeg[..2], &[0xFF, 0xD8]);
        assert_eq!(&jpeg[jpeg.len() - 2..], &[0xFF, 0xD9]);
        let (dw, dh, pixels) = decode(jpeg);
        assert_eq!((dw as usize, dh as usize), (w, h));
        for (i, want) in GRID.iter().enumerate() {
            // The centre of each region.
            let (x, y) = ((2 * (i % 3) + 1) * w / 6, (2 * (i / 3) + 1) * h / 4);
            let got = &pixels[3 * (y * w + x)..][..3];
            for (g, e) in got.iter().zip(want) {
                // Limited range in between costs a level or two; JPEG a few.
                assert!(
                    (*g as i32 - *e as i32).abs() <= 6,
                    "region {i}: {got:?} vs {want:?}"
                );
            }
        }
    }

    #[test]
    fn drawn_boxes_survive_encoding() {
        let (w, h) = (640usize, 360usize);
        let mut snap = snapshot_of_rgb(&grid_rgb(w, h)[..], w as u32, h as u32);
        // A box inside the grey region (x 426..640, y 180..360).
        let bbox = BBox {
            x0: 0.75,
            y0: 0.6,
            x1: 0.95,
            y1: 0.95,
        };
        snap.draw_detection(&bbox, "person", 0.9, true);
        let mut writer = JpegWriter::new(JpegWriter::capacity_for(640, 360), DEFAULT_QUALITY);
        let (_, _, pixels) = decode(writer.encode(&snap).unwrap());
        // The left edge of the 4 px red outline, x 480..484, at y 280.
        let px = &pixels[3 * (280 * w + 481)..][..3];
        assert!(px[0] > 200 && px[1] < 60 && px[2] < 60, "{px:?}");
        // Inside the box, still grey.
        let px = &pixels[3 * (280 * w + 540)..][..3];
        assert!(px.iter().all(|&c| (c as i32 - 128).abs() <= 6), "{px:?}");
    }

    #[test]
    fn too_large_and_retry_at_lower_quality() {
        let snap = scene();
        let mut tiny = JpegWriter::new(100, DEFAULT_QUALITY);
        assert_eq!(
            tiny.encode(&snap),
            Err(SnapshotError::TooLarge { capacity: 100 })
        );
        assert_eq!(tiny.capacity(), 100);

        let high = encoded_len(&snap, 90);
        let low = encoded_len(&snap, 45);
        assert!(low < high, "{low} vs {high}");
        // Room for the quality-45 JPEG but not the quality-90 one: the retry
        // fits and gives exactly that JPEG.
        let mut writer = JpegWriter::new((low + high) / 2, 90);
        assert_eq!(writer.fallback_quality(), 45);
        let jpeg = writer.encode(&snap).unwrap();
        assert_eq!(jpeg.len(), low);
        let (w, h, _) = decode(jpeg);
        assert_eq!((w, h), (1280, 720));
        // And one byte short of the retry's size, it is refused.
        let mut writer = JpegWriter::new(low - 1, 90);
        assert_eq!(
            writer.encode(&snap),
            Err(SnapshotError::TooLarge { capacity: low - 1 })
        );
    }

    #[test]
    fn empty_snapshot_is_an_error() {
        let mut writer = JpegWriter::new(1 << 16, DEFAULT_QUALITY);
        assert_eq!(
            writer.encode(&SnapshotBuf::new(64, 64)),
            Err(SnapshotError::Empty)
        );
    }

    #[test]
    fn capacity_policy_fits_real_pictures_and_noise_after_the_retry() {
        assert_eq!(JpegWriter::capacity_for(1280, 720), 1280 * 720);
        assert_eq!(JpegWriter::capacity_for(1279, 719), 1280 * 720);
        assert_eq!(JpegWriter::capacity_for(64, 64), 64 * 1024);
        let cap = JpegWriter::capacity_for(1280, 720);
        let scene = scene();
        let sizes = [50, 80, 95].map(|q| encoded_len(&scene, q));
        eprintln!(
            "1280x720 scene: q50 {} q80 {} q95 {}",
            sizes[0], sizes[1], sizes[2]
        );
        assert!(sizes[0] < sizes[1] && sizes[1] < sizes[2], "{sizes:?}");
        assert!(sizes[1] < cap / 2, "{sizes:?}");
        let noise = noise();
        let (n80, n40) = (encoded_len(&noise, 80), encoded_len(&noise, 40));
        eprintln!("1280x720 noise: q80 {n80} q40 {n40}");
        assert!(
            n40 < cap,
            "pure noise at the fallback quality: {n40} > {cap}"
        );
        let mut writer = JpegWriter::new(cap, DEFAULT_QUALITY);
        assert!(writer.encode(&noise).is_ok());
    }

    #[test]
    fn encode_allocates_a_constant_count_inside_engine_scope() {
        let snap = scene();
        let mut writer = JpegWriter::new(JpegWriter::capacity_for(1280, 720), DEFAULT_QUALITY);
        let mut engine = [0; 3];
        for e in &mut engine {
            let before = thread_counts();
            let n = writer.encode(&snap).unwrap().len();
            let after = thread_counts();
            assert!(n > 0);
            assert_eq!(
                after.ours - before.ours,
                0,
                "encode allocated outside engine_scope"
            );
            *e = after.engine - before.engine;
        }
        eprintln!("allocations per encode: {engine:?}");
        assert!(engine.iter().all(|&e| e == engine[0]), "{engine:?}");
        assert_eq!(engine[0], 9);
        // The retry doubles it.
        let low = encoded_len(&snap, DEFAULT_QUALITY / 2);
        let mut writer = JpegWriter::new(low + 1, DEFAULT_QUALITY);
        let before = thread_counts();
        writer.encode(&snap).unwrap();
        assert_eq!(thread_counts().engine - before.engine, 18);
    }
}
