//! A reload (SIGHUP) reaches every consumer of the configuration, not only
//! the configured peers: the RouteControl owners and the node's BFD
//! defaults of API peers, the Kubernetes node mesh's settings, and the
//! control-plane VIP. Each step is checked where it shows: the API's
//! answers, the BFD sessions, the sessions with the other node, the ToR's
//! table and `lo`.

use novanet_conformance::checks::{agent_established, node_a, tor_and_node, tor_routing, SETTLE, TOR_FRR};
use novanet_conformance::kube_server::{self, Options};
use novanet_conformance::route_control::client;
use novanet_conformance::{in_namespace, wait_until, Agent, Frr, Lab};
use novanet_proto::api::*;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::time::Duration;

/// The agent's BFD timers toward `peer` (tx, rx), once it has a session.
fn bfd_timers(agent: &Agent, peer: &str) -> Option<(u64, u64)> {
    let s = agent.bfd_session(peer);
    Some((s["desired_min_tx_ms"].as_u64()?, s["required_min_rx_ms"].as_u64()?))
}

fn wait_bfd(agent: &Agent, peer: &str, want: Option<(u64, u64)>) {
    wait_until(&format!("BFD to {peer}: {want:?}"), SETTLE, || {
        let got = bfd_timers(agent, peer);
        if got == want {
            Ok(())
        } else {
            Err(format!("{got:?}"))
        }
    });
}

fn owner(token: &str) -> Value {
    json!({"token": token, "allowed_prefixes": {"type": "any"}})
}

#[test]
fn a_reload_reaches_the_api_owners_and_the_bfd_defaults_of_api_peers() {
    let mut lab = Lab::new("rlapi");
    tor_and_node(&mut lab);
    let mut config = node_a(json!({"owners": {"first": owner("first-token-2024")}}));
    let agent = Agent::start(&mut lab, "node", &config);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut c = client(agent.socket.clone()).await;
        let register = |owner: &str, token: &str| RegisterRequest {
            owner: owner.into(),
            token: token.into(),
            reassert_intents: false,
        };
        c.register(register("first", "first-token-2024")).await.unwrap();
        // An API peer with BFD and no timers of its own: the node's.
        c.apply_peer(ApplyPeerRequest {
            owner: "first".into(),
            token: "first-token-2024".into(),
            peer: Some(BgpPeer {
                neighbor_address: "10.0.0.1".into(),
                remote_as: 65000,
                bfd_enabled: true,
                ..Default::default()
            }),
        })
        .await
        .unwrap();
        wait_bfd(&agent, "10.0.0.1", Some((300, 300)));
        let refused = c.register(register("second", "second-token-2024")).await.unwrap_err();
        assert_eq!(refused.code(), tonic::Code::Unauthenticated, "{refused:?}");

        // The reload adds an owner and changes the node's BFD defaults.
        config["owners"]["second"] = owner("second-token-2024");
        config["routing"] =
            json!({"bfd": {"enabled": true, "min_tx_ms": 150, "min_rx_ms": 200, "detect_multiplier": 3}});
        agent.rewrite_config(&config);
        lab.signal(&agent.name, libc::SIGHUP);
        wait_bfd(&agent, "10.0.0.1", Some((150, 200)));
        c.register(register("second", "second-token-2024")).await.unwrap();
        let status = c
            .get_status(GetStatusRequest {
                owner_filter: String::new(),
            })
            .await
            .unwrap()
            .into_inner();
        let b = status
            .bfd_sessions
            .iter()
            .find(|b| b.peer_address == "10.0.0.1")
            .expect("the API peer's BFD session in GetStatus");
        assert_eq!((b.min_tx_ms, b.min_rx_ms, b.detect_multiplier), (150, 200, 3));

        // And removes the first: its token no longer opens anything, and
        // its intents are withdrawn.
        config["owners"] = json!({"second": owner("second-token-2024")});
        agent.rewrite_config(&config);
        lab.signal(&agent.name, libc::SIGHUP);
        let start = std::time::Instant::now();
        loop {
            match c.register(register("first", "first-token-2024")).await {
                Err(e) if e.code() == tonic::Code::Unauthenticated => break,
                other => assert!(start.elapsed() < SETTLE, "the first owner is still let in: {other:?}"),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // Its intents went with it.
        wait_bfd(&agent, "10.0.0.1", None);
    });
}

#[test]
fn a_reload_reaches_the_kubernetes_mesh() {
    let mut lab = Lab::new("rlmesh");
    let (api, kubeconfig) = kube_server::on_switch(&mut lab, &["n1", "n2"], Options::default(), &[]);
    let env = [("KUBECONFIG", kubeconfig.to_str().unwrap())];
    api.apply_node(kube_server::node("n1", "10.0.0.11", "10.244.1.0/24"));
    api.apply_node(kube_server::node("n2", "10.0.0.12", "10.244.2.0/24"));
    let mesh = |name: &str, bfd: Value| {
        json!({
            "node_name": name,
            "routing": {"bfd": bfd, "node_mesh": {"enabled": true, "source": "kubernetes"}}
        })
    };
    // BFD off on both nodes at first.
    let off = json!({"enabled": false});
    let a1 = Agent::start_with_env(&mut lab, "n1", &mesh("n1", off.clone()), &env);
    let a2 = Agent::start_with_env(&mut lab, "n2", &mesh("n2", off), &env);
    agent_established(&a1, "10.0.0.12");
    agent_established(&a2, "10.0.0.11");
    assert!(a1.bfd_session("10.0.0.12").is_null());
    let up_since = a1.peer("10.0.0.12")["established_at"].clone();

    // Mesh BFD on, with the node's timers, by a reload of n1: its mesh
    // session to n2 gets a multihop BFD session (which n2 does not answer,
    // so it never comes Up and never touches BGP), and BGP is left alone.
    a1.rewrite_config(&mesh(
        "n1",
        json!({"enabled": true, "min_rx_ms": 250, "min_tx_ms": 200, "detect_multiplier": 4}),
    ));
    lab.signal(&a1.name, libc::SIGHUP);
    wait_until("n1's mesh BFD session to n2, with the reloaded timers", SETTLE, || {
        let s = a1.bfd_session("10.0.0.12");
        match (
            s["multihop"].as_bool(),
            s["desired_min_tx_ms"].as_u64(),
            s["required_min_rx_ms"].as_u64(),
            s["detect_multiplier"].as_u64(),
        ) {
            (Some(true), Some(200), Some(250), Some(4)) => Ok(()),
            _ => Err(s.to_string()),
        }
    });
    assert_eq!(a1.peer_state("10.0.0.12"), "Established");
    assert_eq!(a1.peer("10.0.0.12")["established_at"], up_since, "BGP was not touched");
}

/// An HTTP health endpoint that always answers 200, in the node's
/// namespace; returns its port.
fn healthy_endpoint(lab: &Lab) -> u16 {
    let listener = in_namespace(&lab.ns_name("node"), || {
        std::net::TcpListener::bind("127.0.0.1:0").unwrap()
    });
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let _ = conn.set_read_timeout(Some(Duration::from_secs(2)));
            let mut buf = [0u8; 2048];
            let _ = conn.read(&mut buf);
            let _ = write!(
                conn,
                "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
            );
        }
    });
    port
}

#[test]
fn a_reload_moves_the_control_plane_vip() {
    let mut lab = Lab::new("rlvip");
    tor_and_node(&mut lab);
    let frr = Frr::start(&mut lab, "tor", TOR_FRR);
    let port = healthy_endpoint(&lab);
    let config = |vip: Option<&str>| {
        let mut routing = tor_routing();
        routing["bfd"] = json!({"enabled": false});
        if let Some(v) = vip {
            routing["control_plane_vip"] = json!(v);
            routing["control_plane_vip_health_interval"] = json!(1);
            routing["control_plane_vip_health_url"] = json!(format!("http://127.0.0.1:{port}/livez"));
        }
        node_a(json!({"routing": routing}))
    };
    let agent = Agent::start(&mut lab, "node", &config(Some("10.0.0.250")));
    agent_established(&agent, "10.0.0.1");
    let tor_holds = |vips: &[&str]| {
        wait_until(&format!("the ToR to hold exactly the VIPs {vips:?}"), SETTLE, || {
            let held: Vec<&str> = ["10.0.0.250", "10.0.0.251"]
                .into_iter()
                .filter(|v| frr.route_as_path("ipv4", &format!("{v}/32")).is_some())
                .collect();
            if held == vips {
                Ok(())
            } else {
                Err(format!("{held:?}"))
            }
        })
    };
    let lo = || lab.exec("node", "ip", &["-o", "addr", "show", "dev", "lo"]);
    tor_holds(&["10.0.0.250"]);

    agent.rewrite_config(&config(Some("10.0.0.251")));
    lab.signal(&agent.name, libc::SIGHUP);
    tor_holds(&["10.0.0.251"]);
    wait_until("lo to hold the new VIP only", SETTLE, || {
        let l = lo();
        if l.contains("10.0.0.251/32") && !l.contains("10.0.0.250") {
            Ok(())
        } else {
            Err(l)
        }
    });

    agent.rewrite_config(&config(None));
    lab.signal(&agent.name, libc::SIGHUP);
    tor_holds(&[]);
    wait_until("lo to hold no VIP", SETTLE, || {
        let l = lo();
        if l.contains("10.0.0.25") {
            Err(l)
        } else {
            Ok(())
        }
    });
    // The node's own prefix was never touched.
    assert!(frr.route_as_path("ipv4", "10.244.10.0/24").is_some());
}
