//! `novanet-inject`: a fast BGP peer for benchmarks, built on the
//! project's codec. As injector it sends N distinct prefixes (packed into
//! full UPDATEs) as soon as the session is up; as monitor it counts the
//! prefixes it holds and reports when it holds N. Either way it keeps the
//! session alive until killed or `--linger` runs out, and prints one JSON
//! line of timings.

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
    if args.count > 0 {
        std::thread::sleep(Duration::from_secs_f64(args.hold_off));
        let attrs = PathAttributes {
            as_path: AsPath::from_sequence(vec![args.local_as]),
            next_hop: Some(IpAddr::V4(args.next_hop.unwrap_or(local))),
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
        let start = epoch();
        let mut buf = BytesMut::with_capacity(args.count as usize * 5 + 4096);
        pack_announcements(&attrs, &prefixes, &codec, &mut buf);
        stream.write_all(&buf)?;
        stream.write_all(&message_bytes(
            &Message::Update(Update::end_of_rib(Family::IPV4_UNICAST)),
            &codec,
        ))?;
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
    let deadline = Instant::now() + Duration::from_secs(args.linger);
    stream.set_read_timeout(Some(Duration::from_millis(500)))?;
    let report = |done_at: Option<f64>, first_at: Option<f64>, held: usize| {
        let (start, end) = sent_at.unwrap_or((0.0, 0.0));
        println!(
            "{}",
            serde_json::json!({
                "established": established,
                "send_start": start, "send_end": end, "sent": args.count,
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
                for n in u.withdrawals() {
                    held.remove(&n.prefix);
                }
                for (n, _, _) in u.announcements() {
                    if first_at.is_none() {
                        first_at = Some(epoch());
                    }
                    held.insert(n.prefix);
                }
                if args.expect > 0 && done_at.is_none() && held.len() as u64 >= args.expect {
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
    }
    Ok(())
}
