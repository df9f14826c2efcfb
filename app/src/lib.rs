//! vigil: an edge video-analytics appliance whose memory is bounded by
//! construction.
//!
//! # Layout
//! The modules follow the data flow (see docs/ARCHITECTURE.md for the map):
//!
//! - [`config`] and [`budget`]: the file, validated, and the memory it allows.
//! - [`source`]: RTSP and file sources writing access units into
//!   [`packet`] buffers lent by a [`pool`], handed on through a [`queue`].
//! - [`decode`]: decoders turning packets into [`image`] views, copied into
//!   [`frame`] buffers from the camera's frame pool at the [`sampler`]'s rate.
//! - [`detect`]: detectors filling fixed-capacity detection lists.
//! - [`events`]: the tracker that turns detections into events, and the ring
//!   that keeps them.
//! - [`snapshot`], [`store`], [`upstream`]: each event's annotated JPEG, the
//!   durable store with its retention and outbox, and delivery upstream.
//! - [`record`]: the packet ring and clip lifecycle of event recording (the
//!   logic; not yet wired into the pipeline).
//! - [`metrics`] and [`procstat`]: every count, gauge and histogram.
//! - [`pipeline`]: the threads and the wiring; [`cli`]: the commands.
//! - [`alloc_count`], [`shutdown`], [`logger`]: cross-cutting support.
#![deny(missing_docs)]

pub mod alloc_count;
pub mod budget;
pub mod cli;
pub mod config;
pub mod decode;
pub mod detect;
pub mod events;
pub mod frame;
pub mod hw;
pub mod image;
pub mod logger;
pub mod metrics;
pub mod packet;
pub mod pipeline;
pub mod pool;
pub mod procstat;
pub mod queue;
pub mod record;
pub mod sampler;
pub mod shutdown;
pub mod snapshot;
pub mod source;
pub mod store;
pub mod upstream;
pub mod watchdog;
pub mod web;

// Unit tests that prove "no allocation after warm-up" (file sources, the
// software decoder, the detector) read the counting allocator's per-thread
// tallies; a test binary can have only one global allocator, so it lives here.
#[cfg(test)]
#[global_allocator]
static TEST_ALLOCATOR: alloc_count::CountingAllocator = alloc_count::CountingAllocator;
