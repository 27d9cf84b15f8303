//! The acceptance rules of `accept.rs`, each shown refusing what it must.

#![allow(clippy::unwrap_used)]

use super::*;
use crate::group::{GroupChange, GroupId, GroupMember, GroupSigner, Role};
use crate::identity::{DeviceCertificate, UserKeyPair};
use crate::keys::IdentityKeyPair;
use alloc::string::ToString;
use alloc::vec;

struct User {
    key: UserKeyPair,
    device: IdentityKeyPair,
    address: Address,
    certificate: DeviceCertificate,
}

impl User {
    fn new(name: &str, seed: u8) -> Self {
        let key = UserKeyPair::from_seed(&[seed; 32]);
        let device = IdentityKeyPair::from_seed(&[seed.wrapping_add(100); 32]);
        let address = Address::new(name, 1).unwrap();
        let certificate = DeviceCertificate::issue(&key, &address, &device.public_key());
        Self {
            key,
            device,
            address,
            certificate,
        }
    }

    fn signer(&self) -> GroupSigner<'_> {
        GroupSigner::new(&self.device, &self.address, self.certificate)
    }

    fn member(&self, role: Role) -> GroupMember {
        GroupMember::new(self.address.user_id(), self.key.public_key(), role)
    }

    fn user_key(&self) -> UserKey {
        self.key.public_key()
    }

    fn identity(&self) -> IdentityKey {
        self.device.public_key()
    }
}

struct World {
    alice: User,
    bob: User,
    carol: User,
    dave: User,
}

fn world() -> World {
    World {
        alice: User::new("alice", 1),
        bob: User::new("bob", 2),
        carol: User::new("carol", 3),
        dave: User::new("dave", 4),
    }
}

/// Alice (admin) creates a group with Bob (member): Alice's record.
fn create(w: &World) -> Group {
    Group::create(
        GroupId::from_bytes([7; 32]),
        "team",
        vec![w.alice.member(Role::Admin), w.bob.member(Role::Member)],
        &w.alice.signer(),
    )
    .unwrap()
}

fn propose(group: &Group, user: &User, change: GroupChange) -> SignedGroupState {
    group.propose(&[change], &user.signer()).unwrap()
}

/// Alice adds Carol (a member) to `group`.
fn add_carol(w: &World, group: &Group) -> SignedGroupState {
    propose(
        group,
        &w.alice,
        GroupChange::Add(w.carol.member(Role::Member)),
    )
}

/// `group` with `state` applied.
fn applied(group: &Group, state: &SignedGroupState) -> Group {
    let mut next = group.clone();
    next.apply(state).unwrap();
    next
}

fn from<'a>(
    address: &'a Address,
    identity: &'a IdentityKey,
    key: &'a UserKey,
) -> ControlSender<'a> {
    ControlSender {
        address,
        identity,
        user_key: key,
    }
}

#[test]
fn states_are_taken_only_from_the_device_that_signed_them() {
    let w = world();
    let group = create(&w);
    let add = add_carol(&w, &group);
    let (identity, key) = (w.alice.identity(), w.alice.user_key());
    let parent = check_states_sender(
        core::slice::from_ref(&add),
        Some(&group),
        from(&w.alice.address, &identity, &key),
    );
    assert_eq!(parent, Ok(Some(group.state().clone())));
    // Forwarded by Bob, a member: refused although the signature holds.
    let (bob_identity, bob_key) = (w.bob.identity(), w.bob.user_key());
    assert_eq!(
        check_states_sender(
            core::slice::from_ref(&add),
            Some(&group),
            from(&w.bob.address, &bob_identity, &bob_key),
        ),
        Err(StatesRefusal::NotFromSigner)
    );
    // Alice's address with another identity key.
    let other = w.dave.identity();
    assert_eq!(
        check_states_sender(
            core::slice::from_ref(&add),
            Some(&group),
            from(&w.alice.address, &other, &key),
        ),
        Err(StatesRefusal::NotFromSigner)
    );
    assert_eq!(
        check_states_sender(&[], Some(&group), from(&w.alice.address, &identity, &key)),
        Err(StatesRefusal::NoState)
    );
}

#[test]
fn the_signer_must_be_listed_under_the_trusted_user_key() {
    let w = world();
    let group = create(&w);
    let retitle = propose(&group, &w.alice, GroupChange::Retitle("new".to_string()));
    let identity = w.alice.identity();
    // The session layer trusts another key for Alice than the state lists.
    let other = w.dave.user_key();
    assert_eq!(
        check_states_sender(
            core::slice::from_ref(&retitle),
            Some(&group),
            from(&w.alice.address, &identity, &other),
        ),
        Err(StatesRefusal::UserKeyMismatch)
    );
}

#[test]
fn a_signer_that_left_is_found_in_the_parent_only() {
    let w = world();
    let group = create(&w);
    let leave = propose(&group, &w.bob, GroupChange::Leave);
    let (identity, key) = (w.bob.identity(), w.bob.user_key());
    let bob = from(&w.bob.address, &identity, &key);
    // The parent held: Bob's key is read there.
    assert_eq!(
        check_states_sender(core::slice::from_ref(&leave), Some(&group), bob),
        Ok(Some(group.state().clone()))
    );
    // Sent with its parent: read there too.
    let pair = [group.current().clone(), leave.clone()];
    assert_eq!(
        check_states_sender(&pair, None, bob),
        Ok(Some(group.state().clone()))
    );
    // The parent unknown: nothing lists Bob.
    assert_eq!(
        check_states_sender(core::slice::from_ref(&leave), None, bob),
        Err(StatesRefusal::UserKeyMismatch)
    );
}

#[test]
fn states_apply_in_order_and_a_control_that_changes_nothing_is_refused() {
    let w = world();
    let group = create(&w);
    let add = add_carol(&w, &group);
    let (next, lost) = apply_states(group.clone(), core::slice::from_ref(&add)).unwrap();
    assert!(!lost);
    assert_eq!(next.current(), &add);
    // `[parent, new]`: the parent, held already, is skipped.
    let pair = [group.current().clone(), add.clone()];
    let (same, _) = apply_states(group.clone(), &pair).unwrap();
    assert_eq!(same, next);
    // Everything held already.
    assert_eq!(
        apply_states(next.clone(), &pair).map(|_| ()),
        Err(GroupStateError::AlreadyApplied)
    );
}

#[test]
fn an_unauthorised_or_stale_state_refuses_the_whole_control() {
    let w = world();
    let group = create(&w);
    let add = add_carol(&w, &group);
    // Bob, a plain member, removes Alice: signed, but not authorised.
    let members = vec![w.bob.member(Role::Admin)];
    let state = GroupState::new(
        group.group_id(),
        1,
        Some(group.current().hash()),
        "team".to_string(),
        members,
    )
    .unwrap();
    let coup = SignedGroupState::sign(state, &w.bob.signer());
    let refused = apply_states(group.clone(), &[add.clone(), coup.clone()]);
    assert!(matches!(refused, Err(e) if e != GroupStateError::AlreadyApplied));
    // A state of an epoch already passed, built on a parent no longer held.
    let next = applied(&group, &add);
    let later = propose(&next, &w.alice, GroupChange::Retitle("b".to_string()));
    let mut long = applied(&next, &later);
    for i in 0..crate::group::MAX_STATE_HISTORY {
        let t = alloc::format!("t{i}");
        let s = propose(&long, &w.alice, GroupChange::Retitle(t));
        long = applied(&long, &s);
    }
    let stale = propose(&group, &w.alice, GroupChange::Retitle("old".to_string()));
    let refused = apply_states(long.clone(), core::slice::from_ref(&stale));
    assert!(matches!(refused, Err(e) if e != GroupStateError::AlreadyApplied));
}

#[test]
fn of_two_concurrent_changes_the_admins_wins_and_the_other_lost() {
    let w = world();
    let group = create(&w);
    let by_admin = propose(&group, &w.alice, GroupChange::Retitle("admin".to_string()));
    let by_member = propose(&group, &w.bob, GroupChange::Leave);
    // The admin's first: the member's loses, which counts as taken.
    let first = applied(&group, &by_admin);
    let (after, lost) = apply_states(first.clone(), core::slice::from_ref(&by_member)).unwrap();
    assert!(lost);
    assert_eq!(after.current(), &by_admin);
    // The member's first: the admin's wins and replaces it.
    let first = applied(&group, &by_member);
    let (after, lost) = apply_states(first, core::slice::from_ref(&by_admin)).unwrap();
    assert!(!lost);
    assert_eq!(after.current(), &by_admin);
}

#[test]
fn chains_are_taken_for_the_current_state_or_its_parent_from_a_member_that_stays() {
    let w = world();
    let group = create(&w);
    let s0 = group.current().hash().to_bytes();
    let add = add_carol(&w, &group);
    let group = applied(&group, &add);
    let s1 = add.hash().to_bytes();
    let bob_key = w.bob.user_key();
    assert_eq!(
        chain_state(&group, &s1, "alice", &w.bob.address, &bob_key),
        Ok(group.state())
    );
    assert_eq!(
        chain_state(&group, &s0, "alice", &w.bob.address, &bob_key).map(GroupState::epoch),
        Ok(0)
    );
    // Carol was not in the parent: she takes no chain of it.
    assert_eq!(
        chain_state(&group, &s0, "carol", &w.bob.address, &bob_key),
        Err(ChainRefusal::LocalNotMember)
    );
    // Dave is in neither state.
    let dave_key = w.dave.user_key();
    assert_eq!(
        chain_state(&group, &s1, "alice", &w.dave.address, &dave_key),
        Err(ChainRefusal::NotMember)
    );
    // Bob under a key the state does not list.
    assert_eq!(
        chain_state(&group, &s1, "alice", &w.bob.address, &dave_key),
        Err(ChainRefusal::UserKeyMismatch)
    );
    // Bob leaves: his chain of the parent is no longer taken, and the
    // grandparent's is nobody's.
    let leave = propose(&group, &w.bob, GroupChange::Leave);
    let group = applied(&group, &leave);
    assert_eq!(
        chain_state(&group, &s1, "alice", &w.bob.address, &bob_key),
        Err(ChainRefusal::SenderLeft)
    );
    let carol_key = w.carol.user_key();
    assert_eq!(
        chain_state(&group, &s1, "alice", &w.carol.address, &carol_key).map(GroupState::epoch),
        Ok(1)
    );
    let alice_key = w.alice.user_key();
    assert_eq!(
        chain_state(&group, &s0, "alice", &w.alice.address, &alice_key),
        Err(ChainRefusal::NotRecent)
    );
    assert_eq!(
        chain_state(&group, &[0; 32], "alice", &w.alice.address, &alice_key),
        Err(ChainRefusal::NotRecent)
    );
}
