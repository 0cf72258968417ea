//! Router Advertisements and Solicitations (RFC 4861 4.1, 4.2, 6.1) as
//! BGP unnumbered uses them: a router's advertisement tells the link its
//! link-local address. Ours say "no default router" (lifetime 0), so hosts
//! never route through a node because of them. And which sender of a link
//! is its BGP neighbor ([`LinkNeighbor`]).

use std::net::Ipv6Addr;
use std::time::{Duration, Instant};

pub const ROUTER_SOLICITATION: u8 = 133;
pub const ROUTER_ADVERTISEMENT: u8 = 134;

/// RFC 4861 6.1: Neighbor Discovery messages are sent with hop limit 255,
/// so one that arrives with less came from beyond the link.
pub const HOP_LIMIT: u8 = 255;

/// Our Router Advertisement: no default router (router lifetime 0), no
/// prefixes, no options; the checksum is the kernel's (raw ICMPv6 sockets
/// compute it).
pub fn advertisement() -> [u8; 16] {
    let mut p = [0u8; 16];
    p[0] = ROUTER_ADVERTISEMENT;
    p
}

/// A Router Solicitation: routers on the link answer with an advertisement
/// at once, so a starting agent need not wait for their next one.
pub fn solicitation() -> [u8; 8] {
    let mut p = [0u8; 8];
    p[0] = ROUTER_SOLICITATION;
    p
}

/// A received Neighbor Discovery message of the two kinds we read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Received {
    /// A router's advertisement, with its router lifetime in seconds.
    Advertisement {
        router_lifetime: u16,
    },
    Solicitation,
}

/// Checks a received ICMPv6 message as RFC 4861 6.1.1 and 6.1.2 ask: hop
/// limit 255, code 0, long enough, every option of non-zero length and
/// inside the message. The source (link-local) is the caller's to check.
pub fn parse(packet: &[u8], hop_limit: Option<u8>) -> Result<Received, &'static str> {
    if hop_limit != Some(HOP_LIMIT) {
        return Err("hop limit is not 255: sent from beyond the link");
    }
    let (&kind, rest) = packet.split_first().ok_or("empty message")?;
    if rest.first() != Some(&0) {
        return Err("ICMPv6 code is not 0");
    }
    let options_at = match kind {
        ROUTER_ADVERTISEMENT => 16,
        ROUTER_SOLICITATION => 8,
        _ => return Err("not a router advertisement or solicitation"),
    };
    if packet.len() < options_at {
        return Err("shorter than its fixed part");
    }
    let mut options = &packet[options_at..];
    while !options.is_empty() {
        let len = *options.get(1).ok_or("truncated option")? as usize * 8;
        if len == 0 {
            return Err("option of length 0");
        }
        options = options.get(len..).ok_or("option longer than the message")?;
    }
    Ok(match kind {
        ROUTER_ADVERTISEMENT => Received::Advertisement {
            router_lifetime: u16::from_be_bytes([packet[6], packet[7]]),
        },
        _ => Received::Solicitation,
    })
}

/// A neighbor heard from for this long no longer holds the link: another
/// router's advertisements are taken instead (a replaced ToR, a new MAC
/// and so a new link-local address). Routers advertise every few seconds
/// for unnumbered peering (FRR: 10 s).
pub const SILENT_AFTER: Duration = Duration::from_secs(60);

/// The BGP neighbor of one point-to-point link: the first router heard,
/// kept while it keeps advertising.
#[derive(Debug, Default)]
pub struct LinkNeighbor {
    current: Option<(Ipv6Addr, Instant)>,
}

/// What hearing an advertisement means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Heard {
    /// The link's neighbor is now this address (the first heard, or the
    /// previous one fell silent).
    New(Ipv6Addr),
    /// The neighbor we have.
    Same,
    /// Another router while ours still advertises: a link that is not
    /// point-to-point. Ignored.
    Other { current: Ipv6Addr },
}

impl LinkNeighbor {
    pub fn heard(&mut self, from: Ipv6Addr, now: Instant) -> Heard {
        match self.current {
            Some((addr, _)) if addr == from => {
                self.current = Some((from, now));
                Heard::Same
            }
            Some((addr, last)) if now.saturating_duration_since(last) < SILENT_AFTER => Heard::Other { current: addr },
            _ => {
                self.current = Some((from, now));
                Heard::New(from)
            }
        }
    }

    pub fn address(&self) -> Option<Ipv6Addr> {
        self.current.map(|(a, _)| a)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An advertisement FRR 8.4's zebra sent for `neighbor eth0 interface`
    /// (router lifetime 30 s, a source link-layer address option).
    const FRR_RA: [u8; 24] = [
        0x86, 0x00, 0xf9, 0x27, 0x40, 0x00, 0x00, 0x1e, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, 0x01, 0x32, 0x95, 0x61, 0xe7,
        0x0d, 0xf4,
    ];

    #[test]
    fn a_router_s_advertisement_is_read_with_its_lifetime() {
        assert_eq!(
            parse(&FRR_RA, Some(255)),
            Ok(Received::Advertisement { router_lifetime: 30 })
        );
        assert_eq!(parse(&solicitation(), Some(255)), Ok(Received::Solicitation));
    }

    #[test]
    fn ours_says_no_default_router_and_reads_back() {
        let ra = advertisement();
        assert_eq!(
            parse(&ra, Some(255)),
            Ok(Received::Advertisement { router_lifetime: 0 })
        );
    }

    #[test]
    fn messages_rfc_4861_says_to_drop_are_refused() {
        assert!(parse(&FRR_RA, Some(254)).unwrap_err().contains("hop limit"));
        assert!(parse(&FRR_RA, None).is_err());
        let mut code = FRR_RA;
        code[1] = 1;
        assert!(parse(&code, Some(255)).unwrap_err().contains("code"));
        assert!(parse(&FRR_RA[..12], Some(255)).unwrap_err().contains("shorter"));
        let mut zero = FRR_RA;
        zero[17] = 0;
        assert!(parse(&zero, Some(255)).unwrap_err().contains("length 0"));
        let mut long = FRR_RA;
        long[17] = 2;
        assert!(parse(&long, Some(255)).unwrap_err().contains("longer"));
        assert!(parse(&[128, 0, 0, 0, 0, 0, 0, 0], Some(255)).is_err());
        assert!(parse(&[], Some(255)).is_err());
    }

    #[test]
    fn the_first_router_holds_the_link_until_it_falls_silent() {
        let (a, b): (Ipv6Addr, Ipv6Addr) = ("fe80::a".parse().unwrap(), "fe80::b".parse().unwrap());
        let t0 = Instant::now();
        let mut n = LinkNeighbor::default();
        assert_eq!(n.heard(a, t0), Heard::New(a));
        assert_eq!(n.heard(a, t0 + Duration::from_secs(10)), Heard::Same);
        assert_eq!(n.heard(b, t0 + Duration::from_secs(20)), Heard::Other { current: a });
        assert_eq!(n.address(), Some(a));
        // a was last heard at 10 s; at 70 s it has been silent for 60 s.
        assert_eq!(n.heard(b, t0 + Duration::from_secs(70)), Heard::New(b));
        assert_eq!(n.address(), Some(b));
        assert_eq!(n.heard(a, t0 + Duration::from_secs(71)), Heard::Other { current: b });
    }
}
