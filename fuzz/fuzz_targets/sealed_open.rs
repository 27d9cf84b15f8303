//! Opening sealed envelopes with a real recipient identity. The input
//! mutates a real envelope (the first byte picks one, the rest is XORed in
//! at an offset, and the envelope may be cut short) or is raw bytes. No
//! panic, and an envelope that is not byte for byte a real one must not
//! open: a mutated envelope that opens is a finding.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use tacit::envelope::{seal, Content, ContentKind, Sender};
use tacit::identity::{DeviceCertificate, UserKeyPair};
use tacit::keys::{IdentityKeyPair, KeyPair, PublicKey};
use tacit::ratchet::{Ratchet, RatchetConfig, SessionKeys};
use tacit::wire::{PreKeyMessage, SessionMessage};
use tacit::Address;

struct Fixture {
    recipient: IdentityKeyPair,
    recipient_address: Address,
    envelopes: Vec<Vec<u8>>,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let mut rng = ChaCha20Rng::seed_from_u64(11);
        let sender = IdentityKeyPair::from_seed(&[1; 32]);
        let recipient = IdentityKeyPair::from_seed(&[2; 32]);
        let sender_address = Address::new("alice", 1).expect("address");
        let user = UserKeyPair::from_seed(&[3; 32]);
        let user_key = user.public_key();
        let certificate = DeviceCertificate::issue(&user, &sender_address, &sender.public_key());
        let sealed_sender = Sender {
            identity: &sender,
            address: &sender_address,
            user_key: &user_key,
            certificate: &certificate,
        };
        let recipient_address = Address::new("bob", 7).expect("address");
        let keys = || SessionKeys::new([1; 32], [2; 32], [3; 32], b"ad").expect("keys");
        let ratchet_key = KeyPair::generate(&mut rng);
        let mut session = Ratchet::new_initiator(
            keys(),
            &ratchet_key.public_key(),
            RatchetConfig::default(),
            &mut rng,
        )
        .expect("initiator");
        let mut envelopes = Vec::new();
        for (i, body) in [&b"hi"[..], &[7; 300], b""].into_iter().enumerate() {
            let content = Content::new(
                ContentKind::Text,
                body.to_vec(),
                1_700_000_000_000,
                &mut rng,
            )
            .expect("content");
            let encrypted = session
                .encrypt(&content.to_padded().expect("pad"), &mut rng)
                .expect("encrypt");
            let message = if i == 1 {
                SessionMessage::PreKey(Box::new(PreKeyMessage {
                    identity_key: sender.public_key(),
                    ephemeral_key: PublicKey::from_bytes([9; 32]),
                    signed_prekey_id: 1,
                    one_time_prekey_id: Some(4),
                    kem: None,
                    message: encrypted,
                }))
            } else {
                SessionMessage::Ratchet(encrypted)
            };
            envelopes.push(
                seal(
                    &sealed_sender,
                    &recipient.public_key(),
                    &recipient_address,
                    &message,
                    &mut rng,
                )
                .expect("seal"),
            );
        }
        Fixture {
            recipient,
            recipient_address,
            envelopes,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let f = fixture();
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let input = if selector >= 128 {
        rest.to_vec()
    } else {
        tacit_testkit::fuzz::mutate(
            selector,
            rest,
            &f.envelopes[usize::from(selector) % f.envelopes.len()],
        )
    };
    if let Ok(opened) = tacit::envelope::open(&f.recipient, &f.recipient_address, &input) {
        assert!(
            f.envelopes.contains(&input),
            "an envelope that is not a real one opened: {opened:?}"
        );
    }
});
