//! The PostgreSQL writer's mailbox commands: submissions (single and
//! group), acks and the purge of expired messages.

use subtle::ConstantTimeEq;
use tacit::Address;
use tacit_relay_proto::{EnvelopeKind, ErrorCode, SharedPayloadBytes};
use tokio_postgres::Error;

use super::apply::{execute, i64_of, query, query_opt, u64_of, Tx};
use crate::group::{group_refusal, GroupCopy, Tokenless};
use crate::store::{refuse, Effects, Outcome, WriterLimits};
use crate::tokenless::Sender;

/// The checks of `Submit`, without writing: the device exists, its token
/// is presented unless `logged_in`, its queue is below the cap in
/// messages and would stay within it in bytes with an envelope of `len`
/// bytes. The device row is locked to the commit. Answers whether the
/// submission goes without a token the device set (a logged-in sender's,
/// which costs a unit of its tokenless quota).
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
    let mut tokenless = false;
    if let Some(stored) = stored_token {
        let matches = token_hash.is_some_and(|h| bool::from(h.as_slice().ct_eq(stored.as_slice())));
        if !matches && !logged_in {
            return Ok(refuse(
                ErrorCode::DeliveryTokenRefused,
                "the recipient requires its delivery token",
            ));
        }
        tokenless = !matches;
    }
    if u64_of(queued) >= u64::from(limits.queue_cap) {
        return Ok(refuse(
            ErrorCode::QueueFull,
            format!("the recipient's queue holds {queued} messages, the most allowed"),
        ));
    }
    Ok(crate::store::mailbox_bytes_check(u64_of(queued_bytes), len, limits).map(|()| tokenless))
}

/// Queues `envelope` for `recipient`, which [`may_submit`] accepted (and
/// locked); answers the message id.
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

pub(super) async fn ack(t: &Tx<'_>, address: &Address, ids: &[u64]) -> Result<Outcome<u32>, Error> {
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
            DELETE FROM messages WHERE id = ANY($3) AND user_id = $1 AND device_id = $2
            RETURNING id, length(envelope) AS len
         ), counted AS (
            UPDATE devices SET queued = queued - (SELECT COUNT(*) FROM gone),
                queued_bytes = queued_bytes - (SELECT COALESCE(SUM(len), 0) FROM gone)
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
