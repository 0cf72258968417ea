//! `novanet-kube-api`: the lab's Kubernetes API server (Nodes, Pods,
//! Events; list/watch as kube-apiserver speaks it), for running agents with
//! `node_mesh.source: "kubernetes"` without a cluster.
//!
//!   novanet-kube-api --netns NS --listen 10.0.1.100:6443 \
//!       --kubeconfig /tmp/lab/kubeconfig --node node-1=10.0.1.11,10.244.1.0/24 ...
//!
//! Serves until killed.

use clap::Parser;
use novanet_conformance::kube_api::{node, KubeApi};

#[derive(Parser)]
#[command(name = "novanet-kube-api", about = "A Kubernetes API server for the NovaNet lab")]
struct Args {
    /// Network namespace to serve in (default: the current one).
    #[arg(long)]
    netns: Option<String>,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:6443")]
    listen: String,
    /// Where to write a kubeconfig for this server.
    #[arg(long)]
    kubeconfig: Option<std::path::PathBuf>,
    /// A Node: NAME=INTERNAL_IP,POD_CIDR (repeatable).
    #[arg(long = "node", value_name = "NAME=IP,CIDR")]
    nodes: Vec<String>,
}

fn main() -> Result<(), String> {
    let args = Args::parse();
    let api = KubeApi::start_in(args.netns.as_deref(), &args.listen);
    for n in &args.nodes {
        let (name, rest) = n
            .split_once('=')
            .ok_or_else(|| format!("--node {n:?}: expected NAME=IP,CIDR"))?;
        let (ip, cidr) = rest
            .split_once(',')
            .ok_or_else(|| format!("--node {n:?}: expected NAME=IP,CIDR"))?;
        api.apply_node(node(name, ip, cidr));
    }
    if let Some(path) = &args.kubeconfig {
        api.write_kubeconfig(path);
    }
    eprintln!(
        "novanet-kube-api: serving {} Nodes on http://{}",
        args.nodes.len(),
        api.address
    );
    loop {
        std::thread::park();
    }
}
