//! Wire codec: encode/decode vectors per message type, round trips, and
//! the RFC 7606 action of each malformed-attribute class.

use bytes::BytesMut;
use ipnet::IpNet;
use novanet_bgp::wire::attributes::attr_type;
use novanet_bgp::wire::error::{code, subcode};
use novanet_bgp::wire::update::{decode_update, pack_announcements, pack_withdrawals};
use novanet_bgp::wire::*;
use std::net::{IpAddr, Ipv4Addr};

fn hex(s: &str) -> Vec<u8> {
    let s: String = s.split_whitespace().collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

const MARKER_HEX: &str = "ffffffffffffffffffffffffffffffff";

fn codec4() -> SessionCodec {
    SessionCodec::default()
}

fn codec2() -> SessionCodec {
    SessionCodec {
        four_octet_as: false,
        ..Default::default()
    }
}

#[test]
fn keepalive_vector() {
    let bytes = hex(&format!("{MARKER_HEX} 0013 04"));
    assert_eq!(decode_message(&bytes, &codec4()).unwrap(), Message::Keepalive);
    assert_eq!(message_bytes(&Message::Keepalive, &codec4()).to_vec(), bytes);
}

#[test]
fn open_vector() {
    // AS 65001, hold 180, id 1.1.1.1, MP ipv4-unicast, route refresh,
    // 4-octet AS 65001: one capability per optional parameter.
    let bytes = hex(&format!(
        "{MARKER_HEX} 0031 01 04 fde9 00b4 01010101 14 \
         0206 0104 0001 0001 \
         0202 0200 \
         0206 4104 0000fde9"
    ));
    let open = Open {
        version: 4,
        asn: 65001,
        hold_time: 180,
        router_id: Ipv4Addr::new(1, 1, 1, 1),
        capabilities: vec![
            Capability::Multiprotocol(Family::IPV4_UNICAST),
            Capability::RouteRefresh,
            Capability::FourOctetAs(65001),
        ],
    };
    assert_eq!(decode_message(&bytes, &codec4()).unwrap(), Message::Open(open.clone()));
    assert_eq!(message_bytes(&Message::Open(open), &codec4()).to_vec(), bytes);
}

#[test]
fn open_with_four_octet_asn_uses_as_trans() {
    let open = Open {
        version: 4,
        asn: 4_200_000_001,
        hold_time: 90,
        router_id: Ipv4Addr::new(10, 0, 0, 1),
        capabilities: vec![Capability::FourOctetAs(4_200_000_001)],
    };
    let bytes = message_bytes(&Message::Open(open.clone()), &codec4());
    assert_eq!(&bytes[20..22], &AS_TRANS.to_be_bytes());
    assert_eq!(decode_message(&bytes, &codec4()).unwrap(), Message::Open(open));
}

#[test]
fn open_capabilities_round_trip() {
    let open = Open {
        version: 4,
        asn: 65010,
        hold_time: 9,
        router_id: Ipv4Addr::new(10, 0, 0, 10),
        capabilities: vec![
            Capability::Multiprotocol(Family::IPV4_UNICAST),
            Capability::Multiprotocol(Family::IPV6_UNICAST),
            Capability::RouteRefresh,
            Capability::EnhancedRouteRefresh,
            Capability::FourOctetAs(65010),
            Capability::GracefulRestart(GracefulRestart {
                restarting: true,
                notification: true,
                restart_time: 120,
                families: vec![GracefulRestartFamily {
                    family: Family::IPV4_UNICAST,
                    forwarding_preserved: true,
                }],
            }),
            Capability::AddPath(vec![(
                Family::IPV4_UNICAST,
                AddPathMode {
                    receive: true,
                    send: true,
                },
            )]),
            Capability::ExtendedNextHop(vec![(Family::IPV4_UNICAST, AFI_IPV6)]),
            Capability::ExtendedMessage,
            Capability::Unknown {
                code: 73,
                value: b"\x04tor1\x00".to_vec(),
            },
        ],
    };
    let bytes = message_bytes(&Message::Open(open.clone()), &codec4());
    assert_eq!(decode_message(&bytes, &codec4()).unwrap(), Message::Open(open));
}

#[test]
fn open_errors_name_their_notification() {
    let bad_version = hex(&format!("{MARKER_HEX} 001d 01 03 fde9 00b4 01010101 00"));
    let e = decode_message(&bad_version, &codec4()).unwrap_err();
    assert_eq!((e.code, e.subcode), (code::OPEN, subcode::UNSUPPORTED_VERSION));
    let bad_hold = hex(&format!("{MARKER_HEX} 001d 01 04 fde9 0002 01010101 00"));
    let e = decode_message(&bad_hold, &codec4()).unwrap_err();
    assert_eq!((e.code, e.subcode), (code::OPEN, subcode::UNACCEPTABLE_HOLD_TIME));
    let zero_id = hex(&format!("{MARKER_HEX} 001d 01 04 fde9 00b4 00000000 00"));
    let e = decode_message(&zero_id, &codec4()).unwrap_err();
    assert_eq!((e.code, e.subcode), (code::OPEN, subcode::BAD_BGP_IDENTIFIER));
}

#[test]
fn header_errors() {
    let mut bad_marker = hex(&format!("{MARKER_HEX} 0013 04"));
    bad_marker[3] = 0;
    let e = frame(&bad_marker, MAX_MESSAGE_LEN).unwrap_err();
    assert_eq!(
        (e.code, e.subcode),
        (code::MESSAGE_HEADER, subcode::CONNECTION_NOT_SYNCHRONIZED)
    );
    let bad_len = hex(&format!("{MARKER_HEX} 0014 04 00"));
    let e = frame(&bad_len, MAX_MESSAGE_LEN).unwrap_err();
    assert_eq!((e.code, e.subcode), (code::MESSAGE_HEADER, subcode::BAD_MESSAGE_LENGTH));
    let bad_type = hex(&format!("{MARKER_HEX} 0013 09"));
    let e = frame(&bad_type, MAX_MESSAGE_LEN).unwrap_err();
    assert_eq!((e.code, e.subcode), (code::MESSAGE_HEADER, subcode::BAD_MESSAGE_TYPE));
    // A partial message asks for more bytes.
    assert_eq!(
        frame(&hex(&format!("{MARKER_HEX} 0017 02 00")), MAX_MESSAGE_LEN).unwrap(),
        None
    );
}

#[test]
fn update_vector_ipv4() {
    let bytes = hex(&format!(
        "{MARKER_HEX} 002f 02 0000 0014 \
         40 01 01 00 \
         40 02 06 02 01 0000fde9 \
         40 03 04 0a000001 \
         18 c00002"
    ));
    let Message::Update(u) = decode_message(&bytes, &codec4()).unwrap() else {
        panic!("not an update")
    };
    assert_eq!(u.nlri, vec![Nlri::new("192.0.2.0/24".parse().unwrap())]);
    assert_eq!(u.attrs.origin, Origin::Igp);
    assert_eq!(u.attrs.as_path, AsPath::from_sequence(vec![65001]));
    assert_eq!(u.attrs.next_hop, Some(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1))));
    assert!(u.treat_as_withdraw.is_none());
    assert_eq!(message_bytes(&Message::Update(u), &codec4()).to_vec(), bytes);
}

#[test]
fn update_vector_ipv6_mp_reach_with_link_local() {
    let bytes = hex(&format!(
        "{MARKER_HEX} 005c 02 0000 0045 \
         80 0e 2c 0002 01 20 20010db8000000000000000000000001 fe800000000000000000000000000001 00 \
            30 20010db80001 \
         40 01 01 00 \
         40 02 06 02 01 0000fde9 \
         "
    ));
    let len = bytes.len();
    let mut fixed = bytes.clone();
    fixed[16..18].copy_from_slice(&(len as u16).to_be_bytes());
    let alen = len - 19 - 4;
    fixed[21..23].copy_from_slice(&(alen as u16).to_be_bytes());
    let Message::Update(u) = decode_message(&fixed, &codec4()).unwrap() else {
        panic!("not an update")
    };
    let mp = u.mp_reach.clone().unwrap();
    assert_eq!(mp.family, Family::IPV6_UNICAST);
    assert_eq!(mp.nlri, vec![Nlri::new("2001:db8:1::/48".parse().unwrap())]);
    assert_eq!(mp.next_hop.global, "2001:db8::1".parse::<IpAddr>().unwrap());
    assert_eq!(mp.next_hop.link_local, Some("fe80::1".parse().unwrap()));
    let (n, nh, ll) = u.announcements().next().unwrap();
    assert_eq!(
        (n.prefix.to_string(), nh, ll),
        (
            "2001:db8:1::/48".into(),
            Some(mp.next_hop.global),
            mp.next_hop.link_local
        )
    );
    assert_eq!(message_bytes(&Message::Update(u), &codec4()).to_vec(), fixed);
}

#[test]
fn end_of_rib_markers() {
    for f in [Family::IPV4_UNICAST, Family::IPV6_UNICAST] {
        let bytes = message_bytes(&Message::Update(Update::end_of_rib(f)), &codec4());
        let Message::Update(u) = decode_message(&bytes, &codec4()).unwrap() else {
            panic!()
        };
        assert_eq!(u.end_of_rib, Some(f));
    }
    assert_eq!(
        message_bytes(&Message::Update(Update::end_of_rib(Family::IPV4_UNICAST)), &codec4()).len(),
        23
    );
}

#[test]
fn notification_with_shutdown_communication() {
    let n = Notification::cease_with_message(subcode::ADMIN_SHUTDOWN, "maintenance: node drained");
    let bytes = message_bytes(&Message::Notification(n.clone()), &codec4());
    assert_eq!(bytes[19..21], [6, 2]);
    assert_eq!(bytes[21] as usize, "maintenance: node drained".len());
    let Message::Notification(back) = decode_message(&bytes, &codec4()).unwrap() else {
        panic!()
    };
    assert_eq!(
        back.shutdown_communication().as_deref(),
        Some("maintenance: node drained")
    );
    assert!(back.to_string().contains("maintenance: node drained"));
    // Long messages are cut at a character boundary to 255 octets.
    let long = "é".repeat(200);
    let n = Notification::cease_with_message(subcode::ADMIN_RESET, &long);
    let text = n.shutdown_communication().unwrap();
    assert!(text.len() <= 255 && text.chars().all(|c| c == 'é'));
}

#[test]
fn route_refresh_vector() {
    let bytes = hex(&format!("{MARKER_HEX} 0017 05 0002 00 01"));
    let rr = RouteRefresh {
        family: Family::IPV6_UNICAST,
        subtype: RefreshSubtype::Request,
    };
    assert_eq!(decode_message(&bytes, &codec4()).unwrap(), Message::RouteRefresh(rr));
    assert_eq!(message_bytes(&Message::RouteRefresh(rr), &codec4()).to_vec(), bytes);
    let bad = hex(&format!("{MARKER_HEX} 0018 05 0002 00 01 00"));
    let e = decode_message(&bad, &codec4()).unwrap_err();
    assert_eq!(
        (e.code, e.subcode),
        (code::ROUTE_REFRESH, subcode::INVALID_MESSAGE_LENGTH)
    );
}

#[test]
fn two_octet_session_rebuilds_four_octet_path() {
    let attrs = PathAttributes {
        as_path: AsPath::from_sequence(vec![65001, 4_200_000_007, 65003]),
        next_hop: Some(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1))),
        aggregator: Some(Aggregator {
            asn: 4_200_000_007,
            address: Ipv4Addr::new(10, 9, 9, 9),
        }),
        ..Default::default()
    };
    let u = Update {
        attrs: attrs.clone(),
        nlri: vec![Nlri::new("198.51.100.0/24".parse().unwrap())],
        ..Default::default()
    };
    let bytes = message_bytes(&Message::Update(u.clone()), &codec2());
    // The AS_PATH on the wire holds AS_TRANS for the 4-octet AS.
    let Message::Update(raw) = decode_message(
        &bytes,
        &SessionCodec {
            four_octet_as: true,
            ..codec2()
        },
    )
    .unwrap_or(Message::Keepalive) else {
        // Decoding 2-octet bytes as 4-octet is malformed: treat as withdraw.
        unreachable!()
    };
    assert!(raw.treat_as_withdraw.is_some() || raw.attrs.as_path != attrs.as_path);
    let Message::Update(back) = decode_message(&bytes, &codec2()).unwrap() else {
        panic!()
    };
    assert_eq!(back.attrs.as_path, attrs.as_path);
    assert_eq!(back.attrs.aggregator, attrs.aggregator);
}

#[test]
fn packing_splits_at_message_size_and_keeps_every_prefix() {
    let attrs = PathAttributes {
        as_path: AsPath::from_sequence(vec![65010]),
        next_hop: Some(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 10))),
        ..Default::default()
    };
    let prefixes: Vec<Nlri> = (0..5000u32)
        .map(|i| {
            Nlri::new(IpNet::V4(
                ipnet::Ipv4Net::new(Ipv4Addr::from(0x0a00_0000 + (i << 8)), 24).unwrap(),
            ))
        })
        .collect();
    let mut buf = BytesMut::new();
    pack_announcements(&attrs, &prefixes, &codec4(), &mut buf);
    pack_withdrawals(&prefixes, &codec4(), &mut buf);
    let (mut announced, mut withdrawn, mut messages) = (Vec::new(), Vec::new(), 0);
    let mut rest = &buf[..];
    while let Some(len) = frame(rest, MAX_MESSAGE_LEN).unwrap() {
        assert!(len <= MAX_MESSAGE_LEN);
        let Message::Update(u) = decode_message(&rest[..len], &codec4()).unwrap() else {
            panic!()
        };
        announced.extend(u.nlri.iter().map(|n| n.prefix));
        withdrawn.extend(u.withdrawn.iter().map(|n| n.prefix));
        rest = &rest[len..];
        messages += 1;
    }
    assert!(rest.is_empty());
    let want: Vec<IpNet> = prefixes.iter().map(|n| n.prefix).collect();
    assert_eq!(announced, want);
    assert_eq!(withdrawn, want);
    // 5000 /24s take 4 bytes each: about 1000 per message.
    assert!(messages <= 12, "{messages} messages");
}

#[test]
fn packing_ipv6_uses_mp_reach_and_mp_unreach() {
    let attrs = PathAttributes {
        as_path: AsPath::from_sequence(vec![65010]),
        next_hop: Some("2001:db8::a".parse().unwrap()),
        ..Default::default()
    };
    let prefixes: Vec<Nlri> = (0..3000u128)
        .map(|i| {
            Nlri::new(IpNet::V6(
                ipnet::Ipv6Net::new(std::net::Ipv6Addr::from((0x2001_0db8u128 << 96) + (i << 64)), 64).unwrap(),
            ))
        })
        .collect();
    let mut buf = BytesMut::new();
    pack_announcements(&attrs, &prefixes, &codec4(), &mut buf);
    pack_withdrawals(&prefixes, &codec4(), &mut buf);
    let (mut a, mut w) = (0, 0);
    let mut rest = &buf[..];
    while let Some(len) = frame(rest, MAX_MESSAGE_LEN).unwrap() {
        let Message::Update(u) = decode_message(&rest[..len], &codec4()).unwrap() else {
            panic!()
        };
        a += u.mp_reach.map(|m| m.nlri.len()).unwrap_or(0);
        w += u.mp_unreach.map(|m| m.nlri.len()).unwrap_or(0);
        rest = &rest[len..];
    }
    assert_eq!((a, w), (3000, 3000));
}

// ------------------------------------------------------------- RFC 7606

/// An UPDATE body with the given attribute bytes and one IPv4 prefix.
fn update_with(attrs: &[u8]) -> Vec<u8> {
    let mut b = vec![0, 0];
    b.extend_from_slice(&(attrs.len() as u16).to_be_bytes());
    b.extend_from_slice(attrs);
    b.extend_from_slice(&hex("18 c00002"));
    b
}

const ORIGIN: &str = "40 01 01 00";
const AS_PATH: &str = "40 02 06 02 01 0000fde9";
const NEXT_HOP: &str = "40 03 04 0a000001";

fn attrs_hex(parts: &[&str]) -> Vec<u8> {
    parts.iter().flat_map(|p| hex(p)).collect()
}

fn outcome(parts: &[&str]) -> Result<Update, DecodeError> {
    decode_update(&update_with(&attrs_hex(parts)), &codec4())
}

fn assert_withdraw(parts: &[&str], sub: u8, attr: Option<u8>) {
    let u = outcome(parts).expect("not a session reset");
    let e = u.treat_as_withdraw.expect("treat-as-withdraw");
    assert_eq!(e.action, ErrorAction::TreatAsWithdraw);
    assert_eq!(e.subcode, sub, "{e}");
    assert_eq!(e.attribute, attr, "{e}");
    assert!(u.nlri.is_empty() && u.mp_reach.is_none(), "nothing may be announced");
    assert_eq!(u.withdrawn, vec![Nlri::new("192.0.2.0/24".parse().unwrap())]);
}

fn assert_discard(parts: &[&str], attr: u8) {
    let u = outcome(parts).expect("not a session reset");
    assert!(u.treat_as_withdraw.is_none());
    assert_eq!(u.nlri.len(), 1, "the route stays");
    assert!(u
        .discarded
        .iter()
        .any(|e| e.attribute == Some(attr) && e.action == ErrorAction::AttributeDiscard));
}

fn assert_reset(parts: &[&str], code_: u8, sub: u8) {
    let e = outcome(parts).expect_err("session reset");
    assert_eq!(e.action, ErrorAction::SessionReset);
    assert_eq!((e.code, e.subcode), (code_, sub), "{e}");
}

#[test]
fn rfc7606_well_formed_baseline() {
    let u = outcome(&[ORIGIN, AS_PATH, NEXT_HOP]).unwrap();
    assert!(u.treat_as_withdraw.is_none() && u.discarded.is_empty());
    assert_eq!(u.nlri.len(), 1);
}

#[test]
fn rfc7606_origin() {
    assert_withdraw(
        &["40 01 02 0000", AS_PATH, NEXT_HOP],
        subcode::ATTRIBUTE_LENGTH,
        Some(attr_type::ORIGIN),
    );
    assert_withdraw(
        &["40 01 01 03", AS_PATH, NEXT_HOP],
        subcode::INVALID_ORIGIN,
        Some(attr_type::ORIGIN),
    );
    // Wrong flags (optional bit on a well-known attribute).
    assert_withdraw(
        &["c0 01 01 00", AS_PATH, NEXT_HOP],
        subcode::ATTRIBUTE_FLAGS,
        Some(attr_type::ORIGIN),
    );
}

#[test]
fn rfc7606_as_path_and_next_hop() {
    assert_withdraw(
        &[ORIGIN, "40 02 06 07 01 0000fde9", NEXT_HOP],
        subcode::MALFORMED_AS_PATH,
        Some(attr_type::AS_PATH),
    );
    assert_withdraw(
        &[ORIGIN, "40 02 05 02 02 0000fd", NEXT_HOP],
        subcode::MALFORMED_AS_PATH,
        Some(attr_type::AS_PATH),
    );
    assert_withdraw(
        &[ORIGIN, AS_PATH, "40 03 05 0a00000100"],
        subcode::ATTRIBUTE_LENGTH,
        Some(attr_type::NEXT_HOP),
    );
    assert_withdraw(
        &[ORIGIN, AS_PATH, "40 03 04 e0000001"],
        subcode::INVALID_NEXT_HOP,
        Some(attr_type::NEXT_HOP),
    );
}

#[test]
fn rfc7606_med_local_pref_communities() {
    assert_withdraw(
        &[ORIGIN, AS_PATH, NEXT_HOP, "80 04 03 000001"],
        subcode::ATTRIBUTE_LENGTH,
        Some(attr_type::MED),
    );
    assert_withdraw(
        &[ORIGIN, AS_PATH, NEXT_HOP, "40 05 02 0064"],
        subcode::ATTRIBUTE_LENGTH,
        Some(attr_type::LOCAL_PREF),
    );
    assert_withdraw(
        &[ORIGIN, AS_PATH, NEXT_HOP, "c0 08 03 fde900"],
        subcode::OPTIONAL_ATTRIBUTE,
        Some(attr_type::COMMUNITIES),
    );
    assert_withdraw(
        &[ORIGIN, AS_PATH, NEXT_HOP, "c0 10 07 00020000fde900"],
        subcode::OPTIONAL_ATTRIBUTE,
        Some(attr_type::EXTENDED_COMMUNITIES),
    );
    assert_withdraw(
        &[ORIGIN, AS_PATH, NEXT_HOP, "c0 20 0b 0000fde9 00000001 000000"],
        subcode::OPTIONAL_ATTRIBUTE,
        Some(attr_type::LARGE_COMMUNITIES),
    );
    assert_withdraw(
        &[ORIGIN, AS_PATH, NEXT_HOP, "80 0a 03 010203"],
        subcode::ATTRIBUTE_LENGTH,
        Some(attr_type::CLUSTER_LIST),
    );
}

#[test]
fn rfc7606_attribute_discard_classes() {
    assert_discard(&[ORIGIN, AS_PATH, NEXT_HOP, "40 06 01 00"], attr_type::ATOMIC_AGGREGATE);
    assert_discard(
        &[ORIGIN, AS_PATH, NEXT_HOP, "c0 07 05 0000fde901"],
        attr_type::AGGREGATOR,
    );
    let two = SessionCodec {
        four_octet_as: false,
        ..Default::default()
    };
    let body = update_with(&attrs_hex(&[
        ORIGIN,
        "40 02 04 02 01 fde9",
        NEXT_HOP,
        "c0 11 03 020100",
    ]));
    let u = decode_update(&body, &two).unwrap();
    assert!(u.treat_as_withdraw.is_none());
    assert!(u.discarded.iter().any(|e| e.attribute == Some(attr_type::AS4_PATH)));
}

#[test]
fn rfc7606_missing_mandatory_attributes() {
    assert_withdraw(
        &[ORIGIN, AS_PATH],
        subcode::MISSING_WELL_KNOWN,
        Some(attr_type::NEXT_HOP),
    );
    assert_withdraw(
        &[AS_PATH, NEXT_HOP],
        subcode::MISSING_WELL_KNOWN,
        Some(attr_type::ORIGIN),
    );
    assert_withdraw(
        &[ORIGIN, NEXT_HOP],
        subcode::MISSING_WELL_KNOWN,
        Some(attr_type::AS_PATH),
    );
}

#[test]
fn rfc7606_attribute_overrun_before_the_mp_attributes_resets_the_session() {
    // Nothing says an MP_REACH_NLRI was not behind the overrun: its NLRI
    // cannot be withdrawn, so the session is reset.
    assert_reset(
        &[ORIGIN, AS_PATH, NEXT_HOP, "c0 08 10 0000"],
        code::UPDATE,
        subcode::MALFORMED_ATTRIBUTE_LIST,
    );
    // Once MP_UNREACH_NLRI was read, the UPDATE is treated as withdraw.
    let unreach = "80 0f 03 0002 01";
    let u = outcome(&[ORIGIN, AS_PATH, NEXT_HOP, unreach, "c0 08 10 0000"]).expect("not a reset");
    let e = u.treat_as_withdraw.expect("treat-as-withdraw");
    assert_eq!(e.subcode, subcode::MALFORMED_ATTRIBUTE_LIST);
}

#[test]
fn a_garbage_attribute_section_is_no_end_of_rib() {
    for garbage in ["01", "4001"] {
        let mut body = vec![0, 0];
        let g = hex(garbage);
        body.extend_from_slice(&(g.len() as u16).to_be_bytes());
        body.extend_from_slice(&g);
        let r = decode_update(&body, &codec4());
        assert!(
            r.as_ref().map(|u| u.end_of_rib.is_none()).unwrap_or(true),
            "{garbage}: {r:?}"
        );
        assert!(
            r.is_err(),
            "{garbage}: an unreadable attribute section resets the session"
        );
    }
}

#[test]
fn notifications_carry_the_data_rfc_4271_asks_for() {
    let msg = |m: &[u8]| decode_message(m, &codec4()).map(|_| ()).unwrap_err();
    // 6.1: bad length -> the length; bad type -> the type.
    let bad_len = hex(&format!("{MARKER_HEX} 0014 04 00"));
    let e = frame(&bad_len, MAX_MESSAGE_LEN).unwrap_err();
    assert_eq!(Notification::from_error(&e, &bad_len).data, [0x00, 0x14]);
    let bad_type = hex(&format!("{MARKER_HEX} 0013 09"));
    let e = frame(&bad_type, MAX_MESSAGE_LEN).unwrap_err();
    assert_eq!(Notification::from_error(&e, &bad_type).data, [9]);
    // 6.2: unsupported version -> the largest version supported.
    let v3 = hex(&format!("{MARKER_HEX} 001d 01 03 fde9 00b4 01010101 00"));
    assert_eq!(Notification::from_error(&msg(&v3), &v3).data, [0, 4]);
    // 6.3: an unrecognized well-known attribute -> the attribute.
    let attrs = attrs_hex(&[ORIGIN, AS_PATH, NEXT_HOP, "40 63 02 abcd"]);
    let body = update_with(&attrs);
    let mut m = hex(MARKER_HEX);
    m.extend_from_slice(&((19 + body.len()) as u16).to_be_bytes());
    m.push(2);
    m.extend_from_slice(&body);
    let n = Notification::from_error(&msg(&m), &m);
    assert_eq!((n.code, n.subcode), (code::UPDATE, subcode::UNRECOGNIZED_WELL_KNOWN));
    assert_eq!(n.data, hex("40 63 02 abcd"));
    // ... and an MP_REACH_NLRI with the wrong flags -> that attribute.
    let bad_mp = "c0 0e 15 0002 01 10 20010db8000000000000000000000001 00";
    let body = update_with(&attrs_hex(&[ORIGIN, AS_PATH, bad_mp]));
    let mut m = hex(MARKER_HEX);
    m.extend_from_slice(&((19 + body.len()) as u16).to_be_bytes());
    m.push(2);
    m.extend_from_slice(&body);
    let n = Notification::from_error(&msg(&m), &m);
    assert_eq!((n.code, n.subcode), (code::UPDATE, subcode::ATTRIBUTE_FLAGS));
    assert_eq!(n.data, hex(bad_mp));
}

#[test]
fn rfc7606_session_reset_classes() {
    // MP_REACH_NLRI that cannot be parsed: the NLRI cannot be located.
    assert_reset(
        &[ORIGIN, AS_PATH, "80 0e 03 000201"],
        code::UPDATE,
        subcode::OPTIONAL_ATTRIBUTE,
    );
    // Two MP_REACH_NLRI.
    let mp = "80 0e 15 0002 01 10 20010db8000000000000000000000001 00";
    assert_reset(
        &[ORIGIN, AS_PATH, mp, mp],
        code::UPDATE,
        subcode::MALFORMED_ATTRIBUTE_LIST,
    );
    // Unrecognized well-known attribute.
    assert_reset(
        &[ORIGIN, AS_PATH, NEXT_HOP, "40 63 01 00"],
        code::UPDATE,
        subcode::UNRECOGNIZED_WELL_KNOWN,
    );
    // Malformed NLRI field.
    let mut body = update_with(&attrs_hex(&[ORIGIN, AS_PATH, NEXT_HOP]));
    let n = body.len();
    body[n - 4] = 33;
    let e = decode_update(&body, &codec4()).unwrap_err();
    assert_eq!(
        (e.action, e.subcode),
        (ErrorAction::SessionReset, subcode::INVALID_NETWORK_FIELD)
    );
    // Withdrawn-routes length beyond the message.
    let e = decode_update(&hex("0010 0000"), &codec4()).unwrap_err();
    assert_eq!(
        (e.action, e.subcode),
        (ErrorAction::SessionReset, subcode::MALFORMED_ATTRIBUTE_LIST)
    );
}

#[test]
fn duplicate_attribute_keeps_the_first() {
    let u = outcome(&[ORIGIN, "40 01 01 02", AS_PATH, NEXT_HOP]).unwrap();
    assert_eq!(u.attrs.origin, Origin::Igp);
    assert!(u.treat_as_withdraw.is_none());
}

#[test]
fn unknown_optional_transitive_is_passed_on_with_partial_bit() {
    let u = outcome(&[ORIGIN, AS_PATH, NEXT_HOP, "c0 63 02 abcd", "80 64 01 ff"]).unwrap();
    assert_eq!(u.attrs.unknown.len(), 1, "optional non-transitive unknowns are dropped");
    assert_eq!(u.attrs.unknown[0].type_code, 0x63);
    let bytes = message_bytes(&Message::Update(u), &codec4());
    let pos = bytes.windows(4).position(|w| w == [0xe0, 0x63, 0x02, 0xab]);
    assert!(pos.is_some(), "re-sent with the partial bit (0xe0)");
}

// ----------------------------------------------------- round-trip property

mod roundtrip {
    use super::*;
    use proptest::prelude::*;

    fn v4_prefix() -> impl Strategy<Value = Nlri> {
        (any::<u32>(), 0u8..=32)
            .prop_map(|(a, l)| Nlri::new(IpNet::V4(ipnet::Ipv4Net::new(Ipv4Addr::from(a), l).unwrap().trunc())))
    }

    fn v6_prefix() -> impl Strategy<Value = Nlri> {
        (any::<u128>(), 0u8..=128).prop_map(|(a, l)| {
            Nlri::new(IpNet::V6(
                ipnet::Ipv6Net::new(std::net::Ipv6Addr::from(a), l).unwrap().trunc(),
            ))
        })
    }

    fn segment(max_asn: u32) -> impl Strategy<Value = AsSegment> {
        (
            prop_oneof![Just(SegmentKind::Sequence), Just(SegmentKind::Set)],
            prop::collection::vec(1..=max_asn, 1..10),
        )
            .prop_map(|(kind, asns)| AsSegment { kind, asns })
    }

    fn attrs(max_asn: u32) -> impl Strategy<Value = PathAttributes> {
        (
            prop_oneof![Just(Origin::Igp), Just(Origin::Egp), Just(Origin::Incomplete)],
            prop::collection::vec(segment(max_asn), 0..3),
            1u32..0xdfff_ffff,
            prop::option::of(any::<u32>()),
            prop::option::of(any::<u32>()),
            any::<bool>(),
            prop::option::of((1..=max_asn, any::<u32>())),
            prop::collection::vec(any::<u32>(), 0..5),
            prop::collection::vec(any::<[u8; 8]>(), 0..3),
            prop::collection::vec((any::<u32>(), any::<u32>(), any::<u32>()), 0..3),
            prop::collection::vec((100u8..200, prop::collection::vec(any::<u8>(), 0..300)), 0..2),
        )
            .prop_map(
                |(origin, segs, nh, med, lp, atomic, agg, comms, ext, large, unknown)| PathAttributes {
                    origin,
                    as_path: AsPath { segments: segs },
                    next_hop: Some(IpAddr::V4(Ipv4Addr::from(nh.max(0x0100_0000)))),
                    med,
                    local_pref: lp,
                    atomic_aggregate: atomic,
                    aggregator: agg.map(|(asn, a)| Aggregator {
                        asn,
                        address: Ipv4Addr::from(a),
                    }),
                    communities: comms,
                    ext_communities: ext,
                    large_communities: large
                        .into_iter()
                        .map(|(g, a, b)| LargeCommunity {
                            global_admin: g,
                            local1: a,
                            local2: b,
                        })
                        .collect(),
                    unknown: {
                        let mut seen = std::collections::HashSet::new();
                        unknown
                            .into_iter()
                            .filter(|(t, _)| seen.insert(*t))
                            .map(|(t, v)| RawAttribute {
                                flags: 0xe0,
                                type_code: t,
                                value: v.into(),
                            })
                            .collect()
                    },
                    ..Default::default()
                },
            )
    }

    fn check(u: &Update, codec: &SessionCodec) {
        let bytes = message_bytes(&Message::Update(u.clone()), codec);
        let Message::Update(back) = decode_message(&bytes, codec).unwrap() else {
            panic!()
        };
        assert_eq!(&back.attrs, &u.attrs);
        assert_eq!(back.nlri, u.nlri);
        assert_eq!(back.withdrawn, u.withdrawn);
        assert_eq!(back.mp_reach, u.mp_reach);
        assert!(back.treat_as_withdraw.is_none() && back.discarded.is_empty());
    }

    proptest! {
        #[test]
        fn ipv4_updates(a in attrs(u32::MAX), nlri in prop::collection::vec(v4_prefix(), 1..50), wd in prop::collection::vec(v4_prefix(), 0..20)) {
            check(&Update { attrs: a, nlri, withdrawn: wd, ..Default::default() }, &SessionCodec::default());
        }

        #[test]
        fn ipv4_updates_two_octet_session(a in attrs(65535), nlri in prop::collection::vec(v4_prefix(), 1..20)) {
            let codec = SessionCodec { four_octet_as: false, ..Default::default() };
            check(&Update { attrs: a, nlri, ..Default::default() }, &codec);
        }

        #[test]
        fn ipv6_updates(a in attrs(u32::MAX), nlri in prop::collection::vec(v6_prefix(), 1..30), ll in any::<bool>()) {
            let mut a = a;
            a.next_hop = None;
            let u = Update {
                attrs: a,
                mp_reach: Some(MpReach {
                    family: Family::IPV6_UNICAST,
                    next_hop: MpNextHop { global: "2001:db8::1".parse().unwrap(), link_local: ll.then(|| "fe80::1".parse().unwrap()) },
                    nlri,
                }),
                ..Default::default()
            };
            check(&u, &SessionCodec::default());
        }

        #[test]
        fn add_path_updates(a in attrs(u32::MAX), ids in prop::collection::vec((v4_prefix(), any::<u32>()), 1..30)) {
            let codec = SessionCodec { add_path_v4: true, ..Default::default() };
            let nlri = ids.into_iter().map(|(mut n, id)| { n.path_id = id; n }).collect();
            check(&Update { attrs: a, nlri, ..Default::default() }, &codec);
        }

        #[test]
        fn decoder_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
            let _ = decode_update(&bytes, &SessionCodec::default());
            let _ = decode_update(&bytes, &SessionCodec { four_octet_as: false, add_path_v4: true, ..Default::default() });
            let mut msg = MARKER.to_vec();
            msg.extend_from_slice(&((bytes.len() + 19).min(4096) as u16).to_be_bytes());
            msg.extend_from_slice(&bytes);
            let _ = decode_message(&msg, &SessionCodec::default());
        }
    }
}

/// RFC 6793 section 3: AS_CONFED segments in AS4_PATH (from an old
/// speaker) are discarded and the UPDATE goes on; the real path is
/// rebuilt from what is left. (Found by the bgp_update fuzz target.)
#[test]
fn confederation_segments_in_as4_path_are_discarded() {
    let two = SessionCodec {
        four_octet_as: false,
        ..Default::default()
    };
    // AS_PATH: SEQUENCE [65001 AS_TRANS]; AS4_PATH: SEQUENCE [4200000000],
    // CONFED_SEQUENCE [65100].
    let body = update_with(&attrs_hex(&[
        ORIGIN,
        "40 02 06 02 02 fde9 5ba0",
        NEXT_HOP,
        "c0 11 0c 02 01 fa56ea00 03 01 0000fe4c",
    ]));
    let u = decode_update(&body, &two).unwrap();
    assert!(u.treat_as_withdraw.is_none());
    assert_eq!(u.attrs.as_path.asns().collect::<Vec<_>>(), vec![65001, 4_200_000_000]);
    assert!(u
        .attrs
        .as_path
        .segments
        .iter()
        .all(|s| matches!(s.kind, novanet_bgp::wire::SegmentKind::Sequence)));
}

/// RFC 6793 section 4.2.3: a leading AS_CONFED segment of AS_PATH is kept
/// when the path is rebuilt with AS4_PATH. (Found by the bgp_update fuzz
/// target: it was dropped, so a decoded path did not survive re-encoding.)
#[test]
fn a_leading_confederation_segment_survives_the_as4_merge() {
    use novanet_bgp::wire::SegmentKind;
    let two = SessionCodec {
        four_octet_as: false,
        ..Default::default()
    };
    // AS_PATH: CONFED_SET [64], SEQUENCE [65001 AS_TRANS];
    // AS4_PATH: SEQUENCE [4200000000].
    let body = update_with(&attrs_hex(&[
        ORIGIN,
        "40 02 0a 04 01 0040 02 02 fde9 5ba0",
        NEXT_HOP,
        "c0 11 06 02 01 fa56ea00",
    ]));
    let u = decode_update(&body, &two).unwrap();
    let segments: Vec<(SegmentKind, Vec<u32>)> = u
        .attrs
        .as_path
        .segments
        .iter()
        .map(|s| (s.kind, s.asns.clone()))
        .collect();
    assert_eq!(
        segments,
        vec![
            (SegmentKind::ConfedSet, vec![64]),
            (SegmentKind::Sequence, vec![65001]),
            (SegmentKind::Sequence, vec![4_200_000_000]),
        ]
    );
}
