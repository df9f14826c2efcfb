//! Decoded pictures in fixed-size buffers from the camera's frame pool.
//!
//! A [`FrameBuf`] is sized at start for the largest picture the camera is
//! configured for (`max_width` x `max_height`, I420); a stream larger than
//! that is refused with [`FrameTooLarge`], which puts the camera in an error
//! state rather than growing a buffer. On the board the same role is played
//! by a frame of MPP's fixed buffer group, described by fd instead of bytes:
//! a [`Frame`] is either.

use crate::hw::mpp::MppPicture;
use crate::image::{ImageRef, I420};
use crate::pool::Lease;

/// A decoded picture on its way to an inference worker.
pub enum Frame {
    /// Copied into a buffer of the camera's frame pool (software decoding).
    Cpu(Lease<FrameBuf>),
    /// A frame of the camera's MPP buffer group, returned to it on drop.
    Mpp {
        /// The frame.
        picture: MppPicture,
        /// Index of the camera (config order).
        camera: usize,
        /// One of the camera's `frame_pool` tickets: the pipeline holds at
        /// most that many MPP frames per camera, leaving the rest of the
        /// group to the decoder's reference pictures.
        ticket: Lease<()>,
    },
}

impl Frame {
    /// The camera the picture came from.
    pub fn camera(&self) -> usize {
        match self {
            Frame::Cpu(f) => f.camera,
            Frame::Mpp { camera, .. } => *camera,
        }
    }

    /// Presentation time in microseconds of stream time.
    pub fn pts_us(&self) -> i64 {
        match self {
            Frame::Cpu(f) => f.pts_us,
            Frame::Mpp { picture, .. } => picture.pts,
        }
    }

    /// The picture as a detector takes it.
    pub fn image(&self) -> ImageRef<'_> {
        match self {
            Frame::Cpu(f) => ImageRef::I420(f.image()),
            Frame::Mpp { picture, .. } => picture.image(),
        }
    }
}

/// A picture larger than the frame buffers were sized for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameTooLarge {
    /// The picture's width.
    pub width: u32,
    /// The picture's height.
    pub height: u32,
    /// The configured maximum width.
    pub max_width: u32,
    /// The configured maximum height.
    pub max_height: u32,
}

impl std::fmt::Display for FrameTooLarge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "picture {}x{} exceeds the configured max_resolution {}x{}",
            self.width, self.height, self.max_width, self.max_height
        )
    }
}

impl std::error::Error for FrameTooLarge {}

/// The Y, Cb and Cr planes of a picture being written.
pub type PlanesMut<'a> = (&'a mut [u8], &'a mut [u8], &'a mut [u8]);

/// One I420 picture in a buffer of fixed capacity.
#[derive(Debug)]
pub struct FrameBuf {
    data: Box<[u8]>,
    max_width: u32,
    max_height: u32,
    width: u32,
    height: u32,
    /// Presentation time in microseconds of stream time.
    pub pts_us: i64,
    /// Index of the camera the picture came from (config order).
    pub camera: usize,
}

impl FrameBuf {
    /// Bytes one I420 picture of `width` x `height` needs.
    pub fn bytes_for(width: u32, height: u32) -> usize {
        let (w, h) = (width as usize, height as usize);
        let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
        w * h + 2 * cw * ch
    }

    /// A buffer for pictures up to `max_width` x `max_height`; allocated once.
    pub fn new(max_width: u32, max_height: u32) -> Self {
        FrameBuf {
            data: crate::pool::resident(Self::bytes_for(max_width, max_height)),
            max_width,
            max_height,
            width: 0,
            height: 0,
            pts_us: 0,
            camera: 0,
        }
    }

    /// Copies `src` in, packing its rows (strides become the width).
    pub fn copy_from(&mut self, src: &I420<'_>) -> Result<(), FrameTooLarge> {
        if src.width > self.max_width
            || src.height > self.max_height
            || Self::bytes_for(src.width, src.height) > self.data.len()
        {
            return Err(FrameTooLarge {
                width: src.width,
                height: src.height,
                max_width: self.max_width,
                max_height: self.max_height,
            });
        }
        let (w, h) = (src.width as usize, src.height as usize);
        let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
        let (y, rest) = self.data.split_at_mut(w * h);
        let (u, rest) = rest.split_at_mut(cw * ch);
        let v = &mut rest[..cw * ch];
        copy_plane(y, w, h, src.y, src.y_stride);
        copy_plane(u, cw, ch, src.u, src.uv_stride);
        copy_plane(v, cw, ch, src.v, src.uv_stride);
        self.width = src.width;
        self.height = src.height;
        Ok(())
    }

    /// The packed Y, Cb and Cr planes of a `width` x `height` picture, for
    /// a converter to write in place (camera formats that are not I420);
    /// the buffer then holds a picture of that size.
    pub fn planes_mut(&mut self, width: u32, height: u32) -> Result<PlanesMut<'_>, FrameTooLarge> {
        if width > self.max_width
            || height > self.max_height
            || Self::bytes_for(width, height) > self.data.len()
        {
            return Err(FrameTooLarge {
                width,
                height,
                max_width: self.max_width,
                max_height: self.max_height,
            });
        }
        self.width = width;
        self.height = height;
        let (w, h) = (width as usize, height as usize);
        let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
        let (y, rest) = self.data.split_at_mut(w * h);
        let (u, rest) = rest.split_at_mut(cw * ch);
        Ok((y, u, &mut rest[..cw * ch]))
    }

    /// The picture as a borrowed view.
    pub fn image(&self) -> I420<'_> {
        let (w, h) = (self.width as usize, self.height as usize);
        let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
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

    /// Bytes this buffer holds (its budget share).
    pub fn capacity_bytes(&self) -> usize {
        self.data.len()
    }
}

fn copy_plane(dst: &mut [u8], w: usize, h: usize, src: &[u8], stride: usize) {
    for (row, out) in dst.chunks_exact_mut(w.max(1)).take(h).enumerate() {
        let start = row * stride;
        out.copy_from_slice(&src[start..start + w]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_strided_planes_and_refuses_big_pictures() {
        // 3x3 picture with luma stride 4 and chroma 2x2 with stride 3.
        let y = [1, 2, 3, 0, 4, 5, 6, 0, 7, 8, 9, 0];
        let u = [10, 11, 0, 12, 13, 0];
        let v = [20, 21, 0, 22, 23, 0];
        let src = I420 {
            width: 3,
            height: 3,
            y: &y,
            u: &u,
            v: &v,
            y_stride: 4,
            uv_stride: 3,
        };
        let mut f = FrameBuf::new(4, 4);
        f.copy_from(&src).unwrap();
        let img = f.image();
        assert_eq!(img.y, &[1, 2, 3, 4, 5, 6, 7, 8, 9]);
        assert_eq!(img.u, &[10, 11, 12, 13]);
        assert_eq!(img.v, &[20, 21, 22, 23]);
        let big = I420 { width: 5, ..src };
        assert_eq!(f.copy_from(&big).unwrap_err().width, 5);
    }
}
