//! Sending: sessions made from fetched bundles, contents sealed for every
//! listed device, envelopes submitted over the anonymous connection.

use rand_core::{OsRng, RngCore};
use tacit::envelope::{AttachmentPointer, Content, ContentKind};
use tacit::error::SessionError;
use tacit::session::OutgoingEnvelope;
use tacit::Address;
use tacit_relay_proto::{ErrorCode, FetchBundles, Reply};
use tokio::sync::oneshot;

use crate::store::Writes;
use crate::{now_ms, ClientError, MessageId, SentMessage};

use super::{Engine, PendingSend};

impl Engine {
    /// Makes sure there are sessions with `peer`'s devices (fetching their
    /// bundles if there is none), then seals a content of `kind` for the
    /// user. On error the reply (if any) is answered here.
    pub(super) async fn seal(
        &mut self,
        peer: &str,
        kind: ContentKind,
        body: Vec<u8>,
        reply: Option<oneshot::Sender<Result<SentMessage, ClientError>>>,
    ) -> Result<PendingSend, ClientError> {
        self.seal_with(peer, kind, body, None, reply).await
    }

    /// [`seal`](Self::seal) for a content that may carry an attachment
    /// pointer (kind [`ContentKind::AttachmentPointer`], `body` its
    /// caption).
    pub(super) async fn seal_with(
        &mut self,
        peer: &str,
        kind: ContentKind,
        body: Vec<u8>,
        attachment: Option<AttachmentPointer>,
        reply: Option<oneshot::Sender<Result<SentMessage, ClientError>>>,
    ) -> Result<PendingSend, ClientError> {
        let result = self.seal_inner(peer, kind, body, attachment).await;
        match result {
            Ok((content_id, envelopes)) => Ok(PendingSend {
                message_id: content_id,
                envelopes,
                stored_for: Vec::new(),
                refused: Vec::new(),
                entry: None,
                peer: None,
                reply,
            }),
            Err(e) => {
                let copy = match &e {
                    ClientError::Connection(m) => ClientError::Connection(m.clone()),
                    ClientError::Timeout(m) => ClientError::Timeout(m),
                    other => ClientError::Invalid(other.to_string()),
                };
                if let Some(reply) = reply {
                    let _ = reply.send(Err(e));
                }
                Err(copy)
            }
        }
    }

    /// Brings the verified device lists of `peer` and of the local user up
    /// to date from the relay, fetches bundles for listed devices without a
    /// session, then seals for every listed device that has one. Lists,
    /// bundles and envelopes go over the anonymous connection, so that the
    /// relay does not learn which device asked.
    async fn seal_inner(
        &mut self,
        peer: &str,
        kind: ContentKind,
        body: Vec<u8>,
        attachment: Option<AttachmentPointer>,
    ) -> Result<(MessageId, Vec<OutgoingEnvelope>), ClientError> {
        let own_user = self.manager.local_address().user_id().to_owned();
        if peer == own_user {
            return Err(ClientError::Invalid("cannot send to yourself".into()));
        }
        for user in [peer, own_user.as_str()] {
            let served = self.refresh_list(user).await?;
            if !served && user == peer && self.manager.device_list(user)?.is_none() {
                return Err(ClientError::UnknownPeer(peer.into()));
            }
        }
        for address in self.manager.missing_sessions(peer)? {
            let bundles = match self
                .courier
                .fetch_bundles(FetchBundles::device(&address))
                .await?
            {
                Ok(Reply::Bundles(b)) => b.bundles,
                // Not registered yet, or no prekeys: not reachable now.
                _ => continue,
            };
            for bundle in bundles
                .iter()
                .filter(|b| b.device_id == address.device_id())
            {
                match self
                    .manager
                    .process_bundle(&address, &bundle.bundle, &mut OsRng)
                {
                    Ok(_) => {}
                    Err(SessionError::Store(e)) => return Err(e.into()),
                    Err(e) => tracing::warn!(%address, error = %e, "bundle refused"),
                }
            }
        }
        let missing = self.manager.missing_sessions(peer)?;
        let reachable: Vec<Address> = self
            .manager
            .fan_out(peer)?
            .into_iter()
            .filter(|a| !missing.contains(a))
            .collect();
        if !reachable.iter().any(|a| a.user_id() == peer) {
            return Err(ClientError::UnknownPeer(peer.into()));
        }
        let mut message_id = [0u8; tacit::envelope::MESSAGE_ID_LEN];
        OsRng.fill_bytes(&mut message_id);
        let content = Content::from_parts(kind, body, now_ms(), message_id, attachment)
            .map_err(|e| ClientError::Invalid(e.to_string()))?;
        let content = self.with_token(content)?;
        let mut envelopes = Vec::with_capacity(reachable.len());
        for address in &reachable {
            envelopes.push(
                self.manager
                    .seal_for_device(address, &content, &mut OsRng)?,
            );
        }
        Ok((*content.message_id(), envelopes))
    }

    /// Submits every envelope not yet stored, over the anonymous
    /// connection with the recipient's delivery token if this device
    /// holds it; a copy refused for want of the token is sent again on
    /// the logged-in connection, within the account's tokenless quota
    /// (`tokens`). Rate limits are waited out by the courier. On a lost
    /// connection, returns the error and the send, to be resumed after
    /// reconnecting (the same envelope bytes, so a copy stored twice is
    /// recognised by the recipient).
    pub(super) async fn submit(
        &mut self,
        mut pending: PendingSend,
    ) -> Result<(), (ClientError, PendingSend)> {
        while let Some(outgoing) = pending.envelopes.first().cloned() {
            let answer = match self.submit_request(&outgoing.recipient, outgoing.envelope.clone()) {
                Ok(request) => match self.submit_with_fallback(request).await {
                    Ok(answer) => answer,
                    Err(e) => return Err((e, pending)),
                },
                Err(e) => Err(e),
            };
            match answer {
                Ok(Reply::Submitted { .. }) => pending.stored_for.push(outgoing.recipient.clone()),
                Ok(other) => pending.refused.push((
                    outgoing.recipient.clone(),
                    tacit_relay_proto::ErrorReply::new(
                        ErrorCode::InvalidRequest,
                        format!("unexpected answer {other:?}"),
                    ),
                )),
                Err(e) => pending.refused.push((outgoing.recipient.clone(), e)),
            }
            pending.envelopes.remove(0);
        }
        let mut result = Ok(());
        if let Some(entry) = pending.entry.take() {
            if !pending.stored_for.is_empty() {
                let mut writes = Writes::default();
                let written = writes
                    .history(&entry)
                    .and_then(|()| self.manager.store().commit_with(None, writes));
                if let Err(e) = written {
                    tracing::warn!(error = %e, "history not written");
                    result = Err(ClientError::from(e));
                }
            }
        }
        if let Some(reply) = pending.reply.take() {
            // A send that reached none of the peer's devices failed.
            let reached_peer = pending
                .stored_for
                .iter()
                .any(|a| Some(a.user_id()) == pending.peer.as_deref());
            if result.is_ok() && !reached_peer && pending.peer.is_some() {
                result = Err(match pending.refused.first() {
                    Some((_, e)) if e.code == ErrorCode::DeliveryTokenRefused => {
                        ClientError::DeliveryTokenRefused {
                            retry_after_ms: e.retry_after_ms,
                        }
                    }
                    Some((_, e)) => ClientError::Relay(e.clone()),
                    None => ClientError::Protocol("no envelope for the peer".into()),
                });
            }
            let _ = reply.send(result.map(|()| SentMessage {
                message_id: pending.message_id,
                stored_for: pending.stored_for,
                refused: pending.refused,
            }));
        }
        Ok(())
    }
}
