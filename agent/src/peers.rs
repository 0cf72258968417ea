//! Desired-state BGP peers: one [`PeerSpec`] per neighbor (the speaker's
//! session settings and the BFD session it asks for), applied to the
//! speaker and the BFD engine by [`PeerApplier`] idempotently.
//!
//! The configuration file (ToRs, static mesh) and the Kubernetes Node
//! watcher each publish the whole set of peers they want; [`run`] merges
//! the sets and applies the result. What fails stays un-applied and is
//! retried; what succeeded is never applied twice. BGP and BFD are applied
//! apart, so a BFD change never resets a BGP session and a BFD failure
//! never loses track of a peer that was added.

use novanet_bfd::transport::{Bfd, SessionSpec};
use novanet_bgp::speaker::{PeerConfig, Speaker};
use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::time::Duration;
use tokio::sync::watch;

/// One neighbor as a source wants it.
#[derive(Debug, Clone, PartialEq)]
pub struct PeerSpec {
    pub bgp: PeerConfig,
    pub bfd: Option<SessionSpec>,
}

/// What has been applied, per neighbor, BGP and BFD apart.
#[derive(Default)]
pub struct PeerApplier {
    bgp: HashMap<IpAddr, PeerConfig>,
    bfd: HashMap<IpAddr, SessionSpec>,
}

/// The effect applying a peer needs, BGP side.
#[derive(Debug, PartialEq, Eq)]
enum BgpChange {
    None,
    Add,
    /// Only import/export differ: route refresh in, export difference out.
    Policies,
    /// Anything the OPEN or the transport depends on: a new session.
    Replace,
}

fn bgp_change(applied: Option<&PeerConfig>, want: &PeerConfig) -> BgpChange {
    match applied {
        None => BgpChange::Add,
        Some(a) if a == want => BgpChange::None,
        Some(a) => {
            let mut same_session = a.clone();
            same_session.import = want.import.clone();
            same_session.export = want.export.clone();
            if &same_session == want {
                BgpChange::Policies
            } else {
                BgpChange::Replace
            }
        }
    }
}

impl PeerApplier {
    /// Addresses of the peers applied (BGP or BFD side).
    pub fn applied(&self) -> impl Iterator<Item = &IpAddr> {
        self.bgp
            .keys()
            .chain(self.bfd.keys().filter(|a| !self.bgp.contains_key(a)))
    }

    /// Whether a peer's BFD session is applied.
    pub fn has_bfd(&self, addr: &IpAddr) -> bool {
        self.bfd.contains_key(addr)
    }

    /// Brings the speaker and BFD to `desired`; returns what could not be
    /// applied, by neighbor (retried on the next call).
    pub async fn apply(
        &mut self,
        speaker: &Speaker,
        bfd: &Bfd,
        desired: &BTreeMap<IpAddr, PeerSpec>,
    ) -> BTreeMap<IpAddr, String> {
        let mut errors = BTreeMap::new();
        let gone: Vec<IpAddr> = self
            .bgp
            .keys()
            .chain(self.bfd.keys())
            .filter(|a| !desired.contains_key(a))
            .copied()
            .collect();
        for addr in gone {
            // BFD first: a session removed after its peer could still be
            // seen going down and reset a new peer at the same address.
            if let Some(s) = self.bfd.remove(&addr) {
                bfd.remove(s.key);
            }
            if self.bgp.remove(&addr).is_some() {
                if let Err(e) = speaker.remove_peer(addr).await {
                    tracing::debug!(peer = %addr, error = %e, "peer already gone");
                }
                tracing::info!(peer = %addr, "peer removed");
            }
        }
        for (addr, spec) in desired {
            if let Err(e) = self.apply_bgp(speaker, &spec.bgp).await {
                errors.insert(*addr, format!("BGP: {e}"));
                continue;
            }
            if let Err(e) = self.apply_bfd(bfd, *addr, spec.bfd.as_ref()).await {
                errors.insert(*addr, format!("BFD: {e}"));
            }
        }
        errors
    }

    async fn apply_bgp(&mut self, speaker: &Speaker, want: &PeerConfig) -> Result<(), String> {
        let addr = want.address;
        match bgp_change(self.bgp.get(&addr), want) {
            BgpChange::None => return Ok(()),
            BgpChange::Policies => {
                speaker
                    .set_policies(addr, want.import.clone(), want.export.clone())
                    .await
                    .map_err(|e| e.to_string())?;
                tracing::info!(peer = %addr, import = want.import.name(), export = want.export.name(), "peer policies changed");
            }
            BgpChange::Replace => {
                self.bgp.remove(&addr);
                let _ = speaker.remove_peer(addr).await;
                speaker.add_peer(want.clone()).await.map_err(|e| e.to_string())?;
                tracing::info!(peer = %addr, remote_as = want.remote_as, "peer re-created with new settings");
            }
            BgpChange::Add => {
                speaker.add_peer(want.clone()).await.map_err(|e| e.to_string())?;
                tracing::info!(peer = %addr, remote_as = want.remote_as, role = ?want.role, "peer added");
            }
        }
        self.bgp.insert(addr, want.clone());
        Ok(())
    }

    async fn apply_bfd(&mut self, bfd: &Bfd, addr: IpAddr, want: Option<&SessionSpec>) -> Result<(), String> {
        let applied = self.bfd.get(&addr);
        if applied == want {
            return Ok(());
        }
        if let Some(old) = applied.filter(|o| want.is_none_or(|w| w.key != o.key)) {
            bfd.remove(old.key);
        }
        self.bfd.remove(&addr);
        if let Some(w) = want {
            bfd.add(w.clone()).await.map_err(|e| e.to_string())?;
            tracing::info!(
                peer = %addr,
                multihop = w.key.multihop,
                tx_ms = w.config.desired_min_tx.as_millis() as u64,
                rx_ms = w.config.required_min_rx.as_millis() as u64,
                multiplier = w.config.detect_mult,
                "BFD session configured"
            );
            self.bfd.insert(addr, w.clone());
        }
        Ok(())
    }
}

/// Where a set of peers comes from; the first source holding an address
/// keeps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Source {
    /// `routing.peers[]` and the static node mesh.
    Config,
    /// `routing.peers[]` by interface, once the link's neighbor is found.
    Unnumbered,
    /// The Kubernetes Node watcher.
    KubernetesMesh,
}

/// The sets of all sources merged: a source earlier in [`Source`]'s order
/// wins an address both want (a ToR configured at a node's address stays
/// a ToR).
pub fn merge(sets: &[(Source, Vec<PeerSpec>)]) -> BTreeMap<IpAddr, PeerSpec> {
    let mut sorted: Vec<&(Source, Vec<PeerSpec>)> = sets.iter().collect();
    sorted.sort_by_key(|(s, _)| *s);
    let mut merged = BTreeMap::new();
    for (source, specs) in sorted {
        for spec in specs {
            if merged.contains_key(&spec.bgp.address) {
                tracing::debug!(peer = %spec.bgp.address, ?source, "address already held by an earlier source");
                continue;
            }
            merged.insert(spec.bgp.address, spec.clone());
        }
    }
    merged
}

/// How often peers that failed to apply are tried again.
pub const RETRY: Duration = Duration::from_secs(5);

/// Senders of the peer sets, one per source.
#[derive(Clone)]
pub struct PeerSources {
    pub config: watch::Sender<Vec<PeerSpec>>,
    pub unnumbered: watch::Sender<Vec<PeerSpec>>,
    pub mesh: watch::Sender<Vec<PeerSpec>>,
}

/// Applies the merged peer sets whenever one changes (and retries what
/// failed, logging it) until the agent stops.
pub fn spawn(speaker: Speaker, bfd: Bfd, config: Vec<PeerSpec>) -> PeerSources {
    let (config_tx, mut config_rx) = watch::channel(config);
    let (unnumbered_tx, mut unnumbered_rx) = watch::channel(Vec::new());
    let (mesh_tx, mut mesh_rx) = watch::channel(Vec::new());
    tokio::spawn(async move {
        let mut applier = PeerApplier::default();
        loop {
            let desired = merge(&[
                (Source::Config, config_rx.borrow_and_update().clone()),
                (Source::Unnumbered, unnumbered_rx.borrow_and_update().clone()),
                (Source::KubernetesMesh, mesh_rx.borrow_and_update().clone()),
            ]);
            let failed = applier.apply(&speaker, &bfd, &desired).await;
            for (addr, e) in &failed {
                tracing::warn!(peer = %addr, error = %e, "peer not applied; retrying");
            }
            let retry = !failed.is_empty();
            // Ends when every source has gone.
            let all_gone =
                |a: &watch::Receiver<_>, b: &watch::Receiver<_>| a.has_changed().is_err() && b.has_changed().is_err();
            tokio::select! {
                r = config_rx.changed() => if r.is_err() && all_gone(&unnumbered_rx, &mesh_rx) { return },
                r = unnumbered_rx.changed() => if r.is_err() && all_gone(&config_rx, &mesh_rx) { return },
                r = mesh_rx.changed() => if r.is_err() && all_gone(&config_rx, &unnumbered_rx) { return },
                _ = tokio::time::sleep(RETRY), if retry => {}
            }
        }
    });
    PeerSources {
        config: config_tx,
        unnumbered: unnumbered_tx,
        mesh: mesh_tx,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use novanet_bgp::policy::PeerPolicy;

    fn peer(a: &str, asn: u32) -> PeerConfig {
        PeerConfig::new(a.parse().unwrap(), asn)
    }

    #[test]
    fn a_policy_change_alone_keeps_the_session_anything_else_replaces_it() {
        let a = peer("10.0.0.1", 65000);
        assert_eq!(bgp_change(None, &a), BgpChange::Add);
        assert_eq!(bgp_change(Some(&a), &a.clone()), BgpChange::None);
        let mut b = a.clone();
        b.export = PeerPolicy::All;
        assert_eq!(bgp_change(Some(&a), &b), BgpChange::Policies);
        let mut c = b.clone();
        c.hold_time = 9;
        assert_eq!(bgp_change(Some(&a), &c), BgpChange::Replace);
        let mut d = a.clone();
        d.remote_as = 65001;
        assert_eq!(bgp_change(Some(&a), &d), BgpChange::Replace);
    }

    #[test]
    fn an_earlier_source_keeps_an_address_both_want() {
        let tor = PeerSpec {
            bgp: peer("10.0.0.1", 65000),
            bfd: None,
        };
        let node = PeerSpec {
            bgp: peer("10.0.0.1", 65001),
            bfd: None,
        };
        let other = PeerSpec {
            bgp: peer("10.0.0.12", 65012),
            bfd: None,
        };
        let merged = merge(&[
            (Source::KubernetesMesh, vec![node, other.clone()]),
            (Source::Config, vec![tor.clone()]),
        ]);
        assert_eq!(merged.len(), 2);
        assert_eq!(merged[&tor.bgp.address], tor);
        assert_eq!(merged[&other.bgp.address], other);
    }
}
