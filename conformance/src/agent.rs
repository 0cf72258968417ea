//! `novanet-agent` processes in lab namespaces, and their HTTP status
//! endpoint reached from inside the namespace.

use crate::lab::Lab;
use serde_json::Value;

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

/// A binary of this workspace, built once per test process (`cargo build
/// -p PACKAGE --bin NAME`); `env` names a variable that may point at a
/// prebuilt one.
fn workspace_binary(cell: &'static OnceLock<PathBuf>, env: &str, package: &str, name: &str) -> PathBuf {
    cell.get_or_init(|| {
        if let Some(p) = std::env::var_os(env) {
            return PathBuf::from(p);
        }
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let st = Command::new(cargo)
            .current_dir(&root)
            .args(["build", "-q", "-p", package, "--bin", name])
            .status()
            .unwrap_or_else(|e| panic!("cargo build {package}: {e}"));
        assert!(st.success(), "building {package} failed");
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| root.join("target"));
        target.join("debug").join(name)
    })
    .clone()
}

/// The agent binary (`NOVANET_AGENT_BIN`, else built from the workspace).
pub fn agent_binary() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    workspace_binary(&BIN, "NOVANET_AGENT_BIN", "novanet-agent", "novanet-agent")
}

/// The CLI binary (`NOVANETCTL_BIN`, else built from the workspace).
pub fn ctl_binary() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    workspace_binary(&BIN, "NOVANETCTL_BIN", "novanetctl", "novanetctl")
}

/// The CNI plugin (`NOVANET_CNI_BIN`, else built from the workspace).
pub fn cni_binary() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    workspace_binary(&BIN, "NOVANET_CNI_BIN", "novanet-cni", "novanet-cni")
}

/// The injector/monitor (`NOVANET_INJECT_BIN`, else built from the
/// workspace).
pub fn inject_binary() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    workspace_binary(&BIN, "NOVANET_INJECT_BIN", "novanet-conformance", "novanet-inject")
}

/// Starts `novanet-inject` (process `name`, namespace `ns`) as a peer of
/// the agent at 10.0.0.10 (AS 65010): its AS, router id, and `extra`
/// arguments (`--count N`, `--first PREFIX`, ...).
pub fn spawn_inject(lab: &mut Lab, name: &str, ns: &str, local_as: u32, router_id: &str, extra: &[&str]) {
    let inject = inject_binary().display().to_string();
    let local_as = local_as.to_string();
    let mut args = vec![
        "--connect",
        "10.0.0.10",
        "--local-as",
        &local_as,
        "--remote-as",
        "65010",
        "--router-id",
        router_id,
    ];
    args.extend_from_slice(extra);
    lab.spawn(name, ns, &inject, &args);
}

/// A running agent.
pub struct Agent {
    pub name: String,
    pub ns: String,
    pub config_path: PathBuf,
    metrics_port: u16,
    /// The RouteControl API socket.
    pub socket: PathBuf,
}

/// Port of the agent's status endpoint inside its namespace.
pub const STATUS_PORT: u16 = 9102;

impl Agent {
    /// Writes `config` and starts the agent in namespace `ns`; returns once
    /// its status endpoint answers.
    pub fn start(lab: &mut Lab, ns: &str, config: &Value) -> Agent {
        Agent::start_with_env(lab, ns, config, &[])
    }

    /// [`Agent::start`] with environment variables for the agent.
    pub fn start_with_env(lab: &mut Lab, ns: &str, config: &Value, env: &[(&str, &str)]) -> Agent {
        let agent = Agent::launch(lab, ns, config, env);
        agent.wait_ready(lab);
        agent
    }

    /// Writes `config` and starts the agent without waiting for it.
    pub fn launch(lab: &mut Lab, ns: &str, config: &Value, env: &[(&str, &str)]) -> Agent {
        let mut config = config.clone();
        if config.get("metrics_address").is_none() {
            config["metrics_address"] = Value::String(format!("127.0.0.1:{STATUS_PORT}"));
        }
        if config.get("listen_socket").is_none() {
            config["listen_socket"] = Value::String(lab.dir().join(format!("agent-{ns}.sock")).display().to_string());
        }
        let socket = PathBuf::from(config["listen_socket"].as_str().unwrap_or_default());
        let path = lab.dir().join(format!("agent-{ns}.json"));
        std::fs::write(&path, serde_json::to_vec_pretty(&config).unwrap()).expect("agent config");
        let name = format!("agent-{ns}");
        let bin = agent_binary().display().to_string();
        let config_arg = path.display().to_string();
        let vars: Vec<String> = env.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let mut args: Vec<&str> = vars.iter().map(String::as_str).collect();
        args.extend([bin.as_str(), "--config", config_arg.as_str()]);
        lab.spawn(&name, ns, "env", &args);
        Agent {
            name,
            ns: lab.ns_name(ns),
            config_path: path,
            metrics_port: STATUS_PORT,
            socket,
        }
    }

    /// `novanetctl --socket <this agent's socket> ARGS`; its output, the
    /// test failing with stderr when it fails.
    pub fn ctl(&self, args: &[&str]) -> String {
        let out = Command::new(ctl_binary())
            .arg("--socket")
            .arg(&self.socket)
            .args(args)
            .output()
            .expect("novanetctl");
        assert!(
            out.status.success(),
            "novanetctl {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The agent's log so far.
    pub fn log(&self, lab: &Lab) -> String {
        std::fs::read_to_string(lab.dir().join(format!("{}.log", self.name))).unwrap_or_default()
    }

    /// Waits until the status endpoint answers; panics with the log if the
    /// agent exits first.
    pub fn wait_ready(&self, lab: &mut Lab) {
        crate::wait_until("agent status endpoint", Duration::from_secs(30), || {
            if lab.has_exited(&self.name) {
                panic!("the agent exited: {}", self.log(lab));
            }
            self.get("/healthz").map(|_| ())
        });
    }

    /// Rewrites the config file (the agent reads it on SIGHUP).
    pub fn rewrite_config(&self, config: &Value) {
        let mut config = config.clone();
        config["metrics_address"] = Value::String(format!("127.0.0.1:{}", self.metrics_port));
        config["listen_socket"] = Value::String(self.socket.display().to_string());
        std::fs::write(&self.config_path, serde_json::to_vec_pretty(&config).unwrap()).expect("agent config");
    }

    /// The agent's status socket (every view), as the agent derives it
    /// from its RouteControl socket.
    pub fn status_socket(&self) -> PathBuf {
        let stem = self.socket.file_stem().and_then(|s| s.to_str()).unwrap_or("novaroute");
        self.socket.with_file_name(format!("{stem}-status.sock"))
    }

    /// GET on the status socket (an agent from before it existed: on the
    /// TCP port, from inside the agent's namespace).
    pub fn get(&self, path: &str) -> Result<String, String> {
        let socket = self.status_socket();
        if socket.exists() {
            let mut s = std::os::unix::net::UnixStream::connect(&socket).map_err(|e| e.to_string())?;
            return http_get(&mut s, path);
        }
        self.get_tcp(path)
    }

    /// GET on the TCP status port (`metrics_address`), from inside the
    /// agent's namespace: what a pod of the node or a probe reaches.
    pub fn get_tcp(&self, path: &str) -> Result<String, String> {
        let port = self.metrics_port;
        let path = path.to_string();
        crate::lab::in_namespace(&self.ns, move || -> Result<String, String> {
            let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
            http_get(&mut s, &path)
        })
    }

    pub fn peers(&self) -> Value {
        self.get("/status/peers")
            .ok()
            .and_then(|b| serde_json::from_str(&b).ok())
            .unwrap_or(Value::Null)
    }

    pub fn peer(&self, addr: &str) -> Value {
        self.peers()
            .as_array()
            .and_then(|a| a.iter().find(|p| p["neighbor_address"] == addr).cloned())
            .unwrap_or(Value::Null)
    }

    /// The agent's BFD session to `peer` from `/status/bfd` (Null when none).
    pub fn bfd_session(&self, peer: &str) -> Value {
        let v: Value = serde_json::from_str(&self.get("/status/bfd").unwrap_or_default()).unwrap_or(Value::Null);
        v.as_array()
            .and_then(|a| a.iter().find(|s| s["peer"] == peer).cloned())
            .unwrap_or(Value::Null)
    }

    pub fn peer_state(&self, addr: &str) -> String {
        self.peer(addr)["state"].as_str().unwrap_or("").to_string()
    }

    /// The paths the agent holds for a prefix (empty when none).
    pub fn route(&self, prefix: &str) -> Vec<Value> {
        self.get(&format!("/status/routes?prefix={prefix}"))
            .ok()
            .and_then(|b| serde_json::from_str::<Value>(&b).ok())
            .and_then(|v| v.as_array().and_then(|a| a.first()).map(|r| r["paths"].clone()))
            .and_then(|p| p.as_array().cloned())
            .unwrap_or_default()
    }
}

/// One HTTP/1.0 GET on a connected stream: the body of a 200, or the
/// status line.
fn http_get<S: std::io::Read + std::io::Write + TimeoutSet>(s: &mut S, path: &str) -> Result<String, String> {
    s.set_timeout(Duration::from_secs(10)).map_err(|e| e.to_string())?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").map_err(|e| e.to_string())?;
    let mut resp = String::new();
    s.read_to_string(&mut resp).map_err(|e| e.to_string())?;
    let (head, body) = resp.split_once("\r\n\r\n").ok_or("no HTTP body")?;
    if !head.starts_with("HTTP/1.0 200") && !head.starts_with("HTTP/1.1 200") {
        return Err(head.lines().next().unwrap_or("").to_string());
    }
    Ok(body.to_string())
}

/// A stream whose reads can time out.
trait TimeoutSet {
    fn set_timeout(&self, t: Duration) -> std::io::Result<()>;
}

impl TimeoutSet for std::net::TcpStream {
    fn set_timeout(&self, t: Duration) -> std::io::Result<()> {
        self.set_read_timeout(Some(t))
    }
}

impl TimeoutSet for std::os::unix::net::UnixStream {
    fn set_timeout(&self, t: Duration) -> std::io::Result<()> {
        self.set_read_timeout(Some(t))
    }
}
