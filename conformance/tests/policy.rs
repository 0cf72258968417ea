//! Identity policy end to end: an agent with `datapath.enabled` reads its
//! Node, the Pods, Namespaces and NetworkPolicies from a real
//! kube-apiserver with the chart's RBAC; pods are wired by novanet-cni as a
//! runtime calls it; TCP between them passes, is dropped (and shows in the
//! agent's drop events) and passes again as NetworkPolicies come and go,
//! without restarting anything; after the agent is killed the pinned
//! programs and maps keep enforcing, and a new agent takes over from them.

use novanet_conformance::agent::ctl_binary;
use novanet_conformance::policy_node::{datapath_status, pod_identities, reaches, serve, PolicyNode};
use novanet_conformance::{wait_until, Agent, Lab};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// novanetctl on the agent's socket.
fn ctl(agent: &Agent, args: &[&str]) -> String {
    let out = std::process::Command::new(ctl_binary())
        .arg("--socket")
        .arg(&agent.socket)
        .args(args)
        .output()
        .expect("novanetctl");
    assert!(
        out.status.success(),
        "novanetctl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn network_policies_decide_what_reaches_a_pod() {
    let mut lab = Lab::new("policy");
    let node = PolicyNode::new(&mut lab);
    let api = &node.api;
    let agent = node.start_agent(&mut lab, true);

    // Two pods through the plugin, as a runtime wires them.
    let ips = node.wire_pods(&mut lab, &["web", "client"]);
    let (web_ip, client_ip) = (ips[0].clone(), ips[1].clone());
    api.apply_pod("default", PolicyNode::pod_object("web", &web_ip, json!({"app": "web"})));
    api.apply_pod(
        "default",
        PolicyNode::pod_object("client", &client_ip, json!({"app": "client"})),
    );
    serve(&lab, "web", &web_ip, &[80, 81]);
    wait_until("the programs on both pods", Duration::from_secs(10), || {
        let v = datapath_status(&agent, "");
        let attached = v["attached"].as_array().map(|a| a.len()).unwrap_or(0);
        (attached == 2)
            .then_some(())
            .ok_or(format!("{attached} attached: {v} {:?}", agent.get("/status/datapath")))
    });
    wait_until("the pods' identities", Duration::from_secs(10), || {
        let n = pod_identities(&agent);
        (n == 2).then_some(()).ok_or(format!("{n} identities"))
    });

    // No policy: open.
    assert!(reaches(&lab, "client", &web_ip, 80));
    assert!(reaches(&lab, "client", &web_ip, 81));

    // Only app=client, only TCP 80.
    let changed = Instant::now();
    api.apply_network_policy(json!({
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {"podSelector": {"matchLabels": {"app": "web"}},
                 "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "client"}}}],
                              "ports": [{"protocol": "TCP", "port": 80}]}]}
    }));
    wait_until("TCP 81 to be dropped", Duration::from_secs(10), || {
        (!reaches(&lab, "client", &web_ip, 81)).then_some(()).ok_or_else(|| {
            format!(
                "{} | {}",
                datapath_status(&agent, ""),
                agent.log(&lab).lines().rev().take(5).collect::<Vec<_>>().join(" / ")
            )
        })
    });
    eprintln!(
        "policy applied in the datapath {:?} after the API server had it",
        changed.elapsed()
    );
    assert!(
        reaches(&lab, "client", &web_ip, 80),
        "the allowed port still passes (replies too)"
    );
    // The drop as operators see it: novanetctl drops, and /status/datapath.
    wait_until("the drop in novanetctl drops", Duration::from_secs(10), || {
        let out = ctl(&agent, &["drops", "-o", "json", "--no-follow"]);
        let seen = out
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .any(|e| {
                e["dst"] == json!(web_ip)
                    && e["dport"] == 81
                    && e["src_name"] == "default app=client"
                    && e["direction"] == "ingress"
            });
        seen.then_some(()).ok_or(out)
    });
    let events = datapath_status(&agent, "?events=drop")["events"].clone();
    assert!(events.as_array().is_some_and(|a| !a.is_empty()), "{events}");
    let ids: Value = serde_json::from_str(&ctl(&agent, &["identity", "-o", "json"])).unwrap();
    let web = ids
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["labels"]["app"] == "web")
        .expect("web's identity");
    assert_eq!(web["ingress_isolated"], true);
    let text = ctl(&agent, &["policy"]);
    assert!(text.contains("NetworkPolicies:     1"), "{text}");
    let metrics = agent.get("/metrics").unwrap();
    assert!(
        metrics.contains("novanet_policy_verdicts_total{direction=\"ingress\",verdict=\"deny\"}"),
        "{metrics}"
    );

    // Another label: the same pod no longer matches the peer.
    api.apply_pod(
        "default",
        PolicyNode::pod_object("client", &client_ip, json!({"app": "other"})),
    );
    wait_until("the relabelled client to be refused", Duration::from_secs(10), || {
        (!reaches(&lab, "client", &web_ip, 80))
            .then_some(())
            .ok_or(String::new())
    });

    // The policy gone: open again.
    api.delete_network_policy("default", "web");
    wait_until("web open again", Duration::from_secs(10), || {
        reaches(&lab, "client", &web_ip, 81).then_some(()).ok_or(String::new())
    });

    // Deny all ingress, then kill the agent: the pinned programs and maps
    // keep enforcing without it.
    api.apply_network_policy(json!({
        "metadata": {"name": "deny", "namespace": "default"},
        "spec": {"podSelector": {}, "policyTypes": ["Ingress"]}
    }));
    wait_until("everything to web dropped", Duration::from_secs(10), || {
        (!reaches(&lab, "client", &web_ip, 80))
            .then_some(())
            .ok_or(String::new())
    });
    lab.signal(&agent.name, libc::SIGKILL);
    lab.wait_exit(&agent.name, Duration::from_secs(10));
    assert!(
        !reaches(&lab, "client", &web_ip, 80),
        "still enforced with the agent gone"
    );
    assert!(!reaches(&lab, "client", &web_ip, 81));
}

/// A pod is protected from its CNI ADD on: in a namespace whose policy
/// admits only app=client, a pod the API server has not reported yet
/// (the kubelet writes its address after ADD) takes no connection from
/// another pod, and takes the client's; once its Pod is listed it keeps
/// exactly that.
#[test]
fn a_pod_not_yet_reported_is_not_open_in_a_policy_isolated_namespace() {
    let mut lab = Lab::new("polnew");
    let node = PolicyNode::new(&mut lab);
    let api = &node.api;
    let mut agent = node.start_agent(&mut lab, true);
    let ips = node.wire_pods(&mut lab, &["client", "stranger"]);
    for (name, ip) in ["client", "stranger"].iter().zip(&ips) {
        api.apply_pod("default", PolicyNode::pod_object(name, ip, json!({"app": name})));
    }
    api.apply_network_policy(json!({
        "metadata": {"name": "clients-only", "namespace": "default"},
        "spec": {"podSelector": {}, "policyTypes": ["Ingress"],
                 "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "client"}}}]}]}
    }));
    wait_until("the policy and both pods in the maps", Duration::from_secs(20), || {
        let v = datapath_status(&agent, "");
        (v["policies"] == 1 && pod_identities(&agent) == 2)
            .then_some(())
            .ok_or(v.to_string())
    });

    // A new pod, through the plugin, unknown to the API server.
    let fresh = node.wire_pods(&mut lab, &["fresh"]).remove(0);
    serve(&lab, "fresh", &fresh, &[80]);
    assert!(
        reaches(&lab, "client", &fresh, 80),
        "the rule for every pod of the namespace admits the client"
    );
    assert!(
        !reaches(&lab, "stranger", &fresh, 80),
        "a pod not reported yet was open to a pod the namespace's policy refuses"
    );
    let v = datapath_status(&agent, "");
    assert!(
        v["identities"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|i| i["labels"]["novanet.io/unresolved"] == "true" && i["ingress_isolated"] == true),
        "{v}"
    );

    // An agent restart before the Pod is reported: the new agent takes
    // the pod from its address store, not as open.
    lab.signal(&agent.name, libc::SIGKILL);
    lab.wait_exit(&agent.name, Duration::from_secs(10));
    agent = node.start_agent(&mut lab, true);
    wait_until("the agent ready again", Duration::from_secs(30), || {
        agent.get("/readyz").map(|_| ())
    });
    assert!(reaches(&lab, "client", &fresh, 80), "after the restart");
    assert!(
        !reaches(&lab, "stranger", &fresh, 80),
        "after the restart, the pod not reported yet was open"
    );
    let v = datapath_status(&agent, "");
    assert!(
        v["identities"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|i| i["labels"]["novanet.io/unresolved"] == "true" && i["ingress_isolated"] == true),
        "after the restart: {v}"
    );

    // Reported: its own identity, the same verdicts.
    api.apply_pod(
        "default",
        PolicyNode::pod_object("fresh", &fresh, json!({"app": "fresh"})),
    );
    wait_until("the pod's own identity", Duration::from_secs(10), || {
        let v = datapath_status(&agent, "");
        let own = v["identities"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|i| i["labels"]["app"] == "fresh");
        own.then_some(()).ok_or(v.to_string())
    });
    assert!(reaches(&lab, "client", &fresh, 80));
    assert!(!reaches(&lab, "stranger", &fresh, 80));
}

/// A Service is judged by its backends: the programs run before
/// kube-proxy's DNAT (here an nftables DNAT in the node, as kube-proxy
/// writes it), so a pod allowed "the internet but not the cluster" must
/// not reach a pod through its ClusterIP; allowed to the backends, it
/// reaches them through the ClusterIP too; and a Service with a backend its
/// policy refuses is refused as a whole (never more than the policy says).
#[test]
fn a_service_is_judged_by_its_backends() {
    let mut lab = Lab::new("polsvc");
    let node = PolicyNode::new(&mut lab);
    let api = &node.api;
    let agent = node.start_agent(&mut lab, true);
    let ips = node.wire_pods(&mut lab, &["client", "web", "other"]);
    let (client, web, other) = (ips[0].clone(), ips[1].clone(), ips[2].clone());
    for (name, ip) in [("client", &client), ("web", &web), ("other", &other)] {
        api.apply_pod("default", PolicyNode::pod_object(name, ip, json!({"app": name})));
    }
    serve(&lab, "web", &web, &[8080]);
    serve(&lab, "other", &other, &[8080]);
    // kube-proxy's part: the ClusterIP DNATed to web in the node.
    let cluster_ip = "10.96.0.10";
    for rule in [
        "add table ip kubeproxy".to_string(),
        "add chain ip kubeproxy pre { type nat hook prerouting priority -100 ; }".to_string(),
        format!("add rule ip kubeproxy pre ip daddr {cluster_ip} tcp dport 80 dnat to {web}:8080"),
    ] {
        lab.exec("n1", "nft", &rule.split(' ').collect::<Vec<_>>());
    }
    api.apply_service_object(
        "Service",
        "default",
        json!({"metadata": {"name": "web"},
               "spec": {"type": "ClusterIP", "clusterIP": cluster_ip, "clusterIPs": [cluster_ip],
                        "ports": [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": 8080}]}}),
    );
    let slice = |backends: &[&str]| {
        json!({"metadata": {"name": "web-x1", "labels": {"kubernetes.io/service-name": "web"}},
               "addressType": "IPv4",
               "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
               "endpoints": backends.iter().map(|b| json!({"addresses": [b]})).collect::<Vec<_>>()})
    };
    api.apply_service_object("EndpointSlice", "default", slice(&[&web]));
    wait_until("the Service's identity", Duration::from_secs(20), || {
        let v = datapath_status(&agent, "");
        let seen = v["identities"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|i| i["labels"]["novanet.io/service"] == "web");
        seen.then_some(()).ok_or(v.to_string())
    });
    assert!(reaches(&lab, "client", cluster_ip, 80), "the ClusterIP leads to web");

    // The internet, not the cluster.
    let internet = json!({"metadata": {"name": "internet-only", "namespace": "default"},
        "spec": {"podSelector": {"matchLabels": {"app": "client"}}, "policyTypes": ["Egress"],
                 "egress": [{"to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": ["10.244.0.0/16"]}}]}]}});
    api.apply_network_policy(internet);
    wait_until("web refused to the client", Duration::from_secs(20), || {
        (!reaches(&lab, "client", &web, 8080))
            .then_some(())
            .ok_or_else(String::new)
    });
    assert!(
        !reaches(&lab, "client", cluster_ip, 80),
        "the client reached web through its ClusterIP past a policy refusing web"
    );

    // Allowed to web's pods: through the ClusterIP too.
    api.apply_network_policy(json!({"metadata": {"name": "to-web", "namespace": "default"},
        "spec": {"podSelector": {"matchLabels": {"app": "client"}}, "policyTypes": ["Egress"],
                 "egress": [{"to": [{"podSelector": {"matchLabels": {"app": "web"}}}],
                             "ports": [{"port": 8080, "protocol": "TCP"}]}]}}));
    wait_until("the client reaches the Service", Duration::from_secs(20), || {
        reaches(&lab, "client", cluster_ip, 80)
            .then_some(())
            .ok_or_else(String::new)
    });
    assert!(reaches(&lab, "client", &web, 8080));
    assert!(!reaches(&lab, "client", &other, 8080));

    // A backend the policy refuses: the Service is refused as a whole.
    api.apply_service_object("EndpointSlice", "default", slice(&[&web, &other]));
    wait_until("the Service refused", Duration::from_secs(20), || {
        (!reaches(&lab, "client", cluster_ip, 80))
            .then_some(())
            .ok_or_else(String::new)
    });
    assert!(reaches(&lab, "client", &web, 8080), "web itself stays allowed");

    // The refused backend gone: the Service opens again.
    api.apply_service_object("EndpointSlice", "default", slice(&[&web]));
    wait_until("the Service allowed again", Duration::from_secs(20), || {
        reaches(&lab, "client", cluster_ip, 80)
            .then_some(())
            .ok_or_else(String::new)
    });
}
