//! A session closed at its prefix limit, as the operator sees it from
//! kubectl: a real FRR ToR announces more prefixes than the node's limit
//! for it allows, the agent closes the session (Cease/Maximum Number of
//! Prefixes Reached) and reports a `MaxPrefixExceeded` Event on its Node,
//! not a plain `BGPSessionDown`; with the limit raised again the session
//! returns with every prefix.

use novanet_conformance::checks::{agent_established, tor_and_node, SETTLE};
use novanet_conformance::kube_server::{self, KubeServer, Options};
use novanet_conformance::{wait_until, Agent, Frr, Lab};
use serde_json::json;

/// A ToR announcing five prefixes to the node.
const CHATTY_TOR: &str = "hostname tor
router bgp 65000
 bgp router-id 10.0.0.1
 no bgp ebgp-requires-policy
 no bgp network import-check
 neighbor 10.0.0.10 remote-as 65010
 neighbor 10.0.0.10 timers 3 9
 neighbor 10.0.0.10 timers connect 1
 address-family ipv4 unicast
  network 192.0.2.0/26
  network 192.0.2.64/26
  network 192.0.2.128/26
  network 198.51.100.0/24
  network 203.0.113.0/24
 exit-address-family
";

#[test]
fn a_prefix_limit_teardown_is_a_max_prefix_exceeded_event_on_the_node() {
    let mut lab = Lab::new("kevents");
    tor_and_node(&mut lab);
    let api = KubeServer::start(&mut lab, "tor", "10.0.0.1:6443", Options::default());
    let kubeconfig = api.agent_kubeconfig(&[]);
    api.apply_node(kube_server::node("node-a", "10.0.0.10", "10.244.10.0/24"));
    let frr = Frr::start(&mut lab, "tor", CHATTY_TOR);
    // Within the limit first: the session stays up.
    let config = |limit: u32| {
        json!({
            "node_name": "node-a",
            "routing": {
                "bfd": {"enabled": false},
                "node_mesh": {"enabled": true, "source": "kubernetes"},
                "peers": [{"neighbor_address": "10.0.0.1", "remote_as": 65000, "hold_time": 9, "keepalive": 3,
                           "max_prefix": limit}]
            }
        })
    };
    let mut cfg = config(10);
    let env = [("KUBECONFIG", kubeconfig.to_str().unwrap())];
    let agent = Agent::start_with_env(&mut lab, "node", &cfg, &env);
    agent_established(&agent, "10.0.0.1");
    wait_until("the ToR's five prefixes", SETTLE, || {
        match agent.peer("10.0.0.1")["prefixes_received"].as_u64() {
            Some(5) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    });

    // A limit of 3 (enforced: a limit set closes the session).
    cfg = config(3);
    agent.rewrite_config(&cfg);
    lab.signal(&agent.name, libc::SIGHUP);
    let event = api.wait_for_event("node-a", "MaxPrefixExceeded", "maximum prefixes");
    assert_eq!(event["type"], "Warning", "{event}");
    assert!(
        event["note"].as_str().is_some_and(|n| n.contains("10.0.0.1")),
        "{event}"
    );
    // FRR heard why.
    let n = frr.neighbor("10.0.0.10");
    let last = n["lastNotificationReason"]
        .as_str()
        .or(n["lastResetDueTo"].as_str())
        .unwrap_or_default()
        .to_string();
    assert!(
        last.to_lowercase().contains("prefix") || n.to_string().contains("Maximum Number of Prefixes"),
        "{n}"
    );
    let downs = api
        .events()
        .iter()
        .filter(|e| e["reason"] == "MaxPrefixExceeded")
        .count();

    // The way back: the limit raised again, the session returns with all
    // five prefixes, and nothing more was reported as exceeded.
    cfg = config(10);
    agent.rewrite_config(&cfg);
    lab.signal(&agent.name, libc::SIGHUP);
    agent_established(&agent, "10.0.0.1");
    wait_until("the ToR's five prefixes again", SETTLE, || {
        match agent.peer("10.0.0.1")["prefixes_received"].as_u64() {
            Some(5) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    });
    let after = api
        .events()
        .iter()
        .filter(|e| e["reason"] == "MaxPrefixExceeded")
        .count();
    assert_eq!(after, downs, "no further MaxPrefixExceeded once the limit holds");
}
