//! Session protection against FRR: TCP MD5 with a wrong password (the
//! kernel drops the segments, no session) and then the right one; GTSM
//! (RFC 5082) with the ToR one router away: a side that allows one hop
//! drops the other's packets (the kernel's TTL-drop counter says so), two
//! hops on both sides establish; the same when the ToR dials (the agent
//! passive).

use novanet_conformance::checks::{agent_established, agent_has, tor_and_node};
use novanet_conformance::kernel::tcp_counter;
use novanet_conformance::{wait_until, Agent, Frr, Lab};
use serde_json::{json, Value};
use std::time::Duration;

const T: Duration = Duration::from_secs(40);

fn frr_established(frr: &Frr, addr: &str) {
    wait_until(&format!("FRR session with {addr} Established"), T, || {
        match frr.neighbor_state(addr).as_str() {
            "Established" => Ok(()),
            s => Err(s.to_string()),
        }
    });
}

fn md5_agent(password: &str) -> Value {
    json!({
        "node_name": "node-a",
        "node_ip": "10.0.0.10",
        "pod_cidr": "10.244.10.0/24",
        "routing": {"peers": [{"neighbor_address": "10.0.0.1", "remote_as": 65000, "hold_time": 9,
                               "keepalive": 3, "password": password}]}
    })
}

#[test]
fn tcp_md5_with_a_wrong_password_then_the_right_one() {
    let mut lab = Lab::new("md5bad");
    tor_and_node(&mut lab);
    let frr = Frr::start(
        &mut lab,
        "tor",
        "hostname tor
router bgp 65000
 bgp router-id 10.0.0.1
 no bgp ebgp-requires-policy
 no bgp network import-check
 neighbor 10.0.0.10 remote-as 65010
 neighbor 10.0.0.10 timers 3 9
 neighbor 10.0.0.10 timers connect 1
 neighbor 10.0.0.10 password s3cret-key
 address-family ipv4 unicast
  network 192.0.2.0/24
 exit-address-family
",
    );
    let agent = Agent::start(&mut lab, "node", &md5_agent("not-the-key"));
    // Both kernels refuse the other's segments: the signatures differ.
    wait_until("a TCP MD5 failure in either kernel", T, || {
        let (tor, node) = (
            tcp_counter(&lab, "tor", "TcpExtTCPMD5Failure"),
            tcp_counter(&lab, "node", "TcpExtTCPMD5Failure"),
        );
        if tor + node > 0 {
            Ok(())
        } else {
            Err(format!("tor {tor}, node {node}"))
        }
    });
    assert_ne!(frr.neighbor_state("10.0.0.10"), "Established");
    assert_ne!(agent.peer_state("10.0.0.1"), "Established");

    agent.rewrite_config(&md5_agent("s3cret-key"));
    lab.signal(&agent.name, libc::SIGHUP);
    frr_established(&frr, "10.0.0.10");
    agent_has(&agent, "192.0.2.0/24", "10.0.0.1", "65000");
}

/// tor (10.0.1.1) -- rtr (10.0.1.2 | 10.0.2.2) -- node (10.0.2.10).
fn tor_router_node(lab: &mut Lab) {
    for ns in ["tor", "rtr", "node"] {
        lab.add_ns(ns);
    }
    lab.link("tor", "eth0", &["10.0.1.1/24"], "rtr", "eth0", &["10.0.1.2/24"]);
    lab.link("rtr", "eth1", &["10.0.2.2/24"], "node", "eth0", &["10.0.2.10/24"]);
    lab.forwarding("rtr");
    lab.exec("tor", "ip", &["route", "add", "10.0.2.0/24", "via", "10.0.1.2"]);
    lab.exec("node", "ip", &["route", "add", "10.0.1.0/24", "via", "10.0.2.2"]);
}

fn gtsm_agent(hops: u8) -> Value {
    json!({
        "node_name": "node-a",
        "node_ip": "10.0.2.10",
        "pod_cidr": "10.244.10.0/24",
        "routing": {"peers": [{"neighbor_address": "10.0.1.1", "remote_as": 65000, "hold_time": 9,
                               "keepalive": 3, "ttl_security_hops": hops}]}
    })
}

/// Waits until the kernel of `ns` drops TCP segments below its minimum TTL.
fn ttl_drops_in(lab: &Lab, ns: &str) {
    let before = tcp_counter(lab, ns, "TcpExtTCPMinTTLDrop");
    wait_until(
        &format!("{ns}'s kernel to drop segments below the minimum TTL"),
        T,
        || {
            let now = tcp_counter(lab, ns, "TcpExtTCPMinTTLDrop");
            if now > before {
                Ok(())
            } else {
                Err(now.to_string())
            }
        },
    );
}

#[test]
fn gtsm_one_hop_too_far_is_refused_on_either_side() {
    let mut lab = Lab::new("gtsm");
    tor_router_node(&mut lab);
    let frr = Frr::start(
        &mut lab,
        "tor",
        "hostname tor
router bgp 65000
 bgp router-id 10.0.1.1
 no bgp ebgp-requires-policy
 no bgp network import-check
 neighbor 10.0.2.10 remote-as 65010
 neighbor 10.0.2.10 timers 3 9
 neighbor 10.0.2.10 timers connect 1
 neighbor 10.0.2.10 ttl-security hops 1
 address-family ipv4 unicast
  network 192.0.2.0/24
 exit-address-family
",
    );
    // FRR allows one hop; the agent is two away.
    let agent = Agent::start(&mut lab, "node", &gtsm_agent(2));
    ttl_drops_in(&lab, "tor");
    assert_ne!(frr.neighbor_state("10.0.2.10"), "Established");

    // Both allow two hops.
    frr.configure(&["router bgp 65000", "neighbor 10.0.2.10 ttl-security hops 2"]);
    agent_established(&agent, "10.0.1.1");
    agent_has(&agent, "192.0.2.0/24", "10.0.1.1", "65000");

    // Now the agent allows one hop only: FRR's packets arrive with TTL 254.
    agent.rewrite_config(&gtsm_agent(1));
    lab.signal(&agent.name, libc::SIGHUP);
    ttl_drops_in(&lab, "node");
    wait_until("the agent's session to leave Established", T, || {
        if agent.peer_state("10.0.1.1") == "Established" {
            Err("Established".to_string())
        } else {
            Ok(())
        }
    });
    // And back to two hops.
    agent.rewrite_config(&gtsm_agent(2));
    lab.signal(&agent.name, libc::SIGHUP);
    agent_established(&agent, "10.0.1.1");
    frr_established(&frr, "10.0.2.10");
}

/// GTSM when the ToR dials (the agent passive): the agent's SYN-ACK leaves
/// with TTL 255, so FRR accepts the handshake one hop away; two hops away
/// FRR still drops it, until both allow two hops.
#[test]
fn gtsm_comes_up_when_the_tor_dials_and_still_refuses_two_hops_away() {
    let passive_agent = |node_ip: &str, tor: &str, hops: u8| {
        json!({
            "node_name": "node-a",
            "node_ip": node_ip,
            "pod_cidr": "10.244.10.0/24",
            "routing": {"bfd": {"enabled": false},
                        "peers": [{"neighbor_address": tor, "remote_as": 65000, "hold_time": 9,
                                   "keepalive": 3, "passive": true, "ttl_security_hops": hops}]}
        })
    };
    let tor = |node: &str, hops: u8| {
        format!(
            "hostname tor
router bgp 65000
 bgp router-id 10.0.1.1
 no bgp ebgp-requires-policy
 neighbor {node} remote-as 65010
 neighbor {node} timers 3 9
 neighbor {node} timers connect 1
 neighbor {node} ttl-security hops {hops}
"
        )
    };

    // One hop: the ToR dials, GTSM on both sides.
    let mut one = Lab::new("gtsmd1");
    tor_and_node(&mut one);
    let frr = Frr::start(&mut one, "tor", &tor("10.0.0.10", 1));
    let agent = Agent::start(&mut one, "node", &passive_agent("10.0.0.10", "10.0.0.1", 1));
    frr_established(&frr, "10.0.0.10");
    agent_established(&agent, "10.0.0.1");
    drop(one);

    // Two hops away: FRR (one hop allowed) drops our SYN-ACK.
    let mut two = Lab::new("gtsmd2");
    tor_router_node(&mut two);
    let frr = Frr::start(&mut two, "tor", &tor("10.0.2.10", 1));
    let agent = Agent::start(&mut two, "node", &passive_agent("10.0.2.10", "10.0.1.1", 2));
    ttl_drops_in(&two, "tor");
    assert_ne!(frr.neighbor_state("10.0.2.10"), "Established");
    assert_ne!(agent.peer_state("10.0.1.1"), "Established");
    // Both allow two hops: up.
    frr.configure(&["router bgp 65000", "neighbor 10.0.2.10 ttl-security hops 2"]);
    frr_established(&frr, "10.0.2.10");
    agent_established(&agent, "10.0.1.1");
}
