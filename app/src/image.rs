//! Borrowed views of decoded pictures, the common currency between decoders,
//! the frame pool and detectors.
//!
//! A view never owns pixels: the software backends point it into pool
//! buffers, and the hardware backend will describe a dma-buf the same way
//! (RGA reads it by fd, so the CPU never touches the planes there).

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

/// Any picture a detector can take.
#[derive(Clone, Copy, Debug)]
pub enum ImageRef<'a> {
    /// Planar YUV from a decoder.
    I420(I420<'a>),
    /// Packed RGB from an image file.
    Rgb8(Rgb8<'a>),
}

impl ImageRef<'_> {
    /// Width and height in pixels.
    pub fn size(&self) -> (u32, u32) {
        match self {
            ImageRef::I420(p) => (p.width, p.height),
            ImageRef::Rgb8(p) => (p.width, p.height),
        }
    }
}
