//! Multi-recipient envelopes (`docs/PROTOCOL.md` 16.7): decoding and
//! opening with a real recipient identity. The input mutates a real
//! envelope (the first byte picks one, the rest is XORed in at an offset,
//! and the envelope may be cut short) or is raw bytes. No panic; only a
//! real envelope, byte for byte, opens, and to its real plaintext; what
//! decodes re-encodes to the input; and the relay's copy of the layout
//! (`tacit-relay-proto`) accepts exactly the shared payloads the core
//! decodes, composing the envelope the core would.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use tacit::group::multi::{self, GroupEnvelope, SharedPayload};
use tacit::keys::IdentityKeyPair;
use tacit::Address;
use tacit_relay_proto::SharedPayloadBytes;

struct Fixture {
    recipient: IdentityKeyPair,
    recipient_address: Address,
    /// Real envelopes for the recipient and their plaintexts.
    envelopes: Vec<(Vec<u8>, Vec<u8>)>,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let mut rng = ChaCha20Rng::seed_from_u64(16);
        let recipient = IdentityKeyPair::from_seed(&[2; 32]);
        let recipient_address = Address::new("bob", 7).expect("address");
        let others = [
            (
                Address::new("bob", 8).expect("address"),
                IdentityKeyPair::from_seed(&[3; 32]).public_key(),
            ),
            (
                Address::new("carol", 1).expect("address"),
                IdentityKeyPair::from_seed(&[4; 32]).public_key(),
            ),
        ];
        let mut envelopes = Vec::new();
        for plaintext in [&b"hi"[..], &[7; 300], b""] {
            let mut recipients = others.to_vec();
            recipients.insert(1, (recipient_address.clone(), recipient.public_key()));
            let sealed = multi::seal(plaintext, &recipients, &mut rng).expect("seal");
            let envelope = sealed.shared.envelope_for(&sealed.parts[1].wrapped_key);
            envelopes.push((envelope.to_bytes(), plaintext.to_vec()));
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
            &f.envelopes[usize::from(selector) % f.envelopes.len()].0,
        )
    };

    if let Ok(envelope) = GroupEnvelope::from_bytes(&input) {
        assert_eq!(
            envelope.to_bytes(),
            input,
            "a non-canonical envelope decoded"
        );
    }
    if let Ok(opened) = multi::open(&f.recipient, &f.recipient_address, &input) {
        let real = f.envelopes.iter().find(|(e, _)| *e == input);
        assert!(real.is_some(), "an envelope that is not a real one opened");
        assert_eq!(real.map(|(_, p)| p), Some(&opened));
    }

    // The relay's layout against the core's decoder, on the raw bytes.
    let core = SharedPayload::from_bytes(&input);
    if let Ok(shared) = &core {
        assert_eq!(
            shared.to_bytes(),
            input,
            "a non-canonical shared payload decoded"
        );
    }
    let relay = SharedPayloadBytes::new(input.clone());
    assert_eq!(
        core.is_ok(),
        relay.is_ok(),
        "the relay and the core disagree on a shared payload"
    );
    if let (Ok(shared), Ok(relay)) = (core, relay) {
        let part = [0x5c; 32];
        assert_eq!(
            relay.envelope_for(&part),
            shared.envelope_for(&part).to_bytes(),
            "the relay composed another envelope than the core's"
        );
    }
});
