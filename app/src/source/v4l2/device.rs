//! A real V4L2 capture device: opening and negotiating with the `v4l`
//! crate, streaming through buffers this module maps and owns.
//!
//! The `v4l` crate's own `mmap::Stream` is not used for streaming: its Drop
//! panics when `VIDIOC_STREAMOFF` or unmapping fails with anything but
//! ENODEV (a device going away mid-teardown can give EIO), and it requeues a
//! buffer only at the next call, holding it for a whole frame interval.
//! [`MmapRing`] owns the driver buffers instead: it requeues each one as
//! soon as the caller's copy returns, and its Drop releases everything and
//! only logs what fails, whatever state the device is in. The file
//! descriptor belongs to the `v4l::Device`, dropped after the ring.

use super::capture::{CaptureDevice, Captured, OpenError, Opener};
use super::mode::{choose, fourcc_str, Choice, ChooseError, Mode, Offer, SizeRange};
use crate::config::{PixelFormat, V4l2Request};
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;
use v4l::buffer::Type;
use v4l::framesize::FrameSizeEnum;
use v4l::memory::Memory;
use v4l::v4l_sys::{v4l2_buffer, v4l2_requestbuffers};
use v4l::video::capture::Parameters;
use v4l::video::Capture;
use v4l::{Device, Format, FourCC};

/// The most driver buffers a camera may ask for.
pub const MAX_BUFFERS: usize = 32;

/// `V4L2_BUF_FLAG_KEYFRAME`.
const FLAG_KEYFRAME: u32 = 0x0000_0008;
/// `V4L2_BUF_FLAG_ERROR`: the driver filled the buffer but says the data is bad.
const FLAG_ERROR: u32 = 0x0000_0040;

/// What a device offers for capture, enumerated (for [`choose`] and
/// `check-config`).
pub fn offers(dev: &Device) -> io::Result<Vec<Offer>> {
    let mut out = Vec::new();
    for desc in dev.enum_formats()? {
        // A driver that cannot enumerate sizes takes the request as is.
        let sizes = dev
            .enum_framesizes(desc.fourcc)
            .unwrap_or_default()
            .into_iter()
            .map(|s| match s.size {
                FrameSizeEnum::Discrete(d) => SizeRange::Discrete {
                    width: d.width,
                    height: d.height,
                },
                FrameSizeEnum::Stepwise(s) => SizeRange::Stepwise {
                    min_width: s.min_width,
                    max_width: s.max_width,
                    step_width: s.step_width,
                    min_height: s.min_height,
                    max_height: s.max_height,
                    step_height: s.step_height,
                },
            })
            .collect();
        out.push(Offer {
            fourcc: desc.fourcc.repr,
            sizes,
        });
    }
    Ok(out)
}

/// Opens `path` and checks it captures video by streaming.
fn open_capture(path: &Path) -> Result<Device, OpenError> {
    let dev = Device::with_path(path).map_err(|e| OpenError::io(path, "open", e))?;
    let caps = dev
        .query_caps()
        .map_err(|e| OpenError::io(path, "VIDIOC_QUERYCAP", e))?;
    use v4l::capability::Flags;
    if !caps.capabilities.contains(Flags::VIDEO_CAPTURE)
        || !caps.capabilities.contains(Flags::STREAMING)
    {
        return Err(OpenError::Unusable(format!(
            "{}: {} ({}) is not a streaming video capture device",
            path.display(),
            caps.card,
            caps.driver
        )));
    }
    Ok(dev)
}

/// What `check-config` shows for a V4L2 camera: the mode vigil would
/// choose from what the device offers now (shown as `yuyv 1280x720`),
/// without changing its settings (a running vigil may be streaming from it).
pub fn probe(path: &Path, request: &V4l2Request, max: (u32, u32)) -> Result<Choice, ProbeError> {
    let dev = open_capture(path).map_err(ProbeError::Open)?;
    let offers = offers(&dev).map_err(|error| ProbeError::Enumerate {
        path: path.to_owned(),
        error,
    })?;
    choose(&offers, request, max).map_err(ProbeError::Choose)
}

/// Why [`probe`] could not tell the mode a device would give.
#[derive(Debug)]
pub enum ProbeError {
    /// The device could not be opened or is no streaming capture device.
    Open(OpenError),
    /// The device would not list its formats (`VIDIOC_ENUM_FMT`).
    Enumerate {
        /// The device node.
        path: PathBuf,
        /// The operating system's error.
        error: io::Error,
    },
    /// What the device offers does not fit the configuration.
    Choose(ChooseError),
}

impl fmt::Display for ProbeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            // Transparent: the wrapped error is the whole message.
            ProbeError::Open(e) => e.fmt(f),
            ProbeError::Choose(e) => e.fmt(f),
            ProbeError::Enumerate { path, error } => {
                write!(f, "{}: VIDIOC_ENUM_FMT: {error}", path.display())
            }
        }
    }
}

impl std::error::Error for ProbeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ProbeError::Enumerate { error, .. } => Some(error),
            ProbeError::Open(_) | ProbeError::Choose(_) => None,
        }
    }
}

/// Opens one configured device; reused for every reopen.
pub struct V4l2Opener {
    /// The device node.
    pub path: PathBuf,
    /// What the configuration asks for.
    pub request: V4l2Request,
    /// The camera's pool frame size.
    pub max: (u32, u32),
    /// The largest driver buffer the budget allows
    /// ([`super::buffer_size`]).
    pub max_buffer: usize,
}

impl Opener for V4l2Opener {
    type Device = V4l2Device;

    fn open(&mut self) -> Result<V4l2Device, OpenError> {
        let path = &self.path;
        let dev = open_capture(path)?;
        let offers = offers(&dev).map_err(|e| OpenError::io(path, "VIDIOC_ENUM_FMT", e))?;
        let choice = choose(&offers, &self.request, self.max)
            .map_err(|e| OpenError::Unusable(format!("{}: {e}", path.display())))?;
        let want = Format::new(
            choice.width,
            choice.height,
            FourCC::new(&choice.format.fourcc()),
        );
        let got = dev
            .set_format(&want)
            .map_err(|e| OpenError::io(path, "VIDIOC_S_FMT", e))?;
        if got.fourcc.repr != choice.format.fourcc()
            && PixelFormat::from_fourcc(got.fourcc.repr) != Some(choice.format)
        {
            return Err(OpenError::Unusable(format!(
                "{}: asked for {}, the driver set {}",
                path.display(),
                fourcc_str(choice.format.fourcc()),
                fourcc_str(got.fourcc.repr)
            )));
        }
        if got.width > self.max.0 || got.height > self.max.1 {
            return Err(OpenError::Unusable(format!(
                "{}: the driver set {}x{}, larger than max_resolution {}x{}",
                path.display(),
                got.width,
                got.height,
                self.max.0,
                self.max.1
            )));
        }
        let params = match self.request.fps {
            // Not every driver sets a rate (some have none): what it
            // reports afterwards is what the camera runs at.
            Some(fps) => dev
                .set_params(&Parameters::with_fps(fps))
                .or_else(|_| dev.params()),
            None => dev.params(),
        };
        let fps = params
            .ok()
            .filter(|p| p.interval.numerator > 0)
            .map_or(0.0, |p| {
                p.interval.denominator as f64 / p.interval.numerator as f64
            });
        let ring = MmapRing::new(dev.handle().fd(), self.request.buffers)
            .map_err(|e| OpenError::io(path, "buffers", e))?;
        if let Some(big) = ring.maps.iter().find(|m| m.len > self.max_buffer) {
            return Err(OpenError::Unusable(format!(
                "{}: the driver's buffers are {} bytes, more than the {} budgeted for {}x{} (raise max_resolution)",
                path.display(),
                big.len,
                self.max_buffer,
                self.max.0,
                self.max.1
            )));
        }
        let mode = Mode {
            format: choice.format,
            width: got.width,
            height: got.height,
            stride: got.stride,
            frame_bytes: got.size,
            fps,
            buffers: ring.len() as u32,
        };
        let mut device = V4l2Device {
            ring,
            mode,
            _dev: dev,
        };
        device
            .ring
            .start()
            .map_err(|e| OpenError::io(path, "VIDIOC_STREAMON", e))?;
        Ok(device)
    }

    fn describe(&self) -> String {
        self.path.display().to_string()
    }
}

/// A device streaming in its negotiated mode.
pub struct V4l2Device {
    // Field order is drop order: the buffers go before the descriptor.
    ring: MmapRing,
    mode: Mode,
    _dev: Device,
}

impl CaptureDevice for V4l2Device {
    fn mode(&self) -> &Mode {
        &self.mode
    }

    fn next_frame(
        &mut self,
        timeout: Duration,
        f: &mut dyn FnMut(Captured<'_>),
    ) -> io::Result<Option<u32>> {
        let Some(buf) = self.ring.dequeue(timeout)? else {
            return Ok(None);
        };
        let index = buf.index as usize;
        let used = (buf.bytesused as usize).min(self.ring.maps[index].len);
        if buf.flags & FLAG_ERROR == 0 {
            // SAFETY: the mapping is live (owned by the ring) and the driver
            // does not write a dequeued buffer until it is queued again below.
            let data = unsafe { std::slice::from_raw_parts(self.ring.maps[index].ptr, used) };
            f(Captured {
                data,
                pts_us: buf.pts_us,
                keyframe: buf.flags & FLAG_KEYFRAME != 0,
            });
        }
        self.ring.queue(buf.index)?;
        Ok(Some(buf.sequence))
    }
}

struct Mapping {
    ptr: *mut u8,
    len: usize,
}

/// What a dequeued buffer says.
struct Dequeued {
    index: u32,
    bytesused: u32,
    flags: u32,
    sequence: u32,
    /// The driver's capture time (CLOCK_MONOTONIC for most drivers).
    pts_us: i64,
}

/// The driver's mmap'ed buffers, requested once per open.
struct MmapRing {
    fd: libc::c_int,
    maps: heapless::Vec<Mapping, MAX_BUFFERS>,
    /// Whether `VIDIOC_REQBUFS` granted buffers (released with a count of 0).
    requested: bool,
    streaming: bool,
}

// SAFETY: the mappings are plain memory owned by this ring; the ring moves
// between threads only as a whole.
unsafe impl Send for MmapRing {}

fn buffer(index: u32) -> v4l2_buffer {
    // SAFETY: v4l2_buffer is a plain C struct for which all zeroes is valid.
    let mut b: v4l2_buffer = unsafe { std::mem::zeroed() };
    b.index = index;
    b.type_ = Type::VideoCapture as u32;
    b.memory = Memory::Mmap as u32;
    b
}

fn ioctl<T>(fd: libc::c_int, request: v4l::v4l2::vidioc::_IOC_TYPE, arg: &mut T) -> io::Result<()> {
    // SAFETY: each caller passes the struct its request is defined for.
    unsafe { v4l::v4l2::ioctl(fd, request, arg as *mut T as *mut std::os::raw::c_void) }
}

impl MmapRing {
    fn new(fd: libc::c_int, count: u32) -> io::Result<Self> {
        let mut ring = MmapRing {
            fd,
            maps: heapless::Vec::new(),
            requested: false,
            streaming: false,
        };
        // SAFETY: zeroes are a valid v4l2_requestbuffers.
        let mut req: v4l2_requestbuffers = unsafe { std::mem::zeroed() };
        req.count = count.clamp(1, MAX_BUFFERS as u32);
        req.type_ = Type::VideoCapture as u32;
        req.memory = Memory::Mmap as u32;
        ioctl(fd, v4l::v4l2::vidioc::VIDIOC_REQBUFS, &mut req)?;
        ring.requested = true;
        if req.count == 0 || req.count as usize > MAX_BUFFERS {
            return Err(io::Error::other(format!(
                "the driver granted {} buffers",
                req.count
            )));
        }
        for index in 0..req.count {
            let mut b = buffer(index);
            ioctl(fd, v4l::v4l2::vidioc::VIDIOC_QUERYBUF, &mut b)?;
            let len = b.length as usize;
            // SAFETY: maps the buffer the driver just described, shared with it.
            let ptr = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    len,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_SHARED,
                    fd,
                    b.m.offset as libc::off_t,
                )
            };
            if ptr == libc::MAP_FAILED {
                return Err(io::Error::last_os_error());
            }
            // Cannot fail: the count was checked against the capacity.
            let _ = ring.maps.push(Mapping {
                ptr: ptr as *mut u8,
                len,
            });
        }
        Ok(ring)
    }

    fn len(&self) -> usize {
        self.maps.len()
    }

    fn start(&mut self) -> io::Result<()> {
        for index in 0..self.maps.len() as u32 {
            self.queue(index)?;
        }
        let mut typ = Type::VideoCapture as u32;
        ioctl(self.fd, v4l::v4l2::vidioc::VIDIOC_STREAMON, &mut typ)?;
        self.streaming = true;
        Ok(())
    }

    fn queue(&mut self, index: u32) -> io::Result<()> {
        let mut b = buffer(index);
        ioctl(self.fd, v4l::v4l2::vidioc::VIDIOC_QBUF, &mut b)
    }

    /// The next filled buffer, `None` after `timeout` without one. An
    /// unplugged device wakes poll with POLLERR and fails the dequeue
    /// (ENODEV), which is the caller's signal to reopen.
    fn dequeue(&mut self, timeout: Duration) -> io::Result<Option<Dequeued>> {
        let mut pfd = libc::pollfd {
            fd: self.fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let n = unsafe {
            libc::poll(
                &mut pfd,
                1,
                timeout.as_millis().min(i32::MAX as u128) as i32,
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            return if e.kind() == io::ErrorKind::Interrupted {
                Ok(None)
            } else {
                Err(e)
            };
        }
        if n == 0 {
            return Ok(None);
        }
        let mut b = buffer(0);
        match ioctl(self.fd, v4l::v4l2::vidioc::VIDIOC_DQBUF, &mut b) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
            Err(e) => return Err(e),
        }
        if b.index as usize >= self.maps.len() {
            return Err(io::Error::other(format!(
                "the driver dequeued buffer {} of {}",
                b.index,
                self.maps.len()
            )));
        }
        Ok(Some(Dequeued {
            index: b.index,
            bytesused: b.bytesused,
            flags: b.flags,
            sequence: b.sequence,
            // time_t and suseconds_t are i64 here but i32 on 32-bit ARM.
            #[allow(clippy::unnecessary_cast)]
            pts_us: b.timestamp.tv_sec as i64 * 1_000_000 + b.timestamp.tv_usec as i64,
        }))
    }
}

impl Drop for MmapRing {
    fn drop(&mut self) {
        // A vanished device fails these with ENODEV; the mappings still go.
        if self.streaming {
            let mut typ = Type::VideoCapture as u32;
            if let Err(e) = ioctl(self.fd, v4l::v4l2::vidioc::VIDIOC_STREAMOFF, &mut typ) {
                log::debug!("VIDIOC_STREAMOFF: {e}");
            }
        }
        for m in &self.maps {
            // SAFETY: each mapping was made by mmap with this length.
            if unsafe { libc::munmap(m.ptr as *mut libc::c_void, m.len) } != 0 {
                log::warn!("munmap of a V4L2 buffer: {}", io::Error::last_os_error());
            }
        }
        if self.requested {
            // SAFETY: zeroes are a valid v4l2_requestbuffers.
            let mut req: v4l2_requestbuffers = unsafe { std::mem::zeroed() };
            req.type_ = Type::VideoCapture as u32;
            req.memory = Memory::Mmap as u32;
            if let Err(e) = ioctl(self.fd, v4l::v4l2::vidioc::VIDIOC_REQBUFS, &mut req) {
                log::debug!("VIDIOC_REQBUFS 0: {e}");
            }
        }
    }
}
