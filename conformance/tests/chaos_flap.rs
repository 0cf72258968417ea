//! Flap soak: while an injector's table is held (and in the kernel), a
//! peer connects, announces a few hundred routes and drops the connection,
//! again and again. Afterwards the agent is where it started: RSS back to
//! its baseline (within 10 % + 8 MiB), as many file descriptors (within
//! the two of status requests) and threads, the flapper's routes gone from the RIB and the kernel, the
//! counters matching the table, one established transition per flap.
//!
//! CI runs it small (`cargo test`); `conformance/chaos.sh flap` runs it at
//! 100k routes for three minutes. Sizes: FLAP_ROUTES (held table),
//! FLAP_SECONDS (soak), FLAP_INTERVAL_MS (a session's life), FLAP_PREFIXES
//! (announced per session).

use bytes::BytesMut;
use novanet_bgp::wire::{update, AsPath, Nlri, Origin, PathAttributes, SessionCodec};
use novanet_conformance::agent::spawn_inject;
use novanet_conformance::checks::{node_a, switched, SETTLE};
use novanet_conformance::raw::{hex, keepalive, message, read_message};
use novanet_conformance::{wait_until, Agent, Lab};
use serde_json::json;
use std::io::Write;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// The agent's resident memory (KiB), open descriptors and threads.
fn footprint(pid: u32) -> (u64, usize, usize) {
    let rss = novanet_conformance::lab::rss_kib(pid);
    let count = |dir: &str| {
        std::fs::read_dir(format!("/proc/{pid}/{dir}"))
            .map(|d| d.count())
            .unwrap_or(0)
    };
    (rss, count("fd"), count("task"))
}

/// The flapper's UPDATEs: `n` /24s from 198.18.0.0 with its AS and address.
fn announcements(n: u32) -> Vec<u8> {
    let attrs = PathAttributes {
        origin: Origin::Igp,
        as_path: AsPath::from_sequence(vec![65005]),
        next_hop: Some("10.0.0.5".parse().unwrap()),
        ..Default::default()
    };
    let prefixes: Vec<Nlri> = (0..n)
        .map(|i| {
            let a = u32::from(Ipv4Addr::new(198, 18, 0, 0)) + (i << 8);
            Nlri::new(format!("{}/24", Ipv4Addr::from(a)).parse().unwrap())
        })
        .collect();
    let mut out = BytesMut::new();
    update::pack_announcements(&attrs, &prefixes, &SessionCodec::default(), &mut out);
    out.to_vec()
}

/// Runs sessions from the flapper's namespace until `until`: connect,
/// OPEN, KEEPALIVE, the routes, `life`, close. Returns how many sessions
/// came up and the NOTIFICATIONs (code, subcode) that refused the others.
fn flap(ns: String, until: Instant, life: Duration, routes: Vec<u8>) -> std::thread::JoinHandle<(u64, Vec<String>)> {
    std::thread::spawn(move || {
        novanet_conformance::lab::enter_namespace(&ns);
        let mut sessions = 0;
        let mut refused = Vec::new();
        while Instant::now() < until {
            let Ok(mut s) =
                std::net::TcpStream::connect_timeout(&"10.0.0.10:179".parse().unwrap(), Duration::from_secs(2))
            else {
                std::thread::sleep(Duration::from_millis(50));
                continue;
            };
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            // OPEN: AS 65005, hold 9, id 10.0.0.5, IPv4 unicast, 4-octet AS.
            let open = message(
                1,
                &hex("04 fded 0009 0a000005 10 0206 0104 00010001 0206 4104 0000fded"),
            );
            if s.write_all(&open).is_err() {
                continue;
            }
            let (kind, body) = read_message(&mut s);
            if kind == 3 {
                // Refused (the agent still holds the last session): as a
                // real peer, try again.
                refused.push(format!("{:02x?}", &body[..2.min(body.len())]));
                std::thread::sleep(Duration::from_millis(20));
                continue;
            }
            assert_eq!(kind, 1, "the agent's OPEN");
            s.write_all(&keepalive()).unwrap();
            assert_eq!(read_message(&mut s).0, 4, "the agent's KEEPALIVE");
            sessions += 1;
            s.write_all(&routes).unwrap();
            // The session's life: the flapper's own clock, not a wait for
            // the agent.
            std::thread::sleep(life);
        }
        (sessions, refused)
    })
}

#[test]
fn a_flapping_peer_leaves_no_trace() {
    let held = env("FLAP_ROUTES", 5_000);
    let soak = Duration::from_secs(env("FLAP_SECONDS", 6));
    let life = Duration::from_millis(env("FLAP_INTERVAL_MS", 300));
    let per_session = env("FLAP_PREFIXES", 256) as u32;

    let mut lab = Lab::new("flap");
    switched(
        &mut lab,
        &[
            ("node", "10.0.0.10/24"),
            ("inj", "10.0.0.2/24"),
            ("flap", "10.0.0.5/24"),
        ],
    );
    let agent = Agent::start(
        &mut lab,
        "node",
        &node_a(json!({
            "routing": {
                "bfd": {"enabled": false},
                "peers": [
                    {"neighbor_address": "10.0.0.2", "remote_as": 65002},
                    {"neighbor_address": "10.0.0.5", "remote_as": 65005, "passive": true, "hold_time": 9, "keepalive": 3}
                ]
            }
        })),
    );
    let count = held.to_string();
    spawn_inject(&mut lab, "injector", "inj", 65002, "10.0.0.2", &["--count", &count]);
    let settled = |what: &str| {
        wait_until(what, SETTLE * 4, || {
            let fib: serde_json::Value =
                serde_json::from_str(&agent.get("/status/fib").unwrap_or_default()).unwrap_or_default();
            let received = agent.peer("10.0.0.2")["prefixes_received"].as_u64().unwrap_or(0);
            let flapper = agent.peer("10.0.0.5");
            if received == held
                && fib["installed"] == held
                && fib["desired"] == held
                && flapper["state"] != "Established"
                && flapper["prefixes_received"] == 0
            {
                Ok(())
            } else {
                Err(format!("received {received}, fib {fib}, flapper {flapper}"))
            }
        })
    };
    settled("the injector's table in the kernel");
    let pid = lab.pid(&agent.name).expect("agent pid");
    let routes = announcements(per_session);
    let flap_ns = lab.ns_name("flap");

    // Warm-up: a few sessions, so the baseline holds what one costs.
    let (warm, _) = flap(flap_ns.clone(), Instant::now() + life * 5, life, routes.clone())
        .join()
        .unwrap();
    settled("the table after the warm-up");
    let before = footprint(pid);
    let transitions_before = agent.peer("10.0.0.5")["established_transitions"].as_u64().unwrap_or(0);

    let started = Instant::now();
    let (sessions, refused) = flap(flap_ns, Instant::now() + soak, life, routes).join().unwrap();
    let soaked = started.elapsed();
    settled("the table after the soak");
    let after = footprint(pid);
    let transitions = agent.peer("10.0.0.5")["established_transitions"].as_u64().unwrap_or(0) - transitions_before;
    let kernel_routes = lab
        .exec("node", "ip", &["-4", "route", "show", "proto", "bgp"])
        .lines()
        .filter(|l| !l.starts_with(' ') && !l.starts_with('\t'))
        .count() as u64;
    println!(
        "flap soak: {held} routes held, {sessions} sessions in {:.1} s ({warm} warm-up); \
         {} refused (NOTIFICATION code/subcode: count {:?}); RSS {} -> {} KiB, fds {} -> {}, threads {} -> {}",
        soaked.as_secs_f64(),
        refused.len(),
        refused
            .iter()
            .fold(std::collections::BTreeMap::<&str, usize>::new(), |mut m, r| {
                *m.entry(r.as_str()).or_default() += 1;
                m
            }),
        before.0,
        after.0,
        before.1,
        after.1,
        before.2,
        after.2
    );
    assert!(sessions >= 5, "the flapper came up {sessions} times");
    assert_eq!(transitions, sessions, "one established transition per session");
    assert_eq!(kernel_routes, held, "the kernel holds the injector's routes only");
    let margin = before.0 / 10 + 8 * 1024;
    assert!(
        after.0 <= before.0 + margin,
        "RSS {} KiB after, {} KiB before",
        after.0,
        before.0
    );
    // A leak would be one per session; the agent's own status connections
    // (this test's requests) come and go by one or two.
    assert!(
        after.1 <= before.1 + 2,
        "file descriptors {} after, {} before",
        after.1,
        before.1
    );
    assert!(
        after.2 <= before.2 + 4,
        "threads {} after, {} before",
        after.2,
        before.2
    );
}
