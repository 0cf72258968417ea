//! What the agent needs of a Kubernetes Node, and the node mesh a set of
//! Nodes makes. Pure: no client, no I/O.

use crate::config::{node_asn, AsnMode};
use ipnet::IpNet;
use k8s_openapi::api::core::v1::Node;
use std::collections::BTreeMap;
use std::net::IpAddr;

/// Label that keeps a node out of the mesh when `"false"`.
pub const MESH_LABEL: &str = "novanet.io/bgp-mesh";
/// Annotation that sets a node's AS number.
pub const ASN_ANNOTATION: &str = "novanet.io/asn";
/// Label of control-plane nodes.
pub const CONTROL_PLANE_LABEL: &str = "node-role.kubernetes.io/control-plane";
/// Label that makes a node a route server of the mesh when `"true"`.
pub const ROUTE_SERVER_LABEL: &str = "novanet.io/route-server";
/// Annotation that asks the node to drain when `"true"`.
pub const DRAIN_ANNOTATION: &str = "novanet.io/drain";

/// A Node as the mesh sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterNode {
    pub name: String,
    pub uid: Option<String>,
    /// The first InternalIP of `status.addresses`.
    pub internal_ip: Option<IpAddr>,
    /// `spec.podCIDR` then the rest of `spec.podCIDRs`; unparsable ones
    /// are left out (and named in `problems`).
    pub pod_cidrs: Vec<IpNet>,
    /// False when labelled `novanet.io/bgp-mesh: "false"`.
    pub in_mesh: bool,
    /// Labelled `novanet.io/route-server: "true"`.
    pub route_server: bool,
    /// The `novanet.io/asn` annotation, when present and valid.
    pub asn: Option<u32>,
    pub control_plane: bool,
    /// What the Node says about this node's lifecycle (cordoned, being
    /// deleted, a drain asked for).
    pub lifecycle: crate::lifecycle::NodeView,
    /// What is wrong with the Node's routing fields, for the log.
    pub problems: Vec<String>,
}

impl ClusterNode {
    pub fn from_node(node: &Node) -> ClusterNode {
        let meta = &node.metadata;
        let name = meta.name.clone().unwrap_or_default();
        let mut problems = Vec::new();
        let internal_ip = node
            .status
            .as_ref()
            .and_then(|s| s.addresses.as_ref())
            .into_iter()
            .flatten()
            .filter(|a| a.type_ == "InternalIP")
            .find_map(|a| match a.address.parse::<IpAddr>() {
                Ok(ip) => Some(ip),
                Err(_) => {
                    problems.push(format!(
                        "status.addresses InternalIP {:?} is not an IP address",
                        a.address
                    ));
                    None
                }
            });
        let mut pod_cidrs = Vec::new();
        if let Some(spec) = &node.spec {
            for text in spec.pod_cidr.iter().chain(spec.pod_cidrs.iter().flatten()) {
                match text.parse::<IpNet>() {
                    Ok(n) if !pod_cidrs.contains(&n) => pod_cidrs.push(n),
                    Ok(_) => {}
                    Err(_) => problems.push(format!("spec.podCIDRs {text:?} is not a CIDR")),
                }
            }
        }
        let labels = meta.labels.as_ref();
        let in_mesh = labels.and_then(|l| l.get(MESH_LABEL)).is_none_or(|v| v != "false");
        let control_plane = labels.is_some_and(|l| l.contains_key(CONTROL_PLANE_LABEL));
        let route_server = labels
            .and_then(|l| l.get(ROUTE_SERVER_LABEL))
            .is_some_and(|v| v == "true");
        let asn = meta
            .annotations
            .as_ref()
            .and_then(|a| a.get(ASN_ANNOTATION))
            .and_then(|v| match v.trim().parse::<u32>() {
                Ok(n) if n != 0 => Some(n),
                _ => {
                    problems.push(format!(
                        "annotation {ASN_ANNOTATION} {v:?} is not an AS number (1-4294967295)"
                    ));
                    None
                }
            });
        let lifecycle = crate::lifecycle::NodeView {
            control_plane,
            cordoned: node.spec.as_ref().and_then(|s| s.unschedulable).unwrap_or(false),
            deleting: meta.deletion_timestamp.is_some(),
            drain_asked: meta
                .annotations
                .as_ref()
                .and_then(|a| a.get(DRAIN_ANNOTATION))
                .is_some_and(|v| v == "true"),
        };
        ClusterNode {
            name,
            uid: meta.uid.clone(),
            internal_ip,
            pod_cidrs,
            in_mesh,
            route_server,
            asn,
            control_plane,
            lifecycle,
            problems,
        }
    }

    /// The node's AS: its annotation, else the `asn_mode` rule on its
    /// InternalIP.
    pub fn as_number(&self, mode: AsnMode) -> Option<u32> {
        self.asn.or_else(|| node_asn(self.internal_ip?, mode))
    }
}

/// What a mesh session is to this node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MeshRole {
    /// A node like this one (the full mesh, or another route server).
    #[default]
    Peer,
    /// A route server of the mesh, this node its client: it carries
    /// every node's routes.
    RouteServer,
    /// A client of this node, the mesh's route server.
    Client,
}

/// A node to peer with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeshMember {
    pub name: String,
    pub ip: IpAddr,
    pub asn: u32,
    /// What the session may carry from it: its PodCIDRs, or from a route
    /// server every other node's.
    pub pod_cidrs: Vec<IpNet>,
    pub role: MeshRole,
}

/// The mesh of one node: whom it peers with, who is left out and why,
/// and which AS numbers several nodes share. With route servers (nodes
/// labelled `novanet.io/route-server=true`), a node peers with the route
/// servers only, and a route server with every node.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MeshPlan {
    pub members: Vec<MeshMember>,
    /// Every PodCIDR of the mesh's nodes (what a route server passes on).
    pub cluster_cidrs: Vec<IpNet>,
    /// (node, reason) for every other node that is not peered.
    pub left_out: Vec<(String, String)>,
    /// (AS, node names) shared by more than one node of the mesh.
    pub collisions: Vec<(u32, Vec<String>)>,
}

/// The mesh node `me` builds from `nodes` (all Nodes of the cluster, `me`
/// among them). A node that leaves itself out of the mesh peers with no
/// other node.
pub fn plan<'a>(me: &str, nodes: impl IntoIterator<Item = &'a ClusterNode>, mode: AsnMode) -> MeshPlan {
    let mut nodes: Vec<&ClusterNode> = nodes.into_iter().collect();
    nodes.sort_by(|a, b| a.name.cmp(&b.name));
    let me_in_mesh = nodes.iter().find(|n| n.name == me).is_none_or(|n| n.in_mesh);
    let mut plan = MeshPlan::default();
    let mut by_as: BTreeMap<u32, Vec<String>> = BTreeMap::new();
    for n in &nodes {
        if n.in_mesh && n.internal_ip.is_some() {
            if let Some(asn) = n.as_number(mode) {
                by_as.entry(asn).or_default().push(n.name.clone());
            }
        }
        if n.name == me {
            continue;
        }
        let reason = if !me_in_mesh {
            Some(format!("this node is labelled {MESH_LABEL}=false"))
        } else if !n.in_mesh {
            Some(format!("labelled {MESH_LABEL}=false"))
        } else if n.internal_ip.is_none() {
            Some("no InternalIP in status.addresses".to_string())
        } else if n.as_number(mode).is_none() {
            Some(format!(
                "no AS: its InternalIP is not IPv4 and it has no {ASN_ANNOTATION} annotation"
            ))
        } else {
            None
        };
        match reason {
            Some(r) => plan.left_out.push((n.name.clone(), r)),
            None => plan.members.push(MeshMember {
                name: n.name.clone(),
                ip: n.internal_ip.expect("checked"),
                asn: n.as_number(mode).expect("checked"),
                pod_cidrs: n.pod_cidrs.clone(),
                role: MeshRole::Peer,
            }),
        }
    }
    let me_node = nodes.iter().find(|n| n.name == me);
    let servers: Vec<String> = plan
        .members
        .iter()
        .filter(|m| nodes.iter().any(|n| n.name == m.name && n.route_server))
        .map(|m| m.name.clone())
        .collect();
    let me_server = me_node.is_some_and(|n| n.route_server && n.in_mesh);
    if me_in_mesh && (me_server || !servers.is_empty()) {
        plan.cluster_cidrs = nodes
            .iter()
            .filter(|n| n.in_mesh)
            .flat_map(|n| n.pod_cidrs.iter().copied())
            .collect();
        let others: Vec<IpNet> = nodes
            .iter()
            .filter(|n| n.in_mesh && n.name != me)
            .flat_map(|n| n.pod_cidrs.iter().copied())
            .collect();
        for m in &mut plan.members {
            let server = servers.contains(&m.name);
            m.role = match (me_server, server) {
                (true, true) | (false, false) => MeshRole::Peer,
                (true, false) => MeshRole::Client,
                (false, true) => MeshRole::RouteServer,
            };
            if m.role == MeshRole::RouteServer {
                m.pod_cidrs = others.clone();
            }
        }
        if !me_server {
            // A client peers with the route servers only.
            plan.members.retain(|m| m.role == MeshRole::RouteServer);
        }
    }
    plan.collisions = by_as.into_iter().filter(|(_, names)| names.len() > 1).collect();
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(v: serde_json::Value) -> ClusterNode {
        ClusterNode::from_node(&serde_json::from_value(v).unwrap())
    }

    fn simple(name: &str, ip: &str, cidr: &str) -> ClusterNode {
        node(json!({
            "metadata": {"name": name},
            "spec": {"podCIDR": cidr, "podCIDRs": [cidr]},
            "status": {"addresses": [{"type": "Hostname", "address": name}, {"type": "InternalIP", "address": ip}]}
        }))
    }

    #[test]
    fn a_node_gives_its_first_internal_ip_pod_cidrs_labels_and_annotation() {
        let n = node(json!({
            "metadata": {
                "name": "cp-1",
                "labels": {"node-role.kubernetes.io/control-plane": "", "novanet.io/bgp-mesh": "true"},
                "annotations": {"novanet.io/asn": "4200000001"}
            },
            "spec": {"podCIDR": "10.244.1.0/24", "podCIDRs": ["10.244.1.0/24", "fd00:244:1::/64"]},
            "status": {"addresses": [
                {"type": "ExternalIP", "address": "192.0.2.1"},
                {"type": "InternalIP", "address": "10.0.0.11"},
                {"type": "InternalIP", "address": "fd00::11"}
            ]}
        }));
        assert_eq!(n.internal_ip, Some("10.0.0.11".parse().unwrap()));
        assert_eq!(
            n.pod_cidrs,
            vec![
                "10.244.1.0/24".parse::<IpNet>().unwrap(),
                "fd00:244:1::/64".parse().unwrap()
            ]
        );
        assert!(n.in_mesh && n.control_plane);
        assert_eq!(n.as_number(AsnMode::LastOctet), Some(4_200_000_001));
        assert!(n.problems.is_empty());
    }

    #[test]
    fn bad_fields_are_named() {
        let n = node(json!({
            "metadata": {"name": "w", "annotations": {"novanet.io/asn": "65x"}},
            "spec": {"podCIDR": "10.244.300.0/24"},
            "status": {"addresses": [{"type": "InternalIP", "address": "not-an-ip"}]}
        }));
        assert_eq!(n.internal_ip, None);
        assert!(n.pod_cidrs.is_empty());
        assert_eq!(n.problems.len(), 3, "{:?}", n.problems);
        assert!(n.problems.iter().any(|p| p.contains("novanet.io/asn \"65x\"")));
    }

    #[test]
    fn every_other_node_is_peered_by_the_asn_rule_or_its_annotation() {
        let mut c = simple("c", "10.0.1.13", "10.244.3.0/24");
        c.asn = Some(65100);
        let nodes = [
            simple("a", "10.0.0.11", "10.244.1.0/24"),
            simple("b", "10.0.0.12", "10.244.2.0/24"),
            c,
        ];
        let p = plan("a", &nodes, AsnMode::LastOctet);
        assert_eq!(
            p.members,
            vec![
                MeshMember {
                    name: "b".into(),
                    ip: "10.0.0.12".parse().unwrap(),
                    asn: 65012,
                    pod_cidrs: vec!["10.244.2.0/24".parse().unwrap()],
                    role: MeshRole::Peer,
                },
                MeshMember {
                    name: "c".into(),
                    ip: "10.0.1.13".parse().unwrap(),
                    asn: 65100,
                    pod_cidrs: vec!["10.244.3.0/24".parse().unwrap()],
                    role: MeshRole::Peer,
                },
            ]
        );
        assert!(p.left_out.is_empty() && p.collisions.is_empty());
    }

    #[test]
    fn excluded_nodes_and_nodes_without_an_address_are_left_out_with_a_reason() {
        let mut b = simple("b", "10.0.0.12", "10.244.2.0/24");
        b.in_mesh = false;
        let mut c = simple("c", "10.0.0.13", "10.244.3.0/24");
        c.internal_ip = None;
        let d = simple("d", "fd00::14", "fd00:244:4::/64");
        let nodes = [simple("a", "10.0.0.11", "10.244.1.0/24"), b.clone(), c, d];
        let p = plan("a", &nodes, AsnMode::LastOctet);
        assert!(p.members.is_empty());
        let reasons: Vec<&str> = p.left_out.iter().map(|(_, r)| r.as_str()).collect();
        assert!(reasons[0].contains("labelled novanet.io/bgp-mesh=false"));
        assert!(reasons[1].contains("no InternalIP"));
        assert!(reasons[2].contains("no AS"));
        // The excluded node itself peers with nobody.
        let p = plan("b", &nodes, AsnMode::LastOctet);
        assert!(p.members.is_empty());
        assert!(p.left_out.iter().all(|(_, r)| r.contains("this node is labelled")));
    }

    #[test]
    fn collisions_are_found_across_the_whole_cluster_and_follow_the_asn_mode() {
        let nodes = [
            simple("a", "10.0.0.11", "10.244.1.0/24"),
            simple("b", "10.0.1.11", "10.244.2.0/24"),
            simple("c", "10.0.2.11", "10.244.3.0/24"),
            simple("d", "10.0.2.12", "10.244.4.0/24"),
        ];
        let p = plan("d", &nodes, AsnMode::LastOctet);
        assert_eq!(p.collisions, vec![(65011, vec!["a".into(), "b".into(), "c".into()])]);
        // Still peered: the collision is reported, the operator decides.
        assert_eq!(p.members.len(), 3);
        assert!(plan("d", &nodes, AsnMode::LastTwoOctets).collisions.is_empty());
    }

    #[test]
    fn a_node_missing_from_the_list_changes_nothing_for_the_others() {
        let nodes = [simple("b", "10.0.0.12", "10.244.2.0/24")];
        assert_eq!(plan("a", &nodes, AsnMode::LastOctet).members.len(), 1);
    }

    #[test]
    fn with_route_servers_a_node_peers_with_them_only() {
        let mut nodes = vec![
            simple("a", "10.0.0.11", "10.244.1.0/24"),
            simple("b", "10.0.0.12", "10.244.2.0/24"),
            simple("c", "10.0.0.13", "10.244.3.0/24"),
            simple("d", "10.0.0.14", "10.244.4.0/24"),
        ];
        nodes[0].route_server = true;
        nodes[1].route_server = true;
        let roles = |nodes: &[ClusterNode], me: &str| -> Vec<(String, MeshRole)> {
            plan(me, nodes, AsnMode::LastOctet)
                .members
                .iter()
                .map(|m| (m.name.clone(), m.role))
                .collect()
        };
        assert_eq!(
            roles(&nodes, "c"),
            [
                ("a".to_string(), MeshRole::RouteServer),
                ("b".to_string(), MeshRole::RouteServer)
            ]
        );
        assert_eq!(
            roles(&nodes, "a"),
            [
                ("b".to_string(), MeshRole::Peer),
                ("c".to_string(), MeshRole::Client),
                ("d".to_string(), MeshRole::Client)
            ]
        );
        let c = plan("c", &nodes, AsnMode::LastOctet);
        assert_eq!(
            c.members[0].pod_cidrs.len(),
            3,
            "a route server carries every other node's PodCIDR"
        );
        assert_eq!(c.cluster_cidrs.len(), 4);
        // No route server: the full mesh.
        nodes[0].route_server = false;
        nodes[1].route_server = false;
        let full = roles(&nodes, "c");
        assert!(full.iter().all(|(_, r)| *r == MeshRole::Peer) && full.len() == 3);
    }
}
