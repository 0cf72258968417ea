//! `novanet-inject`: a fast BGP peer for benchmarks, built on the
//! project's codec. As injector it sends N distinct prefixes (packed into
//! full UPDATEs) as soon as the session is up; as monitor it counts the
//! prefixes it holds and reports when it holds N. Either way it keeps the
//! session alive until killed or `--linger` runs out, and prints one JSON
//! line of timings.
//!
//! Replay mode (`--mrt`) sends one peer's table from a RIPE RIS MRT RIB
//! dump with its real attributes (AS path prepended with ours, next hop
//! ours). With `--marker`, one more prefix follows the table in its own
//! UPDATE; a monitor given `--markers N` is done once it holds the N
//! markers and nothing has changed for `--settle` seconds, and reports the
//! time of the last change (for runs where the prefix count the daemon
//! ends up with is not known beforehand: overlapping tables, replays).

use bytes::BytesMut;
use clap::Parser;
use ipnet::{IpNet, Ipv4Net};
use novanet_bgp::wire::update::pack_announcements;
use novanet_bgp::wire::*;
use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant, SystemTime};

#[derive(Parser, Debug)]
#[command(name = "novanet-inject", about = "BGP route injector and monitor for benchmarks")]
struct Args {
    /// Connect to this peer (ADDR or ADDR:PORT).
    #[arg(long, conflicts_with = "listen")]
    connect: Option<String>,
    /// Wait for the peer on this address (ADDR:PORT).
    #[arg(long)]
    listen: Option<SocketAddr>,
    #[arg(long)]
    local_as: u32,
    /// Expected peer AS (0: any).
    #[arg(long, default_value_t = 0)]
    remote_as: u32,
    #[arg(long)]
    router_id: Ipv4Addr,
    /// Prefixes to send (injector).
    #[arg(long, default_value_t = 0)]
    count: u32,
    /// First prefix; the next ones follow at the prefix length's step.
    #[arg(long, default_value = "100.0.0.0/24")]
    first: Ipv4Net,
    /// Next hop of the sent routes (default: our session address).
    #[arg(long)]
    next_hop: Option<Ipv4Addr>,
    /// Report when this many prefixes are held (monitor).
    #[arg(long, default_value_t = 0)]
    expect: u64,
    /// Exit when the expected prefixes are held.
    #[arg(long)]
    exit_when_done: bool,
    /// Seconds to keep the session after the work is done.
    #[arg(long, default_value_t = 3600)]
    linger: u64,
    /// Seconds to wait after the session is up before sending (lets the
    /// daemon under test bring up its other sessions first).
    #[arg(long, default_value_t = 0.0)]
    hold_off: f64,
    /// Do not send before this time (seconds since the epoch), so that
    /// several injectors start together.
    #[arg(long, default_value_t = 0.0)]
    start_at: f64,
    /// Replay a peer's table from this MRT RIB dump (gzip or plain).
    #[arg(long)]
    mrt: Option<std::path::PathBuf>,
    /// Which peer of the dump to replay: 0 is the one with the most routes.
    #[arg(long, default_value_t = 0)]
    mrt_peer: usize,
    /// Send this prefix after the table, in an UPDATE of its own.
    #[arg(long)]
    marker: Option<Ipv4Net>,
    /// Monitor: the markers to wait for are this many /24s from 198.18.0.0.
    #[arg(long, default_value_t = 0)]
    markers: u32,
    /// Monitor with markers: seconds without a change that end the run.
    #[arg(long, default_value_t = 1.0)]
    settle: f64,
}

/// The `i`th marker prefix (198.18.0.0/24, 198.18.1.0/24, ...).
fn marker(i: u32) -> IpNet {
    let a = Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 18, 0, 0)) + (i << 8));
    IpNet::V4(Ipv4Net::new(a, 24).expect("valid length"))
}

/// The routes of the `rank`th largest peer of an MRT RIB dump, grouped by
/// attribute set, rewritten as sent by `local_as` with next hop `next_hop`.
fn mrt_table(
    path: &std::path::Path,
    rank: usize,
    local_as: u32,
    next_hop: Ipv4Addr,
) -> std::io::Result<Vec<(PathAttributes, Vec<Nlri>)>> {
    use novanet_bgp::mrt::{records, rib_entries};
    use std::collections::HashMap;
    let raw = std::fs::read(path)?;
    let bytes = if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&raw[..]).read_to_end(&mut out)?;
        out
    } else {
        raw
    };
    let bad = |e: String| std::io::Error::new(std::io::ErrorKind::InvalidData, format!("{}: {e}", path.display()));
    let (mut peers, mut entries) = (Vec::new(), Vec::new());
    let mut by_peer: HashMap<IpAddr, Vec<(IpNet, PathAttributes)>> = HashMap::new();
    for rec in records(&bytes) {
        let rec = rec.map_err(|e| bad(e.to_string()))?;
        entries.clear();
        rib_entries(&rec, &mut peers, &mut entries).map_err(|e| bad(e.to_string()))?;
        for e in entries.drain(..) {
            if e.attributes.treat_as_withdraw.is_none() && matches!(e.prefix, IpNet::V4(_)) {
                by_peer
                    .entry(e.peer_ip)
                    .or_default()
                    .push((e.prefix, e.attributes.attrs));
            }
        }
    }
    let mut tables: Vec<_> = by_peer.into_iter().collect();
    tables.sort_by(|a, b| b.1.len().cmp(&a.1.len()).then(a.0.cmp(&b.0)));
    let count = tables.len();
    let (_, routes) = tables
        .into_iter()
        .nth(rank)
        .ok_or_else(|| bad(format!("--mrt-peer {rank}: the dump has {count} peers")))?;
    let mut groups: HashMap<PathAttributes, Vec<Nlri>> = HashMap::new();
    for (prefix, mut attrs) in routes {
        attrs.as_path = attrs.as_path.prepended(local_as);
        attrs.next_hop = Some(IpAddr::V4(next_hop));
        attrs.local_pref = None;
        groups.entry(attrs).or_default().push(Nlri::new(prefix));
    }
    Ok(groups.into_iter().collect())
}

/// The synthetic table: `count` distinct prefixes from `first`.
fn synthetic_table(args: &Args, next_hop: Ipv4Addr) -> Vec<(PathAttributes, Vec<Nlri>)> {
    let attrs = PathAttributes {
        as_path: AsPath::from_sequence(vec![args.local_as]),
        next_hop: Some(IpAddr::V4(next_hop)),
        ..Default::default()
    };
    let step = 1u32 << (32 - args.first.prefix_len());
    let base = u32::from(args.first.network());
    let prefixes: Vec<Nlri> = (0..args.count)
        .map(|i| {
            let a = Ipv4Addr::from(base.wrapping_add(i.wrapping_mul(step)));
            Nlri::new(IpNet::V4(
                Ipv4Net::new(a, args.first.prefix_len()).expect("valid length"),
            ))
        })
        .collect();
    vec![(attrs, prefixes)]
}

fn epoch() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

fn read_message(s: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<Message> {
    let codec = SessionCodec::default();
    loop {
        match frame(buf, MAX_EXTENDED_MESSAGE_LEN) {
            Ok(Some(len)) => {
                let msg = decode_message(&buf[..len], &codec)
                    .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()))?;
                buf.drain(..len);
                return Ok(msg);
            }
            Ok(None) => {}
            Err(e) => return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string())),
        }
        let mut chunk = [0u8; 65536];
        let n = s.read(&mut chunk)?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn main() -> std::io::Result<()> {
    let args = Args::parse();
    let mut stream = match (&args.connect, args.listen) {
        (Some(c), _) => {
            let addr: SocketAddr = c.parse().or_else(|_| format!("{c}:179").parse()).map_err(|_| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    format!("--connect {c}: not an address"),
                )
            })?;
            TcpStream::connect(addr)?
        }
        (None, Some(l)) => TcpListener::bind(l)?.accept()?.0,
        (None, None) => {
            eprintln!("novanet-inject: give --connect or --listen");
            std::process::exit(2);
        }
    };
    stream.set_nodelay(true)?;
    let local = match stream.local_addr()?.ip() {
        IpAddr::V4(a) => a,
        IpAddr::V6(a) => a.to_ipv4_mapped().unwrap_or(Ipv4Addr::UNSPECIFIED),
    };
    let codec = SessionCodec::default();
    let open = Open {
        version: 4,
        asn: args.local_as,
        hold_time: 90,
        router_id: args.router_id,
        capabilities: vec![
            Capability::Multiprotocol(Family::IPV4_UNICAST),
            Capability::RouteRefresh,
            Capability::FourOctetAs(args.local_as),
        ],
    };
    stream.write_all(&message_bytes(&Message::Open(open), &codec))?;
    let mut rx = Vec::new();
    loop {
        match read_message(&mut stream, &mut rx)? {
            Message::Open(o) => {
                if args.remote_as != 0 && o.asn != args.remote_as {
                    eprintln!("novanet-inject: peer AS {} is not {}", o.asn, args.remote_as);
                    std::process::exit(1);
                }
                stream.write_all(&message_bytes(&Message::Keepalive, &codec))?;
            }
            Message::Keepalive => break,
            Message::Notification(n) => {
                eprintln!("novanet-inject: peer sent {n}");
                std::process::exit(1);
            }
            _ => {}
        }
    }
    let established = epoch();
    let mut sent_at = None;
    let next_hop = args.next_hop.unwrap_or(local);
    let table = match &args.mrt {
        Some(path) => mrt_table(path, args.mrt_peer, args.local_as, next_hop)?,
        None if args.count > 0 => synthetic_table(&args, next_hop),
        None => Vec::new(),
    };
    let mut sent = 0;
    if !table.is_empty() || args.marker.is_some() {
        // Encode before the clock starts: the daemon is measured, not us.
        let mut buf = BytesMut::with_capacity(args.count as usize * 5 + 4096);
        for (attrs, prefixes) in &table {
            pack_announcements(attrs, prefixes, &codec, &mut buf);
            sent += prefixes.len();
        }
        let mut tail = BytesMut::new();
        if let Some(m) = args.marker {
            let attrs = PathAttributes {
                as_path: AsPath::from_sequence(vec![args.local_as]),
                next_hop: Some(IpAddr::V4(next_hop)),
                ..Default::default()
            };
            pack_announcements(&attrs, &[Nlri::new(IpNet::V4(m))], &codec, &mut tail);
        }
        tail.extend_from_slice(&message_bytes(
            &Message::Update(Update::end_of_rib(Family::IPV4_UNICAST)),
            &codec,
        ));
        std::thread::sleep(Duration::from_secs_f64(args.hold_off));
        let wait = args.start_at - epoch();
        if wait > 0.0 {
            std::thread::sleep(Duration::from_secs_f64(wait));
        }
        let start = epoch();
        stream.write_all(&buf)?;
        stream.write_all(&tail)?;
        sent_at = Some((start, epoch()));
    }
    // Keep the session: answer with keepalives, count what arrives.
    let (tx_stream, keepalive) = (stream.try_clone()?, Duration::from_secs(30));
    std::thread::spawn(move || {
        let mut s = tx_stream;
        loop {
            std::thread::sleep(keepalive);
            if s.write_all(&message_bytes(&Message::Keepalive, &SessionCodec::default()))
                .is_err()
            {
                return;
            }
        }
    });
    let mut held: HashSet<IpNet> = HashSet::new();
    let mut first_at = None;
    let mut done_at = None;
    let markers: Vec<IpNet> = (0..args.markers).map(marker).collect();
    let mut last_change = (Instant::now(), epoch());
    let deadline = Instant::now() + Duration::from_secs(args.linger);
    stream.set_read_timeout(Some(Duration::from_millis(if markers.is_empty() { 500 } else { 50 })))?;
    let report = |done_at: Option<f64>, first_at: Option<f64>, held: usize| {
        let (start, end) = sent_at.unwrap_or((0.0, 0.0));
        println!(
            "{}",
            serde_json::json!({
                "established": established,
                "send_start": start, "send_end": end, "sent": sent,
                "first_prefix": first_at, "all_prefixes": done_at, "held": held
            })
        );
        let _ = std::io::stdout().flush();
    };
    if args.expect == 0 {
        report(None, None, 0);
    }
    while Instant::now() < deadline {
        match read_message(&mut stream, &mut rx) {
            Ok(Message::Update(u)) => {
                let mut changed = false;
                for n in u.withdrawals() {
                    held.remove(&n.prefix);
                    changed = true;
                }
                for (n, _, _) in u.announcements() {
                    if first_at.is_none() {
                        first_at = Some(epoch());
                    }
                    held.insert(n.prefix);
                    changed = true;
                }
                if changed {
                    last_change = (Instant::now(), epoch());
                }
                if markers.is_empty() && args.expect > 0 && done_at.is_none() && held.len() as u64 >= args.expect {
                    done_at = Some(epoch());
                    report(done_at, first_at, held.len());
                    if args.exit_when_done {
                        return Ok(());
                    }
                }
            }
            Ok(Message::Notification(n)) => {
                eprintln!("novanet-inject: peer sent {n}");
                std::process::exit(1);
            }
            Ok(_) => {}
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(e) => return Err(e),
        }
        let settled = last_change.0.elapsed().as_secs_f64() >= args.settle;
        if !markers.is_empty() && done_at.is_none() && settled && markers.iter().all(|m| held.contains(m)) {
            done_at = Some(last_change.1);
            report(done_at, first_at, held.len());
            if args.exit_when_done {
                return Ok(());
            }
        }
    }
    Ok(())
}
