//! Reading a namespace's kernel routing table (`ip -j route`).

use crate::Lab;
use serde_json::Value;
use std::collections::BTreeMap;

/// One kernel route: protocol, metric and next hops (sorted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub protocol: String,
    pub metric: u64,
    pub next_hops: Vec<String>,
}

/// The gateways behind each nexthop object id (a group's: its members').
fn gateways_by_id(objects: &[Nexthop]) -> BTreeMap<u64, Vec<String>> {
    let by_id: BTreeMap<u64, &Nexthop> = objects.iter().map(|n| (n.id, n)).collect();
    objects
        .iter()
        .map(|n| {
            let gateways = if n.group.is_empty() {
                n.gateway.clone().into_iter().collect()
            } else {
                n.group
                    .iter()
                    .filter_map(|m| by_id.get(m).and_then(|m| m.gateway.clone()))
                    .collect()
            };
            (n.id, gateways)
        })
        .collect()
}

fn parse(json: &str, objects: &BTreeMap<u64, Vec<String>>, out: &mut BTreeMap<String, Vec<Route>>) {
    let v: Value = serde_json::from_str(json).unwrap_or(Value::Null);
    for r in v.as_array().into_iter().flatten() {
        let Some(dst) = r["dst"].as_str() else { continue };
        let mut next_hops: Vec<String> = match r["nexthops"].as_array() {
            Some(hops) => hops
                .iter()
                .filter_map(|h| h["gateway"].as_str().map(str::to_string))
                .collect(),
            None => r["gateway"].as_str().map(str::to_string).into_iter().collect(),
        };
        // Without nexthop_compat_mode a route names only its object.
        if next_hops.is_empty() {
            if let Some(id) = r["nhid"].as_u64() {
                next_hops = objects.get(&id).cloned().unwrap_or_default();
            }
        }
        next_hops.sort();
        let prefix = if dst.contains('/') {
            dst.to_string()
        } else if dst.contains(':') {
            format!("{dst}/128")
        } else {
            format!("{dst}/32")
        };
        out.entry(prefix).or_default().push(Route {
            protocol: r["protocol"].as_str().unwrap_or("").to_string(),
            metric: r["metric"].as_u64().unwrap_or(0),
            next_hops,
        });
    }
}

/// Every route of the main table, IPv4 and IPv6, by prefix.
pub fn routes(lab: &Lab, ns: &str) -> BTreeMap<String, Vec<Route>> {
    let mut out = BTreeMap::new();
    let objects = gateways_by_id(&nexthops(lab, ns));
    parse(&lab.exec(ns, "ip", &["-j", "route", "show"]), &objects, &mut out);
    parse(&lab.exec(ns, "ip", &["-j", "-6", "route", "show"]), &objects, &mut out);
    out
}

/// The `proto bgp` routes, by prefix: their next hops.
pub fn bgp_routes(lab: &Lab, ns: &str) -> BTreeMap<String, Vec<String>> {
    routes(lab, ns)
        .into_iter()
        .filter_map(|(p, rs)| rs.into_iter().find(|r| r.protocol == "bgp").map(|r| (p, r.next_hops)))
        .collect()
}

/// A nexthop object of the kernel (`ip -j nexthop`): a gateway through a
/// device, or a group of other objects' ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nexthop {
    pub id: u64,
    pub protocol: String,
    pub gateway: Option<String>,
    pub group: Vec<u64>,
}

/// Every nexthop object of a namespace's kernel.
pub fn nexthops(lab: &Lab, ns: &str) -> Vec<Nexthop> {
    let v: Value = serde_json::from_str(&lab.exec(ns, "ip", &["-j", "nexthop", "show"])).unwrap_or(Value::Null);
    v.as_array()
        .into_iter()
        .flatten()
        .map(|n| Nexthop {
            id: n["id"].as_u64().unwrap_or(0),
            protocol: n["protocol"].as_str().unwrap_or("").to_string(),
            gateway: n["gateway"].as_str().map(str::to_string),
            group: n["group"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|m| m["id"].as_u64())
                .collect(),
        })
        .collect()
}

/// The nexthop object ids `proto bgp` routes point at, by prefix.
pub fn bgp_route_nexthop_ids(lab: &Lab, ns: &str) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for family in ["-4", "-6"] {
        let v: Value = serde_json::from_str(&lab.exec(ns, "ip", &["-j", family, "route", "show", "proto", "bgp"]))
            .unwrap_or(Value::Null);
        for r in v.as_array().into_iter().flatten() {
            if let (Some(dst), Some(id)) = (r["dst"].as_str(), r["nhid"].as_u64()) {
                out.insert(dst.to_string(), id);
            }
        }
    }
    out
}

/// A TCP counter of a namespace's kernel (`nstat`), e.g. `TcpExtTCPMD5Failure`.
pub fn tcp_counter(lab: &Lab, ns: &str, name: &str) -> u64 {
    let out = lab.exec(ns, "nstat", &["-asz", "--json", name]);
    let v: Value = serde_json::from_str(&out).unwrap_or(Value::Null);
    v["kernel"][name].as_u64().unwrap_or(0)
}
