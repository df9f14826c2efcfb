//! The capture loop of one V4L2 camera: open, stream, and on unplug or
//! stall close everything and reopen with backoff, on the same thread.
//!
//! The loop is written against two small traits, [`Opener`] and
//! [`CaptureDevice`], so the real device ([`super::device`]) and the test
//! double below run the same code. A [`CaptureDevice`] lends each filled
//! buffer to a closure and requeues it the moment the closure returns: the
//! driver gets its buffer back after one copy, never after the detector or
//! the decoder has run, so a slow pipeline cannot starve it. Frames the
//! driver dropped anyway show as gaps in its sequence numbers and are
//! counted ([`crate::metrics::V4l2Metrics::driver_dropped`]).

use super::mode::Mode;
use crate::backoff::Backoff;
use crate::config::PixelFormat;
use crate::metrics::{CameraMetrics, CameraState, V4l2Mode};
use crate::packet::Codec;
use std::fmt;
use std::io;
use std::path::Path;
use std::time::{Duration, Instant};

/// How long one wait for a frame lasts before the loop checks for shutdown.
pub const POLL: Duration = Duration::from_millis(200);

/// A session that streamed this long resets the backoff.
pub const HEALTHY_SESSION: Duration = Duration::from_secs(30);

/// One filled driver buffer, lent until the closure returns.
pub struct Captured<'a> {
    /// The bytes the driver wrote.
    pub data: &'a [u8],
    /// The driver's timestamp in microseconds.
    pub pts_us: i64,
    /// The driver flagged a key frame (compressed formats).
    pub keyframe: bool,
}

/// A device streaming in its negotiated mode.
pub trait CaptureDevice {
    /// The mode the device confirmed.
    fn mode(&self) -> &Mode;

    /// Waits up to `timeout` for a filled buffer, lends it to `f` and
    /// requeues it as soon as `f` returns. Answers the driver's sequence
    /// number, or `None` on timeout. An error means the device is gone or
    /// broken: the caller drops it and reopens.
    fn next_frame(
        &mut self,
        timeout: Duration,
        f: &mut dyn FnMut(Captured<'_>),
    ) -> io::Result<Option<u32>>;
}

/// Opens (and reopens) one configured device.
pub trait Opener {
    /// The device it opens.
    type Device: CaptureDevice;

    /// Opens, negotiates and starts streaming.
    fn open(&mut self) -> Result<Self::Device, OpenError>;

    /// The device, for messages.
    fn describe(&self) -> String;
}

/// Why a device could not be opened. Both kinds are retried (a camera may
/// be replugged, or replaced by one that can do the mode); they differ in
/// the camera state they show.
#[derive(Debug)]
pub enum OpenError {
    /// The device is absent or failed a call: state `connecting`.
    Io(String),
    /// The device cannot give what the configuration asks: state `error`.
    Unusable(String),
}

impl OpenError {
    /// An OS error of `op` on `path`.
    pub fn io(path: &Path, op: &str, e: io::Error) -> Self {
        OpenError::Io(format!("{}: {op}: {e}", path.display()))
    }
}

impl fmt::Display for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OpenError::Io(m) | OpenError::Unusable(m) => f.write_str(m),
        }
    }
}

/// Where captured frames go (the pipeline's side of the camera thread).
pub trait FrameHandler {
    /// A session starts in `mode`: what came before is unrelated.
    fn start(&mut self, mode: &Mode);
    /// Copies or converts one frame out of the driver's buffer. Runs while
    /// the buffer is held: only the copy belongs here.
    fn frame(&mut self, mode: &Mode, frame: Captured<'_>);
    /// Runs after the buffer went back to the driver (decoding, queueing).
    fn after(&mut self);
}

/// Runs one camera until `stop()` says so; the camera is `stopped` after.
pub fn run<O: Opener>(
    opener: &mut O,
    handler: &mut dyn FrameHandler,
    metrics: &CameraMetrics,
    stop: &dyn Fn() -> bool,
    backoff: &mut Backoff,
    stall: Duration,
) {
    let mut opened_before = false;
    while !stop() {
        let mut dev = match opener.open() {
            Ok(d) => d,
            Err(e) => {
                let state = match e {
                    OpenError::Io(_) => CameraState::Connecting,
                    OpenError::Unusable(_) => CameraState::Error,
                };
                metrics.set_state(state, &e.to_string());
                wait(backoff.next_delay(), stop);
                continue;
            }
        };
        if opened_before {
            metrics.reconnects.inc();
        }
        opened_before = true;
        let mode = dev.mode().clone();
        log::info!(
            "camera {}: {} streaming {mode}",
            metrics.name,
            opener.describe()
        );
        metrics.v4l2.set_mode(shown(&mode));
        metrics.set_picture(
            (mode.format == PixelFormat::H264).then_some(Codec::H264),
            mode.width,
            mode.height,
        );
        handler.start(&mode);
        let started = Instant::now();
        let mut last_frame = Instant::now();
        let mut expected: Option<u32> = None;
        let ended = loop {
            if stop() {
                break None;
            }
            match dev.next_frame(POLL, &mut |frame| {
                metrics.packets_received.inc();
                metrics.bytes_received.add(frame.data.len() as u64);
                handler.frame(&mode, frame)
            }) {
                Ok(Some(seq)) => {
                    if let Some(e) = expected {
                        // Sequence numbers grow by one per frame the driver
                        // captured; a jump is frames it dropped for lack
                        // of a free buffer.
                        let gap = seq.wrapping_sub(e);
                        if gap > 0 && gap < u32::MAX / 2 {
                            metrics.v4l2.driver_dropped.add(gap as u64);
                        }
                    } else {
                        metrics.set_state(CameraState::Streaming, "");
                    }
                    expected = Some(seq.wrapping_add(1));
                    last_frame = Instant::now();
                    handler.after();
                }
                Ok(None) => {
                    if last_frame.elapsed() >= stall {
                        break Some(format!(
                            "{}: no frame for {} s",
                            opener.describe(),
                            stall.as_secs_f64()
                        ));
                    }
                }
                Err(e) => break Some(format!("{}: {e}", opener.describe())),
            }
        };
        // Closing here releases the buffers and the descriptor before any
        // wait: an unplugged device's module can be unloaded meanwhile.
        drop(dev);
        let Some(why) = ended else { break };
        metrics.set_state(CameraState::Connecting, &why);
        backoff.session_ended(started.elapsed());
        wait(backoff.next_delay(), stop);
    }
    metrics.set_state(CameraState::Stopped, "");
}

/// What the status page and `/metrics` show of `mode` (metrics knows
/// nothing of sources, so the capture code converts).
fn shown(mode: &Mode) -> V4l2Mode {
    V4l2Mode {
        format: mode.format.as_str(),
        width: mode.width,
        height: mode.height,
        stride: mode.stride,
        frame_bytes: mode.frame_bytes,
        fps: mode.fps,
        buffers: mode.buffers,
    }
}

/// Sleeps `d` in steps, returning early when `stop()` says so.
fn wait(d: Duration, stop: &dyn Fn() -> bool) {
    let until = Instant::now() + d;
    while !stop() {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        std::thread::sleep(left.min(POLL));
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::backoff::Jitter;
    use crate::config::PixelFormat;
    use std::cell::RefCell;
    use std::collections::VecDeque;
    use std::rc::Rc;

    /// One step of a scripted session.
    #[derive(Clone, Debug)]
    pub enum Step {
        /// A frame with this sequence number and bytes.
        Frame(u32, Vec<u8>),
        /// No frame within the timeout.
        Idle,
        /// The device fails with this errno (ENODEV: unplugged).
        Fail(i32),
    }

    /// What the double saw, to check pairing and order.
    #[derive(Default, Debug)]
    pub struct Log {
        pub opens: u32,
        pub closes: u32,
        /// Buffers lent and not yet requeued (never above 1).
        pub held: u32,
        pub max_held: u32,
        pub open_failures: u32,
    }

    /// Scripted sessions; an `Err` entry is a failed open.
    pub struct FakeOpener {
        pub sessions: VecDeque<Result<Vec<Step>, OpenError>>,
        pub log: Rc<RefCell<Log>>,
        pub mode: Mode,
    }

    pub struct FakeDevice {
        steps: VecDeque<Step>,
        log: Rc<RefCell<Log>>,
        mode: Mode,
    }

    impl Drop for FakeDevice {
        fn drop(&mut self) {
            self.log.borrow_mut().closes += 1;
        }
    }

    impl CaptureDevice for FakeDevice {
        fn mode(&self) -> &Mode {
            &self.mode
        }

        fn next_frame(
            &mut self,
            _timeout: Duration,
            f: &mut dyn FnMut(Captured<'_>),
        ) -> io::Result<Option<u32>> {
            match self.steps.pop_front() {
                Some(Step::Frame(seq, data)) => {
                    {
                        let mut l = self.log.borrow_mut();
                        l.held += 1;
                        l.max_held = l.max_held.max(l.held);
                    }
                    f(Captured {
                        data: &data,
                        pts_us: seq as i64 * 40_000,
                        keyframe: true,
                    });
                    self.log.borrow_mut().held -= 1;
                    Ok(Some(seq))
                }
                Some(Step::Idle) => Ok(None),
                Some(Step::Fail(errno)) => Err(io::Error::from_raw_os_error(errno)),
                // The script ran out: unplugged.
                None => Err(io::Error::from_raw_os_error(libc::ENODEV)),
            }
        }
    }

    impl Opener for FakeOpener {
        type Device = FakeDevice;

        fn open(&mut self) -> Result<FakeDevice, OpenError> {
            match self.sessions.pop_front() {
                Some(Ok(steps)) => {
                    self.log.borrow_mut().opens += 1;
                    Ok(FakeDevice {
                        steps: steps.into(),
                        log: self.log.clone(),
                        mode: self.mode.clone(),
                    })
                }
                Some(Err(e)) => {
                    self.log.borrow_mut().open_failures += 1;
                    Err(e)
                }
                None => {
                    self.log.borrow_mut().open_failures += 1;
                    Err(OpenError::Io(
                        "/dev/fake: open: No such file or directory".into(),
                    ))
                }
            }
        }

        fn describe(&self) -> String {
            "/dev/fake".into()
        }
    }

    pub fn mode(format: PixelFormat) -> Mode {
        Mode {
            format,
            width: 4,
            height: 2,
            stride: 8,
            frame_bytes: 16,
            fps: 25.0,
            buffers: 4,
        }
    }

    #[derive(Default)]
    struct Counting {
        starts: u32,
        frames: Vec<u32>,
        afters: u32,
    }

    impl FrameHandler for Counting {
        fn start(&mut self, _mode: &Mode) {
            self.starts += 1;
        }
        fn frame(&mut self, _mode: &Mode, frame: Captured<'_>) {
            self.frames.push((frame.pts_us / 40_000) as u32);
        }
        fn after(&mut self) {
            self.afters += 1;
        }
    }

    fn backoff() -> Backoff {
        Backoff::new(
            Duration::from_millis(1),
            Duration::from_millis(2),
            Jitter::Full,
            HEALTHY_SESSION,
            7,
        )
    }

    /// Runs the script until it is used up and `opens_left` more opens failed.
    fn run_script(
        sessions: Vec<Result<Vec<Step>, OpenError>>,
        stall: Duration,
    ) -> (Counting, Rc<RefCell<Log>>, CameraMetrics) {
        let log = Rc::new(RefCell::new(Log::default()));
        let planned = sessions.len() as u32;
        let mut opener = FakeOpener {
            sessions: sessions.into(),
            log: log.clone(),
            mode: mode(PixelFormat::Yuyv),
        };
        let metrics = CameraMetrics::new("cam");
        let mut handler = Counting::default();
        let l = log.clone();
        // Stop once every scripted open was tried and one more failed.
        let stop = move || {
            let l = l.borrow();
            l.opens + l.open_failures > planned
        };
        run(
            &mut opener,
            &mut handler,
            &metrics,
            &stop,
            &mut backoff(),
            stall,
        );
        (handler, log, metrics)
    }

    #[test]
    fn frames_flow_and_driver_drops_are_counted_from_sequence_gaps() {
        let steps = vec![
            Step::Frame(10, vec![1; 16]),
            Step::Frame(11, vec![1; 16]),
            Step::Idle,
            Step::Frame(14, vec![1; 16]),
            Step::Frame(15, vec![1; 16]),
        ];
        let (h, log, m) = run_script(vec![Ok(steps)], Duration::from_secs(60));
        assert_eq!(h.frames, [10, 11, 14, 15]);
        assert_eq!(h.afters, 4);
        assert_eq!(h.starts, 1);
        assert_eq!(m.v4l2.driver_dropped.get(), 2);
        assert_eq!(m.packets_received.get(), 4);
        assert_eq!(m.bytes_received.get(), 64);
        let l = log.borrow();
        assert_eq!((l.opens, l.closes, l.max_held, l.held), (1, 1, 1, 0));
        assert_eq!(m.status().state, CameraState::Stopped);
        assert_eq!(m.v4l2.mode().map(|m| m.width), Some(4));
    }

    #[test]
    fn unplug_and_replug_reopen_on_the_same_thread_and_release_each_device() {
        let mut sessions = Vec::new();
        for cycle in 0..50u32 {
            sessions.push(Ok(vec![
                Step::Frame(0, vec![0; 16]),
                Step::Frame(1, vec![0; 16]),
                Step::Fail(libc::ENODEV),
            ]));
            // The node is gone for a while before it comes back.
            for _ in 0..(cycle % 3) {
                sessions.push(Err(OpenError::Io(
                    "/dev/fake: open: No such file or directory".into(),
                )));
            }
        }
        let (h, log, m) = run_script(sessions, Duration::from_secs(60));
        let l = log.borrow();
        assert_eq!(l.opens, 50);
        assert_eq!(l.closes, 50, "every opened device was dropped");
        assert_eq!(h.starts, 50);
        assert_eq!(h.frames.len(), 100);
        assert_eq!(m.reconnects.get(), 49);
        // A new session's sequence restarting at 0 is not a drop.
        assert_eq!(m.v4l2.driver_dropped.get(), 0);
        assert_eq!(l.max_held, 1);
    }

    #[test]
    fn a_stalled_device_is_closed_and_reopened() {
        let idle = vec![
            Step::Frame(0, vec![0; 16]),
            Step::Idle,
            Step::Idle,
            Step::Idle,
        ];
        let (h, log, m) = run_script(vec![Ok(idle.clone()), Ok(idle)], Duration::ZERO);
        assert_eq!(h.starts, 2);
        assert_eq!(log.borrow().closes, 2);
        assert_eq!(m.reconnects.get(), 1);
    }

    #[test]
    fn an_unusable_device_shows_state_error_and_is_retried() {
        let metrics = CameraMetrics::new("cam");
        let log = Rc::new(RefCell::new(Log::default()));
        let mut opener = FakeOpener {
            sessions: vec![Err(OpenError::Unusable(
                "/dev/fake: the device does not offer nv12".into(),
            ))]
            .into(),
            log: log.clone(),
            mode: mode(PixelFormat::Nv12),
        };
        let l = log.clone();
        let seen = RefCell::new(None);
        let stop = || {
            if l.borrow().open_failures >= 1 && seen.borrow().is_none() {
                *seen.borrow_mut() = Some(metrics.status());
            }
            l.borrow().open_failures >= 2
        };
        run(
            &mut opener,
            &mut Counting::default(),
            &metrics,
            &stop,
            &mut backoff(),
            Duration::from_secs(1),
        );
        let s = seen.borrow().clone().unwrap();
        assert_eq!(s.state, CameraState::Error);
        assert!(s.reason.contains("does not offer nv12"), "{}", s.reason);
        assert_eq!(log.borrow().open_failures, 2);
    }
}
