//! The demo's post-quantum section: which key agreement the sessions use
//! (read from the clients), and what it costs in bytes (read from the
//! relay's directory and mailbox).

use std::path::Path;

use anyhow::{bail, Context as _};
use tacit::kem::{KemPublicKey, SignedKemPreKey};
use tacit::wire::{PreKeyBundleMessage, WireMessage as _};
use tacit::{IdentityKey, PublicKey, Signature};
use tacit_client::{Client, SessionProfile};

/// The profile's name as the protocol documents it.
fn name(profile: SessionProfile) -> &'static str {
    match profile {
        SessionProfile::V2 => "tacit-v2 (PQXDH: X25519 + ML-KEM-1024, post-quantum hybrid)",
        SessionProfile::V1 => "tacit-v1 (X3DH: X25519 only)",
        _ => "another profile",
    }
}

/// `user`'s bundle as the relay would serve it now with its last-resort KEM
/// prekey, and without a KEM prekey: their wire sizes, (version 1,
/// version 2). Read from the relay's database, so nothing is claimed.
fn bundle_sizes(db: &Path, user: &str) -> anyhow::Result<(usize, usize)> {
    let conn =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    type Row = (
        Vec<u8>,
        u32,
        Vec<u8>,
        Vec<u8>,
        u32,
        Vec<u8>,
        u32,
        Vec<u8>,
        Vec<u8>,
    );
    let row: Row = conn.query_row(
        "SELECT identity_key, signed_prekey_id, signed_prekey, signed_prekey_signature,
                fallback_prekey_id, fallback_prekey, kem_prekey_id, kem_prekey, kem_prekey_signature
         FROM devices WHERE user_id = ?1 AND device_id = 1",
        [user],
        |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
                r.get(6)?,
                r.get(7)?,
                r.get(8)?,
            ))
        },
    )?;
    let (ik, spk_id, spk, sig, fb_id, fb, kem_id, kem, kem_sig) = row;
    let v1 = PreKeyBundleMessage {
        identity_key: IdentityKey::try_from_slice(&ik)?,
        signed_prekey_id: spk_id,
        signed_prekey: PublicKey::try_from_slice(&spk)?,
        signed_prekey_signature: Signature::try_from_slice(&sig)?,
        one_time_prekey: Some((fb_id, PublicKey::try_from_slice(&fb)?)),
        kem_prekey: None,
    };
    let v2 = PreKeyBundleMessage {
        kem_prekey: Some(SignedKemPreKey {
            id: kem_id,
            key: KemPublicKey::from_encoded(&kem).context("the stored KEM prekey")?,
            signature: Signature::try_from_slice(&kem_sig)?,
        }),
        ..v1.clone()
    };
    Ok((v1.to_wire().len(), v2.to_wire().len()))
}

/// One-time KEM prekeys the relay holds for `user`'s device 1.
fn kem_stock(db: &Path, user: &str) -> anyhow::Result<u32> {
    let conn =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    Ok(conn.query_row(
        "SELECT count(*) FROM one_time_kem_prekeys WHERE user_id = ?1 AND device_id = 1",
        [user],
        |r| r.get(0),
    )?)
}

/// Prints the section; fails if a session is not `tacit-v2`.
/// `first_envelope` is the size of Alice's first envelope as the relay
/// stored it.
pub(crate) async fn show(
    db: &Path,
    alice: &Client,
    bob: &Client,
    first_envelope: usize,
) -> anyhow::Result<()> {
    let ab = alice.sessions("bob").await?;
    let ba = bob.sessions("alice").await?;
    let (Some(ab), Some(ba)) = (ab.first(), ba.first()) else {
        bail!("no session between Alice and Bob");
    };
    println!("Alice's session with {}: {}", ab.address, name(ab.profile));
    println!("Bob's session with {}: {}", ba.address, name(ba.profile));
    if ab.profile != SessionProfile::V2 || ba.profile != SessionProfile::V2 {
        bail!("a session is not tacit-v2");
    }
    let (v1, v2) = bundle_sizes(db, "bob")?;
    println!(
        "Bob's bundle: {v2} bytes with its signed ML-KEM-1024 prekey (a classical bundle: {v1} bytes)"
    );
    println!(
        "Alice's first envelope: {first_envelope} bytes (it carries the 1568-byte KEM ciphertext; later ones do not)"
    );
    println!(
        "One-time KEM prekeys the relay holds for bob.1: {} (each fetch claims one with a one-time prekey; clients refill them)",
        kem_stock(db, "bob")?
    );
    println!(
        "A recording of these messages' contents stays secret unless both X25519 and ML-KEM-1024 are broken;"
    );
    println!("who sent each sealed envelope rests on X25519 alone (docs/PROTOCOL.md 15.10).");
    Ok(())
}
