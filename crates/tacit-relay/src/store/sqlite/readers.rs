//! The SQLite backend's read-only connections.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use rusqlite::{params, Connection, OptionalExtension};
use tacit::{Address, IdentityKey};
use tacit_relay_proto::ErrorCode;

use super::apply::count_one_time;
use super::{internal, open};
use crate::kem;
use crate::store::{refuse, Database, DeviceInfo, Outcome, QueueStats, StoreError, StoredMessage};

/// A device's unexpired messages after an id and after its acknowledged
/// prefix, in id order: the backlog a connection pushes, read a page at a
/// time (see [`Readers::messages_after`]). Both bounds are one scalar, so
/// the read is one range of the mailbox index.
pub(super) const MESSAGES_AFTER: &str = "SELECT id, server_ms, envelope, kind FROM messages
     WHERE mailbox = (SELECT mailbox FROM devices WHERE user_id = ?1 AND device_id = ?2)
     AND id > (SELECT MAX(?3, b.acked_through) FROM devices d JOIN mailboxes b ON b.mailbox = d.mailbox
               WHERE d.user_id = ?1 AND d.device_id = ?2)
     AND expires_ms > ?4
     ORDER BY id";

/// Read-only connections, used from blocking tasks.
#[derive(Debug, Clone)]
pub(crate) struct Readers {
    conns: Arc<Vec<Mutex<Connection>>>,
    next: Arc<AtomicUsize>,
}

impl Readers {
    pub(crate) fn open(database: &Database, count: usize) -> Result<Self, StoreError> {
        let conns = (0..count.max(1))
            .map(|_| open(database, true).map(Mutex::new))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            conns: Arc::new(conns),
            next: Arc::new(AtomicUsize::new(0)),
        })
    }

    async fn with<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, rusqlite::Error> + Send + 'static,
    ) -> Outcome<T> {
        let conns = Arc::clone(&self.conns);
        let i = self.next.fetch_add(1, Ordering::Relaxed) % conns.len();
        let result = tokio::task::spawn_blocking(move || {
            let conn = conns[i]
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            f(&conn)
        })
        .await;
        match result {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(error)) => Err(internal(&error)),
            Err(_) => refuse(ErrorCode::Internal, "reader task failed"),
        }
    }

    pub(crate) async fn push_endpoint(&self, address: &Address) -> Outcome<Option<String>> {
        let (user, device) = (address.user_id().to_owned(), address.device_id());
        self.with(move |c| {
            c.prepare_cached(
                "SELECT push_endpoint FROM devices WHERE user_id = ?1 AND device_id = ?2",
            )?
            .query_row(params![user, device], |r| r.get::<_, Option<String>>(0))
            .optional()
            .map(Option::flatten)
        })
        .await
    }

    pub(crate) async fn device(&self, address: &Address) -> Outcome<Option<DeviceInfo>> {
        let (user, device) = (address.user_id().to_owned(), address.device_id());
        self.with(move |c| {
            let row: Option<(Vec<u8>, bool)> = c
                .prepare_cached(
                    // A device of a user without a list (registered before
                    // users owned their devices) cannot log in.
                    "SELECT identity_key, signed_prekey IS NOT NULL FROM devices
                     WHERE user_id = ?1 AND device_id = ?2
                     AND EXISTS (SELECT 1 FROM users WHERE users.user_id = devices.user_id)",
                )?
                .query_row(params![user, device], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()?;
            let Some((ik, has_signed_prekey)) = row else {
                return Ok(None);
            };
            let one_time_prekeys = count_one_time(c, &user, device)?;
            let one_time_kem_prekeys = kem::count_one_time(c, &user, device)?;
            let has_kem_prekey = kem::has_last_resort(c, &user, device)?;
            Ok(IdentityKey::try_from_slice(&ik)
                .ok()
                .map(|identity_key| DeviceInfo {
                    identity_key,
                    one_time_prekeys,
                    has_signed_prekey,
                    one_time_kem_prekeys,
                    has_kem_prekey,
                }))
        })
        .await
    }

    /// The user's current signed device list, as stored.
    pub(crate) async fn device_list(&self, user_id: &str) -> Outcome<Option<Vec<u8>>> {
        let user = user_id.to_owned();
        self.with(move |c| {
            c.prepare_cached("SELECT device_list FROM users WHERE user_id = ?1")?
                .query_row(params![user], |r| r.get(0))
                .optional()
        })
        .await
    }

    /// Up to `limit` of the device's unexpired messages after `after`, in
    /// id order.
    ///
    /// The limit is applied by stepping the statement `limit` times, not
    /// by a bound `LIMIT ?`: SQLite plans with the value bound to a
    /// `LIMIT` parameter and so prepares such a statement again after
    /// every new binding, which cost more than the read itself.
    pub(crate) async fn messages_after(
        &self,
        address: &Address,
        after: u64,
        now_ms: u64,
        limit: usize,
    ) -> Outcome<Vec<StoredMessage>> {
        let (user, device) = (address.user_id().to_owned(), address.device_id());
        let after = i64::try_from(after).unwrap_or(i64::MAX);
        self.with(move |c| {
            let mut stmt = c.prepare_cached(MESSAGES_AFTER)?;
            let rows = stmt.query_map(params![user, device, after, now_ms], |r| {
                Ok(StoredMessage {
                    id: r.get(0)?,
                    server_ms: r.get(1)?,
                    envelope: r.get(2)?,
                    kind: r.get(3)?,
                })
            })?;
            rows.take(limit).collect()
        })
        .await
    }

    pub(crate) async fn stats(&self) -> Outcome<QueueStats> {
        self.with(|c| {
            let (devices, queued, max, nonempty): (u64, Option<u64>, Option<u64>, u64) = c.query_row(
                "SELECT (SELECT COUNT(*) FROM devices), SUM(queued), MAX(queued), COUNT(CASE WHEN queued > 0 THEN 1 END) FROM mailboxes",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )?;
            let one_time_prekeys: u64 =
                c.query_row("SELECT COUNT(*) FROM one_time_prekeys", [], |r| r.get(0))?;
            let one_time_kem_prekeys: u64 =
                c.query_row("SELECT COUNT(*) FROM one_time_kem_prekeys", [], |r| r.get(0))?;
            Ok(QueueStats {
                devices,
                queued_messages: queued.unwrap_or(0),
                max_queue_depth: max.unwrap_or(0),
                nonempty_queues: nonempty,
                one_time_prekeys,
                one_time_kem_prekeys,
            })
        })
        .await
    }
}
