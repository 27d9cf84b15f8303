//! Link slots in the shared database, so that the two devices of a linking
//! may reach different nodes. As in memory: a slot holds one blob until it
//! is taken or expires; a node refuses a put while `max` slots are live.

use deadpool_postgres::Pool;
use tacit_relay_proto::{ErrorCode, ErrorReply, LINK_SLOT_LEN};

use super::internal;

/// The table (created by the schema's first version).
pub(super) const SCHEMA: &str = "
CREATE TABLE link_slots (
    slot BYTEA NOT NULL PRIMARY KEY,
    blob BYTEA NOT NULL,
    expires_ms BIGINT NOT NULL
);
CREATE INDEX link_slots_by_expiry ON link_slots (expires_ms);
";

fn unavailable(message: &str) -> ErrorReply {
    ErrorReply::new(ErrorCode::LinkSlotUnavailable, message)
}

async fn client(pool: &Pool) -> Result<deadpool_postgres::Client, ErrorReply> {
    pool.get()
        .await
        .map_err(|_| ErrorReply::new(ErrorCode::Internal, "storage unreachable"))
}

/// Puts `blob` in a free (or expired) slot for `ttl_ms`.
pub(crate) async fn put(
    pool: &Pool,
    slot: &[u8; LINK_SLOT_LEN],
    blob: &[u8],
    (now_ms, ttl_ms, max): (u64, u64, usize),
) -> Result<(), ErrorReply> {
    let c = client(pool).await?;
    let now = i64::try_from(now_ms).unwrap_or(i64::MAX);
    let expires = i64::try_from(now_ms.saturating_add(ttl_ms)).unwrap_or(i64::MAX);
    let live: i64 = c
        .query_one(
            "SELECT COUNT(*) FROM link_slots WHERE expires_ms > $1",
            &[&now],
        )
        .await
        .map_err(|e| internal(&e))?
        .get(0);
    if usize::try_from(live).unwrap_or(usize::MAX) >= max {
        let mut reply = ErrorReply::new(ErrorCode::RateLimited, "too many link slots in use");
        reply.retry_after_ms = Some(1000);
        return Err(reply);
    }
    let stored = c
        .execute(
            "INSERT INTO link_slots (slot, blob, expires_ms) VALUES ($1, $2, $3)
             ON CONFLICT (slot) DO UPDATE SET blob = $2, expires_ms = $3
             WHERE link_slots.expires_ms <= $4",
            &[&slot.as_slice(), &blob, &expires, &now],
        )
        .await
        .map_err(|e| internal(&e))?;
    if stored == 1 {
        Ok(())
    } else {
        Err(unavailable("the link slot is occupied"))
    }
}

/// Takes the blob of a live slot, deleting it.
pub(crate) async fn take(
    pool: &Pool,
    slot: &[u8; LINK_SLOT_LEN],
    now_ms: u64,
) -> Result<Vec<u8>, ErrorReply> {
    let c = client(pool).await?;
    let row = c
        .query_opt(
            "DELETE FROM link_slots WHERE slot = $1 RETURNING blob, expires_ms",
            &[&slot.as_slice()],
        )
        .await
        .map_err(|e| internal(&e))?;
    match row {
        Some(row) if u64::try_from(row.get::<_, i64>(1)).unwrap_or(0) > now_ms => Ok(row.get(0)),
        _ => Err(unavailable("the link slot is empty or expired")),
    }
}

/// Deletes expired slots.
pub(crate) async fn sweep(pool: &Pool, now_ms: u64) {
    let now = i64::try_from(now_ms).unwrap_or(i64::MAX);
    if let Ok(c) = pool.get().await {
        if let Err(error) = c
            .execute("DELETE FROM link_slots WHERE expires_ms <= $1", &[&now])
            .await
        {
            tracing::warn!(%error, "link slot sweep failed");
        }
    }
}
