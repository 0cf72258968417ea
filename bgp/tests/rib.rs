//! The RIB: each decision step, multipath, attribute sharing, graceful
//! restart stale handling, and export rules.

use ipnet::IpNet;
use novanet_bgp::policy::{LocalPrefixes, PeerPolicy, Policy, PrefixMatch, Rule, Verdict};
use novanet_bgp::rib::decision::Step;
use novanet_bgp::rib::export::{ExportTarget, Pending};
use novanet_bgp::rib::*;
use novanet_bgp::wire::*;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn prefix(s: &str) -> IpNet {
    s.parse().unwrap()
}

fn rib_with_peers() -> Rib {
    let mut rib = Rib::new(Ipv4Addr::new(10, 0, 0, 10));
    // 1, 2: eBGP ToRs; 3: iBGP peer; 4: eBGP with a high router id.
    for (id, addr, rid, ibgp) in [
        (1, "10.0.1.1", "10.0.1.1", false),
        (2, "10.0.2.1", "10.0.2.1", false),
        (3, "10.0.3.1", "10.0.3.1", true),
        (4, "10.0.4.1", "10.9.9.9", false),
    ] {
        rib.set_peer(
            id,
            PeerInfo {
                address: ip(addr),
                router_id: rid.parse().unwrap(),
                ibgp,
                local: false,
            },
        );
    }
    rib
}

fn attrs(path: &[u32], nh: &str) -> PathAttributes {
    PathAttributes {
        as_path: AsPath::from_sequence(path.to_vec()),
        next_hop: Some(ip(nh)),
        ..Default::default()
    }
}

fn best_peer(rib: &Rib, p: &str) -> Option<PeerId> {
    rib.entry(&prefix(p)).and_then(|e| e.best()).map(|b| b.peer())
}

/// Installs two paths and checks that `winner` wins at `step`.
fn decide(a: (PeerId, PathAttributes), b: (PeerId, PathAttributes), winner: PeerId, step: Step) {
    for order in [[&a, &b], [&b, &a]] {
        let mut rib = rib_with_peers();
        for (peer, at) in order {
            let arc = rib.intern(at.clone());
            rib.announce(*peer, Nlri::new(prefix("192.0.2.0/24")), arc);
        }
        assert_eq!(best_peer(&rib, "192.0.2.0/24"), Some(winner), "{step:?}");
        let explained = rib.explain(&prefix("192.0.2.0/24"));
        assert_eq!(explained[1].1, Some(step), "the losing path lost at {step:?}");
    }
}

#[test]
fn step_local_pref() {
    let mut hi = attrs(&[65001, 65002], "10.0.1.1");
    hi.local_pref = Some(200);
    decide((1, hi), (2, attrs(&[65002], "10.0.2.1")), 1, Step::LocalPref);
}

#[test]
fn step_locally_originated() {
    let local = PathAttributes::default();
    let mut learned = attrs(&[65002], "10.0.2.1");
    learned.local_pref = Some(100);
    decide((LOCAL_PEER, local), (2, learned), LOCAL_PEER, Step::LocallyOriginated);
}

#[test]
fn step_as_path_length() {
    decide(
        (1, attrs(&[65001, 65009], "10.0.1.1")),
        (2, attrs(&[65002], "10.0.2.1")),
        2,
        Step::AsPathLength,
    );
}

#[test]
fn step_origin() {
    let mut inc = attrs(&[65001], "10.0.1.1");
    inc.origin = Origin::Incomplete;
    decide((1, inc), (2, attrs(&[65002], "10.0.2.1")), 2, Step::Origin);
}

#[test]
fn step_med_same_neighbour_as_only() {
    let mut low = attrs(&[65001], "10.0.1.1");
    low.med = Some(10);
    let mut high = attrs(&[65001], "10.0.2.1");
    high.med = Some(20);
    decide((2, high), (1, low), 1, Step::Med);
}

#[test]
fn step_ebgp_over_ibgp() {
    decide(
        (3, attrs(&[65001], "10.0.3.1")),
        (2, attrs(&[65002], "10.0.2.1")),
        2,
        Step::EbgpOverIbgp,
    );
}

#[test]
fn step_router_id() {
    // Same next hop so the two are not multipath siblings.
    decide(
        (4, attrs(&[65004], "10.0.9.1")),
        (2, attrs(&[65002], "10.0.9.1")),
        2,
        Step::RouterId,
    );
}

#[test]
fn step_peer_address() {
    let mut rib = rib_with_peers();
    rib.set_peer(
        5,
        PeerInfo {
            address: ip("10.0.5.1"),
            router_id: "10.0.1.1".parse().unwrap(),
            ibgp: false,
            local: false,
        },
    );
    for peer in [5, 1] {
        let a = rib.intern(attrs(&[65001], "10.0.9.1"));
        rib.announce(peer, Nlri::new(prefix("192.0.2.0/24")), a);
    }
    assert_eq!(best_peer(&rib, "192.0.2.0/24"), Some(1));
    assert_eq!(rib.explain(&prefix("192.0.2.0/24"))[1].1, Some(Step::PeerAddress));
}

#[test]
fn ecmp_over_two_tors() {
    let mut rib = rib_with_peers();
    let a = rib.intern(attrs(&[65001], "10.0.1.1"));
    let c1 = rib.announce(1, Nlri::new(prefix("192.0.2.0/24")), a).unwrap();
    assert_eq!(c1.best.as_ref().unwrap().next_hops.as_slice(), &[ip("10.0.1.1")]);
    // Second ToR in another AS with an equally long path: multipath.
    let b = rib.intern(attrs(&[65002], "10.0.2.1"));
    let c2 = rib.announce(2, Nlri::new(prefix("192.0.2.0/24")), b).unwrap();
    let mut hops = c2.best.unwrap().next_hops.to_vec();
    hops.sort();
    assert_eq!(hops, vec![ip("10.0.1.1"), ip("10.0.2.1")]);
    assert_eq!(rib.entry(&prefix("192.0.2.0/24")).unwrap().forwarding().len(), 2);
    // A longer path is not a sibling; an iBGP path is not either.
    let c = rib.intern(attrs(&[65004, 65005], "10.0.4.1"));
    assert!(rib.announce(4, Nlri::new(prefix("192.0.2.0/24")), c).is_none());
    let d = rib.intern(attrs(&[65003], "10.0.3.1"));
    assert!(rib.announce(3, Nlri::new(prefix("192.0.2.0/24")), d).is_none());
    // One ToR withdraws: back to one next hop.
    let c3 = rib.withdraw(1, Nlri::new(prefix("192.0.2.0/24"))).unwrap();
    assert_eq!(c3.best.unwrap().next_hops.as_slice(), &[ip("10.0.2.1")]);
}

#[test]
fn withdraw_last_path_removes_the_prefix() {
    let mut rib = rib_with_peers();
    let a = rib.intern(attrs(&[65001], "10.0.1.1"));
    rib.announce(1, Nlri::new(prefix("192.0.2.0/24")), a);
    let c = rib.withdraw(1, Nlri::new(prefix("192.0.2.0/24"))).unwrap();
    assert!(c.best.is_none() && c.old.is_some());
    assert!(rib.is_empty());
    drop(c);
    rib.collect_unused_attributes();
    assert_eq!(rib.attribute_sets(), 0, "the attribute set left with its last route");
    assert!(rib.withdraw(1, Nlri::new(prefix("192.0.2.0/24"))).is_none());
}

#[test]
fn a_million_routes_share_few_attribute_sets() {
    let mut rib = rib_with_peers();
    let sets: Vec<PathAttributes> = (0..4).map(|i| attrs(&[65001, 64500 + i], "10.0.1.1")).collect();
    for i in 0..1_000_000u32 {
        // A fresh Arc per route, as a peer task would deliver them: the
        // RIB must fold them into the shared sets.
        let a = Arc::new(sets[(i % 4) as usize].clone());
        let p = IpNet::V4(ipnet::Ipv4Net::new(Ipv4Addr::from(0x0a00_0000 + (i << 8)), 24).unwrap());
        rib.announce(1, Nlri::new(p), a);
    }
    assert_eq!(rib.len(), 1_000_000);
    assert_eq!(rib.attribute_sets(), 4);
    assert_eq!(rib.paths_from(1), 1_000_000);
    // The peer goes away: its paths leave a slice of prefixes at a time.
    let prefixes = rib.prefixes_with(1, PathSelector::All);
    assert_eq!(prefixes.len(), 1_000_000);
    let mut changed = 0;
    for slice in prefixes.chunks(4096) {
        let changes = rib.remove_paths(1, PathSelector::All, slice);
        assert!(changes.iter().all(|c| c.best.is_none() && c.old.is_some()));
        changed += changes.len();
    }
    assert_eq!((changed, rib.len(), rib.paths_from(1)), (1_000_000, 0, 0));
    rib.collect_unused_attributes();
    assert_eq!(rib.attribute_sets(), 0);
}

/// Removes what `which` selects of a peer's paths, as the speaker does.
fn sweep(rib: &mut Rib, peer: PeerId, which: PathSelector) -> Vec<BestChange> {
    let prefixes = rib.prefixes_with(peer, which);
    rib.remove_paths(peer, which, &prefixes)
}

#[test]
fn graceful_restart_stale_paths_are_swept() {
    let mut rib = rib_with_peers();
    for p in ["192.0.2.0/24", "198.51.100.0/24", "2001:db8::/32"] {
        let a = rib.intern(attrs(&[65001], "10.0.1.1"));
        rib.announce(1, Nlri::new(prefix(p)), a);
    }
    assert_eq!(rib.mark_stale(1), 3);
    // Re-learned after the restart: no longer stale.
    let a = rib.intern(attrs(&[65001], "10.0.1.1"));
    rib.announce(1, Nlri::new(prefix("192.0.2.0/24")), a);
    // End-of-RIB for IPv4 sweeps that family's stale paths only.
    let swept = sweep(&mut rib, 1, PathSelector::StaleOf(Family::IPV4_UNICAST));
    assert_eq!(
        swept.iter().map(|c| c.prefix).collect::<Vec<_>>(),
        vec![prefix("198.51.100.0/24")]
    );
    assert_eq!(
        sweep(&mut rib, 1, PathSelector::Stale).len(),
        1,
        "the IPv6 stale path goes with the timer"
    );
    assert_eq!(rib.len(), 1);
}

fn target(policy: PeerPolicy, remote_as: u32) -> ExportTarget {
    ExportTarget::new(
        9,
        65010,
        remote_as,
        policy,
        vec![Family::IPV4_UNICAST],
        Some("10.0.0.10".parse().unwrap()),
        None,
        false,
    )
}

fn best(peer: PeerId, a: PathAttributes) -> Best {
    Best {
        peer,
        next_hops: a.next_hop.into_iter().collect(),
        attrs: Arc::new(a),
    }
}

#[test]
fn default_export_sends_only_own_prefixes_with_next_hop_self() {
    let mut t = target(PeerPolicy::Default, 65000);
    let own = best(LOCAL_PEER, PathAttributes::default());
    let out = t.export(&prefix("10.244.10.0/24"), &own, false).unwrap();
    assert_eq!(out.as_path, AsPath::from_sequence(vec![65010]));
    assert_eq!(out.next_hop, Some(ip("10.0.0.10")));
    let learned = best(1, attrs(&[65001], "10.0.1.1"));
    let why = t.export(&prefix("192.0.2.0/24"), &learned, false).unwrap_err();
    assert_eq!(why.verdict, Verdict::Reject);
    assert!(why.reason.to_string().contains("default export"), "{}", why.reason);
}

#[test]
fn export_all_rewrites_for_ebgp_and_shares_the_result() {
    let mut t = target(PeerPolicy::All, 65000);
    let mut a = attrs(&[65001], "10.0.1.1");
    a.med = Some(5);
    a.local_pref = Some(300);
    let b = best(1, a);
    let out1 = t.export(&prefix("192.0.2.0/24"), &b, false).unwrap();
    let out2 = t.export(&prefix("198.51.100.0/24"), &b, false).unwrap();
    assert!(Arc::ptr_eq(&out1, &out2), "one rewrite per attribute set");
    assert_eq!(out1.as_path, AsPath::from_sequence(vec![65010, 65001]));
    assert_eq!((out1.med, out1.local_pref), (None, None));
}

#[test]
fn a_draining_node_marks_only_what_it_originates() {
    use novanet_bgp::wire::community::GRACEFUL_SHUTDOWN;
    let mut t = target(PeerPolicy::All, 65000);
    t.draining = true;
    let own = best(LOCAL_PEER, PathAttributes::default());
    let out = t.export(&prefix("10.244.10.0/24"), &own, false).unwrap();
    assert_eq!(out.as_path, AsPath::from_sequence(vec![65010; 4]));
    assert_eq!(out.communities, vec![GRACEFUL_SHUTDOWN]);
    // Passed-on routes are not this node's to drain.
    let learned = best(1, attrs(&[65001], "10.0.1.1"));
    let out = t.export(&prefix("192.0.2.0/24"), &learned, false).unwrap();
    assert_eq!(out.as_path, AsPath::from_sequence(vec![65010, 65001]));
    assert!(out.communities.is_empty());
    // To an iBGP peer: LOCAL_PREF 0 instead of a longer path.
    let mut ibgp = target(PeerPolicy::All, 65010);
    ibgp.draining = true;
    let out = ibgp.export(&prefix("10.244.10.0/24"), &own, false).unwrap();
    assert_eq!((out.local_pref, out.as_path.clone()), (Some(0), AsPath::default()));
    assert_eq!(out.communities, vec![GRACEFUL_SHUTDOWN]);
}

#[test]
fn an_ipv4_and_an_ipv6_prefix_of_one_attribute_set_keep_their_next_hops() {
    let mut t = ExportTarget::new(
        9,
        65010,
        65000,
        PeerPolicy::All,
        vec![Family::IPV4_UNICAST, Family::IPV6_UNICAST],
        Some("10.0.0.10".parse().unwrap()),
        Some("fd00::10".parse().unwrap()),
        false,
    );
    let own = best(LOCAL_PEER, PathAttributes::default());
    let v4 = t.export(&prefix("10.244.10.0/24"), &own, false).unwrap();
    let v6 = t.export(&prefix("fd10:244:10::/64"), &own, false).unwrap();
    assert_eq!(v4.next_hop, Some(ip("10.0.0.10")));
    assert_eq!(v6.next_hop, Some(ip("fd00::10")));
}

#[test]
fn export_never_loops_or_leaks() {
    let mut t = target(PeerPolicy::All, 65001);
    let b = best(1, attrs(&[65001], "10.0.1.1"));
    assert!(t
        .export(&prefix("192.0.2.0/24"), &b, false)
        .unwrap_err()
        .reason
        .to_string()
        .contains("AS path"));
    let mut na = attrs(&[65002], "10.0.2.1");
    na.communities.push(community::NO_EXPORT);
    assert!(t
        .export(&prefix("192.0.2.0/24"), &best(2, na), false)
        .unwrap_err()
        .reason
        .to_string()
        .contains("NO_EXPORT"));
    let mut nadv = attrs(&[65002], "10.0.2.1");
    nadv.communities.push(community::NO_ADVERTISE);
    assert!(t
        .export(&prefix("192.0.2.0/24"), &best(2, nadv), false)
        .unwrap_err()
        .reason
        .to_string()
        .contains("NO_ADVERTISE"));
    let self_learned = Best {
        peer: 9,
        ..best(2, attrs(&[65002], "10.0.2.1"))
    };
    assert!(t.export(&prefix("192.0.2.0/24"), &self_learned, false).is_err());
    let v6 = best(LOCAL_PEER, PathAttributes::default());
    assert!(t
        .export(&prefix("2001:db8::/32"), &v6, false)
        .unwrap_err()
        .reason
        .to_string()
        .contains("family"));
}

#[test]
fn ibgp_export_keeps_path_and_sets_local_pref() {
    let mut t = target(PeerPolicy::All, 65010);
    let out = t
        .export(&prefix("192.0.2.0/24"), &best(1, attrs(&[65001], "10.0.1.1")), false)
        .unwrap();
    assert_eq!(out.as_path, AsPath::from_sequence(vec![65001]));
    assert_eq!(out.local_pref, Some(100));
    assert_eq!(out.next_hop, Some(ip("10.0.1.1")));
    assert!(t
        .export(&prefix("192.0.2.0/24"), &best(3, attrs(&[65001], "10.0.3.1")), true)
        .is_err());
}

#[test]
fn named_policy_by_prefix_range_and_community() {
    let policy = Policy {
        rules: vec![
            Rule {
                prefixes: vec![PrefixMatch {
                    prefix: prefix("10.0.0.0/8"),
                    ge: None,
                    le: Some(24),
                }],
                as_path_contains: None,
                community: None,
                action: Verdict::Accept,
                set: None,
            },
            Rule {
                prefixes: vec![],
                as_path_contains: None,
                community: Some("65001:666".parse().unwrap()),
                action: Verdict::Reject,
                set: None,
            },
        ],
        default: Verdict::Reject,
    };
    let mut t = target(PeerPolicy::Named("tor-out".into(), Arc::new(policy)), 65000);
    let b = best(1, attrs(&[65001], "10.0.1.1"));
    assert!(t.export(&prefix("10.1.0.0/16"), &b, false).is_ok());
    assert!(
        t.export(&prefix("10.1.1.0/25"), &b, false).is_err(),
        "longer than le 24"
    );
    let why = t.export(&prefix("192.0.2.0/24"), &b, false).unwrap_err();
    assert_eq!(why.reason.to_string(), "policy tor-out default");
}

#[test]
fn communities_are_checked_when_the_configuration_is_read() {
    use novanet_bgp::policy::Community;
    assert_eq!("65001:666".parse::<Community>().unwrap().0, 65001 << 16 | 666);
    assert_eq!(
        "no-export".parse::<Community>().unwrap().0,
        novanet_bgp::wire::community::NO_EXPORT
    );
    for bad in ["65001:", "65001:70000", "65001-666", "no_exprot", ""] {
        let e = bad.parse::<Community>().unwrap_err();
        assert!(e.contains("is not a community"), "{bad}: {e}");
    }
    let rule: Result<Rule, _> = serde_json::from_str(r#"{"community": "6500l:666", "action": "reject"}"#);
    let e = rule.unwrap_err().to_string();
    assert!(e.contains("\"6500l:666\" is not a community"), "{e}");
}

#[test]
fn default_import_refuses_own_pod_cidr_and_default_route() {
    use novanet_bgp::policy::import_default;
    let local = LocalPrefixes {
        pod_cidrs: vec![prefix("10.244.10.0/24")],
        accept_default_route: false,
    };
    assert_eq!(
        import_default(&local, &prefix("10.244.10.0/24")).verdict,
        Verdict::Reject
    );
    assert_eq!(
        import_default(&local, &prefix("10.244.10.128/25")).verdict,
        Verdict::Reject
    );
    assert_eq!(
        import_default(&local, &prefix("10.244.0.0/16")).verdict,
        Verdict::Reject
    );
    assert_eq!(import_default(&local, &prefix("0.0.0.0/0")).verdict, Verdict::Reject);
    assert_eq!(
        import_default(&local, &prefix("10.244.11.0/24")).verdict,
        Verdict::Accept
    );
}

#[test]
fn accept_default_route_accepts_the_default_route_of_both_families() {
    use novanet_bgp::policy::import_default;
    let local = LocalPrefixes {
        pod_cidrs: vec![prefix("10.244.10.0/24"), prefix("fd00:244:10::/64")],
        accept_default_route: true,
    };
    assert_eq!(import_default(&local, &prefix("0.0.0.0/0")).verdict, Verdict::Accept);
    assert_eq!(import_default(&local, &prefix("::/0")).verdict, Verdict::Accept);
    // Other overlaps stay refused.
    assert_eq!(
        import_default(&local, &prefix("10.244.0.0/16")).verdict,
        Verdict::Reject
    );
}

#[test]
fn pending_coalesces_and_packs_withdrawals_first() {
    let mut p = Pending::default();
    let a = Arc::new(attrs(&[65010], "10.0.0.10"));
    p.announce(prefix("192.0.2.0/24"), a.clone());
    p.withdraw(prefix("192.0.2.0/24"));
    p.announce(prefix("198.51.100.0/24"), a.clone());
    p.announce(prefix("203.0.113.0/24"), a);
    assert_eq!(p.len(), 3);
    let mut buf = bytes::BytesMut::new();
    assert_eq!(p.encode_all(&SessionCodec::default(), &mut buf), (2, 1));
    assert!(p.is_empty());
    let len = frame(&buf, MAX_MESSAGE_LEN).unwrap().unwrap();
    let Message::Update(first) = decode_message(&buf[..len], &SessionCodec::default()).unwrap() else {
        panic!()
    };
    assert_eq!(first.withdrawn.len(), 1, "withdrawals first");
    let Message::Update(second) = decode_message(&buf[len..], &SessionCodec::default()).unwrap() else {
        panic!()
    };
    assert_eq!(second.nlri.len(), 2, "one UPDATE for both prefixes sharing attributes");
}

#[test]
fn an_advertisement_shapes_only_the_nodes_own_routes() {
    let adv = novanet_bgp::policy::Advertise {
        name: "NovaBGPAdvertisement tor".into(),
        withheld: vec![(prefix("10.244.11.0/24"), "podCIDRs: false".into())],
        communities: vec![64512 << 16 | 100],
        large_communities: vec![novanet_bgp::wire::types::LargeCommunity {
            global_admin: 4200000000,
            local1: 1,
            local2: 2,
        }],
        local_pref: Some(300),
        prepend: 2,
    };
    let policy = PeerPolicy::Advertise(Arc::new(adv));
    let own = best(LOCAL_PEER, PathAttributes::default());
    // External: communities added, the AS prepended twice more; no
    // LOCAL_PREF.
    let mut ebgp = target(policy.clone(), 65001);
    let out = ebgp.export(&prefix("10.96.0.0/24"), &own, false).unwrap();
    assert_eq!(out.as_path, AsPath::from_sequence(vec![65010, 65010, 65010]));
    assert_eq!(out.communities, vec![64512 << 16 | 100]);
    assert_eq!(out.large_communities.len(), 1);
    assert_eq!(out.local_pref, None);
    // Withheld, and learned routes never go out.
    let why = ebgp.export(&prefix("10.244.11.0/24"), &own, false).unwrap_err();
    assert!(why.reason.to_string().contains("podCIDRs: false"), "{}", why.reason);
    let learned = best(1, attrs(&[65002], "10.0.1.1"));
    assert!(ebgp.export(&prefix("192.0.2.0/24"), &learned, false).is_err());
    // Internal: LOCAL_PREF, no prepend.
    let mut ibgp = target(policy, 65010);
    let out = ibgp.export(&prefix("10.96.0.0/24"), &own, false).unwrap();
    assert_eq!(out.local_pref, Some(300));
    assert!(out.as_path.segments.is_empty(), "{:?}", out.as_path);
}

#[test]
fn a_route_server_passes_routes_on_transparently() {
    // RFC 7947 2.2: to a client, another client's route keeps its AS
    // path, next hop and MED; the server's own routes go as to any peer;
    // a client never gets a route whose path holds its own AS.
    let mut t = target(PeerPolicy::All, 65003);
    t.transparent = true;
    let mut from_client = attrs(&[65002], "10.0.0.12");
    from_client.med = Some(5);
    let b = best(1, from_client);
    let out = t.export(&prefix("10.244.12.0/24"), &b, false).unwrap();
    assert_eq!(out.as_path, AsPath::from_sequence(vec![65002]));
    assert_eq!(out.next_hop, Some(ip("10.0.0.12")));
    assert_eq!(out.med, Some(5));
    let own = best(LOCAL_PEER, PathAttributes::default());
    let out = t.export(&prefix("10.244.10.0/24"), &own, false).unwrap();
    assert_eq!(out.as_path, AsPath::from_sequence(vec![65010]));
    assert_eq!(out.next_hop, Some(ip("10.0.0.10")));
    let its_own = best(1, attrs(&[65003], "10.0.0.13"));
    assert!(t.export(&prefix("10.244.13.0/24"), &its_own, false).is_err());
    // Not a route server: the usual rewrite.
    let mut plain = target(PeerPolicy::All, 65003);
    let out = plain.export(&prefix("10.244.12.0/24"), &b, false).unwrap();
    assert_eq!(out.as_path, AsPath::from_sequence(vec![65010, 65002]));
    assert_eq!((out.next_hop, out.med), (Some(ip("10.0.0.10")), None));
}
