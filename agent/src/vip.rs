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

use ipnet::IpNet;
use netlink_packet_core::{NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE, NLM_F_REQUEST};
use netlink_packet_route::address::{AddressAttribute, AddressMessage, AddressScope};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};
use novanet_bgp::speaker::Speaker;
use novanet_bgp::wire::{Origin, PathAttributes};
use std::io;
use std::net::IpAddr;
use std::time::Duration;

/// The health check's default target.
pub const DEFAULT_HEALTH_URL: &str = "https://127.0.0.1:6443/livez";
/// The default time between checks.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(5);

/// The VIP as a host prefix: an address, or an address with /32 (/128).
pub fn parse_vip(text: &str) -> Result<IpNet, String> {
    let net: IpNet = match text.parse::<IpAddr>() {
        Ok(ip) => IpNet::from(ip),
        Err(_) => text
            .parse()
            .map_err(|_| format!("{text:?} is not an IP address or a /32 or /128 prefix"))?,
    };
    if net.prefix_len() != net.max_prefix_len() {
        return Err(format!("{text:?}: a VIP is one address (/32 or /128)"));
    }
    if net.addr().is_unspecified() || net.addr().is_loopback() || net.addr().is_multicast() {
        return Err(format!("{text:?} cannot be a VIP (unspecified, loopback or multicast)"));
    }
    Ok(net)
}

/// The health URL, split into the base the client connects to and the
/// path it asks.
pub fn parse_health_url(text: &str) -> Result<(String, String), String> {
    let uri: tonic::codegen::http::Uri = text.parse().map_err(|e| format!("{text:?}: {e}"))?;
    match uri.scheme_str() {
        Some("http") | Some("https") => {}
        _ => return Err(format!("{text:?}: must be an http:// or https:// URL")),
    }
    let authority = uri.authority().ok_or_else(|| format!("{text:?}: no host"))?;
    let base = format!("{}://{}", uri.scheme_str().unwrap_or("https"), authority);
    let path = uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/".into());
    Ok((base, path))
}

/// Adds or removes an address on `lo` (RTM_NEWADDR / RTM_DELADDR).
fn loopback_address(vip: IpNet, add: bool) -> io::Result<()> {
    // SAFETY: if_nametoindex reads a NUL-terminated name.
    let index = unsafe { libc::if_nametoindex(c"lo".as_ptr()) };
    if index == 0 {
        return Err(io::Error::last_os_error());
    }
    let mut m = AddressMessage::default();
    m.header.family = match vip {
        IpNet::V4(_) => AddressFamily::Inet,
        IpNet::V6(_) => AddressFamily::Inet6,
    };
    m.header.prefix_len = vip.prefix_len();
    m.header.scope = AddressScope::Universe;
    m.header.index = index;
    m.attributes.push(AddressAttribute::Local(vip.addr()));
    m.attributes.push(AddressAttribute::Address(vip.addr()));
    let (msg, flags) = if add {
        (
            RouteNetlinkMessage::NewAddress(m),
            NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE,
        )
    } else {
        (RouteNetlinkMessage::DelAddress(m), NLM_F_REQUEST | NLM_F_ACK)
    };
    let mut header = NetlinkHeader::default();
    header.flags = flags;
    header.sequence_number = 1;
    let mut nl = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(msg));
    nl.finalize();
    let mut buf = vec![0; nl.buffer_len()];
    nl.serialize(&mut buf);
    let mut socket = Socket::new(NETLINK_ROUTE)?;
    socket.bind_auto()?;
    socket.connect(&SocketAddr::new(0, 0))?;
    socket.send(&buf, 0)?;
    let mut rx = vec![0u8; 8192];
    let n = socket.recv(&mut &mut rx[..], 0)?;
    let reply = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&rx[..n])
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
    match reply.payload {
        NetlinkPayload::Error(e) => match e.code {
            None => Ok(()),
            // Already there (add) or already gone (remove): the wanted state.
            Some(c) if (add && c.get() == -libc::EEXIST) || (!add && c.get() == -libc::EADDRNOTAVAIL) => Ok(()),
            Some(c) => Err(io::Error::from_raw_os_error(-c.get())),
        },
        _ => Ok(()),
    }
}

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

/// Binds and advertises (or withdraws and unbinds) the VIP; true when it
/// is up afterwards.
async fn set(speaker: &Speaker, vip: IpNet, up: bool) -> bool {
    if up {
        if let Err(e) = tokio::task::spawn_blocking(move || loopback_address(vip, true))
            .await
            .expect("netlink task")
        {
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
        if let Err(e) = tokio::task::spawn_blocking(move || loopback_address(vip, false))
            .await
            .expect("netlink task")
        {
            tracing::error!(%vip, error = %e, "cannot unbind the control-plane VIP from lo");
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_vip_is_one_unicast_address() {
        assert_eq!(
            parse_vip("10.0.0.250").unwrap(),
            "10.0.0.250/32".parse::<IpNet>().unwrap()
        );
        assert_eq!(
            parse_vip("fd00::250/128").unwrap(),
            "fd00::250/128".parse::<IpNet>().unwrap()
        );
        assert!(parse_vip("10.0.0.0/24").unwrap_err().contains("one address"));
        assert!(parse_vip("127.0.0.1").is_err());
        assert!(parse_vip("vip").unwrap_err().contains("not an IP address"));
    }

    #[test]
    fn the_health_url_is_http_or_https() {
        assert_eq!(
            parse_health_url(DEFAULT_HEALTH_URL).unwrap(),
            ("https://127.0.0.1:6443".to_string(), "/livez".to_string())
        );
        assert_eq!(
            parse_health_url("http://10.0.0.10:8080/readyz?verbose").unwrap().1,
            "/readyz?verbose"
        );
        assert!(parse_health_url("ftp://x/livez").is_err());
        assert!(parse_health_url("/livez").is_err());
    }
}
