//! RFC 7606 against the real agent: a scripted peer on a real TCP session
//! sends malformed UPDATEs. Treat-as-withdraw and attribute-discard keep the
//! session and the other routes; a malformed MP_REACH_NLRI gets the right
//! NOTIFICATION and a reset of that session only.

use novanet_conformance::raw::{hex, message, read_message};
use novanet_conformance::{wait_until, Agent, Lab};
use serde_json::json;
use std::io::Write;
use std::sync::mpsc;
use std::time::Duration;

const T: Duration = Duration::from_secs(30);

/// An UPDATE announcing `nlri` (hex) with the given attributes (hex).
fn update(attrs: &str, nlri: &str) -> Vec<u8> {
    let a = hex(attrs);
    let mut body = vec![0, 0];
    body.extend_from_slice(&(a.len() as u16).to_be_bytes());
    body.extend_from_slice(&a);
    body.extend_from_slice(&hex(nlri));
    message(2, &body)
}

const GOOD: &str = "40 01 01 00  40 02 06 02 01 0000fde8  40 03 04 0a000001";

#[test]
fn malformed_updates_from_a_scripted_peer() {
    let mut lab = Lab::new("rfc7606");
    lab.add_ns("tor");
    lab.add_ns("node");
    lab.link("tor", "eth0", &["10.0.0.1/24"], "node", "eth0", &["10.0.0.10/24"]);

    let (to_peer, peer_rx) = mpsc::channel::<()>();
    let (peer_tx, from_peer) = mpsc::channel::<&'static str>();
    let tor_ns = lab.ns_name("tor");
    let peer = std::thread::spawn(move || -> (u8, u8) {
        let file = std::fs::File::open(format!("/var/run/netns/{tor_ns}")).unwrap();
        // SAFETY: setns for this thread only.
        assert_eq!(
            unsafe { libc::setns(std::os::fd::AsRawFd::as_raw_fd(&file), libc::CLONE_NEWNET) },
            0
        );
        let listener = std::net::TcpListener::bind("10.0.0.1:179").unwrap();
        peer_tx.send("listening").unwrap();
        let (mut s, _) = listener.accept().unwrap();
        s.set_read_timeout(Some(T)).unwrap();
        // OPEN: AS 65000, hold 0 (no keepalives needed), id 10.0.0.1,
        // IPv4 unicast and 4-octet AS.
        s.write_all(&message(
            1,
            &hex("04 fde8 0000 0a000001 10 0206 0104 00010001 0206 4104 0000fde8"),
        ))
        .unwrap();
        let mut got_open = false;
        while !got_open {
            got_open = read_message(&mut s).0 == 1;
        }
        s.write_all(&message(4, &[])).unwrap();
        // Treat-as-withdraw: COMMUNITIES of 3 octets, for 203.0.113.0/24.
        s.write_all(&update(&format!("{GOOD} c0 08 03 010203"), "18 cb0071"))
            .unwrap();
        // A good route.
        s.write_all(&update(GOOD, "18 c63364")).unwrap();
        // Attribute discard: ATOMIC_AGGREGATE with a length of 1.
        s.write_all(&update(&format!("{GOOD} 40 06 01 00"), "18 c00002"))
            .unwrap();
        peer_tx.send("sent").unwrap();
        peer_rx.recv().unwrap();
        // Session reset: an MP_REACH_NLRI too short to parse.
        s.write_all(&update("40 01 01 00  40 02 06 02 01 0000fde8  80 0e 03 000201", ""))
            .unwrap();
        loop {
            let (kind, body) = read_message(&mut s);
            if kind == 3 {
                return (body[0], body[1]);
            }
        }
    });
    assert_eq!(from_peer.recv_timeout(T).unwrap(), "listening");

    let agent = Agent::start(
        &mut lab,
        "node",
        &json!({
            "node_name": "node-a",
            "node_ip": "10.0.0.10",
            "pod_cidr": "10.244.10.0/24",
            "routing": {"peers": [{"neighbor_address": "10.0.0.1", "remote_as": 65000}]}
        }),
    );
    assert_eq!(from_peer.recv_timeout(T).unwrap(), "sent");
    wait_until("the good routes at the agent", T, || {
        let good = agent.route("198.51.100.0/24");
        let discarded = agent.route("192.0.2.0/24");
        if good.len() == 1 && discarded.len() == 1 {
            Ok(())
        } else {
            Err(format!("{good:?} {discarded:?}"))
        }
    });
    assert!(
        agent.route("203.0.113.0/24").is_empty(),
        "treat-as-withdraw installs nothing"
    );
    assert_eq!(agent.peer_state("10.0.0.1"), "Established", "the session stays up");
    assert_eq!(agent.peer("10.0.0.1")["prefixes_received"], 2);

    to_peer.send(()).unwrap();
    let (code, subcode) = peer.join().expect("scripted peer");
    assert_eq!(
        (code, subcode),
        (3, 9),
        "UPDATE Message Error / Optional Attribute Error"
    );
    wait_until("the reset session's routes to leave", T, || {
        let r = agent.route("198.51.100.0/24");
        if r.is_empty() {
            Ok(())
        } else {
            Err(format!("{r:?}"))
        }
    });
    let last = agent.peer("10.0.0.1")["last_notification_sent"].to_string();
    assert!(last.contains("UPDATE message error (3/9)"), "{last}");
}
