//! `novanetctl identity`, `policy`, `drops` and `flows`: the identity
//! policy datapath of this node, through the `DatapathInsight` service on
//! the agent's socket.

use crate::client::rpc_error;
use crate::render::{table, Format};
use novanet_proto::datapath_insight::datapath_insight_client::DatapathInsightClient;
use novanet_proto::datapath_insight::*;
use serde::Serialize;
use std::collections::BTreeMap;
use tonic::transport::Channel;

#[derive(Serialize)]
pub struct IdentityView {
    pub identity: u32,
    pub namespace: String,
    pub labels: BTreeMap<String, String>,
    pub ingress_isolated: bool,
    pub egress_isolated: bool,
}

pub async fn identities(c: &mut DatapathInsightClient<Channel>) -> anyhow::Result<Vec<IdentityView>> {
    let r = c
        .list_identities(ListIdentitiesRequest {})
        .await
        .map_err(rpc_error)?
        .into_inner();
    Ok(r.identities
        .into_iter()
        .map(|i| IdentityView {
            identity: i.identity,
            namespace: i.namespace,
            labels: i.labels.into_iter().collect(),
            ingress_isolated: i.ingress_isolated,
            egress_isolated: i.egress_isolated,
        })
        .collect())
}

pub fn identities_table(v: &[IdentityView]) -> String {
    let yes = |b: bool| if b { "isolated" } else { "open" }.to_string();
    let rows: Vec<Vec<String>> = v
        .iter()
        .map(|i| {
            let labels: Vec<String> = i.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
            vec![
                i.identity.to_string(),
                i.namespace.clone(),
                if labels.is_empty() {
                    "-".into()
                } else {
                    labels.join(",")
                },
                yes(i.ingress_isolated),
                yes(i.egress_isolated),
            ]
        })
        .collect();
    table(&["IDENTITY", "NAMESPACE", "LABELS", "INGRESS", "EGRESS"], &rows)
}

#[derive(Serialize)]
pub struct PolicyView {
    pub policies: u32,
    pub ingress_entries: u32,
    pub egress_entries: u32,
    pub attached_interfaces: Vec<String>,
    pub ingress_allowed: u64,
    pub ingress_denied: u64,
    pub egress_allowed: u64,
    pub egress_denied: u64,
    pub events_lost: u64,
    pub warnings: Vec<String>,
}

pub async fn policy(c: &mut DatapathInsightClient<Channel>) -> anyhow::Result<PolicyView> {
    let p = c.get_policy(GetPolicyRequest {}).await.map_err(rpc_error)?.into_inner();
    Ok(PolicyView {
        policies: p.policies,
        ingress_entries: p.ingress_entries,
        egress_entries: p.egress_entries,
        attached_interfaces: p.attached_interfaces,
        ingress_allowed: p.ingress_allowed,
        ingress_denied: p.ingress_denied,
        egress_allowed: p.egress_allowed,
        egress_denied: p.egress_denied,
        events_lost: p.events_lost,
        warnings: p.warnings,
    })
}

pub fn policy_text(p: &PolicyView) -> String {
    let mut s = format!(
        "NetworkPolicies:     {}\nEntries:             {} ingress, {} egress\nPods with programs:  {}\n\
         Ingress verdicts:    {} allowed, {} denied\nEgress verdicts:     {} allowed, {} denied\nEvents lost:         {}\n",
        p.policies,
        p.ingress_entries,
        p.egress_entries,
        p.attached_interfaces.len(),
        p.ingress_allowed,
        p.ingress_denied,
        p.egress_allowed,
        p.egress_denied,
        p.events_lost
    );
    for w in &p.warnings {
        s.push_str(&format!("Warning:             {w}\n"));
    }
    s
}

fn protocol(n: u32) -> String {
    match n {
        1 => "icmp".into(),
        6 => "tcp".into(),
        17 => "udp".into(),
        58 => "icmpv6".into(),
        132 => "sctp".into(),
        n => n.to_string(),
    }
}

/// Streams drops or flows (the recent ones, then new ones unless
/// `no_follow`), one line each (JSON lines with `-o json`).
pub async fn stream(
    c: &mut DatapathInsightClient<Channel>,
    kind: &str,
    no_follow: bool,
    format: Format,
) -> anyhow::Result<()> {
    let mut s = c
        .stream_flows(StreamFlowsRequest {
            kind: kind.into(),
            no_follow,
        })
        .await
        .map_err(rpc_error)?
        .into_inner();
    while let Some(f) = s.message().await.map_err(rpc_error)? {
        match format {
            Format::Table => {
                let port = |p: u32| if p == 0 { String::new() } else { format!(":{p}") };
                println!(
                    "{:<5} {:<7} {:<6} {}{} ({}) -> {}{} ({})",
                    f.kind,
                    f.direction,
                    protocol(f.protocol),
                    f.src,
                    port(f.sport),
                    f.src_name,
                    f.dst,
                    port(f.dport),
                    f.dst_name
                );
            }
            _ => {
                let v = serde_json::json!({
                    "kind": f.kind, "direction": f.direction, "protocol": protocol(f.protocol),
                    "src": f.src, "sport": f.sport, "src_identity": f.src_identity, "src_name": f.src_name,
                    "dst": f.dst, "dport": f.dport, "dst_identity": f.dst_identity, "dst_name": f.dst_name,
                    "timestamp_ns": f.timestamp_ns,
                });
                if format == Format::Json {
                    println!("{v}");
                } else {
                    print!("---\n{}", serde_yaml_ng::to_string(&v)?);
                }
            }
        }
    }
    Ok(())
}
