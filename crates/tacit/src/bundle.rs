//! The prekey bundle: what an initiator needs from a responder to start a
//! session, for both profiles.
//!
//! One type serves both handshakes. Without a KEM prekey it is a
//! `tacit-v1` bundle, which only [`x3dh::initiate`](crate::x3dh::initiate)
//! takes; with one it is a `tacit-v2` bundle, which only
//! [`pqxdh::initiate`](crate::pqxdh::initiate) takes. Each initiator refuses
//! the other kind with a typed error before drawing any randomness, so a
//! bundle that offers a KEM prekey is never silently used for a classical
//! session (`docs/PROTOCOL.md` sections 2.1 and 15.8).
//!
//! The bundle carries no prekey ids: its wire form, with the ids the
//! responder finds its private keys by, is
//! [`wire::PreKeyBundleMessage`](crate::wire::PreKeyBundleMessage), whose
//! [`bundle`](crate::wire::PreKeyBundleMessage::bundle) gives this type.

use crate::kem::KemPublicKey;
use crate::keys::{IdentityKey, PublicKey, Signature};

/// A responder's public prekeys: identity key, signed prekey with its
/// signature, and optionally a one-time prekey and a signed KEM prekey.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreKeyBundle {
    /// The responder's identity key `IK_B`.
    pub identity_key: IdentityKey,
    /// The responder's signed prekey `SPK_B`.
    pub signed_prekey: PublicKey,
    /// `IK_B`'s Ed25519 signature over `Enc(SPK_B)`.
    pub signed_prekey_signature: Signature,
    /// A one-time prekey `OPK_B`, when the responder had one to offer.
    pub one_time_prekey: Option<PublicKey>,
    /// The signed KEM prekey `PQPK_B` (one-time or last-resort): present
    /// in a `tacit-v2` bundle, required by PQXDH, refused by X3DH.
    pub kem_prekey: Option<BundleKemPreKey>,
}

impl PreKeyBundle {
    /// The profile this bundle starts: [`PROFILE_V2`](crate::PROFILE_V2)
    /// when it offers a KEM prekey, else [`PROFILE`](crate::PROFILE).
    pub fn profile(&self) -> &'static str {
        if self.kem_prekey.is_some() {
            crate::PROFILE_V2
        } else {
            crate::PROFILE
        }
    }
}

/// The KEM part of a `tacit-v2` bundle: the KEM prekey and its signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleKemPreKey {
    /// The KEM prekey `PQPK_B` (checked when decoded).
    pub key: KemPublicKey,
    /// `IK_B`'s Ed25519 signature over `EncodeKEM(PQPK_B)`.
    pub signature: Signature,
}
