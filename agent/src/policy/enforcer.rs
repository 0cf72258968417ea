//! The running enforcement: the loaded TC programs, the cluster as the
//! watches last saw it (pods, namespaces, NetworkPolicies), compiled into
//! the maps on every change, the programs attached to each local pod's
//! host end, and the programs' events read from their ring buffer.

use super::compile::{compile, Cluster};
use super::identity::IdentityKey;
use novanet_ebpf::datapath::Counters;
use novanet_ebpf::maps::{EventKind, FlowEvent};
use novanet_ebpf::Datapath;
use std::collections::{BTreeMap, VecDeque};
use std::net::IpAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::broadcast;

/// Events kept for `novanetctl flows` / `drops` and `/status/datapath`.
const RECENT_EVENTS: usize = 1000;

/// What the maps hold now, for operators.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct View {
    pub identities: BTreeMap<u32, IdentityKey>,
    pub ingress_isolated: Vec<u32>,
    pub egress_isolated: Vec<u32>,
    pub ingress_entries: usize,
    pub egress_entries: usize,
    pub policies: usize,
    pub warnings: Vec<String>,
}

pub struct Enforcer {
    /// The cluster comes from the API's watches (set when they start).
    watched: AtomicBool,
    /// The maps hold what every watch listed (set at the first write from
    /// them); before, they hold what the previous agent wrote.
    synced: AtomicBool,
    /// Why the last write of the maps failed (they then hold the state
    /// before it).
    write_error: Mutex<Option<String>>,
    datapath: Mutex<Datapath>,
    cluster: Mutex<Cluster>,
    view: Mutex<View>,
    recent: Mutex<VecDeque<FlowEvent>>,
    events: broadcast::Sender<FlowEvent>,
}

impl Enforcer {
    /// Loads the programs (maps pinned under `pin_dir`, kept from a
    /// previous run) and starts reading their events.
    pub fn start(pin_dir: &Path, host_ips: Vec<IpAddr>) -> anyhow::Result<Arc<Enforcer>> {
        let mut dp = Datapath::load(pin_dir).map_err(|e| anyhow::anyhow!("datapath.bpf_pin_dir: {e}"))?;
        let ring = dp.take_events();
        let (events, _) = broadcast::channel(4096);
        let e = Arc::new(Enforcer {
            watched: AtomicBool::new(false),
            synced: AtomicBool::new(false),
            write_error: Mutex::new(None),
            datapath: Mutex::new(dp),
            cluster: Mutex::new(Cluster {
                host_ips,
                ..Default::default()
            }),
            view: Mutex::new(View::default()),
            recent: Mutex::new(VecDeque::with_capacity(RECENT_EVENTS)),
            events,
        });
        if let Some(ring) = ring {
            tokio::spawn(read_events(e.clone(), ring));
        }
        tracing::info!(pins = %pin_dir.display(), "identity policy datapath loaded");
        Ok(e)
    }

    /// Attaches the programs to a pod's host end, which may send from
    /// `sources` (the pod's addresses) only.
    pub fn attach(&self, iface: &str, sources: &[IpAddr]) -> Result<(), String> {
        let mut dp = self.datapath.lock().expect("datapath");
        dp.set_sources(iface, sources).map_err(|e| e.to_string())?;
        dp.attach(iface).map_err(|e| e.to_string())
    }

    /// Forgets the source addresses of interfaces that are gone.
    pub fn prune_sources(&self) {
        if let Err(e) = self.datapath.lock().expect("datapath").prune_sources() {
            tracing::warn!(error = %e, "pod source addresses not pruned");
        }
    }

    pub fn detach(&self, iface: &str) {
        self.datapath.lock().expect("datapath").detach(iface);
    }

    /// Says the cluster will come from the API's watches: until the first
    /// [`Enforcer::update`], the pinned maps are left as they are.
    pub fn await_watches(&self) {
        self.watched.store(true, Ordering::Relaxed);
    }

    /// Why enforcement is not what the cluster says (for `/readyz`).
    pub fn unsynced(&self) -> Option<String> {
        if self.watched.load(Ordering::Relaxed) && !self.synced.load(Ordering::Relaxed) {
            return Some(
                "NetworkPolicy not yet listed from the API server (the datapath enforces what the previous agent wrote)"
                    .into(),
            );
        }
        self.write_error
            .lock()
            .expect("write error")
            .as_ref()
            .map(|e| format!("the policy maps hold an earlier state: {e}"))
    }

    /// A pod of this node has these addresses from its CNI ADD (None: it
    /// is gone). Its endpoint is written at once, with its Pod's labels or
    /// as a pod not known yet; before the watches have listed, it is only
    /// remembered (the maps keep what the previous agent wrote).
    pub fn local_pod(&self, namespace: &str, name: &str, ips: Option<Vec<IpAddr>>) {
        if namespace.is_empty() || name.is_empty() {
            return;
        }
        let key = (namespace.to_string(), name.to_string());
        let change = |c: &mut Cluster| match ips {
            Some(ips) => {
                c.local_pods.insert(key, ips);
            }
            None => {
                c.local_pods.remove(&key);
            }
        };
        if self.synced.load(Ordering::Relaxed) {
            self.update(change);
        } else {
            change(&mut self.cluster.lock().expect("cluster"));
        }
    }

    /// Changes what the cluster is and writes the maps anew. Called only
    /// with the whole cluster as listed: the maps are never written from
    /// a partial view.
    pub fn update(&self, change: impl FnOnce(&mut Cluster)) {
        let compiled = {
            let mut c = self.cluster.lock().expect("cluster");
            change(&mut c);
            compile(&c)
        };
        let mut dp = self.datapath.lock().expect("datapath");
        // Policies are written only over the endpoints they were compiled
        // with.
        let written = dp
            .sync_endpoints(&compiled.endpoints)
            .and_then(|()| dp.sync_policy(&compiled.state));
        drop(dp);
        match &written {
            Ok(true) => tracing::info!(
                identities = compiled.identities.len(),
                ingress = compiled.state.ingress.len(),
                egress = compiled.state.egress.len(),
                "policy maps updated"
            ),
            Ok(false) => {}
            Err(e) => tracing::error!(error = %e, "policy maps not written"),
        }
        *self.write_error.lock().expect("write error") = written.err().map(|e| e.to_string());
        self.synced.store(true, Ordering::Relaxed);
        for w in &compiled.warnings {
            tracing::warn!(warning = %w, "NetworkPolicy");
        }
        let policies = self.cluster.lock().expect("cluster").policies.len();
        *self.view.lock().expect("view") = View {
            identities: compiled.identities,
            ingress_isolated: compiled.state.ingress_isolated.into_iter().collect(),
            egress_isolated: compiled.state.egress_isolated.into_iter().collect(),
            ingress_entries: compiled.state.ingress.len(),
            egress_entries: compiled.state.egress.len(),
            policies,
            warnings: compiled.warnings,
        };
    }

    pub fn view(&self) -> View {
        self.view.lock().expect("view").clone()
    }

    /// How an identity reads: `any`, `host`, `world`, `cidr#N`, or the
    /// pod's namespace and labels.
    pub fn identity_name(&self, id: u32) -> String {
        use super::identity::CIDR_IDENTITY_BIT;
        match id {
            0 => "any".into(),
            1 => "host".into(),
            2 => "world".into(),
            id if id & CIDR_IDENTITY_BIT != 0 => format!("cidr#{}", id & !CIDR_IDENTITY_BIT),
            id => self
                .view
                .lock()
                .expect("view")
                .identities
                .get(&id)
                .map(|k| k.to_string())
                .unwrap_or_else(|| format!("#{id}")),
        }
    }

    pub fn counters(&self) -> Counters {
        self.datapath.lock().expect("datapath").counters().unwrap_or_default()
    }

    /// The latest events of a kind (oldest first).
    pub fn recent(&self, kind: Option<EventKind>) -> Vec<FlowEvent> {
        self.recent
            .lock()
            .expect("recent")
            .iter()
            .filter(|e| kind.is_none_or(|k| e.kind == k))
            .cloned()
            .collect()
    }

    pub fn subscribe(&self) -> broadcast::Receiver<FlowEvent> {
        self.events.subscribe()
    }

    /// The interfaces the programs are attached to.
    pub fn attached(&self) -> Vec<String> {
        self.datapath.lock().expect("datapath").attached().into_iter().collect()
    }
}

/// Reads the programs' ring buffer whenever it has records.
async fn read_events(e: Arc<Enforcer>, ring: novanet_ebpf::aya::maps::RingBuf<novanet_ebpf::aya::maps::MapData>) {
    // SAFETY: the ring buffer owns its map descriptor and keeps it open,
    // unchanged, for as long as it lives; the AsyncFd owns the ring.
    let registered = unsafe { tokio::io::unix::AsyncFd::register_with_interest(ring, tokio::io::Interest::READABLE) };
    let mut fd = match registered {
        Ok(fd) => fd,
        Err(err) => {
            tracing::error!(error = %err, "datapath events cannot be read");
            return;
        }
    };
    loop {
        let mut guard = match fd.readable_mut().await {
            Ok(g) => g,
            Err(err) => {
                tracing::error!(error = %err, "datapath events");
                return;
            }
        };
        let ring = guard.get_inner_mut();
        while let Some(item) = ring.next() {
            if let Some(ev) = FlowEvent::parse(&item) {
                let mut recent = e.recent.lock().expect("recent");
                if recent.len() == RECENT_EVENTS {
                    recent.pop_front();
                }
                recent.push_back(ev.clone());
                drop(recent);
                let _ = e.events.send(ev);
            }
        }
        guard.clear_ready();
    }
}
