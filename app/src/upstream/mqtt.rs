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
mod tests;
