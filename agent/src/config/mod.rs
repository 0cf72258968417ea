//! The agent's configuration file (SPEC section 12): JSON, snake_case,
//! unknown keys rejected with their path, documented defaults, and the
//! checks that name the key to fix.

pub mod capabilities;
pub mod checked;
pub mod owners;
pub mod vip;

pub use checked::{Checked, Protocol};

/// The running configuration as every consumer follows it: loaded at
/// start, replaced as a whole by a reload (SIGHUP).
pub type ConfigRx = tokio::sync::watch::Receiver<std::sync::Arc<Config>>;

use ipnet::IpNet;
use novanet_bgp::policy::Policy;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

/// A configuration problem, with the key path it concerns.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
}

fn invalid(path: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        path: path.into(),
        message: message.into(),
    }
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub node_name: String,
    /// The source address of ToR sessions that set none, from this node's
    /// NovaBGPNodeOverride (not a key of the file).
    #[serde(skip)]
    pub node_source_address: Option<IpAddr>,
    #[serde(default)]
    pub node_ip: Option<IpAddr>,
    #[serde(default)]
    pub pod_cidr: Option<IpNet>,
    /// Further PodCIDRs (dual stack).
    #[serde(default)]
    pub pod_cidrs: Vec<IpNet>,
    #[serde(default = "default_socket")]
    pub listen_socket: String,
    #[serde(default = "default_metrics")]
    pub metrics_address: String,
    /// The Unix socket (mode 0600) serving every status view; default
    /// beside `listen_socket`, named after it (`novaroute-status.sock`).
    #[serde(default)]
    pub status_socket: Option<String>,
    /// Serve every status view on `metrics_address` too. Off, that TCP
    /// port serves `/healthz`, `/readyz`, `/metrics` and `/status/peers`
    /// only: routes, flows, pods' identities and the rest are behind the
    /// socket.
    #[serde(default)]
    pub status_on_tcp: bool,
    #[serde(default = "default_log_level")]
    pub log_level: String,
    #[serde(default)]
    pub owners: BTreeMap<String, owners::OwnerConfig>,
    #[serde(default)]
    pub disconnect_grace_period: Option<u64>,
    /// What SIGTERM means: a restart (default) or the node leaving.
    #[serde(default)]
    pub on_sigterm: OnSigterm,
    /// Seconds a leaving node stays drained (its prefixes advertised with
    /// GRACEFUL_SHUTDOWN, less preferred) before it withdraws them.
    #[serde(default = "default_drain_period")]
    pub drain_period: u64,
    #[serde(default)]
    pub routing: Routing,
    #[serde(default)]
    pub cni: Cni,
    #[serde(default)]
    pub datapath: DatapathConfig,
}

/// Identity policy at TC on the pods' host ends.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatapathConfig {
    #[serde(default)]
    pub enabled: bool,
    /// Where the programs' maps and links are pinned (on bpffs).
    #[serde(default = "default_pin_dir")]
    pub bpf_pin_dir: String,
}

impl Default for DatapathConfig {
    fn default() -> Self {
        DatapathConfig {
            enabled: false,
            bpf_pin_dir: default_pin_dir(),
        }
    }
}

fn default_pin_dir() -> String {
    "/sys/fs/bpf/novanet".into()
}

/// The agent's side of `novanet-cni`: the socket plugins talk to and where
/// address assignments are kept.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cni {
    #[serde(default)]
    pub enabled: bool,
    #[serde(default = "default_cni_socket")]
    pub socket: String,
    #[serde(default = "default_ipam_dir")]
    pub ipam_dir: String,
}

impl Default for Cni {
    fn default() -> Self {
        Cni {
            enabled: false,
            socket: default_cni_socket(),
            ipam_dir: default_ipam_dir(),
        }
    }
}

fn default_cni_socket() -> String {
    "/run/novanet/cni.sock".into()
}
fn default_ipam_dir() -> String {
    "/var/lib/novanet/ipam".into()
}

fn default_socket() -> String {
    "/run/novaroute/novaroute.sock".into()
}
fn default_metrics() -> String {
    ":9102".into()
}
fn default_log_level() -> String {
    "info".into()
}
fn default_drain_period() -> u64 {
    5
}

/// What SIGTERM means (`on_sigterm`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum OnSigterm {
    /// The agent restarts (an upgrade, a configuration change): forwarding
    /// state stays, sessions close without a NOTIFICATION, nothing is
    /// withdrawn; graceful-restart helpers keep this node's routes.
    #[default]
    Restart,
    /// The node leaves: its prefixes are withdrawn, then the sessions
    /// close with a Cease.
    Decommission,
}

/// How the per-node AS number is derived from the node address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum AsnMode {
    /// 65000 + last octet (the documented rule; collides across subnets).
    #[default]
    LastOctet,
    /// 64512 + 256 x third octet + fourth octet.
    LastTwoOctets,
    /// 4200000000 + the last three octets: private 4-octet ASNs, unique
    /// within a /8.
    #[serde(rename = "private_4byte")]
    Private4Byte,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Routing {
    #[serde(default = "default_protocol")]
    pub protocol: Checked<Protocol>,
    #[serde(default)]
    pub local_as: u32,
    /// Empty or absent: the node's IPv4 address.
    #[serde(default)]
    pub router_id: Checked<Option<Ipv4Addr>>,
    #[serde(default)]
    pub asn_mode: AsnMode,
    #[serde(default)]
    pub peers: Vec<PeerEntry>,
    #[serde(default)]
    pub bfd: Bfd,
    #[serde(default)]
    pub node_mesh: NodeMesh,
    #[serde(default)]
    pub fib: Fib,
    /// The ospfd sidecar's vty socket directory (`routing.protocol: ospf`).
    #[serde(default)]
    pub frr_socket_dir: Option<String>,
    /// The OSPF mode's settings.
    #[serde(default)]
    pub ospf: Ospf,
    #[serde(default)]
    pub control_plane_vip: Checked<Option<IpNet>>,
    #[serde(default)]
    pub control_plane_vip_health_interval: Option<u64>,
    /// What the VIP's health check asks (default the local API server's
    /// `/livez`).
    #[serde(default)]
    pub control_plane_vip_health_url: Option<String>,
    /// How long the VIP stays bound after its withdrawal is sent, so the
    /// fabric moves traffic before this node stops answering (ms).
    #[serde(default)]
    pub control_plane_vip_unbind_delay_ms: Option<u64>,
    /// Named import/export policies for `peers[].import` / `export`.
    #[serde(default)]
    pub policies: BTreeMap<String, Policy>,
    /// TCP port the speaker accepts sessions on.
    #[serde(default = "default_bgp_port")]
    pub listen_port: u16,
    /// Restart time announced for graceful restart (0 turns it off).
    #[serde(default = "default_gr_time")]
    pub graceful_restart_time: u16,
    /// Accept a default route from peers.
    #[serde(default)]
    pub accept_default_route: bool,
    /// Seconds between two writes of this node's NovaBGPNodeState when
    /// nothing changed (readers call a node stale after three).
    #[serde(default = "default_state_heartbeat")]
    pub node_state_heartbeat: u64,
    // Flat BFD keys of the NovaNet Helm chart, folded into `bfd`.
    #[serde(default)]
    pub bfd_enabled: Option<bool>,
    #[serde(default)]
    pub bfd_min_rx_ms: Option<u32>,
    #[serde(default)]
    pub bfd_min_tx_ms: Option<u32>,
    #[serde(default)]
    pub bfd_detect_mult: Option<u32>,
}

impl Default for Routing {
    fn default() -> Self {
        serde_json::from_str("{}").expect("defaults")
    }
}

fn default_protocol() -> Checked<Protocol> {
    Checked::Valid(Protocol::Bgp)
}
fn default_bgp_port() -> u16 {
    179
}
fn default_gr_time() -> u16 {
    120
}
fn default_state_heartbeat() -> u64 {
    60
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bfd {
    #[serde(default = "yes")]
    pub enabled: bool,
    #[serde(default = "default_bfd_interval")]
    pub min_rx_ms: u32,
    #[serde(default = "default_bfd_interval")]
    pub min_tx_ms: u32,
    #[serde(default = "default_bfd_mult")]
    pub detect_multiplier: u32,
}

impl Default for Bfd {
    fn default() -> Self {
        serde_json::from_str("{}").expect("defaults")
    }
}

fn yes() -> bool {
    true
}
fn default_bfd_interval() -> u32 {
    300
}
fn default_bfd_mult() -> u32 {
    3
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum MeshSource {
    #[default]
    Kubernetes,
    Static,
}

/// `routing.ospf`: where the PodCIDR is injected and the interfaces that
/// join OSPF from the configuration (EnableOSPF adds more at runtime).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ospf {
    /// The area of the PodCIDR and of OSPF prefix intents.
    #[serde(default = "default_area")]
    pub area: String,
    /// Interfaces in OSPF from the start (the uplinks to the ToRs).
    #[serde(default)]
    pub interfaces: Vec<OspfInterface>,
    /// OSPFv3 (ospf6d) beside OSPFv2 on every interface; by default on
    /// when the node has an IPv6 PodCIDR.
    #[serde(default)]
    pub ipv6: Option<bool>,
    /// The interface that holds the injected prefixes (created by the
    /// agent, passive in the area).
    #[serde(default = "default_injection_interface")]
    pub injection_interface: String,
    /// A file holding the key every OSPF packet of the node's interfaces
    /// is signed with (OSPFv2 MD5, OSPFv3 HMAC-SHA-256 trailer): 1 to 16
    /// printable characters without whitespace, a final newline ignored,
    /// the same on the ToRs. Without it, OSPF is unauthenticated.
    #[serde(default)]
    pub authentication_key_file: Option<String>,
    /// The key's id (1-255), as the ToRs number it.
    #[serde(default = "default_ospf_key_id")]
    pub authentication_key_id: u32,
    /// The checked key read from `authentication_key_file`.
    #[serde(skip)]
    pub authentication: Option<novanet_ospf_bridge::command::Authentication>,
}

fn default_ospf_key_id() -> u32 {
    1
}

impl Default for Ospf {
    fn default() -> Self {
        serde_json::from_str("{}").expect("defaults")
    }
}

fn default_area() -> String {
    "0.0.0.0".into()
}
fn default_injection_interface() -> String {
    "novanet-ospf".into()
}

/// An interface of `routing.ospf.interfaces`, named as EnableOSPF names
/// its fields.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct OspfInterface {
    pub interface_name: String,
    /// Default `routing.ospf.area`.
    #[serde(default)]
    pub area_id: Option<String>,
    #[serde(default)]
    pub passive: bool,
    #[serde(default)]
    pub cost: u32,
    #[serde(default)]
    pub hello_interval: u32,
    #[serde(default)]
    pub dead_interval: u32,
}

impl OspfInterface {
    /// This interface as an EnableOSPF request would carry it, with the
    /// API's defaults (cost 10, hello 10 s, dead 40 s).
    pub fn request<'a>(&'a self, default_area: &'a str) -> novanet_ospf_bridge::command::InterfaceRequest<'a> {
        novanet_ospf_bridge::command::InterfaceRequest {
            name: &self.interface_name,
            area: self.area_id.as_deref().unwrap_or(default_area),
            passive: self.passive,
            cost: self.cost,
            hello: self.hello_interval,
            dead: self.dead_interval,
            ipv6: false,
        }
        .with_defaults()
    }
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct NodeMesh {
    #[serde(default)]
    pub enabled: bool,
    #[serde(default)]
    pub source: MeshSource,
    #[serde(default)]
    pub nodes: Vec<MeshNode>,
    /// Prefix limit of each mesh session, per family; 0 means the default
    /// (1000, warning only), as for ToR peers.
    #[serde(default, alias = "max_prefixes")]
    pub max_prefix: u32,
    /// Over the limit: only warn, or close the session (the default when
    /// a limit is set).
    #[serde(default)]
    pub max_prefix_warning_only: Option<bool>,
    /// A file holding the key of the mesh's BFD authentication
    /// (meticulous keyed SHA1, RFC 5880 6.7.4): 1 to 20 bytes, a final
    /// newline ignored, the same on every node. Without it, mesh BFD is
    /// unauthenticated.
    #[serde(default)]
    pub bfd_key_file: Option<String>,
    /// The key read from `bfd_key_file`.
    #[serde(skip)]
    pub bfd_key: Option<Vec<u8>>,
    /// A file holding the TCP MD5 password (RFC 2385) of every mesh
    /// session, the same on every node: a process that can send from a
    /// node's address but cannot read the Secret (a hostNetwork pod) can
    /// neither open nor take over a mesh session.
    #[serde(default)]
    pub password_file: Option<String>,
    /// The password read from `password_file`.
    #[serde(skip)]
    pub password: Option<String>,
    /// The lowest TTL the mesh's (multihop) BFD packets may arrive with:
    /// 255 when every node is on one link, 255 minus the routers between
    /// the farthest nodes otherwise; unset takes any.
    #[serde(default)]
    pub bfd_min_ttl: Option<u8>,
}

/// The default status socket of an agent whose RouteControl socket is
/// `listen_socket`.
pub fn status_socket_beside(listen_socket: &Path) -> std::path::PathBuf {
    let stem = listen_socket
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("novaroute");
    listen_socket.with_file_name(format!("{stem}-status.sock"))
}

/// Longest TCP MD5 key the kernel takes (TCP_MD5SIG_MAXKEYLEN).
pub const MAX_MD5_PASSWORD: usize = 80;

/// A TCP MD5 password from a file (a final newline ignored): 1 to 80
/// bytes of text.
fn read_password(at: &str, path: &str) -> Result<String, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| invalid(at, format!("cannot read {path}: {e}")))?;
    let text = text.strip_suffix('\n').unwrap_or(&text);
    if text.is_empty() || text.len() > MAX_MD5_PASSWORD {
        return Err(invalid(
            at,
            format!(
                "{path} holds {} bytes; a TCP MD5 password is 1 to {MAX_MD5_PASSWORD}",
                text.len()
            ),
        ));
    }
    Ok(text.to_string())
}

/// A keyed SHA1 BFD key from a file (a final newline ignored): 1 to
/// [`MAX_BFD_KEY`] bytes.
fn read_bfd_key(at: &str, path: &str) -> Result<Vec<u8>, ConfigError> {
    let mut key = std::fs::read(path).map_err(|e| invalid(at, format!("cannot read {path}: {e}")))?;
    if key.last() == Some(&b'\n') {
        key.pop();
    }
    if key.is_empty() || key.len() > MAX_BFD_KEY {
        return Err(invalid(
            at,
            format!(
                "{path} holds {} bytes; a keyed SHA1 key is 1 to {MAX_BFD_KEY}",
                key.len()
            ),
        ));
    }
    Ok(key)
}

fn default_bfd_key_id() -> u8 {
    1
}

/// Longest key of keyed SHA1 BFD authentication (RFC 5880 4.4).
pub const MAX_BFD_KEY: usize = 20;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MeshNode {
    pub name: String,
    pub ip: IpAddr,
    #[serde(default)]
    pub pod_cidr: Option<IpNet>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fib {
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Routes point at kernel nexthop groups where the kernel has them
    /// (one group update moves every route through a lost gateway).
    #[serde(default = "yes")]
    pub nexthop_objects: bool,
    /// Leave the kernel's `net.ipv4.nexthop_compat_mode` as it is. By
    /// default the agent turns it off when routes use nexthop objects, so a
    /// failover's group replace is not announced once per route (see
    /// `fib::compat`).
    #[serde(default)]
    pub keep_nexthop_compat_mode: bool,
}

impl Default for Fib {
    fn default() -> Self {
        Fib {
            enabled: true,
            nexthop_objects: true,
            keep_nexthop_compat_mode: false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerEntry {
    /// The peer's address; absent for a peer by `interface`.
    #[serde(default)]
    pub neighbor_address: Option<IpAddr>,
    /// BGP unnumbered (RFC 8950): the peer is whoever sends Router
    /// Advertisements on this interface, reached at its IPv6 link-local
    /// address; IPv4 and IPv6 routes travel with IPv6 next hops.
    #[serde(default)]
    pub interface: Option<String>,
    pub remote_as: u32,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub bfd_enabled: bool,
    #[serde(default)]
    pub bfd_min_rx_ms: u32,
    #[serde(default)]
    pub bfd_min_tx_ms: u32,
    #[serde(default)]
    pub bfd_detect_multiplier: u32,
    #[serde(default)]
    pub password: Option<String>,
    /// A file holding `password` (a mounted Secret); read at load.
    #[serde(default)]
    pub password_file: Option<String>,
    #[serde(default)]
    pub ebgp_multihop: u8,
    #[serde(default)]
    pub ttl_security_hops: Option<u8>,
    /// A multihop peer's BFD packets must arrive with at least this TTL.
    #[serde(default)]
    pub bfd_min_ttl: Option<u8>,
    /// A file holding the key of this peer's BFD authentication
    /// (meticulous keyed SHA1, RFC 5880 6.7.4; 1 to 20 bytes, a final
    /// newline ignored), the peer's key: packets failing the digest are
    /// dropped. Without it, the session is unauthenticated.
    #[serde(default)]
    pub bfd_key_file: Option<String>,
    /// The key's id (0-255), as the peer numbers it.
    #[serde(default = "default_bfd_key_id")]
    pub bfd_key_id: u8,
    /// The key read from `bfd_key_file`.
    #[serde(skip)]
    pub bfd_key: Option<Vec<u8>>,
    #[serde(default)]
    pub source_address: Option<IpAddr>,
    #[serde(default)]
    pub hold_time: u16,
    #[serde(default)]
    pub keepalive: u16,
    #[serde(default)]
    pub address_families: Vec<Checked<novanet_bgp::wire::Family>>,
    #[serde(default, alias = "max_prefixes")]
    pub max_prefix: u32,
    #[serde(default)]
    pub max_prefix_warning_only: Option<bool>,
    #[serde(default)]
    pub passive: bool,
    /// TCP port of the peer (179).
    #[serde(default = "default_bgp_port")]
    pub port: u16,
    #[serde(default = "default_policy_name")]
    pub import: String,
    #[serde(default = "default_policy_name")]
    pub export: String,
    /// What the peer is besides a ToR: `route_server` (an RFC 7947 route
    /// server this node is a client of: routes come with the originating
    /// node's AS path and next hop) or `route_server_client` (this node is
    /// its route server: other peers' routes go to it unchanged; give it
    /// `export: all` or a policy).
    #[serde(default)]
    pub role: PeerEntryRole,
}

/// `routing.peers[].role`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum PeerEntryRole {
    #[default]
    Tor,
    RouteServer,
    RouteServerClient,
}

fn default_policy_name() -> String {
    "default".into()
}

impl Config {
    /// Reads and checks a configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Config::parse(&text)
    }

    /// Parses and checks configuration text.
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let cfg = Config::read_with_env(text)?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Reads a file like [`Config::load`], reporting every problem of its
    /// values (a file that is not valid JSON of the right shape stops at
    /// its first error).
    pub fn check(path: &Path) -> Result<Config, Vec<ConfigError>> {
        let text = std::fs::read_to_string(path).map_err(|source| {
            vec![ConfigError::Read {
                path: path.display().to_string(),
                source,
            }]
        })?;
        let cfg = Config::read_with_env(&text).map_err(|e| vec![e])?;
        let problems = cfg.problems();
        if problems.is_empty() {
            Ok(cfg)
        } else {
            Err(problems)
        }
    }

    /// The text as a configuration, with the environment's overrides.
    fn read_with_env(text: &str) -> Result<Config, ConfigError> {
        let de = &mut serde_json::Deserializer::from_str(text);
        let mut cfg: Config = serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            let path = if path == "." { "(top level)".to_string() } else { path };
            invalid(path, e.into_inner().to_string())
        })?;
        cfg.apply_env(|k| std::env::var(k).ok())?;
        cfg.read_keys()?;
        Ok(cfg)
    }

    /// Reads the key and password files the configuration names.
    fn read_keys(&mut self) -> Result<(), ConfigError> {
        for (i, p) in self.routing.peers.iter_mut().enumerate() {
            let Some(path) = p.password_file.as_deref() else {
                continue;
            };
            let at = format!("routing.peers[{i}].password_file");
            if p.password.as_deref().is_some_and(|s| !s.is_empty()) {
                return Err(invalid(at, "password and password_file both set: keep one"));
            }
            p.password = Some(read_password(&at, path)?);
        }
        for (i, p) in self.routing.peers.iter_mut().enumerate() {
            if let Some(path) = p.bfd_key_file.as_deref().filter(|f| !f.is_empty()) {
                let at = format!("routing.peers[{i}].bfd_key_file");
                if !p.bfd_enabled {
                    return Err(invalid(
                        at,
                        "set without bfd_enabled: there is no BFD session to authenticate",
                    ));
                }
                p.bfd_key = Some(read_bfd_key(&at, path)?);
            }
        }
        let mesh = &mut self.routing.node_mesh;
        if let Some(path) = mesh.password_file.as_deref().filter(|p| !p.is_empty()) {
            mesh.password = Some(read_password("routing.node_mesh.password_file", path)?);
        }
        let ospf = &mut self.routing.ospf;
        if let Some(path) = ospf.authentication_key_file.as_deref().filter(|p| !p.is_empty()) {
            let at = "routing.ospf.authentication_key_file";
            let text = std::fs::read_to_string(path).map_err(|e| invalid(at, format!("cannot read {path}: {e}")))?;
            let key = text.strip_suffix('\n').unwrap_or(&text);
            let auth = novanet_ospf_bridge::command::Authentication::new(ospf.authentication_key_id, key).map_err(
                |e| match e.field {
                    "authentication_key_id" => invalid("routing.ospf.authentication_key_id", e.problem),
                    _ => invalid(at, format!("{path}: {}", e.problem)),
                },
            )?;
            ospf.authentication = Some(auth);
        }
        let mesh = &mut self.routing.node_mesh;
        let Some(path) = mesh.bfd_key_file.as_deref().filter(|p| !p.is_empty()) else {
            return Ok(());
        };
        mesh.bfd_key = Some(read_bfd_key("routing.node_mesh.bfd_key_file", path)?);
        Ok(())
    }

    /// Environment overrides, above the file: `NOVANET_NODE_NAME`,
    /// `NOVANET_NODE_IP`, `NOVANET_POD_CIDR`, `NOVANET_LOCAL_AS`,
    /// `NOVANET_ROUTER_ID`, `NOVANET_LISTEN_SOCKET`,
    /// `NOVANET_METRICS_ADDRESS`, `NOVANET_LOG_LEVEL`. A bad value names
    /// the variable.
    pub fn apply_env(&mut self, get: impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        fn parsed<T: std::str::FromStr>(var: &str, v: &str) -> Result<T, ConfigError> {
            v.trim()
                .parse()
                .map_err(|_| invalid(var, format!("{v:?} is not valid here")))
        }
        if let Some(v) = get("NOVANET_NODE_NAME") {
            self.node_name = v;
        }
        if let Some(v) = get("NOVANET_NODE_IP") {
            self.node_ip = Some(parsed("NOVANET_NODE_IP", &v)?);
        }
        if let Some(v) = get("NOVANET_POD_CIDR") {
            self.pod_cidr = Some(parsed("NOVANET_POD_CIDR", &v)?);
        }
        if let Some(v) = get("NOVANET_LOCAL_AS") {
            self.routing.local_as = parsed("NOVANET_LOCAL_AS", &v)?;
        }
        if let Some(v) = get("NOVANET_ROUTER_ID") {
            self.routing.router_id = Checked::read(&v);
        }
        if let Some(v) = get("NOVANET_LISTEN_SOCKET") {
            self.listen_socket = v;
        }
        if let Some(v) = get("NOVANET_METRICS_ADDRESS") {
            self.metrics_address = v;
        }
        if let Some(v) = get("NOVANET_LOG_LEVEL") {
            self.log_level = v;
        }
        Ok(())
    }

    /// Nodes of the static mesh (this one included) that share an AS
    /// number under the current `asn_mode`: each group of colliding names
    /// with the AS. eBGP loop prevention silently drops routes between
    /// them, so this is reported.
    pub fn asn_collisions(&self) -> Vec<(u32, Vec<String>)> {
        let mut by_asn: BTreeMap<u32, Vec<String>> = BTreeMap::new();
        let mut seen_self = false;
        for n in &self.routing.node_mesh.nodes {
            if let Some(a) = node_asn(n.ip, self.routing.asn_mode) {
                seen_self |= Some(n.ip) == self.node_ip;
                by_asn.entry(a).or_default().push(n.name.clone());
            }
        }
        if !seen_self && self.routing.local_as == 0 {
            if let Some(a) = self.node_ip.and_then(|ip| node_asn(ip, self.routing.asn_mode)) {
                by_asn.entry(a).or_default().push(self.node_name.clone());
            }
        }
        by_asn.into_iter().filter(|(_, v)| v.len() > 1).collect()
    }

    /// Whether the agent reads its Kubernetes Node (address, PodCIDRs, AS
    /// annotation): with the Kubernetes node mesh, or with the mesh off
    /// (the OSPF mode, say) when `node_ip` is left to the Node.
    pub fn from_kubernetes(&self) -> bool {
        self.routing.node_mesh.source == MeshSource::Kubernetes
            && (self.routing.node_mesh.enabled || self.node_ip.is_none())
    }

    /// Whether the node mesh comes from the Kubernetes Node watcher.
    pub fn kubernetes_mesh(&self) -> bool {
        self.routing.node_mesh.enabled && self.from_kubernetes()
    }

    fn validate(&self) -> Result<(), ConfigError> {
        match self.problems().into_iter().next() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Every problem of the configuration, each with its key path (empty
    /// when it is valid).
    pub fn problems(&self) -> Vec<ConfigError> {
        let mut errs = Vec::new();
        if self.from_kubernetes() && self.node_name.is_empty() {
            errs.push(if self.routing.node_mesh.enabled {
                invalid(
                    "node_name",
                    "required with routing.node_mesh.source \"kubernetes\": the name of this node's Node (NOVANET_NODE_NAME)",
                )
            } else {
                invalid(
                    "node_ip",
                    "required: the node's address (or node_name / NOVANET_NODE_NAME to take it from this node's Kubernetes Node)",
                )
            });
        } else if !(self.from_kubernetes() && self.node_ip.is_none()) {
            // Unless the Node gives it (checked again once it is known).
            errs.extend(self.validate_node().err());
        }
        self.rest_problems(&mut errs);
        errs
    }

    /// Where the status socket is: `status_socket`, or beside
    /// `listen_socket` with `-status` added to its name
    /// (`/run/novaroute/novaroute-status.sock`).
    pub fn status_socket(&self) -> std::path::PathBuf {
        match &self.status_socket {
            Some(p) => p.into(),
            None => status_socket_beside(Path::new(&self.listen_socket)),
        }
    }

    /// Checks what the node's own address and AS need.
    pub fn validate_node(&self) -> Result<(), ConfigError> {
        if self.node_ip.is_none() {
            return Err(invalid("node_ip", "required: the node's address"));
        }
        self.router_id()?;
        self.local_as()?;
        Ok(())
    }

    fn rest_problems(&self, errs: &mut Vec<ConfigError>) {
        if self.drain_period > 600 {
            errs.push(invalid(
                "drain_period",
                "at most 600 seconds (the shutdown waits for it)",
            ));
        }
        let r = &self.routing;
        if let Some(problem) = r.control_plane_vip.problem() {
            errs.push(invalid("routing.control_plane_vip", problem));
        }
        if !matches!(r.control_plane_vip, Checked::Valid(None)) {
            if r.control_plane_vip_unbind_delay_ms
                .is_some_and(|ms| ms > vip::MAX_UNBIND_DELAY.as_millis() as u64)
            {
                errs.push(invalid(
                    "routing.control_plane_vip_unbind_delay_ms",
                    format!("at most {} ms", vip::MAX_UNBIND_DELAY.as_millis()),
                ));
            }
            if r.control_plane_vip_health_interval == Some(0) {
                errs.push(invalid(
                    "routing.control_plane_vip_health_interval",
                    "must be at least 1 second",
                ));
            }
            errs.extend(
                vip::parse_health_url(
                    r.control_plane_vip_health_url
                        .as_deref()
                        .unwrap_or(vip::DEFAULT_HEALTH_URL),
                )
                .map_err(|m| invalid("routing.control_plane_vip_health_url", m))
                .err(),
            );
        }
        match &r.protocol {
            Checked::Valid(Protocol::Bgp) => {}
            Checked::Valid(Protocol::Ospf) => self.ospf_problems(errs),
            Checked::Invalid { problem, .. } => errs.push(invalid("routing.protocol", problem.clone())),
        }
        if r.node_mesh.bfd_min_ttl == Some(0) {
            errs.push(invalid("routing.node_mesh.bfd_min_ttl", "must be 1 to 255"));
        }
        errs.extend(
            owners::check(&self.owners)
                .into_iter()
                .map(|(path, m)| invalid(path, m)),
        );
        if self.listen_socket.is_empty() || !self.listen_socket.contains('/') {
            errs.push(invalid("listen_socket", "must be a path"));
        }
        for (i, p) in r.peers.iter().enumerate() {
            let at = |k: &str| format!("routing.peers[{i}].{k}");
            if p.remote_as == 0 {
                errs.push(invalid(at("remote_as"), "must be set (non-zero)"));
            }
            if p.hold_time != 0 && p.hold_time < 3 {
                errs.push(invalid(at("hold_time"), "must be 0 or at least 3 seconds"));
            }
            if p.keepalive != 0 && p.hold_time != 0 && p.hold_time < 3 * p.keepalive {
                errs.push(invalid(at("keepalive"), "must be at most a third of hold_time"));
            }
            if p.bfd_min_ttl.is_some() && p.ebgp_multihop == 0 {
                errs.push(invalid(
                    at("bfd_min_ttl"),
                    "applies to a multihop peer (ebgp_multihop): single-hop BFD packets must arrive with TTL 255 anyway",
                ));
            }
            if p.bfd_min_ttl == Some(0) {
                errs.push(invalid(at("bfd_min_ttl"), "must be 1 to 255"));
            }
            for (j, f) in p.address_families.iter().enumerate() {
                if let Some(problem) = f.problem() {
                    errs.push(invalid(format!("routing.peers[{i}].address_families[{j}]"), problem));
                }
            }
            for (k, name) in [("import", &p.import), ("export", &p.export)] {
                if !matches!(name.as_str(), "default" | "all" | "none") && !r.policies.contains_key(name) {
                    errs.push(invalid(
                        at(k),
                        format!("{name:?} is not \"default\", \"all\", \"none\" or a policy under routing.policies"),
                    ));
                }
            }
            if let Some(pw) = &p.password {
                if pw.len() > 80 {
                    errs.push(invalid(at("password"), "TCP MD5 keys are at most 80 bytes"));
                }
            }
            match (&p.neighbor_address, &p.interface) {
                (Some(a), None) => {
                    if r.peers[..i].iter().any(|q| q.neighbor_address == Some(*a)) {
                        errs.push(invalid(at("neighbor_address"), format!("{a} is listed twice")));
                    }
                    if let Some(problem) = p.source_address.and_then(|s| source_family_problem(*a, s)) {
                        errs.push(invalid(at("source_address"), problem));
                    }
                }
                (None, Some(name)) => {
                    if let Err(e) = novanet_ospf_bridge::validate::interface(name) {
                        errs.push(invalid(at("interface"), e.problem));
                    }
                    if r.peers[..i].iter().any(|q| q.interface.as_ref() == Some(name)) {
                        errs.push(invalid(at("interface"), format!("{name:?} is listed twice")));
                    }
                    if p.bfd_enabled {
                        errs.push(invalid(
                            at("bfd_enabled"),
                            "BFD is not run for peers by interface (unnumbered); BGP's hold timer watches them",
                        ));
                    }
                    if p.source_address.is_some() || p.ebgp_multihop != 0 {
                        errs.push(invalid(
                            at("interface"),
                            "a peer by interface is one hop away at its link-local address: source_address and ebgp_multihop do not apply",
                        ));
                    }
                }
                (Some(_), Some(_)) => errs.push(invalid(
                    at("interface"),
                    "give neighbor_address or interface (an unnumbered peer), not both",
                )),
                (None, None) => errs.push(invalid(
                    at("neighbor_address"),
                    "required (or interface, for an unnumbered peer on that link)",
                )),
            }
        }
    }

    /// Whether the agent turns the kernel's `nexthop_compat_mode` off: its
    /// routes go through nexthop groups and the configuration does not keep
    /// the setting; never in the OSPF mode, where the sidecar's zebra
    /// writes the routes that matter.
    pub fn turns_nexthop_compat_off(&self) -> bool {
        let fib = &self.routing.fib;
        fib.enabled && fib.nexthop_objects && !fib.keep_nexthop_compat_mode && !self.ospf_mode()
    }

    /// Whether the node routes with OSPF (`routing.protocol: ospf`).
    pub fn ospf_mode(&self) -> bool {
        self.routing.protocol == Checked::Valid(Protocol::Ospf)
    }

    /// Whether OSPFv3 runs beside OSPFv2 (`routing.ospf.ipv6`, by default
    /// when the node has an IPv6 PodCIDR).
    pub fn ospf_ipv6(&self) -> bool {
        self.routing
            .ospf
            .ipv6
            .unwrap_or_else(|| self.pod_cidrs().iter().any(|c| matches!(c, IpNet::V6(_))))
    }

    /// What the OSPF mode needs: a sidecar to drive, no BGP ToRs or mesh
    /// (the fabric is reached through OSPF), valid OSPF settings.
    fn ospf_problems(&self, errs: &mut Vec<ConfigError>) {
        let r = &self.routing;
        let o = &r.ospf;
        if r.frr_socket_dir.as_deref().is_none_or(|d| !d.starts_with('/')) {
            errs.push(invalid(
                "routing.frr_socket_dir",
                "required with routing.protocol \"ospf\": the absolute path of the ospfd sidecar's vty sockets (/run/frr)",
            ));
        }
        if !r.peers.is_empty() {
            errs.push(invalid(
                "routing.peers",
                "must be empty with routing.protocol \"ospf\": the ToRs are reached through OSPF (BGP peers may still be set through the RouteControl API)",
            ));
        }
        if r.node_mesh.enabled {
            errs.push(invalid(
                "routing.node_mesh.enabled",
                "must be false with routing.protocol \"ospf\": PodCIDRs travel through OSPF, not a BGP mesh",
            ));
        }
        // A bad area is reported once, not again for each interface that
        // takes it as its default.
        let default_area = match novanet_ospf_bridge::validate::area(&o.area) {
            Ok(_) => o.area.as_str(),
            Err(e) => {
                errs.push(invalid("routing.ospf.area", e.problem));
                "0"
            }
        };
        if let Err(e) = novanet_ospf_bridge::validate::interface(&o.injection_interface) {
            errs.push(invalid("routing.ospf.injection_interface", e.problem));
        }
        for (i, iface) in o.interfaces.iter().enumerate() {
            let request = iface.request(default_area);
            if let Err(e) = novanet_ospf_bridge::command::Interface::new(&request) {
                errs.push(invalid(format!("routing.ospf.interfaces[{i}].{}", e.field), e.problem));
            }
            if iface.interface_name == o.injection_interface {
                errs.push(invalid(
                    format!("routing.ospf.interfaces[{i}].interface_name"),
                    "is routing.ospf.injection_interface, which the agent manages itself",
                ));
            }
            if o.interfaces[..i]
                .iter()
                .any(|j| j.interface_name == iface.interface_name)
            {
                errs.push(invalid(
                    format!("routing.ospf.interfaces[{i}].interface_name"),
                    format!("{:?} is listed twice", iface.interface_name),
                ));
            }
        }
    }

    /// The router id: `routing.router_id`, else the node's IPv4 address.
    pub fn router_id(&self) -> Result<Ipv4Addr, ConfigError> {
        match &self.routing.router_id {
            Checked::Invalid { problem, .. } => Err(invalid("routing.router_id", problem.clone())),
            Checked::Valid(Some(id)) => Ok(*id),
            Checked::Valid(None) => match self.node_ip {
                Some(IpAddr::V4(a)) => Ok(a),
                _ => Err(invalid("routing.router_id", "required when node_ip is not IPv4")),
            },
        }
    }

    /// The local AS: `routing.local_as`, else the per-node rule.
    pub fn local_as(&self) -> Result<u32, ConfigError> {
        if self.routing.local_as != 0 {
            return Ok(self.routing.local_as);
        }
        match self.node_ip {
            Some(ip) => node_asn(ip, self.routing.asn_mode)
                .ok_or_else(|| invalid("routing.local_as", "required when node_ip is not IPv4")),
            None => Err(invalid("node_ip", "required")),
        }
    }

    /// Every PodCIDR of the node.
    pub fn pod_cidrs(&self) -> Vec<IpNet> {
        let mut v: Vec<IpNet> = self.pod_cidr.into_iter().collect();
        for p in &self.pod_cidrs {
            if !v.contains(p) {
                v.push(*p);
            }
        }
        v
    }
}

/// The per-node AS number of a node address.
pub fn node_asn(ip: IpAddr, mode: AsnMode) -> Option<u32> {
    let IpAddr::V4(a) = ip else { return None };
    let o = a.octets();
    Some(match mode {
        AsnMode::LastOctet => 65000 + o[3] as u32,
        AsnMode::LastTwoOctets => 64512 + 256 * o[2] as u32 + o[3] as u32,
        AsnMode::Private4Byte => 4_200_000_000 + ((o[1] as u32) << 16 | (o[2] as u32) << 8 | o[3] as u32),
    })
}

/// Parses an address family name of the config and the API.
pub fn parse_family(s: &str) -> Option<novanet_bgp::wire::Family> {
    use novanet_bgp::wire::Family;
    match s.to_ascii_lowercase().replace('_', "-").as_str() {
        "ipv4-unicast" | "ipv4" => Some(Family::IPV4_UNICAST),
        "ipv6-unicast" | "ipv6" => Some(Family::IPV6_UNICAST),
        _ => None,
    }
}

/// Why `source` cannot be the source of a session with `neighbor`: the
/// session runs over the neighbor's family, and the other family's next
/// hop comes from the interface, not from the source address.
pub fn source_family_problem(neighbor: IpAddr, source: IpAddr) -> Option<String> {
    let family = |a: IpAddr| if a.is_ipv4() { "IPv4" } else { "IPv6" };
    (neighbor.is_ipv4() != source.is_ipv4()).then(|| {
        format!(
            "{source} is {} but the neighbor {neighbor} is {}: the session runs over the neighbor's family (routes of the other family take the next hop of the session's interface)",
            family(source),
            family(neighbor)
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> &'static str {
        r#"{"node_name": "n1", "node_ip": "10.0.1.10", "pod_cidr": "10.244.1.0/24"}"#
    }

    #[test]
    fn a_bfd_ttl_floor_is_for_multihop_sessions() {
        let cfg = Config::read_with_env(
            r#"{"node_ip": "10.0.0.10", "routing": {"peers": [{"neighbor_address": "10.0.0.1", "remote_as": 65000, "bfd_min_ttl": 254}],
                "node_mesh": {"bfd_min_ttl": 0}}}"#,
        )
        .unwrap();
        let e: Vec<String> = cfg.problems().iter().map(|e| e.to_string()).collect();
        assert!(
            e.iter()
                .any(|m| m.starts_with("routing.peers[0].bfd_min_ttl") && m.contains("multihop")),
            "{e:?}"
        );
        assert!(
            e.iter().any(|m| m.starts_with("routing.node_mesh.bfd_min_ttl")),
            "{e:?}"
        );
        let ok = Config::parse(
            r#"{"node_ip": "10.0.0.10", "routing": {"peers": [{"neighbor_address": "10.9.0.1", "remote_as": 65000, "ebgp_multihop": 3, "bfd_min_ttl": 253}]}}"#,
        )
        .unwrap();
        assert!(ok.problems().is_empty());
    }

    #[test]
    fn a_mistyped_community_in_a_policy_is_a_configuration_error() {
        let text = r#"{"node_name": "n1", "node_ip": "10.0.1.10", "routing": {"policies": {"in": {"rules": [
            {"community": "65000:666", "action": "reject"},
            {"action": "accept", "set": {"add_communities": ["65000:1", "no_exprot"]}}]}}}}"#;
        let e = Config::parse(text).unwrap_err().to_string();
        assert!(e.contains("routing.policies.in.rules[1].set.add_communities"), "{e}");
        assert!(e.contains("\"no_exprot\" is not a community"), "{e}");
    }

    #[test]
    fn a_peer_s_bfd_key_is_read_from_its_file_and_needs_bfd() {
        let dir = std::env::temp_dir().join(format!("novanet-peer-key-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let key = dir.join("tor-a");
        std::fs::write(&key, "tor-a-bfd-key\n").unwrap();
        let peer = |bfd: bool| {
            Config::parse(&format!(
                r#"{{"node_name": "n1", "node_ip": "10.0.1.10", "routing": {{"peers": [{{"neighbor_address": "10.0.1.1",
                    "remote_as": 65001, "bfd_enabled": {bfd}, "bfd_key_file": "{}", "bfd_key_id": 7}}]}}}}"#,
                key.display()
            ))
        };
        let c = peer(true).unwrap();
        assert_eq!(c.routing.peers[0].bfd_key.as_deref(), Some(&b"tor-a-bfd-key"[..]));
        assert_eq!(c.routing.peers[0].bfd_key_id, 7);
        let e = peer(false).unwrap_err().to_string();
        assert!(
            e.contains("routing.peers[0].bfd_key_file") && e.contains("bfd_enabled"),
            "{e}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_mesh_bfd_key_is_read_from_its_file_and_checked() {
        let dir = std::env::temp_dir().join(format!("novanet-key-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let with = |name: &str, content: &[u8]| {
            let path = dir.join(name);
            std::fs::write(&path, content).unwrap();
            let text = format!(
                r#"{{"node_name": "n1", "node_ip": "10.0.1.10", "routing": {{"node_mesh": {{"bfd_key_file": "{}"}}}}}}"#,
                path.display()
            );
            Config::parse(&text)
        };
        let c = with("good", b"s3cret-mesh-key\n").unwrap();
        assert_eq!(c.routing.node_mesh.bfd_key.as_deref(), Some(&b"s3cret-mesh-key"[..]));
        let e = with("long", &[b'k'; 21]).unwrap_err().to_string();
        assert!(
            e.contains("routing.node_mesh.bfd_key_file") && e.contains("21 bytes"),
            "{e}"
        );
        let e = with("empty", b"\n").unwrap_err().to_string();
        assert!(e.contains("0 bytes"), "{e}");
        let missing = dir.join("missing");
        let text = format!(
            r#"{{"node_name": "n1", "node_ip": "10.0.1.10", "routing": {{"node_mesh": {{"bfd_key_file": "{}"}}}}}}"#,
            missing.display()
        );
        let e = Config::parse(&text).unwrap_err().to_string();
        assert!(e.contains("cannot read") && e.contains("missing"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn defaults_and_per_node_asn() {
        let c = Config::parse(base()).unwrap();
        assert_eq!(c.local_as().unwrap(), 65010);
        assert_eq!(c.router_id().unwrap(), "10.0.1.10".parse::<Ipv4Addr>().unwrap());
        assert_eq!(c.metrics_address, ":9102");
        assert_eq!(c.listen_socket, "/run/novaroute/novaroute.sock");
        assert!(c.routing.fib.enabled && c.routing.bfd.enabled);
        assert_eq!(
            node_asn("10.0.2.11".parse().unwrap(), AsnMode::LastTwoOctets),
            Some(64512 + 2 * 256 + 11)
        );
        assert_eq!(
            node_asn("10.1.2.11".parse().unwrap(), AsnMode::Private4Byte),
            Some(4_200_000_000 + 0x01020b)
        );
    }

    #[test]
    fn unknown_keys_name_their_path() {
        let e = Config::parse(r#"{"node_ip": "10.0.0.1", "routing": {"peers": [{"neighbor_address": "10.0.0.2", "remote_as": 1, "bogus": 1}]}}"#)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("routing.peers[0]"), "{e}");
        assert!(e.contains("bogus"), "{e}");
        let e = Config::parse(
            r#"{"node_ip": "10.0.0.1", "routing": {"peers": [{"neighbor_address": "x", "remote_as": 1}]}}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(e.starts_with("routing.peers[0].neighbor_address"), "{e}");
        let e = Config::parse(
            r#"{"node_ip": "10.0.0.1", "routing": {"peers": [{"neighbor_address": "10.0.0.2", "remote_as": 0}]}}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(e.starts_with("routing.peers[0].remote_as"), "{e}");
        let e = Config::parse(
            r#"{"node_ip": "10.0.0.1", "owners": {"x": {"token": "", "allowed_prefixes": {"type": "any"}}}}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(e.starts_with("owners.x.token"), "{e}");
    }

    #[test]
    fn environment_overrides() {
        let mut c = Config::parse(base()).unwrap();
        let env = |k: &str| match k {
            "NOVANET_LOCAL_AS" => Some("4200000001".to_string()),
            "NOVANET_NODE_IP" => Some("10.9.9.9".to_string()),
            _ => None,
        };
        c.apply_env(env).unwrap();
        assert_eq!(c.local_as().unwrap(), 4_200_000_001);
        assert_eq!(c.router_id().unwrap(), "10.9.9.9".parse::<Ipv4Addr>().unwrap());
        let e = c
            .apply_env(|k| (k == "NOVANET_LOCAL_AS").then(|| "many".to_string()))
            .unwrap_err();
        assert!(e.to_string().starts_with("NOVANET_LOCAL_AS"), "{e}");
    }

    #[test]
    fn asn_collisions_are_found() {
        let text = r#"{"node_name": "a", "node_ip": "10.0.1.10", "routing": {"node_mesh": {"enabled": true, "source": "static", "nodes": [
            {"name": "a", "ip": "10.0.1.10"}, {"name": "b", "ip": "10.0.2.10"}, {"name": "c", "ip": "10.0.2.11"}]}}}"#;
        let c = Config::parse(text).unwrap();
        assert_eq!(
            c.asn_collisions(),
            vec![(65010, vec!["a".to_string(), "b".to_string()])]
        );
        let mut c2 = c.clone();
        c2.routing.asn_mode = AsnMode::Private4Byte;
        assert!(c2.asn_collisions().is_empty(), "collision-free mode");
    }

    #[test]
    fn the_kubernetes_node_fills_what_the_file_leaves_out() {
        let mesh = r#"{"node_name": "n1", "routing": {"node_mesh": {"enabled": true, "source": "kubernetes"}}}"#;
        let c = Config::parse(mesh).expect("node_ip and pod_cidr may come from the Node");
        assert!(c.from_kubernetes() && c.kubernetes_mesh());
        let err =
            Config::parse(r#"{"routing": {"node_mesh": {"enabled": true, "source": "kubernetes"}}}"#).unwrap_err();
        assert!(err.to_string().contains("node_name"), "{err}");
        // Mesh off (the OSPF mode): the Node still gives the address.
        let c = Config::parse(r#"{"node_name": "n1"}"#).unwrap();
        assert!(c.from_kubernetes() && !c.kubernetes_mesh());
        // Without a node name, nothing says where the address would come from.
        let err = Config::parse("{}").unwrap_err();
        assert!(err.to_string().contains("node_ip"), "{err}");
        // A node with its address configured and no mesh never asks Kubernetes.
        let c = Config::parse(r#"{"node_name": "n1", "node_ip": "10.0.0.10"}"#).unwrap();
        assert!(!c.from_kubernetes());
        let c = Config::parse(
            r#"{"node_name": "n1", "node_ip": "10.0.0.10", "routing": {"node_mesh": {"enabled": true, "source": "static"}}}"#,
        )
        .unwrap();
        assert!(!c.from_kubernetes());
    }

    #[test]
    fn every_problem_is_reported_with_its_key_path() {
        let cfg = Config::read_with_env(
            r#"{"node_name": "a", "node_ip": "10.0.0.10", "routing": {"protocol": "isis", "peers": [
                {"neighbor_address": "10.0.0.1", "remote_as": 0},
                {"neighbor_address": "10.0.0.2", "remote_as": 65000, "hold_time": 2, "import": "nope"}
            ]}}"#,
        )
        .unwrap();
        let paths: Vec<String> = cfg
            .problems()
            .iter()
            .map(|e| match e {
                ConfigError::Invalid { path, .. } => path.clone(),
                other => other.to_string(),
            })
            .collect();
        assert_eq!(
            paths,
            [
                "routing.protocol",
                "routing.peers[0].remote_as",
                "routing.peers[1].hold_time",
                "routing.peers[1].import"
            ]
        );
    }

    #[test]
    fn a_peer_is_given_by_address_or_by_interface() {
        let cfg = Config::read_with_env(
            r#"{"node_name": "a", "node_ip": "10.0.0.10", "routing": {"peers": [
                {"interface": "eth1", "remote_as": 65000},
                {"remote_as": 65000},
                {"neighbor_address": "10.0.0.1", "interface": "eth2", "remote_as": 65000},
                {"interface": "eth1", "remote_as": 65001},
                {"interface": "bad name", "remote_as": 65000},
                {"interface": "eth3", "remote_as": 65000, "bfd_enabled": true},
                {"interface": "eth4", "remote_as": 65000, "ebgp_multihop": 2}
            ]}}"#,
        )
        .unwrap();
        let problems: Vec<String> = cfg.problems().iter().map(|e| e.to_string()).collect();
        let at = |i: usize, key: &str| {
            problems
                .iter()
                .find(|p| p.starts_with(&format!("routing.peers[{i}].{key}")))
                .unwrap_or_else(|| panic!("no problem at peers[{i}].{key}: {problems:?}"))
                .clone()
        };
        assert_eq!(problems.len(), 6, "{problems:?}");
        assert!(at(1, "neighbor_address").contains("or interface"));
        assert!(at(2, "interface").contains("not both"));
        assert!(at(3, "interface").contains("listed twice"));
        at(4, "interface");
        assert!(at(5, "bfd_enabled").contains("unnumbered"));
        assert!(at(6, "interface").contains("ebgp_multihop"));
    }

    #[test]
    fn the_ospf_mode_names_every_problem_of_its_settings() {
        let problems = |text: &str| -> Vec<String> {
            Config::read_with_env(text)
                .unwrap()
                .problems()
                .iter()
                .map(|e| match e {
                    ConfigError::Invalid { path, .. } => path.clone(),
                    other => other.to_string(),
                })
                .collect()
        };
        let ok = r#"{"node_name": "a", "node_ip": "10.0.0.10", "pod_cidr": "10.244.1.0/24", "routing": {
            "protocol": "ospf", "frr_socket_dir": "/run/frr",
            "ospf": {"interfaces": [{"interface_name": "eth0", "hello_interval": 1, "dead_interval": 3}]}}}"#;
        assert_eq!(problems(ok), Vec::<String>::new());
        let cfg = Config::parse(ok).unwrap();
        assert!(cfg.ospf_mode() && !cfg.ospf_ipv6(), "OSPFv3 follows an IPv6 PodCIDR");
        let bad = r#"{"node_name": "a", "node_ip": "10.0.0.10", "routing": {
            "protocol": "ospf", "frr_socket_dir": "run/frr",
            "peers": [{"neighbor_address": "10.0.0.1", "remote_as": 65000}],
            "node_mesh": {"enabled": true, "source": "static"},
            "ospf": {"area": "backbone", "injection_interface": "inject\nrouter bgp 1", "interfaces": [
                {"interface_name": "eth0\nrouter bgp 1"},
                {"interface_name": "eth1", "area_id": "0.0.0"},
                {"interface_name": "eth2", "cost": 70000},
                {"interface_name": "eth3", "hello_interval": 10, "dead_interval": 5},
                {"interface_name": "eth4"},
                {"interface_name": "eth4"}]}}}"#;
        assert_eq!(
            problems(bad),
            [
                "routing.frr_socket_dir",
                "routing.peers",
                "routing.node_mesh.enabled",
                "routing.ospf.area",
                "routing.ospf.injection_interface",
                "routing.ospf.interfaces[0].interface_name",
                "routing.ospf.interfaces[1].area_id",
                "routing.ospf.interfaces[2].cost",
                "routing.ospf.interfaces[3].dead_interval",
                "routing.ospf.interfaces[5].interface_name",
            ]
        );
    }

    #[test]
    fn a_source_address_of_the_other_family_is_refused_with_the_reason() {
        let v4: IpAddr = "10.0.0.1".parse().unwrap();
        let v6: IpAddr = "fd00::10".parse().unwrap();
        assert_eq!(source_family_problem(v4, "10.0.0.10".parse().unwrap()), None);
        let problem = source_family_problem(v4, v6).unwrap();
        assert!(
            problem.starts_with("fd00::10 is IPv6 but the neighbor 10.0.0.1 is IPv4"),
            "{problem}"
        );
        assert!(source_family_problem(v6, v4).is_some());
    }
}
