//! The raw ICMPv6 socket of one link: bound to the interface, passing only
//! Router Solicitations and Advertisements, sending with hop limit 255 to
//! the link's multicast groups, receiving with each message's hop limit
//! and link-local source.

use super::ra::{ROUTER_ADVERTISEMENT, ROUTER_SOLICITATION};
use nix::sys::socket::{recvmsg, setsockopt, sockopt, ControlMessageOwned, MsgFlags, SockaddrIn6};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use std::io::{self, IoSliceMut};
use std::net::{Ipv6Addr, SocketAddrV6};
use std::os::fd::AsRawFd;
use tokio::io::unix::AsyncFd;

/// All nodes (where advertisements go) and all routers (solicitations).
const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
const ALL_ROUTERS: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 2);

/// `ICMP6_FILTER` of linux/icmpv6.h: a bit set per blocked type.
const ICMP6_FILTER: libc::c_int = 1;

/// A received message: its bytes' length, link-local source, hop limit.
pub struct Message {
    pub len: usize,
    pub from: Ipv6Addr,
    pub hop_limit: Option<u8>,
}

pub struct LinkSocket {
    fd: AsyncFd<Socket>,
    ifindex: u32,
}

fn pass_only(fd: i32, types: &[u8]) -> io::Result<()> {
    let mut filter = [u32::MAX; 8];
    for t in types {
        filter[(*t >> 5) as usize] &= !(1u32 << (*t & 31));
    }
    // SAFETY: setsockopt with a value of the size the option takes.
    let r = unsafe {
        libc::setsockopt(
            fd,
            libc::IPPROTO_ICMPV6,
            ICMP6_FILTER,
            filter.as_ptr() as *const libc::c_void,
            std::mem::size_of_val(&filter) as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

impl LinkSocket {
    /// Opens the socket of `interface` (needs CAP_NET_RAW).
    pub fn open(interface: &str) -> io::Result<LinkSocket> {
        let ifindex = novanet_bgp::speaker::transport::interface_index(interface)?;
        let s = Socket::new(Domain::IPV6, Type::RAW, Some(Protocol::ICMPV6))?;
        s.bind_device(Some(interface.as_bytes()))?;
        s.set_multicast_hops_v6(255)?;
        s.set_unicast_hops_v6(255)?;
        s.set_multicast_if_v6(ifindex)?;
        s.set_multicast_loop_v6(false)?;
        setsockopt(&s, sockopt::Ipv6RecvHopLimit, &true).map_err(io::Error::from)?;
        pass_only(s.as_raw_fd(), &[ROUTER_SOLICITATION, ROUTER_ADVERTISEMENT])?;
        s.set_nonblocking(true)?;
        // SAFETY: the socket's descriptor is open, and owned by the AsyncFd
        // for its whole life.
        let fd = unsafe { AsyncFd::register(s) }.map_err(|e| e.into_parts().1)?;
        Ok(LinkSocket { fd, ifindex })
    }

    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }

    fn send_to(&self, packet: &[u8], group: Ipv6Addr) -> io::Result<()> {
        let to = SockAddr::from(SocketAddrV6::new(group, 0, 0, self.ifindex));
        self.fd.get_ref().send_to(packet, &to).map(|_| ())
    }

    /// Sends an advertisement to every node on the link.
    pub fn advertise(&self, packet: &[u8]) -> io::Result<()> {
        self.send_to(packet, ALL_NODES)
    }

    /// Sends a solicitation to the link's routers.
    pub fn solicit(&self, packet: &[u8]) -> io::Result<()> {
        self.send_to(packet, ALL_ROUTERS)
    }

    /// Waits for the next message.
    pub async fn recv(&self, buf: &mut [u8]) -> io::Result<Message> {
        loop {
            let mut guard = self.fd.readable().await?;
            let fd = self.fd.get_ref().as_raw_fd();
            let r = guard.try_io(|_| {
                let mut iov = [IoSliceMut::new(buf)];
                let mut space = nix::cmsg_space!(libc::c_int);
                let msg = recvmsg::<SockaddrIn6>(fd, &mut iov, Some(&mut space), MsgFlags::empty())
                    .map_err(io::Error::from)?;
                let hop_limit = msg.cmsgs().map_err(io::Error::from)?.find_map(|c| match c {
                    ControlMessageOwned::Ipv6HopLimit(h) => u8::try_from(h).ok(),
                    _ => None,
                });
                let from = msg
                    .address
                    .map(|a| a.ip())
                    .ok_or_else(|| io::Error::other("a message without a source"))?;
                Ok(Message {
                    len: msg.bytes,
                    from,
                    hop_limit,
                })
            });
            match r {
                Ok(result) => return result,
                Err(_would_block) => continue,
            }
        }
    }
}
