//! What the configuration asks of a V4L2 camera: a pixel format, a size, a
//! rate and a number of driver buffers ([`V4l2Request`]).
//!
//! These are the configuration's words only. What a device offers, the
//! four-character codes and driver buffer sizes, and the negotiation that
//! picks a mode belong to the V4L2 source (`source::v4l2::mode`), which adds
//! the device-facing methods of [`PixelFormat`] there.

use std::fmt;

/// The pixel formats vigil takes from a V4L2 camera.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PixelFormat {
    /// 4:2:0, a Y plane then interleaved CbCr: one copy into a pool frame.
    Nv12,
    /// 4:2:2 packed Y0 Cb Y1 Cr: converted into a pool frame.
    Yuyv,
    /// Motion JPEG: decoded in software here (the RK3588's JPEG decoder,
    /// through MPP, is where the board would decode it).
    Mjpeg,
    /// H.264 access units: they go through the camera's normal decoder.
    H264,
}

impl PixelFormat {
    /// Preference when the configuration names no format: the raw formats
    /// first (no decoding), then the compressed ones.
    pub const ALL: [PixelFormat; 4] = [
        PixelFormat::Nv12,
        PixelFormat::Yuyv,
        PixelFormat::Mjpeg,
        PixelFormat::H264,
    ];

    /// The configuration's name.
    pub fn as_str(self) -> &'static str {
        match self {
            PixelFormat::Nv12 => "nv12",
            PixelFormat::Yuyv => "yuyv",
            PixelFormat::Mjpeg => "mjpeg",
            PixelFormat::H264 => "h264",
        }
    }

    /// Parses a configuration name.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.as_str() == name)
    }
}

impl fmt::Display for PixelFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the configuration asks of a V4L2 camera.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct V4l2Request {
    /// A format, or the first of [`PixelFormat::ALL`] the device offers.
    pub format: Option<PixelFormat>,
    /// A size, or the mode negotiation's default
    /// (`source::v4l2::mode::DEFAULT_SIZE`).
    pub size: Option<(u32, u32)>,
    /// Frames per second, or the device's current rate.
    pub fps: Option<u32>,
    /// mmap'ed driver buffers.
    pub buffers: u32,
}
