//! The control-plane VIP: on control-plane nodes, while the local API
//! server answers its health check, the VIP is bound on `lo` and
//! advertised as a /32 (/128); when the check fails, and at shutdown, it
//! is withdrawn and unbound. Every healthy control-plane node advertises
//! it, so the fabric spreads API traffic over them (anycast) and stops
//! sending it to one whose API server is down.
//!
//! The check is an HTTP(S) GET (default `https://127.0.0.1:6443/livez`);
//! any 2xx answer within the interval is healthy. The local API server's
//! certificate is not verified: the check asks whether it answers, it
//! sends and trusts nothing.

pub use crate::config::vip::{parse_health_url, parse_vip, DEFAULT_HEALTH_URL, DEFAULT_INTERVAL};
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

/// The running VIP task.
pub struct Vip {
    stop: tokio::sync::oneshot::Sender<tokio::sync::oneshot::Sender<()>>,
}

impl Vip {
    /// Starts checking and advertising `vip` every `interval`.
    pub fn start(speaker: Speaker, vip: IpNet, url: &str, interval: Duration) -> anyhow::Result<Vip> {
        let check = HealthCheck::new(url, interval)?;
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<tokio::sync::oneshot::Sender<()>>();
        let url = url.to_string();
        tokio::spawn(async move {
            let mut up = false;
            let mut ticker = tokio::time::interval(interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    done = &mut stopped => {
                        if up {
                            set(&speaker, vip, false).await;
                        }
                        if let Ok(done) = done {
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
                        up = set(&speaker, vip, true).await;
                    }
                    (Err(e), true) => {
                        tracing::warn!(%vip, %url, error = %e, "API server unhealthy: control-plane VIP withdrawn");
                        set(&speaker, vip, false).await;
                        up = false;
                    }
                    (Err(e), false) => tracing::debug!(%vip, error = %e, "API server still unhealthy"),
                    (Ok(()), true) => {}
                }
            }
        });
        Ok(Vip { stop })
    }

    /// Withdraws and unbinds the VIP; returns when done.
    pub async fn stop(self) {
        let (done, finished) = tokio::sync::oneshot::channel();
        if self.stop.send(done).is_ok() {
            let _ = finished.await;
        }
    }
}

/// What the running configuration asks of the VIP on this node.
#[derive(Debug, Clone, PartialEq)]
pub struct VipSettings {
    pub address: IpNet,
    pub health_url: String,
    pub interval: Duration,
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
        }))
    }
}

/// The VIP as the running configuration wants it: started, restarted
/// with new settings, or stopped whenever the configuration changes.
pub struct VipFollower {
    stop: tokio::sync::oneshot::Sender<tokio::sync::oneshot::Sender<()>>,
}

impl VipFollower {
    /// Follows `config` on a node that is (`Some(true)`), is not, or may be
    /// (`None`, outside Kubernetes) a control-plane node.
    pub fn start(speaker: Speaker, mut config: crate::config::ConfigRx, control_plane: Option<bool>) -> VipFollower {
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<tokio::sync::oneshot::Sender<()>>();
        tokio::spawn(async move {
            let mut running: Option<(VipSettings, Vip)> = None;
            if control_plane == Some(false)
                && !matches!(config.borrow().routing.control_plane_vip, Checked::Valid(None))
            {
                tracing::info!("not a control-plane node: the control-plane VIP is left to those");
            }
            loop {
                let wanted = VipSettings::of(&config.borrow_and_update(), control_plane);
                match wanted {
                    Err(e) => tracing::error!(error = %e, "control-plane VIP not changed"),
                    Ok(w) if w.as_ref() != running.as_ref().map(|(s, _)| s) => {
                        if let Some((old, vip)) = running.take() {
                            tracing::info!(vip = %old.address, "control-plane VIP settings changed: stopping the old one");
                            vip.stop().await;
                        }
                        if let Some(w) = w {
                            match Vip::start(speaker.clone(), w.address, &w.health_url, w.interval) {
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
                    done = &mut stopped => {
                        if let Some((_, vip)) = running.take() {
                            vip.stop().await;
                        }
                        if let Ok(done) = done {
                            let _ = done.send(());
                        }
                        return;
                    }
                    r = config.changed() => if r.is_err() {
                        // The configuration is gone: keep what runs until stopped.
                        let done = (&mut stopped).await;
                        if let Some((_, vip)) = running.take() {
                            vip.stop().await;
                        }
                        if let Ok(done) = done {
                            let _ = done.send(());
                        }
                        return;
                    },
                }
            }
        });
        VipFollower { stop }
    }

    /// Withdraws and unbinds the VIP (if up); returns when done.
    pub async fn stop(self) {
        let (done, finished) = tokio::sync::oneshot::channel();
        if self.stop.send(done).is_ok() {
            let _ = finished.await;
        }
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

/// Binds and advertises (or withdraws and unbinds) the VIP; true when it
/// is up afterwards.
async fn set(speaker: &Speaker, vip: IpNet, up: bool) -> bool {
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
        if let Err(e) = loopback_address(vip, false).await {
            tracing::error!(%vip, error = %e, "cannot unbind the control-plane VIP from lo");
        }
        false
    }
}
