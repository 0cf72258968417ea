//! `novanetctl routing peers --all-nodes`: every node's sessions, read
//! through the Kubernetes API server: from the `NovaBGPNodeState` each
//! agent writes (works with an agent down: its node shows as stale once its
//! last write is older than `--stale-after`), or, where there are none
//! (the CRDs not installed, or not readable), from each agent pod's status
//! endpoint (`GET /api/v1/namespaces/NS/pods/POD:PORT/proxy/status/peers`).
//!
//! The pods proxy needs `get` on `pods` and `pods/proxy` in the agents'
//! namespace only (the chart's `<release>-status-reader` Role); the nodes
//! proxy would need `nodes/proxy`, which also reaches every kubelet.

use crate::render::{table, Format};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{ApiResource, DynamicObject, ListParams};
use kube::{Api, Client};
use serde::Serialize;
use serde_json::{json, Value};
use std::time::Duration;

/// Where the agents are.
pub struct Agents {
    pub namespace: String,
    pub selector: String,
    pub status_port: u16,
    /// A node state older than this is stale.
    pub stale_after: Duration,
}

/// One node's answer.
#[derive(Serialize)]
pub struct NodePeers {
    pub node: String,
    /// The agent pod asked (empty when read from the node state).
    pub pod: String,
    /// The node's peers, named as in the agent's `/status/peers`.
    pub peers: Vec<Value>,
    pub error: Option<String>,
    /// Where the answer came from: `node-state` or `agent`.
    pub source: &'static str,
    /// When the node state was last written.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub updated: Option<String>,
    /// The node state is older than `--stale-after` (its agent is not
    /// writing).
    pub stale: bool,
    /// The node state's conditions.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Value>,
}

/// A peer of a node state, named as in the agent's `/status/peers`.
fn peer_from_state(p: &Value) -> Value {
    let sum = |v: &Value| {
        v.as_object()
            .into_iter()
            .flatten()
            .filter_map(|(_, n)| n.as_u64())
            .sum::<u64>()
    };
    json!({
        "neighbor_address": p["address"],
        "description": p["name"],
        "remote_as": p["remoteAS"],
        "role": p["role"],
        "state": p["state"],
        "established_time": p["establishedTime"],
        "prefixes_received": sum(&p["received"]),
        "prefixes_sent": sum(&p["advertised"]),
        "last_error": p["lastError"],
    })
}

/// Every node's `NovaBGPNodeState`; None when there are none to read.
async fn from_states(client: &Client, agents: &Agents) -> Result<Option<Vec<NodePeers>>, String> {
    let ar = ApiResource {
        group: "bgp.novanet.io".into(),
        version: "v1alpha1".into(),
        api_version: "bgp.novanet.io/v1alpha1".into(),
        kind: "NovaBGPNodeState".into(),
        plural: "novabgpnodestates".into(),
    };
    let api: Api<DynamicObject> = Api::all_with(client.clone(), &ar);
    let list = match api.list(&ListParams::default()).await {
        Ok(l) => l,
        Err(kube::Error::Api(s)) if s.code == 404 => return Ok(None),
        Err(e) => return Err(explain(e, "listing NovaBGPNodeStates")),
    };
    if list.items.is_empty() {
        return Ok(None);
    }
    let now = k8s_openapi::jiff::Timestamp::now();
    let mut out = Vec::new();
    for o in list.items {
        let status = o.data.get("status").cloned().unwrap_or(Value::Null);
        let updated = status["lastUpdateTime"].as_str().map(String::from);
        let age = updated
            .as_deref()
            .and_then(|u| u.parse::<k8s_openapi::jiff::Timestamp>().ok())
            .map(|t| Duration::from_secs(now.as_second().saturating_sub(t.as_second()).max(0) as u64));
        let stale = age.is_none_or(|a| a > agents.stale_after);
        let error = stale.then(|| match age {
            Some(a) => format!("stale: last written {}s ago (is its agent running?)", a.as_secs()),
            None => "stale: never written".to_string(),
        });
        out.push(NodePeers {
            node: o.metadata.name.clone().unwrap_or_default(),
            pod: String::new(),
            peers: status["peers"]
                .as_array()
                .into_iter()
                .flatten()
                .map(peer_from_state)
                .collect(),
            error,
            source: "node-state",
            updated,
            stale,
            conditions: status["conditions"].as_array().cloned().unwrap_or_default(),
        });
    }
    out.sort_by(|a, b| a.node.cmp(&b.node));
    Ok(Some(out))
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
    match from_states(&client, agents).await {
        Ok(Some(nodes)) => return Ok(nodes),
        Ok(None) => {}
        Err(e) => eprintln!("novanetctl: {e}; asking each agent pod instead"),
    }
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
            source: "agent",
            updated: None,
            stale: false,
            conditions: Vec::new(),
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
        if let Some(e) = n.error.as_ref().filter(|_| n.peers.is_empty() || !n.stale) {
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
            // A stale node shows its sessions as last written, marked.
            let (state, last_error) = match &n.error {
                Some(e) if n.stale => (format!("{} (stale)", text(&p["state"])), e.clone()),
                _ => (text(&p["state"]), text(&p["last_error"])),
            };
            rows.push(vec![
                n.node.clone(),
                text(&p["neighbor_address"]),
                text(&p["remote_as"]),
                text(&p["role"]),
                state,
                text(&p["prefixes_received"]),
                text(&p["prefixes_sent"]),
                last_error,
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
