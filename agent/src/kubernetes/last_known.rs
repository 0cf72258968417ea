//! The cluster as this agent last saw it: its own Node, the nodes of its
//! mesh and the ToRs the routing resources gave it (with their passwords:
//! the file is 0600), kept in a file beside the RouteControl socket (a
//! hostPath in the chart, so it outlives the agent's restarts). When the
//! API server cannot be reached at start, routing starts from it, and
//! catches up once the watches get through.

use super::nodes::ClusterNode;
use super::resources::objects::NodeOverrideSpec;
use super::resources::plan::ResourcePeer;
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

/// What is kept of a Node: what routing needs, nothing of its lifecycle
/// (a drain or a deletion seen long ago is not acted on).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeptNode {
    pub name: String,
    pub internal_ip: Option<IpAddr>,
    pub pod_cidrs: Vec<IpNet>,
    pub in_mesh: bool,
    #[serde(default)]
    pub route_server: bool,
    pub asn: Option<u32>,
    pub control_plane: bool,
}

impl KeptNode {
    pub fn of(n: &ClusterNode) -> KeptNode {
        KeptNode {
            name: n.name.clone(),
            internal_ip: n.internal_ip,
            pod_cidrs: n.pod_cidrs.clone(),
            in_mesh: n.in_mesh,
            route_server: n.route_server,
            asn: n.asn,
            control_plane: n.control_plane,
        }
    }

    pub fn node(&self) -> ClusterNode {
        ClusterNode {
            name: self.name.clone(),
            uid: None,
            internal_ip: self.internal_ip,
            pod_cidrs: self.pod_cidrs.clone(),
            in_mesh: self.in_mesh,
            route_server: self.route_server,
            asn: self.asn,
            control_plane: self.control_plane,
            lifecycle: Default::default(),
            problems: Vec::new(),
        }
    }
}

/// The file's contents.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Kept {
    /// This node's Node.
    pub own: Option<KeptNode>,
    /// Every Node of the cluster when the mesh last changed.
    pub nodes: Vec<KeptNode>,
    /// The peers of the NovaBGPClusterConfig selecting this node.
    #[serde(default)]
    pub resource_peers: Vec<ResourcePeer>,
    /// This node's NovaBGPNodeOverride.
    #[serde(default)]
    pub own_override: Option<NodeOverrideSpec>,
    /// Seconds since the epoch of the last write.
    pub saved_at: u64,
}

/// The file.
#[derive(Debug, Clone)]
pub struct LastKnown {
    path: PathBuf,
}

impl LastKnown {
    /// Beside `listen_socket`, named after it
    /// (`/run/novaroute/novaroute-kubernetes.json`).
    pub fn beside(listen_socket: &Path) -> LastKnown {
        let stem = listen_socket
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("novaroute");
        LastKnown {
            path: listen_socket.with_file_name(format!("{stem}-kubernetes.json")),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// What was kept; nothing when there is no file or it cannot be read
    /// (said in the log).
    pub fn load(&self) -> Kept {
        match std::fs::read(&self.path) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                tracing::warn!(file = %self.path.display(), error = %e, "last known cluster unreadable; ignored");
                Kept::default()
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Kept::default(),
            Err(e) => {
                tracing::warn!(file = %self.path.display(), error = %e, "last known cluster unreadable; ignored");
                Kept::default()
            }
        }
    }

    /// Keeps this node's Node.
    pub fn keep_own(&self, own: &ClusterNode) {
        self.change(|k| k.own = Some(KeptNode::of(own)));
    }

    /// Keeps the cluster's Nodes.
    pub fn keep_nodes(&self, nodes: &[ClusterNode]) {
        self.change(|k| k.nodes = nodes.iter().map(KeptNode::of).collect());
    }

    /// Keeps the peers the routing resources give this node.
    pub fn keep_resource_peers(&self, peers: &[ResourcePeer]) {
        self.change(|k| k.resource_peers = peers.to_vec());
    }

    /// Keeps this node's NovaBGPNodeOverride (none: there is none).
    pub fn keep_own_override(&self, o: Option<NodeOverrideSpec>) {
        if self.load().own_override != o {
            self.change(|k| k.own_override = o);
        }
    }

    /// Reads, changes and writes the file, one writer at a time (the mesh
    /// and the resources keep their parts from tasks of their own).
    fn change(&self, f: impl FnOnce(&mut Kept)) {
        static WRITING: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _one = WRITING.lock().unwrap_or_else(|e| e.into_inner());
        let mut k = self.load();
        f(&mut k);
        self.store(k);
    }

    /// Writes the file whole (a temporary file renamed over it), mode 0600.
    fn store(&self, mut k: Kept) {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        k.saved_at = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let tmp = self.path.with_extension("json.new");
        let written = serde_json::to_vec(&k).map_err(std::io::Error::other).and_then(|bytes| {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &self.path)
        });
        if let Err(e) = written {
            tracing::warn!(file = %self.path.display(), error = %e, "last known cluster not kept");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_kept_is_read_back_and_a_bad_file_is_nothing() {
        let dir = std::env::temp_dir().join(format!("novanet-last-known-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let lk = LastKnown::beside(&dir.join("agent.sock"));
        assert_eq!(lk.path(), dir.join("agent-kubernetes.json"));
        assert_eq!(lk.load(), Kept::default());
        let node = |name: &str, ip: &str| {
            KeptNode {
                name: name.into(),
                internal_ip: Some(ip.parse().unwrap()),
                pod_cidrs: vec!["10.244.1.0/24".parse().unwrap()],
                in_mesh: true,
                route_server: false,
                asn: None,
                control_plane: false,
            }
            .node()
        };
        lk.keep_own(&node("n1", "10.0.0.11"));
        lk.keep_nodes(&[node("n1", "10.0.0.11"), node("n2", "10.0.0.12")]);
        let k = lk.load();
        assert_eq!(k.own.unwrap().name, "n1");
        assert_eq!(
            k.nodes.iter().map(|n| n.name.as_str()).collect::<Vec<_>>(),
            ["n1", "n2"]
        );
        std::fs::write(lk.path(), "{not json").unwrap();
        assert_eq!(lk.load(), Kept::default());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
