#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]
//! Profile `tacit-v2` (PQXDH, `docs/PROTOCOL.md` section 15): round trips,
//! and every hostile input of 15.5, 15.7 and 15.8 refused with its error
//! and no change.

mod common;

use common::MustNotDraw;
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;
use tacit::error::{DecryptError, KemError, PqxdhError, SessionError, WireError};
use tacit::identity::{DeviceList, UserKeyPair};
use tacit::kem::{KemKeyPair, KemPublicKey};
use tacit::keys::{IdentityKeyPair, KeyPair, Signature};
use tacit::pqxdh;
use tacit::session::{
    Account, BundlePreKey, KemPreKeyChoice, Profile, SessionConfig, SessionManager,
};
use tacit::store::{InMemoryStore, SessionStore};
use tacit::wire::{PreKeyBundleMessage, PreKeyMessage, SessionMessage, WireMessage};
use tacit::{Address, IdentityKey};
use tacit::{BundleKemPreKey, PreKeyBundle};

type Manager = SessionManager<InMemoryStore>;

fn rng(seed: u64) -> ChaCha20Rng {
    ChaCha20Rng::seed_from_u64(seed)
}

/// Alice and Bob, each on the other's verified device list; Bob has one
/// one-time EC prekey and one one-time KEM prekey.
fn pair(bob_config: SessionConfig, rng: &mut ChaCha20Rng) -> (Manager, Manager) {
    let make = |user: &str, config, rng: &mut ChaCha20Rng| {
        SessionManager::create(
            InMemoryStore::new(),
            Address::new(user, 1).unwrap(),
            Account::generate(0, rng),
            config,
        )
        .unwrap()
    };
    let mut alice = make("alice", SessionConfig::default(), rng);
    let mut bob = make("bob", bob_config, rng);
    bob.generate_one_time_prekeys(1, rng).unwrap();
    bob.update_account(|a| a.generate_one_time_kem_prekeys(1, rng))
        .unwrap();
    let lists = [
        DeviceList::sign(
            &UserKeyPair::generate(rng),
            "alice",
            1,
            &[(1, alice.account().identity().public_key(), 0)],
        )
        .unwrap(),
        DeviceList::sign(
            &UserKeyPair::generate(rng),
            "bob",
            1,
            &[(1, bob.account().identity().public_key(), 0)],
        )
        .unwrap(),
    ];
    for list in &lists {
        alice.update_device_list(list).unwrap();
        bob.update_device_list(list).unwrap();
    }
    (alice, bob)
}

fn identity(m: &Manager) -> IdentityKey {
    m.account().identity().public_key()
}

/// The manager's account and its session record with `peer`, as bytes.
fn snapshot(m: &Manager, peer: &Address) -> (Vec<u8>, Option<Vec<u8>>) {
    (
        m.account().to_bytes().to_vec(),
        m.store()
            .load_session(peer)
            .unwrap()
            .map(|r| r.to_bytes().to_vec()),
    )
}

fn first_message(
    alice: &mut Manager,
    bob: &Manager,
    bundle: &PreKeyBundleMessage,
    r: &mut ChaCha20Rng,
) -> PreKeyMessage {
    alice
        .process_bundle(bob.local_address(), bundle, r)
        .unwrap();
    match alice.encrypt(bob.local_address(), b"first", r).unwrap() {
        SessionMessage::PreKey(m) => *m,
        SessionMessage::Ratchet(_) => panic!("a new session sends prekey messages"),
    }
}

fn deliver(
    bob: &mut Manager,
    alice: &Manager,
    m: &PreKeyMessage,
    r: &mut ChaCha20Rng,
) -> Result<Vec<u8>, SessionError> {
    bob.decrypt(
        alice.local_address(),
        &identity(alice),
        &SessionMessage::PreKey(Box::new(m.clone())),
        r,
    )
    .map(|d| d.plaintext)
}

#[test]
fn v2_round_trip_consumes_the_one_time_kem_prekey() {
    let mut r = rng(1);
    let (mut alice, mut bob) = pair(SessionConfig::default(), &mut r);
    let bundle = bob.account().bundle(BundlePreKey::Auto).unwrap();
    let kem_id = bundle.kem_prekey.as_ref().unwrap().id;
    assert!(bob.account().has_one_time_kem_prekey(kem_id));
    assert_eq!(bundle.version(), 2);
    let m = first_message(&mut alice, &bob, &bundle, &mut r);
    assert_eq!(m.version(), 2);
    assert_eq!(m.kem.as_ref().unwrap().0, kem_id);
    assert_eq!(deliver(&mut bob, &alice, &m, &mut r).unwrap(), b"first");
    assert!(!bob.account().has_one_time_kem_prekey(kem_id));
    for side in [&alice, &bob] {
        let peer = if side.local_address() == alice.local_address() {
            bob.local_address()
        } else {
            alice.local_address()
        };
        let info = side.session_info(peer).unwrap().unwrap();
        assert_eq!(info.current_profile, Some(Profile::V2));
    }
    // The reply and the next message are plain ratchet messages.
    let reply = bob
        .encrypt(alice.local_address(), b"reply", &mut r)
        .unwrap();
    let got = alice
        .decrypt(bob.local_address(), &identity(&bob), &reply, &mut r)
        .unwrap();
    assert_eq!(got.plaintext, b"reply");
    let next = alice.encrypt(bob.local_address(), b"next", &mut r).unwrap();
    assert!(matches!(next, SessionMessage::Ratchet(_)));
    // Records survive a round trip with their profile.
    let record = bob
        .store()
        .load_session(alice.local_address())
        .unwrap()
        .unwrap();
    let back = tacit::session::SessionRecord::from_bytes(&record.to_bytes()).unwrap();
    assert_eq!(back.current().unwrap().profile(), Profile::V2);
}

#[test]
fn last_resort_kem_prekey_is_kept_and_rotates_with_grace() {
    let mut r = rng(2);
    let (mut alice, mut bob) = pair(SessionConfig::default(), &mut r);
    let bundle = bob
        .account()
        .bundle_with(BundlePreKey::None, KemPreKeyChoice::LastResort)
        .unwrap();
    let id = bundle.kem_prekey.as_ref().unwrap().id;
    let m = first_message(&mut alice, &bob, &bundle, &mut r);
    bob.update_account(|a| {
        a.rotate_kem_last_resort_prekey(100, 50, &mut r)
            .map(|k| k.id())
    })
    .unwrap();
    // Within the grace period the retired key still opens the message.
    let before = snapshot(&bob, alice.local_address());
    assert_eq!(deliver(&mut bob, &alice, &m, &mut r).unwrap(), b"first");
    assert_ne!(snapshot(&bob, alice.local_address()), before);
    assert!(bob
        .account()
        .retired_kem_prekeys()
        .iter()
        .any(|k| k.id() == id));
    // After it, a new first message naming it is refused.
    bob.update_account(|a| Ok(a.prune_kem_prekeys(150, 50)))
        .unwrap();
    let m2 = PreKeyMessage {
        ephemeral_key: KeyPair::generate(&mut r).public_key(),
        ..m
    };
    let before = snapshot(&bob, alice.local_address());
    assert_eq!(
        deliver(&mut bob, &alice, &m2, &mut r),
        Err(SessionError::UnknownKemPreKey(id))
    );
    assert_eq!(snapshot(&bob, alice.local_address()), before);
}

#[test]
fn a_reused_one_time_kem_prekey_is_refused_the_second_time() {
    let mut r = rng(3);
    let (mut alice, mut bob) = pair(SessionConfig::default(), &mut r);
    let bundle = bob.account().bundle(BundlePreKey::Auto).unwrap();
    let kem_id = bundle.kem_prekey.as_ref().unwrap().id;
    let first = first_message(&mut alice, &bob, &bundle, &mut r);
    assert!(deliver(&mut bob, &alice, &first, &mut r).is_ok());
    // A second session from the same bundle (the relay handed it out twice),
    // without the EC one-time prekey so that only the KEM one is reused.
    let mut again = bundle.clone();
    again.one_time_prekey = None;
    let second = first_message(&mut alice, &bob, &again, &mut r);
    let before = snapshot(&bob, alice.local_address());
    assert_eq!(
        deliver(&mut bob, &alice, &second, &mut r),
        Err(SessionError::UnknownKemPreKey(kem_id))
    );
    assert_eq!(snapshot(&bob, alice.local_address()), before);
}

#[test]
fn a_classical_first_message_is_refused_by_policy_and_accepted_without() {
    for refuse in [true, false] {
        let mut r = rng(4);
        let config = SessionConfig::default().with_classical_prekey_messages_refused(refuse);
        let (mut alice, mut bob) = pair(config, &mut r);
        let bundle = bob
            .account()
            .bundle_with(BundlePreKey::Auto, KemPreKeyChoice::None)
            .unwrap();
        assert_eq!(bundle.version(), 1);
        let m = first_message(&mut alice, &bob, &bundle, &mut r);
        assert_eq!(m.version(), 1);
        let before = snapshot(&bob, alice.local_address());
        let result = deliver(&mut bob, &alice, &m, &mut r);
        if refuse {
            assert_eq!(result, Err(SessionError::ClassicalPreKeyRefused));
            assert_eq!(snapshot(&bob, alice.local_address()), before);
        } else {
            assert_eq!(result.unwrap(), b"first");
            let info = bob.session_info(alice.local_address()).unwrap().unwrap();
            assert_eq!(info.current_profile, Some(Profile::V1));
        }
    }
}

#[test]
fn a_tampered_kem_ciphertext_fails_and_changes_nothing() {
    let mut r = rng(5);
    let (mut alice, mut bob) = pair(SessionConfig::default(), &mut r);
    let bundle = bob.account().bundle(BundlePreKey::Auto).unwrap();
    let m = first_message(&mut alice, &bob, &bundle, &mut r);
    let (id, ct) = m.kem.clone().unwrap();
    for at in [0, 784, 1567] {
        let mut bytes = *ct.as_bytes();
        bytes[at] ^= 0x01;
        let tampered = PreKeyMessage {
            kem: Some((
                id,
                tacit::kem::KemCiphertext::try_from_slice(&bytes).unwrap(),
            )),
            ..m.clone()
        };
        let before = snapshot(&bob, alice.local_address());
        assert_eq!(
            deliver(&mut bob, &alice, &tampered, &mut r),
            Err(SessionError::Decrypt(DecryptError::UnknownHeaderKey))
        );
        assert_eq!(snapshot(&bob, alice.local_address()), before);
    }
    // The untampered message still opens: nothing was consumed.
    assert_eq!(deliver(&mut bob, &alice, &m, &mut r).unwrap(), b"first");
}

#[test]
fn stripping_or_changing_the_version_fails() {
    let mut r = rng(6);
    let (mut alice, mut bob) = pair(
        SessionConfig::default().with_classical_prekey_messages_refused(false),
        &mut r,
    );
    let bundle = bob.account().bundle(BundlePreKey::Auto).unwrap();
    let m = first_message(&mut alice, &bob, &bundle, &mut r);
    let wire = m.to_wire();
    assert_eq!(&wire[..2], &[0x08, 0x02]);
    // Version 1 with the KEM fields, version 2 without them: refused on decoding.
    let mut v1 = wire.clone();
    v1[1] = 1;
    assert_eq!(
        PreKeyMessage::from_wire(&v1),
        Err(WireError::VersionMismatch)
    );
    let stripped = PreKeyMessage {
        kem: None,
        ..m.clone()
    };
    let mut v2_without = stripped.to_wire();
    assert_eq!(&v2_without[..2], &[0x08, 0x01]);
    v2_without[1] = 2;
    assert_eq!(
        PreKeyMessage::from_wire(&v2_without),
        Err(WireError::VersionMismatch)
    );
    let mut v3 = wire.clone();
    v3[1] = 3;
    assert_eq!(
        PreKeyMessage::from_wire(&v3),
        Err(WireError::UnknownVersion(3))
    );
    // A consistent version-1 rebuild (KEM fields removed): with the policy
    // off, it reaches X3DH and fails to decrypt (another SK); nothing changes.
    let before = snapshot(&bob, alice.local_address());
    assert_eq!(
        deliver(&mut bob, &alice, &stripped, &mut r),
        Err(SessionError::Decrypt(DecryptError::UnknownHeaderKey))
    );
    assert_eq!(snapshot(&bob, alice.local_address()), before);
}

/// Bob's keys for direct `pqxdh` calls.
struct Bob {
    identity: IdentityKeyPair,
    spk: KeyPair,
    kem: KemKeyPair,
}

fn bob_keys(r: &mut ChaCha20Rng) -> Bob {
    Bob {
        identity: IdentityKeyPair::generate(r),
        spk: KeyPair::generate(r),
        kem: KemKeyPair::generate(r),
    }
}

fn pq_bundle(bob: &Bob) -> PreKeyBundle {
    PreKeyBundle {
        identity_key: bob.identity.public_key(),
        signed_prekey: bob.spk.public_key(),
        signed_prekey_signature: bob.identity.sign_prekey(&bob.spk.public_key()),
        one_time_prekey: None,
        kem_prekey: Some(BundleKemPreKey {
            key: bob.kem.public_key().clone(),
            signature: bob.identity.sign_kem_prekey(bob.kem.public_key()),
        }),
    }
}

/// `good` with its KEM prekey signature replaced by `signature`.
fn with_kem_signature(good: &PreKeyBundle, signature: Signature) -> PreKeyBundle {
    let mut bundle = good.clone();
    bundle.kem_prekey.as_mut().expect("KEM part").signature = signature;
    bundle
}

/// The KEM prekey signature of a `tacit-v2` bundle.
fn kem_signature(bundle: &PreKeyBundle) -> Signature {
    bundle.kem_prekey.as_ref().expect("KEM part").signature
}

#[test]
fn kem_prekey_signatures_are_checked_and_encodings_never_collide() {
    let mut r = rng(7);
    let alice = IdentityKeyPair::generate(&mut r);
    let bob = bob_keys(&mut r);
    let mallory = IdentityKeyPair::generate(&mut r);
    let good = pq_bundle(&bob);
    assert!(pqxdh::initiate(&alice, &good, &mut r).is_ok());
    // Signed by another identity.
    let other = with_kem_signature(&good, mallory.sign_kem_prekey(bob.kem.public_key()));
    assert_eq!(
        pqxdh::initiate(&alice, &other, &mut r).err(),
        Some(PqxdhError::InvalidKemSignature)
    );
    // The EC signature presented as the KEM one, and the other way round.
    let swapped_kem = with_kem_signature(&good, good.signed_prekey_signature);
    assert_eq!(
        pqxdh::initiate(&alice, &swapped_kem, &mut r).err(),
        Some(PqxdhError::InvalidKemSignature)
    );
    let swapped_ec = PreKeyBundle {
        signed_prekey_signature: kem_signature(&good),
        ..good.clone()
    };
    assert_eq!(
        pqxdh::initiate(&alice, &swapped_ec, &mut r).err(),
        Some(PqxdhError::InvalidSignature)
    );
    // Both bad: the EC signature is checked first.
    let both = PreKeyBundle {
        signed_prekey_signature: kem_signature(&good),
        ..with_kem_signature(&good, good.signed_prekey_signature)
    };
    assert_eq!(
        pqxdh::initiate(&alice, &both, &mut r).err(),
        Some(PqxdhError::InvalidSignature)
    );
    // The relay's upload check.
    assert!(bob
        .identity
        .public_key()
        .verify_kem_prekey(bob.kem.public_key(), &kem_signature(&good))
        .is_ok());
    assert!(mallory
        .public_key()
        .verify_kem_prekey(bob.kem.public_key(), &kem_signature(&good))
        .is_err());
}

#[test]
fn the_kem_key_and_ciphertext_are_bound_into_sk() {
    let mut r = rng(8);
    let alice = IdentityKeyPair::generate(&mut r);
    let bob = bob_keys(&mut r);
    let init = pqxdh::initiate(&alice, &pq_bundle(&bob), &mut r).unwrap();
    let respond = |kem: &KemKeyPair, ct| {
        pqxdh::respond(
            &bob.identity,
            &bob.spk,
            None,
            kem,
            &alice.public_key(),
            &init.ephemeral_key,
            ct,
        )
        .unwrap()
    };
    let same = respond(&bob.kem, &init.kem_ciphertext);
    assert_eq!(same.shared_secret(), init.agreement.shared_secret());
    assert_eq!(same.associated_data(), init.agreement.associated_data());
    // Any change of the ciphertext changes SK.
    let mut bytes = *init.kem_ciphertext.as_bytes();
    bytes[10] ^= 0x80;
    let ct = tacit::kem::KemCiphertext::try_from_slice(&bytes).unwrap();
    assert_ne!(
        respond(&bob.kem, &ct).shared_secret(),
        init.agreement.shared_secret()
    );
    // Another KEM key pair gives another SK.
    let other = KemKeyPair::generate(&mut r);
    assert_ne!(
        respond(&other, &init.kem_ciphertext).shared_secret(),
        init.agreement.shared_secret()
    );
}

#[test]
fn hostile_kem_fields_are_refused_on_decoding() {
    let mut r = rng(9);
    let account = Account::generate(0, &mut r);
    let bundle = account.bundle(BundlePreKey::Auto).unwrap();
    let wire = bundle.to_wire();
    assert!(wire.len() <= tacit::wire::MAX_BUNDLE_LEN);
    assert_eq!(PreKeyBundleMessage::from_wire(&wire).unwrap(), bundle);
    let encoded = bundle.kem_prekey.as_ref().unwrap().key.to_encoded();
    let at = wire
        .windows(encoded.len())
        .position(|w| w == &encoded[..])
        .unwrap();
    // The length prefix is the two bytes before the key: 1569 = 0xa1 0x0c.
    assert_eq!(&wire[at - 2..at], &[0xa1, 0x0c]);
    let with_key = |key: &[u8]| {
        let mut out = wire[..at - 2].to_vec();
        prost_len(&mut out, key.len());
        out.extend_from_slice(key);
        out.extend_from_slice(&wire[at + encoded.len()..]);
        out
    };
    for len in [1568usize, 1570] {
        let mut key = encoded.clone();
        key.resize(len, 0);
        assert_eq!(
            PreKeyBundleMessage::from_wire(&with_key(&key)),
            Err(WireError::InvalidLength {
                field: "kem_prekey",
                expected: 1569,
                actual: len
            })
        );
    }
    let mut wrong_type = encoded.clone();
    wrong_type[0] = 0x05;
    assert_eq!(
        PreKeyBundleMessage::from_wire(&with_key(&wrong_type)),
        Err(WireError::InvalidKemKey {
            field: "kem_prekey",
            error: KemError::InvalidEncoding
        })
    );
    let mut overflow = encoded.clone();
    overflow[1] = 0xff;
    overflow[2] |= 0x0f;
    assert_eq!(
        PreKeyBundleMessage::from_wire(&with_key(&overflow)),
        Err(WireError::InvalidKemKey {
            field: "kem_prekey",
            error: KemError::InvalidPublicKey
        })
    );
    assert!(KemPublicKey::from_encoded(&encoded).is_ok());

    // Ciphertexts of 1567 and 1569 bytes.
    let (mut alice, bob) = pair(SessionConfig::default(), &mut r);
    let bundle = bob.account().bundle(BundlePreKey::Auto).unwrap();
    let m = first_message(&mut alice, &bob, &bundle, &mut r);
    let wire = m.to_wire();
    let ct = m.kem.as_ref().unwrap().1.as_bytes().to_vec();
    let at = wire.windows(ct.len()).position(|w| w == &ct[..]).unwrap();
    for len in [1567usize, 1569] {
        let mut out = wire[..at - 2].to_vec();
        prost_len(&mut out, len);
        let mut c = ct.clone();
        c.resize(len, 0);
        out.extend_from_slice(&c);
        assert_eq!(
            PreKeyMessage::from_wire(&out),
            Err(WireError::InvalidLength {
                field: "kem_ciphertext",
                expected: 1568,
                actual: len
            })
        );
    }
}

/// A two-byte protobuf length (the lengths here are 128 to 16383).
fn prost_len(out: &mut Vec<u8>, len: usize) {
    assert!((128..16384).contains(&len));
    out.push((len & 0x7f) as u8 | 0x80);
    out.push((len >> 7) as u8);
}

#[test]
fn accounts_without_kem_prekeys_speak_v1_until_enabled() {
    let mut r = rng(10);
    let mut account = Account::generate(0, &mut r);
    assert!(account.has_kem_prekeys());
    assert_eq!(
        account.enable_post_quantum(0, &mut r).err(),
        Some(tacit::AccountError::PostQuantumEnabled)
    );
    let batch = account.generate_one_time_kem_prekeys(3, &mut r).unwrap();
    for k in &batch {
        assert!(account
            .identity()
            .public_key()
            .verify_kem_prekey(&k.key, &k.signature)
            .is_ok());
    }
    assert_eq!(batch.iter().map(|k| k.id).collect::<Vec<_>>(), [2, 3, 4]);
    let bytes = account.to_bytes();
    let back = Account::from_bytes(&bytes).unwrap();
    assert_eq!(*back.to_bytes(), *bytes);
    assert_eq!(back.one_time_kem_prekeys(), batch);
    assert_eq!(
        account.generate_one_time_kem_prekeys(tacit::session::MAX_ONE_TIME_KEM_PREKEYS, &mut r),
        Err(tacit::AccountError::TooManyOneTimeKemPreKeys {
            requested: 200,
            max: 200
        })
    );
    assert_eq!(*account.to_bytes(), *bytes);
}

#[test]
fn the_pqxdh_initiator_refuses_a_bundle_without_a_kem_prekey() {
    let mut r = rng(21);
    let alice = IdentityKeyPair::generate(&mut r);
    let bob = bob_keys(&mut r);
    let classical = PreKeyBundle {
        kem_prekey: None,
        ..pq_bundle(&bob)
    };
    assert_eq!(classical.profile(), tacit::PROFILE);
    assert_eq!(
        pqxdh::initiate(&alice, &classical, &mut MustNotDraw).err(),
        Some(PqxdhError::MissingKemPreKey)
    );
    // Checked before the signatures: a bundle that is bad in both ways
    // names the missing KEM prekey.
    let unsigned = PreKeyBundle {
        signed_prekey_signature: Signature::from_bytes([0; 64]),
        ..classical
    };
    assert_eq!(
        pqxdh::initiate(&alice, &unsigned, &mut MustNotDraw).err(),
        Some(PqxdhError::MissingKemPreKey)
    );
}

#[test]
fn the_x3dh_initiator_refuses_a_bundle_that_offers_a_kem_prekey() {
    // No silent downgrade: a tacit-v2 bundle never starts a tacit-v1
    // session, even when a caller hands it to X3DH.
    let mut r = rng(22);
    let alice = IdentityKeyPair::generate(&mut r);
    let bob = bob_keys(&mut r);
    let bundle = pq_bundle(&bob);
    assert_eq!(bundle.profile(), tacit::PROFILE_V2);
    assert_eq!(
        tacit::x3dh::initiate(&alice, &bundle, &mut MustNotDraw).err(),
        Some(tacit::X3dhError::KemPreKeyOffered)
    );
    // The same keys without the KEM part are a valid tacit-v1 bundle.
    let classical = PreKeyBundle {
        kem_prekey: None,
        ..bundle
    };
    assert!(tacit::x3dh::initiate(&alice, &classical, &mut r).is_ok());
}

#[test]
fn a_decoded_bundle_has_its_kem_part_exactly_when_it_is_version_2() {
    let mut r = rng(23);
    let (_, bob) = pair(SessionConfig::default(), &mut r);
    let v2 = bob.account().bundle(BundlePreKey::Auto).unwrap();
    let v1 = bob
        .account()
        .bundle_with(BundlePreKey::Auto, KemPreKeyChoice::None)
        .unwrap();
    for message in [v2, v1] {
        let decoded = PreKeyBundleMessage::from_wire(&message.to_wire()).unwrap();
        let bundle = decoded.bundle();
        assert_eq!(bundle.kem_prekey.is_some(), decoded.version() == 2);
        assert_eq!(
            bundle.kem_prekey.as_ref().map(|k| (&k.key, k.signature)),
            decoded.kem_prekey.as_ref().map(|k| (&k.key, k.signature))
        );
        assert_eq!(bundle.identity_key, decoded.identity_key);
        assert_eq!(bundle.signed_prekey, decoded.signed_prekey);
        assert_eq!(
            bundle.one_time_prekey,
            decoded.one_time_prekey.map(|(_, k)| k)
        );
    }
}
