//! An account's KEM prekeys (profile `tacit-v2`, `docs/PROTOCOL.md` 15.9):
//! the signed last-resort KEM prekey (rotated with a grace period, like the
//! signed prekey) and the signed one-time KEM prekeys (made in batches,
//! each consumed once). They have their own id space, from 1.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use core::fmt;

use rand_core::CryptoRngCore;
use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, ZeroizeOnDrop};

use super::account::signature_bytes;
use crate::error::{AccountError, StateError};
use crate::kem::{KemKeyPair, KemPublicKey, SignedKemPreKey, KEM_SEED_LEN};
use crate::keys::{IdentityKeyPair, Signature, SIGNATURE_LEN};

/// The most one-time KEM prekeys an account holds at once.
pub const MAX_ONE_TIME_KEM_PREKEYS: usize = 200;
/// The most retired last-resort KEM prekeys kept (whatever the grace period).
pub const MAX_RETIRED_KEM_PREKEYS: usize = 16;

/// A signed KEM prekey held by the account: its key pair (kept as a seed),
/// signature and, for last-resort keys, its creation and retirement times.
#[derive(Clone)]
pub struct KemPreKey {
    id: u32,
    key_pair: KemKeyPair,
    signature: Signature,
    created_at: u64,
    retired_at: Option<u64>,
}

impl KemPreKey {
    fn new(identity: &IdentityKeyPair, id: u32, key_pair: KemKeyPair, created_at: u64) -> Self {
        let signature = identity.sign_kem_prekey(key_pair.public_key());
        Self {
            id,
            key_pair,
            signature,
            created_at,
            retired_at: None,
        }
    }

    /// Its id, as bundles and prekey messages name it.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// The public key.
    pub fn public_key(&self) -> &KemPublicKey {
        self.key_pair.public_key()
    }

    /// The identity's signature over `EncodeKEM(public key)`.
    pub fn signature(&self) -> Signature {
        self.signature
    }

    /// When it was created (caller's clock; 0 for one-time keys).
    pub fn created_at(&self) -> u64 {
        self.created_at
    }

    /// When it was replaced by a newer last-resort key, if it was.
    pub fn retired_at(&self) -> Option<u64> {
        self.retired_at
    }

    /// Id, public key and signature, for publication.
    pub fn signed(&self) -> SignedKemPreKey {
        SignedKemPreKey {
            id: self.id,
            key: self.key_pair.public_key().clone(),
            signature: self.signature,
        }
    }
}

impl fmt::Debug for KemPreKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KemPreKey")
            .field("id", &self.id)
            .field("public_key", self.key_pair.public_key())
            .field("created_at", &self.created_at)
            .field("retired_at", &self.retired_at)
            .finish_non_exhaustive()
    }
}

/// A KEM prekey that a prekey message may name.
#[derive(Debug, Clone, Copy)]
pub(crate) enum KemPreKeyUse<'a> {
    /// A one-time KEM prekey: consumed on success.
    OneTime(&'a KemKeyPair),
    /// The current or a retired last-resort KEM prekey: kept.
    LastResort(&'a KemKeyPair),
}

impl<'a> KemPreKeyUse<'a> {
    pub(crate) fn key_pair(self) -> &'a KemKeyPair {
        match self {
            Self::OneTime(pair) | Self::LastResort(pair) => pair,
        }
    }
}

/// All KEM prekeys of an account.
#[derive(Clone)]
pub(crate) struct KemPreKeys {
    pub(crate) last_resort: KemPreKey,
    /// Replaced last-resort keys within their grace period, oldest first.
    pub(crate) retired: Vec<KemPreKey>,
    pub(crate) one_time: BTreeMap<u32, KemPreKey>,
    pub(crate) next_id: u32,
}

impl KemPreKeys {
    /// Last-resort KEM prekey 1, created at `now` (64 bytes from `rng`).
    pub(crate) fn generate(
        identity: &IdentityKeyPair,
        now: u64,
        rng: &mut impl CryptoRngCore,
    ) -> Self {
        Self {
            last_resort: KemPreKey::new(identity, 1, KemKeyPair::generate(rng), now),
            retired: Vec::new(),
            one_time: BTreeMap::new(),
            next_id: 2,
        }
    }

    /// The one-time key, or the current or a retired last-resort key, with
    /// this id.
    pub(crate) fn by_id(&self, id: u32) -> Option<KemPreKeyUse<'_>> {
        if let Some(key) = self.one_time.get(&id) {
            return Some(KemPreKeyUse::OneTime(&key.key_pair));
        }
        core::iter::once(&self.last_resort)
            .chain(self.retired.iter())
            .find(|k| k.id == id)
            .map(|k| KemPreKeyUse::LastResort(&k.key_pair))
    }

    pub(crate) fn generate_one_time(
        &mut self,
        identity: &IdentityKeyPair,
        count: usize,
        rng: &mut impl CryptoRngCore,
    ) -> Result<Vec<SignedKemPreKey>, AccountError> {
        let too_many = AccountError::TooManyOneTimeKemPreKeys {
            requested: count,
            max: MAX_ONE_TIME_KEM_PREKEYS,
        };
        if self.one_time.len().saturating_add(count) > MAX_ONE_TIME_KEM_PREKEYS {
            return Err(too_many);
        }
        let count32 = u32::try_from(count).map_err(|_| too_many)?;
        let end = self
            .next_id
            .checked_add(count32)
            .ok_or(AccountError::IdsExhausted)?;
        let mut out = Vec::with_capacity(count);
        for id in self.next_id..end {
            let key = KemPreKey::new(identity, id, KemKeyPair::generate(rng), 0);
            out.push(key.signed());
            self.one_time.insert(id, key);
        }
        self.next_id = end;
        Ok(out)
    }

    pub(crate) fn rotate_last_resort(
        &mut self,
        identity: &IdentityKeyPair,
        now: u64,
        grace: u64,
        rng: &mut impl CryptoRngCore,
    ) -> Result<(), AccountError> {
        let id = self.next_id;
        let next = id.checked_add(1).ok_or(AccountError::IdsExhausted)?;
        let new = KemPreKey::new(identity, id, KemKeyPair::generate(rng), now);
        let mut old = core::mem::replace(&mut self.last_resort, new);
        old.retired_at = Some(now);
        self.retired.push(old);
        self.next_id = next;
        self.prune(now, grace);
        Ok(())
    }

    pub(crate) fn prune(&mut self, now: u64, grace: u64) -> usize {
        let before = self.retired.len();
        self.retired
            .retain(|k| k.retired_at.is_some_and(|t| t.saturating_add(grace) > now));
        let excess = self.retired.len().saturating_sub(MAX_RETIRED_KEM_PREKEYS);
        self.retired.drain(..excess);
        before - self.retired.len()
    }
}

// Serialization (inside the account record, version 2).

#[derive(Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
pub(crate) struct KemSectionV2 {
    last_resort: KemPreKeyV2,
    retired: Vec<KemPreKeyV2>,
    one_time: Vec<OneTimeKemPreKeyV2>,
    next_id: u32,
}

#[derive(Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
struct KemPreKeyV2 {
    id: u32,
    #[serde(with = "signature_bytes")]
    seed: [u8; KEM_SEED_LEN],
    #[serde(with = "signature_bytes")]
    signature: [u8; SIGNATURE_LEN],
    created_at: u64,
    retired_at: Option<u64>,
}

#[derive(Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
struct OneTimeKemPreKeyV2 {
    id: u32,
    #[serde(with = "signature_bytes")]
    seed: [u8; KEM_SEED_LEN],
    #[serde(with = "signature_bytes")]
    signature: [u8; SIGNATURE_LEN],
}

impl KemPreKeyV2 {
    fn from_key(key: &KemPreKey) -> Self {
        Self {
            id: key.id,
            seed: *key.key_pair.seed(),
            signature: key.signature.to_bytes(),
            created_at: key.created_at,
            retired_at: key.retired_at,
        }
    }
}

/// A key from its seed, refusing a signature that does not verify over
/// `EncodeKEM` of the key the seed gives.
fn checked_key(
    identity: &IdentityKeyPair,
    id: u32,
    seed: &[u8; KEM_SEED_LEN],
    signature: &[u8; SIGNATURE_LEN],
    created_at: u64,
    retired_at: Option<u64>,
) -> Result<KemPreKey, StateError> {
    let key_pair = KemKeyPair::from_seed(seed);
    let signature = Signature::from_bytes(*signature);
    identity
        .public_key()
        .verify_kem_prekey(key_pair.public_key(), &signature)
        .map_err(|_| StateError::Corrupt)?;
    Ok(KemPreKey {
        id,
        key_pair,
        signature,
        created_at,
        retired_at,
    })
}

impl KemSectionV2 {
    pub(crate) fn from_keys(keys: &KemPreKeys) -> Self {
        Self {
            last_resort: KemPreKeyV2::from_key(&keys.last_resort),
            retired: keys.retired.iter().map(KemPreKeyV2::from_key).collect(),
            one_time: keys
                .one_time
                .values()
                .map(|k| OneTimeKemPreKeyV2 {
                    id: k.id,
                    seed: *k.key_pair.seed(),
                    signature: k.signature.to_bytes(),
                })
                .collect(),
            next_id: keys.next_id,
        }
    }

    /// The keys, checked: signatures, ids distinct and below the next id,
    /// one-time ids ascending, caps, retirement times only on retired keys.
    pub(crate) fn to_keys(&self, identity: &IdentityKeyPair) -> Result<KemPreKeys, StateError> {
        let load = |k: &KemPreKeyV2| {
            checked_key(
                identity,
                k.id,
                &k.seed,
                &k.signature,
                k.created_at,
                k.retired_at,
            )
        };
        let last_resort = load(&self.last_resort)?;
        let retired = self
            .retired
            .iter()
            .map(load)
            .collect::<Result<Vec<_>, _>>()?;
        let mut one_time = BTreeMap::new();
        let mut last_id = None;
        for k in &self.one_time {
            if last_id.is_some_and(|last| k.id <= last) {
                return Err(StateError::Corrupt);
            }
            last_id = Some(k.id);
            one_time.insert(
                k.id,
                checked_key(identity, k.id, &k.seed, &k.signature, 0, None)?,
            );
        }
        let ids: Vec<u32> = core::iter::once(last_resort.id)
            .chain(retired.iter().map(|k| k.id))
            .chain(one_time.keys().copied())
            .collect();
        let invariants = [
            last_resort.retired_at.is_none(),
            retired.iter().all(|k| k.retired_at.is_some()),
            retired.len() <= MAX_RETIRED_KEM_PREKEYS,
            one_time.len() <= MAX_ONE_TIME_KEM_PREKEYS,
            ids.iter().enumerate().all(|(i, id)| !ids[..i].contains(id)),
            ids.iter().all(|id| *id < self.next_id),
        ];
        if invariants.contains(&false) {
            return Err(StateError::Corrupt);
        }
        Ok(KemPreKeys {
            last_resort,
            retired,
            one_time,
            next_id: self.next_id,
        })
    }
}
