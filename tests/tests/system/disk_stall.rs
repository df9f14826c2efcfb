//! Blocking disk I/O stays off the async runtime (issue 16, item 6), black
//! box: a store whose commits are delayed does not stall frame intake.
//!
//! The fault is injected from outside the product: vigil runs under an
//! `LD_PRELOAD` shim (`tests/fakes/slow_fsync.c`, via
//! [`vigil_system_tests::fault`]) that sleeps after every `fsync` and
//! `fdatasync`, switched on mid-run. redb's durable commits and the snapshot
//! files' syncs then take that long each, and redb lets one writer in at a
//! time, so whatever commits or waits for the write lock on the runtime
//! thread (the upstream drainer's `settle`, say) holds up every task there.
//!
//! Frame intake is the camera's frames decoded per second, read from the
//! `status camera=street` lines vigil's monitor thread logs every second
//! with its own clock (a web request would run on the runtime too, and
//! count its own wait). The camera is a file played at its own rate (25
//! fps) by a task on the runtime, and a file source that falls behind
//! restarts its schedule instead of bursting (`source::MAX_LATENESS`), so
//! time the runtime thread spends blocked is frames never received, hence
//! never decoded. The rate over a 10 s window with every `fsync` 1 s late
//! must be at least 80% of the rate over the same window without the
//! fault. Events must keep being stored meanwhile, and the shim must have
//! delayed calls, so the fault really hit. In both windows a client polls
//! `/api/status` and `/metrics` as an open status page does: what the
//! runtime does to answer them (the store's totals) must not wait on a
//! commit either.

use std::net::SocketAddr;
use std::time::Duration;
use vigil_system_tests::api::{cameras, num, status, wait_until};
use vigil_system_tests::config::{sample_clip, Camera, Config};
use vigil_system_tests::fault::SlowFsync;
use vigil_system_tests::http::get;
use vigil_system_tests::media::TempDir;
use vigil_system_tests::process::{Status, Vigil};
use vigil_system_tests::receiver::{Mode, Receiver};

/// Each measuring window.
const WINDOW: Duration = Duration::from_secs(10);

/// The delay after every fsync/fdatasync once the fault is on.
const DELAY_MS: u64 = 1000;

/// How long the fault runs before its window, so it bites first.
const SETTLE: Duration = Duration::from_secs(3);

/// The camera's name.
const CAMERA: &str = "street";

/// The newest `status camera=street` line logged after `after` seconds
/// (vigil's log clock): its time and the camera's frames decoded.
fn status_line(v: &Vigil, after: f64) -> (f64, u64) {
    let tag = format!("status camera={CAMERA} ");
    let line = v.wait_for_line(Duration::from_secs(30), |l| {
        l.contains(&tag) && log_time(l) > after
    });
    let decoded = Status::parse(&line)
        .get("decoded")
        .parse()
        .unwrap_or_else(|_| panic!("no decoded= in {line}"));
    (log_time(&line), decoded)
}

/// A log line's time: seconds since vigil started, its first field.
fn log_time(line: &str) -> f64 {
    line.split_whitespace()
        .next()
        .and_then(|t| t.parse().ok())
        .unwrap_or(f64::NAN)
}

/// Events stored and delivered upstream so far, from `/api/status`.
fn stored_delivered(addr: SocketAddr) -> (u64, u64) {
    let s = status(addr);
    let u = &s["upstream"][0];
    assert_eq!(u["name"], "http", "upstream[0] in {}", s["upstream"]);
    (num(&s, &["store", "written"]), num(u, &["delivered"]))
}

/// How often the status-page client asks.
const POLL: Duration = Duration::from_millis(250);

/// Frames per second over `WINDOW` by vigil's own status lines, and the
/// events stored and delivered around it (asked before the window opens
/// and after it closes). Meanwhile a client polls `/api/status` and
/// `/metrics` every [`POLL`], as an open status page does; answers are
/// counted (200 or 503).
fn window(v: &Vigil, addr: SocketAddr) -> (f64, u64, u64) {
    let (written0, delivered0) = stored_delivered(addr);
    let now = v
        .lines_matching(|l| l.contains("status camera="))
        .last()
        .map_or(0.0, |l| log_time(l));
    let (t0, f0) = status_line(v, now);
    let done = std::sync::atomic::AtomicBool::new(false);
    let polled = std::thread::scope(|s| {
        let poller = s.spawn(|| {
            let mut answers = 0;
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                for path in ["/api/status", "/metrics"] {
                    let r = get(addr, path);
                    assert!(
                        matches!(r.status, 200 | 503),
                        "{path}: {} {}",
                        r.status,
                        r.text()
                    );
                    answers += 1;
                }
                std::thread::sleep(POLL);
            }
            answers
        });
        std::thread::sleep(WINDOW);
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        poller.join().unwrap()
    });
    assert!(polled > 0, "the status-page client got no answer");
    let (t1, f1) = status_line(v, t0 + WINDOW.as_secs_f64() - 0.5);
    let (written1, delivered1) = stored_delivered(addr);
    (
        (f1 - f0) as f64 / (t1 - t0),
        written1 - written0,
        delivered1 - delivered0,
    )
}

#[test]
fn a_store_with_slow_commits_does_not_stall_frame_intake() {
    let shim = SlowFsync::build();
    let rx = Receiver::start(Mode::Ok);
    let dir = TempDir::new("disk-stall");
    let env = shim.env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let cfg = Config::new()
        .listen_anywhere()
        .ssd_model()
        // A new event at every re-detection: a steady stream of commits.
        .events("track_timeout", "100ms")
        .store("flush_after", "100ms")
        .upstream("retry_min", "100ms")
        .upstream("retry_max", "500ms")
        .upstream("timeout", "2s")
        .http_upstream(&rx.url("/events"), "Authorization: Bearer test-token")
        .camera(Camera::named(CAMERA, sample_clip()))
        .write(&dir);
    let data = dir.join("data");
    // A status line per camera every second, from vigil's monitor thread
    // (not the runtime): intake is read there.
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
        &env,
    );
    let addr = v.web_addr();

    // Warm: frames flowing, events stored and delivered upstream.
    assert!(
        wait_until(Duration::from_secs(120), || {
            let (written, delivered) = stored_delivered(addr);
            let cams = cameras(addr);
            num(&cams[0], &["frames_decoded"]) >= 50 && written >= 3 && delivered >= 3
        }),
        "no steady stream of stored and delivered events within 120 s: {}",
        status(addr)
    );
    let (base_rate, base_written, base_delivered) = window(&v, addr);

    shim.set_delay_ms(DELAY_MS);
    std::thread::sleep(SETTLE);
    let delayed_before = shim.delayed_calls();
    let (fault_rate, fault_written, fault_delivered) = window(&v, addr);
    let delayed = shim.delayed_calls() - delayed_before;
    shim.set_delay_ms(0);

    eprintln!(
        "disk stall: intake {base_rate:.1} frames/s without the fault, {fault_rate:.1} with \
         every fsync/fdatasync {DELAY_MS} ms late ({:.0}%); over each {WINDOW:?} window: \
         events stored {base_written} -> {fault_written}, delivered {base_delivered} -> \
         {fault_delivered}; {delayed} calls delayed in the fault window ({} in all)",
        100.0 * fault_rate / base_rate,
        shim.delayed_calls(),
    );
    assert!(
        !v.lines_matching(|l| l.contains("slow_fsync: delaying"))
            .is_empty(),
        "the shim never delayed a call (is vigil dynamically linked to glibc?)"
    );
    assert!(
        delayed > 0,
        "no fsync/fdatasync delayed in the fault window"
    );
    assert!(
        base_rate > 10.0,
        "intake without the fault is only {base_rate:.1} frames/s (the clip plays at 25)"
    );
    assert!(
        fault_written > 0,
        "no event stored while commits were slow: the fault stopped the store outright"
    );
    assert!(
        fault_rate >= 0.8 * base_rate,
        "frame intake fell from {base_rate:.1} to {fault_rate:.1} frames/s while store \
         commits were {DELAY_MS} ms slow: blocking disk I/O stalls the runtime"
    );
    assert_eq!(v.stop(), 0, "vigil's exit status");
}
