//! The OSPF bridge against a real FRR ospfd + zebra in a namespace, through
//! `vtysh --vty_socket`: an interface put into an area shows in the running
//! configuration and in ospfd's interface view, FRR's refusals fail the
//! batch, and a smuggled command never reaches vtysh (the running
//! configuration stays as it was); the desired state survives an ospfd
//! and a zebra restart.

use novanet_conformance::{wait_until, Frr, Lab};
use novanet_ospf_bridge::bridge::{Bridge, Change, Desired};
use novanet_ospf_bridge::command::{Interface, InterfaceRequest, Version};
use novanet_ospf_bridge::readback;
use novanet_ospf_bridge::vtysh::{holds, VtyError, Vtysh};
use std::path::Path;
use std::time::Duration;

#[test]
fn the_bridge_drives_a_real_ospfd() {
    let mut lab = Lab::new("ospfb");
    lab.add_ns("r");
    lab.add_ns("p");
    lab.link("r", "eth0", &["10.9.0.1/24"], "p", "eth0", &["10.9.0.2/24"]);
    let frr = Frr::start_daemons(
        &mut lab,
        "r",
        &[
            ("zebra", "hostname r\n"),
            ("ospfd", "hostname r\nrouter ospf\n ospf router-id 10.9.0.1\n"),
        ],
    );
    let dir = format!("/var/run/frr/{}", frr.instance);
    let vty = Vtysh::new(Path::new(&dir));
    wait_until("ospfd's vty", Duration::from_secs(20), || {
        vty.show("show ip ospf json").map(|_| ()).map_err(|e| e.to_string())
    });

    let eth0 = Interface::new(&InterfaceRequest {
        name: "eth0",
        area: "0",
        cost: 7,
        hello: 1,
        dead: 3,
        ..Default::default()
    })
    .unwrap();
    vty.configure(&eth0.enable_lines()).expect("ospfd takes the interface");
    let running = vty.running_config().unwrap();
    assert!(holds(&running, &eth0.enable_lines()), "{running}");
    let ifaces = readback::interfaces(&vty.show("show ip ospf interface json").unwrap()).unwrap();
    let e = ifaces.iter().find(|i| i.name == "eth0").expect("eth0 in ospfd");
    assert_eq!(e.area, "0.0.0.0");

    // FRR's refusal is an error, with its message.
    let refused = vty
        .configure(&["interface eth0".to_string(), " ip ospf bogus 1".to_string()])
        .unwrap_err();
    assert!(
        matches!(&refused, VtyError::Refused(m) if m.contains("Unknown command")),
        "{refused}"
    );

    // A command smuggled in an interface name never reaches vtysh.
    let before = vty.running_config().unwrap();
    let smuggled = Interface::new(&InterfaceRequest {
        name: "eth0\nrouter bgp 1",
        area: "0",
        ..Default::default()
    });
    assert_eq!(smuggled.unwrap_err().field, "interface_name");
    assert_eq!(
        vty.running_config().unwrap(),
        before,
        "the running configuration is unchanged"
    );
    assert!(!before.contains("router bgp"));

    // Out of OSPF again.
    vty.configure(&eth0.disable_lines()).unwrap();
    let after = vty.running_config().unwrap();
    assert!(!holds(&after, &[" ip ospf area 0.0.0.0".to_string()]), "{after}");

    // With a neighbor: set at runtime with short timers, the adjacency is
    // Full within a few dead intervals (the timers precede the area line).
    let peer = Frr::start_daemons(
        &mut lab,
        "p",
        &[
            ("zebra", "hostname p\n"),
            ("ospfd", "hostname p\nrouter ospf\n ospf router-id 10.9.0.2\n"),
        ],
    );
    let peer_vty = Vtysh::new(Path::new(&format!("/var/run/frr/{}", peer.instance)));
    wait_until("the peer's vty", Duration::from_secs(20), || {
        peer_vty
            .show("show ip ospf json")
            .map(|_| ())
            .map_err(|e| e.to_string())
    });
    vty.configure(&eth0.enable_lines()).unwrap();
    peer_vty.configure(&eth0.enable_lines()).unwrap();
    wait_until("the adjacency Full", Duration::from_secs(20), || {
        let n = readback::neighbors(&vty.show("show ip ospf neighbor json").map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
        match n.first() {
            Some(x) if x.is_full() && x.router_id == "10.9.0.2" && x.interface == "eth0" => Ok(()),
            other => Err(format!("{other:?}")),
        }
    });
}

#[test]
fn the_desired_state_comes_back_after_ospfd_restarts() {
    let mut lab = Lab::new("ospfr");
    lab.add_ns("r");
    lab.add_ns("p");
    lab.link("r", "eth0", &["10.9.1.1/24"], "p", "eth0", &["10.9.1.2/24"]);
    let frr = Frr::start_daemons(
        &mut lab,
        "r",
        &[("zebra", "hostname r\n"), ("ospfd", "hostname r\nrouter ospf\n")],
    );
    let vty = Vtysh::new(Path::new(&format!("/var/run/frr/{}", frr.instance)));
    wait_until("ospfd's vty", Duration::from_secs(20), || {
        vty.show("show ip ospf json").map(|_| ()).map_err(|e| e.to_string())
    });
    let mut bridge = Bridge::new(vty);
    let mut want = Desired {
        router_id: Some("10.9.1.1".parse().unwrap()),
        ..Default::default()
    };
    want.insert(
        Interface::new(&InterfaceRequest {
            name: "eth0",
            area: "0.0.0.1",
            hello: 2,
            dead: 8,
            ..Default::default()
        })
        .unwrap(),
    );
    let eth0 = Change::Applied(Version::V2, "eth0".into());
    let first = bridge.sync(&want).unwrap().changes;
    assert!(
        matches!(&first[0], Change::Connected(v) if v.starts_with("FRRouting")),
        "{first:?}"
    );
    assert!(first.contains(&eth0));
    let again = bridge.sync(&want).unwrap();
    assert!(
        again.changes.is_empty() && again.failed.is_empty(),
        "nothing to do when the state holds: {again:?}"
    );

    frr.kill_daemon("ospfd");
    let gone = bridge.sync(&want).unwrap().changes;
    assert!(matches!(gone.as_slice(), [Change::Disconnected(_)]), "{gone:?}");
    frr.start_daemon_again(&mut lab, "r", "ospfd");
    wait_until("ospfd back", Duration::from_secs(20), || {
        bridge
            .vtysh()
            .show("show ip ospf json")
            .map(|_| ())
            .map_err(|e| e.to_string())
    });
    let back = bridge.sync(&want).unwrap().changes;
    assert!(matches!(&back[0], Change::Connected(_)), "{back:?}");
    assert!(back.contains(&eth0), "re-applied: {back:?}");
    let running = bridge.vtysh().running_config().unwrap();
    assert!(
        running.contains(" ip ospf area 0.0.0.1") && running.contains("ospf router-id 10.9.1.1"),
        "{running}"
    );

    // zebra dies and comes back: the sidecar is gone meanwhile, and the
    // restarted zebra (a new pid and socket) is a reconnection.
    frr.kill_daemon("zebra");
    let gone = bridge.sync(&want).unwrap().changes;
    assert!(
        matches!(gone.as_slice(), [Change::Disconnected(why)] if why.contains("zebra")),
        "{gone:?}"
    );
    frr.start_daemon_again(&mut lab, "r", "zebra");
    wait_until("zebra back", Duration::from_secs(20), || {
        bridge.vtysh().show("show zebra").map(|_| ()).map_err(|e| e.to_string())
    });
    let back = bridge.sync(&want).unwrap();
    assert!(matches!(&back.changes[0], Change::Connected(_)), "{back:?}");
    assert!(back.failed.is_empty(), "{back:?}");

    // Taken out of the desired state: taken out of ospfd.
    want.interfaces.clear();
    assert_eq!(
        bridge.sync(&want).unwrap().changes,
        vec![Change::Removed(Version::V2, "eth0".into())]
    );
    assert!(!bridge.vtysh().running_config().unwrap().contains("ip ospf area"));

    // What an earlier agent left in the sidecar (not known to this
    // bridge) is taken out too: the sidecar holds the desired state only.
    let left = Interface::new(&InterfaceRequest {
        name: "eth0",
        area: "0.0.0.2",
        cost: 30,
        passive: true,
        ..Default::default()
    })
    .unwrap();
    bridge.vtysh().configure(&left.enable_lines()).unwrap();
    let mut fresh = Bridge::new(Vtysh::new(Path::new(&format!("/var/run/frr/{}", frr.instance))));
    let cleaned = fresh.sync(&want).unwrap();
    assert!(
        cleaned.changes.contains(&Change::Removed(Version::V2, "eth0".into())),
        "{cleaned:?}"
    );
    let running = fresh.vtysh().running_config().unwrap();
    assert!(
        !running.contains("ip ospf area") && !running.contains("ip ospf cost") && !running.contains("ip ospf passive"),
        "{running}"
    );
}
