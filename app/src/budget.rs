//! The memory budget: what the configuration allows vigil to hold, computed
//! before anything is allocated.
//!
//! Each line is a capacity from the config times a per-item size, or a
//! measured constant for memory we do not allocate ourselves (the decoder's
//! reference pictures, the inference engine's weights and scratch, the
//! runtime). `vigil check-config` prints it; `vigil run` prints it and refuses
//! to start when the total exceeds `memory_limit`; at run time the monitor
//! compares the measured RSS against the limit (see `main.rs`).
//!
//! The measured constants were taken with `make bench` on the sample clip
//! and a 1080p stream; each names how. They err on the high side.

use crate::config::Config;
use crate::events::Event;
use crate::frame::FrameBuf;
use crate::hw::Backend;
use crate::metrics::Registry;
use std::fmt;

/// What the software H.264 decoder holds, in units of one I420 picture at
/// the camera's maximum resolution: openh264's padded reference and reorder
/// pictures (as many as the stream's max_num_ref_frames, up to 16, plus
/// slack), its per-macroblock state, and the decoder thread's malloc arena.
/// Measured by tests/tests/budget.rs on a 1920x1080 High-profile stream
/// with 16 reference frames (the most H.264 allows, so the worst a camera
/// within `max_resolution` can ask for): four cameras used 127 MiB RSS more
/// per camera than one (660 against 279 MiB); less the camera's frame pool,
/// packet pool and pre-roll ring (28 MiB, resident at start) that leaves
/// 99 MiB, 33.4 pictures of 1920x1080. The old figure, 20, was 59 MiB: the
/// four-camera run went 47 MiB over the whole budget.
pub const SOFTWARE_DECODER_PICTURES: u64 = 36;

/// Inference engine memory per loaded model, as a multiple of the model
/// file: tract keeps the weights (f32, as in the frozen graph) plus its
/// optimised plan. Measured on SSD-MobileNetV2 (66.5 MiB file): a running
/// vigil with one camera settles at 154 MiB RSS after the load's garbage is
/// returned (`malloc_trim`), of which the model is under 150% of the file.
pub const MODEL_FILE_FACTOR_PERCENT: u64 = 150;

/// The extra, transient memory of loading one model (parsing the protobuf
/// and optimising the graph), as a multiple of the file. Models load one at
/// a time before any pool, ring or decoder picture exists, and the garbage
/// is returned (`malloc_trim`) before those are allocated, so this counts
/// toward the peak while loading ([`Budget::loading`]), not on top of the
/// running pipeline: the measured high-water mark while loading
/// SSD-MobileNetV2 is 191 MiB.
pub const MODEL_LOAD_EXTRA_PERCENT: u64 = 100;

/// Inference scratch per worker (activations of SSD-MobileNetV2 at 300x300
/// plus the engine's input and output tensors).
pub const ENGINE_SCRATCH_BYTES: u64 = 48 << 20;

/// Per RKNN context: the runtime's internal buffers besides the model's
/// weights and the bound input/output tensors. Not measured here (no
/// RK3588): rknn-toolkit2 #284 reports about 40 MB left behind per destroyed
/// context, which bounds what one context holds; to verify on a board
/// (docs/hardware.md).
pub const NPU_CONTEXT_BYTES: u64 = 40 << 20;

/// Everything else: code, runtime, allocator slack, the metrics registry.
pub const FIXED_OVERHEAD_BYTES: u64 = 24 << 20;

/// Per open web connection besides its buffers: the task, hyper's
/// connection state and the parsed request.
pub const WEB_CONNECTION_OVERHEAD_BYTES: u64 = 8 << 10;

/// Largest SSE message queued (one detection event or camera change is
/// 300-600 bytes of JSON).
pub const SSE_MESSAGE_BYTES: u64 = 1 << 10;

/// The event store's memory besides its page cache: redb's allocator state
/// and transaction buffers. Decision 0006 measured 10.0 MiB RSS for a whole
/// benchmark process with an 8 MiB cache over 200,000 events.
pub const STORE_OVERHEAD_BYTES: u64 = 2 << 20;

/// Per configured upstream besides its payload buffers: the connection's
/// socket buffers and client state (hyper, rumqttc).
pub const UPSTREAM_CLIENT_BYTES: u64 = 256 << 10;

/// Stack memory counted per thread (what is touched, not the reservation).
pub const THREAD_STACK_BYTES: u64 = 256 << 10;

/// The packet size a camera gets when `packet_size` is not set: what the
/// camera test accepts as a key frame for a camera not saved yet.
const DEFAULT_PACKET_SIZE: u64 = 1 << 20;

/// The settings page's camera test (`camera_probe`), held only while one
/// runs and one at a time: the key frame retina assembled (at most the
/// largest `packet_size`), the throwaway decoder (at most
/// `camera_probe::DECODER_BYTES`, checked from the SPS before it exists),
/// the preview picture, its JPEG buffer and the answer.
fn camera_test(config: &Config) -> BudgetLine {
    use crate::camera_probe::{picture::JPEG_CAPACITY, ANSWER_CAP, DECODER_BYTES, PREVIEW};
    let key_frame = config
        .cameras
        .iter()
        .map(|c| c.packet_size as u64)
        .fold(DEFAULT_PACKET_SIZE, u64::max);
    let preview = crate::snapshot::SnapshotBuf::bytes_for(PREVIEW.0, PREVIEW.1) as u64;
    let buffers = preview + JPEG_CAPACITY as u64 + ANSWER_CAP as u64;
    BudgetLine {
        component: "camera test",
        detail: format!(
            "key frame {} + decoder {} + preview {}x{}, JPEG and answer {}",
            human(key_frame),
            human(DECODER_BYTES),
            PREVIEW.0,
            PREVIEW.1,
            human(buffers)
        ),
        bytes: key_frame + DECODER_BYTES + buffers,
    }
}

/// System updates (`crate::update`): the RAUC client while it installs
/// (vigil's child, so in its cgroup) and the fixed buffers its output is
/// read through. The upload itself passes through its connection's buffers
/// one chunk at a time (the web line) to the data partition, never into
/// memory. An install holds the camera test's permit (one of the two at a
/// time), so the line is only what it needs beyond that reserve.
fn update(camera_test: &BudgetLine) -> BudgetLine {
    use crate::update::{rauc::OUTPUT_BYTES, RAUC_CLIENT_BYTES};
    let needs = RAUC_CLIENT_BYTES + OUTPUT_BYTES as u64;
    BudgetLine {
        component: "update",
        detail: format!(
            "RAUC client {} + its output {}, in the camera test's reserve (one at a time)",
            human(RAUC_CLIENT_BYTES),
            human(OUTPUT_BYTES as u64)
        ),
        bytes: needs.saturating_sub(camera_test.bytes),
    }
}

/// One budget line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BudgetLine {
    /// The component.
    pub component: &'static str,
    /// How the figure was reached.
    pub detail: String,
    /// Bytes.
    pub bytes: u64,
}

/// The whole budget against the limit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Budget {
    /// One line per component.
    pub lines: Vec<BudgetLine>,
    /// The peak while the models load: the runtime, the loaded models and
    /// the one being parsed; no pool, ring or picture exists yet.
    pub loading: u64,
    /// The configured limit.
    pub limit: u64,
}

impl Budget {
    /// Computes the budget of `config` on `backend` with a model file of
    /// `model_bytes`.
    pub fn compute(config: &Config, backend: Backend, model_bytes: u64) -> Budget {
        let mut lines = Vec::new();
        let mut loading = 0u64;
        let mut frames = 0u64;
        let mut packets = 0u64;
        let mut decoders = 0u64;
        let hardware = backend == Backend::Hardware;
        let mut v4l2_buffers = 0u64;
        let mut mjpeg_cameras = 0usize;
        for cam in &config.cameras {
            let picture = FrameBuf::bytes_for(cam.max_width, cam.max_height) as u64;
            packets += cam.packet_pool as u64 * cam.packet_size as u64;
            if let Some(request) = &cam.v4l2 {
                let max = (cam.max_width, cam.max_height);
                v4l2_buffers += crate::source::v4l2::buffer_bytes(request, max) as u64;
            }
            if cam.v4l2.is_some() && !cam.compressed() {
                // V4L2 pictures are converted into CPU frames under either
                // backend; only MJPEG decodes, in jpeg-decoder's transient
                // buffers, allocated per frame (it cannot decode into ours)
                // and bounded by max_resolution (convert::jpeg_header).
                frames += cam.frame_pool as u64 * picture;
                let mjpeg = cam.v4l2.as_ref().is_some_and(|r| {
                    matches!(r.format, None | Some(crate::config::PixelFormat::Mjpeg))
                });
                if mjpeg {
                    mjpeg_cameras += 1;
                    decoders += crate::source::v4l2::convert::MJPEG_DECODE_BYTES_PER_PIXEL
                        * cam.max_width as u64
                        * cam.max_height as u64;
                }
            } else if hardware {
                // The pipeline's frames are MPP's: counted in the group.
                decoders += config.hardware.decoder_buffers as u64
                    * mpp_frame_bytes(cam.max_width, cam.max_height);
            } else {
                frames += cam.frame_pool as u64 * picture;
                decoders += SOFTWARE_DECODER_PICTURES * picture;
            }
        }
        let n = config.cameras.len();
        lines.push(BudgetLine {
            component: "frame pools",
            detail: if hardware {
                per_camera(config, |c| {
                    format!("{} MPP frames held (in the decoder group)", c.frame_pool)
                })
            } else {
                per_camera(config, |c| {
                    format!("{} x {}x{} I420", c.frame_pool, c.max_width, c.max_height)
                })
            },
            bytes: frames,
        });
        if v4l2_buffers > 0 {
            lines.push(BudgetLine {
                component: "v4l2 buffers",
                detail: per_v4l2_camera(config),
                bytes: v4l2_buffers,
            });
        }
        lines.push(BudgetLine {
            component: "packet buffers",
            detail: per_camera(config, |c| {
                format!("{} x {}", c.packet_pool, human(c.packet_size as u64))
            }),
            bytes: packets,
        });
        let mut detail = if hardware {
            format!(
                "{} x MPP group of {} NV12 frames (16-aligned)",
                config.cameras.iter().filter(|c| c.compressed()).count(),
                config.hardware.decoder_buffers
            )
        } else {
            let decoding = config.cameras.iter().filter(|c| c.compressed()).count();
            format!("{decoding} x {SOFTWARE_DECODER_PICTURES} reference pictures")
        };
        if mjpeg_cameras > 0 {
            detail += &format!(
                " + {mjpeg_cameras} x MJPEG decoding ({} B/pixel, allocated per frame)",
                crate::source::v4l2::convert::MJPEG_DECODE_BYTES_PER_PIXEL
            );
        }
        lines.push(BudgetLine {
            component: "decoders",
            detail,
            bytes: decoders,
        });
        let workers = config.detector.workers as u64;
        if config.detector.kind.needs_npu() {
            lines.push(BudgetLine {
                component: "tensors",
                detail: format!(
                    "{workers} NPU context(s) x {} runtime, tensors and RGA imports",
                    human(NPU_CONTEXT_BYTES)
                ),
                bytes: workers * NPU_CONTEXT_BYTES,
            });
            lines.push(BudgetLine {
                component: "model",
                detail: format!(
                    "{} x {workers} context(s) ({})",
                    human(model_bytes),
                    config.detector.model.display()
                ),
                bytes: model_bytes * (workers + 1),
            });
        } else {
            lines.push(BudgetLine {
                component: "tensors",
                detail: format!(
                    "{workers} worker(s) x {} engine scratch and tensors",
                    human(ENGINE_SCRATCH_BYTES)
                ),
                bytes: workers * ENGINE_SCRATCH_BYTES,
            });
            // The load's transient is not a line: it is gone (trimmed)
            // before the pools exist; `loading` prices that moment.
            lines.push(BudgetLine {
                component: "model",
                detail: format!(
                    "{} x {workers} worker(s) x {MODEL_FILE_FACTOR_PERCENT}% ({})",
                    human(model_bytes),
                    config.detector.model.display()
                ),
                bytes: model_bytes * workers * MODEL_FILE_FACTOR_PERCENT / 100,
            });
            loading = FIXED_OVERHEAD_BYTES
                + model_bytes * (workers * MODEL_FILE_FACTOR_PERCENT + MODEL_LOAD_EXTRA_PERCENT)
                    / 100;
        }
        let queue_slots: usize = config
            .cameras
            .iter()
            .map(|c| c.packet_pool + c.frame_pool)
            .sum();
        let queues = (config.events.ring_capacity * std::mem::size_of::<Event>()
            + queue_slots * 2 * std::mem::size_of::<usize>()) as u64;
        lines.push(BudgetLine {
            component: "queues",
            detail: format!(
                "event ring {} + {queue_slots} queue slots",
                config.events.ring_capacity
            ),
            bytes: queues,
        });
        lines.push(events_out(config));
        if recording(config) {
            let r = &config.record;
            let rings = config.cameras.iter().filter(|c| c.compressed()).count();
            let per_camera = crate::record::recorder::camera_bytes(r) as u64;
            let writer = crate::record::recorder::writer_bytes(r, rings) as u64;
            lines.push(BudgetLine {
                component: "recording",
                detail: format!(
                    "{rings} pre-roll ring(s) x {} + fragment buffer {}",
                    human(per_camera),
                    human(r.fragment_size as u64)
                ),
                bytes: rings as u64 * per_camera + writer,
            });
        }
        let web = &config.web;
        let per_connection = 2 * crate::web::server::MAX_BUF as u64
            + WEB_CONNECTION_OVERHEAD_BYTES
            + web.max_body as u64;
        let sse = web.max_sse_clients as u64 * (web.sse_queue as u64 + 1) * SSE_MESSAGE_BYTES
            + (n as u64 + 1) * SSE_MESSAGE_BYTES;
        // The response buffers documents are built in, all lent at once.
        let bodies = (crate::web::bodies::BUFFERS
            * crate::web::bodies::Bodies::size_for(config.cameras.len()))
            as u64;
        lines.push(BudgetLine {
            component: "web",
            detail: format!(
                "{} connection(s) x {} + {} stream(s) x {} messages + {} response buffers x {}",
                web.max_connections,
                human(per_connection),
                web.max_sse_clients,
                web.sse_queue,
                crate::web::bodies::BUFFERS,
                human(crate::web::bodies::Bodies::size_for(config.cameras.len()) as u64)
            ),
            // A file being sent holds the chunk read and the one hyper is
            // writing.
            bytes: web.max_connections as u64 * per_connection
                + (crate::web::files::MAX_FILE_STREAMS * 2 * crate::web::files::CHUNK) as u64
                + bodies
                + sse
                + (crate::web::history::SAMPLES * std::mem::size_of::<crate::web::history::Point>())
                    as u64,
        });
        let test = camera_test(config);
        let update = update(&test);
        lines.push(test);
        lines.push(update);
        let threads = thread_count(config) as u64;
        lines.push(BudgetLine {
            component: "fixed overhead",
            detail: format!("runtime + {threads} threads"),
            bytes: FIXED_OVERHEAD_BYTES
                + threads * THREAD_STACK_BYTES
                + std::mem::size_of::<Registry>() as u64,
        });
        Budget {
            lines,
            loading,
            limit: config.memory_limit,
        }
    }

    /// The sum of every line: what the running pipeline holds.
    pub fn running(&self) -> u64 {
        self.lines.iter().map(|l| l.bytes).sum()
    }

    /// The budget: the larger of the running pipeline and the moment the
    /// models load (before any pool exists), so RSS never exceeds it, at
    /// start or after.
    pub fn total(&self) -> u64 {
        self.running().max(self.loading)
    }

    /// Whether the total fits the limit.
    pub fn fits(&self) -> bool {
        self.total() <= self.limit
    }
}

/// Bytes of one MPP NV12 frame buffer for pictures up to `width` x
/// `height`: MPP aligns both strides to 16.
pub fn mpp_frame_bytes(width: u32, height: u32) -> u64 {
    let (w, h) = (
        u64::from(width.next_multiple_of(16)),
        u64::from(height.next_multiple_of(16)),
    );
    w * h * 3 / 2
}

/// Threads the pipeline runs for `config`: the main (monitor) thread, the
/// runtime's workers and its one blocking thread, a decoder per camera, the
/// inference workers, the events thread and (when recording) the clip
/// writer.
pub fn thread_count(config: &Config) -> usize {
    // main, the runtime's workers and its blocking thread, a thread per
    // camera and per detector, the events thread, the disk thread, and the
    // clip writer when recording.
    1 + config.io_threads
        + 1
        + config.cameras.len()
        + config.detector.workers
        + 1
        + 1
        + usize::from(recording(config))
}

/// Whether the pipeline records clips (and so runs the clip writer): some
/// camera sends compressed video (raw V4L2 cameras have no clips).
fn recording(config: &Config) -> bool {
    config.record.enabled && config.cameras.iter().any(|c| c.compressed())
}

/// The V4L2 cameras' buffers, for the budget's detail column.
fn per_v4l2_camera(config: &Config) -> String {
    config
        .cameras
        .iter()
        .filter_map(|c| {
            let r = c.v4l2.as_ref()?;
            let size = crate::source::v4l2::buffer_size(r, (c.max_width, c.max_height));
            Some(format!(
                "{}: {} x {} ({} {}x{})",
                c.name,
                r.buffers,
                human(size as u64),
                r.format.map_or("any format", |f| f.as_str()),
                c.max_width,
                c.max_height
            ))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Snapshots, the store and the upstream drainers.
fn events_out(config: &Config) -> BudgetLine {
    use crate::snapshot::{JpegWriter, SnapshotBuf};
    let e = &config.events;
    let pictures =
        e.snapshot_pool as u64 * SnapshotBuf::bytes_for(e.snapshot_width, e.snapshot_height) as u64;
    let jpeg = JpegWriter::capacity_for(e.snapshot_width, e.snapshot_height) as u64;
    let jobs = (e.queue * std::mem::size_of::<crate::pipeline::events::EventJob>()) as u64;
    let batch = crate::store::Batch::bytes_for(config.store.batch) as u64;
    let store = config.store.cache + STORE_OVERHEAD_BYTES;
    let upstreams =
        u64::from(config.upstream.http.is_some()) + u64::from(config.upstream.mqtt.is_some());
    // A drainer holds the snapshot it read, its base64 body and the
    // client's copy of the payload.
    let mut per_upstream = jpeg + jpeg.div_ceil(3) * 4 + jpeg + UPSTREAM_CLIENT_BYTES;
    if recording(config) && config.record.upstream == crate::config::ClipDelivery::Upload {
        // A clip upload holds the chunk read from its file and the one
        // hyper is writing, on a connection of its own (its read buffer).
        per_upstream += 2 * crate::upstream::http::CLIP_CHUNK as u64
            + crate::upstream::http::READ_BUF_MAX as u64;
    }
    BudgetLine {
        component: "events out",
        detail: format!(
            "{} snapshot(s) {}x{} + JPEG {} + store cache {} + {upstreams} upstream(s)",
            e.snapshot_pool,
            e.snapshot_width,
            e.snapshot_height,
            human(jpeg),
            human(config.store.cache)
        ),
        bytes: pictures + jpeg + jobs + batch + store + upstreams * per_upstream,
    }
}

fn per_camera(config: &Config, f: impl Fn(&crate::config::CameraConfig) -> String) -> String {
    let mut parts: Vec<String> = config
        .cameras
        .iter()
        .map(|c| format!("{}: {}", c.name, f(c)))
        .collect();
    if parts.len() > 3 {
        let more = parts.len() - 2;
        parts.truncate(2);
        parts.push(format!("{more} more"));
    }
    if parts.is_empty() {
        "no cameras".into()
    } else {
        parts.join(", ")
    }
}

/// Bytes in binary units, e.g. "3.0 MiB".
pub fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

impl fmt::Display for Budget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "memory budget:")?;
        for l in &self.lines {
            writeln!(
                f,
                "  {:<15} {:>10}  {}",
                l.component,
                human(l.bytes),
                l.detail
            )?;
        }
        let total = self.total();
        if self.loading > self.running() {
            writeln!(
                f,
                "  {:<15} {:>10}  peak while the models load, before any pool",
                "loading",
                human(self.loading)
            )?;
        }
        writeln!(f, "  {:<15} {:>10}", "total", human(total))?;
        write!(
            f,
            "  {:<15} {:>10}  ({:.0}% used{})",
            "limit",
            human(self.limit),
            total as f64 * 100.0 / self.limit.max(1) as f64,
            if self.fits() { "" } else { ": OVER THE LIMIT" }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> Config {
        Config::parse(text, "t.toml").unwrap()
    }

    #[test]
    fn grows_with_capacities_and_detects_overrun() {
        let one = config("[[camera]]\nurl = \"a.h264\"\n");
        let b1 = Budget::compute(&one, Backend::Software, 70 << 20);
        let frame = FrameBuf::bytes_for(1920, 1080) as u64;
        assert_eq!(b1.lines[0].bytes, 4 * frame);
        assert_eq!(b1.lines[1].bytes, 8 << 20);
        let two =
            config("[[camera]]\nurl = \"a.h264\"\nframe_pool = 8\n[[camera]]\nurl = \"b.h264\"\n");
        let b2 = Budget::compute(&two, Backend::Software, 70 << 20);
        assert_eq!(b2.lines[0].bytes, 12 * frame);
        assert!(b2.total() > b1.total());
        assert!(b1.fits(), "{b1}");
        let tight = config("memory_limit = \"64MiB\"\n[[camera]]\nurl = \"a.h264\"\n");
        let b = Budget::compute(&tight, Backend::Software, 70 << 20);
        assert!(!b.fits());
        assert!(b.to_string().contains("OVER THE LIMIT"), "{b}");
    }

    #[test]
    fn an_update_fits_in_the_camera_test_s_reserve() {
        let config = Config::parse("[[camera]]\nurl = \"a.h264\"\n", "t").unwrap();
        let b = Budget::compute(&config, Backend::Software, 0);
        let line = |c: &str| b.lines.iter().find(|l| l.component == c).expect(c).clone();
        let (test, update) = (line("camera test"), line("update"));
        let needs = crate::update::RAUC_CLIENT_BYTES + crate::update::rauc::OUTPUT_BYTES as u64;
        assert!(test.bytes >= needs, "{test:?}");
        assert_eq!(update.bytes, 0, "{update:?}");
        assert!(update.detail.contains("one at a time"), "{update:?}");
    }

    #[test]
    fn web_line_follows_the_web_limits() {
        let web = |text: &str| {
            Budget::compute(&config(text), Backend::Software, 1 << 20)
                .lines
                .into_iter()
                .find(|l| l.component == "web")
                .expect("a web line")
                .bytes
        };
        let base = web("[[camera]]\nurl = \"a.h264\"\n");
        let per_connection =
            2 * crate::web::server::MAX_BUF as u64 + WEB_CONNECTION_OVERHEAD_BYTES + (64 << 10);
        let more = web("[web]\nmax_connections = 128\n[[camera]]\nurl = \"a.h264\"\n");
        assert_eq!(more - base, 64 * per_connection);
        let streams = web("[web]\nmax_sse_clients = 16\n[[camera]]\nurl = \"a.h264\"\n");
        assert_eq!(streams - base, 8 * 65 * SSE_MESSAGE_BYTES);
    }

    #[test]
    fn hardware_counts_the_mpp_group_and_npu_contexts() {
        let c = config(
            "[detector]\nkind = \"yolov5\"\nworkers = 3\n[hardware]\ndecoder_buffers = 20\n\
             [[camera]]\nurl = \"a.h264\"\n",
        );
        let b = Budget::compute(&c, Backend::Hardware, 8 << 20);
        let line = |name: &str| b.lines.iter().find(|l| l.component == name).unwrap().bytes;
        assert_eq!(line("frame pools"), 0, "{b}");
        assert_eq!(line("decoders"), 20 * 1920 * 1088 * 3 / 2, "{b}");
        assert_eq!(line("tensors"), 3 * NPU_CONTEXT_BYTES, "{b}");
        assert_eq!(line("model"), 4 * (8 << 20), "{b}");
        assert!(b.fits(), "{b}");
    }

    #[test]
    fn the_model_load_counts_once_and_only_if_it_is_the_peak() {
        let c = config("[[camera]]\nurl = \"a.h264\"\nmax_resolution = \"320x240\"\n");
        let model = |b: &Budget| {
            b.lines
                .iter()
                .find(|l| l.component == "model")
                .unwrap()
                .bytes
        };
        // A small model: the running pipeline is the peak.
        let small = Budget::compute(&c, Backend::Software, 8 << 20);
        assert_eq!(model(&small), 12 << 20, "{small}");
        assert_eq!(small.total(), small.running(), "{small}");
        assert!(!small.to_string().contains("loading"), "{small}");
        // A large one: loading it (150% kept + 100% garbage) is the peak.
        let large = Budget::compute(&c, Backend::Software, 400 << 20);
        assert_eq!(
            large.loading,
            FIXED_OVERHEAD_BYTES + (1000 << 20),
            "{large}"
        );
        assert_eq!(large.total(), large.loading, "{large}");
        assert!(large.total() > large.running());
        assert!(
            large.to_string().contains("peak while the models load"),
            "{large}"
        );
    }

    #[test]
    fn human_units() {
        assert_eq!(human(512), "512 B");
        assert_eq!(human(3 << 20), "3.0 MiB");
    }
}
