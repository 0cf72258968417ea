//! What flows between the control plane and the OSPF task, in the OSPF
//! task's own terms: the owners' requests (EnableOSPF interfaces, OSPF
//! prefixes) in, and reports out (an outcome per request, events).

use ipnet::IpNet;
use novanet_proto::api::EventType;

/// An interface an owner wants in OSPF (OSPFv2 values; with OSPFv3 on it
/// joins ospf6d too).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterfaceWanted {
    pub owner: String,
    pub name: String,
    pub area: String,
    pub passive: bool,
    pub cost: u32,
    pub hello: u32,
    pub dead: u32,
}

impl InterfaceWanted {
    /// The request as the OSPF bridge takes it (OSPFv2).
    pub fn request(&self) -> novanet_ospf_bridge::command::InterfaceRequest<'_> {
        novanet_ospf_bridge::command::InterfaceRequest {
            name: &self.name,
            area: &self.area,
            passive: self.passive,
            cost: self.cost,
            hello: self.hello,
            dead: self.dead,
            ipv6: false,
        }
    }
}

/// A prefix an owner wants injected into OSPF.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrefixWanted {
    pub owner: String,
    pub prefix: IpNet,
}

/// Every owner's requests, in the order they were made (owners by name,
/// then interfaces by name): the first request for an interface holds it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Requests {
    pub interfaces: Vec<InterfaceWanted>,
    pub prefixes: Vec<PrefixWanted>,
}

/// One request, as outcomes name it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Item {
    Interface(String),
    Prefix(IpNet),
}

impl std::fmt::Display for Item {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Item::Interface(name) => write!(f, "interface {name}"),
            Item::Prefix(p) => write!(f, "prefix {p}"),
        }
    }
}

/// How applying one request went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Applied,
    /// The sidecar does not answer yet.
    Pending,
    Failed(String),
}

/// What the OSPF task reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Report {
    /// How a request fared (sent after each apply; the receiver keeps what
    /// changed).
    Outcome(Item, Outcome),
    /// Something operators hear of (FRR_CONNECTED / FRR_DISCONNECTED,
    /// OSPF_NEIGHBOR_UP / DOWN), with the owner it concerns.
    Event {
        kind: EventType,
        owner: String,
        detail: String,
        metadata: Vec<(&'static str, String)>,
    },
}

/// Where the OSPF task sends its reports.
pub type Reports = tokio::sync::mpsc::UnboundedSender<Report>;
