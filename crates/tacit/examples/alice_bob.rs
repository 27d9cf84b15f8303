//! Alice and Bob agree on keys with X3DH and talk over the Double Ratchet,
//! in one process: `cargo run --example alice_bob`.

use std::error::Error;

use rand_core::OsRng;
use tacit::keys::{IdentityKeyPair, KeyPair};
use tacit::ratchet::{EncryptedMessage, Ratchet, RatchetConfig};
use tacit::x3dh;
use tacit::PreKeyBundle;

fn short(bytes: &[u8]) -> String {
    let hex: String = bytes.iter().take(8).map(|b| format!("{b:02x}")).collect();
    format!("{hex}… ({} bytes)", bytes.len())
}

fn main() -> Result<(), Box<dyn Error>> {
    let mut rng = OsRng;

    // Bob publishes a prekey bundle.
    let bob_identity = IdentityKeyPair::generate(&mut rng);
    let bob_signed_prekey = KeyPair::generate(&mut rng);
    let bob_one_time_prekey = KeyPair::generate(&mut rng);
    let bundle = PreKeyBundle {
        identity_key: bob_identity.public_key(),
        signed_prekey: bob_signed_prekey.public_key(),
        signed_prekey_signature: bob_identity.sign_prekey(&bob_signed_prekey.public_key()),
        one_time_prekey: Some(bob_one_time_prekey.public_key()),
        kem_prekey: None,
    };
    println!("Bob publishes his bundle:");
    println!(
        "  identity key    {}",
        short(&bundle.identity_key.to_bytes())
    );
    println!(
        "  signed prekey   {}",
        short(bundle.signed_prekey.as_bytes())
    );
    println!(
        "  one-time prekey {}",
        short(bob_one_time_prekey.public_key().as_bytes())
    );

    // Alice checks the bundle and runs her half of X3DH.
    let alice_identity = IdentityKeyPair::generate(&mut rng);
    let initiation = x3dh::initiate(&alice_identity, &bundle, &mut rng)?;
    let mut alice = Ratchet::new_initiator(
        initiation.agreement.session_keys(),
        &bundle.signed_prekey,
        RatchetConfig::default(),
        &mut rng,
    )?;
    println!(
        "\nAlice verifies the signature and runs X3DH (ephemeral key {}).",
        short(initiation.ephemeral_key.as_bytes())
    );

    let first = alice.encrypt(b"Hi Bob, it's Alice.", &mut rng)?;
    let second = alice.encrypt(b"Are you there?", &mut rng)?;
    let third = alice.encrypt(b"Ping.", &mut rng)?;
    println!(
        "Alice sends three messages; on the wire each is an encrypted header and a ciphertext:"
    );
    for m in [&first, &second, &third] {
        println!("  {}", short(&m.to_bytes()));
    }

    // Bob gets Alice's identity and ephemeral keys with the first message.
    let agreement = x3dh::respond(
        &bob_identity,
        &bob_signed_prekey,
        Some(&bob_one_time_prekey),
        &alice_identity.public_key(),
        &initiation.ephemeral_key,
    )?;
    let mut bob = Ratchet::new_responder(
        agreement.session_keys(),
        bob_signed_prekey,
        RatchetConfig::default(),
    );

    println!("\nThe network reorders them, and someone flips a bit of the first on the way.");
    println!(
        "  Bob reads: {}",
        String::from_utf8_lossy(&bob.decrypt(&third, &mut rng)?)
    );
    let mut tampered = first.to_bytes();
    tampered[100] ^= 0x01;
    let before = bob.to_bytes();
    let refused = bob.decrypt(&EncryptedMessage::from_bytes(&tampered)?, &mut rng);
    println!(
        "  Bob refuses the tampered copy ({}); his session is unchanged: {}",
        refused.err().map_or("?".into(), |e| e.to_string()),
        bob.to_bytes() == before
    );
    for m in [&first, &second] {
        println!(
            "  Bob reads: {}",
            String::from_utf8_lossy(&bob.decrypt(m, &mut rng)?)
        );
    }
    println!(
        "  A replay of the first message is refused: {}",
        bob.decrypt(&first, &mut rng)
            .err()
            .map_or("?".into(), |e| e.to_string())
    );

    println!("\nThey take turns; every reply is a new Diffie-Hellman ratchet step.");
    let turns: [(&str, &[u8]); 4] = [
        ("Bob", b"Hi Alice! All three arrived."),
        ("Alice", b"Great. New keys on every turn."),
        ("Bob", b"Forward secrecy and post-compromise security."),
        ("Alice", b"See you."),
    ];
    for (who, text) in turns {
        let (from, to) = if who == "Bob" {
            (&mut bob, &mut alice)
        } else {
            (&mut alice, &mut bob)
        };
        let message = from.encrypt(text, &mut rng)?;
        println!(
            "  {who:>5}: {}",
            String::from_utf8_lossy(&to.decrypt(&message, &mut rng)?)
        );
    }

    let saved = alice.to_bytes();
    let restored = Ratchet::from_bytes(&saved)?;
    println!(
        "\nAlice's session serializes to {} bytes and restores ({} skipped keys held).",
        saved.len(),
        restored.skipped_key_count()
    );
    Ok(())
}
