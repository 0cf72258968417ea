//! The node mesh through route servers, against a real kube-apiserver:
//! four nodes on one switch, two of them labelled
//! `novanet.io/route-server=true`. The two clients peer with the route
//! servers only, the route servers with every node; each client holds the
//! other's PodCIDR through both route servers, with the other node's AS
//! path and next hop (two paths, one next hop). A route server's agent
//! killed under pod-to-pod pings between the clients loses no ping (its
//! paths kept stale, as for any restarting peer, the other route server's
//! fresh, both with the one next hop); its sessions and paths come back
//! when it starts again.

use novanet_conformance::checks::{agent_established, more_replies, ping_counts, replies, SETTLE};
use novanet_conformance::kube_server::{self, Options};
use novanet_conformance::{wait_until, Agent, Lab};
use serde_json::{json, Value};
use std::time::Duration;

fn mesh_config(name: &str) -> Value {
    json!({
        "node_name": name,
        "routing": {"bfd": {"enabled": true}, "node_mesh": {"enabled": true, "source": "kubernetes"}}
    })
}

fn roles(agent: &Agent) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = agent
        .peers()
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            (
                p["neighbor_address"].as_str().unwrap_or_default().to_string(),
                p["role"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    v.sort();
    v
}

#[test]
fn clients_peer_with_the_route_servers_and_lose_nothing_with_one() {
    let names = ["n1", "n2", "n3", "n4"];
    let mut lab = Lab::new("krs");
    let (api, kubeconfig) = kube_server::on_switch(&mut lab, &names, Options::default(), &[]);
    for (i, name) in names.iter().enumerate() {
        let mut n = kube_server::node(name, &format!("10.0.0.{}", 11 + i), &format!("10.244.{}.0/24", 1 + i));
        if i < 2 {
            n["metadata"]["labels"]["novanet.io/route-server"] = json!("true");
        }
        api.apply_node(n);
        lab.exec(
            name,
            "ip",
            &["addr", "add", &format!("10.244.{}.1/32", 1 + i), "dev", "lo"],
        );
    }
    let env = [("KUBECONFIG", kubeconfig.to_str().unwrap())];
    let mut agents: Vec<Agent> = names
        .iter()
        .map(|n| Agent::start_with_env(&mut lab, n, &mesh_config(n), &env))
        .collect();

    let want = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
        pairs.iter().map(|(a, r)| (a.to_string(), r.to_string())).collect()
    };
    for (i, expected) in [
        want(&[
            ("10.0.0.12", "mesh"),
            ("10.0.0.13", "route_server_client"),
            ("10.0.0.14", "route_server_client"),
        ]),
        want(&[
            ("10.0.0.11", "mesh"),
            ("10.0.0.13", "route_server_client"),
            ("10.0.0.14", "route_server_client"),
        ]),
        want(&[("10.0.0.11", "route_server"), ("10.0.0.12", "route_server")]),
        want(&[("10.0.0.11", "route_server"), ("10.0.0.12", "route_server")]),
    ]
    .into_iter()
    .enumerate()
    {
        wait_until(&format!("{}'s sessions and their roles", names[i]), SETTLE, || {
            let got = roles(&agents[i]);
            (got == expected).then_some(()).ok_or_else(|| format!("{got:?}"))
        });
        for (addr, _) in &expected {
            agent_established(&agents[i], addr);
        }
    }
    // n3 holds n4's PodCIDR through both route servers: n4's path, n4 the
    // next hop of both.
    wait_until("n3 to hold n4's PodCIDR through both route servers", SETTLE, || {
        let paths = agents[2].route("10.244.4.0/24");
        let ok = paths.len() == 2
            && paths
                .iter()
                .all(|p| p["next_hop"] == "10.0.0.14" && p["as_path"] == "65014");
        ok.then_some(()).ok_or_else(|| format!("{paths:?}"))
    });
    wait_until("n3's kernel to route n4's pods to n4", SETTLE, || {
        let out = lab.exec("n3", "ip", &["route", "get", "10.244.4.1"]);
        out.contains("via 10.0.0.14").then_some(()).ok_or(out)
    });

    // Pings from n3's pod to n4's while route server n1's agent is killed.
    let ping_log = lab.spawn(
        "ping",
        "n3",
        "ping",
        &["-i", "0.02", "-W", "1", "-I", "10.244.3.1", "10.244.4.1"],
    );
    more_replies(&ping_log, replies(&ping_log), 25);
    let n1 = agents.remove(0);
    lab.signal(&n1.name, libc::SIGKILL);
    lab.wait_exit(&n1.name, SETTLE);
    // (agents now: n2, n3, n4.)
    let n3 = &agents[1];
    wait_until("n3's session with n1 down", SETTLE, || {
        let state = n3.peer_state("10.0.0.11");
        (state != "Established").then_some(()).ok_or(state)
    });
    // n1's paths are kept as stale (n1 may be restarting) or gone; n2's
    // stay: either way the next hop is n4's.
    wait_until("n3 to hold n1's path as stale, n2's as it was", SETTLE, || {
        let paths = n3.route("10.244.4.0/24");
        let from = |a: &str| paths.iter().find(|p| p["from"] == a).cloned();
        let ok = from("10.0.0.11").is_none_or(|p| p["stale"] == true)
            && from("10.0.0.12").is_some_and(|p| p["stale"] == false)
            && paths.iter().all(|p| p["next_hop"] == "10.0.0.14");
        ok.then_some(()).ok_or_else(|| format!("{paths:?}"))
    });
    more_replies(&ping_log, replies(&ping_log), 50);
    lab.signal("ping", libc::SIGINT);
    lab.wait_exit("ping", Duration::from_secs(10));
    let log = std::fs::read_to_string(&ping_log).unwrap();
    let (sent, received) = ping_counts(&log);
    assert!(sent >= 75, "{sent} sent");
    assert_eq!(sent, received, "no ping lost with a route server gone: {log}");

    // Back: n3 holds both paths again.
    let n1 = Agent::start_with_env(&mut lab, "n1", &mesh_config("n1"), &env);
    agent_established(&n1, "10.0.0.13");
    wait_until("n3 back to two fresh paths", SETTLE, || {
        let paths = agents[1].route("10.244.4.0/24");
        (paths.len() == 2 && paths.iter().all(|p| p["stale"] == false))
            .then_some(())
            .ok_or_else(|| format!("{paths:?}"))
    });
}
