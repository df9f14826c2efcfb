//! The V4L2 stage: the pipeline's side of a USB or MIPI camera.
//!
//! A V4L2 camera has one capture thread (`vigil-v4l-N`, in place of a
//! decoder thread) that opens the device, streams, and reopens after an
//! unplug or a stall with backoff (`source::v4l2::capture`). Its
//! [`V4l2Handler`] gets each picture while the driver's buffer is held:
//! NV12, YUYV and MJPEG are converted straight into a pool frame, H.264 is
//! copied into a packet buffer; the frame is queued, or the packet decoded
//! by the camera's [`DecodeStage`], only after the buffer went back to the
//! driver, so the driver never waits on the decoder or the queue.

use super::decode::{DecodeStage, FrameStore};
use crate::config::CameraConfig;
use crate::frame::{Frame, FrameBuf};
use crate::metrics::{CameraState, DropReason};
use crate::packet::{Codec, PacketBuf};
use crate::pool::Pool;
use crate::shutdown::Shutdown;
use crate::source;
use std::thread::JoinHandle;

/// Starts V4L2 camera `i`'s capture thread, which opens `path`, streams and
/// reopens after unplugs until shutdown, then hands its decode stage back
/// through the join.
pub(super) fn spawn(
    i: usize,
    cam: &CameraConfig,
    path: std::path::PathBuf,
    request: crate::config::V4l2Request,
    stage: DecodeStage,
    packets: Pool<PacketBuf>,
    shutdown: Shutdown,
) -> std::io::Result<JoinHandle<DecodeStage>> {
    use crate::backoff::{seed_from, Backoff, Jitter};
    use source::v4l2::{buffer_size, capture, device::V4l2Opener};
    let max = (cam.max_width, cam.max_height);
    let mut opener = V4l2Opener {
        path,
        request,
        max,
        max_buffer: buffer_size(&request, max),
    };
    stage
        .metrics
        .v4l2
        .set_device(&opener.path.display().to_string());
    let mut backoff = Backoff::new(
        cam.reconnect_min,
        cam.reconnect_max,
        Jitter::Decorrelated,
        capture::HEALTHY_SESSION,
        seed_from(&cam.name),
    );
    let stall = cam.stall_timeout;
    let metrics = stage.metrics.clone();
    let mut handler = V4l2Handler {
        stage,
        packets,
        frame: None,
        packet: None,
        discontinuity: true,
        awaiting_key: true,
    };
    std::thread::Builder::new()
        .name(format!("vigil-v4l-{i}"))
        .spawn(move || {
            let stop = || shutdown.is_requested();
            capture::run(
                &mut opener,
                &mut handler,
                &metrics,
                &stop,
                &mut backoff,
                stall,
            );
            handler.stage
        })
}

/// The pipeline's side of a V4L2 camera's capture thread: pictures are
/// converted from the driver's buffer into a pool frame (or copied into a
/// packet buffer for the decoder, H.264) while the buffer is held, and
/// queued or decoded after it went back to the driver.
struct V4l2Handler {
    stage: DecodeStage,
    packets: Pool<PacketBuf>,
    frame: Option<crate::pool::Lease<FrameBuf>>,
    packet: Option<crate::pool::Lease<PacketBuf>>,
    /// The next unit starts a new stream (after each open).
    discontinuity: bool,
    /// Units are skipped until a key frame after each open.
    awaiting_key: bool,
}

impl source::v4l2::capture::FrameHandler for V4l2Handler {
    fn start(&mut self, _mode: &source::v4l2::Mode) {
        self.stage.sampler.reset();
        self.stage.unusable = false;
        self.discontinuity = true;
        self.awaiting_key = true;
    }

    fn frame(&mut self, mode: &source::v4l2::Mode, captured: source::v4l2::capture::Captured<'_>) {
        use crate::config::PixelFormat;
        use source::v4l2::convert;
        let metrics = &self.stage.metrics;
        if mode.format == PixelFormat::H264 {
            let key = captured.keyframe || crate::codec::has_key_slice(Codec::H264, captured.data);
            if self.awaiting_key && !key {
                metrics.packets_dropped.inc(DropReason::AwaitingKeyframe);
                return;
            }
            let Some(mut packet) = self.packets.try_take() else {
                metrics.packets_dropped.inc(DropReason::PoolEmpty);
                return;
            };
            packet.begin(Codec::H264, captured.pts_us, key);
            if packet.extend_from_slice(captured.data).is_err() {
                metrics.packets_dropped.inc(DropReason::Oversize);
                return;
            }
            packet.discontinuity = std::mem::take(&mut self.discontinuity);
            self.awaiting_key = false;
            self.packet = Some(packet);
            return;
        }
        metrics.frames_decoded.inc();
        if self.stage.unusable || !self.stage.sampler.take(captured.pts_us) {
            metrics.frames_dropped.inc(DropReason::Sampling);
            return;
        }
        let FrameStore::Buffers(pool) = &self.stage.frames else {
            metrics.frames_dropped.inc(DropReason::DecodeError);
            return;
        };
        let Some(mut frame) = pool.try_take() else {
            metrics.frames_dropped.inc(DropReason::PoolEmpty);
            return;
        };
        let stride = mode.stride as usize;
        let converted = match mode.format {
            PixelFormat::Nv12 => {
                convert::nv12(captured.data, stride, mode.width, mode.height, &mut frame)
            }
            PixelFormat::Yuyv => {
                convert::yuyv(captured.data, stride, mode.width, mode.height, &mut frame)
            }
            PixelFormat::Mjpeg => convert::mjpeg(captured.data, &mut frame),
            PixelFormat::H264 => return,
        };
        match converted {
            Ok(()) => {
                frame.pts_us = captured.pts_us;
                frame.camera = self.stage.camera;
                self.frame = Some(frame);
            }
            Err(e) => {
                // A picture too large for the pool frames will not shrink:
                // the camera shows it. A bad single frame is only counted.
                if matches!(e, convert::ConvertError::TooLarge(_)) {
                    self.stage.unusable = true;
                    metrics.set_state(CameraState::Error, &e.to_string());
                }
                metrics.frames_dropped.inc(DropReason::DecodeError);
                if let Some(repeats) = crate::log_limit::check(self.stage.camera, "frame") {
                    log::warn!("camera {}: frame dropped: {e}{repeats}", metrics.name);
                }
            }
        }
    }

    fn after(&mut self) {
        if let Some(frame) = self.frame.take() {
            self.stage.push(Frame::Cpu(frame));
        }
        if let Some(packet) = self.packet.take() {
            self.stage.decode(&packet);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::decode::StageShared;
    use super::super::FrameQueue;
    use super::*;
    use crate::backoff::{Backoff, Jitter};
    use crate::config::Config;
    use crate::config::PixelFormat;
    use crate::decode;
    use crate::metrics::CameraMetrics;
    use crate::queue::WhenFull;
    use crate::source::v4l2::capture;
    use crate::source::v4l2::capture::tests::{mode, FakeOpener, Log, Step};
    use std::cell::RefCell;
    use std::rc::Rc;
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    /// Runs one scripted V4L2 session of `frames` through a camera's real
    /// handler and decoder; answers the camera's metrics and the frames
    /// that reached the queue.
    fn capture_session(
        format: PixelFormat,
        frames: Vec<Vec<u8>>,
    ) -> (Arc<CameraMetrics>, Vec<Frame>) {
        let text = format!(
            "[[camera]]\nname = \"usb\"\ndevice = \"/dev/video0\"\nformat = \"{format}\"\n\
             max_resolution = \"640x480\"\ndetect_fps = 60\nframe_pool = 128\n"
        );
        let config = Config::parse(&text, "t").unwrap();
        let cam = &config.cameras[0];
        let frame_queue = Arc::new(FrameQueue::new(128, WhenFull::DropOldest));
        let metrics = Arc::new(CameraMetrics::new("usb"));
        let shared = StageShared {
            frame_queue: frame_queue.clone(),
            factory: Arc::new(|codec, _| decode::openh264::new_software_decoder(codec)),
            started: Instant::now(),
        };
        let stage = DecodeStage::new(
            0,
            cam,
            FrameStore::Buffers(Pool::with("frames", 128, || FrameBuf::new(640, 480))),
            metrics.clone(),
            None,
            &shared,
        );
        let mut handler = V4l2Handler {
            stage,
            packets: Pool::with("packets", 2, || PacketBuf::with_capacity(1 << 20)),
            frame: None,
            packet: None,
            discontinuity: true,
            awaiting_key: true,
        };
        let log = Rc::new(RefCell::new(Log::default()));
        let steps = frames
            .into_iter()
            .enumerate()
            .map(|(i, f)| Step::Frame(i as u32, f))
            .collect();
        let mut opener = FakeOpener {
            sessions: vec![Ok(steps)].into(),
            log: log.clone(),
            mode: mode(format),
        };
        let stop = || log.borrow().open_failures > 0;
        let mut backoff = Backoff::new(
            Duration::from_millis(1),
            Duration::from_millis(1),
            Jitter::Full,
            Duration::from_secs(30),
            1,
        );
        capture::run(
            &mut opener,
            &mut handler,
            &metrics,
            &stop,
            &mut backoff,
            Duration::from_secs(60),
        );
        let mut out = Vec::new();
        while let Some(f) = frame_queue.try_pop() {
            out.push(f);
        }
        (metrics, out)
    }

    #[test]
    fn v4l2_h264_units_go_through_the_cameras_decoder() {
        // One access unit per buffer, as an H.264 camera delivers them (no
        // B-frames, like UVC cameras, so every unit decodes at once); the
        // driver's key-frame flag is not trusted (the double sets it on
        // every buffer), the IDR slice is looked for.
        let path = crate::source::test_media::ffmpeg(
            "v4l2-aud-bf0.h264",
            "-f lavfi -i testsrc2=size=320x240:rate=25 -frames:v 50 -c:v libx264 -bf 0 -g 25 \
             -bsf:v h264_metadata=aud=insert -f h264 {out}",
        );
        let stream = std::fs::read(path).unwrap();
        let aud = [0u8, 0, 0, 1, 9];
        let starts: Vec<usize> = (0..stream.len().saturating_sub(4))
            .filter(|&i| stream[i..].starts_with(&aud))
            .collect();
        let units: Vec<Vec<u8>> = starts
            .iter()
            .zip(starts.iter().skip(1).chain([&stream.len()]))
            .map(|(&a, &b)| stream[a..b].to_vec())
            .collect();
        assert_eq!(units.len(), 50);
        let (m, frames) = capture_session(PixelFormat::H264, units);
        // Every unit reached the decoder; it may keep the newest picture
        // until a next unit arrives, which the session's end never sends.
        assert_eq!(m.packets_dropped.lost(), 0);
        let decoded = m.frames_decoded.get();
        assert!((49..=50).contains(&decoded), "{decoded} of 50 decoded");
        assert_eq!(frames.len() as u64, decoded);
        assert!(frames.iter().all(|f| {
            let (w, h) = f.image().size();
            (w, h) == (320, 240)
        }));
        let s = m.status();
        assert_eq!((s.codec, s.width, s.height), (Some(Codec::H264), 320, 240));
    }

    /// The access units of an AUD-delimited H.264 stream (one per buffer,
    /// as an H.264 camera delivers them).
    fn aud_units(name: &str, size: &str, frames: u32) -> Vec<Vec<u8>> {
        let path = crate::source::test_media::ffmpeg(
            name,
            &format!(
                "-f lavfi -i testsrc2=size={size}:rate=25 -frames:v {frames} -c:v libx264 -bf 0 \
                 -g 25 -bsf:v h264_metadata=aud=insert -f h264 {{out}}"
            ),
        );
        let stream = std::fs::read(path).unwrap();
        let aud = [0u8, 0, 0, 1, 9];
        let starts: Vec<usize> = (0..stream.len().saturating_sub(4))
            .filter(|&i| stream[i..].starts_with(&aud))
            .collect();
        starts
            .iter()
            .zip(starts.iter().skip(1).chain([&stream.len()]))
            .map(|(&a, &b)| stream[a..b].to_vec())
            .collect()
    }

    #[test]
    fn v4l2_h264_over_max_resolution_never_reaches_the_decoder() {
        // Issue 16: the camera (limit 640x480) switches to 800x600, then
        // back to 320x240 within the same session.
        let mut units = aud_units("v4l2-800x600.h264", "800x600", 25);
        units.extend(aud_units("v4l2-aud-320.h264", "320x240", 25));
        let (m, frames) = capture_session(PixelFormat::H264, units);
        assert_eq!(m.packets_dropped.get(DropReason::Oversize), 25);
        assert!(frames.iter().all(|f| f.image().size() == (320, 240)));
        let decoded = m.frames_decoded.get();
        assert!((24..=25).contains(&decoded), "{decoded} of 25 decoded");
    }

    #[test]
    fn v4l2_mjpeg_frames_are_decoded_into_pool_frames() {
        let (w, h) = (96u16, 64u16);
        let rgb = vec![200u8; w as usize * h as usize * 3];
        let mut jpeg = Vec::new();
        jpeg_encoder::Encoder::new(&mut jpeg, 90)
            .encode(&rgb, w, h, jpeg_encoder::ColorType::Rgb)
            .unwrap();
        let mut frames = vec![jpeg; 5];
        // A torn frame is counted and skipped, not fatal.
        frames.insert(2, b"\xff\xd8 torn".to_vec());
        let (m, out) = capture_session(PixelFormat::Mjpeg, frames);
        assert_eq!(out.len(), 5);
        assert!(out.iter().all(|f| f.image().size() == (96, 64)));
        assert_eq!(m.frames_dropped.get(DropReason::DecodeError), 1);
        assert_eq!(m.status().state, CameraState::Stopped);
    }
}
