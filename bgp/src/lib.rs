//! BGP for NovaNet: the wire codec ([`wire`]), the RFC 4271 session state
//! machine ([`fsm`]), the RIBs and decision process ([`rib`]), route policy
//! ([`policy`]) and the tokio speaker that runs sessions ([`speaker`]).
//!
//! The codec and the FSM are sans-IO: they take bytes, events and time as
//! values and return messages and actions; only [`speaker`] touches sockets
//! and clocks.

pub mod fsm;
pub mod mrt;
pub mod policy;
pub mod prefix_table;
pub mod rib;
pub mod speaker;
pub mod wire;
