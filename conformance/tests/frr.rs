//! Interop with FRR bgpd: IPv4 and IPv6 sessions, routes both ways,
//! withdrawals both ways, route refresh both ways, 4-octet AS, TCP MD5,
//! and the shutdown sequence.

use novanet_conformance::checks::{agent_has, agent_lacks, tor_and_node};
use novanet_conformance::{wait_until, Agent, Frr, Lab};
use serde_json::{json, Value};
use std::time::Duration;

const T: Duration = Duration::from_secs(40);

fn frr_config(local_as: u32, remote_as: u32, extra_neighbor: &str) -> String {
    format!(
        "hostname tor
router bgp {local_as}
 bgp router-id 10.0.0.1
 no bgp ebgp-requires-policy
 no bgp network import-check
 neighbor 10.0.0.10 remote-as {remote_as}
 neighbor 10.0.0.10 timers 3 9
 neighbor 10.0.0.10 timers connect 1
{extra_neighbor}
 neighbor fd00::10 remote-as {remote_as}
 neighbor fd00::10 timers 3 9
 neighbor fd00::10 timers connect 1
 address-family ipv4 unicast
  network 192.0.2.0/24
  neighbor 10.0.0.10 addpath-tx-all-paths
  no neighbor fd00::10 activate
 exit-address-family
 address-family ipv6 unicast
  network 2001:db8:ff::/48
  neighbor fd00::10 activate
 exit-address-family
"
    )
}

fn agent_config(pod_cidr: &str, extra: Value) -> Value {
    let mut c = json!({
        "node_name": "node-a",
        "node_ip": "10.0.0.10",
        "pod_cidr": pod_cidr,
        "pod_cidrs": ["fd10:244:10::/64"],
        "routing": {
            "peers": [
                {"neighbor_address": "10.0.0.1", "remote_as": 65000, "hold_time": 9, "keepalive": 3, "description": "tor-1"},
                {"neighbor_address": "fd00::1", "remote_as": 65000, "hold_time": 9, "keepalive": 3,
                 "address_families": ["ipv6-unicast"]}
            ]
        }
    });
    if let (Some(r), Some(e)) = (c["routing"].as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            r.insert(k.clone(), v.clone());
        }
    }
    c
}

fn established(frr: &Frr, addr: &str) {
    wait_until(&format!("FRR session with {addr} Established"), T, || {
        let s = frr.neighbor_state(addr);
        if s == "Established" {
            Ok(())
        } else {
            Err(s)
        }
    });
}

fn frr_has(frr: &Frr, afi: &str, prefix: &str, as_path: &str) {
    wait_until(
        &format!("FRR to hold {prefix} via AS path {as_path}"),
        T,
        || match frr.route_as_path(afi, prefix) {
            Some(p) if p == as_path => Ok(()),
            other => Err(format!("{other:?}")),
        },
    );
}

fn frr_lacks(frr: &Frr, afi: &str, prefix: &str) {
    wait_until(&format!("FRR to drop {prefix}"), T, || {
        match frr.route_as_path(afi, prefix) {
            None => Ok(()),
            Some(p) => Err(p),
        }
    });
}

fn counter(frr: &Frr, addr: &str, key: &str) -> u64 {
    frr.neighbor(addr)["messageStats"][key].as_u64().unwrap_or(0)
}

#[test]
fn frr_sessions_routes_withdrawals_refresh_and_shutdown() {
    let mut lab = Lab::new("frr");
    tor_and_node(&mut lab);
    let frr = Frr::start(&mut lab, "tor", &frr_config(65000, 65010, ""));
    let cfg = agent_config("10.244.10.0/24", json!({}));
    let agent = Agent::start(&mut lab, "node", &cfg);

    // Sessions and routes both ways, IPv4 and IPv6.
    established(&frr, "10.0.0.10");
    established(&frr, "fd00::10");
    frr_has(&frr, "ipv4", "10.244.10.0/24", "65010");
    frr_has(&frr, "ipv6", "fd10:244:10::/64", "65010");
    agent_has(&agent, "192.0.2.0/24", "10.0.0.1", "65000");
    agent_has(&agent, "2001:db8:ff::/48", "fd00::1", "65000");
    // FRR sends with add-path (path identifiers); the agent receives them
    // and sends without.
    let addpath = frr.neighbor("10.0.0.10")["neighborCapabilities"]["addPath"]["ipv4Unicast"].clone();
    assert_eq!(
        (
            addpath["txAdvertised"].clone(),
            addpath["rxAdvertisedAndReceived"].clone()
        ),
        (json!(true), json!(true))
    );
    let path_id = agent.route("192.0.2.0/24")[0]["path_id"].as_u64().unwrap();
    assert_ne!(path_id, 0, "FRR's path identifier arrived");
    let peer = agent.peer("10.0.0.1");
    assert_eq!(peer["state"], "Established");
    assert_eq!(peer["role"], "tor");
    assert_eq!(peer["prefixes_received"], 1);
    assert_eq!(peer["prefixes_sent"], 1);
    // Routes learned from one ToR are not re-advertised by default: the
    // IPv6 session carries only the node's own IPv6 prefix.
    assert_eq!(
        frr.json("show bgp summary json")["ipv6Unicast"]["peers"]["fd00::10"]["pfxRcd"],
        1
    );

    // Withdraw from FRR.
    frr.configure(&[
        "router bgp 65000",
        "address-family ipv4 unicast",
        "no network 192.0.2.0/24",
    ]);
    agent_lacks(&agent, "192.0.2.0/24");

    // Withdraw from the agent, without a session reset: a new PodCIDR.
    agent.rewrite_config(&agent_config("10.244.20.0/24", json!({})));
    lab.signal(&agent.name, libc::SIGHUP);
    frr_has(&frr, "ipv4", "10.244.20.0/24", "65010");
    frr_lacks(&frr, "ipv4", "10.244.10.0/24");
    assert_eq!(agent.peer("10.0.0.1")["established_transitions"], 1, "no session reset");

    // Route refresh requested by FRR: the agent sends its routes again.
    let sent_before = agent.peer("10.0.0.1")["updates_sent"].as_u64().unwrap();
    frr.vtysh("clear bgp ipv4 unicast 10.0.0.10 soft in");
    wait_until("FRR to send a route refresh", T, || {
        match counter(&frr, "10.0.0.10", "routeRefreshSent") {
            n if n >= 1 => Ok(()),
            n => Err(n.to_string()),
        }
    });
    wait_until("the agent to answer with UPDATEs", T, || {
        let now = agent.peer("10.0.0.1")["updates_sent"].as_u64().unwrap_or(0);
        if now > sent_before {
            Ok(())
        } else {
            Err(now.to_string())
        }
    });
    frr_has(&frr, "ipv4", "10.244.20.0/24", "65010");

    // Route refresh requested by the agent: an import policy change.
    frr.configure(&[
        "router bgp 65000",
        "address-family ipv4 unicast",
        "network 198.51.100.0/24",
    ]);
    agent_has(&agent, "198.51.100.0/24", "10.0.0.1", "65000");
    let refresh_before = counter(&frr, "10.0.0.10", "routeRefreshRecv");
    let mut cfg = agent_config(
        "10.244.20.0/24",
        json!({
            "policies": {"tor-in": {"rules": [{"prefixes": [{"prefix": "198.51.100.0/24"}], "action": "reject"}], "default": "accept"}}
        }),
    );
    cfg["routing"]["peers"][0]["import"] = json!("tor-in");
    agent.rewrite_config(&cfg);
    lab.signal(&agent.name, libc::SIGHUP);
    wait_until("FRR to receive a route refresh", T, || {
        match counter(&frr, "10.0.0.10", "routeRefreshRecv") {
            n if n > refresh_before => Ok(()),
            n => Err(n.to_string()),
        }
    });
    agent_lacks(&agent, "198.51.100.0/24");
    assert_eq!(agent.peer("10.0.0.1")["established_transitions"], 1, "no session reset");

    // Decommission: PodCIDR withdrawn while the session stays up for the
    // disconnect grace period (readiness off meanwhile), then a Cease with
    // our shutdown communication.
    let mut cfg = agent_config("10.244.20.0/24", json!({}));
    cfg["disconnect_grace_period"] = json!(2);
    cfg["on_sigterm"] = json!("decommission");
    agent.rewrite_config(&cfg);
    lab.signal(&agent.name, libc::SIGHUP);
    // The reload is done when the default import policy is back (the route
    // the named policy refused returns through a route refresh).
    agent_has(&agent, "198.51.100.0/24", "10.0.0.1", "65000");
    assert_eq!(agent.get("/readyz").as_deref(), Ok("ready"));
    lab.signal(&agent.name, libc::SIGTERM);
    frr_lacks(&frr, "ipv4", "10.244.20.0/24");
    assert_eq!(
        frr.neighbor_state("10.0.0.10"),
        "Established",
        "withdrawn before the session closes"
    );
    assert!(agent.get("/readyz").is_err(), "not ready while shutting down");
    let status = lab.wait_exit(&agent.name, T);
    assert!(status.success(), "agent exit status {status}");
    let n = frr.neighbor("10.0.0.10");
    assert_ne!(n["bgpState"], "Established");
    let reason = format!("{} {}", n["lastNotificationReason"], n["lastShutdownDescription"]);
    assert!(reason.contains("Administrative Shutdown"), "{reason}");
    assert!(reason.contains("node-a shutting down"), "{reason}");
    frr_lacks(&frr, "ipv4", "10.244.20.0/24");
}

#[test]
fn frr_four_octet_as_both_sides() {
    let mut lab = Lab::new("frr4oct");
    tor_and_node(&mut lab);
    // The agent takes a private 4-octet AS from its address (4200000000 +
    // 0.0.10 -> 4200000010); the ToR has one too.
    let frr = Frr::start(&mut lab, "tor", &frr_config(4_200_000_001, 4_200_000_010, ""));
    let mut cfg = agent_config("10.244.10.0/24", json!({"asn_mode": "private_4byte"}));
    cfg["routing"]["peers"][0]["remote_as"] = json!(4_200_000_001u32);
    cfg["routing"]["peers"][1]["remote_as"] = json!(4_200_000_001u32);
    let agent = Agent::start(&mut lab, "node", &cfg);
    established(&frr, "10.0.0.10");
    frr_has(&frr, "ipv4", "10.244.10.0/24", "4200000010");
    agent_has(&agent, "192.0.2.0/24", "10.0.0.1", "4200000001");
    assert_eq!(agent.peer("10.0.0.1")["local_as"], 4_200_000_010u32);
}

#[test]
fn frr_tcp_md5() {
    let mut lab = Lab::new("frrmd5");
    tor_and_node(&mut lab);
    let frr = Frr::start(
        &mut lab,
        "tor",
        &frr_config(65000, 65010, " neighbor 10.0.0.10 password s3cret-key"),
    );
    let mut cfg = agent_config("10.244.10.0/24", json!({}));
    cfg["routing"]["peers"][0]["password"] = json!("s3cret-key");
    let agent = Agent::start(&mut lab, "node", &cfg);
    established(&frr, "10.0.0.10");
    agent_has(&agent, "192.0.2.0/24", "10.0.0.1", "65000");
}

#[test]
fn shutdown_does_not_wait_on_a_peer_that_is_gone() {
    let mut lab = Lab::new("frrgone");
    tor_and_node(&mut lab);
    let frr = Frr::start(&mut lab, "tor", &frr_config(65000, 65010, ""));
    let mut cfg = agent_config("10.244.10.0/24", json!({}));
    // A grace period far longer than the exit may take once no peer is left.
    cfg["disconnect_grace_period"] = json!(30);
    cfg["on_sigterm"] = json!("decommission");
    let agent = Agent::start(&mut lab, "node", &cfg);
    established(&frr, "10.0.0.10");
    frr_has(&frr, "ipv4", "10.244.10.0/24", "65010");
    lab.signal(&agent.name, libc::SIGTERM);
    frr_lacks(&frr, "ipv4", "10.244.10.0/24");
    // The ToR goes away during the grace period: nobody is left to
    // forward for, so the agent exits without waiting the rest of it.
    frr.kill_daemon("bgpd");
    let status = lab.wait_exit(&agent.name, Duration::from_secs(10));
    assert!(status.success(), "agent exit status {status}");
    let log = agent.log(&lab);
    assert!(log.contains("waiting the disconnect grace period"), "{log}");
}
