//! The PostgreSQL schema and its versioned migrations.
//!
//! Entry `i` of [`MIGRATIONS`] brings a database from version `i` (the
//! highest row of `schema_version`, 0 without one) to `i + 1`. Every node
//! runs the pending ones at start, inside one transaction holding an
//! advisory lock, so nodes that start together migrate once, one after the
//! other; a database of a newer version than the node's is refused.

use deadpool_postgres::Client;

use crate::store::StoreError;

/// The key of the advisory lock migrations hold ("tacitmig" in ASCII).
const MIGRATION_LOCK: i64 = 0x7461_6369_746d_6967;

/// The migrations, in order: version 1, the mailboxes and directory;
/// version 2, link slots; version 3, push endpoints; version 4, the
/// mailboxes' byte counts; version 5, attachments.
pub(super) const MIGRATIONS: &[&str] = &[
    SCHEMA_V1,
    super::links::SCHEMA,
    crate::push::SCHEMA_POSTGRES,
    SCHEMA_MAILBOX_BYTES,
    crate::attachments::postgres::SCHEMA,
];

/// A device counts the envelope bytes its mailbox holds, beside the
/// messages (`queued`), for the per-mailbox byte cap; the count starts
/// from the messages already stored.
const SCHEMA_MAILBOX_BYTES: &str = "
ALTER TABLE devices ADD COLUMN queued_bytes BIGINT NOT NULL DEFAULT 0;
UPDATE devices SET queued_bytes = (
    SELECT COALESCE(SUM(length(envelope)), 0) FROM messages m
    WHERE m.user_id = devices.user_id AND m.device_id = devices.device_id
);
";

/// Version 1: the schema of the SQLite backend's version 4, in
/// PostgreSQL's types. Integers are `BIGINT` (device ids and key ids are
/// 32-bit unsigned); a list version is 8 big-endian bytes, as versions go
/// up to 2^64 - 1; message ids come from an identity column.
const SCHEMA_V1: &str = "
CREATE TABLE users (
    user_id TEXT NOT NULL PRIMARY KEY,
    user_key BYTEA NOT NULL,
    list_version BYTEA NOT NULL,
    device_list BYTEA NOT NULL,
    updated_ms BIGINT NOT NULL
);
CREATE TABLE devices (
    user_id TEXT NOT NULL,
    device_id BIGINT NOT NULL,
    identity_key BYTEA NOT NULL,
    signed_prekey_id BIGINT,
    signed_prekey BYTEA,
    signed_prekey_signature BYTEA,
    fallback_prekey_id BIGINT,
    fallback_prekey BYTEA,
    kem_prekey_id BIGINT,
    kem_prekey BYTEA,
    kem_prekey_signature BYTEA,
    token_hash BYTEA,
    queued BIGINT NOT NULL DEFAULT 0,
    expired_unreported BIGINT NOT NULL DEFAULT 0,
    created_ms BIGINT NOT NULL,
    PRIMARY KEY (user_id, device_id)
);
CREATE TABLE one_time_prekeys (
    user_id TEXT NOT NULL,
    device_id BIGINT NOT NULL,
    key_id BIGINT NOT NULL,
    key BYTEA NOT NULL,
    PRIMARY KEY (user_id, device_id, key_id)
);
CREATE TABLE one_time_kem_prekeys (
    user_id TEXT NOT NULL,
    device_id BIGINT NOT NULL,
    key_id BIGINT NOT NULL,
    key BYTEA NOT NULL,
    signature BYTEA NOT NULL,
    PRIMARY KEY (user_id, device_id, key_id)
);
CREATE TABLE messages (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id TEXT NOT NULL,
    device_id BIGINT NOT NULL,
    server_ms BIGINT NOT NULL,
    expires_ms BIGINT NOT NULL,
    kind BIGINT NOT NULL DEFAULT 0,
    envelope BYTEA NOT NULL
);
CREATE INDEX messages_by_device ON messages (user_id, device_id, id);
CREATE INDEX messages_by_expiry ON messages (expires_ms);
";

/// Brings the database to the latest schema; refuses a newer one.
pub(super) async fn migrate(client: &mut Client) -> Result<(), StoreError> {
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    tx.batch_execute("CREATE TABLE IF NOT EXISTS schema_version (version BIGINT NOT NULL)")
        .await?;
    let version: i64 = tx
        .query_one("SELECT COALESCE(MAX(version), 0) FROM schema_version", &[])
        .await?
        .get(0);
    let from = usize::try_from(version).unwrap_or(usize::MAX);
    let Some(pending) = MIGRATIONS.get(from..) else {
        return Err(StoreError::msg(format!(
            "the database's schema version {version} is newer than this relay's {}",
            MIGRATIONS.len()
        )));
    };
    for (i, migration) in pending.iter().enumerate() {
        tx.batch_execute(migration).await?;
        let to = i64::try_from(from + i + 1).unwrap_or(i64::MAX);
        tx.execute("INSERT INTO schema_version (version) VALUES ($1)", &[&to])
            .await?;
        tracing::info!(version = to, "database migrated");
    }
    tx.commit().await?;
    Ok(())
}
