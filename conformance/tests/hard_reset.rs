//! Notifications and graceful restart (RFC 8538) with an FRR 8.4 ToR that
//! restarts gracefully itself (forwarding state kept): both sides announce
//! the N bit. A `clear bgp` on the ToR (an Administrative
//! Reset that FRR is told not to send as a Hard Reset) is a graceful
//! restart for the node: its kernel never loses the ToR's route. Removing
//! the peer from the node's configuration sends a Hard Reset: FRR drops the
//! node's PodCIDR at once instead of keeping it stale.

use novanet_conformance::checks::{agent_established, node_a, tor_and_node, tor_routing, SETTLE, TOR_FRR};
use novanet_conformance::kernel::bgp_routes;
use novanet_conformance::{wait_until, Agent, Frr, Lab};
use serde_json::json;
use std::path::Path;

const TOR_PREFIX: &str = "198.51.100.0/24";
const POD_CIDR: &str = "10.244.10.0/24";

/// Proves the route monitor is live up to now: a throwaway route added
/// and removed must show up in its log.
fn monitor_mark(lab: &Lab, log: &Path, mark: &str) {
    lab.exec("node", "ip", &["route", "add", &format!("{mark}/32"), "dev", "eth0"]);
    lab.exec("node", "ip", &["route", "del", &format!("{mark}/32"), "dev", "eth0"]);
    wait_until(&format!("the route monitor to see {mark}"), SETTLE, || {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if text.contains(&format!("Deleted {mark}")) {
            Ok(())
        } else {
            Err(text)
        }
    });
}

#[test]
fn a_tor_reset_keeps_its_routes_and_a_removed_peer_gets_a_hard_reset() {
    let mut lab = Lab::new("hardreset");
    tor_and_node(&mut lab);
    let frr_config = format!(
        "{TOR_FRR} bgp graceful-restart
 bgp graceful-restart preserve-fw-state
 no bgp hard-administrative-reset
 no bgp network import-check
 address-family ipv4 unicast
  network {TOR_PREFIX}
 exit-address-family
"
    );
    let frr = Frr::start(&mut lab, "tor", &frr_config);
    let cfg = node_a(json!({"routing": tor_routing()}));
    let agent = Agent::start(&mut lab, "node", &cfg);
    agent_established(&agent, "10.0.0.1");
    wait_until("FRR to be established", SETTLE, || {
        match frr.neighbor_state("10.0.0.10") {
            s if s == "Established" => Ok(()),
            s => Err(s),
        }
    });
    wait_until("the ToR's route in the node's kernel", SETTLE, || {
        let routes = bgp_routes(&lab, "node");
        if routes.contains_key(TOR_PREFIX) {
            Ok(())
        } else {
            Err(format!("{routes:?}"))
        }
    });
    let n = frr.neighbor("10.0.0.10");
    let gr = &n["gracefulRestartInfo"];
    assert_eq!(gr["nBit"], true, "FRR sees the node's N bit: {gr}");

    // The ToR resets the session without a Hard Reset: the node keeps the
    // ToR's route through it (before the N bit, the route was deleted at
    // the NOTIFICATION and learned again after).
    let monitor = lab.spawn("monitor", "node", "ip", &["monitor", "route"]);
    monitor_mark(&lab, &monitor, "203.0.113.1");
    let before = agent.peer("10.0.0.1")["established_transitions"].as_u64().unwrap_or(0);
    frr.vtysh("clear bgp 10.0.0.10");
    wait_until("the session to come back after the ToR's reset", SETTLE, || {
        let p = agent.peer("10.0.0.1");
        let again = p["established_transitions"].as_u64().unwrap_or(0) > before && p["state"] == "Established";
        let said = p["last_notification_received"].as_str().unwrap_or("").to_string();
        if again && said.contains("administrative reset") && !said.contains("hard reset") {
            Ok(())
        } else {
            Err(p.to_string())
        }
    });
    // Until the ToR's End-of-RIB the route is stale; once it arrived, the
    // route must still be there, never deleted in between.
    wait_until("the ToR's route to be fresh again", SETTLE, || {
        let paths = agent.route(TOR_PREFIX);
        if !paths.is_empty() && paths.iter().all(|p| p["stale"] == false) {
            Ok(())
        } else {
            Err(format!("{paths:?}"))
        }
    });
    monitor_mark(&lab, &monitor, "203.0.113.2");
    let log = std::fs::read_to_string(&monitor).unwrap();
    assert!(
        !log.lines().any(|l| l.starts_with(&format!("Deleted {TOR_PREFIX}"))),
        "the ToR's route was removed during its reset:\n{log}"
    );
    assert!(bgp_routes(&lab, "node").contains_key(TOR_PREFIX));

    // The node's configuration drops the peer: a Hard Reset (Peer
    // De-configured inside), and FRR removes the node's PodCIDR at once.
    wait_until("FRR to hold the node's PodCIDR", SETTLE, || {
        let v = frr.json(&format!("show bgp ipv4 unicast {POD_CIDR} json"));
        if v["paths"].as_array().is_some_and(|p| !p.is_empty()) {
            Ok(())
        } else {
            Err(v.to_string())
        }
    });
    agent.rewrite_config(&node_a(json!({"routing": {"peers": []}})));
    lab.signal(&agent.name, libc::SIGHUP);
    wait_until("FRR to record a Hard Reset", SETTLE, || {
        let n = frr.neighbor("10.0.0.10");
        let reason = n["lastNotificationReason"].as_str().unwrap_or("");
        if n["lastNotificationHardReset"] == true && reason.contains("Peer De-configured") {
            Ok(())
        } else {
            Err(n.to_string())
        }
    });
    // FRR drops the path as it processes the session's end (a moment
    // after it records the NOTIFICATION): it goes, never kept as stale.
    wait_until("FRR to drop the node's PodCIDR", SETTLE, || {
        let v = frr.json(&format!("show bgp ipv4 unicast {POD_CIDR} json"));
        let paths = v["paths"].as_array().cloned().unwrap_or_default();
        if paths.iter().any(|p| p["stale"] == true) {
            panic!("FRR keeps the node's PodCIDR as stale after a Hard Reset: {v}");
        }
        if paths.is_empty() {
            Ok(())
        } else {
            Err(v.to_string())
        }
    });
    assert!(
        agent.log(&lab).contains("hard reset"),
        "the agent's log names the Hard Reset"
    );
}
