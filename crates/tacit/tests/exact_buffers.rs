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
    let mut account = Account::generate(1_000, &mut rng);
    for batch in [0, 1, 5, 20, 50] {
        account.generate_one_time_prekeys(batch, &mut rng).unwrap();
        let bytes = account.to_bytes();
        assert_eq!(bytes.capacity(), bytes.len(), "after {batch} more prekeys");
        let again = Account::from_bytes(&bytes).unwrap();
        assert_eq!(*again.to_bytes(), *bytes);
    }
}

/// Sender chain records and distributions (`docs/PROTOCOL.md` 16.5), with
/// stored skipped keys of iterations whose varints take one to three bytes.
#[test]
fn sender_chain_records_are_encoded_at_their_exact_length() {
    use tacit::envelope::{Content, ContentKind};
    use tacit::group::{ChainConfig, InboundChain, OutboundChain};

    let mut rng = ChaCha20Rng::seed_from_u64(8);
    let owner = tacit::Address::new("alice", 1).unwrap();
    let mut outbound = OutboundChain::new([1; 32], [2; 32], &owner, &mut rng);
    let mut inbound = InboundChain::from_distribution(
        &outbound.distribution(),
        &owner,
        ChainConfig::new(25_000).unwrap(),
    )
    .unwrap();
    let content = Content::new(ContentKind::Text, b"x".to_vec(), 1, &mut rng).unwrap();
    let mut sent = 0u32;
    for target in [0u32, 3, 200, 20_000] {
        let mut last = None;
        while sent <= target {
            last = Some(outbound.encrypt(&content).unwrap());
            sent += 1;
        }
        inbound.decrypt(last.unwrap().as_bytes()).unwrap();
        for bytes in [
            inbound.to_bytes(),
            outbound.to_bytes(),
            outbound.distribution().to_bytes(),
        ] {
            assert_eq!(bytes.capacity(), bytes.len(), "at iteration {target}");
        }
        let again = InboundChain::from_bytes(&inbound.to_bytes()).unwrap();
        assert_eq!(again, inbound);
    }
}
