//! The PostgreSQL writer's mailbox commands: submissions (single and
//! group), acks and the purge of expired messages.

use tacit::Address;
use tacit_relay_proto::{EnvelopeKind, ErrorCode, SharedPayloadBytes};
use tokio_postgres::Error;

use super::apply::{execute, i64_of, query, query_opt, u64_of, Tx};
use super::held::HeldDevices;
use crate::group::{group_refusal, GroupCopy, Tokenless};
use crate::store::{refuse, Effects, Outcome, WriterLimits};
use crate::tokenless::Sender;

/// The checks of a group copy, without writing: those of
/// [`check_submission`], on the device row, which is locked to the
/// commit. Answers whether the copy goes without a token the device set.
pub(super) async fn may_submit(
    t: &Tx<'_>,
    recipient: &Address,
    (token_hash, len): (Option<[u8; 32]>, usize),
    logged_in: bool,
    limits: &WriterLimits,
) -> Result<Outcome<bool>, Error> {
    let Some(row) = query_opt(
        t,
        "SELECT token_hash, queued, queued_bytes FROM devices WHERE user_id = $1 AND device_id = $2 FOR UPDATE",
        &[&recipient.user_id(), &i64::from(recipient.device_id())],
    )
    .await?
    else {
        return Ok(refuse(ErrorCode::UnknownDevice, "no such device"));
    };
    let (stored_token, queued, queued_bytes): (Option<Vec<u8>>, i64, i64) =
        (row.get(0), row.get(1), row.get(2));
    Ok(check_submission(
        (stored_token.as_deref(), queued, queued_bytes),
        (token_hash, len),
        logged_in,
        limits,
    ))
}

/// [`crate::store::recipient_check`] on a device row's token hash and
/// counters.
fn check_submission(
    (stored_token, queued, queued_bytes): (Option<&[u8]>, i64, i64),
    checks: (Option<[u8; 32]>, usize),
    logged_in: bool,
    limits: &WriterLimits,
) -> Outcome<bool> {
    let stored = (stored_token, u64_of(queued), u64_of(queued_bytes));
    crate::store::recipient_check(stored, checks, logged_in, limits)
}

/// Queues a sealed `envelope` for `recipient`, or refuses: no such
/// device, its delivery token is needed, its queue is full, the sender's
/// tokenless quota is used up. The recipient's row and counters are the
/// ones `held` for the batch, counted once the insert succeeded. Every
/// check comes before the one write, so it may run without a savepoint.
pub(super) async fn submit(
    t: &Tx<'_>,
    held: &mut HeldDevices,
    recipient: &Address,
    (envelope, token_hash, sender, now_ms): (&[u8], Option<[u8; 32]>, &Sender, u64),
    limits: &WriterLimits,
) -> Result<Outcome<u64>, Error> {
    let Some(row) = held.row(t, recipient).await? else {
        return Ok(refuse(ErrorCode::UnknownDevice, "no such device"));
    };
    let stored = (row.token_hash.as_deref(), row.queued, row.queued_bytes);
    let tokenless = match check_submission(
        stored,
        (token_hash, envelope.len()),
        sender.logged_in(),
        limits,
    ) {
        Ok(tokenless) => tokenless,
        Err(refusal) => return Ok(Err(refusal)),
    };
    if let Err(refusal) = sender.charge(u32::from(tokenless), recipient) {
        return Ok(Err(refusal));
    }
    let inserted = query(
        t,
        "INSERT INTO messages (user_id, device_id, server_ms, expires_ms, envelope, kind)
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
        &[
            &recipient.user_id(),
            &i64::from(recipient.device_id()),
            &i64_of(now_ms),
            &i64_of(now_ms.saturating_add(limits.ttl_ms)),
            &envelope,
            &i64::from(EnvelopeKind::Sealed.as_u32()),
        ],
    )
    .await?;
    row.count(1, i64_of(envelope.len() as u64));
    Ok(Ok(inserted.first().map_or(0, |r| u64_of(r.get(0)))))
}

/// Queues a group copy's `envelope` for `recipient`, which [`may_submit`]
/// accepted (and locked), and counts it on the device; answers the
/// message id.
pub(super) async fn insert_envelope(
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
            UPDATE devices SET queued = queued + 1, queued_bytes = queued_bytes + $7
            WHERE user_id = $1 AND device_id = $2
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
            &i64_of(envelope.len() as u64),
        ],
    )
    .await?;
    Ok(row.first().map_or(0, |r| u64_of(r.get(0))))
}

/// As the SQLite backend's `submit_group`: every recipient is checked
/// before any envelope is written; the first refusal refuses all.
pub(super) async fn submit_group(
    t: &Tx<'_>,
    shared: &SharedPayloadBytes,
    copies: &[GroupCopy],
    sender: &Sender,
    now_ms: u64,
    limits: &WriterLimits,
    effects: &mut Effects,
) -> Result<Outcome<u32>, Error> {
    let mut tokenless = Tokenless::default();
    for (index, copy) in copies.iter().enumerate() {
        let len = (copy.token_hash, shared.envelope_len());
        let checked = may_submit(t, &copy.recipient, len, sender.logged_in(), limits).await?;
        match checked {
            Ok(needs) => tokenless.count(needs, index, &copy.recipient),
            Err(refusal) => return Ok(Err(group_refusal(index, &copy.recipient, &refusal))),
        }
    }
    if let Err(refusal) = tokenless.charge(sender) {
        return Ok(Err(refusal));
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

/// Deletes the acknowledged messages of `address`'s mailbox, all or none:
/// an id that is not in it (or is given twice) refuses the whole ack.
/// Answers how many were deleted and their envelopes' bytes, which the
/// caller takes off the device's counters (held for the batch). Runs in
/// a savepoint, which a refusal rolls back.
pub(super) async fn ack(
    t: &Tx<'_>,
    address: &Address,
    ids: &[u64],
) -> Result<Outcome<(u32, i64)>, Error> {
    let (user, device) = (address.user_id(), i64::from(address.device_id()));
    let wanted: Vec<i64> = ids
        .iter()
        .filter_map(|&id| i64::try_from(id).ok())
        .collect();
    // One round trip for the whole ack; a repeated id is deleted once, so
    // it falls short like a stranger id and refuses the ack.
    let gone = query(
        t,
        "DELETE FROM messages WHERE id = ANY($3) AND user_id = $1 AND device_id = $2
         RETURNING id, length(envelope)::bigint",
        &[&user, &device, &wanted],
    )
    .await?;
    let deleted: Vec<u64> = gone.iter().map(|r| u64_of(r.get(0))).collect();
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
    let bytes = gone.iter().map(|r| r.get::<_, i64>(1)).sum();
    Ok(Ok((
        u32::try_from(deleted.len()).unwrap_or(u32::MAX),
        bytes,
    )))
}

/// Deletes at most `limit` expired messages, those expiring first, and
/// counts them against their devices.
pub(super) async fn purge(t: &Tx<'_>, now_ms: u64, limit: u32) -> Result<u64, Error> {
    let groups = query(
        t,
        "WITH gone AS (
             DELETE FROM messages WHERE id IN (
                 SELECT id FROM messages WHERE expires_ms <= $1 ORDER BY expires_ms, id LIMIT $2
             ) RETURNING user_id, device_id, length(envelope) AS len
         )
         SELECT user_id, device_id, COUNT(*), SUM(len)::bigint FROM gone GROUP BY user_id, device_id ORDER BY user_id, device_id",
        &[&i64_of(now_ms), &i64::from(limit)],
    )
    .await?;
    let mut total = 0;
    for row in groups {
        let (user, device, n, bytes): (String, i64, i64, i64) =
            (row.get(0), row.get(1), row.get(2), row.get(3));
        execute(
            t,
            "UPDATE devices SET queued = queued - $3, queued_bytes = queued_bytes - $4, expired_unreported = expired_unreported + $3 WHERE user_id = $1 AND device_id = $2",
            &[&user, &device, &n, &bytes],
        )
        .await?;
        total += u64_of(n);
    }
    Ok(total)
}
