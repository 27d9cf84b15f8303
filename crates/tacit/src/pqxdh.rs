//! The PQXDH key agreement, as profile `tacit-v2` pins it
//! (`docs/PROTOCOL.md` section 15): X3DH's four Diffie-Hellman outputs and
//! an ML-KEM-1024 shared secret, with the KEM public key and ciphertext
//! bound into the key derivation.
//!
//! ```text
//! DH1..DH4 as in X3DH            (CT, SS) = ML-KEM-1024.Encaps(PQPK_B)
//! KM  = 0xFF^32 || DH1 || DH2 || DH3 [|| DH4] || SS || EncodeKEM(PQPK_B) || CT
//! SK  = HKDF(0^32, KM, "tacit/pqxdh/v2", 32)
//! AD  = Enc(IK_A) || Enc(IK_B)
//! RK0 || HKA || NHKB = HKDF(0^32, SK, "tacit/session/v2", 96)
//! ```
//!
//! The initiator takes the same [`PreKeyBundle`] as X3DH and requires its
//! KEM part. It checks that the KEM prekey is there, then the signed
//! prekey's signature, then the KEM prekey's, before drawing any
//! randomness; then that no DH output is all zeros.
//!
//! ```
//! use tacit::kem::KemKeyPair;
//! use tacit::keys::{IdentityKeyPair, KeyPair};
//! use tacit::pqxdh;
//! use tacit::{BundleKemPreKey, PreKeyBundle};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let mut rng = rand_core::OsRng;
//! let alice = IdentityKeyPair::generate(&mut rng);
//! let bob = IdentityKeyPair::generate(&mut rng);
//! let signed_prekey = KeyPair::generate(&mut rng);
//! let kem_prekey = KemKeyPair::generate(&mut rng);
//!
//! let bundle = PreKeyBundle {
//!     identity_key: bob.public_key(),
//!     signed_prekey: signed_prekey.public_key(),
//!     signed_prekey_signature: bob.sign_prekey(&signed_prekey.public_key()),
//!     one_time_prekey: None,
//!     kem_prekey: Some(BundleKemPreKey {
//!         key: kem_prekey.public_key().clone(),
//!         signature: bob.sign_kem_prekey(kem_prekey.public_key()),
//!     }),
//! };
//! let initiated = pqxdh::initiate(&alice, &bundle, &mut rng)?;
//! let responded = pqxdh::respond(
//!     &bob,
//!     &signed_prekey,
//!     None,
//!     &kem_prekey,
//!     &alice.public_key(),
//!     &initiated.ephemeral_key,
//!     &initiated.kem_ciphertext,
//! )?;
//! assert_eq!(initiated.agreement.shared_secret(), responded.shared_secret());
//! # Ok(()) }
//! ```

use alloc::vec::Vec;

use rand_core::CryptoRngCore;
use zeroize::Zeroizing;

use crate::bundle::PreKeyBundle;
use crate::crypto::hkdf;
use crate::error::PqxdhError;
use crate::kem::{
    KemCiphertext, KemKeyPair, KemPublicKey, KEM_CIPHERTEXT_LEN, KEM_ENCODED_PUBLIC_KEY_LEN,
};
use crate::keys::{IdentityKey, IdentityKeyPair, KeyPair, PublicKey, SecretKey32};
use crate::x3dh::{associated_data, dh_key_material, Agreement};

/// The PQXDH `info` label: it names the profile, so the profile is
/// authenticated by SK.
pub const PQXDH_INFO: &[u8] = b"tacit/pqxdh/v2";
/// The label deriving RK0, HKA and NHKB from a `tacit-v2` SK.
pub const SESSION_INFO_V2: &[u8] = b"tacit/session/v2";

/// The initiator's result: the agreement and what the responder needs to
/// repeat it.
#[derive(Debug, Clone)]
pub struct Initiation {
    /// `SK` and `AD`.
    pub agreement: Agreement,
    /// `EK_A`'s public key, sent to the responder.
    pub ephemeral_key: PublicKey,
    /// The KEM ciphertext `CT`, sent to the responder.
    pub kem_ciphertext: KemCiphertext,
    /// Whether the bundle's one-time prekey was used (`DH4`).
    pub used_one_time_prekey: bool,
}

/// The initiator's half: requires the bundle's KEM prekey
/// ([`PqxdhError::MissingKemPreKey`] without one), checks both signatures,
/// then draws `EK_A` (32 bytes, one call) and the encapsulation randomness
/// `m` (32 bytes, one call) from `rng`. Nothing is drawn when it refuses.
pub fn initiate(
    identity: &IdentityKeyPair,
    bundle: &PreKeyBundle,
    rng: &mut impl CryptoRngCore,
) -> Result<Initiation, PqxdhError> {
    let kem = bundle
        .kem_prekey
        .as_ref()
        .ok_or(PqxdhError::MissingKemPreKey)?;
    bundle
        .identity_key
        .verify_signed_prekey(&bundle.signed_prekey, &bundle.signed_prekey_signature)
        .map_err(|_| PqxdhError::InvalidSignature)?;
    bundle
        .identity_key
        .verify_kem_prekey(&kem.key, &kem.signature)
        .map_err(|_| PqxdhError::InvalidKemSignature)?;
    let ephemeral = KeyPair::generate(rng);
    let their_identity = bundle.identity_key.to_x25519();
    let dh = dh_key_material(
        identity.diffie_hellman(&bundle.signed_prekey),
        ephemeral.diffie_hellman(&their_identity),
        ephemeral.diffie_hellman(&bundle.signed_prekey),
        bundle
            .one_time_prekey
            .map(|opk| ephemeral.diffie_hellman(&opk)),
    )
    .map_err(|_| PqxdhError::SmallOrderKey)?;
    let (kem_ciphertext, kem_secret) = kem.key.encapsulate(rng);
    let shared_secret = derive_shared_secret(&dh, &kem_secret, &kem.key, &kem_ciphertext);
    Ok(Initiation {
        agreement: Agreement::new(
            shared_secret,
            associated_data(&identity.public_key(), &bundle.identity_key),
            SESSION_INFO_V2,
        ),
        ephemeral_key: ephemeral.public_key(),
        kem_ciphertext,
        used_one_time_prekey: bundle.one_time_prekey.is_some(),
    })
}

/// The responder's half, with its identity, the signed prekey, the one-time
/// prekey (if one was used) and the KEM prekey the initiator used, and the
/// initiator's identity key, ephemeral key and KEM ciphertext. Draws no
/// randomness. A ciphertext not made for `kem_prekey` is not detected here:
/// it gives another SK, and the first message fails to decrypt.
pub fn respond(
    identity: &IdentityKeyPair,
    signed_prekey: &KeyPair,
    one_time_prekey: Option<&KeyPair>,
    kem_prekey: &KemKeyPair,
    initiator_identity: &IdentityKey,
    initiator_ephemeral: &PublicKey,
    kem_ciphertext: &KemCiphertext,
) -> Result<Agreement, PqxdhError> {
    let dh = dh_key_material(
        signed_prekey.diffie_hellman(&initiator_identity.to_x25519()),
        identity.diffie_hellman(initiator_ephemeral),
        signed_prekey.diffie_hellman(initiator_ephemeral),
        one_time_prekey.map(|opk| opk.diffie_hellman(initiator_ephemeral)),
    )
    .map_err(|_| PqxdhError::SmallOrderKey)?;
    let kem_secret = kem_prekey.decapsulate(kem_ciphertext);
    let shared_secret =
        derive_shared_secret(&dh, &kem_secret, kem_prekey.public_key(), kem_ciphertext);
    Ok(Agreement::new(
        shared_secret,
        associated_data(initiator_identity, &identity.public_key()),
        SESSION_INFO_V2,
    ))
}

/// `SK = HKDF(0^32, DH material || SS || EncodeKEM(PQPK_B) || CT,
/// "tacit/pqxdh/v2", 32)`.
fn derive_shared_secret(
    dh_material: &[u8],
    kem_secret: &SecretKey32,
    kem_prekey: &KemPublicKey,
    kem_ciphertext: &KemCiphertext,
) -> SecretKey32 {
    let mut ikm = Zeroizing::new(Vec::with_capacity(
        dh_material.len() + 32 + KEM_ENCODED_PUBLIC_KEY_LEN + KEM_CIPHERTEXT_LEN,
    ));
    ikm.extend_from_slice(dh_material);
    ikm.extend_from_slice(kem_secret.as_bytes());
    ikm.extend_from_slice(&kem_prekey.to_encoded());
    ikm.extend_from_slice(kem_ciphertext.as_bytes());
    let sk = hkdf::<32>(&[0u8; 32], &ikm, PQXDH_INFO);
    SecretKey32::from_bytes(*sk)
}
