//! The Double Ratchet with header encryption (Double Ratchet specification,
//! section 4), as profile `tacit-v1` pins it.
//!
//! A [`Ratchet`] starts from [`SessionKeys`]: the root key, the initiator's
//! first header key and the responder's first next-header key, plus the
//! associated data. X3DH ([`crate::x3dh`]) produces them, but so can any
//! other handshake: this module does not depend on it.
//!
//! Decryption is transactional: every step is computed on the side and the
//! session changes only once the message has authenticated. A failed
//! decryption leaves the state byte-for-byte as it was and draws no
//! randomness.
//!
//! ```
//! use tacit::keys::KeyPair;
//! use tacit::ratchet::{Ratchet, RatchetConfig, SessionKeys};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let mut rng = rand_core::OsRng;
//! // Key material agreed by some handshake.
//! let keys = || SessionKeys::new([1; 32], [2; 32], [3; 32], b"alice||bob");
//! let bob_ratchet_key = KeyPair::generate(&mut rng);
//! let bob_public = bob_ratchet_key.public_key();
//!
//! let mut alice = Ratchet::new_initiator(keys()?, &bob_public, RatchetConfig::default(), &mut rng)?;
//! let mut bob = Ratchet::new_responder(keys()?, bob_ratchet_key, RatchetConfig::default());
//!
//! let message = alice.encrypt(b"hello", &mut rng)?;
//! assert_eq!(bob.decrypt(&message, &mut rng)?, b"hello");
//! let reply = bob.encrypt(b"hi", &mut rng)?;
//! assert_eq!(alice.decrypt(&reply, &mut rng)?, b"hi");
//! # Ok(()) }
//! ```

mod header;
pub(crate) mod kdf;
mod message;
pub(crate) mod skipped;
mod state;

use alloc::vec::Vec;
use core::fmt;
use core::mem;

use rand_core::CryptoRngCore;
use zeroize::{Zeroize, ZeroizeOnDrop};

pub use header::{Header, ENCRYPTED_HEADER_LEN, HEADER_LEN, HEADER_NONCE_LEN, TAG_LEN};
pub use message::EncryptedMessage;
pub use state::STATE_VERSION;

use self::kdf::{kdf_ck, kdf_rk};
use self::skipped::SkippedKeys;
use crate::error::{ConfigError, DecryptError, EncryptError, InitError};
use crate::keys::{KeyPair, PublicKey, SecretKey32};

/// The longest associated data a session accepts (X3DH's is 64 bytes).
pub const MAX_ASSOCIATED_DATA_LEN: usize = 128;
/// The profile's default `MAX_SKIP`.
pub const DEFAULT_MAX_SKIP: u32 = 1000;
/// The profile's default cap on stored skipped message keys.
pub const DEFAULT_MAX_STORED_SKIPPED_KEYS: u32 = 2000;
/// The most receiving chains whose skipped keys a session keeps (as
/// libsignal and vodozemac keep five). Storing a key of one more chain
/// evicts the oldest chain with all its keys, so a message costs at most
/// `2 + MAX_SKIPPED_CHAINS` header trial decryptions.
pub const MAX_SKIPPED_CHAINS: usize = 5;

/// The largest `MAX_SKIP` a session accepts (libsignal's forward-jump
/// limit): one message derives at most this many keys per chain.
pub const MAX_SKIP_LIMIT: u32 = 25_000;
/// The largest cap on stored skipped keys a session accepts.
pub const MAX_STORED_SKIPPED_KEYS_LIMIT: u32 = 25_000;

/// Limits of a session. Both are part of the session state, and bounded:
/// a config over [`MAX_SKIP_LIMIT`] or [`MAX_STORED_SKIPPED_KEYS_LIMIT`]
/// cannot be built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RatchetConfig {
    max_skip: u32,
    max_stored_skipped_keys: u32,
}

impl Default for RatchetConfig {
    fn default() -> Self {
        Self {
            max_skip: DEFAULT_MAX_SKIP,
            max_stored_skipped_keys: DEFAULT_MAX_STORED_SKIPPED_KEYS,
        }
    }
}

impl RatchetConfig {
    /// Limits with these values, each at most its limit
    /// ([`ConfigError`] otherwise).
    pub fn new(max_skip: u32, max_stored_skipped_keys: u32) -> Result<Self, ConfigError> {
        if max_skip > MAX_SKIP_LIMIT {
            return Err(ConfigError::MaxSkipTooLarge(max_skip));
        }
        if max_stored_skipped_keys > MAX_STORED_SKIPPED_KEYS_LIMIT {
            return Err(ConfigError::StoredSkippedKeysTooLarge(
                max_stored_skipped_keys,
            ));
        }
        Ok(Self {
            max_skip,
            max_stored_skipped_keys,
        })
    }

    /// `MAX_SKIP`: the most message keys one skip may derive and store.
    /// A message that needs more is refused.
    pub fn max_skip(&self) -> u32 {
        self.max_skip
    }

    /// The most skipped message keys stored at once; storing one more
    /// evicts the oldest.
    pub fn max_stored_skipped_keys(&self) -> u32 {
        self.max_stored_skipped_keys
    }

    /// These limits with another `max_skip`, at most [`MAX_SKIP_LIMIT`].
    pub fn with_max_skip(self, max_skip: u32) -> Result<Self, ConfigError> {
        Self::new(max_skip, self.max_stored_skipped_keys)
    }

    /// These limits with another cap on stored skipped keys, at most
    /// [`MAX_STORED_SKIPPED_KEYS_LIMIT`].
    pub fn with_max_stored_skipped_keys(self, cap: u32) -> Result<Self, ConfigError> {
        Self::new(self.max_skip, cap)
    }
}

/// The key material a session starts from: `RK0`, `HKA` (the initiator's
/// first sending header key), `NHKB` (the responder's first next-header key)
/// and the associated data `AD` bound to every header and message.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct SessionKeys {
    root_key: SecretKey32,
    initiator_header_key: SecretKey32,
    responder_next_header_key: SecretKey32,
    associated_data: Vec<u8>,
}

impl SessionKeys {
    /// Key material agreed by a handshake. The associated data may be at most
    /// [`MAX_ASSOCIATED_DATA_LEN`] bytes.
    pub fn new(
        root_key: [u8; 32],
        initiator_header_key: [u8; 32],
        responder_next_header_key: [u8; 32],
        associated_data: &[u8],
    ) -> Result<Self, InitError> {
        if associated_data.len() > MAX_ASSOCIATED_DATA_LEN {
            return Err(InitError::AssociatedDataTooLong(associated_data.len()));
        }
        Ok(Self {
            root_key: SecretKey32::from_bytes(root_key),
            initiator_header_key: SecretKey32::from_bytes(initiator_header_key),
            responder_next_header_key: SecretKey32::from_bytes(responder_next_header_key),
            associated_data: associated_data.to_vec(),
        })
    }

    /// Key material whose associated data is known to fit.
    pub(crate) fn from_parts(
        root_key: [u8; 32],
        initiator_header_key: [u8; 32],
        responder_next_header_key: [u8; 32],
        associated_data: &[u8; 64],
    ) -> Self {
        Self {
            root_key: SecretKey32::from_bytes(root_key),
            initiator_header_key: SecretKey32::from_bytes(initiator_header_key),
            responder_next_header_key: SecretKey32::from_bytes(responder_next_header_key),
            associated_data: associated_data.to_vec(),
        }
    }

    /// `RK0`, the first root key.
    pub fn root_key(&self) -> &SecretKey32 {
        &self.root_key
    }

    /// `HKA`, the initiator's first sending header key.
    pub fn initiator_header_key(&self) -> &SecretKey32 {
        &self.initiator_header_key
    }

    /// `NHKB`, the responder's first next-header key.
    pub fn responder_next_header_key(&self) -> &SecretKey32 {
        &self.responder_next_header_key
    }

    /// `AD`.
    pub fn associated_data(&self) -> &[u8] {
        &self.associated_data
    }
}

impl fmt::Debug for SessionKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionKeys")
            .field("associated_data_len", &self.associated_data.len())
            .finish_non_exhaustive()
    }
}

/// A chain: its chain key and the header key its messages use.
#[derive(Clone, PartialEq, Eq)]
struct Chain {
    chain_key: SecretKey32,
    header_key: SecretKey32,
}

/// Which header key a message's header opened under.
pub(crate) enum HeaderMatch {
    /// `HKr`: a message of the current receiving chain.
    Current(Header),
    /// `NHKr`: a message that opens a new chain.
    Next(Header),
    /// The header key of an older chain with skipped keys, and `N`.
    Older(SecretKey32, u32),
}

/// One side of a Double Ratchet session with header encryption.
#[derive(Clone)]
pub struct Ratchet {
    config: RatchetConfig,
    associated_data: Vec<u8>,
    /// `RK`.
    root_key: SecretKey32,
    /// `DHs`.
    ratchet_key: KeyPair,
    /// `CKs` and `HKs`; `None` until the responder receives a message.
    sending: Option<Chain>,
    /// `Ns`.
    sent: u32,
    /// `PN`.
    previous_sent: u32,
    /// `CKr` and `HKr`; `None` until a message arrives.
    receiving: Option<Chain>,
    /// `Nr`, up to 2^32.
    received: u64,
    /// `NHKs`.
    next_sending_header_key: SecretKey32,
    /// `NHKr`.
    next_receiving_header_key: SecretKey32,
    /// `MKSKIPPED`.
    skipped: SkippedKeys,
}

impl Ratchet {
    /// The initiator's side (`RatchetInitAliceHE`): draws a fresh ratchet key
    /// pair (32 bytes from `rng`) and starts the first sending chain towards
    /// the responder's ratchet key (with X3DH, the signed prekey).
    pub fn new_initiator(
        keys: SessionKeys,
        remote_ratchet_key: &PublicKey,
        config: RatchetConfig,
        rng: &mut impl CryptoRngCore,
    ) -> Result<Self, InitError> {
        let ratchet_key = KeyPair::generate(rng);
        let dh = ratchet_key
            .diffie_hellman(remote_ratchet_key)
            .map_err(|_| InitError::SmallOrderKey)?;
        let step = kdf_rk(&keys.root_key, &dh);
        Ok(Self {
            config,
            associated_data: keys.associated_data.clone(),
            root_key: step.root_key,
            ratchet_key,
            sending: Some(Chain {
                chain_key: step.chain_key,
                header_key: keys.initiator_header_key.clone(),
            }),
            sent: 0,
            previous_sent: 0,
            receiving: None,
            received: 0,
            next_sending_header_key: step.next_header_key,
            next_receiving_header_key: keys.responder_next_header_key.clone(),
            skipped: SkippedKeys::default(),
        })
    }

    /// The responder's side (`RatchetInitBobHE`), with its first ratchet key
    /// pair (with X3DH, the signed prekey). It cannot send until the
    /// initiator's first message has arrived.
    pub fn new_responder(keys: SessionKeys, ratchet_key: KeyPair, config: RatchetConfig) -> Self {
        Self {
            config,
            associated_data: keys.associated_data.clone(),
            root_key: keys.root_key.clone(),
            ratchet_key,
            sending: None,
            sent: 0,
            previous_sent: 0,
            receiving: None,
            received: 0,
            next_sending_header_key: keys.responder_next_header_key.clone(),
            next_receiving_header_key: keys.initiator_header_key.clone(),
            skipped: SkippedKeys::default(),
        }
    }

    /// The session's limits.
    pub fn config(&self) -> RatchetConfig {
        self.config
    }

    /// The associated data bound to every header and message.
    pub fn associated_data(&self) -> &[u8] {
        &self.associated_data
    }

    /// Whether this side has a sending chain (the responder has none until
    /// the first message arrives).
    pub fn can_send(&self) -> bool {
        self.sending.is_some()
    }

    /// The number of skipped message keys stored.
    pub fn skipped_key_count(&self) -> usize {
        self.skipped.len()
    }

    /// The number of receiving chains (header keys) that have skipped keys
    /// stored, at most [`MAX_SKIPPED_CHAINS`].
    pub fn skipped_chain_count(&self) -> usize {
        self.skipped.header_keys().len()
    }

    /// The header the next [`encrypt`](Self::encrypt) will send, or `None`
    /// when this side cannot send (no sending chain yet, or the chain is
    /// exhausted). Headers are public to the peer only;
    /// on the wire they are encrypted.
    pub fn next_header(&self) -> Option<Header> {
        if self.sent == u32::MAX {
            // The chain is exhausted: the next encrypt refuses.
            return None;
        }
        self.sending.as_ref().map(|_| Header {
            ratchet_key: self.ratchet_key.public_key(),
            previous_chain_length: self.previous_sent,
            message_number: self.sent,
        })
    }

    /// Encrypts `plaintext` (`RatchetEncryptHE`), drawing the 24-byte header
    /// nonce from `rng` in one call.
    pub fn encrypt(
        &mut self,
        plaintext: &[u8],
        rng: &mut impl CryptoRngCore,
    ) -> Result<EncryptedMessage, EncryptError> {
        if self.sending.is_none() {
            return Err(EncryptError::NoSendingChain);
        }
        // At most 2^32 - 1 messages a chain: N runs from 0 to 2^32 - 2.
        let next_sent = match self.sent.checked_add(1) {
            Some(next) => next,
            None => return Err(EncryptError::ChainExhausted),
        };
        let header = self.next_header().ok_or(EncryptError::NoSendingChain)?;
        let chain = self.sending.as_mut().ok_or(EncryptError::NoSendingChain)?;
        let (message_key, next_chain_key) = kdf_ck(&chain.chain_key);
        let mut nonce = [0u8; HEADER_NONCE_LEN];
        rng.fill_bytes(&mut nonce);
        let encrypted_header =
            header::seal(&chain.header_key, &nonce, &header, &self.associated_data);
        let ciphertext = message::seal(
            &message_key,
            &self.associated_data,
            &encrypted_header,
            plaintext,
        )?;
        chain.chain_key = next_chain_key;
        self.sent = next_sent;
        Ok(EncryptedMessage::from_parts(encrypted_header, ciphertext))
    }

    /// Decrypts a message (`RatchetDecryptHE`). When the message opens a new
    /// receiving chain, the new sending key pair is drawn from `rng`
    /// (32 bytes in one call) after the message has authenticated; otherwise
    /// nothing is drawn.
    ///
    /// On error the session is unchanged.
    pub fn decrypt(
        &mut self,
        message: &EncryptedMessage,
        rng: &mut impl CryptoRngCore,
    ) -> Result<Vec<u8>, DecryptError> {
        let found = self
            .match_header(message)
            .ok_or(DecryptError::UnknownHeaderKey)?;
        self.decrypt_matched(found, message, rng)
    }

    /// Finds the header key a message's header opens under, without
    /// changing anything: `HKr`, then `NHKr`, then the header keys of older
    /// chains with skipped keys, oldest first. At most
    /// `2 + MAX_SKIPPED_CHAINS` trial decryptions.
    pub(crate) fn match_header(&self, message: &EncryptedMessage) -> Option<HeaderMatch> {
        let encrypted_header = message.encrypted_header();
        let ad = &self.associated_data;
        if let Some(chain) = &self.receiving {
            if let Some(header) = header::open(&chain.header_key, encrypted_header, ad) {
                return Some(HeaderMatch::Current(header));
            }
        }
        if let Some(header) = header::open(&self.next_receiving_header_key, encrypted_header, ad) {
            return Some(HeaderMatch::Next(header));
        }
        // Keys skipped in chains that are no longer the receiving chain.
        let current = self.receiving.as_ref().map(|c| &c.header_key);
        self.skipped
            .header_keys()
            .into_iter()
            .filter(|hk| Some(*hk) != current)
            .find_map(|hk| {
                header::open(hk, encrypted_header, ad)
                    .map(|h| HeaderMatch::Older(hk.clone(), h.message_number))
            })
    }

    /// Decrypts a message whose header [`match_header`](Self::match_header)
    /// found on this state. On error the state is unchanged.
    pub(crate) fn decrypt_matched(
        &mut self,
        found: HeaderMatch,
        message: &EncryptedMessage,
        rng: &mut impl CryptoRngCore,
    ) -> Result<Vec<u8>, DecryptError> {
        match found {
            HeaderMatch::Current(header) => {
                self.decrypt_current_chain(header.message_number, message)
            }
            HeaderMatch::Next(header) => self.decrypt_new_chain(&header, message, rng),
            HeaderMatch::Older(header_key, n) => self.decrypt_skipped(&header_key, n, message),
        }
    }

    /// A message whose key was skipped earlier: decrypt with the stored key
    /// and remove it on success.
    fn decrypt_skipped(
        &mut self,
        header_key: &SecretKey32,
        n: u32,
        message: &EncryptedMessage,
    ) -> Result<Vec<u8>, DecryptError> {
        let message_key = self
            .skipped
            .get(header_key, n)
            .ok_or(DecryptError::DuplicateMessage)?;
        let plaintext = message::open(message_key, &self.associated_data, message)?;
        self.skipped.remove(header_key, n);
        Ok(plaintext)
    }

    /// A message of the current receiving chain.
    fn decrypt_current_chain(
        &mut self,
        n: u32,
        message: &EncryptedMessage,
    ) -> Result<Vec<u8>, DecryptError> {
        let Some(chain) = &self.receiving else {
            return Err(DecryptError::UnknownHeaderKey);
        };
        if u64::from(n) < self.received {
            let header_key = chain.header_key.clone();
            return self.decrypt_skipped(&header_key, n, message);
        }
        check_skip(self.received, u64::from(n), self.config.max_skip)?;
        let (skipped, chain_key) = skip_keys(&chain.chain_key, self.received, n);
        let (message_key, next_chain_key) = kdf_ck(&chain_key);
        let plaintext = message::open(&message_key, &self.associated_data, message)?;

        // Authenticated: commit.
        let header_key = chain.header_key.clone();
        self.store_skipped(&header_key, skipped);
        if let Some(chain) = self.receiving.as_mut() {
            chain.chain_key = next_chain_key;
        }
        self.received = u64::from(n).saturating_add(1);
        Ok(plaintext)
    }

    /// A message under the next receiving header key: a DH ratchet step
    /// (`DHRatchetHE`), committed only once the message authenticates.
    fn decrypt_new_chain(
        &mut self,
        header: &Header,
        message: &EncryptedMessage,
        rng: &mut impl CryptoRngCore,
    ) -> Result<Vec<u8>, DecryptError> {
        // SkipMessageKeysHE(state, header.pn) in the old receiving chain.
        check_skip(
            self.received,
            u64::from(header.previous_chain_length),
            self.config.max_skip,
        )?;
        let old_skipped = self.receiving.as_ref().map(|chain| {
            let until = header.previous_chain_length;
            (
                chain.header_key.clone(),
                skip_keys(&chain.chain_key, self.received, until).0,
            )
        });

        // The receiving half of the step.
        let dh_receive = self
            .ratchet_key
            .diffie_hellman(&header.ratchet_key)
            .map_err(|_| DecryptError::SmallOrderKey)?;
        let receive_step = kdf_rk(&self.root_key, &dh_receive);
        let n = header.message_number;
        check_skip(0, u64::from(n), self.config.max_skip)?;
        let (new_skipped, chain_key) = skip_keys(&receive_step.chain_key, 0, n);
        let (message_key, next_chain_key) = kdf_ck(&chain_key);
        let plaintext = message::open(&message_key, &self.associated_data, message)?;

        // Authenticated: the sending half of the step, with a fresh pair.
        let ratchet_key = KeyPair::generate(rng);
        let dh_send = ratchet_key
            .diffie_hellman(&header.ratchet_key)
            .map_err(|_| DecryptError::SmallOrderKey)?;
        let send_step = kdf_rk(&receive_step.root_key, &dh_send);

        // Commit.
        if let Some((header_key, keys)) = old_skipped {
            self.store_skipped(&header_key, keys);
        }
        let receiving_header_key = mem::replace(
            &mut self.next_receiving_header_key,
            receive_step.next_header_key,
        );
        self.store_skipped(&receiving_header_key, new_skipped);
        let sending_header_key =
            mem::replace(&mut self.next_sending_header_key, send_step.next_header_key);
        self.previous_sent = self.sent;
        self.sent = 0;
        self.sending = Some(Chain {
            chain_key: send_step.chain_key,
            header_key: sending_header_key,
        });
        self.receiving = Some(Chain {
            chain_key: next_chain_key,
            header_key: receiving_header_key,
        });
        self.received = u64::from(n).saturating_add(1);
        self.root_key = send_step.root_key;
        self.ratchet_key = ratchet_key;
        Ok(plaintext)
    }

    fn store_skipped(&mut self, header_key: &SecretKey32, keys: Vec<(u32, SecretKey32)>) {
        let cap = usize::try_from(self.config.max_stored_skipped_keys).unwrap_or(usize::MAX);
        for (n, key) in keys {
            self.skipped.push(header_key, n, key, cap);
        }
    }
}

impl fmt::Debug for Ratchet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ratchet")
            .field("config", &self.config)
            .field("ratchet_key", &self.ratchet_key.public_key())
            .field("can_send", &self.sending.is_some())
            .field("sent", &self.sent)
            .field("previous_sent", &self.previous_sent)
            .field("received", &self.received)
            .field("skipped_keys", &self.skipped.len())
            .finish_non_exhaustive()
    }
}

/// `SkipMessageKeysHE`'s bound: refuses when `Nr + MAX_SKIP < until`.
fn check_skip(received: u64, until: u64, max_skip: u32) -> Result<(), DecryptError> {
    if received.saturating_add(u64::from(max_skip)) < until {
        return Err(DecryptError::TooManySkipped);
    }
    Ok(())
}

/// Derives the message keys numbered `from..until` of a chain, returning
/// them and the chain key that follows. Allocates only when it skips.
fn skip_keys(
    chain_key: &SecretKey32,
    from: u64,
    until: u32,
) -> (Vec<(u32, SecretKey32)>, SecretKey32) {
    let mut keys = Vec::new();
    let mut chain_key = chain_key.clone();
    let mut n = from;
    while n < u64::from(until) {
        let (message_key, next) = kdf_ck(&chain_key);
        // n < until <= u32::MAX, so it fits.
        keys.push((u32::try_from(n).unwrap_or(u32::MAX), message_key));
        chain_key = next;
        n = n.saturating_add(1);
    }
    (keys, chain_key)
}
