//! Keys: Ed25519 identity keys with their X25519 view, X25519 key pairs for
//! prekeys, ephemeral and ratchet keys, prekey signatures, and the
//! Diffie-Hellman function with its all-zero check.
//!
//! Secret types zeroize on drop, print nothing secret through `Debug`, and
//! compare in constant time.

use core::fmt;

use ed25519_dalek::{SigningKey, VerifyingKey};
use rand_core::CryptoRngCore;
use subtle::{Choice, ConstantTimeEq};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::error::KeyError;

/// Length of every key encoding in this crate.
pub const KEY_LEN: usize = 32;
/// Length of an Ed25519 signature.
pub const SIGNATURE_LEN: usize = 64;

/// 32 secret bytes: zeroized on drop, compared in constant time, never
/// printed.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct SecretKey32([u8; KEY_LEN]);

impl SecretKey32 {
    /// Wraps 32 secret bytes.
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        Self(bytes)
    }

    /// The secret bytes. Handle with care: copies are not zeroized.
    pub fn as_bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }
}

impl ConstantTimeEq for SecretKey32 {
    fn ct_eq(&self, other: &Self) -> Choice {
        self.0.ct_eq(&other.0)
    }
}

impl PartialEq for SecretKey32 {
    fn eq(&self, other: &Self) -> bool {
        self.ct_eq(other).into()
    }
}

impl Eq for SecretKey32 {}

impl fmt::Debug for SecretKey32 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretKey32(<redacted>)")
    }
}

/// An X25519 public key: the 32-byte u-coordinate, kept exactly as received.
///
/// Decoding follows RFC 7748 (the top bit is ignored, values of p or more
/// are reduced); no key is refused here. A key that gives an all-zero
/// Diffie-Hellman output is refused by [`KeyPair::diffie_hellman`] and
/// [`IdentityKeyPair::diffie_hellman`].
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PublicKey([u8; KEY_LEN]);

impl PublicKey {
    /// Wraps a 32-byte u-coordinate.
    pub const fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        Self(bytes)
    }

    /// Reads a u-coordinate from a slice of exactly 32 bytes.
    pub fn try_from_slice(bytes: &[u8]) -> Result<Self, KeyError> {
        array_from_slice(bytes).map(Self)
    }

    /// The 32-byte encoding, `Enc(K)` in the profile.
    pub const fn to_bytes(&self) -> [u8; KEY_LEN] {
        self.0
    }

    /// The 32-byte encoding, borrowed.
    pub const fn as_bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey(")?;
        write_hex(f, &self.0)?;
        write!(f, ")")
    }
}

/// An X25519 key pair: a signed prekey, a one-time prekey, an ephemeral key
/// or a ratchet key.
#[derive(Clone)]
pub struct KeyPair {
    secret: x25519_dalek::StaticSecret,
    public: PublicKey,
}

impl KeyPair {
    /// Generates a key pair from 32 bytes drawn from `rng` in one call.
    ///
    /// Exactly 32 bytes are drawn, so a recorded byte stream reproduces the
    /// key (the test vectors rely on this).
    pub fn generate(rng: &mut impl CryptoRngCore) -> Self {
        let mut bytes = Zeroizing::new([0u8; KEY_LEN]);
        rng.fill_bytes(bytes.as_mut());
        Self::from_private_bytes(*bytes)
    }

    /// Builds the key pair of a 32-byte X25519 private key (clamped when
    /// used, as RFC 7748 says).
    pub fn from_private_bytes(bytes: [u8; KEY_LEN]) -> Self {
        let mut bytes = Zeroizing::new(bytes);
        let secret = x25519_dalek::StaticSecret::from(*bytes);
        bytes.zeroize();
        let public = PublicKey(x25519_dalek::PublicKey::from(&secret).to_bytes());
        Self { secret, public }
    }

    /// The pair of a private key and its public key as stored together
    /// (a session record); the public key is not recomputed.
    pub(crate) fn from_stored(private: [u8; KEY_LEN], public: PublicKey) -> Self {
        let mut bytes = Zeroizing::new(private);
        let secret = x25519_dalek::StaticSecret::from(*bytes);
        bytes.zeroize();
        Self { secret, public }
    }

    /// The public half.
    pub const fn public_key(&self) -> PublicKey {
        self.public
    }

    /// The 32 private bytes as given (unclamped), for storage.
    pub fn private_bytes(&self) -> SecretKey32 {
        SecretKey32(self.secret.to_bytes())
    }

    /// X25519 with this private key and `their` public key; an all-zero
    /// output is an error.
    pub fn diffie_hellman(&self, their: &PublicKey) -> Result<SecretKey32, KeyError> {
        diffie_hellman(&self.secret, their)
    }
}

impl fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyPair")
            .field("public", &self.public)
            .finish_non_exhaustive()
    }
}

/// `DH(a, B)`: X25519, refusing an all-zero output in constant time.
pub(crate) fn diffie_hellman(
    secret: &x25519_dalek::StaticSecret,
    their: &PublicKey,
) -> Result<SecretKey32, KeyError> {
    let shared = secret.diffie_hellman(&x25519_dalek::PublicKey::from(their.0));
    let out = SecretKey32(shared.to_bytes());
    if bool::from(out.0.ct_eq(&[0u8; KEY_LEN])) {
        return Err(KeyError::SmallOrderPublicKey);
    }
    Ok(out)
}

/// An Ed25519 signature over a signed prekey's encoding.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Signature([u8; SIGNATURE_LEN]);

impl Signature {
    /// Wraps 64 signature bytes (`R || S`).
    pub const fn from_bytes(bytes: [u8; SIGNATURE_LEN]) -> Self {
        Self(bytes)
    }

    /// Reads a signature from a slice of exactly 64 bytes.
    pub fn try_from_slice(bytes: &[u8]) -> Result<Self, KeyError> {
        array_from_slice(bytes).map(Self)
    }

    /// The 64 bytes.
    pub const fn to_bytes(&self) -> [u8; SIGNATURE_LEN] {
        self.0
    }
}

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature(")?;
        write_hex(f, &self.0)?;
        write!(f, ")")
    }
}

/// A peer's identity key: an Ed25519 public key that decodes as a point and
/// is not of small order.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct IdentityKey {
    verifying: VerifyingKey,
}

impl IdentityKey {
    /// Decodes and checks an identity key: it must decode as an Edwards point
    /// and must not be of small order.
    pub fn from_bytes(bytes: &[u8; KEY_LEN]) -> Result<Self, KeyError> {
        let verifying =
            VerifyingKey::from_bytes(bytes).map_err(|_| KeyError::InvalidIdentityKey)?;
        if verifying.is_weak() {
            return Err(KeyError::WeakIdentityKey);
        }
        Ok(Self { verifying })
    }

    /// Decodes an identity key from a slice of exactly 32 bytes.
    pub fn try_from_slice(bytes: &[u8]) -> Result<Self, KeyError> {
        Self::from_bytes(&array_from_slice(bytes)?)
    }

    /// The 32-byte compressed Edwards point, `Enc(IK)`, as received.
    pub fn to_bytes(&self) -> [u8; KEY_LEN] {
        self.verifying.to_bytes()
    }

    /// The X25519 public key of this identity: the Montgomery form
    /// `u = (1 + y) / (1 - y)` of the Edwards point.
    pub fn to_x25519(&self) -> PublicKey {
        PublicKey(self.verifying.to_montgomery().to_bytes())
    }

    /// Verifies `signature` over `message` with strict Ed25519 rules
    /// (`S < L`, canonical `R` by re-encoding, no small-order `A` or `R`).
    pub fn verify(&self, message: &[u8], signature: &Signature) -> Result<(), KeyError> {
        let sig = ed25519_dalek::Signature::from_bytes(&signature.0);
        self.verifying
            .verify_strict(message, &sig)
            .map_err(|_| KeyError::InvalidSignature)
    }

    /// Verifies a signed prekey's signature: a signature by this identity
    /// over `Enc(SPK)`.
    pub fn verify_signed_prekey(
        &self,
        signed_prekey: &PublicKey,
        signature: &Signature,
    ) -> Result<(), KeyError> {
        self.verify(signed_prekey.as_bytes(), signature)
    }

    /// Verifies a KEM prekey's signature: a signature by this identity over
    /// `EncodeKEM(PQPK) = 0x0A || ek` (1569 bytes, profile `tacit-v2`). A
    /// relay checks it when a device uploads KEM prekeys.
    pub fn verify_kem_prekey(
        &self,
        kem_prekey: &crate::kem::KemPublicKey,
        signature: &Signature,
    ) -> Result<(), KeyError> {
        self.verify(&kem_prekey.to_encoded(), signature)
    }
}

impl fmt::Debug for IdentityKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IdentityKey(")?;
        write_hex(f, self.verifying.as_bytes())?;
        write!(f, ")")
    }
}

/// An identity key pair: an Ed25519 key pair from a 32-byte seed, with its
/// X25519 view (the first half of SHA-512(seed)) cached for Diffie-Hellman.
#[derive(Clone)]
pub struct IdentityKeyPair {
    signing: SigningKey,
    x25519: x25519_dalek::StaticSecret,
    public: IdentityKey,
}

impl IdentityKeyPair {
    /// The identity of a 32-byte seed (RFC 8032 private key).
    pub fn from_seed(seed: &[u8; KEY_LEN]) -> Self {
        let signing = SigningKey::from_bytes(seed);
        let scalar = Zeroizing::new(signing.to_scalar_bytes());
        let x25519 = x25519_dalek::StaticSecret::from(*scalar);
        let public = IdentityKey {
            verifying: signing.verifying_key(),
        };
        Self {
            signing,
            x25519,
            public,
        }
    }

    /// A new identity from 32 bytes drawn from `rng`.
    pub fn generate(rng: &mut impl CryptoRngCore) -> Self {
        let mut seed = Zeroizing::new([0u8; KEY_LEN]);
        rng.fill_bytes(seed.as_mut());
        Self::from_seed(&seed)
    }

    /// The 32-byte seed, for storage.
    pub fn seed(&self) -> SecretKey32 {
        SecretKey32(self.signing.to_bytes())
    }

    /// The public identity key.
    pub const fn public_key(&self) -> IdentityKey {
        self.public
    }

    /// Signs `message` (Ed25519, deterministic).
    pub fn sign(&self, message: &[u8]) -> Signature {
        use ed25519_dalek::Signer;
        Signature(self.signing.sign(message).to_bytes())
    }

    /// Signs a signed prekey: the signature over `Enc(SPK)`.
    pub fn sign_prekey(&self, signed_prekey: &PublicKey) -> Signature {
        self.sign(signed_prekey.as_bytes())
    }

    /// Signs a KEM prekey: the signature over `EncodeKEM(PQPK)`.
    pub fn sign_kem_prekey(&self, kem_prekey: &crate::kem::KemPublicKey) -> Signature {
        self.sign(&kem_prekey.to_encoded())
    }

    /// X25519 with this identity's private key (its X25519 view) and
    /// `their` public key; an all-zero output is an error.
    pub fn diffie_hellman(&self, their: &PublicKey) -> Result<SecretKey32, KeyError> {
        diffie_hellman(&self.x25519, their)
    }
}

impl fmt::Debug for IdentityKeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdentityKeyPair")
            .field("public", &self.public)
            .finish_non_exhaustive()
    }
}

fn array_from_slice<const N: usize>(bytes: &[u8]) -> Result<[u8; N], KeyError> {
    bytes.try_into().map_err(|_| KeyError::InvalidLength {
        expected: N,
        actual: bytes.len(),
    })
}

fn write_hex(f: &mut fmt::Formatter<'_>, bytes: &[u8]) -> fmt::Result {
    bytes.iter().try_for_each(|b| write!(f, "{b:02x}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_x25519_view_matches_on_both_sides() {
        let a = IdentityKeyPair::from_seed(&[1; 32]);
        let b = KeyPair::from_private_bytes([2; 32]);
        let ab = a.diffie_hellman(&b.public_key()).unwrap();
        let ba = b.diffie_hellman(&a.public_key().to_x25519()).unwrap();
        assert_eq!(ab, ba);
    }

    #[test]
    fn rfc7748_x25519_vector() {
        // RFC 7748 section 6.1.
        let alice = KeyPair::from_private_bytes(hex32(
            "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a",
        ));
        assert_eq!(
            alice.public_key().to_bytes(),
            hex32("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a")
        );
        let bob_pub = PublicKey::from_bytes(hex32(
            "de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f",
        ));
        assert_eq!(
            alice.diffie_hellman(&bob_pub).unwrap().as_bytes(),
            &hex32("4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742")
        );
    }

    #[test]
    fn small_order_public_keys_are_refused() {
        let pair = KeyPair::from_private_bytes([7; 32]);
        let mut p = [0u8; 32];
        p[0] = 1; // u = 1, order 4
        for u in [[0u8; 32], p] {
            assert_eq!(
                pair.diffie_hellman(&PublicKey::from_bytes(u)),
                Err(KeyError::SmallOrderPublicKey)
            );
        }
    }

    #[test]
    fn weak_and_invalid_identity_keys_are_refused() {
        // The identity point (y = 1) is of small order.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        assert_eq!(
            IdentityKey::from_bytes(&identity),
            Err(KeyError::WeakIdentityKey)
        );
        // y = 2 is not on the curve.
        let mut not_on_curve = [0u8; 32];
        not_on_curve[0] = 2;
        assert_eq!(
            IdentityKey::from_bytes(&not_on_curve),
            Err(KeyError::InvalidIdentityKey)
        );
    }

    #[test]
    fn prekey_signature_is_strict() {
        let id = IdentityKeyPair::from_seed(&[9; 32]);
        let spk = KeyPair::from_private_bytes([3; 32]).public_key();
        let sig = id.sign_prekey(&spk);
        assert!(id.public_key().verify_signed_prekey(&spk, &sig).is_ok());
        let other = KeyPair::from_private_bytes([4; 32]).public_key();
        assert_eq!(
            id.public_key().verify_signed_prekey(&other, &sig),
            Err(KeyError::InvalidSignature)
        );
    }

    #[test]
    fn debug_never_prints_secrets() {
        let id = IdentityKeyPair::from_seed(&[0xab; 32]);
        let text = format!("{id:?} {:?}", id.seed());
        assert!(!text.contains("abab"), "{text}");
        let pair = KeyPair::from_private_bytes([0xcd; 32]);
        assert!(!format!("{pair:?}").contains("cdcd"));
    }

    #[test]
    fn secrets_compare_by_value() {
        assert_eq!(
            SecretKey32::from_bytes([1; 32]),
            SecretKey32::from_bytes([1; 32])
        );
        assert_ne!(
            SecretKey32::from_bytes([1; 32]),
            SecretKey32::from_bytes([2; 32])
        );
    }

    fn hex32(s: &str) -> [u8; 32] {
        hex::decode(s).unwrap().try_into().unwrap()
    }
}
