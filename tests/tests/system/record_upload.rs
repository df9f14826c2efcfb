//! Clip upload, black box: with `[record] upstream = "upload"` the real
//! binary POSTs every finished clip to the HTTP upstream (the events' URL,
//! `Content-Type: video/mp4`, `X-Vigil-Clip`), byte for byte the file it
//! keeps under `data/clips/`, and retries while the upstream answers 500.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};
use vigil_system_tests::api::{metrics, status, wait_until};
use vigil_system_tests::config::{sample_clip, Camera, Config};
use vigil_system_tests::http::get;
use vigil_system_tests::media::TempDir;
use vigil_system_tests::mosquitto::{Broker, Subscriber};
use vigil_system_tests::process::Vigil;
use vigil_system_tests::receiver::{Mode, Receiver, Request};

/// The sample clip as the camera "street" with its data in `data`, short
/// clips uploaded (`[record] upstream = "upload"`) and quick upstream
/// retries; tests add the upstream itself.
fn config(data: &Path) -> Config {
    Config::new()
        .data_dir(data)
        .listen_anywhere()
        .ssd_model()
        .store("flush_after", "200ms")
        .upstream("retry_min", "100ms")
        .upstream("retry_max", "500ms")
        .upstream("timeout", "2s")
        .record("upstream", "upload")
        .record("pre_roll", "2s")
        .record("post_roll", "1s")
        .record("max_length", "4s")
        .record("fragment", "500ms")
        .camera(Camera::named("street", sample_clip()))
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

#[test]
fn finished_clips_are_uploaded_whole_and_retried_through_an_outage() {
    let dir = TempDir::new("rec-upload");
    let data = dir.join("data");
    let rx = Receiver::start(Mode::Ok);
    let cfg = config(&data)
        .http_upstream(&rx.url("/ingest"), "Authorization: Bearer test-token")
        .write(&dir);
    let (v, addr) = Vigil::serve(&cfg, &data);

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
    let status = status(addr);
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
    let m = metrics(addr);
    let delivered = m.value("vigil_upstream_clips_delivered_total{upstream=\"http\"}");
    assert!(delivered >= checked.len() as f64, "{delivered}");
    assert!(m
        .text()
        .contains("vigil_upstream_clip_failures_total{upstream=\"http\"}"));
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
    let cfg = config(&data).mqtt_upstream(&broker.url()).write(&dir);
    let (v, addr) = Vigil::serve(&cfg, &data);
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
    let status = status(addr);
    let u = &status["upstream"][0];
    assert_eq!(u["name"], "mqtt");
    assert!(u["clips_delivered"].as_u64().unwrap() >= 2, "{u}");
    assert_eq!(v.stop(), 0, "clean exit on SIGTERM");
}
