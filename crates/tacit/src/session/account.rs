//! A device's account: its identity key pair and the prekeys it publishes.
//!
//! - One **signed prekey** is current; it has an id and a creation time.
//!   [`Account::rotate_signed_prekey`] replaces it and keeps the replaced one
//!   for a grace period, so that prekey messages already in flight (made
//!   from a bundle fetched before the rotation) still open. The core has no
//!   clock: the caller passes the time (any monotonic unit, e.g. seconds
//!   since the Unix epoch) and the grace period in the same unit.
//! - **One-time prekeys** are generated in batches with fresh ids (ids are
//!   never reused). The first prekey message that uses one consumes it; a
//!   second prekey message naming it fails.
//! - The **fallback prekey** (last resort) is offered when no one-time
//!   prekey is left. It is not consumed, so it gives no one-time protection:
//!   a replay of a first message made with it is refused only while the
//!   session it created is still stored. Rotate it regularly; the previous
//!   one is kept until the next rotation.
//!
//! - **KEM prekeys** (profile `tacit-v2`): a signed last-resort KEM prekey,
//!   rotated with a grace period like the signed prekey, and signed
//!   one-time KEM prekeys made in batches, each consumed once. Bundles offer
//!   one, so that initiators start `tacit-v2` sessions. An account read from
//!   a record of before `tacit-v2` has none until
//!   [`Account::enable_post_quantum`].
//!
//! One-time and fallback prekeys share one id space; signed prekeys have
//! their own, and KEM prekeys a third.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use core::fmt;

use rand_core::CryptoRngCore;
use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use super::kem_prekeys::{KemPreKey, KemPreKeyUse, KemPreKeys, KemSectionV2};
use crate::error::{AccountError, StateError};
use crate::kem::SignedKemPreKey;
use crate::keys::{IdentityKeyPair, KeyPair, PublicKey, Signature, KEY_LEN, SIGNATURE_LEN};
use crate::versioned;
use crate::wire::PreKeyBundleMessage;

/// The current account record version (2: with the KEM prekeys of profile
/// `tacit-v2`; version 1 records are still read).
pub const ACCOUNT_VERSION: u8 = 2;
/// The account record version of before profile `tacit-v2`.
const ACCOUNT_VERSION_V1: u8 = 1;
/// The most one-time prekeys an account holds at once.
pub const MAX_ONE_TIME_PREKEYS: usize = 1000;
/// The most retired signed prekeys kept (whatever the grace period).
pub const MAX_RETIRED_SIGNED_PREKEYS: usize = 16;

/// A signed prekey: an X25519 key pair signed by the identity key.
#[derive(Clone)]
pub struct SignedPreKey {
    id: u32,
    key_pair: KeyPair,
    signature: Signature,
    created_at: u64,
    retired_at: Option<u64>,
}

impl SignedPreKey {
    /// Its id, as bundles and prekey messages name it.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// The public key.
    pub fn public_key(&self) -> PublicKey {
        self.key_pair.public_key()
    }

    /// The identity's signature over the public key's encoding.
    pub fn signature(&self) -> Signature {
        self.signature
    }

    /// When it was created (caller's clock).
    pub fn created_at(&self) -> u64 {
        self.created_at
    }

    /// When it was replaced by a newer one, if it was.
    pub fn retired_at(&self) -> Option<u64> {
        self.retired_at
    }

    pub(crate) fn key_pair(&self) -> &KeyPair {
        &self.key_pair
    }
}

impl fmt::Debug for SignedPreKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignedPreKey")
            .field("id", &self.id)
            .field("public_key", &self.key_pair.public_key())
            .field("created_at", &self.created_at)
            .field("retired_at", &self.retired_at)
            .finish_non_exhaustive()
    }
}

/// The fallback (last-resort) prekey: offered in bundles when no one-time
/// prekey is left, and never consumed.
#[derive(Clone)]
pub struct FallbackPreKey {
    id: u32,
    key_pair: KeyPair,
    created_at: u64,
}

impl FallbackPreKey {
    /// Its id (in the one-time prekey id space).
    pub fn id(&self) -> u32 {
        self.id
    }

    /// The public key.
    pub fn public_key(&self) -> PublicKey {
        self.key_pair.public_key()
    }

    /// When it was created (caller's clock).
    pub fn created_at(&self) -> u64 {
        self.created_at
    }
}

impl fmt::Debug for FallbackPreKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FallbackPreKey")
            .field("id", &self.id)
            .field("public_key", &self.key_pair.public_key())
            .field("created_at", &self.created_at)
            .finish_non_exhaustive()
    }
}

/// Which optional prekey a bundle offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum BundlePreKey {
    /// No optional prekey (X3DH without `DH4`).
    None,
    /// This one-time prekey.
    OneTime(u32),
    /// The fallback prekey.
    Fallback,
    /// The one-time prekey with the lowest id, or the fallback prekey when
    /// none is left.
    Auto,
}

/// Which KEM prekey a bundle offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum KemPreKeyChoice {
    /// None: a version-1 bundle (`tacit-v1` sessions only).
    None,
    /// This one-time KEM prekey.
    OneTime(u32),
    /// The current last-resort KEM prekey.
    LastResort,
    /// The one-time KEM prekey with the lowest id, else the last-resort
    /// one; none if the account has no KEM prekeys.
    Auto,
}

/// A prekey that a prekey message may name in its one-time prekey field.
#[derive(Debug, Clone, Copy)]
pub(crate) enum OptionalPreKey<'a> {
    /// A one-time prekey: consumed on success.
    OneTime(&'a KeyPair),
    /// A fallback prekey: kept.
    Fallback(&'a KeyPair),
}

/// A device's identity key pair and prekeys. See the module documentation.
#[derive(Clone)]
pub struct Account {
    identity: IdentityKeyPair,
    signed_prekey: SignedPreKey,
    /// Replaced signed prekeys within their grace period, oldest first.
    retired_signed_prekeys: Vec<SignedPreKey>,
    one_time_prekeys: BTreeMap<u32, KeyPair>,
    fallback_prekey: FallbackPreKey,
    previous_fallback_prekey: Option<FallbackPreKey>,
    next_signed_prekey_id: u32,
    next_prekey_id: u32,
    /// The KEM prekeys; `None` for an account from before `tacit-v2`.
    kem: Option<KemPreKeys>,
}

impl Account {
    /// A new account: a fresh identity, a signed prekey (id 1), a
    /// fallback prekey (id 1) and a last-resort KEM prekey (id 1), created
    /// at `now`. It holds no one-time prekeys yet: see
    /// [`generate_one_time_prekeys`](Self::generate_one_time_prekeys) and
    /// [`generate_one_time_kem_prekeys`](Self::generate_one_time_kem_prekeys).
    pub fn generate(now: u64, rng: &mut impl CryptoRngCore) -> Self {
        Self::from_identity(IdentityKeyPair::generate(rng), now, rng)
    }

    /// A new account around an existing identity.
    pub fn from_identity(
        identity: IdentityKeyPair,
        now: u64,
        rng: &mut impl CryptoRngCore,
    ) -> Self {
        let key_pair = KeyPair::generate(rng);
        let signature = identity.sign_prekey(&key_pair.public_key());
        let fallback = KeyPair::generate(rng);
        let kem = KemPreKeys::generate(&identity, now, rng);
        Self {
            identity,
            signed_prekey: SignedPreKey {
                id: 1,
                key_pair,
                signature,
                created_at: now,
                retired_at: None,
            },
            retired_signed_prekeys: Vec::new(),
            one_time_prekeys: BTreeMap::new(),
            fallback_prekey: FallbackPreKey {
                id: 1,
                key_pair: fallback,
                created_at: now,
            },
            previous_fallback_prekey: None,
            next_signed_prekey_id: 2,
            next_prekey_id: 2,
            kem: Some(kem),
        }
    }

    /// The identity key pair.
    pub fn identity(&self) -> &IdentityKeyPair {
        &self.identity
    }

    /// The current signed prekey.
    pub fn signed_prekey(&self) -> &SignedPreKey {
        &self.signed_prekey
    }

    /// Replaced signed prekeys still within their grace period, oldest
    /// first.
    pub fn retired_signed_prekeys(&self) -> &[SignedPreKey] {
        &self.retired_signed_prekeys
    }

    /// The signed prekey with this id: the current one or a retired one
    /// still kept.
    pub fn signed_prekey_by_id(&self, id: u32) -> Option<&SignedPreKey> {
        core::iter::once(&self.signed_prekey)
            .chain(self.retired_signed_prekeys.iter())
            .find(|spk| spk.id == id)
    }

    /// Replaces the signed prekey with a new one created at `now`. The
    /// replaced one is kept until `now' >= retired_at + grace` at a later
    /// rotation or [`prune_signed_prekeys`](Self::prune_signed_prekeys)
    /// (and at most [`MAX_RETIRED_SIGNED_PREKEYS`] are kept). Returns the new
    /// signed prekey.
    pub fn rotate_signed_prekey(
        &mut self,
        now: u64,
        grace: u64,
        rng: &mut impl CryptoRngCore,
    ) -> Result<&SignedPreKey, AccountError> {
        let id = self.next_signed_prekey_id;
        let next = id.checked_add(1).ok_or(AccountError::IdsExhausted)?;
        let key_pair = KeyPair::generate(rng);
        let signature = self.identity.sign_prekey(&key_pair.public_key());
        let mut old = core::mem::replace(
            &mut self.signed_prekey,
            SignedPreKey {
                id,
                key_pair,
                signature,
                created_at: now,
                retired_at: None,
            },
        );
        old.retired_at = Some(now);
        self.retired_signed_prekeys.push(old);
        self.next_signed_prekey_id = next;
        self.prune_signed_prekeys(now, grace);
        Ok(&self.signed_prekey)
    }

    /// Drops the retired signed prekeys whose grace period is over at `now`
    /// (`retired_at + grace <= now`), and the oldest beyond
    /// [`MAX_RETIRED_SIGNED_PREKEYS`]. Returns how many were dropped.
    pub fn prune_signed_prekeys(&mut self, now: u64, grace: u64) -> usize {
        let before = self.retired_signed_prekeys.len();
        self.retired_signed_prekeys.retain(|spk| {
            spk.retired_at
                .is_some_and(|t| t.saturating_add(grace) > now)
        });
        let excess = self
            .retired_signed_prekeys
            .len()
            .saturating_sub(MAX_RETIRED_SIGNED_PREKEYS);
        self.retired_signed_prekeys.drain(..excess);
        before - self.retired_signed_prekeys.len()
    }

    /// Generates `count` one-time prekeys with fresh ids and returns their
    /// ids and public keys, for publication. Refuses (changing nothing) if
    /// the account would hold more than [`MAX_ONE_TIME_PREKEYS`].
    pub fn generate_one_time_prekeys(
        &mut self,
        count: usize,
        rng: &mut impl CryptoRngCore,
    ) -> Result<Vec<(u32, PublicKey)>, AccountError> {
        let too_many = AccountError::TooManyOneTimePreKeys {
            requested: count,
            max: MAX_ONE_TIME_PREKEYS,
        };
        if self.one_time_prekeys.len().saturating_add(count) > MAX_ONE_TIME_PREKEYS {
            return Err(too_many);
        }
        let count32 = u32::try_from(count).map_err(|_| too_many)?;
        let end = self
            .next_prekey_id
            .checked_add(count32)
            .ok_or(AccountError::IdsExhausted)?;
        let mut out = Vec::with_capacity(count);
        for id in self.next_prekey_id..end {
            let pair = KeyPair::generate(rng);
            out.push((id, pair.public_key()));
            self.one_time_prekeys.insert(id, pair);
        }
        self.next_prekey_id = end;
        Ok(out)
    }

    /// The unused one-time prekeys' ids and public keys, by id.
    pub fn one_time_prekeys(&self) -> Vec<(u32, PublicKey)> {
        self.one_time_prekeys
            .iter()
            .map(|(id, pair)| (*id, pair.public_key()))
            .collect()
    }

    /// How many one-time prekeys are left.
    pub fn one_time_prekey_count(&self) -> usize {
        self.one_time_prekeys.len()
    }

    /// Whether the one-time prekey `id` is still unused.
    pub fn has_one_time_prekey(&self, id: u32) -> bool {
        self.one_time_prekeys.contains_key(&id)
    }

    /// The current fallback prekey.
    pub fn fallback_prekey(&self) -> &FallbackPreKey {
        &self.fallback_prekey
    }

    /// The fallback prekey that the current one replaced, kept until the
    /// next rotation.
    pub fn previous_fallback_prekey(&self) -> Option<&FallbackPreKey> {
        self.previous_fallback_prekey.as_ref()
    }

    /// Replaces the fallback prekey with a new one (fresh id, created at
    /// `now`), keeping the current one as the previous one and dropping the
    /// one before. Returns the new fallback prekey.
    pub fn rotate_fallback_prekey(
        &mut self,
        now: u64,
        rng: &mut impl CryptoRngCore,
    ) -> Result<&FallbackPreKey, AccountError> {
        let id = self.next_prekey_id;
        let next = id.checked_add(1).ok_or(AccountError::IdsExhausted)?;
        let old = core::mem::replace(
            &mut self.fallback_prekey,
            FallbackPreKey {
                id,
                key_pair: KeyPair::generate(rng),
                created_at: now,
            },
        );
        self.previous_fallback_prekey = Some(old);
        self.next_prekey_id = next;
        Ok(&self.fallback_prekey)
    }

    /// A bundle for publication: the identity key, the current signed
    /// prekey with its id and signature, the optional prekey chosen by
    /// `prekey`, and a KEM prekey if the account has any
    /// ([`KemPreKeyChoice::Auto`]: the one-time KEM prekey with the lowest
    /// id, else the last-resort one).
    pub fn bundle(&self, prekey: BundlePreKey) -> Result<PreKeyBundleMessage, AccountError> {
        self.bundle_with(prekey, KemPreKeyChoice::Auto)
    }

    /// A bundle with the optional prekey and the KEM prekey chosen.
    pub fn bundle_with(
        &self,
        prekey: BundlePreKey,
        kem: KemPreKeyChoice,
    ) -> Result<PreKeyBundleMessage, AccountError> {
        let kem_prekey = self.kem_offer(kem)?;
        let one_time_prekey = match prekey {
            BundlePreKey::None => None,
            BundlePreKey::OneTime(id) => {
                let pair = self
                    .one_time_prekeys
                    .get(&id)
                    .ok_or(AccountError::UnknownOneTimePreKey(id))?;
                Some((id, pair.public_key()))
            }
            BundlePreKey::Fallback => Some(self.fallback_entry()),
            BundlePreKey::Auto => Some(
                self.one_time_prekeys
                    .iter()
                    .next()
                    .map(|(id, pair)| (*id, pair.public_key()))
                    .unwrap_or_else(|| self.fallback_entry()),
            ),
        };
        Ok(PreKeyBundleMessage {
            identity_key: self.identity.public_key(),
            signed_prekey_id: self.signed_prekey.id,
            signed_prekey: self.signed_prekey.public_key(),
            signed_prekey_signature: self.signed_prekey.signature,
            one_time_prekey,
            kem_prekey,
        })
    }

    fn kem_offer(&self, choice: KemPreKeyChoice) -> Result<Option<SignedKemPreKey>, AccountError> {
        let keys = match (choice, &self.kem) {
            (KemPreKeyChoice::None, _) | (KemPreKeyChoice::Auto, None) => return Ok(None),
            (_, None) => return Err(AccountError::NoKemPreKey),
            (_, Some(keys)) => keys,
        };
        let key = match choice {
            KemPreKeyChoice::OneTime(id) => keys
                .one_time
                .get(&id)
                .ok_or(AccountError::UnknownKemPreKey(id))?,
            KemPreKeyChoice::Auto => keys.one_time.values().next().unwrap_or(&keys.last_resort),
            _ => &keys.last_resort,
        };
        Ok(Some(key.signed()))
    }

    /// Whether the account has KEM prekeys (and so publishes version-2
    /// bundles and, by default, refuses classical first messages).
    pub fn has_kem_prekeys(&self) -> bool {
        self.kem.is_some()
    }

    /// Gives an account from before profile `tacit-v2` its last-resort KEM
    /// prekey (id 1), created at `now`; refuses with
    /// [`AccountError::PostQuantumEnabled`] if it has KEM prekeys.
    pub fn enable_post_quantum(
        &mut self,
        now: u64,
        rng: &mut impl CryptoRngCore,
    ) -> Result<&KemPreKey, AccountError> {
        if self.kem.is_some() {
            return Err(AccountError::PostQuantumEnabled);
        }
        let keys = self
            .kem
            .insert(KemPreKeys::generate(&self.identity, now, rng));
        Ok(&keys.last_resort)
    }

    /// The current last-resort KEM prekey, if the account has KEM prekeys.
    pub fn kem_last_resort_prekey(&self) -> Option<&KemPreKey> {
        self.kem.as_ref().map(|k| &k.last_resort)
    }

    /// Replaced last-resort KEM prekeys still within their grace period,
    /// oldest first.
    pub fn retired_kem_prekeys(&self) -> &[KemPreKey] {
        self.kem.as_ref().map_or(&[], |k| &k.retired[..])
    }

    /// Replaces the last-resort KEM prekey with a new one created at `now`,
    /// keeping the replaced one for `grace` as
    /// [`rotate_signed_prekey`](Self::rotate_signed_prekey) does. Returns
    /// the new key.
    pub fn rotate_kem_last_resort_prekey(
        &mut self,
        now: u64,
        grace: u64,
        rng: &mut impl CryptoRngCore,
    ) -> Result<&KemPreKey, AccountError> {
        let keys = self.kem.as_mut().ok_or(AccountError::NoKemPreKey)?;
        keys.rotate_last_resort(&self.identity, now, grace, rng)?;
        Ok(&keys.last_resort)
    }

    /// Drops the retired last-resort KEM prekeys whose grace period is over
    /// at `now`; returns how many were dropped.
    pub fn prune_kem_prekeys(&mut self, now: u64, grace: u64) -> usize {
        self.kem.as_mut().map_or(0, |k| k.prune(now, grace))
    }

    /// Generates `count` signed one-time KEM prekeys with fresh ids and
    /// returns them (id, key, signature) for upload. Refuses, changing
    /// nothing, without KEM prekeys or beyond
    /// [`MAX_ONE_TIME_KEM_PREKEYS`](super::MAX_ONE_TIME_KEM_PREKEYS).
    pub fn generate_one_time_kem_prekeys(
        &mut self,
        count: usize,
        rng: &mut impl CryptoRngCore,
    ) -> Result<Vec<SignedKemPreKey>, AccountError> {
        let keys = self.kem.as_mut().ok_or(AccountError::NoKemPreKey)?;
        keys.generate_one_time(&self.identity, count, rng)
    }

    /// The unused one-time KEM prekeys, by id, for publication.
    pub fn one_time_kem_prekeys(&self) -> Vec<SignedKemPreKey> {
        self.kem
            .as_ref()
            .map(|k| k.one_time.values().map(KemPreKey::signed).collect())
            .unwrap_or_default()
    }

    /// How many one-time KEM prekeys are left.
    pub fn one_time_kem_prekey_count(&self) -> usize {
        self.kem.as_ref().map_or(0, |k| k.one_time.len())
    }

    /// Whether the one-time KEM prekey `id` is still unused.
    pub fn has_one_time_kem_prekey(&self, id: u32) -> bool {
        self.kem
            .as_ref()
            .is_some_and(|k| k.one_time.contains_key(&id))
    }

    /// The one-time or last-resort KEM prekey with this id.
    pub(crate) fn kem_prekey(&self, id: u32) -> Option<KemPreKeyUse<'_>> {
        self.kem.as_ref().and_then(|k| k.by_id(id))
    }

    /// Consumes a one-time KEM prekey.
    pub(crate) fn remove_one_time_kem_prekey(&mut self, id: u32) -> Result<(), AccountError> {
        self.kem
            .as_mut()
            .and_then(|k| k.one_time.remove(&id))
            .map(|_| ())
            .ok_or(AccountError::UnknownKemPreKey(id))
    }

    fn fallback_entry(&self) -> (u32, PublicKey) {
        (self.fallback_prekey.id, self.fallback_prekey.public_key())
    }

    /// The one-time or fallback prekey with this id.
    pub(crate) fn optional_prekey(&self, id: u32) -> Option<OptionalPreKey<'_>> {
        if let Some(pair) = self.one_time_prekeys.get(&id) {
            return Some(OptionalPreKey::OneTime(pair));
        }
        core::iter::once(&self.fallback_prekey)
            .chain(self.previous_fallback_prekey.as_ref())
            .find(|f| f.id == id)
            .map(|f| OptionalPreKey::Fallback(&f.key_pair))
    }

    /// Consumes a one-time prekey.
    pub(crate) fn remove_one_time_prekey(&mut self, id: u32) -> Result<(), AccountError> {
        self.one_time_prekeys
            .remove(&id)
            .map(|_| ())
            .ok_or(AccountError::UnknownOneTimePreKey(id))
    }
}

impl fmt::Debug for Account {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Account")
            .field("identity", &self.identity.public_key())
            .field("signed_prekey", &self.signed_prekey)
            .field("retired_signed_prekeys", &self.retired_signed_prekeys.len())
            .field("one_time_prekeys", &self.one_time_prekeys.len())
            .field("fallback_prekey", &self.fallback_prekey)
            .field("kem_last_resort_prekey", &self.kem_last_resort_prekey())
            .field("one_time_kem_prekeys", &self.one_time_kem_prekey_count())
            .finish_non_exhaustive()
    }
}

// Serialization: one version byte, then the postcard encoding of
// `AccountV1`. Reading checks the version, that nothing trails, that ids
// are unique and below the next ids, and every signed prekey's signature.

#[derive(Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
struct AccountV1 {
    identity_seed: [u8; KEY_LEN],
    signed_prekey: SignedPreKeyV1,
    retired_signed_prekeys: Vec<SignedPreKeyV1>,
    one_time_prekeys: Vec<PreKeyV1>,
    fallback_prekey: FallbackV1,
    previous_fallback_prekey: Option<FallbackV1>,
    next_signed_prekey_id: u32,
    next_prekey_id: u32,
}

#[derive(Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
struct SignedPreKeyV1 {
    id: u32,
    private_key: [u8; KEY_LEN],
    #[serde(with = "signature_bytes")]
    signature: [u8; SIGNATURE_LEN],
    created_at: u64,
    retired_at: Option<u64>,
}

#[derive(Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
struct PreKeyV1 {
    id: u32,
    private_key: [u8; KEY_LEN],
}

#[derive(Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
struct FallbackV1 {
    id: u32,
    private_key: [u8; KEY_LEN],
    created_at: u64,
}

/// Version 2: version 1's fields, then the KEM prekeys.
#[derive(Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
struct AccountV2 {
    base: AccountV1,
    kem: Option<KemSectionV2>,
}

/// serde has no impls for 64-byte arrays: write them as a tuple of two
/// 32-byte halves (a fixed length, no length prefix).
pub(super) mod signature_bytes {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub(crate) fn serialize<S: Serializer>(bytes: &[u8; 64], s: S) -> Result<S::Ok, S::Error> {
        let mut lo = [0u8; 32];
        let mut hi = [0u8; 32];
        lo.copy_from_slice(&bytes[..32]);
        hi.copy_from_slice(&bytes[32..]);
        (lo, hi).serialize(s)
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 64], D::Error> {
        let (lo, hi) = <([u8; 32], [u8; 32])>::deserialize(d)?;
        let mut out = [0u8; 64];
        out[..32].copy_from_slice(&lo);
        out[32..].copy_from_slice(&hi);
        Ok(out)
    }
}

impl SignedPreKeyV1 {
    fn from_key(spk: &SignedPreKey) -> Self {
        Self {
            id: spk.id,
            private_key: *spk.key_pair.private_bytes().as_bytes(),
            signature: spk.signature.to_bytes(),
            created_at: spk.created_at,
            retired_at: spk.retired_at,
        }
    }

    fn to_key(&self, identity: &IdentityKeyPair) -> Result<SignedPreKey, StateError> {
        let key_pair = KeyPair::from_private_bytes(self.private_key);
        let signature = Signature::from_bytes(self.signature);
        identity
            .public_key()
            .verify_signed_prekey(&key_pair.public_key(), &signature)
            .map_err(|_| StateError::Corrupt)?;
        Ok(SignedPreKey {
            id: self.id,
            key_pair,
            signature,
            created_at: self.created_at,
            retired_at: self.retired_at,
        })
    }
}

impl FallbackV1 {
    fn from_key(f: &FallbackPreKey) -> Self {
        Self {
            id: f.id,
            private_key: *f.key_pair.private_bytes().as_bytes(),
            created_at: f.created_at,
        }
    }

    fn to_key(&self) -> FallbackPreKey {
        FallbackPreKey {
            id: self.id,
            key_pair: KeyPair::from_private_bytes(self.private_key),
            created_at: self.created_at,
        }
    }
}

impl Account {
    /// Serializes the account: one version byte, then the postcard encoding
    /// of the state. The bytes hold every private key of the device; they
    /// are zeroized when dropped and must be stored encrypted.
    pub fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        let record = AccountV2 {
            base: self.record_v1(),
            kem: self.kem.as_ref().map(KemSectionV2::from_keys),
        };
        versioned::encode(ACCOUNT_VERSION, &record)
    }

    fn record_v1(&self) -> AccountV1 {
        AccountV1 {
            identity_seed: *self.identity.seed().as_bytes(),
            signed_prekey: SignedPreKeyV1::from_key(&self.signed_prekey),
            retired_signed_prekeys: self
                .retired_signed_prekeys
                .iter()
                .map(SignedPreKeyV1::from_key)
                .collect(),
            one_time_prekeys: self
                .one_time_prekeys
                .iter()
                .map(|(id, pair)| PreKeyV1 {
                    id: *id,
                    private_key: *pair.private_bytes().as_bytes(),
                })
                .collect(),
            fallback_prekey: FallbackV1::from_key(&self.fallback_prekey),
            previous_fallback_prekey: self
                .previous_fallback_prekey
                .as_ref()
                .map(FallbackV1::from_key),
            next_signed_prekey_id: self.next_signed_prekey_id,
            next_prekey_id: self.next_prekey_id,
        }
    }

    /// Reads an account written by [`to_bytes`](Self::to_bytes), strictly:
    /// a known version, no trailing bytes, ids unique and in order, ids
    /// below the next ids to issue, one-time prekeys within the cap, valid
    /// signatures on the signed prekeys, and the canonical encoding (what
    /// `to_bytes` writes back byte for byte).
    ///
    /// Reads version 2 and version 1 (an account without KEM prekeys);
    /// writes version 2.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, StateError> {
        // Only the canonical encoding is accepted: postcard reads
        // non-minimal varints (ids, lengths, times), which would not be
        // written back byte for byte.
        if bytes.first() == Some(&ACCOUNT_VERSION_V1) {
            let record: AccountV1 = versioned::decode(ACCOUNT_VERSION_V1, bytes)?;
            let account = record.to_account()?;
            let again = versioned::encode(ACCOUNT_VERSION_V1, &account.record_v1());
            versioned::ensure_canonical(&again, bytes)?;
            return Ok(account);
        }
        let record: AccountV2 = versioned::decode(ACCOUNT_VERSION, bytes)?;
        let mut account = record.base.to_account()?;
        account.kem = match &record.kem {
            Some(section) => Some(section.to_keys(&account.identity)?),
            None => None,
        };
        versioned::ensure_canonical(&account.to_bytes(), bytes)?;
        Ok(account)
    }
}

impl AccountV1 {
    fn to_account(&self) -> Result<Account, StateError> {
        let identity = IdentityKeyPair::from_seed(&self.identity_seed);
        let signed_prekey = self.signed_prekey.to_key(&identity)?;
        let retired = self
            .retired_signed_prekeys
            .iter()
            .map(|spk| spk.to_key(&identity))
            .collect::<Result<Vec<_>, _>>()?;
        let mut one_time_prekeys = BTreeMap::new();
        let mut last_id = None;
        for pk in &self.one_time_prekeys {
            if last_id.is_some_and(|last| pk.id <= last) {
                return Err(StateError::Corrupt);
            }
            last_id = Some(pk.id);
            one_time_prekeys.insert(pk.id, KeyPair::from_private_bytes(pk.private_key));
        }
        let fallback_prekey = self.fallback_prekey.to_key();
        let previous_fallback_prekey = self
            .previous_fallback_prekey
            .as_ref()
            .map(FallbackV1::to_key);

        let signed_ids: Vec<u32> = core::iter::once(signed_prekey.id)
            .chain(retired.iter().map(|s| s.id))
            .collect();
        let prekey_ids: Vec<u32> = one_time_prekeys
            .keys()
            .copied()
            .chain(core::iter::once(fallback_prekey.id))
            .chain(previous_fallback_prekey.as_ref().map(|f| f.id))
            .collect();
        let invariants = [
            signed_prekey.retired_at.is_none(),
            retired.iter().all(|s| s.retired_at.is_some()),
            retired.len() <= MAX_RETIRED_SIGNED_PREKEYS,
            all_distinct(&signed_ids),
            signed_ids.iter().all(|id| *id < self.next_signed_prekey_id),
            one_time_prekeys.len() <= MAX_ONE_TIME_PREKEYS,
            all_distinct(&prekey_ids),
            prekey_ids.iter().all(|id| *id < self.next_prekey_id),
        ];
        if invariants.contains(&false) {
            return Err(StateError::Corrupt);
        }
        Ok(Account {
            identity,
            signed_prekey,
            retired_signed_prekeys: retired,
            one_time_prekeys,
            fallback_prekey,
            previous_fallback_prekey,
            next_signed_prekey_id: self.next_signed_prekey_id,
            next_prekey_id: self.next_prekey_id,
            kem: None,
        })
    }
}

fn all_distinct(ids: &[u32]) -> bool {
    ids.iter().enumerate().all(|(i, id)| !ids[..i].contains(id))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::rand_core::SeedableRng;
    use rand_chacha::ChaCha20Rng;

    fn rng() -> ChaCha20Rng {
        ChaCha20Rng::seed_from_u64(7)
    }

    #[test]
    fn round_trip_is_exact() {
        let mut rng = rng();
        let mut account = Account::generate(100, &mut rng);
        account.generate_one_time_prekeys(5, &mut rng).unwrap();
        account.rotate_signed_prekey(200, 1000, &mut rng).unwrap();
        account.rotate_fallback_prekey(200, &mut rng).unwrap();
        account.remove_one_time_prekey(3).unwrap();
        let bytes = account.to_bytes();
        let back = Account::from_bytes(&bytes).unwrap();
        assert_eq!(*back.to_bytes(), *bytes);
        assert_eq!(back.one_time_prekey_count(), 4);
        assert!(back.signed_prekey_by_id(1).is_some());
        assert_eq!(back.signed_prekey().id(), 2);
    }

    /// Found by fuzzing (`session_record`): postcard reads a non-minimal
    /// varint, so an account with an id written in two bytes instead of one
    /// decoded, and was not written back the same.
    #[test]
    fn non_minimal_varints_are_refused() {
        let account = Account::generate(100, &mut rng());
        let bytes = account.to_bytes();
        // The encoding ends with next_signed_prekey_id and next_prekey_id,
        // both small varints; widen the last one to two bytes.
        let last = *bytes.last().unwrap();
        assert!(last < 0x80);
        let mut widened = bytes[..bytes.len() - 1].to_vec();
        widened.extend_from_slice(&[last | 0x80, 0x00]);
        assert_eq!(
            Account::from_bytes(&widened).err(),
            Some(StateError::Corrupt)
        );
        assert!(Account::from_bytes(&bytes).is_ok());
    }

    #[test]
    fn decoding_is_strict() {
        let mut rng = rng();
        let account = Account::generate(1, &mut rng);
        let bytes = account.to_bytes();
        assert_eq!(Account::from_bytes(&[]).err(), Some(StateError::Empty));
        let mut v3 = bytes.to_vec();
        v3[0] = 3;
        assert_eq!(
            Account::from_bytes(&v3).err(),
            Some(StateError::UnknownVersion(3))
        );
        let mut trailing = bytes.to_vec();
        trailing.push(0);
        assert_eq!(
            Account::from_bytes(&trailing).err(),
            Some(StateError::Corrupt)
        );
        assert_eq!(
            Account::from_bytes(&bytes[..bytes.len() - 1]).err(),
            Some(StateError::Corrupt)
        );
        // Flip a byte of the signature: refused.
        let mut bad_sig = bytes.to_vec();
        let sig_at = 1 + 32 + 1 + 32 + 5; // version, seed, id, private key, inside the signature
        bad_sig[sig_at] ^= 1;
        assert_eq!(
            Account::from_bytes(&bad_sig).err(),
            Some(StateError::Corrupt)
        );
    }

    #[test]
    fn ids_are_fresh_and_one_time_prekeys_capped() {
        let mut rng = rng();
        let mut account = Account::generate(1, &mut rng);
        let a = account.generate_one_time_prekeys(3, &mut rng).unwrap();
        let b = account.generate_one_time_prekeys(3, &mut rng).unwrap();
        let ids: Vec<u32> = a.iter().chain(b.iter()).map(|(id, _)| *id).collect();
        assert_eq!(ids, [2, 3, 4, 5, 6, 7]);
        let before = account.to_bytes();
        assert_eq!(
            account.generate_one_time_prekeys(MAX_ONE_TIME_PREKEYS, &mut rng),
            Err(AccountError::TooManyOneTimePreKeys {
                requested: MAX_ONE_TIME_PREKEYS,
                max: MAX_ONE_TIME_PREKEYS
            })
        );
        assert_eq!(*account.to_bytes(), *before);
    }

    #[test]
    fn rotation_keeps_previous_for_grace_period() {
        let mut rng = rng();
        let mut account = Account::generate(0, &mut rng);
        account.rotate_signed_prekey(100, 50, &mut rng).unwrap();
        assert!(account.signed_prekey_by_id(1).is_some());
        assert_eq!(account.prune_signed_prekeys(149, 50), 0);
        assert_eq!(account.prune_signed_prekeys(150, 50), 1);
        assert!(account.signed_prekey_by_id(1).is_none());
        assert!(account.signed_prekey_by_id(2).is_some());
    }

    #[test]
    fn bundles_offer_the_chosen_prekey() {
        let mut rng = rng();
        let mut account = Account::generate(0, &mut rng);
        let auto = account.bundle(BundlePreKey::Auto).unwrap();
        assert_eq!(auto.one_time_prekey.map(|(id, _)| id), Some(1)); // fallback
        let keys = account.generate_one_time_prekeys(2, &mut rng).unwrap();
        let auto = account.bundle(BundlePreKey::Auto).unwrap();
        assert_eq!(auto.one_time_prekey, Some(keys[0]));
        assert_eq!(
            account.bundle(BundlePreKey::None).unwrap().one_time_prekey,
            None
        );
        assert_eq!(
            account.bundle(BundlePreKey::OneTime(99)),
            Err(AccountError::UnknownOneTimePreKey(99))
        );
        assert!(auto
            .identity_key
            .verify_signed_prekey(&auto.signed_prekey, &auto.signed_prekey_signature)
            .is_ok());
    }

    #[test]
    fn debug_prints_no_secret() {
        let mut rng = rng();
        let account = Account::generate(0, &mut rng);
        let seed = hex::encode(account.identity().seed().as_bytes());
        let text = format!("{account:?}");
        assert!(!text.contains(&seed[..16]));
    }
}
