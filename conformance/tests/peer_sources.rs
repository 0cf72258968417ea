//! One neighbor, two sources: an API owner asks for a peer at the address
//! of a ToR the configuration file already peers with (against a real FRR
//! ToR). The ToR's session is not touched, the intent shows why it is not
//! applied (GetStatus, from a gRPC client), `/status/peer-sources` shows who
//! holds the address, and once the file lets the address go the owner's
//! peer takes it.

use novanet_conformance::checks::{agent_established, node_a, tor_and_node, tor_routing, SETTLE, TOR_FRR};
use novanet_conformance::route_control::client;
use novanet_conformance::{wait_until, Agent, Frr, Lab};
use novanet_proto::api::*;
use serde_json::{json, Value};

fn sources(agent: &Agent) -> Vec<Value> {
    serde_json::from_str::<Value>(&agent.get("/status/peer-sources").unwrap_or_default())
        .ok()
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_default()
}

fn outcome(agent: &Agent, source: &str, address: &str) -> Option<(String, String)> {
    sources(agent)
        .into_iter()
        .find(|v| v["source"] == source && v["address"] == address)
        .map(|v| {
            (
                v["outcome"].as_str().unwrap_or_default().to_string(),
                v["detail"].as_str().unwrap_or_default().to_string(),
            )
        })
}

#[test]
fn an_api_peer_at_a_configured_peer_s_address_is_held_off_and_says_why() {
    let mut lab = Lab::new("psrc");
    tor_and_node(&mut lab);
    let _frr = Frr::start(&mut lab, "tor", TOR_FRR);
    let owners = json!({"edge": {"token": "edge-test-token-2024", "allowed_prefixes": {"type": "any"}}});
    let mut config = node_a(json!({"routing": tor_routing(), "owners": owners}));
    let agent = Agent::start(&mut lab, "node", &config);
    agent_established(&agent, "10.0.0.1");
    let up_since = agent.peer("10.0.0.1")["established_at"].clone();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut c = client(agent.socket.clone()).await;
        c.apply_peer(ApplyPeerRequest {
            owner: "edge".into(),
            token: "edge-test-token-2024".into(),
            peer: Some(BgpPeer {
                neighbor_address: "10.0.0.1".into(),
                remote_as: 65000,
                description: "edge's view of the ToR".into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap();
    });
    wait_until("the API's peer held by the configuration", SETTLE, || {
        match outcome(&agent, "api", "10.0.0.1") {
            Some((o, d)) if o == "held" && d.contains("configuration file") => Ok(()),
            other => Err(format!("{other:?}: {:?}", sources(&agent))),
        }
    });
    assert_eq!(
        outcome(&agent, "config", "10.0.0.1").map(|o| o.0).as_deref(),
        Some("applied")
    );
    let status = rt.block_on(async {
        let mut c = client(agent.socket.clone()).await;
        c.get_status(GetStatusRequest {
            owner_filter: "edge".into(),
        })
        .await
        .unwrap()
        .into_inner()
    });
    let p = status
        .peers
        .iter()
        .find(|p| p.owner == "edge" && p.neighbor_address == "10.0.0.1")
        .expect("the intent in GetStatus");
    assert!(
        p.state.starts_with("failed: ") && p.state.contains("already a peer of the configuration file"),
        "{p:?}"
    );
    assert_eq!(
        agent.peer("10.0.0.1")["established_at"],
        up_since,
        "the ToR's session was not touched"
    );

    // The file lets the ToR go: the owner's peer takes the address.
    config["routing"]["peers"] = json!([]);
    agent.rewrite_config(&config);
    lab.signal(&agent.name, libc::SIGHUP);
    wait_until("the API's peer applied", SETTLE, || {
        match outcome(&agent, "api", "10.0.0.1") {
            Some((o, _)) if o == "applied" => Ok(()),
            other => Err(format!("{other:?}")),
        }
    });
    agent_established(&agent, "10.0.0.1");
    assert!(outcome(&agent, "config", "10.0.0.1").is_none());
}
