//! A rolling update as a cluster does it: an FRR 8.4 or BIRD 2 ToR (a
//! graceful-restart helper, their default) between two nodes with a pod each, pods pinging
//! each other every 20 ms both ways; node A's agent gets SIGTERM (as
//! kubelet sends it) and its replacement starts 3 s later. SIGTERM is a
//! restart: the kernel keeps node A's routes, the sessions close without a
//! NOTIFICATION so the ToR keeps node A's PodCIDR as stale, and no ping is
//! lost. With BFD on (`neighbor X bfd profile fast`, 100 ms x 3) the same:
//! the sessions close before BFD falls silent, so FRR is already a
//! graceful-restart helper when BFD's detection time runs out; and with
//! `neighbor X bfd check-control-plane-failure` too (FRR then also ignores
//! a BFD Down during graceful restart from a neighbor whose BFD shares fate
//! with its control plane, as the agent's says with its C bit clear).
//! Also: the replacement 30 s later (an image pull); a second restart
//! before the first finished; and three nodes meshed without a ToR, each
//! rolled in turn (mesh peers are helpers too).

use novanet_conformance::checks::{
    agent_established, ping_counts, three_node_mesh, wait_for_value, FRR_BFD_FAST, SETTLE,
};
use novanet_conformance::kernel::bgp_routes;
use novanet_conformance::{wait_until, Agent, Bird, Frr, Lab};
use serde_json::{json, Value};
use std::path::Path;
use std::time::{Duration, Instant};

/// How the ToR runs BFD with the nodes.
#[derive(Clone, Copy, PartialEq)]
enum Bfd {
    Off,
    On,
    /// On, with `check-control-plane-failure`.
    OnCheckingTheControlPlane,
}

/// The ToR (AS 65000) with node A on eth0 (10.0.1.0/24) and node B on
/// eth1 (10.0.2.0/24).
fn tor_bgpd(bfd: Bfd) -> String {
    let mut c = String::from(
        "hostname tor
router bgp 65000
 bgp router-id 10.0.0.1
 no bgp ebgp-requires-policy
",
    );
    for n in ["10.0.1.11 remote-as 65011", "10.0.2.12 remote-as 65012"] {
        let addr = n.split(' ').next().unwrap();
        c.push_str(&format!(
            " neighbor {n}\n neighbor {addr} timers 3 9\n neighbor {addr} timers connect 1\n"
        ));
        if bfd != Bfd::Off {
            c.push_str(&format!(" neighbor {addr} bfd profile fast\n"));
        }
        if bfd == Bfd::OnCheckingTheControlPlane {
            c.push_str(&format!(" neighbor {addr} bfd check-control-plane-failure\n"));
        }
    }
    c
}

fn node_config(name: &str, ip: &str, tor: &str, pod_cidr: &str, bfd: bool) -> Value {
    json!({
        "node_name": name,
        "node_ip": ip,
        "pod_cidr": pod_cidr,
        "routing": {
            "bfd": {"enabled": bfd, "min_rx_ms": 100, "min_tx_ms": 100, "detect_multiplier": 3},
            "peers": [{"neighbor_address": tor, "remote_as": 65000, "hold_time": 9, "keepalive": 3,
                       "bfd_enabled": bfd}],
            "node_mesh": {"enabled": false}
        }
    })
}

/// A node behind its own ToR port, with a pod namespace behind it.
fn node_with_pod(lab: &mut Lab, node: &str, tor_if: &str, subnet: &str, host: &str, pod: &str, pod_net: &str) {
    lab.add_ns(node);
    lab.add_ns(pod);
    lab.link(
        "tor",
        tor_if,
        &[&format!("{subnet}.1/24")],
        node,
        "eth0",
        &[&format!("{subnet}.{host}/24")],
    );
    lab.link(
        node,
        "pod0",
        &[&format!("{pod_net}.1/24")],
        pod,
        "eth0",
        &[&format!("{pod_net}.10/24")],
    );
    lab.exec(pod, "ip", &["route", "add", "default", "via", &format!("{pod_net}.1")]);
    lab.forwarding(node);
}

fn replies(log: &Path) -> usize {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .matches("bytes from")
        .count()
}

fn more_replies(logs: &[&Path], more: usize) {
    let now: Vec<usize> = logs.iter().map(|l| replies(l)).collect();
    wait_until("more ping replies both ways", SETTLE, || {
        let n: Vec<usize> = logs.iter().map(|l| replies(l)).collect();
        if n.iter().zip(&now).all(|(n, was)| *n >= was + more) {
            Ok(())
        } else {
            Err(format!("{n:?}"))
        }
    });
}

const BIRD: &str = r#"
router id 10.0.0.1;
protocol device { }
protocol kernel k4 { ipv4 { export where source = RTS_BGP; }; }
protocol bgp a {
  local 10.0.1.1 as 65000; neighbor 10.0.1.11 as 65011;
  hold time 9; keepalive time 3; connect retry time 1;
  ipv4 { import all; export all; };
}
protocol bgp b {
  local 10.0.2.1 as 65000; neighbor 10.0.2.12 as 65012;
  hold time 9; keepalive time 3; connect retry time 1;
  ipv4 { import all; export all; };
}
"#;

/// The ToR of a run.
enum Tor {
    Frr(Frr),
    Bird(Bird),
}

impl Tor {
    /// Whether the ToR holds `prefix`, as stale or not, with its AS path.
    fn route(&self, prefix: &str) -> Option<(bool, String)> {
        match self {
            Tor::Frr(frr) => frr_route(frr, prefix),
            // BIRD shows no stale mark: a route kept while the session
            // is down is one kept by graceful restart.
            Tor::Bird(bird) => {
                let path = bird.route_as_path(prefix)?;
                Some((bird.bgp_state("a") != "Established", path))
            }
        }
    }

    /// The ToR heard no NOTIFICATION from node A.
    fn heard_no_notification(&self) {
        match self {
            Tor::Frr(frr) => {
                let reason = frr.neighbor("10.0.1.11")["lastNotificationReason"].clone();
                assert!(
                    reason.is_null() || reason == "",
                    "no NOTIFICATION at the restart: {reason}"
                );
            }
            // BIRD says "Last error: Received: <reason>" after a
            // NOTIFICATION.
            Tor::Bird(bird) => {
                let text = bird.birdc(&["show", "protocols", "all", "a"]);
                let last = text.lines().find(|l| l.contains("Last error")).unwrap_or("");
                assert!(!last.contains("Received"), "no NOTIFICATION at the restart: {last}");
            }
        }
    }
}

fn frr_route(frr: &Frr, prefix: &str) -> Option<(bool, String)> {
    let v = frr.json(&format!("show bgp ipv4 unicast {prefix} json"));
    let path = v["paths"].as_array()?.first()?.clone();
    Some((
        path["stale"].as_bool().unwrap_or(false),
        path["aspath"]["string"].as_str().unwrap_or("").to_string(),
    ))
}

/// The kind of ToR of a run.
#[derive(Clone, Copy, PartialEq)]
enum TorKind {
    Frr(Bfd),
    Bird,
}

/// How node A's agent is replaced.
#[derive(Clone, Copy)]
struct Replacement {
    /// From the SIGTERM to the new agent's start.
    gap: Duration,
    /// The new agent gets a SIGTERM too as soon as it is ready (before
    /// its sessions are back and its End-of-RIB sent), and a third one
    /// starts at once: a second restart before the first finished.
    twice: bool,
}

const AFTER_3_S: Replacement = Replacement {
    gap: Duration::from_secs(3),
    twice: false,
};

fn rolling_update_loses_no_packet(name: &str, kind: TorKind, replacement: Replacement) {
    let tor_bfd = match kind {
        TorKind::Frr(b) => b,
        TorKind::Bird => Bfd::Off,
    };
    let bfd = tor_bfd != Bfd::Off;
    let mut lab = Lab::new(name);
    lab.add_ns("tor");
    lab.forwarding("tor");
    node_with_pod(&mut lab, "node-a", "eth0", "10.0.1", "11", "pod-a", "10.244.11");
    node_with_pod(&mut lab, "node-b", "eth1", "10.0.2", "12", "pod-b", "10.244.12");
    let tor = match kind {
        TorKind::Frr(_) => {
            let bgpd = tor_bgpd(tor_bfd);
            let mut daemons = vec![("zebra", "hostname tor\n")];
            if bfd {
                daemons.push(("bfdd", FRR_BFD_FAST));
            }
            daemons.push(("bgpd", &bgpd));
            Tor::Frr(Frr::start_daemons(&mut lab, "tor", &daemons))
        }
        TorKind::Bird => Tor::Bird(Bird::start(&mut lab, "tor", BIRD)),
    };
    let cfg_a = node_config("node-a", "10.0.1.11", "10.0.1.1", "10.244.11.0/24", bfd);
    let agent_a = Agent::start(&mut lab, "node-a", &cfg_a);
    let agent_b = Agent::start(
        &mut lab,
        "node-b",
        &node_config("node-b", "10.0.2.12", "10.0.2.1", "10.244.12.0/24", bfd),
    );
    agent_established(&agent_a, "10.0.1.1");
    agent_established(&agent_b, "10.0.2.1");
    if bfd {
        for (agent, tor) in [(&agent_a, "10.0.1.1"), (&agent_b, "10.0.2.1")] {
            wait_for_value("BFD Up", json!("Up"), || agent.bfd_session(tor)["state"].clone());
        }
    }
    wait_for_value("node-a routes to pod-b", Some(vec!["10.0.1.1".to_string()]), || {
        bgp_routes(&lab, "node-a").get("10.244.12.0/24").cloned()
    });
    wait_for_value("node-b routes to pod-a", Some(vec!["10.0.2.1".to_string()]), || {
        bgp_routes(&lab, "node-b").get("10.244.11.0/24").cloned()
    });
    let routes_a = bgp_routes(&lab, "node-a");

    let a_to_b = lab.spawn("ping-ab", "pod-a", "ping", &["-n", "-i", "0.02", "10.244.12.10"]);
    let b_to_a = lab.spawn("ping-ba", "pod-b", "ping", &["-n", "-i", "0.02", "10.244.11.10"]);
    let logs = [a_to_b.as_path(), b_to_a.as_path()];
    more_replies(&logs, 10);

    // SIGTERM: a restart. The agent exits, the kernel keeps its routes,
    // the ToR keeps node-a's PodCIDR as stale.
    lab.signal(&agent_a.name, libc::SIGTERM);
    let stopped = Instant::now();
    assert!(lab.wait_exit(&agent_a.name, SETTLE).success());
    assert_eq!(bgp_routes(&lab, "node-a"), routes_a, "node-a's kernel routes stay");
    wait_for_value(
        "the ToR to keep node-a's PodCIDR as stale",
        Some((true, "65011".to_string())),
        || tor.route("10.244.11.0/24"),
    );
    tor.heard_no_notification();
    // The replacement 3 s after the SIGTERM (an image already on the
    // node), or 30 s (an image pull).
    std::thread::sleep(replacement.gap.saturating_sub(stopped.elapsed()));
    let mut agent_a = Agent::start(&mut lab, "node-a", &cfg_a);
    if replacement.twice {
        lab.signal(&agent_a.name, libc::SIGTERM);
        assert!(lab.wait_exit(&agent_a.name, SETTLE).success());
        assert_eq!(bgp_routes(&lab, "node-a"), routes_a, "node-a's kernel routes stay");
        agent_a = Agent::start(&mut lab, "node-a", &cfg_a);
    }
    agent_established(&agent_a, "10.0.1.1");
    wait_for_value(
        "the ToR to refresh node-a's PodCIDR",
        Some((false, "65011".to_string())),
        || tor.route("10.244.11.0/24"),
    );
    if bfd {
        wait_for_value("BFD Up again", json!("Up"), || {
            agent_a.bfd_session("10.0.1.1")["state"].clone()
        });
    }
    more_replies(&logs, 25);
    // The probes ran through the gap (ping's 20 ms interval stretches a
    // little on a busy machine: at least one per 40 ms).
    let expected = (replacement.gap.as_millis() / 40) as u64;
    for (name, log) in [("ping-ab", a_to_b), ("ping-ba", b_to_a)] {
        lab.signal(name, libc::SIGINT);
        lab.wait_exit(name, Duration::from_secs(10));
        let text = std::fs::read_to_string(&log).unwrap();
        let (sent, received) = ping_counts(&text);
        assert!(sent >= expected, "{name}: {sent} sent");
        assert_eq!(sent, received, "{name}: no packet lost across the restart: {text}");
    }
    wait_for_value("the adopted routes refreshed (none stale)", json!(0), || {
        serde_json::from_str::<Value>(&agent_a.get("/status/fib").unwrap_or_default()).unwrap_or_default()["stale"]
            .clone()
    });
}

#[test]
fn a_rolling_update_behind_an_frr_tor_loses_no_packet() {
    rolling_update_loses_no_packet("roll", TorKind::Frr(Bfd::Off), AFTER_3_S);
}

#[test]
fn a_rolling_update_with_bfd_loses_no_packet() {
    rolling_update_loses_no_packet("rollbfd", TorKind::Frr(Bfd::On), AFTER_3_S);
}

#[test]
fn a_rolling_update_with_bfd_and_the_control_plane_check_loses_no_packet() {
    rolling_update_loses_no_packet("rollcbit", TorKind::Frr(Bfd::OnCheckingTheControlPlane), AFTER_3_S);
}

#[test]
fn a_rolling_update_behind_a_bird_tor_loses_no_packet() {
    rolling_update_loses_no_packet("rollbird", TorKind::Bird, AFTER_3_S);
}

#[test]
fn a_rolling_update_with_bfd_and_a_30_s_image_pull_loses_no_packet() {
    let replacement = Replacement {
        gap: Duration::from_secs(30),
        twice: false,
    };
    rolling_update_loses_no_packet("roll30", TorKind::Frr(Bfd::On), replacement);
}

#[test]
fn a_second_restart_before_the_first_finished_loses_no_packet() {
    let replacement = Replacement {
        gap: Duration::from_secs(3),
        twice: true,
    };
    rolling_update_loses_no_packet("roll2x", TorKind::Frr(Bfd::On), replacement);
}

/// Mesh peers are graceful-restart helpers too: three nodes meshed
/// directly (no ToR, BFD 100 ms x 3 on every session), pods pinging each
/// other in both directions of a ring every 20 ms; each node's agent is
/// replaced in turn (SIGTERM, the new one 3 s later, the next node once it
/// is back, as a DaemonSet with maxUnavailable 1 rolls). No ping is lost
/// and no route is left stale.
#[test]
fn rolling_all_three_nodes_of_a_mesh_loses_no_packet() {
    let mut lab = Lab::new("rollmesh");
    novanet_conformance::checks::switched(
        &mut lab,
        &[("n1", "10.0.0.11/24"), ("n2", "10.0.0.12/24"), ("n3", "10.0.0.13/24")],
    );
    let mut agents = Vec::new();
    for i in 1..=3 {
        let (node, pod) = (format!("n{i}"), format!("pod{i}"));
        lab.add_ns(&pod);
        lab.link(
            &node,
            "pod0",
            &[&format!("10.244.1{i}.1/24")],
            &pod,
            "eth0",
            &[&format!("10.244.1{i}.10/24")],
        );
        lab.exec(
            &pod,
            "ip",
            &["route", "add", "default", "via", &format!("10.244.1{i}.1")],
        );
        lab.forwarding(&node);
        agents.push(Agent::start(&mut lab, &node, &three_node_mesh(i, json!({}))));
    }
    let all_routes = |lab: &Lab, i: usize| {
        let routes = bgp_routes(lab, &format!("n{i}"));
        (1..=3)
            .filter(|j| *j != i)
            .all(|j| routes.get(&format!("10.244.1{j}.0/24")) == Some(&vec![format!("10.0.0.1{j}")]))
    };
    for i in 1..=3 {
        wait_until(&format!("n{i} to route to both other pods"), SETTLE, || {
            if all_routes(&lab, i) {
                Ok(())
            } else {
                Err(format!("{:?}", bgp_routes(&lab, &format!("n{i}"))))
            }
        });
    }
    // A ring both ways: every pod probes both others.
    let mut logs = Vec::new();
    for (from, to) in [(1, 2), (2, 3), (3, 1), (2, 1), (3, 2), (1, 3)] {
        let name = format!("ping{from}{to}");
        let log = lab.spawn(
            &name,
            &format!("pod{from}"),
            "ping",
            &["-n", "-i", "0.02", &format!("10.244.1{to}.10")],
        );
        logs.push((name, log));
    }
    let paths: Vec<&Path> = logs.iter().map(|(_, l)| l.as_path()).collect();
    more_replies(&paths, 10);

    for i in 1..=3 {
        let node = format!("n{i}");
        let before = bgp_routes(&lab, &node);
        let agent = &agents[i - 1];
        lab.signal(&agent.name, libc::SIGTERM);
        let stopped = Instant::now();
        assert!(lab.wait_exit(&agent.name, SETTLE).success());
        assert_eq!(bgp_routes(&lab, &node), before, "{node}'s kernel routes stay");
        std::thread::sleep(Duration::from_secs(3).saturating_sub(stopped.elapsed()));
        agents[i - 1] = Agent::start(&mut lab, &node, &three_node_mesh(i, json!({})));
        let agent = &agents[i - 1];
        for j in (1..=3).filter(|j| *j != i) {
            agent_established(agent, &format!("10.0.0.1{j}"));
            wait_for_value(&format!("{node}: BFD Up with n{j}"), json!("Up"), || {
                agent.bfd_session(&format!("10.0.0.1{j}"))["state"].clone()
            });
        }
        // Back as before, nothing stale, before the next node rolls.
        wait_for_value(&format!("{node}'s adopted routes refreshed"), json!(0), || {
            serde_json::from_str::<Value>(&agent.get("/status/fib").unwrap_or_default()).unwrap_or_default()["stale"]
                .clone()
        });
        for other in agents.iter().filter(|a| a.name != agent.name) {
            wait_for_value(&format!("{} keeps nothing stale of {node}", other.name), 0, || {
                other
                    .route(&format!("10.244.1{i}.0/24"))
                    .iter()
                    .filter(|p| p["stale"] == true)
                    .count()
            });
        }
        more_replies(&paths, 10);
    }
    for (name, log) in logs {
        lab.signal(&name, libc::SIGINT);
        lab.wait_exit(&name, Duration::from_secs(10));
        let text = std::fs::read_to_string(&log).unwrap();
        let (sent, received) = ping_counts(&text);
        assert!(sent >= 225, "{name}: {sent} sent");
        assert_eq!(sent, received, "{name}: no packet lost across three restarts: {text}");
    }
}
