//! A real MQTT broker for the delivery tests: Debian's `mosquitto` on a free
//! port of 127.0.0.1, and `mosquitto_sub` collecting what is published.
//!
//! The broker keeps its state in a file (`persistence true`) and the
//! subscriber uses a persistent session (`-c` with a fixed client id), so a
//! broker stopped with SIGTERM and started again on the same port still
//! holds the subscription and queues what is published before the
//! subscriber is back: a test can take the broker away and count every
//! message afterwards.

use std::io::{BufRead, BufReader};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A free TCP port on 127.0.0.1 (bound, read, released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// A running mosquitto; killed when dropped.
pub struct Broker {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
}

impl Broker {
    /// Starts a broker on a free port with its files in `dir`.
    pub fn start(dir: &Path) -> Broker {
        Broker::start_on(dir, free_port())
    }

    /// Starts a broker on `port` with its files in `dir` (which must exist).
    pub fn start_on(dir: &Path, port: u16) -> Broker {
        let mut b = Broker {
            child: None,
            port,
            dir: dir.to_path_buf(),
        };
        b.launch();
        b
    }

    fn conf_path(&self) -> PathBuf {
        self.dir.join("mosquitto.conf")
    }

    /// The broker's log file.
    pub fn log_path(&self) -> PathBuf {
        self.dir.join("mosquitto.log")
    }

    fn launch(&mut self) {
        // SAFETY: geteuid has no preconditions.
        let root = unsafe { libc::geteuid() } == 0;
        let conf = format!(
            "listener {port} 127.0.0.1\n\
             allow_anonymous true\n\
             persistence true\n\
             persistence_location {dir}/\n\
             autosave_interval 1\n\
             max_queued_messages 100000\n\
             max_inflight_messages 20\n\
             log_dest file {log}\n\
             log_type all\n\
             {user}",
            port = self.port,
            dir = self.dir.display(),
            log = self.log_path().display(),
            // As root mosquitto would switch to the `mosquitto` user, who
            // cannot write the test's directory.
            user = if root { "user root\n" } else { "" },
        );
        std::fs::write(self.conf_path(), conf).expect("write mosquitto.conf");
        let child = Command::new("mosquitto")
            .arg("-c")
            .arg(self.conf_path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("mosquitto missing: apt-get install mosquitto mosquitto-clients");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            if let Some(c) = self.child.as_mut() {
                if let Ok(Some(status)) = c.try_wait() {
                    panic!(
                        "mosquitto exited ({status}) on port {}; log:\n{}",
                        self.port,
                        self.log()
                    );
                }
            }
            assert!(
                Instant::now() < deadline,
                "mosquitto did not listen on {} within 15 s; log:\n{}",
                self.port,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `mqtt://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }

    /// Whether the broker process is running.
    pub fn running(&self) -> bool {
        self.child.is_some()
    }

    /// Stops it with SIGTERM (it saves its state) and waits for the exit.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: plain kill(2) on our own child.
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same port with the saved state.
    pub fn restart(&mut self) {
        self.stop();
        self.launch();
    }

    /// The broker's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Waits until a log line satisfies `pred`; false after `timeout`.
    pub fn wait_log(&self, timeout: Duration, pred: impl Fn(&str) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.log().lines().any(&pred) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// One message as `mosquitto_sub` printed it.
#[derive(Clone, Debug)]
pub struct Message {
    /// The topic.
    pub topic: String,
    /// The payload bytes.
    pub payload: Vec<u8>,
    /// Order of arrival (0-based).
    pub seq: usize,
}

impl Message {
    /// The payload as JSON, when it is.
    pub fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(&self.payload).ok()
    }
}

/// `mosquitto_sub` with a persistent session, restarted whenever it exits
/// (the broker went away) until dropped.
pub struct Subscriber {
    messages: Arc<Mutex<Vec<Message>>>,
    child: Arc<Mutex<Option<Child>>>,
    stop: Arc<AtomicBool>,
    supervisor: Option<std::thread::JoinHandle<()>>,
    /// Times the subscriber process was started.
    starts: Arc<Mutex<usize>>,
}

impl Subscriber {
    /// Subscribes to `topic` at QoS 1 as `client_id` on the broker at
    /// 127.0.0.1:`port`, and waits until the broker logged the
    /// subscription.
    pub fn start(broker: &Broker, topic: &str, client_id: &str) -> Subscriber {
        let messages = Arc::new(Mutex::new(Vec::new()));
        let child: Arc<Mutex<Option<Child>>> = Arc::new(Mutex::new(None));
        let stop = Arc::new(AtomicBool::new(false));
        let starts = Arc::new(Mutex::new(0));
        let args: Vec<String> = [
            "-h",
            "127.0.0.1",
            "-p",
            &broker.port().to_string(),
            "-t",
            topic,
            "-q",
            "1",
            "-c",
            "-i",
            client_id,
            "-k",
            "5",
            // Topic, then the payload in hex: binary payloads (JPEGs) stay
            // on one line.
            "-F",
            "%t %x",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let supervisor = {
            let (messages, child, stop, starts) = (
                messages.clone(),
                child.clone(),
                stop.clone(),
                starts.clone(),
            );
            std::thread::Builder::new()
                .name("mosquitto-sub".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        let mut c = match Command::new("mosquitto_sub")
                            .args(&args)
                            .stdin(Stdio::null())
                            .stdout(Stdio::piped())
                            .stderr(Stdio::null())
                            .spawn()
                        {
                            Ok(c) => c,
                            Err(e) => panic!(
                                "mosquitto_sub missing ({e}): apt-get install mosquitto-clients"
                            ),
                        };
                        *starts.lock().unwrap() += 1;
                        let out = c.stdout.take().expect("stdout");
                        {
                            let mut slot = child.lock().unwrap();
                            // Dropped meanwhile: the drop may have looked already.
                            if stop.load(Ordering::Relaxed) {
                                let _ = c.kill();
                            }
                            *slot = Some(c);
                        }
                        for line in BufReader::new(out).lines() {
                            let Ok(line) = line else { break };
                            let (topic, hex) = line.rsplit_once(' ').unwrap_or((&line, ""));
                            let mut m = messages.lock().unwrap();
                            let seq = m.len();
                            m.push(Message {
                                topic: topic.to_owned(),
                                payload: unhex(hex),
                                seq,
                            });
                        }
                        if let Some(mut c) = child.lock().unwrap().take() {
                            let _ = c.kill();
                            let _ = c.wait();
                        }
                        std::thread::sleep(Duration::from_millis(200));
                    }
                })
                .expect("spawn subscriber thread")
        };
        let s = Subscriber {
            messages,
            child,
            stop,
            supervisor: Some(supervisor),
            starts,
        };
        let needle = format!("{client_id} 1 {topic}");
        assert!(
            broker.wait_log(Duration::from_secs(15), |l| l.contains(&needle)),
            "mosquitto_sub did not subscribe within 15 s; broker log:\n{}",
            broker.log()
        );
        s
    }

    /// Every message so far, in arrival order.
    pub fn messages(&self) -> Vec<Message> {
        self.messages.lock().unwrap().clone()
    }

    /// How many messages arrived.
    pub fn count(&self) -> usize {
        self.messages.lock().unwrap().len()
    }

    /// How many times `mosquitto_sub` was started.
    pub fn starts(&self) -> usize {
        *self.starts.lock().unwrap()
    }

    /// Waits until `pred` holds over the messages; false after `timeout`.
    pub fn wait(&self, timeout: Duration, pred: impl Fn(&[Message]) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if pred(&self.messages.lock().unwrap()) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(c) = self.child.lock().unwrap().as_mut() {
            let _ = c.kill();
        }
        if let Some(t) = self.supervisor.take() {
            let _ = t.join();
        }
    }
}

fn unhex(s: &str) -> Vec<u8> {
    let b = s.trim().as_bytes();
    let v = |c: u8| match c {
        b'0'..=b'9' => c - b'0',
        b'a'..=b'f' => c - b'a' + 10,
        b'A'..=b'F' => c - b'A' + 10,
        _ => 0,
    };
    b.chunks(2)
        .filter(|p| p.len() == 2)
        .map(|p| (v(p[0]) << 4) | v(p[1]))
        .collect()
}
