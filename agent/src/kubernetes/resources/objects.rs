//! The routing resources' specs as the agent reads them
//! (`bgp.novanet.io/v1alpha1`, schemas in the chart's `crds/`), and label
//! selectors as Kubernetes evaluates them. The API server has already
//! refused what the schemas can refuse; what is left to judge (a missing
//! profile or Secret, two configs for one node) is the plan's.

use kube::discovery::ApiResource;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::IpAddr;

pub const GROUP: &str = "bgp.novanet.io";
pub const VERSION: &str = "v1alpha1";

/// The API resource of one of the routing kinds (all cluster-scoped).
pub fn api_resource(kind: &str, plural: &str) -> ApiResource {
    ApiResource {
        group: GROUP.into(),
        version: VERSION.into(),
        api_version: format!("{GROUP}/{VERSION}"),
        kind: kind.into(),
        plural: plural.into(),
    }
}

/// `NovaBGPClusterConfig.spec`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterConfigSpec {
    #[serde(default)]
    pub node_selector: LabelSelector,
    #[serde(default)]
    pub peers: Vec<ClusterPeer>,
    /// Which NovaBGPAdvertisements go to these peers (by their labels).
    #[serde(default)]
    pub advertisement_selector: Option<LabelSelector>,
}

/// `NovaBGPAdvertisement.spec`: what the node's own routes carry to the
/// peers of the cluster configs selecting it.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AdvertisementSpec {
    #[serde(default = "yes", rename = "podCIDRs")]
    pub pod_cidrs: bool,
    #[serde(default)]
    pub communities: Vec<String>,
    #[serde(default)]
    pub local_preference: Option<u32>,
    #[serde(default)]
    pub as_path_prepend: Option<u8>,
}

fn yes() -> bool {
    true
}

/// One ToR of a cluster config.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterPeer {
    pub name: String,
    #[serde(default)]
    pub address: Option<IpAddr>,
    #[serde(default)]
    pub interface: Option<String>,
    #[serde(default)]
    pub auto_discovery: Option<serde_json::Value>,
    #[serde(default, rename = "remoteAS")]
    pub remote_as: u32,
    #[serde(default)]
    pub profile_ref: Option<String>,
}

/// `NovaBGPPeerProfile.spec`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PeerProfileSpec {
    #[serde(default)]
    pub hold_time_seconds: Option<u32>,
    #[serde(default)]
    pub keepalive_seconds: Option<u32>,
    #[serde(default)]
    pub bfd: Option<ProfileBfd>,
    #[serde(default)]
    pub graceful_restart_seconds: Option<u32>,
    #[serde(default)]
    pub password_secret_ref: Option<SecretRef>,
    #[serde(default)]
    pub ebgp_multihop: Option<u8>,
    #[serde(default)]
    pub max_prefix: Option<MaxPrefix>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProfileBfd {
    #[serde(default)]
    pub min_rx_ms: u32,
    #[serde(default)]
    pub min_tx_ms: u32,
    #[serde(default)]
    pub multiplier: u32,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
pub struct SecretRef {
    pub name: String,
    #[serde(default = "default_key")]
    pub key: String,
}

fn default_key() -> String {
    "password".into()
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Deserialize, Serialize)]
pub struct MaxPrefix {
    #[serde(default)]
    pub ipv4: Option<u32>,
    #[serde(default)]
    pub ipv6: Option<u32>,
}

/// `NovaBGPNodeOverride.spec` (the object's name is the node's): this
/// node's own BGP identity, over the configuration's.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeOverrideSpec {
    #[serde(default, rename = "routerID")]
    pub router_id: Option<std::net::Ipv4Addr>,
    #[serde(default, rename = "localAS")]
    pub local_as: Option<u32>,
    #[serde(default)]
    pub source_address: Option<IpAddr>,
}

/// A standard label selector (`matchLabels`, `matchExpressions`); empty
/// selects everything.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LabelSelector {
    #[serde(default)]
    pub match_labels: BTreeMap<String, String>,
    #[serde(default)]
    pub match_expressions: Vec<Requirement>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
pub struct Requirement {
    pub key: String,
    pub operator: String,
    #[serde(default)]
    pub values: Vec<String>,
}

impl LabelSelector {
    /// Whether `labels` satisfy every term (an unknown operator matches
    /// nothing, as the API server would have refused it).
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.match_labels.iter().all(|(k, v)| labels.get(k) == Some(v))
            && self.match_expressions.iter().all(|r| {
                let value = labels.get(&r.key);
                match r.operator.as_str() {
                    "In" => value.is_some_and(|v| r.values.contains(v)),
                    "NotIn" => value.is_none_or(|v| !r.values.contains(v)),
                    "Exists" => value.is_some(),
                    "DoesNotExist" => value.is_none(),
                    _ => false,
                }
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn selectors_match_as_kubernetes_does() {
        let zone: LabelSelector = serde_json::from_value(serde_json::json!({
            "matchLabels": {"topology.kubernetes.io/zone": "rack-a"},
            "matchExpressions": [{"key": "novanet.io/bgp", "operator": "NotIn", "values": ["off"]}]
        }))
        .unwrap();
        assert!(zone.matches(&labels(&[("topology.kubernetes.io/zone", "rack-a")])));
        assert!(!zone.matches(&labels(&[("topology.kubernetes.io/zone", "rack-b")])));
        assert!(!zone.matches(&labels(&[
            ("topology.kubernetes.io/zone", "rack-a"),
            ("novanet.io/bgp", "off")
        ])));
        assert!(
            LabelSelector::default().matches(&labels(&[])),
            "empty selects every node"
        );
        let exists: LabelSelector =
            serde_json::from_value(serde_json::json!({"matchExpressions": [{"key": "tor", "operator": "Exists"}]}))
                .unwrap();
        assert!(exists.matches(&labels(&[("tor", "")])) && !exists.matches(&labels(&[])));
    }

    #[test]
    fn a_profile_reads_with_its_defaults() {
        let p: PeerProfileSpec = serde_json::from_value(serde_json::json!({
            "holdTimeSeconds": 9, "passwordSecretRef": {"name": "tor"}, "maxPrefix": {"ipv4": 10}
        }))
        .unwrap();
        assert_eq!(p.hold_time_seconds, Some(9));
        assert_eq!(p.password_secret_ref.unwrap().key, "password");
        assert_eq!(p.max_prefix.unwrap().ipv4, Some(10));
    }
}
