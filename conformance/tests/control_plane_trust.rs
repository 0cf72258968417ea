//! What a tenant's pod can do to routing. A pod on the node (root in its
//! own network namespace, with NET_RAW as containerd gives it) forges BFD
//! Down packets from its ToR's address to the node: TTL 255, Your
//! Discriminator 0, the node's reverse-path filter loose (the kernel's
//! default). Before, the node's BFD session with the ToR went Down at the
//! first packet and BGP was closed with it. Now single-hop packets must
//! arrive on an interface linked to their source: the pod's interface is
//! not, so they are dropped (and counted), the BFD session stays Up and
//! BGP is untouched. The real ToR (FRR 8.4 with a BFD profile) keeps its
//! session throughout. The mesh half: a pod forging one node's multihop
//! BFD Down to another, across the fabric; with the mesh's BFD key the
//! forged packets fail the digest.
//!
//! And the status port, which every pod can reach: a pod scraping it gets
//! the probes, the metrics and the peers, nothing of the routes, flows or
//! pods' identities (those are on the status socket); a pod holding
//! connections open cannot starve the node's own probes, and is served
//! again once its idle connections time out.

use novanet_conformance::checks::{
    agent_established, node_with_bfd_tor, switched, three_node_mesh, tor_and_node, wait_for_value, SETTLE,
};
use novanet_conformance::{in_namespace, wait_until, Agent, Lab};
use serde_json::json;
use std::net::Ipv4Addr;

/// A BFD control packet (RFC 5880 4.1) in State Down with Your
/// Discriminator 0, inside a UDP datagram to `port` (3784 single hop, 4784
/// multihop), inside an IPv4 header with TTL 255 and a source of our
/// choosing.
fn forged_bfd_down(src: Ipv4Addr, dst: Ipv4Addr, port: u16) -> Vec<u8> {
    let mut bfd = vec![0x20, 0x40, 3, 24];
    bfd.extend_from_slice(&0x0bad_f00du32.to_be_bytes()); // My Discriminator
    bfd.extend_from_slice(&0u32.to_be_bytes()); // Your Discriminator
    for v in [1_000_000u32, 1_000_000, 0] {
        bfd.extend_from_slice(&v.to_be_bytes());
    }
    let mut udp = Vec::new();
    udp.extend_from_slice(&49152u16.to_be_bytes());
    udp.extend_from_slice(&port.to_be_bytes());
    udp.extend_from_slice(&((8 + bfd.len()) as u16).to_be_bytes());
    udp.extend_from_slice(&0u16.to_be_bytes()); // no checksum (IPv4)
    udp.extend_from_slice(&bfd);
    let mut ip = vec![0x45, 0];
    ip.extend_from_slice(&((20 + udp.len()) as u16).to_be_bytes());
    ip.extend_from_slice(&[0, 0, 0, 0, 255, 17, 0, 0]); // the kernel fills id and checksum
    ip.extend_from_slice(&src.octets());
    ip.extend_from_slice(&dst.octets());
    ip.extend_from_slice(&udp);
    ip
}

/// Sends `count` forged packets from inside namespace `ns` (a raw socket
/// writing its own IPv4 header), one per `pace`.
fn forge_from(ns: String, src: Ipv4Addr, dst: Ipv4Addr, port: u16, count: usize) {
    forge_paced(ns, src, dst, port, count, std::time::Duration::from_millis(20))
}

fn forge_paced(ns: String, src: Ipv4Addr, dst: Ipv4Addr, port: u16, count: usize, pace: std::time::Duration) {
    in_namespace(&ns, move || {
        let s = socket2::Socket::new(
            socket2::Domain::IPV4,
            socket2::Type::RAW,
            Some(socket2::Protocol::from(libc::IPPROTO_RAW)),
        )
        .expect("raw socket");
        let to = std::net::SocketAddr::from((dst, 0));
        let pkt = forged_bfd_down(src, dst, port);
        for _ in 0..count {
            s.send_to(&pkt, &to.into()).expect("forged packet sent");
            // The attack's pace (not a wait for anything).
            std::thread::sleep(pace);
        }
    });
}

/// The agent's count of BFD packets dropped as forged, for `reason`.
fn drops(agent: &Agent, reason: &str) -> u64 {
    let prefix = format!("novanet_bfd_packets_dropped_total{{reason=\"{reason}\"}} ");
    agent
        .get("/metrics")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(&prefix).map(str::to_string))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

fn off_link_drops(agent: &Agent) -> u64 {
    drops(agent, "off_link")
}

/// Waits until `count` forged packets were dropped for `reason`, or (as
/// before the defence) the BFD session with `peer` was taken down.
fn dropped_or_down(agent: &Agent, peer: &str, reason: &str, count: u64) {
    wait_until("the forged packets dropped, or taking the session down", SETTLE, || {
        let n = drops(agent, reason);
        let down = agent.bfd_session(peer)["state"] != "Up";
        if n >= count || down {
            Ok(())
        } else {
            Err(format!("{n} dropped"))
        }
    });
}

#[test]
fn a_pod_cannot_forge_its_tor_s_bfd_down() {
    let mut lab = Lab::new("bfdforge");
    tor_and_node(&mut lab);
    // A pod behind the node, as the CNI wires one.
    lab.add_ns("pod");
    lab.link("node", "pod0", &["10.244.10.1/24"], "pod", "eth0", &["10.244.10.10/24"]);
    lab.exec("pod", "ip", &["route", "add", "default", "via", "10.244.10.1"]);
    lab.forwarding("node");
    for key in ["net.ipv4.conf.all.rp_filter", "net.ipv4.conf.pod0.rp_filter"] {
        lab.exec("node", "sysctl", &["-qw", &format!("{key}=0")]);
    }
    let (agent, frr) = node_with_bfd_tor(&mut lab, json!({}));
    let transitions = agent.peer("10.0.0.1")["established_transitions"].clone();
    let discriminator = agent.bfd_session("10.0.0.1")["remote_discriminator"].clone();

    forge_from(
        lab.ns_name("pod"),
        Ipv4Addr::new(10, 0, 0, 1),
        Ipv4Addr::new(10, 0, 0, 10),
        3784,
        50,
    );
    // Every forged packet seen and dropped, or (as before) the session
    // taken down by them.
    dropped_or_down(&agent, "10.0.0.1", "off_link", 50);
    let s = agent.bfd_session("10.0.0.1");
    assert_eq!(s["state"], "Up", "{s}");
    assert_eq!(
        s["remote_discriminator"], discriminator,
        "the ToR's session, unchanged: {s}"
    );
    let p = agent.peer("10.0.0.1");
    assert_eq!(p["state"], "Established", "{p}");
    assert_eq!(p["established_transitions"], transitions, "BGP never closed: {p}");
    assert!(
        !agent.log(&lab).contains("BFD down: closing the BGP session"),
        "no BFD-caused close"
    );
    assert_eq!(frr.neighbor_state("10.0.0.10"), "Established");
    assert!(off_link_drops(&agent) >= 50);
}

/// The mesh half: a pod on n3 forges n2's multihop BFD Down to n1 (port
/// 4784, forwarded by n3 with its reverse-path filter loose). `mesh`
/// defends the mesh's BFD (a key, a TTL floor); every forged packet is
/// dropped for `reason`, n1's session with n2 stays Up and BGP with it.
/// Returns n1, and the lab with the pod still there.
fn forged_mesh_down(name: &str, mesh: serde_json::Value, reason: &str) -> (Lab, Vec<Agent>) {
    let mut lab = Lab::new(name);
    switched(
        &mut lab,
        &[("n1", "10.0.0.11/24"), ("n2", "10.0.0.12/24"), ("n3", "10.0.0.13/24")],
    );
    lab.add_ns("pod");
    lab.link("n3", "pod0", &["10.244.13.1/24"], "pod", "eth0", &["10.244.13.10/24"]);
    lab.exec("pod", "ip", &["route", "add", "default", "via", "10.244.13.1"]);
    lab.forwarding("n3");
    for (ns, key) in [
        ("n3", "net.ipv4.conf.all.rp_filter"),
        ("n3", "net.ipv4.conf.pod0.rp_filter"),
        ("n1", "net.ipv4.conf.all.rp_filter"),
    ] {
        lab.exec(ns, "sysctl", &["-qw", &format!("{key}=0")]);
    }
    let agents: Vec<Agent> = (1..=3)
        .map(|i| Agent::start(&mut lab, &format!("n{i}"), &three_node_mesh(i, mesh.clone())))
        .collect();
    let n1 = &agents[0];
    agent_established(n1, "10.0.0.12");
    wait_for_value("n1's BFD with n2 Up", json!("Up"), || {
        n1.bfd_session("10.0.0.12")["state"].clone()
    });
    let transitions = n1.peer("10.0.0.12")["established_transitions"].clone();

    forge_from(
        lab.ns_name("pod"),
        Ipv4Addr::new(10, 0, 0, 12),
        Ipv4Addr::new(10, 0, 0, 11),
        4784,
        50,
    );
    dropped_or_down(n1, "10.0.0.12", reason, 50);
    let s = n1.bfd_session("10.0.0.12");
    assert_eq!(s["state"], "Up", "{s}");
    let p = n1.peer("10.0.0.12");
    assert_eq!(p["state"], "Established", "{p}");
    assert_eq!(p["established_transitions"], transitions, "BGP never closed: {p}");
    assert!(drops(n1, reason) >= 50);
    (lab, agents)
}

/// The mesh's BFD key (meticulous keyed SHA1): the forged packets fail the
/// digest. And a flood from the pod's own address (no session's) is
/// dropped as it is read, before the sessions' loop.
#[test]
fn a_pod_cannot_forge_another_node_s_bfd_down_in_a_keyed_mesh() {
    /// The key's file, removed however the test ends.
    struct KeyFile(std::path::PathBuf);
    impl Drop for KeyFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }
    let key_file = KeyFile(std::env::temp_dir().join(format!("novanet-mesh-bfd-key-{}", std::process::id())));
    std::fs::write(&key_file.0, "mesh-key-0123456789\n").unwrap();
    let (lab, agents) = forged_mesh_down(
        "meshforge",
        json!({"bfd_key_file": key_file.0.display().to_string()}),
        "authentication",
    );
    let n1 = &agents[0];
    let transitions = n1.peer("10.0.0.12")["established_transitions"].clone();
    let before = drops(n1, "unknown_source");
    forge_paced(
        lab.ns_name("pod"),
        Ipv4Addr::new(10, 244, 13, 10),
        Ipv4Addr::new(10, 0, 0, 11),
        4784,
        1000,
        std::time::Duration::from_micros(500),
    );
    wait_until("the flood counted as dropped on read", SETTLE, || {
        let n = drops(n1, "unknown_source") - before;
        if n >= 1000 {
            Ok(())
        } else {
            Err(format!("{n}"))
        }
    });
    assert_eq!(n1.bfd_session("10.0.0.12")["state"], "Up");
    assert_eq!(n1.peer("10.0.0.12")["established_transitions"], transitions);
}

/// Without a key, the mesh's TTL floor: every node is on one link and
/// sends with TTL 255, the pod's packets arrive forwarded once (254).
#[test]
fn a_pod_cannot_forge_another_node_s_bfd_down_past_the_mesh_s_ttl_floor() {
    forged_mesh_down("meshttl", json!({"bfd_min_ttl": 255}), "ttl");
}

/// RFC 5882 section 3.2: a neighbor taking its BFD session down
/// administratively has not lost the path. The ToR (FRR) shuts its BFD
/// profile down: the node's session goes Down (AdminDown received) and
/// BGP stays Established on both sides; when the profile is back, BFD
/// comes Up under the same BGP session. Before, the node closed BGP
/// (Cease/BFD Down) at the AdminDown.
#[test]
fn a_tor_taking_its_bfd_down_administratively_leaves_bgp_up() {
    let mut lab = Lab::new("bfdadmin");
    tor_and_node(&mut lab);
    let (agent, frr) = node_with_bfd_tor(&mut lab, json!({}));
    let transitions = agent.peer("10.0.0.1")["established_transitions"].clone();

    frr.configure(&["bfd", "profile fast", "shutdown"]);
    wait_for_value("the node's BFD session Down", json!("Down"), || {
        agent.bfd_session("10.0.0.1")["state"].clone()
    });
    // The BFD rule has acted on the Down: kept, or (as before) closed.
    wait_until("the agent to act on the BFD Down", SETTLE, || {
        let p = agent.peer("10.0.0.1");
        if agent.log(&lab).contains("took its session down administratively")
            || p["established_transitions"] != transitions
            || p["state"] != "Established"
        {
            Ok(())
        } else {
            Err(format!("{p}"))
        }
    });
    let p = agent.peer("10.0.0.1");
    assert_eq!(p["state"], "Established", "{p}");
    assert_eq!(p["established_transitions"], transitions, "BGP never closed: {p}");
    assert_eq!(frr.neighbor_state("10.0.0.10"), "Established");

    // Back: BFD Up again under the same BGP session.
    frr.configure(&["bfd", "profile fast", "no shutdown"]);
    wait_for_value("the node's BFD session Up again", json!("Up"), || {
        agent.bfd_session("10.0.0.1")["state"].clone()
    });
    let p = agent.peer("10.0.0.1");
    assert_eq!(p["established_transitions"], transitions, "{p}");
    wait_until("FRR's BGP to see BFD Up again", SETTLE, || {
        let n = frr.neighbor("10.0.0.10");
        if n["peerBfdInfo"]["status"] == "Up" && n["bgpState"] == "Established" {
            Ok(())
        } else {
            Err(format!("{} {}", n["bgpState"], n["peerBfdInfo"]))
        }
    });
}

/// What a pod reaches on the status port: `curl` from the pod's namespace
/// to the node's address. The HTTP status code, or curl's exit code when
/// there was no answer.
fn from_pod(lab: &Lab, path: &str) -> String {
    let out = lab
        .cmd("pod", "curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "3"])
        .arg(format!("http://10.244.10.1:9102{path}"))
        .output()
        .expect("curl runs");
    if out.status.success() {
        String::from_utf8_lossy(&out.stdout).into_owned()
    } else {
        format!("curl exit {}", out.status.code().unwrap_or(-1))
    }
}

#[test]
fn a_pod_reads_only_probes_metrics_and_peers_from_the_status_port() {
    let mut lab = Lab::new("statusport");
    tor_and_node(&mut lab);
    lab.add_ns("pod");
    lab.link("node", "pod0", &["10.244.10.1/24"], "pod", "eth0", &["10.244.10.10/24"]);
    lab.exec("pod", "ip", &["route", "add", "default", "via", "10.244.10.1"]);
    let agent = Agent::start(
        &mut lab,
        "node",
        &json!({"node_name": "node-a", "node_ip": "10.0.0.10", "pod_cidr": "10.244.10.0/24",
                "metrics_address": "0.0.0.0:9102",
                "routing": {"peers": [{"neighbor_address": "10.0.0.1", "remote_as": 65000}]}}),
    );
    for open in ["/healthz", "/readyz", "/metrics", "/status/peers"] {
        assert_eq!(from_pod(&lab, open), "200", "{open}");
    }
    for closed in [
        "/status/routes",
        "/status/datapath?events=flow",
        "/status/fib",
        "/status/bfd",
        "/status/node",
        "/status/peer-sources",
        "/status/ospf",
    ] {
        assert_eq!(from_pod(&lab, closed), "404", "{closed}");
    }
    // On the status socket, for root on the node.
    for view in ["/status/routes", "/status/node", "/status/bfd", "/status/peer-sources"] {
        assert!(agent.get(view).is_ok(), "{view} on the socket");
    }

    // The pod opens connections and sends nothing.
    let pod_ns = lab.ns_name("pod");
    let held = in_namespace(&pod_ns, || {
        (0..20)
            .filter_map(|_| std::net::TcpStream::connect("10.244.10.1:9102").ok())
            .collect::<Vec<_>>()
    });
    // Past its share the pod is turned away; the node's probe is not.
    wait_until("the pod turned away past its share", SETTLE, || {
        match from_pod(&lab, "/healthz") {
            c if c.starts_with("curl exit") => Ok(()),
            c => Err(c),
        }
    });
    assert_eq!(agent.get_tcp("/healthz").as_deref(), Ok("ok"));
    // Its idle connections time out (5 s for headers); it is served again.
    wait_until("the pod served again", SETTLE, || match from_pod(&lab, "/healthz") {
        c if c == "200" => Ok(()),
        c => Err(c),
    });
    drop(held);
}
