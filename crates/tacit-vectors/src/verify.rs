//! Recomputes every expected value of a vector file from its inputs alone
//! and replays every event list.

use std::path::Path;

use tacit::keys::{IdentityKeyPair, KeyPair, PublicKey, Signature};
use tacit::ratchet::{EncryptedMessage, Ratchet, RatchetConfig, DEFAULT_MAX_SKIP};
use tacit::x3dh::{self, Initiation};
use tacit::PreKeyBundle;
use tacit::X3dhError;

use crate::schema::{
    Expect, InvalidBundle, InvalidReason, Op, Party, RatchetCase, RatchetFile, X3dhCase, X3dhFile,
    X3dhInputs, PROFILE,
};
use crate::script_rng::ScriptRng;

/// The outcome of one case: its name and, on failure, the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseResult {
    /// The case's name.
    pub name: String,
    /// `Ok` or the first thing that did not match.
    pub outcome: Result<(), String>,
}

/// Reads and verifies one file of either schema. `Err` means the file could
/// not be read or does not fit the schema at all.
pub fn verify_path(path: &Path) -> Result<Vec<CaseResult>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read: {e}"))?;
    verify_json(&text)
}

/// Verifies the text of an `x3dh.json`, `ratchet.json`, `envelope.json`,
/// `identity.json` or `pqxdh.json` file. The kind is told by the top-level
/// fields: only `pqxdh.json` has `kem`, only `envelope.json` has `sealed`,
/// only `identity.json` has `device_lists`, then only `x3dh.json` has
/// `invalid`.
pub fn verify_json(text: &str) -> Result<Vec<CaseResult>, String> {
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    if value.get(crate::relay_frames::RELAY_FRAMES_MARK).is_some() {
        let file: crate::relay_frames::RelayFramesFile =
            serde_json::from_str(text).map_err(|e| format!("relay-frames.json schema: {e}"))?;
        return Ok(crate::relay_frames::verify_relay_frames(&file));
    }
    if value.get("kem").is_some() {
        let file: crate::pqxdh::PqxdhFile =
            serde_json::from_str(text).map_err(|e| format!("pqxdh.json schema: {e}"))?;
        return Ok(crate::pqxdh::verify_pqxdh(&file));
    }
    if value.get(crate::group::GROUP_MARK).is_some() {
        let file: crate::group::GroupFile =
            serde_json::from_str(text).map_err(|e| format!("group.json schema: {e}"))?;
        check_profile(&file.profile)?;
        return Ok(crate::group::verify_group(&file));
    }
    if value.get("sealed").is_some() {
        let file: crate::envelope::EnvelopeFile =
            serde_json::from_value(value).map_err(|e| format!("envelope.json schema: {e}"))?;
        check_profile(&file.profile)?;
        return Ok(crate::envelope::verify_envelope(&file));
    }
    if value.get("device_lists").is_some() {
        let file: crate::identity::IdentityFile =
            serde_json::from_str(text).map_err(|e| format!("identity.json schema: {e}"))?;
        check_profile(&file.profile)?;
        return Ok(crate::identity::verify_identity(&file));
    }
    let is_x3dh = value.get("invalid").is_some()
        || value
            .get("cases")
            .and_then(|c| c.get(0))
            .is_some_and(|c| c.get("expected").is_some());
    // The typed parse reads the text again: unlike a JSON value, it refuses
    // duplicate keys.
    if is_x3dh {
        let file: X3dhFile =
            serde_json::from_str(text).map_err(|e| format!("x3dh.json schema: {e}"))?;
        check_profile(&file.profile)?;
        Ok(verify_x3dh(&file))
    } else {
        let file: RatchetFile =
            serde_json::from_str(text).map_err(|e| format!("ratchet.json schema: {e}"))?;
        check_profile(&file.profile)?;
        Ok(verify_ratchet(&file))
    }
}

pub(crate) fn check_profile(profile: &str) -> Result<(), String> {
    if profile == PROFILE {
        Ok(())
    } else {
        Err(format!("profile {profile:?} is not {PROFILE:?}"))
    }
}

/// Verifies every case and invalid bundle of an `x3dh.json` file.
pub fn verify_x3dh(file: &X3dhFile) -> Vec<CaseResult> {
    let cases = file.cases.iter().map(|case| CaseResult {
        name: case.name.clone(),
        outcome: verify_x3dh_case(case),
    });
    let invalid = file.invalid.iter().map(|entry| CaseResult {
        name: entry.name.clone(),
        outcome: verify_invalid_bundle(entry),
    });
    cases.chain(invalid).collect()
}

/// Verifies every conversation of a `ratchet.json` file.
pub fn verify_ratchet(file: &RatchetFile) -> Vec<CaseResult> {
    file.cases
        .iter()
        .map(|case| CaseResult {
            name: case.name.clone(),
            outcome: replay(case),
        })
        .collect()
}

/// The keys of a handshake's two parties, built from the six inputs.
pub(crate) struct Parties {
    pub(crate) alice: IdentityKeyPair,
    pub(crate) bob: IdentityKeyPair,
    pub(crate) signed_prekey: KeyPair,
    pub(crate) signature: Signature,
    pub(crate) one_time_prekey: Option<KeyPair>,
    pub(crate) ephemeral: [u8; 32],
}

impl Parties {
    pub(crate) fn new(inputs: &X3dhInputs) -> Self {
        Self {
            alice: IdentityKeyPair::from_seed(&inputs.alice_identity_seed.0),
            bob: IdentityKeyPair::from_seed(&inputs.bob_identity_seed.0),
            signed_prekey: KeyPair::from_private_bytes(inputs.bob_signed_prekey_private.0),
            signature: Signature::from_bytes(inputs.bob_signed_prekey_signature.0),
            one_time_prekey: inputs
                .bob_one_time_prekey_private
                .map(|k| KeyPair::from_private_bytes(k.0)),
            ephemeral: inputs.alice_ephemeral_private.0,
        }
    }

    /// The bundle Bob publishes, offering `signed_prekey`.
    pub(crate) fn bundle(&self, signed_prekey: PublicKey) -> PreKeyBundle {
        PreKeyBundle {
            identity_key: self.bob.public_key(),
            signed_prekey,
            signed_prekey_signature: self.signature,
            one_time_prekey: self.one_time_prekey.as_ref().map(KeyPair::public_key),
            kem_prekey: None,
        }
    }

    /// Alice's half with the recorded ephemeral key.
    pub(crate) fn initiate(&self, bundle: &PreKeyBundle) -> Result<Initiation, String> {
        let mut rng = ScriptRng::new([self.ephemeral]);
        let result = x3dh::initiate(&self.alice, bundle, &mut rng);
        if let Some(violation) = rng.take_violation() {
            return Err(format!("initiator randomness: {violation}"));
        }
        result.map_err(|e| format!("initiator refused the bundle: {e}"))
    }

    /// Both halves of a valid handshake; they must agree.
    pub(crate) fn handshake(&self) -> Result<(Initiation, x3dh::Agreement), String> {
        let initiation = self.initiate(&self.bundle(self.signed_prekey.public_key()))?;
        let agreement = x3dh::respond(
            &self.bob,
            &self.signed_prekey,
            self.one_time_prekey.as_ref(),
            &self.alice.public_key(),
            &initiation.ephemeral_key,
        )
        .map_err(|e| format!("responder refused: {e}"))?;
        if agreement.shared_secret() != initiation.agreement.shared_secret() {
            return Err("initiator and responder derive different SK".into());
        }
        Ok((initiation, agreement))
    }
}

pub(crate) fn check(field: &str, computed: &[u8], expected: &[u8]) -> Result<(), String> {
    if computed == expected {
        Ok(())
    } else {
        Err(format!(
            "{field}: expected {}, computed {}",
            hex::encode(expected),
            hex::encode(computed)
        ))
    }
}

fn check_optional(
    field: &str,
    computed: Option<[u8; 32]>,
    expected: Option<[u8; 32]>,
) -> Result<(), String> {
    match (computed, expected) {
        (Some(c), Some(e)) => check(field, &c, &e),
        (None, None) => Ok(()),
        (c, e) => Err(format!(
            "{field}: expected {}, computed {}",
            e.map_or("null".into(), hex::encode),
            c.map_or("null".into(), hex::encode)
        )),
    }
}

fn verify_x3dh_case(case: &X3dhCase) -> Result<(), String> {
    let parties = Parties::new(&case.inputs());
    let expected = &case.expected;
    check(
        "alice_identity_public",
        &parties.alice.public_key().to_bytes(),
        &expected.alice_identity_public.0,
    )?;
    check(
        "bob_identity_public",
        &parties.bob.public_key().to_bytes(),
        &expected.bob_identity_public.0,
    )?;
    check(
        "bob_signed_prekey_public",
        parties.signed_prekey.public_key().as_bytes(),
        &expected.bob_signed_prekey_public.0,
    )?;
    check_optional(
        "bob_one_time_prekey_public",
        parties
            .one_time_prekey
            .as_ref()
            .map(|k| k.public_key().to_bytes()),
        expected.bob_one_time_prekey_public.map(|k| k.0),
    )?;
    let (initiation, _) = parties.handshake()?;
    check(
        "alice_ephemeral_public",
        initiation.ephemeral_key.as_bytes(),
        &expected.alice_ephemeral_public.0,
    )?;
    let agreement = &initiation.agreement;
    check("sk", agreement.shared_secret().as_bytes(), &expected.sk.0)?;
    check("ad", agreement.associated_data(), &expected.ad.0)?;
    let keys = agreement.session_keys();
    check("root_key", keys.root_key().as_bytes(), &expected.root_key.0)?;
    check(
        "header_key_a",
        keys.initiator_header_key().as_bytes(),
        &expected.header_key_a.0,
    )?;
    check(
        "next_header_key_b",
        keys.responder_next_header_key().as_bytes(),
        &expected.next_header_key_b.0,
    )
}

fn verify_invalid_bundle(entry: &InvalidBundle) -> Result<(), String> {
    let parties = Parties::new(&entry.inputs());
    let bundle = parties.bundle(PublicKey::from_bytes(entry.bob_signed_prekey_public.0));
    let mut rng = ScriptRng::new([parties.ephemeral]);
    let refused = match x3dh::initiate(&parties.alice, &bundle, &mut rng) {
        Ok(_) => return Err("the initiator accepted the bundle".into()),
        Err(X3dhError::InvalidSignature) => InvalidReason::Signature,
        Err(X3dhError::SmallOrderKey) => InvalidReason::SmallOrder,
        Err(other) => return Err(format!("refused for another reason: {other}")),
    };
    if let Some(violation) = rng.take_violation() {
        return Err(format!("initiator randomness: {violation}"));
    }
    if refused != entry.error {
        return Err(format!("expected error {:?}, got {refused:?}", entry.error));
    }
    Ok(())
}

/// One party's session and recorded randomness.
struct Side {
    ratchet: Ratchet,
    rng: ScriptRng,
}

/// Replays a conversation, checking every output and outcome.
fn replay(case: &RatchetCase) -> Result<(), String> {
    let ops = check_events(case)?;
    let parties = Parties::new(&case.x3dh);
    let (initiation, agreement) = parties.handshake()?;
    let config = RatchetConfig::default()
        .with_max_skip(case.max_skip.unwrap_or(DEFAULT_MAX_SKIP))
        .map_err(|e| e.to_string())?;

    let mut alice_rng = ScriptRng::new(case.alice_ratchet_privates.iter().map(|k| k.0));
    let alice = Ratchet::new_initiator(
        initiation.agreement.session_keys(),
        &parties.signed_prekey.public_key(),
        config,
        &mut alice_rng,
    )
    .map_err(|e| format!("alice's ratchet refused to start: {e}"))?;
    if let Some(violation) = alice_rng.take_violation() {
        return Err(format!("alice's initial ratchet key: {violation}"));
    }
    let bob = Ratchet::new_responder(
        agreement.session_keys(),
        parties.signed_prekey.clone(),
        config,
    );
    let mut alice = Side {
        ratchet: alice,
        rng: alice_rng,
    };
    let mut bob = Side {
        ratchet: bob,
        rng: ScriptRng::new(case.bob_ratchet_privates.iter().map(|k| k.0)),
    };

    let mut sent: Vec<Option<EncryptedMessage>> = vec![None; case.messages.len()];
    for (index, op) in ops.into_iter().enumerate() {
        let at = |e: String| format!("event {index}: {e}");
        match op {
            Op::Send(i) => {
                let message = &case.messages[i];
                let side = match message.sender {
                    Party::Alice => &mut alice,
                    Party::Bob => &mut bob,
                };
                sent[i] = Some(send(side, message).map_err(|e| at(format!("message {i}: {e}")))?);
            }
            Op::Deliver(i, _) | Op::DeliverTampered(i, _) if sent[i].is_none() => {
                return Err(at(format!("message {i} delivered before it was sent")));
            }
            Op::Deliver(i, expect) => {
                let message = &case.messages[i];
                let side = match message.sender.peer() {
                    Party::Alice => &mut alice,
                    Party::Bob => &mut bob,
                };
                let wire = sent[i]
                    .as_ref()
                    .map(EncryptedMessage::to_bytes)
                    .unwrap_or_default();
                deliver(side, &wire, &message.plaintext.0, expect)
                    .map_err(|e| at(format!("message {i}: {e}")))?;
            }
            Op::DeliverTampered(i, byte) => {
                let message = &case.messages[i];
                let side = match message.sender.peer() {
                    Party::Alice => &mut alice,
                    Party::Bob => &mut bob,
                };
                let mut wire = sent[i]
                    .as_ref()
                    .map(EncryptedMessage::to_bytes)
                    .unwrap_or_default();
                let Some(target) = wire.get_mut(byte) else {
                    return Err(at(format!("byte {byte} is past the end of message {i}")));
                };
                *target ^= 0xff;
                deliver(side, &wire, &message.plaintext.0, Expect::Error)
                    .map_err(|e| at(format!("tampered message {i}: {e}")))?;
            }
        }
    }
    for (name, side) in [("alice", &alice), ("bob", &bob)] {
        if side.rng.keys_left() != 0 {
            return Err(format!(
                "{name} used {} of her ratchet privates; {} are left over",
                side.rng.keys_drawn(),
                side.rng.keys_left()
            ));
        }
    }
    Ok(())
}

/// Checks the event list against the schema's rules and returns it typed.
fn check_events(case: &RatchetCase) -> Result<Vec<Op>, String> {
    let mut next_send = 0;
    let mut ops = Vec::with_capacity(case.events.len());
    for (index, event) in case.events.iter().enumerate() {
        let op = event.op().map_err(|e| format!("event {index}: {e}"))?;
        let message = match op {
            Op::Send(i) | Op::Deliver(i, _) | Op::DeliverTampered(i, _) => i,
        };
        if message >= case.messages.len() {
            return Err(format!("event {index}: no message {message}"));
        }
        if let Op::Send(i) = op {
            if i != next_send {
                return Err(format!(
                    "event {index}: message {i} sent out of order (expected {next_send})"
                ));
            }
            next_send += 1;
        }
        ops.push(op);
    }
    if next_send != case.messages.len() {
        return Err(format!(
            "only {next_send} of {} messages are sent",
            case.messages.len()
        ));
    }
    Ok(ops)
}

fn send(side: &mut Side, message: &crate::schema::Message) -> Result<EncryptedMessage, String> {
    let header = side
        .ratchet
        .next_header()
        .ok_or("the sender has no sending chain yet")?;
    check("header", &header.to_bytes(), &message.expected.header.0)?;
    let keys_before = side.rng.keys_drawn();
    side.rng.load_nonce(message.header_nonce.0);
    let encrypted = side
        .ratchet
        .encrypt(&message.plaintext.0, &mut side.rng)
        .map_err(|e| format!("encryption failed: {e}"))?;
    if let Some(violation) = side.rng.take_violation() {
        return Err(format!("sender randomness: {violation}"));
    }
    if side.rng.nonce_pending() || side.rng.keys_drawn() != keys_before {
        return Err("encryption did not draw exactly the header nonce".into());
    }
    check(
        "enc_header",
        encrypted.encrypted_header(),
        &message.expected.enc_header.0,
    )?;
    check(
        "ciphertext",
        encrypted.ciphertext(),
        &message.expected.ciphertext.0,
    )?;
    Ok(encrypted)
}

fn deliver(side: &mut Side, wire: &[u8], plaintext: &[u8], expect: Expect) -> Result<(), String> {
    let before = side.ratchet.to_bytes();
    let keys_before = side.rng.keys_drawn();
    let result =
        EncryptedMessage::from_bytes(wire).and_then(|m| side.ratchet.decrypt(&m, &mut side.rng));
    if let Some(violation) = side.rng.take_violation() {
        return Err(format!("receiver randomness: {violation}"));
    }
    match (expect, result) {
        (Expect::Ok, Ok(decrypted)) => check("plaintext", &decrypted, plaintext),
        (Expect::Ok, Err(e)) => Err(format!("decryption failed: {e}")),
        (Expect::Error, Ok(_)) => Err("decrypted, but the delivery must fail".into()),
        (Expect::Error, Err(_)) => {
            if side.ratchet.to_bytes() != before {
                return Err("a failed decryption changed the receiver's state".into());
            }
            if side.rng.keys_drawn() != keys_before {
                return Err("a failed decryption drew randomness".into());
            }
            Ok(())
        }
    }
}
