//! The read commands: `routing status|peers|prefixes|bfd|ospf|events|rib|
//! explain`.

use crate::client::{rpc_error, Agent};
use crate::render::{dash, duration, list, table, Format};
use novanet_proto::api::{EventType, GetStatusRequest, Protocol, StreamEventsRequest};
use novanet_proto::insight::{ExplainRequest, GetRibRequest, ListPeersRequest};
use serde::Serialize;

/// A peer as `routing peers` shows it (JSON field names are the contract).
#[derive(Serialize)]
pub struct PeerView {
    pub neighbor_address: String,
    pub remote_as: u32,
    pub local_as: u32,
    pub description: String,
    pub role: String,
    pub state: String,
    pub uptime: String,
    pub uptime_seconds: u64,
    pub remote_router_id: String,
    pub families: Vec<String>,
    /// Routes from the peer in the table now (after import policy).
    pub prefixes_received: u64,
    /// Prefixes the peer announced since the agent started.
    pub prefixes_announced_total: u64,
    pub prefixes_sent: u64,
    pub updates_received: u64,
    pub updates_sent: u64,
    pub established_transitions: u64,
    pub last_error: String,
    pub last_notification_sent: String,
    pub last_notification_received: String,
    pub bfd_status: String,
    pub bfd_tx_interval_ms: u32,
    pub bfd_detection_time_ms: u32,
    pub owner: String,
    /// Per address family: announced (cumulative), accepted, advertised.
    pub routes_by_family: Vec<FamilyView>,
}

#[derive(Serialize)]
pub struct FamilyView {
    pub family: String,
    pub announced_total: u64,
    pub accepted: u64,
    pub advertised: u64,
}

/// GetStatus, optionally for one owner.
async fn get_status(a: &mut Agent, owner: &str) -> anyhow::Result<novanet_proto::api::GetStatusResponse> {
    Ok(a.control
        .get_status(GetStatusRequest {
            owner_filter: owner.to_string(),
        })
        .await
        .map_err(rpc_error)?
        .into_inner())
}

pub async fn peers(a: &mut Agent) -> anyhow::Result<Vec<PeerView>> {
    let r = a
        .insight
        .list_peers(ListPeersRequest {})
        .await
        .map_err(rpc_error)?
        .into_inner();
    Ok(r.peers
        .into_iter()
        .map(|p| PeerView {
            uptime: duration(p.uptime_seconds),
            neighbor_address: p.neighbor_address,
            remote_as: p.remote_as,
            local_as: p.local_as,
            description: p.description,
            role: p.role,
            state: p.state,
            uptime_seconds: p.uptime_seconds,
            remote_router_id: p.remote_router_id,
            families: p.families,
            prefixes_received: p.prefixes_accepted,
            prefixes_announced_total: p.prefixes_received,
            prefixes_sent: p.prefixes_advertised,
            updates_received: p.updates_received,
            updates_sent: p.updates_sent,
            established_transitions: p.established_transitions,
            last_error: p.last_error,
            last_notification_sent: p.last_notification_sent,
            last_notification_received: p.last_notification_received,
            bfd_status: p.bfd_state,
            bfd_tx_interval_ms: p.bfd_tx_interval_ms,
            bfd_detection_time_ms: p.bfd_detection_time_ms,
            owner: p.owner,
            routes_by_family: p
                .routes_by_family
                .into_iter()
                .map(|f| FamilyView {
                    family: f.family,
                    announced_total: f.announced,
                    accepted: f.accepted,
                    advertised: f.advertised,
                })
                .collect(),
        })
        .collect())
}

pub fn peers_table(v: &[PeerView]) -> String {
    table(
        &[
            "NEIGHBOR",
            "REMOTE AS",
            "ROLE",
            "STATE",
            "UPTIME",
            "PFX RECV",
            "PFX SENT",
            "FAMILIES",
            "BFD",
            "OWNER",
            "LAST ERROR",
        ],
        &v.iter()
            .map(|p| {
                vec![
                    p.neighbor_address.clone(),
                    p.remote_as.to_string(),
                    p.role.clone(),
                    p.state.clone(),
                    p.uptime.clone(),
                    p.prefixes_received.to_string(),
                    p.prefixes_sent.to_string(),
                    dash(&p.families.join(",")),
                    if p.bfd_status == "disabled" {
                        "-".into()
                    } else {
                        format!(
                            "{} {}ms/{}ms",
                            p.bfd_status, p.bfd_tx_interval_ms, p.bfd_detection_time_ms
                        )
                    },
                    dash(&p.owner),
                    dash(&p.last_error),
                ]
            })
            .collect::<Vec<_>>(),
    )
}

#[derive(Serialize)]
pub struct PrefixView {
    pub prefix: String,
    pub protocol: String,
    pub state: String,
    pub owner: String,
    /// The peers the prefix is sent to (BGP).
    pub advertised_to: Vec<String>,
    /// The configured peers it is not sent to, and why.
    pub not_advertised_to: Vec<NotAdvertised>,
}

#[derive(Serialize)]
pub struct NotAdvertised {
    pub peer: String,
    pub reason: String,
}

pub async fn prefixes(a: &mut Agent, owner: &str) -> anyhow::Result<Vec<PrefixView>> {
    let st = get_status(a, owner).await?;
    let mut v: Vec<PrefixView> = st
        .prefixes
        .into_iter()
        .map(|p| PrefixView {
            prefix: p.prefix,
            protocol: if p.protocol == Protocol::Ospf as i32 {
                "ospf"
            } else {
                "bgp"
            }
            .into(),
            state: p.state,
            owner: p.owner,
            advertised_to: Vec::new(),
            not_advertised_to: Vec::new(),
        })
        .collect();
    // Prefixes the node originates from its configuration (the PodCIDR).
    if owner.is_empty() || owner == "_config" {
        let rib = a
            .insight
            .get_rib(GetRibRequest { prefix: String::new() })
            .await
            .map_err(rpc_error)?
            .into_inner();
        for r in rib.routes {
            let local = r.paths.first().is_some_and(|p| p.best && p.from == "local");
            if local && !v.iter().any(|p| p.prefix == r.prefix) {
                v.push(PrefixView {
                    prefix: r.prefix,
                    protocol: "bgp".into(),
                    state: "advertised".into(),
                    owner: "_config".into(),
                    advertised_to: Vec::new(),
                    not_advertised_to: Vec::new(),
                });
            }
        }
    }
    for p in v.iter_mut().filter(|p| p.protocol == "bgp" && p.state == "advertised") {
        let rib = a
            .insight
            .get_rib(GetRibRequest {
                prefix: p.prefix.clone(),
            })
            .await
            .map_err(rpc_error)?
            .into_inner();
        for e in rib.routes.into_iter().flat_map(|r| r.exports) {
            if e.advertised {
                p.advertised_to.push(e.peer);
            } else {
                p.not_advertised_to.push(NotAdvertised {
                    peer: e.peer,
                    reason: e.reason,
                });
            }
        }
        p.state = advertised_state(p);
    }
    v.sort_by(|a, b| a.prefix.cmp(&b.prefix));
    Ok(v)
}

/// What an originated prefix's state says once the peers are known:
/// `advertised` (sent to at least one peer, or no peer configured),
/// `withheld` (established peers, none takes it: WHY says why) or
/// `pending` (no session established yet).
fn advertised_state(p: &PrefixView) -> String {
    let established = |n: &&NotAdvertised| !n.reason.contains("is not established");
    if !p.advertised_to.is_empty() || p.not_advertised_to.is_empty() {
        "advertised".into()
    } else if p.not_advertised_to.iter().any(|n| established(&n)) {
        "withheld".into()
    } else {
        "pending".into()
    }
}

pub fn prefixes_table(v: &[PrefixView]) -> String {
    table(
        &["PREFIX", "PROTOCOL", "STATE", "OWNER", "PEERS", "WITHHELD"],
        &v.iter()
            .map(|p| {
                let not_sent: Vec<String> = p
                    .not_advertised_to
                    .iter()
                    .map(|n| format!("{}: {}", n.peer, n.reason))
                    .collect();
                vec![
                    p.prefix.clone(),
                    p.protocol.clone(),
                    p.state.clone(),
                    p.owner.clone(),
                    dash(&p.advertised_to.join(",")),
                    dash(&not_sent.join("; ")),
                ]
            })
            .collect::<Vec<_>>(),
    )
}

#[derive(Serialize)]
pub struct BfdView {
    pub peer_address: String,
    pub status: String,
    pub min_rx_ms: u32,
    pub min_tx_ms: u32,
    pub detect_multiplier: u32,
    pub tx_interval_ms: u32,
    pub detection_time_ms: u32,
    pub owner: String,
}

pub async fn bfd(a: &mut Agent, owner: &str) -> anyhow::Result<Vec<BfdView>> {
    let st = get_status(a, owner).await?;
    let live = peers(a).await?;
    let mut v: Vec<BfdView> = st
        .bfd_sessions
        .into_iter()
        .map(|b| {
            let l = live.iter().find(|p| p.neighbor_address == b.peer_address);
            BfdView {
                status: b.state,
                min_rx_ms: b.min_rx_ms,
                min_tx_ms: b.min_tx_ms,
                detect_multiplier: b.detect_multiplier,
                tx_interval_ms: l.map(|p| p.bfd_tx_interval_ms).unwrap_or(0),
                detection_time_ms: l.map(|p| p.bfd_detection_time_ms).unwrap_or(0),
                owner: b.owner,
                peer_address: b.peer_address,
            }
        })
        .collect();
    if owner.is_empty() || owner == "_config" {
        for p in live
            .iter()
            .filter(|p| p.bfd_status != "disabled" && p.owner == "_config")
        {
            if !v.iter().any(|b| b.peer_address == p.neighbor_address) {
                v.push(BfdView {
                    peer_address: p.neighbor_address.clone(),
                    status: p.bfd_status.clone(),
                    min_rx_ms: 0,
                    min_tx_ms: 0,
                    detect_multiplier: 0,
                    tx_interval_ms: p.bfd_tx_interval_ms,
                    detection_time_ms: p.bfd_detection_time_ms,
                    owner: "_config".into(),
                });
            }
        }
    }
    v.sort_by(|a, b| a.peer_address.cmp(&b.peer_address));
    Ok(v)
}

pub fn bfd_table(v: &[BfdView]) -> String {
    let ms = |x: u32| if x == 0 { "-".to_string() } else { format!("{x}ms") };
    table(
        &[
            "PEER ADDRESS",
            "STATUS",
            "MIN RX",
            "MIN TX",
            "DETECT MULT",
            "TX INTERVAL",
            "DETECTION",
            "OWNER",
        ],
        &v.iter()
            .map(|b| {
                vec![
                    b.peer_address.clone(),
                    b.status.clone(),
                    ms(b.min_rx_ms),
                    ms(b.min_tx_ms),
                    if b.detect_multiplier == 0 {
                        "-".into()
                    } else {
                        b.detect_multiplier.to_string()
                    },
                    ms(b.tx_interval_ms),
                    ms(b.detection_time_ms),
                    b.owner.clone(),
                ]
            })
            .collect::<Vec<_>>(),
    )
}

#[derive(Serialize)]
pub struct OspfView {
    pub interface_name: String,
    pub area_id: String,
    pub state: String,
    pub owner: String,
    pub neighbor_count: u32,
    pub cost: u32,
}

pub async fn ospf(a: &mut Agent, owner: &str) -> anyhow::Result<Vec<OspfView>> {
    let st = get_status(a, owner).await?;
    Ok(st
        .ospf_interfaces
        .into_iter()
        .map(|o| OspfView {
            interface_name: o.interface_name,
            area_id: o.area_id,
            state: o.state,
            owner: o.owner,
            neighbor_count: o.neighbor_count,
            cost: o.cost,
        })
        .collect())
}

pub fn ospf_table(v: &[OspfView]) -> String {
    table(
        &["INTERFACE", "AREA", "STATE", "OWNER", "NEIGHBORS", "COST"],
        &v.iter()
            .map(|o| {
                vec![
                    o.interface_name.clone(),
                    o.area_id.clone(),
                    o.state.clone(),
                    o.owner.clone(),
                    o.neighbor_count.to_string(),
                    o.cost.to_string(),
                ]
            })
            .collect::<Vec<_>>(),
    )
}

#[derive(Serialize)]
pub struct StatusView {
    /// `bgp` or `ospf`.
    pub mode: String,
    pub local_as: u32,
    pub peers: usize,
    pub peers_established: usize,
    pub prefixes_advertised: usize,
    pub bfd_sessions: usize,
    pub bfd_up: usize,
    pub ospf_interfaces: usize,
    /// The OSPF mode: whether the ospfd sidecar answers, and its Full
    /// adjacencies.
    pub ospf_sidecar_connected: Option<bool>,
    pub ospf_neighbors_full: usize,
}

pub async fn status(a: &mut Agent) -> anyhow::Result<StatusView> {
    let p = peers(a).await?;
    let pf = prefixes(a, "").await?;
    let b = bfd(a, "").await?;
    let o = ospf(a, "").await?;
    let mode = a
        .insight
        .get_ospf(novanet_proto::insight::GetOspfRequest {})
        .await
        .ok()
        .map(|r| r.into_inner());
    Ok(StatusView {
        mode: if mode.is_some() { "ospf" } else { "bgp" }.into(),
        ospf_sidecar_connected: mode.as_ref().map(|m| m.sidecar.as_ref().is_some_and(|s| s.connected)),
        ospf_neighbors_full: mode
            .as_ref()
            .map(|m| m.neighbors.iter().filter(|n| n.state == "Full").count())
            .unwrap_or(0),
        local_as: p.first().map(|p| p.local_as).unwrap_or(0),
        peers: p.len(),
        peers_established: p.iter().filter(|p| p.state == "Established").count(),
        prefixes_advertised: pf.iter().filter(|p| p.state == "advertised").count(),
        bfd_sessions: b.len(),
        bfd_up: b.iter().filter(|b| b.status == "up").count(),
        ospf_interfaces: o.len(),
    })
}

pub fn status_text(s: &StatusView) -> String {
    let mut out = format!(
        "Routing Status\n==============\n\nRouting Mode:     native ({})\nLocal AS:         {}\nBGP Peers:        {} ({} established)\nPrefixes:         {} advertised\nBFD Sessions:     {} ({} up)\nOSPF Interfaces:  {}\n",
        s.mode.to_ascii_uppercase(),
        if s.local_as == 0 { "-".to_string() } else { s.local_as.to_string() },
        s.peers,
        s.peers_established,
        s.prefixes_advertised,
        s.bfd_sessions,
        s.bfd_up,
        s.ospf_interfaces
    );
    if let Some(connected) = s.ospf_sidecar_connected {
        out.push_str(&format!(
            "OSPF Sidecar:     {}\nOSPF Neighbors:   {} full\n",
            if connected { "connected" } else { "NOT CONNECTED" },
            s.ospf_neighbors_full
        ));
    }
    out
}

#[derive(Serialize)]
pub struct RibPathView {
    pub prefix: String,
    pub from: String,
    pub best: bool,
    pub multipath: bool,
    pub stale: bool,
    pub next_hop: String,
    pub as_path: String,
    pub local_pref: Option<u32>,
    pub med: Option<u32>,
    pub origin: String,
    pub communities: Vec<String>,
    /// Why this path won, or the decision step at which it lost.
    pub reason: String,
    pub path_id: u32,
}

pub async fn rib(a: &mut Agent, prefix: Option<String>) -> anyhow::Result<Vec<RibPathView>> {
    let r = a
        .insight
        .get_rib(GetRibRequest {
            prefix: prefix.unwrap_or_default(),
        })
        .await
        .map_err(rpc_error)?
        .into_inner();
    Ok(r.routes
        .into_iter()
        .flat_map(|e| {
            let prefix = e.prefix.clone();
            let n = e.paths.len();
            e.paths.into_iter().map(move |p| RibPathView {
                prefix: prefix.clone(),
                reason: if p.best {
                    if n == 1 {
                        "best (only path)".into()
                    } else {
                        "best".into()
                    }
                } else if p.multipath {
                    "multipath (equal to best)".into()
                } else {
                    format!("lost: {}", p.lost_at)
                },
                from: p.from,
                best: p.best,
                multipath: p.multipath,
                stale: p.stale,
                next_hop: p.next_hop,
                as_path: p.as_path,
                local_pref: p.has_local_pref.then_some(p.local_pref),
                med: p.has_med.then_some(p.med),
                origin: p.origin,
                communities: p.communities,
                path_id: p.path_id,
            })
        })
        .collect())
}

pub fn rib_table(v: &[RibPathView]) -> String {
    table(
        &[
            "", "PREFIX", "FROM", "NEXT HOP", "AS PATH", "LOCPRF", "MED", "ORIGIN", "WHY",
        ],
        &v.iter()
            .map(|p| {
                vec![
                    if p.best {
                        "*".into()
                    } else if p.multipath {
                        "=".into()
                    } else {
                        " ".into()
                    },
                    p.prefix.clone(),
                    p.from.clone(),
                    dash(&p.next_hop),
                    dash(&p.as_path),
                    p.local_pref.map(|v| v.to_string()).unwrap_or_else(|| "-".into()),
                    p.med.map(|v| v.to_string()).unwrap_or_else(|| "-".into()),
                    p.origin.clone(),
                    p.reason.clone() + if p.stale { " (stale)" } else { "" },
                ]
            })
            .collect::<Vec<_>>(),
    )
}

#[derive(Serialize)]
pub struct ExplainView {
    pub prefix: String,
    pub peer: String,
    pub advertised: bool,
    pub reason: String,
    pub as_path: String,
    pub next_hop: String,
    pub best_from: String,
}

pub async fn explain(a: &mut Agent, prefix: String, peer: String) -> anyhow::Result<ExplainView> {
    let r = a
        .insight
        .explain(ExplainRequest { prefix, peer })
        .await
        .map_err(rpc_error)?
        .into_inner();
    Ok(ExplainView {
        prefix: r.prefix,
        peer: r.peer,
        advertised: r.advertised,
        reason: r.reason,
        as_path: r.as_path,
        next_hop: r.next_hop,
        best_from: r.best_from,
    })
}

pub fn explain_text(e: &ExplainView) -> String {
    let mut s = format!(
        "{} to {}: {}\n  reason:    {}\n  best path: {}\n",
        e.prefix,
        e.peer,
        if e.advertised { "advertised" } else { "not advertised" },
        e.reason,
        if e.best_from.is_empty() {
            "none".into()
        } else {
            format!("from {}", e.best_from)
        },
    );
    if e.advertised {
        s.push_str(&format!(
            "  sent as:   AS path [{}], next hop {}\n",
            e.as_path,
            dash(&e.next_hop)
        ));
    }
    s
}

/// Streams events until interrupted.
pub async fn events(a: &mut Agent, owner: String, types: Vec<String>, format: Format) -> anyhow::Result<()> {
    let mut stream = a
        .control
        .stream_events(StreamEventsRequest {
            owner_filter: owner,
            event_types: types,
        })
        .await
        .map_err(rpc_error)?
        .into_inner();
    if format == Format::Table {
        println!("Streaming routing events (Ctrl+C to stop)...\n");
    }
    while let Some(e) = stream.message().await.map_err(rpc_error)? {
        let kind = EventType::try_from(e.r#type)
            .map(|t| t.as_str_name())
            .unwrap_or("EVENT_TYPE_UNSPECIFIED");
        let name = kind.trim_start_matches("EVENT_TYPE_").to_ascii_lowercase();
        match format {
            Format::Table => println!(
                "[{}] {name:<20}  owner={:<10}  {}",
                clock(e.timestamp_unix),
                dash(&e.owner),
                e.detail
            ),
            _ => {
                let v = serde_json::json!({
                    "type": name, "owner": e.owner, "detail": e.detail,
                    "timestamp_unix": e.timestamp_unix, "metadata": e.metadata,
                });
                if format == Format::Json {
                    println!("{v}");
                } else {
                    print!("---\n{}", serde_yaml_ng::to_string(&v)?);
                }
            }
        }
    }
    Ok(())
}

fn clock(unix: i64) -> String {
    let s = unix.rem_euclid(86400);
    format!("{:02}:{:02}:{:02}", s / 3600, (s / 60) % 60, s % 60)
}

/// Renders one of the list commands.
pub fn render_list<T: Serialize>(
    format: Format,
    items: &[T],
    empty: &str,
    tab: impl Fn(&[T]) -> String,
) -> anyhow::Result<String> {
    list(format, items, empty, tab)
}

/// The node's lifecycle: its drain, and what a SIGTERM would do.
#[derive(Serialize)]
pub struct LifecycleView {
    pub draining: bool,
    pub drain_cause: String,
    /// Seconds since the epoch; 0 when not draining.
    pub draining_since: u64,
    pub on_sigterm: String,
    pub on_sigterm_reason: String,
}

impl From<novanet_proto::insight::LifecycleStatus> for LifecycleView {
    fn from(s: novanet_proto::insight::LifecycleStatus) -> Self {
        LifecycleView {
            draining: s.draining,
            drain_cause: s.drain_cause,
            draining_since: s.draining_since,
            on_sigterm: s.on_sigterm,
            on_sigterm_reason: s.on_sigterm_reason,
        }
    }
}

pub async fn lifecycle(a: &mut Agent) -> anyhow::Result<LifecycleView> {
    let s = a
        .lifecycle
        .get_lifecycle(novanet_proto::insight::GetLifecycleRequest {})
        .await
        .map_err(rpc_error)?;
    Ok(s.into_inner().into())
}

pub async fn drain(a: &mut Agent, undo: bool) -> anyhow::Result<LifecycleView> {
    let s = a
        .lifecycle
        .drain(novanet_proto::insight::DrainRequest { undo })
        .await
        .map_err(rpc_error)?;
    Ok(s.into_inner().into())
}

pub fn lifecycle_text(l: &LifecycleView) -> String {
    let draining = if l.draining {
        let since = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs().saturating_sub(l.draining_since))
            .unwrap_or(0);
        format!("yes ({}, for {})", l.drain_cause, duration(since))
    } else {
        "no".into()
    };
    let on_sigterm = if l.on_sigterm_reason.is_empty() {
        l.on_sigterm.clone()
    } else {
        format!("{} ({})", l.on_sigterm, l.on_sigterm_reason)
    };
    format!("Draining:    {draining}\nOn SIGTERM:  {on_sigterm}\n")
}

/// One object in the chosen format.
pub fn render_one<T: Serialize>(format: Format, v: &T, text: fn(&T) -> String) -> anyhow::Result<String> {
    Ok(match format {
        Format::Table => text(v),
        Format::Json => serde_json::to_string_pretty(v)? + "\n",
        Format::Yaml => serde_yaml_ng::to_string(v)?,
    })
}
