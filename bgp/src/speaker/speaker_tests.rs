//! The speaker's tasks on real loopback sockets against scripted peers:
//! what only shows with the core and the peer tasks running together (a
//! full route queue, graceful restart in the RIB, prefix limits before
//! export).

use super::messages::{PeerCommand, PeerEvent, RouteEvent};
use super::peer::{self, PeerCtx};
use super::{PeerConfig, PeerShared, PeerStatus, RouteSink, Speaker, SpeakerConfig};
use crate::wire::{
    decode_message, encode_message, AsPath, Capability, Family, GracefulRestart, GracefulRestartFamily, Message, Nlri,
    Open, Origin, PathAttributes, SessionCodec, Update,
};
use bytes::BytesMut;
use ipnet::IpNet;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{broadcast, mpsc};

/// How long any one expected message may take.
const BOUND: Duration = Duration::from_secs(10);

const PEER_AS: u32 = 65100;
const LOCAL_AS: u32 = 65010;

/// A scripted BGP peer on one TCP connection.
struct ScriptedPeer {
    stream: TcpStream,
    buf: BytesMut,
}

fn speaker_config(peer_port: u16) -> SpeakerConfig {
    SpeakerConfig {
        local_as: LOCAL_AS,
        router_id: "10.255.0.1".parse().unwrap(),
        listen_port: None,
        peer_port,
        local_prefixes: Default::default(),
        graceful_restart_time: 120,
        restarting: Default::default(),
        route_sink: None,
    }
}

/// A listener on a loopback address of its own, any port.
async fn listener(last_octet: u8) -> (TcpListener, IpAddr) {
    let ip = IpAddr::V4(Ipv4Addr::new(127, 0, 0, last_octet));
    let l = TcpListener::bind((ip, 0)).await.expect("bind a loopback address");
    (l, ip)
}

fn gr(forwarding: bool) -> Capability {
    Capability::GracefulRestart(GracefulRestart {
        restarting: true,
        notification: false,
        restart_time: 120,
        families: vec![GracefulRestartFamily {
            family: Family::IPV4_UNICAST,
            forwarding_preserved: forwarding,
        }],
    })
}

fn announce(prefixes: &[&str]) -> Message {
    Message::Update(Update {
        attrs: PathAttributes {
            origin: Origin::Igp,
            as_path: AsPath::from_sequence(vec![PEER_AS]),
            next_hop: Some("127.0.0.1".parse().unwrap()),
            ..Default::default()
        },
        nlri: prefixes.iter().map(|p| Nlri::new(p.parse().unwrap())).collect(),
        ..Default::default()
    })
}

fn net(p: &str) -> IpNet {
    p.parse().unwrap()
}

impl ScriptedPeer {
    /// Accepts the speaker's connection and opens the session with `caps`
    /// (hold time `hold`): OPEN, KEEPALIVE, and the speaker's KEEPALIVE.
    async fn accept(l: &TcpListener, hold: u16, mut caps: Vec<Capability>) -> ScriptedPeer {
        let (stream, _) = tokio::time::timeout(BOUND, l.accept())
            .await
            .expect("the speaker connects")
            .expect("accept");
        let mut p = ScriptedPeer {
            stream,
            buf: BytesMut::new(),
        };
        assert!(matches!(p.next().await, Message::Open(_)));
        caps.push(Capability::Multiprotocol(Family::IPV4_UNICAST));
        caps.push(Capability::FourOctetAs(PEER_AS));
        p.send(&Message::Open(Open {
            version: 4,
            asn: PEER_AS,
            hold_time: hold,
            router_id: "10.255.0.2".parse().unwrap(),
            capabilities: caps,
        }))
        .await;
        p.send(&Message::Keepalive).await;
        assert!(matches!(p.next().await, Message::Keepalive));
        p
    }

    async fn send(&mut self, m: &Message) {
        let mut b = BytesMut::new();
        encode_message(m, &SessionCodec::default(), &mut b);
        self.stream.write_all(&b).await.expect("write to the speaker");
    }

    /// The next message from the speaker.
    async fn next(&mut self) -> Message {
        tokio::time::timeout(BOUND, async {
            loop {
                if let Some(len) = crate::wire::frame(&self.buf, 65535).expect("framing") {
                    let msg = self.buf.split_to(len);
                    return decode_message(&msg, &SessionCodec::default()).expect("a message we can read");
                }
                let n = self.stream.read_buf(&mut self.buf).await.expect("read");
                assert!(n > 0, "the speaker closed the connection");
            }
        })
        .await
        .expect("a message within the bound")
    }

    /// Skips messages until one `pick` takes.
    async fn until<T>(&mut self, mut pick: impl FnMut(&Message) -> Option<T>) -> T {
        loop {
            let m = self.next().await;
            if let Some(t) = pick(&m) {
                return t;
            }
        }
    }
}

/// Polls `check` until it holds, within the bound.
async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let start = Instant::now();
    while !check().await {
        assert!(start.elapsed() < BOUND, "never: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A peer task of its own, with the route queue given.
fn peer_task(address: IpAddr, port: u16, hold: u16, routes: mpsc::Sender<RouteEvent>) -> mpsc::Receiver<PeerEvent> {
    let mut config = PeerConfig::new(address, PEER_AS);
    config.hold_time = hold;
    let speaker = speaker_config(port);
    let shared = Arc::new(PeerShared {
        status: Mutex::new(PeerStatus::new(&config, LOCAL_AS)),
        outbox: Mutex::new(Default::default()),
        wake: tokio::sync::Notify::new(),
    });
    let (core, core_rx) = mpsc::channel(16);
    let (_commands_tx, commands) = mpsc::channel::<PeerCommand>(4);
    let (events, _) = broadcast::channel(64);
    tokio::spawn(async move {
        let _keep_commands_open = _commands_tx;
        peer::run(PeerCtx {
            id: 1,
            config,
            speaker,
            shared,
            core,
            routes,
            commands,
            events,
        })
        .await
    });
    core_rx
}

#[tokio::test]
async fn a_full_route_queue_delays_no_peer_s_keepalives() {
    // One route queue for both peers, and nobody takes from it: it is full
    // after the first batch.
    let (routes, _route_rx) = mpsc::channel(1);
    let (la, a_ip) = listener(2).await;
    let (lb, b_ip) = listener(3).await;
    let _core_a = peer_task(a_ip, la.local_addr().unwrap().port(), 3, routes.clone());
    let _core_b = peer_task(b_ip, lb.local_addr().unwrap().port(), 3, routes);
    let mut a = ScriptedPeer::accept(&la, 3, vec![]).await;
    let mut b = ScriptedPeer::accept(&lb, 3, vec![]).await;
    // A sends a table's worth; B one route while the queue is full.
    for i in 0..200u32 {
        a.send(&announce(&[&format!("10.{}.{}.0/24", i / 256, i % 256)])).await;
    }
    b.send(&announce(&["10.200.0.0/24"])).await;
    // Keepalives every second (hold 3 s) keep coming on both sessions,
    // and neither is closed.
    for peer in [&mut a, &mut b] {
        for _ in 0..3 {
            let m = peer.next().await;
            assert!(matches!(m, Message::Keepalive), "expected a KEEPALIVE, got {m:?}");
        }
    }
}

/// Every prefix whose selection changed: what the kernel and every other
/// peer would have seen.
type Seen = Arc<Mutex<Vec<IpNet>>>;

/// A speaker with one peer at `ip`, connect retry short.
async fn speaker_with_peer(ip: IpAddr, port: u16, tune: impl FnOnce(&mut PeerConfig)) -> (Speaker, Seen) {
    let mut cfg = speaker_config(port);
    let seen = Arc::new(Mutex::new(Vec::<IpNet>::new()));
    let sink_seen = seen.clone();
    cfg.route_sink = Some(RouteSink(Arc::new(move |event| {
        if let super::SinkEvent::Changes(changes) = event {
            sink_seen.lock().unwrap().extend(changes.iter().map(|c| c.prefix));
        }
    })));
    let speaker = Speaker::start(cfg).await.expect("speaker");
    let mut pc = PeerConfig::new(ip, PEER_AS);
    pc.connect_retry = Duration::from_millis(200);
    pc.hold_time = 9;
    tune(&mut pc);
    speaker.add_peer(pc).await.expect("peer added");
    (speaker, seen)
}

/// (present, stale) of a prefix's path from the peer.
async fn path_state(speaker: &Speaker, prefix: &str) -> Option<bool> {
    let views = speaker.routes(Some(net(prefix))).await.expect("routes");
    views.first().and_then(|v| v.paths.first()).map(|p| p.stale)
}

/// Restarts the peer: the connection drops, the speaker reconnects, and
/// the new OPEN carries `caps`; a second prefix marks the new session's
/// routes as applied.
async fn restart_with(octet: u8, caps: Vec<Capability>) -> Option<bool> {
    let (l, ip) = listener(octet).await;
    let (speaker, _) = speaker_with_peer(ip, l.local_addr().unwrap().port(), |_| {}).await;
    let mut p = ScriptedPeer::accept(&l, 9, vec![gr(true)]).await;
    p.send(&announce(&["10.1.0.0/24"])).await;
    eventually("the route is in the table", async || {
        path_state(&speaker, "10.1.0.0/24").await == Some(false)
    })
    .await;
    drop(p);
    eventually("the route is kept as stale", async || {
        path_state(&speaker, "10.1.0.0/24").await == Some(true)
    })
    .await;
    let mut p = ScriptedPeer::accept(&l, 9, caps).await;
    p.send(&announce(&["10.2.0.0/24"])).await;
    eventually("the new session's route is in", async || {
        path_state(&speaker, "10.2.0.0/24").await.is_some()
    })
    .await;
    path_state(&speaker, "10.1.0.0/24").await
}

#[tokio::test]
async fn stale_routes_stay_only_when_the_restarted_peer_kept_its_forwarding_state() {
    assert_eq!(
        restart_with(4, vec![gr(true)]).await,
        Some(true),
        "F bit set: kept as stale"
    );
    assert_eq!(
        restart_with(5, vec![gr(false)]).await,
        None,
        "F bit clear: removed at once"
    );
    assert_eq!(restart_with(6, vec![]).await, None, "no capability: removed at once");
}

#[tokio::test]
async fn a_batch_over_the_prefix_limit_is_never_applied_and_the_session_is_held_down() {
    let (l, ip) = listener(9).await;
    let (speaker, seen) = speaker_with_peer(ip, l.local_addr().unwrap().port(), |pc| {
        pc.max_prefix = 5;
        pc.max_prefix_warning_only = false;
        pc.max_prefix_idle_hold = Duration::from_secs(1);
    })
    .await;
    let mut p = ScriptedPeer::accept(&l, 9, vec![]).await;
    p.send(&announce(&["10.9.1.0/24", "10.9.2.0/24", "10.9.3.0/24", "10.9.4.0/24"]))
        .await;
    eventually("the first batch is in", async || {
        path_state(&speaker, "10.9.4.0/24").await.is_some()
    })
    .await;
    p.send(&announce(&["10.9.5.0/24", "10.9.6.0/24"])).await;
    let n = p
        .until(|m| match m {
            Message::Notification(n) => Some(n.clone()),
            _ => None,
        })
        .await;
    let closed_at = Instant::now();
    assert_eq!(
        (n.code, n.subcode),
        (6, 1),
        "Cease / Maximum Number of Prefixes Reached"
    );
    assert_eq!(n.data, [0, 1, 1, 0, 0, 0, 5], "AFI 1, SAFI 1, limit 5");
    let seen = seen.lock().unwrap().clone();
    assert!(seen.contains(&net("10.9.4.0/24")));
    assert!(
        !seen.contains(&net("10.9.5.0/24")) && !seen.contains(&net("10.9.6.0/24")),
        "the batch past the limit reached the FIB: {seen:?}"
    );
    // The speaker connects again only after the idle hold.
    let _p = ScriptedPeer::accept(&l, 9, vec![]).await;
    assert!(
        closed_at.elapsed() >= Duration::from_millis(900),
        "reconnected {:?} after the reset",
        closed_at.elapsed()
    );
    let st = speaker.peers().pop().expect("the peer");
    assert!(
        st.last_notification_sent
            .unwrap_or_default()
            .contains("(6/1): ipv4-unicast, limit 5"),
        "the status shows the NOTIFICATION sent"
    );
}

#[tokio::test]
async fn a_policy_change_that_starts_advertising_a_local_prefix_reports_it_sent() {
    let (l, ip) = listener(10).await;
    let (speaker, _) = speaker_with_peer(ip, l.local_addr().unwrap().port(), |pc| {
        pc.export = crate::policy::PeerPolicy::None;
    })
    .await;
    let local = net("10.250.0.0/24");
    speaker.originate(local, PathAttributes::default()).await.unwrap();
    let mut events = speaker.subscribe();
    let mut p = ScriptedPeer::accept(&l, 9, vec![]).await;
    // End-of-RIB first: nothing is exported under "none".
    let first = p.until(|m| matches!(m, Message::Update(_)).then(|| m.clone())).await;
    assert!(matches!(&first, Message::Update(u) if u.nlri.is_empty()), "{first:?}");
    speaker
        .set_policies(
            ip,
            crate::policy::PeerPolicy::Default,
            crate::policy::PeerPolicy::Default,
        )
        .await
        .unwrap();
    let announced = p
        .until(|m| match m {
            Message::Update(u) if !u.nlri.is_empty() => Some(u.nlri.clone()),
            _ => None,
        })
        .await;
    assert_eq!(announced, vec![Nlri::new(local)]);
    let reported = tokio::time::timeout(BOUND, async {
        loop {
            match events.recv().await {
                Ok(super::SpeakerEvent::LocalPrefixSent {
                    prefix,
                    peer,
                    withdrawn,
                }) => {
                    break (prefix, peer, withdrawn);
                }
                Ok(_) => continue,
                Err(e) => panic!("events: {e}"),
            }
        }
    })
    .await
    .expect("the local prefix is reported sent");
    assert_eq!(reported, (local, ip, false));
}

/// Far more commands for one peer than its task's queue holds (16), all
/// at once: none is lost. 100 route-refresh requests reach the peer as
/// 100 ROUTE-REFRESH messages, and a policy change queued behind them
/// still takes effect (its export difference is sent).
#[tokio::test]
async fn commands_beyond_a_full_peer_queue_wait_in_order() {
    const REQUESTS: usize = 100;
    let (l, ip) = listener(11).await;
    let (speaker, _) = speaker_with_peer(ip, l.local_addr().unwrap().port(), |pc| {
        pc.export = crate::policy::PeerPolicy::None;
    })
    .await;
    let local = net("10.251.0.0/24");
    speaker.originate(local, PathAttributes::default()).await.unwrap();
    let mut p = ScriptedPeer::accept(&l, 9, vec![Capability::RouteRefresh]).await;
    let first = p.until(|m| matches!(m, Message::Update(_)).then(|| m.clone())).await;
    assert!(matches!(&first, Message::Update(u) if u.nlri.is_empty()), "{first:?}");
    // Queued without a pause: the core takes them in one go, the peer
    // task has no turn to drain its queue in between.
    for _ in 0..REQUESTS {
        speaker.request_refresh(ip).await.unwrap();
    }
    let policies = speaker.set_policies(
        ip,
        crate::policy::PeerPolicy::Default,
        crate::policy::PeerPolicy::Default,
    );
    policies.await.unwrap();
    // ROUTE-REFRESH messages and the export's UPDATEs take separate ways
    // out, so their order is not fixed: wait for all of them.
    let mut refreshes = 0;
    let mut announced = None;
    let _ = tokio::time::timeout(BOUND, async {
        while refreshes < REQUESTS || announced.is_none() {
            match p.next().await {
                Message::RouteRefresh(_) => refreshes += 1,
                Message::Update(u) if !u.nlri.is_empty() => announced = Some(u.nlri),
                _ => {}
            }
        }
    })
    .await;
    assert!(
        refreshes >= REQUESTS,
        "{refreshes} of {REQUESTS} refresh requests reached the peer"
    );
    let announced = announced.expect("the policy change's announcement");
    assert_eq!(announced, vec![Nlri::new(local)]);
}

/// A peer's own port (`PeerConfig::port`) is the one dialled, whatever the
/// speaker's default.
#[tokio::test]
async fn a_peer_is_dialled_on_its_own_port() {
    let (l, ip) = listener(12).await;
    let port = l.local_addr().unwrap().port();
    // The speaker's default port points nowhere.
    let (speaker, _) = speaker_with_peer(ip, 9, |pc| pc.port = port).await;
    let _p = ScriptedPeer::accept(&l, 9, vec![]).await;
    eventually("the session on the peer's port", async || {
        speaker
            .peers()
            .iter()
            .any(|s| s.neighbor_address == ip && s.fsm_state == crate::fsm::State::Established)
    })
    .await;
}
