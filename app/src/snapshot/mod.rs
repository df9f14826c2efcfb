//! Event snapshots: the picture an event fired on, with its boxes drawn, as
//! a JPEG, in memory that is bounded by construction.
//!
//! When an event fires the inference worker copies the current picture into
//! a [`SnapshotBuf`] from a fixed-capacity pool (the frame itself goes back to
//! its pool at once); later an events thread draws the detections on it and a
//! [`JpegWriter`] encodes it into its one preallocated output buffer. Both
//! types allocate only in their constructors, with sizes fixed by the
//! configured snapshot resolution ([`SnapshotBuf::bytes_for`] and
//! [`JpegWriter::capacity_for`] are the budget lines), so a large camera
//! picture is scaled down on the copy and an unlucky JPEG that does not fit
//! is re-encoded once at a lower quality and then refused, never grown.
//!
//! The parts: `scale` (output size and the nearest-neighbour copy from
//! I420, NV12 or RGB), `draw` (box outlines and labels), `jpeg` (the
//! encoder), `colour` (BT.601 conversions shared by the three).

mod colour;
mod draw;
mod jpeg;
mod scale;

pub use jpeg::{JpegWriter, DEFAULT_QUALITY};

use crate::detect::BBox;
use crate::image::{ImageRef, I420};

/// Why a snapshot could not be taken or encoded.
#[derive(Debug, Clone, PartialEq)]
pub enum SnapshotError {
    /// The source picture cannot be read (empty, or planes shorter than its
    /// size and strides say). The reason is static so that reporting it does
    /// not allocate on the inference worker.
    UnsupportedImage {
        /// What is wrong with it.
        reason: &'static str,
        /// The picture's width.
        width: u32,
        /// The picture's height.
        height: u32,
    },
    /// Nothing to encode: the buffer has not been filled yet.
    Empty,
    /// The JPEG did not fit the writer's buffer, even at the lower quality.
    TooLarge {
        /// The writer's capacity in bytes.
        capacity: usize,
    },
    /// The JPEG encoder failed for another reason.
    Encode(String),
}

impl std::fmt::Display for SnapshotError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SnapshotError::UnsupportedImage {
                reason,
                width,
                height,
            } => write!(f, "cannot snapshot a {width}x{height} picture: {reason}"),
            SnapshotError::Empty => write!(f, "the snapshot buffer holds no picture"),
            SnapshotError::TooLarge { capacity } => write!(
                f,
                "the snapshot JPEG does not fit its {capacity}-byte buffer, even at lower quality"
            ),
            SnapshotError::Encode(why) => write!(f, "cannot encode the snapshot: {why}"),
        }
    }
}

impl std::error::Error for SnapshotError {}

/// An I420 picture of at most `max_width` x `max_height`, allocated once.
///
/// The planes are stored packed at the current size (strides equal the
/// widths), with even dimensions so each chroma sample covers exactly two by
/// two luma samples.
#[derive(Debug)]
pub struct SnapshotBuf {
    data: Box<[u8]>,
    max_width: u32,
    max_height: u32,
    width: u32,
    height: u32,
}

/// `v` rounded up to even, and at least 2.
fn even_up(v: u32) -> u32 {
    v.saturating_add(v & 1).max(2)
}

/// Mutable planes of the held picture, `width` x `height` (both even).
struct PlanesMut<'a> {
    y: &'a mut [u8],
    u: &'a mut [u8],
    v: &'a mut [u8],
    width: usize,
    height: usize,
}

impl SnapshotBuf {
    /// A buffer for pictures up to `max_width` x `max_height`, each rounded
    /// up to even (and to at least 2).
    pub fn new(max_width: u32, max_height: u32) -> SnapshotBuf {
        SnapshotBuf {
            data: crate::pool::resident(Self::bytes_for(max_width, max_height)),
            max_width: even_up(max_width),
            max_height: even_up(max_height),
            width: 0,
            height: 0,
        }
    }

    /// Bytes one buffer holds (for the memory budget): the three planes.
    pub fn bytes_for(max_width: u32, max_height: u32) -> usize {
        let (w, h) = (even_up(max_width) as usize, even_up(max_height) as usize);
        w * h + 2 * (w / 2) * (h / 2)
    }

    /// Copies `image`, scaled down (never up, except that a picture smaller
    /// than 2x2 becomes 2x2) to fit the buffer's maximum size with its aspect
    /// kept; the output's dimensions are even. NV12 is read through its
    /// `data`, `stride` and `rows` (its dma-buf is ignored); RGB is converted
    /// to BT.601 limited-range YUV like a camera's. Sampling is nearest
    /// neighbour (see the `scale` module for why).
    ///
    /// On error the buffer keeps the picture it held. Never allocates.
    pub fn copy_from(&mut self, image: &ImageRef<'_>) -> Result<(), SnapshotError> {
        let (width, height) = image.size();
        let unsupported = |reason| SnapshotError::UnsupportedImage {
            reason,
            width,
            height,
        };
        scale::check(image).map_err(unsupported)?;
        let fit = scale::fit(width, height, self.max_width, self.max_height)
            .ok_or_else(|| unsupported("the picture is empty"))?;
        self.width = fit.dst_w as u32;
        self.height = fit.dst_h as u32;
        scale::copy(image, &fit, self.planes_mut());
        Ok(())
    }

    /// Width and height of the picture now held (0,0 before the first copy).
    pub fn size(&self) -> (u32, u32) {
        (self.width, self.height)
    }

    /// Draws a detection on the held picture: `bbox` is normalised to the
    /// picture (out-of-range coordinates are clamped), the outline is 2 px
    /// wide (4 px and red when `highlight`, green otherwise), and a label
    /// such as "person 87%" is written in 8x8 glyphs on a strip of the box's
    /// colour above the box (inside it when the box touches the top),
    /// clipped at the picture's edges. Does nothing before the first copy.
    /// Never allocates.
    pub fn draw_detection(&mut self, bbox: &BBox, label: &str, score: f32, highlight: bool) {
        if self.width == 0 || self.height == 0 {
            return;
        }
        draw::detection(&mut self.planes_mut(), bbox, label, score, highlight);
    }

    /// The held picture as an I420 view (for tests and for the encoder).
    pub fn image(&self) -> I420<'_> {
        let (w, h) = (self.width as usize, self.height as usize);
        let (cw, ch) = (w / 2, h / 2);
        let (y, rest) = self.data.split_at(w * h);
        let (u, rest) = rest.split_at(cw * ch);
        I420 {
            width: self.width,
            height: self.height,
            y,
            u,
            v: &rest[..cw * ch],
            y_stride: w,
            uv_stride: cw,
        }
    }

    fn planes_mut(&mut self) -> PlanesMut<'_> {
        let (w, h) = (self.width as usize, self.height as usize);
        let (cw, ch) = (w / 2, h / 2);
        let (y, rest) = self.data.split_at_mut(w * h);
        let (u, rest) = rest.split_at_mut(cw * ch);
        PlanesMut {
            y,
            u,
            v: &mut rest[..cw * ch],
            width: w,
            height: h,
        }
    }
}

#[cfg(test)]
mod tests;
