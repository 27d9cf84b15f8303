//! Publishing prekeys: the signed and fallback prekeys, one-time prekeys,
//! and the KEM prekeys of profile `tacit-v2` (`docs/PROTOCOL.md` 15.9): the
//! last-resort KEM prekey, rotated with the signed prekey, and one-time KEM
//! prekeys, refilled when the relay's stock runs low.
//!
//! Private keys are durable in the store before their public keys are
//! uploaded. Uploads are split into frames the relay accepts (at most
//! [`MAX_PREKEYS_PER_UPLOAD`] one-time and [`MAX_KEM_PREKEYS_PER_UPLOAD`]
//! one-time KEM prekeys each).

use rand_core::OsRng;
use tacit::kem::SignedKemPreKey;
use tacit::session::{MAX_ONE_TIME_KEM_PREKEYS, MAX_ONE_TIME_PREKEYS};
use tacit::PublicKey;
use tacit_relay_proto::{
    OneTimePreKey, Reply, Request, SignedPreKey, UploadPreKeys, MAX_KEM_PREKEYS_PER_UPLOAD,
    MAX_PREKEYS_PER_UPLOAD,
};

use super::{unexpected, Manager};
use crate::conn::Conn;
use crate::{now_ms, ClientConfig, ClientError};

/// The relay's counts after an upload.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Stored {
    /// One-time prekeys the relay holds.
    pub(crate) one_time: u32,
    /// One-time KEM prekeys the relay holds.
    pub(crate) one_time_kem: u32,
}

/// What one round of publication uploaded, and what the relay then held.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Published {
    /// One-time prekeys uploaded.
    pub(crate) uploaded: u32,
    /// One-time KEM prekeys uploaded.
    pub(crate) kem_uploaded: u32,
    /// The relay's counts afterwards (those it reported at login when
    /// nothing was uploaded).
    pub(crate) stored: Stored,
}

impl Published {
    /// The event reporting this publication.
    pub(crate) fn event(self, signed_prekey_rotated: bool) -> crate::Event {
        crate::Event::PreKeysPublished {
            uploaded: self.uploaded,
            stored: self.stored.one_time,
            kem_uploaded: self.kem_uploaded,
            kem_stored: self.stored.one_time_kem,
            signed_prekey_rotated,
        }
    }
}

/// Gives an account from before `tacit-v2` its KEM prekeys (a stored
/// account; new accounts have them from the start). Returns whether it did.
pub(crate) fn enable_post_quantum(manager: &mut Manager) -> Result<bool, ClientError> {
    if manager.account().has_kem_prekeys() {
        return Ok(false);
    }
    let now = now_ms();
    manager.update_account(|a| a.enable_post_quantum(now, &mut OsRng).map(drop))?;
    tracing::info!("post-quantum prekeys (tacit-v2) enabled for a stored account");
    Ok(true)
}

/// Rotates the signed prekey, the fallback prekey and the last-resort KEM
/// prekey together, in one store commit, keeping the replaced signed and
/// KEM prekeys for `grace` (the replaced fallback prekey until the next
/// rotation), and drops retired KEM prekeys past their grace. A fallback
/// prekey is handed out to every sender once the one-time prekeys run out
/// (or the relay stops spending them on a flood of claims): rotating it
/// bounds how long one key serves them.
pub(crate) fn rotate(manager: &mut Manager, now: u64, grace: u64) -> Result<(), ClientError> {
    manager.update_account(|a| {
        a.rotate_signed_prekey(now, grace, &mut OsRng)?;
        a.rotate_fallback_prekey(now, &mut OsRng)?;
        if a.has_kem_prekeys() {
            a.rotate_kem_last_resort_prekey(now, grace, &mut OsRng)?;
            a.prune_kem_prekeys(now, grace);
        }
        Ok(())
    })?;
    Ok(())
}

/// The current signed prekey, for upload.
pub(crate) fn signed_prekey(manager: &Manager) -> SignedPreKey {
    let spk = manager.account().signed_prekey();
    SignedPreKey {
        id: spk.id(),
        key: spk.public_key(),
        signature: spk.signature(),
    }
}

/// The current fallback prekey, for upload.
pub(crate) fn fallback(manager: &Manager) -> OneTimePreKey {
    let fallback = manager.account().fallback_prekey();
    OneTimePreKey {
        id: fallback.id(),
        key: fallback.public_key(),
    }
}

/// The current last-resort KEM prekey, for upload.
pub(crate) fn kem_last_resort(manager: &Manager) -> Option<SignedKemPreKey> {
    manager
        .account()
        .kem_last_resort_prekey()
        .map(|k| k.signed())
}

/// Uploads one frame; returns the relay's counts.
async fn upload(conn: &mut Conn, upload: UploadPreKeys) -> Result<Stored, ClientError> {
    match conn.request(Request::UploadPreKeys(upload)).await? {
        Ok(Reply::PreKeysStored {
            one_time_prekeys,
            one_time_kem_prekeys,
        }) => Ok(Stored {
            one_time: one_time_prekeys,
            one_time_kem: one_time_kem_prekeys,
        }),
        Ok(other) => Err(unexpected(&other)),
        Err(e) => Err(ClientError::Relay(e)),
    }
}

/// Uploads `first` (the replacing keys, if any) with the one-time keys, in
/// as many frames as the per-upload bounds need; `first` goes in the first
/// frame. Returns the relay's counts after the last frame, or `None` if
/// there was nothing to upload.
pub(crate) async fn upload_batches(
    conn: &mut Conn,
    first: UploadPreKeys,
    one_time: &[(u32, PublicKey)],
    one_time_kem: &[SignedKemPreKey],
) -> Result<Option<Stored>, ClientError> {
    let mut ec = one_time.chunks(MAX_PREKEYS_PER_UPLOAD);
    let mut kem = one_time_kem.chunks(MAX_KEM_PREKEYS_PER_UPLOAD);
    let mut next = Some(first);
    let mut stored = None;
    loop {
        let mut frame = next.take().unwrap_or_default();
        if let Some(chunk) = ec.next() {
            frame.one_time_prekeys = chunk
                .iter()
                .map(|&(id, key)| OneTimePreKey { id, key })
                .collect();
        }
        if let Some(chunk) = kem.next() {
            frame.one_time_kem_prekeys = chunk.to_vec();
        }
        if frame.is_empty() {
            return Ok(stored);
        }
        stored = Some(upload(conn, frame).await?);
    }
}

/// After a fresh registration, or for a relay that lacks the device's
/// prekeys: the signed, fallback and last-resort KEM prekeys and every
/// unused one-time (KEM) prekey the account holds, topped up to the
/// targets.
pub(crate) async fn publish_all(
    manager: &mut Manager,
    conn: &mut Conn,
    config: &ClientConfig,
) -> Result<Published, ClientError> {
    let held = Stored {
        one_time: count(manager.account().one_time_prekey_count()),
        one_time_kem: count(manager.account().one_time_kem_prekey_count()),
    };
    generate_up_to(manager, config, held)?;
    let first = UploadPreKeys {
        signed_prekey: Some(signed_prekey(manager)),
        fallback_prekey: Some(fallback(manager)),
        kem_last_resort_prekey: kem_last_resort(manager),
        ..UploadPreKeys::default()
    };
    let one_time = manager.account().one_time_prekeys();
    let one_time_kem = manager.account().one_time_kem_prekeys();
    let stored = upload_batches(conn, first, &one_time, &one_time_kem)
        .await?
        .unwrap_or_default();
    Ok(Published {
        uploaded: count(one_time.len()),
        kem_uploaded: count(one_time_kem.len()),
        stored,
    })
}

/// For a relay that has the device's signed prekey but no KEM prekey (the
/// account got its KEM prekeys after its last upload, or the relay is from
/// before `tacit-v2`): the last-resort KEM prekey and every unused one-time
/// KEM prekey, topped up to the target.
pub(crate) async fn publish_kem(
    manager: &mut Manager,
    conn: &mut Conn,
    config: &ClientConfig,
    relay_one_time: u32,
) -> Result<Published, ClientError> {
    let held = Stored {
        one_time: config.one_time_prekeys,
        one_time_kem: count(manager.account().one_time_kem_prekey_count()),
    };
    generate_up_to(manager, config, held)?;
    let first = UploadPreKeys {
        kem_last_resort_prekey: kem_last_resort(manager),
        ..UploadPreKeys::default()
    };
    let one_time_kem = manager.account().one_time_kem_prekeys();
    let stored = upload_batches(conn, first, &[], &one_time_kem)
        .await?
        .unwrap_or(Stored {
            one_time: relay_one_time,
            one_time_kem: 0,
        });
    Ok(Published {
        uploaded: 0,
        kem_uploaded: count(one_time_kem.len()),
        stored,
    })
}

/// Generates and uploads one-time prekeys and one-time KEM prekeys up to
/// their targets when the relay holds `relay` of them (with `first`, the
/// replacing keys, if any); returns what was uploaded, or `None` if
/// nothing was.
pub(crate) async fn top_up(
    manager: &mut Manager,
    conn: &mut Conn,
    config: &ClientConfig,
    relay: Stored,
    first: UploadPreKeys,
) -> Result<Option<Published>, ClientError> {
    let (one_time, one_time_kem) = generate_up_to(manager, config, relay)?;
    let Some(stored) = upload_batches(conn, first, &one_time, &one_time_kem).await? else {
        return Ok(None);
    };
    Ok(Some(Published {
        uploaded: count(one_time.len()),
        kem_uploaded: count(one_time_kem.len()),
        stored,
    }))
}

/// New one-time prekeys and one-time KEM prekeys, for upload.
type NewKeys = (Vec<(u32, PublicKey)>, Vec<SignedKemPreKey>);

/// Generates (and stores) the one-time prekeys and one-time KEM prekeys
/// that bring `have` up to the targets, within what the account can hold
/// (keys handed out but never used stay in the account); returns the new
/// keys.
fn generate_up_to(
    manager: &mut Manager,
    config: &ClientConfig,
    have: Stored,
) -> Result<NewKeys, ClientError> {
    let want = |target: u32, held: u32| usize::try_from(target.saturating_sub(held)).unwrap_or(0);
    let account = manager.account();
    let ec_want = want(config.one_time_prekeys, have.one_time);
    let ec = ec_want.min(MAX_ONE_TIME_PREKEYS.saturating_sub(account.one_time_prekey_count()));
    let kem_want = if account.has_kem_prekeys() {
        want(config.one_time_kem_prekeys, have.one_time_kem)
    } else {
        0
    };
    let kem =
        kem_want.min(MAX_ONE_TIME_KEM_PREKEYS.saturating_sub(account.one_time_kem_prekey_count()));
    if ec < ec_want || kem < kem_want {
        tracing::warn!(
            ec_want,
            kem_want,
            "the account holds the most one-time prekeys it can; fewer uploaded"
        );
    }
    let one_time = if ec > 0 {
        manager.generate_one_time_prekeys(ec, &mut OsRng)?
    } else {
        Vec::new()
    };
    let one_time_kem = if kem > 0 {
        manager.update_account(|a| a.generate_one_time_kem_prekeys(kem, &mut OsRng))?
    } else {
        Vec::new()
    };
    Ok((one_time, one_time_kem))
}

fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}
