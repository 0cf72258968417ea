//! A peer that stops reading: after OPEN it never reads again (its TCP
//! window closes) but keeps sending KEEPALIVEs, while the agent exports
//! 100k routes to it. Its session must end at its hold time (the writer
//! makes no progress for that long), not after TCP's ~15 minutes; the
//! other peers must not notice: the injector's session stays up and a
//! monitor receives every route.

use novanet_conformance::agent::spawn_inject;
use novanet_conformance::checks::{node_a, switched, SETTLE};
use novanet_conformance::raw::{hex, keepalive, message, read_message};
use novanet_conformance::{wait_until, Agent, Lab};
use serde_json::json;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const ROUTES: u32 = 100_000;

#[test]
fn a_peer_that_stops_reading_is_dropped_at_its_hold_time() {
    let mut lab = Lab::new("stuck");
    switched(
        &mut lab,
        &[
            ("node", "10.0.0.10/24"),
            ("inj", "10.0.0.2/24"),
            ("mon", "10.0.0.3/24"),
            ("stuck", "10.0.0.4/24"),
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
                     "passive": true, "hold_time": 9, "keepalive": 3}
                ]
            }
        })),
    );

    // The stuck peer: OPEN, KEEPALIVE, then only KEEPALIVEs, never a read.
    let stop = Arc::new(AtomicBool::new(false));
    let (up_tx, up_rx) = std::sync::mpsc::channel::<()>();
    let stuck_ns = lab.ns_name("stuck");
    let stop_peer = stop.clone();
    let peer = std::thread::spawn(move || {
        novanet_conformance::lab::enter_namespace(&stuck_ns);
        let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        // A small receive buffer: the window closes after a few KiB.
        socket.set_recv_buffer_size(4096).unwrap();
        socket
            .connect(&"10.0.0.10:179".parse::<std::net::SocketAddr>().unwrap().into())
            .unwrap();
        let mut s: std::net::TcpStream = socket.into();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        // OPEN: AS 65004, hold 9, id 10.0.0.4, IPv4 unicast, 4-octet AS.
        s.write_all(&message(
            1,
            &hex("04 fdec 0009 0a000004 10 0206 0104 00010001 0206 4104 0000fdec"),
        ))
        .unwrap();
        assert_eq!(read_message(&mut s).0, 1, "the agent's OPEN");
        s.write_all(&keepalive()).unwrap();
        assert_eq!(read_message(&mut s).0, 4, "the agent's KEEPALIVE");
        up_tx.send(()).unwrap();
        let _ = s.set_write_timeout(Some(Duration::from_secs(2)));
        let started = Instant::now();
        while !stop_peer.load(Ordering::Relaxed) && started.elapsed() < Duration::from_secs(120) {
            if s.write_all(&keepalive()).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(1000));
        }
    });
    up_rx.recv_timeout(SETTLE).expect("the stuck peer's session came up");
    wait_until("the stuck peer Established", SETTLE, || {
        match agent.peer_state("10.0.0.4") {
            s if s == "Established" => Ok(()),
            s => Err(s),
        }
    });

    spawn_inject(&mut lab, "monitor", "mon", 65003, "10.0.0.3", &[]);
    wait_until("the monitor Established", SETTLE, || {
        match agent.peer_state("10.0.0.3") {
            s if s == "Established" => Ok(()),
            s => Err(s),
        }
    });
    let routes = ROUTES.to_string();
    spawn_inject(&mut lab, "injector", "inj", 65002, "10.0.0.2", &["--count", &routes]);

    // The monitor gets every route while the stuck peer's window is shut.
    wait_until("the monitor to receive every route", SETTLE, || {
        let sent = agent.peer("10.0.0.3")["prefixes_sent"].as_u64().unwrap_or(0);
        if sent >= ROUTES as u64 {
            Ok(())
        } else {
            Err(format!("{sent} sent"))
        }
    });
    // The stuck peer is dropped within its hold time (9 s) plus the
    // kernel's retransmission granularity; it keeps sending KEEPALIVEs, so
    // only the writer's lack of progress can tell.
    let since = Instant::now();
    wait_until("the stuck peer's session to end", SETTLE, || {
        match agent.peer_state("10.0.0.4") {
            s if s != "Established" => Ok(()),
            s => Err(s),
        }
    });
    assert!(
        since.elapsed() < Duration::from_secs(30),
        "dropped after {:?}",
        since.elapsed()
    );
    assert_eq!(
        agent.peer_state("10.0.0.2"),
        "Established",
        "the injector is not affected"
    );
    assert_eq!(
        agent.peer_state("10.0.0.3"),
        "Established",
        "the monitor is not affected"
    );
    assert_eq!(agent.peer("10.0.0.2")["prefixes_received"], ROUTES as u64);
    stop.store(true, Ordering::Relaxed);
    let _ = peer.join();
}
