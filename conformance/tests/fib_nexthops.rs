//! The FIB through kernel nexthop objects against two FRR ToRs (bgpd +
//! bfdd) announcing the same prefixes: routes point at one group with both
//! ToRs' nexthops; a ToR gone silent (BFD down, its link up) changes the
//! group only, the routes and their group id stay, and traffic flows
//! through the other ToR; back up, the routes move to a group with both
//! again; a foreign nexthop object and the route through it are never
//! touched; the agent killed with SIGKILL and started again adopts the
//! groups with no packet lost; withdrawals leave no object of ours.

use novanet_conformance::checks::{agent_established, two_tors_and_node, wait_for_value};
use novanet_conformance::kernel::{bgp_route_nexthop_ids, nexthops, routes, Nexthop};
use novanet_conformance::{wait_until, Agent, Frr, Lab};
use serde_json::{json, Value};
use std::time::Duration;

/// Prefixes both ToRs announce; the ToRs also hold 192.0.2.1 on lo, so a
/// ping to it is answered by whichever ToR it is sent to.
const PREFIXES: [&str; 4] = ["192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/25", "203.0.113.128/25"];

/// ToR `n` (10.0.n.1, AS 6500n): bgpd with BFD towards the node, every
/// prefix of [`PREFIXES`], 192.0.2.1 on lo.
fn start_tor(lab: &mut Lab, n: u8) -> Frr {
    let name = format!("tor{n}");
    let networks: String = PREFIXES.iter().map(|p| format!("  network {p}\n")).collect();
    let bfdd =
        format!("bfd\n peer 10.0.{n}.10 interface eth0\n  receive-interval 100\n  transmit-interval 100\n !\n!\n");
    let bgpd = format!(
        "hostname {name}
router bgp 6500{n}
 bgp router-id 10.0.{n}.1
 no bgp ebgp-requires-policy
 no bgp network import-check
 neighbor 10.0.{n}.10 remote-as 65010
 neighbor 10.0.{n}.10 timers 3 9
 neighbor 10.0.{n}.10 timers connect 1
 neighbor 10.0.{n}.10 bfd
 address-family ipv4 unicast
{networks} exit-address-family
"
    );
    let zebra = format!("hostname {name}\n");
    let frr = Frr::start_daemons(lab, &name, &[("zebra", &zebra), ("bfdd", &bfdd), ("bgpd", &bgpd)]);
    lab.exec(&name, "ip", &["addr", "add", "192.0.2.1/32", "dev", "lo"]);
    frr
}

fn agent_config() -> Value {
    json!({
        "node_name": "node-a",
        "node_ip": "10.0.1.10",
        "pod_cidr": "10.244.10.0/24",
        "routing": {"peers": [
            {"neighbor_address": "10.0.1.1", "remote_as": 65001, "hold_time": 9, "keepalive": 3,
             "bfd_enabled": true, "bfd_min_tx_ms": 100, "bfd_min_rx_ms": 100, "bfd_detect_multiplier": 3},
            {"neighbor_address": "10.0.2.1", "remote_as": 65002, "hold_time": 9, "keepalive": 3,
             "bfd_enabled": true, "bfd_min_tx_ms": 100, "bfd_min_rx_ms": 100, "bfd_detect_multiplier": 3}
        ]}
    })
}

/// Our objects (proto bgp), by id.
fn ours(lab: &Lab) -> Vec<Nexthop> {
    nexthops(lab, "node")
        .into_iter()
        .filter(|n| n.protocol == "bgp")
        .collect()
}

/// The gateways of the group `id`, sorted.
fn group_gateways(lab: &Lab, id: u64) -> Vec<String> {
    let all = nexthops(lab, "node");
    let Some(group) = all.iter().find(|n| n.id == id) else {
        return Vec::new();
    };
    let mut gws: Vec<String> = group
        .group
        .iter()
        .filter_map(|m| all.iter().find(|n| n.id == *m).and_then(|n| n.gateway.clone()))
        .collect();
    gws.sort();
    gws
}

/// Every learned prefix points at one group; that group's id.
fn the_group(lab: &Lab) -> Result<u64, String> {
    let ids = bgp_route_nexthop_ids(lab, "node");
    let found: Vec<u64> = PREFIXES.iter().filter_map(|p| ids.get(*p).copied()).collect();
    match found.as_slice() {
        [first, rest @ ..] if found.len() == PREFIXES.len() && rest.iter().all(|i| i == first) => Ok(*first),
        _ => Err(format!("{ids:?}")),
    }
}

fn ping_once(lab: &Lab) -> bool {
    lab.cmd("node", "ping")
        .args(["-c1", "-W1", "192.0.2.1"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

#[test]
fn ecmp_through_nexthop_groups_fails_over_in_the_group() {
    let mut lab = Lab::new("nhobj");
    two_tors_and_node(&mut lab);
    // Someone else's nexthop object and route, there before the agent.
    lab.exec(
        "node",
        "ip",
        &[
            "nexthop", "add", "id", "4242", "via", "10.0.1.1", "dev", "eth0", "proto", "static",
        ],
    );
    lab.exec(
        "node",
        "ip",
        &["route", "add", "10.99.0.0/16", "nhid", "4242", "proto", "static"],
    );
    let foreign = |lab: &Lab| {
        (
            nexthops(lab, "node").into_iter().find(|n| n.id == 4242),
            routes(lab, "node").get("10.99.0.0/16").cloned(),
        )
    };
    let foreign_before = foreign(&lab);
    assert!(foreign_before.0.is_some() && foreign_before.1.is_some());

    let tor1 = start_tor(&mut lab, 1);
    let tor2 = start_tor(&mut lab, 2);
    let agent = Agent::start(&mut lab, "node", &agent_config());
    agent_established(&agent, "10.0.1.1");
    agent_established(&agent, "10.0.2.1");
    let fib = |agent: &Agent| serde_json::from_str::<Value>(&agent.get("/status/fib").unwrap()).unwrap();
    assert_eq!(fib(&agent)["nexthop_objects"], true, "{}", fib(&agent));
    // Compat mode off: a group change is not announced once per route.
    assert_eq!(fib(&agent)["nexthop_compat_mode"], false, "{}", fib(&agent));
    assert_eq!(
        lab.exec("node", "cat", &["/proc/sys/net/ipv4/nexthop_compat_mode"])
            .trim(),
        "0"
    );

    // Every prefix through one group of both ToRs.
    let both = vec!["10.0.1.1".to_string(), "10.0.2.1".to_string()];
    let group = wait_until("the prefixes on one group", Duration::from_secs(40), || {
        let g = the_group(&lab)?;
        if group_gateways(&lab, g) == both {
            Ok(g)
        } else {
            Err(format!("group {g}: {:?}", group_gateways(&lab, g)))
        }
    });
    assert!(ping_once(&lab), "192.0.2.1 answers through the group");

    // tor1 goes silent (its link stays up): BFD takes it down, the group
    // loses it; routes, their count and their group stay, and the kernel
    // announces no route (a full table's million notifications would hold
    // the routing lock for a quarter of a second).
    let monitor = lab.spawn("route-monitor", "node", "ip", &["monitor", "route"]);
    let marker = |lab: &Lab, what: &str| {
        let _ = lab
            .cmd("node", "ip")
            .args(["route", what, "198.18.255.0/24", "dev", "lo", "proto", "static"])
            .output();
    };
    // The monitor listens once it reports a marker route (added again
    // until it does: it may start listening after an addition).
    let seen = |needle: &str| std::fs::read_to_string(&monitor).unwrap_or_default().contains(needle);
    wait_until("the route monitor to listen", Duration::from_secs(10), || {
        marker(&lab, "del");
        marker(&lab, "add");
        seen("198.18.255.0/24").then_some(()).ok_or_else(String::new)
    });
    lab.drop_on("node", "eth0");
    wait_for_value("the group without tor1", vec!["10.0.2.1".to_string()], || {
        group_gateways(&lab, group)
    });
    assert_eq!(the_group(&lab), Ok(group), "no route was rewritten");
    marker(&lab, "del");
    wait_until(
        "the route monitor to see the marker go",
        Duration::from_secs(10),
        || seen("Deleted 198.18.255.0/24").then_some(()).ok_or_else(String::new),
    );
    let announced = std::fs::read_to_string(&monitor).unwrap_or_default();
    for p in PREFIXES {
        assert!(!announced.contains(p), "the group change announced {p}: {announced}");
    }
    lab.signal("route-monitor", libc::SIGTERM);
    let bgp_routes = bgp_route_nexthop_ids(&lab, "node");
    assert_eq!(bgp_routes.len(), PREFIXES.len(), "{bgp_routes:?}");
    wait_until("traffic through tor2", Duration::from_secs(5), || {
        ping_once(&lab).then_some(()).ok_or_else(String::new)
    });

    // Back: the routes move to a group with both ToRs again.
    lab.undrop("node");
    agent_established(&agent, "10.0.1.1");
    let restored = wait_until("a group of both ToRs again", Duration::from_secs(40), || {
        let g = the_group(&lab)?;
        (group_gateways(&lab, g) == both)
            .then_some(g)
            .ok_or_else(|| format!("{g}"))
    });
    wait_until("the degraded group removed", Duration::from_secs(20), || {
        if restored == group || !ours(&lab).iter().any(|n| n.id == group) {
            Ok(())
        } else {
            Err(format!("{:?}", ours(&lab)))
        }
    });
    assert_eq!(ours(&lab).len(), 3, "two nexthops and one group: {:?}", ours(&lab));

    // SIGKILL and a new agent: the groups are adopted, not one packet lost.
    let pings = lab.spawn(
        "pings",
        "node",
        "ping",
        &["-i", "0.02", "-w", "10", "-W", "1", "192.0.2.1"],
    );
    lab.signal(&agent.name, libc::SIGKILL);
    let _ = lab.wait_exit(&agent.name, Duration::from_secs(10));
    let again = Agent::start(&mut lab, "node", &agent_config());
    agent_established(&again, "10.0.1.1");
    agent_established(&again, "10.0.2.1");
    lab.wait_exit("pings", Duration::from_secs(20));
    let out = std::fs::read_to_string(&pings).unwrap_or_default();
    let summary = out
        .lines()
        .find(|l| l.contains("packets transmitted"))
        .unwrap_or("")
        .to_string();
    assert!(summary.contains(" 0% packet loss"), "{summary}\n{out}");
    // The restart ends once both ToRs have sent their tables; the routes
    // were never moved off the adopted group.
    wait_for_value("the restart over", json!(0), || fib(&again)["stale"].clone());
    assert_eq!(the_group(&lab), Ok(restored), "the same group, adopted");
    assert_eq!(group_gateways(&lab, restored), both);

    // Withdrawn everywhere: no object of ours is left.
    for (frr, asn) in [(&tor1, 65001), (&tor2, 65002)] {
        let router = format!("router bgp {asn}");
        let mut lines = vec![router.as_str(), "address-family ipv4 unicast"];
        let nos: Vec<String> = PREFIXES.iter().map(|p| format!("no network {p}")).collect();
        lines.extend(nos.iter().map(String::as_str));
        frr.configure(&lines);
    }
    wait_until("no object of ours", Duration::from_secs(30), || {
        let left = ours(&lab);
        left.is_empty().then_some(()).ok_or_else(|| format!("{left:?}"))
    });
    assert_eq!(
        foreign(&lab),
        foreign_before,
        "the foreign object and route are untouched"
    );
}

/// `novanet-agent --prepare-kernel` (the chart's privileged init container)
/// turns compat mode off for the configuration that wants it, and leaves
/// it for one that keeps it.
#[test]
fn prepare_kernel_turns_compat_mode_off_unless_the_configuration_keeps_it() {
    let mut lab = Lab::new("prepk");
    lab.add_ns("node");
    let compat = |lab: &Lab| {
        lab.exec("node", "cat", &["/proc/sys/net/ipv4/nexthop_compat_mode"])
            .trim()
            .to_string()
    };
    let prepare = |lab: &Lab, cfg: &Value| {
        let path = lab.dir().join("prepare.json");
        std::fs::write(&path, cfg.to_string()).unwrap();
        let bin = novanet_conformance::agent::agent_binary();
        let o = lab
            .cmd("node", bin.to_str().unwrap())
            .args(["--config", path.to_str().unwrap(), "--prepare-kernel"])
            .output()
            .expect("novanet-agent runs");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout).to_string()
    };
    assert_eq!(compat(&lab), "1", "the kernel's default");
    let mut keep = agent_config();
    keep["routing"]["fib"] = json!({"keep_nexthop_compat_mode": true});
    assert!(prepare(&lab, &keep).contains("left as it is"));
    assert_eq!(compat(&lab), "1");
    assert!(prepare(&lab, &agent_config()).contains("turned off"));
    assert_eq!(compat(&lab), "0");

    // As the chart runs it: not privileged, NET_ADMIN its only
    // capability, /proc/sys read-only as in a container, the node's
    // /proc/sys/net mounted writable elsewhere (NOVANET_PROC_SYS_NET).
    lab.exec("node", "sysctl", &["-qw", "net.ipv4.nexthop_compat_mode=1"]);
    let cfg = lab.dir().join("prepare.json");
    std::fs::write(&cfg, agent_config().to_string()).unwrap();
    let host_net = lab.dir().join("host-proc-sys-net");
    std::fs::create_dir_all(&host_net).unwrap();
    let contained = |env: &str| {
        let script = format!(
            "mount --make-rprivate / && mount --bind /proc/sys/net {net} && mount --bind /proc/sys /proc/sys && \
             mount -o remount,bind,ro /proc/sys && \
             {env} setpriv --inh-caps=-all,+net_admin --bounding-set=-all,+net_admin \
             {bin} --config {cfg} --prepare-kernel",
            net = host_net.display(),
            bin = novanet_conformance::agent::agent_binary().display(),
            cfg = cfg.display()
        );
        lab.cmd("node", "unshare")
            .args(["-m", "sh", "-c", &script])
            .output()
            .expect("unshare runs")
    };
    let refused = contained("");
    assert!(
        !refused.status.success() && String::from_utf8_lossy(&refused.stderr).contains("Read-only"),
        "the container's own /proc/sys is read-only: {}",
        String::from_utf8_lossy(&refused.stderr)
    );
    assert_eq!(compat(&lab), "1");
    let o = contained(&format!("NOVANET_PROC_SYS_NET={}", host_net.display()));
    assert!(
        o.status.success() && String::from_utf8_lossy(&o.stdout).contains("turned off"),
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(compat(&lab), "0");
}
