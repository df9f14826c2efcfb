//! V4L2 cameras: USB and MIPI cameras behind a Video4Linux2 driver.
//!
//! A V4L2 camera (`url = "v4l:///dev/video0"` or `device = "/dev/video0"`)
//! is captured on its camera thread, the one a network camera's decoder runs
//! on, so the thread count is the same for every kind of camera. The thread
//! opens the device once, negotiates the mode nearest the configuration
//! ([`mode::choose`]) and streams from a fixed number of mmap'ed driver
//! buffers ([`device`]). Each filled buffer is converted straight into a
//! pool frame (NV12, YUYV), decoded in software (MJPEG), or copied into a
//! packet buffer for the camera's normal decoder (H.264), and requeued at
//! once ([`capture`]). When the device goes away (ENODEV, the node
//! vanishing) or stops sending, everything it owned is released and the
//! same thread reopens it with backoff.

pub mod capture;
pub mod convert;
pub mod device;
pub mod mode;

pub use mode::Mode;

use crate::config::{PixelFormat, V4l2Request};

/// Bytes one camera's driver buffers can take, for the memory budget: the
/// configured number of buffers, each sized for the largest frame the
/// camera's pool frames accept (`max`) in the configured format (2 bytes
/// per pixel when the format is left to the device), whole pages. The
/// device refuses to stream with larger buffers ([`device::V4l2Opener`]).
pub fn buffer_bytes(request: &V4l2Request, max: (u32, u32)) -> usize {
    request.buffers as usize * buffer_size(request, max)
}

/// One driver buffer's bound (see [`buffer_bytes`]).
pub fn buffer_size(request: &V4l2Request, max: (u32, u32)) -> usize {
    let per_frame = match request.format {
        Some(f) => f.frame_bytes(max.0, max.1),
        None => PixelFormat::Yuyv.frame_bytes(max.0, max.1),
    };
    per_frame.div_ceil(4096) * 4096
}
