//! Every peer the node wants, as a [`PeerSpec`]: the speaker's session
//! settings and the BFD session it asks for. Each source of peers builds
//! its specs here (ToRs by address or by interface, the node mesh, the
//! RouteControl API, standalone BFD), and this is the only place that
//! holds their defaults: hold time and keepalive, the prefix limit, the
//! node's BFD timers.

use crate::config::checked::Checked;
use crate::config::{node_asn, Config, MeshSource, NodeMesh, PeerEntry, PeerEntryRole};
use crate::control::owners::PeerTerms;
use crate::kubernetes::nodes::MeshRole;
use crate::kubernetes::resources::plan::{Advertising, ResourcePeer};
use ipnet::IpNet;
use novanet_bfd::session::{AuthConfig, SessionConfig};
use novanet_bfd::transport::{SessionKey, SessionSpec};
use novanet_bgp::policy::{Advertise, NodeRoutes, PeerPolicy, PrefixMatch};
use novanet_bgp::speaker::{PeerConfig, PeerRole};
use novanet_bgp::wire::types::LargeCommunity;
use novanet_bgp::wire::Family;
use novanet_proto::api::{AddressFamily, BgpPeer};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

/// One neighbor as a source wants it.
#[derive(Debug, Clone, PartialEq)]
pub struct PeerSpec {
    pub bgp: PeerConfig,
    pub bfd: Option<SessionSpec>,
}

/// Prefix limit of a peer that sets none (it only warns).
pub const DEFAULT_MAX_PREFIX: u32 = 1000;

/// Multihop TTL of node-mesh peers, which are often routed through the
/// ToRs rather than on one segment.
pub const MESH_MULTIHOP: u8 = 255;

/// How soon a mesh peer dials again after a failed connection.
pub const MESH_CONNECT_RETRY: Duration = Duration::from_secs(2);

/// BFD timers; a 0 takes the node's default for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BfdTimers {
    pub min_rx_ms: u32,
    pub min_tx_ms: u32,
    pub detect_multiplier: u32,
}

impl BfdTimers {
    /// The node's BFD timers for sessions that set none:
    /// `routing.bfd` with the chart's flat keys over it.
    pub fn node_defaults(cfg: &Config) -> BfdTimers {
        let global = &cfg.routing.bfd;
        BfdTimers {
            min_rx_ms: cfg.routing.bfd_min_rx_ms.unwrap_or(global.min_rx_ms),
            min_tx_ms: cfg.routing.bfd_min_tx_ms.unwrap_or(global.min_tx_ms),
            detect_multiplier: cfg.routing.bfd_detect_mult.unwrap_or(global.detect_multiplier),
        }
    }

    /// These timers with each 0 taken from `defaults`.
    pub fn or(self, defaults: BfdTimers) -> BfdTimers {
        let or = |v: u32, d: u32| if v == 0 { d } else { v };
        BfdTimers {
            min_rx_ms: or(self.min_rx_ms, defaults.min_rx_ms),
            min_tx_ms: or(self.min_tx_ms, defaults.min_tx_ms),
            detect_multiplier: or(self.detect_multiplier, defaults.detect_multiplier),
        }
    }

    fn session_config(self) -> SessionConfig {
        SessionConfig {
            desired_min_tx: Duration::from_millis(self.min_tx_ms as u64),
            required_min_rx: Duration::from_millis(self.min_rx_ms as u64),
            detect_mult: self.detect_multiplier.clamp(1, 255) as u8,
            passive: false,
            auth: None,
        }
    }
}

/// The BFD session of a BGP peer: multihop when the peer is, from the
/// peer's source address, `timers` over the node's `defaults`.
pub fn bfd_session(peer: &PeerConfig, timers: BfdTimers, defaults: BfdTimers) -> SessionSpec {
    SessionSpec {
        key: SessionKey {
            peer: peer.address,
            multihop: peer.ebgp_multihop > 0,
        },
        local: peer.source_address,
        config: timers.or(defaults).session_config(),
        min_ttl: None,
    }
}

/// A standalone single-hop BFD session (EnableBFD), `timers` over the
/// node's `defaults`.
pub fn standalone_bfd(peer: IpAddr, timers: BfdTimers, defaults: BfdTimers) -> SessionSpec {
    SessionSpec {
        key: SessionKey { peer, multihop: false },
        local: None,
        config: timers.or(defaults).session_config(),
        min_ttl: None,
    }
}

/// A prefix limit as configured: an explicit limit closes the session
/// unless `warning_only`; 0 takes [`DEFAULT_MAX_PREFIX`], which only
/// warns, so a peer sending more than expected is never cut off silently.
fn set_prefix_limit(pc: &mut PeerConfig, limit: u32, warning_only: Option<bool>) {
    pc.max_prefix = if limit == 0 { DEFAULT_MAX_PREFIX } else { limit };
    pc.max_prefix_warning_only = warning_only.unwrap_or(limit == 0);
}

/// Hold time and keepalive as given; 0 keeps the speaker's default (90 s,
/// keepalive a third of the hold time).
fn set_timers(pc: &mut PeerConfig, hold_time: u32, keepalive: u32) {
    if hold_time != 0 {
        pc.hold_time = hold_time.min(u16::MAX as u32) as u16;
    }
    if keepalive != 0 {
        pc.keepalive = Some(keepalive.min(u16::MAX as u32) as u16);
    }
}

/// A named policy of the configuration (checked when it was loaded: an
/// unknown name never gets here; should one, it exports and imports
/// nothing).
fn policy(cfg: &Config, name: &str) -> PeerPolicy {
    match name {
        "default" => PeerPolicy::Default,
        "all" => PeerPolicy::All,
        "none" => PeerPolicy::None,
        other => match cfg.routing.policies.get(other) {
            Some(p) => PeerPolicy::Named(other.into(), Arc::new(p.clone())),
            None => PeerPolicy::None,
        },
    }
}

/// The node's source address (its NovaBGPNodeOverride's) for a ToR at
/// `peer`: only one of the peer's family.
fn node_source(source: Option<IpAddr>, peer: IpAddr) -> Option<IpAddr> {
    source.filter(|s| s.is_ipv4() == peer.is_ipv4())
}

/// A ToR from `routing.peers[]` at `address`: its `neighbor_address`, or
/// for a peer by interface the link-local address found on that link (it
/// carries IPv4 and IPv6 unicast unless told otherwise).
pub fn tor(cfg: &Config, p: &PeerEntry, address: IpAddr) -> PeerSpec {
    let mut pc = PeerConfig::new(address, p.remote_as);
    pc.description = p.description.clone();
    if let Some(name) = &p.interface {
        pc.interface = Some(name.clone());
        pc.families = vec![Family::IPV4_UNICAST, Family::IPV6_UNICAST];
        if pc.description.is_empty() {
            pc.description = format!("unnumbered on {name}");
        }
    }
    pc.role = match p.role {
        PeerEntryRole::Tor => PeerRole::Tor,
        PeerEntryRole::RouteServer => PeerRole::RouteServer,
        PeerEntryRole::RouteServerClient => PeerRole::RouteServerClient,
    };
    set_timers(&mut pc, p.hold_time as u32, p.keepalive as u32);
    pc.passive = p.passive;
    pc.port = p.port;
    if p.interface.is_none() {
        pc.source_address = p
            .source_address
            .or_else(|| node_source(cfg.node_source_address, address));
    }
    pc.ebgp_multihop = p.ebgp_multihop;
    pc.ttl_security_hops = p.ttl_security_hops;
    pc.password = p.password.clone().filter(|s| !s.is_empty());
    if !p.address_families.is_empty() {
        pc.families = p.address_families.iter().filter_map(|f| f.valid().copied()).collect();
        pc.families.dedup();
    }
    set_prefix_limit(&mut pc, p.max_prefix, p.max_prefix_warning_only);
    pc.import = policy(cfg, &p.import);
    pc.export = policy(cfg, &p.export);
    let bfd = p.bfd_enabled.then(|| {
        let timers = BfdTimers {
            min_rx_ms: p.bfd_min_rx_ms,
            min_tx_ms: p.bfd_min_tx_ms,
            detect_multiplier: p.bfd_detect_multiplier,
        };
        let mut s = bfd_session(&pc, timers, BfdTimers::node_defaults(cfg));
        s.min_ttl = p.bfd_min_ttl;
        s.config.auth = p.bfd_key.as_ref().map(|key| AuthConfig::KeyedSha1 {
            key_id: p.bfd_key_id,
            key: key.clone(),
            meticulous: true,
        });
        s
    });
    PeerSpec { bgp: pc, bfd }
}

/// A ToR of a `NovaBGPClusterConfig` at `address` (the peer's, or for a
/// peer by interface the link-local address found on that link, carrying
/// IPv4 and IPv6 unicast): its AS (0: any), its `NovaBGPPeerProfile`'s
/// timers, graceful-restart time, BFD (not on an unnumbered link),
/// password, multihop and prefix
/// limit (the session's address family's; the larger of the two on a link)
/// over the same defaults as `routing.peers[]`; default import, the
/// advertisements' export.
pub fn resource_tor(cfg: &Config, p: &ResourcePeer, address: IpAddr) -> PeerSpec {
    let profile = &p.profile;
    let mut pc = PeerConfig::new(address, p.remote_as);
    pc.description = format!("{} (NovaBGPClusterConfig {})", p.name, p.config);
    pc.role = PeerRole::Tor;
    set_timers(
        &mut pc,
        profile.hold_time_seconds.unwrap_or(0),
        profile.keepalive_seconds.unwrap_or(0),
    );
    let limits = profile.max_prefix.unwrap_or_default();
    let limit = match &p.interface {
        Some(name) => {
            pc.interface = Some(name.clone());
            pc.families = vec![Family::IPV4_UNICAST, Family::IPV6_UNICAST];
            limits.ipv4.max(limits.ipv6)
        }
        None => {
            pc.ebgp_multihop = profile.ebgp_multihop.unwrap_or(0);
            pc.source_address = node_source(p.source_address, address);
            if address.is_ipv4() {
                limits.ipv4
            } else {
                limits.ipv6
            }
        }
    };
    if let Some(a) = p.advertising.as_ref().filter(|a| !a.names.is_empty()) {
        pc.export = PeerPolicy::Advertise(Arc::new(advertise(cfg, a)));
    }
    pc.password = p.password.clone();
    pc.graceful_restart_time = profile.graceful_restart_seconds.map(|t| t.min(4095) as u16);
    set_prefix_limit(&mut pc, limit.unwrap_or(0), None);
    let bfd = profile.bfd.filter(|_| p.interface.is_none()).map(|b| {
        let timers = BfdTimers {
            min_rx_ms: b.min_rx_ms,
            min_tx_ms: b.min_tx_ms,
            detect_multiplier: b.multiplier,
        };
        bfd_session(&pc, timers, BfdTimers::node_defaults(cfg))
    });
    PeerSpec { bgp: pc, bfd }
}

/// The export of a ToR with NovaBGPAdvertisements: the node's PodCIDRs
/// withheld when none of them advertises them, their communities
/// (`ASN:VALUE` standard, `ASN:VALUE:VALUE` large; the API server's schema
/// refused any other), LOCAL_PREF and prepend.
fn advertise(cfg: &Config, a: &Advertising) -> Advertise {
    let name = format!("NovaBGPAdvertisement {}", a.names.join(", "));
    let withheld = if a.pod_cidrs {
        Vec::new()
    } else {
        cfg.pod_cidrs()
            .into_iter()
            .map(|p| (p, "podCIDRs: false".to_string()))
            .collect()
    };
    let mut communities = Vec::new();
    let mut large_communities = Vec::new();
    for c in &a.communities {
        let parts: Vec<Option<u32>> = c.split(':').map(|p| p.parse().ok()).collect();
        match parts.as_slice() {
            [Some(_), Some(_)] => communities.extend(novanet_bgp::policy::parse_community(c)),
            [Some(g), Some(l1), Some(l2)] => large_communities.push(LargeCommunity {
                global_admin: *g,
                local1: *l1,
                local2: *l2,
            }),
            _ => {
                tracing::warn!(community = %c, advertisement = %name, "community left out: not ASN:VALUE or ASN:VALUE:VALUE")
            }
        }
    }
    Advertise {
        name,
        withheld,
        communities,
        large_communities,
        local_pref: a.local_preference,
        prepend: a.as_path_prepend,
    }
}

/// A node-mesh peer: the other node's address and per-node AS, multihop
/// (mesh traffic often crosses the ToRs), a short connect retry, the
/// mesh's prefix limit, and BFD with the node's defaults when
/// `routing.bfd` is on, authenticated with the mesh's key when it has one.
/// Its routes are taken only within its `pod_cidrs` and what every node
/// may originate ([`node_originations`]), next hop the node; a node whose
/// PodCIDRs are not known is held to the default import only.
///
/// With route servers, `role` says what the session is: to a route server
/// (its routes are every other node's, `pod_cidrs` all of theirs, with
/// their AS path and next hop), or to a client of this node as the route
/// server (sent the mesh's routes, `cluster`, transparently).
pub fn mesh(
    cfg: &Config,
    name: &str,
    ip: IpAddr,
    asn: u32,
    pod_cidrs: &[IpNet],
    role: MeshRole,
    cluster: &[IpNet],
) -> PeerSpec {
    let mesh: &NodeMesh = &cfg.routing.node_mesh;
    let mut pc = PeerConfig::new(ip, asn);
    if !pod_cidrs.is_empty() {
        pc.import = PeerPolicy::Node(Arc::new(NodeRoutes {
            node: name.to_string(),
            pod_cidrs: pod_cidrs.to_vec(),
            cluster: Arc::new(node_originations(cfg)),
        }));
    }
    pc.description = match role {
        MeshRole::Peer => format!("node {name}"),
        MeshRole::RouteServer => format!("node {name} (route server)"),
        MeshRole::Client => format!("node {name} (route-server client)"),
    };
    pc.role = match role {
        MeshRole::Peer => PeerRole::Mesh,
        MeshRole::RouteServer => PeerRole::RouteServer,
        MeshRole::Client => PeerRole::RouteServerClient,
    };
    if role == MeshRole::Client {
        // The mesh's routes, passed on; nothing learned elsewhere.
        let mut rules: Vec<PrefixMatch> = cluster
            .iter()
            .map(|c| PrefixMatch {
                prefix: *c,
                ge: Some(c.prefix_len()),
                le: Some(c.max_prefix_len()),
            })
            .collect();
        rules.extend(node_originations(cfg));
        pc.export = PeerPolicy::Named(
            "route-server".into(),
            Arc::new(novanet_bgp::policy::Policy {
                rules: vec![novanet_bgp::policy::Rule {
                    prefixes: rules,
                    as_path_contains: None,
                    community: None,
                    action: novanet_bgp::policy::Verdict::Accept,
                    set: None,
                }],
                default: novanet_bgp::policy::Verdict::Reject,
            }),
        );
    }
    pc.password = mesh.password.clone();
    pc.ebgp_multihop = MESH_MULTIHOP;
    pc.connect_retry = MESH_CONNECT_RETRY;
    if mesh.max_prefix == 0 && !pod_cidrs.is_empty() {
        // What the node may originate bounds what it sends: a node
        // sending more is broken or hostile, and is closed.
        pc.max_prefix = mesh_limit(cfg);
        if role == MeshRole::RouteServer {
            // Every other node's, through one session.
            pc.max_prefix = pc.max_prefix.saturating_mul(pod_cidrs.len().max(1) as u32);
        }
        pc.max_prefix_warning_only = mesh.max_prefix_warning_only.unwrap_or(false);
    } else {
        set_prefix_limit(&mut pc, mesh.max_prefix, mesh.max_prefix_warning_only);
    }
    let enabled = cfg.routing.bfd_enabled.unwrap_or(cfg.routing.bfd.enabled);
    let bfd = enabled.then(|| {
        let mut s = bfd_session(&pc, BfdTimers::default(), BfdTimers::node_defaults(cfg));
        s.min_ttl = mesh.bfd_min_ttl;
        // The mesh's key: a forged packet (a pod anywhere in the cluster
        // posing as another node) fails its digest.
        s.config.auth = mesh.bfd_key.as_ref().map(|key| AuthConfig::KeyedSha1 {
            key_id: 1,
            key: key.clone(),
            meticulous: true,
        });
        s
    });
    PeerSpec { bgp: pc, bfd }
}

/// The prefix limit of a mesh session whose node's PodCIDRs are known,
/// unless `node_mesh.max_prefix` says otherwise: per family, a node's
/// PodCIDRs (a handful), each owner's intents (`max_intents`), the VIP.
pub fn mesh_limit(cfg: &Config) -> u32 {
    let owners: usize = cfg.owners.values().map(|o| o.max_intents).sum();
    (MESH_LIMIT_BASE as usize).saturating_add(owners).min(u32::MAX as usize) as u32
}

/// The part of [`mesh_limit`] for the node's own prefixes.
pub const MESH_LIMIT_BASE: u32 = 16;

/// What any node of the cluster may originate besides its PodCIDRs: the
/// prefixes the RouteControl owners may advertise (each owner's ranges at
/// its prefix type's lengths; an owner without `allowed_cidrs` anywhere at
/// those lengths) and the control-plane VIP. The configuration is the
/// same on every node, so this node's owners are every node's.
pub fn node_originations(cfg: &Config) -> Vec<PrefixMatch> {
    use crate::config::owners::PrefixType;
    let everywhere: [IpNet; 2] = ["0.0.0.0/0".parse().expect("v4"), "::/0".parse().expect("v6")];
    let mut out = Vec::new();
    for o in cfg.owners.values() {
        let ranges: &[IpNet] = if o.allowed_prefixes.allowed_cidrs.is_empty() {
            &everywhere
        } else {
            &o.allowed_prefixes.allowed_cidrs
        };
        for r in ranges {
            let (min, max) = match (o.allowed_prefixes.kind, r) {
                (PrefixType::Any, _) => (1, r.max_prefix_len()),
                (PrefixType::HostOnly, _) => (r.max_prefix_len(), r.max_prefix_len()),
                (PrefixType::Subnet, IpNet::V4(_)) => (8, 28),
                (PrefixType::Subnet, IpNet::V6(_)) => (1, 127),
            };
            let ge = min.max(r.prefix_len());
            if ge <= max {
                out.push(PrefixMatch {
                    prefix: *r,
                    ge: Some(ge),
                    le: Some(max),
                });
            }
        }
    }
    if let Checked::Valid(Some(vip)) = &cfg.routing.control_plane_vip {
        out.push(PrefixMatch {
            prefix: *vip,
            ge: None,
            le: None,
        });
    }
    out
}

/// Node-mesh peers of a static node list: every node but this one, with
/// its per-node AS.
pub fn static_mesh(cfg: &Config) -> Vec<PeerSpec> {
    let m = &cfg.routing.node_mesh;
    if !m.enabled || m.source != MeshSource::Static {
        return Vec::new();
    }
    m.nodes
        .iter()
        .filter(|n| Some(n.ip) != cfg.node_ip && n.name != cfg.node_name)
        .filter_map(|n| {
            let asn = node_asn(n.ip, cfg.routing.asn_mode)?;
            Some(mesh(
                cfg,
                &n.name,
                n.ip,
                asn,
                n.pod_cidr.as_slice(),
                MeshRole::Peer,
                &[],
            ))
        })
        .collect()
}

/// Every peer the configuration file gives an address: ToRs, then the
/// static mesh (peers by interface come from the unnumbered links once
/// their address is found).
pub fn from_config(cfg: &Config) -> Vec<PeerSpec> {
    cfg.routing
        .peers
        .iter()
        .filter_map(|p| Some(tor(cfg, p, p.neighbor_address?)))
        .chain(static_mesh(cfg))
        .collect()
}

/// An API peer (ApplyPeer, checked at the RPC) on its owner's terms
/// (limit, whether it closes the session, whether routes are taken); BFD
/// timers it leaves 0 are the node's.
pub fn api(p: &BgpPeer, terms: PeerTerms, bfd_defaults: BfdTimers) -> Result<PeerSpec, String> {
    let addr: IpAddr = p
        .neighbor_address
        .parse()
        .map_err(|_| "neighbor_address is not an IP address".to_string())?;
    let mut pc = PeerConfig::new(addr, p.remote_as);
    pc.role = PeerRole::Api;
    pc.description = p.description.clone();
    set_timers(&mut pc, p.hold_time, p.keepalive);
    pc.source_address = (!p.source_address.is_empty())
        .then(|| p.source_address.parse())
        .transpose()
        .map_err(|_| "source_address is not an IP address".to_string())?;
    pc.ebgp_multihop = p.ebgp_multihop.min(255) as u8;
    pc.password = (!p.password.is_empty()).then(|| p.password.clone());
    let families: Vec<Family> = p
        .address_families
        .iter()
        .filter_map(|f| match AddressFamily::try_from(*f) {
            Ok(AddressFamily::Ipv4Unicast) => Some(Family::IPV4_UNICAST),
            Ok(AddressFamily::Ipv6Unicast) => Some(Family::IPV6_UNICAST),
            _ => None,
        })
        .collect();
    if !families.is_empty() {
        pc.families = families;
    }
    pc.max_prefix = terms.max_prefix;
    pc.max_prefix_warning_only = !terms.enforce_max_prefix;
    if !terms.import_routes {
        pc.import = PeerPolicy::None;
    }
    let bfd = p.bfd_enabled.then(|| {
        let timers = BfdTimers {
            min_rx_ms: p.bfd_min_rx_ms,
            min_tx_ms: p.bfd_min_tx_ms,
            detect_multiplier: p.bfd_detect_multiplier,
        };
        bfd_session(&pc, timers, bfd_defaults)
    });
    Ok(PeerSpec { bgp: pc, bfd })
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEFAULTS: BfdTimers = BfdTimers {
        min_rx_ms: 300,
        min_tx_ms: 300,
        detect_multiplier: 3,
    };

    #[test]
    fn a_mesh_node_s_routes_are_its_podcidr_and_what_nodes_may_originate() {
        let cfg = Config::parse(
            r#"{"node_name": "a", "node_ip": "10.0.1.10", "pod_cidr": "10.244.10.0/24",
                "owners": {"edge": {"token": "t", "allowed_prefixes": {"type": "host_only", "allowed_cidrs": ["10.96.0.0/12"]}}},
                "routing": {"control_plane_vip": "10.0.1.100/32", "node_mesh": {"enabled": true, "source": "static",
                "nodes": [{"name": "a", "ip": "10.0.1.10", "pod_cidr": "10.244.10.0/24"},
                          {"name": "b", "ip": "10.0.1.11", "pod_cidr": "10.244.11.0/24"},
                          {"name": "c", "ip": "10.0.1.12"}]}}}"#,
        )
        .unwrap();
        let peers = static_mesh(&cfg);
        let local = novanet_bgp::policy::LocalPrefixes {
            pod_cidrs: vec!["10.244.10.0/24".parse().unwrap()],
            accept_default_route: false,
        };
        let verdict = |p: &PeerSpec, prefix: &str| {
            let attrs = novanet_bgp::wire::PathAttributes::default();
            let a = novanet_bgp::policy::evaluate_import(&p.bgp.import, &local, &prefix.parse().unwrap(), &attrs);
            a.decision.verdict == novanet_bgp::policy::Verdict::Accept
        };
        let b = &peers[0];
        for ok in ["10.244.11.0/24", "10.244.11.128/25", "10.96.0.5/32", "10.0.1.100/32"] {
            assert!(verdict(b, ok), "{ok}");
        }
        for leak in [
            "10.244.12.0/24",
            "10.244.10.0/25",
            "0.0.0.0/1",
            "128.0.0.0/1",
            "10.96.0.0/24",
            "10.0.1.1/32",
            "10.244.0.0/16",
        ] {
            assert!(!verdict(b, leak), "{leak}");
        }
        // c's PodCIDR is not known: the default import only.
        assert_eq!(peers[1].bgp.import, PeerPolicy::Default);
        // What b may originate bounds what it may send, and closes past it.
        assert_eq!(
            (b.bgp.max_prefix, b.bgp.max_prefix_warning_only),
            (
                MESH_LIMIT_BASE + crate::config::owners::DEFAULT_MAX_INTENTS as u32,
                false
            )
        );
    }

    #[test]
    fn mesh_sessions_take_the_mesh_s_prefix_limit() {
        let text = r#"{"node_name": "a", "node_ip": "10.0.1.10", "routing": {"node_mesh": {"enabled": true, "source": "static",
            "max_prefix": 20, "nodes": [{"name": "a", "ip": "10.0.1.10"}, {"name": "b", "ip": "10.0.1.11"}]}}}"#;
        let cfg = Config::parse(text).unwrap();
        let peers = static_mesh(&cfg);
        assert_eq!(peers.len(), 1);
        assert_eq!(
            (peers[0].bgp.max_prefix, peers[0].bgp.max_prefix_warning_only),
            (20, false)
        );
        let unset = Config::parse(&text.replace(r#""max_prefix": 20, "#, "")).unwrap();
        let p = &static_mesh(&unset)[0].bgp;
        assert_eq!((p.max_prefix, p.max_prefix_warning_only), (DEFAULT_MAX_PREFIX, true));
    }

    fn terms(max_prefix: u32, enforce_max_prefix: bool, import_routes: bool) -> PeerTerms {
        PeerTerms {
            max_prefix,
            enforce_max_prefix,
            import_routes,
        }
    }

    #[test]
    fn an_api_peer_is_held_to_its_owner_s_terms() {
        let p = BgpPeer {
            neighbor_address: "10.0.0.1".into(),
            remote_as: 65000,
            max_prefix: 50,
            ..Default::default()
        };
        let warned = api(&p, terms(50, false, true), DEFAULTS).unwrap().bgp;
        assert_eq!((warned.max_prefix, warned.max_prefix_warning_only), (50, true));
        assert_eq!(warned.import, PeerPolicy::Default);
        let enforced = api(&p, terms(20, true, false), DEFAULTS).unwrap().bgp;
        assert_eq!((enforced.max_prefix, enforced.max_prefix_warning_only), (20, false));
        assert_eq!(enforced.import, PeerPolicy::None, "a peer to advertise to");
    }

    /// Every source's BFD sessions take the node's timers where they set
    /// none: ToRs, the mesh and API peers alike.
    #[test]
    fn every_source_takes_the_node_s_bfd_defaults() {
        let cfg = Config::parse(
            r#"{"node_name": "a", "node_ip": "10.0.1.10", "routing": {
                "bfd": {"enabled": true, "min_rx_ms": 120, "min_tx_ms": 110, "detect_multiplier": 4},
                "peers": [{"neighbor_address": "10.0.1.1", "remote_as": 65001, "bfd_enabled": true, "bfd_min_rx_ms": 50}],
                "node_mesh": {"enabled": true, "source": "static", "nodes": [{"name": "a", "ip": "10.0.1.10"}, {"name": "b", "ip": "10.0.1.11"}]}}}"#,
        )
        .unwrap();
        let defaults = BfdTimers::node_defaults(&cfg);
        assert_eq!(
            defaults,
            BfdTimers {
                min_rx_ms: 120,
                min_tx_ms: 110,
                detect_multiplier: 4
            }
        );
        let timers = |s: &PeerSpec| {
            let c = &s.bfd.as_ref().expect("a BFD session").config;
            (
                c.required_min_rx.as_millis(),
                c.desired_min_tx.as_millis(),
                c.detect_mult,
            )
        };
        let peers = from_config(&cfg);
        assert_eq!(
            timers(&peers[0]),
            (50, 110, 4),
            "a ToR's own rx, the node's tx and multiplier"
        );
        assert_eq!(timers(&peers[1]), (120, 110, 4), "a mesh peer: the node's");
        assert!(peers[1].bfd.as_ref().unwrap().key.multihop);
        let p = BgpPeer {
            neighbor_address: "10.0.0.9".into(),
            remote_as: 65009,
            bfd_enabled: true,
            bfd_min_tx_ms: 75,
            ..Default::default()
        };
        assert_eq!(
            timers(&api(&p, terms(1000, false, true), defaults).unwrap()),
            (120, 75, 4),
            "an API peer: the node's"
        );
        let standalone = standalone_bfd("10.0.0.8".parse().unwrap(), BfdTimers::default(), defaults);
        assert_eq!(standalone.config.required_min_rx.as_millis(), 120);
    }

    #[test]
    fn a_tor_s_port_is_the_one_it_is_dialled_on() {
        let cfg = Config::parse(
            r#"{"node_name": "a", "node_ip": "10.0.1.10", "routing": {
                "peers": [{"neighbor_address": "10.0.1.1", "remote_as": 65001, "port": 1179},
                          {"neighbor_address": "10.0.1.2", "remote_as": 65002}]}}"#,
        )
        .unwrap();
        let peers = from_config(&cfg);
        assert_eq!((peers[0].bgp.port, peers[1].bgp.port), (1179, 179));
    }
}
