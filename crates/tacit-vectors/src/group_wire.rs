//! The derivations and encodings of `docs/PROTOCOL.md` 16.2 to 16.5,
//! written here from the text (canonical proto3), so that `group.json` is
//! checked against the document and not only against the core.

use hkdf::hmac::{Hmac, Mac};
use hkdf::Hkdf;
use sha2::{Digest, Sha256};
use tacit::identity::{DeviceCertificate, UserKeyPair};
use tacit::{Address, IdentityKeyPair};

use crate::group_schema::{DistributionCase, SignerCase, StateCase};

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

/// The device certificate (14.2) of a signer, all zero for an invalid
/// address.
pub(crate) fn certificate(signer: &SignerCase) -> [u8; 64] {
    let uk = UserKeyPair::from_seed(&signer.user_key_seed.0);
    let ik = IdentityKeyPair::from_seed(&signer.identity_seed.0).public_key();
    match Address::new(&signer.user_id, signer.device_id) {
        Ok(address) => DeviceCertificate::issue(&uk, &address, &ik).to_bytes(),
        Err(_) => [0; 64],
    }
}

/// `Enc(SenderChainDistribution)`.
pub(crate) fn encode_distribution(d: &DistributionCase) -> Vec<u8> {
    let signing = IdentityKeyPair::from_seed(&d.signing_seed.0);
    let mut statement = b"tacit/group/v1/chain-owner".to_vec();
    statement.extend_from_slice(&d.group_id.0);
    statement.extend_from_slice(&d.state_hash.0);
    statement.extend_from_slice(&ra(&d.owner_user_id, d.owner_device_id));
    let signature = signing.sign(&statement);
    let mut out = Vec::new();
    pb_uint(&mut out, 1, 1);
    pb_bytes(&mut out, 2, &d.group_id.0, false);
    pb_bytes(&mut out, 3, &d.state_hash.0, false);
    pb_bytes(&mut out, 4, &signing.public_key().to_bytes(), false);
    pb_uint(&mut out, 5, u64::from(d.iteration));
    pb_bytes(&mut out, 6, &d.chain_key.0, false);
    pb_bytes(&mut out, 7, &signature.to_bytes(), false);
    out
}

/// `RA = u8(len(user_id)) || user_id || u32be(device_id)` (16.5, as in
/// sealed sender).
pub(crate) fn ra(user_id: &str, device_id: u32) -> Vec<u8> {
    let mut out = vec![user_id.len() as u8];
    out.extend_from_slice(user_id.as_bytes());
    out.extend_from_slice(&device_id.to_be_bytes());
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
