//! Prometheus metrics on `metrics_address` (`/metrics`): the
//! `novanet_routing_*` names of the reference plus per-session BGP, BFD and
//! FIB metrics. Values are read from the live state at scrape time, so no
//! hot path carries counters for them.

use crate::control::Control;
use novanet_bfd::packet::State as BfdState;
use novanet_fib::FibStatus;
use novanet_proto::api::{EventType, Protocol};
use prometheus::{Encoder, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder};
use std::collections::BTreeMap;

fn gauge_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let g = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
    r.register(Box::new(g.clone())).expect("unique metric");
    g
}

fn counter_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
    r.register(Box::new(c.clone())).expect("unique metric");
    c
}

/// Renders every metric in the text exposition format.
pub async fn render(
    control: &Control,
    fib: Option<FibStatus>,
    policy: Option<novanet_ebpf::datapath::Counters>,
) -> String {
    let r = Registry::new();
    // Intents and owners.
    let peers = gauge_vec(
        &r,
        "novanet_routing_active_peers",
        "BGP peer intents per owner",
        &["owner"],
    );
    let prefixes = gauge_vec(
        &r,
        "novanet_routing_active_prefixes",
        "Prefix intents per owner and protocol",
        &["owner", "protocol"],
    );
    let bfd_intents = gauge_vec(
        &r,
        "novanet_routing_active_bfd_sessions",
        "BFD session intents per owner",
        &["owner"],
    );
    let ospf = gauge_vec(
        &r,
        "novanet_routing_active_ospf_interfaces",
        "OSPF interface intents per owner",
        &["owner"],
    );
    {
        let intents = control.intents.lock().expect("intents");
        for (owner, i) in &intents.owners {
            peers.with_label_values(&[owner]).set(i.peers.len() as i64);
            let bgp = i.prefixes.keys().filter(|(p, _)| *p == Protocol::Bgp).count();
            let ospf_n = i.prefixes.len() - bgp;
            prefixes.with_label_values(&[owner, "bgp"]).set(bgp as i64);
            prefixes.with_label_values(&[owner, "ospf"]).set(ospf_n as i64);
            prefixes.with_label_values(&[owner, "all"]).set(i.prefixes.len() as i64);
            bfd_intents.with_label_values(&[owner]).set(i.bfd.len() as i64);
            ospf.with_label_values(&[owner]).set(i.ospf.len() as i64);
        }
    }
    let owners =
        IntGauge::new("novanet_routing_registered_owners", "Owners with a registered session").expect("metric");
    owners.set(control.sessions.lock().expect("sessions").len() as i64);
    r.register(Box::new(owners)).expect("unique metric");
    let failed = gauge_vec(
        &r,
        "novanet_routing_intents_failed",
        "Intents that could not be applied",
        &["type"],
    );
    let mut by_type: BTreeMap<&'static str, i64> = BTreeMap::new();
    for (key, state) in control.applied.lock().expect("applied").iter() {
        if matches!(state, crate::control::ApplyState::Failed(_)) {
            *by_type.entry(key.kind()).or_default() += 1;
        }
    }
    for (t, n) in by_type {
        failed.with_label_values(&[t]).set(n);
    }
    let collisions = IntGauge::new(
        "novanet_routing_asn_collisions",
        "Groups of mesh nodes sharing an AS number",
    )
    .expect("metric");
    collisions.set(control.asn_collisions.lock().expect("collisions").len() as i64);
    r.register(Box::new(collisions)).expect("unique metric");
    let ops = counter_vec(
        &r,
        "novanet_routing_intents_total",
        "Intent operations",
        &["owner", "type", "operation"],
    );
    for ((owner, kind, op), n) in control.metrics.intent_ops.lock().expect("intent counters").iter() {
        ops.with_label_values(&[owner, kind, op]).inc_by(*n);
    }
    let violations = counter_vec(
        &r,
        "novanet_routing_policy_violations_total",
        "Requests refused",
        &["owner", "reason"],
    );
    for ((owner, reason), n) in control.metrics.violations.lock().expect("violation counters").iter() {
        violations.with_label_values(&[owner, reason]).inc_by(*n);
    }
    r.register(Box::new(control.metrics.reconcile_seconds.clone()))
        .expect("unique metric");
    r.register(Box::new(control.metrics.grpc_seconds.clone()))
        .expect("unique metric");
    // Events.
    let events = counter_vec(&r, "novanet_routing_events_total", "Events published", &["type"]);
    for (t, n) in control.events.published() {
        let name = EventType::try_from(t)
            .map(|e| e.as_str_name())
            .unwrap_or("EVENT_TYPE_UNSPECIFIED");
        events.with_label_values(&[name]).inc_by(n);
    }
    let dropped = prometheus::IntCounter::new(
        "novanet_routing_events_dropped_total",
        "Events dropped for slow subscribers",
    )
    .expect("metric");
    dropped.inc_by(control.events.dropped());
    r.register(Box::new(dropped)).expect("unique metric");
    // BGP sessions.
    let up = gauge_vec(
        &r,
        "novanet_bgp_session_up",
        "1 when the session is Established",
        &["peer", "peer_asn", "local_asn", "afi_safi"],
    );
    let received = gauge_vec(
        &r,
        "novanet_bgp_routes_received",
        "Routes accepted from the peer",
        &["peer"],
    );
    let advertised = gauge_vec(
        &r,
        "novanet_bgp_routes_advertised",
        "Routes advertised to the peer",
        &["peer"],
    );
    let upd_in = counter_vec(
        &r,
        "novanet_bgp_updates_received_total",
        "UPDATE messages received",
        &["peer"],
    );
    let upd_out = counter_vec(&r, "novanet_bgp_updates_sent_total", "UPDATE messages sent", &["peer"]);
    let transitions = counter_vec(
        &r,
        "novanet_bgp_established_transitions_total",
        "Times the session reached Established",
        &["peer"],
    );
    let active = IntGauge::new("novanet_routing_active_sessions", "Established BGP sessions").expect("metric");
    let mut n_up = 0;
    for p in control.speaker.peers() {
        let peer = p.neighbor_address.to_string();
        let is_up = (p.state == "Established") as i64;
        n_up += is_up;
        let families = if p.families.is_empty() {
            "none".to_string()
        } else {
            p.families.join(",")
        };
        up.with_label_values(&[&peer, &p.remote_as.to_string(), &p.local_as.to_string(), &families])
            .set(is_up);
        received.with_label_values(&[&peer]).set(p.prefixes_received as i64);
        advertised.with_label_values(&[&peer]).set(p.prefixes_sent as i64);
        upd_in.with_label_values(&[&peer]).inc_by(p.updates_received);
        upd_out.with_label_values(&[&peer]).inc_by(p.updates_sent);
        transitions
            .with_label_values(&[&peer])
            .inc_by(p.established_transitions);
    }
    active.set(n_up);
    r.register(Box::new(active)).expect("unique metric");
    // BFD.
    let bfd = gauge_vec(
        &r,
        "novanet_bfd_session_up",
        "1 when the BFD session is Up",
        &["peer", "multihop"],
    );
    for s in control.bfd.sessions().await {
        bfd.with_label_values(&[&s.peer.to_string(), &s.multihop.to_string()])
            .set((s.state == BfdState::Up) as i64);
    }
    let realtime = IntGauge::new(
        "novanet_bfd_realtime",
        "1 when the BFD thread runs under real-time scheduling (CAP_SYS_NICE)",
    )
    .expect("metric");
    realtime.set(control.bfd.realtime() as i64);
    r.register(Box::new(realtime)).expect("unique metric");
    let drops = prometheus::IntCounterVec::new(
        prometheus::Opts::new(
            "novanet_bfd_packets_dropped_total",
            "BFD packets dropped as forged: single-hop ones on an interface with no link to their source (off_link), ones failing authentication, ones from an address with no session (unknown_source, dropped as read), ones below their session's TTL floor (ttl)",
        ),
        &["reason"],
    )
    .expect("metric");
    let d = control.bfd.drops();
    drops.with_label_values(&["off_link"]).inc_by(d.off_link);
    drops.with_label_values(&["authentication"]).inc_by(d.authentication);
    drops.with_label_values(&["unknown_source"]).inc_by(d.unknown_source);
    drops.with_label_values(&["ttl"]).inc_by(d.ttl);
    r.register(Box::new(drops)).expect("unique metric");
    // FIB.
    if let Some(f) = fib {
        let g = gauge_vec(&r, "novanet_fib_routes", "Kernel routes of this agent", &["state"]);
        g.with_label_values(&["installed"]).set(f.installed as i64);
        g.with_label_values(&["desired"]).set(f.desired as i64);
        g.with_label_values(&["stale"]).set(f.stale as i64);
        g.with_label_values(&["blocked"]).set(f.blocked.len() as i64);
        let failed =
            prometheus::IntCounter::new("novanet_fib_failed_operations_total", "Kernel route operations refused")
                .expect("metric");
        failed.inc_by(f.failed_operations);
        r.register(Box::new(failed)).expect("unique metric");
    }
    // The OSPF mode.
    if let Some(o) = control.ospf.as_ref().map(|o| o.status()) {
        let connected =
            IntGauge::new("novanet_ospf_sidecar_connected", "1 when the ospfd sidecar answers").expect("metric");
        connected.set(o.connected as i64);
        r.register(Box::new(connected)).expect("unique metric");
        let neighbors = gauge_vec(
            &r,
            "novanet_ospf_neighbors",
            "OSPF neighbors by interface and adjacency state",
            &["interface", "state"],
        );
        for i in &o.interfaces {
            // Every OSPF interface shows, with 0 Full when it has none.
            neighbors.with_label_values(&[&i.interface_name, "Full"]).add(0);
        }
        for n in &o.neighbors {
            neighbors.with_label_values(&[&n.interface_name, &n.state]).inc();
        }
        let injected = IntGauge::new("novanet_ospf_injected_prefixes", "Prefixes injected into OSPF").expect("metric");
        injected.set(o.injected.len() as i64);
        r.register(Box::new(injected)).expect("unique metric");
    }
    // Identity policy.
    if let Some(c) = policy {
        let v = counter_vec(
            &r,
            "novanet_policy_verdicts_total",
            "Packets the TC programs allowed or denied, by whose policy applied",
            &["verdict", "direction"],
        );
        v.with_label_values(&["allow", "ingress"]).inc_by(c.ingress_allow);
        v.with_label_values(&["deny", "ingress"]).inc_by(c.ingress_deny);
        v.with_label_values(&["allow", "egress"]).inc_by(c.egress_allow);
        v.with_label_values(&["deny", "egress"]).inc_by(c.egress_deny);
        let lost = prometheus::IntCounter::new(
            "novanet_policy_events_lost_total",
            "Flow and drop events lost because the ring buffer was full",
        )
        .expect("metric");
        lost.inc_by(c.events_lost);
        r.register(Box::new(lost)).expect("unique metric");
        let spoofed = prometheus::IntCounter::new(
            "novanet_policy_spoofed_packets_total",
            "Packets pods sent from an address not their own, dropped at their host end",
        )
        .expect("metric");
        spoofed.inc_by(c.spoofed);
        r.register(Box::new(spoofed)).expect("unique metric");
    }
    let mut out = Vec::new();
    TextEncoder::new().encode(&r.gather(), &mut out).expect("text encoding");
    String::from_utf8(out).unwrap_or_default()
}
