//! What the routing resources ask of this node (pure): the cluster config
//! selecting it, its peers with their profiles and passwords, and the
//! conditions an operator must see (two configs for one node, a missing
//! profile or Secret, a peer this release cannot dial).

use super::objects::{ClusterConfigSpec, PeerProfileSpec};
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
}

/// One ToR of the selected config, with what its profile says.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ResourcePeer {
    pub config: String,
    pub name: String,
    pub address: IpAddr,
    pub remote_as: u32,
    /// The profile named by `profileRef` (its defaults when none is).
    pub profile: PeerProfileSpec,
    pub password: Option<String>,
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
    for p in &config.peers {
        let what = format!("peer {} of NovaBGPClusterConfig {name}", p.name);
        let Some(address) = p.address else {
            let how = if p.interface.is_some() {
                "interface"
            } else {
                "autoDiscovery"
            };
            out.conditions.push(Condition {
                reason: "PeerUnsupported",
                message: format!(
                    "{what}: peers by {how} are not taken from the resources in this release (use routing.peers)"
                ),
            });
            continue;
        };
        if p.remote_as == 0 {
            out.conditions.push(Condition {
                reason: "PeerUnsupported",
                message: format!("{what}: remoteAS 0 (taken from the peer's OPEN) is not supported in this release"),
            });
            continue;
        }
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
            remote_as: p.remote_as,
            profile,
            password,
        });
    }
    out.conditions.sort();
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
        let addrs: Vec<String> = p.peers.iter().map(|x| x.address.to_string()).collect();
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
}
