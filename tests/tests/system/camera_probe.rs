//! The cameras form's **Test** button (issue 17, item 3):
//! `POST /api/settings/cameras/test` opens one camera once against the real
//! GStreamer RTSP server and answers its codec, size, frame rate and a JPEG,
//! or the exact error; one test at a time; the process's threads are the
//! same after twenty tests, and its RSS grows by no more than the budget's
//! "camera test" line.

use super::settings::{post, start};
use serde_json::{json, Value};
use std::io::Write;
use std::net::{SocketAddr, TcpListener};
use std::process::Command;
use std::time::{Duration, Instant};
use vigil_system_tests::api::wait_until;
use vigil_system_tests::budget::budget_line;
use vigil_system_tests::config::{Camera, Config};
use vigil_system_tests::http::Response;
use vigil_system_tests::media::TempDir;
use vigil_system_tests::peers::Peer;
use vigil_system_tests::process::Vigil;

const PATH: &str = "/api/settings/cameras/test";

/// The RTSP server: 320x240 H.264 behind admin / s3cret.
fn server(mode: &str) -> Peer {
    Peer::rtsp_server(&[
        "--mode",
        mode,
        "--width",
        "320",
        "--height",
        "240",
        "--user",
        "admin",
        "--password",
        "s3cret",
    ])
}

/// vigil with two saved, disabled cameras: `door` (the server, with its
/// password) and `silent` (a 2 s `stall_timeout`, so its tests are bounded
/// by that key rather than the 10 s default).
fn vigil_with(dir: &TempDir, door_url: &str) -> Vigil {
    let factory = Config::new()
        .ssd_model()
        .set("memory_limit", "768MiB")
        .camera(
            Camera::named("door", door_url)
                .credentials("admin", "s3cret")
                .set("enabled", false),
        )
        .camera(
            Camera::named("silent", "rtsp://127.0.0.1:9/x")
                .stall_timeout("2s")
                .set("enabled", false),
        )
        .write_as(&dir.0.join("factory.toml"));
    let data = dir.0.join("data");
    start(&data.join("vigil/config.toml"), &factory, &data)
}

fn test_camera(addr: SocketAddr, camera: Value) -> Response {
    post(addr, PATH, &json!({ "camera": camera }))
}

/// The form's entry for `name` at `url`, its password left hidden (`***`).
fn form(name: &str, url: &str) -> Value {
    json!({"was": name, "name": name, "url": url, "username": "admin", "password": "***"})
}

/// A JPEG `data:` URL's picture size as ffprobe decodes it.
fn jpeg_size(dir: &TempDir, data_url: &str) -> String {
    let b64 = data_url
        .strip_prefix("data:image/jpeg;base64,")
        .expect("a JPEG data URL");
    let encoded = dir.join("picture.b64");
    std::fs::File::create(&encoded)
        .unwrap()
        .write_all(b64.as_bytes())
        .unwrap();
    let jpeg = dir.join("picture.jpg");
    let out = Command::new("base64")
        .arg("-d")
        .arg(&encoded)
        .output()
        .unwrap();
    assert!(out.status.success(), "base64 -d failed");
    std::fs::write(&jpeg, &out.stdout).unwrap();
    let probe = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "stream=width,height",
            "-of",
            "csv=p=0",
        ])
        .arg(&jpeg)
        .output()
        .expect("ffprobe");
    assert!(probe.status.success(), "{probe:?}");
    String::from_utf8_lossy(&probe.stdout).trim().to_owned()
}

/// A server that accepts and never answers; sends on `accepted` each time.
fn silent_listener() -> (String, std::sync::mpsc::Receiver<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("rtsp://{}/x", listener.local_addr().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        while let Ok((c, _)) = listener.accept() {
            held.push(c);
            let _ = tx.send(());
        }
    });
    (url, rx)
}

fn error_of(r: &Response) -> (u16, String, String) {
    let v = r.json();
    assert_eq!(v["ok"], false, "{}", r.text());
    (
        r.status,
        v["error"].as_str().unwrap_or_default().to_owned(),
        v["message"].as_str().unwrap_or_default().to_owned(),
    )
}

#[test]
fn the_test_button_shows_facts_and_a_picture_or_the_exact_error() {
    let dir = TempDir::new("camera-probe");
    let h264 = server("h264-test");
    let v = vigil_with(&dir, &h264.url);
    let addr = v.web_addr();

    // The saved password (sent back as ***) gets the camera's answer.
    let r = test_camera(addr, form("door", &h264.url));
    assert_eq!(r.status, 200, "{}", r.text());
    let a = r.json();
    assert_eq!(a["ok"], true, "{a}");
    assert_eq!(
        (
            a["codec"].as_str(),
            a["width"].as_u64(),
            a["height"].as_u64()
        ),
        (Some("h264"), Some(320), Some(240))
    );
    assert!(
        a["fps"].is_null() || a["fps"].as_f64().unwrap() > 0.0,
        "{a}"
    );
    eprintln!("fps: {}, note: {}", a["fps"], a["picture_note"]);
    assert_eq!(
        jpeg_size(&dir, a["picture"].as_str().expect("a picture")),
        "320,240"
    );
    assert!(!r.text().contains("s3cret"));

    // The camera's 401.
    let mut wrong = form("door", &h264.url);
    wrong["password"] = json!("guess");
    let (status, kind, message) = error_of(&test_camera(addr, wrong));
    assert_eq!((status, kind.as_str()), (502, "unauthorized"), "{message}");
    assert!(message.contains("401"), "{message}");

    // Over max_resolution: both sizes named, nothing decoded.
    let mut small = form("door", &h264.url);
    small["max_resolution"] = json!("160x120");
    let (status, kind, message) = error_of(&test_camera(addr, small));
    assert_eq!(
        (status, kind.as_str()),
        (502, "over_max_resolution"),
        "{message}"
    );
    assert_eq!(message, "stream 320x240 exceeds max_resolution 160x120");

    // Nothing listens: unreachable.
    let closed = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let (status, kind, message) = error_of(&test_camera(
        addr,
        form("new", &format!("rtsp://127.0.0.1:{port}/x")),
    ));
    assert_eq!((status, kind.as_str()), (502, "unreachable"), "{message}");
    assert!(message.contains("refused"), "{message}");

    // Never answers: a timeout within the camera's stall_timeout (2 s).
    let (url, _accepted) = silent_listener();
    let began = Instant::now();
    let (status, kind, message) = error_of(&test_camera(addr, form("silent", &url)));
    assert_eq!((status, kind.as_str()), (502, "timeout"), "{message}");
    assert_eq!(message, "no answer from the camera within 2 s (DESCRIBE)");
    assert!(began.elapsed() < Duration::from_secs(8), "bounded by 2 s");

    // The form's mistakes: 422, the URL's problem named, no secret shown.
    let (status, kind, message) = error_of(&test_camera(
        addr,
        form("new", "ftp://admin:pw-in-url@10.0.0.1/x"),
    ));
    assert_eq!((status, kind.as_str()), (422, "bad_url"), "{message}");
    assert!(
        message.contains("unsupported scheme") && !message.contains("pw-in-url"),
        "{message}"
    );

    // H.265: the facts from its SPS, no picture, and why.
    let h265 = server("h265-test");
    let r = test_camera(addr, form("door", &h265.url));
    let a = r.json();
    assert_eq!(r.status, 200, "{a}");
    assert_eq!(
        (
            a["codec"].as_str(),
            a["width"].as_u64(),
            a["height"].as_u64()
        ),
        (Some("h265"), Some(320), Some(240))
    );
    assert!(a["picture"].is_null(), "{a}");
    assert!(
        a["picture_note"]
            .as_str()
            .unwrap()
            .contains("no CPU decoder"),
        "{a}"
    );

    // No session or CSRF token: refused before anything is opened.
    let anon = vigil_system_tests::http::post_json(addr, PATH, "{}", None, None);
    assert!(anon.status == 401 || anon.status == 403, "{}", anon.status);
    v.stop();
}

#[test]
fn one_test_at_a_time_and_twenty_tests_leave_threads_and_memory_bounded() {
    let dir = TempDir::new("camera-probe-bounds");
    let h264 = server("h264-test");
    let v = vigil_with(&dir, &h264.url);
    let addr = v.web_addr();
    let reserve = budget_line(&v, "camera test");

    // A first test waits on a silent server; a second meanwhile is 409.
    let (url, accepted) = silent_listener();
    let first = std::thread::spawn(move || test_camera(addr, form("silent", &url)));
    accepted
        .recv_timeout(Duration::from_secs(10))
        .expect("the first test connects");
    let busy = test_camera(addr, form("door", &h264.url));
    let (status, kind, _) = error_of(&busy);
    assert_eq!((status, kind.as_str()), (409, "busy"));
    assert_eq!(busy.header("retry-after"), Some("1"));
    let (_, kind, _) = error_of(&first.join().unwrap());
    assert_eq!(kind, "timeout");

    // Warm: one test, then the figures.
    assert_eq!(test_camera(addr, form("door", &h264.url)).status, 200);
    let before = v.sample();
    for i in 0..20 {
        let r = test_camera(addr, form("door", &h264.url));
        assert_eq!(r.status, 200, "test {i}: {}", r.text());
    }
    let mut after = v.sample();
    // retina's TEARDOWN tasks end on their own; no thread was ever added.
    wait_until(Duration::from_secs(10), || {
        after = v.sample();
        after.threads == before.threads
    });
    eprintln!(
        "threads {} -> {}; RSS {} -> {} KiB; camera test line {} KiB",
        before.threads,
        after.threads,
        before.rss_bytes >> 10,
        after.rss_bytes >> 10,
        reserve as u64 >> 10
    );
    assert_eq!(after.threads, before.threads);
    let grown = after.rss_bytes.saturating_sub(before.rss_bytes) as f64;
    assert!(
        grown <= reserve,
        "RSS grew {grown} bytes, budget line {reserve}"
    );
    v.stop();
}
