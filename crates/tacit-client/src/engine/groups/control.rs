//! Group controls received pairwise (`docs/PROTOCOL.md` 16.4, `docs/client.md`
//! "Groups"): states from their signer under the trusted user key, sender
//! chains from members of their state; receipts for group messages.

use tacit::group::{
    apply_states, chain_state, check_states_sender, ChainConfig, ChainRefusal, ControlSender,
    Group, GroupState, InboundChain, Role, SenderChainDistribution, SessionControlBody,
    SignedGroupState, StatesRefusal,
};
use tacit::session::Received;
use tacit::Address;

use crate::engine::Engine;
use crate::store::{InboundRecord, Writes};
use crate::{ClientError, Event, GroupRefusal, MessageId, Status};

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

/// The pairwise sender of `received`, for the core's acceptance rules.
fn control_sender(received: &Received) -> ControlSender<'_> {
    ControlSender {
        address: &received.sender,
        identity: &received.sender_identity,
        user_key: &received.sender_user_key,
    }
}

/// What a group control did.
#[derive(Default)]
pub(in crate::engine) struct ControlOutcome {
    /// The events to report after the commit.
    pub(in crate::engine) events: Vec<Event>,
    /// Whether a state or a chain was stored (held envelopes are retried).
    pub(in crate::engine) stored: bool,
}

impl Engine {
    /// Handles a pairwise `SessionControl` content: its states, then its
    /// chain. Everything is written into `writes`, committed with the
    /// pairwise session change.
    pub(in crate::engine) fn group_control(
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

    /// Applies (or joins with) `states` from their signer device, under
    /// the core's rules (`tacit::group::check_states_sender`,
    /// `apply_states`).
    fn accept_states(
        &self,
        received: &Received,
        states: &[SignedGroupState],
        writes: &mut Writes,
    ) -> Result<Result<(Group, Event), GroupRefusal>, ClientError> {
        let Some(new) = states.last() else {
            return Ok(Err(GroupRefusal::Malformed("no state".into())));
        };
        let id = new.state().group_id().to_bytes();
        let existing = self.manager.store().group(&id)?;
        let signer_user = new.signer().user_id();
        let parent_state =
            match check_states_sender(states, existing.as_ref(), control_sender(received)) {
                Ok(parent) => parent,
                Err(StatesRefusal::UserKeyMismatch) => {
                    return Ok(Err(GroupRefusal::UserKeyMismatch {
                        user_id: signer_user.to_owned(),
                    }))
                }
                Err(StatesRefusal::NotFromSigner) => {
                    return Ok(Err(GroupRefusal::NotFromSigner {
                        sender: received.sender.clone(),
                    }))
                }
                Err(other) => return Ok(Err(GroupRefusal::Malformed(other.to_string()))),
            };
        let mut lost = false;
        let group = match existing {
            Some(group) => match apply_states(group, states) {
                Ok((group, was_lost)) => {
                    lost = was_lost;
                    group
                }
                Err(e) => return Ok(Err(GroupRefusal::State(e))),
            },
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
        let local = self.manager.local_address().user_id();
        if let Err(refusal) = chain_state(
            &group,
            chain.state_hash(),
            local,
            &received.sender,
            &received.sender_user_key,
        ) {
            let user_id = user.to_owned();
            return Ok(Err(match refusal {
                ChainRefusal::SenderLeft | ChainRefusal::NotMember => {
                    GroupRefusal::NotMember { user_id }
                }
                ChainRefusal::UserKeyMismatch => GroupRefusal::UserKeyMismatch { user_id },
                _ => GroupRefusal::UnknownState,
            }));
        }
        let signing_key = chain.signing_key().to_bytes();
        if self.manager.store().group_in(&id, &signing_key)?.is_some() {
            // Held already: kept, never taken back to an earlier iteration.
            return Ok(Ok(()));
        }
        // The distribution must prove that its chain is the pairwise
        // sender's own (16.5): a member forwarding another's chain is refused.
        let chain = match InboundChain::from_distribution(
            chain,
            &received.sender,
            ChainConfig::default(),
        ) {
            Ok(chain) => chain,
            Err(e) => return Ok(Err(GroupRefusal::Decrypt(e))),
        };
        writes.group_in(&InboundRecord {
            sender: received.sender.clone(),
            chain,
        })?;
        Ok(Ok(()))
    }

    /// Records a receipt for an outgoing group message, from a member of
    /// its group.
    pub(in crate::engine) fn group_receipt(
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
}
