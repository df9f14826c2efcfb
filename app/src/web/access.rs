//! Who may read what: the one gate every request passes before its handler.
//!
//! Closed by default. Anything that shows cameras, footage or the
//! configuration needs the admin session: the camera list, the status and
//! history documents, the event list, the event stream (it carries event
//! details) and, always, snapshots and clips. `/metrics` takes the session
//! or the bearer token of `[web] metrics_token` (Prometheus cannot log in),
//! never the admin password. Public are only the page shell (it shows the
//! setup or login panel), `/api/health`, the session document and the
//! login endpoints, which check their own credentials, and unknown paths
//! (404). `[web] public_status = true` opens the documents and the stream
//! again for a trusted network, but never the footage.
//!
//! Only reads are gated here: the other methods either are the login
//! endpoints or get 405 from the routes without reading anything.

use crate::config::WebConfig;
use hyper::header::{HeaderMap, AUTHORIZATION};
use hyper::Method;
use std::fmt;

/// What a path needs to be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Need {
    /// Anyone.
    Public,
    /// The admin session, or `public_status`.
    Session,
    /// The admin session, `public_status`, or the metrics bearer token.
    SessionOrToken,
    /// The admin session, whatever `public_status` says (footage).
    SessionAlways,
}

/// Why a request was refused (401).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Denied {
    /// No valid admin session.
    Login,
    /// `/metrics` with a bearer token that is not `web.metrics_token`.
    Token,
}

impl fmt::Display for Denied {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Denied::Login => "log in first: this needs the admin session",
            Denied::Token => "wrong bearer token for /metrics (web.metrics_token)",
        })
    }
}

impl std::error::Error for Denied {}

/// What reading `path` needs.
pub fn need(path: &str) -> Need {
    match path {
        "/metrics" => Need::SessionOrToken,
        "/events" | "/api/status" | "/api/cameras" | "/api/history" | "/api/events" => {
            Need::Session
        }
        p if p.starts_with("/api/events/") => Need::SessionAlways,
        // The configuration: camera addresses, upstreams, the web's own
        // settings. Never public, whatever `public_status` says.
        "/api/settings" => Need::SessionAlways,
        p if p.starts_with("/api/settings/") => Need::SessionAlways,
        // The system's versions and its update: the admin's alone.
        "/api/update" => Need::SessionAlways,
        p if p.starts_with("/api/update/") => Need::SessionAlways,
        _ => Need::Public,
    }
}

/// The gate: `Ok` when a `method` request for `path` with `headers` may
/// reach its handler; `logged_in` is whether it carries a valid session.
pub fn check(
    config: &WebConfig,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
    logged_in: bool,
) -> Result<(), Denied> {
    if !(method == Method::GET || method == Method::HEAD) || logged_in {
        return Ok(());
    }
    match need(path) {
        Need::Public => Ok(()),
        Need::Session | Need::SessionOrToken if config.public_status => Ok(()),
        Need::Session | Need::SessionAlways => Err(Denied::Login),
        Need::SessionOrToken => match bearer(headers) {
            None => Err(Denied::Login),
            Some(given) => match &config.metrics_token {
                Some(token) if super::auth::ct_eq(given.as_bytes(), token.as_bytes()) => Ok(()),
                _ => Err(Denied::Token),
            },
        },
    }
}

/// The token of an `Authorization: Bearer <token>` header.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    const TOKEN: &str = "0123456789abcdef-metrics";

    fn config(public_status: bool) -> WebConfig {
        WebConfig {
            public_status,
            metrics_token: Some(TOKEN.into()),
            ..WebConfig::default()
        }
    }

    fn with_auth(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(AUTHORIZATION, HeaderValue::from_str(value).unwrap());
        h
    }

    #[test]
    fn closed_by_default_except_the_shell_and_health() {
        let c = config(false);
        let none = HeaderMap::new();
        let get = Method::GET;
        for open in ["/", "/index.html", "/api/health", "/api/session", "/nope"] {
            assert_eq!(check(&c, &get, open, &none, false), Ok(()), "{open}");
        }
        for closed in [
            "/metrics",
            "/events",
            "/api/status",
            "/api/cameras",
            "/api/history",
            "/api/events",
            "/api/events/1/snapshot.jpg",
            "/api/events/1/clip.mp4",
            "/api/settings",
            "/api/settings/export",
        ] {
            assert_eq!(
                check(&c, &get, closed, &none, false),
                Err(Denied::Login),
                "{closed}"
            );
            assert_eq!(
                check(&c, &Method::HEAD, closed, &none, false),
                Err(Denied::Login)
            );
            assert_eq!(check(&c, &get, closed, &none, true), Ok(()), "{closed}");
        }
    }

    #[test]
    fn metrics_take_the_bearer_token_only_there() {
        let c = config(false);
        let get = Method::GET;
        let good = with_auth(&format!("Bearer {TOKEN}"));
        assert_eq!(check(&c, &get, "/metrics", &good, false), Ok(()));
        assert_eq!(
            check(
                &c,
                &get,
                "/metrics",
                &with_auth(&format!("bearer  {TOKEN} ")),
                false
            ),
            Ok(())
        );
        for (bad, why) in [
            ("Bearer wrong-token-0123456789".to_owned(), Denied::Token),
            (format!("Bearer {TOKEN}x"), Denied::Token),
            (format!("Basic {TOKEN}"), Denied::Login),
            ("Bearer ".to_owned(), Denied::Login),
        ] {
            assert_eq!(
                check(&c, &get, "/metrics", &with_auth(&bad), false),
                Err(why),
                "{bad}"
            );
        }
        // The token opens nothing else, and no token is configured: none works.
        assert_eq!(
            check(&c, &get, "/api/status", &good, false),
            Err(Denied::Login)
        );
        let unset = WebConfig::default();
        assert_eq!(
            check(&unset, &get, "/metrics", &good, false),
            Err(Denied::Token)
        );
    }

    #[test]
    fn public_status_never_opens_footage_or_the_configuration() {
        let c = config(true);
        let none = HeaderMap::new();
        for open in ["/metrics", "/events", "/api/status", "/api/events"] {
            assert_eq!(
                check(&c, &Method::GET, open, &none, false),
                Ok(()),
                "{open}"
            );
        }
        for closed in [
            "/api/events/3/clip.mp4",
            "/api/settings",
            "/api/settings/export",
        ] {
            assert_eq!(
                check(&c, &Method::GET, closed, &none, false),
                Err(Denied::Login),
                "{closed}"
            );
        }
    }
}
