//! One RTSP session of a camera test: DESCRIBE, SETUP, PLAY, the first key
//! frame, then the session is dropped.
//!
//! The requests are the camera source's (`source::rtsp`): the same
//! credentials split from the URL, the same choice of the first H.264/H.265
//! video stream, TCP-interleaved, frames in retina's `SIMPLE` format
//! (Annex-B, parameter sets in front of every key frame). The whole session
//! is bounded by the camera's `stall_timeout`, which bounds each step of a
//! camera's own sessions (10 s unless configured). Dropping the session
//! makes retina send its TEARDOWN from one short tokio task, as for a
//! camera's reconnect; nothing here spawns a task or a thread.
//!
//! retina's errors are opaque but for the RTSP status; an unreachable host
//! is told by retina's own wording ("Unable to connect to RTSP server"),
//! which [`classify`] maps, keeping only the first paragraph (the rest is
//! connection context for a developer).

use super::ProbeError;
use crate::codec::Codec;
use crate::config::{classify as classify_url, CameraConfig, SourceKind};
use crate::source::rtsp::{pick_stream, split_credentials, user_agent};
use crate::source::SourceSpec;
use futures_util::StreamExt;
use retina::client::{
    Credentials, PlayOptions, Session, SessionOptions, SetupOptions, TcpTransportOptions,
    TeardownPolicy, Transport,
};
use retina::codec::{CodecItem, FrameFormat};

/// The first key frame of a camera's stream.
#[derive(Debug)]
pub struct KeyFrame {
    /// Its codec.
    pub codec: Codec,
    /// One access unit, Annex-B, parameter sets first; at most the camera's
    /// `packet_size` bytes.
    pub data: Vec<u8>,
}

/// Where a probe is, for the timeout's message.
const DESCRIBE: &str = "DESCRIBE";
const SETUP: &str = "SETUP";
const PLAY: &str = "PLAY";
const KEY_FRAME: &str = "waiting for a key frame";

/// Opens `camera` once and returns its first key frame, or why not, within
/// its `stall_timeout`.
pub async fn first_key_frame(camera: &CameraConfig) -> Result<KeyFrame, ProbeError> {
    let url = match classify_url(&camera.url, camera.codec) {
        Ok(SourceKind::Rtsp(url)) => url,
        Ok(SourceKind::V4l2(_)) => return Err(ProbeError::NotSupported("a V4L2 device")),
        Ok(SourceKind::AnnexB(..) | SourceKind::Mp4(_)) => {
            return Err(ProbeError::NotSupported("a video file"))
        }
        Err(e) => {
            let shown = crate::config::redact_url(&camera.url);
            return Err(ProbeError::BadUrl(
                e.to_string().replace(&camera.url, &shown),
            ));
        }
    };
    let spec = SourceSpec {
        url: camera.url.clone(),
        codec_hint: camera.codec,
        username: camera.username.clone(),
        password: camera.password.clone(),
        backoff_min: camera.reconnect_min,
        backoff_max: camera.reconnect_max,
        stall_timeout: camera.stall_timeout,
        paced: true,
    };
    let (url, creds) = split_credentials(url, &spec);
    let mut step = DESCRIBE;
    let bound = camera.stall_timeout;
    let probe = play(url, creds, camera.packet_size, &mut step);
    match tokio::time::timeout(bound, probe).await {
        Ok(result) => result,
        Err(_) => Err(ProbeError::Timeout { step, after: bound }),
    }
}

/// The session itself; `step` follows it for the timeout's message.
async fn play(
    url: url::Url,
    creds: Option<Credentials>,
    max_bytes: usize,
    step: &mut &'static str,
) -> Result<KeyFrame, ProbeError> {
    let sent = creds.is_some();
    let failed = |step: &'static str, e: retina::Error| classify(step, &e, sent);
    let options = SessionOptions::default()
        .creds(creds)
        .user_agent(user_agent())
        .teardown(TeardownPolicy::Auto);
    let mut session = Session::describe(url, options)
        .await
        .map_err(|e| failed(DESCRIBE, e))?;
    let Some((stream, codec)) = pick_stream(session.streams()) else {
        let offered: Vec<String> = session
            .streams()
            .iter()
            .map(|s| format!("{}/{}", s.media(), s.encoding_name()))
            .collect();
        let offered = match offered.is_empty() {
            true => "no stream".to_owned(),
            false => offered.join(", "),
        };
        return Err(ProbeError::UnsupportedCodec(offered));
    };
    *step = SETUP;
    let setup = SetupOptions::default()
        .transport(Transport::Tcp(TcpTransportOptions::default()))
        .frame_format(FrameFormat::SIMPLE);
    session
        .setup(stream, setup)
        .await
        .map_err(|e| failed(SETUP, e))?;
    *step = PLAY;
    let playing = session
        .play(PlayOptions::default())
        .await
        .map_err(|e| failed(PLAY, e))?;
    let mut frames = playing.demuxed().map_err(|e| failed(PLAY, e))?;
    *step = KEY_FRAME;
    loop {
        match frames.next().await {
            None => {
                return Err(ProbeError::Stream(
                    "the camera ended the stream before a key frame".to_owned(),
                ))
            }
            Some(Err(e)) => return Err(failed(KEY_FRAME, e)),
            Some(Ok(CodecItem::VideoFrame(f)))
                if f.stream_id() == stream && f.is_random_access_point() =>
            {
                let bytes = f.data().len();
                if bytes > max_bytes {
                    return Err(ProbeError::KeyFrameTooLarge {
                        bytes,
                        max: max_bytes,
                    });
                }
                return Ok(KeyFrame {
                    codec,
                    data: f.into_data(),
                });
            }
            Some(Ok(_)) => {}
        }
    }
}

/// The probe's error for retina's `e` at `step`.
fn classify(step: &'static str, e: &retina::Error, sent_credentials: bool) -> ProbeError {
    map_error(step, e.status_code(), &e.to_string(), sent_credentials)
}

/// The probe's error for an RTSP `status` or retina's `text` at `step`.
pub(super) fn map_error(
    step: &'static str,
    status: Option<u16>,
    text: &str,
    sent_credentials: bool,
) -> ProbeError {
    match status {
        Some(401) => ProbeError::Unauthorized { sent_credentials },
        Some(status) => ProbeError::Refused { step, status },
        None => {
            let first = text.split("\n\n").next().unwrap_or_default().trim();
            match first.strip_prefix("Unable to connect to RTSP server: ") {
                Some(why) => ProbeError::Unreachable(why.to_owned()),
                None => ProbeError::Stream(format!("{step}: {first}")),
            }
        }
    }
}
