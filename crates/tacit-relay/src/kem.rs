//! KEM prekeys in the directory (profile `tacit-v2`, `docs/PROTOCOL.md`
//! 15.2 and 15.9): each device's last-resort KEM prekey (columns of its
//! device row) and its one-time KEM prekeys (a table), stored as uploaded
//! (`EncodeKEM` bytes and signature), and claimed by the bundle fetch that
//! claims the device's one-time prekey, in the same savepoint.
//!
//! Signatures are checked before the upload reaches the writer
//! ([`verify_upload`]); keys were checked when the frame was decoded.

use rusqlite::{params, Connection, OptionalExtension};
use tacit::kem::{KemPublicKey, SignedKemPreKey};
use tacit::{DeviceId, IdentityKey, Signature};
use tacit_relay_proto::{ErrorCode, ErrorReply, UploadPreKeys};

/// Schema version 3: KEM prekeys. The last-resort KEM prekey lives in the
/// device row (like the fallback prekey) and goes with it; one-time KEM
/// prekeys have their own table, deleted with the device.
pub(crate) const SCHEMA_V3: &str = "
ALTER TABLE devices ADD COLUMN kem_prekey_id INTEGER;
ALTER TABLE devices ADD COLUMN kem_prekey BLOB;
ALTER TABLE devices ADD COLUMN kem_prekey_signature BLOB;
CREATE TABLE one_time_kem_prekeys (
    user_id TEXT NOT NULL,
    device_id INTEGER NOT NULL,
    key_id INTEGER NOT NULL,
    key BLOB NOT NULL,
    signature BLOB NOT NULL,
    PRIMARY KEY (user_id, device_id, key_id)
) WITHOUT ROWID;
";

/// The counts a prekey upload answers with.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct PreKeyCounts {
    /// One-time prekeys stored.
    pub(crate) one_time: u32,
    /// One-time KEM prekeys stored.
    pub(crate) one_time_kem: u32,
}

/// Checks every KEM prekey signature of `upload` against the device's
/// identity key (strict Ed25519 over `EncodeKEM`); the first failure
/// refuses the whole upload with `InvalidPreKeys`.
pub(crate) fn verify_upload(
    identity: &IdentityKey,
    upload: &UploadPreKeys,
) -> Result<(), ErrorReply> {
    let keys = upload
        .kem_last_resort_prekey
        .iter()
        .map(|k| ("last-resort KEM prekey", k))
        .chain(
            upload
                .one_time_kem_prekeys
                .iter()
                .map(|k| ("one-time KEM prekey", k)),
        );
    for (kind, key) in keys {
        if identity
            .verify_kem_prekey(&key.key, &key.signature)
            .is_err()
        {
            return Err(ErrorReply::new(
                ErrorCode::InvalidPreKeys,
                format!("the {kind} {}'s signature does not verify", key.id),
            ));
        }
    }
    Ok(())
}

/// How many one-time KEM prekeys the device has stored.
pub(crate) fn count_one_time(
    t: &Connection,
    user_id: &str,
    device_id: DeviceId,
) -> Result<u32, rusqlite::Error> {
    t.prepare_cached(
        "SELECT COUNT(*) FROM one_time_kem_prekeys WHERE user_id = ?1 AND device_id = ?2",
    )?
    .query_row(params![user_id, device_id], |r| r.get(0))
}

/// Whether the device has a last-resort KEM prekey stored.
pub(crate) fn has_last_resort(
    t: &Connection,
    user_id: &str,
    device_id: DeviceId,
) -> Result<bool, rusqlite::Error> {
    Ok(t.prepare_cached(
        "SELECT kem_prekey IS NOT NULL FROM devices WHERE user_id = ?1 AND device_id = ?2",
    )?
    .query_row(params![user_id, device_id], |r| r.get(0))
    .optional()?
    .unwrap_or(false))
}

/// Stores the upload's KEM prekeys (inside the caller's savepoint): the
/// last-resort one replaces the stored one; one-time ones are added, an id
/// already stored refusing the whole upload, and at most `max` are kept.
/// Returns the number of one-time KEM prekeys then stored.
pub(crate) fn store_upload(
    t: &Connection,
    user_id: &str,
    device_id: DeviceId,
    upload: &UploadPreKeys,
    max: u32,
) -> Result<Result<u32, ErrorReply>, rusqlite::Error> {
    let stored = count_one_time(t, user_id, device_id)?;
    let adding = u32::try_from(upload.one_time_kem_prekeys.len()).unwrap_or(u32::MAX);
    if stored.saturating_add(adding) > max {
        return Ok(Err(ErrorReply::new(
            ErrorCode::TooManyPreKeys,
            format!("{stored} one-time KEM prekeys stored; at most {max} allowed"),
        )));
    }
    {
        let mut insert = t.prepare_cached(
            "INSERT OR IGNORE INTO one_time_kem_prekeys (user_id, device_id, key_id, key, signature) VALUES (?1, ?2, ?3, ?4, ?5)",
        )?;
        for k in &upload.one_time_kem_prekeys {
            let row = params![
                user_id,
                device_id,
                k.id,
                k.key.to_encoded(),
                k.signature.to_bytes().to_vec()
            ];
            if insert.execute(row)? == 0 {
                return Ok(Err(ErrorReply::new(
                    ErrorCode::InvalidPreKeys,
                    format!("one-time KEM prekey id {} is already stored", k.id),
                )));
            }
        }
    }
    if let Some(k) = &upload.kem_last_resort_prekey {
        t.prepare_cached(
            "UPDATE devices SET kem_prekey_id = ?3, kem_prekey = ?4, kem_prekey_signature = ?5 WHERE user_id = ?1 AND device_id = ?2",
        )?
        .execute(params![
            user_id,
            device_id,
            k.id,
            k.key.to_encoded(),
            k.signature.to_bytes().to_vec()
        ])?;
    }
    Ok(Ok(stored + adding))
}

/// A device row's last-resort KEM prekey columns: id, key, signature.
type StoredKemColumns = (Option<u32>, Option<Vec<u8>>, Option<Vec<u8>>);

/// A claimed KEM prekey and the one-time KEM prekeys left after the claim.
pub(crate) struct KemClaim {
    /// The key for the bundle, if the device has one.
    pub(crate) prekey: Option<SignedKemPreKey>,
    /// One-time KEM prekeys left.
    pub(crate) remaining: u32,
}

/// Claims the device's one-time KEM prekey with the lowest id, deleting it
/// (inside the caller's savepoint, which also claims the one-time prekey,
/// so both are handed out once, together); with none left, offers the
/// last-resort KEM prekey, which stays.
pub(crate) fn claim(
    t: &Connection,
    user_id: &str,
    device_id: DeviceId,
    spend_one_time: bool,
) -> Result<KemClaim, rusqlite::Error> {
    let one_time: Option<(u32, Vec<u8>, Vec<u8>)> = if spend_one_time {
        t.prepare_cached(
            "SELECT key_id, key, signature FROM one_time_kem_prekeys WHERE user_id = ?1 AND device_id = ?2 ORDER BY key_id LIMIT 1",
        )?
        .query_row(params![user_id, device_id], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .optional()?
    } else {
        None
    };
    if let Some((id, key, signature)) = one_time {
        t.prepare_cached(
            "DELETE FROM one_time_kem_prekeys WHERE user_id = ?1 AND device_id = ?2 AND key_id = ?3",
        )?
        .execute(params![user_id, device_id, id])?;
        return Ok(KemClaim {
            prekey: decode(user_id, device_id, id, &key, &signature),
            remaining: count_one_time(t, user_id, device_id)?,
        });
    }
    let last_resort: Option<StoredKemColumns> = t
        .prepare_cached(
            "SELECT kem_prekey_id, kem_prekey, kem_prekey_signature FROM devices WHERE user_id = ?1 AND device_id = ?2",
        )?
        .query_row(params![user_id, device_id], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .optional()?;
    let prekey = match last_resort {
        Some((Some(id), Some(key), Some(signature))) => {
            decode(user_id, device_id, id, &key, &signature)
        }
        _ => None,
    };
    Ok(KemClaim {
        prekey,
        remaining: 0,
    })
}

/// A stored KEM prekey, decoded again (a corrupt row is logged and not
/// offered).
fn decode(
    user_id: &str,
    device_id: DeviceId,
    id: u32,
    key: &[u8],
    signature: &[u8],
) -> Option<SignedKemPreKey> {
    match (
        KemPublicKey::from_encoded(key),
        Signature::try_from_slice(signature),
    ) {
        (Ok(key), Ok(signature)) => Some(SignedKemPreKey { id, key, signature }),
        _ => {
            tracing::error!(user_id, device_id, id, "stored KEM prekey is corrupt");
            None
        }
    }
}

/// Deletes the device's one-time KEM prekeys (the device is removed; its
/// last-resort KEM prekey goes with its row).
pub(crate) fn delete_device(
    t: &Connection,
    user_id: &str,
    device_id: DeviceId,
) -> Result<(), rusqlite::Error> {
    t.prepare_cached("DELETE FROM one_time_kem_prekeys WHERE user_id = ?1 AND device_id = ?2")?
        .execute(params![user_id, device_id])?;
    Ok(())
}
