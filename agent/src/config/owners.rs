//! The `owners` section: who may use the RouteControl API, with which
//! token and which prefixes (what they may do is `control::owners`).

pub use super::capabilities::Capabilities;
use ipnet::IpNet;
use serde::Deserialize;
use std::collections::BTreeMap;

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
    /// What the owner may do besides advertising prefixes; absent, it
    /// keeps every RPC (the least surprising default for configurations
    /// written before capabilities existed).
    #[serde(default)]
    pub capabilities: Option<Capabilities>,
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

/// An owner's token: `token_file`'s contents, or `token` with `${VAR}`
/// expanded; errors name the key path.
pub fn token(name: &str, o: &OwnerConfig) -> Result<String, (String, String)> {
    let token = match &o.token_file {
        Some(f) => std::fs::read_to_string(f)
            .map(|t| t.trim().to_string())
            .map_err(|e| (format!("owners.{name}.token_file"), format!("{f}: {e}")))?,
        None => expand_env(&o.token).map_err(|e| (format!("owners.{name}.token"), e))?,
    };
    if token.is_empty() {
        return Err((format!("owners.{name}.token"), "required (or token_file)".into()));
    }
    Ok(token)
}

/// Every problem of the owners: tokens that do not resolve, grants that
/// allow everything or name nothing.
pub fn check(owners: &BTreeMap<String, OwnerConfig>) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (name, o) in owners {
        out.extend(token(name, o).err());
        if let Some(c) = &o.capabilities {
            out.extend(super::capabilities::problems(
                &format!("owners.{name}"),
                c,
                &o.allowed_prefixes.allowed_cidrs,
            ));
        }
    }
    out
}
