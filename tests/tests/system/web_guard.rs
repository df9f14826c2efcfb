//! The web interface closed against hostile clients (issue 16): foreign
//! `Host` names (DNS rebinding) are refused, a flood of logins neither grows
//! the hashing queue nor locks the installer out, and an event stream ends
//! with the session it was opened with. Each runs the real binary on the
//! sample clip; `web.rs` has the rest of the web interface's tests.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};
use vigil_system_tests::api::{self, num, status, wait_until};
use vigil_system_tests::config::{sample_clip, Camera, Config};
use vigil_system_tests::http::{self, get, post_json};
use vigil_system_tests::login::{self, TEST_PASSWORD};
use vigil_system_tests::media::TempDir;

/// The sample clip as the camera "street", on an ephemeral port.
fn street() -> Config {
    Config::new()
        .listen_anywhere()
        .camera(Camera::named("street", sample_clip()))
}

fn sse_clients(addr: SocketAddr) -> u64 {
    num(&status(addr), &["sse", "clients"])
}

/// `GET path` with the given `Host` header (or none, as HTTP/1.0).
fn get_with_host(addr: SocketAddr, path: &str, host: Option<&str>) -> http::Response {
    let req = match host {
        Some(h) => format!("GET {path} HTTP/1.1\r\nHost: {h}\r\nConnection: close\r\n\r\n"),
        None => format!("GET {path} HTTP/1.0\r\n\r\n"),
    };
    http::raw(
        addr,
        &http::with_session(addr, req.as_bytes()),
        Duration::from_secs(10),
    )
}

#[test]
fn dns_rebinding_hosts_are_refused_on_get_and_post() {
    let dir = TempDir::new("web-host");
    let (v, addr) = street().serve_unclaimed(&dir);
    let port = addr.port();
    // A rebinding page makes the browser send its own name.
    let refused = |addr: SocketAddr| {
        for host in ["evil.example".to_owned(), format!("evil.example:{port}")] {
            for path in ["/", "/api/status", "/api/session", "/metrics", "/events"] {
                let r = get_with_host(addr, path, Some(&host));
                assert_eq!(r.status, 421, "GET {path} with Host {host}: {}", r.text());
                assert!(
                    r.json()["error"]
                        .as_str()
                        .unwrap()
                        .contains("[web] hostnames"),
                    "{}",
                    r.text()
                );
            }
        }
    };
    refused(addr);
    let body = r#"{"password":"correct horse"}"#;
    let post = format!(
        "POST /api/setup HTTP/1.1\r\nHost: evil.example:{port}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let r = http::raw(addr, post.as_bytes(), Duration::from_secs(10));
    assert_eq!(r.status, 421, "POST with a foreign Host: {}", r.text());
    assert_eq!(
        get(addr, "/api/session").json()["admin_set"],
        false,
        "the refused setup did nothing"
    );
    login::claim(addr, Some(&dir.join("data")));
    // The harness client sends `Host: 127.0.0.1:PORT`; localhost and IPv6
    // literals in any case and with any port work too.
    let served = |addr: SocketAddr, hosts: &[String]| {
        for host in hosts {
            for path in ["/", "/api/status"] {
                let r = get_with_host(addr, path, Some(host));
                assert_eq!(r.status, 200, "GET {path} with Host {host}: {}", r.text());
            }
        }
    };
    served(
        addr,
        &[
            format!("127.0.0.1:{port}"),
            "127.0.0.1".to_owned(),
            format!("LocalHost:{port}"),
            "localhost.".to_owned(),
            format!("[::1]:{port}"),
        ],
    );
    // HTTP/1.0 without Host: no browser sends that, so it is served.
    assert_eq!(get_with_host(addr, "/api/status", None).status, 200);
    assert_eq!(
        get_with_host(addr, "/", Some(&format!("vigil.local:{port}"))).status,
        421,
        "a name is refused until it is configured"
    );
    assert_eq!(v.stop(), 0);
    // A configured name works, in any case, with a trailing dot and a port.
    let names: &[&str] = &["vigil.local"];
    let (v, addr) = street().web("hostnames", names).serve(&dir);
    served(
        addr,
        &[
            format!("vigil.local:{}", addr.port()),
            "VIGIL.Local.".to_owned(),
            addr.to_string(),
        ],
    );
    refused(addr);
    assert_eq!(v.stop(), 0);
}

/// A TCP connection to `to` from the loopback address `from` (Linux routes
/// all of 127/8 to lo), so one test can play several peers.
fn connect_from(from: std::net::Ipv4Addr, to: SocketAddr) -> std::io::Result<TcpStream> {
    use std::os::fd::FromRawFd;
    let SocketAddr::V4(to) = to else {
        panic!("vigil listens on IPv4 here")
    };
    let sockaddr = |ip: std::net::Ipv4Addr, port: u16| libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(ip).to_be(),
        },
        sin_zero: [0; 8],
    };
    let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: a fresh socket; bind and connect get valid sockaddr_in of
    // `len` bytes; on any failure the fd is closed before returning.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let local = sockaddr(from, 0);
        let remote = sockaddr(*to.ip(), to.port());
        if libc::bind(fd, (&local as *const libc::sockaddr_in).cast(), len) != 0
            || libc::connect(fd, (&remote as *const libc::sockaddr_in).cast(), len) != 0
        {
            let e = std::io::Error::last_os_error();
            libc::close(fd);
            return Err(e);
        }
        Ok(TcpStream::from_raw_fd(fd))
    }
}

/// A login request with `password` (JSON-escaped by the caller).
fn login_request(addr: SocketAddr, password: &str) -> Vec<u8> {
    let body = format!(r#"{{"password":"{password}"}}"#);
    format!(
        "POST /api/login HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// `vigil_auth_hashes_in_flight`, if the scrape has it (main's has not).
fn hashes_in_flight(addr: SocketAddr) -> Option<f64> {
    let r = get(addr, "/metrics");
    (r.status == 200)
        .then(|| api::Metrics(r.text()).get("vigil_auth_hashes_in_flight"))
        .flatten()
}

#[test]
fn a_login_flood_is_refused_at_once_and_the_admin_still_gets_in() {
    let dir = TempDir::new("web-login-flood");
    let (v, addr) = street().serve(&dir);
    // The harness set the password from 127.0.0.1 (the installer); the
    // flood comes from other addresses (127.0.0.2..), as an attacker on the
    // LAN would.
    let short = "w".repeat(900);
    let long = "l".repeat(16 << 10);
    // POST, then hang up without reading: the request's task runs on.
    let flood = |rounds: usize| {
        std::thread::scope(|s| {
            for t in 0..8usize {
                let (short, long) = (&short, &long);
                s.spawn(move || {
                    for i in 0..rounds {
                        let n = t * rounds + i;
                        let from = std::net::Ipv4Addr::new(
                            127,
                            0,
                            1 + (n / 250 % 200) as u8,
                            2 + (n % 250) as u8,
                        );
                        let Ok(mut c) = connect_from(from, addr) else {
                            continue;
                        };
                        let pw = if n.is_multiple_of(2) { short } else { long };
                        let _ = c.write_all(&login_request(addr, pw));
                    }
                });
            }
        })
    };
    // A flooding client that reads its answer.
    let answer = |from: std::net::Ipv4Addr, password: &str| {
        let mut c = connect_from(from, addr).ok()?;
        c.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        c.write_all(&login_request(addr, password)).ok()?;
        let mut buf = Vec::new();
        let _ = c.read_to_end(&mut buf);
        let r = http::parse(&buf);
        Some((
            r.status,
            r.header("retry-after").map(str::to_owned),
            r.text(),
        ))
    };
    // Warm up: connection buffers and the refusal paths reach their size;
    // an answered login shows the backlog is gone.
    flood(250);
    let probe = answer(std::net::Ipv4Addr::new(127, 0, 251, 1), "probe wrong");
    assert!(probe.as_ref().is_some_and(|p| p.0 != 0), "{probe:?}");
    std::thread::sleep(Duration::from_secs(1));
    let base = v.sample();
    let (mut max_rss, mut max_threads, mut max_queue) = (base.rss_bytes, base.threads, 0.0f64);
    let mut answers: Vec<(u16, Option<String>, String)> = Vec::new();
    let done = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        let flooder = s.spawn(|| {
            flood(1000);
            done.store(true, std::sync::atomic::Ordering::Relaxed);
        });
        // Meanwhile: sample the process, the queue, and what a flooding
        // client that does read its answers gets.
        let mut n = 0u8;
        while !done.load(std::sync::atomic::Ordering::Relaxed) {
            let p = v.sample();
            max_rss = max_rss.max(p.rss_bytes);
            max_threads = max_threads.max(p.threads);
            if let Some(q) = hashes_in_flight(addr) {
                max_queue = max_queue.max(q);
            }
            n = n.wrapping_add(1);
            let from = std::net::Ipv4Addr::new(127, 0, 250, 2 + n % 250);
            let pw = if n.is_multiple_of(4) { &long } else { &short };
            answers.extend(answer(from, pw));
            std::thread::sleep(Duration::from_millis(20));
        }
        flooder.join().unwrap();
    });
    let p = v.sample();
    max_rss = max_rss.max(p.rss_bytes);
    max_threads = max_threads.max(p.threads);
    let after = v.sample();
    // Right after the flood, the admin logs in from the installer's
    // address, honouring any Retry-After the box gives (a full queue drains
    // in seconds); the flood must not lock them out.
    let mut admin = Vec::new();
    for _ in 0..4 {
        let r = post_json(
            addr,
            "/api/login",
            &format!(r#"{{"password":"{TEST_PASSWORD}"}}"#),
            None,
            None,
        );
        let wait = r.header("retry-after").and_then(|w| w.parse::<u64>().ok());
        admin.push(format!("{} {}", r.status, r.text()));
        match (r.status, wait) {
            (429, Some(w)) if w <= 5 => std::thread::sleep(Duration::from_secs(w)),
            _ => break,
        }
    }
    let drained = wait_until(Duration::from_secs(60), || {
        hashes_in_flight(addr) == Some(0.0)
    });
    let m = get(addr, "/metrics").text();
    let count = |status: u16| answers.iter().filter(|a| a.0 == status).count();
    eprintln!(
        "login flood: 8000 POST-then-close from 4000 addresses (half 900 B, half 16 KiB passwords); \
         threads {} -> max {max_threads}; RSS {} KiB -> max {} KiB (+{} KiB), after {} KiB; \
         hashes in flight max {max_queue}, drained {drained}; a reading client got {} answers: \
         {} x 429, {} x 400, {} x 401, {} x 503; admin: {admin:?}",
        base.threads,
        base.rss_bytes / 1024,
        max_rss / 1024,
        (max_rss as i64 - base.rss_bytes as i64) / 1024,
        after.rss_bytes / 1024,
        answers.len(),
        count(429),
        count(400),
        count(401),
        count(503),
    );
    for line in m.lines().filter(|l| l.starts_with("vigil_auth_")) {
        eprintln!("  {line}");
    }
    assert_eq!(max_threads, base.threads, "threads moved");
    assert!(
        max_rss < base.rss_bytes + (4 << 20),
        "RSS grew {} KiB during the flood: queued checks hold their passwords",
        (max_rss - base.rss_bytes) / 1024
    );
    assert!(
        admin.last().is_some_and(|a| a.starts_with("200 ")),
        "the admin could not log in after the flood: {admin:?}"
    );
    assert!(
        answers
            .iter()
            .any(|(s, _, t)| *s == 400 && t.contains("over 1024 bytes")),
        "a 16 KiB password was not refused before queueing: {answers:?}"
    );
    assert!(drained, "the hash queue never drained");
    assert!(max_queue <= 4.0, "hashes in flight reached {max_queue}");
    assert!(count(429) > 0, "no 429 for the flood: {answers:?}");
    for (status, retry, text) in &answers {
        if *status == 429 {
            let secs: u64 = retry
                .as_deref()
                .and_then(|r| r.parse().ok())
                .unwrap_or_else(|| panic!("429 without Retry-After: {text}"));
            assert!(secs >= 1, "{text}");
        }
    }
    let metric = |reason: &str| {
        api::Metrics(m.clone()).value(&format!("vigil_auth_refused_total{{reason=\"{reason}\"}}"))
    };
    assert!(metric("too_long") >= 100.0, "{m}");
    assert!(metric("busy") + metric("rate_limited") >= 100.0, "{m}");
    assert_eq!(v.stop(), 0);
}

/// Logs in (or sets the password, with `setup`); the cookie pair and the
/// CSRF token.
fn session(addr: SocketAddr, path: &str, password: &str) -> (String, String) {
    let r = post_json(
        addr,
        path,
        &format!(r#"{{"password":"{password}"}}"#),
        None,
        None,
    );
    assert_eq!(r.status, 200, "{path}: {}", r.text());
    let cookie = r
        .header("set-cookie")
        .expect("session cookie")
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    (cookie, r.json()["csrf"].as_str().expect("csrf").to_owned())
}

/// Opens `/events` with a session cookie and reads the preamble.
fn open_stream_with(addr: SocketAddr, cookie: &str) -> TcpStream {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    write!(
        s,
        "GET /events HTTP/1.1\r\nHost: {addr}\r\nCookie: {cookie}\r\n\r\n"
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline && !String::from_utf8_lossy(&got).contains(": connected") {
        if let Ok(n) = s.read(&mut buf) {
            got.extend_from_slice(&buf[..n]);
        }
    }
    let head = String::from_utf8_lossy(&got).into_owned();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    s
}

/// Reads `s` until the server closes it or `within` passes: what came, and
/// whether it closed.
fn read_until_closed(s: &mut TcpStream, within: Duration) -> (String, bool) {
    let deadline = Instant::now() + within;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        match s.read(&mut buf) {
            Ok(0) => return (String::from_utf8_lossy(&got).into_owned(), true),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return (String::from_utf8_lossy(&got).into_owned(), true),
        }
    }
    (String::from_utf8_lossy(&got).into_owned(), false)
}

#[test]
fn sse_streams_end_when_their_session_ends() {
    let dir = TempDir::new("web-sse-session");
    let (v, addr) = street()
        .web("heartbeat", "1s")
        .web("max_sse_clients", 4)
        .serve(&dir);
    // Logout: the stream opened with that session ends.
    let (a, a_csrf) = session(addr, "/api/login", TEST_PASSWORD);
    let mut stream_a = open_stream_with(addr, &a);
    assert_eq!(
        post_json(addr, "/api/logout", "{}", Some(&a), Some(&a_csrf)).status,
        204
    );
    let (tail, closed) = read_until_closed(&mut stream_a, Duration::from_secs(5));
    eprintln!(
        "after logout: closed {closed}, last bytes {:?}",
        tail.chars().rev().take(80).collect::<String>()
    );
    assert!(closed, "the stream outlived its session's logout: {tail}");
    assert!(tail.contains("event: session"), "{tail}");

    // Password change: it keeps the changer's session and ends the others,
    // and with them their streams.
    let (b, _) = session(addr, "/api/login", TEST_PASSWORD);
    let (c, c_csrf) = session(addr, "/api/login", TEST_PASSWORD);
    let mut stream_b = open_stream_with(addr, &b);
    let mut stream_c = open_stream_with(addr, &c);
    let change = format!(r#"{{"current":"{TEST_PASSWORD}","new":"battery staple"}}"#);
    assert_eq!(
        post_json(addr, "/api/password", &change, Some(&c), Some(&c_csrf)).status,
        204
    );
    // The harness's own session ended with the change too.
    http::remember_session(addr, &c);
    let (tail, closed) = read_until_closed(&mut stream_b, Duration::from_secs(5));
    eprintln!("after password change: other session's stream closed {closed}");
    assert!(closed, "a stream of an ended session goes on: {tail}");
    let (tail, closed) = read_until_closed(&mut stream_c, Duration::from_secs(3));
    assert!(
        !closed,
        "the changer's own session (still valid) lost its stream"
    );
    // Still delivering: a heartbeat goes out only when no event did for a
    // whole period, and the street clip may raise events all the while.
    assert!(
        tail.contains(": hb") || tail.contains("event: "),
        "the changer's stream went quiet: {tail}"
    );
    assert!(wait_until(Duration::from_secs(3), || sse_clients(addr) == 1));
    drop(stream_c);
    assert_eq!(v.stop(), 0);
}
