//! vigil: an edge video-analytics appliance whose memory is bounded by
//! construction.
//!
//! # Layout
//! The modules follow the data flow (docs/ARCHITECTURE.md is the map, and
//! scripts/import-rules.txt the absences `make lint` checks):
//!
//! - [`config`] and [`budget`]: the file, validated, and the memory it allows.
//! - [`codec`]: H.264/H.265 bitstream syntax (NAL units, SPS, `avcC`/`hvcC`),
//!   the one place a parameter set is parsed.
//! - [`source`]: RTSP, file (`.h264`/`.h265`, `.mp4`) and V4L2 sources
//!   writing access units into [`packet`] buffers lent by a [`pool`], handed
//!   on through a [`queue`] (V4L2 raw pictures go straight into frames).
//! - [`decode`]: decoders (openh264, MPP) turning packets into [`image`]
//!   views, copied into [`frame`] buffers at the [`sampler`]'s rate.
//! - [`detect`]: detectors filling fixed-capacity detection lists.
//! - [`events`]: the tracker that turns detections into events, and the ring
//!   that keeps them.
//! - [`snapshot`], [`store`], [`upstream`]: each event's annotated JPEG, the
//!   durable store with its retention and outbox, and delivery upstream
//!   (events and clips).
//! - [`record`]: the pre-roll packet ring, clip lifecycle and fragmented MP4
//!   writer of event recording.
//! - [`hw`]: the RK3588 blocks (MPP, RGA, RKNN) loaded at run time.
//! - [`metrics`] and [`procstat`]: every count, gauge and histogram, and the
//!   process's own readings.
//! - [`web`]: the status page, the JSON API, `/metrics` and SSE.
//! - [`update`]: signed system updates through RAUC and the health gate that
//!   keeps or rolls back a new system.
//! - [`pipeline`]: the threads and the wiring; [`cli`]: the commands and the
//!   monitor.
//! - [`alloc_count`], [`shutdown`], [`logger`], [`log_limit`], [`watchdog`]:
//!   cross-cutting support.
//! - [`disk`]: the thread that runs store calls and file reads off the
//!   runtime.
//! - [`ab`]: the A/B boot state on the boot partition (two checksummed
//!   copies), for RAUC's backend and the update code.
//! - [`version`]: the version vigil reports, stamped into its ELF file.
//! - [`backoff`], [`clock`]: helpers several modules share (retry delays, the
//!   wall clock records are stamped with).
#![deny(missing_docs)]

pub mod ab;
pub mod alloc_count;
pub mod backoff;
pub mod budget;
pub mod camera_probe;
pub mod cli;
pub mod clock;
pub mod codec;
pub mod config;
pub mod decode;
pub mod detect;
pub mod disk;
pub mod events;
pub mod frame;
pub mod hw;
pub mod image;
pub mod log_limit;
pub mod logger;
pub mod metrics;
pub mod packet;
pub mod pipeline;
pub mod pool;
pub mod procstat;
pub mod queue;
pub mod record;
pub mod sampler;
pub mod settings;
pub mod shutdown;
pub mod snapshot;
pub mod source;
pub mod store;
pub mod system;
pub mod timesync;
pub mod update;
pub mod upstream;
pub mod version;
pub mod watchdog;
pub mod web;

#[cfg(test)]
mod test_dir;

// Unit tests that prove "no allocation after warm-up" (file sources, the
// software decoder, the detector) read the counting allocator's per-thread
// tallies; a test binary can have only one global allocator, so it lives here.
#[cfg(test)]
#[global_allocator]
static TEST_ALLOCATOR: alloc_count::CountingAllocator = alloc_count::CountingAllocator;
