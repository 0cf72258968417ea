//! The control-plane VIP: bound on `lo` and advertised to a real FRR ToR
//! while the local API server's health endpoint (here an HTTP server in
//! the node's namespace that the test turns unhealthy) answers 2xx;
//! withdrawn and unbound when it fails and at shutdown.

use novanet_conformance::checks::{agent_established, tor_and_node, SETTLE, TOR_FRR};
use novanet_conformance::{in_namespace, wait_until, Agent, Frr, Lab};
use serde_json::json;
use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// An HTTP health endpoint: 200 "ok" while `healthy`, else 500.
fn health_endpoint(listener: std::net::TcpListener, healthy: Arc<AtomicBool>, stop: Arc<AtomicBool>) {
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            let Ok(mut conn) = conn else { continue };
            let _ = conn.set_read_timeout(Some(Duration::from_secs(2)));
            let mut buf = [0u8; 2048];
            let _ = conn.read(&mut buf);
            let (status, body) = if healthy.load(Ordering::Relaxed) {
                ("200 OK", "ok")
            } else {
                (
                    "500 Internal Server Error",
                    "[-]etcd failed: reason withheld\nlivez check failed",
                )
            };
            let _ = write!(
                conn,
                "HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
}

fn lo_has(lab: &Lab, addr: &str) -> bool {
    lab.exec("node", "ip", &["-o", "addr", "show", "dev", "lo"])
        .contains(addr)
}

#[test]
fn the_vip_follows_the_api_servers_health() {
    let mut lab = Lab::new("cpvip");
    tor_and_node(&mut lab);
    let frr = Frr::start(&mut lab, "tor", TOR_FRR);
    let listener = in_namespace(&lab.ns_name("node"), || {
        std::net::TcpListener::bind("127.0.0.1:0").unwrap()
    });
    let port = listener.local_addr().unwrap().port();
    let healthy = Arc::new(AtomicBool::new(true));
    let stop = Arc::new(AtomicBool::new(false));
    health_endpoint(listener, healthy.clone(), stop.clone());

    let agent = Agent::start(
        &mut lab,
        "node",
        &json!({
            "node_name": "cp-1",
            "node_ip": "10.0.0.10",
            "pod_cidr": "10.244.10.0/24",
            "routing": {
                "peers": [{"neighbor_address": "10.0.0.1", "remote_as": 65000, "hold_time": 9, "keepalive": 3}],
                "control_plane_vip": "10.0.0.250",
                "control_plane_vip_health_interval": 1,
                "control_plane_vip_health_url": format!("http://127.0.0.1:{port}/livez")
            }
        }),
    );
    agent_established(&agent, "10.0.0.1");
    let tor_has = |want: bool| {
        wait_until(
            &format!("the ToR to {} 10.0.0.250/32", if want { "hold" } else { "drop" }),
            SETTLE,
            || match (frr.route_as_path("ipv4", "10.0.0.250/32"), want) {
                (Some(p), true) if p == "65010" => Ok(()),
                (None, false) => Ok(()),
                (other, _) => Err(format!("{other:?}")),
            },
        )
    };
    tor_has(true);
    assert!(lo_has(&lab, "10.0.0.250/32"), "the VIP is bound on lo while healthy");

    healthy.store(false, Ordering::Relaxed);
    tor_has(false);
    wait_until("the VIP to leave lo", SETTLE, || {
        if lo_has(&lab, "10.0.0.250") {
            Err("still bound".to_string())
        } else {
            Ok(())
        }
    });
    // The node's own prefix stays: only the VIP follows the API server.
    assert!(frr.route_as_path("ipv4", "10.244.10.0/24").is_some());

    healthy.store(true, Ordering::Relaxed);
    tor_has(true);
    assert!(lo_has(&lab, "10.0.0.250/32"));

    lab.signal(&agent.name, libc::SIGTERM);
    assert!(lab.wait_exit(&agent.name, Duration::from_secs(30)).success());
    assert!(!lo_has(&lab, "10.0.0.250"), "unbound at shutdown");
    stop.store(true, Ordering::Relaxed);
    let _ = in_namespace(&lab.ns_name("node"), move || {
        std::net::TcpStream::connect(("127.0.0.1", port))
    });
}
