//! What a node of the mesh can make another node install. A compromised
//! node (a real GoBGP speaker at node n2's address and AS) announces, next
//! to its own PodCIDR, another node's PodCIDR more-specific, a default
//! route split in two /1 halves, a ToR's /32, a service /24 no owner may
//! advertise, and a part of its own PodCIDR pointing at another node. n1
//! installs its PodCIDR only, via n2; before, it installed every one.

use novanet_conformance::checks::{agent_established, switched, SETTLE};
use novanet_conformance::kernel::bgp_routes;
use novanet_conformance::{wait_until, Agent, GoBgp, Lab};
use serde_json::json;

#[test]
fn a_mesh_node_gets_only_its_own_routes_installed() {
    let mut lab = Lab::new("meshleak");
    switched(
        &mut lab,
        &[("n1", "10.0.0.11/24"), ("n2", "10.0.0.12/24"), ("n3", "10.0.0.13/24")],
    );
    let nodes: Vec<_> = (1..=3)
        .map(
            |j| json!({"name": format!("n{j}"), "ip": format!("10.0.0.1{j}"), "pod_cidr": format!("10.244.1{j}.0/24")}),
        )
        .collect();
    let n1 = Agent::start(
        &mut lab,
        "n1",
        &json!({
            "node_name": "n1",
            "node_ip": "10.0.0.11",
            "pod_cidr": "10.244.11.0/24",
            "owners": {"edge": {"token": "edge-token", "allowed_prefixes": {"type": "host_only", "allowed_cidrs": ["10.96.0.0/12"]}}},
            "routing": {"bfd": {"enabled": false},
                        "node_mesh": {"enabled": true, "source": "static", "nodes": nodes}}
        }),
    );
    // n2, compromised: its AS by the node rule, its address.
    let n2 = GoBgp::start(
        &mut lab,
        "n2",
        &GoBgp::config(65012, "10.0.0.12", &[("10.0.0.11", 65011)]),
    );
    agent_established(&n1, "10.0.0.12");

    let leaks = [
        ("10.244.13.0/25", "10.0.0.12"), // n3's pods, more specific than n3's /24
        ("0.0.0.0/1", "10.0.0.12"),      // a default route in two halves
        ("128.0.0.0/1", "10.0.0.12"),
        ("10.0.0.1/32", "10.0.0.12"),      // the ToR
        ("10.96.0.0/24", "10.0.0.12"),     // services, but owners may advertise only /32s there
        ("10.244.12.128/25", "10.0.0.13"), // its own pods, sent to n3
    ];
    for (prefix, hop) in leaks {
        n2.cli(&["global", "rib", "add", prefix, "nexthop", hop, "-a", "ipv4"]);
    }
    // What n2 may announce: its PodCIDR and a service VIP; last, so the
    // leaks were taken or refused before they are installed.
    n2.cli(&["global", "rib", "add", "10.96.0.7/32", "-a", "ipv4"]);
    n2.cli(&["global", "rib", "add", "10.244.12.0/24", "-a", "ipv4"]);
    wait_until("n2's PodCIDR and VIP installed on n1", SETTLE, || {
        let r = bgp_routes(&lab, "n1");
        match (r.get("10.244.12.0/24"), r.get("10.96.0.7/32")) {
            (Some(a), Some(b)) if a == &["10.0.0.12"] && b == &["10.0.0.12"] => Ok(()),
            _ => Err(format!("{r:?}")),
        }
    });
    let installed = bgp_routes(&lab, "n1");
    let leaked: Vec<_> = leaks
        .iter()
        .map(|(p, _)| *p)
        .filter(|p| installed.contains_key(*p))
        .collect();
    assert!(leaked.is_empty(), "leaked into n1's kernel: {leaked:?} ({installed:?})");
    for (prefix, _) in leaks {
        assert!(n1.route(prefix).is_empty(), "{prefix} in n1's RIB");
    }
    assert_eq!(n1.peer("10.0.0.12")["state"], "Established");
}
