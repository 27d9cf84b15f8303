//! The PostgreSQL writer's prekey commands: uploads, and claims that hand
//! each one-time key to one claim however many nodes claim at once.

use tacit::kem::{KemPublicKey, SignedKemPreKey};
use tacit::wire::PreKeyBundleMessage;
use tacit::{Address, DeviceId, IdentityKey, PublicKey, Signature};
use tacit_relay_proto::{ErrorCode, UploadPreKeys};
use tokio_postgres::Error;

use super::apply::{device_exists, execute, query, query_opt, u32_of, Tx};
use crate::kem::PreKeyCounts;
use crate::store::{refuse, Claimed, Outcome};

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

pub(super) async fn upload_prekeys(
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

/// Claims bundles; `spend` is `None` to hand out no one-time prekey, or
/// the threshold below which the owner is warned.
pub(super) async fn claim_bundles(
    t: &Tx<'_>,
    user_id: &str,
    device_id: Option<DeviceId>,
    spend: Option<u32>,
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
        let one_time = match spend {
            Some(_) => take_one_time(t, user_id, device, false).await?,
            None => None,
        };
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
        let kem_one_time = match spend {
            Some(_) => take_one_time(t, user_id, device, true).await?,
            None => None,
        };
        let (kem, kem_remaining) = match kem_one_time {
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
        // Nothing is used up without spending: no warning.
        let low_threshold = spend.unwrap_or(0);
        let kem_low = kem.is_some() && kem_remaining < low_threshold;
        if spend.is_some() && (ran_out || remaining < low_threshold || kem_low) {
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
