//! RTSP cameras against real servers: the GStreamer RTSP server (through a
//! proxy that cuts the connection on demand), with and without credentials,
//! and servers that answer garbage.

use std::time::Duration;
use vigil_system_tests::media::TempDir;
use vigil_system_tests::peers::Peer;
use vigil_system_tests::process::{cached, Vigil};
use vigil_system_tests::proxy::CuttingProxy;

fn config(dir: &TempDir, cameras: &str) -> String {
    let p = dir.join("vigil.toml");
    let model = cached("models/ssd_mobilenet_v2_coco.pb")
        .display()
        .to_string();
    std::fs::write(&p, format!("[detector]\nmodel = {model:?}\n{cameras}")).unwrap();
    p.display().to_string()
}

/// The seed's second leak was a C network init on every reconnect. Here 200
/// forced disconnects must leave the thread count unchanged and RSS within 1 MiB.
#[test]
fn two_hundred_forced_disconnects_leave_threads_and_memory_flat() {
    let server = Peer::rtsp_server(&["--mode", "h264-test", "--width", "320", "--height", "240"]);
    let proxy = CuttingProxy::start(server.socket_addr());
    let url = format!("rtsp://{}/test", proxy.addr());
    let dir = TempDir::new("reconnect");
    let cfg = config(
        &dir,
        &format!(
            "[[camera]]\nname = \"cam\"\nurl = {url:?}\ndetect_fps = 2\nmax_resolution = \"640x480\"\n\
             reconnect_min = \"10ms\"\nreconnect_max = \"50ms\"\nstall_timeout = \"5s\"\n"
        ),
    );
    let v = Vigil::start(&["run", "--config", &cfg, "--status-every", "1"]);
    for n in 1..=20 {
        proxy.cut_when_flowing(n);
    }
    // Warm: the decoder, pools and retina's buffers have reached their size.
    let warm = v.sample();
    let warm_threads = v.thread_names();
    for n in 21..=220 {
        proxy.cut_when_flowing(n);
        if n % 50 == 0 {
            assert_eq!(
                v.thread_names(),
                warm_threads,
                "threads changed by reconnect {n}"
            );
        }
    }
    assert!(proxy.wait_flowing(221, 20_000, Duration::from_secs(30)));
    std::thread::sleep(Duration::from_secs(2));
    let end = v.sample();
    let st = v.wait_status("cam", Duration::from_secs(5), |s| {
        s.num("reconnects") >= 220.0
    });
    assert_eq!(st.get("state"), "streaming");
    assert_eq!(end.threads, warm.threads);
    let growth = end.rss_bytes as i64 - warm.rss_bytes as i64;
    eprintln!(
        "200 reconnects: RSS {} -> {} ({growth:+} bytes), fds {} -> {}, threads {}",
        warm.rss_bytes, end.rss_bytes, warm.open_fds, end.open_fds, end.threads
    );
    assert!(
        growth < 1 << 20,
        "RSS grew {growth} bytes over 200 reconnects"
    );
    assert!(
        end.open_fds <= warm.open_fds + 2,
        "fds {} -> {}",
        warm.open_fds,
        end.open_fds
    );
    assert_eq!(v.stop(), 0);
}

#[test]
fn credentials_are_sent_and_a_wrong_password_is_a_clear_state() {
    let server = Peer::rtsp_server(&[
        "--mode",
        "h264-test",
        "--width",
        "320",
        "--height",
        "240",
        "--user",
        "admin",
        "--password",
        "s3cret",
    ]);
    let dir = TempDir::new("auth");
    let cfg = config(
        &dir,
        &format!(
            "[[camera]]\nname = \"ok\"\nurl = {:?}\nusername = \"admin\"\npassword = \"s3cret\"\n\
             [[camera]]\nname = \"wrong\"\nurl = {:?}\nusername = \"admin\"\npassword = \"guess\"\nreconnect_min = \"100ms\"\nreconnect_max = \"200ms\"\n",
            server.url, server.url
        ),
    );
    let v = Vigil::start(&["run", "--config", &cfg, "--status-every", "1"]);
    v.wait_status("ok", Duration::from_secs(30), |s| {
        s.get("state") == "streaming" && s.num("decoded") > 25.0
    });
    v.wait_for_line(Duration::from_secs(30), |l| {
        l.contains("camera wrong") && l.contains("401")
    });
    let st = v.wait_status("wrong", Duration::from_secs(10), |s| {
        s.num("reconnects") >= 2.0
    });
    assert_eq!(st.get("state"), "connecting");
    assert_eq!(v.stop(), 0);
}

#[test]
fn servers_answering_garbage_leave_the_other_cameras_running() {
    let clip = cached("media/bikes.mp4");
    let kinds = ["junk", "bad-status", "truncated-sdp", "hang"];
    let servers: Vec<Peer> = kinds.iter().map(|k| Peer::garbage_server(k)).collect();
    let dir = TempDir::new("garbage");
    let mut cams = format!(
        "[[camera]]\nname = \"good\"\nurl = {:?}\nmax_resolution = \"640x480\"\n",
        clip.display().to_string()
    );
    for (k, s) in kinds.iter().zip(&servers) {
        cams.push_str(&format!(
            "[[camera]]\nname = \"{}\"\nurl = {:?}\nmax_resolution = \"640x480\"\nreconnect_min = \"100ms\"\nreconnect_max = \"300ms\"\nstall_timeout = \"2s\"\n",
            k.replace('-', "_"),
            s.url
        ));
    }
    let cfg = config(&dir, &cams);
    let v = Vigil::start(&["run", "--config", &cfg, "--status-every", "1"]);
    for k in kinds {
        let name = k.replace('-', "_");
        let st = v.wait_status(&name, Duration::from_secs(60), |s| {
            s.num("reconnects") >= 2.0
        });
        assert_eq!(st.get("state"), "connecting", "{name}: {st:?}");
    }
    let threads = v.sample().threads;
    let a = v.wait_status("good", Duration::from_secs(10), |_| true);
    let b = v.wait_status("good", Duration::from_secs(30), |s| {
        s.num("decoded") > a.num("decoded") + 50.0
    });
    assert_eq!(b.get("state"), "streaming");
    assert_eq!(v.sample().threads, threads);
    assert!(v.lines_matching(|l| l.contains("panicked")).is_empty());
    assert_eq!(v.stop(), 0);
}
