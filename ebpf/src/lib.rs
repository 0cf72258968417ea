//! NovaNet's identity policy at TC: the programs (`bpf/policy.bpf.c`,
//! built by clang in `build.rs` and embedded here), the Rust side of their
//! maps ([`maps`]), loading, attaching and map updates ([`datapath`]), and
//! running a program on a crafted packet with `BPF_PROG_TEST_RUN`
//! ([`test_run`]).

pub mod datapath;
pub mod maps;
pub mod test_run;

pub use aya;
pub use datapath::{Datapath, DatapathError};

/// The compiled TC programs (`from_pod`, `to_pod`) and their maps.
pub static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/policy.bpf.o"));
