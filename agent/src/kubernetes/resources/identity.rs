//! This node's `NovaBGPNodeOverride`: its router ID, local AS and the
//! source address of its ToR sessions, over what the configuration says.
//! Read once before routing starts (so a restart opens every session with
//! the node's identity at once; the override as last seen when the API
//! server is away), then followed by the resources' watch: a change is a
//! new running configuration, applied by difference like a reload.

use super::objects::{api_resource, NodeOverrideSpec};
use crate::config::checked::Checked;
use crate::config::Config;
use crate::kubernetes::last_known::LastKnown;
use kube::api::{Api, DynamicObject};
use kube::Client;
use std::time::Duration;

/// How long the read at start may take before the last known override is
/// used instead.
const READ_AT_START: Duration = Duration::from_secs(10);

/// The override named after `node`, read before routing starts: none when
/// there is none (or the CRD is not installed); the last known one when
/// the API server cannot be reached.
pub async fn at_start(client: &Client, node: &str, kept: &LastKnown) -> Option<NodeOverrideSpec> {
    let api: Api<DynamicObject> = Api::all_with(
        client.clone(),
        &api_resource("NovaBGPNodeOverride", "novabgpnodeoverrides"),
    );
    let read = tokio::time::timeout(READ_AT_START, api.get_opt(node)).await;
    let found = match read {
        Ok(Ok(found)) => found,
        Ok(Err(kube::Error::Api(e))) if e.code == 404 => None,
        failed => {
            let error = match failed {
                Ok(Err(e)) => e.to_string(),
                _ => format!("no answer in {} s", READ_AT_START.as_secs()),
            };
            let last = kept.load().own_override;
            tracing::warn!(%error, kept = ?last, "NovaBGPNodeOverride not read: the last known one is used until the watch gets through");
            return last;
        }
    };
    let spec = found.and_then(|o| spec_of(node, &o));
    kept.keep_own_override(spec);
    spec
}

/// An override object's spec; one that does not read is said and left out.
pub fn spec_of(node: &str, o: &DynamicObject) -> Option<NodeOverrideSpec> {
    let spec = o.data.get("spec").cloned().unwrap_or(serde_json::Value::Null);
    match serde_json::from_value(spec) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(node, error = %e, "NovaBGPNodeOverride left out: its spec does not read");
            None
        }
    }
}

/// The configuration with the override over it: the local AS and router
/// ID it sets, and the source address of ToR sessions that set none.
pub fn apply(cfg: &mut Config, o: Option<&NodeOverrideSpec>) {
    let Some(o) = o else { return };
    if let Some(asn) = o.local_as {
        cfg.routing.local_as = asn;
    }
    if let Some(id) = o.router_id {
        cfg.routing.router_id = Checked::Valid(Some(id));
    }
    cfg.node_source_address = o.source_address;
}

/// Says in the log what an override changes.
pub fn describe(o: Option<&NodeOverrideSpec>) {
    match o {
        Some(o) => tracing::info!(local_as = ?o.local_as, router_id = ?o.router_id, source_address = ?o.source_address,
            "NovaBGPNodeOverride of this node applied"),
        None => tracing::info!("no NovaBGPNodeOverride for this node: the configuration's identity"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_override_sets_only_what_it_names() {
        let mut cfg = Config::parse(r#"{"node_ip": "10.0.0.10", "routing": {"local_as": 65010}}"#).unwrap();
        apply(&mut cfg, None);
        assert_eq!(
            (cfg.local_as().unwrap(), cfg.router_id().unwrap().to_string()),
            (65010, "10.0.0.10".into())
        );
        let o: NodeOverrideSpec = serde_json::from_value(serde_json::json!({"routerID": "192.0.2.1"})).unwrap();
        apply(&mut cfg, Some(&o));
        assert_eq!(
            (cfg.local_as().unwrap(), cfg.router_id().unwrap().to_string()),
            (65010, "192.0.2.1".into())
        );
        let o: NodeOverrideSpec =
            serde_json::from_value(serde_json::json!({"localAS": 4200000001u32, "sourceAddress": "10.0.0.99"}))
                .unwrap();
        apply(&mut cfg, Some(&o));
        assert_eq!(cfg.local_as().unwrap(), 4200000001);
        assert_eq!(cfg.node_source_address, Some("10.0.0.99".parse().unwrap()));
    }
}
