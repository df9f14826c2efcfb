//! External peers the system tests talk to: the GStreamer RTSP server and a
//! server that answers RTSP with garbage (both in `tests/support/`).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A helper server process; killed on drop.
pub struct Peer {
    child: Child,
    /// The `rtsp://127.0.0.1:PORT/test` URL it printed.
    pub url: String,
}

impl Peer {
    /// Runs `program script args...` and waits (30 s) for its READY line.
    fn start(program: &str, script: &str, args: &[&str]) -> Peer {
        let path = crate::process::root().join("tests/support").join(script);
        let mut child = Command::new(program)
            .arg(&path)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run {program} {}: {e} (run `make deps`)",
                    path.display()
                )
            });
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(url) = line.strip_prefix("READY ") {
                    let _ = tx.send(url.to_owned());
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(url) = rx.recv_timeout(Duration::from_millis(100)) {
                return Peer { child, url };
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!("{script} exited with {status} before it was ready");
            }
            assert!(Instant::now() < deadline, "{script} not ready within 30 s");
        }
    }

    /// The GStreamer RTSP server (`rtsp_server.py`), e.g. `["--mode", "h264-test"]`.
    pub fn rtsp_server(args: &[&str]) -> Peer {
        Peer::start(
            "/usr/bin/python3",
            "rtsp_server.py",
            &[&["--port", "0"], args].concat(),
        )
    }

    /// The garbage server (`garbage_rtsp_server.py --kind KIND`).
    pub fn garbage_server(kind: &str) -> Peer {
        Peer::start(
            "python3",
            "garbage_rtsp_server.py",
            &["--port", "0", "--kind", kind],
        )
    }

    /// host:port of the URL.
    pub fn socket_addr(&self) -> std::net::SocketAddr {
        let rest = self.url.trim_start_matches("rtsp://");
        let hostport = rest.split('/').next().unwrap();
        hostport.parse().expect("ip:port in READY url")
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
