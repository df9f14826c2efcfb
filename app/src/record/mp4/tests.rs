//! Box layout, SPS parsing and timing on hand-made units, then real H.264
//! and H.265 streams from ffmpeg muxed and read back by ffprobe/ffmpeg,
//! including a file cut in the middle of its last fragment.

use super::*;
use crate::source::test_media;
use std::path::Path;
use std::process::Command;

/// Bit writer for hand-built parameter sets.
#[derive(Default)]
struct Bits(Vec<bool>);

impl Bits {
    fn u(&mut self, n: u32, v: u64) -> &mut Self {
        for i in (0..n).rev() {
            self.0.push((v >> i) & 1 == 1);
        }
        self
    }
    fn ue(&mut self, v: u64) -> &mut Self {
        let len = 64 - (v + 1).leading_zeros();
        self.u(len - 1, 0).u(len, v + 1)
    }
    fn se(&mut self, v: i64) -> &mut Self {
        self.ue(if v > 0 {
            2 * v as u64 - 1
        } else {
            2 * v.unsigned_abs()
        })
    }
    /// The NAL unit: `header`, then the RBSP with its stop bit and
    /// emulation prevention, as an encoder writes it.
    fn nal(&self, header: &[u8]) -> Vec<u8> {
        let mut bits = self.0.clone();
        bits.push(true);
        while !bits.len().is_multiple_of(8) {
            bits.push(false);
        }
        let mut out = header.to_vec();
        let mut zeros = 0;
        for byte in bits.chunks(8) {
            let b = byte.iter().fold(0u8, |a, &x| (a << 1) | u8::from(x));
            if zeros >= 2 && b <= 3 {
                out.push(3);
                zeros = 0;
            }
            out.push(b);
            zeros = if b == 0 { zeros + 1 } else { 0 };
        }
        out
    }
}

struct H264Sps {
    profile: u64,
    chroma: u64,
    width_mbs: u64,
    height_map_units: u64,
    frame_mbs_only: bool,
    crop: [u64; 4],
    /// A VUI with only max_num_reorder_frames, or none.
    reorder: Option<u64>,
}

fn h264_sps(p: &H264Sps) -> Vec<u8> {
    let mut b = Bits::default();
    b.u(8, p.profile).u(8, 0).u(8, 40).ue(0);
    if p.profile == 100 {
        b.ue(p.chroma);
        if p.chroma == 3 {
            b.u(1, 0);
        }
        b.ue(2).ue(2).u(1, 0); // 10-bit, no transform bypass
        b.u(1, 1); // scaling matrices present: list 0 only, ended at once
        b.u(1, 1).se(-8);
        for _ in 1..(if p.chroma == 3 { 12 } else { 8 }) {
            b.u(1, 0);
        }
    }
    b.ue(0).ue(0).ue(0); // frame_num bits, poc type 0, poc lsb bits
    b.ue(1).u(1, 0);
    b.ue(p.width_mbs - 1).ue(p.height_map_units - 1);
    b.u(1, u64::from(p.frame_mbs_only));
    if !p.frame_mbs_only {
        b.u(1, 0);
    }
    b.u(1, 1);
    b.u(1, u64::from(p.crop != [0; 4]));
    if p.crop != [0; 4] {
        for c in p.crop {
            b.ue(c);
        }
    }
    match p.reorder {
        None => {
            b.u(1, 0); // no VUI
        }
        Some(n) => {
            // VUI: nothing but the bitstream restriction.
            b.u(1, 1).u(8, 0).u(1, 1).u(1, 1);
            b.ue(0).ue(0).ue(0).ue(0).ue(n).ue(n + 1);
        }
    }
    b.nal(&[0x67])
}

/// H.265 Main 4:2:0 SPS, level 3.1, with one sub-layer carrying a level.
fn h265_sps(width: u64, height: u64, window: [u64; 4]) -> Vec<u8> {
    let mut b = Bits::default();
    b.u(4, 0).u(3, 1).u(1, 1); // vps id, max_sub_layers_minus1 = 1, nesting
    b.u(2, 0).u(1, 1).u(5, 1); // profile space 0, high tier, Main
    b.u(32, 0x6000_0000);
    b.u(4, 0b1001).u(44, 0); // progressive, frame only
    b.u(8, 93);
    b.u(1, 0).u(1, 1); // sub-layer 0: level only
    b.u(14, 0); // reserved_zero_2bits for sub-layers 1..8
    b.u(8, 90);
    b.ue(0).ue(1).ue(width).ue(height);
    b.u(1, u64::from(window != [0; 4]));
    if window != [0; 4] {
        for w in window {
            b.ue(w);
        }
    }
    b.ue(0).ue(0);
    b.nal(&[0x42, 0x01])
}

const H264_PPS: &[u8] = &[0x68, 0xce, 0x38, 0x80];
const H265_VPS: &[u8] = &[0x40, 0x01, 0x0c, 0x01, 0xff, 0xff];
const H265_PPS: &[u8] = &[0x44, 0x01, 0xc1, 0x72, 0xb4, 0x62, 0x40];
const H264_AUD: &[u8] = &[0x09, 0xf0];
const H265_AUD: &[u8] = &[0x46, 0x01, 0x50];
const H264_IDR: &[u8] = &[0x65, 0x88, 0x84, 0x00, 0x21];
const H264_P: &[u8] = &[0x41, 0x9a, 0x21, 0x6c];

/// An Annex-B unit, start codes alternating between 4 and 3 bytes.
fn annexb(nals: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, nal) in nals.iter().enumerate() {
        out.extend_from_slice(if i % 2 == 0 {
            &[0, 0, 0, 1]
        } else {
            &[0, 0, 1]
        });
        out.extend_from_slice(nal);
    }
    out
}

fn baseline_1080p() -> Vec<u8> {
    h264_sps(&H264Sps {
        profile: 66,
        chroma: 1,
        width_mbs: 120,
        height_map_units: 68,
        frame_mbs_only: true,
        crop: [0, 0, 0, 4],
        reorder: None,
    })
}

fn h264_key() -> Vec<u8> {
    annexb(&[H264_AUD, &baseline_1080p(), H264_PPS, H264_IDR])
}

fn h265_key() -> Vec<u8> {
    let sps = h265_sps(1920, 1088, [0, 0, 0, 4]);
    annexb(&[
        H265_AUD,
        H265_VPS,
        &sps,
        H265_PPS,
        &[0x26, 0x01, 0xaf, 0x09],
    ])
}

/// The payload of the first `kind` box among the boxes in `b`.
fn child<'a>(b: &'a [u8], kind: &[u8; 4]) -> &'a [u8] {
    let mut i = 0;
    while i + 8 <= b.len() {
        let size = u32::from_be_bytes(b[i..i + 4].try_into().unwrap()) as usize;
        assert!(
            size >= 8 && i + size <= b.len(),
            "bad box size {size} at {i}"
        );
        if &b[i + 4..i + 8] == kind {
            return &b[i + 8..i + size];
        }
        i += size;
    }
    panic!("no {} box", String::from_utf8_lossy(kind));
}

/// The payload at the end of `path`, descending through sample
/// descriptions and sample entries past their own fields.
fn find<'a>(mut b: &'a [u8], path: &[&[u8; 4]]) -> &'a [u8] {
    for (i, kind) in path.iter().enumerate() {
        b = child(b, kind);
        if i + 1 < path.len() {
            b = match *kind {
                b"stsd" | b"dref" => &b[8..],
                b"avc1" | b"hvc1" => &b[78..],
                _ => b,
            };
        }
    }
    b
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(b[at..at + 4].try_into().unwrap())
}

/// What a fragment says, parsed back.
#[derive(Debug)]
struct Fragment {
    sequence: u32,
    tfdt: u64,
    /// (duration, size, flags) per sample.
    samples: Vec<(u32, u32, u32)>,
    /// Composition time offset per sample.
    ctos: Vec<i32>,
    mdat: Vec<u8>,
}

fn parse_fragment(f: &[u8]) -> Fragment {
    let moof_len = be32(f, 0) as usize;
    assert_eq!(&f[4..8], b"moof");
    let moof = child(f, b"moof");
    let traf = child(moof, b"traf");
    let tfhd = child(traf, b"tfhd");
    assert_eq!(be32(tfhd, 0), 0x02_0000, "tfhd: default-base-is-moof only");
    assert_eq!(be32(tfhd, 4), 1, "track 1");
    let tfdt = child(traf, b"tfdt");
    assert_eq!(tfdt[0], 1, "tfdt version 1");
    let trun = child(traf, b"trun");
    assert_eq!(be32(trun, 0), 0x0100_0f01, "version 1, offsets per sample");
    let count = be32(trun, 4) as usize;
    assert_eq!(be32(trun, 8) as usize, moof_len + 8, "data offset");
    let samples = (0..count)
        .map(|i| {
            let at = 12 + 16 * i;
            (be32(trun, at), be32(trun, at + 4), be32(trun, at + 8))
        })
        .collect::<Vec<_>>();
    let ctos = (0..count)
        .map(|i| be32(trun, 24 + 16 * i) as i32)
        .collect::<Vec<_>>();
    assert_eq!(trun.len(), 12 + 16 * count);
    let mdat = child(&f[moof_len..], b"mdat").to_vec();
    assert_eq!(moof_len + 8 + mdat.len(), f.len(), "moof and mdat only");
    let sizes: u32 = samples.iter().map(|s| s.1).sum();
    assert_eq!(sizes as usize, mdat.len());
    Fragment {
        sequence: be32(child(moof, b"mfhd"), 4),
        tfdt: u64::from_be_bytes(tfdt[4..12].try_into().unwrap()),
        samples,
        ctos,
        mdat,
    }
}

#[test]
fn h264_sps_sizes_follow_cropping_fields_and_chroma() {
    let info = parse_h264_sps(&baseline_1080p()).unwrap();
    assert_eq!((info.width, info.height), (1920, 1080));
    assert_eq!(info.chroma_format_idc, 1);

    // 4:2:2 interlaced High 10 with a scaling list: the horizontal crop unit
    // is 2, the vertical one 1 x 2 fields; map units are field pairs.
    let sps = h264_sps(&H264Sps {
        profile: 100,
        chroma: 2,
        width_mbs: 45,
        height_map_units: 18,
        frame_mbs_only: false,
        crop: [2, 2, 0, 2],
        reorder: None,
    });
    let info = parse_h264_sps(&sps).unwrap();
    assert_eq!((info.width, info.height), (720 - 8, 576 - 4));
    assert_eq!(
        (
            info.chroma_format_idc,
            info.bit_depth_luma_minus8,
            info.bit_depth_chroma_minus8
        ),
        (2, 2, 2)
    );

    // 4:4:4: crop units of 1.
    let sps = h264_sps(&H264Sps {
        profile: 100,
        chroma: 3,
        width_mbs: 40,
        height_map_units: 23,
        frame_mbs_only: true,
        crop: [0, 1, 0, 8],
        reorder: None,
    });
    let info = parse_h264_sps(&sps).unwrap();
    assert_eq!((info.width, info.height), (639, 360));

    // Truncated, or cropped away entirely: refused.
    assert_eq!(parse_h264_sps(&baseline_1080p()[..6]), None);
    let sps = h264_sps(&H264Sps {
        profile: 66,
        chroma: 1,
        width_mbs: 2,
        height_map_units: 2,
        frame_mbs_only: true,
        crop: [8, 8, 0, 0],
        reorder: None,
    });
    assert_eq!(parse_h264_sps(&sps), None);
}

#[test]
fn h265_sps_reads_profile_tier_level_and_conformance_window() {
    let sps = h265_sps(1920, 1088, [0, 0, 0, 4]);
    // The zero compatibility and constraint bytes need emulation
    // prevention, which the reader skips.
    assert!(sps.windows(3).any(|w| w == [0, 0, 3]));
    let info = parse_h265_sps(&sps).unwrap();
    assert_eq!((info.width, info.height), (1920, 1080));
    assert_eq!(
        info.general_ptl,
        [0x21, 0x60, 0, 0, 0, 0x90, 0, 0, 0, 0, 0, 93]
    );
    assert_eq!((info.temporal_layers, info.temporal_id_nested), (2, true));
    let info = parse_h265_sps(&h265_sps(328, 184, [2, 2, 0, 2])).unwrap();
    assert_eq!((info.width, info.height), (320, 180));
    assert_eq!(parse_h265_sps(&h265_sps(1920, 1088, [0; 4])[..10]), None);
}

#[test]
fn h264_init_segment_describes_the_stream() {
    let clip = ClipMux::new(Codec::H264, &h264_key(), 5_000_000).unwrap();
    assert_eq!((clip.width(), clip.height()), (1920, 1080));
    let mut builder = FragmentBuilder::new(4096, 8);
    let init = builder.init_segment(&clip).unwrap().to_vec();

    let ftyp = child(&init, b"ftyp");
    assert_eq!(&ftyp[..4], b"isom");
    assert!(ftyp.chunks(4).any(|b| b == b"iso6"));
    let tkhd = find(&init, &[b"moov", b"trak", b"tkhd"]);
    assert_eq!(be32(tkhd, 12), 1, "track_ID");
    assert_eq!((be32(tkhd, 76), be32(tkhd, 80)), (1920 << 16, 1080 << 16));
    let mdhd = find(&init, &[b"moov", b"trak", b"mdia", b"mdhd"]);
    assert_eq!(be32(mdhd, 12), 90_000);
    let hdlr = find(&init, &[b"moov", b"trak", b"mdia", b"hdlr"]);
    assert_eq!(&hdlr[8..12], b"vide");
    let stbl = [b"moov", b"trak", b"mdia", b"minf", b"stbl"];
    let stsd = find(&init, &[&stbl[..], &[b"stsd"]].concat());
    assert_eq!(be32(stsd, 4), 1, "one sample entry");
    let avc1 = find(&init, &[&stbl[..], &[b"stsd", b"avc1"]].concat());
    assert_eq!(
        (&avc1[24..26], &avc1[26..28]),
        (&[7, 128][..], &[4, 56][..])
    );
    let avcc = find(&init, &[&stbl[..], &[b"stsd", b"avc1", b"avcC"]].concat());
    let sps = baseline_1080p();
    let mut expected = vec![1, 66, 0, 40, 0xff, 0xe1, 0, sps.len() as u8];
    expected.extend_from_slice(&sps);
    expected.extend_from_slice(&[1, 0, H264_PPS.len() as u8]);
    expected.extend_from_slice(H264_PPS);
    assert_eq!(avcc, &expected[..]);
    for table in [b"stts", b"stsc", b"stco"] {
        assert_eq!(be32(find(&init, &[&stbl[..], &[table]].concat()), 4), 0);
    }
    let trex = find(&init, &[b"moov", b"mvex", b"trex"]);
    assert_eq!((be32(trex, 4), be32(trex, 8)), (1, 1));
    assert_eq!(init.len(), 8 + ftyp.len() + 8 + child(&init, b"moov").len());

    // High profile records carry chroma format and bit depths.
    let high = h264_sps(&H264Sps {
        profile: 100,
        chroma: 1,
        width_mbs: 40,
        height_map_units: 23,
        frame_mbs_only: true,
        crop: [0, 0, 0, 4],
        reorder: None,
    });
    let clip = ClipMux::new(Codec::H264, &annexb(&[&high[..], H264_PPS]), 0).unwrap();
    let init = builder.init_segment(&clip).unwrap().to_vec();
    let avcc = find(&init, &[&stbl[..], &[b"stsd", b"avc1", b"avcC"]].concat());
    assert_eq!(avcc[avcc.len() - 4..], [0xfd, 0xfa, 0xfa, 0]);
}

#[test]
fn h265_init_segment_has_hvc1_with_hvcc_arrays() {
    let clip = ClipMux::new(Codec::H265, &h265_key(), 0).unwrap();
    assert_eq!((clip.width(), clip.height()), (1920, 1080));
    let mut builder = FragmentBuilder::new(4096, 8);
    let init = builder.init_segment(&clip).unwrap().to_vec();
    let entry = [
        b"moov", b"trak", b"mdia", b"minf", b"stbl", b"stsd", b"hvc1", b"hvcC",
    ];
    let hvcc = find(&init, &entry);
    assert_eq!(hvcc[0], 1);
    assert_eq!(hvcc[1..13], [0x21, 0x60, 0, 0, 0, 0x90, 0, 0, 0, 0, 0, 93]);
    assert_eq!(hvcc[13..21], [0xf0, 0, 0xfc, 0xfd, 0xf8, 0xf8, 0, 0]);
    assert_eq!(
        hvcc[21],
        (2 << 3) | (1 << 2) | 3,
        "2 layers, nested, 4-byte lengths"
    );
    assert_eq!(hvcc[22], 3, "VPS, SPS and PPS arrays");
    let mut at = 23;
    for (nal_type, nal) in [
        (32, H265_VPS.to_vec()),
        (33, h265_sps(1920, 1088, [0, 0, 0, 4])),
        (34, H265_PPS.to_vec()),
    ] {
        assert_eq!(hvcc[at..at + 3], [0x80 | nal_type, 0, 1]);
        let len = usize::from(u16::from_be_bytes([hvcc[at + 3], hvcc[at + 4]]));
        assert_eq!(&hvcc[at + 5..at + 5 + len], &nal[..]);
        at += 5 + len;
    }
    assert_eq!(at, hvcc.len());
}

#[test]
fn the_largest_parameter_sets_fit_the_init_segment() {
    for codec in [Codec::H264, Codec::H265] {
        let mut nals = match codec {
            Codec::H264 => vec![baseline_1080p()],
            Codec::H265 => vec![H265_VPS.to_vec(), h265_sps(1920, 1088, [0; 4])],
        };
        let used: usize = nals.iter().map(Vec::len).sum();
        let pps = match codec {
            Codec::H264 => H264_PPS,
            Codec::H265 => H265_PPS,
        };
        let spare = MAX_PARAM_SETS - nals.len();
        let each = (PARAM_CAPACITY - used) / spare;
        for i in 0..spare {
            let mut p = pps.to_vec();
            let len = if i == 0 {
                PARAM_CAPACITY - used - each * (spare - 1)
            } else {
                each
            };
            p.resize(len, 0x5a);
            nals.push(p);
        }
        let refs: Vec<&[u8]> = nals.iter().map(Vec::as_slice).collect();
        let clip = ClipMux::new(codec, &annexb(&refs), 0).unwrap();
        let init = FragmentBuilder::new(64, 1)
            .init_segment(&clip)
            .unwrap()
            .len();
        assert!(init <= INIT_CAPACITY, "{codec}: {init}");

        // One byte more is refused when the clip starts.
        let mut bigger = refs.clone();
        let one_more: &[u8] = match codec {
            Codec::H264 => &[0x68, 1],
            Codec::H265 => &[0x44, 1],
        };
        bigger.push(one_more);
        let err = ClipMux::new(codec, &annexb(&bigger), 0).unwrap_err();
        assert!(matches!(
            err,
            Mp4Error::ParameterSetsTooLarge { count: 9, .. }
        ));
        assert!(err.to_string().contains("9 parameter sets"), "{err}");
    }
}

#[test]
fn units_become_length_prefixed_without_delimiters() {
    // 4- and 3-byte start codes, trailing zero bytes before a start code,
    // garbage before the first start code.
    let key = h264_key();
    let mut unit = vec![0xee];
    unit.extend_from_slice(&key);
    unit.extend_from_slice(&[0, 0, 0]);
    let clip_unit = unit.clone();
    let mut clip = ClipMux::new(Codec::H264, &clip_unit, 0).unwrap();
    let mut builder = FragmentBuilder::new(4096, 8);
    builder.push(&clip, &unit, 0, true).unwrap();
    builder
        .push(&clip, &annexb(&[H264_AUD, H264_P]), 40_000, false)
        .unwrap();
    let frag = parse_fragment(builder.finish_fragment(&mut clip));
    let mut expected = Vec::new();
    for nal in [&baseline_1080p()[..], H264_PPS, H264_IDR, H264_P] {
        expected.extend_from_slice(&(nal.len() as u32).to_be_bytes());
        expected.extend_from_slice(nal);
    }
    assert_eq!(frag.mdat, expected);
    assert_eq!(
        frag.samples,
        vec![
            (3600, (expected.len() - 4 - H264_P.len()) as u32, SYNC_FLAGS),
            (3600, 4 + H264_P.len() as u32, NON_SYNC_FLAGS),
        ]
    );
    assert_eq!((frag.sequence, frag.tfdt), (1, 0));
    assert_eq!((clip.samples(), clip.fragments()), (2, 1));
    assert_eq!(builder.pending_samples(), 0);
    assert!(builder.finish_fragment(&mut clip).is_empty());

    // H.265 delimiters (type 35) go too.
    let mut clip = ClipMux::new(Codec::H265, &h265_key(), 0).unwrap();
    builder.push(&clip, &h265_key(), 0, true).unwrap();
    let frag = parse_fragment(builder.finish_fragment(&mut clip));
    let first_len = be32(&frag.mdat, 0) as usize;
    assert_eq!(&frag.mdat[4..4 + first_len], H265_VPS);
}

#[test]
fn full_fragments_and_oversize_units_are_refused() {
    let key = h264_key();
    let p = annexb(&[H264_P]); // 8 bytes as a sample
    let mut clip = ClipMux::new(Codec::H264, &key, 0).unwrap();
    let key_size = (4 + baseline_1080p().len()) + (4 + H264_PPS.len()) + (4 + H264_IDR.len());
    let mut builder = FragmentBuilder::new(key_size + 8, 3);
    builder.push(&clip, &key, 0, true).unwrap();
    builder.push(&clip, &p, 40_000, false).unwrap();
    assert_eq!(builder.pending_bytes(), key_size + 8);
    assert_eq!(
        builder.push(&clip, &p, 80_000, false),
        Err(Mp4Error::FragmentFull)
    );
    let frag = parse_fragment(builder.finish_fragment(&mut clip));
    assert_eq!(frag.samples.len(), 2);
    // The refused unit goes into the next fragment.
    builder.push(&clip, &p, 80_000, false).unwrap();
    builder.push(&clip, &p, 120_000, false).unwrap();
    builder.push(&clip, &p, 160_000, false).unwrap();
    assert_eq!(
        builder.push(&clip, &p, 200_000, false),
        Err(Mp4Error::FragmentFull),
        "max_samples reached"
    );
    let big = annexb(&[&[0x41; 200][..]]);
    let err = builder.push(&clip, &big, 200_000, false).unwrap_err();
    assert_eq!(
        err,
        Mp4Error::UnitTooLarge {
            bytes: 204,
            capacity: key_size + 8
        }
    );
    assert!(err.to_string().contains("204 bytes"), "{err}");
    let frag = parse_fragment(builder.finish_fragment(&mut clip));
    assert_eq!((frag.sequence, frag.samples.len()), (2, 3));
    assert_eq!(clip.samples(), 5);
}

#[test]
fn bad_input_is_refused_with_a_reason() {
    let sps = baseline_1080p();
    let err = ClipMux::new(Codec::H264, &annexb(&[&sps[..], H264_IDR]), 0).unwrap_err();
    assert_eq!(
        err,
        Mp4Error::MissingParameterSet {
            codec: Codec::H264,
            name: "PPS"
        }
    );
    assert!(err.to_string().contains("no PPS"), "{err}");
    let sps5 = h265_sps(1920, 1088, [0; 4]);
    let err = ClipMux::new(Codec::H265, &annexb(&[&sps5[..], H265_PPS]), 0).unwrap_err();
    assert!(err.to_string().contains("h265 unit has no VPS"), "{err}");
    let err = ClipMux::new(Codec::H264, &annexb(&[&sps[..5], H264_PPS]), 0).unwrap_err();
    assert_eq!(err, Mp4Error::BadSps { codec: Codec::H264 });
    assert!(err.to_string().contains("SPS"), "{err}");

    let mut a = ClipMux::new(Codec::H264, &h264_key(), 0).unwrap();
    let mut b = ClipMux::new(Codec::H264, &h264_key(), 0).unwrap();
    let mut builder = FragmentBuilder::new(4096, 8);
    let p = annexb(&[H264_AUD, H264_P]);
    assert_eq!(builder.push(&a, &p, 0, false), Err(Mp4Error::FirstNotKey));
    assert_eq!(
        builder.push(&a, &annexb(&[H264_AUD]), 0, true),
        Err(Mp4Error::EmptyUnit)
    );
    assert_eq!(
        builder.push(&a, b"no start code", 0, true),
        Err(Mp4Error::EmptyUnit)
    );
    builder.push(&a, &h264_key(), 0, true).unwrap();
    assert_eq!(
        builder.push(&b, &h264_key(), 0, true),
        Err(Mp4Error::OtherClipPending)
    );
    // Abandoning a's fragment frees the builder for b.
    builder.discard_pending();
    builder.push(&b, &h264_key(), 0, true).unwrap();
    assert_eq!(parse_fragment(builder.finish_fragment(&mut b)).sequence, 1);
    assert_eq!(a.samples(), 0);
    builder.push(&a, &h264_key(), 0, true).unwrap();
    assert_eq!(parse_fragment(builder.finish_fragment(&mut a)).sequence, 1);
}

#[test]
fn timeline_follows_pts_through_gaps_steps_back_and_jitter() {
    let key = h264_key();
    let p = annexb(&[H264_P]);
    let start = 1_000_000;
    let mut clip = ClipMux::new(Codec::H264, &key, start).unwrap();
    let mut builder = FragmentBuilder::new(4096, 16);
    let mut fragment = |clip: &mut ClipMux, pts_ms: &[i64]| {
        for (i, ms) in pts_ms.iter().enumerate() {
            let first = clip.samples() == 0 && i == 0;
            let unit = if first { &key } else { &p };
            builder.push(clip, unit, start + ms * 1000, first).unwrap();
        }
        parse_fragment(builder.finish_fragment(clip))
    };
    let durations = |f: &Fragment| f.samples.iter().map(|s| s.0).collect::<Vec<_>>();

    // A 2 s gap is kept; a step back takes the last frame duration (the
    // gap is not one); the last sample takes it too.
    let f = fragment(&mut clip, &[0, 40, 80, 2080, 2120, 2100]);
    assert_eq!(f.tfdt, 0);
    assert_eq!(durations(&f), [3600, 3600, 180_000, 3600, 3600, 3600]);
    assert_eq!(f.samples[0].2, SYNC_FLAGS);
    assert!(f.samples[1..].iter().all(|s| s.2 == NON_SYNC_FLAGS));
    // Baseline: shown in decode order, even where the pts steps back.
    assert!(f.ctos.iter().all(|&c| c == 0));
    // The next fragment starts at its pts delta from the last sample
    // (60 ms after 2100), after the previous fragment's end.
    let f = fragment(&mut clip, &[2160, 2200]);
    assert_eq!((f.sequence, f.tfdt), (2, 194_400 + 5400));
    assert_eq!(durations(&f), [3600, 3600]);
    // Jitter: 30 ms after the last sample is before the previous fragment's
    // estimated end, so the fragment starts at that end and the next sample
    // is back on its pts. A gap over 10 s is cut to 10 s.
    let f = fragment(&mut clip, &[2230, 2270, 20_270]);
    assert_eq!(f.tfdt, 203_400 + 3600);
    assert_eq!(durations(&f), [209_700 - 207_000, 900_000, 3600]);
    assert_eq!(clip.samples(), 11);
}

#[test]
fn complete_len_keeps_whole_fragments_of_a_torn_file() {
    let key = h264_key();
    let p = annexb(&[H264_AUD, H264_P]);
    let mut clip = ClipMux::new(Codec::H264, &key, 0).unwrap();
    let mut builder = FragmentBuilder::new(4096, 8);
    let mut file = builder.init_segment(&clip).unwrap().to_vec();
    let mut boundaries = vec![file.len()];
    for f in 0..3i64 {
        for i in 0..4i64 {
            let unit = if f == 0 && i == 0 { &key } else { &p };
            let pts = (f * 4 + i) * 40_000;
            builder.push(&clip, unit, pts, f == 0 && i == 0).unwrap();
        }
        file.extend_from_slice(builder.finish_fragment(&mut clip));
        boundaries.push(file.len());
    }
    for cut in 0..=file.len() {
        let expected = boundaries.iter().rev().find(|&&b| b <= cut).copied();
        let mut torn = std::io::Cursor::new(&file[..cut]);
        assert_eq!(
            complete_len(&mut torn).unwrap(),
            expected.unwrap_or(0) as u64,
            "cut at {cut}"
        );
    }
}

/// Runs a command, panicking with its stderr unless it succeeds.
fn run(cmd: &mut Command) -> (String, String) {
    let out = cmd.output().unwrap_or_else(|e| {
        panic!(
            "cannot run {:?} ({e}): these tests need ffmpeg and ffprobe \
             (apt-get install ffmpeg, or scripts/install-deps.sh media)",
            cmd.get_program()
        )
    });
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{cmd:?} failed: {stderr}");
    (String::from_utf8_lossy(&out.stdout).into_owned(), stderr)
}

/// 4 s of 320x180 (cropped from 320x192 / 320x184) at 25 fps, a key frame
/// every 25, parameter sets in front of every key frame, delimiters.
fn elementary_stream(codec: Codec) -> Vec<u8> {
    let src = "-f lavfi -i testsrc=size=320x180:rate=25 -t 4 -pix_fmt yuv420p";
    let path = match codec {
        Codec::H264 => test_media::ffmpeg(
            "mp4-mux.h264",
            &format!(
                "{src} -c:v libx264 -preset ultrafast -bf 0 -g 25 \
                 -x264-params repeat-headers=1 -bsf:v h264_metadata=aud=insert -f h264 {{out}}"
            ),
        ),
        Codec::H265 => test_media::ffmpeg(
            "mp4-mux.h265",
            &format!(
                "{src} -c:v libx265 -preset ultrafast -g 25 \
                 -x265-params repeat-headers=1:bframes=0:log-level=error \
                 -bsf:v hevc_metadata=aud=insert -f hevc {{out}}"
            ),
        ),
    };
    std::fs::read(path).unwrap()
}

/// Access units (cut at each delimiter) and whether each is a key frame.
fn access_units(codec: Codec, stream: &[u8]) -> Vec<(Vec<u8>, bool)> {
    let mut units: Vec<(Vec<u8>, bool)> = Vec::new();
    for nal in nal_units(stream) {
        if is_aud(codec, nal) {
            units.push((Vec::new(), false));
        }
        let (data, key) = units.last_mut().expect("stream starts with a delimiter");
        let t = nal_type(codec, nal);
        *key |= match codec {
            Codec::H264 => t == 5,
            Codec::H265 => (16..=23).contains(&t),
        };
        data.extend_from_slice(if data.is_empty() {
            &[0, 0, 0, 1]
        } else {
            &[0, 0, 1]
        });
        data.extend_from_slice(nal);
    }
    units
}

/// Stream time of unit `i`: 25 fps from an arbitrary origin, a little
/// jitter, and a 2 s stall before unit 60, as a camera's clock delivers it.
fn pts_us(i: usize) -> i64 {
    const JITTER: [i64; 4] = [0, 1500, -1200, 700];
    let stall = if i >= 60 { 2_000_000 } else { 0 };
    7_000_000_000 + i as i64 * 40_000 + JITTER[i % 4] + stall
}

/// A clip file: fragments of 1 s or of what fits `fragment_bytes`, unit
/// `i` at `pts[i]`. Returns the file and, per fragment, where it ends and
/// how many samples it holds.
fn mux(
    codec: Codec,
    units: &[(Vec<u8>, bool)],
    pts: &[i64],
    fragment_bytes: usize,
) -> (Vec<u8>, Vec<(usize, usize)>) {
    let pts_us = |i: usize| pts[i];
    let mut builder = FragmentBuilder::new(fragment_bytes, 64);
    let mut clip = ClipMux::new(codec, &units[0].0, pts_us(0)).unwrap();
    let mut file = builder.init_segment(&clip).unwrap().to_vec();
    let mut fragments = Vec::new();
    let mut finish = |b: &mut FragmentBuilder, clip: &mut ClipMux, file: &mut Vec<u8>| {
        let n = b.pending_samples();
        file.extend_from_slice(b.finish_fragment(clip));
        fragments.push((file.len(), n));
    };
    for (i, (unit, key)) in units.iter().enumerate() {
        if builder.pending_samples() == 25 {
            finish(&mut builder, &mut clip, &mut file);
        }
        match builder.push(&clip, unit, pts_us(i), *key) {
            Err(Mp4Error::FragmentFull) => {
                finish(&mut builder, &mut clip, &mut file);
                builder.push(&clip, unit, pts_us(i), *key).unwrap();
            }
            r => r.unwrap(),
        }
    }
    finish(&mut builder, &mut clip, &mut file);
    assert_eq!(clip.samples(), units.len() as u64);
    (file, fragments)
}

fn ffprobe(path: &Path, entries: &str) -> serde_json::Value {
    let (out, _) = run(Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-count_frames",
            "-select_streams",
            "v:0",
            "-show_entries",
            entries,
            "-of",
            "json",
        ])
        .arg(path));
    serde_json::from_str(&out).unwrap()
}

fn check_with_ffmpeg(codec: Codec, name: &str) {
    let units = access_units(codec, &elementary_stream(codec));
    assert_eq!(units.len(), 100);
    assert_eq!(
        units.iter().filter(|u| u.1).count(),
        4,
        "a key frame per second"
    );
    // 1 s fragments, then fragments cut by size: room for the largest unit
    // and a little (length prefixes add at most 1 byte per NAL unit).
    let largest = units.iter().map(|u| u.0.len()).max().unwrap();
    let clip = ClipMux::new(codec, &units[0].0, 0).unwrap();
    assert!(!clip.sps.reorders, "{codec}: the SPS rules out B-frames");
    let pts: Vec<i64> = (0..units.len()).map(pts_us).collect();
    for (fragment_bytes, tag) in [(1 << 20, "1s"), (largest + largest / 4, "small")] {
        let (file, fragments) = mux(codec, &units, &pts, fragment_bytes);
        if tag == "1s" {
            assert_eq!(fragments.len(), 4);
        } else {
            assert!(fragments.len() > 4, "{}", fragments.len());
        }
        let path = test_media::dir().join(format!("{name}-{tag}.mp4"));
        std::fs::write(&path, &file).unwrap();

        let info = ffprobe(
            &path,
            "stream=codec_name,codec_tag_string,width,height,nb_read_frames",
        );
        let s = &info["streams"][0];
        assert_eq!(
            s["codec_name"],
            codec.as_str().replace("h265", "hevc"),
            "{info}"
        );
        assert_eq!(
            s["codec_tag_string"],
            match codec {
                Codec::H264 => "avc1",
                Codec::H265 => "hvc1",
            }
        );
        assert_eq!(
            (s["width"].as_u64(), s["height"].as_u64()),
            (Some(320), Some(180))
        );
        assert_eq!(s["nb_read_frames"], "100", "{info}");

        let packets = ffprobe(&path, "packet=pts_time,flags");
        let packets = packets["packets"].as_array().unwrap();
        assert_eq!(packets.len(), 100);
        let mut previous = -1.0;
        for (i, p) in packets.iter().enumerate() {
            let t: f64 = p["pts_time"].as_str().unwrap().parse().unwrap();
            let expected = (pts_us(i) - pts_us(0)) as f64 / 1e6;
            assert!(t > previous, "packet {i} at {t} after {previous}");
            assert!(
                (t - expected).abs() < 0.005,
                "packet {i} at {t}, pts {expected}"
            );
            assert_eq!(
                p["flags"].as_str().unwrap().starts_with('K'),
                units[i].1,
                "packet {i}"
            );
            previous = t;
        }

        let (_, errors) = run(Command::new("ffmpeg")
            .args(["-nostdin", "-v", "error", "-i"])
            .arg(&path)
            .args(["-f", "null", "-"]));
        assert_eq!(errors, "", "decoding {}", path.display());

        // Killed after a fragment: exactly the fragments written read.
        // Killed in the middle of one: those, plus whichever samples of the
        // torn fragment are wholly on disk (FFmpeg reads those too).
        let (before_last, _) = fragments[fragments.len() - 2];
        let (end, last) = fragments[fragments.len() - 1];
        let frames = |len: usize| {
            let cut = test_media::dir().join(format!("{name}-{tag}-cut.mp4"));
            std::fs::write(&cut, &file[..len]).unwrap();
            let info = ffprobe(&cut, "stream=nb_read_frames");
            info["streams"][0]["nb_read_frames"]
                .as_str()
                .and_then(|n| n.parse::<usize>().ok())
                .unwrap_or_else(|| panic!("{tag}: {info}"))
        };
        assert_eq!(frames(before_last), 100 - last, "{tag}");
        let torn = frames((before_last + end) / 2);
        assert!((100 - last..100).contains(&torn), "{tag}: {torn}");
        let mut cut = std::io::Cursor::new(&file[..(before_last + end) / 2]);
        assert_eq!(complete_len(&mut cut).unwrap(), before_last as u64);
    }
}

#[test]
fn ffprobe_reads_h264_clips_and_their_cut_copies() {
    check_with_ffmpeg(Codec::H264, "mux-h264");
}

#[test]
fn ffprobe_reads_h265_clips_and_their_cut_copies() {
    check_with_ffmpeg(Codec::H265, "mux-h265");
}

#[test]
fn muxing_allocates_nothing_after_construction() {
    let before = crate::alloc_count::thread_counts().ours;
    drop(std::hint::black_box(Box::new(7u64)));
    assert!(
        crate::alloc_count::thread_counts().ours > before,
        "alloc_count::CountingAllocator is not the test binary's global allocator"
    );
    let key = h264_key();
    let p = annexb(&[H264_AUD, H264_P]);
    let key5 = h265_key();
    let mut builder = FragmentBuilder::new(1024, 16);
    let mut written = 0;
    let before = crate::alloc_count::thread_counts().ours;
    for round in 0..20i64 {
        let (codec, key) = if round % 2 == 0 {
            (Codec::H264, &key)
        } else {
            (Codec::H265, &key5)
        };
        let mut clip = ClipMux::new(codec, key, round * 1_000_000).unwrap();
        written += builder.init_segment(&clip).unwrap().len();
        for i in 0..40 {
            let unit = if i % 10 == 0 { key } else { &p };
            let pts = round * 1_000_000 + i * 40_000;
            if builder.push(&clip, unit, pts, i % 10 == 0) == Err(Mp4Error::FragmentFull) {
                written += builder.finish_fragment(&mut clip).len();
                builder.push(&clip, unit, pts, i % 10 == 0).unwrap();
            }
        }
        written += builder.finish_fragment(&mut clip).len();
    }
    let allocations = crate::alloc_count::thread_counts().ours - before;
    assert!(written > 20 * 40 * 8);
    assert_eq!(allocations, 0, "allocations while muxing");
}

/// 4 s of 320x180 at 25 fps with B-frames (x264: up to 3 with a pyramid,
/// reorder depth 2; x265: 2 with a pyramid), a key frame every 25, parameter sets in front of every key frame, delimiters;
/// and each access unit's pts in µs, in decode order. Encoded into MP4
/// first, where ffprobe reads the true pts of every packet, then copied out
/// as Annex-B, packet for packet.
fn b_frame_stream(codec: Codec) -> (Vec<(Vec<u8>, bool)>, Vec<i64>) {
    let src = "-f lavfi -i testsrc=size=320x180:rate=25 -t 4 -pix_fmt yuv420p";
    let (name, encode, bsf, format) = match codec {
        Codec::H264 => (
            "mp4-mux-b.h264",
            "-c:v libx264 -preset medium -bf 3 -g 25 -x264-params repeat-headers=1",
            "h264_mp4toannexb,h264_metadata=aud=insert",
            "h264",
        ),
        Codec::H265 => (
            "mp4-mux-b.h265",
            "-c:v libx265 -preset ultrafast -g 25 \
             -x265-params repeat-headers=1:bframes=2:b-pyramid=1:log-level=error",
            "hevc_mp4toannexb,hevc_metadata=aud=insert",
            "hevc",
        ),
    };
    let mp4 = test_media::ffmpeg(&format!("{name}.mp4"), &format!("{src} {encode} {{out}}"));
    let stream = test_media::ffmpeg(
        name,
        &format!(
            "-i {} -c copy -bsf:v {bsf} -f {format} {{out}}",
            mp4.display()
        ),
    );
    let units = access_units(codec, &std::fs::read(stream).unwrap());
    let info = ffprobe(&mp4, "packet=pts_time");
    let pts: Vec<i64> = info["packets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let t: f64 = p["pts_time"].as_str().unwrap().parse().unwrap();
            (t * 1e6).round() as i64
        })
        .collect();
    assert_eq!(units.len(), pts.len());
    (units, pts)
}

/// A B-frame clip muxed with 1 s fragments and with small ones cut
/// anywhere, inside reorder groups too: every frame decodes, decode times
/// increase, and every frame is shown at its pts.
fn check_b_frames_with_ffmpeg(codec: Codec, name: &str) {
    let (units, true_pts) = b_frame_stream(codec);
    assert_eq!(units.len(), 100);
    assert_eq!(units.iter().filter(|u| u.1).count(), 4);
    assert!(
        true_pts.windows(2).any(|w| w[1] < w[0]),
        "{codec}: decode order is not presentation order"
    );
    let clip = ClipMux::new(codec, &units[0].0, 0).unwrap();
    assert!(clip.sps.reorders, "{codec}");
    // A camera's clock: an arbitrary origin, jitter in capture order (as
    // for the streams without B-frames), and a 2 s stall before the frames
    // shown from 2.4 s on.
    const JITTER: [i64; 4] = [0, 1500, -1200, 700];
    let pts: Vec<i64> = true_pts
        .iter()
        .map(|&t| {
            let stall = if t >= 2_400_000 { 2_000_000 } else { 0 };
            7_000_000_000 + t + JITTER[(t / 40_000) as usize % 4] + stall
        })
        .collect();
    let largest = units.iter().map(|u| u.0.len()).max().unwrap();
    let mut decode_times = Vec::new();
    for (fragment_bytes, tag) in [(1 << 20, "1s"), (largest + largest / 4, "small")] {
        let (file, fragments) = mux(codec, &units, &pts, fragment_bytes);
        if tag == "1s" {
            assert_eq!(fragments.len(), 4);
        } else {
            assert!(fragments.len() > 4, "{}", fragments.len());
        }
        // Offsets are never negative (FFmpeg would shift later pts).
        let mut at = 16 + child(&file, b"ftyp").len() + child(&file, b"moov").len();
        let mut shown_before = i64::MIN;
        let mut split = false;
        let mut decoded = 0;
        for &(end, n) in &fragments {
            let f = parse_fragment(&file[at..end]);
            assert_eq!(f.samples.len(), n);
            assert!(f.ctos.iter().all(|&c| c >= 0), "{tag}: {:?}", f.ctos);
            at = end;
            let here = &pts[decoded..decoded + n];
            split |= here.iter().any(|&t| t < shown_before);
            shown_before = shown_before.max(*here.iter().max().unwrap());
            decoded += n;
        }
        assert_eq!(split, tag == "small", "{tag}: cuts inside reorder groups");
        let path = test_media::dir().join(format!("{name}-{tag}.mp4"));
        std::fs::write(&path, &file).unwrap();

        let info = ffprobe(&path, "stream=nb_read_frames");
        assert_eq!(info["streams"][0]["nb_read_frames"], "100", "{tag}: {info}");
        let packets = ffprobe(&path, "packet=pts_time,dts_time");
        let packets = packets["packets"].as_array().unwrap();
        assert_eq!(packets.len(), 100);
        let time =
            |p: &serde_json::Value, key: &str| -> f64 { p[key].as_str().unwrap().parse().unwrap() };
        let mut shown = Vec::new();
        for (i, p) in packets.iter().enumerate() {
            let (t, dts) = (time(p, "pts_time"), time(p, "dts_time"));
            if i > 0 {
                let before = time(&packets[i - 1], "dts_time");
                assert!(dts > before, "{tag}: packet {i} dts {dts} after {before}");
            }
            assert!(dts <= t, "{tag}: packet {i} decoded at {dts}, shown at {t}");
            let expected = (pts[i] - pts[0]) as f64 / 1e6;
            assert!(
                (t - expected).abs() < 0.005,
                "{tag}: packet {i} at {t}, pts {expected}"
            );
            shown.push(t);
        }
        // Wherever the fragments are cut, the decode times are the same.
        let dts: Vec<&str> = packets
            .iter()
            .map(|p| p["dts_time"].as_str().unwrap())
            .collect();
        if decode_times.is_empty() {
            decode_times = dts.iter().map(|d| d.to_string()).collect();
        } else {
            assert_eq!(dts, decode_times, "{tag}");
        }
        shown.sort_by(f64::total_cmp);
        assert!(shown.windows(2).all(|w| w[0] < w[1]), "{tag}");

        let (_, errors) = run(Command::new("ffmpeg")
            .args(["-nostdin", "-v", "error", "-i"])
            .arg(&path)
            .args(["-f", "null", "-"]));
        assert_eq!(errors, "", "decoding {}", path.display());
    }
}

#[test]
fn ffmpeg_plays_h264_clips_with_b_frames() {
    check_b_frames_with_ffmpeg(Codec::H264, "mux-b-h264");
}

#[test]
fn ffmpeg_plays_h265_clips_with_b_frames() {
    check_b_frames_with_ffmpeg(Codec::H265, "mux-b-h265");
}

/// Decode and presentation time of every sample in `fragments`, checking
/// that decode times increase across fragment boundaries too.
fn sample_times(fragments: &[Fragment]) -> Vec<(u64, i64)> {
    let mut times = Vec::new();
    let mut end = 0;
    for f in fragments {
        assert!(
            f.tfdt >= end,
            "tfdt {} before the previous end {end}",
            f.tfdt
        );
        let mut dts = f.tfdt;
        for (s, &cto) in f.samples.iter().zip(&f.ctos) {
            assert!(s.0 > 0, "{f:?}");
            times.push((dts, dts as i64 + i64::from(cto)));
            dts += u64::from(s.0);
        }
        end = dts;
    }
    times
}

fn high_profile_key(reorder: Option<u64>) -> Vec<u8> {
    let sps = h264_sps(&H264Sps {
        profile: 100,
        chroma: 1,
        width_mbs: 40,
        height_map_units: 23,
        frame_mbs_only: true,
        crop: [0, 0, 0, 4],
        reorder,
    });
    annexb(&[H264_AUD, &sps, H264_PPS, H264_IDR])
}

/// Decode order of a B-pyramid: I0 P4 B2 b1 b3 P8 B6 b5 b7 ..., in frames.
fn pyramid(frames: usize) -> Vec<i64> {
    let mut order = vec![0];
    let mut base = 0;
    while order.len() < frames {
        order.extend([base + 4, base + 2, base + 1, base + 3]);
        base += 4;
    }
    order.truncate(frames);
    order
}

#[test]
fn the_sps_says_whether_pictures_are_reordered() {
    let reorders = |key: &[u8]| {
        let clip = ClipMux::new(Codec::H264, key, 0).unwrap();
        (clip.sps.reorders, clip.reorder_frames)
    };
    assert_eq!(reorders(&h264_key()), (false, 0), "Baseline");
    assert_eq!(reorders(&high_profile_key(None)), (true, 0), "High, no VUI");
    assert_eq!(reorders(&high_profile_key(Some(0))), (false, 0));
    assert_eq!(reorders(&high_profile_key(Some(2))), (true, 2));
}

#[test]
fn reordered_samples_are_shown_at_their_pts_across_any_cut() {
    let p = annexb(&[H264_AUD, H264_P]);
    let start = 3_000_000;
    let order = pyramid(21);
    for (reorder, cuts) in [
        // Fragments cut before every other P frame, as the writer cuts
        // before key frames: whole reorder groups.
        (Some(2), &[9, 17][..]),
        (None, &[9, 17][..]),
        // Cut inside reorder groups, the first right after I0 P4.
        (Some(2), &[2, 4, 7, 12, 13, 19][..]),
    ] {
        let key = high_profile_key(reorder);
        let mut clip = ClipMux::new(Codec::H264, &key, start).unwrap();
        let mut builder = FragmentBuilder::new(4096, 16);
        let mut fragments = Vec::new();
        for (i, &frame) in order.iter().enumerate() {
            if cuts.contains(&i) {
                fragments.push(parse_fragment(builder.finish_fragment(&mut clip)));
            }
            let unit = if i == 0 { &key } else { &p };
            builder
                .push(&clip, unit, start + frame * 40_000, i == 0)
                .unwrap();
        }
        fragments.push(parse_fragment(builder.finish_fragment(&mut clip)));
        let times = sample_times(&fragments);
        assert_eq!(times[0], (0, 0), "{reorder:?} {cuts:?}");
        for (i, &(dts, ct)) in times.iter().enumerate() {
            assert_eq!(ct, order[i] * 3600, "{reorder:?} {cuts:?}: sample {i}");
            assert!(dts as i64 <= ct, "{reorder:?} {cuts:?}: sample {i}");
            if i > 0 {
                assert!(dts > times[i - 1].0, "{reorder:?} {cuts:?}: sample {i}");
            }
        }
        if cuts[0] == 9 {
            // Whole groups: after the clip's first samples, decode times are
            // the sorted pts two frames back, a frame apart.
            for (i, &(dts, _)) in times.iter().enumerate().skip(3) {
                assert_eq!(dts, (i as u64 - 2) * 3600, "{reorder:?}: sample {i}");
            }
        }
    }
}

#[test]
fn leading_pictures_of_an_open_gop_are_left_out() {
    let key = high_profile_key(Some(2));
    let p = annexb(&[H264_AUD, H264_P]);
    let mut clip = ClipMux::new(Codec::H264, &key, 1_000_000).unwrap();
    let mut builder = FragmentBuilder::new(4096, 16);
    // I at 1 s, then two B-frames shown before it, then the next group.
    for (ms, is_key) in [(1000, true), (920, false), (960, false)] {
        let unit = if is_key { &key } else { &p };
        builder.push(&clip, unit, ms * 1000, is_key).unwrap();
    }
    assert_eq!(builder.pending_samples(), 1);
    for ms in [1120, 1040, 1080] {
        builder.push(&clip, &p, ms * 1000, false).unwrap();
    }
    let f = parse_fragment(builder.finish_fragment(&mut clip));
    let times = sample_times(&[f]);
    let shown: Vec<i64> = times.iter().map(|t| t.1).collect();
    assert_eq!(shown, [0, 10_800, 3600, 7200]);
    assert_eq!(clip.samples(), 4);
}
