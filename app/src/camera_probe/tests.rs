use super::session::{first_key_frame, map_error, KeyFrame};
use super::*;
use crate::codec::test_sps::{h264_sps, H264Sps};
use crate::config::{CameraConfig, Config};

/// An access unit: a Baseline SPS of `mbs` macroblocks (and one reference
/// frame), then an IDR slice header byte.
fn key_frame(mbs: (u64, u64)) -> Vec<u8> {
    let sps = h264_sps(&H264Sps {
        profile: 66,
        chroma: 1,
        width_mbs: mbs.0,
        height_map_units: mbs.1,
        frame_mbs_only: true,
        crop: [0; 4],
        reorder: None,
    });
    let mut v = vec![0, 0, 0, 1];
    v.extend_from_slice(&sps);
    v.extend_from_slice(&[0, 0, 0, 1, 0x65, 0x88]);
    v
}

fn camera(extra: &str) -> CameraConfig {
    let text = format!("[[camera]]\nname = \"c\"\n{extra}\n");
    Config::parse(&text, "t").unwrap().cameras.remove(0)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn retina_errors_map_to_kinds() {
    let e = map_error("DESCRIBE", Some(401), "401 response to DESCRIBE", true);
    assert_eq!(e.kind(), "unauthorized");
    assert!(e.to_string().contains("wrong user name or password"), "{e}");
    let e = map_error("DESCRIBE", Some(401), "", false);
    assert!(e.to_string().contains("needs a user name"), "{e}");
    let e = map_error("SETUP", Some(454), "454 response", true);
    assert_eq!(e.kind(), "refused");
    assert_eq!(
        e.to_string(),
        "the camera answered SETUP with RTSP status 454"
    );
    let e = map_error(
        "DESCRIBE",
        None,
        "Unable to connect to RTSP server: Connection refused (os error 111)",
        false,
    );
    assert_eq!(
        e,
        ProbeError::Unreachable("Connection refused (os error 111)".into())
    );
    let e = map_error(
        "PLAY",
        None,
        "RTSP framing error: bad line\n\nconn: 127.0.0.1:1->127.0.0.1:2",
        false,
    );
    assert_eq!(e.kind(), "stream_error");
    assert_eq!(
        e.to_string(),
        "the stream failed: PLAY: RTSP framing error: bad line"
    );
}

#[test]
fn facts_come_from_the_sps_and_the_size_is_checked_first() {
    let f = facts(Codec::H264, &key_frame((20, 15)), (640, 480)).unwrap();
    assert_eq!(
        (f.codec, f.width, f.height, f.fps),
        (Codec::H264, 320, 240, None)
    );
    assert_eq!(f.ref_frames, 1);
    let e = facts(Codec::H264, &key_frame((80, 45)), (640, 480)).unwrap_err();
    assert_eq!(e.kind(), "over_max_resolution");
    assert_eq!(
        e.to_string(),
        "stream 1280x720 exceeds max_resolution 640x480"
    );
    let slice_only = [0u8, 0, 0, 1, 0x65, 0x88];
    assert_eq!(
        facts(Codec::H264, &slice_only, (640, 480)).unwrap_err(),
        ProbeError::BadStream("it carries no SPS")
    );
}

#[test]
fn answers_have_the_documented_shape_and_bounds() {
    let f = Facts {
        codec: Codec::H264,
        width: 1280,
        height: 720,
        fps: Some(25.0),
        ref_frames: 1,
    };
    let ok = serde_json::to_value(Answer::streams(
        &f,
        Ok("data:image/jpeg;base64,AA==".into()),
    ))
    .unwrap();
    assert_eq!(
        ok,
        serde_json::json!({"ok": true, "codec": "h264", "width": 1280, "height": 720,
            "fps": 25.0, "picture": "data:image/jpeg;base64,AA==", "picture_note": null})
    );
    let none = serde_json::to_value(Answer::streams(&f, Err("no picture: why".into()))).unwrap();
    assert_eq!(none["picture"], serde_json::Value::Null);
    assert_eq!(none["picture_note"], "no picture: why");
    let failed = serde_json::to_value(Answer::failed(&ProbeError::Busy)).unwrap();
    assert_eq!(
        failed,
        serde_json::json!({"ok": false, "error": "busy",
            "message": "another camera test is running; try again"})
    );
    // The picture's buffers are the snapshot's own sizes.
    assert_eq!(
        picture::JPEG_CAPACITY,
        crate::snapshot::JpegWriter::capacity_for(PREVIEW.0, PREVIEW.1)
    );
    assert_eq!(base64_len(3), 4);
    assert_eq!(base64_len(4), 8);
    // The largest picture the JPEG buffer can hold, with the longest
    // facts, fits the stated cap.
    let largest = format!(
        "data:image/jpeg;base64,{}",
        "A".repeat(base64_len(picture::JPEG_CAPACITY))
    );
    let f = Facts {
        width: u32::MAX,
        height: u32::MAX,
        fps: Some(1.0 / 3.0),
        ..f
    };
    let len = serde_json::to_vec(&Answer::streams(&f, Ok(largest)))
        .unwrap()
        .len();
    assert!(len <= ANSWER_CAP, "{len} > {ANSWER_CAP}");
}

#[test]
fn no_picture_for_h265_or_a_decoder_over_the_limit() {
    let f = Facts {
        codec: Codec::H265,
        width: 320,
        height: 240,
        fps: None,
        ref_frames: 0,
    };
    let key = KeyFrame {
        codec: Codec::H265,
        data: vec![0, 0, 0, 1],
    };
    let note = picture::render(&key, &f).unwrap_err();
    assert!(note.contains("h265 has no CPU decoder"), "{note}");
    // 1920x1080 with 16 reference frames: 36 pictures, about 107 MiB.
    assert!(decoder_bytes(1920, 1080, 1) <= DECODER_BYTES);
    assert!(decoder_bytes(1920, 1080, 3) <= DECODER_BYTES);
    assert!(decoder_bytes(3840, 2160, 1) > DECODER_BYTES);
    let big = Facts {
        codec: Codec::H264,
        width: 1920,
        height: 1080,
        fps: None,
        ref_frames: 16,
    };
    let key = KeyFrame {
        codec: Codec::H264,
        data: key_frame((120, 68)),
    };
    let note = picture::render(&key, &big).unwrap_err();
    assert!(
        note.contains("1920x1080 stream with 16 reference frames takes about 107 MiB"),
        "{note}"
    );
}

#[test]
fn files_devices_closed_ports_and_silent_servers_say_so() {
    let rt = runtime();
    let file = camera("url = \"/tmp/x.mp4\"");
    let e = rt.block_on(first_key_frame(&file)).unwrap_err();
    assert_eq!(e, ProbeError::NotSupported("a video file"));
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let cam = camera(&format!("url = \"rtsp://127.0.0.1:{port}/x\""));
    let e = rt.block_on(first_key_frame(&cam)).unwrap_err();
    assert_eq!(e.kind(), "unreachable", "{e}");
    assert!(e.to_string().contains("refused"), "{e}");
    rt.block_on(async {
        // Accepts and never says a word.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("rtsp://{}/x", listener.local_addr().unwrap());
        let cam = camera(&format!(
            "url = \"{url}\"\nstall_timeout = \"300ms\"\nusername = \"u\"\npassword = \"p\""
        ));
        let hold = tokio::spawn(async move { listener.accept().await.map(|(c, _)| c) });
        let e = first_key_frame(&cam).await.unwrap_err();
        assert_eq!(
            e,
            ProbeError::Timeout {
                step: "DESCRIBE",
                after: std::time::Duration::from_millis(300)
            }
        );
        assert_eq!(
            e.to_string(),
            "no answer from the camera within 0.3 s (DESCRIBE)"
        );
        hold.abort();
    });
}
