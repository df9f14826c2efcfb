//! The configuration from the page (issue 17): a file seeded from the
//! factory default, saved only when the file's parser and the budget accept
//! it, applied by a restart of the same process, with secrets kept out of
//! every answer; a hand-broken file starts on the last good one.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use vigil_system_tests::api::wait_until;
use vigil_system_tests::config::{sample_clip, ssd_model, Camera, Config};
use vigil_system_tests::http::{get, get_anon, post_json, remember_session, session, Response};
use vigil_system_tests::media::TempDir;
use vigil_system_tests::process::Vigil;

pub(crate) const SECRET: &str = "hunter2-camera-password";

/// The factory file: the sample clip, and a camera with credentials that
/// never connects (nothing listens on port 9).
pub(crate) fn factory(dir: &Path) -> PathBuf {
    Config::new()
        .ssd_model()
        .set("memory_limit", "768MiB")
        .camera(Camera::named("sample", sample_clip().to_str().unwrap()).detect_fps(2))
        .camera(Camera::named(
            "door",
            format!("rtsp://admin:{SECRET}@127.0.0.1:9/stream").as_str(),
        ))
        .write_as(&dir.join("factory.toml"))
}

pub(crate) fn start(config: &Path, factory: &Path, data: &Path) -> Vigil {
    Vigil::start(&[
        "run",
        "--config",
        config.to_str().unwrap(),
        "--factory",
        factory.to_str().unwrap(),
        "--data-dir",
        data.to_str().unwrap(),
        "--status-every",
        "0",
    ])
}

fn csrf(addr: SocketAddr) -> String {
    let s = get(addr, "/api/session").json();
    s["csrf"].as_str().expect("csrf of the session").to_owned()
}

pub(crate) fn post(addr: SocketAddr, path: &str, body: &serde_json::Value) -> Response {
    post_json(addr, path, &body.to_string(), None, Some(&csrf(addr)))
}

/// The address the re-executed process listens on (a new port: the tests
/// listen on port 0), once it serves.
pub(crate) fn new_address(v: &Vigil) -> SocketAddr {
    v.wait_for_line(Duration::from_secs(30), |l| l.contains("restarting: exec"));
    let line = v.wait_for_line(Duration::from_secs(60), |l| {
        l.contains("web interface on http://")
    });
    line.split("http://")
        .nth(1)
        .and_then(|r| r.split('/').next())
        .and_then(|a| a.parse().ok())
        .expect("address")
}

/// After a save that answered `restarting`: the same process starts again
/// (re-executed), on a new port since the test listens on port 0. The
/// session of `old` was carried over: still logged in, no new login.
fn restarted(v: &Vigil, old: SocketAddr) -> SocketAddr {
    let addr = new_address(v);
    let cookie = session(old).expect("a session");
    remember_session(addr, &cookie);
    let s = get(addr, "/api/session").json();
    assert_eq!(
        s["logged_in"], true,
        "the session did not survive the restart: {s}"
    );
    v.wait_for_line(Duration::from_secs(5), |l| {
        l.contains("1 web session(s) carried over")
    });
    addr
}

fn threads_started_with(v: &Vigil) -> u64 {
    let line = v.wait_for_line(Duration::from_secs(60), |l| l.contains(" starting: "));
    let n = line
        .split(", ")
        .find_map(|p| p.strip_suffix(" threads"))
        .expect("thread count in the start line");
    n.trim().parse().expect("number")
}

#[test]
fn the_page_edits_checks_and_applies_the_configuration() {
    let dir = TempDir::new("settings");
    let factory = factory(&dir.0);
    let config = dir.0.join("data/vigil/config.toml");
    let data = dir.0.join("data");
    let v = start(&config, &factory, &data);
    let addr = v.web_addr();
    let pid = v.pid();
    assert_eq!(
        std::fs::read_to_string(&config).unwrap(),
        std::fs::read_to_string(&factory).unwrap(),
        "seeded from the factory default"
    );

    // Closed: no session, no CSRF token, nothing.
    assert_eq!(get_anon(addr, "/api/settings").status, 401);
    let body = serde_json::json!({"toml": "memory_limit = \"1GiB\"\n"}).to_string();
    assert_eq!(
        post_json(addr, "/api/settings", &body, Some("vigil_session=x"), None).status,
        403
    );
    assert_eq!(
        vigil_system_tests::http::request(
            addr,
            "POST",
            "/api/settings",
            &[("Content-Type", "application/json")],
            body.as_bytes()
        )
        .status,
        403,
        "a session without its CSRF token"
    );

    // The view: every secret hidden, the cameras listed, the budget.
    let view = get(addr, "/api/settings");
    assert_eq!(view.status, 200, "{}", view.text());
    assert!(!view.text().contains(SECRET), "{}", view.text());
    let view = view.json();
    let shown = view["toml"].as_str().unwrap().to_owned();
    assert_eq!(view["cameras"][1]["url"], "rtsp://127.0.0.1:9/stream");
    assert!(view["budget"]["total"].as_u64().unwrap() < view["budget"]["limit"].as_u64().unwrap());
    assert!(view["fallback"].is_null());

    // Mistakes: every one named by key and line, the file untouched.
    let before = std::fs::read(&config).unwrap();
    let bad = shown.replace("detect_fps = 2", "detect_fps = 100");
    let r = post(addr, "/api/settings", &serde_json::json!({"toml": bad}));
    assert_eq!(r.status, 422, "{}", r.text());
    let e = &r.json()["errors"][0];
    assert_eq!(e["key"], "camera[0].detect_fps", "{}", r.text());
    assert!(e["line"].as_u64().is_some());
    let over = shown.replace("768MiB", "160MiB");
    let r = post(
        addr,
        "/api/settings/check",
        &serde_json::json!({"toml": over}),
    );
    assert_eq!(r.status, 422, "{}", r.text());
    assert_eq!(r.json()["errors"][0]["key"], "memory_limit", "{}", r.text());
    assert!(r.json()["budget"]["total"].as_u64().unwrap() > 160 << 20);
    assert_eq!(std::fs::read(&config).unwrap(), before, "nothing saved");

    // Export, then import the export: the same file, nothing to apply.
    let export = get(addr, "/api/settings/export");
    assert_eq!(export.status, 200);
    assert!(export
        .header("content-disposition")
        .unwrap()
        .contains("attachment"));
    assert!(!export.text().contains(SECRET));
    let r = post(
        addr,
        "/api/settings",
        &serde_json::json!({"toml": export.text(), "via": "import"}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["restarting"], false, "{}", r.text());
    assert_eq!(std::fs::read(&config).unwrap(), before);

    // Add a camera through the cameras form; the others come back as listed.
    let first_threads = threads_started_with(&v);
    let mut cams: Vec<serde_json::Value> = view["cameras"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            serde_json::json!({"was": c["name"], "name": c["name"], "url": c["url"],
                               "detect_fps": c["detect_fps"], "password": "***"})
        })
        .collect();
    cams.push(serde_json::json!({"name": "added", "url": sample_clip().to_str().unwrap(), "detect_fps": 1}));
    v.clear_log();
    let r = post(
        addr,
        "/api/settings/cameras",
        &serde_json::json!({"cameras": cams}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["restarting"], true, "{}", r.text());
    let addr = restarted(&v, addr);
    assert_eq!(v.pid(), pid, "re-executed in place");
    let cameras = get(addr, "/api/cameras").json();
    let names: Vec<&str> = cameras
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["sample", "door", "added"]);
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(
        text.contains(SECRET),
        "the hidden password was kept:\n{text}"
    );
    assert_eq!(
        std::fs::read(dir.0.join("data/vigil/config.toml.prev")).unwrap(),
        before
    );
    // The new configuration's threads, one decoder more than before.
    let threads = threads_started_with(&v);
    assert_eq!(threads, first_threads + 1);
    assert!(
        wait_until(Duration::from_secs(20), || v.sample().threads == threads),
        "threads {} != {threads}",
        v.sample().threads
    );
    let log = get(addr, "/api/settings").json();
    let last = &log["changes"][0];
    assert_eq!(last["via"], "cameras");
    assert!(
        last["changes"].to_string().contains("camera[added].url"),
        "{last}"
    );
    assert!(!log.to_string().contains(SECRET));

    // A section form: refused with its key, then saved and applied.
    let store = |n: u64| serde_json::json!({"section": "store", "values": {"max_events": n}});
    let r = post(addr, "/api/settings/section", &store(0));
    assert_eq!(r.status, 422, "{}", r.text());
    assert_eq!(
        r.json()["errors"][0]["key"],
        "store.max_events",
        "{}",
        r.text()
    );
    v.clear_log();
    let r = post(addr, "/api/settings/section", &store(5000));
    assert_eq!(r.json()["restarting"], true, "{}", r.text());
    let addr = restarted(&v, addr);
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(
        text.contains("max_events = 5000") && text.contains(SECRET),
        "{text}"
    );
    assert_eq!(get(addr, "/api/status").json()["store"]["max_events"], 5000);
    v.stop();
}

#[test]
fn a_hand_broken_file_starts_on_the_last_good_one_until_saved() {
    let dir = TempDir::new("settings-broken");
    let factory = factory(&dir.0);
    let config = dir.0.join("data/vigil/config.toml");
    let data = dir.0.join("data");
    let v = start(&config, &factory, &data);
    v.web_addr();
    v.stop();
    let good = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        good.replace("detect_fps = 2", "detect_fps = \"fast\""),
    )
    .unwrap();
    let v = start(&config, &factory, &data);
    let addr = v.web_addr();
    v.wait_for_line(Duration::from_secs(5), |l| {
        l.contains("starting on the last good configuration")
    });
    let view = get(addr, "/api/settings").json();
    let why = view["fallback"].to_string();
    assert!(why.contains("camera[0].detect_fps"), "{why}");
    // The page shows what runs; saving it replaces the broken file.
    let shown = view["toml"].as_str().unwrap();
    v.clear_log();
    let r = post(addr, "/api/settings", &serde_json::json!({"toml": shown}));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["restarting"], true);
    let addr = restarted(&v, addr);
    assert_eq!(std::fs::read_to_string(&config).unwrap(), good);
    assert!(get(addr, "/api/settings").json()["fallback"].is_null());
    v.stop();
}

#[test]
fn repeated_applies_leave_threads_fds_and_memory_flat_and_keep_events() {
    let dir = TempDir::new("settings-applies");
    let factory = factory(&dir.0);
    let config = dir.0.join("data/vigil/config.toml");
    let data = dir.0.join("data");
    let v = start(&config, &factory, &data);
    let mut addr = v.web_addr();
    let applies: usize = std::env::var("VIGIL_APPLIES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(10);
    let mut samples = Vec::new();
    let mut events = 0u64;
    for i in 0..applies {
        // Settle, then measure this process.
        std::thread::sleep(Duration::from_secs(2));
        let status = get(addr, "/api/status").json();
        let stored = status["store"]["events"].as_u64().unwrap_or(0);
        assert!(
            stored >= events,
            "apply {i}: stored events went from {events} to {stored}"
        );
        events = stored;
        samples.push((v.sample(), lasting_fds(v.pid())));
        let shown = get(addr, "/api/settings").json()["toml"]
            .as_str()
            .unwrap()
            .to_owned();
        let (from, to) = if i % 2 == 0 {
            ("768MiB", "769MiB")
        } else {
            ("769MiB", "768MiB")
        };
        v.clear_log();
        let r = post(
            addr,
            "/api/settings",
            &serde_json::json!({"toml": shown.replace(from, to)}),
        );
        assert_eq!(r.json()["restarting"], true, "{}", r.text());
        addr = restarted(&v, addr);
    }
    let ((first, first_fds), (last, last_fds)) = (&samples[0], samples.last().unwrap());
    eprintln!(
        "{applies} applies: threads {} -> {}, fds {} -> {}, RSS {} -> {} KiB, events {events}",
        first.threads,
        last.threads,
        first.open_fds,
        last.open_fds,
        first.rss_bytes >> 10,
        last.rss_bytes >> 10
    );
    assert_eq!(first.threads, last.threads);
    assert_eq!(first_fds, last_fds, "a descriptor survived a re-exec");
    assert!(
        !last_fds.iter().any(|f| f.contains("memfd")),
        "the handed-over sessions were not closed: {last_fds:?}"
    );
    assert!(last.rss_bytes < first.rss_bytes + (16 << 20));
    assert!(events > 0, "the sample clip raised events");
    v.stop();
}

/// What the process's descriptors point at, without those that come and go
/// with the work (a clip being written, a snapshot, a connection).
fn lasting_fds(pid: u32) -> Vec<String> {
    let mut fds: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("fd dir")
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .map(|t| t.to_string_lossy().into_owned())
        .filter(|t| {
            !t.starts_with("socket:") && !t.contains("/clips/") && !t.contains("/snapshots/")
        })
        .collect();
    fds.sort();
    fds
}

#[test]
fn vigil_run_from_camera_flags_has_no_file_to_edit() {
    let clip = sample_clip();
    let model = ssd_model();
    let v = Vigil::start(&[
        "run",
        "--camera",
        clip.to_str().unwrap(),
        "--model",
        model.to_str().unwrap(),
        "--status-every",
        "0",
    ]);
    let addr = v.web_addr();
    let r = get(addr, "/api/settings");
    assert_eq!(r.status, 409, "{}", r.text());
    assert!(r.text().contains("--config"), "{}", r.text());
    v.stop();
}

#[test]
fn a_test_event_reaches_the_running_upstream_and_its_answer_is_shown() {
    use vigil_system_tests::receiver::{Mode, Receiver};
    let dir = TempDir::new("settings-upstream");
    let rx = Receiver::start(Mode::Status(401));
    let factory = Config::new()
        .ssd_model()
        .http_upstream(&rx.url("/in"), "Authorization: Bearer t0k-secret")
        .write_as(&dir.0.join("factory.toml"));
    let data = dir.0.join("data");
    let v = start(&data.join("vigil/config.toml"), &factory, &data);
    let addr = v.web_addr();
    let test = |which: &str| {
        post(
            addr,
            "/api/settings/test-upstream",
            &serde_json::json!({"upstream": which}),
        )
    };
    // The receiver's refusal, as the page shows it.
    let r = test("http");
    assert_eq!(r.status, 502, "{}", r.text());
    assert!(
        r.json()["answer"].as_str().unwrap().contains("401"),
        "{}",
        r.text()
    );
    rx.set_mode(Mode::Ok);
    let r = test("http");
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        r.json()["answer"].as_str().unwrap().contains("accepted"),
        "{}",
        r.text()
    );
    let sent = rx.requests();
    let last = sent.last().expect("the receiver got the test event");
    assert_eq!(last.event.as_ref().unwrap()["test"], true);
    assert!(last
        .headers
        .iter()
        .any(|(k, v)| k == "authorization" && v.contains("t0k-secret")));
    assert!(!r.text().contains("t0k-secret"));
    // Not configured; not an upstream.
    assert_eq!(test("mqtt").status, 409);
    assert_eq!(test("ftp").status, 400);
    v.stop();
}
