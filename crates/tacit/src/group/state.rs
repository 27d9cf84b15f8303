//! The group state: group id, epoch, parent, title and members
//! (`docs/PROTOCOL.md` 16.2), always valid.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use prost::Message as _;
use rand_core::CryptoRngCore;

use crate::address::Address;
use crate::error::{GroupStateError, WireError};
use crate::group::{proto, GROUP_ID_LEN, MAX_GROUP_MEMBERS, MAX_GROUP_STATE_LEN, MAX_TITLE_LEN};
use crate::identity::UserKey;
use crate::keys::KEY_LEN;
use crate::wire::{check_version, decode_canonical, fixed, WIRE_VERSION};

/// A group's id: 32 random bytes, the same for every state of the group.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GroupId([u8; GROUP_ID_LEN]);

impl GroupId {
    /// A new id from 32 bytes drawn from `rng` in one call.
    pub fn generate(rng: &mut impl CryptoRngCore) -> Self {
        let mut id = [0u8; GROUP_ID_LEN];
        rng.fill_bytes(&mut id);
        Self(id)
    }

    /// The id of these bytes.
    pub const fn from_bytes(bytes: [u8; GROUP_ID_LEN]) -> Self {
        Self(bytes)
    }

    /// The 32 bytes.
    pub const fn to_bytes(&self) -> [u8; GROUP_ID_LEN] {
        self.0
    }
}

impl fmt::Debug for GroupId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "GroupId(")?;
        hex(f, &self.0)?;
        write!(f, ")")
    }
}

/// `StateHash(s) = SHA-256("tacit/group/v1/state-hash" || Enc(s))` of a
/// signed state `s`. Ordered as a big-endian number: of two sibling
/// states of the same kind (16.3: admin-signed first), the lower hash wins.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StateHash([u8; 32]);

impl StateHash {
    /// The hash of these bytes.
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The 32 bytes.
    pub const fn to_bytes(&self) -> [u8; 32] {
        self.0
    }
}

impl fmt::Debug for StateHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StateHash(")?;
        hex(f, &self.0)?;
        write!(f, ")")
    }
}

fn hex(f: &mut fmt::Formatter<'_>, bytes: &[u8]) -> fmt::Result {
    bytes.iter().try_for_each(|b| write!(f, "{b:02x}"))
}

/// A member's role.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub enum Role {
    /// May make any change (code 1).
    Admin,
    /// May only leave (code 2).
    Member,
}

impl Role {
    /// The wire code: 1 for admin, 2 for member.
    pub const fn code(self) -> u32 {
        match self {
            Self::Admin => 1,
            Self::Member => 2,
        }
    }

    /// The role of a wire code.
    pub const fn from_code(code: u32) -> Option<Self> {
        match code {
            1 => Some(Self::Admin),
            2 => Some(Self::Member),
            _ => None,
        }
    }
}

/// A member: a user, its user key and its role.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct GroupMember {
    /// The user id (1 to 64 bytes, no control characters).
    pub user_id: String,
    /// The user key its devices' certificates verify under.
    pub user_key: UserKey,
    /// The role.
    pub role: Role,
}

impl GroupMember {
    /// A member.
    pub fn new(user_id: impl Into<String>, user_key: UserKey, role: Role) -> Self {
        Self {
            user_id: user_id.into(),
            user_key,
            role,
        }
    }
}

/// A valid group state: members unique and in ascending order of user id
/// bytes, 1 to [`MAX_GROUP_MEMBERS`] of them, at least one admin, a title of
/// at most [`MAX_TITLE_LEN`] bytes without control characters, a parent
/// exactly when the epoch is not 0, and an encoding of at most
/// [`MAX_GROUP_STATE_LEN`] bytes.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct GroupState {
    group_id: GroupId,
    epoch: u64,
    parent: Option<StateHash>,
    title: String,
    members: Vec<GroupMember>,
}

impl GroupState {
    /// Checks and builds a state. `members` must already be in order
    /// (see [`GroupState::sort_members`]); `parent` is `None` exactly at
    /// epoch 0.
    pub fn new(
        group_id: GroupId,
        epoch: u64,
        parent: Option<StateHash>,
        title: String,
        members: Vec<GroupMember>,
    ) -> Result<Self, GroupStateError> {
        if (epoch == 0) != parent.is_none() {
            return Err(WireError::InvalidValue("parent").into());
        }
        let state = Self {
            group_id,
            epoch,
            parent,
            title,
            members,
        };
        state.check()?;
        let len = state.to_proto().encoded_len();
        if len > MAX_GROUP_STATE_LEN {
            return Err(GroupStateError::StateTooLarge {
                len,
                max: MAX_GROUP_STATE_LEN,
            });
        }
        Ok(state)
    }

    /// Sorts members into the order a state requires.
    pub fn sort_members(members: &mut [GroupMember]) {
        members.sort_by(|a, b| a.user_id.as_bytes().cmp(b.user_id.as_bytes()));
    }

    /// Strict decoding (16.2), then the rules of a valid state.
    pub fn from_wire(bytes: &[u8]) -> Result<Self, GroupStateError> {
        let m: proto::GroupState = decode_canonical(bytes, MAX_GROUP_STATE_LEN)?;
        check_version(m.version)?;
        let group_id = GroupId(fixed::<GROUP_ID_LEN>("group_id", &m.group_id)?);
        let parent = match (m.epoch, m.parent.is_empty()) {
            (0, true) => None,
            (0, false) => return Err(WireError::InvalidValue("parent").into()),
            (_, _) => Some(StateHash(fixed::<32>("parent", &m.parent)?)),
        };
        if m.members.len() > MAX_GROUP_MEMBERS {
            return Err(GroupStateError::TooManyMembers(m.members.len()));
        }
        let mut members = Vec::with_capacity(m.members.len());
        for member in m.members {
            let user_key = UserKey::from_bytes(&fixed::<KEY_LEN>("user_key", &member.user_key)?)
                .map_err(|error| WireError::InvalidKey {
                    field: "user_key",
                    error,
                })?;
            let role = Role::from_code(member.role).ok_or(WireError::InvalidValue("role"))?;
            members.push(GroupMember {
                user_id: member.user_id,
                user_key,
                role,
            });
        }
        let state = Self {
            group_id,
            epoch: m.epoch,
            parent,
            title: m.title,
            members,
        };
        state.check()?;
        Ok(state)
    }

    /// The canonical encoding.
    pub fn to_wire(&self) -> Vec<u8> {
        self.to_proto().encode_to_vec()
    }

    fn to_proto(&self) -> proto::GroupState {
        proto::GroupState {
            version: WIRE_VERSION,
            group_id: self.group_id.0.to_vec(),
            epoch: self.epoch,
            parent: self.parent.map(|p| p.0.to_vec()).unwrap_or_default(),
            title: self.title.clone(),
            members: self
                .members
                .iter()
                .map(|m| proto::GroupMember {
                    user_id: m.user_id.clone(),
                    user_key: m.user_key.to_bytes().to_vec(),
                    role: m.role.code(),
                })
                .collect(),
        }
    }

    /// The rules of a valid state, in the order of 16.2.
    fn check(&self) -> Result<(), GroupStateError> {
        check_title(&self.title)?;
        if self.members.is_empty() {
            return Err(GroupStateError::NoMembers);
        }
        if self.members.len() > MAX_GROUP_MEMBERS {
            return Err(GroupStateError::TooManyMembers(self.members.len()));
        }
        let mut previous: Option<&str> = None;
        for m in &self.members {
            if Address::new(&m.user_id, 1).is_err() {
                return Err(GroupStateError::InvalidUserId);
            }
            if let Some(p) = previous {
                match p.as_bytes().cmp(m.user_id.as_bytes()) {
                    core::cmp::Ordering::Less => {}
                    core::cmp::Ordering::Equal => {
                        return Err(GroupStateError::DuplicateMember(m.user_id.clone()))
                    }
                    core::cmp::Ordering::Greater => {
                        return Err(GroupStateError::MembersNotAscending)
                    }
                }
            }
            previous = Some(&m.user_id);
        }
        if !self.members.iter().any(|m| m.role == Role::Admin) {
            return Err(GroupStateError::NoAdmin);
        }
        Ok(())
    }

    /// The group id.
    pub fn group_id(&self) -> GroupId {
        self.group_id
    }

    /// The epoch: 0 at creation, one more per change.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The parent's hash; `None` at epoch 0.
    pub fn parent(&self) -> Option<StateHash> {
        self.parent
    }

    /// The title.
    pub fn title(&self) -> &str {
        &self.title
    }

    /// The members, in ascending order of user id bytes.
    pub fn members(&self) -> &[GroupMember] {
        &self.members
    }

    /// The member `user_id`, if listed.
    pub fn member(&self, user_id: &str) -> Option<&GroupMember> {
        self.members
            .binary_search_by(|m| m.user_id.as_bytes().cmp(user_id.as_bytes()))
            .ok()
            .map(|i| &self.members[i])
    }

    /// The role of `user_id`, if a member.
    pub fn role(&self, user_id: &str) -> Option<Role> {
        self.member(user_id).map(|m| m.role)
    }

    /// Whether the title and members are those of `other` (the rest of a
    /// state is its place in the chain).
    pub(crate) fn same_content(&self, other: &Self) -> bool {
        self.title == other.title && self.members == other.members
    }
}

/// A title: at most [`MAX_TITLE_LEN`] bytes, no control characters.
pub(crate) fn check_title(title: &str) -> Result<(), GroupStateError> {
    if title.len() > MAX_TITLE_LEN {
        return Err(GroupStateError::TitleTooLong(title.len()));
    }
    if title.chars().any(char::is_control) {
        return Err(GroupStateError::TitleCharacters);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::UserKeyPair;
    use alloc::vec;

    fn member(id: &str, role: Role) -> GroupMember {
        GroupMember::new(id, UserKeyPair::from_seed(&[3; 32]).public_key(), role)
    }

    #[test]
    fn role_codes() {
        assert_eq!(Role::from_code(1), Some(Role::Admin));
        assert_eq!(Role::from_code(2), Some(Role::Member));
        for code in [0, 3, u32::MAX] {
            assert_eq!(Role::from_code(code), None);
        }
        for role in [Role::Admin, Role::Member] {
            assert_eq!(Role::from_code(role.code()), Some(role));
        }
    }

    #[test]
    fn titles_are_counted_in_bytes_and_refuse_every_cc_character() {
        assert_eq!(check_title(&"a".repeat(128)), Ok(()));
        assert_eq!(check_title(""), Ok(()));
        assert_eq!(
            check_title(&"é".repeat(65)),
            Err(GroupStateError::TitleTooLong(130))
        );
        for c in ['\0', '\u{1f}', '\u{7f}', '\u{80}', '\u{9f}'] {
            let title: String = ['a', c].iter().collect();
            assert_eq!(check_title(&title), Err(GroupStateError::TitleCharacters));
        }
        // Not Cc: a non-breaking space and a zero-width joiner.
        assert_eq!(check_title("a\u{a0}\u{200d}b"), Ok(()));
    }

    #[test]
    fn members_are_ordered_by_bytes_and_found_by_binary_search() {
        // "Z" (0x5a) sorts before "a" (0x61) and "é" (0xc3 0xa9) after both.
        let mut members = vec![
            member("é", Role::Member),
            member("a", Role::Admin),
            member("Z", Role::Member),
        ];
        GroupState::sort_members(&mut members);
        let ids: Vec<&str> = members.iter().map(|m| m.user_id.as_str()).collect();
        assert_eq!(ids, ["Z", "a", "é"]);
        let state = GroupState::new(GroupId([1; 32]), 0, None, "t".into(), members).unwrap();
        assert_eq!(state.role("a"), Some(Role::Admin));
        assert_eq!(state.role("é"), Some(Role::Member));
        assert_eq!(state.role("b"), None);
        assert_eq!(GroupState::from_wire(&state.to_wire()), Ok(state));
    }

    #[test]
    fn debug_shows_ids_and_hashes_in_hex() {
        assert_eq!(
            alloc::format!("{:?}", StateHash::from_bytes([0xab; 32])),
            alloc::format!("StateHash({})", "ab".repeat(32))
        );
        assert!(alloc::format!("{:?}", GroupId::from_bytes([1; 32])).starts_with("GroupId(0101"));
    }
}
