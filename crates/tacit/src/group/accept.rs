//! Which group controls a device takes from a pairwise sender (16.4, 16.5,
//! and the client's rules in `docs/client.md` "Groups"): the checks that
//! come before a state is applied or a sender chain is stored, shared by
//! every client so that they take and refuse the same controls.
//!
//! - A state is taken only from the device that signed it (the pairwise
//!   sender's address and identity key), and only if the state lists for
//!   the signer (or its parent does, when the signer left) the user key
//!   the session layer trusts for the sender.
//! - States are applied in order to a copy of the group; a state already
//!   held is skipped, any other refusal refuses them all, and a control
//!   that changes nothing is [`GroupStateError::AlreadyApplied`].
//! - A sender chain is taken only for the current state or, from a member
//!   that stays, its parent; only if the local user is in that state; and
//!   only from a member of it under the trusted user key. (That the
//!   distribution proves the sender owns the chain is
//!   [`InboundChain::from_distribution`](crate::group::InboundChain::from_distribution).)

use crate::address::Address;
use crate::error::GroupStateError;
use crate::group::{Applied, Group, GroupState, SignedGroupState};
use crate::identity::UserKey;
use crate::keys::IdentityKey;

use thiserror::Error;

/// The pairwise sender of a group control, as the session layer
/// authenticated it (`Received`'s sender fields).
#[derive(Clone, Copy, Debug)]
pub struct ControlSender<'a> {
    /// The sending device.
    pub address: &'a Address,
    /// The sending device's identity key.
    pub identity: &'a IdentityKey,
    /// The user key trusted for the sender's user.
    pub user_key: &'a UserKey,
}

/// Why the states of a control are refused before they are applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum StatesRefusal {
    /// The control carries no state.
    #[error("a group control without a state")]
    NoState,
    /// The pairwise sender is not the device that signed the last state.
    #[error("a group state not sent by the device that signed it")]
    NotFromSigner,
    /// The state (or its parent, when the signer left) lists another user
    /// key for its signer than the one trusted, or none.
    #[error("the state lists another user key for its signer than the trusted one")]
    UserKeyMismatch,
}

/// Why a sender chain distribution is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ChainRefusal {
    /// The chain names neither the current state nor its parent.
    #[error("a sender chain of a state no longer taken")]
    NotRecent,
    /// The chain names the parent, and its sender's user left in the
    /// current state.
    #[error("a sender chain of the parent state from a member that left")]
    SenderLeft,
    /// The chain names the parent, which is not among the states held.
    #[error("a sender chain of a state not held")]
    ParentNotHeld,
    /// The local user is not in the state the chain names.
    #[error("a sender chain of a state without this user")]
    LocalNotMember,
    /// The sender's user is not in the state the chain names.
    #[error("a sender chain from a non-member")]
    NotMember,
    /// The state lists another user key for the sender than the trusted one.
    #[error("a sender chain from a user key the state does not list")]
    UserKeyMismatch,
}

/// The state of `group`'s history whose hash is `hash`.
pub fn held_state<'g>(group: &'g Group, hash: &[u8; 32]) -> Option<&'g SignedGroupState> {
    group
        .history()
        .iter()
        .find(|s| &s.hash().to_bytes() == hash)
}

/// Checks who sent `states` (parent first; the last is the new state)
/// before they are applied or joined, and returns the new state's parent
/// state as far as it is known: the first of `states` when there are two,
/// else the one `existing` holds.
pub fn check_states_sender(
    states: &[SignedGroupState],
    existing: Option<&Group>,
    sender: ControlSender<'_>,
) -> Result<Option<GroupState>, StatesRefusal> {
    let new = states.last().ok_or(StatesRefusal::NoState)?;
    if new.signer() != sender.address || new.signer_identity() != sender.identity {
        return Err(StatesRefusal::NotFromSigner);
    }
    let parent = match states {
        [parent, _] => Some(parent.state().clone()),
        _ => new.state().parent().and_then(|p| {
            existing
                .and_then(|g| held_state(g, &p.to_bytes()))
                .map(|s| s.state().clone())
        }),
    };
    let signer_user = new.signer().user_id();
    let listed = new
        .state()
        .member(signer_user)
        .or_else(|| parent.as_ref().and_then(|p| p.member(signer_user)))
        .map(|m| m.user_key);
    if listed.as_ref() != Some(sender.user_key) {
        return Err(StatesRefusal::UserKeyMismatch);
    }
    Ok(parent)
}

/// `group` after `states`, applied in order ([`Group::apply`]), and
/// whether one of them lost to a state held. A state held already is
/// skipped; any other error refuses them all (the group is dropped); if
/// none advanced the group or lost, [`GroupStateError::AlreadyApplied`].
pub fn apply_states(
    mut group: Group,
    states: &[SignedGroupState],
) -> Result<(Group, bool), GroupStateError> {
    let mut changed = false;
    let mut lost = false;
    for state in states {
        match group.apply(state) {
            Ok(Applied::Advanced | Applied::SwitchedToWinner { .. }) => changed = true,
            Ok(Applied::Lost { .. }) => lost = true,
            Err(GroupStateError::AlreadyApplied) => {}
            Err(e) => return Err(e),
        }
    }
    if !changed && !lost {
        return Err(GroupStateError::AlreadyApplied);
    }
    Ok((group, lost))
}

/// The state of `group` a sender chain of the state `state_hash` from
/// `sender` may be taken for, with `local_user` the local user (16.5):
/// the current state, or its parent from a member that stays; the local
/// user and the sender in it, the sender under the trusted user key.
pub fn chain_state<'g>(
    group: &'g Group,
    state_hash: &[u8; 32],
    local_user: &str,
    sender: &Address,
    sender_user_key: &UserKey,
) -> Result<&'g GroupState, ChainRefusal> {
    let user = sender.user_id();
    let current = group.current().hash().to_bytes();
    let parent = group.state().parent().map(|h| h.to_bytes());
    let state = if state_hash == &current {
        group.state()
    } else if Some(*state_hash) == parent {
        if group.state().member(user).is_none() {
            return Err(ChainRefusal::SenderLeft);
        }
        held_state(group, state_hash)
            .ok_or(ChainRefusal::ParentNotHeld)?
            .state()
    } else {
        return Err(ChainRefusal::NotRecent);
    };
    if state.member(local_user).is_none() {
        return Err(ChainRefusal::LocalNotMember);
    }
    let member = state.member(user).ok_or(ChainRefusal::NotMember)?;
    if &member.user_key != sender_user_key {
        return Err(ChainRefusal::UserKeyMismatch);
    }
    Ok(state)
}

#[cfg(test)]
#[path = "accept_tests.rs"]
mod tests;
