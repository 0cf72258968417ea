//! Identity-based policy for native routing: pod identities
//! ([`identity`]), NetworkPolicy compiled into the TC programs' maps
//! ([`compile`]), and the running enforcement ([`enforcer`]). The programs
//! and their loading are `novanet-ebpf`; the watches that feed it are
//! `kubernetes::policy_watch`.

pub mod compile;
pub mod enforcer;
pub mod identity;

#[cfg(test)]
mod truth_tables;
