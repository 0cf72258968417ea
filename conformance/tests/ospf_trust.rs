//! Trust in OSPF mode, against a ToR running FRR ospfd and ospf6d: with
//! `routing.ospf.authentication_key_file` every packet of the node's
//! interfaces is signed, so a neighbour without the key forms no adjacency
//! (in either version) until it is given the key; and zebra never installs
//! an OSPF route into the node's own PodCIDR, whatever a neighbour floods,
//! while it installs the rest of what the neighbour sends.

use novanet_conformance::{wait_until, Agent, Frr, Lab};
use serde_json::json;
use std::time::Duration;

const CONVERGE: Duration = Duration::from_secs(40);
const KEY: &str = "0spf-k3y-2026";

/// The ToR: one node link in area 0 with short timers, no key yet; two
/// static routes flooded as externals, one of them inside the node's
/// PodCIDR.
fn tor_config(daemon: &str) -> String {
    match daemon {
        "staticd" => "hostname tor\nip route 10.244.41.128/25 Null0\nip route 198.51.100.0/24 Null0\n".into(),
        "ospfd" => "hostname tor\ninterface eth1\n ip ospf hello-interval 1\n ip ospf dead-interval 3\n ip ospf area 0\nexit\n\
                    router ospf\n ospf router-id 10.40.0.1\n redistribute static\nexit\n"
            .into(),
        _ => "hostname tor\ninterface eth1\n ipv6 ospf6 hello-interval 1\n ipv6 ospf6 dead-interval 3\n ipv6 ospf6 area 0\nexit\n\
              router ospf6\n ospf6 router-id 10.40.0.1\nexit\n"
            .into(),
    }
}

/// OSPF packets the ToR has received from the node, both versions.
fn packets_from_node(lab: &Lab) -> u64 {
    let out = lab.exec("tor", "nft", &["-j", "list", "table", "inet", "ospfcount"]);
    let v: serde_json::Value = serde_json::from_str(&out).expect("nft JSON");
    v["nftables"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|o| o["rule"]["expr"].as_array())
        .flatten()
        .filter_map(|e| e["counter"]["packets"].as_u64())
        .sum()
}

/// Whether `routes` has `prefix` through `via`.
fn has_route(routes: &str, prefix: &str, via: &str) -> bool {
    routes
        .lines()
        .any(|l| l.starts_with(&format!("{prefix} ")) && l.contains(via))
}

fn kernel_routes(lab: &Lab, ns: &str) -> String {
    format!(
        "{}{}",
        lab.exec(ns, "ip", &["route", "show", "proto", "ospf"]),
        lab.exec(ns, "ip", &["-6", "route", "show", "proto", "ospf"])
    )
}

#[test]
fn ospf_is_signed_and_never_routes_a_nodes_own_pods_away() {
    let mut lab = Lab::new("ospft");
    lab.add_ns("tor");
    lab.add_ns("a");
    lab.link("tor", "eth1", &["10.40.1.1/24"], "a", "eth0", &["10.40.1.2/24"]);
    lab.forwarding("tor");
    let tor = Frr::start_daemons(
        &mut lab,
        "tor",
        &[
            ("zebra", "hostname tor\n"),
            ("staticd", &tor_config("staticd")),
            ("ospfd", &tor_config("ospfd")),
            ("ospf6d", &tor_config("ospf6d")),
        ],
    );
    // Counts what the node sends the ToR, so "no adjacency" is judged
    // after the ToR has heard the node many times over, not after a wait.
    for rule in [
        "add table inet ospfcount",
        "add chain inet ospfcount in { type filter hook input priority 0 ; }",
        "add rule inet ospfcount in iifname eth1 meta l4proto 89 counter",
    ] {
        lab.exec("tor", "nft", &rule.split(' ').collect::<Vec<_>>());
    }
    let empty = "hostname a\n";
    let side = Frr::start_daemons(&mut lab, "a", &[("zebra", empty), ("ospfd", empty), ("ospf6d", empty)]);
    let key_file = lab.dir().join("ospf.key");
    std::fs::write(&key_file, format!("{KEY}\n")).unwrap();
    let cfg = json!({
        "node_name": "a",
        "node_ip": "10.40.1.2",
        "pod_cidr": "10.244.41.0/24",
        "pod_cidrs": ["fd00:40:a::/64"],
        "routing": {
            "protocol": "ospf",
            "frr_socket_dir": format!("/var/run/frr/{}", side.instance),
            "bfd": {"enabled": false},
            "ospf": {
                "interfaces": [{"interface_name": "eth0", "hello_interval": 1, "dead_interval": 3}],
                "authentication_key_file": key_file.display().to_string(),
                "authentication_key_id": 1,
            },
        },
    });
    let _agent = Agent::start(&mut lab, "a", &cfg);

    // The node signs; the ToR does not: ten seconds of hellos (three dead
    // intervals and more) and no adjacency in either version.
    wait_until("20 OSPF packets from the node at the ToR", CONVERGE, || {
        let n = packets_from_node(&lab);
        if n >= 20 {
            Ok(())
        } else {
            Err(n.to_string())
        }
    });
    let running = side.vtysh("show running-config");
    assert!(
        running.contains(" ip ospf authentication message-digest")
            && running.contains(" ipv6 ospf6 authentication key-id 1 hash-algo hmac-sha-256"),
        "{running}"
    );
    for (what, command) in [
        ("ospfd", "show ip ospf neighbor"),
        ("ospf6d", "show ipv6 ospf6 neighbor"),
    ] {
        let neighbors = tor.vtysh(command);
        assert!(
            !neighbors.contains("10.40.1.2") && !neighbors.contains("Full"),
            "{what} took an unsigned peer: {neighbors}"
        );
    }
    let tor_routes = kernel_routes(&lab, "tor");
    assert!(!tor_routes.contains("10.244.41.0/24"), "{tor_routes}");
    let node_routes = kernel_routes(&lab, "a");
    assert!(!node_routes.contains("198.51.100.0/24"), "{node_routes}");

    // The ToR is given the key: adjacencies come up in both versions and
    // the PodCIDRs reach the ToR.
    tor.configure(&[
        "interface eth1",
        " ip ospf authentication message-digest",
        &format!(" ip ospf message-digest-key 1 md5 {KEY}"),
        &format!(" ipv6 ospf6 authentication key-id 1 hash-algo hmac-sha-256 key {KEY}"),
        "exit",
    ]);
    wait_until("both PodCIDRs at the ToR", CONVERGE, || {
        let r = kernel_routes(&lab, "tor");
        if has_route(&r, "10.244.41.0/24", "via 10.40.1.2") && has_route(&r, "fd00:40:a::/64", "dev eth1") {
            Ok(())
        } else {
            Err(r)
        }
    });

    // zebra learns both externals and installs only the one outside the
    // PodCIDR: the other is refused by the import filter, not missing.
    wait_until("both externals in the node's zebra", CONVERGE, || {
        let rib = side.vtysh("show ip route ospf");
        if rib.contains("198.51.100.0/24") && rib.contains("10.244.41.128/25") {
            Ok(())
        } else {
            Err(rib)
        }
    });
    wait_until("198.51.100.0/24 in the node's kernel", CONVERGE, || {
        let r = kernel_routes(&lab, "a");
        if has_route(&r, "198.51.100.0/24", "via 10.40.1.1") {
            Ok(())
        } else {
            Err(r)
        }
    });
    let node_routes = kernel_routes(&lab, "a");
    assert!(
        !node_routes.contains("10.244.41.128/25"),
        "an OSPF route into the node's own PodCIDR was installed: {node_routes}"
    );
    let filtered = side.vtysh("show ip route 10.244.41.128/25");
    assert!(!filtered.contains("* "), "zebra selected it for the kernel: {filtered}");
}
