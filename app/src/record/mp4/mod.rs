//! Fragmented MP4 for event clips: the camera's access units, copied into
//! `moof`+`mdat` fragments that a browser plays from a plain `<video src>`,
//! and playable up to the last whole fragment whatever happens to the
//! process.
//!
//! This file holds [`ClipMux`], one clip's small state (codec, parameter
//! sets, what the sample entry states, timeline), and the errors;
//! [`FragmentBuilder`] (`fragment.rs`) holds the writer's one set of big
//! buffers, `timeline.rs` derives decode times, `boxes.rs` writes the boxes
//! and `recovery.rs` finds the whole fragments of a torn file. Why
//! fragmented, why two types, and how decode times and composition offsets
//! are chosen for streams with and without B-frames: docs/recording.md,
//! "Inside the muxer".

mod boxes;
mod fragment;
mod recovery;
mod timeline;

pub use fragment::FragmentBuilder;
pub use recovery::complete_len;

use crate::codec::nal::nal_type;
use crate::codec::sps::MAX_REORDER_FRAMES;
use crate::codec::{nal_units, parse_sps, Codec, ParamKind, SpsInfo};
use std::sync::atomic::{AtomicU64, Ordering};
use timeline::{LastSample, DEFAULT_DURATION};

/// Ticks per second of the media timeline (the usual video clock, and an
/// integer number of ticks for every common frame rate).
pub const TIMESCALE: u32 = 90_000;

/// Bytes of parameter sets a clip keeps for its sample entry; real cameras
/// send well under 200.
const PARAM_CAPACITY: usize = 512;

/// Parameter set NAL units a clip keeps (VPS, SPS, PPS and a few spares).
const MAX_PARAM_SETS: usize = 8;

/// Samples at the start of a clip that may still be leading pictures of an
/// open GOP (pts before the first key frame's).
const LEADING_SAMPLES: u64 = MAX_REORDER_FRAMES as u64 + 1;

/// Gives each clip an identity, so a builder can refuse to mix two clips'
/// samples in one fragment.
static NEXT_CLIP_ID: AtomicU64 = AtomicU64::new(0);

/// What went wrong while muxing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mp4Error {
    /// The clip's first unit lacks a parameter set its sample entry needs.
    MissingParameterSet {
        /// The clip's codec.
        codec: Codec,
        /// Which one: "SPS", "PPS" or "VPS".
        name: &'static str,
    },
    /// The SPS could not be parsed (truncated, damaged or outside what a
    /// sample entry can describe).
    BadSps {
        /// The clip's codec.
        codec: Codec,
    },
    /// The first unit's parameter sets exceed what a clip keeps.
    ParameterSetsTooLarge {
        /// Their total size.
        bytes: usize,
        /// How many there were.
        count: usize,
    },
    /// A clip's first sample must be a key frame.
    FirstNotKey,
    /// The unit holds no NAL unit besides access unit delimiters (or no
    /// start code at all).
    EmptyUnit,
    /// The pending fragment has no room for the unit: finish it, write it,
    /// and push the unit again.
    FragmentFull,
    /// The unit does not fit even an empty fragment.
    UnitTooLarge {
        /// Bytes the unit needs as length-prefixed NAL units.
        bytes: usize,
        /// The builder's sample area.
        capacity: usize,
    },
    /// The builder holds another clip's unfinished fragment.
    OtherClipPending,
    /// The init segment outgrew its fixed area.
    InitSegmentTooLarge {
        /// The area's size.
        capacity: usize,
    },
}

impl std::fmt::Display for Mp4Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Mp4Error::MissingParameterSet { codec, name } => write!(
                f,
                "the clip's first {codec} unit has no {name}; a clip must start at a key frame \
                 with its parameter sets"
            ),
            Mp4Error::BadSps { codec } => write!(
                f,
                "the clip's {codec} SPS is truncated, damaged or describes an unsupported picture size"
            ),
            Mp4Error::ParameterSetsTooLarge { bytes, count } => write!(
                f,
                "the clip's {count} parameter sets take {bytes} bytes; at most {MAX_PARAM_SETS} \
                 sets of {PARAM_CAPACITY} bytes in total are kept"
            ),
            Mp4Error::FirstNotKey => f.write_str("a clip's first sample must be a key frame"),
            Mp4Error::EmptyUnit => {
                f.write_str("the access unit holds no NAL unit besides delimiters")
            }
            Mp4Error::FragmentFull => {
                f.write_str("the fragment is full: finish it and push the unit again")
            }
            Mp4Error::UnitTooLarge { bytes, capacity } => write!(
                f,
                "an access unit of {bytes} bytes does not fit the fragment's {capacity}-byte \
                 sample area"
            ),
            Mp4Error::OtherClipPending => {
                f.write_str("the fragment builder holds another clip's unfinished fragment")
            }
            Mp4Error::InitSegmentTooLarge { capacity } => write!(
                f,
                "the clip's init segment does not fit its {capacity}-byte area"
            ),
        }
    }
}

impl std::error::Error for Mp4Error {}

/// One kept parameter set: its kind and where its bytes are.
#[derive(Clone, Copy, Debug)]
struct ParamSet {
    kind: ParamKind,
    start: u16,
    len: u16,
}

/// Per-clip muxing state: small and without heap buffers (one per open
/// clip). The parameter sets live in a fixed array.
#[derive(Debug)]
pub struct ClipMux {
    id: u64,
    codec: Codec,
    start_pts_us: i64,
    params: [u8; PARAM_CAPACITY],
    sets: [ParamSet; MAX_PARAM_SETS],
    set_count: usize,
    sps: SpsInfo,
    /// Displayed size from the SPS (after cropping).
    width: u16,
    height: u16,
    /// mfhd sequence number of the last fragment.
    sequence: u32,
    /// Samples in finished fragments.
    samples: u64,
    last: Option<LastSample>,
    /// Decode time just after the last written sample.
    end_dts: u64,
    /// The last plausible pts delta, in ticks.
    frame_duration: u32,
    /// Reordering clips: the largest pts (ticks) of the finished
    /// fragments not used as a decode time yet, ascending (see
    /// docs/recording.md, "Timing"); as many as `reorder_frames` once the clip is under way.
    pending: [i64; MAX_REORDER_FRAMES as usize],
    pending_len: usize,
    /// Reordering clips: the last pts used as a decode time.
    last_used: Option<i64>,
    /// Reordering clips: the reorder depth in pictures, the SPS's or the
    /// largest seen.
    reorder_frames: usize,
}

impl ClipMux {
    /// Starts a clip from its first unit, which must be a key frame carrying
    /// the parameter sets (SPS and PPS, plus VPS for H.265). Only the
    /// parameter sets are read here; the unit itself is pushed like any other.
    pub fn new(codec: Codec, first_key_unit: &[u8], first_pts_us: i64) -> Result<Self, Mp4Error> {
        let mut params = [0; PARAM_CAPACITY];
        let mut sets = [ParamSet {
            kind: ParamKind::Sps,
            start: 0,
            len: 0,
        }; MAX_PARAM_SETS];
        let (mut bytes, mut count) = (0, 0);
        for nal in nal_units(first_key_unit) {
            let Some(kind) = ParamKind::of(codec, nal_type(codec, nal[0])) else {
                continue;
            };
            if count < MAX_PARAM_SETS && bytes + nal.len() <= PARAM_CAPACITY {
                params[bytes..bytes + nal.len()].copy_from_slice(nal);
                // Both fit u16: bounded by PARAM_CAPACITY just above.
                sets[count] = ParamSet {
                    kind,
                    start: bytes as u16,
                    len: nal.len() as u16,
                };
            }
            bytes += nal.len();
            count += 1;
        }
        if count > MAX_PARAM_SETS || bytes > PARAM_CAPACITY {
            return Err(Mp4Error::ParameterSetsTooLarge { bytes, count });
        }
        let kept = |kind| kept_sets(&params, &sets[..count], kind);
        let needed: &[(ParamKind, &str)] = match codec {
            Codec::H264 => &[(ParamKind::Sps, "SPS"), (ParamKind::Pps, "PPS")],
            Codec::H265 => &[
                (ParamKind::Vps, "VPS"),
                (ParamKind::Sps, "SPS"),
                (ParamKind::Pps, "PPS"),
            ],
        };
        for &(kind, name) in needed {
            if kept(kind).next().is_none() {
                return Err(Mp4Error::MissingParameterSet { codec, name });
            }
        }
        let sps = kept(ParamKind::Sps).next().expect("checked above");
        let bad = Mp4Error::BadSps { codec };
        let info = parse_sps(codec, sps).ok_or(bad)?;
        let (width, height) = info.display_size().ok_or(bad)?;
        Ok(ClipMux {
            id: NEXT_CLIP_ID.fetch_add(1, Ordering::Relaxed),
            codec,
            start_pts_us: first_pts_us,
            params,
            sets,
            set_count: count,
            sps: info,
            width,
            height,
            sequence: 0,
            samples: 0,
            last: None,
            end_dts: 0,
            frame_duration: DEFAULT_DURATION,
            pending: [0; MAX_REORDER_FRAMES as usize],
            pending_len: 0,
            last_used: None,
            reorder_frames: usize::from(info.reorder_frames),
        })
    }

    /// Samples in the fragments finished so far.
    pub fn samples(&self) -> u64 {
        self.samples
    }

    /// Fragments finished so far.
    pub fn fragments(&self) -> u32 {
        self.sequence
    }

    /// Displayed width from the SPS (after cropping).
    pub fn width(&self) -> u32 {
        u32::from(self.width)
    }

    /// Displayed height from the SPS (after cropping).
    pub fn height(&self) -> u32 {
        u32::from(self.height)
    }

    /// The kept parameter sets of `kind`, in stream order.
    fn param_sets(&self, kind: ParamKind) -> impl Iterator<Item = &[u8]> + Clone {
        kept_sets(&self.params, &self.sets[..self.set_count], kind)
    }
}

/// The parameter sets of `kind` among `sets`, whose bytes are in `params`.
fn kept_sets<'a>(
    params: &'a [u8],
    sets: &'a [ParamSet],
    kind: ParamKind,
) -> impl Iterator<Item = &'a [u8]> + Clone {
    sets.iter()
        .filter(move |s| s.kind == kind)
        .map(|s| &params[usize::from(s.start)..][..usize::from(s.len)])
}

#[cfg(test)]
mod tests;
