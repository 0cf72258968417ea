//! What a RouteControl owner may do, asked from Python `grpcio` as node
//! add-ons do. Owners with `capabilities` get exactly what they grant:
//! every one of the 13 RPCs is called by each kind of owner and the
//! answers compared with the grants (and the refusals name the key that
//! would grant them). Owners without `capabilities` keep every RPC, but no
//! owner can retune the BFD session of the node's ToR (a real FRR with
//! BFD) or open a second session to it through its IPv4-mapped IPv6
//! spelling.

use novanet_conformance::checks::{node_with_bfd_tor, tor_and_node, SETTLE};
use novanet_conformance::route_control::client;
use novanet_conformance::{wait_until, Agent, Frr, Lab};
use novanet_proto::api::{GetStatusRequest, GetStatusResponse};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

/// GetStatus for one owner (the answers' effects; the calls themselves
/// are Python's).
fn status_of(agent: &Agent, owner: &str) -> GetStatusResponse {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut c = client(agent.socket.clone()).await;
        c.get_status(GetStatusRequest {
            owner_filter: owner.into(),
        })
        .await
        .expect("GetStatus")
        .into_inner()
    })
}

/// Runs the Python matrix client; its answers by (owner, rpc), in order.
fn matrix(agent: &Agent, plan: &Value) -> Vec<Value> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("python/authorisation_matrix.py");
    let out = Command::new("python3")
        .arg(&script)
        .arg(&agent.socket)
        .arg(plan.to_string())
        .output()
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "python grpcio matrix client failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
        .collect()
}

/// The node with its ToR (FRR, BFD 100 ms x 3), its own AS and router id
/// stated, and `owners`.
fn node_with_tor(lab: &mut Lab, owners: Value) -> (Agent, Frr) {
    tor_and_node(lab);
    node_with_bfd_tor(
        lab,
        json!({"owners": owners, "routing": {"local_as": 65010, "router_id": "10.0.0.10"}}),
    )
}

const RPCS: [&str; 13] = [
    "Register",
    "StreamEvents",
    "ConfigureBGP",
    "ApplyPeer",
    "RemovePeer",
    "AdvertisePrefix",
    "WithdrawPrefix",
    "EnableBFD",
    "DisableBFD",
    "EnableOSPF",
    "DisableOSPF",
    "GetStatus",
    "Deregister",
];

#[test]
fn an_owner_may_do_only_what_its_capabilities_grant() {
    let mut lab = Lab::new("authz");
    let owners = json!({
        // Advertises service VIPs and watches their next hops with BFD.
        "edge": {"token": "edge-token", "allowed_prefixes": {"type": "host_only", "allowed_cidrs": ["10.96.0.0/12"]},
                 "capabilities": {"bfd": {"peers": ["10.0.0.0/24"], "min_interval_ms": 50}}},
        // Runs the fabric: BGP settings, peers in one range and AS range, OSPF on the uplinks.
        "fabric": {"token": "fabric-token", "allowed_prefixes": {"type": "subnet", "allowed_cidrs": ["10.200.0.0/16"]},
                   "capabilities": {"configure_bgp": true,
                                    "peers": {"neighbors": ["10.0.0.0/24"], "remote_as": ["65001-65009"], "max_prefix": 100},
                                    "ospf": {"interfaces": ["eth*"]}}},
        // Prefixes only: capabilities present, nothing granted.
        "vips": {"token": "vips-token", "allowed_prefixes": {"type": "host_only", "allowed_cidrs": ["10.96.0.0/12"]},
                 "capabilities": {}},
        // Written before capabilities existed: keeps every RPC.
        "legacy": {"token": "legacy-token", "allowed_prefixes": {"type": "host_only", "allowed_cidrs": ["10.97.0.0/16"]}}
    });
    let (agent, _frr) = node_with_tor(&mut lab, owners);
    let up_since = agent.peer("10.0.0.1")["established_at"].clone();

    let owner = |name: &str, prefix: &str, peer: &str, bfd: &str| {
        json!({"name": name, "token": format!("{name}-token"), "prefix": prefix, "peer": peer,
               "peer_as": 65001, "bfd": bfd, "ospf": "eth0"})
    };
    let plan = json!({
        // The node's own settings: a granted ConfigureBGP changes nothing.
        "bgp": {"local_as": 65010, "router_id": "10.0.0.10"},
        "owners": [
            owner("edge", "10.96.0.1/32", "10.0.0.50", "10.0.0.60"),
            owner("fabric", "10.200.1.0/24", "10.0.0.51", "10.0.0.61"),
            owner("vips", "10.96.0.2/32", "10.0.0.52", "10.0.0.62"),
            owner("legacy", "10.97.0.1/32", "10.0.0.53", "10.0.0.63"),
        ],
        "extra": [
            {"owner": "fabric", "token": "fabric-token", "rpc": "ApplyPeer",
             "request": {"peer": {"neighbor_address": "192.0.2.1", "remote_as": 65001}}},
            {"owner": "fabric", "token": "fabric-token", "rpc": "ApplyPeer",
             "request": {"peer": {"neighbor_address": "10.0.0.54", "remote_as": 65010}}},
            {"owner": "fabric", "token": "fabric-token", "rpc": "EnableOSPF",
             "request": {"interface_name": "lo", "area_id": "0.0.0.0"}},
            {"owner": "edge", "token": "edge-token", "rpc": "EnableBFD",
             "request": {"peer_address": "192.0.2.1"}},
            {"owner": "edge", "token": "edge-token", "rpc": "EnableBFD",
             "request": {"peer_address": "10.0.0.60", "min_rx_ms": 20, "min_tx_ms": 300}},
            {"owner": "edge", "token": "edge-token", "rpc": "AdvertisePrefix",
             "request": {"prefix": "10.200.0.1/32", "protocol": 1}},
            {"owner": "legacy", "token": "legacy-token", "rpc": "EnableOSPF",
             "request": {"interface_name": "nv0123456789a", "area_id": "0.0.0.0"}},
            {"owner": "legacy", "token": "wrong", "rpc": "ConfigureBGP",
             "request": {"local_as": 65099, "router_id": "10.9.9.9"}}
        ]
    });
    let answers = matrix(&agent, &plan);

    // The 13 RPCs by owner: what each kind of owner gets.
    let mut got: BTreeMap<(String, String), String> = BTreeMap::new();
    for a in &answers[..answers.len() - 8] {
        got.insert(
            (a["owner"].as_str().unwrap().into(), a["rpc"].as_str().unwrap().into()),
            a["code"].as_str().unwrap().into(),
        );
    }
    let (ok, denied, none) = ("OK", "PERMISSION_DENIED", "NOT_FOUND");
    let expected: [(&str, [&str; 13]); 4] = [
        // Register, StreamEvents, ConfigureBGP, ApplyPeer, RemovePeer, Advertise, Withdraw,
        // EnableBFD, DisableBFD, EnableOSPF, DisableOSPF, GetStatus, Deregister
        (
            "edge",
            [ok, ok, denied, denied, none, ok, ok, ok, ok, denied, none, ok, ok],
        ),
        ("fabric", [ok, ok, ok, ok, ok, ok, ok, denied, none, ok, ok, ok, ok]),
        (
            "vips",
            [ok, ok, denied, denied, none, ok, ok, denied, none, denied, none, ok, ok],
        ),
        ("legacy", [ok, ok, ok, ok, ok, ok, ok, ok, ok, ok, ok, ok, ok]),
    ];
    let mut wrong = Vec::new();
    for (name, codes) in expected {
        for (rpc, want) in RPCS.iter().zip(codes) {
            let have = got.get(&(name.to_string(), rpc.to_string())).map(String::as_str);
            if have != Some(want) {
                wrong.push(format!("{name} {rpc}: {have:?}, expected {want}"));
            }
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}\nall answers: {answers:#?}");

    // Refusals name the key that would grant the call.
    let refusal = |owner: &str, rpc: &str| -> String {
        answers
            .iter()
            .find(|a| a["owner"] == owner && a["rpc"] == rpc && a["code"] == denied)
            .map(|a| a["details"].as_str().unwrap().to_string())
            .unwrap_or_default()
    };
    assert!(refusal("edge", "ConfigureBGP").contains("owners.edge.capabilities.configure_bgp"));
    assert!(refusal("vips", "ApplyPeer").contains("owners.vips.capabilities.peers"));
    assert!(refusal("fabric", "EnableBFD").contains("owners.fabric.capabilities.bfd"));
    assert!(refusal("vips", "EnableOSPF").contains("owners.vips.capabilities.ospf"));

    // Within a grant, its ranges hold.
    let extra: Vec<(String, String, String)> = answers[answers.len() - 8..]
        .iter()
        .map(|a| {
            (
                a["rpc"].as_str().unwrap().into(),
                a["code"].as_str().unwrap().into(),
                a["details"].as_str().unwrap().into(),
            )
        })
        .collect();
    let expect_extra = [
        (
            "ApplyPeer",
            denied,
            "outside owners.fabric.capabilities.peers.neighbors",
        ),
        (
            "ApplyPeer",
            denied,
            "outside owners.fabric.capabilities.peers.remote_as",
        ),
        (
            "EnableOSPF",
            denied,
            "not in owners.fabric.capabilities.ospf.interfaces",
        ),
        ("EnableBFD", denied, "outside owners.edge.capabilities.bfd.peers"),
        (
            "EnableBFD",
            denied,
            "faster than owners.edge.capabilities.bfd.min_interval_ms",
        ),
        ("AdvertisePrefix", denied, "outside the allowed CIDRs"),
        ("EnableOSPF", denied, "pods never join OSPF"),
        ("ConfigureBGP", "UNAUTHENTICATED", "authentication failed"),
    ];
    for ((rpc, code, details), (want_rpc, want_code, says)) in extra.iter().zip(expect_extra) {
        assert!(
            rpc == want_rpc && code == want_code && details.contains(says),
            "{rpc} {code} {details:?}: expected {want_rpc} {want_code} saying {says:?}"
        );
    }

    // The node's own settings and its ToR session are as they were.
    let node: Value = serde_json::from_str(&agent.get("/status/node").unwrap()).unwrap();
    assert_eq!(
        (node["local_as"].clone(), node["router_id"].clone()),
        (json!(65010), json!("10.0.0.10"))
    );
    assert_eq!(
        agent.peer("10.0.0.1")["established_at"],
        up_since,
        "the ToR's session was not touched"
    );
    // Each refusal was published and counted.
    let metrics = agent.get("/metrics").unwrap();
    let counted = metrics
        .lines()
        .filter(|l| l.starts_with("novanet_routing_policy_violations_total") && l.contains("reason=\"capability\""))
        .count();
    assert!(counted >= 3, "violations by owner with reason capability:\n{metrics}");
}

#[test]
fn no_owner_can_retune_the_tor_s_bfd_or_alias_its_address() {
    let mut lab = Lab::new("authzalias");
    let owners = json!({"legacy": {"token": "legacy-token", "allowed_prefixes": {"type": "any"}}});
    let (agent, frr) = node_with_tor(&mut lab, owners);
    let up_since = agent.peer("10.0.0.1")["established_at"].clone();
    let tor_bfd = || {
        let s = agent.bfd_session("10.0.0.1");
        (
            s["desired_min_tx_ms"].clone(),
            s["required_min_rx_ms"].clone(),
            s["detect_multiplier"].clone(),
        )
    };
    assert_eq!(tor_bfd(), (json!(100), json!(100), json!(3)));

    let plan = json!({
        "bgp": {"local_as": 65010, "router_id": "10.0.0.10"},
        "owners": [],
        "extra": [
            // The ToR's own address, timers a hundred times slower.
            {"owner": "legacy", "token": "legacy-token", "rpc": "EnableBFD",
             "request": {"peer_address": "10.0.0.1", "min_rx_ms": 10000, "min_tx_ms": 10000, "detect_multiplier": 50}},
            // The ToR under another spelling.
            {"owner": "legacy", "token": "legacy-token", "rpc": "ApplyPeer",
             "request": {"peer": {"neighbor_address": "::ffff:10.0.0.1", "remote_as": 65000}}},
            {"owner": "legacy", "token": "legacy-token", "rpc": "EnableBFD",
             "request": {"peer_address": "::ffff:10.0.0.1"}},
            // Faster than any node may run.
            {"owner": "legacy", "token": "legacy-token", "rpc": "EnableBFD",
             "request": {"peer_address": "10.0.0.77", "min_rx_ms": 1}}
        ]
    });
    let answers = matrix(&agent, &plan);
    let codes: Vec<&str> = answers.iter().map(|a| a["code"].as_str().unwrap()).collect();
    assert_eq!(codes, ["OK", "OK", "OK", "INVALID_ARGUMENT"], "{answers:#?}");

    // Both intents are stored under the one canonical address and say why
    // they are not applied: the address is the ToR's.
    wait_until("the intents to show why they are not applied", SETTLE, || {
        let st = status_of(&agent, "legacy");
        let peer = st.peers.iter().find(|p| p.owner == "legacy");
        let session = st.bfd_sessions.iter().find(|b| b.owner == "legacy");
        let peer_ok = peer.is_some_and(|p| {
            p.neighbor_address == "10.0.0.1" && p.state.contains("already a peer of the configuration file")
        });
        let bfd_ok =
            session.is_some_and(|b| b.peer_address == "10.0.0.1" && b.state.contains("BFD session of a BGP peer"));
        if peer_ok && bfd_ok {
            Ok(())
        } else {
            Err(format!("peer {peer:?}, BFD {session:?}"))
        }
    });
    // One session to the ToR, its timers its own, and FRR agrees.
    let sessions: Vec<Value> = agent
        .peers()
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["neighbor_address"].as_str().unwrap_or("").ends_with("10.0.0.1"))
        .cloned()
        .collect();
    assert_eq!(sessions.len(), 1, "{sessions:#?}");
    assert_eq!(tor_bfd(), (json!(100), json!(100), json!(3)));
    assert_eq!(agent.peer("10.0.0.1")["established_at"], up_since);
    let n = frr.neighbor("10.0.0.10");
    assert_eq!(n["peerBfdInfo"]["status"], "Up", "{n}");
    assert_eq!(n["bgpState"], "Established", "{n}");
}
