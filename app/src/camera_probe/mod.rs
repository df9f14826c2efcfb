//! The settings page's camera **test**: open a camera's URL once and say
//! what it sends (codec, size, frame rate, one picture) or exactly why not.
//!
//! One probe is one async task on the existing runtime, the web request's
//! own: [`session::first_key_frame`] sends DESCRIBE, SETUP and PLAY with
//! retina, as a camera's source would, reads until the first key frame and
//! drops the session (retina's TEARDOWN). [`facts`] reads that frame's SPS
//! with `codec::sps` and checks the size against the camera's
//! `max_resolution` before anything decodes it (`decode::limit`'s check).
//! [`picture::render`] then decodes that one access unit with a throwaway
//! OpenH264 decoder, scales it into a [`PREVIEW`] picture and encodes one
//! JPEG; the web route runs it as a job on the disk thread, so no thread is
//! started and the runtime's workers are not held by a decode. The caller
//! runs one probe at a time.
//!
//! Memory is bounded before the camera decides anything: the key frame may
//! be at most the camera's `packet_size` (what its source would accept),
//! the decoder is created only when the SPS's size is within
//! `max_resolution` and its estimated pictures within [`DECODER_BYTES`],
//! the preview and its JPEG have fixed sizes, and so the answer is at most
//! [`ANSWER_CAP`] bytes. The budget's "camera test" line counts these.
//!
//! Only RTSP cameras are probed: a file plays itself and a V4L2 device is
//! held by its running camera, so both answer [`ProbeError::NotSupported`].

pub mod picture;
pub mod session;

use crate::codec::{nal_type, nal_units, parse_sps, ParamKind};
use crate::decode::limit::{check_params, Params, TooLarge};
use crate::packet::Codec;
use serde::Serialize;
use std::fmt;
use std::time::Duration;

/// The largest preview picture: a camera's picture is scaled down (aspect
/// kept) to fit, enough to see where a camera points and whether it is in
/// focus, a quarter of a 1280x720 picture's bytes.
pub const PREVIEW: (u32, u32) = (640, 360);

/// The most a probe's OpenH264 decoder may hold, estimated from the SPS
/// before it is created ([`decoder_bytes`]): a 1920x1080 stream with up to
/// 3 reference frames (IP cameras use 1), a 2560x1440 one with 1. A
/// stream over it is described without a picture.
pub const DECODER_BYTES: u64 = 32 << 20;

/// The most bytes a probe's JSON answer takes: the preview JPEG's buffer in
/// base64 and the facts around it.
pub const ANSWER_CAP: usize = base64_len(picture::JPEG_CAPACITY) + 1024;

/// The base64 length of `n` bytes (with padding).
pub const fn base64_len(n: usize) -> usize {
    n.div_ceil(3) * 4
}

/// What the probe found wrong, each with a kind the page can tell apart.
#[derive(Clone, Debug, PartialEq)]
pub enum ProbeError {
    /// The URL in the form is not one vigil can play (the parser's words).
    BadUrl(String),
    /// Another field of the form is invalid (key and problem).
    Invalid(String),
    /// The URL is a file or a V4L2 device (which one).
    NotSupported(&'static str),
    /// The host could not be reached: refused, no route, unknown name.
    Unreachable(String),
    /// The camera answered 401: wrong or missing credentials.
    Unauthorized {
        /// Whether credentials were sent.
        sent_credentials: bool,
    },
    /// No answer within the bound, at this step.
    Timeout {
        /// Where the probe waited ("DESCRIBE", "waiting for a key frame").
        step: &'static str,
        /// The bound.
        after: Duration,
    },
    /// The camera answered this step with another error (the status code).
    Refused {
        /// DESCRIBE, SETUP or PLAY.
        step: &'static str,
        /// The RTSP status.
        status: u16,
    },
    /// The RTSP conversation or the stream failed otherwise.
    Stream(String),
    /// The camera offers no H.264 or H.265 video (what it offers).
    UnsupportedCodec(String),
    /// The stream is larger than the camera's `max_resolution`.
    OverMaxResolution(TooLarge),
    /// The key frame is larger than the camera's `packet_size`.
    KeyFrameTooLarge {
        /// Its size.
        bytes: usize,
        /// The camera's `packet_size`.
        max: usize,
    },
    /// The key frame's SPS is missing or unreadable.
    BadStream(&'static str),
    /// Another probe is running.
    Busy,
}

impl ProbeError {
    /// The kind, as the answer's `error` names it.
    pub fn kind(&self) -> &'static str {
        match self {
            ProbeError::BadUrl(_) => "bad_url",
            ProbeError::Invalid(_) => "invalid",
            ProbeError::NotSupported(_) => "not_supported",
            ProbeError::Unreachable(_) => "unreachable",
            ProbeError::Unauthorized { .. } => "unauthorized",
            ProbeError::Timeout { .. } => "timeout",
            ProbeError::Refused { .. } => "refused",
            ProbeError::Stream(_) => "stream_error",
            ProbeError::UnsupportedCodec(_) => "unsupported_codec",
            ProbeError::OverMaxResolution(_) => "over_max_resolution",
            ProbeError::KeyFrameTooLarge { .. } => "key_frame_too_large",
            ProbeError::BadStream(_) => "bad_stream",
            ProbeError::Busy => "busy",
        }
    }
}

impl fmt::Display for ProbeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProbeError::BadUrl(why) | ProbeError::Invalid(why) => f.write_str(why),
            ProbeError::NotSupported(what) => write!(
                f,
                "the test button opens RTSP cameras only, not {what} (not supported by the test yet)"
            ),
            ProbeError::Unreachable(why) => write!(f, "cannot reach the camera: {why}"),
            ProbeError::Unauthorized {
                sent_credentials: true,
            } => f.write_str(
                "the camera answered 401 Unauthorized: wrong user name or password",
            ),
            ProbeError::Unauthorized {
                sent_credentials: false,
            } => f.write_str(
                "the camera answered 401 Unauthorized: it needs a user name and password",
            ),
            ProbeError::Timeout { step, after } => write!(
                f,
                "no answer from the camera within {} s ({step})",
                after.as_secs_f64()
            ),
            ProbeError::Refused { step, status } => {
                write!(f, "the camera answered {step} with RTSP status {status}")
            }
            ProbeError::Stream(why) => write!(f, "the stream failed: {why}"),
            ProbeError::UnsupportedCodec(offered) => write!(
                f,
                "unsupported codec: the camera offers {offered}; vigil plays H.264 or H.265 video"
            ),
            ProbeError::OverMaxResolution(t) => write!(f, "{t}"),
            ProbeError::KeyFrameTooLarge { bytes, max } => write!(
                f,
                "a key frame of {bytes} bytes exceeds the camera's packet_size ({max} bytes)"
            ),
            ProbeError::BadStream(why) => write!(f, "the stream's key frame is unusable: {why}"),
            ProbeError::Busy => f.write_str("another camera test is running; try again"),
        }
    }
}

impl std::error::Error for ProbeError {}

/// What the key frame's SPS says.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Facts {
    /// The stream's codec.
    pub codec: Codec,
    /// Displayed width.
    pub width: u32,
    /// Displayed height.
    pub height: u32,
    /// Frames per second from the SPS's timing, when it states it.
    pub fps: Option<f64>,
    /// H.264 `max_num_ref_frames` (0 for H.265).
    pub ref_frames: u8,
}

/// Reads the SPS of the key frame `data` and checks its size against `max`
/// (the camera's `max_resolution`) before anything decodes it.
pub fn facts(codec: Codec, data: &[u8], max: (u32, u32)) -> Result<Facts, ProbeError> {
    let (width, height) = match check_params(codec, data, max) {
        Params::Within(w, h) => (w, h),
        Params::TooLarge(t) => return Err(ProbeError::OverMaxResolution(t)),
        Params::None => return Err(ProbeError::BadStream("it carries no SPS")),
        Params::Unreadable => return Err(ProbeError::BadStream("its SPS cannot be read")),
    };
    // check_params read every SPS; the last one is the one that applies.
    let sps = nal_units(data)
        .filter(|nal| ParamKind::of(codec, nal_type(codec, nal[0])) == Some(ParamKind::Sps))
        .filter_map(|nal| parse_sps(codec, nal))
        .last()
        .ok_or(ProbeError::BadStream("its SPS cannot be read"))?;
    let fps = sps
        .frame_duration()
        .map(|(num, den)| (den as f64 * 1000.0 / num as f64).round() / 1000.0);
    Ok(Facts {
        codec,
        width,
        height,
        fps,
        ref_frames: sps.ref_frames,
    })
}

/// The estimated memory of an OpenH264 decoder for a `width` x `height`
/// stream with `refs` reference frames: `2 refs + 4` pictures, which is the
/// 36 pictures `budget::SOFTWARE_DECODER_PICTURES` measured at 16 (the
/// H.264 maximum) and errs high for fewer.
pub fn decoder_bytes(width: u32, height: u32, refs: u8) -> u64 {
    (2 * u64::from(refs) + 4) * crate::frame::FrameBuf::bytes_for(width, height) as u64
}

/// A probe's answer, as `POST /api/settings/cameras/test` sends it.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum Answer {
    /// The camera streams.
    Ok {
        /// Always true.
        ok: bool,
        /// `h264` or `h265`.
        codec: &'static str,
        /// Displayed width.
        width: u32,
        /// Displayed height.
        height: u32,
        /// Frames per second, `null` when the stream does not say.
        fps: Option<f64>,
        /// `data:image/jpeg;base64,...`, or `null`.
        picture: Option<String>,
        /// Why there is no picture (`null` when there is one).
        picture_note: Option<String>,
    },
    /// It does not, and why.
    Failed {
        /// Always false.
        ok: bool,
        /// The kind ([`ProbeError::kind`]).
        error: &'static str,
        /// What went wrong, for a person.
        message: String,
    },
}

impl Answer {
    /// The answer for facts and the picture (or why there is none).
    pub fn streams(facts: &Facts, picture: Result<String, String>) -> Answer {
        let (picture, picture_note) = match picture {
            Ok(p) => (Some(p), None),
            Err(note) => (None, Some(note)),
        };
        Answer::Ok {
            ok: true,
            codec: facts.codec.as_str(),
            width: facts.width,
            height: facts.height,
            fps: facts.fps,
            picture,
            picture_note,
        }
    }

    /// The answer for a failed probe.
    pub fn failed(e: &ProbeError) -> Answer {
        Answer::Failed {
            ok: false,
            error: e.kind(),
            message: e.to_string(),
        }
    }
}

#[cfg(test)]
mod tests;
