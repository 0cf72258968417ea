//! The RouteControl API as clients meet it: the gRPC host ([`host`]: the
//! socket, the HTTP/2 front of [`authority`], method labels and timing) and
//! one file per service: [`route_control`] (`novaroute.v1.RouteControl`),
//! [`insight`] (`novanet.routing.v1.RoutingInsight`), [`lifecycle`]
//! (`novanet.routing.v1.NodeLifecycle`) and [`datapath_insight`]
//! (`novanet.datapath.v1.DatapathInsight`). What the
//! services store and how it is applied is the control plane's
//! ([`crate::control`]).

pub mod authority;
pub mod datapath_insight;
pub mod host;
pub mod insight;
pub mod lifecycle;
pub mod route_control;
