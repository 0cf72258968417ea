//! The control-plane VIP: bound on `lo` and advertised to a real FRR ToR
//! while the local API server's health endpoint (here an HTTP server in
//! the node's namespace that the test turns unhealthy) answers 2xx;
//! withdrawn and unbound when it fails; kept across a restart (SIGTERM). With two
//! control-plane nodes behind an FRR ToR (ECMP), a handover (a failed
//! health check, a decommissioned node) loses no probe: the VIP stays bound until the
//! fabric has moved. The node's control-plane label is followed: a node
//! labelled later advertises the VIP, one unlabelled withdraws it.

use novanet_conformance::checks::{
    agent_established, count_probes, ecmp_tor, more_replies, ping_counts, probed_node, replies, switched, tor_and_node,
    SETTLE, TOR_FRR,
};
use novanet_conformance::kube_server::{self, KubeServer, Options};
use novanet_conformance::{in_namespace, wait_until, Agent, Frr, Lab};
use serde_json::json;
use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// An HTTP health endpoint: 200 "ok" while `healthy`, else 500.
fn health_endpoint(listener: std::net::TcpListener, healthy: Arc<AtomicBool>, stop: Arc<AtomicBool>) {
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            let Ok(mut conn) = conn else { continue };
            let _ = conn.set_read_timeout(Some(Duration::from_secs(2)));
            let mut buf = [0u8; 2048];
            let _ = conn.read(&mut buf);
            let (status, body) = if healthy.load(Ordering::Relaxed) {
                ("200 OK", "ok")
            } else {
                (
                    "500 Internal Server Error",
                    "[-]etcd failed: reason withheld\nlivez check failed",
                )
            };
            let _ = write!(
                conn,
                "HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
}

fn lo_has(lab: &Lab, addr: &str) -> bool {
    lab.exec("node", "ip", &["-o", "addr", "show", "dev", "lo"])
        .contains(addr)
}

/// Waits until the VIP is no longer bound on the node's lo.
fn off_lo(lab: &Lab, what: &str) {
    wait_until(what, SETTLE, || {
        if lo_has(lab, "10.0.0.250") {
            Err("still bound".to_string())
        } else {
            Ok(())
        }
    });
}

#[test]
fn the_vip_follows_the_api_servers_health() {
    let mut lab = Lab::new("cpvip");
    tor_and_node(&mut lab);
    let frr = Frr::start(&mut lab, "tor", TOR_FRR);
    let listener = in_namespace(&lab.ns_name("node"), || {
        std::net::TcpListener::bind("127.0.0.1:0").unwrap()
    });
    let port = listener.local_addr().unwrap().port();
    let healthy = Arc::new(AtomicBool::new(true));
    let stop = Arc::new(AtomicBool::new(false));
    health_endpoint(listener, healthy.clone(), stop.clone());

    let config = json!({
        "node_name": "cp-1",
        "node_ip": "10.0.0.10",
        "pod_cidr": "10.244.10.0/24",
        "routing": {
            "peers": [{"neighbor_address": "10.0.0.1", "remote_as": 65000, "hold_time": 9, "keepalive": 3}],
            "control_plane_vip": "10.0.0.250",
            "control_plane_vip_health_interval": 1,
            "control_plane_vip_health_url": format!("http://127.0.0.1:{port}/livez")
        }
    });
    let agent = Agent::start(&mut lab, "node", &config);
    agent_established(&agent, "10.0.0.1");
    let tor_has = |want: bool| {
        wait_until(
            &format!("the ToR to {} 10.0.0.250/32", if want { "hold" } else { "drop" }),
            SETTLE,
            || match (frr.route_as_path("ipv4", "10.0.0.250/32"), want) {
                (Some(p), true) if p == "65010" => Ok(()),
                (None, false) => Ok(()),
                (other, _) => Err(format!("{other:?}")),
            },
        )
    };
    tor_has(true);
    assert!(lo_has(&lab, "10.0.0.250/32"), "the VIP is bound on lo while healthy");

    healthy.store(false, Ordering::Relaxed);
    tor_has(false);
    off_lo(&lab, "the VIP to leave lo");
    // The node's own prefix stays: only the VIP follows the API server.
    assert!(frr.route_as_path("ipv4", "10.244.10.0/24").is_some());

    healthy.store(true, Ordering::Relaxed);
    tor_has(true);
    assert!(lo_has(&lab, "10.0.0.250/32"));

    // SIGTERM is a restart: the VIP stays bound, and the ToR (a
    // graceful-restart helper) keeps the route while the next agent comes.
    lab.signal(&agent.name, libc::SIGTERM);
    assert!(lab.wait_exit(&agent.name, Duration::from_secs(30)).success());
    assert!(lo_has(&lab, "10.0.0.250/32"), "kept bound across a restart");
    assert!(frr.route_as_path("ipv4", "10.0.0.250/32").is_some(), "kept by the ToR");

    // The next agent finds the API server unhealthy at its first check: the
    // VIP the restart left on lo is unbound, and the ToR's kept route goes
    // (not refreshed by the new session).
    healthy.store(false, Ordering::Relaxed);
    let agent = Agent::start(&mut lab, "node", &config);
    agent_established(&agent, "10.0.0.1");
    off_lo(&lab, "the leftover VIP to leave lo");
    tor_has(false);
    assert!(frr.route_as_path("ipv4", "10.244.10.0/24").is_some());
    stop.store(true, Ordering::Relaxed);
    let _ = in_namespace(&lab.ns_name("node"), move || {
        std::net::TcpStream::connect(("127.0.0.1", port))
    });
}

#[test]
fn a_vip_handover_loses_no_probe() {
    const VIP: &str = "10.96.0.250";
    let mut lab = Lab::new("cpvip2");
    switched(
        &mut lab,
        &[("tor", "10.0.0.1/24"), ("cp1", "10.0.0.10/24"), ("cp2", "10.0.0.11/24")],
    );
    let frr = ecmp_tor(&mut lab);
    let stop = Arc::new(AtomicBool::new(false));
    let mut agents = Vec::new();
    let mut health = Vec::new();
    for (ns, ip, asn) in [("cp1", "10.0.0.10", 65010), ("cp2", "10.0.0.11", 65011)] {
        let listener = in_namespace(&lab.ns_name(ns), || std::net::TcpListener::bind("127.0.0.1:0").unwrap());
        let port = listener.local_addr().unwrap().port();
        let healthy = Arc::new(AtomicBool::new(true));
        health_endpoint(listener, healthy.clone(), stop.clone());
        count_probes(&lab, ns, VIP);
        let agent = Agent::start(
            &mut lab,
            ns,
            &json!({
                "node_name": ns,
                "node_ip": ip,
                "pod_cidr": format!("10.244.{}.0/24", &ip[7..]),
                "on_sigterm": "decommission",
                "drain_period": 1,
                "routing": {
                    "local_as": asn,
                    "peers": [{"neighbor_address": "10.0.0.1", "remote_as": 65000, "hold_time": 9, "keepalive": 3}],
                    "control_plane_vip": VIP,
                    "control_plane_vip_health_interval": 1,
                    "control_plane_vip_health_url": format!("http://127.0.0.1:{port}/livez")
                }
            }),
        );
        agent_established(&agent, "10.0.0.1");
        agents.push((ns, agent));
        health.push((port, healthy));
    }
    let paths_at_tor = || {
        frr.json(&format!("show ip route {VIP}/32 json"))[format!("{VIP}/32")][0]["nexthops"]
            .as_array()
            .map(|n| n.iter().filter(|h| h["active"] == true).count())
            .unwrap_or(0)
    };
    let both = || {
        wait_until(
            "the ToR to hold the VIP over both nodes",
            SETTLE,
            || match paths_at_tor() {
                2 => Ok(()),
                n => Err(n.to_string()),
            },
        )
    };
    both();
    let ping_log = lab.spawn("ping", "tor", "ping", &["-n", "-i", "0.02", VIP]);
    more_replies(&ping_log, 0, 25);
    // The carrier's API server fails: the VIP moves to the other node.
    let c = probed_node(&lab, &["cp1", "cp2"], &ping_log);
    health[c].1.store(false, Ordering::Relaxed);
    wait_until(
        "the ToR to drop the failed node's path",
        SETTLE,
        || match paths_at_tor() {
            1 => Ok(()),
            n => Err(n.to_string()),
        },
    );
    let (ns, _) = agents[c];
    wait_until("the VIP to leave the failed node's lo", SETTLE, || {
        if lo_has_in(&lab, ns, VIP) {
            Err("still bound".to_string())
        } else {
            Ok(())
        }
    });
    more_replies(&ping_log, replies(&ping_log), 25);
    health[c].1.store(true, Ordering::Relaxed);
    both();

    // The carrier's node is decommissioned (its agent stopped for good):
    // the same.
    let c = probed_node(&lab, &["cp1", "cp2"], &ping_log);
    let (ns, agent) = &agents[c];
    lab.signal(&agent.name, libc::SIGTERM);
    assert!(lab.wait_exit(&agent.name, Duration::from_secs(30)).success());
    assert!(!lo_has_in(&lab, ns, VIP), "unbound at shutdown");
    more_replies(&ping_log, replies(&ping_log), 25);

    lab.signal("ping", libc::SIGINT);
    lab.wait_exit("ping", Duration::from_secs(10));
    let log = std::fs::read_to_string(&ping_log).unwrap();
    let (sent, received) = ping_counts(&log);
    assert!(sent >= 100, "{sent} sent");
    assert_eq!(sent, received, "no probe lost across the handovers: {log}");
    stop.store(true, Ordering::Relaxed);
    for (port, _) in health {
        let _ = in_namespace(&lab.ns_name(agents[0].0), move || {
            std::net::TcpStream::connect(("127.0.0.1", port))
        });
    }
}

fn lo_has_in(lab: &Lab, ns: &str, addr: &str) -> bool {
    lab.exec(ns, "ip", &["-o", "addr", "show", "dev", "lo"])
        .contains(&format!("{addr}/"))
}

#[test]
fn the_vip_follows_the_nodes_control_plane_label() {
    const LABEL: &str = "node-role.kubernetes.io/control-plane";
    let mut lab = Lab::new("cpvipl");
    tor_and_node(&mut lab);
    let api = KubeServer::start(&mut lab, "tor", "10.0.0.1:6443", Options::default());
    let kubeconfig = api.agent_kubeconfig(&[]);
    let worker = kube_server::node("cp-1", "10.0.0.10", "10.244.10.0/24");
    let mut labelled = worker.clone();
    labelled["metadata"]["labels"][LABEL] = json!("");
    api.apply_node(worker.clone());
    // Another node's label says nothing about this one.
    let mut other = kube_server::node("cp-2", "10.0.0.11", "10.244.11.0/24");
    other["metadata"]["labels"][LABEL] = json!("");
    api.apply_node(other);
    let frr = Frr::start(&mut lab, "tor", TOR_FRR);
    let listener = in_namespace(&lab.ns_name("node"), || {
        std::net::TcpListener::bind("127.0.0.1:0").unwrap()
    });
    let port = listener.local_addr().unwrap().port();
    let stop = Arc::new(AtomicBool::new(false));
    health_endpoint(listener, Arc::new(AtomicBool::new(true)), stop.clone());
    let agent = Agent::start_with_env(
        &mut lab,
        "node",
        &json!({
            "node_name": "cp-1",
            "routing": {
                "local_as": 65010,
                "bfd": {"enabled": false},
                "node_mesh": {"enabled": true, "source": "kubernetes"},
                "peers": [{"neighbor_address": "10.0.0.1", "remote_as": 65000, "hold_time": 9, "keepalive": 3}],
                "control_plane_vip": "10.0.0.250",
                "control_plane_vip_health_interval": 1,
                "control_plane_vip_health_url": format!("http://127.0.0.1:{port}/livez")
            }
        }),
        &[("KUBECONFIG", kubeconfig.to_str().unwrap())],
    );
    agent_established(&agent, "10.0.0.1");
    let tor_has = |want: bool| {
        wait_until(
            &format!("the ToR to {} the VIP", if want { "hold" } else { "lack" }),
            SETTLE,
            || match (frr.route_as_path("ipv4", "10.0.0.250/32"), want) {
                (Some(_), true) | (None, false) => Ok(()),
                (other, _) => Err(format!("{other:?}")),
            },
        )
    };
    // A worker: the PodCIDR goes out, the VIP does not.
    wait_until("the ToR to hold the PodCIDR", SETTLE, || {
        frr.route_as_path("ipv4", "10.244.10.0/24").ok_or_else(String::new)
    });
    wait_until("the agent to know it is no control-plane node", SETTLE, || {
        if agent.log(&lab).contains("not a control-plane node") {
            Ok(())
        } else {
            Err(String::new())
        }
    });
    tor_has(false);
    assert!(!lo_has(&lab, "10.0.0.250"));
    // Labelled: the VIP is checked, bound and advertised.
    api.apply_node(labelled);
    tor_has(true);
    assert!(lo_has(&lab, "10.0.0.250/32"));
    // Unlabelled again: withdrawn and unbound.
    api.apply_node(worker);
    tor_has(false);
    off_lo(&lab, "the VIP to leave lo");
    stop.store(true, Ordering::Relaxed);
    let _ = in_namespace(&lab.ns_name("node"), move || {
        std::net::TcpStream::connect(("127.0.0.1", port))
    });
    // The agent goes first, so the API server has no watch to wait on.
    drop(lab);
    drop(api);
}
