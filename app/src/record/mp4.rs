//! Fragmented MP4 for event clips: the camera's access units, copied into
//! `moof`+`mdat` fragments that a browser plays from a plain `<video src>`.
//!
//! Why fragmented: a clip is written while the event is still going on, and
//! the box may lose power or be killed at any moment. A classic MP4 needs
//! its sample tables (in `moov`) written after the last sample; a fragmented
//! one states everything up front (`ftyp`+`moov` with an empty sample table
//! and `mvex`) and then appends self-describing fragments. Every complete
//! fragment on disk is playable, so there is no finalisation step to miss.
//!
//! Why two types: the writer thread serves several cameras in turn, so the
//! big buffers live once in [`FragmentBuilder`] (sized at construction,
//! shared by all clips), while each open clip keeps only its small
//! [`ClipMux`] state (codec, parameter sets, sample entry facts, timeline).
//! Nothing here allocates after construction: units are converted from
//! Annex-B to 4-byte length prefixes straight into the builder's sample
//! area, and the `moof` is written into room reserved in front of it, so a
//! finished fragment is one contiguous slice without a copy.
//!
//! Timing: units carry a pts but no decode time, so the muxer derives one.
//! Every `trun` entry states a signed composition offset (version 1), and
//! which of two models applies depends on the SPS: whether the stream may
//! output pictures in another order than it decodes them (B-frames).
//!
//! Streams that cannot reorder (an SPS with a reorder count of 0, H.264
//! Baseline or intra profiles, no reference frames) are shown in decode
//! order, offsets 0, and each sample's decode time follows its `pts`.
//! Durations are the pts deltas in 90 kHz ticks, clamped to 10 s; a delta
//! that is not positive (a camera's clock stepping back) takes the last
//! plausible frame duration instead. The last sample of a fragment cannot
//! know its successor, so it gets the last frame duration and the next
//! fragment's `tfdt` re-locks the timeline to the pts; where that estimate
//! overshot (jitter), the next fragment starts at the previous one's end
//! instead of overlapping it, and later samples return to their pts. Here
//! pts order and decode order are the same by definition, so a pts out of
//! order can only be a clock fault and must not reorder the pictures.
//!
//! Streams that may reorder (every H.264 Main/High stream without a VUI
//! saying otherwise, H.265 with `sps_max_num_reorder_pics` > 0) arrive in
//! decode order with pts out of order, and each sample is shown exactly at
//! its pts (ticks since the clip's first key frame; gaps are kept whole, a
//! stall shows as a still picture). Decode times must increase, and for
//! players they must not pass the presentation time. With a reorder depth
//! of R (at most R samples decoded before a sample are shown after it: the
//! SPS's count, or the largest seen), the sample decoded i-th is decoded at
//! the (i-R)-th smallest pts of the clip, which is how encoders time them:
//! at most R of the i samples decoded before it are shown after it, so at
//! least i-R are shown before it, and that pts is at or before its own.
//! The times are as evenly spaced as the frames, stalls included.
//!
//! This needs no look-ahead, which matters because a full buffer cuts a
//! fragment anywhere, also inside a reorder group: the pts used as decode
//! times are never among the R largest seen, and a sample still to come
//! can only be shown before those R. So each clip keeps the R largest pts
//! not used yet (at most 16, the codecs' limit) for the next fragment,
//! which merges them with its own; decode times come out the same however
//! the clip is cut. The fragment's last duration runs to the next decode
//! time: the first pts kept back, unless the last one used plus a frame
//! (the mean pts step) is sooner, for a sample still to come that is shown
//! first. Decode times never go below 0 (nor below the previous fragment's
//! end, nor their predecessor's +1): the clip's first R samples, which have
//! no earlier pts to take, get 1-tick durations, still before their pts, as
//! do the first samples of a fragment where R grew.
//!
//! A sample pushed past its pts anyway (a clock stepping back, jitter when
//! R is 0, R found only too late) is shown when it is decoded, offset 0.
//! Negative offsets would keep its pts, but FFmpeg's mov demuxer (and with
//! it Chromium's `<video src>`) adds the largest negative offset it has met
//! so far to every later pts of a fragmented file, moving the pictures
//! after it, so none are written; an `elst` shifting the whole clip instead
//! would need R in the init segment, before the first fragment shows it.
//! Non-key samples with a pts before the first key frame's among a clip's
//! first samples are leading pictures of an open GOP: they refer to
//! pictures before the clip and would be shown before its start, so they
//! are left out.
//!
//! A crash in the middle of writing a fragment leaves a torn one at the end:
//! FFmpeg reads every whole sample before the tear, but Chromium stops there
//! with a decode error instead of ending cleanly. [`complete_len`] tells
//! how much of such a file to keep.

use crate::packet::Codec;
use crate::source::annexb::{find_start_code, BitReader};
use std::io::{Read, Seek, SeekFrom};
use std::sync::atomic::{AtomicU64, Ordering};

/// Ticks per second of the media timeline (the usual video clock, and an
/// integer number of ticks for every common frame rate).
pub const TIMESCALE: u32 = 90_000;

/// Bytes of parameter sets a clip keeps for its sample entry; real cameras
/// send well under 200.
const PARAM_CAPACITY: usize = 512;

/// Parameter set NAL units a clip keeps (VPS, SPS, PPS and a few spares).
const MAX_PARAM_SETS: usize = 8;

/// Frame duration assumed until two samples have shown the real one: 25 fps.
const DEFAULT_DURATION: u32 = TIMESCALE / 25;

/// Longest sample duration written: a larger pts gap is a stall, not a frame.
const MAX_DURATION: u32 = 10 * TIMESCALE;

/// Longest pts delta remembered as the frame duration; longer ones are gaps,
/// which must not become the duration guessed for a fragment's last sample.
const MAX_FRAME_DURATION: u32 = TIMESCALE;

/// The codecs' largest reorder depth in pictures.
const MAX_REORDER_FRAMES: u32 = 16;

/// Samples at the start of a clip that may still be leading pictures of an
/// open GOP (pts before the first key frame's).
const LEADING_SAMPLES: u64 = MAX_REORDER_FRAMES as u64 + 1;

/// Room for `ftyp`+`moov`: about 660 bytes of boxes plus the parameter sets
/// and their length fields (checked by a test with the largest case).
const INIT_CAPACITY: usize = 1024 + PARAM_CAPACITY;

/// `moof` bytes besides the `trun` entries: moof 8, mfhd 16, traf 8,
/// tfhd 16, tfdt (version 1) 20, trun header 20.
const MOOF_FIXED: usize = 88;

/// Bytes per `trun` entry: duration, size, flags, composition offset.
const TRUN_ENTRY: usize = 16;

/// `trun` flags: data offset, then per sample duration, size, flags and
/// composition time offset (signed: version 1).
const TRUN_FLAGS: u32 = 0x01 | 0x100 | 0x200 | 0x400 | 0x800;

/// Bytes of an `mdat` header with a 32-bit size.
const MDAT_HEADER: usize = 8;

/// `sample_depends_on` = 2 (depends on no other sample): a sync sample.
const SYNC_FLAGS: u32 = 0x0200_0000;

/// `sample_depends_on` = 1 plus `sample_is_non_sync_sample`.
const NON_SYNC_FLAGS: u32 = 0x0101_0000;

/// Identity matrix of `mvhd` and `tkhd` (16.16 and 2.30 fixed point).
const MATRIX: [u32; 9] = [0x0001_0000, 0, 0, 0, 0x0001_0000, 0, 0, 0, 0x4000_0000];

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

/// The NAL units of an Annex-B byte string, without start codes and without
/// the zero bytes in front of the next start code (those belong to the byte
/// stream, not the NAL unit). Bytes before the first start code are ignored.
fn nal_units(b: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = find_start_code(b).map(|i| &b[i + 3..]);
    std::iter::from_fn(move || loop {
        let cur = rest?;
        let (nal, next) = match find_start_code(cur) {
            Some(i) => (&cur[..i], Some(&cur[i + 3..])),
            None => (cur, None),
        };
        rest = next;
        let end = nal.iter().rposition(|&x| x != 0).map_or(0, |p| p + 1);
        if end > 0 {
            return Some(&nal[..end]);
        }
    })
}

/// The NAL unit type from the first header byte.
fn nal_type(codec: Codec, nal: &[u8]) -> u8 {
    match codec {
        Codec::H264 => nal[0] & 0x1f,
        Codec::H265 => (nal[0] >> 1) & 0x3f,
    }
}

/// Access unit delimiters only mark boundaries that the MP4 sample table
/// states already, so they are not copied.
fn is_aud(codec: Codec, nal: &[u8]) -> bool {
    nal_type(codec, nal)
        == match codec {
            Codec::H264 => 9,
            Codec::H265 => 35,
        }
}

/// Parameter set kinds, in the order hvcC lists its arrays.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ParamKind {
    Vps,
    Sps,
    Pps,
}

fn param_kind(codec: Codec, nal: &[u8]) -> Option<ParamKind> {
    match (codec, nal_type(codec, nal)) {
        (Codec::H264, 7) | (Codec::H265, 33) => Some(ParamKind::Sps),
        (Codec::H264, 8) | (Codec::H265, 34) => Some(ParamKind::Pps),
        (Codec::H265, 32) => Some(ParamKind::Vps),
        _ => None,
    }
}

/// What the sample entry needs from the SPS besides its bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct SpsInfo {
    /// Displayed size: coded size minus the cropping/conformance window.
    width: u16,
    height: u16,
    chroma_format_idc: u8,
    bit_depth_luma_minus8: u8,
    bit_depth_chroma_minus8: u8,
    /// H.265: the general profile_tier_level fields hvcC copies (profile
    /// space/tier/idc, 32 compatibility flags, 48 constraint bits, level).
    general_ptl: [u8; 12],
    /// H.265: sps_max_sub_layers_minus1 + 1.
    temporal_layers: u8,
    /// H.265: sps_temporal_id_nesting_flag.
    temporal_id_nested: bool,
    /// Whether pictures may be output in another order than decoded
    /// (B-frames): false only when the SPS rules it out (a reorder count
    /// of 0, or an H.264 profile without B slices).
    reorders: bool,
    /// How many pictures may precede one in decode order and follow it in
    /// output order, where the SPS states it (0 when it does not).
    reorder_frames: u8,
}

/// The displayed size from the coded size and the cropping window in chroma
/// units, `None` unless it is a positive size a sample entry can hold.
fn cropped(coded: (u64, u64), unit: (u64, u64), window: [u32; 4]) -> Option<(u16, u16)> {
    let [left, right, top, bottom] = window.map(u64::from);
    let w = coded.0.checked_sub(unit.0 * (left + right))?;
    let h = coded.1.checked_sub(unit.1 * (top + bottom))?;
    let w = u16::try_from(w).ok().filter(|&w| w > 0)?;
    let h = u16::try_from(h).ok().filter(|&h| h > 0)?;
    Some((w, h))
}

fn read_window(r: &mut BitReader<'_>) -> Option<[u32; 4]> {
    Some([r.ue()?, r.ue()?, r.ue()?, r.ue()?])
}

/// Skips one H.264 scaling list (7.3.2.1.1.1): only its length matters here.
fn skip_h264_scaling_list(r: &mut BitReader<'_>, size: usize) -> Option<()> {
    let (mut last, mut next) = (8i64, 8i64);
    for _ in 0..size {
        if next != 0 {
            next = (last + r.se()?).rem_euclid(256);
        }
        if next != 0 {
            last = next;
        }
    }
    Some(())
}

/// Reads an H.264 SPS NAL unit (header included) up to the cropping window.
fn parse_h264_sps(nal: &[u8]) -> Option<SpsInfo> {
    let mut r = BitReader::new(nal.get(1..)?);
    let profile_idc = r.u(8)?;
    let constraints = r.u(8)?;
    r.u(8)?; // level_idc
    r.ue_max(31)?; // seq_parameter_set_id
                   // Baseline has no B slices; constraint_set3 makes the High 4:x:x
                   // profiles (and CAVLC 4:4:4) intra only. Otherwise the VUI may say.
    let intra = constraints & 0x10 != 0 && matches!(profile_idc, 100 | 110 | 122 | 244 | 44);
    let mut info = SpsInfo {
        chroma_format_idc: 1,
        reorders: !(profile_idc == 66 || profile_idc == 44 || intra),
        ..SpsInfo::default()
    };
    let mut separate_colour_planes = false;
    if matches!(
        profile_idc,
        100 | 110 | 122 | 244 | 44 | 83 | 86 | 118 | 128 | 138 | 139 | 134 | 135
    ) {
        info.chroma_format_idc = r.ue_max(3)? as u8;
        if info.chroma_format_idc == 3 {
            separate_colour_planes = r.flag()?;
        }
        info.bit_depth_luma_minus8 = r.ue_max(6)? as u8;
        info.bit_depth_chroma_minus8 = r.ue_max(6)? as u8;
        r.u(1)?; // qpprime_y_zero_transform_bypass_flag
        if r.flag()? {
            let lists = if info.chroma_format_idc == 3 { 12 } else { 8 };
            for i in 0..lists {
                if r.flag()? {
                    skip_h264_scaling_list(&mut r, if i < 6 { 16 } else { 64 })?;
                }
            }
        }
    }
    r.ue_max(12)?; // log2_max_frame_num_minus4
    match r.ue_max(2)? {
        0 => {
            r.ue_max(12)?; // log2_max_pic_order_cnt_lsb_minus4
        }
        1 => {
            r.u(1)?;
            r.se()?;
            r.se()?;
            for _ in 0..r.ue_max(255)? {
                r.se()?;
            }
        }
        _ => {}
    }
    let max_num_ref_frames = r.ue()?;
    r.u(1)?; // gaps_in_frame_num_value_allowed_flag
    let width_mbs = u64::from(r.ue()?) + 1;
    let height_map_units = u64::from(r.ue()?) + 1;
    let frame_mbs_only = r.flag()?;
    if !frame_mbs_only {
        r.u(1)?; // mb_adaptive_frame_field_flag
    }
    r.u(1)?; // direct_8x8_inference_flag
    let window = if r.flag()? {
        read_window(&mut r)?
    } else {
        [0; 4]
    };
    // Field-coded streams count map units in field pairs (7-18), and the
    // vertical crop unit doubles with them (7-19, 7-20).
    let fields = if frame_mbs_only { 1 } else { 2 };
    let (sub_w, sub_h) = match (separate_colour_planes, info.chroma_format_idc) {
        (false, 1) => (2, 2),
        (false, 2) => (2, 1),
        _ => (1, 1),
    };
    let (width, height) = cropped(
        (width_mbs * 16, fields * height_map_units * 16),
        (sub_w, sub_h * fields),
        window,
    )?;
    info.width = width;
    info.height = height;
    // Without references nothing can be reordered; a damaged VUI leaves the
    // profile's answer.
    if max_num_ref_frames == 0 {
        info.reorders = false;
    } else if r.flag() == Some(true) {
        if let Some(Some(n)) = h264_vui_reorder(&mut r) {
            info.reorders = n > 0;
            info.reorder_frames = n.min(MAX_REORDER_FRAMES) as u8;
        }
    }
    Some(info)
}

/// Skips H.264 HRD parameters (E.1.2).
fn skip_h264_hrd(r: &mut BitReader<'_>) -> Option<()> {
    let count = r.ue_max(31)? + 1;
    r.u(8)?; // bit_rate_scale, cpb_size_scale
    for _ in 0..count {
        r.ue()?;
        r.ue()?;
        r.u(1)?;
    }
    r.u(20)?; // four delay/offset lengths
    Some(())
}

/// The VUI's max_num_reorder_frames (E.1.1): `Some(None)` when the VUI has
/// no bitstream restriction, `None` when it cannot be read.
fn h264_vui_reorder(r: &mut BitReader<'_>) -> Option<Option<u32>> {
    if r.flag()? && r.u(8)? == 255 {
        r.u(32)?; // extended sample aspect ratio
    }
    if r.flag()? {
        r.u(1)?; // overscan_appropriate_flag
    }
    if r.flag()? {
        r.u(4)?; // video_format, video_full_range_flag
        if r.flag()? {
            r.u(24)?; // colour description
        }
    }
    if r.flag()? {
        r.ue()?;
        r.ue()?; // chroma sample locations
    }
    if r.flag()? {
        r.u(32)?;
        r.u(32)?;
        r.u(1)?; // timing info
    }
    let nal_hrd = r.flag()?;
    if nal_hrd {
        skip_h264_hrd(r)?;
    }
    let vcl_hrd = r.flag()?;
    if vcl_hrd {
        skip_h264_hrd(r)?;
    }
    if nal_hrd || vcl_hrd {
        r.u(1)?; // low_delay_hrd_flag
    }
    r.u(1)?; // pic_struct_present_flag
    if !r.flag()? {
        return Some(None);
    }
    r.u(1)?; // motion_vectors_over_pic_boundaries_flag
    for _ in 0..4 {
        r.ue()?; // max bytes/bits, motion vector lengths
    }
    Some(Some(r.ue()?))
}

/// Skips the sub-layer part of an H.265 profile_tier_level (7.3.3).
fn skip_h265_sub_layers(r: &mut BitReader<'_>, max_sub_layers_minus1: u32) -> Option<()> {
    let mut present = [(false, false); 7];
    for p in present.iter_mut().take(max_sub_layers_minus1 as usize) {
        *p = (r.flag()?, r.flag()?);
    }
    if max_sub_layers_minus1 > 0 {
        for _ in max_sub_layers_minus1..8 {
            r.u(2)?; // reserved_zero_2bits
        }
    }
    for &(profile, level) in present.iter().take(max_sub_layers_minus1 as usize) {
        if profile {
            r.u(32)?;
            r.u(32)?;
            r.u(24)?;
        }
        if level {
            r.u(8)?;
        }
    }
    Some(())
}

/// Reads an H.265 SPS NAL unit (header included) up to the bit depths.
fn parse_h265_sps(nal: &[u8]) -> Option<SpsInfo> {
    let mut r = BitReader::new(nal.get(2..)?);
    r.u(4)?; // sps_video_parameter_set_id
    let max_sub_layers_minus1 = r.u(3)?;
    if max_sub_layers_minus1 > 6 {
        return None;
    }
    let mut info = SpsInfo {
        temporal_layers: max_sub_layers_minus1 as u8 + 1,
        temporal_id_nested: r.flag()?,
        reorders: true,
        ..SpsInfo::default()
    };
    let ptl = &mut info.general_ptl;
    ptl[0] = r.u(8)? as u8; // profile space, tier flag, profile idc
    ptl[1..5].copy_from_slice(&r.u(32)?.to_be_bytes());
    ptl[5..9].copy_from_slice(&r.u(32)?.to_be_bytes());
    ptl[9..11].copy_from_slice(&(r.u(16)? as u16).to_be_bytes());
    ptl[11] = r.u(8)? as u8; // general_level_idc
    skip_h265_sub_layers(&mut r, max_sub_layers_minus1)?;
    r.ue_max(15)?; // sps_seq_parameter_set_id
    info.chroma_format_idc = r.ue_max(3)? as u8;
    let separate_colour_planes = info.chroma_format_idc == 3 && r.flag()?;
    let coded = (u64::from(r.ue()?), u64::from(r.ue()?));
    let window = if r.flag()? {
        read_window(&mut r)?
    } else {
        [0; 4]
    };
    info.bit_depth_luma_minus8 = r.ue_max(8)? as u8;
    info.bit_depth_chroma_minus8 = r.ue_max(8)? as u8;
    // The conformance window counts chroma samples (Table 6-1).
    let unit = match (separate_colour_planes, info.chroma_format_idc) {
        (false, 1) => (2, 2),
        (false, 2) => (2, 1),
        _ => (1, 1),
    };
    let (width, height) = cropped(coded, unit, window)?;
    info.width = width;
    info.height = height;
    // sps_max_num_reorder_pics of the highest sub-layer; unreadable ones
    // leave `reorders` set, the safe answer.
    let mut reorder = || {
        r.ue_max(12)?; // log2_max_pic_order_cnt_lsb_minus4
        let first = if r.flag()? { 0 } else { max_sub_layers_minus1 };
        let mut pics = 0;
        for _ in first..=max_sub_layers_minus1 {
            r.ue()?; // sps_max_dec_pic_buffering_minus1
            pics = r.ue()?;
            r.ue()?; // sps_max_latency_increase_plus1
        }
        Some(pics)
    };
    if let Some(pics) = reorder() {
        info.reorders = pics > 0;
        info.reorder_frames = pics.min(MAX_REORDER_FRAMES) as u8;
    }
    Some(info)
}

/// One kept parameter set: its kind and where its bytes are.
#[derive(Clone, Copy, Debug)]
struct ParamSet {
    kind: ParamKind,
    start: u16,
    len: u16,
}

/// The last sample written to a clip, for the next one's duration.
#[derive(Clone, Copy, Debug)]
struct LastSample {
    /// Its pts in ticks since the clip's start.
    pts_ticks: i64,
    /// Its decode time following the pts deltas (before any shift that
    /// keeps fragments from overlapping).
    dts: u64,
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
    /// fragments not used as a decode time yet, ascending (see the module
    /// doc); as many as `reorder_frames` once the clip is under way.
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
        let mut clip = ClipMux {
            id: NEXT_CLIP_ID.fetch_add(1, Ordering::Relaxed),
            codec,
            start_pts_us: first_pts_us,
            params: [0; PARAM_CAPACITY],
            sets: [ParamSet {
                kind: ParamKind::Sps,
                start: 0,
                len: 0,
            }; MAX_PARAM_SETS],
            set_count: 0,
            sps: SpsInfo::default(),
            sequence: 0,
            samples: 0,
            last: None,
            end_dts: 0,
            frame_duration: DEFAULT_DURATION,
            pending: [0; MAX_REORDER_FRAMES as usize],
            pending_len: 0,
            last_used: None,
            reorder_frames: 0,
        };
        let (mut bytes, mut count) = (0, 0);
        for nal in nal_units(first_key_unit) {
            let Some(kind) = param_kind(codec, nal) else {
                continue;
            };
            if count < MAX_PARAM_SETS && bytes + nal.len() <= PARAM_CAPACITY {
                clip.params[bytes..bytes + nal.len()].copy_from_slice(nal);
                // Both fit u16: bounded by PARAM_CAPACITY just above.
                clip.sets[count] = ParamSet {
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
        clip.set_count = count;
        let needed: &[(ParamKind, &str)] = match codec {
            Codec::H264 => &[(ParamKind::Sps, "SPS"), (ParamKind::Pps, "PPS")],
            Codec::H265 => &[
                (ParamKind::Vps, "VPS"),
                (ParamKind::Sps, "SPS"),
                (ParamKind::Pps, "PPS"),
            ],
        };
        for &(kind, name) in needed {
            if clip.param_sets(kind).next().is_none() {
                return Err(Mp4Error::MissingParameterSet { codec, name });
            }
        }
        let sps = clip
            .param_sets(ParamKind::Sps)
            .next()
            .expect("checked above");
        clip.sps = match codec {
            Codec::H264 => parse_h264_sps(sps),
            Codec::H265 => parse_h265_sps(sps),
        }
        .ok_or(Mp4Error::BadSps { codec })?;
        clip.reorder_frames = usize::from(clip.sps.reorder_frames);
        Ok(clip)
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
        u32::from(self.sps.width)
    }

    /// Displayed height from the SPS (after cropping).
    pub fn height(&self) -> u32 {
        u32::from(self.sps.height)
    }

    fn param_sets(&self, kind: ParamKind) -> impl Iterator<Item = &[u8]> {
        self.sets[..self.set_count]
            .iter()
            .filter(move |s| s.kind == kind)
            .map(|s| &self.params[usize::from(s.start)..][..usize::from(s.len)])
    }

    /// `pts_us` as ticks since the clip's start (saturating: a wild pts
    /// only yields a clamped duration).
    fn ticks(&self, pts_us: i64) -> i64 {
        let t = (i128::from(pts_us) - i128::from(self.start_pts_us)) * i128::from(TIMESCALE);
        let t = t.div_euclid(1_000_000);
        i64::try_from(t).unwrap_or(if t < 0 { i64::MIN } else { i64::MAX })
    }

    /// The decode time of the next sample following the pts deltas, and
    /// remembers it as the last sample.
    fn advance(&mut self, pts_us: i64) -> u64 {
        let pts_ticks = self.ticks(pts_us);
        let dts = match self.last {
            None => 0,
            Some(last) => {
                let delta = pts_ticks.saturating_sub(last.pts_ticks);
                let step = if delta <= 0 {
                    self.frame_duration
                } else {
                    delta.min(i64::from(MAX_DURATION)) as u32
                };
                if delta > 0 && delta <= i64::from(MAX_FRAME_DURATION) {
                    self.frame_duration = step;
                }
                last.dts + u64::from(step)
            }
        };
        self.last = Some(LastSample { pts_ticks, dts });
        dts
    }

    /// Decode times and composition offsets of a fragment's samples
    /// without reordering: decode times follow the pts deltas, presentation
    /// is decoding (see the module doc).
    fn time_in_order(&mut self, samples: &mut [Sample]) {
        // A fragment never starts before the previous one ended, and a
        // sample never before its predecessor: players expect decode times
        // to increase.
        let mut floor = self.end_dts;
        for s in samples.iter_mut() {
            s.dts = self.advance(s.pts_us).max(floor);
            s.cto = 0;
            floor = s.dts + 1;
        }
        self.end_dts = floor - 1 + u64::from(self.frame_duration);
    }

    /// Decode times and composition offsets of a fragment's samples when
    /// the stream may reorder (see the module doc): `scratch` is room for
    /// one pts per sample and the pending ones.
    fn time_reordered(&mut self, samples: &mut [Sample], scratch: &mut [i64]) {
        let n = samples.len();
        let pending = self.pending_len;
        // The reorder depth: how many samples decoded earlier are shown
        // later, at most (looking back twice the codecs' limit: a clock
        // stepping back is no deeper reordering).
        let window = 2 * MAX_REORDER_FRAMES as usize;
        for (i, s) in samples.iter().enumerate() {
            let t = self.ticks(s.pts_us);
            let earlier = &samples[i.saturating_sub(window)..i];
            let later = earlier.iter().filter(|e| e.pts_us > s.pts_us).count()
                + self.pending[..pending].iter().filter(|&&p| p > t).count();
            self.reorder_frames = self
                .reorder_frames
                .max(later.min(MAX_REORDER_FRAMES as usize));
        }
        // The pending pts and this fragment's, ascending: the first `used`
        // become decode times, the largest `keep` wait for the next
        // fragment. `keep` only grows, as the depth does; the samples that
        // get no pts when it grows (the clip's first ones) are squeezed in
        // just after the previous decode time.
        let merged = &mut scratch[..pending + n];
        merged[..pending].copy_from_slice(&self.pending[..pending]);
        for (m, s) in merged[pending..].iter_mut().zip(samples.iter()) {
            *m = self.ticks(s.pts_us);
        }
        merged.sort_unstable();
        let keep = self.reorder_frames.min(merged.len());
        let used = merged.len() - keep;
        let squeezed = n - used;
        // The frame duration: the mean plausible step between the pts used.
        let (mut sum, mut steps) = (0i64, 0i64);
        let mut previous = self.last_used;
        for &t in &merged[..used] {
            if let Some(p) = previous {
                let delta = t.saturating_sub(p);
                if delta > 0 && delta <= i64::from(MAX_FRAME_DURATION) {
                    sum += delta;
                    steps += 1;
                }
            }
            previous = Some(t);
        }
        if steps > 0 {
            self.frame_duration = (sum / steps) as u32;
        }
        let mut floor = self.end_dts;
        for (k, s) in samples.iter_mut().enumerate() {
            let ideal = k.checked_sub(squeezed).map_or(0, |k| merged[k]);
            s.dts = u64::try_from(ideal).unwrap_or(0).max(floor);
            // Presentation never before decoding: a sample the floor pushed
            // past its pts is shown when decoded (as in-order clips do).
            let pts = self.ticks(s.pts_us);
            let dts = i64::try_from(s.dts).unwrap_or(i64::MAX);
            s.cto = pts.saturating_sub(dts).clamp(0, i64::from(i32::MAX)) as i32;
            floor = s.dts + 1;
        }
        if used > 0 {
            self.last_used = Some(merged[used - 1]);
        }
        // The next decode time is the smallest pts not used yet: the first
        // pending one, unless a sample still to come is shown before it. So
        // the end is that pts, but at most a frame after the last pts used
        // (and after the last decode time), and never before the floor.
        let frame = i64::from(self.frame_duration);
        let mut next = floor - 1 + u64::from(self.frame_duration);
        if let Some(&p) = merged[used..].first() {
            next = next.min(u64::try_from(p).unwrap_or(0));
        }
        if let Some(last) = self.last_used {
            next = next.min(u64::try_from(last.saturating_add(frame)).unwrap_or(0));
        }
        self.end_dts = next.max(floor);
        self.pending[..keep].copy_from_slice(&merged[used..]);
        self.pending_len = keep;
    }
}

/// Big-endian box writer over a fixed slice. Writing past the end writes
/// nothing and sets `overflow`, so a sample entry larger than planned is an
/// error for one clip rather than a panic in the writer thread.
struct Out<'a> {
    buf: &'a mut [u8],
    pos: usize,
    overflow: bool,
}

impl<'a> Out<'a> {
    fn new(buf: &'a mut [u8], pos: usize) -> Self {
        Out {
            buf,
            pos,
            overflow: false,
        }
    }
    fn bytes(&mut self, b: &[u8]) {
        match self.buf.get_mut(self.pos..self.pos + b.len()) {
            Some(dst) if !self.overflow => {
                dst.copy_from_slice(b);
                self.pos += b.len();
            }
            _ => self.overflow = true,
        }
    }
    fn u8(&mut self, v: u8) {
        self.bytes(&[v]);
    }
    fn u16(&mut self, v: u16) {
        self.bytes(&v.to_be_bytes());
    }
    fn u32(&mut self, v: u32) {
        self.bytes(&v.to_be_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.bytes(&v.to_be_bytes());
    }
    fn zeros(&mut self, n: usize) {
        for _ in 0..n {
            self.u8(0);
        }
    }
    /// Opens a box; [`Out::close`] fills in its size.
    fn open(&mut self, kind: &[u8; 4]) -> usize {
        let at = self.pos;
        self.u32(0);
        self.bytes(kind);
        at
    }
    /// Opens a full box (version and flags).
    fn open_full(&mut self, kind: &[u8; 4], version: u8, flags: u32) -> usize {
        let at = self.open(kind);
        self.u32(u32::from(version) << 24 | flags);
        at
    }
    fn close(&mut self, at: usize) {
        if !self.overflow {
            // Below 4 GiB: the buffers are (checked in `FragmentBuilder::new`).
            let size = (self.pos - at) as u32;
            self.buf[at..at + 4].copy_from_slice(&size.to_be_bytes());
        }
    }
    fn matrix(&mut self) {
        for v in MATRIX {
            self.u32(v);
        }
    }
}

/// One pending sample.
#[derive(Clone, Copy, Default)]
struct Sample {
    pts_us: i64,
    /// Filled in by [`FragmentBuilder::finish_fragment`].
    dts: u64,
    /// Presentation minus decode time, filled in with `dts`.
    cto: i32,
    size: u32,
    key: bool,
}

/// The writer thread's one set of buffers, fixed at construction and shared
/// by all clips in turn: one fragment is pending at a time. (No `Debug`:
/// it would print the whole sample area.)
pub struct FragmentBuilder {
    /// Room for the largest moof and the mdat header, then the sample area.
    buf: Box<[u8]>,
    /// Where the sample area starts in `buf`.
    data_start: usize,
    data_len: usize,
    samples: Box<[Sample]>,
    /// Scratch for sorting a fragment's pts with a clip's pending ones.
    sorted: Box<[i64]>,
    count: usize,
    /// The clip whose samples are pending (meaningful while `count > 0`).
    owner: u64,
    init: Box<[u8]>,
}

impl FragmentBuilder {
    /// Buffers for fragments of up to `max_fragment_bytes` of sample data
    /// (length-prefixed NAL units) and `max_samples` samples. The only
    /// allocations this module makes.
    ///
    /// # Panics
    /// When either is zero, or the sample area exceeds what a 32-bit mdat
    /// size can state (configuration bounds keep both far below).
    pub fn new(max_fragment_bytes: usize, max_samples: usize) -> Self {
        assert!(
            max_fragment_bytes > 0 && max_samples > 0,
            "a fragment must hold at least one sample and one byte"
        );
        assert!(
            max_fragment_bytes <= u32::MAX as usize - MDAT_HEADER,
            "fragments are limited to 4 GiB"
        );
        let data_start = Self::header_room(max_samples);
        FragmentBuilder {
            // Resident from the start, like the ring (see `pool::resident`).
            buf: crate::pool::resident(data_start + max_fragment_bytes),
            data_start,
            data_len: 0,
            samples: vec![Sample::default(); max_samples].into_boxed_slice(),
            sorted: vec![0; max_samples + MAX_REORDER_FRAMES as usize].into_boxed_slice(),
            count: 0,
            owner: 0,
            init: vec![0; INIT_CAPACITY].into_boxed_slice(),
        }
    }

    const fn header_room(max_samples: usize) -> usize {
        MOOF_FIXED + TRUN_ENTRY * max_samples + MDAT_HEADER
    }

    /// Bytes [`FragmentBuilder::new`] allocates (the memory budget's line).
    pub const fn bytes_for(max_fragment_bytes: usize, max_samples: usize) -> usize {
        Self::header_room(max_samples)
            + max_fragment_bytes
            + max_samples * (std::mem::size_of::<Sample>() + std::mem::size_of::<i64>())
            + MAX_REORDER_FRAMES as usize * std::mem::size_of::<i64>()
            + INIT_CAPACITY
    }

    /// Samples in the pending fragment.
    pub fn pending_samples(&self) -> usize {
        self.count
    }

    /// Bytes of sample data in the pending fragment.
    pub fn pending_bytes(&self) -> usize {
        self.data_len
    }

    /// Drops the pending fragment (its clip was abandoned, e.g. its file
    /// failed), so the builder can serve another clip.
    pub fn discard_pending(&mut self) {
        self.count = 0;
        self.data_len = 0;
    }

    /// The init segment (`ftyp`+`moov`, no samples) of `clip`: the first
    /// bytes of its file. Does not touch the pending fragment. The area is
    /// sized for the largest parameter sets a `ClipMux` keeps (a test
    /// proves it), so the error means that sizing is wrong.
    pub fn init_segment(&mut self, clip: &ClipMux) -> Result<&[u8], Mp4Error> {
        let sps = &clip.sps;
        let mut o = Out::new(&mut self.init, 0);
        let b = o.open(b"ftyp");
        o.bytes(b"isom");
        o.u32(0x200);
        // iso5/iso6 for default-base-is-moof and tfdt.
        for brand in [b"isom", b"iso5", b"iso6", b"mp41"] {
            o.bytes(brand);
        }
        o.close(b);

        let moov = o.open(b"moov");
        let b = o.open_full(b"mvhd", 0, 0);
        o.zeros(8); // creation and modification time
        o.u32(1000); // movie timescale
        o.u32(0); // duration unknown: fragments follow
        o.u32(0x0001_0000); // rate 1.0
        o.u16(0x0100); // volume 1.0
        o.zeros(10);
        o.matrix();
        o.zeros(24); // pre_defined
        o.u32(2); // next_track_ID
        o.close(b);

        let trak = o.open(b"trak");
        let b = o.open_full(b"tkhd", 0, 0x3); // enabled, in movie
        o.zeros(8);
        o.u32(1); // track_ID
        o.zeros(4);
        o.u32(0); // duration
        o.zeros(8);
        o.u16(0); // layer
        o.u16(0); // alternate_group
        o.u16(0); // volume (video)
        o.zeros(2);
        o.matrix();
        o.u32(u32::from(sps.width) << 16);
        o.u32(u32::from(sps.height) << 16);
        o.close(b);

        let mdia = o.open(b"mdia");
        let b = o.open_full(b"mdhd", 0, 0);
        o.zeros(8);
        o.u32(TIMESCALE);
        o.u32(0);
        o.u16(0x55c4); // language "und"
        o.u16(0);
        o.close(b);
        let b = o.open_full(b"hdlr", 0, 0);
        o.u32(0);
        o.bytes(b"vide");
        o.zeros(12);
        o.bytes(b"VideoHandler\0");
        o.close(b);

        let minf = o.open(b"minf");
        let b = o.open_full(b"vmhd", 0, 1);
        o.zeros(8); // graphicsmode, opcolor
        o.close(b);
        let dinf = o.open(b"dinf");
        let dref = o.open_full(b"dref", 0, 0);
        o.u32(1);
        let b = o.open_full(b"url ", 0, 1); // media in this file
        o.close(b);
        o.close(dref);
        o.close(dinf);

        let stbl = o.open(b"stbl");
        let stsd = o.open_full(b"stsd", 0, 0);
        o.u32(1);
        Self::sample_entry(&mut o, clip);
        o.close(stsd);
        // Empty tables: every sample is in a fragment.
        for kind in [b"stts", b"stsc", b"stco"] {
            let b = o.open_full(kind, 0, 0);
            o.u32(0);
            o.close(b);
        }
        let b = o.open_full(b"stsz", 0, 0);
        o.u32(0);
        o.u32(0);
        o.close(b);
        o.close(stbl);
        o.close(minf);
        o.close(mdia);
        o.close(trak);

        let mvex = o.open(b"mvex");
        let b = o.open_full(b"trex", 0, 0);
        o.u32(1); // track_ID
        o.u32(1); // default_sample_description_index
        o.zeros(12); // duration, size, flags: every trun states its own
        o.close(b);
        o.close(mvex);
        o.close(moov);
        if o.overflow {
            return Err(Mp4Error::InitSegmentTooLarge {
                capacity: INIT_CAPACITY,
            });
        }
        let len = o.pos;
        Ok(&self.init[..len])
    }

    /// avc1 with avcC, or hvc1 with hvcC. The parameter sets go in the
    /// configuration record, as hvc1/avc1 require; their in-band copies stay
    /// in the samples too (see `push`).
    fn sample_entry(o: &mut Out<'_>, clip: &ClipMux) {
        let sps = &clip.sps;
        let entry = o.open(match clip.codec {
            Codec::H264 => b"avc1",
            Codec::H265 => b"hvc1",
        });
        o.zeros(6);
        o.u16(1); // data_reference_index
        o.zeros(16); // pre_defined, reserved
        o.u16(sps.width);
        o.u16(sps.height);
        o.u32(0x0048_0000); // 72 dpi
        o.u32(0x0048_0000);
        o.u32(0);
        o.u16(1); // frame_count
        o.zeros(32); // compressorname
        o.u16(0x0018); // depth
        o.u16(0xffff); // pre_defined = -1
        match clip.codec {
            Codec::H264 => {
                let b = o.open(b"avcC");
                // At least 4 bytes: `ClipMux::new` parsed past them.
                let first = clip.param_sets(ParamKind::Sps).next().unwrap_or_default();
                let profile = first[1];
                o.u8(1);
                o.bytes(&first[1..4]); // profile, compatibility, level
                o.u8(0xfc | 3); // 4-byte lengths
                o.u8(0xe0 | clip.param_sets(ParamKind::Sps).count() as u8);
                for s in clip.param_sets(ParamKind::Sps) {
                    o.u16(s.len() as u16);
                    o.bytes(s);
                }
                o.u8(clip.param_sets(ParamKind::Pps).count() as u8);
                for s in clip.param_sets(ParamKind::Pps) {
                    o.u16(s.len() as u16);
                    o.bytes(s);
                }
                if matches!(profile, 100 | 110 | 122 | 144) {
                    o.u8(0xfc | sps.chroma_format_idc);
                    o.u8(0xf8 | sps.bit_depth_luma_minus8);
                    o.u8(0xf8 | sps.bit_depth_chroma_minus8);
                    o.u8(0); // no SPS extensions
                }
                o.close(b);
            }
            Codec::H265 => {
                let b = o.open(b"hvcC");
                o.u8(1);
                o.bytes(&sps.general_ptl);
                o.u16(0xf000); // min_spatial_segmentation_idc unknown
                o.u8(0xfc); // parallelismType unknown
                o.u8(0xfc | sps.chroma_format_idc);
                o.u8(0xf8 | sps.bit_depth_luma_minus8);
                o.u8(0xf8 | sps.bit_depth_chroma_minus8);
                o.u16(0); // avgFrameRate unknown
                o.u8((sps.temporal_layers << 3) | (u8::from(sps.temporal_id_nested) << 2) | 3);
                o.u8(3);
                for (kind, nal_type) in [
                    (ParamKind::Vps, 32),
                    (ParamKind::Sps, 33),
                    (ParamKind::Pps, 34),
                ] {
                    o.u8(0x80 | nal_type); // array_completeness: all are here
                    o.u16(clip.param_sets(kind).count() as u16);
                    for s in clip.param_sets(kind) {
                        o.u16(s.len() as u16);
                        o.bytes(s);
                    }
                }
                o.close(b);
            }
        }
        o.close(entry);
    }

    /// Adds one access unit (Annex-B, as the packet ring holds it) to the
    /// pending fragment of `clip`, converted to 4-byte length-prefixed NAL
    /// units without access unit delimiters.
    ///
    /// In-band parameter sets are kept: they cost a few dozen bytes per key
    /// frame, FFmpeg and Chromium play avc1/hvc1 samples that repeat the
    /// configuration record's sets (the tests' streams do), and a camera
    /// that re-sends changed ones mid-clip still decodes instead of showing
    /// garbage.
    pub fn push(
        &mut self,
        clip: &ClipMux,
        unit: &[u8],
        pts_us: i64,
        key: bool,
    ) -> Result<(), Mp4Error> {
        if self.count > 0 && self.owner != clip.id {
            return Err(Mp4Error::OtherClipPending);
        }
        if clip.samples == 0 && self.count == 0 && !key {
            return Err(Mp4Error::FirstNotKey);
        }
        if clip.sps.reorders
            && !key
            && clip.samples + (self.count as u64) < LEADING_SAMPLES
            && pts_us < clip.start_pts_us
        {
            // A leading picture of the open GOP the clip starts in: it
            // refers to pictures before the clip and is shown before its
            // start, so it is left out (decoders drop it anyway).
            return Ok(());
        }
        let copied = || nal_units(unit).filter(|n| !is_aud(clip.codec, n));
        let size: usize = copied().map(|n| 4 + n.len()).sum();
        let capacity = self.buf.len() - self.data_start;
        if size == 0 {
            return Err(Mp4Error::EmptyUnit);
        }
        if size > capacity {
            return Err(Mp4Error::UnitTooLarge {
                bytes: size,
                capacity,
            });
        }
        if self.count == self.samples.len() || self.data_len + size > capacity {
            return Err(Mp4Error::FragmentFull);
        }
        let mut o = Out::new(&mut self.buf, self.data_start + self.data_len);
        for nal in copied() {
            // Fits: the sample area is below 4 GiB (checked in `new`).
            o.u32(nal.len() as u32);
            o.bytes(nal);
        }
        self.data_len += size;
        self.samples[self.count] = Sample {
            pts_us,
            dts: 0,
            cto: 0,
            size: size as u32,
            key,
        };
        self.count += 1;
        self.owner = clip.id;
        Ok(())
    }

    /// Finishes the pending fragment (`moof`+`mdat`) and returns its bytes,
    /// empty when no sample is pending. Afterwards the builder is empty and
    /// can serve another clip.
    ///
    /// # Panics
    /// When the pending samples belong to another clip: `push` never mixes
    /// clips, so only finishing with the wrong `ClipMux` gets here.
    pub fn finish_fragment(&mut self, clip: &mut ClipMux) -> &[u8] {
        if self.count == 0 {
            return &[];
        }
        assert!(
            self.owner == clip.id,
            "finish_fragment called with another clip than the pending samples'"
        );
        let samples = &mut self.samples[..self.count];
        if clip.sps.reorders {
            clip.time_reordered(samples, &mut self.sorted);
        } else {
            clip.time_in_order(samples);
        }
        clip.sequence += 1;
        clip.samples += self.count as u64;

        let moof_len = MOOF_FIXED + TRUN_ENTRY * self.count;
        let start = self.data_start - moof_len - MDAT_HEADER;
        let mut o = Out::new(&mut self.buf, start);
        let moof = o.open(b"moof");
        let b = o.open_full(b"mfhd", 0, 0);
        o.u32(clip.sequence);
        o.close(b);
        let traf = o.open(b"traf");
        let b = o.open_full(b"tfhd", 0, 0x02_0000); // default-base-is-moof
        o.u32(1); // track_ID
        o.close(b);
        let b = o.open_full(b"tfdt", 1, 0);
        o.u64(samples[0].dts);
        o.close(b);
        // Data offset, then per-sample duration, size, flags and offset.
        let b = o.open_full(b"trun", 1, TRUN_FLAGS);
        o.u32(self.count as u32);
        o.u32((moof_len + MDAT_HEADER) as u32);
        for (i, s) in samples.iter().enumerate() {
            let next = samples.get(i + 1).map_or(clip.end_dts, |n| n.dts);
            o.u32((next - s.dts) as u32);
            o.u32(s.size);
            o.u32(if s.key { SYNC_FLAGS } else { NON_SYNC_FLAGS });
            o.u32(s.cto as u32);
        }
        o.close(b);
        o.close(traf);
        o.close(moof);
        o.u32((MDAT_HEADER + self.data_len) as u32);
        o.bytes(b"mdat");
        debug_assert!(!o.overflow && o.pos == self.data_start);
        let end = self.data_start + self.data_len;
        self.discard_pending();
        &self.buf[start..end]
    }
}

/// Length of the longest prefix of a clip file made of whole boxes, the
/// init segment and only complete fragments (a `moof` counts once its
/// `mdat` is whole): what to truncate a file to after a crash tore its last
/// fragment. 0 when not even the init segment is whole.
pub fn complete_len<F: Read + Seek>(file: &mut F) -> std::io::Result<u64> {
    let end = file.seek(SeekFrom::End(0))?;
    let (mut pos, mut complete, mut moov) = (0u64, 0u64, false);
    while end - pos >= 8 {
        let mut header = [0u8; 16];
        file.seek(SeekFrom::Start(pos))?;
        file.read_exact(&mut header[..8])?;
        let size = match u32::from_be_bytes([header[0], header[1], header[2], header[3]]) {
            // A 64-bit size follows the type.
            1 if end - pos >= 16 => {
                file.read_exact(&mut header[8..])?;
                u64::from_be_bytes(header[8..].try_into().expect("8 bytes"))
            }
            // Up to the end of the file: whole by definition.
            0 => end - pos,
            size => u64::from(size),
        };
        if size < 8 || size > end - pos {
            break;
        }
        pos += size;
        let kind = &header[4..8];
        moov |= kind == b"moov";
        if moov && kind != b"moof" {
            complete = pos;
        }
    }
    Ok(complete)
}

#[cfg(test)]
mod tests;
