//! The PostgreSQL writer's commands other than `Submit` and `Ack` (which
//! run with the rows the batch holds, `super::held`), each applied inside
//! its savepoint of the batch's transaction, with the semantics of the
//! SQLite backend's:
//! the dispatch, the row locks a batch takes first, device lists and
//! registration, and the statement helpers the other command modules use.

use deadpool_postgres::Transaction;
use tacit::identity::DeviceList;
use tacit::{Address, IdentityKey};
use tacit_relay_proto::{ErrorCode, MAX_DEVICES_PER_USER};
use tokio_postgres::types::ToSql;
use tokio_postgres::Error;

use super::held::HeldDevices;
use super::mailbox::{purge, submit_group};
use super::prekeys::{claim_bundles, upload_prekeys};
use super::Value;
use crate::store::{refuse, Command, Effects, Outcome, WriterLimits};

pub(super) type Tx<'a> = Transaction<'a>;

/// A stored integer as the `u32` it was stored from.
pub(super) fn u32_of(v: i64) -> u32 {
    u32::try_from(v).unwrap_or(u32::MAX)
}

/// A stored integer as the `u64` it was stored from.
pub(super) fn u64_of(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

/// A `u64` as a stored integer (times past `i64::MAX` are held there).
pub(super) fn i64_of(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

pub(super) async fn execute(
    t: &Tx<'_>,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<u64, Error> {
    let statement = t.prepare_cached(sql).await?;
    t.execute(&statement, params).await
}

pub(super) async fn query(
    t: &Tx<'_>,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Vec<tokio_postgres::Row>, Error> {
    let statement = t.prepare_cached(sql).await?;
    t.query(&statement, params).await
}

pub(super) async fn query_opt(
    t: &Tx<'_>,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Option<tokio_postgres::Row>, Error> {
    let statement = t.prepare_cached(sql).await?;
    t.query_opt(&statement, params).await
}

/// Locks, users first and then devices, each in key order, the rows the
/// batch's commands will change, so that batches of several nodes take
/// their locks in one order. Claims need no lock (they skip prekeys that
/// another transaction holds); a purge locks as it goes (it is rare, and a
/// deadlock only runs the batch again).
///
/// Returns the devices locked, as the batch holds them
/// ([`HeldDevices`]), read by the statement that locks them.
pub(super) async fn lock_rows(t: &Tx<'_>, batch: &[Command]) -> Result<HeldDevices, Error> {
    let mut users: Vec<String> = Vec::new();
    let mut devices: Vec<(String, i64)> = Vec::new();
    let mut device = |a: &Address| devices.push((a.user_id().to_owned(), i64::from(a.device_id())));
    for command in batch {
        match command {
            Command::Register { address, .. } => users.push(address.user_id().to_owned()),
            Command::PublishList { publisher, .. } => users.push(publisher.user_id().to_owned()),
            Command::UploadPreKeys { address, .. }
            | Command::Ack { address, .. }
            | Command::SetToken { address, .. }
            | Command::SetPush { address, .. }
            | Command::TakeExpired { address, .. } => device(address),
            Command::Submit { recipient, .. } => device(recipient),
            Command::SubmitGroup { copies, .. } => {
                for copy in copies {
                    device(&copy.recipient);
                }
            }
            Command::ClaimBundles { .. } | Command::Purge { .. } | Command::Stop => {}
        }
    }
    if !users.is_empty() {
        users.sort_unstable();
        users.dedup();
        query(
            t,
            "SELECT 1 FROM users WHERE user_id = ANY($1) ORDER BY user_id FOR UPDATE",
            &[&users],
        )
        .await?;
    }
    if users.is_empty() && devices.is_empty() {
        return Ok(HeldDevices::default());
    }
    let (ids, numbers): (Vec<String>, Vec<i64>) = devices.into_iter().unzip();
    let rows = query(
        t,
        "SELECT user_id, device_id, token_hash, queued, queued_bytes FROM devices
         WHERE user_id = ANY($1)
            OR (user_id, device_id) IN (SELECT * FROM unnest($2::text[], $3::bigint[]))
         ORDER BY user_id, device_id FOR UPDATE",
        &[&users, &ids, &numbers],
    )
    .await?;
    Ok(HeldDevices::locked(&rows))
}

/// Applies one command; `effects` gets its after-commit effects.
pub(super) async fn apply(
    t: &Tx<'_>,
    command: &Command,
    limits: &WriterLimits,
    effects: &mut Effects,
) -> Result<Outcome<Value>, Error> {
    Ok(match command {
        Command::Register {
            address,
            identity_key,
            device_list,
            list_bytes,
            now_ms,
            ..
        } => {
            let mut removed = Vec::new();
            match store_list(t, device_list, list_bytes, false, *now_ms, &mut removed).await? {
                Err(e) => Err(e),
                Ok(()) => {
                    let result = register(t, address, identity_key, *now_ms).await?;
                    if result.is_ok() {
                        effects.removed.extend(removed);
                    }
                    result.map(Value::Bool)
                }
            }
        }
        Command::PublishList {
            publisher,
            device_list,
            list_bytes,
            now_ms,
            ..
        } => {
            if !device_exists(t, publisher).await? {
                return Ok(refuse(
                    ErrorCode::DeviceRemoved,
                    "the publishing device is no longer registered",
                ));
            }
            let mut removed = Vec::new();
            let result =
                store_list(t, device_list, list_bytes, true, *now_ms, &mut removed).await?;
            if result.is_ok() {
                effects.removed.extend(removed);
            }
            result.map(|()| Value::U64(device_list.version()))
        }
        Command::UploadPreKeys {
            address,
            upload,
            max_one_time,
            max_one_time_kem,
            ..
        } => upload_prekeys(t, address, upload, *max_one_time, *max_one_time_kem)
            .await?
            .map(Value::Counts),
        Command::ClaimBundles {
            user_id,
            device_id,
            spend_one_time,
            ..
        } => {
            let spend = spend_one_time.then_some(limits.prekeys_low);
            claim_bundles(t, user_id, *device_id, spend, &mut effects.low)
                .await?
                .map(Value::Bundles)
        }
        Command::SubmitGroup {
            shared,
            copies,
            sender,
            now_ms,
            ..
        } => submit_group(t, shared, copies, sender, *now_ms, limits, effects)
            .await?
            .map(Value::U32),
        Command::SetToken {
            address,
            token_hash,
            ..
        } => {
            let n = execute(
                t,
                "UPDATE devices SET token_hash = $3 WHERE user_id = $1 AND device_id = $2",
                &[
                    &address.user_id(),
                    &i64::from(address.device_id()),
                    &token_hash.map(|h| h.to_vec()),
                ],
            )
            .await?;
            if n == 1 {
                Ok(Value::Unit)
            } else {
                refuse(ErrorCode::UnknownDevice, "no such device")
            }
        }
        Command::SetPush {
            address, endpoint, ..
        } => {
            let n = execute(
                t,
                "UPDATE devices SET push_endpoint = $3 WHERE user_id = $1 AND device_id = $2",
                &[
                    &address.user_id(),
                    &i64::from(address.device_id()),
                    endpoint,
                ],
            )
            .await?;
            if n == 1 {
                Ok(Value::Unit)
            } else {
                refuse(ErrorCode::UnknownDevice, "no such device")
            }
        }
        Command::TakeExpired { address, .. } => {
            let key: [&(dyn ToSql + Sync); 2] =
                [&address.user_id(), &i64::from(address.device_id())];
            let n = query_opt(
                t,
                "SELECT expired_unreported FROM devices WHERE user_id = $1 AND device_id = $2 FOR UPDATE",
                &key,
            )
            .await?
            .map_or(0, |r| u64_of(r.get(0)));
            if n > 0 {
                execute(
                    t,
                    "UPDATE devices SET expired_unreported = 0 WHERE user_id = $1 AND device_id = $2",
                    &key,
                )
                .await?;
            }
            Ok(Value::U64(n))
        }
        Command::Purge { now_ms, limit, .. } => {
            let n = purge(t, *now_ms, *limit).await?;
            effects.expired += n;
            Ok(Value::U64(n))
        }
        // `Submit` and `Ack` run with the rows held for the batch
        // (`super::held`), never here.
        Command::Submit { .. } | Command::Ack { .. } | Command::Stop => {
            refuse(ErrorCode::Internal, "nothing to apply")
        }
    })
}

pub(super) async fn device_exists(t: &Tx<'_>, address: &Address) -> Result<bool, Error> {
    Ok(query_opt(
        t,
        "SELECT 1 FROM devices WHERE user_id = $1 AND device_id = $2",
        &[&address.user_id(), &i64::from(address.device_id())],
    )
    .await?
    .is_some())
}

/// As the SQLite backend's `store_list`: binds a user id to its first
/// list's user key, accepts only newer lists (or, registering, the stored
/// one), and removes the devices a new list leaves out.
async fn store_list(
    t: &Tx<'_>,
    list: &DeviceList,
    bytes: &[u8],
    publish: bool,
    now_ms: u64,
    removed: &mut Vec<Address>,
) -> Result<Outcome<()>, Error> {
    let user = list.user_id();
    let now = i64_of(now_ms);
    let row = query_opt(
        t,
        "SELECT user_key, list_version, device_list FROM users WHERE user_id = $1 FOR UPDATE",
        &[&user],
    )
    .await?;
    let version = list.version().to_be_bytes().to_vec();
    match row {
        None if publish => {
            return Ok(refuse(
                ErrorCode::UnknownUser,
                "the user has no device list",
            ));
        }
        None => {
            execute(
                t,
                "INSERT INTO users (user_id, user_key, list_version, device_list, updated_ms) VALUES ($1, $2, $3, $4, $5)",
                &[&user, &list.user_key().to_bytes().to_vec(), &version, &bytes, &now],
            )
            .await?;
        }
        Some(row) => {
            let (key, stored_version, stored): (Vec<u8>, Vec<u8>, Vec<u8>) =
                (row.get(0), row.get(1), row.get(2));
            if key != list.user_key().to_bytes() {
                return Ok(refuse(
                    ErrorCode::UserKeyMismatch,
                    "the list is signed by another user key than the one this user id is bound to",
                ));
            }
            let Ok(stored_version) = <[u8; 8]>::try_from(stored_version.as_slice()) else {
                tracing::error!(user, "stored list version is corrupt");
                return Ok(refuse(ErrorCode::Internal, "stored list is corrupt"));
            };
            let stored_version = u64::from_be_bytes(stored_version);
            if list.version() <= stored_version {
                return Ok(if publish || list.version() < stored_version {
                    refuse(
                        ErrorCode::StaleDeviceList,
                        format!(
                            "list version {} is not newer than the stored version {stored_version}",
                            list.version()
                        ),
                    )
                } else if stored == bytes {
                    Ok(())
                } else {
                    refuse(
                        ErrorCode::InvalidDeviceList,
                        "another list with the stored version is stored",
                    )
                });
            }
            execute(
                t,
                "UPDATE users SET list_version = $2, device_list = $3, updated_ms = $4 WHERE user_id = $1",
                &[&user, &version, &bytes, &now],
            )
            .await?;
        }
    }
    let devices = query(
        t,
        "SELECT device_id, identity_key FROM devices WHERE user_id = $1",
        &[&user],
    )
    .await?;
    for row in devices {
        let (device, key): (i64, Vec<u8>) = (row.get(0), row.get(1));
        let device = u32_of(device);
        if IdentityKey::try_from_slice(&key).is_ok_and(|k| list.lists(device, &k)) {
            continue;
        }
        for sql in [
            "DELETE FROM devices WHERE user_id = $1 AND device_id = $2",
            "DELETE FROM one_time_prekeys WHERE user_id = $1 AND device_id = $2",
            "DELETE FROM one_time_kem_prekeys WHERE user_id = $1 AND device_id = $2",
            "DELETE FROM messages WHERE user_id = $1 AND device_id = $2",
        ] {
            execute(t, sql, &[&user, &i64::from(device)]).await?;
        }
        if let Ok(address) = Address::new(user, device) {
            tracing::debug!(device = %address, "device removed by its user's list");
            removed.push(address);
        }
    }
    Ok(Ok(()))
}

async fn register(
    t: &Tx<'_>,
    address: &Address,
    identity_key: &IdentityKey,
    now_ms: u64,
) -> Result<Outcome<bool>, Error> {
    let (user, device) = (address.user_id(), i64::from(address.device_id()));
    let existing = query_opt(
        t,
        "SELECT identity_key FROM devices WHERE user_id = $1 AND device_id = $2",
        &[&user, &device],
    )
    .await?;
    if let Some(row) = existing {
        let key: Vec<u8> = row.get(0);
        return Ok(if key == identity_key.to_bytes() {
            Ok(false)
        } else {
            refuse(
                ErrorCode::AddressTaken,
                "the address is registered with another identity key",
            )
        });
    }
    let count: i64 = query(
        t,
        "SELECT COUNT(*) FROM devices WHERE user_id = $1",
        &[&user],
    )
    .await?
    .first()
    .map_or(0, |r| r.get(0));
    if usize::try_from(count).unwrap_or(usize::MAX) >= MAX_DEVICES_PER_USER {
        return Ok(refuse(
            ErrorCode::TooManyDevices,
            "the user has the most devices allowed",
        ));
    }
    execute(
        t,
        "INSERT INTO devices (user_id, device_id, identity_key, created_ms) VALUES ($1, $2, $3, $4)",
        &[&user, &device, &identity_key.to_bytes().to_vec(), &i64_of(now_ms)],
    )
    .await?;
    Ok(Ok(true))
}
