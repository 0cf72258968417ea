//! UPDATE decode and encode throughput (prefixes per second) on full
//! 4 KiB UPDATEs, and RIB insertion with best-path selection.

use bytes::BytesMut;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ipnet::{IpNet, Ipv4Net};
use novanet_bgp::rib::{PeerInfo, Rib};
use novanet_bgp::wire::update::{decode_update, pack_announcements};
use novanet_bgp::wire::*;
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

fn attrs() -> PathAttributes {
    PathAttributes {
        as_path: AsPath::from_sequence(vec![65001, 65002, 65003]),
        next_hop: Some(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1))),
        med: Some(10),
        communities: vec![0xfde9_0001, 0xfde9_0002],
        ..Default::default()
    }
}

fn prefixes(n: u32) -> Vec<Nlri> {
    (0..n)
        .map(|i| {
            Nlri::new(IpNet::V4(
                Ipv4Net::new(Ipv4Addr::from(0x0b00_0000 + (i << 8)), 24).unwrap(),
            ))
        })
        .collect()
}

/// One full UPDATE (as many /24s as fit in 4096 bytes); returns the body
/// and its prefix count.
fn full_update() -> (Vec<u8>, usize) {
    let mut buf = BytesMut::new();
    pack_announcements(&attrs(), &prefixes(2000), &SessionCodec::default(), &mut buf);
    let len = frame(&buf, MAX_MESSAGE_LEN).unwrap().unwrap();
    let body = buf[HEADER_LEN..len].to_vec();
    let n = decode_update(&body, &SessionCodec::default()).unwrap().nlri.len();
    (body, n)
}

fn decode(c: &mut Criterion) {
    let (body, n) = full_update();
    let codec = SessionCodec::default();
    let mut g = c.benchmark_group("update");
    g.throughput(Throughput::Elements(n as u64));
    g.bench_function("decode_4k_ipv4", |b| {
        b.iter(|| black_box(decode_update(black_box(&body), &codec).unwrap()))
    });
    let p = prefixes(n as u32);
    let a = attrs();
    g.bench_function("encode_4k_ipv4", |b| {
        let mut buf = BytesMut::with_capacity(8192);
        b.iter(|| {
            buf.clear();
            pack_announcements(black_box(&a), black_box(&p), &codec, &mut buf);
            black_box(buf.len())
        })
    });
    g.finish();
}

fn rib(c: &mut Criterion) {
    const N: u32 = 100_000;
    let p = prefixes(N);
    let mut g = c.benchmark_group("rib");
    g.throughput(Throughput::Elements(N as u64));
    g.sample_size(10);
    g.bench_function("announce_two_peers_100k", |b| {
        b.iter(|| {
            let mut rib = Rib::new(Ipv4Addr::new(10, 0, 0, 10));
            for id in 1..=2u32 {
                rib.set_peer(
                    id,
                    PeerInfo {
                        address: IpAddr::V4(Ipv4Addr::new(10, 0, id as u8, 1)),
                        router_id: Ipv4Addr::new(10, 0, id as u8, 1),
                        ibgp: false,
                        local: false,
                    },
                );
            }
            let a1 = Arc::new(attrs());
            let mut second = attrs();
            second.next_hop = Some(IpAddr::V4(Ipv4Addr::new(10, 0, 2, 1)));
            let a2 = Arc::new(second);
            for n in &p {
                black_box(rib.announce(1, *n, a1.clone()));
                black_box(rib.announce(2, *n, a2.clone()));
            }
            rib.len()
        })
    });
    g.finish();
}

criterion_group!(benches, decode, rib);
criterion_main!(benches);
