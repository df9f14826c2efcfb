//! Why an upstream could not be set up: the kinds of configuration the
//! clients refuse at start, before any event is sent.
//!
//! Setting up does no I/O (the HTTP client connects on its first event), so
//! every kind here is a mistake in `[upstream]` that retrying cannot fix,
//! and start fails with it. What goes wrong later, while delivering (a
//! refused connection, a timeout, a 5xx), is a [`DeliveryError`] instead:
//! the outbox retries those.
//!
//! [`DeliveryError`]: super::DeliveryError

use crate::config::redact_url;
use hyper::header::{InvalidHeaderName, InvalidHeaderValue};
use hyper::http::uri::InvalidUri;

/// Why an upstream client refused its configuration.
#[derive(Debug)]
pub enum UpstreamError {
    /// The URL does not parse.
    BadUrl {
        /// The URL as configured.
        url: String,
        /// The parser's complaint.
        source: url::ParseError,
    },
    /// The URL's scheme is not `http` (`https` included: no TLS library is
    /// built in, and events must not go in clear text to a TLS port).
    RefusedScheme {
        /// The URL as configured.
        url: String,
        /// Its scheme.
        scheme: String,
    },
    /// The URL carries a user name or password (they belong in the extra
    /// header).
    CredentialsInUrl {
        /// The URL as configured.
        url: String,
    },
    /// The URL names no host.
    NoHost {
        /// The URL as configured.
        url: String,
    },
    /// The URL's host cannot be sent as a `Host` header.
    BadHost {
        /// The URL as configured.
        url: String,
        /// Why the header value was refused.
        source: InvalidHeaderValue,
    },
    /// The URL's path and query cannot be sent as a request target.
    BadPath {
        /// The URL as configured.
        url: String,
        /// Why the target was refused.
        source: InvalidUri,
    },
    /// The extra header's name is not an HTTP header name.
    BadHeaderName {
        /// The name as configured.
        name: String,
        /// Why it was refused.
        source: InvalidHeaderName,
    },
    /// The extra header would replace one vigil sets itself.
    ReservedHeader {
        /// The name as configured.
        name: String,
    },
    /// The extra header's value is not visible ASCII on one line (it is
    /// never quoted: it may be a secret).
    BadHeaderValue {
        /// The header's name.
        name: String,
        /// Why the value was refused.
        source: InvalidHeaderValue,
    },
    /// The timeout is zero.
    ZeroTimeout {
        /// The upstream, as `http://host:port/path`.
        upstream: String,
    },
    /// The `upstream.http` section was refused, for the reason inside.
    Http(Box<UpstreamError>),
}

impl std::fmt::Display for UpstreamError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UpstreamError::BadUrl { url, source } => write!(f, "upstream URL {:?}: {source}", redact_url(url)),
            UpstreamError::RefusedScheme { url, scheme } if scheme == "https" => write!(
                f,
                "upstream URL {:?}: https is not supported in this build (no TLS); use an http:// URL",
                redact_url(url)
            ),
            UpstreamError::RefusedScheme { url, scheme } => write!(
                f,
                "upstream URL {:?}: unsupported scheme {scheme:?}, expected http://",
                redact_url(url)
            ),
            UpstreamError::CredentialsInUrl { url } => write!(
                f,
                "upstream URL {:?}: credentials in the URL are not supported; pass them as the extra header",
                redact_url(url)
            ),
            UpstreamError::NoHost { url } => write!(f, "upstream URL {:?}: no host", redact_url(url)),
            UpstreamError::BadHost { url, source } => {
                write!(f, "upstream URL {:?}: host: {source}", redact_url(url))
            }
            UpstreamError::BadPath { url, source } => {
                write!(f, "upstream URL {:?}: path: {source}", redact_url(url))
            }
            UpstreamError::BadHeaderName { name, .. } => write!(
                f,
                "upstream header name {name:?} is not a valid HTTP header name"
            ),
            UpstreamError::ReservedHeader { name } => write!(
                f,
                "upstream header {name:?} is set by vigil itself and cannot be replaced"
            ),
            UpstreamError::BadHeaderValue { name, .. } => write!(
                f,
                "upstream header {name:?}: the value must be visible ASCII without line breaks"
            ),
            UpstreamError::ZeroTimeout { upstream } => {
                write!(f, "upstream {upstream}: timeout must be above zero")
            }
            UpstreamError::Http(e) => write!(f, "upstream.http: {e}"),
        }
    }
}

impl std::error::Error for UpstreamError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            UpstreamError::BadUrl { source, .. } => Some(source),
            UpstreamError::BadHost { source, .. } => Some(source),
            UpstreamError::BadPath { source, .. } => Some(source),
            UpstreamError::BadHeaderName { source, .. } => Some(source),
            UpstreamError::BadHeaderValue { source, .. } => Some(source),
            UpstreamError::Http(e) => Some(e.as_ref()),
            UpstreamError::RefusedScheme { .. }
            | UpstreamError::CredentialsInUrl { .. }
            | UpstreamError::NoHost { .. }
            | UpstreamError::ReservedHeader { .. }
            | UpstreamError::ZeroTimeout { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error;

    #[test]
    fn the_section_wraps_the_kind_and_chains_to_it() {
        let inner = UpstreamError::NoHost {
            url: "http:///in".into(),
        };
        let e = UpstreamError::Http(Box::new(inner));
        assert_eq!(
            e.to_string(),
            "upstream.http: upstream URL \"http:///in\": no host"
        );
        let source = e.source().and_then(|s| s.downcast_ref::<UpstreamError>());
        assert!(
            matches!(source, Some(UpstreamError::NoHost { .. })),
            "{source:?}"
        );
        assert!(source.and_then(Error::source).is_none());
    }
}
