//! The NovaRoute RouteControl gRPC API (`novaroute.v1`): messages, the
//! server trait and the client, generated from
//! `proto/novaroute/v1/novaroute.proto`; and the `RoutingInsight`
//! extension service (`novanet.routing.v1`) for the richer operator views;
//! and the protocol between `novanet-cni` and the agent ([`cni`]).

pub mod cni;

#[allow(clippy::all)]
pub mod novaroute {
    pub mod v1 {
        tonic::include_proto!("novaroute.v1");
    }
}

/// Operator views next to RouteControl (read-only), and the node's
/// lifecycle (drain).
#[allow(clippy::all)]
pub mod novanet {
    pub mod routing {
        pub mod v1 {
            tonic::include_proto!("novanet.routing.v1");
        }
    }
}

/// The identity policy datapath for operators.
#[allow(clippy::all)]
pub mod datapath {
    pub mod v1 {
        tonic::include_proto!("novanet.datapath.v1");
    }
}

/// One RPC of the services above, as the `.proto` files declare it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Method {
    /// The request path: `/package.Service/Method`.
    pub path: &'static str,
    pub name: &'static str,
    /// The server answers with a stream (not timed as one request).
    pub server_streaming: bool,
}

/// Every RPC of every service of this crate, taken from the `.proto`
/// files when they are compiled.
pub const METHODS: &[Method] = include!(concat!(env!("OUT_DIR"), "/methods.rs"));

pub use datapath::v1 as datapath_insight;
pub use novanet::routing::v1 as insight;
pub use novaroute::v1 as api;
