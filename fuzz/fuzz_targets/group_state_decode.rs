//! Signed group states and group controls (`docs/PROTOCOL.md` 16.2 to
//! 16.4), as a member receives them, applied to a fixed group. The first
//! byte selects the input:
//!
//! - 0: the rest as a `SignedGroupState` (and a `GroupState`), applied;
//! - 1: the rest as a `SessionControlBody` and a `GroupControl`, its states
//!   applied in order and joined by a new member;
//! - 2: one of four real states (a valid change, two siblings, a member
//!   leaving) with the byte at offset `u16(data[2..4])` XORed with
//!   `data[4]` (and cut to `data[5..7]` bytes if shorter), applied;
//! - 3: the rest as a `Group` record.
//!
//! Asserts: no panic; what decodes re-encodes to exactly the input; a
//! refused state (or a losing sibling) leaves the group's record byte for
//! byte unchanged; an accepted one becomes current; a record that reads
//! writes back to the input.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use tacit::group::{
    Applied, Group, GroupChange, GroupControl, GroupId, GroupState, Role, SessionControlBody,
    SignedGroupState,
};
use tacit::identity::UserKeyPair;
use tacit_testkit::TestUser;

struct Fixture {
    group: Group,
    states: Vec<Vec<u8>>,
    carol_key: UserKeyPair,
}

/// Alice (admin), Bob (member) and Dave (admin) at epoch 1, and four
/// states on top: Alice's retitle and Dave's adding Carol (siblings),
/// Bob leaving, and Alice's state of epoch 3 on her retitle.
fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let mut rng = ChaCha20Rng::seed_from_u64(0x6f7);
        let alice = TestUser::new("alice", 1, &mut rng);
        let bob = TestUser::new("bob", 1, &mut rng);
        let carol = TestUser::new("carol", 1, &mut rng);
        let dave = TestUser::new("dave", 1, &mut rng);
        let mut group = Group::create(
            GroupId::from_bytes([7; 32]),
            "fuzz",
            vec![alice.member(Role::Admin), bob.member(Role::Member)],
            &alice.signer(),
        )
        .expect("create");
        let add = group
            .propose(
                &[GroupChange::Add(dave.member(Role::Admin))],
                &alice.signer(),
            )
            .expect("add");
        group.apply(&add).expect("apply");
        let retitle = group
            .propose(&[GroupChange::Retitle("r".into())], &alice.signer())
            .expect("retitle");
        let add_carol = group
            .propose(
                &[GroupChange::Add(carol.member(Role::Member))],
                &dave.signer(),
            )
            .expect("add carol");
        let leave = group
            .propose(&[GroupChange::Leave], &bob.signer())
            .expect("leave");
        let mut on_retitle = group.clone();
        on_retitle.apply(&retitle).expect("apply");
        let next = on_retitle
            .propose(&[GroupChange::Remove("bob".into())], &alice.signer())
            .expect("next");
        Fixture {
            group,
            states: [retitle, add_carol, leave, next]
                .iter()
                .map(SignedGroupState::to_wire)
                .collect(),
            carol_key: carol.key,
        }
    })
}

/// Applies `state`, checking the outcome against the record.
fn apply(group: &mut Group, state: &SignedGroupState) {
    let before = group.to_bytes();
    match group.apply(state) {
        Ok(Applied::Lost { .. }) | Err(_) => {
            assert_eq!(
                group.to_bytes(),
                before,
                "a refused state changed the group"
            )
        }
        Ok(_) => assert_eq!(group.current(), state, "an accepted state is not current"),
    }
}

fn signed(group: &mut Group, bytes: &[u8]) {
    if let Ok(state) = GroupState::from_wire(bytes) {
        assert_eq!(state.to_wire(), bytes, "non-canonical group state");
    }
    if let Ok(state) = SignedGroupState::from_wire(bytes) {
        assert_eq!(state.as_wire(), bytes, "non-canonical signed state");
        apply(group, &state);
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let f = fixture();
    let mut group = f.group.clone();
    match selector % 4 {
        0 => signed(&mut group, rest),
        1 => {
            if let Ok(body) = SessionControlBody::from_wire(rest) {
                assert_eq!(body.to_wire(), rest, "non-canonical control body");
            }
            if let Ok(control) = GroupControl::from_wire(rest) {
                assert_eq!(control.to_wire(), rest, "non-canonical group control");
                for state in &control.states {
                    apply(&mut group, state);
                }
                if let Some(last) = control.states.last() {
                    if let Ok(joined) = Group::join(
                        "carol",
                        &f.carol_key.public_key(),
                        &control.states,
                        last.signer(),
                        last.signer_identity(),
                    ) {
                        assert_eq!(joined.current(), last);
                        assert!(joined.is_member());
                    }
                }
            }
        }
        2 => {
            let Some(&[which, hi, lo, xor, chi, clo]) = rest.first_chunk::<6>() else {
                return;
            };
            let mut bytes = f.states[usize::from(which) % f.states.len()].clone();
            let at = usize::from(u16::from_be_bytes([hi, lo]));
            if let Some(b) = bytes.get_mut(at) {
                *b ^= xor;
            }
            bytes.truncate(usize::from(u16::from_be_bytes([chi, clo])).max(1));
            signed(&mut group, &bytes);
        }
        _ => {
            if let Ok(record) = Group::from_bytes(rest) {
                assert_eq!(record.to_bytes(), rest, "non-canonical group record");
            }
        }
    }
});
