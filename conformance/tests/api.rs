//! The RouteControl API end to end: a gRPC client generated from the
//! reference's field numbers talks to the agent over its Unix socket; every
//! effect is checked at a real FRR ToR.

use novanet_conformance::checks::{agent_established, node_a, tor_and_node, SETTLE};
use novanet_conformance::route_control::{all_events, client, expect_event};
use novanet_conformance::{wait_until, Agent, Frr, Lab};
use novanet_proto::api::*;
use serde_json::json;
use std::time::Duration;
use tonic::Code;

const FRR: &str = "hostname tor
router bgp 65000
 bgp router-id 10.0.0.1
 no bgp ebgp-requires-policy
 no bgp network import-check
 neighbor 10.0.0.10 remote-as 65010
 neighbor 10.0.0.10 timers 3 9
 neighbor 10.0.0.10 timers connect 1
 neighbor fd00::10 remote-as 65010
 neighbor fd00::10 timers 3 9
 neighbor fd00::10 timers connect 1
 address-family ipv4 unicast
  no neighbor fd00::10 activate
 exit-address-family
 address-family ipv6 unicast
  neighbor fd00::10 activate
 exit-address-family
";

fn token(owner: &str) -> String {
    format!("{owner}-test-token-2024")
}

fn advertise(owner: &str, prefix: &str) -> AdvertisePrefixRequest {
    AdvertisePrefixRequest {
        owner: owner.into(),
        token: token(owner),
        prefix: prefix.into(),
        protocol: Protocol::Bgp as i32,
        attributes: None,
    }
}

fn withdraw(owner: &str, prefix: &str) -> WithdrawPrefixRequest {
    WithdrawPrefixRequest {
        owner: owner.into(),
        token: token(owner),
        prefix: prefix.into(),
        protocol: Protocol::Bgp as i32,
    }
}

fn frr_path(frr: &Frr, prefix: &str) -> Option<String> {
    frr.route_as_path("ipv4", prefix)
}

#[test]
fn route_control_api_end_to_end() {
    let mut lab = Lab::new("api");
    tor_and_node(&mut lab);
    let frr = Frr::start(&mut lab, "tor", FRR);
    let dir_mode = |d: &std::path::Path| {
        std::fs::metadata(d)
            .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o7777)
            .unwrap()
    };
    // A mode the agent would never set, so any change shows.
    std::fs::set_permissions(lab.dir(), std::os::unix::fs::PermissionsExt::from_mode(0o711)).unwrap();
    let lab_dir_mode = dir_mode(lab.dir());
    let agent = Agent::start(
        &mut lab,
        "node",
        &json!({
            "node_name": "node-a",
            "node_ip": "10.0.0.10",
            "pod_cidr": "10.244.10.0/24",
            "owners": {
                "novaedge": {"token": "novaedge-test-token-2024", "allowed_prefixes": {"type": "host_only", "allowed_cidrs": ["10.0.0.0/8"]}},
                "novalb": {"token": "novalb-test-token-2024", "allowed_prefixes": {"type": "host_only", "allowed_cidrs": ["10.0.0.0/8"]}},
                "novanet": {"token": "novanet-test-token-2024", "allowed_prefixes": {"type": "subnet", "allowed_cidrs": ["10.244.0.0/16"]}},
                "admin": {"token": "admin-test-token-2024", "allowed_prefixes": {"type": "any"}}
            },
            "routing": {"peers": [{"neighbor_address": "10.0.0.1", "remote_as": 65000, "hold_time": 9, "keepalive": 3}]}
        }),
    );
    agent_established(&agent, "10.0.0.1");
    let socket = agent.socket.clone();
    let mode = std::fs::metadata(&socket)
        .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o777)
        .unwrap();
    assert_eq!(mode, 0o600, "socket mode");
    let socket_dir = socket.parent().unwrap();
    assert_eq!(
        (dir_mode(socket_dir), lab_dir_mode),
        (0o711, 0o711),
        "an existing socket directory keeps its mode"
    );

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut c = client(socket).await;
        let mut events = all_events(&mut c).await;
        let mut edge_events = c
            .stream_events(StreamEventsRequest {
                owner_filter: "novaedge".into(),
                event_types: vec!["prefix_advertised".into()],
            })
            .await
            .unwrap()
            .into_inner();

        // Sessions and authentication.
        let reg = c
            .register(RegisterRequest {
                owner: "novaedge".into(),
                token: token("novaedge"),
                reassert_intents: false,
            })
            .await
            .unwrap()
            .into_inner();
        assert!(reg.session_id.starts_with("novaedge-"));
        expect_event(&mut events, EventType::OwnerRegistered, "").await;
        let e = c
            .register(RegisterRequest {
                owner: "novaedge".into(),
                token: "wrong".into(),
                reassert_intents: false,
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::Unauthenticated);
        let e = c
            .register(RegisterRequest {
                owner: String::new(),
                token: "x".into(),
                reassert_intents: false,
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument);

        // A host route from novaedge reaches the ToR.
        c.advertise_prefix(advertise("novaedge", "10.96.0.10/32"))
            .await
            .unwrap();
        let ev = expect_event(&mut edge_events, EventType::PrefixAdvertised, "10.96.0.10/32").await;
        assert_eq!(ev.owner, "novaedge");
        assert_eq!(ev.metadata["peer"], "10.0.0.1", "published when the UPDATE went out");
        wait_until("the ToR to hold 10.96.0.10/32", SETTLE, || {
            match frr_path(&frr, "10.96.0.10/32") {
                Some(p) if p == "65010" => Ok(()),
                other => Err(format!("{other:?}")),
            }
        });

        // Policy: a /24 is not a host route; outside allowed CIDRs; bad input.
        let e = c
            .advertise_prefix(advertise("novaedge", "10.96.0.0/24"))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::PermissionDenied);
        expect_event(&mut events, EventType::PolicyViolation, "10.96.0.0/24").await;
        let e = c
            .advertise_prefix(advertise("novaedge", "192.0.2.1/32"))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::PermissionDenied);
        let e = c
            .advertise_prefix(advertise("novaedge", "not-a-prefix"))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument);
        let mut unspec = advertise("novaedge", "10.96.0.11/32");
        unspec.protocol = Protocol::Unspecified as i32;
        assert_eq!(
            c.advertise_prefix(unspec).await.unwrap_err().code(),
            Code::InvalidArgument
        );

        // Conflicts: another owner is refused, admin may override.
        let e = c
            .advertise_prefix(advertise("novalb", "10.96.0.10/32"))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::AlreadyExists);
        let ev = expect_event(&mut events, EventType::PolicyViolation, "novaedge").await;
        assert_eq!(ev.metadata["existing_owner"], "novaedge");
        c.advertise_prefix(advertise("admin", "10.96.0.10/32")).await.unwrap();

        // A subnet from novanet, with attributes.
        let mut req = advertise("novanet", "10.244.99.0/24");
        req.attributes = Some(PrefixAttributes {
            local_preference: 0,
            communities: vec!["65010:100".into()],
            med: 50,
            next_hop: String::new(),
        });
        c.advertise_prefix(req).await.unwrap();
        wait_until(
            "the ToR to hold 10.244.99.0/24 with MED 50 and the community",
            SETTLE,
            || {
                let v = frr.json("show bgp ipv4 unicast 10.244.99.0/24 json");
                let p = v["paths"][0].clone();
                if p["metric"] == 50 && p["community"]["string"] == "65010:100" {
                    Ok(())
                } else {
                    Err(p.to_string())
                }
            },
        );

        // A peer through the API: the ToR's IPv6 session.
        let peer = BgpPeer {
            neighbor_address: "fd00::1".into(),
            remote_as: 65000,
            keepalive: 3,
            hold_time: 9,
            description: "tor-v6".into(),
            address_families: vec![AddressFamily::Ipv6Unicast as i32],
            ..Default::default()
        };
        let bad = BgpPeer {
            hold_time: 5,
            keepalive: 3,
            ..peer.clone()
        };
        let e = c
            .apply_peer(ApplyPeerRequest {
                owner: "novanet".into(),
                token: token("novanet"),
                peer: Some(bad),
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "hold time below 3 x keepalive");
        let link_local = BgpPeer {
            neighbor_address: "fe80::1".into(),
            ..peer.clone()
        };
        let e = c
            .apply_peer(ApplyPeerRequest {
                owner: "novanet".into(),
                token: token("novanet"),
                peer: Some(link_local),
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument);
        assert!(e.message().contains("link-local"), "{}", e.message());
        c.apply_peer(ApplyPeerRequest {
            owner: "novanet".into(),
            token: token("novanet"),
            peer: Some(peer),
        })
        .await
        .unwrap();
        let ev = expect_event(&mut events, EventType::PeerUp, "fd00::1").await;
        assert_eq!(ev.owner, "novanet");
        wait_until("FRR to see the API peer", SETTLE, || {
            match frr.neighbor_state("fd00::10").as_str() {
                "Established" => Ok(()),
                s => Err(s.to_string()),
            }
        });

        // Status, with and without an owner filter.
        let all = c
            .get_status(GetStatusRequest {
                owner_filter: String::new(),
            })
            .await
            .unwrap()
            .into_inner();
        let v6 = all
            .peers
            .iter()
            .find(|p| p.neighbor_address == "fd00::1")
            .expect("API peer in status");
        assert_eq!(
            (v6.state.as_str(), v6.owner.as_str(), v6.description.as_str()),
            ("Established", "novanet", "tor-v6")
        );
        assert!(all
            .peers
            .iter()
            .any(|p| p.neighbor_address == "10.0.0.1" && p.owner == "_config"));
        let p = all.prefixes.iter().find(|p| p.prefix == "10.244.99.0/24").unwrap();
        assert_eq!((p.owner.as_str(), p.state.as_str()), ("novanet", "advertised"));
        let edge = c
            .get_status(GetStatusRequest {
                owner_filter: "novaedge".into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(edge.prefixes.len(), 1);
        assert!(edge.peers.is_empty());

        // Standalone BFD, and OSPF (whose failure is visible).
        c.enable_bfd(EnableBfdRequest {
            owner: "novanet".into(),
            token: token("novanet"),
            peer_address: "10.0.0.1".into(),
            ..Default::default()
        })
        .await
        .unwrap();
        c.enable_ospf(EnableOspfRequest {
            owner: "novanet".into(),
            token: token("novanet"),
            interface_name: "eth0".into(),
            area_id: "0.0.0.0".into(),
            ..Default::default()
        })
        .await
        .unwrap();
        let bad_area = EnableOspfRequest {
            owner: "novanet".into(),
            token: token("novanet"),
            interface_name: "eth0".into(),
            area_id: "x;y".into(),
            ..Default::default()
        };
        assert_eq!(c.enable_ospf(bad_area).await.unwrap_err().code(), Code::InvalidArgument);
        let mut st = GetStatusResponse::default();
        for _ in 0..100 {
            st = c
                .get_status(GetStatusRequest {
                    owner_filter: "novanet".into(),
                })
                .await
                .unwrap()
                .into_inner();
            if st
                .ospf_interfaces
                .first()
                .is_some_and(|o| o.state.starts_with("failed"))
                && st.bfd_sessions.iter().any(|b| b.peer_address == "10.0.0.1")
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let ospf = st.ospf_interfaces.first().expect("OSPF intent in status");
        assert!(ospf.state.contains("OSPF is off"), "{}", ospf.state);
        let ev = expect_event(&mut events, EventType::OspfNeighborDown, "ospf:eth0").await;
        assert_eq!(
            (ev.owner.as_str(), ev.metadata["state"].as_str()),
            ("novanet", "failed")
        );
        let bfd = st
            .bfd_sessions
            .iter()
            .find(|b| b.peer_address == "10.0.0.1")
            .expect("BFD intent");
        assert_eq!((bfd.min_rx_ms, bfd.min_tx_ms, bfd.detect_multiplier), (300, 300, 3));
        c.disable_bfd(DisableBfdRequest {
            owner: "novanet".into(),
            token: token("novanet"),
            peer_address: "10.0.0.1".into(),
        })
        .await
        .unwrap();
        let e = c
            .disable_bfd(DisableBfdRequest {
                owner: "novanet".into(),
                token: token("novanet"),
                peer_address: "10.0.0.1".into(),
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::NotFound);
        c.disable_ospf(DisableOspfRequest {
            owner: "novanet".into(),
            token: token("novanet"),
            interface_name: "eth0".into(),
        })
        .await
        .unwrap();

        // Withdrawals: admin still holds 10.96.0.10/32 after novaedge lets go.
        c.withdraw_prefix(withdraw("novaedge", "10.96.0.10/32")).await.unwrap();
        assert_eq!(
            c.withdraw_prefix(withdraw("novaedge", "10.96.0.10/32"))
                .await
                .unwrap_err()
                .code(),
            Code::NotFound
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(
            frr_path(&frr, "10.96.0.10/32").as_deref(),
            Some("65010"),
            "admin's intent keeps it"
        );
        c.withdraw_prefix(withdraw("admin", "10.96.0.10/32")).await.unwrap();
        expect_event(&mut events, EventType::PrefixWithdrawn, "10.96.0.10/32").await;
        wait_until("the ToR to drop 10.96.0.10/32", SETTLE, || {
            match frr_path(&frr, "10.96.0.10/32") {
                None => Ok(()),
                Some(p) => Err(p),
            }
        });

        // RemovePeer and Deregister with withdraw_all clean up.
        c.remove_peer(RemovePeerRequest {
            owner: "novanet".into(),
            token: token("novanet"),
            neighbor_address: "fd00::1".into(),
        })
        .await
        .unwrap();
        let e = c
            .remove_peer(RemovePeerRequest {
                owner: "novanet".into(),
                token: token("novanet"),
                neighbor_address: "fd00::1".into(),
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::NotFound);
        wait_until("FRR to lose the API peer", SETTLE, || {
            match frr.neighbor_state("fd00::10").as_str() {
                "Established" => Err("still up".to_string()),
                _ => Ok(()),
            }
        });
        c.deregister(DeregisterRequest {
            owner: "novanet".into(),
            token: token("novanet"),
            withdraw_all: true,
        })
        .await
        .unwrap();
        expect_event(&mut events, EventType::OwnerDeregistered, "").await;
        wait_until("the ToR to drop novanet's prefix", SETTLE, || {
            match frr_path(&frr, "10.244.99.0/24") {
                None => Ok(()),
                Some(p) => Err(p),
            }
        });
        let st = c
            .get_status(GetStatusRequest {
                owner_filter: "novanet".into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert!(st.prefixes.is_empty() && st.peers.is_empty());
        // Every kind of intent was counted, set and removed.
        let m = agent.get("/metrics").expect("metrics scrape");
        for (owner, kind, op) in [
            ("novanet", "peer", "remove"),
            ("admin", "prefix", "remove"),
            ("novanet", "bfd", "set"),
            ("novanet", "bfd", "remove"),
            ("novanet", "ospf", "set"),
            ("novanet", "ospf", "remove"),
        ] {
            let want =
                format!("novanet_routing_intents_total{{operation=\"{op}\",owner=\"{owner}\",type=\"{kind}\"}} 1");
            assert!(m.contains(&want), "metrics lack {want}");
        }
        // Every RPC is timed under its own name; streams are not.
        for method in ["GetStatus", "Deregister", "ApplyPeer"] {
            let want = format!("novanet_routing_grpc_request_duration_seconds_count{{method=\"{method}\"}}");
            assert!(m.contains(&want), "metrics lack {want}");
        }
        assert!(!m.contains("method=\"_unknown\""), "an RPC counted as _unknown");
        assert!(!m.contains("method=\"StreamEvents\""), "a stream timed as a request");
    });
}

fn bfd_sessions(agent: &Agent) -> Vec<String> {
    let v: serde_json::Value = serde_json::from_str(&agent.get("/status/bfd").unwrap_or_default()).unwrap_or_default();
    v.as_array()
        .map(|a| a.iter().filter_map(|s| s["peer"].as_str().map(String::from)).collect())
        .unwrap_or_default()
}

/// API peers are desired state, BGP and BFD apart: turning BFD off removes
/// the BFD session; a peer whose BFD session cannot be created is still
/// tracked, so removing its intent removes the peer.
#[test]
fn api_peers_are_applied_as_desired_state() {
    let mut lab = Lab::new("apipeer");
    tor_and_node(&mut lab);
    let agent = Agent::start(
        &mut lab,
        "node",
        &node_a(json!({
            "owners": {
                "novanet": {"token": "novanet-test-token-2024", "allowed_prefixes": {"type": "subnet", "allowed_cidrs": ["10.244.0.0/16"]}},
                "capped": {"token": "capped-test-token-2024", "allowed_prefixes": {"type": "any"}, "max_intents": 2}
            }
        })),
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut c = client(agent.socket.clone()).await;
        let apply = |peer: BgpPeer| ApplyPeerRequest {
            owner: "novanet".into(),
            token: token("novanet"),
            peer: Some(peer),
        };
        let tor = BgpPeer {
            neighbor_address: "10.0.0.1".into(),
            remote_as: 65000,
            bfd_enabled: true,
            ..Default::default()
        };
        c.apply_peer(apply(tor.clone())).await.unwrap();
        wait_until("the API peer's BFD session", SETTLE, || {
            let s = bfd_sessions(&agent);
            if s == ["10.0.0.1"] {
                Ok(())
            } else {
                Err(format!("{s:?}"))
            }
        });
        c.apply_peer(apply(BgpPeer {
            bfd_enabled: false,
            ..tor.clone()
        }))
        .await
        .unwrap();
        wait_until("the BFD session to go with bfd_enabled false", SETTLE, || {
            let s = bfd_sessions(&agent);
            if s.is_empty() {
                Ok(())
            } else {
                Err(format!("{s:?}"))
            }
        });
        assert!(!agent.peer_state("10.0.0.1").is_empty(), "the BGP session stays");

        // A source address the node does not have: the BGP peer is added,
        // its BFD session cannot be.
        c.apply_peer(apply(BgpPeer {
            neighbor_address: "10.0.0.5".into(),
            remote_as: 65005,
            bfd_enabled: true,
            source_address: "10.9.9.9".into(),
            ..Default::default()
        }))
        .await
        .unwrap();
        wait_until("the peer with a failing BFD session", SETTLE, || {
            if agent.peer("10.0.0.5").is_null() {
                Err("not configured".into())
            } else {
                Ok(())
            }
        });
        c.remove_peer(RemovePeerRequest {
            owner: "novanet".into(),
            token: token("novanet"),
            neighbor_address: "10.0.0.5".into(),
        })
        .await
        .unwrap();
        wait_until("the removed peer to leave the speaker", SETTLE, || {
            if agent.peer("10.0.0.5").is_null() {
                Ok(())
            } else {
                Err(format!("{}", agent.peer("10.0.0.5")))
            }
        });
        assert!(agent.peer("10.0.0.1").is_object(), "the other peer stays");

        // ConfigureBGP with the running settings changes nothing and says
        // nothing: the next event is the registration after it.
        let mut events = all_events(&mut c).await;
        c.configure_bgp(ConfigureBgpRequest {
            owner: "novanet".into(),
            token: token("novanet"),
            local_as: 65010,
            router_id: "10.0.0.10".into(),
        })
        .await
        .unwrap();
        c.register(RegisterRequest {
            owner: "novanet".into(),
            token: token("novanet"),
            reassert_intents: false,
        })
        .await
        .unwrap();
        loop {
            let e = tokio::time::timeout(SETTLE, events.message())
                .await
                .unwrap()
                .unwrap()
                .unwrap();
            assert_ne!(e.r#type, EventType::BgpConfigChanged as i32, "nothing changed: {e:?}");
            if e.r#type == EventType::OwnerRegistered as i32 {
                break;
            }
        }

        // Fields the agent cannot honour are refused, not ignored.
        let mut with_next_hop = advertise("capped", "198.51.100.9/32");
        with_next_hop.attributes = Some(PrefixAttributes {
            next_hop: "10.0.0.99".into(),
            ..Default::default()
        });
        let e = c.advertise_prefix(with_next_hop).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument);
        assert!(e.message().contains("next_hop"), "{}", e.message());
        let e = c
            .enable_bfd(EnableBfdRequest {
                owner: "novanet".into(),
                token: token("novanet"),
                peer_address: "10.0.0.1".into(),
                interface_name: "eth0".into(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument);
        assert!(e.message().contains("interface_name"), "{}", e.message());
        let e = c
            .advertise_prefix(advertise("capped", "198.51.100.1/24"))
            .await
            .unwrap_err();
        assert!(e.message().contains("did you mean 198.51.100.0/24"), "{}", e.message());

        // An owner holds at most max_intents; replacing one is fine.
        for p in ["198.51.100.1/32", "198.51.100.2/32"] {
            c.advertise_prefix(advertise("capped", p)).await.unwrap();
        }
        let e = c
            .advertise_prefix(advertise("capped", "198.51.100.3/32"))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
        assert!(e.message().contains("max_intents"), "{}", e.message());
        c.advertise_prefix(advertise("capped", "198.51.100.2/32"))
            .await
            .unwrap();
    });
}
