//! `novanet-cni install`: what the DaemonSet's init container runs to put
//! the plugin and its network configuration on the node. Both are written
//! to a temporary file beside their place and renamed into it, so a runtime
//! that executes the plugin or reads the configuration at that moment sees
//! the old one or the new one, never half of either.

use serde_json::{json, Value};
use std::io::Write;
use std::path::{Path, PathBuf};

/// The conflist shipped with the plugin (`cni/examples/10-novanet.conflist`).
pub const CONFLIST: &str = include_str!("../examples/10-novanet.conflist");

/// Where to install, and what the configuration says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Install {
    pub bin_dir: PathBuf,
    pub conf_dir: PathBuf,
    pub agent_socket: String,
    /// Chain portmap (hostPort) after novanet-cni.
    pub portmap: bool,
}

impl Install {
    /// Reads `--bin-dir DIR --conf-dir DIR --agent-socket PATH
    /// [--no-portmap]`.
    pub fn from_args(args: &[String]) -> Result<Install, String> {
        let mut i = Install {
            bin_dir: PathBuf::from("/opt/cni/bin"),
            conf_dir: PathBuf::from("/etc/cni/net.d"),
            agent_socket: crate::spec::DEFAULT_AGENT_SOCKET.to_string(),
            portmap: true,
        };
        let mut it = args.iter();
        while let Some(a) = it.next() {
            let mut value = |name: &str| it.next().cloned().ok_or_else(|| format!("{name} needs a value"));
            match a.as_str() {
                "--bin-dir" => i.bin_dir = value(a)?.into(),
                "--conf-dir" => i.conf_dir = value(a)?.into(),
                "--agent-socket" => i.agent_socket = value(a)?,
                "--no-portmap" => i.portmap = false,
                other => {
                    return Err(format!(
                        "unknown argument {other:?} (--bin-dir, --conf-dir, --agent-socket, --no-portmap)"
                    ))
                }
            }
        }
        if !i.agent_socket.starts_with('/') {
            return Err(format!("--agent-socket {:?} is not an absolute path", i.agent_socket));
        }
        Ok(i)
    }

    /// The network configuration list to install.
    pub fn conflist(&self) -> Value {
        let mut v: Value = serde_json::from_str(CONFLIST).expect("the shipped conflist is JSON");
        v["plugins"][0]["agent_socket"] = json!(self.agent_socket);
        if !self.portmap {
            let plugins = v["plugins"].as_array_mut().expect("plugins");
            plugins.retain(|p| p["type"] != "portmap");
        }
        v
    }

    /// Copies `plugin` (this binary) and writes the conflist.
    pub fn run(&self, plugin: &Path) -> std::io::Result<Vec<PathBuf>> {
        let bin = self.bin_dir.join("novanet-cni");
        let body = std::fs::read(plugin)?;
        replace(&bin, &body, 0o755)?;
        let conf = self.conf_dir.join("10-novanet.conflist");
        let mut text = serde_json::to_vec_pretty(&self.conflist()).expect("JSON");
        text.push(b'\n');
        replace(&conf, &text, 0o644)?;
        Ok(vec![bin, conf])
    }
}

/// Writes `body` to `path` through a temporary file in the same directory
/// and a rename.
fn replace(path: &Path, body: &[u8], mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("novanet"),
        std::process::id()
    ));
    {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)?;
        f.write_all(body)?;
        f.sync_all()?;
    }
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode))?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plugin_and_its_configuration_are_put_in_place_whole() {
        let root = std::env::temp_dir().join(format!("novanet-install-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let args: Vec<String> = [
            "--bin-dir",
            &root.join("bin").display().to_string(),
            "--conf-dir",
            &root.join("net.d").display().to_string(),
            "--agent-socket",
            "/run/novanet/cni.sock",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let install = Install::from_args(&args).unwrap();
        let fake_plugin = root.join("plugin");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::write(&fake_plugin, b"\x7fELF plugin").unwrap();
        let written = install.run(&fake_plugin).unwrap();
        assert_eq!(std::fs::read(&written[0]).unwrap(), b"\x7fELF plugin");
        let conf: Value = serde_json::from_slice(&std::fs::read(&written[1]).unwrap()).unwrap();
        assert_eq!(conf["plugins"][0]["type"], "novanet-cni");
        assert_eq!(conf["plugins"][0]["agent_socket"], "/run/novanet/cni.sock");
        assert_eq!(conf["plugins"][1]["type"], "portmap");
        // Again: replaced, no temporary files left.
        install.run(&fake_plugin).unwrap();
        let left: Vec<_> = std::fs::read_dir(root.join("bin")).unwrap().collect();
        assert_eq!(left.len(), 1);
        let no_portmap = Install {
            portmap: false,
            ..install
        };
        assert_eq!(no_portmap.conflist()["plugins"].as_array().unwrap().len(), 1);
        assert!(Install::from_args(&["--agent-socket".into(), "rel".into()]).is_err());
        assert!(Install::from_args(&["--bogus".into()]).is_err());
        std::fs::remove_dir_all(&root).unwrap();
    }
}
