//! The kernel FIB against real ToRs: learned routes in the node's kernel
//! with `proto bgp`, ECMP over an FRR and a BIRD ToR, withdrawals and a
//! peer going down, and other protocols' routes left alone.

use novanet_conformance::checks::{agent_established, two_tors_and_node, wait_for_value};
use novanet_conformance::kernel::{bgp_routes, routes, Route};
use novanet_conformance::{Agent, Bird, Frr, Lab};
use serde_json::json;

const FRR: &str = "hostname tor1
router bgp 65001
 bgp router-id 10.0.1.1
 no bgp ebgp-requires-policy
 no bgp network import-check
 neighbor 10.0.1.10 remote-as 65010
 neighbor 10.0.1.10 timers 3 9
 neighbor 10.0.1.10 timers connect 1
 address-family ipv4 unicast
  network 192.0.2.0/24
  network 198.51.100.0/24
 exit-address-family
";

const BIRD: &str = r#"
router id 10.0.2.1;
protocol device { }
protocol static st4 { ipv4; route 192.0.2.0/24 blackhole; route 203.0.113.0/24 blackhole; }
protocol bgp node {
  local 10.0.2.1 as 65002;
  neighbor 10.0.2.10 as 65010;
  hold time 9; keepalive time 3; connect retry time 1;
  ipv4 { import all; export all; };
}
"#;

fn hops(h: &[&str]) -> Option<Vec<String>> {
    Some(h.iter().map(|s| s.to_string()).collect())
}

#[test]
fn kernel_routes_from_frr_and_bird_tors() {
    let mut lab = Lab::new("fib");
    two_tors_and_node(&mut lab);
    // Other protocols' routes, there before the agent: one holds a learned
    // prefix with our metric (never replaced), one shadows another prefix
    // with a lower metric.
    lab.exec(
        "node",
        "ip",
        &[
            "route",
            "add",
            "198.51.100.0/24",
            "via",
            "10.0.2.1",
            "metric",
            "20",
            "proto",
            "static",
        ],
    );
    lab.exec(
        "node",
        "ip",
        &[
            "route",
            "add",
            "203.0.113.0/24",
            "via",
            "10.0.1.1",
            "metric",
            "10",
            "proto",
            "static",
        ],
    );
    let static_before = routes(&lab, "node")["198.51.100.0/24"].clone();

    let frr = Frr::start(&mut lab, "tor1", FRR);
    let bird = Bird::start(&mut lab, "tor2", BIRD);
    let agent = Agent::start(
        &mut lab,
        "node",
        &json!({
            "node_name": "node-a",
            "node_ip": "10.0.1.10",
            "pod_cidr": "10.244.10.0/24",
            "routing": {"peers": [
                {"neighbor_address": "10.0.1.1", "remote_as": 65001, "hold_time": 9, "keepalive": 3},
                {"neighbor_address": "10.0.2.1", "remote_as": 65002, "hold_time": 9, "keepalive": 3}
            ]}
        }),
    );
    agent_established(&agent, "10.0.1.1");
    agent_established(&agent, "10.0.2.1");

    // ECMP over the two ToRs, in the kernel with proto bgp.
    let kernel = |p: &str| bgp_routes(&lab, "node").get(p).cloned();
    wait_for_value("192.0.2.0/24 over both ToRs", hops(&["10.0.1.1", "10.0.2.1"]), || {
        kernel("192.0.2.0/24")
    });
    let r = routes(&lab, "node")["192.0.2.0/24"].clone();
    assert_eq!(
        r,
        vec![Route {
            protocol: "bgp".into(),
            metric: 20,
            next_hops: vec!["10.0.1.1".into(), "10.0.2.1".into()]
        }]
    );
    // Shadowed by a static route with a lower metric: installed, reported.
    wait_for_value("203.0.113.0/24 installed", hops(&["10.0.2.1"]), || {
        kernel("203.0.113.0/24")
    });
    // Same metric as a static route: not installed, the static untouched.
    assert_eq!(kernel("198.51.100.0/24"), None);
    assert_eq!(routes(&lab, "node")["198.51.100.0/24"], static_before);
    let fib = || serde_json::from_str::<serde_json::Value>(&agent.get("/status/fib").unwrap()).unwrap();
    wait_for_value("the FIB to report both blocked prefixes", 2, || {
        fib()["blocked"].as_array().map(|a| a.len()).unwrap_or(0)
    });
    let blocked = fib()["blocked"].to_string();
    assert!(
        blocked.contains("198.51.100.0/24") && blocked.contains("not installed: a static route"),
        "{blocked}"
    );
    assert!(
        blocked.contains("203.0.113.0/24") && blocked.contains("shadowed by a static route"),
        "{blocked}"
    );

    // A withdrawal from one ToR leaves one next hop.
    frr.configure(&[
        "router bgp 65001",
        "address-family ipv4 unicast",
        "no network 192.0.2.0/24",
    ]);
    wait_for_value("192.0.2.0/24 over the BIRD ToR only", hops(&["10.0.2.1"]), || {
        kernel("192.0.2.0/24")
    });

    // The BIRD session going down takes its routes out of the kernel.
    bird.birdc(&["disable", "node"]);
    wait_for_value("192.0.2.0/24 gone", None, || kernel("192.0.2.0/24"));
    wait_for_value("203.0.113.0/24 gone", None, || kernel("203.0.113.0/24"));
    // Other protocols' routes are still there, unchanged.
    let after = routes(&lab, "node");
    assert_eq!(after["198.51.100.0/24"], static_before);
    assert_eq!(after["203.0.113.0/24"][0].protocol, "static");
}

/// A route another protocol adds after the agent's last look at the kernel
/// (between reconciles), at our metric, is not replaced when BGP then
/// learns its prefix: new routes are created exclusively, and the refusal
/// shows the prefix as blocked. Run with nexthop objects off: routes carry
/// their gateways, as on a kernel without nexthop objects.
#[test]
fn a_route_added_between_reconciles_is_not_replaced() {
    use novanet_conformance::checks::{node_a, tor_and_node, tor_routing, TOR_FRR};
    use novanet_conformance::kernel::bgp_route_nexthop_ids;
    let mut lab = Lab::new("fibexcl");
    tor_and_node(&mut lab);
    let frr = Frr::start(&mut lab, "tor", TOR_FRR);
    let mut routing = tor_routing();
    routing["fib"] = json!({"nexthop_objects": false});
    let agent = Agent::start(&mut lab, "node", &node_a(json!({ "routing": routing })));
    agent_established(&agent, "10.0.0.1");
    let fib = serde_json::from_str::<serde_json::Value>(&agent.get("/status/fib").unwrap()).unwrap();
    assert_eq!(fib["nexthop_objects"], false, "{fib}");
    frr.configure(&[
        "router bgp 65000",
        "no bgp network import-check",
        "address-family ipv4 unicast",
        "network 192.0.2.0/24",
    ]);
    wait_for_value("192.0.2.0/24 through its gateway", hops(&["10.0.0.1"]), || {
        bgp_routes(&lab, "node").get("192.0.2.0/24").cloned()
    });
    assert!(bgp_route_nexthop_ids(&lab, "node").is_empty(), "no nexthop object");
    lab.exec(
        "node",
        "ip",
        &[
            "route",
            "add",
            "198.51.100.0/24",
            "via",
            "10.0.0.1",
            "metric",
            "20",
            "proto",
            "static",
        ],
    );
    frr.configure(&[
        "router bgp 65000",
        "no bgp network import-check",
        "address-family ipv4 unicast",
        "network 198.51.100.0/24",
    ]);
    wait_for_value("the agent to learn 198.51.100.0/24", true, || {
        !agent.route("198.51.100.0/24").is_empty()
    });
    wait_for_value("198.51.100.0/24 shown as blocked", true, || {
        agent
            .get("/status/fib")
            .map(|b| b.contains("198.51.100.0/24"))
            .unwrap_or(false)
    });
    let kernel = routes(&lab, "node");
    let r = &kernel["198.51.100.0/24"];
    assert_eq!(r.len(), 1, "{r:?}");
    assert_eq!(r[0].protocol, "static", "the other protocol's route stays");
}
