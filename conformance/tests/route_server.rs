//! Route servers (RFC 7947) with FRR, both ways round: two nodes as
//! clients of an FRR route server (`route-server-client`) learn each
//! other's PodCIDR with the other node's AS path and next hop and reach
//! each other's pods, the route server out of the path; and a node as the
//! route server of two FRR clients passes each client's route to the other
//! with its AS path and next hop unchanged, its own PodCIDR as to any
//! peer.

use novanet_conformance::checks::{agent_established, agent_has, switched, SETTLE};
use novanet_conformance::{wait_until, Agent, Frr, Lab};
use serde_json::{json, Value};

fn node(name: &str, ip: &str, cidr: &str, peers: Value) -> Value {
    json!({
        "node_name": name,
        "node_ip": ip,
        "pod_cidr": cidr,
        "routing": {"bfd": {"enabled": false}, "peers": peers},
    })
}

/// The best path FRR holds for `prefix`: (AS path, next hop).
fn frr_best(frr: &Frr, prefix: &str) -> Option<(String, String)> {
    let v = frr.json(&format!("show bgp ipv4 unicast {prefix} json"));
    let best = v["paths"]
        .as_array()?
        .iter()
        .find(|p| p["bestpath"]["overall"] == true)?
        .clone();
    Some((
        best["aspath"]["string"].as_str()?.to_string(),
        best["nexthops"][0]["ip"].as_str()?.to_string(),
    ))
}

#[test]
fn nodes_as_clients_of_an_frr_route_server() {
    let mut lab = Lab::new("rsfrr");
    switched(
        &mut lab,
        &[("n1", "10.0.0.11/24"), ("n2", "10.0.0.12/24"), ("rs", "10.0.0.13/24")],
    );
    for (ns, pod) in [("n1", "10.244.11.1/32"), ("n2", "10.244.12.1/32")] {
        lab.exec(ns, "ip", &["addr", "add", pod, "dev", "lo"]);
    }
    let _rs = Frr::start(
        &mut lab,
        "rs",
        "frr defaults datacenter
hostname rs
router bgp 65100
 bgp router-id 10.0.0.13
 no bgp ebgp-requires-policy
 neighbor 10.0.0.11 remote-as 65011
 neighbor 10.0.0.11 timers connect 1
 neighbor 10.0.0.12 remote-as 65012
 neighbor 10.0.0.12 timers connect 1
 address-family ipv4 unicast
  neighbor 10.0.0.11 route-server-client
  neighbor 10.0.0.12 route-server-client
 exit-address-family
",
    );
    let peers = json!([{"neighbor_address": "10.0.0.13", "remote_as": 65100, "role": "route_server",
                        "hold_time": 9, "keepalive": 3}]);
    let n1 = Agent::start(
        &mut lab,
        "n1",
        &node("n1", "10.0.0.11", "10.244.11.0/24", peers.clone()),
    );
    let n2 = Agent::start(&mut lab, "n2", &node("n2", "10.0.0.12", "10.244.12.0/24", peers));
    for a in [&n1, &n2] {
        agent_established(a, "10.0.0.13");
    }
    // The other node's AS path and next hop: the route server is not in
    // the path, nor in the forwarding.
    agent_has(&n1, "10.244.12.0/24", "10.0.0.12", "65012");
    agent_has(&n2, "10.244.11.0/24", "10.0.0.11", "65011");
    wait_until("n1's kernel to route n2's pods to n2", SETTLE, || {
        let out = lab.exec("n1", "ip", &["route", "get", "10.244.12.1"]);
        out.contains("via 10.0.0.12").then_some(()).ok_or(out)
    });
    wait_until("n1's pod to reach n2's", SETTLE, || {
        let ok = lab
            .cmd("n1", "ping")
            .args(["-c1", "-W1", "-I", "10.244.11.1", "10.244.12.1"])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        ok.then_some(()).ok_or_else(String::new)
    });
    assert_eq!(n1.peer("10.0.0.13")["role"], "route_server", "{}", n1.peer("10.0.0.13"));
}

#[test]
fn a_node_as_the_route_server_of_frr_clients() {
    let mut lab = Lab::new("rsnode");
    switched(
        &mut lab,
        &[("c1", "10.0.0.11/24"), ("c2", "10.0.0.12/24"), ("rs", "10.0.0.13/24")],
    );
    let client = |name: &str, asn: u32, ip: &str, network: &str| {
        format!(
            "frr defaults datacenter
hostname {name}
router bgp {asn}
 bgp router-id {ip}
 no bgp ebgp-requires-policy
 no bgp network import-check
 neighbor 10.0.0.13 remote-as 65013
 neighbor 10.0.0.13 timers connect 1
 no neighbor 10.0.0.13 enforce-first-as
 address-family ipv4 unicast
  network {network}
 exit-address-family
"
        )
    };
    let c1 = Frr::start(&mut lab, "c1", &client("c1", 65001, "10.0.0.11", "192.0.2.1/32"));
    let c2 = Frr::start(&mut lab, "c2", &client("c2", 65002, "10.0.0.12", "198.51.100.0/24"));
    let peer = |ip: &str, asn: u32| {
        json!({"neighbor_address": ip, "remote_as": asn, "role": "route_server_client", "export": "all",
               "hold_time": 9, "keepalive": 3})
    };
    let rs = Agent::start(
        &mut lab,
        "rs",
        &node(
            "rs",
            "10.0.0.13",
            "10.244.13.0/24",
            json!([peer("10.0.0.11", 65001), peer("10.0.0.12", 65002)]),
        ),
    );
    agent_established(&rs, "10.0.0.11");
    agent_established(&rs, "10.0.0.12");
    // Each client's route at the other, as the client sent it.
    for (frr, prefix, want) in [
        (&c2, "192.0.2.1/32", ("65001", "10.0.0.11")),
        (&c1, "198.51.100.0/24", ("65002", "10.0.0.12")),
        // The route server's own PodCIDR, as to any peer.
        (&c1, "10.244.13.0/24", ("65013", "10.0.0.13")),
    ] {
        wait_until(&format!("{prefix} at a client, transparently"), SETTLE, || {
            let got = frr_best(frr, prefix);
            (got == Some((want.0.to_string(), want.1.to_string())))
                .then_some(())
                .ok_or_else(|| format!("{got:?}"))
        });
    }
    // A client is never sent its own route back: counted on the route
    // server's side (FRR would drop it on receipt anyway, its AS in the
    // path). Each client is sent the other's route and the PodCIDR.
    for client in ["10.0.0.11", "10.0.0.12"] {
        wait_until(&format!("{client} sent exactly two prefixes"), SETTLE, || {
            let p = rs.peer(client);
            (p["prefixes_sent"] == 2).then_some(()).ok_or_else(|| p.to_string())
        });
    }
}
