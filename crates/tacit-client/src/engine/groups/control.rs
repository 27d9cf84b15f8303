//! Group controls received pairwise (`docs/PROTOCOL.md` 16.4, `docs/client.md`
//! "Groups"): states from their signer under the trusted user key, sender
//! chains from members of their state; receipts for group messages.

use tacit::error::GroupStateError;
use tacit::group::{
    Applied, ChainConfig, Group, GroupState, InboundChain, Role, SenderChainDistribution,
    SessionControlBody, SignedGroupState,
};
use tacit::session::Received;
use tacit::Address;

use crate::engine::Engine;
use crate::store::{InboundRecord, Writes};
use crate::{ClientError, Event, GroupRefusal, MessageId, Status};

use super::held_state;

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
