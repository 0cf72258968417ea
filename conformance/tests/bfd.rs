//! BFD against FRR bfdd and BIRD: sessions Up with asymmetric timers;
//! packets from a ToR dropped (the link stays up) take the session Down
//! within the detection time, the BGP session with it, and the ToR's next
//! hop out of the kernel while traffic keeps the other ToR; recovery when
//! the drop is lifted. And a multihop session with FRR.

use novanet_conformance::checks::{agent_established, two_tors_and_node, wait_for_value, SETTLE};
use novanet_conformance::kernel::bgp_routes;
use novanet_conformance::{wait_until, Agent, Bird, Frr, Lab};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const ZEBRA: &str = "hostname tor1\n";
const BFDD: &str = "bfd
 peer 10.0.1.10 interface eth0
  receive-interval 200
  transmit-interval 100
 !
!
";
const BGPD: &str = "hostname tor1
router bgp 65001
 bgp router-id 10.0.1.1
 no bgp ebgp-requires-policy
 no bgp network import-check
 neighbor 10.0.1.10 remote-as 65010
 neighbor 10.0.1.10 timers 3 9
 neighbor 10.0.1.10 timers connect 1
 neighbor 10.0.1.10 bfd
 address-family ipv4 unicast
  network 192.0.2.0/24
 exit-address-family
";

const BIRD: &str = r#"
router id 10.0.2.1;
protocol device { }
protocol static st4 { ipv4; route 192.0.2.0/24 blackhole; }
protocol bfd { neighbor 10.0.2.10; interface "eth0" { interval 100 ms; multiplier 3; }; }
protocol bgp node {
  local 10.0.2.1 as 65002;
  neighbor 10.0.2.10 as 65010;
  hold time 9; keepalive time 3; connect retry time 1;
  error wait time 1, 5;
  bfd on;
  ipv4 { import all; export all; };
}
"#;

fn frr_bfd_status(frr: &Frr, peer: &str) -> String {
    let v = frr.json("show bfd peers json");
    v.as_array()
        .and_then(|a| {
            a.iter()
                .find(|p| p["peer"] == peer)
                .map(|p| p["status"].as_str().unwrap_or("").to_string())
        })
        .unwrap_or_default()
}

/// Drops every packet from `tor` at the node: BFD must take the session
/// down and the ToR's next hop out of the kernel within 1.5 s while `other`
/// keeps forwarding; lifting the drop restores the session and ECMP.
fn fail_over_and_recover(lab: &Lab, agent: &Agent, tor: &str, other: &str) {
    let kernel = || bgp_routes(lab, "node").get("192.0.2.0/24").cloned();
    let mut both = vec![tor.to_string(), other.to_string()];
    both.sort();
    let silenced = Instant::now();
    lab.drop_from("node", tor);
    wait_until(
        &format!("traffic to move to {other}"),
        Duration::from_secs(5),
        || match kernel() {
            Some(h) if h == vec![other.to_string()] => Ok(()),
            other => Err(format!("{other:?}")),
        },
    );
    let failover = silenced.elapsed();
    assert!(failover < Duration::from_millis(1500), "failover took {failover:?}");
    assert_eq!(agent.bfd_session(tor)["state"], "Down");
    assert_ne!(agent.peer_state(tor), "Established");
    let last = agent.peer(tor)["last_notification_sent"].to_string();
    assert!(last.contains("BFD down"), "{last}");
    eprintln!("BFD failover from {tor} (drop -> next hop out of the kernel): {failover:?}");
    lab.undrop("node");
    agent_established(agent, tor);
    wait_for_value(&format!("BFD with {tor} Up again"), json!("Up"), || {
        agent.bfd_session(tor)["state"].clone()
    });
    // On a timeout, what the agent selected tells a RIB problem from a
    // kernel one.
    wait_until("ECMP restored", Duration::from_secs(40), || match kernel() {
        Some(h) if h == both => Ok(()),
        other => Err(format!(
            "kernel {other:?}; agent paths {:?}; fib {}",
            agent.route("192.0.2.0/24"),
            agent.get("/status/fib").unwrap_or_default()
        )),
    });
}

#[test]
fn bfd_failover_with_frr_and_bird() {
    let mut lab = Lab::new("bfd");
    two_tors_and_node(&mut lab);
    let frr = Frr::start_daemons(&mut lab, "tor1", &[("zebra", ZEBRA), ("bfdd", BFDD), ("bgpd", BGPD)]);
    let bird = Bird::start(&mut lab, "tor2", BIRD);
    let agent = Agent::start(
        &mut lab,
        "node",
        &json!({
            "node_name": "node-a",
            "node_ip": "10.0.1.10",
            "pod_cidr": "10.244.10.0/24",
            "routing": {"peers": [
                {"neighbor_address": "10.0.1.1", "remote_as": 65001, "hold_time": 9, "keepalive": 3,
                 "bfd_enabled": true, "bfd_min_tx_ms": 100, "bfd_min_rx_ms": 150, "bfd_detect_multiplier": 3},
                {"neighbor_address": "10.0.2.1", "remote_as": 65002, "hold_time": 9, "keepalive": 3,
                 "bfd_enabled": true, "bfd_min_tx_ms": 100, "bfd_min_rx_ms": 100, "bfd_detect_multiplier": 3}
            ]}
        }),
    );
    agent_established(&agent, "10.0.1.1");
    agent_established(&agent, "10.0.2.1");
    for peer in ["10.0.1.1", "10.0.2.1"] {
        wait_for_value(&format!("BFD with {peer} Up"), json!("Up"), || {
            agent.bfd_session(peer)["state"].clone()
        });
    }
    wait_for_value("FRR's BFD session up", "up".to_string(), || {
        frr_bfd_status(&frr, "10.0.1.10")
    });
    // Run as root here: the BFD thread got real-time scheduling.
    let metrics = agent.get("/metrics").unwrap_or_default();
    assert!(
        metrics.lines().any(|l| l == "novanet_bfd_realtime 1"),
        "novanet_bfd_realtime 1 in the metrics"
    );
    wait_until("BIRD's BFD session up", SETTLE, || {
        let out = bird.birdc(&["show", "bfd", "sessions"]);
        if out.contains("10.0.2.10") && out.contains("Up") {
            Ok(())
        } else {
            Err(out)
        }
    });
    // Asymmetric timers: we send at max(our 100, FRR's required 200) and
    // detect after 3 x max(our required 150, FRR's 100).
    wait_for_value("timers negotiated with FRR", (json!(200), json!(450)), || {
        let s = agent.bfd_session("10.0.1.1");
        (s["tx_interval_ms"].clone(), s["detection_time_ms"].clone())
    });
    let kernel = |lab: &Lab| bgp_routes(lab, "node").get("192.0.2.0/24").cloned();
    wait_for_value(
        "ECMP over both ToRs",
        Some(vec!["10.0.1.1".to_string(), "10.0.2.1".to_string()]),
        || kernel(&lab),
    );

    // Silence each ToR in turn: only BFD can notice within a second.
    fail_over_and_recover(&lab, &agent, "10.0.1.1", "10.0.2.1");
    fail_over_and_recover(&lab, &agent, "10.0.2.1", "10.0.1.1");
}

#[test]
fn bfd_multihop_with_frr() {
    let mut lab = Lab::new("bfdmh");
    lab.add_ns("tor");
    lab.add_ns("node");
    lab.link("tor", "eth0", &["10.0.0.1/24"], "node", "eth0", &["10.0.0.10/24"]);
    let bfdd = "bfd\n peer 10.0.0.10 multihop local-address 10.0.0.1\n  receive-interval 100\n  transmit-interval 100\n !\n!\n";
    let bgpd = "hostname tor
router bgp 65000
 bgp router-id 10.0.0.1
 no bgp ebgp-requires-policy
 no bgp network import-check
 neighbor 10.0.0.10 remote-as 65010
 neighbor 10.0.0.10 ebgp-multihop 2
 neighbor 10.0.0.10 update-source 10.0.0.1
 neighbor 10.0.0.10 timers 3 9
 neighbor 10.0.0.10 timers connect 1
 neighbor 10.0.0.10 bfd
 address-family ipv4 unicast
  network 192.0.2.0/24
 exit-address-family
";
    let frr = Frr::start_daemons(
        &mut lab,
        "tor",
        &[("zebra", "hostname tor\n"), ("bfdd", bfdd), ("bgpd", bgpd)],
    );
    let agent = Agent::start(
        &mut lab,
        "node",
        &json!({
            "node_name": "node-a",
            "node_ip": "10.0.0.10",
            "pod_cidr": "10.244.10.0/24",
            "routing": {"peers": [
                {"neighbor_address": "10.0.0.1", "remote_as": 65000, "hold_time": 9, "keepalive": 3,
                 "ebgp_multihop": 2, "bfd_enabled": true, "bfd_min_tx_ms": 100, "bfd_min_rx_ms": 100}
            ]}
        }),
    );
    agent_established(&agent, "10.0.0.1");
    wait_for_value("multihop BFD Up", (json!("Up"), json!(true)), || {
        let s = agent.bfd_session("10.0.0.1");
        (s["state"].clone(), s["multihop"].clone())
    });
    wait_for_value("FRR's multihop session up", "up".to_string(), || {
        frr_bfd_status(&frr, "10.0.0.10")
    });
    lab.drop_from("node", "10.0.0.1");
    wait_for_value("BFD down after the drop", json!("Down"), || {
        agent.bfd_session("10.0.0.1")["state"].clone()
    });
    wait_for_value("the route gone", None, || {
        bgp_routes(&lab, "node").get("192.0.2.0/24").cloned()
    });
}

#[test]
fn bfd_never_up_never_takes_bgp_down() {
    // The ToR runs no BFD: the agent's session stays Down, BGP stays up
    // (RFC 5882), well past any detection time.
    let mut lab = Lab::new("bfdnone");
    lab.add_ns("tor");
    lab.add_ns("node");
    lab.link("tor", "eth0", &["10.0.0.1/24"], "node", "eth0", &["10.0.0.10/24"]);
    let bgpd = "hostname tor
router bgp 65000
 bgp router-id 10.0.0.1
 no bgp ebgp-requires-policy
 no bgp network import-check
 neighbor 10.0.0.10 remote-as 65010
 neighbor 10.0.0.10 timers 3 9
 neighbor 10.0.0.10 timers connect 1
 address-family ipv4 unicast
  network 192.0.2.0/24
 exit-address-family
";
    let _frr = Frr::start(&mut lab, "tor", bgpd);
    let agent = Agent::start(
        &mut lab,
        "node",
        &json!({
            "node_name": "node-a",
            "node_ip": "10.0.0.10",
            "pod_cidr": "10.244.10.0/24",
            "routing": {"peers": [
                {"neighbor_address": "10.0.0.1", "remote_as": 65000, "hold_time": 9, "keepalive": 3,
                 "bfd_enabled": true, "bfd_min_tx_ms": 50, "bfd_min_rx_ms": 50, "bfd_detect_multiplier": 3}
            ]}
        }),
    );
    agent_established(&agent, "10.0.0.1");
    let since = agent.peer("10.0.0.1")["established_transitions"].clone();
    // Watch for 3 s (20 detection times): the session must not move.
    let end = Instant::now() + Duration::from_secs(3);
    while Instant::now() < end {
        assert_eq!(agent.peer_state("10.0.0.1"), "Established");
        assert_eq!(agent.bfd_session("10.0.0.1")["state"], "Down");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(agent.peer("10.0.0.1")["established_transitions"], since);

    // SIGHUP applies BFD changes: the session goes with bfd_enabled off.
    agent.rewrite_config(&json!({
        "node_name": "node-a",
        "node_ip": "10.0.0.10",
        "pod_cidr": "10.244.10.0/24",
        "routing": {"peers": [{"neighbor_address": "10.0.0.1", "remote_as": 65000, "hold_time": 9, "keepalive": 3}]}
    }));
    lab.signal(&agent.name, libc::SIGHUP);
    wait_for_value("the BFD session to go", Value::Null, || agent.bfd_session("10.0.0.1"));
    assert_eq!(agent.peer_state("10.0.0.1"), "Established");
}

/// FRR's view of its BGP neighbor: (state, established count).
fn frr_bgp(frr: &Frr, peer: &str) -> (String, u64) {
    let v = frr.json(&format!("show bgp neighbors {peer} json"));
    let n = &v[peer];
    (
        n["bgpState"].as_str().unwrap_or("").to_string(),
        n["connectionsEstablished"].as_u64().unwrap_or(0),
    )
}

/// BFD changes on SIGHUP, against FRR bfdd: new timers go through a poll
/// sequence on the same session (RFC 5880 6.8.3), so FRR's BGP session is
/// untouched; a removed session says AdminDown before it stops (RFC 5880
/// 6.8.16), so FRR sees an administrative stop, not a failure. (FRR 8.4
/// still closes BGP on a peer's AdminDown, against RFC 5882 section 3.2;
/// later FRR releases keep it.)
#[test]
fn bfd_changes_on_reload_follow_rfc_5880() {
    let mut lab = Lab::new("bfdre");
    lab.add_ns("tor1");
    lab.add_ns("node");
    lab.link("tor1", "eth0", &["10.0.1.1/24"], "node", "eth0", &["10.0.1.10/24"]);
    let frr = Frr::start_daemons(&mut lab, "tor1", &[("zebra", ZEBRA), ("bfdd", BFDD), ("bgpd", BGPD)]);
    let config = |bfd: Value| {
        let mut peer = json!({"neighbor_address": "10.0.1.1", "remote_as": 65001, "hold_time": 9, "keepalive": 3});
        for (k, v) in bfd.as_object().unwrap() {
            peer[k] = v.clone();
        }
        json!({
            "node_name": "node-a",
            "node_ip": "10.0.1.10",
            "pod_cidr": "10.244.10.0/24",
            "routing": {"peers": [peer]}
        })
    };
    let agent = Agent::start(
        &mut lab,
        "node",
        &config(json!({"bfd_enabled": true, "bfd_min_tx_ms": 100, "bfd_min_rx_ms": 150, "bfd_detect_multiplier": 3})),
    );
    agent_established(&agent, "10.0.1.1");
    wait_for_value("FRR's BFD session up", "up".to_string(), || {
        frr_bfd_status(&frr, "10.0.1.10")
    });
    wait_until("FRR's BGP session Established", SETTLE, || {
        match frr_bgp(&frr, "10.0.1.10") {
            (s, _) if s == "Established" => Ok(()),
            other => Err(format!("{other:?}")),
        }
    });
    let (_, established) = frr_bgp(&frr, "10.0.1.10");
    let discriminator = agent.bfd_session("10.0.1.1")["local_discriminator"].clone();

    // New timers: the same session, FRR's BGP untouched.
    agent.rewrite_config(&config(
        json!({"bfd_enabled": true, "bfd_min_tx_ms": 200, "bfd_min_rx_ms": 250, "bfd_detect_multiplier": 4}),
    ));
    lab.signal(&agent.name, libc::SIGHUP);
    wait_for_value("the new transmit interval", json!(200), || {
        agent.bfd_session("10.0.1.1")["desired_min_tx_ms"].clone()
    });
    assert_eq!(
        agent.bfd_session("10.0.1.1")["local_discriminator"],
        discriminator,
        "re-timed in place"
    );

    let end = Instant::now() + Duration::from_secs(2);
    while Instant::now() < end {
        assert_eq!(
            frr_bgp(&frr, "10.0.1.10"),
            ("Established".to_string(), established),
            "FRR kept BGP"
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    // BFD off: AdminDown first, then the session goes.
    agent.rewrite_config(&config(json!({})));
    lab.signal(&agent.name, libc::SIGHUP);
    wait_until("FRR to hear AdminDown", SETTLE, || {
        let peers = frr.json("show bfd peers json");
        let p = peers
            .as_array()
            .and_then(|a| a.iter().find(|p| p["peer"] == "10.0.1.10").cloned())
            .unwrap_or_default();
        if p["remote-diagnostic"] == "administratively down" && p["diagnostic"] == "neighbor signaled session down" {
            Ok(())
        } else {
            Err(format!("{p}"))
        }
    });
    wait_for_value("the BFD session to go", Value::Null, || agent.bfd_session("10.0.1.1"));
}

/// A ToR's BFD session keyed from a file (`bfd_key_file`, meticulous
/// keyed SHA1) against BIRD with the same key: Up, and BGP with it. BIRD
/// given another key: its packets fail the digest (counted) and the
/// session goes Down, BGP with it; the right key back, both come back.
#[test]
fn a_keyed_bfd_session_with_bird() {
    let mut lab = Lab::new("bfdkey");
    two_tors_and_node(&mut lab);
    let bird_conf = |key: &str| {
        BIRD.replace(
            r#"interface "eth0" { interval 100 ms; multiplier 3; };"#,
            &format!(
                r#"interface "eth0" {{ interval 100 ms; multiplier 3; authentication meticulous keyed sha1; password "{key}" {{ id 3; }}; }};"#
            ),
        )
    };
    let bird = Bird::start(&mut lab, "tor2", &bird_conf("tor2-bfd-k3y"));
    let key_file = lab.dir().join("tor2-bfd.key");
    std::fs::write(&key_file, "tor2-bfd-k3y\n").unwrap();
    let agent = Agent::start(
        &mut lab,
        "node",
        &json!({
            "node_name": "node-a",
            "node_ip": "10.0.1.10",
            "pod_cidr": "10.244.10.0/24",
            "routing": {"peers": [
                {"neighbor_address": "10.0.2.1", "remote_as": 65002, "hold_time": 9, "keepalive": 3,
                 "bfd_enabled": true, "bfd_min_tx_ms": 100, "bfd_min_rx_ms": 100, "bfd_detect_multiplier": 3,
                 "bfd_key_file": key_file.display().to_string(), "bfd_key_id": 3}
            ]}
        }),
    );
    let bfd_up = |what: &str| {
        wait_for_value(what, json!("Up"), || agent.bfd_session("10.0.2.1")["state"].clone());
    };
    bfd_up("keyed BFD with BIRD Up");
    agent_established(&agent, "10.0.2.1");
    let bird_bfd = bird.birdc(&["show", "bfd", "sessions"]);
    assert!(bird_bfd.contains("10.0.2.10") && bird_bfd.contains("Up"), "{bird_bfd}");
    let auth_drops = |agent: &Agent| -> u64 {
        agent
            .get("/metrics")
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("novanet_bfd_packets_dropped_total{reason=\"authentication\"} "))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    };
    assert_eq!(auth_drops(&agent), 0);

    // BIRD with another key: its packets fail the digest, BFD and BGP go.
    let conf = lab.dir().join("bird-tor2").join("bird.conf");
    std::fs::write(&conf, bird_conf("another-k3y")).unwrap();
    bird.birdc(&["configure"]);
    wait_for_value("BFD Down on the wrong key", json!("Down"), || {
        agent.bfd_session("10.0.2.1")["state"].clone()
    });
    wait_until("digest failures counted", Duration::from_secs(10), || {
        let n = auth_drops(&agent);
        (n > 0).then_some(()).ok_or(n.to_string())
    });
    wait_until("BGP closed with BFD", Duration::from_secs(20), || {
        let s = agent.peer_state("10.0.2.1");
        (s != "Established").then_some(()).ok_or(s)
    });

    // The right key back: both return.
    std::fs::write(&conf, bird_conf("tor2-bfd-k3y")).unwrap();
    bird.birdc(&["configure"]);
    bfd_up("keyed BFD Up again");
    agent_established(&agent, "10.0.2.1");
}
