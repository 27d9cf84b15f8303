//! A member's record of a group (`docs/PROTOCOL.md` 16.3): the states it
//! accepted, the rule that settles concurrent changes, and its storage
//! form.

use alloc::string::{String, ToString};
use alloc::vec::Vec;

use crate::address::Address;
use crate::codec::{varint_len, Reader, Writer};
use crate::error::{GroupStateError, StateError};
use crate::group::change::{check_genesis, check_transition, next_state};
use crate::group::{
    GroupChange, GroupId, GroupMember, GroupSigner, GroupState, Role, SignedGroupState, StateHash,
    GROUP_RECORD_VERSION, MAX_SIGNED_GROUP_STATE_LEN, MAX_STATE_HISTORY,
};
use crate::identity::UserKey;
use crate::keys::IdentityKey;

/// What [`Group::apply`] did with a valid state.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Applied {
    /// The state follows the current one and is now current.
    Advanced,
    /// The state won against a sibling held (it comes first in the order
    /// of 16.3: signed by an admin of the parent, else the lower hash): it
    /// is now current, and the sibling and every state built on it were dropped.
    SwitchedToWinner {
        /// The states dropped, oldest first.
        dropped: Vec<SignedGroupState>,
        /// Whether a dropped state was signed by the local user: its change
        /// lost, and may be proposed again on the new state.
        own_change_lost: bool,
    },
    /// The state lost against the sibling held (the sibling comes first):
    /// nothing changed. If the local user signed it, its change lost.
    Lost {
        /// The sibling that won.
        winner: StateHash,
    },
}

/// One member's record of a group: the last [`MAX_STATE_HISTORY`] states
/// it accepted, each the parent of the next; the last is current.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Group {
    local_user: String,
    history: Vec<SignedGroupState>,
}

impl Group {
    /// Creates a group (epoch 0) with `members` in any order, signed by
    /// `signer`, whose user must be an admin among them. The first state,
    /// to send to every member, is [`Group::current`].
    pub fn create(
        group_id: GroupId,
        title: &str,
        mut members: Vec<GroupMember>,
        signer: &GroupSigner<'_>,
    ) -> Result<Self, GroupStateError> {
        GroupState::sort_members(&mut members);
        let state = GroupState::new(group_id, 0, None, title.to_string(), members)?;
        let signed = SignedGroupState::sign(state, signer);
        check_genesis(&signed)?;
        Ok(Self {
            local_user: signer.address().user_id().to_string(),
            history: alloc::vec![signed],
        })
    }

    /// Joins a group from a received control's states: `[first]` for a
    /// member of the first state, `[parent, new]` for a member just added.
    /// The states must have been sent by their signer (`sender` with
    /// `sender_identity`, as the session layer verified them); the local
    /// user must be in the last state with `local_key`, and not in the
    /// parent. The parent is trusted on the signer's word (16.4).
    pub fn join(
        local_user: &str,
        local_key: &UserKey,
        states: &[SignedGroupState],
        sender: &Address,
        sender_identity: &IdentityKey,
    ) -> Result<Self, GroupStateError> {
        let new = match states {
            [first] => {
                check_genesis(first)?;
                first
            }
            [parent, new] => {
                // A first state can be checked in full; any other parent is
                // taken on the signer's word (16.4).
                if parent.state().epoch() == 0 {
                    check_genesis(parent)?;
                }
                check_transition(parent, new)?;
                if parent.state().member(local_user).is_some() {
                    return Err(GroupStateError::AlreadyInParent);
                }
                new
            }
            _ => return Err(GroupStateError::StateCount(states.len())),
        };
        if new.state().member(local_user).map(|m| &m.user_key) != Some(local_key) {
            return Err(GroupStateError::NotInNewState);
        }
        if new.signer() != sender || new.signer_identity() != sender_identity {
            return Err(GroupStateError::NotFromSigner);
        }
        Ok(Self {
            local_user: local_user.to_string(),
            history: states.to_vec(),
        })
    }

    /// Signs the state after `changes` (in order) as `signer`, checked as a
    /// receiver checks it. The group does not change: apply the result to
    /// make it current, and send it (16.4).
    pub fn propose(
        &self,
        changes: &[GroupChange],
        signer: &GroupSigner<'_>,
    ) -> Result<SignedGroupState, GroupStateError> {
        let current = self.current();
        let state = next_state(current, changes, signer.address().user_id())?;
        let signed = SignedGroupState::sign(state, signer);
        check_transition(current, &signed)?;
        Ok(signed)
    }

    /// Accepts `new` if it is a valid child of a state held (16.3). If a
    /// sibling is held, a state signed by an admin of the parent wins over
    /// one signed by a plain member, then the lower [`StateHash`] wins. On
    /// error nothing changed.
    pub fn apply(&mut self, new: &SignedGroupState) -> Result<Applied, GroupStateError> {
        if new.state().group_id() != self.group_id() {
            return Err(GroupStateError::WrongGroup);
        }
        let hash = new.hash();
        if self.history.iter().any(|s| s.hash() == hash) {
            return Err(GroupStateError::AlreadyApplied);
        }
        let parent = new
            .state()
            .parent()
            .and_then(|p| self.history.iter().position(|s| s.hash() == p));
        let Some(i) = parent else {
            let oldest = self.history[0].state().epoch();
            return Err(if new.state().epoch() <= oldest {
                GroupStateError::Stale {
                    epoch: new.state().epoch(),
                    oldest,
                }
            } else {
                GroupStateError::UnknownParent(new.state().epoch())
            });
        };
        check_transition(&self.history[i], new)?;
        let Some(sibling) = self.history.get(i + 1) else {
            self.history.push(new.clone());
            if self.history.len() > MAX_STATE_HISTORY {
                self.history.remove(0);
            }
            return Ok(Applied::Advanced);
        };
        let parent = self.history[i].state();
        if precedence(parent, sibling) < precedence(parent, new) {
            return Ok(Applied::Lost {
                winner: sibling.hash(),
            });
        }
        let dropped = self.history.split_off(i + 1);
        self.history.push(new.clone());
        let own_change_lost = dropped
            .iter()
            .any(|s| s.signer().user_id() == self.local_user);
        Ok(Applied::SwitchedToWinner {
            dropped,
            own_change_lost,
        })
    }

    /// The current state, signed.
    pub fn current(&self) -> &SignedGroupState {
        // A group always holds at least one state.
        &self.history[self.history.len() - 1]
    }

    /// The current state.
    pub fn state(&self) -> &GroupState {
        self.current().state()
    }

    /// The states held, oldest first; the last is current.
    pub fn history(&self) -> &[SignedGroupState] {
        &self.history
    }

    /// The local user, whose record this is.
    pub fn local_user(&self) -> &str {
        &self.local_user
    }

    /// The group id.
    pub fn group_id(&self) -> GroupId {
        self.history[0].state().group_id()
    }

    /// The current epoch.
    pub fn epoch(&self) -> u64 {
        self.state().epoch()
    }

    /// The current title.
    pub fn title(&self) -> &str {
        self.state().title()
    }

    /// The current members, in ascending order of user id bytes.
    pub fn members(&self) -> &[GroupMember] {
        self.state().members()
    }

    /// The current role of `user_id`, if a member.
    pub fn role(&self, user_id: &str) -> Option<Role> {
        self.state().role(user_id)
    }

    /// Whether the local user is a member of the current state (`false`
    /// once it left or was removed).
    pub fn is_member(&self) -> bool {
        self.state().member(&self.local_user).is_some()
    }

    /// The users a new current state goes to: the members of it and of its
    /// parent, if held (so that a removed member learns it), in ascending
    /// order of user id bytes, each once.
    pub fn recipients(&self) -> Vec<&str> {
        let n = self.history.len();
        let mut users: Vec<&str> = self.history[n.saturating_sub(2)..]
            .iter()
            .flat_map(|s| s.state().members().iter().map(|m| m.user_id.as_str()))
            .collect();
        users.sort_unstable_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        users.dedup();
        users
    }

    /// The record (16.3): `u8(1) || varint(len(user)) || user ||
    /// varint(n) || n x (varint(len) || Enc(s))`, oldest state first. It
    /// holds no secret.
    pub fn to_bytes(&self) -> Vec<u8> {
        let len = 1
            + varint_len(self.local_user.len() as u64)
            + self.local_user.len()
            + varint_len(self.history.len() as u64)
            + self
                .history
                .iter()
                .map(|s| varint_len(s.as_wire().len() as u64) + s.as_wire().len())
                .sum::<usize>();
        let mut w = Writer::with_len(len);
        w.byte(GROUP_RECORD_VERSION);
        w.varint(self.local_user.len() as u64);
        w.raw(self.local_user.as_bytes());
        w.varint(self.history.len() as u64);
        for s in &self.history {
            w.varint(s.as_wire().len() as u64);
            w.raw(s.as_wire());
        }
        core::mem::take(&mut *w.finish())
    }

    /// Reads a record: the version, every state strictly decoded, and
    /// every state a valid child of the one before it (signatures
    /// included; the first, if of epoch 0, a valid first state).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, GroupStateError> {
        let mut r = Reader::new(bytes);
        let version = r.byte().map_err(|_| StateError::Empty)?;
        if version != GROUP_RECORD_VERSION {
            return Err(StateError::UnknownVersion(version).into());
        }
        let user_len = r.len(crate::address::MAX_USER_ID_LEN)?;
        let local_user = core::str::from_utf8(r.take(user_len)?)
            .map_err(|_| StateError::Corrupt)?
            .to_string();
        Address::new(&local_user, 1).map_err(|_| StateError::Corrupt)?;
        let n = r.len(MAX_STATE_HISTORY)?;
        if n == 0 {
            return Err(StateError::Corrupt.into());
        }
        let mut history: Vec<SignedGroupState> = Vec::with_capacity(n);
        for _ in 0..n {
            let len = r.len(MAX_SIGNED_GROUP_STATE_LEN)?;
            let s = SignedGroupState::from_wire(r.take(len)?).map_err(|_| StateError::Corrupt)?;
            match history.last() {
                None if s.state().epoch() == 0 => check_genesis(&s),
                None => Ok(()),
                Some(parent) => check_transition(parent, &s),
            }
            .map_err(|_| StateError::Corrupt)?;
            history.push(s);
        }
        r.finish()?;
        Ok(Self {
            local_user,
            history,
        })
    }
}

/// The order of siblings of `parent` (16.3): a state signed by an admin of
/// the parent comes before one signed by a plain member, then the lower
/// [`StateHash`] first. The lowest wins.
fn precedence(parent: &GroupState, state: &SignedGroupState) -> (bool, StateHash) {
    (
        parent.role(state.signer().user_id()) != Some(Role::Admin),
        state.hash(),
    )
}
