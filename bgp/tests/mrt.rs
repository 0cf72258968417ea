//! Real traffic: every BGP message and RIB entry in the RIPE RIS MRT dumps
//! of `shared/data/mrt` decodes, with the prefix counts asserted (counted
//! independently when the test data was added), and every UPDATE survives
//! a re-encode.

use novanet_bgp::mrt::{self, bgp_message, records, rib_entries};
use novanet_bgp::wire::update::{decode_update, encode_update};
use novanet_bgp::wire::SessionCodec;
use std::collections::HashSet;
use std::io::Read;
use std::path::PathBuf;

fn data(name: &str) -> Vec<u8> {
    let dir = std::env::var_os("NOVANET_MRT_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/mrt"));
    let path = dir.join(name);
    let gz = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e} (set NOVANET_MRT_DIR)", path.display()));
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(&gz[..])
        .read_to_end(&mut out)
        .unwrap();
    out
}

#[derive(Debug, Default, PartialEq, Eq)]
struct Counts {
    messages: usize,
    updates: usize,
    announced: usize,
    withdrawn: usize,
    treat_as_withdraw: usize,
}

fn replay_updates(name: &str) -> Counts {
    let bytes = data(name);
    let mut c = Counts::default();
    for rec in records(&bytes) {
        let rec = rec.expect("MRT record");
        let Some(m) = bgp_message(&rec).expect("BGP message record") else {
            continue;
        };
        c.messages += 1;
        if m.message_type != 2 {
            continue;
        }
        let codec = SessionCodec {
            four_octet_as: m.four_octet_as,
            ..Default::default()
        };
        let u =
            decode_update(m.body, &codec).unwrap_or_else(|e| panic!("UPDATE {} from {}: {e}", c.updates, m.peer_ip));
        c.updates += 1;
        if u.treat_as_withdraw.is_some() {
            c.treat_as_withdraw += 1;
        }
        c.announced += u.announcements().count();
        c.withdrawn += u.withdrawals().count();
        if u.treat_as_withdraw.is_none() && u.discarded.is_empty() {
            let mut buf = bytes::BytesMut::new();
            encode_update(&u, &codec, &mut buf);
            let again = decode_update(&buf, &codec).expect("re-encoded UPDATE decodes");
            assert_eq!(again.attrs, u.attrs);
            assert_eq!(again.nlri, u.nlri);
            assert_eq!(again.withdrawals().count(), u.withdrawals().count());
        }
    }
    c
}

#[test]
fn rrc00_updates_1999_decode() {
    let c = replay_updates("ripe-rrc00-updates.19990903.1041.gz");
    assert_eq!(
        c,
        Counts {
            messages: 24238,
            updates: 24216,
            announced: 65286,
            withdrawn: 25,
            treat_as_withdraw: 0,
        }
    );
}

#[test]
fn rrc15_updates_2010_decode() {
    let c = replay_updates("ripe-rrc15-updates.20100227.1600.gz");
    assert_eq!(
        c,
        Counts {
            messages: 6595,
            updates: 6546,
            announced: 52468,
            withdrawn: 1318,
            treat_as_withdraw: 0,
        }
    );
}

#[test]
fn rrc00_bview_2000_decodes() {
    let bytes = data("ripe-rrc00-bview.20000111.0032.gz");
    let mut peers = Vec::new();
    let mut entries = Vec::new();
    let mut count = 0;
    let mut prefixes = HashSet::new();
    let mut peer_set = HashSet::new();
    for rec in records(&bytes) {
        let rec = rec.expect("MRT record");
        assert_eq!(rec.kind, mrt::TABLE_DUMP);
        entries.clear();
        rib_entries(&rec, &mut peers, &mut entries).expect("RIB entries decode");
        for e in &entries {
            assert!(
                e.attributes.treat_as_withdraw.is_none(),
                "{}: {:?}",
                e.prefix,
                e.attributes.treat_as_withdraw
            );
            assert!(!e.attributes.attrs.as_path.segments.is_empty() || e.peer_as == 0);
            prefixes.insert(e.prefix);
            peer_set.insert(e.peer_ip);
        }
        count += entries.len();
    }
    assert_eq!(count, 452_018);
    assert_eq!(prefixes.len(), 82_377);
    assert!(peer_set.len() >= 5, "several peers: {}", peer_set.len());
}
