//! An NTP server as a person writes it: `pool.ntp.org`, `192.168.1.1`,
//! `10.0.2.2:1123`, `[fd00::1]:123` or `fd00::1` (port 123 unless given).
//!
//! Parsed once, where the configuration is read, so a typo is a config
//! error naming the key rather than a failed round at run time.

use std::fmt;
use std::net::{IpAddr, SocketAddr};

/// NTP's port.
pub const NTP_PORT: u16 = 123;
/// Longest host name accepted (DNS's limit).
const MAX_HOST: usize = 253;

/// One server: an address, or a name resolved at each round (so a pool's
/// changing members are followed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Server {
    /// An address literal.
    Addr(SocketAddr),
    /// A host name and port.
    Name(String, u16),
}

/// Why a server string is not one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServerError {
    /// Empty.
    Empty,
    /// The part after the last `:` is not a port.
    Port(String),
    /// Not an address and not a valid host name.
    Host(String),
}

impl fmt::Display for ServerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServerError::Empty => f.write_str("an empty NTP server"),
            ServerError::Port(p) => write!(f, "'{p}' is not a port (1-65535)"),
            ServerError::Host(h) => write!(
                f,
                "'{h}' is not an IP address or host name (letters, digits, '-' and '.')"
            ),
        }
    }
}

impl std::error::Error for ServerError {}

fn valid_host(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= MAX_HOST
        && h.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

fn port(text: &str) -> Result<u16, ServerError> {
    match text.parse::<u16>() {
        Ok(p) if p > 0 => Ok(p),
        _ => Err(ServerError::Port(text.to_string())),
    }
}

impl Server {
    /// Reads a server as written in the configuration or a DHCP lease.
    pub fn parse(text: &str) -> Result<Server, ServerError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(ServerError::Empty);
        }
        if let Ok(addr) = text.parse::<SocketAddr>() {
            if addr.port() == 0 {
                return Err(ServerError::Port("0".into()));
            }
            return Ok(Server::Addr(addr));
        }
        // A bare IPv6 address has colons but no port.
        if let Ok(ip) = text.parse::<IpAddr>() {
            return Ok(Server::Addr(SocketAddr::new(ip, NTP_PORT)));
        }
        let (host, p) = match text.rsplit_once(':') {
            Some((host, p)) => (host, port(p)?),
            None => (text, NTP_PORT),
        };
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(Server::Addr(SocketAddr::new(ip, p)));
        }
        if !valid_host(host) {
            return Err(ServerError::Host(host.to_string()));
        }
        Ok(Server::Name(host.to_ascii_lowercase(), p))
    }

    /// Its address now: a literal as it is, a name looked up (the first
    /// address the resolver gives).
    pub(super) async fn resolve(&self) -> std::io::Result<SocketAddr> {
        match self {
            Server::Addr(a) => Ok(*a),
            Server::Name(host, port) => tokio::net::lookup_host((host.as_str(), *port))
                .await?
                .next()
                .ok_or_else(|| {
                    std::io::Error::new(std::io::ErrorKind::NotFound, "no address for the name")
                }),
        }
    }
}

impl fmt::Display for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Server::Addr(a) if a.port() == NTP_PORT => write!(f, "{}", a.ip()),
            Server::Addr(a) => write!(f, "{a}"),
            Server::Name(h, p) if *p == NTP_PORT => f.write_str(h),
            Server::Name(h, p) => write!(f, "{h}:{p}"),
        }
    }
}
