#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]
//! Heap allocations of a session-layer decryption with a full archive,
//! counted by a global allocator that only this test binary installs
//! (`allocation-counter`, per thread).
//!
//! The session layer tries each stored state's header keys before it copies
//! anything, so a message for the oldest archived session allocates no more
//! than one for the current session: no state is cloned only to be tried.

mod common;

use allocation_counter::measure;
use common::Directory;
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;
use tacit::session::{Account, BundlePreKey, SessionConfig, SessionManager, Slot, ARCHIVE_LIMIT};
use tacit::store::InMemoryStore;
use tacit::wire::SessionMessage;
use tacit::Address;

type Manager = SessionManager<InMemoryStore>;

fn device(dir: &Directory, user: &str, rng: &mut ChaCha20Rng) -> (Address, Manager) {
    let address = Address::new(user, 1).unwrap();
    let manager = SessionManager::create(
        InMemoryStore::new(),
        address.clone(),
        Account::generate(1_000, rng),
        SessionConfig::default(),
    )
    .unwrap();
    dir.register(&address, manager.account().identity().public_key());
    (address, manager)
}

/// Alice's message that makes Bob start a new receiving chain on the
/// current session (a ratchet message after one round trip).
fn after_round_trip(
    alice: &mut Manager,
    bob: &mut Manager,
    a: &Address,
    b: &Address,
    rng: &mut ChaCha20Rng,
) -> SessionMessage {
    let alice_id = alice.account().identity().public_key();
    let bob_id = bob.account().identity().public_key();
    let m = alice.encrypt(b, b"hello", rng).unwrap();
    bob.decrypt(a, &alice_id, &m, rng).unwrap();
    let r = bob.encrypt(a, b"ack", rng).unwrap();
    alice.decrypt(b, &bob_id, &r, rng).unwrap();
    alice.encrypt(b, b"late", rng).unwrap()
}

#[test]
fn a_message_for_the_oldest_archived_session_clones_no_other_state() {
    let mut rng = ChaCha20Rng::seed_from_u64(11);
    let dir = Directory::new();
    let (a, mut alice) = device(&dir, "alice", &mut rng);
    let (b, mut bob) = device(&dir, "bob", &mut rng);
    dir.trust(&mut alice);
    dir.trust(&mut bob);
    let alice_id = alice.account().identity().public_key();

    let mut oldest = None;
    for _ in 0..=ARCHIVE_LIMIT {
        let bundle = bob.account().bundle(BundlePreKey::None).unwrap();
        alice.process_bundle(&b, &bundle, &mut rng).unwrap();
        let late = after_round_trip(&mut alice, &mut bob, &a, &b, &mut rng);
        oldest.get_or_insert(late);
    }
    let current = after_round_trip(&mut alice, &mut bob, &a, &b, &mut rng);
    let info = bob.session_info(&a).unwrap().unwrap();
    assert_eq!(info.archived, ARCHIVE_LIMIT);

    let mut slots = Vec::new();
    let mut counts = Vec::new();
    for message in [&current, oldest.as_ref().unwrap()] {
        let count = measure(|| {
            slots.push(bob.decrypt(&a, &alice_id, message, &mut rng).unwrap().slot);
        });
        counts.push(count.count_total);
    }
    assert_eq!(slots, [Slot::Current, Slot::Archived(ARCHIVE_LIMIT - 1)]);
    // Trying ARCHIVE_LIMIT more states must not copy them: at most a few
    // allocations apart, not one or more per state.
    assert!(
        counts[1] <= counts[0] + 2,
        "current: {} allocations, oldest archived: {}",
        counts[0],
        counts[1]
    );
}
