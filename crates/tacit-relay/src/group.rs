//! The one-submission fan-out of group envelopes (`SubmitGroup`,
//! `docs/relay.md`): each recipient's envelope is composed from the shared
//! payload and its part, and all of them are queued in one savepoint of the
//! writer's transaction, or none.
//!
//! A pending submission holds the shared payload once and 32 bytes a
//! recipient; each envelope is composed just before its insert and dropped
//! after it, so what waits in the writer's queue is about the size of the
//! frame, not of the fan-out.

use rusqlite::Connection;
use tacit::Address;
use tacit_relay_proto::{EnvelopeKind, ErrorReply, SharedPayloadBytes, SubmitGroup};

use crate::conn::token_hash;
use crate::store::{submit, Outcome, WriterLimits};

/// Version 4: a mailbox message records its envelope's kind (0 a sealed
/// envelope, 1 a group envelope); messages stored before are sealed.
pub(crate) const SCHEMA_V4: &str =
    "ALTER TABLE messages ADD COLUMN kind INTEGER NOT NULL DEFAULT 0;";

/// One recipient of a group submission.
pub(crate) struct GroupCopy {
    pub(crate) recipient: Address,
    pub(crate) token_hash: Option<[u8; 32]>,
    pub(crate) wrapped_key: [u8; 32],
}

/// The shared payload and the recipients, their tokens hashed as the store
/// keeps them.
pub(crate) fn copies(submission: SubmitGroup) -> (SharedPayloadBytes, Vec<GroupCopy>) {
    let (shared, recipients) = submission.into_parts();
    let copies = recipients
        .into_iter()
        .map(|r| GroupCopy {
            token_hash: r.delivery_token.as_ref().map(|t| token_hash(t.as_bytes())),
            recipient: r.recipient,
            wrapped_key: r.wrapped_key,
        })
        .collect();
    (shared, copies)
}

/// Queues every copy, in order, as `Submit` queues one envelope (the same
/// device, token and queue checks). The first refusal refuses the whole
/// submission, naming the recipient's index; the caller's savepoint then
/// rolls back the copies queued before it.
pub(crate) fn submit_group(
    t: &Connection,
    shared: &SharedPayloadBytes,
    copies: &[GroupCopy],
    authenticated: bool,
    now_ms: u64,
    limits: &WriterLimits,
) -> Result<Outcome<u32>, rusqlite::Error> {
    for (index, copy) in copies.iter().enumerate() {
        let envelope = shared.envelope_for(&copy.wrapped_key);
        let queued = submit(
            t,
            &copy.recipient,
            (&envelope, EnvelopeKind::Group),
            copy.token_hash,
            authenticated,
            now_ms,
            limits,
        )?;
        if let Err(refusal) = queued {
            return Ok(Err(ErrorReply::new(
                refusal.code,
                format!(
                    "recipient {index} ({}): {}; nothing was queued",
                    copy.recipient, refusal.message
                ),
            )));
        }
    }
    Ok(Ok(u32::try_from(copies.len()).unwrap_or(u32::MAX)))
}
