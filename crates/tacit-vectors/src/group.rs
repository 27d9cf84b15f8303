//! `group.json` (`docs/PROTOCOL.md` 16.9): its verification, which
//! recomputes every output from the inputs alone (states, distributions
//! and controls with this crate's own encoding, compared with the core's;
//! messages and envelopes with the core) and requires every invalid entry
//! to fail with the named error. The schema
//! is in `group_schema`, the multi-recipient entries in `group_multi`.

use tacit::envelope::{Content, ContentKind};
use tacit::group::{
    Applied, ChainConfig, Group, GroupControl, GroupId, GroupMember, GroupSigner, GroupState,
    InboundChain, InboundChains, OutboundChain, Role, SenderChainDistribution, SessionControlBody,
    SignedGroupState, StateHash,
};
use tacit::identity::{DeviceCertificate, UserKey, UserKeyPair};
use tacit::{Address, IdentityKeyPair};

use crate::group_multi::{verify_invalid_envelope, verify_invalid_seal, verify_multi};
pub use crate::group_schema::*;
use crate::group_wire::{
    certificate, chain_step, encode_control, encode_distribution, encode_signed, encode_state, ra,
    state_hash, varint,
};
use crate::schema::HexBytes;
use crate::verify::{check, CaseResult};

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

pub(crate) fn expect_error<E: core::fmt::Debug>(
    got: Result<(), E>,
    expected: &str,
) -> Result<(), String> {
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

/// The owner of the chains of message cases and receivers: the messages
/// do not depend on it (16.6), only a distribution's signature does.
const CHAIN_OWNER: (&str, u32) = ("sender", 1);

/// An outbound chain record (16.5, Records, version 2).
fn outbound_record(
    group_id: &[u8; 32],
    state_hash: &[u8; 32],
    owner: &[u8],
    seed: &[u8; 32],
    iteration: u32,
    chain_key: &[u8; 32],
) -> Result<OutboundChain, String> {
    let mut record = vec![2u8, 1];
    record.extend_from_slice(group_id);
    record.extend_from_slice(state_hash);
    record.extend_from_slice(owner);
    record.extend_from_slice(seed);
    varint(u64::from(iteration), &mut record);
    record.extend_from_slice(chain_key);
    OutboundChain::from_bytes(&record).map_err(|e| format!("outbound chain: {e}"))
}

/// The outbound chain of a message case, from its record (16.5).
fn outbound(c: &MessageCase) -> Result<OutboundChain, String> {
    outbound_record(
        &c.group_id.0,
        &c.state_hash.0,
        &ra(CHAIN_OWNER.0, CHAIN_OWNER.1),
        &c.signing_seed.0,
        c.iteration,
        &c.chain_key.0,
    )
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

/// The receiver's chain, from its record (16.5, Records, version 2: the
/// state a distribution from its owner leaves, with no stored keys).
fn inbound(r: &Receiver) -> Result<InboundChain, String> {
    ChainConfig::new(r.max_skip).map_err(|e| format!("max_skip: {e}"))?;
    let mut record = vec![2u8, 2];
    record.extend_from_slice(&r.group_id.0);
    record.extend_from_slice(&r.state_hash.0);
    record.extend_from_slice(&ra(CHAIN_OWNER.0, CHAIN_OWNER.1));
    record.extend_from_slice(&r.signing_key.0);
    varint(u64::from(r.iteration), &mut record);
    record.extend_from_slice(&r.chain_key.0);
    varint(u64::from(r.max_skip), &mut record);
    varint(0, &mut record);
    InboundChain::from_bytes(&record).map_err(|e| format!("receiver: {e}"))
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
    let chain = outbound_record(
        &c.group_id.0,
        &c.state_hash.0,
        &ra(&c.owner_user_id, c.owner_device_id),
        &c.signing_seed.0,
        c.iteration,
        &c.chain_key.0,
    )?;
    check("core encoding", &chain.distribution().to_bytes(), &ours)?;
    let d = SenderChainDistribution::from_bytes(&ours)
        .map_err(|e| format!("does not decode: {e:?}"))?;
    // Accepted from its owner, refused from any other device (16.5).
    let owner =
        Address::new(&c.owner_user_id, c.owner_device_id).map_err(|e| format!("owner: {e:?}"))?;
    let inbound = InboundChain::from_distribution(&d, &owner, ChainConfig::default())
        .map_err(|e| format!("refused from its owner: {e:?}"))?;
    if inbound.owner() != &owner {
        return Err("the inbound chain names another owner".into());
    }
    let other = Address::new(&c.owner_user_id, c.owner_device_id.wrapping_add(1).max(1))
        .map_err(|e| format!("owner: {e:?}"))?;
    expect_error(
        InboundChain::from_distribution(&d, &other, ChainConfig::default()).map(|_| ()),
        "ChainOwnerMismatch",
    )
    .map_err(|e| format!("from another device: {e}"))?;
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
