//! Identity-based policy for native routing: pod identities
//! ([`identity`]), NetworkPolicy compiled into the TC programs' maps
//! ([`compile`]). The programs and their loading are `novanet-ebpf`.

pub mod compile;
pub mod identity;

#[cfg(test)]
mod truth_tables;
