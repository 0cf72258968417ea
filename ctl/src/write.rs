//! The write commands (the NovaRoute set) and `apply -f`, each one RPC of
//! RouteControl.

use crate::client::{rpc_error, Agent};
use novanet_proto::api::*;
use serde::Deserialize;

/// Who is asking: owner and token.
#[derive(Debug, Clone)]
pub struct Credentials {
    pub owner: String,
    pub token: String,
}

pub fn protocol(s: &str) -> anyhow::Result<i32> {
    match s.to_ascii_lowercase().as_str() {
        "bgp" => Ok(Protocol::Bgp as i32),
        "ospf" => Ok(Protocol::Ospf as i32),
        other => anyhow::bail!("--protocol {other:?}: use bgp or ospf"),
    }
}

pub fn family(s: &str) -> anyhow::Result<i32> {
    match s.to_ascii_lowercase().replace('_', "-").as_str() {
        "ipv4-unicast" | "ipv4" => Ok(AddressFamily::Ipv4Unicast as i32),
        "ipv6-unicast" | "ipv6" => Ok(AddressFamily::Ipv6Unicast as i32),
        other => anyhow::bail!("address family {other:?}: use ipv4-unicast, ipv4, ipv6-unicast or ipv6"),
    }
}

pub fn peer_type(s: &str) -> anyhow::Result<i32> {
    match s.to_ascii_lowercase().as_str() {
        "external" | "ebgp" => Ok(PeerType::External as i32),
        "internal" | "ibgp" => Ok(PeerType::Internal as i32),
        other => anyhow::bail!("--peer-type {other:?}: use external or internal"),
    }
}

/// One entry of an `apply -f` file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    pub action: String,
    #[serde(default)]
    pub owner: Option<String>,
    #[serde(default)]
    pub token: Option<String>,
    #[serde(default)]
    pub local_as: u32,
    #[serde(default)]
    pub router_id: String,
    #[serde(default)]
    pub peer: Option<PeerEntry>,
    #[serde(default)]
    pub neighbor_address: String,
    #[serde(default)]
    pub prefix: String,
    #[serde(default)]
    pub protocol: Option<String>,
    #[serde(default)]
    pub attributes: Option<AttributesEntry>,
    #[serde(default)]
    pub peer_address: String,
    #[serde(default)]
    pub min_rx_ms: u32,
    #[serde(default)]
    pub min_tx_ms: u32,
    #[serde(default)]
    pub detect_multiplier: u32,
    #[serde(default)]
    pub interface_name: String,
    #[serde(default)]
    pub area_id: String,
    #[serde(default)]
    pub passive: bool,
    #[serde(default)]
    pub cost: u32,
    #[serde(default)]
    pub hello_interval: u32,
    #[serde(default)]
    pub dead_interval: u32,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerEntry {
    pub neighbor_address: String,
    pub remote_as: u32,
    #[serde(default)]
    pub peer_type: Option<String>,
    #[serde(default)]
    pub keepalive: u32,
    #[serde(default)]
    pub hold_time: u32,
    #[serde(default)]
    pub bfd_enabled: bool,
    #[serde(default)]
    pub bfd_min_rx_ms: u32,
    #[serde(default)]
    pub bfd_min_tx_ms: u32,
    #[serde(default)]
    pub bfd_detect_multiplier: u32,
    #[serde(default)]
    pub ebgp_multihop: u32,
    #[serde(default, alias = "bgp_auth")]
    pub password: String,
    #[serde(default)]
    pub source_address: String,
    #[serde(default)]
    pub max_prefix: u32,
    #[serde(default)]
    pub address_families: Vec<String>,
    #[serde(default)]
    pub description: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttributesEntry {
    #[serde(default)]
    pub local_preference: u32,
    #[serde(default)]
    pub communities: Vec<String>,
    #[serde(default)]
    pub med: u32,
    #[serde(default)]
    pub next_hop: String,
}

impl PeerEntry {
    pub fn to_proto(&self) -> anyhow::Result<BgpPeer> {
        Ok(BgpPeer {
            neighbor_address: self.neighbor_address.clone(),
            remote_as: self.remote_as,
            peer_type: peer_type(self.peer_type.as_deref().unwrap_or("external"))?,
            keepalive: self.keepalive,
            hold_time: self.hold_time,
            bfd_enabled: self.bfd_enabled,
            description: self.description.clone(),
            address_families: self
                .address_families
                .iter()
                .map(|f| family(f))
                .collect::<anyhow::Result<_>>()?,
            source_address: self.source_address.clone(),
            ebgp_multihop: self.ebgp_multihop,
            password: self.password.clone(),
            max_prefix: self.max_prefix,
            bfd_min_rx_ms: self.bfd_min_rx_ms,
            bfd_min_tx_ms: self.bfd_min_tx_ms,
            bfd_detect_multiplier: self.bfd_detect_multiplier,
        })
    }
}

/// Carries out one entry; returns the success line.
pub async fn run(a: &mut Agent, c: &Credentials, e: &Entry) -> anyhow::Result<String> {
    let (owner, token) = (
        e.owner.clone().unwrap_or(c.owner.clone()),
        e.token.clone().unwrap_or(c.token.clone()),
    );
    let proto = || protocol(e.protocol.as_deref().unwrap_or("bgp"));
    Ok(match e.action.as_str() {
        "register" => {
            let r = a
                .control
                .register(RegisterRequest {
                    owner,
                    token,
                    reassert_intents: e.passive,
                })
                .await
                .map_err(rpc_error)?
                .into_inner();
            format!(
                "Registered: session_id={}\n  Current peers:    {:?}\n  Current prefixes: {:?}",
                r.session_id, r.current_peers, r.current_prefixes
            )
        }
        "deregister" => {
            let withdraw_all = e.passive;
            a.control
                .deregister(DeregisterRequest {
                    owner: owner.clone(),
                    token,
                    withdraw_all,
                })
                .await
                .map_err(rpc_error)?;
            format!("Deregistered: owner={owner} withdraw_all={withdraw_all}")
        }
        "configure-bgp" => {
            let r = a
                .control
                .configure_bgp(ConfigureBgpRequest {
                    owner,
                    token,
                    local_as: e.local_as,
                    router_id: e.router_id.clone(),
                })
                .await
                .map_err(rpc_error)?
                .into_inner();
            format!(
                "BGP configured: AS={} router_id={}\n  Previous: AS={} router_id={}",
                e.local_as, e.router_id, r.previous_as, r.previous_router_id
            )
        }
        "apply-peer" => {
            let p = e.peer.clone().ok_or_else(|| anyhow::anyhow!("apply-peer needs peer"))?;
            let peer = p.to_proto()?;
            a.control
                .apply_peer(ApplyPeerRequest {
                    owner,
                    token,
                    peer: Some(peer),
                })
                .await
                .map_err(rpc_error)?;
            format!(
                "Peer applied: neighbor={} remote_as={}",
                p.neighbor_address, p.remote_as
            )
        }
        "remove-peer" => {
            a.control
                .remove_peer(RemovePeerRequest {
                    owner,
                    token,
                    neighbor_address: e.neighbor_address.clone(),
                })
                .await
                .map_err(rpc_error)?;
            format!("Peer removed: neighbor={}", e.neighbor_address)
        }
        "advertise" => {
            let attributes = e.attributes.clone().map(|a| PrefixAttributes {
                local_preference: a.local_preference,
                communities: a.communities,
                med: a.med,
                next_hop: a.next_hop,
            });
            a.control
                .advertise_prefix(AdvertisePrefixRequest {
                    owner,
                    token,
                    prefix: e.prefix.clone(),
                    protocol: proto()?,
                    attributes,
                })
                .await
                .map_err(rpc_error)?;
            format!(
                "Prefix advertised: {} via {}",
                e.prefix,
                e.protocol.as_deref().unwrap_or("bgp")
            )
        }
        "withdraw" => {
            a.control
                .withdraw_prefix(WithdrawPrefixRequest {
                    owner,
                    token,
                    prefix: e.prefix.clone(),
                    protocol: proto()?,
                })
                .await
                .map_err(rpc_error)?;
            format!(
                "Prefix withdrawn: {} from {}",
                e.prefix,
                e.protocol.as_deref().unwrap_or("bgp")
            )
        }
        "enable-bfd" => {
            a.control
                .enable_bfd(EnableBfdRequest {
                    owner,
                    token,
                    peer_address: e.peer_address.clone(),
                    min_rx_ms: e.min_rx_ms,
                    min_tx_ms: e.min_tx_ms,
                    detect_multiplier: e.detect_multiplier,
                    interface_name: e.interface_name.clone(),
                })
                .await
                .map_err(rpc_error)?;
            format!("BFD enabled: peer={}", e.peer_address)
        }
        "disable-bfd" => {
            a.control
                .disable_bfd(DisableBfdRequest {
                    owner,
                    token,
                    peer_address: e.peer_address.clone(),
                })
                .await
                .map_err(rpc_error)?;
            format!("BFD disabled: peer={}", e.peer_address)
        }
        "enable-ospf" => {
            a.control
                .enable_ospf(EnableOspfRequest {
                    owner,
                    token,
                    interface_name: e.interface_name.clone(),
                    area_id: e.area_id.clone(),
                    passive: e.passive,
                    cost: e.cost,
                    hello_interval: e.hello_interval,
                    dead_interval: e.dead_interval,
                })
                .await
                .map_err(rpc_error)?;
            format!("OSPF enabled: interface={} area={}", e.interface_name, e.area_id)
        }
        "disable-ospf" => {
            a.control
                .disable_ospf(DisableOspfRequest {
                    owner,
                    token,
                    interface_name: e.interface_name.clone(),
                })
                .await
                .map_err(rpc_error)?;
            format!("OSPF disabled: interface={}", e.interface_name)
        }
        other => anyhow::bail!("unknown action {other:?}"),
    })
}

/// Parses an `apply` file: a JSON array (starting with `[`) or a YAML list.
pub fn parse_batch(text: &str) -> anyhow::Result<Vec<Entry>> {
    if text.trim_start().starts_with('[') {
        serde_json::from_str(text).map_err(|e| anyhow::anyhow!("JSON: {e}"))
    } else {
        serde_yaml_ng::from_str(text).map_err(|e| anyhow::anyhow!("YAML: {e}"))
    }
}

/// Entry with only the action set, for the single commands.
pub fn entry(action: &str) -> Entry {
    parse_batch(&format!("[{{\"action\": \"{action}\"}}]"))
        .expect("valid")
        .remove(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_json_and_yaml() {
        let j = parse_batch(r#"[{"action": "advertise", "prefix": "10.0.0.1/32"}]"#).unwrap();
        assert_eq!(
            (j[0].action.as_str(), j[0].prefix.as_str()),
            ("advertise", "10.0.0.1/32")
        );
        let y = parse_batch("- action: apply-peer\n  peer:\n    neighbor_address: 10.0.0.1\n    remote_as: 65000\n    bgp_auth: s3cret\n").unwrap();
        assert_eq!(y[0].peer.as_ref().unwrap().password, "s3cret");
        assert!(parse_batch("- action: x\n  bogus: 1\n")
            .unwrap_err()
            .to_string()
            .contains("bogus"));
    }
}
