//! The CNI specification's side of the plugin (CNI 0.4.0, 1.0.0, 1.1.0):
//! the environment a runtime sets, the network configuration on stdin,
//! results and errors exactly as the spec writes them.

use novanet_proto::cni::{Attachment, Pod};
use serde_json::{json, Value};
use std::net::IpAddr;

/// The versions this plugin speaks, oldest first.
pub const SUPPORTED_VERSIONS: [&str; 3] = ["0.4.0", "1.0.0", "1.1.0"];

/// The agent's socket when the network configuration names none.
pub const DEFAULT_AGENT_SOCKET: &str = "/run/novanet/cni.sock";

/// Error codes (CNI spec, "Error" section; 100 and up are the plugin's).
pub mod code {
    pub const INCOMPATIBLE_VERSION: u32 = 1;
    pub const UNSUPPORTED_FIELD: u32 = 2;
    pub const UNKNOWN_CONTAINER: u32 = 3;
    pub const INVALID_ENVIRONMENT: u32 = 4;
    pub const IO_FAILURE: u32 = 5;
    pub const DECODE: u32 = 6;
    pub const INVALID_CONFIG: u32 = 7;
    pub const TRY_AGAIN_LATER: u32 = 11;
    pub const NOT_AVAILABLE: u32 = 50;
    /// The node's PodCIDR has no free address.
    pub const NO_ADDRESS_LEFT: u32 = novanet_proto::cni::NO_ADDRESS_LEFT;
    /// `CNI_IFNAME` exists in the pod's namespace already.
    pub const INTERFACE_EXISTS: u32 = 101;
    /// The kernel refused an interface, address or route.
    pub const NETLINK: u32 = 102;
    /// CHECK found the attachment other than ADD left it.
    pub const CHECK_FAILED: u32 = 103;
}

/// An error as the spec prints it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CniError {
    pub code: u32,
    pub msg: String,
    pub details: String,
}

impl CniError {
    pub fn new(code: u32, msg: impl Into<String>) -> Self {
        CniError {
            code,
            msg: msg.into(),
            details: String::new(),
        }
    }

    pub fn details(mut self, d: impl Into<String>) -> Self {
        self.details = d.into();
        self
    }

    /// The JSON the runtime reads from stdout.
    pub fn to_json(&self, version: &str) -> Value {
        let mut v = json!({"cniVersion": version, "code": self.code, "msg": self.msg});
        if !self.details.is_empty() {
            v["details"] = json!(self.details);
        }
        v
    }
}

/// What the runtime asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Add,
    Del,
    Check,
    Gc,
    Status,
    Version,
}

/// The environment of one invocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Env {
    pub command: Command,
    pub container_id: String,
    pub netns: String,
    pub ifname: String,
    pub pod: Pod,
}

impl Env {
    /// Reads and checks the variables `command` needs (`get` reads one).
    pub fn read(get: impl Fn(&str) -> Option<String>) -> Result<Env, CniError> {
        let var = |name: &str| get(name).filter(|v| !v.is_empty());
        let missing = |name: &str, cmd: &str| {
            CniError::new(code::INVALID_ENVIRONMENT, format!("{name} is not set; {cmd} needs it"))
        };
        let command = match var("CNI_COMMAND").as_deref() {
            Some("ADD") => Command::Add,
            Some("DEL") => Command::Del,
            Some("CHECK") => Command::Check,
            Some("GC") => Command::Gc,
            Some("STATUS") => Command::Status,
            Some("VERSION") => Command::Version,
            Some(other) => {
                return Err(CniError::new(
                    code::INVALID_ENVIRONMENT,
                    format!("CNI_COMMAND {other:?} is not ADD, DEL, CHECK, GC, STATUS or VERSION"),
                ))
            }
            None => return Err(missing("CNI_COMMAND", "every command")),
        };
        let mut env = Env {
            command,
            container_id: String::new(),
            netns: String::new(),
            ifname: String::new(),
            pod: Pod::default(),
        };
        let name = match command {
            Command::Add => "ADD",
            Command::Del => "DEL",
            Command::Check => "CHECK",
            Command::Gc => "GC",
            Command::Status | Command::Version => return Ok(env),
        };
        if var("CNI_PATH").is_none() {
            return Err(missing("CNI_PATH", name));
        }
        if command == Command::Gc {
            return Ok(env);
        }
        env.container_id = var("CNI_CONTAINERID").ok_or_else(|| missing("CNI_CONTAINERID", name))?;
        check_container_id(&env.container_id)?;
        env.ifname = var("CNI_IFNAME").ok_or_else(|| missing("CNI_IFNAME", name))?;
        check_ifname(&env.ifname)?;
        match var("CNI_NETNS") {
            Some(n) => env.netns = n,
            // DEL may come after the namespace is gone.
            None if command == Command::Del => {}
            None => return Err(missing("CNI_NETNS", name)),
        }
        env.pod = pod_of(&var("CNI_ARGS").unwrap_or_default());
        Ok(env)
    }

    pub fn attachment(&self) -> Attachment {
        Attachment {
            container_id: self.container_id.clone(),
            ifname: self.ifname.clone(),
        }
    }
}

/// A container id: letters, digits, `_`, `.`, `-`, starting with a letter
/// or digit (CNI spec).
fn check_container_id(id: &str) -> Result<(), CniError> {
    let mut chars = id.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    if first_ok && chars.all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c)) {
        Ok(())
    } else {
        Err(CniError::new(
            code::INVALID_ENVIRONMENT,
            format!("CNI_CONTAINERID {id:?} is not a container id (letters, digits, _ . -)"),
        ))
    }
}

/// An interface name as the kernel takes it: 1 to 15 bytes, no `/`, no
/// whitespace or control character, not `.` or `..`.
pub fn check_ifname(name: &str) -> Result<(), CniError> {
    let bad = name.is_empty()
        || name.len() > 15
        || name == "."
        || name == ".."
        || name
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace() || c.is_control());
    if bad {
        Err(CniError::new(
            code::INVALID_ENVIRONMENT,
            format!("CNI_IFNAME {name:?} is not an interface name (1-15 bytes, no '/', ':' or whitespace)"),
        ))
    } else {
        Ok(())
    }
}

/// The pod from `CNI_ARGS` (`K=V;K=V`, as containerd sends them).
fn pod_of(args: &str) -> Pod {
    let mut pod = Pod::default();
    for kv in args.split(';') {
        match kv.split_once('=') {
            Some(("K8S_POD_NAMESPACE", v)) => pod.namespace = v.to_string(),
            Some(("K8S_POD_NAME", v)) => pod.name = v.to_string(),
            Some(("K8S_POD_UID", v)) => pod.uid = v.to_string(),
            _ => {}
        }
    }
    pod
}

/// The network configuration on stdin.
#[derive(Debug, Clone, PartialEq)]
pub struct NetConf {
    pub cni_version: String,
    pub name: String,
    pub agent_socket: String,
    /// The result of the plugins before this one (chained; CHECK gets ADD's).
    pub prev_result: Option<Value>,
    /// GC: the attachments the runtime still uses.
    pub valid_attachments: Vec<Attachment>,
}

/// The version an error is reported in when the configuration cannot say.
pub const FALLBACK_VERSION: &str = "1.1.0";

/// Whether `a` is an earlier version than `b` (`x.y.z`).
pub fn older(a: &str, b: &str) -> bool {
    let parts = |v: &str| -> Vec<u32> { v.split('.').map(|p| p.parse().unwrap_or(0)).collect() };
    parts(a) < parts(b)
}

impl NetConf {
    /// Reads stdin's configuration for `command`.
    pub fn parse(stdin: &[u8], command: Command) -> Result<NetConf, CniError> {
        let v: Value = serde_json::from_slice(stdin).map_err(|e| {
            CniError::new(code::DECODE, "the network configuration on stdin is not JSON").details(e.to_string())
        })?;
        let Some(obj) = v.as_object() else {
            return Err(CniError::new(
                code::DECODE,
                "the network configuration on stdin is not a JSON object",
            ));
        };
        let text = |k: &str| obj.get(k).and_then(Value::as_str).map(str::to_string);
        let cni_version = text("cniVersion")
            .ok_or_else(|| CniError::new(code::INVALID_CONFIG, "the network configuration has no cniVersion"))?;
        if !SUPPORTED_VERSIONS.contains(&cni_version.as_str()) {
            return Err(CniError::new(
                code::INCOMPATIBLE_VERSION,
                format!(
                    "cniVersion {cni_version} is not supported; novanet-cni speaks {}",
                    SUPPORTED_VERSIONS.join(", ")
                ),
            ));
        }
        if matches!(command, Command::Gc | Command::Status) && older(&cni_version, "1.1.0") {
            return Err(CniError::new(
                code::INCOMPATIBLE_VERSION,
                format!("GC and STATUS need cniVersion 1.1.0, the configuration says {cni_version}"),
            ));
        }
        let name =
            text("name").ok_or_else(|| CniError::new(code::INVALID_CONFIG, "the network configuration has no name"))?;
        let name_ok = name.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
            && name.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
        if !name_ok {
            return Err(CniError::new(
                code::INVALID_CONFIG,
                format!("network name {name:?} is not letters, digits, _ . -"),
            ));
        }
        if let Some(t) = text("type").filter(|t| t != "novanet-cni") {
            return Err(CniError::new(
                code::INVALID_CONFIG,
                format!("type {t:?} is not novanet-cni"),
            ));
        }
        let agent_socket = match obj.get("agent_socket") {
            None => DEFAULT_AGENT_SOCKET.to_string(),
            Some(Value::String(s)) if s.starts_with('/') => s.clone(),
            Some(other) => {
                return Err(CniError::new(
                    code::INVALID_CONFIG,
                    format!("agent_socket {other} is not an absolute path"),
                ))
            }
        };
        let valid_attachments = match obj.get("cni.dev/valid-attachments") {
            None => Vec::new(),
            Some(list) => list
                .as_array()
                .ok_or_else(|| CniError::new(code::INVALID_CONFIG, "cni.dev/valid-attachments is not a list"))?
                .iter()
                .map(|a| {
                    let field = |k: &str| a.get(k).and_then(Value::as_str).map(str::to_string);
                    match (field("containerID"), field("ifname")) {
                        (Some(container_id), Some(ifname)) => Ok(Attachment { container_id, ifname }),
                        _ => Err(CniError::new(
                            code::INVALID_CONFIG,
                            format!("cni.dev/valid-attachments entry {a} needs containerID and ifname"),
                        )),
                    }
                })
                .collect::<Result<_, _>>()?,
        };
        Ok(NetConf {
            cni_version,
            name,
            agent_socket,
            prev_result: obj.get("prevResult").cloned(),
            valid_attachments,
        })
    }
}

/// The answer to VERSION.
pub fn version_result(stdin: &[u8]) -> Value {
    let asked = serde_json::from_slice::<Value>(stdin)
        .ok()
        .and_then(|v| v.get("cniVersion").and_then(Value::as_str).map(str::to_string))
        .filter(|v| SUPPORTED_VERSIONS.contains(&v.as_str()))
        .unwrap_or_else(|| FALLBACK_VERSION.to_string());
    json!({"cniVersion": asked, "supportedVersions": SUPPORTED_VERSIONS})
}

/// The interfaces of an attachment, for the result.
pub struct Interfaces<'a> {
    pub host: (&'a str, &'a str),
    pub pod: (&'a str, &'a str),
    pub sandbox: &'a str,
}

/// The ADD result in `version`: the plugins before this one (`prev`),
/// then the host and pod interfaces, an address per family on the pod's
/// interface with its gateway, and a default route per family.
pub fn add_result(
    version: &str,
    prev: Option<&Value>,
    ifs: &Interfaces,
    ips: &[IpAddr],
    gateway: impl Fn(&IpAddr) -> IpAddr,
) -> Value {
    let mut interfaces: Vec<Value> = prev
        .and_then(|p| p.get("interfaces"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut addresses: Vec<Value> = prev
        .and_then(|p| p.get("ips"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut routes: Vec<Value> = prev
        .and_then(|p| p.get("routes"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    interfaces.push(json!({"name": ifs.host.0, "mac": ifs.host.1}));
    let pod_index = interfaces.len();
    interfaces.push(json!({"name": ifs.pod.0, "mac": ifs.pod.1, "sandbox": ifs.sandbox}));
    for ip in ips {
        let len = if ip.is_ipv4() { 32 } else { 128 };
        let mut a = json!({
            "address": format!("{ip}/{len}"),
            "gateway": gateway(ip).to_string(),
            "interface": pod_index,
        });
        if version == "0.4.0" {
            a["version"] = json!(if ip.is_ipv4() { "4" } else { "6" });
        }
        addresses.push(a);
        let dst = if ip.is_ipv4() { "0.0.0.0/0" } else { "::/0" };
        routes.push(json!({"dst": dst, "gw": gateway(ip).to_string()}));
    }
    let dns = prev.and_then(|p| p.get("dns")).cloned().unwrap_or_else(|| json!({}));
    json!({
        "cniVersion": version,
        "interfaces": interfaces,
        "ips": addresses,
        "routes": routes,
        "dns": dns,
    })
}

/// The addresses a previous result gave to the interface named `ifname`
/// (CHECK compares them with what the agent holds).
pub fn result_addresses(prev: &Value, ifname: &str) -> Vec<IpAddr> {
    let interfaces = prev
        .get("interfaces")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    prev.get("ips")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|a| {
            a.get("interface")
                .and_then(Value::as_u64)
                .and_then(|i| interfaces.get(i as usize))
                .and_then(|i| i.get("name"))
                .and_then(Value::as_str)
                == Some(ifname)
        })
        .filter_map(|a| a.get("address").and_then(Value::as_str))
        .filter_map(|s| s.split('/').next().and_then(|ip| ip.parse().ok()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &[(&str, &str)]) -> Result<Env, CniError> {
        let vars: Vec<(String, String)> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Env::read(|k| vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()))
    }

    const ADD: [(&str, &str); 5] = [
        ("CNI_COMMAND", "ADD"),
        ("CNI_CONTAINERID", "abc123"),
        ("CNI_NETNS", "/var/run/netns/p1"),
        ("CNI_IFNAME", "eth0"),
        ("CNI_PATH", "/opt/cni/bin"),
    ];

    #[test]
    fn the_environment_is_read_and_checked_per_command() {
        let mut vars = ADD.to_vec();
        vars.push((
            "CNI_ARGS",
            "IgnoreUnknown=1;K8S_POD_NAMESPACE=web;K8S_POD_NAME=front-1;K8S_POD_UID=u-1",
        ));
        let e = env(&vars).unwrap();
        assert_eq!((e.command, e.ifname.as_str()), (Command::Add, "eth0"));
        assert_eq!(
            (e.pod.namespace.as_str(), e.pod.name.as_str(), e.pod.uid.as_str()),
            ("web", "front-1", "u-1")
        );
        for (drop, var) in [
            (1, "CNI_CONTAINERID"),
            (2, "CNI_NETNS"),
            (3, "CNI_IFNAME"),
            (4, "CNI_PATH"),
        ] {
            let mut v = ADD.to_vec();
            v.remove(drop);
            let err = env(&v).unwrap_err();
            assert_eq!(err.code, code::INVALID_ENVIRONMENT);
            assert!(err.msg.contains(var), "{}", err.msg);
        }
        let del = env(&[
            ("CNI_COMMAND", "DEL"),
            ("CNI_CONTAINERID", "x"),
            ("CNI_IFNAME", "eth0"),
            ("CNI_PATH", "/b"),
        ]);
        assert!(del.is_ok(), "DEL without a namespace is fine");
        assert_eq!(env(&[("CNI_COMMAND", "VERSION")]).unwrap().command, Command::Version);
        assert_eq!(
            env(&[("CNI_COMMAND", "FOO")]).unwrap_err().code,
            code::INVALID_ENVIRONMENT
        );
        assert_eq!(env(&[]).unwrap_err().code, code::INVALID_ENVIRONMENT);
        let mut bad_if = ADD.to_vec();
        bad_if[3] = ("CNI_IFNAME", "eth0\nrouter");
        assert_eq!(env(&bad_if).unwrap_err().code, code::INVALID_ENVIRONMENT);
        let mut bad_id = ADD.to_vec();
        bad_id[1] = ("CNI_CONTAINERID", "-x/y");
        assert_eq!(env(&bad_id).unwrap_err().code, code::INVALID_ENVIRONMENT);
    }

    #[test]
    fn configurations_are_checked_with_the_spec_s_codes() {
        let ok = br#"{"cniVersion":"1.0.0","name":"novanet","type":"novanet-cni"}"#;
        let c = NetConf::parse(ok, Command::Add).unwrap();
        assert_eq!(c.agent_socket, DEFAULT_AGENT_SOCKET);
        assert_eq!(
            NetConf::parse(b"{not json", Command::Add).unwrap_err().code,
            code::DECODE
        );
        assert_eq!(NetConf::parse(b"[]", Command::Add).unwrap_err().code, code::DECODE);
        let cases: [(&[u8], u32); 6] = [
            (br#"{"name":"n"}"#, code::INVALID_CONFIG),
            (br#"{"cniVersion":"0.3.1","name":"n"}"#, code::INCOMPATIBLE_VERSION),
            (br#"{"cniVersion":"1.0.0"}"#, code::INVALID_CONFIG),
            (br#"{"cniVersion":"1.0.0","name":"a b"}"#, code::INVALID_CONFIG),
            (
                br#"{"cniVersion":"1.0.0","name":"n","type":"bridge"}"#,
                code::INVALID_CONFIG,
            ),
            (
                br#"{"cniVersion":"1.0.0","name":"n","agent_socket":"run/x"}"#,
                code::INVALID_CONFIG,
            ),
        ];
        for (text, want) in cases {
            assert_eq!(
                NetConf::parse(text, Command::Add).unwrap_err().code,
                want,
                "{}",
                String::from_utf8_lossy(text)
            );
        }
        let gc_old = br#"{"cniVersion":"1.0.0","name":"n"}"#;
        assert_eq!(
            NetConf::parse(gc_old, Command::Gc).unwrap_err().code,
            code::INCOMPATIBLE_VERSION
        );
        let gc =
            br#"{"cniVersion":"1.1.0","name":"n","cni.dev/valid-attachments":[{"containerID":"a","ifname":"eth0"}]}"#;
        assert_eq!(NetConf::parse(gc, Command::Gc).unwrap().valid_attachments.len(), 1);
    }

    #[test]
    fn results_follow_the_version_asked() {
        let ifs = Interfaces {
            host: ("nv1", "ee:ee:ee:ee:ee:ee"),
            pod: ("eth0", "02:00:00:00:00:01"),
            sandbox: "/var/run/netns/p1",
        };
        let ips: Vec<IpAddr> = vec!["10.244.1.2".parse().unwrap(), "fd00::2".parse().unwrap()];
        let gw = |ip: &IpAddr| -> IpAddr {
            if ip.is_ipv4() {
                "169.254.1.1".parse().unwrap()
            } else {
                "fe80::1".parse().unwrap()
            }
        };
        let r = add_result("1.0.0", None, &ifs, &ips, gw);
        assert_eq!(
            r["ips"][0],
            json!({"address": "10.244.1.2/32", "gateway": "169.254.1.1", "interface": 1})
        );
        assert_eq!(r["routes"][1], json!({"dst": "::/0", "gw": "fe80::1"}));
        let old = add_result("0.4.0", None, &ifs, &ips, gw);
        assert_eq!(old["ips"][1]["version"], "6");
        // Chained after another plugin: its interfaces come first.
        let prev = json!({"cniVersion": "1.0.0", "interfaces": [{"name": "x"}], "ips": [], "dns": {"nameservers": ["10.96.0.10"]}});
        let chained = add_result("1.0.0", Some(&prev), &ifs, &ips, gw);
        assert_eq!(chained["ips"][0]["interface"], 2);
        assert_eq!(chained["dns"]["nameservers"][0], "10.96.0.10");
        assert_eq!(result_addresses(&r, "eth0"), ips);
        assert_eq!(
            version_result(br#"{"cniVersion":"1.0.0"}"#),
            json!({"cniVersion": "1.0.0", "supportedVersions": ["0.4.0", "1.0.0", "1.1.0"]})
        );
        let e = CniError::new(code::TRY_AGAIN_LATER, "agent down").to_json("1.1.0");
        assert_eq!(e, json!({"cniVersion": "1.1.0", "code": 11, "msg": "agent down"}));
    }
}
