//! Sources: where a camera's compressed access units come from.
//!
//! A camera's `url` names one of three kinds of source
//! ([`classify`](crate::config::classify), a configuration value): an RTSP
//! stream ([`rtsp`], over TCP with retina), an H.264/H.265 Annex-B elementary
//! stream file ([`annexb`]) or an MP4 file ([`mp4file`]); the files are played
//! at their own frame rate (or, unpaced, as fast as the decoder takes them)
//! and loop forever, so a box can be demonstrated, tested and benchmarked
//! without a camera. Every source is one tokio task that [`run`]s until
//! shutdown and hands each access unit, Annex-B framed with parameter sets in
//! front of key frames, to its camera's [`PacketSink`]. Sources own no memory
//! of their own past start: file sources read through one fixed buffer
//! straight into packet buffers lent by the sink, and the RTSP source copies
//! each frame once into such a buffer. Nothing here spawns a task or a thread
//! per reconnect; a retry waits with [`crate::backoff`] on the same task.
//!
//! The camera's state in its metrics follows the source: `connecting` while
//! opening or waiting to retry (the reason is the last error), `streaming`
//! once units flow, `error` for what no retry can fix (a bad URL, a missing or
//! unplayable file, a codec this build cannot decode) and `stopped` after
//! shutdown.

pub mod annexb;
pub mod mp4file;
pub mod rtsp;
pub mod sink;
pub mod v4l2;

use crate::config::{classify, SourceKind};
use crate::metrics::CameraState;
use crate::packet::{Codec, PacketBuf};
use crate::pool::Lease;
use crate::shutdown::Shutdown;
use sink::PacketSink;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How to reach one camera's stream, from its configuration. Its `Debug`
/// output leaves the password out.
#[derive(Clone)]
pub struct SourceSpec {
    /// `rtsp://host[:port]/path`, a file path, or a `file://` URL (see
    /// [`classify`](crate::config::classify)).
    pub url: String,
    /// The codec of an Annex-B file whose name does not say it (for example
    /// `cam.bin`); when given it overrides the file extension. RTSP and MP4
    /// sources describe their codec themselves and ignore it.
    pub codec_hint: Option<Codec>,
    /// RTSP user name (basic or digest authentication). When absent, a user
    /// name in the URL itself is used.
    pub username: Option<String>,
    /// RTSP password; used only together with a user name.
    pub password: Option<String>,
    /// Shortest wait before reconnecting after an error.
    pub backoff_min: Duration,
    /// Longest wait before reconnecting after repeated errors.
    pub backoff_max: Duration,
    /// A session that delivers no frame for this long is torn down and
    /// reopened; it also bounds each step of opening a session.
    pub stall_timeout: Duration,
    /// File sources only: play at the file's own rate. When false, units go
    /// out as fast as the decoder takes them (benchmarks, tests): the source
    /// waits for room in the pool and queue instead of dropping units.
    pub paced: bool,
}

impl std::fmt::Debug for SourceSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SourceSpec")
            .field("url", &self.url)
            .field("codec_hint", &self.codec_hint)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("backoff_min", &self.backoff_min)
            .field("backoff_max", &self.backoff_max)
            .field("stall_timeout", &self.stall_timeout)
            .field("paced", &self.paced)
            .finish()
    }
}

impl SourceSpec {
    /// The source part of a camera's configuration.
    pub fn from_camera(cam: &crate::config::CameraConfig, paced: bool) -> Self {
        SourceSpec {
            url: cam.url.clone(),
            codec_hint: cam.codec,
            username: cam.username.clone(),
            password: cam.password.clone(),
            backoff_min: cam.reconnect_min,
            backoff_max: cam.reconnect_max,
            stall_timeout: cam.stall_timeout,
            paced,
        }
    }
}

/// Why a source cannot be played (as opposed to a passing network error,
/// which is retried).
#[derive(Debug)]
pub enum SourceError {
    /// The stream's codec has no decoder in this build: the caller's check
    /// (`accepts` of [`run`]) said no. Its text is the decoder's own
    /// refusal, so the camera's reason reads the same whichever side
    /// noticed first.
    UnsupportedCodec(Codec),
    /// A file could not be opened or read.
    Io {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        error: std::io::Error,
    },
    /// A file was read but holds nothing playable.
    BadMedia {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        why: String,
    },
}

impl std::fmt::Display for SourceError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SourceError::UnsupportedCodec(c) => write!(
                f,
                "{c} needs the hardware (MPP) decoder; the software backend decodes only h264"
            ),
            SourceError::Io { path, error } => write!(f, "{}: {error}", path.display()),
            SourceError::BadMedia { path, why } => write!(f, "{}: {why}", path.display()),
        }
    }
}

impl std::error::Error for SourceError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SourceError::Io { error, .. } => Some(error),
            SourceError::UnsupportedCodec(_) | SourceError::BadMedia { .. } => None,
        }
    }
}

impl SourceError {
    pub(crate) fn io(path: &Path, error: std::io::Error) -> Self {
        SourceError::Io {
            path: path.to_owned(),
            error,
        }
    }

    pub(crate) fn media(path: &Path, why: impl Into<String>) -> Self {
        SourceError::BadMedia {
            path: path.to_owned(),
            why: why.into(),
        }
    }
}

/// Drives the source `spec` names until shutdown, handing access units to
/// `sink` and keeping the camera's state in `sink.metrics()` current.
///
/// When the stream's codec is known and `accepts(codec)` is false, the camera
/// goes to state error with [`SourceError::UnsupportedCodec`]'s message (the
/// decoder's own words for it) and this returns: a codec the build cannot
/// decode is not retried. A bad URL, a missing file or a file with no access
/// unit does the same with its reason; RTSP errors are retried with backoff.
/// The camera is `stopped` after shutdown.
pub async fn run(
    spec: SourceSpec,
    mut sink: PacketSink,
    accepts: fn(Codec) -> bool,
    mut shutdown: Shutdown,
) {
    match classify(&spec.url, spec.codec_hint) {
        Err(e) => sink.metrics().set_state(CameraState::Error, &e.to_string()),
        Ok(SourceKind::Rtsp(url)) => {
            rtsp::run(url, &spec, &mut sink, accepts, &mut shutdown).await;
        }
        Ok(SourceKind::AnnexB(path, codec)) => {
            if refuse(&sink, codec, accepts) {
                return;
            }
            match annexb::AnnexBFile::open(&path, codec) {
                Ok(mut file) => play_file(&mut file, &mut sink, spec.paced, &mut shutdown).await,
                Err(e) => sink.metrics().set_state(CameraState::Error, &e.to_string()),
            }
        }
        Ok(SourceKind::Mp4(path)) => match mp4file::Mp4File::open(&path) {
            Ok(mut file) => {
                if !refuse(&sink, file.codec(), accepts) {
                    play_file(&mut file, &mut sink, spec.paced, &mut shutdown).await;
                }
            }
            Err(e) => sink.metrics().set_state(CameraState::Error, &e.to_string()),
        },
        // The pipeline captures these on the camera's own thread instead.
        Ok(SourceKind::V4l2(path)) => sink.metrics().set_state(
            CameraState::Error,
            &format!("{}: V4L2 cameras are not a network source", path.display()),
        ),
    }
    if shutdown.is_requested() {
        sink.metrics().set_state(CameraState::Stopped, "");
    }
}

/// Puts the camera in state error when its codec cannot be decoded here.
/// Returns whether it did.
pub(crate) fn refuse(sink: &PacketSink, codec: Codec, accepts: fn(Codec) -> bool) -> bool {
    if accepts(codec) {
        return false;
    }
    let reason = SourceError::UnsupportedCodec(codec).to_string();
    sink.metrics().set_state(CameraState::Error, &reason);
    true
}

/// One access unit read from a file source.
#[derive(Debug)]
pub struct FileUnit {
    /// When the unit is due, in microseconds of the file's decode timeline
    /// (increasing across loops). Sources are paced by it.
    pub due_us: i64,
    /// The filled packet, or `None` when the sink skipped the unit (awaiting
    /// a key frame, pool empty, oversize: already counted by the sink).
    pub packet: Option<Lease<PacketBuf>>,
}

/// A looping file of access units (Annex-B or MP4).
pub trait FileSource {
    /// The file's codec.
    fn codec(&self) -> Codec;

    /// Reads the next access unit into a packet lent by `sink` (not sent),
    /// rewinding at the end of the file. Fails when the file cannot be read
    /// or a whole pass over it found no access unit.
    fn next_unit(&mut self, sink: &mut PacketSink) -> Result<FileUnit, SourceError>;
}

/// How late a file source may fall behind its schedule before it restarts the
/// schedule from now instead of bursting to catch up.
const MAX_LATENESS: Duration = Duration::from_millis(100);

/// How often an unpaced file source looks for room in a full pipeline.
const UNPACED_POLL: Duration = Duration::from_millis(1);

/// Plays a file source until shutdown or a read error (which puts the camera
/// in state error): `paced`, each unit is sent when due; unpaced, as soon as
/// the pool and queue have room for it.
///
/// A paced unit is read (into its packet buffer) first and sent when due, so
/// the source holds at most one packet buffer while it waits. File reads are
/// plain blocking reads of at most the fixed read buffer: a local file is
/// served from the page cache in microseconds, and tokio's async file API
/// would cost a blocking-pool thread hop (and allocation) per read.
pub(crate) async fn play_file(
    src: &mut impl FileSource,
    sink: &mut PacketSink,
    paced: bool,
    shutdown: &mut Shutdown,
) {
    use tokio::time::Instant;
    // Wall-clock instant of media time `t0_us`.
    let mut anchor: Option<(Instant, i64)> = None;
    let mut streaming = false;
    while !shutdown.is_requested() {
        while !paced && !sink.has_room() {
            tokio::select! {
                _ = tokio::time::sleep(UNPACED_POLL) => {}
                _ = shutdown.requested() => return,
            }
        }
        let unit = match src.next_unit(sink) {
            Ok(unit) => unit,
            Err(e) => {
                sink.metrics().set_state(CameraState::Error, &e.to_string());
                return;
            }
        };
        if paced {
            let now = Instant::now();
            let (start, t0) = *anchor.get_or_insert((now, unit.due_us));
            let offset = unit.due_us.saturating_sub(t0);
            let mut due = start + Duration::from_micros(offset.max(0).unsigned_abs());
            if offset < 0 || now > due + MAX_LATENESS {
                // Fell behind (or the timeline went backwards): no burst,
                // the schedule starts again from this unit.
                anchor = Some((now, unit.due_us));
                due = now;
            }
            tokio::select! {
                _ = tokio::time::sleep_until(due) => {}
                _ = shutdown.requested() => return,
            }
        } else {
            // Never hog the runtime thread when the decoder keeps up.
            tokio::task::coop::consume_budget().await;
        }
        if let Some(packet) = unit.packet {
            sink.send(packet);
        }
        if !streaming {
            streaming = true;
            sink.metrics().set_state(CameraState::Streaming, "");
        }
    }
}

#[cfg(test)]
pub(crate) mod test_media {
    //! Test media made with ffmpeg in a per-process temp directory. A test
    //! that needs it fails loudly when ffmpeg is missing.

    use std::path::{Path, PathBuf};
    use std::process::Command;
    use std::sync::OnceLock;

    /// The per-process directory for generated files (those of finished
    /// test processes are removed when it is made).
    pub fn dir() -> &'static Path {
        static DIR: OnceLock<PathBuf> = OnceLock::new();
        DIR.get_or_init(|| {
            const PREFIX: &str = "vigil-source-tests-";
            let tmp = std::env::temp_dir();
            for entry in std::fs::read_dir(&tmp).into_iter().flatten().flatten() {
                let name = entry.file_name();
                let pid = name.to_str().and_then(|n| n.strip_prefix(PREFIX));
                if pid.is_some_and(|pid| !Path::new("/proc").join(pid).exists()) {
                    let _ = std::fs::remove_dir_all(entry.path());
                }
            }
            let d = tmp.join(format!("{PREFIX}{}", std::process::id()));
            // ffmpeg() splits its arguments at whitespace.
            assert!(
                !d.to_string_lossy().contains(char::is_whitespace),
                "{}",
                d.display()
            );
            std::fs::create_dir_all(&d).expect("create test media dir");
            d
        })
    }

    fn run(cmd: &mut Command) -> String {
        let out = cmd.output().unwrap_or_else(|e| {
            panic!(
                "cannot run {:?} ({e}): these tests need ffmpeg and ffprobe \
                 (apt-get install ffmpeg, or scripts/install-deps.sh media)",
                cmd.get_program()
            )
        });
        assert!(
            out.status.success(),
            "{:?} failed: {}",
            cmd,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs ffmpeg with the whitespace-separated `args` (quiet, overwriting)
    /// unless `name` exists, and returns the output's path. `{out}` in
    /// `args` is the output path.
    pub fn ffmpeg(name: &str, args: &str) -> PathBuf {
        static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _guard = LOCK
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let out = dir().join(name);
        if !out.exists() {
            let tmp = dir().join(format!("tmp-{name}"));
            let tmp_s = tmp.to_str().expect("utf-8 temp path");
            let args = args
                .split_whitespace()
                .map(|a| if a == "{out}" { tmp_s } else { a });
            run(Command::new("ffmpeg")
                .args(["-nostdin", "-hide_banner", "-loglevel", "error", "-y"])
                .args(args));
            std::fs::rename(&tmp, &out).expect("rename generated media");
        }
        out
    }

    /// H.264 High profile with B-frames (`-bf 2`), 640x272 like bikes.mp4,
    /// 60 frames at 25 fps, a key frame every 25.
    pub fn h264_high() -> PathBuf {
        ffmpeg(
            "high.h264",
            "-f lavfi -i testsrc2=size=640x272:rate=25 -frames:v 60 -c:v \
             libx264 -profile:v high -preset medium -bf 2 -g 25 -pix_fmt \
             yuv420p -f h264 {out}",
        )
    }

    /// The same kind of stream as [`h264_high`] encoded straight into MP4,
    /// so that it has composition offsets (`ctts`) for its B-frames.
    pub fn h264_high_mp4() -> PathBuf {
        ffmpeg(
            "high.mp4",
            "-f lavfi -i testsrc2=size=640x272:rate=25 -frames:v 60 -c:v \
             libx264 -profile:v high -preset medium -bf 2 -g 25 -pix_fmt \
             yuv420p -f mp4 {out}",
        )
    }

    /// H.265 (libx265), 320x240, 40 frames at 30 fps, a key frame every 20.
    pub fn h265() -> PathBuf {
        ffmpeg(
            "main.h265",
            "-f lavfi -i testsrc2=size=320x240:rate=30 -frames:v 40 -c:v \
             libx265 -x265-params log-level=error:keyint=20:min-keyint=20 \
             -pix_fmt yuv420p -f hevc {out}",
        )
    }

    /// Number of video packets ffprobe counts, and which are key frames.
    pub fn probe_packets(path: &Path) -> Vec<bool> {
        let out = run(Command::new("ffprobe").args([
            "-v",
            "error",
            "-select_streams",
            "v:0",
            "-show_entries",
            "packet=flags",
            "-of",
            "csv=p=0",
            path.to_str().expect("utf-8 path"),
        ]));
        out.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| l.starts_with('K'))
            .collect()
    }
}

#[cfg(test)]
mod tests;
