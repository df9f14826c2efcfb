//! Recording: the seconds before and after each detection, as a clip of the
//! camera's compressed stream.
//!
//! docs/recording.md is the design note. The parts, in the order a unit
//! meets them:
//!
//! - [`ring::PacketRing`] keeps, per camera, the last access units as
//!   received (H.264/H.265), in a byte arena and an index whose sizes are
//!   fixed at start ([`ring::bytes_for`] is the budget line). The oldest
//!   units are overwritten, the ring always starts at a key frame, and a
//!   reader that falls behind is told it was lapped instead of reading
//!   overwritten bytes.
//! - [`clip::ClipTracker`] decides, per camera, when a clip opens (an
//!   event), what goes in it and when it closes.
//! - [`recorder`] puts the two together at run time: the decoder thread
//!   copies each unit into its camera's ring, inference workers open and
//!   extend clips, and one writer thread turns each clip's stretch of the
//!   ring into a file ([`ClipWriteError`] says why a file stopped).
//! - [`mp4`] is the fragmented MP4 those files are: playable up to the last
//!   whole fragment whatever happens to the process.
//!
//! Why it is built this way: the Python predecessor ended a recording when
//! `now_sec == end_sec + 1`; a gap in the stream skipped that second and the
//! recording task lived forever. Here every end test is `>=` on stream time,
//! backed by the monotonic clock, timestamp jumps, silence, a lapped writer,
//! discontinuities and shutdown, so every clip that opens closes exactly
//! once and the recorder holds nothing after shutdown. Memory is fixed when
//! the ring is made, like every other buffer in vigil: a busy camera loses
//! pre-roll (counted), a slow disk loses clip data (counted), neither grows
//! the heap.
//!
//! The call order per access unit: `ClipTracker::on_unit` first (on `Close`
//! the clip ends before this unit), then `PacketRing::push`; the writer
//! reads the ring later, up to the clip's end. On `Open` the clip starts at
//! `PacketRing::start_for(start_pts_us)`. On a reconnect:
//! `ClipTracker::discontinuity` and `PacketRing::reset`.

pub mod clip;
pub mod mp4;
pub mod recorder;
pub mod ring;
mod write_error;

pub use clip::{Action, Actions, ClipConfig, ClipTracker, CloseReason};
pub use ring::{Cursor, PacketRing, PushOutcome, ReadError, RingStats, UnitRef};
pub use write_error::ClipWriteError;

#[cfg(test)]
mod tests;
