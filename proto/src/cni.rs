//! What `novanet-cni` and the agent say to each other on the agent's CNI
//! socket (`cni.socket`, mode 0600): one JSON request per connection, one
//! JSON answer, each on a line of its own. The agent owns the addresses
//! (IPAM from the node's PodCIDR, kept on disk) and the endpoints; the
//! plugin owns the interfaces in the pod's namespace.

use serde::{Deserialize, Serialize};
use std::net::IpAddr;

/// The pod an attachment belongs to, from `CNI_ARGS` as containerd sends
/// them (`K8S_POD_NAMESPACE`, `K8S_POD_NAME`, `K8S_POD_UID`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pod {
    #[serde(default)]
    pub namespace: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub uid: String,
}

/// One attachment: a container's interface, as CNI names it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Attachment {
    pub container_id: String,
    pub ifname: String,
}

/// A request of the plugin.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// Give the attachment its addresses (the same ones again when it has
    /// them already) and record its endpoint.
    Add {
        attachment: Attachment,
        netns: String,
        host_interface: String,
        #[serde(default)]
        pod: Pod,
    },
    /// The addresses the attachment holds (none: an error).
    Check { attachment: Attachment },
    /// The attachment's interfaces are made: the agent attaches its policy
    /// programs to the host end (an error fails the ADD: a pod is never
    /// left unprotected).
    Attached {
        attachment: Attachment,
        host_interface: String,
    },
    /// Release the attachment's addresses; releasing nothing is fine.
    Del { attachment: Attachment },
    /// Release every attachment not in `valid`.
    Gc { valid: Vec<Attachment> },
    /// Whether the agent can serve ADD now.
    Status,
}

/// What an attachment is given.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Addresses {
    /// One address per family the node has a PodCIDR of.
    pub ips: Vec<IpAddr>,
    /// The MTU for the pod's interface (the node uplink's).
    pub mtu: u32,
}

/// The agent's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Response {
    Addresses(Addresses),
    /// Attachments a GC released (their host interfaces are the plugin's
    /// to remove).
    Released(Vec<Attachment>),
    Done,
    /// A CNI error code (the spec's, or 100+ of novanet) and a message.
    Error {
        code: u32,
        msg: String,
    },
}

/// The agent is there but cannot serve yet (CNI code 11, try again later).
pub const TRY_AGAIN_LATER: u32 = 11;
/// STATUS: the plugin cannot add pods now (CNI code 50).
pub const NOT_AVAILABLE: u32 = 50;
/// The node's PodCIDR has no free address left.
pub const NO_ADDRESS_LEFT: u32 = 100;
/// The agent could not attach its policy programs to the pod.
pub const POLICY_NOT_ATTACHED: u32 = 104;
