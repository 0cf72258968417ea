//! The routing resources of `bgp.novanet.io/v1alpha1` (SPEC section 13) in
//! a real kube-apiserver: the chart's CRDs are accepted, good objects are
//! stored, and what a schema can refuse is refused by the server with the
//! field named, through kubectl as an operator would meet it; the node
//! state shows its printer columns.

use novanet_conformance::kube_server::{KubeServer, Options};
use novanet_conformance::Lab;
use std::path::Path;

fn crds() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy/helm/novanet/crds")
        .display()
        .to_string()
}

/// `kubectl apply` of one object from YAML text: whether it was accepted,
/// and what kubectl said.
fn apply(api: &KubeServer, dir: &Path, yaml: &str) -> (bool, String) {
    let file = dir.join(format!("obj-{}.yaml", yaml.len()));
    std::fs::write(&file, yaml).unwrap();
    let r = api.try_kubectl(&["apply", "-f", file.to_str().unwrap()]);
    let _ = std::fs::remove_file(&file);
    r
}

const GOOD: &str = r#"
apiVersion: bgp.novanet.io/v1alpha1
kind: NovaBGPPeerProfile
metadata: {name: tor}
spec:
  holdTimeSeconds: 9
  keepaliveSeconds: 3
  bfd: {minRxMs: 300, minTxMs: 300, multiplier: 3}
  gracefulRestartSeconds: 120
  passwordSecretRef: {name: tor-password}
  maxPrefix: {ipv4: 1000, ipv6: 1000}
---
apiVersion: bgp.novanet.io/v1alpha1
kind: NovaBGPClusterConfig
metadata: {name: rack-a}
spec:
  nodeSelector:
    matchLabels: {topology.kubernetes.io/zone: rack-a}
  peers:
    - {name: tor-a1, address: 10.1.0.1, remoteAS: 65001, profileRef: tor}
    - {name: tor-a2, address: "fd00:1::1", remoteAS: 0, profileRef: tor}
    - {name: uplink, interface: eth1}
    - {name: gateway, autoDiscovery: {mode: DefaultGateway}}
---
apiVersion: bgp.novanet.io/v1alpha1
kind: NovaBGPAdvertisement
metadata: {name: pods, labels: {advertise: pods}}
spec:
  communities: ["65000:100", "65000:1:2"]
  localPreference: 200
  asPathPrepend: 2
---
apiVersion: bgp.novanet.io/v1alpha1
kind: NovaBGPNodeOverride
metadata: {name: node-a}
spec: {routerID: 10.1.0.11, localAS: 65011, sourceAddress: 10.1.0.11}
"#;

#[test]
fn the_routing_resources_are_checked_by_the_api_server() {
    let mut lab = Lab::new("kres");
    lab.add_ns("api");
    let api = KubeServer::start(&mut lab, "api", "127.0.0.1:6443", Options::default());
    api.kubectl(&["apply", "-f", &crds()]);
    api.kubectl(&[
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        "crd",
        "novabgpclusterconfigs.bgp.novanet.io",
        "novabgppeerprofiles.bgp.novanet.io",
        "novabgpadvertisements.bgp.novanet.io",
        "novabgpnodeoverrides.bgp.novanet.io",
        "novabgpnodestates.bgp.novanet.io",
    ]);

    let (ok, out) = apply(&api, lab.dir(), GOOD);
    assert!(ok, "the good objects were refused: {out}");
    let stored = api.kubectl(&[
        "get",
        "novabgpclusterconfig",
        "rack-a",
        "-o",
        "jsonpath={.spec.peers[*].name}",
    ]);
    assert_eq!(stored, "tor-a1 tor-a2 uplink gateway");
    let key = api.kubectl(&[
        "get",
        "novabgppeerprofile",
        "tor",
        "-o",
        "jsonpath={.spec.passwordSecretRef.key}",
    ]);
    assert_eq!(key, "password", "the Secret's key defaults to password");

    // Each bad object: what it is, and the field and words the server's
    // refusal must name.
    let cluster = |peers: &str| {
        format!("apiVersion: bgp.novanet.io/v1alpha1\nkind: NovaBGPClusterConfig\nmetadata: {{name: bad}}\nspec:\n  peers: {peers}\n")
    };
    let profile = |spec: &str| {
        format!(
            "apiVersion: bgp.novanet.io/v1alpha1\nkind: NovaBGPPeerProfile\nmetadata: {{name: bad}}\nspec: {spec}\n"
        )
    };
    let bad: Vec<(String, &[&str])> = vec![
        (
            cluster("[{name: t, address: 10.0.0.1, interface: eth0}]"),
            &["spec.peers[0]", "exactly one of address, interface or autoDiscovery"],
        ),
        (
            cluster("[{name: t}]"),
            &["spec.peers[0]", "exactly one of address, interface or autoDiscovery"],
        ),
        (
            cluster("[{name: t, address: 10.0.0.300}]"),
            &["spec.peers[0].address", "must be an IPv4 or IPv6 address"],
        ),
        (
            cluster("[{name: t, address: 10.0.0.1, remoteAS: 4294967296}]"),
            &["spec.peers[0].remoteAS"],
        ),
        (
            cluster("[{name: t, address: 10.0.0.1}, {name: t, address: 10.0.0.2}]"),
            &["spec.peers[1]", "Duplicate value"],
        ),
        (
            cluster("[{name: t, autoDiscovery: {mode: Neighbours}}]"),
            &["spec.peers[0].autoDiscovery.mode", "DefaultGateway"],
        ),
        (
            "apiVersion: bgp.novanet.io/v1alpha1\nkind: NovaBGPClusterConfig\nmetadata: {name: bad}\nspec:\n  nodeSelector: {matchExpressions: [{key: zone, operator: Maybe}]}\n".to_string(),
            &["spec.nodeSelector.matchExpressions[0].operator"],
        ),
        (
            profile("{holdTimeSeconds: 2}"),
            &["spec.holdTimeSeconds", "must be 0 or at least 3"],
        ),
        (
            profile("{holdTimeSeconds: 9, keepaliveSeconds: 5}"),
            &["spec", "keepaliveSeconds must be at most a third of holdTimeSeconds"],
        ),
        (profile("{bfd: {minRxMs: 1}}"), &["spec.bfd.minRxMs"]),
        (profile("{ebgpMultihop: 0}"), &["spec.ebgpMultihop"]),
        (
            "apiVersion: bgp.novanet.io/v1alpha1\nkind: NovaBGPAdvertisement\nmetadata: {name: bad}\nspec: {communities: [\"70000:1\"]}\n".to_string(),
            &["spec.communities[0]", "must be ASN:value"],
        ),
        (
            "apiVersion: bgp.novanet.io/v1alpha1\nkind: NovaBGPNodeOverride\nmetadata: {name: bad}\nspec: {routerID: \"fd00::1\"}\n".to_string(),
            &["spec.routerID", "must be an IPv4 address"],
        ),
    ];
    for (yaml, words) in &bad {
        let (ok, out) = apply(&api, lab.dir(), yaml);
        assert!(!ok, "accepted: {yaml}");
        for w in *words {
            assert!(out.contains(w), "the refusal of\n{yaml}\nnames {w:?}: {out}");
        }
    }
    let left = api.kubectl(&["get", "novabgpclusterconfigs,novabgppeerprofiles", "-o", "name"]);
    assert!(!left.contains("/bad"), "nothing refused was stored: {left}");

    // A node's state, as its agent writes it (status subresource), and the
    // columns kubectl shows.
    let (ok, out) = apply(
        &api,
        lab.dir(),
        "apiVersion: bgp.novanet.io/v1alpha1\nkind: NovaBGPNodeState\nmetadata: {name: node-a}\n",
    );
    assert!(ok, "{out}");
    api.kubectl(&[
        "patch",
        "novabgpnodestate",
        "node-a",
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status": {"peersSummary": "3/4", "lastUpdateTime": "2026-12-07T10:00:00Z",
            "peers": [{"name": "tor-a1", "address": "10.1.0.1", "remoteAS": 65001, "state": "Established",
                       "received": {"ipv4-unicast": 5}, "advertised": {"ipv4-unicast": 1}, "bfd": "Up"}]}}"#,
    ]);
    let table = api.kubectl(&["get", "novabgpnodestates"]);
    let header = table.lines().next().unwrap_or_default();
    assert!(header.contains("PEERS UP") && header.contains("UPDATED"), "{table}");
    assert!(
        table
            .lines()
            .nth(1)
            .is_some_and(|l| l.starts_with("node-a") && l.contains("3/4")),
        "{table}"
    );
}
