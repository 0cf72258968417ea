//! The NetworkPolicy examples and truth tables of the Kubernetes
//! documentation ("Network Policies"), checked against what the compiled
//! maps say, read the way the TC programs read them.

use super::compile::{compile, Cluster, Compiled, PodInfo, ServiceInfo, SERVICE_IDENTITY_BITS};
use novanet_ebpf::maps::{
    Addr, PolicyKey, PortKey, DIRECTION_EGRESS, DIRECTION_INGRESS, IDENTITY_ANY, IDENTITY_WORLD, MORE_PORTS,
};
use serde_json::json;
use std::collections::BTreeMap;
use std::net::IpAddr;

const TCP: u8 = 6;
const UDP: u8 = 17;

/// The verdict the programs reach for a new flow, from the maps alone
/// (the same lookups in the same order as `bpf/policy.bpf.c`).
fn allows(c: &Compiled, src: &str, dst: &str, proto: u8, port: u16) -> bool {
    let cidr_identity = |ip: &str| -> Option<u32> {
        let a = Addr::from(ip.parse::<IpAddr>().unwrap());
        c.state
            .cidrs
            .iter()
            .filter(|((p, len), _)| {
                let bits = |x: &Addr| u128::from_be_bytes(x.0);
                let mask = if *len == 0 { 0 } else { u128::MAX << (128 - len) };
                bits(p) & mask == bits(&a) & mask
            })
            .max_by_key(|((_, len), _)| *len)
            .map(|(_, id)| *id)
    };
    let identity = |ip: &str| -> u32 {
        let a = Addr::from(ip.parse::<IpAddr>().unwrap());
        match c.endpoints.get(&a) {
            Some(id) => *id,
            None => cidr_identity(ip).unwrap_or(IDENTITY_WORLD),
        }
    };
    let (s, d) = (identity(src), identity(dst));
    let dir_ok = |isolated: &std::collections::BTreeSet<u32>,
                  map: &BTreeMap<PolicyKey, _>,
                  direction: u8,
                  peer: u32,
                  local: u32| {
        if !isolated.contains(&local) {
            return true;
        }
        let map: &BTreeMap<PolicyKey, novanet_ebpf::maps::PolicyValue> = map;
        [(peer, proto), (peer, 0), (IDENTITY_ANY, proto), (IDENTITY_ANY, 0)]
            .iter()
            .filter_map(|(p, pr)| map.get(&PolicyKey::new(*p, local, *pr)).map(|v| (*p, *pr, v)))
            .any(|(p, pr, v)| {
                v.all_ports == 1
                    || v.ranges[..v.count as usize]
                        .iter()
                        .any(|r| port >= r.first && port <= r.last)
                    || (v.flags & MORE_PORTS != 0
                        && c.state.more_ports.contains(&PortKey {
                            peer: p,
                            local,
                            protocol: pr,
                            direction,
                            port,
                        }))
            })
    };
    // A pod's address is its identity, and also the ipBlocks holding it
    // (a Service's cluster address is its identity only).
    let either = |map, isolated, direction, peer_ip: &str, peer: u32, local: u32| {
        dir_ok(isolated, map, direction, peer, local)
            || (peer & SERVICE_IDENTITY_BITS != SERVICE_IDENTITY_BITS
                && cidr_identity(peer_ip).is_some_and(|p| p != peer && dir_ok(isolated, map, direction, p, local)))
    };
    // The source's egress, then the destination's ingress.
    either(&c.state.egress, &c.state.egress_isolated, DIRECTION_EGRESS, dst, d, s)
        && either(
            &c.state.ingress,
            &c.state.ingress_isolated,
            DIRECTION_INGRESS,
            src,
            s,
            d,
        )
}

fn pod(ns: &str, name: &str, ip: &str, labels: &[(&str, &str)]) -> PodInfo {
    PodInfo {
        namespace: ns.into(),
        name: name.into(),
        labels: labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        ips: vec![ip.parse().unwrap()],
        named_ports: vec![("serve-81-tcp".into(), TCP, 81), ("serve-81-udp".into(), UDP, 81)],
    }
}

fn policy(v: serde_json::Value) -> k8s_openapi::api::networking::v1::NetworkPolicy {
    serde_json::from_value(v).expect("a NetworkPolicy")
}

/// The documentation's cluster: `default` (db 10.0.0.10, frontend
/// 10.0.0.11, other 10.0.0.12) and `myproject` (any pod 10.0.1.10),
/// `other` namespace (10.0.2.10).
fn cluster(policies: Vec<serde_json::Value>) -> Compiled {
    cluster_with(policies, vec![], BTreeMap::new())
}

/// The documentation's cluster with Services.
fn cluster_with_services(policies: Vec<serde_json::Value>, services: Vec<ServiceInfo>) -> Compiled {
    let mut namespaces = BTreeMap::new();
    namespaces.insert("default".to_string(), BTreeMap::new());
    compile(&Cluster {
        pods: vec![
            pod("default", "db", "10.0.0.10", &[("role", "db")]),
            pod("default", "frontend", "10.0.0.11", &[("role", "frontend")]),
            pod("default", "other", "10.0.0.12", &[("role", "other")]),
            pod("default", "db-2", "10.0.0.13", &[("role", "db")]),
        ],
        namespaces,
        policies: policies.into_iter().map(policy).collect(),
        services,
        ..Default::default()
    })
}

/// The documentation's cluster with more pods and this node's pods as
/// CNI ADD gave them addresses.
fn cluster_with(
    policies: Vec<serde_json::Value>,
    more: Vec<PodInfo>,
    local_pods: BTreeMap<(String, String), Vec<IpAddr>>,
) -> Compiled {
    let mut namespaces = BTreeMap::new();
    namespaces.insert("default".to_string(), BTreeMap::new());
    namespaces.insert(
        "myproject".to_string(),
        [("project".to_string(), "myproject".to_string())].into(),
    );
    namespaces.insert("other".to_string(), BTreeMap::new());
    compile(&Cluster {
        pods: [
            pod("default", "db", "10.0.0.10", &[("role", "db")]),
            pod("default", "frontend", "10.0.0.11", &[("role", "frontend")]),
            pod("default", "other", "10.0.0.12", &[("role", "other")]),
            pod("myproject", "p", "10.0.1.10", &[("role", "anything")]),
            pod("other", "o", "10.0.2.10", &[("role", "frontend")]),
        ]
        .into_iter()
        .chain(more)
        .collect(),
        namespaces,
        policies: policies.into_iter().map(policy).collect(),
        host_ips: vec!["192.168.0.1".parse().unwrap()],
        local_pods,
        services: vec![],
    })
}

#[test]
fn without_policies_everything_is_open() {
    let c = cluster(vec![]);
    assert!(allows(&c, "10.0.2.10", "10.0.0.10", TCP, 1));
    assert!(allows(&c, "10.0.0.10", "8.8.8.8", UDP, 53));
}

#[test]
fn the_documentation_s_example_policy() {
    let c = cluster(vec![json!({
        "metadata": {"name": "test-network-policy", "namespace": "default"},
        "spec": {
            "podSelector": {"matchLabels": {"role": "db"}},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [{
                "from": [
                    {"ipBlock": {"cidr": "172.17.0.0/16", "except": ["172.17.1.0/24"]}},
                    {"namespaceSelector": {"matchLabels": {"project": "myproject"}}},
                    {"podSelector": {"matchLabels": {"role": "frontend"}}}
                ],
                "ports": [{"protocol": "TCP", "port": 6379}]
            }],
            "egress": [{
                "to": [{"ipBlock": {"cidr": "10.0.0.0/24"}}],
                "ports": [{"protocol": "TCP", "port": 5978}]
            }]
        }
    })]);
    // Ingress to db on TCP 6379 from the three peers, nothing else.
    assert!(allows(&c, "172.17.0.5", "10.0.0.10", TCP, 6379), "ipBlock");
    assert!(!allows(&c, "172.17.1.5", "10.0.0.10", TCP, 6379), "except");
    assert!(allows(&c, "10.0.1.10", "10.0.0.10", TCP, 6379), "namespaceSelector");
    assert!(
        allows(&c, "10.0.0.11", "10.0.0.10", TCP, 6379),
        "podSelector in the policy's namespace"
    );
    assert!(
        !allows(&c, "10.0.2.10", "10.0.0.10", TCP, 6379),
        "role=frontend of another namespace"
    );
    assert!(!allows(&c, "10.0.0.12", "10.0.0.10", TCP, 6379), "another pod");
    assert!(!allows(&c, "10.0.0.11", "10.0.0.10", TCP, 6380), "another port");
    assert!(!allows(&c, "10.0.0.11", "10.0.0.10", UDP, 6379), "another protocol");
    // Egress from db: TCP 5978 to 10.0.0.0/24 only (pods there count by
    // identity, not address: the docs' ipBlock is for outside the cluster).
    assert!(allows(&c, "10.0.0.10", "10.0.0.200", TCP, 5978));
    assert!(!allows(&c, "10.0.0.10", "10.0.0.200", TCP, 80));
    assert!(!allows(&c, "10.0.0.10", "8.8.8.8", TCP, 5978));
    // Pods the policy does not select stay open.
    assert!(allows(&c, "10.0.2.10", "10.0.0.12", TCP, 1));
    // The node reaches db (probes).
    assert!(allows(&c, "192.168.0.1", "10.0.0.10", TCP, 8080));
}

#[test]
fn default_deny_and_allow_all() {
    let deny_in = json!({"metadata": {"name": "deny", "namespace": "default"},
        "spec": {"podSelector": {}, "policyTypes": ["Ingress"]}});
    let c = cluster(vec![deny_in.clone()]);
    assert!(!allows(&c, "10.0.1.10", "10.0.0.10", TCP, 80));
    assert!(!allows(&c, "10.0.0.11", "10.0.0.10", TCP, 80), "same namespace too");
    assert!(allows(&c, "10.0.0.10", "10.0.1.10", TCP, 80), "egress stays open");
    assert!(
        allows(&c, "10.0.0.10", "10.0.2.10", TCP, 80),
        "other namespaces are not selected"
    );
    let allow_in = json!({"metadata": {"name": "allow", "namespace": "default"},
        "spec": {"podSelector": {}, "ingress": [{}]}});
    let c = cluster(vec![deny_in, allow_in]);
    assert!(allows(&c, "10.0.1.10", "10.0.0.10", TCP, 80), "policies add up");
    let deny_out = json!({"metadata": {"name": "deny-out", "namespace": "default"},
        "spec": {"podSelector": {}, "policyTypes": ["Egress"]}});
    let c = cluster(vec![deny_out]);
    assert!(!allows(&c, "10.0.0.10", "8.8.8.8", UDP, 53));
    assert!(allows(&c, "10.0.1.10", "10.0.0.10", TCP, 80), "ingress stays open");
    let allow_out = json!({"metadata": {"name": "allow-out", "namespace": "default"},
        "spec": {"podSelector": {}, "egress": [{}], "policyTypes": ["Egress"]}});
    let c = cluster(vec![allow_out]);
    assert!(allows(&c, "10.0.0.10", "8.8.8.8", UDP, 53));
}

#[test]
fn and_inside_one_peer_or_between_peers() {
    let and = json!({"metadata": {"name": "and", "namespace": "default"},
    "spec": {"podSelector": {"matchLabels": {"role": "db"}}, "ingress": [{"from": [
        {"namespaceSelector": {"matchLabels": {"project": "myproject"}}, "podSelector": {"matchLabels": {"role": "frontend"}}}
    ]}]}});
    let c = cluster(vec![and]);
    assert!(
        !allows(&c, "10.0.1.10", "10.0.0.10", TCP, 1),
        "myproject pod without role=frontend"
    );
    assert!(
        !allows(&c, "10.0.0.11", "10.0.0.10", TCP, 1),
        "role=frontend outside myproject"
    );
    let or = json!({"metadata": {"name": "or", "namespace": "default"},
    "spec": {"podSelector": {"matchLabels": {"role": "db"}}, "ingress": [{"from": [
        {"namespaceSelector": {"matchLabels": {"project": "myproject"}}},
        {"podSelector": {"matchLabels": {"role": "frontend"}}}
    ]}]}});
    let c = cluster(vec![or]);
    assert!(allows(&c, "10.0.1.10", "10.0.0.10", TCP, 1));
    assert!(allows(&c, "10.0.0.11", "10.0.0.10", TCP, 1));
    assert!(!allows(&c, "10.0.2.10", "10.0.0.10", TCP, 1));
    // All pods of every namespace: an empty namespaceSelector.
    let all_ns = json!({"metadata": {"name": "all", "namespace": "default"},
        "spec": {"podSelector": {"matchLabels": {"role": "db"}}, "ingress": [{"from": [{"namespaceSelector": {}}]}]}});
    let c = cluster(vec![all_ns]);
    assert!(allows(&c, "10.0.2.10", "10.0.0.10", TCP, 1));
    assert!(
        !allows(&c, "203.0.113.1", "10.0.0.10", TCP, 1),
        "outside the cluster is not a namespace"
    );
}

#[test]
fn port_ranges_expressions_and_what_is_not_honoured() {
    let ranges = json!({"metadata": {"name": "r", "namespace": "default"},
    "spec": {"podSelector": {"matchExpressions": [{"key": "role", "operator": "In", "values": ["db", "other"]}]},
        "ingress": [{"ports": [
            {"protocol": "TCP", "port": 32000, "endPort": 32768},
            {"protocol": "UDP"},
            {"port": "http"}
        ]}]}});
    let c = cluster(vec![ranges]);
    for dst in ["10.0.0.10", "10.0.0.12"] {
        assert!(allows(&c, "10.0.2.10", dst, TCP, 32000));
        assert!(allows(&c, "10.0.2.10", dst, TCP, 32768));
        assert!(!allows(&c, "10.0.2.10", dst, TCP, 32769));
        assert!(allows(&c, "10.0.2.10", dst, UDP, 9999), "every UDP port");
        assert!(
            !allows(&c, "10.0.2.10", dst, TCP, 80),
            "no pod serves a port named http"
        );
    }
    assert!(
        allows(&c, "10.0.2.10", "10.0.0.11", TCP, 80),
        "NotIn the expression: open"
    );
    assert!(c.warnings.iter().any(|w| w.contains("\"http\"")), "{:?}", c.warnings);
}

#[test]
fn any_number_of_ports_allows_exactly_those_ports() {
    // Seventeen single ports, 80, 82, ... 112: more than the 16 ranges an
    // entry holds. Not one port between them may open.
    let ports: Vec<serde_json::Value> = (0..17)
        .map(|i| json!({"protocol": "TCP", "port": 80 + 2 * i}))
        .collect();
    let mut egress_ports = ports.clone();
    egress_ports.push(json!({"protocol": "TCP", "port": 7000, "endPort": 7100}));
    let c = cluster(vec![
        json!({"metadata": {"name": "many", "namespace": "default"},
            "spec": {"podSelector": {"matchLabels": {"role": "db"}}, "ingress": [{"ports": ports}]}}),
        json!({"metadata": {"name": "many-out", "namespace": "default"},
            "spec": {"podSelector": {"matchLabels": {"role": "frontend"}}, "policyTypes": ["Egress"],
                     "egress": [{"ports": egress_ports}]}}),
    ]);
    for i in 0..17u16 {
        assert!(
            allows(&c, "10.0.2.10", "10.0.0.10", TCP, 80 + 2 * i),
            "port {}",
            80 + 2 * i
        );
        assert!(
            !allows(&c, "10.0.2.10", "10.0.0.10", TCP, 81 + 2 * i),
            "port {}",
            81 + 2 * i
        );
        assert!(
            allows(&c, "10.0.0.11", "10.0.2.10", TCP, 80 + 2 * i),
            "egress port {}",
            80 + 2 * i
        );
        assert!(
            !allows(&c, "10.0.0.11", "10.0.2.10", TCP, 81 + 2 * i),
            "egress port {}",
            81 + 2 * i
        );
    }
    assert!(!allows(&c, "10.0.2.10", "10.0.0.10", TCP, 79));
    assert!(
        allows(&c, "10.0.0.11", "10.0.2.10", TCP, 7050),
        "the wide range stays a range"
    );
    assert!(!allows(&c, "10.0.0.11", "10.0.2.10", TCP, 7101));
    assert!(!c.state.more_ports.is_empty());
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
}

#[test]
fn an_ip_block_holds_the_pods_in_it() {
    // Egress to a pod's /32; ingress from a CIDR holding pod addresses,
    // with an except; the upstream suite's ipBlock cases.
    let c = cluster(vec![
        json!({"metadata": {"name": "to-db", "namespace": "default"},
            "spec": {"podSelector": {"matchLabels": {"role": "frontend"}}, "policyTypes": ["Egress"],
                     "egress": [{"to": [{"ipBlock": {"cidr": "10.0.0.10/32"}}]}]}}),
        json!({"metadata": {"name": "from-block", "namespace": "default"},
            "spec": {"podSelector": {"matchLabels": {"role": "db"}}, "policyTypes": ["Ingress"],
                     "ingress": [{"from": [{"ipBlock": {"cidr": "10.0.0.0/16", "except": ["10.0.2.0/24"]}}]}]}}),
    ]);
    assert!(
        allows(&c, "10.0.0.11", "10.0.0.10", TCP, 80),
        "frontend to db's /32, db admits 10.0.0.0/16"
    );
    assert!(
        !allows(&c, "10.0.0.11", "10.0.0.12", TCP, 80),
        "frontend may reach only db's /32"
    );
    assert!(allows(&c, "10.0.1.10", "10.0.0.10", TCP, 80), "a pod inside the block");
    assert!(
        !allows(&c, "10.0.2.10", "10.0.0.10", TCP, 80),
        "a pod inside the except"
    );
    assert!(!allows(&c, "192.168.9.9", "10.0.0.10", TCP, 80), "outside the block");
}

#[test]
fn named_ports_resolve_against_the_pods_they_apply_to() {
    // The upstream cases: ingress on a named port, ingress from a
    // namespace on a named port, egress on a named port. Every pod here
    // serves serve-81-tcp on 81 and serve-81-udp on UDP 81.
    let c = cluster(vec![
        json!({"metadata": {"name": "in", "namespace": "default"},
            "spec": {"podSelector": {"matchLabels": {"role": "db"}},
                     "ingress": [{"ports": [{"port": "serve-81-tcp"}]}]}}),
        json!({"metadata": {"name": "in-ns", "namespace": "default"},
            "spec": {"podSelector": {"matchLabels": {"role": "other"}},
                     "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"project": "myproject"}}}],
                                  "ports": [{"port": "serve-81-tcp"}]}]}}),
        json!({"metadata": {"name": "out", "namespace": "default"},
            "spec": {"podSelector": {"matchLabels": {"role": "frontend"}}, "policyTypes": ["Egress"],
                     "egress": [{"ports": [{"protocol": "UDP", "port": "serve-81-udp"}]}]}}),
    ]);
    assert!(allows(&c, "10.0.2.10", "10.0.0.10", TCP, 81));
    assert!(!allows(&c, "10.0.2.10", "10.0.0.10", TCP, 80));
    assert!(!allows(&c, "10.0.2.10", "10.0.0.10", UDP, 81), "the name is TCP's");
    assert!(allows(&c, "10.0.1.10", "10.0.0.12", TCP, 81));
    assert!(
        !allows(&c, "10.0.2.10", "10.0.0.12", TCP, 81),
        "not from that namespace"
    );
    assert!(allows(&c, "10.0.0.11", "10.0.2.10", UDP, 81));
    assert!(!allows(&c, "10.0.0.11", "10.0.2.10", UDP, 80));
    assert!(
        !allows(&c, "10.0.0.11", "192.168.9.9", UDP, 81),
        "no pod there holds the name"
    );
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
}

#[test]
fn a_pod_known_only_from_cni_add_is_never_open_where_policy_isolates() {
    let deny_db = json!({"metadata": {"name": "db", "namespace": "default"},
        "spec": {"podSelector": {"matchLabels": {"role": "db"}},
                 "ingress": [{"from": [{"podSelector": {"matchLabels": {"role": "frontend"}}}]}]}});
    let egress_other = json!({"metadata": {"name": "out", "namespace": "default"},
        "spec": {"podSelector": {"matchLabels": {"role": "other"}}, "policyTypes": ["Egress"],
                 "egress": [{"ports": [{"port": 53, "protocol": "UDP"}]}]}});
    let dns_for_all = json!({"metadata": {"name": "dns", "namespace": "default"},
        "spec": {"podSelector": {}, "policyTypes": ["Egress"],
                 "egress": [{"ports": [{"port": 53, "protocol": "UDP"}]}, {"to": [{"namespaceSelector": {}}]}]}});
    // A second db whose Pod is listed without an address yet: it takes
    // the address CNI gave it, and its labels with it.
    let mut pending = pod("default", "db-2", "10.0.0.99", &[("role", "db")]);
    pending.ips.clear();
    let local = |ns: &str, name: &str, ip: &str| ((ns.to_string(), name.to_string()), vec![ip.parse().unwrap()]);
    let c = cluster_with(
        vec![deny_db.clone(), egress_other.clone()],
        vec![pending],
        BTreeMap::from([
            local("default", "db-2", "10.0.0.20"),
            local("default", "new", "10.0.0.21"),
            local("other", "new", "10.0.2.21"),
        ]),
    );
    assert!(
        allows(&c, "10.0.0.11", "10.0.0.20", TCP, 5432),
        "the frontend reaches the new db"
    );
    assert!(
        !allows(&c, "10.0.0.12", "10.0.0.20", TCP, 5432),
        "the new db is isolated as a db"
    );
    // No Pod yet in a namespace whose policies isolate: isolated in each
    // direction some policy isolates, allowed what selects every pod.
    assert!(!allows(&c, "10.0.0.11", "10.0.0.21", TCP, 80));
    assert!(!allows(&c, "10.0.0.21", "10.0.2.10", TCP, 80));
    assert!(!allows(&c, "10.0.0.21", "8.8.8.8", UDP, 53));
    // Where no policy isolates, open.
    assert!(allows(&c, "10.0.0.11", "10.0.2.21", TCP, 80));
    assert!(allows(&c, "10.0.2.21", "10.0.0.11", TCP, 80));
    let unresolved = c
        .identities
        .values()
        .filter(|k| k.labels.contains_key(super::compile::UNRESOLVED_LABEL))
        .count();
    assert_eq!(unresolved, 2, "one identity per namespace for pods not known yet");

    // A rule selecting every pod of the namespace holds for it too.
    let c = cluster_with(
        vec![deny_db, egress_other, dns_for_all],
        vec![],
        BTreeMap::from([local("default", "new", "10.0.0.21")]),
    );
    assert!(allows(&c, "10.0.0.21", "8.8.8.8", UDP, 53));
    assert!(allows(&c, "10.0.0.21", "10.0.2.10", TCP, 80));
    assert!(!allows(&c, "10.0.0.21", "8.8.8.8", TCP, 443));
}

#[test]
fn a_service_is_judged_by_its_backends_never_by_an_ip_block() {
    let svc = |name: &str, ip: &str, backends: &[&str]| ServiceInfo {
        namespace: "default".into(),
        name: name.into(),
        cluster_ips: vec![ip.parse().unwrap()],
        ports: vec![(TCP, 80, backends.iter().map(|b| (b.parse().unwrap(), 5432)).collect())],
    };
    let services = vec![
        svc("db", "10.96.0.10", &["10.0.0.10", "10.0.0.13"]),
        svc("mixed", "10.96.0.11", &["10.0.0.10", "10.0.0.12"]),
        svc("empty", "10.96.0.12", &[]),
    ];
    // "The internet but not the cluster": the Service range is inside the
    // ipBlock, and still no backend is reached through it.
    let internet_only = json!({"metadata": {"name": "out", "namespace": "default"},
        "spec": {"podSelector": {"matchLabels": {"role": "frontend"}}, "policyTypes": ["Egress"],
                 "egress": [{"to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": ["10.0.0.0/16"]}}]}]}});
    let c = cluster_with_services(vec![internet_only.clone()], services.clone());
    assert!(allows(&c, "10.0.0.11", "8.8.8.8", TCP, 443));
    assert!(!allows(&c, "10.0.0.11", "10.0.0.10", TCP, 5432));
    assert!(
        !allows(&c, "10.0.0.11", "10.96.0.10", TCP, 80),
        "a ClusterIP reached a pod the policy refuses"
    );
    // Allowed to the db pods on 5432: the db Service's port 80 opens,
    // the mixed one (a backend not allowed) and the empty one do not.
    let to_db = json!({"metadata": {"name": "db", "namespace": "default"},
        "spec": {"podSelector": {"matchLabels": {"role": "frontend"}}, "policyTypes": ["Egress"],
                 "egress": [{"to": [{"podSelector": {"matchLabels": {"role": "db"}}}],
                             "ports": [{"port": 5432, "protocol": "TCP"}]}]}});
    let c = cluster_with_services(vec![internet_only, to_db], services);
    assert!(allows(&c, "10.0.0.11", "10.96.0.10", TCP, 80));
    assert!(!allows(&c, "10.0.0.11", "10.96.0.10", TCP, 81));
    assert!(!allows(&c, "10.0.0.11", "10.96.0.10", UDP, 80));
    assert!(!allows(&c, "10.0.0.11", "10.96.0.11", TCP, 80));
    assert!(!allows(&c, "10.0.0.11", "10.96.0.12", TCP, 80));
    // A pod no egress policy isolates reaches every Service.
    assert!(allows(&c, "10.0.0.12", "10.96.0.11", TCP, 80));
    assert!(c
        .identities
        .values()
        .any(|k| k.labels.get("novanet.io/service") == Some(&"db".to_string())));
}
