//! Owners of routing intents and what they may do: pre-shared tokens, the
//! prefix policy types (`host_only`, `subnet`, `any`), `allowed_cidrs`, and
//! cross-owner conflicts (only `admin` overrides).

pub use crate::config::owners::{expand_env, AllowedPrefixes, OwnerConfig, PrefixType, DEFAULT_MAX_INTENTS};
use ipnet::IpNet;
use std::collections::BTreeMap;

/// The owner that may take over another owner's prefix.
pub const ADMIN: &str = "admin";

/// The owners with their resolved tokens.
#[derive(Debug, Clone, Default)]
pub struct Owners {
    owners: BTreeMap<String, (String, AllowedPrefixes)>,
    max_intents: BTreeMap<String, usize>,
    enforce_peer_max_prefix: BTreeMap<String, bool>,
}

/// Why a request is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    Unauthenticated(String),
    PermissionDenied(String),
}

impl Owners {
    /// Resolves tokens; errors name the owner's key path.
    pub fn from_config(cfg: &BTreeMap<String, OwnerConfig>) -> Result<Owners, (String, String)> {
        let mut owners = BTreeMap::new();
        let mut max_intents = BTreeMap::new();
        let mut enforce_peer_max_prefix = BTreeMap::new();
        for (name, o) in cfg {
            max_intents.insert(name.clone(), o.max_intents);
            enforce_peer_max_prefix.insert(name.clone(), o.enforce_peer_max_prefix);
            let token = crate::config::owners::token(name, o)?;
            owners.insert(name.clone(), (token, o.allowed_prefixes.clone()));
        }
        Ok(Owners {
            owners,
            max_intents,
            enforce_peer_max_prefix,
        })
    }

    /// How many intents an owner may hold.
    pub fn max_intents(&self, owner: &str) -> usize {
        self.max_intents.get(owner).copied().unwrap_or(DEFAULT_MAX_INTENTS)
    }

    /// Whether an owner's peer limits close sessions (otherwise they warn).
    pub fn enforces_peer_max_prefix(&self, owner: &str) -> bool {
        self.enforce_peer_max_prefix.get(owner).copied().unwrap_or(false)
    }

    pub fn names(&self) -> impl Iterator<Item = &String> {
        self.owners.keys()
    }

    /// Checks an owner's token. Unknown owners and wrong tokens get the
    /// same answer and take the same time: the comparison is of fixed-size
    /// digests, whatever the lengths, and runs for unknown owners too.
    pub fn authenticate(&self, owner: &str, token: &str) -> Result<(), Refusal> {
        let known = self.owners.get(owner);
        let expected = known.map(|(t, _)| t.as_str()).unwrap_or("\0unknown owner");
        if tokens_match(expected, token) && known.is_some() {
            Ok(())
        } else {
            Err(Refusal::Unauthenticated(
                "authentication failed: unknown owner or invalid token".into(),
            ))
        }
    }

    /// Checks a prefix against an owner's prefix policy.
    pub fn check_prefix(&self, owner: &str, prefix: &IpNet) -> Result<(), Refusal> {
        let Some((_, policy)) = self.owners.get(owner) else {
            return Err(Refusal::Unauthenticated(format!(
                "authentication failed: unknown owner {owner:?}"
            )));
        };
        let len = prefix.prefix_len();
        let ok_len = match (policy.kind, prefix) {
            (PrefixType::Any, _) => true,
            (PrefixType::HostOnly, IpNet::V4(_)) => len == 32,
            (PrefixType::HostOnly, IpNet::V6(_)) => len == 128,
            (PrefixType::Subnet, IpNet::V4(_)) => (8..=28).contains(&len),
            (PrefixType::Subnet, IpNet::V6(_)) => len != 128,
        };
        if !ok_len {
            return Err(Refusal::PermissionDenied(format!(
                "prefix {prefix} is not allowed for owner {owner:?} (policy {:?})",
                policy.kind
            )));
        }
        if !policy.allowed_cidrs.is_empty()
            && !policy
                .allowed_cidrs
                .iter()
                .any(|c| c.contains(&prefix.network()) && len >= c.prefix_len())
        {
            return Err(Refusal::PermissionDenied(format!(
                "prefix {prefix} is outside the allowed CIDRs of owner {owner:?}"
            )));
        }
        Ok(())
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

    #[test]
    fn env_expansion() {
        std::env::set_var("NOVANET_TEST_TOKEN_X", "s3cret");
        assert_eq!(expand_env("a-${NOVANET_TEST_TOKEN_X}-b").unwrap(), "a-s3cret-b");
        assert!(expand_env("${NOVANET_TEST_UNSET_Y}")
            .unwrap_err()
            .contains("NOVANET_TEST_UNSET_Y"));
    }
}
