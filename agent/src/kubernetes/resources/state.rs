//! This node's `NovaBGPNodeState`: every BGP peer as the speaker sees it
//! and the conditions (the routing resources', an AS this node shares
//! with another, a peer closed at its prefix limit), written by the node's agent
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

/// One peer as the state object shows it (SPEC section 13 names), with
/// the state of its BFD session when it has one.
pub fn peer_view(p: &PeerStatus, bfd: Option<&Value>) -> Value {
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
    if let Some(b) = bfd {
        v["bfd"] = b.clone();
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

/// The conditions the node's own state gives: the AS this node shares
/// with other nodes of the mesh (`collisions`, as the mesh found them),
/// and every peer whose session was closed at its prefix limit.
pub fn node_conditions(node: &str, collisions: &[(u32, Vec<String>)], peers: &[PeerStatus]) -> Vec<Condition> {
    let mut out = Vec::new();
    for (asn, names) in collisions.iter().filter(|(_, n)| n.iter().any(|x| x == node)) {
        let others: Vec<&str> = names.iter().map(String::as_str).filter(|n| *n != node).collect();
        out.push(Condition {
            reason: "ASCollision",
            message: format!(
                "AS {asn} is also the AS of node {}: each refuses routes whose AS path holds its own AS, so routes between them through the fabric are lost; give each node its own AS (asn_mode, the novanet.io/asn annotation or a NovaBGPNodeOverride localAS)",
                others.join(", ")
            ),
        });
    }
    for p in peers {
        let closed = [&p.last_notification_sent, &p.last_error]
            .into_iter()
            .flatten()
            .find(|e| e.contains("maximum prefixes"));
        if let (Some(why), false) = (closed, p.state == "Established") {
            out.push(Condition {
                reason: "PrefixLimitHit",
                message: format!(
                    "peer {} ({}) closed at its prefix limit ({why}); it comes back after its restart interval or a reset",
                    p.neighbor_address, p.description
                ),
            });
        }
    }
    out
}

/// The watches the API server refuses this agent now (a ClusterRole
/// without a verb, a kind not served), one condition each.
pub fn refusal_conditions(refused: &[(String, u16, String)]) -> Vec<Condition> {
    refused
        .iter()
        .map(|(what, code, words)| match code {
            404 => Condition {
                reason: "KindNotServed",
                message: format!(
                    "the API server does not serve {what} ({words}): are the chart's CRDs installed?"
                ),
            },
            _ => Condition {
                reason: "WatchRefused",
                message: format!(
                    "the API server refuses this agent's watch of {what} ({words}): the chart's ClusterRole grants get, list and watch"
                ),
            },
        })
        .collect()
}

/// Writes this node's state until the agent stops.
pub fn spawn(
    client: Client,
    node: String,
    heartbeat: Duration,
    speaker: Speaker,
    bfd: novanet_bfd::transport::Bfd,
    control: crate::control::Control,
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
            let statuses = speaker.peers();
            let bfd_states: BTreeMap<std::net::IpAddr, Value> = bfd
                .sessions()
                .await
                .into_iter()
                .map(|s| (s.peer, serde_json::to_value(s.state).unwrap_or_default()))
                .collect();
            let peers: Vec<Value> = statuses
                .iter()
                .map(|p| peer_view(p, bfd_states.get(&p.neighbor_address)))
                .collect();
            let up = peers.iter().filter(|p| p["state"] == "Established").count();
            let collisions = control.asn_collisions.lock().expect("collisions").clone();
            let mut all = conditions.borrow_and_update().clone();
            all.extend(node_conditions(&node, &collisions, &statuses));
            all.extend(refusal_conditions(&crate::kubernetes::watch_failures::refused_now()));
            all.sort();
            let content = json!({
                "peersSummary": format!("{up}/{}", peers.len()),
                "peers": peers,
                "conditions": conditions_view(&all, &mut since),
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

#[cfg(test)]
mod tests {
    use super::*;
    use novanet_bgp::speaker::PeerConfig;

    #[test]
    fn a_shared_as_and_a_peer_closed_at_its_limit_are_conditions() {
        let collisions = vec![
            (65010, vec!["n1".to_string(), "n2".to_string(), "n3".to_string()]),
            (65020, vec!["n4".to_string(), "n5".to_string()]),
        ];
        let mut tor = PeerStatus::new(&PeerConfig::new("10.1.0.1".parse().unwrap(), 65001), 65010);
        tor.state = "Idle".into();
        tor.last_notification_sent = Some("cease: maximum prefixes reached (6/1)".into());
        let c = node_conditions("n2", &collisions, std::slice::from_ref(&tor));
        assert_eq!(c.len(), 2, "{c:?}");
        assert_eq!(c[0].reason, "ASCollision");
        assert!(c[0].message.contains("AS 65010 is also the AS of node n1, n3"), "{c:?}");
        assert_eq!(c[1].reason, "PrefixLimitHit");
        assert!(c[1].message.contains("10.1.0.1"), "{c:?}");
        tor.state = "Established".into();
        assert!(
            node_conditions("n9", &collisions, &[tor]).is_empty(),
            "up again: no condition"
        );
    }
}
