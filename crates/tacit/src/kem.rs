//! ML-KEM-1024 (FIPS 203), as profile `tacit-v2` uses it
//! (`docs/PROTOCOL.md` section 15).
//!
//! - [`KemKeyPair`]: a key pair made from a 64-byte seed `d || z`
//!   (`ML-KEM.KeyGen_internal(d, z)`). Only the seed is kept (zeroized on
//!   drop); the expanded decapsulation key exists only inside
//!   [`KemKeyPair::decapsulate`].
//! - [`KemPublicKey`]: an encapsulation key that passed the FIPS 203
//!   encapsulation-key check; its `EncodeKEM` form is a type byte (`0x0A`)
//!   followed by the 1568 key bytes.
//! - [`KemCiphertext`]: exactly 1568 bytes.
//!
//! The implementation is `libcrux-ml-kem` (formally verified, constant
//! time). Encapsulation draws its 32 bytes `m` from the caller's RNG in one
//! call; [`KemPublicKey::encapsulate_deterministic`] takes `m` directly, for
//! test vectors.
//!
//! ```
//! use tacit::kem::KemKeyPair;
//!
//! let mut rng = rand_core::OsRng;
//! let bob = KemKeyPair::generate(&mut rng);
//! let (ciphertext, alice_secret) = bob.public_key().encapsulate(&mut rng);
//! assert_eq!(bob.decapsulate(&ciphertext), alice_secret);
//! ```

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::fmt;

use libcrux_ml_kem::mlkem1024;
use rand_core::CryptoRngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, Zeroizing};

use crate::error::KemError;
use crate::keys::SecretKey32;

/// Length of an ML-KEM-1024 encapsulation key `ek`.
pub const KEM_PUBLIC_KEY_LEN: usize = 1568;
/// Length of `EncodeKEM(PQPK) = 0x0A || ek`.
pub const KEM_ENCODED_PUBLIC_KEY_LEN: usize = 1 + KEM_PUBLIC_KEY_LEN;
/// Length of an ML-KEM-1024 ciphertext.
pub const KEM_CIPHERTEXT_LEN: usize = 1568;
/// Length of the key-generation seed `d || z`.
pub const KEM_SEED_LEN: usize = 64;
/// Length of the encapsulation randomness `m`.
pub const KEM_ENCAPSULATION_RANDOMNESS_LEN: usize = 32;
/// The type byte of `EncodeKEM` for ML-KEM-1024.
pub const KEM_TYPE_ML_KEM_1024: u8 = 0x0A;
/// The name of the parameter set, as test vector files write it.
pub const KEM_NAME: &str = "ML-KEM-1024";

/// An ML-KEM-1024 encapsulation key that passed the FIPS 203 check.
#[derive(Clone, PartialEq, Eq)]
pub struct KemPublicKey(Box<[u8; KEM_PUBLIC_KEY_LEN]>);

impl KemPublicKey {
    /// The 1568 bytes `ek`, checked: exact length
    /// ([`KemError::InvalidLength`]) and every coefficient below q
    /// ([`KemError::InvalidPublicKey`]).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, KemError> {
        let array: [u8; KEM_PUBLIC_KEY_LEN] =
            bytes.try_into().map_err(|_| KemError::InvalidLength {
                expected: KEM_PUBLIC_KEY_LEN,
                actual: bytes.len(),
            })?;
        let key = mlkem1024::MlKem1024PublicKey::from(array);
        if !mlkem1024::validate_public_key(&key) {
            return Err(KemError::InvalidPublicKey);
        }
        Ok(Self(Box::new(array)))
    }

    /// `EncodeKEM` form: the type byte `0x0A`, then `ek`. Refuses a wrong
    /// length, a wrong type byte ([`KemError::InvalidEncoding`]) and a key
    /// that fails the check.
    pub fn from_encoded(bytes: &[u8]) -> Result<Self, KemError> {
        if bytes.len() != KEM_ENCODED_PUBLIC_KEY_LEN {
            return Err(KemError::InvalidLength {
                expected: KEM_ENCODED_PUBLIC_KEY_LEN,
                actual: bytes.len(),
            });
        }
        if bytes[0] != KEM_TYPE_ML_KEM_1024 {
            return Err(KemError::InvalidEncoding);
        }
        Self::from_bytes(&bytes[1..])
    }

    /// The 1568 bytes `ek`.
    pub fn as_bytes(&self) -> &[u8; KEM_PUBLIC_KEY_LEN] {
        &self.0
    }

    /// `EncodeKEM(PQPK) = 0x0A || ek` (1569 bytes): what is published and
    /// signed.
    pub fn to_encoded(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(KEM_ENCODED_PUBLIC_KEY_LEN);
        out.push(KEM_TYPE_ML_KEM_1024);
        out.extend_from_slice(&self.0[..]);
        out
    }

    /// Encapsulates to this key with 32 bytes `m` drawn from `rng` in one
    /// call: the ciphertext and the shared secret.
    pub fn encapsulate(&self, rng: &mut impl CryptoRngCore) -> (KemCiphertext, SecretKey32) {
        let mut m = Zeroizing::new([0u8; KEM_ENCAPSULATION_RANDOMNESS_LEN]);
        rng.fill_bytes(&mut m[..]);
        self.encapsulate_deterministic(&m)
    }

    /// `ML-KEM.Encaps_internal(ek, m)`: encapsulation with the given
    /// randomness. For test vectors; `m` must be fresh uniform bytes.
    pub fn encapsulate_deterministic(
        &self,
        m: &[u8; KEM_ENCAPSULATION_RANDOMNESS_LEN],
    ) -> (KemCiphertext, SecretKey32) {
        let key = mlkem1024::MlKem1024PublicKey::from(&*self.0);
        let (ciphertext, mut shared) = mlkem1024::encapsulate(&key, *m);
        let secret = SecretKey32::from_bytes(shared);
        shared.zeroize();
        let ciphertext: [u8; KEM_CIPHERTEXT_LEN] = ciphertext.into();
        (KemCiphertext(Box::new(ciphertext)), secret)
    }
}

impl fmt::Debug for KemPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let digest = Sha256::digest(&self.0[..]);
        write!(f, "KemPublicKey(sha256:")?;
        for byte in &digest[..8] {
            write!(f, "{byte:02x}")?;
        }
        write!(f, "..)")
    }
}

/// A KEM prekey as published: its id, the key and the identity's signature
/// over `EncodeKEM(key)`. Bundles carry one; an account hands out batches
/// of them for upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedKemPreKey {
    /// The KEM prekey id (the responder's numbering).
    pub id: u32,
    /// The public key.
    pub key: KemPublicKey,
    /// The identity's Ed25519 signature over `EncodeKEM(key)`.
    pub signature: crate::keys::Signature,
}

/// An ML-KEM-1024 ciphertext: exactly 1568 bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct KemCiphertext(Box<[u8; KEM_CIPHERTEXT_LEN]>);

impl KemCiphertext {
    /// The ciphertext from exactly 1568 bytes ([`KemError::InvalidLength`]
    /// otherwise).
    pub fn try_from_slice(bytes: &[u8]) -> Result<Self, KemError> {
        let array: [u8; KEM_CIPHERTEXT_LEN] =
            bytes.try_into().map_err(|_| KemError::InvalidLength {
                expected: KEM_CIPHERTEXT_LEN,
                actual: bytes.len(),
            })?;
        Ok(Self(Box::new(array)))
    }

    /// The 1568 bytes.
    pub fn as_bytes(&self) -> &[u8; KEM_CIPHERTEXT_LEN] {
        &self.0
    }
}

impl fmt::Debug for KemCiphertext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KemCiphertext({} bytes)", self.0.len())
    }
}

/// An ML-KEM-1024 key pair, kept as its 64-byte seed `d || z` and its
/// public key.
#[derive(Clone)]
pub struct KemKeyPair {
    seed: Zeroizing<[u8; KEM_SEED_LEN]>,
    public: KemPublicKey,
}

impl KemKeyPair {
    /// A fresh key pair from 64 bytes drawn from `rng` in one call.
    pub fn generate(rng: &mut impl CryptoRngCore) -> Self {
        let mut seed = Zeroizing::new([0u8; KEM_SEED_LEN]);
        rng.fill_bytes(&mut seed[..]);
        Self::from_seed(&seed)
    }

    /// `ML-KEM.KeyGen_internal(d, z)` with `seed = d || z`.
    pub fn from_seed(seed: &[u8; KEM_SEED_LEN]) -> Self {
        let pair = mlkem1024::generate_key_pair(*seed);
        let (private, public) = pair.into_parts();
        wipe_private(private);
        let public: [u8; KEM_PUBLIC_KEY_LEN] = public.into();
        Self {
            seed: Zeroizing::new(*seed),
            public: KemPublicKey(Box::new(public)),
        }
    }

    /// The 64-byte seed `d || z`, the only stored form of the private key.
    pub fn seed(&self) -> Zeroizing<[u8; KEM_SEED_LEN]> {
        self.seed.clone()
    }

    /// The public (encapsulation) key.
    pub fn public_key(&self) -> &KemPublicKey {
        &self.public
    }

    /// `ML-KEM.Decaps_internal(dk, c)`. Never fails: a ciphertext that was
    /// not made for this key gives a pseudo-random secret (implicit
    /// rejection), so the caller notices only when the secret's keys fail
    /// to authenticate.
    pub fn decapsulate(&self, ciphertext: &KemCiphertext) -> SecretKey32 {
        let pair = mlkem1024::generate_key_pair(*self.seed);
        let (private, _) = pair.into_parts();
        let ciphertext = mlkem1024::MlKem1024Ciphertext::from(&*ciphertext.0);
        let mut shared = mlkem1024::decapsulate(&private, &ciphertext);
        wipe_private(private);
        let secret = SecretKey32::from_bytes(shared);
        shared.zeroize();
        secret
    }
}

impl PartialEq for KemKeyPair {
    fn eq(&self, other: &Self) -> bool {
        bool::from(self.seed[..].ct_eq(&other.seed[..]))
    }
}

impl Eq for KemKeyPair {}

impl fmt::Debug for KemKeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KemKeyPair")
            .field("public", &self.public)
            .finish_non_exhaustive()
    }
}

/// Takes the expanded decapsulation key by value and wipes the bytes it
/// moves into (the crate's key type does not zeroize itself).
fn wipe_private(private: mlkem1024::MlKem1024PrivateKey) {
    let mut bytes: [u8; 3168] = private.into();
    bytes.zeroize();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(byte: u8) -> KemKeyPair {
        KemKeyPair::from_seed(&[byte; KEM_SEED_LEN])
    }

    #[test]
    fn round_trip_and_sizes() {
        let bob = pair(1);
        let (ct, ss) = bob.public_key().encapsulate_deterministic(&[2; 32]);
        assert_eq!(bob.decapsulate(&ct), ss);
        assert_eq!(bob.public_key().to_encoded().len(), 1569);
        assert_eq!(bob.public_key().to_encoded()[0], 0x0a);
        let back = KemPublicKey::from_encoded(&bob.public_key().to_encoded()).unwrap();
        assert_eq!(&back, bob.public_key());
    }

    #[test]
    fn another_key_or_a_changed_ciphertext_gives_another_secret() {
        let bob = pair(1);
        let (ct, ss) = bob.public_key().encapsulate_deterministic(&[2; 32]);
        assert_ne!(pair(3).decapsulate(&ct), ss);
        let mut bytes = *ct.as_bytes();
        bytes[100] ^= 1;
        let tampered = KemCiphertext::try_from_slice(&bytes).unwrap();
        assert_ne!(bob.decapsulate(&tampered), ss);
    }

    #[test]
    fn decoding_refuses_bad_keys() {
        let encoded = pair(1).public_key().to_encoded();
        assert_eq!(
            KemPublicKey::from_encoded(&encoded[..1568]),
            Err(KemError::InvalidLength {
                expected: 1569,
                actual: 1568
            })
        );
        let mut wrong_type = encoded.clone();
        wrong_type[0] = 0x05;
        assert_eq!(
            KemPublicKey::from_encoded(&wrong_type),
            Err(KemError::InvalidEncoding)
        );
        // First coefficient set to 0xFFF >= q = 3329.
        let mut overflow = encoded.clone();
        overflow[1] = 0xff;
        overflow[2] |= 0x0f;
        assert_eq!(
            KemPublicKey::from_encoded(&overflow),
            Err(KemError::InvalidPublicKey)
        );
        assert_eq!(
            KemCiphertext::try_from_slice(&[0; 1567]),
            Err(KemError::InvalidLength {
                expected: 1568,
                actual: 1567
            })
        );
    }

    #[test]
    fn debug_prints_no_seed() {
        let text = format!("{:?}", pair(0xab));
        assert!(!text.contains("abab"));
    }
}
