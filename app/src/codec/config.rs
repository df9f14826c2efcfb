//! `avcC` and `hvcC` decoder configuration records (ISO/IEC 14496-15
//! 5.3.3.1, 8.3.3.1): the parameter sets and NAL length size an MP4 sample
//! entry carries. Reading turns one into Annex-B parameter sets (the MP4 file
//! source puts them in front of every key frame); writing builds one from a
//! clip's parameter sets (the clip muxer's sample entry).
//!
//! Writing goes through [`RecordWriter`], so the muxer writes straight into
//! its fixed init-segment area without an intermediate buffer.

use super::nal::ParamKind;
use super::sps::SpsInfo;

const START_CODE: [u8; 4] = [0, 0, 0, 1];

/// Where a configuration record is written: big-endian bytes appended in
/// order (the clip muxer's box writer).
pub trait RecordWriter {
    /// Appends `b`.
    fn put(&mut self, b: &[u8]);

    /// Appends one byte.
    fn put_u8(&mut self, v: u8) {
        self.put(&[v]);
    }

    /// Appends a big-endian `u16`.
    fn put_u16(&mut self, v: u16) {
        self.put(&v.to_be_bytes());
    }
}

fn be(b: &[u8]) -> usize {
    b.iter().fold(0usize, |v, &x| (v << 8) | usize::from(x))
}

/// Appends each `(u16 length, bytes)` NAL unit of `c[*i..]`, `count` of
/// them, Annex-B framed, to `out` (when given).
fn take_nals(c: &[u8], i: &mut usize, count: usize, mut out: Option<&mut Vec<u8>>) -> Option<()> {
    for _ in 0..count {
        let len = be(c.get(*i..*i + 2)?);
        let nal = c.get(*i + 2..*i + 2 + len)?;
        if let Some(out) = out.as_deref_mut() {
            out.extend_from_slice(&START_CODE);
            out.extend_from_slice(nal);
        }
        *i += 2 + len;
    }
    Some(())
}

/// Length size and Annex-B parameter sets (SPS, PPS) of an `avcC` record.
pub fn read_avcc(c: &[u8]) -> Option<(usize, Vec<u8>)> {
    if *c.first()? != 1 {
        return None;
    }
    let length_size = usize::from(c.get(4)? & 3) + 1;
    let mut out = Vec::new();
    let mut i = 6;
    // numOfSequenceParameterSets: the low 5 bits.
    take_nals(c, &mut i, usize::from(c.get(5)? & 0x1f), Some(&mut out))?;
    let pps = usize::from(*c.get(i)?);
    i += 1;
    take_nals(c, &mut i, pps, Some(&mut out))?;
    Some((length_size, out))
}

/// Length size and Annex-B parameter sets (VPS, SPS, PPS, in that order) of
/// an `hvcC` record.
pub fn read_hvcc(c: &[u8]) -> Option<(usize, Vec<u8>)> {
    if *c.first()? != 1 {
        return None;
    }
    let length_size = usize::from(c.get(21)? & 3) + 1;
    let arrays = usize::from(*c.get(22)?);
    let mut out = Vec::new();
    for wanted in [ParamKind::Vps, ParamKind::Sps, ParamKind::Pps] {
        let mut i = 23;
        for _ in 0..arrays {
            // array_completeness, reserved, then the 6-bit NAL unit type.
            let nal_type = c.get(i)? & 0x3f;
            let count = be(c.get(i + 1..i + 3)?);
            i += 3;
            let keep = nal_type == wanted.h265_type();
            take_nals(c, &mut i, count, keep.then_some(&mut out))?;
        }
    }
    Some((length_size, out))
}

/// Appends each set with its 16-bit length.
fn put_sets<'a>(w: &mut impl RecordWriter, sets: impl Iterator<Item = &'a [u8]>) {
    for s in sets {
        w.put_u16(s.len() as u16);
        w.put(s);
    }
}

/// Writes an `avcC` body for 4-byte NAL lengths. `sps` and `pps` are the
/// parameter set NAL units (headers included, each under 64 KiB, at most 31
/// SPS and 255 PPS); the first SPS must hold at least 4 bytes (parsed into
/// `info`). High profile records also state chroma format and bit depths.
pub fn write_avcc<'a, S, P>(w: &mut impl RecordWriter, info: &SpsInfo, sps: S, pps: P)
where
    S: Iterator<Item = &'a [u8]> + Clone,
    P: Iterator<Item = &'a [u8]> + Clone,
{
    let first = sps.clone().next().unwrap_or_default();
    let profile = first.get(1).copied().unwrap_or_default();
    w.put_u8(1); // configurationVersion
    w.put(first.get(1..4).unwrap_or(&[0; 3])); // profile, compatibility, level
    w.put_u8(0xfc | 3); // 4-byte lengths
    w.put_u8(0xe0 | sps.clone().count() as u8);
    put_sets(w, sps);
    w.put_u8(pps.clone().count() as u8);
    put_sets(w, pps);
    if matches!(profile, 100 | 110 | 122 | 144) {
        w.put_u8(0xfc | info.chroma_format_idc);
        w.put_u8(0xf8 | info.bit_depth_luma_minus8);
        w.put_u8(0xf8 | info.bit_depth_chroma_minus8);
        w.put_u8(0); // no SPS extensions
    }
}

/// Writes an `hvcC` body for 4-byte NAL lengths with one complete array per
/// parameter set kind, VPS, SPS, PPS. `sets(kind)` yields that kind's NAL
/// units (headers included, each under 64 KiB).
pub fn write_hvcc<'a, I>(w: &mut impl RecordWriter, info: &SpsInfo, sets: impl Fn(ParamKind) -> I)
where
    I: Iterator<Item = &'a [u8]>,
{
    w.put_u8(1); // configurationVersion
    w.put(&info.general_ptl);
    w.put_u16(0xf000); // min_spatial_segmentation_idc unknown
    w.put_u8(0xfc); // parallelismType unknown
    w.put_u8(0xfc | info.chroma_format_idc);
    w.put_u8(0xf8 | info.bit_depth_luma_minus8);
    w.put_u8(0xf8 | info.bit_depth_chroma_minus8);
    w.put_u16(0); // avgFrameRate unknown
    w.put_u8((info.temporal_layers << 3) | (u8::from(info.temporal_id_nested) << 2) | 3);
    w.put_u8(3); // numOfArrays
    for kind in [ParamKind::Vps, ParamKind::Sps, ParamKind::Pps] {
        w.put_u8(0x80 | kind.h265_type()); // array_completeness: all are here
        w.put_u16(sets(kind).count() as u16);
        put_sets(w, sets(kind));
    }
}
