//! Envelopes under another user key than the trusted one: held sealed
//! until the application accepts or rejects the key.

use tacit::error::{SessionError, UserKeyConflict};
use tacit::identity::UserKey;
use tacit::session::SafetyNumber;

use crate::store::{HeldEnvelope, Writes};
use crate::{ClientError, Event, ReceiptKind};

use super::Engine;

/// The most envelopes held per claimed user under another user key than
/// the trusted one (the oldest is deleted first).
const MAX_HELD_PER_USER: usize = 16;
/// The most envelopes held in all.
const MAX_HELD: usize = 256;

impl Engine {
    /// Keeps an envelope that came under another user key than the trusted
    /// one, sealed in the store, so that it can be acknowledged at once (the
    /// mailbox is not jammed) and processed if the application accepts the
    /// key. At most [`MAX_HELD_PER_USER`] per claimed user and
    /// [`MAX_HELD`] in all: the oldest goes first.
    pub(super) async fn hold(
        &mut self,
        envelope: &[u8],
        relay_id: u64,
        digest: [u8; 32],
        conflict: &UserKeyConflict,
        mut writes: Writes,
    ) -> Result<(), ClientError> {
        let stored = self.manager.store().held()?;
        let of_user: Vec<_> = stored
            .iter()
            .filter(|h| h.user_id == conflict.user_id)
            .collect();
        if of_user.len() >= MAX_HELD_PER_USER {
            writes.unhold(&of_user[0].digest);
        } else if stored.len() >= MAX_HELD {
            writes.unhold(&stored[0].digest);
        }
        writes.hold(&HeldEnvelope {
            digest,
            user_id: conflict.user_id.clone(),
            user_key: conflict.received,
            envelope: envelope.to_vec(),
        })?;
        self.manager.store().commit_with(None, writes)?;
        let safety_number = self.safety_number_with(&conflict.user_id, &conflict.received)?;
        self.emit(Event::Held {
            relay_id,
            user_id: conflict.user_id.clone(),
            user_key: conflict.received,
            safety_number,
            reason: format!(
                "a message as {} under another user key than the trusted one: \
                 an impersonation, or a new key; verify it before reading",
                conflict.user_id
            ),
        })
        .await;
        Ok(())
    }

    /// Accepts `user_key` for `user_id`: fetches the user's list from the
    /// relay, which must be signed by that key, trusts it, then processes
    /// the envelopes from that user held under that key, oldest first, each
    /// leaving the held records in the transaction that records it. Returns
    /// how many were processed.
    pub(super) async fn accept_user_key(
        &mut self,
        user_id: &str,
        user_key: &UserKey,
    ) -> Result<usize, ClientError> {
        let list = self
            .fetch_list(user_id, Some(user_key))
            .await?
            .ok_or_else(|| {
                ClientError::Invalid(format!(
                    "the relay has no list of {user_id} signed by that user key"
                ))
            })?;
        self.manager.accept_user_key(&list)?;
        let mut released = 0;
        for held in self.manager.store().held()? {
            if held.user_id != user_id || held.user_key != *user_key {
                continue;
            }
            if let Some((user, id)) = self.process(&held.envelope, 0, true).await? {
                self.send_receipt(&user, ReceiptKind::Delivered, &[id])
                    .await?;
            }
            released += 1;
        }
        Ok(released)
    }

    /// Deletes the envelopes held for `user_id` (the application judged
    /// them an impersonation). Returns how many.
    pub(super) fn reject_user_key(&mut self, user_id: &str) -> Result<usize, ClientError> {
        let mut writes = Writes::default();
        let mut count = 0;
        for held in self.manager.store().held()? {
            if held.user_id == user_id {
                writes.unhold(&held.digest);
                count += 1;
            }
        }
        self.manager.store().commit_with(None, writes)?;
        Ok(count)
    }

    /// The safety number of the local user and `user_id` under `user_key`.
    pub(super) fn safety_number_with(
        &self,
        user_id: &str,
        user_key: &UserKey,
    ) -> Result<String, ClientError> {
        let own = self
            .manager
            .device_list(self.manager.local_address().user_id())?
            .ok_or(SessionError::NotOnOwnList)?;
        Ok(SafetyNumber::new(
            self.manager.local_address().user_id(),
            own.user_key(),
            user_id,
            user_key,
        )
        .as_str()
        .to_owned())
    }
}
