#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]
//! X3DH: both sides agree (with and without a one-time prekey) on exactly
//! the SK, AD and session keys the profile defines; bad bundles are refused
//! with the right error, in the right order; a responder that uses other
//! keys than the initiator ends up in another session.

mod common;

use common::{assert_decrypts, assert_rejected, rng, state, CountingRng};
use hkdf::Hkdf;
use rand_core::RngCore;
use sha2::{Digest, Sha256, Sha512};
use tacit::keys::{IdentityKey, IdentityKeyPair, KeyPair, PublicKey, Signature};
use tacit::ratchet::{Ratchet, RatchetConfig};
use tacit::x3dh;
use tacit::PreKeyBundle;
use tacit::{DecryptError, InitError, KeyError, X3dhError};

struct Parties {
    alice: IdentityKeyPair,
    bob: IdentityKeyPair,
    spk: KeyPair,
    opk: KeyPair,
}

fn parties(seed: u64) -> Parties {
    let mut r = rng(seed);
    Parties {
        alice: IdentityKeyPair::generate(&mut r),
        bob: IdentityKeyPair::generate(&mut r),
        spk: KeyPair::generate(&mut r),
        opk: KeyPair::generate(&mut r),
    }
}

fn bundle(p: &Parties, with_opk: bool) -> PreKeyBundle {
    PreKeyBundle {
        identity_key: p.bob.public_key(),
        signed_prekey: p.spk.public_key(),
        signed_prekey_signature: p.bob.sign_prekey(&p.spk.public_key()),
        one_time_prekey: with_opk.then(|| p.opk.public_key()),
        kem_prekey: None,
    }
}

fn hex32(s: &str) -> [u8; 32] {
    hex::decode(s).unwrap().try_into().unwrap()
}

/// X25519 public keys whose DH output is all zeros for every private key:
/// 0, 1, the two points of order 8, p - 1, p, p + 1 (RFC 7748 decoding
/// reduces the last two), each also with the ignored top bit set.
fn small_order_u() -> Vec<[u8; 32]> {
    let base = [
        "0000000000000000000000000000000000000000000000000000000000000000",
        "0100000000000000000000000000000000000000000000000000000000000000",
        "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",
        "5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157",
        "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
        "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
        "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    ];
    let mut out = Vec::new();
    for h in base {
        let u = hex32(h);
        out.push(u);
        let mut high = u;
        high[31] |= 0x80;
        out.push(high);
    }
    out
}

#[test]
fn both_sides_agree_with_and_without_a_one_time_prekey() {
    let p = parties(1);
    let mut secrets = Vec::new();
    for with_opk in [false, true] {
        let b = bundle(&p, with_opk);
        // The same ephemeral key both times: only DH4 differs.
        let mut r = CountingRng::new(2);
        let init = x3dh::initiate(&p.alice, &b, &mut r).unwrap();
        assert_eq!((r.bytes, r.calls), (32, 1), "one 32-byte ephemeral key");
        assert_eq!(init.used_one_time_prekey, with_opk);
        let agreement = x3dh::respond(
            &p.bob,
            &p.spk,
            with_opk.then_some(&p.opk),
            &p.alice.public_key(),
            &init.ephemeral_key,
        )
        .unwrap();
        assert_eq!(init.agreement.shared_secret(), agreement.shared_secret());
        let mut ad = p.alice.public_key().to_bytes().to_vec();
        ad.extend_from_slice(&p.bob.public_key().to_bytes());
        assert_eq!(init.agreement.associated_data().as_slice(), ad.as_slice());
        assert_eq!(agreement.associated_data().as_slice(), ad.as_slice());
        let (ka, kb) = (init.agreement.session_keys(), agreement.session_keys());
        assert_eq!(ka.root_key(), kb.root_key());
        assert_eq!(ka.initiator_header_key(), kb.initiator_header_key());
        assert_eq!(
            ka.responder_next_header_key(),
            kb.responder_next_header_key()
        );
        assert_eq!(ka.associated_data(), ad.as_slice());
        assert_ne!(ka.root_key(), ka.initiator_header_key());
        assert_ne!(ka.initiator_header_key(), ka.responder_next_header_key());
        secrets.push(*agreement.shared_secret().as_bytes());

        // And the sessions built on them talk.
        let mut alice =
            Ratchet::new_initiator(ka, &b.signed_prekey, RatchetConfig::default(), &mut rng(3))
                .unwrap();
        let mut bob = Ratchet::new_responder(kb, p.spk.clone(), RatchetConfig::default());
        let m = alice.encrypt(b"hi", &mut rng(4)).unwrap();
        assert_decrypts(&mut bob, &m, "hi", true);
    }
    assert_ne!(secrets[0], secrets[1], "DH4 is part of SK");
}

/// SK, AD and the session keys computed from the profile's formulas with
/// the primitives directly (X25519, the identity key's X25519 view from
/// SHA-512 of the seed, HKDF-SHA256).
#[test]
fn sk_and_session_keys_match_the_profile_formulas() {
    let p = parties(5);
    for with_opk in [false, true] {
        let b = bundle(&p, with_opk);
        let mut r = rng(6);
        let mut ek = [0u8; 32];
        r.clone().fill_bytes(&mut ek);
        let init = x3dh::initiate(&p.alice, &b, &mut r).unwrap();
        assert_eq!(
            init.ephemeral_key.to_bytes(),
            x25519_dalek::x25519(ek, x25519_dalek::X25519_BASEPOINT_BYTES)
        );

        let x25519_private = |id: &IdentityKeyPair| -> [u8; 32] {
            Sha512::digest(id.seed().as_bytes())[..32]
                .try_into()
                .unwrap()
        };
        let ik_a = x25519_private(&p.alice);
        let ik_b = x25519_private(&p.bob);
        // The identity's X25519 public key is the Montgomery form of its
        // Edwards point, i.e. the X25519 public key of its private scalar.
        for (private, id) in [(ik_a, &p.alice), (ik_b, &p.bob)] {
            assert_eq!(
                id.public_key().to_x25519().to_bytes(),
                x25519_dalek::x25519(private, x25519_dalek::X25519_BASEPOINT_BYTES)
            );
        }
        let spk = *p.spk.private_bytes().as_bytes();
        let opk = *p.opk.private_bytes().as_bytes();
        let pub_of = |k: [u8; 32]| x25519_dalek::x25519(k, x25519_dalek::X25519_BASEPOINT_BYTES);
        let mut ikm = vec![0xff; 32];
        ikm.extend(x25519_dalek::x25519(ik_a, pub_of(spk))); // DH1
        ikm.extend(x25519_dalek::x25519(ek, pub_of(ik_b))); // DH2
        ikm.extend(x25519_dalek::x25519(ek, pub_of(spk))); // DH3
        if with_opk {
            ikm.extend(x25519_dalek::x25519(ek, pub_of(opk))); // DH4
        }
        let mut sk = [0u8; 32];
        Hkdf::<Sha256>::new(Some(&[0u8; 32]), &ikm)
            .expand(b"tacit/x3dh/v1", &mut sk)
            .unwrap();
        assert_eq!(init.agreement.shared_secret().as_bytes(), &sk);

        let mut okm = [0u8; 96];
        Hkdf::<Sha256>::new(Some(&[0u8; 32]), &sk)
            .expand(b"tacit/session/v1", &mut okm)
            .unwrap();
        let keys = init.agreement.session_keys();
        assert_eq!(keys.root_key().as_bytes()[..], okm[..32]);
        assert_eq!(keys.initiator_header_key().as_bytes()[..], okm[32..64]);
        assert_eq!(keys.responder_next_header_key().as_bytes()[..], okm[64..]);
        // Sanity of the helper: SHA-256 is what HKDF uses here.
        assert_eq!(Sha256::digest(b"").len(), 32);
    }
}

#[test]
fn a_signature_over_another_key_is_refused_before_any_randomness() {
    let p = parties(7);
    let other = KeyPair::generate(&mut rng(8)).public_key();
    let mut b = bundle(&p, true);
    b.signed_prekey_signature = p.bob.sign_prekey(&other);
    let mut r = CountingRng::new(1);
    assert_eq!(
        x3dh::initiate(&p.alice, &b, &mut r).err(),
        Some(X3dhError::InvalidSignature)
    );
    assert_eq!(r.bytes, 0);

    // Signed by another identity.
    let mut b = bundle(&p, false);
    b.signed_prekey_signature = p.alice.sign_prekey(&p.spk.public_key());
    assert_eq!(
        x3dh::initiate(&p.alice, &b, &mut rng(1)).err(),
        Some(X3dhError::InvalidSignature)
    );
    // The right signature presented with another identity key.
    let mut b = bundle(&p, false);
    b.identity_key = p.alice.public_key();
    assert_eq!(
        x3dh::initiate(&p.alice, &b, &mut rng(1)).err(),
        Some(X3dhError::InvalidSignature)
    );
    // Single-bit changes of the signature: one bit in every byte, and every
    // bit of the first and last bytes of R and of S.
    let good = bundle(&p, false);
    assert!(x3dh::initiate(&p.alice, &good, &mut rng(1)).is_ok());
    let sig = good.signed_prekey_signature.to_bytes();
    let mut bits: Vec<usize> = (0..64).map(|byte| 8 * byte + (byte * 3) % 8).collect();
    for byte in [0, 31, 32, 63] {
        bits.extend((0..8).map(|bit| 8 * byte + bit));
    }
    for bit in bits {
        let mut bad = sig;
        bad[bit / 8] ^= 1 << (bit % 8);
        let mut b = good.clone();
        b.signed_prekey_signature = Signature::from_bytes(bad);
        assert_eq!(
            x3dh::initiate(&p.alice, &b, &mut rng(1)).err(),
            Some(X3dhError::InvalidSignature),
            "bit {bit}"
        );
    }
}

/// Strict verification: `S + L` is the same scalar mod L but is refused.
#[test]
fn a_non_canonical_signature_scalar_is_refused() {
    // L = 2^252 + 27742317777372353535851937790883648493, little-endian.
    let l = hex32("edd3f55c1a631258d69cf7a2def9de1400000000000000000000000000000010");
    let p = parties(9);
    let good = bundle(&p, false);
    let sig = good.signed_prekey_signature.to_bytes();
    let mut malleated = sig;
    let mut carry = 0u16;
    for i in 0..32 {
        let sum = u16::from(sig[32 + i]) + u16::from(l[i]) + carry;
        malleated[32 + i] = sum as u8;
        carry = sum >> 8;
    }
    assert_eq!(carry, 0, "S + L fits in 32 bytes");
    let mut b = good.clone();
    b.signed_prekey_signature = Signature::from_bytes(malleated);
    assert_eq!(
        p.bob
            .public_key()
            .verify_signed_prekey(&good.signed_prekey, &Signature::from_bytes(malleated)),
        Err(KeyError::InvalidSignature)
    );
    assert_eq!(
        x3dh::initiate(&p.alice, &b, &mut rng(1)).err(),
        Some(X3dhError::InvalidSignature)
    );
}

#[test]
fn a_signed_small_order_prekey_is_refused() {
    let p = parties(10);
    for u in small_order_u() {
        let key = PublicKey::from_bytes(u);
        let b = PreKeyBundle {
            identity_key: p.bob.public_key(),
            signed_prekey: key,
            signed_prekey_signature: p.bob.sign_prekey(&key),
            one_time_prekey: None,
            kem_prekey: None,
        };
        assert_eq!(
            x3dh::initiate(&p.alice, &b, &mut rng(1)).err(),
            Some(X3dhError::SmallOrderKey),
            "{}",
            hex::encode(u)
        );
        // A small-order one-time prekey in a valid bundle too.
        let mut b = bundle(&p, false);
        b.one_time_prekey = Some(key);
        assert_eq!(
            x3dh::initiate(&p.alice, &b, &mut rng(1)).err(),
            Some(X3dhError::SmallOrderKey)
        );
        // The signature is checked first.
        let b = PreKeyBundle {
            identity_key: p.bob.public_key(),
            signed_prekey: key,
            signed_prekey_signature: p.bob.sign_prekey(&p.spk.public_key()),
            one_time_prekey: None,
            kem_prekey: None,
        };
        assert_eq!(
            x3dh::initiate(&p.alice, &b, &mut rng(1)).err(),
            Some(X3dhError::InvalidSignature)
        );
        // The responder refuses a small-order ephemeral key.
        assert_eq!(
            x3dh::respond(&p.bob, &p.spk, None, &p.alice.public_key(), &key).err(),
            Some(X3dhError::SmallOrderKey)
        );
        // And a ratchet cannot start towards a small-order key.
        let keys = x3dh::initiate(&p.alice, &bundle(&p, false), &mut rng(1))
            .unwrap()
            .agreement
            .session_keys();
        assert_eq!(
            Ratchet::new_initiator(keys, &key, RatchetConfig::default(), &mut rng(1)).err(),
            Some(InitError::SmallOrderKey)
        );
    }
}

/// Identity keys of small order, or that do not decode, are refused where
/// they are read.
#[test]
fn weak_or_invalid_identity_keys_are_refused() {
    // The eight points of small order on edwards25519 (canonical encodings).
    for h in [
        "0100000000000000000000000000000000000000000000000000000000000000",
        "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
        "0000000000000000000000000000000000000000000000000000000000000000",
        "0000000000000000000000000000000000000000000000000000000000000080",
        "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
        "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa",
        "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
        "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85",
    ] {
        assert_eq!(
            IdentityKey::from_bytes(&hex32(h)),
            Err(KeyError::WeakIdentityKey),
            "{h}"
        );
    }
    // y = 2 is not on the curve.
    let mut not_on_curve = [0u8; 32];
    not_on_curve[0] = 2;
    assert_eq!(
        IdentityKey::from_bytes(&not_on_curve),
        Err(KeyError::InvalidIdentityKey)
    );
    assert_eq!(
        IdentityKey::try_from_slice(&[0u8; 31]),
        Err(KeyError::InvalidLength {
            expected: 32,
            actual: 31
        })
    );
    // A genuine key round-trips.
    let p = parties(11);
    let bytes = p.bob.public_key().to_bytes();
    assert_eq!(IdentityKey::from_bytes(&bytes), Ok(p.bob.public_key()));
}

/// A responder that uses another one-time prekey (or none, or another
/// initiator identity) derives another SK, so another `HKA`: the first
/// message's header opens under none of its keys.
#[test]
fn a_responder_with_other_keys_cannot_open_the_first_message() {
    let p = parties(12);
    let b = bundle(&p, true);
    let init = x3dh::initiate(&p.alice, &b, &mut rng(13)).unwrap();
    let mut alice = Ratchet::new_initiator(
        init.agreement.session_keys(),
        &b.signed_prekey,
        RatchetConfig::default(),
        &mut rng(14),
    )
    .unwrap();
    let first = alice.encrypt(b"first", &mut rng(15)).unwrap();

    let wrong_opk = KeyPair::generate(&mut rng(16));
    let mallory = IdentityKeyPair::generate(&mut rng(17));
    let other_spk = KeyPair::generate(&mut rng(18));
    let cases: [(&KeyPair, Option<&KeyPair>, &IdentityKeyPair); 4] = [
        (&p.spk, Some(&wrong_opk), &p.alice),
        (&p.spk, None, &p.alice),
        (&p.spk, Some(&p.opk), &mallory),
        (&other_spk, Some(&p.opk), &p.alice),
    ];
    for (spk, opk, initiator) in cases {
        let agreement = x3dh::respond(
            &p.bob,
            spk,
            opk,
            &initiator.public_key(),
            &init.ephemeral_key,
        )
        .unwrap();
        assert_ne!(agreement.shared_secret(), init.agreement.shared_secret());
        assert_ne!(
            agreement.session_keys().initiator_header_key(),
            init.agreement.session_keys().initiator_header_key()
        );
        let mut bob = Ratchet::new_responder(
            agreement.session_keys(),
            spk.clone(),
            RatchetConfig::default(),
        );
        let before = state(&bob);
        assert_rejected(&mut bob, &first, DecryptError::UnknownHeaderKey);
        assert_eq!(state(&bob), before);
        assert!(!bob.can_send());
    }
    // The right keys open it.
    let agreement = x3dh::respond(
        &p.bob,
        &p.spk,
        Some(&p.opk),
        &p.alice.public_key(),
        &init.ephemeral_key,
    )
    .unwrap();
    let mut bob = Ratchet::new_responder(agreement.session_keys(), p.spk, RatchetConfig::default());
    assert_decrypts(&mut bob, &first, "first", true);
}

/// `x mod L` for a little-endian integer, bit by bit.
fn mod_l(x: &[u8]) -> [u8; 32] {
    let l = hex32("edd3f55c1a631258d69cf7a2def9de1400000000000000000000000000000010");
    let limbs = |b: &[u8; 32]| -> [u64; 4] {
        core::array::from_fn(|i| u64::from_le_bytes(b[8 * i..8 * i + 8].try_into().unwrap()))
    };
    let l = limbs(&l);
    let mut r = [0u64; 4];
    for byte in x.iter().rev() {
        for bit in (0..8).rev() {
            // r = 2r + bit (r < L < 2^253, so no overflow).
            let mut carry = u64::from((byte >> bit) & 1);
            for limb in &mut r {
                let next = *limb >> 63;
                *limb = (*limb << 1) | carry;
                carry = next;
            }
            let ge = (0..4)
                .rev()
                .find(|&i| r[i] != l[i])
                .is_none_or(|i| r[i] > l[i]);
            if ge {
                let mut borrow = 0u64;
                for i in 0..4 {
                    let (d, b1) = r[i].overflowing_sub(l[i]);
                    let (d, b2) = d.overflowing_sub(borrow);
                    r[i] = d;
                    borrow = u64::from(b1 || b2);
                }
            }
        }
    }
    let mut out = [0u8; 32];
    for i in 0..4 {
        out[8 * i..8 * i + 8].copy_from_slice(&r[i].to_le_bytes());
    }
    out
}

/// `x * y mod L`.
fn mul_mod_l(x: &[u8; 32], y: &[u8; 32]) -> [u8; 32] {
    let mut acc = [0u64; 65];
    for i in 0..32 {
        for j in 0..32 {
            acc[i + j] += u64::from(x[i]) * u64::from(y[j]);
        }
    }
    let mut bytes = [0u8; 65];
    let mut carry = 0u64;
    for k in 0..65 {
        let v = acc[k] + carry;
        bytes[k] = v as u8;
        carry = v >> 8;
    }
    mod_l(&bytes)
}

/// A signature whose R is the identity point (of small order): with
/// `S = k * a`, `[S]B = R + [k]A` holds, so a plain (cofactorless)
/// verification accepts it; the profile's strict rule refuses it.
#[test]
fn a_signature_with_a_small_order_r_is_refused() {
    use ed25519_dalek::Verifier;

    let p = parties(19);
    let spk = p.spk.public_key();
    let digest = Sha512::digest(p.bob.seed().as_bytes());
    let mut a: [u8; 32] = digest[..32].try_into().unwrap();
    a[0] &= 248;
    a[31] &= 127;
    a[31] |= 64;
    let public = p.bob.public_key().to_bytes();
    let mut r = [0u8; 32];
    r[0] = 1; // the identity point, y = 1
    let mut hash = Sha512::new();
    hash.update(r);
    hash.update(public);
    hash.update(spk.as_bytes());
    let k = mod_l(&hash.finalize());
    let s = mul_mod_l(&k, &a);
    let mut sig = [0u8; 64];
    sig[..32].copy_from_slice(&r);
    sig[32..].copy_from_slice(&s);

    // Sanity of the construction: plain verification accepts it.
    let verifying = ed25519_dalek::VerifyingKey::from_bytes(&public).unwrap();
    assert!(verifying
        .verify(spk.as_bytes(), &ed25519_dalek::Signature::from_bytes(&sig))
        .is_ok());

    assert_eq!(
        p.bob
            .public_key()
            .verify_signed_prekey(&spk, &Signature::from_bytes(sig)),
        Err(KeyError::InvalidSignature)
    );
    let mut b = bundle(&p, false);
    b.signed_prekey_signature = Signature::from_bytes(sig);
    assert_eq!(
        x3dh::initiate(&p.alice, &b, &mut rng(1)).err(),
        Some(X3dhError::InvalidSignature)
    );
}
