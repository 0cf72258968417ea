//! The NovaRoute RouteControl gRPC API (`novaroute.v1`): messages, the
//! server trait and the client, generated from
//! `proto/novaroute/v1/novaroute.proto`.

#![allow(clippy::all)]

pub mod novaroute {
    pub mod v1 {
        tonic::include_proto!("novaroute.v1");
    }
}

pub use novaroute::v1 as api;
