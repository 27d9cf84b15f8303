//! The user key: the Ed25519 key that signs a user's devices.

use core::fmt;

use rand_core::CryptoRngCore;

use crate::error::KeyError;
use crate::keys::{IdentityKey, IdentityKeyPair, SecretKey32, Signature, KEY_LEN};

/// A user's public key, `Enc(UK)`: an Ed25519 point that decodes and is not
/// of small order (the rule of identity keys).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct UserKey(IdentityKey);

impl UserKey {
    /// Decodes and checks a user key.
    pub fn from_bytes(bytes: &[u8; KEY_LEN]) -> Result<Self, KeyError> {
        IdentityKey::from_bytes(bytes).map(Self)
    }

    /// Decodes a user key from a slice of exactly 32 bytes.
    pub fn try_from_slice(bytes: &[u8]) -> Result<Self, KeyError> {
        IdentityKey::try_from_slice(bytes).map(Self)
    }

    /// The 32-byte encoding, as received.
    pub fn to_bytes(&self) -> [u8; KEY_LEN] {
        self.0.to_bytes()
    }

    /// Verifies `signature` over `message` with the strict Ed25519 rule.
    pub(crate) fn verify(&self, message: &[u8], signature: &Signature) -> Result<(), KeyError> {
        self.0.verify(message, signature)
    }
}

impl fmt::Debug for UserKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "UserKey(")?;
        for b in self.to_bytes() {
            write!(f, "{b:02x}")?;
        }
        write!(f, ")")
    }
}

/// A user key pair. Its secret lives on the user's primary device only; the
/// seed is the user's recovery code.
#[derive(Clone)]
pub struct UserKeyPair(IdentityKeyPair);

impl UserKeyPair {
    /// The key pair of a 32-byte seed (RFC 8032 private key).
    pub fn from_seed(seed: &[u8; KEY_LEN]) -> Self {
        Self(IdentityKeyPair::from_seed(seed))
    }

    /// A new key pair from 32 bytes drawn from `rng`.
    pub fn generate(rng: &mut impl CryptoRngCore) -> Self {
        Self(IdentityKeyPair::generate(rng))
    }

    /// The 32-byte seed: store it sealed, show it as the recovery code.
    pub fn seed(&self) -> SecretKey32 {
        self.0.seed()
    }

    /// The public user key.
    pub fn public_key(&self) -> UserKey {
        UserKey(self.0.public_key())
    }

    /// Signs `message`.
    pub(crate) fn sign(&self, message: &[u8]) -> Signature {
        self.0.sign(message)
    }
}

impl fmt::Debug for UserKeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserKeyPair")
            .field("public", &self.public_key())
            .finish_non_exhaustive()
    }
}
