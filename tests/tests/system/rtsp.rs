//! RTSP cameras against real servers: the GStreamer RTSP server (through a
//! proxy that cuts the connection on demand), with and without credentials,
//! and servers that answer garbage.

use std::time::Duration;
use vigil_system_tests::config::{sample_clip, Camera, Config};
use vigil_system_tests::media::TempDir;
use vigil_system_tests::peers::Peer;
use vigil_system_tests::process::Vigil;
use vigil_system_tests::proxy::CuttingProxy;

/// The seed's second leak was a C network init on every reconnect. Here 200
/// forced disconnects must leave the thread count unchanged and RSS within 1 MiB.
#[test]
fn two_hundred_forced_disconnects_leave_threads_and_memory_flat() {
    let server = Peer::rtsp_server(&["--mode", "h264-test", "--width", "320", "--height", "240"]);
    let proxy = CuttingProxy::start(server.socket_addr());
    let url = format!("rtsp://{}/test", proxy.addr());
    let dir = TempDir::new("reconnect");
    let cfg = Config::new()
        .ssd_model()
        .camera(
            Camera::named("cam", &url)
                .detect_fps(2)
                .max_resolution("640x480")
                .reconnect("10ms", "50ms")
                .stall_timeout("5s"),
        )
        .write(&dir);
    let v = Vigil::run_with_status(&cfg);
    for n in 1..=20 {
        proxy.cut_when_flowing(n);
    }
    // Warm: the decoder, pools and retina's buffers have reached their size.
    let warm = v.sample();
    let warm_threads = v.thread_names();
    for n in 21..=220 {
        proxy.cut_when_flowing(n);
        if n % 50 == 0 {
            assert_eq!(
                v.thread_names(),
                warm_threads,
                "threads changed by reconnect {n}"
            );
        }
    }
    assert!(proxy.wait_flowing(221, 20_000, Duration::from_secs(30)));
    std::thread::sleep(Duration::from_secs(2));
    let end = v.sample();
    let st = v.wait_status("cam", Duration::from_secs(5), |s| {
        s.num("reconnects") >= 220.0
    });
    assert_eq!(st.get("state"), "streaming");
    assert_eq!(end.threads, warm.threads);
    let growth = end.rss_bytes as i64 - warm.rss_bytes as i64;
    eprintln!(
        "200 reconnects: RSS {} -> {} ({growth:+} bytes), fds {} -> {}, threads {}",
        warm.rss_bytes, end.rss_bytes, warm.open_fds, end.open_fds, end.threads
    );
    assert!(
        growth < 1 << 20,
        "RSS grew {growth} bytes over 200 reconnects"
    );
    assert!(
        end.open_fds <= warm.open_fds + 2,
        "fds {} -> {}",
        warm.open_fds,
        end.open_fds
    );
    assert_eq!(v.stop(), 0);
}

#[test]
fn credentials_are_sent_and_a_wrong_password_is_a_clear_state() {
    let server = Peer::rtsp_server(&[
        "--mode",
        "h264-test",
        "--width",
        "320",
        "--height",
        "240",
        "--user",
        "admin",
        "--password",
        "s3cret",
    ]);
    let dir = TempDir::new("auth");
    let cfg = Config::new()
        .ssd_model()
        .camera(Camera::named("ok", &server.url).credentials("admin", "s3cret"))
        .camera(
            Camera::named("wrong", &server.url)
                .credentials("admin", "guess")
                .reconnect("100ms", "200ms"),
        )
        .write(&dir);
    let v = Vigil::run_with_status(&cfg);
    v.wait_status("ok", Duration::from_secs(30), |s| {
        s.get("state") == "streaming" && s.num("decoded") > 25.0
    });
    v.wait_for_line(Duration::from_secs(30), |l| {
        l.contains("camera wrong") && l.contains("401")
    });
    let st = v.wait_status("wrong", Duration::from_secs(10), |s| {
        s.num("reconnects") >= 2.0
    });
    assert_eq!(st.get("state"), "connecting");
    assert_eq!(v.stop(), 0);
}

#[test]
fn servers_answering_garbage_leave_the_other_cameras_running() {
    let kinds = ["junk", "bad-status", "truncated-sdp", "hang"];
    let servers: Vec<Peer> = kinds.iter().map(|k| Peer::garbage_server(k)).collect();
    let dir = TempDir::new("garbage");
    let mut config = Config::new()
        .ssd_model()
        .camera(Camera::named("good", sample_clip()).max_resolution("640x480"));
    for (k, s) in kinds.iter().zip(&servers) {
        config = config.camera(
            Camera::named(&k.replace('-', "_"), &s.url)
                .max_resolution("640x480")
                .reconnect("100ms", "300ms")
                .stall_timeout("2s"),
        );
    }
    let cfg = config.write(&dir);
    let v = Vigil::run_with_status(&cfg);
    for k in kinds {
        let name = k.replace('-', "_");
        let st = v.wait_status(&name, Duration::from_secs(60), |s| {
            s.num("reconnects") >= 2.0
        });
        assert_eq!(st.get("state"), "connecting", "{name}: {st:?}");
    }
    let threads = v.sample().threads;
    let a = v.wait_status("good", Duration::from_secs(10), |_| true);
    let b = v.wait_status("good", Duration::from_secs(30), |s| {
        s.num("decoded") > a.num("decoded") + 50.0
    });
    assert_eq!(b.get("state"), "streaming");
    assert_eq!(v.sample().threads, threads);
    assert!(v.lines_matching(|l| l.contains("panicked")).is_empty());
    assert_eq!(v.stop(), 0);
}

/// Issue 16: a stream larger than the camera's `max_resolution` made the
/// decoder allocate for it (OpenH264's reference pictures, MPP's buffer
/// group) before any check. Now the SPS is read first: no picture of it is
/// decoded, the camera is in state error naming both sizes, memory stays
/// flat, the other camera streams on, and when the server comes back with a
/// stream within the limit (same URL) the camera recovers by itself.
#[test]
fn a_stream_over_max_resolution_is_refused_before_the_decoder_and_the_camera_recovers() {
    let big = Peer::rtsp_server(&["--mode", "h264-test", "--width", "1280", "--height", "720"]);
    let port = big.socket_addr().port().to_string();
    let other = Peer::rtsp_server(&["--mode", "h264-test", "--width", "320", "--height", "240"]);
    let dir = TempDir::new("oversize");
    let cfg = Config::new()
        .ssd_model()
        .camera(
            Camera::named("big", &big.url)
                .max_resolution("320x240")
                .reconnect("100ms", "500ms")
                .stall_timeout("3s"),
        )
        .camera(Camera::named("other", &other.url).max_resolution("320x240"))
        .write(&dir);
    let v = Vigil::run_with_status(&cfg);
    v.wait_for_line(Duration::from_secs(30), |l| {
        l.contains("camera big: error: stream 1280x720 exceeds max_resolution 320x240")
    });
    // The baseline once the other camera is warm: its decoder, pools and
    // the detector's first inferences (the engine's scratch) are resident.
    let a = v.wait_status("other", Duration::from_secs(30), |s| {
        s.get("state") == "streaming" && s.num("decoded") > 75.0
    });
    let first = v.sample();
    // Five more seconds of 1280x720 key frames (one a second).
    let b = v.wait_status("other", Duration::from_secs(30), |s| {
        s.num("decoded") >= a.num("decoded") + 125.0
    });
    let st = v.wait_status("big", Duration::from_secs(5), |_| true);
    let end = v.sample();
    eprintln!(
        "oversize stream: big {st:?}; RSS {} -> {} bytes",
        first.rss_bytes, end.rss_bytes
    );
    assert_eq!(st.get("state"), "error", "{st:?}");
    assert_eq!(st.num("decoded"), 0.0, "a 1280x720 picture was decoded");
    assert_eq!(b.get("state"), "streaming");
    let growth = end.rss_bytes as i64 - first.rss_bytes as i64;
    assert!(growth < 4 << 20, "RSS grew {growth} bytes");

    // The camera comes back at 320x240 on the same address.
    drop(big);
    let _small = Peer::rtsp_server(&[
        "--port",
        &port,
        "--mode",
        "h264-test",
        "--width",
        "320",
        "--height",
        "240",
    ]);
    let back = v.wait_status("big", Duration::from_secs(60), |s| {
        s.get("state") == "streaming" && s.num("decoded") > 25.0
    });
    assert_eq!(back.get("state"), "streaming");
    assert!(v.lines_matching(|l| l.contains("panicked")).is_empty());
    assert_eq!(v.stop(), 0);
}
