//! A V4L2 camera on this machine, whose kernel has no V4L2: the device is
//! absent, which is also what an unplugged USB camera looks like. The camera
//! must show as a V4L2 one everywhere (API, metrics, check-config), say why
//! it is not streaming, retry without new threads, and leave the other
//! cameras alone. Capture itself is tested on a real V4L2 driver in the
//! emulated board (`make test-v4l`, app/tests/v4l_vivid.rs).

use std::time::Duration;
use vigil_system_tests::api::{metrics, wait_until};
use vigil_system_tests::config::{sample_clip, Camera, Config};
use vigil_system_tests::http::{get, session};
use vigil_system_tests::media::TempDir;
use vigil_system_tests::process::{promtool_check, root, run_to_end, Vigil};

const DEVICE: &str = "/dev/vigil-test-video9";

#[test]
fn an_absent_v4l2_camera_is_shown_retried_and_isolated() {
    let dir = TempDir::new("v4l2-absent");
    let cfg = Config::new()
        .listen_anywhere()
        .camera(Camera::named("street", sample_clip()))
        .camera(
            Camera::v4l2("usb", DEVICE)
                .set("format", "yuyv")
                .set("size", "640x480")
                .set("fps", 25)
                .set("buffers", 3)
                .max_resolution("640x480")
                .reconnect("100ms", "200ms"),
        )
        .write(&dir);

    let (code, out, err) = run_to_end(&["check-config", cfg.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    let line = out
        .lines()
        .find(|l| l.starts_with("camera usb:"))
        .unwrap_or_else(|| panic!("no line for camera usb in:\n{out}"));
    assert!(
        line.contains(&format!(
            "v4l2 {DEVICE}, asks yuyv 640x480 at 25 fps, 3 buffers"
        )) && line.contains("not checked")
            && line.contains("No such file"),
        "{line}"
    );
    // 3 buffers of 640x480 YUYV (600 KiB each) in the budget.
    let budget = out
        .lines()
        .find(|l| l.trim_start().starts_with("v4l2 buffers"))
        .unwrap_or_else(|| panic!("no v4l2 line in the budget:\n{out}"));
    assert!(
        budget.contains("1.8 MiB") && budget.contains("usb: 3 x 600.0 KiB"),
        "{budget}"
    );

    let (v, addr) = Vigil::serve(&cfg, &dir.join("data"));
    let mut cams = serde_json::Value::Null;
    assert!(
        wait_until(Duration::from_secs(30), || {
            cams = get(addr, "/api/cameras").json();
            cams[0]["state"] == "streaming"
                && cams[1]["reason"].as_str().is_some_and(|r| !r.is_empty())
        }),
        "{cams}"
    );
    let usb = &cams[1];
    assert_eq!(usb["url"], format!("v4l://{DEVICE}"));
    assert_eq!(usb["state"], "connecting", "{usb}");
    let reason = usb["reason"].as_str().unwrap();
    assert!(
        reason.contains(DEVICE) && reason.contains("No such file"),
        "{reason}"
    );
    assert_eq!(usb["v4l2"]["device"], DEVICE, "{usb}");
    assert!(usb["v4l2"].get("format").is_none(), "never opened: {usb}");
    // Raw pictures have no clips; the file camera records.
    assert_eq!(usb["recording"]["state"], "off", "{usb}");
    assert_ne!(cams[0]["recording"]["state"], "off");
    assert!(cams[0].get("v4l2").is_none());

    // Retries (every 100-200 ms) start no thread.
    let threads = |v: &Vigil| v.sample().threads;
    let before = threads(&v);
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        threads(&v),
        before,
        "threads moved while the device was retried"
    );
    assert_eq!(get(addr, "/api/cameras").json()[1]["state"], "connecting");

    let m = metrics(addr);
    let text = m.text();
    for needle in [
        format!("vigil_v4l2_mode{{camera=\"usb\",device=\"{DEVICE}\",format=\"\",width=\"0\",height=\"0\"}} 1"),
        "vigil_v4l2_driver_dropped_total{camera=\"usb\"} 0".to_string(),
        "vigil_camera_state{camera=\"usb\",state=\"connecting\"} 1".to_string(),
    ] {
        assert!(text.contains(&needle), "missing `{needle}` in:\n{text}");
    }
    assert!(!text.contains("vigil_v4l2_mode{camera=\"street\""));
    if let Err(e) = promtool_check(text) {
        panic!("{e}");
    }

    // The status page's card for the camera.
    let card = ".camera[data-camera=\"usb\"]";
    let out = std::process::Command::new("/usr/bin/python3")
        .arg(root().join("tests/support/browser.py"))
        .args(["--cookie", &session(addr).expect("session")])
        .args(["--url", &format!("http://{addr}/"), "--timeout", "30"])
        .args([
            "--until",
            &format!("document.querySelector('{card} .state')?.textContent === 'connecting'"),
        ])
        .args([
            "--eval",
            &format!("document.querySelector('{card} dd').textContent"),
        ])
        .args([
            "--eval",
            &format!("document.querySelector('{card} dd').title"),
        ])
        .args([
            "--eval",
            &format!("document.querySelector('{card} .url').textContent"),
        ])
        .args([
            "--eval",
            &format!("document.querySelector('{card} .reason').textContent"),
        ])
        .output()
        .expect("run browser.py");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "browser.py ({e}): {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(report["evals"][0], "v4l2, not open", "{report}");
    assert_eq!(
        report["evals"][1],
        format!("{DEVICE}: not opened yet"),
        "{report}"
    );
    assert_eq!(report["evals"][2], format!("v4l://{DEVICE}"), "{report}");
    assert!(
        report["evals"][3]
            .as_str()
            .unwrap_or("")
            .contains("No such file"),
        "{report}"
    );
    assert!(
        report["exceptions"].as_array().unwrap().is_empty(),
        "{report}"
    );

    assert!(v.lines_matching(|l| l.contains("panicked")).is_empty());
    assert_eq!(v.stop(), 0);
}
