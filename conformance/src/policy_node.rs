//! Kubernetes nodes for the identity-policy tests and benchmark: lab
//! namespace `n1` (10.0.0.11) on a LAN with a real API server (10.0.0.100,
//! in `sw`; the agents use the chart's ServiceAccount and RBAC with the
//! datapath on) that knows its Node and the `default` namespace,
//! and more nodes joining the same LAN and API server; each with a bpffs
//! of its own and the agent started there with its CNI backend and, when
//! asked, the policy datapath.

use crate::kube_server::{self, KubeServer, Options};
use crate::{in_namespace, wait_until, Agent, Lab};
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Duration;

/// A bpffs instance mounted in the lab directory (`ip netns exec` gives
/// the agent a /sys of its namespace, without the host's /sys/fs/bpf);
/// unmounted when dropped.
pub struct Bpffs(pub PathBuf);

impl Bpffs {
    pub fn mount(dir: &Path) -> Bpffs {
        std::fs::create_dir_all(dir).expect("bpffs directory");
        let ok = std::process::Command::new("mount")
            .args(["-t", "bpf", "bpf"])
            .arg(dir)
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(ok, "a bpf filesystem could not be mounted at {}", dir.display());
        Bpffs(dir.to_path_buf())
    }
}

impl Drop for Bpffs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

pub struct PolicyNode {
    /// The node's name, also its lab namespace.
    pub name: String,
    pub api: Rc<KubeServer>,
    pub kubeconfig: PathBuf,
    pub cni_socket: PathBuf,
    pub bpffs: Bpffs,
    ipam_dir: PathBuf,
}

impl PolicyNode {
    pub fn new(lab: &mut Lab) -> PolicyNode {
        lab.add_ns("sw");
        lab.add_bridge("sw", "br0", &["10.0.0.100/24"]);
        let api = KubeServer::start(lab, "sw", "10.0.0.100:6443", Options::default());
        let kubeconfig = api.agent_kubeconfig(&["datapath.enabled=true"]);
        api.apply_namespace("default", json!({"kubernetes.io/metadata.name": "default"}));
        Self::on_lan(lab, Rc::new(api), kubeconfig, 1)
    }

    /// Node `n<index>` (10.0.0.1<index>, PodCIDR 10.244.<index>.0/24) on
    /// the LAN and API server of `first`.
    pub fn join(&self, lab: &mut Lab, index: u8) -> PolicyNode {
        Self::on_lan(lab, self.api.clone(), self.kubeconfig.clone(), index)
    }

    fn on_lan(lab: &mut Lab, api: Rc<KubeServer>, kubeconfig: PathBuf, index: u8) -> PolicyNode {
        let name = format!("n{index}");
        let ip = format!("10.0.0.{}", 10 + u32::from(index));
        lab.add_ns(&name);
        lab.link_to_bridge(&name, "eth0", &[&format!("{ip}/24")], "sw", "br0", &format!("p{index}"));
        api.apply_node(kube_server::node(&name, &ip, &format!("10.244.{index}.0/24")));
        // The first node keeps the paths it always had.
        let own = |base: &str| {
            if index == 1 {
                lab.dir().join(base)
            } else {
                lab.dir().join(format!("{name}-{base}"))
            }
        };
        PolicyNode {
            cni_socket: own("cni.sock"),
            bpffs: Bpffs::mount(&own("bpf")),
            ipam_dir: own("ipam"),
            name,
            api,
            kubeconfig,
        }
    }

    /// The agent's configuration, with or without the policy datapath.
    pub fn config(&self, datapath: bool) -> Value {
        json!({
            "node_name": self.name,
            "routing": {"bfd": {"enabled": false}, "node_mesh": {"enabled": true, "source": "kubernetes"}},
            "cni": {"enabled": true, "socket": self.cni_socket.display().to_string(),
                    "ipam_dir": self.ipam_dir.display().to_string()},
            "datapath": {"enabled": datapath, "bpf_pin_dir": self.bpffs.0.join("novanet").display().to_string()}
        })
    }

    /// Starts the agent (again) and waits for its CNI socket.
    pub fn start_agent(&self, lab: &mut Lab, datapath: bool) -> Agent {
        let _ = std::fs::remove_file(&self.cni_socket);
        let env = [("KUBECONFIG", self.kubeconfig.to_str().expect("a UTF-8 path"))];
        let agent = Agent::start_with_env(lab, &self.name, &self.config(datapath), &env);
        wait_until("the CNI socket", Duration::from_secs(20), || {
            self.cni_socket.exists().then_some(()).ok_or_else(String::new)
        });
        agent
    }

    /// Pods on this node wired by novanet-cni as a runtime calls it (their
    /// namespaces named after them); their IPv4 addresses, in order.
    pub fn wire_pods(&self, lab: &mut Lab, names: &[&str]) -> Vec<String> {
        let pods: Vec<(&str, &str, &str)> = names.iter().map(|n| (*n, "default", *n)).collect();
        self.wire(lab, &pods)
    }

    /// Pods wired as a runtime calls the plugin for Pod `namespace/name`:
    /// (lab namespace, Kubernetes namespace, Pod name); their IPv4
    /// addresses, in order.
    pub fn wire(&self, lab: &mut Lab, pods: &[(&str, &str, &str)]) -> Vec<String> {
        let bin = crate::cni_runtime::plugin_dir(lab, &[]);
        let sandboxes: Vec<_> = pods
            .iter()
            .map(|(netns, namespace, name)| {
                let mut s = crate::cni_runtime::pod(lab, netns, Value::Null);
                s.namespace = namespace.to_string();
                s.name = name.to_string();
                s
            })
            .collect();
        let rt = crate::cni_runtime::Runtime {
            lab,
            node: self.name.clone(),
            cni_path: bin,
            conflist: crate::cni_runtime::novanet_only(&self.cni_socket),
        };
        sandboxes
            .iter()
            .map(|s| crate::cni_runtime::pod_ipv4(&rt.add(s).unwrap_or_else(|a| panic!("ADD {}: {}", s.name, a.out))))
            .collect()
    }

    /// A pod object as the kubelet reports it on n1.
    pub fn pod_object(name: &str, ip: &str, labels: Value) -> Value {
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "labels": labels},
            "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "x"}]},
            "status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}]}
        })
    }

    /// A pod object as the kubelet reports it on this node, its container
    /// declaring `ports` (name, protocol, number).
    pub fn pod_here(&self, name: &str, ip: &str, labels: Value, ports: &[(&str, &str, u16)]) -> Value {
        let ports: Vec<Value> = ports
            .iter()
            .map(|(n, proto, port)| json!({"name": n, "protocol": proto, "containerPort": port}))
            .collect();
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "labels": labels},
            "spec": {"nodeName": self.name, "containers": [{"name": "c", "image": "x", "ports": ports}]},
            "status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}]}
        })
    }
}

/// How many pod identities the agent holds (Services have identities
/// too, the API server's own `kubernetes` Service among them: not counted).
pub fn pod_identities(agent: &Agent) -> usize {
    datapath_status(agent, "")["identities"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|i| i["labels"]["novanet.io/service"].is_null())
        .count()
}

/// The agent's `/status/datapath` (with `query`), Null when unreadable.
pub fn datapath_status(agent: &Agent, query: &str) -> Value {
    agent
        .get(&format!("/status/datapath{query}"))
        .ok()
        .and_then(|b| serde_json::from_str(&b).ok())
        .unwrap_or(Value::Null)
}

/// Runs a server in a pod for each port: bound on the pod's namespace's
/// thread before this returns, then `run` on it.
fn serve_with<S: 'static>(lab: &Lab, pod: &str, ip: &str, ports: &[u16], bind: fn(SocketAddr) -> S, run: fn(S)) {
    for port in ports {
        let ns = lab.ns_name(pod);
        let addr: SocketAddr = format!("{ip}:{port}").parse().unwrap();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            crate::lab::enter_namespace(&ns);
            let server = bind(addr);
            ready_tx.send(()).unwrap();
            run(server);
        });
        ready_rx.recv().unwrap();
    }
}

/// A TCP server in a pod: accepts and answers "ok" on each port.
pub fn serve(lab: &Lab, pod: &str, ip: &str, ports: &[u16]) {
    serve_with(
        lab,
        pod,
        ip,
        ports,
        |a| TcpListener::bind(a).expect("bind in the pod"),
        |l| {
            for mut s in l.incoming().flatten() {
                let _ = s.write_all(b"ok");
            }
        },
    );
}

/// A UDP server in a pod: answers "ok" to every datagram on each port.
pub fn serve_udp(lab: &Lab, pod: &str, ip: &str, ports: &[u16]) {
    serve_with(
        lab,
        pod,
        ip,
        ports,
        |a| std::net::UdpSocket::bind(a).expect("bind in the pod"),
        |s| {
            let mut buf = [0u8; 64];
            while let Ok((_, from)) = s.recv_from(&mut buf) {
                let _ = s.send_to(b"ok", from);
            }
        },
    );
}

/// Whether `addr` answers "ok" over TCP from this thread's namespace
/// (connect and read, 1 s each).
pub fn answers_tcp(addr: SocketAddr) -> bool {
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_secs(1)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
    let mut buf = [0u8; 2];
    s.read_exact(&mut buf).is_ok() && &buf == b"ok"
}

/// Whether `addr` answers "ok" to a UDP datagram from this thread's
/// namespace (sent up to three times in the second).
pub fn answers_udp(addr: SocketAddr) -> bool {
    let s = std::net::UdpSocket::bind("0.0.0.0:0").expect("a UDP socket");
    s.connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_millis(333))).unwrap();
    let mut buf = [0u8; 2];
    (0..3).any(|_| s.send(b"ping").is_ok() && s.recv(&mut buf).is_ok_and(|n| n == 2 && &buf == b"ok"))
}

/// Whether a pod reaches `ip:port` (connect and read "ok", 1 s bound).
pub fn reaches(lab: &Lab, pod: &str, ip: &str, port: u16) -> bool {
    let addr: SocketAddr = format!("{ip}:{port}").parse().unwrap();
    in_namespace(&lab.ns_name(pod), move || answers_tcp(addr))
}
