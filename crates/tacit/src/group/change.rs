//! Changes to a group and the rules of a transition (`docs/PROTOCOL.md`
//! 16.3): who may make which change, and how a new state follows its
//! parent.

use alloc::string::String;
use alloc::vec::Vec;

use crate::error::GroupStateError;
use crate::group::state::check_title;
use crate::group::{GroupMember, GroupState, Role, SignedGroupState};
use crate::identity::UserKey;

/// One change to a group; [`Group::propose`](crate::group::Group::propose)
/// makes the next state from one or more of them, applied in order.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum GroupChange {
    /// Adds a user (admin only).
    Add(GroupMember),
    /// Removes a member (admin only; an admin may remove itself if another
    /// admin remains).
    Remove(String),
    /// The signer's user leaves (any member; the last admin may not).
    Leave,
    /// Sets the title (admin only).
    Retitle(String),
    /// Sets a member's role (admin only).
    SetRole {
        /// The member.
        user_id: String,
        /// Its new role.
        role: Role,
    },
    /// Records a member's new user key (admin only), after the member's
    /// user key change was accepted (14.6).
    UpdateUserKey {
        /// The member.
        user_id: String,
        /// Its new user key.
        user_key: UserKey,
    },
}

/// The state after `changes` to `parent`, made by a device of `signer`.
/// Whether the signer may make them is [`check_transition`]'s question.
pub(crate) fn next_state(
    parent: &SignedGroupState,
    changes: &[GroupChange],
    signer: &str,
) -> Result<GroupState, GroupStateError> {
    let p = parent.state();
    let epoch = p
        .epoch()
        .checked_add(1)
        .ok_or(GroupStateError::EpochExhausted)?;
    let mut title = String::from(p.title());
    let mut members: Vec<GroupMember> = p.members().to_vec();
    for change in changes {
        match change {
            GroupChange::Add(member) => {
                if position(&members, &member.user_id).is_some() {
                    return Err(GroupStateError::AlreadyMember(member.user_id.clone()));
                }
                members.push(member.clone());
                GroupState::sort_members(&mut members);
            }
            GroupChange::Remove(user_id) => {
                members.remove(known(&members, user_id)?);
            }
            GroupChange::Leave => {
                members.remove(known(&members, signer)?);
            }
            GroupChange::Retitle(new) => {
                check_title(new)?;
                title.clone_from(new);
            }
            GroupChange::SetRole { user_id, role } => {
                let i = known(&members, user_id)?;
                members[i].role = *role;
            }
            GroupChange::UpdateUserKey { user_id, user_key } => {
                let i = known(&members, user_id)?;
                members[i].user_key = *user_key;
            }
        }
    }
    GroupState::new(p.group_id(), epoch, Some(parent.hash()), title, members)
}

fn position(members: &[GroupMember], user_id: &str) -> Option<usize> {
    members.iter().position(|m| m.user_id == user_id)
}

fn known(members: &[GroupMember], user_id: &str) -> Result<usize, GroupStateError> {
    position(members, user_id).ok_or_else(|| GroupStateError::UnknownMember(user_id.into()))
}

/// The rules of a transition from `parent` to `new`, in the order of 16.3.
pub(crate) fn check_transition(
    parent: &SignedGroupState,
    new: &SignedGroupState,
) -> Result<(), GroupStateError> {
    let (p, n) = (parent.state(), new.state());
    if n.group_id() != p.group_id() {
        return Err(GroupStateError::WrongGroup);
    }
    let expected = p
        .epoch()
        .checked_add(1)
        .ok_or(GroupStateError::EpochExhausted)?;
    if n.epoch() != expected {
        return Err(GroupStateError::WrongEpoch {
            expected,
            actual: n.epoch(),
        });
    }
    if n.parent() != Some(parent.hash()) {
        return Err(GroupStateError::WrongParent);
    }
    new.verify(p)?;
    if n.same_content(p) {
        return Err(GroupStateError::NoChange);
    }
    let signer = new.signer().user_id();
    match p.role(signer) {
        Some(Role::Admin) => Ok(()),
        _ if is_leave(p, n, signer) => Ok(()),
        _ => Err(GroupStateError::Unauthorised),
    }
}

/// Whether `n` is `p` without `user_id` and nothing else changed.
fn is_leave(p: &GroupState, n: &GroupState, user_id: &str) -> bool {
    n.title() == p.title()
        && n.members().len() + 1 == p.members().len()
        && p.members()
            .iter()
            .filter(|m| m.user_id != user_id)
            .eq(n.members().iter())
}

/// The rules of a group's first state (epoch 0): signed by a device of one
/// of its admins, under the user key the state itself lists.
pub(crate) fn check_genesis(new: &SignedGroupState) -> Result<(), GroupStateError> {
    let n = new.state();
    if n.epoch() != 0 {
        return Err(GroupStateError::WrongEpoch {
            expected: 0,
            actual: n.epoch(),
        });
    }
    new.verify(n)?;
    match n.role(new.signer().user_id()) {
        Some(Role::Admin) => Ok(()),
        _ => Err(GroupStateError::Unauthorised),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::group::{GroupId, GROUP_ID_LEN};
    use crate::identity::UserKeyPair;
    use alloc::vec;

    fn member(id: &str, role: Role) -> GroupMember {
        GroupMember::new(
            id,
            UserKeyPair::from_seed(&[id.len() as u8; 32]).public_key(),
            role,
        )
    }

    fn state(members: Vec<GroupMember>, title: &str) -> GroupState {
        GroupState::new(
            GroupId::from_bytes([2; GROUP_ID_LEN]),
            0,
            None,
            title.into(),
            members,
        )
        .unwrap()
    }

    #[test]
    fn leaving_is_removing_oneself_and_nothing_else() {
        let a = member("a", Role::Admin);
        let bb = member("bb", Role::Member);
        let ccc = member("ccc", Role::Member);
        let p = state(vec![a.clone(), bb.clone(), ccc.clone()], "t");
        assert!(is_leave(
            &p,
            &state(vec![a.clone(), ccc.clone()], "t"),
            "bb"
        ));
        // Someone else removed.
        assert!(!is_leave(
            &p,
            &state(vec![a.clone(), bb.clone()], "t"),
            "bb"
        ));
        // Leaving and retitling.
        assert!(!is_leave(
            &p,
            &state(vec![a.clone(), ccc.clone()], "u"),
            "bb"
        ));
        // Leaving and changing another member's role or key.
        let mut promoted = ccc.clone();
        promoted.role = Role::Admin;
        assert!(!is_leave(&p, &state(vec![a.clone(), promoted], "t"), "bb"));
        let mut rekeyed = ccc.clone();
        rekeyed.user_key = UserKeyPair::from_seed(&[9; 32]).public_key();
        assert!(!is_leave(&p, &state(vec![a.clone(), rekeyed], "t"), "bb"));
        // Leaving and adding someone in the same state.
        let dddd = member("dddd", Role::Member);
        assert!(!is_leave(
            &p,
            &state(vec![a.clone(), ccc.clone(), dddd], "t"),
            "bb"
        ));
        // Nothing removed.
        assert!(!is_leave(&p, &p, "bb"));
    }
}
