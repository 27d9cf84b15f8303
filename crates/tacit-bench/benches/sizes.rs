#![allow(clippy::unwrap_used, clippy::panic, missing_docs)]
//! Sizes of profile `tacit-v2` beside `tacit-v1`, computed, not timed:
//!
//! ```text
//! cargo bench -p tacit-bench --bench sizes
//! ```
//!
//! Prints a Markdown table of the bundle and the first prekey message on
//! the wire (and that message in its sealed envelope), the account record
//! with and without one-time prekeys, and the session records on both
//! sides, each made through `SessionManager` as an application would.

use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use tacit::address::Address;
use tacit::envelope::sealed;
use tacit::identity::{DeviceCertificate, DeviceList, UserKeyPair};
use tacit::session::{Account, BundlePreKey, KemPreKeyChoice, SessionConfig, SessionManager};
use tacit::store::{InMemoryStore, SessionStore};
use tacit::wire::{SessionMessage, WireMessage};

/// The plaintext of the first message, as in the `compare` bench.
const PLAINTEXT_LEN: usize = 256;

type Manager = SessionManager<InMemoryStore>;

/// The byte counts of one session's setup.
struct SetupSizes {
    bundle: usize,
    first_message: usize,
    envelope: usize,
    initiator_record_pending: usize,
    responder_record: usize,
    initiator_record_answered: usize,
}

fn manager(user: &str, config: SessionConfig, rng: &mut ChaCha20Rng) -> Manager {
    let address = Address::new(user, 1).unwrap();
    let account = Account::generate(0, rng);
    SessionManager::create(InMemoryStore::new(), address, account, config).unwrap()
}

fn record_len(m: &Manager, peer: &Address) -> usize {
    m.store()
        .load_session(peer)
        .unwrap()
        .unwrap()
        .to_bytes()
        .len()
}

/// Alice starts a session with Bob from a bundle with a one-time prekey
/// (and, for `tacit-v2`, a one-time KEM prekey), sends 256 bytes, Bob
/// decrypts and answers.
fn setup_sizes(v2: bool) -> SetupSizes {
    let mut rng = ChaCha20Rng::seed_from_u64(if v2 { 2 } else { 1 });
    let alice_user = UserKeyPair::generate(&mut rng);
    let bob_user = UserKeyPair::generate(&mut rng);
    let mut alice = manager("alice", SessionConfig::default(), &mut rng);
    let bob_config = SessionConfig::default().with_classical_prekey_messages_refused(v2);
    let mut bob = manager("bob", bob_config, &mut rng);
    let (alice_address, bob_address) = (alice.local_address().clone(), bob.local_address().clone());
    let alice_identity = alice.account().identity().public_key();
    let bob_identity = bob.account().identity().public_key();
    let lists = [
        DeviceList::sign(&alice_user, "alice", 1, &[(1, alice_identity, 0)]).unwrap(),
        DeviceList::sign(&bob_user, "bob", 1, &[(1, bob_identity, 0)]).unwrap(),
    ];
    for list in &lists {
        alice.update_device_list(list).unwrap();
        bob.update_device_list(list).unwrap();
    }
    bob.generate_one_time_prekeys(5, &mut rng).unwrap();
    bob.update_account(|a| a.generate_one_time_kem_prekeys(5, &mut rng))
        .unwrap();

    let kem = if v2 {
        KemPreKeyChoice::Auto
    } else {
        KemPreKeyChoice::None
    };
    let bundle = bob.account().bundle_with(BundlePreKey::Auto, kem).unwrap();
    assert_eq!(bundle.kem_prekey.is_some(), v2);
    alice
        .process_bundle(&bob_address, &bundle, &mut rng)
        .unwrap();
    let first = alice
        .encrypt(&bob_address, &[0x55; PLAINTEXT_LEN], &mut rng)
        .unwrap();
    match &first {
        SessionMessage::PreKey(m) => assert_eq!(m.kem.is_some(), v2),
        SessionMessage::Ratchet(_) => panic!("a new session sends a prekey message"),
    }
    let certificate = DeviceCertificate::issue(&alice_user, &alice_address, &alice_identity);
    let sender = sealed::Sender {
        identity: alice.account().identity(),
        address: &alice_address,
        user_key: &alice_user.public_key(),
        certificate: &certificate,
    };
    let envelope = sealed::seal(
        &sender,
        &bob_identity,
        &bob_address,
        &first,
        &mut rand_core::OsRng,
    )
    .unwrap();
    let initiator_record_pending = record_len(&alice, &bob_address);

    bob.decrypt(&alice_address, &alice_identity, &first, &mut rng)
        .unwrap();
    let reply = bob
        .encrypt(&alice_address, &[1; PLAINTEXT_LEN], &mut rng)
        .unwrap();
    alice
        .decrypt(&bob_address, &bob_identity, &reply, &mut rng)
        .unwrap();
    SetupSizes {
        bundle: bundle.to_wire().len(),
        first_message: first.to_wire().len(),
        envelope: envelope.len(),
        initiator_record_pending,
        responder_record: record_len(&bob, &alice_address),
        initiator_record_answered: record_len(&alice, &bob_address),
    }
}

/// The account record (`Account::to_bytes`) fresh, with 100 one-time
/// X25519 prekeys, and with 100 one-time KEM prekeys as well.
fn account_sizes() -> [(String, usize); 4] {
    let mut rng = ChaCha20Rng::seed_from_u64(3);
    let mut account = Account::generate(0, &mut rng);
    let fresh = account.to_bytes().len();
    let mut kem_only = account.clone();
    kem_only
        .generate_one_time_kem_prekeys(100, &mut rng)
        .unwrap();
    account.generate_one_time_prekeys(100, &mut rng).unwrap();
    let x25519 = account.to_bytes().len();
    account
        .generate_one_time_kem_prekeys(100, &mut rng)
        .unwrap();
    let both = account.to_bytes().len();
    [
        ("0 one-time prekeys, 0 one-time KEM prekeys".into(), fresh),
        (
            "0 one-time prekeys, 100 one-time KEM prekeys".into(),
            kem_only.to_bytes().len(),
        ),
        (
            "100 one-time prekeys, 0 one-time KEM prekeys".into(),
            x25519,
        ),
        (
            "100 one-time prekeys, 100 one-time KEM prekeys".into(),
            both,
        ),
    ]
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        // `cargo test --benches`: compute once, print nothing.
        let _ = (setup_sizes(false), setup_sizes(true), account_sizes());
        return;
    }
    let (v1, v2) = (setup_sizes(false), setup_sizes(true));
    println!("\n== tacit-v1 and tacit-v2: sizes in bytes (first message: {PLAINTEXT_LEN} B of plaintext) ==\n");
    println!("| item | tacit-v1 | tacit-v2 | added |\n| --- | ---: | ---: | ---: |");
    let rows = [
        (
            "bundle on the wire, with a one-time prekey",
            v1.bundle,
            v2.bundle,
        ),
        (
            "first (prekey) message on the wire",
            v1.first_message,
            v2.first_message,
        ),
        (
            "first message in its sealed envelope",
            v1.envelope,
            v2.envelope,
        ),
        (
            "initiator's session record, before the answer",
            v1.initiator_record_pending,
            v2.initiator_record_pending,
        ),
        (
            "responder's session record, after the first message and its answer",
            v1.responder_record,
            v2.responder_record,
        ),
        (
            "initiator's session record, after the answer",
            v1.initiator_record_answered,
            v2.initiator_record_answered,
        ),
    ];
    for (label, a, b) in rows {
        println!("| {label} | {a} | {b} | {} |", b.abs_diff(a));
    }
    println!("\n| account record (`Account::to_bytes`, with its last-resort KEM prekey) | bytes |\n| --- | ---: |");
    for (label, len) in account_sizes() {
        println!("| {label} | {len} |");
    }
}
