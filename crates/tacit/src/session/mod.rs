//! Accounts, per-device sessions, the session archive, identity trust and
//! simultaneous initiation.
//!
//! A [`SessionManager`] holds a [`Store`] and the local device's
//! [`Address`]. It encrypts plaintext bytes for one peer device into a
//! [`SessionMessage`] and decrypts a [`SessionMessage`] from a peer device
//! whose address and identity key the layer above has authenticated (the
//! sealed envelope). Padding, content and the envelope belong to that layer.
//!
//! Every operation reads what it needs, computes every change on copies,
//! and writes them with one [`Store::commit`]: an operation that fails
//! (bad message, unknown prekey, tampering, replay, changed identity, or a
//! store error) writes nothing.
//!
//! The rules (archive, promotion, simultaneous initiation, trust, prekey
//! replay) are in `docs/PROTOCOL.md` (section 11) and summed up on each method.
//!
//! Sessions are made only with devices on a verified device list of their
//! user ([`SessionManager::update_device_list`], `docs/PROTOCOL.md` section
//! 14), and messages fan out only to listed devices.
//!
//! ```
//! use tacit::identity::{DeviceList, UserKeyPair};
//! use tacit::session::{Account, BundlePreKey, SessionConfig, SessionManager};
//! use tacit::store::InMemoryStore;
//! use tacit::Address;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let mut rng = rand_core::OsRng;
//! let alice_addr = Address::new("alice", 1)?;
//! let bob_addr = Address::new("bob", 1)?;
//! let mut alice = SessionManager::create(
//!     InMemoryStore::new(), alice_addr.clone(), Account::generate(0, &mut rng), SessionConfig::default())?;
//! let mut bob = SessionManager::create(
//!     InMemoryStore::new(), bob_addr.clone(), Account::generate(0, &mut rng), SessionConfig::default())?;
//! bob.generate_one_time_prekeys(10, &mut rng)?;
//!
//! // Each user key signs its user's device list; each device trusts its own
//! // list and, fetched through the relay and verified, the peer's.
//! let lists = [
//!     DeviceList::sign(&UserKeyPair::generate(&mut rng), "alice", 1,
//!                      &[(1, alice.account().identity().public_key(), 0)])?,
//!     DeviceList::sign(&UserKeyPair::generate(&mut rng), "bob", 1,
//!                      &[(1, bob.account().identity().public_key(), 0)])?,
//! ];
//! for list in &lists {
//!     alice.update_device_list(list)?;
//!     bob.update_device_list(list)?;
//! }
//!
//! // Alice fetches Bob's bundle (through a relay) and starts a session.
//! let bundle = bob.account().bundle(BundlePreKey::Auto)?;
//! alice.process_bundle(&bob_addr, &bundle, &mut rng)?;
//! let message = alice.encrypt(&bob_addr, b"hello", &mut rng)?;
//!
//! // The envelope layer authenticates the sender's address and identity.
//! let alice_identity = alice.account().identity().public_key();
//! let decrypted = bob.decrypt(&alice_addr, &alice_identity, &message, &mut rng)?;
//! assert_eq!(decrypted.plaintext, b"hello");
//! # Ok(()) }
//! ```

mod account;
mod kem_prekeys;
mod messaging;
mod record;
mod users;

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::fmt;

use rand_core::CryptoRngCore;

pub use crate::identity::{SafetyNumber, SAFETY_NUMBER_DIGITS, SAFETY_NUMBER_ITERATIONS};
pub use account::{
    Account, BundlePreKey, FallbackPreKey, KemPreKeyChoice, SignedPreKey, ACCOUNT_VERSION,
    MAX_ONE_TIME_PREKEYS, MAX_RETIRED_SIGNED_PREKEYS,
};
pub use kem_prekeys::{KemPreKey, MAX_ONE_TIME_KEM_PREKEYS, MAX_RETIRED_KEM_PREKEYS};
pub use messaging::{OutgoingEnvelope, Received};
pub use record::{
    PendingPreKey, Profile, SessionRecord, SessionState, Slot, ARCHIVE_LIMIT, RECORD_VERSION,
};
pub use users::DeviceListUpdate;

use self::account::OptionalPreKey;
use self::kem_prekeys::KemPreKeyUse;
use crate::address::Address;
use crate::error::{AccountError, DecryptError, IdentityConflict, SessionError};
use crate::keys::{IdentityKey, PublicKey};
use crate::pqxdh;
use crate::ratchet::{EncryptedMessage, Ratchet, RatchetConfig};
use crate::store::{Changes, Store};
use crate::wire::{PreKeyBundleMessage, PreKeyMessage, SessionMessage};
use crate::x3dh::{self, Agreement};

/// What to do when a peer device presents an identity key other than the
/// one trusted for its address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum TrustMode {
    /// Refuse with [`SessionError::UntrustedIdentity`] until the application
    /// calls [`SessionManager::accept_identity`]. The default.
    #[default]
    Strict,
    /// Accept the new identity, trust it from now on, and report the change
    /// in [`Decrypted::identity_change`] (or the return value of
    /// [`SessionManager::process_bundle`]).
    AcceptAndReport,
}

/// The manager's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct SessionConfig {
    /// Limits of every new session.
    pub ratchet: RatchetConfig,
    /// What to do on an identity change.
    pub trust: TrustMode,
    /// Downgrade policy (`docs/PROTOCOL.md` 15.8): while the account has
    /// KEM prekeys, refuse a classical (`tacit-v1`) prekey message that
    /// would start a new session, with
    /// [`SessionError::ClassicalPreKeyRefused`]. On by default.
    pub refuse_classical_prekey_messages: bool,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            ratchet: RatchetConfig::default(),
            trust: TrustMode::default(),
            refuse_classical_prekey_messages: true,
        }
    }
}

impl SessionConfig {
    /// The settings with the downgrade policy on (`true`, the default) or
    /// off (`false`: accept classical first messages, e.g. during a
    /// transition).
    pub fn with_classical_prekey_messages_refused(mut self, refuse: bool) -> Self {
        self.refuse_classical_prekey_messages = refuse;
        self
    }

    /// The defaults with another trust mode.
    pub fn with_trust(mut self, trust: TrustMode) -> Self {
        self.trust = trust;
        self
    }

    /// The defaults with other ratchet limits.
    pub fn with_ratchet(mut self, ratchet: RatchetConfig) -> Self {
        self.ratchet = ratchet;
        self
    }
}

/// A peer device's identity changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdentityChange {
    /// The identity trusted before.
    pub previous: IdentityKey,
    /// The identity trusted now.
    pub current: IdentityKey,
}

/// A decrypted message and what its decryption changed.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Decrypted {
    /// The plaintext (as the layer above padded it).
    pub plaintext: Vec<u8>,
    /// Set when the sender's identity changed and [`TrustMode::AcceptAndReport`]
    /// accepted it.
    pub identity_change: Option<IdentityChange>,
    /// Whether this is the first message from this device: no session with
    /// it was stored. (A user's first contact is the
    /// [`DeviceListUpdate::FirstContact`] of its first device list.)
    pub first_contact: bool,
    /// Whether this prekey message created a new session.
    pub new_session: bool,
    /// Which session decrypted it (the current one, or an archived one).
    pub slot: Slot,
}

impl fmt::Debug for Decrypted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Decrypted")
            .field("plaintext_len", &self.plaintext.len())
            .field("identity_change", &self.identity_change)
            .field("first_contact", &self.first_contact)
            .field("new_session", &self.new_session)
            .field("slot", &self.slot)
            .finish()
    }
}

/// A summary of the sessions with one peer device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct SessionInfo {
    /// The current session's base key (the same on both sides), if there is
    /// a current session.
    pub current_base_key: Option<PublicKey>,
    /// Whether the current session was initiated by this side.
    pub current_initiated: bool,
    /// Whether a message of the peer was received on the current session.
    pub current_acknowledged: bool,
    /// The profile that started the current session, if there is one.
    pub current_profile: Option<Profile>,
    /// The number of archived sessions.
    pub archived: usize,
}

/// The session manager of one device. See the module documentation.
pub struct SessionManager<S: Store> {
    store: S,
    local: Address,
    /// A copy of the stored account, replaced after each successful commit
    /// that changes it.
    account: Account,
    config: SessionConfig,
}

impl<S: Store> fmt::Debug for SessionManager<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionManager")
            .field("local", &self.local)
            .field("identity", &self.account.identity().public_key())
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// Checks the peer's identity against the trusted one.
enum Trust {
    /// Nothing trusted yet: trust on first use.
    FirstUse,
    /// The trusted identity.
    Same,
    /// A change accepted under [`TrustMode::AcceptAndReport`].
    Changed(Box<IdentityChange>),
}

impl<S: Store> SessionManager<S> {
    /// Stores `account` as the local device's account and opens a manager
    /// on it. Refuses with [`SessionError::AccountExists`] if the store
    /// already holds one.
    pub fn create(
        mut store: S,
        local: Address,
        account: Account,
        config: SessionConfig,
    ) -> Result<Self, SessionError> {
        if store.load_account()?.is_some() {
            return Err(SessionError::AccountExists);
        }
        store.commit(Changes::new().with_account(account.clone()))?;
        Ok(Self {
            store,
            local,
            account,
            config,
        })
    }

    /// Opens a manager on a store that holds an account.
    pub fn open(store: S, local: Address, config: SessionConfig) -> Result<Self, SessionError> {
        let account = store.load_account()?.ok_or(SessionError::NoAccount)?;
        Ok(Self {
            store,
            local,
            account,
            config,
        })
    }

    /// The local device's address.
    pub fn local_address(&self) -> &Address {
        &self.local
    }

    /// The account (identity and prekeys).
    pub fn account(&self) -> &Account {
        &self.account
    }

    /// The store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// Gives the store back.
    pub fn into_store(self) -> S {
        self.store
    }

    /// Changes the account with `f` and stores the result; if `f` or the
    /// store fails, nothing changes.
    pub fn update_account<T>(
        &mut self,
        f: impl FnOnce(&mut Account) -> Result<T, AccountError>,
    ) -> Result<T, SessionError> {
        let mut account = self.account.clone();
        let out = f(&mut account)?;
        self.store
            .commit(Changes::new().with_account(account.clone()))?;
        self.account = account;
        Ok(out)
    }

    /// Generates `count` one-time prekeys and stores them; returns their
    /// ids and public keys for publication.
    pub fn generate_one_time_prekeys(
        &mut self,
        count: usize,
        rng: &mut impl CryptoRngCore,
    ) -> Result<Vec<(u32, PublicKey)>, SessionError> {
        self.update_account(|a| a.generate_one_time_prekeys(count, rng))
    }

    /// Rotates the signed prekey at `now`, keeping replaced ones for `grace`
    /// (see [`Account::rotate_signed_prekey`]); returns the new id.
    pub fn rotate_signed_prekey(
        &mut self,
        now: u64,
        grace: u64,
        rng: &mut impl CryptoRngCore,
    ) -> Result<u32, SessionError> {
        self.update_account(|a| a.rotate_signed_prekey(now, grace, rng).map(|s| s.id()))
    }

    /// The identity trusted for `address`, if any.
    pub fn trusted_identity(&self, address: &Address) -> Result<Option<IdentityKey>, SessionError> {
        Ok(self.store.trusted_identity(address)?)
    }

    /// Trusts `identity` for `address` from now on (after the user verified
    /// it, e.g. by its safety number). If the current session with that
    /// device was made with another identity, it is archived: a new session
    /// must be started from a bundle.
    pub fn accept_identity(
        &mut self,
        address: &Address,
        identity: &IdentityKey,
    ) -> Result<(), SessionError> {
        let mut changes = Changes::new().with_identity(address.clone(), *identity);
        if let Some(mut record) = self.store.load_session(address)? {
            if record
                .current()
                .is_some_and(|s| s.remote_identity() != identity)
            {
                record.archive_current();
                changes = changes.with_session(address.clone(), Some(record));
            }
        }
        self.store.commit(changes)?;
        Ok(())
    }

    /// A summary of the sessions with `address`, if there is a record.
    pub fn session_info(&self, address: &Address) -> Result<Option<SessionInfo>, SessionError> {
        Ok(self.store.load_session(address)?.map(|r| SessionInfo {
            current_base_key: r.current().map(|s| *s.base_key()),
            current_initiated: r.current().is_some_and(SessionState::is_initiator),
            current_acknowledged: r.current().is_some_and(SessionState::is_acknowledged),
            current_profile: r.current().map(SessionState::profile),
            archived: r.archived_len(),
        }))
    }

    /// Deletes every session with `address` (e.g. the device was removed).
    /// The trusted identity stays.
    pub fn delete_session(&mut self, address: &Address) -> Result<(), SessionError> {
        self.store
            .commit(Changes::new().with_session(address.clone(), None))?;
        Ok(())
    }

    /// Starts a session with `address` from its published bundle (signature
    /// checked strictly). The new session becomes current; an older one is
    /// archived. Messages on it are prekey messages until the peer answers.
    ///
    /// A bundle that offers a KEM prekey (version 2) starts a `tacit-v2`
    /// session (PQXDH), never a `tacit-v1` one: a KEM prekey whose
    /// signature fails rejects the bundle. A version-1 bundle starts a
    /// `tacit-v1` session.
    ///
    /// The device must be on its user's verified device list with the
    /// bundle's identity key ([`SessionError::DeviceNotListed`], or
    /// [`SessionError::UnknownUser`] with no list): sessions are made only
    /// with devices a user key vouched for.
    ///
    /// Trust: a first identity is trusted; a different identity from the
    /// trusted one is refused under [`TrustMode::Strict`], or accepted and
    /// returned under [`TrustMode::AcceptAndReport`].
    pub fn process_bundle(
        &mut self,
        address: &Address,
        bundle: &PreKeyBundleMessage,
        rng: &mut impl CryptoRngCore,
    ) -> Result<Option<IdentityChange>, SessionError> {
        self.check_not_self(address)?;
        self.check_listed(address, &bundle.identity_key, None)?;
        let trust = self.check_trust(address, &bundle.identity_key)?;
        let (agreement, ephemeral_key, kem, profile) = match &bundle.kem_prekey {
            Some(offer) => {
                let init = pqxdh::initiate(self.account.identity(), &bundle.bundle(), rng)?;
                let kem = Some((offer.id, init.kem_ciphertext));
                (init.agreement, init.ephemeral_key, kem, Profile::V2)
            }
            None => {
                let init = x3dh::initiate(self.account.identity(), &bundle.bundle(), rng)?;
                (init.agreement, init.ephemeral_key, None, Profile::V1)
            }
        };
        let ratchet = Ratchet::new_initiator(
            agreement.session_keys(),
            &bundle.signed_prekey,
            self.config.ratchet,
            rng,
        )?;
        let state = SessionState {
            ratchet,
            remote_identity: bundle.identity_key,
            base_key: ephemeral_key,
            initiator: true,
            pending: Some(PendingPreKey {
                ephemeral_key,
                signed_prekey_id: bundle.signed_prekey_id,
                one_time_prekey_id: bundle.one_time_prekey.map(|(id, _)| id),
                kem,
            }),
            profile,
        };
        let mut record = self.store.load_session(address)?.unwrap_or_default();
        record.insert_initiated(state);
        let mut changes = Changes::new().with_session(address.clone(), Some(record));
        if !matches!(trust, Trust::Same) {
            changes = changes.with_identity(address.clone(), bundle.identity_key);
        }
        self.store.commit(changes)?;
        Ok(match trust {
            Trust::Changed(change) => Some(*change),
            _ => None,
        })
    }

    /// Encrypts `plaintext` for one device on the current session with it.
    /// Until the peer has answered, the result is a prekey message repeating
    /// the session's prekey fields; afterwards a ratchet message.
    ///
    /// Refuses with [`SessionError::NoSession`] when there is no current
    /// session, and with [`SessionError::UntrustedIdentity`] when the
    /// session's identity is no longer the trusted one.
    pub fn encrypt(
        &mut self,
        recipient: &Address,
        plaintext: &[u8],
        rng: &mut impl CryptoRngCore,
    ) -> Result<SessionMessage, SessionError> {
        let (record, message) = self.encrypt_one(recipient, plaintext, rng)?;
        self.store
            .commit(Changes::new().with_session(recipient.clone(), Some(record)))?;
        Ok(message)
    }

    /// Encrypts `plaintext` for every device of [`fan_out`](Self::fan_out)
    /// for `user_id`, with one commit: if any device fails (no session,
    /// untrusted identity), nothing is written and the error names it.
    pub fn encrypt_for_user(
        &mut self,
        user_id: &str,
        plaintext: &[u8],
        rng: &mut impl CryptoRngCore,
    ) -> Result<Vec<(Address, SessionMessage)>, SessionError> {
        let devices = self.fan_out(user_id)?;
        let messages = self.encrypt_for_devices(&devices, plaintext, rng)?;
        Ok(devices.into_iter().zip(messages).collect())
    }

    /// Encrypts `plaintext` for each of `devices`, in order, with one
    /// commit: if any device fails, nothing is written.
    pub(crate) fn encrypt_for_devices(
        &mut self,
        devices: &[Address],
        plaintext: &[u8],
        rng: &mut impl CryptoRngCore,
    ) -> Result<Vec<SessionMessage>, SessionError> {
        let mut changes = Changes::new();
        let mut out = Vec::with_capacity(devices.len());
        for address in devices {
            let (record, message) = self.encrypt_one(address, plaintext, rng)?;
            changes = changes.with_session(address.clone(), Some(record));
            out.push(message);
        }
        self.store.commit(changes)?;
        Ok(out)
    }

    fn encrypt_one(
        &self,
        recipient: &Address,
        plaintext: &[u8],
        rng: &mut impl CryptoRngCore,
    ) -> Result<(SessionRecord, SessionMessage), SessionError> {
        let no_session = || SessionError::NoSession(recipient.clone());
        let mut record = self.store.load_session(recipient)?.ok_or_else(no_session)?;
        let mut state = record.current().cloned().ok_or_else(no_session)?;
        // Only to a device its user's verified list names, with this key.
        self.check_listed(recipient, &state.remote_identity, None)?;
        if let Some(trusted) = self.store.trusted_identity(recipient)? {
            if trusted != state.remote_identity {
                return Err(SessionError::UntrustedIdentity(Box::new(
                    IdentityConflict {
                        address: recipient.clone(),
                        trusted,
                        received: state.remote_identity,
                    },
                )));
            }
        }
        let encrypted = state.ratchet.encrypt(plaintext, rng)?;
        let message = match &state.pending {
            Some(p) => SessionMessage::PreKey(Box::new(PreKeyMessage {
                identity_key: self.account.identity().public_key(),
                ephemeral_key: p.ephemeral_key,
                signed_prekey_id: p.signed_prekey_id,
                one_time_prekey_id: p.one_time_prekey_id,
                message: encrypted,
                kem: p.kem.clone(),
            })),
            None => SessionMessage::Ratchet(encrypted),
        };
        record.put_back(Slot::Current, state);
        Ok((record, message))
    }

    /// Decrypts a message from `sender`, whose identity key
    /// `sender_identity` the envelope layer authenticated.
    ///
    /// - The sender must be on its user's verified device list with that
    ///   identity ([`SessionError::DeviceNotListed`], or
    ///   [`SessionError::UnknownUser`] with no list).
    /// - The identity must be the trusted one (or none yet: trust on first
    ///   use); a change is refused under [`TrustMode::Strict`].
    /// - A prekey message must carry `sender_identity`. If a stored session
    ///   has its base key, it is a retransmission (the initiator repeats the
    ///   prekey fields until answered) and decrypts through that session, so
    ///   a replay fails as [`DecryptError::DuplicateMessage`]. Otherwise a
    ///   new session is made from the named prekeys; its one-time prekey is
    ///   consumed only if the inner message decrypts, and a one-time prekey
    ///   consumed before is refused ([`SessionError::UnknownOneTimePreKey`]).
    /// - A ratchet message is tried on the current session, then the
    ///   archived ones, most recently used first. An archived session that
    ///   decrypts moves to the front of the archive but does not become
    ///   current.
    ///
    /// On any error, no store changes.
    pub fn decrypt(
        &mut self,
        sender: &Address,
        sender_identity: &IdentityKey,
        message: &SessionMessage,
        rng: &mut impl CryptoRngCore,
    ) -> Result<Decrypted, SessionError> {
        self.check_not_self(sender)?;
        self.check_listed(sender, sender_identity, None)?;
        let trust = self.check_trust(sender, sender_identity)?;
        let record = self.store.load_session(sender)?;
        let first_message = record.is_none();
        let (changes, mut decrypted) = match message {
            SessionMessage::Ratchet(m) => {
                let record = record.ok_or_else(|| SessionError::NoSession(sender.clone()))?;
                self.decrypt_existing(sender, sender_identity, record, None, m, rng)?
            }
            SessionMessage::PreKey(m) => {
                if m.identity_key != *sender_identity {
                    return Err(SessionError::IdentityMismatch);
                }
                let record = record.unwrap_or_default();
                let existing = record
                    .find_by_base_key(&m.ephemeral_key, sender_identity)
                    .map(|(slot, _)| slot);
                match existing {
                    Some(slot) => self.decrypt_existing(
                        sender,
                        sender_identity,
                        record,
                        Some(slot),
                        &m.message,
                        rng,
                    )?,
                    None => self.decrypt_new_session(sender, record, m, rng)?,
                }
            }
        };
        decrypted.first_contact = first_message;
        let changes = match trust {
            Trust::Same => changes,
            Trust::FirstUse => {
                decrypted.first_contact = true;
                changes.with_identity(sender.clone(), *sender_identity)
            }
            Trust::Changed(change) => {
                decrypted.identity_change = Some(*change);
                changes.with_identity(sender.clone(), *sender_identity)
            }
        };
        let account = changes.account.clone();
        self.store.commit(changes)?;
        if let Some(account) = account {
            self.account = account;
        }
        Ok(decrypted)
    }

    /// Decrypts with the stored states: `only` the given one (a prekey
    /// retransmission), or the current then the archived ones.
    fn decrypt_existing(
        &self,
        sender: &Address,
        sender_identity: &IdentityKey,
        mut record: SessionRecord,
        only: Option<Slot>,
        message: &EncryptedMessage,
        rng: &mut impl CryptoRngCore,
    ) -> Result<(Changes, Decrypted), SessionError> {
        let mut first_error = None;
        let mut found = None;
        for (slot, state) in record.states() {
            if only.is_some_and(|o| o != slot) || state.remote_identity != *sender_identity {
                continue;
            }
            // The header first: only a state whose header key opens the
            // message is copied and decrypted.
            let Some(header) = state.ratchet.match_header(message) else {
                first_error.get_or_insert(DecryptError::UnknownHeaderKey);
                continue;
            };
            let mut state = state.clone();
            match state.ratchet.decrypt_matched(header, message, rng) {
                Ok(plaintext) => {
                    state.pending = None;
                    found = Some((slot, state, plaintext));
                    break;
                }
                Err(e) => {
                    // Keep the first error, unless it only says "not this
                    // session" and a later state says more.
                    let unknown = DecryptError::UnknownHeaderKey;
                    if first_error.is_none_or(|f| f == unknown && e != unknown) {
                        first_error = Some(e);
                    }
                }
            }
        }
        let Some((slot, state, plaintext)) = found else {
            return Err(match first_error {
                Some(e) => SessionError::Decrypt(e),
                None => SessionError::NoSession(sender.clone()),
            });
        };
        record.put_back(slot, state);
        Ok((
            Changes::new().with_session(sender.clone(), Some(record)),
            Decrypted {
                plaintext,
                identity_change: None,
                first_contact: false,
                new_session: false,
                slot,
            },
        ))
    }

    /// A prekey message with a base key never seen: X3DH or PQXDH as the
    /// responder, a new session, and the one-time prekeys consumed, all
    /// only if the inner message decrypts. The checks run in the order of
    /// `docs/PROTOCOL.md` 15.5.
    fn decrypt_new_session(
        &self,
        sender: &Address,
        mut record: SessionRecord,
        message: &PreKeyMessage,
        rng: &mut impl CryptoRngCore,
    ) -> Result<(Changes, Decrypted), SessionError> {
        if message.kem.is_none()
            && self.config.refuse_classical_prekey_messages
            && self.account.has_kem_prekeys()
        {
            return Err(SessionError::ClassicalPreKeyRefused);
        }
        let signed_prekey = self
            .account
            .signed_prekey_by_id(message.signed_prekey_id)
            .ok_or(SessionError::UnknownSignedPreKey(message.signed_prekey_id))?;
        let optional = match message.one_time_prekey_id {
            None => None,
            Some(id) => Some((
                id,
                self.account
                    .optional_prekey(id)
                    .ok_or(SessionError::UnknownOneTimePreKey(id))?,
            )),
        };
        let kem_prekey = match &message.kem {
            None => None,
            Some((id, ct)) => Some((
                *id,
                ct,
                self.account
                    .kem_prekey(*id)
                    .ok_or(SessionError::UnknownKemPreKey(*id))?,
            )),
        };
        let optional_pair = optional.map(|(_, k)| match k {
            OptionalPreKey::OneTime(pair) | OptionalPreKey::Fallback(pair) => pair,
        });
        let agreement: Agreement = match kem_prekey {
            Some((_, ciphertext, kem)) => pqxdh::respond(
                self.account.identity(),
                signed_prekey.key_pair(),
                optional_pair,
                kem.key_pair(),
                &message.identity_key,
                &message.ephemeral_key,
                ciphertext,
            )?,
            None => x3dh::respond(
                self.account.identity(),
                signed_prekey.key_pair(),
                optional_pair,
                &message.identity_key,
                &message.ephemeral_key,
            )?,
        };
        let mut ratchet = Ratchet::new_responder(
            agreement.session_keys(),
            signed_prekey.key_pair().clone(),
            self.config.ratchet,
        );
        let plaintext = ratchet.decrypt(&message.message, rng)?;

        // Decrypted: build the changes.
        let mut changes = Changes::new();
        let one_time = matches!(optional, Some((_, OptionalPreKey::OneTime(_))));
        let one_time_kem = matches!(kem_prekey, Some((_, _, KemPreKeyUse::OneTime(_))));
        if one_time || one_time_kem {
            let mut account = self.account.clone();
            if let (true, Some((id, _))) = (one_time, optional) {
                account.remove_one_time_prekey(id)?;
            }
            if let (true, Some((id, _, _))) = (one_time_kem, kem_prekey) {
                account.remove_one_time_kem_prekey(id)?;
            }
            changes = changes.with_account(account);
        }
        record.insert_received(SessionState {
            ratchet,
            remote_identity: message.identity_key,
            base_key: message.ephemeral_key,
            initiator: false,
            pending: None,
            profile: if message.kem.is_some() {
                Profile::V2
            } else {
                Profile::V1
            },
        });
        let slot = if record
            .current()
            .is_some_and(|s| s.base_key() == &message.ephemeral_key)
        {
            Slot::Current
        } else {
            Slot::Archived(0)
        };
        Ok((
            changes.with_session(sender.clone(), Some(record)),
            Decrypted {
                plaintext,
                identity_change: None,
                first_contact: false,
                new_session: true,
                slot,
            },
        ))
    }

    fn check_not_self(&self, address: &Address) -> Result<(), SessionError> {
        if *address == self.local {
            return Err(SessionError::OwnAddress(address.clone()));
        }
        Ok(())
    }

    fn check_trust(
        &self,
        address: &Address,
        identity: &IdentityKey,
    ) -> Result<Trust, SessionError> {
        match self.store.trusted_identity(address)? {
            None => Ok(Trust::FirstUse),
            Some(trusted) if trusted == *identity => Ok(Trust::Same),
            Some(trusted) => match self.config.trust {
                TrustMode::AcceptAndReport => Ok(Trust::Changed(Box::new(IdentityChange {
                    previous: trusted,
                    current: *identity,
                }))),
                _ => Err(SessionError::UntrustedIdentity(Box::new(
                    IdentityConflict {
                        address: address.clone(),
                        trusted,
                        received: *identity,
                    },
                ))),
            },
        }
    }
}
