//! Events out, black box: the real binary on the sample clip writes
//! annotated snapshots and records to its store and delivers them upstream,
//! to an HTTP receiver run by the test (which can fail, send garbage or hang
//! on command) and to a real mosquitto broker. The tests take the upstream
//! away, kill vigil with SIGKILL, fill its disk and hold it to its quota,
//! and count what arrives: every acknowledged event survives, every stored
//! event is delivered, in id order, and memory and threads stay flat while
//! the backlog waits on disk.
//!
//! The clip raises several events a second because `events.track_timeout`
//! is short (100 ms; detection runs at 5 fps), so each re-detection of the
//! same rider is a new event.

use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};
use vigil_system_tests::api::{metrics, num, status, wait_until};
use vigil_system_tests::config::{sample_clip, Camera, Config};
use vigil_system_tests::http::get;
use vigil_system_tests::media::TempDir;
use vigil_system_tests::mosquitto::{Broker, Subscriber};
use vigil_system_tests::process::{binary, Vigil};
use vigil_system_tests::receiver::{jpeg_info, Mode, Receiver, Request};

const MIB: u64 = 1 << 20;

/// The header every HTTP upstream sends; the receiver checks it.
const AUTH: &str = "Authorization: Bearer test-token";

/// The sample clip with its data in `data`: a new event at every
/// re-detection (`track_timeout` 100 ms), quick store commits and quick
/// upstream retries. Tests add their upstream or store limits.
fn config(data: &Path) -> Config {
    Config::new()
        .data_dir(data)
        .listen_anywhere()
        .ssd_model()
        .events("track_timeout", "100ms")
        .store("flush_after", "200ms")
        .upstream("retry_min", "100ms")
        .upstream("retry_max", "500ms")
        .upstream("timeout", "1s")
        .camera(Camera::url(sample_clip()))
}

/// The first upstream in `/api/status`, checked to be `name`.
fn upstream<'a>(s: &'a Value, name: &str) -> &'a Value {
    let u = &s["upstream"][0];
    assert_eq!(u["name"], name, "upstream[0] in {}", s["upstream"]);
    u
}

/// Every stored event, oldest first, by paging `/api/events`; checks the
/// pages are strictly increasing and do not overlap.
fn stored_events(addr: SocketAddr) -> Vec<Value> {
    let mut out: Vec<Value> = Vec::new();
    let mut after = 0u64;
    loop {
        let r = get(addr, &format!("/api/events?after={after}&limit=500"));
        assert_eq!(r.status, 200, "/api/events: {}", r.text());
        let page = r.json();
        let events = page["events"].as_array().expect("events array").clone();
        if events.is_empty() {
            assert_eq!(num(&page, &["next_after"]), after);
            return out;
        }
        for e in events {
            let id = num(&e, &["id"]);
            assert!(id > after, "/api/events?after={after} returned id {id}");
            after = id;
            out.push(e);
        }
        assert_eq!(num(&page, &["next_after"]), after, "next_after");
    }
}

fn ids(events: &[Value]) -> Vec<u64> {
    events.iter().map(|e| num(e, &["id"])).collect()
}

/// The ids in order of first arrival.
fn first_arrivals(ids: &[u64]) -> Vec<u64> {
    let mut seen = HashSet::new();
    ids.iter().copied().filter(|id| seen.insert(*id)).collect()
}

fn assert_strictly_increasing(what: &str, ids: &[u64]) {
    if let Some(w) = ids.windows(2).find(|w| w[0] >= w[1]) {
        panic!("{what}: id {} came after {} in {ids:?}", w[1], w[0]);
    }
}

fn assert_jpeg(what: &str, info: &vigil_system_tests::receiver::JpegInfo) {
    assert!(info.markers_ok, "{what}: not SOI..EOI ({} bytes)", info.len);
    let (w, h) = info
        .size
        .unwrap_or_else(|| panic!("{what}: no SOF marker ({} bytes)", info.len));
    assert!(
        w > 0 && h > 0 && w <= 1280 && h <= 720,
        "{what}: {w}x{h} is not within 1280x720"
    );
}

/// RSS and threads of vigil now.
fn rss_threads(v: &Vigil) -> (u64, u64) {
    let s = v.sample();
    (s.rss_bytes, s.threads)
}

fn accepted(reqs: &[Request]) -> Vec<&Request> {
    reqs.iter()
        .filter(|r| r.accepted() && r.id.is_some())
        .collect()
}

#[test]
fn snapshots_are_stored_served_and_delivered_with_auth() {
    let dir = TempDir::new("out-snap");
    let rx = Receiver::start(Mode::Ok);
    let data = dir.join("data");
    let cfg = config(&data)
        .http_upstream(&rx.url("/events"), AUTH)
        .write(&dir);
    let (v, addr) = Vigil::serve(&cfg, &data);
    assert!(
        rx.wait(Duration::from_secs(90), |r| {
            accepted(r).iter().filter(|r| r.jpeg.is_some()).count() >= 5
        }),
        "fewer than 5 events with snapshots delivered within 90 s: {} requests",
        rx.count()
    );
    let reqs = rx.requests();
    let ok = accepted(&reqs);
    for r in &reqs {
        assert_eq!(r.path, "/events", "request {}", r.seq);
        assert_eq!(r.body_error, None, "request {}", r.seq);
        assert_eq!(
            r.header("authorization"),
            Some("Bearer test-token"),
            "request {} headers {:?}",
            r.seq,
            r.headers
        );
        assert_eq!(r.header("content-type"), Some("application/json"));
    }
    let delivered: Vec<u64> = ok.iter().filter_map(|r| r.id).collect();
    assert_strictly_increasing("delivered ids", &delivered);
    for r in &ok {
        let e = r.event.as_ref().unwrap();
        assert_eq!(e["camera"], "camera-1", "{e}");
        assert!(e["class"].as_str().is_some_and(|c| !c.is_empty()), "{e}");
        let snap_bytes = num(e, &["snapshot_bytes"]);
        match &r.jpeg {
            Some(info) => {
                assert_jpeg(&format!("event {} as delivered", r.id.unwrap()), info);
                assert_eq!(info.len as u64, snap_bytes, "snapshot_bytes of {e}");
            }
            None => assert_eq!(snap_bytes, 0, "{e} was delivered without its snapshot"),
        }
    }

    // The store lists them, with snapshot URLs, and serves the same bytes.
    let stored = stored_events(addr);
    let by_id: BTreeMap<u64, &Value> = stored.iter().map(|e| (num(e, &["id"]), e)).collect();
    let mut compared = 0;
    for r in &ok {
        let id = r.id.unwrap();
        let e = by_id
            .get(&id)
            .unwrap_or_else(|| panic!("delivered event {id} is not in /api/events"));
        let url = format!("/api/events/{id}/snapshot.jpg");
        if r.jpeg.is_none() {
            assert!(e["snapshot"].is_null(), "{e}");
            continue;
        }
        assert_eq!(e["snapshot"].as_str(), Some(url.as_str()), "{e}");
        let served = get(addr, &url);
        assert_eq!(served.status, 200, "{url}: {}", served.text());
        assert_eq!(served.header("content-type"), Some("image/jpeg"), "{url}");
        let info = jpeg_info(&served.body);
        assert_eq!(
            &info,
            r.jpeg.as_ref().unwrap(),
            "{url} differs from the delivered JPEG"
        );
        if let Some(bytes) = &r.jpeg_bytes {
            assert!(served.body == *bytes, "{url}: bytes differ");
            compared += 1;
        }
    }
    assert!(
        compared >= 5,
        "only {compared} snapshots compared byte for byte"
    );
    for bad in [
        "/api/events/999999999/snapshot.jpg",
        "/api/events/abc/snapshot.jpg",
        "/api/events/1/../../events.redb",
        "/api/events/-1/snapshot.jpg",
    ] {
        assert_eq!(get(addr, bad).status, 404, "{bad}");
    }

    let s = status(addr);
    assert_eq!(s["store"]["ok"], true, "{}", s["store"]);
    assert!(num(&s, &["store", "events"]) > 0, "{}", s["store"]);
    assert!(num(&s, &["store", "last_id"]) >= *delivered.last().unwrap());
    let u = upstream(&s, "http");
    assert!(num(u, &["delivered"]) > 0, "{u}");
    assert_eq!(u["up"], true, "{u}");
    assert!(
        u["target"]
            .as_str()
            .is_some_and(|t| t.contains(&rx.addr().port().to_string())),
        "{u}"
    );
    let m = metrics(addr);
    assert!(m.value("vigil_upstream_delivered_total{upstream=\"http\"}") > 0.0);
    assert!(m.value("vigil_store_events") > 0.0);
    println!(
        "delivered {} events ({} requests), {} stored, {compared} snapshots compared",
        ok.len(),
        reqs.len(),
        stored.len()
    );
    assert_eq!(v.stop(), 0);
}

/// One outage phase: the receiver in `mode` for `secs`; returns the last
/// status read, after checking the upstream is down with a growing backlog.
fn outage_phase(
    rx: &Receiver,
    addr: SocketAddr,
    mode: Mode,
    secs: u64,
    pending_peak: &mut u64,
) -> Value {
    let before = status(addr);
    let pending0 = num(upstream(&before, "http"), &["pending_events"]);
    let failures0 = num(upstream(&before, "http"), &["failures"]);
    rx.set_mode(mode);
    let end = Instant::now() + Duration::from_secs(secs);
    let mut last = before;
    while Instant::now() < end {
        std::thread::sleep(Duration::from_millis(500));
        last = status(addr);
        *pending_peak = (*pending_peak).max(num(upstream(&last, "http"), &["pending_events"]));
    }
    let u = upstream(&last, "http");
    println!(
        "after {mode:?} for {secs} s: pending {} (was {pending0}), failures {} (was {failures0}), last_error {}",
        u["pending_events"], u["failures"], u["last_error"]
    );
    assert_eq!(u["up"], false, "{mode:?}: {u}");
    assert!(
        num(u, &["failures"]) > failures0,
        "{mode:?}: no new failures: {u}"
    );
    assert!(
        num(u, &["pending_events"]) > pending0,
        "{mode:?}: pending did not grow from {pending0}: {u}"
    );
    assert!(
        u["last_error"].as_str().is_some_and(|e| !e.is_empty()),
        "{mode:?}: {u}"
    );
    last
}

#[test]
fn outage_backlog_waits_on_disk_and_drains_in_order() {
    let dir = TempDir::new("out-outage");
    let rx = Receiver::start(Mode::Ok);
    let data = dir.join("data");
    let cfg = config(&data)
        .http_upstream(&rx.url("/events"), AUTH)
        .write(&dir);
    let (v, addr) = Vigil::serve(&cfg, &data);
    assert!(
        rx.wait(Duration::from_secs(90), |r| accepted(r).len() >= 3),
        "no deliveries within 90 s"
    );
    let (rss0, threads0) = rss_threads(&v);
    let mut pending_peak = 0;
    outage_phase(&rx, addr, Mode::Status(500), 10, &mut pending_peak);
    let (rss_mid, _) = rss_threads(&v);
    outage_phase(&rx, addr, Mode::Garbage, 5, &mut pending_peak);
    let last = outage_phase(&rx, addr, Mode::Hang, 5, &mut pending_peak);
    let (rss1, threads1) = rss_threads(&v);
    let last_queued = num(&last, &["store", "last_id"]);
    println!(
        "RSS {:.1} MiB before the outage, {:.1} after 10 s, {:.1} after 20 s; threads {threads0} -> {threads1}; pending peak {pending_peak}",
        rss0 as f64 / MIB as f64,
        rss_mid as f64 / MIB as f64,
        rss1 as f64 / MIB as f64
    );
    assert_eq!(threads1, threads0, "threads changed during the outage");
    assert!(
        rss1 < rss0 + 8 * MIB,
        "RSS grew from {rss0} to {rss1} bytes while the backlog waited"
    );

    // The upstream comes back: the backlog drains, in order.
    let accepted_before = accepted(&rx.requests()).len();
    let back = Instant::now();
    rx.set_mode(Mode::Ok);
    let mut drained = None;
    assert!(
        wait_until(Duration::from_secs(60), || {
            let s = status(addr);
            let u = upstream(&s, "http");
            let done =
                num(u, &["pending_events"]) == 0 && num(&s, &["store", "last_id"]) >= last_queued;
            if done {
                drained = Some(s.clone());
            }
            done
        }),
        "backlog not drained within 60 s: {}",
        status(addr)["upstream"]
    );
    let elapsed = back.elapsed().as_secs_f64();
    let drained = drained.unwrap();
    let drained_to = num(&drained, &["store", "last_id"]);
    let reqs = rx.requests();
    let n = accepted(&reqs).len() - accepted_before;
    println!(
        "drained: {n} events in {elapsed:.1} s ({:.0}/s) up to id {drained_to}",
        n as f64 / elapsed
    );
    let u = upstream(&drained, "http");
    assert_eq!(u["up"], true, "{u}");
    assert_eq!(num(u, &["dropped"]), 0, "{u}");
    assert_eq!(num(u, &["rejected"]), 0, "{u}");

    // Attempts go one event at a time, in id order: never back to an
    // earlier id within one process.
    let attempts: Vec<u64> = reqs.iter().filter_map(|r| r.id).collect();
    if let Some(w) = attempts.windows(2).find(|w| w[1] < w[0]) {
        panic!("attempt for {} after {}", w[1], w[0]);
    }
    let ok_ids: Vec<u64> = accepted(&reqs).iter().filter_map(|r| r.id).collect();
    assert_strictly_increasing("first arrivals", &first_arrivals(&ok_ids));
    // An id acknowledged twice must have been in flight at a failure.
    let failed: HashSet<u64> = reqs
        .iter()
        .filter(|r| !r.accepted())
        .filter_map(|r| r.id)
        .collect();
    let mut seen = HashSet::new();
    for id in &ok_ids {
        if !seen.insert(*id) {
            assert!(
                failed.contains(id),
                "event {id} acknowledged twice without a failure in between"
            );
        }
    }
    // Every stored event up to the drained point arrived.
    let ok_set: BTreeSet<u64> = ok_ids.iter().copied().collect();
    let stored = ids(&stored_events(addr));
    let missing: Vec<u64> = stored
        .iter()
        .copied()
        .filter(|id| *id <= drained_to && !ok_set.contains(id))
        .collect();
    assert!(
        missing.is_empty(),
        "stored but never delivered: {missing:?}"
    );
    let queued_during_outage = stored
        .iter()
        .filter(|id| failed.contains(id) || **id <= last_queued)
        .count();
    assert!(queued_during_outage > 0);
    assert_eq!(v.stop(), 0);
}

/// xorshift64*, seeded.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
}

fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

#[test]
fn kill_9_loses_no_acknowledged_event_and_delivers_the_rest() {
    let seed = std::env::var("VIGIL_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| unix_ms() as u64);
    println!("seed {seed} (set VIGIL_TEST_SEED to repeat)");
    let mut rng = Rng(seed | 1);
    let dir = TempDir::new("out-kill");
    let rx = std::sync::Arc::new(Receiver::start(Mode::Ok));
    let data = dir.join("data");
    let cfg = config(&data)
        .http_upstream(&rx.url("/events"), AUTH)
        .write(&dir);
    // The receiver flips between accepting and failing.
    let flipping = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let flipper = {
        let (rx, flipping) = (rx.clone(), flipping.clone());
        let mut r = Rng(seed.rotate_left(17) | 1);
        std::thread::spawn(move || {
            while flipping.load(std::sync::atomic::Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(r.range(200, 1200)));
                if flipping.load(std::sync::atomic::Ordering::Relaxed) {
                    rx.set_mode(if rx.mode() == Mode::Ok {
                        Mode::Status(500)
                    } else {
                        Mode::Ok
                    });
                }
            }
        })
    };
    // Acknowledged before the previous kill: id -> time_ms.
    let mut acknowledged: BTreeMap<u64, i64> = BTreeMap::new();
    let mut last_acked = 0u64;
    let mut killed_at = 0i64;
    for round in 0..4 {
        let started = unix_ms();
        let (v, addr) = Vigil::serve(&cfg, &data);
        // Nothing acknowledged was lost, nor rewritten under its id.
        let now = stored_events(addr);
        let by_id: BTreeMap<u64, &Value> = now.iter().map(|e| (num(e, &["id"]), e)).collect();
        for (id, t) in &acknowledged {
            let e = by_id.get(id).unwrap_or_else(|| {
                panic!("round {round}: event {id} (acknowledged before the kill) is gone")
            });
            assert_eq!(
                e["time_ms"].as_i64(),
                Some(*t),
                "round {round}: event {id} changed: {e}"
            );
        }
        if round > 0 {
            assert!(
                by_id.contains_key(&last_acked),
                "round {round}: the last acknowledged event {last_acked} is gone"
            );
            for (id, e) in &by_id {
                if *id <= last_acked {
                    let t = e["time_ms"].as_i64().unwrap();
                    assert!(
                        t <= killed_at,
                        "round {round}: event {id} is newer than the kill: {e}"
                    );
                }
            }
        }
        // Let it raise events of its own, then a random while more.
        assert!(
            wait_until(Duration::from_secs(60), || {
                num(&status(addr), &["store", "last_id"]) > last_acked
            }),
            "round {round}: no new event committed within 60 s"
        );
        let run = rng.range(2000, 6000);
        std::thread::sleep(Duration::from_millis(run));
        let before_kill = stored_events(addr);
        for e in &before_kill {
            let id = num(e, &["id"]);
            let t = e["time_ms"].as_i64().unwrap();
            // Events of this run continue after the last acknowledged id.
            if t > started {
                assert!(
                    id > last_acked,
                    "round {round}: event {id} of this run reuses an id at or below {last_acked}: {e}"
                );
            }
            acknowledged.insert(id, t);
        }
        let s = status(addr);
        let acked = num(&s, &["store", "last_id"]);
        // SAFETY: plain kill(2) on our own child.
        unsafe { libc::kill(v.pid() as i32, libc::SIGKILL) };
        killed_at = unix_ms();
        assert!(
            acked > last_acked,
            "round {round}: last_id {acked} did not advance"
        );
        println!(
            "round {round}: ran {run} ms after its first event; last_id {acked}, {} stored, pending {}, {} requests so far",
            before_kill.len(),
            upstream(&s, "http")["pending_events"],
            rx.count()
        );
        last_acked = acked;
        drop(v);
    }
    flipping.store(false, std::sync::atomic::Ordering::Relaxed);
    flipper.join().unwrap();
    rx.set_mode(Mode::Ok);

    // Back with the receiver working: everything stored gets delivered,
    // including this run's own events.
    let started = unix_ms();
    let (v, addr) = Vigil::serve(&cfg, &data);
    let stored_now = ids(&stored_events(addr));
    for id in acknowledged.keys() {
        assert!(
            stored_now.contains(id),
            "event {id} is gone after the last restart"
        );
    }
    assert!(stored_now.contains(&last_acked));
    let mut upto = 0;
    assert!(
        wait_until(Duration::from_secs(60), || {
            let s = status(addr);
            upto = num(&s, &["store", "last_id"]);
            num(upstream(&s, "http"), &["pending_events"]) == 0 && upto > last_acked
        }),
        "backlog not delivered within 60 s: {}",
        status(addr)["upstream"]
    );
    let delivered: BTreeSet<u64> = rx.accepted_ids().into_iter().collect();
    let final_events = stored_events(addr);
    for e in &final_events {
        let id = num(e, &["id"]);
        if e["time_ms"].as_i64().unwrap() > started {
            assert!(
                id > last_acked,
                "event {id} of the last run reuses an id: {e}"
            );
        } else if id <= last_acked {
            assert!(e["time_ms"].as_i64().unwrap() <= killed_at, "{e}");
        }
    }
    let stored = ids(&final_events);
    let undelivered: Vec<u64> = stored
        .iter()
        .copied()
        .filter(|id| *id <= upto && !delivered.contains(id))
        .collect();
    assert!(
        undelivered.is_empty(),
        "stored but never delivered: {undelivered:?}"
    );
    let all = rx.accepted_ids();
    println!(
        "{} stored up to {upto}, {} deliveries of {} distinct events ({} duplicates)",
        stored.len(),
        all.len(),
        delivered.len(),
        all.len() - delivered.len()
    );
    assert_eq!(v.stop(), 0);
}

#[test]
fn mqtt_delivery_with_a_real_broker() {
    let dir = TempDir::new("out-mqtt");
    let mq_dir = dir.join("mosquitto");
    std::fs::create_dir_all(&mq_dir).unwrap();
    let mut broker = Broker::start(&mq_dir);
    let sub = Subscriber::start(&broker, "vigil/#", "vigil-test-sub");
    let data = dir.join("data");
    let cfg = config(&data).mqtt_upstream(&broker.url()).write(&dir);
    let (v, addr) = Vigil::serve(&cfg, &data);
    let event_ids = |msgs: &[vigil_system_tests::mosquitto::Message]| -> Vec<u64> {
        msgs.iter()
            .filter(|m| m.topic == "vigil/camera-1/event")
            .map(|m| {
                let j = m
                    .json()
                    .unwrap_or_else(|| panic!("event payload is not JSON: {:?}", m.payload));
                num(&j, &["id"])
            })
            .collect()
    };
    assert!(
        sub.wait(Duration::from_secs(90), |m| event_ids(m).len() >= 5),
        "fewer than 5 events published within 90 s: {} messages",
        sub.count()
    );
    let s = status(addr);
    let u = upstream(&s, "mqtt");
    assert_eq!(u["up"], true, "{u}");
    assert!(num(u, &["delivered"]) > 0, "{u}");
    assert!(
        u["target"]
            .as_str()
            .is_some_and(|t| t.contains(&broker.port().to_string())),
        "{u}"
    );

    // The broker goes away for a while.
    let before = status(addr);
    let pending0 = num(upstream(&before, "mqtt"), &["pending_events"]);
    broker.stop();
    let mut pending_peak = pending0;
    let mut last = before;
    for _ in 0..10 {
        std::thread::sleep(Duration::from_millis(500));
        last = status(addr);
        pending_peak = pending_peak.max(num(upstream(&last, "mqtt"), &["pending_events"]));
    }
    let u = upstream(&last, "mqtt");
    assert_eq!(u["up"], false, "{u}");
    assert!(num(u, &["failures"]) > 0, "{u}");
    assert!(
        num(u, &["pending_events"]) > pending0,
        "pending did not grow: {u}"
    );
    assert!(
        u["last_error"].as_str().is_some_and(|e| !e.is_empty()),
        "{u}"
    );
    let queued_to = num(&last, &["store", "last_id"]);
    println!(
        "broker down: pending {pending0} -> {}, failures {}",
        u["pending_events"], u["failures"]
    );
    broker.restart();
    let mut drained_to = 0;
    assert!(
        wait_until(Duration::from_secs(60), || {
            let s = status(addr);
            drained_to = num(&s, &["store", "last_id"]);
            num(upstream(&s, "mqtt"), &["pending_events"]) == 0 && drained_to >= queued_to
        }),
        "backlog not delivered within 60 s: {}",
        status(addr)["upstream"]
    );
    let stored = ids(&stored_events(addr));
    let wanted: Vec<u64> = stored
        .iter()
        .copied()
        .filter(|id| *id <= drained_to)
        .collect();
    let arrived = sub.wait(Duration::from_secs(30), |m| {
        let got: HashSet<u64> = event_ids(m).into_iter().collect();
        wanted.iter().all(|id| got.contains(id))
    });
    let msgs = sub.messages();
    let got = event_ids(&msgs);
    let got_set: HashSet<u64> = got.iter().copied().collect();
    let missing: Vec<u64> = wanted
        .iter()
        .copied()
        .filter(|id| !got_set.contains(id))
        .collect();
    assert!(
        arrived && missing.is_empty(),
        "stored events never published: {missing:?} (subscriber started {} times)",
        sub.starts()
    );
    assert_strictly_increasing("first arrivals", &first_arrivals(&got));

    // Each event with a snapshot came, the first time, right after its
    // JPEG. A later copy may come alone: delivery is at least once on both
    // legs, and the broker redelivers an event whose PUBACK the subscriber
    // did not send before the broker stopped, without the snapshot before it.
    let mut snapshots = 0;
    let mut last_snapshot: Option<&[u8]> = None;
    let mut seen_events = HashSet::new();
    for m in &msgs {
        match m.topic.as_str() {
            "vigil/camera-1/snapshot" => {
                let info = jpeg_info(&m.payload);
                assert_jpeg(&format!("snapshot message {}", m.seq), &info);
                snapshots += 1;
                last_snapshot = Some(&m.payload);
            }
            "vigil/camera-1/event" => {
                let e = m.json().unwrap();
                assert_eq!(e["camera"], "camera-1", "{e}");
                let n = num(&e, &["snapshot_bytes"]) as usize;
                let first = seen_events.insert(num(&e, &["id"]) as u64);
                match last_snapshot.take() {
                    Some(snap) if n > 0 => assert_eq!(snap.len(), n, "snapshot before {e}"),
                    None if n > 0 && first => panic!("event {e} came without its snapshot"),
                    _ => {}
                }
            }
            other => panic!("unexpected topic {other}"),
        }
    }
    assert!(snapshots >= 5, "only {snapshots} snapshots published");
    let dups = got.len() - got_set.len();
    println!(
        "{} event messages ({} distinct, {dups} duplicates), {snapshots} snapshots; pending peak {pending_peak}",
        got.len(),
        got_set.len()
    );
    let s = status(addr);
    assert_eq!(upstream(&s, "mqtt")["up"], true);
    assert_eq!(v.stop(), 0);
}

/// The sizes of the store's files: (events.redb + snapshots with id <=
/// `committed`, apparent bytes; the same, allocated bytes; files).
fn store_disk_use(data: &Path, committed: u64) -> (u64, u64, usize) {
    use std::os::unix::fs::MetadataExt;
    let mut apparent = 0;
    let mut allocated = 0;
    let mut files = 0;
    let db = std::fs::metadata(data.join("events.redb")).expect("events.redb");
    apparent += db.len();
    allocated += db.blocks() * 512;
    for entry in std::fs::read_dir(data.join("snapshots")).expect("snapshots dir") {
        let Ok(entry) = entry else { continue };
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(id) = name
            .strip_suffix(".jpg")
            .and_then(|n| n.parse::<u64>().ok())
        else {
            continue;
        };
        if id > committed {
            continue; // in the batch being written, not committed yet
        }
        if let Ok(m) = entry.metadata() {
            apparent += m.len();
            allocated += m.blocks() * 512;
            files += 1;
        }
    }
    (apparent, allocated, files)
}

#[test]
fn store_stays_inside_its_quota() {
    let dir = TempDir::new("out-quota");
    let data = dir.join("data");
    let max = 4 * MIB;
    let cfg = config(&data).store("max_bytes", "4MiB").write(&dir);
    let (v, addr) = Vigil::serve(&cfg, &data);
    let mut deleted0 = 0;
    assert!(
        wait_until(Duration::from_secs(120), || {
            deleted0 = num(&status(addr), &["store", "deleted"]);
            deleted0 > 0
        }),
        "retention deleted nothing within 120 s: {}",
        status(addr)["store"]
    );
    // A few more commits with retention, measuring each time.
    let mut worst = 0;
    for _ in 0..8 {
        std::thread::sleep(Duration::from_millis(700));
        let s = status(addr);
        let st = &s["store"];
        assert_eq!(st["ok"], true, "{st}");
        assert_eq!(num(st, &["max_bytes"]), max);
        assert!(
            num(st, &["bytes"]) <= max,
            "store.bytes over max_bytes: {st}"
        );
        let (apparent, allocated, files) = store_disk_use(&data, num(st, &["last_id"]));
        println!(
            "store: {} events, quota bytes {}, on disk {apparent} bytes ({allocated} allocated) in {files} snapshots + events.redb",
            st["events"], st["bytes"]
        );
        worst = worst.max(apparent);
        assert!(
            apparent <= max,
            "the store's files take {apparent} bytes, over max_bytes {max}: {st}"
        );
    }
    let s = status(addr);
    assert!(
        num(&s, &["store", "deleted"]) > deleted0,
        "retention stopped deleting: {}",
        s["store"]
    );
    assert!(num(&s, &["store", "events"]) > 0);
    assert_eq!(v.stop(), 0);
    let (apparent, _, _) = store_disk_use(&data, u64::MAX);
    println!("after stop: {apparent} bytes on disk; worst while running {worst}");
    assert!(
        apparent <= max,
        "after stop the store takes {apparent} bytes"
    );
}

#[test]
fn a_full_disk_is_a_clear_state_not_a_crash() {
    let probe = std::process::Command::new("unshare")
        .args(["--mount", "--map-root-user", "true"])
        .output();
    match probe {
        Ok(o) if o.status.success() => {}
        Ok(o) => panic!(
            "this test needs `unshare --mount --map-root-user` (user namespaces) to mount a small tmpfs: {}",
            String::from_utf8_lossy(&o.stderr)
        ),
        Err(e) => panic!("this test needs unshare(1) from util-linux: {e}"),
    }
    let dir = TempDir::new("out-full");
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    let cfg = config(&data).store("max_bytes", "64MiB").write(&dir);
    // vigil in its own mount namespace with a 3 MiB tmpfs on its data dir.
    let wrapper = dir.join("vigil-on-tmpfs.sh");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nexec unshare --mount --map-root-user sh -c 'mount -t tmpfs -o size=3m tmpfs \"$0\" || {{ echo \"cannot mount a tmpfs on $0\" >&2; exit 97; }}; exec \"$@\"' {data:?} {vigil:?} \"$@\"\n",
            data = data.display().to_string(),
            vigil = binary().display().to_string(),
        ),
    )
    .unwrap();
    std::fs::set_permissions(
        &wrapper,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let v = {
        let previous = std::env::var_os("VIGIL_BIN");
        std::env::set_var("VIGIL_BIN", &wrapper);
        let v = Vigil::run(&cfg, &data);
        match previous {
            Some(p) => std::env::set_var("VIGIL_BIN", p),
            None => std::env::remove_var("VIGIL_BIN"),
        }
        v
    };
    let addr = v.web_addr();
    let s = status(addr);
    let disk = num(&s, &["disk", "total_bytes"]);
    assert!(
        disk <= 4 * MIB,
        "the data dir is not on the small tmpfs: {}",
        s["disk"]
    );
    let mut full = Value::Null;
    assert!(
        wait_until(Duration::from_secs(120), || {
            full = status(addr);
            full["store"]["ok"] == false && num(&full, &["store", "lost"]) > 0
        }),
        "the store never reported the full disk within 120 s: {}",
        status(addr)["store"]
    );
    let st = &full["store"];
    let err = st["error"].as_str().unwrap_or("");
    assert!(
        err.contains("No space left") || err.to_lowercase().contains("space"),
        "store.error does not say the disk is full: {st}"
    );
    println!("full: {st}");
    // Clips share the disk: the camera's recording state says why it
    // stopped, instead of the camera going down.
    let mut cams = Value::Null;
    assert!(
        wait_until(Duration::from_secs(60), || {
            cams = get(addr, "/api/cameras").json();
            cams[0]["recording"]["state"] == "error"
        }),
        "recording never reported the full disk: {}",
        cams[0]["recording"]
    );
    let rec = &cams[0]["recording"];
    assert!(
        rec["error"].as_str().unwrap_or("").contains("space"),
        "recording.error does not say the disk is full: {rec}"
    );
    assert_eq!(cams[0]["state"], "streaming", "{}", cams[0]);
    println!("recording: {rec}");
    let (rss0, threads0) = rss_threads(&v);
    let lost0 = num(st, &["lost"]);
    // Clips share the disk, so the store may commit again for a moment
    // when a failed clip is cut back to its last whole fragment and frees
    // a few kilobytes. Every state it reports must still be either fine
    // or the full disk, never another error.
    for _ in 0..20 {
        std::thread::sleep(Duration::from_secs(1));
        let s = status(addr);
        let st = &s["store"];
        if st["ok"] == false {
            let err = st["error"].as_str().unwrap_or("");
            assert!(
                err.to_lowercase().contains("space"),
                "store.error is not the full disk: {st}"
            );
        }
    }
    let (rss1, threads1) = rss_threads(&v);
    let s = status(addr);
    let lost1 = num(&s, &["store", "lost"]);
    println!(
        "20 s later: RSS {:.1} -> {:.1} MiB, threads {threads0} -> {threads1}, lost {lost0} -> {lost1}, store {}",
        rss0 as f64 / MIB as f64,
        rss1 as f64 / MIB as f64,
        s["store"]
    );
    assert_eq!(
        threads1, threads0,
        "threads changed while the disk was full"
    );
    assert!(
        rss1 < rss0 + 4 * MIB,
        "RSS grew from {rss0} to {rss1} bytes while the disk was full"
    );
    // The freed kilobytes are soon used up again: the store is back to
    // reporting the full disk, and it kept counting what it lost.
    assert!(
        wait_until(Duration::from_secs(60), || {
            let s = status(addr);
            s["store"]["ok"] == false && num(&s, &["store", "lost"]) >= lost0
        }),
        "the store did not report the full disk again: {}",
        status(addr)["store"]
    );
    let page = get(addr, "/");
    assert_eq!(page.status, 200);
    assert!(page.text().contains("<html") || page.text().contains("<!DOCTYPE"));
    assert!(
        v.lines_matching(|l| l.contains("panicked")).is_empty(),
        "vigil panicked"
    );
    assert_eq!(v.stop(), 0, "vigil did not exit cleanly with a full disk");
}
