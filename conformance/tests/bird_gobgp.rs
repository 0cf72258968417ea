//! Interop with BIRD 2 and GoBGP 3: IPv4 and IPv6 sessions, the PodCIDR
//! at the peer with the node's AS path, the peer's prefixes at the agent,
//! and withdrawals both ways.

use novanet_conformance::checks::{agent_established, agent_has, agent_lacks, tor_and_node, wait_for_value};
use novanet_conformance::{Agent, Bird, GoBgp, Lab};
use serde_json::{json, Value};

fn agent_config(pod_cidr: &str) -> Value {
    json!({
        "node_name": "node-a",
        "node_ip": "10.0.0.10",
        "pod_cidr": pod_cidr,
        "pod_cidrs": ["fd10:244:10::/64"],
        "routing": {
            "peers": [
                {"neighbor_address": "10.0.0.1", "remote_as": 65000, "hold_time": 9, "keepalive": 3},
                {"neighbor_address": "fd00::1", "remote_as": 65000, "hold_time": 9, "keepalive": 3,
                 "address_families": ["ipv6-unicast"]}
            ]
        }
    })
}

fn sessions_up(agent: &Agent) {
    agent_established(agent, "10.0.0.1");
    agent_established(agent, "fd00::1");
}

const BIRD_CONFIG: &str = r#"
router id 10.0.0.1;
protocol device { }
protocol static st4 { ipv4; route 203.0.113.0/24 blackhole; }
protocol static st6 { ipv6; route 2001:db8:bb::/48 blackhole; }
protocol bgp node4 {
  local 10.0.0.1 as 65000;
  neighbor 10.0.0.10 as 65010;
  hold time 9; keepalive time 3; connect retry time 1;
  ipv4 { import all; export all; };
}
protocol bgp node6 {
  local fd00::1 as 65000;
  neighbor fd00::10 as 65010;
  hold time 9; keepalive time 3; connect retry time 1;
  ipv6 { import all; export all; };
}
"#;

#[test]
fn bird_sessions_routes_and_withdrawals() {
    let mut lab = Lab::new("bird");
    tor_and_node(&mut lab);
    let bird = Bird::start(&mut lab, "tor", BIRD_CONFIG);
    let agent = Agent::start(&mut lab, "node", &agent_config("10.244.10.0/24"));
    sessions_up(&agent);
    for p in ["node4", "node6"] {
        wait_for_value(&format!("BIRD {p} Established"), "Established".to_string(), || {
            bird.bgp_state(p)
        });
    }
    for prefix in ["10.244.10.0/24", "fd10:244:10::/64"] {
        wait_for_value(&format!("BIRD to hold {prefix}"), Some("65010".into()), || {
            bird.route_as_path(prefix)
        });
    }
    agent_has(&agent, "203.0.113.0/24", "10.0.0.1", "65000");
    agent_has(&agent, "2001:db8:bb::/48", "fd00::1", "65000");

    // Withdraw from BIRD.
    bird.birdc(&["disable", "st4"]);
    agent_lacks(&agent, "203.0.113.0/24");
    // Withdraw from the agent.
    agent.rewrite_config(&agent_config("10.244.20.0/24"));
    lab.signal(&agent.name, libc::SIGHUP);
    wait_for_value("BIRD to drop the old PodCIDR", None, || {
        bird.route_as_path("10.244.10.0/24")
    });
    wait_for_value("BIRD to hold the new PodCIDR", Some("65010".into()), || {
        bird.route_as_path("10.244.20.0/24")
    });
}

const GOBGP_CONFIG: &str = r#"
[global.config]
  as = 65000
  router-id = "10.0.0.1"
  port = 179

[[neighbors]]
  [neighbors.config]
    neighbor-address = "10.0.0.10"
    peer-as = 65010
  [neighbors.timers.config]
    hold-time = 9
    keepalive-interval = 3
    connect-retry = 1
  [[neighbors.afi-safis]]
    [neighbors.afi-safis.config]
      afi-safi-name = "ipv4-unicast"

[[neighbors]]
  [neighbors.config]
    neighbor-address = "fd00::10"
    peer-as = 65010
  [neighbors.timers.config]
    hold-time = 9
    keepalive-interval = 3
    connect-retry = 1
  [[neighbors.afi-safis]]
    [neighbors.afi-safis.config]
      afi-safi-name = "ipv6-unicast"
"#;

#[test]
fn gobgp_sessions_routes_and_withdrawals() {
    let mut lab = Lab::new("gobgp");
    tor_and_node(&mut lab);
    let gobgp = GoBgp::start(&mut lab, "tor", GOBGP_CONFIG);
    gobgp.cli(&["global", "rib", "add", "198.51.100.0/24", "-a", "ipv4"]);
    gobgp.cli(&["global", "rib", "add", "2001:db8:cc::/48", "-a", "ipv6"]);
    let agent = Agent::start(&mut lab, "node", &agent_config("10.244.10.0/24"));
    sessions_up(&agent);
    let path = |family: &str, prefix: &str| gobgp.route_as_path(family, prefix);
    wait_for_value("GoBGP to hold the IPv4 PodCIDR", Some("65010".into()), || {
        path("ipv4", "10.244.10.0/24")
    });
    wait_for_value("GoBGP to hold the IPv6 PodCIDR", Some("65010".into()), || {
        path("ipv6", "fd10:244:10::/64")
    });
    agent_has(&agent, "198.51.100.0/24", "10.0.0.1", "65000");
    agent_has(&agent, "2001:db8:cc::/48", "fd00::1", "65000");

    gobgp.cli(&["global", "rib", "del", "198.51.100.0/24", "-a", "ipv4"]);
    agent_lacks(&agent, "198.51.100.0/24");
    agent.rewrite_config(&agent_config("10.244.20.0/24"));
    lab.signal(&agent.name, libc::SIGHUP);
    wait_for_value("GoBGP to drop the old PodCIDR", None, || path("ipv4", "10.244.10.0/24"));
    wait_for_value("GoBGP to hold the new PodCIDR", Some("65010".into()), || {
        path("ipv4", "10.244.20.0/24")
    });
}
