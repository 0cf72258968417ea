//! The RouteControl gRPC service (`novaroute.v1`): the reference's
//! validation and status codes, token authentication, each owner's grants
//! (prefix policy, `capabilities`), cross-owner and cross-source
//! conflicts; successful mutations store the intent and trigger the
//! reconciler. Addresses are taken in their canonical form (an
//! IPv4-mapped IPv6 address is the IPv4 address).

// tonic::Status is the error type of every handler; helpers return it as is.
#![allow(clippy::result_large_err)]

use crate::control::events::{EventBus, SubscribeError};
use crate::control::intents::{BfdIntent, OspfIntent, PrefixIntent};
use crate::control::owners::Refusal;
use crate::control::{bfd_key, ospf_key, peer_key, prefix_key, shown, ApplyState, Control, IntentKey};
use crate::peers::spec::BfdTimers;
use ipnet::IpNet;
use novanet_proto::api::route_control_server::RouteControl;
use novanet_proto::api::*;
use std::net::{IpAddr, Ipv4Addr};
use std::pin::Pin;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

/// The service.
pub struct Service {
    control: Control,
}

fn invalid(m: impl Into<String>) -> Status {
    Status::invalid_argument(m)
}

fn refusal(r: Refusal) -> Status {
    match r {
        Refusal::Unauthenticated(m) => Status::unauthenticated(m),
        Refusal::PermissionDenied(m) => Status::permission_denied(m),
    }
}

fn require(owner: &str, token: &str) -> Result<(), Status> {
    if owner.is_empty() {
        return Err(invalid("owner is required"));
    }
    if token.is_empty() {
        return Err(invalid("token is required"));
    }
    Ok(())
}

/// An address in its one canonical form: `::ffff:10.0.0.1` is
/// `10.0.0.1`, so one neighbour cannot be two intents or two sessions.
fn parse_ip(field: &str, v: &str) -> Result<IpAddr, Status> {
    if v.is_empty() {
        return Err(invalid(format!("{field} is required")));
    }
    v.parse::<IpAddr>()
        .map(|a| a.to_canonical())
        .map_err(|_| invalid(format!("{field} {} is not an IP address", shown(v))))
}

/// A BFD interval of a request: 0 (the node's default) or within the
/// bounds every owner is held to.
fn bfd_interval(field: &str, ms: u32) -> Result<(), Status> {
    use crate::config::capabilities::{MAX_BFD_INTERVAL_MS, MIN_BFD_INTERVAL_MS};
    if ms != 0 && !(MIN_BFD_INTERVAL_MS..=MAX_BFD_INTERVAL_MS).contains(&ms) {
        return Err(invalid(format!(
            "{field} {ms} is outside {MIN_BFD_INTERVAL_MS}-{MAX_BFD_INTERVAL_MS} ms (0 takes the node's default)"
        )));
    }
    Ok(())
}

/// A pod's host end (`nv` and 11 hex digits, as the CNI names it): no
/// owner may put it into OSPF, which would let the pod form an adjacency.
fn is_pod_host_end(interface: &str) -> bool {
    interface.len() == 13 && interface.starts_with("nv") && interface[2..].bytes().all(|b| b.is_ascii_hexdigit())
}

/// The prefix and protocol of an Advertise/WithdrawPrefix request.
fn prefix_and_protocol(text: &str, protocol: i32) -> Result<(IpNet, Protocol), Status> {
    if text.is_empty() {
        return Err(invalid("prefix is required"));
    }
    let prefix: IpNet = text
        .parse()
        .map_err(|_| invalid(format!("prefix {} is not a CIDR", shown(text))))?;
    // One prefix has one spelling: 10.0.0.1/24 and 10.0.0.0/24 must not be
    // two intents that escape the conflict check and withdraw each other.
    if prefix != prefix.trunc() {
        return Err(invalid(format!(
            "prefix {} has host bits set: did you mean {}?",
            shown(text),
            prefix.trunc()
        )));
    }
    let protocol = Protocol::try_from(protocol).unwrap_or(Protocol::Unspecified);
    if protocol == Protocol::Unspecified {
        return Err(invalid("protocol is required (PROTOCOL_BGP or PROTOCOL_OSPF)"));
    }
    Ok((prefix, protocol))
}

fn protocol_name(p: i32) -> &'static str {
    match Protocol::try_from(p) {
        Ok(Protocol::Ospf) => "ospf",
        _ => "bgp",
    }
}

fn uptime(since_epoch: Option<u64>) -> String {
    let Some(t) = since_epoch else { return String::new() };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(t);
    let s = now.saturating_sub(t);
    format!("{}h{}m{}s", s / 3600, (s / 60) % 60, s % 60)
}

impl Service {
    pub fn new(control: Control) -> Self {
        Service { control }
    }

    fn events(&self) -> &EventBus {
        &self.control.events
    }

    fn mutable(&self) -> Result<(), Status> {
        if self.control.stopping.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(Status::unavailable("the agent is shutting down"));
        }
        Ok(())
    }

    /// Stores an intent: its previous apply state is dropped, the
    /// operation counted, the reconciler woken. `put` is told whether a new
    /// intent may be added (the owner is below its `max_intents`) and says
    /// whether it stored one; a replacement is always allowed.
    fn store(
        &self,
        owner: &str,
        key: IntentKey,
        put: impl FnOnce(&mut crate::control::intents::OwnerIntents, bool) -> bool,
    ) -> Result<(), Status> {
        let max = self.control.owners().max_intents(owner);
        let stored = {
            let mut intents = self.control.intents.lock().expect("intents");
            let o = intents.owner(owner);
            let may_add = o.len() < max;
            put(o, may_add)
        };
        if !stored {
            self.control.count_violation(owner, "too_many_intents");
            return Err(Status::resource_exhausted(format!(
                "owner {owner} holds {max} intents, its max_intents: withdraw some first"
            )));
        }
        self.control.applied.lock().expect("applied").remove(&key);
        self.control.count_intent(owner, key.kind(), "set");
        self.control.reconcile_soon();
        Ok(())
    }

    /// Removes an intent; false when the owner had no such intent.
    fn remove(
        &self,
        owner: &str,
        key: IntentKey,
        take: impl FnOnce(&mut crate::control::intents::OwnerIntents) -> bool,
    ) -> bool {
        if !take(self.control.intents.lock().expect("intents").owner(owner)) {
            return false;
        }
        self.control.applied.lock().expect("applied").remove(&key);
        self.control.count_intent(owner, key.kind(), "remove");
        self.control.reconcile_soon();
        true
    }

    /// Refuses an operation the owner's grants do not allow: counted,
    /// published as POLICY_VIOLATION (`operation`, `reason=capability`).
    fn granted(&self, owner: &str, operation: &str, check: Result<(), Refusal>) -> Result<(), Status> {
        check.map_err(|r| {
            self.control.count_violation(owner, "capability");
            let detail = match &r {
                Refusal::Unauthenticated(m) | Refusal::PermissionDenied(m) => m.clone(),
            };
            self.events().publish(
                EventType::PolicyViolation,
                owner,
                format!("{operation} refused: {detail}"),
                &[("operation", operation.into()), ("reason", "capability".into())],
            );
            refusal(r)
        })
    }

    /// Refuses a session at an address another holder's session uses.
    fn conflict(&self, owner: &str, operation: &str, address: IpAddr, message: String) -> Status {
        self.control.count_violation(owner, "address_conflict");
        self.events().publish(
            EventType::PolicyViolation,
            owner,
            format!("{operation} refused: {message}"),
            &[
                ("operation", operation.into()),
                ("reason", "address_conflict".into()),
                ("address", address.to_string()),
            ],
        );
        Status::already_exists(message)
    }

    /// Refuses OSPF on a pod's host end, whoever asks.
    fn conflict_interface(&self, owner: &str, interface: &str) -> Status {
        self.control.count_violation(owner, "pod_interface");
        self.events().publish(
            EventType::PolicyViolation,
            owner,
            format!("enable_ospf refused: {interface} is a pod's interface"),
            &[
                ("operation", "enable_ospf".into()),
                ("reason", "pod_interface".into()),
                ("interface", interface.into()),
            ],
        );
        Status::permission_denied(format!(
            "interface {interface} is a pod's host end: pods never join OSPF"
        ))
    }

    fn authenticate(&self, owner: &str, token: &str) -> Result<(), Status> {
        self.control.owners().authenticate(owner, token).map_err(|r| {
            self.control.count_violation(owner, "invalid_token");
            self.events().publish(
                EventType::PolicyViolation,
                owner,
                "authentication failed",
                &[("reason", "invalid_token".into())],
            );
            refusal(r)
        })
    }
}

type EventStream = Pin<Box<dyn Stream<Item = Result<RouteEvent, Status>> + Send>>;

#[tonic::async_trait]
impl RouteControl for Service {
    async fn register(&self, req: Request<RegisterRequest>) -> Result<Response<RegisterResponse>, Status> {
        let r = req.into_inner();
        require(&r.owner, &r.token)?;
        self.authenticate(&r.owner, &r.token)?;
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let session_id = format!("{}-{nanos}", r.owner);
        self.control
            .sessions
            .lock()
            .expect("sessions")
            .insert(r.owner.clone(), session_id.clone());
        let (prefixes, peers, any) = {
            let intents = self.control.intents.lock().expect("intents");
            match intents.owners.get(&r.owner) {
                Some(i) => (
                    i.prefixes.values().map(|p| p.text.clone()).collect(),
                    i.peers.keys().map(|a| a.to_string()).collect(),
                    !i.is_empty(),
                ),
                None => (Vec::new(), Vec::new(), false),
            }
        };
        if r.reassert_intents && any {
            self.control.reconcile_soon();
        }
        self.events().publish(
            EventType::OwnerRegistered,
            &r.owner,
            format!("owner {} registered", r.owner),
            &[("session_id", session_id.clone())],
        );
        Ok(Response::new(RegisterResponse {
            session_id,
            current_prefixes: prefixes,
            current_peers: peers,
        }))
    }

    async fn deregister(&self, req: Request<DeregisterRequest>) -> Result<Response<DeregisterResponse>, Status> {
        let r = req.into_inner();
        require(&r.owner, &r.token)?;
        self.authenticate(&r.owner, &r.token)?;
        if r.withdraw_all {
            self.control.intents.lock().expect("intents").owners.remove(&r.owner);
            self.control.reconcile_soon();
        }
        self.control.sessions.lock().expect("sessions").remove(&r.owner);
        self.events().publish(
            EventType::OwnerDeregistered,
            &r.owner,
            format!("owner {} deregistered (withdraw_all={})", r.owner, r.withdraw_all),
            &[("withdraw_all", r.withdraw_all.to_string())],
        );
        Ok(Response::new(DeregisterResponse {}))
    }

    async fn configure_bgp(&self, req: Request<ConfigureBgpRequest>) -> Result<Response<ConfigureBgpResponse>, Status> {
        let r = req.into_inner();
        require(&r.owner, &r.token)?;
        if r.local_as == 0 {
            return Err(invalid("local_as must be non-zero"));
        }
        if r.router_id.is_empty() {
            return Err(invalid("router_id is required"));
        }
        let id: Ipv4Addr = r
            .router_id
            .parse()
            .map_err(|_| invalid(format!("router_id {} is not an IPv4 address", shown(&r.router_id))))?;
        if id.is_multicast() || id.is_unspecified() {
            return Err(invalid("router_id must be a unicast IPv4 address"));
        }
        self.authenticate(&r.owner, &r.token)?;
        self.granted(
            &r.owner,
            "configure_bgp",
            self.control.owners().may_configure_bgp(&r.owner),
        )?;
        self.mutable()?;
        // Stored for the reconciler, which applies it (every session starts
        // over with the new settings; graceful-restart helpers keep
        // forwarding meanwhile).
        self.control
            .intents
            .lock()
            .expect("intents")
            .configure_bgp(r.local_as, id, &r.owner);
        self.control.reconcile_soon();
        let previous = {
            let mut bgp = self.control.bgp.lock().expect("bgp");
            std::mem::replace(&mut *bgp, (r.local_as, id.to_string()))
        };
        // Published for a change only: the same settings again are a no-op.
        if previous != (r.local_as, id.to_string()) {
            self.events().publish(
                EventType::BgpConfigChanged,
                &r.owner,
                format!("BGP configured: AS {} router id {}", r.local_as, r.router_id),
                &[
                    ("local_as", r.local_as.to_string()),
                    ("router_id", r.router_id.clone()),
                    ("previous_as", previous.0.to_string()),
                    ("previous_router_id", previous.1.clone()),
                ],
            );
        }
        Ok(Response::new(ConfigureBgpResponse {
            previous_as: previous.0,
            previous_router_id: previous.1,
        }))
    }

    async fn apply_peer(&self, req: Request<ApplyPeerRequest>) -> Result<Response<ApplyPeerResponse>, Status> {
        let r = req.into_inner();
        require(&r.owner, &r.token)?;
        let mut p = r.peer.ok_or_else(|| invalid("peer is required"))?;
        let addr = parse_ip("peer.neighbor_address", &p.neighbor_address)?;
        if matches!(addr, IpAddr::V6(v6) if v6.is_unicast_link_local()) {
            return Err(invalid(
                "peer.neighbor_address is link-local: it names no peer without its interface (a peer by interface is routing.peers[].interface in the configuration)",
            ));
        }
        if !p.source_address.is_empty() {
            let source = parse_ip("peer.source_address", &p.source_address)?;
            if let Some(problem) = crate::config::source_family_problem(addr, source) {
                return Err(invalid(format!("peer.source_address: {problem}")));
            }
        }
        if (p.keepalive == 0) != (p.hold_time == 0) {
            return Err(invalid("peer.keepalive and peer.hold_time must be both set or both 0"));
        }
        if p.hold_time != 0 && p.hold_time < 3 {
            return Err(invalid("peer.hold_time must be at least 3"));
        }
        if p.hold_time != 0 && p.hold_time < 3 * p.keepalive {
            return Err(invalid("peer.hold_time must be at least 3 x keepalive (RFC 4271)"));
        }
        if p.remote_as == 0 {
            return Err(invalid("peer.remote_as must be non-zero"));
        }
        if p.bfd_enabled {
            bfd_interval("peer.bfd_min_rx_ms", p.bfd_min_rx_ms)?;
            bfd_interval("peer.bfd_min_tx_ms", p.bfd_min_tx_ms)?;
            if p.bfd_detect_multiplier > 255 {
                return Err(invalid("peer.bfd_detect_multiplier must be 255 at most"));
            }
        }
        self.authenticate(&r.owner, &r.token)?;
        let terms = self
            .control
            .owners()
            .peer_terms(&r.owner, addr, p.remote_as, p.max_prefix);
        self.granted(&r.owner, "apply_peer", terms.map(|_| ()))?;
        self.mutable()?;
        p.neighbor_address = addr.to_string();
        if p.max_prefix == 0 {
            p.max_prefix = 1000;
        }
        // BFD timers left 0 are the node's defaults (routing.bfd, 300 ms x 3
        // unless configured), taken when the session is built
        // (crate::peers::spec), so a reload's new defaults apply to them.
        if p.address_families.is_empty() {
            p.address_families = vec![AddressFamily::Ipv4Unicast as i32];
        }
        self.store(&r.owner, peer_key(&addr), |i, may_add| {
            (may_add || i.peers.contains_key(&addr)) && {
                i.peers.insert(addr, p);
                true
            }
        })?;
        Ok(Response::new(ApplyPeerResponse {}))
    }

    async fn remove_peer(&self, req: Request<RemovePeerRequest>) -> Result<Response<RemovePeerResponse>, Status> {
        let r = req.into_inner();
        require(&r.owner, &r.token)?;
        let addr = parse_ip("neighbor_address", &r.neighbor_address)?;
        self.authenticate(&r.owner, &r.token)?;
        self.mutable()?;
        if !self.remove(&r.owner, peer_key(&addr), |i| i.peers.remove(&addr).is_some()) {
            return Err(Status::not_found(format!("owner {} has no peer {addr}", r.owner)));
        }
        Ok(Response::new(RemovePeerResponse {}))
    }

    async fn advertise_prefix(
        &self,
        req: Request<AdvertisePrefixRequest>,
    ) -> Result<Response<AdvertisePrefixResponse>, Status> {
        let r = req.into_inner();
        require(&r.owner, &r.token)?;
        let (prefix, protocol) = prefix_and_protocol(&r.prefix, r.protocol)?;
        self.authenticate(&r.owner, &r.token)?;
        self.mutable()?;
        let violation = |reason: &str, extra: Vec<(&str, String)>| {
            self.control.count_violation(&r.owner, reason);
            let mut md = vec![
                ("prefix", r.prefix.clone()),
                ("protocol", protocol.as_str_name().to_string()),
                ("reason", reason.to_string()),
            ];
            md.extend(extra);
            self.events().publish(
                EventType::PolicyViolation,
                &r.owner,
                format!("prefix {} refused: {reason}", r.prefix),
                &md,
            );
        };
        if let Err(e) = self.control.owners().check_prefix(&r.owner, &prefix) {
            violation("prefix_policy", vec![]);
            return Err(refusal(e));
        }
        let holder = self
            .control
            .intents
            .lock()
            .expect("intents")
            .prefix_holder(protocol, &prefix, &r.owner);
        let overrides = self.control.owners().overrides_prefixes(&r.owner);
        if let Some(existing) = holder {
            if !overrides {
                violation("prefix_conflict", vec![("existing_owner", existing.clone())]);
                return Err(Status::already_exists(format!(
                    "prefix {} ({}) is already advertised by owner {existing}",
                    r.prefix,
                    protocol_name(r.protocol)
                )));
            }
        }
        if let Some(a) = &r.attributes {
            let has_bgp = a.local_preference != 0 || !a.communities.is_empty() || a.med != 0 || !a.next_hop.is_empty();
            if protocol == Protocol::Ospf && has_bgp {
                return Err(invalid("BGP attributes cannot be set on an OSPF prefix"));
            }
            if !a.next_hop.is_empty() {
                parse_ip("attributes.next_hop", &a.next_hop)?;
                return Err(invalid(
                    "attributes.next_hop is not supported: the node advertises its own prefixes with itself as next hop",
                ));
            }
            for c in &a.communities {
                if novanet_bgp::policy::parse_community(c).is_none() {
                    return Err(invalid(format!(
                        "community {} is not ASN:VALUE or a well-known name",
                        shown(c)
                    )));
                }
            }
        }
        let intent = PrefixIntent {
            prefix,
            text: r.prefix.clone(),
            protocol,
            attributes: r.attributes.clone(),
            overrides,
        };
        self.store(&r.owner, prefix_key(protocol, &prefix), |i, may_add| {
            let k = (protocol, prefix);
            (may_add || i.prefixes.contains_key(&k)) && {
                i.prefixes.insert(k, intent);
                true
            }
        })?;
        Ok(Response::new(AdvertisePrefixResponse {}))
    }

    async fn withdraw_prefix(
        &self,
        req: Request<WithdrawPrefixRequest>,
    ) -> Result<Response<WithdrawPrefixResponse>, Status> {
        let r = req.into_inner();
        require(&r.owner, &r.token)?;
        let (prefix, protocol) = prefix_and_protocol(&r.prefix, r.protocol)?;
        self.authenticate(&r.owner, &r.token)?;
        self.mutable()?;
        let key = prefix_key(protocol, &prefix);
        if !self.remove(&r.owner, key, |i| i.prefixes.remove(&(protocol, prefix)).is_some()) {
            return Err(Status::not_found(format!(
                "owner {} does not advertise {}",
                r.owner, r.prefix
            )));
        }
        Ok(Response::new(WithdrawPrefixResponse {}))
    }

    async fn enable_bfd(&self, req: Request<EnableBfdRequest>) -> Result<Response<EnableBfdResponse>, Status> {
        let r = req.into_inner();
        require(&r.owner, &r.token)?;
        let addr = parse_ip("peer_address", &r.peer_address)?;
        if !r.interface_name.is_empty() {
            return Err(invalid(
                "interface_name is not supported: BFD sessions are not bound to an interface (single-hop sessions require TTL 255 instead)",
            ));
        }
        bfd_interval("min_rx_ms", r.min_rx_ms)?;
        bfd_interval("min_tx_ms", r.min_tx_ms)?;
        if r.detect_multiplier > 255 {
            return Err(invalid("detect_multiplier must be 255 at most"));
        }
        self.authenticate(&r.owner, &r.token)?;
        let defaults = self.control.bfd_defaults();
        let fastest = [r.min_rx_ms, r.min_tx_ms]
            .into_iter()
            .zip([defaults.min_rx_ms, defaults.min_tx_ms])
            .map(|(asked, default)| if asked == 0 { default } else { asked })
            .min();
        self.granted(
            &r.owner,
            "enable_bfd",
            self.control.owners().may_run_bfd(&r.owner, addr, fastest),
        )?;
        self.mutable()?;
        // Another owner's session is that owner's. (A BGP peer's session
        // at the address keeps the peer's timers: the intent is stored and
        // shows as failed until the peer goes, see the reconciler.)
        let holder = {
            let intents = self.control.intents.lock().expect("intents");
            intents
                .owners
                .iter()
                .find(|(o, i)| o.as_str() != r.owner && i.bfd.contains_key(&addr))
                .map(|(o, _)| o.clone())
        };
        if let Some(other) = holder {
            return Err(self.conflict(
                &r.owner,
                "enable_bfd",
                addr,
                format!("{addr} has a BFD session of owner {other}"),
            ));
        }
        // Timers left 0 are the node's defaults, as for a peer's session.
        let intent = BfdIntent {
            peer: addr,
            min_rx_ms: r.min_rx_ms,
            min_tx_ms: r.min_tx_ms,
            detect_multiplier: r.detect_multiplier,
            interface: r.interface_name.clone(),
        };
        self.store(&r.owner, bfd_key(&addr), |i, may_add| {
            (may_add || i.bfd.contains_key(&addr)) && {
                i.bfd.insert(addr, intent);
                true
            }
        })?;
        Ok(Response::new(EnableBfdResponse {}))
    }

    async fn disable_bfd(&self, req: Request<DisableBfdRequest>) -> Result<Response<DisableBfdResponse>, Status> {
        let r = req.into_inner();
        require(&r.owner, &r.token)?;
        let addr = parse_ip("peer_address", &r.peer_address)?;
        self.authenticate(&r.owner, &r.token)?;
        self.mutable()?;
        if !self.remove(&r.owner, bfd_key(&addr), |i| i.bfd.remove(&addr).is_some()) {
            return Err(Status::not_found(format!(
                "owner {} has no BFD session with {addr}",
                r.owner
            )));
        }
        Ok(Response::new(DisableBfdResponse {}))
    }

    async fn enable_ospf(&self, req: Request<EnableOspfRequest>) -> Result<Response<EnableOspfResponse>, Status> {
        let r = req.into_inner();
        require(&r.owner, &r.token)?;
        if r.interface_name.is_empty() {
            return Err(invalid("interface_name is required"));
        }
        if r.area_id.is_empty() {
            return Err(invalid("area_id is required"));
        }
        self.authenticate(&r.owner, &r.token)?;
        // Every value that may reach vtysh, checked as the OSPF bridge
        // checks it; a line break or control character is an attempt to
        // add a command of one's own.
        for (field, value) in [("interface_name", &r.interface_name), ("area_id", &r.area_id)] {
            if value.chars().any(|c| c.is_control()) {
                self.control.count_violation(&r.owner, "command_injection");
                self.events().publish(
                    EventType::PolicyViolation,
                    &r.owner,
                    format!("EnableOSPF refused: {field} holds a line break or control character"),
                    &[
                        ("operation", "enable_ospf".into()),
                        ("reason", "command_injection".into()),
                        ("field", field.into()),
                        ("value", shown(value)),
                    ],
                );
                return Err(invalid(format!(
                    "{field} {} holds a line break or control character",
                    shown(value)
                )));
            }
        }
        if is_pod_host_end(&r.interface_name) {
            return Err(self.conflict_interface(&r.owner, &r.interface_name));
        }
        self.granted(
            &r.owner,
            "enable_ospf",
            self.control.owners().may_enable_ospf(&r.owner, &r.interface_name),
        )?;
        let request = novanet_ospf_bridge::command::InterfaceRequest {
            name: &r.interface_name,
            area: &r.area_id,
            passive: r.passive,
            cost: r.cost,
            hello: r.hello_interval,
            dead: r.dead_interval,
            ipv6: false,
        }
        .with_defaults();
        novanet_ospf_bridge::command::Interface::new(&request).map_err(|e| invalid(e.to_string()))?;
        let intent = OspfIntent {
            interface: r.interface_name.clone(),
            area: r.area_id.clone(),
            passive: request.passive,
            cost: request.cost,
            hello: request.hello,
            dead: request.dead,
        };
        self.mutable()?;
        let iface = r.interface_name.clone();
        let holder = {
            let intents = self.control.intents.lock().expect("intents");
            intents
                .owners
                .iter()
                .find(|(o, i)| o.as_str() != r.owner && i.ospf.contains_key(&iface))
                .map(|(o, _)| o.clone())
        };
        if let Some(other) = holder {
            return Err(Status::already_exists(format!(
                "interface {iface} is in OSPF for owner {other}"
            )));
        }
        self.store(&r.owner, ospf_key(&iface), |i, may_add| {
            (may_add || i.ospf.contains_key(&iface)) && {
                i.ospf.insert(iface.clone(), intent);
                true
            }
        })?;
        Ok(Response::new(EnableOspfResponse {}))
    }

    async fn disable_ospf(&self, req: Request<DisableOspfRequest>) -> Result<Response<DisableOspfResponse>, Status> {
        let r = req.into_inner();
        require(&r.owner, &r.token)?;
        if r.interface_name.is_empty() {
            return Err(invalid("interface_name is required"));
        }
        self.authenticate(&r.owner, &r.token)?;
        self.mutable()?;
        if !self.remove(&r.owner, ospf_key(&r.interface_name), |i| {
            i.ospf.remove(&r.interface_name).is_some()
        }) {
            return Err(Status::not_found(format!(
                "owner {} has no OSPF interface {}",
                r.owner, r.interface_name
            )));
        }
        Ok(Response::new(DisableOspfResponse {}))
    }

    async fn get_status(&self, req: Request<GetStatusRequest>) -> Result<Response<GetStatusResponse>, Status> {
        let filter = req.into_inner().owner_filter;
        let intents = self.control.intents.lock().expect("intents").clone();
        let live = self.control.speaker.peers();
        let bfd = self.control.bfd.sessions().await;
        let bfd_state = |addr: &IpAddr| {
            bfd.iter()
                .find(|s| s.peer == *addr)
                .map(|s| s.state.name().to_ascii_lowercase())
        };
        let wanted = |owner: &str| filter.is_empty() || filter == owner;
        let ospf = self.control.ospf.as_ref().map(|o| o.status());
        let mut resp = GetStatusResponse {
            frr_status: Some(match &ospf {
                Some(o) => FrrStatus {
                    version: if o.version.is_empty() {
                        "unknown".into()
                    } else {
                        o.version.clone()
                    },
                    connected: o.connected,
                    uptime: if o.connected {
                        uptime(o.connected_since)
                    } else {
                        String::new()
                    },
                },
                None => FrrStatus {
                    version: "none (routing.protocol is bgp: no ospfd sidecar)".into(),
                    connected: false,
                    uptime: String::new(),
                },
            }),
            ..Default::default()
        };
        let bfd_defaults = self.control.bfd_defaults();
        for (owner, i) in intents.owners.iter().filter(|(o, _)| wanted(o)) {
            for (addr, p) in &i.peers {
                let l = live.iter().find(|s| s.neighbor_address == *addr);
                // A session at the address is this intent's only once the
                // peer pipeline has applied it: before, or when another
                // source holds the address, it is someone else's.
                let ours = matches!(
                    self.control
                        .peers
                        .outcomes
                        .borrow()
                        .of(crate::peers::Source::Api, *addr),
                    Some(crate::peers::Outcome::Applied)
                );
                let l = l.filter(|_| ours);
                let state = match (l, self.control.apply_state(&peer_key(addr))) {
                    (Some(s), _) => s.state.clone(),
                    (None, ApplyState::Failed(e)) => format!("failed: {e}"),
                    (None, _) => "configured".into(),
                };
                resp.peers.push(PeerStatus {
                    neighbor_address: addr.to_string(),
                    remote_as: p.remote_as,
                    state,
                    owner: owner.clone(),
                    prefixes_received: l.map(|s| s.prefixes_received as u32).unwrap_or(0),
                    prefixes_sent: l.map(|s| s.prefixes_sent as u32).unwrap_or(0),
                    uptime: uptime(l.and_then(|s| s.established_at)),
                    bfd_enabled: p.bfd_enabled,
                    bfd_status: if p.bfd_enabled {
                        bfd_state(addr).unwrap_or_else(|| "not found".into())
                    } else {
                        "disabled".into()
                    },
                    description: p.description.clone(),
                });
                if p.bfd_enabled && !i.bfd.contains_key(addr) {
                    let timers = BfdTimers {
                        min_rx_ms: p.bfd_min_rx_ms,
                        min_tx_ms: p.bfd_min_tx_ms,
                        detect_multiplier: p.bfd_detect_multiplier,
                    }
                    .or(bfd_defaults);
                    resp.bfd_sessions.push(BfdSessionStatus {
                        peer_address: addr.to_string(),
                        state: bfd_state(addr).unwrap_or_else(|| "configured".into()),
                        owner: owner.clone(),
                        min_rx_ms: timers.min_rx_ms,
                        min_tx_ms: timers.min_tx_ms,
                        detect_multiplier: timers.detect_multiplier,
                        uptime: String::new(),
                    });
                }
            }
            for ((proto, prefix), p) in &i.prefixes {
                let state = match self.control.apply_state(&prefix_key(*proto, prefix)) {
                    ApplyState::Applied => "advertised".to_string(),
                    other => other.describe(),
                };
                resp.prefixes.push(PrefixStatus {
                    prefix: p.text.clone(),
                    protocol: *proto as i32,
                    owner: owner.clone(),
                    state,
                });
            }
            for (addr, b) in &i.bfd {
                let state = match (bfd_state(addr), self.control.apply_state(&bfd_key(addr))) {
                    (_, ApplyState::Failed(e)) => format!("failed: {e}"),
                    (Some(s), _) => s,
                    (None, _) => "configured".into(),
                };
                let timers = BfdTimers {
                    min_rx_ms: b.min_rx_ms,
                    min_tx_ms: b.min_tx_ms,
                    detect_multiplier: b.detect_multiplier,
                }
                .or(bfd_defaults);
                resp.bfd_sessions.push(BfdSessionStatus {
                    peer_address: addr.to_string(),
                    state,
                    owner: owner.clone(),
                    min_rx_ms: timers.min_rx_ms,
                    min_tx_ms: timers.min_tx_ms,
                    detect_multiplier: timers.detect_multiplier,
                    uptime: String::new(),
                });
            }
            for (iface, o) in &i.ospf {
                // ospfd's view of the interface (OSPFv2) once it runs.
                let live = ospf
                    .iter()
                    .flat_map(|s| &s.interfaces)
                    .find(|l| l.interface_name == *iface && l.version == "ospfv2" && l.owner == *owner);
                let state = match (self.control.apply_state(&ospf_key(iface)), live) {
                    (ApplyState::Applied, Some(l)) => l.state.clone(),
                    (other, _) => other.describe(),
                };
                resp.ospf_interfaces.push(OspfInterfaceStatus {
                    interface_name: iface.clone(),
                    area_id: o.area.clone(),
                    state,
                    owner: owner.clone(),
                    neighbor_count: live.map(|l| l.neighbors).unwrap_or(0),
                    cost: o.cost,
                });
            }
        }
        // OSPF interfaces of the configuration and the injection interface.
        if wanted(crate::ospf::desired::CONFIG_OWNER) {
            for l in ospf.iter().flat_map(|s| &s.interfaces) {
                if l.owner == crate::ospf::desired::CONFIG_OWNER && l.version == "ospfv2" {
                    resp.ospf_interfaces.push(OspfInterfaceStatus {
                        interface_name: l.interface_name.clone(),
                        area_id: l.area_id.clone(),
                        state: l.state.clone(),
                        owner: l.owner.clone(),
                        neighbor_count: l.neighbors,
                        cost: l.cost,
                    });
                }
            }
        }
        // Peers from the configuration file (ToRs, node mesh).
        if wanted("_config") {
            for s in live.iter().filter(|s| s.role != novanet_bgp::speaker::PeerRole::Api) {
                resp.peers.push(PeerStatus {
                    neighbor_address: s.neighbor_address.to_string(),
                    remote_as: s.remote_as,
                    state: s.state.clone(),
                    owner: "_config".into(),
                    prefixes_received: s.prefixes_received as u32,
                    prefixes_sent: s.prefixes_sent as u32,
                    uptime: uptime(s.established_at),
                    bfd_enabled: bfd_state(&s.neighbor_address).is_some(),
                    bfd_status: bfd_state(&s.neighbor_address).unwrap_or_else(|| "disabled".into()),
                    description: s.description.clone(),
                });
            }
        }
        Ok(Response::new(resp))
    }

    type StreamEventsStream = EventStream;

    async fn stream_events(&self, req: Request<StreamEventsRequest>) -> Result<Response<EventStream>, Status> {
        let r = req.into_inner();
        let rx = self
            .events()
            .subscribe(&r.owner_filter, &r.event_types)
            .map_err(|e| match e {
                SubscribeError::TooMany => Status::resource_exhausted(e.to_string()),
                SubscribeError::UnknownType(_) => invalid(e.to_string()),
            })?;
        let stream = tokio_stream::wrappers::ReceiverStream::new(rx);
        let stream = tokio_stream::StreamExt::map(stream, Ok);
        Ok(Response::new(Box::pin(stream)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prefix_with_host_bits_is_refused_with_its_network() {
        let e = prefix_and_protocol("10.0.0.1/24", Protocol::Bgp as i32).unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
        assert!(e.message().contains("did you mean 10.0.0.0/24"), "{}", e.message());
        assert!(prefix_and_protocol("fd00::1/64", Protocol::Bgp as i32).is_err());
        assert_eq!(
            prefix_and_protocol("10.0.0.0/24", Protocol::Bgp as i32).unwrap().0,
            "10.0.0.0/24".parse::<IpNet>().unwrap()
        );
        assert!(prefix_and_protocol("10.0.0.1/32", Protocol::Bgp as i32).is_ok());
    }

    #[test]
    fn an_ipv4_mapped_address_is_the_ipv4_address() {
        let v4: IpAddr = "10.0.0.1".parse().unwrap();
        assert_eq!(parse_ip("peer_address", "::ffff:10.0.0.1").unwrap(), v4);
        assert_eq!(parse_ip("peer_address", "::ffff:a00:1").unwrap(), v4);
        assert!(parse_ip("peer_address", "fd00::1").unwrap().is_ipv6());
    }

    #[test]
    fn pods_host_ends_are_told_apart_from_other_interfaces() {
        assert!(is_pod_host_end("nv0123456789a"));
        for other in [
            "nvme0",
            "nv0123456789",
            "nv0123456789ag",
            "eth0",
            "bond0",
            "nt0123456789a",
        ] {
            assert!(!is_pod_host_end(other), "{other}");
        }
    }

    #[test]
    fn bfd_intervals_are_bounded() {
        assert!(bfd_interval("min_rx_ms", 0).is_ok());
        assert!(bfd_interval("min_rx_ms", 10).is_ok());
        let e = bfd_interval("min_rx_ms", 1).unwrap_err();
        assert!(e.message().starts_with("min_rx_ms 1 is outside"), "{}", e.message());
        assert!(bfd_interval("min_tx_ms", 60_001).is_err());
    }
}
