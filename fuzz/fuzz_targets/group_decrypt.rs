//! Arbitrary bytes, or real group messages mutated, decrypted on a live
//! set of inbound sender chains (one with skipped keys): decryption must
//! never panic, a failed decryption must leave every chain exactly as it
//! was, and what decrypted once must not decrypt again.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use tacit::envelope::{Content, ContentKind};
use tacit::group::{ChainConfig, InboundChain, InboundChains, OutboundChain};

/// Two chains held, the first after messages 3 and 0 (keys of 1 and 2
/// stored), and real messages of both to mutate.
fn established() -> (InboundChains, Vec<Vec<u8>>) {
    let mut rng = ChaCha20Rng::seed_from_u64(11);
    let mut chains = InboundChains::new();
    let mut wires = Vec::new();
    for state in [[1u8; 32], [2; 32]] {
        let owner = tacit::Address::new("alice", 1).expect("address");
        let mut sender = OutboundChain::new([7; 32], state, &owner, &mut rng);
        chains.insert(
            InboundChain::from_distribution(
                &sender.distribution(),
                &owner,
                ChainConfig::new(16).expect("config"),
            )
            .expect("the owner's distribution"),
        );
        for i in 0..6u8 {
            let content =
                Content::new(ContentKind::Text, vec![i; usize::from(i) * 9], 1, &mut rng)
                    .expect("content");
            wires.push(sender.encrypt(&content).expect("encrypt").to_bytes());
        }
    }
    chains.decrypt(&wires[3]).expect("decrypt");
    chains.decrypt(&wires[0]).expect("decrypt");
    (chains, wires)
}

fn fixture() -> &'static (InboundChains, Vec<Vec<u8>>) {
    static FIXTURE: OnceLock<(InboundChains, Vec<Vec<u8>>)> = OnceLock::new();
    FIXTURE.get_or_init(established)
}

fuzz_target!(|data: &[u8]| {
    let (chains, wires) = fixture();
    let mut chains = chains.clone();
    // The first byte picks a real message to mutate (XOR from the start),
    // or, from 128 on, the rest is the message.
    let (selector, rest) = data.split_first().unwrap_or((&0, &[]));
    let input = if *selector >= 128 {
        rest.to_vec()
    } else {
        let mut input = wires[usize::from(*selector) % wires.len()].clone();
        for (dst, src) in input.iter_mut().zip(rest) {
            *dst ^= src;
        }
        input
    };
    let before = chains.clone();
    match chains.decrypt(&input) {
        Ok(_) => {
            // Only a real message opens, and only once.
            assert!(wires.contains(&input), "a message not sent decrypted");
            let after = chains.clone();
            assert!(chains.decrypt(&input).is_err(), "decrypted twice");
            assert!(chains == after, "a refused replay changed the chains");
        }
        Err(_) => assert!(chains == before, "a failed decryption changed the chains"),
    }
});
