//! Route-leak guards against a GoBGP ToR that announces what it must not
//! be believed on: the default route, the node's own PodCIDR, a /32 inside
//! it and a /16 covering it, another node's PodCIDR with a longer path.
//! None of them displaces what it must not: the node's own default route
//! stays, its PodCIDR stays its own, the other node's PodCIDR stays on the
//! mesh; and nothing learned is passed on (the ToR hears only the node's
//! PodCIDR, the other node never hears the ToR's routes through it).

use novanet_conformance::checks::{agent_established, agent_has, wait_for_value, SETTLE};
use novanet_conformance::kernel::bgp_routes;
use novanet_conformance::{wait_until, Agent, GoBgp, Lab};
use serde_json::{json, Value};

fn node_config(name: &str, ip: &str, pod_cidr: &str) -> Value {
    json!({
        "node_name": name,
        "node_ip": ip,
        "pod_cidr": pod_cidr,
        "routing": {
            "peers": [{"neighbor_address": "10.0.0.1", "remote_as": 65000, "hold_time": 9, "keepalive": 3}],
            "node_mesh": {"enabled": true, "source": "static", "nodes": [
                {"name": "node-a", "ip": "10.0.0.11", "pod_cidr": "10.244.11.0/24"},
                {"name": "node-b", "ip": "10.0.0.12", "pod_cidr": "10.244.12.0/24"}
            ]}
        }
    })
}

/// The prefixes a GoBGP neighbor sent (its Adj-RIB-In at GoBGP).
fn sent_to_tor(gobgp: &GoBgp, neighbor: &str) -> Vec<String> {
    let out = gobgp
        .try_cli(&["-j", "neighbor", neighbor, "adj-in", "-a", "ipv4"])
        .unwrap_or_default();
    let v: Value = serde_json::from_str(&out).unwrap_or(Value::Null);
    let mut prefixes: Vec<String> = v.as_object().map(|o| o.keys().cloned().collect()).unwrap_or_default();
    prefixes.sort();
    prefixes
}

#[test]
fn a_tor_announcing_what_it_must_not_displaces_nothing() {
    let mut lab = Lab::new("leaks");
    lab.add_ns("tor");
    lab.add_bridge("tor", "br0", &["10.0.0.1/24"]);
    for (node, ip) in [("node-a", "10.0.0.11"), ("node-b", "10.0.0.12")] {
        lab.add_ns(node);
        lab.link_to_bridge(node, "eth0", &[&format!("{ip}/24")], "tor", "br0", &format!("p-{node}"));
    }
    // node-a's own default route, through a gateway that is not the ToR.
    lab.exec(
        "node-a",
        "ip",
        &["route", "add", "default", "via", "10.0.0.254", "dev", "eth0"],
    );
    let gobgp = GoBgp::start(
        &mut lab,
        "tor",
        &GoBgp::config(65000, "10.0.0.1", &[("10.0.0.11", 65011), ("10.0.0.12", 65012)]),
    );
    for prefix in [
        "0.0.0.0/0",
        "10.244.11.0/24",
        "10.244.11.5/32",
        "10.244.0.0/16",
        "198.51.100.0/24",
    ] {
        gobgp.cli(&["global", "rib", "add", prefix, "-a", "ipv4"]);
    }
    // node-b's PodCIDR, with a path longer than the mesh's.
    gobgp.cli(&[
        "global",
        "rib",
        "add",
        "10.244.12.0/24",
        "aspath",
        "65099,65012",
        "-a",
        "ipv4",
    ]);

    let agent_a = Agent::start(
        &mut lab,
        "node-a",
        &node_config("node-a", "10.0.0.11", "10.244.11.0/24"),
    );
    let agent_b = Agent::start(
        &mut lab,
        "node-b",
        &node_config("node-b", "10.0.0.12", "10.244.12.0/24"),
    );
    for (agent, other) in [(&agent_a, "10.0.0.12"), (&agent_b, "10.0.0.11")] {
        agent_established(agent, "10.0.0.1");
        agent_established(agent, other);
    }
    // The control: an ordinary ToR route is taken and installed.
    agent_has(&agent_a, "198.51.100.0/24", "10.0.0.1", "65000");
    wait_for_value(
        "node-a's kernel routes 198.51.100.0/24 via the ToR",
        Some(vec!["10.0.0.1".to_string()]),
        || bgp_routes(&lab, "node-a").get("198.51.100.0/24").cloned(),
    );
    // The other node's PodCIDR: the mesh path (AS 65012) is best; the
    // ToR's longer one is held but loses on AS path length.
    wait_until("node-a to prefer the mesh for node-b's PodCIDR", SETTLE, || {
        let paths = agent_a.route("10.244.12.0/24");
        let best = paths.iter().find(|p| p["best"] == true).cloned().unwrap_or(Value::Null);
        let tor = paths
            .iter()
            .find(|p| p["from"] == "10.0.0.1")
            .cloned()
            .unwrap_or(Value::Null);
        if best["from"] == "10.0.0.12" && best["as_path"] == "65012" && tor["as_path"] == "65000 65099 65012" {
            Ok(())
        } else {
            Err(format!("{paths:?}"))
        }
    });
    assert_eq!(
        bgp_routes(&lab, "node-a").get("10.244.12.0/24"),
        Some(&vec!["10.0.0.12".to_string()]),
        "node-b's PodCIDR goes to node-b"
    );

    // Rejected at import: the default route and everything overlapping
    // the node's PodCIDR (the RIB holds no path for them at all).
    for prefix in ["0.0.0.0/0", "10.244.11.0/24", "10.244.11.5/32", "10.244.0.0/16"] {
        let paths: Vec<Value> = agent_a
            .route(prefix)
            .into_iter()
            .filter(|p| p["from"] != "local")
            .collect();
        assert!(paths.is_empty(), "{prefix} taken from a peer: {paths:?}");
    }
    let kernel = bgp_routes(&lab, "node-a");
    for prefix in [
        "default",
        "0.0.0.0/0",
        "10.244.11.0/24",
        "10.244.11.5",
        "10.244.11.5/32",
        "10.244.0.0/16",
    ] {
        assert!(!kernel.contains_key(prefix), "{prefix} in node-a's kernel: {kernel:?}");
    }
    let default = lab.exec("node-a", "ip", &["-j", "route", "show", "default"]);
    let default: Value = serde_json::from_str(&default).expect("ip -j route");
    assert_eq!(
        default[0]["gateway"], "10.0.0.254",
        "node-a's own default route stays: {default}"
    );
    assert_eq!(default.as_array().map(Vec::len), Some(1), "{default}");
    // node-b rejected its own PodCIDR from the ToR too.
    let own = agent_b.route("10.244.12.0/24");
    assert!(
        own.iter().any(|p| p["from"] == "local") && own.iter().all(|p| p["from"] == "local"),
        "node-b holds its PodCIDR as its own only: {own:?}"
    );

    // Nothing learned is passed on: the ToR hears from each node its
    // PodCIDR only, and node-b has the ToR's route from the ToR alone.
    wait_for_value(
        "the ToR to hear node-a's PodCIDR only",
        vec!["10.244.11.0/24".to_string()],
        || sent_to_tor(&gobgp, "10.0.0.11"),
    );
    assert_eq!(sent_to_tor(&gobgp, "10.0.0.12"), vec!["10.244.12.0/24".to_string()]);
    agent_has(&agent_b, "198.51.100.0/24", "10.0.0.1", "65000");
    let via_mesh: Vec<Value> = agent_b
        .route("198.51.100.0/24")
        .into_iter()
        .filter(|p| p["from"] == "10.0.0.11")
        .collect();
    assert!(via_mesh.is_empty(), "node-a passed a ToR route to node-b: {via_mesh:?}");
}
