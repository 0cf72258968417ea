//! A pod sends only from its own address: an ordinary pod wired by
//! novanet-cni, root in its namespace, writes UDP datagrams with a raw
//! socket from another pod's address, the node's, and a ToR-like router's
//! on the node's LAN, interleaved with datagrams from its own address, on
//! a node whose rp_filter is off. The router counts what arrives: only the
//! pod's own datagrams, and the agent counts every forged one as dropped.
//! After an agent restart the check still holds.

use novanet_conformance::policy_node::{datapath_status, PolicyNode};
use novanet_conformance::{wait_until, Lab};
use serde_json::{json, Value};
use std::time::Duration;

/// Sends `count` UDP datagrams to `dst:9999` from each of `sources`, in
/// turn, from the pod's namespace through a raw socket (IP_HDRINCL).
fn send_from(lab: &Lab, pod: &str, sources: &[&str], dst: &str, count: u32) {
    let script = r#"
import socket, struct, sys
dst, count, sources = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
payload = b"novanet-spoof-test"
for _ in range(count):
    for src in sources:
        udp = struct.pack("!HHHH", 40000, 9999, 8 + len(payload), 0) + payload
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, 17, 0,
                         socket.inet_aton(src), socket.inet_aton(dst))
        s.sendto(ip + udp, (dst, 0))
"#;
    let mut args = vec!["-c", script, dst];
    let count = count.to_string();
    args.push(&count);
    args.extend_from_slice(sources);
    lab.exec(pod, "python3", &args);
}

/// Datagrams to UDP 9999 the router received from `src`.
fn received_from(lab: &Lab, src: &str) -> u64 {
    let out = lab.exec("sw", "nft", &["-j", "list", "table", "inet", "spoofcount"]);
    let v: Value = serde_json::from_str(&out).expect("nft JSON");
    v["nftables"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|o| o["rule"]["expr"].as_array())
        .filter(|expr| expr.iter().any(|e| e["match"]["right"] == json!(src)))
        .flatten()
        .filter_map(|e| e["counter"]["packets"].as_u64())
        .sum()
}

fn spoofed_count(agent: &novanet_conformance::Agent) -> u64 {
    datapath_status(agent, "")["counters"]["spoofed"].as_u64().unwrap_or(0)
}

#[test]
fn a_pod_cannot_send_as_another_pod_the_node_or_a_router() {
    let mut lab = Lab::new("podsrc");
    let node = PolicyNode::new(&mut lab);
    let mut agent = node.start_agent(&mut lab, true);
    // The node as several CNIs leave it: no reverse-path filter.
    for key in ["net.ipv4.conf.all.rp_filter", "net.ipv4.conf.default.rp_filter"] {
        lab.exec("n1", "sysctl", &["-qw", &format!("{key}=0")]);
    }
    let ips = node.wire_pods(&mut lab, &["tenant", "victim"]);
    let (tenant, victim) = (ips[0].clone(), ips[1].clone());
    // The plugin sets the pod's host end strict (the node's `all` stays
    // off, so the kernel's check is loose and the programs' is the one).
    let attached = datapath_status(&agent, "")["attached"].clone();
    let ends: Vec<&str> = attached
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|i| i.as_str())
        .collect();
    assert_eq!(ends.len(), 2, "{attached}");
    for end in ends {
        let v = lab.exec("n1", "cat", &[&format!("/proc/sys/net/ipv4/conf/{end}/rp_filter")]);
        assert_eq!(v.trim(), "1", "rp_filter of {end}");
    }
    for (name, ip) in [("tenant", &tenant), ("victim", &victim)] {
        node.api
            .apply_pod("default", PolicyNode::pod_object(name, ip, json!({"app": name})));
    }
    // The router (the switch's namespace, 10.0.0.100) counts by source.
    let forged = [victim.as_str(), "10.0.0.11", "10.0.0.1"];
    let mut rules = vec![
        "add table inet spoofcount".to_string(),
        "add chain inet spoofcount in { type filter hook input priority 0 ; }".to_string(),
    ];
    for src in forged.iter().chain([&tenant.as_str()]) {
        rules.push(format!(
            "add rule inet spoofcount in ip saddr {src} udp dport 9999 counter"
        ));
    }
    for rule in &rules {
        lab.exec("sw", "nft", &rule.split(' ').collect::<Vec<_>>());
    }

    for round in 1..=2u64 {
        let mut sources = forged.to_vec();
        sources.push(&tenant);
        let before = spoofed_count(&agent);
        send_from(&lab, "tenant", &sources, "10.0.0.100", 20);
        // The pod's own datagrams, sent after the forged ones of each
        // turn, arrive: the forged ones had their chance before them.
        wait_until("the pod's own datagrams at the router", Duration::from_secs(20), || {
            let n = received_from(&lab, &tenant);
            (n >= 20 * round).then_some(()).ok_or(n.to_string())
        });
        for src in forged {
            assert_eq!(
                received_from(&lab, src),
                0,
                "a datagram from {src} left the pod (round {round})"
            );
        }
        wait_until(
            "every forged datagram counted as dropped",
            Duration::from_secs(20),
            || {
                let n = spoofed_count(&agent) - before;
                (n >= 60).then_some(()).ok_or(n.to_string())
            },
        );
        if round == 1 {
            // An agent restart: the check is in the kernel, and the new
            // agent writes the same sources back.
            lab.signal(&agent.name, libc::SIGKILL);
            lab.wait_exit(&agent.name, Duration::from_secs(10));
            agent = node.start_agent(&mut lab, true);
            wait_until("the agent ready again", Duration::from_secs(30), || {
                agent.get("/readyz").map(|_| ())
            });
        }
    }
}
