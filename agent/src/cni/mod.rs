//! The agent's side of `novanet-cni`: the socket plugins talk to
//! (`cni.socket`, 0600, one JSON request and answer per connection, see
//! `novanet_proto::cni`), pod addresses ([`ipam`]), and the node settings
//! pods need (forwarding on). The plugin does the interfaces; the agent
//! decides the addresses and keeps the endpoints.

pub mod ipam;

use crate::config::Config;
use ipam::{Assignment, Ipam};
use novanet_proto::cni::{Addresses, Request, Response, NO_ADDRESS_LEFT};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

/// The longest request line taken (a GC of thousands of attachments fits).
const MAX_REQUEST: usize = 4 << 20;

/// What a CNI request is answered from.
pub struct CniBackend {
    ipam: Ipam,
    node_ip: Option<IpAddr>,
    /// Identity policy, when `datapath.enabled`.
    enforcer: Option<Arc<crate::policy::enforcer::Enforcer>>,
}

impl CniBackend {
    pub fn new(cfg: &Config, enforcer: Option<Arc<crate::policy::enforcer::Enforcer>>) -> anyhow::Result<CniBackend> {
        let cidrs = cfg.pod_cidrs();
        if cidrs.is_empty() {
            anyhow::bail!("cni.enabled needs the node's PodCIDR (pod_cidr, or the Node's spec.podCIDR)");
        }
        let ipam =
            Ipam::open(Path::new(&cfg.cni.ipam_dir), &cidrs).map_err(|e| anyhow::anyhow!("cni.ipam_dir: {e}"))?;
        let backend = CniBackend {
            ipam,
            node_ip: cfg.node_ip,
            enforcer,
        };
        backend.reattach();
        Ok(backend)
    }

    /// After a restart: the programs on every pod's host end that exists
    /// (pinned links from before are replaced by this run's programs).
    fn reattach(&self) {
        let Some(e) = &self.enforcer else { return };
        let mut pods: std::collections::BTreeMap<String, Vec<IpAddr>> = Default::default();
        let mut named: std::collections::BTreeMap<(String, String), Vec<IpAddr>> = Default::default();
        for (ip, a) in self.ipam.assignments().unwrap_or_default() {
            pods.entry(a.host_interface).or_default().push(ip);
            named.entry((a.pod.namespace, a.pod.name)).or_default().push(ip);
        }
        for ((namespace, name), ips) in named {
            e.local_pod(&namespace, &name, Some(ips));
        }
        e.prune_sources();
        for (iface, sources) in pods {
            if iface.is_empty() || !Path::new("/sys/class/net").join(&iface).exists() {
                continue;
            }
            if let Err(err) = e.attach(&iface, &sources) {
                tracing::error!(interface = %iface, error = %err, "policy programs not attached to an existing pod");
            }
        }
    }

    pub fn ipam(&self) -> &Ipam {
        &self.ipam
    }

    /// Answers one request (blocking: the address store is on disk).
    pub fn answer(&self, req: Request) -> Response {
        let failed = |e: ipam::IpamError| {
            let code = match e {
                ipam::IpamError::Exhausted(_) => NO_ADDRESS_LEFT,
                ipam::IpamError::Store { .. } => 5,
            };
            Response::Error {
                code,
                msg: e.to_string(),
            }
        };
        match req {
            Request::Add {
                attachment,
                host_interface,
                pod,
                ..
            } => {
                let a = Assignment {
                    attachment,
                    pod,
                    host_interface,
                };
                match self.ipam.assign(&a) {
                    Ok(ips) => {
                        tracing::info!(
                            container = %a.attachment.container_id, pod = %format!("{}/{}", a.pod.namespace, a.pod.name),
                            ips = ?ips, "pod addresses assigned"
                        );
                        // The pod's identity before the kubelet reports
                        // its address: never open where policy isolates.
                        if let Some(e) = &self.enforcer {
                            e.local_pod(&a.pod.namespace, &a.pod.name, Some(ips.clone()));
                        }
                        Response::Addresses(Addresses {
                            ips,
                            mtu: uplink_mtu(self.node_ip),
                        })
                    }
                    Err(e) => failed(e),
                }
            }
            Request::Check { attachment } => match self.ipam.held(&attachment) {
                Ok(ips) if ips.len() == self.ipam.cidrs().len() => Response::Addresses(Addresses {
                    ips,
                    mtu: uplink_mtu(self.node_ip),
                }),
                Ok(ips) => Response::Error {
                    code: 3,
                    msg: format!(
                        "container {} interface {} holds {} of its {} addresses",
                        attachment.container_id,
                        attachment.ifname,
                        ips.len(),
                        self.ipam.cidrs().len()
                    ),
                },
                Err(e) => failed(e),
            },
            Request::Attached {
                attachment,
                host_interface,
            } => match &self.enforcer {
                None => Response::Done,
                Some(e) => match self
                    .ipam
                    .held(&attachment)
                    .map_err(|err| err.to_string())
                    .and_then(|sources| e.attach(&host_interface, &sources))
                {
                    Ok(()) => Response::Done,
                    Err(err) => Response::Error {
                        code: novanet_proto::cni::POLICY_NOT_ATTACHED,
                        msg: format!(
                            "policy programs not attached to {host_interface} (container {}): {err}",
                            attachment.container_id
                        ),
                    },
                },
            },
            Request::Del { attachment } => match self.ipam.release(&attachment) {
                Ok(released) => {
                    if let Some((_, a)) = released.first() {
                        let ips: Vec<IpAddr> = released.iter().map(|(ip, _)| *ip).collect();
                        tracing::info!(container = %attachment.container_id, ips = ?ips, "pod addresses released");
                        if let Some(e) = &self.enforcer {
                            e.detach(&a.host_interface);
                            e.local_pod(&a.pod.namespace, &a.pod.name, None);
                        }
                    }
                    Response::Done
                }
                Err(e) => failed(e),
            },
            Request::Gc { valid } => match self.ipam.retain(&valid) {
                Ok(released) => {
                    if let Some(e) = &self.enforcer {
                        for r in &released {
                            e.detach(&r.host_interface);
                            e.local_pod(&r.pod.namespace, &r.pod.name, None);
                        }
                    }
                    if !released.is_empty() {
                        tracing::info!(released = released.len(), "stale pod attachments released");
                    }
                    Response::Released(released.into_iter().map(|r| r.attachment).collect())
                }
                Err(e) => failed(e),
            },
            Request::Status => Response::Done,
        }
    }
}

/// Turns packet forwarding on, for the families of the PodCIDRs: pods are
/// routed through the node.
pub fn enable_forwarding(cfg: &Config) {
    let mut files = vec![];
    if cfg.pod_cidrs().iter().any(|c| c.addr().is_ipv4()) {
        files.push("/proc/sys/net/ipv4/ip_forward");
    }
    if cfg.pod_cidrs().iter().any(|c| c.addr().is_ipv6()) {
        files.push("/proc/sys/net/ipv6/conf/all/forwarding");
    }
    for f in files {
        if let Err(e) = std::fs::write(f, "1") {
            tracing::warn!(file = f, error = %e, "cannot turn forwarding on: pods will not reach other nodes");
        }
    }
}

/// The MTU of the interface holding the node's address (1500 when it
/// cannot be told).
pub fn uplink_mtu(node_ip: Option<IpAddr>) -> u32 {
    let Some(ip) = node_ip else { return 1500 };
    interface_of(ip)
        .and_then(|name| std::fs::read_to_string(format!("/sys/class/net/{name}/mtu")).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(1500)
}

/// The interface an address is configured on.
fn interface_of(ip: IpAddr) -> Option<String> {
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills a list we free below; we only read it.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return None;
    }
    let mut found = None;
    let mut cur = head;
    while !cur.is_null() {
        // SAFETY: `cur` is a node of the list getifaddrs returned.
        let ifa = unsafe { &*cur };
        if !ifa.ifa_addr.is_null() {
            // SAFETY: ifa_addr points at a sockaddr of the family it names.
            let addr = unsafe {
                match (*ifa.ifa_addr).sa_family as i32 {
                    libc::AF_INET => {
                        let sin = &*(ifa.ifa_addr as *const libc::sockaddr_in);
                        Some(IpAddr::V4(u32::from_be(sin.sin_addr.s_addr).into()))
                    }
                    libc::AF_INET6 => {
                        let sin6 = &*(ifa.ifa_addr as *const libc::sockaddr_in6);
                        Some(IpAddr::V6(sin6.sin6_addr.s6_addr.into()))
                    }
                    _ => None,
                }
            };
            if addr == Some(ip) {
                // SAFETY: ifa_name is a NUL-terminated name.
                found = Some(
                    unsafe { std::ffi::CStr::from_ptr(ifa.ifa_name) }
                        .to_string_lossy()
                        .into_owned(),
                );
                break;
            }
        }
        cur = ifa.ifa_next;
    }
    // SAFETY: freeing the list getifaddrs gave us.
    unsafe { libc::freeifaddrs(head) };
    found
}

/// Serves plugins on `path` until `shutdown` resolves.
pub async fn serve(
    backend: Arc<CniBackend>,
    path: PathBuf,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty() && !d.exists()) {
        std::fs::create_dir_all(dir).map_err(|e| anyhow::anyhow!("cni.socket directory {}: {e}", dir.display()))?;
    }
    if path.exists() {
        std::fs::remove_file(&path).map_err(|e| anyhow::anyhow!("stale cni.socket {}: {e}", path.display()))?;
    }
    let listener =
        crate::api::host::bind_private(&path).map_err(|e| anyhow::anyhow!("cni.socket {}: {e}", path.display()))?;
    tracing::info!(socket = %path.display(), cidrs = ?backend.ipam().cidrs(), "CNI backend listening");
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let backend = backend.clone();
                    tokio::spawn(async move {
                        if let Err(e) = one_request(&backend, stream).await {
                            tracing::debug!(error = %e, "CNI request");
                        }
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accepting a CNI connection failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            },
        }
    }
    let _ = std::fs::remove_file(&path);
    Ok(())
}

async fn one_request(backend: &Arc<CniBackend>, stream: tokio::net::UnixStream) -> std::io::Result<()> {
    let (rd, mut wr) = stream.into_split();
    let mut line = String::new();
    let mut reader = BufReader::new(rd).take(MAX_REQUEST as u64);
    reader.read_line(&mut line).await?;
    let response = match serde_json::from_str::<Request>(&line) {
        Ok(req) => {
            let backend = backend.clone();
            tokio::task::spawn_blocking(move || backend.answer(req))
                .await
                .unwrap_or_else(|e| Response::Error {
                    code: 5,
                    msg: format!("internal error: {e}"),
                })
        }
        Err(e) => Response::Error {
            code: 6,
            msg: format!("the agent cannot read the plugin's request: {e}"),
        },
    };
    let mut out = serde_json::to_vec(&response).expect("a response serialises");
    out.push(b'\n');
    wr.write_all(&out).await?;
    wr.shutdown().await
}
