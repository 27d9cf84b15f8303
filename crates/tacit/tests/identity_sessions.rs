#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]
//! Sessions follow users' device lists (`docs/PROTOCOL.md` 14.5 and 14.6):
//! each test shows one attack failing, and that the refusal changes no
//! store (`InMemoryStore::dump`) and adds no send target (`fan_out`).
//!
//! - a ghost device registered under Alice's name gets no session and is
//!   never a send target;
//! - an envelope from a device not on its user's current list is refused;
//! - a device under another user key, or with a forged certificate, cannot
//!   speak as Alice, and an unknown name is reported with its user key;
//! - a removed device is no longer sent to, loses its sessions and is
//!   refused;
//! - stale, conflicting and forged lists are refused;
//! - a changed user key is refused until accepted, and changes the safety
//!   number.

mod common;

use common::{list, user_key};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use tacit::envelope::{sealed, Content, ContentKind};
use tacit::error::{IdentityError, UnknownUser, UserKeyConflict};
use tacit::identity::{DeviceCertificate, DeviceList, UserKeyPair};
use tacit::keys::IdentityKey;
use tacit::session::{BundlePreKey, DeviceListUpdate, SessionConfig, SessionManager};
use tacit::store::{InMemoryStore, SessionStore};
use tacit::{Address, EnvelopeError, SessionError};

use tacit_testkit::{device, Device};

fn rng(seed: u64) -> ChaCha20Rng {
    ChaCha20Rng::seed_from_u64(seed)
}

fn addr(user: &str, id: u32) -> Address {
    Address::new(user, id).unwrap()
}

fn id(d: &Device) -> IdentityKey {
    d.account().identity().public_key()
}

fn connect(from: &mut Device, to: &Device, rng: &mut ChaCha20Rng) {
    let bundle = to.account().bundle(BundlePreKey::Auto).unwrap();
    from.process_bundle(to.local_address(), &bundle, rng)
        .unwrap();
}

fn text(body: &str, rng: &mut ChaCha20Rng) -> Content {
    Content::new(ContentKind::Text, body.as_bytes().to_vec(), 7, rng).unwrap()
}

/// Seals `body` from `from` to `to`.
#[track_caller]
fn envelope(from: &mut Device, to: &Device, body: &str, rng: &mut ChaCha20Rng) -> Vec<u8> {
    let content = text(body, rng);
    from.seal_for_device(to.local_address(), &content, rng)
        .unwrap()
        .envelope
}

fn body(d: &mut Device, envelope: &[u8], rng: &mut ChaCha20Rng) -> String {
    let received = d.open_envelope(envelope, rng).unwrap();
    String::from_utf8(received.content.body().to_vec()).unwrap()
}

/// Runs `f` on `d`, asserting that it fails with `expected` and that the
/// store and the send targets to `user` are unchanged.
#[track_caller]
fn refused<T: std::fmt::Debug>(
    d: &mut Device,
    user: &str,
    expected: SessionError,
    f: impl FnOnce(&mut Device) -> Result<T, SessionError>,
) {
    let store = d.store().dump();
    let targets = d.fan_out(user).ok();
    assert_eq!(f(d).unwrap_err(), expected);
    assert_eq!(d.store().dump(), store, "a refusal changed the store");
    assert_eq!(
        d.fan_out(user).ok(),
        targets,
        "a refusal added a send target"
    );
}

/// Alice (devices 1 and 2) and Bob (device 1), each trusting both users'
/// version 1 lists, Bob with sessions to both of Alice's devices.
struct World {
    alice1: Device,
    alice2: Device,
    bob: Device,
    alice_v1: DeviceList,
    bob_v1: DeviceList,
    rng: ChaCha20Rng,
}

impl World {
    fn new(seed: u64) -> Self {
        let mut rng = rng(seed);
        let mut alice1 = device("alice", 1, &mut rng);
        let mut alice2 = device("alice", 2, &mut rng);
        let mut bob = device("bob", 1, &mut rng);
        let alice_v1 = list("alice", 1, &[(1, id(&alice1)), (2, id(&alice2))]);
        let bob_v1 = list("bob", 1, &[(1, id(&bob))]);
        for d in [&mut alice1, &mut alice2, &mut bob] {
            d.update_device_list(&alice_v1).unwrap();
            d.update_device_list(&bob_v1).unwrap();
        }
        connect(&mut bob, &alice1, &mut rng);
        connect(&mut bob, &alice2, &mut rng);
        Self {
            alice1,
            alice2,
            bob,
            alice_v1,
            bob_v1,
            rng,
        }
    }
}

#[test]
fn a_ghost_device_gets_no_session_and_is_never_a_send_target() {
    let mut w = World::new(1);
    let alice_devices = vec![addr("alice", 1), addr("alice", 2)];
    assert_eq!(w.bob.fan_out("alice").unwrap(), alice_devices);

    // A stranger registers a device as alice.3 (and at alice.2, another
    // identity); Alice's user key never listed either.
    let ghost = device("alice", 3, &mut w.rng);
    let ghost_bundle = ghost.account().bundle(BundlePreKey::Auto).unwrap();
    for address in [addr("alice", 3), addr("alice", 2)] {
        refused(
            &mut w.bob,
            "alice",
            SessionError::DeviceNotListed(address.clone()),
            |d| d.process_bundle(&address, &ghost_bundle, &mut w.rng),
        );
    }
    assert!(w.bob.session_info(&addr("alice", 3)).unwrap().is_none());

    // Nor does a list of "alice" signed by the stranger's user key get in.
    let mallory = user_key("mallory");
    let ghost_list = DeviceList::sign(
        &mallory,
        "alice",
        2,
        &[
            (1, id(&w.alice1), 0),
            (2, id(&w.alice2), 0),
            (3, id(&ghost), 0),
        ],
    )
    .unwrap();
    refused(
        &mut w.bob,
        "alice",
        SessionError::UserKeyChanged(Box::new(UserKeyConflict {
            user_id: "alice".into(),
            trusted: user_key("alice").public_key(),
            received: mallory.public_key(),
        })),
        |d| d.update_device_list(&ghost_list),
    );
    refused(
        &mut w.bob,
        "alice",
        SessionError::DeviceNotListed(addr("alice", 3)),
        |d| d.process_bundle(&addr("alice", 3), &ghost_bundle, &mut w.rng),
    );

    // Every send to Alice goes to her two devices only.
    assert_eq!(w.bob.fan_out("alice").unwrap(), alice_devices);
    assert!(w.bob.missing_sessions("alice").unwrap().is_empty());
    let content = text("for alice", &mut w.rng);
    let out = w.bob.seal_for_user("alice", &content, &mut w.rng).unwrap();
    let recipients: Vec<Address> = out.iter().map(|o| o.recipient.clone()).collect();
    assert_eq!(recipients, alice_devices);
    assert_eq!(
        w.alice1
            .open_envelope(&out[0].envelope, &mut w.rng)
            .unwrap()
            .content,
        content
    );
    assert_eq!(
        w.alice2
            .open_envelope(&out[1].envelope, &mut w.rng)
            .unwrap()
            .content,
        content
    );
}

#[test]
fn an_envelope_from_a_device_not_on_the_current_list_is_refused() {
    let mut w = World::new(2);
    // Alice links alice.3: her user key signs version 2, which alice.3 and
    // alice.1 hold but Bob has not fetched yet.
    let mut alice3 = device("alice", 3, &mut w.rng);
    let alice_v2 = w
        .alice_v1
        .with_device(&user_key("alice"), 3, id(&alice3), 0)
        .unwrap();
    alice3.update_device_list(&alice_v2).unwrap();
    alice3.update_device_list(&w.bob_v1).unwrap();
    connect(&mut alice3, &w.bob, &mut w.rng);
    let first = envelope(&mut alice3, &w.bob, "hello from my new phone", &mut w.rng);

    refused(
        &mut w.bob,
        "alice",
        SessionError::DeviceNotListed(addr("alice", 3)),
        |d| d.open_envelope(&first, &mut w.rng),
    );
    assert!(w.bob.session_info(&addr("alice", 3)).unwrap().is_none());
    assert_eq!(
        w.bob.fan_out("alice").unwrap(),
        [addr("alice", 1), addr("alice", 2)]
    );

    // Once Bob trusts version 2, the same envelope opens.
    assert_eq!(
        w.bob.update_device_list(&alice_v2).unwrap(),
        DeviceListUpdate::Updated {
            added: vec![addr("alice", 3)],
            removed: vec![],
        }
    );
    assert_eq!(
        body(&mut w.bob, &first, &mut w.rng),
        "hello from my new phone"
    );
    assert_eq!(
        w.bob.fan_out("alice").unwrap(),
        [addr("alice", 1), addr("alice", 2), addr("alice", 3)]
    );
}

#[test]
fn impersonation_at_first_contact_is_refused() {
    let mut w = World::new(3);
    // Mallory's device names itself alice.5, with her own user key and a
    // valid certificate under it.
    let mallory = user_key("mallory");
    let mut fake = device("alice", 5, &mut w.rng);
    let fake_list = DeviceList::sign(&mallory, "alice", 1, &[(5, id(&fake), 0)]).unwrap();
    fake.update_device_list(&fake_list).unwrap();
    fake.update_device_list(&w.bob_v1).unwrap();
    connect(&mut fake, &w.bob, &mut w.rng);
    let as_alice = envelope(&mut fake, &w.bob, "it's alice, honest", &mut w.rng);
    refused(
        &mut w.bob,
        "alice",
        SessionError::UserKeyChanged(Box::new(UserKeyConflict {
            user_id: "alice".into(),
            trusted: user_key("alice").public_key(),
            received: mallory.public_key(),
        })),
        |d| d.open_envelope(&as_alice, &mut w.rng),
    );

    // A certificate forged for Alice's key: the envelope layer refuses it.
    let message = sealed::open(w.bob.account().identity(), w.bob.local_address(), &as_alice)
        .unwrap()
        .message;
    let forged_certificate = DeviceCertificate::issue(&mallory, &addr("alice", 5), &id(&fake));
    let forged = sealed::seal(
        &sealed::Sender {
            identity: fake.account().identity(),
            address: &addr("alice", 5),
            user_key: &user_key("alice").public_key(),
            certificate: &forged_certificate,
        },
        &id(&w.bob),
        w.bob.local_address(),
        &message,
        &mut w.rng,
    )
    .unwrap();
    refused(
        &mut w.bob,
        "alice",
        SessionError::Envelope(EnvelopeError::InvalidSenderCertificate),
        |d| d.open_envelope(&forged, &mut w.rng),
    );

    // A name Bob has no list for: refused, naming the envelope's user key
    // for the caller to check against the list it fetches.
    let zed_key = UserKeyPair::from_seed(&[0x2e; 32]);
    let mut zed = device("zed", 1, &mut w.rng);
    zed.update_device_list(&DeviceList::sign(&zed_key, "zed", 1, &[(1, id(&zed), 0)]).unwrap())
        .unwrap();
    zed.update_device_list(&w.bob_v1).unwrap();
    connect(&mut zed, &w.bob, &mut w.rng);
    let from_zed = envelope(&mut zed, &w.bob, "hi", &mut w.rng);
    refused(
        &mut w.bob,
        "alice",
        SessionError::UnknownUser(Box::new(UnknownUser {
            user_id: "zed".into(),
            user_key: Some(zed_key.public_key()),
        })),
        |d| d.open_envelope(&from_zed, &mut w.rng),
    );
    assert!(w.bob.fan_out("zed").is_err());
    assert!(w.bob.device_list("zed").unwrap().is_none());
}

#[test]
fn a_removed_device_is_not_sent_to_and_is_refused() {
    let mut w = World::new(4);
    // Both of Alice's devices have talked to Bob.
    let mut late = Vec::new();
    for alice in [&mut w.alice1, &mut w.alice2] {
        let first =
            w.bob
                .seal_for_device(alice.local_address(), &text("hi", &mut w.rng), &mut w.rng);
        alice
            .open_envelope(&first.unwrap().envelope, &mut w.rng)
            .unwrap();
        late.push(envelope(
            alice,
            &w.bob,
            "sent before the removal",
            &mut w.rng,
        ));
    }
    assert_eq!(
        body(&mut w.bob, &late[0], &mut w.rng),
        "sent before the removal"
    );

    // Alice removes device 2 (version 2).
    let alice_v2 = w.alice_v1.without_device(&user_key("alice"), 2).unwrap();
    assert_eq!(
        w.bob.update_device_list(&alice_v2).unwrap(),
        DeviceListUpdate::Updated {
            added: vec![],
            removed: vec![addr("alice", 2)],
        }
    );
    w.alice1.update_device_list(&alice_v2).unwrap();

    // Bob's sessions with alice.2 are gone; nothing is sealed for it.
    assert!(w
        .bob
        .store()
        .load_session(&addr("alice", 2))
        .unwrap()
        .is_none());
    assert_eq!(w.bob.fan_out("alice").unwrap(), [addr("alice", 1)]);
    let out = w
        .bob
        .seal_for_user("alice", &text("after", &mut w.rng), &mut w.rng)
        .unwrap();
    let recipients: Vec<Address> = out.iter().map(|o| o.recipient.clone()).collect();
    assert_eq!(recipients, [addr("alice", 1)]);
    assert_eq!(
        w.bob
            .seal_for_device(&addr("alice", 2), &text("x", &mut w.rng), &mut w.rng)
            .unwrap_err(),
        SessionError::NoSession(addr("alice", 2))
    );
    // Alice's own other device is no longer a target of hers either.
    assert_eq!(w.alice1.fan_out("bob").unwrap(), [addr("bob", 1)]);

    // Envelopes from alice.2, sent before or after, and its bundle: refused.
    let after = envelope(&mut w.alice2, &w.bob, "still here", &mut w.rng);
    for env in [&late[1], &after] {
        refused(
            &mut w.bob,
            "alice",
            SessionError::DeviceNotListed(addr("alice", 2)),
            |d| d.open_envelope(env, &mut w.rng),
        );
    }
    let bundle = w.alice2.account().bundle(BundlePreKey::Auto).unwrap();
    refused(
        &mut w.bob,
        "alice",
        SessionError::DeviceNotListed(addr("alice", 2)),
        |d| d.process_bundle(&addr("alice", 2), &bundle, &mut w.rng),
    );
    // alice.1 still talks to Bob.
    let still = envelope(&mut w.alice1, &w.bob, "still friends", &mut w.rng);
    assert_eq!(body(&mut w.bob, &still, &mut w.rng), "still friends");
}

#[test]
fn stale_conflicting_and_forged_lists_are_refused() {
    let mut w = World::new(5);
    let alice = user_key("alice");
    let alice_v2 = w.alice_v1.without_device(&alice, 2).unwrap();
    w.bob.update_device_list(&alice_v2).unwrap();

    refused(
        &mut w.bob,
        "alice",
        SessionError::StaleDeviceList {
            user_id: "alice".into(),
            stored: 2,
            received: 1,
        },
        |d| d.update_device_list(&w.alice_v1),
    );
    let ghost = device("alice", 2, &mut w.rng);
    let conflicting = list("alice", 2, &[(1, id(&w.alice1)), (2, id(&ghost))]);
    refused(
        &mut w.bob,
        "alice",
        SessionError::ConflictingDeviceList("alice".into()),
        |d| d.update_device_list(&conflicting),
    );
    assert_eq!(
        w.bob.update_device_list(&alice_v2).unwrap(),
        DeviceListUpdate::Unchanged
    );
    assert_eq!(w.bob.device_list("alice").unwrap(), Some(alice_v2.clone()));

    // Forged lists do not decode: no DeviceList value exists for the
    // session layer to be handed.
    let wire = alice_v2.to_wire();
    let mut flipped = wire.clone();
    *flipped.last_mut().unwrap() ^= 1;
    assert_eq!(
        DeviceList::from_wire(&flipped).unwrap_err(),
        IdentityError::InvalidListSignature
    );
    // Mallory's list with Alice's user key put in its place.
    let mallory = user_key("mallory");
    let mallory_list = DeviceList::sign(&mallory, "alice", 3, &[(1, id(&ghost), 0)]).unwrap();
    let swapped = swap(
        &mallory_list.to_wire(),
        &mallory.public_key().to_bytes(),
        &alice.public_key().to_bytes(),
    );
    assert_eq!(
        DeviceList::from_wire(&swapped).unwrap_err(),
        IdentityError::InvalidCertificate(1)
    );
    assert_eq!(DeviceList::from_wire(&wire).unwrap(), alice_v2);
}

/// `bytes` with the one occurrence of `old` replaced by `new`.
fn swap(bytes: &[u8], old: &[u8], new: &[u8]) -> Vec<u8> {
    let at: Vec<usize> = (0..=bytes.len() - old.len())
        .filter(|&i| &bytes[i..i + old.len()] == old)
        .collect();
    assert_eq!(at.len(), 1);
    let mut out = bytes.to_vec();
    out[at[0]..at[0] + old.len()].copy_from_slice(new);
    out
}

#[test]
fn a_changed_user_key_is_refused_until_accepted() {
    let mut w = World::new(6);
    let old_number = w.bob.safety_number("alice").unwrap();
    assert_eq!(w.alice1.safety_number("bob").unwrap(), old_number);
    let hi = w
        .bob
        .seal_for_user("alice", &text("hi", &mut w.rng), &mut w.rng)
        .unwrap();
    w.alice1.open_envelope(&hi[0].envelope, &mut w.rng).unwrap();
    w.alice2.open_envelope(&hi[1].envelope, &mut w.rng).unwrap();

    // Alice replaces her user key (say, after losing it); her new list
    // keeps device 1 only.
    let new_key = UserKeyPair::from_seed(&[0xa1; 32]);
    let new_list = DeviceList::sign(&new_key, "alice", 1, &[(1, id(&w.alice1), 0)]).unwrap();
    let conflict = SessionError::UserKeyChanged(Box::new(UserKeyConflict {
        user_id: "alice".into(),
        trusted: user_key("alice").public_key(),
        received: new_key.public_key(),
    }));
    assert_eq!(
        w.alice1.update_device_list(&new_list).unwrap_err(),
        conflict
    );
    w.alice1.accept_user_key(&new_list).unwrap();
    let from_alice = envelope(&mut w.alice1, &w.bob, "my new key", &mut w.rng);

    // Bob refuses both the list and the envelope until he accepts.
    refused(&mut w.bob, "alice", conflict.clone(), |d| {
        d.update_device_list(&new_list)
    });
    refused(&mut w.bob, "alice", conflict, |d| {
        d.open_envelope(&from_alice, &mut w.rng)
    });
    assert_eq!(w.bob.safety_number("alice").unwrap(), old_number);

    // He compares the new safety number, then accepts.
    w.bob.accept_user_key(&new_list).unwrap();
    let new_number = w.bob.safety_number("alice").unwrap();
    assert_ne!(new_number, old_number);
    assert_eq!(w.alice1.safety_number("bob").unwrap(), new_number);
    assert_eq!(w.bob.fan_out("alice").unwrap(), [addr("alice", 1)]);
    assert!(w
        .bob
        .store()
        .load_session(&addr("alice", 2))
        .unwrap()
        .is_none());
    assert_eq!(body(&mut w.bob, &from_alice, &mut w.rng), "my new key");
    let reply = w
        .bob
        .seal_for_user("alice", &text("welcome back", &mut w.rng), &mut w.rng)
        .unwrap();
    assert_eq!(reply.len(), 1);
    assert_eq!(
        body(&mut w.alice1, &reply[0].envelope, &mut w.rng),
        "welcome back"
    );
    // alice.2, certified only by the old key, is refused now.
    let from_old = envelope(&mut w.alice2, &w.bob, "old key", &mut w.rng);
    refused(
        &mut w.bob,
        "alice",
        SessionError::UserKeyChanged(Box::new(UserKeyConflict {
            user_id: "alice".into(),
            trusted: new_key.public_key(),
            received: user_key("alice").public_key(),
        })),
        |d| d.open_envelope(&from_old, &mut w.rng),
    );
}

#[test]
fn a_first_list_deletes_sessions_with_devices_it_does_not_name() {
    // A store from before device lists (sessions trusted on first use, as
    // a migrated file holds them): Bob has sessions with alice.1 and with a
    // ghost at alice.3 that Alice's user key never listed.
    let mut rng = rng(7);
    let mut bob = device("bob", 1, &mut rng);
    let alice1 = device("alice", 1, &mut rng);
    let ghost = device("alice", 3, &mut rng);
    let tofu = list("alice", 1, &[(1, id(&alice1)), (3, id(&ghost))]);
    bob.update_device_list(&list("bob", 1, &[(1, id(&bob))]))
        .unwrap();
    bob.update_device_list(&tofu).unwrap();
    connect(&mut bob, &alice1, &mut rng);
    connect(&mut bob, &ghost, &mut rng);
    let mut legacy = tacit::store::Changes::new()
        .with_account(bob.account().clone())
        .with_device_list(bob.device_list("bob").unwrap().unwrap());
    for d in [&alice1, &ghost] {
        let address = d.local_address().clone();
        let record = bob.store().load_session(&address).unwrap();
        legacy = legacy
            .with_identity(address.clone(), id(d))
            .with_session(address, record);
    }
    let mut store = InMemoryStore::new();
    tacit::store::Store::commit(&mut store, legacy).unwrap();
    let mut bob = SessionManager::open(store, addr("bob", 1), SessionConfig::default()).unwrap();
    assert!(bob.device_list("alice").unwrap().is_none());

    // Alice's first list names alice.1 only: the ghost's session goes in
    // the same commit, alice.1's stays.
    let alice_v1 = list("alice", 1, &[(1, id(&alice1))]);
    assert_eq!(
        bob.update_device_list(&alice_v1).unwrap(),
        DeviceListUpdate::FirstContact
    );
    assert!(bob
        .store()
        .load_session(&addr("alice", 3))
        .unwrap()
        .is_none());
    assert!(bob
        .store()
        .load_session(&addr("alice", 1))
        .unwrap()
        .is_some());
    assert_eq!(
        bob.seal_for_device(&addr("alice", 3), &text("x", &mut rng), &mut rng)
            .unwrap_err(),
        SessionError::NoSession(addr("alice", 3))
    );
    assert!(bob
        .seal_for_device(&addr("alice", 1), &text("x", &mut rng), &mut rng)
        .is_ok());
}
