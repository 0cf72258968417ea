//! Dual stack over one IPv4 session (MP-BGP), as most ToRs are peered:
//! the node's IPv4 and IPv6 PodCIDRs go out over the one session to BIRD 2
//! and to FRR (the IPv6 next hop is the global address of the session's
//! interface), theirs come back, and pods ping and ping6 across. With and
//! without a configured source address; a source address of the other
//! family is refused by `--check-config`. `routing prefixes` says which
//! peers each prefix went to, and why not for the others.

use novanet_conformance::agent::{agent_binary, ctl_binary};
use novanet_conformance::checks::{agent_established, agent_has, tor_and_node, wait_for_value, SETTLE};
use novanet_conformance::{wait_until, Agent, Bird, Frr, Lab};
use serde_json::{json, Value};

/// The node's configuration: one IPv4 session carrying both families to
/// the ToR, and a second configured peer that never answers.
fn node(source_address: Option<&str>) -> Value {
    let mut tor = json!({"neighbor_address": "10.0.0.1", "remote_as": 65000, "hold_time": 9, "keepalive": 3,
                         "address_families": ["ipv4-unicast", "ipv6-unicast"]});
    if let Some(s) = source_address {
        tor["source_address"] = json!(s);
    }
    json!({
        "node_name": "node-a",
        "node_ip": "10.0.0.10",
        "pod_cidr": "10.244.10.0/24",
        "pod_cidrs": ["fd10:244:10::/64"],
        "routing": {"peers": [
            tor,
            {"neighbor_address": "10.0.0.99", "remote_as": 65099, "hold_time": 9, "keepalive": 3}
        ]}
    })
}

/// A pod's addresses on the node and the ToR's own addresses behind its
/// prefixes.
fn addresses(lab: &Lab) {
    for (ns, v4, v6) in [
        ("node", "10.244.10.1/32", "fd10:244:10::1/128"),
        ("tor", "203.0.113.1/32", "2001:db8:bb::1/128"),
    ] {
        lab.exec(ns, "ip", &["addr", "add", v4, "dev", "lo"]);
        lab.exec(ns, "ip", &["addr", "add", v6, "dev", "lo"]);
    }
}

/// Pings from the pod's addresses to the ToR's, both families, until one
/// answers each.
fn pods_reach_across(lab: &Lab) {
    for (flag, from, to) in [
        ("-4", "10.244.10.1", "203.0.113.1"),
        ("-6", "fd10:244:10::1", "2001:db8:bb::1"),
    ] {
        wait_until(&format!("ping {to} from {from}"), SETTLE, || {
            let out = lab
                .cmd("node", "ping")
                .args([flag, "-n", "-c", "1", "-W", "1", "-I", from, to])
                .output()
                .map_err(|e| e.to_string())?;
            if out.status.success() {
                Ok(())
            } else {
                Err(String::from_utf8_lossy(&out.stdout).into_owned())
            }
        });
    }
}

/// `routing prefixes -o json` of the agent.
fn prefixes(agent: &Agent) -> Vec<Value> {
    let out = std::process::Command::new(ctl_binary())
        .arg("--socket")
        .arg(&agent.socket)
        .args(["routing", "prefixes", "-o", "json"])
        .output()
        .expect("novanetctl");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice::<Value>(&out.stdout)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

/// Both PodCIDRs went to the ToR; the IPv4 one not to the IPv4 peer that
/// never came up (which is no candidate for the IPv6 one), and the table
/// says so.
fn prefixes_say_where_they_went(agent: &Agent) {
    let waiting = json!([{"peer": "10.0.0.99", "reason": "the session with 10.0.0.99 is not established"}]);
    for (cidr, not_sent) in [("10.244.10.0/24", waiting), ("fd10:244:10::/64", json!([]))] {
        wait_until(&format!("{cidr} shown as sent to the ToR"), SETTLE, || {
            let all = prefixes(agent);
            let p = all.iter().find(|p| p["prefix"] == cidr).ok_or(format!("{all:?}"))?;
            if p["state"] == "advertised"
                && p["advertised_to"] == json!(["10.0.0.1"])
                && p["not_advertised_to"] == not_sent
            {
                Ok(())
            } else {
                Err(p.to_string())
            }
        });
    }
}

const BIRD: &str = r#"
router id 10.0.0.1;
protocol device { }
protocol kernel k4 { ipv4 { export where source = RTS_BGP; }; }
protocol kernel k6 { ipv6 { export where source = RTS_BGP; }; }
protocol static st4 { ipv4; route 203.0.113.0/24 blackhole; }
protocol static st6 { ipv6; route 2001:db8:bb::/48 blackhole; }
protocol bgp node {
  local 10.0.0.1 as 65000;
  neighbor 10.0.0.10 as 65010;
  hold time 9; keepalive time 3; connect retry time 1;
  ipv4 { import all; export where source = RTS_STATIC; };
  ipv6 { import all; export where source = RTS_STATIC; };
}
"#;

#[test]
fn both_pod_cidrs_over_one_ipv4_session_to_bird() {
    let mut lab = Lab::new("ds-bird");
    tor_and_node(&mut lab);
    addresses(&lab);
    let bird = Bird::start(&mut lab, "tor", BIRD);
    let agent = Agent::start(&mut lab, "node", &node(None));
    agent_established(&agent, "10.0.0.1");
    wait_for_value("BIRD to hold the IPv4 PodCIDR", Some("65010".into()), || {
        bird.route_as_path("10.244.10.0/24")
    });
    wait_for_value("BIRD to hold the IPv6 PodCIDR", Some("65010".into()), || {
        bird.route_as_path("fd10:244:10::/64")
    });
    let v6 = bird.route("fd10:244:10::/64");
    assert!(
        v6.contains("fd00::10"),
        "the interface's global IPv6 address is the next hop: {v6}"
    );
    agent_has(&agent, "2001:db8:bb::/48", "fd00::1", "65000");
    pods_reach_across(&lab);
    prefixes_say_where_they_went(&agent);
}

const FRR: &str = "hostname tor
router bgp 65000
 bgp router-id 10.0.0.1
 no bgp ebgp-requires-policy
 no bgp network import-check
 neighbor 10.0.0.10 remote-as 65010
 neighbor 10.0.0.10 timers 3 9
 neighbor 10.0.0.10 timers connect 1
 address-family ipv4 unicast
  network 203.0.113.0/24
 exit-address-family
 address-family ipv6 unicast
  neighbor 10.0.0.10 activate
  network 2001:db8:bb::/48
 exit-address-family
";

#[test]
fn both_pod_cidrs_over_one_ipv4_session_to_frr_with_a_source_address() {
    let mut lab = Lab::new("ds-frr");
    tor_and_node(&mut lab);
    addresses(&lab);
    let frr = Frr::start_daemons(&mut lab, "tor", &[("zebra", "hostname tor\n"), ("bgpd", FRR)]);

    // A source address of the other family is refused, with the reason.
    let bad = lab.dir().join("bad-source.json");
    std::fs::write(&bad, node(Some("fd00::10")).to_string()).unwrap();
    let out = std::process::Command::new(agent_binary())
        .arg("--check-config")
        .arg(&bad)
        .output()
        .expect("novanet-agent --check-config");
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        said.contains("routing.peers[0].source_address")
            && said.contains("fd00::10 is IPv6 but the neighbor 10.0.0.1 is IPv4"),
        "{said}"
    );

    let agent = Agent::start(&mut lab, "node", &node(Some("10.0.0.10")));
    agent_established(&agent, "10.0.0.1");
    wait_for_value("FRR to hold the IPv4 PodCIDR", Some("65010".into()), || {
        frr.route_as_path("ipv4", "10.244.10.0/24")
    });
    wait_for_value("FRR to hold the IPv6 PodCIDR", Some("65010".into()), || {
        frr.route_as_path("ipv6", "fd10:244:10::/64")
    });
    let route = frr.json("show bgp ipv6 unicast fd10:244:10::/64 json");
    let next_hop = route["paths"][0]["nexthops"][0]["ip"].clone();
    assert_eq!(next_hop, "fd00::10", "{route}");
    wait_until("agent to hold FRR's IPv6 prefix", SETTLE, || {
        match agent.route("2001:db8:bb::/48").first() {
            Some(p) if p["best"] == true && p["as_path"] == "65000" => Ok(()),
            other => Err(format!("{other:?}")),
        }
    });
    pods_reach_across(&lab);
    prefixes_say_where_they_went(&agent);
}
