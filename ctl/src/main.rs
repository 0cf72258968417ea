//! `novanetctl`: the routing CLI. Read commands under `routing` (tables,
//! JSON or YAML; `--watch`), the NovaRoute write commands, `apply -f`, and
//! shell completion. Talks to the agent's socket (RouteControl and the
//! RoutingInsight extension).

mod client;
mod cluster;
mod datapath;
mod ospf;
mod read;
mod render;
mod write;

use clap::{CommandFactory, Parser, Subcommand};
use render::Format;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use write::{entry, AttributesEntry, Credentials, PeerEntry};

#[derive(Parser)]
#[command(name = "novanetctl", version, about = "NovaNet routing CLI")]
struct Cli {
    /// The agent's RouteControl socket.
    #[arg(long, global = true, env = "NOVANET_SOCKET", default_value = client::DEFAULT_SOCKET)]
    socket: PathBuf,
    /// Owner for write commands.
    #[arg(long, global = true, env = "NOVANET_OWNER", default_value = "")]
    owner: String,
    /// Owner token for write commands (visible in the process list: prefer
    /// --token-file or NOVANET_TOKEN).
    #[arg(
        long,
        global = true,
        env = "NOVANET_TOKEN",
        default_value = "",
        hide_env_values = true
    )]
    token: String,
    /// Read the owner token from this file.
    #[arg(long, global = true, env = "NOVANET_TOKEN_FILE")]
    token_file: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Read routing state.
    Routing {
        /// Output format.
        #[arg(short = 'o', long, value_enum, default_value = "table", global = true)]
        output: Format,
        /// Re-run every --interval until interrupted.
        #[arg(short = 'w', long, global = true)]
        watch: bool,
        /// Seconds between --watch refreshes.
        #[arg(long, default_value_t = 2, global = true)]
        interval: u64,
        #[command(subcommand)]
        view: View,
    },
    /// Register an owner session.
    Register {
        #[arg(long)]
        reassert: bool,
    },
    /// Deregister an owner.
    Deregister {
        #[arg(long)]
        withdraw_all: bool,
    },
    /// Set the local AS and router id.
    ConfigureBgp {
        #[arg(long)]
        local_as: u32,
        #[arg(long)]
        router_id: String,
    },
    /// Add or change a BGP peer.
    ApplyPeer {
        #[arg(long)]
        neighbor: String,
        #[arg(long)]
        remote_as: u32,
        #[arg(long, default_value_t = 0)]
        keepalive: u32,
        #[arg(long, default_value_t = 0)]
        hold_time: u32,
        #[arg(long)]
        bfd: bool,
        #[arg(long, default_value_t = 0)]
        bfd_min_rx: u32,
        #[arg(long, default_value_t = 0)]
        bfd_min_tx: u32,
        #[arg(long, default_value_t = 0)]
        bfd_detect_multiplier: u32,
        #[arg(long, default_value_t = 0)]
        ebgp_multihop: u32,
        #[arg(long, default_value = "")]
        password: String,
        #[arg(long, default_value = "")]
        source_address: String,
        #[arg(long, default_value_t = 0)]
        max_prefix: u32,
        #[arg(long, default_value = "external")]
        peer_type: String,
        #[arg(long, value_delimiter = ',', default_value = "ipv4-unicast")]
        address_families: Vec<String>,
        #[arg(long, default_value = "")]
        description: String,
    },
    /// Remove a BGP peer.
    RemovePeer {
        #[arg(long)]
        neighbor: String,
    },
    /// Advertise a prefix.
    Advertise {
        #[arg(long)]
        prefix: String,
        #[arg(long, default_value = "bgp")]
        protocol: String,
        #[arg(long, default_value_t = 0)]
        local_pref: u32,
        #[arg(long, default_value_t = 0)]
        med: u32,
        #[arg(long, default_value = "")]
        next_hop: String,
        #[arg(long, value_delimiter = ',')]
        communities: Vec<String>,
    },
    /// Withdraw a prefix.
    Withdraw {
        #[arg(long)]
        prefix: String,
        #[arg(long, default_value = "bgp")]
        protocol: String,
    },
    /// Start a BFD session.
    EnableBfd {
        #[arg(long)]
        peer: String,
        #[arg(long, default_value = "")]
        interface: String,
        #[arg(long, default_value_t = 0)]
        min_rx: u32,
        #[arg(long, default_value_t = 0)]
        min_tx: u32,
        #[arg(long, default_value_t = 0)]
        detect_multiplier: u32,
    },
    /// Stop a BFD session.
    DisableBfd {
        #[arg(long)]
        peer: String,
    },
    /// Put an interface into OSPF.
    EnableOspf {
        #[arg(long)]
        interface: String,
        #[arg(long)]
        area: String,
        #[arg(long)]
        passive: bool,
        #[arg(long, default_value_t = 0)]
        cost: u32,
        #[arg(long, default_value_t = 0)]
        hello_interval: u32,
        #[arg(long, default_value_t = 0)]
        dead_interval: u32,
    },
    /// Take an interface out of OSPF.
    DisableOspf {
        #[arg(long)]
        interface: String,
    },
    /// Apply a batch of intents from a JSON or YAML file (`-` for stdin).
    Apply {
        #[arg(short = 'f', long = "file")]
        file: String,
    },
    /// The identities of this node's policy datapath (pods by namespace
    /// and labels) and whether a NetworkPolicy isolates them.
    Identity {
        #[arg(short = 'o', long, value_enum, default_value = "table")]
        output: Format,
    },
    /// What the NetworkPolicies compiled to, and the verdict counters.
    Policy {
        #[arg(short = 'o', long, value_enum, default_value = "table")]
        output: Format,
    },
    /// Packets dropped by policy: the recent ones, then new ones.
    Drops {
        #[arg(short = 'o', long, value_enum, default_value = "table")]
        output: Format,
        /// Only the recent ones.
        #[arg(long)]
        no_follow: bool,
    },
    /// New flows allowed by policy: the recent ones, then new ones.
    Flows {
        #[arg(short = 'o', long, value_enum, default_value = "table")]
        output: Format,
        /// Only the recent ones.
        #[arg(long)]
        no_follow: bool,
    },
    /// Print a shell completion script.
    Completion { shell: clap_complete::Shell },
}

#[derive(Subcommand, Clone)]
enum View {
    /// Summary of sessions, prefixes, BFD and OSPF.
    Status,
    /// BGP peers.
    Peers {
        /// Every node's sessions, through the Kubernetes API server
        /// (KUBECONFIG or the in-cluster service account) instead of the
        /// local socket.
        #[arg(long)]
        all_nodes: bool,
        /// Namespace of the agent pods (with --all-nodes).
        #[arg(long, default_value = "nova-system")]
        namespace: String,
        /// Label selector of the agent pods (with --all-nodes).
        #[arg(
            long,
            default_value = "app.kubernetes.io/name=novanet,app.kubernetes.io/component=agent"
        )]
        selector: String,
        /// The agents' status port (with --all-nodes, where no node
        /// state objects are readable).
        #[arg(long, default_value_t = 9103)]
        status_port: u16,
        /// Seconds after which a node state not written again is stale
        /// (with --all-nodes; three heartbeats of the agents' default).
        #[arg(long, default_value_t = 180)]
        stale_after: u64,
    },
    /// Advertised prefixes.
    Prefixes {
        #[arg(long, default_value = "")]
        owner: String,
    },
    /// BFD sessions.
    Bfd {
        #[arg(long, default_value = "")]
        owner: String,
    },
    /// OSPF: the ospfd sidecar, interfaces and neighbors.
    Ospf {
        #[arg(long, default_value = "")]
        owner: String,
    },
    /// Stream events.
    Events {
        #[arg(long, default_value = "")]
        owner: String,
        /// Event types, e.g. peer_up,prefix_advertised.
        #[arg(long, value_delimiter = ',')]
        types: Vec<String>,
    },
    /// The table: candidate paths per prefix and why one won.
    Rib { prefix: Option<String> },
    /// Whether PREFIX is advertised to a peer, and what stops it if not.
    Explain {
        prefix: String,
        #[arg(long)]
        peer: String,
    },
    /// Drain this node (RFC 8326): what it originates is advertised again
    /// with the GRACEFUL_SHUTDOWN community and less preferred, so the
    /// fabric moves traffic away; a SIGTERM then decommissions it.
    Drain {
        /// End the drain.
        #[arg(long)]
        undo: bool,
    },
    /// Whether the node is draining, and what a SIGTERM would do now.
    Lifecycle,
}

async fn render(a: &mut client::Agent, view: &View, format: Format) -> anyhow::Result<String> {
    Ok(match view {
        View::Status => {
            let s = read::status(a).await?;
            match format {
                Format::Table => read::status_text(&s),
                Format::Json => serde_json::to_string_pretty(&s)? + "\n",
                Format::Yaml => serde_yaml_ng::to_string(&s)?,
            }
        }
        View::Peers { .. } => read::render_list(
            format,
            &read::peers(a).await?,
            "No BGP peers configured.",
            read::peers_table,
        )?,
        View::Prefixes { owner } => read::render_list(
            format,
            &read::prefixes(a, owner).await?,
            "No prefixes advertised.",
            read::prefixes_table,
        )?,
        View::Bfd { owner } => {
            read::render_list(format, &read::bfd(a, owner).await?, "No BFD sessions.", read::bfd_table)?
        }
        View::Ospf { owner } => ospf::render(a, owner, format).await?,
        View::Rib { prefix } => read::render_list(
            format,
            &read::rib(a, prefix.clone()).await?,
            "No routes.",
            read::rib_table,
        )?,
        View::Explain { prefix, peer } => {
            let e = read::explain(a, prefix.clone(), peer.clone()).await?;
            match format {
                Format::Table => read::explain_text(&e),
                Format::Json => serde_json::to_string_pretty(&e)? + "\n",
                Format::Yaml => serde_yaml_ng::to_string(&e)?,
            }
        }
        View::Drain { undo } => {
            let l = read::drain(a, *undo).await?;
            read::render_one(format, &l, read::lifecycle_text)?
        }
        View::Lifecycle => {
            let l = read::lifecycle(a).await?;
            read::render_one(format, &l, read::lifecycle_text)?
        }
        View::Events { .. } => unreachable!("streamed"),
    })
}

fn credentials(cli: &Cli) -> anyhow::Result<Credentials> {
    let token = resolve_token(cli)?;
    if cli.owner.is_empty() {
        anyhow::bail!("--owner is required (or NOVANET_OWNER)");
    }
    if token.is_empty() {
        anyhow::bail!("--token is required (or NOVANET_TOKEN, --token-file)");
    }
    Ok(Credentials {
        owner: cli.owner.clone(),
        token,
    })
}

async fn run(cli: Cli) -> anyhow::Result<bool> {
    let e = match &cli.command {
        Command::Completion { shell } => {
            clap_complete::generate(*shell, &mut Cli::command(), "novanetctl", &mut std::io::stdout());
            return Ok(true);
        }
        Command::Identity { output } => {
            let mut a = client::connect(&cli.socket).await?;
            let v = datapath::identities(&mut a.datapath).await?;
            print!(
                "{}",
                read::render_list(*output, &v, "No identities.", datapath::identities_table)?
            );
            return Ok(true);
        }
        Command::Policy { output } => {
            let mut a = client::connect(&cli.socket).await?;
            let p = datapath::policy(&mut a.datapath).await?;
            match output {
                Format::Table => print!("{}", datapath::policy_text(&p)),
                Format::Json => println!("{}", serde_json::to_string_pretty(&p)?),
                Format::Yaml => print!("{}", serde_yaml_ng::to_string(&p)?),
            }
            return Ok(true);
        }
        Command::Drops { output, no_follow } | Command::Flows { output, no_follow } => {
            let kind = if matches!(cli.command, Command::Drops { .. }) {
                "drop"
            } else {
                "flow"
            };
            let mut a = client::connect(&cli.socket).await?;
            datapath::stream(&mut a.datapath, kind, *no_follow, *output).await?;
            return Ok(true);
        }
        Command::Routing {
            output,
            watch,
            interval,
            view,
        } => {
            if let View::Peers {
                all_nodes: true,
                namespace,
                selector,
                status_port,
                stale_after,
            } = view
            {
                let agents = cluster::Agents {
                    namespace: namespace.clone(),
                    selector: selector.clone(),
                    status_port: *status_port,
                    stale_after: Duration::from_secs(*stale_after),
                };
                loop {
                    let text = cluster::render(*output, &cluster::peers(&agents).await?)?;
                    print!("{text}");
                    if !*watch {
                        return Ok(true);
                    }
                    tokio::time::sleep(Duration::from_secs((*interval).max(1))).await;
                }
            }
            let mut a = client::connect(&cli.socket).await?;
            if let View::Events { owner, types } = view {
                read::events(&mut a, owner.clone(), types.clone(), *output).await?;
                return Ok(true);
            }
            loop {
                let text = render(&mut a, view, *output).await?;
                if *watch {
                    print!("\x1b[2J\x1b[H");
                    println!(
                        "Last refresh: {}s since the epoch\n",
                        std::time::SystemTime::now()
                            .duration_since(std::time::UNIX_EPOCH)?
                            .as_secs()
                    );
                }
                print!("{text}");
                if !*watch {
                    return Ok(true);
                }
                tokio::time::sleep(Duration::from_secs((*interval).max(1))).await;
            }
        }
        Command::Register { reassert } => {
            let mut e = entry("register");
            e.passive = *reassert;
            e
        }
        Command::Deregister { withdraw_all } => {
            let mut e = entry("deregister");
            e.passive = *withdraw_all;
            e
        }
        Command::ConfigureBgp { local_as, router_id } => {
            let mut e = entry("configure-bgp");
            e.local_as = *local_as;
            e.router_id = router_id.clone();
            e
        }
        Command::ApplyPeer {
            neighbor,
            remote_as,
            keepalive,
            hold_time,
            bfd,
            bfd_min_rx,
            bfd_min_tx,
            bfd_detect_multiplier,
            ebgp_multihop,
            password,
            source_address,
            max_prefix,
            peer_type,
            address_families,
            description,
        } => {
            let mut e = entry("apply-peer");
            e.peer = Some(PeerEntry {
                neighbor_address: neighbor.clone(),
                remote_as: *remote_as,
                peer_type: Some(peer_type.clone()),
                keepalive: *keepalive,
                hold_time: *hold_time,
                bfd_enabled: *bfd,
                bfd_min_rx_ms: *bfd_min_rx,
                bfd_min_tx_ms: *bfd_min_tx,
                bfd_detect_multiplier: *bfd_detect_multiplier,
                ebgp_multihop: *ebgp_multihop,
                password: password.clone(),
                source_address: source_address.clone(),
                max_prefix: *max_prefix,
                address_families: address_families.clone(),
                description: description.clone(),
            });
            e
        }
        Command::RemovePeer { neighbor } => {
            let mut e = entry("remove-peer");
            e.neighbor_address = neighbor.clone();
            e
        }
        Command::Advertise {
            prefix,
            protocol,
            local_pref,
            med,
            next_hop,
            communities,
        } => {
            let mut e = entry("advertise");
            e.prefix = prefix.clone();
            e.protocol = Some(protocol.clone());
            if *local_pref != 0 || *med != 0 || !next_hop.is_empty() || !communities.is_empty() {
                e.attributes = Some(AttributesEntry {
                    local_preference: *local_pref,
                    communities: communities.clone(),
                    med: *med,
                    next_hop: next_hop.clone(),
                });
            }
            e
        }
        Command::Withdraw { prefix, protocol } => {
            let mut e = entry("withdraw");
            e.prefix = prefix.clone();
            e.protocol = Some(protocol.clone());
            e
        }
        Command::EnableBfd {
            peer,
            interface,
            min_rx,
            min_tx,
            detect_multiplier,
        } => {
            let mut e = entry("enable-bfd");
            e.peer_address = peer.clone();
            e.interface_name = interface.clone();
            e.min_rx_ms = *min_rx;
            e.min_tx_ms = *min_tx;
            e.detect_multiplier = *detect_multiplier;
            e
        }
        Command::DisableBfd { peer } => {
            let mut e = entry("disable-bfd");
            e.peer_address = peer.clone();
            e
        }
        Command::EnableOspf {
            interface,
            area,
            passive,
            cost,
            hello_interval,
            dead_interval,
        } => {
            let mut e = entry("enable-ospf");
            e.interface_name = interface.clone();
            e.area_id = area.clone();
            e.passive = *passive;
            e.cost = *cost;
            e.hello_interval = *hello_interval;
            e.dead_interval = *dead_interval;
            e
        }
        Command::DisableOspf { interface } => {
            let mut e = entry("disable-ospf");
            e.interface_name = interface.clone();
            e
        }
        Command::Apply { file } => {
            let text = if file == "-" {
                std::io::read_to_string(std::io::stdin())?
            } else {
                std::fs::read_to_string(file).map_err(|e| anyhow::anyhow!("{file}: {e}"))?
            };
            let entries = write::parse_batch(&text).map_err(|e| anyhow::anyhow!("{file}: {e}"))?;
            let creds = Credentials {
                owner: cli.owner.clone(),
                token: resolve_token(&cli)?,
            };
            let mut a = client::connect(&cli.socket).await?;
            let mut failed = 0;
            for (i, e) in entries.iter().enumerate() {
                match write::run(&mut a, &creds, e).await {
                    Ok(line) => println!("{line}"),
                    Err(err) => {
                        failed += 1;
                        eprintln!("entry {} ({}): {err}", i + 1, e.action);
                    }
                }
            }
            println!(
                "Applied {}/{} intents ({failed} failed)",
                entries.len() - failed,
                entries.len()
            );
            return Ok(failed == 0);
        }
    };
    let creds = credentials(&cli)?;
    let mut a = client::connect(&cli.socket).await?;
    println!("{}", write::run(&mut a, &creds, &e).await?);
    Ok(true)
}

fn resolve_token(cli: &Cli) -> anyhow::Result<String> {
    match &cli.token_file {
        Some(f) => Ok(std::fs::read_to_string(f)
            .map_err(|e| anyhow::anyhow!("--token-file {}: {e}", f.display()))?
            .trim()
            .to_string()),
        None => Ok(cli.token.clone()),
    }
}

/// Whether the token was given as `--token` on the command line, where
/// every local user can read it in the process list.
fn token_on_command_line(args: impl IntoIterator<Item = std::ffi::OsString>) -> bool {
    args.into_iter()
        .take_while(|a| a != "--")
        .any(|a| a == "--token" || a.to_string_lossy().starts_with("--token="))
}

fn main() -> ExitCode {
    if token_on_command_line(std::env::args_os().skip(1)) {
        eprintln!(
            "novanetctl: warning: --token is visible to every local user in the process list; \
             use --token-file or NOVANET_TOKEN"
        );
    }
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("novanetctl: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("novanetctl: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::token_on_command_line;

    fn args(a: &[&str]) -> Vec<std::ffi::OsString> {
        a.iter().map(|s| s.into()).collect()
    }

    #[test]
    fn a_token_on_the_command_line_is_recognised_and_a_file_is_not() {
        assert!(token_on_command_line(args(&["--token", "s3cret", "routing", "peers"])));
        assert!(token_on_command_line(args(&["routing", "--token=s3cret", "peers"])));
        assert!(!token_on_command_line(args(&[
            "--token-file",
            "/run/t",
            "routing",
            "peers"
        ])));
        assert!(!token_on_command_line(args(&["routing", "peers"])));
    }
}
