//! Validation of the `[system]` section: the box's host name, time zone,
//! NTP servers and network (`[system.network]`), each problem reported with
//! its key and span.
//!
//! vigil applies only the NTP servers (its time client, `timesync`); the
//! board's boot scripts read the rest through `vigil system-env`
//! (rootfs-overlay/usr/sbin/vigil-system) and pass it to `hostname`,
//! `ifconfig` and `route`. So every value is checked here to be exactly what
//! those take, which also keeps quotes and shell syntax out of the
//! environment the scripts build. All keys are optional and their defaults
//! change nothing (DHCP, the image's host name, UTC, the NTP servers DHCP
//! offers); without a `[system]` table vigil never sets the clock.

use super::error::Report;
use super::raw::{RawNetwork, RawSystem};
use super::tz;
use super::{Ipv4Net, NetworkConfig, NetworkMode, SystemConfig, TimeZone};
use crate::timesync::Server;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;
use toml::Spanned;

/// Most `system.ntp` servers (asked in order until one answers).
pub const MAX_NTP: usize = 4;
/// Most `system.network.dns` servers (the C library reads three).
pub const MAX_DNS: usize = 3;
/// Shortest `system.network.confirm_within`: time to open the new address.
pub const MIN_CONFIRM: Duration = Duration::from_secs(30);
/// Longest `system.network.confirm_within`.
pub const MAX_CONFIRM: Duration = Duration::from_secs(3600);
/// Default `system.network.confirm_within`.
pub const DEFAULT_CONFIRM: Duration = Duration::from_secs(300);

impl RawSystem {
    pub(super) fn validate(self, report: &mut Report<'_>) -> SystemConfig {
        let hostname = self.hostname.and_then(|h| match label(h.get_ref()) {
            Ok(()) => Some(h.into_inner()),
            Err(why) => {
                report(
                    "system.hostname".into(),
                    h.span(),
                    format!("`{}` {why}", h.get_ref()),
                );
                None
            }
        });
        let timezone = self.timezone.and_then(|t| match tz::posix(t.get_ref()) {
            Ok(posix) => Some(TimeZone {
                name: t.get_ref().clone(),
                posix,
            }),
            Err(why) => {
                report("system.timezone".into(), t.span(), why);
                None
            }
        });
        let ntp = list("system.ntp", self.ntp, MAX_NTP, report, |s| {
            Server::parse(s).map_err(|why| why.to_string())
        });
        SystemConfig {
            present: true,
            hostname,
            timezone,
            ntp,
            network: self.network.validate(report),
        }
    }
}

/// An RFC 1123 host name label: 1 to 63 letters, digits and `-`, not
/// starting or ending with `-` (what `hostname` sets and DHCP sends).
fn label(name: &str) -> Result<(), &'static str> {
    let ok = (1..=63).contains(&name.len())
        && !name.starts_with('-')
        && !name.ends_with('-')
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err("is not a host name: 1 to 63 letters, digits and -, not starting or ending with - (no dots)")
    }
}

/// A list of at most `max` entries, each checked by `check`; a bad entry is
/// reported with its index and left out.
fn list<T>(
    key: &str,
    raw: Option<Vec<Spanned<String>>>,
    max: usize,
    report: &mut Report<'_>,
    check: impl Fn(&str) -> Result<T, String>,
) -> Vec<T> {
    let mut out = Vec::new();
    for (i, entry) in raw.unwrap_or_default().into_iter().enumerate() {
        if i >= max {
            report(
                format!("{key}[{i}]"),
                entry.span(),
                format!("at most {max} entries"),
            );
            break;
        }
        match check(entry.get_ref()) {
            Ok(v) => out.push(v),
            Err(why) => report(format!("{key}[{i}]"), entry.span(), why),
        }
    }
    out
}

impl RawNetwork {
    fn validate(self, report: &mut Report<'_>) -> NetworkConfig {
        let mode = match &self.mode {
            None => NetworkMode::Dhcp,
            Some(m) => match m.get_ref().as_str() {
                "dhcp" => NetworkMode::Dhcp,
                "static" => NetworkMode::Static,
                other => {
                    report(
                        "system.network.mode".into(),
                        m.span(),
                        format!("unknown mode `{other}`; use dhcp or static"),
                    );
                    NetworkMode::Dhcp
                }
            },
        };
        let address = self.address.as_ref().and_then(|a| match cidr(a.get_ref()) {
            Ok(net) => Some(net),
            Err(why) => {
                report("system.network.address".into(), a.span(), why);
                None
            }
        });
        if let (NetworkMode::Static, None, Some(m)) = (mode, &self.address, &self.mode) {
            report(
                "system.network.address".into(),
                m.span(),
                "mode = \"static\" needs an address, e.g. address = \"192.168.1.50/24\"".into(),
            );
        }
        let gateway = self.gateway.and_then(|g| {
            let why = match (g.get_ref().parse::<Ipv4Addr>(), address) {
                (Err(_), _) => format!(
                    "`{}` is not an IPv4 address such as 192.168.1.1",
                    g.get_ref()
                ),
                (Ok(ip), Some(net)) if !net.contains(ip) => format!(
                    "{ip} is not in the subnet of the address {}/{} ({}/{})",
                    net.addr,
                    net.prefix,
                    net.network(),
                    net.prefix
                ),
                (Ok(ip), Some(net)) if ip == net.addr => {
                    "must not be the box's own address".to_owned()
                }
                (Ok(ip), Some(net))
                    if net.prefix <= 30 && (ip == net.network() || ip == net.broadcast()) =>
                {
                    format!("{ip} is the subnet's network or broadcast address")
                }
                (Ok(ip), _) => return Some(ip),
            };
            report("system.network.gateway".into(), g.span(), why);
            None
        });
        let dns = list("system.network.dns", self.dns, MAX_DNS, report, |s| {
            s.parse::<IpAddr>()
                .map(|ip| ip.to_string())
                .map_err(|_| format!("`{s}` is not an IP address such as 192.168.1.1"))
        });
        let confirm_within = match self.confirm_within {
            None => DEFAULT_CONFIRM,
            Some(c) if (MIN_CONFIRM..=MAX_CONFIRM).contains(&c.get_ref().0) => c.get_ref().0,
            Some(c) => {
                report(
                    "system.network.confirm_within".into(),
                    c.span(),
                    "must be between 30s and 1h (the time to open the new address and confirm it)"
                        .into(),
                );
                DEFAULT_CONFIRM
            }
        };
        NetworkConfig {
            mode,
            address,
            gateway,
            dns: dns.iter().filter_map(|d| d.parse().ok()).collect(),
            confirm_within,
        }
    }
}

/// `a.b.c.d/prefix`: a host address the box can take in its subnet.
fn cidr(text: &str) -> Result<Ipv4Net, String> {
    let bad = || {
        format!("`{text}` is not an IPv4 address with its prefix length, such as 192.168.1.50/24")
    };
    let (ip, prefix) = text.split_once('/').ok_or_else(bad)?;
    let addr: Ipv4Addr = ip.parse().map_err(|_| bad())?;
    let prefix: u8 = match prefix.parse() {
        Ok(p) if (1..=32).contains(&p) => p,
        _ => {
            return Err(format!(
                "`{text}`: the prefix length must be 1 to 32 (24 is 255.255.255.0)"
            ))
        }
    };
    let net = Ipv4Net { addr, prefix };
    if addr.is_unspecified() || addr.is_loopback() || addr.is_multicast() || addr.is_broadcast() {
        return Err(format!("{addr} cannot be the box's address"));
    }
    if prefix <= 30 && (addr == net.network() || addr == net.broadcast()) {
        return Err(format!(
            "{addr} is the network or broadcast address of {}/{prefix}; choose a host address",
            net.network()
        ));
    }
    Ok(net)
}

impl Ipv4Net {
    /// The subnet mask, e.g. 255.255.255.0 for /24.
    pub fn netmask(&self) -> Ipv4Addr {
        Ipv4Addr::from(
            u32::MAX
                .checked_shl(32 - u32::from(self.prefix))
                .unwrap_or(0),
        )
    }

    /// The subnet's first address.
    pub fn network(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) & u32::from(self.netmask()))
    }

    /// The subnet's last address.
    pub fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) | !u32::from(self.netmask()))
    }

    /// Whether `ip` is in the subnet.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & u32::from(self.netmask()) == u32::from(self.network())
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{Config, ConfigErrors, NetworkMode};
    use std::time::Duration;

    fn located(text: &str) -> Vec<(String, Option<usize>, String)> {
        let e: ConfigErrors = Config::parse(text, "t.toml").unwrap_err();
        e.0.into_iter()
            .map(|e| (e.key, e.line, e.message))
            .collect()
    }

    /// The one error of `text`: its key, line and message.
    fn one(text: &str) -> (String, Option<usize>, String) {
        let mut e = located(text);
        assert_eq!(e.len(), 1, "{e:?}");
        e.remove(0)
    }

    #[test]
    fn defaults_change_nothing() {
        let c = Config::parse("", "t").unwrap();
        assert_eq!(c.system, super::SystemConfig::default());
        assert_eq!(c.system.network.mode, NetworkMode::Dhcp);
        assert_eq!(c.system.network.confirm_within, Duration::from_secs(300));
        assert!(c.system.hostname.is_none() && c.system.timezone.is_none());
        assert!(c.system.ntp.is_empty());
        assert!(
            !c.system.present,
            "no [system]: vigil leaves the clock alone"
        );
    }

    #[test]
    fn a_full_section_is_read() {
        let c = Config::parse(
            "[system]\nhostname = \"garage-cam\"\ntimezone = \"Europe/Berlin\"\n\
             ntp = [\"0.pool.ntp.org\", \"10.0.0.1\"]\n\
             [system.network]\nmode = \"static\"\naddress = \"192.168.1.50/24\"\n\
             gateway = \"192.168.1.1\"\ndns = [\"192.168.1.1\", \"9.9.9.9\"]\nconfirm_within = \"30s\"\n",
            "t",
        )
        .unwrap();
        let s = &c.system;
        assert_eq!(s.hostname.as_deref(), Some("garage-cam"));
        let tz = s.timezone.as_ref().unwrap();
        assert_eq!(
            (tz.name.as_str(), tz.posix.as_str()),
            ("Europe/Berlin", "CET-1CEST,M3.5.0,M10.5.0/3")
        );
        let ntp: Vec<String> = s.ntp.iter().map(|n| n.to_string()).collect();
        assert_eq!(ntp, ["0.pool.ntp.org", "10.0.0.1"]);
        assert!(s.present);
        let n = &s.network;
        assert_eq!(n.mode, NetworkMode::Static);
        let a = n.address.unwrap();
        assert_eq!((a.addr.to_string(), a.prefix), ("192.168.1.50".into(), 24));
        assert_eq!(a.netmask().to_string(), "255.255.255.0");
        assert_eq!(n.gateway.unwrap().to_string(), "192.168.1.1");
        assert_eq!(n.dns.len(), 2);
        assert_eq!(n.confirm_within, Duration::from_secs(30));
        // A POSIX string is taken as it is.
        let c = Config::parse("[system]\ntimezone = \"<+0545>-5:45\"\n", "t").unwrap();
        assert_eq!(c.system.timezone.unwrap().posix, "<+0545>-5:45");
    }

    #[test]
    fn every_key_names_itself_and_its_line() {
        let cases: &[(&str, &str, usize, &str)] = &[
            (
                "[system]\nhostname = \"my box\"\n",
                "system.hostname",
                2,
                "not a host name",
            ),
            (
                "[system]\nhostname = \"cam.local\"\n",
                "system.hostname",
                2,
                "no dots",
            ),
            (
                "[system]\nhostname = \"-cam\"\n",
                "system.hostname",
                2,
                "not a host name",
            ),
            (
                "[system]\n\ntimezone = \"Mars/Olympus\"\n",
                "system.timezone",
                3,
                "not a time zone this box knows",
            ),
            (
                "[system]\ntimezone = \"CET-1'\"\n",
                "system.timezone",
                2,
                "POSIX TZ",
            ),
            (
                "[system]\nntp = [\"pool.ntp.org\",\n  \"bad host\"]\n",
                "system.ntp[1]",
                3,
                "not an IP address or host name",
            ),
            (
                "[system]\nntp = [\"10.0.2.2:0\"]\n",
                "system.ntp[0]",
                2,
                "not a port",
            ),
            (
                "[system]\nntp = [\"a\", \"b\", \"c\", \"d\", \"e\"]\n",
                "system.ntp[4]",
                2,
                "at most 4",
            ),
            (
                "[system.network]\nmode = \"pppoe\"\n",
                "system.network.mode",
                2,
                "use dhcp or static",
            ),
            (
                "[system.network]\nmode = \"static\"\n",
                "system.network.address",
                2,
                "needs an address",
            ),
            (
                "[system.network]\naddress = \"192.168.1.50\"\n",
                "system.network.address",
                2,
                "prefix length",
            ),
            (
                "[system.network]\naddress = \"192.168.1.50/33\"\n",
                "system.network.address",
                2,
                "1 to 32",
            ),
            (
                "[system.network]\naddress = \"192.168.1.0/24\"\n",
                "system.network.address",
                2,
                "network or broadcast",
            ),
            (
                "[system.network]\naddress = \"127.0.0.5/8\"\n",
                "system.network.address",
                2,
                "cannot be the box's address",
            ),
            (
                "[system.network]\naddress = \"10.0.0.5/24\"\ngateway = \"10.0.1.1\"\n",
                "system.network.gateway",
                3,
                "not in the subnet",
            ),
            (
                "[system.network]\naddress = \"10.0.0.5/24\"\ngateway = \"10.0.0.5\"\n",
                "system.network.gateway",
                3,
                "own address",
            ),
            (
                "[system.network]\naddress = \"10.0.0.5/24\"\ngateway = \"10.0.0.255\"\n",
                "system.network.gateway",
                3,
                "broadcast",
            ),
            (
                "[system.network]\ngateway = \"router\"\n",
                "system.network.gateway",
                2,
                "not an IPv4 address",
            ),
            (
                "[system.network]\ndns = [\"1.1.1.1\", \"x\"]\n",
                "system.network.dns[1]",
                2,
                "not an IP address",
            ),
            (
                "[system.network]\ndns = [\"1.1.1.1\", \"1.0.0.1\", \"8.8.8.8\", \"8.8.4.4\"]\n",
                "system.network.dns[3]",
                2,
                "at most 3",
            ),
            (
                "[system.network]\n\nconfirm_within = \"10s\"\n",
                "system.network.confirm_within",
                3,
                "between 30s and 1h",
            ),
            (
                "[system.network]\nconfirm_within = \"2h\"\n",
                "system.network.confirm_within",
                2,
                "between 30s and 1h",
            ),
            (
                "[system.network]\nconfirm_within = \"5min\"\n",
                "system.network.confirm_within",
                2,
                "unknown duration unit",
            ),
        ];
        let (k, l, m) = one("[system]\nwho = 1\n");
        assert!(k.starts_with("system") && l == Some(2), "{k} {l:?}");
        assert!(m.contains("unknown field `who`"), "{m}");
        for (text, key, line, message) in cases {
            let (k, l, m) = one(text);
            assert_eq!((k.as_str(), l), (*key, Some(*line)), "{text}: {m}");
            assert!(m.contains(message), "{text}: {m}");
        }
    }

    #[test]
    fn the_gateway_may_be_left_out_and_dhcp_keeps_an_address_for_later() {
        let c = Config::parse(
            "[system.network]\nmode = \"static\"\naddress = \"10.1.2.3/16\"\n",
            "t",
        )
        .unwrap();
        assert_eq!(c.system.network.gateway, None);
        assert_eq!(
            c.system.network.address.unwrap().netmask().to_string(),
            "255.255.0.0"
        );
        // In DHCP mode a static address is checked and kept, not used.
        let c = Config::parse(
            "[system.network]\nmode = \"dhcp\"\naddress = \"10.1.2.3/16\"\ngateway = \"10.1.0.1\"\n",
            "t",
        )
        .unwrap();
        assert_eq!(c.system.network.mode, NetworkMode::Dhcp);
        assert!(c.system.network.address.is_some());
        // /31 and /32 have no network or broadcast address to refuse.
        assert!(Config::parse("[system.network]\naddress = \"10.0.0.0/31\"\n", "t").is_ok());
    }
}
