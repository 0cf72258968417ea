//! The node mesh from Kubernetes, end to end: three agents with
//! `node_mesh.source: "kubernetes"` in namespaces on one LAN, reading their
//! Nodes from a real kube-apiserver (`novanet_conformance::kube_server`)
//! through the chart's ServiceAccount and RBAC. Every step is checked in
//! the agents' sessions and in the kernels of the namespaces. And an agent
//! restarted while the API server is away: it routes from the cluster as
//! last seen and catches up when the API server answers again.

use novanet_conformance::agent::ctl_binary;
use novanet_conformance::checks::{agent_established, SETTLE};
use novanet_conformance::kube_server::{self, KubeServer, Options};
use novanet_conformance::{kernel, wait_until, Agent, Lab};
use serde_json::{json, Value};

fn mesh_config(name: &str) -> Value {
    json!({
        "node_name": name,
        // On the node's address too, for the API server's pods proxy.
        "metrics_address": "0.0.0.0:9102",
        "routing": {"node_mesh": {"enabled": true, "source": "kubernetes"}}
    })
}

/// Waits until the `proto bgp` route for `prefix` in `ns` is via `via`
/// (or absent when `via` is None).
fn kernel_route(lab: &Lab, ns: &str, prefix: &str, via: Option<&str>) {
    wait_until(&format!("{ns}: {prefix} via {via:?}"), SETTLE, || {
        let got = kernel::bgp_routes(lab, ns).get(prefix).cloned();
        match (&got, via) {
            (None, None) => Ok(()),
            (Some(hops), Some(v)) if hops.iter().any(|h| h == v) => Ok(()),
            _ => Err(format!("{got:?}")),
        }
    });
}

fn peer_addresses(agent: &Agent) -> Vec<String> {
    agent
        .peers()
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|p| p["neighbor_address"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

fn wait_peers(agent: &Agent, want: &[&str]) {
    wait_until(&format!("{} to peer with exactly {want:?}", agent.name), SETTLE, || {
        let mut got = peer_addresses(agent);
        got.sort();
        if got == want {
            Ok(())
        } else {
            Err(format!("{got:?}"))
        }
    });
}

#[test]
fn the_node_mesh_follows_the_clusters_nodes() {
    let mut lab = Lab::new("kmesh");
    // Watches served from etcd, so that compacted history expires them.
    let options = Options { no_watch_cache: true };
    let (api, kubeconfig) = kube_server::on_switch(&mut lab, &["n1", "n2", "n3"], options, &[]);
    let admin = api.admin_kubeconfig().to_path_buf();
    let env = [("KUBECONFIG", kubeconfig.to_str().unwrap())];

    api.apply_node(kube_server::node("n1", "10.0.0.11", "10.244.1.0/24"));
    api.apply_node(kube_server::node("n2", "10.0.0.12", "10.244.2.0/24"));
    // n3's Node has no PodCIDR yet (the IPAM controller has not run).
    let mut n3 = kube_server::node("n3", "10.0.0.13", "10.244.3.0/24");
    n3["spec"] = json!({});
    api.apply_node(n3);

    // node_ip and pod_cidr come from the Nodes.
    let a1 = Agent::start_with_env(&mut lab, "n1", &mesh_config("n1"), &env);
    let a2 = Agent::start_with_env(&mut lab, "n2", &mesh_config("n2"), &env);
    let a3 = Agent::launch(&mut lab, "n3", &mesh_config("n3"), &env);
    wait_until("n3 to say what its Node lacks", SETTLE, || {
        let log = a3.log(&lab);
        if log.contains("Node n3 has no spec.podCIDR") {
            Ok(())
        } else {
            Err(log.lines().last().unwrap_or("").to_string())
        }
    });
    assert!(
        !lab.has_exited(&a3.name),
        "a Node without a PodCIDR is waited for, not a crash"
    );

    agent_established(&a1, "10.0.0.12");
    agent_established(&a2, "10.0.0.11");
    kernel_route(&lab, "n1", "10.244.2.0/24", Some("10.0.0.12"));
    kernel_route(&lab, "n2", "10.244.1.0/24", Some("10.0.0.11"));

    // The PodCIDR is assigned: n3 starts, everyone peers with everyone.
    api.apply_node(kube_server::node("n3", "10.0.0.13", "10.244.3.0/24"));
    a3.wait_ready(&mut lab);
    for (a, others) in [
        (&a1, ["10.0.0.12", "10.0.0.13"]),
        (&a2, ["10.0.0.11", "10.0.0.13"]),
        (&a3, ["10.0.0.11", "10.0.0.12"]),
    ] {
        for o in others {
            agent_established(a, o);
        }
    }
    kernel_route(&lab, "n1", "10.244.3.0/24", Some("10.0.0.13"));
    kernel_route(&lab, "n2", "10.244.3.0/24", Some("10.0.0.13"));
    kernel_route(&lab, "n3", "10.244.1.0/24", Some("10.0.0.11"));
    kernel_route(&lab, "n3", "10.244.2.0/24", Some("10.0.0.12"));
    assert_eq!(a1.get("/status/node").map(|b| b.contains("65011")), Ok(true));

    // Every node's sessions at one glance, through the API server.
    for (i, n) in ["n1", "n2", "n3"].iter().enumerate() {
        let labels = json!({"app.kubernetes.io/name": "novanet", "app.kubernetes.io/component": "agent"});
        api.apply_pod(
            "nova-system",
            kube_server::pod(&format!("novanet-{n}"), n, &format!("10.0.0.{}", 11 + i), labels),
        );
    }
    // Run from a node: the API server's address exists only on the lab's LAN.
    let ctl = ctl_binary().display().to_string();
    let out = lab
        .cmd("n1", &ctl)
        .args(["routing", "peers", "--all-nodes", "--status-port", "9102", "-o", "json"])
        .env("KUBECONFIG", &admin)
        .output()
        .expect("novanetctl");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let all: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let nodes = all.as_array().unwrap();
    assert_eq!(
        nodes.iter().map(|n| n["node"].as_str().unwrap()).collect::<Vec<_>>(),
        ["n1", "n2", "n3"]
    );
    for n in nodes {
        let peers = n["peers"].as_array().unwrap();
        assert_eq!(peers.len(), 2, "{n}");
        assert!(peers.iter().all(|p| p["state"] == "Established"), "{n}");
    }
    let table = lab
        .cmd("n1", &ctl)
        .args(["routing", "peers", "--all-nodes", "--status-port", "9102"])
        .env("KUBECONFIG", &admin)
        .output()
        .expect("novanetctl");
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(table.starts_with("NODE") && table.lines().count() == 7, "{table}");

    // History is lost (410 Gone) while n3's Node goes without a watch
    // event reaching the agents: their traffic from the API server is
    // dropped, n3 is deleted, etcd compacts its history and the agents'
    // connections are cut. They resume their watches from a compacted
    // version, get 410, relist: n3 leaves their mesh and kernels, and the
    // n1-n2 session is not touched.
    let up_since = a1.peer("10.0.0.12")["established_at"].clone();
    let lists = api.requests("LIST", "nodes");
    for n in ["n1", "n2", "n3"] {
        lab.drop_from(n, "10.0.0.100");
    }
    api.delete_node("n3");
    api.compact();
    for n in ["n1", "n2", "n3"] {
        lab.exec(n, "ss", &["-K", "dst", "10.0.0.100", "dport", "=", ":6443"]);
        lab.undrop(n);
    }
    wait_peers(&a1, &["10.0.0.12"]);
    wait_peers(&a2, &["10.0.0.11"]);
    kernel_route(&lab, "n1", "10.244.3.0/24", None);
    kernel_route(&lab, "n2", "10.244.3.0/24", None);
    let relisted = api.requests("LIST", "nodes");
    assert!(
        relisted >= lists + 2,
        "every agent relisted after 410 ({lists} -> {relisted})"
    );
    assert!(
        a1.log(&lab).contains("410") || a1.log(&lab).contains("too old"),
        "the agent saw its watch expire"
    );
    assert_eq!(a1.peer_state("10.0.0.12"), "Established");
    assert_eq!(
        a1.peer("10.0.0.12")["established_at"],
        up_since,
        "the relist kept the session"
    );

    // n3 comes back on another address, its AS kept by the annotation:
    // the peer moves.
    lab.exec("n3", "ip", &["addr", "add", "10.0.0.23/24", "dev", "eth0", "nodad"]);
    let mut moved = kube_server::node("n3", "10.0.0.23", "10.244.3.0/24");
    moved["metadata"]["annotations"] = json!({"novanet.io/asn": "65013"});
    api.apply_node(moved);
    agent_established(&a1, "10.0.0.23");
    agent_established(&a2, "10.0.0.23");
    assert_eq!(a1.peer("10.0.0.23")["remote_as"], 65013);
    wait_peers(&a1, &["10.0.0.12", "10.0.0.23"]);
    kernel_route(&lab, "n1", "10.244.3.0/24", Some("10.0.0.23"));

    // n2 opts out of the mesh: nobody peers with it and it peers with
    // nobody; its PodCIDR leaves the others' kernels.
    let mut out = kube_server::node("n2", "10.0.0.12", "10.244.2.0/24");
    out["metadata"]["labels"]["novanet.io/bgp-mesh"] = json!("false");
    api.apply_node(out);
    wait_peers(&a1, &["10.0.0.23"]);
    wait_peers(&a2, &[]);
    kernel_route(&lab, "n1", "10.244.2.0/24", None);
    kernel_route(&lab, "n3", "10.244.2.0/24", None);
    kernel_route(&lab, "n2", "10.244.1.0/24", None);

    // A deleted Node leaves the mesh.
    api.delete_node("n3");
    wait_peers(&a1, &[]);
    kernel_route(&lab, "n1", "10.244.3.0/24", None);

    // A Node in another subnet with n1's last octet collides with n1's AS
    // under the default asn_mode: reported as an Event on n1's Node.
    api.apply_node(kube_server::node("n4", "10.0.9.11", "10.244.4.0/24"));
    api.wait_for_event("n1", "ASNCollision", "65011");

    // Sessions going up and down were reported on each agent's own Node.
    api.wait_for_event("n1", "BGPSessionUp", "10.0.0.12");
    api.wait_for_event("n1", "BGPSessionDown", "10.0.0.13");
    api.wait_for_event("n3", "BGPSessionUp", "10.0.0.11");
}

#[test]
fn an_agent_restarted_while_the_api_server_is_away_routes_from_the_cluster_as_last_seen() {
    let mut lab = Lab::new("kaway");
    let (api, kubeconfig) = kube_server::on_switch(&mut lab, &["n1", "n2"], Options::default(), &[]);
    api.apply_node(kube_server::node("n1", "10.0.0.11", "10.244.1.0/24"));
    api.apply_node(kube_server::node("n2", "10.0.0.12", "10.244.2.0/24"));
    let env = [("KUBECONFIG", kubeconfig.to_str().unwrap())];
    let a1 = Agent::start_with_env(&mut lab, "n1", &mesh_config("n1"), &env);
    let a2 = Agent::start_with_env(&mut lab, "n2", &mesh_config("n2"), &env);
    agent_established(&a1, "10.0.0.12");
    agent_established(&a2, "10.0.0.11");
    kernel_route(&lab, "n2", "10.244.1.0/24", Some("10.0.0.11"));

    // n1's agent dies; when it comes back the API server is away: its
    // kubeconfig names an address where nothing answers yet, and the
    // server is stopped.
    lab.signal(&a1.name, libc::SIGKILL);
    lab.wait_exit(&a1.name, SETTLE);
    let away = lab.dir().join("kubeconfig-away");
    std::fs::write(
        &away,
        std::fs::read_to_string(&kubeconfig)
            .unwrap()
            .replace("10.0.0.100:6443", "10.0.0.100:6444"),
    )
    .unwrap();
    api.stop();
    let a1 = Agent::start_with_env(
        &mut lab,
        "n1",
        &mesh_config("n1"),
        &[("KUBECONFIG", away.to_str().unwrap())],
    );
    // Routing from the Nodes as last seen: its address and PodCIDR, its
    // session with n2, routes both ways.
    agent_established(&a1, "10.0.0.12");
    kernel_route(&lab, "n1", "10.244.2.0/24", Some("10.0.0.12"));
    kernel_route(&lab, "n2", "10.244.1.0/24", Some("10.0.0.11"));
    assert!(a1
        .log(&lab)
        .contains("routing starts from this node's Node as last seen"));

    // The API server answers again, with a node n3 that joined meanwhile:
    // n1 catches up.
    api.restart_on("10.0.0.100:6444");
    api.apply_node(kube_server::node("n3", "10.0.0.13", "10.244.3.0/24"));
    wait_peers(&a1, &["10.0.0.12", "10.0.0.13"]);
    assert_eq!(a1.peer("10.0.0.12")["state"], "Established");
}

/// RBAC that lacks a verb: with `watch` on Nodes taken from the chart's
/// ClusterRole, the agents still start and peer from what they can list,
/// say in their log exactly what is refused and show it as a condition on
/// their node's state, and do not exit; once the verb is given back,
/// changes reach them through the watch again and the condition goes.
#[test]
fn a_cluster_role_without_watch_is_reported_not_a_crash_loop() {
    let mut lab = Lab::new("krbac");
    let (api, kubeconfig) = kube_server::on_switch(&mut lab, &["n1", "n2"], Options::default(), &[]);
    let crds = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/helm/novanet/crds");
    api.kubectl(&["apply", "-f", crds.to_str().unwrap()]);
    api.kubectl(&["wait", "--for=condition=Established", "--timeout=60s", "crd", "--all"]);
    api.apply_node(kube_server::node("n1", "10.0.0.11", "10.244.1.0/24"));
    api.apply_node(kube_server::node("n2", "10.0.0.12", "10.244.2.0/24"));
    let rules = api.kubectl(&["get", "clusterrole", "novanet", "-o", "json"]);
    let mut role: Value = serde_json::from_str(&rules).unwrap();
    assert_eq!(role["rules"][0]["resources"], json!(["nodes"]), "{role}");
    role["rules"][0]["verbs"] = json!(["get", "list"]);
    let patch = json!({"rules": role["rules"]}).to_string();
    api.kubectl(&["patch", "clusterrole", "novanet", "--type=merge", "-p", &patch]);

    let env = [("KUBECONFIG", kubeconfig.to_str().unwrap())];
    let a1 = Agent::start_with_env(&mut lab, "n1", &mesh_config("n1"), &env);
    let a2 = Agent::start_with_env(&mut lab, "n2", &mesh_config("n2"), &env);
    agent_established(&a1, "10.0.0.12");
    agent_established(&a2, "10.0.0.11");
    const REFUSED: &str = "refuses this agent's ServiceAccount access to Nodes";
    wait_until("n1 to name what RBAC refuses", SETTLE, || {
        let log = a1.log(&lab);
        // One line: what is refused, in the server's words.
        if log
            .lines()
            .any(|l| l.contains(REFUSED) && l.contains("cannot watch resource") && l.contains("novanet"))
        {
            Ok(())
        } else {
            Err(log.lines().rev().take(5).collect::<Vec<_>>().join("\n"))
        }
    });
    let refused_condition = |api: &KubeServer| -> Option<String> {
        api.node_condition("n1", "WatchRefused")
            .and_then(|c| c["message"].as_str().map(String::from))
    };
    wait_until("the refusal on n1's state", SETTLE, || match refused_condition(&api) {
        Some(m) if m.contains("Nodes") && m.contains("cannot watch resource") => Ok(()),
        other => Err(format!("{other:?}")),
    });
    assert!(
        !lab.has_exited(&a1.name) && !lab.has_exited(&a2.name),
        "an agent exited"
    );

    // The verb given back: a new node reaches both through the watch.
    role["rules"][0]["verbs"] = json!(["get", "list", "watch"]);
    let patch = json!({"rules": role["rules"]}).to_string();
    api.kubectl(&["patch", "clusterrole", "novanet", "--type=merge", "-p", &patch]);
    lab.add_ns("n3");
    lab.link_to_bridge("n3", "eth0", &["10.0.0.13/24"], "sw", "br0", "p2");
    api.apply_node(kube_server::node("n3", "10.0.0.13", "10.244.3.0/24"));
    let a3 = Agent::start_with_env(&mut lab, "n3", &mesh_config("n3"), &env);
    agent_established(&a1, "10.0.0.13");
    agent_established(&a2, "10.0.0.13");
    agent_established(&a3, "10.0.0.11");
    let log = a1.log(&lab);
    assert!(log.contains("allows the watch of Nodes again"), "{log}");
    // n1's own Node changes: the watch of it delivers again too.
    api.kubectl(&["label", "node", "n1", "rack=a"]);
    wait_until("the refusal gone from n1's state", SETTLE, || {
        match refused_condition(&api) {
            None => Ok(()),
            Some(m) => Err(m),
        }
    });
    assert_eq!(
        log.matches(REFUSED).count(),
        1,
        "one refusal is said once, not at every retry"
    );
}
