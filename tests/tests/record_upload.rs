//! Clip upload, black box: with `[record] upstream = "upload"` the real
//! binary POSTs every finished clip to the HTTP upstream (the events' URL,
//! `Content-Type: video/mp4`, `X-Vigil-Clip`), byte for byte the file it
//! keeps under `data/clips/`, and retries while the upstream answers 500.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use vigil_system_tests::http::get;
use vigil_system_tests::media::TempDir;
use vigil_system_tests::mosquitto::{Broker, Subscriber};
use vigil_system_tests::process::{cached, Vigil};
use vigil_system_tests::receiver::{Mode, Receiver, Request};

/// The `[upstream.http]` section for `url`.
fn http_upstream(url: &str) -> String {
    format!("[upstream.http]\nurl = {url:?}\nheader = \"Authorization: Bearer test-token\"\n")
}

/// Writes `DIR/vigil.toml`: the sample clip, short clips uploaded, and the
/// `upstreams` sections.
fn write_config(dir: &TempDir, data: &Path, upstreams: &str) -> PathBuf {
    let t = format!(
        "data_dir = {data:?}\nlisten = \"127.0.0.1:0\"\n\
         [detector]\nmodel = {model:?}\n\
         [store]\nflush_after = \"200ms\"\n\
         [upstream]\nretry_min = \"100ms\"\nretry_max = \"500ms\"\ntimeout = \"2s\"\n\
         {upstreams}\
         [record]\nupstream = \"upload\"\npre_roll = \"2s\"\npost_roll = \"1s\"\n\
         max_length = \"4s\"\nfragment = \"500ms\"\n\
         [[camera]]\nname = \"street\"\nurl = {clip:?}\n",
        data = data.display().to_string(),
        model = cached("models/ssd_mobilenet_v2_coco.pb")
            .display()
            .to_string(),
        clip = cached("media/bikes.mp4").display().to_string(),
    );
    let p = dir.join("vigil.toml");
    std::fs::write(&p, t).unwrap();
    p
}

fn start(cfg: &Path, data: &Path) -> (Vigil, SocketAddr) {
    let v = Vigil::run(cfg, data);
    let addr = v.web_addr();
    (v, addr)
}

/// Ids of the clips the log says were finished (or cut short).
fn finished_clips(v: &Vigil) -> Vec<u64> {
    v.lines_matching(|l| {
        l.contains(": clip ") && (l.contains(" finished: ") || l.contains(" cut short: "))
    })
    .iter()
    .filter_map(|l| {
        l.split(": clip ")
            .nth(1)?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    })
    .collect()
}

fn clip_id(r: &Request) -> u64 {
    r.header("x-vigil-clip")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("clip upload without X-Vigil-Clip: {:?}", r.headers))
}

/// Clip ids acknowledged so far.
fn accepted_clips(rx: &Receiver) -> Vec<u64> {
    rx.requests()
        .iter()
        .filter(|r| r.is_clip() && r.accepted())
        .map(clip_id)
        .collect()
}

fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    f()
}

#[test]
fn finished_clips_are_uploaded_whole_and_retried_through_an_outage() {
    let dir = TempDir::new("rec-upload");
    let data = dir.join("data");
    let rx = Receiver::start(Mode::Ok);
    let cfg = write_config(&dir, &data, &http_upstream(&rx.url("/ingest")));
    let (v, addr) = start(&cfg, &data);

    // The first clip arrives.
    assert!(
        wait_until(Duration::from_secs(90), || !accepted_clips(&rx).is_empty()),
        "no clip uploaded in 90 s; finished: {:?}",
        finished_clips(&v)
    );
    // The upstream fails for a while: clips finishing meanwhile are
    // refused with 500 and retried.
    rx.set_mode(Mode::Status(500));
    let outage = Instant::now();
    let refused_clip = wait_until(Duration::from_secs(30), || {
        rx.requests().iter().any(|r| r.is_clip() && !r.accepted())
    });
    assert!(refused_clip, "no clip upload tried during the outage");
    std::thread::sleep(Duration::from_secs(3).saturating_sub(outage.elapsed()));
    let refused: Vec<u64> = rx
        .requests()
        .iter()
        .filter(|r| r.is_clip() && !r.accepted())
        .map(clip_id)
        .collect();
    rx.set_mode(Mode::Ok);

    // Everything finished by now arrives after the recovery.
    let finished_now = finished_clips(&v);
    assert!(finished_now.len() >= 2, "finished: {finished_now:?}");
    assert!(
        wait_until(Duration::from_secs(30), || {
            let got = accepted_clips(&rx);
            finished_now.iter().all(|id| got.contains(id))
        }),
        "finished {finished_now:?}, uploaded {:?}",
        accepted_clips(&rx)
    );
    for id in &refused {
        assert!(
            accepted_clips(&rx).contains(id),
            "clip {id} refused during the outage never arrived"
        );
    }

    // Every upload: the clip's headers, and exactly the file on disk.
    let requests = rx.requests();
    let clips: Vec<&Request> = requests.iter().filter(|r| r.is_clip()).collect();
    let mut checked = BTreeMap::new();
    for r in &clips {
        let id = clip_id(r);
        assert_eq!(r.path, "/ingest");
        assert_eq!(r.header("x-vigil-camera"), Some("street"), "clip {id}");
        assert_eq!(
            r.header("authorization"),
            Some("Bearer test-token"),
            "clip {id}"
        );
        assert_eq!(
            r.header("content-length"),
            Some(r.body_len.to_string().as_str())
        );
        let body = r.clip.as_ref().expect("clip body kept");
        let file = data.join("clips").join(format!("{id}.mp4"));
        match std::fs::read(&file) {
            Ok(on_disk) => {
                assert!(
                    body == &on_disk,
                    "clip {id}: uploaded {} bytes differ from the {} on disk",
                    body.len(),
                    on_disk.len()
                );
                checked.insert(id, on_disk.len());
            }
            Err(e) => panic!("clip {id} uploaded but {}: {e}", file.display()),
        }
        assert!(
            body.len() > 1000 && &body[4..8] == b"ftyp",
            "clip {id}: not an MP4"
        );
    }
    assert!(checked.len() >= 2, "{checked:?}");
    // Events still arrive as JSON at the same URL, and they come first.
    let events: Vec<&Request> = requests.iter().filter(|r| !r.is_clip()).collect();
    assert!(!events.is_empty());
    for r in &events {
        assert_eq!(r.header("content-type"), Some("application/json"));
        assert_eq!(r.body_error, None, "{r:?}");
    }
    for r in clips.iter().filter(|r| r.accepted()) {
        let id = clip_id(r);
        assert!(
            events
                .iter()
                .any(|e| e.accepted() && e.id == Some(id) && e.seq < r.seq),
            "clip {id} arrived before its opening event"
        );
    }

    // Counted: clips delivered and failures, per upstream.
    let status = get(addr, "/api/status").json();
    let u = &status["upstream"][0];
    assert_eq!(u["name"], "http");
    assert!(
        u["clips_delivered"].as_u64().unwrap() >= checked.len() as u64,
        "{u}"
    );
    assert!(
        u["clip_failures"].as_u64().unwrap() >= refused.len() as u64,
        "{u}"
    );
    let metrics = get(addr, "/metrics").text();
    let delivered = metrics
        .lines()
        .find_map(|l| l.strip_prefix("vigil_upstream_clips_delivered_total{upstream=\"http\"} "))
        .and_then(|n| n.parse::<f64>().ok())
        .unwrap_or_else(|| panic!("no clips_delivered metric: {metrics}"));
    assert!(delivered >= checked.len() as f64, "{delivered}");
    assert!(metrics.contains("vigil_upstream_clip_failures_total{upstream=\"http\"}"));
    assert_eq!(v.stop(), 0, "clean exit on SIGTERM");
}

#[test]
fn mqtt_gets_a_notice_with_the_clip_link_not_the_clip() {
    let dir = TempDir::new("rec-upload-mqtt");
    let data = dir.join("data");
    let mq_dir = dir.join("mqtt");
    std::fs::create_dir_all(&mq_dir).unwrap();
    let broker = Broker::start(&mq_dir);
    let sub = Subscriber::start(&broker, "vigil/#", "vigil-clip-sub");
    let section = format!("[upstream.mqtt]\nurl = {:?}\n", broker.url());
    let cfg = write_config(&dir, &data, &section);
    let (v, addr) = start(&cfg, &data);
    let notices = |sub: &Subscriber| -> Vec<serde_json::Value> {
        sub.messages()
            .iter()
            .filter(|m| m.topic == "vigil/street/clip")
            .map(|m| m.json().expect("clip notice is JSON"))
            .collect()
    };
    assert!(
        wait_until(Duration::from_secs(90), || notices(&sub).len() >= 2),
        "no two clip notices in 90 s; finished: {:?}",
        finished_clips(&v)
    );
    for n in notices(&sub) {
        let id = n["clip"].as_u64().unwrap_or_else(|| panic!("{n}"));
        assert_eq!(n["camera"], "street", "{n}");
        assert_eq!(n["path"], format!("/api/events/{id}/clip.mp4"), "{n}");
        let file = data.join("clips").join(format!("{id}.mp4"));
        let len = std::fs::metadata(&file).unwrap().len();
        assert_eq!(n["bytes"].as_u64(), Some(len), "{n}");
        let r = get(addr, &format!("/api/events/{id}/clip.mp4"));
        assert_eq!(r.status, 200, "clip {id} served");
        assert_eq!(r.body.len() as u64, len);
    }
    // Events still go out as before.
    assert!(sub
        .messages()
        .iter()
        .any(|m| m.topic == "vigil/street/event"));
    let status = get(addr, "/api/status").json();
    let u = &status["upstream"][0];
    assert_eq!(u["name"], "mqtt");
    assert!(u["clips_delivered"].as_u64().unwrap() >= 2, "{u}");
    assert_eq!(v.stop(), 0, "clean exit on SIGTERM");
}
