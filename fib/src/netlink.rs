//! The kernel side of the FIB: a blocking rtnetlink socket that writes
//! many route and nexthop-object requests per `send`, matches the kernel's
//! ACKs by sequence number, dumps the routing table and the nexthop
//! objects, and looks up how a next hop is reached.

use super::nexthop_wire::{KernelNexthop, NexthopMessage, RTM_NEWNEXTHOP};
use super::objects::ObjectOp;
use super::state::{KernelRoute, NextHops, Op, PROTO_BGP};
use hashbrown::HashMap;
use ipnet::IpNet;
use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL, NLM_F_REPLACE,
    NLM_F_REQUEST,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteNextHop, RouteProtocol, RouteScope, RouteType,
    RouteVia,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};
use std::io;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex};

/// Largest batch of requests written with one `send`.
const SEND_BYTES: usize = 64 * 1024;

const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const RTM_NEWROUTE: u16 = 24;

/// How the kernel reaches an address: through `gateway` (the address
/// itself when it is on a connected network) on device `oif`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Reach {
    pub gateway: IpAddr,
    pub oif: u32,
}

/// The interfaces of link-local BGP next hops (unnumbered peers): a
/// link-local address names no gateway without its link. The agent sets
/// a peer's before the peer is added, so its routes always find it.
#[derive(Debug, Clone, Default)]
pub struct LinkLocalScopes(Arc<Mutex<HashMap<Ipv6Addr, u32>>>);

impl LinkLocalScopes {
    /// `addr` is reached through interface `ifindex`.
    pub fn set(&self, addr: Ipv6Addr, ifindex: u32) {
        self.0.lock().expect("link-local scopes").insert(addr, ifindex);
    }

    pub fn remove(&self, addr: &Ipv6Addr) {
        self.0.lock().expect("link-local scopes").remove(addr);
    }

    /// The interface of a link-local address; `None` for any other address
    /// and for a link-local one nobody told the scope of.
    pub fn of(&self, addr: IpAddr) -> Option<u32> {
        match addr {
            IpAddr::V6(v6) if v6.is_unicast_link_local() => self.0.lock().expect("link-local scopes").get(&v6).copied(),
            _ => None,
        }
    }
}

/// One message of a datagram the kernel sent.
enum Reply {
    /// An ACK (`None`) or an error (a negative errno).
    Ack(Option<i32>),
    Done,
    Route(RouteMessage),
    Nexthop(NexthopMessage),
    Other,
}

/// An rtnetlink socket for route requests.
pub struct RouteSocket {
    socket: Socket,
    seq: u32,
    metric: u32,
    rx: Vec<u8>,
    scopes: LinkLocalScopes,
}

fn family_of(p: &IpNet) -> AddressFamily {
    match p {
        IpNet::V4(_) => AddressFamily::Inet,
        IpNet::V6(_) => AddressFamily::Inet6,
    }
}

fn gateway_attr(prefix: &IpNet, gw: IpAddr) -> RouteAttribute {
    match (prefix, gw) {
        // RFC 8950: an IPv4 route through an IPv6 next hop.
        (IpNet::V4(_), IpAddr::V6(v6)) => RouteAttribute::Via(RouteVia::Inet6(v6)),
        _ => RouteAttribute::Gateway(RouteAddress::from(gw)),
    }
}

impl RouteSocket {
    pub fn open(metric: u32, scopes: LinkLocalScopes) -> io::Result<RouteSocket> {
        let mut socket = Socket::new(NETLINK_ROUTE)?;
        socket.bind_auto()?;
        socket.connect(&SocketAddr::new(0, 0))?;
        socket.set_rx_buf_sz(8 * 1024 * 1024)?;
        let _ = socket.set_ext_ack(true);
        Ok(RouteSocket {
            socket,
            seq: 1,
            metric,
            rx: vec![0; 1 << 20],
            scopes,
        })
    }

    fn next_seq(&mut self) -> u32 {
        self.seq = self.seq.wrapping_add(1).max(1);
        self.seq
    }

    fn route_message(&self, prefix: &IpNet) -> RouteMessage {
        let mut m = RouteMessage::default();
        m.header.address_family = family_of(prefix);
        m.header.destination_prefix_length = prefix.prefix_len();
        m.header.table = RouteHeader::RT_TABLE_MAIN;
        m.header.protocol = RouteProtocol::Bgp;
        m.header.scope = RouteScope::Universe;
        m.header.kind = RouteType::Unicast;
        m.attributes
            .push(RouteAttribute::Destination(RouteAddress::from(prefix.network())));
        m.attributes.push(RouteAttribute::Priority(self.metric));
        m
    }

    fn encode<T>(&mut self, msg: T, flags: u16, out: &mut Vec<u8>) -> u32
    where
        T: netlink_packet_core::NetlinkSerializable + std::fmt::Debug,
    {
        let seq = self.next_seq();
        let mut header = NetlinkHeader::default();
        header.flags = flags;
        header.sequence_number = seq;
        let mut nl = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(msg));
        nl.finalize();
        let start = out.len();
        out.resize(start + nl.buffer_len(), 0);
        nl.serialize(&mut out[start..]);
        seq
    }

    /// Encodes one operation into `out`; its sequence number.
    fn encode_op(&mut self, op: &Op, out: &mut Vec<u8>) -> u32 {
        const WRITE: u16 = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE;
        match op {
            Op::Object(ObjectOp::Nexthop { id, gateway, oif }) => {
                self.encode(NexthopMessage::nexthop(*id, *gateway, *oif, PROTO_BGP), WRITE, out)
            }
            Op::Object(ObjectOp::Group { id, members }) => {
                self.encode(NexthopMessage::group(*id, members, PROTO_BGP), WRITE, out)
            }
            Op::Object(ObjectOp::Delete { id }) => {
                self.encode(NexthopMessage::delete(*id), NLM_F_REQUEST | NLM_F_ACK, out)
            }
            route => {
                let (msg, flags) = self.op_message(route);
                self.encode(msg, flags, out)
            }
        }
    }

    fn op_message(&self, op: &Op) -> (RouteNetlinkMessage, u16) {
        match op {
            Op::Replace {
                prefix,
                next_hops,
                nh_id,
                exclusive,
                ..
            } => {
                let mut m = self.route_message(prefix);
                if *nh_id != 0 {
                    m.attributes.push(RouteAttribute::NhId(*nh_id));
                } else if let [gw] = next_hops.as_slice() {
                    m.attributes.push(gateway_attr(prefix, *gw));
                    if let Some(oif) = self.scopes.of(*gw) {
                        m.attributes.push(RouteAttribute::Oif(oif));
                    }
                } else {
                    let paths = next_hops
                        .iter()
                        .map(|gw| {
                            let mut h = RouteNextHop::default();
                            h.attributes.push(gateway_attr(prefix, *gw));
                            if let Some(oif) = self.scopes.of(*gw) {
                                h.interface_index = oif;
                            }
                            h
                        })
                        .collect();
                    m.attributes.push(RouteAttribute::MultiPath(paths));
                }
                // Only a route known to be ours is replaced; a new one is
                // created exclusively (EEXIST: someone else's is there).
                let how = if *exclusive { NLM_F_EXCL } else { NLM_F_REPLACE };
                (
                    RouteNetlinkMessage::NewRoute(m),
                    NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | how,
                )
            }
            Op::Delete { prefix } => (
                RouteNetlinkMessage::DelRoute(self.route_message(prefix)),
                NLM_F_REQUEST | NLM_F_ACK,
            ),
            Op::Object(_) => unreachable!("objects are encoded by encode_op"),
        }
    }

    /// Carries out operations, many per `send`; returns one result per
    /// operation, in order.
    pub fn apply(&mut self, ops: &[Op]) -> Vec<Result<(), io::Error>> {
        let mut results: Vec<Option<Result<(), io::Error>>> = (0..ops.len()).map(|_| None).collect();
        let mut i = 0;
        while i < ops.len() {
            let mut buf = Vec::with_capacity(SEND_BYTES);
            let mut seqs: HashMap<u32, usize> = HashMap::new();
            while i < ops.len() && buf.len() < SEND_BYTES {
                let seq = self.encode_op(&ops[i], &mut buf);
                seqs.insert(seq, i);
                i += 1;
            }
            if let Err(e) = self.socket.send(&buf, 0) {
                for (_, idx) in seqs.drain() {
                    results[idx] = Some(Err(io::Error::new(e.kind(), e.to_string())));
                }
                continue;
            }
            while !seqs.is_empty() {
                let msgs = match self.receive() {
                    Ok(m) => m,
                    Err(e) => {
                        for (_, idx) in seqs.drain() {
                            results[idx] = Some(Err(io::Error::new(e.kind(), e.to_string())));
                        }
                        break;
                    }
                };
                for (seq, reply) in msgs {
                    if let Reply::Ack(code) = reply {
                        if let Some(idx) = seqs.remove(&seq) {
                            results[idx] = Some(match code {
                                None => Ok(()),
                                Some(code) => Err(io::Error::from_raw_os_error(-code)),
                            });
                        }
                    }
                }
            }
        }
        results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(io::Error::other("no answer from the kernel"))))
            .collect()
    }

    /// Reads one datagram of netlink messages.
    fn receive(&mut self) -> io::Result<Vec<(u32, Reply)>> {
        let n = self.socket.recv(&mut &mut self.rx[..], 0)?;
        let mut out = Vec::new();
        let mut off = 0;
        while off + 16 <= n {
            let bytes = &self.rx[off..];
            let len = u32::from_ne_bytes(bytes[..4].try_into().expect("4 bytes")) as usize;
            if len < 16 || off + len > n {
                break;
            }
            let kind = u16::from_ne_bytes(bytes[4..6].try_into().expect("2 bytes"));
            let seq = u32::from_ne_bytes(bytes[8..12].try_into().expect("4 bytes"));
            let msg = &bytes[..len];
            let bad = |e: netlink_packet_core::DecodeError| io::Error::new(io::ErrorKind::InvalidData, e.to_string());
            let reply = match kind {
                NLMSG_ERROR => {
                    let code = if len >= 20 {
                        i32::from_ne_bytes(msg[16..20].try_into().expect("4 bytes"))
                    } else {
                        -libc::EIO
                    };
                    Reply::Ack((code != 0).then_some(code))
                }
                NLMSG_DONE => Reply::Done,
                RTM_NEWROUTE => match NetlinkMessage::<RouteNetlinkMessage>::deserialize(msg)
                    .map_err(bad)?
                    .payload
                {
                    NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewRoute(r)) => Reply::Route(r),
                    _ => Reply::Other,
                },
                RTM_NEWNEXTHOP => match NetlinkMessage::<NexthopMessage>::deserialize(msg).map_err(bad)?.payload {
                    NetlinkPayload::InnerMessage(m) => Reply::Nexthop(m),
                    _ => Reply::Other,
                },
                _ => Reply::Other,
            };
            out.push((seq, reply));
            off += (len + 3) & !3;
        }
        Ok(out)
    }

    /// Every nexthop object in the kernel; `None` when the kernel has no
    /// nexthop objects (before Linux 5.3).
    pub fn dump_nexthops(&mut self) -> io::Result<Option<Vec<KernelNexthop>>> {
        let mut buf = Vec::new();
        let seq = self.encode(NexthopMessage::dump(), NLM_F_REQUEST | NLM_F_DUMP, &mut buf);
        self.socket.send(&buf, 0)?;
        let mut out = Vec::new();
        loop {
            for (s, reply) in self.receive()? {
                if s != seq {
                    continue;
                }
                match reply {
                    Reply::Done => return Ok(Some(out)),
                    Reply::Ack(Some(code)) if [-libc::EOPNOTSUPP, -libc::EINVAL].contains(&code) => return Ok(None),
                    Reply::Ack(Some(code)) => {
                        return Err(io::Error::other(format!(
                            "nexthop dump failed: {}",
                            io::Error::from_raw_os_error(-code)
                        )))
                    }
                    Reply::Nexthop(m) => out.extend(KernelNexthop::from_message(&m)),
                    _ => {}
                }
            }
        }
    }

    /// Every unicast route of the main table, IPv4 and IPv6.
    pub fn dump(&mut self) -> io::Result<Vec<KernelRoute>> {
        let mut routes = Vec::new();
        self.dump_each(|r| routes.push(r))?;
        Ok(routes)
    }

    /// Reads every route of the kernel's main table, one at a time (a full
    /// table is never held twice).
    pub fn dump_each(&mut self, mut each: impl FnMut(KernelRoute)) -> io::Result<()> {
        for family in [AddressFamily::Inet, AddressFamily::Inet6] {
            let mut m = RouteMessage::default();
            m.header.address_family = family;
            let mut buf = Vec::new();
            let seq = self.encode(RouteNetlinkMessage::GetRoute(m), NLM_F_REQUEST | NLM_F_DUMP, &mut buf);
            self.socket.send(&buf, 0)?;
            'dump: loop {
                for (s, reply) in self.receive()? {
                    if s != seq {
                        continue;
                    }
                    match reply {
                        Reply::Done => break 'dump,
                        Reply::Ack(Some(code)) => {
                            return Err(io::Error::other(format!(
                                "route dump failed: {}",
                                io::Error::from_raw_os_error(-code)
                            )));
                        }
                        Reply::Route(r) => {
                            if let Some(k) = kernel_route(&r) {
                                each(k);
                            }
                        }
                        _ => {}
                    }
                }
            }
        }
        Ok(())
    }

    /// How the kernel reaches `addr` now: its gateway (`addr` itself when
    /// it is on a connected network) and device; `None` when unreachable.
    /// A link-local address is looked up on its interface only.
    pub fn resolve(&mut self, addr: IpAddr) -> io::Result<Option<Reach>> {
        let mut m = RouteMessage::default();
        m.header.address_family = match addr {
            IpAddr::V4(_) => AddressFamily::Inet,
            IpAddr::V6(_) => AddressFamily::Inet6,
        };
        m.header.destination_prefix_length = if addr.is_ipv4() { 32 } else { 128 };
        m.attributes.push(RouteAttribute::Destination(RouteAddress::from(addr)));
        if let Some(oif) = self.scopes.of(addr) {
            m.attributes.push(RouteAttribute::Oif(oif));
        } else if matches!(addr, IpAddr::V6(v6) if v6.is_unicast_link_local()) {
            // Any link would answer for it; none is known to be its.
            return Ok(None);
        }
        let mut buf = Vec::new();
        let seq = self.encode(RouteNetlinkMessage::GetRoute(m), NLM_F_REQUEST, &mut buf);
        self.socket.send(&buf, 0)?;
        loop {
            for (s, reply) in self.receive()? {
                if s != seq {
                    continue;
                }
                return Ok(match reply {
                    Reply::Route(r) if r.header.kind == RouteType::Unicast => {
                        let gateway = r.attributes.iter().find_map(|a| match a {
                            RouteAttribute::Gateway(g) => address(g),
                            _ => None,
                        });
                        let oif = r.attributes.iter().find_map(|a| match a {
                            RouteAttribute::Oif(o) => Some(*o),
                            _ => None,
                        });
                        oif.map(|oif| Reach {
                            gateway: gateway.unwrap_or(addr),
                            oif,
                        })
                    }
                    _ => None,
                });
            }
        }
    }
}

fn address(a: &RouteAddress) -> Option<IpAddr> {
    match a {
        RouteAddress::Inet(v4) => Some(IpAddr::V4(*v4)),
        RouteAddress::Inet6(v6) => Some(IpAddr::V6(*v6)),
        _ => None,
    }
}

/// A dumped route of the main table, as the FIB state sees it.
fn kernel_route(r: &RouteMessage) -> Option<KernelRoute> {
    let mut table = r.header.table as u32;
    let mut dst = None;
    let mut metric = 0;
    let mut nh_id = None;
    let mut next_hops: NextHops = NextHops::new();
    for a in &r.attributes {
        match a {
            RouteAttribute::NhId(id) => nh_id = Some(*id),
            RouteAttribute::Table(t) => table = *t,
            RouteAttribute::Destination(d) => dst = address(d),
            RouteAttribute::Priority(p) => metric = *p,
            RouteAttribute::Gateway(g) => next_hops.extend(address(g)),
            RouteAttribute::Via(RouteVia::Inet6(v6)) => next_hops.push(IpAddr::V6(*v6)),
            RouteAttribute::MultiPath(paths) => {
                for h in paths {
                    for ha in &h.attributes {
                        match ha {
                            RouteAttribute::Gateway(g) => next_hops.extend(address(g)),
                            RouteAttribute::Via(RouteVia::Inet6(v6)) => next_hops.push(IpAddr::V6(*v6)),
                            _ => {}
                        }
                    }
                }
            }
            _ => {}
        }
    }
    if table != RouteHeader::RT_TABLE_MAIN as u32 || r.header.kind != RouteType::Unicast {
        return None;
    }
    let len = r.header.destination_prefix_length;
    let prefix = match (r.header.address_family, dst) {
        (AddressFamily::Inet, Some(IpAddr::V4(a))) => IpNet::V4(ipnet::Ipv4Net::new(a, len).ok()?),
        (AddressFamily::Inet6, Some(IpAddr::V6(a))) => IpNet::V6(ipnet::Ipv6Net::new(a, len).ok()?),
        (AddressFamily::Inet, None) => IpNet::V4(ipnet::Ipv4Net::new(std::net::Ipv4Addr::UNSPECIFIED, 0).ok()?),
        (AddressFamily::Inet6, None) => IpNet::V6(ipnet::Ipv6Net::new(std::net::Ipv6Addr::UNSPECIFIED, 0).ok()?),
        _ => return None,
    };
    next_hops.sort();
    Some(KernelRoute {
        prefix,
        protocol: u8::from(r.header.protocol),
        metric,
        next_hops,
        nh_id,
    })
}
