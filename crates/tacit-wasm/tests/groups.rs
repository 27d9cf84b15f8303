//! Groups on the browser store natively (`tacit_wasm::groups`): three
//! users exchange group messages by hand, and the attacks the rules keep
//! out fail (a non-admin's state, a forwarded chain, a removed member's
//! chain, a removed member reading on), with the records reopened.

mod common;

use rand_core::OsRng;
use tacit::envelope::{Content, ContentKind};
use tacit::group::{
    GroupControl, GroupId, GroupSigner, GroupState, OutboundChain, SessionControlBody,
    SignedGroupState,
};
use tacit::identity::DeviceList;
use tacit::session::{BundlePreKey, OutgoingEnvelope, SessionConfig, SessionManager};
use tacit_wasm::groups::{self, ControlOutcome, GroupReceived};
use tacit_wasm::store::BrowserStore;

use common::{address, flush, list, ok, user, User, KEY};

/// Alice, Bob and Carol, each trusting every list, with sessions both
/// ways.
fn three() -> [User; 3] {
    let mut users = [user("alice"), user("bob"), user("carol")];
    let lists: Vec<DeviceList> = users.iter().map(list).collect();
    let bundles: Vec<_> = users
        .iter()
        .map(|u| ok(u.m.account().bundle(BundlePreKey::None)))
        .collect();
    for (i, u) in users.iter_mut().enumerate() {
        for l in &lists {
            ok(u.m.update_device_list(l));
        }
        for (j, b) in bundles.iter().enumerate() {
            if i != j {
                let to = address(["alice", "bob", "carol"][j]);
                ok(u.m.process_bundle(&to, b, &mut OsRng));
            }
        }
    }
    users
}

/// Opens the pairwise envelopes of `out` addressed to `to`, taking group
/// controls; the outcome of the last control.
fn deliver(to: &mut User, out: &[OutgoingEnvelope]) -> ControlOutcome {
    let mut last = ControlOutcome::default();
    let me = to.m.local_address().clone();
    for o in out.iter().filter(|o| o.recipient == me) {
        let received = ok(to.m.open_envelope(&o.envelope, &mut OsRng));
        if received.content.kind() == ContentKind::SessionControl {
            last = ok(groups::control(&mut to.m, &received));
        }
    }
    flush(to);
    last
}

fn text(r: &GroupReceived) -> &str {
    core::str::from_utf8(r.content.body()).unwrap_or_default()
}

/// Alice's group with Bob and Carol, the first state delivered.
fn group() -> ([User; 3], [u8; 32]) {
    let mut users = three();
    let names = ["bob".to_owned(), "carol".to_owned()];
    let created = ok(groups::create(&mut users[0].m, "team", &names, 1));
    flush(&mut users[0]);
    let [_, bob, carol] = &mut users;
    assert!(deliver(bob, &created.outgoing).changed);
    assert!(deliver(carol, &created.outgoing).changed);
    (users, created.group.id)
}

/// Sends `text` from `from` to the group and hands the chain to every
/// user in `to`; the group envelope for each of them.
fn send(users: &mut [User; 3], from: usize, id: &[u8; 32], text: &str) -> groups::GroupSend {
    let sent = ok(groups::send_text(&mut users[from].m, id, text, 2));
    flush(&mut users[from]);
    for (i, u) in users.iter_mut().enumerate() {
        if i != from {
            deliver(u, &sent.outgoing);
        }
    }
    sent
}

fn envelope_for(sent: &groups::GroupSend, to: &str) -> Option<Vec<u8>> {
    sent.sealed
        .parts
        .iter()
        .find(|p| p.address.user_id() == to)
        .map(|p| sent.sealed.shared.envelope_for(&p.wrapped_key).to_bytes())
}

fn read(u: &mut User, envelope: &[u8]) -> Result<Option<GroupReceived>, &'static str> {
    let r = groups::open(&mut u.m, envelope).map_err(|e| e.code);
    flush(u);
    r
}

#[test]
fn members_exchange_messages_and_a_removed_member_reads_no_more() {
    let (mut users, id) = group();
    let sent = send(&mut users, 0, &id, "hello");
    for (i, name) in [(1, "bob"), (2, "carol")] {
        let env = envelope_for(&sent, name).unwrap_or_default();
        let got = read(&mut users[i], &env).unwrap_or_default();
        assert_eq!(got.as_ref().map(text), Some("hello"));
    }
    // A replay is refused.
    let env = envelope_for(&sent, "bob").unwrap_or_default();
    assert_eq!(read(&mut users[1], &env).err(), Some("group-decrypt"));

    let reply = send(&mut users, 1, &id, "hi");
    let env = envelope_for(&reply, "alice").unwrap_or_default();
    assert_eq!(
        read(&mut users[0], &env).ok().flatten().as_ref().map(text),
        Some("hi")
    );

    // Carol removed: she learns it, and is no recipient of the next one.
    let removed = ok(groups::change(
        &mut users[0].m,
        &id,
        &[tacit::group::GroupChange::Remove("carol".into())],
        3,
    ));
    flush(&mut users[0]);
    for i in [1, 2] {
        assert!(deliver(&mut users[i], &removed.outgoing).changed);
    }
    let carol_view = ok(groups::get(&users[2].m, &id)).map(|g| g.active);
    assert_eq!(carol_view, Some(false));
    let after = send(&mut users, 0, &id, "without carol");
    assert!(envelope_for(&after, "carol").is_none());
    let bob_env = envelope_for(&after, "bob").unwrap_or_default();
    // Bob's copy does not open for Carol.
    assert_eq!(read(&mut users[2], &bob_env).err(), Some("group-envelope"));
    assert_eq!(
        read(&mut users[1], &bob_env)
            .ok()
            .flatten()
            .as_ref()
            .map(text),
        Some("without carol")
    );
    // Carol may not send to the group any more.
    let refused = groups::send_text(&mut users[2].m, &id, "still here", 4).map(|_| ());
    assert_eq!(refused.map_err(|e| e.code), Err("not-group-member"));

    // Bob's records reopen to the same group, and he reads on.
    let (store, local) =
        ok(BrowserStore::open(&KEY, &users[1].records)).unwrap_or_else(|| unreachable!());
    users[1].m = ok(SessionManager::open(
        store,
        local.address,
        SessionConfig::default(),
    ));
    let view = ok(groups::get(&users[1].m, &id)).unwrap_or_else(|| unreachable!());
    assert_eq!(view.members.len(), 2);
    let next = send(&mut users, 0, &id, "again");
    let env = envelope_for(&next, "bob").unwrap_or_default();
    assert_eq!(
        read(&mut users[1], &env).ok().flatten().as_ref().map(text),
        Some("again")
    );
}

/// Seals `body` as a SessionControl content from `from` to `to`.
fn control_from(from: &mut User, to: &str, control: &GroupControl) -> Vec<OutgoingEnvelope> {
    let body = SessionControlBody {
        group: control.clone(),
    }
    .to_wire();
    let content = ok(Content::new(
        ContentKind::SessionControl,
        body,
        5,
        &mut OsRng,
    ));
    let out = ok(from.m.seal_for_user(to, &content, &mut OsRng));
    flush(from);
    out
}

#[test]
fn a_non_admins_change_is_refused_where_made_and_where_received() {
    let (mut users, id) = group();
    let change = [tacit::group::GroupChange::Remove("carol".into())];
    let local = groups::change(&mut users[1].m, &id, &change, 3).map(|_| ());
    assert_eq!(local.map_err(|e| e.code), Err("group-state"));

    // Bob signs the state himself and sends it to Alice.
    let bob_group = ok(groups::load(&users[1].m, &id)).unwrap_or_else(|| unreachable!());
    let current = bob_group.current();
    let members: Vec<_> = current
        .state()
        .members()
        .iter()
        .filter(|m| m.user_id != "carol")
        .cloned()
        .collect();
    let state = ok(GroupState::new(
        GroupId::from_bytes(id),
        1,
        Some(current.hash()),
        "team".into(),
        members,
    ));
    let bob_list = list(&users[1]);
    let cert = bob_list
        .device(1)
        .map(|d| d.certificate)
        .unwrap_or_else(|| unreachable!());
    let bob_address = address("bob");
    let signer = GroupSigner::new(users[1].m.account().identity(), &bob_address, cert);
    let forged = SignedGroupState::sign(state, &signer);
    let out = control_from(
        &mut users[1],
        "alice",
        &GroupControl {
            states: vec![forged],
            chain: None,
        },
    );
    let outcome = deliver(&mut users[0], &out);
    assert_eq!(outcome.refused.map(|e| e.code), Some("group-state"));
    let alice_view = ok(groups::get(&users[0].m, &id)).unwrap_or_else(|| unreachable!());
    assert_eq!(alice_view.members.len(), 3);
    assert_eq!(alice_view.epoch, 0);
}

#[test]
fn a_state_forwarded_by_another_device_is_refused() {
    let mut users = three();
    let created = ok(groups::create(&mut users[0].m, "team", &["bob".into()], 1));
    flush(&mut users[0]);
    // Bob forwards Alice's first state to Carol, who is not in it either.
    let first = ok(groups::load(&users[0].m, &created.group.id))
        .unwrap_or_else(|| unreachable!())
        .current()
        .clone();
    let out = control_from(
        &mut users[1],
        "carol",
        &GroupControl {
            states: vec![first],
            chain: None,
        },
    );
    let outcome = deliver(&mut users[2], &out);
    assert_eq!(
        outcome.refused.map(|e| e.code),
        Some("group-not-from-signer")
    );
    assert!(ok(groups::get(&users[2].m, &created.group.id)).is_none());
}

#[test]
fn a_forwarded_chain_is_refused_and_the_message_waits_for_the_real_one() {
    let (mut users, id) = group();
    let sent = ok(groups::send_text(&mut users[0].m, &id, "held", 2));
    flush(&mut users[0]);
    // Only Bob gets Alice's chain; he forwards it to Carol as his.
    let to_bob: Vec<_> = sent
        .outgoing
        .iter()
        .filter(|o| o.recipient.user_id() == "bob")
        .cloned()
        .collect();
    let received = ok(users[1].m.open_envelope(&to_bob[0].envelope, &mut OsRng));
    ok(groups::control(&mut users[1].m, &received));
    let control = ok(SessionControlBody::from_wire(received.content.body())).group;
    let out = control_from(&mut users[1], "carol", &control);
    let outcome = deliver(&mut users[2], &out);
    assert_eq!(outcome.refused.map(|e| e.code), Some("group-chain-refused"));

    // Carol's envelope waits, then opens with Alice's own distribution.
    let env = envelope_for(&sent, "carol").unwrap_or_default();
    assert_eq!(
        read(&mut users[2], &env).ok().map(|r| r.is_none()),
        Some(true)
    );
    assert_eq!(groups::held_count(&users[2].m), 1);
    let outcome = deliver(&mut users[2], &sent.outgoing);
    assert!(outcome.chain_stored);
    let released: Vec<&str> = outcome.released.iter().map(text).collect();
    assert_eq!(released, ["held"]);
    assert_eq!(groups::held_count(&users[2].m), 0);
}

#[test]
fn a_chain_from_a_removed_member_is_refused() {
    let (mut users, id) = group();
    let removed = ok(groups::change(
        &mut users[0].m,
        &id,
        &[tacit::group::GroupChange::Remove("carol".into())],
        3,
    ));
    flush(&mut users[0]);
    for i in [1, 2] {
        deliver(&mut users[i], &removed.outgoing);
    }
    // Carol makes a chain of the new state (whose hash she learnt) for Bob.
    let hash = ok(groups::load(&users[2].m, &id))
        .unwrap_or_else(|| unreachable!())
        .current()
        .hash()
        .to_bytes();
    let chain = OutboundChain::new(id, hash, &address("carol"), &mut OsRng);
    let out = control_from(
        &mut users[2],
        "bob",
        &GroupControl {
            states: Vec::new(),
            chain: Some(chain.distribution()),
        },
    );
    let outcome = deliver(&mut users[1], &out);
    assert_eq!(outcome.refused.map(|e| e.code), Some("not-group-member"));
}

#[test]
fn held_messages_are_bounded() {
    let (mut users, id) = group();
    // Alice's chain never reaches Carol: her envelopes are held, at most
    // MAX_HELD of them.
    let mut chain = OutboundChain::new(
        id,
        ok(groups::load(&users[0].m, &id))
            .unwrap_or_else(|| unreachable!())
            .current()
            .hash()
            .to_bytes(),
        &address("alice"),
        &mut OsRng,
    );
    let carol = [(
        address("carol"),
        users[2].m.account().identity().public_key(),
    )];
    for i in 0..=groups::MAX_HELD {
        let content = ok(Content::new(
            ContentKind::Text,
            vec![b'x'],
            i as u64,
            &mut OsRng,
        ));
        let message = ok(chain.encrypt(&content));
        let sealed = ok(tacit::group::multi::seal(
            &message.to_bytes(),
            &carol,
            &mut OsRng,
        ));
        let env = sealed
            .shared
            .envelope_for(&sealed.parts[0].wrapped_key)
            .to_bytes();
        assert_eq!(
            read(&mut users[2], &env).ok().map(|r| r.is_none()),
            Some(true)
        );
    }
    assert_eq!(groups::held_count(&users[2].m), groups::MAX_HELD);
}

#[test]
fn group_records_are_sealed_and_bound_to_their_key() {
    let (mut users, id) = group();
    send(&mut users, 0, &id, "hello");
    let records = &users[0].records;
    let group_keys: Vec<&String> = records.keys().filter(|k| k.starts_with("group")).collect();
    // The group record and Alice's outbound chain.
    assert!(group_keys.iter().any(|k| k.starts_with("group/")));
    assert!(group_keys.iter().any(|k| k.starts_with("group-out/")));
    for key in &group_keys {
        // Nothing names the group's members or title in clear.
        let value = &records[*key];
        for name in ["alice", "bob", "carol", "team"] {
            assert!(!key.contains(name));
            assert!(!value.windows(name.len()).any(|w| w == name.as_bytes()));
        }
        let mut altered = records.clone();
        if let Some(v) = altered.get_mut(*key) {
            let last = v.len() - 1;
            v[last] ^= 1;
        }
        assert!(matches!(
            BrowserStore::open(&KEY, &altered),
            Err(tacit::error::StoreError::Tampered { .. })
        ));
    }
    // A record moved under another group key does not open there.
    let mut moved = records.clone();
    let out_key = group_keys
        .iter()
        .find(|k| k.starts_with("group-out/"))
        .map(|k| (*k).clone())
        .unwrap_or_default();
    let value = moved.remove(&out_key).unwrap_or_default();
    moved.insert(out_key.replacen("group-out/", "group-in/", 1), value);
    assert!(matches!(
        BrowserStore::open(&KEY, &moved),
        Err(tacit::error::StoreError::Tampered { .. })
    ));
}
