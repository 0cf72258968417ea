//! The NetworkPolicy cases of the Kubernetes e2e suite, end to end: three
//! namespaces x, y, z with pods a, b, c each (labels `pod=<name>`, the
//! namespaces their `kubernetes.io/metadata.name`), spread over two meshed
//! nodes, every pod serving TCP and UDP on 80 and 81 (container ports
//! named `serve-80-tcp` and so on). For each case the policies go to the
//! API server and every pod probes every other pod on TCP and UDP 80 and
//! 81, all probes at once with 1 s timeouts; what it sees must equal what
//! the NetworkPolicy API says, computed here from the objects by
//! [`Model::allows`], a reading of the API's rules written apart from the
//! agent's compiler. Cases that change labels or policies check each step.
//! SCTP is not probed (the lab's pods have no SCTP stack); the cases that
//! allow SCTP are probed on TCP and UDP, which they must not open.

use novanet_conformance::policy_node::{
    answers_tcp, answers_udp, datapath_status, pod_identities, serve, serve_udp, PolicyNode,
};
use novanet_conformance::{wait_until, Agent, Lab};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

const NAMESPACES: [&str; 3] = ["x", "y", "z"];
const PODS: [&str; 3] = ["a", "b", "c"];
const PROBES: [(&str, u16); 4] = [("TCP", 80), ("TCP", 81), ("UDP", 80), ("UDP", 81)];
const NS_LABEL: &str = "kubernetes.io/metadata.name";

/// What the API server holds, as the cases change it.
#[derive(Clone, Default)]
struct Model {
    /// "x/a" -> (labels, IPv4 address).
    pods: BTreeMap<String, (BTreeMap<String, String>, String)>,
    namespaces: BTreeMap<String, BTreeMap<String, String>>,
    /// (namespace, name) -> NetworkPolicy.
    policies: BTreeMap<(String, String), Value>,
}

fn labels(v: &Value) -> BTreeMap<String, String> {
    v.as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
        .collect()
}

/// A LabelSelector as the API defines it (an empty one selects all).
fn selects(selector: &Value, labels: &BTreeMap<String, String>) -> bool {
    let by_labels = selector["matchLabels"]
        .as_object()
        .into_iter()
        .flatten()
        .all(|(k, v)| labels.get(k).map(String::as_str) == v.as_str());
    let by_expressions = selector["matchExpressions"].as_array().into_iter().flatten().all(|e| {
        let key = e["key"].as_str().unwrap_or_default();
        let values: Vec<&str> = e["values"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str())
            .collect();
        let value = labels.get(key).map(String::as_str);
        match e["operator"].as_str().unwrap_or_default() {
            "In" => value.is_some_and(|v| values.contains(&v)),
            "NotIn" => !value.is_some_and(|v| values.contains(&v)),
            "Exists" => value.is_some(),
            "DoesNotExist" => value.is_none(),
            other => panic!("operator {other}"),
        }
    });
    by_labels && by_expressions
}

fn in_cidr(ip: &str, cidr: &str) -> bool {
    let (net, len) = cidr.split_once('/').expect("a CIDR");
    let (IpAddr::V4(ip), IpAddr::V4(net)) = (ip.parse::<IpAddr>().unwrap(), net.parse::<IpAddr>().unwrap()) else {
        return false;
    };
    let len: u32 = len.parse().unwrap();
    let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
    u32::from(ip) & mask == u32::from(net) & mask
}

impl Model {
    fn namespace_of(pod: &str) -> &str {
        pod.split_once('/').unwrap().0
    }

    /// The policy types of a policy, defaulted as the API server does.
    fn types(p: &Value) -> (bool, bool) {
        match p["spec"]["policyTypes"].as_array() {
            Some(t) => (t.contains(&json!("Ingress")), t.contains(&json!("Egress"))),
            None => (true, p["spec"]["egress"].as_array().is_some_and(|e| !e.is_empty())),
        }
    }

    /// Whether `peer` of a policy in `policy_ns` names pod `other`.
    fn peer_matches(&self, policy_ns: &str, peer: &Value, other: &str) -> bool {
        let (other_labels, other_ip) = &self.pods[other];
        if let Some(block) = peer.get("ipBlock") {
            let except = block["except"].as_array().into_iter().flatten();
            return in_cidr(other_ip, block["cidr"].as_str().unwrap())
                && !except.clone().any(|e| in_cidr(other_ip, e.as_str().unwrap()));
        }
        let other_ns = Self::namespace_of(other);
        let ns_ok = match peer.get("namespaceSelector") {
            Some(sel) => selects(sel, &self.namespaces[other_ns]),
            None => other_ns == policy_ns,
        };
        let pod_ok = peer.get("podSelector").is_none_or(|sel| selects(sel, other_labels));
        ns_ok && pod_ok
    }

    /// Whether a rule's `ports` admit `proto`/`port` (a named port is the
    /// destination's container port of that name; every pod declares the
    /// same ones).
    fn ports_match(ports: Option<&Vec<Value>>, proto: &str, port: u16) -> bool {
        let Some(ports) = ports.filter(|p| !p.is_empty()) else {
            return true;
        };
        ports.iter().any(|p| {
            let rule_proto = p["protocol"].as_str().unwrap_or("TCP");
            if rule_proto != proto {
                return false;
            }
            match &p["port"] {
                Value::Null => true,
                Value::Number(n) => {
                    let first = n.as_u64().unwrap() as u16;
                    let last = p["endPort"].as_u64().map(|e| e as u16).unwrap_or(first);
                    (first..=last).contains(&port)
                }
                Value::String(name) => container_port(name) == Some((rule_proto.to_string(), port)),
                other => panic!("port {other}"),
            }
        })
    }

    /// What one side's policies say of a connection: `local` is the pod the
    /// policies select, `other` the far end.
    fn side_allows(&self, ingress: bool, local: &str, other: &str, proto: &str, port: u16) -> bool {
        let ns = Self::namespace_of(local);
        let (rules_key, peers_key) = if ingress { ("ingress", "from") } else { ("egress", "to") };
        let selecting: Vec<&Value> = self
            .policies
            .iter()
            .filter(|((pns, _), p)| {
                pns == ns
                    && selects(&p["spec"]["podSelector"], &self.pods[local].0)
                    && if ingress { Self::types(p).0 } else { Self::types(p).1 }
            })
            .map(|(_, p)| p)
            .collect();
        if selecting.is_empty() {
            return true;
        }
        selecting.iter().any(|p| {
            p["spec"][rules_key].as_array().into_iter().flatten().any(|rule| {
                let peers_ok = match rule[peers_key].as_array().filter(|a| !a.is_empty()) {
                    None => true,
                    Some(peers) => peers.iter().any(|peer| self.peer_matches(ns, peer, other)),
                };
                peers_ok && Self::ports_match(rule["ports"].as_array(), proto, port)
            })
        })
    }

    /// The connectivity the NetworkPolicy API defines.
    fn allows(&self, src: &str, dst: &str, proto: &str, port: u16) -> bool {
        self.side_allows(false, src, dst, proto, port) && self.side_allows(true, dst, src, proto, port)
    }
}

/// Every pod's container ports: (name, protocol, number).
fn container_ports() -> Vec<(String, String, u16)> {
    PROBES
        .iter()
        .map(|(proto, port)| {
            (
                format!("serve-{port}-{}", proto.to_lowercase()),
                proto.to_string(),
                *port,
            )
        })
        .collect()
}

fn container_port(name: &str) -> Option<(String, u16)> {
    container_ports()
        .into_iter()
        .find(|(n, _, _)| n == name)
        .map(|(_, proto, port)| (proto, port))
}

/// One probe: (source pod, destination pod, protocol, port).
type Probe = (String, String, &'static str, u16);

/// A pod's lab namespace ("x/a" -> "xa").
fn netns(pod: &str) -> String {
    pod.replace('/', "")
}

/// Whether a pod (its lab namespace) reaches `ip:port` over `proto`.
fn probe(lab_ns: &str, ip: &str, proto: &str, port: u16) -> bool {
    novanet_conformance::lab::enter_namespace(lab_ns);
    let addr: SocketAddr = format!("{ip}:{port}").parse().unwrap();
    if proto == "TCP" {
        answers_tcp(addr)
    } else {
        answers_udp(addr)
    }
}

/// The whole matrix, probed at once.
fn observe(lab: &Lab, model: &Model) -> BTreeMap<Probe, bool> {
    let probes: Vec<Probe> = model
        .pods
        .keys()
        .flat_map(|s| model.pods.keys().map(move |d| (s.clone(), d.clone())))
        .filter(|(s, d)| s != d)
        .flat_map(|(s, d)| {
            PROBES
                .iter()
                .map(move |(proto, port)| (s.clone(), d.clone(), *proto, *port))
        })
        .collect();
    std::thread::scope(|scope| {
        let running: Vec<_> = probes
            .iter()
            .map(|p| {
                let ns = lab.ns_name(&netns(&p.0));
                let ip = model.pods[&p.1].1.clone();
                let (proto, port) = (p.2, p.3);
                (p.clone(), scope.spawn(move || probe(&ns, &ip, proto, port)))
            })
            .collect();
        running
            .into_iter()
            .map(|(p, h)| (p, h.join().expect("probe")))
            .collect()
    })
}

fn expected(model: &Model) -> BTreeMap<Probe, bool> {
    let mut out = BTreeMap::new();
    for s in model.pods.keys() {
        for d in model.pods.keys().filter(|d| *d != s) {
            for (proto, port) in PROBES {
                out.insert((s.clone(), d.clone(), proto, port), model.allows(s, d, proto, port));
            }
        }
    }
    out
}

/// A change a case makes through the API server.
enum Change {
    Apply(Value),
    Delete(String, String),
    PodLabels(String, Value),
    NamespaceLabels(String, Value),
}

struct Case {
    name: &'static str,
    /// Each step's changes, checked after each step.
    steps: Vec<Vec<Change>>,
}

struct Cluster<'a> {
    lab: &'a Lab,
    first: &'a PolicyNode,
    nodes: Vec<&'a PolicyNode>,
    agents: Vec<&'a Agent>,
    model: Model,
}

impl Cluster<'_> {
    fn node_of(&self, pod: &str) -> &PolicyNode {
        let i = self.model.pods.keys().position(|p| p == pod).unwrap();
        self.nodes[i % self.nodes.len()]
    }

    fn change(&mut self, c: &Change) {
        let api = &self.first.api;
        match c {
            Change::Apply(p) => {
                let key = (
                    p["metadata"]["namespace"].as_str().unwrap().to_string(),
                    p["metadata"]["name"].as_str().unwrap().to_string(),
                );
                api.apply_network_policy(p.clone());
                self.model.policies.insert(key, p.clone());
            }
            Change::Delete(ns, name) => {
                api.delete_network_policy(ns, name);
                self.model.policies.remove(&(ns.clone(), name.clone()));
            }
            Change::PodLabels(pod, l) => {
                let ip = self.model.pods[pod].1.clone();
                let name = pod.split_once('/').unwrap().1;
                let ports: Vec<(String, String, u16)> = container_ports();
                let ports: Vec<(&str, &str, u16)> =
                    ports.iter().map(|(n, p, x)| (n.as_str(), p.as_str(), *x)).collect();
                let object = self.node_of(pod).pod_here(name, &ip, l.clone(), &ports);
                api.apply_pod(Model::namespace_of(pod), object);
                self.model.pods.get_mut(pod).unwrap().0 = labels(l);
            }
            Change::NamespaceLabels(ns, l) => {
                api.apply_namespace(ns, l.clone());
                self.model.namespaces.insert(ns.clone(), labels(l));
            }
        }
    }

    /// Waits until both agents know as many policies as the model, then
    /// until the matrix is what the API says (10 s bound); the difference
    /// names each probe that disagrees.
    fn check(&self, what: &str) -> Result<(), String> {
        let policies = self.model.policies.len();
        for agent in &self.agents {
            wait_until(
                &format!("{what}: {policies} policies in {}", agent.name),
                Duration::from_secs(20),
                || {
                    let v = datapath_status(agent, "");
                    (v["policies"] == json!(policies))
                        .then_some(())
                        .ok_or(v["policies"].to_string())
                },
            );
        }
        let want = expected(&self.model);
        let started = Instant::now();
        let mut last = BTreeMap::new();
        while started.elapsed() < Duration::from_secs(10) {
            last = observe(self.lab, &self.model);
            if last == want {
                eprintln!("{what}: agrees ({:?})", started.elapsed());
                return Ok(());
            }
        }
        let wrong: Vec<String> = want
            .iter()
            .filter(|(k, v)| last.get(*k) != Some(*v))
            .map(|((s, d, proto, port), v)| {
                format!(
                    "{s} -> {d} {proto}/{port}: {} but the API says {}",
                    !v,
                    if *v { "allowed" } else { "denied" }
                )
            })
            .collect();
        let report = format!(
            "{what}: {} of {} probes disagree:\n{}",
            wrong.len(),
            want.len(),
            wrong.join("\n")
        );
        eprintln!("{report}");
        Err(report)
    }
}

fn np(ns: &str, name: &str, spec: Value) -> Value {
    json!({"metadata": {"name": name, "namespace": ns}, "spec": spec})
}

fn pod_a() -> Value {
    json!({"matchLabels": {"pod": "a"}})
}

/// The cases, given the pods' addresses.
fn cases(ip: &dyn Fn(&str) -> String) -> Vec<Case> {
    use Change::*;
    let ns = |n: &str| json!({"matchLabels": {NS_LABEL: n}});
    let not_x = json!({"matchExpressions": [{"key": NS_LABEL, "operator": "NotIn", "values": ["x"]}]});
    let deny_ingress =
        |name: &str, selector: Value| np("x", name, json!({"podSelector": selector, "policyTypes": ["Ingress"]}));
    let ingress_a = |name: &str, rules: Value| {
        np(
            "x",
            name,
            json!({"podSelector": pod_a(), "ingress": rules, "policyTypes": ["Ingress"]}),
        )
    };
    let egress_a = |name: &str, rules: Value| {
        np(
            "x",
            name,
            json!({"podSelector": pod_a(), "egress": rules, "policyTypes": ["Egress"]}),
        )
    };
    let x_b = ip("x/b");
    let one = |steps: Vec<Change>| vec![steps];
    vec![
        Case {
            name: "default-deny-ingress",
            steps: one(vec![Apply(deny_ingress("deny-ingress", json!({})))]),
        },
        Case {
            name: "default-deny-all",
            steps: one(vec![Apply(np(
                "x",
                "deny-all",
                json!({"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}),
            ))]),
        },
        Case {
            name: "allow from pods within the server's namespace by PodSelector",
            steps: one(vec![Apply(ingress_a(
                "x-a-allows-x-b",
                json!([{"from": [{"podSelector": {"matchLabels": {"pod": "b"}}}]}]),
            ))]),
        },
        Case {
            name: "allow ingress to a target under a namespace default deny",
            steps: one(vec![
                Apply(deny_ingress("deny-all", json!({}))),
                Apply(ingress_a(
                    "allow-all-to-a",
                    json!([{"from": [{"podSelector": {}, "namespaceSelector": {}}]}]),
                )),
            ]),
        },
        Case {
            name: "allow ingress from pods in all namespaces",
            steps: one(vec![Apply(ingress_a(
                "allow-from-another-ns",
                json!([{"from": [{"namespaceSelector": {"matchLabels": {}}}]}]),
            ))]),
        },
        Case {
            name: "allow only from a different namespace by NamespaceSelector",
            steps: one(vec![Apply(ingress_a(
                "allow-client-a-via-ns-selector",
                json!([{"from": [{"namespaceSelector": ns("y")}]}]),
            ))]),
        },
        Case {
            name: "PodSelector with MatchExpressions",
            steps: one(vec![Apply(ingress_a(
                "x-a-allows-x-b",
                json!([{"from": [{"podSelector": {"matchExpressions": [{"key": "pod", "operator": "In", "values": ["b"]}]}}]}]),
            ))]),
        },
        Case {
            name: "NamespaceSelector with MatchExpressions",
            steps: one(vec![Apply(ingress_a(
                "allow-ns-y-match-selector",
                json!([{"from": [{"namespaceSelector": {"matchExpressions": [{"key": NS_LABEL, "operator": "In", "values": ["y"]}]}}]}]),
            ))]),
        },
        Case {
            name: "PodSelector or NamespaceSelector",
            steps: one(vec![Apply(ingress_a(
                "allow-ns-y-match-selector",
                json!([{"from": [{"namespaceSelector": not_x}, {"podSelector": {"matchLabels": {"pod": "b"}}}]}]),
            ))]),
        },
        Case {
            name: "PodSelector and NamespaceSelector",
            steps: one(vec![Apply(ingress_a(
                "allow-ns-y-podselector-and-nsselector",
                json!([{"from": [{"namespaceSelector": not_x, "podSelector": {"matchLabels": {"pod": "b"}}}]}]),
            ))]),
        },
        Case {
            name: "multiple PodSelectors and NamespaceSelectors",
            steps: one(vec![Apply(ingress_a(
                "allow-ns-y-z-pod-b-c",
                json!([{"from": [{"namespaceSelector": not_x,
                                  "podSelector": {"matchExpressions": [{"key": "pod", "operator": "In", "values": ["b", "c"]}]}}]}]),
            ))]),
        },
        Case {
            name: "any PodSelectors",
            steps: one(vec![Apply(ingress_a(
                "allow-ns-x-pod-b-c",
                json!([{"from": [{"podSelector": {"matchLabels": {"pod": "b"}}}, {"podSelector": {"matchLabels": {"pod": "c"}}}]}]),
            ))]),
        },
        Case {
            name: "only a pod in a different namespace, by PodSelector and NamespaceSelector",
            steps: one(vec![Apply(ingress_a(
                "allow-ns-y-pod-a-via-namespace-pod-selector",
                json!([{"from": [{"namespaceSelector": ns("y"), "podSelector": pod_a()}]}]),
            ))]),
        },
        Case {
            name: "ports",
            steps: one(vec![Apply(ingress_a(
                "allow-client-a-via-ns-selector",
                json!([{"from": [{"namespaceSelector": ns("y")}], "ports": [{"port": 81, "protocol": "TCP"}]}]),
            ))]),
        },
        Case {
            name: "stacked policies with overlapping podSelectors",
            steps: vec![
                vec![Apply(ingress_a(
                    "allow-client-a-via-ns-selector",
                    json!([{"from": [{"namespaceSelector": ns("y")}], "ports": [{"port": 81, "protocol": "TCP"}]}]),
                ))],
                vec![Apply(ingress_a(
                    "allow-client-a-via-ns-selector-80",
                    json!([{"from": [{"namespaceSelector": ns("y")}], "ports": [{"port": 80, "protocol": "TCP"}]}]),
                ))],
            ],
        },
        Case {
            name: "allow-all",
            steps: one(vec![Apply(np(
                "x",
                "allow-all",
                json!({"podSelector": {}, "ingress": [{}], "policyTypes": ["Ingress"]}),
            ))]),
        },
        Case {
            name: "ingress on one named port",
            steps: one(vec![Apply(np(
                "x",
                "allow-all",
                json!({"podSelector": {}, "ingress": [{"ports": [{"port": "serve-81-tcp"}]}], "policyTypes": ["Ingress"]}),
            ))]),
        },
        Case {
            name: "ingress from a namespace on one named port",
            steps: one(vec![Apply(ingress_a(
                "allow-client-a-via-ns-selector-80",
                json!([{"from": [{"namespaceSelector": ns("y")}], "ports": [{"port": "serve-80-tcp", "protocol": "TCP"}]}]),
            ))]),
        },
        Case {
            name: "egress on one named port",
            steps: one(vec![Apply(np(
                "x",
                "allow-egress",
                json!({"podSelector": {}, "egress": [{"ports": [{"port": "serve-80-tcp"}]}], "policyTypes": ["Egress"]}),
            ))]),
        },
        Case {
            name: "updated policy",
            steps: vec![
                vec![Apply(np(
                    "x",
                    "allow-all-mutate-to-deny-all",
                    json!({"podSelector": {}, "ingress": [{}], "policyTypes": ["Ingress"]}),
                ))],
                vec![Apply(np(
                    "x",
                    "allow-all-mutate-to-deny-all",
                    json!({"podSelector": {}, "ingress": [], "policyTypes": ["Ingress"]}),
                ))],
            ],
        },
        Case {
            name: "ingress from an updated namespace",
            steps: vec![
                vec![Apply(ingress_a(
                    "allow-client-a-via-ns-selector",
                    json!([{"from": [{"namespaceSelector": {"matchLabels": {"ns2": "updated"}}}]}]),
                ))],
                vec![NamespaceLabels("y".into(), json!({NS_LABEL: "y", "ns2": "updated"}))],
            ],
        },
        Case {
            name: "ingress from an updated pod",
            steps: vec![
                vec![Apply(ingress_a(
                    "allow-client-a-via-pod-selector",
                    json!([{"from": [{"podSelector": {"matchLabels": {"pod": "b", "pod2": "updated"}}}]}]),
                ))],
                vec![PodLabels("x/b".into(), json!({"pod": "b", "pod2": "updated"}))],
            ],
        },
        Case {
            name: "deny ingress from pods in other namespaces",
            steps: one(vec![Apply(np(
                "x",
                "deny-empty-policy",
                json!({"podSelector": {}, "ingress": [{"from": [{"podSelector": {"matchLabels": {}}}]}], "policyTypes": ["Ingress"]}),
            ))]),
        },
        Case {
            name: "deny ingress to an updated pod",
            steps: vec![
                vec![Apply(deny_ingress(
                    "deny-ingress-via-label-selector",
                    json!({"matchLabels": {"target": "isolated"}}),
                ))],
                vec![PodLabels("x/a".into(), json!({"pod": "a", "target": "isolated"}))],
            ],
        },
        Case {
            name: "deny egress by PodSelector",
            steps: one(vec![Apply(np(
                "x",
                "deny-egress-pod-a",
                json!({"podSelector": pod_a(), "policyTypes": ["Egress"]}),
            ))]),
        },
        Case {
            name: "deny egress from all pods of a namespace",
            steps: one(vec![Apply(np(
                "x",
                "deny-egress-ns-x",
                json!({"podSelector": {}, "policyTypes": ["Egress"]}),
            ))]),
        },
        Case {
            name: "ingress and egress together",
            steps: one(vec![Apply(np(
                "x",
                "allow-client-a-via-pod-selector",
                json!({"podSelector": pod_a(),
                       "ingress": [{"from": [{"podSelector": {"matchLabels": {"pod": "b"}}}]}],
                       "egress": [{"ports": [{"port": 80}]}],
                       "policyTypes": ["Egress", "Ingress"]}),
            ))]),
        },
        Case {
            name: "egress denied at the client though the server allows it",
            steps: one(vec![
                Apply(egress_a(
                    "allow-to-ns-y-pod-a",
                    json!([{"to": [{"namespaceSelector": ns("y"), "podSelector": pod_a()}]}]),
                )),
                Apply(np(
                    "y",
                    "allow-from-xa-on-ya-match-selector",
                    json!({"podSelector": pod_a(), "ingress": [{"from": [{"namespaceSelector": ns("x"), "podSelector": pod_a()}]}],
                           "policyTypes": ["Ingress"]}),
                )),
                Apply(np(
                    "y",
                    "allow-from-xa-on-yb-match-selector",
                    json!({"podSelector": {"matchLabels": {"pod": "b"}},
                           "ingress": [{"from": [{"namespaceSelector": ns("x"), "podSelector": pod_a()}]}],
                           "policyTypes": ["Ingress"]}),
                )),
            ]),
        },
        Case {
            name: "egress to a server in another namespace by PodSelector and NamespaceSelector",
            steps: one(vec![Apply(egress_a(
                "allow-to-ns-y-pod-a",
                json!([{"to": [{"namespaceSelector": ns("y"), "podSelector": pod_a()}]}]),
            ))]),
        },
        Case {
            name: "ingress on any port of one protocol",
            steps: one(vec![Apply(ingress_a(
                "allow-ingress-by-proto",
                json!([{"ports": [{"protocol": "TCP"}]}]),
            ))]),
        },
        Case {
            name: "ingress allow-all takes precedence",
            steps: vec![
                vec![Apply(np(
                    "x",
                    "allow-ingress-port-80",
                    json!({"podSelector": {}, "ingress": [{"ports": [{"port": 80}]}], "policyTypes": ["Ingress"]}),
                ))],
                vec![Apply(np(
                    "x",
                    "allow-ingress",
                    json!({"podSelector": {}, "ingress": [{}], "policyTypes": ["Ingress"]}),
                ))],
            ],
        },
        Case {
            name: "egress allow-all takes precedence",
            steps: vec![
                vec![Apply(np(
                    "x",
                    "allow-egress-port-80",
                    json!({"podSelector": {}, "egress": [{"ports": [{"port": 80}]}], "policyTypes": ["Egress"]}),
                ))],
                vec![Apply(np(
                    "x",
                    "allow-egress",
                    json!({"podSelector": {}, "egress": [{}], "policyTypes": ["Egress"]}),
                ))],
            ],
        },
        Case {
            name: "policies stop being enforced once deleted",
            steps: vec![
                vec![Apply(np(
                    "x",
                    "deny-all",
                    json!({"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}),
                ))],
                vec![Delete("x".into(), "deny-all".into())],
            ],
        },
        Case {
            name: "egress to a server in a CIDR block",
            steps: one(vec![Apply(egress_a(
                "allow-client-a-via-cidr-egress-rule",
                json!([{"to": [{"ipBlock": {"cidr": format!("{}/32", ip("y/b"))}}]}]),
            ))]),
        },
        Case {
            name: "except in a CIDR block",
            steps: one(vec![Apply(egress_a(
                "allow-client-a-via-cidr-egress-rule",
                json!([{"to": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": [format!("{x_b}/32")]}}]}]),
            ))]),
        },
        Case {
            name: "an address in both a CIDR and its except is allowed by another rule",
            steps: vec![
                vec![Apply(egress_a(
                    "allow-client-a-via-cidr-egress-rule",
                    json!([{"to": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": [format!("{x_b}/32")]}}]}]),
                ))],
                vec![Apply(egress_a(
                    "allow-client-a-via-cidr-egress-rule",
                    json!([{"to": [{"ipBlock": {"cidr": format!("{x_b}/32")}}]}]),
                ))],
            ],
        },
        Case {
            name: "ingress and egress controlled independently",
            steps: vec![
                vec![Apply(egress_a("allow-egress-for-target", json!([{}])))],
                vec![Apply(np(
                    "x",
                    "deny-ingress-via-label-selector",
                    json!({"podSelector": pod_a(), "policyTypes": ["Ingress"]}),
                ))],
            ],
        },
        Case {
            name: "SCTP is not TCP",
            steps: one(vec![
                Apply(deny_ingress("deny-ingress", json!({}))),
                Apply(ingress_a(
                    "allow-only-sctp-ingress-on-port-81",
                    json!([{"ports": [{"port": 81, "protocol": "SCTP"}]}]),
                )),
            ]),
        },
        Case {
            name: "a policy allowing only SCTP isolates",
            steps: one(vec![Apply(ingress_a(
                "allow-only-sctp-ingress-on-port-80",
                json!([{"ports": [{"port": 80, "protocol": "SCTP"}]}]),
            ))]),
        },
        Case {
            name: "a policy allowing only UDP opens no TCP",
            steps: one(vec![Apply(ingress_a(
                "allow-only-udp-ingress-on-port-81",
                json!([{"ports": [{"port": 81, "protocol": "UDP"}]}]),
            ))]),
        },
        Case {
            name: "NamespaceSelector on the default namespace label",
            steps: one(vec![Apply(ingress_a(
                "allow-client-a-via-ns-selector-for-immutable-ns-label",
                json!([{"from": [{"namespaceSelector": ns("y")}]}]),
            ))]),
        },
        Case {
            name: "egress NamespaceSelector NotIn on the default namespace label",
            steps: one(vec![Apply(egress_a(
                "allow-ns-y-match-selector-for-immutable-ns-label",
                json!([{"to": [{"namespaceSelector": {"matchExpressions": [{"key": NS_LABEL, "operator": "NotIn", "values": ["y"]}]}}]}]),
            ))]),
        },
        Case {
            name: "UDP ports",
            steps: one(vec![Apply(ingress_a(
                "allow-ingress-on-port-81-ns-x",
                json!([{"from": [{"namespaceSelector": ns("y")}], "ports": [{"port": 81, "protocol": "UDP"}]}]),
            ))]),
        },
        Case {
            name: "a port range (endPort)",
            steps: one(vec![Apply(ingress_a(
                "allow-81-to-90",
                json!([{"ports": [{"port": 81, "endPort": 90, "protocol": "TCP"}, {"port": 75, "endPort": 80, "protocol": "UDP"}]}]),
            ))]),
        },
        Case {
            name: "seventeen single ports open exactly those",
            steps: one(vec![Apply(ingress_a(
                "seventeen-ports",
                json!([{"ports": (0..17).map(|i| json!({"port": 80 + 2 * i, "protocol": "TCP"})).collect::<Vec<_>>()}]),
            ))]),
        },
        Case {
            name: "ingress from a CIDR holding pod addresses",
            steps: one(vec![Apply(ingress_a(
                "allow-from-node-2-pods",
                json!([{"from": [{"ipBlock": {"cidr": "10.244.2.0/24", "except": [format!("{}/32", ip("z/b"))]}}]}]),
            ))]),
        },
        Case {
            name: "named ports on egress to another namespace",
            steps: one(vec![Apply(egress_a(
                "named-egress-to-y",
                json!([{"to": [{"namespaceSelector": ns("y")}], "ports": [{"port": "serve-81-udp", "protocol": "UDP"}]}]),
            ))]),
        },
    ]
}

#[test]
fn the_upstream_network_policy_cases_agree_with_the_api() {
    let mut lab = Lab::new("npmx");
    let n1 = PolicyNode::new(&mut lab);
    let n2 = n1.join(&mut lab, 2);
    let a1 = n1.start_agent(&mut lab, true);
    let a2 = n2.start_agent(&mut lab, true);

    let mut model = Model::default();
    for ns in NAMESPACES {
        let l = json!({NS_LABEL: ns});
        n1.api.apply_namespace(ns, l.clone());
        model.namespaces.insert(ns.to_string(), labels(&l));
    }
    // Pods alternate between the nodes, so every namespace spans both.
    let names: Vec<String> = NAMESPACES
        .iter()
        .flat_map(|ns| PODS.iter().map(move |p| format!("{ns}/{p}")))
        .collect();
    let ports = container_ports();
    let ports: Vec<(&str, &str, u16)> = ports.iter().map(|(n, p, x)| (n.as_str(), p.as_str(), *x)).collect();
    for (i, pod) in names.iter().enumerate() {
        let node = if i % 2 == 0 { &n1 } else { &n2 };
        let (ns, name) = pod.split_once('/').unwrap();
        let ip = node.wire(&mut lab, &[(&netns(pod), ns, name)]).remove(0);
        let l = json!({"pod": name});
        n1.api.apply_pod(ns, node.pod_here(name, &ip, l.clone(), &ports));
        serve(&lab, &netns(pod), &ip, &[80, 81]);
        serve_udp(&lab, &netns(pod), &ip, &[80, 81]);
        model.pods.insert(pod.clone(), (labels(&l), ip));
    }
    for agent in [&a1, &a2] {
        wait_until(
            &format!("every pod's identity in {}", agent.name),
            Duration::from_secs(30),
            || {
                let n = pod_identities(agent);
                (n == 9).then_some(()).ok_or(format!("{n} identities"))
            },
        );
    }
    let pristine = model.clone();
    let mut cluster = Cluster {
        lab: &lab,
        first: &n1,
        nodes: vec![&n1, &n2],
        agents: vec![&a1, &a2],
        model,
    };
    cluster.check("no policy").unwrap_or_else(|e| panic!("{e}"));

    let ips: BTreeMap<String, String> = pristine
        .pods
        .iter()
        .map(|(k, (_, ip))| (k.clone(), ip.clone()))
        .collect();
    let all = cases(&|p| ips[p].clone());
    let count = all.len();
    let mut failed = Vec::new();
    for (n, case) in all.into_iter().enumerate() {
        for (i, step) in case.steps.iter().enumerate() {
            for c in step {
                cluster.change(c);
            }
            let what = format!("case {}/{count} \"{}\" step {}", n + 1, case.name, i + 1);
            if let Err(e) = cluster.check(&what) {
                failed.push(e);
                break;
            }
        }
        // Back to no policy and the original labels.
        let policies: Vec<(String, String)> = cluster.model.policies.keys().cloned().collect();
        for (ns, name) in policies {
            cluster.first.api.delete_network_policy(&ns, &name);
        }
        cluster.model.policies.clear();
        for (ns, l) in &pristine.namespaces {
            if cluster.model.namespaces[ns] != *l {
                let l = json!(l);
                cluster.change(&Change::NamespaceLabels(ns.clone(), l));
            }
        }
        for (pod, (l, _)) in &pristine.pods {
            if cluster.model.pods[pod].0 != *l {
                cluster.change(&Change::PodLabels(pod.clone(), json!(l)));
            }
        }
        cluster
            .check(&format!("after case {}/{count}", n + 1))
            .unwrap_or_else(|e| panic!("{e}"));
    }
    assert!(
        failed.is_empty(),
        "{} of {count} cases disagree with the API:\n{}",
        failed.len(),
        failed.join("\n")
    );
}
