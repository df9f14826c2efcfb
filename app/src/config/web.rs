//! Validation of the `[web]` section: limits, the DNS-rebinding guard's
//! host names and the metrics token, each problem reported with its key and
//! span. A file of its own because the host-name and token rules are the
//! web's security surface and read best together.

use super::error::Report;
use super::raw::RawWeb;
use super::values::Seconds;
use super::WebConfig;
use std::time::Duration;
use toml::Spanned;

impl RawWeb {
    pub(super) fn validate(self, report: &mut Report<'_>) -> WebConfig {
        let d = WebConfig::default();
        let max_body = match self.max_body {
            None => d.max_body,
            Some(b) => {
                let span = b.span();
                let v = b.into_inner().0;
                if !(1024..=16 << 20).contains(&v) {
                    report(
                        "web.max_body".into(),
                        span,
                        "must be between 1KiB and 16MiB".into(),
                    );
                }
                v as usize
            }
        };
        WebConfig {
            max_connections: self.max_connections.map_or(d.max_connections, |c| c.0),
            max_sse_clients: self.max_sse_clients.map_or(d.max_sse_clients, |c| c.0),
            sse_queue: self.sse_queue.map_or(d.sse_queue, |c| c.0),
            heartbeat: web_duration("heartbeat", self.heartbeat, d.heartbeat, report),
            header_timeout: web_duration(
                "header_timeout",
                self.header_timeout,
                d.header_timeout,
                report,
            ),
            body_timeout: web_duration("body_timeout", self.body_timeout, d.body_timeout, report),
            idle_timeout: web_duration("idle_timeout", self.idle_timeout, d.idle_timeout, report),
            max_body,
            public_status: self.public_status.unwrap_or(d.public_status),
            hostnames: hostnames(self.hostnames.unwrap_or_default(), report),
            metrics_token: metrics_token(self.metrics_token, self.metrics_token_file, report),
        }
    }
}

/// Most `web.hostnames` entries; the guard compares each request's `Host`
/// with every one.
const MAX_HOSTNAMES: usize = 32;

/// `web.hostnames`: DNS names, lower-cased, without a trailing dot. Each bad
/// entry is reported with its index and line and left out.
fn hostnames(raw: Vec<Spanned<String>>, report: &mut Report<'_>) -> Vec<String> {
    let mut names = Vec::with_capacity(raw.len().min(MAX_HOSTNAMES));
    for (i, entry) in raw.into_iter().enumerate() {
        let span = entry.span();
        if i >= MAX_HOSTNAMES {
            report(
                format!("web.hostnames[{i}]"),
                span,
                format!("at most {MAX_HOSTNAMES} names"),
            );
            break;
        }
        match hostname(entry.get_ref()) {
            Ok(name) => names.push(name),
            Err(why) => report(
                format!("web.hostnames[{i}]"),
                span,
                format!("`{}` {why}", entry.get_ref()),
            ),
        }
    }
    names
}

/// One `web.hostnames` entry as the guard compares it, or why it is not a
/// host name.
pub(super) fn hostname(entry: &str) -> Result<String, &'static str> {
    let name = entry
        .strip_suffix('.')
        .unwrap_or(entry)
        .to_ascii_lowercase();
    if name.contains("://") || name.contains('/') {
        return Err("is a URL; give only the name, e.g. vigil.local");
    }
    if name.contains(':') || name.contains('[') {
        return Err("has a port or is an IPv6 address; give only the name (any port is accepted, and IP addresses always are)");
    }
    if name.contains('*') {
        return Err("has a wildcard; list each name");
    }
    if name.is_empty() || name.len() > 253 {
        return Err("is not a host name (1 to 253 characters)");
    }
    let label_ok = |l: &str| {
        (1..=63).contains(&l.len())
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    if !name.split('.').all(label_ok) {
        return Err("is not a host name (letters, digits and - in dot-separated labels)");
    }
    Ok(name)
}

/// Shortest metrics token accepted: 16 characters from a password
/// generator are out of reach of guessing over HTTP.
const MIN_METRICS_TOKEN: usize = 16;
/// Longest metrics token (and token file line) accepted.
const MAX_METRICS_TOKEN: usize = 256;

/// `[web] metrics_token` or the first line of `metrics_token_file` (not
/// both), checked: 16 to 256 visible ASCII characters. Messages never
/// repeat the token.
fn metrics_token(
    token: Option<Spanned<String>>,
    file: Option<Spanned<String>>,
    report: &mut Report<'_>,
) -> Option<String> {
    let (key, span, value) = match (token, file) {
        (None, None) => return None,
        (Some(_), Some(f)) => {
            report(
                "web.metrics_token_file".into(),
                f.span(),
                "set metrics_token or metrics_token_file, not both".into(),
            );
            return None;
        }
        (Some(t), None) => ("web.metrics_token", t.span(), t.into_inner()),
        (None, Some(f)) => {
            let span = f.span();
            let path = f.into_inner();
            let mut text = String::new();
            let read = std::fs::File::open(&path).and_then(|file| {
                use std::io::Read;
                file.take(MAX_METRICS_TOKEN as u64 + 2)
                    .read_to_string(&mut text)
            });
            if let Err(e) = read {
                report(
                    "web.metrics_token_file".into(),
                    span,
                    format!("cannot read {path}: {e}"),
                );
                return None;
            }
            let line = text.lines().next().unwrap_or("").trim().to_owned();
            ("web.metrics_token_file", span, line)
        }
    };
    let problem = if value.len() < MIN_METRICS_TOKEN {
        Some(format!(
            "the token must be at least {MIN_METRICS_TOKEN} characters (a long random string)"
        ))
    } else if value.len() > MAX_METRICS_TOKEN {
        Some(format!(
            "the token must be at most {MAX_METRICS_TOKEN} characters"
        ))
    } else if !value.bytes().all(|b| b.is_ascii_graphic()) {
        Some("the token must be visible ASCII characters without spaces".into())
    } else {
        None
    };
    match problem {
        Some(message) => {
            report(key.into(), span, message);
            None
        }
        None => Some(value),
    }
}

/// A `[web]` duration, checked to be between 100ms and one hour.
fn web_duration(
    key: &str,
    value: Option<Spanned<Seconds>>,
    default: Duration,
    report: &mut Report<'_>,
) -> Duration {
    let Some(v) = value else { return default };
    let span = v.span();
    let d = v.into_inner().0;
    if !(Duration::from_millis(100)..=Duration::from_secs(3600)).contains(&d) {
        report(
            format!("web.{key}"),
            span,
            "must be between 100ms and 1h".into(),
        );
    }
    d
}
