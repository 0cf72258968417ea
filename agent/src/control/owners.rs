//! Owners of routing intents and what they may do: pre-shared tokens, the
//! prefix policy types (`host_only`, `subnet`, `any`), `allowed_cidrs`,
//! cross-owner conflicts, and the grants of `capabilities` (ConfigureBGP,
//! peers, BFD sessions, OSPF interfaces). An owner with `capabilities`
//! may do only what they grant; one without keeps every RPC.

use crate::config::capabilities::{Capabilities, PeerImport};
pub use crate::config::owners::{expand_env, AllowedPrefixes, OwnerConfig, PrefixType, DEFAULT_MAX_INTENTS};
use ipnet::IpNet;
use std::collections::BTreeMap;
use std::net::IpAddr;

/// The owner that may take over another owner's prefix when it has no
/// `capabilities` (with them, `override_prefixes` says so).
pub const ADMIN: &str = "admin";

/// One owner as the control plane uses it.
#[derive(Debug, Clone)]
struct Owner {
    token: String,
    prefixes: AllowedPrefixes,
    max_intents: usize,
    enforce_peer_max_prefix: bool,
    capabilities: Option<Capabilities>,
}

/// The owners with their resolved tokens.
#[derive(Debug, Clone, Default)]
pub struct Owners {
    owners: BTreeMap<String, Owner>,
}

/// Why a request is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    Unauthenticated(String),
    PermissionDenied(String),
}

/// What an owner's peer is held to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerTerms {
    pub max_prefix: u32,
    /// Past `max_prefix` the session closes (otherwise it warns).
    pub enforce_max_prefix: bool,
    /// The peer's routes reach the RIB and the kernel.
    pub import_routes: bool,
}

fn denied(m: String) -> Refusal {
    Refusal::PermissionDenied(m)
}

impl Owners {
    /// Resolves tokens; errors name the owner's key path.
    pub fn from_config(cfg: &BTreeMap<String, OwnerConfig>) -> Result<Owners, (String, String)> {
        let mut owners = BTreeMap::new();
        for (name, o) in cfg {
            let token = crate::config::owners::token(name, o)?;
            owners.insert(
                name.clone(),
                Owner {
                    token,
                    prefixes: o.allowed_prefixes.clone(),
                    max_intents: o.max_intents,
                    enforce_peer_max_prefix: o.enforce_peer_max_prefix,
                    capabilities: o.capabilities.clone(),
                },
            );
        }
        Ok(Owners { owners })
    }

    /// How many intents an owner may hold.
    pub fn max_intents(&self, owner: &str) -> usize {
        self.owners.get(owner).map_or(DEFAULT_MAX_INTENTS, |o| o.max_intents)
    }

    pub fn names(&self) -> impl Iterator<Item = &String> {
        self.owners.keys()
    }

    /// Owners without `capabilities`, which keep every RPC.
    pub fn without_capabilities(&self) -> impl Iterator<Item = &String> {
        self.owners
            .iter()
            .filter(|(_, o)| o.capabilities.is_none())
            .map(|(n, _)| n)
    }

    /// Checks an owner's token. Unknown owners and wrong tokens get the
    /// same answer and take the same time: the comparison is of fixed-size
    /// digests, whatever the lengths, and runs for unknown owners too.
    pub fn authenticate(&self, owner: &str, token: &str) -> Result<(), Refusal> {
        let known = self.owners.get(owner);
        let expected = known.map(|o| o.token.as_str()).unwrap_or("\0unknown owner");
        if tokens_match(expected, token) && known.is_some() {
            Ok(())
        } else {
            Err(Refusal::Unauthenticated(
                "authentication failed: unknown owner or invalid token".into(),
            ))
        }
    }

    fn get(&self, owner: &str) -> Result<&Owner, Refusal> {
        self.owners
            .get(owner)
            .ok_or_else(|| Refusal::Unauthenticated(format!("authentication failed: unknown owner {owner:?}")))
    }

    /// Whether the owner's prefixes take over another owner's.
    pub fn overrides_prefixes(&self, owner: &str) -> bool {
        match self.owners.get(owner) {
            Some(Owner {
                capabilities: Some(c), ..
            }) => c.override_prefixes,
            Some(_) => owner == ADMIN,
            None => false,
        }
    }

    /// Checks a prefix against an owner's prefix policy.
    pub fn check_prefix(&self, owner: &str, prefix: &IpNet) -> Result<(), Refusal> {
        let o = self.get(owner)?;
        let policy = &o.prefixes;
        let len = prefix.prefix_len();
        let ok_len = match (policy.kind, prefix) {
            (PrefixType::Any, _) => true,
            (PrefixType::HostOnly, IpNet::V4(_)) => len == 32,
            (PrefixType::HostOnly, IpNet::V6(_)) => len == 128,
            (PrefixType::Subnet, IpNet::V4(_)) => (8..=28).contains(&len),
            (PrefixType::Subnet, IpNet::V6(_)) => len != 128,
        };
        if !ok_len {
            return Err(denied(format!(
                "prefix {prefix} is not allowed for owner {owner:?} (policy {:?})",
                policy.kind
            )));
        }
        if policy.allowed_cidrs.is_empty() {
            if o.capabilities.is_some() {
                return Err(denied(format!(
                    "owner {owner:?} may advertise no prefix: owners.{owner}.allowed_prefixes.allowed_cidrs is empty"
                )));
            }
            return Ok(());
        }
        if !policy
            .allowed_cidrs
            .iter()
            .any(|c| c.contains(&prefix.network()) && len >= c.prefix_len())
        {
            return Err(denied(format!(
                "prefix {prefix} is outside the allowed CIDRs of owner {owner:?}"
            )));
        }
        Ok(())
    }

    /// The owner's grants, or None when it has no `capabilities`.
    fn grants(&self, owner: &str) -> Result<Option<&Capabilities>, Refusal> {
        Ok(self.get(owner)?.capabilities.as_ref())
    }

    /// ConfigureBGP.
    pub fn may_configure_bgp(&self, owner: &str) -> Result<(), Refusal> {
        match self.grants(owner)? {
            Some(c) if !c.configure_bgp => Err(denied(format!(
                "owner {owner:?} may not call ConfigureBGP: owners.{owner}.capabilities.configure_bgp is not true"
            ))),
            _ => Ok(()),
        }
    }

    /// ApplyPeer for `addr` in `remote_as`, asking for `max_prefix` (0:
    /// the default): the terms the peer is held to.
    pub fn peer_terms(&self, owner: &str, addr: IpAddr, remote_as: u32, max_prefix: u32) -> Result<PeerTerms, Refusal> {
        let o = self.get(owner)?;
        let Some(c) = &o.capabilities else {
            return Ok(PeerTerms {
                max_prefix: if max_prefix == 0 {
                    crate::peers::spec::DEFAULT_MAX_PREFIX
                } else {
                    max_prefix
                },
                enforce_max_prefix: o.enforce_peer_max_prefix,
                import_routes: true,
            });
        };
        let Some(g) = &c.peers else {
            return Err(denied(format!(
                "owner {owner:?} may not add BGP peers: owners.{owner}.capabilities.peers is not set"
            )));
        };
        if !g.neighbors.iter().any(|n| n.contains(&addr)) {
            return Err(denied(format!(
                "neighbor {addr} is outside owners.{owner}.capabilities.peers.neighbors"
            )));
        }
        if !g.remote_as.iter().any(|r| r.contains(remote_as)) {
            return Err(denied(format!(
                "remote AS {remote_as} is outside owners.{owner}.capabilities.peers.remote_as"
            )));
        }
        Ok(PeerTerms {
            max_prefix: if max_prefix == 0 {
                g.max_prefix
            } else {
                max_prefix.min(g.max_prefix)
            },
            enforce_max_prefix: true,
            import_routes: g.import == PeerImport::Default,
        })
    }

    /// EnableBFD toward `addr` at the fastest of its two intervals.
    pub fn may_run_bfd(&self, owner: &str, addr: IpAddr, fastest_ms: Option<u32>) -> Result<(), Refusal> {
        let Some(c) = self.grants(owner)? else { return Ok(()) };
        let Some(g) = &c.bfd else {
            return Err(denied(format!(
                "owner {owner:?} may not run BFD sessions: owners.{owner}.capabilities.bfd is not set"
            )));
        };
        if !g.peers.iter().any(|n| n.contains(&addr)) {
            return Err(denied(format!(
                "BFD peer {addr} is outside owners.{owner}.capabilities.bfd.peers"
            )));
        }
        if let Some(ms) = fastest_ms.filter(|ms| *ms < g.min_interval_ms) {
            return Err(denied(format!(
                "an interval of {ms} ms is faster than owners.{owner}.capabilities.bfd.min_interval_ms ({} ms)",
                g.min_interval_ms
            )));
        }
        Ok(())
    }

    /// EnableOSPF on `interface`.
    pub fn may_enable_ospf(&self, owner: &str, interface: &str) -> Result<(), Refusal> {
        match self.grants(owner)? {
            None => Ok(()),
            Some(c) => match &c.ospf {
                None => Err(denied(format!(
                    "owner {owner:?} may not enable OSPF: owners.{owner}.capabilities.ospf is not set"
                ))),
                Some(g) if !g.allows(interface) => Err(denied(format!(
                    "interface {interface} is not in owners.{owner}.capabilities.ospf.interfaces"
                ))),
                Some(_) => Ok(()),
            },
        }
    }
}

/// Compares the SHA-1 digests of two tokens in constant time: neither the
/// position of the first difference nor the lengths show in the timing.
fn tokens_match(expected: &str, given: &str) -> bool {
    use sha1::{Digest, Sha1};
    let (a, b) = (Sha1::digest(expected.as_bytes()), Sha1::digest(given.as_bytes()));
    a.iter().zip(b.iter()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owners() -> Owners {
        let cfg: BTreeMap<String, OwnerConfig> = serde_json::from_str(
            r#"{
              "novaedge": {"token": "e", "allowed_prefixes": {"type": "host_only", "allowed_cidrs": ["10.0.0.0/8", "192.168.0.0/16"]}},
              "novanet": {"token": "n", "allowed_prefixes": {"type": "subnet", "allowed_cidrs": ["10.244.0.0/16"]}},
              "admin": {"token": "a", "allowed_prefixes": {"type": "ANY"}}
            }"#,
        )
        .unwrap();
        Owners::from_config(&cfg).unwrap()
    }

    fn p(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    #[test]
    fn tokens() {
        let o = owners();
        assert!(o.authenticate("novaedge", "e").is_ok());
        assert!(matches!(
            o.authenticate("novaedge", "x"),
            Err(Refusal::Unauthenticated(_))
        ));
        assert!(matches!(
            o.authenticate("nobody", "e"),
            Err(Refusal::Unauthenticated(_))
        ));
        // Nothing tells an unknown owner from a wrong token.
        let msg = |r: Result<(), Refusal>| match r {
            Err(Refusal::Unauthenticated(m)) => m,
            other => panic!("{other:?}"),
        };
        assert_eq!(msg(o.authenticate("novaedge", "x")), msg(o.authenticate("nobody", "e")));
        assert!(o.authenticate("novaedge", "e-longer").is_err());
        assert!(o.authenticate("novaedge", "").is_err());
    }

    #[test]
    fn violations_of_unknown_owners_share_one_label() {
        let o = owners();
        assert_eq!(crate::control::violation_owner(&o, "novaedge"), "novaedge");
        assert_eq!(crate::control::violation_owner(&o, "made-up-owner-93"), "_unknown");
    }

    #[test]
    fn prefix_types_and_cidrs() {
        let o = owners();
        assert!(o.check_prefix("novaedge", &p("10.1.2.3/32")).is_ok());
        assert!(o.check_prefix("novaedge", &p("10.1.2.0/24")).is_err(), "host_only");
        assert!(
            o.check_prefix("novaedge", &p("172.16.0.1/32")).is_err(),
            "outside allowed CIDRs"
        );
        assert!(o.check_prefix("novanet", &p("10.244.1.0/24")).is_ok());
        assert!(
            o.check_prefix("novanet", &p("10.244.1.0/29")).is_err(),
            "subnet is /8-/28"
        );
        assert!(
            o.check_prefix("novanet", &p("10.0.0.0/8")).is_err(),
            "shorter than the allowed CIDR"
        );
        assert!(o.check_prefix("admin", &p("0.0.0.0/0")).is_ok());
    }

    fn granted() -> Owners {
        let cfg: BTreeMap<String, OwnerConfig> = serde_json::from_str(
            r#"{
              "edge": {"token": "e", "allowed_prefixes": {"type": "host_only", "allowed_cidrs": ["10.96.0.0/12"]},
                       "capabilities": {"bfd": {"peers": ["10.0.0.0/24"], "min_interval_ms": 50}}},
              "fabric": {"token": "f", "allowed_prefixes": {"type": "subnet"},
                       "capabilities": {"configure_bgp": true, "override_prefixes": true,
                         "peers": {"neighbors": ["10.0.0.0/24"], "remote_as": ["65010-65020"], "max_prefix": 100, "import": "default"},
                         "ospf": {"interfaces": ["bond*"]}}},
              "legacy": {"token": "l", "allowed_prefixes": {"type": "any"}, "enforce_peer_max_prefix": true}
            }"#,
        )
        .unwrap();
        Owners::from_config(&cfg).unwrap()
    }

    fn is_denied<T: std::fmt::Debug>(r: Result<T, Refusal>, names: &str) -> bool {
        match r {
            Err(Refusal::PermissionDenied(m)) => m.contains(names),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn capabilities_deny_what_they_do_not_grant() {
        let o = granted();
        let a = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(is_denied(
            o.may_configure_bgp("edge"),
            "owners.edge.capabilities.configure_bgp"
        ));
        assert!(o.may_configure_bgp("fabric").is_ok());
        assert!(is_denied(
            o.peer_terms("edge", a("10.0.0.1"), 65010, 0),
            "owners.edge.capabilities.peers"
        ));
        assert!(is_denied(
            o.peer_terms("fabric", a("10.0.1.1"), 65010, 0),
            "peers.neighbors"
        ));
        assert!(is_denied(
            o.peer_terms("fabric", a("10.0.0.1"), 65021, 0),
            "peers.remote_as"
        ));
        assert_eq!(
            o.peer_terms("fabric", a("10.0.0.1"), 65015, 5000).unwrap(),
            PeerTerms {
                max_prefix: 100,
                enforce_max_prefix: true,
                import_routes: true
            },
            "a request may only lower the granted limit"
        );
        assert!(is_denied(
            o.may_run_bfd("fabric", a("10.0.0.1"), Some(300)),
            "owners.fabric.capabilities.bfd"
        ));
        assert!(o.may_run_bfd("edge", a("10.0.0.1"), Some(50)).is_ok());
        assert!(is_denied(
            o.may_run_bfd("edge", a("10.0.0.1"), Some(20)),
            "min_interval_ms"
        ));
        assert!(is_denied(o.may_run_bfd("edge", a("10.0.2.1"), Some(300)), "bfd.peers"));
        assert!(is_denied(
            o.may_enable_ospf("edge", "bond0"),
            "owners.edge.capabilities.ospf"
        ));
        assert!(o.may_enable_ospf("fabric", "bond0").is_ok());
        assert!(is_denied(o.may_enable_ospf("fabric", "eth0"), "ospf.interfaces"));
        assert!(is_denied(
            o.check_prefix("fabric", &p("10.1.0.0/16")),
            "allowed_cidrs is empty"
        ));
        assert!(o.overrides_prefixes("fabric") && !o.overrides_prefixes("edge"));
    }

    #[test]
    fn owners_without_capabilities_keep_every_rpc() {
        let o = granted();
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        assert!(o.may_configure_bgp("legacy").is_ok());
        assert_eq!(
            o.peer_terms("legacy", a, 1, 0).unwrap(),
            PeerTerms {
                max_prefix: crate::peers::spec::DEFAULT_MAX_PREFIX,
                enforce_max_prefix: true,
                import_routes: true
            }
        );
        assert!(o.may_run_bfd("legacy", a, Some(10)).is_ok());
        assert!(o.may_enable_ospf("legacy", "eth0").is_ok());
        assert!(o.check_prefix("legacy", &p("0.0.0.0/0")).is_ok());
        assert_eq!(o.without_capabilities().collect::<Vec<_>>(), ["legacy"]);
        assert!(!o.overrides_prefixes("legacy"));
        assert!(
            owners().overrides_prefixes(ADMIN),
            "admin overrides without capabilities"
        );
    }

    #[test]
    fn env_expansion() {
        std::env::set_var("NOVANET_TEST_TOKEN_X", "s3cret");
        assert_eq!(expand_env("a-${NOVANET_TEST_TOKEN_X}-b").unwrap(), "a-s3cret-b");
        assert!(expand_env("${NOVANET_TEST_UNSET_Y}")
            .unwrap_err()
            .contains("NOVANET_TEST_UNSET_Y"));
    }
}
