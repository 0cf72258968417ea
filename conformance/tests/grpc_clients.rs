//! RouteControl with gRPC clients we did not write: a Python `grpcio`
//! client with its default options (the socket path as `:authority`, as
//! every gRPC C-core client sends it) and with the raw path as authority
//! (grpc-java's way). Each advertises a prefix that must reach a real FRR
//! ToR, and withdraws it; and asks for a BGP peer at the ToR's address,
//! which the configuration already peers with: the intent says so, with
//! the node's BFD timers, and the ToR's session is not touched.

use novanet_conformance::checks::{agent_established, node_a, tor_and_node, tor_routing, SETTLE, TOR_FRR};
use novanet_conformance::{wait_until, Agent, Frr, Lab};
use serde_json::{json, Value};
use std::path::Path;
use std::process::Command;

const TOKEN: &str = "novaedge-python-token-2024";

/// Runs the Python client; returns its JSON lines by step name.
fn python_client(socket: &Path, prefix: &str, extra: &[&str]) -> std::collections::HashMap<String, Value> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("python/routecontrol_client.py");
    let out = Command::new("python3")
        .arg(&script)
        .arg(socket)
        .args(["novaedge", TOKEN, prefix])
        .args(extra)
        .output()
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "python grpcio client {extra:?} failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}"));
            (v["step"].as_str().unwrap().to_string(), v)
        })
        .collect()
}

#[test]
fn python_grpcio_clients_are_served_on_the_unix_socket() {
    let mut lab = Lab::new("pygrpc");
    tor_and_node(&mut lab);
    let frr = Frr::start(&mut lab, "tor", TOR_FRR);
    let agent = Agent::start(
        &mut lab,
        "node",
        &node_a(json!({
            "owners": {
                "novaedge": {"token": TOKEN, "allowed_prefixes": {"type": "host_only", "allowed_cidrs": ["10.96.0.0/12"]}}
            },
            "routing": tor_routing()
        })),
    );
    agent_established(&agent, "10.0.0.1");

    let up_since = agent.peer("10.0.0.1")["established_at"].clone();
    for (prefix, extra) in [
        ("10.96.0.10/32", &["--peer", "10.0.0.1"][..]),
        ("10.96.0.11/32", &["--authority", "path", "--peer", "10.0.0.1"][..]),
    ] {
        let steps = python_client(&agent.socket, prefix, extra);
        assert!(
            steps["register"]["session_id"]
                .as_str()
                .unwrap()
                .starts_with("novaedge-"),
            "{steps:?}"
        );
        assert_eq!(steps["event"]["type"], "EVENT_TYPE_PREFIX_ADVERTISED", "{steps:?}");
        let prefixes = steps["status"]["prefixes"].as_array().unwrap();
        assert!(
            prefixes
                .iter()
                .any(|p| p["prefix"] == prefix && p["owner"] == "novaedge"),
            "GetStatus lists {prefix}: {prefixes:?}"
        );
        assert_eq!(steps["bad_token"]["code"], "UNAUTHENTICATED");
        assert_eq!(steps["smuggled"]["code"], "INVALID_ARGUMENT", "{steps:?}");
        assert!(
            steps["smuggled"]["details"]
                .as_str()
                .unwrap_or("")
                .contains("interface_name"),
            "{steps:?}"
        );
        let state = steps["peer"]["state"].as_str().unwrap_or("");
        assert!(
            state.starts_with("failed: ") && state.contains("already a peer of the configuration file"),
            "{steps:?}"
        );
        assert_eq!(steps["peer"]["bfd"], json!([[300, 300, 3]]), "{steps:?}");
        assert_eq!(steps["peer_removed"]["left"], json!([]), "{steps:?}");
        assert!(steps.contains_key("withdraw"));
    }
    assert_eq!(
        agent.peer("10.0.0.1")["established_at"],
        up_since,
        "the ToR's session was not touched"
    );
    // What the clients did reached the fabric: both were advertised (the
    // event is published when the UPDATE is written) and both withdrawn.
    for prefix in ["10.96.0.10/32", "10.96.0.11/32"] {
        wait_until(&format!("the ToR to drop {prefix}"), SETTLE, || {
            match frr.route_as_path("ipv4", prefix) {
                None => Ok(()),
                Some(p) => Err(format!("still there with AS path {p}")),
            }
        });
    }
}
