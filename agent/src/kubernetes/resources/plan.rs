//! What the routing resources ask of this node (pure): the cluster config
//! selecting it, its peers with their profiles, passwords and what is
//! advertised to them, and the conditions an operator must see (two
//! configs for one node, a missing profile or Secret, advertisements that
//! disagree, no default gateway to peer with).

use super::objects::{AdvertisementSpec, ClusterConfigSpec, LabelSelector, NodeOverrideSpec, PeerProfileSpec};
use std::collections::BTreeMap;
use std::net::IpAddr;

/// Everything the plan reads.
pub struct Inputs<'a> {
    pub node_labels: &'a BTreeMap<String, String>,
    /// Every NovaBGPClusterConfig by name.
    pub configs: &'a BTreeMap<String, ClusterConfigSpec>,
    /// Every NovaBGPPeerProfile by name.
    pub profiles: &'a BTreeMap<String, PeerProfileSpec>,
    /// The Secrets of the agent's namespace by name: their data.
    pub secrets: &'a BTreeMap<String, BTreeMap<String, Vec<u8>>>,
    /// The agent's namespace, for messages.
    pub namespace: &'a str,
    /// This node's NovaBGPNodeOverride.
    pub own_override: Option<&'a NodeOverrideSpec>,
    /// Every NovaBGPAdvertisement by name: its labels and spec.
    pub advertisements: &'a BTreeMap<String, (BTreeMap<String, String>, AdvertisementSpec)>,
    /// The node's default gateways (IPv4 first), for peers by
    /// `autoDiscovery: {mode: DefaultGateway}`.
    pub default_gateways: &'a [IpAddr],
}

/// What the node's own routes carry to a peer: the NovaBGPAdvertisements
/// its cluster config selects, merged (communities together, the first
/// LOCAL_PREF by name, the longest prepend; the PodCIDRs unless none of
/// them advertises them).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Advertising {
    pub names: Vec<String>,
    pub pod_cidrs: bool,
    pub communities: Vec<String>,
    pub local_preference: Option<u32>,
    pub as_path_prepend: u8,
}

/// One ToR of the selected config, with what its profile says.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ResourcePeer {
    pub config: String,
    pub name: String,
    /// The peer's address (given, or the node's default gateway); none for
    /// a peer by interface, dialled at the link-local address its Router
    /// Advertisements give.
    pub address: Option<IpAddr>,
    #[serde(default)]
    pub interface: Option<String>,
    pub remote_as: u32,
    /// The profile named by `profileRef` (its defaults when none is).
    pub profile: PeerProfileSpec,
    pub password: Option<String>,
    /// The source address of the node's override (the peer's family).
    #[serde(default)]
    pub source_address: Option<IpAddr>,
    /// The advertisements selected; none: the node's routes as they are.
    #[serde(default)]
    pub advertising: Option<Advertising>,
}

/// Something wrong the operator must see (on the node's state and in the
/// log): a machine-readable `reason` and a sentence naming the objects.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Condition {
    pub reason: &'static str,
    pub message: String,
}

/// What the node does from the resources.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    /// The cluster config in use, if one selects the node.
    pub config: Option<String>,
    pub peers: Vec<ResourcePeer>,
    pub conditions: Vec<Condition>,
}

/// The plan for a node with these labels.
pub fn plan(inputs: &Inputs) -> Plan {
    let mut out = Plan::default();
    let selecting: Vec<(&String, &ClusterConfigSpec)> = inputs
        .configs
        .iter()
        .filter(|(_, c)| c.node_selector.matches(inputs.node_labels))
        .collect();
    let Some((name, config)) = selecting.first() else {
        return out;
    };
    if selecting.len() > 1 {
        let names: Vec<&str> = selecting.iter().map(|(n, _)| n.as_str()).collect();
        out.conditions.push(Condition {
            reason: "ConfigConflict",
            message: format!(
                "NovaBGPClusterConfigs {} all select this node; {name} (the first by name) is used",
                names.join(", ")
            ),
        });
    }
    out.config = Some(name.to_string());
    let advertising = config
        .advertisement_selector
        .as_ref()
        .map(|selector| advertising(name, selector, inputs.advertisements, &mut out.conditions));
    for p in &config.peers {
        let what = format!("peer {} of NovaBGPClusterConfig {name}", p.name);
        let address = match (p.address, &p.interface, &p.auto_discovery) {
            (Some(a), ..) => Some(a),
            (None, Some(_), _) => None,
            (None, None, Some(d)) => {
                let mode = d.get("mode").and_then(|m| m.as_str()).unwrap_or_default();
                if mode != "DefaultGateway" {
                    out.conditions.push(Condition {
                        reason: "PeerUnsupported",
                        message: format!("{what}: autoDiscovery mode {mode:?} is not known (DefaultGateway is)"),
                    });
                    continue;
                }
                match inputs.default_gateways.first() {
                    Some(gw) => Some(*gw),
                    None => {
                        out.conditions.push(Condition {
                            reason: "GatewayMissing",
                            message: format!(
                                "{what}: this node has no default route to take the peer's address from; the peer waits for one"
                            ),
                        });
                        continue;
                    }
                }
            }
            (None, None, None) => {
                out.conditions.push(Condition {
                    reason: "PeerUnsupported",
                    message: format!("{what}: none of address, interface or autoDiscovery"),
                });
                continue;
            }
        };
        let profile = match &p.profile_ref {
            None => PeerProfileSpec::default(),
            Some(r) => match inputs.profiles.get(r) {
                Some(profile) => profile.clone(),
                None => {
                    out.conditions.push(Condition {
                        reason: "ProfileMissing",
                        message: format!("{what}: NovaBGPPeerProfile {r} does not exist; the peer waits for it"),
                    });
                    continue;
                }
            },
        };
        let password = match &profile.password_secret_ref {
            None => None,
            Some(s) => {
                let value = inputs.secrets.get(&s.name).and_then(|d| d.get(&s.key));
                match value.map(|v| String::from_utf8(v.clone())) {
                    Some(Ok(pw)) if !pw.is_empty() => Some(pw),
                    found => {
                        let why = match (inputs.secrets.get(&s.name), found) {
                            (None, _) => "does not exist".to_string(),
                            (Some(_), None) => format!("has no key {:?}", s.key),
                            (Some(_), Some(Ok(_))) => format!("key {:?} is empty", s.key),
                            (Some(_), Some(Err(_))) => format!("key {:?} is not UTF-8", s.key),
                        };
                        out.conditions.push(Condition {
                            reason: "SecretMissing",
                            message: format!(
                                "{what}: the password Secret {}/{} {why}; the session stays down until it is there",
                                inputs.namespace, s.name
                            ),
                        });
                        continue;
                    }
                }
            }
        };
        out.peers.push(ResourcePeer {
            config: name.to_string(),
            name: p.name.clone(),
            address,
            interface: if address.is_none() { p.interface.clone() } else { None },
            remote_as: p.remote_as,
            profile,
            password,
            source_address: inputs
                .own_override
                .and_then(|o| o.source_address)
                .filter(|s| address.is_some_and(|a| s.is_ipv4() == a.is_ipv4())),
            advertising: advertising.clone(),
        });
    }
    out.conditions.sort();
    out
}

/// The advertisements `selector` picks, merged; a selector that picks
/// none, or advertisements that disagree, are conditions.
fn advertising(
    config: &str,
    selector: &LabelSelector,
    all: &BTreeMap<String, (BTreeMap<String, String>, AdvertisementSpec)>,
    conditions: &mut Vec<Condition>,
) -> Advertising {
    let mut out = Advertising::default();
    let mut pref_from: Option<&str> = None;
    for (name, (_, spec)) in all.iter().filter(|(_, (labels, _))| selector.matches(labels)) {
        out.names.push(name.clone());
        out.pod_cidrs |= spec.pod_cidrs;
        for c in &spec.communities {
            if !out.communities.contains(c) {
                out.communities.push(c.clone());
            }
        }
        if let Some(lp) = spec.local_preference {
            match (out.local_preference, pref_from) {
                (None, _) => {
                    out.local_preference = Some(lp);
                    pref_from = Some(name);
                }
                (Some(first), Some(from)) if first != lp => conditions.push(Condition {
                    reason: "AdvertisementConflict",
                    message: format!(
                        "NovaBGPAdvertisements {from} and {name} (both selected by NovaBGPClusterConfig {config}) set localPreference {first} and {lp}; {first} (the first by name) is used"
                    ),
                }),
                _ => {}
            }
        }
        out.as_path_prepend = out.as_path_prepend.max(spec.as_path_prepend.unwrap_or(0));
    }
    if out.names.is_empty() {
        out.pod_cidrs = true;
        conditions.push(Condition {
            reason: "AdvertisementMissing",
            message: format!(
                "the advertisementSelector of NovaBGPClusterConfig {config} selects no NovaBGPAdvertisement; the node's PodCIDRs go out without attributes"
            ),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn configs(v: serde_json::Value) -> BTreeMap<String, ClusterConfigSpec> {
        serde_json::from_value(v).unwrap()
    }

    fn run(
        labels: &[(&str, &str)],
        cfgs: &BTreeMap<String, ClusterConfigSpec>,
        profiles: serde_json::Value,
        secrets: &[(&str, &str, &str)],
    ) -> Plan {
        let labels: BTreeMap<String, String> = labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let profiles: BTreeMap<String, PeerProfileSpec> = serde_json::from_value(profiles).unwrap();
        let mut s: BTreeMap<String, BTreeMap<String, Vec<u8>>> = BTreeMap::new();
        for (name, key, value) in secrets {
            s.entry(name.to_string())
                .or_default()
                .insert(key.to_string(), value.as_bytes().to_vec());
        }
        plan(&Inputs {
            node_labels: &labels,
            configs: cfgs,
            profiles: &profiles,
            secrets: &s,
            namespace: "nova-system",
            own_override: None,
            advertisements: &BTreeMap::new(),
            default_gateways: &[],
        })
    }

    fn racks() -> BTreeMap<String, ClusterConfigSpec> {
        configs(json!({
            "rack-a": {"nodeSelector": {"matchLabels": {"zone": "a"}},
                       "peers": [{"name": "tor1", "address": "10.1.0.1", "remoteAS": 65001, "profileRef": "tor"},
                                 {"name": "tor2", "address": "10.1.0.2", "remoteAS": 65002}]},
            "rack-b": {"nodeSelector": {"matchLabels": {"zone": "b"}},
                       "peers": [{"name": "tor1", "address": "10.2.0.1", "remoteAS": 65003}]}
        }))
    }

    #[test]
    fn a_node_takes_its_racks_peers_only() {
        let p = run(&[("zone", "a")], &racks(), json!({"tor": {"holdTimeSeconds": 9}}), &[]);
        assert_eq!(p.config.as_deref(), Some("rack-a"));
        let addrs: Vec<String> = p.peers.iter().map(|x| x.address.unwrap().to_string()).collect();
        assert_eq!(addrs, ["10.1.0.1", "10.1.0.2"]);
        assert_eq!(p.peers[0].profile.hold_time_seconds, Some(9));
        assert!(p.conditions.is_empty());
        let b = run(&[("zone", "b")], &racks(), json!({"tor": {}}), &[]);
        assert_eq!(b.peers.len(), 1);
        assert_eq!(run(&[("zone", "c")], &racks(), json!({}), &[]), Plan::default());
    }

    #[test]
    fn what_is_missing_is_a_condition_and_the_peer_waits() {
        let p = run(&[("zone", "a")], &racks(), json!({}), &[]);
        assert_eq!(p.peers.len(), 1, "tor1 waits for its profile");
        assert_eq!(p.conditions[0].reason, "ProfileMissing");
        assert!(
            p.conditions[0].message.contains("NovaBGPPeerProfile tor"),
            "{:?}",
            p.conditions
        );

        let with_secret = json!({"tor": {"passwordSecretRef": {"name": "tor-pw"}}});
        let p = run(&[("zone", "a")], &racks(), with_secret.clone(), &[]);
        assert_eq!(p.conditions[0].reason, "SecretMissing");
        assert!(
            p.conditions[0].message.contains("nova-system/tor-pw does not exist"),
            "{:?}",
            p.conditions
        );
        let p = run(
            &[("zone", "a")],
            &racks(),
            with_secret.clone(),
            &[("tor-pw", "other", "x")],
        );
        assert!(
            p.conditions[0].message.contains("has no key \"password\""),
            "{:?}",
            p.conditions
        );
        let p = run(
            &[("zone", "a")],
            &racks(),
            with_secret,
            &[("tor-pw", "password", "s3cret")],
        );
        assert!(p.conditions.is_empty());
        assert_eq!(p.peers[0].password.as_deref(), Some("s3cret"));
    }

    #[test]
    fn two_configs_for_one_node_use_the_first_and_say_so() {
        let mut cfgs = racks();
        cfgs.insert(
            "everyone".into(),
            serde_json::from_value(json!({"peers": [{"name": "rs", "address": "10.9.0.1", "remoteAS": 65009}]}))
                .unwrap(),
        );
        let p = run(&[("zone", "a")], &cfgs, json!({"tor": {}}), &[]);
        assert_eq!(p.config.as_deref(), Some("everyone"));
        assert_eq!(p.conditions[0].reason, "ConfigConflict");
        assert!(
            p.conditions[0].message.contains("everyone, rack-a"),
            "{:?}",
            p.conditions
        );
    }

    #[test]
    fn selected_advertisements_merge_and_disagreements_are_said() {
        let cfgs = configs(json!({
            "rack-a": {"nodeSelector": {}, "advertisementSelector": {"matchLabels": {"to": "tor"}},
                       "peers": [{"name": "tor1", "address": "10.1.0.1", "remoteAS": 65001}]}
        }));
        let adv = |labels: serde_json::Value, spec: serde_json::Value| {
            (
                serde_json::from_value::<BTreeMap<String, String>>(labels).unwrap(),
                serde_json::from_value::<AdvertisementSpec>(spec).unwrap(),
            )
        };
        let mut advertisements = BTreeMap::new();
        advertisements.insert(
            "a".to_string(),
            adv(
                json!({"to": "tor"}),
                json!({"communities": ["64512:1"], "localPreference": 200, "asPathPrepend": 1}),
            ),
        );
        advertisements.insert(
            "b".to_string(),
            adv(json!({"to": "tor"}), json!({"podCIDRs": false, "communities": ["64512:1", "64512:2"], "localPreference": 50, "asPathPrepend": 3})),
        );
        advertisements.insert(
            "c".to_string(),
            adv(json!({"to": "elsewhere"}), json!({"communities": ["1:1"]})),
        );
        let labels = BTreeMap::new();
        let plan_with = |advertisements: &BTreeMap<String, (BTreeMap<String, String>, AdvertisementSpec)>| {
            plan(&Inputs {
                node_labels: &labels,
                configs: &cfgs,
                profiles: &BTreeMap::new(),
                secrets: &BTreeMap::new(),
                namespace: "nova-system",
                own_override: None,
                advertisements,
                default_gateways: &[],
            })
        };
        let p = plan_with(&advertisements);
        let a = p.peers[0].advertising.clone().unwrap();
        assert_eq!(a.names, ["a", "b"]);
        assert!(a.pod_cidrs, "one of them advertises the PodCIDRs");
        assert_eq!(a.communities, ["64512:1", "64512:2"]);
        assert_eq!((a.local_preference, a.as_path_prepend), (Some(200), 3));
        assert_eq!(p.conditions[0].reason, "AdvertisementConflict");
        assert!(
            p.conditions[0].message.contains("200 (the first by name) is used"),
            "{:?}",
            p.conditions
        );

        let none = plan_with(&BTreeMap::new());
        assert_eq!(none.conditions[0].reason, "AdvertisementMissing");
        assert!(none.peers[0].advertising.as_ref().unwrap().names.is_empty());
    }

    #[test]
    fn peers_by_gateway_and_by_interface_and_any_as() {
        let cfgs = configs(json!({
            "all": {"peers": [
                {"name": "gw", "autoDiscovery": {"mode": "DefaultGateway"}, "remoteAS": 0},
                {"name": "link", "interface": "eth1", "remoteAS": 65000}
            ]}
        }));
        let labels = BTreeMap::new();
        let with = |gateways: &[IpAddr]| {
            plan(&Inputs {
                node_labels: &labels,
                configs: &cfgs,
                profiles: &BTreeMap::new(),
                secrets: &BTreeMap::new(),
                namespace: "nova-system",
                own_override: None,
                advertisements: &BTreeMap::new(),
                default_gateways: gateways,
            })
        };
        let p = with(&["10.0.0.1".parse().unwrap(), "fd00::1".parse().unwrap()]);
        assert!(p.conditions.is_empty(), "{:?}", p.conditions);
        assert_eq!(
            (p.peers[0].address, p.peers[0].remote_as),
            (Some("10.0.0.1".parse().unwrap()), 0)
        );
        assert_eq!(
            (p.peers[1].address, p.peers[1].interface.as_deref()),
            (None, Some("eth1"))
        );
        let none = with(&[]);
        assert_eq!(none.peers.len(), 1, "the gateway peer waits for a default route");
        assert_eq!(none.conditions[0].reason, "GatewayMissing");
    }
}
