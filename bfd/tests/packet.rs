//! Control packet codec: a vector, round trips, authentication, and every
//! discard rule of RFC 5880 6.8.6 that the codec checks.

use bytes::BytesMut;
use novanet_bfd::packet::*;

fn hex(s: &str) -> Vec<u8> {
    let s: String = s.split_whitespace().collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn sample() -> ControlPacket {
    ControlPacket {
        diag: diag::NONE,
        state: State::Up,
        poll: true,
        final_: false,
        control_plane_independent: false,
        demand: false,
        multipoint: false,
        detect_mult: 3,
        my_discriminator: 0x0102_0304,
        your_discriminator: 0x0a0b_0c0d,
        desired_min_tx: 300_000,
        required_min_rx: 100_000,
        required_min_echo_rx: 0,
        auth: None,
    }
}

#[test]
fn vector() {
    // Version 1, diag 0; state Up (3) with Poll; mult 3; length 24.
    let bytes = hex("20 e0 03 18 01020304 0a0b0c0d 000493e0 000186a0 00000000");
    assert_eq!(decode(&bytes).unwrap(), sample());
    let mut out = BytesMut::new();
    sample().encode(&[], &mut out);
    assert_eq!(out.to_vec(), bytes);
}

#[test]
fn simple_password_round_trip() {
    let mut p = sample();
    p.auth = Some(Auth::SimplePassword {
        key_id: 7,
        password: b"secret".to_vec(),
    });
    let mut out = BytesMut::new();
    p.encode(&[], &mut out);
    assert_eq!(out[3] as usize, out.len());
    assert_eq!(decode(&out).unwrap(), p);
}

#[test]
fn keyed_sha1_signs_and_verifies() {
    let mut p = sample();
    p.auth = Some(Auth::KeyedSha1 {
        key_id: 1,
        sequence: 42,
        digest: [0; 20],
        meticulous: true,
    });
    let mut out = BytesMut::new();
    p.encode(b"key", &mut out);
    assert_eq!(out.len(), 24 + 28);
    assert!(verify_sha1(&out, b"key"));
    assert!(!verify_sha1(&out, b"other"));
    let mut tampered = out.to_vec();
    tampered[2] = 5;
    assert!(!verify_sha1(&tampered, b"key"));
    let Some(Auth::KeyedSha1 {
        sequence, meticulous, ..
    }) = decode(&out).unwrap().auth
    else {
        panic!()
    };
    assert_eq!((sequence, meticulous), (42, true));
}

#[test]
fn discard_rules() {
    let good = hex("20 c0 03 18 01020304 00000000 000f4240 000f4240 00000000");
    assert!(decode(&good).is_ok());
    let mut v = good.clone();
    v[0] = 0x40;
    assert_eq!(decode(&v), Err(PacketError::BadVersion));
    let mut v = good.clone();
    v[3] = 30;
    assert_eq!(decode(&v), Err(PacketError::BadLength));
    let mut v = good.clone();
    v[3] = 20;
    assert_eq!(decode(&v), Err(PacketError::BadLength));
    let mut v = good.clone();
    v[2] = 0;
    assert_eq!(decode(&v), Err(PacketError::ZeroDetectMult));
    let mut v = good.clone();
    v[1] |= 1;
    assert_eq!(decode(&v), Err(PacketError::Multipoint));
    let mut v = good.clone();
    v[4..8].copy_from_slice(&[0, 0, 0, 0]);
    assert_eq!(decode(&v), Err(PacketError::ZeroMyDiscriminator));
    assert_eq!(decode(&good[..20]), Err(PacketError::TooShort));
    // Authentication bit without a usable section.
    let mut v = good.clone();
    v[1] |= 0x04;
    v[3] = 27;
    v.extend_from_slice(&[1, 3, 0]);
    assert_eq!(decode(&v), Err(PacketError::BadAuth));
}

mod property {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn round_trip(diag_code in 0u8..9, state in 0u8..4, poll: bool, fin: bool, mult in 1u8.., my in 1u32.., your: u32, tx: u32, rx: u32) {
            let p = ControlPacket {
                diag: diag_code,
                state: [State::AdminDown, State::Down, State::Init, State::Up][state as usize],
                poll, final_: fin, control_plane_independent: false, demand: false, multipoint: false,
                detect_mult: mult, my_discriminator: my, your_discriminator: your,
                desired_min_tx: tx, required_min_rx: rx, required_min_echo_rx: 0, auth: None,
            };
            let mut out = BytesMut::new();
            p.encode(&[], &mut out);
            prop_assert_eq!(decode(&out).unwrap(), p);
        }

        #[test]
        fn never_panics(bytes in prop::collection::vec(any::<u8>(), 0..80)) {
            let _ = decode(&bytes);
        }
    }
}
