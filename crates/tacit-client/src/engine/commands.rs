//! The application's commands: those that need the relay, and those
//! answered from the store alone.

use tacit::envelope::ContentKind;
use tacit::error::SessionError;
use tacit::Address;
use tacit_relay_proto::{Reply, Request};

use crate::conn::Conn;
use crate::{
    now_ms, ClientError, Command, Direction, HistoryEntry, PeerSession, ReceiptKind, Status,
};

use super::{Engine, Job, Outcome};

impl Engine {
    /// Runs a command or resumes a send. Returns how the connection ended
    /// if it did. Sends go over the anonymous connection only.
    pub(super) async fn job(&mut self, job: Job) -> Option<Outcome> {
        let pending = match job {
            Job::Resume(pending) => pending,
            Job::Command(Command::Shutdown { reply }) => {
                return Some(Outcome::Shutdown(Some(reply)))
            }
            Job::Command(Command::Send { peer, text, reply }) => {
                let body = text.clone().into_bytes();
                let entry = |peer: Address, message_id| HistoryEntry {
                    direction: Direction::Outgoing,
                    peer,
                    message_id,
                    timestamp_ms: now_ms(),
                    text,
                    status: Status::Sent,
                };
                match self.seal(&peer, ContentKind::Text, body, Some(reply)).await {
                    Ok(mut pending) => {
                        let first = pending
                            .envelopes
                            .iter()
                            .find(|e| e.recipient.user_id() == peer)
                            .map(|e| e.recipient.clone());
                        if let Some(first) = first {
                            pending.entry = Some(entry(first, pending.message_id));
                        }
                        pending.peer = Some(peer);
                        pending
                    }
                    Err(e) => return Self::transport_outcome(e),
                }
            }
            Job::Command(Command::SendFile {
                peer,
                pointer,
                name,
                reply,
            }) => match self.seal_file(&peer, pointer, name, reply).await {
                Ok(pending) => pending,
                Err(e) => return Self::transport_outcome(e),
            },
            Job::Command(Command::Read {
                peer,
                message_ids,
                reply,
            }) => {
                let result = self
                    .send_receipt(&peer, ReceiptKind::Read, &message_ids)
                    .await;
                let outcome = match &result {
                    Err(ClientError::Connection(m)) => {
                        Some(Outcome::Lost(ClientError::Connection(m.clone())))
                    }
                    Err(ClientError::Timeout(m)) => Some(Outcome::Lost(ClientError::Timeout(m))),
                    _ => None,
                };
                let _ = reply.send(result);
                return outcome;
            }
            Job::Command(Command::Group(command)) => return self.group_command(command).await,
            Job::Command(command) => {
                self.local_command(command);
                return None;
            }
        };
        match self.submit(pending).await {
            Ok(()) => None,
            Err((e, pending)) => {
                self.waiting.push_back(Job::Resume(pending));
                Some(Outcome::Lost(e))
            }
        }
    }

    /// Runs a command that needs the logged-in connection or the relay
    /// (device changes, accepting a user key); gives any other back.
    pub(super) async fn relay_command(
        &mut self,
        conn: &mut Conn,
        command: Command,
    ) -> Option<Command> {
        match command {
            Command::ApproveLink { code, reply } => {
                let _ = reply.send(self.approve_link(conn, &code).await);
            }
            Command::RemoveDevice { device_id, reply } => {
                let _ = reply.send(self.remove_device(conn, device_id).await);
            }
            Command::SetPushEndpoint { url, reply } => {
                let _ = reply.send(set_push_endpoint(conn, url).await);
            }
            Command::AllocateAttachment { size, reply } => {
                let _ = reply.send(super::files::allocate(conn, size).await);
            }
            Command::RotateDeliveryToken { reply } => {
                let _ = reply.send(self.rotate_token(conn).await);
            }
            Command::AcceptUserKey {
                user_id,
                user_key,
                reply,
            } => {
                let _ = reply.send(self.accept_user_key(&user_id, &user_key).await);
            }
            other => return Some(other),
        }
        None
    }

    /// Errors from sealing: the reply was already sent; a lost connection
    /// ends the connected period.
    pub(super) fn transport_outcome(error: ClientError) -> Option<Outcome> {
        match error {
            ClientError::Connection(_) | ClientError::Timeout(_) => Some(Outcome::Lost(error)),
            _ => None,
        }
    }

    /// The current sessions with `peer`'s listed devices.
    pub(super) fn sessions(&self, peer: &str) -> Result<Vec<PeerSession>, ClientError> {
        let mut out = Vec::new();
        for address in self.manager.fan_out(peer)? {
            let Some(info) = self.manager.session_info(&address)? else {
                continue;
            };
            if let Some(profile) = info.current_profile {
                out.push(PeerSession {
                    address,
                    profile,
                    acknowledged: info.current_acknowledged,
                });
            }
        }
        Ok(out)
    }

    /// Commands that need no connection.
    pub(super) fn local_command(&mut self, command: Command) {
        match command {
            Command::AcceptUserKey { reply, .. } => {
                // The new list comes from the relay.
                let _ = reply.send(Err(ClientError::Stopped));
            }
            Command::RejectUserKey { user_id, reply } => {
                let _ = reply.send(self.reject_user_key(&user_id));
            }
            Command::ApproveLink { reply, .. } => {
                let _ = reply.send(Err(ClientError::Stopped));
            }
            Command::RemoveDevice { reply, .. }
            | Command::SetPushEndpoint { reply, .. }
            | Command::RotateDeliveryToken { reply } => {
                let _ = reply.send(Err(ClientError::Stopped));
            }
            Command::Devices { reply } => {
                let _ = reply.send(self.devices());
            }
            Command::Sessions { peer, reply } => {
                let _ = reply.send(self.sessions(&peer));
            }
            Command::RecoveryCode { reply } => {
                let _ = reply.send(self.recovery_code());
            }
            Command::SafetyNumber { peer, reply } => {
                let result = self
                    .manager
                    .safety_number(&peer)
                    .map(|n| n.as_str().to_owned())
                    .map_err(|e| match e {
                        SessionError::UnknownUser(_) => ClientError::UnknownPeer(peer.clone()),
                        other => other.into(),
                    });
                let _ = reply.send(result);
            }
            Command::History { reply } => {
                let _ = reply.send(self.manager.store().history().map_err(Into::into));
            }
            Command::Shutdown { reply } => {
                let _ = reply.send(());
            }
            Command::Send { reply, .. } | Command::SendFile { reply, .. } => {
                let _ = reply.send(Err(ClientError::Stopped));
            }
            Command::AllocateAttachment { reply, .. } => {
                let _ = reply.send(Err(ClientError::Stopped));
            }
            Command::Read { reply, .. } => {
                let _ = reply.send(Err(ClientError::Stopped));
            }
            Command::Group(command) => self.local_group_command(command),
        }
    }
}

/// Sets (or with `None` clears) the device's push endpoint at the relay.
async fn set_push_endpoint(conn: &mut Conn, url: Option<String>) -> Result<(), ClientError> {
    let request = Request::SetPushEndpoint(tacit_relay_proto::SetPushEndpoint { url });
    match conn.request(request).await? {
        Ok(Reply::PushEndpointSet) => Ok(()),
        Ok(other) => Err(super::setup::unexpected(&other)),
        Err(e) => Err(ClientError::Relay(e)),
    }
}
