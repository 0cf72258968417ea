//! A ToR blip against FRR 8.4 with a BFD profile on its BGP neighbor
//! (`neighbor X bfd profile fast`, 100 ms x 3): the ToR goes silent for
//! 3 s (its packets dropped, the link up) and comes back. FRR's session
//! comes back through Init, which asks for a packet a second, and then Up,
//! which asks for one every 100 ms: the node's next packet must come
//! within the new interval, not a second later, or FRR's 300 ms detection
//! time expires and the session flaps for ever. Within 5 s of the blip's
//! end the session is Established and stays so, FRR counts at most one
//! BFD down after the blip, and the kernel has ECMP over both ToRs again.
//! A ToR that keeps blipping: from the third BFD-caused close in a minute
//! the session is held down before it starts again, and still recovers.

use novanet_conformance::checks::{agent_established, two_tors_and_node, wait_for_value, FRR_BFD_FAST, SETTLE};
use novanet_conformance::kernel::bgp_routes;
use novanet_conformance::{wait_until, Agent, Frr, Lab};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

fn frr_daemons(name: &str, asn: u32, me: &str, node: &str) -> [(String, String); 3] {
    let bgpd = format!(
        "hostname {name}
router bgp {asn}
 bgp router-id {me}
 no bgp ebgp-requires-policy
 no bgp network import-check
 neighbor {node} remote-as 65010
 neighbor {node} timers 3 9
 neighbor {node} timers connect 1
 neighbor {node} bfd profile fast
 address-family ipv4 unicast
  network 192.0.2.0/24
 exit-address-family
"
    );
    [
        ("zebra".into(), format!("hostname {name}\n")),
        ("bfdd".into(), FRR_BFD_FAST.to_string()),
        ("bgpd".into(), bgpd),
    ]
}

fn start_tor(lab: &mut Lab, name: &str, asn: u32, me: &str, node: &str) -> Frr {
    let daemons = frr_daemons(name, asn, me, node);
    let refs: Vec<(&str, &str)> = daemons.iter().map(|(d, c)| (d.as_str(), c.as_str())).collect();
    Frr::start_daemons(lab, name, &refs)
}

/// FRR's count of BFD session downs with `peer`.
fn frr_bfd_downs(frr: &Frr, peer: &str) -> u64 {
    let v = frr.json("show bfd peers counters json");
    v.as_array()
        .and_then(|a| a.iter().find(|p| p["peer"] == peer))
        .and_then(|p| p["session-down"].as_u64())
        .unwrap_or(0)
}

/// The node's agent, peering both ToRs with BFD (100 ms x 3).
fn node_agent(lab: &mut Lab) -> Agent {
    let bfd = |addr: &str, asn: u32| {
        json!({"neighbor_address": addr, "remote_as": asn, "hold_time": 9, "keepalive": 3,
               "bfd_enabled": true, "bfd_min_tx_ms": 100, "bfd_min_rx_ms": 100, "bfd_detect_multiplier": 3})
    };
    Agent::start(
        lab,
        "node",
        &json!({
            "node_name": "node-a",
            "node_ip": "10.0.1.10",
            "pod_cidr": "10.244.10.0/24",
            "routing": {"peers": [bfd("10.0.1.1", 65001), bfd("10.0.2.1", 65002)]}
        }),
    )
}

/// Waits until the node forwards the ToRs' prefix over both.
fn ecmp(lab: &Lab) {
    wait_until("ECMP over both ToRs", SETTLE, || {
        match bgp_routes(lab, "node").get("192.0.2.0/24") {
            Some(h) if h.len() == 2 => Ok(()),
            other => Err(format!("{other:?}")),
        }
    });
}

#[test]
fn a_tor_blip_heals_against_frr_bfd_profiles() {
    let mut lab = Lab::new("torblip");
    two_tors_and_node(&mut lab);
    let tor1 = start_tor(&mut lab, "tor1", 65001, "10.0.1.1", "10.0.1.10");
    let _tor2 = start_tor(&mut lab, "tor2", 65002, "10.0.2.1", "10.0.2.10");
    let agent = node_agent(&mut lab);
    for tor in ["10.0.1.1", "10.0.2.1"] {
        agent_established(&agent, tor);
        wait_for_value(&format!("BFD with {tor} Up"), json!("Up"), || {
            agent.bfd_session(tor)["state"].clone()
        });
    }
    ecmp(&lab);

    // tor1 goes silent for 3 s: BFD takes its session down.
    let silent = Instant::now();
    lab.drop_from("node", "10.0.1.1");
    wait_for_value("BFD with tor1 Down", json!("Down"), || {
        agent.bfd_session("10.0.1.1")["state"].clone()
    });
    // The blip lasts 3 s (the scenario's length, not a synchronisation).
    std::thread::sleep(Duration::from_secs(3).saturating_sub(silent.elapsed()));
    lab.undrop("node");
    let back = Instant::now();
    let downs_at_return = frr_bfd_downs(&tor1, "10.0.1.10");

    // Established with BFD Up within 5 s, and staying so.
    let stable_since = wait_until("tor1's session Established with BFD Up", Duration::from_secs(5), || {
        let s = agent.peer("10.0.1.1");
        let up = s["state"] == "Established" && agent.bfd_session("10.0.1.1")["state"] == "Up";
        if up {
            Ok(s["established_transitions"].clone())
        } else {
            Err(format!(
                "{} / BFD {}",
                s["state"],
                agent.bfd_session("10.0.1.1")["state"]
            ))
        }
    });
    // Watch it for the rest of 5 s after the return, and 3 s at least
    // (30 BFD detection times): it must not move.
    let watch_until = (back + Duration::from_secs(5)).max(Instant::now() + Duration::from_secs(3));
    while Instant::now() < watch_until {
        let s: Value = agent.peer("10.0.1.1");
        assert_eq!(s["state"], "Established", "the session after the blip: {s}");
        assert_eq!(s["established_transitions"], stable_since, "re-established again: {s}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let downs = frr_bfd_downs(&tor1, "10.0.1.10") - downs_at_return;
    assert!(downs <= 1, "FRR counted {downs} BFD downs after the blip");
    ecmp(&lab);
}

/// The safety net (RFC 5882 section 3.2): a ToR that keeps going silent
/// and coming back. The first two BFD-caused closes start again at once;
/// the third holds the session down (2 s) before it starts again, and it
/// comes back by itself with BFD Up and ECMP restored.
#[test]
fn a_session_bfd_keeps_closing_is_held_down_then_recovers() {
    let mut lab = Lab::new("torflap");
    two_tors_and_node(&mut lab);
    let _tor1 = start_tor(&mut lab, "tor1", 65001, "10.0.1.1", "10.0.1.10");
    let _tor2 = start_tor(&mut lab, "tor2", 65002, "10.0.2.1", "10.0.2.10");
    let agent = node_agent(&mut lab);
    let up_again = |what: &str| {
        wait_until(what, SETTLE, || {
            let s = agent.peer("10.0.1.1");
            let bfd = agent.bfd_session("10.0.1.1")["state"].clone();
            if s["state"] == "Established" && bfd == "Up" {
                Ok(())
            } else {
                Err(format!("{} / BFD {bfd}", s["state"]))
            }
        })
    };
    up_again("tor1 Established with BFD Up");
    agent_established(&agent, "10.0.2.1");
    let held = "held down before it starts again";
    for flap in 1..=3 {
        lab.drop_from("node", "10.0.1.1");
        wait_for_value(&format!("flap {flap}: BFD with tor1 Down"), json!("Down"), || {
            agent.bfd_session("10.0.1.1")["state"].clone()
        });
        wait_until(&format!("flap {flap}: the BGP session closed"), SETTLE, || {
            let s = agent.peer("10.0.1.1");
            if s["state"] != "Established" {
                Ok(())
            } else {
                Err(s.to_string())
            }
        });
        assert_eq!(
            agent.log(&lab).contains(held),
            flap == 3,
            "flap {flap}: held down only from the third"
        );
        lab.undrop("node");
        up_again(&format!("flap {flap}: tor1 back"));
    }
    ecmp(&lab);
}
