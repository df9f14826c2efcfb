//! Sequence parameter sets of H.264 (7.3.2.1.1, VUI E.1.1) and H.265
//! (7.3.2.2, VUI E.2.1) read into one [`SpsInfo`]: coded size and cropping,
//! chroma format and bit depths, the profile/tier/level fields `hvcC`
//! copies, VUI timing, and whether (and how deeply) pictures are reordered.
//!
//! One walk of each syntax serves every caller: the file sources want the
//! frame rate, the clip muxer the displayed size, the reorder depth and the
//! configuration record's fields. Only the fields up to the size are
//! required; timing and reorder depth come after long optional structures,
//! so a damaged or unusual tail leaves them unknown (timing `None`,
//! reordering assumed) instead of failing the whole SPS.

use super::bits::BitReader;
use super::Codec;

/// The codecs' largest reorder depth in pictures (H.264 `max_dec_frame_buffering`
/// and H.265 `sps_max_dec_pic_buffering` are at most 16).
pub const MAX_REORDER_FRAMES: u32 = 16;

/// What vigil reads from an SPS.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SpsInfo {
    /// The codec whose syntax it was read with.
    pub codec: Codec,
    /// Coded width in luma samples (H.264: macroblocks × 16).
    pub coded_width: u64,
    /// Coded height in luma samples (H.264: map units × 16, × 2 for
    /// field-coded streams, which count map units in field pairs, 7-18).
    pub coded_height: u64,
    /// The cropping (H.264) or conformance (H.265) window in luma samples:
    /// left, right, top, bottom.
    pub crop: [u64; 4],
    /// 0 monochrome, 1 4:2:0, 2 4:2:2, 3 4:4:4.
    pub chroma_format_idc: u8,
    /// Luma bit depth minus 8.
    pub bit_depth_luma_minus8: u8,
    /// Chroma bit depth minus 8.
    pub bit_depth_chroma_minus8: u8,
    /// H.265: the general profile_tier_level fields hvcC copies (profile
    /// space/tier/idc, 32 compatibility flags, 48 constraint bits, level).
    /// Zero for H.264.
    pub general_ptl: [u8; 12],
    /// H.265: sps_max_sub_layers_minus1 + 1 (1 for H.264).
    pub temporal_layers: u8,
    /// H.265: sps_temporal_id_nesting_flag.
    pub temporal_id_nested: bool,
    /// VUI `(num_units_in_tick, time_scale)`, when the SPS states them.
    pub timing: Option<(u32, u32)>,
    /// Whether pictures may be output in another order than decoded
    /// (B-frames): false only when the SPS rules it out (a reorder count
    /// of 0, or an H.264 profile without B slices or references).
    pub reorders: bool,
    /// How many pictures may precede one in decode order and follow it in
    /// output order, where the SPS states it (0 when it does not), at most
    /// [`MAX_REORDER_FRAMES`].
    pub reorder_frames: u8,
    /// H.264 `max_num_ref_frames` (at most 255 kept), which sizes a
    /// decoder's reference pictures; 0 for H.265 (not read).
    pub ref_frames: u8,
}

impl SpsInfo {
    fn new(codec: Codec) -> Self {
        SpsInfo {
            codec,
            coded_width: 0,
            coded_height: 0,
            crop: [0; 4],
            chroma_format_idc: 1,
            bit_depth_luma_minus8: 0,
            bit_depth_chroma_minus8: 0,
            general_ptl: [0; 12],
            temporal_layers: 1,
            temporal_id_nested: false,
            timing: None,
            reorders: true,
            reorder_frames: 0,
            ref_frames: 0,
        }
    }

    /// The displayed size (coded size minus the cropping window), `None`
    /// unless it is a positive size a sample entry can hold.
    pub fn display_size(&self) -> Option<(u16, u16)> {
        let [left, right, top, bottom] = self.crop;
        let w = self.coded_width.checked_sub(left + right)?;
        let h = self.coded_height.checked_sub(top + bottom)?;
        let w = u16::try_from(w).ok().filter(|&w| w > 0)?;
        let h = u16::try_from(h).ok().filter(|&h| h > 0)?;
        Some((w, h))
    }

    /// The frame duration in seconds `(num, den)` from the VUI timing, or
    /// `None` (no timing, or an implausible rate outside 1 ms..10 s per
    /// frame).
    pub fn frame_duration(&self) -> Option<(u64, u64)> {
        let (num_units, time_scale) = self.timing?;
        // H.264 ticks are fields: a frame is two of them.
        let ticks_per_frame = match self.codec {
            Codec::H264 => 2,
            Codec::H265 => 1,
        };
        let num = u64::from(num_units) * ticks_per_frame;
        let den = u64::from(time_scale);
        (num > 0 && den > 0 && num * 1000 >= den && num <= den * 10).then_some((num, den))
    }

    /// Sets the window from its syntax values, which count chroma samples
    /// (H.264 7-19/7-20 with the field factor, H.265 Table 6-1).
    fn set_crop(&mut self, window: [u32; 4], unit: (u64, u64)) {
        let [left, right, top, bottom] = window.map(u64::from);
        self.crop = [left * unit.0, right * unit.0, top * unit.1, bottom * unit.1];
    }
}

/// Reads an SPS NAL unit (header included) of `codec`; `None` when it is
/// truncated or damaged before its size is known.
pub fn parse_sps(codec: Codec, nal: &[u8]) -> Option<SpsInfo> {
    match codec {
        Codec::H264 => parse_h264(nal),
        Codec::H265 => parse_h265(nal),
    }
}

/// Horizontal and vertical chroma subsampling (SubWidthC, SubHeightC): the
/// unit the cropping window counts in.
fn chroma_unit(separate_colour_planes: bool, chroma_format_idc: u8) -> (u64, u64) {
    match (separate_colour_planes, chroma_format_idc) {
        (false, 1) => (2, 2),
        (false, 2) => (2, 1),
        _ => (1, 1),
    }
}

fn read_window(r: &mut BitReader<'_>) -> Option<[u32; 4]> {
    Some([r.ue()?, r.ue()?, r.ue()?, r.ue()?])
}

/// H.264 profiles whose SPS carries chroma format, bit depths and scaling
/// matrices (the High family and the SVC/MVC ones, 7.3.2.1.1).
fn h264_has_chroma_info(profile_idc: u32) -> bool {
    matches!(
        profile_idc,
        100 | 110 | 122 | 244 | 44 | 83 | 86 | 118 | 128 | 138 | 139 | 134 | 135
    )
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

fn parse_h264(nal: &[u8]) -> Option<SpsInfo> {
    let mut r = BitReader::new(nal.get(1..)?);
    let profile_idc = r.u(8)?;
    let constraints = r.u(8)?;
    r.u(8)?; // level_idc
    r.ue_max(31)?; // seq_parameter_set_id
                   // Baseline has no B slices; constraint_set3 makes the High 4:x:x
                   // profiles (and CAVLC 4:4:4) intra only. Otherwise the VUI may say.
    let intra = constraints & 0x10 != 0 && matches!(profile_idc, 100 | 110 | 122 | 244 | 44);
    let mut info = SpsInfo::new(Codec::H264);
    info.reorders = !(profile_idc == 66 || profile_idc == 44 || intra);
    let mut separate_colour_planes = false;
    if h264_has_chroma_info(profile_idc) {
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
    info.ref_frames = u8::try_from(max_num_ref_frames).unwrap_or(u8::MAX);
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
    let (sub_w, sub_h) = chroma_unit(separate_colour_planes, info.chroma_format_idc);
    info.coded_width = width_mbs * 16;
    info.coded_height = fields * height_map_units * 16;
    info.set_crop(window, (sub_w, sub_h * fields));
    let reorder = if r.flag() == Some(true) {
        h264_vui(&mut r, &mut info.timing)
    } else {
        None
    };
    // Without references nothing can be reordered; a damaged VUI leaves the
    // profile's answer.
    if max_num_ref_frames == 0 {
        info.reorders = false;
    } else if let Some(Some(n)) = reorder {
        info.reorders = n > 0;
        info.reorder_frames = n.min(MAX_REORDER_FRAMES) as u8;
    }
    Some(info)
}

/// VUI fields up to and including the chroma location, common to H.264 and
/// H.265.
fn skip_vui_start(r: &mut BitReader<'_>) -> Option<()> {
    if r.flag()? && r.u(8)? == 255 {
        r.u(32)?; // sar_width, sar_height
    }
    if r.flag()? {
        r.u(1)?; // overscan_appropriate_flag
    }
    if r.flag()? {
        r.u(4)?; // video_format, video_full_range_flag
        if r.flag()? {
            r.u(24)?; // colour primaries, transfer, matrix
        }
    }
    if r.flag()? {
        r.ue()?;
        r.ue()?; // chroma sample locations
    }
    Some(())
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

/// Reads the H.264 VUI (E.1.1): the timing into `timing` as soon as it is
/// read, and answers max_num_reorder_frames: `Some(None)` when the VUI has
/// no bitstream restriction, `None` when it cannot be read.
fn h264_vui(r: &mut BitReader<'_>, timing: &mut Option<(u32, u32)>) -> Option<Option<u32>> {
    skip_vui_start(r)?;
    if r.flag()? {
        *timing = Some((r.u(32)?, r.u(32)?));
        r.u(1)?; // fixed_frame_rate_flag
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

fn parse_h265(nal: &[u8]) -> Option<SpsInfo> {
    let mut r = BitReader::new(nal.get(2..)?);
    r.u(4)?; // sps_video_parameter_set_id
    let max_sub_layers_minus1 = r.u(3)?;
    if max_sub_layers_minus1 > 6 {
        return None;
    }
    let mut info = SpsInfo::new(Codec::H265);
    info.temporal_layers = max_sub_layers_minus1 as u8 + 1;
    info.temporal_id_nested = r.flag()?;
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
    info.coded_width = u64::from(r.ue()?);
    info.coded_height = u64::from(r.ue()?);
    let window = if r.flag()? {
        read_window(&mut r)?
    } else {
        [0; 4]
    };
    info.bit_depth_luma_minus8 = r.ue_max(8)? as u8;
    info.bit_depth_chroma_minus8 = r.ue_max(8)? as u8;
    info.set_crop(
        window,
        chroma_unit(separate_colour_planes, info.chroma_format_idc),
    );
    // The rest is optional: unreadable, it leaves `reorders` set (the safe
    // answer) and no timing.
    let _ = h265_reorder_and_timing(&mut r, &mut info, max_sub_layers_minus1);
    Some(info)
}

/// Reads an H.265 SPS from log2_max_pic_order_cnt_lsb_minus4 on: the
/// highest sub-layer's sps_max_num_reorder_pics, then through the rest of
/// the SPS to the VUI timing.
fn h265_reorder_and_timing(
    r: &mut BitReader<'_>,
    info: &mut SpsInfo,
    max_sub_layers_minus1: u32,
) -> Option<()> {
    let log2_max_poc_lsb = r.ue_max(12)? + 4;
    let first = if r.flag()? { 0 } else { max_sub_layers_minus1 };
    let mut pics = 0;
    for _ in first..=max_sub_layers_minus1 {
        r.ue()?; // sps_max_dec_pic_buffering_minus1
        pics = r.ue()?;
        r.ue()?; // sps_max_latency_increase_plus1
    }
    info.reorders = pics > 0;
    info.reorder_frames = pics.min(MAX_REORDER_FRAMES) as u8;
    for _ in 0..6 {
        r.ue()?; // coding/transform block sizes and depths
    }
    if r.flag()? && r.flag()? {
        skip_h265_scaling_list_data(r)?;
    }
    r.u(2)?; // amp_enabled_flag, sample_adaptive_offset_enabled_flag
    if r.flag()? {
        r.u(8)?; // pcm bit depths
        r.ue()?;
        r.ue()?;
        r.u(1)?;
    }
    skip_h265_short_term_ref_pic_sets(r)?;
    if r.flag()? {
        for _ in 0..r.ue_max(32)? {
            r.u(log2_max_poc_lsb)?; // lt_ref_pic_poc_lsb_sps
            r.u(1)?;
        }
    }
    r.u(2)?; // temporal_mvp, strong_intra_smoothing
    if !r.flag()? {
        return None; // no VUI
    }
    skip_vui_start(r)?;
    r.u(3)?; // neutral_chroma, field_seq, frame_field_info_present
    if r.flag()? {
        for _ in 0..4 {
            r.ue()?; // default display window
        }
    }
    if r.flag()? {
        info.timing = Some((r.u(32)?, r.u(32)?));
    }
    Some(())
}

fn skip_h265_scaling_list_data(r: &mut BitReader<'_>) -> Option<()> {
    for size_id in 0..4u32 {
        let mut matrix_id = 0;
        while matrix_id < 6 {
            if !r.flag()? {
                r.ue()?; // scaling_list_pred_matrix_id_delta
            } else {
                let coefs = 64.min(1 << (4 + (size_id << 1)));
                if size_id > 1 {
                    r.se()?;
                }
                for _ in 0..coefs {
                    r.se()?;
                }
            }
            matrix_id += if size_id == 3 { 3 } else { 1 };
        }
    }
    Some(())
}

/// Skips the SPS's st_ref_pic_set()s (7.3.7), which only need each set's
/// delta POC count to read the next one.
fn skip_h265_short_term_ref_pic_sets(r: &mut BitReader<'_>) -> Option<()> {
    let num_sets = r.ue_max(64)? as usize;
    let mut num_delta_pocs = [0u32; 64];
    for i in 0..num_sets {
        let predicted = i != 0 && r.flag()?;
        if predicted {
            r.u(1)?; // delta_rps_sign
            r.ue()?; // abs_delta_rps_minus1
            let mut n = 0;
            for _ in 0..=num_delta_pocs[i - 1] {
                let used = r.flag()?;
                if used || r.flag()? {
                    n += 1;
                }
            }
            num_delta_pocs[i] = n;
        } else {
            let negative = r.ue_max(16)?;
            let positive = r.ue_max(16)?;
            for _ in 0..negative + positive {
                r.ue()?;
                r.u(1)?;
            }
            num_delta_pocs[i] = negative + positive;
        }
    }
    Some(())
}
