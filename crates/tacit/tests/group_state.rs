#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]
//! Signed group state (`docs/PROTOCOL.md` 16.2 to 16.4): creation and every
//! change, every refusal (each leaving the group byte for byte unchanged),
//! joining, the lower-StateHash rule for concurrent changes, the record and
//! the control codec.

use proptest::prelude::*;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use tacit::error::{GroupStateError, StateError, WireError};
use tacit::group::{
    Applied, Group, GroupChange, GroupControl, GroupId, GroupMember, GroupState, OutboundChain,
    Role, SessionControlBody, SignedGroupState, StateHash, MAX_GROUP_MEMBERS, MAX_GROUP_STATE_LEN,
    MAX_STATE_HISTORY,
};
use tacit::identity::{DeviceCertificate, UserKeyPair};
use tacit::Address;
use tacit_testkit::TestUser as User;

struct World {
    rng: ChaCha20Rng,
    alice: User,
    bob: User,
    carol: User,
    dave: User,
}

fn world() -> World {
    let mut rng = ChaCha20Rng::seed_from_u64(0x6770);
    let alice = User::new("alice", 1, &mut rng);
    let bob = User::new("bob", 1, &mut rng);
    let carol = User::new("carol", 2, &mut rng);
    let dave = User::new("dave", 1, &mut rng);
    World {
        rng,
        alice,
        bob,
        carol,
        dave,
    }
}

/// Alice (admin) creates a group with Bob (member).
fn create(w: &mut World) -> Group {
    Group::create(
        GroupId::generate(&mut w.rng),
        "team",
        vec![w.bob.member(Role::Member), w.alice.member(Role::Admin)],
        &w.alice.signer(),
    )
    .unwrap()
}

/// Applies a state that must be refused, and checks the group is
/// unchanged byte for byte.
fn refused(group: &mut Group, state: &SignedGroupState) -> GroupStateError {
    let before = group.to_bytes();
    let error = group.apply(state).expect_err("the state must be refused");
    assert_eq!(
        group.to_bytes(),
        before,
        "a refused state changed the group"
    );
    error
}

fn propose(group: &Group, user: &User, changes: &[GroupChange]) -> SignedGroupState {
    group.propose(changes, &user.signer()).unwrap()
}

/// The state after `changes`, signed by `user` without any check.
fn forge(
    group: &Group,
    user: &User,
    f: impl FnOnce(&GroupState) -> GroupState,
) -> SignedGroupState {
    SignedGroupState::sign(f(group.state()), &user.signer())
}

fn child_of(group: &Group, members: Vec<GroupMember>, title: &str) -> GroupState {
    GroupState::new(
        group.group_id(),
        group.epoch() + 1,
        Some(group.current().hash()),
        title.into(),
        members,
    )
    .unwrap()
}

/// The group of [`create`] after Alice added Carol, its first state and
/// the change.
fn with_carol_added(w: &mut World) -> (Group, SignedGroupState, SignedGroupState) {
    let mut group = create(w);
    let genesis = group.current().clone();
    let add = propose(
        &group,
        &w.alice,
        &[GroupChange::Add(w.carol.member(Role::Member))],
    );
    group.apply(&add).unwrap();
    (group, genesis, add)
}

#[test]
fn create_then_every_change_is_applied_by_every_member() {
    let mut w = world();
    let mut alice = create(&mut w);
    assert_eq!(alice.epoch(), 0);
    assert_eq!(alice.title(), "team");
    assert_eq!(alice.local_user(), "alice");
    assert_eq!(
        alice
            .members()
            .iter()
            .map(|m| m.user_id.as_str())
            .collect::<Vec<_>>(),
        ["alice", "bob"]
    );
    assert_eq!(alice.role("alice"), Some(Role::Admin));
    assert_eq!(alice.role("bob"), Some(Role::Member));
    assert_eq!(alice.current().state().parent(), None);
    // Bob joins from the first state alone.
    let mut bob = w.bob.join(&[alice.current().clone()]).unwrap();
    assert_eq!(bob.current(), alice.current());
    assert!(bob.is_member());

    // Add Carol; she joins from [parent, new].
    let add = propose(
        &alice,
        &w.alice,
        &[GroupChange::Add(w.carol.member(Role::Member))],
    );
    let parent = alice.current().clone();
    assert_eq!(alice.epoch(), 0, "propose does not change the group");
    assert_eq!(alice.apply(&add), Ok(Applied::Advanced));
    assert_eq!(bob.apply(&add), Ok(Applied::Advanced));
    let mut carol = w.carol.join(&[parent, add.clone()]).unwrap();
    assert_eq!(alice.epoch(), 1);
    assert_eq!(add.state().parent(), Some(alice.history()[0].hash()));
    assert_eq!(alice.recipients(), ["alice", "bob", "carol"]);

    let changes = [
        (&w.alice, vec![GroupChange::Retitle("the team ✓".into())]),
        (
            &w.alice,
            vec![GroupChange::SetRole {
                user_id: "bob".into(),
                role: Role::Admin,
            }],
        ),
        (
            &w.bob,
            vec![GroupChange::UpdateUserKey {
                user_id: "carol".into(),
                user_key: UserKeyPair::generate(&mut w.rng).public_key(),
            }],
        ),
        (&w.bob, vec![GroupChange::Remove("carol".into())]),
        (&w.alice, vec![GroupChange::Leave]),
    ];
    for (signer, change) in changes {
        let next = propose(&alice, signer, &change);
        for g in [&mut alice, &mut bob] {
            assert_eq!(g.apply(&next), Ok(Applied::Advanced), "{change:?}");
        }
        if carol.is_member() {
            assert_eq!(carol.apply(&next), Ok(Applied::Advanced));
        }
        assert_eq!(alice.current(), bob.current());
    }
    assert_eq!(bob.title(), "the team ✓");
    assert_eq!(bob.epoch(), 6);
    assert_eq!(
        bob.members(),
        [w.bob.member(Role::Admin)],
        "Carol removed, Alice left"
    );
    assert!(!carol.is_member(), "Carol learns she was removed");
    assert!(!alice.is_member(), "Alice left");
    // Carol's key update is in the state she was removed from.
    assert_ne!(
        carol.history()[carol.history().len() - 2]
            .state()
            .member("carol")
            .unwrap()
            .user_key,
        w.carol.key.public_key()
    );
}

#[test]
fn several_changes_make_one_state() {
    let mut w = world();
    let mut alice = create(&mut w);
    let next = propose(
        &alice,
        &w.alice,
        &[
            GroupChange::Add(w.dave.member(Role::Admin)),
            GroupChange::Add(w.carol.member(Role::Member)),
            GroupChange::Remove("bob".into()),
            GroupChange::Retitle("new".into()),
        ],
    );
    alice.apply(&next).unwrap();
    assert_eq!(alice.epoch(), 1);
    assert_eq!(
        alice
            .members()
            .iter()
            .map(|m| m.user_id.as_str())
            .collect::<Vec<_>>(),
        ["alice", "carol", "dave"]
    );
    assert_eq!(alice.title(), "new");
}

#[test]
fn refused_proposals() {
    let mut w = world();
    let alice = create(&mut w);
    let bob_signer = w.bob.signer();
    let carol = w.carol.member(Role::Member);
    let cases: Vec<(&User, Vec<GroupChange>, GroupStateError)> = vec![
        // A plain member may only leave.
        (
            &w.bob,
            vec![GroupChange::Add(carol.clone())],
            GroupStateError::Unauthorised,
        ),
        (
            &w.bob,
            vec![GroupChange::Retitle("x".into())],
            GroupStateError::Unauthorised,
        ),
        (
            &w.bob,
            vec![GroupChange::SetRole {
                user_id: "bob".into(),
                role: Role::Admin,
            }],
            GroupStateError::Unauthorised,
        ),
        // The last admin may not leave, nor demote or remove itself.
        (&w.alice, vec![GroupChange::Leave], GroupStateError::NoAdmin),
        (
            &w.alice,
            vec![GroupChange::Remove("alice".into())],
            GroupStateError::NoAdmin,
        ),
        (
            &w.alice,
            vec![GroupChange::SetRole {
                user_id: "alice".into(),
                role: Role::Member,
            }],
            GroupStateError::NoAdmin,
        ),
        // A non-member may sign nothing.
        (
            &w.carol,
            vec![GroupChange::Leave],
            GroupStateError::UnknownMember("carol".into()),
        ),
        (
            &w.carol,
            vec![GroupChange::Retitle("x".into())],
            GroupStateError::SignerNotMember("carol".into()),
        ),
        (
            &w.alice,
            vec![GroupChange::Add(w.bob.member(Role::Admin))],
            GroupStateError::AlreadyMember("bob".into()),
        ),
        (
            &w.alice,
            vec![GroupChange::Remove("dave".into())],
            GroupStateError::UnknownMember("dave".into()),
        ),
        (
            &w.alice,
            vec![GroupChange::Retitle("a".repeat(129))],
            GroupStateError::TitleTooLong(129),
        ),
        // 43 three-byte characters: 129 bytes.
        (
            &w.alice,
            vec![GroupChange::Retitle("✓".repeat(43))],
            GroupStateError::TitleTooLong(129),
        ),
        (
            &w.alice,
            vec![GroupChange::Retitle("a\u{7}b".into())],
            GroupStateError::TitleCharacters,
        ),
        (
            &w.alice,
            vec![GroupChange::Retitle("a\u{85}b".into())],
            GroupStateError::TitleCharacters,
        ),
        (
            &w.alice,
            vec![GroupChange::Retitle("team".into())],
            GroupStateError::NoChange,
        ),
        (&w.alice, vec![], GroupStateError::NoChange),
    ];
    for (user, changes, expected) in cases {
        assert_eq!(
            alice.propose(&changes, &user.signer()),
            Err(expected),
            "{changes:?} by {}",
            user.id()
        );
    }
    // A title of exactly 128 bytes is fine, and Bob may leave.
    assert!(alice
        .propose(
            &[GroupChange::Retitle("✓".repeat(42) + "ab")],
            &w.alice.signer()
        )
        .is_ok());
    assert!(alice.propose(&[GroupChange::Leave], &bob_signer).is_ok());
}

#[test]
fn refused_states_change_nothing() {
    let mut w = world();
    let mut group = create(&mut w);
    let mallory = UserKeyPair::generate(&mut w.rng);
    let genesis = group.current().clone();

    // A plain member's change beyond leaving, signed and sent anyway.
    let carol = w.carol.member(Role::Member);
    let mut with_carol = group.members().to_vec();
    with_carol.push(carol.clone());
    GroupState::sort_members(&mut with_carol);
    let by_bob = forge(&group, &w.bob, |_| {
        child_of(&group, with_carol.clone(), "team")
    });
    assert_eq!(refused(&mut group, &by_bob), GroupStateError::Unauthorised);
    // Bob leaving and retitling at once.
    let leave_and_retitle = forge(&group, &w.bob, |_| {
        child_of(&group, vec![w.alice.member(Role::Admin)], "mine")
    });
    assert_eq!(
        refused(&mut group, &leave_and_retitle),
        GroupStateError::Unauthorised
    );
    // Bob removing Alice (and making himself admin) instead of leaving.
    let bob_removes_alice = forge(&group, &w.bob, |_| {
        child_of(&group, vec![w.bob.member(Role::Admin)], "team")
    });
    assert_eq!(
        refused(&mut group, &bob_removes_alice),
        GroupStateError::Unauthorised
    );

    // A non-member's state.
    let by_carol = forge(&group, &w.carol, |_| {
        child_of(&group, with_carol.clone(), "team")
    });
    assert_eq!(
        refused(&mut group, &by_carol),
        GroupStateError::SignerNotMember("carol".into())
    );

    // A forged signature: Alice's real change with one bit flipped.
    let real = propose(&group, &w.alice, &[GroupChange::Add(carol.clone())]);
    let mut bytes = real.to_wire();
    *bytes.last_mut().unwrap() ^= 1;
    let flipped = SignedGroupState::from_wire(&bytes).unwrap();
    assert_eq!(
        refused(&mut group, &flipped),
        GroupStateError::InvalidSignature
    );

    // Alice's device certified by another user key.
    let mut impostor = User::with_key("alice", 1, mallory.clone(), &mut w.rng);
    impostor.device = w.alice.device.clone();
    impostor.certificate =
        DeviceCertificate::issue(&mallory, &impostor.address, &w.alice.device.public_key());
    let by_impostor = forge(&group, &impostor, |_| {
        child_of(&group, with_carol.clone(), "team")
    });
    assert_eq!(
        refused(&mut group, &by_impostor),
        GroupStateError::InvalidCertificate
    );
    // Another device of Alice's, certified for device 1.
    let mut other_device = User::new("alice", 2, &mut w.rng);
    other_device.certificate = w.alice.certificate;
    let by_other = forge(&group, &other_device, |_| {
        child_of(&group, with_carol.clone(), "team")
    });
    assert_eq!(
        refused(&mut group, &by_other),
        GroupStateError::InvalidCertificate
    );

    // Epoch skipped: parent is the current state, epoch is 2.
    let skipped = forge(&group, &w.alice, |s| {
        GroupState::new(
            s.group_id(),
            2,
            Some(group.current().hash()),
            "x".into(),
            s.members().to_vec(),
        )
        .unwrap()
    });
    assert_eq!(
        refused(&mut group, &skipped),
        GroupStateError::WrongEpoch {
            expected: 1,
            actual: 2
        }
    );
    // A parent no one knows.
    let orphan = forge(&group, &w.alice, |s| {
        GroupState::new(
            s.group_id(),
            1,
            Some(StateHash::from_bytes([7; 32])),
            "x".into(),
            s.members().to_vec(),
        )
        .unwrap()
    });
    assert_eq!(
        refused(&mut group, &orphan),
        GroupStateError::UnknownParent(1)
    );
    // Another group's state.
    let other = Group::create(
        GroupId::from_bytes([1; 32]),
        "other",
        vec![w.alice.member(Role::Admin)],
        &w.alice.signer(),
    )
    .unwrap();
    assert_eq!(
        refused(&mut group, other.current()),
        GroupStateError::WrongGroup
    );
    // Another group's state naming this group's current state as parent.
    let grafted = forge(&group, &w.alice, |s| {
        GroupState::new(
            GroupId::from_bytes([1; 32]),
            1,
            Some(group.current().hash()),
            "x".into(),
            s.members().to_vec(),
        )
        .unwrap()
    });
    assert_eq!(refused(&mut group, &grafted), GroupStateError::WrongGroup);

    // Replays: the same state twice.
    group.apply(&real).unwrap();
    assert_eq!(refused(&mut group, &real), GroupStateError::AlreadyApplied);
    assert_eq!(
        refused(&mut group, &genesis),
        GroupStateError::AlreadyApplied
    );
}

#[test]
fn states_older_than_the_history_are_stale() {
    let mut w = world();
    let mut group = create(&mut w);
    let mut at_epoch_1 = None;
    for i in 0..10 {
        let next = propose(&group, &w.alice, &[GroupChange::Retitle(format!("t{i}"))]);
        group.apply(&next).unwrap();
        if group.epoch() == 1 {
            at_epoch_1 = Some(group.clone());
        }
    }
    assert_eq!(group.history().len(), MAX_STATE_HISTORY);
    assert_eq!(group.history()[0].state().epoch(), 3);
    // A sibling of epoch 2 (child of epoch 1, which is no longer held).
    let at_epoch_1 = at_epoch_1.unwrap();
    let old_sibling = propose(
        &at_epoch_1,
        &w.alice,
        &[GroupChange::Retitle("late".into())],
    );
    assert_eq!(
        refused(&mut group, &old_sibling),
        GroupStateError::Stale {
            epoch: 2,
            oldest: 3
        }
    );
    // The first state, replayed after it left the history: stale too.
    let genesis = at_epoch_1.history()[0].clone();
    assert_eq!(
        refused(&mut group, &genesis),
        GroupStateError::Stale {
            epoch: 0,
            oldest: 3
        }
    );
}

#[test]
fn decoding_refuses_invalid_states() {
    let mut w = world();
    let group = create(&mut w);
    let id = group.group_id();
    let a = w.alice.member(Role::Admin);
    let b = w.bob.member(Role::Member);
    let new = |members: Vec<GroupMember>, title: &str| {
        GroupState::new(id, 0, None, title.into(), members)
    };
    assert_eq!(
        new(vec![b.clone(), a.clone()], "t"),
        Err(GroupStateError::MembersNotAscending)
    );
    assert_eq!(
        new(vec![a.clone(), a.clone()], "t"),
        Err(GroupStateError::DuplicateMember("alice".into()))
    );
    assert_eq!(new(vec![], "t"), Err(GroupStateError::NoMembers));
    assert_eq!(new(vec![b.clone()], "t"), Err(GroupStateError::NoAdmin));
    assert_eq!(
        new(vec![a.clone()], "a\nb"),
        Err(GroupStateError::TitleCharacters)
    );
    let mut bad_id = a.clone();
    bad_id.user_id = "x\u{0}".into();
    assert_eq!(new(vec![bad_id], "t"), Err(GroupStateError::InvalidUserId));
    assert_eq!(
        GroupState::new(id, 1, None, "t".into(), vec![a.clone()]),
        Err(WireError::InvalidValue("parent").into())
    );
    assert_eq!(
        GroupState::new(
            id,
            0,
            Some(StateHash::from_bytes([0; 32])),
            "t".into(),
            vec![a.clone()]
        ),
        Err(WireError::InvalidValue("parent").into())
    );

    // 1001 members: refused; 1000 with short ids: fine; 1000 with 64-byte
    // ids: too large to send.
    let many = |n: usize, width: usize| {
        let mut m: Vec<GroupMember> = (0..n)
            .map(|i| GroupMember::new(format!("{i:0width$}"), w.bob.key.public_key(), Role::Admin))
            .collect();
        GroupState::sort_members(&mut m);
        m
    };
    assert_eq!(
        new(many(MAX_GROUP_MEMBERS + 1, 8), "t"),
        Err(GroupStateError::TooManyMembers(MAX_GROUP_MEMBERS + 1))
    );
    let full = new(many(MAX_GROUP_MEMBERS, 8), "t").unwrap();
    assert_eq!(GroupState::from_wire(&full.to_wire()).unwrap(), full);
    assert!(matches!(
        new(many(MAX_GROUP_MEMBERS, 64), "t"),
        Err(GroupStateError::StateTooLarge {
            max: MAX_GROUP_STATE_LEN,
            ..
        })
    ));

    // Wire forms: hand-encoded states that break each rule.
    let key = w.alice.key.public_key().to_bytes();
    let member = |id: &str, role: u32| pb::member(id, &key, role);
    let state =
        |members: &[Vec<u8>], title: &str| pb::state(1, &id.to_bytes(), 0, &[], title, members);
    let ok = state(&[member("alice", 1), member("bob", 2)], "t");
    let mut small_order = [0u8; 32];
    small_order[0] = 1;
    assert!(GroupState::from_wire(&ok).is_ok());
    let cases: Vec<(Vec<u8>, GroupStateError)> = vec![
        (
            state(&[member("bob", 2), member("alice", 1)], "t"),
            GroupStateError::MembersNotAscending,
        ),
        (
            state(&[member("alice", 1), member("alice", 2)], "t"),
            GroupStateError::DuplicateMember("alice".into()),
        ),
        (state(&[member("bob", 2)], "t"), GroupStateError::NoAdmin),
        (state(&[], "t"), GroupStateError::NoMembers),
        (
            state(&[member("alice", 3)], "t"),
            WireError::InvalidValue("role").into(),
        ),
        (
            state(&[member("alice", 0)], "t"),
            WireError::InvalidValue("role").into(),
        ),
        (
            state(&[member("alice", 1)], &"a".repeat(129)),
            GroupStateError::TitleTooLong(129),
        ),
        (
            state(&[member("alice", 1)], "a\u{9f}"),
            GroupStateError::TitleCharacters,
        ),
        (
            state(&[member(&"a".repeat(65), 1)], "t"),
            GroupStateError::InvalidUserId,
        ),
        (state(&[member("", 1)], "t"), GroupStateError::InvalidUserId),
        (
            pb::state(2, &id.to_bytes(), 0, &[], "t", &[member("alice", 1)]),
            WireError::UnknownVersion(2).into(),
        ),
        (
            pb::state(1, &[1; 31], 0, &[], "t", &[member("alice", 1)]),
            WireError::InvalidLength {
                field: "group_id",
                expected: 32,
                actual: 31,
            }
            .into(),
        ),
        (
            pb::state(1, &id.to_bytes(), 1, &[], "t", &[member("alice", 1)]),
            WireError::MissingField("parent").into(),
        ),
        (
            pb::state(1, &id.to_bytes(), 0, &[3; 32], "t", &[member("alice", 1)]),
            WireError::InvalidValue("parent").into(),
        ),
        (
            // The Edwards identity point: of small order.
            state(&[pb::member("alice", &small_order, 1)], "t"),
            GroupStateError::Wire(WireError::InvalidKey {
                field: "user_key",
                error: tacit::KeyError::WeakIdentityKey,
            }),
        ),
        // Non-canonical: a trailing unknown field, a default value written
        // out (epoch 0), fields out of order.
        (
            [ok.clone(), vec![0x38, 1]].concat(),
            WireError::NonCanonical.into(),
        ),
        (
            [&ok[..2], &[0x18, 0][..], &ok[2..]].concat(),
            WireError::NonCanonical.into(),
        ),
        (
            [&ok[2..], &ok[..2]].concat(),
            WireError::NonCanonical.into(),
        ),
        (ok[..ok.len() - 1].to_vec(), WireError::Malformed.into()),
        (
            vec![0; MAX_GROUP_STATE_LEN + 1],
            WireError::Oversize {
                len: MAX_GROUP_STATE_LEN + 1,
                max: MAX_GROUP_STATE_LEN,
            }
            .into(),
        ),
    ];
    for (bytes, expected) in cases {
        assert_eq!(
            GroupState::from_wire(&bytes),
            Err(expected.clone()),
            "{expected}"
        );
    }
}

#[test]
fn decoding_refuses_invalid_signed_states() {
    let mut w = world();
    let group = create(&mut w);
    let wire = group.current().to_wire();
    assert_eq!(
        SignedGroupState::from_wire(&wire).unwrap(),
        *group.current()
    );
    let s = group.current();
    let signed = |state: &[u8], user: &str, device: u32, ik: &[u8], cert: &[u8], sig: &[u8]| {
        pb::signed(1, state, user, device, ik, cert, sig)
    };
    let state = s.state().to_wire();
    let ik = s.signer_identity().to_bytes();
    let cert = s.certificate().to_bytes();
    let sig = s.signature().to_bytes();
    assert_eq!(signed(&state, "alice", 1, &ik, &cert, &sig), wire);
    let cases: Vec<(Vec<u8>, GroupStateError)> = vec![
        (
            pb::signed(2, &state, "alice", 1, &ik, &cert, &sig),
            WireError::UnknownVersion(2).into(),
        ),
        (
            signed(&[], "alice", 1, &ik, &cert, &sig),
            WireError::MissingField("state").into(),
        ),
        (
            signed(&state, "", 1, &ik, &cert, &sig),
            WireError::MissingField("signer_user_id").into(),
        ),
        (
            signed(&state, "alice", 0, &ik, &cert, &sig),
            WireError::InvalidValue("signer_device_id").into(),
        ),
        (
            signed(&state, "al\u{1b}ce", 1, &ik, &cert, &sig),
            WireError::InvalidValue("signer_user_id").into(),
        ),
        (
            signed(&state, "alice", 1, &ik[..31], &cert, &sig),
            WireError::InvalidLength {
                field: "signer_identity_key",
                expected: 32,
                actual: 31,
            }
            .into(),
        ),
        (
            signed(&state, "alice", 1, &ik, &cert[..63], &sig),
            WireError::InvalidLength {
                field: "signer_certificate",
                expected: 64,
                actual: 63,
            }
            .into(),
        ),
        (
            signed(&state, "alice", 1, &ik, &cert, &[]),
            WireError::MissingField("signature").into(),
        ),
        // The inner state is checked: here with a trailing unknown field.
        (
            signed(
                &[state.clone(), vec![0x38, 1]].concat(),
                "alice",
                1,
                &ik,
                &cert,
                &sig,
            ),
            WireError::NonCanonical.into(),
        ),
        (
            [wire.clone(), vec![0x40, 1]].concat(),
            WireError::NonCanonical.into(),
        ),
    ];
    for (bytes, expected) in cases {
        assert_eq!(
            SignedGroupState::from_wire(&bytes),
            Err(expected.clone()),
            "{expected}"
        );
    }
    // The hash is over the whole signed state.
    let mut other = group.clone();
    let next = propose(&other, &w.alice, &[GroupChange::Retitle("x".into())]);
    other.apply(&next).unwrap();
    assert_ne!(next.hash(), s.hash());
}

#[test]
fn joining() {
    let mut w = world();
    let (alice, genesis, add) = with_carol_added(&mut w);
    let carol_key = w.carol.key.public_key();
    let join = |states: &[SignedGroupState], user: &str| {
        Group::join(
            user,
            &carol_key,
            states,
            &w.alice.address,
            &w.alice.device.public_key(),
        )
    };
    let carol = join(&[genesis.clone(), add.clone()], "carol").unwrap();
    assert_eq!(carol.current(), alice.current());
    assert_eq!(Group::from_bytes(&carol.to_bytes()).unwrap(), carol);
    // Each case: user, its key, the sender's address and identity.
    let both = [genesis.clone(), add.clone()];
    let (alice_ik, bob_ik) = (w.alice.device.public_key(), w.bob.device.public_key());
    let bob_key = w.bob.key.public_key();
    let cases = [
        // Bob is in the parent: this is no join for him.
        (
            "bob",
            &bob_key,
            &w.alice.address,
            &alice_ik,
            GroupStateError::AlreadyInParent,
        ),
        // Listed under another key.
        (
            "carol",
            &bob_key,
            &w.alice.address,
            &alice_ik,
            GroupStateError::NotInNewState,
        ),
        // Sent by another device than the signer.
        (
            "carol",
            &carol_key,
            &w.bob.address,
            &alice_ik,
            GroupStateError::NotFromSigner,
        ),
        (
            "carol",
            &carol_key,
            &w.alice.address,
            &bob_ik,
            GroupStateError::NotFromSigner,
        ),
    ];
    for (user, key, sender, identity, expected) in cases {
        assert_eq!(
            Group::join(user, key, &both, sender, identity),
            Err(expected)
        );
    }
    // Carol is not in the first state.
    assert_eq!(
        join(std::slice::from_ref(&genesis), "carol"),
        Err(GroupStateError::NotInNewState)
    );
    // The parent must be the new state's parent, and the transition valid.
    let other = Group::create(
        alice.group_id(),
        "team",
        vec![w.alice.member(Role::Admin), w.bob.member(Role::Member)],
        &w.alice.signer(),
    )
    .unwrap();
    let other_genesis = other.current().clone();
    // Same content and signer, so the same bytes: Ed25519 is deterministic.
    assert_eq!(other_genesis, genesis);
    let retitled = Group::create(
        alice.group_id(),
        "another",
        vec![w.alice.member(Role::Admin), w.bob.member(Role::Member)],
        &w.alice.signer(),
    )
    .unwrap();
    assert_eq!(
        join(&[retitled.current().clone(), add.clone()], "carol"),
        Err(GroupStateError::WrongParent)
    );
    assert_eq!(join(&[], "carol"), Err(GroupStateError::StateCount(0)));
    assert_eq!(
        join(&[genesis.clone(), add.clone(), add.clone()], "carol"),
        Err(GroupStateError::StateCount(3))
    );
    // A first state signed by a plain member.
    let by_bob = SignedGroupState::sign(genesis.state().clone(), &w.bob.signer());
    assert_eq!(w.bob.join(&[by_bob]), Err(GroupStateError::Unauthorised));
}

#[test]
fn concurrent_changes_lower_hash_wins() {
    let mut w = world();
    let mut base = create(&mut w);
    let promote = propose(
        &base,
        &w.alice,
        &[GroupChange::Add(w.dave.member(Role::Admin))],
    );
    base.apply(&promote).unwrap();
    // Alice and Dave change the same state at once.
    let by_alice = propose(&base, &w.alice, &[GroupChange::Retitle("alice's".into())]);
    let by_dave = propose(
        &base,
        &w.dave,
        &[GroupChange::Add(w.carol.member(Role::Member))],
    );
    let (winner, loser) = if by_alice.hash() < by_dave.hash() {
        (&by_alice, &by_dave)
    } else {
        (&by_dave, &by_alice)
    };
    // A member who saw the winner first ignores the loser.
    let mut first = base.clone();
    assert_eq!(first.apply(winner), Ok(Applied::Advanced));
    let before = first.to_bytes();
    assert_eq!(
        first.apply(loser),
        Ok(Applied::Lost {
            winner: winner.hash()
        })
    );
    assert_eq!(first.to_bytes(), before, "a losing sibling changes nothing");
    // A member who saw the loser first, and a state built on it, switches.
    let mut second = base.clone();
    second.apply(loser).unwrap();
    let on_loser = propose(&second, &w.alice, &[GroupChange::Retitle("on top".into())]);
    second.apply(&on_loser).unwrap();
    match second.apply(winner) {
        Ok(Applied::SwitchedToWinner {
            dropped,
            own_change_lost,
        }) => {
            assert_eq!(dropped, [loser.clone(), on_loser.clone()]);
            // Alice signed `on_loser` in any case.
            assert!(own_change_lost);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(second.current(), first.current());
    assert_eq!(second.history(), first.history());
    // The dropped descendant is now of an unknown branch.
    assert_eq!(
        refused(&mut second, &on_loser),
        GroupStateError::UnknownParent(3)
    );
    // The loser's author learns it lost and proposes again on the winner.
    let loser_author = if loser.signer().user_id() == "dave" {
        &w.dave
    } else {
        &w.alice
    };
    let mut author = base.clone();
    author.apply(loser).unwrap();
    let Ok(Applied::SwitchedToWinner {
        own_change_lost, ..
    }) = author.apply(winner)
    else {
        panic!("switch");
    };
    let again = propose(
        &author,
        loser_author,
        &[GroupChange::Retitle("again".into())],
    );
    assert_eq!(author.apply(&again), Ok(Applied::Advanced));
    // own_change_lost is about the local user (Alice's record).
    assert_eq!(own_change_lost, loser.signer().user_id() == "alice");
}

#[test]
fn records_round_trip_and_refuse_damage() {
    let mut w = world();
    let mut group = create(&mut w);
    for i in 0..3 {
        let next = propose(&group, &w.alice, &[GroupChange::Retitle(format!("t{i}"))]);
        group.apply(&next).unwrap();
    }
    let bytes = group.to_bytes();
    assert_eq!(bytes[0], 1, "record version 1");
    assert_eq!(Group::from_bytes(&bytes).unwrap(), group);
    assert_eq!(Group::from_bytes(&bytes).unwrap().to_bytes(), bytes);
    let corrupt = GroupStateError::Record(StateError::Corrupt);
    assert_eq!(
        Group::from_bytes(&[]),
        Err(GroupStateError::Record(StateError::Empty))
    );
    let mut v2 = bytes.clone();
    v2[0] = 2;
    assert_eq!(
        Group::from_bytes(&v2),
        Err(GroupStateError::Record(StateError::UnknownVersion(2)))
    );
    assert_eq!(
        Group::from_bytes(&bytes[..bytes.len() - 1]),
        Err(corrupt.clone())
    );
    assert_eq!(
        Group::from_bytes(&[&bytes[..], &[0]].concat()),
        Err(corrupt.clone())
    );
    // A bit flipped in the last signature.
    let mut flipped = bytes.clone();
    *flipped.last_mut().unwrap() ^= 1;
    assert_eq!(Group::from_bytes(&flipped), Err(corrupt.clone()));
    // The states out of order: the second and third swapped would not
    // link; here the history is cut to skip one state.
    let wires: Vec<Vec<u8>> = group.history().iter().map(|s| s.to_wire()).collect();
    let record = |states: &[&Vec<u8>]| {
        let mut out = vec![1, 5];
        out.extend_from_slice(b"alice");
        out.push(states.len() as u8);
        for s in states {
            let len = s.len();
            assert!(len < 1 << 14);
            if len < 0x80 {
                out.push(len as u8);
            } else {
                out.extend_from_slice(&[(len & 0x7f) as u8 | 0x80, (len >> 7) as u8]);
            }
            out.extend_from_slice(s);
        }
        out
    };
    assert_eq!(record(&wires.iter().collect::<Vec<_>>()), bytes);
    assert_eq!(
        Group::from_bytes(&record(&[&wires[0], &wires[2]])),
        Err(corrupt.clone())
    );
    assert_eq!(Group::from_bytes(&record(&[])), Err(corrupt.clone()));
    assert!(Group::from_bytes(&record(&[&wires[2], &wires[3]])).is_ok());
}

#[test]
fn control_messages() {
    let mut w = world();
    let (_, genesis, add) = with_carol_added(&mut w);
    let chain = OutboundChain::new(
        add.state().group_id().to_bytes(),
        add.hash().to_bytes(),
        &Address::new("alice", 1).unwrap(),
        &mut w.rng,
    )
    .distribution();
    for control in [
        GroupControl::default(),
        GroupControl {
            states: vec![add.clone()],
            chain: None,
        },
        GroupControl {
            states: vec![genesis.clone(), add.clone()],
            chain: Some(chain.clone()),
        },
        GroupControl {
            states: vec![],
            chain: Some(chain),
        },
    ] {
        let wire = control.to_wire();
        assert_eq!(GroupControl::from_wire(&wire).unwrap(), control);
        let body = SessionControlBody { group: control };
        assert_eq!(
            SessionControlBody::from_wire(&body.to_wire()).unwrap(),
            body
        );
    }
    // A chain field that is not a distribution: refused, typed.
    assert!(matches!(
        GroupControl::from_wire(&[0x08, 0x01, 0x1a, 0x02, 0x08, 0x01]),
        Err(GroupStateError::Wire(_))
    ));
    let three = pb::control(
        1,
        &[
            &genesis.to_wire()[..],
            &add.to_wire()[..],
            &add.to_wire()[..],
        ],
    );
    assert_eq!(
        GroupControl::from_wire(&three),
        Err(GroupStateError::StateCount(3))
    );
    let swapped = pb::control(1, &[&add.to_wire()[..], &genesis.to_wire()[..]]);
    assert_eq!(
        GroupControl::from_wire(&swapped),
        Err(GroupStateError::WrongParent)
    );
    let v2 = pb::control(2, &[&add.to_wire()[..]]);
    assert_eq!(
        GroupControl::from_wire(&v2),
        Err(WireError::UnknownVersion(2).into())
    );
    let bad_state = pb::control(1, &[&add.to_wire()[1..]]);
    assert!(matches!(
        GroupControl::from_wire(&bad_state),
        Err(GroupStateError::Wire(_))
    ));
    // SessionControlBody without a group control.
    assert_eq!(
        SessionControlBody::from_wire(&[0x08, 1]),
        Err(WireError::MissingField("group").into())
    );
    assert_eq!(
        SessionControlBody::from_wire(&[0x08, 2]),
        Err(WireError::UnknownVersion(2).into())
    );
    assert_eq!(
        SessionControlBody::from_wire(&[0x08, 1, 0x12, 0]),
        Err(WireError::UnknownVersion(0).into())
    );
}

/// Delivers `states` in `order`, retrying the ones whose parent is not
/// known yet until nothing more applies; returns the group.
fn deliver(mut group: Group, states: &[SignedGroupState], order: &[usize]) -> Group {
    let mut pending: Vec<usize> = order.to_vec();
    loop {
        let before = pending.len();
        pending.retain(|&i| match group.apply(&states[i]) {
            Err(GroupStateError::UnknownParent(_)) => true,
            Ok(_) | Err(GroupStateError::AlreadyApplied) => false,
            Err(e) => panic!("{e}"),
        });
        if pending.len() == before {
            return group;
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Members who see the same states, in any order, hold the same state.
    #[test]
    fn concurrent_changes_converge(
        seed in any::<u64>(),
        order_a in Just((0..7usize).collect::<Vec<_>>()).prop_shuffle(),
        order_b in Just((0..7usize).collect::<Vec<_>>()).prop_shuffle(),
    ) {
        let mut w = world();
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let mut base = create(&mut w);
        let add = propose(&base, &w.alice, &[GroupChange::Add(w.dave.member(Role::Admin))]);
        base.apply(&add).unwrap();
        // Three siblings of epoch 2 by two admins (seeded titles), and
        // children and a grandchild on them.
        let mut states = Vec::new();
        let mut branches = Vec::new();
        for (i, signer) in [&w.alice, &w.dave, &w.alice].into_iter().enumerate() {
            let title = format!("b{i}-{}", rand_core::RngCore::next_u32(&mut rng));
            let s = propose(&base, signer, &[GroupChange::Retitle(title)]);
            let mut g = base.clone();
            g.apply(&s).unwrap();
            states.push(s);
            branches.push(g);
        }
        for (i, g) in branches.iter_mut().enumerate().take(2) {
            let s = propose(g, &w.dave, &[GroupChange::Retitle(format!("c{i}"))]);
            g.apply(&s).unwrap();
            states.push(s);
        }
        let s = propose(&branches[0], &w.alice, &[GroupChange::Add(w.carol.member(Role::Member))]);
        branches[0].apply(&s).unwrap();
        states.push(s);
        let s = propose(&branches[0], &w.alice, &[GroupChange::Remove("bob".into())]);
        states.push(s);
        prop_assert_eq!(states.len(), 7);

        let a = deliver(base.clone(), &states, &order_a);
        let b = deliver(base.clone(), &states, &order_b);
        prop_assert_eq!(a.current(), b.current());
        prop_assert_eq!(a.history(), b.history());
        // The winner at epoch 2 is the lowest of the three siblings.
        let lowest = states[..3].iter().map(SignedGroupState::hash).min().unwrap();
        prop_assert_eq!(a.history()[2].hash(), lowest);
    }
}

/// A hand-written protobuf encoder for crafting states field by field.
mod pb {
    fn varint(out: &mut Vec<u8>, mut v: u64) {
        while v >= 0x80 {
            out.push((v as u8 & 0x7f) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }

    fn bytes(out: &mut Vec<u8>, tag: u8, value: &[u8]) {
        if !value.is_empty() {
            out.push(tag << 3 | 2);
            varint(out, value.len() as u64);
            out.extend_from_slice(value);
        }
    }

    fn uint(out: &mut Vec<u8>, tag: u8, value: u64) {
        if value != 0 {
            out.push(tag << 3);
            varint(out, value);
        }
    }

    pub(crate) fn member(user_id: &str, key: &[u8], role: u32) -> Vec<u8> {
        let mut out = Vec::new();
        bytes(&mut out, 1, user_id.as_bytes());
        bytes(&mut out, 2, key);
        uint(&mut out, 3, role.into());
        out
    }

    pub(crate) fn state(
        version: u32,
        group_id: &[u8],
        epoch: u64,
        parent: &[u8],
        title: &str,
        members: &[Vec<u8>],
    ) -> Vec<u8> {
        let mut out = Vec::new();
        uint(&mut out, 1, version.into());
        bytes(&mut out, 2, group_id);
        uint(&mut out, 3, epoch);
        bytes(&mut out, 4, parent);
        bytes(&mut out, 5, title.as_bytes());
        for m in members {
            out.push(6 << 3 | 2);
            varint(&mut out, m.len() as u64);
            out.extend_from_slice(m);
        }
        out
    }

    pub(crate) fn signed(
        version: u32,
        state: &[u8],
        user_id: &str,
        device_id: u32,
        identity_key: &[u8],
        certificate: &[u8],
        signature: &[u8],
    ) -> Vec<u8> {
        let mut out = Vec::new();
        uint(&mut out, 1, version.into());
        bytes(&mut out, 2, state);
        bytes(&mut out, 3, user_id.as_bytes());
        uint(&mut out, 4, device_id.into());
        bytes(&mut out, 5, identity_key);
        bytes(&mut out, 6, certificate);
        bytes(&mut out, 7, signature);
        out
    }

    pub(crate) fn control(version: u32, states: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        uint(&mut out, 1, version.into());
        for s in states {
            out.push(2 << 3 | 2);
            varint(&mut out, s.len() as u64);
            out.extend_from_slice(s);
        }
        out
    }
}
