#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]
//! The multi-recipient envelope (`docs/PROTOCOL.md` 16.7): round trips,
//! each part opening only for its own device, tampering, small-order
//! ephemeral keys and strict decoding.

mod common;

use common::MustNotDraw;
use rand_chacha::rand_core::{CryptoRng, Error as RandError, RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;
use tacit::error::WireError;
use tacit::group::multi::{
    self, GroupEnvelope, MultiError, SharedPayload, MAX_GROUP_ENVELOPE_LEN, MAX_PLAINTEXT_LEN,
    MAX_RECIPIENTS,
};
use tacit::{Address, IdentityKey, IdentityKeyPair};

/// Recipient devices: key pair and address.
fn devices(n: usize) -> Vec<(IdentityKeyPair, Address)> {
    (0..n)
        .map(|i| {
            let seed = [u8::try_from(i % 250).unwrap() + 1; 32];
            let user = format!("user{}", i / 3);
            let device = u32::try_from(i % 3).unwrap() + 1;
            (
                IdentityKeyPair::from_seed(&seed),
                Address::new(&user, device).unwrap(),
            )
        })
        .collect()
}

fn list(devices: &[(IdentityKeyPair, Address)]) -> Vec<(Address, IdentityKey)> {
    devices
        .iter()
        .map(|(k, a)| (a.clone(), k.public_key()))
        .collect()
}

fn rng() -> ChaCha20Rng {
    ChaCha20Rng::seed_from_u64(16)
}

const MESSAGE: &[u8] = b"an encoded group message, opaque to this layer";

/// The envelope of recipient `i`.
fn envelope(sealed: &multi::MultiSealed, i: usize) -> Vec<u8> {
    sealed
        .shared
        .envelope_for(&sealed.parts[i].wrapped_key)
        .to_bytes()
}

#[test]
fn every_recipient_opens_its_own_envelope() {
    let devices = devices(5);
    let sealed = multi::seal(MESSAGE, &list(&devices), &mut rng()).unwrap();
    assert_eq!(sealed.parts.len(), 5);
    for (i, (key, address)) in devices.iter().enumerate() {
        assert_eq!(&sealed.parts[i].address, address);
        let opened = multi::open(key, address, &envelope(&sealed, i)).unwrap();
        assert_eq!(opened, MESSAGE);
    }
    // One shared payload: the message encrypted once, its tag appended.
    assert_eq!(sealed.shared.payload().len(), MESSAGE.len() + 16);
    assert_ne!(&sealed.shared.payload()[..MESSAGE.len()], MESSAGE);
}

#[test]
fn an_empty_and_a_largest_plaintext_round_trip() {
    let devices = devices(2);
    for plaintext in [Vec::new(), vec![7u8; MAX_PLAINTEXT_LEN]] {
        let sealed = multi::seal(&plaintext, &list(&devices), &mut rng()).unwrap();
        let bytes = envelope(&sealed, 1);
        assert!(bytes.len() <= MAX_GROUP_ENVELOPE_LEN);
        assert_eq!(
            multi::open(&devices[1].0, &devices[1].1, &bytes).unwrap(),
            plaintext
        );
    }
}

#[test]
fn a_part_does_not_open_for_another_device_or_address() {
    let devices = devices(4);
    let sealed = multi::seal(MESSAGE, &list(&devices), &mut rng()).unwrap();
    for i in 0..4 {
        for (j, (key, address)) in devices.iter().enumerate() {
            if i != j {
                assert_eq!(
                    multi::open(key, address, &envelope(&sealed, i)),
                    Err(MultiError::DoesNotOpen),
                    "part {i} opened for device {j}"
                );
            }
        }
    }
    // The right key at another address (the address is in W_i).
    let (key, _) = &devices[0];
    let elsewhere = Address::new("user0", 9).unwrap();
    assert_eq!(
        multi::open(key, &elsewhere, &envelope(&sealed, 0)),
        Err(MultiError::DoesNotOpen)
    );
}

/// Flips one bit of a field of recipient 0's envelope and checks that it
/// no longer opens.
#[test]
fn a_tampered_part_payload_or_ephemeral_key_does_not_open() {
    let devices = devices(2);
    let (key, address) = &devices[0];
    let sealed = multi::seal(MESSAGE, &list(&devices), &mut rng()).unwrap();
    let good = sealed.shared.envelope_for(&sealed.parts[0].wrapped_key);
    // Offsets of each field's value in the canonical encoding:
    // version (2 bytes), ephemeral_key (2 + 32), wrapped_key (2 + 32),
    // payload (2 + len).
    let bytes = good.to_bytes();
    for (name, offset) in [
        ("ephemeral_key", 4),
        ("ephemeral_key end", 4 + 31),
        ("wrapped_key", 38),
        ("wrapped_key end", 38 + 31),
        ("payload", 72),
        ("tag", bytes.len() - 1),
    ] {
        let mut tampered = bytes.clone();
        tampered[offset] ^= 0x01;
        let result = multi::open(key, address, &tampered);
        assert_eq!(result, Err(MultiError::DoesNotOpen), "{name}");
    }
    // The untampered bytes open.
    assert_eq!(multi::open(key, address, &bytes).unwrap(), MESSAGE);
}

#[test]
fn a_small_order_ephemeral_key_is_refused() {
    let devices = devices(1);
    let (key, address) = &devices[0];
    let sealed = multi::seal(MESSAGE, &list(&devices), &mut rng()).unwrap();
    let bytes = envelope(&sealed, 0);
    // X25519 points of small order: 0, 1, and a point of order 8.
    let order_8 =
        hex::decode("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800").unwrap();
    for point in [
        vec![0u8; 32],
        {
            let mut one = vec![0u8; 32];
            one[0] = 1;
            one
        },
        order_8,
    ] {
        let mut tampered = bytes.clone();
        tampered[4..36].copy_from_slice(&point);
        assert_eq!(
            multi::open(key, address, &tampered),
            Err(MultiError::InvalidEphemeralKey)
        );
    }
}

#[test]
fn sealing_draws_64_bytes_in_one_call() {
    struct Counting(ChaCha20Rng, Vec<usize>);
    impl RngCore for Counting {
        fn next_u32(&mut self) -> u32 {
            unreachable!()
        }
        fn next_u64(&mut self) -> u64 {
            unreachable!()
        }
        fn fill_bytes(&mut self, dest: &mut [u8]) {
            self.1.push(dest.len());
            self.0.fill_bytes(dest);
        }
        fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), RandError> {
            self.fill_bytes(dest);
            Ok(())
        }
    }
    impl CryptoRng for Counting {}
    let mut counting = Counting(rng(), Vec::new());
    let a = multi::seal(MESSAGE, &list(&devices(3)), &mut counting).unwrap();
    assert_eq!(counting.1, vec![64]);
    // Fresh randomness gives a fresh ephemeral key and payload.
    let b = multi::seal(MESSAGE, &list(&devices(3)), &mut counting).unwrap();
    assert_ne!(a.shared.ephemeral_key(), b.shared.ephemeral_key());
    assert_ne!(a.shared.payload(), b.shared.payload());
}

#[test]
fn bad_recipient_lists_and_plaintexts_are_refused_before_drawing() {
    assert_eq!(
        multi::seal(MESSAGE, &[], &mut MustNotDraw),
        Err(MultiError::NoRecipients)
    );
    let key = IdentityKeyPair::from_seed(&[3; 32]).public_key();
    let many: Vec<_> = (0..=MAX_RECIPIENTS)
        .map(|i| (Address::new(&format!("u{i}"), 1).unwrap(), key))
        .collect();
    assert_eq!(
        multi::seal(MESSAGE, &many, &mut MustNotDraw),
        Err(MultiError::TooManyRecipients {
            count: MAX_RECIPIENTS + 1,
            max: MAX_RECIPIENTS
        })
    );
    let mut twice = list(&devices(4));
    twice.push(twice[2].clone());
    assert_eq!(
        multi::seal(MESSAGE, &twice, &mut MustNotDraw),
        Err(MultiError::DuplicateRecipient { index: 4 })
    );
    assert_eq!(
        multi::seal(
            &vec![0; MAX_PLAINTEXT_LEN + 1],
            &list(&devices(1)),
            &mut MustNotDraw
        ),
        Err(MultiError::TooLarge {
            len: MAX_PLAINTEXT_LEN + 1,
            max: MAX_PLAINTEXT_LEN
        })
    );
    // The most recipients is accepted.
    let most: Vec<_> = many[..MAX_RECIPIENTS].to_vec();
    assert_eq!(
        multi::seal(MESSAGE, &most, &mut rng()).unwrap().parts.len(),
        MAX_RECIPIENTS
    );
}

/// Protobuf bytes of a length-delimited field.
fn field(tag: u8, value: &[u8]) -> Vec<u8> {
    let mut out = vec![(tag << 3) | 2];
    let mut len = value.len();
    loop {
        let byte = u8::try_from(len & 0x7f).unwrap();
        len >>= 7;
        if len == 0 {
            out.push(byte);
            break;
        }
        out.push(byte | 0x80);
    }
    out.extend_from_slice(value);
    out
}

fn group_envelope(version: &[u8], e: &[u8], w: &[u8], payload: &[u8]) -> Vec<u8> {
    [version, &field(2, e), &field(3, w), &field(4, payload)].concat()
}

#[test]
fn envelopes_decode_strictly() {
    let devices = devices(1);
    let sealed = multi::seal(MESSAGE, &list(&devices), &mut rng()).unwrap();
    let good = sealed.shared.envelope_for(&sealed.parts[0].wrapped_key);
    let (e, w, p) = (
        good.ephemeral_key().as_bytes().to_vec(),
        good.wrapped_key().to_vec(),
        good.payload().to_vec(),
    );
    // The hand-made layout is the canonical encoding.
    let bytes = group_envelope(&[0x08, 0x01], &e, &w, &p);
    assert_eq!(bytes, good.to_bytes());
    assert_eq!(GroupEnvelope::from_bytes(&bytes).unwrap(), good);

    let malformed = |bytes: &[u8]| match GroupEnvelope::from_bytes(bytes) {
        Err(MultiError::Malformed(error)) => {
            // `open` refuses the same bytes the same way.
            assert_eq!(
                multi::open(&devices[0].0, &devices[0].1, bytes),
                Err(MultiError::Malformed(error.clone()))
            );
            error
        }
        other => panic!("accepted or wrong error: {other:?}"),
    };
    let cases: Vec<(&str, Vec<u8>, WireError)> = vec![
        (
            "version 2",
            group_envelope(&[0x08, 0x02], &e, &w, &p),
            WireError::UnknownVersion(2),
        ),
        (
            "version absent",
            group_envelope(&[], &e, &w, &p),
            WireError::UnknownVersion(0),
        ),
        (
            "short part",
            group_envelope(&[0x08, 0x01], &e, &w[..31], &p),
            WireError::InvalidLength {
                field: "wrapped_key",
                expected: 32,
                actual: 31,
            },
        ),
        (
            "long ephemeral key",
            group_envelope(&[0x08, 0x01], &[e.as_slice(), &[0]].concat(), &w, &p),
            WireError::InvalidLength {
                field: "ephemeral_key",
                expected: 32,
                actual: 33,
            },
        ),
        (
            "part absent",
            [&[0x08, 0x01][..], &field(2, &e), &field(4, &p)].concat(),
            WireError::MissingField("wrapped_key"),
        ),
        (
            "payload shorter than a tag",
            group_envelope(&[0x08, 0x01], &e, &w, &p[..15]),
            WireError::InvalidLength {
                field: "payload",
                expected: 16,
                actual: 15,
            },
        ),
        (
            "unknown field",
            [bytes.as_slice(), &field(5, b"x")].concat(),
            WireError::NonCanonical,
        ),
        (
            "fields out of order",
            [
                &[0x08, 0x01][..],
                &field(3, &w),
                &field(2, &e),
                &field(4, &p),
            ]
            .concat(),
            WireError::NonCanonical,
        ),
        (
            "non-minimal length",
            [
                &[0x08, 0x01, 0x12, 0xa0, 0x00][..],
                &e,
                &field(3, &w),
                &field(4, &p),
            ]
            .concat(),
            WireError::NonCanonical,
        ),
        (
            "truncated",
            bytes[..bytes.len() - 1].to_vec(),
            WireError::Malformed,
        ),
        (
            "oversize",
            vec![0; MAX_GROUP_ENVELOPE_LEN + 1],
            WireError::Oversize {
                len: MAX_GROUP_ENVELOPE_LEN + 1,
                max: MAX_GROUP_ENVELOPE_LEN,
            },
        ),
    ];
    for (name, bytes, expected) in cases {
        assert_eq!(malformed(&bytes), expected, "{name}");
    }
}

#[test]
fn shared_payloads_decode_strictly_and_round_trip() {
    let sealed = multi::seal(MESSAGE, &list(&devices(2)), &mut rng()).unwrap();
    let bytes = sealed.shared.to_bytes();
    assert_eq!(SharedPayload::from_bytes(&bytes).unwrap(), sealed.shared);
    let e = sealed.shared.ephemeral_key().as_bytes().to_vec();
    let p = sealed.shared.payload().to_vec();
    let made = [&[0x08, 0x01][..], &field(2, &e), &field(3, &p)].concat();
    assert_eq!(made, bytes);
    for (name, bad) in [
        (
            "unknown field",
            [bytes.as_slice(), &field(4, b"x")].concat(),
        ),
        (
            "version 2",
            [&[0x08, 0x02][..], &field(2, &e), &field(3, &p)].concat(),
        ),
        (
            "short key",
            [&[0x08, 0x01][..], &field(2, &e[..31]), &field(3, &p)].concat(),
        ),
        ("no payload", [&[0x08, 0x01][..], &field(2, &e)].concat()),
    ] {
        assert!(
            matches!(
                SharedPayload::from_bytes(&bad),
                Err(MultiError::Malformed(_))
            ),
            "{name}"
        );
    }
}

/// An independent computation of the derivations of 16.7 from the
/// primitives, for the envelope of recipient 0.
#[test]
fn the_envelope_follows_the_specified_derivations() {
    use tacit::hazmat::{chacha20poly1305_open, hkdf_sha256};
    let devices = devices(2);
    let mut draw = [0u8; 64];
    rng().fill_bytes(&mut draw);
    let sealed = multi::seal(MESSAGE, &list(&devices), &mut rng()).unwrap();
    let (m, e) = draw.split_at(32);
    let ephemeral = tacit::KeyPair::from_private_bytes(e.try_into().unwrap());
    assert_eq!(sealed.shared.ephemeral_key(), &ephemeral.public_key());
    for (i, (key, address)) in devices.iter().enumerate() {
        let dh = ephemeral
            .diffie_hellman(&key.public_key().to_x25519())
            .unwrap();
        let user = address.user_id().as_bytes();
        let info = [
            &b"tacit/multi/v1/wrap"[..],
            ephemeral.public_key().as_bytes(),
            &key.public_key().to_bytes(),
            &[u8::try_from(user.len()).unwrap()],
            user,
            &address.device_id().to_be_bytes(),
        ]
        .concat();
        let w = hkdf_sha256::<32>(&[0; 32], dh.as_bytes(), &info);
        let part: Vec<u8> = m.iter().zip(w.iter()).map(|(a, b)| a ^ b).collect();
        assert_eq!(sealed.parts[i].wrapped_key.as_slice(), part.as_slice());
    }
    let okm = hkdf_sha256::<44>(
        &[0; 32],
        m,
        &[
            &b"tacit/multi/v1/payload"[..],
            ephemeral.public_key().as_bytes(),
        ]
        .concat(),
    );
    let payload = sealed.shared.payload();
    let (body, tag) = payload.split_at(payload.len() - 16);
    let mut buffer = body.to_vec();
    assert!(chacha20poly1305_open(
        okm[..32].try_into().unwrap(),
        okm[32..].try_into().unwrap(),
        ephemeral.public_key().as_bytes(),
        &mut buffer,
        tag.try_into().unwrap(),
    ));
    assert_eq!(buffer, MESSAGE);
}
