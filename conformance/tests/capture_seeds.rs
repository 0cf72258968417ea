//! Fuzz seeds from real peers: a recorder takes a session with FRR, BIRD
//! and GoBGP (each announcing routes with communities, MED, large and
//! extended communities, IPv6 over the IPv4 session for FRR, add-path),
//! and writes what each sent, as the fuzz targets read it: the OPEN body
//! (`bgp_open`), each UPDATE with the session's option byte
//! (`bgp_update`), the whole session (`bgp_stream`).
//!
//! Not part of `cargo test` (it rewrites corpus files): `scripts/fuzz.sh
//! capture` runs it, then minimises. FUZZ_CAPTURE_DIR (default
//! fuzz/corpus) is where the seeds go.

use novanet_bgp::fsm::{negotiate, FsmConfig};
use novanet_bgp::wire::open::{decode_open, encode_open};
use novanet_bgp::wire::{AddPathMode, Capability, Family, GracefulRestart, GracefulRestartFamily, Open};
use novanet_conformance::checks::tor_and_node;
use novanet_conformance::raw::{keepalive, message, read_message};
use novanet_conformance::{wait_until, Bird, Frr, GoBgp, Lab};
use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

fn our_config() -> FsmConfig {
    let families = [Family::IPV4_UNICAST, Family::IPV6_UNICAST];
    let mut capabilities: Vec<Capability> = families.iter().map(|f| Capability::Multiprotocol(*f)).collect();
    capabilities.extend([
        Capability::RouteRefresh,
        Capability::FourOctetAs(65010),
        Capability::AddPath(
            families
                .iter()
                .map(|f| {
                    (
                        *f,
                        AddPathMode {
                            receive: true,
                            send: false,
                        },
                    )
                })
                .collect(),
        ),
        Capability::GracefulRestart(GracefulRestart {
            restarting: false,
            notification: false,
            restart_time: 120,
            families: families
                .iter()
                .map(|f| GracefulRestartFamily {
                    family: *f,
                    forwarding_preserved: false,
                })
                .collect(),
        }),
        Capability::ExtendedMessage,
    ]);
    FsmConfig {
        local_as: 65010,
        router_id: "10.0.0.10".parse().unwrap(),
        remote_as: 65000,
        hold_time: 90,
        keepalive: None,
        connect_retry: Duration::from_secs(1),
        passive: false,
        capabilities,
    }
}

/// Takes a session with the peer at 10.0.0.1 from the node namespace and
/// records what it sends for `listen`; writes the seeds named after `who`.
fn record(lab: &Lab, who: &str, listen: Duration) {
    let ns = lab.ns_name("node");
    let who = who.to_string();
    let dir = std::env::var_os("FUZZ_CAPTURE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus"));
    std::thread::spawn(move || {
        novanet_conformance::lab::enter_namespace(&ns);
        let config = our_config();
        let mut s = None;
        wait_until(&format!("{who} accepts the recorder"), Duration::from_secs(30), || {
            std::net::TcpStream::connect("10.0.0.1:179")
                .map(|c| s = Some(c))
                .map_err(|e| e.to_string())
        });
        let mut s = s.unwrap();
        let ours = Open {
            version: 4,
            asn: 65010,
            hold_time: 90,
            router_id: config.router_id,
            capabilities: config.capabilities.clone(),
        };
        let mut body = Vec::new();
        encode_open(&ours, &mut body);
        s.write_all(&message(1, &body)).unwrap();
        let (kind, open_body) = read_message(&mut s);
        assert_eq!(kind, 1, "{who}'s OPEN");
        let theirs = decode_open(&open_body).expect("the peer's OPEN decodes");
        let codec = negotiate(&config, &theirs).codec;
        let option_byte = codec.four_octet_as as u8
            | (codec.add_path_v4 as u8) << 1
            | (codec.add_path_v6 as u8) << 2
            | (codec.extended_message as u8) << 3;
        s.write_all(&keepalive()).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
        let mut stream = vec![option_byte];
        stream.extend_from_slice(&message(1, &open_body));
        let mut updates = 0;
        let end = Instant::now() + listen;
        let put = |target: &str, name: String, data: &[u8]| {
            std::fs::create_dir_all(dir.join(target)).unwrap();
            std::fs::write(dir.join(target).join(name), data).unwrap();
        };
        put("bgp_open", format!("{who}-open"), &open_body);
        while Instant::now() < end {
            let mut head = [0u8; 19];
            if std::io::Read::read_exact(&mut s, &mut head).is_err() {
                let _ = s.write_all(&keepalive());
                continue;
            }
            let len = u16::from_be_bytes([head[16], head[17]]) as usize;
            let mut rest = vec![0; len - 19];
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            std::io::Read::read_exact(&mut s, &mut rest).unwrap();
            s.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
            if stream.len() < 64 * 1024 {
                stream.extend_from_slice(&head);
                stream.extend_from_slice(&rest);
            }
            if head[18] == 2 && updates < 20 {
                let mut seed = vec![option_byte];
                seed.extend_from_slice(&rest);
                put("bgp_update", format!("{who}-update-{updates}"), &seed);
                updates += 1;
            }
        }
        put("bgp_stream", format!("{who}-session"), &stream);
        assert!(updates > 0, "{who} sent no UPDATE");
        println!(
            "{who}: {updates} UPDATEs, option byte {option_byte:#04x}, {} bytes of session",
            stream.len()
        );
    })
    .join()
    .expect("the recorder");
}

#[test]
#[ignore = "writes fuzz seeds; run by scripts/fuzz.sh capture"]
fn seeds_from_frr_bird_and_gobgp() {
    let listen = Duration::from_secs(4);
    {
        let mut lab = Lab::new("capfrr");
        tor_and_node(&mut lab);
        let _frr = Frr::start(
            &mut lab,
            "tor",
            "hostname tor
route-map TAGS permit 10
 set community 65000:100 no-export
 set large-community 65000:1:2
 set extcommunity rt 65000:7
 set metric 50
!
router bgp 65000
 bgp router-id 10.0.0.1
 no bgp ebgp-requires-policy
 no bgp network import-check
 neighbor 10.0.0.10 remote-as 65010
 neighbor 10.0.0.10 capability extended-nexthop
 address-family ipv4 unicast
  network 192.0.2.0/24 route-map TAGS
  network 198.51.100.0/25
  neighbor 10.0.0.10 addpath-tx-all-paths
 exit-address-family
 address-family ipv6 unicast
  network 2001:db8:ff::/48 route-map TAGS
  neighbor 10.0.0.10 activate
 exit-address-family
",
        );
        record(&lab, "frr", listen);
    }
    {
        let mut lab = Lab::new("capbird");
        tor_and_node(&mut lab);
        let _bird = Bird::start(
            &mut lab,
            "tor",
            r#"
router id 10.0.0.1;
protocol device { }
protocol static st4 { ipv4; route 203.0.113.0/24 blackhole; route 203.0.113.128/25 blackhole; }
protocol bgp rec {
  local 10.0.0.1 as 65000;
  neighbor 10.0.0.10 as 65010;
  ipv4 { import none; export filter { bgp_community.add((65000,7)); bgp_large_community.add((65000,1,2)); bgp_med = 20; accept; }; };
}
"#,
        );
        record(&lab, "bird", listen);
    }
    {
        let mut lab = Lab::new("capgobgp");
        tor_and_node(&mut lab);
        let gobgp = GoBgp::start(
            &mut lab,
            "tor",
            &GoBgp::config(65000, "10.0.0.1", &[("10.0.0.10", 65010)]),
        );
        gobgp.cli(&[
            "global",
            "rib",
            "add",
            "198.18.0.0/24",
            "community",
            "65000:9",
            "med",
            "30",
            "-a",
            "ipv4",
        ]);
        gobgp.cli(&[
            "global",
            "rib",
            "add",
            "198.18.1.0/24",
            "aspath",
            "65099,65098",
            "-a",
            "ipv4",
        ]);
        record(&lab, "gobgp", listen);
    }
}
