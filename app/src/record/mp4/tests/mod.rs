//! The clip muxer's tests: hand-made units through the box writer and the
//! timeline (`boxes`, `timeline`), then real H.264 and H.265 streams from
//! ffmpeg muxed and read back by ffprobe/ffmpeg, including a file cut in
//! the middle of its last fragment (`ffmpeg`). This file holds what they
//! share: the units they are made of and a reader for what the muxer wrote.

use super::*;
use crate::codec::test_sps::{baseline_1080p, h265_sps, high_profile_sps};

mod boxes;
mod ffmpeg;
mod timeline;

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
    annexb(&[H264_AUD, &high_profile_sps(reorder), H264_PPS, H264_IDR])
}
