//! This node's `NovaBGPNodeState`: every BGP peer as the speaker sees it
//! and the routing resources' conditions, written by the node's agent
//! through the status subresource (server-side apply, field manager
//! `novanet-agent`). Written only when something changed and at most once
//! per [`MIN_INTERVAL`] (a flapping peer cannot flood the API server), and
//! every `routing.node_state_heartbeat` seconds regardless, so a reader can
//! tell a node whose agent is gone (`status.lastUpdateTime`).

use super::objects::api_resource;
use super::plan::Condition;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::Client;
use novanet_bgp::speaker::{PeerStatus, Speaker};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// The least time between two writes.
pub const MIN_INTERVAL: Duration = Duration::from_secs(2);

fn rfc3339(secs: u64) -> String {
    k8s_openapi::jiff::Timestamp::from_second(secs as i64)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// One peer as the state object shows it (SPEC section 13 names).
pub fn peer_view(p: &PeerStatus) -> Value {
    let family = |v4: u64, v6: u64| {
        let mut m = serde_json::Map::new();
        if v4 > 0 || v6 == 0 {
            m.insert("ipv4-unicast".into(), json!(v4));
        }
        if v6 > 0 {
            m.insert("ipv6-unicast".into(), json!(v6));
        }
        Value::Object(m)
    };
    let mut v = json!({
        "name": p.description,
        "address": p.neighbor_address.to_string(),
        "role": p.role,
        "remoteAS": p.remote_as,
        "state": p.state,
        "received": family(p.prefixes_received.saturating_sub(p.prefixes_received_v6), p.prefixes_received_v6),
        "advertised": family(p.prefixes_sent.saturating_sub(p.prefixes_sent_v6), p.prefixes_sent_v6),
    });
    if let Some(t) = p.established_at.filter(|_| p.state == "Established") {
        v["establishedTime"] = json!(rfc3339(t));
    }
    if let Some(e) = &p.last_error {
        v["lastError"] = json!(e);
    }
    v
}

/// The conditions, one per reason (their messages joined), each with the
/// time it first appeared (`since`, kept across writes).
fn conditions_view(now: &[Condition], since: &mut BTreeMap<&'static str, u64>) -> Vec<Value> {
    let mut by_reason: BTreeMap<&'static str, Vec<&str>> = BTreeMap::new();
    for c in now {
        by_reason.entry(c.reason).or_default().push(&c.message);
    }
    since.retain(|r, _| by_reason.contains_key(r));
    by_reason
        .into_iter()
        .map(|(reason, messages)| {
            let t = *since.entry(reason).or_insert_with(now_secs);
            json!({"type": reason, "status": "True", "reason": reason,
                   "message": messages.join("; "), "lastTransitionTime": rfc3339(t)})
        })
        .collect()
}

/// Writes this node's state until the agent stops.
pub fn spawn(
    client: Client,
    node: String,
    heartbeat: Duration,
    speaker: Speaker,
    mut conditions: watch::Receiver<Vec<Condition>>,
) {
    let api: Api<DynamicObject> = Api::all_with(client, &api_resource("NovaBGPNodeState", "novabgpnodestates"));
    tokio::spawn(async move {
        let pp = PatchParams::apply("novanet-agent").force();
        let mut since = BTreeMap::new();
        let mut written: Option<(Value, Instant)> = None;
        let mut exists = false;
        let mut failing: Option<String> = None;
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                r = conditions.changed() => if r.is_err() { return },
            }
            let peers: Vec<Value> = speaker.peers().iter().map(peer_view).collect();
            let up = peers.iter().filter(|p| p["state"] == "Established").count();
            let content = json!({
                "peersSummary": format!("{up}/{}", peers.len()),
                "peers": peers,
                "conditions": conditions_view(&conditions.borrow_and_update(), &mut since),
            });
            let due = match &written {
                None => true,
                Some((last, at)) => (*last != content && at.elapsed() >= MIN_INTERVAL) || at.elapsed() >= heartbeat,
            };
            if !due {
                continue;
            }
            let mut status = content.clone();
            status["lastUpdateTime"] = json!(rfc3339(now_secs()));
            let object = |status: Option<Value>| {
                let mut o = json!({"apiVersion": "bgp.novanet.io/v1alpha1", "kind": "NovaBGPNodeState",
                                   "metadata": {"name": node}});
                if let Some(s) = status {
                    o["status"] = s;
                }
                o
            };
            let result = async {
                if !exists {
                    api.patch(&node, &pp, &Patch::Apply(object(None))).await?;
                    exists = true;
                }
                api.patch_status(&node, &pp, &Patch::Apply(object(Some(status)))).await
            }
            .await;
            match result {
                Ok(_) => {
                    if failing.take().is_some() {
                        tracing::info!("NovaBGPNodeState written again");
                    }
                    written = Some((content, Instant::now()));
                }
                Err(e) => {
                    exists = false;
                    let said = e.to_string();
                    if failing.as_deref() != Some(said.as_str()) {
                        tracing::warn!(error = %said, "NovaBGPNodeState not written (are the chart's CRDs and RBAC installed?); trying again");
                        failing = Some(said);
                    }
                    // Not before the interval: a refusing server is not
                    // asked every second.
                    written = Some((Value::Null, Instant::now()));
                }
            }
        }
    });
}
