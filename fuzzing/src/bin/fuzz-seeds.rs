//! Writes the fuzz targets' seed inputs: BGP messages and MRT records
//! from the RIPE RIS dumps, OPENs and UPDATEs under every option
//! combination, BFD packets with and without authentication, agent and
//! CNI configurations, FRR's recorded output, session scripts.
//!
//! `fuzz-seeds OUT_DIR MRT_DIR OSPF_FIXTURE_DIR`: one directory per target
//! under OUT_DIR; `scripts/fuzz.sh seed` runs it, then minimises.

use bytes::BytesMut;
use novanet_bfd::packet::{Auth, ControlPacket, State};
use novanet_bgp::mrt;
use novanet_bgp::speaker::simulation::{announcement, OpenOptions};
use novanet_bgp::wire::{self, Family, Message, Notification, RefreshSubtype, RouteRefresh, SessionCodec};
use std::io::Read;
use std::path::{Path, PathBuf};

struct Out {
    root: PathBuf,
    count: usize,
}

impl Out {
    fn put(&mut self, target: &str, name: &str, data: &[u8]) {
        let dir = self.root.join(target);
        std::fs::create_dir_all(&dir).expect("seed directory");
        std::fs::write(dir.join(name), data).expect("seed file");
        self.count += 1;
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, out, mrt_dir, ospf_dir] = &args[..] else {
        eprintln!("usage: fuzz-seeds OUT_DIR MRT_DIR OSPF_FIXTURE_DIR");
        std::process::exit(2);
    };
    let mut out = Out {
        root: PathBuf::from(out),
        count: 0,
    };
    from_mrt(&mut out, Path::new(mrt_dir));
    bgp_options(&mut out);
    bfd(&mut out);
    configs(&mut out);
    for entry in std::fs::read_dir(ospf_dir).expect("OSPF fixtures") {
        let path = entry.expect("fixture").path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        out.put("ospf_readback", &name, &std::fs::read(&path).expect("fixture"));
    }
    sessions(&mut out);
    println!("{} seeds written under {}", out.count, out.root.display());
}

fn gunzip(path: &Path) -> Vec<u8> {
    let mut data = Vec::new();
    flate2::read::GzDecoder::new(std::fs::File::open(path).expect("MRT file"))
        .read_to_end(&mut data)
        .expect("gzip");
    data
}

/// UPDATE bodies (with their option byte), and the first records of each
/// dump as MRT inputs.
fn from_mrt(out: &mut Out, dir: &Path) {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("MRT directory")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "gz"))
        .collect();
    files.sort();
    for file in files {
        let stem = file.file_stem().unwrap().to_string_lossy().replace('.', "-");
        let data = gunzip(&file);
        let mut updates = 0;
        let mut end = 0;
        for (i, rec) in mrt::records(&data).enumerate() {
            let Ok(rec) = rec else { break };
            if i < 40 {
                end += 12 + rec.body.len() + if rec.kind == 17 { 4 } else { 0 };
            }
            let Ok(Some(m)) = mrt::bgp_message(&rec) else { continue };
            if m.message_type != 2 || updates >= 150 {
                continue;
            }
            // Every tenth update, so a seed set spans the file.
            if i % 10 == 0 {
                let mut seed = vec![m.four_octet_as as u8];
                seed.extend_from_slice(m.body);
                out.put("bgp_update", &format!("{stem}-{i}"), &seed);
                updates += 1;
            }
        }
        out.put("mrt", &stem, &data[..end.min(data.len()).min(64 * 1024)]);
    }
}

/// OPENs with each capability set, and UPDATEs under each option
/// combination (IPv4, MP_REACH IPv6, add-path, withdrawals), alone and as
/// a stream with the other message types.
fn bgp_options(out: &mut Out) {
    for bits in 0..64u8 {
        let o = OpenOptions::from_bits(bits);
        let Message::Open(open) = o.open(4_200_000_000, "10.0.0.1".parse().unwrap()) else {
            unreachable!()
        };
        let mut body = Vec::new();
        wire::open::encode_open(&open, &mut body);
        out.put("bgp_open", &format!("open-{bits:02}"), &body);
    }
    for opts in 0..16u8 {
        let codec = novanet_fuzzing::codec_of(opts);
        let v4 = announcement(
            65001,
            "10.0.0.1".parse().unwrap(),
            &["192.0.2.0/24", "198.51.100.0/25"],
            &codec,
        );
        let mut v6 = wire::Update {
            attrs: wire::PathAttributes {
                origin: wire::Origin::Igp,
                as_path: wire::AsPath::from_sequence(vec![65001, 4_200_000_001]),
                med: Some(10),
                communities: vec![(65001 << 16) | 100],
                ..Default::default()
            },
            mp_reach: Some(wire::MpReach {
                family: Family::IPV6_UNICAST,
                next_hop: wire::MpNextHop {
                    global: "2001:db8::1".parse().unwrap(),
                    link_local: Some("fe80::1".parse().unwrap()),
                },
                nlri: vec![wire::Nlri {
                    prefix: "2001:db8:1::/48".parse().unwrap(),
                    path_id: if codec.add_path_v6 { 7 } else { 0 },
                }],
            }),
            ..Default::default()
        };
        let v6_bytes = wire::update::update_message(&v6, &codec);
        v6.mp_reach = None;
        v6.mp_unreach = Some(wire::MpUnreach {
            family: Family::IPV6_UNICAST,
            nlri: vec![wire::Nlri::new("2001:db8:2::/48".parse().unwrap())],
        });
        let unreach = wire::update::update_message(&v6, &codec);
        for (name, msg) in [("v4", &v4[..]), ("v6", &v6_bytes[..]), ("unreach", &unreach[..])] {
            let mut seed = vec![opts];
            seed.extend_from_slice(&msg[19..]);
            out.put("bgp_update", &format!("{name}-{opts:02}"), &seed);
        }
        let mut stream = vec![opts];
        let plain = SessionCodec::default();
        let o = OpenOptions::from_bits(opts | 1).open(65001, "10.0.0.1".parse().unwrap());
        stream.extend_from_slice(&wire::message_bytes(&o, &plain));
        stream.extend_from_slice(&wire::message_bytes(&Message::Keepalive, &plain));
        stream.extend_from_slice(&v4);
        stream.extend_from_slice(&v6_bytes);
        stream.extend_from_slice(&unreach);
        let refresh = Message::RouteRefresh(RouteRefresh {
            family: Family::IPV4_UNICAST,
            subtype: RefreshSubtype::Request,
        });
        stream.extend_from_slice(&wire::message_bytes(&refresh, &plain));
        let cease = Message::Notification(Notification {
            code: 6,
            subcode: 2,
            data: b"\x0dshutting down".to_vec(),
        });
        stream.extend_from_slice(&wire::message_bytes(&cease, &plain));
        out.put("bgp_stream", &format!("session-{opts:02}"), &stream);
    }
}

/// Control packets in each state, without and with each authentication.
fn bfd(out: &mut Out) {
    let auths = [
        None,
        Some(Auth::SimplePassword {
            key_id: 1,
            password: b"secret".to_vec(),
        }),
        Some(Auth::KeyedSha1 {
            key_id: 1,
            sequence: 7,
            digest: [0; 20],
            meticulous: false,
        }),
        Some(Auth::KeyedSha1 {
            key_id: 1,
            sequence: 8,
            digest: [0; 20],
            meticulous: true,
        }),
    ];
    for (a, auth) in auths.into_iter().enumerate() {
        for (s, state) in [State::AdminDown, State::Down, State::Init, State::Up]
            .into_iter()
            .enumerate()
        {
            let pkt = ControlPacket {
                diag: 0,
                state,
                poll: s == 3,
                final_: false,
                control_plane_independent: false,
                demand: false,
                multipoint: false,
                detect_mult: 3,
                my_discriminator: 0x1234,
                your_discriminator: if state == State::Down { 0 } else { 1 },
                desired_min_tx: 300_000,
                required_min_rx: 300_000,
                required_min_echo_rx: 0,
                auth: auth.clone(),
            };
            let mut b = BytesMut::new();
            pkt.encode(b"secret", &mut b);
            let mut seed = vec![a as u8];
            seed.extend_from_slice(&b);
            out.put("bfd_packet", &format!("auth{a}-state{s}"), &seed);
        }
    }
}

/// Agent configurations (each mode) and CNI stdin (each command).
fn configs(out: &mut Out) {
    let agent = [
        r#"{"node_name":"node-a","node_ip":"10.0.0.11","pod_cidr":"10.244.11.0/24"}"#,
        r#"{"node_name":"n","node_ip":"10.0.0.11","pod_cidr":"10.244.11.0/24","pod_cidr_v6":"fd00:11::/64",
           "routing":{"local_as":65011,"router_id":"10.0.0.11",
             "peers":[{"neighbor_address":"10.0.0.1","remote_as":65000,"hold_time":9,"keepalive":3,
                       "bfd_enabled":true,"bfd_min_rx_ms":100,"bfd_min_tx_ms":100,"bfd_detect_multiplier":3,
                       "password":"pw","ttl_security_hops":1,"max_prefix":1000}],
             "bfd":{"enabled":true,"min_rx_ms":300,"min_tx_ms":300,"detect_multiplier":3},
             "node_mesh":{"enabled":true,"source":"static","nodes":[{"name":"b","ip":"10.0.0.12","pod_cidr":"10.244.12.0/24"}]},
             "fib":{"nexthop_objects":true}}}"#,
        r#"{"node_name":"n","node_ip":"10.0.0.11","pod_cidr":"10.244.11.0/24",
           "routing":{"protocol":"ospf","ospf":{"area":"0.0.0.0","ipv6":true,
             "interfaces":[{"name":"eth0","cost":10,"hello_interval":1,"dead_interval":4,"passive":false}]}}}"#,
    ];
    for (i, text) in agent.iter().enumerate() {
        out.put("agent_config", &format!("config-{i}"), text.as_bytes());
    }
    let cni = [
        r#"{"cniVersion":"1.0.0","name":"novanet","type":"novanet-cni","agentSocket":"/run/novanet/cni.sock"}"#,
        r#"{"cniVersion":"1.1.0","name":"novanet","type":"novanet-cni","prevResult":{"cniVersion":"1.1.0",
           "interfaces":[{"name":"eth0","sandbox":"/var/run/netns/x"}],"ips":[{"address":"10.244.1.5/24","interface":0}],
           "routes":[{"dst":"0.0.0.0/0"}],"dns":{}}}"#,
        r#"{"cniVersion":"1.1.0","name":"novanet","type":"novanet-cni",
           "cni.dev/valid-attachments":[{"containerID":"abc","ifname":"eth0"}]}"#,
        r#"{"cniVersion":"0.4.0","name":"novanet","type":"novanet-cni"}"#,
    ];
    for (i, text) in cni.iter().enumerate() {
        out.put("cni_stdin", &format!("netconf-{i}"), text.as_bytes());
    }
}

/// Session scripts for each of a few OPEN option sets.
fn sessions(out: &mut Out) {
    for (i, opts) in [1u8, 1 | 4, 1 | 2, 1 | 16].into_iter().enumerate() {
        out.put(
            "sessions_rib",
            &format!("three-peers-{i}"),
            &novanet_fuzzing::session_script(opts),
        );
    }
}
