//! Attachment blobs: encrypted bytes the relay stores for a while and
//! never reads (`docs/relay.md`, "Attachments").
//!
//! A logged-in device reserves a slot (`AllocateAttachment`): a random
//! 128-bit id, a secret upload token (only its SHA-256 is stored), the
//! blob's exact size, checked against the size cap and the account's
//! quota, and an expiry. The blob then goes over HTTP ([`http`]): one
//! `PUT` with the token, streamed into the database in chunks of
//! [`CHUNK_LEN`] bytes, and made visible by a final durable commit; `GET`s
//! by id (the id is the capability) stream it back chunk by chunk. Both
//! backends keep the chunks in the database (`attachment_chunks`), so
//! every node of a shared PostgreSQL database serves every attachment.
//!
//! A slot's states: allocated (0), being uploaded (1, under a lease that
//! ends with the transfer's deadline) and stored (2). An upload that fails
//! or is cut deletes its chunks and returns the slot to allocated; one
//! cut by a crash leaves chunks that the next upload of the slot (after
//! the lease) or the expiry purge deletes. Only stored attachments are
//! served.

pub(crate) mod http;
pub(crate) mod postgres;
pub(crate) mod sqlite;

use std::time::Duration;

use rand_core::{OsRng, RngCore};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tacit_relay_proto::{ErrorCode, ErrorReply, ATTACHMENT_ID_LEN, ATTACHMENT_TOKEN_LEN};

use crate::store::{Database, Outcome, Readers, StoreError};

/// The bytes of one stored chunk (the last may be shorter).
pub(crate) const CHUNK_LEN: usize = 64 * 1024;

/// The least a slot counts against its account's quota, whatever its
/// size: a slot is a row in two indexes, so tiny reservations must not
/// let one account fill the database with rows.
pub(crate) const MIN_CHARGE: u64 = 4096;

/// What a slot of `size` bytes counts against the quota.
fn charge(size: u64) -> u64 {
    size.max(MIN_CHARGE)
}

/// An attachment id.
pub(crate) type Id = [u8; ATTACHMENT_ID_LEN];

/// The limits on attachments.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// The largest blob.
    pub(crate) max_len: u64,
    /// The most bytes one account's live attachments hold.
    pub(crate) quota: u64,
    /// How long an attachment lives after its slot is reserved.
    pub(crate) ttl: Duration,
}

/// A refused or failed transfer.
#[derive(Debug)]
pub(crate) enum TransferError {
    /// No such attachment (or expired, or not stored yet).
    NotFound,
    /// The upload token is missing or wrong.
    BadToken,
    /// The slot is stored already, or being uploaded.
    Busy,
    /// The body is longer than the reserved size.
    TooLong,
    /// The body is shorter than the reserved size, or broke off.
    Incomplete,
    /// The storage refused or failed.
    Storage(ErrorReply),
}

impl From<ErrorReply> for TransferError {
    fn from(reply: ErrorReply) -> Self {
        Self::Storage(reply)
    }
}

/// A slot as the upload checks it.
pub(crate) struct Slot {
    pub(crate) token_hash: Vec<u8>,
    pub(crate) size: u64,
    pub(crate) state: i64,
    pub(crate) lease_ms: u64,
    pub(crate) expires_ms: u64,
}

impl Slot {
    /// Checks that `token` opens this slot for an upload at `now_ms`.
    fn check_upload(
        &self,
        token: &[u8; ATTACHMENT_TOKEN_LEN],
        now_ms: u64,
    ) -> Result<(), TransferError> {
        if self.expires_ms <= now_ms {
            return Err(TransferError::NotFound);
        }
        let hash = Sha256::digest(token);
        if !bool::from(hash.as_slice().ct_eq(&self.token_hash)) {
            return Err(TransferError::BadToken);
        }
        match self.state {
            0 => Ok(()),
            1 if self.lease_ms <= now_ms => Ok(()),
            _ => Err(TransferError::Busy),
        }
    }
}

/// The attachment store, on the relay's database.
#[derive(Debug, Clone)]
pub(crate) enum Blobs {
    /// A connection of its own to the SQLite file.
    Sqlite(sqlite::Blobs),
    /// The shared PostgreSQL pool.
    Postgres(deadpool_postgres::Pool),
}

impl Blobs {
    /// The store on `database`; on PostgreSQL, on the readers' pool.
    pub(crate) fn open(
        database: &Database,
        max_db_bytes: Option<u64>,
        secure_delete: bool,
        readers: &Readers,
    ) -> Result<Self, StoreError> {
        match readers {
            Readers::Postgres(r) => Ok(Self::Postgres(r.pool().clone())),
            Readers::Sqlite(_) => Ok(Self::Sqlite(sqlite::Blobs::open(
                database,
                max_db_bytes,
                secure_delete,
            )?)),
        }
    }

    /// Reserves a slot of `size` bytes for `owner` (a user id).
    pub(crate) async fn allocate(
        &self,
        owner: &str,
        size: u64,
        limits: Limits,
        now_ms: u64,
    ) -> Outcome<(Id, [u8; ATTACHMENT_TOKEN_LEN], u64)> {
        if size == 0 || size > limits.max_len {
            return Err(ErrorReply::new(
                ErrorCode::AttachmentTooLarge,
                format!("attachments are 1 to {} bytes", limits.max_len),
            ));
        }
        let mut id = [0u8; ATTACHMENT_ID_LEN];
        OsRng.fill_bytes(&mut id);
        let mut token = [0u8; ATTACHMENT_TOKEN_LEN];
        OsRng.fill_bytes(&mut token);
        let token_hash: [u8; 32] = Sha256::digest(token).into();
        let ttl_ms = u64::try_from(limits.ttl.as_millis()).unwrap_or(u64::MAX);
        let expires_ms = now_ms.saturating_add(ttl_ms);
        let new = NewSlot {
            id,
            owner: owner.to_owned(),
            token_hash,
            size,
            quota: limits.quota,
            now_ms,
            expires_ms,
        };
        match self {
            Self::Sqlite(b) => b.allocate(new).await?,
            Self::Postgres(p) => postgres::allocate(p, new).await?,
        }
        Ok((id, token, expires_ms))
    }

    /// Opens slot `id` for an upload with `token` until the lease
    /// `lease_of` gives for its size (deleting any chunks a crashed upload
    /// left); answers the size.
    pub(crate) async fn begin(
        &self,
        id: Id,
        token: [u8; ATTACHMENT_TOKEN_LEN],
        now_ms: u64,
        lease_of: impl FnOnce(u64) -> u64,
    ) -> Result<u64, TransferError> {
        let slot = match self {
            Self::Sqlite(b) => b.slot(id).await?,
            Self::Postgres(p) => postgres::slot(p, id).await?,
        };
        let slot = slot.ok_or(TransferError::NotFound)?;
        slot.check_upload(&token, now_ms)?;
        let lease_ms = lease_of(slot.size);
        let won = match self {
            Self::Sqlite(b) => b.lease(id, slot.state, slot.lease_ms, lease_ms).await?,
            Self::Postgres(p) => {
                postgres::lease(p, id, slot.state, slot.lease_ms, lease_ms).await?
            }
        };
        if won {
            Ok(slot.size)
        } else {
            Err(TransferError::Busy)
        }
    }

    /// Stores chunk `idx` of `id`.
    pub(crate) async fn put_chunk(&self, id: Id, idx: u32, data: Vec<u8>) -> Outcome<()> {
        match self {
            Self::Sqlite(b) => b.put_chunk(id, idx, data).await,
            Self::Postgres(p) => postgres::put_chunk(p, id, idx, data).await,
        }
    }

    /// Makes the uploaded attachment visible; durable when this answers.
    pub(crate) async fn commit(&self, id: Id) -> Outcome<bool> {
        match self {
            Self::Sqlite(b) => b.commit(id).await,
            Self::Postgres(p) => postgres::commit(p, id).await,
        }
    }

    /// Deletes an unfinished upload's chunks and frees the slot for
    /// another upload.
    pub(crate) async fn abort(&self, id: Id) -> Outcome<()> {
        match self {
            Self::Sqlite(b) => b.abort(id).await,
            Self::Postgres(p) => postgres::abort(p, id).await,
        }
    }

    /// The size of a stored, live attachment.
    pub(crate) async fn stored_size(&self, id: Id, now_ms: u64) -> Outcome<Option<u64>> {
        match self {
            Self::Sqlite(b) => b.stored_size(id, now_ms).await,
            Self::Postgres(p) => postgres::stored_size(p, id, now_ms).await,
        }
    }

    /// Chunk `idx` of `id`.
    pub(crate) async fn chunk(&self, id: Id, idx: u32) -> Outcome<Option<Vec<u8>>> {
        match self {
            Self::Sqlite(b) => b.chunk(id, idx).await,
            Self::Postgres(p) => postgres::chunk(p, id, idx).await,
        }
    }

    /// Deletes expired attachments with their chunks; answers how many.
    pub(crate) async fn purge(&self, now_ms: u64) -> Outcome<u64> {
        match self {
            Self::Sqlite(b) => b.purge(now_ms).await,
            Self::Postgres(p) => postgres::purge(p, now_ms).await,
        }
    }
}

/// A slot to reserve.
pub(crate) struct NewSlot {
    pub(crate) id: Id,
    pub(crate) owner: String,
    pub(crate) token_hash: [u8; 32],
    pub(crate) size: u64,
    pub(crate) quota: u64,
    pub(crate) now_ms: u64,
    pub(crate) expires_ms: u64,
}

fn quota_exceeded() -> ErrorReply {
    ErrorReply::new(
        ErrorCode::AttachmentQuotaExceeded,
        "the account's attachments would exceed its quota",
    )
}

/// An `u64` as the databases store it.
fn i64_of(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// A stored `i64` as a `u64`.
fn u64_of(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}
