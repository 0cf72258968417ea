//! `novanet-kube-api`: the lab's Kubernetes API server: the upstream
//! kube-apiserver and etcd (built by `scripts/build-kube-apiserver.sh`),
//! with TLS, token authentication and RBAC on, holding the lab's Nodes,
//! for running agents with `node_mesh.source: "kubernetes"` without a
//! cluster.
//!
//!   novanet-kube-api --netns NS --listen 10.0.1.100:6443 --dir /tmp/lab/kube \
//!       --kubeconfig /tmp/lab/kubeconfig --node node-1=10.0.1.11,10.244.1.0/24 ...
//!
//! `--kubeconfig` gets what an agent of the chart gets (the chart's
//! ServiceAccount and RBAC, a token the server signed); `DIR/admin.kubeconfig`
//! is the cluster admin's, for kubectl. Written once the server is ready;
//! serves until killed (the server's processes go with it).

use clap::Parser;
use novanet_conformance::kube_server::{node, KubeServer, Options};

#[derive(Parser)]
#[command(name = "novanet-kube-api", about = "A Kubernetes API server for the NovaNet lab")]
struct Args {
    /// Network namespace to serve in (default: the current one).
    #[arg(long)]
    netns: Option<String>,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:6443")]
    listen: String,
    /// Directory for etcd's data, the certificates and the logs.
    #[arg(long)]
    dir: std::path::PathBuf,
    /// Where to write the agents' kubeconfig.
    #[arg(long)]
    kubeconfig: Option<std::path::PathBuf>,
    /// A Node: NAME=INTERNAL_IP,POD_CIDR (repeatable).
    #[arg(long = "node", value_name = "NAME=IP,CIDR")]
    nodes: Vec<String>,
}

fn main() -> Result<(), String> {
    let args = Args::parse();
    let mut nodes = Vec::new();
    for n in &args.nodes {
        let (name, rest) = n
            .split_once('=')
            .ok_or_else(|| format!("--node {n:?}: expected NAME=IP,CIDR"))?;
        let (ip, cidr) = rest
            .split_once(',')
            .ok_or_else(|| format!("--node {n:?}: expected NAME=IP,CIDR"))?;
        nodes.push(node(name, ip, cidr));
    }
    let server = KubeServer::start_in(args.netns.as_deref(), &args.dir, &args.listen, Options::default());
    for n in nodes {
        server.apply_node(n);
    }
    if let Some(path) = &args.kubeconfig {
        let agent = server.agent_kubeconfig(&[]);
        std::fs::copy(&agent, path).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    eprintln!(
        "novanet-kube-api: kube-apiserver serving {} Nodes on https://{} (admin kubeconfig {})",
        args.nodes.len(),
        server.address(),
        server.admin_kubeconfig().display()
    );
    loop {
        std::thread::park();
    }
}
