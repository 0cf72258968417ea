//! ToRs the routing resources name without an address, against a real
//! kube-apiserver and FRR: one by `autoDiscovery: {mode: DefaultGateway}`
//! (the node's default route's gateway, `remoteAS: 0`: whatever AS it
//! opens with) and one by `interface` (BGP unnumbered on a link with
//! link-local addresses only, found from its Router Advertisements).
//! Routes travel both ways on both; the default route taken away, the
//! gateway peer goes and a GatewayMissing condition says why, and it comes
//! back with the route; the peer by interface leaves and comes back with
//! the config without touching the other session.

use novanet_conformance::checks::{agent_established, SETTLE};
use novanet_conformance::kube_server::{self, KubeServer, Options};
use novanet_conformance::{wait_until, Agent, Frr, Lab};
use serde_json::json;
use std::path::Path;

const GATEWAY: &str = "frr defaults datacenter
hostname gw
!
router bgp 65003
 bgp router-id 10.0.0.12
 no bgp ebgp-requires-policy
 no bgp network import-check
 neighbor 10.0.0.11 remote-as external
 neighbor 10.0.0.11 timers connect 1
 address-family ipv4 unicast
  network 198.51.100.0/24
 exit-address-family
!
";

const LINK_TOR: &str = "hostname tor
router bgp 65000
 bgp router-id 10.0.0.1
 no bgp ebgp-requires-policy
 no bgp network import-check
 neighbor eth0 interface remote-as external
 neighbor eth0 timers connect 1
 address-family ipv4 unicast
  network 192.0.2.1/32
 exit-address-family
 address-family ipv6 unicast
  neighbor eth0 activate
 exit-address-family
";

fn config(with_link: bool) -> String {
    let link = if with_link {
        "    - {name: link, interface: eth1, remoteAS: 65000}\n"
    } else {
        ""
    };
    format!(
        "apiVersion: bgp.novanet.io/v1alpha1\nkind: NovaBGPClusterConfig\nmetadata: {{name: all}}\nspec:\n  peers:\n    - {{name: gw, autoDiscovery: {{mode: DefaultGateway}}, remoteAS: 0}}\n{link}"
    )
}

fn apply(api: &KubeServer, dir: &Path, yaml: &str) {
    let file = dir.join("config.yaml");
    std::fs::write(&file, yaml).unwrap();
    api.kubectl(&["apply", "-f", file.to_str().unwrap()]);
}

/// The link-local address of `ns`'s `dev`.
fn link_local(lab: &Lab, ns: &str, dev: &str) -> String {
    let out = lab.exec(ns, "ip", &["-6", "-o", "addr", "show", "dev", dev, "scope", "link"]);
    out.split_whitespace()
        .skip_while(|w| *w != "inet6")
        .nth(1)
        .and_then(|a| a.split('/').next())
        .unwrap_or_else(|| panic!("no link-local address on {ns}'s {dev}: {out}"))
        .to_string()
}

fn has_route(agent: &Agent, prefix: &str) -> Result<(), String> {
    let paths = agent.route(prefix);
    (!paths.is_empty())
        .then_some(())
        .ok_or_else(|| format!("no path to {prefix}"))
}

#[test]
fn tors_by_default_gateway_and_by_interface_from_the_resources() {
    let mut lab = Lab::new("discover");
    let (api, kubeconfig) = kube_server::on_switch(&mut lab, &["n1", "gw"], Options::default(), &[]);
    lab.add_ns("tor");
    lab.link("tor", "eth0", &[], "n1", "eth1", &[]);
    lab.exec("tor", "ip", &["addr", "add", "192.0.2.1/32", "dev", "lo"]);
    lab.exec("n1", "ip", &["addr", "add", "10.244.11.1/32", "dev", "lo"]);
    lab.exec("n1", "ip", &["route", "add", "default", "via", "10.0.0.12"]);
    let gw = Frr::start(&mut lab, "gw", GATEWAY);
    let tor = Frr::start_daemons(&mut lab, "tor", &[("zebra", "hostname tor\n"), ("bgpd", LINK_TOR)]);
    let crds = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/helm/novanet/crds");
    api.kubectl(&["apply", "-f", crds.to_str().unwrap()]);
    api.kubectl(&["wait", "--for=condition=Established", "--timeout=60s", "crd", "--all"]);
    api.apply_node(kube_server::node("n1", "10.0.0.11", "10.244.11.0/24"));
    apply(&api, lab.dir(), &config(true));

    let env = [("KUBECONFIG", kubeconfig.to_str().unwrap())];
    let node_config = json!({
        "node_name": "n1",
        "routing": {"bfd": {"enabled": false}, "node_state_heartbeat": 1,
                    "node_mesh": {"enabled": false, "source": "kubernetes"}}
    });
    let n1 = Agent::start_with_env(&mut lab, "n1", &node_config, &env);
    let tor_ll = link_local(&lab, "tor", "eth0");

    // The gateway, in the AS it opened with; the link's ToR at its
    // link-local address. Routes both ways on both.
    agent_established(&n1, "10.0.0.12");
    assert_eq!(n1.peer("10.0.0.12")["remote_as"], 65003, "{}", n1.peer("10.0.0.12"));
    agent_established(&n1, &tor_ll);
    assert_eq!(n1.peer(&tor_ll)["interface"], "eth1", "{}", n1.peer(&tor_ll));
    wait_until("n1 to learn both ToRs' routes", SETTLE, || {
        has_route(&n1, "198.51.100.0/24")?;
        has_route(&n1, "192.0.2.1/32")
    });
    for frr in [&gw, &tor] {
        wait_until("the ToR to learn n1's PodCIDR", SETTLE, || {
            frr.route_as_path("ipv4", "10.244.11.0/24")
                .map(|_| ())
                .ok_or_else(|| "not yet".to_string())
        });
    }
    let link_connections = tor.json("show bgp neighbors json")["eth0"]["connectionsEstablished"].clone();

    // No default route: the gateway peer goes, said as a condition; the
    // link's session stays. The route back: the peer comes back.
    lab.exec("n1", "ip", &["route", "del", "default"]);
    wait_until("the gateway peer gone, GatewayMissing shown", SETTLE, || {
        let c = api.node_condition("n1", "GatewayMissing");
        (n1.peer("10.0.0.12").is_null() && c.is_some())
            .then_some(())
            .ok_or_else(|| format!("{c:?} {}", n1.peer("10.0.0.12")))
    });
    assert_eq!(n1.peer_state(&tor_ll), "Established");
    lab.exec("n1", "ip", &["route", "add", "default", "via", "10.0.0.12"]);
    agent_established(&n1, "10.0.0.12");
    wait_until("GatewayMissing cleared", SETTLE, || {
        let c = api.node_condition("n1", "GatewayMissing");
        c.is_none().then_some(()).ok_or_else(|| format!("{c:?}"))
    });
    assert_eq!(
        tor.json("show bgp neighbors json")["eth0"]["connectionsEstablished"],
        link_connections,
        "the link's session was not touched"
    );

    // The peer by interface out of the config and back.
    apply(&api, lab.dir(), &config(false));
    wait_until("the link's peer gone", SETTLE, || {
        n1.peer(&tor_ll)
            .is_null()
            .then_some(())
            .ok_or_else(|| n1.peer(&tor_ll).to_string())
    });
    assert_eq!(n1.peer_state("10.0.0.12"), "Established");
    apply(&api, lab.dir(), &config(true));
    agent_established(&n1, &tor_ll);
    wait_until("n1 to learn the link ToR's route again", SETTLE, || {
        has_route(&n1, "192.0.2.1/32")
    });
}
