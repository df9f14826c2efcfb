//! Borrowed views of decoded pictures, the common currency between decoders,
//! the frame pool and detectors.
//!
//! A view never owns pixels: the software backends point it into pool
//! buffers, and the hardware backend describes an MPP frame the same way: an
//! [`Nv12`] view carries the [`DmaBuf`] beside its CPU mapping, so RGA reads
//! it by fd and the CPU never touches the planes on the NPU path.

/// An 8-bit YUV 4:2:0 picture with three planes (I420), as software decoders
/// produce it. Chroma planes are `ceil(width/2) x ceil(height/2)`.
#[derive(Clone, Copy, Debug)]
pub struct I420<'a> {
    /// Visible width in pixels.
    pub width: u32,
    /// Visible height in pixels.
    pub height: u32,
    /// Luma plane, `y_stride * height` bytes at least.
    pub y: &'a [u8],
    /// Cb plane.
    pub u: &'a [u8],
    /// Cr plane.
    pub v: &'a [u8],
    /// Bytes per luma row.
    pub y_stride: usize,
    /// Bytes per chroma row (both chroma planes).
    pub uv_stride: usize,
}

/// A packed 8-bit RGB picture (R, G, B per pixel), as the JPEG decoder gives it.
#[derive(Clone, Copy, Debug)]
pub struct Rgb8<'a> {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// `stride * height` bytes.
    pub data: &'a [u8],
    /// Bytes per row (at least `3 * width`).
    pub stride: usize,
}

/// Which dma-buf a picture lives in, for engines that read by fd (RGA).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DmaBuf {
    /// The buffer's fd, owned by the decoder: never closed by a reader.
    pub fd: i32,
    /// The decoder the buffer belongs to (unique in the process).
    pub source: u32,
    /// The decoder's buffer generation: it changes when the decoder's
    /// buffers are freed and re-made (an info change), so a reader's import
    /// of an older generation refers to a buffer that is gone.
    pub generation: u32,
}

/// An 8-bit YUV 4:2:0 picture with a luma plane followed by one
/// interleaved CbCr plane (NV12), as the MPP decoder writes it.
#[derive(Clone, Copy, Debug)]
pub struct Nv12<'a> {
    /// Visible width in pixels.
    pub width: u32,
    /// Visible height in pixels.
    pub height: u32,
    /// Both planes: luma rows, then from `stride * rows` the chroma rows.
    pub data: &'a [u8],
    /// Bytes per row of both planes (at least `width`).
    pub stride: usize,
    /// Rows the luma plane occupies (at least `height`; decoders align it).
    pub rows: usize,
    /// The dma-buf holding `data`, when there is one.
    pub dma: Option<DmaBuf>,
}

/// Any picture a detector can take.
#[derive(Clone, Copy, Debug)]
pub enum ImageRef<'a> {
    /// Planar YUV from a decoder.
    I420(I420<'a>),
    /// Semi-planar YUV from the hardware decoder.
    Nv12(Nv12<'a>),
    /// Packed RGB from an image file.
    Rgb8(Rgb8<'a>),
}

impl ImageRef<'_> {
    /// Width and height in pixels.
    pub fn size(&self) -> (u32, u32) {
        match self {
            ImageRef::I420(p) => (p.width, p.height),
            ImageRef::Nv12(p) => (p.width, p.height),
            ImageRef::Rgb8(p) => (p.width, p.height),
        }
    }
}
