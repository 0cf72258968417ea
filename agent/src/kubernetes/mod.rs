//! The agent in a Kubernetes cluster: its own Node (address, PodCIDRs,
//! AS annotation) and the node mesh from a watch of every Node.
//!
//! - [`nodes`]: what a Node means for routing and the mesh a set of Nodes
//!   makes (pure).
//! - [`watch`]: the API client (`KUBECONFIG` or the in-cluster service
//!   account), the wait for this node's Node, and the kube-runtime watcher
//!   + reflector that keeps the mesh peers in step with the cluster.
//! - [`last_known`]: the own Node and the mesh's Nodes as last seen, kept
//!   beside the RouteControl socket: routing starts from them when the API
//!   server is away at start.
//! - [`events`]: session, BFD, max-prefix and AS-collision Events on this
//!   node's Node, rate limited.
//! - [`policy_watch`]: Pods, Namespaces and NetworkPolicies for identity
//!   policy.
//! - [`resources`]: the routing resources (`bgp.novanet.io`): the peers
//!   of the NovaBGPClusterConfig selecting this node.
//! - [`watch_failures`]: what a failed watch is told as (an RBAC refusal
//!   named once at error level, the rest warnings).

pub mod events;
pub mod last_known;
pub mod nodes;
pub mod policy_watch;
pub mod resources;
pub mod watch;
pub mod watch_failures;
