#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]
//! The skipped-key store: its cap evicts the oldest key by insertion order
//! (within and across chains), evictions are transactional, and `MAX_SKIP`
//! is enforced at its exact boundary.

mod common;

use common::{assert_decrypts, assert_rejected, flip, session, state, Record};
use tacit::ratchet::{
    EncryptedMessage, RatchetConfig, DEFAULT_MAX_SKIP, DEFAULT_MAX_STORED_SKIPPED_KEYS,
    MAX_SKIPPED_CHAINS,
};
use tacit::{DecryptError, Ratchet};

#[test]
fn defaults_are_the_profile_values() {
    let config = RatchetConfig::default();
    assert_eq!(
        (config.max_skip(), config.max_stored_skipped_keys()),
        (1000, 2000)
    );
    assert_eq!(
        (DEFAULT_MAX_SKIP, DEFAULT_MAX_STORED_SKIPPED_KEYS),
        (1000, 2000)
    );
    let config = RatchetConfig::default()
        .with_max_skip(7)
        .unwrap()
        .with_max_stored_skipped_keys(9)
        .unwrap();
    assert_eq!(
        (config.max_skip(), config.max_stored_skipped_keys()),
        (7, 9)
    );
    let s = session(config, 1);
    assert_eq!(s.alice.config(), config);
    assert_eq!(s.bob.config(), config);
}

#[test]
fn the_cap_evicts_the_oldest_skipped_key() {
    let config = RatchetConfig::default()
        .with_max_stored_skipped_keys(3)
        .unwrap();
    let mut s = session(config, 2);
    let a: Vec<_> = (0..6).map(|i| s.a(&format!("a{i}"))).collect();
    assert_eq!(s.bob.skipped_key_count(), 0);
    // a5 first: keys 0..4 are skipped, only the three newest are kept.
    assert_decrypts(&mut s.bob, &a[5], "a5", true);
    assert_eq!(s.bob.skipped_key_count(), 3);
    assert_eq!(
        Record::of(&s.bob).skipped[0]
            .keys
            .iter()
            .map(|k| k.n)
            .collect::<Vec<_>>(),
        vec![2, 3, 4]
    );
    assert_rejected(&mut s.bob, &a[0], DecryptError::DuplicateMessage);
    assert_rejected(&mut s.bob, &a[1], DecryptError::DuplicateMessage);
    assert_decrypts(&mut s.bob, &a[3], "a3", false);
    assert_eq!(s.bob.skipped_key_count(), 2);
    assert_decrypts(&mut s.bob, &a[2], "a2", false);
    assert_eq!(s.bob.skipped_key_count(), 1);
    assert_decrypts(&mut s.bob, &a[4], "a4", false);
    assert_eq!(s.bob.skipped_key_count(), 0);
    for message in &a {
        assert_rejected(&mut s.bob, message, DecryptError::DuplicateMessage);
    }
}

/// Eviction follows insertion order across chains: the keys of an older
/// chain go first, and once a chain has no keys left its header no longer
/// opens.
#[test]
fn eviction_crosses_chains_in_insertion_order() {
    let config = RatchetConfig::default()
        .with_max_stored_skipped_keys(4)
        .unwrap();
    let mut s = session(config, 3);
    let a: Vec<_> = (0..4).map(|i| s.a(&format!("a{i}"))).collect();
    assert_decrypts(&mut s.bob, &a[3], "a3", true);
    assert_eq!(s.bob.skipped_key_count(), 3); // A0: 0, 1, 2
    let b0 = s.b("b0");
    assert_decrypts(&mut s.alice, &b0, "b0", true);
    let c: Vec<_> = (0..4).map(|i| s.a(&format!("c{i}"))).collect();
    // c2 opens A1 skipping c0, c1 (PN = 4 = Nr: nothing more in A0): A1:0
    // fills the store, A1:1 evicts A0:0.
    assert_decrypts(&mut s.bob, &c[2], "c2", true);
    assert_eq!(s.bob.skipped_key_count(), 4);
    let record = Record::of(&s.bob);
    let runs: Vec<Vec<u32>> = record
        .skipped
        .iter()
        .map(|run| run.keys.iter().map(|k| k.n).collect())
        .collect();
    assert_eq!(runs, vec![vec![1, 2], vec![0, 1]]);
    assert_rejected(&mut s.bob, &a[0], DecryptError::DuplicateMessage);
    // c3 needs no skip; it stores nothing and evicts nothing.
    assert_decrypts(&mut s.bob, &c[3], "c3", false);
    assert_eq!(s.bob.skipped_key_count(), 4);
    assert_decrypts(&mut s.bob, &a[1], "a1", false);
    assert_decrypts(&mut s.bob, &a[2], "a2", false);
    assert_eq!(s.bob.skipped_key_count(), 2);
    // A0 has no keys left: its messages are now of an unknown chain.
    assert_rejected(&mut s.bob, &a[0], DecryptError::UnknownHeaderKey);
    assert_decrypts(&mut s.bob, &c[0], "c0", false);
    assert_decrypts(&mut s.bob, &c[1], "c1", false);
    assert_eq!(s.bob.skipped_key_count(), 0);
}

/// A message that would store keys (and so evict old ones) but fails to
/// authenticate evicts nothing.
#[test]
fn a_failed_decryption_evicts_nothing() {
    let config = RatchetConfig::default()
        .with_max_stored_skipped_keys(3)
        .unwrap();
    let mut s = session(config, 4);
    let a: Vec<_> = (0..8).map(|i| s.a(&format!("a{i}"))).collect();
    assert_decrypts(&mut s.bob, &a[3], "a3", true);
    assert_eq!(s.bob.skipped_key_count(), 3);
    let before = state(&s.bob);
    // a7 would skip 4..6 and evict 0..2.
    assert_rejected(
        &mut s.bob,
        &flip(&a[7], 85, 0x40),
        DecryptError::AuthenticationFailed,
    );
    assert_eq!(state(&s.bob), before);
    // The same for a message opening a new chain (Bob's reply changes his
    // sending chain, not his store).
    let b0 = s.b("b0");
    assert_eq!(
        Record::of(&s.bob).skipped,
        Record::of(&Ratchet::from_bytes(&before).unwrap()).skipped
    );
    let before = state(&s.bob);
    assert_decrypts(&mut s.alice, &b0, "b0", true);
    let c: Vec<_> = (0..3).map(|i| s.a(&format!("c{i}"))).collect();
    assert_rejected(
        &mut s.bob,
        &flip(&c[2], 85, 0x40),
        DecryptError::AuthenticationFailed,
    );
    assert_eq!(state(&s.bob), before);
    // The oldest keys are still there.
    assert_decrypts(&mut s.bob, &a[0], "a0", false);
    assert_decrypts(&mut s.bob, &a[1], "a1", false);
    assert_decrypts(&mut s.bob, &a[2], "a2", false);
    assert_eq!(s.bob.skipped_key_count(), 0);
}

/// A cap of zero stores nothing: only in-order delivery works.
#[test]
fn a_zero_cap_stores_nothing() {
    let config = RatchetConfig::default()
        .with_max_stored_skipped_keys(0)
        .unwrap();
    let mut s = session(config, 5);
    let a: Vec<_> = (0..3).map(|i| s.a(&format!("a{i}"))).collect();
    assert_decrypts(&mut s.bob, &a[0], "a0", true);
    assert_decrypts(&mut s.bob, &a[2], "a2", false);
    assert_eq!(s.bob.skipped_key_count(), 0);
    assert_rejected(&mut s.bob, &a[1], DecryptError::DuplicateMessage);
}

/// One batch larger than the cap keeps only its newest keys, and the count
/// never exceeds the cap, also across a step storing two chains' keys.
#[test]
fn the_count_never_exceeds_the_cap() {
    let config = RatchetConfig::default()
        .with_max_stored_skipped_keys(5)
        .unwrap();
    let mut s = session(config, 6);
    let a: Vec<_> = (0..10).map(|i| s.a(&format!("a{i}"))).collect();
    assert_decrypts(&mut s.bob, &a[0], "a0", true);
    assert_decrypts(&mut s.bob, &a[4], "a4", false); // 1, 2, 3
    assert_eq!(s.bob.skipped_key_count(), 3);
    let b0 = s.b("b0");
    assert_decrypts(&mut s.alice, &b0, "b0", true); // PN = 10
    let c: Vec<_> = (0..4).map(|i| s.a(&format!("c{i}"))).collect();
    // Bob stores A0: 5..9, then A1: 0..2; only the last five survive.
    assert_decrypts(&mut s.bob, &c[3], "c3", true);
    assert_eq!(s.bob.skipped_key_count(), 5);
    let runs: Vec<Vec<u32>> = Record::of(&s.bob)
        .skipped
        .iter()
        .map(|run| run.keys.iter().map(|k| k.n).collect())
        .collect();
    assert_eq!(runs, vec![vec![8, 9], vec![0, 1, 2]]);
    for i in [1, 2, 3, 5, 6, 7] {
        assert_rejected(&mut s.bob, &a[i], DecryptError::DuplicateMessage);
    }
    assert_decrypts(&mut s.bob, &a[9], "a9", false);
    assert_decrypts(&mut s.bob, &a[8], "a8", false);
    assert_rejected(&mut s.bob, &a[1], DecryptError::UnknownHeaderKey);
    for (i, message) in c.iter().enumerate().take(3) {
        assert_decrypts(&mut s.bob, message, &format!("c{i}"), false);
    }
    assert_eq!(s.bob.skipped_key_count(), 0);
}

/// `MAX_SKIP` at its boundary in the current chain, in a new chain (N) and
/// in the old chain (PN).
#[test]
fn max_skip_boundaries_are_exact() {
    let max_skip = 5;
    let config = RatchetConfig::default().with_max_skip(max_skip).unwrap();

    // New chain: N = max_skip is accepted, N = max_skip + 1 is not.
    let mut s = session(config, 7);
    let a: Vec<_> = (0..7).map(|i| s.a(&format!("a{i}"))).collect();
    assert_rejected(&mut s.bob, &a[6], DecryptError::TooManySkipped);
    assert_decrypts(&mut s.bob, &a[5], "a5", true);
    assert_eq!(s.bob.skipped_key_count(), 5);

    // Current chain: Nr = 6, so N = 11 is accepted, N = 12 is not.
    let more: Vec<_> = (7..13).map(|i| s.a(&format!("a{i}"))).collect();
    assert_rejected(&mut s.bob, &more[5], DecryptError::TooManySkipped); // a12
    assert_decrypts(&mut s.bob, &more[4], "a11", false);
    assert_eq!(s.bob.skipped_key_count(), 10);
    assert_decrypts(&mut s.bob, &more[5], "a12", false);

    // Old chain: Nr = 13 in A0; Alice sends a13..a18 (PN = 19) then steps.
    let tail: Vec<_> = (13..19).map(|i| s.a(&format!("a{i}"))).collect();
    let b0 = s.b("b0");
    assert_decrypts(&mut s.alice, &b0, "b0", true);
    let c0 = s.a("c0");
    // 13 + 5 < 19: refused.
    assert_rejected(&mut s.bob, &c0, DecryptError::TooManySkipped);
    // After a13, 14 + 5 = 19: accepted.
    assert_decrypts(&mut s.bob, &tail[0], "a13", false);
    assert_decrypts(&mut s.bob, &c0, "c0", true);
    for (i, message) in tail.iter().enumerate().skip(1) {
        assert_decrypts(&mut s.bob, message, &format!("a{}", 13 + i), false);
    }
}

/// With `max_skip = 0` only in-order delivery works.
#[test]
fn max_skip_zero_allows_only_in_order_delivery() {
    let config = RatchetConfig::default().with_max_skip(0).unwrap();
    let mut s = session(config, 8);
    let a: Vec<_> = (0..3).map(|i| s.a(&format!("a{i}"))).collect();
    assert_rejected(&mut s.bob, &a[1], DecryptError::TooManySkipped);
    assert_decrypts(&mut s.bob, &a[0], "a0", true);
    assert_rejected(&mut s.bob, &a[2], DecryptError::TooManySkipped);
    assert_decrypts(&mut s.bob, &a[1], "a1", false);
    assert_decrypts(&mut s.bob, &a[2], "a2", false);
    assert_eq!(s.bob.skipped_key_count(), 0);
}

/// Each of `chains` rounds: Alice sends two messages, Bob receives only the
/// second (one key skipped in that chain) and answers, so the next round is
/// a new chain. Returns the skipped message of each round, oldest first.
fn one_skipped_key_per_chain(s: &mut common::Session, chains: usize) -> Vec<EncryptedMessage> {
    let mut lost = Vec::new();
    for i in 0..chains {
        lost.push(s.a(&format!("lost {i}")));
        let m = s.a(&format!("kept {i}"));
        s.bob.decrypt(&m, &mut s.rng).unwrap();
        let r = s.b("ack");
        s.alice.decrypt(&r, &mut s.rng).unwrap();
    }
    lost
}

#[test]
fn old_receiving_chains_are_capped_and_evicted_whole_oldest_first() {
    let mut s = session(RatchetConfig::default(), 9);
    let lost = one_skipped_key_per_chain(&mut s, MAX_SKIPPED_CHAINS + 3);
    // One key in each of the newest MAX_SKIPPED_CHAINS chains: the three
    // oldest chains were evicted with their keys, although the key cap
    // (2000) is far away.
    assert_eq!(s.bob.skipped_chain_count(), MAX_SKIPPED_CHAINS);
    assert_eq!(s.bob.skipped_key_count(), MAX_SKIPPED_CHAINS);
    for message in &lost[..3] {
        assert_rejected(&mut s.bob, message, DecryptError::UnknownHeaderKey);
    }
    for (i, message) in lost[3..].iter().enumerate() {
        assert_decrypts(&mut s.bob, message, &format!("lost {}", i + 3), false);
    }
    assert_eq!(s.bob.skipped_chain_count(), 0);
}

#[test]
fn a_chain_eviction_takes_all_its_keys() {
    let mut s = session(RatchetConfig::default(), 10);
    // The first chain leaves three keys, then MAX_SKIPPED_CHAINS chains one
    // each: the first chain goes, all three keys at once.
    let first: Vec<_> = (0..3).map(|i| s.a(&format!("first {i}"))).collect();
    let m = s.a("kept");
    s.bob.decrypt(&m, &mut s.rng).unwrap();
    let r = s.b("ack");
    s.alice.decrypt(&r, &mut s.rng).unwrap();
    assert_eq!(s.bob.skipped_key_count(), 3);
    one_skipped_key_per_chain(&mut s, MAX_SKIPPED_CHAINS - 1);
    assert_eq!(s.bob.skipped_key_count(), 3 + MAX_SKIPPED_CHAINS - 1);
    one_skipped_key_per_chain(&mut s, 1);
    assert_eq!(s.bob.skipped_chain_count(), MAX_SKIPPED_CHAINS);
    assert_eq!(s.bob.skipped_key_count(), MAX_SKIPPED_CHAINS);
    for message in &first {
        assert_rejected(&mut s.bob, message, DecryptError::UnknownHeaderKey);
    }
}

#[test]
fn limits_above_their_bound_are_a_typed_error() {
    use tacit::ratchet::{MAX_SKIP_LIMIT, MAX_STORED_SKIPPED_KEYS_LIMIT};
    use tacit::ConfigError;
    let config = RatchetConfig::default();
    assert_eq!(
        config.with_max_skip(MAX_SKIP_LIMIT).unwrap().max_skip(),
        25_000
    );
    assert_eq!(
        config.with_max_skip(MAX_SKIP_LIMIT + 1),
        Err(ConfigError::MaxSkipTooLarge(MAX_SKIP_LIMIT + 1))
    );
    assert_eq!(
        config.with_max_skip(u32::MAX),
        Err(ConfigError::MaxSkipTooLarge(u32::MAX))
    );
    assert!(config
        .with_max_stored_skipped_keys(MAX_STORED_SKIPPED_KEYS_LIMIT)
        .is_ok());
    assert_eq!(
        RatchetConfig::new(0, MAX_STORED_SKIPPED_KEYS_LIMIT + 1),
        Err(ConfigError::StoredSkippedKeysTooLarge(
            MAX_STORED_SKIPPED_KEYS_LIMIT + 1
        ))
    );
}
