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
use crate::store::{insert_envelope, may_submit, MessageIds, Outcome, WriterLimits};
use crate::tokenless::Sender;

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

/// The recipients of a group submission that a logged-in sender reaches
/// without the token they set: how many, and the first of them.
#[derive(Debug, Default)]
pub(crate) struct Tokenless {
    count: u32,
    first: Option<String>,
}

impl Tokenless {
    /// Counts the recipient at `index` if `needs` a unit.
    pub(crate) fn count(&mut self, needs: bool, index: usize, recipient: &Address) {
        if needs {
            self.count = self.count.saturating_add(1);
            self.first
                .get_or_insert_with(|| format!("recipient {index} ({recipient})"));
        }
    }

    /// Takes the units from `sender`'s quota, all or none.
    pub(crate) fn charge(&self, sender: &Sender) -> Outcome<()> {
        let first = self.first.as_deref().unwrap_or("");
        sender.charge(self.count, first).map_err(|refusal| {
            let mut whole = ErrorReply::new(
                refusal.code,
                format!("{}; nothing was queued", refusal.message),
            );
            whole.retry_after_ms = refusal.retry_after_ms;
            whole
        })
    }
}

/// A recipient's refusal as the refusal of the whole submission.
pub(crate) fn group_refusal(index: usize, recipient: &Address, refusal: &ErrorReply) -> ErrorReply {
    ErrorReply::new(
        refusal.code,
        format!(
            "recipient {index} ({recipient}): {}; nothing was queued",
            refusal.message
        ),
    )
}

/// Queues every copy, in order, with the checks of `Submit` (the same
/// device, token and queue checks). Every recipient is checked before any
/// envelope is composed or written, so a refused submission costs reads
/// only, wherever the recipient that fails it stands; the first refusal
/// refuses the whole submission, naming the recipient's index. Each device
/// appears once (`SubmitGroup` refuses repeats), so the queue a check read
/// is the queue its insert finds.
pub(crate) fn submit_group(
    t: &Connection,
    shared: &SharedPayloadBytes,
    copies: &[GroupCopy],
    sender: &Sender,
    now_ms: u64,
    limits: &WriterLimits,
) -> Result<Outcome<u32>, rusqlite::Error> {
    let mut tokenless = Tokenless::default();
    let mut mailboxes = Vec::with_capacity(copies.len());
    for (index, copy) in copies.iter().enumerate() {
        let len = (copy.token_hash, shared.envelope_len());
        match may_submit(t, &copy.recipient, len, sender.logged_in(), limits)? {
            Ok(checked) => {
                tokenless.count(checked.tokenless, index, &copy.recipient);
                mailboxes.push(checked.mailbox);
            }
            Err(refusal) => return Ok(Err(group_refusal(index, &copy.recipient, &refusal))),
        }
    }
    if let Err(refusal) = tokenless.charge(sender) {
        return Ok(Err(refusal));
    }
    let mut ids = MessageIds::default();
    for (copy, mailbox) in copies.iter().zip(mailboxes) {
        let envelope = shared.envelope_for(&copy.wrapped_key);
        insert_envelope(
            t,
            &mut ids,
            mailbox,
            (&envelope, EnvelopeKind::Group),
            now_ms,
            limits,
        )?;
    }
    ids.write_back(t)?;
    Ok(Ok(u32::try_from(copies.len()).unwrap_or(u32::MAX)))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use rusqlite::params;
    use tacit_relay_proto::ErrorCode;

    const LIMITS: WriterLimits = WriterLimits {
        queue_cap: 5,
        ..WriterLimits::FOR_TESTS
    };

    /// A database of the current schema with the devices `a.1` to `c.1`,
    /// `c.1` with a delivery token and `b.1` with `queued` messages.
    fn store(queued: u32) -> Connection {
        let c = Connection::open_in_memory().unwrap();
        for migration in crate::store::sqlite::MIGRATIONS {
            c.execute_batch(migration).unwrap();
        }
        for (mailbox, user, token) in [
            (1, "a", None),
            (2, "b", None),
            (3, "c", Some(token_hash(b"token"))),
        ] {
            c.execute(
                "INSERT INTO mailboxes (mailbox) VALUES (?1)",
                params![mailbox],
            )
            .unwrap();
            c.execute(
                "INSERT INTO devices (user_id, device_id, identity_key, token_hash, created_ms, mailbox) VALUES (?1, 1, x'00', ?2, 0, ?3)",
                params![user, token.map(|h| h.to_vec()), mailbox],
            )
            .unwrap();
        }
        c.execute(
            "UPDATE mailboxes SET queued = ?1 WHERE mailbox = 2",
            [queued],
        )
        .unwrap();
        c
    }

    fn copy(user: &str, token: Option<&[u8]>) -> GroupCopy {
        GroupCopy {
            recipient: Address::new(user, 1).unwrap(),
            token_hash: token.map(token_hash),
            wrapped_key: [7; 32],
        }
    }

    fn shared() -> SharedPayloadBytes {
        let mut bytes = vec![0x08, 0x01, 0x12, 0x20];
        bytes.extend_from_slice(&[9; 32]);
        bytes.extend_from_slice(&[0x1a, 16]);
        bytes.extend_from_slice(&[5; 16]);
        SharedPayloadBytes::new(bytes).unwrap()
    }

    /// A submission refused by its last recipient writes nothing at all:
    /// not even rows later rolled back (SQLite's count of changed rows
    /// includes those). Otherwise one request that stores nothing could
    /// make the relay write up to the whole fan-out bound, again and again.
    #[test]
    fn a_refused_submission_writes_nothing() {
        let token = Some(b"token".as_slice());
        let cases: [(u32, Vec<GroupCopy>, ErrorCode); 3] = [
            (
                0,
                vec![copy("a", None), copy("c", token), copy("nobody", None)],
                ErrorCode::UnknownDevice,
            ),
            (
                0,
                vec![copy("a", None), copy("b", None), copy("c", None)],
                ErrorCode::DeliveryTokenRefused,
            ),
            (
                LIMITS.queue_cap,
                vec![copy("a", None), copy("c", token), copy("b", None)],
                ErrorCode::QueueFull,
            ),
        ];
        for (queued, copies, code) in cases {
            let c = store(queued);
            let before = c.total_changes();
            let refused = submit_group(&c, &shared(), &copies, &Sender::Anonymous, 1, &LIMITS)
                .unwrap()
                .unwrap_err();
            assert_eq!(refused.code, code);
            assert!(refused.message.starts_with("recipient 2 "), "{refused:?}");
            assert_eq!(c.total_changes(), before, "{code:?}");
        }
        // The same recipients, all valid, are all queued.
        let c = store(0);
        let copies = [copy("a", None), copy("c", token), copy("b", None)];
        assert_eq!(
            submit_group(&c, &shared(), &copies, &Sender::Anonymous, 1, &LIMITS).unwrap(),
            Ok(3)
        );
        let stored: u32 = c
            .query_row("SELECT COUNT(*) FROM messages WHERE kind = 1", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(stored, 3);
    }

    /// Copies take their ids from the writer's sequence and move it on:
    /// an acknowledged copy's id is never given out again.
    #[test]
    fn copies_take_ids_from_the_sequence_and_move_it_on() {
        let c = store(0);
        let copies = [copy("a", None), copy("b", None)];
        assert_eq!(
            submit_group(&c, &shared(), &copies, &Sender::Anonymous, 1, &LIMITS).unwrap(),
            Ok(2)
        );
        let (first, last): (i64, i64) = c
            .query_row("SELECT MIN(id), MAX(id) FROM messages", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .unwrap();
        assert_eq!(last, first + 1);
        let next: i64 = c
            .query_row("SELECT next FROM message_ids", [], |r| r.get(0))
            .unwrap();
        assert_eq!(next, last + 1);
    }
}
