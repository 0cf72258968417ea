//! What a node advertises and who it is, from the routing resources,
//! against a real kube-apiserver with the chart's CRDs: two meshed nodes
//! and an FRR ToR that takes any node of the subnet (a listen range,
//! `remote-as external`), told the profile's graceful-restart time; the
//! node's state shows the mesh peer's BFD session. A NovaBGPAdvertisement selected by the cluster
//! config puts its communities (standard and large) and AS-path prepend on
//! the PodCIDRs the ToR receives, and `podCIDRs: false` withholds them
//! from the ToR while the mesh keeps them; a NovaBGPNodeOverride gives a
//! node its router ID, local AS (the other node's mesh session follows it)
//! and source address, and a second node given the same AS shows an
//! ASCollision condition on both nodes' states until it is taken away. An
//! agent restarted while the API server is away opens its sessions with
//! the override as last seen; the override deleted, the node is itself
//! again.

use novanet_conformance::checks::{agent_established, SETTLE};
use novanet_conformance::kube_server::{self, KubeServer, Options};
use novanet_conformance::{wait_until, Agent, Frr, Lab};
use serde_json::{json, Value};
use std::path::Path;

const TOR: &str = "frr defaults datacenter
hostname tor
!
router bgp 65001
 bgp router-id 10.0.0.13
 no bgp ebgp-requires-policy
 neighbor nodes peer-group
 neighbor nodes remote-as external
 bgp listen range 10.0.0.0/24 peer-group nodes
!
";

const CONFIG: &str = "apiVersion: bgp.novanet.io/v1alpha1
kind: NovaBGPClusterConfig
metadata: {name: all}
spec:
  advertisementSelector: {matchLabels: {to: tor}}
  peers:
    - {name: tor, address: 10.0.0.13, remoteAS: 65001, profileRef: tor}
---
apiVersion: bgp.novanet.io/v1alpha1
kind: NovaBGPPeerProfile
metadata: {name: tor}
spec: {gracefulRestartSeconds: 45}
";

fn node_config(name: &str) -> Value {
    json!({
        "node_name": name,
        "routing": {"bfd": {"enabled": true}, "node_state_heartbeat": 1,
                    "node_mesh": {"enabled": true, "source": "kubernetes"}}
    })
}

fn apply(api: &KubeServer, dir: &Path, name: &str, yaml: &str) {
    let file = dir.join(format!("{name}.yaml"));
    std::fs::write(&file, yaml).unwrap();
    api.kubectl(&["apply", "-f", file.to_str().unwrap()]);
}

fn advertisement(spec: &str) -> String {
    format!(
        "apiVersion: bgp.novanet.io/v1alpha1\nkind: NovaBGPAdvertisement\nmetadata: {{name: tor-attrs, labels: {{to: tor}}}}\nspec: {spec}\n"
    )
}

fn node_override(node: &str, spec: &str) -> String {
    format!(
        "apiVersion: bgp.novanet.io/v1alpha1\nkind: NovaBGPNodeOverride\nmetadata: {{name: {node}}}\nspec: {spec}\n"
    )
}

/// The ToR's best path to `prefix`: (AS path, communities, large
/// communities), or why there is none.
fn tor_path(tor: &Frr, prefix: &str) -> Result<(String, String, String), String> {
    let v = tor.json(&format!("show bgp ipv4 unicast {prefix} json"));
    let paths = v["paths"].as_array().cloned().unwrap_or_default();
    let best = paths
        .iter()
        .find(|p| p["bestpath"]["overall"] == true)
        .ok_or_else(|| format!("no best path to {prefix}: {v}"))?;
    let s = |v: &Value| v["string"].as_str().unwrap_or_default().to_string();
    Ok((s(&best["aspath"]), s(&best["community"]), s(&best["largeCommunity"])))
}

fn wait_condition(api: &KubeServer, node: &str, reason: &str, present: bool) {
    wait_until(
        &format!("{reason} {} on {node}'s state", if present { "shown" } else { "gone" }),
        SETTLE,
        || {
            let c = api.node_condition(node, reason);
            (c.is_some() == present).then_some(()).ok_or_else(|| format!("{c:?}"))
        },
    );
}

/// The ToR's view of a neighbor: (state, remote AS, remote router ID).
fn tor_neighbor(tor: &Frr, addr: &str) -> (String, u64, String) {
    let n = tor.neighbor(addr);
    (
        n["bgpState"].as_str().unwrap_or_default().to_string(),
        n["remoteAs"].as_u64().unwrap_or(0),
        n["remoteRouterId"].as_str().unwrap_or_default().to_string(),
    )
}

fn wait_tor_neighbor(tor: &Frr, addr: &str, want: (&str, u64, &str)) {
    wait_until(&format!("the ToR's neighbor {addr} to be {want:?}"), SETTLE, || {
        let got = tor_neighbor(tor, addr);
        (got.0 == want.0 && got.1 == want.1 && got.2 == want.2)
            .then_some(())
            .ok_or_else(|| format!("{got:?}"))
    });
}

#[test]
fn advertisements_and_overrides_shape_what_a_node_says_and_who_it_is() {
    let mut lab = Lab::new("identity");
    let (api, kubeconfig) = kube_server::on_switch(&mut lab, &["n1", "n2", "tor"], Options::default(), &[]);
    lab.exec("n1", "ip", &["addr", "add", "10.0.0.111/24", "dev", "eth0"]);
    for (node, cidr) in [("n1", "10.244.11.0/24"), ("n2", "10.244.12.0/24")] {
        lab.exec(
            node,
            "ip",
            &["addr", "add", &cidr.replace(".0/24", ".1/32"), "dev", "lo"],
        );
    }
    let tor = Frr::start(&mut lab, "tor", TOR);
    let crds = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/helm/novanet/crds");
    api.kubectl(&["apply", "-f", crds.to_str().unwrap()]);
    api.kubectl(&["wait", "--for=condition=Established", "--timeout=60s", "crd", "--all"]);
    api.apply_node(kube_server::node("n1", "10.0.0.11", "10.244.11.0/24"));
    api.apply_node(kube_server::node("n2", "10.0.0.12", "10.244.12.0/24"));
    api.apply_node(kube_server::node("tor", "10.0.0.13", "10.244.13.0/24"));
    // The ToR is no node of the mesh.
    api.kubectl(&["label", "node", "tor", "novanet.io/bgp-mesh=false"]);
    apply(&api, lab.dir(), "config", CONFIG);

    let env = [("KUBECONFIG", kubeconfig.to_str().unwrap())];
    let n1 = Agent::start_with_env(&mut lab, "n1", &node_config("n1"), &env);
    let n2 = Agent::start_with_env(&mut lab, "n2", &node_config("n2"), &env);
    for (agent, other) in [(&n1, "10.0.0.12"), (&n2, "10.0.0.11")] {
        agent_established(agent, "10.0.0.13");
        agent_established(agent, other);
    }
    // The mesh runs BFD (the profile of the ToR none): the node's state
    // shows the mesh peer's BFD session.
    wait_until("n1's state to show the mesh peer's BFD session up", SETTLE, || {
        let peers = api.node_state("n1")["status"]["peers"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let bfd = |addr: &str| peers.iter().find(|p| p["address"] == addr).map(|p| p["bfd"].clone());
        match (bfd("10.0.0.12"), bfd("10.0.0.13")) {
            (Some(Value::String(s)), Some(Value::Null)) if s == "Up" => Ok(()),
            other => Err(format!("{other:?}")),
        }
    });
    // The profile's graceful-restart time is what the ToR was told.
    let gr = tor.neighbor("10.0.0.11")["gracefulRestartInfo"].clone();
    assert_eq!(gr["timers"]["receivedRestartTimer"], 45, "{gr}");
    // Selected advertisements that do not exist: said, the PodCIDRs go
    // out plainly.
    wait_condition(&api, "n1", "AdvertisementMissing", true);
    wait_until("n1's PodCIDR at the ToR, plain", SETTLE, || {
        let p = tor_path(&tor, "10.244.11.0/24")?;
        (p == ("65011".into(), String::new(), String::new()))
            .then_some(())
            .ok_or_else(|| format!("{p:?}"))
    });

    // The advertisement: communities and a prepend of 2, to the ToR only.
    apply(
        &api,
        lab.dir(),
        "adv",
        &advertisement("{communities: ['64512:100', '4200000000:1:2'], asPathPrepend: 2}"),
    );
    for (prefix, asn) in [("10.244.11.0/24", "65011"), ("10.244.12.0/24", "65012")] {
        wait_until(
            &format!("{prefix} at the ToR with the advertisement's attributes"),
            SETTLE,
            || {
                let p = tor_path(&tor, prefix)?;
                let want = (
                    format!("{asn} {asn} {asn}"),
                    "64512:100".into(),
                    "4200000000:1:2".into(),
                );
                (p == want).then_some(()).ok_or_else(|| format!("{p:?}"))
            },
        );
    }
    wait_condition(&api, "n1", "AdvertisementMissing", false);
    // The mesh is no peer of the config: n2 holds n1's PodCIDR as n1 sent it.
    wait_until("n1's PodCIDR at n2 from the mesh, unprepended", SETTLE, || {
        let routes = n2.route("10.244.11.0/24");
        routes
            .iter()
            .find(|r| r["next_hop"] == "10.0.0.11" && r["as_path"] == "65011")
            .map(|_| ())
            .ok_or_else(|| format!("{routes:?}"))
    });

    // podCIDRs: false withholds them from the ToR; the mesh keeps them.
    apply(&api, lab.dir(), "adv", &advertisement("{podCIDRs: false}"));
    wait_until("the PodCIDRs withdrawn from the ToR", SETTLE, || {
        match (tor_path(&tor, "10.244.11.0/24"), tor_path(&tor, "10.244.12.0/24")) {
            (Err(_), Err(_)) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    });
    assert!(
        !n2.route("10.244.11.0/24").is_empty(),
        "the mesh still carries n1's PodCIDR"
    );
    apply(&api, lab.dir(), "adv", &advertisement("{podCIDRs: true}"));
    wait_until("the PodCIDRs back at the ToR", SETTLE, || {
        tor_path(&tor, "10.244.11.0/24").map(|_| ())
    });

    // n1's override: its router ID and local AS at the ToR and in n2's
    // mesh, its ToR session from its other address.
    apply(
        &api,
        lab.dir(),
        "override-n1",
        &node_override(
            "n1",
            "{routerID: 192.0.2.11, localAS: 4200000011, sourceAddress: 10.0.0.111}",
        ),
    );
    wait_tor_neighbor(&tor, "10.0.0.111", ("Established", 4200000011, "192.0.2.11"));
    wait_until("n2's mesh session with n1 in n1's new AS", SETTLE, || {
        let p = n2.peer("10.0.0.11");
        (p["state"] == "Established" && p["remote_as"] == 4200000011u64)
            .then_some(())
            .ok_or_else(|| p.to_string())
    });
    wait_until("n1's PodCIDR at the ToR from its new AS", SETTLE, || {
        let p = tor_path(&tor, "10.244.11.0/24")?;
        p.0.starts_with("4200000011")
            .then_some(())
            .ok_or_else(|| format!("{p:?}"))
    });

    // n2 given n1's AS: both nodes show the collision; taken away, it goes.
    apply(
        &api,
        lab.dir(),
        "override-n2",
        &node_override("n2", "{localAS: 4200000011}"),
    );
    wait_condition(&api, "n1", "ASCollision", true);
    wait_condition(&api, "n2", "ASCollision", true);
    api.kubectl(&["delete", "novabgpnodeoverride", "n2"]);
    wait_condition(&api, "n1", "ASCollision", false);
    wait_condition(&api, "n2", "ASCollision", false);
    agent_established(&n2, "10.0.0.11");

    // n1 restarted while the API server is away: its sessions open with
    // the override as last seen.
    api.stop();
    lab.signal(&n1.name, libc::SIGKILL);
    lab.wait_exit(&n1.name, SETTLE);
    drop(n1);
    let n1 = Agent::start_with_env(&mut lab, "n1", &node_config("n1"), &env);
    agent_established(&n1, "10.0.0.13");
    wait_tor_neighbor(&tor, "10.0.0.111", ("Established", 4200000011, "192.0.2.11"));
    agent_established(&n2, "10.0.0.11");
    assert_eq!(
        n1.peer("10.0.0.12")["local_as"],
        4200000011u64,
        "{}",
        n1.peer("10.0.0.12")
    );
    api.restart_on("10.0.0.100:6443");

    // The override deleted: n1 is itself again, everywhere.
    api.kubectl(&["delete", "novabgpnodeoverride", "n1"]);
    wait_tor_neighbor(&tor, "10.0.0.11", ("Established", 65011, "10.0.0.11"));
    wait_until("n2's mesh session with n1 back in AS 65011", SETTLE, || {
        let p = n2.peer("10.0.0.11");
        (p["state"] == "Established" && p["remote_as"] == 65011)
            .then_some(())
            .ok_or_else(|| p.to_string())
    });
}
