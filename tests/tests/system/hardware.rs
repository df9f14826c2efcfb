//! The real binary on the hardware backend, with C doubles of the Rockchip
//! libraries (`app/tests/fakes/`) as `hardware.lib_dir` and stand-in device
//! nodes as `hardware.dev_dir`: MPP decoding, RGA letterboxing and RKNN
//! detection joined into the pipeline, every C pair checked by the doubles
//! when the process exits.
//!
//! This is the seed's second leak (a C library's init on every reconnect)
//! driven through vigil's own code: 500 camera reconnects and 100,000
//! decoded frames must create one decoder per camera and one NPU context per
//! worker, import each decoder buffer into RGA once, leave every pair
//! balanced at exit, and keep threads, fds and RSS flat.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use vigil_system_tests::api;
use vigil_system_tests::config::{sample_clip, Camera, Config};
use vigil_system_tests::media::TempDir;
use vigil_system_tests::peers::Peer;
use vigil_system_tests::process::{root, Vigil};
use vigil_system_tests::proxy::CuttingProxy;

/// Builds the three doubles into `dir` under the vendor libraries' names.
fn build_doubles(dir: &Path) {
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    for (src, lib) in [
        ("fake_mpp.c", "librockchip_mpp.so"),
        ("fake_rga.c", "librga.so"),
        ("fake_rknn.c", "librknnrt.so"),
    ] {
        let out = Command::new(&cc)
            .args([
                "-std=c11", "-O1", "-shared", "-fPIC", "-Wall", "-Wextra", "-Werror",
            ])
            .arg("-o")
            .arg(dir.join(lib))
            .arg(root().join("app/tests/fakes").join(src))
            .arg("-lpthread")
            .output()
            .unwrap_or_else(|e| panic!("{cc}: {e}"));
        assert!(
            out.status.success(),
            "building {src} failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// A device directory with the nodes the hardware probe looks for.
fn device_dir(dir: &Path) -> PathBuf {
    let dev = dir.join("dev");
    std::fs::create_dir_all(&dev).unwrap();
    for node in ["mpp_service", "rga", "rknpu"] {
        std::fs::write(dev.join(node), b"").unwrap();
    }
    dev
}

fn report(dir: &Path, name: &str) -> serde_json::Value {
    let path = dir.join(format!("{name}.json"));
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (the double writes it at unload)", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name} report ({e}): {text}"))
}

/// No violation, nothing live: every create/destroy, get/deinit,
/// import/release pair closed.
fn assert_balanced(name: &str, r: &serde_json::Value) {
    assert_eq!(
        r["violations"].as_array().map(Vec::len),
        Some(0),
        "{name}: {r}"
    );
    for (k, v) in r["live"].as_object().expect("live counts") {
        assert_eq!(v.as_u64(), Some(0), "{name}: live {k} at exit: {r}");
    }
}

fn calls(r: &serde_json::Value, f: &str) -> u64 {
    r["calls"][f].as_u64().unwrap_or(0)
}

#[test]
fn hardware_backend_through_the_doubles_500_reconnects_and_100k_frames() {
    let dir = TempDir::new("hw");
    let libs = dir.join("lib");
    std::fs::create_dir_all(&libs).unwrap();
    build_doubles(&libs);
    let dev = device_dir(&dir.0);
    let reports = dir.join("reports");
    std::fs::create_dir_all(&reports).unwrap();
    let model = dir.join("yolov5s.rknn");
    std::fs::write(&model, b"FAKE-RKNN yolov5\n").unwrap();

    let server = Peer::rtsp_server(&["--mode", "h264-test", "--width", "320", "--height", "240"]);
    let proxy = CuttingProxy::start(server.socket_addr());
    let url = format!("rtsp://{}/test", proxy.addr());
    let cfg = Config::new()
        .set("backend", "hardware")
        .hardware("lib_dir", &libs)
        .hardware("dev_dir", &dev)
        .hardware("decoder_buffers", 8)
        .detector("kind", "yolov5")
        .model(&model)
        .detector("workers", 2)
        .camera(
            Camera::named("rtsp", &url)
                .detect_fps(5)
                .max_resolution("640x480")
                .reconnect("10ms", "50ms")
                .stall_timeout("5s"),
        )
        .camera(
            Camera::named("file", sample_clip())
                .detect_fps(5)
                .max_resolution("640x480"),
        )
        .write(&dir);
    let reports_env = reports.display().to_string();
    let v = Vigil::start_with_env(
        &[
            "run",
            "--config",
            &cfg.display().to_string(),
            "--status-every",
            "1",
            "--unpaced",
        ],
        &[("FAKE_REPORT_DIR", reports_env.as_str())],
    );
    v.wait_for_line(Duration::from_secs(30), |l| l.contains("backend hardware"));

    // The backend is reported where operators look.
    let addr = v.web_addr();
    let status = api::status(addr);
    assert_eq!(status["backend"], "hardware", "{status}");
    assert!(
        api::metrics(addr).text().contains("backend=\"hardware\""),
        "no hardware backend in /metrics"
    );

    let started = Instant::now();
    for n in 1..=20 {
        proxy.cut_when_flowing(n);
    }
    // Warm: decoders made, groups sized, every buffer imported.
    let warm = v.sample();
    let warm_threads = v.thread_names();
    for n in 21..=520 {
        proxy.cut_when_flowing(n);
        if n % 100 == 0 {
            assert_eq!(
                v.thread_names(),
                warm_threads,
                "threads changed by reconnect {n}"
            );
        }
    }
    assert!(proxy.wait_flowing(521, 20_000, Duration::from_secs(30)));
    let st = v.wait_status("file", Duration::from_secs(300), |s| {
        s.num("decoded") >= 100_000.0
    });
    let end = v.sample();
    let rtsp = v.wait_status("rtsp", Duration::from_secs(10), |s| {
        s.num("reconnects") >= 520.0
    });
    eprintln!(
        "hardware backend: {} reconnects, {} frames decoded from the file camera in {:.0} s; \
         RSS {} -> {} ({:+} bytes), fds {} -> {}, threads {} -> {}",
        rtsp.get("reconnects"),
        st.get("decoded"),
        started.elapsed().as_secs_f64(),
        warm.rss_bytes,
        end.rss_bytes,
        end.rss_bytes as i64 - warm.rss_bytes as i64,
        warm.open_fds,
        end.open_fds,
        warm.threads,
        end.threads
    );
    assert_eq!(rtsp.get("state"), "streaming");
    assert!(st.num("detected") > 0.0 && rtsp.num("detected") > 0.0);
    assert!(
        st.num("events") >= 1.0,
        "the fake model's person is an event"
    );
    assert!(
        !v.lines_matching(|l| l.contains("saw person")).is_empty(),
        "no person event logged"
    );
    assert_eq!(end.threads, warm.threads);
    assert!(
        end.open_fds <= warm.open_fds + 2,
        "fds {} -> {}",
        warm.open_fds,
        end.open_fds
    );
    let growth = end.rss_bytes as i64 - warm.rss_bytes as i64;
    assert!(growth < 2 << 20, "RSS grew {growth} bytes");
    assert_eq!(v.stop(), 0);

    let mpp = report(&reports, "fake_mpp");
    let rga = report(&reports, "fake_rga");
    let rknn = report(&reports, "fake_rknn");
    eprintln!("fake_mpp: {mpp}\nfake_rga: {rga}\nfake_rknn: {rknn}");
    assert_balanced("mpp", &mpp);
    assert_balanced("rga", &rga);
    assert_balanced("rknn", &rknn);
    // One decoder per camera for the whole run, reset (not re-made) on
    // every reconnect.
    assert_eq!(calls(&mpp, "mpp_create"), 2, "{mpp}");
    assert_eq!(calls(&mpp, "mpp_destroy"), 2, "{mpp}");
    assert!(calls(&mpp, "reset") >= 520, "{mpp}");
    assert!(mpp["frames_out"].as_u64().unwrap() >= 100_000, "{mpp}");
    // Groups never grew past their limit: 8 buffers per camera.
    assert!(mpp["max_live"]["fds"].as_u64().unwrap() <= 16, "{mpp}");
    // One NPU context per worker, created once.
    assert_eq!(calls(&rknn, "rknn_init"), 2, "{rknn}");
    assert_eq!(calls(&rknn, "rknn_destroy"), 2, "{rknn}");
    // Each worker imports its input once and each decoder buffer once
    // (2 cameras x 8 buffers), however many frames pass.
    let imports = calls(&rga, "importbuffer_fd");
    assert!(imports <= 2 * (1 + 16), "{imports} imports: {rga}");
    assert_eq!(imports, calls(&rga, "releasebuffer_handle"), "{rga}");
}
