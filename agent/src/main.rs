//! `novanet-agent`: the NovaNet node agent. Loads the configuration, runs
//! the BGP speaker with the node's ToR and mesh peers (or, in the OSPF
//! mode, drives the ospfd sidecar), advertises the node's PodCIDR, and on
//! SIGTERM withdraws it and closes every session with a shutdown
//! communication.

use novanet_agent::{api, bgp, cni, config, control, kubernetes, lifecycle, ospf, status, vip};

use clap::Parser;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser, Debug)]
#[command(
    name = "novanet-agent",
    version,
    about = "NovaNet node agent: native routing with BGP (or OSPF through an ospfd sidecar)"
)]
struct Args {
    /// Configuration file (JSON).
    #[arg(long, env = "NOVANET_CONFIG", default_value = "/etc/novanet/novanet.json")]
    config: PathBuf,
    /// Validate this configuration file and exit: 0 when it is valid,
    /// else 1 with every error and its key path. Starts nothing.
    #[arg(long, value_name = "FILE")]
    check_config: Option<PathBuf>,
    /// Apply the kernel settings the configuration asks for that need more
    /// privilege than the agent runs with (net.ipv4.nexthop_compat_mode
    /// off, see routing.fib.keep_nexthop_compat_mode) and exit: the chart
    /// runs this in a privileged init container.
    #[arg(long)]
    prepare_kernel: bool,
    /// Log format.
    #[arg(long, env = "NOVANET_LOG_FORMAT", value_parser = ["text", "json"], default_value = "text")]
    log_format: String,
}

fn init_logging(level: &str, format: &str) {
    // The agent names a failing watch itself, once (kubernetes::
    // watch_failures); kube's watcher would say it again at every retry.
    let level = if level.contains("kube") {
        level.to_string()
    } else {
        format!("{level},kube_runtime::watcher=error")
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("NOVANET_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// `--prepare-kernel`: what the FIB would set at start, done by a process
/// that may write /proc/sys.
fn prepare_kernel(cfg: &config::Config) -> ExitCode {
    if !cfg.turns_nexthop_compat_off() {
        println!("net.ipv4.nexthop_compat_mode: left as it is (the configuration keeps it)");
        return ExitCode::SUCCESS;
    }
    match novanet_fib::compat::turn_off() {
        Ok(changed) => {
            println!(
                "net.ipv4.nexthop_compat_mode: {}",
                if changed {
                    "turned off"
                } else {
                    "off already (or not in this kernel)"
                }
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("novanet-agent: cannot turn off net.ipv4.nexthop_compat_mode: {e}");
            ExitCode::FAILURE
        }
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(path) = &args.check_config {
        return match config::Config::check(path) {
            Ok(_) => {
                println!("{}: valid", path.display());
                ExitCode::SUCCESS
            }
            Err(problems) => {
                for e in &problems {
                    eprintln!("{}: {e}", path.display());
                }
                ExitCode::from(1)
            }
        };
    }
    let cfg = match config::Config::load(&args.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("novanet-agent: config {}: {e}", args.config.display());
            return ExitCode::from(2);
        }
    };
    if args.prepare_kernel {
        return prepare_kernel(&cfg);
    }
    init_logging(&cfg.log_level, &args.log_format);
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("novanet-agent: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(args.config.clone(), cfg)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "agent failed");
            eprintln!("novanet-agent: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(config_path: PathBuf, mut cfg: config::Config) -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    let metrics = status::parse_address(&cfg.metrics_address)?;
    // With the Kubernetes mesh, this node's Node completes the
    // configuration (address, PodCIDRs, AS annotation) before routing starts.
    let kube = if cfg.from_kubernetes() {
        let client = kubernetes::watch::client().await?;
        let kept = kubernetes::last_known::LastKnown::beside(std::path::Path::new(&cfg.listen_socket));
        let own = kubernetes::watch::own_node(&client, &cfg, &kept).await;
        kubernetes::watch::complete_config(&mut cfg, &own)?;
        Some((client, own))
    } else {
        None
    };
    // This node's NovaBGPNodeOverride, over the file: applied before
    // routing starts, then followed. `file` is the configuration without
    // it, to apply the next one over.
    let mut file = cfg.clone();
    let mut identity = match &kube {
        Some((client, _)) => {
            let kept = kubernetes::last_known::LastKnown::beside(std::path::Path::new(&cfg.listen_socket));
            let o = kubernetes::resources::identity::at_start(client, &cfg.node_name, &kept).await;
            if o.is_some() {
                kubernetes::resources::identity::describe(o.as_ref());
            }
            o
        }
        None => None,
    };
    cfg = running(&file, identity.as_ref())?;
    // The running configuration, which every consumer follows: a reload
    // is one send.
    let (config_tx, config_rx) = tokio::sync::watch::channel(std::sync::Arc::new(cfg.clone()));
    let routing = bgp::start(&config_rx).await?;
    let speaker = routing.speaker.clone();
    bgp::follow_config(&routing, config_rx.clone());
    // This node's Node as it changes: its role (the VIP) and lifecycle
    // (drain, cordon, deletion). No Kubernetes API: unknown.
    let (_no_node, unknown_node) = tokio::sync::watch::channel(None);
    let node = match &kube {
        Some((client, own)) => kubernetes::watch::watch_own_node(client.clone(), own),
        None => unknown_node,
    };
    let vip = vip::VipFollower::start(speaker.clone(), config_rx.clone(), node.clone());
    let lifecycle = std::sync::Arc::new(lifecycle::Lifecycle::new(speaker.clone()));
    lifecycle.clone().follow_node(node);
    if let (Some((client, _)), Some((namespace, name))) = (&kube, kubernetes::watch::own_daemonset()) {
        let deleting = kubernetes::watch::watch_own_daemonset(client.clone(), namespace, name);
        lifecycle.clone().follow_daemonset(deleting);
    }
    let fib_status = routing.fib.as_ref().map(|f| f.status_handle());
    // The OSPF mode's task: requests from the control plane in, reports
    // (outcomes, events) out.
    let (ospf_reports, ospf_reported) = tokio::sync::mpsc::unbounded_channel();
    let ospf = if cfg.ospf_mode() {
        let dir = cfg.routing.frr_socket_dir.clone().unwrap_or_default();
        let ospf = ospf::Ospf::start(ospf::desired::Settings::from_config(&cfg)?, dir.into(), ospf_reports)?;
        ospf.follow_config(config_rx.clone());
        Some(ospf)
    } else {
        None
    };
    let control = control::new(
        config_rx.clone(),
        speaker.clone(),
        routing.bfd.clone(),
        routing.peers.clone(),
        ospf,
        lifecycle.clone(),
    )?;
    control::sources::follow_ospf(control.clone(), ospf_reported);
    tokio::spawn(control::follow_config(control.clone()));
    tokio::spawn(control::reconciler::follow_peer_outcomes(control.clone()));
    control::set_asn_collisions(&control, cfg.asn_collisions());
    let enforcer = if cfg.datapath.enabled {
        let e = novanet_agent::policy::enforcer::Enforcer::start(
            std::path::Path::new(&cfg.datapath.bpf_pin_dir),
            cfg.node_ip.into_iter().collect(),
        )?;
        match &kube {
            // The pinned maps stay as the previous agent left them until
            // every watch has listed.
            Some((client, _)) => kubernetes::policy_watch::spawn(client.clone(), e.clone()),
            None => {
                tracing::warn!(
                    "datapath.enabled without the Kubernetes API: no NetworkPolicy is read, every pod stays open"
                );
                e.update(|_| {});
            }
        }
        Some(e)
    } else {
        None
    };
    let mut http = tokio::spawn(status::serve(
        status::Listeners {
            tcp: metrics,
            all_on_tcp: cfg.status_on_tcp,
            socket: cfg.status_socket(),
        },
        status::Sources {
            speaker: speaker.clone(),
            fib: fib_status,
            bfd: routing.bfd.clone(),
            control: control.clone(),
            enforcer: enforcer.clone(),
        },
    ));
    if let Some((client, own)) = &kube {
        kubernetes::events::spawn(client.clone(), own, control.clone(), lifecycle.take_announcements());
    }
    let mut identity_changes = None;
    if let Some((client, _)) = &kube {
        // The peers of the NovaBGPClusterConfig selecting this node; their
        // password Secrets in the agent's namespace.
        let namespace = std::env::var("POD_NAMESPACE")
            .ok()
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| "nova-system".into());
        let published = kubernetes::resources::watch::spawn(
            client.clone(),
            config_rx.clone(),
            routing.peers.sources.clone(),
            namespace,
            kubernetes::last_known::LastKnown::beside(std::path::Path::new(&cfg.listen_socket)),
            identity,
            routing.links.clone(),
        );
        kubernetes::resources::state::spawn(
            client.clone(),
            cfg.node_name.clone(),
            std::time::Duration::from_secs(cfg.routing.node_state_heartbeat.max(1)),
            speaker.clone(),
            routing.bfd.clone(),
            control.clone(),
            published.conditions,
        );
        if cfg.kubernetes_mesh() {
            kubernetes::watch::spawn_mesh(
                client.clone(),
                config_rx.clone(),
                routing.peers.sources.clone(),
                control.clone(),
                kubernetes::last_known::LastKnown::beside(std::path::Path::new(&cfg.listen_socket)),
                published.node_as,
            );
        }
        identity_changes = Some(published.identity);
    }
    let (cni_stop, cni_stopped) = tokio::sync::oneshot::channel::<()>();
    let cni = if cfg.cni.enabled {
        let backend = std::sync::Arc::new(cni::CniBackend::new(&cfg, enforcer.clone())?);
        cni::enable_forwarding(&cfg);
        Some(tokio::spawn(cni::serve(
            backend,
            std::path::PathBuf::from(&cfg.cni.socket),
            async {
                let _ = cni_stopped.await;
            },
        )))
    } else {
        None
    };
    tokio::spawn(control::reconciler::run(control.clone()));
    control::sources::spawn(control.clone(), routing.events);
    let (api_stop, api_stopped) = tokio::sync::oneshot::channel::<()>();
    let socket = std::path::PathBuf::from(&cfg.listen_socket);
    let api = tokio::spawn({
        let control = control.clone();
        let enforcer = enforcer.clone();
        async move {
            api::host::serve(control, enforcer, &socket, async {
                let _ = api_stopped.await;
            })
            .await
        }
    });
    loop {
        tokio::select! {
            _ = term.recv() => {
                tracing::info!("SIGTERM: shutting down");
                break;
            }
            _ = int.recv() => {
                tracing::info!("SIGINT: shutting down");
                break;
            }
            _ = hup.recv() => match reload(&config_path, &cfg, kube.as_ref().map(|(_, own)| own)) {
                Ok(new) => {
                    file = new;
                    match running(&file, identity.as_ref()) {
                        Ok(new) => {
                            // Every consumer follows the channel and
                            // applies what changed for it.
                            config_tx.send_replace(std::sync::Arc::new(new.clone()));
                            tracing::info!(config = %config_path.display(), "configuration reloaded");
                            cfg = new;
                        }
                        Err(e) => tracing::error!(error = %e, "configuration not reloaded; the running one stays"),
                    }
                }
                Err(e) => tracing::error!(error = %e, "configuration not reloaded; the running one stays"),
            },
            Some(o) = next_identity(&mut identity_changes) => {
                kubernetes::resources::identity::describe(o.as_ref());
                match running(&file, o.as_ref()) {
                    Ok(new) => {
                        identity = o;
                        config_tx.send_replace(std::sync::Arc::new(new.clone()));
                        cfg = new;
                    }
                    Err(e) => tracing::error!(error = %e, "NovaBGPNodeOverride not applied; the running identity stays"),
                }
            },
            r = &mut http => {
                r??;
                break;
            }
        }
    }
    control.stopping.store(true, std::sync::atomic::Ordering::Relaxed);
    let stop = lifecycle.on_stop(cfg.on_sigterm);
    let drain_period = std::time::Duration::from_secs(cfg.drain_period);
    lifecycle
        .announce_stop(&stop, drain_period, std::time::Duration::from_secs(2))
        .await;
    match stop {
        // A restart: forwarding state stays (kernel routes, nexthop groups,
        // the VIP on lo), the sessions close without a NOTIFICATION and
        // nothing is withdrawn, so graceful-restart helpers keep this
        // node's routes until the next agent takes over.
        lifecycle::OnStop::Restart => {
            tracing::info!("stopping for a restart: routes kept, sessions closed without a NOTIFICATION");
            vip.stop(vip::Leaving::KeepForRestart).await;
            if let Some(o) = &control.ospf {
                o.withdraw_and_stop().await;
            }
            speaker.leave().await?;
        }
        // The node leaves: drain (the fabric moves traffic to other nodes
        // while this one forwards), withdraw everything it originates (the
        // PodCIDR, every owner's prefixes, the VIP), then close the
        // sessions.
        lifecycle::OnStop::Decommission(why) => {
            tracing::warn!(reason = %why, "decommissioning: draining, then withdrawing this node's prefixes");
            lifecycle.drain_before_leaving(drain_period).await;
            vip.stop(vip::Leaving::Withdraw).await;
            if let Some(o) = &control.ospf {
                o.withdraw_and_stop().await;
            }
            let grace = std::time::Duration::from_secs(cfg.disconnect_grace_period.unwrap_or(0));
            speaker
                .shutdown(
                    &format!("NovaNet node agent on {} shutting down: {why}", cfg.node_name),
                    grace,
                )
                .await?;
        }
    }
    let _ = api_stop.send(());
    if let Ok(Err(e)) = api.await {
        tracing::warn!(error = %e, "RouteControl API");
    }
    let _ = cni_stop.send(());
    if let Some(Ok(Err(e))) = match cni {
        Some(t) => Some(t.await),
        None => None,
    } {
        tracing::warn!(error = %e, "CNI backend");
    }
    tracing::info!("stopped");
    Ok(())
}

/// The running configuration: the file's with this node's override over
/// it, checked.
fn running(
    file: &config::Config,
    o: Option<&kubernetes::resources::objects::NodeOverrideSpec>,
) -> anyhow::Result<config::Config> {
    let mut cfg = file.clone();
    kubernetes::resources::identity::apply(&mut cfg, o);
    cfg.validate_node()
        .map_err(|e| anyhow::anyhow!("with this node's NovaBGPNodeOverride: {e}"))?;
    Ok(cfg)
}

/// The next override of this node, when it changes (never, without the
/// Kubernetes API or once its watch is gone).
async fn next_identity(
    changes: &mut Option<tokio::sync::watch::Receiver<Option<kubernetes::resources::objects::NodeOverrideSpec>>>,
) -> Option<Option<kubernetes::resources::objects::NodeOverrideSpec>> {
    let Some(rx) = changes else {
        return std::future::pending().await;
    };
    if rx.changed().await.is_err() {
        *changes = None;
        return std::future::pending().await;
    }
    let o = *rx.borrow_and_update();
    Some(o)
}

/// The configuration file read again for a reload (SIGHUP), completed
/// with what the Node gave at start (the file leaves it out); refused
/// whole when it cannot apply without a restart.
fn reload(
    path: &std::path::Path,
    running: &config::Config,
    own: Option<&kubernetes::nodes::ClusterNode>,
) -> anyhow::Result<config::Config> {
    let mut new = config::Config::load(path)?;
    if let Some(own) = own {
        kubernetes::watch::complete_config(&mut new, own)?;
    }
    let (was, now) = (running.routing.protocol.valid(), new.routing.protocol.valid());
    if was != now {
        let name = |p: Option<&config::Protocol>| p.map(|p| p.to_string()).unwrap_or_default();
        anyhow::bail!(
            "routing.protocol changed from {:?} to {:?}: that takes a restart of the agent",
            name(was),
            name(now)
        );
    }
    Ok(new)
}
