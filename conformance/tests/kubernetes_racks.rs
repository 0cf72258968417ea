//! Per-rack ToR peers from the routing resources, against a real
//! kube-apiserver with the chart's CRDs and RBAC: two racks of two nodes,
//! each rack its own pair of FRR ToRs (zebra and bgpd) on its own subnet,
//! the four ToRs joined by a spine LAN, the API server on a management LAN.
//! One NovaBGPClusterConfig per rack selects its nodes by
//! `topology.kubernetes.io/zone`; every node peers with its rack's ToRs
//! only and pod addresses answer across racks. A ToR added to rack A's
//! config reaches both rack-A nodes without resetting any other session
//! (FRR's connection counters prove it) and goes when removed; a password
//! Secret that is missing keeps the session down and is said, and the
//! session comes up once the Secret is there; a node relabelled into the
//! other rack moves to that rack's ToRs; an agent restarted while the API
//! server is away brings its ToR sessions back from the peers as last
//! seen. Every node's NovaBGPNodeState
//! says what `novanetctl routing peers` says on the node, and
//! `novanetctl routing peers --all-nodes` reads them, a node whose agent is
//! stopped shown as stale, and fresh again once it is back.

use novanet_conformance::checks::{agent_established, SETTLE};
use novanet_conformance::kube_server::{self, KubeServer, Options};
use novanet_conformance::{wait_until, Agent, Frr, Lab};
use serde_json::{json, Value};
use std::path::Path;
use std::time::{Duration, Instant};

/// (node, rack, rack address, management address, PodCIDR)
const NODES: [(&str, &str, &str, &str, &str); 4] = [
    ("na1", "a", "10.1.0.11", "10.100.0.11", "10.244.11.0/24"),
    ("na2", "a", "10.1.0.12", "10.100.0.12", "10.244.12.0/24"),
    ("nb1", "b", "10.2.0.21", "10.100.0.21", "10.244.21.0/24"),
    ("nb2", "b", "10.2.0.22", "10.100.0.22", "10.244.22.0/24"),
];

/// (ToR, rack, rack address, spine address, AS)
const TORS: [(&str, &str, &str, &str, u32); 4] = [
    ("ta1", "a", "10.1.0.1", "10.9.0.1", 65001),
    ("ta2", "a", "10.1.0.2", "10.9.0.2", 65002),
    ("tb1", "b", "10.2.0.1", "10.9.0.3", 65003),
    ("tb2", "b", "10.2.0.2", "10.9.0.4", 65004),
];

fn node_as(addr: &str) -> u32 {
    65000 + addr.rsplit('.').next().unwrap().parse::<u32>().unwrap()
}

/// A ToR: its rack's nodes, the other ToRs over the spine.
fn tor_config(name: &str, rack: &str, addr: &str, asn: u32) -> String {
    let mut c = format!(
        "frr defaults datacenter\nhostname {name}\n!\nrouter bgp {asn}\n bgp router-id {addr}\n no bgp ebgp-requires-policy\n"
    );
    for (_, r, a, _, _) in NODES.iter().filter(|n| n.1 == rack) {
        let _ = r;
        c += &format!(
            " neighbor {a} remote-as {}\n neighbor {a} timers connect 1\n",
            node_as(a)
        );
    }
    for (n, _, _, spine, other_as) in TORS.iter().filter(|t| t.0 != name) {
        let _ = n;
        c += &format!(" neighbor {spine} remote-as {other_as}\n");
    }
    c + "!\n"
}

fn node_config(name: &str) -> Value {
    json!({
        "node_name": name,
        // The node state written every second even without change, so a
        // stopped agent's node is stale within seconds.
        "routing": {"bfd": {"enabled": false}, "node_state_heartbeat": 1,
                    "node_mesh": {"enabled": false, "source": "kubernetes"}}
    })
}

/// `novanetctl routing peers --all-nodes` run on a node as the cluster
/// admin, JSON.
fn all_nodes(lab: &Lab, api: &KubeServer, extra: &[&str]) -> Value {
    let ctl = novanet_conformance::agent::ctl_binary().display().to_string();
    let out = lab
        .cmd("na1", &ctl)
        .args(["routing", "peers", "--all-nodes", "-o", "json"])
        .args(extra)
        .env("KUBECONFIG", api.admin_kubeconfig())
        .output()
        .expect("novanetctl");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("JSON")
}

fn peer_addresses(agent: &Agent) -> Vec<String> {
    let mut v: Vec<String> = agent
        .peers()
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["neighbor_address"].as_str().map(String::from))
        .collect();
    v.sort();
    v
}

fn wait_peers(agent: &Agent, want: &[&str], within: Duration) {
    wait_until(&format!("{} to peer with exactly {want:?}", agent.name), within, || {
        let got = peer_addresses(agent);
        if got == want {
            Ok(())
        } else {
            Err(format!("{got:?}"))
        }
    });
}

/// Established connections FRR counted with each neighbor.
fn connections(frr: &Frr) -> Vec<(String, u64)> {
    let v = frr.json("show bgp neighbors json");
    let mut out: Vec<(String, u64)> = v
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, n)| (k.clone(), n["connectionsEstablished"].as_u64().unwrap_or(0)))
        .collect();
    out.sort();
    out
}

fn apply(api: &KubeServer, dir: &Path, yaml: &str) {
    let file = dir.join(format!(
        "apply-{}.yaml",
        Instant::now().elapsed().as_nanos() + yaml.len() as u128
    ));
    std::fs::write(&file, yaml).unwrap();
    api.kubectl(&["apply", "-f", file.to_str().unwrap()]);
}

fn rack_config(rack: &str, tors: &[(&str, &str, u32, Option<&str>)]) -> String {
    let mut peers = String::new();
    for (name, addr, asn, profile) in tors {
        peers += &format!("    - {{name: {name}, address: {addr}, remoteAS: {asn}");
        if let Some(p) = profile {
            peers += &format!(", profileRef: {p}");
        }
        peers += "}\n";
    }
    format!(
        "apiVersion: bgp.novanet.io/v1alpha1\nkind: NovaBGPClusterConfig\nmetadata: {{name: rack-{rack}}}\nspec:\n  nodeSelector:\n    matchLabels: {{topology.kubernetes.io/zone: rack-{rack}}}\n  peers:\n{peers}"
    )
}

/// (address, remote AS, state, role, received, advertised) of each peer,
/// sorted: from a NovaBGPNodeState's status and from `novanetctl routing
/// peers -o json` on the node.
type Row = (String, u64, String, String, u64, u64);

fn state_rows(state: &Value) -> Vec<Row> {
    let sum = |v: &Value| {
        v.as_object()
            .into_iter()
            .flatten()
            .filter_map(|(_, n)| n.as_u64())
            .sum::<u64>()
    };
    let mut rows: Vec<Row> = state["status"]["peers"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            (
                p["address"].as_str().unwrap_or_default().to_string(),
                p["remoteAS"].as_u64().unwrap_or(0),
                p["state"].as_str().unwrap_or_default().to_string(),
                p["role"].as_str().unwrap_or_default().to_lowercase(),
                sum(&p["received"]),
                sum(&p["advertised"]),
            )
        })
        .collect();
    rows.sort();
    rows
}

fn ctl_rows(agent: &Agent) -> Vec<Row> {
    let v: Value = serde_json::from_str(&agent.ctl(&["routing", "peers", "-o", "json"])).unwrap_or(Value::Null);
    let mut rows: Vec<Row> = v
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            (
                p["neighbor_address"].as_str().unwrap_or_default().to_string(),
                p["remote_as"].as_u64().unwrap_or(0),
                p["state"].as_str().unwrap_or_default().to_string(),
                p["role"].as_str().unwrap_or_default().to_lowercase(),
                p["prefixes_received"].as_u64().unwrap_or(0),
                p["prefixes_sent"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    rows.sort();
    rows
}

#[test]
fn each_rack_peers_with_its_own_tors_from_the_resources() {
    let mut lab = Lab::new("racks");
    for sw in ["swa", "swb", "spine", "mgmt"] {
        lab.add_ns(sw);
    }
    lab.add_bridge("swa", "br0", &[]);
    lab.add_bridge("swb", "br0", &[]);
    lab.add_bridge("spine", "br0", &[]);
    lab.add_bridge("mgmt", "br0", &["10.100.0.100/24"]);
    for (i, (tor, rack, addr, spine, _)) in TORS.iter().enumerate() {
        lab.add_ns(tor);
        lab.link_to_bridge(
            tor,
            "eth0",
            &[&format!("{addr}/24")],
            &format!("sw{rack}"),
            "br0",
            &format!("t{i}"),
        );
        lab.link_to_bridge(tor, "eth1", &[&format!("{spine}/24")], "spine", "br0", &format!("s{i}"));
        lab.forwarding(tor);
    }
    for (i, (node, rack, addr, mgmt, cidr)) in NODES.iter().enumerate() {
        lab.add_ns(node);
        lab.link_to_bridge(
            node,
            "eth0",
            &[&format!("{addr}/24")],
            &format!("sw{rack}"),
            "br0",
            &format!("n{i}"),
        );
        lab.link_to_bridge(node, "eth1", &[&format!("{mgmt}/24")], "mgmt", "br0", &format!("m{i}"));
        // The node's pods answer at the first address of its PodCIDR.
        let pod = cidr.replace(".0/24", ".1/32");
        lab.exec(node, "ip", &["addr", "add", &pod, "dev", "lo"]);
    }
    let tors: Vec<Frr> = TORS
        .iter()
        .map(|(name, rack, addr, _, asn)| {
            Frr::start_daemons(
                &mut lab,
                name,
                &[("zebra", ""), ("bgpd", &tor_config(name, rack, addr, *asn))],
            )
        })
        .collect();

    let api = KubeServer::start(&mut lab, "mgmt", "10.100.0.100:6443", Options::default());
    let crds = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/helm/novanet/crds");
    api.kubectl(&["apply", "-f", crds.to_str().unwrap()]);
    api.kubectl(&["wait", "--for=condition=Established", "--timeout=60s", "crd", "--all"]);
    let kubeconfig = api.agent_kubeconfig(&[]);
    for (node, rack, addr, _, cidr) in NODES {
        let mut n = kube_server::node(node, addr, cidr);
        n["metadata"]["labels"]["topology.kubernetes.io/zone"] = json!(format!("rack-{rack}"));
        api.apply_node(n);
    }
    apply(
        &api,
        lab.dir(),
        &format!(
            "{}---\n{}",
            rack_config(
                "a",
                &[("ta1", "10.1.0.1", 65001, None), ("ta2", "10.1.0.2", 65002, None)]
            ),
            rack_config(
                "b",
                &[("tb1", "10.2.0.1", 65003, None), ("tb2", "10.2.0.2", 65004, None)]
            )
        ),
    );

    let env = [("KUBECONFIG", kubeconfig.to_str().unwrap())];
    let agents: Vec<Agent> = NODES
        .iter()
        .map(|(node, ..)| Agent::start_with_env(&mut lab, node, &node_config(node), &env))
        .collect();
    for (agent, (_, rack, ..)) in agents.iter().zip(NODES) {
        let own: Vec<&str> = TORS.iter().filter(|t| t.1 == rack).map(|t| t.2).collect();
        wait_peers(agent, &own, SETTLE);
        for t in &own {
            agent_established(agent, t);
        }
    }
    // Pods answer across racks, through the ToRs and the spine.
    for (from, _, _, _, from_cidr) in NODES {
        for (_, _, _, _, to_cidr) in NODES.iter().filter(|n| n.0 != from) {
            let (src, dst) = (from_cidr.replace(".0/24", ".1"), to_cidr.replace(".0/24", ".1"));
            wait_until(&format!("{from}: {src} -> {dst}"), SETTLE, || {
                let ok = lab
                    .cmd(from, "ping")
                    .args(["-c1", "-W1", "-I", &src, &dst])
                    .output()
                    .map(|o| o.status.success())
                    .unwrap_or(false);
                ok.then_some(()).ok_or_else(String::new)
            });
        }
    }

    // Each node's NovaBGPNodeState says what `novanetctl routing peers`
    // says on the node, and kubectl shows peers up per node.
    for (agent, (node, ..)) in agents.iter().zip(NODES) {
        wait_until(&format!("{node}'s state object to match its agent"), SETTLE, || {
            let (state, local) = (state_rows(&api.node_state(node)), ctl_rows(agent));
            if state == local && state.len() == 2 && state.iter().all(|r| r.2 == "Established") {
                Ok(())
            } else {
                Err(format!("state {state:?} agent {local:?}"))
            }
        });
    }
    let table = api.kubectl(&["get", "novabgpnodestates"]);
    assert!(
        table.lines().skip(1).filter(|l| l.contains(" 2/2 ")).count() == 4,
        "{table}"
    );

    // A third ToR for rack A: both rack-A nodes dial it within 5 s of the
    // apply, and no other session is reset.
    lab.add_ns("ta3");
    lab.link_to_bridge("ta3", "eth0", &["10.1.0.3/24"], "swa", "br0", "t9");
    let ta3 = Frr::start(&mut lab, "ta3", &tor_config("ta3", "a", "10.1.0.3", 65005));
    let before: Vec<Vec<(String, u64)>> = tors.iter().map(connections).collect();
    let three = rack_config(
        "a",
        &[
            ("ta1", "10.1.0.1", 65001, None),
            ("ta2", "10.1.0.2", 65002, None),
            ("ta3", "10.1.0.3", 65005, None),
        ],
    );
    let applied = Instant::now();
    apply(&api, lab.dir(), &three);
    for agent in &agents[..2] {
        wait_peers(agent, &["10.1.0.1", "10.1.0.2", "10.1.0.3"], Duration::from_secs(5));
    }
    eprintln!(
        "third ToR configured on both rack-A nodes {:?} after the apply",
        applied.elapsed()
    );
    for agent in &agents[..2] {
        agent_established(agent, "10.1.0.3");
    }
    wait_peers(&agents[2], &["10.2.0.1", "10.2.0.2"], Duration::from_secs(1));
    let after: Vec<Vec<(String, u64)>> = tors.iter().map(connections).collect();
    assert_eq!(before, after, "no other session was reset");

    // Removed again: it goes from both nodes, the others stay.
    apply(
        &api,
        lab.dir(),
        &rack_config(
            "a",
            &[("ta1", "10.1.0.1", 65001, None), ("ta2", "10.1.0.2", 65002, None)],
        ),
    );
    for agent in &agents[..2] {
        wait_peers(agent, &["10.1.0.1", "10.1.0.2"], SETTLE);
    }
    assert_eq!(tors.iter().map(connections).collect::<Vec<_>>(), before);

    // With a password from a Secret that is not there yet: the session
    // stays down and the agent says which Secret; then the Secret comes.
    ta3.configure(&["router bgp 65005", "neighbor 10.1.0.11 password s3cret-md5"]);
    apply(
        &api,
        lab.dir(),
        "apiVersion: bgp.novanet.io/v1alpha1\nkind: NovaBGPPeerProfile\nmetadata: {name: secure}\nspec: {passwordSecretRef: {name: ta3-password}}\n",
    );
    apply(
        &api,
        lab.dir(),
        &rack_config(
            "a",
            &[
                ("ta1", "10.1.0.1", 65001, None),
                ("ta2", "10.1.0.2", 65002, None),
                ("ta3", "10.1.0.3", 65005, Some("secure")),
            ],
        ),
    );
    wait_until("the missing Secret said", SETTLE, || {
        let log = agents[0].log(&lab);
        log.lines()
            .find(|l| l.contains("SecretMissing") && l.contains("nova-system/ta3-password does not exist"))
            .map(|_| ())
            .ok_or_else(|| log.lines().rev().take(3).collect::<Vec<_>>().join("\n"))
    });
    assert!(agents[0].peer("10.1.0.3").is_null(), "no session without its password");
    wait_until("the missing Secret on na1's state", SETTLE, || {
        let state = api.node_state("na1");
        let conditions = state["status"]["conditions"].as_array().cloned().unwrap_or_default();
        conditions
            .iter()
            .find(|c| {
                c["type"] == "SecretMissing"
                    && c["status"] == "True"
                    && c["message"]
                        .as_str()
                        .is_some_and(|m| m.contains("nova-system/ta3-password"))
            })
            .map(|_| ())
            .ok_or_else(|| format!("{conditions:?}"))
    });
    api.kubectl(&[
        "create",
        "secret",
        "generic",
        "ta3-password",
        "-n",
        "nova-system",
        "--from-literal=password=s3cret-md5",
    ]);
    agent_established(&agents[0], "10.1.0.3");
    assert_eq!(ta3.neighbor_state("10.1.0.11"), "Established");
    wait_until("the condition cleared once the Secret is there", SETTLE, || {
        let state = api.node_state("na1");
        match state["status"]["conditions"].as_array() {
            Some(c) if c.is_empty() => Ok(()),
            None => Ok(()),
            Some(c) => Err(format!("{c:?}")),
        }
    });

    // The profile's timers changed: the sessions that use it start again
    // (na1's with ta3), and only those.
    let ta3_before = connections(&ta3);
    let others_before: Vec<Vec<(String, u64)>> = tors.iter().map(connections).collect();
    apply(
        &api,
        lab.dir(),
        "apiVersion: bgp.novanet.io/v1alpha1\nkind: NovaBGPPeerProfile\nmetadata: {name: secure}\nspec: {holdTimeSeconds: 30, keepaliveSeconds: 10, passwordSecretRef: {name: ta3-password}}\n",
    );
    let count = |c: &[(String, u64)], peer: &str| c.iter().find(|(a, _)| a == peer).map(|(_, n)| *n).unwrap_or(0);
    wait_until("na1's session with ta3 started again", SETTLE, || {
        let now = connections(&ta3);
        if count(&now, "10.1.0.11") > count(&ta3_before, "10.1.0.11")
            && ta3.neighbor_state("10.1.0.11") == "Established"
        {
            Ok(())
        } else {
            Err(format!("{now:?}"))
        }
    });
    assert_eq!(
        tors.iter().map(connections).collect::<Vec<_>>(),
        others_before,
        "a profile change touched only its own sessions"
    );

    // na1's agent restarted while the API server is away: its rack's ToRs,
    // the password-protected one too, come back from the peers as last
    // seen; the server back, nothing changes.
    api.stop();
    let mut agents = agents;
    let na1 = agents.remove(0);
    lab.signal(&na1.name, libc::SIGKILL);
    lab.wait_exit(&na1.name, SETTLE);
    let na1 = Agent::start_with_env(&mut lab, "na1", &node_config("na1"), &env);
    for t in ["10.1.0.1", "10.1.0.2", "10.1.0.3"] {
        agent_established(&na1, t);
    }
    assert!(
        na1.log(&lab).contains("ToRs from the routing resources as last seen"),
        "{}",
        na1.log(&lab)
    );
    api.restart_on("10.100.0.100:6443");
    agents.insert(0, na1);
    wait_until("na1's state written again", SETTLE, || {
        let rows = state_rows(&api.node_state("na1"));
        if rows.len() == 3 && rows.iter().all(|r| r.2 == "Established") {
            Ok(())
        } else {
            Err(format!("{rows:?}"))
        }
    });

    // nb2 relabelled into rack A: it leaves rack B's ToRs for rack A's.
    let (node, _, addr, _, cidr) = NODES[3];
    let mut moved = kube_server::node(node, addr, cidr);
    moved["metadata"]["labels"]["topology.kubernetes.io/zone"] = json!("rack-a");
    api.apply_node(moved);
    wait_peers(&agents[3], &["10.1.0.1", "10.1.0.2", "10.1.0.3"], SETTLE);
    wait_peers(&agents[2], &["10.2.0.1", "10.2.0.2"], Duration::from_secs(1));

    // Every node at one glance from the node states; nb1's agent stopped:
    // its node is still listed, as last written, and stale.
    let fresh = all_nodes(&lab, &api, &["--stale-after", "4"]);
    let nodes = fresh.as_array().unwrap();
    assert_eq!(
        nodes.iter().map(|n| n["node"].as_str().unwrap()).collect::<Vec<_>>(),
        ["na1", "na2", "nb1", "nb2"]
    );
    assert!(
        nodes.iter().all(|n| n["source"] == "node-state" && n["stale"] == false),
        "{fresh}"
    );
    let nb1 = agents.remove(2);
    lab.signal(&nb1.name, libc::SIGKILL);
    lab.wait_exit(&nb1.name, SETTLE);
    wait_until("nb1 stale in --all-nodes", SETTLE, || {
        let v = all_nodes(&lab, &api, &["--stale-after", "4"]);
        let nodes = v.as_array().cloned().unwrap_or_default();
        let nb1 = nodes.iter().find(|n| n["node"] == "nb1").cloned().unwrap_or_default();
        let others_fresh = nodes.iter().filter(|n| n["node"] != "nb1").all(|n| n["stale"] == false);
        if nb1["stale"] == true && nb1["peers"].as_array().is_some_and(|p| p.len() == 2) && others_fresh {
            Ok(())
        } else {
            Err(v.to_string())
        }
    });
    let ctl = novanet_conformance::agent::ctl_binary().display().to_string();
    let table = lab
        .cmd("na1", &ctl)
        .args(["routing", "peers", "--all-nodes", "--stale-after", "4"])
        .env("KUBECONFIG", api.admin_kubeconfig())
        .output()
        .expect("novanetctl");
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("nb1") && l.contains("(stale)") && l.contains("is its agent running")),
        "{table}"
    );
    let (node, ..) = NODES[2];
    let back = Agent::start_with_env(&mut lab, node, &node_config(node), &env);
    agent_established(&back, "10.2.0.1");
    wait_until("nb1 fresh again", SETTLE, || {
        let v = all_nodes(&lab, &api, &["--stale-after", "4"]);
        let nb1 = v.as_array().into_iter().flatten().find(|n| n["node"] == "nb1").cloned();
        match nb1 {
            Some(n) if n["stale"] == false => Ok(()),
            other => Err(format!("{other:?}")),
        }
    });
}
