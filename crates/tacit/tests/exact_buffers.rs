#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]
//! Records that hold private keys are encoded into a buffer allocated once
//! at their exact length: a buffer grown while encoding (and so reallocated,
//! leaving a copy of the keys in freed memory) ends with spare capacity.

use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;
use tacit::session::Account;

#[test]
fn account_records_are_encoded_at_their_exact_length() {
    let mut rng = ChaCha20Rng::seed_from_u64(7);
    let mut account = Account::generate(&mut rng, 1_000);
    for batch in [0, 1, 5, 20, 50] {
        account.generate_one_time_prekeys(batch, &mut rng).unwrap();
        let bytes = account.to_bytes();
        assert_eq!(bytes.capacity(), bytes.len(), "after {batch} more prekeys");
        let again = Account::from_bytes(&bytes).unwrap();
        assert_eq!(*again.to_bytes(), *bytes);
    }
}
