//! `group.json` (`docs/PROTOCOL.md` 16.9): its schema and its
//! verification, which recomputes every output from the inputs alone (its
//! own protobuf encoding of 16.2 to 16.7, then the core's decoding and
//! checks) and requires every invalid entry to fail with the named error.

use hkdf::hmac::{Hmac, Mac};
use hkdf::Hkdf;
use rand_core::{CryptoRng, RngCore};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tacit::envelope::{Content, ContentKind};
use tacit::group::multi;
use tacit::group::{
    Applied, ChainConfig, Group, GroupControl, GroupId, GroupMember, GroupSigner, GroupState,
    InboundChain, InboundChains, OutboundChain, Role, SenderChainDistribution, SessionControlBody,
    SignedGroupState, StateHash,
};
use tacit::identity::{DeviceCertificate, UserKey, UserKeyPair};
use tacit::{Address, IdentityKey, IdentityKeyPair};

use crate::schema::{required_nullable, Hex, HexBytes};
use crate::verify::{check, CaseResult};

/// The discriminating member of `group.json`.
pub const GROUP_MARK: &str = "group_states";

/// `group.json`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct GroupFile {
    /// Always `tacit-v1`.
    pub profile: String,
    /// Sender chain derivations (16.5).
    pub chain_steps: Vec<ChainSteps>,
    /// Group messages from their inputs (16.6).
    pub messages: Vec<MessageCase>,
    /// Group messages a receiver must refuse.
    pub invalid_messages: Vec<InvalidMessage>,
    /// Sender chain distributions (16.5).
    pub distributions: Vec<DistributionCase>,
    /// Distributions that must not decode.
    pub invalid_distributions: Vec<InvalidBytes>,
    /// Devices that sign group states (16.2).
    pub signers: Vec<SignerCase>,
    /// Signed group states from their inputs (16.2).
    pub group_states: Vec<StateCase>,
    /// States applied by a member (16.3).
    pub transitions: Vec<TransitionCase>,
    /// Group controls (16.4).
    pub controls: Vec<ControlCase>,
    /// `SessionControlBody` encodings that must not decode.
    pub invalid_controls: Vec<InvalidBytes>,
    /// Multi-recipient envelopes (16.7).
    pub multi: Vec<MultiCase>,
    /// Seal inputs the sender must refuse.
    pub invalid_seals: Vec<InvalidSeal>,
    /// Envelopes a recipient must refuse.
    pub invalid_envelopes: Vec<InvalidEnvelope>,
}

/// A chain key and the keys of several iterations.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ChainSteps {
    /// The case's name.
    pub name: String,
    /// `CK_0`.
    pub chain_key: Hex<32>,
    /// Ascending iterations.
    pub steps: Vec<ChainStep>,
}

/// The keys of one iteration.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ChainStep {
    /// `i`.
    pub iteration: u32,
    /// `CK_i`.
    pub chain_key: Hex<32>,
    /// `MK_i`.
    pub message_key: Hex<32>,
    /// `K`.
    pub key: Hex<32>,
    /// `N`.
    pub nonce: Hex<12>,
}

/// The fields of a `Content` without attachment.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ContentFields {
    /// Kind code, 1 and 3 to 6.
    pub kind: u32,
    /// Milliseconds.
    pub timestamp: u64,
    /// 16 bytes.
    pub message_id: Hex<16>,
    /// The body.
    pub body: HexBytes,
}

/// One group message from its chain.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct MessageCase {
    /// The case's name.
    pub name: String,
    /// Seed of the chain's Ed25519 signing key.
    pub signing_seed: Hex<32>,
    /// `CK_i` at `iteration`.
    pub chain_key: Hex<32>,
    /// `i`.
    pub iteration: u32,
    /// The group id.
    pub group_id: Hex<32>,
    /// The state hash of the chain.
    pub state_hash: Hex<32>,
    /// What is sent.
    pub content: ContentFields,
    /// What the inputs give.
    pub expected: MessageExpected,
}

/// A group message's outputs.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct MessageExpected {
    /// `Enc` of the signing key.
    pub signing_key: Hex<32>,
    /// The encoded `GroupMessage`.
    pub message: HexBytes,
}

/// A receiver's inbound chain.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Receiver {
    /// The group id.
    pub group_id: Hex<32>,
    /// The state hash.
    pub state_hash: Hex<32>,
    /// The chain's public signing key.
    pub signing_key: Hex<32>,
    /// `CK_n`.
    pub chain_key: Hex<32>,
    /// `n`.
    pub iteration: u32,
    /// `max_skip`.
    pub max_skip: u32,
}

/// A message that must be refused.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct InvalidMessage {
    /// The entry's name.
    pub name: String,
    /// The only chain the receiver holds.
    pub receiver: Receiver,
    /// Messages that must decrypt first, in order.
    pub deliver_first: Vec<HexBytes>,
    /// The refused message.
    pub bytes: HexBytes,
    /// The error, as 16.9 writes it.
    pub error: String,
}

/// A distribution from its inputs.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct DistributionCase {
    /// The case's name.
    pub name: String,
    /// The group id.
    pub group_id: Hex<32>,
    /// The state hash.
    pub state_hash: Hex<32>,
    /// Seed of the chain's signing key.
    pub signing_seed: Hex<32>,
    /// The iteration.
    pub iteration: u32,
    /// The chain key at that iteration.
    pub chain_key: Hex<32>,
    /// The encoded `SenderChainDistribution`.
    pub expected: HexBytes,
}

/// Bytes that must not decode, with the error.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct InvalidBytes {
    /// The entry's name.
    pub name: String,
    /// The bytes.
    pub bytes: HexBytes,
    /// The error.
    pub error: String,
}

/// A signing device.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SignerCase {
    /// The signer's name.
    pub name: String,
    /// Its user id.
    pub user_id: String,
    /// Its device id.
    pub device_id: u32,
    /// Seed of the user key that certifies the device.
    pub user_key_seed: Hex<32>,
    /// Seed of the device identity key.
    pub identity_seed: Hex<32>,
    /// What the seeds give.
    pub expected: SignerExpected,
}

/// A signer's public values.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SignerExpected {
    /// `Enc(UK)`.
    pub user_key: Hex<32>,
    /// `Enc(IK)`.
    pub identity_key: Hex<32>,
    /// The device certificate (14.2).
    pub certificate: Hex<64>,
}

/// A member of a state.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct MemberFields {
    /// The user id.
    pub user_id: String,
    /// `Enc(UK)`.
    pub user_key: Hex<32>,
    /// 1 admin, 2 member.
    pub role: u32,
}

/// A signed group state from its inputs.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct StateCase {
    /// The state's name.
    pub name: String,
    /// The group id.
    pub group_id: Hex<32>,
    /// The epoch.
    pub epoch: u64,
    /// The parent's hash, or null.
    #[serde(deserialize_with = "required_nullable")]
    pub parent: Option<Hex<32>>,
    /// The title.
    pub title: String,
    /// The members, in the order encoded.
    pub members: Vec<MemberFields>,
    /// The name of a signer.
    pub signer: String,
    /// What the inputs give.
    pub expected: StateExpected,
}

/// A state's outputs.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct StateExpected {
    /// `Enc(GroupState)`.
    pub state: HexBytes,
    /// `Enc(SignedGroupState)`.
    pub signed: HexBytes,
    /// `StateHash`.
    pub hash: Hex<32>,
    /// Null if it decodes, else the decoding error.
    #[serde(deserialize_with = "required_nullable")]
    pub decode_error: Option<String>,
}

/// States applied in order by a member.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TransitionCase {
    /// The case's name.
    pub name: String,
    /// The member's user id.
    pub local_user: String,
    /// States held, oldest first (names); empty: the first step is a
    /// first state.
    pub history: Vec<String>,
    /// The states applied.
    pub apply: Vec<ApplyStep>,
    /// The current state at the end, or null when there is none.
    #[serde(deserialize_with = "required_nullable")]
    pub current: Option<String>,
}

/// One applied state and its outcome.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ApplyStep {
    /// A state's name.
    pub state: String,
    /// `accepted`, `advanced`, `switched_to_winner`, `lost`, or an error.
    pub outcome: String,
}

/// A group control and its session control body.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ControlCase {
    /// The case's name.
    pub name: String,
    /// State names, parent first.
    pub states: Vec<String>,
    /// A distribution's name, or null.
    #[serde(deserialize_with = "required_nullable")]
    pub chain: Option<String>,
    /// What the inputs give.
    pub expected: ControlExpected,
}

/// A control's outputs.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ControlExpected {
    /// `Enc(GroupControl)`.
    pub group_control: HexBytes,
    /// `Enc(SessionControlBody)`.
    pub session_control_body: HexBytes,
}

/// A recipient device.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RecipientFields {
    /// User id.
    pub user_id: String,
    /// Device id.
    pub device_id: u32,
    /// Seed of its identity key.
    pub identity_seed: Hex<32>,
}

/// A sealed multi-recipient envelope.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct MultiCase {
    /// The case's name.
    pub name: String,
    /// The 64 bytes drawn: `M || e`.
    pub rng: Hex<64>,
    /// `P`.
    pub plaintext: HexBytes,
    /// The recipients, in order.
    pub recipients: Vec<RecipientFields>,
    /// What the inputs give.
    pub expected: MultiExpected,
}

/// A multi-recipient envelope's outputs.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct MultiExpected {
    /// `Enc(E)`.
    pub ephemeral_key: Hex<32>,
    /// `Enc(SharedPayload)`.
    pub shared_payload: HexBytes,
    /// `part_i` per recipient.
    pub parts: Vec<Hex<32>>,
    /// `Enc(GroupEnvelope)` per recipient.
    pub envelopes: Vec<HexBytes>,
}

/// Seal inputs that must be refused before any randomness is drawn.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct InvalidSeal {
    /// The entry's name.
    pub name: String,
    /// `P`.
    pub plaintext: HexBytes,
    /// The recipients.
    pub recipients: Vec<RecipientFields>,
    /// The error.
    pub error: String,
}

/// An envelope a recipient must refuse.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct InvalidEnvelope {
    /// The entry's name.
    pub name: String,
    /// The opening device.
    pub recipient: RecipientFields,
    /// The envelope.
    pub bytes: HexBytes,
    /// The error.
    pub error: String,
}

// ---------------------------------------------------------------------------
// Derivations and encodings of 16.2 to 16.7, written here from the text.

type HmacSha256 = Hmac<Sha256>;

fn hmac(key: &[u8; 32], data: &[u8]) -> [u8; 32] {
    let mut mac = <HmacSha256 as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// `(CK_{i+1}, MK_i, K, N)` from `CK_i`.
pub(crate) fn chain_step(ck: &[u8; 32]) -> ([u8; 32], [u8; 32], [u8; 32], [u8; 12]) {
    let mk = hmac(ck, &[1]);
    let next = hmac(ck, &[2]);
    let mut okm = [0u8; 44];
    Hkdf::<Sha256>::new(Some(&[0u8; 32]), &mk)
        .expand(b"tacit/group/message/v1", &mut okm)
        .unwrap_or_else(|_| unreachable!());
    let mut key = [0u8; 32];
    let mut nonce = [0u8; 12];
    key.copy_from_slice(&okm[..32]);
    nonce.copy_from_slice(&okm[32..]);
    (next, mk, key, nonce)
}

pub(crate) fn varint(mut v: u64, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// A proto3 scalar field, omitted when 0.
pub(crate) fn pb_uint(out: &mut Vec<u8>, tag: u32, v: u64) {
    if v != 0 {
        varint(u64::from(tag) << 3, out);
        varint(v, out);
    }
}

/// A length-delimited field; `always` writes it even when empty (a
/// repeated or message field).
pub(crate) fn pb_bytes(out: &mut Vec<u8>, tag: u32, v: &[u8], always: bool) {
    if always || !v.is_empty() {
        varint((u64::from(tag) << 3) | 2, out);
        varint(v.len() as u64, out);
        out.extend_from_slice(v);
    }
}

/// `Enc(GroupState)` of a state case.
pub(crate) fn encode_state(s: &StateCase) -> Vec<u8> {
    let mut out = Vec::new();
    pb_uint(&mut out, 1, 1);
    pb_bytes(&mut out, 2, &s.group_id.0, false);
    pb_uint(&mut out, 3, s.epoch);
    if let Some(p) = &s.parent {
        pb_bytes(&mut out, 4, &p.0, false);
    }
    pb_bytes(&mut out, 5, s.title.as_bytes(), false);
    for m in &s.members {
        let mut member = Vec::new();
        pb_bytes(&mut member, 1, m.user_id.as_bytes(), false);
        pb_bytes(&mut member, 2, &m.user_key.0, false);
        pb_uint(&mut member, 3, u64::from(m.role));
        pb_bytes(&mut out, 6, &member, true);
    }
    out
}

/// `Enc(SignedGroupState)` over `state` by `signer`.
pub(crate) fn encode_signed(state: &[u8], signer: &SignerCase) -> Vec<u8> {
    let ik = IdentityKeyPair::from_seed(&signer.identity_seed.0);
    let mut tbs = b"tacit/group/v1/state".to_vec();
    tbs.extend_from_slice(state);
    let signature = ik.sign(&tbs).to_bytes();
    let mut out = Vec::new();
    pb_uint(&mut out, 1, 1);
    pb_bytes(&mut out, 2, state, false);
    pb_bytes(&mut out, 3, signer.user_id.as_bytes(), false);
    pb_uint(&mut out, 4, u64::from(signer.device_id));
    pb_bytes(&mut out, 5, &ik.public_key().to_bytes(), false);
    pb_bytes(&mut out, 6, &certificate(signer), false);
    pb_bytes(&mut out, 7, &signature, false);
    out
}

pub(crate) fn state_hash(signed: &[u8]) -> [u8; 32] {
    Sha256::new()
        .chain_update(b"tacit/group/v1/state-hash")
        .chain_update(signed)
        .finalize()
        .into()
}

fn certificate(signer: &SignerCase) -> [u8; 64] {
    let uk = UserKeyPair::from_seed(&signer.user_key_seed.0);
    let ik = IdentityKeyPair::from_seed(&signer.identity_seed.0).public_key();
    match Address::new(&signer.user_id, signer.device_id) {
        Ok(address) => DeviceCertificate::issue(&uk, &address, &ik).to_bytes(),
        Err(_) => [0; 64],
    }
}

/// `Enc(SenderChainDistribution)`.
pub(crate) fn encode_distribution(d: &DistributionCase) -> Vec<u8> {
    let key = IdentityKeyPair::from_seed(&d.signing_seed.0).public_key();
    let mut out = Vec::new();
    pb_uint(&mut out, 1, 1);
    pb_bytes(&mut out, 2, &d.group_id.0, false);
    pb_bytes(&mut out, 3, &d.state_hash.0, false);
    pb_bytes(&mut out, 4, &key.to_bytes(), false);
    pb_uint(&mut out, 5, u64::from(d.iteration));
    pb_bytes(&mut out, 6, &d.chain_key.0, false);
    out
}

/// `Enc(GroupControl)` and `Enc(SessionControlBody)`.
pub(crate) fn encode_control(states: &[&[u8]], chain: Option<&[u8]>) -> (Vec<u8>, Vec<u8>) {
    let mut control = Vec::new();
    pb_uint(&mut control, 1, 1);
    for s in states {
        pb_bytes(&mut control, 2, s, true);
    }
    if let Some(c) = chain {
        pb_bytes(&mut control, 3, c, true);
    }
    let mut body = Vec::new();
    pb_uint(&mut body, 1, 1);
    pb_bytes(&mut body, 2, &control, true);
    (control, body)
}

// ---------------------------------------------------------------------------
// Verification.

/// Verifies every entry of a `group.json` file.
pub fn verify_group(file: &GroupFile) -> Vec<CaseResult> {
    let mut out = Vec::new();
    let mut push = |name: &str, outcome: Result<(), String>| {
        out.push(CaseResult {
            name: name.to_string(),
            outcome,
        });
    };
    for c in &file.chain_steps {
        push(&c.name, verify_steps(c));
    }
    for c in &file.messages {
        push(&c.name, verify_message(c));
    }
    for c in &file.invalid_messages {
        push(&c.name, verify_invalid_message(c));
    }
    for c in &file.distributions {
        push(&c.name, verify_distribution(c));
    }
    for c in &file.invalid_distributions {
        let got = SenderChainDistribution::from_bytes(&c.bytes.0).map(|_| ());
        push(&c.name, expect_error(got, &c.error));
    }
    for c in &file.signers {
        push(&c.name, verify_signer(c));
    }
    for c in &file.group_states {
        push(&c.name, verify_state(c, &file.signers));
    }
    for c in &file.transitions {
        push(&c.name, verify_transition(c, file));
    }
    for c in &file.controls {
        push(&c.name, verify_control(c, file));
    }
    for c in &file.invalid_controls {
        let got = SessionControlBody::from_wire(&c.bytes.0).map(|_| ());
        push(&c.name, expect_error(got, &c.error));
    }
    for c in &file.multi {
        push(&c.name, verify_multi(c));
    }
    for c in &file.invalid_seals {
        push(&c.name, verify_invalid_seal(c));
    }
    for c in &file.invalid_envelopes {
        push(&c.name, verify_invalid_envelope(c));
    }
    out
}

/// The error's name as 16.9 writes it (the Rust `Debug` form).
pub(crate) fn error_name(e: &impl core::fmt::Debug) -> String {
    format!("{e:?}")
}

fn expect_error<E: core::fmt::Debug>(got: Result<(), E>, expected: &str) -> Result<(), String> {
    match got {
        Ok(()) => Err(format!("accepted; expected {expected}")),
        Err(e) if error_name(&e) == expected => Ok(()),
        Err(e) => Err(format!("expected {expected}, got {}", error_name(&e))),
    }
}

fn verify_steps(c: &ChainSteps) -> Result<(), String> {
    let mut ck = c.chain_key.0;
    let mut at = 0u32;
    for step in &c.steps {
        if step.iteration < at {
            return Err("iterations are not ascending".into());
        }
        while at < step.iteration {
            ck = chain_step(&ck).0;
            at += 1;
        }
        let (next, mk, key, nonce) = chain_step(&ck);
        check("chain_key", &ck, &step.chain_key.0)?;
        check("message_key", &mk, &step.message_key.0)?;
        check("key", &key, &step.key.0)?;
        check("nonce", &nonce, &step.nonce.0)?;
        ck = next;
        at += 1;
    }
    Ok(())
}

fn content_of(c: &ContentFields) -> Result<Content, String> {
    let kind = ContentKind::from_code(c.kind).map_err(|e| format!("content kind: {e}"))?;
    Content::from_parts(kind, c.body.0.clone(), c.timestamp, c.message_id.0, None)
        .map_err(|e| format!("content: {e}"))
}

/// The outbound chain of a message case, from its record (16.5).
fn outbound(c: &MessageCase) -> Result<OutboundChain, String> {
    let mut record = vec![1u8, 1];
    record.extend_from_slice(&c.group_id.0);
    record.extend_from_slice(&c.state_hash.0);
    record.extend_from_slice(&c.signing_seed.0);
    varint(u64::from(c.iteration), &mut record);
    record.extend_from_slice(&c.chain_key.0);
    OutboundChain::from_bytes(&record).map_err(|e| format!("outbound chain: {e}"))
}

/// The encoded message the core's outbound chain makes from a case's
/// inputs.
pub(crate) fn message_bytes(c: &MessageCase) -> Result<Vec<u8>, String> {
    let content = content_of(&c.content)?;
    outbound(c)?
        .encrypt(&content)
        .map(|m| m.to_bytes())
        .map_err(|e| e.to_string())
}

fn verify_message(c: &MessageCase) -> Result<(), String> {
    let content = content_of(&c.content)?;
    let signing_key = IdentityKeyPair::from_seed(&c.signing_seed.0).public_key();
    check(
        "signing_key",
        &signing_key.to_bytes(),
        &c.expected.signing_key.0,
    )?;
    check("message", &message_bytes(c)?, &c.expected.message.0)?;
    // The receiver's side, from the distribution at the same iteration.
    let mut receiver = inbound(&Receiver {
        group_id: c.group_id,
        state_hash: c.state_hash,
        signing_key: c.expected.signing_key,
        chain_key: c.chain_key,
        iteration: c.iteration,
        max_skip: 0,
    })?;
    let back = receiver
        .decrypt(&c.expected.message.0)
        .map_err(|e| format!("the receiver refused it: {e:?}"))?;
    if back != content {
        return Err("the receiver decrypted another content".into());
    }
    Ok(())
}

fn inbound(r: &Receiver) -> Result<InboundChain, String> {
    let mut d = Vec::new();
    pb_uint(&mut d, 1, 1);
    pb_bytes(&mut d, 2, &r.group_id.0, false);
    pb_bytes(&mut d, 3, &r.state_hash.0, false);
    pb_bytes(&mut d, 4, &r.signing_key.0, false);
    pb_uint(&mut d, 5, u64::from(r.iteration));
    pb_bytes(&mut d, 6, &r.chain_key.0, false);
    let d = SenderChainDistribution::from_bytes(&d).map_err(|e| format!("receiver: {e}"))?;
    let config = ChainConfig::new(r.max_skip).map_err(|e| format!("max_skip: {e}"))?;
    Ok(InboundChain::from_distribution(&d, config))
}

/// The error a receiver holding only `r` gives for `bytes` after
/// `first` decrypted; it must leave the chain unchanged.
pub(crate) fn receive_error(
    r: &Receiver,
    first: &[HexBytes],
    bytes: &[u8],
) -> Result<String, String> {
    let mut chains = InboundChains::new();
    chains.insert(inbound(r)?);
    for (i, m) in first.iter().enumerate() {
        chains
            .decrypt(&m.0)
            .map_err(|e| format!("deliver_first {i} refused: {e:?}"))?;
    }
    let before = chain_record(&chains, r)?;
    let error = match chains.decrypt(bytes) {
        Ok(_) => return Err("the message decrypted".into()),
        Err(e) => error_name(&e),
    };
    if chain_record(&chains, r)? != before {
        return Err("the refusal changed the chain".into());
    }
    Ok(error)
}

fn verify_invalid_message(c: &InvalidMessage) -> Result<(), String> {
    let got = receive_error(&c.receiver, &c.deliver_first, &c.bytes.0)?;
    if got != c.error {
        return Err(format!("expected {}, got {got}", c.error));
    }
    Ok(())
}

fn chain_record(chains: &InboundChains, r: &Receiver) -> Result<Vec<u8>, String> {
    chains
        .get(&r.group_id.0, &r.signing_key.0)
        .map(|c| c.to_bytes().to_vec())
        .ok_or_else(|| "the receiver's chain is gone".into())
}

fn verify_distribution(c: &DistributionCase) -> Result<(), String> {
    let ours = encode_distribution(c);
    check("expected", &ours, &c.expected.0)?;
    let mut record = vec![1u8, 1];
    record.extend_from_slice(&c.group_id.0);
    record.extend_from_slice(&c.state_hash.0);
    record.extend_from_slice(&c.signing_seed.0);
    varint(u64::from(c.iteration), &mut record);
    record.extend_from_slice(&c.chain_key.0);
    let chain = OutboundChain::from_bytes(&record).map_err(|e| format!("outbound: {e}"))?;
    check("core encoding", &chain.distribution().to_bytes(), &ours)?;
    SenderChainDistribution::from_bytes(&ours).map_err(|e| format!("does not decode: {e:?}"))?;
    Ok(())
}

fn verify_signer(c: &SignerCase) -> Result<(), String> {
    let uk = UserKeyPair::from_seed(&c.user_key_seed.0).public_key();
    let ik = IdentityKeyPair::from_seed(&c.identity_seed.0).public_key();
    check("user_key", &uk.to_bytes(), &c.expected.user_key.0)?;
    check("identity_key", &ik.to_bytes(), &c.expected.identity_key.0)?;
    let cert = certificate(c);
    check("certificate", &cert, &c.expected.certificate.0)?;
    let address = Address::new(&c.user_id, c.device_id).map_err(|e| e.to_string())?;
    DeviceCertificate::from_bytes(cert)
        .verify(&uk, &address, &ik)
        .map_err(|e| format!("certificate does not verify: {e}"))
}

fn find<'a, T>(items: &'a [T], name: &str, get: impl Fn(&T) -> &str) -> Result<&'a T, String> {
    items
        .iter()
        .find(|t| get(t) == name)
        .ok_or_else(|| format!("no entry named {name:?}"))
}

/// The state built by the core's own API, when the inputs make a valid
/// state.
fn core_state(c: &StateCase) -> Option<GroupState> {
    let members = c
        .members
        .iter()
        .map(|m| {
            let key = UserKey::from_bytes(&m.user_key.0).ok()?;
            Some(GroupMember::new(
                m.user_id.clone(),
                key,
                match m.role {
                    1 => Role::Admin,
                    2 => Role::Member,
                    _ => return None,
                },
            ))
        })
        .collect::<Option<Vec<_>>>()?;
    GroupState::new(
        GroupId::from_bytes(c.group_id.0),
        c.epoch,
        c.parent.map(|p| StateHash::from_bytes(p.0)),
        c.title.clone(),
        members,
    )
    .ok()
}

fn verify_state(c: &StateCase, signers: &[SignerCase]) -> Result<(), String> {
    let signer = find(signers, &c.signer, |s| &s.name)?;
    let state = encode_state(c);
    check("state", &state, &c.expected.state.0)?;
    let signed = encode_signed(&state, signer);
    check("signed", &signed, &c.expected.signed.0)?;
    check("hash", &state_hash(&signed), &c.expected.hash.0)?;
    match (
        SignedGroupState::from_wire(&signed),
        &c.expected.decode_error,
    ) {
        (Ok(s), None) => {
            check("core hash", &s.hash().to_bytes(), &c.expected.hash.0)?;
            // The core's own signing gives the same bytes.
            let core = core_state(c).ok_or("the core refuses to build the state")?;
            let ik = IdentityKeyPair::from_seed(&signer.identity_seed.0);
            let address =
                Address::new(&signer.user_id, signer.device_id).map_err(|e| e.to_string())?;
            let cert = DeviceCertificate::from_bytes(certificate(signer));
            let ours = SignedGroupState::sign(core, &GroupSigner::new(&ik, &address, cert));
            check("core signed", ours.as_wire(), &signed)
        }
        (Ok(_), Some(e)) => Err(format!("decoded; expected {e}")),
        (Err(got), expected) => expect_error::<tacit::GroupStateError>(
            Err(got),
            expected.as_deref().unwrap_or("no error"),
        ),
    }
}

fn decoded(file: &GroupFile, name: &str) -> Result<SignedGroupState, String> {
    let s = find(&file.group_states, name, |s| &s.name)?;
    let signer = find(&file.signers, &s.signer, |x| &x.name)?;
    let bytes = encode_signed(&encode_state(s), signer);
    SignedGroupState::from_wire(&bytes).map_err(|e| error_name(&e))
}

/// Runs a transition case: the outcome of each step and the hash of the
/// current state at the end.
pub(crate) fn run_transition(
    c: &TransitionCase,
    file: &GroupFile,
) -> Result<(Vec<String>, Option<[u8; 32]>), String> {
    let mut group = if c.history.is_empty() {
        None
    } else {
        let mut record = vec![1u8];
        varint(c.local_user.len() as u64, &mut record);
        record.extend_from_slice(c.local_user.as_bytes());
        varint(c.history.len() as u64, &mut record);
        for name in &c.history {
            let s = decoded(file, name)?;
            varint(s.as_wire().len() as u64, &mut record);
            record.extend_from_slice(s.as_wire());
        }
        Some(Group::from_bytes(&record).map_err(|e| format!("history refused: {e:?}"))?)
    };
    let mut outcomes = Vec::new();
    for step in &c.apply {
        let outcome = match decoded(file, &step.state) {
            Err(e) => e,
            Ok(s) => match group.as_mut() {
                Some(g) => {
                    let before = g.to_bytes();
                    match g.apply(&s) {
                        Ok(Applied::Advanced) => "advanced".into(),
                        Ok(Applied::SwitchedToWinner { .. }) => "switched_to_winner".into(),
                        Ok(Applied::Lost { .. }) => "lost".into(),
                        Err(e) => {
                            if g.to_bytes() != before {
                                return Err(format!("{}: a refusal changed the group", step.state));
                            }
                            error_name(&e)
                        }
                    }
                }
                None => first_state(c, &s, &mut group),
            },
        };
        outcomes.push(outcome);
    }
    Ok((outcomes, group.map(|g| g.current().hash().to_bytes())))
}

fn verify_transition(c: &TransitionCase, file: &GroupFile) -> Result<(), String> {
    let (outcomes, current) = run_transition(c, file)?;
    for (i, (step, got)) in c.apply.iter().zip(&outcomes).enumerate() {
        if *got != step.outcome {
            return Err(format!(
                "step {i} ({}): expected {}, got {got}",
                step.state, step.outcome
            ));
        }
    }
    let expected = match &c.current {
        Some(name) => Some(decoded(file, name)?.hash().to_bytes()),
        None => None,
    };
    if current != expected {
        return Err("the current state is not the expected one".into());
    }
    Ok(())
}

/// Accepting a first state as `local_user` (its key as the state lists it),
/// sent by its signer.
fn first_state(c: &TransitionCase, s: &SignedGroupState, group: &mut Option<Group>) -> String {
    let Some(member) = s.state().member(&c.local_user) else {
        return "local user not in the state".into();
    };
    match Group::join(
        &c.local_user,
        &member.user_key,
        core::slice::from_ref(s),
        s.signer(),
        s.signer_identity(),
    ) {
        Ok(g) => {
            *group = Some(g);
            "accepted".into()
        }
        Err(e) => error_name(&e),
    }
}

fn verify_control(c: &ControlCase, file: &GroupFile) -> Result<(), String> {
    let states = c
        .states
        .iter()
        .map(|n| decoded(file, n))
        .collect::<Result<Vec<_>, _>>()?;
    let chain = match &c.chain {
        Some(n) => Some(encode_distribution(find(&file.distributions, n, |d| {
            &d.name
        })?)),
        None => None,
    };
    let wires: Vec<&[u8]> = states.iter().map(SignedGroupState::as_wire).collect();
    let (control, body) = encode_control(&wires, chain.as_deref());
    check("group_control", &control, &c.expected.group_control.0)?;
    check(
        "session_control_body",
        &body,
        &c.expected.session_control_body.0,
    )?;
    let decoded = SessionControlBody::from_wire(&body).map_err(|e| format!("{e:?}"))?;
    let core = GroupControl {
        states,
        chain: chain
            .map(|c| SenderChainDistribution::from_bytes(&c))
            .transpose()
            .map_err(|e| format!("{e:?}"))?,
    };
    check("core group_control", &core.to_wire(), &control)?;
    check("decoded", &decoded.group.to_wire(), &control)
}

/// Hands out one fixed buffer for exactly one request of its length.
struct OnceRng {
    bytes: Vec<u8>,
    used: bool,
    violation: bool,
}

impl RngCore for OnceRng {
    fn next_u32(&mut self) -> u32 {
        self.violation = true;
        0
    }
    fn next_u64(&mut self) -> u64 {
        self.violation = true;
        0
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        if self.used || dest.len() != self.bytes.len() {
            self.violation = true;
            return;
        }
        dest.copy_from_slice(&self.bytes);
        self.used = true;
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}

impl CryptoRng for OnceRng {}

fn recipients(list: &[RecipientFields]) -> Result<Vec<(Address, IdentityKey)>, String> {
    list.iter()
        .map(|r| {
            let address = Address::new(&r.user_id, r.device_id).map_err(|e| e.to_string())?;
            Ok((
                address,
                IdentityKeyPair::from_seed(&r.identity_seed.0).public_key(),
            ))
        })
        .collect()
}

fn verify_multi(c: &MultiCase) -> Result<(), String> {
    let list = recipients(&c.recipients)?;
    let mut rng = OnceRng {
        bytes: c.rng.0.to_vec(),
        used: false,
        violation: false,
    };
    let sealed = multi::seal(&c.plaintext.0, &list, &mut rng).map_err(|e| format!("{e:?}"))?;
    if rng.violation || !rng.used {
        return Err("seal did not draw exactly 64 bytes in one call".into());
    }
    let e = &c.expected;
    check(
        "ephemeral_key",
        sealed.shared.ephemeral_key().as_bytes(),
        &e.ephemeral_key.0,
    )?;
    let mut shared = Vec::new();
    pb_uint(&mut shared, 1, 1);
    pb_bytes(&mut shared, 2, &e.ephemeral_key.0, false);
    pb_bytes(&mut shared, 3, sealed.shared.payload(), false);
    check("shared_payload (encoding)", &shared, &e.shared_payload.0)?;
    check(
        "shared_payload",
        &sealed.shared.to_bytes(),
        &e.shared_payload.0,
    )?;
    if e.parts.len() != list.len() || e.envelopes.len() != list.len() {
        return Err("one part and one envelope per recipient".into());
    }
    for (i, ((part, envelope), r)) in sealed
        .parts
        .iter()
        .zip(&e.envelopes)
        .zip(&c.recipients)
        .enumerate()
    {
        check(&format!("parts[{i}]"), &part.wrapped_key, &e.parts[i].0)?;
        let mut env = Vec::new();
        pb_uint(&mut env, 1, 1);
        pb_bytes(&mut env, 2, &e.ephemeral_key.0, false);
        pb_bytes(&mut env, 3, &part.wrapped_key, false);
        pb_bytes(&mut env, 4, sealed.shared.payload(), false);
        check(&format!("envelopes[{i}]"), &env, &envelope.0)?;
        let ik = IdentityKeyPair::from_seed(&r.identity_seed.0);
        let opened = multi::open(&ik, &list[i].0, &envelope.0)
            .map_err(|e| format!("recipient {i} cannot open: {e:?}"))?;
        check("plaintext", &opened, &c.plaintext.0)?;
    }
    Ok(())
}

fn verify_invalid_seal(c: &InvalidSeal) -> Result<(), String> {
    let list = recipients(&c.recipients)?;
    let mut rng = OnceRng {
        bytes: vec![0; 64],
        used: false,
        violation: false,
    };
    let got = multi::seal(&c.plaintext.0, &list, &mut rng).map(|_| ());
    expect_error(got, &c.error)?;
    if rng.used || rng.violation {
        return Err("randomness drawn before the refusal".into());
    }
    Ok(())
}

fn verify_invalid_envelope(c: &InvalidEnvelope) -> Result<(), String> {
    let r = &c.recipient;
    let address = Address::new(&r.user_id, r.device_id).map_err(|e| e.to_string())?;
    let ik = IdentityKeyPair::from_seed(&r.identity_seed.0);
    let got = multi::open(&ik, &address, &c.bytes.0).map(|_| ());
    expect_error(got, &c.error)
}
