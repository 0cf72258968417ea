//! `novanetctl routing peers --all-nodes`: every node's sessions, read
//! through the Kubernetes API server from each agent pod's status endpoint
//! (`GET /api/v1/namespaces/NS/pods/POD:PORT/proxy/status/peers`).
//!
//! The pods proxy needs `get` on `pods` and `pods/proxy` in the agents'
//! namespace only (the chart's `<release>-status-reader` Role); the nodes
//! proxy would need `nodes/proxy`, which also reaches every kubelet.

use crate::render::{table, Format};
use k8s_openapi::api::core::v1::Pod;
use kube::api::ListParams;
use kube::{Api, Client};
use serde::Serialize;
use serde_json::Value;

/// Where the agents are.
pub struct Agents {
    pub namespace: String,
    pub selector: String,
    pub status_port: u16,
}

/// One node's answer.
#[derive(Serialize)]
pub struct NodePeers {
    pub node: String,
    pub pod: String,
    /// The agent's `/status/peers`, when it answered.
    pub peers: Vec<Value>,
    pub error: Option<String>,
}

fn explain(e: kube::Error, what: &str) -> String {
    match &e {
        kube::Error::Api(s) if s.code == 403 => format!("{what}: forbidden by RBAC ({})", s.message),
        _ => format!("{what}: {e}"),
    }
}

/// Reads every agent pod's peers.
pub async fn peers(agents: &Agents) -> anyhow::Result<Vec<NodePeers>> {
    let client = Client::try_default()
        .await
        .map_err(|e| anyhow::anyhow!("Kubernetes API (KUBECONFIG or in-cluster service account): {e}"))?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), &agents.namespace);
    let list = pods
        .list(&ListParams::default().labels(&agents.selector))
        .await
        .map_err(|e| {
            anyhow::anyhow!(explain(
                e,
                &format!("listing pods {} in namespace {}", agents.selector, agents.namespace)
            ))
        })?;
    let mut out = Vec::new();
    for pod in list.items {
        let name = pod.metadata.name.clone().unwrap_or_default();
        let node = pod.spec.as_ref().and_then(|s| s.node_name.clone()).unwrap_or_default();
        let path = format!(
            "/api/v1/namespaces/{}/pods/{}:{}/proxy/status/peers",
            agents.namespace, name, agents.status_port
        );
        let request = tonic::codegen::http::Request::get(path).body(Vec::new())?;
        let (peers, error) = match client.request_text(request).await {
            Ok(body) => match serde_json::from_str::<Vec<Value>>(&body) {
                Ok(p) => (p, None),
                Err(e) => (Vec::new(), Some(format!("not a peer list: {e}"))),
            },
            Err(e) => (Vec::new(), Some(explain(e, &format!("pod {name}")))),
        };
        out.push(NodePeers {
            node,
            pod: name,
            peers,
            error,
        });
    }
    out.sort_by(|a, b| a.node.cmp(&b.node));
    Ok(out)
}

/// The answers as a table (one row per session, NODE first) or JSON/YAML.
pub fn render(format: Format, nodes: &[NodePeers]) -> anyhow::Result<String> {
    if format != Format::Table {
        return Ok(match format {
            Format::Json => serde_json::to_string_pretty(nodes)? + "\n",
            _ => serde_yaml_ng::to_string(nodes)?,
        });
    }
    if nodes.is_empty() {
        return Ok("No agent pods found.\n".into());
    }
    let text = |v: &Value| match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    };
    let mut rows = Vec::new();
    for n in nodes {
        if let Some(e) = &n.error {
            rows.push(vec![
                n.node.clone(),
                "-".into(),
                "".into(),
                "".into(),
                "unreachable".into(),
                "".into(),
                "".into(),
                e.clone(),
            ]);
            continue;
        }
        for p in &n.peers {
            rows.push(vec![
                n.node.clone(),
                text(&p["neighbor_address"]),
                text(&p["remote_as"]),
                text(&p["role"]),
                text(&p["state"]),
                text(&p["prefixes_received"]),
                text(&p["prefixes_sent"]),
                text(&p["last_error"]),
            ]);
        }
    }
    Ok(table(
        &[
            "NODE",
            "NEIGHBOR",
            "REMOTE AS",
            "ROLE",
            "STATE",
            "PFX RECV",
            "PFX SENT",
            "LAST ERROR",
        ],
        &rows,
    ))
}
