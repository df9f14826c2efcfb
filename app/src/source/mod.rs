//! Sources: where a camera's compressed access units come from.
//!
//! A camera's `url` names one of three kinds of source ([`classify`]): an RTSP
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
//! per reconnect; a retry waits with [`backoff`] on the same task.
//!
//! The camera's state in its metrics follows the source: `connecting` while
//! opening or waiting to retry (the reason is the last error), `streaming`
//! once units flow, `error` for what no retry can fix (a bad URL, a missing or
//! unplayable file, a codec this build cannot decode) and `stopped` after
//! shutdown.

pub mod annexb;
pub mod backoff;
pub mod mp4file;
pub mod rtsp;
pub mod sink;
pub mod v4l2;

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
    /// [`classify`]).
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

/// The kind of source a URL names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SourceKind {
    /// An RTSP stream (credentials, if any, still in the URL).
    Rtsp(url::Url),
    /// An Annex-B elementary-stream file and its codec.
    AnnexB(PathBuf, Codec),
    /// An MP4 (ISO BMFF) file.
    Mp4(PathBuf),
    /// A V4L2 capture device node (captured on the camera's thread, see
    /// [`v4l2`]).
    V4l2(PathBuf),
}

/// Why a source cannot be played (as opposed to a passing network error,
/// which is retried).
#[derive(Debug)]
pub enum SourceError {
    /// The configured URL names nothing vigil can play.
    BadUrl {
        /// The URL as configured.
        url: String,
        /// What is wrong with it.
        why: String,
    },
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
            SourceError::BadUrl { url, why } => write!(f, "source {url:?}: {why}"),
            SourceError::Io { path, error } => write!(f, "{}: {error}", path.display()),
            SourceError::BadMedia { path, why } => write!(f, "{}: {why}", path.display()),
        }
    }
}

impl std::error::Error for SourceError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SourceError::Io { error, .. } => Some(error),
            _ => None,
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

/// Tells which source `url` names, without touching the network or the file.
///
/// * `rtsp://...` is an RTSP stream (the scheme is case-insensitive; the URL
///   must parse and name a host). `rtsps://` is refused: the RTSP client
///   (retina 0.4.21) has no TLS, so such a camera could never connect.
/// * A path or `file://` URL ending in `.h264` or `.264` is an H.264 Annex-B
///   file, `.h265`, `.265` or `.hevc` an H.265 one, `.mp4`, `.m4v` or `.mov`
///   an MP4 file (extensions are case-insensitive). With a `codec_hint`, any
///   other file name is taken as an Annex-B file of that codec, and the hint
///   also overrides the Annex-B extensions.
/// * Anything else is an error naming the URL.
///
/// Config validation calls this, so a bad URL is a config error.
pub fn classify(url: &str, codec_hint: Option<Codec>) -> Result<SourceKind, SourceError> {
    let bad = |why: &str| SourceError::BadUrl {
        url: url.to_owned(),
        why: why.to_owned(),
    };
    let trimmed = url.trim();
    if trimmed.is_empty() {
        return Err(bad("empty URL"));
    }
    let scheme = trimmed
        .split_once("://")
        .map(|(s, _)| s.to_ascii_lowercase());
    let path = match scheme.as_deref() {
        Some("rtsp") => {
            let parsed = url::Url::parse(trimmed).map_err(|e| bad(&format!("not a URL: {e}")))?;
            if parsed.host_str().is_none_or(str::is_empty) {
                return Err(bad("an rtsp URL needs a host"));
            }
            return Ok(SourceKind::Rtsp(parsed));
        }
        Some("rtsps") => {
            return Err(bad(
                "rtsps (RTSP over TLS) is not supported; use rtsp:// on a trusted network",
            ))
        }
        Some("v4l" | "v4l2") => {
            let (_, rest) = trimmed.split_once("://").unwrap_or_default();
            if !rest.starts_with("/dev/") || rest.len() <= "/dev/".len() {
                return Err(bad(
                    "a V4L2 camera is v4l:///dev/videoN (an absolute device path)",
                ));
            }
            return Ok(SourceKind::V4l2(PathBuf::from(rest)));
        }
        Some("file") => url::Url::parse(trimmed)
            .ok()
            .and_then(|u| u.to_file_path().ok())
            .ok_or_else(|| bad("not a valid file:// URL (it must name an absolute path)"))?,
        Some(_) => {
            return Err(bad(
                "unsupported scheme; expected rtsp://, v4l://, file:// or a file path",
            ))
        }
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
        _ => Err(bad(
            "not an RTSP URL and the file extension is none of .h264 .264 .h265 .265 .hevc \
             .mp4 .m4v .mov (set the codec to play another name as an Annex-B file)",
        )),
    }
}

/// Drives the source `spec` names until shutdown, handing access units to
/// `sink` and keeping the camera's state in `sink.metrics()` current.
///
/// When the stream's codec is known and `accepts(codec)` is false, the camera
/// goes to state error with [`DecodeError::Unsupported`]'s message and this
/// returns: a codec the build cannot decode is not retried. A bad URL, a
/// missing file or a file with no access unit does the same with its reason;
/// RTSP errors are retried with backoff. The camera is `stopped` after
/// shutdown.
///
/// [`DecodeError::Unsupported`]: crate::decode::DecodeError::Unsupported
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
    let reason = crate::decode::DecodeError::Unsupported(codec).to_string();
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
mod tests {
    use super::*;
    use crate::decode::openh264::software_accepts;
    use crate::source::annexb::tests::harness;
    use tokio::time::Instant;

    fn spec(url: &str) -> SourceSpec {
        SourceSpec {
            url: url.to_owned(),
            codec_hint: None,
            username: None,
            password: None,
            backoff_min: Duration::from_millis(100),
            backoff_max: Duration::from_secs(1),
            stall_timeout: Duration::from_secs(2),
            paced: true,
        }
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap()
    }

    /// Fails unless the test binary counts allocations (lib.rs installs the
    /// counting allocator under cfg(test)); a zero count would prove nothing.
    fn assert_allocations_are_counted() {
        let before = crate::alloc_count::thread_counts().ours;
        drop(std::hint::black_box(Box::new(7u64)));
        assert!(
            crate::alloc_count::thread_counts().ours > before,
            "alloc_count::CountingAllocator is not the test binary's global allocator"
        );
    }

    fn open(path: &Path, codec: Option<Codec>) -> Box<dyn FileSource> {
        match codec {
            Some(c) => Box::new(annexb::AnnexBFile::open(path, c).unwrap()),
            None => Box::new(mp4file::Mp4File::open(path).unwrap()),
        }
    }

    impl FileSource for Box<dyn FileSource> {
        fn codec(&self) -> Codec {
            (**self).codec()
        }
        fn next_unit(&mut self, sink: &mut PacketSink) -> Result<FileUnit, SourceError> {
            (**self).next_unit(sink)
        }
    }

    #[test]
    fn file_sources_allocate_nothing_after_warm_up() {
        assert_allocations_are_counted();
        let h265_mp4 = test_media::ffmpeg(
            "main-h265-copy.mp4",
            &format!("-i {} -c copy -f mp4 {{out}}", test_media::h265().display()),
        );
        let files = [
            (
                "annexb h264",
                test_media::h264_high(),
                Some(Codec::H264),
                60,
            ),
            ("annexb h265", test_media::h265(), Some(Codec::H265), 40),
            ("mp4 h264", test_media::h264_high_mp4(), None, 60),
            ("mp4 h265", h265_mp4, None, 40),
        ];
        for (name, path, codec, per_pass) in files {
            let mut h = harness(1 << 20);
            let mut src = open(&path, codec);
            let mut pass = |src: &mut Box<dyn FileSource>| {
                let mut sent = 0;
                for _ in 0..per_pass {
                    if let Some(p) = src.next_unit(&mut h.sink).unwrap().packet {
                        h.sink.send(p);
                    }
                    sent += usize::from(h.queue.try_pop().is_some());
                }
                sent
            };
            pass(&mut src); // warm-up
            let before = crate::alloc_count::thread_counts().ours;
            let sent: usize = (0..3).map(|_| pass(&mut src)).sum();
            let allocations = crate::alloc_count::thread_counts().ours - before;
            assert_eq!(sent, 3 * per_pass, "{name}");
            assert_eq!(
                allocations, 0,
                "{name}: allocations in three passes after warm-up"
            );
        }
    }

    /// 10 frames at 100 fps: a pass takes 0.1 s of playback.
    fn fast_clip(kind: &str) -> PathBuf {
        test_media::ffmpeg(
            &format!("fast.{kind}"),
            &format!(
                "-f lavfi -i testsrc2=size=320x240:rate=100 -frames:v 10 -c:v \
                 libx264 -bf 2 -g 5 -f {kind} {{out}}",
            ),
        )
    }

    /// Plays `src` in real time until `watch` returns.
    async fn play_until<T>(
        src: &mut Box<dyn FileSource>,
        sink: &mut PacketSink,
        watch: impl std::future::Future<Output = T>,
    ) -> T {
        let (_trigger, mut shutdown) = crate::shutdown::channel();
        tokio::select! {
            _ = play_file(src, sink, true, &mut shutdown) => panic!("playback ended"),
            t = watch => t,
        }
    }

    #[test]
    fn paced_playback_allocates_nothing_after_warm_up() {
        assert_allocations_are_counted();
        for (path, codec) in [
            (fast_clip("h264"), Some(Codec::H264)),
            (fast_clip("mp4"), None),
        ] {
            let mut h = harness(1 << 20);
            let queue = h.queue.clone();
            let mut src = open(&path, codec);
            let allocations = runtime().block_on(async {
                let watch = async {
                    let (mut n, mut before) = (0, 0);
                    while n < 60 {
                        while queue.try_pop().is_some() {
                            n += 1;
                        }
                        if n < 10 {
                            before = crate::alloc_count::thread_counts().ours;
                        }
                        tokio::time::sleep(Duration::from_millis(2)).await;
                    }
                    crate::alloc_count::thread_counts().ours - before
                };
                play_until(&mut src, &mut h.sink, watch).await
            });
            assert_eq!(
                allocations,
                0,
                "{}: allocations while playing",
                path.display()
            );
        }
    }

    #[test]
    fn unpaced_playback_drops_nothing_and_allocates_nothing() {
        assert_allocations_are_counted();
        let files = [
            (test_media::h264_high(), Some(Codec::H264)),
            (test_media::h264_high_mp4(), None),
        ];
        for (path, codec) in files {
            let mut h = harness(1 << 20);
            let (queue, metrics) = (h.queue.clone(), h.metrics.clone());
            let mut src = open(&path, codec);
            let (_trigger, mut shutdown) = crate::shutdown::channel();
            let (allocations, elapsed) = runtime().block_on(async {
                let watch = async {
                    let start = Instant::now();
                    let (mut n, mut before) = (0, 0);
                    while n < 600 {
                        while queue.try_pop().is_some() {
                            n += 1;
                        }
                        if n < 60 {
                            before = crate::alloc_count::thread_counts().ours;
                        }
                        tokio::task::yield_now().await;
                    }
                    let after = crate::alloc_count::thread_counts().ours;
                    (after - before, start.elapsed())
                };
                tokio::select! {
                    _ = play_file(&mut src, &mut h.sink, false, &mut shutdown) => unreachable!(),
                    r = watch => r,
                }
            });
            let name = path.display();
            assert_eq!(metrics.packets_dropped.lost(), 0, "{name}: dropped units");
            assert_eq!(allocations, 0, "{name}: allocations after warm-up");
            // Paced, 600 units take 24 s.
            assert!(elapsed < Duration::from_secs(4), "{name}: {elapsed:?}");
        }
    }

    #[test]
    fn files_play_at_their_own_frame_rate() {
        // 25 fps (H.264, from the SPS), 30 fps (H.265), 100 fps, an MP4's stts.
        let files = [
            (test_media::h264_high(), Some(Codec::H264), 40_000),
            (test_media::h265(), Some(Codec::H265), 33_333),
            (fast_clip("h264"), Some(Codec::H264), 10_000),
            (test_media::h264_high_mp4(), None, 40_000),
        ];
        for (path, codec, frame_us) in files {
            let mut h = harness(1 << 20);
            let queue = h.queue.clone();
            let mut src = open(&path, codec);
            let elapsed = runtime().block_on(async {
                let watch = async {
                    let mut times = Vec::new();
                    while times.len() < 12 {
                        if queue.try_pop().is_some() {
                            times.push(Instant::now());
                        }
                        tokio::time::sleep(Duration::from_micros(200)).await;
                    }
                    times[11] - times[1]
                };
                play_until(&mut src, &mut h.sink, watch).await
            });
            let expected = Duration::from_micros(10 * frame_us);
            let diff = elapsed.abs_diff(expected);
            assert!(
                diff < Duration::from_millis(15),
                "{}: {elapsed:?} vs {expected:?}",
                path.display()
            );
        }
    }

    async fn run_to_end(url: &str, accepts: fn(Codec) -> bool) -> crate::metrics::CameraStatus {
        let h = harness(1 << 20);
        let metrics = h.metrics.clone();
        let (_trigger, shutdown) = crate::shutdown::channel();
        tokio::time::timeout(
            Duration::from_secs(10),
            run(spec(url), h.sink, accepts, shutdown),
        )
        .await
        .expect("run returns by itself");
        metrics.status()
    }

    #[test]
    fn unplayable_sources_end_in_error_state_with_the_reason() {
        runtime().block_on(async {
            let s = run_to_end("/nonexistent/cam.h264", software_accepts).await;
            assert_eq!(s.state, CameraState::Error);
            assert!(s.reason.contains("/nonexistent/cam.h264"), "{}", s.reason);

            let s = run_to_end("ftp://cam/x", software_accepts).await;
            assert_eq!(s.state, CameraState::Error);
            assert!(s.reason.contains("ftp://cam/x"), "{}", s.reason);

            let unsupported = crate::decode::DecodeError::Unsupported(Codec::H265).to_string();
            let s = run_to_end(test_media::h265().to_str().unwrap(), software_accepts).await;
            assert_eq!(
                (s.state, s.reason.as_str()),
                (CameraState::Error, unsupported.as_str())
            );
            let mp4 = test_media::ffmpeg(
                "refused-h265.mp4",
                &format!("-i {} -c copy -f mp4 {{out}}", test_media::h265().display()),
            );
            let s = run_to_end(mp4.to_str().unwrap(), software_accepts).await;
            assert_eq!(
                (s.state, s.reason.as_str()),
                (CameraState::Error, unsupported.as_str())
            );

            let empty = test_media::dir().join("empty-file.h264");
            std::fs::write(&empty, b"").unwrap();
            let s = run_to_end(empty.to_str().unwrap(), software_accepts).await;
            assert_eq!(s.state, CameraState::Error);
            assert!(s.reason.contains("no h264 access unit"), "{}", s.reason);
        });
    }

    #[test]
    fn a_playing_file_streams_until_shutdown() {
        let h = harness(1 << 20);
        let (metrics, queue) = (h.metrics.clone(), h.queue.clone());
        let (trigger, shutdown) = crate::shutdown::channel();
        let url = format!("file://{}", test_media::h264_high_mp4().display());
        runtime().block_on(async move {
            let task = tokio::spawn(run(spec(&url), h.sink, software_accepts, shutdown));
            tokio::time::sleep(Duration::from_millis(300)).await;
            assert_eq!(metrics.status().state, CameraState::Streaming);
            assert!(!queue.is_empty());
            trigger.trigger();
            task.await.unwrap();
            assert_eq!(metrics.status().state, CameraState::Stopped);
        });
    }

    #[test]
    fn classifies_urls_and_paths() {
        let rtsp = classify("rtsp://10.0.0.5:554/stream1", None).unwrap();
        assert!(matches!(rtsp, SourceKind::Rtsp(u) if u.host_str() == Some("10.0.0.5")));
        assert!(matches!(
            classify("RTSP://cam/x", None),
            Ok(SourceKind::Rtsp(_))
        ));
        assert_eq!(
            classify("/media/a.H264", None).unwrap(),
            SourceKind::AnnexB("/media/a.H264".into(), Codec::H264)
        );
        assert_eq!(
            classify("clip.264", None).unwrap(),
            SourceKind::AnnexB("clip.264".into(), Codec::H264)
        );
        for p in ["x.h265", "x.265", "x.hevc"] {
            assert_eq!(
                classify(p, None).unwrap(),
                SourceKind::AnnexB(p.into(), Codec::H265)
            );
        }
        for p in ["x.mp4", "x.M4V", "x.mov"] {
            assert_eq!(classify(p, None).unwrap(), SourceKind::Mp4(p.into()));
        }
        assert_eq!(
            classify("file:///srv/clips/door%20cam.mp4", None).unwrap(),
            SourceKind::Mp4("/srv/clips/door cam.mp4".into())
        );
        assert_eq!(
            classify("/dev/shm/cam.bin", Some(Codec::H265)).unwrap(),
            SourceKind::AnnexB("/dev/shm/cam.bin".into(), Codec::H265)
        );
    }

    #[test]
    fn debug_output_hides_the_password() {
        let mut s = spec("rtsp://cam/x");
        s.password = Some("hunter2".into());
        assert!(!format!("{s:?}").contains("hunter2"));
    }

    #[test]
    fn refuses_what_cannot_play_and_names_the_url() {
        for url in [
            "",
            "http://cam/stream",
            "rtsps://cam/stream",
            "rtsp://",
            "clip.avi",
            "camera1",
            "file://relative",
        ] {
            let err = classify(url, None).unwrap_err();
            assert!(matches!(err, SourceError::BadUrl { .. }), "{url}: {err}");
            assert!(err.to_string().contains(&format!("{url:?}")), "{err}");
        }
    }
}
