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
//! The sealing is `tacit-seal`'s construction under the label
//! `tacit-sqlite/v1` (the browser store of `tacit-wasm` uses the same one
//! under its own label):
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
//!              || gen (u64 big-endian: the generation that wrote the row)
//! sealed     = 0x02 || nonce (24 random bytes)
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
//! key when the file is opened ([`StoreError::WrongKey`]).
//!
//! # Roll-back and deletion
//!
//! Every commit raises the store's generation; each row carries the
//! generation that wrote it (in its associated data), a sealed digest over
//! all rows' (table, row, generation) is updated in the same transaction,
//! and the generation is written to a counter file beside the database
//! (`PATH-generation`). Opening refuses a row put back to an older value or
//! deleted ([`StoreError::Inconsistent`]), a file older than its counter
//! ([`StoreError::RolledBack`]), and a used file without its counter
//! ([`StoreError::CounterMissing`]); [`SqliteStore::open_restored`] accepts
//! a restored file by dropping every session. A file restored together
//! with its counter is not detected. `docs/PROTOCOL.md` 11 has the details.
//!
//! # One store per file
//!
//! The store holds the file's lock while it is open; a second store on the
//! same file gets [`StoreError::InUse`].
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

mod generation;

use std::fmt;
use std::path::Path;

use generation::CounterFile;

use rand_core::OsRng;
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use tacit_seal::{hmac, RecordSealer};
use zeroize::Zeroizing;

use tacit::error::{StateError, StoreError};
use tacit::identity::DeviceList;
use tacit::keys::IdentityKey;
use tacit::session::{Account, SessionRecord};
use tacit::store::{Changes, IdentityStore, PreKeyStore, SessionStore, Store};
use tacit::{Address, DeviceId};

/// The schema version this build writes.
pub const SCHEMA_VERSION: u32 = 4;
/// The longest application record kind, in bytes.
pub const MAX_APP_KIND_LEN: usize = 64;
/// The version byte of a sealed record: its associated data ends with the
/// row's generation. (Version 1, without it, is read for rows of
/// generation 0, written before schema 4.)
pub const SEAL_VERSION: u8 = tacit_seal::SEAL_VERSION;
/// The label of the sealing construction (`tacit_seal`): it starts the
/// associated data and the key derivations.
const SEAL_LABEL: &str = "tacit-sqlite/v1";
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
    "
    ALTER TABLE account ADD COLUMN gen INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE identities ADD COLUMN gen INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE sessions ADD COLUMN gen INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE device_lists ADD COLUMN gen INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE app_records ADD COLUMN gen INTEGER NOT NULL DEFAULT 0;
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
    /// The record and index keys (`tacit_seal`).
    sealer: RecordSealer,
    /// The generation of the last commit.
    generation: u64,
    /// The XOR of the digest elements of every row.
    digest: [u8; 32],
    /// The high-water mark beside the file (none in memory).
    counter: Option<CounterFile>,
    /// Whether the counter file lags the store (its last write failed).
    counter_behind: bool,
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

fn row_key(user_tag: &[u8; 32], device_id: DeviceId) -> [u8; 36] {
    let mut out = [0u8; 36];
    out[..32].copy_from_slice(user_tag);
    out[32..].copy_from_slice(&device_id.to_be_bytes());
    out
}

/// How a store is opened.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Opening {
    /// Refuse a store behind its high-water mark.
    Checked,
    /// Accept a restored store: drop its sessions, raise the mark.
    Restored,
}

impl SqliteStore {
    /// Opens (or creates) the store at `path` with the application's key.
    /// A file sealed under another key is refused with
    /// [`StoreError::WrongKey`].
    ///
    /// The rows must match the store's sealed digest of them
    /// ([`StoreError::Inconsistent`] if a row was put back to an older
    /// value, deleted or added), and the store must not be behind the
    /// high-water mark in the file `PATH-generation` beside it
    /// ([`StoreError::RolledBack`], or [`StoreError::CounterMissing`] when
    /// that file is gone): see [`open_restored`](Self::open_restored).
    pub fn open(path: impl AsRef<Path>, key: &[u8; 32]) -> Result<Self, StoreError> {
        let counter = CounterFile::beside(path.as_ref(), key);
        let conn = Connection::open(path).map_err(backend)?;
        Self::with_connection(conn, key, Some(counter), Opening::Checked)
    }

    /// Opens a store the application restored from a backup (after
    /// [`StoreError::RolledBack`] or [`StoreError::CounterMissing`]):
    /// deletes every session record, so no message key of an old session
    /// is used again (each peer needs a fresh handshake), keeps the rest,
    /// and raises the high-water mark to the store. The rows must still
    /// match their digest ([`StoreError::Inconsistent`] is not waived).
    pub fn open_restored(path: impl AsRef<Path>, key: &[u8; 32]) -> Result<Self, StoreError> {
        let counter = CounterFile::beside(path.as_ref(), key);
        let conn = Connection::open(path).map_err(backend)?;
        Self::with_connection(conn, key, Some(counter), Opening::Restored)
    }

    /// A store in memory (for tests).
    pub fn open_in_memory(key: &[u8; 32]) -> Result<Self, StoreError> {
        let conn = Connection::open_in_memory().map_err(backend)?;
        Self::with_connection(conn, key, None, Opening::Checked)
    }

    fn with_connection(
        mut conn: Connection,
        key: &[u8; 32],
        counter: Option<CounterFile>,
        opening: Opening,
    ) -> Result<Self, StoreError> {
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
        let mut store = Self {
            conn,
            sealer: RecordSealer::new(key, SEAL_LABEL),
            generation: 0,
            digest: [0; 32],
            counter,
            counter_behind: false,
        };
        store.check_key()?;
        store.check_generation(opening)?;
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
            Some(sealed) => match self.open_record("meta", b"key_check", 0, &sealed) {
                Ok(plain) if plain.as_slice() == KEY_CHECK => Ok(()),
                _ => Err(StoreError::WrongKey),
            },
            None => {
                let sealed = self.seal("meta", b"key_check", 0, KEY_CHECK)?;
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
        self.sealer.tag(user_id.as_bytes())
    }

    fn seal(
        &self,
        table: &str,
        row: &[u8],
        generation: u64,
        plaintext: &[u8],
    ) -> Result<Vec<u8>, StoreError> {
        seal_record(&self.sealer, table, row, generation, plaintext)
    }

    /// Opens the record sealed at `row` of `table` with the row's
    /// generation `generation` (from its `gen` column).
    fn open_record(
        &self,
        table: &'static str,
        row: &[u8],
        generation: u64,
        sealed: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, StoreError> {
        let tampered = || StoreError::Tampered {
            table,
            row: printable(row),
        };
        self.sealer
            .open(table, row, generation, sealed)
            .ok_or_else(tampered)
    }

    fn load_row(
        &self,
        table: &'static str,
        address: &Address,
    ) -> Result<Option<Zeroizing<Vec<u8>>>, StoreError> {
        let tag = self.user_tag(address.user_id());
        let sql = match table {
            "sessions" => "SELECT record, gen FROM sessions WHERE user_tag = ?1 AND device_id = ?2",
            _ => "SELECT record, gen FROM identities WHERE user_tag = ?1 AND device_id = ?2",
        };
        let sealed: Option<(Vec<u8>, u64)> = self
            .conn
            .prepare_cached(sql)
            .and_then(|mut stmt| {
                stmt.query_row(params![&tag[..], address.device_id()], |row| {
                    Ok((row.get(0)?, row.get(1)?))
                })
                .optional()
            })
            .map_err(backend)?;
        sealed
            .map(|(s, g)| self.open_record(table, &row_key(&tag, address.device_id()), g, &s))
            .transpose()
    }

    fn app_tag(&self, kind: &str, key: &[u8]) -> [u8; 32] {
        let mut message = Vec::with_capacity(kind.len() + key.len() + 5);
        message.extend_from_slice(b"app");
        message.push(0);
        message.extend_from_slice(kind.as_bytes());
        message.push(0);
        message.extend_from_slice(key);
        self.sealer.tag(&message)
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
        let sealed: Option<(Vec<u8>, u64)> = self
            .conn
            .prepare_cached("SELECT record, gen FROM app_records WHERE kind = ?1 AND key_tag = ?2")
            .and_then(|mut stmt| {
                stmt.query_row(params![kind, &tag[..]], |row| {
                    Ok((row.get(0)?, row.get(1)?))
                })
                .optional()
            })
            .map_err(backend)?;
        sealed
            .map(|(s, g)| self.open_record("app_records", &Self::app_row(kind, &tag), g, &s))
            .transpose()
    }

    /// Every application record of `kind`, in the order they were first
    /// written.
    pub fn app_records(&self, kind: &str) -> Result<Vec<Zeroizing<Vec<u8>>>, StoreError> {
        check_kind(kind)?;
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT key_tag, record, gen FROM app_records WHERE kind = ?1 ORDER BY seq",
            )
            .map_err(backend)?;
        let rows = stmt
            .query_map(params![kind], |row| {
                Ok((
                    row.get::<_, Vec<u8>>(0)?,
                    row.get::<_, Vec<u8>>(1)?,
                    row.get::<_, u64>(2)?,
                ))
            })
            .map_err(backend)?;
        let mut out = Vec::new();
        for row in rows {
            let (tag, sealed, generation) = row.map_err(backend)?;
            let mut row_key = Vec::with_capacity(kind.len() + 1 + tag.len());
            row_key.extend_from_slice(kind.as_bytes());
            row_key.push(0);
            row_key.extend_from_slice(&tag);
            out.push(self.open_record("app_records", &row_key, generation, &sealed)?);
        }
        Ok(out)
    }

    /// Applies `changes` (as [`Store::commit`]) and the application writes
    /// `writes`, in order, in one transaction: all of them or none.
    pub fn commit_with(&mut self, changes: Changes, writes: &[AppWrite]) -> Result<(), StoreError> {
        let mut app = Vec::with_capacity(writes.len());
        for write in writes {
            check_kind(write.kind())?;
            let (kind, key, value) = match write {
                AppWrite::Put { kind, key, value } => (kind, key, Some(value.as_slice())),
                AppWrite::Delete { kind, key } => (kind, key, None),
            };
            app.push((kind.as_str(), self.app_tag(kind, key), value));
        }
        self.commit_inner(changes, &app)
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
        let sealed: Option<(Vec<u8>, u64)> = self
            .conn
            .prepare_cached("SELECT record, gen FROM device_lists WHERE user_tag = ?1")
            .and_then(|mut stmt| {
                stmt.query_row(params![&tag[..]], |row| Ok((row.get(0)?, row.get(1)?)))
                    .optional()
            })
            .map_err(backend)?;
        let Some((sealed, generation)) = sealed else {
            return Ok(None);
        };
        let bytes = self.open_record("device_lists", &tag, generation, &sealed)?;
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
        let sealed: Option<(Vec<u8>, u64)> = self
            .conn
            .query_row("SELECT record, gen FROM account WHERE id = 1", [], |row| {
                Ok((row.get(0)?, row.get(1)?))
            })
            .optional()
            .map_err(backend)?;
        let Some((sealed, generation)) = sealed else {
            return Ok(None);
        };
        let bytes = self.open_record("account", b"account", generation, &sealed)?;
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
        self.commit_inner(changes, &[])
    }
}

/// Seals `plaintext` for `row` of `table` at `generation` (format in the
/// crate documentation).
fn seal_record(
    sealer: &RecordSealer,
    table: &str,
    row: &[u8],
    generation: u64,
    plaintext: &[u8],
) -> Result<Vec<u8>, StoreError> {
    sealer
        .seal(table, row, generation, plaintext, &mut OsRng)
        .map_err(|e| StoreError::backend("sealing", e))
}

/// An application write, sealed or not yet: kind, key tag, and the value
/// (`None` deletes).
type AppRow<'a> = (&'a str, [u8; 32], Option<&'a [u8]>);

/// Replaces (or deletes, when `new` is `None`) the digest element of the
/// row selected by `select` (which reads its `gen`), inside `tx`.
fn swap_element(
    tx: &rusqlite::Transaction<'_>,
    digest: &mut [u8; 32],
    index_key: &[u8; 32],
    (table, row): (&str, &[u8]),
    select: (&str, &[&dyn rusqlite::ToSql]),
    new: Option<u64>,
) -> Result<(), StoreError> {
    let old: Option<u64> = tx
        .prepare_cached(select.0)
        .and_then(|mut stmt| stmt.query_row(select.1, |r| r.get(0)).optional())
        .map_err(backend)?;
    for generation in old.into_iter().chain(new) {
        generation::toggle(
            digest,
            &generation::element(index_key, table, row, generation),
        );
    }
    Ok(())
}

impl SqliteStore {
    /// Seals `changes` and the application rows `app` at the next
    /// generation, then writes them, the digest and the new generation in
    /// one immediate transaction, and raises the high-water mark.
    fn commit_inner(&mut self, changes: Changes, app: &[AppRow<'_>]) -> Result<(), StoreError> {
        // A mark that lags (its last write failed) is brought up first.
        if self.counter_behind {
            self.store_counter()?;
        }
        let generation = self
            .generation
            .checked_add(1)
            .ok_or_else(|| StoreError::backend_message("generation exhausted"))?;
        // Seal everything before touching the database.
        let account = changes
            .account
            .as_ref()
            .map(|a| self.seal("account", b"account", generation, &a.to_bytes()))
            .transpose()?;
        let mut identities = Vec::with_capacity(changes.identities.len());
        for (address, identity) in &changes.identities {
            let tag = self.user_tag(address.user_id());
            let row = row_key(&tag, address.device_id());
            let sealed = self.seal("identities", &row, generation, &identity.to_bytes())?;
            identities.push((tag, address.device_id(), sealed));
        }
        let mut sessions = Vec::with_capacity(changes.sessions.len());
        for (address, record) in &changes.sessions {
            let tag = self.user_tag(address.user_id());
            let row = row_key(&tag, address.device_id());
            let sealed = record
                .as_ref()
                .map(|r| self.seal("sessions", &row, generation, &r.to_bytes()))
                .transpose()?;
            sessions.push((tag, address.device_id(), sealed));
        }
        let mut device_lists = Vec::with_capacity(changes.device_lists.len());
        for list in &changes.device_lists {
            let tag = self.user_tag(list.user_id());
            let sealed = self.seal("device_lists", &tag, generation, &list.to_wire())?;
            device_lists.push((tag, sealed));
        }
        let mut app_rows = Vec::with_capacity(app.len());
        for (kind, tag, value) in app {
            let row = Self::app_row(kind, tag);
            let sealed = value
                .map(|v| self.seal("app_records", &row, generation, v))
                .transpose()?;
            app_rows.push((*kind, *tag, row, sealed));
        }

        let sealer = self.sealer.clone();
        let index_key = sealer.index_key();
        let mut digest = self.digest;
        // Dropping the transaction without commit rolls it back.
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(backend)?;
        if let Some(sealed) = account {
            swap_element(
                &tx,
                &mut digest,
                index_key,
                ("account", b"account"),
                ("SELECT gen FROM account WHERE id = 1", &[]),
                Some(generation),
            )?;
            tx.execute(
                "INSERT INTO account (id, record, gen) VALUES (1, ?1, ?2)
                 ON CONFLICT (id) DO UPDATE SET record = excluded.record, gen = excluded.gen",
                params![sealed, generation],
            )
            .map_err(backend)?;
        }
        for (tag, device_id, sealed) in identities {
            swap_element(
                &tx,
                &mut digest,
                index_key,
                ("identities", &row_key(&tag, device_id)),
                (
                    "SELECT gen FROM identities WHERE user_tag = ?1 AND device_id = ?2",
                    &[&&tag[..], &device_id],
                ),
                Some(generation),
            )?;
            tx.execute(
                "INSERT INTO identities (user_tag, device_id, record, gen) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (user_tag, device_id)
                 DO UPDATE SET record = excluded.record, gen = excluded.gen",
                params![&tag[..], device_id, sealed, generation],
            )
            .map_err(backend)?;
        }
        for (tag, device_id, sealed) in sessions {
            swap_element(
                &tx,
                &mut digest,
                index_key,
                ("sessions", &row_key(&tag, device_id)),
                (
                    "SELECT gen FROM sessions WHERE user_tag = ?1 AND device_id = ?2",
                    &[&&tag[..], &device_id],
                ),
                sealed.as_ref().map(|_| generation),
            )?;
            match sealed {
                Some(sealed) => tx.execute(
                    "INSERT INTO sessions (user_tag, device_id, record, gen) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (user_tag, device_id)
                     DO UPDATE SET record = excluded.record, gen = excluded.gen",
                    params![&tag[..], device_id, sealed, generation],
                ),
                None => tx.execute(
                    "DELETE FROM sessions WHERE user_tag = ?1 AND device_id = ?2",
                    params![&tag[..], device_id],
                ),
            }
            .map_err(backend)?;
        }
        for (tag, sealed) in device_lists {
            swap_element(
                &tx,
                &mut digest,
                index_key,
                ("device_lists", &tag),
                (
                    "SELECT gen FROM device_lists WHERE user_tag = ?1",
                    &[&&tag[..]],
                ),
                Some(generation),
            )?;
            tx.execute(
                "INSERT INTO device_lists (user_tag, record, gen) VALUES (?1, ?2, ?3)
                 ON CONFLICT (user_tag) DO UPDATE SET record = excluded.record, gen = excluded.gen",
                params![&tag[..], sealed, generation],
            )
            .map_err(backend)?;
        }
        for (kind, tag, row, sealed) in app_rows {
            swap_element(
                &tx,
                &mut digest,
                index_key,
                ("app_records", &row),
                (
                    "SELECT gen FROM app_records WHERE kind = ?1 AND key_tag = ?2",
                    &[&kind, &&tag[..]],
                ),
                sealed.as_ref().map(|_| generation),
            )?;
            match sealed {
                Some(sealed) => tx.execute(
                    "INSERT INTO app_records (kind, key_tag, record, gen) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (kind, key_tag)
                     DO UPDATE SET record = excluded.record, gen = excluded.gen",
                    params![kind, &tag[..], sealed, generation],
                ),
                None => tx.execute(
                    "DELETE FROM app_records WHERE kind = ?1 AND key_tag = ?2",
                    params![kind, &tag[..]],
                ),
            }
            .map_err(backend)?;
        }
        Self::write_state(&sealer, &tx, generation, &digest)?;
        tx.commit().map_err(backend)?;
        self.generation = generation;
        self.digest = digest;
        // The commit stands; a mark that could not be written is retried
        // before the next commit, which fails (writing nothing) until then.
        if self.store_counter().is_err() {
            self.counter_behind = true;
        }
        Ok(())
    }

    /// Writes the sealed state row: `generation (u64 big-endian) || digest`.
    fn write_state(
        sealer: &RecordSealer,
        tx: &rusqlite::Transaction<'_>,
        generation: u64,
        digest: &[u8; 32],
    ) -> Result<(), StoreError> {
        let mut state = Zeroizing::new(Vec::with_capacity(40));
        state.extend_from_slice(&generation.to_be_bytes());
        state.extend_from_slice(digest);
        let sealed = seal_record(sealer, "meta", b"state", 0, &state)?;
        tx.execute(
            "INSERT INTO meta (name, value) VALUES ('state', ?1)
             ON CONFLICT (name) DO UPDATE SET value = excluded.value",
            params![sealed],
        )
        .map_err(backend)?;
        Ok(())
    }

    /// Raises the high-water mark to the store's generation.
    fn store_counter(&mut self) -> Result<(), StoreError> {
        if let Some(counter) = &self.counter {
            counter.store(self.generation)?;
        }
        self.counter_behind = false;
        Ok(())
    }

    /// The digest of the rows as they are, and the highest generation
    /// among them.
    fn rows_digest(&self) -> Result<([u8; 32], u64), StoreError> {
        let mut digest = [0u8; 32];
        let mut highest = 0u64;
        let queries: [(&str, &str); 5] = [
            ("account", "SELECT x'', 0, gen FROM account"),
            (
                "identities",
                "SELECT user_tag, device_id, gen FROM identities",
            ),
            ("sessions", "SELECT user_tag, device_id, gen FROM sessions"),
            ("device_lists", "SELECT user_tag, 0, gen FROM device_lists"),
            ("app_records", "SELECT key_tag, kind, gen FROM app_records"),
        ];
        for (table, sql) in queries {
            let mut stmt = self.conn.prepare(sql).map_err(backend)?;
            let mut rows = stmt.query([]).map_err(backend)?;
            while let Some(r) = rows.next().map_err(backend)? {
                let key: Vec<u8> = r.get(0).map_err(backend)?;
                let generation: u64 = r.get(2).map_err(backend)?;
                let row = match table {
                    "account" => b"account".to_vec(),
                    "identities" | "sessions" => {
                        let tag: [u8; 32] = key
                            .as_slice()
                            .try_into()
                            .map_err(|_| StoreError::Inconsistent)?;
                        row_key(&tag, r.get(1).map_err(backend)?).to_vec()
                    }
                    "app_records" => {
                        let kind: String = r.get(1).map_err(backend)?;
                        let mut row = kind.into_bytes();
                        row.push(0);
                        row.extend_from_slice(&key);
                        row
                    }
                    _ => key,
                };
                highest = highest.max(generation);
                generation::toggle(
                    &mut digest,
                    &generation::element(self.sealer.index_key(), table, &row, generation),
                );
            }
        }
        Ok((digest, highest))
    }

    /// Checks the rows against the sealed digest and the generation against
    /// the high-water mark (`docs/PROTOCOL.md` 11); for a restored store,
    /// drops every session and raises the mark.
    fn check_generation(&mut self, opening: Opening) -> Result<(), StoreError> {
        let sealed: Option<Vec<u8>> = self
            .conn
            .query_row("SELECT value FROM meta WHERE name = 'state'", [], |row| {
                row.get(0)
            })
            .optional()
            .map_err(backend)?;
        let (rows_digest, highest) = self.rows_digest()?;
        let mark = match &self.counter {
            Some(counter) => counter.load()?,
            None => None,
        };
        let Some(sealed) = sealed else {
            // A new file, or one written before schema 4: its rows as they
            // are become generation 0.
            if let (Some(high_water), Opening::Checked) = (mark, opening) {
                if high_water > 0 {
                    return Err(StoreError::RolledBack {
                        generation: 0,
                        high_water,
                    });
                }
            }
            let sealer = self.sealer.clone();
            let tx = self
                .conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(backend)?;
            Self::write_state(&sealer, &tx, 0, &rows_digest)?;
            tx.commit().map_err(backend)?;
            self.digest = rows_digest;
            return self.store_counter();
        };
        let state = self.open_record("meta", b"state", 0, &sealed)?;
        let corrupt = || StoreError::Corrupt {
            table: "meta",
            error: StateError::Corrupt,
        };
        if state.len() != 40 {
            return Err(corrupt());
        }
        let mut be = [0u8; 8];
        be.copy_from_slice(&state[..8]);
        let generation = u64::from_be_bytes(be);
        let mut digest = [0u8; 32];
        digest.copy_from_slice(&state[8..]);
        if !generation::digests_equal(&digest, &rows_digest) || highest > generation {
            return Err(StoreError::Inconsistent);
        }
        self.generation = generation;
        self.digest = digest;
        if self.counter.is_none() {
            return Ok(());
        }
        match (opening, mark) {
            (Opening::Restored, _) => self.drop_sessions(),
            (Opening::Checked, None) if generation > 0 => Err(StoreError::CounterMissing),
            (Opening::Checked, Some(high_water)) if generation < high_water => {
                Err(StoreError::RolledBack {
                    generation,
                    high_water,
                })
            }
            (Opening::Checked, Some(high_water)) if generation == high_water => Ok(()),
            // Committed, but the mark was not raised (a crash in between).
            _ => self.store_counter(),
        }
    }

    /// Deletes every session record at the next generation, and raises the
    /// high-water mark to it.
    fn drop_sessions(&mut self) -> Result<(), StoreError> {
        let generation = self
            .generation
            .checked_add(1)
            .ok_or_else(|| StoreError::backend_message("generation exhausted"))?;
        let mut digest = self.digest;
        let sealer = self.sealer.clone();
        let index_key = sealer.index_key();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(backend)?;
        {
            let mut stmt = tx
                .prepare("SELECT user_tag, device_id, gen FROM sessions")
                .map_err(backend)?;
            let mut rows = stmt.query([]).map_err(backend)?;
            while let Some(r) = rows.next().map_err(backend)? {
                let tag: Vec<u8> = r.get(0).map_err(backend)?;
                let tag: [u8; 32] = tag
                    .as_slice()
                    .try_into()
                    .map_err(|_| StoreError::Inconsistent)?;
                let row = row_key(&tag, r.get(1).map_err(backend)?);
                let old: u64 = r.get(2).map_err(backend)?;
                generation::toggle(
                    &mut digest,
                    &generation::element(index_key, "sessions", &row, old),
                );
            }
        }
        tx.execute("DELETE FROM sessions", []).map_err(backend)?;
        Self::write_state(&sealer, &tx, generation, &digest)?;
        tx.commit().map_err(backend)?;
        self.generation = generation;
        self.digest = digest;
        self.store_counter()
    }
}
