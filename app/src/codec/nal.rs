//! NAL units: their types by name (H.264 Table 7-1, H.265 Table 7-1),
//! Annex-B start-code scanning, and what a NAL unit's first bytes say about
//! access unit boundaries and key frames.
//!
//! Everything here works on borrowed bytes and allocates nothing: the file
//! sources classify every NAL unit they read, and the V4L2 path asks
//! [`has_key_slice`] of every frame a driver does not flag.

use super::Codec;

/// H.264 `nal_unit_type` values (Table 7-1) vigil tells apart.
pub mod h264 {
    /// Coded slice of a non-IDR picture: the first VCL type.
    pub const SLICE: u8 = 1;
    /// Coded slice of an IDR picture: the last VCL type, and a key frame.
    pub const IDR: u8 = 5;
    /// Supplemental enhancement information.
    pub const SEI: u8 = 6;
    /// Sequence parameter set.
    pub const SPS: u8 = 7;
    /// Picture parameter set.
    pub const PPS: u8 = 8;
    /// Access unit delimiter.
    pub const AUD: u8 = 9;
    /// Prefix NAL unit (SVC/MVC): the first of the types 14..=18 (prefix,
    /// subset SPS, depth parameter set, reserved) that start an access unit.
    pub const PREFIX: u8 = 14;
    /// The last type that starts an access unit when it follows a slice
    /// (7.4.1.2.3: reserved 17..=18).
    pub const LAST_AU_START: u8 = 18;
}

/// H.265 `nal_unit_type` values (Table 7-1) vigil tells apart.
pub mod h265 {
    /// The first IRAP type (BLA_W_LP): types 16..=23 are key frames.
    pub const FIRST_IRAP: u8 = 16;
    /// The last IRAP type (RSV_IRAP_VCL23).
    pub const LAST_IRAP: u8 = 23;
    /// The last VCL type (RSV_VCL31); VCL types are 0..=31.
    pub const LAST_VCL: u8 = 31;
    /// Video parameter set.
    pub const VPS: u8 = 32;
    /// Sequence parameter set.
    pub const SPS: u8 = 33;
    /// Picture parameter set.
    pub const PPS: u8 = 34;
    /// Access unit delimiter.
    pub const AUD: u8 = 35;
    /// Prefix SEI.
    pub const PREFIX_SEI: u8 = 39;
    /// Reserved RSV_NVCL41..=44: start an access unit (7.4.2.4.4).
    pub const RESERVED_NVCL: std::ops::RangeInclusive<u8> = 41..=44;
    /// Unspecified UNSPEC48..=55: start an access unit too.
    pub const UNSPECIFIED: std::ops::RangeInclusive<u8> = 48..=55;
}

/// The `nal_unit_type` in a NAL unit's first header byte.
pub fn nal_type(codec: Codec, first_byte: u8) -> u8 {
    match codec {
        Codec::H264 => first_byte & 0x1f,
        Codec::H265 => (first_byte >> 1) & 0x3f,
    }
}

/// Whether `nal_type` is a coded slice (segment).
pub fn is_vcl(codec: Codec, nal_type: u8) -> bool {
    match codec {
        Codec::H264 => (h264::SLICE..=h264::IDR).contains(&nal_type),
        Codec::H265 => nal_type <= h265::LAST_VCL,
    }
}

/// Whether `nal_type` is a slice of a key frame (H.264 IDR, H.265 IRAP).
pub fn is_key_slice(codec: Codec, nal_type: u8) -> bool {
    match codec {
        Codec::H264 => nal_type == h264::IDR,
        Codec::H265 => (h265::FIRST_IRAP..=h265::LAST_IRAP).contains(&nal_type),
    }
}

/// Whether `nal_type` is an access unit delimiter.
pub fn is_aud(codec: Codec, nal_type: u8) -> bool {
    nal_type
        == match codec {
            Codec::H264 => h264::AUD,
            Codec::H265 => h265::AUD,
        }
}

/// Parameter set kinds, in the order hvcC lists its arrays.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParamKind {
    /// Video parameter set (H.265 only).
    Vps,
    /// Sequence parameter set.
    Sps,
    /// Picture parameter set.
    Pps,
}

impl ParamKind {
    /// The kind of parameter set `nal_type` is, if it is one.
    pub fn of(codec: Codec, nal_type: u8) -> Option<ParamKind> {
        match (codec, nal_type) {
            (Codec::H264, h264::SPS) | (Codec::H265, h265::SPS) => Some(ParamKind::Sps),
            (Codec::H264, h264::PPS) | (Codec::H265, h265::PPS) => Some(ParamKind::Pps),
            (Codec::H265, h265::VPS) => Some(ParamKind::Vps),
            _ => None,
        }
    }

    /// The H.265 `nal_unit_type` of this kind (hvcC names its arrays so).
    pub fn h265_type(self) -> u8 {
        match self {
            ParamKind::Vps => h265::VPS,
            ParamKind::Sps => h265::SPS,
            ParamKind::Pps => h265::PPS,
        }
    }
}

/// What the first bytes of a NAL unit say about access unit boundaries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NalHead {
    /// A coded slice (segment).
    pub vcl: bool,
    /// Starts a new access unit when the current one has a slice already.
    pub starts_au: bool,
    /// An IDR / IRAP slice.
    pub key: bool,
    /// A sequence parameter set.
    pub sps: bool,
}

impl NalHead {
    /// Classifies the NAL unit starting at `b` (header, then at least the
    /// first slice header byte to tell a picture's first slice; `b` must not
    /// be empty). Access unit boundaries follow H.264 7.4.1.2.3 and H.265
    /// 7.4.2.4.4: a delimiter, parameter set, SEI (prefix SEI for H.265) or
    /// reserved "first NAL" type after a slice, or a slice that begins a
    /// picture (`first_mb_in_slice == 0`, `first_slice_segment_in_pic_flag
    /// == 1`).
    pub fn classify(codec: Codec, b: &[u8]) -> NalHead {
        let first_bit = |i: usize| b.get(i).is_some_and(|x| x & 0x80 != 0);
        let t = nal_type(codec, b[0]);
        let vcl = is_vcl(codec, t);
        let (starts_au, sps) = match codec {
            Codec::H264 => (
                matches!(t, h264::SEI..=h264::AUD | h264::PREFIX..=h264::LAST_AU_START)
                    || (vcl && first_bit(1)),
                t == h264::SPS,
            ),
            Codec::H265 => (
                matches!(t, h265::VPS..=h265::AUD | h265::PREFIX_SEI)
                    || h265::RESERVED_NVCL.contains(&t)
                    || h265::UNSPECIFIED.contains(&t)
                    || (vcl && first_bit(2)),
                t == h265::SPS,
            ),
        };
        NalHead {
            vcl,
            starts_au,
            key: is_key_slice(codec, t),
            sps,
        }
    }
}

/// Whether the Annex-B access unit `b` holds an IDR / IRAP slice (for
/// sources that do not flag key frames reliably, such as V4L2 drivers).
pub fn has_key_slice(codec: Codec, mut b: &[u8]) -> bool {
    while let Some(at) = find_start_code(b) {
        b = &b[at + 3..];
        if let Some(&first) = b.first() {
            if is_key_slice(codec, nal_type(codec, first)) {
                return true;
            }
        }
    }
    false
}

/// Index of the first `00 00 01` in `b`.
pub fn find_start_code(b: &[u8]) -> Option<usize> {
    let mut i = 0;
    while i + 2 < b.len() {
        match b[i + 2] {
            // No start code can begin at i, i+1 or i+2.
            2.. => i += 3,
            1 if b[i] == 0 && b[i + 1] == 0 => return Some(i),
            _ => i += 1,
        }
    }
    None
}

/// The NAL units of an Annex-B byte string, without start codes and without
/// the zero bytes in front of the next start code (those belong to the byte
/// stream, not the NAL unit). Bytes before the first start code are ignored,
/// and no unit is empty.
pub fn nal_units(b: &[u8]) -> impl Iterator<Item = &[u8]> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_codes_and_units_are_found_in_any_framing() {
        // 4- and 3-byte start codes, trailing zeros, garbage in front, an
        // empty unit between two start codes.
        let b = [0xee, 0, 0, 0, 1, 0x67, 1, 0, 0, 0, 0, 1, 0, 0, 1, 0x68, 2];
        assert_eq!(find_start_code(&b), Some(2));
        let units: Vec<&[u8]> = nal_units(&b).collect();
        assert_eq!(units, [&[0x67, 1][..], &[0x68, 2][..]]);
        assert_eq!(nal_units(b"no start code").count(), 0);
        assert_eq!(find_start_code(&[0, 0]), None);
    }

    #[test]
    fn types_are_named_for_both_codecs() {
        // 0x65: nal_ref_idc 3, IDR; 0x26 0x01: H.265 IDR_W_RADL (19).
        assert_eq!(nal_type(Codec::H264, 0x65), h264::IDR);
        assert_eq!(nal_type(Codec::H265, 0x26), 19);
        assert!(is_key_slice(Codec::H265, 19) && !is_key_slice(Codec::H265, 1));
        assert_eq!(
            ParamKind::of(Codec::H265, nal_type(Codec::H265, 0x42)),
            Some(ParamKind::Sps)
        );
        assert_eq!(ParamKind::of(Codec::H264, h265::VPS), None);
        assert!(is_aud(Codec::H264, nal_type(Codec::H264, 0x09)));
        assert!(is_aud(Codec::H265, nal_type(Codec::H265, 0x46)));
        let head = NalHead::classify(Codec::H264, &[0x65, 0x88]);
        assert_eq!(
            head,
            NalHead {
                vcl: true,
                starts_au: true,
                key: true,
                sps: false
            }
        );
        // A second slice of a picture (first_mb_in_slice != 0) continues it.
        assert!(!NalHead::classify(Codec::H264, &[0x41, 0x40]).starts_au);
        assert!(NalHead::classify(Codec::H265, &[0x42, 0x01]).sps);
        assert!(has_key_slice(
            Codec::H264,
            &[0, 0, 1, 0x09, 0xf0, 0, 0, 1, 0x65]
        ));
        assert!(!has_key_slice(Codec::H264, &[0, 0, 1, 0x41, 0, 0, 1]));
    }
}
