#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]
//! Attacks on the group layer (`docs/PROTOCOL.md` section 16) that an
//! earlier version let through, each shown failing: a plain member's leave
//! undoing an admin's later changes by winning the sibling race, and a
//! joining member accepting a forged first state as the parent it is
//! added to; and the `[parent, new]` tricks a joining member was already
//! refusing, kept as regressions.

use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use tacit::error::GroupStateError;
use tacit::group::{
    Applied, Group, GroupChange, GroupId, GroupMember, GroupState, Role, SignedGroupState,
};
use tacit_testkit::TestUser as User;

/// A group `admin` creates with plain `members`.
fn created(rng: &mut ChaCha20Rng, admin: &User, members: &[&User]) -> Group {
    let mut all: Vec<GroupMember> = members.iter().map(|m| m.member(Role::Member)).collect();
    all.push(admin.member(Role::Admin));
    Group::create(GroupId::generate(rng), "team", all, &admin.signer()).unwrap()
}

/// A plain member signs a leave as a sibling of an admin's change, with
/// as many devices as it takes for its hash to be the lower one (half the
/// tries, on average). The leave must lose, in either order of arrival:
/// otherwise the member rolls back every change built after the fork,
/// here the removal of a third member, who would be back in the group.
#[test]
fn a_plain_members_leave_cannot_undo_an_admins_change() {
    let mut rng = ChaCha20Rng::seed_from_u64(0xa77a);
    let alice = User::new("alice", 1, &mut rng);
    let bob = User::new("bob", 1, &mut rng);
    let carol = User::new("carol", 1, &mut rng);
    let mallory = User::new("mallory", 1, &mut rng);
    let base = created(&mut rng, &alice, &[&bob, &carol, &mallory]);
    // Alice removes Carol; Bob applies it.
    let removal = base
        .propose(&[GroupChange::Remove("carol".into())], &alice.signer())
        .unwrap();
    let mut bob_view = base.clone();
    bob_view.apply(&removal).unwrap();
    // Mallory grinds a leave of the state before the removal.
    let leave = (2..200)
        .map(|device_id| {
            let device = User::with_key("mallory", device_id, mallory.key.clone(), &mut rng);
            base.propose(&[GroupChange::Leave], &device.signer())
                .unwrap()
        })
        .find(|leave| leave.hash() < removal.hash())
        .expect("a lower hash within 200 tries");
    assert!(leave.state().member("carol").is_some());

    // Bob, who holds the removal, keeps it.
    let before = bob_view.to_bytes();
    assert_eq!(
        bob_view.apply(&leave),
        Ok(Applied::Lost {
            winner: removal.hash()
        })
    );
    assert_eq!(bob_view.to_bytes(), before);
    assert!(bob_view.state().member("carol").is_none());
    // A member who got the leave first switches to the removal.
    let mut other = base.clone();
    assert_eq!(other.apply(&leave), Ok(Applied::Advanced));
    assert!(matches!(
        other.apply(&removal),
        Ok(Applied::SwitchedToWinner { .. })
    ));
    assert_eq!(other.history(), bob_view.history());
    // Mallory leaves again on top of the removal, as any loser may.
    let again = bob_view
        .propose(&[GroupChange::Leave], &mallory.signer())
        .unwrap();
    assert_eq!(bob_view.apply(&again), Ok(Applied::Advanced));
    assert_eq!(
        bob_view
            .members()
            .iter()
            .map(|m| m.user_id.as_str())
            .collect::<Vec<_>>(),
        ["alice", "bob"]
    );
}

/// Between two plain members' leaves of the same parent, the lower hash
/// still wins (the order of 16.3 only puts admins first).
#[test]
fn between_two_leaves_the_lower_hash_wins() {
    let mut rng = ChaCha20Rng::seed_from_u64(0x1ea5);
    let alice = User::new("alice", 1, &mut rng);
    let bob = User::new("bob", 1, &mut rng);
    let carol = User::new("carol", 1, &mut rng);
    let base = created(&mut rng, &alice, &[&bob, &carol]);
    let by_bob = base.propose(&[GroupChange::Leave], &bob.signer()).unwrap();
    let by_carol = base
        .propose(&[GroupChange::Leave], &carol.signer())
        .unwrap();
    let (winner, loser) = if by_bob.hash() < by_carol.hash() {
        (&by_bob, &by_carol)
    } else {
        (&by_carol, &by_bob)
    };
    let mut first = base.clone();
    first.apply(winner).unwrap();
    assert_eq!(
        first.apply(loser),
        Ok(Applied::Lost {
            winner: winner.hash()
        })
    );
    let mut second = base.clone();
    second.apply(loser).unwrap();
    assert!(matches!(
        second.apply(winner),
        Ok(Applied::SwitchedToWinner { .. })
    ));
    assert_eq!(first.history(), second.history());
}

/// An admin adds Dave and sends him `[parent, new]` with a parent of epoch
/// 0 that is not a valid first state (signed by a plain member of it). A
/// first state can be checked in full, so joining refuses it; an earlier
/// version accepted it and wrote a record that its own reader refused.
#[test]
fn joining_checks_a_first_state_given_as_parent() {
    let mut rng = ChaCha20Rng::seed_from_u64(0x901e);
    let mallory = User::new("mallory", 1, &mut rng);
    let bob = User::new("bob", 1, &mut rng);
    let dave = User::new("dave", 1, &mut rng);
    let group_id = GroupId::generate(&mut rng);
    let mut members = vec![mallory.member(Role::Admin), bob.member(Role::Member)];
    GroupState::sort_members(&mut members);
    let genesis = GroupState::new(group_id, 0, None, "team".into(), members).unwrap();
    // "Signed by Bob", who is not an admin: not a valid first state.
    let forged = SignedGroupState::sign(genesis, &bob.signer());
    let mut members = vec![
        mallory.member(Role::Admin),
        bob.member(Role::Member),
        dave.member(Role::Member),
    ];
    GroupState::sort_members(&mut members);
    let add = SignedGroupState::sign(
        GroupState::new(group_id, 1, Some(forged.hash()), "team".into(), members).unwrap(),
        &mallory.signer(),
    );
    let join = |states: &[SignedGroupState]| {
        Group::join(
            "dave",
            &dave.key.public_key(),
            states,
            &mallory.address,
            &mallory.device.public_key(),
        )
    };
    assert_eq!(
        join(&[forged.clone(), add.clone()]),
        Err(GroupStateError::Unauthorised)
    );

    // With a valid first state the join succeeds and its record reads back.
    let valid = Group::create(
        group_id,
        "team",
        vec![mallory.member(Role::Admin), bob.member(Role::Member)],
        &mallory.signer(),
    )
    .unwrap();
    let add = valid
        .propose(
            &[GroupChange::Add(dave.member(Role::Member))],
            &mallory.signer(),
        )
        .unwrap();
    let joined = join(&[valid.current().clone(), add]).unwrap();
    assert_eq!(Group::from_bytes(&joined.to_bytes()), Ok(joined));
}

/// The other `[parent, new]` tricks a joining member can check: a parent of
/// another group, a parent at the last epoch, a child signed by a plain
/// member of the parent.
#[test]
fn joining_refuses_the_parents_it_can_judge() {
    let mut rng = ChaCha20Rng::seed_from_u64(0x7a1c);
    let mallory = User::new("mallory", 1, &mut rng);
    let bob = User::new("bob", 1, &mut rng);
    let dave = User::new("dave", 1, &mut rng);
    let sorted = |mut members: Vec<GroupMember>| {
        GroupState::sort_members(&mut members);
        members
    };
    let before = sorted(vec![mallory.member(Role::Admin), bob.member(Role::Member)]);
    let after = sorted(vec![
        mallory.member(Role::Admin),
        bob.member(Role::Member),
        dave.member(Role::Member),
    ]);
    let signed = |group: GroupId, epoch, parent, members: &[GroupMember], by: &User| {
        SignedGroupState::sign(
            GroupState::new(group, epoch, parent, "t".into(), members.to_vec()).unwrap(),
            &by.signer(),
        )
    };
    let join = |states: &[SignedGroupState], from: &User| {
        Group::join(
            "dave",
            &dave.key.public_key(),
            states,
            &from.address,
            &from.device.public_key(),
        )
    };
    let (g, h) = (GroupId::generate(&mut rng), GroupId::generate(&mut rng));
    let parent = signed(g, 0, None, &before, &mallory);
    // The child names the parent's hash but another group id.
    let other = signed(h, 1, Some(parent.hash()), &after, &mallory);
    assert_eq!(
        join(&[parent.clone(), other], &mallory),
        Err(GroupStateError::WrongGroup)
    );
    // A parent at the last epoch has no child.
    let last = signed(g, u64::MAX, Some(parent.hash()), &before, &mallory);
    let past = signed(g, u64::MAX, Some(last.hash()), &after, &mallory);
    assert_eq!(
        join(&[last, past], &mallory),
        Err(GroupStateError::EpochExhausted)
    );
    // Bob, a plain member of the parent, adds Dave.
    let by_bob = signed(g, 1, Some(parent.hash()), &after, &bob);
    assert_eq!(
        join(&[parent, by_bob], &bob),
        Err(GroupStateError::Unauthorised)
    );
}
