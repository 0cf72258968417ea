//! `routing.protocol: ospf` end to end: a ToR running FRR ospfd and
//! ospf6d, two nodes each running the agent with its own ospfd/ospf6d +
//! zebra sidecar (own vty socket directory). Node a's uplink joins OSPF
//! through EnableOSPF, node b's from its configuration. Both PodCIDRs (IPv4
//! and IPv6) reach the ToR's and the other node's kernel as OSPF routes
//! and pods wired by novanet-cni ping across; an OSPF prefix intent comes
//! and goes at the ToR; a smuggled command is refused and never reaches
//! the sidecar; killing the sidecar's ospfd and starting it again brings
//! the state back without an agent restart, with FRR_DISCONNECTED,
//! FRR_CONNECTED and the neighbor events on a StreamEvents stream;
//! DisableOSPF and SIGTERM take the node's prefixes away from the ToR.

use novanet_conformance::agent::ctl_binary;
use novanet_conformance::cni_runtime::{self, pod_ipv4, Runtime, Sandbox};
use novanet_conformance::route_control::{all_events, client, expect_event};
use novanet_conformance::{wait_until, Agent, Frr, Lab};
use novanet_proto::api::*;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::time::Duration;
use tonic::Code;

const CONVERGE: Duration = Duration::from_secs(40);
const TOKEN: &str = "ops-test-token-2024";

/// The ToR: both node links in area 0 with short timers, in ospfd and
/// ospf6d.
fn tor_config(daemon: &str) -> String {
    let mut c = String::from("hostname tor\n");
    for i in ["eth1", "eth2"] {
        c.push_str(&format!("interface {i}\n"));
        match daemon {
            "ospfd" => c.push_str(" ip ospf hello-interval 1\n ip ospf dead-interval 3\n ip ospf area 0\n"),
            _ => c.push_str(" ipv6 ospf6 hello-interval 1\n ipv6 ospf6 dead-interval 3\n ipv6 ospf6 area 0\n"),
        }
        c.push_str("exit\n");
    }
    match daemon {
        "ospfd" => c.push_str("router ospf\n ospf router-id 10.30.0.1\nexit\n"),
        _ => c.push_str("router ospf6\n ospf6 router-id 10.30.0.1\nexit\n"),
    }
    c
}

/// A node's sidecar: zebra, ospfd and ospf6d with nothing configured (the
/// agent writes everything).
fn sidecar(lab: &mut Lab, node: &str) -> Frr {
    let empty = format!("hostname {node}\n");
    Frr::start_daemons(lab, node, &[("zebra", &empty), ("ospfd", &empty), ("ospf6d", &empty)])
}

fn node_config(lab: &Lab, sidecar: &Frr, name: &str, ip: &str, v4: &str, v6: &str, ospf: Value) -> Value {
    json!({
        "node_name": name,
        "node_ip": ip,
        "pod_cidr": v4,
        "pod_cidrs": [v6],
        "owners": {"ops": {"token": TOKEN, "allowed_prefixes": {"type": "any"}}},
        "routing": {
            "protocol": "ospf",
            "frr_socket_dir": format!("/var/run/frr/{}", sidecar.instance),
            "bfd": {"enabled": false},
            "ospf": ospf,
        },
        "cni": {
            "enabled": true,
            "socket": lab.dir().join(format!("{name}-cni.sock")).display().to_string(),
            "ipam_dir": lab.dir().join(format!("{name}-ipam")).display().to_string(),
        }
    })
}

/// The OSPF routes of a namespace's kernel (both families).
fn ospf_routes(lab: &Lab, ns: &str) -> String {
    format!(
        "{}{}",
        lab.exec(ns, "ip", &["route", "show", "proto", "ospf"]),
        lab.exec(ns, "ip", &["-6", "route", "show", "proto", "ospf"])
    )
}

fn wait_route(lab: &Lab, ns: &str, prefix: &str, via: &str) {
    wait_until(&format!("{prefix} via {via} in {ns}'s kernel"), CONVERGE, || {
        let routes = ospf_routes(lab, ns);
        if routes
            .lines()
            .any(|l| l.starts_with(&format!("{prefix} ")) && l.contains(via))
        {
            Ok(())
        } else {
            Err(routes)
        }
    });
}

fn wait_no_route(lab: &Lab, ns: &str, prefix: &str) {
    wait_until(&format!("{prefix} gone from {ns}'s kernel"), CONVERGE, || {
        let routes = ospf_routes(lab, ns);
        if routes.lines().any(|l| l.starts_with(&format!("{prefix} "))) {
            Err(routes)
        } else {
            Ok(())
        }
    });
}

fn ping(from: &Sandbox, to: &str) -> bool {
    let ns = from.netns.trim_start_matches("/run/netns/").to_string();
    std::process::Command::new("ip")
        .args(["netns", "exec", &ns, "ping", "-c1", "-W1", to])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

fn enable(interface: &str) -> EnableOspfRequest {
    EnableOspfRequest {
        owner: "ops".into(),
        token: TOKEN.into(),
        interface_name: interface.into(),
        area_id: "0".into(),
        passive: false,
        cost: 0,
        hello_interval: 1,
        dead_interval: 3,
    }
}

fn ospf_prefix(prefix: &str) -> AdvertisePrefixRequest {
    AdvertisePrefixRequest {
        owner: "ops".into(),
        token: TOKEN.into(),
        prefix: prefix.into(),
        protocol: Protocol::Ospf as i32,
        attributes: None,
    }
}

/// A node's container runtime with novanet-cni alone.
fn runtime<'a>(lab: &'a Lab, node: &str, cfg: &Value, bin: &std::path::Path) -> Runtime<'a> {
    Runtime {
        lab,
        node: node.into(),
        cni_path: bin.to_path_buf(),
        conflist: cni_runtime::novanet_only(&PathBuf::from(cfg["cni"]["socket"].as_str().unwrap())),
    }
}

/// `novanetctl routing ospf -o FORMAT` against an agent's socket.
fn ctl_ospf(socket: &std::path::Path, format: &str) -> String {
    let socket = socket.display().to_string();
    let out = std::process::Command::new(ctl_binary())
        .args(["--socket", &socket, "routing", "ospf", "-o", format])
        .output()
        .expect("novanetctl");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("UTF-8")
}

#[test]
fn two_nodes_route_their_pods_through_ospf() {
    let started = std::time::Instant::now();
    let phase = |what: &str| eprintln!("[{:>5.1}s] {what}", started.elapsed().as_secs_f64());
    let mut lab = Lab::new("ospfm");
    lab.add_ns("tor");
    lab.add_ns("a");
    lab.add_ns("b");
    lab.link("tor", "eth1", &["10.30.1.1/24"], "a", "eth0", &["10.30.1.2/24"]);
    lab.link("tor", "eth2", &["10.30.2.1/24"], "b", "eth0", &["10.30.2.2/24"]);
    lab.forwarding("tor");
    let _tor = Frr::start_daemons(
        &mut lab,
        "tor",
        &[
            ("zebra", "hostname tor\n"),
            ("ospfd", &tor_config("ospfd")),
            ("ospf6d", &tor_config("ospf6d")),
        ],
    );
    let side_a = sidecar(&mut lab, "a");
    let side_b = sidecar(&mut lab, "b");
    let cfg_a = node_config(
        &lab,
        &side_a,
        "a",
        "10.30.1.2",
        "10.244.31.0/24",
        "fd00:30:a::/64",
        json!({}),
    );
    let cfg_b = node_config(
        &lab,
        &side_b,
        "b",
        "10.30.2.2",
        "10.244.32.0/24",
        "fd00:30:b::/64",
        json!({"interfaces": [{"interface_name": "eth0", "hello_interval": 1, "dead_interval": 3}]}),
    );
    let agent_a = Agent::start(&mut lab, "a", &cfg_a);
    let _agent_b = Agent::start(&mut lab, "b", &cfg_b);

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut c = client(agent_a.socket.clone()).await;
        let mut events = all_events(&mut c).await;
        c.register(RegisterRequest {
            owner: "ops".into(),
            token: TOKEN.into(),
            reassert_intents: false,
        })
        .await
        .unwrap();
        phase("agents up, EnableOSPF");
        c.enable_ospf(enable("eth0")).await.expect("EnableOSPF eth0");
        let up = expect_event(&mut events, EventType::OspfNeighborUp, "10.30.0.1").await;
        assert_eq!(up.owner, "ops", "the neighbor is on the owner's interface: {up:?}");
        assert_eq!(up.metadata["interface"], "eth0");

        phase("adjacency Full");
        // Both PodCIDRs at the ToR and at the other node, in both families.
        wait_route(&lab, "tor", "10.244.31.0/24", "10.30.1.2");
        wait_route(&lab, "tor", "10.244.32.0/24", "10.30.2.2");
        wait_route(&lab, "tor", "fd00:30:a::/64", "eth1");
        wait_route(&lab, "tor", "fd00:30:b::/64", "eth2");
        wait_route(&lab, "a", "10.244.32.0/24", "10.30.1.1");
        wait_route(&lab, "b", "10.244.31.0/24", "10.30.2.1");
        wait_route(&lab, "b", "fd00:30:a::/64", "eth0");
        // The node's own prefix is an address of the injection interface
        // with no route of its own: pods keep their /32 routes.
        let injected = lab.exec("a", "ip", &["-o", "addr", "show", "dev", "novanet-ospf"]);
        assert!(
            injected.contains("10.244.31.0/24") && injected.contains("noprefixroute"),
            "{injected}"
        );
        assert!(!lab.exec("a", "ip", &["route"]).contains("10.244.31.0/24"));

        // GetStatus: the interface as ospfd runs it, the sidecar's version.
        let st = c.get_status(GetStatusRequest::default()).await.unwrap().into_inner();
        let frr = st.frr_status.clone().unwrap();
        assert!(frr.connected && frr.version.starts_with("FRRouting"), "{frr:?}");
        let eth0 = st
            .ospf_interfaces
            .iter()
            .find(|i| i.interface_name == "eth0")
            .unwrap_or_else(|| panic!("{st:?}"));
        assert_eq!((eth0.owner.as_str(), eth0.neighbor_count), ("ops", 1), "{eth0:?}");
        assert!(
            ["DR", "Backup", "DROther"].contains(&eth0.state.as_str()),
            "ospfd's state: {eth0:?}"
        );
        let table = ctl_ospf(&agent_a.socket, "table");
        eprintln!("novanetctl routing ospf:\n{table}");
        assert!(table.starts_with("ospfd sidecar:  connected, FRRouting"), "{table}");
        assert!(table.contains("\nNEIGHBOR ID  ADDRESS    INTERFACE  STATE"), "{table}");
        let view: Value = serde_json::from_str(&ctl_ospf(&agent_a.socket, "json")).expect("JSON");
        assert_eq!(view["sidecar"]["connected"], true, "{view}");
        let neighbors = view["neighbors"].as_array().unwrap();
        assert!(
            neighbors
                .iter()
                .any(|n| n["neighbor_id"] == "10.30.0.1" && n["state"] == "Full" && n["version"] == "ospfv2"),
            "{view}"
        );
        assert!(
            neighbors
                .iter()
                .any(|n| n["version"] == "ospfv3" && n["state"] == "Full"),
            "{view}"
        );
        let metrics = agent_a.get("/metrics").unwrap();
        assert!(
            metrics.contains("novanet_ospf_neighbors{interface=\"eth0\",state=\"Full\"} 2"),
            "one adjacency per OSPF version: {metrics}"
        );
        assert_eq!(agent_a.get("/readyz").unwrap().trim(), "ready");

        phase("routes and status checked");
        // Pods on the two nodes reach each other over the OSPF routes.
        let bin = cni_runtime::plugin_dir(&lab, &[]);
        let pod_a = cni_runtime::pod(&mut lab, "pa", json!({}));
        let pod_b = cni_runtime::pod(&mut lab, "pb", json!({}));
        let ra = runtime(&lab, "a", &cfg_a, &bin)
            .add(&pod_a)
            .unwrap_or_else(|a| panic!("ADD pa: {}", a.out));
        let rb = runtime(&lab, "b", &cfg_b, &bin)
            .add(&pod_b)
            .unwrap_or_else(|a| panic!("ADD pb: {}", a.out));
        let (ip_a, ip_b) = (pod_ipv4(&ra), pod_ipv4(&rb));
        wait_until(&format!("pod {ip_a} to reach pod {ip_b}"), CONVERGE, || {
            if ping(&pod_a, &ip_b) {
                Ok(())
            } else {
                Err(ospf_routes(&lab, "a"))
            }
        });
        assert!(ping(&pod_b, &ip_a), "and back");

        phase("pods ping");
        // An OSPF prefix intent comes and goes at the ToR.
        c.advertise_prefix(ospf_prefix("10.77.0.0/24"))
            .await
            .expect("OSPF prefix");
        wait_route(&lab, "tor", "10.77.0.0/24", "10.30.1.2");
        c.withdraw_prefix(WithdrawPrefixRequest {
            owner: "ops".into(),
            token: TOKEN.into(),
            prefix: "10.77.0.0/24".into(),
            protocol: Protocol::Ospf as i32,
        })
        .await
        .unwrap();
        wait_no_route(&lab, "tor", "10.77.0.0/24");

        phase("prefix intent came and went");
        // A command smuggled in an interface name: refused, reported, and
        // the sidecar's configuration is what it was.
        let before = side_a.vtysh("show running-config");
        let smuggled = c.enable_ospf(enable("eth0\nrouter bgp 1")).await.unwrap_err();
        assert_eq!(smuggled.code(), Code::InvalidArgument, "{smuggled:?}");
        let v = expect_event(&mut events, EventType::PolicyViolation, "command_injection").await;
        assert_eq!(v.metadata["field"], "interface_name", "{v:?}");
        for bad in ["eth0 passive", "a/b", "toolongname12345"] {
            let e = c.enable_ospf(enable(bad)).await.unwrap_err();
            assert_eq!(e.code(), Code::InvalidArgument, "{bad:?}: {e:?}");
        }
        let e = c
            .enable_ospf(EnableOspfRequest {
                area_id: "0\nexit".into(),
                ..enable("eth0")
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument);
        let after = side_a.vtysh("show running-config");
        assert_eq!(
            strip_header(&after),
            strip_header(&before),
            "the running configuration is unchanged"
        );
        assert!(!after.contains("router bgp"));

        phase("smuggling refused");
        // The sidecar's ospfd dies and comes back: the agent sees it go,
        // writes its state again, and the adjacency and routes return.
        side_a.kill_daemon("ospfd");
        expect_event(&mut events, EventType::FrrDisconnected, "").await;
        let down = expect_event(&mut events, EventType::OspfNeighborDown, "10.30.0.1").await;
        assert_eq!(down.metadata["version"], "ospfv2", "{down:?}");
        assert!(agent_a.get("/readyz").is_err(), "not ready without ospfd");
        wait_no_route(&lab, "tor", "10.244.31.0/24");
        side_a.start_daemon_again(&mut lab, "a", "ospfd");
        let back = expect_event(&mut events, EventType::FrrConnected, "").await;
        assert!(back.metadata["version"].starts_with("FRRouting"), "{back:?}");
        expect_event(&mut events, EventType::OspfNeighborUp, "10.30.0.1").await;
        wait_route(&lab, "tor", "10.244.31.0/24", "10.30.1.2");
        wait_until("pods across nodes again", CONVERGE, || {
            if ping(&pod_a, &ip_b) {
                Ok(())
            } else {
                Err(ospf_routes(&lab, "tor"))
            }
        });

        phase("ospfd restarted and state back");
        // DisableOSPF: the uplink leaves OSPF, the ToR loses the PodCIDR.
        c.disable_ospf(DisableOspfRequest {
            owner: "ops".into(),
            token: TOKEN.into(),
            interface_name: "eth0".into(),
        })
        .await
        .unwrap();
        expect_event(&mut events, EventType::OspfNeighborDown, "10.30.0.1").await;
        wait_no_route(&lab, "tor", "10.244.31.0/24");
        wait_no_route(&lab, "tor", "fd00:30:a::/64");
        runtime(&lab, "a", &cfg_a, &bin).del(&pod_a, Some(&ra)).unwrap();
        runtime(&lab, "b", &cfg_b, &bin).del(&pod_b, Some(&rb)).unwrap();
    });

    phase("DisableOSPF withdrew");
    // SIGTERM on node b: its PodCIDRs leave OSPF before the agent exits
    // (its uplink stays in the sidecar; the withdrawal is flooded).
    lab.signal("agent-b", libc::SIGTERM);
    assert!(lab.wait_exit("agent-b", Duration::from_secs(30)).success());
    wait_no_route(&lab, "tor", "10.244.32.0/24");
    wait_no_route(&lab, "tor", "fd00:30:b::/64");
    phase("SIGTERM withdrew");
    let left = lab.exec("b", "ip", &["-o", "link"]);
    assert!(
        !left.contains("novanet-ospf"),
        "the injection interface is removed: {left}"
    );
    assert!(
        side_b.vtysh("show running-config").contains("interface eth0"),
        "the uplink stays in OSPF"
    );
}

/// The running configuration without vtysh's header lines.
fn strip_header(running: &str) -> String {
    running
        .lines()
        .skip_while(|l| !l.starts_with('!'))
        .collect::<Vec<_>>()
        .join("\n")
}
