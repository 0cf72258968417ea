//! The fuzz targets' bodies: one function per input the agent takes from
//! outside (BGP messages under each negotiated option, MRT files, BFD
//! packets, the agent configuration, the CNI plugin's stdin, FRR's JSON)
//! and a stateful one that drives sessions and the RIB. Each either
//! returns or panics on a broken rule (a decode that does not survive
//! encode -> decode, an invariant of the table). The cargo-fuzz project in
//! `fuzz/` calls them; `tests/corpus.rs` replays the committed corpora and
//! regressions through them under `cargo test`.

use novanet_bgp::speaker::simulation::{OpenOptions, Simulation, Step};
use novanet_bgp::wire::{self, open, update, Message, SessionCodec};
use std::time::Duration;

/// The Partial bit of an attribute's flags.
const PARTIAL: u8 = 0x20;

/// A target's body: returns, or panics on a broken rule.
pub type Target = fn(&[u8]);

/// Every target, by the name its corpus directory and fuzz binary carry.
pub const TARGETS: &[(&str, Target)] = &[
    ("bgp_open", bgp_open),
    ("bgp_update", bgp_update),
    ("bgp_stream", bgp_stream),
    ("mrt", mrt),
    ("bfd_packet", bfd_packet),
    ("agent_config", agent_config),
    ("cni_stdin", cni_stdin),
    ("ospf_readback", ospf_readback),
    ("sessions_rib", sessions_rib),
];

/// The session options a leading byte selects: bit 0 4-octet AS, bit 1
/// add-path IPv4, bit 2 add-path IPv6, bit 3 extended messages.
pub fn codec_of(b: u8) -> SessionCodec {
    SessionCodec {
        four_octet_as: b & 1 != 0,
        add_path_v4: b & 2 != 0,
        add_path_v6: b & 4 != 0,
        extended_message: b & 8 != 0,
    }
}

/// An OPEN body: decoded, it must encode and decode to the same OPEN.
pub fn bgp_open(data: &[u8]) {
    let Ok(o) = open::decode_open(data) else { return };
    let mut buf = Vec::new();
    open::encode_open(&o, &mut buf);
    let again = open::decode_open(&buf).expect("an encoded OPEN decodes");
    assert_eq!(again, o, "OPEN decode -> encode -> decode");
}

/// One option byte, then an UPDATE body decoded under those options; what
/// decodes cleanly encodes and decodes to the same UPDATE.
pub fn bgp_update(data: &[u8]) {
    let Some((&opts, body)) = data.split_first() else {
        return;
    };
    let codec = codec_of(opts);
    let Ok(u) = update::decode_update(body, &codec) else {
        return;
    };
    let _ = u.announcements().count();
    let _ = u.withdrawals().count();
    if u.treat_as_withdraw.is_some() || !u.discarded.is_empty() {
        return;
    }
    let bytes = update::update_message(&u, &codec);
    let Ok(Message::Update(again)) = wire::decode_message(&bytes, &codec) else {
        panic!("an encoded UPDATE decodes as an UPDATE: {u:?}");
    };
    assert_same_meaning(&u, &again, &codec);
}

/// What an UPDATE says: End-of-RIB, its withdrawals, its announcements
/// (prefix, next hops) and, when it announces, their attributes. An UPDATE
/// that says nothing (attributes without prefixes) has no meaning to keep:
/// the encoder writes no attributes without prefixes, so it comes back as
/// an empty UPDATE.
fn assert_same_meaning(u: &update::Update, again: &update::Update, codec: &SessionCodec) {
    let announced: Vec<_> = u.announcements().collect();
    let withdrawn: Vec<_> = u.withdrawals().collect();
    if announced.is_empty() && withdrawn.is_empty() && u.end_of_rib.is_none() {
        return;
    }
    assert_eq!(again.end_of_rib, u.end_of_rib, "End-of-RIB survives encode -> decode");
    assert_eq!(
        again.withdrawals().collect::<Vec<_>>(),
        withdrawn,
        "withdrawals survive encode -> decode"
    );
    assert_eq!(
        again.announcements().collect::<Vec<_>>(),
        announced,
        "announcements survive encode -> decode"
    );
    if !announced.is_empty() {
        // Unrecognised transitive attributes are passed on marked partial
        // (RFC 4271 5).
        // The next hops were compared with the announcements (NEXT_HOP
        // is written only for classic NLRI).
        let mut expected = u.attrs.clone();
        for raw in &mut expected.unknown {
            raw.flags |= PARTIAL;
        }
        let mut got = again.attrs.clone();
        // Between 2-octet speakers the path travels as AS_PATH + AS4_PATH,
        // and RFC 6793 4.2.3 rebuilds only leading confederation segments:
        // one after an AS_SEQUENCE or AS_SET (malformed, RFC 5065 5) cannot
        // come back.
        let confed_inside = |a: &novanet_bgp::wire::PathAttributes| {
            a.as_path
                .segments
                .iter()
                .skip_while(|s| is_confed(s.kind))
                .any(|s| is_confed(s.kind))
        };
        let skip_path = !codec.four_octet_as && confed_inside(&expected);
        for a in [&mut expected, &mut got] {
            a.next_hop = None;
            a.link_local_next_hop = None;
            if skip_path {
                a.as_path = Default::default();
            }
        }
        assert_eq!(got, expected, "attributes survive encode -> decode");
    }
}

fn is_confed(kind: novanet_bgp::wire::SegmentKind) -> bool {
    matches!(
        kind,
        novanet_bgp::wire::SegmentKind::ConfedSequence | novanet_bgp::wire::SegmentKind::ConfedSet
    )
}

/// One option byte, then a byte stream cut into messages as a session
/// reads it; every whole message is decoded and, when it decodes, survives
/// encode -> decode.
pub fn bgp_stream(data: &[u8]) {
    let Some((&opts, mut rest)) = data.split_first() else {
        return;
    };
    let codec = codec_of(opts);
    let max = if codec.extended_message { 65535 } else { 4096 };
    while let Ok(Some(len)) = wire::frame(rest, max) {
        let (msg, tail) = rest.split_at(len);
        rest = tail;
        let Ok(m) = wire::decode_message(msg, &codec) else {
            continue;
        };
        let bytes = wire::message_bytes(&m, &codec);
        let again = wire::decode_message(&bytes, &codec).expect("an encoded message decodes");
        match (&m, &again) {
            (Message::Update(u), _) if u.treat_as_withdraw.is_some() || !u.discarded.is_empty() => {}
            (Message::Update(u), Message::Update(a)) => assert_same_meaning(u, a, &codec),
            _ => assert_eq!(again, m, "message decode -> encode -> decode"),
        }
    }
}

/// An MRT file: records, the BGP messages in them, the RIB entries of
/// table dumps.
pub fn mrt(data: &[u8]) {
    use novanet_bgp::mrt;
    let mut peer_index = Vec::new();
    let mut entries = Vec::new();
    for rec in mrt::records(data) {
        let Ok(rec) = rec else { break };
        if let Ok(Some(m)) = mrt::bgp_message(&rec) {
            let codec = SessionCodec {
                four_octet_as: m.four_octet_as,
                ..Default::default()
            };
            if m.message_type == 2 {
                let _ = update::decode_update(m.body, &codec);
            }
        }
        entries.clear();
        let _ = mrt::rib_entries(&rec, &mut peer_index, &mut entries);
    }
}

/// One byte choosing the receiving session's authentication, then a BFD
/// control packet: decoded, re-encoded and decoded the same; then handed
/// to a session, which must take or discard it without panicking.
pub fn bfd_packet(data: &[u8]) {
    use novanet_bfd::packet;
    use novanet_bfd::session::{AuthConfig, Session, SessionConfig};
    let Some((&auth, pkt_bytes)) = data.split_first() else {
        return;
    };
    let Ok(pkt) = packet::decode(pkt_bytes) else { return };
    if pkt.auth.is_none() {
        let mut b = bytes::BytesMut::new();
        pkt.encode(&[], &mut b);
        let again = packet::decode(&b).expect("an encoded packet decodes");
        assert_eq!(again, pkt, "BFD decode -> encode -> decode");
    }
    let config = SessionConfig {
        auth: match auth % 3 {
            0 => None,
            1 => Some(AuthConfig::SimplePassword {
                key_id: 1,
                password: b"secret".to_vec(),
            }),
            _ => Some(AuthConfig::KeyedSha1 {
                key_id: 1,
                key: b"secret".to_vec(),
                meticulous: auth & 4 != 0,
            }),
        },
        ..Default::default()
    };
    let now = std::time::Instant::now();
    let mut s = Session::new(config, pkt.your_discriminator.max(1), now);
    let _ = s.handle_packet(&pkt, pkt_bytes, now);
    let _ = s.on_timer(now + Duration::from_secs(5));
}

/// The agent's configuration file: parsed, and when it parses, its
/// problems listed and the node checked, never a panic.
pub fn agent_config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(cfg) = novanet_agent::config::Config::parse(text) {
        let _ = cfg.problems();
        let _ = cfg.validate_node();
        let _ = cfg.asn_collisions();
    }
}

/// The CNI plugin's stdin for each command, and the ADD result built on a
/// chained plugin's previous result.
pub fn cni_stdin(data: &[u8]) {
    use novanet_cni::spec::{add_result, version_result, Command, Interfaces, NetConf};
    let _ = version_result(data);
    for command in [
        Command::Add,
        Command::Del,
        Command::Check,
        Command::Gc,
        Command::Status,
        Command::Version,
    ] {
        let Ok(conf) = NetConf::parse(data, command) else {
            continue;
        };
        let ifs = Interfaces {
            host: ("nv1234", "02:00:00:00:00:01"),
            pod: ("eth0", "02:00:00:00:00:02"),
            sandbox: "/var/run/netns/x",
        };
        let ips = ["10.244.1.5".parse().unwrap(), "fd00::5".parse().unwrap()];
        let result = add_result(&conf.cni_version, conf.prev_result.as_ref(), &ifs, &ips, |ip| *ip);
        serde_json::to_vec(&result).expect("the result serialises");
    }
}

/// FRR 8.4's JSON and running configuration, as the OSPF bridge reads
/// them back.
pub fn ospf_readback(data: &[u8]) {
    use novanet_ospf_bridge::readback;
    let Ok(text) = std::str::from_utf8(data) else { return };
    let _ = readback::neighbors(text);
    let _ = readback::ospf6_neighbors(text);
    let _ = readback::interfaces(text);
    let _ = readback::ospf6_interfaces(text);
    let _ = readback::originated_v2(text);
    let _ = readback::originated_v3(text);
    let _ = readback::configured_interfaces(text);
}

/// A script of peer actions (connect, OPEN with options, KEEPALIVE, any
/// message, close, reset, time) for three peers, run against their
/// sessions and the RIB; the table's invariants are checked after every
/// step.
pub fn sessions_rib(data: &[u8]) {
    run_sessions(data);
}

/// Runs a [`sessions_rib`] script; returns the most paths the table held.
pub fn run_sessions(data: &[u8]) -> usize {
    let mut most = 0;
    let mut sim = Simulation::new();
    let mut rest = data;
    let mut steps = 0;
    while let Some((&op, tail)) = rest.split_first() {
        rest = tail;
        steps += 1;
        if steps > 256 {
            break;
        }
        let peer = (op >> 4) as usize;
        let step = match op & 0x0f {
            0 => Step::Connect(peer),
            1 => {
                let Some((&bits, tail)) = rest.split_first() else { break };
                rest = tail;
                Step::Open {
                    peer,
                    options: OpenOptions::from_bits(bits),
                }
            }
            2 => Step::Keepalive(peer),
            3..=6 => {
                // A message: a 1-byte length (times 2 for UPDATEs) and body.
                let Some((&len, tail)) = rest.split_first() else { break };
                let len = (len as usize * if op & 0x0f == 3 { 2 } else { 1 }).min(tail.len());
                let (body, tail) = tail.split_at(len);
                rest = tail;
                let (kind, body) = match op & 0x0f {
                    3 => (2, body),
                    4 => (3, body),
                    5 => (5, body),
                    // Any type: the first byte is the type.
                    _ => body.split_first().map_or((0, body), |(k, b)| (*k, b)),
                };
                Step::Message {
                    peer,
                    kind,
                    body: body.to_vec(),
                }
            }
            7 => Step::Close(peer),
            8 => Step::Reset(peer),
            _ => {
                let Some((&secs, tail)) = rest.split_first() else { break };
                rest = tail;
                Step::Advance(Duration::from_millis(secs as u64 * 250))
            }
        };
        sim.step(step);
        if let Err(e) = sim.check() {
            panic!("after step {steps}: {e}");
        }
        most = most.max(sim.rib().path_count());
    }
    most
}

/// A [`sessions_rib`] script: the three peers connect, open with the
/// options `opts` (see [`OpenOptions::from_bits`]), each announces two
/// prefixes; then peer 0 closes, time passes beyond the hold time, and
/// peer 1 is reset.
pub fn session_script(opts: u8) -> Vec<u8> {
    use novanet_bgp::speaker::simulation::{announcement, PEERS};
    let options = OpenOptions::from_bits(opts);
    // What the session decodes with: the peer sends add-path when it
    // announced it (this speaker always receives).
    let codec = SessionCodec {
        four_octet_as: options.four_octet_as,
        add_path_v4: options.add_path,
        add_path_v6: options.add_path,
        extended_message: options.extended_message,
    };
    let mut script = Vec::new();
    for (p, (_, asn)) in PEERS.iter().enumerate() {
        let p = p as u8;
        script.extend_from_slice(&[p << 4, (p << 4) | 1, opts, (p << 4) | 2]);
        let next_hop = Simulation::router_id(p as usize);
        let update = announcement(*asn, next_hop, &["192.0.2.0/24", "198.51.100.0/24"], &codec);
        // Message op 6: after the length, the type, then the body.
        let typed = &update[18..];
        script.extend_from_slice(&[(p << 4) | 6, typed.len() as u8]);
        script.extend_from_slice(typed);
    }
    script.extend_from_slice(&[7, 9, 40, (1 << 4) | 8]);
    script
}
