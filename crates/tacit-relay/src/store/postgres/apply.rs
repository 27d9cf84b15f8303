//! The PostgreSQL writer's commands, each applied inside its savepoint of
//! the batch's transaction, with the semantics of the SQLite backend's.

use deadpool_postgres::Transaction;
use subtle::ConstantTimeEq;
use tacit::identity::DeviceList;
use tacit::kem::{KemPublicKey, SignedKemPreKey};
use tacit::wire::PreKeyBundleMessage;
use tacit::{Address, DeviceId, IdentityKey, PublicKey, Signature};
use tacit_relay_proto::{
    EnvelopeKind, ErrorCode, ErrorReply, SharedPayloadBytes, UploadPreKeys, MAX_DEVICES_PER_USER,
};
use tokio_postgres::types::ToSql;
use tokio_postgres::Error;

use super::Value;
use crate::group::GroupCopy;
use crate::kem::PreKeyCounts;
use crate::store::{refuse, Claimed, Command, Effects, Outcome, WriterLimits};

type Tx<'a> = Transaction<'a>;

/// A stored integer as the `u32` it was stored from.
fn u32_of(v: i64) -> u32 {
    u32::try_from(v).unwrap_or(u32::MAX)
}

/// A stored integer as the `u64` it was stored from.
fn u64_of(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

/// A `u64` as a stored integer (times past `i64::MAX` are held there).
fn i64_of(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

async fn execute(t: &Tx<'_>, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<u64, Error> {
    let statement = t.prepare_cached(sql).await?;
    t.execute(&statement, params).await
}

async fn query(
    t: &Tx<'_>,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Vec<tokio_postgres::Row>, Error> {
    let statement = t.prepare_cached(sql).await?;
    t.query(&statement, params).await
}

async fn query_opt(
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
pub(super) async fn lock_rows(t: &Tx<'_>, batch: &[Command]) -> Result<(), Error> {
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
    if !users.is_empty() || !devices.is_empty() {
        let (ids, numbers): (Vec<String>, Vec<i64>) = devices.into_iter().unzip();
        query(
            t,
            "SELECT 1 FROM devices WHERE user_id = ANY($1)
                OR (user_id, device_id) IN (SELECT * FROM unnest($2::text[], $3::bigint[]))
             ORDER BY user_id, device_id FOR UPDATE",
            &[&users, &ids, &numbers],
        )
        .await?;
    }
    Ok(())
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
            user_id, device_id, ..
        } => claim_bundles(t, user_id, *device_id, limits.prekeys_low, &mut effects.low)
            .await?
            .map(Value::Bundles),
        Command::Submit {
            recipient,
            envelope,
            token_hash,
            authenticated,
            now_ms,
            ..
        } => {
            if let Err(e) = may_submit(t, recipient, *token_hash, *authenticated, limits).await? {
                return Ok(Err(e));
            }
            let id = insert_envelope(
                t,
                recipient,
                (envelope, EnvelopeKind::Sealed),
                *now_ms,
                limits,
            )
            .await?;
            effects.submitted += 1;
            effects.mail.push(recipient.clone());
            Ok(Value::U64(id))
        }
        Command::SubmitGroup {
            shared,
            copies,
            authenticated,
            now_ms,
            ..
        } => submit_group(t, shared, copies, *authenticated, *now_ms, limits, effects)
            .await?
            .map(Value::U32),
        Command::Ack { address, ids, .. } => {
            let result = ack(t, address, ids).await?;
            if let Ok(n) = result {
                effects.acked += u64::from(n);
            }
            result.map(Value::U32)
        }
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
        Command::Purge { now_ms, .. } => {
            let n = purge(t, *now_ms).await?;
            effects.expired += n;
            Ok(Value::U64(n))
        }
        Command::Stop => refuse(ErrorCode::Internal, "nothing to apply"),
    })
}

async fn device_exists(t: &Tx<'_>, address: &Address) -> Result<bool, Error> {
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
            tracing::info!(device = %address, "device removed by its user's list");
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

/// How many one-time prekeys (`kem` false) or one-time KEM prekeys the
/// device has stored.
pub(super) async fn count_one_time(
    t: &Tx<'_>,
    user: &str,
    device: DeviceId,
    kem: bool,
) -> Result<u32, Error> {
    let sql = if kem {
        "SELECT COUNT(*) FROM one_time_kem_prekeys WHERE user_id = $1 AND device_id = $2"
    } else {
        "SELECT COUNT(*) FROM one_time_prekeys WHERE user_id = $1 AND device_id = $2"
    };
    Ok(query(t, sql, &[&user, &i64::from(device)])
        .await?
        .first()
        .map_or(0, |r| u32_of(r.get(0))))
}

async fn upload_prekeys(
    t: &Tx<'_>,
    address: &Address,
    upload: &UploadPreKeys,
    max_one_time: u32,
    max_one_time_kem: u32,
) -> Result<Outcome<PreKeyCounts>, Error> {
    let (user, device) = (address.user_id(), address.device_id());
    let d = i64::from(device);
    if !device_exists(t, address).await? {
        return Ok(refuse(
            ErrorCode::DeviceRemoved,
            "the device is no longer registered",
        ));
    }
    let stored = count_one_time(t, user, device, false).await?;
    let adding = u32::try_from(upload.one_time_prekeys.len()).unwrap_or(u32::MAX);
    if stored.saturating_add(adding) > max_one_time {
        return Ok(refuse(
            ErrorCode::TooManyPreKeys,
            format!("{stored} one-time prekeys stored; at most {max_one_time} allowed"),
        ));
    }
    for k in &upload.one_time_prekeys {
        let n = execute(
            t,
            "INSERT INTO one_time_prekeys (user_id, device_id, key_id, key) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
            &[&user, &d, &i64::from(k.id), &k.key.to_bytes().to_vec()],
        )
        .await?;
        if n == 0 {
            return Ok(refuse(
                ErrorCode::InvalidPreKeys,
                format!("one-time prekey id {} is already stored", k.id),
            ));
        }
    }
    if let Some(k) = &upload.signed_prekey {
        execute(
            t,
            "UPDATE devices SET signed_prekey_id = $3, signed_prekey = $4, signed_prekey_signature = $5 WHERE user_id = $1 AND device_id = $2",
            &[&user, &d, &i64::from(k.id), &k.key.to_bytes().to_vec(), &k.signature.to_bytes().to_vec()],
        )
        .await?;
    }
    if let Some(k) = &upload.fallback_prekey {
        execute(
            t,
            "UPDATE devices SET fallback_prekey_id = $3, fallback_prekey = $4 WHERE user_id = $1 AND device_id = $2",
            &[&user, &d, &i64::from(k.id), &k.key.to_bytes().to_vec()],
        )
        .await?;
    }
    let stored_kem = count_one_time(t, user, device, true).await?;
    let adding_kem = u32::try_from(upload.one_time_kem_prekeys.len()).unwrap_or(u32::MAX);
    if stored_kem.saturating_add(adding_kem) > max_one_time_kem {
        return Ok(refuse(
            ErrorCode::TooManyPreKeys,
            format!("{stored_kem} one-time KEM prekeys stored; at most {max_one_time_kem} allowed"),
        ));
    }
    for k in &upload.one_time_kem_prekeys {
        let n = execute(
            t,
            "INSERT INTO one_time_kem_prekeys (user_id, device_id, key_id, key, signature) VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
            &[&user, &d, &i64::from(k.id), &k.key.to_encoded(), &k.signature.to_bytes().to_vec()],
        )
        .await?;
        if n == 0 {
            return Ok(refuse(
                ErrorCode::InvalidPreKeys,
                format!("one-time KEM prekey id {} is already stored", k.id),
            ));
        }
    }
    if let Some(k) = &upload.kem_last_resort_prekey {
        execute(
            t,
            "UPDATE devices SET kem_prekey_id = $3, kem_prekey = $4, kem_prekey_signature = $5 WHERE user_id = $1 AND device_id = $2",
            &[&user, &d, &i64::from(k.id), &k.key.to_encoded(), &k.signature.to_bytes().to_vec()],
        )
        .await?;
    }
    Ok(Ok(PreKeyCounts {
        one_time: stored + adding,
        one_time_kem: stored_kem + adding_kem,
    }))
}

/// Takes the device's one-time prekey (or KEM prekey) with the lowest id
/// that no other transaction holds, deleting it: under concurrent claims
/// from any number of nodes, each key goes to one claim.
async fn take_one_time(
    t: &Tx<'_>,
    user: &str,
    device: DeviceId,
    kem: bool,
) -> Result<Option<tokio_postgres::Row>, Error> {
    let sql = if kem {
        "DELETE FROM one_time_kem_prekeys WHERE (user_id, device_id, key_id) = (
            SELECT user_id, device_id, key_id FROM one_time_kem_prekeys
            WHERE user_id = $1 AND device_id = $2 ORDER BY key_id LIMIT 1 FOR UPDATE SKIP LOCKED)
         RETURNING key_id, key, signature"
    } else {
        "DELETE FROM one_time_prekeys WHERE (user_id, device_id, key_id) = (
            SELECT user_id, device_id, key_id FROM one_time_prekeys
            WHERE user_id = $1 AND device_id = $2 ORDER BY key_id LIMIT 1 FOR UPDATE SKIP LOCKED)
         RETURNING key_id, key"
    };
    query_opt(t, sql, &[&user, &i64::from(device)]).await
}

/// A stored KEM prekey, decoded again (a corrupt row is logged and not
/// offered).
fn kem_prekey(id: i64, key: &[u8], signature: &[u8]) -> Option<SignedKemPreKey> {
    match (
        KemPublicKey::from_encoded(key),
        Signature::try_from_slice(signature),
    ) {
        (Ok(key), Ok(signature)) => Some(SignedKemPreKey {
            id: u32_of(id),
            key,
            signature,
        }),
        _ => {
            tracing::error!(id, "stored KEM prekey is corrupt");
            None
        }
    }
}

async fn claim_bundles(
    t: &Tx<'_>,
    user_id: &str,
    device_id: Option<DeviceId>,
    low_threshold: u32,
    low: &mut Vec<(Address, PreKeyCounts)>,
) -> Result<Outcome<Claimed>, Error> {
    let Some(list) = query_opt(
        t,
        "SELECT device_list FROM users WHERE user_id = $1",
        &[&user_id],
    )
    .await?
    else {
        return Ok(refuse(ErrorCode::UnknownDevice, "no such device"));
    };
    let list: Vec<u8> = list.get(0);
    let rows = query(
        t,
        "SELECT device_id, identity_key, signed_prekey_id, signed_prekey, signed_prekey_signature,
                fallback_prekey_id, fallback_prekey, kem_prekey_id, kem_prekey, kem_prekey_signature
         FROM devices WHERE user_id = $1 AND ($2::bigint IS NULL OR device_id = $2) ORDER BY device_id",
        &[&user_id, &device_id.map(i64::from)],
    )
    .await?;
    if rows.is_empty() {
        return Ok(refuse(ErrorCode::UnknownDevice, "no such device"));
    }
    let mut bundles = Vec::with_capacity(rows.len());
    for row in rows {
        let device = u32_of(row.get(0));
        let (Some(spk_id), Some(spk), Some(spk_sig)) = (
            row.get::<_, Option<i64>>(2),
            row.get::<_, Option<Vec<u8>>>(3),
            row.get::<_, Option<Vec<u8>>>(4),
        ) else {
            continue;
        };
        let (Ok(identity_key), Ok(signed_prekey), Ok(signature)) = (
            IdentityKey::try_from_slice(row.get(1)),
            PublicKey::try_from_slice(&spk),
            Signature::try_from_slice(&spk_sig),
        ) else {
            tracing::error!(user_id, device, "stored keys are corrupt");
            continue;
        };
        let one_time = take_one_time(t, user_id, device, false).await?;
        let ran_out = one_time.is_none();
        let (offered, remaining) = match one_time {
            Some(k) => (
                PublicKey::try_from_slice(k.get(1))
                    .ok()
                    .map(|key| (u32_of(k.get(0)), key)),
                count_one_time(t, user_id, device, false).await?,
            ),
            None => {
                let fallback = match (
                    row.get::<_, Option<i64>>(5),
                    row.get::<_, Option<Vec<u8>>>(6),
                ) {
                    (Some(id), Some(key)) => PublicKey::try_from_slice(&key)
                        .ok()
                        .map(|k| (u32_of(id), k)),
                    _ => None,
                };
                (fallback, 0)
            }
        };
        // The KEM prekey is claimed in the same savepoint as the one-time
        // prekey: both go to this bundle alone, or neither.
        let (kem, kem_remaining) = match take_one_time(t, user_id, device, true).await? {
            Some(k) => (
                kem_prekey(k.get(0), k.get(1), k.get(2)),
                count_one_time(t, user_id, device, true).await?,
            ),
            None => match (
                row.get::<_, Option<i64>>(7),
                row.get::<_, Option<Vec<u8>>>(8),
                row.get::<_, Option<Vec<u8>>>(9),
            ) {
                (Some(id), Some(key), Some(sig)) => (kem_prekey(id, &key, &sig), 0),
                _ => (None, 0),
            },
        };
        let kem_low = kem.is_some() && kem_remaining < low_threshold;
        if ran_out || remaining < low_threshold || kem_low {
            if let Ok(address) = Address::new(user_id, device) {
                low.push((
                    address,
                    PreKeyCounts {
                        one_time: remaining,
                        one_time_kem: kem_remaining,
                    },
                ));
            }
        }
        bundles.push((
            device,
            PreKeyBundleMessage {
                identity_key,
                signed_prekey_id: u32_of(spk_id),
                signed_prekey,
                signed_prekey_signature: signature,
                one_time_prekey: offered,
                kem_prekey: kem,
            },
        ));
    }
    if bundles.is_empty() {
        return Ok(refuse(
            ErrorCode::NoPreKeys,
            "no signed prekey has been uploaded",
        ));
    }
    Ok(Ok((list, bundles)))
}

/// The checks of `Submit`, without writing: the device exists, its token
/// is presented unless `authenticated`, its queue is below the cap. The
/// device row is locked to the commit.
async fn may_submit(
    t: &Tx<'_>,
    recipient: &Address,
    token_hash: Option<[u8; 32]>,
    authenticated: bool,
    limits: &WriterLimits,
) -> Result<Outcome<()>, Error> {
    let Some(row) = query_opt(
        t,
        "SELECT token_hash, queued FROM devices WHERE user_id = $1 AND device_id = $2 FOR UPDATE",
        &[&recipient.user_id(), &i64::from(recipient.device_id())],
    )
    .await?
    else {
        return Ok(refuse(ErrorCode::UnknownDevice, "no such device"));
    };
    let (stored_token, queued): (Option<Vec<u8>>, i64) = (row.get(0), row.get(1));
    if let (Some(stored), false) = (stored_token, authenticated) {
        let matches = token_hash.is_some_and(|h| bool::from(h.as_slice().ct_eq(stored.as_slice())));
        if !matches {
            return Ok(refuse(
                ErrorCode::DeliveryTokenRefused,
                "the recipient requires its delivery token",
            ));
        }
    }
    if u64_of(queued) >= u64::from(limits.queue_cap) {
        return Ok(refuse(
            ErrorCode::QueueFull,
            format!("the recipient's queue holds {queued} messages, the most allowed"),
        ));
    }
    Ok(Ok(()))
}

/// Queues `envelope` for `recipient`, which [`may_submit`] accepted (and
/// locked); answers the message id.
async fn insert_envelope(
    t: &Tx<'_>,
    recipient: &Address,
    (envelope, kind): (&[u8], EnvelopeKind),
    now_ms: u64,
    limits: &WriterLimits,
) -> Result<u64, Error> {
    let (user, device) = (recipient.user_id(), i64::from(recipient.device_id()));
    // One round trip: the insert and the device's count.
    let row = query(
        t,
        "WITH counted AS (
            UPDATE devices SET queued = queued + 1 WHERE user_id = $1 AND device_id = $2
         )
         INSERT INTO messages (user_id, device_id, server_ms, expires_ms, envelope, kind)
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
        &[
            &user,
            &device,
            &i64_of(now_ms),
            &i64_of(now_ms.saturating_add(limits.ttl_ms)),
            &envelope,
            &i64::from(kind.as_u32()),
        ],
    )
    .await?;
    Ok(row.first().map_or(0, |r| u64_of(r.get(0))))
}

/// As the SQLite backend's `submit_group`: every recipient is checked
/// before any envelope is written; the first refusal refuses all.
async fn submit_group(
    t: &Tx<'_>,
    shared: &SharedPayloadBytes,
    copies: &[GroupCopy],
    authenticated: bool,
    now_ms: u64,
    limits: &WriterLimits,
    effects: &mut Effects,
) -> Result<Outcome<u32>, Error> {
    for (index, copy) in copies.iter().enumerate() {
        let checked =
            may_submit(t, &copy.recipient, copy.token_hash, authenticated, limits).await?;
        if let Err(refusal) = checked {
            return Ok(Err(ErrorReply::new(
                refusal.code,
                format!(
                    "recipient {index} ({}): {}; nothing was queued",
                    copy.recipient, refusal.message
                ),
            )));
        }
    }
    for copy in copies {
        let envelope = shared.envelope_for(&copy.wrapped_key);
        insert_envelope(
            t,
            &copy.recipient,
            (&envelope, EnvelopeKind::Group),
            now_ms,
            limits,
        )
        .await?;
        effects.mail.push(copy.recipient.clone());
    }
    let n = u32::try_from(copies.len()).unwrap_or(u32::MAX);
    effects.submitted += u64::from(n);
    Ok(Ok(n))
}

async fn ack(t: &Tx<'_>, address: &Address, ids: &[u64]) -> Result<Outcome<u32>, Error> {
    let (user, device) = (address.user_id(), i64::from(address.device_id()));
    let wanted: Vec<i64> = ids
        .iter()
        .filter_map(|&id| i64::try_from(id).ok())
        .collect();
    // One round trip for the whole ack; a repeated id is deleted once, so
    // it falls short like a stranger id and refuses the ack.
    let deleted: Vec<u64> = query(
        t,
        "WITH gone AS (
            DELETE FROM messages WHERE id = ANY($3) AND user_id = $1 AND device_id = $2 RETURNING id
         ), counted AS (
            UPDATE devices SET queued = queued - (SELECT COUNT(*) FROM gone)
            WHERE user_id = $1 AND device_id = $2
         )
         SELECT id FROM gone",
        &[&user, &device, &wanted],
    )
    .await?
    .iter()
    .map(|r| u64_of(r.get(0)))
    .collect();
    if deleted.len() != ids.len() {
        let missing = ids
            .iter()
            .enumerate()
            .find(|(i, id)| !deleted.contains(id) || ids[..*i].contains(id))
            .map_or(0, |(_, id)| *id);
        return Ok(refuse(
            ErrorCode::UnknownMessage,
            format!("message {missing} is not in this mailbox; nothing was deleted"),
        ));
    }
    Ok(Ok(u32::try_from(deleted.len()).unwrap_or(u32::MAX)))
}

/// Deletes the expired messages and counts them against their devices.
async fn purge(t: &Tx<'_>, now_ms: u64) -> Result<u64, Error> {
    let groups = query(
        t,
        "WITH gone AS (DELETE FROM messages WHERE expires_ms <= $1 RETURNING user_id, device_id)
         SELECT user_id, device_id, COUNT(*) FROM gone GROUP BY user_id, device_id ORDER BY user_id, device_id",
        &[&i64_of(now_ms)],
    )
    .await?;
    let mut total = 0;
    for row in groups {
        let (user, device, n): (String, i64, i64) = (row.get(0), row.get(1), row.get(2));
        execute(
            t,
            "UPDATE devices SET queued = queued - $3, expired_unreported = expired_unreported + $3 WHERE user_id = $1 AND device_id = $2",
            &[&user, &device, &n],
        )
        .await?;
        total += u64_of(n);
    }
    Ok(total)
}
