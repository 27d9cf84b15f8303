//! Groups in the client's task (`docs/client.md` "Groups",
//! `docs/PROTOCOL.md` section 16): group operations, sending a group
//! message in one submission, receiving group envelopes and group controls.
//!
//! The rules this module keeps:
//!
//! - a group message is encrypted, and the advanced outbound chain
//!   committed, before it is submitted (a crash never reuses a key);
//! - a sender chain reaches a device (pairwise, stored by the relay)
//!   before any group message under it is submitted;
//! - a group state is taken only from the device that signed it, and only
//!   if the state lists for the signer the user key this client trusts;
//! - a sender chain is taken only from a member of the state it names
//!   (under the trusted user key), and only for the current state or, from
//!   a member that stays, its parent;
//! - a group envelope whose chain is not here yet is held (at most
//!   256, `inbox::MAX_PENDING`) and read when a chain or a state arrives.

use rand_core::OsRng;
use tacit::envelope::{Content, ContentKind};
use tacit::error::{GroupStateError, SessionError};
use tacit::group::{
    multi, Group, GroupChange, GroupControl, GroupId, GroupMember, GroupSigner, OutboundChain,
    Role, SessionControlBody, SignedGroupState,
};
use tacit::keys::IdentityKey;
use tacit::Address;
use tacit_relay_proto::{ErrorCode, Reply, Request};
use tokio::sync::oneshot;

use super::{unexpected, Engine, Job, Outcome};
use crate::store::{OutboundRecord, Writes};
use crate::{
    now_ms, ClientError, Command, Direction, GroupCommand, GroupHistoryEntry, GroupInfo,
    GroupMemberInfo, SentGroupMessage, Status,
};

mod control;
mod inbox;

pub(super) use control::ControlOutcome;

/// Whether a command waits for the connection (group operations and
/// sends) rather than being answered from the store.
pub(super) fn needs_relay(command: &Command) -> bool {
    matches!(
        command,
        Command::Group(
            GroupCommand::Create { .. }
                | GroupCommand::Add { .. }
                | GroupCommand::Remove { .. }
                | GroupCommand::Leave { .. }
                | GroupCommand::Send { .. }
        )
    )
}

/// What the application sees of a group record.
fn info(group: &Group) -> GroupInfo {
    GroupInfo {
        id: group.group_id().to_bytes(),
        title: group.title().to_owned(),
        epoch: group.epoch(),
        state: group.current().hash().to_bytes(),
        members: group
            .members()
            .iter()
            .map(|m| GroupMemberInfo {
                user_id: m.user_id.clone(),
                admin: m.role == Role::Admin,
            })
            .collect(),
        active: group.is_member(),
        readable_from: Vec::new(),
    }
}

/// The errors that end a connected period, copied for the outcome.
fn transport_copy(error: &ClientError) -> Option<ClientError> {
    match error {
        ClientError::Connection(m) => Some(ClientError::Connection(m.clone())),
        ClientError::Timeout(m) => Some(ClientError::Timeout(m)),
        _ => None,
    }
}

/// Answers `reply` and returns the outcome of a lost connection, if that
/// is what happened.
fn answer<T>(
    reply: oneshot::Sender<Result<T, ClientError>>,
    result: Result<T, ClientError>,
) -> Option<Outcome> {
    let outcome = result
        .as_ref()
        .err()
        .and_then(transport_copy)
        .map(Outcome::Lost);
    let _ = reply.send(result);
    outcome
}

impl Engine {
    /// Runs a group command; returns how the connection ended if it did.
    pub(super) async fn group_command(&mut self, command: GroupCommand) -> Option<Outcome> {
        match command {
            GroupCommand::Create {
                title,
                members,
                reply,
            } => {
                let result = self.create_group(&title, &members).await;
                answer(reply, result)
            }
            GroupCommand::Add { group, user, reply } => {
                let result = self.add_member(&group, &user).await;
                answer(reply, result)
            }
            GroupCommand::Remove { group, user, reply } => {
                let change = vec![GroupChange::Remove(user)];
                let result = self.change_group(&group, change).await;
                answer(reply, result)
            }
            GroupCommand::Leave { group, reply } => {
                let result = self.change_group(&group, vec![GroupChange::Leave]).await;
                answer(reply, result)
            }
            GroupCommand::Send { group, text, reply } => {
                let result = self.send_group_text(&group, text).await;
                answer(reply, result)
            }
            local => {
                self.local_group_command(local);
                None
            }
        }
    }

    /// Group commands answered from the store (the others fail with
    /// `Stopped` when the client is stopping).
    pub(super) fn local_group_command(&mut self, command: GroupCommand) {
        match command {
            GroupCommand::List { reply } => {
                let _ = reply.send(self.group_list());
            }
            GroupCommand::History { reply } => {
                let _ = reply.send(self.manager.store().group_history().map_err(Into::into));
            }
            GroupCommand::Create { reply, .. }
            | GroupCommand::Add { reply, .. }
            | GroupCommand::Remove { reply, .. }
            | GroupCommand::Leave { reply, .. } => {
                let _ = reply.send(Err(ClientError::Stopped));
            }
            GroupCommand::Send { reply, .. } => {
                let _ = reply.send(Err(ClientError::Stopped));
            }
        }
    }

    /// Every group held, with the senders whose chain of the current
    /// state this device holds.
    fn group_list(&self) -> Result<Vec<GroupInfo>, ClientError> {
        let mut out = Vec::new();
        for group in self.manager.store().groups()? {
            let mut shown = info(&group);
            let current = group.current().hash().to_bytes();
            for record in self.manager.store().group_ins(&shown.id)? {
                if record.chain.state_hash() == &current {
                    shown.readable_from.push(record.sender);
                }
            }
            out.push(shown);
        }
        Ok(out)
    }

    /// The group named `name`: its id in 64 hex digits, or its title if
    /// exactly one group (preferring active ones) has it.
    fn find_group(&self, name: &str) -> Result<Group, ClientError> {
        if name.len() == 64 {
            if let Ok(id) = <[u8; 32]>::try_from(hex::decode(name).unwrap_or_default()) {
                if let Some(group) = self.manager.store().group(&id)? {
                    return Ok(group);
                }
            }
        }
        let mut found: Vec<Group> = self
            .manager
            .store()
            .groups()?
            .into_iter()
            .filter(|g| g.title() == name)
            .collect();
        if found.len() > 1 && found.iter().filter(|g| g.is_member()).count() == 1 {
            found.retain(Group::is_member);
        }
        match found.len() {
            0 => Err(ClientError::Invalid(format!("no group {name:?}"))),
            1 => Ok(found.remove(0)),
            n => Err(ClientError::Invalid(format!(
                "{n} groups are titled {name:?}: name it by its id"
            ))),
        }
    }

    /// The local user's verified list (not refreshed).
    fn stored_own_list(&self) -> Result<tacit::identity::DeviceList, ClientError> {
        self.manager
            .device_list(self.manager.local_address().user_id())?
            .ok_or(ClientError::Session(SessionError::NotOnOwnList))
    }

    /// Signs with this device's identity key and its certificate from the
    /// local user's list.
    fn sign_with<T>(
        &self,
        f: impl FnOnce(&GroupSigner<'_>) -> Result<T, GroupStateError>,
    ) -> Result<T, ClientError> {
        let list = self.stored_own_list()?;
        let address = self.manager.local_address();
        let identity = self.manager.account().identity();
        let entry = list
            .device(address.device_id())
            .filter(|d| d.identity_key == identity.public_key())
            .ok_or(ClientError::Session(SessionError::NotOnOwnList))?;
        let signer = GroupSigner::new(identity, address, entry.certificate);
        Ok(f(&signer)?)
    }

    /// Creates a group with this user as its admin and sends its first
    /// state to every member.
    async fn create_group(
        &mut self,
        title: &str,
        members: &[String],
    ) -> Result<GroupInfo, ClientError> {
        if self
            .manager
            .store()
            .groups()?
            .iter()
            .any(|g| g.title() == title && g.is_member())
        {
            return Err(ClientError::Invalid(format!(
                "a group titled {title:?} exists already"
            )));
        }
        let own_user = self.manager.local_address().user_id().to_owned();
        self.refresh_list(&own_user).await?;
        let mut list = vec![GroupMember::new(
            own_user.clone(),
            *self.stored_own_list()?.user_key(),
            Role::Admin,
        )];
        for user in members {
            if *user == own_user || list.iter().any(|m| m.user_id == *user) {
                continue;
            }
            self.refresh_list(user).await?;
            let key = *self
                .manager
                .device_list(user)?
                .ok_or_else(|| ClientError::UnknownPeer(user.clone()))?
                .user_key();
            list.push(GroupMember::new(user.clone(), key, Role::Member));
        }
        let id = GroupId::generate(&mut OsRng);
        let group = self.sign_with(|signer| Group::create(id, title, list, signer))?;
        let mut writes = Writes::default();
        writes.group(&group);
        self.manager.store().commit_with(None, writes)?;
        self.distribute_state(&group, None).await?;
        Ok(info(&group))
    }

    /// Adds `user` (its key from its verified list) to `name`.
    async fn add_member(&mut self, name: &str, user: &str) -> Result<GroupInfo, ClientError> {
        self.refresh_list(user).await?;
        let key = *self
            .manager
            .device_list(user)?
            .ok_or_else(|| ClientError::UnknownPeer(user.to_owned()))?
            .user_key();
        let member = GroupMember::new(user.to_owned(), key, Role::Member);
        self.change_group(name, vec![GroupChange::Add(member)])
            .await
    }

    /// Proposes `changes` to `name`, applies and stores the new state, then
    /// sends it to every device of every member of it and of its parent.
    async fn change_group(
        &mut self,
        name: &str,
        changes: Vec<GroupChange>,
    ) -> Result<GroupInfo, ClientError> {
        let mut group = self.find_group(name)?;
        if !group.is_member() {
            return Err(ClientError::Invalid(format!(
                "no longer a member of {:?}",
                group.title()
            )));
        }
        let parent = group.current().clone();
        let new = self.sign_with(|signer| group.propose(&changes, signer))?;
        group.apply(&new)?;
        let mut writes = Writes::default();
        writes.group(&group);
        self.drop_old_chains(&group, &mut writes)?;
        if !group.is_member() {
            writes.delete_group_out(&group.group_id().to_bytes());
        }
        self.manager.store().commit_with(None, writes)?;
        self.distribute_state(&group, Some(&parent)).await?;
        Ok(info(&group))
    }

    /// Sends `group`'s current state pairwise: `[parent, new]` to a member
    /// just added, `[new]` to every other member of the new state and of
    /// the parent (`[first]` for a new group). A user that cannot be
    /// reached is logged and skipped; a lost connection is returned.
    async fn distribute_state(
        &mut self,
        group: &Group,
        parent: Option<&SignedGroupState>,
    ) -> Result<(), ClientError> {
        let own_user = self.manager.local_address().user_id().to_owned();
        let new = group.current();
        let users: Vec<String> = group.recipients().iter().map(|u| (*u).to_owned()).collect();
        for user in users.iter().filter(|u| **u != own_user) {
            let states = match parent {
                Some(p) if p.state().member(user).is_none() => vec![p.clone(), new.clone()],
                _ => vec![new.clone()],
            };
            let control = GroupControl {
                states,
                chain: None,
            };
            if let Err(e) = self.send_control(user, &control).await {
                if transport_copy(&e).is_some() {
                    return Err(e);
                }
                tracing::warn!(user, error = %e, "group state not sent");
            }
        }
        Ok(())
    }

    /// Seals `control` to every device of `user` (and this user's other
    /// devices) and submits the copies; returns the devices whose mailbox
    /// holds one, once the relay stored them.
    async fn send_control(
        &mut self,
        user: &str,
        control: &GroupControl,
    ) -> Result<Vec<Address>, ClientError> {
        let body = SessionControlBody {
            group: control.clone(),
        }
        .to_wire();
        let (tx, mut rx) = oneshot::channel();
        let mut pending = self
            .seal(user, ContentKind::SessionControl, body, Some(tx))
            .await?;
        pending.peer = Some(user.to_owned());
        if let Err((e, pending)) = self.submit(pending).await {
            // The same envelopes are submitted after the reconnection.
            self.waiting.push_back(Job::Resume(pending));
            return Err(e);
        }
        match rx.try_recv() {
            Ok(Ok(sent)) => Ok(sent.stored_for),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(ClientError::Protocol(
                "the submission was not answered".into(),
            )),
        }
    }

    /// Sends `text` to the group: chain, distributions, encryption (the
    /// advanced chain committed), one submission.
    async fn send_group_text(
        &mut self,
        name: &str,
        text: String,
    ) -> Result<SentGroupMessage, ClientError> {
        let group = self.find_group(name)?;
        if !group.is_member() {
            return Err(ClientError::Invalid(format!(
                "no longer a member of {:?}",
                group.title()
            )));
        }
        let id = group.group_id().to_bytes();
        let hash = group.current().hash().to_bytes();
        let own = self.manager.local_address().clone();
        let users: Vec<String> = group.members().iter().map(|m| m.user_id.clone()).collect();
        for user in &users {
            self.refresh_list(user).await?;
        }
        let devices = self.member_devices(&group)?;

        // A chain of the current state, committed before it is sent.
        let mut out = match self.manager.store().group_out(&id)? {
            Some(record) if record.chain.state_hash() == &hash => record,
            _ => {
                let record = OutboundRecord {
                    chain: OutboundChain::new(id, hash, &own, &mut OsRng),
                    distributed: Vec::new(),
                };
                let mut writes = Writes::default();
                writes.group_out(&record)?;
                self.manager.store().commit_with(None, writes)?;
                record
            }
        };
        self.distribute_chain(&users, &devices, &mut out).await?;
        let recipients: Vec<(Address, IdentityKey)> = devices
            .into_iter()
            .filter(|(a, _)| out.distributed.contains(a))
            .collect();
        if recipients.is_empty() {
            return Err(ClientError::Invalid(format!(
                "no device of another member of {:?} can be reached",
                group.title()
            )));
        }

        // Encrypt, then commit the chain step before anything leaves.
        let content = Content::new(
            ContentKind::Text,
            text.clone().into_bytes(),
            now_ms(),
            &mut OsRng,
        )
        .map_err(|e| ClientError::Invalid(e.to_string()))?;
        let message = out
            .chain
            .encrypt(&content)
            .map_err(|e| ClientError::Invalid(e.to_string()))?;
        let mut entry = GroupHistoryEntry {
            group: id,
            direction: Direction::Outgoing,
            sender: own,
            message_id: *content.message_id(),
            timestamp_ms: content.timestamp(),
            text,
            status: Status::Pending,
        };
        let mut writes = Writes::default();
        writes.group_out(&out)?;
        writes.group_history(&entry)?;
        self.manager.store().commit_with(None, writes)?;

        let sealed = multi::seal(&message.to_bytes(), &recipients, &mut OsRng)
            .map_err(|e| ClientError::Invalid(e.to_string()))?;
        let request = self.submit_group_request(&sealed)?;
        let uploaded_bytes = match &request {
            Request::SubmitGroup(r) => {
                r.shared().as_bytes().len() + r.recipients().len() * multi::WRAPPED_KEY_LEN
            }
            _ => 0,
        };
        match self.submit_with_fallback(request).await? {
            Ok(Reply::SubmittedGroup { .. }) => {}
            Ok(other) => return Err(unexpected(&other)),
            Err(e) if e.code == ErrorCode::DeliveryTokenRefused => {
                return Err(ClientError::DeliveryTokenRefused {
                    retry_after_ms: e.retry_after_ms,
                })
            }
            Err(e) => return Err(ClientError::Relay(e)),
        }
        entry.status = Status::Sent;
        let mut writes = Writes::default();
        writes.group_history(&entry)?;
        self.manager.store().commit_with(None, writes)?;
        Ok(SentGroupMessage {
            group: id,
            message_id: entry.message_id,
            recipients: sealed.parts.into_iter().map(|p| p.address).collect(),
            uploaded_bytes,
        })
    }

    /// Every device on the verified list of every member (whose list is
    /// signed by the user key the state lists), without this device.
    fn member_devices(&self, group: &Group) -> Result<Vec<(Address, IdentityKey)>, ClientError> {
        let own = self.manager.local_address();
        let mut devices = Vec::new();
        for member in group.members() {
            let Some(list) = self.manager.device_list(&member.user_id)? else {
                continue;
            };
            if list.user_key() != &member.user_key {
                tracing::warn!(
                    user = member.user_id,
                    "the group lists another user key than the trusted one; not sending to it"
                );
                continue;
            }
            for d in list.devices() {
                let address = Address::new(list.user_id(), d.device_id)?;
                if address != *own {
                    devices.push((address, d.identity_key));
                }
            }
        }
        Ok(devices)
    }

    /// Sends the outbound chain, pairwise, to every member user with a
    /// device that does not hold it yet, each acknowledged by the relay;
    /// records the devices reached.
    async fn distribute_chain(
        &mut self,
        users: &[String],
        devices: &[(Address, IdentityKey)],
        out: &mut OutboundRecord,
    ) -> Result<(), ClientError> {
        let own_user = self.manager.local_address().user_id().to_owned();
        let lacking = |out: &OutboundRecord, user: &str| {
            devices
                .iter()
                .any(|(a, _)| a.user_id() == user && !out.distributed.contains(a))
        };
        let mut targets: Vec<String> = users
            .iter()
            .filter(|u| **u != own_user && lacking(out, u))
            .cloned()
            .collect();
        // This user's other devices get every pairwise send: one to any
        // other member reaches them.
        if targets.is_empty() && lacking(out, &own_user) {
            targets.extend(users.iter().find(|u| **u != own_user).cloned());
        }
        let control = GroupControl {
            states: Vec::new(),
            chain: Some(out.chain.distribution()),
        };
        let mut result = Ok(());
        for user in targets {
            match self.send_control(&user, &control).await {
                Ok(stored) => {
                    for address in stored {
                        if !out.distributed.contains(&address) {
                            out.distributed.push(address);
                        }
                    }
                }
                Err(e) if transport_copy(&e).is_some() => {
                    result = Err(e);
                    break;
                }
                Err(e) => tracing::warn!(user, error = %e, "sender chain not sent"),
            }
        }
        let mut writes = Writes::default();
        writes.group_out(out)?;
        self.manager.store().commit_with(None, writes)?;
        result
    }

    /// Deletes the inbound chains of `group` that its current state no
    /// longer takes: every chain but those of the current state and those
    /// of its parent from members that stay (their messages in flight).
    fn drop_old_chains(&self, group: &Group, writes: &mut Writes) -> Result<(), ClientError> {
        let id = group.group_id().to_bytes();
        let current = group.current().hash().to_bytes();
        let parent = group.state().parent().map(|h| h.to_bytes());
        for record in self.manager.store().group_ins(&id)? {
            let state = *record.chain.state_hash();
            let keep = state == current
                || (Some(state) == parent
                    && group.state().member(record.sender.user_id()).is_some());
            if !keep {
                writes.delete_group_in(&id, &record.chain.signing_key().to_bytes());
            }
        }
        Ok(())
    }
}
