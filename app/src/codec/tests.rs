//! The shared SPS parser on hand-built parameter sets (every size, cropping
//! and chroma case), then on the streams ffmpeg makes for the source and
//! muxer tests: the same parser must give the file sources their frame rate
//! and the muxer its size and reorder depth, for both codecs.

use super::test_sps::{baseline_1080p, h264_sps, h265_sps, high_profile_sps, H264Sps};
use super::*;
use crate::source::test_media;
use std::path::Path;

fn h264_size(nal: &[u8]) -> Option<(u16, u16)> {
    parse_sps(Codec::H264, nal)?.display_size()
}

#[test]
fn h264_sps_sizes_follow_cropping_fields_and_chroma() {
    let info = parse_sps(Codec::H264, &baseline_1080p()).unwrap();
    assert_eq!(info.display_size(), Some((1920, 1080)));
    assert_eq!((info.coded_width, info.coded_height), (1920, 1088));
    assert_eq!(info.crop, [0, 0, 0, 8]);
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
    let info = parse_sps(Codec::H264, &sps).unwrap();
    assert_eq!(info.display_size(), Some((720 - 8, 576 - 4)));
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
    assert_eq!(h264_size(&sps), Some((639, 360)));

    // Truncated, or cropped away entirely: refused.
    assert_eq!(parse_sps(Codec::H264, &baseline_1080p()[..6]), None);
    let sps = h264_sps(&H264Sps {
        profile: 66,
        chroma: 1,
        width_mbs: 2,
        height_map_units: 2,
        frame_mbs_only: true,
        crop: [8, 8, 0, 0],
        reorder: None,
    });
    assert_eq!(h264_size(&sps), None);
}

#[test]
fn h265_sps_reads_profile_tier_level_and_conformance_window() {
    let sps = h265_sps(1920, 1088, [0, 0, 0, 4]);
    // The zero compatibility and constraint bytes need emulation
    // prevention, which the reader skips.
    assert!(sps.windows(3).any(|w| w == [0, 0, 3]));
    let info = parse_sps(Codec::H265, &sps).unwrap();
    assert_eq!(info.display_size(), Some((1920, 1080)));
    assert_eq!(
        info.general_ptl,
        [0x21, 0x60, 0, 0, 0, 0x90, 0, 0, 0, 0, 0, 93]
    );
    assert_eq!((info.temporal_layers, info.temporal_id_nested), (2, true));
    let info = parse_sps(Codec::H265, &h265_sps(328, 184, [2, 2, 0, 2])).unwrap();
    assert_eq!(info.display_size(), Some((320, 180)));
    assert_eq!(
        parse_sps(Codec::H265, &h265_sps(1920, 1088, [0; 4])[..10]),
        None
    );
}

#[test]
fn the_sps_vui_states_the_reorder_depth() {
    let high = |reorder| {
        let info = parse_sps(Codec::H264, &high_profile_sps(reorder)).unwrap();
        (info.reorders, info.reorder_frames, info.timing)
    };
    assert_eq!(
        high(None),
        (true, 0, None),
        "High without a VUI may reorder"
    );
    assert_eq!(high(Some(0)), (false, 0, None));
    assert_eq!(high(Some(2)), (true, 2, None));
    assert_eq!(
        high(Some(40)),
        (true, 16, None),
        "clamped to the codecs' limit"
    );
    let baseline = parse_sps(Codec::H264, &baseline_1080p()).unwrap();
    assert!(!baseline.reorders, "Baseline has no B slices");
}

/// The first SPS in the Annex-B file at `path`.
fn first_sps(codec: Codec, path: &Path) -> SpsInfo {
    let bytes = std::fs::read(path).unwrap();
    let nal = nal_units(&bytes)
        .find(|n| ParamKind::of(codec, nal_type(codec, n[0])) == Some(ParamKind::Sps))
        .expect("an SPS");
    parse_sps(codec, nal).expect("a readable SPS")
}

#[test]
fn real_streams_give_size_timing_and_reorder_depth() {
    // H.264 High, B-frames with a pyramid (-bf 2): 25 fps in field ticks,
    // 640x272 with no cropping.
    let h264 = first_sps(Codec::H264, &test_media::h264_high());
    assert_eq!(h264.display_size(), Some((640, 272)));
    assert_eq!(h264.crop, [0; 4]);
    assert_eq!(h264.timing, Some((1, 50)));
    assert_eq!(h264.frame_duration(), Some((2, 50)));
    assert!(h264.reorders && h264.reorder_frames > 0, "{h264:?}");

    // H.265 Main, 30 fps, B-frames by default.
    let h265 = first_sps(Codec::H265, &test_media::h265());
    assert_eq!(h265.display_size(), Some((320, 240)));
    assert_eq!(h265.frame_duration(), Some((1, 30)));
    assert!(h265.reorders && h265.reorder_frames > 0, "{h265:?}");
    assert_eq!((h265.general_ptl[0] & 0x1f, h265.temporal_layers), (1, 1));

    // 320x180 is coded as 320x192 (H.264 macroblocks of 16; x265 pads to
    // 16 lines too) and cropped back to 180 by the window. Without B-frames the
    // SPS says no reordering.
    let src = "-f lavfi -i testsrc=size=320x180:rate=25 -t 4 -pix_fmt yuv420p";
    let h264 = test_media::ffmpeg(
        "mp4-mux.h264",
        &format!(
            "{src} -c:v libx264 -preset ultrafast -bf 0 -g 25 \
             -x264-params repeat-headers=1 -bsf:v h264_metadata=aud=insert -f h264 {{out}}"
        ),
    );
    let info = first_sps(Codec::H264, &h264);
    assert_eq!((info.coded_width, info.coded_height), (320, 192));
    assert_eq!(info.display_size(), Some((320, 180)));
    assert_eq!(info.frame_duration(), Some((2, 50)));
    assert_eq!((info.reorders, info.reorder_frames), (false, 0));
    let h265 = test_media::ffmpeg(
        "mp4-mux.h265",
        &format!(
            "{src} -c:v libx265 -preset ultrafast -g 25 \
             -x265-params repeat-headers=1:bframes=0:log-level=error \
             -bsf:v hevc_metadata=aud=insert -f hevc {{out}}"
        ),
    );
    let info = first_sps(Codec::H265, &h265);
    assert_eq!((info.coded_width, info.coded_height), (320, 192));
    assert_eq!(info.display_size(), Some((320, 180)));
    assert_eq!(info.frame_duration(), Some((1, 25)));
    assert_eq!((info.reorders, info.reorder_frames), (false, 0));
}

#[test]
fn implausible_timing_is_no_timing() {
    let mut info = parse_sps(Codec::H264, &baseline_1080p()).unwrap();
    for (timing, expected) in [
        (None, None),
        (Some((1, 60)), Some((2, 60))),
        (Some((0, 50)), None),
        (Some((1, 0)), None),
        // 0.5 ms and 20 s per frame.
        (Some((1, 4000)), None),
        (Some((10, 1)), None),
    ] {
        info.timing = timing;
        assert_eq!(info.frame_duration(), expected, "{timing:?}");
    }
}

#[test]
fn configuration_records_round_trip() {
    struct Buf(Vec<u8>);
    impl config::RecordWriter for Buf {
        fn put(&mut self, b: &[u8]) {
            self.0.extend_from_slice(b);
        }
    }
    let pps: &[u8] = &[0x68, 0xce, 0x38, 0x80];
    let sps = baseline_1080p();
    let info = parse_sps(Codec::H264, &sps).unwrap();
    let mut avcc = Buf(Vec::new());
    config::write_avcc(&mut avcc, &info, [&sps[..]].into_iter(), [pps].into_iter());
    let (length_size, sets) = config::read_avcc(&avcc.0).unwrap();
    assert_eq!(length_size, 4);
    let read: Vec<&[u8]> = nal_units(&sets).collect();
    assert_eq!(read, [&sps[..], pps]);

    let vps: &[u8] = &[0x40, 0x01, 0x0c, 0x01, 0xff, 0xff];
    let sps5 = h265_sps(1920, 1088, [0, 0, 0, 4]);
    let pps5: &[u8] = &[0x44, 0x01, 0xc1, 0x72, 0xb4, 0x62, 0x40];
    let info = parse_sps(Codec::H265, &sps5).unwrap();
    let mut hvcc = Buf(Vec::new());
    config::write_hvcc(&mut hvcc, &info, |kind| {
        match kind {
            ParamKind::Vps => Some(vps),
            ParamKind::Sps => Some(&sps5[..]),
            ParamKind::Pps => Some(pps5),
        }
        .into_iter()
    });
    let (length_size, sets) = config::read_hvcc(&hvcc.0).unwrap();
    assert_eq!(length_size, 4);
    let read: Vec<&[u8]> = nal_units(&sets).collect();
    assert_eq!(read, [vps, &sps5[..], pps5]);
    assert_eq!(config::read_avcc(&[0]), None);
    assert_eq!(config::read_hvcc(&hvcc.0[..30]), None);
}
