//! Owners of routing intents and what they may do: pre-shared tokens, the
//! prefix policy types (`host_only`, `subnet`, `any`), `allowed_cidrs`, and
//! cross-owner conflicts (only `admin` overrides).

use ipnet::IpNet;
use serde::Deserialize;
use std::collections::BTreeMap;

/// The owner that may take over another owner's prefix.
pub const ADMIN: &str = "admin";

/// Prefix policy of an owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PrefixType {
    /// IPv4 /32 or IPv6 /128 only.
    HostOnly,
    /// IPv4 /8 to /28; IPv6 anything but /128.
    Subnet,
    /// Any length.
    Any,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AllowedPrefixes {
    #[serde(rename = "type", deserialize_with = "prefix_type_ci")]
    pub kind: PrefixType,
    #[serde(default)]
    pub allowed_cidrs: Vec<IpNet>,
}

fn prefix_type_ci<'de, D: serde::Deserializer<'de>>(d: D) -> Result<PrefixType, D::Error> {
    let s = String::deserialize(d)?;
    match s.to_ascii_lowercase().as_str() {
        "host_only" => Ok(PrefixType::HostOnly),
        "subnet" => Ok(PrefixType::Subnet),
        "any" => Ok(PrefixType::Any),
        other => Err(serde::de::Error::custom(format!(
            "{other:?} is not host_only, subnet or any"
        ))),
    }
}

/// One owner as configured. The token is given inline (`${VAR}` expanded
/// from the environment) or read from a file (a mounted Secret).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OwnerConfig {
    #[serde(default)]
    pub token: String,
    #[serde(default)]
    pub token_file: Option<String>,
    pub allowed_prefixes: AllowedPrefixes,
    /// Intents the owner may hold at once (peers, prefixes, BFD, OSPF).
    #[serde(default = "default_max_intents")]
    pub max_intents: usize,
    /// The `max_prefix` of this owner's peers closes a session past it
    /// (true) or only warns (false, as the API always did).
    #[serde(default)]
    pub enforce_peer_max_prefix: bool,
}

/// Intents per owner unless `max_intents` says otherwise.
pub const DEFAULT_MAX_INTENTS: usize = 10_000;

fn default_max_intents() -> usize {
    DEFAULT_MAX_INTENTS
}

/// Expands `${VAR}` from the environment; an unset variable is an error
/// naming it.
pub fn expand_env(s: &str) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find("${") {
        out.push_str(&rest[..i]);
        let after = &rest[i + 2..];
        let j = after.find('}').ok_or_else(|| format!("unclosed ${{ in {s:?}"))?;
        let name = &after[..j];
        let v = std::env::var(name).map_err(|_| format!("environment variable {name} is not set"))?;
        out.push_str(&v);
        rest = &after[j + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

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
            let token = match &o.token_file {
                Some(f) => std::fs::read_to_string(f)
                    .map(|t| t.trim().to_string())
                    .map_err(|e| (format!("owners.{name}.token_file"), format!("{f}: {e}")))?,
                None => expand_env(&o.token).map_err(|e| (format!("owners.{name}.token"), e))?,
            };
            if token.is_empty() {
                return Err((format!("owners.{name}.token"), "required (or token_file)".into()));
            }
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
