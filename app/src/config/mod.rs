//! The configuration file: one TOML document, validated in full before
//! anything starts.
//!
//! Every capacity that bounds memory (frame and packet pools, queue and ring
//! sizes, picture size limits) comes from here, so the memory budget can be
//! computed from a [`Config`] alone. Parsing rejects unknown keys and every
//! error names the file, the line and the key path (`camera[1].detect_fps`),
//! because the people who read these errors are installing a box, often over
//! a serial console. Defaults are chosen so a camera needs only a `url`.
//!
//! This file holds the validated model and its loading. The file's shape as
//! serde reads it is in `raw`, the checks that turn it into the model in
//! `validate` (every section) and `camera` (each camera), the self-checking
//! value types (sizes, durations, resolutions) in `values`, and the located
//! error in `error`. What a camera's `url` names ([`classify`],
//! [`SourceKind`]) and what a V4L2 camera asks for ([`V4l2Request`],
//! [`PixelFormat`]) are values of the configuration too, in `kind` and
//! `v4l2`: the configuration knows nothing of sources, and the sources take
//! these types from here.

mod camera;
mod error;
mod kind;
mod raw;
mod redact;
mod system;
#[cfg(test)]
mod tests;
mod tz;
mod v4l2;
mod validate;
mod values;
mod web;

pub use error::{ConfigError, ConfigErrors};
pub use kind::{classify, SourceKind, UrlError, UrlErrorKind};
pub use redact::{redact_url, HIDDEN};
pub use system::{DEFAULT_CONFIRM, MAX_CONFIRM, MAX_DNS, MAX_NTP, MIN_CONFIRM};
pub use tz::ZONES;
pub use v4l2::{PixelFormat, V4l2Request};
pub use values::{parse_duration, parse_size, DurationError, SizeError};

use crate::packet::Codec;
use raw::RawConfig;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

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
    /// The box around vigil: host name, time, network (`[system]`), applied
    /// by the board's boot scripts, not by vigil.
    pub system: SystemConfig,
    /// System updates from the page (`crate::update`).
    pub update: UpdateConfig,
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
// Debug by hand (redact.rs): it holds a secret.
#[derive(Clone, PartialEq)]
pub struct HttpUpstream {
    /// `http://host[:port]/path`.
    pub url: String,
    /// An extra header sent with every request, e.g. authorisation.
    pub header: Option<(String, String)>,
}

/// `[upstream.mqtt]`.
// Debug by hand (redact.rs): it holds a secret.
#[derive(Clone, PartialEq)]
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
// Debug by hand (redact.rs): it holds a secret.
#[derive(Clone, PartialEq)]
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
    /// Status, metrics, the camera list, the event list and the event
    /// stream may be read without logging in (default off). Snapshots and
    /// clips always need the admin session.
    pub public_status: bool,
    /// Names the box answers to besides IP literals and `localhost` (the
    /// DNS-rebinding guard), lower case, without a trailing dot.
    pub hostnames: Vec<String>,
    /// The bearer token Prometheus sends for `/metrics`
    /// (`[web] metrics_token` or the first line of `metrics_token_file`);
    /// `None`: only the admin session reads `/metrics`.
    pub metrics_token: Option<String>,
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
            public_status: false,
            metrics_token: None,
            hostnames: Vec::new(),
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

/// `[update]`: how bundles are taken and a new system is judged.
#[derive(Clone, Debug, PartialEq)]
pub struct UpdateConfig {
    /// RAUC's command-line client when the file names one; `None`:
    /// `/usr/bin/rauc`, asked only on a box the A/B boot script started
    /// (`rauc.slot=` on the kernel command line), so a host never runs it.
    pub rauc: Option<PathBuf>,
    /// The largest bundle an upload may declare.
    pub max_bundle: u64,
    /// How long a freshly installed system has to prove itself before it is
    /// marked bad and the box boots the old one again.
    pub probation: Duration,
    /// The countdown to the reboot after an install; zero: the admin's button.
    pub reboot_after: Duration,
}

impl Default for UpdateConfig {
    fn default() -> UpdateConfig {
        UpdateConfig {
            rauc: None,
            max_bundle: 1 << 30,
            probation: Duration::from_secs(120),
            reboot_after: Duration::from_secs(60),
        }
    }
}

/// `[system]`: what the board's scripts apply (`vigil system-env`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SystemConfig {
    /// The host name (an RFC 1123 label); `None`: the image's.
    pub hostname: Option<String>,
    /// The time zone; `None`: UTC.
    pub timezone: Option<TimeZone>,
    /// Whether the file has a `[system]` table: only then does vigil set
    /// the clock (a host keeps its own time service).
    pub present: bool,
    /// NTP servers; empty: those DHCP offers, else `timesync::FALLBACK`.
    pub ntp: Vec<crate::timesync::Server>,
    /// `[system.network]`.
    pub network: NetworkConfig,
}

/// A time zone as written and as the C library takes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TimeZone {
    /// As written: an IANA name of the built-in table, or a POSIX string.
    pub name: String,
    /// The POSIX TZ string (the board has no zoneinfo).
    pub posix: String,
}

/// How the box gets its IPv4 address.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum NetworkMode {
    /// From a DHCP server (udhcpc).
    #[default]
    Dhcp,
    /// `address`, `gateway` and `dns` as configured, kept only once
    /// confirmed from the page (the router pattern).
    Static,
}

impl NetworkMode {
    /// The config spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            NetworkMode::Dhcp => "dhcp",
            NetworkMode::Static => "static",
        }
    }
}

/// An IPv4 address with its prefix length (`192.168.1.50/24`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipv4Net {
    /// The address.
    pub addr: std::net::Ipv4Addr,
    /// The prefix length, 1..=32.
    pub prefix: u8,
}

/// `[system.network]`.
#[derive(Clone, Debug, PartialEq)]
pub struct NetworkConfig {
    /// DHCP (default) or static.
    pub mode: NetworkMode,
    /// The static address (required by `Static`, kept but unused by `Dhcp`).
    pub address: Option<Ipv4Net>,
    /// The default gateway, in the address's subnet.
    pub gateway: Option<std::net::Ipv4Addr>,
    /// Name servers for the static address.
    pub dns: Vec<std::net::IpAddr>,
    /// How long a new static address waits for confirmation from the page
    /// before the box goes back to DHCP.
    pub confirm_within: Duration,
}

impl Default for NetworkConfig {
    fn default() -> Self {
        NetworkConfig {
            mode: NetworkMode::Dhcp,
            address: None,
            gateway: None,
            dns: Vec::new(),
            confirm_within: DEFAULT_CONFIRM,
        }
    }
}

/// One camera.
// Debug by hand (redact.rs): it holds a secret.
#[derive(Clone, PartialEq)]
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
    pub v4l2: Option<V4l2Request>,
}

impl CameraConfig {
    /// Whether the camera delivers compressed access units, which the
    /// pre-roll ring and clips need: every network and file camera does; a
    /// V4L2 camera only when it is configured for H.264 (raw and MJPEG
    /// pictures are never re-encoded).
    pub fn compressed(&self) -> bool {
        self.v4l2
            .as_ref()
            .is_none_or(|r| r.format == Some(PixelFormat::H264))
    }
}

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
            // A value read through `toml::Spanned` adds serde_spanned's
            // private field to the path; the user wrote the key before it.
            let key = e.path().to_string();
            let key = key
                .strip_suffix(".$__serde_spanned_private_value")
                .unwrap_or(&key)
                .to_owned();
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
