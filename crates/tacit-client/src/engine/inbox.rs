//! Receiving: pushes decrypted, recorded and reported in one transaction,
//! then acknowledged.

use tacit::envelope::{ContentKind, MESSAGE_ID_LEN};
use tacit::error::SessionError;
use tacit_relay_proto::{Ack, DeliveryToken, EnvelopeKind, Push, Request};

use crate::conn::Conn;
use crate::store::{content_key, envelope_digest, Writes};
use crate::{
    now_ms, ClientError, Direction, Event, HistoryEntry, IncomingMessage, MessageId, ReceiptKind,
    Status,
};

use super::{groups, Engine};

impl Engine {
    /// Receives one push. The order (see `docs/client.md`):
    ///
    /// 1. An envelope already processed (by digest) is acknowledged again
    ///    and dropped.
    /// 2. Open and decrypt it with the store's commits held back.
    /// 3. Write the held session changes, the envelope's digest, the
    ///    content id and the history entry (or receipt statuses) in one
    ///    transaction; or, for an envelope under a user key other than the
    ///    trusted one, the envelope itself, held sealed in the store.
    /// 4. Report it to the application.
    /// 5. Acknowledge it; then send a delivery receipt.
    ///
    /// A store failure stops the client before anything is acknowledged.
    pub(super) async fn receive(&mut self, conn: &mut Conn, push: Push) -> Result<(), ClientError> {
        let digest = envelope_digest(&push.envelope);
        if self.manager.store().seen_envelope(&digest)? {
            self.counts.duplicates += 1;
            return self.ack(conn, push.message_id).await;
        }
        let receipt_to = if push.kind == EnvelopeKind::Group {
            self.process_group(&push.envelope, push.message_id).await?
        } else {
            self.process(&push.envelope, push.message_id, false).await?
        };
        self.ack(conn, push.message_id).await?;
        if let Some((user, id)) = receipt_to {
            if self.backlog {
                self.receipts_due.entry(user).or_default().push(id);
            } else {
                self.send_receipt(&user, ReceiptKind::Delivered, &[id])
                    .await?;
            }
        }
        Ok(())
    }

    /// Opens, decrypts, records and reports one envelope (steps 2 to 4 of
    /// [`receive`](Self::receive)); `from_held` for an envelope that was
    /// held and is processed after its user key was accepted: it leaves
    /// the held records in the same transaction. Returns the delivery
    /// receipt to send, if any.
    pub(super) async fn process(
        &mut self,
        envelope: &[u8],
        relay_id: u64,
        from_held: bool,
    ) -> Result<Option<(String, MessageId)>, ClientError> {
        let digest = envelope_digest(envelope);
        let (opened, first_contact) = self.open_with_lists(envelope).await?;
        let held = self.manager.store().release()?;
        let now = now_ms();
        let mut writes = Writes::default();
        writes.seen_envelope(&digest, now);
        if from_held {
            writes.unhold(&digest);
        }
        let received = match opened {
            Ok(received) => received,
            Err(SessionError::Store(e)) => return Err(e.into()),
            Err(SessionError::UserKeyChanged(_)) if from_held => return Ok(None),
            Err(SessionError::UserKeyChanged(conflict)) => {
                self.hold(envelope, relay_id, digest, &conflict, writes)
                    .await?;
                return Ok(None);
            }
            Err(e) => {
                // It cannot be processed, now or later. The session may
                // have advanced past it (content that did not decode).
                self.manager.store().commit_with(held, writes)?;
                self.emit(Event::Dropped {
                    relay_id,
                    reason: e.to_string(),
                })
                .await;
                return Ok(None);
            }
        };
        let content = &received.content;
        let key = content_key(&received.sender, content.message_id());
        let mut event = None;
        let mut file = None;
        let mut receipt_to = None;
        let mut group = groups::ControlOutcome::default();
        if self.manager.store().seen_content(&key)? {
            // The same content again in a new envelope: the sender retried.
            self.counts.duplicates += 1;
        } else {
            self.counts.delivered += 1;
            writes.seen_content(&key, now);
            if let Some(token) = DeliveryToken::carried_by(content) {
                writes.peer_token(&received.sender, &token);
            }
            match content.kind() {
                ContentKind::Text => {
                    let text = String::from_utf8_lossy(content.body()).into_owned();
                    writes.history(&HistoryEntry {
                        direction: Direction::Incoming,
                        peer: received.sender.clone(),
                        message_id: *content.message_id(),
                        timestamp_ms: content.timestamp(),
                        text: text.clone(),
                        status: Status::Received,
                    })?;
                    if received.sender.user_id() != self.manager.local_address().user_id() {
                        receipt_to =
                            Some((received.sender.user_id().to_owned(), *content.message_id()));
                    }
                    event = Some(Event::Message(IncomingMessage {
                        sender: received.sender.clone(),
                        message_id: *content.message_id(),
                        timestamp_ms: content.timestamp(),
                        text,
                        relay_id,
                        first_contact,
                    }));
                }
                ContentKind::AttachmentPointer => {
                    if let Some(pointer) = content.attachment() {
                        if received.sender.user_id() != self.manager.local_address().user_id() {
                            receipt_to =
                                Some((received.sender.user_id().to_owned(), *content.message_id()));
                        }
                        file =
                            Some(self.received_file(&received.sender, content, pointer, relay_id));
                    }
                }
                ContentKind::DeliveryReceipt | ContentKind::ReadReceipt => {
                    let (kind, status) = if content.kind() == ContentKind::ReadReceipt {
                        (ReceiptKind::Read, Status::Read)
                    } else {
                        (ReceiptKind::Delivered, Status::Delivered)
                    };
                    let ids: Vec<MessageId> = content
                        .body()
                        .chunks_exact(MESSAGE_ID_LEN)
                        .filter_map(|c| MessageId::try_from(c).ok())
                        .collect();
                    for id in &ids {
                        if let Some(mut entry) = self.manager.store().outgoing(id)? {
                            if entry.peer.user_id() == received.sender.user_id()
                                && entry.status < status
                            {
                                entry.status = status;
                                writes.history(&entry)?;
                            }
                        }
                        self.group_receipt(id, &received.sender, status, &mut writes)?;
                    }
                    event = Some(Event::Receipt {
                        from: received.sender.clone(),
                        kind,
                        message_ids: ids,
                    });
                }
                ContentKind::SessionControl => {
                    group = self.group_control(&received, relay_id, &mut writes)?;
                }
                // Other kinds are recorded as processed and not shown.
                _ => {}
            }
        }
        self.manager.store().commit_with(held, writes)?;
        if let Some(event) = event {
            self.emit(event).await;
        }
        if let Some((file, refusal)) = file {
            self.report_file(file, refusal).await;
        }
        for event in group.events {
            self.emit(event).await;
        }
        if group.stored {
            self.retry_group_pending().await?;
        }
        Ok(receipt_to.filter(|_| self.config.delivery_receipts))
    }

    pub(super) async fn ack(&mut self, conn: &mut Conn, relay_id: u64) -> Result<(), ClientError> {
        if self.config.acknowledge {
            conn.send(Request::Ack(Ack::new(vec![relay_id])?)).await?;
        }
        Ok(())
    }
}
