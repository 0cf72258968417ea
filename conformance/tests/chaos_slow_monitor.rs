//! Slow monitor: a peer that takes the full table (export all) but reads
//! one byte a second, while another injector comes and goes (each time
//! its routes are announced, then withdrawn). The agent's memory stays
//! bounded (what it holds for the slow peer is one entry per prefix, the
//! latest change, however much churn passes), the normal monitor gets
//! every change as fast as without the slow peer, the injectors' sessions
//! stay up.
//!
//! CI runs it small (`cargo test`); `conformance/chaos.sh slow-monitor` at
//! 1M routes. Sizes: SLOW_ROUTES (table), SLOW_CHURN (the coming and going
//! injector's routes), SLOW_CYCLES (its comings and goings).

use novanet_conformance::agent::spawn_inject;
use novanet_conformance::checks::{node_a, switched, SETTLE};
use novanet_conformance::lab::rss_kib;
use novanet_conformance::raw::{hex, keepalive, message, read_message};
use novanet_conformance::{wait_until, Agent, Lab};
use serde_json::json;
use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

#[test]
fn a_slow_reader_costs_bounded_memory_and_delays_no_one() {
    let routes = env("SLOW_ROUTES", 20_000);
    let churn = env("SLOW_CHURN", 5_000);
    let cycles = env("SLOW_CYCLES", 3);
    let mut lab = Lab::new("slowmon");
    switched(
        &mut lab,
        &[
            ("node", "10.0.0.10/24"),
            ("inj", "10.0.0.2/24"),
            ("mon", "10.0.0.3/24"),
            ("slow", "10.0.0.4/24"),
            ("churn", "10.0.0.6/24"),
        ],
    );
    let agent = Agent::start(
        &mut lab,
        "node",
        &node_a(json!({
            "routing": {
                "fib": {"enabled": false},
                "bfd": {"enabled": false},
                "peers": [
                    {"neighbor_address": "10.0.0.2", "remote_as": 65002},
                    {"neighbor_address": "10.0.0.3", "remote_as": 65003, "export": "all"},
                    {"neighbor_address": "10.0.0.4", "remote_as": 65004, "export": "all",
                     "passive": true, "hold_time": 30, "keepalive": 10},
                    {"neighbor_address": "10.0.0.6", "remote_as": 65006}
                ]
            }
        })),
    );
    let pid = lab.pid(&agent.name).expect("agent pid");
    spawn_inject(&mut lab, "monitor", "mon", 65003, "10.0.0.3", &[]);
    let (routes_arg, churn_arg) = (routes.to_string(), churn.to_string());
    spawn_inject(
        &mut lab,
        "injector",
        "inj",
        65002,
        "10.0.0.2",
        &["--count", &routes_arg],
    );
    // What the monitor is sent: `n` routes and the node's PodCIDR.
    let monitor_holds = |n: u64, what: &str| {
        let started = Instant::now();
        wait_until(what, SETTLE * 6, || {
            let sent = agent.peer("10.0.0.3")["prefixes_sent"].as_u64().unwrap_or(0);
            if sent == n + 1 {
                Ok(())
            } else {
                Err(format!("{sent} sent"))
            }
        });
        started.elapsed()
    };
    monitor_holds(routes, "the monitor to hold the table");
    let before = rss_kib(pid);

    // The slow reader: OPEN, KEEPALIVE, then one byte a second and a
    // KEEPALIVE every 10 s.
    let stop = Arc::new(AtomicBool::new(false));
    let read = Arc::new(AtomicU64::new(0));
    let slow_ns = lab.ns_name("slow");
    let (stop_reader, read_by_reader) = (stop.clone(), read.clone());
    let reader = std::thread::spawn(move || {
        novanet_conformance::lab::enter_namespace(&slow_ns);
        let mut s = std::net::TcpStream::connect("10.0.0.10:179").expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        s.write_all(&message(
            1,
            &hex("04 fdec 001e 0a000004 10 0206 0104 00010001 0206 4104 0000fdec"),
        ))
        .unwrap();
        assert_eq!(read_message(&mut s).0, 1, "the agent's OPEN");
        s.write_all(&keepalive()).unwrap();
        assert_eq!(read_message(&mut s).0, 4, "the agent's KEEPALIVE");
        let mut last_keepalive = Instant::now();
        let mut byte = [0u8; 1];
        while !stop_reader.load(Ordering::Relaxed) {
            match s.read(&mut byte) {
                Ok(1) => {
                    read_by_reader.fetch_add(1, Ordering::Relaxed);
                }
                _ => return,
            }
            if last_keepalive.elapsed() > Duration::from_secs(10) {
                if s.write_all(&keepalive()).is_err() {
                    return;
                }
                last_keepalive = Instant::now();
            }
            // The reader's own pace: one byte a second.
            std::thread::sleep(Duration::from_secs(1));
        }
    });
    wait_until("the slow reader Established", SETTLE, || {
        match agent.peer_state("10.0.0.4") {
            s if s == "Established" => Ok(()),
            s => Err(s),
        }
    });
    // Its export is queued: the whole table waits for it.
    let stuck = rss_kib(pid);

    // The churn injector comes and goes; the monitor follows each time.
    let mut times = Vec::new();
    for cycle in 0..cycles {
        spawn_inject(
            &mut lab,
            "churn",
            "churn",
            65006,
            "10.0.0.6",
            &["--count", &churn_arg, "--first", "150.0.0.0/24"],
        );
        times.push(monitor_holds(
            routes + churn,
            &format!("cycle {cycle}: the monitor to get the churn"),
        ));
        lab.signal("churn", libc::SIGKILL);
        lab.wait_exit("churn", SETTLE);
        times.push(monitor_holds(
            routes,
            &format!("cycle {cycle}: the monitor to lose the churn"),
        ));
    }
    let after = rss_kib(pid);
    let slow_state = agent.peer_state("10.0.0.4");
    stop.store(true, Ordering::Relaxed);
    println!(
        "slow monitor: {routes} routes, {cycles} x {churn} churn; RSS {before} KiB before the slow reader, \
         {stuck} with it, {after} after the churn; it read {} bytes and is {slow_state}; \
         monitor convergence per step {:?}",
        read.load(Ordering::Relaxed),
        times
            .iter()
            .map(|t| format!("{:.2}s", t.as_secs_f64()))
            .collect::<Vec<_>>()
    );
    assert_eq!(
        agent.peer_state("10.0.0.2"),
        "Established",
        "the table's injector stays up"
    );
    let margin = stuck / 10 + 16 * 1024;
    assert!(
        after <= stuck + margin,
        "RSS grew with the churn: {stuck} -> {after} KiB"
    );
    drop(reader);
}
