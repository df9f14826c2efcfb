//! The init segment's boxes and sample entries, units becoming
//! length-prefixed samples, the refusals (full fragments, oversize units,
//! bad first units, mixed clips), torn files, and muxing without allocating.

use super::super::boxes::{INIT_CAPACITY, NON_SYNC_FLAGS, SYNC_FLAGS};
use super::*;

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
    let high = high_profile_sps(None);
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
