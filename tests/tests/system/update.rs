//! System updates through the page's API (issue 18) against
//! `tests/support/fake-rauc.sh`, a stand-in for RAUC's client that keeps
//! its slots in files; the real RAUC, bundles and reboots are the emulated
//! board's (`make test-ota`).
//!
//! - An upload is checked (session, CSRF, type, declared length, maximum)
//!   before a byte is written, stored a chunk at a time with vigil's RSS and
//!   threads flat, one at a time (409), and a dropped one leaves no file.
//! - RAUC's refusal is the page's error; a good bundle becomes the other
//!   slot's version and the reboot button stops vigil with exit code 5.
//! - The first boot of a new system is marked good when its cameras stream
//!   and bad (exit 5, for the reboot into the old one) when they do not;
//!   the old one then says why.

use serde_json::Value;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use vigil_system_tests::api::wait_until;
use vigil_system_tests::config::{sample_clip, Camera, Config};
use vigil_system_tests::http::{get, parse, post_json, request, session};
use vigil_system_tests::media::TempDir;
use vigil_system_tests::process::{root, Vigil};

/// A copy of the fake RAUC client in `dir/rauc/`, booted from `slot`.
fn fake_rauc(dir: &Path, slot: &str) -> PathBuf {
    let d = dir.join("rauc");
    std::fs::create_dir_all(&d).unwrap();
    let bin = d.join("rauc");
    std::fs::copy(root().join("tests/support/fake-rauc.sh"), &bin).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(d.join("booted"), slot).unwrap();
    bin
}

fn config(rauc: &Path, probation: &str, cameras: Vec<Camera>) -> Config {
    let mut c = Config::new()
        .ssd_model()
        .table("update", "rauc", rauc.to_str().unwrap())
        .table("update", "max_bundle", "256MiB")
        .table("update", "probation", probation)
        .table("update", "reboot_after", "0s");
    for cam in cameras {
        c = c.camera(cam);
    }
    c
}

fn sample() -> Camera {
    Camera::named("sample", sample_clip().to_str().unwrap()).detect_fps(1)
}

fn csrf(addr: SocketAddr) -> String {
    get(addr, "/api/session").json()["csrf"]
        .as_str()
        .expect("csrf")
        .to_owned()
}

fn state(addr: SocketAddr) -> Value {
    let r = get(addr, "/api/update");
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()
}

/// The head of `POST /api/update/bundle` with the session, declaring `len`.
fn upload_head(addr: SocketAddr, len: u64, csrf: &str) -> Vec<u8> {
    format!(
        "POST /api/update/bundle HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nCookie: {}\r\nX-CSRF-Token: {csrf}\r\nContent-Type: application/octet-stream\r\nContent-Length: {len}\r\n\r\n",
        session(addr).expect("a session")
    )
    .into_bytes()
}

fn read_response(mut s: TcpStream) -> vigil_system_tests::http::Response {
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    parse(&buf)
}

/// A bundle for the fake: `first` line, then `version`, padded to `len`.
fn bundle(first: &str, version: &str, len: usize) -> Vec<u8> {
    let mut b = format!("{first}\n{version}\n").into_bytes();
    b.resize(len.max(b.len()), b'.');
    b
}

fn upload(addr: SocketAddr, body: &[u8]) -> vigil_system_tests::http::Response {
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(&upload_head(addr, body.len() as u64, &csrf(addr)))
        .unwrap();
    s.write_all(body).unwrap();
    read_response(s)
}

fn wait_phase(addr: SocketAddr, phases: &[&str]) -> Value {
    let mut last = Value::Null;
    let ok = wait_until(Duration::from_secs(60), || {
        last = state(addr);
        phases.iter().any(|p| last["phase"] == *p)
    });
    assert!(ok, "phase not in {phases:?}: {last}");
    last
}

fn update_files(data: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(data.join("update"))
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[test]
fn uploads_are_checked_first_stored_in_chunks_with_flat_memory_and_installed_by_rauc() {
    let dir = TempDir::new("update-upload");
    let rauc = fake_rauc(&dir.0, "A");
    let data = dir.0.join("data");
    let cfg = config(&rauc, "8s", vec![sample()]).write(&dir.0);
    let (v, addr) = Vigil::serve(&cfg, &data);
    assert!(
        wait_until(Duration::from_secs(30), || state(addr)["available"] == true),
        "{}",
        state(addr)
    );
    let s = state(addr);
    println!("{s}");
    assert_eq!(
        (s["slot"].as_str(), s["phase"].as_str()),
        (Some("A"), Some("idle"))
    );
    assert_eq!(s["other"]["slot"], "B");

    // Refused before anything is written.
    let token = csrf(addr);
    let octet = [("Content-Type", "application/octet-stream")];
    let r = request(addr, "POST", "/api/update/bundle", &octet, b"GOOD\n");
    assert_eq!(r.status, 403, "no CSRF token: {}", r.text());
    let r = vigil_system_tests::http::request_anon(
        addr,
        "POST",
        "/api/update/bundle",
        &[
            ("Content-Type", "application/octet-stream"),
            ("X-CSRF-Token", &token),
        ],
        b"GOOD\n",
    );
    assert_eq!(r.status, 403, "no session: {}", r.text());
    let r = post_json(addr, "/api/update/bundle", "{}", None, Some(&token));
    assert_eq!(r.status, 415, "JSON is not a bundle: {}", r.text());
    // Chunked: no declared length.
    let mut s = TcpStream::connect(addr).unwrap();
    let head = String::from_utf8(upload_head(addr, 0, &token))
        .unwrap()
        .replace("Content-Length: 0", "Transfer-Encoding: chunked");
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(b"5\r\nGOOD\n\r\n0\r\n\r\n").unwrap();
    let r = read_response(s);
    assert_eq!(r.status, 411, "{}", r.text());
    // Over update.max_bundle: answered from the head alone.
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(&upload_head(addr, 300 << 20, &token)).unwrap();
    let r = read_response(s);
    assert_eq!(r.status, 413, "{}", r.text());
    assert!(r.text().contains("update.max_bundle"), "{}", r.text());
    assert_eq!(update_files(&data), Vec::<String>::new());

    // A dropped upload leaves no file and does not block the next.
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(&upload_head(addr, 1 << 20, &token)).unwrap();
    s.write_all(&bundle("GOOD", "0.3.0", 300 << 10)).unwrap();
    assert!(wait_until(Duration::from_secs(10), || state(addr)["phase"]
        == "receiving"));
    drop(s);
    let s = wait_phase(addr, &["failed"]);
    println!("{s}");
    assert!(s["error"].as_str().unwrap_or("").contains("upload"), "{s}");
    assert!(
        wait_until(Duration::from_secs(5), || update_files(&data).is_empty()),
        "{:?}",
        update_files(&data)
    );

    // RAUC's refusal is the page's error; the other slot is untouched.
    let r = upload(addr, &bundle("bad signature", "0.3.0", 1000));
    assert_eq!(r.status, 202, "{}", r.text());
    let s = wait_phase(addr, &["failed"]);
    assert_eq!(
        s["error"], "Failed verifying signature: signer certificate not trusted",
        "{s}"
    );
    assert_eq!(s["other"]["version"], Value::Null, "{s}");
    assert_eq!(update_files(&data), Vec::<String>::new());

    // 120 MiB, sent in 64 KiB writes while vigil's memory is sampled; a
    // second upload meanwhile is refused.
    let body = bundle("GOOD", "0.3.0", 120 << 20);
    // The install takes a second per step: meanwhile a camera test, which
    // shares the budget's reserve with it, is refused (checked below).
    std::fs::write(dir.0.join("rauc/install-delay"), "1").unwrap();
    let before = v.sample();
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(&upload_head(addr, body.len() as u64, &token))
        .unwrap();
    let mut peak_rss = before.rss_bytes;
    let mut max_threads = before.threads;
    let mut refused_second = None;
    for (i, chunk) in body.chunks(64 << 10).enumerate() {
        s.write_all(chunk).unwrap();
        if i % 64 == 0 {
            let p = v.sample();
            peak_rss = peak_rss.max(p.rss_bytes);
            max_threads = max_threads.max(p.threads);
        }
        if i == 200 {
            let r = upload(addr, &bundle("GOOD", "0.4.0", 100));
            refused_second = Some((r.status, r.text()));
        }
    }
    let r = read_response(s);
    assert_eq!(r.status, 202, "{}", r.text());
    let (status, text) = refused_second.unwrap();
    assert_eq!(status, 409, "{text}");
    let probe = post_json(
        addr,
        "/api/settings/cameras/test",
        &serde_json::json!({"camera": {"name": "x", "url": "rtsp://127.0.0.1:9/x"}}).to_string(),
        None,
        Some(&csrf(addr)),
    );
    assert_eq!(
        probe.status,
        409,
        "a camera test during the install: {}",
        probe.text()
    );
    println!(
        "upload of {} MiB: RSS {} -> peak {} KiB, threads {} -> {}",
        body.len() >> 20,
        before.rss_bytes >> 10,
        peak_rss >> 10,
        before.threads,
        max_threads
    );
    assert!(
        peak_rss < before.rss_bytes + (16 << 20),
        "RSS grew by {} KiB during the upload",
        (peak_rss - before.rss_bytes) >> 10
    );
    assert_eq!(
        max_threads, before.threads,
        "threads moved during the upload"
    );
    let s = wait_phase(addr, &["installed", "failed"]);
    println!("{s}");
    assert_eq!(s["phase"], "installed", "{s}");
    assert_eq!(
        (s["installed"].clone(), s["other"]["version"].clone()),
        ("0.3.0".into(), "0.3.0".into())
    );
    assert_eq!(
        s["reboot_in_s"],
        Value::Null,
        "reboot_after = 0s waits for the button"
    );
    assert_eq!(update_files(&data), vec!["pending.json", "probation"]);
    assert_eq!(
        std::fs::read_to_string(dir.0.join("rauc/installs"))
            .unwrap()
            .lines()
            .count(),
        2,
        "RAUC ran once per bundle, not per request"
    );
    // Waiting for the reboot: nothing else is installed.
    assert_eq!(upload(addr, &bundle("GOOD", "0.4.0", 100)).status, 409);
    let r = post_json(addr, "/api/update/reboot", "{}", None, Some(&csrf(addr)));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(v.wait_exit(Duration::from_secs(30)), 5, "exit 5: reboot");
}

/// `pending.json` as the old system leaves it after installing 0.3.0 into B.
fn pend(data: &Path, streaming: &[&str]) {
    let d = data.join("update");
    std::fs::create_dir_all(&d).unwrap();
    let p = serde_json::json!({
        "from_slot": "A", "from_version": "0.2.0", "to_slot": "B", "to_version": "0.3.0",
        "streaming": streaming, "installed_unix": 1_800_000_000i64,
    });
    std::fs::write(d.join("pending.json"), p.to_string()).unwrap();
    std::fs::write(d.join("probation"), "B 68\n").unwrap();
}

fn marks(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("rauc/marks")).unwrap_or_default()
}

#[test]
fn a_new_system_is_kept_when_its_cameras_stream_again() {
    let dir = TempDir::new("update-probation-good");
    let rauc = fake_rauc(&dir.0, "B");
    std::fs::write(dir.0.join("rauc/version.B"), "0.3.0").unwrap();
    let data = dir.0.join("data");
    pend(&data, &["sample"]);
    let cfg = config(&rauc, "60s", vec![sample()]).write(&dir.0);
    let t0 = Instant::now();
    let (v, addr) = Vigil::serve(&cfg, &data);
    assert!(
        wait_until(Duration::from_secs(60), || marks(&dir.0)
            .contains("mark-good")),
        "not marked good: {} / {}",
        marks(&dir.0),
        state(addr)
    );
    println!(
        "marked good {:.1} s after the start",
        t0.elapsed().as_secs_f64()
    );
    assert_eq!(marks(&dir.0), "mark-good booted\n");
    let s = state(addr);
    println!("{s}");
    assert_eq!(s["probation"], Value::Null);
    assert_eq!(s["last"]["ok"], true);
    assert_eq!(
        s["last"]["message"],
        "updated from 0.2.0 to 0.3.0; slot B marked good"
    );
    assert_eq!(update_files(&data), vec!["last.json"]);
    v.stop();
}

#[test]
fn a_new_system_whose_camera_does_not_stream_is_marked_bad_and_the_old_one_says_why() {
    let dir = TempDir::new("update-probation-bad");
    let rauc = fake_rauc(&dir.0, "B");
    let data = dir.0.join("data");
    pend(&data, &["door"]);
    // The camera streamed before; in the new system it does not (nothing
    // listens on this port).
    let door = Camera::named("door", "rtsp://127.0.0.1:9/none").reconnect("1s", "2s");
    let cfg = config(&rauc, "8s", vec![door]).write(&dir.0);
    let (v, addr) = Vigil::serve(&cfg, &data);
    let s = state(addr);
    println!("{s}");
    assert!(s["probation"]["waiting_for"]
        .to_string()
        .contains("cameras did not stream (door)"));
    assert_eq!(v.wait_exit(Duration::from_secs(60)), 5, "exit 5: reboot");
    assert_eq!(marks(&dir.0), "mark-bad booted\n");
    // The boot loader falls back to A; its vigil (0.1.0 here) says why.
    std::fs::write(dir.0.join("rauc/booted"), "A").unwrap();
    let (v, addr) = Vigil::serve(&cfg, &data);
    assert!(wait_until(Duration::from_secs(30), || state(addr)["last"]
        != Value::Null));
    let s = state(addr);
    println!("{s}");
    let msg = s["last"]["message"].as_str().unwrap();
    assert!(
        msg.starts_with("update to 0.3.0 failed: cameras did not stream (door); "),
        "{msg}"
    );
    assert!(
        msg.ends_with("within 8 s; running 0.1.0 on slot A"),
        "{msg}"
    );
    assert_eq!(s["probation"], Value::Null);
    assert_eq!(update_files(&data), vec!["last.json"]);
    // The old system is an ordinary boot: it gives its own slot the
    // attempts back, or the boot loader would count it down too.
    assert!(
        wait_until(Duration::from_secs(30), || marks(&dir.0)
            == "mark-bad booted\nmark-good booted\n"),
        "marks after the rollback: {:?}",
        marks(&dir.0)
    );
    v.stop();
}
