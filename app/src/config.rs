//! The configuration file: one TOML document, validated in full before
//! anything starts.
//!
//! Every capacity that bounds memory (frame and packet pools, queue and ring
//! sizes, picture size limits) comes from here, so the memory budget can be
//! computed from a [`Config`] alone. Parsing rejects unknown keys and every
//! error names the file, the line and the key path (`camera[1].detect_fps`),
//! because the people who read these errors are installing a box, often over
//! a serial console. Defaults are chosen so a camera needs only a `url`.

use crate::packet::Codec;
use crate::source;
use serde::de::{self, Deserializer};
use serde::Deserialize;
use std::fmt;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;
use toml::Spanned;

/// Classes reported when a camera does not list its own.
pub const DEFAULT_CLASSES: [&str; 6] = ["person", "bicycle", "car", "motorcycle", "bus", "truck"];

/// A validated configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// Where events, snapshots and clips are stored.
    pub data_dir: PathBuf,
    /// Address of the web interface.
    pub listen: SocketAddr,
    /// Hard memory limit for the process, in bytes; the budget must fit.
    pub memory_limit: u64,
    /// The object detector.
    pub detector: DetectorConfig,
    /// Threads of the async runtime (RTSP sources, web).
    pub io_threads: usize,
    /// The in-memory event ring, the object tracker and snapshots.
    pub events: EventsConfig,
    /// The event store under `data_dir`.
    pub store: StoreConfig,
    /// Delivery of events to upstream systems.
    pub upstream: UpstreamConfig,
    /// Event clips.
    pub record: RecordConfig,
    /// The web interface's limits.
    pub web: WebConfig,
    /// Hardware or software backends.
    pub backend: crate::hw::BackendChoice,
    /// Where and how the hardware backends run.
    pub hardware: HardwareConfig,
    /// The hardware watchdog vigil pets while healthy.
    pub watchdog: WatchdogConfig,
    /// The cameras, in file order.
    pub cameras: Vec<CameraConfig>,
}

/// Which detector runs and how many workers share it.
#[derive(Clone, Debug, PartialEq)]
pub struct DetectorConfig {
    /// The model family.
    pub kind: DetectorKind,
    /// The model file.
    pub model: PathBuf,
    /// Inference worker threads, shared by all cameras.
    pub workers: usize,
}

/// Supported model families.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DetectorKind {
    /// SSD-MobileNetV2-COCO frozen TensorFlow graph on the CPU (tract).
    SsdMobilenetV2,
    /// A `.rknn` model on the NPU with the output layout of one of
    /// rknn_model_zoo's COCO YOLO exports.
    Yolo(crate::hw::npu::YoloLayout),
}

impl DetectorKind {
    /// Every config spelling, in the order error messages list them.
    pub const ALL: [DetectorKind; 4] = [
        DetectorKind::SsdMobilenetV2,
        DetectorKind::Yolo(crate::hw::npu::YoloLayout::Yolov5),
        DetectorKind::Yolo(crate::hw::npu::YoloLayout::Yolov8),
        DetectorKind::Yolo(crate::hw::npu::YoloLayout::Yolox),
    ];

    /// The config spelling.
    pub fn as_str(self) -> &'static str {
        use crate::hw::npu::YoloLayout;
        match self {
            DetectorKind::SsdMobilenetV2 => "ssd-mobilenet-v2",
            DetectorKind::Yolo(YoloLayout::Yolov5) => "yolov5",
            DetectorKind::Yolo(YoloLayout::Yolov8) => "yolov8",
            DetectorKind::Yolo(YoloLayout::Yolox) => "yolox",
        }
    }

    /// Whether the model runs only on the NPU.
    pub fn needs_npu(self) -> bool {
        matches!(self, DetectorKind::Yolo(_))
    }
}

/// The event ring and tracker settings.
#[derive(Clone, Debug, PartialEq)]
pub struct EventsConfig {
    /// Events kept in memory; the oldest is evicted when full.
    pub ring_capacity: usize,
    /// An object unseen for this long has left; its return is a new event.
    pub track_timeout: Duration,
    /// Pictures copied for snapshots and waiting to be encoded; an event
    /// finding none free is stored without a snapshot (counted).
    pub snapshot_pool: usize,
    /// Largest snapshot; pictures are scaled down to fit.
    pub snapshot_width: u32,
    /// Largest snapshot height.
    pub snapshot_height: u32,
    /// JPEG quality (1..=100).
    pub snapshot_quality: u8,
    /// Events waiting for the events thread; when full the newest is
    /// dropped (counted).
    pub queue: usize,
}

/// The event store's bounds (`store::StoreLimits`) and batching.
#[derive(Clone, Debug, PartialEq)]
pub struct StoreConfig {
    /// Bytes the database and snapshots may use together.
    pub max_bytes: u64,
    /// Events kept at most.
    pub max_events: u64,
    /// Events at least this old are deleted.
    pub max_age: Duration,
    /// Events committed together at most.
    pub batch: usize,
    /// A batch is committed when its oldest event has waited this long.
    pub flush_after: Duration,
    /// The database's page cache.
    pub cache: u64,
}

/// Event clips (`crate::record`): how they are cut and the memory that
/// holds them on their way to disk.
#[derive(Clone, Debug, PartialEq)]
pub struct RecordConfig {
    /// Whether events get clips at all.
    pub enabled: bool,
    /// Stream time kept before an event.
    pub pre_roll: Duration,
    /// Stream time recorded after the last event of a clip.
    pub post_roll: Duration,
    /// Longest clip.
    pub max_length: Duration,
    /// A camera sending nothing for this long ends its clip.
    pub silence: Duration,
    /// A forward timestamp step this large ends a clip.
    pub jump: Duration,
    /// Bytes of compressed stream kept per camera (the pre-roll ring).
    pub ring_size: usize,
    /// Access units kept per camera at most.
    pub ring_units: usize,
    /// Stream time per MP4 fragment: what a crash can lose at most.
    pub fragment: Duration,
    /// Largest MP4 fragment in bytes (the writer's buffer).
    pub fragment_size: usize,
    /// What upstreams get: a link to the clip, or the clip itself.
    pub upstream: ClipDelivery,
}

/// How clips reach the upstreams.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClipDelivery {
    /// Events carry the clip's id; the upstream fetches
    /// `/api/events/<id>/clip.mp4` when it wants the clip.
    Link,
    /// Finished clips are sent to the upstreams after their events.
    Upload,
}

/// Upstream delivery.
#[derive(Clone, Debug, PartialEq)]
pub struct UpstreamConfig {
    /// The HTTP endpoint, if any.
    pub http: Option<HttpUpstream>,
    /// The MQTT broker, if any.
    pub mqtt: Option<MqttUpstream>,
    /// Undelivered bytes kept per upstream; the oldest undelivered events
    /// beyond it are dropped (counted).
    pub outbox_max_bytes: u64,
    /// First retry delay after a failure.
    pub retry_min: Duration,
    /// Longest retry delay.
    pub retry_max: Duration,
    /// Time allowed for one delivery (connect and answer).
    pub timeout: Duration,
    /// Attempts before an event the upstream refuses (HTTP 4xx) is given up.
    pub max_attempts: u32,
}

/// `[upstream.http]`.
#[derive(Clone, Debug, PartialEq)]
pub struct HttpUpstream {
    /// `http://host[:port]/path`.
    pub url: String,
    /// An extra header sent with every request, e.g. authorisation.
    pub header: Option<(String, String)>,
}

/// `[upstream.mqtt]`.
#[derive(Clone, Debug, PartialEq)]
pub struct MqttUpstream {
    /// Broker host.
    pub host: String,
    /// Broker port.
    pub port: u16,
    /// Topics are `<topic_prefix>/<camera>/event` and `.../snapshot`.
    pub topic_prefix: String,
    /// MQTT client id.
    pub client_id: String,
    /// User name.
    pub username: Option<String>,
    /// Password.
    pub password: Option<String>,
}

/// Limits of the web interface. Every one bounds memory or time: together
/// they make the server's footprint a function of the configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct WebConfig {
    /// Open connections at once; connection N+1 is closed at once.
    pub max_connections: usize,
    /// Concurrent `/events` streams; stream N+1 gets 503.
    pub max_sse_clients: usize,
    /// Messages queued per event stream; a slow reader loses the oldest.
    pub sse_queue: usize,
    /// Interval of SSE heartbeats (and of noticing a vanished client).
    pub heartbeat: Duration,
    /// Time allowed to send a request's headers.
    pub header_timeout: Duration,
    /// Time allowed to send a request's body.
    pub body_timeout: Duration,
    /// A connection with no request in flight is closed after this long.
    pub idle_timeout: Duration,
    /// Largest request body accepted.
    pub max_body: usize,
    /// Status, metrics and the API may be read without logging in.
    pub public_status: bool,
}

impl Default for WebConfig {
    fn default() -> Self {
        WebConfig {
            max_connections: 64,
            max_sse_clients: 8,
            sse_queue: 64,
            heartbeat: Duration::from_secs(5),
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_body: 64 << 10,
            public_status: true,
        }
    }
}

/// The RK3588 backends' settings.
#[derive(Clone, Debug, PartialEq)]
pub struct HardwareConfig {
    /// Directory of librockchip_mpp.so, librga.so and librknnrt.so (default:
    /// the dynamic loader's search path).
    pub lib_dir: Option<PathBuf>,
    /// MPP frame buffers per camera: reference pictures plus those the
    /// pipeline holds (Rockchip's example uses 24).
    pub decoder_buffers: usize,
    /// Where the device nodes are looked for (`/dev`; tests point it at a
    /// directory of stand-ins).
    pub dev_dir: PathBuf,
}

/// The hardware watchdog (`crate::watchdog`).
#[derive(Clone, Debug, PartialEq)]
pub struct WatchdogConfig {
    /// The device (`/dev/watchdog` on a board); none: no watchdog.
    pub device: Option<PathBuf>,
    /// Reset the board when not petted for this long.
    pub timeout: Duration,
}

/// One camera.
#[derive(Clone, Debug, PartialEq)]
pub struct CameraConfig {
    /// Unique name, used in logs, metrics labels and the API.
    pub name: String,
    /// `rtsp://...` or a local `.h264`/`.h265`/`.mp4` file.
    pub url: String,
    /// The codec if known in advance; otherwise taken from the stream.
    pub codec: Option<Codec>,
    /// Detections per second (frames in between are decoded, not detected).
    pub detect_fps: f32,
    /// Class names that raise events.
    pub classes: Vec<String>,
    /// Minimum detection score (0..1].
    pub min_score: f32,
    /// RTSP user name.
    pub username: Option<String>,
    /// RTSP password.
    pub password: Option<String>,
    /// Largest picture accepted (frame buffers are sized for it).
    pub max_width: u32,
    /// Largest picture height accepted.
    pub max_height: u32,
    /// Decoded frames held for detection at once.
    pub frame_pool: usize,
    /// Compressed access units buffered between source and decoder.
    pub packet_pool: usize,
    /// Bytes per access unit buffer (largest key frame accepted).
    pub packet_size: usize,
    /// First reconnect delay.
    pub reconnect_min: Duration,
    /// Longest reconnect delay.
    pub reconnect_max: Duration,
    /// No frame for this long means the stream is dead.
    pub stall_timeout: Duration,
    /// What to ask a V4L2 device for (`v4l://` cameras only).
    pub v4l2: Option<crate::source::v4l2::Request>,
}

impl CameraConfig {
    /// Whether the camera delivers compressed access units, which the
    /// pre-roll ring and clips need: every network and file camera does; a
    /// V4L2 camera only when it is configured for H.264 (raw and MJPEG
    /// pictures are never re-encoded).
    pub fn compressed(&self) -> bool {
        self.v4l2
            .as_ref()
            .is_none_or(|r| r.format == Some(crate::source::v4l2::PixelFormat::H264))
    }
}

/// A configuration error, located.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// The file (or `--camera` for command-line cameras).
    pub file: String,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// The key path, e.g. `camera[1].detect_fps`.
    pub key: String,
    /// What is wrong and what is accepted.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{}: ", self.file, line)?,
            None => write!(f, "{}: ", self.file)?,
        }
        if !self.key.is_empty() {
            write!(f, "`{}`: ", self.key)?;
        }
        f.write_str(&self.message)
    }
}

/// All errors found in one file (parsing stops at the first syntax or type
/// error; semantic checks report every problem).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl Config {
    /// Reads and validates the file at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigErrors(vec![ConfigError {
                file: file.clone(),
                line: None,
                key: String::new(),
                message: format!("cannot read: {e}"),
            }])
        })?;
        Config::parse(&text, &file)
    }

    /// Validates `text`; `file` names it in errors.
    pub fn parse(text: &str, file: &str) -> Result<Config, ConfigErrors> {
        let located = |key: String, span: Option<Range<usize>>, message: String| ConfigError {
            file: file.to_owned(),
            line: span.map(|s| line_of(text, s.start)),
            key,
            message,
        };
        let de = toml::Deserializer::parse(text).map_err(|e| {
            ConfigErrors(vec![located(
                String::new(),
                e.span(),
                e.message().to_owned(),
            )])
        })?;
        let raw: RawConfig = serde_path_to_error::deserialize(de).map_err(|e| {
            let key = e.path().to_string();
            let inner = e.into_inner();
            let key = if key == "." { String::new() } else { key };
            ConfigErrors(vec![located(key, inner.span(), inner.message().to_owned())])
        })?;
        let mut errors = Vec::new();
        let config = raw.validate(&mut |key: String, span: Range<usize>, message: String| {
            errors.push(located(key, Some(span), message))
        });
        if errors.is_empty() {
            Ok(config)
        } else {
            Err(ConfigErrors(errors))
        }
    }

    /// A configuration with every default and the given camera URLs, for
    /// `vigil run --camera URL ...`.
    pub fn from_urls(urls: &[String]) -> Result<Config, ConfigErrors> {
        let mut text = String::new();
        for url in urls {
            text.push_str("[[camera]]\nurl = ");
            push_toml_string(&mut text, url);
            text.push('\n');
        }
        Config::parse(&text, "--camera")
    }
}

/// Appends `s` as a TOML basic string (quoted, with escapes).
fn push_toml_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

// ---- The file's shape, as serde sees it ----

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    data_dir: Option<PathBuf>,
    listen: Option<Spanned<String>>,
    memory_limit: Option<ByteSize>,
    #[serde(default)]
    detector: RawDetector,
    #[serde(default)]
    runtime: RawRuntime,
    #[serde(default)]
    events: RawEvents,
    #[serde(default)]
    store: RawStore,
    #[serde(default)]
    upstream: RawUpstream,
    #[serde(default)]
    record: RawRecord,
    #[serde(default)]
    web: RawWeb,
    backend: Option<Spanned<String>>,
    #[serde(default)]
    hardware: RawHardware,
    #[serde(default)]
    watchdog: RawWatchdog,
    #[serde(default, rename = "camera")]
    cameras: Vec<RawCamera>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawDetector {
    kind: Option<Spanned<String>>,
    model: Option<PathBuf>,
    workers: Option<Count<1, 16>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawRuntime {
    io_threads: Option<Count<1, 8>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawEvents {
    ring_capacity: Option<Count<1, 1_000_000>>,
    track_timeout: Option<Seconds>,
    snapshot_pool: Option<Count<0, 64>>,
    snapshot_size: Option<Resolution>,
    snapshot_quality: Option<Count<1, 100>>,
    queue: Option<Count<1, 4096>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawStore {
    max_bytes: Option<Spanned<ByteSize>>,
    max_events: Option<Count<1, 100_000_000>>,
    max_age: Option<Age>,
    batch: Option<Count<1, 1024>>,
    flush_after: Option<Spanned<Seconds>>,
    cache: Option<Spanned<ByteSize>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawRecord {
    enabled: Option<bool>,
    pre_roll: Option<Spanned<Seconds>>,
    post_roll: Option<Spanned<Seconds>>,
    max_length: Option<Spanned<Seconds>>,
    silence: Option<Spanned<Seconds>>,
    jump: Option<Spanned<Seconds>>,
    ring_size: Option<Spanned<ByteSize>>,
    ring_units: Option<Count<16, 100_000>>,
    fragment: Option<Spanned<Seconds>>,
    fragment_size: Option<Spanned<ByteSize>>,
    upstream: Option<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawUpstream {
    http: Option<RawHttpUpstream>,
    mqtt: Option<RawMqttUpstream>,
    outbox_max_bytes: Option<Spanned<ByteSize>>,
    retry_min: Option<Spanned<Seconds>>,
    retry_max: Option<Spanned<Seconds>>,
    timeout: Option<Spanned<Seconds>>,
    max_attempts: Option<Count<1, 1000>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHttpUpstream {
    url: Spanned<String>,
    header: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMqttUpstream {
    url: Spanned<String>,
    topic_prefix: Option<Spanned<String>>,
    client_id: Option<Spanned<String>>,
    username: Option<String>,
    password: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawWatchdog {
    device: Option<PathBuf>,
    timeout: Option<Spanned<Seconds>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawHardware {
    lib_dir: Option<PathBuf>,
    decoder_buffers: Option<Count<4, 64>>,
    dev_dir: Option<PathBuf>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawWeb {
    max_connections: Option<Count<4, 4096>>,
    max_sse_clients: Option<Count<0, 256>>,
    sse_queue: Option<Count<4, 4096>>,
    heartbeat: Option<Spanned<Seconds>>,
    header_timeout: Option<Spanned<Seconds>>,
    body_timeout: Option<Spanned<Seconds>>,
    idle_timeout: Option<Spanned<Seconds>>,
    max_body: Option<Spanned<ByteSize>>,
    public_status: Option<bool>,
}

impl RawWeb {
    fn validate(self, report: &mut Report<'_>) -> WebConfig {
        let d = WebConfig::default();
        let max_body = match self.max_body {
            None => d.max_body,
            Some(b) => {
                let span = b.span();
                let v = b.into_inner().0;
                if !(1024..=16 << 20).contains(&v) {
                    report(
                        "web.max_body".into(),
                        span,
                        "must be between 1KiB and 16MiB".into(),
                    );
                }
                v as usize
            }
        };
        WebConfig {
            max_connections: self.max_connections.map_or(d.max_connections, |c| c.0),
            max_sse_clients: self.max_sse_clients.map_or(d.max_sse_clients, |c| c.0),
            sse_queue: self.sse_queue.map_or(d.sse_queue, |c| c.0),
            heartbeat: web_duration("heartbeat", self.heartbeat, d.heartbeat, report),
            header_timeout: web_duration(
                "header_timeout",
                self.header_timeout,
                d.header_timeout,
                report,
            ),
            body_timeout: web_duration("body_timeout", self.body_timeout, d.body_timeout, report),
            idle_timeout: web_duration("idle_timeout", self.idle_timeout, d.idle_timeout, report),
            max_body,
            public_status: self.public_status.unwrap_or(d.public_status),
        }
    }
}

/// A `[web]` duration, checked to be between 100ms and one hour.
fn web_duration(
    key: &str,
    value: Option<Spanned<Seconds>>,
    default: Duration,
    report: &mut Report<'_>,
) -> Duration {
    let Some(v) = value else { return default };
    let span = v.span();
    let d = v.into_inner().0;
    if !(Duration::from_millis(100)..=Duration::from_secs(3600)).contains(&d) {
        report(
            format!("web.{key}"),
            span,
            "must be between 100ms and 1h".into(),
        );
    }
    d
}

/// A duration checked to lie in `min..=max`, reported under `key`.
fn bounded_duration(
    key: &str,
    value: Option<Spanned<Seconds>>,
    default: Duration,
    (min, max): (Duration, Duration),
    report: &mut Report<'_>,
) -> Duration {
    let Some(v) = value else { return default };
    let span = v.span();
    let d = v.into_inner().0;
    if !(min..=max).contains(&d) {
        report(
            key.into(),
            span,
            format!("must be between {min:?} and {max:?}"),
        );
        return default;
    }
    d
}

/// A size checked to lie in `min..=max`, reported under `key`.
fn bounded_size(
    key: &str,
    value: Option<Spanned<ByteSize>>,
    default: u64,
    (min, max): (u64, u64),
    report: &mut Report<'_>,
) -> u64 {
    let Some(v) = value else { return default };
    let span = v.span();
    let b = v.into_inner().0;
    if !(min..=max).contains(&b) {
        report(
            key.into(),
            span,
            format!("must be between {} and {}", show_size(min), show_size(max)),
        );
        return default;
    }
    b
}

fn show_size(b: u64) -> String {
    if b >= 1 << 30 && b.is_multiple_of(1 << 30) {
        format!("{}GiB", b >> 30)
    } else if b >= 1 << 20 && b.is_multiple_of(1 << 20) {
        format!("{}MiB", b >> 20)
    } else if b >= 1 << 10 && b.is_multiple_of(1 << 10) {
        format!("{}KiB", b >> 10)
    } else {
        format!("{b}B")
    }
}

impl RawStore {
    fn validate(self, report: &mut Report<'_>) -> StoreConfig {
        StoreConfig {
            max_bytes: bounded_size(
                "store.max_bytes",
                self.max_bytes,
                128 << 20,
                (4 << 20, 1 << 40),
                report,
            ),
            max_events: self.max_events.map_or(100_000, |c| c.0 as u64),
            max_age: self
                .max_age
                .map_or(Duration::from_secs(30 * 86_400), |a| a.0),
            batch: self.batch.map_or(64, |c| c.0),
            flush_after: bounded_duration(
                "store.flush_after",
                self.flush_after,
                Duration::from_secs(1),
                (Duration::from_millis(10), Duration::from_secs(60)),
                report,
            ),
            cache: bounded_size(
                "store.cache",
                self.cache,
                4 << 20,
                (256 << 10, 256 << 20),
                report,
            ),
        }
    }
}

impl RawRecord {
    fn validate(self, cameras: &[CameraConfig], report: &mut Report<'_>) -> RecordConfig {
        let secs = Duration::from_secs;
        let mut d = |key: &str, v, default, range| bounded_duration(key, v, default, range, report);
        let pre_roll = d(
            "record.pre_roll",
            self.pre_roll,
            secs(5),
            (secs(0), secs(60)),
        );
        let post_roll = d(
            "record.post_roll",
            self.post_roll,
            secs(5),
            (secs(0), secs(300)),
        );
        let max_length = d(
            "record.max_length",
            self.max_length,
            secs(60),
            (secs(1), secs(3600)),
        );
        let silence = d(
            "record.silence",
            self.silence,
            secs(5),
            (secs(1), secs(300)),
        );
        let jump = d("record.jump", self.jump, secs(10), (secs(1), secs(3600)));
        let fragment = d(
            "record.fragment",
            self.fragment,
            secs(1),
            (Duration::from_millis(200), secs(10)),
        );
        let largest_packet = cameras.iter().map(|c| c.packet_size).max().unwrap_or(0) as u64;
        let fragment_span = self.fragment_size.as_ref().map(|f| f.span());
        let fragment_size = bounded_size(
            "record.fragment_size",
            self.fragment_size,
            4 << 20,
            (64 << 10, 256 << 20),
            report,
        );
        // Every unit a camera accepts must fit an empty fragment.
        if let Some(span) = fragment_span.filter(|_| fragment_size < largest_packet + 4096) {
            report(
                "record.fragment_size".into(),
                span,
                format!(
                    "must be at least the largest camera packet_size ({}) plus 4KiB",
                    show_size(largest_packet)
                ),
            );
        }
        let ring_size = bounded_size(
            "record.ring_size",
            self.ring_size,
            8 << 20,
            (256 << 10, 1 << 30),
            report,
        );
        let upstream = match &self.upstream {
            None => ClipDelivery::Link,
            Some(u) => match u.get_ref().as_str() {
                "link" => ClipDelivery::Link,
                "upload" => ClipDelivery::Upload,
                other => {
                    report(
                        "record.upstream".into(),
                        u.span(),
                        format!("unknown clip delivery `{other}`; use link or upload"),
                    );
                    ClipDelivery::Link
                }
            },
        };
        RecordConfig {
            enabled: self.enabled.unwrap_or(true),
            pre_roll,
            post_roll,
            max_length,
            silence,
            jump,
            ring_size: ring_size as usize,
            ring_units: self.ring_units.map_or(2048, |c| c.0),
            fragment,
            fragment_size: (fragment_size as usize).max(largest_packet as usize + 4096),
            upstream,
        }
    }
}

impl RawUpstream {
    fn validate(self, store: &StoreConfig, report: &mut Report<'_>) -> UpstreamConfig {
        let outbox_max_bytes = match self.outbox_max_bytes {
            Some(b) if b.get_ref().0 > store.max_bytes => {
                report(
                    "upstream.outbox_max_bytes".into(),
                    b.span(),
                    format!(
                        "must not exceed store.max_bytes ({}): undelivered events live in the store",
                        show_size(store.max_bytes)
                    ),
                );
                store.max_bytes / 2
            }
            b => bounded_size(
                "upstream.outbox_max_bytes",
                b,
                store.max_bytes / 2,
                (1 << 20, 1 << 40),
                report,
            ),
        };
        let retry_min = bounded_duration(
            "upstream.retry_min",
            self.retry_min,
            Duration::from_secs(1),
            (Duration::from_millis(100), Duration::from_secs(600)),
            report,
        );
        let retry_max = match self.retry_max {
            Some(r) if r.get_ref().0 < retry_min => {
                report(
                    "upstream.retry_max".into(),
                    r.span(),
                    "must not be shorter than upstream.retry_min".into(),
                );
                retry_min
            }
            r => bounded_duration(
                "upstream.retry_max",
                r,
                Duration::from_secs(60).max(retry_min),
                (Duration::from_millis(100), Duration::from_secs(3600)),
                report,
            ),
        };
        UpstreamConfig {
            http: self.http.map(|h| h.validate(report)),
            mqtt: self.mqtt.map(|m| m.validate(report)),
            outbox_max_bytes,
            retry_min,
            retry_max,
            timeout: bounded_duration(
                "upstream.timeout",
                self.timeout,
                Duration::from_secs(10),
                (Duration::from_millis(100), Duration::from_secs(300)),
                report,
            ),
            max_attempts: self.max_attempts.map_or(5, |c| c.0 as u32),
        }
    }
}

impl RawHttpUpstream {
    fn validate(self, report: &mut Report<'_>) -> HttpUpstream {
        let url = self.url.get_ref().clone();
        match url::Url::parse(&url) {
            Ok(u) if u.scheme() == "http" && u.host_str().is_some() => {}
            Ok(u) if u.scheme() == "https" => report(
                "upstream.http.url".into(),
                self.url.span(),
                "https is not supported by this build (no TLS in the firmware); use http:// on a trusted network".into(),
            ),
            _ => report(
                "upstream.http.url".into(),
                self.url.span(),
                format!("`{url}` is not a URL such as http://host:8000/events"),
            ),
        }
        let header = self.header.and_then(|h| {
            let parsed = h.get_ref().split_once(':').and_then(|(n, v)| {
                let (n, v) = (n.trim(), v.trim());
                let token = !n.is_empty()
                    && n.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
                let value = v.bytes().all(|b| b == b'\t' || (b' '..=b'~').contains(&b));
                (token && value).then(|| (n.to_string(), v.to_string()))
            });
            if parsed.is_none() {
                report(
                    "upstream.http.header".into(),
                    h.span(),
                    "must be `Name: value`, e.g. \"Authorization: Bearer abc\"".into(),
                );
            }
            parsed
        });
        HttpUpstream { url, header }
    }
}

impl RawMqttUpstream {
    fn validate(self, report: &mut Report<'_>) -> MqttUpstream {
        let raw = self.url.get_ref();
        let (host, port) = match url::Url::parse(raw) {
            Ok(u) if u.scheme() == "mqtt" && u.host_str().is_some() => (
                u.host_str().unwrap_or_default().to_string(),
                u.port().unwrap_or(1883),
            ),
            Ok(u) if u.scheme() == "mqtts" => {
                report(
                    "upstream.mqtt.url".into(),
                    self.url.span(),
                    "mqtts is not supported by this build (no TLS in the firmware); use mqtt:// on a trusted network".into(),
                );
                (String::new(), 1883)
            }
            _ => {
                report(
                    "upstream.mqtt.url".into(),
                    self.url.span(),
                    format!("`{raw}` is not a broker URL such as mqtt://broker:1883"),
                );
                (String::new(), 1883)
            }
        };
        let topic_prefix = match self.topic_prefix {
            None => "vigil".to_string(),
            Some(t) => {
                let v = t.get_ref();
                if v.is_empty() || v.len() > 128 || v.contains(['+', '#', '\0']) || v.ends_with('/')
                {
                    report(
                        "upstream.mqtt.topic_prefix".into(),
                        t.span(),
                        "must be 1-128 characters without `+`, `#` or a trailing `/`".into(),
                    );
                }
                v.clone()
            }
        };
        let client_id = match self.client_id {
            None => "vigil".to_string(),
            Some(c) => {
                let v = c.get_ref();
                if v.is_empty() || v.len() > 64 {
                    report(
                        "upstream.mqtt.client_id".into(),
                        c.span(),
                        "must be 1-64 characters".into(),
                    );
                }
                v.clone()
            }
        };
        MqttUpstream {
            host,
            port,
            topic_prefix,
            client_id,
            username: self.username,
            password: self.password,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCamera {
    name: Option<Spanned<String>>,
    url: Option<Spanned<String>>,
    /// A V4L2 device node, the same as `url = "v4l://<device>"`.
    device: Option<Spanned<String>>,
    /// V4L2 only: nv12, yuyv, mjpeg, h264 or auto.
    format: Option<Spanned<String>>,
    /// V4L2 only: the frame size to ask for.
    size: Option<Resolution>,
    /// V4L2 only: frames per second to ask for.
    fps: Option<Count<1, 240>>,
    /// V4L2 only: mmap'ed driver buffers.
    buffers: Option<Count<2, 32>>,
    codec: Option<Spanned<String>>,
    detect_fps: Option<Ranged>,
    classes: Option<Vec<Spanned<String>>>,
    min_score: Option<Ranged>,
    username: Option<String>,
    password: Option<String>,
    max_resolution: Option<Resolution>,
    frame_pool: Option<Count<1, 256>>,
    packet_pool: Option<Count<2, 1024>>,
    packet_size: Option<ByteSize>,
    reconnect_min: Option<Seconds>,
    reconnect_max: Option<Seconds>,
    stall_timeout: Option<Seconds>,
}

type Report<'a> = dyn FnMut(String, Range<usize>, String) + 'a;

impl RawConfig {
    fn validate(self, report: &mut Report<'_>) -> Config {
        let listen = match &self.listen {
            None => SocketAddr::from(([127, 0, 0, 1], 8080)),
            Some(s) => s.get_ref().parse().unwrap_or_else(|_| {
                report(
                    "listen".into(),
                    s.span(),
                    format!(
                        "`{}` is not an address:port such as 127.0.0.1:8080",
                        s.get_ref()
                    ),
                );
                SocketAddr::from(([127, 0, 0, 1], 8080))
            }),
        };
        let kind = match &self.detector.kind {
            None => DetectorKind::SsdMobilenetV2,
            Some(k) => match DetectorKind::ALL.iter().find(|d| d.as_str() == k.get_ref()) {
                Some(kind) => *kind,
                None => {
                    let names: Vec<&str> = DetectorKind::ALL.iter().map(|d| d.as_str()).collect();
                    report(
                        "detector.kind".into(),
                        k.span(),
                        format!(
                            "unknown detector `{}`; supported: {}",
                            k.get_ref(),
                            names.join(", ")
                        ),
                    );
                    DetectorKind::SsdMobilenetV2
                }
            },
        };
        let backend = match &self.backend {
            None => crate::hw::BackendChoice::Auto,
            Some(b) => match b.get_ref().as_str() {
                "auto" => crate::hw::BackendChoice::Auto,
                "hardware" => crate::hw::BackendChoice::Hardware,
                "software" => crate::hw::BackendChoice::Software,
                other => {
                    report(
                        "backend".into(),
                        b.span(),
                        format!("unknown backend `{other}`; use auto, hardware or software"),
                    );
                    crate::hw::BackendChoice::Auto
                }
            },
        };
        if let (Some(k), crate::hw::BackendChoice::Software) = (&self.detector.kind, backend) {
            if kind.needs_npu() {
                report(
                    "detector.kind".into(),
                    k.span(),
                    format!(
                        "`{}` models run on the RK3588 NPU, which backend = \"software\" does not use",
                        kind.as_str()
                    ),
                );
            }
        }
        let store = self.store.validate(report);
        let mut cameras: Vec<CameraConfig> = Vec::with_capacity(self.cameras.len());
        for (i, raw) in self.cameras.into_iter().enumerate() {
            let (camera, name_span) = raw.validate(i, report);
            if let Some(first) = cameras.iter().position(|c| c.name == camera.name) {
                report(
                    format!("camera[{i}].name"),
                    name_span,
                    format!(
                        "duplicate camera name `{}` (also camera[{first}])",
                        camera.name
                    ),
                );
            }
            cameras.push(camera);
        }
        Config {
            data_dir: self
                .data_dir
                .unwrap_or_else(|| PathBuf::from("/var/lib/vigil")),
            listen,
            memory_limit: self.memory_limit.map_or(512 << 20, |b| b.0),
            detector: DetectorConfig {
                kind,
                model: self
                    .detector
                    .model
                    .unwrap_or_else(crate::detect::default_model_path),
                workers: self.detector.workers.map_or(1, |c| c.0),
            },
            io_threads: self.runtime.io_threads.map_or(1, |c| c.0),
            events: EventsConfig {
                ring_capacity: self.events.ring_capacity.map_or(1024, |c| c.0),
                track_timeout: self
                    .events
                    .track_timeout
                    .map_or(Duration::from_secs(5), |s| s.0),
                snapshot_pool: self.events.snapshot_pool.map_or(4, |c| c.0),
                snapshot_width: self.events.snapshot_size.map_or(1280, |r| r.0),
                snapshot_height: self.events.snapshot_size.map_or(720, |r| r.1),
                snapshot_quality: self.events.snapshot_quality.map_or(80, |c| c.0 as u8),
                queue: self.events.queue.map_or(64, |c| c.0),
            },
            store: store.clone(),
            upstream: self.upstream.validate(&store, report),
            record: self.record.validate(&cameras, report),
            web: self.web.validate(report),
            backend,
            hardware: HardwareConfig {
                lib_dir: self.hardware.lib_dir,
                decoder_buffers: self.hardware.decoder_buffers.map_or(24, |c| c.0),
                dev_dir: self
                    .hardware
                    .dev_dir
                    .unwrap_or_else(|| PathBuf::from("/dev")),
            },
            watchdog: WatchdogConfig {
                device: self.watchdog.device,
                timeout: match &self.watchdog.timeout {
                    None => Duration::from_secs(30),
                    Some(t) if (5..=600).contains(&t.get_ref().0.as_secs()) => t.get_ref().0,
                    Some(t) => {
                        report(
                            "watchdog.timeout".into(),
                            t.span(),
                            "must be between 5s and 10m (vigil pets the watchdog every second)"
                                .into(),
                        );
                        Duration::from_secs(30)
                    }
                },
            },
            cameras,
        }
    }
}

impl RawCamera {
    /// The validated camera and the span of its name (or URL when unnamed).
    fn validate(self, i: usize, report: &mut Report<'_>) -> (CameraConfig, Range<usize>) {
        let key = |k: &str| format!("camera[{i}].{k}");
        let (url, url_span) = match (self.url, &self.device) {
            (Some(u), None) => {
                let span = u.span();
                (u.into_inner(), span)
            }
            (None, Some(d)) => (format!("v4l://{}", d.get_ref()), d.span()),
            (Some(u), Some(d)) => {
                report(
                    key("device"),
                    d.span(),
                    "give either `url` or `device`, not both".into(),
                );
                let span = u.span();
                (u.into_inner(), span)
            }
            (None, None) => {
                let span = self.name.as_ref().map_or(0..0, |n| n.span());
                report(
                    key("url"),
                    span.clone(),
                    "missing: every camera needs a `url` (rtsp://, a file, v4l:///dev/videoN) or a V4L2 `device`".into(),
                );
                (String::new(), span)
            }
        };
        let name = match &self.name {
            Some(n) => {
                let ok = !n.get_ref().is_empty()
                    && n.get_ref().len() <= 64
                    && n.get_ref()
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
                if !ok {
                    report(
                        key("name"),
                        n.span(),
                        format!(
                            "`{}` must be 1-64 characters of letters, digits, `-` or `_`",
                            n.get_ref()
                        ),
                    );
                }
                n.get_ref().clone()
            }
            None => format!("camera-{}", i + 1),
        };
        let name_span = self.name.as_ref().map_or(url_span.clone(), |n| n.span());
        let codec = match &self.codec {
            None => None,
            Some(c) => match c.get_ref().as_str() {
                "auto" => None,
                "h264" => Some(Codec::H264),
                "h265" | "hevc" => Some(Codec::H265),
                other => {
                    report(
                        key("codec"),
                        c.span(),
                        format!("unknown codec `{other}`; use auto, h264 or h265"),
                    );
                    None
                }
            },
        };
        let kind = match source::classify(&url, codec) {
            Ok(kind) => Some(kind),
            Err(e) => {
                if !url.is_empty() {
                    report(key("url"), url_span.clone(), e.to_string());
                }
                None
            }
        };
        let is_v4l2 = matches!(kind, Some(source::SourceKind::V4l2(_)));
        let v4l2_only = |k: &str, span: Range<usize>, report: &mut Report<'_>| {
            if !is_v4l2 {
                report(
                    key(k),
                    span,
                    format!("`{k}` is only for V4L2 cameras (`device`, or a v4l:// url)"),
                );
            }
        };
        let format = match &self.format {
            None => None,
            Some(f) => {
                v4l2_only("format", f.span(), report);
                match f.get_ref().as_str() {
                    "auto" => None,
                    name => match crate::source::v4l2::PixelFormat::parse(name) {
                        Some(p) => Some(p),
                        None => {
                            report(
                                key("format"),
                                f.span(),
                                format!("unknown V4L2 format `{name}`; use auto, nv12, yuyv, mjpeg or h264"),
                            );
                            None
                        }
                    },
                }
            }
        };
        for (k, given) in [
            ("size", self.size.is_some()),
            ("fps", self.fps.is_some()),
            ("buffers", self.buffers.is_some()),
        ] {
            if given {
                v4l2_only(k, url_span.clone(), report);
            }
        }
        let v4l2 = is_v4l2.then(|| crate::source::v4l2::Request {
            format,
            size: self.size.map(|r| (r.0, r.1)),
            fps: self.fps.map(|c| c.0 as u32),
            buffers: self.buffers.map_or(4, |c| c.0 as u32),
        });
        let detect_fps = self.detect_fps.map_or(5.0, |r| {
            if !(0.1..=60.0).contains(&r.value) {
                report(
                    key("detect_fps"),
                    r.span.clone(),
                    format!("must be between 0.1 and 60, got {}", r.value),
                );
            }
            r.value as f32
        });
        let min_score = self.min_score.map_or(0.5, |r| {
            if !(r.value > 0.0 && r.value <= 1.0) {
                report(
                    key("min_score"),
                    r.span.clone(),
                    format!("must be in (0, 1], got {}", r.value),
                );
            }
            r.value as f32
        });
        let classes = match self.classes {
            None => DEFAULT_CLASSES.iter().map(|s| s.to_string()).collect(),
            Some(list) => {
                for c in &list {
                    if crate::detect::coco::CocoLabels::Ids91
                        .id(c.get_ref())
                        .is_none()
                    {
                        report(
                            key("classes"),
                            c.span(),
                            format!("unknown class `{}`; classes are COCO names such as person, car, dog", c.get_ref()),
                        );
                    }
                }
                list.into_iter().map(Spanned::into_inner).collect()
            }
        };
        let (max_width, max_height) = self.max_resolution.map_or((1920, 1080), |r| (r.0, r.1));
        if let Some((w, h)) = v4l2.as_ref().and_then(|r| r.size) {
            if w > max_width || h > max_height {
                report(
                    key("size"),
                    url_span.clone(),
                    format!("{w}x{h} is larger than max_resolution {max_width}x{max_height} (the camera's frame buffers)"),
                );
            }
        }
        let reconnect_min = self.reconnect_min.map_or(Duration::from_secs(1), |s| s.0);
        let reconnect_max = self.reconnect_max.map_or(Duration::from_secs(30), |s| s.0);
        if reconnect_max < reconnect_min {
            report(
                key("reconnect_max"),
                url_span.clone(),
                format!("must not be below reconnect_min ({reconnect_min:?})"),
            );
        }
        let packet_size = self.packet_size.map_or(1 << 20, |b| b.0);
        if !(4096..=64 << 20).contains(&packet_size) {
            report(
                key("packet_size"),
                url_span,
                "must be between 4KiB and 64MiB".into(),
            );
        }
        let camera = CameraConfig {
            name,
            url,
            codec,
            detect_fps,
            classes,
            min_score,
            username: self.username,
            password: self.password,
            max_width,
            max_height,
            frame_pool: self.frame_pool.map_or(4, |c| c.0),
            packet_pool: self.packet_pool.map_or(8, |c| c.0),
            packet_size: packet_size as usize,
            reconnect_min,
            reconnect_max,
            stall_timeout: self.stall_timeout.map_or(Duration::from_secs(10), |s| s.0),
            v4l2,
        };
        (camera, name_span)
    }
}

// ---- Value types that check themselves while parsing, so errors carry spans ----

/// An integer in `MIN..=MAX`.
#[derive(Clone, Copy)]
struct Count<const MIN: usize, const MAX: usize>(usize);

impl<'de, const MIN: usize, const MAX: usize> Deserialize<'de> for Count<MIN, MAX> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = i64::deserialize(d)?;
        if v < MIN as i64 || v > MAX as i64 {
            return Err(de::Error::custom(format!(
                "must be between {MIN} and {MAX}, got {v}"
            )));
        }
        Ok(Count(v as usize))
    }
}

/// A number with its span, range-checked by the caller.
struct Ranged {
    value: f64,
    span: Range<usize>,
}

impl<'de> Deserialize<'de> for Ranged {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Num {
            F(f64),
            I(i64),
        }
        let s = Spanned::<Num>::deserialize(d)?;
        let span = s.span();
        let value = match s.into_inner() {
            Num::F(f) => f,
            Num::I(i) => i as f64,
        };
        Ok(Ranged { value, span })
    }
}

/// A byte count: an integer, or a string with a unit ("512MiB", "64KiB", "1GB").
#[derive(Clone, Copy)]
struct ByteSize(u64);

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            I(i64),
            S(String),
        }
        match Raw::deserialize(d).map_err(|_| {
            de::Error::custom("expected a size: bytes as an integer or a string like \"512MiB\"")
        })? {
            Raw::I(i) if i >= 0 => Ok(ByteSize(i as u64)),
            Raw::I(i) => Err(de::Error::custom(format!(
                "size must not be negative, got {i}"
            ))),
            Raw::S(s) => parse_size(&s).map(ByteSize).map_err(de::Error::custom),
        }
    }
}

/// Parses "512MiB", "64 KiB", "1GB", "4096".
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a size such as \"512MiB\""))?;
    let mult: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "KB" | "kB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        other => {
            return Err(format!(
                "unknown size unit `{other}` in `{s}`; use B, KiB, MiB, GiB, KB, MB or GB"
            ))
        }
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("size `{s}` is too large"))
}

/// A duration written with a unit: "500ms", "10s", "2m", "1h".
#[derive(Clone, Copy)]
struct Seconds(Duration);

impl<'de> Deserialize<'de> for Seconds {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d).map_err(|_| {
            de::Error::custom("expected a duration string such as \"500ms\", \"10s\" or \"2m\"")
        })?;
        parse_duration(&s).map(Seconds).map_err(de::Error::custom)
    }
}

/// A retention age: a duration that may also be written in days ("30d"),
/// from one minute to ten years.
#[derive(Clone, Copy)]
struct Age(Duration);

impl<'de> Deserialize<'de> for Age {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)
            .map_err(|_| de::Error::custom("expected an age such as \"30d\" or \"12h\""))?;
        let bad =
            || format!("`{s}` is not an age such as \"30d\" or \"12h\" (units ms, s, m, h, d)");
        let t = s.trim();
        let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        let n: u64 = num.parse().map_err(|_| de::Error::custom(bad()))?;
        let unit_ms: u64 = match unit {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            _ => return Err(de::Error::custom(bad())),
        };
        let age = Duration::from_millis(n.saturating_mul(unit_ms));
        if !(Duration::from_secs(60)..=Duration::from_secs(3650 * 86_400)).contains(&age) {
            return Err(de::Error::custom(format!(
                "age `{s}` must be between 1m and 3650d"
            )));
        }
        Ok(Age(age))
    }
}

/// Parses "500ms", "10s", "2m", "1h" (whole numbers).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a duration such as \"500ms\" or \"10s\""))?;
    let d = match unit {
        "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n.saturating_mul(60)),
        "h" => Duration::from_secs(n.saturating_mul(3600)),
        "" => return Err(format!("duration `{s}` needs a unit: ms, s, m or h")),
        other => {
            return Err(format!(
                "unknown duration unit `{other}` in `{s}`; use ms, s, m or h"
            ))
        }
    };
    if d > Duration::from_secs(86_400) {
        return Err(format!("duration `{s}` is longer than a day"));
    }
    Ok(d)
}

/// "WIDTHxHEIGHT", each 16..=8192 and even.
#[derive(Clone, Copy)]
struct Resolution(u32, u32);

impl<'de> Deserialize<'de> for Resolution {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)
            .map_err(|_| de::Error::custom("expected a resolution string such as \"1920x1080\""))?;
        let bad = || {
            de::Error::custom(format!(
                "`{s}` is not a resolution such as \"1920x1080\" (16..8192, even)"
            ))
        };
        let (w, h) = s.split_once('x').ok_or_else(bad)?;
        let (w, h): (u32, u32) = (
            w.trim().parse().map_err(|_| bad())?,
            h.trim().parse().map_err(|_| bad())?,
        );
        let ok = |v: u32| (16..=8192).contains(&v) && v.is_multiple_of(2);
        if !ok(w) || !ok(h) {
            return Err(bad());
        }
        Ok(Resolution(w, h))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> ConfigErrors {
        Config::parse(text, "t.toml").unwrap_err()
    }

    #[test]
    fn a_camera_needs_only_a_url() {
        let c = Config::parse("[[camera]]\nurl = \"rtsp://10.0.0.5/stream1\"\n", "t.toml").unwrap();
        assert_eq!(c.cameras.len(), 1);
        let cam = &c.cameras[0];
        assert_eq!(cam.name, "camera-1");
        assert_eq!(cam.detect_fps, 5.0);
        assert_eq!(cam.classes.len(), DEFAULT_CLASSES.len());
        assert_eq!((cam.max_width, cam.max_height), (1920, 1080));
        assert_eq!(c.memory_limit, 512 << 20);
    }

    #[test]
    fn unknown_keys_name_key_and_line() {
        let e = err("[[camera]]\nurl = \"a.h264\"\n\n[[camera]]\nurl = \"b.h264\"\nfsp = 3\n");
        let e = &e.0[0];
        assert_eq!(e.line, Some(6), "{e}");
        assert!(e.key.starts_with("camera[1]"), "{e}");
        assert!(e.message.contains("unknown field `fsp`"), "{e}");
    }

    #[test]
    fn type_and_range_errors_name_key_and_line() {
        let e = err("memory_limit = \"12 parsecs\"\n");
        assert_eq!(
            (e.0[0].line, e.0[0].key.as_str()),
            (Some(1), "memory_limit"),
            "{e}"
        );
        let e = err("[[camera]]\nurl = \"a.h264\"\nframe_pool = 0\n");
        assert_eq!(e.0[0].line, Some(3), "{e}");
        assert_eq!(e.0[0].key, "camera[0].frame_pool");
        let e = err("[[camera]]\nurl = \"a.h264\"\nreconnect_min = \"5\"\n");
        assert!(e.0[0].message.contains("needs a unit"), "{e}");
        let e = err("[[camera]]\nurl = \"a.h264\"\nmax_resolution = \"1920x\"\n");
        assert_eq!(e.0[0].key, "camera[0].max_resolution", "{e}");
    }

    #[test]
    fn semantic_errors_are_all_reported_with_lines() {
        let text = "listen = \"nowhere\"\n\
                    [[camera]]\nname = \"a\"\nurl = \"ftp://x\"\ndetect_fps = 0\nclasses = [\"person\", \"unicorn\"]\n\
                    [[camera]]\nname = \"a\"\nurl = \"b.h264\"\ncodec = \"vp9\"\nmin_score = 1.5\n";
        let e = err(text);
        let keys: Vec<(&str, Option<usize>)> =
            e.0.iter().map(|e| (e.key.as_str(), e.line)).collect();
        assert!(keys.contains(&("listen", Some(1))), "{e}");
        assert!(keys.contains(&("camera[0].url", Some(4))), "{e}");
        assert!(keys.contains(&("camera[0].detect_fps", Some(5))), "{e}");
        assert!(keys.contains(&("camera[0].classes", Some(6))), "{e}");
        assert!(keys.contains(&("camera[1].name", Some(8))), "{e}");
        assert!(keys.contains(&("camera[1].codec", Some(10))), "{e}");
        assert!(keys.contains(&("camera[1].min_score", Some(11))), "{e}");
    }

    #[test]
    fn v4l2_cameras_take_a_device_or_url_and_their_own_keys() {
        use crate::source::v4l2::{PixelFormat, Request};
        let c = Config::parse(
            "[[camera]]\ndevice = \"/dev/video2\"\nformat = \"mjpeg\"\nsize = \"640x480\"\nfps = 30\nbuffers = 6\n\
             [[camera]]\nurl = \"v4l:///dev/video0\"\n[[camera]]\nurl = \"a.h264\"\n",
            "t",
        )
        .unwrap();
        assert_eq!(c.cameras[0].url, "v4l:///dev/video2");
        assert_eq!(
            c.cameras[0].v4l2,
            Some(Request {
                format: Some(PixelFormat::Mjpeg),
                size: Some((640, 480)),
                fps: Some(30),
                buffers: 6
            })
        );
        assert_eq!(
            c.cameras[1].v4l2,
            Some(Request {
                format: None,
                size: None,
                fps: None,
                buffers: 4
            })
        );
        assert_eq!(c.cameras[2].v4l2, None);
        // Clips need compressed video: raw V4L2 cameras have none.
        assert!(!c.cameras[0].compressed() && !c.cameras[1].compressed());
        assert!(c.cameras[2].compressed());
        let h264 = Config::parse(
            "[[camera]]\ndevice = \"/dev/video0\"\nformat = \"h264\"\n",
            "t",
        )
        .unwrap();
        assert!(h264.cameras[0].compressed());

        let located = |text: &str| -> Vec<(String, Option<usize>)> {
            err(text)
                .0
                .iter()
                .map(|e| (e.key.clone(), e.line))
                .collect()
        };
        let k = |key: &str, line: usize| (key.to_string(), Some(line));
        assert!(
            located("[[camera]]\nurl = \"a.h264\"\n\nformat = \"nv12\"\n")
                .contains(&k("camera[0].format", 4))
        );
        assert!(
            located("[[camera]]\ndevice = \"/dev/video0\"\nformat = \"rgb24\"\n")
                .contains(&k("camera[0].format", 3))
        );
        assert!(located("[[camera]]\nurl = \"v4l://video0\"\n").contains(&k("camera[0].url", 2)));
        assert!(
            located("[[camera]]\nurl = \"a.h264\"\ndevice = \"/dev/video0\"\n")
                .contains(&k("camera[0].device", 3))
        );
        assert!(located("[[camera]]\nname = \"x\"\n").contains(&k("camera[0].url", 2)));
        let e = err("[[camera]]\ndevice = \"/dev/video0\"\nsize = \"3840x2160\"\n");
        assert!(
            e.to_string()
                .contains("larger than max_resolution 1920x1080"),
            "{e}"
        );
        let e = err("[[camera]]\ndevice = \"/dev/video0\"\nbuffers = 1\n");
        assert!(e.to_string().contains("between 2 and 32"), "{e}");
    }

    #[test]
    fn web_limits_have_defaults_and_located_errors() {
        let c = Config::parse("[[camera]]\nurl = \"a.h264\"\n", "t").unwrap();
        assert_eq!(c.web, WebConfig::default());
        let c = Config::parse(
            "[web]\nmax_connections = 16\nheartbeat = \"2s\"\nmax_body = \"8KiB\"\npublic_status = false\n",
            "t",
        )
        .unwrap();
        assert_eq!(
            (
                c.web.max_connections,
                c.web.heartbeat,
                c.web.max_body,
                c.web.public_status
            ),
            (16, Duration::from_secs(2), 8192, false)
        );
        let e = err("[web]\nheartbeat = \"0s\"\nmax_body = \"1GiB\"\n");
        let keys: Vec<(&str, Option<usize>)> =
            e.0.iter().map(|e| (e.key.as_str(), e.line)).collect();
        assert!(keys.contains(&("web.heartbeat", Some(2))), "{e}");
        assert!(keys.contains(&("web.max_body", Some(3))), "{e}");
        let e = err("[web]\n\nmax_connections = 1\n");
        assert_eq!(
            (e.0[0].key.as_str(), e.0[0].line),
            ("web.max_connections", Some(3)),
            "{e}"
        );
        let e = err("[web]\nmax_conections = 10\n");
        assert!(e.to_string().contains("max_conections"), "{e}");
    }

    #[test]
    fn backend_and_hardware_settings() {
        let c = Config::parse("[[camera]]\nurl = \"a.h264\"\n", "t").unwrap();
        assert_eq!(c.backend, crate::hw::BackendChoice::Auto);
        assert_eq!(c.hardware.decoder_buffers, 24);
        let c = Config::parse(
            "backend = \"software\"\n[hardware]\nlib_dir = \"/opt/rk\"\ndecoder_buffers = 8\n",
            "t",
        )
        .unwrap();
        assert_eq!(c.backend, crate::hw::BackendChoice::Software);
        assert_eq!(c.hardware.lib_dir.as_deref(), Some(Path::new("/opt/rk")));
        let e = err("\nbackend = \"npu\"\n");
        assert_eq!(
            (e.0[0].key.as_str(), e.0[0].line),
            ("backend", Some(2)),
            "{e}"
        );
        let e = err("backend = \"software\"\n[detector]\nkind = \"yolov8\"\n");
        assert_eq!(
            (e.0[0].key.as_str(), e.0[0].line),
            ("detector.kind", Some(3)),
            "{e}"
        );
        assert!(e.to_string().contains("NPU"), "{e}");
        let c = Config::parse(
            "[detector]\nkind = \"yolox\"\n[hardware]\ndev_dir = \"/tmp/d\"\n[[camera]]\nurl = \"a.h264\"\n",
            "t",
        )
        .unwrap();
        assert_eq!(c.detector.kind.as_str(), "yolox");
        assert_eq!(c.hardware.dev_dir, Path::new("/tmp/d"));
        let e = err("[watchdog]\ndevice = \"/dev/watchdog\"\ntimeout = \"2s\"\n");
        assert_eq!(
            (e.0[0].key.as_str(), e.0[0].line),
            ("watchdog.timeout", Some(3)),
            "{e}"
        );
        let e = err("[detector]\nkind = \"yolov9\"\n");
        assert!(
            e.to_string()
                .contains("ssd-mobilenet-v2, yolov5, yolov8, yolox"),
            "{e}"
        );
        let e = err("[hardware]\ndecoder_buffers = 2\n");
        assert_eq!(e.0[0].key, "hardware.decoder_buffers", "{e}");
    }

    #[test]
    fn syntax_errors_have_lines() {
        let e = err("[[camera]]\nurl = = 3\n");
        assert_eq!(e.0[0].line, Some(2), "{e}");
    }

    #[test]
    fn sizes_and_durations() {
        assert_eq!(parse_size("512MiB"), Ok(512 << 20));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert!(parse_size("1 TB").is_err());
        assert!(parse_size("99999999999999GiB").is_err());
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("2").is_err());
        assert!(parse_duration("2d").is_err());
    }

    #[test]
    fn store_and_upstream_defaults_and_values() {
        let c = Config::parse("", "t.toml").unwrap();
        assert_eq!(c.store.max_bytes, 128 << 20);
        assert_eq!(c.store.max_age, Duration::from_secs(30 * 86_400));
        assert_eq!(c.upstream.outbox_max_bytes, 64 << 20);
        assert!(c.upstream.http.is_none() && c.upstream.mqtt.is_none());
        assert_eq!(
            (
                c.events.snapshot_width,
                c.events.snapshot_height,
                c.events.snapshot_quality
            ),
            (1280, 720, 80)
        );
        let c = Config::parse(
            "[store]\nmax_age = \"12h\"\n[upstream.http]\nurl = \"http://h:8/x\"\n\
             header = \"X-Key:  abc \"\n[upstream.mqtt]\nurl = \"mqtt://b\"\n",
            "t.toml",
        )
        .unwrap();
        assert_eq!(c.store.max_age, Duration::from_secs(12 * 3600));
        let h = c.upstream.http.unwrap();
        assert_eq!(h.header, Some(("X-Key".into(), "abc".into())));
        let m = c.upstream.mqtt.unwrap();
        assert_eq!(
            (m.host.as_str(), m.port, m.topic_prefix.as_str()),
            ("b", 1883, "vigil")
        );
    }

    #[test]
    fn bad_store_and_upstream_keys_are_located() {
        let cases = [
            (
                "[upstream.http]\nurl = \"https://h/x\"\n",
                "upstream.http.url",
                2,
                "no TLS",
            ),
            (
                "[upstream.http]\nurl = \"h:80\"\n",
                "upstream.http.url",
                2,
                "not a URL",
            ),
            (
                "[upstream.http]\nurl = \"http://h/\"\nheader = \"Bearer x\"\n",
                "upstream.http.header",
                3,
                "Name: value",
            ),
            (
                "[upstream.mqtt]\nurl = \"mqtts://b\"\n",
                "upstream.mqtt.url",
                2,
                "no TLS",
            ),
            (
                "[upstream.mqtt]\nurl = \"mqtt://b\"\ntopic_prefix = \"a/#\"\n",
                "upstream.mqtt.topic_prefix",
                3,
                "#",
            ),
            (
                "[store]\nmax_bytes = \"8MiB\"\n[upstream]\noutbox_max_bytes = \"9MiB\"\n",
                "upstream.outbox_max_bytes",
                4,
                "store.max_bytes",
            ),
            (
                "[store]\nmax_bytes = \"1MiB\"\n",
                "store.max_bytes",
                2,
                "between 4MiB",
            ),
            (
                "[store]\nmax_age = \"10s\"\n",
                "store.max_age",
                2,
                "between 1m",
            ),
            (
                "[store]\nmax_age = \"3d2\"\n",
                "store.max_age",
                2,
                "not an age",
            ),
            (
                "[upstream]\nretry_min = \"5s\"\nretry_max = \"1s\"\n",
                "upstream.retry_max",
                3,
                "retry_min",
            ),
            (
                "[events]\nsnapshot_size = \"640\"\n",
                "events.snapshot_size",
                2,
                "resolution",
            ),
            (
                "[upstream]\nbroker = 1\n",
                "upstream.broker",
                2,
                "unknown field",
            ),
        ];
        for (text, key, line, needle) in cases {
            let e = err(text);
            let hit = e.0.iter().find(|x| x.key == key);
            let hit = hit.unwrap_or_else(|| panic!("{text:?}: no error for {key}: {e}"));
            assert_eq!(hit.line, Some(line), "{text:?}: {e}");
            assert!(hit.message.contains(needle), "{text:?}: {e}");
        }
    }

    /// Mutation fuzzing: random edits of a full, valid file never panic,
    /// and every error still carries a line inside the file.
    #[test]
    fn mutated_files_never_panic_and_errors_stay_located() {
        let valid = "memory_limit = \"512MiB\"\ndata_dir = \"/data\"\nlisten = \"0.0.0.0:8080\"\n\
            [detector]\nkind = \"ssd-mobilenet-v2\"\nworkers = 2\n[runtime]\nio_threads = 2\n\
            [events]\nring_capacity = 100\ntrack_timeout = \"3s\"\nsnapshot_pool = 2\n\
            snapshot_size = \"640x360\"\nsnapshot_quality = 70\nqueue = 16\n\
            [store]\nmax_bytes = \"64MiB\"\nmax_events = 5000\nmax_age = \"7d\"\nbatch = 32\n\
            flush_after = \"500ms\"\ncache = \"2MiB\"\n\
            [upstream]\noutbox_max_bytes = \"16MiB\"\nretry_min = \"1s\"\nretry_max = \"30s\"\n\
            timeout = \"5s\"\nmax_attempts = 3\n\
            [upstream.http]\nurl = \"http://10.0.0.9:8000/ev\"\nheader = \"Authorization: Bearer t\"\n\
            [upstream.mqtt]\nurl = \"mqtt://10.0.0.9\"\ntopic_prefix = \"site/a\"\nclient_id = \"box\"\n\
            [web]\nmax_connections = 32\nmax_sse_clients = 4\nsse_queue = 16\nheartbeat = \"3s\"\n\
            header_timeout = \"5s\"\nbody_timeout = \"5s\"\nidle_timeout = \"30s\"\nmax_body = \"16KiB\"\n\
            public_status = true\n\
            [[camera]]\nname = \"door\"\nurl = \"rtsp://10.0.0.2/s\"\ncodec = \"h264\"\ndetect_fps = 2.5\n\
            classes = [\"person\", \"car\"]\nmin_score = 0.4\nusername = \"u\"\npassword = \"p\"\n\
            max_resolution = \"1280x720\"\nframe_pool = 3\npacket_pool = 6\npacket_size = \"512KiB\"\n\
            reconnect_min = \"500ms\"\nreconnect_max = \"20s\"\nstall_timeout = \"8s\"\n\
            [[camera]]\nurl = \"clip.mp4\"\n";
        Config::parse(valid, "v.toml").expect("the seed file is valid");
        const PIECES: [&str; 12] = [
            "=",
            "\"",
            "[",
            "]",
            "[[camera]]",
            "\n",
            "-1",
            "1e99",
            "x",
            "\u{0}",
            "é",
            "{a=1}",
        ];
        let mut rng = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = move |n: usize| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            (rng % n as u64) as usize
        };
        for _ in 0..20_000 {
            let mut text = valid.to_owned();
            for _ in 0..1 + next(3) {
                let mut at = next(text.len() + 1);
                while !text.is_char_boundary(at) {
                    at -= 1;
                }
                match next(3) {
                    0 => {
                        let mut end = (at + next(12)).min(text.len());
                        while !text.is_char_boundary(end) {
                            end -= 1;
                        }
                        text.replace_range(at..end, "");
                    }
                    1 => text.insert_str(at, PIECES[next(PIECES.len())]),
                    _ => {
                        let digit = char::from(b'0' + next(10) as u8);
                        text.insert(at, digit);
                    }
                }
            }
            if let Err(errors) = Config::parse(&text, "f.toml") {
                let lines = text.lines().count() + 1;
                for e in &errors.0 {
                    let line = e
                        .line
                        .unwrap_or_else(|| panic!("no line for {e} in:\n{text}"));
                    assert!((1..=lines).contains(&line), "{e} outside the file:\n{text}");
                }
            }
        }
    }

    #[test]
    fn command_line_urls_are_quoted_safely() {
        let c = Config::from_urls(&["clip \"a\".mp4".into()]).unwrap();
        assert_eq!(c.cameras[0].url, "clip \"a\".mp4");
        let e = Config::from_urls(&["video.avi".into()]).unwrap_err();
        assert_eq!(e.0[0].file, "--camera");
    }
}
