//! The relay transcripts of `identity.json` (`docs/relay.md`, "Accounts and
//! login"): the bytes a device signs to register and to log in, and its
//! identity key's signatures over them.
//!
//! The transcripts are built here from the specification, independently of
//! `tacit-relay-proto`, and `register_transcript`, `login_transcript`,
//! `Register::sign` and `Login::sign` must give the same.

use ed25519_dalek::{Signer, SigningKey};
use serde::{Deserialize, Serialize};
use tacit::identity::{DeviceList, UserKeyPair};
use tacit::keys::IdentityKeyPair;
use tacit::Address;
use tacit_relay_proto::{login_transcript, register_transcript, Login, Register};

use crate::identity::seed;
use crate::schema::{Hex, HexBytes};
use crate::verify::check;

/// The transcripts of one device at one relay, for one challenge.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RelayTranscriptCase {
    /// The case's name.
    pub name: String,
    /// The device identity key's seed.
    pub identity_seed: Hex<32>,
    /// The relay's name.
    pub server_name: String,
    /// The relay's challenge.
    pub challenge: Hex<32>,
    /// The client's clock, milliseconds since the Unix epoch.
    pub timestamp_ms: u64,
    /// The device's user id.
    pub user_id: String,
    /// The device's id.
    pub device_id: u32,
    /// What signing must produce.
    pub expected: RelayTranscriptExpected,
}

/// A transcript case's outputs.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RelayTranscriptExpected {
    /// `Enc(IK)`.
    pub identity_key: Hex<32>,
    /// The registration transcript.
    pub register_transcript: HexBytes,
    /// Ed25519-Sign(IK, registration transcript).
    pub register_signature: Hex<64>,
    /// The login transcript.
    pub login_transcript: HexBytes,
    /// Ed25519-Sign(IK, login transcript).
    pub login_signature: Hex<64>,
}

const LOGIN_CONTEXT: &[u8] = b"tacit-relay-login-v1";
const REGISTER_CONTEXT: &[u8] = b"tacit-relay-register-v1";

/// The fields both transcripts share, after their separator.
fn transcript_by_hand(
    context: &[u8],
    server_name: &str,
    challenge: &[u8; 32],
    timestamp_ms: u64,
    user_id: &str,
    device_id: u32,
) -> Vec<u8> {
    let mut out = context.to_vec();
    out.push(u8::try_from(server_name.len()).unwrap_or(u8::MAX));
    out.extend_from_slice(server_name.as_bytes());
    out.extend_from_slice(challenge);
    out.extend_from_slice(&timestamp_ms.to_be_bytes());
    out.push(u8::try_from(user_id.len()).unwrap_or(u8::MAX));
    out.extend_from_slice(user_id.as_bytes());
    out.extend_from_slice(&device_id.to_be_bytes());
    out
}

/// Verifies a transcript case.
pub fn verify_relay_transcript(case: &RelayTranscriptCase) -> Result<(), String> {
    let expected = &case.expected;
    if case.server_name.len() > 255 {
        return Err("server_name: over 255 bytes".into());
    }
    let signing = SigningKey::from_bytes(&case.identity_seed.0);
    check(
        "identity_key",
        &signing.verifying_key().to_bytes(),
        &expected.identity_key.0,
    )?;
    let identity = IdentityKeyPair::from_seed(&case.identity_seed.0);
    let identity_key = identity.public_key();
    check(
        "identity_key",
        &identity_key.to_bytes(),
        &expected.identity_key.0,
    )?;
    let address =
        Address::new(&case.user_id, case.device_id).map_err(|e| format!("address: {e}"))?;
    let challenge = &case.challenge.0;

    let mut register = transcript_by_hand(
        REGISTER_CONTEXT,
        &case.server_name,
        challenge,
        case.timestamp_ms,
        &case.user_id,
        case.device_id,
    );
    register.extend_from_slice(&identity_key.to_bytes());
    check(
        "register_transcript (by hand)",
        &register,
        &expected.register_transcript.0,
    )?;
    check(
        "register_transcript",
        &register_transcript(
            &case.server_name,
            challenge,
            case.timestamp_ms,
            &address,
            &identity_key,
        ),
        &expected.register_transcript.0,
    )?;
    check(
        "register_signature (Ed25519 over the transcript)",
        &signing.sign(&register).to_bytes(),
        &expected.register_signature.0,
    )?;
    // The registration carries a device list its signature does not cover:
    // any list with the device on it.
    let user = UserKeyPair::from_seed(&seed("transcript/user_key_seed"));
    let list = DeviceList::sign(
        &user,
        &case.user_id,
        1,
        &[(case.device_id, identity_key, 0)],
    )
    .map_err(|e| format!("device list: {e}"))?;
    let signed = Register::sign(
        &identity,
        &case.server_name,
        challenge,
        case.timestamp_ms,
        address.clone(),
        &list,
    );
    check(
        "register_signature",
        &signed.signature.to_bytes(),
        &expected.register_signature.0,
    )?;
    if signed.identity_key != identity_key || signed.timestamp_ms != case.timestamp_ms {
        return Err("Register::sign carries another key or timestamp".into());
    }

    let login = transcript_by_hand(
        LOGIN_CONTEXT,
        &case.server_name,
        challenge,
        case.timestamp_ms,
        &case.user_id,
        case.device_id,
    );
    check(
        "login_transcript (by hand)",
        &login,
        &expected.login_transcript.0,
    )?;
    check(
        "login_transcript",
        &login_transcript(&case.server_name, challenge, case.timestamp_ms, &address),
        &expected.login_transcript.0,
    )?;
    check(
        "login_signature (Ed25519 over the transcript)",
        &signing.sign(&login).to_bytes(),
        &expected.login_signature.0,
    )?;
    let signed = Login::sign(
        &identity,
        &case.server_name,
        challenge,
        case.timestamp_ms,
        address,
    );
    check(
        "login_signature",
        &signed.signature.to_bytes(),
        &expected.login_signature.0,
    )?;
    identity_key
        .verify(&login, &signed.signature)
        .map_err(|e| format!("login_signature does not verify: {e}"))
}

fn case(
    name: &str,
    identity_seed: [u8; 32],
    server_name: &str,
    timestamp_ms: u64,
    user_id: &str,
    device_id: u32,
) -> Result<RelayTranscriptCase, String> {
    let challenge = seed(&format!("transcript/{name}/challenge"));
    let identity = IdentityKeyPair::from_seed(&identity_seed);
    let identity_key = identity.public_key();
    let address = Address::new(user_id, device_id).map_err(|e| e.to_string())?;
    let register = register_transcript(
        server_name,
        &challenge,
        timestamp_ms,
        &address,
        &identity_key,
    );
    let login = login_transcript(server_name, &challenge, timestamp_ms, &address);
    Ok(RelayTranscriptCase {
        name: name.into(),
        identity_seed: Hex(identity_seed),
        server_name: server_name.into(),
        challenge: Hex(challenge),
        timestamp_ms,
        user_id: user_id.into(),
        device_id,
        expected: RelayTranscriptExpected {
            identity_key: Hex(identity_key.to_bytes()),
            register_signature: Hex(identity.sign(&register).to_bytes()),
            register_transcript: HexBytes(register),
            login_signature: Hex(identity.sign(&login).to_bytes()),
            login_transcript: HexBytes(login),
        },
    })
}

/// The transcript cases: alice's device 1, the longest names and largest
/// numbers, non-ASCII names and timestamp 0.
pub fn relay_transcripts() -> Result<Vec<RelayTranscriptCase>, String> {
    Ok(vec![
        case(
            "transcript_alice_device_1",
            seed("alice/device_1/identity_seed"),
            "relay.example.org",
            1_767_225_600_000,
            "alice",
            1,
        )?,
        case(
            "transcript_longest_names_largest_numbers",
            seed("transcript/longest/identity_seed"),
            &format!("{}.example", "r".repeat(247)),
            u64::MAX,
            &"c".repeat(64),
            u32::MAX,
        )?,
        case(
            "transcript_utf8_names_timestamp_0",
            seed("dora/device_300/identity_seed"),
            "relé.example",
            0,
            "dóra 🦊",
            300,
        )?,
    ])
}
