//! FRR 8.4's OSPF JSON as typed values: `show ip ospf neighbor json`
//! (neighbors by router id, each a list of adjacencies) and
//! `show ip ospf interface json`. Timer fields may be numbers or, for a
//! neighbor whose timer is stopped, the string `inactive`: they are not
//! relied on.

use serde_json::Value;

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
    let v: Value = serde_json::from_str(json)?;
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
    let v: Value = serde_json::from_str(json)?;
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
    fn a_stopped_dead_timer_and_a_full_adjacency() {
        let json = r#"{"neighbors":{"10.0.0.1":[{"nbrState":"Full/DR","address":"10.0.0.1",
            "ifaceName":"eth0:10.0.0.10","deadTimeMsecs":"inactive"}]}}"#;
        let n = neighbors(json).unwrap();
        assert!(n[0].is_full());
        assert_eq!(n[0].role, "DR");
    }
}
