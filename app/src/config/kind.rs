//! What a camera's `url` names: an RTSP stream, an Annex-B or MP4 file, or
//! a V4L2 device ([`classify`]).
//!
//! This is a property of the configured text, decided without touching the
//! network or the file, so it belongs to the configuration: validation
//! calls it to make a bad URL a located configuration error, and the
//! sources and the pipeline call it again to pick what plays the camera.

use crate::packet::Codec;
use std::fmt;
use std::path::PathBuf;

/// The kind of source a URL names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SourceKind {
    /// An RTSP stream (credentials, if any, still in the URL).
    Rtsp(url::Url),
    /// An Annex-B elementary-stream file and its codec.
    AnnexB(PathBuf, Codec),
    /// An MP4 (ISO BMFF) file.
    Mp4(PathBuf),
    /// A V4L2 capture device node (captured on the camera's own thread).
    V4l2(PathBuf),
}

/// Why a URL names nothing vigil can play: the URL as configured and what
/// is wrong with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UrlError {
    /// The URL as configured.
    pub url: String,
    /// What is wrong with it.
    pub kind: UrlErrorKind,
}

/// The ways a camera URL can be wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UrlErrorKind {
    /// Empty, or only whitespace.
    Empty,
    /// An `rtsp://` URL that does not parse.
    NotAUrl(url::ParseError),
    /// An `rtsp://` URL without a host.
    NoHost,
    /// `rtsps://`: the RTSP client (retina 0.4.21) has no TLS, so such a
    /// camera could never connect.
    Rtsps,
    /// A `v4l://` URL whose path is not an absolute device path.
    NotADevice,
    /// A `file://` URL that names no absolute path.
    BadFileUrl,
    /// A scheme other than rtsp, v4l, v4l2 or file.
    UnsupportedScheme,
    /// A file name whose extension says no format, and no codec given.
    UnknownExtension,
}

impl fmt::Display for UrlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The wording predates the type: status pages and configuration
        // errors show it, so it stays.
        write!(f, "source {:?}: ", self.url)?;
        match &self.kind {
            UrlErrorKind::Empty => f.write_str("empty URL"),
            UrlErrorKind::NotAUrl(e) => write!(f, "not a URL: {e}"),
            UrlErrorKind::NoHost => f.write_str("an rtsp URL needs a host"),
            UrlErrorKind::Rtsps => f.write_str(
                "rtsps (RTSP over TLS) is not supported; use rtsp:// on a trusted network",
            ),
            UrlErrorKind::NotADevice => {
                f.write_str("a V4L2 camera is v4l:///dev/videoN (an absolute device path)")
            }
            UrlErrorKind::BadFileUrl => {
                f.write_str("not a valid file:// URL (it must name an absolute path)")
            }
            UrlErrorKind::UnsupportedScheme => {
                f.write_str("unsupported scheme; expected rtsp://, v4l://, file:// or a file path")
            }
            UrlErrorKind::UnknownExtension => f.write_str(
                "not an RTSP URL and the file extension is none of .h264 .264 .h265 .265 .hevc \
                 .mp4 .m4v .mov (set the codec to play another name as an Annex-B file)",
            ),
        }
    }
}

impl std::error::Error for UrlError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.kind {
            // Its text is already in ours; it is the cause all the same.
            UrlErrorKind::NotAUrl(e) => Some(e),
            _ => None,
        }
    }
}

/// Tells which source `url` names, without touching the network or the file.
///
/// * `rtsp://...` is an RTSP stream (the scheme is case-insensitive; the URL
///   must parse and name a host). `rtsps://` is refused: the RTSP client
///   (retina 0.4.21) has no TLS, so such a camera could never connect.
/// * `v4l:///dev/videoN` (or `v4l2://`) is a V4L2 capture device.
/// * A path or `file://` URL ending in `.h264` or `.264` is an H.264 Annex-B
///   file, `.h265`, `.265` or `.hevc` an H.265 one, `.mp4`, `.m4v` or `.mov`
///   an MP4 file (extensions are case-insensitive). With a `codec_hint`, any
///   other file name is taken as an Annex-B file of that codec, and the hint
///   also overrides the Annex-B extensions.
/// * Anything else is an error naming the URL.
///
/// Config validation calls this, so a bad URL is a config error.
pub fn classify(url: &str, codec_hint: Option<Codec>) -> Result<SourceKind, UrlError> {
    let bad = |kind: UrlErrorKind| UrlError {
        url: url.to_owned(),
        kind,
    };
    let trimmed = url.trim();
    if trimmed.is_empty() {
        return Err(bad(UrlErrorKind::Empty));
    }
    let scheme = trimmed
        .split_once("://")
        .map(|(s, _)| s.to_ascii_lowercase());
    let path = match scheme.as_deref() {
        Some("rtsp") => {
            let parsed = url::Url::parse(trimmed).map_err(|e| bad(UrlErrorKind::NotAUrl(e)))?;
            if parsed.host_str().is_none_or(str::is_empty) {
                return Err(bad(UrlErrorKind::NoHost));
            }
            return Ok(SourceKind::Rtsp(parsed));
        }
        Some("rtsps") => return Err(bad(UrlErrorKind::Rtsps)),
        Some("v4l" | "v4l2") => {
            let (_, rest) = trimmed.split_once("://").unwrap_or_default();
            if !rest.starts_with("/dev/") || rest.len() <= "/dev/".len() {
                return Err(bad(UrlErrorKind::NotADevice));
            }
            return Ok(SourceKind::V4l2(PathBuf::from(rest)));
        }
        Some("file") => url::Url::parse(trimmed)
            .ok()
            .and_then(|u| u.to_file_path().ok())
            .ok_or_else(|| bad(UrlErrorKind::BadFileUrl))?,
        Some(_) => return Err(bad(UrlErrorKind::UnsupportedScheme)),
        None => PathBuf::from(trimmed),
    };
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    match (ext.as_str(), codec_hint) {
        ("mp4" | "m4v" | "mov", _) => Ok(SourceKind::Mp4(path)),
        (_, Some(codec)) => Ok(SourceKind::AnnexB(path, codec)),
        ("h264" | "264", None) => Ok(SourceKind::AnnexB(path, Codec::H264)),
        ("h265" | "265" | "hevc", None) => Ok(SourceKind::AnnexB(path, Codec::H265)),
        _ => Err(bad(UrlErrorKind::UnknownExtension)),
    }
}
