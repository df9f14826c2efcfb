//! `vigil system-env`: the `[system]` section as shell assignments for the
//! board's scripts, which `eval` them.
//!
//! Every value comes from a validated [`Config`] (host name labels, POSIX TZ
//! strings, host names and IP addresses, numbers), none of which can hold a
//! quote; each is still checked once more here and single-quoted, so a
//! future key that forgets the rule fails loudly instead of reaching a root
//! shell. `VIGIL_NET_ID` names the network settings: the script keys its
//! confirmations and reverts by it, so a changed static address is tried
//! again while an unchanged one that was reverted is not.

use crate::config::{Config, NetworkMode};
use std::fmt::{self, Write};

/// A value that cannot be written single-quoted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnsafeValue {
    /// The variable.
    pub name: &'static str,
}

impl fmt::Display for UnsafeValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} would hold a quote or a control character; refusing to print it",
            self.name
        )
    }
}

impl std::error::Error for UnsafeValue {}

/// The assignments for `config`, one `NAME='value'` per line.
pub fn render(config: &Config) -> Result<String, UnsafeValue> {
    let s = &config.system;
    let n = &s.network;
    let join = |v: &mut dyn Iterator<Item = String>| v.collect::<Vec<_>>().join(" ");
    let static_mode = n.mode == NetworkMode::Static;
    let (address, netmask, gateway, dns) = match (static_mode, n.address) {
        (true, Some(a)) => (
            a.addr.to_string(),
            a.netmask().to_string(),
            n.gateway.map(|g| g.to_string()).unwrap_or_default(),
            join(&mut n.dns.iter().map(ToString::to_string)),
        ),
        _ => Default::default(),
    };
    let vars: [(&'static str, String); 10] = [
        ("VIGIL_HOSTNAME", s.hostname.clone().unwrap_or_default()),
        (
            "VIGIL_TZ",
            s.timezone
                .as_ref()
                .map(|t| t.posix.clone())
                .unwrap_or_default(),
        ),
        ("VIGIL_NET_MODE", n.mode.as_str().to_owned()),
        ("VIGIL_NET_ADDRESS", address.clone()),
        ("VIGIL_NET_NETMASK", netmask.clone()),
        ("VIGIL_NET_GATEWAY", gateway.clone()),
        ("VIGIL_NET_DNS", dns.clone()),
        (
            "VIGIL_NET_CONFIRM_SECS",
            n.confirm_within.as_secs().to_string(),
        ),
        (
            "VIGIL_NET_ID",
            network_id(&[n.mode.as_str(), &address, &netmask, &gateway, &dns]),
        ),
        ("VIGIL_HTTP_PORT", config.listen.port().to_string()),
    ];
    let mut out = String::new();
    for (name, value) in vars {
        if value.contains('\'') || value.chars().any(char::is_control) {
            return Err(UnsafeValue { name });
        }
        let _ = writeln!(out, "{name}='{value}'");
    }
    Ok(out)
}

/// 12 hex digits of the FNV-1a hash of the network settings: stable across
/// versions and builds (it is stored on /data), short enough for a state
/// line.
fn network_id(parts: &[&str]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in parts.join("|").bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{:012x}", h >> 16)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(text: &str) -> String {
        render(&Config::parse(text, "t").unwrap()).unwrap()
    }

    fn var(out: &str, name: &str) -> String {
        out.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}=")))
            .unwrap_or_else(|| panic!("{name} missing in {out}"))
            .to_owned()
    }

    #[test]
    fn defaults_are_dhcp_and_empty() {
        let out = env("");
        assert_eq!(var(&out, "VIGIL_NET_MODE"), "'dhcp'");
        assert_eq!(var(&out, "VIGIL_HOSTNAME"), "''");
        assert_eq!(var(&out, "VIGIL_TZ"), "''");
        assert_eq!(var(&out, "VIGIL_NET_CONFIRM_SECS"), "'300'");
        assert_eq!(var(&out, "VIGIL_HTTP_PORT"), "'8080'");
        assert_eq!(out.lines().count(), 10);
    }

    #[test]
    fn the_id_follows_the_network_settings_only() {
        let base = "[system.network]\nmode = \"static\"\naddress = \"10.0.0.5/24\"\n";
        let id = |t: &str| var(&env(t), "VIGIL_NET_ID");
        assert_eq!(id(base), id(&format!("{base}confirm_within = \"60s\"\n")));
        assert_eq!(id(base), id(&format!("[system]\nhostname = \"x\"\n{base}")));
        assert_ne!(id(base), id(&base.replace("10.0.0.5", "10.0.0.6")));
        assert_ne!(id(base), id(&format!("{base}gateway = \"10.0.0.1\"\n")));
        assert_ne!(id(base), id(""));
        // DHCP ignores a kept static address: one id for every DHCP file.
        assert_eq!(id(""), id(&base.replace("static", "dhcp")));
        assert_eq!(id("").len(), 14, "12 hex digits, quoted");
    }
}
