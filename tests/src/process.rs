//! Running the vigil binary and watching it.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};
pub use vigil::procstat::ProcSample;

/// The workspace root (the tests crate lives in `tests/`).
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The release binary built by `make test` (or `VIGIL_BIN`).
pub fn binary() -> PathBuf {
    if let Some(p) = std::env::var_os("VIGIL_BIN") {
        return p.into();
    }
    let p = root().join("target/release/vigil");
    assert!(
        p.exists(),
        "{} missing: run `make test` (it builds the binary first)",
        p.display()
    );
    p
}

/// The cache where `make model` and `make sample` put their files.
pub fn cache_dir() -> PathBuf {
    std::env::var_os("VIGIL_CACHE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var("HOME").expect("HOME")).join(".cache/vigil"))
}

/// A cached file that `make` fetches; fails the test when absent.
pub fn cached(rel: &str) -> PathBuf {
    let p = cache_dir().join(rel);
    assert!(
        p.exists(),
        "{} missing: run `make model sample`",
        p.display()
    );
    p
}

/// Runs `vigil ARGS` to completion: (exit code, stdout, stderr).
pub fn run_to_end(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(binary())
        .args(args)
        .output()
        .expect("spawn vigil");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Most log lines kept per process; older ones are dropped (tests look at
/// recent lines and counts, and a long soak must not grow the test).
const KEEP_LINES: usize = 20_000;

#[derive(Default)]
struct Log {
    lines: std::collections::VecDeque<String>,
    total: usize,
    closed: bool,
}

/// A running vigil with its stderr followed.
pub struct Vigil {
    child: Child,
    log: Arc<(Mutex<Log>, Condvar)>,
    /// Its data directory when the test did not choose one (removed at drop).
    _data_dir: Option<crate::media::TempDir>,
    /// Where its data is (`--data-dir`), to read the setup code from.
    data_path: Option<PathBuf>,
}

impl Vigil {
    /// Starts `vigil ARGS` with `VIGIL_LOG=info` (or the given level).
    pub fn start(args: &[&str]) -> Vigil {
        Vigil::start_with_env(args, &[])
    }

    /// Starts `vigil run` on the config file `cfg` with its data in `data`
    /// and no periodic status lines.
    pub fn run(cfg: &Path, data: &Path) -> Vigil {
        Vigil::start(&[
            "run",
            "--config",
            cfg.to_str().expect("utf-8 config path"),
            "--data-dir",
            data.to_str().expect("utf-8 data path"),
            "--status-every",
            "0",
        ])
    }

    /// [`Vigil::run`], then waits for the web interface and claims it
    /// ([`Vigil::web_addr`]): the harness's usual start for a test that
    /// talks HTTP to vigil.
    pub fn serve(cfg: &Path, data: &Path) -> (Vigil, std::net::SocketAddr) {
        let v = Vigil::run(cfg, data);
        let addr = v.web_addr();
        (v, addr)
    }

    /// [`Vigil::run`] and the web address, left unclaimed (no admin
    /// password set, no session): for tests of the setup and login.
    pub fn serve_unclaimed(cfg: &Path, data: &Path) -> (Vigil, std::net::SocketAddr) {
        let v = Vigil::run(cfg, data);
        let addr = v.web_addr_unclaimed();
        (v, addr)
    }

    /// Starts `vigil run` on the config file `cfg` with a `status camera=...`
    /// line per camera every second (read with [`Vigil::wait_status`]), a
    /// fresh data directory and an ephemeral port.
    pub fn run_with_status(cfg: &Path) -> Vigil {
        Vigil::start(&[
            "run",
            "--config",
            cfg.to_str().expect("utf-8 config path"),
            "--status-every",
            "1",
        ])
    }

    /// Starts with extra environment variables. A `run` without `--listen`
    /// gets an ephemeral port (see [`Vigil::web_addr`]) and one without
    /// `--data-dir` a fresh temporary directory, so tests never share a port
    /// or an admin password with each other or with a `make run`.
    pub fn start_with_env(args: &[&str], env: &[(&str, &str)]) -> Vigil {
        let mut cmd = Command::new(binary());
        cmd.args(args);
        let mut data_dir = None;
        let mut data_path = args
            .iter()
            .position(|a| *a == "--data-dir")
            .and_then(|i| args.get(i + 1))
            .map(PathBuf::from);
        if args.first() == Some(&"run") {
            if !args.contains(&"--listen") {
                cmd.args(["--listen", "127.0.0.1:0"]);
            }
            if !args.contains(&"--data-dir") {
                let d = crate::media::TempDir::new("data");
                cmd.arg("--data-dir").arg(&d.0);
                data_path = Some(d.0.clone());
                data_dir = Some(d);
            }
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .env("VIGIL_LOG", "info");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn vigil");
        let stderr = child.stderr.take().expect("stderr");
        let log = Arc::new((Mutex::new(Log::default()), Condvar::new()));
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if std::env::var_os("VIGIL_TEST_ECHO").is_some() {
                    eprintln!("vigil| {line}");
                }
                let mut l = sink.0.lock().unwrap();
                if l.lines.len() == KEEP_LINES {
                    l.lines.pop_front();
                }
                l.lines.push_back(line);
                l.total += 1;
                sink.1.notify_all();
            }
            sink.0.lock().unwrap().closed = true;
            sink.1.notify_all();
        });
        Vigil {
            child,
            log,
            _data_dir: data_dir,
            data_path,
        }
    }

    /// The web interface's address, claimed for the tests: set up with the
    /// setup code (or logged in, on a restart) by [`crate::login::claim`],
    /// so every harness request to it carries the admin session.
    pub fn web_addr(&self) -> std::net::SocketAddr {
        let addr = self.web_addr_unclaimed();
        let code = self
            .data_path
            .as_deref()
            .and_then(crate::login::setup_code)
            .or_else(|| {
                // Not readable from here (a tmpfs in vigil's own mount
                // namespace): the log says it too.
                self.lines_matching(|l| l.contains("the setup code "))
                    .iter()
                    .find_map(|l| crate::login::code_in_log_line(l))
            });
        crate::login::claim_with_code(addr, code);
        addr
    }

    /// The data directory (`--data-dir`, or the one the harness made).
    pub fn data_dir(&self) -> Option<&Path> {
        self.data_path.as_deref()
    }

    /// The web interface's address, from the start-up log line.
    pub fn web_addr_unclaimed(&self) -> std::net::SocketAddr {
        let line = self.wait_for_line(Duration::from_secs(60), |l| {
            l.contains("web interface on http://")
        });
        let rest = line.split("http://").nth(1).expect("address");
        let addr = rest.split('/').next().expect("address");
        addr.parse().expect("socket address")
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits until a log line satisfies `pred` (searching kept lines too);
    /// returns it, or panics after `timeout` with the log tail.
    pub fn wait_for_line(&self, timeout: Duration, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + timeout;
        let (lock, cv) = &*self.log;
        let mut l = lock.lock().unwrap();
        loop {
            if let Some(line) = l.lines.iter().rev().find(|s| pred(s)) {
                return line.clone();
            }
            let now = Instant::now();
            if now >= deadline || l.closed {
                let tail: Vec<&String> = l.lines.iter().rev().take(40).collect();
                panic!(
                    "no matching log line within {timeout:?} (process {}); last lines:\n{}",
                    if l.closed { "exited" } else { "running" },
                    tail.into_iter()
                        .rev()
                        .cloned()
                        .collect::<Vec<_>>()
                        .join("\n")
                );
            }
            l = cv.wait_timeout(l, deadline - now).unwrap().0;
        }
    }

    /// Lines kept so far that satisfy `pred`.
    pub fn lines_matching(&self, pred: impl Fn(&str) -> bool) -> Vec<String> {
        let l = self.log.0.lock().unwrap();
        l.lines.iter().filter(|s| pred(s)).cloned().collect()
    }

    /// Forgets the kept lines (so the next wait sees only new ones).
    pub fn clear_log(&self) {
        self.log.0.lock().unwrap().lines.clear();
    }

    /// The latest `status camera=NAME` line parsed into key=value pairs.
    pub fn wait_status(
        &self,
        camera: &str,
        timeout: Duration,
        pred: impl Fn(&Status) -> bool,
    ) -> Status {
        let tag = format!("status camera={camera} ");
        let line = self.wait_for_line(timeout, |l| l.contains(&tag) && pred(&Status::parse(l)));
        Status::parse(&line)
    }

    /// /proc figures of the process.
    pub fn sample(&self) -> ProcSample {
        ProcSample::read_pid(&self.pid().to_string()).expect("read /proc of vigil")
    }

    /// Names of the process's threads, sorted.
    ///
    /// A new thread carries its creator's name ("vigil") until it names
    /// itself, which happens inside the thread, so right after start a
    /// loaded machine can show a decoder as "vigil". This waits (up to 10 s)
    /// until only the main thread is called "vigil"; a thread that never
    /// names itself still shows, and fails the caller's comparison.
    pub fn thread_names(&self) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let names = self.thread_names_now();
            let unnamed = names.iter().filter(|n| *n == "vigil").count();
            if unnamed <= 1 || Instant::now() >= deadline {
                return names;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn thread_names_now(&self) -> Vec<String> {
        let dir = format!("/proc/{}/task", self.pid());
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .expect("task dir")
            .filter_map(|e| e.ok())
            .filter_map(|e| std::fs::read_to_string(e.path().join("comm")).ok())
            .map(|s| s.trim().to_owned())
            .collect();
        names.sort();
        names
    }

    /// Sends SIGTERM and waits for the exit code (panics after 20 s).
    pub fn stop(mut self) -> i32 {
        // SAFETY: plain kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status.code().unwrap_or(-1);
            }
            assert!(
                Instant::now() < deadline,
                "vigil did not stop within 20 s of SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits for the process to exit by itself.
    pub fn wait_exit(mut self, timeout: Duration) -> i32 {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status.code().unwrap_or(-1);
            }
            assert!(
                Instant::now() < deadline,
                "vigil did not exit within {timeout:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Vigil {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The key=value fields of a status line.
#[derive(Clone, Debug, Default)]
pub struct Status(pub Vec<(String, String)>);

impl Status {
    /// Parses `... status k=v k=v ...`.
    pub fn parse(line: &str) -> Status {
        let rest = line.split_once(" status ").map_or(line, |(_, r)| r);
        Status(
            rest.split_whitespace()
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
        )
    }

    /// A field as text.
    pub fn get(&self, key: &str) -> &str {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map_or("", |(_, v)| v.as_str())
    }

    /// A numeric field (0 when absent).
    pub fn num(&self, key: &str) -> f64 {
        self.get(key).parse().unwrap_or(0.0)
    }
}

/// Runs `promtool check metrics` (installed by `make deps`) on a scrape;
/// the error carries promtool's complaint.
pub fn promtool_check(text: &str) -> Result<(), String> {
    use std::io::Write;
    let promtool = cache_dir().join("bin/promtool");
    let mut child = Command::new(&promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{}: {e} (run `make deps`)", promtool.display()))?;
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(text.as_bytes())
        .map_err(|e| format!("writing to promtool: {e}"))?;
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "promtool check metrics failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}
