//! BGP unnumbered against FRR (`neighbor eth0 interface`, RFC 8950): a
//! link with no IPv4 address at all. The agent finds the ToR at its IPv6
//! link-local address from its Router Advertisements and makes itself
//! known by its own; IPv4 and IPv6 routes travel with link-local next hops
//! and reach both kernels through that link; pods ping across it. The
//! peer goes and comes back with the configuration.

use novanet_conformance::checks::{agent_established, node_a, SETTLE};
use novanet_conformance::{wait_until, Agent, Frr, Lab};
use serde_json::{json, Value};

const TOR_ZEBRA: &str = "hostname tor\n";

const TOR_BGPD: &str = "hostname tor
router bgp 65000
 bgp router-id 10.0.0.1
 no bgp ebgp-requires-policy
 no bgp network import-check
 neighbor eth0 interface remote-as external
 neighbor eth0 timers 3 9
 neighbor eth0 timers connect 1
 address-family ipv4 unicast
  network 192.0.2.1/32
 exit-address-family
 address-family ipv6 unicast
  network 2001:db8:1::1/128
  neighbor eth0 activate
 exit-address-family
";

/// The node's configuration: its one ToR by interface, or none.
fn node_config(unnumbered: bool) -> Value {
    let peers = if unnumbered {
        json!([{"interface": "eth0", "remote_as": 65000, "hold_time": 9, "keepalive": 3}])
    } else {
        json!([])
    };
    node_a(json!({
        "pod_cidrs": ["10.244.10.0/24", "fd10:244:10::/64"],
        "routing": {"peers": peers},
    }))
}

/// The link-local address of `ns`'s eth0.
fn link_local(lab: &Lab, ns: &str) -> String {
    let out = lab.exec(ns, "ip", &["-6", "-o", "addr", "show", "dev", "eth0", "scope", "link"]);
    out.split_whitespace()
        .skip_while(|w| *w != "inet6")
        .nth(1)
        .and_then(|a| a.split('/').next())
        .unwrap_or_else(|| panic!("no link-local address on {ns}'s eth0: {out}"))
        .to_string()
}

/// Waits until `ip route get` in `ns` says `dest` goes via `gateway` on
/// eth0 (`via inet6` for an IPv4 destination).
fn kernel_routes_via(lab: &Lab, ns: &str, dest: &str, gateway: &str) {
    let want = if dest.contains(':') {
        format!("via {gateway} dev eth0")
    } else {
        format!("via inet6 {gateway} dev eth0")
    };
    wait_until(&format!("{ns}'s kernel to route {dest} {want}"), SETTLE, || {
        let out = lab
            .cmd(ns, "ip")
            .args(["route", "get", dest])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).to_string())
            .unwrap_or_default();
        if out.contains(&want) {
            Ok(())
        } else {
            Err(out)
        }
    });
}

fn pings(lab: &Lab, ns: &str, from: &str, to: &str) {
    wait_until(&format!("{from} to ping {to}"), SETTLE, || {
        let ok = lab
            .cmd(ns, "ping")
            .args(["-c", "1", "-W", "1", "-I", from, to])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        if ok {
            Ok(())
        } else {
            Err("no reply".to_string())
        }
    });
}

/// The ToR (FRR with zebra) and the node (the agent, its routes through
/// nexthop objects or each route carrying its gateway) on a link with
/// link-local addresses only.
struct Unnumbered {
    lab: Lab,
    frr: Frr,
    agent: Agent,
    tor_ll: String,
    node_ll: String,
    nexthop_objects: bool,
}

fn unnumbered_lab(name: &str, nexthop_objects: bool) -> Unnumbered {
    let mut lab = Lab::new(name);
    lab.add_ns("tor");
    lab.add_ns("node");
    lab.link("tor", "eth0", &[], "node", "eth0", &[]);
    for (ns, addrs) in [
        ("tor", ["192.0.2.1/32", "2001:db8:1::1/128"]),
        ("node", ["10.244.10.1/32", "fd10:244:10::1/128"]),
    ] {
        for a in addrs {
            lab.exec(ns, "ip", &["addr", "add", a, "dev", "lo"]);
        }
    }
    let (tor_ll, node_ll) = (link_local(&lab, "tor"), link_local(&lab, "node"));
    let frr = Frr::start_daemons(&mut lab, "tor", &[("zebra", TOR_ZEBRA), ("bgpd", TOR_BGPD)]);
    let cfg = with_fib(node_config(true), nexthop_objects);
    let agent = Agent::start(&mut lab, "node", &cfg);
    Unnumbered {
        lab,
        frr,
        agent,
        tor_ll,
        node_ll,
        nexthop_objects,
    }
}

fn with_fib(mut cfg: Value, nexthop_objects: bool) -> Value {
    cfg["routing"]["fib"] = json!({"nexthop_objects": nexthop_objects});
    cfg
}

impl Unnumbered {
    /// The configuration the agent was started with.
    fn agent_config(&self) -> Value {
        with_fib(node_config(true), self.nexthop_objects)
    }
}

/// Both families each way with link-local next hops, in both kernels;
/// pods ping across.
fn routes_flow(u: &Unnumbered) {
    let (lab, tor_ll, node_ll) = (&u.lab, u.tor_ll.as_str(), u.node_ll.as_str());
    kernel_routes_via(lab, "node", "192.0.2.1", tor_ll);
    kernel_routes_via(lab, "node", "2001:db8:1::1", tor_ll);
    kernel_routes_via(lab, "tor", "10.244.10.1", node_ll);
    kernel_routes_via(lab, "tor", "fd10:244:10::1", node_ll);
    pings(lab, "node", "10.244.10.1", "192.0.2.1");
    pings(lab, "node", "fd10:244:10::1", "2001:db8:1::1");
}

#[test]
fn an_unnumbered_session_with_frr_carries_both_families_over_link_local_next_hops() {
    let u = unnumbered_lab("unnum", true);
    let (lab, agent, tor_ll) = (&u.lab, &u.agent, u.tor_ll.as_str());
    agent_established(agent, tor_ll);
    let peer = agent.peer(tor_ll);
    assert_eq!(peer["interface"], "eth0", "{peer}");
    wait_until("FRR's eth0 session Established", SETTLE, || {
        match u.frr.neighbor_state("eth0").as_str() {
            "Established" => Ok(()),
            s => Err(s.to_string()),
        }
    });
    assert_eq!(u.frr.neighbor("eth0")["bgpNeighborAddr"], u.node_ll.as_str());
    routes_flow(&u);
    let nexthops = lab.exec("node", "ip", &["nexthop", "show"]);
    assert!(
        nexthops.contains(&format!("via {tor_ll} dev eth0")),
        "no nexthop object through the link: {nexthops}"
    );
    // Our advertisements make no default router of the node.
    let defaults = lab.exec("tor", "ip", &["-6", "route", "show", "default"]);
    assert!(
        defaults.trim().is_empty(),
        "the ToR took the node as its router: {defaults}"
    );

    // Without the peer, the session and its routes go; with it, they return.
    agent.rewrite_config(&node_config(false));
    lab.signal(&agent.name, libc::SIGHUP);
    wait_until("the unnumbered peer to be removed", SETTLE, || {
        if agent.peer(tor_ll).is_null() {
            Ok(())
        } else {
            Err(agent.peer(tor_ll).to_string())
        }
    });
    wait_until("the ToR's route to go from the node's kernel", SETTLE, || {
        let out = lab.exec("node", "ip", &["route", "show", "192.0.2.1/32"]);
        if out.trim().is_empty() {
            Ok(())
        } else {
            Err(out)
        }
    });
    agent.rewrite_config(&node_config(true));
    lab.signal(&agent.name, libc::SIGHUP);
    agent_established(agent, tor_ll);
    kernel_routes_via(lab, "node", "192.0.2.1", tor_ll);
    pings(lab, "node", "10.244.10.1", "192.0.2.1");
}

#[test]
fn routes_carrying_their_gateway_name_the_link_of_a_link_local_next_hop() {
    let u = unnumbered_lab("unnumrt", false);
    agent_established(&u.agent, &u.tor_ll);
    routes_flow(&u);
    let route = u.lab.exec("node", "ip", &["route", "show", "192.0.2.1/32"]);
    assert!(
        route.contains(&format!("via inet6 {} dev eth0", u.tor_ll)) && !route.contains("nhid"),
        "{route}"
    );
}

fn replies(log: &std::path::Path) -> usize {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .matches("bytes from")
        .count()
}

#[test]
fn a_killed_agent_finds_its_unnumbered_neighbor_again_without_losing_a_packet() {
    let mut u = unnumbered_lab("unnumgr", true);
    agent_established(&u.agent, &u.tor_ll);
    routes_flow(&u);
    let ping_log = u.lab.spawn(
        "ping",
        "node",
        "ping",
        &["-n", "-i", "0.02", "-I", "10.244.10.1", "192.0.2.1"],
    );
    wait_until("the ping to get replies", SETTLE, || match replies(&ping_log) {
        n if n >= 10 => Ok(()),
        n => Err(n.to_string()),
    });

    // kill -9: the kernel keeps the routes through the link, FRR keeps the
    // node's PodCIDR (graceful restart helper).
    u.lab.signal(&u.agent.name, libc::SIGKILL);
    u.lab.wait_exit(&u.agent.name, SETTLE);
    wait_until("FRR to keep the node's PodCIDR as stale", SETTLE, || {
        let v = u.frr.json("show bgp ipv4 unicast 10.244.10.0/24 json");
        match v["paths"][0]["stale"].as_bool() {
            Some(true) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    });
    let cfg = u.agent_config();
    u.agent = Agent::start(&mut u.lab, "node", &cfg);
    agent_established(&u.agent, &u.tor_ll);
    wait_until("FRR to refresh the node's PodCIDR", SETTLE, || {
        let v = u.frr.json("show bgp ipv4 unicast 10.244.10.0/24 json");
        match v["paths"][0]["stale"].as_bool() {
            None | Some(false) if v["paths"][0].is_object() => Ok(()),
            other => Err(format!("{other:?}")),
        }
    });
    // The adopted nexthop object through the link is the route's again.
    let fib: Value = wait_until("the restart to end (nothing stale)", SETTLE, || {
        let fib: Value = serde_json::from_str(&u.agent.get("/status/fib").unwrap_or_default()).unwrap_or_default();
        match fib["stale"].as_u64() {
            Some(0) => Ok(fib),
            _ => Err(fib.to_string()),
        }
    });
    assert_eq!(fib["nexthops"], 1, "{fib}");
    kernel_routes_via(&u.lab, "node", "192.0.2.1", &u.tor_ll);

    let now = replies(&ping_log);
    wait_until("more replies after the restart", SETTLE, || match replies(&ping_log) {
        n if n >= now + 25 => Ok(()),
        n => Err(n.to_string()),
    });
    u.lab.signal("ping", libc::SIGINT);
    u.lab.wait_exit("ping", std::time::Duration::from_secs(10));
    let (sent, received) = novanet_conformance::checks::ping_counts(&std::fs::read_to_string(&ping_log).unwrap());
    assert!(sent >= 50, "{sent} sent");
    assert_eq!(sent, received, "no packet lost across the restart");
}
