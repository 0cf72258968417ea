//! The `RoutingInsight` extension service (`novanet.routing.v1`): per-peer
//! detail, the table with the decision, why a prefix is or is not
//! advertised to a peer, and the OSPF mode's sidecar, interfaces and
//! neighbors. RouteControl stays as it was.

#![allow(clippy::result_large_err)]

use crate::control::Control;
use novanet_proto::insight::routing_insight_server::RoutingInsight;
use novanet_proto::insight::*;
use std::net::IpAddr;
use tonic::{Request, Response, Status};

pub struct Insight {
    control: Control,
}

impl Insight {
    pub fn new(control: Control) -> Self {
        Insight { control }
    }
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[tonic::async_trait]
impl RoutingInsight for Insight {
    async fn list_peers(&self, _: Request<ListPeersRequest>) -> Result<Response<ListPeersResponse>, Status> {
        let bfd = self.control.bfd.sessions().await;
        let owners: Vec<(IpAddr, String)> = {
            let intents = self.control.intents.lock().expect("intents");
            intents
                .owners
                .iter()
                .flat_map(|(o, i)| i.peers.keys().map(move |a| (*a, o.clone())))
                .collect()
        };
        let peers = self
            .control
            .speaker
            .peers()
            .into_iter()
            .map(|p| {
                let b = bfd.iter().find(|s| s.peer == p.neighbor_address);
                PeerDetail {
                    neighbor_address: p.neighbor_address.to_string(),
                    remote_as: p.remote_as,
                    local_as: p.local_as,
                    description: p.description.clone(),
                    role: serde_json::to_value(p.role)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_string))
                        .unwrap_or_default(),
                    state: p.state.clone(),
                    uptime_seconds: p.established_at.map(|t| now().saturating_sub(t)).unwrap_or(0),
                    remote_router_id: p.remote_router_id.map(|r| r.to_string()).unwrap_or_default(),
                    families: p.families.clone(),
                    prefixes_received: p.prefixes_announced,
                    prefixes_accepted: p.prefixes_received,
                    prefixes_advertised: p.prefixes_sent,
                    updates_received: p.updates_received,
                    updates_sent: p.updates_sent,
                    established_transitions: p.established_transitions,
                    last_error: p.last_error.clone().unwrap_or_default(),
                    last_notification_sent: p.last_notification_sent.clone().unwrap_or_default(),
                    last_notification_received: p.last_notification_received.clone().unwrap_or_default(),
                    bfd_state: b
                        .map(|s| s.state.name().to_ascii_lowercase())
                        .unwrap_or_else(|| "disabled".into()),
                    bfd_tx_interval_ms: b.map(|s| s.tx_interval_ms as u32).unwrap_or(0),
                    bfd_detection_time_ms: b.map(|s| s.detection_time_ms as u32).unwrap_or(0),
                    routes_by_family: {
                        let split = |all: u64, v6: u64| (all.saturating_sub(v6), v6);
                        let (a4, a6) = split(p.prefixes_announced, p.prefixes_announced_v6);
                        let (r4, r6) = split(p.prefixes_received, p.prefixes_received_v6);
                        let (s4, s6) = split(p.prefixes_sent, p.prefixes_sent_v6);
                        [("ipv4-unicast", a4, r4, s4), ("ipv6-unicast", a6, r6, s6)]
                            .into_iter()
                            .filter(|(f, a, r, s)| p.families.iter().any(|x| x == f) || a + r + s > 0)
                            .map(|(family, announced, accepted, advertised)| FamilyRoutes {
                                family: family.into(),
                                announced,
                                accepted,
                                advertised,
                            })
                            .collect()
                    },
                    owner: owners
                        .iter()
                        .find(|(a, _)| *a == p.neighbor_address)
                        .map(|(_, o)| o.clone())
                        .unwrap_or_else(|| "_config".into()),
                }
            })
            .collect();
        Ok(Response::new(ListPeersResponse { peers }))
    }

    async fn get_rib(&self, req: Request<GetRibRequest>) -> Result<Response<GetRibResponse>, Status> {
        let prefix = req.into_inner().prefix;
        let only = if prefix.is_empty() {
            None
        } else {
            Some(prefix.parse().map_err(|_| {
                Status::invalid_argument(format!("prefix {} is not a CIDR", crate::control::shown(&prefix)))
            })?)
        };
        let views = self
            .control
            .speaker
            .routes(only)
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        let routes = views
            .into_iter()
            .map(|v| RibEntry {
                prefix: v.prefix.to_string(),
                paths: v
                    .paths
                    .into_iter()
                    .map(|p| RibPath {
                        from: p.from,
                        best: p.best,
                        multipath: p.multipath,
                        stale: p.stale,
                        next_hop: p.next_hop.map(|n| n.to_string()).unwrap_or_default(),
                        as_path: p.as_path,
                        local_pref: p.local_pref.unwrap_or(0),
                        has_local_pref: p.local_pref.is_some(),
                        med: p.med.unwrap_or(0),
                        has_med: p.med.is_some(),
                        origin: p.origin,
                        communities: p.communities,
                        lost_at: p.lost_at.unwrap_or_default(),
                        path_id: p.path_id,
                    })
                    .collect(),
                exports: v
                    .exports
                    .into_iter()
                    .map(|e| PeerExport {
                        peer: e.peer.to_string(),
                        advertised: e.advertised,
                        reason: e.reason,
                    })
                    .collect(),
            })
            .collect();
        Ok(Response::new(GetRibResponse { routes }))
    }

    async fn get_ospf(&self, _: Request<GetOspfRequest>) -> Result<Response<GetOspfResponse>, Status> {
        let Some(ospf) = self.control.ospf.as_ref() else {
            return Err(Status::failed_precondition(
                "OSPF is off: routing.protocol is \"bgp\" (the OSPF mode needs routing.protocol \"ospf\" and its ospfd sidecar)",
            ));
        };
        let s = ospf.status();
        Ok(Response::new(GetOspfResponse {
            sidecar: Some(OspfSidecar {
                socket_dir: s.socket_dir.clone(),
                connected: s.connected,
                version: s.version.clone(),
                uptime_seconds: match (s.connected, s.connected_since) {
                    (true, Some(t)) => now().saturating_sub(t),
                    _ => 0,
                },
                last_error: s.last_error.clone().unwrap_or_default(),
            }),
            interfaces: s
                .interfaces
                .iter()
                .map(|i| OspfInterface {
                    interface_name: i.interface_name.clone(),
                    version: i.version.into(),
                    area_id: i.area_id.clone(),
                    state: i.state.clone(),
                    passive: i.passive,
                    cost: i.cost,
                    neighbors: i.neighbors,
                    owner: i.owner.clone(),
                })
                .collect(),
            neighbors: s
                .neighbors
                .iter()
                .map(|n| OspfNeighbor {
                    router_id: n.router_id.clone(),
                    address: n.address.clone(),
                    interface_name: n.interface_name.clone(),
                    version: n.version.into(),
                    state: n.state.clone(),
                    role: n.role.clone(),
                    owner: n.owner.clone(),
                })
                .collect(),
            injected_prefixes: s.injected.clone(),
        }))
    }

    async fn explain(&self, req: Request<ExplainRequest>) -> Result<Response<ExplainResponse>, Status> {
        let r = req.into_inner();
        let prefix = r.prefix.parse().map_err(|_| {
            Status::invalid_argument(format!("prefix {} is not a CIDR", crate::control::shown(&r.prefix)))
        })?;
        let peer: IpAddr = r.peer.parse().map_err(|_| {
            Status::invalid_argument(format!("peer {} is not an IP address", crate::control::shown(&r.peer)))
        })?;
        let e = self
            .control
            .speaker
            .explain(prefix, peer)
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        Ok(Response::new(ExplainResponse {
            prefix: e.prefix.to_string(),
            peer: e.peer.to_string(),
            advertised: e.advertised,
            reason: e.reason,
            as_path: e.as_path.unwrap_or_default(),
            next_hop: e.next_hop.map(|n| n.to_string()).unwrap_or_default(),
            best_from: e.best_from.unwrap_or_default(),
        }))
    }
}
