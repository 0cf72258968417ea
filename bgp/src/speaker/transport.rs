//! TCP for BGP sessions: socket options (TCP MD5 of RFC 2385, TTL for
//! eBGP multihop, GTSM of RFC 5082, source address), outgoing connects, the
//! listener, and one reader and one writer task per connection.
//!
//! The reader only frames bytes into whole messages; decoding happens in the
//! peer task, which knows the negotiated codec.

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

/// Binds the BGP listener: dual-stack on `[::]:port` when the host has
/// IPv6, else IPv4 only.
pub fn listen(port: u16) -> io::Result<TcpListener> {
    let dual = (|| -> io::Result<TcpListener> {
        let s = socket2::Socket::new(socket2::Domain::IPV6, socket2::Type::STREAM, None)?;
        s.set_only_v6(false)?;
        s.set_reuse_address(true)?;
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
    outbound_tx: Option<mpsc::Sender<Bytes>>,
    reader: JoinHandle<()>,
    writer: Option<JoinHandle<()>>,
}

/// Frames queued to the writer before the peer task waits.
const WRITE_QUEUE: usize = 8;
/// Frames queued from the reader before it stops reading (TCP backpressure).
const READ_QUEUE: usize = 64;

impl Connection {
    pub fn new(stream: TcpStream, outbound: bool) -> io::Result<Connection> {
        let local = stream.local_addr()?;
        let remote = stream.peer_addr()?;
        let (mut rd, mut wr) = stream.into_split();
        let (in_tx, in_rx) = mpsc::channel(READ_QUEUE);
        let (out_tx, mut out_rx) = mpsc::channel::<Bytes>(WRITE_QUEUE);
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
            while let Some(b) = out_rx.recv().await {
                if wr.write_all(&b).await.is_err() {
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
            reader,
            writer: Some(writer),
        })
    }

    /// Queues bytes for the peer; waits while the writer is behind.
    pub async fn send(&self, bytes: Bytes) {
        if let Some(tx) = &self.outbound_tx {
            let _ = tx.send(bytes).await;
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
