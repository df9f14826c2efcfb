//! MQTT delivery: publish one event at a time with QoS 1 and wait for the
//! broker's PUBACK.
//!
//! The outbox driver owns durability and ordering, so this client keeps none
//! of its own: `publish` returns only once the broker acknowledged that
//! publish (PUBACK with its packet id), and any failure becomes
//! [`DeliveryError::Unavailable`] for the driver to retry from disk. That is
//! at-least-once delivery: a publish whose PUBACK was lost to a reset is sent
//! again by the driver, so a subscriber can see an event twice.
//!
//! rumqttc's `AsyncClient`/`EventLoop` pair is used without a background
//! task: `publish` and `idle` poll the `EventLoop` themselves, on the
//! caller's tokio task (no thread, no extra task). Clean session is on and
//! the pair is **rebuilt from scratch after every error** (and after a
//! cancelled publish). rumqttc would otherwise keep the unacked publish: on a
//! network error `EventLoop::clean` moves it from `MqttState` into
//! `EventLoop::pending`, together with any request still in the channel,
//! and retransmits `pending` after the next CONNACK unless the broker says
//! `session_present = false`. With clean session that list is cleared only
//! once a reconnect *succeeds*; while the broker stays down it would be
//! kept, and the retransmitted copy would race our own retry (the driver
//! resends the same event) and confuse the PUBACK correlation. A fresh pair
//! has an empty `MqttState`, `pending` and channel, so nothing stale survives
//! a reconnect and at most one publish is ever held.
//!
//! Memory held by one connected sink (nothing while disconnected):
//! - `MqttState`: `INFLIGHT + 1` publish slots (at most one used: the payload
//!   is the caller's `Bytes`, shared, not copied), an 8 KiB bitset for
//!   incoming QoS 2 ids (fixed by rumqttc), and an event queue created with
//!   room for 100 events that stays short because every event is polled.
//! - the framed socket: a read buffer of 8 KiB that cannot grow past
//!   `MAX_INCOMING` (the broker only sends CONNACK, PUBACK and PINGRESP: we
//!   never subscribe), and a write buffer that grows to the largest packet
//!   sent, at most `max_payload + MAX_TOPIC + PUBLISH_OVERHEAD`.
//! - the request channel, bounded at `REQUEST_CAP`, holding at most one
//!   request at a time.

use std::time::Duration;

use bytes::Bytes;
use rumqttc::{
    AsyncClient, ConnectReturnCode, ConnectionError, Event, EventLoop, MqttOptions, Outgoing,
    Packet, QoS,
};
use tokio::time::Instant;

use super::DeliveryError;

/// Longest topic accepted, in bytes; it bounds the outgoing packet size.
pub const MAX_TOPIC: usize = 1024;

/// Bytes of a QoS 1 PUBLISH besides topic and payload: fixed header (up to
/// 5), topic length (2), packet id (2).
const PUBLISH_OVERHEAD: usize = 9;

/// Largest packet accepted from the broker (CONNACK/PUBACK/PINGRESP are 2-4
/// bytes; anything larger is a protocol error).
const MAX_INCOMING: usize = 1024;

/// rumqttc's in-flight window; we wait for each PUBACK, so one slot is used.
const INFLIGHT: u16 = 4;

/// Capacity of the request channel between `AsyncClient` and `EventLoop`.
const REQUEST_CAP: usize = 4;

/// Where and how to connect.
#[derive(Clone)]
pub struct MqttSettings {
    /// Broker host name or IP address.
    pub host: String,
    /// Broker TCP port (1883 usually; no TLS in this build).
    pub port: u16,
    /// MQTT client id; empty lets the broker pick one (clean session).
    pub client_id: String,
    /// User name; credentials are sent only when it is set.
    pub username: Option<String>,
    /// Password, sent with `username` (empty if unset).
    pub password: Option<String>,
    /// Keep-alive interval announced to the broker; rounded to whole seconds,
    /// at least one (zero disables pings).
    pub keep_alive: Duration,
    /// Bounds one `publish`: connect, CONNACK, PUBLISH and its PUBACK.
    pub timeout: Duration,
    /// Largest payload accepted; a larger one is rejected before any I/O.
    pub max_payload: usize,
}

impl std::fmt::Debug for MqttSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MqttSettings")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("client_id", &self.client_id)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("keep_alive", &self.keep_alive)
            .field("timeout", &self.timeout)
            .field("max_payload", &self.max_payload)
            .finish()
    }
}

/// A QoS 1 publisher to one broker over at most one connection.
pub struct MqttSink {
    settings: MqttSettings,
    /// The connection, present only after a CONNACK and until an error.
    link: Option<Link>,
    /// Connections opened so far (tests use it to see reconnects).
    connects: u64,
}

/// One connected client/event-loop pair.
struct Link {
    client: AsyncClient,
    events: EventLoop,
    /// A publish started on this link and did not finish (it was
    /// cancelled): its request or PUBACK may still arrive, so the link must
    /// not carry another publish.
    dirty: bool,
    /// When the event loop was last polled; rumqttc only pings while polled.
    last_poll: Instant,
}

impl MqttSink {
    /// Keeps the settings; no I/O until the first publish.
    pub fn new(settings: MqttSettings) -> MqttSink {
        MqttSink {
            settings,
            link: None,
            connects: 0,
        }
    }

    /// Publishes `payload` to `topic` with QoS 1, retain false, and returns
    /// Ok once the broker's PUBACK for it arrived.
    ///
    /// Connects first if needed. A CONNACK refusal ("broker refused: not
    /// authorized"), a broker that is down or resets, and `timeout` elapsing
    /// are [`DeliveryError::Unavailable`]; a payload above `max_payload` or
    /// an invalid topic is [`DeliveryError::Rejected`]. Cancelling the
    /// returned future is safe: the connection is then discarded.
    pub async fn publish(&mut self, topic: &str, payload: Bytes) -> Result<(), DeliveryError> {
        self.check(topic, payload.len())?;
        let timeout = self.settings.timeout;
        let result = tokio::time::timeout(timeout, self.exchange(topic, payload)).await;
        let result = result.unwrap_or_else(|_| {
            Err(DeliveryError::Unavailable(format!(
                "{}: no PUBACK within {timeout:?}",
                self.describe()
            )))
        });
        if result.is_err() {
            // See the module docs: never reuse rumqttc's state after an error.
            self.link = None;
        }
        result
    }

    /// Keeps an idle connection alive: polls the event loop for `d` (rumqttc
    /// sends PINGREQ every keep-alive interval), without publishing. Without
    /// a connection it just waits. An error marks the connection down (the
    /// next publish reconnects) and the rest of `d` is waited out.
    /// Cancelling it (from a `select!`) is safe.
    pub async fn idle(&mut self, d: Duration) {
        let deadline = Instant::now() + d;
        if let Some(link) = self.link.as_mut() {
            let polled = tokio::time::timeout_at(deadline, async {
                loop {
                    if let Err(e) = link.events.poll().await {
                        return e;
                    }
                    link.last_poll = Instant::now();
                }
            })
            .await;
            match polled {
                Err(_elapsed) => return,
                Ok(e) => {
                    log::info!("{}: connection lost while idle: {e}", self.describe());
                    self.link = None;
                }
            }
        }
        tokio::time::sleep_until(deadline).await;
    }

    /// Sends DISCONNECT if connected (at shutdown), within `timeout`.
    pub async fn disconnect(&mut self) {
        let Some(mut link) = self.link.take() else {
            return;
        };
        if link.dirty || link.client.try_disconnect().is_err() {
            return;
        }
        let _ = tokio::time::timeout(self.settings.timeout, async {
            loop {
                match link.events.poll().await {
                    Ok(Event::Outgoing(Outgoing::Disconnect)) | Err(_) => break,
                    Ok(_) => {}
                }
            }
        })
        .await;
    }

    /// For the status page: "mqtt://host:port".
    pub fn describe(&self) -> String {
        let host = &self.settings.host;
        if host.contains(':') {
            format!("mqtt://[{host}]:{}", self.settings.port)
        } else {
            format!("mqtt://{host}:{}", self.settings.port)
        }
    }

    /// Rejects what no retry can deliver, before any I/O.
    fn check(&self, topic: &str, len: usize) -> Result<(), DeliveryError> {
        if len > self.settings.max_payload {
            return Err(DeliveryError::Rejected(format!(
                "payload of {len} bytes is larger than the MQTT limit of {} bytes",
                self.settings.max_payload
            )));
        }
        if topic.is_empty() || topic.len() > MAX_TOPIC || topic.contains(['+', '#', '\0']) {
            return Err(DeliveryError::Rejected(format!(
                "invalid MQTT topic {topic:?} (1 to {MAX_TOPIC} bytes, no wildcards)"
            )));
        }
        Ok(())
    }

    /// Connects if needed, publishes and waits for the matching PUBACK.
    async fn exchange(&mut self, topic: &str, payload: Bytes) -> Result<(), DeliveryError> {
        let stale = self.link.as_ref().is_some_and(|l| {
            // A cancelled publish, or a connection not polled (so not
            // pinged) for a keep-alive interval, which the broker may have
            // dropped already: start over rather than fail this publish.
            l.dirty
                || (!self.settings.keep_alive.is_zero()
                    && l.last_poll.elapsed() >= self.settings.keep_alive)
        });
        if stale {
            self.link = None;
        }
        if self.link.is_none() {
            self.link = Some(self.connect().await?);
        }
        let description = self.describe();
        let Some(link) = self.link.as_mut() else {
            unreachable!("connected above");
        };
        link.dirty = true;
        link.client
            .publish_bytes(topic, QoS::AtLeastOnce, false, payload)
            .await
            .map_err(|e| DeliveryError::Unavailable(format!("{description}: {e}")))?;
        let mut pkid = None;
        loop {
            let event = link
                .events
                .poll()
                .await
                .map_err(|e| connection_error(&description, e))?;
            link.last_poll = Instant::now();
            match event {
                // The channel holds only our request and `pending` is empty
                // (fresh pair), so the first outgoing publish is ours.
                Event::Outgoing(Outgoing::Publish(id)) if pkid.is_none() => pkid = Some(id),
                Event::Incoming(Packet::PubAck(ack)) if Some(ack.pkid) == pkid => {
                    link.dirty = false;
                    return Ok(());
                }
                Event::Incoming(Packet::Disconnect) => {
                    return Err(DeliveryError::Unavailable(format!(
                        "{description}: broker sent DISCONNECT"
                    )))
                }
                _ => {}
            }
        }
    }

    /// A fresh client/event-loop pair, polled until CONNACK.
    async fn connect(&mut self) -> Result<Link, DeliveryError> {
        let s = &self.settings;
        let mut options = MqttOptions::new(s.client_id.clone(), s.host.clone(), s.port);
        options
            .set_clean_session(true)
            .set_keep_alive(keep_alive(s.keep_alive))
            .set_max_packet_size(MAX_INCOMING, s.max_payload + MAX_TOPIC + PUBLISH_OVERHEAD)
            .set_inflight(INFLIGHT)
            .set_request_channel_capacity(REQUEST_CAP);
        if let Some(user) = &s.username {
            options.set_credentials(user.clone(), s.password.clone().unwrap_or_default());
        }
        let (client, mut events) = AsyncClient::new(options, REQUEST_CAP);
        // rumqttc's own connect timeout (whole seconds); ours is the outer one.
        let mut network = events.network_options();
        network.set_connection_timeout(s.timeout.as_secs().max(1));
        events.set_network_options(network);
        self.connects += 1;
        let description = self.describe();
        match events.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(_))) => Ok(Link {
                client,
                events,
                dirty: false,
                last_poll: Instant::now(),
            }),
            Ok(other) => Err(DeliveryError::Unavailable(format!(
                "{description}: expected CONNACK, got {other:?}"
            ))),
            Err(e) => Err(connection_error(&description, e)),
        }
    }
}

/// rumqttc wants zero or at least one second.
fn keep_alive(d: Duration) -> Duration {
    if d.is_zero() {
        Duration::ZERO
    } else {
        Duration::from_secs(d.as_secs().clamp(1, u16::MAX as u64))
    }
}

fn connection_error(description: &str, e: ConnectionError) -> DeliveryError {
    let text = match e {
        ConnectionError::ConnectionRefused(code) => {
            let why = match code {
                ConnectReturnCode::RefusedProtocolVersion => "unacceptable protocol version",
                ConnectReturnCode::BadClientId => "client id rejected",
                ConnectReturnCode::ServiceUnavailable => "server unavailable",
                ConnectReturnCode::BadUserNamePassword => "bad user name or password",
                ConnectReturnCode::NotAuthorized => "not authorized",
                ConnectReturnCode::Success => "success code in a refusal",
            };
            format!("broker refused: {why}")
        }
        other => other.to_string(),
    };
    DeliveryError::Unavailable(format!("{description}: {text}"))
}

#[cfg(test)]
mod tests {
    use super::*;
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

    /// A scratch directory removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(tag: &str) -> TempDir {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .subsec_nanos();
            let dir = std::env::temp_dir()
                .join(format!("vigil-mqtt-{tag}-{}-{nanos}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            TempDir(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
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
}
