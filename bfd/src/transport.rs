//! BFD over UDP: RFC 5881 single hop (port 3784, TTL 255 sent and
//! required, source ports 49152-65535) and RFC 5883 multihop (port 4784).
//! Sessions run on a thread of their own with a single-threaded runtime,
//! so route processing elsewhere can never delay a packet or a detection.

use crate::packet::{self, diag, State};
use crate::session::{Output, Session, SessionConfig};
use bytes::BytesMut;
use serde::Serialize;
use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::UdpSocket;
use tokio::sync::{broadcast, mpsc, oneshot};

pub const SINGLE_HOP_PORT: u16 = 3784;
pub const MULTIHOP_PORT: u16 = 4784;

/// What identifies a session: the peer, and whether it is multihop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct SessionKey {
    pub peer: IpAddr,
    pub multihop: bool,
}

/// A session to run.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionSpec {
    pub key: SessionKey,
    /// Source address of our packets (default: chosen by the kernel).
    pub local: Option<IpAddr>,
    pub config: SessionConfig,
    /// The lowest TTL / hop limit a multihop packet may arrive with
    /// (GTSM-style: 256 minus the hops the peer may be away); None takes
    /// any. Single-hop packets must always arrive with 255.
    pub min_ttl: Option<u8>,
}

/// A session's state for operators.
#[derive(Debug, Clone, Serialize)]
pub struct SessionStatus {
    pub peer: IpAddr,
    pub multihop: bool,
    pub state: State,
    pub diagnostic: String,
    pub local_discriminator: u32,
    pub remote_discriminator: u32,
    pub desired_min_tx_ms: u64,
    pub required_min_rx_ms: u64,
    pub detect_multiplier: u8,
    pub remote_desired_min_tx_ms: u64,
    pub remote_required_min_rx_ms: u64,
    pub remote_detect_multiplier: u8,
    pub tx_interval_ms: u64,
    pub detection_time_ms: u64,
}

/// Packets dropped as forged, counted by the BFD thread.
#[derive(Debug, Default)]
struct Drops {
    off_link: AtomicU64,
    authentication: AtomicU64,
    unknown_source: AtomicU64,
    ttl: AtomicU64,
}

/// Packets dropped as forged, by reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DropCounts {
    /// Single-hop packets on an interface with no link to their source.
    pub off_link: u64,
    /// Packets failing a session's authentication.
    pub authentication: u64,
    /// Packets from an address (and port) with no session, dropped as
    /// they are read, before they reach the sessions' loop.
    pub unknown_source: u64,
    /// Single-hop packets with a TTL below 255, multihop ones below their
    /// session's `min_ttl`.
    pub ttl: u64,
}

/// Who may send to the engine: each session's peer and kind (multihop or
/// not) with the lowest TTL its packets may arrive with. The socket
/// readers consult it before they queue a datagram, so a flood from
/// anywhere else costs a read and a lookup, and never delays a real
/// packet behind it.
#[derive(Debug, Default)]
struct Admission(std::sync::RwLock<HashMap<(IpAddr, bool), u8>>);

impl Admission {
    /// Whether a datagram may be queued; counts the ones that may not.
    fn admits(&self, arrival: &Arrival, multihop: bool, drops: &Drops) -> bool {
        let peer = arrival.from.ip().to_canonical();
        let floor = self.0.read().expect("admission").get(&(peer, multihop)).copied();
        match floor {
            None => {
                drops.unknown_source.fetch_add(1, Ordering::Relaxed);
                false
            }
            Some(floor) if arrival.ttl.is_some_and(|t| t < floor) => {
                drops.ttl.fetch_add(1, Ordering::Relaxed);
                false
            }
            Some(_) => true,
        }
    }

    fn set(&self, allowed: HashMap<(IpAddr, bool), u8>) {
        *self.0.write().expect("admission") = allowed;
    }
}

/// A change of a session's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BfdEvent {
    pub key: SessionKey,
    pub from: State,
    pub to: State,
    pub diag: u8,
    /// The neighbor's BFD restarted (a new discriminator signalled Down):
    /// the path did not fail.
    pub neighbor_restarted: bool,
    /// The neighbor took its session down administratively (AdminDown):
    /// not a failure of the path (RFC 5882 section 3.2).
    pub neighbor_admin_down: bool,
}

enum Command {
    Add(SessionSpec, oneshot::Sender<io::Result<()>>),
    Remove(SessionKey),
    Status(oneshot::Sender<Vec<SessionStatus>>),
}

/// The handle to the BFD thread.
#[derive(Clone)]
pub struct Bfd {
    commands: mpsc::UnboundedSender<Command>,
    events: broadcast::Sender<BfdEvent>,
    realtime: bool,
    drops: Arc<Drops>,
}

/// The BFD thread's real-time priority (SCHED_FIFO): above every normal
/// thread, so a table load on the other cores' worth of threads never
/// delays a packet; low among real-time ones.
pub const REALTIME_PRIORITY: i32 = 10;

/// Puts the calling thread under SCHED_FIFO at [`REALTIME_PRIORITY`];
/// fails without CAP_SYS_NICE (or an RLIMIT_RTPRIO that allows it).
fn raise_to_realtime() -> io::Result<()> {
    let param = libc::sched_param {
        sched_priority: REALTIME_PRIORITY,
    };
    // SAFETY: sched_setscheduler on the calling thread (pid 0) with a
    // valid parameter block.
    if unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

impl Bfd {
    /// Starts the BFD thread, listening on the given single-hop and
    /// multihop ports (3784 and 4784 in production).
    pub fn start(single_hop_port: u16, multihop_port: u16) -> io::Result<Bfd> {
        let (tx, rx) = mpsc::unbounded_channel();
        let (events, _) = broadcast::channel(1024);
        let ev = events.clone();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let drops = Arc::new(Drops::default());
        let counted = drops.clone();
        std::thread::Builder::new().name("bfd".into()).spawn(move || {
            let realtime = match raise_to_realtime() {
                Ok(()) => true,
                Err(e) => {
                    tracing::info!(error = %e, "BFD thread at normal priority (real-time scheduling needs CAP_SYS_NICE)");
                    false
                }
            };
            let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                    return;
                }
            };
            rt.block_on(async move {
                match Engine::bind(single_hop_port, multihop_port, ev, counted) {
                    Ok(engine) => {
                        let _ = ready_tx.send(Ok(realtime));
                        engine.run(rx).await;
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                    }
                }
            });
        })?;
        let realtime = ready_rx
            .recv()
            .map_err(|_| io::Error::other("the BFD thread ended at start"))??;
        Ok(Bfd {
            commands: tx,
            events,
            realtime,
            drops,
        })
    }

    /// Packets dropped as forged, by reason.
    pub fn drops(&self) -> DropCounts {
        DropCounts {
            off_link: self.drops.off_link.load(Ordering::Relaxed),
            authentication: self.drops.authentication.load(Ordering::Relaxed),
            unknown_source: self.drops.unknown_source.load(Ordering::Relaxed),
            ttl: self.drops.ttl.load(Ordering::Relaxed),
        }
    }

    /// Whether the BFD thread runs under real-time scheduling.
    pub fn realtime(&self) -> bool {
        self.realtime
    }

    /// Adds a session (replacing one with the same key).
    pub async fn add(&self, spec: SessionSpec) -> io::Result<()> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(Command::Add(spec, tx))
            .map_err(|_| io::Error::other("BFD stopped"))?;
        rx.await.map_err(|_| io::Error::other("BFD stopped"))?
    }

    pub fn remove(&self, key: SessionKey) {
        let _ = self.commands.send(Command::Remove(key));
    }

    pub async fn sessions(&self) -> Vec<SessionStatus> {
        let (tx, rx) = oneshot::channel();
        if self.commands.send(Command::Status(tx)).is_err() {
            return Vec::new();
        }
        rx.await.unwrap_or_default()
    }

    pub fn subscribe(&self) -> broadcast::Receiver<BfdEvent> {
        self.events.subscribe()
    }
}

struct Running {
    session: Session,
    socket: UdpSocket,
    dest: SocketAddr,
    /// Removed, but still sending AdminDown until then (RFC 5880 6.8.16):
    /// the peer sees an administrative stop, not a failure.
    retire_at: Option<Instant>,
    /// The lowest TTL its packets may arrive with.
    min_ttl: u8,
}

/// How long a removed session keeps sending AdminDown: long enough for the
/// peer to hear it (a few of its detection times), never long.
fn retire_after(s: &Session) -> Duration {
    (s.detection_time() * 2).clamp(Duration::from_millis(500), Duration::from_secs(3))
}

struct Engine {
    receivers: Vec<(UdpSocket, bool)>,
    /// Where single-hop neighbors may be heard.
    links: crate::links::Links,
    /// Packets dropped as forged.
    drops: Arc<Drops>,
    /// Who the socket readers let through (kept in step with `sessions`).
    admission: Arc<Admission>,
    sessions: HashMap<SessionKey, Running>,
    by_discr: HashMap<u32, SessionKey>,
    events: broadcast::Sender<BfdEvent>,
    next_discr: u32,
}

fn setsockopt_int(fd: i32, level: i32, name: i32, v: i32) -> io::Result<()> {
    // SAFETY: a c_int option value of the right size.
    let r = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            &v as *const i32 as *const libc::c_void,
            std::mem::size_of::<i32>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn receiver(addr: SocketAddr) -> io::Result<UdpSocket> {
    let domain = if addr.is_ipv4() {
        socket2::Domain::IPV4
    } else {
        socket2::Domain::IPV6
    };
    let s = socket2::Socket::new(domain, socket2::Type::DGRAM, None)?;
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    s.set_reuse_address(true)?;
    s.bind(&addr.into())?;
    s.set_nonblocking(true)?;
    let fd = s.as_raw_fd();
    if addr.is_ipv4() {
        setsockopt_int(fd, libc::IPPROTO_IP, libc::IP_RECVTTL, 1)?;
        setsockopt_int(fd, libc::IPPROTO_IP, libc::IP_PKTINFO, 1)?;
    } else {
        setsockopt_int(fd, libc::IPPROTO_IPV6, libc::IPV6_RECVHOPLIMIT, 1)?;
        setsockopt_int(fd, libc::IPPROTO_IPV6, libc::IPV6_RECVPKTINFO, 1)?;
    }
    UdpSocket::from_std(s.into())
}

/// A sending socket for one session: TTL 255, a source port in
/// 49152-65535 (RFC 5881 section 4).
fn sender(local: Option<IpAddr>, peer: IpAddr) -> io::Result<UdpSocket> {
    let v6 = peer.is_ipv6();
    let domain = if v6 {
        socket2::Domain::IPV6
    } else {
        socket2::Domain::IPV4
    };
    let unspecified = if v6 {
        IpAddr::V6(Ipv6Addr::UNSPECIFIED)
    } else {
        IpAddr::V4(Ipv4Addr::UNSPECIFIED)
    };
    let ip = local.unwrap_or(unspecified);
    let start: u16 = 49152 + (rand::random::<u16>() % 16384);
    for i in 0..16384u16 {
        let port = 49152 + (start - 49152 + i) % 16384;
        let s = socket2::Socket::new(domain, socket2::Type::DGRAM, None)?;
        if s.bind(&SocketAddr::new(ip, port).into()).is_ok() {
            if v6 {
                s.set_unicast_hops_v6(255)?;
            } else {
                s.set_ttl(255)?;
            }
            s.set_nonblocking(true)?;
            return UdpSocket::from_std(s.into());
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AddrInUse,
        "no free source port in 49152-65535",
    ))
}

/// One datagram as received: its length, source, TTL / hop limit and the
/// index of the interface it arrived on.
struct Arrival {
    len: usize,
    from: SocketAddr,
    ttl: Option<u8>,
    ifindex: Option<u32>,
}

/// Receives one datagram with its TTL / hop limit and arrival interface.
fn recv_with_ttl(fd: i32, buf: &mut [u8]) -> io::Result<Arrival> {
    // SAFETY: recvmsg with buffers owned here, sized as declared; the
    // control messages are walked with the libc CMSG macros.
    unsafe {
        let mut from: libc::sockaddr_storage = std::mem::zeroed();
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr() as *mut libc::c_void,
            iov_len: buf.len(),
        };
        let mut control = [0u8; 128];
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_name = &mut from as *mut _ as *mut libc::c_void;
        msg.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as u32;
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr() as *mut libc::c_void;
        msg.msg_controllen = control.len();
        let n = libc::recvmsg(fd, &mut msg, 0);
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut ttl = None;
        let mut ifindex = None;
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            let (level, kind) = ((*c).cmsg_level, (*c).cmsg_type);
            if (level == libc::IPPROTO_IP && kind == libc::IP_TTL)
                || (level == libc::IPPROTO_IPV6 && kind == libc::IPV6_HOPLIMIT)
            {
                let v = std::ptr::read_unaligned(libc::CMSG_DATA(c) as *const i32);
                ttl = Some(v as u8);
            } else if level == libc::IPPROTO_IP && kind == libc::IP_PKTINFO {
                let info = std::ptr::read_unaligned(libc::CMSG_DATA(c) as *const libc::in_pktinfo);
                ifindex = Some(info.ipi_ifindex as u32);
            } else if level == libc::IPPROTO_IPV6 && kind == libc::IPV6_PKTINFO {
                let info = std::ptr::read_unaligned(libc::CMSG_DATA(c) as *const libc::in6_pktinfo);
                ifindex = Some(info.ipi6_ifindex);
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
        let addr = socket2::SockAddr::new(from, msg.msg_namelen);
        let addr = addr.as_socket().ok_or_else(|| io::Error::other("not an IP source"))?;
        Ok(Arrival {
            len: n as usize,
            from: addr,
            ttl,
            ifindex,
        })
    }
}

/// The lowest TTL a session's packets may arrive with: 255 for single
/// hop (RFC 5881 section 5), the spec's floor (or any) for multihop.
fn min_ttl(spec: &SessionSpec) -> u8 {
    if spec.key.multihop {
        spec.min_ttl.unwrap_or(0)
    } else {
        255
    }
}

fn millis(d: Duration) -> u64 {
    d.as_millis() as u64
}

impl Engine {
    fn bind(single: u16, multi: u16, events: broadcast::Sender<BfdEvent>, drops: Arc<Drops>) -> io::Result<Engine> {
        let mut receivers = Vec::new();
        for (port, multihop) in [(single, false), (multi, true)] {
            receivers.push((
                receiver(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port))?,
                multihop,
            ));
            match receiver(SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), port)) {
                Ok(s) => receivers.push((s, multihop)),
                Err(e) => tracing::warn!(port, error = %e, "no IPv6 BFD listener"),
            }
        }
        Ok(Engine {
            receivers,
            links: crate::links::Links::default(),
            drops,
            admission: Arc::default(),
            sessions: HashMap::new(),
            by_discr: HashMap::new(),
            events,
            next_discr: rand::random::<u32>() | 1,
        })
    }

    async fn run(mut self, mut commands: mpsc::UnboundedReceiver<Command>) {
        // One reader task per socket; datagrams come in over a channel.
        let (dgram_tx, mut datagrams) = mpsc::channel::<(Vec<u8>, Arrival, bool)>(1024);
        for (sock, multihop) in std::mem::take(&mut self.receivers) {
            let tx = dgram_tx.clone();
            let (admission, drops) = (self.admission.clone(), self.drops.clone());
            tokio::spawn(async move {
                let mut buf = vec![0u8; 2048];
                let fd = sock.as_raw_fd();
                loop {
                    if sock.readable().await.is_err() {
                        return;
                    }
                    while let Ok(a) = sock.try_io(tokio::io::Interest::READABLE, || recv_with_ttl(fd, &mut buf)) {
                        if !admission.admits(&a, multihop, &drops) {
                            continue;
                        }
                        if tx.send((buf[..a.len].to_vec(), a, multihop)).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
        loop {
            let deadline = self
                .sessions
                .values()
                .flat_map(|r| [r.session.next_deadline(), r.retire_at])
                .flatten()
                .min()
                .map(tokio::time::Instant::from_std)
                .unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(3600));
            tokio::select! {
                biased;
                _ = tokio::time::sleep_until(deadline) => self.on_timers().await,
                Some((data, arrival, multihop)) = datagrams.recv() => {
                    self.on_datagram(&data, &arrival, multihop).await;
                }
                cmd = commands.recv() => match cmd {
                    Some(c) => self.on_command(c).await,
                    None => return,
                },
            }
        }
    }

    /// Lets the sockets' readers through for exactly the sessions there
    /// are (a retiring one still hears its peer).
    fn admit(&self) {
        self.admission.set(
            self.sessions
                .iter()
                .map(|(k, r)| ((k.peer, k.multihop), r.min_ttl))
                .collect(),
        );
    }

    async fn on_command(&mut self, cmd: Command) {
        match cmd {
            Command::Add(spec, reply) => {
                let r = self.add(spec);
                self.admit();
                let _ = reply.send(r);
            }
            Command::Remove(key) => {
                self.remove(key).await;
                self.admit();
            }
            Command::Status(reply) => {
                let mut v: Vec<SessionStatus> = self
                    .sessions
                    .iter()
                    .map(|(k, r)| {
                        let s = &r.session;
                        let (rtx, rrx, rmult) = s.remote_timers();
                        SessionStatus {
                            peer: k.peer,
                            multihop: k.multihop,
                            state: s.state(),
                            diagnostic: diag::name(s.local_diag()).to_string(),
                            local_discriminator: s.local_discriminator(),
                            remote_discriminator: s.remote_discriminator(),
                            desired_min_tx_ms: millis(s.config().desired_min_tx),
                            required_min_rx_ms: millis(s.config().required_min_rx),
                            detect_multiplier: s.config().detect_mult,
                            remote_desired_min_tx_ms: millis(rtx),
                            remote_required_min_rx_ms: millis(rrx),
                            remote_detect_multiplier: rmult,
                            tx_interval_ms: millis(s.tx_interval()),
                            detection_time_ms: millis(s.detection_time()),
                        }
                    })
                    .collect();
                v.sort_by_key(|s| s.peer);
                let _ = reply.send(v);
            }
        }
    }

    /// Removes a session. One the peer may be watching (Init, Up) first
    /// goes AdminDown and keeps sending that for a short while.
    async fn remove(&mut self, key: SessionKey) {
        let now = Instant::now();
        let Some(r) = self.sessions.get_mut(&key) else { return };
        if r.retire_at.is_some() {
            return;
        }
        if matches!(r.session.state(), State::Up | State::Init) {
            r.retire_at = Some(now + retire_after(&r.session));
            let out = r.session.set_admin_down(true, now);
            self.carry_out(key, out).await;
        } else if let Some(r) = self.sessions.remove(&key) {
            self.by_discr.remove(&r.session.local_discriminator());
        }
    }

    fn add(&mut self, spec: SessionSpec) -> io::Result<()> {
        // New timers for a running session: changed in place with a poll
        // sequence (RFC 5880 6.8.3), so the peer sees no flap.
        if let Some(r) = self.sessions.get_mut(&spec.key) {
            let bound = r.socket.local_addr().ok().map(|a| a.ip());
            let same_session = r.retire_at.is_none()
                && r.session.config().passive == spec.config.passive
                && r.session.config().auth == spec.config.auth
                && spec.local.is_none_or(|l| Some(l) == bound);
            if same_session {
                r.min_ttl = min_ttl(&spec);
                r.session.set_timers(
                    spec.config.desired_min_tx,
                    spec.config.required_min_rx,
                    spec.config.detect_mult,
                );
                return Ok(());
            }
        }
        if let Some(old) = self.sessions.remove(&spec.key) {
            self.by_discr.remove(&old.session.local_discriminator());
        }
        let socket = sender(spec.local, spec.key.peer)?;
        let discr = loop {
            let d = self.next_discr;
            self.next_discr = self.next_discr.wrapping_add(1).max(1);
            if !self.by_discr.contains_key(&d) {
                break d;
            }
        };
        let port = if spec.key.multihop {
            MULTIHOP_PORT
        } else {
            SINGLE_HOP_PORT
        };
        let floor = min_ttl(&spec);
        let session = Session::new(spec.config, discr, Instant::now());
        self.by_discr.insert(discr, spec.key);
        self.sessions.insert(
            spec.key,
            Running {
                session,
                socket,
                dest: SocketAddr::new(spec.key.peer, port),
                retire_at: None,
                min_ttl: floor,
            },
        );
        Ok(())
    }

    async fn on_datagram(&mut self, data: &[u8], arrival: &Arrival, multihop: bool) {
        let from = arrival.from;
        // The readers admitted only sessions' peers, at their TTL floor
        // (255 for single hop, RFC 5881 section 5). Single-hop packets
        // must also arrive on a link to the neighbor (a local pod's packet
        // to this host keeps its TTL 255, but arrives on the pod's
        // interface).
        if !multihop {
            let peer = from.ip().to_canonical();
            if let Some(ifindex) = arrival.ifindex {
                if !self.links.connects(ifindex, peer, Instant::now()) {
                    self.drops.off_link.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(%from, ifindex, "single-hop BFD packet on an interface with no link to its source dropped");
                    return;
                }
            }
        }
        let pkt = match packet::decode(data) {
            Ok(p) => p,
            Err(e) => {
                tracing::debug!(%from, error = %e, "malformed BFD packet dropped");
                return;
            }
        };
        let peer = from.ip().to_canonical();
        let key = if pkt.your_discriminator != 0 {
            self.by_discr.get(&pkt.your_discriminator).copied()
        } else {
            Some(SessionKey { peer, multihop })
        };
        let Some(key) = key.filter(|k| k.peer == peer && k.multihop == multihop) else {
            return;
        };
        let Some(r) = self.sessions.get_mut(&key) else { return };
        match r.session.handle_packet(&pkt, data, Instant::now()) {
            Ok(out) => self.carry_out(key, out).await,
            Err(d) => {
                if d == crate::session::Discard::AuthMismatch {
                    self.drops.authentication.fetch_add(1, Ordering::Relaxed);
                }
                tracing::debug!(%peer, reason = ?d, "BFD packet discarded")
            }
        }
    }

    async fn on_timers(&mut self) {
        let now = Instant::now();
        let due: Vec<SessionKey> = self
            .sessions
            .iter()
            .filter(|(_, r)| r.session.next_deadline().is_some_and(|d| d <= now))
            .map(|(k, _)| *k)
            .collect();
        for key in due {
            let Some(r) = self.sessions.get_mut(&key) else { continue };
            let out = r.session.on_timer(now);
            self.carry_out(key, out).await;
        }
        let retired: Vec<SessionKey> = self
            .sessions
            .iter()
            .filter(|(_, r)| r.retire_at.is_some_and(|t| t <= now))
            .map(|(k, _)| *k)
            .collect();
        let any_retired = !retired.is_empty();
        for key in retired {
            if let Some(r) = self.sessions.remove(&key) {
                self.by_discr.remove(&r.session.local_discriminator());
            }
        }
        if any_retired {
            self.admit();
        }
    }

    async fn carry_out(&mut self, key: SessionKey, out: Vec<Output>) {
        let Some(r) = self.sessions.get(&key) else { return };
        for o in out {
            match o {
                Output::Send(pkt) => {
                    let mut b = BytesMut::with_capacity(64);
                    pkt.encode(r.session.signing_key(), &mut b);
                    if let Err(e) = r.socket.send_to(&b, r.dest).await {
                        tracing::debug!(peer = %key.peer, error = %e, "BFD send failed");
                    }
                }
                Output::StateChanged {
                    from,
                    to,
                    diag: d,
                    neighbor_restarted,
                    neighbor_admin_down,
                } => {
                    tracing::info!(peer = %key.peer, multihop = key.multihop, from = from.name(), to = to.name(), diagnostic = diag::name(d), neighbor_restarted, neighbor_admin_down, "BFD session state");
                    let _ = self.events.send(BfdEvent {
                        key,
                        from,
                        to,
                        diag: d,
                        neighbor_restarted,
                        neighbor_admin_down,
                    });
                }
            }
        }
    }
}
