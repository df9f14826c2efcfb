//! The file's shape, as serde sees it.
//!
//! Every table rejects unknown keys, so a misspelt key is an error naming
//! it rather than a silently ignored setting. Fields are kept raw (spans,
//! strings) where the check needs the location or more than one field; the
//! value types of `values` check themselves while parsing so that their
//! errors carry the span. `validate` and `camera` turn these into the model.

use super::values::{Age, ByteSize, Count, Ranged, Resolution, Seconds};
use serde::Deserialize;
use std::path::PathBuf;
use toml::Spanned;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    pub(super) data_dir: Option<PathBuf>,
    pub(super) listen: Option<Spanned<String>>,
    pub(super) memory_limit: Option<ByteSize>,
    #[serde(default)]
    pub(super) detector: RawDetector,
    #[serde(default)]
    pub(super) runtime: RawRuntime,
    #[serde(default)]
    pub(super) events: RawEvents,
    #[serde(default)]
    pub(super) store: RawStore,
    #[serde(default)]
    pub(super) upstream: RawUpstream,
    #[serde(default)]
    pub(super) record: RawRecord,
    #[serde(default)]
    pub(super) web: RawWeb,
    pub(super) backend: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) hardware: RawHardware,
    #[serde(default)]
    pub(super) watchdog: RawWatchdog,
    pub(super) system: Option<RawSystem>,
    #[serde(default)]
    pub(super) update: RawUpdate,
    #[serde(default, rename = "camera")]
    pub(super) cameras: Vec<RawCamera>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDetector {
    pub(super) kind: Option<Spanned<String>>,
    pub(super) model: Option<PathBuf>,
    pub(super) workers: Option<Count<1, 16>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRuntime {
    pub(super) io_threads: Option<Count<1, 8>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawEvents {
    pub(super) ring_capacity: Option<Count<1, 1_000_000>>,
    pub(super) track_timeout: Option<Seconds>,
    pub(super) snapshot_pool: Option<Count<0, 64>>,
    pub(super) snapshot_size: Option<Resolution>,
    pub(super) snapshot_quality: Option<Count<1, 100>>,
    pub(super) queue: Option<Count<1, 4096>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStore {
    pub(super) max_bytes: Option<Spanned<ByteSize>>,
    pub(super) max_events: Option<Count<1, 100_000_000>>,
    pub(super) max_age: Option<Age>,
    pub(super) batch: Option<Count<1, 1024>>,
    pub(super) flush_after: Option<Spanned<Seconds>>,
    pub(super) cache: Option<Spanned<ByteSize>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRecord {
    pub(super) enabled: Option<bool>,
    pub(super) pre_roll: Option<Spanned<Seconds>>,
    pub(super) post_roll: Option<Spanned<Seconds>>,
    pub(super) max_length: Option<Spanned<Seconds>>,
    pub(super) silence: Option<Spanned<Seconds>>,
    pub(super) jump: Option<Spanned<Seconds>>,
    pub(super) ring_size: Option<Spanned<ByteSize>>,
    pub(super) ring_units: Option<Count<16, 100_000>>,
    pub(super) fragment: Option<Spanned<Seconds>>,
    pub(super) fragment_size: Option<Spanned<ByteSize>>,
    pub(super) upstream: Option<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawUpstream {
    pub(super) http: Option<RawHttpUpstream>,
    pub(super) mqtt: Option<RawMqttUpstream>,
    pub(super) outbox_max_bytes: Option<Spanned<ByteSize>>,
    pub(super) retry_min: Option<Spanned<Seconds>>,
    pub(super) retry_max: Option<Spanned<Seconds>>,
    pub(super) timeout: Option<Spanned<Seconds>>,
    pub(super) max_attempts: Option<Count<1, 1000>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHttpUpstream {
    pub(super) url: Spanned<String>,
    pub(super) header: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMqttUpstream {
    pub(super) url: Spanned<String>,
    pub(super) topic_prefix: Option<Spanned<String>>,
    pub(super) client_id: Option<Spanned<String>>,
    pub(super) username: Option<String>,
    pub(super) password: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawWatchdog {
    pub(super) device: Option<PathBuf>,
    pub(super) timeout: Option<Spanned<Seconds>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawUpdate {
    pub(super) rauc: Option<PathBuf>,
    pub(super) max_bundle: Option<Spanned<ByteSize>>,
    pub(super) probation: Option<Spanned<Seconds>>,
    pub(super) reboot_after: Option<Spanned<Seconds>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSystem {
    pub(super) hostname: Option<Spanned<String>>,
    pub(super) timezone: Option<Spanned<String>>,
    pub(super) ntp: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    pub(super) network: RawNetwork,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawNetwork {
    pub(super) mode: Option<Spanned<String>>,
    pub(super) address: Option<Spanned<String>>,
    pub(super) gateway: Option<Spanned<String>>,
    pub(super) dns: Option<Vec<Spanned<String>>>,
    pub(super) confirm_within: Option<Spanned<Seconds>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHardware {
    pub(super) lib_dir: Option<PathBuf>,
    pub(super) decoder_buffers: Option<Count<4, 64>>,
    pub(super) dev_dir: Option<PathBuf>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawWeb {
    pub(super) max_connections: Option<Count<4, 4096>>,
    pub(super) max_sse_clients: Option<Count<0, 256>>,
    pub(super) sse_queue: Option<Count<4, 4096>>,
    pub(super) heartbeat: Option<Spanned<Seconds>>,
    pub(super) header_timeout: Option<Spanned<Seconds>>,
    pub(super) body_timeout: Option<Spanned<Seconds>>,
    pub(super) idle_timeout: Option<Spanned<Seconds>>,
    pub(super) max_body: Option<Spanned<ByteSize>>,
    pub(super) public_status: Option<bool>,
    pub(super) hostnames: Option<Vec<Spanned<String>>>,
    pub(super) metrics_token: Option<Spanned<String>>,
    pub(super) metrics_token_file: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCamera {
    pub(super) name: Option<Spanned<String>>,
    /// `false`: validated and kept in the file, but not run.
    pub(super) enabled: Option<bool>,
    pub(super) url: Option<Spanned<String>>,
    /// A V4L2 device node, the same as `url = "v4l://<device>"`.
    pub(super) device: Option<Spanned<String>>,
    /// V4L2 only: nv12, yuyv, mjpeg, h264 or auto.
    pub(super) format: Option<Spanned<String>>,
    /// V4L2 only: the frame size to ask for.
    pub(super) size: Option<Resolution>,
    /// V4L2 only: frames per second to ask for.
    pub(super) fps: Option<Count<1, 240>>,
    /// V4L2 only: mmap'ed driver buffers.
    pub(super) buffers: Option<Count<2, 32>>,
    pub(super) codec: Option<Spanned<String>>,
    pub(super) detect_fps: Option<Ranged>,
    pub(super) classes: Option<Vec<Spanned<String>>>,
    pub(super) min_score: Option<Ranged>,
    pub(super) username: Option<String>,
    pub(super) password: Option<String>,
    pub(super) max_resolution: Option<Resolution>,
    pub(super) frame_pool: Option<Count<1, 256>>,
    pub(super) packet_pool: Option<Count<2, 1024>>,
    pub(super) packet_size: Option<ByteSize>,
    pub(super) reconnect_min: Option<Seconds>,
    pub(super) reconnect_max: Option<Seconds>,
    pub(super) stall_timeout: Option<Seconds>,
}
