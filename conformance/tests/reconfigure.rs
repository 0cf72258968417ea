//! A new router id at runtime, on SIGHUP and through ConfigureBGP
//! (`novanetctl configure-bgp`): the session with a real FRR ToR
//! starts over with it, and because the agent closes the old session
//! without a NOTIFICATION and announces its forwarding state kept, FRR (a
//! graceful-restart helper by default) keeps the node's PodCIDR all along.

use novanet_conformance::agent::ctl_binary;
use novanet_conformance::checks::{agent_established, node_a, tor_and_node, tor_routing, SETTLE, TOR_FRR};
use novanet_conformance::{wait_until, Agent, Frr, Lab};
use serde_json::json;
use std::process::Command;

const POD_CIDR: &str = "10.244.10.0/24";

/// Waits until FRR's session with the node is established with `router_id`
/// as the node's identifier; every poll on the way, FRR still has the
/// node's PodCIDR.
fn frr_sees_router_id(frr: &Frr, router_id: &str) {
    wait_until(&format!("FRR to see router id {router_id}"), SETTLE, || {
        assert!(
            frr.route_as_path("ipv4", POD_CIDR).is_some(),
            "FRR dropped the node's PodCIDR while the session restarted: {}",
            frr.vtysh("show bgp ipv4 unicast")
        );
        let n = frr.neighbor("10.0.0.10");
        match (n["bgpState"].as_str(), n["remoteRouterId"].as_str()) {
            (Some("Established"), Some(id)) if id == router_id => Ok(()),
            other => Err(format!("{other:?}")),
        }
    });
}

#[test]
fn a_new_router_id_restarts_the_session_and_the_tor_keeps_the_routes() {
    let mut lab = Lab::new("reconf");
    tor_and_node(&mut lab);
    let frr = Frr::start(&mut lab, "tor", TOR_FRR);
    let mut routing = tor_routing();
    routing["bfd"] = json!({"enabled": false});
    let mut config = node_a(json!({
        "routing": routing,
        "owners": {"novanet": {"token": "novanet-test-token-2024", "allowed_prefixes": {"type": "any"}}}
    }));
    let agent = Agent::start(&mut lab, "node", &config);
    agent_established(&agent, "10.0.0.1");
    wait_until("FRR to learn the PodCIDR", SETTLE, || {
        frr.route_as_path("ipv4", POD_CIDR).map(|_| ()).ok_or_else(String::new)
    });
    frr_sees_router_id(&frr, "10.0.0.10");

    // SIGHUP with routing.router_id changed.
    config["routing"]["router_id"] = json!("10.0.0.99");
    agent.rewrite_config(&config);
    lab.signal(&agent.name, libc::SIGHUP);
    frr_sees_router_id(&frr, "10.0.0.99");
    let node: serde_json::Value = serde_json::from_str(&agent.get("/status/node").unwrap()).unwrap();
    assert_eq!(node["router_id"], "10.0.0.99");

    // ConfigureBGP back to the node address.
    let out = Command::new(ctl_binary())
        .arg("--socket")
        .arg(&agent.socket)
        .args(["--owner", "novanet", "--token", "novanet-test-token-2024"])
        .args(["configure-bgp", "--local-as", "65010", "--router-id", "10.0.0.10"])
        .output()
        .expect("run novanetctl");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    frr_sees_router_id(&frr, "10.0.0.10");
    agent_established(&agent, "10.0.0.1");
}
