//! The one applier of peers: brings the speaker and the BFD engine to a
//! desired set of [`PeerSpec`]s by difference, BGP and BFD apart, so a BFD
//! change never resets a BGP session and a BFD failure never loses track
//! of a peer that was added. What fails stays un-applied and is tried
//! again on the next call; what succeeded is never applied twice.
//!
//! It drives the speaker and BFD through two small traits ([`BgpPeers`],
//! [`BfdSessions`]), so its rules are tested here without sockets.

use super::spec::PeerSpec;
use novanet_bfd::transport::{Bfd, SessionKey, SessionSpec};
use novanet_bgp::policy::PeerPolicy;
use novanet_bgp::speaker::{PeerConfig, Speaker};
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::net::IpAddr;

/// What the applier asks of the BGP speaker.
pub trait BgpPeers {
    fn add_peer(&self, peer: PeerConfig) -> impl Future<Output = Result<(), String>> + Send;
    fn remove_peer(&self, address: IpAddr) -> impl Future<Output = Result<(), String>> + Send;
    fn set_policies(
        &self,
        address: IpAddr,
        import: PeerPolicy,
        export: PeerPolicy,
    ) -> impl Future<Output = Result<(), String>> + Send;
}

/// What the applier asks of the BFD engine.
pub trait BfdSessions {
    fn add(&self, spec: SessionSpec) -> impl Future<Output = Result<(), String>> + Send;
    fn remove(&self, key: SessionKey);
}

impl BgpPeers for Speaker {
    async fn add_peer(&self, peer: PeerConfig) -> Result<(), String> {
        Speaker::add_peer(self, peer).await.map_err(|e| e.to_string())
    }
    async fn remove_peer(&self, address: IpAddr) -> Result<(), String> {
        Speaker::remove_peer(self, address).await.map_err(|e| e.to_string())
    }
    async fn set_policies(&self, address: IpAddr, import: PeerPolicy, export: PeerPolicy) -> Result<(), String> {
        Speaker::set_policies(self, address, import, export)
            .await
            .map_err(|e| e.to_string())
    }
}

impl BfdSessions for Bfd {
    async fn add(&self, spec: SessionSpec) -> Result<(), String> {
        Bfd::add(self, spec).await.map_err(|e| e.to_string())
    }
    fn remove(&self, key: SessionKey) {
        Bfd::remove(self, key)
    }
}

/// Why a peer is not (fully) applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApplyError {
    /// The speaker refused the BGP session.
    Bgp(String),
    /// The BGP session is applied; its BFD session is not.
    Bfd(String),
}

impl std::fmt::Display for ApplyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ApplyError::Bgp(e) => write!(f, "BGP: {e}"),
            ApplyError::Bfd(e) => write!(f, "BFD: {e}"),
        }
    }
}

/// What has been applied, per neighbor, BGP and BFD apart.
#[derive(Default)]
pub struct PeerApplier {
    bgp: HashMap<IpAddr, PeerConfig>,
    bfd: HashMap<IpAddr, SessionSpec>,
}

/// The effect applying a peer needs, BGP side.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum BgpChange {
    None,
    Add,
    /// Only import/export differ: route refresh in, export difference out.
    Policies,
    /// Anything the OPEN or the transport depends on: a new session.
    Replace,
}

/// How long a new BGP session run with BFD waits for its BFD session to
/// come Up before it starts anyway (a peer without BFD). A neighbor that
/// still holds the BFD session of this node's previous run sees it go Down
/// when the new one's first packets arrive; were the BGP session up by
/// then, that Down would close it (and, with the N bit, as a Hard Reset:
/// the routes kept through the restart would go).
pub const BFD_START_HOLD: std::time::Duration = std::time::Duration::from_secs(3);

pub(crate) fn bgp_change(applied: Option<&PeerConfig>, want: &PeerConfig) -> BgpChange {
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
    /// Whether a peer's BFD session is applied.
    pub fn has_bfd(&self, addr: &IpAddr) -> bool {
        self.bfd.contains_key(addr)
    }

    /// Brings the speaker and BFD to `desired`; returns what could not be
    /// applied, by neighbor (tried again on the next call).
    pub async fn apply(
        &mut self,
        speaker: &impl BgpPeers,
        bfd: &impl BfdSessions,
        desired: &BTreeMap<IpAddr, PeerSpec>,
    ) -> BTreeMap<IpAddr, ApplyError> {
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
            if let Err(e) = self.apply_bgp(speaker, &spec.bgp, spec.bfd.is_some()).await {
                errors.insert(*addr, ApplyError::Bgp(e));
                continue;
            }
            if let Err(e) = self.apply_bfd(bfd, *addr, spec.bfd.as_ref()).await {
                errors.insert(*addr, ApplyError::Bfd(e));
            }
        }
        errors
    }

    async fn apply_bgp(&mut self, speaker: &impl BgpPeers, want: &PeerConfig, bfd: bool) -> Result<(), String> {
        let addr = want.address;
        // A new peer whose BFD session is new too starts once that is Up
        // (the BFD task releases it), or after BFD_START_HOLD. A peer
        // re-created with new settings keeps its running BFD session and
        // starts at once.
        let held = || {
            let mut p = want.clone();
            if bfd && !self.bfd.contains_key(&addr) {
                p.start_held_for = Some(BFD_START_HOLD);
            }
            p
        };
        match bgp_change(self.bgp.get(&addr), want) {
            BgpChange::None => return Ok(()),
            BgpChange::Policies => {
                speaker
                    .set_policies(addr, want.import.clone(), want.export.clone())
                    .await?;
                tracing::info!(peer = %addr, import = want.import.name(), export = want.export.name(), "peer policies changed");
            }
            BgpChange::Replace => {
                self.bgp.remove(&addr);
                let _ = speaker.remove_peer(addr).await;
                speaker.add_peer(want.clone()).await?;
                tracing::info!(peer = %addr, remote_as = want.remote_as, "peer re-created with new settings");
            }
            BgpChange::Add => {
                speaker.add_peer(held()).await?;
                tracing::info!(peer = %addr, remote_as = want.remote_as, role = ?want.role, "peer added");
            }
        }
        self.bgp.insert(addr, want.clone());
        Ok(())
    }

    async fn apply_bfd(
        &mut self,
        bfd: &impl BfdSessions,
        addr: IpAddr,
        want: Option<&SessionSpec>,
    ) -> Result<(), String> {
        let applied = self.bfd.get(&addr);
        if applied == want {
            return Ok(());
        }
        if let Some(old) = applied.filter(|o| want.is_none_or(|w| w.key != o.key)) {
            bfd.remove(old.key);
        }
        self.bfd.remove(&addr);
        if let Some(w) = want {
            bfd.add(w.clone()).await?;
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

/// A speaker and a BFD engine for tests, without sockets.
#[cfg(test)]
pub(crate) mod recorder {
    use super::*;
    use std::sync::Mutex;

    /// A speaker and a BFD engine that write down what they are asked, and
    /// refuse what they are told to.
    #[derive(Default)]
    pub(crate) struct Recorder {
        pub(crate) calls: Mutex<Vec<String>>,
        pub(crate) refuse_bgp: Mutex<Option<IpAddr>>,
        pub(crate) refuse_bfd: Mutex<bool>,
    }

    impl Recorder {
        pub(crate) fn take(&self) -> Vec<String> {
            std::mem::take(&mut *self.calls.lock().unwrap())
        }
        fn note(&self, call: String) {
            self.calls.lock().unwrap().push(call);
        }
    }

    impl BgpPeers for Recorder {
        async fn add_peer(&self, peer: PeerConfig) -> Result<(), String> {
            if *self.refuse_bgp.lock().unwrap() == Some(peer.address) {
                return Err("refused".into());
            }
            let held = if peer.start_held_for.is_some() { " held" } else { "" };
            self.note(format!("add {} as {}{held}", peer.address, peer.remote_as));
            Ok(())
        }
        async fn remove_peer(&self, address: IpAddr) -> Result<(), String> {
            self.note(format!("remove {address}"));
            Ok(())
        }
        async fn set_policies(&self, address: IpAddr, _: PeerPolicy, export: PeerPolicy) -> Result<(), String> {
            self.note(format!("policies {address} export {}", export.name()));
            Ok(())
        }
    }

    impl BfdSessions for Recorder {
        async fn add(&self, spec: SessionSpec) -> Result<(), String> {
            if *self.refuse_bfd.lock().unwrap() {
                return Err("no BFD".into());
            }
            self.note(format!(
                "bfd add {} {}",
                spec.key.peer,
                spec.config.desired_min_tx.as_millis()
            ));
            Ok(())
        }
        fn remove(&self, key: SessionKey) {
            self.note(format!("bfd remove {}", key.peer));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::recorder::Recorder;
    use super::*;
    use crate::peers::spec::{bfd_session, BfdTimers};

    fn peer(a: &str, asn: u32) -> PeerConfig {
        PeerConfig::new(a.parse().unwrap(), asn)
    }

    fn desired(specs: &[&PeerSpec]) -> BTreeMap<IpAddr, PeerSpec> {
        specs.iter().map(|s| (s.bgp.address, (*s).clone())).collect()
    }

    fn with_bfd(bgp: PeerConfig, tx_ms: u32) -> PeerSpec {
        let timers = BfdTimers {
            min_rx_ms: 300,
            min_tx_ms: tx_ms,
            detect_multiplier: 3,
        };
        let bfd = Some(bfd_session(&bgp, timers, BfdTimers::default()));
        PeerSpec { bgp, bfd }
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

    #[tokio::test]
    async fn applies_by_difference_bgp_and_bfd_apart() {
        let r = Recorder::default();
        let mut applier = PeerApplier::default();
        let tor = with_bfd(peer("10.0.0.1", 65001), 100);
        let node = PeerSpec {
            bgp: peer("10.0.0.12", 65012),
            bfd: None,
        };
        assert!(applier.apply(&r, &r, &desired(&[&tor, &node])).await.is_empty());
        assert_eq!(
            r.take(),
            [
                "add 10.0.0.1 as 65001 held",
                "bfd add 10.0.0.1 100",
                "add 10.0.0.12 as 65012"
            ],
            "a new peer with a new BFD session waits for it"
        );
        // The same set again: nothing.
        assert!(applier.apply(&r, &r, &desired(&[&tor, &node])).await.is_empty());
        assert!(r.take().is_empty());
        // A BFD timer change touches BFD only; a policy change keeps the
        // session; a gone peer leaves BFD first, then BGP.
        let faster = with_bfd(peer("10.0.0.1", 65001), 50);
        let mut exported = node.clone();
        exported.bgp.export = PeerPolicy::All;
        assert!(applier.apply(&r, &r, &desired(&[&faster, &exported])).await.is_empty());
        assert_eq!(r.take(), ["bfd add 10.0.0.1 50", "policies 10.0.0.12 export all"]);
        // New settings: a new BGP session over the running BFD session,
        // started at once.
        let re_as = with_bfd(peer("10.0.0.1", 65002), 50);
        assert!(applier.apply(&r, &r, &desired(&[&re_as, &exported])).await.is_empty());
        assert_eq!(r.take(), ["remove 10.0.0.1", "add 10.0.0.1 as 65002"]);
        assert!(applier.apply(&r, &r, &desired(&[&exported])).await.is_empty());
        assert_eq!(r.take(), ["bfd remove 10.0.0.1", "remove 10.0.0.1"]);
        assert!(!applier.has_bfd(&"10.0.0.1".parse().unwrap()));
    }

    #[tokio::test]
    async fn what_fails_is_reported_and_tried_again() {
        let r = Recorder::default();
        let mut applier = PeerApplier::default();
        let tor = with_bfd(peer("10.0.0.1", 65001), 100);
        let addr = tor.bgp.address;
        *r.refuse_bgp.lock().unwrap() = Some(addr);
        let failed = applier.apply(&r, &r, &desired(&[&tor])).await;
        assert_eq!(failed[&addr], ApplyError::Bgp("refused".into()));
        assert!(r.take().is_empty(), "no BFD session for a peer BGP refused");
        // BGP accepted, BFD refused: the peer is kept, BFD tried again.
        *r.refuse_bgp.lock().unwrap() = None;
        *r.refuse_bfd.lock().unwrap() = true;
        let failed = applier.apply(&r, &r, &desired(&[&tor])).await;
        assert_eq!(failed[&addr], ApplyError::Bfd("no BFD".into()));
        assert_eq!(r.take(), ["add 10.0.0.1 as 65001 held"]);
        *r.refuse_bfd.lock().unwrap() = false;
        assert!(applier.apply(&r, &r, &desired(&[&tor])).await.is_empty());
        assert_eq!(r.take(), ["bfd add 10.0.0.1 100"], "BGP is not applied twice");
    }
}
