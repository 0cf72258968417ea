//! The OSPF bridge against a real FRR ospfd + zebra in a namespace, through
//! `vtysh --vty_socket`: an interface put into an area shows in the running
//! configuration and in ospfd's interface view, FRR's refusals fail the
//! batch, and a smuggled command never reaches vtysh (the running
//! configuration stays as it was).

use novanet_conformance::{wait_until, Frr, Lab};
use novanet_ospf_bridge::command::{Interface, InterfaceRequest};
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
