//! A real device's session manager (an account with one-time prekeys, an
//! established session with skipped keys, a session still answered with
//! prekey messages) fed arbitrary session messages and sealed envelopes:
//! mutated real ones or raw bytes, from any of several senders. No panic;
//! an operation that fails leaves the store's serialized state exactly as
//! it was (except a content that does not decode after an authenticated
//! decryption, which by design advances the session); and a message that
//! decrypted once does not decrypt again. Alice, Bob and Dave trust each
//! other's device lists; Eve is on none.
#![no_main]

use std::sync::OnceLock;

use arbitrary::Unstructured;
use libfuzzer_sys::fuzz_target;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use tacit::envelope::{Content, ContentKind};
use tacit::error::SessionError;
use tacit::identity::{DeviceList, UserKeyPair};
use tacit::session::{Account, BundlePreKey, SessionConfig, SessionManager};
use tacit::store::InMemoryStore;
use tacit::wire::{SessionMessage, WireMessage};
use tacit::{Address, IdentityKey};

struct Fixture {
    store: InMemoryStore,
    local: Address,
    senders: Vec<(Address, IdentityKey)>,
    messages: Vec<Vec<u8>>,
    envelopes: Vec<Vec<u8>>,
}

fn manager(rng: &mut ChaCha20Rng, user: &str) -> SessionManager<InMemoryStore> {
    SessionManager::create(
        InMemoryStore::new(),
        Address::new(user, 1).expect("address"),
        Account::generate(0, rng),
        SessionConfig::default(),
    )
    .expect("manager")
}

fn content(rng: &mut ChaCha20Rng, body: &[u8]) -> Content {
    Content::new(ContentKind::Text, body.to_vec(), 1_700_000_000_000, rng)
        .expect("content")
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let mut rng = ChaCha20Rng::seed_from_u64(21);
        let rng = &mut rng;
        let mut bob = manager(rng, "bob");
        bob.generate_one_time_prekeys(4, rng).expect("prekeys");
        let bob_address = bob.local_address().clone();
        let mut alice = manager(rng, "alice");
        let mut dave = manager(rng, "dave");
        let lists: Vec<DeviceList> = [(&alice, 0xa1), (&bob, 0xb0), (&dave, 0xda)]
            .into_iter()
            .map(|(m, seed)| {
                DeviceList::sign(
                    &UserKeyPair::from_seed(&[seed; 32]),
                    m.local_address().user_id(),
                    1,
                    &[(1, m.account().identity().public_key(), 0)],
                )
                .expect("list")
            })
            .collect();
        for m in [&mut alice, &mut bob, &mut dave] {
            for list in &lists {
                m.update_device_list(list).expect("list");
            }
        }
        let mut messages = Vec::new();
        let mut envelopes = Vec::new();

        // Alice and Bob: prekey messages, one answered, skipped keys in two
        // chains.
        let bundle = bob.account().bundle(BundlePreKey::Auto).expect("bundle");
        alice
            .process_bundle(&bob_address, &bundle, rng)
            .expect("bundle");
        let pad = |c: &Content| c.to_padded().expect("pad");
        let first: Vec<SessionMessage> = (0..3)
            .map(|i| {
                alice
                    .encrypt(&bob_address, &pad(&content(rng, &[i; 3])), rng)
                    .expect("encrypt")
            })
            .collect();
        let alice_address = alice.local_address().clone();
        let alice_identity = alice.account().identity().public_key();
        bob.decrypt(&alice_address, &alice_identity, &first[2], rng)
            .expect("decrypt");
        let reply = bob
            .encrypt(&alice_address, &pad(&content(rng, b"re")), rng)
            .expect("encrypt");
        let bob_identity = bob.account().identity().public_key();
        alice
            .decrypt(&bob_address, &bob_identity, &reply, rng)
            .expect("decrypt");
        let second: Vec<SessionMessage> = (0..3)
            .map(|i| {
                alice
                    .encrypt(&bob_address, &pad(&content(rng, &[i; 9])), rng)
                    .expect("encrypt")
            })
            .collect();
        bob.decrypt(&alice_address, &alice_identity, &second[1], rng)
            .expect("decrypt");
        for m in [&first[0], &first[1], &second[0], &second[2]] {
            messages.push(m.to_wire());
        }
        for body in [&b"sealed"[..], &[1; 200]] {
            let out = alice
                .seal_for_device(&bob_address, &content(rng, body), rng)
                .expect("seal");
            envelopes.push(out.envelope);
        }

        // Dave: a new session from a bundle with a one-time prekey, never
        // answered; one message bare, one sealed.
        let bundle = bob.account().bundle(BundlePreKey::Auto).expect("bundle");
        dave.process_bundle(&bob_address, &bundle, rng)
            .expect("bundle");
        let dave_message = dave
            .encrypt(&bob_address, &pad(&content(rng, b"d")), rng)
            .expect("encrypt");
        messages.push(dave_message.to_wire());
        let out = dave
            .seal_for_device(&bob_address, &content(rng, b"dd"), rng)
            .expect("seal");
        envelopes.push(out.envelope);

        let senders = vec![
            (alice_address, alice_identity),
            (
                dave.local_address().clone(),
                dave.account().identity().public_key(),
            ),
            (
                Address::new("eve", 3).expect("address"),
                tacit::IdentityKeyPair::from_seed(&[5; 32]).public_key(),
            ),
            (bob_address.clone(), bob_identity),
        ];
        Fixture {
            store: bob.into_store(),
            local: bob_address,
            senders,
            messages,
            envelopes,
        }
    })
}

/// A real input mutated (XOR at an offset, maybe cut short) or raw bytes.
fn input(u: &mut Unstructured<'_>, reals: &[Vec<u8>]) -> arbitrary::Result<Vec<u8>> {
    if u.ratio(1, 8)? {
        let len = u.arbitrary_len::<u8>()?;
        return Ok(u.bytes(len)?.to_vec());
    }
    let mut bytes = reals[u.choose_index(reals.len())?].clone();
    let offset = u.int_in_range(0..=bytes.len())?;
    if u.ratio(1, 4)? {
        bytes.truncate(offset);
    }
    let n = u.int_in_range(0..=16)?;
    let xor = u.bytes(n)?;
    for (dst, src) in bytes.iter_mut().skip(offset).zip(xor) {
        *dst ^= src;
    }
    Ok(bytes)
}

fn run(u: &mut Unstructured<'_>) -> arbitrary::Result<()> {
    let f = fixture();
    let mut bob = SessionManager::open(f.store.clone(), f.local.clone(), SessionConfig::default())
        .expect("open");
    let mut rng = ChaCha20Rng::seed_from_u64(u.arbitrary()?);
    let before = bob.store().dump();
    if u.arbitrary::<bool>()? {
        let (sender, _) = &f.senders[u.choose_index(f.senders.len())?];
        let (_, identity) = &f.senders[u.choose_index(f.senders.len())?];
        let bytes = input(u, &f.messages)?;
        let Ok(message) = SessionMessage::from_wire(&bytes) else {
            return Ok(());
        };
        match bob.decrypt(sender, identity, &message, &mut rng) {
            Err(e) => assert!(
                bob.store().dump() == before,
                "a failed decryption ({e:?}) changed the store"
            ),
            Ok(_) => {
                let after = bob.store().dump();
                let again = bob.decrypt(sender, identity, &message, &mut rng);
                assert!(again.is_err(), "a message decrypted twice");
                assert!(
                    bob.store().dump() == after,
                    "a refused replay changed the store"
                );
            }
        }
    } else {
        let envelope = input(u, &f.envelopes)?;
        match bob.open_envelope(&envelope, &mut rng) {
            Err(SessionError::Content(_)) => {}
            Err(e) => assert!(
                bob.store().dump() == before,
                "a refused envelope ({e:?}) changed the store"
            ),
            Ok(_) => {
                let after = bob.store().dump();
                assert!(
                    bob.open_envelope(&envelope, &mut rng).is_err(),
                    "an envelope opened twice"
                );
                assert!(
                    bob.store().dump() == after,
                    "a refused replay changed the store"
                );
            }
        }
    }
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    let _ = run(&mut Unstructured::new(data));
});
