//! The SQLite writer's commands: each applied inside its own savepoint of
//! the batch's transaction, except `Submit` and `Ack`, whose checks all
//! come before their first write, which count into the mailboxes the
//! transaction holds (`held`), and which roll the transaction back if a
//! write fails halfway (`without_savepoint`).

use rusqlite::{params, Connection, OptionalExtension, Statement, Transaction};
use tacit::identity::DeviceList;
use tacit::wire::PreKeyBundleMessage;
use tacit::{Address, DeviceId, IdentityKey, PublicKey, Signature};
use tacit_relay_proto::{
    EnvelopeKind, ErrorCode, OneTimePreKey, UploadPreKeys, MAX_DEVICES_PER_USER,
};

use super::held::{read_row, HeldMailboxes, MailboxRow, INSERT_MESSAGE};
use super::ids::MessageIds;
use super::{savepoint, without_savepoint, Pending};
use crate::group;
use crate::kem::{self, PreKeyCounts};
use crate::store::{refuse, Claimed, Command, Effects, Outcome, WriterLimits};
use crate::tokenless::Sender;

pub(super) fn apply(
    tx: &Transaction<'_>,
    command: Command,
    limits: &WriterLimits,
    effects: &mut Effects,
    held: &mut HeldMailboxes<'_>,
) -> Pending {
    match command {
        Command::Register {
            address,
            identity_key,
            device_list,
            list_bytes,
            now_ms,
            reply,
        } => {
            let mut removed = Vec::new();
            let result = savepoint(tx, |t| {
                if let Err(e) =
                    store_list(t, &device_list, &list_bytes, false, now_ms, &mut removed)?
                {
                    return Ok(Err(e));
                }
                register(t, &address, &identity_key, now_ms)
            });
            if result.is_ok() {
                effects.removed.extend(removed);
            }
            Pending::Bool(reply, result)
        }
        Command::PublishList {
            publisher,
            device_list,
            list_bytes,
            now_ms,
            reply,
        } => {
            let mut removed = Vec::new();
            let result = savepoint(tx, |t| {
                if !device_exists(t, &publisher)? {
                    return Ok(refuse(
                        ErrorCode::DeviceRemoved,
                        "the publishing device is no longer registered",
                    ));
                }
                Ok(
                    store_list(t, &device_list, &list_bytes, true, now_ms, &mut removed)?
                        .map(|()| device_list.version()),
                )
            });
            if result.is_ok() {
                effects.removed.extend(removed);
            }
            Pending::U64(reply, result)
        }
        Command::UploadPreKeys {
            address,
            upload,
            max_one_time,
            max_one_time_kem,
            reply,
        } => Pending::Counts(
            reply,
            savepoint(tx, |t| {
                upload_prekeys(t, &address, &upload, max_one_time, max_one_time_kem)
            }),
        ),
        Command::ClaimBundles {
            user_id,
            device_id,
            spend_one_time,
            reply,
        } => {
            let mut low = Vec::new();
            let result = savepoint(tx, |t| {
                let spend = spend_one_time.then_some(limits.prekeys_low);
                claim_bundles(t, &user_id, device_id, spend, &mut low)
            });
            if result.is_ok() {
                effects.low.extend(low);
            }
            Pending::Bundles(reply, result)
        }
        Command::Submit {
            recipient,
            envelope,
            token_hash,
            sender,
            now_ms,
            reply,
        } => {
            // No savepoint: every check comes before the insert, its one
            // write; the count goes into the mailboxes `held`.
            let result = without_savepoint(tx, |_| {
                submit(
                    held,
                    &recipient,
                    (&envelope, EnvelopeKind::Sealed),
                    token_hash,
                    &sender,
                    now_ms,
                    limits,
                )
            });
            if let Ok(id) = result {
                effects.submitted += 1;
                // One writer, ids increasing in commit order: the message
                // goes straight to the recipient's connection after the
                // commit (`crate::inbox`).
                effects.handed.push((
                    recipient,
                    crate::store::StoredMessage {
                        id,
                        server_ms: now_ms,
                        envelope,
                        kind: EnvelopeKind::Sealed.as_u32(),
                    },
                ));
            }
            Pending::U64(reply, result)
        }
        Command::SubmitGroup {
            shared,
            copies,
            sender,
            now_ms,
            reply,
        } => {
            let result = savepoint(tx, |t| {
                group::submit_group(t, &shared, &copies, &sender, now_ms, limits)
            });
            if let Ok(n) = result {
                effects.submitted += u64::from(n);
                effects.mail.extend(copies.into_iter().map(|c| c.recipient));
            }
            Pending::U32(reply, result)
        }
        Command::Ack {
            address,
            ids,
            reply,
        } => {
            // No savepoint: every id is checked before the first delete.
            let result = without_savepoint(tx, |t| ack(t, held, &address, &ids));
            if let Ok(n) = result {
                effects.acked += u64::from(n);
            }
            Pending::U32(reply, result)
        }
        Command::SetToken {
            address,
            token_hash,
            reply,
        } => Pending::Unit(
            reply,
            savepoint(tx, |t| {
                let n = t.execute(
                    "UPDATE devices SET token_hash = ?3 WHERE user_id = ?1 AND device_id = ?2",
                    params![
                        address.user_id(),
                        address.device_id(),
                        token_hash.map(|h| h.to_vec())
                    ],
                )?;
                Ok(if n == 1 {
                    Ok(())
                } else {
                    refuse(ErrorCode::UnknownDevice, "no such device")
                })
            }),
        ),
        Command::SetPush {
            address,
            endpoint,
            reply,
        } => Pending::Unit(
            reply,
            savepoint(tx, |t| {
                let n = t.execute(
                    "UPDATE devices SET push_endpoint = ?3 WHERE user_id = ?1 AND device_id = ?2",
                    params![address.user_id(), address.device_id(), endpoint],
                )?;
                Ok(if n == 1 {
                    Ok(())
                } else {
                    refuse(ErrorCode::UnknownDevice, "no such device")
                })
            }),
        ),
        Command::TakeExpired { address, reply } => Pending::U64(
            reply,
            savepoint(tx, |t| {
                let row: Option<(i64, u64)> = t
                    .query_row(
                        "SELECT m.mailbox, m.expired_unreported FROM devices d JOIN mailboxes m ON m.mailbox = d.mailbox
                         WHERE d.user_id = ?1 AND d.device_id = ?2",
                        params![address.user_id(), address.device_id()],
                        |r| Ok((r.get(0)?, r.get(1)?)),
                    )
                    .optional()?;
                let Some((mailbox, n)) = row else {
                    return Ok(Ok(0));
                };
                if n > 0 {
                    t.execute(
                        "UPDATE mailboxes SET expired_unreported = 0 WHERE mailbox = ?1",
                        params![mailbox],
                    )?;
                }
                Ok(Ok(n))
            }),
        ),
        Command::Stop => Pending::None,
        Command::Purge {
            now_ms,
            limit,
            reply,
        } => {
            let result = savepoint(tx, |t| purge(t, now_ms, limit));
            if let Ok(purged) = &result {
                effects.expired += purged.expired;
            }
            Pending::U64(reply, result.map(|purged| purged.deleted))
        }
    }
}

fn device_exists(t: &Connection, address: &Address) -> Result<bool, rusqlite::Error> {
    Ok(
        t.prepare_cached("SELECT 1 FROM devices WHERE user_id = ?1 AND device_id = ?2")?
            .query_row(params![address.user_id(), address.device_id()], |_| Ok(()))
            .optional()?
            .is_some(),
    )
}

/// Checks a verified list against the user's row and stores it when it is
/// new to the relay: the first list of a user id binds it to the list's
/// user key; a later one must carry that key and a higher version (for a
/// registration, the stored version with the stored bytes is accepted and
/// changes nothing). Storing a list removes every registered device of the
/// user that is not on it with its identity key (`removed` gets them).
fn store_list(
    t: &Connection,
    list: &DeviceList,
    bytes: &[u8],
    publish: bool,
    now_ms: u64,
    removed: &mut Vec<Address>,
) -> Result<Outcome<()>, rusqlite::Error> {
    let user = list.user_id();
    let row: Option<(Vec<u8>, Vec<u8>, Vec<u8>)> = t
        .prepare_cached("SELECT user_key, list_version, device_list FROM users WHERE user_id = ?1")?
        .query_row(params![user], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .optional()?;
    let version = list.version().to_be_bytes().to_vec();
    match row {
        None if publish => {
            return Ok(refuse(
                ErrorCode::UnknownUser,
                "the user has no device list",
            ));
        }
        None => {
            t.prepare_cached(
                "INSERT INTO users (user_id, user_key, list_version, device_list, updated_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![user, list.user_key().to_bytes().to_vec(), version, bytes, now_ms])?;
        }
        Some((key, stored_version, stored)) => {
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
            t.prepare_cached(
                "UPDATE users SET list_version = ?2, device_list = ?3, updated_ms = ?4 WHERE user_id = ?1",
            )?
            .execute(params![user, version, bytes, now_ms])?;
        }
    }
    let devices: Vec<(DeviceId, Vec<u8>, i64)> = {
        let mut stmt = t.prepare_cached(
            "SELECT device_id, identity_key, mailbox FROM devices WHERE user_id = ?1",
        )?;
        let rows = stmt.query_map(params![user], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        rows.collect::<Result<_, _>>()?
    };
    for (device, key, mailbox) in devices {
        let listed = IdentityKey::try_from_slice(&key).is_ok_and(|k| list.lists(device, &k));
        if listed {
            continue;
        }
        for sql in [
            "DELETE FROM devices WHERE user_id = ?1 AND device_id = ?2",
            "DELETE FROM one_time_prekeys WHERE user_id = ?1 AND device_id = ?2",
        ] {
            t.prepare_cached(sql)?.execute(params![user, device])?;
        }
        for sql in [
            "DELETE FROM messages WHERE mailbox = ?1",
            "DELETE FROM mailboxes WHERE mailbox = ?1",
        ] {
            t.prepare_cached(sql)?.execute(params![mailbox])?;
        }
        kem::delete_device(t, user, device)?;
        if let Ok(address) = Address::new(user, device) {
            tracing::debug!(device = %address, "device removed by its user's list");
            removed.push(address);
        }
    }
    Ok(Ok(()))
}

fn register(
    t: &Connection,
    address: &Address,
    identity_key: &IdentityKey,
    now_ms: u64,
) -> Result<Outcome<bool>, rusqlite::Error> {
    let existing: Option<Vec<u8>> = t
        .prepare_cached("SELECT identity_key FROM devices WHERE user_id = ?1 AND device_id = ?2")?
        .query_row(params![address.user_id(), address.device_id()], |r| {
            r.get(0)
        })
        .optional()?;
    if let Some(key) = existing {
        return Ok(if key == identity_key.to_bytes() {
            Ok(false)
        } else {
            refuse(
                ErrorCode::AddressTaken,
                "the address is registered with another identity key",
            )
        });
    }
    let devices: usize = t
        .prepare_cached("SELECT COUNT(*) FROM devices WHERE user_id = ?1")?
        .query_row(params![address.user_id()], |r| r.get(0))?;
    if devices >= MAX_DEVICES_PER_USER {
        return Ok(refuse(
            ErrorCode::TooManyDevices,
            "the user has the most devices allowed",
        ));
    }
    t.prepare_cached("INSERT INTO mailboxes DEFAULT VALUES")?
        .execute([])?;
    let mailbox = t.last_insert_rowid();
    t.prepare_cached(
        "INSERT INTO devices (user_id, device_id, identity_key, created_ms, mailbox) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![
        address.user_id(),
        address.device_id(),
        identity_key.to_bytes().to_vec(),
        now_ms,
        mailbox
    ])?;
    Ok(Ok(true))
}

pub(super) fn count_one_time(
    t: &Connection,
    user_id: &str,
    device_id: DeviceId,
) -> Result<u32, rusqlite::Error> {
    t.prepare_cached("SELECT COUNT(*) FROM one_time_prekeys WHERE user_id = ?1 AND device_id = ?2")?
        .query_row(params![user_id, device_id], |r| r.get(0))
}

fn upload_prekeys(
    t: &Connection,
    address: &Address,
    upload: &UploadPreKeys,
    max_one_time: u32,
    max_one_time_kem: u32,
) -> Result<Outcome<PreKeyCounts>, rusqlite::Error> {
    let (user, device) = (address.user_id(), address.device_id());
    if !device_exists(t, address)? {
        return Ok(refuse(
            ErrorCode::DeviceRemoved,
            "the device is no longer registered",
        ));
    }
    let stored = count_one_time(t, user, device)?;
    let adding = u32::try_from(upload.one_time_prekeys.len()).unwrap_or(u32::MAX);
    if stored.saturating_add(adding) > max_one_time {
        return Ok(refuse(
            ErrorCode::TooManyPreKeys,
            format!("{stored} one-time prekeys stored; at most {max_one_time} allowed"),
        ));
    }
    {
        let mut insert = t.prepare_cached(
            "INSERT OR IGNORE INTO one_time_prekeys (user_id, device_id, key_id, key) VALUES (?1, ?2, ?3, ?4)",
        )?;
        for OneTimePreKey { id, key } in &upload.one_time_prekeys {
            if insert.execute(params![user, device, id, key.to_bytes().to_vec()])? == 0 {
                return Ok(refuse(
                    ErrorCode::InvalidPreKeys,
                    format!("one-time prekey id {id} is already stored"),
                ));
            }
        }
    }
    if let Some(k) = &upload.signed_prekey {
        t.prepare_cached(
            "UPDATE devices SET signed_prekey_id = ?3, signed_prekey = ?4, signed_prekey_signature = ?5 WHERE user_id = ?1 AND device_id = ?2",
        )?
        .execute(params![user, device, k.id, k.key.to_bytes().to_vec(), k.signature.to_bytes().to_vec()])?;
    }
    if let Some(k) = &upload.fallback_prekey {
        t.prepare_cached(
            "UPDATE devices SET fallback_prekey_id = ?3, fallback_prekey = ?4 WHERE user_id = ?1 AND device_id = ?2",
        )?
        .execute(params![user, device, k.id, k.key.to_bytes().to_vec()])?;
    }
    let one_time_kem = match kem::store_upload(t, user, device, upload, max_one_time_kem)? {
        Ok(n) => n,
        Err(refusal) => return Ok(Err(refusal)),
    };
    Ok(Ok(PreKeyCounts {
        one_time: stored + adding,
        one_time_kem,
    }))
}

/// A device row's prekey columns.
type DeviceKeys = (
    DeviceId,
    Vec<u8>,
    Option<u32>,
    Option<Vec<u8>>,
    Option<Vec<u8>>,
    Option<u32>,
    Option<Vec<u8>>,
);

/// Claims bundles; `spend` is `None` to hand out no one-time prekey, or
/// the threshold below which the owner is warned.
fn claim_bundles(
    t: &Connection,
    user_id: &str,
    device_id: Option<DeviceId>,
    spend: Option<u32>,
    low: &mut Vec<(Address, PreKeyCounts)>,
) -> Result<Outcome<Claimed>, rusqlite::Error> {
    // Every device row of a user with a list is on it (storing a list
    // removes the others), so the bundles below are of listed devices.
    let list: Option<Vec<u8>> = t
        .prepare_cached("SELECT device_list FROM users WHERE user_id = ?1")?
        .query_row(params![user_id], |r| r.get(0))
        .optional()?;
    let Some(list) = list else {
        return Ok(refuse(ErrorCode::UnknownDevice, "no such device"));
    };
    let rows: Vec<DeviceKeys> = {
        let mut stmt = t.prepare_cached(
            "SELECT device_id, identity_key, signed_prekey_id, signed_prekey, signed_prekey_signature, fallback_prekey_id, fallback_prekey
             FROM devices WHERE user_id = ?1 AND (?2 IS NULL OR device_id = ?2) ORDER BY device_id",
        )?;
        let rows = stmt.query_map(params![user_id, device_id], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
                r.get(6)?,
            ))
        })?;
        rows.collect::<Result<_, _>>()?
    };
    if rows.is_empty() {
        return Ok(refuse(ErrorCode::UnknownDevice, "no such device"));
    }
    let mut bundles = Vec::with_capacity(rows.len());
    for (device, ik, spk_id, spk, spk_sig, fb_id, fb) in rows {
        let (Some(spk_id), Some(spk), Some(spk_sig)) = (spk_id, spk, spk_sig) else {
            continue;
        };
        let (Ok(identity_key), Ok(signed_prekey), Ok(signature)) = (
            IdentityKey::try_from_slice(&ik),
            PublicKey::try_from_slice(&spk),
            Signature::try_from_slice(&spk_sig),
        ) else {
            tracing::error!(user_id, device, "stored keys are corrupt");
            continue;
        };
        let one_time: Option<(u32, Vec<u8>)> = match spend {
            Some(_) => t
                .prepare_cached(
                    "SELECT key_id, key FROM one_time_prekeys WHERE user_id = ?1 AND device_id = ?2 ORDER BY key_id LIMIT 1",
                )?
                .query_row(params![user_id, device], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()?,
            None => None,
        };
        let ran_out = one_time.is_none();
        let (offered, remaining) = match one_time {
            Some((id, key)) => {
                t.prepare_cached(
                    "DELETE FROM one_time_prekeys WHERE user_id = ?1 AND device_id = ?2 AND key_id = ?3",
                )?
                .execute(params![user_id, device, id])?;
                let remaining = count_one_time(t, user_id, device)?;
                (
                    PublicKey::try_from_slice(&key).ok().map(|k| (id, k)),
                    remaining,
                )
            }
            None => {
                let fallback = match (fb_id, fb) {
                    (Some(id), Some(key)) => PublicKey::try_from_slice(&key).ok().map(|k| (id, k)),
                    _ => None,
                };
                (fallback, 0)
            }
        };
        // The KEM prekey is claimed in the same savepoint as the one-time
        // prekey: both are handed out to this bundle alone, or neither.
        let kem_claim = kem::claim(t, user_id, device, spend.is_some())?;
        // Nothing is used up without spending: no warning.
        let low_threshold = spend.unwrap_or(0);
        let kem_low = kem_claim.prekey.is_some() && kem_claim.remaining < low_threshold;
        if spend.is_some() && (ran_out || remaining < low_threshold || kem_low) {
            if let Ok(address) = Address::new(user_id, device) {
                low.push((
                    address,
                    PreKeyCounts {
                        one_time: remaining,
                        one_time_kem: kem_claim.remaining,
                    },
                ));
            }
        }
        bundles.push((
            device,
            PreKeyBundleMessage {
                identity_key,
                signed_prekey_id: spk_id,
                signed_prekey,
                signed_prekey_signature: signature,
                one_time_prekey: offered,
                kem_prekey: kem_claim.prekey,
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

/// Queues `envelope`, of its kind, for `recipient`, or refuses: no such
/// device, its delivery token is needed, its queue is full, the sender's
/// tokenless quota is used up. The recipient's mailbox row and counters
/// are the ones `held` for the transaction.
pub(crate) fn submit(
    held: &mut HeldMailboxes<'_>,
    recipient: &Address,
    (envelope, kind): (&[u8], EnvelopeKind),
    token_hash: Option<[u8; 32]>,
    sender: &Sender,
    now_ms: u64,
    limits: &WriterLimits,
) -> Result<Outcome<u64>, rusqlite::Error> {
    let len = envelope.len();
    let row = held.row(recipient)?;
    let checked = match check_submission(row, (token_hash, len), sender.logged_in(), limits) {
        Ok(checked) => checked,
        Err(refusal) => return Ok(Err(refusal)),
    };
    if let Err(refusal) = sender.charge(u32::from(checked.tokenless), recipient) {
        return Ok(Err(refusal));
    }
    let id = held.take_id()?;
    let id = insert_message(
        held.insert_statement()?,
        (id, checked.mailbox),
        (envelope, kind),
        now_ms,
        limits,
    )?;
    held.add(recipient, 1, len as u64);
    Ok(Ok(id))
}

/// The checks of `Submit`, in order, without writing anything: the device
/// exists, its delivery token is presented unless `logged_in`, its
/// queue is below the cap in messages, and would stay within it in bytes
/// with an envelope of `len` bytes. Answers the device's mailbox and
/// whether the submission goes without a token the device set (a
/// logged-in sender's, which costs a unit of its tokenless quota).
pub(crate) fn may_submit(
    t: &Connection,
    recipient: &Address,
    checks: (Option<[u8; 32]>, usize),
    logged_in: bool,
    limits: &WriterLimits,
) -> Result<Outcome<Checked>, rusqlite::Error> {
    let row = read_row(t, recipient)?;
    Ok(check_submission(row.as_ref(), checks, logged_in, limits))
}

/// [`may_submit`]'s checks on the recipient's mailbox row (`None`: no such
/// device).
fn check_submission(
    row: Option<&MailboxRow>,
    (token_hash, len): (Option<[u8; 32]>, usize),
    logged_in: bool,
    limits: &WriterLimits,
) -> Outcome<Checked> {
    let Some(row) = row else {
        return refuse(ErrorCode::UnknownDevice, "no such device");
    };
    let stored = (row.token_hash.as_deref(), row.queued, row.queued_bytes);
    crate::store::recipient_check(stored, (token_hash, len), logged_in, limits).map(|tokenless| {
        Checked {
            mailbox: row.mailbox,
            tokenless,
        }
    })
}

/// What [`may_submit`] answers for an accepted submission.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Checked {
    /// The recipient's mailbox number, for [`insert_envelope`].
    pub(crate) mailbox: i64,
    /// Whether it goes without the token the device set.
    pub(crate) tokenless: bool,
}

/// Queues `envelope` in `mailbox`, which [`may_submit`] accepted (its
/// [`Checked::mailbox`]), with the next of `ids`, and counts it on the
/// mailbox; answers the message id. Runs inside a savepoint, which undoes
/// the insert if the count fails.
pub(crate) fn insert_envelope(
    t: &Connection,
    ids: &mut MessageIds,
    mailbox: i64,
    (envelope, kind): (&[u8], EnvelopeKind),
    now_ms: u64,
    limits: &WriterLimits,
) -> Result<u64, rusqlite::Error> {
    let id = ids.take(t)?;
    let id = insert_message(
        &mut *t.prepare_cached(INSERT_MESSAGE)?,
        (id, mailbox),
        (envelope, kind),
        now_ms,
        limits,
    )?;
    t.prepare_cached(
        "UPDATE mailboxes SET queued = queued + 1, queued_bytes = queued_bytes + ?2 WHERE mailbox = ?1",
    )?
    .execute(params![mailbox, envelope.len()])?;
    Ok(id)
}

/// Inserts the message as `id` with `insert` ([`INSERT_MESSAGE`]),
/// uncounted: one statement of one row, for which SQLite keeps no
/// statement journal, and which writes all or nothing. Answers the id.
pub(super) fn insert_message(
    insert: &mut Statement<'_>,
    (id, mailbox): (i64, i64),
    (envelope, kind): (&[u8], EnvelopeKind),
    now_ms: u64,
    limits: &WriterLimits,
) -> Result<u64, rusqlite::Error> {
    let expires_ms = now_ms.saturating_add(limits.ttl_ms);
    insert.execute(params![
        id,
        mailbox,
        now_ms,
        expires_ms,
        envelope,
        kind.as_u32()
    ])?;
    Ok(u64::try_from(id).unwrap_or(0))
}

/// Acknowledges `ids` in `address`'s mailbox and takes their count and
/// bytes off the mailbox's counters `held` for the transaction; an id
/// that is not in the mailbox (already acknowledged, or given twice)
/// refuses the whole ack before anything is written. Runs without a
/// savepoint: a delete that fails after the first rolls the whole
/// transaction back.
///
/// The ids that are the mailbox's first messages (the acknowledged
/// prefix, [`super::sweep`]) move its `acked_through` up and stay in the
/// table for the sweep: one read of the mailbox index for all of them,
/// which gives their lengths too. Each other id is one rowid lookup (its
/// envelope's length, from the record header, without reading the
/// envelope) and one delete by rowid. A `DELETE ... RETURNING` here made
/// SQLite build and drop a temporary table for every id, about as costly
/// as the rest of the ack (callgrind: 29k instructions per acknowledged
/// id with it, 14.5k without). While the storage is full (`held` moves no
/// prefixes) every id is deleted at once, which frees room at once and
/// writes nothing that could need a new page.
fn ack(
    t: &Connection,
    held: &mut HeldMailboxes<'_>,
    address: &Address,
    ids: &[u64],
) -> Result<Outcome<u32>, rusqlite::Error> {
    let mut sorted = ids.to_vec();
    sorted.sort_unstable();
    if let Some(twice) = sorted.windows(2).find(|w| w[0] == w[1]) {
        return Ok(refuse(
            ErrorCode::UnknownMessage,
            format!("message {} is given twice; nothing was deleted", twice[0]),
        ));
    }
    let not_here = |id: u64| -> Outcome<u32> {
        refuse(
            ErrorCode::UnknownMessage,
            format!("message {id} is not in this mailbox; nothing was deleted"),
        )
    };
    // No device: no mailbox, so any id is not in it (an empty ack is 0).
    let Some(row) = held.row(address)? else {
        return Ok(ids.first().map_or(Ok(0), |&id| not_here(id)));
    };
    let (mailbox, acked_through) = (row.mailbox, row.acked_through);
    let above: Vec<i64> = sorted
        .iter()
        .filter_map(|&id| i64::try_from(id).ok())
        .filter(|&id| id > acked_through)
        .collect();
    let lengths = if held.prefixes() {
        held.prefix_lengths(mailbox, acked_through, &above)?
    } else {
        Vec::new()
    };
    let prefix = lengths.len();
    let prefix_through = prefix.checked_sub(1).map(|last| above[last]);
    let mut bytes: u64 = lengths.iter().sum();
    let mut rows = Vec::with_capacity(above.len() - prefix);
    for &id in ids {
        let row = match i64::try_from(id) {
            Ok(row) if row > acked_through => row,
            _ => return Ok(not_here(id)),
        };
        if prefix_through.is_some_and(|through| row <= through) {
            continue;
        }
        let Some(len) = held.envelope_length(row, mailbox)? else {
            return Ok(not_here(id));
        };
        rows.push(row);
        bytes += len;
    }
    if let Err(error) = rows.iter().try_for_each(|&row| held.delete(row)) {
        super::roll_back(t);
        return Err(error);
    }
    if let Some(through) = prefix_through {
        held.advance(address, above[0], through, prefix as u64);
    }
    held.remove(address, ids.len() as u64, bytes);
    Ok(Ok(u32::try_from(ids.len()).unwrap_or(u32::MAX)))
}

/// What one purge did.
struct Purged {
    /// Rows deleted: fewer than the limit when no expired row is left.
    deleted: u64,
    /// Of those, the messages not acknowledged, counted as expired.
    expired: u64,
}

/// Deletes at most `limit` messages expired at `now_ms`, in the order of
/// the expiry index (expiry, then id), and takes those not yet
/// acknowledged (above their mailbox's `acked_through`) off their
/// mailboxes' counters, as expired and not yet reported.
fn purge(t: &Connection, now_ms: u64, limit: u32) -> Result<Outcome<Purged>, rusqlite::Error> {
    // Both statements take the same first `limit` rows of the index.
    let groups: Vec<(i64, u64, u64)> = {
        let mut stmt = t.prepare_cached(
            "SELECT e.mailbox, COUNT(*), SUM(e.len) FROM (
                 SELECT id, mailbox, length(envelope) AS len FROM messages
                 WHERE expires_ms <= ?1 ORDER BY expires_ms, id LIMIT ?2
             ) AS e JOIN mailboxes b ON b.mailbox = e.mailbox
             WHERE e.id > b.acked_through GROUP BY e.mailbox",
        )?;
        let rows = stmt.query_map(params![now_ms, limit], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })?;
        rows.collect::<Result<_, _>>()?
    };
    let mut expired = 0;
    for (mailbox, n, bytes) in groups {
        t.prepare_cached(
            "UPDATE mailboxes SET queued = queued - ?2, queued_bytes = queued_bytes - ?3, expired_unreported = expired_unreported + ?2 WHERE mailbox = ?1",
        )?
        .execute(params![mailbox, n, bytes])?;
        expired += n;
    }
    let deleted = t
        .prepare_cached(
            "DELETE FROM messages WHERE id IN (
                 SELECT id FROM messages WHERE expires_ms <= ?1 ORDER BY expires_ms, id LIMIT ?2
             )",
        )?
        .execute(params![now_ms, limit])? as u64;
    Ok(Ok(Purged { deleted, expired }))
}
