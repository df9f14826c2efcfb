//! `vigil check-config` and `vigil run` on good and bad configuration files:
//! every mistake is reported with the file, line and key, and the memory
//! budget is printed and enforced.

use vigil_system_tests::config::{Camera, Config};
use vigil_system_tests::media::TempDir;
use vigil_system_tests::process::run_to_end;

#[test]
fn check_config_prints_the_budget_by_component() {
    let dir = TempDir::new("cfg");
    let f = Config::new()
        .ssd_model()
        .camera(Camera::url("rtsp://127.0.0.1/a"))
        .camera(Camera::named("yard", "clip.mp4").frame_pool(6))
        .write_as(&dir.join("ok.toml"));
    let f = f.to_str().unwrap();
    let (code, out, err) = run_to_end(&["check-config", f]);
    assert_eq!(code, 0, "{out}\n{err}");
    for component in [
        "frame pools",
        "packet buffers",
        "decoders",
        "tensors",
        "model",
        "queues",
        "fixed overhead",
        "total",
        "limit",
    ] {
        assert!(out.contains(component), "missing {component} in:\n{out}");
    }
    assert!(out.contains("yard: 6 x 1920x1080"), "{out}");
    // The machine-readable line the board's supervisor reads.
    let line = out
        .lines()
        .find(|l| l.starts_with("budget_bytes="))
        .expect("a budget_bytes line");
    let budget: u64 = line["budget_bytes=".len()..]
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(budget > 100 << 20 && budget < 512 << 20, "{line}");
    assert!(
        line.ends_with(&format!("limit_bytes={}", 512u64 << 20)),
        "{line}"
    );
}

#[test]
fn check_config_and_run_refuse_a_budget_over_the_limit() {
    let dir = TempDir::new("cfg");
    let f = Config::new()
        .set("memory_limit", "200MiB")
        .ssd_model()
        .camera(
            Camera::url("a.h264")
                .frame_pool(64)
                .max_resolution("3840x2160"),
        )
        .write_as(&dir.join("big.toml"));
    let f = f.to_str().unwrap();
    let (code, out, err) = run_to_end(&["check-config", f]);
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(out.contains("OVER THE LIMIT"), "{out}");
    assert!(err.contains("exceeds memory_limit"), "{err}");
    let (code, _, err) = run_to_end(&["run", "--config", f]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("memory budget"),
        "budget printed at start: {err}"
    );
    assert!(err.contains("refusing to start"), "{err}");
}

#[test]
fn every_kind_of_mistake_names_the_key_and_the_line() {
    let dir = TempDir::new("cfg");
    let cases: &[(&str, &str, &str)] = &[
        ("[[camera]]\nurl = \"a.h264\"\nfsp = 5\n", "t.toml:3:", "unknown field `fsp`"),
        ("listen = \"8080\"\n", "t.toml:1:", "`listen`"),
        ("memory_limit = \"lots\"\n", "t.toml:1:", "`memory_limit`"),
        ("[[camera]]\nurl = \"a.h264\"\ndetect_fps = 1000\n", "t.toml:3:", "`camera[0].detect_fps`"),
        ("[[camera]]\nurl = \"a.h264\"\nmin_score = -1\n", "t.toml:3:", "`camera[0].min_score`"),
        ("[[camera]]\nurl = \"a.h264\"\nclasses = [\"dragon\"]\n", "t.toml:3:", "unknown class `dragon`"),
        ("[[camera]]\nurl = \"a.h264\"\ncodec = \"mjpeg\"\n", "t.toml:3:", "`camera[0].codec`"),
        ("[[camera]]\nurl = \"http://x/y\"\n", "t.toml:2:", "`camera[0].url`"),
        ("[[camera]]\nname = \"a\"\nurl = \"a.h264\"\n[[camera]]\nname = \"a\"\nurl = \"b.h264\"\n", "t.toml:5:", "duplicate camera name"),
        ("[[camera]]\nurl = \"a.h264\"\nframe_pool = \"four\"\n", "t.toml:3:", "`camera[0].frame_pool`"),
        ("[[camera]]\nurl = \"a.h264\"\nstall_timeout = \"10\"\n", "t.toml:3:", "needs a unit"),
        ("[[camera]]\nurl = \"a.h264\"\nmax_resolution = \"big\"\n", "t.toml:3:", "`camera[0].max_resolution`"),
        ("[detector]\nkind = \"yolo9000\"\n", "t.toml:2:", "`detector.kind`"),
        ("[detector]\nworkers = 0\n", "t.toml:2:", "`detector.workers`"),
        ("[events]\nring_capacity = -5\n", "t.toml:2:", "`events.ring_capacity`"),
        ("[[camera]]\nurl = \"a.h264\n", "t.toml:2:", ""),
        ("[cameras]\nurl = \"a.h264\"\n", "t.toml:1:", "unknown field `cameras`"),
        ("[[camera]]\nname = \"front door\"\nurl = \"a.h264\"\n", "t.toml:2:", "`camera[0].name`"),
    ];
    for (text, location, key) in cases {
        // The broken text as written: the test is about its line numbers.
        let f = dir.write("t.toml", text);
        let (code, out, err) = run_to_end(&["check-config", f.to_str().unwrap()]);
        assert_eq!(code, 2, "config {text:?}: {out}\n{err}");
        assert!(
            err.contains(location) && err.contains(key),
            "config {text:?} expected {location} {key}, got:\n{err}"
        );
        assert!(!err.contains("panicked"), "{err}");
    }
}

#[test]
fn usage_errors_are_explained() {
    for (args, needle) in [
        (vec!["run"], "no cameras"),
        (vec!["run", "--camera"], "needs a value"),
        (vec!["run", "--camera", "a.avi"], "`camera[0].url`"),
        (vec!["check-config"], "one FILE"),
        (vec!["check-config", "/nonexistent.toml"], "cannot read"),
        (vec!["launch"], "unknown command"),
    ] {
        let (code, out, err) = run_to_end(&args);
        assert_eq!(code, 2, "{args:?}: {out}{err}");
        assert!(err.contains(needle), "{args:?}: {err}");
    }
}

#[test]
fn a_missing_model_is_named() {
    let (code, _, err) = run_to_end(&[
        "run",
        "--camera",
        "a.h264",
        "--model",
        "/nonexistent/model.pb",
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("/nonexistent/model.pb") && err.contains("make model"),
        "{err}"
    );
}
