//! TCP for BGP sessions: socket options (TCP MD5 of RFC 2385, TTL for
//! eBGP multihop, GTSM of RFC 5082, source address), outgoing connects, the
//! listener, and one reader and one writer task per connection.
//!
//! The reader only frames bytes into whole messages; decoding happens in the
//! peer task, which knows the negotiated codec.

use super::drain::OutboxDrain;
use crate::wire::{frame, DecodeError, MAX_EXTENDED_MESSAGE_LEN};
use bytes::{Bytes, BytesMut};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// How a session's socket is set up.
#[derive(Debug, Clone, Default)]
pub struct SocketOptions {
    pub password: Option<String>,
    /// TTL of sent packets (1 for directly connected eBGP).
    pub ttl: u8,
    /// GTSM: drop packets that arrive with a TTL below this.
    pub min_ttl: Option<u8>,
    pub source: Option<IpAddr>,
    /// The interface a link-local peer is reached through.
    pub interface: Option<String>,
}

/// The addresses of the interface that holds a session's local address:
/// the next hop of the family the session does not run over (an IPv4
/// session carrying IPv6 routes sends the interface's IPv6 address, as
/// RFC 4760 routers do).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InterfaceAddresses {
    pub name: String,
    pub v4: Option<std::net::Ipv4Addr>,
    /// A global (not link-local) IPv6 address: a link-local next hop means
    /// nothing beyond the link without its companion global address.
    pub v6: Option<std::net::Ipv6Addr>,
}

/// The interface holding `local` and its first address of each family,
/// or `None` when no interface holds `local`.
pub fn interface_of(local: IpAddr) -> Option<InterfaceAddresses> {
    let all: Vec<(String, IpAddr)> = nix::ifaddrs::getifaddrs()
        .ok()?
        .filter_map(|ifa| {
            let a = ifa.address?;
            let ip = if let Some(v4) = a.as_sockaddr_in() {
                IpAddr::V4(v4.ip())
            } else {
                IpAddr::V6(a.as_sockaddr_in6()?.ip())
            };
            Some((ifa.interface_name, ip))
        })
        .collect();
    let name = all.iter().find(|(_, ip)| *ip == local)?.0.clone();
    let on_it = || all.iter().filter(|(n, _)| *n == name).map(|(_, ip)| *ip);
    Some(InterfaceAddresses {
        v4: on_it().find_map(|ip| match ip {
            IpAddr::V4(a) => Some(a),
            _ => None,
        }),
        v6: on_it().find_map(|ip| match ip {
            IpAddr::V6(a) if !a.is_unicast_link_local() && !a.is_loopback() => Some(a),
            _ => None,
        }),
        name,
    })
}

/// The index of a network interface by name.
pub fn interface_index(name: &str) -> io::Result<u32> {
    let c = std::ffi::CString::new(name)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "interface name holds a NUL byte"))?;
    // SAFETY: a NUL-terminated string that lives across the call.
    match unsafe { libc::if_nametoindex(c.as_ptr()) } {
        0 => Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("interface {name} not found"),
        )),
        i => Ok(i),
    }
}

/// The address to connect to: a link-local peer is given the scope of its
/// interface (looked up at each attempt, so an interface that comes back
/// with a new index is followed).
pub fn scoped(peer: SocketAddr, interface: Option<&str>) -> io::Result<SocketAddr> {
    match (peer, interface) {
        (SocketAddr::V6(v6), Some(name)) if v6.ip().is_unicast_link_local() => Ok(SocketAddr::V6(
            std::net::SocketAddrV6::new(*v6.ip(), v6.port(), 0, interface_index(name)?),
        )),
        (SocketAddr::V6(v6), None) if v6.ip().is_unicast_link_local() && v6.scope_id() == 0 => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("link-local peer {} has no interface", v6.ip()),
        )),
        _ => Ok(peer),
    }
}

fn setsockopt<T>(fd: i32, level: i32, name: i32, value: &T) -> io::Result<()> {
    // SAFETY: `value` is a live reference of the size passed.
    let r = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            value as *const T as *const libc::c_void,
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// `struct tcp_md5sig` of linux/tcp.h.
#[repr(C)]
struct TcpMd5Sig {
    addr: libc::sockaddr_storage,
    flags: u8,
    prefixlen: u8,
    keylen: u16,
    ifindex: i32,
    key: [u8; TCP_MD5SIG_MAXKEYLEN],
}

const TCP_MD5SIG: i32 = 14;
const TCP_MD5SIG_MAXKEYLEN: usize = 80;

/// Installs (or, with `None`, removes) the TCP MD5 key for `peer` on a
/// socket (RFC 2385). On an IPv6 socket an IPv4 peer is given mapped.
pub fn set_md5(fd: i32, socket_is_v6: bool, peer: IpAddr, password: Option<&str>) -> io::Result<()> {
    let key = password.unwrap_or("").as_bytes();
    if key.len() > TCP_MD5SIG_MAXKEYLEN {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "TCP MD5 password longer than 80 bytes",
        ));
    }
    // SAFETY: the struct is plain old data; all zeroes is a valid value.
    let mut sig: TcpMd5Sig = unsafe { std::mem::zeroed() };
    let target = match (peer, socket_is_v6) {
        (IpAddr::V4(a), true) => SocketAddr::new(IpAddr::V6(a.to_ipv6_mapped()), 0),
        (a, _) => SocketAddr::new(a, 0),
    };
    let sa = socket2::SockAddr::from(target);
    // SAFETY: both are sockaddr storage of at least sa.len() bytes.
    unsafe {
        std::ptr::copy_nonoverlapping(
            sa.as_ptr() as *const u8,
            &mut sig.addr as *mut libc::sockaddr_storage as *mut u8,
            sa.len() as usize,
        );
    }
    sig.keylen = key.len() as u16;
    sig.key[..key.len()].copy_from_slice(key);
    setsockopt(fd, libc::IPPROTO_TCP, TCP_MD5SIG, &sig)
}

fn set_ttl_options(fd: i32, v6: bool, opts: &SocketOptions) -> io::Result<()> {
    let ttl = opts.ttl.max(1) as i32;
    if v6 {
        setsockopt(fd, libc::IPPROTO_IPV6, libc::IPV6_UNICAST_HOPS, &ttl)?;
    } else {
        setsockopt(fd, libc::IPPROTO_IP, libc::IP_TTL, &ttl)?;
    }
    if let Some(min) = opts.min_ttl {
        let min = min as i32;
        if v6 {
            setsockopt(fd, libc::IPPROTO_IPV6, libc::IPV6_MINHOPCOUNT, &min)?;
        } else {
            setsockopt(fd, libc::IPPROTO_IP, libc::IP_MINTTL, &min)?;
        }
    }
    Ok(())
}

/// Connects to a peer with the session's socket options.
pub async fn connect(peer: SocketAddr, opts: &SocketOptions) -> io::Result<TcpStream> {
    let peer = scoped(peer, opts.interface.as_deref())?;
    let v6 = peer.is_ipv6();
    let socket = if v6 { TcpSocket::new_v6()? } else { TcpSocket::new_v4()? };
    let fd = socket.as_raw_fd();
    if let Some(src) = opts.source {
        socket.bind(SocketAddr::new(src, 0))?;
    }
    if opts.password.is_some() {
        set_md5(fd, v6, peer.ip(), opts.password.as_deref())?;
    }
    set_ttl_options(fd, v6, opts)?;
    socket.set_nodelay(true)?;
    socket.connect(peer).await
}

/// Applies TTL options to an accepted connection.
pub fn prepare_accepted(stream: &TcpStream, opts: &SocketOptions) -> io::Result<()> {
    let v6 = stream.local_addr()?.is_ipv6();
    set_ttl_options(stream.as_raw_fd(), v6, opts)?;
    stream.set_nodelay(true)
}

/// Connections the kernel queues before the speaker accepts them: a node
/// mesh brings one connection from every other node at once, and an
/// overflowing queue drops them (the peer's connection is then lost in
/// OpenSent and retried much later). The kernel caps it at somaxconn.
const LISTEN_BACKLOG: i32 = 4096;

/// TTL (hop limit) of the listener's SYN-ACKs: 255, so a peer with GTSM
/// (RFC 5082) that dials us accepts the handshake; each accepted
/// connection then takes its peer's own TTL options
/// ([`prepare_accepted`]).
const LISTENER_TTL: u32 = 255;

/// Binds the BGP listener: dual-stack on `[::]:port` when the host has
/// IPv6, else IPv4 only.
pub fn listen(port: u16) -> io::Result<TcpListener> {
    let dual = (|| -> io::Result<TcpListener> {
        let s = socket2::Socket::new(socket2::Domain::IPV6, socket2::Type::STREAM, None)?;
        s.set_only_v6(false)?;
        s.set_reuse_address(true)?;
        // IPv4 (mapped) and IPv6 handshakes alike.
        s.set_ttl(LISTENER_TTL)?;
        s.set_unicast_hops_v6(LISTENER_TTL)?;
        s.bind(&SocketAddr::new(IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED), port).into())?;
        s.listen(LISTEN_BACKLOG)?;
        s.set_nonblocking(true)?;
        TcpListener::from_std(s.into())
    })();
    match dual {
        Ok(l) => Ok(l),
        Err(_) => {
            let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
            s.set_reuse_address(true)?;
            s.set_ttl(LISTENER_TTL)?;
            s.bind(&SocketAddr::new(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), port).into())?;
            s.listen(LISTEN_BACKLOG)?;
            s.set_nonblocking(true)?;
            TcpListener::from_std(s.into())
        }
    }
}

/// What the reader task reports.
#[derive(Debug)]
pub enum Inbound {
    /// One whole message, header included.
    Frame(Bytes),
    /// The header was invalid; the session must be reset.
    Malformed(DecodeError),
    /// The peer closed the connection or it failed.
    Closed,
}

/// One established TCP connection: a reader task feeding frames in, and a
/// writer task taking encoded messages out.
pub struct Connection {
    pub local: SocketAddr,
    pub remote: SocketAddr,
    pub outbound: bool,
    pub inbound: mpsc::Receiver<Inbound>,
    outbound_tx: Option<mpsc::UnboundedSender<WriterInput>>,
    fd: std::os::fd::RawFd,
    reader: JoinHandle<()>,
    writer: Option<JoinHandle<()>>,
}

/// What the peer task hands the writer.
enum WriterInput {
    /// One message (OPEN, KEEPALIVE, NOTIFICATION, ROUTE-REFRESH).
    Message(Bytes),
    /// From now on, also drain this outbox (the session is established).
    Updates(OutboxDrain),
}

/// Frames queued from the reader before it stops reading (TCP backpressure).
const READ_QUEUE: usize = 64;

impl Connection {
    /// Starts the reader and writer tasks of a connection. `hold_time`
    /// (seconds, 0 for none) also bounds how long written data may stay
    /// unacknowledged (TCP_USER_TIMEOUT): a peer that stops reading loses
    /// its connection then, not after TCP's own ~15 minutes.
    pub fn new(stream: TcpStream, outbound: bool, hold_time: u16) -> io::Result<Connection> {
        let local = stream.local_addr()?;
        let remote = stream.peer_addr()?;
        let fd = stream.as_raw_fd();
        set_user_timeout(fd, hold_time);
        let (mut rd, mut wr) = stream.into_split();
        let (in_tx, in_rx) = mpsc::channel(READ_QUEUE);
        // Unbounded in count, bounded in practice: only the peer task's own
        // messages go here (timers and commands, a handful per hold time);
        // UPDATEs are pulled from the outbox when the socket takes them.
        let (out_tx, mut out_rx) = mpsc::unbounded_channel::<WriterInput>();
        let closed_tx = in_tx.clone();
        let reader = tokio::spawn(async move {
            let mut buf = BytesMut::with_capacity(64 * 1024);
            loop {
                loop {
                    match frame(&buf, MAX_EXTENDED_MESSAGE_LEN) {
                        Ok(Some(len)) => {
                            let msg = buf.split_to(len).freeze();
                            if in_tx.send(Inbound::Frame(msg)).await.is_err() {
                                return;
                            }
                        }
                        Ok(None) => break,
                        Err(e) => {
                            let _ = in_tx.send(Inbound::Malformed(e)).await;
                            return;
                        }
                    }
                }
                buf.reserve(64 * 1024);
                match rd.read_buf(&mut buf).await {
                    Ok(0) | Err(_) => {
                        let _ = in_tx.send(Inbound::Closed).await;
                        return;
                    }
                    Ok(_) => {}
                }
            }
        });
        let writer = tokio::spawn(async move {
            let mut drain: Option<OutboxDrain> = None;
            loop {
                // Messages of the peer task first, then the outbox.
                let message = tokio::select! {
                    biased;
                    input = out_rx.recv() => match input {
                        Some(WriterInput::Message(b)) => Some(b),
                        Some(WriterInput::Updates(d)) => {
                            drain = Some(d);
                            None
                        }
                        None => break,
                    },
                    _ = async { drain.as_ref().expect("guarded").ready().await }, if drain.is_some() => None,
                };
                let mut ok = match message {
                    Some(b) => wr.write_all(&b).await.is_ok(),
                    None => true,
                };
                while ok {
                    let Some(d) = drain.as_ref() else { break };
                    let Some(chunk) = d.take() else { break };
                    ok = wr.write_all(&chunk.bytes).await.is_ok();
                    if ok {
                        d.written(chunk);
                    }
                }
                if !ok {
                    // The peer task learns it as a lost connection.
                    let _ = closed_tx.send(Inbound::Closed).await;
                    return;
                }
            }
            let _ = wr.shutdown().await;
        });
        Ok(Connection {
            local,
            remote,
            outbound,
            inbound: in_rx,
            outbound_tx: Some(out_tx),
            fd,
            reader,
            writer: Some(writer),
        })
    }

    /// Queues a message for the peer; never waits.
    pub fn send(&self, bytes: Bytes) {
        if let Some(tx) = &self.outbound_tx {
            let _ = tx.send(WriterInput::Message(bytes));
        }
    }

    /// The session is established: the writer drains the outbox from now
    /// on, and unacknowledged data is bounded by the negotiated hold time.
    pub(crate) fn start_updates(&self, drain: OutboxDrain, hold_time: u16) {
        set_user_timeout(self.fd, hold_time);
        if let Some(tx) = &self.outbound_tx {
            let _ = tx.send(WriterInput::Updates(drain));
        }
    }

    /// Closes the connection once everything queued is written.
    pub fn close(mut self) {
        self.outbound_tx = None;
        self.reader.abort();
        // The writer ends by itself after flushing; give it a bound.
        let Some(writer) = self.writer.take() else {
            return;
        };
        tokio::spawn(async move {
            let abort = writer.abort_handle();
            if tokio::time::timeout(std::time::Duration::from_secs(5), writer)
                .await
                .is_err()
            {
                abort.abort();
            }
        });
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

/// TCP_USER_TIMEOUT: how long written data may stay unacknowledged
/// (zero-window probes included) before the kernel drops the connection.
/// 0 leaves the kernel default.
fn set_user_timeout(fd: std::os::fd::RawFd, seconds: u16) {
    if seconds == 0 {
        return;
    }
    let ms: libc::c_uint = seconds as libc::c_uint * 1000;
    // SAFETY: setsockopt on a socket this connection owns, with a value of
    // the size the option takes.
    let r = unsafe {
        libc::setsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_USER_TIMEOUT,
            &ms as *const libc::c_uint as *const libc::c_void,
            std::mem::size_of::<libc::c_uint>() as libc::socklen_t,
        )
    };
    if r != 0 {
        tracing::debug!(error = %io::Error::last_os_error(), "TCP_USER_TIMEOUT not set");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_interface_of_a_local_address_gives_its_other_family() {
        let lo = interface_of("127.0.0.1".parse().unwrap()).expect("lo holds 127.0.0.1");
        assert_eq!(lo.name, "lo");
        assert_eq!(lo.v4, Some(std::net::Ipv4Addr::LOCALHOST));
        // ::1 is no next hop to give a peer.
        assert_eq!(lo.v6, None);
        assert_eq!(interface_of("192.0.2.123".parse().unwrap()), None);
    }

    #[test]
    fn a_link_local_peer_is_given_the_scope_of_its_interface() {
        let ll: SocketAddr = "[fe80::1]:179".parse().unwrap();
        let lo = interface_index("lo").expect("every namespace has lo");
        match scoped(ll, Some("lo")).unwrap() {
            SocketAddr::V6(v6) => assert_eq!((v6.scope_id(), v6.port()), (lo, 179)),
            other => panic!("{other}"),
        }
        let e = scoped(ll, None).unwrap_err();
        assert!(e.to_string().contains("fe80::1 has no interface"), "{e}");
        let e = scoped(ll, Some("no-such-if0")).unwrap_err();
        assert!(e.to_string().contains("interface no-such-if0 not found"), "{e}");
        // Addresses with a meaning of their own are left as they are.
        let global: SocketAddr = "[2001:db8::1]:179".parse().unwrap();
        assert_eq!(scoped(global, Some("lo")).unwrap(), global);
        let v4: SocketAddr = "192.0.2.1:179".parse().unwrap();
        assert_eq!(scoped(v4, None).unwrap(), v4);
    }
}
