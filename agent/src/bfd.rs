//! The BFD engine of the node, and the rule that ties its sessions to BGP
//! (a peer's session is built with the peer, in [`crate::peers::spec`]):
//! when a session that was Up goes Down, the BGP session is closed at once
//! (Cease/BFD Down) and its routes leave the kernel. A BFD session that was
//! never Up never takes BGP down (RFC 5882), nor does a Down while BGP is
//! not established (a reset would cut a connection that is opening), nor a
//! Down signalled by the neighbor's restarted BFD once BGP has come back
//! with the restarted neighbor: that session is the new one, and closing it
//! would throw away what graceful restart keeps. A Down the neighbor
//! signals just after BGP came up on a fresh BFD session (FRR 8.4 starts
//! its BFD session over as its BGP session first comes up) closes BGP only
//! if BFD is not Up again within [`RESYNC`]. A neighbor that takes its
//! session down administratively (AdminDown) closes nothing: RFC 5882
//! section 3.2 says that is no failure of the path.
//!
//! A new BGP session run with BFD starts once its BFD session is Up (at
//! most [`crate::peers::apply::BFD_START_HOLD`] later), so the neighbor has
//! dropped any BFD session of this node's previous run before it.
//!
//! A session that BFD keeps taking down is held down before it starts
//! again, longer each time (RFC 5882 section 3.2, [`Flaps`]); the close
//! itself is never delayed.

use novanet_bfd::packet::State;
use novanet_bfd::transport::{Bfd, MULTIHOP_PORT, SINGLE_HOP_PORT};
use novanet_bgp::speaker::Speaker;
use novanet_bgp::wire::error::{code, subcode};
use novanet_bgp::wire::Notification;
use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::time::Duration;
use tokio::time::Instant;

/// Starts the BFD engine (sessions are added by the peer applier and the
/// API) and the task that closes a BGP session when its BFD session goes
/// down.
pub async fn start(speaker: &Speaker) -> anyhow::Result<Bfd> {
    let bfd = Bfd::start(SINGLE_HOP_PORT, MULTIHOP_PORT).map_err(|e| anyhow::anyhow!("BFD: {e}"))?;
    let mut events = bfd.subscribe();
    let speaker = speaker.clone();
    tokio::spawn(async move {
        // Each peer's BGP session (ups and downs) when its BFD session
        // last came Up, and when that was.
        let mut at_up: HashMap<IpAddr, (BgpCounts, Instant)> = HashMap::new();
        let mut flaps: HashMap<IpAddr, Flaps> = HashMap::new();
        // Sessions given until then to come Up again (AwaitResync).
        let mut resync: HashMap<IpAddr, Instant> = HashMap::new();
        loop {
            let next = resync.values().min().copied();
            let ev = tokio::select! {
                ev = events.recv() => ev,
                _ = sleep_until(next) => {
                    let now = Instant::now();
                    let due: Vec<IpAddr> = resync.iter().filter(|(_, t)| **t <= now).map(|(p, _)| *p).collect();
                    for peer in due {
                        resync.remove(&peer);
                        if bgp_counts(&speaker, peer).established {
                            tracing::warn!(%peer, "BFD not Up again after the neighbor started it over: closing the BGP session");
                            let hold = flaps.entry(peer).or_default().record(now);
                            close(&speaker, peer, hold).await;
                        }
                    }
                    continue;
                }
            };
            match ev {
                Ok(ev) if ev.to == State::Up => {
                    at_up.insert(ev.key.peer, (bgp_counts(&speaker, ev.key.peer), Instant::now()));
                    if resync.remove(&ev.key.peer).is_some() {
                        tracing::info!(peer = %ev.key.peer, "BFD Up again; the BGP session stays");
                    }
                    // A new BGP session waits for this (BFD_START_HOLD).
                    let _ = speaker.release_peer(ev.key.peer).await;
                }
                Ok(ev) if ev.from == State::Up && ev.to == State::Down => {
                    let now = bgp_counts(&speaker, ev.key.peer);
                    let up = at_up.get(&ev.key.peer);
                    let seen = BgpSeen {
                        established: now.established,
                        renewed: up.is_some_and(|(at, _)| now.downs() > at.downs()),
                        came_up: up.is_some_and(|(at, _)| now.ups > at.ups),
                    };
                    let down = DownSeen {
                        neighbor_restarted: ev.neighbor_restarted,
                        signalled: ev.diag == novanet_bfd::packet::diag::NEIGHBOR_SIGNALED_DOWN,
                        admin_down: ev.neighbor_admin_down,
                        up_for: up.map_or(Duration::MAX, |(_, t)| t.elapsed()),
                    };
                    let diagnostic = novanet_bfd::packet::diag::name(ev.diag);
                    match on_bfd_down(down, seen) {
                        OnBfdDown::NothingToClose => {
                            tracing::info!(peer = %ev.key.peer, diagnostic, "BFD down; the BGP session is not established")
                        }
                        OnBfdDown::NeighborAdminDown => {
                            tracing::info!(peer = %ev.key.peer, "BFD: the neighbor took its session down administratively; the BGP session stays")
                        }
                        OnBfdDown::KeepRenewed => {
                            tracing::info!(peer = %ev.key.peer, "BFD: the neighbor restarted and its BGP session is already the new one; kept")
                        }
                        OnBfdDown::AwaitResync => {
                            tracing::info!(peer = %ev.key.peer, seconds = RESYNC.as_secs(), "BFD: the neighbor started its session over as BGP came up; the BGP session stays if BFD is Up again in time");
                            resync.insert(ev.key.peer, Instant::now() + RESYNC);
                        }
                        OnBfdDown::Close => {
                            tracing::warn!(peer = %ev.key.peer, diagnostic, "BFD down: closing the BGP session");
                            let hold = flaps.entry(ev.key.peer).or_default().record(Instant::now());
                            close(&speaker, ev.key.peer, hold).await;
                        }
                    }
                }
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(_) => return,
            }
        }
    });
    Ok(bfd)
}

/// Closes the peer's BGP session (Cease/BFD Down), held down `hold` before
/// it starts again.
async fn close(speaker: &Speaker, peer: IpAddr, hold: Option<Duration>) {
    if let Some(hold) = hold {
        tracing::warn!(%peer, ?hold, "BFD keeps taking this BGP session down: it is held down before it starts again (RFC 5882 section 3.2)");
    }
    let n = Notification::new(code::CEASE, subcode::BFD_DOWN);
    let _ = speaker.reset_peer(peer, n, hold).await;
}

/// The BGP closes BFD caused for one peer in the last [`FLAP_WINDOW`]:
/// beyond [`FREE_FLAPS`] of them, each close holds the session down,
/// twice as long as the one before, up to [`MAX_HOLD`].
#[derive(Debug, Default)]
pub struct Flaps {
    closes: VecDeque<Instant>,
}

/// How far back BFD-caused closes count.
pub const FLAP_WINDOW: Duration = Duration::from_secs(60);
/// Closes in the window that start again at once (a failover and its
/// return are not flapping).
pub const FREE_FLAPS: usize = 2;
/// The first hold-down, and the longest.
pub const FIRST_HOLD: Duration = Duration::from_secs(2);
pub const MAX_HOLD: Duration = Duration::from_secs(60);

impl Flaps {
    /// Counts a close at `now`; returns how long the session is held down.
    pub fn record(&mut self, now: Instant) -> Option<Duration> {
        while self
            .closes
            .front()
            .is_some_and(|t| now.duration_since(*t) > FLAP_WINDOW)
        {
            self.closes.pop_front();
        }
        self.closes.push_back(now);
        let beyond = self.closes.len().checked_sub(FREE_FLAPS + 1)?;
        Some(FIRST_HOLD.saturating_mul(1 << beyond.min(16)).min(MAX_HOLD))
    }
}

/// Sleeps until `t`; for ever without one.
async fn sleep_until(t: Option<Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

/// How long a BFD session may have been Up when its neighbor signals Down
/// right after the BGP session came up, and how long it then has to come
/// Up again before the BGP session is closed. FRR 8.4 makes its BFD session
/// again (with the local address it then knows) as its BGP session first
/// comes up; since a new BGP session here waits for BFD Up, that Down
/// follows such a start by milliseconds.
pub const RESYNC: Duration = Duration::from_secs(2);

/// The BFD Down as it came.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DownSeen {
    /// A new discriminator of the neighbor signalled it.
    pub neighbor_restarted: bool,
    /// The neighbor signalled it (not our detection time).
    pub signalled: bool,
    /// The neighbor's session went AdminDown.
    pub admin_down: bool,
    /// How long the BFD session had been Up.
    pub up_for: Duration,
}

/// The BGP session as a BFD session's Down finds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BgpSeen {
    pub established: bool,
    /// BGP went down and came back since the BFD session was last Up.
    pub renewed: bool,
    /// BGP came up since the BFD session was last Up.
    pub came_up: bool,
}

/// What a BFD session going from Up to Down does to its BGP session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnBfdDown {
    /// Closed at once (Cease/BFD Down): the path failed.
    Close,
    /// Not established: nothing to close, and a reset would cut a
    /// connection that is opening (perhaps the restarted neighbor's).
    NothingToClose,
    /// The neighbor's BFD restarted and BGP has already re-established
    /// with it: that session is kept.
    KeepRenewed,
    /// The neighbor signalled Down within [`RESYNC`] of the BFD session
    /// coming Up, after BGP came up: it is starting its BFD session over
    /// for that BGP session. Closed only if BFD is not Up again in
    /// [`RESYNC`].
    AwaitResync,
    /// The neighbor took its BFD session down administratively: BGP is
    /// left as it is (RFC 5882 section 3.2).
    NeighborAdminDown,
}

/// The rule of RFC 5882 as this agent applies it.
pub fn on_bfd_down(down: DownSeen, bgp: BgpSeen) -> OnBfdDown {
    if down.admin_down {
        OnBfdDown::NeighborAdminDown
    } else if !bgp.established {
        OnBfdDown::NothingToClose
    } else if down.neighbor_restarted && bgp.renewed {
        OnBfdDown::KeepRenewed
    } else if down.signalled && bgp.came_up && down.up_for < RESYNC {
        OnBfdDown::AwaitResync
    } else {
        OnBfdDown::Close
    }
}

/// How many times a peer's BGP session came up, and whether it is up.
#[derive(Debug, Clone, Copy, Default)]
struct BgpCounts {
    ups: u64,
    established: bool,
}

impl BgpCounts {
    /// How many times it went down.
    fn downs(&self) -> u64 {
        self.ups.saturating_sub(self.established as u64)
    }
}

fn bgp_counts(speaker: &Speaker, peer: IpAddr) -> BgpCounts {
    let Some(status) = speaker.peers().into_iter().find(|p| p.neighbor_address == peer) else {
        return BgpCounts::default();
    };
    BgpCounts {
        ups: status.established_transitions,
        established: status.fsm_state == novanet_bgp::fsm::State::Established,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bfd_down_closes_only_an_established_session_of_a_failed_path() {
        let seen = |established, renewed| BgpSeen {
            established,
            renewed,
            came_up: renewed,
        };
        let down = |neighbor_restarted| DownSeen {
            neighbor_restarted,
            signalled: true,
            admin_down: false,
            up_for: Duration::from_secs(600),
        };
        // The path failed (detection time, or the same neighbor said Down).
        assert_eq!(on_bfd_down(down(false), seen(true, false)), OnBfdDown::Close);
        assert_eq!(on_bfd_down(down(false), seen(true, true)), OnBfdDown::Close);
        // The neighbor restarted but BGP has not noticed: its old session
        // is dead, close it.
        assert_eq!(on_bfd_down(down(true), seen(true, false)), OnBfdDown::Close);
        // The neighbor restarted and BGP already has its new session.
        assert_eq!(on_bfd_down(down(true), seen(true, true)), OnBfdDown::KeepRenewed);
        // No established session: the restarted neighbor's may be opening.
        for (r, renewed) in [(false, false), (true, false), (true, true)] {
            assert_eq!(on_bfd_down(down(r), seen(false, renewed)), OnBfdDown::NothingToClose);
        }
    }

    /// RFC 5882 section 3.2: a neighbor's AdminDown is no failure, whatever
    /// else holds.
    #[test]
    fn a_neighbor_s_admin_down_closes_nothing() {
        for (established, renewed) in [(true, false), (true, true), (false, false)] {
            let seen = BgpSeen {
                established,
                renewed,
                came_up: renewed,
            };
            let down = DownSeen {
                neighbor_restarted: false,
                signalled: true,
                admin_down: true,
                up_for: Duration::from_secs(600),
            };
            assert_eq!(on_bfd_down(down, seen), OnBfdDown::NeighborAdminDown);
        }
    }

    /// FRR starting its BFD session over as its BGP session first comes
    /// up: the Down it signals then is given time; the same Down long
    /// after, or our own detection time, closes at once.
    #[test]
    fn a_neighbor_starting_bfd_over_as_bgp_comes_up_gets_time() {
        let first_up = BgpSeen {
            established: true,
            renewed: false,
            came_up: true,
        };
        let signalled = |up_ms| DownSeen {
            neighbor_restarted: false,
            signalled: true,
            admin_down: false,
            up_for: Duration::from_millis(up_ms),
        };
        assert_eq!(on_bfd_down(signalled(3), first_up), OnBfdDown::AwaitResync);
        assert_eq!(on_bfd_down(signalled(5_000), first_up), OnBfdDown::Close);
        let detected = DownSeen {
            signalled: false,
            ..signalled(3)
        };
        assert_eq!(on_bfd_down(detected, first_up), OnBfdDown::Close);
        // BGP was up before BFD: not this case.
        let before = BgpSeen {
            came_up: false,
            ..first_up
        };
        assert_eq!(on_bfd_down(signalled(3), before), OnBfdDown::Close);
    }

    #[test]
    fn a_session_that_keeps_flapping_is_held_down_longer_each_time() {
        let mut f = Flaps::default();
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        // A failover and another one later: no hold.
        assert_eq!(f.record(at(0)), None);
        assert_eq!(f.record(at(10)), None);
        // Flapping: 2 s, 4 s, 8 s ...
        assert_eq!(f.record(at(12)), Some(Duration::from_secs(2)));
        assert_eq!(f.record(at(15)), Some(Duration::from_secs(4)));
        assert_eq!(f.record(at(20)), Some(Duration::from_secs(8)));
        for s in 21..40 {
            assert!(f.record(at(s)).unwrap() <= MAX_HOLD);
        }
        assert_eq!(f.record(at(41)), Some(MAX_HOLD));
        // A minute without a close: the count starts over.
        assert_eq!(f.record(at(200)), None);
    }
}
