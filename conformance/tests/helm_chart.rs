//! The Helm chart with real tools: `helm lint` and `helm template` (helm v4)
//! with the default, native-BGP and OSPF values, every rendered object
//! validated offline against the Kubernetes 1.35 schemas
//! (`kubernetes-validate --strict`), the rendered agent configuration
//! accepted by `novanet-agent --check-config`, bad values refused by the
//! chart's schema, and the plain manifests equal to a fresh render.
//! The tools are installed by `scripts/install-k8s-tools.sh`.

use novanet_conformance::agent::agent_binary;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn chart() -> PathBuf {
    root().join("deploy/helm/novanet")
}

fn tool(name: &str) -> PathBuf {
    let dir = std::env::var("NOVANET_TOOLS").unwrap_or_else(|_| "/usr/local/lib/novanet-tools".into());
    let p = Path::new(&dir).join("bin").join(name);
    assert!(p.exists(), "{} missing: run scripts/install-k8s-tools.sh", p.display());
    p
}

fn run(cmd: &mut Command) -> Output {
    cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"))
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// `helm template` with these values files and `--set`s.
fn template(values: &[&str], sets: &[&str]) -> Output {
    let mut c = Command::new(tool("helm"));
    c.args(["template", "novanet"])
        .arg(chart())
        .args(["--namespace", "nova-system"]);
    for v in values {
        c.arg("-f").arg(chart().join(v));
    }
    for s in sets {
        c.args(["--set", s]);
    }
    run(&mut c)
}

fn documents(yaml: &str) -> Vec<Value> {
    yaml.split("\n---")
        .filter_map(|d| serde_yaml_ng::from_str::<Value>(d).ok())
        .filter(|v| v.is_object())
        .collect()
}

fn find<'a>(docs: &'a [Value], kind: &str) -> Option<&'a Value> {
    docs.iter().find(|d| d["kind"] == kind)
}

const VALUES: [(&str, &[&str]); 3] = [
    ("default", &[]),
    ("native BGP", &["ci/native-bgp-values.yaml"]),
    ("OSPF", &["ci/ospf-values.yaml"]),
];

#[test]
fn the_chart_lints_renders_and_validates_with_every_values_set() {
    let dir = std::env::temp_dir().join(format!("novanet-chart-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (name, values) in VALUES {
        let mut lint = Command::new(tool("helm"));
        lint.arg("lint").arg(chart());
        for v in values {
            lint.arg("-f").arg(chart().join(v));
        }
        let o = run(&mut lint);
        assert!(o.status.success(), "helm lint ({name}): {}", text(&o));

        let o = template(values, &[]);
        assert!(o.status.success(), "helm template ({name}): {}", text(&o));
        let yaml = String::from_utf8(o.stdout).unwrap();
        let file = dir.join(format!("{}.yaml", name.replace(' ', "-")));
        std::fs::write(&file, &yaml).unwrap();
        let o = run(Command::new("kubernetes-validate")
            .args(["-k", "1.35.0", "--strict"])
            .arg(&file));
        let out = text(&o);
        assert!(o.status.success() && !out.contains("failed"), "schemas ({name}): {out}");
        let docs = documents(&yaml);
        // The routing resources have no offline schema: the API server
        // checks them against the chart's CRDs (the real-server test).
        let ours = docs
            .iter()
            .filter(|d| d["apiVersion"] == "bgp.novanet.io/v1alpha1")
            .count();
        assert_eq!(
            out.matches(" passed ").count(),
            docs.len() - ours,
            "every object validated ({name}): {out}"
        );
        assert_eq!(
            out.matches("Couldn't find schema").count(),
            ours,
            "only the routing resources lack an offline schema ({name}): {out}"
        );

        // The agent accepts the configuration the chart renders.
        let cm = find(&docs, "ConfigMap").expect("the agent's ConfigMap");
        let config = cm["data"]["novanet.json"].as_str().expect("novanet.json key");
        // The token files the Secret mounts, here in a directory of the test.
        let tokens = dir.join("tokens");
        std::fs::create_dir_all(&tokens).unwrap();
        let parsed: Value = serde_json::from_str(config).expect("novanet.json is JSON");
        for owner in parsed["owners"].as_object().unwrap().keys() {
            std::fs::write(tokens.join(owner), format!("{owner}-token-from-the-secret")).unwrap();
        }
        let config = config.replace("/etc/novanet/tokens/", &format!("{}/", tokens.display()));
        // The mesh's BFD key the Secret mounts, likewise.
        let key = dir.join("mesh-bfd-key");
        std::fs::write(&key, "mesh-key-from-secret\n").unwrap();
        let config = config.replace("/etc/novanet/mesh-bfd/key", &key.display().to_string());
        // The mesh's and the ToRs' passwords the Secrets mount, likewise.
        let secrets = dir.join("secrets");
        std::fs::create_dir_all(secrets.join("tor-passwords")).unwrap();
        std::fs::write(secrets.join("mesh-password"), "mesh-password-from-secret\n").unwrap();
        std::fs::write(secrets.join("tor-passwords/tor-b"), "tor-b-password\n").unwrap();
        std::fs::create_dir_all(secrets.join("tor-bfd-keys")).unwrap();
        std::fs::write(secrets.join("tor-bfd-keys/tor-b"), "tor-b-bfd-key\n").unwrap();
        std::fs::write(secrets.join("ospf-key"), "0spf-key\n").unwrap();
        let config = config
            .replace(
                "/etc/novanet/mesh-bgp/password",
                &secrets.join("mesh-password").display().to_string(),
            )
            .replace(
                "/etc/novanet/ospf-key/key",
                &secrets.join("ospf-key").display().to_string(),
            )
            .replace("/etc/novanet/peer-secrets/", &format!("{}/", secrets.display()));
        let config_file = dir.join(format!("{}.json", name.replace(' ', "-")));
        std::fs::write(&config_file, &config).unwrap();
        let o = run(Command::new(agent_binary())
            .arg("--check-config")
            .arg(&config_file)
            .env("NOVANET_NODE_NAME", "node-a"));
        assert!(o.status.success(), "--check-config ({name}): {}\n{config}", text(&o));
        if name == "native BGP" {
            assert_eq!(
                parsed["owners"]["fabric"]["capabilities"]["peers"]["remote_as"],
                serde_json::json!([65001, "65100-65199"])
            );
            assert!(parsed["owners"]["admin"].get("capabilities").is_none());
            assert_eq!(parsed["routing"]["node_mesh"]["bfd_min_ttl"], 254);
            assert_eq!(
                parsed["routing"]["node_mesh"]["password_file"],
                "/etc/novanet/mesh-bgp/password"
            );
            // A ToR's password from a Secret is a file the DaemonSet
            // mounts; none is in the ConfigMap. (tor-a went to the routing
            // resources; tor-b stays for its BFD key.)
            let tor_b = &parsed["routing"]["peers"][0];
            assert_eq!(tor_b["password_file"], "/etc/novanet/peer-secrets/tor-passwords/tor-b");
            assert!(tor_b.get("password").is_none() && tor_b.get("password_secret").is_none());
            assert_eq!(tor_b["bfd_key_file"], "/etc/novanet/peer-secrets/tor-bfd-keys/tor-b");
            assert!(tor_b.get("bfd_key_secret").is_none());
            assert_eq!(
                parsed["routing"]["node_mesh"]["bfd_key_file"],
                "/etc/novanet/mesh-bfd/key"
            );
            let ds = find(&docs, "DaemonSet").expect("DaemonSet");
            let volumes = ds["spec"]["template"]["spec"]["volumes"].as_array().unwrap();
            let secret = volumes
                .iter()
                .find(|v| v["name"] == "mesh-bfd-key")
                .expect("the key's volume");
            assert_eq!(secret["secret"]["secretName"], "novanet-mesh-bfd");
        }
        if name == "OSPF" {
            assert_eq!(parsed["routing"]["protocol"], "ospf");
            assert_eq!(parsed["routing"]["frr_socket_dir"], "/run/frr");
            assert_eq!(parsed["routing"]["node_mesh"]["enabled"], false);
            assert_eq!(parsed["routing"]["ospf"]["interfaces"][0]["interface_name"], "eth0");
            assert_eq!(
                parsed["routing"]["ospf"]["authentication_key_file"],
                "/etc/novanet/ospf-key/key"
            );
            assert_eq!(parsed["routing"]["ospf"]["authentication_key_id"], 2);
            let ds = find(&docs, "DaemonSet").expect("DaemonSet");
            let volumes = ds["spec"]["template"]["spec"]["volumes"].as_array().unwrap();
            let key = volumes
                .iter()
                .find(|v| v["name"] == "ospf-key")
                .expect("the OSPF key's volume");
            assert_eq!(key["secret"]["secretName"], "novanet-ospf");
            let frr = docs
                .iter()
                .find(|d| d["kind"] == "ConfigMap" && d["data"]["daemons"].is_string())
                .expect("the sidecar's ConfigMap");
            assert!(
                frr["data"]["daemons"]
                    .as_str()
                    .unwrap()
                    .contains("ospfd_options=\"  -A 127.0.0.1 -P 0\""),
                "the sidecar's vty has no TCP port"
            );
        }

        check_daemonset(name, &docs);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

fn check_daemonset(name: &str, docs: &[Value]) {
    let ds = find(docs, "DaemonSet").expect("DaemonSet");
    let spec = &ds["spec"]["template"]["spec"];
    assert_eq!(spec["hostNetwork"], true);
    assert_eq!(spec["dnsPolicy"], "ClusterFirstWithHostNet");
    assert_eq!(spec["priorityClassName"], "system-node-critical");
    assert_eq!(spec["tolerations"][0]["operator"], "Exists");
    assert_eq!(ds["spec"]["updateStrategy"]["rollingUpdate"]["maxUnavailable"], 1);
    assert!(spec["terminationGracePeriodSeconds"].as_u64().unwrap() > 5 + 30);
    let containers = spec["containers"].as_array().unwrap();
    let agent = &containers[0];
    assert_eq!(agent["name"], "agent");
    let sc = &agent["securityContext"];
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["capabilities"]["drop"][0], "ALL");
    // SYS_NICE for the BFD thread's real-time scheduling, BPF for the
    // identity policy programs (datapath.enabled, the default).
    assert_eq!(
        sc["capabilities"]["add"],
        serde_json::json!(["NET_ADMIN", "NET_RAW", "NET_BIND_SERVICE", "SYS_NICE", "BPF"])
    );
    // The CNI plugin and its conflist come from the init container.
    let inits = spec["initContainers"].as_array().expect("init containers");
    let init = inits.iter().find(|c| c["name"] == "install-cni").expect("install-cni");
    assert_eq!(init["command"][0], "/usr/bin/novanet-cni");
    assert_eq!(init["command"][1], "install");
    let volumes = spec["volumes"].as_array().unwrap();
    let host_path = |name: &str| {
        volumes
            .iter()
            .find(|v| v["name"] == name)
            .map(|v| v["hostPath"]["path"].clone())
    };
    assert_eq!(
        host_path("bpffs"),
        Some(serde_json::json!("/sys/fs/bpf/novanet")),
        "only the agent's pin directory of the host's bpffs"
    );
    assert_eq!(host_path("cni-bin"), Some(serde_json::json!("/opt/cni/bin")));
    assert_eq!(host_path("cni-conf"), Some(serde_json::json!("/etc/cni/net.d")));
    assert_eq!(agent["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(agent["readinessProbe"]["httpGet"]["path"], "/readyz");
    let env = &agent["env"][0];
    assert_eq!(
        (env["name"].as_str(), env["valueFrom"]["fieldRef"]["fieldPath"].as_str()),
        (Some("NOVANET_NODE_NAME"), Some("spec.nodeName"))
    );
    let socket = spec["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "socket")
        .unwrap();
    assert_eq!(socket["hostPath"]["path"], "/run/novaroute");
    // The kernel setting the agent's read-only /proc/sys cannot take, in
    // the BGP mode only.
    let kernel = inits.iter().find(|c| c["name"] == "kernel-settings");
    assert_eq!(kernel.is_some(), name != "OSPF", "{inits:?}");
    if let Some(k) = kernel {
        assert!(k["securityContext"]["privileged"].is_null(), "not privileged: {k}");
        assert_eq!(
            k["securityContext"]["capabilities"]["add"],
            serde_json::json!(["NET_ADMIN"])
        );
        assert_eq!(k["securityContext"]["capabilities"]["drop"], serde_json::json!(["ALL"]));
        assert_eq!(k["env"][0]["value"], "/host/proc/sys/net");
        assert_eq!(host_path("host-proc-sys-net"), Some(serde_json::json!("/proc/sys/net")));
        assert_eq!(k["command"][3], "--prepare-kernel");
    }
    assert_eq!(
        spec["securityContext"]["seccompProfile"]["type"], "RuntimeDefault",
        "the runtime's seccomp profile"
    );
    // No container of the chart is privileged.
    assert!(
        !serde_json::to_string(&ds).unwrap().contains("\"privileged\":true"),
        "a privileged container"
    );
    assert_eq!(
        containers.iter().any(|c| c["name"] == "ospfd"),
        name == "OSPF",
        "an ospfd sidecar only with routing.protocol=ospf"
    );
    let role = find(docs, "ClusterRole").expect("ClusterRole");
    let rules = role["rules"].as_array().unwrap();
    assert_eq!(
        rules.len(),
        7,
        "nodes, events, the routing resources, the node state, and what identity policy reads: {rules:?}"
    );
    assert_eq!(rules[0]["resources"], serde_json::json!(["nodes"]));
    assert_eq!(rules[0]["verbs"], serde_json::json!(["get", "list", "watch"]));
    assert_eq!(
        rules[2]["resources"],
        serde_json::json!([
            "novabgpclusterconfigs",
            "novabgppeerprofiles",
            "novabgpadvertisements",
            "novabgpnodeoverrides"
        ])
    );
    assert_eq!(
        rules[3]["resources"],
        serde_json::json!(["novabgpnodestates", "novabgpnodestates/status"])
    );
    assert_eq!(rules[3]["verbs"], serde_json::json!(["get", "create", "patch"]));
    assert_eq!(
        rules[4]["resources"],
        serde_json::json!(["pods", "namespaces", "services"])
    );
    assert_eq!(rules[5]["resources"], serde_json::json!(["networkpolicies"]));
    assert_eq!(rules[6]["resources"], serde_json::json!(["endpointslices"]));
    for r in rules[2..].iter().filter(|r| r["resources"][0] != "novabgpnodestates") {
        assert_eq!(r["verbs"], serde_json::json!(["get", "list", "watch"]), "read only");
    }
}

#[test]
fn bad_values_are_refused_with_the_key_that_is_wrong() {
    for (sets, expect) in [
        (&["routing.bfd.minRxMs=fast"][..], "minRxMs"),
        (&["routing.bogus=1"][..], "bogus"),
        (&["routing.protocol=isis"][..], "protocol"),
        (
            &[
                "routing.peers[0].neighbor_address=10.0.0.1",
                "routing.peers[0].remote_as=0",
            ][..],
            "remote_as",
        ),
        (
            &[
                "routing.peers[0].neighbor_address=10.0.0.1",
                "routing.peers[0].remoteAs=65000",
            ][..],
            "remoteAs",
        ),
        (&["config.routingMode=overlay"][..], "routingMode"),
        (
            &[
                "routing.peers[0].neighbor_address=10.0.0.1",
                "routing.peers[0].remote_as=65000",
                "routing.peers[0].password=x",
                "routing.peers[0].password_secret.name=s",
                "routing.peers[0].password_secret.key=k",
            ][..],
            "not",
        ),
        (
            &[
                "owners.x.allowed_prefixes.type=any",
                "owners.x.capabilities.peers.remote_as[0]=65001",
            ][..],
            "neighbors",
        ),
        (
            &[
                "owners.x.allowed_prefixes.type=any",
                "owners.x.capabilities.configure_bpg=true",
            ][..],
            "configure_bpg",
        ),
        // A peer is given by address or by interface.
        (&["routing.peers[0].remote_as=65000"][..], "oneOf"),
        (
            &["routing.peers[0].interface=eth0 x", "routing.peers[0].remote_as=65000"][..],
            "interface",
        ),
        (
            &[
                "routing.protocol=ospf",
                "routing.peers[0].neighbor_address=10.0.0.1",
                "routing.peers[0].remote_as=65000",
            ][..],
            "routing.peers must be empty with routing.protocol=ospf",
        ),
        (
            &[
                "routing.protocol=ospf",
                "routing.ospf.interfaces[0].interface_name=eth0 x",
            ][..],
            "interface_name",
        ),
    ] {
        let o = template(&[], sets);
        let out = text(&o);
        assert!(!o.status.success(), "{sets:?} was accepted");
        assert!(out.contains(expect), "{sets:?}: the error names {expect}: {out}");
    }
}

#[test]
fn the_plain_manifests_equal_a_fresh_render() {
    let o = run(Command::new(root().join("deploy/render-manifests.sh")).env("HELM", tool("helm")));
    assert!(o.status.success(), "{}", text(&o));
    let committed = std::fs::read_to_string(root().join("deploy/manifests/novanet.yaml")).unwrap();
    assert!(
        committed == String::from_utf8_lossy(&o.stdout),
        "deploy/manifests/novanet.yaml is stale: run deploy/render-manifests.sh > deploy/manifests/novanet.yaml"
    );
}

/// The chart installed into a real kube-apiserver with helm (every values
/// set, upgraded from one to the next, the datapath on; its CRDs with it),
/// then uninstalled,
/// and the plain manifests applied with kubectl: the server accepts every
/// object, not only the offline schemas.
#[test]
fn a_real_api_server_accepts_the_chart_and_the_manifests() {
    use novanet_conformance::kube_server::{KubeServer, Options};
    use novanet_conformance::Lab;
    let mut lab = Lab::new("helmapi");
    lab.add_ns("api");
    let api = KubeServer::start(&mut lab, "api", "127.0.0.1:6443", Options::default());
    let helm = |args: &[&str]| {
        let o = run(lab
            .cmd("api", tool("helm").to_str().unwrap())
            .args(args)
            .arg("--kubeconfig")
            .arg(api.admin_kubeconfig()));
        assert!(o.status.success(), "helm {args:?}: {}", text(&o));
        text(&o)
    };
    let chart_dir = chart().display().to_string();
    for (i, (name, values)) in VALUES.iter().enumerate() {
        let verb = if i == 0 { "install" } else { "upgrade" };
        let mut args = vec![verb, "novanet", chart_dir.as_str(), "-n", "nova-system"];
        if i == 0 {
            args.push("--create-namespace");
        }
        let files: Vec<String> = values.iter().map(|v| chart().join(v).display().to_string()).collect();
        for f in &files {
            args.extend(["-f", f.as_str()]);
        }
        args.extend(["--set", "datapath.enabled=true"]);
        let out = helm(&args);
        assert!(out.contains("STATUS: deployed"), "helm {verb} ({name}): {out}");
        let objects = api.kubectl(&[
            "get",
            "daemonset,configmap,serviceaccount,role",
            "-n",
            "nova-system",
            "-o",
            "name",
        ]);
        assert!(
            objects.contains("daemonset.apps/novanet") && objects.contains("serviceaccount/novanet"),
            "{name}: {objects}"
        );
        let roles = api.kubectl(&["get", "clusterrole/novanet", "-o", "jsonpath={.rules[*].resources}"]);
        assert!(roles.contains("networkpolicies"), "{name}: {roles}");
        // routing.peers by address as resources, accepted by the CRDs'
        // schemas (only the native-BGP values have such peers).
        let peers = api.kubectl(&[
            "get",
            "novabgpclusterconfigs",
            "-o",
            "jsonpath={.items[*].spec.peers[*].address}",
        ]);
        assert_eq!(
            peers.trim(),
            if *name == "native BGP" { "10.0.0.1" } else { "" },
            "{name}"
        );
    }
    // helm installs the chart's CRDs (crds/) with the release.
    let crds = api.kubectl(&["get", "crd", "-o", "name"]);
    assert_eq!(
        crds.lines().filter(|l| l.ends_with(".bgp.novanet.io")).count(),
        5,
        "{crds}"
    );
    helm(&["uninstall", "novanet", "-n", "nova-system"]);
    let left = api.kubectl(&["get", "daemonset", "-n", "nova-system", "-o", "name"]);
    assert!(left.trim().is_empty(), "uninstalled: {left}");

    let manifests = root().join("deploy/manifests/novanet.yaml");
    let applied = api.kubectl(&["apply", "-f", manifests.to_str().unwrap()]);
    assert!(applied.contains("daemonset.apps/novanet created"), "{applied}");
}

/// routing.peers by address become routing resources (a cluster config for
/// every node and a profile per peer); the rest stays in the agent's
/// configuration; adding or changing such a peer leaves the DaemonSet's
/// pod template as it was (no agent restarts), while a peer the resources
/// cannot hold still changes it.
#[test]
fn peers_by_address_are_rendered_as_resources_and_do_not_roll_the_daemonset() {
    let o = template(&["ci/native-bgp-values.yaml"], &[]);
    assert!(o.status.success(), "{}", text(&o));
    let docs = documents(&String::from_utf8(o.stdout).unwrap());
    let config = find(&docs, "NovaBGPClusterConfig").expect("the peers' cluster config");
    assert_eq!(config["metadata"]["name"], "novanet-peers");
    assert_eq!(config["spec"]["nodeSelector"], serde_json::json!({}));
    assert_eq!(
        config["spec"]["peers"],
        serde_json::json!([{"name": "tor-a", "address": "10.0.0.1", "remoteAS": 65001, "profileRef": "novanet-tor-a"}])
    );
    let profile = find(&docs, "NovaBGPPeerProfile").expect("tor-a's profile");
    assert_eq!(profile["spec"], serde_json::json!({"bfd": {}}));
    let cm = find(&docs, "ConfigMap").unwrap();
    let agent: Value = serde_json::from_str(cm["data"]["novanet.json"].as_str().unwrap()).unwrap();
    let kept: Vec<String> = agent["routing"]["peers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            p["neighbor_address"]
                .as_str()
                .or(p["interface"].as_str())
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(
        kept,
        ["10.0.1.1", "10.0.2.1", "eth2"],
        "BFD keys, inline passwords and interfaces stay in the configuration"
    );

    let template_of = |sets: &[&str]| {
        let o = template(&[], sets);
        assert!(o.status.success(), "{sets:?}: {}", text(&o));
        let docs = documents(&String::from_utf8(o.stdout).unwrap());
        find(&docs, "DaemonSet").unwrap()["spec"]["template"].clone()
    };
    let one = template_of(&[
        "routing.peers[0].neighbor_address=10.0.0.1",
        "routing.peers[0].remote_as=65001",
    ]);
    let two = template_of(&[
        "routing.peers[0].neighbor_address=10.0.0.1",
        "routing.peers[0].remote_as=65001",
        "routing.peers[0].hold_time=9",
        "routing.peers[1].neighbor_address=10.0.1.1",
        "routing.peers[1].remote_as=65002",
        "routing.peers[1].password_secret.name=tor-passwords",
        "routing.peers[1].password_secret.key=tor-b",
    ]);
    assert_eq!(one, two, "a peer change through the resources rolls no agent");
    let unnumbered = template_of(&[
        "routing.peers[0].neighbor_address=10.0.0.1",
        "routing.peers[0].remote_as=65001",
        "routing.peers[1].interface=eth1",
        "routing.peers[1].remote_as=65002",
    ]);
    assert_ne!(one, unnumbered, "a peer of the configuration file still does");
    let off = template_of(&[
        "routing.peersAsResources=false",
        "routing.peers[0].neighbor_address=10.0.0.1",
        "routing.peers[0].remote_as=65001",
    ]);
    assert_ne!(one, off, "without peersAsResources the peer is in the configuration");
}
