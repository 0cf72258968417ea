//! The node's lifecycle: whether it is draining and why, and what a
//! SIGTERM means.
//!
//! A drain (RFC 8326) sends what the node originates again with the
//! GRACEFUL_SHUTDOWN community and less preferred, so the fabric moves
//! traffic to the other nodes while this one still forwards. An operator
//! asks for it with `novanetctl routing drain` or the Node's annotation
//! `novanet.io/drain: "true"` (and ends it with `--undo` or by removing
//! the annotation).
//!
//! A SIGTERM is a restart unless the node is leaving. It is leaving
//! (decommission: drain, wait `drain_period`, withdraw, close) when the
//! configuration says so (`on_sigterm: decommission`), when it is drained,
//! when its Node is being deleted, when its Node is cordoned
//! (`spec.unschedulable`, as `kubectl drain` leaves it before a node goes
//! down for maintenance), and when the agent's own DaemonSet is being
//! deleted (the chart uninstalled). Which one happened is logged and
//! announced ([`Announcement`], a Kubernetes Event on the Node).

use novanet_bgp::speaker::Speaker;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};
use tokio::sync::watch;

/// What this node's Node says about its lifecycle.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NodeView {
    /// Labelled `node-role.kubernetes.io/control-plane`.
    pub control_plane: bool,
    /// `spec.unschedulable` (cordoned).
    pub cordoned: bool,
    /// `metadata.deletionTimestamp` set, or the Node gone.
    pub deleting: bool,
    /// Annotated `novanet.io/drain: "true"`.
    pub drain_asked: bool,
}

/// This node's Node as it changes (`None` outside Kubernetes).
pub type NodeRx = watch::Receiver<Option<NodeView>>;

/// Who asked for the drain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DrainCause {
    /// `novanetctl routing drain` (the RouteControl socket).
    Operator,
    /// The Node's `novanet.io/drain` annotation.
    Annotation,
    /// The node is leaving (the decommission's own drain).
    Decommission,
}

impl DrainCause {
    pub fn name(self) -> &'static str {
        match self {
            DrainCause::Operator => "operator",
            DrainCause::Annotation => "annotation",
            DrainCause::Decommission => "decommission",
        }
    }
}

/// The drain, when one is on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Drain {
    pub cause: DrainCause,
    /// Seconds since the epoch.
    pub since: u64,
}

/// What a SIGTERM does, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OnStop {
    Restart,
    Decommission(String),
}

/// A lifecycle step operators should see: published as a Kubernetes
/// Event on the Node (`NodeDraining`, `NodeDrainEnded`, `AgentRestarting`,
/// `NodeDecommissioning`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Announcement {
    pub warning: bool,
    pub reason: &'static str,
    pub note: String,
}

/// An announcement, and who waits for it to be out.
pub type Announced = (Announcement, Option<tokio::sync::oneshot::Sender<()>>);

/// The node's lifecycle state, shared by the API, the Node watch and the
/// shutdown.
pub struct Lifecycle {
    speaker: Speaker,
    drain: Mutex<Option<(Drain, std::time::Instant)>>,
    node: Mutex<Option<NodeView>>,
    /// The agent's DaemonSet is being deleted (the chart uninstalled).
    uninstalled: std::sync::atomic::AtomicBool,
    announce: tokio::sync::mpsc::UnboundedSender<Announced>,
    /// Until a publisher takes it.
    announced: Mutex<Option<tokio::sync::mpsc::UnboundedReceiver<Announced>>>,
}

impl Lifecycle {
    pub fn new(speaker: Speaker) -> Lifecycle {
        let (announce, announced) = tokio::sync::mpsc::unbounded_channel();
        Lifecycle {
            announce,
            announced: Mutex::new(Some(announced)),
            speaker,
            drain: Mutex::new(None),
            node: Mutex::new(None),
            uninstalled: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// The announcements, for the one publisher (the Kubernetes Events).
    pub fn take_announcements(&self) -> Option<tokio::sync::mpsc::UnboundedReceiver<Announced>> {
        self.announced.lock().expect("announced").take()
    }

    fn announce(&self, warning: bool, reason: &'static str, note: String) {
        let _ = self.announce.send((Announcement { warning, reason, note }, None));
    }

    /// Announces what a SIGTERM does, and waits (at most `within`) until a
    /// publisher has sent it out, since the agent exits soon after.
    pub async fn announce_stop(&self, stop: &OnStop, drain_period: Duration, within: Duration) {
        let a = match stop {
            OnStop::Restart => Announcement {
                warning: false,
                reason: "AgentRestarting",
                note: "SIGTERM: a restart; routes kept, sessions closed without a NOTIFICATION".into(),
            },
            OnStop::Decommission(why) => Announcement {
                warning: true,
                reason: "NodeDecommissioning",
                note: format!(
                    "SIGTERM: the node leaves ({why}); draining for {} s, then withdrawing its prefixes",
                    drain_period.as_secs()
                ),
            },
        };
        let published_by_someone = self.announced.lock().expect("announced").is_none();
        let (done, out) = tokio::sync::oneshot::channel();
        if self.announce.send((a, Some(done))).is_ok() && published_by_someone {
            let _ = tokio::time::timeout(within, out).await;
        }
    }

    /// The drain now, if any.
    pub fn drain(&self) -> Option<Drain> {
        self.drain.lock().expect("drain").as_ref().map(|(d, _)| d.clone())
    }

    /// Starts a drain (a second one keeps the first's cause and start).
    pub async fn start_drain(&self, cause: DrainCause) -> anyhow::Result<()> {
        {
            let mut held = self.drain.lock().expect("drain");
            if held.is_some() {
                return Ok(());
            }
            let since = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs();
            *held = Some((Drain { cause, since }, std::time::Instant::now()));
        }
        tracing::warn!(
            cause = cause.name(),
            "draining: originated prefixes re-advertised with GRACEFUL_SHUTDOWN, less preferred"
        );
        self.announce(
            true,
            "NodeDraining",
            format!(
                "draining ({}): this node's prefixes re-advertised with GRACEFUL_SHUTDOWN, less preferred",
                cause.name()
            ),
        );
        Ok(self.speaker.set_draining(true).await?)
    }

    /// Ends the drain, if one is on.
    pub async fn end_drain(&self) -> anyhow::Result<()> {
        if self.drain.lock().expect("drain").take().is_none() {
            return Ok(());
        }
        tracing::info!("drain ended: originated prefixes advertised as before");
        self.announce(
            false,
            "NodeDrainEnded",
            "drain ended: this node's prefixes advertised as before".into(),
        );
        Ok(self.speaker.set_draining(false).await?)
    }

    /// How long the drain has been on.
    fn drained_for(&self) -> Option<Duration> {
        self.drain.lock().expect("drain").as_ref().map(|(_, at)| at.elapsed())
    }

    /// What a SIGTERM means now.
    pub fn on_stop(&self, configured: crate::config::OnSigterm) -> OnStop {
        let node = *self.node.lock().expect("node");
        let why = if configured == crate::config::OnSigterm::Decommission {
            Some("on_sigterm is decommission".to_string())
        } else if let Some(d) = self.drain() {
            Some(format!("the node is drained ({})", d.cause.name()))
        } else {
            match node {
                _ if self.uninstalled.load(std::sync::atomic::Ordering::Relaxed) => {
                    Some("its DaemonSet is being deleted (NovaNet uninstalled)".into())
                }
                Some(n) if n.deleting => Some("its Node is being deleted".into()),
                Some(n) if n.cordoned => Some("its Node is cordoned".into()),
                _ => None,
            }
        };
        match why {
            Some(w) => OnStop::Decommission(w),
            None => OnStop::Restart,
        }
    }

    /// Decommissions: drains (unless already), and waits until the drain
    /// has lasted `period`, so the fabric has moved before the withdraw.
    pub async fn drain_before_leaving(&self, period: Duration) {
        if let Err(e) = self.start_drain(DrainCause::Decommission).await {
            tracing::warn!(error = %e, "drain before leaving");
            return;
        }
        let left = period.saturating_sub(self.drained_for().unwrap_or_default());
        if !left.is_zero() {
            tracing::info!(
                seconds = left.as_secs_f64(),
                "drained; waiting for the fabric to move before the withdraw"
            );
            tokio::time::sleep(left).await;
        }
    }

    /// Follows the agent's DaemonSet: being deleted, it means uninstalled.
    pub fn follow_daemonset(self: std::sync::Arc<Self>, mut deleting: tokio::sync::watch::Receiver<bool>) {
        tokio::spawn(async move {
            loop {
                let now = *deleting.borrow_and_update();
                self.uninstalled.store(now, std::sync::atomic::Ordering::Relaxed);
                if deleting.changed().await.is_err() {
                    return;
                }
            }
        });
    }

    /// Follows this node's Node: its drain annotation starts and ends a
    /// drain; what it says is kept for the SIGTERM.
    pub fn follow_node(self: std::sync::Arc<Self>, mut node: NodeRx) {
        tokio::spawn(async move {
            loop {
                let now = *node.borrow_and_update();
                let before = std::mem::replace(&mut *self.node.lock().expect("node"), now);
                let asked = now.is_some_and(|n| n.drain_asked);
                let was_asked = before.is_some_and(|n| n.drain_asked);
                if asked && !was_asked {
                    if let Err(e) = self.start_drain(DrainCause::Annotation).await {
                        tracing::warn!(error = %e, "drain asked by the Node's annotation");
                    }
                } else if !asked && was_asked && self.drain().is_some_and(|d| d.cause == DrainCause::Annotation) {
                    if let Err(e) = self.end_drain().await {
                        tracing::warn!(error = %e, "drain ended by the Node's annotation");
                    }
                }
                if node.changed().await.is_err() {
                    return;
                }
            }
        });
    }
}
