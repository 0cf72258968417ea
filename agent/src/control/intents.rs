//! The intent store: what each owner asked for through the API (peers,
//! prefixes, BFD sessions, OSPF interfaces), in memory, keyed as the
//! reference does (`peer:<addr>`, `prefix:<protocol>:<prefix>`,
//! `bfd:<addr>`, `ospf:<iface>`).

use ipnet::IpNet;
use novanet_proto::api::{BgpPeer, PrefixAttributes, Protocol};
use std::collections::BTreeMap;
use std::net::IpAddr;

/// A prefix an owner wants advertised.
#[derive(Debug, Clone, PartialEq)]
pub struct PrefixIntent {
    pub prefix: IpNet,
    /// The prefix as the owner wrote it.
    pub text: String,
    pub protocol: Protocol,
    pub attributes: Option<PrefixAttributes>,
    /// The owner may take the prefix over from another owner (`admin`, or
    /// `capabilities.override_prefixes`).
    pub overrides: bool,
}

/// A standalone BFD session an owner wants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BfdIntent {
    pub peer: IpAddr,
    pub min_rx_ms: u32,
    pub min_tx_ms: u32,
    pub detect_multiplier: u32,
    pub interface: String,
}

/// An interface an owner wants in OSPF.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OspfIntent {
    pub interface: String,
    pub area: String,
    pub passive: bool,
    pub cost: u32,
    pub hello: u32,
    pub dead: u32,
}

/// Everything one owner asked for.
#[derive(Debug, Clone, Default)]
pub struct OwnerIntents {
    pub peers: BTreeMap<IpAddr, BgpPeer>,
    pub prefixes: BTreeMap<(Protocol, IpNet), PrefixIntent>,
    pub bfd: BTreeMap<IpAddr, BfdIntent>,
    pub ospf: BTreeMap<String, OspfIntent>,
}

impl OwnerIntents {
    /// Intents of every kind.
    pub fn len(&self) -> usize {
        self.peers.len() + self.prefixes.len() + self.bfd.len() + self.ospf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.peers.is_empty() && self.prefixes.is_empty() && self.bfd.is_empty() && self.ospf.is_empty()
    }
}

/// The node's local AS and router id as ConfigureBGP last set them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BgpIntent {
    pub local_as: u32,
    pub router_id: std::net::Ipv4Addr,
    pub owner: String,
    /// Counts the ConfigureBGP calls: each is applied once, so a reload
    /// of the configuration file after it (which sets the file's values)
    /// is not undone.
    pub generation: u64,
}

/// All owners' intents.
#[derive(Debug, Clone, Default)]
pub struct Intents {
    pub owners: BTreeMap<String, OwnerIntents>,
    /// The last ConfigureBGP, if any.
    pub bgp: Option<BgpIntent>,
}

impl Intents {
    /// Stores a ConfigureBGP call.
    pub fn configure_bgp(&mut self, local_as: u32, router_id: std::net::Ipv4Addr, owner: &str) {
        let generation = self.bgp.as_ref().map_or(1, |b| b.generation + 1);
        self.bgp = Some(BgpIntent {
            local_as,
            router_id,
            owner: owner.to_string(),
            generation,
        });
    }

    pub fn owner(&mut self, owner: &str) -> &mut OwnerIntents {
        self.owners.entry(owner.to_string()).or_default()
    }

    /// Another owner holding the same prefix and protocol.
    pub fn prefix_holder(&self, protocol: Protocol, prefix: &IpNet, except: &str) -> Option<String> {
        self.owners
            .iter()
            .find(|(o, i)| o.as_str() != except && i.prefixes.contains_key(&(protocol, *prefix)))
            .map(|(o, _)| o.clone())
    }

    /// Every prefix intent with its owner; with several owners of one
    /// prefix (an override) the overriding owner's wins.
    pub fn effective_prefixes(&self) -> BTreeMap<(Protocol, IpNet), (String, PrefixIntent)> {
        let mut out: BTreeMap<(Protocol, IpNet), (String, PrefixIntent)> = BTreeMap::new();
        for (owner, i) in &self.owners {
            for (k, p) in &i.prefixes {
                let take = match out.get(k) {
                    None => true,
                    Some((_, held)) => !held.overrides && p.overrides,
                };
                if take {
                    out.insert(*k, (owner.clone(), p.clone()));
                }
            }
        }
        out
    }
}
