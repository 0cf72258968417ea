//! The control-plane VIP: on control-plane nodes, while the local API
//! server answers its health check, the VIP is bound on `lo` and
//! advertised as a /32 (/128); when the check fails, at shutdown, and when
//! the node loses its control-plane label, it is withdrawn and, after the
//! unbind delay (the fabric moves traffic meanwhile, so no request is
//! dropped), unbound. Every healthy control-plane node advertises it, so
//! the fabric spreads API traffic over them (anycast) and stops sending it
//! to one whose API server is down. Whether this node is a control-plane
//! node follows its Node's label; outside Kubernetes a node with a VIP
//! configured is taken as one.
//!
//! The check is an HTTP(S) GET (default `https://127.0.0.1:6443/livez`);
//! any 2xx answer within the interval is healthy. The local API server's
//! certificate is not verified: the check asks whether it answers, it
//! sends and trusts nothing.

pub use crate::config::vip::{parse_health_url, parse_vip, DEFAULT_HEALTH_URL, DEFAULT_INTERVAL, DEFAULT_UNBIND_DELAY};
use crate::config::Checked;
use ipnet::IpNet;
use novanet_bgp::speaker::Speaker;
use novanet_bgp::wire::{Origin, PathAttributes};
use std::time::Duration;

/// One health check against the configured URL.
struct HealthCheck {
    client: kube::Client,
    path: String,
}

impl HealthCheck {
    fn new(url: &str, timeout: Duration) -> anyhow::Result<HealthCheck> {
        let (base, path) =
            parse_health_url(url).map_err(|e| anyhow::anyhow!("routing.control_plane_vip_health_url: {e}"))?;
        let mut config = kube::Config::new(base.parse()?);
        config.accept_invalid_certs = true;
        config.connect_timeout = Some(timeout);
        config.read_timeout = Some(timeout);
        let client = kube::Client::try_from(config).map_err(|e| anyhow::anyhow!("VIP health check client: {e}"))?;
        Ok(HealthCheck { client, path })
    }

    async fn healthy(&self) -> Result<(), String> {
        let request = tonic::codegen::http::Request::get(self.path.as_str())
            .body(Vec::new())
            .map_err(|e| e.to_string())?;
        self.client
            .request_text(request)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}

/// How a VIP task is told to stop: withdraw and unbind the VIP first,
/// or leave it bound and advertised (the agent restarts: the peers keep
/// the route, the address stays on `lo`, and the next agent takes over),
/// and whom to tell when done.
type StopRequest = (Leaving, tokio::sync::oneshot::Sender<()>);

/// Whether a stopping VIP is withdrawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Leaving {
    Withdraw,
    KeepForRestart,
}

/// How to stop and whom to tell, from what the stop channel delivered
/// (its sender dropped: withdraw, tell no one).
fn stop_request(
    r: Result<StopRequest, tokio::sync::oneshot::error::RecvError>,
) -> (Leaving, Option<tokio::sync::oneshot::Sender<()>>) {
    match r {
        Ok((how, done)) => (how, Some(done)),
        Err(_) => (Leaving::Withdraw, None),
    }
}

/// Sends a stop request and waits until it is carried out.
async fn request_stop(stop: tokio::sync::oneshot::Sender<StopRequest>, how: Leaving) {
    let (done, finished) = tokio::sync::oneshot::channel();
    if stop.send((how, done)).is_ok() {
        let _ = finished.await;
    }
}

/// The running VIP task.
pub struct Vip {
    stop: tokio::sync::oneshot::Sender<StopRequest>,
}

impl Vip {
    /// Starts checking and advertising the VIP of `settings`.
    pub fn start(speaker: Speaker, settings: &VipSettings) -> anyhow::Result<Vip> {
        let (vip, interval, unbind_delay) = (settings.address, settings.interval, settings.unbind_delay);
        let check = HealthCheck::new(&settings.health_url, interval)?;
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<StopRequest>();
        let url = settings.health_url.clone();
        tokio::spawn(async move {
            let mut up = false;
            // A VIP left bound by the agent before a restart stays until
            // the first check says whether it should.
            let mut first = true;
            let mut ticker = tokio::time::interval(interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    request = &mut stopped => {
                        let (how, done) = stop_request(request);
                        if up && how == Leaving::Withdraw {
                            set(&speaker, vip, false, unbind_delay).await;
                        }
                        if let Some(done) = done {
                            let _ = done.send(());
                        }
                        return;
                    }
                    _ = ticker.tick() => {}
                }
                let result = check.healthy().await;
                match (&result, up) {
                    (Ok(()), false) => {
                        tracing::info!(%vip, %url, "API server healthy: control-plane VIP bound and advertised");
                        up = set(&speaker, vip, true, unbind_delay).await;
                    }
                    (Err(e), true) => {
                        tracing::warn!(%vip, %url, error = %e, "API server unhealthy: control-plane VIP withdrawn");
                        set(&speaker, vip, false, unbind_delay).await;
                        up = false;
                    }
                    (Err(e), false) if first => {
                        tracing::warn!(%vip, %url, error = %e, "API server unhealthy: control-plane VIP not advertised (unbound if left from before a restart)");
                        if let Err(e) = loopback_address(vip, false).await {
                            tracing::error!(%vip, error = %e, "cannot unbind the control-plane VIP from lo");
                        }
                    }
                    (Err(e), false) => tracing::debug!(%vip, error = %e, "API server still unhealthy"),
                    (Ok(()), true) => {}
                }
                first = false;
            }
        });
        Ok(Vip { stop })
    }

    /// Withdraws and unbinds the VIP (or, `KeepForRestart`, leaves it);
    /// returns when done.
    pub async fn stop(self, how: Leaving) {
        request_stop(self.stop, how).await;
    }
}

/// What the running configuration asks of the VIP on this node.
#[derive(Debug, Clone, PartialEq)]
pub struct VipSettings {
    pub address: IpNet,
    pub health_url: String,
    pub interval: Duration,
    pub unbind_delay: Duration,
}

impl VipSettings {
    /// The VIP of `cfg`, unless none is configured or this node is known
    /// not to be a control-plane node (`control_plane: Some(false)`; a
    /// node outside Kubernetes with a VIP configured counts as one).
    pub fn of(cfg: &crate::config::Config, control_plane: Option<bool>) -> Result<Option<VipSettings>, String> {
        let address = match &cfg.routing.control_plane_vip {
            Checked::Valid(None) => return Ok(None),
            Checked::Valid(Some(a)) => *a,
            Checked::Invalid { problem, .. } => return Err(format!("routing.control_plane_vip: {problem}")),
        };
        if control_plane == Some(false) {
            return Ok(None);
        }
        Ok(Some(VipSettings {
            address,
            health_url: cfg
                .routing
                .control_plane_vip_health_url
                .clone()
                .unwrap_or_else(|| DEFAULT_HEALTH_URL.into()),
            interval: cfg
                .routing
                .control_plane_vip_health_interval
                .map(Duration::from_secs)
                .unwrap_or(DEFAULT_INTERVAL),
            unbind_delay: cfg
                .routing
                .control_plane_vip_unbind_delay_ms
                .map(Duration::from_millis)
                .unwrap_or(DEFAULT_UNBIND_DELAY),
        }))
    }
}

/// The VIP as the running configuration and this node's role want it:
/// started, restarted with new settings, or stopped whenever either
/// changes.
pub struct VipFollower {
    stop: tokio::sync::oneshot::Sender<StopRequest>,
}

impl VipFollower {
    /// Follows `config` and the node's role: whether its Node is a
    /// control-plane node now, or unknown (`None`: outside Kubernetes,
    /// where a node with a VIP configured is taken as one).
    pub fn start(
        speaker: Speaker,
        mut config: crate::config::ConfigRx,
        mut role: crate::lifecycle::NodeRx,
    ) -> VipFollower {
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<StopRequest>();
        tokio::spawn(async move {
            let mut running: Option<(VipSettings, Vip)> = None;
            let mut role_open = true;
            let mut config_open = true;
            let mut told: Option<Option<bool>> = None;
            loop {
                let control_plane = role.borrow_and_update().map(|n| n.control_plane);
                let vip_configured = !matches!(config.borrow().routing.control_plane_vip, Checked::Valid(None));
                if vip_configured && told != Some(control_plane) {
                    match control_plane {
                        Some(false) => tracing::info!("not a control-plane node: the control-plane VIP is left to those"),
                        Some(true) => tracing::info!("a control-plane node: the control-plane VIP follows the local API server's health"),
                        None => tracing::info!("no Kubernetes API: this node is taken as a control-plane node because routing.control_plane_vip is configured"),
                    }
                    told = Some(control_plane);
                }
                let wanted = VipSettings::of(&config.borrow_and_update(), control_plane);
                match wanted {
                    Err(e) => tracing::error!(error = %e, "control-plane VIP not changed"),
                    Ok(w) if w.as_ref() != running.as_ref().map(|(s, _)| s) => {
                        if let Some((old, vip)) = running.take() {
                            tracing::info!(vip = %old.address, "control-plane VIP settings or the node's role changed: stopping the old one");
                            vip.stop(Leaving::Withdraw).await;
                        }
                        if let Some(w) = w {
                            match Vip::start(speaker.clone(), &w) {
                                Ok(vip) => running = Some((w, vip)),
                                Err(e) => {
                                    tracing::error!(vip = %w.address, error = %e, "control-plane VIP not started")
                                }
                            }
                        }
                    }
                    Ok(_) => {}
                }
                tokio::select! {
                    request = &mut stopped => {
                        let (how, done) = stop_request(request);
                        if let Some((_, vip)) = running.take() {
                            vip.stop(how).await;
                        }
                        if let Some(done) = done {
                            let _ = done.send(());
                        }
                        return;
                    }
                    // A closed channel no longer changes; what runs stays
                    // until stopped.
                    r = config.changed(), if config_open => config_open = r.is_ok(),
                    r = role.changed(), if role_open => role_open = r.is_ok(),
                }
            }
        });
        VipFollower { stop }
    }

    /// Withdraws and unbinds the VIP if up (or, `KeepForRestart`, leaves
    /// it bound and advertised); returns when done.
    pub async fn stop(self, how: Leaving) {
        request_stop(self.stop, how).await;
    }
}

/// Binds (or unbinds) the VIP on `lo`.
async fn loopback_address(vip: IpNet, add: bool) -> anyhow::Result<()> {
    let addresses = crate::addresses::Addresses::new()?;
    let lo = addresses
        .index_of("lo")
        .await?
        .ok_or_else(|| anyhow::anyhow!("no interface lo"))?;
    if add {
        addresses
            .add(
                lo,
                vip.addr(),
                vip.prefix_len(),
                crate::addresses::AddOptions::default(),
            )
            .await?;
    } else {
        addresses.remove(lo, vip.addr(), vip.prefix_len()).await?;
    }
    Ok(())
}

/// Binds and advertises (or withdraws and, `unbind_delay` later,
/// unbinds) the VIP; true when it is up afterwards.
async fn set(speaker: &Speaker, vip: IpNet, up: bool, unbind_delay: Duration) -> bool {
    if up {
        if let Err(e) = loopback_address(vip, true).await {
            tracing::error!(%vip, error = %e, "cannot bind the control-plane VIP on lo");
            return false;
        }
        let attrs = PathAttributes {
            origin: Origin::Igp,
            ..Default::default()
        };
        if let Err(e) = speaker.originate(vip, attrs).await {
            tracing::error!(%vip, error = %e, "cannot advertise the control-plane VIP");
        }
        true
    } else {
        if let Err(e) = speaker.withdraw(vip).await {
            tracing::warn!(%vip, error = %e, "withdrawing the control-plane VIP");
        }
        // Still answering while the fabric moves to the other nodes.
        tokio::time::sleep(unbind_delay).await;
        if let Err(e) = loopback_address(vip, false).await {
            tracing::error!(%vip, error = %e, "cannot unbind the control-plane VIP from lo");
        }
        false
    }
}
