//! The web interface against real clients: hundreds of slow connections,
//! thousands of SSE clients that vanish, malformed requests, promtool on a
//! live scrape, the admin password flow, and headless Chromium on the status
//! page. Each runs the real binary on the sample clip.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};
use vigil_system_tests::api::{metrics, num, status, wait_until};
use vigil_system_tests::config::{sample_clip, Camera, Config};
use vigil_system_tests::http::{self, get, get_anon, post_json};
use vigil_system_tests::login::setup_code;
use vigil_system_tests::media::TempDir;
use vigil_system_tests::process::{promtool_check, root, Vigil};

/// The sample clip as the camera "street", on an ephemeral port; tests
/// add their `[web]` keys.
fn street() -> Config {
    Config::new()
        .listen_anywhere()
        .camera(Camera::named("street", sample_clip()))
}

fn threads(v: &Vigil) -> u64 {
    v.sample().threads
}

fn sse_clients(addr: SocketAddr) -> u64 {
    num(&status(addr), &["sse", "clients"])
}

#[test]
fn api_documents_and_paging() {
    let dir = TempDir::new("web-api");
    let (v, addr) = street().serve(&dir);
    let status = get(addr, "/api/status");
    assert_eq!(status.status, 200);
    let s = status.json();
    assert_eq!(s["backend"], "software");
    assert!(s["memory_budget_bytes"].as_f64().unwrap() > 0.0);
    assert_eq!(s["web"]["max_connections"], 64);
    // Wait for a few stored events (committed by the events thread within
    // store.flush_after), then page through them.
    assert!(wait_until(Duration::from_secs(60), || {
        get(addr, "/api/status").json()["store"]["last_id"]
            .as_u64()
            .unwrap()
            >= 3
    }));
    let page = get(addr, "/api/events?after=0&limit=2").json();
    let ids: Vec<u64> = page["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids, vec![1, 2]);
    assert_eq!(page["next_after"], 2);
    let next = get(addr, "/api/events?after=2&limit=1").json();
    assert_eq!(next["events"][0]["id"], 3);
    let capped = get(addr, "/api/events?limit=100000").json();
    assert!(capped["events"].as_array().unwrap().len() <= 500);
    let bad = get(addr, "/api/events?after=-4");
    assert_eq!(bad.status, 400);
    assert!(bad.json()["error"].as_str().unwrap().contains("after"));
    let cams = get(addr, "/api/cameras").json();
    assert_eq!(cams[0]["name"], "street");
    assert_eq!(cams[0]["state"], "streaming");
    assert_eq!(cams[0]["codec"], "h264");
    assert!(!cams[0]["latest_events"].as_array().unwrap().is_empty());
    assert_eq!(v.stop(), 0);
}

#[test]
fn promtool_passes_on_a_live_scrape() {
    let dir = TempDir::new("web-metrics");
    let (v, addr) = street().serve(&dir);
    assert!(wait_until(Duration::from_secs(60), || {
        get(addr, "/metrics")
            .text()
            .contains("vigil_inference_duration_seconds_count 1")
            || get(addr, "/api/status").json()["events"]["latest_id"]
                .as_u64()
                .unwrap()
                > 0
    }));
    // An SSE client, so its gauge reads 1.
    let mut sse = TcpStream::connect(addr).unwrap();
    sse.write_all(&http::with_session(
        addr,
        b"GET /events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
    ))
    .unwrap();
    assert!(wait_until(Duration::from_secs(5), || sse_clients(addr) == 1));
    let scrape = get(addr, "/metrics");
    assert_eq!(scrape.status, 200);
    assert!(scrape
        .header("content-type")
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    let text = scrape.text();
    for needle in [
        "process_resident_memory_bytes ",
        "vigil_memory_budget_bytes ",
        "vigil_threads ",
        "process_open_fds ",
        "vigil_camera_frames_decoded_total{camera=\"street\"} ",
        "vigil_camera_frames_dropped_total{camera=\"street\",reason=\"pool_empty\"} ",
        "vigil_camera_state{camera=\"street\",state=\"streaming\"} 1",
        "vigil_inference_duration_seconds_bucket{le=\"+Inf\"} ",
        "vigil_pool_in_use{camera=\"street\",pool=\"frames\"} ",
        "vigil_sse_clients 1",
        "vigil_http_connections_max 64",
    ] {
        assert!(text.contains(needle), "missing `{needle}` in:\n{text}");
    }
    if let Err(e) = promtool_check(&text) {
        panic!("{e}");
    }
    drop(sse);
    assert_eq!(v.stop(), 0);
}

#[test]
fn bad_requests_get_4xx_and_the_server_keeps_serving() {
    let dir = TempDir::new("web-bad");
    let (v, addr) = street()
        .web("header_timeout", "2s")
        .web("body_timeout", "2s")
        .web("max_body", "4KiB")
        .serve(&dir);
    let t = Duration::from_secs(10);
    let cases: Vec<(&str, Vec<u8>, &[u16])> = vec![
        ("garbage request line", b"GARBAGE\r\n\r\n".to_vec(), &[400]),
        ("binary junk", vec![0xff, 0x00, 0x13, 0x37, b'\r', b'\n', b'\r', b'\n'], &[400]),
        ("bad version", b"GET / HTTP/9.9\r\nHost: 127.0.0.1\r\n\r\n".to_vec(), &[400, 505]),
        (
            "header over 16 KiB",
            format!("GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: {}\r\n\r\n", "a".repeat(20_000)).into_bytes(),
            &[431],
        ),
        (
            "declared body over max_body",
            b"POST /api/login HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 10000000\r\n\r\n".to_vec(),
            &[413],
        ),
        (
            "chunked body over max_body",
            {
                let mut r = b"POST /api/login HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n".to_vec();
                for _ in 0..3 {
                    r.extend_from_slice(b"800\r\n");
                    r.extend_from_slice(&[b' '; 0x800]);
                    r.extend_from_slice(b"\r\n");
                }
                r.extend_from_slice(b"0\r\n\r\n");
                r
            },
            &[413],
        ),
        (
            "body never sent",
            b"POST /api/login HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{".to_vec(),
            &[408],
        ),
        ("unknown path", b"GET /nope HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".to_vec(), &[404]),
        ("wrong method", b"DELETE /api/status HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".to_vec(), &[405]),
        (
            "not JSON",
            b"POST /api/login HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/plain\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi".to_vec(),
            &[415],
        ),
        (
            "bad JSON",
            b"POST /api/login HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 5\r\nConnection: close\r\n\r\n{bad}".to_vec(),
            &[400],
        ),
        (
            "cross-origin POST",
            b"POST /api/setup HTTP/1.1\r\nHost: 127.0.0.1\r\nOrigin: http://evil.example\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}".to_vec(),
            &[403],
        ),
    ];
    for (name, bytes, want) in cases {
        let started = Instant::now();
        let r = http::raw(addr, &bytes, t);
        assert!(
            want.contains(&r.status),
            "{name}: got {} ({}), want {want:?}",
            r.status,
            r.text()
        );
        if r.status >= 400 && r.header("content-type") == Some("application/json") {
            assert!(r.json()["error"].is_string(), "{name}: error message");
        }
        assert!(
            started.elapsed() < t,
            "{name}: took {:?}",
            started.elapsed()
        );
        assert_eq!(
            get(addr, "/api/status").status,
            200,
            "still serving after {name}"
        );
    }
    // Mutated requests, sent whole and half-closed: every one gets an
    // answer or a close, and the server keeps serving.
    let seeds: [&[u8]; 4] = [
        b"GET /api/events?after=1&limit=5 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
        b"POST /api/login HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 20\r\n\r\n{\"password\":\"abcdefg\"}",
        b"GET /events HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: vigil_session=00ff\r\n\r\n",
        b"POST /api/password HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\nContent-Type: application/json\r\n\r\n5\r\n{\"a\":\r\n0\r\n\r\n",
    ];
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut answered = [0usize; 6];
    for i in 0..400 {
        let mut req = seeds[i % seeds.len()].to_vec();
        for _ in 0..1 + next() % 4 {
            let at = (next() % req.len() as u64) as usize;
            match next() % 3 {
                0 => req[at] = next() as u8,
                1 => req.insert(at, b"\r\n:%\0 /?&="[(next() % 10) as usize]),
                _ => {
                    req.remove(at);
                }
            }
        }
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let _ = s.write_all(&req);
        let _ = s.shutdown(std::net::Shutdown::Write);
        let mut buf = Vec::new();
        let _ = s.read_to_end(&mut buf);
        let status = http::parse(&buf).status;
        answered[(status / 100) as usize] += 1;
    }
    eprintln!("mutated requests by status class (none,1xx..5xx): {answered:?}");
    assert_eq!(answered[5], 0, "a mutated request caused a 5xx");
    assert_eq!(get(addr, "/api/status").status, 200);

    // Slowloris: headers one byte at a time are cut off at header_timeout.
    let mut slow = TcpStream::connect(addr).unwrap();
    slow.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let started = Instant::now();
    let mut closed = false;
    for b in b"GET /api/status HTTP/1.1\r\nHost: slow-client-sending-forever\r\nX-A: "
        .iter()
        .cycle()
    {
        if slow.write_all(&[*b]).is_err() {
            closed = true;
            break;
        }
        let mut buf = [0u8; 512];
        match slow.read(&mut buf) {
            Ok(0) | Err(_) if started.elapsed() > Duration::from_secs(8) => break,
            Ok(0) => {
                closed = true;
                break;
            }
            Ok(_) => {
                closed = true;
                break;
            }
            Err(_) => {}
        }
    }
    assert!(closed, "a slowloris client was not cut off");
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "cut off after {:?} (header_timeout 2s)",
        started.elapsed()
    );
    assert_eq!(get(addr, "/api/status").status, 200);
    assert!(
        v.lines_matching(|l| l.contains("panicked")).is_empty(),
        "a request made vigil panic"
    );
    assert_eq!(v.stop(), 0);
}

#[test]
fn slow_clients_do_not_move_the_thread_count() {
    let limit = http::raise_fd_limit();
    assert!(limit >= 1200, "need 1200 fds, have {limit}");
    let dir = TempDir::new("web-slow");
    let (v, addr) = street()
        .web("max_connections", 64)
        .web("header_timeout", "4s")
        .serve(&dir);
    let baseline = threads(&v);
    let base_fds = v.sample().open_fds;
    let mut max_fds = base_fds;
    let names_before = v.thread_names();
    let clients = 500;
    let mut conns: Vec<Option<TcpStream>> = (0..clients)
        .map(|_| {
            let s = TcpStream::connect(addr).ok()?;
            s.set_nonblocking(true).ok()?;
            Some(s)
        })
        .collect();
    let request = b"GET /api/status HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    let mut closed_by_server = 0;
    let mut max_threads = baseline;
    let mut min_threads = baseline;
    let mut served_at = None;
    let started = Instant::now();
    for second in 0..10usize {
        for c in conns.iter_mut() {
            let Some(s) = c else { continue };
            let mut buf = [0u8; 256];
            let gone = match s.read(&mut buf) {
                Ok(_) => true, // a 503 or EOF: the server is done with it
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => false,
                Err(_) => true,
            };
            if gone || s.write_all(&request[second..second + 1]).is_err() {
                closed_by_server += 1;
                *c = None;
            }
        }
        let sample = v.sample();
        let t = sample.threads;
        max_fds = max_fds.max(sample.open_fds);
        max_threads = max_threads.max(t);
        min_threads = min_threads.min(t);
        // A normal client keeps trying; it gets in once the header timeout
        // has freed slots held by the slow ones.
        if served_at.is_none() {
            let r = get(addr, "/api/status");
            if r.status == 200 {
                served_at = Some(started.elapsed());
            }
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    let still_open = conns.iter().filter(|c| c.is_some()).count();
    eprintln!(
        "slow clients: {clients} connected, {closed_by_server} closed by the server, {still_open} open at the end; \
         threads baseline {baseline} min {min_threads} max {max_threads}; normal client served after {served_at:?}"
    );
    assert_eq!(
        (min_threads, max_threads),
        (baseline, baseline),
        "threads moved"
    );
    assert_eq!(v.thread_names(), names_before);
    assert!(
        closed_by_server >= clients - 64,
        "only {closed_by_server} refused or timed out"
    );
    assert_eq!(
        still_open, 0,
        "header_timeout should have cut every slow client"
    );
    let served = served_at.expect("a normal client was never served");
    assert!(
        served < Duration::from_secs(3),
        "served only after {served:?}"
    );
    let m = metrics(addr);
    // Beyond the cap, each newcomer is refused or takes the place of the
    // longest-unproductive connection: never more than the cap open.
    let (refused, evicted) = (
        m.value("vigil_http_connections_refused_total"),
        m.value("vigil_http_connections_evicted_total"),
    );
    eprintln!("refused {refused}, evicted {evicted}, max fds {max_fds}");
    assert!(
        refused + evicted >= (clients - 64) as f64,
        "refused {refused} + evicted {evicted}"
    );
    assert!(
        max_fds <= base_fds + 64 + 4,
        "fds {base_fds} -> {max_fds}: more than the cap open"
    );
    drop(conns);
    assert_eq!(threads(&v), baseline);

    // A slowloris that reconnects at once whenever it is cut off keeps every
    // slot busy; normal clients still get in, by evicting the connection
    // that has had no request in flight the longest.
    let slow = |conns: &mut Vec<Option<TcpStream>>, byte: u8| {
        for c in conns.iter_mut() {
            let alive = c.as_mut().is_some_and(|s| {
                let mut buf = [0u8; 256];
                let gone = match s.read(&mut buf) {
                    Ok(_) => true,
                    Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
                };
                !gone && s.write_all(&[byte]).is_ok()
            });
            if !alive {
                *c = TcpStream::connect(addr).ok().and_then(|mut s| {
                    s.set_nonblocking(true).ok()?;
                    s.write_all(b"GET / HTTP/1.1\r\nX: ").ok()?;
                    Some(s)
                });
            }
        }
    };
    let mut conns: Vec<Option<TcpStream>> = (0..200).map(|_| None).collect();
    let (mut tries, mut served) = (0, 0);
    for round in 0..16 {
        slow(&mut conns, b'a' + round as u8 % 26);
        tries += 1;
        if get(addr, "/api/status").status == 200 {
            served += 1;
        }
        max_threads = max_threads.max(threads(&v));
        std::thread::sleep(Duration::from_millis(500));
    }
    drop(conns);
    let evicted = metrics(addr).value("vigil_http_connections_evicted_total");
    eprintln!(
        "reconnecting slowloris (200 clients): normal client served {served}/{tries}, \
         {evicted} connections evicted, threads max {max_threads}"
    );
    assert_eq!(max_threads, baseline, "threads moved");
    assert!(served * 10 >= tries * 8, "served only {served}/{tries}");
    assert_eq!(v.stop(), 0);
}

#[test]
fn idle_keep_alive_clients_are_closed_without_moving_threads() {
    let dir = TempDir::new("web-idle");
    let (v, addr) = street()
        .web("idle_timeout", "2s")
        .web("max_connections", 128)
        .serve(&dir);
    let baseline = threads(&v);
    let mut conns: Vec<TcpStream> = (0..100)
        .map(|_| {
            let mut s = TcpStream::connect(addr).unwrap();
            s.write_all(&http::with_session(
                addr,
                b"GET /api/status HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
            ))
            .unwrap();
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut buf = [0u8; 4096];
            let n = s.read(&mut buf).unwrap();
            assert!(buf[..n].starts_with(b"HTTP/1.1 200"), "keep-alive request");
            s
        })
        .collect();
    assert_eq!(threads(&v), baseline, "100 idle keep-alive connections");
    let started = Instant::now();
    let mut closed = 0;
    for s in conns.iter_mut() {
        let mut buf = [0u8; 64];
        let gone = match s.read(&mut buf) {
            Ok(0) => true,
            Ok(_) => false,
            // A read timeout means the server kept it open.
            Err(e) => !matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ),
        };
        if gone {
            closed += 1;
        }
    }
    let waited = started.elapsed();
    eprintln!("100 idle keep-alive connections closed: {closed}, after {waited:?}");
    assert_eq!(closed, 100, "idle connections left open");
    assert!(
        waited < Duration::from_secs(5),
        "closed only after {waited:?}"
    );
    assert_eq!(threads(&v), baseline);
    assert_eq!(v.stop(), 0);
}

/// Opens `/events` and reads its first bytes (the stream's preamble), or
/// returns the refusal status.
fn open_stream(addr: SocketAddr) -> Result<TcpStream, u16> {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(&http::with_session(
        addr,
        b"GET /events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
    ))
    .unwrap();
    let mut buf = [0u8; 1024];
    let n = s.read(&mut buf).unwrap_or(0);
    let r = http::parse(&buf[..n]);
    if r.status == 200 {
        Ok(s)
    } else {
        Err(r.status)
    }
}

fn abort(s: TcpStream) {
    // SO_LINGER 0: close sends RST, as a crashed client or a pulled cable.
    let l = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: setsockopt on a socket we own, with a valid linger struct.
    unsafe {
        use std::os::fd::AsRawFd;
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            &l as *const _ as *const libc::c_void,
            std::mem::size_of::<libc::linger>() as u32,
        );
    }
    drop(s);
}

#[test]
fn sse_streams_are_capped_and_a_closed_client_frees_its_slot_within_a_heartbeat() {
    let dir = TempDir::new("web-sse-cap");
    let (v, addr) = street()
        .web("max_sse_clients", 4)
        .web("heartbeat", "2s")
        .serve(&dir);
    let mut open: Vec<TcpStream> = (0..4)
        .map(|i| open_stream(addr).unwrap_or_else(|s| panic!("stream {i}: {s}")))
        .collect();
    let refused = http::raw(
        addr,
        &http::with_session(
            addr,
            b"GET /events HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
        ),
        Duration::from_secs(5),
    );
    assert_eq!(refused.status, 503);
    assert!(refused.header("retry-after").is_some());
    // A client that closes (FIN) frees its slot within one heartbeat.
    drop(open.pop());
    let t = Instant::now();
    assert!(wait_until(Duration::from_secs(2), || sse_clients(addr) == 3));
    eprintln!("closed stream freed its slot after {:?}", t.elapsed());
    open.push(open_stream(addr).expect("the freed slot is reused"));
    // Streams carry heartbeats and the periodic status.
    let mut buf = vec![0u8; 8192];
    let mut got = String::new();
    let deadline = Instant::now() + Duration::from_secs(6);
    while Instant::now() < deadline && !(got.contains(": hb") && got.contains("event: status")) {
        if let Ok(n) = open[0].read(&mut buf) {
            got.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    }
    assert!(got.contains("event: status"), "{got}");
    drop(open);
    assert!(wait_until(Duration::from_secs(2), || sse_clients(addr) == 0));
    assert_eq!(v.stop(), 0);
}

#[test]
fn sse_churn_leaves_no_thread_slot_or_memory_behind() {
    let dir = TempDir::new("web-sse-churn");
    // No camera: this test weighs what the web side keeps per client, and a
    // looping camera's own warm-up (first inferences, the store's cache
    // filling) lands in the same RSS. On a loaded CI machine that warm-up
    // ran late and was counted as churn (+10 MiB); streams still carry the
    // status events and heartbeats.
    let (v, addr) = Config::new()
        .listen_anywhere()
        .web("max_sse_clients", 16)
        .web("heartbeat", "1s")
        .web("max_connections", 128)
        .serve(&dir);
    let churn = |n: usize| {
        let mut opened = 0;
        for round in 0..n / 16 {
            let mut batch = Vec::with_capacity(16);
            for _ in 0..16 {
                let mut s = TcpStream::connect(addr).expect("connect");
                s.write_all(&http::with_session(
                    addr,
                    b"GET /events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
                ))
                .unwrap();
                batch.push(s);
            }
            for (i, mut s) in batch.into_iter().enumerate() {
                match (round + i) % 4 {
                    // Reads the head, then closes cleanly.
                    0 => {
                        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                        let mut b = [0u8; 64];
                        if s.read(&mut b).unwrap_or(0) > 0 {
                            opened += 1;
                        }
                    }
                    // Reads part of the head, then aborts with RST mid-write.
                    1 => {
                        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                        let mut b = [0u8; 7];
                        let _ = s.read(&mut b);
                        abort(s);
                    }
                    // Never reads; aborts.
                    2 => abort(s),
                    // Never reads; closes.
                    _ => drop(s),
                }
            }
        }
        opened
    };
    churn(160);
    assert!(wait_until(Duration::from_secs(3), || sse_clients(addr) == 0));
    std::thread::sleep(Duration::from_secs(1));
    let baseline = v.sample();
    let base_threads = threads(&v);
    let opened = churn(2000);
    let freed = wait_until(Duration::from_secs(3), || sse_clients(addr) == 0);
    std::thread::sleep(Duration::from_secs(1));
    let after = v.sample();
    let opened_total = metrics(addr).value("vigil_sse_streams_opened_total");
    eprintln!(
        "SSE churn: 2000 clients ({opened} read their stream head), streams opened in all {opened_total}; \
         RSS {} -> {} ({:+} KiB), threads {base_threads} -> {}, fds {} -> {}",
        baseline.rss_bytes,
        after.rss_bytes,
        (after.rss_bytes as i64 - baseline.rss_bytes as i64) / 1024,
        after.threads,
        baseline.open_fds,
        after.open_fds
    );
    assert!(freed, "a stream slot is still held");
    assert_eq!(after.threads, base_threads, "threads moved");
    assert!(
        after.rss_bytes < baseline.rss_bytes + (1 << 20),
        "RSS grew {} bytes",
        after.rss_bytes as i64 - baseline.rss_bytes as i64
    );
    assert!(after.open_fds <= baseline.open_fds + 2, "fds grew");
    assert_eq!(v.stop(), 0);
}

#[test]
fn admin_password_is_set_on_first_use_and_guards_changes() {
    let dir = TempDir::new("web-admin");
    let (v, addr) = street().serve_unclaimed(&dir);
    let s = get(addr, "/api/session").json();
    assert_eq!(
        (s["admin_set"].as_bool(), s["logged_in"].as_bool()),
        (Some(false), Some(false))
    );
    assert_eq!(
        post_json(
            addr,
            "/api/login",
            r#"{"password":"whatever1"}"#,
            None,
            None
        )
        .status,
        409
    );
    // The first setup needs the one-time code from the log and the file.
    let code = setup_code(&dir.join("data")).expect("DATA_DIR/setup-code");
    assert!(
        v.lines_matching(|l| l.contains(&code)).len() == 1,
        "the setup code is printed once in the log"
    );
    let no_code = post_json(
        addr,
        "/api/setup",
        r#"{"password":"correct horse"}"#,
        None,
        None,
    );
    assert_eq!(no_code.status, 403, "{}", no_code.text());
    assert!(no_code.text().contains("setup code"), "{}", no_code.text());
    let wrong = r#"{"password":"correct horse","code":"AAAA-BBBB-CCCC"}"#;
    assert_eq!(post_json(addr, "/api/setup", wrong, None, None).status, 403);
    let with_code =
        |password: &str| serde_json::json!({ "password": password, "code": code }).to_string();
    assert_eq!(
        post_json(addr, "/api/setup", &with_code("short"), None, None).status,
        400
    );
    let setup = post_json(addr, "/api/setup", &with_code("correct horse"), None, None);
    assert_eq!(setup.status, 200, "{}", setup.text());
    assert!(
        !dir.join("data/setup-code").exists(),
        "the setup code's file is removed after setup"
    );
    let cookie = setup
        .header("set-cookie")
        .expect("session cookie")
        .to_owned();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let session = cookie.split(';').next().unwrap().to_owned();
    let csrf = setup.json()["csrf"].as_str().expect("csrf").to_owned();
    assert_eq!(
        post_json(addr, "/api/setup", &with_code("another one"), None, None).status,
        409
    );
    // The stored password is a salted slow hash, readable only by vigil.
    let file = dir.join("data/admin-password");
    let stored = std::fs::read_to_string(&file).expect("password file");
    assert!(stored.starts_with("pbkdf2-sha256$") && !stored.contains("correct horse"));
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // State changes need the session and its CSRF token.
    let change = r#"{"current":"correct horse","new":"battery staple"}"#;
    assert_eq!(
        post_json(addr, "/api/password", change, Some(&session), None).status,
        403
    );
    assert_eq!(
        post_json(addr, "/api/password", change, None, Some(&csrf)).status,
        403
    );
    assert_eq!(
        post_json(addr, "/api/password", change, Some(&session), Some(&csrf)).status,
        204
    );
    // Wrong passwords are rate-limited.
    let mut codes = Vec::new();
    for _ in 0..7 {
        codes.push(
            post_json(
                addr,
                "/api/login",
                r#"{"password":"wrong guess"}"#,
                None,
                None,
            )
            .status,
        );
    }
    assert_eq!(&codes[..5], &[401; 5], "{codes:?}");
    assert_eq!(codes[6], 429, "{codes:?}");
    let limited = post_json(
        addr,
        "/api/login",
        r#"{"password":"battery staple"}"#,
        None,
        None,
    );
    assert_eq!(limited.status, 429);
    assert!(
        limited
            .header("retry-after")
            .unwrap()
            .parse::<u64>()
            .unwrap()
            >= 1
    );
    assert_eq!(
        post_json(addr, "/api/logout", "{}", Some(&session), Some(&csrf)).status,
        204
    );
    assert_eq!(
        get(addr, "/api/session").json()["admin_set"].as_bool(),
        Some(true)
    );
    assert_eq!(v.stop(), 0);
    // The password survives a restart.
    let (v, addr) = street().serve_unclaimed(&dir);
    assert_eq!(
        get(addr, "/api/session").json()["admin_set"].as_bool(),
        Some(true)
    );
    let login = post_json(
        addr,
        "/api/login",
        r#"{"password":"battery staple"}"#,
        None,
        None,
    );
    assert_eq!(login.status, 200, "{}", login.text());
    assert_eq!(v.stop(), 0);
}

#[test]
fn status_can_be_opened_to_anonymous_readers_but_never_footage() {
    let dir = TempDir::new("web-public");
    let (v, addr) = street().web("public_status", true).serve(&dir);
    assert_eq!(get_anon(addr, "/api/status").status, 200);
    assert_eq!(get_anon(addr, "/metrics").status, 200);
    assert!(wait_until(Duration::from_secs(60), || {
        num(&status(addr), &["store", "last_id"]) >= 1
    }));
    let snapshot = get_anon(addr, "/api/events/1/snapshot.jpg");
    assert_eq!(snapshot.status, 401, "{}", snapshot.text());
    assert_eq!(get(addr, "/api/events/1/snapshot.jpg").status, 200);
    assert_eq!(v.stop(), 0);
}

#[test]
fn chromium_shows_a_detection_that_arrived_over_sse() {
    let dir = TempDir::new("web-chromium");
    let (v, addr) = street().serve(&dir);
    let artefacts = root().join("target/test-artifacts");
    std::fs::create_dir_all(&artefacts).unwrap();
    let shot = artefacts.join("status-page.png");
    let _ = std::fs::remove_file(&shot);
    // Once live, note the newest row; then wait for a newer one. With the
    // stream up the page does not poll, so the newer row came over SSE.
    let until = "(() => { const ids = [...document.querySelectorAll('#events tr.event')].map(r => +r.dataset.id); \
        const live = document.querySelector('#live').textContent === 'live'; \
        if (!live) return false; \
        if (window.__t0 === undefined) { window.__t0 = Math.max(0, ...ids); window.__at = Date.now(); return false; } \
        if (Date.now() - window.__at < 1000) { window.__t0 = Math.max(window.__t0, ...ids); return false; } \
        return ids.some(id => id > window.__t0); })()";
    let out = std::process::Command::new("/usr/bin/python3")
        .arg(root().join("tests/support/browser.py"))
        .args(["--cookie", &http::session(addr).expect("session")])
        .args([
            "--url",
            &format!("http://{addr}/"),
            "--until",
            until,
            "--timeout",
            "60",
        ])
        .arg("--screenshot")
        .arg(&shot)
        .args([
            "--eval",
            "document.querySelector('#events tr.event').textContent",
            "--eval",
            "document.querySelector('.camera[data-camera=\"street\"] .state').textContent",
            "--eval",
            "document.documentElement.outerHTML",
        ])
        .output()
        .expect("run browser.py");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!(
            "browser.py said ({e}): {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert_eq!(report["ok"], true, "{report}");
    let row = report["evals"][0].as_str().unwrap();
    assert!(
        ["person", "bicycle", "car", "motorcycle", "bus", "truck"]
            .iter()
            .any(|c| row.contains(c)),
        "{row}"
    );
    assert_eq!(report["evals"][1], "streaming");
    std::fs::write(
        artefacts.join("status-page.html"),
        report["evals"][2].as_str().unwrap(),
    )
    .unwrap();
    assert!(
        report["exceptions"].as_array().unwrap().is_empty(),
        "{report}"
    );
    assert!(
        std::fs::metadata(&shot).unwrap().len() > 10_000,
        "screenshot"
    );
    // The same page on a phone-sized window, kept for a look.
    let phone = artefacts.join("status-page-phone.png");
    let out = std::process::Command::new("/usr/bin/python3")
        .arg(root().join("tests/support/browser.py"))
        .args(["--cookie", &http::session(addr).expect("session")])
        .args(["--url", &format!("http://{addr}/"), "--timeout", "30"])
        .args(["--until", "document.querySelectorAll('.camera').length > 0"])
        .args(["--window", "390x844", "--screenshot"])
        .arg(&phone)
        .args(["--eval", "document.documentElement.scrollWidth"])
        .output()
        .expect("run browser.py");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("browser.py JSON");
    assert_eq!(report["ok"], true, "{report}");
    assert!(
        report["evals"][0].as_u64().unwrap() <= 390,
        "the page scrolls sideways on a phone: {report}"
    );
    let opened = metrics(addr).value("vigil_sse_streams_opened_total");
    assert!(opened >= 1.0, "the page never opened /events");
    assert_eq!(v.stop(), 0);
}
