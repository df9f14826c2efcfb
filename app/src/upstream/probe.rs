//! The settings page's "send test event": one made-up event to one
//! configured upstream, with its answer.
//!
//! The test uses the same sinks the drainers use (`HttpSink`, `MqttSink`),
//! on its own short-lived connection, so it says what a real delivery would
//! meet: a refused connection, a 401 from the receiver, a broker that does
//! not acknowledge. The event is marked `"test": true` and is never stored
//! or queued. The caller runs one test at a time; each is bounded by the
//! configured `upstream.timeout`.

use super::{http, mqtt, DeliveryError};
use crate::config::UpstreamConfig;
use bytes::Bytes;
use std::time::Duration;

/// Which upstream to test.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// `[upstream.http]`.
    Http,
    /// `[upstream.mqtt]`.
    Mqtt,
}

/// Why a test event did not get through.
#[derive(Debug, PartialEq, Eq)]
pub enum ProbeError {
    /// That upstream is not configured.
    NotConfigured(Target),
    /// The upstream could not be reached or refused it (the sink's words).
    Failed(DeliveryError),
    /// The configured upstream cannot be used (a bad URL or header).
    Config(String),
}

impl std::fmt::Display for ProbeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProbeError::NotConfigured(Target::Http) => {
                f.write_str("no [upstream.http] is configured")
            }
            ProbeError::NotConfigured(Target::Mqtt) => {
                f.write_str("no [upstream.mqtt] is configured")
            }
            ProbeError::Failed(e) => write!(f, "{e}"),
            ProbeError::Config(e) => f.write_str(e),
        }
    }
}

impl std::error::Error for ProbeError {}

/// The test event: the shape of a stored record, camera and class `test`.
fn test_event(unix_ms: i64) -> serde_json::Value {
    serde_json::json!({
        "id": 0, "camera": "test", "unix_ms": unix_ms, "pts_us": 0, "class_id": 0,
        "class": "test", "score": 1.0, "bbox": [0.0, 0.0, 1.0, 1.0], "snapshot_bytes": 0,
        "clip": null, "clock_unsynced": false, "test": true
    })
}

/// Sends one test event to `target`; Ok with what the upstream was, e.g.
/// "http://10.0.0.2:8000/in accepted the test event".
pub async fn send(
    config: &UpstreamConfig,
    target: Target,
    unix_ms: i64,
) -> Result<String, ProbeError> {
    let event = test_event(unix_ms);
    match target {
        Target::Http => {
            let h = config
                .http
                .as_ref()
                .ok_or(ProbeError::NotConfigured(target))?;
            let mut sink = http::HttpSink::new(&h.url, h.header.clone(), config.timeout)
                .map_err(|e| ProbeError::Config(e.to_string()))?;
            let body = serde_json::json!({"event": event, "snapshot_jpeg": null}).to_string();
            sink.post_json(Bytes::from(body))
                .await
                .map_err(ProbeError::Failed)?;
            Ok(format!("{} accepted the test event (2xx)", sink.describe()))
        }
        Target::Mqtt => {
            let m = config
                .mqtt
                .as_ref()
                .ok_or(ProbeError::NotConfigured(target))?;
            let mut sink = mqtt::MqttSink::new(mqtt::MqttSettings {
                host: m.host.clone(),
                port: m.port,
                // Its own session, so the broker keeps the drainer's.
                client_id: match m.client_id.as_str() {
                    "" => String::new(),
                    id => format!("{id}-test"),
                },
                username: m.username.clone(),
                password: m.password.clone(),
                keep_alive: Duration::from_secs(30),
                timeout: config.timeout,
                max_payload: 4096,
            });
            let topic = format!("{}/test/event", m.topic_prefix);
            let result = sink.publish(&topic, Bytes::from(event.to_string())).await;
            sink.disconnect().await;
            result.map_err(ProbeError::Failed)?;
            Ok(format!(
                "{} acknowledged the test event on {topic} (QoS 1)",
                sink.describe()
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use std::io::{Read, Write};

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    /// A receiver that answers one request with `status`, handing back what
    /// it read.
    fn receiver(status: &'static str) -> (String, std::thread::JoinHandle<String>) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/in", listener.local_addr().unwrap());
        let handle = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut got = Vec::new();
            let mut buf = [0u8; 4096];
            while !String::from_utf8_lossy(&got).contains("\"test\":true") {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                }
            }
            let body = "nope";
            let _ = write!(
                s,
                "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            String::from_utf8_lossy(&got).into_owned()
        });
        (url, handle)
    }

    fn upstream(text: &str) -> UpstreamConfig {
        Config::parse(text, "t").unwrap().upstream
    }

    #[test]
    fn an_http_test_event_reports_the_receivers_answer() {
        let (url, seen) = receiver("200 OK");
        let config = upstream(&format!(
            "[upstream]\ntimeout = \"5s\"\n[upstream.http]\nurl = \"{url}\"\nheader = \"Authorization: Bearer t0k\"\n"
        ));
        let ok = runtime().block_on(send(&config, Target::Http, 5)).unwrap();
        assert!(ok.contains("accepted"), "{ok}");
        let request = seen.join().unwrap();
        assert!(
            request.to_lowercase().contains("authorization: bearer t0k"),
            "{request}"
        );
        assert!(request.contains("\"camera\":\"test\""), "{request}");

        let (url, _seen) = receiver("401 Unauthorized");
        let config = upstream(&format!("[upstream.http]\nurl = \"{url}\"\n"));
        let e = runtime()
            .block_on(send(&config, Target::Http, 5))
            .unwrap_err();
        assert!(e.to_string().contains("401"), "{e}");
    }

    #[test]
    fn unconfigured_and_unreachable_upstreams_say_so() {
        let none = upstream("");
        let e = runtime()
            .block_on(send(&none, Target::Mqtt, 5))
            .unwrap_err();
        assert_eq!(e, ProbeError::NotConfigured(Target::Mqtt));
        // A port nothing listens on.
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = closed.local_addr().unwrap().port();
        drop(closed);
        let config = upstream(&format!(
            "[upstream]\ntimeout = \"2s\"\n[upstream.mqtt]\nurl = \"mqtt://127.0.0.1:{port}\"\n"
        ));
        let e = runtime()
            .block_on(send(&config, Target::Mqtt, 5))
            .unwrap_err();
        assert!(
            matches!(e, ProbeError::Failed(DeliveryError::Unavailable(_))),
            "{e}"
        );
    }
}
