//! `owners.NAME.capabilities`: what a RouteControl owner may do besides
//! advertising its prefixes. Present, it denies everything it does not
//! grant; absent, the owner keeps the RPCs every owner had (see
//! `docs/configuration.md`, "What an owner may do").

use ipnet::IpNet;
use serde::Deserialize;

/// An owner's grants. Every field left out grants nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Capabilities {
    /// ConfigureBGP: change the node's local AS and router id.
    #[serde(default)]
    pub configure_bgp: bool,
    /// ApplyPeer: BGP neighbours the owner may add.
    #[serde(default)]
    pub peers: Option<PeerGrant>,
    /// EnableBFD: standalone BFD sessions.
    #[serde(default)]
    pub bfd: Option<BfdGrant>,
    /// EnableOSPF: interfaces the owner may put into OSPF.
    #[serde(default)]
    pub ospf: Option<OspfGrant>,
    /// Take over a prefix another owner advertises (what the owner named
    /// `admin` does without capabilities).
    #[serde(default)]
    pub override_prefixes: bool,
}

/// Which BGP neighbours an owner may add, and what their routes may do.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerGrant {
    /// Ranges the neighbour address must be in.
    pub neighbors: Vec<IpNet>,
    /// ASNs the neighbour may have: numbers or "FIRST-LAST" ranges.
    pub remote_as: Vec<AsRange>,
    /// The most routes such a peer may send; more closes the session. A
    /// request's own `max_prefix` may only be lower.
    #[serde(default = "default_max_prefix")]
    pub max_prefix: u32,
    /// Whether the peer's routes reach this node's RIB and kernel
    /// (`"default"`: the node's import policy) or not (`"none"`, the
    /// default: a peer to advertise to).
    #[serde(default)]
    pub import: PeerImport,
}

/// The routes-in policy of an owner's peers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PeerImport {
    #[default]
    None,
    Default,
}

/// The default (and largest sensible) limit of a granted peer.
pub const GRANTED_MAX_PREFIX: u32 = 1000;

fn default_max_prefix() -> u32 {
    GRANTED_MAX_PREFIX
}

/// An inclusive range of ASNs, written `65001` or `"64512-65534"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AsRange(pub u32, pub u32);

impl AsRange {
    pub fn contains(&self, asn: u32) -> bool {
        (self.0..=self.1).contains(&asn)
    }
}

impl<'de> Deserialize<'de> for AsRange {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            One(u32),
            Text(String),
        }
        let parse = |s: &str| {
            s.trim()
                .parse::<u32>()
                .map_err(|_| serde::de::Error::custom(format!("{s:?} is not an ASN")))
        };
        let range = match Raw::deserialize(d)? {
            Raw::One(n) => AsRange(n, n),
            Raw::Text(t) => match t.split_once('-') {
                Some((a, b)) => AsRange(parse(a)?, parse(b)?),
                None => {
                    let n = parse(&t)?;
                    AsRange(n, n)
                }
            },
        };
        if range.0 == 0 || range.0 > range.1 {
            return Err(serde::de::Error::custom(format!(
                "{}-{} is not a range of ASNs (1 to 4294967295, first not above last)",
                range.0, range.1
            )));
        }
        Ok(range)
    }
}

/// Which standalone BFD sessions an owner may run.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BfdGrant {
    /// Ranges the peer address must be in.
    pub peers: Vec<IpNet>,
    /// The fastest transmit and receive interval the owner may ask for.
    #[serde(default = "default_min_interval")]
    pub min_interval_ms: u32,
}

fn default_min_interval() -> u32 {
    100
}

/// Which interfaces an owner may put into OSPF: names, or a prefix
/// followed by `*` (`"bond*"`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OspfGrant {
    pub interfaces: Vec<String>,
}

impl OspfGrant {
    pub fn allows(&self, interface: &str) -> bool {
        self.interfaces.iter().any(|p| match p.strip_suffix('*') {
            Some(prefix) => interface.starts_with(prefix),
            None => p == interface,
        })
    }
}

/// True when a range lets everything through.
fn everything(n: &IpNet) -> bool {
    n.prefix_len() == 0
}

/// The problems of an owner's grants, each with its key path under
/// `at` (`owners.NAME`), and of the prefix ranges they come with.
pub fn problems(at: &str, c: &Capabilities, allowed_cidrs: &[IpNet]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (i, n) in allowed_cidrs.iter().enumerate() {
        if everything(n) {
            out.push((
                format!("{at}.allowed_prefixes.allowed_cidrs[{i}]"),
                format!("{n} allows every address: name the ranges the owner may advertise"),
            ));
        }
    }
    if let Some(p) = &c.peers {
        let at = format!("{at}.capabilities.peers");
        if p.neighbors.is_empty() {
            out.push((
                format!("{at}.neighbors"),
                "required: the ranges neighbours must be in".into(),
            ));
        }
        for (i, n) in p.neighbors.iter().enumerate() {
            if everything(n) {
                out.push((
                    format!("{at}.neighbors[{i}]"),
                    format!("{n} allows every address: name the neighbours' ranges"),
                ));
            }
        }
        if p.remote_as.is_empty() {
            out.push((
                format!("{at}.remote_as"),
                "required: the ASNs neighbours may have".into(),
            ));
        }
        if p.max_prefix == 0 {
            out.push((format!("{at}.max_prefix"), "must be at least 1".into()));
        }
    }
    if let Some(b) = &c.bfd {
        let at = format!("{at}.capabilities.bfd");
        if b.peers.is_empty() {
            out.push((
                format!("{at}.peers"),
                "required: the ranges BFD peers must be in".into(),
            ));
        }
        for (i, n) in b.peers.iter().enumerate() {
            if everything(n) {
                out.push((
                    format!("{at}.peers[{i}]"),
                    format!("{n} allows every address: name the BFD peers' ranges"),
                ));
            }
        }
        if !(MIN_BFD_INTERVAL_MS..=MAX_BFD_INTERVAL_MS).contains(&b.min_interval_ms) {
            out.push((
                format!("{at}.min_interval_ms"),
                format!("must be {MIN_BFD_INTERVAL_MS} to {MAX_BFD_INTERVAL_MS}"),
            ));
        }
    }
    if let Some(o) = &c.ospf {
        let at = format!("{at}.capabilities.ospf");
        if o.interfaces.is_empty() {
            out.push((
                format!("{at}.interfaces"),
                "required: the interfaces the owner may enable".into(),
            ));
        }
        for (i, name) in o.interfaces.iter().enumerate() {
            if name.is_empty() || name == "*" {
                out.push((
                    format!("{at}.interfaces[{i}]"),
                    format!("{name:?} names no interface: give names or prefixes like \"bond*\""),
                ));
            }
        }
    }
    out
}

/// The fastest BFD interval any owner may ask for.
pub const MIN_BFD_INTERVAL_MS: u32 = 10;
/// The slowest BFD interval any owner may ask for.
pub const MAX_BFD_INTERVAL_MS: u32 = 60_000;

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Capabilities, String> {
        serde_json::from_str(text).map_err(|e| e.to_string())
    }

    #[test]
    fn nothing_written_grants_nothing() {
        assert_eq!(parse("{}").unwrap(), Capabilities::default());
        let c = parse(r#"{"peers": {"neighbors": ["10.0.0.0/24"], "remote_as": [65001]}}"#).unwrap();
        let p = c.peers.unwrap();
        assert_eq!((p.max_prefix, p.import), (GRANTED_MAX_PREFIX, PeerImport::None));
        assert!(!c.configure_bgp && c.bfd.is_none() && c.ospf.is_none() && !c.override_prefixes);
    }

    #[test]
    fn asn_ranges_are_numbers_or_first_dash_last() {
        let c =
            parse(r#"{"peers": {"neighbors": ["10.0.0.0/24"], "remote_as": [65001, "64512-65534", "7"]}}"#).unwrap();
        assert_eq!(
            c.peers.unwrap().remote_as,
            [AsRange(65001, 65001), AsRange(64512, 65534), AsRange(7, 7)]
        );
        for bad in [r#""65534-64512""#, "0", r#""x""#, r#""1-y""#] {
            let e = parse(&format!(
                r#"{{"peers": {{"neighbors": ["10.0.0.0/24"], "remote_as": [{bad}]}}}}"#
            ));
            assert!(e.is_err(), "{bad}");
        }
    }

    #[test]
    fn unknown_grants_are_errors() {
        let e = parse(r#"{"configure_bpg": true}"#).unwrap_err();
        assert!(e.contains("configure_bpg"), "{e}");
    }

    #[test]
    fn grants_that_allow_everything_or_nothing_are_named() {
        let c = parse(
            r#"{"peers": {"neighbors": ["0.0.0.0/0"], "remote_as": [], "max_prefix": 0},
                "bfd": {"peers": [], "min_interval_ms": 1}, "ospf": {"interfaces": ["*"]}}"#,
        )
        .unwrap();
        let paths: Vec<String> = problems("owners.x", &c, &["::/0".parse().unwrap()])
            .into_iter()
            .map(|(p, _)| p)
            .collect();
        assert_eq!(
            paths,
            [
                "owners.x.allowed_prefixes.allowed_cidrs[0]",
                "owners.x.capabilities.peers.neighbors[0]",
                "owners.x.capabilities.peers.remote_as",
                "owners.x.capabilities.peers.max_prefix",
                "owners.x.capabilities.bfd.peers",
                "owners.x.capabilities.bfd.min_interval_ms",
                "owners.x.capabilities.ospf.interfaces[0]",
            ]
        );
    }

    #[test]
    fn ospf_interfaces_are_names_or_prefixes() {
        let g = OspfGrant {
            interfaces: vec!["eth1".into(), "bond*".into()],
        };
        assert!(g.allows("eth1") && g.allows("bond0") && g.allows("bond0.100"));
        assert!(!g.allows("eth10") && !g.allows("eth0") && !g.allows("nv1234"));
    }
}
