//! Closed by default (issue 16, items 8, 9 and 11), against the real
//! binary: every route but the page shell, `/api/health` and the login
//! endpoints needs the admin session; Prometheus reads `/metrics` with the
//! configured bearer token and nothing else; the first setup needs the
//! one-time code from the log and `DATA_DIR/setup-code`; and no secret of
//! the configuration shows in the log or in any document vigil serves.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;
use vigil_system_tests::api::{num, status, wait_until};
use vigil_system_tests::config::{sample_clip, Camera, Config};
use vigil_system_tests::http::{self, get, get_anon, post_json, request_anon};
use vigil_system_tests::login::{setup_code, TEST_PASSWORD};
use vigil_system_tests::media::TempDir;
use vigil_system_tests::process::{promtool_check, run_to_end, Vigil};

const METRICS_TOKEN: &str = "prometheus-scrape-token-0123456789";

/// The first bytes of `/events` (its status line), sent with `cookie`.
fn stream_head(addr: SocketAddr, cookie: Option<&str>, wait: Duration) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    let cookie = cookie.map_or(String::new(), |c| format!("Cookie: {c}\r\n"));
    s.write_all(format!("GET /events HTTP/1.1\r\nHost: 127.0.0.1\r\n{cookie}\r\n").as_bytes())
        .unwrap();
    s.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut out = Vec::new();
    let deadline = std::time::Instant::now() + wait;
    let mut buf = [0u8; 4096];
    while std::time::Instant::now() < deadline {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(_) if !out.is_empty() && wait < Duration::from_secs(2) => break,
            Err(_) => {}
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn every_route_needs_the_session_but_the_shell_and_health() {
    let dir = TempDir::new("access-routes");
    let (v, addr) = Config::new()
        .listen_anywhere()
        .store("flush_after", "200ms")
        .web("metrics_token", METRICS_TOKEN)
        .camera(Camera::named("street", sample_clip()))
        .serve(&dir);
    // An event with its snapshot and clip, so every footage route exists.
    let mut id = 0;
    assert!(
        wait_until(Duration::from_secs(90), || {
            let events = get(addr, "/api/events?limit=500").json();
            let found = events["events"].as_array().and_then(|es| {
                es.iter()
                    .find(|e| e["clip"].is_string() && e["snapshot"].is_string())
                    .and_then(|e| e["id"].as_u64())
            });
            id = found.unwrap_or(0);
            found.is_some_and(|id| get(addr, &format!("/api/events/{id}/clip.mp4")).status == 200)
        }),
        "no event with a written clip within 90 s"
    );
    let closed = [
        "/metrics".to_owned(),
        "/api/status".to_owned(),
        "/api/cameras".to_owned(),
        "/api/history".to_owned(),
        "/api/events".to_owned(),
        "/api/events?after=0&limit=5".to_owned(),
        // The system's versions and update state: the admin's.
        "/api/update".to_owned(),
        format!("/api/events/{id}/snapshot.jpg"),
        format!("/api/events/{id}/clip.mp4"),
    ];
    for path in &closed {
        let r = get_anon(addr, path);
        assert_eq!(r.status, 401, "{path} without a session: {}", r.text());
        assert!(r.json()["error"].is_string(), "{path}: JSON error");
        let head = request_anon(addr, "HEAD", path, &[], b"");
        assert_eq!(head.status, 401, "HEAD {path} without a session");
        let r = get(addr, path);
        assert_eq!(r.status, 200, "{path} with the session: {}", r.text());
    }
    let anon = stream_head(addr, None, Duration::from_secs(1));
    assert!(
        anon.starts_with("HTTP/1.1 401"),
        "/events without a session: {anon}"
    );
    let cookie = http::session(addr).expect("claimed");
    let live = stream_head(addr, Some(&cookie), Duration::from_secs(1));
    assert!(
        live.starts_with("HTTP/1.1 200"),
        "/events with the session: {live}"
    );
    // A forged cookie is no session.
    let forged = [("Cookie", "vigil_session=00ff00ff")];
    assert_eq!(
        request_anon(addr, "GET", "/api/status", &forged, b"").status,
        401
    );
    // Public: the page shell (it shows the login), health and the session.
    for path in ["/", "/index.html", "/api/session"] {
        assert_eq!(get_anon(addr, path).status, 200, "{path}");
    }
    let health = get_anon(addr, "/api/health");
    assert_eq!(health.status, 200);
    let h = health.json();
    assert_eq!(h["ok"], true, "{h}");
    assert!(h["version"].is_string(), "{h}");
    assert_eq!(
        h.as_object().unwrap().len(),
        2,
        "health names nothing else: {h}"
    );
    // Prometheus: the bearer token opens /metrics and nothing else; a
    // wrong token or the admin password does not.
    let bearer = format!("Bearer {METRICS_TOKEN}");
    let scrape = request_anon(addr, "GET", "/metrics", &[("Authorization", &bearer)], b"");
    assert_eq!(scrape.status, 200, "{}", scrape.text());
    if let Err(e) = promtool_check(&scrape.text()) {
        panic!("{e}");
    }
    for wrong in [
        format!("Bearer {METRICS_TOKEN}x"),
        "Bearer not-the-token-at-all-000000".to_owned(),
        format!("Bearer {TEST_PASSWORD}"),
    ] {
        let r = request_anon(addr, "GET", "/metrics", &[("Authorization", &wrong)], b"");
        assert_eq!(r.status, 401, "{wrong}: {}", r.text());
    }
    let r = request_anon(
        addr,
        "GET",
        "/api/status",
        &[("Authorization", &bearer)],
        b"",
    );
    assert_eq!(r.status, 401, "the metrics token opens only /metrics");
    assert_eq!(v.stop(), 0);
}

#[test]
fn the_first_setup_needs_the_one_time_code() {
    let dir = TempDir::new("access-setup");
    let cfg = Config::new()
        .listen_anywhere()
        .camera(Camera::named("street", sample_clip()));
    let (v, _) = cfg.serve_unclaimed(&dir);
    let data = dir.join("data");
    let code = setup_code(&data).expect("DATA_DIR/setup-code written at first start");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(data.join("setup-code"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "setup-code mode {mode:o}");
    let shape: Vec<usize> = code.split('-').map(str::len).collect();
    assert_eq!(shape, [4, 4, 4], "{code}");
    assert!(
        !v.lines_matching(|l| l.contains(&code) && l.contains("setup code"))
            .is_empty(),
        "the code is in the log"
    );
    assert_eq!(v.stop(), 0);
    // A restart before setup keeps the code.
    let (v, addr) = cfg.serve_unclaimed(&dir);
    assert_eq!(setup_code(&data).as_deref(), Some(code.as_str()));
    let body = |code: Option<&str>| {
        match code {
            Some(c) => serde_json::json!({ "password": "correct horse", "code": c }),
            None => serde_json::json!({ "password": "correct horse" }),
        }
        .to_string()
    };
    let r = post_json(addr, "/api/setup", &body(None), None, None);
    assert_eq!(r.status, 403, "setup without the code: {}", r.text());
    assert!(r.text().contains("setup code"), "{}", r.text());
    let r = post_json(
        addr,
        "/api/setup",
        &body(Some("ABCD-EFGH-JKLM")),
        None,
        None,
    );
    assert_eq!(r.status, 403, "setup with a wrong code: {}", r.text());
    assert_eq!(
        get_anon(addr, "/api/session").json()["admin_set"],
        false,
        "a refused setup sets nothing"
    );
    let r = post_json(
        addr,
        "/api/setup",
        &body(Some(&code.to_lowercase())),
        None,
        None,
    );
    assert_eq!(r.status, 200, "setup with the code: {}", r.text());
    assert!(
        !data.join("setup-code").exists(),
        "the file goes after setup"
    );
    let again = serde_json::json!({ "password": "another one", "code": code }).to_string();
    assert_eq!(
        post_json(addr, "/api/setup", &again, None, None).status,
        409
    );
    assert_eq!(v.stop(), 0);
}

#[test]
fn wrong_setup_codes_are_rate_limited() {
    let dir = TempDir::new("access-guess");
    let (v, addr) = Config::new()
        .listen_anywhere()
        .camera(Camera::named("street", sample_clip()))
        .serve_unclaimed(&dir);
    let mut codes = Vec::new();
    for _ in 0..8 {
        let guess = r#"{"password":"correct horse","code":"2222-3333-4444"}"#;
        codes.push(post_json(addr, "/api/setup", guess, None, None).status);
    }
    assert_eq!(&codes[..5], &[403; 5], "{codes:?}");
    assert_eq!(codes[7], 429, "{codes:?}");
    assert_eq!(v.stop(), 0);
}

/// Every secret the configuration below holds.
const SECRETS: [&str; 7] = [
    "CamUrlPass77",
    "CamQueryTok88",
    "CamKeyPass99",
    "HookQueryTok11",
    "HookHeaderTok22",
    "MqttPass33",
    METRICS_TOKEN,
];

#[test]
fn secrets_never_show_in_the_log_or_any_document() {
    let dir = TempDir::new("access-secrets");
    let data = dir.join("data");
    // Nothing listens on these ports: the camera and the upstreams fail
    // and retry, so their errors are logged over and over.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = dead.local_addr().unwrap().port();
    drop(dead);
    let cfg = Config::new()
        .listen_anywhere()
        .store("flush_after", "200ms")
        .web("metrics_token", METRICS_TOKEN)
        .http_upstream(
            &format!("http://127.0.0.1:{port}/hook?token=HookQueryTok11"),
            "Authorization: Bearer HookHeaderTok22",
        )
        .upstream("retry_min", "100ms")
        .upstream("retry_max", "500ms")
        .mqtt_upstream(&format!("mqtt://127.0.0.1:{port}"))
        .table("upstream.mqtt", "username", "box")
        .table("upstream.mqtt", "password", "MqttPass33")
        .camera(Camera::named("street", sample_clip()))
        .camera(
            Camera::named(
                "door",
                format!("rtsp://admin:CamUrlPass77@127.0.0.1:{port}/live?token=CamQueryTok88&ch=1"),
            )
            .max_resolution("320x240")
            .reconnect("100ms", "500ms"),
        )
        .camera(
            Camera::named("gate", format!("rtsp://127.0.0.1:{port}/s"))
                .credentials("viewer", "CamKeyPass99")
                .max_resolution("320x240")
                .reconnect("100ms", "500ms"),
        )
        .write(&dir);
    let (_, out, err) = run_to_end(&["check-config", "--config", cfg.to_str().unwrap()]);
    let mut seen = format!("check-config:\n{out}{err}");
    let v = Vigil::start_with_env(
        &[
            "run",
            "--config",
            cfg.to_str().unwrap(),
            "--data-dir",
            data.to_str().unwrap(),
            "--status-every",
            "1",
        ],
        &[("VIGIL_LOG", "debug")],
    );
    let addr = v.web_addr();
    assert!(wait_until(Duration::from_secs(60), || {
        let s = status(addr);
        num(&s, &["store", "last_id"]) >= 2 && v.lines_matching(|l| l.contains("door")).len() >= 3
    }));
    let cookie = http::session(addr).expect("claimed");
    seen.push_str(&stream_head(addr, Some(&cookie), Duration::from_secs(5)));
    for path in [
        "/",
        "/api/health",
        "/api/session",
        "/api/status",
        "/api/cameras",
        "/api/history",
        "/api/events?limit=500",
        "/metrics",
    ] {
        let r = get(addr, path);
        assert_eq!(r.status, 200, "{path}");
        seen.push_str(&format!("\n{path}:\n{}", r.text()));
    }
    let cams = get(addr, "/api/cameras").json();
    let door = cams[1]["url"].as_str().unwrap_or("").to_owned();
    let logged = v.lines_matching(|_| true);
    assert_eq!(v.stop(), 0);
    let all = format!("{seen}\n{}", logged.join("\n"));
    assert!(all.len() > 10_000, "too little captured to mean anything");
    for secret in SECRETS {
        let hits: Vec<&str> = all.lines().filter(|l| l.contains(secret)).take(3).collect();
        assert!(hits.is_empty(), "{secret} leaked:\n{}", hits.join("\n"));
    }
    // Redacted, not removed: the operator still sees which camera it is.
    assert!(
        door.contains("127.0.0.1") && door.contains("token=***"),
        "{door}"
    );
}
