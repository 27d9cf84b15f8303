//! SQLite storage for tacit sessions, records sealed at rest.
//!
//! [`SqliteStore`] implements every store trait of [`tacit::store`] over
//! one SQLite file (WAL journal, `synchronous=FULL`). Every record (the
//! account with its prekeys, trusted identities, session records, users'
//! verified device lists) is sealed
//! with XChaCha20-Poly1305 under a key derived from a 32-byte key the
//! application supplies; a [`Store::commit`] is one SQLite transaction, so
//! the writes of one decrypt land together or not at all.
//!
//! # Format
//!
//! ```text
//! record_key = HMAC-SHA256(app_key, "tacit-sqlite/v1/record")
//! index_key  = HMAC-SHA256(app_key, "tacit-sqlite/v1/index")
//! user_tag   = HMAC-SHA256(index_key, user_id)          (32 bytes)
//! row key    : account   "account"
//!              meta      the name (e.g. "key_check")
//!              identities, sessions   user_tag || device_id (u32 big-endian)
//!              device_lists           user_tag
//! aad        = "tacit-sqlite/v1" || 0x00 || table || 0x00 || row key
//! sealed     = 0x01 || nonce (24 random bytes)
//!              || XChaCha20-Poly1305(record_key, nonce, record, aad)
//! ```
//!
//! User ids are stored only as `user_tag`, so the file does not list whom
//! the device talks to in clear (device ids and row counts remain visible).
//! A fresh nonce is drawn for every write. The associated data binds each
//! record to its table and row, so a record copied to another row fails to
//! open ([`StoreError::Tampered`]). A device list is stored as its wire
//! bytes (`docs/PROTOCOL.md` 14.3) and verified again when it is read
//! ([`DeviceList::from_wire`]); a record that opens but does not verify is
//! [`StoreError::Corrupt`]. A sealed constant in `meta` checks the
//! key when the file is opened ([`StoreError::WrongKey`]). Rolling a row
//! back to an older sealed value of the same row is not detected.
//!
//! The schema version is kept in `schema_version`; migrations run in order,
//! in one transaction, when a file of an older version is opened. A file of
//! a newer version is refused ([`StoreError::UnknownSchema`]).
//!
//! # Application records
//!
//! An application built on the store (a client keeping its message history
//! and the ids of messages it has processed, say) can keep its own records
//! in the same file, sealed the same way, and write them in the same
//! transaction as a session commit ([`SqliteStore::commit_with`]): a
//! decrypted message and the record of having processed it then land
//! together or not at all.
//!
//! ```text
//! key_tag    = HMAC-SHA256(index_key, "app" || 0x00 || kind || 0x00 || key)
//! row key    : kind || 0x00 || key_tag
//! table      : "app_records" (in the aad)
//! ```
//!
//! Records are listed per kind in the order they were first written;
//! overwriting a record keeps its place. Keys are stored only as tags, so
//! they can be looked up but not listed: a record that needs its key must
//! hold it in its value.

use std::fmt;
use std::path::Path;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hmac::{Hmac, Mac};
use rand_core::{OsRng, RngCore};
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use sha2::Sha256;
use zeroize::Zeroizing;

use tacit::error::{StateError, StoreError};
use tacit::identity::DeviceList;
use tacit::keys::IdentityKey;
use tacit::session::{Account, SessionRecord};
use tacit::store::{Changes, IdentityStore, PreKeyStore, SessionStore, Store};
use tacit::{Address, DeviceId};

/// The schema version this build writes.
pub const SCHEMA_VERSION: u32 = 3;
/// The longest application record kind, in bytes.
pub const MAX_APP_KIND_LEN: usize = 64;
/// The version byte of a sealed record.
pub const SEAL_VERSION: u8 = 1;
const NONCE_LEN: usize = 24;
const AAD_LABEL: &[u8] = b"tacit-sqlite/v1";
const KEY_CHECK: &[u8] = b"tacit-sqlite key check v1";

/// Schema migrations: entry `i` brings a file from version `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[
    "
    CREATE TABLE meta (
        name TEXT PRIMARY KEY,
        value BLOB NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE account (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        record BLOB NOT NULL
    );
    CREATE TABLE identities (
        user_tag BLOB NOT NULL,
        device_id INTEGER NOT NULL,
        record BLOB NOT NULL,
        PRIMARY KEY (user_tag, device_id)
    ) WITHOUT ROWID;
    CREATE TABLE sessions (
        user_tag BLOB NOT NULL,
        device_id INTEGER NOT NULL,
        record BLOB NOT NULL,
        PRIMARY KEY (user_tag, device_id)
    ) WITHOUT ROWID;
",
    "
    CREATE TABLE app_records (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        kind TEXT NOT NULL,
        key_tag BLOB NOT NULL,
        record BLOB NOT NULL,
        UNIQUE (kind, key_tag)
    );
",
    "
    CREATE TABLE device_lists (
        user_tag BLOB PRIMARY KEY,
        record BLOB NOT NULL
    ) WITHOUT ROWID;
",
];

/// A write to the application's own records, applied by
/// [`SqliteStore::commit_with`] in the same transaction as the session
/// changes.
#[derive(Clone, PartialEq, Eq)]
pub enum AppWrite {
    /// Writes `value` under `(kind, key)`, replacing any record there (which
    /// keeps its place in the listing order).
    Put {
        /// The record kind (1 to [`MAX_APP_KIND_LEN`] bytes).
        kind: String,
        /// The record's key within its kind.
        key: Vec<u8>,
        /// The record; sealed before it is written, zeroized when dropped.
        value: Zeroizing<Vec<u8>>,
    },
    /// Deletes the record under `(kind, key)`, if there is one.
    Delete {
        /// The record kind.
        kind: String,
        /// The record's key within its kind.
        key: Vec<u8>,
    },
}

impl AppWrite {
    /// A [`Put`](Self::Put).
    pub fn put(kind: &str, key: &[u8], value: Vec<u8>) -> Self {
        Self::Put {
            kind: kind.into(),
            key: key.to_vec(),
            value: Zeroizing::new(value),
        }
    }

    /// A [`Delete`](Self::Delete).
    pub fn delete(kind: &str, key: &[u8]) -> Self {
        Self::Delete {
            kind: kind.into(),
            key: key.to_vec(),
        }
    }

    fn kind(&self) -> &str {
        match self {
            Self::Put { kind, .. } | Self::Delete { kind, .. } => kind,
        }
    }
}

impl fmt::Debug for AppWrite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Put { kind, value, .. } => f
                .debug_struct("Put")
                .field("kind", kind)
                .field("value_len", &value.len())
                .finish_non_exhaustive(),
            Self::Delete { kind, .. } => f
                .debug_struct("Delete")
                .field("kind", kind)
                .finish_non_exhaustive(),
        }
    }
}

fn check_kind(kind: &str) -> Result<(), StoreError> {
    if kind.is_empty() || kind.len() > MAX_APP_KIND_LEN || kind.contains('\0') {
        return Err(StoreError::backend_message(format!(
            "application record kind must be 1 to {MAX_APP_KIND_LEN} bytes without NUL"
        )));
    }
    Ok(())
}

/// A store in one SQLite file, every record sealed at rest. See the crate
/// documentation for the format.
pub struct SqliteStore {
    conn: Connection,
    record_key: Zeroizing<[u8; 32]>,
    index_key: Zeroizing<[u8; 32]>,
}

impl fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.conn.path())
            .finish_non_exhaustive()
    }
}

fn backend(e: rusqlite::Error) -> StoreError {
    StoreError::backend("sqlite", e)
}

/// [`StoreError::InUse`] when SQLite says another connection holds the
/// lock, else a backend error.
fn in_use_or_backend(e: rusqlite::Error) -> StoreError {
    match e.sqlite_error_code() {
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked) => {
            StoreError::InUse
        }
        _ => backend(e),
    }
}

fn hmac(key: &[u8; 32], message: &[u8]) -> Zeroizing<[u8; 32]> {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = match <Hmac<Sha256> as KeyInit>::new_from_slice(key) {
        Ok(mac) => mac,
        Err(_) => return Zeroizing::new([0u8; 32]),
    };
    mac.update(message);
    Zeroizing::new(mac.finalize().into_bytes().into())
}

fn row_key(user_tag: &[u8; 32], device_id: DeviceId) -> [u8; 36] {
    let mut out = [0u8; 36];
    out[..32].copy_from_slice(user_tag);
    out[32..].copy_from_slice(&device_id.to_be_bytes());
    out
}

fn aad(table: &str, row: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(AAD_LABEL.len() + table.len() + row.len() + 2);
    out.extend_from_slice(AAD_LABEL);
    out.push(0);
    out.extend_from_slice(table.as_bytes());
    out.push(0);
    out.extend_from_slice(row);
    out
}

impl SqliteStore {
    /// Opens (or creates) the store at `path` with the application's key.
    /// A file sealed under another key is refused with
    /// [`StoreError::WrongKey`].
    pub fn open(path: impl AsRef<Path>, key: &[u8; 32]) -> Result<Self, StoreError> {
        Self::with_connection(Connection::open(path).map_err(backend)?, key)
    }

    /// A store in memory (for tests).
    pub fn open_in_memory(key: &[u8; 32]) -> Result<Self, StoreError> {
        Self::with_connection(Connection::open_in_memory().map_err(backend)?, key)
    }

    fn with_connection(mut conn: Connection, key: &[u8; 32]) -> Result<Self, StoreError> {
        // The connection takes the file's lock on its first access and
        // keeps it until it closes (exclusive locking mode): a second
        // opener, in this process or another, gets `InUse` at once.
        conn.pragma_update(None, "locking_mode", "EXCLUSIVE")
            .map_err(backend)?;
        conn.busy_timeout(std::time::Duration::ZERO)
            .map_err(backend)?;
        // In memory, the journal mode stays "memory"; on a file it is WAL
        // (without shared memory, as the lock is exclusive).
        let _mode: String = conn
            .query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))
            .map_err(in_use_or_backend)?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(backend)?;
        // The first write transaction takes the exclusive lock for good.
        migrate(&mut conn)?;
        let store = Self {
            conn,
            record_key: hmac(key, b"tacit-sqlite/v1/record"),
            index_key: hmac(key, b"tacit-sqlite/v1/index"),
        };
        store.check_key()?;
        Ok(store)
    }

    /// Opens the key-check record, or writes it in a new file.
    fn check_key(&self) -> Result<(), StoreError> {
        let sealed: Option<Vec<u8>> = self
            .conn
            .query_row(
                "SELECT value FROM meta WHERE name = 'key_check'",
                [],
                |row| row.get(0),
            )
            .optional()
            .map_err(backend)?;
        match sealed {
            Some(sealed) => match self.open_record("meta", b"key_check", &sealed) {
                Ok(plain) if plain.as_slice() == KEY_CHECK => Ok(()),
                _ => Err(StoreError::WrongKey),
            },
            None => {
                let sealed = self.seal("meta", b"key_check", KEY_CHECK)?;
                self.conn
                    .execute(
                        "INSERT INTO meta (name, value) VALUES ('key_check', ?1)",
                        params![sealed],
                    )
                    .map_err(backend)?;
                Ok(())
            }
        }
    }

    fn user_tag(&self, user_id: &str) -> [u8; 32] {
        *hmac(&self.index_key, user_id.as_bytes())
    }

    fn seal(&self, table: &str, row: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, StoreError> {
        let mut nonce = [0u8; NONCE_LEN];
        OsRng
            .try_fill_bytes(&mut nonce)
            .map_err(|e| StoreError::backend("randomness", e))?;
        let cipher = XChaCha20Poly1305::new(self.record_key.as_ref().into());
        let aad = aad(table, row);
        let ciphertext = cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad: &aad,
                },
            )
            .map_err(|_| StoreError::backend_message("record too long"))?;
        let mut out = Vec::with_capacity(1 + NONCE_LEN + ciphertext.len());
        out.push(SEAL_VERSION);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ciphertext);
        Ok(out)
    }

    fn open_record(
        &self,
        table: &'static str,
        row: &[u8],
        sealed: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, StoreError> {
        let tampered = || StoreError::Tampered {
            table,
            row: printable(row),
        };
        let (&version, rest) = sealed.split_first().ok_or_else(tampered)?;
        if version != SEAL_VERSION || rest.len() < NONCE_LEN {
            return Err(tampered());
        }
        let (nonce, ciphertext) = rest.split_at(NONCE_LEN);
        let cipher = XChaCha20Poly1305::new(self.record_key.as_ref().into());
        let aad = aad(table, row);
        cipher
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: &aad,
                },
            )
            .map(Zeroizing::new)
            .map_err(|_| tampered())
    }

    fn load_row(
        &self,
        table: &'static str,
        address: &Address,
    ) -> Result<Option<Zeroizing<Vec<u8>>>, StoreError> {
        let tag = self.user_tag(address.user_id());
        let sql = match table {
            "sessions" => "SELECT record FROM sessions WHERE user_tag = ?1 AND device_id = ?2",
            _ => "SELECT record FROM identities WHERE user_tag = ?1 AND device_id = ?2",
        };
        let sealed: Option<Vec<u8>> = self
            .conn
            .prepare_cached(sql)
            .and_then(|mut stmt| {
                stmt.query_row(params![&tag[..], address.device_id()], |row| row.get(0))
                    .optional()
            })
            .map_err(backend)?;
        sealed
            .map(|s| self.open_record(table, &row_key(&tag, address.device_id()), &s))
            .transpose()
    }

    fn app_tag(&self, kind: &str, key: &[u8]) -> [u8; 32] {
        let mut message = Vec::with_capacity(kind.len() + key.len() + 5);
        message.extend_from_slice(b"app");
        message.push(0);
        message.extend_from_slice(kind.as_bytes());
        message.push(0);
        message.extend_from_slice(key);
        *hmac(&self.index_key, &message)
    }

    fn app_row(kind: &str, tag: &[u8; 32]) -> Vec<u8> {
        let mut row = Vec::with_capacity(kind.len() + 33);
        row.extend_from_slice(kind.as_bytes());
        row.push(0);
        row.extend_from_slice(tag);
        row
    }

    /// The application record under `(kind, key)`, if there is one.
    pub fn app_record(
        &self,
        kind: &str,
        key: &[u8],
    ) -> Result<Option<Zeroizing<Vec<u8>>>, StoreError> {
        check_kind(kind)?;
        let tag = self.app_tag(kind, key);
        let sealed: Option<Vec<u8>> = self
            .conn
            .prepare_cached("SELECT record FROM app_records WHERE kind = ?1 AND key_tag = ?2")
            .and_then(|mut stmt| {
                stmt.query_row(params![kind, &tag[..]], |row| row.get(0))
                    .optional()
            })
            .map_err(backend)?;
        sealed
            .map(|s| self.open_record("app_records", &Self::app_row(kind, &tag), &s))
            .transpose()
    }

    /// Every application record of `kind`, in the order they were first
    /// written.
    pub fn app_records(&self, kind: &str) -> Result<Vec<Zeroizing<Vec<u8>>>, StoreError> {
        check_kind(kind)?;
        let mut stmt = self
            .conn
            .prepare_cached("SELECT key_tag, record FROM app_records WHERE kind = ?1 ORDER BY seq")
            .map_err(backend)?;
        let rows = stmt
            .query_map(params![kind], |row| {
                Ok((row.get::<_, Vec<u8>>(0)?, row.get::<_, Vec<u8>>(1)?))
            })
            .map_err(backend)?;
        let mut out = Vec::new();
        for row in rows {
            let (tag, sealed) = row.map_err(backend)?;
            let mut row_key = Vec::with_capacity(kind.len() + 1 + tag.len());
            row_key.extend_from_slice(kind.as_bytes());
            row_key.push(0);
            row_key.extend_from_slice(&tag);
            out.push(self.open_record("app_records", &row_key, &sealed)?);
        }
        Ok(out)
    }

    /// Applies `changes` (as [`Store::commit`]) and the application writes
    /// `writes`, in order, in one transaction: all of them or none.
    pub fn commit_with(&mut self, changes: Changes, writes: &[AppWrite]) -> Result<(), StoreError> {
        let mut sealed_writes = Vec::with_capacity(writes.len());
        for write in writes {
            check_kind(write.kind())?;
            let tag = match write {
                AppWrite::Put { kind, key, .. } | AppWrite::Delete { kind, key } => {
                    self.app_tag(kind, key)
                }
            };
            let sealed = match write {
                AppWrite::Put { kind, value, .. } => {
                    Some(self.seal("app_records", &Self::app_row(kind, &tag), value)?)
                }
                AppWrite::Delete { .. } => None,
            };
            sealed_writes.push((write.kind(), tag, sealed));
        }
        self.commit_inner(changes, |tx| {
            for (kind, tag, sealed) in &sealed_writes {
                match sealed {
                    Some(sealed) => tx.execute(
                        "INSERT INTO app_records (kind, key_tag, record) VALUES (?1, ?2, ?3)
                         ON CONFLICT (kind, key_tag) DO UPDATE SET record = excluded.record",
                        params![kind, &tag[..], sealed],
                    ),
                    None => tx.execute(
                        "DELETE FROM app_records WHERE kind = ?1 AND key_tag = ?2",
                        params![kind, &tag[..]],
                    ),
                }
                .map_err(backend)?;
            }
            Ok(())
        })
    }
}

fn printable(row: &[u8]) -> String {
    match std::str::from_utf8(row) {
        Ok(s) if row.len() != 36 && row.len() != 32 => s.to_owned(),
        _ => row.iter().map(|b| format!("{b:02x}")).collect(),
    }
}

fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(in_use_or_backend)?;
    tx.execute_batch("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);")
        .map_err(backend)?;
    let version: Option<u32> = tx
        .query_row("SELECT version FROM schema_version", [], |row| row.get(0))
        .optional()
        .map_err(backend)?;
    let from = version.unwrap_or(0);
    let from_index = usize::try_from(from).unwrap_or(usize::MAX);
    if from_index > MIGRATIONS.len() {
        return Err(StoreError::UnknownSchema(from));
    }
    for migration in &MIGRATIONS[from_index..] {
        tx.execute_batch(migration).map_err(backend)?;
    }
    if version.is_none() {
        tx.execute(
            "INSERT INTO schema_version (version) VALUES (?1)",
            params![SCHEMA_VERSION],
        )
        .map_err(backend)?;
    } else if from != SCHEMA_VERSION {
        tx.execute(
            "UPDATE schema_version SET version = ?1",
            params![SCHEMA_VERSION],
        )
        .map_err(backend)?;
    }
    tx.commit().map_err(backend)
}

impl IdentityStore for SqliteStore {
    fn trusted_identity(&self, address: &Address) -> Result<Option<IdentityKey>, StoreError> {
        let corrupt = StoreError::Corrupt {
            table: "identities",
            error: StateError::Corrupt,
        };
        match self.load_row("identities", address)? {
            None => Ok(None),
            Some(bytes) => IdentityKey::try_from_slice(&bytes)
                .map(Some)
                .map_err(|_| corrupt),
        }
    }

    /// Opens the sealed wire bytes of the list and verifies them again
    /// ([`DeviceList::from_wire`]), checking that the list is `user_id`'s.
    fn device_list(&self, user_id: &str) -> Result<Option<DeviceList>, StoreError> {
        let tag = self.user_tag(user_id);
        let sealed: Option<Vec<u8>> = self
            .conn
            .prepare_cached("SELECT record FROM device_lists WHERE user_tag = ?1")
            .and_then(|mut stmt| {
                stmt.query_row(params![&tag[..]], |row| row.get(0))
                    .optional()
            })
            .map_err(backend)?;
        let Some(sealed) = sealed else {
            return Ok(None);
        };
        let bytes = self.open_record("device_lists", &tag, &sealed)?;
        let corrupt = StoreError::Corrupt {
            table: "device_lists",
            error: StateError::Corrupt,
        };
        match DeviceList::from_wire(&bytes) {
            Ok(list) if list.user_id() == user_id => Ok(Some(list)),
            _ => Err(corrupt),
        }
    }
}

impl PreKeyStore for SqliteStore {
    fn load_account(&self) -> Result<Option<Account>, StoreError> {
        let sealed: Option<Vec<u8>> = self
            .conn
            .query_row("SELECT record FROM account WHERE id = 1", [], |row| {
                row.get(0)
            })
            .optional()
            .map_err(backend)?;
        let Some(sealed) = sealed else {
            return Ok(None);
        };
        let bytes = self.open_record("account", b"account", &sealed)?;
        Account::from_bytes(&bytes)
            .map(Some)
            .map_err(|error| StoreError::Corrupt {
                table: "account",
                error,
            })
    }
}

impl SessionStore for SqliteStore {
    fn load_session(&self, address: &Address) -> Result<Option<SessionRecord>, StoreError> {
        match self.load_row("sessions", address)? {
            None => Ok(None),
            Some(bytes) => SessionRecord::from_bytes(&bytes)
                .map(Some)
                .map_err(|error| StoreError::Corrupt {
                    table: "sessions",
                    error,
                }),
        }
    }

    fn session_devices(&self, user_id: &str) -> Result<Vec<DeviceId>, StoreError> {
        let tag = self.user_tag(user_id);
        let mut stmt = self
            .conn
            .prepare_cached("SELECT device_id FROM sessions WHERE user_tag = ?1 ORDER BY device_id")
            .map_err(backend)?;
        let rows = stmt
            .query_map(params![&tag[..]], |row| row.get::<_, u32>(0))
            .map_err(backend)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(backend)
    }
}

impl Store for SqliteStore {
    /// Writes every change in one immediate transaction: the account first,
    /// then identities, sessions and device lists. Any error rolls the whole
    /// transaction back.
    fn commit(&mut self, changes: Changes) -> Result<(), StoreError> {
        self.commit_inner(changes, |_| Ok(()))
    }
}

impl SqliteStore {
    /// Seals `changes`, then writes them and runs `extra` in one immediate
    /// transaction.
    fn commit_inner(
        &mut self,
        changes: Changes,
        extra: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        // Seal everything before touching the database.
        let account = changes
            .account
            .as_ref()
            .map(|a| self.seal("account", b"account", &a.to_bytes()))
            .transpose()?;
        let mut identities = Vec::with_capacity(changes.identities.len());
        for (address, identity) in &changes.identities {
            let tag = self.user_tag(address.user_id());
            let row = row_key(&tag, address.device_id());
            let sealed = self.seal("identities", &row, &identity.to_bytes())?;
            identities.push((tag, address.device_id(), sealed));
        }
        let mut sessions = Vec::with_capacity(changes.sessions.len());
        for (address, record) in &changes.sessions {
            let tag = self.user_tag(address.user_id());
            let row = row_key(&tag, address.device_id());
            let sealed = record
                .as_ref()
                .map(|r| self.seal("sessions", &row, &r.to_bytes()))
                .transpose()?;
            sessions.push((tag, address.device_id(), sealed));
        }
        let mut device_lists = Vec::with_capacity(changes.device_lists.len());
        for list in &changes.device_lists {
            let tag = self.user_tag(list.user_id());
            let sealed = self.seal("device_lists", &tag, &list.to_wire())?;
            device_lists.push((tag, sealed));
        }

        // Dropping the transaction without commit rolls it back.
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(backend)?;
        if let Some(sealed) = account {
            tx.execute(
                "INSERT INTO account (id, record) VALUES (1, ?1)
                 ON CONFLICT (id) DO UPDATE SET record = excluded.record",
                params![sealed],
            )
            .map_err(backend)?;
        }
        for (tag, device_id, sealed) in identities {
            tx.execute(
                "INSERT INTO identities (user_tag, device_id, record) VALUES (?1, ?2, ?3)
                 ON CONFLICT (user_tag, device_id) DO UPDATE SET record = excluded.record",
                params![&tag[..], device_id, sealed],
            )
            .map_err(backend)?;
        }
        for (tag, device_id, sealed) in sessions {
            match sealed {
                Some(sealed) => tx.execute(
                    "INSERT INTO sessions (user_tag, device_id, record) VALUES (?1, ?2, ?3)
                     ON CONFLICT (user_tag, device_id) DO UPDATE SET record = excluded.record",
                    params![&tag[..], device_id, sealed],
                ),
                None => tx.execute(
                    "DELETE FROM sessions WHERE user_tag = ?1 AND device_id = ?2",
                    params![&tag[..], device_id],
                ),
            }
            .map_err(backend)?;
        }
        for (tag, sealed) in device_lists {
            tx.execute(
                "INSERT INTO device_lists (user_tag, record) VALUES (?1, ?2)
                 ON CONFLICT (user_tag) DO UPDATE SET record = excluded.record",
                params![&tag[..], sealed],
            )
            .map_err(backend)?;
        }
        extra(&tx)?;
        tx.commit().map_err(backend)
    }
}
