//! One camera's measurements: its counters, its state with the reason, the
//! picture it streams, its recording and (for V4L2 cameras) the device and
//! mode it negotiated.
//!
//! The mode is kept as a plain [`V4l2Mode`] of the values shown, filled in
//! by the capture code, so that metrics knows nothing of sources (issue 15:
//! `metrics` imported `source::v4l2::Mode` while every source imports
//! `metrics`, a circle).

use super::{Counter, DropCounters, Gauge};
use crate::packet::Codec;
use std::sync::{Mutex, PoisonError};

/// Where a camera is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CameraState {
    /// Opening its source (or waiting to retry).
    Connecting,
    /// Receiving and decoding.
    Streaming,
    /// Stopped by an error it cannot retry past (the reason says which).
    Error,
    /// Shut down.
    Stopped,
}

impl CameraState {
    /// Every state, in label order.
    pub const ALL: [CameraState; 4] = [
        CameraState::Connecting,
        CameraState::Streaming,
        CameraState::Error,
        CameraState::Stopped,
    ];

    /// Lower-case name for status output and labels.
    pub fn as_str(self) -> &'static str {
        match self {
            CameraState::Connecting => "connecting",
            CameraState::Streaming => "streaming",
            CameraState::Error => "error",
            CameraState::Stopped => "stopped",
        }
    }
}

/// A camera's state with its context, for status pages and logs.
#[derive(Clone, Debug, PartialEq)]
pub struct CameraStatus {
    /// The state.
    pub state: CameraState,
    /// Why it is in it (the last error while connecting or in error).
    pub reason: String,
    /// The stream's codec once known.
    pub codec: Option<Codec>,
    /// Decoded picture size once known.
    pub width: u32,
    /// Decoded picture height once known.
    pub height: u32,
}

/// Everything measured for one camera.
#[derive(Debug)]
pub struct CameraMetrics {
    /// The camera's configured name (the `camera` label).
    pub name: String,
    /// Access units received from the source.
    pub packets_received: Counter,
    /// Payload bytes received.
    pub bytes_received: Counter,
    /// Access units thrown away, by reason.
    pub packets_dropped: DropCounters,
    /// Pictures out of the decoder.
    pub frames_decoded: Counter,
    /// Decoded pictures not detected on, by reason.
    pub frames_dropped: DropCounters,
    /// Pictures the detector ran on.
    pub frames_detected: Counter,
    /// Objects detected (of reported classes, above threshold).
    pub detections: Counter,
    /// Events raised.
    pub events: Counter,
    /// Source sessions opened after the first.
    pub reconnects: Counter,
    /// Decode fps over the last second (set by the monitor).
    pub decode_fps: Gauge,
    /// Detection fps over the last second (set by the monitor).
    pub detect_fps: Gauge,
    /// The camera's clips.
    pub record: RecordMetrics,
    /// The V4L2 device and mode (V4L2 cameras only).
    pub v4l2: V4l2Metrics,
    status: Mutex<CameraStatus>,
}

/// What the status page and `/metrics` show of the mode a V4L2 device
/// confirmed: plain values, converted by the capture code.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct V4l2Mode {
    /// The pixel format's configuration name (nv12, yuyv, mjpeg or h264).
    pub format: &'static str,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Bytes per row of the first plane.
    pub stride: u32,
    /// Bytes of one frame as the driver sizes it.
    pub frame_bytes: u32,
    /// Frames per second the device reports (0 when it does not say).
    pub fps: f64,
    /// mmap'ed buffers the driver granted.
    pub buffers: u32,
}

/// A V4L2 camera's device and the mode it negotiated.
#[derive(Debug, Default)]
pub struct V4l2Metrics {
    /// The device node; empty for cameras of other kinds.
    device: Mutex<String>,
    mode: Mutex<Option<V4l2Mode>>,
    /// Frames the driver captured but dropped for want of a free buffer
    /// (gaps in its sequence numbers).
    pub driver_dropped: Counter,
}

impl V4l2Metrics {
    /// Marks the camera as a V4L2 one on `device` (at start).
    pub fn set_device(&self, device: &str) {
        let mut d = self.device.lock().unwrap_or_else(PoisonError::into_inner);
        d.clear();
        d.push_str(device);
    }

    /// The device node, when the camera is a V4L2 one.
    pub fn device(&self) -> Option<String> {
        let d = self.device.lock().unwrap_or_else(PoisonError::into_inner);
        (!d.is_empty()).then(|| d.clone())
    }

    /// Calls `f` with the device node (`None` for cameras of other kinds),
    /// without copying it.
    pub fn with_device<R>(&self, f: impl FnOnce(Option<&str>) -> R) -> R {
        let d = self.device.lock().unwrap_or_else(PoisonError::into_inner);
        f((!d.is_empty()).then_some(d.as_str()))
    }

    /// Records the mode the device confirmed (at each open).
    pub fn set_mode(&self, mode: V4l2Mode) {
        *self.mode.lock().unwrap_or_else(PoisonError::into_inner) = Some(mode);
    }

    /// The mode of the last open, if the device was ever opened.
    pub fn mode(&self) -> Option<V4l2Mode> {
        *self.mode.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// One camera's recording (`crate::record`).
#[derive(Debug, Default)]
pub struct RecordMetrics {
    /// Clips opened by an event.
    pub clips_opened: Counter,
    /// Clips finished and linked in the store.
    pub clips_finished: Counter,
    /// Clips cut short: the writer fell behind the ring, the stream
    /// restarted, too many clips were waiting, or the disk refused.
    pub clips_truncated: Counter,
    /// Access units written into clips.
    pub units_written: Counter,
    /// Bytes written into clip files.
    pub bytes_written: Counter,
    /// Clip writes that failed (disk full, read-only, quota).
    pub write_errors: Counter,
    /// Units the pre-roll ring refused (larger than the ring, or a group of
    /// pictures longer than it holds).
    pub ring_refused: Counter,
    /// 1 while a clip is open or being written.
    pub recording: Gauge,
    /// Bytes of compressed stream the ring holds.
    pub ring_bytes: Gauge,
    /// Stream seconds the ring holds (the pre-roll it can give).
    pub ring_seconds: Gauge,
    /// The last write error ("" once a clip was written since).
    pub last_error: Mutex<String>,
}

impl RecordMetrics {
    /// Records a write failure: counted, shown on the status page, logged
    /// once per distinct message.
    pub fn fail(&self, camera: &str, reason: &str) {
        self.write_errors.inc();
        let mut e = self
            .last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if *e != reason {
            log::error!("camera {camera}: recording: {reason}");
            e.clear();
            e.push_str(reason);
        }
    }

    /// Clears the error after a clip was written.
    pub fn ok(&self) {
        self.last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }

    /// The last write error.
    pub fn error(&self) -> String {
        self.last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl CameraMetrics {
    /// Fresh metrics for camera `name`, in state connecting.
    pub fn new(name: &str) -> Self {
        CameraMetrics {
            name: name.to_owned(),
            packets_received: Counter::default(),
            bytes_received: Counter::default(),
            packets_dropped: DropCounters::default(),
            frames_decoded: Counter::default(),
            frames_dropped: DropCounters::default(),
            frames_detected: Counter::default(),
            detections: Counter::default(),
            events: Counter::default(),
            reconnects: Counter::default(),
            decode_fps: Gauge::default(),
            detect_fps: Gauge::default(),
            record: RecordMetrics::default(),
            v4l2: V4l2Metrics::default(),
            status: Mutex::new(CameraStatus {
                state: CameraState::Connecting,
                reason: String::new(),
                codec: None,
                width: 0,
                height: 0,
            }),
        }
    }

    /// Moves to `state` for `reason`, logging every change at once. Repeats
    /// of the same error or reconnect reason (a retry loop) are logged once
    /// per [`crate::log_limit::INTERVAL_MS`] with their count; other repeats
    /// are silent.
    pub fn set_state(&self, state: CameraState, reason: &str) {
        let mut s = self.status.lock().unwrap_or_else(PoisonError::into_inner);
        // This camera's key in the process-wide limiter: its metrics live
        // (in an `Arc`) as long as the pipeline.
        let source = self as *const Self as usize;
        if s.state == state && s.reason == reason {
            if matches!(state, CameraState::Connecting | CameraState::Error) {
                if let Some(repeats) = crate::log_limit::check(source, "state") {
                    log::warn!(
                        "camera {}: still {}: {}{repeats}",
                        self.name,
                        state.as_str(),
                        reason
                    );
                }
            }
            return;
        }
        crate::log_limit::logged(source, "state");
        match state {
            CameraState::Error => {
                log::error!("camera {}: {}: {}", self.name, state.as_str(), reason)
            }
            _ if reason.is_empty() => log::info!("camera {}: {}", self.name, state.as_str()),
            _ => log::warn!("camera {}: {}: {}", self.name, state.as_str(), reason),
        }
        s.state = state;
        s.reason.clear();
        s.reason.push_str(reason);
    }

    /// Records the stream's codec and picture size (on the decoder thread,
    /// only when they change).
    pub fn set_format(&self, codec: Codec, width: u32, height: u32) {
        self.set_picture(Some(codec), width, height);
    }

    /// Records the picture size and the codec, if the pictures arrive
    /// compressed (a V4L2 mode's raw and MJPEG pictures have none).
    pub fn set_picture(&self, codec: Option<Codec>, width: u32, height: u32) {
        let mut s = self.status.lock().unwrap_or_else(PoisonError::into_inner);
        s.codec = codec;
        s.width = width;
        s.height = height;
    }

    /// The current state alone (no copy of the reason).
    pub fn state(&self) -> CameraState {
        self.status
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .state
    }

    /// A copy of the current status.
    pub fn status(&self) -> CameraStatus {
        self.status
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_changes_keep_the_reason() {
        let c = CameraMetrics::new("door");
        c.set_state(CameraState::Error, "h265 needs the hardware decoder");
        let s = c.status();
        assert_eq!(s.state, CameraState::Error);
        assert_eq!(s.reason, "h265 needs the hardware decoder");
    }
}
