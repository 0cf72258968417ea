//! FRR 8.4's OSPF output as typed values: `show ip ospf neighbor json`
//! (neighbors by router id, each a list of adjacencies), `show ipv6 ospf6
//! neighbor json` (a list), the interface JSON of both, and which
//! interfaces a running configuration puts into OSPF. Timer fields may be
//! numbers or, for a neighbor whose timer is stopped, the string
//! `inactive`: they are not relied on.

use crate::command::Version;
use serde_json::Value;

/// FRR's JSON; empty output (a daemon with no OSPF instance configured
/// yet answers `show ... json` with nothing) is an empty object.
fn parse(json: &str) -> Result<Value, serde_json::Error> {
    if json.trim().is_empty() {
        return Ok(Value::Object(Default::default()));
    }
    serde_json::from_str(json)
}

/// One adjacency.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Neighbor {
    pub router_id: String,
    pub address: String,
    /// The interface name (FRR writes `NAME:LOCAL-ADDRESS`).
    pub interface: String,
    /// The state before the role (`Full`, `2-Way`, `Init`, ...).
    pub state: String,
    /// `DR`, `Backup`, `DROther`, or empty.
    pub role: String,
}

impl Neighbor {
    /// Up means Full.
    pub fn is_full(&self) -> bool {
        self.state == "Full"
    }
}

/// The neighbors of `show ip ospf neighbor json`.
pub fn neighbors(json: &str) -> Result<Vec<Neighbor>, serde_json::Error> {
    let v = parse(json)?;
    let mut out = Vec::new();
    for (id, list) in v["neighbors"].as_object().into_iter().flatten() {
        for n in list.as_array().into_iter().flatten() {
            let state_role = n["nbrState"].as_str().or(n["state"].as_str()).unwrap_or("");
            let (state, role) = state_role.split_once('/').unwrap_or((state_role, ""));
            let iface = n["ifaceName"].as_str().unwrap_or("");
            out.push(Neighbor {
                router_id: id.clone(),
                address: n["address"]
                    .as_str()
                    .or(n["ifaceAddress"].as_str())
                    .unwrap_or("")
                    .to_string(),
                interface: iface.split(':').next().unwrap_or(iface).to_string(),
                state: state.to_string(),
                role: role.to_string(),
            });
        }
    }
    Ok(out)
}

/// The neighbors of `show ipv6 ospf6 neighbor json` (no address: OSPFv3
/// neighbors are known by router id and link-local address, which FRR
/// 8.4's JSON leaves out).
pub fn ospf6_neighbors(json: &str) -> Result<Vec<Neighbor>, serde_json::Error> {
    let v = parse(json)?;
    let text = |n: &Value, k: &str| n[k].as_str().unwrap_or("").to_string();
    Ok(v["neighbors"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|n| Neighbor {
            router_id: text(n, "neighborId"),
            address: String::new(),
            interface: text(n, "interfaceName"),
            state: text(n, "state"),
            role: text(n, "ifState"),
        })
        .collect())
}

/// An interface as ospfd reports it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct InterfaceState {
    pub name: String,
    pub area: String,
    /// `DR`, `Backup`, `DROther`, `Waiting`, `Point-To-Point`, ...
    pub state: String,
    pub neighbors: u32,
    pub adjacent: u32,
}

/// The interfaces of `show ip ospf interface json`.
pub fn interfaces(json: &str) -> Result<Vec<InterfaceState>, serde_json::Error> {
    let v = parse(json)?;
    Ok(v["interfaces"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(name, i)| InterfaceState {
            name: name.clone(),
            area: i["area"].as_str().unwrap_or("").to_string(),
            state: i["state"].as_str().unwrap_or("").to_string(),
            neighbors: i["nbrCount"].as_u64().unwrap_or(0) as u32,
            adjacent: i["nbrAdjacentCount"].as_u64().unwrap_or(0) as u32,
        })
        .collect())
}

/// The interfaces of `show ipv6 ospf6 interface json` that are in an
/// area (ospf6d lists every interface; neighbor counts are not given).
pub fn ospf6_interfaces(json: &str) -> Result<Vec<InterfaceState>, serde_json::Error> {
    let v = parse(json)?;
    Ok(v.as_object()
        .into_iter()
        .flatten()
        .filter(|(_, i)| i["attachedToArea"].as_bool() == Some(true))
        .map(|(name, i)| InterfaceState {
            name: name.clone(),
            area: i["areaId"].as_str().unwrap_or("").to_string(),
            state: i["ospf6InterfaceState"].as_str().unwrap_or("").to_string(),
            neighbors: 0,
            adjacent: 0,
        })
        .collect())
}

/// Networks an LSA at MaxAge (3600 s) no longer carries: it is being
/// flushed.
const MAX_AGE: u64 = 3600;

/// The stub networks of the router's own router LSAs, from `show ip ospf
/// database router self-originate json`: what ospfd advertises of its
/// interfaces' addresses.
pub fn originated_v2(json: &str) -> Result<Vec<ipnet::IpNet>, serde_json::Error> {
    let v = parse(json)?;
    let mut out = Vec::new();
    for area in v["Router Link States"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(_, a)| a)
    {
        for lsa in area.as_object().into_iter().flatten().map(|(_, l)| l) {
            if lsa["lsaAge"].as_u64().is_some_and(|a| a >= MAX_AGE) {
                continue;
            }
            for link in lsa["routerLinks"].as_object().into_iter().flatten().map(|(_, l)| l) {
                if link["linkType"].as_str() != Some("Stub Network") {
                    continue;
                }
                let net = link["networkAddress"]
                    .as_str()
                    .and_then(|a| a.parse::<std::net::Ipv4Addr>().ok());
                let mask = link["networkMask"]
                    .as_str()
                    .and_then(|m| m.parse::<std::net::Ipv4Addr>().ok());
                if let (Some(net), Some(mask)) = (net, mask) {
                    let len = u32::from(mask).leading_ones() as u8;
                    if let Ok(p) = ipnet::Ipv4Net::new(net, len) {
                        out.push(p.into());
                    }
                }
            }
        }
    }
    Ok(out)
}

/// The prefixes of the router's own intra-area-prefix LSAs, from `show
/// ipv6 ospf6 database intra-prefix self-originate json`.
pub fn originated_v3(json: &str) -> Result<Vec<ipnet::IpNet>, serde_json::Error> {
    let v = parse(json)?;
    let mut out = Vec::new();
    for area in v["areaScopedLinkStateDb"].as_array().into_iter().flatten() {
        for lsa in area["lsa"].as_array().into_iter().flatten() {
            if lsa["age"].as_u64().is_some_and(|a| a >= MAX_AGE) {
                continue;
            }
            let payloads: Vec<&str> = match &lsa["payload"] {
                Value::String(p) => vec![p.as_str()],
                Value::Array(ps) => ps.iter().filter_map(Value::as_str).collect(),
                _ => Vec::new(),
            };
            out.extend(
                payloads
                    .into_iter()
                    .filter_map(|p| p.trim().parse::<ipnet::IpNet>().ok()),
            );
        }
    }
    Ok(out)
}

/// The interfaces a running configuration puts into an area, by version
/// (`ip ospf area` / `ipv6 ospf6 area` in an `interface` block).
pub fn configured_interfaces(running: &str) -> Vec<(Version, String)> {
    let mut out = Vec::new();
    let mut block: Option<&str> = None;
    for line in running.lines().map(str::trim_end) {
        if let Some(name) = line.strip_prefix("interface ") {
            // `interface NAME [vrf VRF]`: the name is the first word.
            block = name.split_whitespace().next();
            continue;
        }
        if !line.starts_with(' ') {
            block = None;
            continue;
        }
        let Some(name) = block else { continue };
        let l = line.trim_start();
        if l.starts_with("ip ospf area ") {
            out.push((Version::V2, name.to_string()));
        } else if l.starts_with("ipv6 ospf6 area ") {
            out.push((Version::V3, name.to_string()));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recorded_frr_8_4_neighbors_and_interfaces() {
        let n = neighbors(include_str!("../tests/frr-8.4/neighbor-full.json")).unwrap();
        assert_eq!(n.len(), 1);
        assert_eq!(n[0].router_id, "10.9.0.2");
        assert_eq!(n[0].address, "10.9.0.2");
        assert_eq!(n[0].interface, "eth0");
        assert_eq!((n[0].state.as_str(), n[0].role.as_str()), ("2-Way", "DROther"));
        assert!(!n[0].is_full());
        assert!(
            neighbors(include_str!("../tests/frr-8.4/neighbor-after-peer-down.json"))
                .unwrap()
                .is_empty()
        );
        let i = interfaces(include_str!("../tests/frr-8.4/interface.json")).unwrap();
        assert_eq!(i[0].name, "eth0");
        assert_eq!(i[0].area, "0.0.0.0");
        assert_eq!(i[0].neighbors, 1);
    }

    #[test]
    fn recorded_frr_8_4_ospf6_neighbors_and_interfaces() {
        let n = ospf6_neighbors(include_str!("../tests/frr-8.4/ospf6-neighbor-full.json")).unwrap();
        assert_eq!(n.len(), 1);
        assert_eq!(n[0].router_id, "10.8.0.1");
        assert_eq!(n[0].interface, "eth0");
        assert!(n[0].is_full());
        assert_eq!(n[0].role, "BDR");
        let i = ospf6_interfaces(include_str!("../tests/frr-8.4/ospf6-interface.json")).unwrap();
        let names: Vec<&str> = i.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(names, ["eth0", "nvospf"], "lo is in no area");
        assert_eq!((i[0].area.as_str(), i[0].state.as_str()), ("0.0.0.0", "BDR"));
    }

    #[test]
    fn what_the_router_itself_originates() {
        let v2 = originated_v2(include_str!("../tests/frr-8.4/router-lsa-self.json")).unwrap();
        assert_eq!(v2, ["10.244.1.0/24".parse::<ipnet::IpNet>().unwrap()]);
        assert!(
            originated_v2(r#"{ "routerId": "10.8.0.1", "Router Link States": { } }"#)
                .unwrap()
                .is_empty()
        );
        let v3 = originated_v3(include_str!("../tests/frr-8.4/ospf6-intra-prefix-self.json")).unwrap();
        assert_eq!(v3, ["fd00:244:1::/64".parse::<ipnet::IpNet>().unwrap()]);
        let flushed =
            include_str!("../tests/frr-8.4/ospf6-intra-prefix-self.json").replace("\"age\":7", "\"age\":3600");
        assert!(
            originated_v3(&flushed).unwrap().is_empty(),
            "a MaxAge LSA is being flushed"
        );
    }

    #[test]
    fn the_interfaces_a_running_configuration_puts_into_ospf() {
        let running = "interface eth0\n ip ospf area 0.0.0.0\n ipv6 ospf6 area 0.0.0.1\nexit\n!\n\
                       interface eth1\n ip ospf cost 5\nexit\n!\ninterface eth2 vrf red\n ip ospf area 1\nexit\n\
                       router ospf\n ospf router-id 10.0.0.1\nexit\n";
        assert_eq!(
            configured_interfaces(running),
            [
                (Version::V2, "eth0".to_string()),
                (Version::V3, "eth0".to_string()),
                (Version::V2, "eth2".to_string())
            ]
        );
        assert_eq!(
            configured_interfaces(include_str!("../tests/frr-8.4/running-config.txt")),
            [(Version::V2, "eth0".to_string())]
        );
    }

    #[test]
    fn a_daemon_without_an_ospf_instance_answers_with_nothing() {
        assert!(neighbors("").unwrap().is_empty());
        assert!(ospf6_neighbors("\n").unwrap().is_empty());
        assert!(interfaces("").unwrap().is_empty());
        assert!(originated_v2("").unwrap().is_empty());
        assert!(neighbors("{").is_err(), "broken JSON is an error");
    }

    #[test]
    fn a_stopped_dead_timer_and_a_full_adjacency() {
        let json = r#"{"neighbors":{"10.0.0.1":[{"nbrState":"Full/DR","address":"10.0.0.1",
            "ifaceName":"eth0:10.0.0.10","deadTimeMsecs":"inactive"}]}}"#;
        let n = neighbors(json).unwrap();
        assert!(n[0].is_full());
        assert_eq!(n[0].role, "DR");
    }
}
