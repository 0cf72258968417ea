//! The common lab topology of the interop tests and the checks they make
//! on the agent.

use crate::{wait_until, Agent, Frr, Lab};
use std::time::Duration;

/// How long a check waits for the network to settle.
pub const SETTLE: Duration = Duration::from_secs(40);

/// FRR configuration of the ToR of [`tor_and_node`] (AS 65000) for one
/// IPv4 session with the node (AS 65010), fast timers.
pub const TOR_FRR: &str = "hostname tor
router bgp 65000
 bgp router-id 10.0.0.1
 no bgp ebgp-requires-policy
 neighbor 10.0.0.10 remote-as 65010
 neighbor 10.0.0.10 timers 3 9
 neighbor 10.0.0.10 timers connect 1
";

/// FRR's bfdd with the profile `fast` (100 ms x 3) that ToR neighbors name
/// with `neighbor X bfd profile fast`.
pub const FRR_BFD_FAST: &str = "bfd
 profile fast
  receive-interval 100
  transmit-interval 100
  detect-multiplier 3
 !
!
";

/// The agent configuration of the node of [`tor_and_node`] (node-a,
/// 10.0.0.10, PodCIDR 10.244.10.0/24) with the top-level keys of `extra`.
pub fn node_a(extra: serde_json::Value) -> serde_json::Value {
    let mut cfg = serde_json::json!({
        "node_name": "node-a",
        "node_ip": "10.0.0.10",
        "pod_cidr": "10.244.10.0/24",
    });
    for (k, v) in extra.as_object().into_iter().flatten() {
        cfg[k] = v.clone();
    }
    cfg
}

/// `routing` with the ToR of [`tor_and_node`] as the one peer (fast timers).
pub fn tor_routing() -> serde_json::Value {
    serde_json::json!({"peers": [{"neighbor_address": "10.0.0.1", "remote_as": 65000, "hold_time": 9, "keepalive": 3}]})
}

/// A switch (namespace `sw`, bridge `br0`) with each host's `eth0` on it:
/// `(namespace, address/len)`.
pub fn switched(lab: &mut Lab, hosts: &[(&str, &str)]) {
    lab.add_ns("sw");
    lab.add_bridge("sw", "br0", &[]);
    for (i, (ns, addr)) in hosts.iter().enumerate() {
        lab.add_ns(ns);
        lab.link_to_bridge(ns, "eth0", &[addr], "sw", "br0", &format!("p{i}"));
    }
}

/// One ToR (`tor`: 10.0.0.1, fd00::1) and one node (`node`: 10.0.0.10,
/// fd00::10) on one link.
pub fn tor_and_node(lab: &mut Lab) {
    lab.add_ns("tor");
    lab.add_ns("node");
    lab.link(
        "tor",
        "eth0",
        &["10.0.0.1/24", "fd00::1/64"],
        "node",
        "eth0",
        &["10.0.0.10/24", "fd00::10/64"],
    );
}

/// Two ToRs and a node: `tor1` (10.0.1.1) on the node's eth0 (10.0.1.10),
/// `tor2` (10.0.2.1) on its eth1 (10.0.2.10).
pub fn two_tors_and_node(lab: &mut Lab) {
    lab.add_ns("tor1");
    lab.add_ns("tor2");
    lab.add_ns("node");
    lab.link("tor1", "eth0", &["10.0.1.1/24"], "node", "eth0", &["10.0.1.10/24"]);
    lab.link("tor2", "eth0", &["10.0.2.1/24"], "node", "eth1", &["10.0.2.10/24"]);
}

/// Waits until the agent's best path for `prefix` has this next hop and
/// AS path.
pub fn agent_has(agent: &Agent, prefix: &str, next_hop: &str, as_path: &str) {
    wait_until(
        &format!("agent to hold {prefix} via {next_hop} [{as_path}]"),
        SETTLE,
        || match agent.route(prefix).first() {
            Some(p) if p["next_hop"] == next_hop && p["as_path"] == as_path && p["best"] == true => Ok(()),
            other => Err(format!("{other:?}")),
        },
    );
}

/// Waits until the agent holds no path for `prefix`.
pub fn agent_lacks(agent: &Agent, prefix: &str) {
    wait_until(&format!("agent to drop {prefix}"), SETTLE, || {
        let paths = agent.route(prefix);
        if paths.is_empty() {
            Ok(())
        } else {
            Err(format!("{paths:?}"))
        }
    });
}

/// Waits until the agent's session with `addr` is Established.
pub fn agent_established(agent: &Agent, addr: &str) {
    wait_until(
        &format!("agent session with {addr} Established"),
        SETTLE,
        || match agent.peer_state(addr) {
            s if s == "Established" => Ok(()),
            s => Err(s),
        },
    );
}

/// Waits until `probe` returns `want`.
pub fn wait_for_value<T: PartialEq + std::fmt::Debug>(what: &str, want: T, mut probe: impl FnMut() -> T) {
    wait_until(what, SETTLE, || match probe() {
        v if v == want => Ok(()),
        v => Err(format!("{v:?}")),
    });
}

/// Packets sent and received, from the summary line of a `ping` log.
pub fn ping_counts(log: &str) -> (u64, u64) {
    let summary = log
        .lines()
        .find(|l| l.contains("packets transmitted"))
        .unwrap_or_else(|| panic!("no ping summary in: {log}"));
    let numbers: Vec<u64> = summary
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|w| w.parse().ok())
        .collect();
    (numbers[0], numbers[1])
}

/// Echo requests to `address` that reached namespace `ns` (an nftables
/// counter set up by [`count_probes`]).
pub fn probes_seen(lab: &Lab, ns: &str) -> u64 {
    let out = lab.exec(ns, "nft", &["list", "chain", "inet", "probes", "input"]);
    out.split_whitespace()
        .skip_while(|w| *w != "packets")
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no counter in: {out}"))
}

/// Counts the echo requests to `address` arriving in namespace `ns`.
pub fn count_probes(lab: &Lab, ns: &str, address: &str) {
    lab.exec(ns, "nft", &["add", "table", "inet", "probes"]);
    let chain = "{ type filter hook input priority 0 ; }";
    lab.exec(ns, "nft", &["add", "chain", "inet", "probes", "input", chain]);
    let rule = ["ip", "daddr", address, "icmp", "type", "echo-request", "counter"];
    let mut args = vec!["add", "rule", "inet", "probes", "input"];
    args.extend(rule);
    lab.exec(ns, "nft", &args);
}

/// Replies in a ping log so far.
pub fn replies(log: &std::path::Path) -> usize {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .matches("bytes from")
        .count()
}

/// Waits until a ping log holds `more` replies beyond `now`.
pub fn more_replies(log: &std::path::Path, now: usize, more: usize) {
    wait_until("more probe replies", SETTLE, || {
        let n = replies(log);
        if n >= now + more {
            Ok(())
        } else {
            Err(n.to_string())
        }
    });
}

/// Which of `nodes` the probes counted by [`count_probes`] reach now
/// (waiting for 10 more replies in `log`): its index.
pub fn probed_node(lab: &Lab, nodes: &[&str], log: &std::path::Path) -> usize {
    let before: Vec<u64> = nodes.iter().map(|ns| probes_seen(lab, ns)).collect();
    more_replies(log, replies(log), 10);
    let after: Vec<u64> = nodes.iter().map(|ns| probes_seen(lab, ns)).collect();
    (0..nodes.len())
        .find(|i| after[*i] > before[*i])
        .unwrap_or_else(|| panic!("the probes reach none of {nodes:?}"))
}

/// FRR (AS 65000, 10.0.0.1) with zebra on the switch of [`switched`],
/// peering the two nodes 10.0.0.10 (AS 65010) and 10.0.0.11 (AS 65011)
/// and spreading traffic over both (ECMP across their ASes).
pub fn ecmp_tor(lab: &mut Lab) -> crate::Frr {
    let bgpd = "hostname tor
router bgp 65000
 bgp router-id 10.0.0.1
 no bgp ebgp-requires-policy
 bgp bestpath as-path multipath-relax
 neighbor 10.0.0.10 remote-as 65010
 neighbor 10.0.0.10 timers 3 9
 neighbor 10.0.0.10 timers connect 1
 neighbor 10.0.0.11 remote-as 65011
 neighbor 10.0.0.11 timers 3 9
 neighbor 10.0.0.11 timers connect 1
 address-family ipv4 unicast
  maximum-paths 4
 exit-address-family
";
    crate::Frr::start_daemons(lab, "tor", &[("zebra", "hostname tor\n"), ("bgpd", bgpd)])
}

/// The configuration of node `n{i}` (1 to 3) of a three-node static mesh on
/// one switch: 10.0.0.1{i}, PodCIDR 10.244.1{i}.0/24, BFD 100 ms x 3 on
/// every session; `mesh` adds keys to `routing.node_mesh`.
pub fn three_node_mesh(i: usize, mesh: serde_json::Value) -> serde_json::Value {
    let nodes: Vec<serde_json::Value> = (1..=3)
        .map(|j| {
            serde_json::json!({"name": format!("n{j}"), "ip": format!("10.0.0.1{j}"),
                               "pod_cidr": format!("10.244.1{j}.0/24")})
        })
        .collect();
    let mut node_mesh = serde_json::json!({"enabled": true, "source": "static", "nodes": nodes});
    for (k, v) in mesh.as_object().into_iter().flatten() {
        node_mesh[k] = v.clone();
    }
    serde_json::json!({
        "node_name": format!("n{i}"),
        "node_ip": format!("10.0.0.1{i}"),
        "pod_cidr": format!("10.244.1{i}.0/24"),
        "routing": {
            "bfd": {"enabled": true, "min_rx_ms": 100, "min_tx_ms": 100, "detect_multiplier": 3},
            "node_mesh": node_mesh
        }
    })
}

/// On [`tor_and_node`]'s namespaces: the ToR (FRR 8.4, BFD profile `fast`, 100 ms x 3)
/// and the node (the configuration of [`node_a`] with `extra`, its
/// `routing.peers` the ToR with BFD at the same timers) BGP Established
/// and BFD Up on both sides. FRR starts its BFD session over as its BGP
/// session first comes up: that is behind when this returns.
pub fn node_with_bfd_tor(lab: &mut Lab, extra: serde_json::Value) -> (Agent, Frr) {
    let bgpd = format!("{TOR_FRR} neighbor 10.0.0.10 bfd profile fast\n");
    let frr = Frr::start_daemons(
        lab,
        "tor",
        &[("zebra", "hostname tor\n"), ("bfdd", FRR_BFD_FAST), ("bgpd", &bgpd)],
    );
    let mut config = node_a(extra);
    config["routing"]["peers"] = serde_json::json!([{"neighbor_address": "10.0.0.1", "remote_as": 65000,
        "hold_time": 9, "keepalive": 3, "bfd_enabled": true, "bfd_min_tx_ms": 100, "bfd_min_rx_ms": 100,
        "bfd_detect_multiplier": 3}]);
    let agent = Agent::start(lab, "node", &config);
    agent_established(&agent, "10.0.0.1");
    wait_until("BFD Up on both sides", SETTLE, || {
        let n = frr.neighbor("10.0.0.10");
        let ours = agent.bfd_session("10.0.0.1")["state"].clone();
        if n["peerBfdInfo"]["status"] == "Up" && ours == "Up" {
            Ok(())
        } else {
            Err(format!("FRR {} / ours {ours}", n["peerBfdInfo"]))
        }
    });
    (agent, frr)
}
