//! Route policy: import and export filters by prefix (with length ranges),
//! AS path and community, plus the built-in Kubernetes defaults.
//!
//! A [`Policy`] is an ordered list of [`Rule`]s; the first rule whose
//! conditions all match decides, otherwise the policy's default applies.
//! [`PeerPolicy`] is what a peer's `import` / `export` setting resolves to.

use crate::wire::{community, PathAttributes};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Accept or reject.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Accept,
    #[default]
    Reject,
}

/// A prefix with an optional length range: `10.0.0.0/8` with `le: 24`
/// matches every prefix inside 10/8 from /8 to /24.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrefixMatch {
    pub prefix: IpNet,
    #[serde(default)]
    pub ge: Option<u8>,
    #[serde(default)]
    pub le: Option<u8>,
}

impl PrefixMatch {
    pub fn matches(&self, p: &IpNet) -> bool {
        if !self.prefix.contains(p) || std::mem::discriminant(&self.prefix) != std::mem::discriminant(p) {
            return false;
        }
        let len = p.prefix_len();
        match (self.ge, self.le) {
            (None, None) => len == self.prefix.prefix_len(),
            (ge, le) => {
                len >= ge.unwrap_or(self.prefix.prefix_len()) && len <= le.unwrap_or(self.prefix.max_prefix_len())
            }
        }
    }
}

/// Changes a rule makes to an accepted route.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RouteSet {
    #[serde(default)]
    pub local_pref: Option<u32>,
    #[serde(default)]
    pub med: Option<u32>,
    /// Communities to add, as `ASN:VALUE` strings or well-known names.
    #[serde(default)]
    pub add_communities: Vec<Community>,
}

/// One rule: every given condition must match.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Matches when the prefix matches any entry (empty: any prefix).
    #[serde(default)]
    pub prefixes: Vec<PrefixMatch>,
    /// Matches when the AS path contains this AS.
    #[serde(default)]
    pub as_path_contains: Option<u32>,
    /// Matches when the route carries this community (`ASN:VALUE`).
    #[serde(default)]
    pub community: Option<Community>,
    pub action: Verdict,
    #[serde(default)]
    pub set: Option<RouteSet>,
}

/// A named policy: rules in order, then the default.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    #[serde(default)]
    pub rules: Vec<Rule>,
    #[serde(default)]
    pub default: Verdict,
}

/// A standard community (RFC 1997), parsed when the configuration is
/// loaded: written `ASN:VALUE` (each 0-65535) or as a well-known name
/// (`no_export`, `no_advertise`, `no_export_subconfed`,
/// `graceful_shutdown`); anything else is a configuration error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Community(pub u32);

impl std::str::FromStr for Community {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        parse_community(s).map(Community).ok_or_else(|| {
            format!("{s:?} is not a community: ASN:VALUE with both 0-65535, or no_export, no_advertise, no_export_subconfed, graceful_shutdown")
        })
    }
}

impl std::fmt::Display for Community {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.0 >> 16, self.0 & 0xffff)
    }
}

impl Serialize for Community {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Community {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Parses `ASN:VALUE` or a well-known community name.
pub fn parse_community(s: &str) -> Option<u32> {
    match s.to_ascii_lowercase().replace('-', "_").as_str() {
        "no_export" => return Some(community::NO_EXPORT),
        "no_advertise" => return Some(community::NO_ADVERTISE),
        "no_export_subconfed" => return Some(community::NO_EXPORT_SUBCONFED),
        "graceful_shutdown" => return Some(community::GRACEFUL_SHUTDOWN),
        _ => {}
    }
    let (a, b) = s.split_once(':')?;
    Some((a.trim().parse::<u16>().ok()? as u32) << 16 | b.trim().parse::<u16>().ok()? as u32)
}

/// Why a route was accepted or rejected, as `explain` shows it. Built
/// without allocating: fixed texts are static, a named policy's rule is
/// its shared name and a number; the text is made only when shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    Text(&'static str),
    /// Rule `rule` (from 1) of a named policy decided.
    Rule {
        policy: Arc<str>,
        rule: usize,
    },
    /// No rule of a named policy matched: its default decided.
    PolicyDefault {
        policy: Arc<str>,
    },
    /// A reason made for a rare case.
    Owned(String),
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reason::Text(t) => f.write_str(t),
            Reason::Rule { policy, rule } => write!(f, "policy {policy} rule {rule}"),
            Reason::PolicyDefault { policy } => write!(f, "policy {policy} default"),
            Reason::Owned(s) => f.write_str(s),
        }
    }
}

impl From<&'static str> for Reason {
    fn from(t: &'static str) -> Self {
        Reason::Text(t)
    }
}

impl From<String> for Reason {
    fn from(s: String) -> Self {
        Reason::Owned(s)
    }
}

/// Why a route was accepted or rejected: what `explain` shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub verdict: Verdict,
    pub reason: Reason,
}

impl Decision {
    pub fn new(verdict: Verdict, reason: impl Into<Reason>) -> Self {
        Decision {
            verdict,
            reason: reason.into(),
        }
    }
}

/// The outcome of applying a policy to a route: the verdict and, when a
/// rule changed the route, the new attributes.
pub struct Applied {
    pub decision: Decision,
    pub attrs: Option<PathAttributes>,
    /// How many more times the local AS goes in front of the AS path
    /// (export to an external peer only).
    pub prepend: u8,
}

impl Policy {
    fn rule_matches(rule: &Rule, prefix: &IpNet, attrs: &PathAttributes) -> bool {
        (rule.prefixes.is_empty() || rule.prefixes.iter().any(|m| m.matches(prefix)))
            && rule.as_path_contains.is_none_or(|a| attrs.as_path.contains(a))
            && rule.community.is_none_or(|c| attrs.has_community(c.0))
    }

    /// Applies the policy; attributes are copied only when a rule sets
    /// something, so an unchanged route keeps sharing its interned set.
    pub fn apply(&self, name: &Arc<str>, prefix: &IpNet, attrs: &PathAttributes) -> Applied {
        for (i, rule) in self.rules.iter().enumerate() {
            if Self::rule_matches(rule, prefix, attrs) {
                let reason = Reason::Rule {
                    policy: name.clone(),
                    rule: i + 1,
                };
                let decision = Decision::new(rule.action, reason);
                let changed = match (&rule.set, rule.action) {
                    (Some(set), Verdict::Accept) => {
                        let mut a = attrs.clone();
                        if let Some(lp) = set.local_pref {
                            a.local_pref = Some(lp);
                        }
                        if let Some(med) = set.med {
                            a.med = Some(med);
                        }
                        for c in &set.add_communities {
                            if !a.communities.contains(&c.0) {
                                a.communities.push(c.0);
                            }
                        }
                        Some(a)
                    }
                    _ => None,
                };
                return Applied {
                    decision,
                    attrs: changed,
                    prepend: 0,
                };
            }
        }
        Applied {
            decision: Decision::new(self.default, Reason::PolicyDefault { policy: name.clone() }),
            attrs: None,
            prepend: 0,
        }
    }
}

/// What a peer's `import` or `export` setting resolves to.
#[derive(Debug, Clone, PartialEq)]
pub enum PeerPolicy {
    /// The safe Kubernetes default (see [`import_default`] and
    /// [`export_default`]).
    Default,
    All,
    None,
    Named(Arc<str>, Arc<Policy>),
    /// A node of the mesh: the default rules, and only what that node may
    /// originate (import; as an export it is the default).
    Node(Arc<NodeRoutes>),
    /// The default rules, the node's own routes sent as an advertisement
    /// says (export; as an import it is the default).
    Advertise(Arc<Advertise>),
}

/// How the node's own routes go to a peer (a NovaBGPAdvertisement): some
/// withheld, the others with communities added, a LOCAL_PREF (internal
/// peers) and the AS path prepended (external peers).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Advertise {
    /// What the advertisement is called in decisions.
    pub name: String,
    /// The node's prefixes not advertised, and why.
    pub withheld: Vec<(IpNet, String)>,
    pub communities: Vec<u32>,
    pub large_communities: Vec<crate::wire::types::LargeCommunity>,
    pub local_pref: Option<u32>,
    pub prepend: u8,
}

impl Advertise {
    /// After [`export_default`] accepted a route of the node's own.
    fn export(&self, prefix: &IpNet, attrs: &PathAttributes) -> Applied {
        if let Some((_, why)) = self.withheld.iter().find(|(p, _)| p == prefix) {
            return Applied {
                decision: Decision::new(Verdict::Reject, format!("{}: {why}", self.name)),
                attrs: None,
                prepend: 0,
            };
        }
        let mut a = attrs.clone();
        for c in &self.communities {
            if !a.communities.contains(c) {
                a.communities.push(*c);
            }
        }
        for c in &self.large_communities {
            if !a.large_communities.contains(c) {
                a.large_communities.push(*c);
            }
        }
        if let Some(lp) = self.local_pref {
            a.local_pref = Some(lp);
        }
        Applied {
            decision: Decision::new(Verdict::Accept, format!("{}: originated by this node", self.name)),
            attrs: Some(a),
            prepend: self.prepend,
        }
    }
}

/// What one node of the cluster may originate: its own PodCIDRs (or parts
/// of them) and what every node may (the prefixes the RouteControl owners
/// may advertise, the control-plane VIP).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NodeRoutes {
    pub node: String,
    pub pod_cidrs: Vec<IpNet>,
    pub cluster: Arc<Vec<PrefixMatch>>,
}

impl NodeRoutes {
    /// The node-specific rule, after [`import_default`] accepted.
    pub fn import(&self, prefix: &IpNet) -> Decision {
        if self.pod_cidrs.iter().any(|c| c.contains(prefix)) {
            Decision::new(Verdict::Accept, format!("node {}: its PodCIDR", self.node))
        } else if self.cluster.iter().any(|m| m.matches(prefix)) {
            Decision::new(
                Verdict::Accept,
                format!("node {}: a prefix nodes may originate", self.node),
            )
        } else {
            Decision::new(
                Verdict::Reject,
                format!(
                    "node {}: neither its PodCIDR nor a prefix nodes may originate",
                    self.node
                ),
            )
        }
    }
}

impl PeerPolicy {
    pub fn name(&self) -> &str {
        match self {
            PeerPolicy::Default => "default",
            PeerPolicy::All => "all",
            PeerPolicy::None => "none",
            PeerPolicy::Named(n, _) => n,
            PeerPolicy::Node(_) => "node",
            PeerPolicy::Advertise(a) => &a.name,
        }
    }
}

/// What the node itself owns, for the default policies.
#[derive(Debug, Clone, Default)]
pub struct LocalPrefixes {
    /// The node's PodCIDRs: never imported, not even a covering or
    /// more specific route.
    pub pod_cidrs: Vec<IpNet>,
    /// Accept a default route from peers (off: a ToR's default route never
    /// replaces the node's own).
    pub accept_default_route: bool,
}

/// The default import rule: anything but routes that overlap the node's
/// own PodCIDR, and the default route unless allowed.
pub fn import_default(local: &LocalPrefixes, prefix: &IpNet) -> Decision {
    // The default route overlaps every PodCIDR: it is decided by its own
    // setting, before the overlap rule.
    if prefix.prefix_len() == 0 {
        return if local.accept_default_route {
            Decision::new(
                Verdict::Accept,
                "default import: default route accepted (accept_default_route)",
            )
        } else {
            Decision::new(Verdict::Reject, "default import: default route not accepted")
        };
    }
    if let Some(own) = local
        .pod_cidrs
        .iter()
        .find(|own| own.contains(prefix) || prefix.contains(*own))
    {
        return Decision::new(
            Verdict::Reject,
            format!("default import: overlaps the node's own PodCIDR {own}"),
        );
    }
    Decision::new(Verdict::Accept, "default import")
}

/// The default export rule: only the node's own prefixes (the PodCIDR and
/// owner-approved prefixes, all of them locally originated).
pub fn export_default(locally_originated: bool) -> Decision {
    if locally_originated {
        Decision::new(Verdict::Accept, "default export: originated by this node")
    } else {
        Decision::new(Verdict::Reject, "default export: learned routes are not re-advertised")
    }
}

/// Evaluates an import setting.
pub fn evaluate_import(policy: &PeerPolicy, local: &LocalPrefixes, prefix: &IpNet, attrs: &PathAttributes) -> Applied {
    let plain = |d| Applied {
        decision: d,
        attrs: None,
        prepend: 0,
    };
    match policy {
        PeerPolicy::Default | PeerPolicy::Advertise(_) => plain(import_default(local, prefix)),
        PeerPolicy::Node(n) => {
            let d = import_default(local, prefix);
            plain(if d.verdict == Verdict::Reject {
                d
            } else {
                n.import(prefix)
            })
        }
        PeerPolicy::All => plain(Decision::new(Verdict::Accept, "import all")),
        PeerPolicy::None => plain(Decision::new(Verdict::Reject, "import none")),
        PeerPolicy::Named(n, p) => p.apply(n, prefix, attrs),
    }
}

/// Evaluates an export setting.
pub fn evaluate_export(
    policy: &PeerPolicy,
    locally_originated: bool,
    prefix: &IpNet,
    attrs: &PathAttributes,
) -> Applied {
    let plain = |d| Applied {
        decision: d,
        attrs: None,
        prepend: 0,
    };
    match policy {
        PeerPolicy::Default | PeerPolicy::Node(_) => plain(export_default(locally_originated)),
        PeerPolicy::Advertise(a) if locally_originated => a.export(prefix, attrs),
        PeerPolicy::Advertise(_) => plain(export_default(false)),
        PeerPolicy::All => plain(Decision::new(Verdict::Accept, "export all")),
        PeerPolicy::None => plain(Decision::new(Verdict::Reject, "export none")),
        PeerPolicy::Named(n, p) => p.apply(n, prefix, attrs),
    }
}
