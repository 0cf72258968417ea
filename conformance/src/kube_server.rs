//! A real Kubernetes API server for the tests: the upstream kube-apiserver
//! and etcd (built from their Go modules by
//! `scripts/build-kube-apiserver.sh`) running in one of the lab's
//! namespaces, with TLS, token authentication and RBAC on.
//!
//! - The test acts as a cluster admin (a static token in the
//!   `system:masters` group) through kube-rs: Nodes, Pods, Namespaces,
//!   NetworkPolicies, Services, EndpointSlices and DaemonSets are applied
//!   server-side, and what a kubelet or a controller would write (a Node's
//!   addresses, a Pod's IP) through the status subresource, as they do.
//! - An agent gets the chart's ServiceAccount, ClusterRole and Roles
//!   (rendered by `helm template`, applied by `kubectl apply`) and a token
//!   the server signs for that ServiceAccount ([`KubeServer::agent_kubeconfig`]),
//!   so a verb missing from the chart fails the test.
//! - History can be lost as etcd compaction loses it
//!   ([`KubeServer::compact`]); request counts come from the server's own
//!   metrics.
//!
//! The client's sockets are opened inside the namespace: its runtime's
//! threads enter it as they start. The server's processes are its own,
//! stopped when it is dropped (or when the process that started them
//! ends), so the lab's `novanet-kube-api` runs one outside any test.

use crate::lab::{enter_namespace, run, Lab};
use crate::wait_until;
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use serde_json::{json, Value};
use std::collections::HashSet;
use std::future::Future;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// The chart's namespace in the tests.
pub const CHART_NAMESPACE: &str = "nova-system";
/// The chart's ServiceAccount (release "novanet").
pub const AGENT_SERVICE_ACCOUNT: &str = "novanet";

/// How a server is started.
#[derive(Clone, Copy, Default)]
pub struct Options {
    /// Serve watches from etcd directly (`--watch-cache=false`): a watch
    /// resumed from a version etcd has compacted then gets 410 Gone, as it
    /// does on any server once its history window has passed.
    pub no_watch_cache: bool,
}

/// A running kube-apiserver with its etcd; both stop when it is dropped.
pub struct KubeServer {
    /// Where agents reach it.
    address: Mutex<SocketAddr>,
    /// The network namespace it runs in (full name), if not this one.
    netns: Option<String>,
    dir: PathBuf,
    options: Options,
    admin_kubeconfig: PathBuf,
    rt: tokio::runtime::Runtime,
    client: Mutex<kube::Client>,
    /// Namespaces known to exist (with their default ServiceAccount).
    namespaces: Mutex<HashSet<String>>,
    /// API server processes started so far.
    starts: AtomicU32,
    etcd: Mutex<Option<Child>>,
    apiserver: Mutex<Option<Child>>,
}

/// A tool built or installed for the tests (`NOVANET_TOOLS` overrides the
/// directory).
pub fn tool(name: &str) -> PathBuf {
    let dir = std::env::var("NOVANET_TOOLS").unwrap_or_else(|_| "/usr/local/lib/novanet-tools".into());
    let p = Path::new(&dir).join("bin").join(name);
    assert!(
        p.exists(),
        "{} missing: run scripts/install-deps.sh (it builds kube-apiserver and etcd once)",
        p.display()
    );
    p
}

fn random_hex() -> String {
    let mut b = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .expect("/dev/urandom");
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn openssl(dir: &Path, args: &[&str]) {
    run(Command::new("openssl").current_dir(dir).args(args));
}

/// A CA, the server's certificate for `ip` signed by it, and the key that
/// signs service-account tokens.
fn write_certificates(dir: &Path, ip: &str) {
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    let mut ca = vec!["req", "-x509"];
    ca.extend_from_slice(&ec);
    ca.extend_from_slice(&[
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "2",
        "-subj",
        "/CN=novanet-lab-ca",
    ]);
    openssl(dir, &ca);
    let mut csr = vec!["req"];
    csr.extend_from_slice(&ec);
    csr.extend_from_slice(&[
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=kube-apiserver",
    ]);
    openssl(dir, &csr);
    std::fs::write(
        dir.join("san.ext"),
        format!(
            "subjectAltName=IP:{ip},IP:127.0.0.1,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc\n"
        ),
    )
    .expect("san.ext");
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.crt",
            "-days",
            "2",
            "-extfile",
            "san.ext",
        ],
    );
    openssl(
        dir,
        &["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "sa.key"],
    );
    openssl(dir, &["ec", "-in", "sa.key", "-pubout", "-out", "sa.pub"]);
}

/// A kubeconfig for `server` with a bearer token, trusting the lab's CA.
fn kubeconfig(server: SocketAddr, ca: &Path, user: &str, token: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: lab\n  cluster:\n    server: https://{server}\n    certificate-authority: {}\ncontexts:\n- name: lab\n  context:\n    cluster: lab\n    user: {user}\ncurrent-context: lab\nusers:\n- name: {user}\n  user:\n    token: {token}\n",
        ca.display()
    )
}

/// The API resource of a kind the tests write.
fn resource(kind: &str) -> (ApiResource, bool) {
    use k8s_openapi::api;
    match kind {
        "Node" => (ApiResource::erase::<api::core::v1::Node>(&()), false),
        "Namespace" => (ApiResource::erase::<api::core::v1::Namespace>(&()), false),
        "Pod" => (ApiResource::erase::<api::core::v1::Pod>(&()), true),
        "Service" => (ApiResource::erase::<api::core::v1::Service>(&()), true),
        "ServiceAccount" => (ApiResource::erase::<ServiceAccount>(&()), true),
        "NetworkPolicy" => (ApiResource::erase::<api::networking::v1::NetworkPolicy>(&()), true),
        "EndpointSlice" => (ApiResource::erase::<api::discovery::v1::EndpointSlice>(&()), true),
        "DaemonSet" => (ApiResource::erase::<api::apps::v1::DaemonSet>(&()), true),
        "Event" => (ApiResource::erase::<api::events::v1::Event>(&()), true),
        other => panic!("the tests do not write {other}"),
    }
}

impl KubeServer {
    /// Starts etcd and kube-apiserver in lab namespace `ns` (short name),
    /// the server on `address` (an address of that namespace), and waits
    /// until it is ready.
    pub fn start(lab: &mut Lab, ns: &str, address: &str, options: Options) -> KubeServer {
        KubeServer::start_in(
            Some(&lab.ns_name(ns)),
            &lab.dir().join("kube-apiserver"),
            address,
            options,
        )
    }

    /// Starts etcd and kube-apiserver in network namespace `netns` (a full
    /// name; this one when None), keeping their files and logs in `dir`.
    pub fn start_in(netns: Option<&str>, dir: &Path, address: &str, options: Options) -> KubeServer {
        let address: SocketAddr = address.parse().expect("API server address");
        let dir = dir.to_path_buf();
        std::fs::create_dir_all(dir.join("etcd")).expect("server directory");
        write_certificates(&dir, &address.ip().to_string());
        let admin_token = random_hex();
        std::fs::write(
            dir.join("tokens.csv"),
            format!("{admin_token},lab-admin,lab-admin,\"system:masters\"\n"),
        )
        .expect("tokens");
        let admin_kubeconfig = dir.join("admin.kubeconfig");
        std::fs::write(
            &admin_kubeconfig,
            kubeconfig(address, &dir.join("ca.crt"), "lab-admin", &admin_token),
        )
        .expect("admin kubeconfig");
        let thread_ns = netns.map(String::from);
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .max_blocking_threads(2)
            .enable_all()
            .on_thread_start(move || {
                if let Some(ns) = &thread_ns {
                    enter_namespace(ns);
                }
            })
            .build()
            .expect("runtime");
        let client = rt
            .block_on(rt.spawn(admin_client(admin_kubeconfig.clone())))
            .expect("client task");
        let server = KubeServer {
            address: Mutex::new(address),
            netns: netns.map(String::from),
            dir,
            options,
            admin_kubeconfig,
            rt,
            client: Mutex::new(client),
            namespaces: Mutex::new(HashSet::new()),
            starts: AtomicU32::new(0),
            etcd: Mutex::new(None),
            apiserver: Mutex::new(None),
        };
        let etcd_dir = server.dir.join("etcd").display().to_string();
        let etcd = server.spawn(
            "etcd",
            &tool("etcd"),
            &[
                "--name",
                "lab",
                "--data-dir",
                &etcd_dir,
                "--listen-client-urls",
                "http://127.0.0.1:2379",
                "--advertise-client-urls",
                "http://127.0.0.1:2379",
                "--listen-peer-urls",
                "http://127.0.0.1:2380",
                "--initial-advertise-peer-urls",
                "http://127.0.0.1:2380",
                "--initial-cluster",
                "lab=http://127.0.0.1:2380",
                "--unsafe-no-fsync",
                "--log-level",
                "warn",
            ],
        );
        *server.etcd.lock().expect("etcd") = Some(etcd);
        server.start_apiserver(address);
        server
    }

    /// A command run in the server's namespace.
    fn command(&self, program: &Path) -> Command {
        match &self.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(program);
                c
            }
            None => Command::new(program),
        }
    }

    /// Starts one of the server's processes, its output in `<name>.log`;
    /// it is killed if the thread that started it ends first.
    fn spawn(&self, name: &str, program: &Path, args: &[&str]) -> Child {
        let log = std::fs::File::create(self.dir.join(format!("{name}.log"))).expect("log file");
        let mut cmd = self.command(program);
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log);
        // SAFETY: prctl(2) only, between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        cmd.spawn().unwrap_or_else(|e| panic!("{}: {e}", program.display()))
    }

    fn start_apiserver(&self, address: SocketAddr) {
        let d = |f: &str| self.dir.join(f).display().to_string();
        let mut args = vec![
            "--etcd-servers=http://127.0.0.1:2379".to_string(),
            format!("--bind-address={}", address.ip()),
            format!("--advertise-address={}", address.ip()),
            format!("--secure-port={}", address.port()),
            format!("--tls-cert-file={}", d("server.crt")),
            format!("--tls-private-key-file={}", d("server.key")),
            format!("--client-ca-file={}", d("ca.crt")),
            format!("--token-auth-file={}", d("tokens.csv")),
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local".to_string(),
            format!("--service-account-key-file={}", d("sa.pub")),
            format!("--service-account-signing-key-file={}", d("sa.key")),
            "--authorization-mode=RBAC".to_string(),
            "--service-cluster-ip-range=10.96.0.0/12".to_string(),
            format!("--cert-dir={}", d("certs")),
            "--profiling=false".to_string(),
            "--v=1".to_string(),
        ];
        if self.options.no_watch_cache {
            args.push("--watch-cache=false".to_string());
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let n = self.starts.fetch_add(1, Ordering::SeqCst) + 1;
        let child = self.spawn(&format!("kube-apiserver-{n}"), &tool("kube-apiserver"), &args);
        *self.apiserver.lock().expect("apiserver") = Some(child);
        self.wait_ready();
    }

    fn wait_ready(&self) {
        wait_until("kube-apiserver to be ready", Duration::from_secs(90), || {
            let exited = self
                .apiserver
                .lock()
                .expect("apiserver")
                .as_mut()
                .is_none_or(|c| !matches!(c.try_wait(), Ok(None)));
            if exited {
                let name = format!("kube-apiserver-{}.log", self.starts.load(Ordering::SeqCst));
                let log = std::fs::read_to_string(self.dir.join(name)).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(20).collect();
                panic!(
                    "kube-apiserver exited: {}",
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                );
            }
            let client = self.client();
            self.block(async move {
                let req = http::Request::get("/readyz").body(Vec::new()).expect("request");
                client.request_text(req).await
            })
            .map(|_| ())
            .map_err(|e| e.to_string())
        });
    }

    /// Stops the API server and starts it again on `address`; etcd and
    /// everything stored stay.
    pub fn restart_on(&self, address: &str) {
        self.stop();
        let address: SocketAddr = address.parse().expect("address");
        if address != self.address() {
            *self.address.lock().expect("address") = address;
            let text = std::fs::read_to_string(&self.admin_kubeconfig).expect("kubeconfig");
            let token = text.rsplit("token: ").next().expect("token").trim().to_string();
            std::fs::write(
                &self.admin_kubeconfig,
                kubeconfig(address, &self.dir.join("ca.crt"), "lab-admin", &token),
            )
            .expect("kubeconfig");
            *self.client.lock().expect("client") = self.block(admin_client(self.admin_kubeconfig.clone()));
        }
        self.start_apiserver(address);
    }

    /// Stops the API server at once (SIGKILL, as when its machine goes
    /// away; a graceful stop waits tens of seconds for open watches); etcd
    /// and everything stored stay.
    pub fn stop(&self) {
        if let Some(mut c) = self.apiserver.lock().expect("apiserver").take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Where agents reach the server.
    pub fn address(&self) -> SocketAddr {
        *self.address.lock().expect("address")
    }

    fn client(&self) -> kube::Client {
        self.client.lock().expect("client").clone()
    }

    /// Runs a future on the client's runtime (inside the namespace).
    fn block<F>(&self, f: F) -> F::Output
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.rt.block_on(self.rt.spawn(f)).expect("client task")
    }

    /// The cluster admin's kubeconfig (for kubectl and novanetctl).
    pub fn admin_kubeconfig(&self) -> &Path {
        &self.admin_kubeconfig
    }

    /// Applies the chart's ServiceAccount, ClusterRole and Roles (helm
    /// template with `sets`) with kubectl, and returns a kubeconfig with a
    /// token the server signed for the chart's ServiceAccount: what an agent
    /// of the DaemonSet gets.
    pub fn agent_kubeconfig(&self, sets: &[&str]) -> PathBuf {
        self.ensure_namespace(CHART_NAMESPACE);
        let chart = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/helm/novanet");
        let mut helm = Command::new(tool("helm"));
        helm.args(["template", "novanet"])
            .arg(&chart)
            .args(["--namespace", CHART_NAMESPACE])
            .args(["--show-only", "templates/serviceaccount.yaml"])
            .args(["--show-only", "templates/rbac.yaml"]);
        for s in sets {
            helm.args(["--set", s]);
        }
        let rendered = run(&mut helm).stdout;
        let file = self.dir.join(format!("rbac-{}.yaml", random_hex()));
        std::fs::write(&file, rendered).expect("rendered RBAC");
        self.kubectl(&["apply", "-f", file.to_str().expect("path")]);
        let token = self.token_for(CHART_NAMESPACE, AGENT_SERVICE_ACCOUNT);
        let path = self.dir.join(format!("agent-{}.kubeconfig", random_hex()));
        std::fs::write(
            &path,
            kubeconfig(self.address(), &self.dir.join("ca.crt"), "agent", &token),
        )
        .expect("agent kubeconfig");
        path
    }

    /// A token the server signs for ServiceAccount `namespace/name`
    /// (TokenRequest, one day).
    pub fn token_for(&self, namespace: &str, name: &str) -> String {
        let (client, namespace, name) = (self.client(), namespace.to_string(), name.to_string());
        self.block(async move {
            let api: Api<ServiceAccount> = Api::namespaced(client, &namespace);
            let body = json!({
                "apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                "spec": {"expirationSeconds": 86400}
            });
            let answer: Value = api
                .create_subresource("token", &name, &PostParams::default(), &body)
                .await
                .unwrap_or_else(|e| panic!("TokenRequest for {namespace}/{name}: {e}"));
            answer["status"]["token"].as_str().expect("a token").to_string()
        })
    }

    /// Runs kubectl as the cluster admin inside the server's namespace;
    /// returns its output (fails the test when kubectl fails).
    pub fn kubectl(&self, args: &[&str]) -> String {
        let out = run(self
            .command(&tool("kubectl"))
            .arg("--kubeconfig")
            .arg(&self.admin_kubeconfig)
            .args(args));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The node's NovaBGPNodeState as kubectl reads it (Null while there is
    /// none).
    pub fn node_state(&self, node: &str) -> Value {
        match self.try_kubectl(&["get", "novabgpnodestate", node, "-o", "json"]) {
            (true, out) => serde_json::from_str(&out).unwrap_or(Value::Null),
            _ => Value::Null,
        }
    }

    /// The condition of `type` on the node's NovaBGPNodeState, if shown.
    pub fn node_condition(&self, node: &str, kind: &str) -> Option<Value> {
        self.node_state(node)["status"]["conditions"]
            .as_array()?
            .iter()
            .find(|c| c["type"] == kind)
            .cloned()
    }

    /// kubectl as the cluster admin, its output and whether it succeeded.
    pub fn try_kubectl(&self, args: &[&str]) -> (bool, String) {
        let out = self
            .command(&tool("kubectl"))
            .arg("--kubeconfig")
            .arg(&self.admin_kubeconfig)
            .args(args)
            .output()
            .expect("kubectl");
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    }

    /// Creates a namespace (and its default ServiceAccount, which a
    /// controller manager would add) unless it exists.
    pub fn ensure_namespace(&self, name: &str) {
        if self.namespaces.lock().expect("namespaces").contains(name) {
            return;
        }
        self.apply_raw(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}));
        self.apply_raw(json!({"apiVersion": "v1", "kind": "ServiceAccount",
            "metadata": {"name": "default", "namespace": name}}));
        self.namespaces.lock().expect("namespaces").insert(name.to_string());
    }

    /// Server-side apply of one object as the test's field manager; its
    /// `status`, when given, is then written through the status
    /// subresource (as a kubelet or controller writes it). A Pod whose spec
    /// can no longer change is replaced.
    fn apply_raw(&self, obj: Value) -> Value {
        let kind = obj["kind"].as_str().expect("kind").to_string();
        let (ar, namespaced) = resource(&kind);
        let name = obj["metadata"]["name"].as_str().expect("name").to_string();
        let namespace = obj["metadata"]["namespace"].as_str().map(String::from);
        let client = self.client();
        self.block(async move {
            let api: Api<DynamicObject> = match (&namespace, namespaced) {
                (Some(ns), true) => Api::namespaced_with(client, ns, &ar),
                _ => Api::all_with(client, &ar),
            };
            let mut body = obj.clone();
            let status = body.as_object_mut().and_then(|o| o.remove("status"));
            let pp = PatchParams::apply("novanet-tests").force();
            let applied = match api.patch(&name, &pp, &Patch::Apply(&body)).await {
                Err(kube::Error::Api(e)) if kind == "Pod" && e.code == 422 => {
                    // A Pod's spec is immutable: a changed one is a new Pod.
                    let _ = api
                        .delete(
                            &name,
                            &DeleteParams {
                                grace_period_seconds: Some(0),
                                ..Default::default()
                            },
                        )
                        .await;
                    api.patch(&name, &pp, &Patch::Apply(&body)).await
                }
                other => other,
            }
            .unwrap_or_else(|e| panic!("apply {kind} {name}: {e}"));
            match status {
                Some(status) => {
                    let patch = json!({"status": status});
                    let o = api
                        .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
                        .await
                        .unwrap_or_else(|e| panic!("status of {kind} {name}: {e}"));
                    serde_json::to_value(o).expect("json")
                }
                None => serde_json::to_value(applied).expect("json"),
            }
        })
    }

    fn delete_raw(&self, kind: &str, namespace: Option<&str>, name: &str) {
        let (ar, namespaced) = resource(kind);
        let (client, namespace, name, kind) = (
            self.client(),
            namespace.map(String::from),
            name.to_string(),
            kind.to_string(),
        );
        self.block(async move {
            let api: Api<DynamicObject> = match (&namespace, namespaced) {
                (Some(ns), true) => Api::namespaced_with(client, ns, &ar),
                _ => Api::all_with(client, &ar),
            };
            let dp = DeleteParams {
                grace_period_seconds: Some(0),
                ..Default::default()
            };
            match api.delete(&name, &dp).await {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => panic!("delete {kind} {name}: {e}"),
            }
        });
    }

    /// Adds or replaces a Node; its `status` (addresses) as the kubelet
    /// writes it.
    pub fn apply_node(&self, node: Value) {
        let mut node = node;
        node["apiVersion"] = json!("v1");
        node["kind"] = json!("Node");
        self.apply_raw(node);
    }

    pub fn delete_node(&self, name: &str) {
        self.delete_raw("Node", None, name);
    }

    /// Adds or replaces a Pod in `namespace` (created if need be); its
    /// `status` (IP, phase) as the kubelet writes it.
    pub fn apply_pod(&self, namespace: &str, pod: Value) {
        self.ensure_namespace(namespace);
        let mut pod = pod;
        pod["apiVersion"] = json!("v1");
        pod["kind"] = json!("Pod");
        pod["metadata"]["namespace"] = json!(namespace);
        self.apply_raw(pod);
    }

    pub fn delete_pod(&self, namespace: &str, name: &str) {
        self.delete_raw("Pod", Some(namespace), name);
    }

    /// Adds or replaces a Namespace with these labels.
    pub fn apply_namespace(&self, name: &str, labels: Value) {
        self.apply_raw(json!({"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": name, "labels": labels}}));
        self.ensure_namespace(name);
    }

    /// Adds or replaces a NetworkPolicy (its namespace from its metadata).
    pub fn apply_network_policy(&self, policy: Value) {
        let mut policy = policy;
        let ns = policy["metadata"]["namespace"]
            .as_str()
            .unwrap_or("default")
            .to_string();
        self.ensure_namespace(&ns);
        policy["apiVersion"] = json!("networking.k8s.io/v1");
        policy["kind"] = json!("NetworkPolicy");
        policy["metadata"]["namespace"] = json!(ns);
        self.apply_raw(policy);
    }

    pub fn delete_network_policy(&self, namespace: &str, name: &str) {
        self.delete_raw("NetworkPolicy", Some(namespace), name);
    }

    /// Adds or replaces a Service or an EndpointSlice in `namespace`.
    pub fn apply_service_object(&self, kind: &'static str, namespace: &str, obj: Value) {
        assert!(kind == "Service" || kind == "EndpointSlice", "{kind}");
        self.ensure_namespace(namespace);
        let mut obj = obj;
        obj["apiVersion"] = json!(if kind == "Service" { "v1" } else { "discovery.k8s.io/v1" });
        obj["kind"] = json!(kind);
        obj["metadata"]["namespace"] = json!(namespace);
        self.apply_raw(obj);
    }

    /// Adds the chart's DaemonSet as far as the agent looks at it.
    pub fn apply_daemonset(&self, namespace: &str, name: &str) {
        self.ensure_namespace(namespace);
        self.apply_raw(json!({
            "apiVersion": "apps/v1", "kind": "DaemonSet",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"containers": [{"name": "agent", "image": "novanet-agent"}]}}}
        }));
    }

    /// Deletes a DaemonSet, as `helm uninstall` does.
    pub fn delete_daemonset(&self, namespace: &str, name: &str) {
        self.delete_raw("DaemonSet", Some(namespace), name);
    }

    /// Every events.k8s.io/v1 Event stored.
    pub fn events(&self) -> Vec<Value> {
        let (ar, _) = resource("Event");
        let client = self.client();
        self.block(async move {
            let api: Api<DynamicObject> = Api::all_with(client, &ar);
            let list = api.list(&Default::default()).await.expect("list events");
            list.items
                .into_iter()
                .map(|e| serde_json::to_value(e).expect("json"))
                .collect()
        })
    }

    /// Waits for an Event about Node `node` from its agent, with this
    /// reason and a note mentioning `about`; returns it.
    pub fn wait_for_event(&self, node: &str, reason: &str, about: &str) -> Value {
        wait_until(
            &format!("a {reason} Event on Node {node} about {about}"),
            crate::checks::SETTLE,
            || {
                let events = self.events();
                events
                    .iter()
                    .find(|e| {
                        e["regarding"]["kind"] == "Node"
                            && e["regarding"]["name"] == node
                            && e["reportingController"] == "novanet-agent"
                            && e["reason"] == reason
                            && e["note"].as_str().is_some_and(|n| n.contains(about))
                    })
                    .cloned()
                    .ok_or_else(|| {
                        format!(
                            "{:?}",
                            events
                                .iter()
                                .map(|e| (e["regarding"]["name"].clone(), e["reason"].clone(), e["note"].clone()))
                                .collect::<Vec<_>>()
                        )
                    })
            },
        )
    }

    /// Requests the server has answered for `verb` (LIST, WATCH, ...) on
    /// `resource` (plural, e.g. "nodes"), from its metrics.
    pub fn requests(&self, verb: &str, resource: &str) -> u64 {
        let client = self.client();
        let text = self.block(async move {
            let req = http::Request::get("/metrics").body(Vec::new()).expect("request");
            client.request_text(req).await.expect("metrics")
        });
        let (verb, resource) = (format!("verb=\"{verb}\""), format!("resource=\"{resource}\""));
        text.lines()
            .filter(|l| l.starts_with("apiserver_request_total{") && l.contains(&verb) && l.contains(&resource))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>() as u64
    }

    /// Compacts etcd's history up to now: every version seen so far
    /// expires, and a watch resumed from one gets 410 Gone (with
    /// [`Options::no_watch_cache`]).
    pub fn compact(&self) {
        let compact = || {
            let range = etcd_post("/v3/kv/range", r#"{"key":"AA==","range_end":"AA=="}"#);
            let revision = range["header"]["revision"].as_str().expect("etcd revision").to_string();
            etcd_post(
                "/v3/kv/compaction",
                &format!(r#"{{"revision":"{revision}","physical":true}}"#),
            );
        };
        match &self.netns {
            Some(ns) => crate::in_namespace(ns, compact),
            None => compact(),
        }
    }
}

impl Drop for KubeServer {
    fn drop(&mut self) {
        self.stop();
        if let Some(mut c) = self.etcd.lock().expect("etcd").take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A client acting as the cluster admin of this kubeconfig.
async fn admin_client(path: PathBuf) -> kube::Client {
    let kc = kube::config::Kubeconfig::read_from(&path).expect("kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .expect("client config");
    kube::Client::try_from(config).expect("client")
}

/// One request to etcd's JSON gateway on 127.0.0.1:2379 (from inside its
/// namespace).
fn etcd_post(path: &str, body: &str) -> Value {
    let mut s = std::net::TcpStream::connect("127.0.0.1:2379").expect("etcd");
    write!(
        s,
        "POST {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .expect("etcd request");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("etcd answer");
    let (head, body) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
    assert!(head.contains(" 200 "), "etcd {path}: {out}");
    serde_json::from_str(body).unwrap_or_else(|e| panic!("etcd {path}: {e}: {body}"))
}

/// A Node object as the kubelet and the node IPAM controller leave it.
pub fn node(name: &str, internal_ip: &str, pod_cidr: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}, "annotations": {}},
        "spec": {"podCIDR": pod_cidr, "podCIDRs": [pod_cidr]},
        "status": {"addresses": [
            {"type": "InternalIP", "address": internal_ip},
            {"type": "Hostname", "address": name}
        ]}
    })
}

/// A Pod as the DaemonSet leaves it on a node (hostNetwork: its IP is the
/// node's).
pub fn pod(name: &str, node: &str, ip: &str, labels: Value) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels},
        "spec": {"nodeName": node, "hostNetwork": true, "containers": [{"name": "agent", "image": "novanet-agent"}]},
        "status": {"phase": "Running", "podIP": ip, "hostIP": ip}
    })
}

/// Nodes `names` on one switch (namespace `sw`, bridge `br0` at
/// 10.0.0.100, the i-th node at 10.0.0.(11+i)/24 on its `eth0`), a real
/// API server on the switch at 10.0.0.100:6443, and the kubeconfig the
/// chart's ServiceAccount gets (`sets` for helm template).
pub fn on_switch(lab: &mut Lab, names: &[&str], options: Options, sets: &[&str]) -> (KubeServer, PathBuf) {
    lab.add_ns("sw");
    lab.add_bridge("sw", "br0", &["10.0.0.100/24"]);
    for (i, n) in names.iter().enumerate() {
        lab.add_ns(n);
        let addr = format!("10.0.0.{}/24", 11 + i);
        lab.link_to_bridge(n, "eth0", &[&addr], "sw", "br0", &format!("p{i}"));
    }
    let server = KubeServer::start(lab, "sw", "10.0.0.100:6443", options);
    let kubeconfig = server.agent_kubeconfig(sets);
    (server, kubeconfig)
}
