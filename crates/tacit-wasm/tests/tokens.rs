//! Delivery tokens on the browser store natively (`tacit_wasm::tokens`,
//! `docs/web.md`): the device's own token drawn once and kept across a
//! reopen and replaced by a rotation, carried in field 16 of what it seals
//! but delivery receipts, a correspondent's token recorded from an
//! accepted content (in the same writes) and presented in the next
//! `Submit` and `SubmitGroup`, and malformed or unauthenticated fields
//! recording nothing.

mod common;

use rand_core::OsRng;
use tacit::envelope::{Content, ContentKind};
use tacit::session::{BundlePreKey, OutgoingEnvelope, SessionConfig, SessionManager};
use tacit_relay_proto::{ClientFrame, DeliveryToken, Request};
use tacit_wasm::groups;
use tacit_wasm::store::{BrowserStore, Write};
use tacit_wasm::tokens;

use common::{address, flush, list, ok, User, KEY};

/// A new user whose first writes are already stored.
fn user(name: &str) -> User {
    let mut u = common::user(name);
    flush(&mut u);
    u
}

/// The user's device opened again from its records (a reload).
fn reopen(u: &mut User) {
    let (store, local) = ok(BrowserStore::open(&KEY, &u.records)).unwrap_or_else(|| unreachable!());
    u.m = ok(SessionManager::open(
        store,
        local.address,
        SessionConfig::default(),
    ));
}

/// Alice and Bob, trusting each other's lists, with sessions both ways.
fn pair() -> (User, User) {
    let (mut alice, mut bob) = (user("alice"), user("bob"));
    let lists = [list(&alice), list(&bob)];
    for u in [&mut alice, &mut bob] {
        for l in &lists {
            ok(u.m.update_device_list(l));
        }
    }
    let alice_bundle = ok(alice.m.account().bundle(BundlePreKey::None));
    let bob_bundle = ok(bob.m.account().bundle(BundlePreKey::None));
    ok(alice
        .m
        .process_bundle(&address("bob"), &bob_bundle, &mut OsRng));
    ok(bob
        .m
        .process_bundle(&address("alice"), &alice_bundle, &mut OsRng));
    flush(&mut alice);
    flush(&mut bob);
    (alice, bob)
}

fn content(kind: ContentKind, body: &[u8]) -> Content {
    ok(Content::new(kind, body.to_vec(), 1, &mut OsRng))
}

/// `from`'s envelope for `to` among `out`.
fn for_user<'a>(out: &'a [OutgoingEnvelope], to: &str) -> &'a [u8] {
    &out.iter()
        .find(|o| o.recipient == address(to))
        .unwrap_or_else(|| unreachable!())
        .envelope
}

/// Seals `content` from `from` to `to` through the module (with `from`'s
/// token) and returns the envelope.
fn seal(from: &mut User, to: &str, content: &Content) -> Vec<u8> {
    let out = ok(tokens::seal_for_user(&mut from.m, to, content));
    flush(from);
    for_user(&out, to).to_vec()
}

/// The token a `Submit` frame from `u` to `to` presents, through its
/// encoding and back.
fn submitted_token(u: &User, to: &str) -> Option<DeliveryToken> {
    let submit = ok(tokens::submit(u.m.store(), &address(to), vec![1; 10]));
    let bytes = ClientFrame {
        request_id: 1,
        request: Request::Submit(submit),
    }
    .encode();
    match ok(ClientFrame::decode(&bytes)).request {
        Request::Submit(s) => s.delivery_token,
        _ => unreachable!(),
    }
}

/// A content's encoding with `extra` appended as unknown fields.
fn with_fields(content: &Content, extra: &[u8]) -> Content {
    let mut bytes = content.to_bytes();
    bytes.extend_from_slice(extra);
    ok(Content::from_bytes(&bytes))
}

#[test]
fn the_own_token_is_drawn_once_stored_and_kept_across_a_reopen() {
    let mut alice = user("alice");
    assert_eq!(alice.m.store().own_token(), None);
    let request = ok(tokens::set_request(alice.m.store()));
    let token = request.token.clone().unwrap_or_else(|| unreachable!());
    assert_eq!(token.as_bytes().len(), tokens::TOKEN_LEN);
    // The draw is written (sealed: the token's bytes appear in no record).
    assert_eq!(flush(&mut alice), 1);
    assert!(alice.records.contains_key("token"));
    assert!(!alice.records.values().any(|v| v
        .windows(token.as_bytes().len())
        .any(|w| w == token.as_bytes())));
    // A second login sets the same token and writes nothing.
    assert_eq!(
        ok(tokens::set_request(alice.m.store())).token,
        Some(token.clone())
    );
    assert_eq!(flush(&mut alice), 0);
    // A reload keeps it.
    reopen(&mut alice);
    assert_eq!(alice.m.store().own_token(), Some(token.clone()));
    assert_eq!(ok(tokens::set_request(alice.m.store())).token, Some(token));
    assert_eq!(flush(&mut alice), 0);
    // Another device draws another.
    let bob = user("bob");
    assert_ne!(
        ok(tokens::ensure_own(bob.m.store())),
        alice
            .m
            .store()
            .own_token()
            .unwrap_or_else(|| unreachable!())
    );
}

#[test]
fn a_rotation_draws_stores_and_sends_a_new_token() {
    let (mut alice, mut bob) = pair();
    let old = ok(tokens::ensure_own(alice.m.store()));
    flush(&mut alice);
    let request = ok(tokens::rotate_request(alice.m.store()));
    let new = request.token.clone().unwrap_or_else(|| unreachable!());
    assert_ne!(new, old);
    assert_eq!(new.as_bytes().len(), tokens::TOKEN_LEN);
    // Stored with the frame's request: one sealed write, kept across a
    // reload and set at the next login.
    assert_eq!(flush(&mut alice), 1);
    reopen(&mut alice);
    assert_eq!(alice.m.store().own_token(), Some(new.clone()));
    assert_eq!(
        ok(tokens::set_request(alice.m.store())).token,
        Some(new.clone())
    );
    assert_eq!(flush(&mut alice), 0);
    // What alice seals now carries the new token, which bob records and
    // presents in place of the old one.
    let env = seal(
        &mut alice,
        "bob",
        &content(ContentKind::Text, b"after the rotation"),
    );
    ok(tokens::open_envelope(&mut bob.m, &env));
    flush(&mut bob);
    assert_eq!(submitted_token(&bob, "alice"), Some(new.clone()));
    // A second rotation draws another.
    let again = ok(tokens::rotate_request(alice.m.store())).token;
    assert!(again.is_some() && again != Some(new) && again != Some(old));
}

#[test]
fn sealed_contents_carry_the_token_but_delivery_receipts_do_not() {
    let (mut alice, mut bob) = pair();
    // Before the first login there is no token to carry.
    let env = seal(&mut alice, "bob", &content(ContentKind::Text, b"early"));
    let got = ok(bob.m.open_envelope(&env, &mut OsRng));
    assert_eq!(got.content.delivery_token(), None);

    let token = ok(tokens::ensure_own(alice.m.store()));
    flush(&mut alice);
    for (kind, carries) in [
        (ContentKind::Text, true),
        (ContentKind::ReadReceipt, true),
        (ContentKind::DeliveryReceipt, false),
    ] {
        let env = seal(&mut alice, "bob", &content(kind, &[7; 16]));
        let got = ok(bob.m.open_envelope(&env, &mut OsRng));
        assert_eq!(got.content.kind(), kind);
        let expected = carries.then(|| token.as_bytes());
        assert_eq!(got.content.delivery_token(), expected, "{kind:?}");
    }

    // Group controls, sealed pairwise, carry it too.
    let update = ok(groups::create(&mut alice.m, "team", &["bob".into()], 2));
    flush(&mut alice);
    let got = ok(bob
        .m
        .open_envelope(for_user(&update.outgoing, "bob"), &mut OsRng));
    assert_eq!(got.content.kind(), ContentKind::SessionControl);
    assert_eq!(got.content.delivery_token(), Some(token.as_bytes()));
}

#[test]
fn a_peers_token_is_recorded_with_the_content_and_presented_in_submissions() {
    let (mut alice, mut bob) = pair();
    let token = ok(tokens::ensure_own(alice.m.store()));
    flush(&mut alice);
    assert_eq!(submitted_token(&bob, "alice"), None);

    let env = seal(&mut alice, "bob", &content(ContentKind::Text, b"hi"));
    let got = ok(tokens::open_envelope(&mut bob.m, &env));
    assert_eq!(got.content.body(), b"hi");
    // Recorded in the same writes as the session's advance: one commit.
    let writes = bob.m.store().take_writes();
    assert!(writes.iter().any(|w| w.key.starts_with("peer-token/")));
    assert!(writes.iter().any(|w| w.key.starts_with("session/")));
    for Write { key, value } in writes {
        if let Some(v) = value {
            bob.records.insert(key, v);
        }
    }
    assert_eq!(submitted_token(&bob, "alice"), Some(token.clone()));
    // Only for that device.
    assert_eq!(submitted_token(&bob, "carol"), None);

    // Kept across a reload.
    reopen(&mut bob);
    assert_eq!(submitted_token(&bob, "alice"), Some(token.clone()));

    // A group submission presents it for that recipient.
    let update = ok(groups::create(&mut bob.m, "team", &["alice".into()], 2));
    flush(&mut bob);
    ok(tokens::open_envelope(
        &mut alice.m,
        for_user(&update.outgoing, "alice"),
    ));
    flush(&mut alice);
    let id = update.group.id;
    let sent = ok(groups::send_text(&mut bob.m, &id, "to the group", 3));
    flush(&mut bob);
    let group = ok(tokens::submit_group(bob.m.store(), &sent.sealed));
    let presented: Vec<_> = group
        .recipients()
        .iter()
        .map(|r| (r.recipient.clone(), r.delivery_token.clone()))
        .collect();
    assert_eq!(presented, vec![(address("alice"), Some(token.clone()))]);

    // A rotated token replaces the previous one.
    let rotated = ok(DeliveryToken::new(&[3; 32]));
    ok(alice.m.store().put_own_token(&rotated));
    let env = seal(&mut alice, "bob", &content(ContentKind::Text, b"again"));
    ok(tokens::open_envelope(&mut bob.m, &env));
    flush(&mut bob);
    assert_eq!(submitted_token(&bob, "alice"), Some(rotated.clone()));
    reopen(&mut bob);
    assert_eq!(submitted_token(&bob, "alice"), Some(rotated));
}

#[test]
fn malformed_fields_and_unopened_envelopes_record_nothing() {
    let (mut alice, mut bob) = pair();
    let token = ok(tokens::ensure_own(alice.m.store()));
    flush(&mut alice);
    let text = content(ContentKind::Text, b"x");
    let mut repeated = vec![0x82, 0x01, 16];
    repeated.extend_from_slice(&[1; 16]);
    repeated.extend_from_slice(&[0x82, 0x01, 16]);
    repeated.extend_from_slice(&[2; 16]);
    let mut short = vec![0x82, 0x01, 15];
    short.extend_from_slice(&[1; 15]);
    let malformed = [
        short,               // 15 bytes: too short
        vec![0x80, 0x01, 5], // a varint
        repeated,            // twice
    ];
    for extra in &malformed {
        // Sealed past the module (which adds no field to a content that
        // carries some already), as a peer could.
        let out = ok(alice
            .m
            .seal_for_user("bob", &with_fields(&text, extra), &mut OsRng));
        let got = ok(tokens::open_envelope(&mut bob.m, for_user(&out, "bob")));
        assert_eq!(got.content.body(), b"x", "the content stays valid");
        assert_eq!(submitted_token(&bob, "alice"), None, "{extra:?}");
        assert!(!bob
            .m
            .store()
            .take_writes()
            .iter()
            .any(|w| w.key.starts_with("peer-token/")));
    }

    // A valid token, then a malformed field: the valid one stays.
    let env = seal(&mut alice, "bob", &text);
    ok(tokens::open_envelope(&mut bob.m, &env));
    assert_eq!(submitted_token(&bob, "alice"), Some(token.clone()));
    let out = ok(alice
        .m
        .seal_for_user("bob", &with_fields(&text, &malformed[0]), &mut OsRng));
    ok(tokens::open_envelope(&mut bob.m, for_user(&out, "bob")));
    assert_eq!(submitted_token(&bob, "alice"), Some(token.clone()));
    flush(&mut bob);

    // A tampered envelope does not open: nothing is recorded, even a token
    // it claims.
    let forged = ok(DeliveryToken::new(&[0xee; 32]));
    ok(alice.m.store().put_own_token(&forged));
    let mut env = seal(&mut alice, "bob", &text);
    let last = env.len() - 1;
    env[last] ^= 1;
    assert!(tokens::open_envelope(&mut bob.m, &env).is_err());
    assert!(bob.m.store().take_writes().is_empty());
    assert_eq!(submitted_token(&bob, "alice"), Some(token));
}

#[test]
fn a_peer_token_moved_to_another_devices_row_is_refused() {
    let (mut alice, mut bob) = pair();
    ok(tokens::ensure_own(alice.m.store()));
    flush(&mut alice);
    let env = seal(&mut alice, "bob", &content(ContentKind::Text, b"hi"));
    ok(tokens::open_envelope(&mut bob.m, &env));
    flush(&mut bob);
    let (key, value) = bob
        .records
        .iter()
        .find(|(k, _)| k.starts_with("peer-token/"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .unwrap_or_else(|| unreachable!());
    // Under the row of another device (the same user tag, device 2).
    let mut moved = bob.records.clone();
    moved.remove(&key);
    moved.insert(format!("{}00000002", &key[..key.len() - 8]), value);
    assert!(matches!(
        BrowserStore::open(&KEY, &moved),
        Err(tacit::error::StoreError::Tampered { .. })
    ));
}
