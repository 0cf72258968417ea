//! A node drained before it leaves (RFC 8326): a /32 advertised by two
//! nodes (ECMP at an FRR ToR), pinged every 20 ms from the ToR. `novanetctl
//! routing drain` on the node the probes reach: the ToR sees its path with
//! the GRACEFUL_SHUTDOWN community and a longer AS path and moves the
//! traffic to the other node while both still advertise; then a SIGTERM
//! decommissions the drained node (withdraw, Cease). No probe is lost.
//! `--undo` ends a drain: both paths are equal again.

use novanet_conformance::checks::{
    agent_established, count_probes, ecmp_tor, more_replies, ping_counts, probed_node, replies, switched, SETTLE,
};
use novanet_conformance::{wait_until, Agent, Frr, Lab};
use serde_json::{json, Value};
use std::time::Duration;

const ANYCAST: &str = "10.96.0.10";
const NODES: [&str; 2] = ["n1", "n2"];

/// The ToR's paths for the anycast /32: (from, AS path, communities).
fn tor_paths(frr: &Frr) -> Vec<(String, String, String)> {
    let v = frr.json(&format!("show bgp ipv4 unicast {ANYCAST}/32 json"));
    let mut paths: Vec<(String, String, String)> = v["paths"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            (
                p["peer"]["peerId"].as_str().unwrap_or("").to_string(),
                p["aspath"]["string"].as_str().unwrap_or("").to_string(),
                p["community"]["string"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    paths.sort();
    paths
}

/// The ToR kernel's next hops for the anycast /32.
fn tor_kernel(lab: &Lab) -> Vec<String> {
    let out = lab.exec("tor", "ip", &["-j", "route", "show", &format!("{ANYCAST}/32")]);
    let v: Value = serde_json::from_str(&out).unwrap_or(Value::Null);
    let Some(r) = v.as_array().and_then(|a| a.first()) else {
        return Vec::new();
    };
    let mut hops: Vec<String> = match r["nexthops"].as_array() {
        Some(h) => h
            .iter()
            .filter_map(|n| n["gateway"].as_str().map(String::from))
            .collect(),
        None => r["gateway"].as_str().map(String::from).into_iter().collect(),
    };
    hops.sort();
    hops
}

fn wait_kernel(lab: &Lab, want: &[&str]) {
    wait_until(
        &format!("the ToR to forward {ANYCAST} via {want:?}"),
        SETTLE,
        || match tor_kernel(lab) {
            h if h == want => Ok(()),
            h => Err(format!("{h:?}")),
        },
    );
}

#[test]
fn a_drained_node_moves_traffic_away_before_it_withdraws() {
    let mut lab = Lab::new("drain");
    switched(
        &mut lab,
        &[("tor", "10.0.0.1/24"), ("n1", "10.0.0.10/24"), ("n2", "10.0.0.11/24")],
    );
    let frr = ecmp_tor(&mut lab);
    let mut agents = Vec::new();
    for (i, ns) in NODES.iter().enumerate() {
        lab.exec(ns, "ip", &["addr", "add", &format!("{ANYCAST}/32"), "dev", "lo"]);
        count_probes(&lab, ns, ANYCAST);
        let agent = Agent::start(
            &mut lab,
            ns,
            &json!({
                "node_name": ns,
                "node_ip": format!("10.0.0.1{i}"),
                "pod_cidr": format!("10.244.1{i}.0/24"),
                "drain_period": 2,
                "owners": {"svc": {"token": "svc-token", "allowed_prefixes": {"type": "host_only", "allowed_cidrs": ["10.96.0.0/16"]}}},
                "routing": {
                    "local_as": 65010 + i,
                    "peers": [{"neighbor_address": "10.0.0.1", "remote_as": 65000, "hold_time": 9, "keepalive": 3}]
                }
            }),
        );
        agent_established(&agent, "10.0.0.1");
        agent.ctl(&[
            "--owner",
            "svc",
            "--token",
            "svc-token",
            "advertise",
            "--prefix",
            &format!("{ANYCAST}/32"),
        ]);
        agents.push(agent);
    }
    wait_kernel(&lab, &["10.0.0.10", "10.0.0.11"]);
    let ping_log = lab.spawn("ping", "tor", "ping", &["-n", "-i", "0.02", ANYCAST]);
    more_replies(&ping_log, 0, 25);
    let c = probed_node(&lab, &NODES, &ping_log);
    let (drained, other) = (&agents[c], &agents[1 - c]);
    let drained_ip = format!("10.0.0.1{c}");
    let other_ip = format!("10.0.0.1{}", 1 - c);
    let asn = 65010 + c;

    // Before: a SIGTERM would be a restart.
    let l: Value = serde_json::from_str(&drained.ctl(&["routing", "lifecycle", "-o", "json"])).unwrap();
    assert_eq!(
        (l["draining"].as_bool(), l["on_sigterm"].as_str()),
        (Some(false), Some("restart")),
        "{l}"
    );

    // Drain: the ToR sees the community and the longer path, and forwards
    // to the other node only, while the drained one still advertises.
    let l: Value = serde_json::from_str(&drained.ctl(&["routing", "drain", "-o", "json"])).unwrap();
    assert_eq!(
        (
            l["draining"].as_bool(),
            l["drain_cause"].as_str(),
            l["on_sigterm"].as_str()
        ),
        (Some(true), Some("operator"), Some("decommission")),
        "{l}"
    );
    let marked = format!("{asn} {asn} {asn} {asn}");
    wait_until("the ToR to see the drained path", SETTLE, || {
        let paths = tor_paths(&frr);
        match paths.iter().find(|p| p.0 == drained_ip) {
            Some((_, path, communities)) if *path == marked && communities.contains("graceful-shutdown") => Ok(()),
            _ => Err(format!("{paths:?}")),
        }
    });
    wait_kernel(&lab, &[&other_ip]);
    assert_eq!(probed_node(&lab, &NODES, &ping_log), 1 - c, "the probes moved");
    // The other node's path is untouched.
    let paths = tor_paths(&frr);
    let theirs = paths.iter().find(|p| p.0 == other_ip).expect("the other node's path");
    assert!(!theirs.2.contains("graceful-shutdown"), "{paths:?}");

    // Undo: both paths equal again; drain once more.
    drained.ctl(&["routing", "drain", "--undo"]);
    wait_kernel(&lab, &["10.0.0.10", "10.0.0.11"]);
    drained.ctl(&["routing", "drain"]);
    wait_kernel(&lab, &[&other_ip]);

    // SIGTERM on the drained node: a decommission. Its paths go, with a
    // Cease; the probes never notice.
    lab.signal(&drained.name, libc::SIGTERM);
    assert!(lab.wait_exit(&drained.name, SETTLE).success());
    wait_until("the drained node's paths to go", SETTLE, || {
        let paths = tor_paths(&frr);
        if paths.iter().any(|p| p.0 == drained_ip) {
            Err(format!("{paths:?}"))
        } else {
            Ok(())
        }
    });
    let n = frr.neighbor(&drained_ip);
    let said = format!("{} {}", n["lastNotificationReason"], n["lastShutdownDescription"]);
    assert!(
        said.contains("Administrative Shutdown") && said.contains("drained"),
        "{said}"
    );
    // The N bit was exchanged (RFC 8538): the Cease came as a Hard Reset,
    // so FRR keeps nothing stale.
    assert_eq!(n["lastNotificationHardReset"], true, "{n}");
    assert!(agent_log_says(&lab, drained, "decommissioning"));
    more_replies(&ping_log, replies(&ping_log), 25);
    lab.signal("ping", libc::SIGINT);
    lab.wait_exit("ping", Duration::from_secs(10));
    let log = std::fs::read_to_string(&ping_log).unwrap();
    let (sent, received) = ping_counts(&log);
    assert_eq!(sent, received, "no probe lost to the drain: {log}");
    let _ = other;
}

fn agent_log_says(lab: &Lab, agent: &Agent, what: &str) -> bool {
    agent.log(lab).contains(what)
}

/// Node `node-a` of the Kubernetes tests (its Node in the API server),
/// peering the ToR, draining 1 s before it leaves.
fn kubernetes_node() -> Value {
    json!({
        "node_name": "node-a",
        "drain_period": 1,
        "routing": {
            "local_as": 65010,
            "bfd": {"enabled": false},
            "node_mesh": {"enabled": true, "source": "kubernetes"},
            "peers": [{"neighbor_address": "10.0.0.1", "remote_as": 65000, "hold_time": 9, "keepalive": 3}]
        }
    })
}

/// Calls NodeLifecycle with the Python grpcio client; its answer.
fn python_lifecycle(agent: &Agent, what: &str) -> Value {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("python/lifecycle_client.py");
    let out = std::process::Command::new("python3")
        .arg(&script)
        .arg(&agent.socket)
        .arg(what)
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "python grpcio NodeLifecycle {what}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("one JSON object")
}

/// The Node speaks for the node: its `novanet.io/drain` annotation drains
/// it and removing it ends the drain (each step an Event on the Node); a
/// Python grpcio client drains and undoes through NodeLifecycle; once
/// cordoned, a SIGTERM
/// decommissions it (a `kubectl drain` before maintenance) instead of
/// restarting it.
#[test]
fn the_node_s_annotation_drains_it_and_a_cordoned_node_leaves_on_sigterm() {
    use novanet_conformance::checks::{tor_and_node, TOR_FRR};
    use novanet_conformance::kube_server::{self, KubeServer, Options};
    let mut lab = Lab::new("drainnode");
    tor_and_node(&mut lab);
    let api = KubeServer::start(&mut lab, "tor", "10.0.0.1:6443", Options::default());
    let kubeconfig = api.agent_kubeconfig(&[]);
    let node = kube_server::node("node-a", "10.0.0.10", "10.244.10.0/24");
    api.apply_node(node.clone());
    let frr = Frr::start(&mut lab, "tor", TOR_FRR);
    let agent = Agent::start_with_env(
        &mut lab,
        "node",
        &kubernetes_node(),
        &[("KUBECONFIG", kubeconfig.to_str().unwrap())],
    );
    agent_established(&agent, "10.0.0.1");
    let tor_sees = |want: &str| {
        wait_until(&format!("the ToR to see the PodCIDR as {want:?}"), SETTLE, || {
            let v = frr.json("show bgp ipv4 unicast 10.244.10.0/24 json");
            let p = &v["paths"][0];
            let seen = (
                p["aspath"]["string"].as_str().unwrap_or("").to_string(),
                p["community"]["string"].as_str().unwrap_or("").to_string(),
            );
            let ok = match want {
                "drained" => seen.0 == "65010 65010 65010 65010" && seen.1.contains("graceful-shutdown"),
                "normal" => seen.0 == "65010" && seen.1.is_empty(),
                _ => seen.0.is_empty(),
            };
            if ok {
                Ok(())
            } else {
                Err(format!("{seen:?}"))
            }
        })
    };
    let lifecycle = || -> Value { serde_json::from_str(&agent.ctl(&["routing", "lifecycle", "-o", "json"])).unwrap() };
    tor_sees("normal");

    let mut annotated = node.clone();
    annotated["metadata"]["annotations"]["novanet.io/drain"] = json!("true");
    api.apply_node(annotated);
    tor_sees("drained");
    assert_eq!(lifecycle()["drain_cause"], "annotation");
    api.wait_for_event("node-a", "NodeDraining", "draining (annotation)");
    api.apply_node(node.clone());
    tor_sees("normal");
    assert_eq!(lifecycle()["on_sigterm"], "restart");
    api.wait_for_event("node-a", "NodeDrainEnded", "drain ended");

    // The NodeLifecycle service from a client we did not write (Python
    // grpcio): a drain and its undo, as `novanetctl routing drain` does.
    let drained = python_lifecycle(&agent, "drain");
    assert_eq!(
        (drained["draining"].clone(), drained["drain_cause"].clone()),
        (json!(true), json!("operator"))
    );
    tor_sees("drained");
    assert_eq!(python_lifecycle(&agent, "get")["on_sigterm"], "decommission");
    assert_eq!(python_lifecycle(&agent, "undo")["draining"], false);
    tor_sees("normal");

    let mut cordoned = node.clone();
    cordoned["spec"]["unschedulable"] = json!(true);
    api.apply_node(cordoned);
    wait_until("a SIGTERM to mean decommission", SETTLE, || {
        let l = lifecycle();
        if l["on_sigterm"] == "decommission" && l["on_sigterm_reason"] == "its Node is cordoned" {
            Ok(())
        } else {
            Err(l.to_string())
        }
    });
    lab.signal(&agent.name, libc::SIGTERM);
    assert!(lab.wait_exit(&agent.name, SETTLE).success());
    tor_sees("withdrawn");
    assert!(agent.log(&lab).contains("its Node is cordoned"));
    let e = api.wait_for_event("node-a", "NodeDecommissioning", "its Node is cordoned");
    assert_eq!(e["type"], "Warning");
    // The agent goes first, so the API server has no watch to wait on.
    drop(lab);
    drop(api);
}

/// `helm uninstall` deletes the agent's DaemonSet before its pods get a
/// SIGTERM: the agent, watching it, decommissions the node (drain,
/// withdraw, Hard Reset) instead of restarting. While the DaemonSet is in
/// place (a rolling update), a SIGTERM stays a restart (an
/// `AgentRestarting` Event, the ToR keeps the node's PodCIDR).
#[test]
fn an_uninstall_decommissions_the_node() {
    use novanet_conformance::checks::{tor_and_node, TOR_FRR};
    use novanet_conformance::kube_server::{self, KubeServer, Options};
    let mut lab = Lab::new("uninstall");
    tor_and_node(&mut lab);
    let api = KubeServer::start(&mut lab, "tor", "10.0.0.1:6443", Options::default());
    let kubeconfig = api.agent_kubeconfig(&[]);
    api.apply_node(kube_server::node("node-a", "10.0.0.10", "10.244.10.0/24"));
    api.apply_daemonset("nova-system", "novanet");
    let frr = Frr::start(&mut lab, "tor", TOR_FRR);
    let env = [
        ("KUBECONFIG", kubeconfig.to_str().unwrap()),
        ("NOVANET_DAEMONSET", "novanet"),
        ("POD_NAMESPACE", "nova-system"),
    ];
    // With the DaemonSet in place (a rolling update) a SIGTERM is a
    // restart, said on the Node; the PodCIDR stays at the ToR.
    let agent = Agent::start_with_env(&mut lab, "node", &kubernetes_node(), &env);
    agent_established(&agent, "10.0.0.1");
    lab.signal(&agent.name, libc::SIGTERM);
    assert!(lab.wait_exit(&agent.name, SETTLE).success());
    api.wait_for_event("node-a", "AgentRestarting", "a restart");
    assert!(frr.route_as_path("ipv4", "10.244.10.0/24").is_some(), "kept by the ToR");

    let agent = Agent::start_with_env(&mut lab, "node", &kubernetes_node(), &env);
    agent_established(&agent, "10.0.0.1");
    let lifecycle = || -> Value { serde_json::from_str(&agent.ctl(&["routing", "lifecycle", "-o", "json"])).unwrap() };
    assert_eq!(lifecycle()["on_sigterm"], "restart");
    api.delete_daemonset("nova-system", "novanet");
    wait_until("a SIGTERM to mean decommission", SETTLE, || {
        let l = lifecycle();
        let why = l["on_sigterm_reason"].as_str().unwrap_or("");
        if l["on_sigterm"] == "decommission" && why.contains("DaemonSet") {
            Ok(())
        } else {
            Err(l.to_string())
        }
    });
    lab.signal(&agent.name, libc::SIGTERM);
    assert!(lab.wait_exit(&agent.name, SETTLE).success());
    wait_until("the ToR to drop the node's PodCIDR", SETTLE, || {
        let v = frr.json("show bgp ipv4 unicast 10.244.10.0/24 json");
        if v["paths"].as_array().is_none_or(|p| p.is_empty()) {
            Ok(())
        } else {
            Err(v.to_string())
        }
    });
    let n = frr.neighbor("10.0.0.10");
    let said = format!("{} {}", n["lastNotificationReason"], n["lastShutdownDescription"]);
    assert!(
        said.contains("Administrative Shutdown") && said.contains("uninstalled"),
        "{said}"
    );
    api.wait_for_event("node-a", "NodeDecommissioning", "NovaNet uninstalled");
    drop(lab);
    drop(api);
}
