//! The X3DH key agreement, as profile `tacit-v1` pins it.
//!
//! ```text
//! DH1 = DH(IK_A, SPK_B)   DH2 = DH(EK_A, IK_B)   DH3 = DH(EK_A, SPK_B)
//! DH4 = DH(EK_A, OPK_B)   only when the bundle offered a one-time prekey
//! SK  = HKDF(0^32, 0xFF^32 || DH1 || DH2 || DH3 [|| DH4], "tacit/x3dh/v1", 32)
//! AD  = Enc(IK_A) || Enc(IK_B)
//! RK0 || HKA || NHKB = HKDF(0^32, SK, "tacit/session/v1", 96)
//! ```
//!
//! The initiator refuses a bundle that offers a KEM prekey (that bundle is
//! for PQXDH, [`crate::pqxdh`]), then checks the signed prekey's signature
//! (strict Ed25519), then that no DH output is all zeros.
//!
//! ```
//! use tacit::keys::{IdentityKeyPair, KeyPair};
//! use tacit::x3dh;
//! use tacit::PreKeyBundle;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let mut rng = rand_core::OsRng;
//! let alice = IdentityKeyPair::generate(&mut rng);
//! let bob = IdentityKeyPair::generate(&mut rng);
//! let signed_prekey = KeyPair::generate(&mut rng);
//! let one_time_prekey = KeyPair::generate(&mut rng);
//!
//! let bundle = PreKeyBundle {
//!     identity_key: bob.public_key(),
//!     signed_prekey: signed_prekey.public_key(),
//!     signed_prekey_signature: bob.sign_prekey(&signed_prekey.public_key()),
//!     one_time_prekey: Some(one_time_prekey.public_key()),
//!     kem_prekey: None,
//! };
//! let initiated = x3dh::initiate(&alice, &bundle, &mut rng)?;
//! let responded = x3dh::respond(
//!     &bob,
//!     &signed_prekey,
//!     Some(&one_time_prekey),
//!     &alice.public_key(),
//!     &initiated.ephemeral_key,
//! )?;
//! assert_eq!(initiated.agreement.shared_secret(), responded.shared_secret());
//! # Ok(()) }
//! ```

use alloc::vec::Vec;
use core::fmt;

use rand_core::CryptoRngCore;
use zeroize::Zeroizing;

use crate::bundle::PreKeyBundle;
use crate::crypto::hkdf;
use crate::error::{KeyError, X3dhError};
use crate::keys::{IdentityKey, IdentityKeyPair, KeyPair, PublicKey, SecretKey32, KEY_LEN};
use crate::ratchet::SessionKeys;

const X3DH_INFO: &[u8] = b"tacit/x3dh/v1";
const SESSION_INFO: &[u8] = b"tacit/session/v1";
/// Length of `AD = Enc(IK_A) || Enc(IK_B)`.
pub const ASSOCIATED_DATA_LEN: usize = 2 * KEY_LEN;

/// The result of X3DH (or of PQXDH, [`crate::pqxdh`]) on either side: `SK`
/// and `AD`.
#[derive(Clone)]
pub struct Agreement {
    shared_secret: SecretKey32,
    associated_data: [u8; ASSOCIATED_DATA_LEN],
    /// `tacit/session/v1`, or `tacit/session/v2` for a PQXDH agreement.
    session_info: &'static [u8],
}

impl Agreement {
    pub(crate) fn new(
        shared_secret: SecretKey32,
        associated_data: [u8; ASSOCIATED_DATA_LEN],
        session_info: &'static [u8],
    ) -> Self {
        Self {
            shared_secret,
            associated_data,
            session_info,
        }
    }

    /// `SK`, the X3DH output. Exposed for test vectors and other
    /// key schedules; the session uses [`session_keys`](Self::session_keys).
    pub fn shared_secret(&self) -> &SecretKey32 {
        &self.shared_secret
    }

    /// `AD = Enc(IK_A) || Enc(IK_B)`, initiator first.
    pub fn associated_data(&self) -> &[u8; ASSOCIATED_DATA_LEN] {
        &self.associated_data
    }

    /// `RK0 || HKA || NHKB = HKDF(0^32, SK, "tacit/session/v1", 96)` (with
    /// `tacit/session/v2` after PQXDH) with `AD`: the key material the
    /// ratchet starts from.
    pub fn session_keys(&self) -> SessionKeys {
        let okm = hkdf::<96>(&[0u8; 32], self.shared_secret.as_bytes(), self.session_info);
        let block = |i: usize| {
            let mut out = [0u8; 32];
            out.copy_from_slice(&okm[32 * i..32 * (i + 1)]);
            out
        };
        SessionKeys::from_parts(block(0), block(1), block(2), &self.associated_data)
    }
}

impl fmt::Debug for Agreement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Agreement").finish_non_exhaustive()
    }
}

/// The initiator's result: the agreement and what the responder needs to
/// repeat it.
#[derive(Debug, Clone)]
pub struct Initiation {
    /// `SK` and `AD`.
    pub agreement: Agreement,
    /// `EK_A`'s public key, sent to the responder.
    pub ephemeral_key: PublicKey,
    /// Whether the bundle's one-time prekey was used (`DH4`).
    pub used_one_time_prekey: bool,
}

/// The initiator's half: checks the bundle and agrees on `SK` with a fresh
/// ephemeral key drawn from `rng` (32 bytes in one call).
///
/// A bundle that offers a KEM prekey is refused with
/// [`X3dhError::KemPreKeyOffered`] before anything is drawn: it starts a
/// `tacit-v2` session ([`crate::pqxdh::initiate`]), never a classical one.
pub fn initiate(
    identity: &IdentityKeyPair,
    bundle: &PreKeyBundle,
    rng: &mut impl CryptoRngCore,
) -> Result<Initiation, X3dhError> {
    if bundle.kem_prekey.is_some() {
        return Err(X3dhError::KemPreKeyOffered);
    }
    bundle
        .identity_key
        .verify_signed_prekey(&bundle.signed_prekey, &bundle.signed_prekey_signature)
        .map_err(|_| X3dhError::InvalidSignature)?;
    let ephemeral = KeyPair::generate(rng);
    let their_identity = bundle.identity_key.to_x25519();
    let dh1 = identity.diffie_hellman(&bundle.signed_prekey);
    let dh2 = ephemeral.diffie_hellman(&their_identity);
    let dh3 = ephemeral.diffie_hellman(&bundle.signed_prekey);
    let dh4 = bundle
        .one_time_prekey
        .map(|opk| ephemeral.diffie_hellman(&opk));
    let shared_secret = derive_shared_secret(dh1, dh2, dh3, dh4)?;
    Ok(Initiation {
        agreement: Agreement::new(
            shared_secret,
            associated_data(&identity.public_key(), &bundle.identity_key),
            SESSION_INFO,
        ),
        ephemeral_key: ephemeral.public_key(),
        used_one_time_prekey: bundle.one_time_prekey.is_some(),
    })
}

/// The responder's half, with its identity, the signed prekey and the
/// one-time prekey the initiator used (if any), and the initiator's identity
/// and ephemeral keys.
pub fn respond(
    identity: &IdentityKeyPair,
    signed_prekey: &KeyPair,
    one_time_prekey: Option<&KeyPair>,
    initiator_identity: &IdentityKey,
    initiator_ephemeral: &PublicKey,
) -> Result<Agreement, X3dhError> {
    let dh1 = signed_prekey.diffie_hellman(&initiator_identity.to_x25519());
    let dh2 = identity.diffie_hellman(initiator_ephemeral);
    let dh3 = signed_prekey.diffie_hellman(initiator_ephemeral);
    let dh4 = one_time_prekey.map(|opk| opk.diffie_hellman(initiator_ephemeral));
    let shared_secret = derive_shared_secret(dh1, dh2, dh3, dh4)?;
    Ok(Agreement::new(
        shared_secret,
        associated_data(initiator_identity, &identity.public_key()),
        SESSION_INFO,
    ))
}

/// `SK = HKDF(0^32, 0xFF^32 || DH1 || DH2 || DH3 [|| DH4], "tacit/x3dh/v1", 32)`,
/// refusing any all-zero DH output.
fn derive_shared_secret(
    dh1: Result<SecretKey32, KeyError>,
    dh2: Result<SecretKey32, KeyError>,
    dh3: Result<SecretKey32, KeyError>,
    dh4: Option<Result<SecretKey32, KeyError>>,
) -> Result<SecretKey32, X3dhError> {
    let ikm = dh_key_material(dh1, dh2, dh3, dh4).map_err(|_| X3dhError::SmallOrderKey)?;
    let sk = hkdf::<32>(&[0u8; 32], &ikm, X3DH_INFO);
    Ok(SecretKey32::from_bytes(*sk))
}

/// `0xFF^32 || DH1 || DH2 || DH3 [|| DH4]`, refusing any all-zero DH output;
/// shared by X3DH and PQXDH.
pub(crate) fn dh_key_material(
    dh1: Result<SecretKey32, KeyError>,
    dh2: Result<SecretKey32, KeyError>,
    dh3: Result<SecretKey32, KeyError>,
    dh4: Option<Result<SecretKey32, KeyError>>,
) -> Result<Zeroizing<Vec<u8>>, KeyError> {
    let mut ikm = Zeroizing::new(Vec::with_capacity(5 * KEY_LEN));
    ikm.extend_from_slice(&[0xff; KEY_LEN]);
    for dh in [Some(dh1), Some(dh2), Some(dh3), dh4].into_iter().flatten() {
        ikm.extend_from_slice(dh?.as_bytes());
    }
    Ok(ikm)
}

pub(crate) fn associated_data(
    initiator: &IdentityKey,
    responder: &IdentityKey,
) -> [u8; ASSOCIATED_DATA_LEN] {
    let mut ad = [0u8; ASSOCIATED_DATA_LEN];
    ad[..KEY_LEN].copy_from_slice(&initiator.to_bytes());
    ad[KEY_LEN..].copy_from_slice(&responder.to_bytes());
    ad
}
