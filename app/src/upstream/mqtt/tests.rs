//! Tests of the MQTT upstream against a real mosquitto broker (moved out
//! of mqtt.rs, which was over 700 lines with them).

use super::*;
use crate::test_dir::TempDir;
use std::future::Future as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

const MOSQUITTO: &str = "/usr/sbin/mosquitto";
const MOSQUITTO_SUB: &str = "/usr/bin/mosquitto_sub";
const MOSQUITTO_PASSWD: &str = "/usr/bin/mosquitto_passwd";

fn require(program: &str) {
    assert!(
        Path::new(program).exists(),
        "{program} is missing: `make deps` installs mosquitto and mosquitto-clients \
         (scripts/install-deps.sh, group `upstream`)"
    );
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// A mosquitto process, killed on drop.
struct Broker {
    child: Option<Child>,
    conf: PathBuf,
    log: PathBuf,
    port: u16,
}

impl Broker {
    /// Starts mosquitto on `port` with `extra` configuration lines.
    fn start(dir: &Path, port: u16, extra: &str) -> Broker {
        require(MOSQUITTO);
        let conf = dir.join("mosquitto.conf");
        let text = format!("listener {port} 127.0.0.1\npersistence false\n{extra}\n");
        std::fs::write(&conf, text).unwrap();
        let mut broker = Broker {
            child: None,
            conf,
            log: dir.join("mosquitto.log"),
            port,
        };
        broker.restart();
        broker
    }

    /// (Re)starts the process and waits until the port accepts.
    fn restart(&mut self) {
        let log = std::fs::File::create(&self.log).unwrap();
        let child = Command::new(MOSQUITTO)
            .arg("-c")
            .arg(&self.conf)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {MOSQUITTO}: {e}"));
        self.child = Some(child);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            let exited = self.child.as_mut().unwrap().try_wait().unwrap();
            if exited.is_some() || std::time::Instant::now() > deadline {
                let log = std::fs::read_to_string(&self.log).unwrap_or_default();
                panic!(
                    "mosquitto did not start on port {}: {exited:?}\n{log}",
                    self.port
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn signal(&self, signal: libc::c_int) {
        let pid = self.child.as_ref().unwrap().id() as libc::pid_t;
        // SAFETY: kill(2) on our own child's pid; no memory is involved.
        assert_eq!(unsafe { libc::kill(pid, signal) }, 0);
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A child process killed on drop.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn settings(port: u16) -> MqttSettings {
    MqttSettings {
        host: "127.0.0.1".to_string(),
        port,
        client_id: format!("vigil-test-{port}"),
        username: None,
        password: None,
        keep_alive: Duration::from_secs(30),
        timeout: Duration::from_secs(3),
        max_payload: 4096,
    }
}

fn unavailable_text(result: Result<(), DeliveryError>) -> String {
    match result {
        Err(DeliveryError::Unavailable(text)) => text,
        other => panic!("expected Unavailable, got {other:?}"),
    }
}

/// Registers a persistent QoS 1 subscription to `vigil/#` for `id` and
/// returns once the broker acknowledged it (`-E`), so messages published
/// afterwards are queued for it and nothing is lost to a start-up race.
fn subscribe(port: u16, id: &str) {
    require(MOSQUITTO_SUB);
    let status = Command::new(MOSQUITTO_SUB)
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-i", id, "-c"])
        .args(["-t", "vigil/#", "-q", "1", "-E"])
        .status()
        .unwrap();
    assert!(status.success(), "mosquitto_sub -E: {status}");
}

/// Receives `n` messages for the session `id` as "topic payload" lines.
async fn receive(port: u16, id: &str, n: usize) -> Vec<String> {
    let child = Command::new(MOSQUITTO_SUB)
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-i", id, "-c"])
        .args(["-t", "vigil/#", "-q", "1", "-v", "-C", &n.to_string()])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut child = Reaped(child);
    let deadline = Instant::now() + Duration::from_secs(10);
    while child.0.try_wait().unwrap().is_none() {
        assert!(
            Instant::now() < deadline,
            "mosquitto_sub did not get {n} messages"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut out = String::new();
    use std::io::Read;
    child
        .0
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    out.lines().map(str::to_string).collect()
}

#[tokio::test]
async fn mqtt_publishes_in_order_and_waits_for_puback() {
    let dir = TempDir::new("order");
    let port = free_port();
    let _broker = Broker::start(&dir.0, port, "allow_anonymous true");
    subscribe(port, "vigil-sub");
    let mut sink = MqttSink::new(settings(port));
    assert_eq!(sink.describe(), format!("mqtt://127.0.0.1:{port}"));
    let mut expected = Vec::new();
    for i in 0..5 {
        let topic = format!("vigil/cam{i}/event");
        let payload = format!("{{\"n\":{i}}}");
        sink.publish(&topic, Bytes::from(payload.clone()))
            .await
            .unwrap();
        expected.push(format!("{topic} {payload}"));
        if i == 2 {
            // An idle spell on the same connection, then go on.
            sink.idle(Duration::from_millis(100)).await;
        }
    }
    // A payload of exactly max_payload fits the packet limit.
    let big = "z".repeat(4096);
    sink.publish("vigil/cam9/snapshot", Bytes::from(big.clone()))
        .await
        .unwrap();
    expected.push(format!("vigil/cam9/snapshot {big}"));
    assert_eq!(sink.connects, 1);
    sink.disconnect().await;
    assert!(sink.link.is_none());
    assert_eq!(receive(port, "vigil-sub", expected.len()).await, expected);
}

#[tokio::test]
async fn mqtt_refused_credentials_are_unavailable() {
    require(MOSQUITTO_PASSWD);
    let dir = TempDir::new("auth");
    let passwords = dir.0.join("passwords");
    let status = Command::new(MOSQUITTO_PASSWD)
        .arg("-b")
        .arg("-c")
        .arg(&passwords)
        .args(["vigil", "right"])
        .status()
        .unwrap();
    assert!(status.success());
    let port = free_port();
    let extra = format!(
        "allow_anonymous false\npassword_file {}",
        passwords.display()
    );
    let _broker = Broker::start(&dir.0, port, &extra);

    let mut anonymous = MqttSink::new(settings(port));
    let text = unavailable_text(anonymous.publish("vigil/a/event", Bytes::from("{}")).await);
    assert!(text.contains("broker refused: not authorized"), "{text}");

    let mut wrong = MqttSink::new(MqttSettings {
        username: Some("vigil".to_string()),
        password: Some("wrong".to_string()),
        ..settings(port)
    });
    let text = unavailable_text(wrong.publish("vigil/a/event", Bytes::from("{}")).await);
    assert!(text.contains("broker refused"), "{text}");

    let mut right = MqttSink::new(MqttSettings {
        username: Some("vigil".to_string()),
        password: Some("right".to_string()),
        ..settings(port)
    });
    right
        .publish("vigil/a/event", Bytes::from("{}"))
        .await
        .unwrap();
    right.disconnect().await;
}

#[tokio::test]
async fn mqtt_broker_killed_then_restarted() {
    let dir = TempDir::new("restart");
    let port = free_port();
    let mut broker = Broker::start(&dir.0, port, "allow_anonymous true");
    let mut sink = MqttSink::new(settings(port));
    sink.publish("vigil/a/event", Bytes::from("1"))
        .await
        .unwrap();

    broker.kill();
    let start = Instant::now();
    unavailable_text(sink.publish("vigil/a/event", Bytes::from("2")).await);
    let text = unavailable_text(sink.publish("vigil/a/event", Bytes::from("2")).await);
    assert!(text.contains("refused"), "{text}");
    assert!(
        start.elapsed() < Duration::from_secs(7),
        "{:?}",
        start.elapsed()
    );
    // Idle without a connection just waits.
    sink.idle(Duration::from_millis(50)).await;
    assert!(sink.link.is_none());

    broker.restart();
    subscribe(port, "vigil-sub");
    sink.publish("vigil/a/event", Bytes::from("3"))
        .await
        .unwrap();
    sink.publish("vigil/a/event", Bytes::from("4"))
        .await
        .unwrap();
    // Nothing from the failed attempts was kept and resent.
    let got = receive(port, "vigil-sub", 2).await;
    assert_eq!(got, ["vigil/a/event 3", "vigil/a/event 4"]);
}

#[tokio::test]
async fn mqtt_cancelled_publish_discards_the_connection() {
    let dir = TempDir::new("cancel");
    let port = free_port();
    let broker = Broker::start(&dir.0, port, "allow_anonymous true");
    let mut sink = MqttSink::new(settings(port));
    sink.publish("vigil/a/event", Bytes::from("1"))
        .await
        .unwrap();
    // Polled once (PUBLISH sent) and dropped before its PUBACK, which
    // cannot come while the broker is stopped.
    broker.signal(libc::SIGSTOP);
    let mut cancelled = Box::pin(sink.publish("vigil/a/event", Bytes::from("2")));
    std::future::poll_fn(|cx| {
        assert!(cancelled.as_mut().poll(cx).is_pending());
        std::task::Poll::Ready(())
    })
    .await;
    drop(cancelled);
    broker.signal(libc::SIGCONT);
    assert!(sink.link.as_ref().unwrap().dirty);
    sink.publish("vigil/a/event", Bytes::from("3"))
        .await
        .unwrap();
    assert_eq!(sink.connects, 2);
}

#[tokio::test]
async fn mqtt_idle_keeps_the_connection_alive() {
    let dir = TempDir::new("idle");
    let port = free_port();
    let _broker = Broker::start(&dir.0, port, "allow_anonymous true");
    let mut sink = MqttSink::new(MqttSettings {
        keep_alive: Duration::from_secs(1),
        ..settings(port)
    });
    sink.publish("vigil/a/event", Bytes::from("1"))
        .await
        .unwrap();
    // Past 1.5 keep-alive intervals: only pings keep the broker from
    // dropping us.
    for _ in 0..5 {
        sink.idle(Duration::from_millis(600)).await;
    }
    assert!(sink.link.is_some());
    sink.publish("vigil/a/event", Bytes::from("2"))
        .await
        .unwrap();
    assert_eq!(sink.connects, 1);
}

#[tokio::test]
async fn mqtt_oversize_payload_and_bad_topics_are_rejected() {
    // No broker: both are refused before any I/O.
    let mut sink = MqttSink::new(settings(1));
    let result = sink
        .publish("vigil/a/snapshot", Bytes::from(vec![0u8; 4097]))
        .await;
    match result {
        Err(DeliveryError::Rejected(text)) => assert!(text.contains("4097"), "{text}"),
        other => panic!("{other:?}"),
    }
    for topic in ["", "vigil/+/event", "vigil/#"] {
        let result = sink.publish(topic, Bytes::from("{}")).await;
        assert!(
            matches!(result, Err(DeliveryError::Rejected(_))),
            "{topic}: {result:?}"
        );
    }
    assert_eq!(sink.connects, 0);
}

#[tokio::test]
async fn mqtt_silent_broker_is_unavailable_after_the_timeout() {
    // Accepts TCP but never sends CONNACK.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            held.push(stream);
        }
    });
    let timeout = Duration::from_millis(400);
    let mut sink = MqttSink::new(MqttSettings {
        timeout,
        ..settings(port)
    });
    let start = Instant::now();
    let text = unavailable_text(sink.publish("vigil/a/event", Bytes::from("{}")).await);
    let took = start.elapsed();
    assert!(text.contains("no PUBACK within"), "{text}");
    assert!(
        took >= timeout && took < timeout + Duration::from_secs(2),
        "{took:?}"
    );
    assert!(sink.link.is_none());
    hold.abort();
}
