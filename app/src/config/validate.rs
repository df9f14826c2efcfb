//! Validation of every section but the cameras: raw values in, the model
//! out, each problem reported with its key and span.
//!
//! Checks report and go on with a default rather than stopping, so one run
//! of `check-config` lists every problem in the file. Checks that relate
//! sections (an outbox no larger than the store, a fragment that fits the
//! largest camera packet) live here, after the sections they read; each
//! camera's own checks are in `camera`.

use super::error::Report;
use super::raw::{
    RawConfig, RawHttpUpstream, RawMqttUpstream, RawRecord, RawStore, RawUpdate, RawUpstream,
};
use super::values::{show_size, ByteSize, Seconds};
use super::{
    CameraConfig, ClipDelivery, Config, DetectorConfig, DetectorKind, EventsConfig, HardwareConfig,
    HttpUpstream, MqttUpstream, RecordConfig, StoreConfig, UpdateConfig, UpstreamConfig,
    WatchdogConfig,
};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use toml::Spanned;

impl RawConfig {
    /// The validated model; every problem found goes to `report`.
    pub(super) fn validate(self, report: &mut Report<'_>) -> Config {
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
        // Every camera's name, disabled ones too: a name stays unique in the
        // file, so enabling a camera never makes the file invalid.
        let mut names: Vec<String> = Vec::with_capacity(self.cameras.len());
        for (i, raw) in self.cameras.into_iter().enumerate() {
            // Where to point if the camera's pictures cannot reach the NPU.
            let format_span = raw
                .format
                .as_ref()
                .or(raw.device.as_ref())
                .or(raw.url.as_ref())
                .map_or(0..0, |s| s.span());
            let enabled = raw.enabled.unwrap_or(true);
            let (camera, name_span) = raw.validate(i, report);
            npu_input(kind, &camera, i, format_span, report);
            if let Some(first) = names.iter().position(|n| *n == camera.name) {
                report(
                    format!("camera[{i}].name"),
                    name_span,
                    format!(
                        "duplicate camera name `{}` (also camera[{first}])",
                        camera.name
                    ),
                );
            }
            names.push(camera.name.clone());
            if enabled {
                cameras.push(camera);
            }
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
            update: self.update.validate(report),
            system: match self.system {
                Some(s) => s.validate(report),
                None => super::SystemConfig::default(),
            },
            cameras,
        }
    }
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

impl RawUpdate {
    fn validate(self, report: &mut Report<'_>) -> UpdateConfig {
        let d = UpdateConfig::default();
        UpdateConfig {
            rauc: self.rauc.or(d.rauc),
            // A root filesystem bundle is tens to hundreds of MiB; the cap
            // keeps a typo from reserving the whole data partition.
            max_bundle: bounded_size(
                "update.max_bundle",
                self.max_bundle,
                d.max_bundle,
                (1 << 20, 16 << 30),
                report,
            ),
            probation: bounded_duration(
                "update.probation",
                self.probation,
                d.probation,
                (Duration::from_secs(5), Duration::from_secs(1800)),
                report,
            ),
            reboot_after: bounded_duration(
                "update.reboot_after",
                self.reboot_after,
                d.reboot_after,
                (Duration::ZERO, Duration::from_secs(600)),
                report,
            ),
        }
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

/// Refuses a V4L2 camera whose pictures are raw or MJPEG (CPU frames) when
/// the detector runs only on the NPU, which reads the hardware decoder's
/// dma-bufs: every frame would fail. With no format (auto), the mode
/// negotiation takes a raw format first, so that is refused too.
fn npu_input(
    kind: DetectorKind,
    camera: &CameraConfig,
    i: usize,
    span: std::ops::Range<usize>,
    report: &mut Report<'_>,
) {
    let Some(request) = &camera.v4l2 else { return };
    if !kind.needs_npu() || request.format == Some(crate::config::PixelFormat::H264) {
        return;
    }
    let format = request.format.map_or("auto", |f| f.as_str());
    report(
        format!("camera[{i}].format"),
        span,
        format!(
            "format `{format}` gives CPU pictures, and `{}` models run on the RK3588 NPU, \
             which reads only pictures the hardware decoder made: every frame would fail; \
             use format = \"h264\" (if the camera offers it) or detector kind = \"ssd-mobilenet-v2\"",
            kind.as_str()
        ),
    );
}
