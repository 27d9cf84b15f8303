//! The linking entries of `identity.json` (`docs/PROTOCOL.md` 14.7): link
//! codes, their text, slots and key; request and response blobs for given
//! nonces; and blobs that must not open.
//!
//! The text, the slots, the key, the payloads and the blobs are built here
//! from the specification (base32, HKDF-SHA256, XChaCha20-Poly1305),
//! independently of the core, and the core's `LinkCode` and `LinkSecrets`
//! must give the same.

use std::collections::VecDeque;

use chacha20poly1305::aead::AeadInPlace;
use chacha20poly1305::{KeyInit, XChaCha20Poly1305};
use rand_core::{CryptoRng, RngCore};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use tacit::error::IdentityError;
use tacit::identity::{DeviceList, LinkCode, LinkRequest, LinkSecrets};
use tacit::keys::IdentityKeyPair;
use tacit::Address;

use crate::identity::{seed, DeviceListCase};
use crate::schema::{Hex, HexBytes};
use crate::verify::check;

// ------------------------------------------------------------------ schema

/// A link code from its 10 bytes.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct LinkCodeCase {
    /// The case's name.
    pub name: String,
    /// The code's bytes (the random input).
    pub code: Hex<10>,
    /// What the code gives.
    pub expected: LinkCodeExpected,
}

/// A link code case's outputs.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct LinkCodeExpected {
    /// The displayed code: 16 base32 characters in four groups of four.
    pub text: String,
    /// The request's slot id.
    pub request_slot: Hex<32>,
    /// The response's slot id.
    pub response_slot: Hex<32>,
    /// The blobs' key `K`.
    pub key: Hex<32>,
}

/// A typed code and what it reads as.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct LinkCodeText {
    /// The entry's name.
    pub name: String,
    /// The text as typed.
    pub text: String,
    /// The code's bytes, or `null` if the text is refused.
    #[serde(deserialize_with = "required_nullable")]
    pub code: Option<Hex<10>>,
}

/// A new device's request, sealed with a given nonce.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct LinkRequestCase {
    /// The case's name.
    pub name: String,
    /// The code's bytes.
    pub code: Hex<10>,
    /// The new device's user id.
    pub user_id: String,
    /// The new device's id.
    pub device_id: u32,
    /// The new device's identity key's seed.
    pub identity_seed: Hex<32>,
    /// The blob's nonce.
    pub nonce: Hex<24>,
    /// What sealing must produce.
    pub expected: LinkRequestExpected,
}

/// A link request case's outputs.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct LinkRequestExpected {
    /// `Enc(IK)` of the new device.
    pub identity_key: Hex<32>,
    /// The request payload.
    pub payload: HexBytes,
    /// The blob: nonce, ciphertext, tag.
    pub blob: HexBytes,
}

/// A response: a list of `device_lists`, sealed with a given nonce.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct LinkResponseCase {
    /// The case's name.
    pub name: String,
    /// The code's bytes.
    pub code: Hex<10>,
    /// The name of the `device_lists` case whose `wire` is the payload.
    pub device_list: String,
    /// The blob's nonce.
    pub nonce: Hex<24>,
    /// What sealing must produce.
    pub expected: LinkResponseExpected,
}

/// A link response case's output.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct LinkResponseExpected {
    /// The blob: nonce, ciphertext, tag.
    pub blob: HexBytes,
}

/// Which slot a blob is read from.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum LinkSlot {
    /// Read with `open_request`.
    Request,
    /// Read with `open_response`.
    Response,
}

/// Why a blob is refused: the `IdentityError` variant.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum LinkErrorName {
    /// `IdentityError::LinkBlobDoesNotOpen`.
    LinkBlobDoesNotOpen,
    /// `IdentityError::MalformedLinkRequest`.
    MalformedLinkRequest,
    /// `IdentityError::InvalidListSignature` (a response's list).
    InvalidListSignature,
}

/// A blob that must be refused.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct InvalidLinkBlob {
    /// The entry's name.
    pub name: String,
    /// The code it is read with.
    pub code: Hex<10>,
    /// The slot it is read as.
    pub slot: LinkSlot,
    /// The bytes.
    pub blob: HexBytes,
    /// The error.
    pub error: LinkErrorName,
}

fn required_nullable<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d)
}

// ------------------------------------------ the specification, written out

const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
const LINK_LABEL: &[u8] = b"tacit/link/v1";
const REQUEST_LABEL: &[u8] = b"tacit/link/v1/request";

/// The displayed code: 5 bits a character from the most significant, a
/// dash after every fourth.
fn code_text(code: &[u8; 10]) -> String {
    let mut bits = 0u128;
    for b in code {
        bits = (bits << 8) | u128::from(*b);
    }
    let mut out = String::new();
    for i in 0..16 {
        if i > 0 && i % 4 == 0 {
            out.push('-');
        }
        let digit = ((bits >> (5 * (15 - i))) & 31) as usize;
        out.push(char::from(ALPHABET[digit]));
    }
    out
}

/// `request_slot`, `response_slot` and `K`.
type Secrets = ([u8; 32], [u8; 32], [u8; 32]);

/// `request_slot || response_slot || K`.
fn secrets_of(code: &[u8; 10]) -> Result<Secrets, String> {
    let mut okm = [0u8; 96];
    hkdf::Hkdf::<Sha256>::new(Some(&[0u8; 32]), code)
        .expand(LINK_LABEL, &mut okm)
        .map_err(|e| e.to_string())?;
    let mut out = ([0u8; 32], [0u8; 32], [0u8; 32]);
    out.0.copy_from_slice(&okm[..32]);
    out.1.copy_from_slice(&okm[32..64]);
    out.2.copy_from_slice(&okm[64..]);
    Ok(out)
}

/// `nonce || XChaCha20-Poly1305(key, nonce, payload, aad = slot)`.
fn seal(
    key: &[u8; 32],
    nonce: &[u8; 24],
    slot: &[u8; 32],
    payload: &[u8],
) -> Result<Vec<u8>, String> {
    let mut body = payload.to_vec();
    let tag = XChaCha20Poly1305::new(key.into())
        .encrypt_in_place_detached(nonce.into(), slot, &mut body)
        .map_err(|e| e.to_string())?;
    let mut blob = nonce.to_vec();
    blob.extend_from_slice(&body);
    blob.extend_from_slice(&tag);
    Ok(blob)
}

/// The request payload of 14.7 over any bytes.
fn request_payload(user_id: &[u8], device_id: u32, identity: &[u8]) -> Vec<u8> {
    let mut out = REQUEST_LABEL.to_vec();
    out.push(u8::try_from(user_id.len()).unwrap_or(u8::MAX));
    out.extend_from_slice(user_id);
    out.extend_from_slice(&device_id.to_be_bytes());
    out.extend_from_slice(identity);
    out
}

/// Hands out given bytes, in order, whatever the requests' sizes.
struct BytesRng {
    bytes: VecDeque<u8>,
    short: bool,
}

impl BytesRng {
    fn new(bytes: &[u8]) -> Self {
        Self {
            bytes: bytes.iter().copied().collect(),
            short: false,
        }
    }

    /// Whether every byte was drawn, and no more.
    fn exactly_drawn(&self) -> Result<(), String> {
        if self.short {
            Err("the core drew more random bytes than the inputs hold".into())
        } else if !self.bytes.is_empty() {
            Err(format!(
                "the core left {} random bytes unused",
                self.bytes.len()
            ))
        } else {
            Ok(())
        }
    }
}

impl RngCore for BytesRng {
    fn next_u32(&mut self) -> u32 {
        let mut b = [0u8; 4];
        self.fill_bytes(&mut b);
        u32::from_le_bytes(b)
    }

    fn next_u64(&mut self) -> u64 {
        let mut b = [0u8; 8];
        self.fill_bytes(&mut b);
        u64::from_le_bytes(b)
    }

    fn fill_bytes(&mut self, dest: &mut [u8]) {
        for d in dest {
            match self.bytes.pop_front() {
                Some(b) => *d = b,
                None => {
                    self.short = true;
                    *d = 0;
                }
            }
        }
    }

    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}

impl CryptoRng for BytesRng {}

/// The core's code from its bytes (drawn from a generator that holds
/// exactly them).
fn core_code(code: &[u8; 10]) -> Result<LinkCode, String> {
    let mut rng = BytesRng::new(code);
    let out = LinkCode::generate(&mut rng);
    rng.exactly_drawn()?;
    Ok(out)
}

fn address(user_id: &str, device_id: u32) -> Result<Address, String> {
    Address::new(user_id, device_id).map_err(|e| format!("address: {e}"))
}

// -------------------------------------------------------------- verification

/// Verifies a link code case.
pub fn verify_link_code(case: &LinkCodeCase) -> Result<(), String> {
    let expected = &case.expected;
    let code = core_code(&case.code.0)?;
    check(
        "text",
        code.to_string().as_bytes(),
        expected.text.as_bytes(),
    )?;
    check(
        "text (by hand)",
        code_text(&case.code.0).as_bytes(),
        expected.text.as_bytes(),
    )?;
    let typed = expected.text.to_lowercase().replace('-', " ");
    for text in [&expected.text, &typed] {
        match LinkCode::parse(text) {
            Ok(parsed) if parsed == code => {}
            Ok(_) => return Err(format!("text: {text:?} parses to another code")),
            Err(e) => return Err(format!("text: {text:?} does not parse: {e}")),
        }
    }
    let (request_slot, response_slot, key) = secrets_of(&case.code.0)?;
    check("request_slot", &request_slot, &expected.request_slot.0)?;
    check("response_slot", &response_slot, &expected.response_slot.0)?;
    check("key", &key, &expected.key.0)?;
    let secrets = code.secrets();
    check(
        "request_slot",
        &secrets.request_slot(),
        &expected.request_slot.0,
    )?;
    check(
        "response_slot",
        &secrets.response_slot(),
        &expected.response_slot.0,
    )?;
    // The core keeps K to itself: it must open a request sealed by hand
    // under the expected key.
    let identity = IdentityKeyPair::from_seed(&[1; 32]).public_key();
    let payload = request_payload(b"alice", 1, &identity.to_bytes());
    let blob = seal(
        &expected.key.0,
        &[0; 24],
        &expected.request_slot.0,
        &payload,
    )?;
    let request = secrets
        .open_request(&blob)
        .map_err(|e| format!("key: a request sealed under it does not open: {e}"))?;
    if request.identity != identity || request.address != address("alice", 1)? {
        return Err("key: a request sealed under it opens to another request".into());
    }
    Ok(())
}

/// Verifies a typed code.
pub fn verify_link_code_text(entry: &LinkCodeText) -> Result<(), String> {
    match (LinkCode::parse(&entry.text), &entry.code) {
        (Ok(parsed), Some(code)) => {
            if parsed == core_code(&code.0)? {
                Ok(())
            } else {
                Err("code: the text parses to another code".into())
            }
        }
        (Err(IdentityError::InvalidLinkCode), None) => Ok(()),
        (Ok(_), None) => Err("the text parses, expected a refusal".into()),
        (Err(e), _) => Err(format!("code: refused with {e}")),
    }
}

/// Verifies a request case.
pub fn verify_link_request(case: &LinkRequestCase) -> Result<(), String> {
    let expected = &case.expected;
    let identity = IdentityKeyPair::from_seed(&case.identity_seed.0).public_key();
    check(
        "identity_key",
        &identity.to_bytes(),
        &expected.identity_key.0,
    )?;
    let payload = request_payload(
        case.user_id.as_bytes(),
        case.device_id,
        &identity.to_bytes(),
    );
    check("payload", &payload, &expected.payload.0)?;
    let (request_slot, _, key) = secrets_of(&case.code.0)?;
    check(
        "blob (sealed by hand)",
        &seal(&key, &case.nonce.0, &request_slot, &payload)?,
        &expected.blob.0,
    )?;
    let address = address(&case.user_id, case.device_id)?;
    let secrets = core_code(&case.code.0)?.secrets();
    let mut rng = BytesRng::new(&case.nonce.0);
    let blob = secrets
        .seal_request(&address, &identity, &mut rng)
        .map_err(|e| format!("sealing refused: {e}"))?;
    rng.exactly_drawn()?;
    check("blob", &blob, &expected.blob.0)?;
    let opened = secrets
        .open_request(&expected.blob.0)
        .map_err(|e| format!("blob does not open: {e}"))?;
    if opened != (LinkRequest { address, identity }) {
        return Err("blob opens to another request".into());
    }
    Ok(())
}

/// Verifies a response case; `lists` are the file's `device_lists`.
pub fn verify_link_response(
    case: &LinkResponseCase,
    lists: &[DeviceListCase],
) -> Result<(), String> {
    let named = lists
        .iter()
        .find(|c| c.name == case.device_list)
        .ok_or(format!("no device list {}", case.device_list))?;
    let wire = &named.expected.wire.0;
    let list = DeviceList::from_wire(wire).map_err(|e| format!("the list is refused: {e}"))?;
    let (_, response_slot, key) = secrets_of(&case.code.0)?;
    check(
        "blob (sealed by hand)",
        &seal(&key, &case.nonce.0, &response_slot, wire)?,
        &case.expected.blob.0,
    )?;
    let secrets = core_code(&case.code.0)?.secrets();
    let mut rng = BytesRng::new(&case.nonce.0);
    let blob = secrets
        .seal_response(&list, &mut rng)
        .map_err(|e| format!("sealing refused: {e}"))?;
    rng.exactly_drawn()?;
    check("blob", &blob, &case.expected.blob.0)?;
    let opened = secrets
        .open_response(&case.expected.blob.0)
        .map_err(|e| format!("blob does not open: {e}"))?;
    if opened != list {
        return Err("blob opens to another list".into());
    }
    Ok(())
}

fn open(secrets: &LinkSecrets, slot: LinkSlot, blob: &[u8]) -> Result<(), IdentityError> {
    match slot {
        LinkSlot::Request => secrets.open_request(blob).map(|_| ()),
        LinkSlot::Response => secrets.open_response(blob).map(|_| ()),
    }
}

/// Verifies a blob that must be refused.
pub fn verify_invalid_link_blob(entry: &InvalidLinkBlob) -> Result<(), String> {
    let secrets = core_code(&entry.code.0)?.secrets();
    let error = match open(&secrets, entry.slot, &entry.blob.0) {
        Ok(()) => return Err("the blob opened".into()),
        Err(e) => e,
    };
    let got = match error {
        IdentityError::LinkBlobDoesNotOpen => LinkErrorName::LinkBlobDoesNotOpen,
        IdentityError::MalformedLinkRequest => LinkErrorName::MalformedLinkRequest,
        IdentityError::InvalidListSignature => LinkErrorName::InvalidListSignature,
        other => return Err(format!("refused for an unnamed reason: {other}")),
    };
    if got != entry.error {
        return Err(format!(
            "expected error {:?}, got {got:?} ({error})",
            entry.error
        ));
    }
    Ok(())
}

// ---------------------------------------------------------------- generation

fn code_bytes(label: &str) -> [u8; 10] {
    let mut out = [0u8; 10];
    out.copy_from_slice(&seed(label)[..10]);
    out
}

fn nonce(label: &str) -> [u8; 24] {
    let mut out = [0u8; 24];
    out.copy_from_slice(&seed(label)[..24]);
    out
}

fn code_case(name: &str, code: [u8; 10]) -> Result<LinkCodeCase, String> {
    let core = core_code(&code)?;
    let (request_slot, response_slot, key) = secrets_of(&code)?;
    Ok(LinkCodeCase {
        name: name.into(),
        code: Hex(code),
        expected: LinkCodeExpected {
            text: core.to_string(),
            request_slot: Hex(request_slot),
            response_slot: Hex(response_slot),
            key: Hex(key),
        },
    })
}

/// The link code cases: the zero code, the all-0xFF code, two random ones.
pub fn link_codes() -> Result<Vec<LinkCodeCase>, String> {
    Ok(vec![
        code_case("link_code_zero", [0; 10])?,
        code_case("link_code_all_ones", [0xff; 10])?,
        code_case("link_code_1", code_bytes("link/code_1"))?,
        code_case("link_code_2", code_bytes("link/code_2"))?,
    ])
}

/// Typed codes: accepted spellings of `link_code_1` and refused texts.
pub fn link_code_texts() -> Result<Vec<LinkCodeText>, String> {
    let code = code_bytes("link/code_1");
    let text = core_code(&code)?.to_string();
    let bare = text.replace('-', "");
    let entry = |name: &str, text: String, code: Option<[u8; 10]>| LinkCodeText {
        name: name.into(),
        text,
        code: code.map(Hex),
    };
    let mut replaced = bare.clone();
    replaced.replace_range(15..16, "1");
    Ok(vec![
        entry("link_text_as_shown", text.clone(), Some(code)),
        entry("link_text_lower_case", text.to_lowercase(), Some(code)),
        entry("link_text_no_separators", bare.clone(), Some(code)),
        entry(
            "link_text_spaces_and_dashes_anywhere",
            format!(
                " {}- -{} {}--",
                &bare[..3],
                &bare[3..9].to_lowercase(),
                &bare[9..]
            ),
            Some(code),
        ),
        entry("link_text_15_characters", bare[..15].into(), None),
        entry("link_text_17_characters", format!("{bare}A"), None),
        entry("link_text_digit_1", replaced, None),
        entry("link_text_padding", format!("{}=", &bare[..15]), None),
        entry(
            "link_text_tab",
            format!("{}\t{}", &bare[..8], &bare[8..]),
            None,
        ),
        entry("link_text_empty", String::new(), None),
    ])
}

fn request_case(
    name: &str,
    code: [u8; 10],
    user_id: &str,
    device_id: u32,
    identity_seed: [u8; 32],
) -> Result<LinkRequestCase, String> {
    let n = nonce(&format!("link/{name}/nonce"));
    let identity = IdentityKeyPair::from_seed(&identity_seed).public_key();
    let secrets = core_code(&code)?.secrets();
    let blob = secrets
        .seal_request(
            &address(user_id, device_id)?,
            &identity,
            &mut BytesRng::new(&n),
        )
        .map_err(|e| e.to_string())?;
    Ok(LinkRequestCase {
        name: name.into(),
        code: Hex(code),
        user_id: user_id.into(),
        device_id,
        identity_seed: Hex(identity_seed),
        nonce: Hex(n),
        expected: LinkRequestExpected {
            identity_key: Hex(identity.to_bytes()),
            payload: HexBytes(request_payload(
                user_id.as_bytes(),
                device_id,
                &identity.to_bytes(),
            )),
            blob: HexBytes(blob),
        },
    })
}

/// The request cases: alice's device 3 (the device `list_v2_device_added`
/// adds), and the longest user id with the largest device id.
pub fn link_requests() -> Result<Vec<LinkRequestCase>, String> {
    Ok(vec![
        request_case(
            "link_request_alice_device_3",
            code_bytes("link/code_1"),
            "alice",
            3,
            seed("alice/device_3/identity_seed"),
        )?,
        request_case(
            "link_request_longest_ids",
            code_bytes("link/code_2"),
            &"c".repeat(64),
            u32::MAX,
            seed("link/longest/identity_seed"),
        )?,
    ])
}

/// The response case: `list_v2_device_added` under `link_code_1`.
pub fn link_responses(lists: &[DeviceListCase]) -> Result<Vec<LinkResponseCase>, String> {
    let name = "link_response_alice_v2";
    let device_list = "list_v2_device_added";
    let code = code_bytes("link/code_1");
    let n = nonce(&format!("link/{name}/nonce"));
    let wire = &lists
        .iter()
        .find(|c| c.name == device_list)
        .ok_or("no list_v2_device_added")?
        .expected
        .wire
        .0;
    let list = DeviceList::from_wire(wire).map_err(|e| e.to_string())?;
    let blob = core_code(&code)?
        .secrets()
        .seal_response(&list, &mut BytesRng::new(&n))
        .map_err(|e| e.to_string())?;
    Ok(vec![LinkResponseCase {
        name: name.into(),
        code: Hex(code),
        device_list: device_list.into(),
        nonce: Hex(n),
        expected: LinkResponseExpected {
            blob: HexBytes(blob),
        },
    }])
}

/// Blobs to refuse, built from the first request and the response, and
/// request payloads that break one rule each, sealed correctly.
pub fn invalid_link_blobs(
    request: &LinkRequestCase,
    response: &LinkResponseCase,
    bad_list_wire: &[u8],
) -> Result<Vec<InvalidLinkBlob>, String> {
    use LinkErrorName as E;
    use LinkSlot::{Request, Response};
    let code = request.code.0;
    let other = code_bytes("link/code_2");
    let (request_slot, response_slot, key) = secrets_of(&code)?;
    let entry = |name: &str, code: [u8; 10], slot, blob: Vec<u8>, error| InvalidLinkBlob {
        name: name.into(),
        code: Hex(code),
        slot,
        blob: HexBytes(blob),
        error,
    };
    let good = &request.expected.blob.0;
    let flipped = |i: usize| {
        let mut b = good.clone();
        b[i] ^= 0x01;
        b
    };
    let mut out = vec![
        entry(
            "link_request_another_code",
            other,
            Request,
            good.clone(),
            E::LinkBlobDoesNotOpen,
        ),
        entry(
            "link_request_nonce_byte_changed",
            code,
            Request,
            flipped(0),
            E::LinkBlobDoesNotOpen,
        ),
        entry(
            "link_request_ciphertext_byte_changed",
            code,
            Request,
            flipped(30),
            E::LinkBlobDoesNotOpen,
        ),
        entry(
            "link_request_tag_byte_changed",
            code,
            Request,
            flipped(good.len() - 1),
            E::LinkBlobDoesNotOpen,
        ),
        entry(
            "link_request_read_as_response",
            code,
            Response,
            good.clone(),
            E::LinkBlobDoesNotOpen,
        ),
        entry(
            "link_response_read_as_request",
            code,
            Request,
            response.expected.blob.0.clone(),
            E::LinkBlobDoesNotOpen,
        ),
        entry(
            "link_response_another_code",
            other,
            Response,
            response.expected.blob.0.clone(),
            E::LinkBlobDoesNotOpen,
        ),
        entry(
            "link_blob_39_bytes",
            code,
            Request,
            good[..39].to_vec(),
            E::LinkBlobDoesNotOpen,
        ),
    ];

    // Request payloads, each sealed under the code's key and request slot.
    let identity = request.expected.identity_key.0;
    let user_id = request.user_id.as_bytes();
    let device_id = request.device_id;
    let mut small = [0u8; 32];
    small[0] = 1;
    // y = 2: x^2 = (y^2 - 1) / (d y^2 + 1) has no square root.
    let mut not_a_point = [0u8; 32];
    not_a_point[0] = 2;
    let good_payload = request_payload(user_id, device_id, &identity);
    let mut label_changed = good_payload.clone();
    label_changed[20] = b'T';
    let mut trailing = good_payload.clone();
    trailing.push(0);
    let payloads: Vec<(&str, Vec<u8>)> = vec![
        ("link_request_empty_payload", Vec::new()),
        ("link_request_label_changed", label_changed),
        (
            "link_request_user_id_empty",
            request_payload(b"", device_id, &identity),
        ),
        (
            "link_request_user_id_65_bytes",
            request_payload(&[b'c'; 65], device_id, &identity),
        ),
        (
            "link_request_user_id_control_character",
            request_payload(b"ali\nce", device_id, &identity),
        ),
        (
            "link_request_user_id_not_utf8",
            request_payload(b"ali\xffce", device_id, &identity),
        ),
        (
            "link_request_device_id_zero",
            request_payload(user_id, 0, &identity),
        ),
        ("link_request_trailing_byte", trailing),
        (
            "link_request_one_byte_short",
            good_payload[..good_payload.len() - 1].to_vec(),
        ),
        (
            "link_request_identity_key_small_order",
            request_payload(user_id, device_id, &small),
        ),
        (
            "link_request_identity_key_not_a_point",
            request_payload(user_id, device_id, &not_a_point),
        ),
    ];
    for (name, payload) in payloads {
        let n = nonce(&format!("link/{name}/nonce"));
        out.push(entry(
            name,
            code,
            Request,
            seal(&key, &n, &request_slot, &payload)?,
            E::MalformedLinkRequest,
        ));
    }
    let name = "link_response_list_signature_changed";
    let n = nonce(&format!("link/{name}/nonce"));
    out.push(entry(
        name,
        code,
        Response,
        seal(&key, &n, &response_slot, bad_list_wire)?,
        E::InvalidListSignature,
    ));
    Ok(out)
}
