//! The PostgreSQL backend's reads, on a pool of connections.

use deadpool_postgres::Pool;
use tacit::{Address, IdentityKey};
use tacit_relay_proto::{ErrorCode, ErrorReply};

use super::internal;
use crate::store::{DeviceInfo, Outcome, QueueStats, StoreError, StoredMessage};

/// Reads on a pool of connections.
#[derive(Debug, Clone)]
pub(crate) struct Readers {
    pool: Pool,
}

fn n(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

impl Readers {
    /// A pool of `count` connections to `url`.
    pub(crate) async fn open(url: &str, count: usize) -> Result<Self, StoreError> {
        let pool = super::pool(url, count)?;
        drop(super::client(&pool).await?);
        Ok(Self { pool })
    }

    /// The pool, for the state nodes share outside the writer (link slots).
    pub(crate) fn pool(&self) -> &Pool {
        &self.pool
    }

    async fn client(&self) -> Outcome<deadpool_postgres::Client> {
        self.pool.get().await.map_err(|e| {
            tracing::warn!(error = %e, "no database connection");
            ErrorReply::new(ErrorCode::Internal, "storage unreachable")
        })
    }

    pub(crate) async fn push_endpoint(&self, address: &Address) -> Outcome<Option<String>> {
        let c = self.client().await?;
        let row = c
            .query_opt(
                "SELECT push_endpoint FROM devices WHERE user_id = $1 AND device_id = $2",
                &[&address.user_id(), &i64::from(address.device_id())],
            )
            .await
            .map_err(|e| internal(&e))?;
        Ok(row.and_then(|r| r.get::<_, Option<String>>(0)))
    }

    pub(crate) async fn device(&self, address: &Address) -> Outcome<Option<DeviceInfo>> {
        let c = self.client().await?;
        let row = c
            .query_opt(
                // A device of a user without a list cannot log in.
                "SELECT identity_key, signed_prekey IS NOT NULL, kem_prekey IS NOT NULL,
                    (SELECT COUNT(*) FROM one_time_prekeys o WHERE o.user_id = d.user_id AND o.device_id = d.device_id),
                    (SELECT COUNT(*) FROM one_time_kem_prekeys k WHERE k.user_id = d.user_id AND k.device_id = d.device_id)
                 FROM devices d WHERE user_id = $1 AND device_id = $2
                 AND EXISTS (SELECT 1 FROM users u WHERE u.user_id = d.user_id)",
                &[&address.user_id(), &i64::from(address.device_id())],
            )
            .await
            .map_err(|e| internal(&e))?;
        let Some(row) = row else {
            return Ok(None);
        };
        let count = |i| u32::try_from(row.get::<_, i64>(i)).unwrap_or(u32::MAX);
        Ok(IdentityKey::try_from_slice(row.get(0))
            .ok()
            .map(|identity_key| DeviceInfo {
                identity_key,
                one_time_prekeys: count(3),
                has_signed_prekey: row.get(1),
                one_time_kem_prekeys: count(4),
                has_kem_prekey: row.get(2),
            }))
    }

    pub(crate) async fn device_list(&self, user_id: &str) -> Outcome<Option<Vec<u8>>> {
        let c = self.client().await?;
        let row = c
            .query_opt(
                "SELECT device_list FROM users WHERE user_id = $1",
                &[&user_id],
            )
            .await
            .map_err(|e| internal(&e))?;
        Ok(row.map(|r| r.get(0)))
    }

    pub(crate) async fn messages_after(
        &self,
        address: &Address,
        after: u64,
        now_ms: u64,
        limit: usize,
    ) -> Outcome<Vec<StoredMessage>> {
        let c = self.client().await?;
        let statement = c
            .prepare_cached(
                "SELECT id, server_ms, envelope, kind FROM messages
                 WHERE user_id = $1 AND device_id = $2 AND id > $3 AND expires_ms > $4
                 ORDER BY id LIMIT $5",
            )
            .await
            .map_err(|e| internal(&e))?;
        let rows = c
            .query(
                &statement,
                &[
                    &address.user_id(),
                    &i64::from(address.device_id()),
                    &i64::try_from(after).unwrap_or(i64::MAX),
                    &i64::try_from(now_ms).unwrap_or(i64::MAX),
                    &i64::try_from(limit).unwrap_or(i64::MAX),
                ],
            )
            .await
            .map_err(|e| internal(&e))?;
        Ok(rows
            .into_iter()
            .map(|r| StoredMessage {
                id: n(r.get(0)),
                server_ms: n(r.get(1)),
                envelope: r.get(2),
                kind: u32::try_from(r.get::<_, i64>(3)).unwrap_or(0),
            })
            .collect())
    }

    pub(crate) async fn stats(&self) -> Outcome<QueueStats> {
        let c = self.client().await?;
        let row = c
            .query_one(
                "SELECT COUNT(*), COALESCE(SUM(queued), 0)::bigint, COALESCE(MAX(queued), 0),
                    COUNT(*) FILTER (WHERE queued > 0),
                    (SELECT COUNT(*) FROM one_time_prekeys),
                    (SELECT COUNT(*) FROM one_time_kem_prekeys)
                 FROM devices",
                &[],
            )
            .await
            .map_err(|e| internal(&e))?;
        Ok(QueueStats {
            devices: n(row.get(0)),
            queued_messages: n(row.get(1)),
            max_queue_depth: n(row.get(2)),
            nonempty_queues: n(row.get(3)),
            one_time_prekeys: n(row.get(4)),
            one_time_kem_prekeys: n(row.get(5)),
        })
    }
}
