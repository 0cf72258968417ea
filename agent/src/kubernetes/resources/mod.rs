//! The routing resources (`bgp.novanet.io/v1alpha1`, SPEC section 13):
//! the peers a `NovaBGPClusterConfig` gives the nodes it selects become
//! the peer pipeline's `kubernetes-resources` source.
//!
//! - [`objects`]: the resources' specs as read, and label selectors.
//! - [`plan`]: which config selects this node, its peers with profile and
//!   password, and the conditions to show (pure).
//! - [`identity`]: this node's NovaBGPNodeOverride (router ID, local AS,
//!   source address), read before routing starts and applied over the
//!   configuration.
//! - [`watch`]: the reflectors (configs, profiles, the agent namespace's
//!   Secrets, this node's Node) and the task that publishes the plan's
//!   peers to the pipeline, which applies them by difference.
//! - [`state`]: this node's `NovaBGPNodeState` (peers and conditions),
//!   written rate-limited, only on change, with a heartbeat.

pub mod identity;
pub mod objects;
pub mod plan;
pub mod state;
pub mod watch;
