//! Decode times and composition offsets on hand-made units: gaps, clock
//! steps and jitter without reordering; B-pyramids cut anywhere with it;
//! leading pictures of an open GOP.

use super::super::boxes::{NON_SYNC_FLAGS, SYNC_FLAGS};
use super::*;

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
