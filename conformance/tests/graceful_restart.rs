//! Graceful restart with traffic: a node's agent is killed (-9) and
//! restarted while a pod on it pings a pod on another node. No kernel route
//! disappears, the FRR ToR (helper) keeps the node's PodCIDR, the ping
//! loses nothing, and routes not re-learned after the restart are swept.
//! The mesh's BFD detection time (5 s) outlasts the restart, so the other
//! node's BFD session is still Up when the restarted agent's new one
//! signals Down: that must not close the BGP session already renewed.

use novanet_conformance::checks::{agent_established, wait_for_value, SETTLE};
use novanet_conformance::kernel::bgp_routes;
use novanet_conformance::{wait_until, Agent, Frr, Lab};
use serde_json::{json, Value};
use std::time::Duration;

const FRR: &str = "hostname tor
router bgp 65000
 bgp router-id 10.0.0.1
 no bgp ebgp-requires-policy
 no bgp network import-check
 neighbor 10.0.0.11 remote-as 65011
 neighbor 10.0.0.11 timers 3 9
 neighbor 10.0.0.11 timers connect 1
 neighbor 10.0.0.12 remote-as 65012
 neighbor 10.0.0.12 timers 3 9
 neighbor 10.0.0.12 timers connect 1
 address-family ipv4 unicast
  network 198.51.100.0/24
 exit-address-family
";

fn node_config(name: &str, ip: &str, pod_cidr: &str) -> Value {
    json!({
        "node_name": name,
        "node_ip": ip,
        "pod_cidr": pod_cidr,
        "routing": {
            "bfd": {"enabled": true, "min_rx_ms": 1000, "min_tx_ms": 1000, "detect_multiplier": 5},
            "peers": [{"neighbor_address": "10.0.0.1", "remote_as": 65000, "hold_time": 9, "keepalive": 3}],
            "node_mesh": {"enabled": true, "source": "static", "nodes": [
                {"name": "node-a", "ip": "10.0.0.11", "pod_cidr": "10.244.11.0/24"},
                {"name": "node-b", "ip": "10.0.0.12", "pod_cidr": "10.244.12.0/24"}
            ]}
        }
    })
}

/// A node namespace on the ToR's bridge, with a pod namespace behind it.
fn node_with_pod(lab: &mut Lab, node: &str, ip: &str, pod: &str, pod_gw: &str, pod_ip: &str) {
    lab.add_ns(node);
    lab.add_ns(pod);
    lab.link_to_bridge(node, "eth0", &[&format!("{ip}/24")], "tor", "br0", &format!("p-{node}"));
    lab.link(
        node,
        "pod0",
        &[&format!("{pod_gw}/24")],
        pod,
        "eth0",
        &[&format!("{pod_ip}/24")],
    );
    lab.exec(pod, "ip", &["route", "add", "default", "via", pod_gw]);
    lab.forwarding(node);
}

fn frr_route_stale(frr: &Frr, prefix: &str) -> Option<bool> {
    let v = frr.json(&format!("show bgp ipv4 unicast {prefix} json"));
    let path = v["paths"].as_array()?.first()?.clone();
    Some(path["stale"].as_bool().unwrap_or(false))
}

#[test]
fn agent_kill_and_restart_loses_no_packet() {
    let mut lab = Lab::new("gr");
    lab.add_ns("tor");
    lab.add_bridge("tor", "br0", &["10.0.0.1/24"]);
    node_with_pod(&mut lab, "node-a", "10.0.0.11", "pod-a", "10.244.11.1", "10.244.11.10");
    node_with_pod(&mut lab, "node-b", "10.0.0.12", "pod-b", "10.244.12.1", "10.244.12.10");
    let frr = Frr::start(&mut lab, "tor", FRR);
    let cfg_a = node_config("node-a", "10.0.0.11", "10.244.11.0/24");
    let agent_a = Agent::start(&mut lab, "node-a", &cfg_a);
    let agent_b = Agent::start(
        &mut lab,
        "node-b",
        &node_config("node-b", "10.0.0.12", "10.244.12.0/24"),
    );
    agent_established(&agent_a, "10.0.0.12");
    agent_established(&agent_b, "10.0.0.11");
    let kernel = |lab: &Lab, ns: &str, p: &str| bgp_routes(lab, ns).get(p).cloned();
    wait_for_value(
        "node-a routes pod-b's PodCIDR",
        Some(vec!["10.0.0.12".to_string()]),
        || kernel(&lab, "node-a", "10.244.12.0/24"),
    );
    wait_for_value(
        "node-a holds the ToR's route",
        Some(vec!["10.0.0.1".to_string()]),
        || kernel(&lab, "node-a", "198.51.100.0/24"),
    );
    wait_for_value(
        "node-b routes pod-a's PodCIDR",
        Some(vec!["10.0.0.11".to_string()]),
        || kernel(&lab, "node-b", "10.244.11.0/24"),
    );
    let routes_a = bgp_routes(&lab, "node-a");

    // Traffic from pod-a to pod-b, every 20 ms.
    let ping_log = lab.spawn("ping", "pod-a", "ping", &["-n", "-i", "0.02", "10.244.12.10"]);
    wait_until("the ping to get replies", SETTLE, || {
        let log = std::fs::read_to_string(&ping_log).unwrap_or_default();
        if log.matches("bytes from").count() >= 10 {
            Ok(())
        } else {
            Err(log)
        }
    });

    // kill -9: the kernel keeps every route, the peers keep node-a's
    // PodCIDR as stale. (The mesh session may have come up twice already,
    // when both nodes dialled at once: what counts is the restart's.)
    let transitions_before = agent_b.peer("10.0.0.11")["established_transitions"]
        .as_u64()
        .expect("established_transitions");
    lab.signal(&agent_a.name, libc::SIGKILL);
    lab.wait_exit(&agent_a.name, SETTLE);
    wait_for_value("FRR to keep node-a's PodCIDR as stale", Some(true), || {
        frr_route_stale(&frr, "10.244.11.0/24")
    });
    assert_eq!(bgp_routes(&lab, "node-a"), routes_a, "node-a's kernel routes stay");
    assert_eq!(
        kernel(&lab, "node-b", "10.244.11.0/24"),
        Some(vec!["10.0.0.11".to_string()])
    );
    // While node-a is down, the ToR withdraws a route: after the restart
    // it must be swept from node-a's kernel.
    frr.configure(&[
        "router bgp 65000",
        "address-family ipv4 unicast",
        "no network 198.51.100.0/24",
    ]);

    let agent_a = Agent::start(&mut lab, "node-a", &cfg_a);
    agent_established(&agent_a, "10.0.0.1");
    agent_established(&agent_a, "10.0.0.12");
    wait_for_value("FRR to refresh node-a's PodCIDR", Some(false), || {
        frr_route_stale(&frr, "10.244.11.0/24")
    });
    wait_for_value("the stale route to be swept", None, || {
        kernel(&lab, "node-a", "198.51.100.0/24")
    });
    assert_eq!(
        kernel(&lab, "node-a", "10.244.12.0/24"),
        Some(vec!["10.0.0.12".to_string()])
    );
    let fib: Value = serde_json::from_str(&agent_a.get("/status/fib").unwrap()).unwrap();
    assert_eq!(fib["stale"], 0);
    // node-b's BFD session went Down (the restarted neighbor signalled it)
    // and Up again without closing the renewed BGP session.
    wait_for_value("node-b's BFD session to node-a back Up", Some("up".to_string()), || {
        agent_b.bfd_session("10.0.0.11")["state"]
            .as_str()
            .map(str::to_lowercase)
    });
    assert_eq!(
        agent_b.peer("10.0.0.11")["established_transitions"].as_u64(),
        Some(transitions_before + 1),
        "one re-establishment of node-b's session to node-a (the restart's)"
    );

    // A few more replies after the restart, then stop and count.
    let replies_now = std::fs::read_to_string(&ping_log)
        .unwrap_or_default()
        .matches("bytes from")
        .count();
    wait_until("more replies after the restart", SETTLE, || {
        let n = std::fs::read_to_string(&ping_log)
            .unwrap_or_default()
            .matches("bytes from")
            .count();
        if n >= replies_now + 25 {
            Ok(())
        } else {
            Err(n.to_string())
        }
    });
    lab.signal("ping", libc::SIGINT);
    lab.wait_exit("ping", Duration::from_secs(10));
    let log = std::fs::read_to_string(&ping_log).unwrap();
    let (sent, received) = novanet_conformance::checks::ping_counts(&log);
    assert!(sent >= 50, "{sent} sent");
    assert_eq!(sent, received, "no packet lost across the restart: {log}");
}
