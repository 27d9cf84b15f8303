//! Attachments in the shared PostgreSQL database (`synchronous_commit =
//! on` on every pooled connection), so that any node serves any
//! attachment. An account's reservations are serialized by a transaction
//! advisory lock on its user id, so two nodes cannot both pass the quota.

use deadpool_postgres::Pool;
use tacit_relay_proto::{ErrorCode, ErrorReply};

use super::{charge, i64_of, quota_exceeded, u64_of, Id, NewSlot, Slot, MIN_CHARGE};
use crate::store::postgres::internal;
use crate::store::Outcome;

/// The tables, schema version 5. `IF NOT EXISTS` so that the migration
/// may be renumbered when merged with other migrations.
pub(crate) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS attachments (
    id BYTEA NOT NULL PRIMARY KEY,
    owner TEXT NOT NULL,
    token_hash BYTEA NOT NULL,
    size BIGINT NOT NULL,
    state BIGINT NOT NULL,
    lease_ms BIGINT NOT NULL,
    expires_ms BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS attachments_by_owner ON attachments (owner, expires_ms);
CREATE INDEX IF NOT EXISTS attachments_by_expiry ON attachments (expires_ms);
CREATE TABLE IF NOT EXISTS attachment_chunks (
    id BYTEA NOT NULL,
    idx BIGINT NOT NULL,
    data BYTEA NOT NULL,
    PRIMARY KEY (id, idx)
);
";

async fn client(pool: &Pool) -> Outcome<deadpool_postgres::Client> {
    pool.get()
        .await
        .map_err(|_| ErrorReply::new(ErrorCode::Internal, "storage unreachable"))
}

pub(crate) async fn allocate(pool: &Pool, new: NewSlot) -> Outcome<()> {
    let mut c = client(pool).await?;
    let tx = c.transaction().await.map_err(|e| internal(&e))?;
    tx.execute("SELECT pg_advisory_xact_lock(hashtext($1))", &[&new.owner])
        .await
        .map_err(|e| internal(&e))?;
    let used: i64 = tx
        .query_one(
            "SELECT COALESCE(SUM(GREATEST(size, $3)), 0)::BIGINT FROM attachments
             WHERE owner = $1 AND expires_ms > $2",
            &[&new.owner, &i64_of(new.now_ms), &i64_of(MIN_CHARGE)],
        )
        .await
        .map_err(|e| internal(&e))?
        .get(0);
    if u64_of(used).saturating_add(charge(new.size)) > new.quota {
        return Err(quota_exceeded());
    }
    tx.execute(
        "INSERT INTO attachments (id, owner, token_hash, size, state, lease_ms, expires_ms)
         VALUES ($1, $2, $3, $4, 0, 0, $5)",
        &[
            &new.id.as_slice(),
            &new.owner,
            &new.token_hash.as_slice(),
            &i64_of(new.size),
            &i64_of(new.expires_ms),
        ],
    )
    .await
    .map_err(|e| internal(&e))?;
    tx.commit().await.map_err(|e| internal(&e))
}

pub(crate) async fn slot(pool: &Pool, id: Id) -> Outcome<Option<Slot>> {
    let c = client(pool).await?;
    let row = c
        .query_opt(
            "SELECT token_hash, size, state, lease_ms, expires_ms FROM attachments WHERE id = $1",
            &[&id.as_slice()],
        )
        .await
        .map_err(|e| internal(&e))?;
    Ok(row.map(|r| Slot {
        token_hash: r.get(0),
        size: u64_of(r.get(1)),
        state: r.get(2),
        lease_ms: u64_of(r.get(3)),
        expires_ms: u64_of(r.get(4)),
    }))
}

pub(crate) async fn lease(
    pool: &Pool,
    id: Id,
    state: i64,
    old_lease: u64,
    lease_ms: u64,
) -> Outcome<bool> {
    let mut c = client(pool).await?;
    let tx = c.transaction().await.map_err(|e| internal(&e))?;
    let won = tx
        .execute(
            "UPDATE attachments SET state = 1, lease_ms = $1
             WHERE id = $2 AND state = $3 AND lease_ms = $4",
            &[
                &i64_of(lease_ms),
                &id.as_slice(),
                &state,
                &i64_of(old_lease),
            ],
        )
        .await
        .map_err(|e| internal(&e))?
        == 1;
    if won {
        tx.execute(
            "DELETE FROM attachment_chunks WHERE id = $1",
            &[&id.as_slice()],
        )
        .await
        .map_err(|e| internal(&e))?;
    }
    tx.commit().await.map_err(|e| internal(&e))?;
    Ok(won)
}

pub(crate) async fn put_chunk(pool: &Pool, id: Id, idx: u32, data: Vec<u8>) -> Outcome<()> {
    let c = client(pool).await?;
    c.execute(
        "INSERT INTO attachment_chunks (id, idx, data) VALUES ($1, $2, $3)",
        &[&id.as_slice(), &i64::from(idx), &data],
    )
    .await
    .map_err(|e| internal(&e))?;
    Ok(())
}

pub(crate) async fn commit(pool: &Pool, id: Id) -> Outcome<bool> {
    let c = client(pool).await?;
    let n = c
        .execute(
            "UPDATE attachments SET state = 2 WHERE id = $1 AND state = 1",
            &[&id.as_slice()],
        )
        .await
        .map_err(|e| internal(&e))?;
    Ok(n == 1)
}

pub(crate) async fn abort(pool: &Pool, id: Id) -> Outcome<()> {
    let mut c = client(pool).await?;
    let tx = c.transaction().await.map_err(|e| internal(&e))?;
    tx.execute(
        "DELETE FROM attachment_chunks WHERE id = $1",
        &[&id.as_slice()],
    )
    .await
    .map_err(|e| internal(&e))?;
    tx.execute(
        "UPDATE attachments SET state = 0, lease_ms = 0 WHERE id = $1 AND state = 1",
        &[&id.as_slice()],
    )
    .await
    .map_err(|e| internal(&e))?;
    tx.commit().await.map_err(|e| internal(&e))
}

pub(crate) async fn stored_size(pool: &Pool, id: Id, now_ms: u64) -> Outcome<Option<u64>> {
    let c = client(pool).await?;
    let row = c
        .query_opt(
            "SELECT size FROM attachments WHERE id = $1 AND state = 2 AND expires_ms > $2",
            &[&id.as_slice(), &i64_of(now_ms)],
        )
        .await
        .map_err(|e| internal(&e))?;
    Ok(row.map(|r| u64_of(r.get(0))))
}

pub(crate) async fn chunk(pool: &Pool, id: Id, idx: u32) -> Outcome<Option<Vec<u8>>> {
    let c = client(pool).await?;
    let row = c
        .query_opt(
            "SELECT data FROM attachment_chunks WHERE id = $1 AND idx = $2",
            &[&id.as_slice(), &i64::from(idx)],
        )
        .await
        .map_err(|e| internal(&e))?;
    Ok(row.map(|r| r.get(0)))
}

pub(crate) async fn purge(pool: &Pool, now_ms: u64) -> Outcome<u64> {
    let mut c = client(pool).await?;
    let tx = c.transaction().await.map_err(|e| internal(&e))?;
    let now = i64_of(now_ms);
    tx.execute(
        "DELETE FROM attachment_chunks WHERE id IN
         (SELECT id FROM attachments WHERE expires_ms <= $1)",
        &[&now],
    )
    .await
    .map_err(|e| internal(&e))?;
    let n = tx
        .execute("DELETE FROM attachments WHERE expires_ms <= $1", &[&now])
        .await
        .map_err(|e| internal(&e))?;
    tx.commit().await.map_err(|e| internal(&e))?;
    Ok(n)
}
