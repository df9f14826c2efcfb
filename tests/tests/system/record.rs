//! Recording, black box: the real binary on the sample clip cuts event clips
//! from its pre-roll ring, writes them as fragmented MP4 under its data
//! directory and serves them. ffprobe checks every clip against what vigil
//! says it wrote (frame counts from its log), a kill -9 with a clip open
//! must leave a file ffprobe and ffmpeg read, and headless Chromium plays a
//! clip from the status page.

use serde_json::Value;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use vigil_system_tests::api::{cameras, wait_until};
use vigil_system_tests::config::{sample_clip, Camera, Config};
use vigil_system_tests::http::{get, request, session};
use vigil_system_tests::media::TempDir;
use vigil_system_tests::process::{root, Vigil};

/// The sample clip as the camera "street" with its data in `data`, quick
/// store commits, and clips of the given pre-roll, post-roll and length
/// limit written in 500 ms fragments.
fn config(data: &Path, pre_roll: &str, post_roll: &str, max_length: &str) -> Config {
    Config::new()
        .data_dir(data)
        .listen_anywhere()
        .ssd_model()
        .store("flush_after", "200ms")
        .record("pre_roll", pre_roll)
        .record("post_roll", post_roll)
        .record("max_length", max_length)
        .record("fragment", "500ms")
        .camera(Camera::named("street", sample_clip()))
}

/// The camera's `recording` object from `/api/cameras`.
fn recording(addr: SocketAddr) -> Value {
    cameras(addr)[0]["recording"].clone()
}

/// ffprobe's reading of a clip: codec, size and frames decoded.
struct Probe {
    codec: String,
    width: u64,
    height: u64,
    frames: u64,
}

fn probe(path: &Path) -> Result<Probe, String> {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-count_frames", "-select_streams", "v:0"])
        .args([
            "-show_entries",
            "stream=codec_name,width,height,nb_read_frames",
            "-of",
            "json",
        ])
        .arg(path)
        .output()
        .map_err(|e| format!("ffprobe (install ffmpeg): {e}"))?;
    let v: Value = serde_json::from_slice(&out.stdout).map_err(|e| {
        format!(
            "ffprobe {}: {e}: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr)
        )
    })?;
    let s = &v["streams"][0];
    let frames = s["nb_read_frames"]
        .as_str()
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| format!("ffprobe {}: no frame count in {v}", path.display()))?;
    Ok(Probe {
        codec: s["codec_name"].as_str().unwrap_or("").into(),
        width: s["width"].as_u64().unwrap_or(0),
        height: s["height"].as_u64().unwrap_or(0),
        frames,
    })
}

/// `ffmpeg -v error` decodes the whole file; its complaints, if any.
fn decode_errors(path: &Path) -> String {
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(path)
        .args(["-f", "null", "-"])
        .output()
        .expect("ffmpeg");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    if out.status.success() {
        err
    } else {
        format!("exit {}: {err}", out.status)
    }
}

/// `(clip id, units, bytes)` of every "clip N finished" line in the log.
fn finished_clips(v: &Vigil) -> Vec<(u64, u64, u64)> {
    v.lines_matching(|l| l.contains(": clip ") && l.contains(" finished: "))
        .iter()
        .filter_map(|l| {
            let rest = l.split(": clip ").nth(1)?;
            let mut words = rest.split_whitespace();
            let id = words.next()?.parse().ok()?;
            let units = words.nth(1)?.parse().ok()?;
            let bytes = words.nth(1)?.parse().ok()?;
            Some((id, units, bytes))
        })
        .collect()
}

#[test]
fn clips_are_cut_around_events_written_as_mp4_and_served() {
    let dir = TempDir::new("rec-clips");
    let data = dir.join("data");
    let cfg = config(&data, "2s", "1s", "4s").write(&dir);
    let (v, addr) = Vigil::serve(&cfg, &data);
    assert!(
        wait_until(Duration::from_secs(90), || finished_clips(&v).len() >= 3),
        "no three clips finished in 90 s: {}",
        recording(addr)
    );
    let rec = recording(addr);
    assert_eq!(rec["error"], "", "{rec}");
    assert!(rec["ring_seconds"].as_f64().unwrap() >= 2.0, "{rec}");

    // Every finished clip: the file holds exactly the units vigil wrote,
    // in H.264 at the clip's size, and decodes without a complaint.
    for (id, units, bytes) in finished_clips(&v) {
        let file = data.join("clips").join(format!("{id}.mp4"));
        let p = probe(&file).unwrap();
        assert_eq!(p.codec, "h264", "clip {id}");
        assert_eq!((p.width, p.height), (640, 272), "clip {id}");
        assert_eq!(p.frames, units, "clip {id}: frames read vs units written");
        assert_eq!(std::fs::metadata(&file).unwrap().len(), bytes, "clip {id}");
        // Pre-roll plus post-roll at 25 fps, never past max_length (plus
        // the group of pictures it starts on).
        assert!((25..=25 * 6).contains(&units), "clip {id}: {units} units");
        assert_eq!(decode_errors(&file), "", "clip {id}");
    }

    // Events link their clip; the API serves it whole and by range.
    let events = get(addr, "/api/events?limit=500").json();
    let (id, _, _) = finished_clips(&v)[0];
    let linked: Vec<&Value> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["clip"].as_str() == Some(&format!("/api/events/{}/clip.mp4", e["id"])))
        .collect();
    assert!(!linked.is_empty(), "no event links a clip: {events}");
    // The clip's first event opened it, so the clip id is that event's id.
    assert!(
        linked.iter().any(|e| e["id"] == id && e["clip_id"] == id),
        "event {id} does not own its clip: {events}"
    );
    let r = get(addr, &format!("/api/events/{id}/clip.mp4"));
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("video/mp4"));
    assert_eq!(r.header("accept-ranges"), Some("bytes"));
    let on_disk = std::fs::read(data.join("clips").join(format!("{id}.mp4"))).unwrap();
    assert_eq!(r.body, on_disk, "clip {id} served differs from the file");
    let r = request(
        addr,
        "GET",
        &format!("/api/events/{id}/clip.mp4"),
        &[("Range", "bytes=8-107")],
        b"",
    );
    assert_eq!(r.status, 206);
    assert_eq!(&r.body[..], &on_disk[8..108]);
    assert_eq!(
        r.header("content-range"),
        Some(format!("bytes 8-107/{}", on_disk.len()).as_str())
    );
    let r = request(
        addr,
        "GET",
        &format!("/api/events/{id}/clip.mp4"),
        &[("Range", &format!("bytes={}-", on_disk.len()))],
        b"",
    );
    assert_eq!(r.status, 416);
    assert_eq!(get(addr, "/api/events/999999999/clip.mp4").status, 404);

    let metrics = get(addr, "/metrics").text();
    assert!(
        metrics.contains("vigil_record_clips_finished_total{camera=\"street\"}"),
        "{metrics}"
    );
    assert_eq!(v.stop(), 0, "clean exit on SIGTERM");
    // Shutdown finishes every open clip: each file on disk is whole.
    for entry in std::fs::read_dir(data.join("clips")).unwrap() {
        let path = entry.unwrap().path();
        let p = probe(&path).unwrap();
        assert!(p.frames > 0, "{}", path.display());
    }
}

#[test]
fn kill_9_with_a_clip_open_leaves_a_playable_file() {
    let dir = TempDir::new("rec-kill");
    let data = dir.join("data");
    // Long post-roll: the clip stays open while the test kills vigil.
    let cfg = config(&data, "2s", "60s", "120s").write(&dir);
    let (v, addr) = Vigil::serve(&cfg, &data);
    assert!(
        wait_until(Duration::from_secs(90), || {
            let r = recording(addr);
            r["state"] == "recording" && r["bytes_written"].as_u64().unwrap_or(0) > 200_000
        }),
        "no clip being recorded: {}",
        recording(addr)
    );
    // SAFETY: plain kill(2) on our own child.
    unsafe { libc::kill(v.pid() as i32, libc::SIGKILL) };
    drop(v);
    let files: Vec<PathBuf> = std::fs::read_dir(data.join("clips"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(!files.is_empty(), "no clip file");
    for f in &files {
        let p = probe(f).unwrap_or_else(|e| panic!("unreadable after kill -9: {e}"));
        assert!(p.frames >= 12, "{}: {} frames", f.display(), p.frames);
        let errors = decode_errors(f);
        assert!(!errors.contains("exit"), "{}: {errors}", f.display());
    }
    // Restarted on the same data, vigil keeps the clip and serves it.
    let (v, addr) = Vigil::serve(&cfg, &data);
    let events = get(addr, "/api/events?limit=1").json();
    let first = &events["events"][0];
    let url = first["clip"]
        .as_str()
        .expect("the first event links its clip");
    let r = get(addr, url);
    assert_eq!(r.status, 200, "{url}");
    assert_eq!(v.stop(), 0);
}

#[test]
fn chromium_plays_a_clip_from_the_status_page() {
    let dir = TempDir::new("rec-chromium");
    let data = dir.join("data");
    let cfg = config(&data, "2s", "1s", "4s").write(&dir);
    let (v, addr) = Vigil::serve(&cfg, &data);
    assert!(
        wait_until(Duration::from_secs(90), || !finished_clips(&v).is_empty()),
        "no clip finished"
    );
    let (clip, _, _) = finished_clips(&v)[0];
    // The page lists the newest events; pick one whose clip is whole.
    let events = get(addr, "/api/events?limit=1000").json();
    let id = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["clip_id"] == clip)
        .map(|e| e["id"].as_u64().unwrap())
        .max()
        .expect("an event of the finished clip");
    let until = format!(
        "(() => {{ const b = document.querySelector('#events tr[data-id=\"{id}\"] button.play'); \
         if (!b) return false; const v = document.getElementById('player-video'); \
         if (!v.getAttribute('src')) b.click(); \
         return !v.error && v.readyState >= 2 && v.currentTime > 0.5 && v.videoWidth > 0; }})()"
    );
    let out = Command::new("/usr/bin/python3")
        .arg(root().join("tests/support/browser.py"))
        .args(["--cookie", &session(addr).expect("session")])
        .args(["--url", &format!("http://{addr}/"), "--until", &until])
        .args(["--timeout", "60"])
        .args([
            "--eval",
            "[document.getElementById('player-video').videoWidth, document.getElementById('player-video').videoHeight]",
            "--eval",
            "document.getElementById('player-msg').textContent",
        ])
        .output()
        .expect("run browser.py");
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "browser.py said ({e}): {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert_eq!(
        report["ok"], true,
        "Chromium did not play the clip: {report}"
    );
    assert_eq!(
        report["evals"][0],
        serde_json::json!([640, 272]),
        "{report}"
    );
    assert_eq!(report["evals"][1], "", "{report}");
    assert!(
        report["exceptions"].as_array().unwrap().is_empty(),
        "{report}"
    );
    assert_eq!(v.stop(), 0);
}
