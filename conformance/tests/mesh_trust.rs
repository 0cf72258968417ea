//! What a node of the mesh can make another node install. A compromised
//! node (a real GoBGP speaker at node n2's address and AS) announces, next
//! to its own PodCIDR, another node's PodCIDR more-specific, a default
//! route split in two /1 halves, a ToR's /32, a service /24 no owner may
//! advertise, and a part of its own PodCIDR pointing at another node. n1
//! installs its PodCIDR only, via n2; before, it installed every one.
//!
//! And a session takeover: a process in n2's network namespace (as a
//! hostNetwork pod is) dials n1 from n2's address with n2's AS and the
//! Restart bit of graceful restart, which replaces an established session
//! (RFC 4724). With the mesh's TCP MD5 password, which such a pod cannot
//! read, n1's kernel drops its segments and n1's session with the real n2
//! is untouched.

use novanet_conformance::checks::{agent_established, switched, SETTLE};
use novanet_conformance::kernel::{bgp_routes, tcp_counter};
use novanet_conformance::{wait_until, Agent, GoBgp, Lab};
use serde_json::json;

#[test]
fn a_mesh_node_gets_only_its_own_routes_installed() {
    let mut lab = Lab::new("meshleak");
    switched(
        &mut lab,
        &[("n1", "10.0.0.11/24"), ("n2", "10.0.0.12/24"), ("n3", "10.0.0.13/24")],
    );
    let nodes: Vec<_> = (1..=3)
        .map(
            |j| json!({"name": format!("n{j}"), "ip": format!("10.0.0.1{j}"), "pod_cidr": format!("10.244.1{j}.0/24")}),
        )
        .collect();
    let n1 = Agent::start(
        &mut lab,
        "n1",
        &json!({
            "node_name": "n1",
            "node_ip": "10.0.0.11",
            "pod_cidr": "10.244.11.0/24",
            "owners": {"edge": {"token": "edge-token", "allowed_prefixes": {"type": "host_only", "allowed_cidrs": ["10.96.0.0/12"]}}},
            "routing": {"bfd": {"enabled": false},
                        "node_mesh": {"enabled": true, "source": "static", "nodes": nodes}}
        }),
    );
    // n2, compromised: its AS by the node rule, its address.
    let n2 = GoBgp::start(
        &mut lab,
        "n2",
        &GoBgp::config(65012, "10.0.0.12", &[("10.0.0.11", 65011)]),
    );
    agent_established(&n1, "10.0.0.12");

    let leaks = [
        ("10.244.13.0/25", "10.0.0.12"), // n3's pods, more specific than n3's /24
        ("0.0.0.0/1", "10.0.0.12"),      // a default route in two halves
        ("128.0.0.0/1", "10.0.0.12"),
        ("10.0.0.1/32", "10.0.0.12"),      // the ToR
        ("10.96.0.0/24", "10.0.0.12"),     // services, but owners may advertise only /32s there
        ("10.244.12.128/25", "10.0.0.13"), // its own pods, sent to n3
    ];
    for (prefix, hop) in leaks {
        n2.cli(&["global", "rib", "add", prefix, "nexthop", hop, "-a", "ipv4"]);
    }
    // What n2 may announce: its PodCIDR and a service VIP; last, so the
    // leaks were taken or refused before they are installed.
    n2.cli(&["global", "rib", "add", "10.96.0.7/32", "-a", "ipv4"]);
    n2.cli(&["global", "rib", "add", "10.244.12.0/24", "-a", "ipv4"]);
    wait_until("n2's PodCIDR and VIP installed on n1", SETTLE, || {
        let r = bgp_routes(&lab, "n1");
        match (r.get("10.244.12.0/24"), r.get("10.96.0.7/32")) {
            (Some(a), Some(b)) if a == &["10.0.0.12"] && b == &["10.0.0.12"] => Ok(()),
            _ => Err(format!("{r:?}")),
        }
    });
    let installed = bgp_routes(&lab, "n1");
    let leaked: Vec<_> = leaks
        .iter()
        .map(|(p, _)| *p)
        .filter(|p| installed.contains_key(*p))
        .collect();
    assert!(leaked.is_empty(), "leaked into n1's kernel: {leaked:?} ({installed:?})");
    for (prefix, _) in leaks {
        assert!(n1.route(prefix).is_empty(), "{prefix} in n1's RIB");
    }
    assert_eq!(n1.peer("10.0.0.12")["state"], "Established");
}

/// GoBGP as a process of n2's namespace would run it: not listening (the
/// agent has port 179), dialling n1 from n2's address as n2, restarting
/// (`-r` sets the Restart bit).
const IMPOSTOR: &str = r#"[global.config]
  as = 65012
  router-id = "10.0.0.12"
  port = -1

[[neighbors]]
  [neighbors.config]
    neighbor-address = "10.0.0.11"
    peer-as = 65011
  [neighbors.timers.config]
    hold-time = 9
    keepalive-interval = 3
    connect-retry = 1
  [neighbors.transport.config]
    local-address = "10.0.0.12"
  [neighbors.graceful-restart.config]
    enabled = true
    restart-time = 120
"#;

#[test]
fn a_process_on_a_node_cannot_take_over_its_mesh_sessions() {
    let mut lab = Lab::new("meshtakeover");
    switched(&mut lab, &[("n1", "10.0.0.11/24"), ("n2", "10.0.0.12/24")]);
    let password = lab.dir().join("mesh-password");
    std::fs::write(&password, "mesh-md5-password-2024\n").unwrap();
    let nodes: Vec<_> = (1..=2)
        .map(
            |j| json!({"name": format!("n{j}"), "ip": format!("10.0.0.1{j}"), "pod_cidr": format!("10.244.1{j}.0/24")}),
        )
        .collect();
    let agents: Vec<Agent> = (1..=2)
        .map(|i| {
            Agent::start(
                &mut lab,
                &format!("n{i}"),
                &json!({
                    "node_name": format!("n{i}"),
                    "node_ip": format!("10.0.0.1{i}"),
                    "pod_cidr": format!("10.244.1{i}.0/24"),
                    "routing": {"bfd": {"enabled": false},
                                "node_mesh": {"enabled": true, "source": "static", "nodes": nodes,
                                              "password_file": password.display().to_string()}}
                }),
            )
        })
        .collect();
    let n1 = &agents[0];
    agent_established(n1, "10.0.0.12");
    agent_established(&agents[1], "10.0.0.11");
    let session = n1.peer("10.0.0.12");
    let refused = tcp_counter(&lab, "n1", "TcpExtTCPMD5NotFound");

    let impostor = GoBgp::start_with(&mut lab, "n2", IMPOSTOR, &["-r"]);
    wait_until("n1's kernel to drop the impostor's unsigned SYNs", SETTLE, || {
        let n = tcp_counter(&lab, "n1", "TcpExtTCPMD5NotFound");
        if n >= refused + 2 {
            Ok(())
        } else {
            Err(format!("{n} dropped"))
        }
    });
    let now = n1.peer("10.0.0.12");
    assert_eq!(now["state"], "Established", "{now}");
    assert_eq!(
        (now["established_at"].clone(), now["established_transitions"].clone()),
        (
            session["established_at"].clone(),
            session["established_transitions"].clone()
        ),
        "the real n2's session, untouched"
    );
    assert_ne!(impostor.neighbor_state("10.0.0.11"), "ESTABLISHED");
    // Routes still flow between the real nodes.
    wait_until("n1 holds n2's PodCIDR", SETTLE, || {
        match bgp_routes(&lab, "n1").get("10.244.12.0/24") {
            Some(h) if h == &["10.0.0.12"] => Ok(()),
            other => Err(format!("{other:?}")),
        }
    });
}
