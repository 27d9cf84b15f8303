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
//!   [`MAX_PENDING`]) and read when a chain or a state arrives.

use rand_core::OsRng;
use tacit::envelope::{Content, ContentKind};
use tacit::error::{GroupStateError, SessionError};
use tacit::group::{
    multi, Applied, ChainConfig, Group, GroupChange, GroupControl, GroupId, GroupMember,
    GroupMessage, GroupSigner, GroupState, InboundChain, OutboundChain, Role,
    SenderChainDistribution, SessionControlBody, SignedGroupState,
};
use tacit::keys::IdentityKey;
use tacit::session::Received;
use tacit::Address;
use tacit_relay_proto::{Reply, SubmitGroup};
use tokio::sync::oneshot;

use super::{unexpected, Engine, Job, Outcome};
use crate::store::{
    content_key, envelope_digest, InboundRecord, OutboundRecord, PendingGroupMessage, Writes,
};
use crate::{
    now_ms, ClientError, Command, Direction, Event, GroupCommand, GroupHistoryEntry, GroupInfo,
    GroupMemberInfo, GroupRefusal, IncomingGroupMessage, MessageId, SentGroupMessage, Status,
};

/// The most group envelopes held waiting for their chain (the oldest is
/// dropped first).
pub(crate) const MAX_PENDING: usize = 256;

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

/// A change for display: what `new` changed from `parent`.
fn describe(parent: Option<&GroupState>, new: &GroupState, signer: &str) -> String {
    let Some(parent) = parent else {
        let names: Vec<&str> = new.members().iter().map(|m| m.user_id.as_str()).collect();
        return format!("created with {}", names.join(", "));
    };
    let mut parts = Vec::new();
    for m in new.members() {
        match parent.member(&m.user_id) {
            None => parts.push(format!("added {}", m.user_id)),
            Some(old) if old.role != m.role => parts.push(format!(
                "{} is now {}",
                m.user_id,
                if m.role == Role::Admin {
                    "an admin"
                } else {
                    "a member"
                }
            )),
            Some(_) => {}
        }
    }
    for m in parent.members() {
        if new.member(&m.user_id).is_none() {
            if m.user_id == signer {
                parts.push(format!("{} left", m.user_id));
            } else {
                parts.push(format!("removed {}", m.user_id));
            }
        }
    }
    if parent.title() != new.title() {
        parts.push(format!("retitled to {}", new.title()));
    }
    if parts.is_empty() {
        "changed".into()
    } else {
        parts.join(", ")
    }
}

/// The state of `group`'s history whose hash is `hash`.
fn held_state<'a>(group: &'a Group, hash: &[u8; 32]) -> Option<&'a SignedGroupState> {
    group
        .history()
        .iter()
        .find(|s| &s.hash().to_bytes() == hash)
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

/// What came of a group message read from the store's chains.
enum Attempt {
    /// Its state or chain has not arrived: hold it.
    Wait,
    /// It cannot be read, now or later.
    Refused(GroupRefusal),
    /// Decrypted: the advanced chain and the content.
    Read(Box<(InboundRecord, Content, Group)>),
}

/// What a group control did.
#[derive(Default)]
pub(super) struct ControlOutcome {
    /// The events to report after the commit.
    pub(super) events: Vec<Event>,
    /// Whether a state or a chain was stored (held envelopes are retried).
    pub(super) stored: bool,
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
                    chain: OutboundChain::new(id, hash, &mut OsRng),
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
        let content = Content::new_with_rng(
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
        let request = SubmitGroup::from_sealed(&sealed, |_| None)?;
        let uploaded_bytes =
            request.shared().as_bytes().len() + request.recipients().len() * multi::WRAPPED_KEY_LEN;
        match self.courier.submit_group(request).await? {
            Ok(Reply::SubmittedGroup { .. }) => {}
            Ok(other) => return Err(unexpected(&other)),
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

    /// Handles a pairwise `SessionControl` content: its states, then its
    /// chain. Everything is written into `writes`, committed with the
    /// pairwise session change.
    pub(super) fn group_control(
        &mut self,
        received: &Received,
        relay_id: u64,
        writes: &mut Writes,
    ) -> Result<ControlOutcome, ClientError> {
        let mut outcome = ControlOutcome::default();
        let refused = |group: Option<[u8; 32]>, reason| Event::GroupRefused {
            relay_id,
            from: Some(received.sender.clone()),
            group,
            reason,
        };
        let control = match SessionControlBody::from_wire(received.content.body()) {
            Ok(body) => body.group,
            Err(e) => {
                outcome
                    .events
                    .push(refused(None, GroupRefusal::Malformed(e.to_string())));
                return Ok(outcome);
            }
        };
        let mut group = None;
        if let Some(new) = control.states.last() {
            let id = new.state().group_id().to_bytes();
            match self.accept_states(received, &control.states, writes)? {
                Ok((accepted, event)) => {
                    group = Some(accepted);
                    outcome.events.push(event);
                    outcome.stored = true;
                }
                Err(reason) => {
                    outcome.events.push(refused(Some(id), reason));
                    return Ok(outcome);
                }
            }
        }
        if let Some(chain) = &control.chain {
            match self.accept_chain(received, chain, group.as_ref(), writes)? {
                Ok(()) => outcome.stored = true,
                Err(reason) => outcome
                    .events
                    .push(refused(Some(*chain.group_id()), reason)),
            }
        }
        Ok(outcome)
    }

    /// Applies (or joins with) `states` from their signer device.
    fn accept_states(
        &self,
        received: &Received,
        states: &[SignedGroupState],
        writes: &mut Writes,
    ) -> Result<Result<(Group, Event), GroupRefusal>, ClientError> {
        let Some(new) = states.last() else {
            return Ok(Err(GroupRefusal::Malformed("no state".into())));
        };
        if new.signer() != &received.sender || new.signer_identity() != &received.sender_identity {
            return Ok(Err(GroupRefusal::NotFromSigner {
                sender: received.sender.clone(),
            }));
        }
        let id = new.state().group_id().to_bytes();
        let existing = self.manager.store().group(&id)?;
        let parent_state: Option<GroupState> = match states {
            [parent, _] => Some(parent.state().clone()),
            _ => new.state().parent().and_then(|p| {
                existing
                    .as_ref()
                    .and_then(|g| held_state(g, &p.to_bytes()))
                    .map(|s| s.state().clone())
            }),
        };
        // The signer's user key as the state lists it (as the parent does,
        // when the signer left) must be the trusted one.
        let signer_user = new.signer().user_id();
        let listed = new
            .state()
            .member(signer_user)
            .or_else(|| parent_state.as_ref().and_then(|p| p.member(signer_user)))
            .map(|m| m.user_key);
        if listed != Some(received.sender_user_key) {
            return Ok(Err(GroupRefusal::UserKeyMismatch {
                user_id: signer_user.to_owned(),
            }));
        }
        let mut lost = false;
        let group = match existing {
            Some(mut group) => {
                let mut changed = false;
                for state in states {
                    match group.apply(state) {
                        Ok(Applied::Advanced | Applied::SwitchedToWinner { .. }) => changed = true,
                        Ok(Applied::Lost { .. }) => lost = true,
                        Err(GroupStateError::AlreadyApplied) => {}
                        Err(e) => return Ok(Err(GroupRefusal::State(e))),
                    }
                }
                if !changed && !lost {
                    return Ok(Err(GroupRefusal::State(GroupStateError::AlreadyApplied)));
                }
                group
            }
            None => {
                let own_key = *self.stored_own_list()?.user_key();
                let local = self.manager.local_address().user_id();
                match Group::join(
                    local,
                    &own_key,
                    states,
                    &received.sender,
                    &received.sender_identity,
                ) {
                    Ok(group) => group,
                    Err(e) => return Ok(Err(GroupRefusal::State(e))),
                }
            }
        };
        writes.group(&group);
        self.drop_old_chains(&group, writes)?;
        if !group.is_member() {
            writes.delete_group_out(&id);
        }
        let description = if lost {
            format!(
                "a concurrent change by {} lost to the current state",
                new.signer()
            )
        } else {
            describe(parent_state.as_ref(), new.state(), signer_user)
        };
        let event = Event::GroupChanged {
            group: id,
            title: group.title().to_owned(),
            epoch: group.epoch(),
            by: new.signer().clone(),
            description,
            active: group.is_member(),
        };
        Ok(Ok((group, event)))
    }

    /// Stores a sender chain from a member of the state it names.
    fn accept_chain(
        &self,
        received: &Received,
        chain: &SenderChainDistribution,
        updated: Option<&Group>,
        writes: &mut Writes,
    ) -> Result<Result<(), GroupRefusal>, ClientError> {
        let id = *chain.group_id();
        let group = match updated.filter(|g| g.group_id().to_bytes() == id) {
            Some(g) => g.clone(),
            None => match self.manager.store().group(&id)? {
                Some(g) => g,
                None => return Ok(Err(GroupRefusal::UnknownGroup)),
            },
        };
        let user = received.sender.user_id();
        let current = group.current().hash().to_bytes();
        let parent = group.state().parent().map(|h| h.to_bytes());
        let state = if chain.state_hash() == &current {
            group.state()
        } else if Some(*chain.state_hash()) == parent {
            if group.state().member(user).is_none() {
                return Ok(Err(GroupRefusal::NotMember {
                    user_id: user.to_owned(),
                }));
            }
            match held_state(&group, chain.state_hash()) {
                Some(s) => s.state(),
                None => return Ok(Err(GroupRefusal::UnknownState)),
            }
        } else {
            return Ok(Err(GroupRefusal::UnknownState));
        };
        let local = self.manager.local_address().user_id();
        if state.member(local).is_none() {
            return Ok(Err(GroupRefusal::UnknownState));
        }
        let Some(member) = state.member(user) else {
            return Ok(Err(GroupRefusal::NotMember {
                user_id: user.to_owned(),
            }));
        };
        if member.user_key != received.sender_user_key {
            return Ok(Err(GroupRefusal::UserKeyMismatch {
                user_id: user.to_owned(),
            }));
        }
        let signing_key = chain.signing_key().to_bytes();
        if self.manager.store().group_in(&id, &signing_key)?.is_some() {
            // Held already: kept, never taken back to an earlier iteration.
            return Ok(Ok(()));
        }
        writes.group_in(&InboundRecord {
            sender: received.sender.clone(),
            chain: InboundChain::from_distribution(chain, ChainConfig::default()),
        })?;
        Ok(Ok(()))
    }

    /// Records a receipt for an outgoing group message, from a member of
    /// its group.
    pub(super) fn group_receipt(
        &self,
        message_id: &MessageId,
        from: &Address,
        status: Status,
        writes: &mut Writes,
    ) -> Result<(), ClientError> {
        let Some(mut entry) = self.manager.store().group_outgoing(message_id)? else {
            return Ok(());
        };
        let member = self.manager.store().group(&entry.group)?.is_some_and(|g| {
            g.history()
                .iter()
                .any(|s| s.state().member(from.user_id()).is_some())
        });
        if member && entry.status < status {
            entry.status = status;
            writes.group_history(&entry)?;
        }
        Ok(())
    }

    /// Opens a group envelope and reads the group message in it (or holds
    /// it until its chain arrives). Returns the delivery receipt to send.
    pub(super) async fn process_group(
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
    pub(super) async fn retry_group_pending(&mut self) -> Result<(), ClientError> {
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
    pub(super) async fn expire_group_pending(&mut self) -> Result<(), ClientError> {
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
