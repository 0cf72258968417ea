//! A container runtime's side of CNI, as containerd drives it through
//! libcni: a network configuration list run plugin by plugin (ADD and
//! CHECK in order, DEL in reverse), each plugin's configuration made from
//! its entry plus the list's `name` and `cniVersion`, the previous result
//! passed on as `prevResult`, `runtimeConfig` filled from the plugin's
//! capabilities, the environment and stdin as the spec gives them. Plugins
//! run inside a lab namespace (the node).

use crate::Lab;
use serde_json::{json, Value};
use std::io::Write;
use std::path::PathBuf;
use std::process::Stdio;

/// One node's runtime.
pub struct Runtime<'a> {
    pub lab: &'a Lab,
    /// The node's namespace (short name).
    pub node: String,
    /// Where plugins are found (`CNI_PATH`).
    pub cni_path: PathBuf,
    pub conflist: Value,
}

/// A plugin's answer: exit success and its stdout as JSON (Null when
/// empty).
#[derive(Debug, Clone)]
pub struct Answer {
    pub ok: bool,
    pub out: Value,
}

impl Answer {
    /// The error code of a failed answer.
    pub fn code(&self) -> Option<u64> {
        (!self.ok).then(|| self.out["code"].as_u64()).flatten()
    }
}

/// A pod as the runtime knows it.
#[derive(Debug, Clone)]
pub struct Sandbox {
    pub container_id: String,
    /// `/run/netns/...`
    pub netns: String,
    pub ifname: String,
    pub namespace: String,
    pub name: String,
    /// `runtimeConfig` capabilities (e.g. `portMappings`).
    pub runtime_config: Value,
}

impl Runtime<'_> {
    fn plugins(&self) -> Vec<Value> {
        self.conflist["plugins"].as_array().cloned().unwrap_or_default()
    }

    /// The configuration one plugin gets on stdin.
    fn plugin_config(&self, plugin: &Value, prev: Option<&Value>, sandbox: &Sandbox) -> Value {
        let mut conf = plugin.clone();
        conf["name"] = self.conflist["name"].clone();
        conf["cniVersion"] = self.conflist["cniVersion"].clone();
        if let Some(caps) = plugin["capabilities"].as_object() {
            let mut rc = serde_json::Map::new();
            for (cap, on) in caps {
                if on.as_bool() == Some(true) {
                    if let Some(v) = sandbox.runtime_config.get(cap) {
                        rc.insert(cap.clone(), v.clone());
                    }
                }
            }
            if !rc.is_empty() {
                conf["runtimeConfig"] = Value::Object(rc);
            }
        }
        if let Some(p) = prev {
            conf["prevResult"] = p.clone();
        }
        conf
    }

    /// Runs one plugin binary with `command` and `stdin`.
    pub fn exec(&self, plugin_type: &str, command: &str, sandbox: Option<&Sandbox>, stdin: &Value) -> Answer {
        self.exec_raw(plugin_type, command, sandbox, &serde_json::to_vec(stdin).unwrap(), &[])
    }

    /// Runs one plugin with raw stdin and extra (or, with an empty value,
    /// removed) environment variables.
    pub fn exec_raw(
        &self,
        plugin_type: &str,
        command: &str,
        sandbox: Option<&Sandbox>,
        stdin: &[u8],
        env: &[(&str, &str)],
    ) -> Answer {
        let mut cmd = self
            .lab
            .cmd(&self.node, &self.cni_path.join(plugin_type).display().to_string());
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("CNI_COMMAND", command)
            .env("CNI_PATH", &self.cni_path);
        if let Some(s) = sandbox {
            cmd.env("CNI_CONTAINERID", &s.container_id)
                .env("CNI_NETNS", &s.netns)
                .env("CNI_IFNAME", &s.ifname)
                .env(
                    "CNI_ARGS",
                    format!(
                        "IgnoreUnknown=1;K8S_POD_NAMESPACE={};K8S_POD_NAME={};K8S_POD_INFRA_CONTAINER_ID={};K8S_POD_UID=uid-{}",
                        s.namespace, s.name, s.container_id, s.name
                    ),
                );
        }
        for (k, v) in env {
            if v.is_empty() {
                cmd.env_remove(k);
            } else {
                cmd.env(k, v);
            }
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run the plugin");
        child.stdin.take().unwrap().write_all(stdin).unwrap();
        let out = child.wait_with_output().expect("the plugin ends");
        let text = String::from_utf8_lossy(&out.stdout);
        let value = if text.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or_else(|e| {
                panic!(
                    "{plugin_type} {command} printed no JSON ({e}): {text:?}; stderr {}",
                    String::from_utf8_lossy(&out.stderr)
                )
            })
        };
        Answer {
            ok: out.status.success(),
            out: value,
        }
    }

    /// ADD through the list; the last plugin's result, or the first error.
    pub fn add(&self, sandbox: &Sandbox) -> Result<Value, Answer> {
        let mut prev: Option<Value> = None;
        for p in self.plugins() {
            let conf = self.plugin_config(&p, prev.as_ref(), sandbox);
            let a = self.exec(p["type"].as_str().unwrap(), "ADD", Some(sandbox), &conf);
            if !a.ok {
                return Err(a);
            }
            prev = Some(a.out);
        }
        Ok(prev.unwrap_or(Value::Null))
    }

    /// CHECK through the list with the cached ADD result.
    pub fn check(&self, sandbox: &Sandbox, result: &Value) -> Result<(), Answer> {
        self.check_except(sandbox, result, &[])
    }

    /// CHECK through the list, leaving out the plugins of the types named.
    pub fn check_except(&self, sandbox: &Sandbox, result: &Value, skip: &[&str]) -> Result<(), Answer> {
        for p in self
            .plugins()
            .iter()
            .filter(|p| !skip.contains(&p["type"].as_str().unwrap_or("")))
        {
            let conf = self.plugin_config(p, Some(result), sandbox);
            let a = self.exec(p["type"].as_str().unwrap(), "CHECK", Some(sandbox), &conf);
            if !a.ok {
                return Err(a);
            }
        }
        Ok(())
    }

    /// DEL through the list in reverse, with the cached ADD result.
    pub fn del(&self, sandbox: &Sandbox, result: Option<&Value>) -> Result<(), Answer> {
        for p in self.plugins().iter().rev() {
            let conf = self.plugin_config(p, result, sandbox);
            let a = self.exec(p["type"].as_str().unwrap(), "DEL", Some(sandbox), &conf);
            if !a.ok {
                return Err(a);
            }
        }
        Ok(())
    }

    /// GC with the attachments still in use.
    pub fn gc(&self, valid: &[&Sandbox]) -> Result<(), Answer> {
        let attachments: Vec<Value> = valid
            .iter()
            .map(|s| json!({"containerID": s.container_id, "ifname": s.ifname}))
            .collect();
        for p in self.plugins() {
            let mut conf = self.plugin_config(&p, None, valid.first().copied().unwrap_or(&empty_sandbox()));
            conf.as_object_mut().unwrap().remove("runtimeConfig");
            conf["cni.dev/valid-attachments"] = Value::Array(attachments.clone());
            let a = self.exec(p["type"].as_str().unwrap(), "GC", None, &conf);
            if !a.ok {
                return Err(a);
            }
        }
        Ok(())
    }

    /// STATUS of the first plugin.
    pub fn status(&self) -> Answer {
        let p = &self.plugins()[0];
        let conf = self.plugin_config(p, None, &empty_sandbox());
        self.exec(p["type"].as_str().unwrap(), "STATUS", None, &conf)
    }
}

fn empty_sandbox() -> Sandbox {
    Sandbox {
        container_id: String::new(),
        netns: String::new(),
        ifname: String::new(),
        namespace: String::new(),
        name: String::new(),
        runtime_config: Value::Null,
    }
}

/// A directory to use as `CNI_PATH`: novanet-cni and these plugins of
/// Debian's containernetworking-plugins (`/usr/lib/cni`); asked again, the
/// same directory with the links made afresh.
pub fn plugin_dir(lab: &Lab, debian_plugins: &[&str]) -> PathBuf {
    let dir = lab.dir().join("cni-bin");
    std::fs::create_dir_all(&dir).expect("CNI_PATH directory");
    let link = |target: &std::path::Path, name: &str| {
        let _ = std::fs::remove_file(dir.join(name));
        std::os::unix::fs::symlink(target, dir.join(name)).unwrap_or_else(|e| panic!("{name} link: {e}"));
    };
    link(&crate::agent::cni_binary(), "novanet-cni");
    for p in debian_plugins {
        link(&std::path::Path::new("/usr/lib/cni").join(p), p);
    }
    dir
}

/// A pod of namespace `default` with a network namespace of its own.
pub fn pod(lab: &mut Lab, name: &str, runtime_config: Value) -> Sandbox {
    let ns = lab.add_ns(name);
    Sandbox {
        container_id: format!("c{}{name}", lab.prefix()),
        netns: format!("/run/netns/{ns}"),
        ifname: "eth0".into(),
        namespace: "default".into(),
        name: name.into(),
        runtime_config,
    }
}

/// A network configuration list of novanet-cni alone.
pub fn novanet_only(agent_socket: &std::path::Path) -> Value {
    json!({"cniVersion": "1.0.0", "name": "novanet",
        "plugins": [{"type": "novanet-cni", "agent_socket": agent_socket.display().to_string()}]})
}

/// The IPv4 address an ADD result gives the pod.
pub fn pod_ipv4(result: &Value) -> String {
    result["ips"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| a["address"].as_str())
        .find(|a| !a.contains(':'))
        .and_then(|a| a.split('/').next())
        .expect("an IPv4 address in the result")
        .to_string()
}
