//! Real H.264 and H.265 streams from ffmpeg (with and without B-frames)
//! muxed into clips, read back by ffprobe and decoded by ffmpeg, whole and
//! cut in the middle of their last fragment.

use super::*;
use crate::codec::nal::{is_aud, is_key_slice, nal_type};
use crate::codec::nal_units;
use crate::source::test_media;
use std::path::Path;
use std::process::Command;

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

/// 4 s of 320x180 (cropped from 320x192) at 25 fps, a key frame
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
        let t = nal_type(codec, nal[0]);
        if is_aud(codec, t) {
            units.push((Vec::new(), false));
        }
        let (data, key) = units.last_mut().expect("stream starts with a delimiter");
        *key |= is_key_slice(codec, t);
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
