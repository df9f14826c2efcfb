//! Secrets out of sight: the URL form that may be shown, and the `Debug`
//! of every configuration type that holds a secret.
//!
//! Camera URLs carry credentials (`rtsp://user:pass@host/...`) and tokens
//! in their query (`?token=...`, as many cameras and webhook receivers want
//! them); the MQTT password and the web's metrics token are secrets too.
//! Logs, the API, the event stream and the status page show only
//! [`redact_url`]'s form, and `{:?}` of a config prints [`HIDDEN`] where a
//! secret is, so a debug log or a panic message cannot leak one either.

use super::{CameraConfig, HttpUpstream, MqttUpstream, WebConfig};
use std::fmt;

/// What a secret is shown as.
pub const HIDDEN: &str = "***";

/// A URL safe to show: user info (`user:password@`) removed and every query
/// value replaced by [`HIDDEN`] (the names stay, so an operator still sees
/// which parameters are set). Text that is not a URL with a host (a file
/// path, a `v4l://` device) comes back unchanged.
pub fn redact_url(url: &str) -> String {
    let Ok(mut u) = url::Url::parse(url) else {
        return url.to_owned();
    };
    // Nothing secret in it: shown as written (the parser would normalise
    // it, e.g. `http:///in` to `http://in/`, and a message about a bad URL
    // must show the URL the operator wrote).
    if !u.has_host() || (u.username().is_empty() && u.password().is_none() && u.query().is_none()) {
        return url.to_owned();
    }
    if !u.username().is_empty() || u.password().is_some() {
        let _ = u.set_username("");
        let _ = u.set_password(None);
    }
    if let Some(query) = u.query().map(str::to_owned) {
        let hidden: Vec<String> = query
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|pair| match pair.split_once('=') {
                Some((name, _)) => format!("{name}={HIDDEN}"),
                None => HIDDEN.to_owned(),
            })
            .collect();
        u.set_query(Some(&hidden.join("&")));
    }
    u.to_string()
}

/// `Some(HIDDEN)` for a set secret, so `{:?}` says whether there is one.
fn hidden<T>(secret: &Option<T>) -> Option<&'static str> {
    secret.as_ref().map(|_| HIDDEN)
}

impl fmt::Debug for CameraConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CameraConfig")
            .field("name", &self.name)
            .field("url", &redact_url(&self.url))
            .field("codec", &self.codec)
            .field("detect_fps", &self.detect_fps)
            .field("classes", &self.classes)
            .field("min_score", &self.min_score)
            .field("username", &self.username)
            .field("password", &hidden(&self.password))
            .field("max_width", &self.max_width)
            .field("max_height", &self.max_height)
            .field("frame_pool", &self.frame_pool)
            .field("packet_pool", &self.packet_pool)
            .field("packet_size", &self.packet_size)
            .field("reconnect_min", &self.reconnect_min)
            .field("reconnect_max", &self.reconnect_max)
            .field("stall_timeout", &self.stall_timeout)
            .field("v4l2", &self.v4l2)
            .finish()
    }
}

impl fmt::Debug for HttpUpstream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The extra header is usually `Authorization: ...`: its name is
        // useful, its value is the secret.
        let header = self.header.as_ref().map(|(name, _)| (name, HIDDEN));
        f.debug_struct("HttpUpstream")
            .field("url", &redact_url(&self.url))
            .field("header", &header)
            .finish()
    }
}

impl fmt::Debug for MqttUpstream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MqttUpstream")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("topic_prefix", &self.topic_prefix)
            .field("client_id", &self.client_id)
            .field("username", &self.username)
            .field("password", &hidden(&self.password))
            .finish()
    }
}

impl fmt::Debug for WebConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebConfig")
            .field("max_connections", &self.max_connections)
            .field("max_sse_clients", &self.max_sse_clients)
            .field("sse_queue", &self.sse_queue)
            .field("heartbeat", &self.heartbeat)
            .field("header_timeout", &self.header_timeout)
            .field("body_timeout", &self.body_timeout)
            .field("idle_timeout", &self.idle_timeout)
            .field("max_body", &self.max_body)
            .field("public_status", &self.public_status)
            .field("metrics_token", &hidden(&self.metrics_token))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_credentials_and_query_values() {
        assert_eq!(
            redact_url("rtsp://admin:secret@10.0.0.5:554/stream1"),
            "rtsp://10.0.0.5:554/stream1"
        );
        assert_eq!(
            redact_url("rtsp://u:p@h/x?token=t0k3n&channel=1&flag"),
            "rtsp://h/x?token=***&channel=***&***"
        );
        assert_eq!(
            redact_url("http://hooks.example:8000/in?key=abc"),
            "http://hooks.example:8000/in?key=***"
        );
        assert_eq!(redact_url("rtsp://10.0.0.5/s"), "rtsp://10.0.0.5/s");
        assert_eq!(redact_url("/media/clip.mp4"), "/media/clip.mp4");
        assert_eq!(redact_url("v4l:///dev/video0"), "v4l:///dev/video0");
    }
}
