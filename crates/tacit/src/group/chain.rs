//! Sender chains (`docs/PROTOCOL.md` 16.5, 16.6): the sender's
//! [`OutboundChain`], a receiver's [`InboundChain`] with its bounded store
//! of skipped message keys, and [`InboundChains`], the chains a device
//! holds, looked up by group and signing key.
//!
//! Decryption is transactional: keys are derived on the side and the chain
//! changes only once the message has verified, authenticated and decoded.

use alloc::collections::VecDeque;
use alloc::vec::Vec;

use rand_core::CryptoRngCore;
use zeroize::{Zeroize, Zeroizing};

use super::distribution::{sign_owner, SenderChainDistribution};
use super::message::{associated_data, GroupMessage, Unsigned, GROUP_ID_LEN, STATE_HASH_LEN};
use crate::address::Address;
use crate::aead::{chacha20poly1305_open, chacha20poly1305_seal, TAG_LEN};
use crate::envelope::Content;
use crate::error::{ConfigError, GroupDecryptError, GroupEncryptError};
use crate::keys::{IdentityKey, IdentityKeyPair, SecretKey32, KEY_LEN};
use crate::ratchet::kdf::{kdf_ck, MessageKeys};
use crate::ratchet::skipped::push_back_wiping;
use crate::ratchet::{DEFAULT_MAX_SKIP, MAX_SKIP_LIMIT};

/// The version of sender chain records (2: the owner's address; version 1
/// records, which lack it, are refused).
pub const CHAIN_RECORD_VERSION: u8 = 2;
/// The most skipped message keys an inbound chain stores; one more evicts
/// the oldest (lowest iteration).
pub const MAX_STORED_CHAIN_KEYS: usize = 2000;
/// The HKDF label of a group message key's expansion.
const MESSAGE_INFO: &[u8] = b"tacit/group/message/v1";
/// The capacity of the skipped-key buffer at its first growth.
const MIN_SKIPPED_CAPACITY: usize = 16;

/// The limit of an inbound chain: `max_skip`, the most message keys one
/// message may derive. Part of the chain's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChainConfig {
    max_skip: u32,
}

impl Default for ChainConfig {
    fn default() -> Self {
        Self {
            max_skip: DEFAULT_MAX_SKIP,
        }
    }
}

impl ChainConfig {
    /// A limit of `max_skip`, at most [`MAX_SKIP_LIMIT`]
    /// ([`ConfigError::MaxSkipTooLarge`] otherwise).
    pub fn new(max_skip: u32) -> Result<Self, ConfigError> {
        if max_skip > MAX_SKIP_LIMIT {
            return Err(ConfigError::MaxSkipTooLarge(max_skip));
        }
        Ok(Self { max_skip })
    }

    /// `max_skip`.
    pub fn max_skip(&self) -> u32 {
        self.max_skip
    }
}

/// A sending device's chain in one group state. Secret; wiped on drop.
#[derive(Clone)]
pub struct OutboundChain {
    pub(super) group_id: [u8; GROUP_ID_LEN],
    pub(super) state_hash: [u8; STATE_HASH_LEN],
    pub(super) owner: Address,
    pub(super) signing: IdentityKeyPair,
    pub(super) iteration: u32,
    pub(super) chain_key: SecretKey32,
}

impl core::fmt::Debug for OutboundChain {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("OutboundChain")
            .field("signing_key", &self.signing.public_key())
            .field("iteration", &self.iteration)
            .finish_non_exhaustive()
    }
}

impl OutboundChain {
    /// A fresh chain of the device `owner` for `group_id` in the state
    /// `state_hash`: one call of 64 bytes from `rng`, the signing key's seed
    /// then `CK_0`.
    pub fn new(
        group_id: [u8; GROUP_ID_LEN],
        state_hash: [u8; STATE_HASH_LEN],
        owner: &Address,
        rng: &mut impl CryptoRngCore,
    ) -> Self {
        let mut drawn = Zeroizing::new([0u8; 64]);
        rng.fill_bytes(drawn.as_mut());
        let mut seed = Zeroizing::new([0u8; KEY_LEN]);
        seed.copy_from_slice(&drawn[..32]);
        let mut chain_key = [0u8; KEY_LEN];
        chain_key.copy_from_slice(&drawn[32..]);
        Self {
            group_id,
            state_hash,
            owner: owner.clone(),
            signing: IdentityKeyPair::from_seed(&seed),
            iteration: 0,
            chain_key: SecretKey32::from_bytes(chain_key),
        }
    }

    /// Encrypts and signs `content` at the chain's iteration, then moves
    /// the chain on. Deterministic given the chain; on error the chain is
    /// unchanged.
    pub fn encrypt(&mut self, content: &Content) -> Result<GroupMessage, GroupEncryptError> {
        if self.iteration == u32::MAX {
            return Err(GroupEncryptError::ChainExhausted);
        }
        let mut buffer = content.to_padded().map_err(GroupEncryptError::Content)?;
        let (message_key, next_chain_key) = kdf_ck(&self.chain_key);
        let keys = MessageKeys::derive_labelled(&message_key, MESSAGE_INFO);
        let signing_key = self.signing.public_key();
        let ad = associated_data(
            &self.group_id,
            &self.state_hash,
            &signing_key.to_bytes(),
            self.iteration,
        );
        let tag = match chacha20poly1305_seal(&keys.key, &keys.nonce, &ad, &mut buffer) {
            Ok(tag) => tag,
            Err(_) => {
                buffer.zeroize();
                return Err(GroupEncryptError::PlaintextTooLong);
            }
        };
        buffer.extend_from_slice(&tag);
        let message = GroupMessage::sign(
            Unsigned {
                group_id: &self.group_id,
                state_hash: &self.state_hash,
                signing_key: &signing_key,
                iteration: self.iteration,
                ciphertext: buffer,
            },
            &self.signing,
        );
        self.chain_key = next_chain_key;
        self.iteration += 1;
        Ok(message)
    }

    /// The chain at its current iteration, to give a member device over a
    /// pairwise session, with the signature naming its owner.
    pub fn distribution(&self) -> SenderChainDistribution {
        SenderChainDistribution {
            group_id: self.group_id,
            state_hash: self.state_hash,
            signing_key: self.signing.public_key(),
            iteration: self.iteration,
            chain_key: self.chain_key.clone(),
            owner_signature: sign_owner(
                &self.signing,
                &self.group_id,
                &self.state_hash,
                &self.owner,
            ),
        }
    }

    /// The device that owns the chain.
    pub fn owner(&self) -> &Address {
        &self.owner
    }

    /// The group id.
    pub fn group_id(&self) -> &[u8; GROUP_ID_LEN] {
        &self.group_id
    }

    /// The hash of the group state the chain belongs to.
    pub fn state_hash(&self) -> &[u8; STATE_HASH_LEN] {
        &self.state_hash
    }

    /// The chain's public signing key (its name).
    pub fn signing_key(&self) -> IdentityKey {
        self.signing.public_key()
    }

    /// The iteration of the next message.
    pub fn iteration(&self) -> u32 {
        self.iteration
    }
}

/// A receiver's copy of another device's chain. Secret; wiped on drop.
#[derive(Clone, PartialEq, Eq)]
pub struct InboundChain {
    pub(super) group_id: [u8; GROUP_ID_LEN],
    pub(super) state_hash: [u8; STATE_HASH_LEN],
    /// The device whose chain it is, proved by the distribution.
    pub(super) owner: Address,
    pub(super) signing_key: IdentityKey,
    /// The next expected iteration `n`.
    pub(super) next: u32,
    /// `CK_n`.
    pub(super) chain_key: SecretKey32,
    pub(super) config: ChainConfig,
    /// `(iteration, MK)`, ascending, every iteration below `next`.
    pub(super) skipped: VecDeque<(u32, SecretKey32)>,
}

impl core::fmt::Debug for InboundChain {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("InboundChain")
            .field("signing_key", &self.signing_key)
            .field("next_iteration", &self.next)
            .field("stored_keys", &self.skipped.len())
            .finish_non_exhaustive()
    }
}

/// Where a message's key comes from, computed before anything changes.
enum Step {
    /// A stored skipped key.
    Stored(SecretKey32),
    /// A key ahead: the message key, the chain key after it, and the
    /// skipped keys to store.
    Ahead {
        message_key: SecretKey32,
        next_chain_key: SecretKey32,
        set_aside: Vec<(u32, SecretKey32)>,
    },
}

impl InboundChain {
    /// The chain a distribution describes, at its iteration, with no
    /// stored keys, owned by `sender`: the device the distribution came
    /// from over its pairwise session. `ChainOwnerMismatch` when the
    /// distribution's owner signature does not name `sender`
    /// (`docs/PROTOCOL.md` 16.5).
    pub fn from_distribution(
        distribution: &SenderChainDistribution,
        sender: &Address,
        config: ChainConfig,
    ) -> Result<Self, GroupDecryptError> {
        if !distribution.is_owned_by(sender) {
            return Err(GroupDecryptError::ChainOwnerMismatch);
        }
        Ok(Self {
            group_id: distribution.group_id,
            state_hash: distribution.state_hash,
            owner: sender.clone(),
            signing_key: distribution.signing_key,
            next: distribution.iteration,
            chain_key: distribution.chain_key.clone(),
            config,
            skipped: VecDeque::new(),
        })
    }

    /// The device whose chain it is: its messages are that device's.
    pub fn owner(&self) -> &Address {
        &self.owner
    }

    /// Decodes and decrypts a group message (`docs/PROTOCOL.md` 16.6); on
    /// error the chain is unchanged.
    pub fn decrypt(&mut self, bytes: &[u8]) -> Result<Content, GroupDecryptError> {
        self.decrypt_message(&GroupMessage::from_bytes(bytes)?)
    }

    /// Decrypts a decoded group message, steps 2 to 7 of 16.6; on error
    /// the chain is unchanged.
    pub fn decrypt_message(
        &mut self,
        message: &GroupMessage,
    ) -> Result<Content, GroupDecryptError> {
        if !self.names(message.group_id(), message.signing_key()) {
            return Err(GroupDecryptError::UnknownChain);
        }
        if message.state_hash() != &self.state_hash {
            return Err(GroupDecryptError::WrongState);
        }
        message
            .verify(&self.signing_key)
            .map_err(|_| GroupDecryptError::InvalidSignature)?;
        let iteration = message.iteration();
        let step = self.step(iteration)?;
        let message_key = match &step {
            Step::Stored(key) => key,
            Step::Ahead { message_key, .. } => message_key,
        };
        let content = self.open(message, message_key)?;
        self.commit(iteration, step);
        Ok(content)
    }

    /// Whether this is the chain of `group_id` and `signing_key`.
    fn names(&self, group_id: &[u8; GROUP_ID_LEN], signing_key: &[u8; KEY_LEN]) -> bool {
        group_id == &self.group_id && signing_key == &self.signing_key.to_bytes()
    }

    /// The message key of `iteration` (step 4), without changing anything.
    fn step(&self, iteration: u32) -> Result<Step, GroupDecryptError> {
        if iteration < self.next {
            return self
                .skipped
                .iter()
                .find(|(n, _)| *n == iteration)
                .map(|(_, key)| Step::Stored(key.clone()))
                .ok_or(GroupDecryptError::DuplicateOrExpired);
        }
        if iteration - self.next > self.config.max_skip {
            return Err(GroupDecryptError::TooManySkipped);
        }
        // Only the last MAX_STORED_CHAIN_KEYS skipped keys would survive.
        let keep_from = iteration
            .saturating_sub(MAX_STORED_CHAIN_KEYS as u32)
            .max(self.next);
        // Allocated once at its final length: it never grows.
        let mut set_aside = Vec::with_capacity((iteration - keep_from) as usize);
        let mut chain_key = self.chain_key.clone();
        for n in self.next..iteration {
            let (message_key, next) = kdf_ck(&chain_key);
            if n >= keep_from {
                set_aside.push((n, message_key));
            }
            chain_key = next;
        }
        let (message_key, next_chain_key) = kdf_ck(&chain_key);
        Ok(Step::Ahead {
            message_key,
            next_chain_key,
            set_aside,
        })
    }

    /// Steps 5 and 6: opens the ciphertext and decodes the content.
    fn open(
        &self,
        message: &GroupMessage,
        message_key: &SecretKey32,
    ) -> Result<Content, GroupDecryptError> {
        let keys = MessageKeys::derive_labelled(message_key, MESSAGE_INFO);
        let ad = associated_data(
            &self.group_id,
            &self.state_hash,
            &self.signing_key.to_bytes(),
            message.iteration(),
        );
        let (sealed, tag) = message
            .ciphertext()
            .split_at(message.ciphertext().len() - TAG_LEN);
        let mut tag_bytes = [0u8; TAG_LEN];
        tag_bytes.copy_from_slice(tag);
        let mut buffer = Zeroizing::new(sealed.to_vec());
        chacha20poly1305_open(&keys.key, &keys.nonce, &ad, &mut buffer, &tag_bytes)
            .map_err(|_| GroupDecryptError::AuthenticationFailed)?;
        Content::from_padded(&buffer).map_err(GroupDecryptError::Content)
    }

    /// Step 7: the only place the chain changes.
    fn commit(&mut self, iteration: u32, step: Step) {
        match step {
            Step::Stored(_) => {
                if let Some((_, key)) = self.skipped.iter_mut().find(|(n, _)| *n == iteration) {
                    key.zeroize();
                }
                self.skipped.retain(|(n, _)| *n != iteration);
            }
            Step::Ahead {
                next_chain_key,
                set_aside,
                ..
            } => {
                self.chain_key = next_chain_key;
                // Below u32::MAX: the message decoded.
                self.next = iteration + 1;
                // Cloned, not moved out: `set_aside` then wipes each key in
                // its own buffer when dropped, where moving them out would
                // free that buffer with the keys in it.
                for (n, key) in &set_aside {
                    while self.skipped.len() >= MAX_STORED_CHAIN_KEYS {
                        self.evict_oldest();
                    }
                    push_back_wiping(&mut self.skipped, (*n, key.clone()), MIN_SKIPPED_CAPACITY);
                }
            }
        }
    }

    /// Drops the stored key of the lowest iteration, wiped in place first
    /// (`pop_front` leaves its bytes in the slot).
    fn evict_oldest(&mut self) {
        if let Some((_, key)) = self.skipped.front_mut() {
            key.zeroize();
        }
        self.skipped.pop_front();
    }

    /// The group id.
    pub fn group_id(&self) -> &[u8; GROUP_ID_LEN] {
        &self.group_id
    }

    /// The hash of the group state the chain belongs to.
    pub fn state_hash(&self) -> &[u8; STATE_HASH_LEN] {
        &self.state_hash
    }

    /// The chain's public signing key (its name).
    pub fn signing_key(&self) -> &IdentityKey {
        &self.signing_key
    }

    /// The next expected iteration.
    pub fn next_iteration(&self) -> u32 {
        self.next
    }

    /// The chain's limit.
    pub fn config(&self) -> ChainConfig {
        self.config
    }

    /// The iterations whose skipped keys are stored, ascending.
    pub fn stored_iterations(&self) -> impl Iterator<Item = u32> + '_ {
        self.skipped.iter().map(|(n, _)| *n)
    }
}

/// The inbound chains a device holds, one per (group, signing key).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct InboundChains {
    chains: Vec<InboundChain>,
}

impl core::fmt::Debug for InboundChains {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("InboundChains")
            .field("chains", &self.chains.len())
            .finish()
    }
}

impl InboundChains {
    /// No chains.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `chain`, unless a chain of the same group and signing key is
    /// held: that one is kept (a distribution received again must not take
    /// the chain back and open it to replays). Returns whether it was
    /// added.
    pub fn insert(&mut self, chain: InboundChain) -> bool {
        if self
            .get(&chain.group_id, &chain.signing_key.to_bytes())
            .is_some()
        {
            return false;
        }
        self.chains.push(chain);
        true
    }

    /// The chain of `group_id` and `signing_key`, if held.
    pub fn get(
        &self,
        group_id: &[u8; GROUP_ID_LEN],
        signing_key: &[u8; KEY_LEN],
    ) -> Option<&InboundChain> {
        self.chains.iter().find(|c| c.names(group_id, signing_key))
    }

    /// Removes and returns the chain of `group_id` and `signing_key`.
    pub fn remove(
        &mut self,
        group_id: &[u8; GROUP_ID_LEN],
        signing_key: &[u8; KEY_LEN],
    ) -> Option<InboundChain> {
        let index = self
            .chains
            .iter()
            .position(|c| c.names(group_id, signing_key))?;
        Some(self.chains.swap_remove(index))
    }

    /// Removes every chain of `group_id` that does not belong to the state
    /// `state_hash` (the chains of older states, after a change).
    pub fn retain_state(
        &mut self,
        group_id: &[u8; GROUP_ID_LEN],
        state_hash: &[u8; STATE_HASH_LEN],
    ) {
        self.chains
            .retain(|c| &c.group_id != group_id || &c.state_hash == state_hash);
    }

    /// How many chains are held.
    pub fn len(&self) -> usize {
        self.chains.len()
    }

    /// Whether no chain is held.
    pub fn is_empty(&self) -> bool {
        self.chains.is_empty()
    }

    /// Decodes `bytes` and decrypts it with the chain it names
    /// (`UnknownChain` when none is held); on error nothing changes.
    pub fn decrypt(&mut self, bytes: &[u8]) -> Result<Content, GroupDecryptError> {
        let message = GroupMessage::from_bytes(bytes)?;
        let chain = self
            .chains
            .iter_mut()
            .find(|c| c.names(message.group_id(), message.signing_key()))
            .ok_or(GroupDecryptError::UnknownChain)?;
        chain.decrypt_message(&message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::ContentKind;

    fn owner() -> Address {
        Address::new("alice", 1).unwrap()
    }

    fn chain_at(iteration: u32) -> OutboundChain {
        OutboundChain {
            group_id: [1; 32],
            state_hash: [2; 32],
            owner: owner(),
            signing: IdentityKeyPair::from_seed(&[3; 32]),
            iteration,
            chain_key: SecretKey32::from_bytes([4; 32]),
        }
    }

    fn content() -> Content {
        Content::from_parts(ContentKind::Text, b"hi".to_vec(), 1, [5; 16], None).unwrap()
    }

    #[test]
    fn an_exhausted_chain_refuses_and_stays_as_it_was() {
        let mut chain = chain_at(u32::MAX);
        let before = chain.to_bytes();
        assert_eq!(
            chain.encrypt(&content()).map(|_| ()),
            Err(GroupEncryptError::ChainExhausted)
        );
        assert_eq!(*chain.to_bytes(), *before);
        // The last iteration that can be sent is 2^32 - 2, and it decrypts.
        let mut last = chain_at(u32::MAX - 1);
        let mut inbound =
            InboundChain::from_distribution(&last.distribution(), &owner(), ChainConfig::default())
                .unwrap();
        let message = last.encrypt(&content()).unwrap();
        assert_eq!(inbound.decrypt(message.as_bytes()).unwrap().body(), b"hi");
        assert_eq!(inbound.next_iteration(), u32::MAX);
        assert_eq!(last.iteration(), u32::MAX);
    }

    /// A long jump keeps only the keys the cap lets survive, in a buffer
    /// allocated once at its final length.
    #[test]
    fn a_long_jump_sets_aside_only_the_last_keys() {
        let mut outbound = chain_at(0);
        let inbound = InboundChain::from_distribution(
            &outbound.distribution(),
            &owner(),
            ChainConfig::new(MAX_SKIP_LIMIT).unwrap(),
        )
        .unwrap();
        let Ok(Step::Ahead { set_aside, .. }) = inbound.step(2500) else {
            panic!("a step ahead");
        };
        assert_eq!(set_aside.len(), MAX_STORED_CHAIN_KEYS);
        assert_eq!(set_aside.capacity(), MAX_STORED_CHAIN_KEYS);
        assert_eq!(set_aside.first().map(|(n, _)| *n), Some(500));
        // The key set aside for 500 is the chain's own.
        for _ in 0..500 {
            outbound.encrypt(&content()).unwrap();
        }
        let mut at_500 = InboundChain::from_distribution(
            &outbound.distribution(),
            &owner(),
            ChainConfig::default(),
        )
        .unwrap();
        let message = outbound.encrypt(&content()).unwrap();
        let (message_key, _) = kdf_ck(&at_500.chain_key);
        assert_eq!(set_aside.first().map(|(_, k)| k), Some(&message_key));
        assert!(at_500.decrypt(message.as_bytes()).is_ok());
    }

    #[test]
    fn max_skip_is_bounded() {
        assert_eq!(ChainConfig::default().max_skip(), DEFAULT_MAX_SKIP);
        assert_eq!(
            ChainConfig::new(MAX_SKIP_LIMIT).unwrap().max_skip(),
            MAX_SKIP_LIMIT
        );
        assert_eq!(
            ChainConfig::new(MAX_SKIP_LIMIT + 1),
            Err(ConfigError::MaxSkipTooLarge(MAX_SKIP_LIMIT + 1))
        );
    }
}
