//! Attachments in the SQLite file, on a connection of their own (WAL,
//! `synchronous=FULL`): each chunk is a short transaction of its own, so
//! an upload never holds the write lock across the transfer and the
//! message writer waits at most one chunk's commit.

use std::sync::{Arc, Mutex};

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use tacit_relay_proto::ErrorCode;

use super::{charge, i64_of, quota_exceeded, u64_of, Id, NewSlot, Slot, MIN_CHARGE};
use crate::store::sqlite::{internal, open_limited};
use crate::store::{refuse, Database, Outcome, StoreError};

/// The tables, schema version 7. `IF NOT EXISTS` so that the migration
/// may be renumbered when merged with other migrations.
pub(crate) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS attachments (
    id BLOB NOT NULL PRIMARY KEY,
    owner TEXT NOT NULL,
    token_hash BLOB NOT NULL,
    size INTEGER NOT NULL,
    state INTEGER NOT NULL,
    lease_ms INTEGER NOT NULL,
    expires_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS attachments_by_owner ON attachments (owner, expires_ms);
CREATE INDEX IF NOT EXISTS attachments_by_expiry ON attachments (expires_ms);
CREATE TABLE IF NOT EXISTS attachment_chunks (
    id BLOB NOT NULL,
    idx INTEGER NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (id, idx)
);
";

/// The attachment connection, used from blocking tasks.
#[derive(Debug, Clone)]
pub(crate) struct Blobs {
    conn: Arc<Mutex<Connection>>,
}

impl Blobs {
    /// Opens a writing connection (the writer has migrated the schema),
    /// which zeroes what it deletes with `secure_delete`.
    pub(crate) fn open(
        database: &Database,
        max_db_bytes: Option<u64>,
        secure_delete: bool,
    ) -> Result<Self, StoreError> {
        let conn = open_limited(database, false, max_db_bytes, secure_delete)?;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    async fn with<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<Outcome<T>, rusqlite::Error> + Send + 'static,
    ) -> Outcome<T> {
        let conn = Arc::clone(&self.conn);
        let result = tokio::task::spawn_blocking(move || {
            let mut conn = conn
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            f(&mut conn)
        })
        .await;
        match result {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(error)) => Err(internal(&error)),
            Err(_) => refuse(ErrorCode::Internal, "attachment task failed"),
        }
    }

    pub(crate) async fn allocate(&self, new: NewSlot) -> Outcome<()> {
        self.with(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let used: i64 = tx.query_row(
                "SELECT COALESCE(SUM(MAX(size, ?3)), 0) FROM attachments
                 WHERE owner = ?1 AND expires_ms > ?2",
                params![new.owner, i64_of(new.now_ms), i64_of(MIN_CHARGE)],
                |r| r.get(0),
            )?;
            if u64_of(used).saturating_add(charge(new.size)) > new.quota {
                return Ok(Err(quota_exceeded()));
            }
            tx.execute(
                "INSERT INTO attachments (id, owner, token_hash, size, state, lease_ms, expires_ms)
                 VALUES (?1, ?2, ?3, ?4, 0, 0, ?5)",
                params![
                    new.id.as_slice(),
                    new.owner,
                    new.token_hash.as_slice(),
                    i64_of(new.size),
                    i64_of(new.expires_ms)
                ],
            )?;
            tx.commit()?;
            Ok(Ok(()))
        })
        .await
    }

    pub(crate) async fn slot(&self, id: Id) -> Outcome<Option<Slot>> {
        self.with(move |c| {
            let slot = c
                .query_row(
                    "SELECT token_hash, size, state, lease_ms, expires_ms FROM attachments
                     WHERE id = ?1",
                    params![id.as_slice()],
                    |r| {
                        Ok(Slot {
                            token_hash: r.get(0)?,
                            size: u64_of(r.get(1)?),
                            state: r.get(2)?,
                            lease_ms: u64_of(r.get(3)?),
                            expires_ms: u64_of(r.get(4)?),
                        })
                    },
                )
                .optional()?;
            Ok(Ok(slot))
        })
        .await
    }

    /// Takes the slot for an upload if it is still as read (`state`,
    /// `old_lease`), deleting leftover chunks; false if another upload won.
    pub(crate) async fn lease(
        &self,
        id: Id,
        state: i64,
        old_lease: u64,
        lease_ms: u64,
    ) -> Outcome<bool> {
        self.with(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let won = tx.execute(
                "UPDATE attachments SET state = 1, lease_ms = ?1
                 WHERE id = ?2 AND state = ?3 AND lease_ms = ?4",
                params![i64_of(lease_ms), id.as_slice(), state, i64_of(old_lease)],
            )? == 1;
            if won {
                tx.execute(
                    "DELETE FROM attachment_chunks WHERE id = ?1",
                    params![id.as_slice()],
                )?;
            }
            tx.commit()?;
            Ok(Ok(won))
        })
        .await
    }

    pub(crate) async fn put_chunk(&self, id: Id, idx: u32, data: Vec<u8>) -> Outcome<()> {
        self.with(move |c| {
            c.prepare_cached("INSERT INTO attachment_chunks (id, idx, data) VALUES (?1, ?2, ?3)")?
                .execute(params![id.as_slice(), idx, data])?;
            Ok(Ok(()))
        })
        .await
    }

    pub(crate) async fn commit(&self, id: Id) -> Outcome<bool> {
        self.with(move |c| {
            let n = c.execute(
                "UPDATE attachments SET state = 2 WHERE id = ?1 AND state = 1",
                params![id.as_slice()],
            )?;
            Ok(Ok(n == 1))
        })
        .await
    }

    pub(crate) async fn abort(&self, id: Id) -> Outcome<()> {
        self.with(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            tx.execute(
                "DELETE FROM attachment_chunks WHERE id = ?1",
                params![id.as_slice()],
            )?;
            tx.execute(
                "UPDATE attachments SET state = 0, lease_ms = 0 WHERE id = ?1 AND state = 1",
                params![id.as_slice()],
            )?;
            tx.commit()?;
            Ok(Ok(()))
        })
        .await
    }

    pub(crate) async fn stored_size(&self, id: Id, now_ms: u64) -> Outcome<Option<u64>> {
        self.with(move |c| {
            let size: Option<i64> = c
                .query_row(
                    "SELECT size FROM attachments WHERE id = ?1 AND state = 2 AND expires_ms > ?2",
                    params![id.as_slice(), i64_of(now_ms)],
                    |r| r.get(0),
                )
                .optional()?;
            Ok(Ok(size.map(u64_of)))
        })
        .await
    }

    pub(crate) async fn chunk(&self, id: Id, idx: u32) -> Outcome<Option<Vec<u8>>> {
        self.with(move |c| {
            let data = c
                .prepare_cached("SELECT data FROM attachment_chunks WHERE id = ?1 AND idx = ?2")?
                .query_row(params![id.as_slice(), idx], |r| r.get(0))
                .optional()?;
            Ok(Ok(data))
        })
        .await
    }

    pub(crate) async fn purge(&self, now_ms: u64) -> Outcome<u64> {
        self.with(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            tx.execute(
                "DELETE FROM attachment_chunks WHERE id IN
                 (SELECT id FROM attachments WHERE expires_ms <= ?1)",
                params![i64_of(now_ms)],
            )?;
            let n = tx.execute(
                "DELETE FROM attachments WHERE expires_ms <= ?1",
                params![i64_of(now_ms)],
            )?;
            tx.commit()?;
            Ok(Ok(u64::try_from(n).unwrap_or(0)))
        })
        .await
    }
}
