#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]
//! The ratchet's bytes and state against the profile's formulas, computed
//! here directly with X25519, HKDF-SHA256, HMAC-SHA256, XChaCha20-Poly1305
//! and ChaCha20-Poly1305: initialisation of both sides, the first messages,
//! a skipped key, and two DH ratchet steps.

mod common;

use chacha20poly1305::aead::AeadInPlace;
use chacha20poly1305::{ChaCha20Poly1305, KeyInit, Nonce};
use common::{rng, seal_header, Record};
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use rand_chacha::ChaCha20Rng;
use rand_core::RngCore;
use sha2::Sha256;
use tacit::keys::{IdentityKeyPair, KeyPair, PublicKey};
use tacit::ratchet::{Header, Ratchet, RatchetConfig};
use tacit::x3dh;
use tacit::PreKeyBundle;

fn hkdf<const L: usize>(salt: &[u8; 32], ikm: &[u8], info: &[u8]) -> [u8; L] {
    let mut out = [0u8; L];
    Hkdf::<Sha256>::new(Some(salt), ikm)
        .expand(info, &mut out)
        .unwrap();
    out
}

fn split3(okm: [u8; 96]) -> ([u8; 32], [u8; 32], [u8; 32]) {
    (
        okm[..32].try_into().unwrap(),
        okm[32..64].try_into().unwrap(),
        okm[64..].try_into().unwrap(),
    )
}

/// `KDF_RK(rk, dh) -> (RK, CK, NHK)`.
fn kdf_rk(rk: &[u8; 32], dh: &[u8; 32]) -> ([u8; 32], [u8; 32], [u8; 32]) {
    split3(hkdf::<96>(rk, dh, b"tacit/ratchet/root/v1"))
}

fn hmac(key: &[u8; 32], byte: u8) -> [u8; 32] {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).unwrap();
    mac.update(&[byte]);
    mac.finalize().into_bytes().into()
}

/// `KDF_CK(ck) -> (MK, next CK)`.
fn kdf_ck(ck: &[u8; 32]) -> ([u8; 32], [u8; 32]) {
    (hmac(ck, 0x01), hmac(ck, 0x02))
}

fn dh(private: [u8; 32], public: PublicKey) -> [u8; 32] {
    x25519_dalek::x25519(private, public.to_bytes())
}

/// The next `N` bytes `rng` will produce, without consuming them.
fn peek<const N: usize>(rng: &ChaCha20Rng) -> [u8; N] {
    let mut out = [0u8; N];
    rng.clone().fill_bytes(&mut out);
    out
}

/// `enc_header || ENCRYPT(MK, P)` as the profile defines it.
fn expected_message(
    hk: &[u8; 32],
    nonce: [u8; 24],
    header: Header,
    mk: &[u8; 32],
    ad: &[u8],
    plaintext: &[u8],
) -> Vec<u8> {
    let enc_header = seal_header(hk, nonce, &header, ad);
    let material = hkdf::<44>(&[0u8; 32], mk, b"tacit/ratchet/message/v1");
    let mut body = plaintext.to_vec();
    let mut aad = ad.to_vec();
    aad.extend_from_slice(&enc_header);
    let tag = ChaCha20Poly1305::new_from_slice(&material[..32])
        .unwrap()
        .encrypt_in_place_detached(Nonce::from_slice(&material[32..]), &aad, &mut body)
        .unwrap();
    let mut out = enc_header.to_vec();
    out.extend_from_slice(&body);
    out.extend_from_slice(&tag);
    out
}

fn header(key: PublicKey, pn: u32, n: u32) -> Header {
    Header {
        ratchet_key: key,
        previous_chain_length: pn,
        message_number: n,
    }
}

#[test]
fn header_encoding_is_key_then_big_endian_counters() {
    let h = header(PublicKey::from_bytes([0xaa; 32]), 0x0102_0304, 0x0506_0708);
    let bytes = h.to_bytes();
    assert_eq!(&bytes[..32], &[0xaa; 32]);
    assert_eq!(&bytes[32..], &[1, 2, 3, 4, 5, 6, 7, 8]);
    assert_eq!(Header::from_bytes(&bytes), h);
}

#[test]
fn the_ratchet_follows_the_profile_byte_for_byte() {
    let mut r = rng(2024);
    let alice_id = IdentityKeyPair::generate(&mut r);
    let bob_id = IdentityKeyPair::generate(&mut r);
    let spk = KeyPair::generate(&mut r);
    let spk_private = *spk.private_bytes().as_bytes();
    let bundle = PreKeyBundle {
        identity_key: bob_id.public_key(),
        signed_prekey: spk.public_key(),
        signed_prekey_signature: bob_id.sign_prekey(&spk.public_key()),
        one_time_prekey: None,
        kem_prekey: None,
    };
    let init = x3dh::initiate(&alice_id, &bundle, &mut r).unwrap();
    let agreement = x3dh::respond(
        &bob_id,
        &spk,
        None,
        &alice_id.public_key(),
        &init.ephemeral_key,
    )
    .unwrap();
    let keys = agreement.session_keys();
    let rk0 = *keys.root_key().as_bytes();
    let hka = *keys.initiator_header_key().as_bytes();
    let nhkb = *keys.responder_next_header_key().as_bytes();
    let ad = agreement.associated_data().to_vec();
    let config = RatchetConfig::default();

    // RatchetInitAliceHE.
    let a_private = peek::<32>(&r);
    let mut alice = Ratchet::new_initiator(
        init.agreement.session_keys(),
        &spk.public_key(),
        config,
        &mut r,
    )
    .unwrap();
    let a_public = KeyPair::from_private_bytes(a_private).public_key();
    let (rk1, cks_a0, nhks_a) = kdf_rk(&rk0, &dh(a_private, spk.public_key()));
    let rec = Record::of(&alice);
    assert_eq!(rec.associated_data, ad);
    assert_eq!(rec.ratchet_private_key, a_private);
    assert_eq!(rec.root_key, rk1);
    let sending = rec.sending.unwrap();
    assert_eq!((sending.chain_key, sending.header_key), (cks_a0, hka));
    assert_eq!(rec.receiving, None);
    assert_eq!(rec.next_sending_header_key, nhks_a);
    assert_eq!(rec.next_receiving_header_key, nhkb);
    assert_eq!((rec.sent, rec.previous_sent, rec.received), (0, 0, 0));
    assert_eq!((rec.max_skip, rec.max_stored_skipped_keys), (1000, 2000));

    // RatchetInitBobHE.
    let mut bob = Ratchet::new_responder(keys, spk, config);
    let rec = Record::of(&bob);
    assert_eq!(rec.ratchet_private_key, spk_private);
    assert_eq!(rec.root_key, rk0);
    assert_eq!((rec.sending, rec.receiving), (None, None));
    assert_eq!(rec.next_sending_header_key, nhkb);
    assert_eq!(rec.next_receiving_header_key, hka);

    // Alice's first two messages.
    let (mk0, ck) = kdf_ck(&cks_a0);
    let (mk1, _) = kdf_ck(&ck);
    let mut sent = Vec::new();
    for (n, mk, text) in [(0, mk0, b"m0"), (1, mk1, b"m1")] {
        let nonce = peek::<24>(&r);
        let message = alice.encrypt(text, &mut r).unwrap();
        let expected = expected_message(&hka, nonce, header(a_public, 0, n), &mk, &ad, text);
        assert_eq!(hex::encode(message.to_bytes()), hex::encode(expected));
        sent.push(message);
    }

    // Bob receives m1 first: a DH ratchet step, and m0's key is skipped.
    let b_private = peek::<32>(&r);
    assert_eq!(bob.decrypt(&sent[1], &mut r).unwrap(), b"m1");
    let b_public = KeyPair::from_private_bytes(b_private).public_key();
    let (rk1_bob, ckr, nhkr_bob) = kdf_rk(&rk0, &dh(spk_private, a_public));
    assert_eq!(rk1_bob, rk1);
    assert_eq!(ckr, cks_a0);
    let (_, ckr1) = kdf_ck(&ckr);
    let (_, ckr2) = kdf_ck(&ckr1);
    let (rk2, cks_b0, nhks_b) = kdf_rk(&rk1, &dh(b_private, a_public));
    assert_eq!(nhkr_bob, nhks_a);
    let rec = Record::of(&bob);
    assert_eq!(rec.ratchet_private_key, b_private);
    assert_eq!(rec.root_key, rk2);
    let receiving = rec.receiving.unwrap();
    assert_eq!((receiving.chain_key, receiving.header_key), (ckr2, hka));
    assert_eq!(rec.received, 2);
    let sending = rec.sending.unwrap();
    assert_eq!((sending.chain_key, sending.header_key), (cks_b0, nhkb));
    assert_eq!((rec.sent, rec.previous_sent), (0, 0));
    assert_eq!(rec.next_sending_header_key, nhks_b);
    assert_eq!(rec.next_receiving_header_key, nhks_a);
    assert_eq!(rec.skipped.len(), 1);
    assert_eq!(rec.skipped[0].header_key, hka);
    assert_eq!(rec.skipped[0].keys.len(), 1);
    assert_eq!(
        (rec.skipped[0].keys[0].n, rec.skipped[0].keys[0].message_key),
        (0, mk0)
    );

    // Bob's reply.
    let (mk_b0, _) = kdf_ck(&cks_b0);
    let nonce = peek::<24>(&r);
    let reply = bob.encrypt(b"r0", &mut r).unwrap();
    let expected = expected_message(&nhkb, nonce, header(b_public, 0, 0), &mk_b0, &ad, b"r0");
    assert_eq!(hex::encode(reply.to_bytes()), hex::encode(expected));

    // Alice receives it: her step, and her next message carries PN = 2
    // under the header key she derived at initialisation.
    let a2_private = peek::<32>(&r);
    assert_eq!(alice.decrypt(&reply, &mut r).unwrap(), b"r0");
    let a2_public = KeyPair::from_private_bytes(a2_private).public_key();
    let (rk2_alice, ckr_a, nhkr_a) = kdf_rk(&rk1, &dh(a_private, b_public));
    assert_eq!((rk2_alice, ckr_a, nhkr_a), (rk2, cks_b0, nhks_b));
    let (rk3, cks_a1, nhks_a1) = kdf_rk(&rk2, &dh(a2_private, b_public));
    let rec = Record::of(&alice);
    assert_eq!(rec.root_key, rk3);
    assert_eq!(rec.ratchet_private_key, a2_private);
    assert_eq!((rec.sent, rec.previous_sent, rec.received), (0, 2, 1));
    assert_eq!(rec.next_sending_header_key, nhks_a1);
    assert_eq!(rec.next_receiving_header_key, nhkr_a);
    assert!(rec.skipped.is_empty());

    let (mk_a1, _) = kdf_ck(&cks_a1);
    let nonce = peek::<24>(&r);
    let next = alice.encrypt(b"n0", &mut r).unwrap();
    let expected = expected_message(&nhks_a, nonce, header(a2_public, 2, 0), &mk_a1, &ad, b"n0");
    assert_eq!(hex::encode(next.to_bytes()), hex::encode(expected));

    // Bob takes the step too, and the skipped m0 still opens.
    assert_eq!(bob.decrypt(&next, &mut r).unwrap(), b"n0");
    assert_eq!(bob.decrypt(&sent[0], &mut r).unwrap(), b"m0");
    assert_eq!(bob.skipped_key_count(), 0);
    let rec = Record::of(&bob);
    assert_eq!((rec.sent, rec.previous_sent, rec.received), (0, 1, 1));
    assert_eq!(rec.receiving.unwrap().header_key, nhks_a);
}
