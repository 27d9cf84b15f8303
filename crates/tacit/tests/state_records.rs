#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]
//! Session records: exact round trips in the middle of a conversation,
//! identical continuation, refusal of unknown versions, truncations,
//! trailing bytes and broken invariants, counters at their limits, and no
//! panic on corrupted records.

mod common;

use std::sync::OnceLock;

use common::{
    assert_decrypts, assert_rejected, proptest_config, rng, session, state, ChainRec, CountingRng,
    Record, SkippedRunRec,
};
use proptest::prelude::*;
use proptest::sample::Index;
use tacit::ratchet::{EncryptedMessage, Ratchet, RatchetConfig, STATE_VERSION};
use tacit::{DecryptError, EncryptError, StateError};

/// A conversation with skipped keys outstanding on both sides, in two
/// chains on Bob's side.
struct Mid {
    alice: Ratchet,
    bob: Ratchet,
    /// Undelivered messages to Bob, in send order.
    to_bob: Vec<(EncryptedMessage, &'static str)>,
    /// Undelivered messages to Alice, in send order.
    to_alice: Vec<(EncryptedMessage, &'static str)>,
}

fn mid(seed: u64) -> Mid {
    let mut s = session(RatchetConfig::default(), seed);
    let a: Vec<_> = ["a0", "a1", "a2", "a3"].map(|t| (s.a(t), t)).into();
    assert_decrypts(&mut s.bob, &a[3].0, "a3", true); // A0: 0, 1, 2 skipped
    let b: Vec<_> = ["b0", "b1"].map(|t| (s.b(t), t)).into();
    assert_decrypts(&mut s.alice, &b[1].0, "b1", true); // B0: 0 skipped
    let c: Vec<_> = ["c0", "c1", "c2"].map(|t| (s.a(t), t)).into();
    assert_decrypts(&mut s.bob, &c[2].0, "c2", true); // A1: 0, 1 skipped
    assert_eq!(s.bob.skipped_key_count(), 5);
    assert_eq!(s.alice.skipped_key_count(), 1);
    let mut to_bob = a[..3].to_vec();
    to_bob.extend_from_slice(&c[..2]);
    Mid {
        alice: s.alice,
        bob: s.bob,
        to_bob,
        to_alice: vec![b[0].clone()],
    }
}

fn restore(r: &Ratchet) -> Ratchet {
    let bytes = r.to_bytes();
    let restored = Ratchet::from_bytes(&bytes).unwrap();
    assert_eq!(*restored.to_bytes(), *bytes, "round trip is byte-exact");
    restored
}

/// Delivers the pending messages out of order, then runs three rounds of
/// out-of-order exchange; every RNG is seeded from a running counter.
/// Returns everything observable: ciphertexts, plaintexts, final states.
fn continue_conversation(alice: &mut Ratchet, bob: &mut Ratchet, m: &Mid) -> Vec<Vec<u8>> {
    let mut seed = 1000u64;
    let mut next = || {
        seed += 1;
        CountingRng::new(seed)
    };
    let mut transcript = Vec::new();
    for (message, text) in m.to_bob.iter().rev() {
        let plain = bob.decrypt(message, &mut next()).unwrap();
        assert_eq!(plain, text.as_bytes());
        transcript.push(plain);
    }
    for (message, text) in &m.to_alice {
        let plain = alice.decrypt(message, &mut next()).unwrap();
        assert_eq!(plain, text.as_bytes());
        transcript.push(plain);
    }
    for round in 0..3u8 {
        let xs: Vec<_> = (0..3u8)
            .map(|i| alice.encrypt(&[round, i], &mut next()).unwrap())
            .collect();
        for i in [2, 0, 1] {
            transcript.push(xs[i].to_bytes());
            let plain = bob.decrypt(&xs[i], &mut next()).unwrap();
            assert_eq!(plain, [round, i as u8]);
            transcript.push(plain);
        }
        let ys: Vec<_> = (0..2u8)
            .map(|i| bob.encrypt(&[0x80 | round, i], &mut next()).unwrap())
            .collect();
        for y in ys.iter().rev() {
            transcript.push(y.to_bytes());
            transcript.push(alice.decrypt(y, &mut next()).unwrap());
        }
    }
    transcript.push(state(alice));
    transcript.push(state(bob));
    transcript
}

#[test]
fn round_trip_mid_conversation_is_exact_and_continues_identically() {
    let m = mid(1);
    // Bob's store holds keys of two chains.
    let record = Record::of(&m.bob);
    assert_eq!(record.skipped.len(), 2);
    assert_eq!(record.skipped[0].keys.len(), 3);
    assert_eq!(record.skipped[1].keys.len(), 2);

    let mut alice_restored = restore(&m.alice);
    let mut bob_restored = restore(&m.bob);
    for (original, restored) in [(&m.alice, &alice_restored), (&m.bob, &bob_restored)] {
        assert_eq!(restored.config(), original.config());
        assert_eq!(restored.associated_data(), original.associated_data());
        assert_eq!(restored.can_send(), original.can_send());
        assert_eq!(restored.next_header(), original.next_header());
        assert_eq!(restored.skipped_key_count(), original.skipped_key_count());
    }

    let mut alice_clone = m.alice.clone();
    let mut bob_clone = m.bob.clone();
    let restored = continue_conversation(&mut alice_restored, &mut bob_restored, &m);
    let cloned = continue_conversation(&mut alice_clone, &mut bob_clone, &m);
    assert_eq!(restored, cloned);
    assert_eq!(alice_restored.skipped_key_count(), 0);
    assert_eq!(bob_restored.skipped_key_count(), 0);
}

#[test]
fn fresh_sessions_round_trip_and_limits_are_part_of_the_state() {
    let config = RatchetConfig::default()
        .with_max_skip(2)
        .unwrap()
        .with_max_stored_skipped_keys(1)
        .unwrap();
    let mut s = session(config, 2);
    let alice = restore(&s.alice);
    let mut bob = restore(&s.bob);
    assert_eq!(alice.config(), config);
    assert_eq!(bob.config(), config);
    assert!(!bob.can_send());
    // The restored limits are enforced.
    let a: Vec<_> = (0..4).map(|i| s.a(&format!("a{i}"))).collect();
    assert_rejected(&mut bob, &a[3], DecryptError::TooManySkipped);
    assert_decrypts(&mut bob, &a[2], "a2", true);
    assert_eq!(bob.skipped_key_count(), 1);
    assert_rejected(&mut bob, &a[0], DecryptError::DuplicateMessage);
    assert_decrypts(&mut bob, &a[1], "a1", false);
}

#[test]
fn the_record_starts_with_the_version_and_other_versions_are_refused() {
    assert_eq!(STATE_VERSION, 2);
    let m = mid(3);
    let bytes = state(&m.bob);
    assert_eq!(bytes[0], STATE_VERSION);
    for version in 0..=255u8 {
        // Version 1 is still read (tests below).
        if version == STATE_VERSION || version == 1 {
            continue;
        }
        let mut other = bytes.clone();
        other[0] = version;
        assert_eq!(
            Ratchet::from_bytes(&other).err(),
            Some(StateError::UnknownVersion(version))
        );
        assert_eq!(
            Ratchet::from_bytes(&[version]).err(),
            Some(StateError::UnknownVersion(version))
        );
    }
    assert_eq!(Ratchet::from_bytes(&[]).err(), Some(StateError::Empty));
}

#[test]
fn every_truncation_and_any_trailing_bytes_are_refused() {
    let m = mid(4);
    let s = session(RatchetConfig::default(), 5);
    for r in [&m.alice, &m.bob, &s.alice, &s.bob] {
        let bytes = state(r);
        assert_eq!(Ratchet::from_bytes(&[]).err(), Some(StateError::Empty));
        for len in 1..bytes.len() {
            assert_eq!(
                Ratchet::from_bytes(&bytes[..len]).err(),
                Some(StateError::Corrupt),
                "prefix of {len} of {} bytes",
                bytes.len()
            );
        }
        for trailing in [&[0u8][..], &[1], &[0xff], &[0; 64], &bytes[1..]] {
            let mut longer = bytes.clone();
            longer.extend_from_slice(trailing);
            assert_eq!(
                Ratchet::from_bytes(&longer).err(),
                Some(StateError::Corrupt)
            );
        }
        assert!(Ratchet::from_bytes(&bytes).is_ok());
    }
}

/// Records that decode but break an invariant of the state are refused; the
/// boundary values are accepted.
#[test]
fn records_breaking_invariants_are_corrupt() {
    let m = mid(6);
    let s = session(RatchetConfig::default(), 7);
    let bob = Record::of(&m.bob);
    let fresh_bob = Record::of(&s.bob);
    let accepts = |r: &Record| Ratchet::from_bytes(&r.encode()).is_ok();
    let corrupt = |r: &Record| Ratchet::from_bytes(&r.encode()).err() == Some(StateError::Corrupt);
    assert!(accepts(&bob) && accepts(&fresh_bob));

    let mut r = bob.clone();
    r.associated_data = vec![1; 128];
    assert!(accepts(&r));
    r.associated_data = vec![1; 129];
    assert!(corrupt(&r));

    let mut r = bob.clone();
    r.max_stored_skipped_keys = 5; // holds exactly 5
    assert!(accepts(&r));
    r.max_stored_skipped_keys = 4;
    assert!(corrupt(&r));
    r.max_stored_skipped_keys = 0;
    assert!(corrupt(&r));

    // MAX_SKIP and the key cap are bounded (section 3.10).
    let mut r = bob.clone();
    r.max_skip = 25_000;
    assert!(accepts(&r));
    r.max_skip = 25_001;
    assert!(corrupt(&r));
    r.max_skip = u32::MAX;
    assert!(corrupt(&r));
    let mut r = bob.clone();
    r.max_stored_skipped_keys = 25_000;
    assert!(accepts(&r));
    r.max_stored_skipped_keys = 25_001;
    assert!(corrupt(&r));

    let mut r = bob.clone();
    r.received = 1 << 32;
    assert!(accepts(&r));
    r.received = (1 << 32) + 1;
    assert!(corrupt(&r));
    r.received = u64::MAX;
    assert!(corrupt(&r));

    let mut r = bob.clone();
    r.skipped.push(SkippedRunRec {
        header_key: [9; 32],
        keys: Vec::new(),
    });
    assert!(corrupt(&r));

    // No sending chain: no counters.
    assert!(fresh_bob.sending.is_none() && fresh_bob.receiving.is_none());
    let mut r = fresh_bob.clone();
    r.sent = 1;
    assert!(corrupt(&r));
    let mut r = fresh_bob.clone();
    r.previous_sent = 1;
    assert!(corrupt(&r));
    // No receiving chain: no received count.
    let mut r = fresh_bob.clone();
    r.received = 1;
    assert!(corrupt(&r));
    // With the chains present, the same counters are fine.
    let mut r = fresh_bob.clone();
    r.sending = Some(ChainRec {
        chain_key: [1; 32],
        header_key: [2; 32],
    });
    r.receiving = r.sending.clone();
    r.sent = 1;
    r.previous_sent = 1;
    r.received = 1;
    assert!(accepts(&r));

    // An option tag other than 0 or 1.
    let mut bytes = bob.encode();
    let prefix = postcard::to_allocvec(&(
        bob.max_skip,
        bob.max_stored_skipped_keys,
        &bob.associated_data,
        bob.root_key,
        bob.ratchet_private_key,
        bob.ratchet_public_key,
    ))
    .unwrap();
    let tag = 1 + prefix.len();
    assert_eq!(bytes[tag], 1, "the sending chain's option tag");
    bytes[tag] = 2;
    assert_eq!(Ratchet::from_bytes(&bytes).err(), Some(StateError::Corrupt));
}

/// Only the canonical encoding is read back, and the skipped keys must be
/// consistent: a non-minimal varint, a key stored twice in a run, or a key
/// of the current receiving chain at or past `Nr` is refused.
#[test]
fn non_canonical_or_inconsistent_records_are_corrupt() {
    let m = mid(20);
    let bob = Record::of(&m.bob);
    let bytes = bob.encode();
    // max_skip = 1000 is the varint e8 07 right after the version byte.
    assert_eq!(&bytes[1..3], &[0xe8, 0x07]);
    let mut padded = vec![bytes[0], 0xe8, 0x87, 0x00];
    padded.extend_from_slice(&bytes[3..]);
    // postcard reads the same record from it, the session does not.
    let decoded: Record = postcard::from_bytes(&padded[1..]).unwrap();
    assert_eq!(decoded, bob);
    assert_eq!(
        Ratchet::from_bytes(&padded).err(),
        Some(StateError::Corrupt)
    );

    // Bob: A0 keys 0, 1, 2 (retired chain), then A1 keys 0, 1 (current
    // chain, Nr = 3).
    assert_eq!(bob.received, 3);
    assert_eq!(
        bob.skipped[1].header_key,
        bob.receiving.as_ref().unwrap().header_key
    );
    let mut r = bob.clone();
    let again = r.skipped[0].keys[0].clone();
    r.skipped[0].keys.push(again);
    assert_eq!(
        Ratchet::from_bytes(&r.encode()).err(),
        Some(StateError::Corrupt)
    );

    let mut r = bob.clone();
    r.skipped[1].keys[1].n = 2;
    assert!(Ratchet::from_bytes(&r.encode()).is_ok());
    r.skipped[1].keys[1].n = 3;
    assert_eq!(
        Ratchet::from_bytes(&r.encode()).err(),
        Some(StateError::Corrupt)
    );
}

/// A key stored twice in two runs of the same chain lets a message decrypt
/// twice (the first copy is used and removed, the second stays), so such a
/// record must be refused like a key stored twice in one run.
#[test]
fn a_skipped_key_stored_twice_across_runs_is_corrupt() {
    let m = mid(21);
    let bob = Record::of(&m.bob);
    let mut r = bob.clone();
    let mut run = r.skipped[0].clone();
    run.keys.truncate(1); // A0 key 0 again, in a run after the A1 run
    r.skipped.push(run);
    match Ratchet::from_bytes(&r.encode()) {
        Err(e) => assert_eq!(e, StateError::Corrupt),
        Ok(mut session) => {
            let (a0, text) = &m.to_bob[0];
            assert_decrypts(&mut session, a0, text, false);
            // Were such a record accepted, the replay must still be refused.
            assert_rejected(&mut session, a0, DecryptError::DuplicateMessage);
        }
    }
}

/// Counters at their limits, set through the record: the last message of a
/// chain (N = 2^32 - 2) goes through, the next encryption is refused with
/// the state unchanged, and a DH step resets the chain (PN = 2^32 - 1).
#[test]
fn a_sending_chain_is_exhausted_after_two_to_the_32_minus_one_messages() {
    let mut s = session(RatchetConfig::default(), 8);
    let a0 = s.a("a0");
    assert_decrypts(&mut s.bob, &a0, "a0", true);
    // Both sides stand at message 1 of chain A0; pretend 2^32 - 3 more
    // messages were sent and received (the chain keys do not move).
    let mut alice = Record::of(&s.alice);
    alice.sent = u32::MAX - 1;
    let mut alice = Ratchet::from_bytes(&alice.encode()).unwrap();
    let mut bob = Record::of(&s.bob);
    bob.received = u64::from(u32::MAX - 1);
    let mut bob = Ratchet::from_bytes(&bob.encode()).unwrap();

    assert_eq!(alice.next_header().unwrap().message_number, u32::MAX - 1);
    let last = alice.encrypt(b"last", &mut rng(1)).unwrap();
    assert_decrypts(&mut bob, &last, "last", false);
    assert_eq!(Record::of(&bob).received, u64::from(u32::MAX));

    let before = state(&alice);
    assert_eq!(
        alice.next_header(),
        None,
        "no header to send on an exhausted chain"
    );
    let mut counting = CountingRng::new(2);
    assert_eq!(
        alice.encrypt(b"one too many", &mut counting),
        Err(EncryptError::ChainExhausted)
    );
    assert_eq!(state(&alice), before);
    assert_eq!(counting.bytes, 0);
    assert_rejected(&mut bob, &last, DecryptError::DuplicateMessage);

    // Bob answers; Alice steps, and her new chain starts at 0 with
    // PN = 2^32 - 1, which Bob accepts (nothing left to skip).
    let b0 = bob.encrypt(b"b0", &mut rng(3)).unwrap();
    assert_decrypts(&mut alice, &b0, "b0", true);
    let header = alice.next_header().unwrap();
    assert_eq!(
        (header.previous_chain_length, header.message_number),
        (u32::MAX, 0)
    );
    let c0 = alice.encrypt(b"c0", &mut rng(4)).unwrap();
    assert_decrypts(&mut bob, &c0, "c0", true);
    assert_eq!(bob.skipped_key_count(), 0);
}

// ---------------------------------------------------------------------------
// Corrupted records never panic.

struct Fixture {
    record: Vec<u8>,
    /// Messages the session could receive, to exercise a parsed record.
    pending: Vec<EncryptedMessage>,
}

fn fixtures() -> &'static [Fixture] {
    static FIXTURES: OnceLock<Vec<Fixture>> = OnceLock::new();
    FIXTURES.get_or_init(|| {
        let m = mid(9);
        let mut s = session(RatchetConfig::default(), 10);
        let first = s.a("first");
        let to_bob: Vec<_> = m.to_bob.iter().map(|(x, _)| x.clone()).collect();
        let to_alice: Vec<_> = m.to_alice.iter().map(|(x, _)| x.clone()).collect();
        vec![
            Fixture {
                record: state(&m.bob),
                pending: to_bob,
            },
            Fixture {
                record: state(&m.alice),
                pending: to_alice,
            },
            Fixture {
                record: state(&s.bob),
                pending: vec![first],
            },
            Fixture {
                record: state(&s.alice),
                pending: Vec::new(),
            },
        ]
    })
}

/// Uses a parsed record: it re-serializes to a fixed point, and decrypting
/// and encrypting with it return (rather than panic).
fn exercise(r: &mut Ratchet, pending: &[EncryptedMessage]) {
    let bytes = state(r);
    let again = Ratchet::from_bytes(&bytes).unwrap();
    assert_eq!(state(&again), bytes);
    for message in pending {
        let _ = r.decrypt(message, &mut rng(5));
    }
    let _ = r.encrypt(b"x", &mut rng(6));
}

proptest! {
    #![proptest_config(proptest_config(400))]

    #[test]
    fn flipped_record_bytes_never_panic(
        which in 0..4usize,
        flips in proptest::collection::vec((any::<Index>(), 1..=255u8), 1..=4),
    ) {
        let fixture = &fixtures()[which];
        let mut bytes = fixture.record.clone();
        for (index, mask) in &flips {
            let at = index.index(bytes.len());
            bytes[at] ^= mask;
        }
        match Ratchet::from_bytes(&bytes) {
            Ok(mut r) => {
                prop_assert_eq!(bytes[0], STATE_VERSION);
                exercise(&mut r, &fixture.pending);
            }
            Err(StateError::UnknownVersion(v)) => {
                prop_assert_eq!(v, bytes[0]);
                prop_assert_ne!(v, STATE_VERSION);
            }
            Err(e) => {
                prop_assert_eq!(e, StateError::Corrupt);
                prop_assert_eq!(bytes[0], STATE_VERSION);
            }
        }
    }

    #[test]
    fn arbitrary_records_never_panic(
        body in proptest::collection::vec(any::<u8>(), 0..400),
    ) {
        let mut bytes = vec![STATE_VERSION];
        bytes.extend_from_slice(&body);
        if let Ok(mut r) = Ratchet::from_bytes(&bytes) {
            exercise(&mut r, &fixtures()[0].pending);
        }
    }

    /// A record spliced from two records of the same session (prefix of one,
    /// suffix of the other) never panics either.
    #[test]
    fn spliced_records_never_panic(cut in any::<Index>(), which in 0..2usize) {
        let (a, b) = (&fixtures()[which].record, &fixtures()[1 - which].record);
        let at = cut.index(a.len().min(b.len()));
        let mut bytes = a[..at].to_vec();
        bytes.extend_from_slice(&b[at..]);
        if let Ok(mut r) = Ratchet::from_bytes(&bytes) {
            exercise(&mut r, &fixtures()[which].pending);
        }
    }
}

/// A version 1 record (no public key) is still read: the public key is
/// recomputed, and the session goes on. Written from version 2 by dropping
/// the public key, as version 1 wrote it.
#[test]
fn version_1_records_are_still_read() {
    let mut s = session(RatchetConfig::default(), 21);
    let m = s.a("first");
    s.bob.decrypt(&m, &mut s.rng).unwrap();
    let r = Record::of(&s.bob);
    let mut v1 = vec![1u8];
    v1.extend(
        postcard::to_allocvec(&(
            r.max_skip,
            r.max_stored_skipped_keys,
            &r.associated_data,
            r.root_key,
            r.ratchet_private_key,
        ))
        .unwrap(),
    );
    let v2 = r.encode();
    // Everything after the public key is the same in both versions.
    let after = 1 + v1.len() - 1 + 32;
    v1.extend_from_slice(&v2[after..]);
    let mut bob = Ratchet::from_bytes(&v1).unwrap();
    assert_eq!(bob.to_bytes().as_slice(), v2.as_slice());
    let reply = bob.encrypt(b"reply", &mut s.rng).unwrap();
    assert_eq!(s.alice.decrypt(&reply, &mut s.rng).unwrap(), b"reply");
    // Version 1 is read as strictly: a redundant varint group is refused.
    let mut padded = vec![1u8, 0xe8, 0x87, 0x00];
    padded.extend_from_slice(&v1[3..]);
    assert_eq!(
        Ratchet::from_bytes(&padded).err(),
        Some(StateError::Corrupt)
    );
}

/// The stored public key is used as stored: loading does not recompute it
/// (section 7.3). A record whose public key is not the private key's loads,
/// and its headers carry the stored key.
#[test]
fn the_stored_public_key_is_used_as_stored() {
    let mut s = session(RatchetConfig::default(), 22);
    let m = s.a("first");
    s.bob.decrypt(&m, &mut s.rng).unwrap();
    let mut r = Record::of(&s.bob);
    r.ratchet_public_key = [9; 32];
    let bob = Ratchet::from_bytes(&r.encode()).unwrap();
    assert_eq!(bob.next_header().unwrap().ratchet_key.to_bytes(), [9; 32]);
}
