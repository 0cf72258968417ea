//! Kubernetes NetworkPolicy (networking.k8s.io/v1) compiled into what the
//! TC programs look up, with the upstream semantics:
//!
//! - a pod no policy selects is open in that direction; a policy selecting
//!   it for Ingress (Egress) isolates it, and it then accepts only what some
//!   policy's rules allow (policies add up, none subtracts);
//! - `policyTypes` absent: Ingress, plus Egress when `egress` is given;
//! - a rule without peers allows every peer, without ports every port and
//!   protocol; peers are a podSelector (the policy's namespace), a
//!   namespaceSelector (every pod of those namespaces), both (those pods of
//!   those namespaces), or an ipBlock with its excepts; ports are a
//!   protocol (TCP when absent) with a port, a range (`endPort`) or none
//!   (every port of it);
//! - replies of allowed connections pass (the programs track flows);
//! - the node itself always reaches its pods (kubelet probes);
//! - a named port is each selected pod's (ingress) or each destination
//!   pod's (egress) container port of that name and protocol.
//!
//! A connection to a Service's cluster address is judged by the backends
//! kube-proxy may send it to (the programs run before its DNAT): each
//! cluster address is an identity of its own ([`SERVICE_IDENTITY_BITS`]),
//! and an egress-isolated pod may open a Service port only when its
//! policies allow it to every backend of that port (never more than they
//! say; when the backends differ in what is allowed, the Service is
//! refused as a whole). An ipBlock never matches a cluster address.
//!
//! This node's pods are known from their CNI ADD, before the kubelet
//! reports their addresses: such a pod takes its Pod's labels at once, and
//! a pod whose Pod the watch has not brought yet is an identity of its own
//! ([`UNRESOLVED_LABEL`]), isolated in each direction some policy of its
//! namespace isolates and allowed only what rules selecting every pod
//! allow: never open in a policy-isolated namespace.

use super::identity::{self, IdentityKey, CIDR_IDENTITY_BIT};
use ipnet::IpNet;
use k8s_openapi::api::networking::v1::{NetworkPolicy, NetworkPolicyPeer, NetworkPolicyPort};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use novanet_ebpf::datapath::PolicyState;
use novanet_ebpf::maps::{
    Addr, PolicyKey, PolicyValue, PortKey, DIRECTION_EGRESS, DIRECTION_INGRESS, IDENTITY_ANY, IDENTITY_HOST,
    MAX_RANGES, MORE_PORTS,
};
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

/// A pod as policy sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodInfo {
    pub namespace: String,
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub ips: Vec<IpAddr>,
    /// Its containers' named ports: (name, protocol number, port).
    pub named_ports: Vec<(String, u8, u16)>,
}

impl PodInfo {
    fn key(&self) -> IdentityKey {
        IdentityKey {
            namespace: self.namespace.clone(),
            labels: self.labels.clone(),
        }
    }
}

/// Everything policy is computed from.
#[derive(Debug, Clone, Default)]
pub struct Cluster {
    pub pods: Vec<PodInfo>,
    /// Namespace name -> its labels.
    pub namespaces: BTreeMap<String, BTreeMap<String, String>>,
    pub policies: Vec<NetworkPolicy>,
    /// The node's own addresses (always allowed to reach its pods).
    pub host_ips: Vec<IpAddr>,
    /// This node's pods as their CNI ADD gave them addresses: (namespace,
    /// name) -> addresses.
    pub local_pods: BTreeMap<(String, String), Vec<IpAddr>>,
    pub services: Vec<ServiceInfo>,
}

/// A Service as policy sees it: its cluster addresses and, per port, the
/// backends kube-proxy may send a connection to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceInfo {
    pub namespace: String,
    pub name: String,
    pub cluster_ips: Vec<IpAddr>,
    pub ports: Vec<ServicePort>,
}

/// (protocol number, Service port, backends as (address, target port)).
pub type ServicePort = (u8, u16, Vec<(IpAddr, u16)>);

pub use super::identity::SERVICE_IDENTITY_BITS;

/// The label of a local pod whose Pod the watches have not brought yet.
pub const UNRESOLVED_LABEL: &str = "novanet.io/unresolved";

impl Cluster {
    /// The pods with this node's pods as CNI gave them addresses: a Pod
    /// without addresses yet takes them; a pod with no Pod yet is added
    /// with [`UNRESOLVED_LABEL`] as its only label.
    fn with_local_pods(&self) -> Vec<PodInfo> {
        let mut pods = self.pods.clone();
        let index: std::collections::HashMap<(&str, &str), usize> = self
            .pods
            .iter()
            .enumerate()
            .map(|(i, p)| ((p.namespace.as_str(), p.name.as_str()), i))
            .collect();
        for ((namespace, name), ips) in &self.local_pods {
            match index.get(&(namespace.as_str(), name.as_str())).map(|i| &mut pods[*i]) {
                Some(p) if p.ips.is_empty() => p.ips = ips.clone(),
                Some(_) => {}
                None => pods.push(PodInfo {
                    namespace: namespace.clone(),
                    name: name.clone(),
                    labels: BTreeMap::from([(UNRESOLVED_LABEL.to_string(), "true".to_string())]),
                    ips: ips.clone(),
                    named_ports: Vec::new(),
                }),
            }
        }
        pods
    }
}

/// The directions a policy isolates: `policyTypes`, or when absent,
/// Ingress, plus Egress when `egress` is given.
fn policy_types(pol: &NetworkPolicy) -> (bool, bool) {
    let Some(spec) = &pol.spec else {
        return (false, false);
    };
    match &spec.policy_types {
        Some(t) => (t.iter().any(|t| t == "Ingress"), t.iter().any(|t| t == "Egress")),
        None => (true, spec.egress.is_some()),
    }
}

/// What the maps should hold, and what could not be honoured.
#[derive(Debug, Clone, Default)]
pub struct Compiled {
    pub endpoints: BTreeMap<Addr, u32>,
    pub identities: BTreeMap<u32, IdentityKey>,
    pub state: PolicyState,
    pub warnings: Vec<String>,
}

/// Whether `labels` satisfy a label selector (an empty one takes all).
pub fn selects(sel: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    let labels_ok = sel.match_labels.iter().flatten().all(|(k, v)| labels.get(k) == Some(v));
    let exprs_ok = sel.match_expressions.iter().flatten().all(|e| {
        let values: BTreeSet<&String> = e.values.iter().flatten().collect();
        match e.operator.as_str() {
            "In" => labels.get(&e.key).is_some_and(|v| values.contains(v)),
            "NotIn" => labels.get(&e.key).is_none_or(|v| !values.contains(v)),
            "Exists" => labels.contains_key(&e.key),
            "DoesNotExist" => !labels.contains_key(&e.key),
            // An operator Kubernetes does not define selects nothing.
            _ => false,
        }
    });
    labels_ok && exprs_ok
}

/// A peer's identities: pods by selector, or ipBlock prefixes.
enum Peers {
    Any,
    Identities(BTreeSet<u32>),
}

struct Compiler<'a> {
    cluster: &'a Cluster,
    /// The cluster's pods with this node's pods as CNI gave them.
    pods: Vec<PodInfo>,
    ids: BTreeMap<IdentityKey, u32>,
    /// ipBlock prefixes and their identities.
    prefixes: BTreeMap<IpNet, u32>,
    warnings: Vec<String>,
}

/// Port ranges, or all ports (None).
type Ports = Option<Vec<(u16, u16)>>;

/// Named ports of a rule: (protocol number, name).
type Names = Vec<(u8, String)>;

/// (peer, local, protocol) -> the ports allowed.
type Entries = BTreeMap<(u32, u32, u8), Ports>;

/// The protocol number of a Kubernetes protocol name (TCP when absent).
pub fn protocol_number(p: Option<&str>) -> Option<u8> {
    match p.unwrap_or("TCP") {
        "TCP" => Some(6),
        "UDP" => Some(17),
        "SCTP" => Some(132),
        _ => None,
    }
}

/// Port ranges merged where they overlap or touch: exactly the same
/// ports, in order.
fn merge(mut ranges: Vec<(u16, u16)>) -> Vec<(u16, u16)> {
    ranges.sort();
    let mut out: Vec<(u16, u16)> = Vec::new();
    for (a, b) in ranges {
        match out.last_mut() {
            Some(last) if a as u32 <= last.1 as u32 + 1 => last.1 = last.1.max(b),
            _ => out.push((a, b)),
        }
    }
    out
}

/// Most ports of one entry listed one by one beyond its ranges.
const MAX_MORE_PORTS: usize = 4096;

/// An entry's ports as the datapath holds them: the [`MAX_RANGES`] widest
/// ranges in the entry itself, every port of the rest listed one by one
/// (never a wider range: a policy allows no port it does not name). Past
/// [`MAX_MORE_PORTS`] the rest are left out (allowing less, never more),
/// and the second value says so.
fn fit(merged: Vec<(u16, u16)>) -> (Vec<(u16, u16)>, Vec<u16>, bool) {
    if merged.len() <= MAX_RANGES {
        return (merged, Vec::new(), false);
    }
    let mut by_span = merged;
    by_span.sort_by_key(|(a, b)| std::cmp::Reverse(b - a));
    let rest = by_span.split_off(MAX_RANGES);
    by_span.sort();
    let mut more = Vec::new();
    let mut left_out = false;
    for (a, b) in rest {
        for port in a..=b {
            if more.len() == MAX_MORE_PORTS {
                left_out = true;
                break;
            }
            more.push(port);
        }
    }
    more.sort();
    (by_span, more, left_out)
}

impl<'a> Compiler<'a> {
    fn ns_labels(&self, ns: &str) -> BTreeMap<String, String> {
        let mut l = self.cluster.namespaces.get(ns).cloned().unwrap_or_default();
        // Every namespace carries its name (Kubernetes sets this label).
        l.entry("kubernetes.io/metadata.name".into())
            .or_insert_with(|| ns.to_string());
        l
    }

    /// Identities of the pods of `namespace` matching `sel`.
    fn pods_in(
        &self,
        namespace: Option<&str>,
        ns_sel: Option<&LabelSelector>,
        pod_sel: Option<&LabelSelector>,
    ) -> BTreeSet<u32> {
        self.ids
            .iter()
            .filter(|(k, _)| namespace.is_none_or(|n| k.namespace == n))
            .filter(|(k, _)| ns_sel.is_none_or(|s| selects(s, &self.ns_labels(&k.namespace))))
            .filter(|(k, _)| pod_sel.is_none_or(|s| selects(s, &k.labels)))
            .map(|(_, id)| *id)
            .collect()
    }

    fn peer_identities(&mut self, policy_ns: &str, peer: &NetworkPolicyPeer) -> BTreeSet<u32> {
        if let Some(block) = &peer.ip_block {
            let Ok(cidr) = block.cidr.parse::<IpNet>() else {
                self.warnings.push(format!(
                    "ipBlock cidr {:?} is not a prefix: it allows nothing",
                    block.cidr
                ));
                return BTreeSet::new();
            };
            let excepts: Vec<IpNet> = block.except.iter().flatten().filter_map(|e| e.parse().ok()).collect();
            let cidr = cidr.trunc();
            // Every prefix of every ipBlock has an identity; this peer is
            // the prefixes inside its cidr and in none of its excepts
            // (an address takes its longest prefix's identity).
            self.prefix_id(cidr);
            for e in &excepts {
                self.prefix_id(e.trunc());
            }
            return self
                .prefixes
                .iter()
                .filter(|(p, _)| cidr.contains(*p) && !excepts.iter().any(|e| e.contains(*p)))
                .map(|(_, id)| *id)
                .collect();
        }
        match (&peer.namespace_selector, &peer.pod_selector) {
            (None, None) => BTreeSet::new(),
            (None, Some(ps)) => self.pods_in(Some(policy_ns), None, Some(ps)),
            (Some(ns), ps) => self.pods_in(None, Some(ns), ps.as_ref()),
        }
    }

    fn prefix_id(&mut self, p: IpNet) -> u32 {
        let next = CIDR_IDENTITY_BIT | (self.prefixes.len() as u32 + 1);
        *self.prefixes.entry(p).or_insert(next)
    }

    /// The (protocol, ranges) a rule's numbered ports allow (`None`
    /// ranges: all), and its named ports as (protocol, name).
    fn ports(&mut self, ports: Option<&Vec<NetworkPolicyPort>>) -> (Vec<(u8, Ports)>, Names) {
        let Some(ports) = ports.filter(|p| !p.is_empty()) else {
            return (vec![(0, None)], Vec::new());
        };
        let mut names = Vec::new();
        let mut out: BTreeMap<u8, Ports> = BTreeMap::new();
        for p in ports {
            let Some(proto) = protocol_number(p.protocol.as_deref()) else {
                self.warnings.push(format!(
                    "protocol {:?} is not TCP, UDP or SCTP: that port allows nothing",
                    p.protocol
                ));
                continue;
            };
            let range = match &p.port {
                None => None,
                Some(IntOrString::Int(n)) => {
                    let first = (*n).clamp(0, 65535) as u16;
                    let last = p.end_port.map(|e| e.clamp(0, 65535) as u16).unwrap_or(first).max(first);
                    Some((first, last))
                }
                Some(IntOrString::String(name)) => {
                    names.push((proto, name.clone()));
                    continue;
                }
            };
            let e = out.entry(proto).or_insert_with(|| Some(Vec::new()));
            match (e.as_mut(), range) {
                (Some(v), Some(r)) => v.push(r),
                (_, None) => *e = None,
                (None, Some(_)) => {}
            }
        }
        (out.into_iter().collect(), names)
    }

    /// Named ports resolved against the pods of one identity: what the
    /// names are among their containers' ports (same name and protocol).
    fn resolve(&self, names: &[(u8, String)], identity: u32) -> Vec<(u8, Ports)> {
        let mut out: BTreeMap<u8, Vec<(u16, u16)>> = BTreeMap::new();
        for pod in self.pods.iter().filter(|p| self.ids.get(&p.key()) == Some(&identity)) {
            for (name, proto, port) in &pod.named_ports {
                if names.iter().any(|(p, n)| p == proto && n == name) {
                    out.entry(*proto).or_default().push((*port, *port));
                }
            }
        }
        out.into_iter().map(|(p, r)| (p, Some(r))).collect()
    }

    /// Adds a rule's named ports: resolved against each local pod's
    /// containers (ingress), or each peer pod's (egress; a rule without
    /// peers: every pod's). A name no pod has allows nothing.
    fn add_named(
        &mut self,
        entries: &mut Entries,
        ingress: bool,
        peers: &Peers,
        locals: &BTreeSet<u32>,
        names: &[(u8, String)],
    ) {
        if names.is_empty() {
            return;
        }
        let mut resolved_any = false;
        if ingress {
            for l in locals {
                let ports = self.resolve(names, *l);
                resolved_any |= !ports.is_empty();
                Compiler::add(entries, peers, &BTreeSet::from([*l]), &ports);
            }
        } else {
            let peer_ids: BTreeSet<u32> = match peers {
                Peers::Any => self.ids.values().copied().collect(),
                Peers::Identities(s) => s.clone(),
            };
            for p in peer_ids {
                let ports = self.resolve(names, p);
                resolved_any |= !ports.is_empty();
                Compiler::add(entries, &Peers::Identities(BTreeSet::from([p])), locals, &ports);
            }
        }
        if !resolved_any {
            let list: Vec<&str> = names.iter().map(|(_, n)| n.as_str()).collect();
            self.warnings.push(format!(
                "named port {list:?} is no container port of the pods it applies to: it allows nothing"
            ));
        }
    }

    fn add(entries: &mut Entries, peers: &Peers, locals: &BTreeSet<u32>, ports: &[(u8, Ports)]) {
        let peer_ids: Vec<u32> = match peers {
            Peers::Any => vec![IDENTITY_ANY],
            Peers::Identities(s) => s.iter().copied().collect(),
        };
        for l in locals {
            for p in &peer_ids {
                for (proto, ranges) in ports {
                    let e = entries.entry((*p, *l, *proto)).or_insert_with(|| Some(Vec::new()));
                    match (e.as_mut(), ranges) {
                        (Some(v), Some(r)) => v.extend(r.iter().copied()),
                        (_, None) => *e = None,
                        (None, Some(_)) => {}
                    }
                }
            }
        }
    }

    /// Whether the egress entries let `local` open `proto`/`port` at
    /// `addr`, looked up as the programs do: the address's pod identity
    /// (`pods`, else world), then the longest ipBlock holding it.
    fn egress_allows(
        &self,
        egress: &Entries,
        pods: &BTreeMap<IpAddr, u32>,
        local: u32,
        addr: IpAddr,
        proto: u8,
        port: u16,
    ) -> bool {
        let pod = pods.get(&addr).copied().unwrap_or(novanet_ebpf::maps::IDENTITY_WORLD);
        let cidr = self
            .prefixes
            .iter()
            .filter(|(net, _)| net.contains(&addr))
            .max_by_key(|(net, _)| net.prefix_len())
            .map(|(_, id)| *id);
        let by = |peer: u32| {
            [(peer, proto), (peer, 0), (IDENTITY_ANY, proto), (IDENTITY_ANY, 0)]
                .iter()
                .filter_map(|(p, pr)| egress.get(&(*p, local, *pr)))
                .any(|ports| match ports {
                    None => true,
                    Some(r) => r.iter().any(|(a, b)| (*a..=*b).contains(&port)),
                })
        };
        by(pod) || cidr.is_some_and(|c| c != pod && by(c))
    }

    /// The Services' identities (numbered from their namespace and name,
    /// so one Service coming or going renumbers no other), their keys and
    /// cluster addresses; each egress-isolated identity gets the Service
    /// ports whose every backend its entries allow.
    fn services(&self, egress: &mut Entries, isolated: &BTreeSet<u32>) -> Vec<(u32, IdentityKey, Vec<IpAddr>)> {
        let key = |svc: &ServiceInfo| IdentityKey {
            namespace: svc.namespace.clone(),
            labels: BTreeMap::from([("novanet.io/service".to_string(), svc.name.clone())]),
        };
        let ids = identity::number_in(&self.cluster.services.iter().map(key).collect(), &identity::SERVICES);
        let pods: BTreeMap<IpAddr, u32> = self
            .pods
            .iter()
            .flat_map(|p| p.ips.iter().map(|ip| (*ip, self.ids[&p.key()])))
            .collect();
        let mut out = Vec::new();
        for svc in &self.cluster.services {
            let key = key(svc);
            let id = ids[&key];
            for local in isolated {
                for (proto, port, backends) in &svc.ports {
                    let all = !backends.is_empty()
                        && backends
                            .iter()
                            .all(|(addr, target)| self.egress_allows(egress, &pods, *local, *addr, *proto, *target));
                    if all {
                        if let Some(v) = egress.entry((id, *local, *proto)).or_insert_with(|| Some(Vec::new())) {
                            v.push((*port, *port));
                        }
                    }
                }
            }
            out.push((id, key, svc.cluster_ips.clone()));
        }
        out
    }

    fn peers_of(&mut self, ns: &str, peers: Option<&Vec<NetworkPolicyPeer>>) -> Peers {
        match peers.filter(|p| !p.is_empty()) {
            None => Peers::Any,
            Some(list) => {
                let mut ids = BTreeSet::new();
                for p in list {
                    ids.extend(self.peer_identities(ns, p));
                }
                Peers::Identities(ids)
            }
        }
    }
}

/// Compiles the cluster's policies for the TC programs.
pub fn compile(cluster: &Cluster) -> Compiled {
    let pods = cluster.with_local_pods();
    let keys: BTreeSet<IdentityKey> = pods.iter().map(PodInfo::key).collect();
    let ids = identity::number(&keys);
    let mut c = Compiler {
        cluster,
        pods,
        ids,
        prefixes: BTreeMap::new(),
        warnings: Vec::new(),
    };
    let mut state = PolicyState::default();
    let (mut ingress, mut egress): (Entries, Entries) = Default::default();
    for pol in &cluster.policies {
        let ns = pol.metadata.namespace.clone().unwrap_or_else(|| "default".into());
        let Some(spec) = &pol.spec else { continue };
        let selected = c.pods_in(
            Some(&ns),
            None,
            spec.pod_selector.as_ref().or(Some(&LabelSelector::default())),
        );
        let (isolates_ingress, isolates_egress) = policy_types(pol);
        if isolates_ingress {
            state.ingress_isolated.extend(selected.iter().copied());
            for rule in spec.ingress.iter().flatten() {
                let peers = c.peers_of(&ns, rule.from.as_ref());
                let (ports, names) = c.ports(rule.ports.as_ref());
                Compiler::add(&mut ingress, &peers, &selected, &ports);
                c.add_named(&mut ingress, true, &peers, &selected, &names);
            }
        }
        if isolates_egress {
            state.egress_isolated.extend(selected.iter().copied());
            for rule in spec.egress.iter().flatten() {
                let peers = c.peers_of(&ns, rule.to.as_ref());
                let (ports, names) = c.ports(rule.ports.as_ref());
                Compiler::add(&mut egress, &peers, &selected, &ports);
                c.add_named(&mut egress, false, &peers, &selected, &names);
            }
        }
    }
    // A local pod not known yet is isolated wherever some policy of its
    // namespace isolates a direction.
    for (key, id) in c.ids.iter().filter(|(k, _)| k.labels.contains_key(UNRESOLVED_LABEL)) {
        for pol in cluster
            .policies
            .iter()
            .filter(|p| p.metadata.namespace.as_deref().unwrap_or("default") == key.namespace)
        {
            let (i, e) = policy_types(pol);
            if i {
                state.ingress_isolated.insert(*id);
            }
            if e {
                state.egress_isolated.insert(*id);
            }
        }
    }
    let services = c.services(&mut egress, &state.egress_isolated);
    // The node reaches its pods (kubelet probes), whatever their policy.
    for l in state.ingress_isolated.clone() {
        ingress.insert((IDENTITY_HOST, l, 0), None);
    }
    let to_map = |entries: Entries,
                  direction: u8,
                  out: &mut BTreeMap<PolicyKey, PolicyValue>,
                  more_ports: &mut BTreeSet<PortKey>,
                  warnings: &mut Vec<String>| {
        for ((peer, local, protocol), ranges) in entries {
            let v = match ranges {
                None => PolicyValue::all_ports(),
                Some(r) => {
                    let (ranges, more, left_out) = fit(merge(r));
                    if left_out {
                        warnings.push(format!(
                            "identity {local}: more than {MAX_RANGES} port ranges and {MAX_MORE_PORTS} further ports from one peer; the ports past them are not allowed"
                        ));
                    }
                    let mut v = PolicyValue::ranges(&ranges);
                    if !more.is_empty() {
                        v.flags |= MORE_PORTS;
                        more_ports.extend(more.into_iter().map(|port| PortKey {
                            peer,
                            local,
                            protocol,
                            direction,
                            port,
                        }));
                    }
                    v
                }
            };
            out.insert(PolicyKey::new(peer, local, protocol), v);
        }
    };
    let mut warnings = std::mem::take(&mut c.warnings);
    to_map(
        ingress,
        DIRECTION_INGRESS,
        &mut state.ingress,
        &mut state.more_ports,
        &mut warnings,
    );
    to_map(
        egress,
        DIRECTION_EGRESS,
        &mut state.egress,
        &mut state.more_ports,
        &mut warnings,
    );
    state.cidrs = c
        .prefixes
        .iter()
        .map(|(p, id)| {
            let len = match p {
                IpNet::V4(v4) => 96 + v4.prefix_len() as u32,
                IpNet::V6(v6) => v6.prefix_len() as u32,
            };
            ((Addr::from(p.addr()), len), *id)
        })
        .collect();
    let mut endpoints = BTreeMap::new();
    for pod in &c.pods {
        let id = c.ids[&pod.key()];
        for ip in &pod.ips {
            endpoints.insert(Addr::from(*ip), id);
        }
    }
    for ip in &cluster.host_ips {
        endpoints.insert(Addr::from(*ip), IDENTITY_HOST);
    }
    let mut identities: BTreeMap<u32, IdentityKey> = c.ids.into_iter().map(|(k, v)| (v, k)).collect();
    for (id, key, ips) in services {
        for ip in ips {
            endpoints.insert(Addr::from(ip), id);
        }
        identities.insert(id, key);
    }
    Compiled {
        endpoints,
        identities,
        state,
        warnings,
    }
}
