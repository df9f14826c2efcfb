//! The DNS-rebinding guard: a request must name this box in its `Host`.
//!
//! A page on any web site can make the visitor's browser resolve its own
//! name to the box's LAN address (DNS rebinding) and then read the box's
//! pages as "same origin": cookies are not sent, but anything public (and,
//! before vigil closed its defaults, the footage) is. The browser still
//! sends the attacker's name in `Host`, so refusing every `Host` that is not
//! an IP literal, `localhost` or one of `[web] hostnames` ends the attack for
//! GET and POST alike.
//!
//! A request without `Host` (HTTP/1.0) is let through: every browser sends
//! one, so such a request cannot come from a rebinding page, and the
//! monitoring tools that send none keep working. A request with two `Host`
//! headers is refused (RFC 9112 says such a request is invalid).

use hyper::header::{HeaderMap, HOST};
use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

/// Why a request's `Host` was refused (421 Misdirected Request).
#[derive(Debug, PartialEq, Eq)]
pub enum HostError {
    /// The name is not one this box answers to; holds it (shortened).
    Unknown(String),
    /// `Host` is not text, or has a bad port or bracket.
    Malformed,
    /// More than one `Host` header.
    Repeated,
}

impl fmt::Display for HostError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostError::Unknown(host) => write!(
                f,
                "this box does not answer to `{host}`; use its IP address, or add the name to \
                 [web] hostnames"
            ),
            HostError::Malformed => f.write_str("malformed Host header"),
            HostError::Repeated => f.write_str("more than one Host header"),
        }
    }
}

impl std::error::Error for HostError {}

/// Longest host name echoed back in an error.
const ECHO_MAX: usize = 64;

/// Checks the request's `Host` against IP literals, `localhost` and
/// `names` (lower case, no trailing dot, as `config` keeps them).
///
/// # Errors
/// [`HostError`] when the request must be refused.
pub fn check(headers: &HeaderMap, names: &[String]) -> Result<(), HostError> {
    let mut all = headers.get_all(HOST).iter();
    let Some(value) = all.next() else {
        return Ok(());
    };
    if all.next().is_some() {
        return Err(HostError::Repeated);
    }
    let host = value.to_str().map_err(|_| HostError::Malformed)?;
    allowed(host, names)
}

/// The predicate on one `Host` value (`name[:port]`, `v4[:port]` or
/// `[v6][:port]`); case-insensitive, a trailing dot ignored.
pub fn allowed(host: &str, names: &[String]) -> Result<(), HostError> {
    let host = host.trim();
    if let Some(rest) = host.strip_prefix('[') {
        let (addr, after) = rest.split_once(']').ok_or(HostError::Malformed)?;
        port(after)?;
        return addr
            .parse::<Ipv6Addr>()
            .map(|_| ())
            .map_err(|_| HostError::Malformed);
    }
    let name = match host.rsplit_once(':') {
        Some((name, p)) => {
            digits(p)?;
            name
        }
        None => host,
    };
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.contains(':') || name.is_empty() {
        // A bare IPv6 address (it needs brackets) or no name at all.
        return Err(HostError::Malformed);
    }
    let known = name.parse::<Ipv4Addr>().is_ok()
        || name.eq_ignore_ascii_case("localhost")
        || names.iter().any(|n| n.eq_ignore_ascii_case(name));
    if known {
        Ok(())
    } else {
        Err(HostError::Unknown(name.chars().take(ECHO_MAX).collect()))
    }
}

/// What follows the host: nothing, or `:` and a port (digits, at most
/// 65535; an empty port is allowed by RFC 3986).
fn port(after: &str) -> Result<(), HostError> {
    match after.strip_prefix(':') {
        None if after.is_empty() => Ok(()),
        None => Err(HostError::Malformed),
        Some(p) => digits(p),
    }
}

/// A port's digits: none, or a number up to 65535.
fn digits(p: &str) -> Result<(), HostError> {
    if p.is_empty()
        || (p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()) && p.parse::<u16>().is_ok())
    {
        Ok(())
    } else {
        Err(HostError::Malformed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    fn names() -> Vec<String> {
        vec!["vigil.local".into(), "cam-box.lan".into()]
    }

    fn ok(host: &str) -> bool {
        allowed(host, &names()).is_ok()
    }

    #[test]
    fn ip_literals_with_any_port_are_accepted() {
        for h in [
            "127.0.0.1",
            "127.0.0.1:8080",
            "192.168.1.20:80",
            "10.0.0.5:",
            "[::1]",
            "[::1]:8080",
            "[fe80::1]:65535",
            "[2001:db8::7]",
        ] {
            assert!(ok(h), "{h}");
        }
    }

    #[test]
    fn localhost_and_configured_names_in_any_case_with_a_trailing_dot() {
        for h in [
            "localhost",
            "LOCALHOST:8080",
            "localhost.",
            "vigil.local",
            "Vigil.Local:8080",
            "vigil.local.",
            "vigil.local.:80",
            "CAM-BOX.lan",
        ] {
            assert!(ok(h), "{h}");
        }
    }

    #[test]
    fn other_names_are_refused_and_named() {
        for h in [
            "evil.example",
            "evil.example:8080",
            "vigil.local.evil.example",
            "localhost.evil.example",
            "foo.localhost",
            "127.0.0.1.nip.io",
            "x",
        ] {
            assert!(
                matches!(allowed(h, &names()), Err(HostError::Unknown(_))),
                "{h}"
            );
        }
        let e = allowed("evil.example:80", &names()).unwrap_err();
        assert_eq!(e, HostError::Unknown("evil.example".into()));
        assert!(e.to_string().contains("[web] hostnames"), "{e}");
        // Without configured names only IPs and localhost pass.
        assert!(allowed("vigil.local", &[]).is_err());
        let long = "a".repeat(5000);
        match allowed(&long, &[]) {
            Err(HostError::Unknown(h)) => assert_eq!(h.len(), ECHO_MAX),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn malformed_hosts_are_refused() {
        for h in [
            "",
            ":8080",
            "::1",
            "[::1",
            "[::1]x",
            "[not-v6]:80",
            "127.0.0.1:99999",
            "127.0.0.1:80a",
            "127.0.0.1:-1",
            "vigil.local:80:80",
        ] {
            assert!(allowed(h, &names()).is_err(), "{h}");
        }
        // Octal-looking or short IPv4 forms are names, not literals.
        for h in ["0127.0.0.1", "127.1", "2130706433"] {
            assert!(allowed(h, &names()).is_err(), "{h}");
        }
    }

    #[test]
    fn a_missing_host_passes_and_a_repeated_one_does_not() {
        let mut h = HeaderMap::new();
        assert_eq!(check(&h, &[]), Ok(()), "HTTP/1.0 without Host");
        h.insert(HOST, HeaderValue::from_static("127.0.0.1:9"));
        assert_eq!(check(&h, &[]), Ok(()));
        h.append(HOST, HeaderValue::from_static("127.0.0.1:9"));
        assert_eq!(check(&h, &[]), Err(HostError::Repeated));
        let mut h = HeaderMap::new();
        h.insert(HOST, HeaderValue::from_bytes(b"caf\xe9").unwrap());
        assert_eq!(check(&h, &[]), Err(HostError::Malformed));
    }
}
