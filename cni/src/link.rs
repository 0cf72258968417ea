//! A pod's interfaces, through rtnetlink: a veth pair whose host end
//! (`nv` + a hash of the attachment) stays on the node and whose other end
//! becomes `CNI_IFNAME` in the pod's namespace. The pod gets its addresses
//! as /32 and /128 with default routes through a gateway on the host end:
//! 169.254.1.1, and for IPv6 the host end's link-local address (made from
//! its fixed MAC). The pod knows the gateway's MAC from a permanent
//! neighbour entry, so nothing on the node has to answer for it (proxy ARP
//! would need a route to the gateway elsewhere). The node reaches the pod
//! through a /32 (/128) route on the host end. Nothing is bridged, so
//! every packet is routed and passes the node's TC programs.

use crate::spec::{code, CniError};
use futures::TryStreamExt;
use netlink_packet_route::address::AddressHeaderFlags;
use netlink_packet_route::link::{LinkAttribute, LinkMessage};
use netlink_packet_route::route::RouteScope;
use novanet_proto::cni::Attachment;
use rtnetlink::{Handle, LinkUnspec, LinkVeth, RouteMessageBuilder};
use sha1::{Digest, Sha1};
use std::fs::File;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::AsRawFd;

/// The MAC of every host end: the pods' IPv6 gateway is its link-local
/// address.
pub const HOST_MAC: [u8; 6] = [0xee; 6];
/// The pods' IPv4 gateway (answered by the host end's proxy ARP).
pub const GATEWAY_V4: Ipv4Addr = Ipv4Addr::new(169, 254, 1, 1);
/// The link-local address of a host end (EUI-64 of [`HOST_MAC`]).
pub const GATEWAY_V6: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0xecee, 0xeeff, 0xfeee, 0xeeee);

/// The gateway of a pod address.
pub fn gateway(ip: &IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => GATEWAY_V4.into(),
        IpAddr::V6(_) => GATEWAY_V6.into(),
    }
}

fn digest(att: &Attachment) -> String {
    let mut h = Sha1::new();
    h.update(att.container_id.as_bytes());
    h.update(b"/");
    h.update(att.ifname.as_bytes());
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// The host end's name: `nv` and 11 hex digits of the attachment's hash.
pub fn host_name(att: &Attachment) -> String {
    format!("nv{}", &digest(att)[..11])
}

/// The pod end's name until it is moved into the pod.
fn temporary_name(att: &Attachment) -> String {
    format!("nt{}", &digest(att)[..11])
}

fn netlink(what: &str) -> impl FnOnce(rtnetlink::Error) -> CniError + '_ {
    move |e| CniError::new(code::NETLINK, format!("{what}: {e}"))
}

/// Runs `f` with a netlink handle in the current thread's namespace.
fn with_handle<T>(f: impl AsyncFnOnce(Handle) -> Result<T, CniError>) -> Result<T, CniError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .map_err(|e| CniError::new(code::IO_FAILURE, format!("runtime: {e}")))?;
    rt.block_on(async {
        let (conn, handle, _) =
            rtnetlink::new_connection().map_err(|e| CniError::new(code::IO_FAILURE, format!("netlink socket: {e}")))?;
        tokio::spawn(conn);
        f(handle).await
    })
}

/// Opens a network namespace by path (`CNI_NETNS`).
fn open_netns(path: &str) -> Result<File, CniError> {
    File::open(path).map_err(|e| {
        CniError::new(
            code::UNKNOWN_CONTAINER,
            format!("the network namespace {path} cannot be opened: {e}"),
        )
    })
}

/// Runs `f` on a thread of its own inside the namespace at `netns`.
fn in_netns<T: Send>(netns: &File, f: impl FnOnce() -> Result<T, CniError> + Send) -> Result<T, CniError> {
    std::thread::scope(|s| {
        s.spawn(|| {
            // SAFETY: setns on this thread only, with a namespace descriptor
            // we hold open; the thread ends after `f`.
            if unsafe { libc::setns(netns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                return Err(CniError::new(
                    code::IO_FAILURE,
                    format!(
                        "entering the pod's network namespace: {}",
                        std::io::Error::last_os_error()
                    ),
                ));
            }
            f()
        })
        .join()
        .unwrap_or_else(|_| Err(CniError::new(code::IO_FAILURE, "the namespace thread failed")))
    })
}

async fn link_by_name(h: &Handle, name: &str) -> Result<Option<LinkMessage>, CniError> {
    match h.link().get().match_name(name).execute().try_next().await {
        Ok(m) => Ok(m),
        Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::ENODEV => Ok(None),
        Err(e) => Err(netlink(name)(e)),
    }
}

/// A link this plugin just made (gone: someone removed it meanwhile).
async fn made_link(h: &Handle, name: &str) -> Result<LinkMessage, CniError> {
    link_by_name(h, name)
        .await?
        .ok_or_else(|| CniError::new(code::NETLINK, format!("{name} vanished after it was made")))
}

fn mac_of(m: &LinkMessage) -> String {
    m.attributes
        .iter()
        .find_map(|a| match a {
            LinkAttribute::Address(mac) => Some(mac.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")),
            _ => None,
        })
        .unwrap_or_default()
}

/// Whether `ifname` exists in the namespace at `netns`.
pub fn exists_in(netns: &str, ifname: &str) -> Result<bool, CniError> {
    let ns = open_netns(netns)?;
    in_netns(&ns, || {
        with_handle(async |h| Ok(link_by_name(&h, ifname).await?.is_some()))
    })
}

/// The interfaces made for an attachment: (name, MAC) of each end.
pub struct Made {
    pub host: (String, String),
    pub pod: (String, String),
}

/// Makes the attachment's interfaces, addresses and routes. On an error,
/// what was made is removed again.
pub fn add(att: &Attachment, netns: &str, ips: &[IpAddr], mtu: u32) -> Result<Made, CniError> {
    let ns = open_netns(netns)?;
    let host = host_name(att);
    let made = add_host_side(att, &ns, ips, mtu).and_then(|host_mac| {
        let pod_mac = in_netns(&ns, || configure_pod_side(&att.ifname, ips, mtu))?;
        Ok(Made {
            host: (host.clone(), host_mac),
            pod: (att.ifname.clone(), pod_mac),
        })
    });
    if made.is_err() {
        let _ = del(att);
    }
    made
}

fn add_host_side(att: &Attachment, ns: &File, ips: &[IpAddr], mtu: u32) -> Result<String, CniError> {
    let host = host_name(att);
    let temp = temporary_name(att);
    let v6 = ips.iter().any(IpAddr::is_ipv6);
    // Before the host end comes up: no DAD for its link-local address (the
    // pods' IPv6 gateway must answer at once), proxy ARP for the IPv4 one,
    // strict rp_filter.
    with_handle(async |h| {
        if let Some(old) = link_by_name(&h, &host).await? {
            // A leftover of an ADD that did not finish: start over.
            h.link().del(old.header.index).execute().await.map_err(netlink(&host))?;
        }
        let veth = LinkVeth::new(&host, &temp).mtu(mtu).address(HOST_MAC.to_vec()).build();
        h.link()
            .add(veth)
            .execute()
            .await
            .map_err(netlink("creating the veth pair"))?;
        let peer = made_link(&h, &temp).await?;
        let moved = LinkUnspec::new_with_index(peer.header.index)
            .setns_by_fd(ns.as_raw_fd())
            .name(att.ifname.clone())
            .build();
        h.link()
            .set(moved)
            .execute()
            .await
            .map_err(netlink("moving the pod's interface into its namespace"))?;
        let link = made_link(&h, &host).await?;
        let index = link.header.index;
        if v6 {
            sysctl(&format!("/proc/sys/net/ipv6/conf/{host}/accept_dad"), "0")?;
        }
        // Strict reverse-path filtering on the pod's host end (the agent's
        // programs check its sources whatever this says, and in IPv6 too).
        if ips.iter().any(IpAddr::is_ipv4) {
            sysctl(&format!("/proc/sys/net/ipv4/conf/{host}/rp_filter"), "1")?;
        }
        h.link()
            .set(LinkUnspec::new_with_index(index).up().build())
            .execute()
            .await
            .map_err(netlink(&host))?;
        for ip in ips {
            let route = match ip {
                IpAddr::V4(a) => RouteMessageBuilder::<Ipv4Addr>::new()
                    .destination_prefix(*a, 32)
                    .output_interface(index)
                    .scope(RouteScope::Link)
                    .build(),
                IpAddr::V6(a) => RouteMessageBuilder::<Ipv6Addr>::new()
                    .destination_prefix(*a, 128)
                    .output_interface(index)
                    .build(),
            };
            h.route()
                .add(route)
                .replace()
                .execute()
                .await
                .map_err(netlink(&format!("the node's route to {ip}")))?;
        }
        Ok(mac_of(&link))
    })
}

/// In the pod: loopback up, the interface up with its MTU, addresses and
/// default routes. Returns the interface's MAC.
fn configure_pod_side(ifname: &str, ips: &[IpAddr], mtu: u32) -> Result<String, CniError> {
    with_handle(async |h| {
        if let Some(lo) = link_by_name(&h, "lo").await? {
            h.link()
                .set(LinkUnspec::new_with_index(lo.header.index).up().build())
                .execute()
                .await
                .map_err(netlink("lo"))?;
        }
        let link = link_by_name(&h, ifname)
            .await?
            .ok_or_else(|| CniError::new(code::NETLINK, format!("{ifname} is not in the pod's namespace")))?;
        let index = link.header.index;
        h.link()
            .set(LinkUnspec::new_with_index(index).mtu(mtu).up().build())
            .execute()
            .await
            .map_err(netlink(ifname))?;
        for ip in ips {
            // The gateway's MAC is known: no ARP or NDP for it, ever.
            h.neighbours()
                .add(index, gateway(ip))
                .link_layer_address(&HOST_MAC)
                .state(netlink_packet_route::neighbour::NeighbourState::Permanent)
                .replace()
                .execute()
                .await
                .map_err(netlink(&format!("the gateway {} of {ip}", gateway(ip))))?;
            let len = if ip.is_ipv4() { 32 } else { 128 };
            let mut add = h.address().add(index, *ip, len);
            if ip.is_ipv6() {
                add.message_mut().header.flags |= AddressHeaderFlags::Nodad;
            }
            add.execute().await.map_err(netlink(&format!("address {ip}/{len}")))?;
            match ip {
                IpAddr::V4(_) => {
                    let to_gateway = RouteMessageBuilder::<Ipv4Addr>::new()
                        .destination_prefix(GATEWAY_V4, 32)
                        .output_interface(index)
                        .scope(RouteScope::Link)
                        .build();
                    h.route()
                        .add(to_gateway)
                        .execute()
                        .await
                        .map_err(netlink("the route to the gateway"))?;
                    let default = RouteMessageBuilder::<Ipv4Addr>::new()
                        .gateway(GATEWAY_V4)
                        .output_interface(index)
                        .build();
                    h.route()
                        .add(default)
                        .execute()
                        .await
                        .map_err(netlink("the IPv4 default route"))?;
                }
                IpAddr::V6(_) => {
                    let default = RouteMessageBuilder::<Ipv6Addr>::new()
                        .gateway(GATEWAY_V6)
                        .output_interface(index)
                        .build();
                    h.route()
                        .add(default)
                        .execute()
                        .await
                        .map_err(netlink("the IPv6 default route"))?;
                }
            }
        }
        Ok(mac_of(&link))
    })
}

fn sysctl(path: &str, value: &str) -> Result<(), CniError> {
    std::fs::write(path, value).map_err(|e| CniError::new(code::IO_FAILURE, format!("{path}: {e}")))
}

/// Removes the attachment's host end (and with it the pod end); a missing
/// one is fine.
pub fn del(att: &Attachment) -> Result<(), CniError> {
    let host = host_name(att);
    let temp = temporary_name(att);
    with_handle(async |h| {
        for name in [&host, &temp] {
            if let Some(l) = link_by_name(&h, name).await? {
                match h.link().del(l.header.index).execute().await {
                    Ok(()) => {}
                    Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::ENODEV => {}
                    Err(e) => return Err(netlink(name)(e)),
                }
            }
        }
        Ok(())
    })
}

/// CHECK: the host end is up with its routes, and the pod's interface has
/// the addresses and default routes ADD gave it.
pub fn check(att: &Attachment, netns: &str, ips: &[IpAddr]) -> Result<(), CniError> {
    let failed = |m: String| CniError::new(code::CHECK_FAILED, m);
    let host = host_name(att);
    let host_ok = with_handle(async |h| {
        let Some(link) = link_by_name(&h, &host).await? else {
            return Err(failed(format!("the host interface {host} is missing")));
        };
        let routes: Vec<_> = h
            .route()
            .get(RouteMessageBuilder::<IpAddr>::new().build())
            .execute()
            .try_collect()
            .await
            .map_err(netlink("listing routes"))?;
        for ip in ips {
            let has = routes.iter().any(|r| {
                let dst = r.attributes.iter().any(|a| {
                    matches!(a, netlink_packet_route::route::RouteAttribute::Destination(d)
                        if route_address(d) == Some(*ip))
                });
                let dev = r.attributes.iter().any(
                    |a| matches!(a, netlink_packet_route::route::RouteAttribute::Oif(i) if *i == link.header.index),
                );
                dst && dev
            });
            if !has {
                return Err(failed(format!("the node has no route to {ip} through {host}")));
            }
        }
        Ok(())
    });
    host_ok?;
    let ns = open_netns(netns)?;
    let ifname = att.ifname.clone();
    in_netns(&ns, || {
        with_handle(async |h| {
            let Some(link) = link_by_name(&h, &ifname).await? else {
                return Err(failed(format!("{ifname} is missing in the pod's namespace")));
            };
            let addrs: Vec<_> = h
                .address()
                .get()
                .set_link_index_filter(link.header.index)
                .execute()
                .try_collect()
                .await
                .map_err(netlink("listing addresses"))?;
            let have: Vec<IpAddr> = addrs
                .iter()
                .flat_map(|m| m.attributes.iter())
                .filter_map(|a| match a {
                    netlink_packet_route::address::AddressAttribute::Address(ip) => Some(*ip),
                    _ => None,
                })
                .collect();
            for ip in ips {
                if !have.contains(ip) {
                    return Err(failed(format!("{ifname} in the pod lacks {ip} (it has {have:?})")));
                }
            }
            Ok(())
        })
    })
}

fn route_address(a: &netlink_packet_route::route::RouteAddress) -> Option<IpAddr> {
    match a {
        netlink_packet_route::route::RouteAddress::Inet(v4) => Some(IpAddr::V4(*v4)),
        netlink_packet_route::route::RouteAddress::Inet6(v6) => Some(IpAddr::V6(*v6)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names_fit_the_kernel_and_differ_per_attachment() {
        let a = Attachment {
            container_id: "4f7c0b9e2d".into(),
            ifname: "eth0".into(),
        };
        let b = Attachment {
            ifname: "net1".into(),
            ..a.clone()
        };
        assert_eq!(host_name(&a).len(), 13);
        assert!(host_name(&a).starts_with("nv"));
        assert_ne!(host_name(&a), host_name(&b));
        assert_eq!(host_name(&a), host_name(&a.clone()), "stable");
        assert_eq!(
            gateway(&"fd00::5".parse().unwrap()).to_string(),
            "fe80::ecee:eeff:feee:eeee",
            "the EUI-64 link-local address of the host end's MAC"
        );
    }
}
