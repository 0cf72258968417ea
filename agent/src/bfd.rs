//! The BFD engine of the node, and the rule that ties its sessions to BGP
//! (a peer's session is built with the peer, in [`crate::peers::spec`]):
//! when a session that was Up goes Down, the BGP session is closed at once
//! (Cease/BFD Down) and its routes leave the kernel. A BFD session that was
//! never Up never takes BGP down (RFC 5882), nor does a Down while BGP is
//! not established (a reset would cut a connection that is opening), nor a
//! Down signalled by the neighbor's restarted BFD once BGP has already gone
//! down and come back with the restarted neighbor: that session is the new
//! one, and closing it would throw away what graceful restart keeps.

use novanet_bfd::packet::State;
use novanet_bfd::transport::{Bfd, MULTIHOP_PORT, SINGLE_HOP_PORT};
use novanet_bgp::speaker::Speaker;
use novanet_bgp::wire::error::{code, subcode};
use novanet_bgp::wire::Notification;
use std::collections::HashMap;
use std::net::IpAddr;

/// Starts the BFD engine (sessions are added by the peer applier and the
/// API) and the task that closes a BGP session when its BFD session goes
/// down.
pub async fn start(speaker: &Speaker) -> anyhow::Result<Bfd> {
    let bfd = Bfd::start(SINGLE_HOP_PORT, MULTIHOP_PORT).map_err(|e| anyhow::anyhow!("BFD: {e}"))?;
    let mut events = bfd.subscribe();
    let speaker = speaker.clone();
    tokio::spawn(async move {
        // BGP session downs of each peer when its BFD session last came Up.
        let mut bgp_downs_at_up: HashMap<IpAddr, u64> = HashMap::new();
        loop {
            match events.recv().await {
                Ok(ev) if ev.to == State::Up => {
                    bgp_downs_at_up.insert(ev.key.peer, bgp_downs(&speaker, ev.key.peer).0);
                }
                Ok(ev) if ev.from == State::Up && ev.to == State::Down => {
                    let (downs, established) = bgp_downs(&speaker, ev.key.peer);
                    let seen = BgpSeen {
                        established,
                        renewed: bgp_downs_at_up.get(&ev.key.peer).is_some_and(|at_up| downs > *at_up),
                    };
                    let diagnostic = novanet_bfd::packet::diag::name(ev.diag);
                    match on_bfd_down(ev.neighbor_restarted, seen) {
                        OnBfdDown::NothingToClose => {
                            tracing::info!(peer = %ev.key.peer, diagnostic, "BFD down; the BGP session is not established")
                        }
                        OnBfdDown::KeepRenewed => {
                            tracing::info!(peer = %ev.key.peer, "BFD: the neighbor restarted and its BGP session is already the new one; kept")
                        }
                        OnBfdDown::Close => {
                            tracing::warn!(peer = %ev.key.peer, diagnostic, "BFD down: closing the BGP session");
                            let n = Notification::new(code::CEASE, subcode::BFD_DOWN);
                            let _ = speaker.reset_peer(ev.key.peer, n).await;
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

/// The BGP session as a BFD session's Down finds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BgpSeen {
    pub established: bool,
    /// BGP went down and came back since the BFD session was last Up.
    pub renewed: bool,
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
}

/// The rule of RFC 5882 as this agent applies it.
pub fn on_bfd_down(neighbor_restarted: bool, bgp: BgpSeen) -> OnBfdDown {
    if !bgp.established {
        OnBfdDown::NothingToClose
    } else if neighbor_restarted && bgp.renewed {
        OnBfdDown::KeepRenewed
    } else {
        OnBfdDown::Close
    }
}

/// How many times the peer's BGP session went down, and whether it is
/// established now.
fn bgp_downs(speaker: &Speaker, peer: IpAddr) -> (u64, bool) {
    let Some(status) = speaker.peers().into_iter().find(|p| p.neighbor_address == peer) else {
        return (0, false);
    };
    let established = status.fsm_state == novanet_bgp::fsm::State::Established;
    (
        status.established_transitions.saturating_sub(established as u64),
        established,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bfd_down_closes_only_an_established_session_of_a_failed_path() {
        let seen = |established, renewed| BgpSeen { established, renewed };
        // The path failed (detection time, or the same neighbor said Down).
        assert_eq!(on_bfd_down(false, seen(true, false)), OnBfdDown::Close);
        assert_eq!(on_bfd_down(false, seen(true, true)), OnBfdDown::Close);
        // The neighbor restarted but BGP has not noticed: its old session
        // is dead, close it.
        assert_eq!(on_bfd_down(true, seen(true, false)), OnBfdDown::Close);
        // The neighbor restarted and BGP already has its new session.
        assert_eq!(on_bfd_down(true, seen(true, true)), OnBfdDown::KeepRenewed);
        // No established session: the restarted neighbor's may be opening.
        for (restarted, renewed) in [(false, false), (true, false), (true, true)] {
            assert_eq!(on_bfd_down(restarted, seen(false, renewed)), OnBfdDown::NothingToClose);
        }
    }
}
