//! The client's store: the session manager's records and the client's own
//! (profile, history, processed message ids) in one encrypted SQLite file.

use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tacit::envelope::MESSAGE_ID_LEN;
use tacit::error::StoreError;
use tacit::identity::{DeviceList, UserKey, UserKeyPair};
use tacit::keys::IdentityKey;
use tacit::session::{Account, SessionRecord};
use tacit::store::{Changes, IdentityStore, PreKeyStore, SessionStore, Store};
use tacit::{Address, DeviceId};
use tacit_sqlite::{AppWrite, SqliteStore};
use zeroize::Zeroizing;

use crate::{Direction, HistoryEntry, Status};

mod groups;
#[cfg(test)]
pub(crate) mod stall;
mod tokens;

pub(crate) use groups::{InboundRecord, OutboundRecord, PendingGroupMessage};

/// Record kinds.
const PROFILE: &str = "client/profile";
const SEEN_ENVELOPE: &str = "client/seen-envelope";
const SEEN_CONTENT: &str = "client/seen-content";
const HISTORY: &str = "client/history";
/// The user key's seed, on the device that created the user.
const USER_KEY: &str = "client/user-key";
/// Envelopes held because they came under another user key than the one
/// trusted for their sender's user id.
const HELD: &str = "client/held";

/// The version byte in front of every client record.
const RECORD_VERSION: u8 = 1;

/// Who this store belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Profile {
    pub(crate) user_id: String,
    pub(crate) device_id: DeviceId,
}

impl Profile {
    pub(crate) fn address(&self) -> Result<Address, StoreError> {
        Address::new(self.user_id.as_str(), self.device_id).map_err(|_| StoreError::Corrupt {
            table: "app_records",
            error: tacit::error::StateError::Corrupt,
        })
    }
}

/// A stored history entry (see [`HistoryEntry`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredEntry {
    direction: u8,
    peer_user: String,
    peer_device: DeviceId,
    message_id: [u8; MESSAGE_ID_LEN],
    timestamp_ms: u64,
    text: String,
    status: u8,
}

/// A held envelope: who it claims to be from, under which user key.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredHeld {
    user_id: String,
    user_key: [u8; 32],
    envelope: Vec<u8>,
}

/// An envelope held until the application accepts or rejects the user key
/// it came under.
#[derive(Debug, Clone)]
pub(crate) struct HeldEnvelope {
    /// The envelope's digest (its record key, and its seen-envelope key).
    pub(crate) digest: [u8; 32],
    /// The user it claims to be from.
    pub(crate) user_id: String,
    /// The user key its sender certificate names.
    pub(crate) user_key: UserKey,
    /// The sealed envelope, as received.
    pub(crate) envelope: Vec<u8>,
}

fn corrupt() -> StoreError {
    StoreError::Corrupt {
        table: "app_records",
        error: tacit::error::StateError::Corrupt,
    }
}

fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, StoreError> {
    let mut out = vec![RECORD_VERSION];
    let body = postcard::to_stdvec(value)
        .map_err(|e| StoreError::backend("encoding a client record", e))?;
    out.extend_from_slice(&body);
    Ok(out)
}

fn decode<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Result<T, StoreError> {
    match bytes.split_first() {
        Some((&RECORD_VERSION, body)) => postcard::from_bytes(body).map_err(|_| corrupt()),
        _ => Err(corrupt()),
    }
}

fn lock_error() -> StoreError {
    StoreError::backend_message("store lock poisoned")
}

/// The key of an incoming content: sender address and content message id.
pub(crate) fn content_key(sender: &Address, message_id: &[u8; MESSAGE_ID_LEN]) -> Vec<u8> {
    let mut key = Vec::with_capacity(sender.user_id().len() + 21);
    key.extend_from_slice(sender.user_id().as_bytes());
    key.push(0);
    key.extend_from_slice(&sender.device_id().to_be_bytes());
    key.extend_from_slice(message_id);
    key
}

fn history_key(direction: Direction, peer: &Address, message_id: &[u8; 16]) -> Vec<u8> {
    match direction {
        // Outgoing messages are found by id alone, when receipts arrive.
        Direction::Outgoing => {
            let mut key = vec![b'o'];
            key.extend_from_slice(message_id);
            key
        }
        Direction::Incoming => {
            let mut key = vec![b'i'];
            key.extend_from_slice(&content_key(peer, message_id));
            key
        }
    }
}

/// The digest under which an envelope is remembered.
pub(crate) fn envelope_digest(envelope: &[u8]) -> [u8; 32] {
    Sha256::digest(envelope).into()
}

/// What the client writes alongside a session commit.
#[derive(Debug, Default)]
pub(crate) struct Writes(Vec<AppWrite>);

impl Writes {
    pub(crate) fn seen_envelope(&mut self, digest: &[u8; 32], now_ms: u64) {
        self.0.push(AppWrite::put(
            SEEN_ENVELOPE,
            digest,
            now_ms.to_be_bytes().to_vec(),
        ));
    }

    pub(crate) fn seen_content(&mut self, key: &[u8], now_ms: u64) {
        self.0.push(AppWrite::put(
            SEEN_CONTENT,
            key,
            now_ms.to_be_bytes().to_vec(),
        ));
    }

    /// Holds an envelope (stored sealed, like every record).
    pub(crate) fn hold(&mut self, held: &HeldEnvelope) -> Result<(), StoreError> {
        let stored = StoredHeld {
            user_id: held.user_id.clone(),
            user_key: held.user_key.to_bytes(),
            envelope: held.envelope.clone(),
        };
        self.0
            .push(AppWrite::put(HELD, &held.digest, encode(&stored)?));
        Ok(())
    }

    /// Deletes a held envelope.
    pub(crate) fn unhold(&mut self, digest: &[u8; 32]) {
        self.0.push(AppWrite::delete(HELD, digest));
    }

    pub(crate) fn history(&mut self, entry: &HistoryEntry) -> Result<(), StoreError> {
        let stored = StoredEntry {
            direction: match entry.direction {
                Direction::Incoming => 0,
                Direction::Outgoing => 1,
            },
            peer_user: entry.peer.user_id().into(),
            peer_device: entry.peer.device_id(),
            message_id: entry.message_id,
            timestamp_ms: entry.timestamp_ms,
            text: entry.text.clone(),
            status: status_code(entry.status),
        };
        let key = history_key(entry.direction, &entry.peer, &entry.message_id);
        self.0.push(AppWrite::put(HISTORY, &key, encode(&stored)?));
        Ok(())
    }
}

/// How the next session commit is handled.
#[derive(Debug, Default)]
struct Hold {
    /// Whether commits are held back instead of written.
    active: bool,
    /// The changes held back, merged in order.
    changes: Option<Changes>,
}

/// The store under the session manager: a [`SqliteStore`] whose commits can
/// be held back and then written together with the client's own records in
/// one transaction.
#[derive(Debug)]
pub(crate) struct ClientStore {
    inner: Mutex<SqliteStore>,
    hold: Mutex<Hold>,
    /// The file, for the test gates of [`stall`].
    #[cfg(test)]
    path: std::path::PathBuf,
}

impl ClientStore {
    pub(crate) fn open(path: &Path, key: &[u8; 32]) -> Result<Self, StoreError> {
        let inner = SqliteStore::open(path, key)?;
        #[cfg(test)]
        stall::pass(path);
        Ok(Self {
            inner: Mutex::new(inner),
            hold: Mutex::new(Hold::default()),
            #[cfg(test)]
            path: path.to_path_buf(),
        })
    }

    fn inner(&self) -> Result<MutexGuard<'_, SqliteStore>, StoreError> {
        #[cfg(test)]
        stall::pass(&self.path);
        self.inner.lock().map_err(|_| lock_error())
    }

    /// From now on, [`Store::commit`] keeps the changes instead of writing
    /// them, until [`release`](Self::release).
    pub(crate) fn hold(&self) -> Result<(), StoreError> {
        let mut hold = self.hold.lock().map_err(|_| lock_error())?;
        hold.active = true;
        hold.changes = None;
        Ok(())
    }

    /// Stops holding commits and returns what was held back.
    pub(crate) fn release(&self) -> Result<Option<Changes>, StoreError> {
        let mut hold = self.hold.lock().map_err(|_| lock_error())?;
        hold.active = false;
        Ok(hold.changes.take())
    }

    /// Writes `changes` and `writes` in one transaction.
    pub(crate) fn commit_with(
        &self,
        changes: Option<Changes>,
        writes: Writes,
    ) -> Result<(), StoreError> {
        self.inner()?
            .commit_with(changes.unwrap_or_default(), &writes.0)
    }

    pub(crate) fn profile(&self) -> Result<Option<Profile>, StoreError> {
        self.inner()?
            .app_record(PROFILE, b"")?
            .map(|b| decode(&b))
            .transpose()
    }

    /// Writes the profile and, on a user's first device, the user key's seed
    /// with `changes` (the new account and its own device list), in one
    /// transaction.
    pub(crate) fn set_profile(
        &self,
        profile: &Profile,
        user_key: Option<&UserKeyPair>,
        changes: Option<Changes>,
    ) -> Result<(), StoreError> {
        let mut writes = vec![AppWrite::put(PROFILE, b"", encode(profile)?)];
        if let Some(user_key) = user_key {
            writes.push(AppWrite::put(
                USER_KEY,
                b"",
                user_key.seed().as_bytes().to_vec(),
            ));
        }
        self.commit_with(changes, Writes(writes))
    }

    /// Stores the user key (restored from its recovery code) with
    /// `changes`, in one transaction.
    pub(crate) fn set_user_key(
        &self,
        user_key: &UserKeyPair,
        changes: Option<Changes>,
    ) -> Result<(), StoreError> {
        self.commit_with(
            changes,
            Writes(vec![AppWrite::put(
                USER_KEY,
                b"",
                user_key.seed().as_bytes().to_vec(),
            )]),
        )
    }

    /// The user key, if this device holds it.
    pub(crate) fn user_key(&self) -> Result<Option<UserKeyPair>, StoreError> {
        self.inner()?
            .app_record(USER_KEY, b"")?
            .map(|seed| {
                <[u8; 32]>::try_from(seed.as_slice())
                    .map(|seed| UserKeyPair::from_seed(&seed))
                    .map_err(|_| corrupt())
            })
            .transpose()
    }

    /// Every held envelope, oldest first.
    pub(crate) fn held(&self) -> Result<Vec<HeldEnvelope>, StoreError> {
        let inner = self.inner()?;
        let mut out = Vec::new();
        for bytes in inner.app_records(HELD)? {
            let stored: StoredHeld = decode(&bytes)?;
            let user_key = UserKey::from_bytes(&stored.user_key).map_err(|_| corrupt())?;
            out.push(HeldEnvelope {
                digest: envelope_digest(&stored.envelope),
                user_id: stored.user_id,
                user_key,
                envelope: stored.envelope,
            });
        }
        Ok(out)
    }

    pub(crate) fn seen_envelope(&self, digest: &[u8; 32]) -> Result<bool, StoreError> {
        Ok(self.inner()?.app_record(SEEN_ENVELOPE, digest)?.is_some())
    }

    pub(crate) fn seen_content(&self, key: &[u8]) -> Result<bool, StoreError> {
        Ok(self.inner()?.app_record(SEEN_CONTENT, key)?.is_some())
    }

    pub(crate) fn outgoing(
        &self,
        message_id: &[u8; MESSAGE_ID_LEN],
    ) -> Result<Option<HistoryEntry>, StoreError> {
        let mut key = vec![b'o'];
        key.extend_from_slice(message_id);
        self.inner()?
            .app_record(HISTORY, &key)?
            .map(|b| entry_from(&b))
            .transpose()
    }

    pub(crate) fn history(&self) -> Result<Vec<HistoryEntry>, StoreError> {
        self.inner()?
            .app_records(HISTORY)?
            .iter()
            .map(entry_from)
            .collect()
    }
}

/// The stored code of a status.
fn status_code(status: Status) -> u8 {
    match status {
        Status::Received => 0,
        Status::Sent => 1,
        Status::Delivered => 2,
        Status::Read => 3,
        Status::Pending => 4,
    }
}

fn status_from(code: u8) -> Result<Status, StoreError> {
    Ok(match code {
        0 => Status::Received,
        1 => Status::Sent,
        2 => Status::Delivered,
        3 => Status::Read,
        4 => Status::Pending,
        _ => return Err(corrupt()),
    })
}

fn entry_from(bytes: &Zeroizing<Vec<u8>>) -> Result<HistoryEntry, StoreError> {
    let stored: StoredEntry = decode(bytes)?;
    let peer =
        Address::new(stored.peer_user.as_str(), stored.peer_device).map_err(|_| corrupt())?;
    Ok(HistoryEntry {
        direction: if stored.direction == 0 {
            Direction::Incoming
        } else {
            Direction::Outgoing
        },
        peer,
        message_id: stored.message_id,
        timestamp_ms: stored.timestamp_ms,
        text: stored.text,
        status: status_from(stored.status)?,
    })
}

impl IdentityStore for ClientStore {
    fn trusted_identity(&self, address: &Address) -> Result<Option<IdentityKey>, StoreError> {
        self.inner()?.trusted_identity(address)
    }

    fn device_list(&self, user_id: &str) -> Result<Option<DeviceList>, StoreError> {
        self.inner()?.device_list(user_id)
    }
}

impl PreKeyStore for ClientStore {
    fn load_account(&self) -> Result<Option<Account>, StoreError> {
        self.inner()?.load_account()
    }
}

impl SessionStore for ClientStore {
    fn load_session(&self, address: &Address) -> Result<Option<SessionRecord>, StoreError> {
        self.inner()?.load_session(address)
    }

    fn session_devices(&self, user_id: &str) -> Result<Vec<DeviceId>, StoreError> {
        self.inner()?.session_devices(user_id)
    }
}

impl Store for ClientStore {
    fn commit(&mut self, changes: Changes) -> Result<(), StoreError> {
        let mut hold = self.hold.lock().map_err(|_| lock_error())?;
        if !hold.active {
            drop(hold);
            return self.inner()?.commit(changes);
        }
        match &mut hold.changes {
            None => hold.changes = Some(changes),
            Some(held) => {
                if changes.account.is_some() {
                    held.account = changes.account;
                }
                held.identities.extend(changes.identities);
                held.sessions.extend(changes.sessions);
                held.device_lists.extend(changes.device_lists);
            }
        }
        Ok(())
    }
}
