//! Group envelopes received (`docs/PROTOCOL.md` 16.6, 16.7): opened, read
//! with their sender chain, or held until it arrives (bounded), and dropped
//! with a typed reason when they cannot be read.

use tacit::envelope::{Content, ContentKind};
use tacit::group::{held_state, multi, Group, GroupMessage};

use crate::engine::Engine;
use crate::store::{content_key, envelope_digest, InboundRecord, PendingGroupMessage, Writes};
use crate::{
    now_ms, ClientError, Direction, Event, GroupHistoryEntry, GroupRefusal, IncomingGroupMessage,
    MessageId, Status,
};

/// The most group envelopes held waiting for their chain (the oldest is
/// dropped first).
pub(crate) const MAX_PENDING: usize = 256;

/// What came of a group message read from the store's chains.
enum Attempt {
    /// Its state or chain has not arrived: hold it.
    Wait,
    /// It cannot be read, now or later.
    Refused(GroupRefusal),
    /// Decrypted: the advanced chain and the content.
    Read(Box<(InboundRecord, Content, Group)>),
}

impl Engine {
    /// Opens a group envelope and reads the group message in it (or holds
    /// it until its chain arrives). Returns the delivery receipt to send.
    pub(in crate::engine) async fn process_group(
        &mut self,
        envelope: &[u8],
        relay_id: u64,
    ) -> Result<Option<(String, MessageId)>, ClientError> {
        let digest = envelope_digest(envelope);
        let now = now_ms();
        let mut writes = Writes::default();
        writes.seen_envelope(&digest, now);
        let opened = multi::open(
            self.manager.account().identity(),
            self.manager.local_address(),
            envelope,
        );
        match opened {
            Ok(message) => {
                let pending = PendingGroupMessage {
                    digest,
                    relay_id,
                    held_at_ms: now,
                    message,
                };
                self.read_group_message(pending, writes, false).await
            }
            Err(e) => {
                self.manager.store().commit_with(None, writes)?;
                self.refuse_envelope(relay_id, None, GroupRefusal::Envelope(e))
                    .await;
                Ok(None)
            }
        }
    }

    async fn refuse_envelope(&self, relay_id: u64, group: Option<[u8; 32]>, reason: GroupRefusal) {
        tracing::info!(relay_id, %reason, "group envelope dropped");
        self.emit(Event::GroupRefused {
            relay_id,
            from: None,
            group,
            reason,
        })
        .await;
    }

    /// Reads a group message (fresh, or `held` in the store): decrypts,
    /// records and reports it, holds it, or drops it.
    async fn read_group_message(
        &mut self,
        pending: PendingGroupMessage,
        mut writes: Writes,
        held: bool,
    ) -> Result<Option<(String, MessageId)>, ClientError> {
        let message = match GroupMessage::from_bytes(&pending.message) {
            Ok(m) => m,
            Err(e) => {
                if held {
                    writes.delete_group_pending(&pending.digest);
                }
                self.manager.store().commit_with(None, writes)?;
                let reason = GroupRefusal::Malformed(e.to_string());
                self.refuse_envelope(pending.relay_id, None, reason).await;
                return Ok(None);
            }
        };
        let id = *message.group_id();
        let (record, content, group) = match self.try_decrypt(&message)? {
            Attempt::Wait if held => return Ok(None),
            Attempt::Wait => {
                self.hold_group_message(&pending, writes).await?;
                return Ok(None);
            }
            Attempt::Refused(reason) => {
                if held {
                    writes.delete_group_pending(&pending.digest);
                }
                self.manager.store().commit_with(None, writes)?;
                self.refuse_envelope(pending.relay_id, Some(id), reason)
                    .await;
                return Ok(None);
            }
            Attempt::Read(read) => *read,
        };
        if held {
            writes.delete_group_pending(&pending.digest);
        }
        writes.group_in(&record)?;
        let sender = record.sender.clone();
        let key = content_key(&sender, content.message_id());
        let mut event = None;
        let mut receipt = None;
        if self.manager.store().seen_content(&key)? {
            self.counts.duplicates += 1;
        } else {
            self.counts.delivered += 1;
            writes.seen_content(&key, now_ms());
            if content.kind() == ContentKind::Text {
                let text = String::from_utf8_lossy(content.body()).into_owned();
                writes.group_history(&GroupHistoryEntry {
                    group: id,
                    direction: Direction::Incoming,
                    sender: sender.clone(),
                    message_id: *content.message_id(),
                    timestamp_ms: content.timestamp(),
                    text: text.clone(),
                    status: Status::Received,
                })?;
                if sender.user_id() != self.manager.local_address().user_id() {
                    receipt = Some((sender.user_id().to_owned(), *content.message_id()));
                }
                event = Some(Event::GroupMessage(IncomingGroupMessage {
                    group: id,
                    title: group.title().to_owned(),
                    sender,
                    message_id: *content.message_id(),
                    timestamp_ms: content.timestamp(),
                    text,
                    relay_id: pending.relay_id,
                }));
            }
        }
        self.manager.store().commit_with(None, writes)?;
        if let Some(event) = event {
            self.emit(event).await;
        }
        Ok(receipt.filter(|_| self.config.delivery_receipts))
    }

    /// Finds the chain of `message` and decrypts with a copy of it.
    fn try_decrypt(&self, message: &GroupMessage) -> Result<Attempt, ClientError> {
        let id = *message.group_id();
        let Some(group) = self.manager.store().group(&id)? else {
            // The state that adds this device may still come.
            return Ok(Attempt::Wait);
        };
        let Some(state) = held_state(&group, message.state_hash()) else {
            return Ok(Attempt::Wait);
        };
        let Some(mut record) = self.manager.store().group_in(&id, message.signing_key())? else {
            // A chain of the current state or its parent may still come;
            // one of an older state will not be taken.
            let current = group.current().hash();
            let recent = state.hash() == current || group.state().parent() == Some(state.hash());
            return Ok(if recent && group.is_member() {
                Attempt::Wait
            } else {
                Attempt::Refused(GroupRefusal::ChainMissing)
            });
        };
        if state.state().member(record.sender.user_id()).is_none() {
            return Ok(Attempt::Refused(GroupRefusal::NotMember {
                user_id: record.sender.user_id().to_owned(),
            }));
        }
        match record.chain.decrypt_message(message) {
            Ok(content) => Ok(Attempt::Read(Box::new((record, content, group)))),
            Err(e) => Ok(Attempt::Refused(GroupRefusal::Decrypt(e))),
        }
    }

    /// Holds a group message until its chain arrives; at most
    /// [`MAX_PENDING`] (the oldest is dropped).
    async fn hold_group_message(
        &mut self,
        pending: &PendingGroupMessage,
        mut writes: Writes,
    ) -> Result<(), ClientError> {
        let held = self.manager.store().group_pending()?;
        let evicted = if held.len() >= MAX_PENDING {
            writes.delete_group_pending(&held[0].digest);
            Some(held[0].relay_id)
        } else {
            None
        };
        writes.group_pending(pending)?;
        self.manager.store().commit_with(None, writes)?;
        tracing::debug!(
            relay_id = pending.relay_id,
            "group message held for its chain"
        );
        if let Some(relay_id) = evicted {
            self.refuse_envelope(relay_id, None, GroupRefusal::ChainMissing)
                .await;
        }
        Ok(())
    }

    /// Reads the held group messages whose chain has arrived, oldest first;
    /// queues or sends their receipts.
    pub(in crate::engine) async fn retry_group_pending(&mut self) -> Result<(), ClientError> {
        for pending in self.manager.store().group_pending()? {
            let receipt = self
                .read_group_message(pending, Writes::default(), true)
                .await?;
            if let Some((user, id)) = receipt {
                self.receipts_due.entry(user).or_default().push(id);
            }
        }
        if !self.backlog {
            self.flush_receipts().await?;
        }
        Ok(())
    }

    /// Drops the held group messages older than the configured wait
    /// ([`crate::ClientConfig::group_pending_ttl`]): their chain did not
    /// come with the queue.
    pub(in crate::engine) async fn expire_group_pending(&mut self) -> Result<(), ClientError> {
        let now = now_ms();
        let ttl = u64::try_from(self.config.group_pending_ttl.as_millis()).unwrap_or(u64::MAX);
        for pending in self.manager.store().group_pending()? {
            if now.saturating_sub(pending.held_at_ms) < ttl {
                continue;
            }
            let mut writes = Writes::default();
            writes.delete_group_pending(&pending.digest);
            self.manager.store().commit_with(None, writes)?;
            self.refuse_envelope(pending.relay_id, None, GroupRefusal::ChainMissing)
                .await;
        }
        Ok(())
    }
}
