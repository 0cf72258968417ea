//! `novanetctl routing ospf`: in the OSPF mode, the ospfd sidecar, its
//! interfaces and the neighbors (the reference's `NEIGHBOR ID  ADDRESS
//! INTERFACE  STATE  OWNER` table); with OSPF off, the owners' OSPF
//! interface intents and why they are not applied.

use crate::client::{rpc_error, Agent};
use crate::read;
use crate::render::{dash, duration, list, table, Format};
use novanet_proto::insight::{GetOspfRequest, GetOspfResponse};
use serde::Serialize;

#[derive(Serialize)]
pub struct SidecarView {
    pub socket_dir: String,
    pub connected: bool,
    pub version: String,
    pub uptime_seconds: u64,
    pub last_error: String,
}

#[derive(Serialize)]
pub struct InterfaceView {
    pub interface_name: String,
    pub version: String,
    pub area_id: String,
    pub state: String,
    pub passive: bool,
    pub cost: u32,
    pub neighbor_count: u32,
    pub owner: String,
}

#[derive(Serialize)]
pub struct NeighborView {
    pub neighbor_id: String,
    pub address: String,
    pub interface_name: String,
    pub version: String,
    pub state: String,
    pub role: String,
    pub owner: String,
}

/// The OSPF mode at a glance (JSON field names are the contract).
#[derive(Serialize)]
pub struct OspfView {
    pub sidecar: SidecarView,
    pub injected_prefixes: Vec<String>,
    pub interfaces: Vec<InterfaceView>,
    pub neighbors: Vec<NeighborView>,
}

/// The view, keeping what `owner` holds when it is not empty.
pub fn view(r: GetOspfResponse, owner: &str) -> OspfView {
    let keep = |o: &str| owner.is_empty() || o == owner;
    let s = r.sidecar.unwrap_or_default();
    OspfView {
        sidecar: SidecarView {
            socket_dir: s.socket_dir,
            connected: s.connected,
            version: s.version,
            uptime_seconds: s.uptime_seconds,
            last_error: s.last_error,
        },
        injected_prefixes: r.injected_prefixes,
        interfaces: r
            .interfaces
            .into_iter()
            .filter(|i| keep(&i.owner))
            .map(|i| InterfaceView {
                interface_name: i.interface_name,
                version: i.version,
                area_id: i.area_id,
                state: i.state,
                passive: i.passive,
                cost: i.cost,
                neighbor_count: i.neighbors,
                owner: i.owner,
            })
            .collect(),
        neighbors: r
            .neighbors
            .into_iter()
            .filter(|n| keep(&n.owner))
            .map(|n| NeighborView {
                neighbor_id: n.router_id,
                address: n.address,
                interface_name: n.interface_name,
                version: n.version,
                state: n.state,
                role: n.role,
                owner: n.owner,
            })
            .collect(),
    }
}

/// The tables of a view.
pub fn text(v: &OspfView) -> String {
    let s = &v.sidecar;
    let mut out = if s.connected {
        format!(
            "ospfd sidecar:  connected, {} ({}), up {}\n",
            dash(&s.version),
            s.socket_dir,
            duration(s.uptime_seconds)
        )
    } else {
        format!("ospfd sidecar:  NOT CONNECTED ({})\n", s.socket_dir)
    };
    if !s.last_error.is_empty() {
        out.push_str(&format!("Last error:     {}\n", s.last_error));
    }
    out.push_str(&format!(
        "Injected:       {}\n\n",
        if v.injected_prefixes.is_empty() {
            "-".to_string()
        } else {
            v.injected_prefixes.join(", ")
        }
    ));
    out.push_str(&table(
        &[
            "INTERFACE",
            "VERSION",
            "AREA",
            "STATE",
            "PASSIVE",
            "COST",
            "NEIGHBORS",
            "OWNER",
        ],
        &v.interfaces
            .iter()
            .map(|i| {
                vec![
                    i.interface_name.clone(),
                    i.version.clone(),
                    i.area_id.clone(),
                    i.state.clone(),
                    if i.passive { "yes" } else { "no" }.into(),
                    if i.cost == 0 { "-".into() } else { i.cost.to_string() },
                    i.neighbor_count.to_string(),
                    i.owner.clone(),
                ]
            })
            .collect::<Vec<_>>(),
    ));
    out.push('\n');
    if v.neighbors.is_empty() {
        out.push_str("No OSPF neighbors.\n");
    } else {
        out.push_str(&table(
            &["NEIGHBOR ID", "ADDRESS", "INTERFACE", "STATE", "OWNER"],
            &v.neighbors
                .iter()
                .map(|n| {
                    let state = if n.role.is_empty() {
                        n.state.clone()
                    } else {
                        format!("{}/{}", n.state, n.role)
                    };
                    vec![
                        n.neighbor_id.clone(),
                        dash(&n.address),
                        n.interface_name.clone(),
                        state,
                        n.owner.clone(),
                    ]
                })
                .collect::<Vec<_>>(),
        ));
    }
    out
}

/// `routing ospf` in the chosen format.
pub async fn render(a: &mut Agent, owner: &str, format: Format) -> anyhow::Result<String> {
    match a.insight.get_ospf(GetOspfRequest {}).await {
        Ok(r) => {
            let v = view(r.into_inner(), owner);
            Ok(match format {
                Format::Table => text(&v),
                Format::Json => serde_json::to_string_pretty(&v)? + "\n",
                Format::Yaml => serde_yaml_ng::to_string(&v)?,
            })
        }
        Err(e) if e.code() == tonic::Code::FailedPrecondition => {
            // OSPF is off: the intents, each saying why.
            let intents = read::ospf(a, owner).await?;
            let body = list(format, &intents, "No OSPF interfaces configured.", read::ospf_table)?;
            Ok(match format {
                // Why the intents there are not applied.
                Format::Table if !intents.is_empty() => format!("{}\n\n{body}", e.message()),
                _ => body,
            })
        }
        Err(e) => Err(rpc_error(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use novanet_proto::insight::{OspfInterface, OspfNeighbor, OspfSidecar};

    fn response() -> GetOspfResponse {
        GetOspfResponse {
            sidecar: Some(OspfSidecar {
                socket_dir: "/run/frr".into(),
                connected: true,
                version: "FRRouting 8.4.4".into(),
                uptime_seconds: 65,
                last_error: String::new(),
            }),
            interfaces: vec![
                OspfInterface {
                    interface_name: "eth0".into(),
                    version: "ospfv2".into(),
                    area_id: "0.0.0.0".into(),
                    state: "DROther".into(),
                    passive: false,
                    cost: 10,
                    neighbors: 1,
                    owner: "_config".into(),
                },
                OspfInterface {
                    interface_name: "eth1".into(),
                    version: "ospfv2".into(),
                    area_id: "0.0.0.1".into(),
                    state: "pending".into(),
                    passive: true,
                    cost: 10,
                    neighbors: 0,
                    owner: "lb".into(),
                },
            ],
            neighbors: vec![OspfNeighbor {
                router_id: "10.0.0.1".into(),
                address: "10.0.0.1".into(),
                interface_name: "eth0".into(),
                version: "ospfv2".into(),
                state: "Full".into(),
                role: "DR".into(),
                owner: "_config".into(),
            }],
            injected_prefixes: vec!["10.244.1.0/24".into()],
        }
    }

    #[test]
    fn the_sidecar_interfaces_and_neighbors_in_one_glance() {
        let t = text(&view(response(), ""));
        assert!(
            t.starts_with("ospfd sidecar:  connected, FRRouting 8.4.4 (/run/frr), up 1m5s\n"),
            "{t}"
        );
        assert!(t.contains("Injected:       10.244.1.0/24\n"), "{t}");
        assert!(t.contains("NEIGHBOR ID  ADDRESS   INTERFACE  STATE    OWNER\n10.0.0.1     10.0.0.1  eth0       Full/DR  _config\n"), "{t}");
        assert!(t.contains("eth1       ospfv2   0.0.0.1  pending  yes"), "{t}");
    }

    #[test]
    fn an_owner_sees_its_own_and_no_neighbors_is_said() {
        let v = view(response(), "lb");
        assert_eq!(v.interfaces.len(), 1);
        assert!(text(&v).ends_with("No OSPF neighbors.\n"));
        let json = serde_json::to_value(&v).unwrap();
        assert_eq!(json["interfaces"][0]["interface_name"], "eth1");
        assert_eq!(json["sidecar"]["connected"], true);
    }
}
