//! `identity.json`: its schema, its generation and its verification.
//!
//! The file pins section 14 of `docs/PROTOCOL.md`: user keys from seeds,
//! device certificates (the signed bytes and the signature), signed device
//! lists (the signed bytes, the signature and the wire encoding), a list's
//! versions, lists a verifier must refuse with a named error, and safety
//! numbers. The signed bytes and the protobuf encoding are built here from
//! the specification, independently of the core, and the core's results must
//! equal them.

use ed25519_dalek::{Signer, SigningKey};
use serde::{Deserialize, Serialize};
use tacit::error::IdentityError;
use tacit::identity::{
    fingerprint_digits, DeviceCertificate, DeviceList, SafetyNumber, UserKeyPair,
    SAFETY_NUMBER_ITERATIONS,
};
use tacit::keys::IdentityKeyPair;
use tacit::{Address, WireError};

use crate::generate::derive;
use crate::link::{
    invalid_link_blobs, link_code_texts, link_codes, link_requests, link_responses,
    verify_invalid_link_blob, verify_link_code, verify_link_code_text, verify_link_request,
    verify_link_response, InvalidLinkBlob, LinkCodeCase, LinkCodeText, LinkRequestCase,
    LinkResponseCase,
};
use crate::schema::{Hex, HexBytes, PROFILE};
use crate::transcript::{relay_transcripts, verify_relay_transcript, RelayTranscriptCase};
use crate::verify::{check, CaseResult};

// ------------------------------------------------------------------ schema

/// `identity.json`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct IdentityFile {
    /// Always `tacit-v1`.
    pub profile: String,
    /// User keys from their seeds.
    pub user_keys: Vec<UserKeyCase>,
    /// Device certificates from their inputs.
    pub certificates: Vec<CertificateCase>,
    /// Signed device lists from their inputs.
    pub device_lists: Vec<DeviceListCase>,
    /// Successive versions of one user's list, by case name.
    pub sequences: Vec<Sequence>,
    /// Encoded lists the verifier must refuse.
    pub invalid_device_lists: Vec<InvalidDeviceList>,
    /// The raw fingerprint function over byte strings.
    pub fingerprints: Vec<FingerprintCase>,
    /// Safety numbers of two users (user ids and user keys).
    pub safety_numbers: Vec<SafetyNumberCase>,
    /// Link codes: their text, slots and key.
    pub link_codes: Vec<LinkCodeCase>,
    /// Typed link codes and what they read as.
    pub link_code_texts: Vec<LinkCodeText>,
    /// Link request blobs from their inputs.
    pub link_requests: Vec<LinkRequestCase>,
    /// Link response blobs from their inputs.
    pub link_responses: Vec<LinkResponseCase>,
    /// Link blobs that must be refused.
    pub invalid_link_blobs: Vec<InvalidLinkBlob>,
    /// The relay's registration and login transcripts and signatures.
    pub relay_transcripts: Vec<RelayTranscriptCase>,
}

/// A user key from its seed.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct UserKeyCase {
    /// The case's name.
    pub name: String,
    /// The user key's seed (the recovery code).
    pub seed: Hex<32>,
    /// What the seed gives.
    pub expected: UserKeyExpected,
}

/// A user key case's output.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct UserKeyExpected {
    /// `Enc(UK)`.
    pub user_key: Hex<32>,
}

/// A device certificate from its inputs.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct CertificateCase {
    /// The case's name.
    pub name: String,
    /// The user key's seed.
    pub user_key_seed: Hex<32>,
    /// The user id.
    pub user_id: String,
    /// The device id.
    pub device_id: u32,
    /// The device identity key's seed.
    pub identity_seed: Hex<32>,
    /// What certifying must produce.
    pub expected: CertificateExpected,
}

/// A certificate case's outputs.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct CertificateExpected {
    /// `Enc(UK)`.
    pub user_key: Hex<32>,
    /// `Enc(IK)`.
    pub identity_key: Hex<32>,
    /// The signed bytes.
    pub cert_tbs: HexBytes,
    /// The certificate.
    pub certificate: Hex<64>,
}

/// One device of a list's inputs.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct DeviceInput {
    /// The device id.
    pub device_id: u32,
    /// The device identity key's seed.
    pub identity_seed: Hex<32>,
    /// When it was added, milliseconds.
    pub added_at_ms: u64,
}

/// A signed device list from its inputs.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct DeviceListCase {
    /// The case's name.
    pub name: String,
    /// The user key's seed.
    pub user_key_seed: Hex<32>,
    /// The user id.
    pub user_id: String,
    /// The list's version.
    pub version: u64,
    /// The devices, in any order (the list sorts them by id).
    pub devices: Vec<DeviceInput>,
    /// What signing must produce.
    pub expected: DeviceListExpected,
}

/// One device of a list's outputs.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct DeviceExpected {
    /// The device id.
    pub device_id: u32,
    /// `Enc(IK)`.
    pub identity_key: Hex<32>,
    /// The device's certificate.
    pub certificate: Hex<64>,
}

/// A device list case's outputs.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct DeviceListExpected {
    /// `Enc(UK)`.
    pub user_key: Hex<32>,
    /// The devices in ascending id order.
    pub devices: Vec<DeviceExpected>,
    /// The signed bytes.
    pub list_tbs: HexBytes,
    /// The list signature.
    pub signature: Hex<64>,
    /// The `SignedDeviceList` encoding.
    pub wire: HexBytes,
}

/// Successive versions of one user's list.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Sequence {
    /// The sequence's name.
    pub name: String,
    /// Names of `device_lists` cases, oldest first.
    pub lists: Vec<String>,
}

/// Why a list is refused: the `IdentityError` (and `WireError`) variant.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ListErrorName {
    /// `WireError::Oversize`.
    Oversize,
    /// `WireError::Malformed`.
    Malformed,
    /// `WireError::NonCanonical`.
    NonCanonical,
    /// `WireError::UnknownVersion` (the `format` field).
    UnknownVersion,
    /// `WireError::MissingField`.
    MissingField,
    /// `WireError::InvalidLength`.
    InvalidLength,
    /// `WireError::InvalidKey`.
    InvalidKey,
    /// `WireError::InvalidValue`.
    InvalidValue,
    /// `IdentityError::InvalidCertificate`.
    InvalidCertificate,
    /// `IdentityError::InvalidListSignature`.
    InvalidListSignature,
}

/// An encoded list that must be refused.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct InvalidDeviceList {
    /// The entry's name.
    pub name: String,
    /// The bytes.
    pub wire: HexBytes,
    /// The error.
    pub error: ListErrorName,
    /// The field, for `missing_field`, `invalid_length`, `invalid_key` and
    /// `invalid_value`; otherwise `null`.
    #[serde(deserialize_with = "required_nullable")]
    pub field: Option<String>,
    /// The device, for `invalid_certificate`; otherwise `null`.
    #[serde(deserialize_with = "required_nullable")]
    pub device_id: Option<u32>,
}

/// The raw fingerprint function.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct FingerprintCase {
    /// The case's name.
    pub name: String,
    /// Hash iterations.
    pub iterations: u32,
    /// The local id (its UTF-8 bytes are hashed).
    pub local_id: String,
    /// The local key bytes.
    pub local_key: HexBytes,
    /// The remote id.
    pub remote_id: String,
    /// The remote key bytes.
    pub remote_key: HexBytes,
    /// The 60 digits.
    pub expected: String,
}

/// The safety number of two users.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SafetyNumberCase {
    /// The case's name.
    pub name: String,
    /// The local user id.
    pub local_user_id: String,
    /// The local user key's seed.
    pub local_user_key_seed: Hex<32>,
    /// The remote user id.
    pub remote_user_id: String,
    /// The remote user key's seed.
    pub remote_user_key_seed: Hex<32>,
    /// What it must give.
    pub expected: SafetyNumberExpected,
}

/// A safety number case's outputs.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SafetyNumberExpected {
    /// The local `Enc(UK)`.
    pub local_user_key: Hex<32>,
    /// The remote `Enc(UK)`.
    pub remote_user_key: Hex<32>,
    /// The 60 digits, without spaces.
    pub safety_number: String,
}

fn required_nullable<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d)
}

// ------------------------------------------ the specification, written out

const CERTIFICATE_LABEL: &[u8] = b"tacit/identity/v1/device-certificate";
const DEVICE_LIST_LABEL: &[u8] = b"tacit/identity/v1/device-list";

/// `cert_tbs` of 14.2.
fn cert_tbs(user_key: &[u8; 32], user_id: &[u8], device_id: u32, identity: &[u8; 32]) -> Vec<u8> {
    let mut tbs = CERTIFICATE_LABEL.to_vec();
    tbs.extend_from_slice(user_key);
    tbs.push(u8::try_from(user_id.len()).unwrap_or(u8::MAX));
    tbs.extend_from_slice(user_id);
    tbs.extend_from_slice(&device_id.to_be_bytes());
    tbs.extend_from_slice(identity);
    tbs
}

/// One entry of a list as the specification has it (any values).
#[derive(Clone, Debug)]
struct RawEntry {
    device_id: u32,
    identity_key: Vec<u8>,
    added_at_ms: u64,
    certificate: Vec<u8>,
}

/// A `SignedDeviceList` with any field values, encoded by hand.
#[derive(Clone, Debug)]
struct RawList {
    format: u32,
    user_id: Vec<u8>,
    user_key: Vec<u8>,
    version: u64,
    devices: Vec<RawEntry>,
    signature: Vec<u8>,
}

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn uint_field(out: &mut Vec<u8>, tag: u64, v: u64) {
    if v != 0 {
        varint(out, tag << 3);
        varint(out, v);
    }
}

fn bytes_field(out: &mut Vec<u8>, tag: u64, v: &[u8]) {
    if !v.is_empty() {
        varint(out, (tag << 3) | 2);
        varint(out, v.len() as u64);
        out.extend_from_slice(v);
    }
}

impl RawEntry {
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        uint_field(&mut out, 1, self.device_id.into());
        bytes_field(&mut out, 2, &self.identity_key);
        uint_field(&mut out, 3, self.added_at_ms);
        bytes_field(&mut out, 4, &self.certificate);
        out
    }
}

impl RawList {
    /// The canonical proto3 encoding: fields in tag order, default values
    /// left out, every entry written (even an empty one).
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        uint_field(&mut out, 1, self.format.into());
        bytes_field(&mut out, 2, &self.user_id);
        bytes_field(&mut out, 3, &self.user_key);
        uint_field(&mut out, 4, self.version);
        for d in &self.devices {
            let entry = d.encode();
            varint(&mut out, (5 << 3) | 2);
            varint(&mut out, entry.len() as u64);
            out.extend_from_slice(&entry);
        }
        bytes_field(&mut out, 6, &self.signature);
        out
    }

    /// `list_tbs` of 14.3 over the fields as they are.
    fn tbs(&self) -> Vec<u8> {
        let mut tbs = DEVICE_LIST_LABEL.to_vec();
        tbs.extend_from_slice(&self.user_key);
        tbs.push(u8::try_from(self.user_id.len()).unwrap_or(u8::MAX));
        tbs.extend_from_slice(&self.user_id);
        tbs.extend_from_slice(&self.version.to_be_bytes());
        tbs.push(u8::try_from(self.devices.len()).unwrap_or(u8::MAX));
        for d in &self.devices {
            tbs.extend_from_slice(&d.device_id.to_be_bytes());
            tbs.extend_from_slice(&d.identity_key);
            tbs.extend_from_slice(&d.added_at_ms.to_be_bytes());
            tbs.extend_from_slice(&d.certificate);
        }
        tbs
    }

    /// Signs the list with `seed` (the signature field is replaced).
    fn sign(&mut self, seed: &[u8; 32]) {
        self.signature = ed_sign(seed, &self.tbs()).to_vec();
    }
}

fn ed_sign(seed: &[u8; 32], message: &[u8]) -> [u8; 64] {
    SigningKey::from_bytes(seed).sign(message).to_bytes()
}

fn ed_public(seed: &[u8; 32]) -> [u8; 32] {
    SigningKey::from_bytes(seed).verifying_key().to_bytes()
}

// -------------------------------------------------------------- verification

/// Verifies every entry of an `identity.json` file.
pub fn verify_identity(file: &IdentityFile) -> Vec<CaseResult> {
    let mut results = Vec::new();
    let mut push = |name: &str, outcome| {
        results.push(CaseResult {
            name: name.to_owned(),
            outcome,
        })
    };
    for case in &file.user_keys {
        push(&case.name, verify_user_key(case));
    }
    for case in &file.certificates {
        push(&case.name, verify_certificate(case));
    }
    for case in &file.device_lists {
        push(&case.name, verify_device_list(case));
    }
    for sequence in &file.sequences {
        push(
            &sequence.name,
            verify_sequence(sequence, &file.device_lists),
        );
    }
    for entry in &file.invalid_device_lists {
        push(&entry.name, verify_invalid_list(entry));
    }
    for case in &file.fingerprints {
        push(&case.name, verify_fingerprint(case));
    }
    for case in &file.safety_numbers {
        push(&case.name, verify_safety_number(case));
    }
    for case in &file.link_codes {
        push(&case.name, verify_link_code(case));
    }
    for entry in &file.link_code_texts {
        push(&entry.name, verify_link_code_text(entry));
    }
    for case in &file.link_requests {
        push(&case.name, verify_link_request(case));
    }
    for case in &file.link_responses {
        push(&case.name, verify_link_response(case, &file.device_lists));
    }
    for entry in &file.invalid_link_blobs {
        push(&entry.name, verify_invalid_link_blob(entry));
    }
    for case in &file.relay_transcripts {
        push(&case.name, verify_relay_transcript(case));
    }
    results
}

fn verify_user_key(case: &UserKeyCase) -> Result<(), String> {
    let pair = UserKeyPair::from_seed(&case.seed.0);
    check(
        "user_key",
        &pair.public_key().to_bytes(),
        &case.expected.user_key.0,
    )?;
    check(
        "user_key",
        &ed_public(&case.seed.0),
        &case.expected.user_key.0,
    )
}

fn address(user_id: &str, device_id: u32) -> Result<Address, String> {
    Address::new(user_id, device_id).map_err(|e| format!("address: {e}"))
}

fn verify_certificate(case: &CertificateCase) -> Result<(), String> {
    let user = UserKeyPair::from_seed(&case.user_key_seed.0);
    let user_key = user.public_key();
    let identity = IdentityKeyPair::from_seed(&case.identity_seed.0).public_key();
    let expected = &case.expected;
    check("user_key", &user_key.to_bytes(), &expected.user_key.0)?;
    check(
        "identity_key",
        &identity.to_bytes(),
        &expected.identity_key.0,
    )?;
    let tbs = cert_tbs(
        &user_key.to_bytes(),
        case.user_id.as_bytes(),
        case.device_id,
        &identity.to_bytes(),
    );
    check("cert_tbs", &tbs, &expected.cert_tbs.0)?;
    let address = address(&case.user_id, case.device_id)?;
    let certificate = DeviceCertificate::issue(&user, &address, &identity);
    check(
        "certificate",
        &certificate.to_bytes(),
        &expected.certificate.0,
    )?;
    // The core signs exactly cert_tbs.
    check(
        "certificate (Ed25519 over cert_tbs)",
        &ed_sign(&case.user_key_seed.0, &tbs),
        &expected.certificate.0,
    )?;
    DeviceCertificate::from_bytes(expected.certificate.0)
        .verify(&user_key, &address, &identity)
        .map_err(|e| format!("the certificate does not verify: {e}"))
}

/// The list the inputs describe, signed by the core.
fn sign_list(case: &DeviceListCase) -> Result<DeviceList, String> {
    let user = UserKeyPair::from_seed(&case.user_key_seed.0);
    let devices: Vec<_> = case
        .devices
        .iter()
        .map(|d| {
            (
                d.device_id,
                IdentityKeyPair::from_seed(&d.identity_seed.0).public_key(),
                d.added_at_ms,
            )
        })
        .collect();
    DeviceList::sign(&user, &case.user_id, case.version, &devices)
        .map_err(|e| format!("signing refused: {e}"))
}

fn verify_device_list(case: &DeviceListCase) -> Result<(), String> {
    let expected = &case.expected;
    let list = sign_list(case)?;
    let user_key = ed_public(&case.user_key_seed.0);
    check(
        "user_key",
        &list.user_key().to_bytes(),
        &expected.user_key.0,
    )?;
    check("user_key", &user_key, &expected.user_key.0)?;
    if list.devices().len() != expected.devices.len() {
        return Err(format!(
            "devices: expected {}, computed {}",
            expected.devices.len(),
            list.devices().len()
        ));
    }
    // The specification's view of the list: devices sorted by id, each
    // certified over cert_tbs.
    let mut inputs: Vec<&DeviceInput> = case.devices.iter().collect();
    inputs.sort_by_key(|d| d.device_id);
    let mut raw = RawList {
        format: 1,
        user_id: case.user_id.as_bytes().to_vec(),
        user_key: user_key.to_vec(),
        version: case.version,
        devices: Vec::new(),
        signature: Vec::new(),
    };
    for ((entry, want), input) in list.devices().iter().zip(&expected.devices).zip(inputs) {
        if entry.device_id != want.device_id || input.device_id != want.device_id {
            return Err(format!(
                "devices: expected device {}, computed {}",
                want.device_id, entry.device_id
            ));
        }
        let identity = ed_public(&input.identity_seed.0);
        check("identity_key", &identity, &want.identity_key.0)?;
        check(
            "identity_key",
            &entry.identity_key.to_bytes(),
            &want.identity_key.0,
        )?;
        check(
            "certificate",
            &entry.certificate.to_bytes(),
            &want.certificate.0,
        )?;
        let tbs = cert_tbs(
            &user_key,
            case.user_id.as_bytes(),
            input.device_id,
            &identity,
        );
        check(
            "certificate (Ed25519 over cert_tbs)",
            &ed_sign(&case.user_key_seed.0, &tbs),
            &want.certificate.0,
        )?;
        raw.devices.push(RawEntry {
            device_id: input.device_id,
            identity_key: identity.to_vec(),
            added_at_ms: input.added_at_ms,
            certificate: want.certificate.0.to_vec(),
        });
    }
    check("list_tbs", &raw.tbs(), &expected.list_tbs.0)?;
    check(
        "signature",
        &list.signature().to_bytes(),
        &expected.signature.0,
    )?;
    check(
        "signature (Ed25519 over list_tbs)",
        &ed_sign(&case.user_key_seed.0, &raw.tbs()),
        &expected.signature.0,
    )?;
    raw.signature = expected.signature.0.to_vec();
    check("wire", &list.to_wire(), &expected.wire.0)?;
    check("wire (encoded by hand)", &raw.encode(), &expected.wire.0)?;
    let decoded = DeviceList::from_wire(&expected.wire.0)
        .map_err(|e| format!("wire does not verify: {e}"))?;
    if decoded != list {
        return Err("wire decodes to another list".into());
    }
    Ok(())
}

fn verify_sequence(sequence: &Sequence, cases: &[DeviceListCase]) -> Result<(), String> {
    if sequence.lists.len() < 2 {
        return Err("a sequence names at least two lists".into());
    }
    let mut previous: Option<DeviceList> = None;
    for name in &sequence.lists {
        let case = cases
            .iter()
            .find(|c| &c.name == name)
            .ok_or(format!("no device list {name}"))?;
        let list = DeviceList::from_wire(&case.expected.wire.0)
            .map_err(|e| format!("{name}: wire does not verify: {e}"))?;
        if let Some(prev) = &previous {
            if list.user_id() != prev.user_id() || list.user_key() != prev.user_key() {
                return Err(format!("{name}: another user id or user key"));
            }
            if list.version() <= prev.version() {
                return Err(format!("{name}: the version does not grow"));
            }
        }
        previous = Some(list);
    }
    Ok(())
}

/// The name, field and device of a refusal.
fn error_of(error: &IdentityError) -> Option<(ListErrorName, Option<&'static str>, Option<u32>)> {
    Some(match error {
        IdentityError::InvalidCertificate(device) => {
            (ListErrorName::InvalidCertificate, None, Some(*device))
        }
        IdentityError::InvalidListSignature => (ListErrorName::InvalidListSignature, None, None),
        IdentityError::Wire(wire) => match wire {
            WireError::Oversize { .. } => (ListErrorName::Oversize, None, None),
            WireError::Malformed => (ListErrorName::Malformed, None, None),
            WireError::NonCanonical => (ListErrorName::NonCanonical, None, None),
            WireError::UnknownVersion(_) => (ListErrorName::UnknownVersion, None, None),
            WireError::MissingField(field) => (ListErrorName::MissingField, Some(*field), None),
            WireError::InvalidLength { field, .. } => {
                (ListErrorName::InvalidLength, Some(*field), None)
            }
            WireError::InvalidKey { field, .. } => (ListErrorName::InvalidKey, Some(*field), None),
            WireError::InvalidValue(field) => (ListErrorName::InvalidValue, Some(*field), None),
            _ => return None,
        },
        _ => return None,
    })
}

fn verify_invalid_list(entry: &InvalidDeviceList) -> Result<(), String> {
    let error = match DeviceList::from_wire(&entry.wire.0) {
        Ok(_) => return Err("the list verified".into()),
        Err(e) => e,
    };
    let Some((name, field, device_id)) = error_of(&error) else {
        return Err(format!("refused for an unnamed reason: {error}"));
    };
    let got = (name, field.map(str::to_owned), device_id);
    let want = (entry.error, entry.field.clone(), entry.device_id);
    if got != want {
        return Err(format!("expected error {want:?}, got {got:?} ({error})"));
    }
    Ok(())
}

fn verify_fingerprint(case: &FingerprintCase) -> Result<(), String> {
    let (local_id, remote_id) = (case.local_id.as_bytes(), case.remote_id.as_bytes());
    let (local_key, remote_key) = (&case.local_key.0[..], &case.remote_key.0[..]);
    let ours = fingerprint_digits(case.iterations, local_id, local_key, remote_id, remote_key)
        .map_err(|e| e.to_string())?;
    let theirs = fingerprint_digits(case.iterations, remote_id, remote_key, local_id, local_key)
        .map_err(|e| e.to_string())?;
    check("expected", ours.as_bytes(), case.expected.as_bytes())?;
    check(
        "expected (swapped)",
        theirs.as_bytes(),
        case.expected.as_bytes(),
    )
}

fn verify_safety_number(case: &SafetyNumberCase) -> Result<(), String> {
    let local = UserKeyPair::from_seed(&case.local_user_key_seed.0).public_key();
    let remote = UserKeyPair::from_seed(&case.remote_user_key_seed.0).public_key();
    let expected = &case.expected;
    check(
        "local_user_key",
        &local.to_bytes(),
        &expected.local_user_key.0,
    )?;
    check(
        "remote_user_key",
        &remote.to_bytes(),
        &expected.remote_user_key.0,
    )?;
    let ours = SafetyNumber::new(&case.local_user_id, &local, &case.remote_user_id, &remote);
    let theirs = SafetyNumber::new(&case.remote_user_id, &remote, &case.local_user_id, &local);
    check(
        "safety_number",
        ours.as_str().as_bytes(),
        expected.safety_number.as_bytes(),
    )?;
    check(
        "safety_number (swapped)",
        theirs.as_str().as_bytes(),
        expected.safety_number.as_bytes(),
    )?;
    let raw = fingerprint_digits(
        SAFETY_NUMBER_ITERATIONS,
        case.local_user_id.as_bytes(),
        &local.to_bytes(),
        case.remote_user_id.as_bytes(),
        &remote.to_bytes(),
    )
    .map_err(|e| e.to_string())?;
    check(
        "safety_number (raw function)",
        raw.as_bytes(),
        expected.safety_number.as_bytes(),
    )
}

// ---------------------------------------------------------------- generation

/// 32 bytes derived from an `identity/` label.
pub(crate) fn seed(label: &str) -> [u8; 32] {
    derive(&format!("identity/{label}"))
}

fn user_key_case(name: &str) -> UserKeyCase {
    let s = seed(&format!("{name}/seed"));
    UserKeyCase {
        name: name.into(),
        seed: Hex(s),
        expected: UserKeyExpected {
            user_key: Hex(UserKeyPair::from_seed(&s).public_key().to_bytes()),
        },
    }
}

fn certificate_case(
    name: &str,
    user_key_seed: [u8; 32],
    user_id: &str,
    device_id: u32,
) -> Result<CertificateCase, String> {
    let identity_seed = seed(&format!("{name}/identity_seed"));
    let user = UserKeyPair::from_seed(&user_key_seed);
    let identity = IdentityKeyPair::from_seed(&identity_seed).public_key();
    let certificate = DeviceCertificate::issue(&user, &address(user_id, device_id)?, &identity);
    Ok(CertificateCase {
        name: name.into(),
        user_key_seed: Hex(user_key_seed),
        user_id: user_id.into(),
        device_id,
        identity_seed: Hex(identity_seed),
        expected: CertificateExpected {
            user_key: Hex(user.public_key().to_bytes()),
            identity_key: Hex(identity.to_bytes()),
            cert_tbs: HexBytes(cert_tbs(
                &user.public_key().to_bytes(),
                user_id.as_bytes(),
                device_id,
                &identity.to_bytes(),
            )),
            certificate: Hex(certificate.to_bytes()),
        },
    })
}

/// The case of a list signed by the core.
fn list_case(
    name: &str,
    user_key_seed: [u8; 32],
    devices: Vec<DeviceInput>,
    list: &DeviceList,
) -> DeviceListCase {
    let mut raw = raw_of(list);
    let list_tbs = raw.tbs();
    raw.signature = list.signature().to_bytes().to_vec();
    DeviceListCase {
        name: name.into(),
        user_key_seed: Hex(user_key_seed),
        user_id: list.user_id().into(),
        version: list.version(),
        devices,
        expected: DeviceListExpected {
            user_key: Hex(list.user_key().to_bytes()),
            devices: list
                .devices()
                .iter()
                .map(|d| DeviceExpected {
                    device_id: d.device_id,
                    identity_key: Hex(d.identity_key.to_bytes()),
                    certificate: Hex(d.certificate.to_bytes()),
                })
                .collect(),
            list_tbs: HexBytes(list_tbs),
            signature: Hex(list.signature().to_bytes()),
            wire: HexBytes(list.to_wire()),
        },
    }
}

fn raw_of(list: &DeviceList) -> RawList {
    RawList {
        format: 1,
        user_id: list.user_id().as_bytes().to_vec(),
        user_key: list.user_key().to_bytes().to_vec(),
        version: list.version(),
        devices: list
            .devices()
            .iter()
            .map(|d| RawEntry {
                device_id: d.device_id,
                identity_key: d.identity_key.to_bytes().to_vec(),
                added_at_ms: d.added_at_ms,
                certificate: d.certificate.to_bytes().to_vec(),
            })
            .collect(),
        signature: list.signature().to_bytes().to_vec(),
    }
}

fn device(label: &str, device_id: u32, added_at_ms: u64) -> DeviceInput {
    DeviceInput {
        device_id,
        identity_seed: Hex(seed(&format!("{label}/device_{device_id}/identity_seed"))),
        added_at_ms,
    }
}

fn sign_inputs(
    user_key_seed: [u8; 32],
    user_id: &str,
    version: u64,
    devices: &[DeviceInput],
) -> Result<DeviceList, String> {
    let user = UserKeyPair::from_seed(&user_key_seed);
    let devices: Vec<_> = devices
        .iter()
        .map(|d| {
            (
                d.device_id,
                IdentityKeyPair::from_seed(&d.identity_seed.0).public_key(),
                d.added_at_ms,
            )
        })
        .collect();
    DeviceList::sign(&user, user_id, version, &devices).map_err(|e| e.to_string())
}

/// The user of the versions: alice, v1 with devices 1 and 2, v2 with 3
/// added, v3 with 2 removed.
fn versions() -> Result<(Vec<DeviceListCase>, Sequence), String> {
    let uk = seed("alice/user_key_seed");
    let user = UserKeyPair::from_seed(&uk);
    let d1 = device("alice", 1, 1_767_225_600_000);
    let d2 = device("alice", 2, 1_767_225_660_000);
    let d3 = device("alice", 3, 1_767_312_000_000);
    let v1 = sign_inputs(uk, "alice", 1, &[d2.clone(), d1.clone()])?;
    let ik3 = IdentityKeyPair::from_seed(&d3.identity_seed.0).public_key();
    let v2 = v1
        .with_device(&user, 3, ik3, d3.added_at_ms)
        .map_err(|e| e.to_string())?;
    let v3 = v2.without_device(&user, 2).map_err(|e| e.to_string())?;
    let cases = vec![
        // The inputs in reverse order: the list sorts them.
        list_case("list_v1", uk, vec![d2.clone(), d1.clone()], &v1),
        list_case(
            "list_v2_device_added",
            uk,
            vec![d1.clone(), d2, d3.clone()],
            &v2,
        ),
        list_case("list_v3_device_removed", uk, vec![d1, d3], &v3),
    ];
    let sequence = Sequence {
        name: "sequence_add_then_remove".into(),
        lists: cases.iter().map(|c| c.name.clone()).collect(),
    };
    Ok((cases, sequence))
}

/// More valid lists: one device with `added_at_ms` 0 and the largest
/// device id, sixteen devices, the longest user id.
fn more_lists() -> Result<Vec<DeviceListCase>, String> {
    let mut cases = Vec::new();
    let uk = seed("bob/user_key_seed");
    let devices = vec![device("bob", u32::MAX, 0)];
    let list = sign_inputs(uk, "bob", u64::MAX, &devices)?;
    cases.push(list_case("list_one_device_largest_ids", uk, devices, &list));

    let uk = seed("carol/user_key_seed");
    let user_id = "c".repeat(64);
    let devices: Vec<_> = (1..=16)
        .map(|i| device("carol", i * 7, 1_700_000_000_000 + u64::from(i)))
        .collect();
    let list = sign_inputs(uk, &user_id, 42, &devices)?;
    cases.push(list_case(
        "list_sixteen_devices_longest_user_id",
        uk,
        devices,
        &list,
    ));

    let uk = seed("dora/user_key_seed");
    let devices = vec![device("dora", 1, 1), device("dora", 300, 128)];
    let list = sign_inputs(uk, "dóra 🦊", 300, &devices)?;
    cases.push(list_case("list_utf8_user_id", uk, devices, &list));
    Ok(cases)
}

fn invalid(
    name: &str,
    wire: Vec<u8>,
    error: ListErrorName,
    field: Option<&str>,
    device_id: Option<u32>,
) -> InvalidDeviceList {
    InvalidDeviceList {
        name: name.into(),
        wire: HexBytes(wire),
        error,
        field: field.map(str::to_owned),
        device_id,
    }
}

/// Re-certifies every device of `raw` with `seed` for `user_key` and
/// `user_id`.
fn certify(raw: &mut RawList, seed: &[u8; 32]) {
    let user_key: [u8; 32] = raw.user_key.clone().try_into().unwrap_or([0; 32]);
    for d in &mut raw.devices {
        let identity: [u8; 32] = d.identity_key.clone().try_into().unwrap_or([0; 32]);
        d.certificate = ed_sign(
            seed,
            &cert_tbs(&user_key, &raw.user_id, d.device_id, &identity),
        )
        .to_vec();
    }
}

fn invalid_lists(base_case: &DeviceListCase) -> Result<Vec<InvalidDeviceList>, String> {
    use ListErrorName as E;
    let uk = base_case.user_key_seed.0;
    let base =
        raw_of(&DeviceList::from_wire(&base_case.expected.wire.0).map_err(|e| e.to_string())?);
    let mut out = Vec::new();
    // Lists whose only fault is the one named: re-certified and re-signed.
    let resigned = |change: &dyn Fn(&mut RawList)| {
        let mut raw = base.clone();
        change(&mut raw);
        certify(&mut raw, &uk);
        raw.sign(&uk);
        raw
    };

    let mut raw = base.clone();
    raw.signature[10] ^= 0x01;
    out.push(invalid(
        "signature_byte_changed",
        raw.encode(),
        E::InvalidListSignature,
        None,
        None,
    ));

    let mut raw = base.clone();
    raw.version += 1;
    out.push(invalid(
        "version_changed_after_signing",
        raw.encode(),
        E::InvalidListSignature,
        None,
        None,
    ));

    // Device 2's certificate names another user id; the list is signed.
    let mut raw = base.clone();
    let user_key: [u8; 32] = raw.user_key.clone().try_into().unwrap_or([0; 32]);
    let second = &mut raw.devices[1];
    let identity: [u8; 32] = second.identity_key.clone().try_into().unwrap_or([0; 32]);
    second.certificate = ed_sign(
        &uk,
        &cert_tbs(&user_key, b"mallory", second.device_id, &identity),
    )
    .to_vec();
    raw.sign(&uk);
    let second_id = raw.devices[1].device_id;
    out.push(invalid(
        "certificate_of_another_user_id",
        raw.encode(),
        E::InvalidCertificate,
        None,
        Some(second_id),
    ));

    // Certificates and signature by another user key, naming the first key.
    let other = seed("mallory/user_key_seed");
    let mut raw = base.clone();
    certify(&mut raw, &other);
    raw.sign(&other);
    let first_id = raw.devices[0].device_id;
    out.push(invalid(
        "signed_by_another_user_key",
        raw.encode(),
        E::InvalidCertificate,
        None,
        Some(first_id),
    ));

    // Two devices' certificates swapped.
    let mut raw = base.clone();
    let c0 = raw.devices[0].certificate.clone();
    raw.devices[0].certificate = raw.devices[1].certificate.clone();
    raw.devices[1].certificate = c0;
    raw.sign(&uk);
    out.push(invalid(
        "certificates_swapped",
        raw.encode(),
        E::InvalidCertificate,
        None,
        Some(first_id),
    ));

    let raw = resigned(&|r| r.devices.swap(0, 1));
    out.push(invalid(
        "device_ids_out_of_order",
        raw.encode(),
        E::InvalidValue,
        Some("devices"),
        None,
    ));
    let raw = resigned(&|r| r.devices[1].device_id = r.devices[0].device_id);
    out.push(invalid(
        "device_id_repeated",
        raw.encode(),
        E::InvalidValue,
        Some("devices"),
        None,
    ));
    let raw = resigned(&|r| r.devices[0].identity_key = r.devices[1].identity_key.clone());
    out.push(invalid(
        "identity_key_repeated",
        raw.encode(),
        E::InvalidValue,
        Some("devices"),
        None,
    ));
    let raw = resigned(&|r| r.devices[0].device_id = 0);
    out.push(invalid(
        "device_id_zero",
        raw.encode(),
        E::InvalidValue,
        Some("devices"),
        None,
    ));
    let raw = resigned(&|r| {
        r.devices = (1..=17)
            .map(|i| RawEntry {
                device_id: i,
                identity_key: ed_public(&seed(&format!("many/device_{i}/identity_seed"))).to_vec(),
                added_at_ms: u64::from(i),
                certificate: Vec::new(),
            })
            .collect();
    });
    out.push(invalid(
        "seventeen_devices",
        raw.encode(),
        E::InvalidValue,
        Some("devices"),
        None,
    ));
    let raw = resigned(&|r| r.devices.clear());
    out.push(invalid(
        "no_devices",
        raw.encode(),
        E::InvalidValue,
        Some("devices"),
        None,
    ));
    let raw = resigned(&|r| r.version = 0);
    out.push(invalid(
        "version_zero",
        raw.encode(),
        E::InvalidValue,
        Some("version"),
        None,
    ));
    let raw = resigned(&|r| r.user_id = "c".repeat(65).into_bytes());
    out.push(invalid(
        "user_id_too_long",
        raw.encode(),
        E::InvalidValue,
        Some("user_id"),
        None,
    ));
    let raw = resigned(&|r| r.user_id = b"ali\nce".to_vec());
    out.push(invalid(
        "user_id_control_character",
        raw.encode(),
        E::InvalidValue,
        Some("user_id"),
        None,
    ));
    let raw = resigned(&|r| r.user_id.clear());
    out.push(invalid(
        "user_id_empty",
        raw.encode(),
        E::MissingField,
        Some("user_id"),
        None,
    ));
    let raw = resigned(&|r| r.format = 2);
    out.push(invalid(
        "format_2",
        raw.encode(),
        E::UnknownVersion,
        None,
        None,
    ));
    let raw = resigned(&|r| r.format = 0);
    out.push(invalid(
        "format_missing",
        raw.encode(),
        E::UnknownVersion,
        None,
        None,
    ));

    // Lengths and keys.
    let mut raw = base.clone();
    raw.signature.pop();
    out.push(invalid(
        "signature_short",
        raw.encode(),
        E::InvalidLength,
        Some("signature"),
        None,
    ));
    let mut raw = base.clone();
    raw.signature.clear();
    out.push(invalid(
        "signature_missing",
        raw.encode(),
        E::MissingField,
        Some("signature"),
        None,
    ));
    let mut raw = base.clone();
    raw.devices[0].certificate.push(0);
    out.push(invalid(
        "certificate_long",
        raw.encode(),
        E::InvalidLength,
        Some("certificate"),
        None,
    ));
    let mut raw = base.clone();
    raw.devices[1].identity_key.truncate(31);
    out.push(invalid(
        "identity_key_short",
        raw.encode(),
        E::InvalidLength,
        Some("identity_key"),
        None,
    ));
    // The identity point (small order) as the user key.
    let mut small = vec![0u8; 32];
    small[0] = 1;
    let raw = resigned(&|r| r.user_key = small.clone());
    out.push(invalid(
        "user_key_small_order",
        raw.encode(),
        E::InvalidKey,
        Some("user_key"),
        None,
    ));
    let raw = resigned(&|r| r.devices[0].identity_key = small.clone());
    out.push(invalid(
        "identity_key_small_order",
        raw.encode(),
        E::InvalidKey,
        Some("identity_key"),
        None,
    ));

    let mut raw = base.clone();
    raw.devices[2].identity_key.clear();
    out.push(invalid(
        "identity_key_missing",
        raw.encode(),
        E::MissingField,
        Some("identity_key"),
        None,
    ));
    // Two faults: the fields are checked in message order, each for
    // presence, length and key, so the user key's fault comes first.
    let mut raw = resigned(&|r| r.user_key = small.clone());
    raw.signature.truncate(63);
    out.push(invalid(
        "user_key_small_order_and_signature_short",
        raw.encode(),
        E::InvalidKey,
        Some("user_key"),
        None,
    ));

    // Encodings.
    let good = base.encode();
    let mut trailing = good.clone();
    trailing.extend_from_slice(&[0x38, 0x01]); // field 7, varint 1
    out.push(invalid(
        "unknown_trailing_field",
        trailing,
        E::NonCanonical,
        None,
        None,
    ));
    // added_at_ms = 0 written out in the first device (a default value).
    let raw = resigned(&|r| r.devices[0].added_at_ms = 0);
    let mut wire = Vec::new();
    uint_field(&mut wire, 1, 1);
    bytes_field(&mut wire, 2, &raw.user_id);
    bytes_field(&mut wire, 3, &raw.user_key);
    uint_field(&mut wire, 4, raw.version);
    for (i, d) in raw.devices.iter().enumerate() {
        let mut entry = d.encode();
        if i == 0 {
            // Insert "added_at_ms = 0" after the identity key.
            let mut with_default = Vec::new();
            uint_field(&mut with_default, 1, d.device_id.into());
            bytes_field(&mut with_default, 2, &d.identity_key);
            with_default.extend_from_slice(&[0x18, 0x00]);
            bytes_field(&mut with_default, 4, &d.certificate);
            entry = with_default;
        }
        varint(&mut wire, (5 << 3) | 2);
        varint(&mut wire, entry.len() as u64);
        wire.extend_from_slice(&entry);
    }
    bytes_field(&mut wire, 6, &raw.signature);
    if DeviceList::from_wire(&raw.encode()).is_err() {
        return Err("the list with added_at_ms 0 does not verify".into());
    }
    out.push(invalid(
        "default_value_written_out",
        wire,
        E::NonCanonical,
        None,
        None,
    ));
    // format = 1 as a two-byte varint.
    let mut long_varint = vec![0x08, 0x81, 0x00];
    long_varint.extend_from_slice(&good[2..]);
    out.push(invalid(
        "non_minimal_varint",
        long_varint,
        E::NonCanonical,
        None,
        None,
    ));
    // The signature field first.
    let sig_len = 2 + 64;
    let mut reordered = good[good.len() - sig_len..].to_vec();
    reordered.extend_from_slice(&good[..good.len() - sig_len]);
    out.push(invalid(
        "fields_out_of_order",
        reordered,
        E::NonCanonical,
        None,
        None,
    ));
    out.push(invalid(
        "truncated",
        good[..good.len() - 1].to_vec(),
        E::Malformed,
        None,
        None,
    ));
    // Over 4096 bytes: a valid prefix and an unknown bytes field.
    let mut oversize = good.clone();
    let pad = 4097 - good.len() - 3;
    oversize.extend_from_slice(&[0x3a]);
    varint(&mut oversize, pad as u64);
    oversize.resize(oversize.len() + pad, 0);
    if oversize.len() != 4097 {
        return Err(format!("oversize entry has {} bytes", oversize.len()));
    }
    out.push(invalid("oversize", oversize, E::Oversize, None, None));
    Ok(out)
}

fn safety_number_case(
    name: &str,
    local_user_id: &str,
    local: &str,
    remote_user_id: &str,
    remote: &str,
) -> SafetyNumberCase {
    let (ls, rs) = (seed(local), seed(remote));
    let lk = UserKeyPair::from_seed(&ls).public_key();
    let rk = UserKeyPair::from_seed(&rs).public_key();
    SafetyNumberCase {
        name: name.into(),
        local_user_id: local_user_id.into(),
        local_user_key_seed: Hex(ls),
        remote_user_id: remote_user_id.into(),
        remote_user_key_seed: Hex(rs),
        expected: SafetyNumberExpected {
            local_user_key: Hex(lk.to_bytes()),
            remote_user_key: Hex(rk.to_bytes()),
            safety_number: SafetyNumber::new(local_user_id, &lk, remote_user_id, &rk)
                .as_str()
                .into(),
        },
    }
}

/// libsignal's published vector (`fingerprint_test_v1`).
const LIBSIGNAL_ALICE_KEY: &str =
    "0506863bc66d02b40d27b8d49ca7c09e9239236f9d7d25d6fcca5ce13c7064d868";
const LIBSIGNAL_BOB_KEY: &str =
    "05f781b6fb32fed9ba1cf2de978d4d5da28dc34046ae814402b5c0dbd96fda907b";
const LIBSIGNAL_DIGITS: &str = "300354477692869396892869876765458257569162576843440918079131";

fn unhex(s: &str) -> Result<Vec<u8>, String> {
    hex::decode(s).map_err(|e| e.to_string())
}

/// The identity.json file.
pub fn identity_file() -> Result<IdentityFile, String> {
    let user_keys = vec![user_key_case("user_key_1"), user_key_case("user_key_2")];
    let alice_uk = seed("alice/user_key_seed");
    let certificates = vec![
        certificate_case("certificate_device_1", alice_uk, "alice", 1)?,
        certificate_case("certificate_largest_device_id", alice_uk, "alice", u32::MAX)?,
        certificate_case(
            "certificate_longest_user_id",
            seed("carol/user_key_seed"),
            &"c".repeat(64),
            7,
        )?,
    ];
    let (mut device_lists, sequence) = versions()?;
    let invalid_device_lists = invalid_lists(&device_lists[1])?;
    device_lists.extend(more_lists()?);

    let link_requests = link_requests()?;
    let link_responses = link_responses(&device_lists)?;
    let bad_list = invalid_device_lists
        .iter()
        .find(|e| e.name == "signature_byte_changed")
        .ok_or("no signature_byte_changed list")?;
    let invalid_link_blobs =
        invalid_link_blobs(&link_requests[0], &link_responses[0], &bad_list.wire.0)?;

    let fingerprints = vec![FingerprintCase {
        name: "fingerprint_libsignal_v1".into(),
        iterations: 5200,
        local_id: "+14152222222".into(),
        local_key: HexBytes(unhex(LIBSIGNAL_ALICE_KEY)?),
        remote_id: "+14153333333".into(),
        remote_key: HexBytes(unhex(LIBSIGNAL_BOB_KEY)?),
        expected: LIBSIGNAL_DIGITS.into(),
    }];
    let safety_numbers = vec![
        safety_number_case(
            "safety_number_alice_bob",
            "alice",
            "alice/user_key_seed",
            "bob",
            "bob/user_key_seed",
        ),
        safety_number_case(
            "safety_number_same_key_two_ids",
            "carol",
            "carol/user_key_seed",
            "dóra 🦊",
            "carol/user_key_seed",
        ),
    ];
    Ok(IdentityFile {
        profile: PROFILE.into(),
        user_keys,
        certificates,
        device_lists,
        sequences: vec![sequence],
        invalid_device_lists,
        fingerprints,
        safety_numbers,
        link_codes: link_codes()?,
        link_code_texts: link_code_texts()?,
        link_requests,
        link_responses,
        invalid_link_blobs,
        relay_transcripts: relay_transcripts()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_generated_file_verifies() {
        let file = identity_file().unwrap();
        for result in verify_identity(&file) {
            assert_eq!(result.outcome, Ok(()), "{}", result.name);
        }
    }
}
