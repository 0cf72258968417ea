//! Values of the file read into their types when the file is read. A value
//! that does not parse is kept as written with its problem, so that
//! `--check-config` still reports every problem of a file at once; the
//! agent never starts with one (a configuration with problems is refused
//! whole) and never parses a value twice.

use ipnet::IpNet;
use serde::{Deserialize, Deserializer};
use std::net::Ipv4Addr;

/// A value as its type, or as written with why it is not one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Checked<T> {
    Valid(T),
    Invalid { text: String, problem: String },
}

impl<T> Checked<T> {
    /// The value, when it is one.
    pub fn valid(&self) -> Option<&T> {
        match self {
            Checked::Valid(v) => Some(v),
            Checked::Invalid { .. } => None,
        }
    }

    /// Why the value is not one.
    pub fn problem(&self) -> Option<&str> {
        match self {
            Checked::Valid(_) => None,
            Checked::Invalid { problem, .. } => Some(problem),
        }
    }
}

/// An optional value left out of the file: none.
impl<T> Default for Checked<Option<T>> {
    fn default() -> Self {
        Checked::Valid(None)
    }
}

/// A type a configuration value is read into from its text.
pub trait FromConfig: Sized {
    fn from_config(text: &str) -> Result<Self, String>;
}

impl<T: FromConfig> Checked<T> {
    /// `text` read as a `T`.
    pub fn read(text: &str) -> Checked<T> {
        match T::from_config(text) {
            Ok(v) => Checked::Valid(v),
            Err(problem) => Checked::Invalid {
                text: text.to_string(),
                problem,
            },
        }
    }
}

impl<'de, T: FromConfig> Deserialize<'de> for Checked<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Ok(Checked::read(&text))
    }
}

/// How the node routes: `routing.protocol`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Bgp,
    /// Through an ospfd sidecar.
    Ospf,
}

impl std::fmt::Display for Protocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Protocol::Bgp => "bgp",
            Protocol::Ospf => "ospf",
        })
    }
}

impl FromConfig for Protocol {
    fn from_config(text: &str) -> Result<Self, String> {
        match text {
            "bgp" => Ok(Protocol::Bgp),
            "ospf" => Ok(Protocol::Ospf),
            other => Err(format!("must be \"bgp\" or \"ospf\", not {other:?}")),
        }
    }
}

/// An address family name of a peer (`ipv4-unicast`, `ipv4`,
/// `ipv6-unicast`, `ipv6`, with `_` for `-` and in any case).
impl FromConfig for novanet_bgp::wire::Family {
    fn from_config(text: &str) -> Result<Self, String> {
        super::parse_family(text)
            .ok_or_else(|| format!("{text:?} is not one of ipv4-unicast, ipv4, ipv6-unicast, ipv6"))
    }
}

/// A router id: a unicast IPv4 address; empty means the node's address.
impl FromConfig for Option<Ipv4Addr> {
    fn from_config(text: &str) -> Result<Self, String> {
        if text.is_empty() {
            return Ok(None);
        }
        let id: Ipv4Addr = text.parse().map_err(|_| format!("{text:?} is not an IPv4 address"))?;
        if id.is_unspecified() || id.is_multicast() {
            return Err("must be a unicast IPv4 address".into());
        }
        Ok(Some(id))
    }
}

/// The control-plane VIP: one address (/32 or /128); empty means none.
impl FromConfig for Option<IpNet> {
    fn from_config(text: &str) -> Result<Self, String> {
        if text.is_empty() {
            return Ok(None);
        }
        super::vip::parse_vip(text).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_read_once_and_bad_ones_kept_with_their_problem() {
        assert_eq!(Checked::<Protocol>::read("ospf"), Checked::Valid(Protocol::Ospf));
        let isis = Checked::<Protocol>::read("isis");
        assert_eq!(isis.problem(), Some("must be \"bgp\" or \"ospf\", not \"isis\""));
        assert_eq!(
            Checked::<novanet_bgp::wire::Family>::read("IPv6_Unicast").valid(),
            Some(&novanet_bgp::wire::Family::IPV6_UNICAST)
        );
        assert_eq!(Checked::<Option<Ipv4Addr>>::read(""), Checked::Valid(None));
        assert!(Checked::<Option<Ipv4Addr>>::read("224.0.0.1").problem().is_some());
        assert_eq!(
            Checked::<Option<IpNet>>::read("10.0.0.250").valid(),
            Some(&Some("10.0.0.250/32".parse().unwrap()))
        );
        assert!(Checked::<Option<IpNet>>::read("10.0.0.0/24")
            .problem()
            .unwrap()
            .contains("one address"));
    }
}
