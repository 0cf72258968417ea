//! The peer pipeline: every BGP neighbor of the node, whichever source
//! wants it, takes one road to the speaker and the BFD engine.
//!
//! - [`spec`]: each source's input turned into a [`PeerSpec`] (the one
//!   place with defaults).
//! - [`Source`]: the configuration file (ToRs, static mesh), unnumbered
//!   links, the Kubernetes routing resources, the Kubernetes Node mesh and
//!   the RouteControl API each publish
//!   the whole set of peers they want on a watch channel of their own
//!   ([`PeerSources`]).
//! - [`run`]: one task merges the sets ([`merge`]: an earlier source keeps
//!   an address another one wants too), applies the result by difference
//!   ([`apply::PeerApplier`]), and publishes an [`Outcome`] per source and
//!   address: applied, failed and why, or held by another source.

pub mod apply;
pub mod spec;

pub use apply::{ApplyError, PeerApplier};
pub use spec::PeerSpec;

use apply::{BfdSessions, BgpPeers};
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::Duration;
use tokio::sync::watch;

/// Where a set of peers comes from; the first source holding an address
/// keeps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Source {
    /// `routing.peers[]` by address and the static node mesh.
    Config,
    /// `routing.peers[]` by interface, once the link's neighbor is found.
    Unnumbered,
    /// The ToRs of the `NovaBGPClusterConfig` selecting this node.
    KubernetesResources,
    /// The Kubernetes Node watcher.
    KubernetesMesh,
    /// ApplyPeer intents of the RouteControl API's owners.
    Api,
}

impl Source {
    /// The source's name in logs and status.
    pub fn name(self) -> &'static str {
        match self {
            Source::Config => "config",
            Source::Unnumbered => "unnumbered",
            Source::KubernetesResources => "kubernetes-resources",
            Source::KubernetesMesh => "kubernetes-mesh",
            Source::Api => "api",
        }
    }

    /// How a refusal names the holder.
    pub fn describe(self) -> &'static str {
        match self {
            Source::Config => "the configuration file (routing.peers or the static node mesh)",
            Source::Unnumbered => "a peer by interface of the configuration",
            Source::KubernetesResources => "a NovaBGPClusterConfig",
            Source::KubernetesMesh => "the Kubernetes node mesh",
            Source::Api => "another RouteControl owner",
        }
    }
}

/// How one source's peer at one address fared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Applied,
    Failed(ApplyError),
    /// Another source (or an earlier entry of the same one) holds the
    /// address.
    HeldBy(Source),
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outcome::Applied => f.write_str("applied"),
            Outcome::Failed(e) => write!(f, "{e}"),
            Outcome::HeldBy(s) => write!(f, "the address is already a peer of {}", s.describe()),
        }
    }
}

/// The pipeline's report after each pass.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Outcomes {
    pub peers: BTreeMap<(Source, IpAddr), Outcome>,
    /// Addresses whose BFD session the pipeline holds.
    pub bfd: BTreeSet<IpAddr>,
}

impl Outcomes {
    /// What became of `source`'s peer at `addr` (None: not seen yet).
    pub fn of(&self, source: Source, addr: IpAddr) -> Option<&Outcome> {
        self.peers.get(&(source, addr))
    }

    /// Every source's peer with its outcome, for operators: `source`,
    /// `address`, `outcome` (`applied`, `failed`, `held`) and `detail`.
    pub fn view(&self) -> Vec<serde_json::Value> {
        self.peers
            .iter()
            .map(|((source, addr), outcome)| {
                let kind = match outcome {
                    Outcome::Applied => "applied",
                    Outcome::Failed(_) => "failed",
                    Outcome::HeldBy(_) => "held",
                };
                serde_json::json!({
                    "source": source.name(),
                    "address": addr.to_string(),
                    "outcome": kind,
                    "detail": outcome.to_string(),
                })
            })
            .collect()
    }
}

/// The sets of all sources merged.
#[derive(Debug, Default)]
pub struct Merged {
    /// Each address with the source that holds it and its spec.
    pub peers: BTreeMap<IpAddr, (Source, PeerSpec)>,
    /// (source, address, holder): a peer left out because `holder` has
    /// its address.
    pub refused: Vec<(Source, IpAddr, Source)>,
}

/// The sets of all sources merged: a source earlier in [`Source`]'s order
/// wins an address both want (a ToR configured at a node's address stays
/// a ToR); the refused ones, with who holds their address.
pub fn merge(sets: &[(Source, Vec<PeerSpec>)]) -> Merged {
    let mut sorted: Vec<&(Source, Vec<PeerSpec>)> = sets.iter().collect();
    sorted.sort_by_key(|(s, _)| *s);
    let mut merged: BTreeMap<IpAddr, (Source, PeerSpec)> = BTreeMap::new();
    let mut refused = Vec::new();
    for (source, specs) in sorted {
        for spec in specs {
            match merged.get(&spec.bgp.address) {
                Some((holder, _)) => refused.push((*source, spec.bgp.address, *holder)),
                None => {
                    merged.insert(spec.bgp.address, (*source, spec.clone()));
                }
            }
        }
    }
    Merged { peers: merged, refused }
}

/// How often peers that failed to apply are tried again.
pub const RETRY: Duration = Duration::from_secs(5);

/// Senders of the peer sets, one per source.
#[derive(Clone)]
pub struct PeerSources {
    pub config: watch::Sender<Vec<PeerSpec>>,
    pub unnumbered: watch::Sender<Vec<PeerSpec>>,
    pub resources: watch::Sender<Vec<PeerSpec>>,
    pub mesh: watch::Sender<Vec<PeerSpec>>,
    pub api: watch::Sender<Vec<PeerSpec>>,
}

/// The running pipeline: where sources publish, and what it reports.
#[derive(Clone)]
pub struct Peers {
    pub sources: PeerSources,
    pub outcomes: watch::Receiver<Outcomes>,
}

/// Starts the pipeline's task with the configuration's peers.
pub fn spawn<S, B>(speaker: S, bfd: B, config: Vec<PeerSpec>) -> Peers
where
    S: BgpPeers + Send + Sync + 'static,
    B: BfdSessions + Send + Sync + 'static,
{
    let (config, config_rx) = watch::channel(config);
    let (unnumbered, unnumbered_rx) = watch::channel(Vec::new());
    let (resources, resources_rx) = watch::channel(Vec::new());
    let (mesh, mesh_rx) = watch::channel(Vec::new());
    let (api, api_rx) = watch::channel(Vec::new());
    let (outcomes_tx, outcomes) = watch::channel(Outcomes::default());
    let inputs = [
        (Source::Config, config_rx),
        (Source::Unnumbered, unnumbered_rx),
        (Source::KubernetesResources, resources_rx),
        (Source::KubernetesMesh, mesh_rx),
        (Source::Api, api_rx),
    ];
    tokio::spawn(run(speaker, bfd, inputs, outcomes_tx));
    Peers {
        sources: PeerSources {
            config,
            unnumbered,
            resources,
            mesh,
            api,
        },
        outcomes,
    }
}

/// Applies the merged sets whenever one changes (and retries what failed)
/// until every source has gone.
pub async fn run(
    speaker: impl BgpPeers,
    bfd: impl BfdSessions,
    mut inputs: [(Source, watch::Receiver<Vec<PeerSpec>>); 5],
    outcomes: watch::Sender<Outcomes>,
) {
    let mut applier = PeerApplier::default();
    let mut told: Vec<(Source, IpAddr, Source)> = Vec::new();
    loop {
        let sets: Vec<(Source, Vec<PeerSpec>)> = inputs
            .iter_mut()
            .map(|(s, rx)| (*s, rx.borrow_and_update().clone()))
            .collect();
        let Merged { peers: merged, refused } = merge(&sets);
        for (source, addr, holder) in refused.iter().filter(|r| !told.contains(r)) {
            tracing::info!(peer = %addr, source = source.name(), held_by = holder.name(), "peer left out: its address is already a peer of another source");
        }
        told.clone_from(&refused);
        let desired = merged.iter().map(|(a, (_, spec))| (*a, spec.clone())).collect();
        let failed = applier.apply(&speaker, &bfd, &desired).await;
        for (addr, e) in &failed {
            tracing::warn!(peer = %addr, error = %e, "peer not applied; retrying");
        }
        let mut report = Outcomes::default();
        for (addr, (source, spec)) in &merged {
            let outcome = match failed.get(addr) {
                Some(e) => Outcome::Failed(e.clone()),
                None => Outcome::Applied,
            };
            report.peers.insert((*source, *addr), outcome);
            if spec.bfd.is_some() && applier.has_bfd(addr) {
                report.bfd.insert(*addr);
            }
        }
        for (source, addr, holder) in refused {
            report.peers.entry((source, addr)).or_insert(Outcome::HeldBy(holder));
        }
        outcomes.send_if_modified(|o| {
            let changed = *o != report;
            *o = report;
            changed
        });
        let retry = !failed.is_empty();
        // A source whose sender is gone has nothing more to say; the task
        // ends when none is left.
        let open: Vec<_> = inputs
            .iter_mut()
            .filter(|(_, rx)| rx.has_changed().is_ok())
            .map(|(_, rx)| Box::pin(rx.changed()))
            .collect();
        if open.is_empty() {
            return;
        }
        tokio::select! {
            _ = futures::future::select_all(open) => {}
            _ = tokio::time::sleep(RETRY), if retry => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::apply::recorder::Recorder;
    use super::*;
    use novanet_bgp::speaker::PeerConfig;
    use std::sync::Arc;

    /// Forwards to a shared recorder (the pipeline takes its speaker and
    /// BFD engine by value).
    #[derive(Clone, Default)]
    struct Shared(Arc<Recorder>);

    impl BgpPeers for Shared {
        async fn add_peer(&self, peer: PeerConfig) -> Result<(), String> {
            self.0.add_peer(peer).await
        }
        async fn remove_peer(&self, address: IpAddr) -> Result<(), String> {
            self.0.remove_peer(address).await
        }
        async fn set_policies(
            &self,
            address: IpAddr,
            import: novanet_bgp::policy::PeerPolicy,
            export: novanet_bgp::policy::PeerPolicy,
        ) -> Result<(), String> {
            self.0.set_policies(address, import, export).await
        }
    }

    impl BfdSessions for Shared {
        async fn add(&self, spec: novanet_bfd::transport::SessionSpec) -> Result<(), String> {
            BfdSessions::add(&*self.0, spec).await
        }
        fn remove(&self, key: novanet_bfd::transport::SessionKey) {
            BfdSessions::remove(&*self.0, key)
        }
    }

    async fn wait_for_outcomes(outcomes: &watch::Receiver<Outcomes>, want: Vec<((Source, &'static str), Outcome)>) {
        let want: BTreeMap<(Source, IpAddr), Outcome> = want
            .into_iter()
            .map(|((s, a), o)| ((s, a.parse().unwrap()), o))
            .collect();
        let mut outcomes = outcomes.clone();
        tokio::time::timeout(Duration::from_secs(10), outcomes.wait_for(|o| o.peers == want))
            .await
            .expect("the outcomes in time")
            .expect("the pipeline runs");
    }

    /// Sources publish, the pipeline applies by difference and reports per
    /// source and address; a peer at an address another source holds is
    /// reported held, and applied once the holder lets it go.
    #[tokio::test]
    async fn the_pipeline_reports_an_outcome_per_source_and_address() {
        let r = Shared::default();
        let peers = spawn(r.clone(), r.clone(), vec![spec("10.0.0.1", 65001)]);
        let mut outcomes = peers.outcomes.clone();
        let wait_for = wait_for_outcomes;
        wait_for(&peers.outcomes, vec![((Source::Config, "10.0.0.1"), Outcome::Applied)]).await;
        peers
            .sources
            .mesh
            .send_replace(vec![spec("10.0.0.1", 65099), spec("10.0.0.12", 65012)]);
        peers.sources.api.send_replace(vec![spec("10.0.0.12", 65077)]);
        wait_for(
            &peers.outcomes,
            vec![
                ((Source::Config, "10.0.0.1"), Outcome::Applied),
                ((Source::KubernetesMesh, "10.0.0.1"), Outcome::HeldBy(Source::Config)),
                ((Source::KubernetesMesh, "10.0.0.12"), Outcome::Applied),
                ((Source::Api, "10.0.0.12"), Outcome::HeldBy(Source::KubernetesMesh)),
            ],
        )
        .await;
        assert!(outcomes
            .borrow_and_update()
            .view()
            .iter()
            .any(|v| v["outcome"] == "held"
                && v["source"] == "api"
                && v["detail"].as_str().unwrap().contains("Kubernetes node mesh")));
        // The mesh lets 10.0.0.12 go: the API's peer takes it.
        peers.sources.mesh.send_replace(vec![]);
        wait_for(
            &peers.outcomes,
            vec![
                ((Source::Config, "10.0.0.1"), Outcome::Applied),
                ((Source::Api, "10.0.0.12"), Outcome::Applied),
            ],
        )
        .await;
        assert_eq!(
            r.0.take(),
            [
                "add 10.0.0.1 as 65001",
                "add 10.0.0.12 as 65012",
                "remove 10.0.0.12",
                "add 10.0.0.12 as 65077"
            ]
        );
    }

    fn spec(a: &str, asn: u32) -> PeerSpec {
        PeerSpec {
            bgp: PeerConfig::new(a.parse().unwrap(), asn),
            bfd: None,
        }
    }

    #[test]
    fn an_earlier_source_keeps_an_address_both_want() {
        let tor = spec("10.0.0.1", 65000);
        let node = spec("10.0.0.1", 65001);
        let other = spec("10.0.0.12", 65012);
        let api = spec("10.0.0.12", 65099);
        let Merged { peers: merged, refused } = merge(&[
            (Source::Api, vec![api]),
            (Source::KubernetesMesh, vec![node, other.clone()]),
            (Source::Config, vec![tor.clone()]),
        ]);
        assert_eq!(merged.len(), 2);
        assert_eq!(merged[&tor.bgp.address], (Source::Config, tor.clone()));
        assert_eq!(merged[&other.bgp.address], (Source::KubernetesMesh, other.clone()));
        assert_eq!(
            refused,
            [
                (Source::KubernetesMesh, tor.bgp.address, Source::Config),
                (Source::Api, other.bgp.address, Source::KubernetesMesh),
            ]
        );
    }
}
