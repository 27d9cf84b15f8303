//! The session behind a sealed case of `envelope.json`: the X3DH and
//! ratchet inputs from which its `session_message` is recomputed, and
//! their generation.
//!
//! Alice runs X3DH with Bob's bundle, starts her ratchet with
//! `alice_ratchet_private`, and encrypts the padded contents named in
//! `contents` (entries of the file's `contents`) in order, message `i` with
//! `header_nonces[i]`. Message 0 goes out in a prekey message with the two
//! prekey ids, the others as ratchet messages; the case seals message
//! `message`. Bob, running the responder's side, must decrypt every message
//! up to it to the named content's padded bytes.

use rand_core::{CryptoRng, RngCore};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tacit::envelope::Content;
use tacit::ratchet::{Ratchet, RatchetConfig};
use tacit::wire::{PreKeyMessage, SessionMessage};

use crate::envelope::ContentCase;
use crate::generate::inputs;
use crate::schema::{Hex, X3dhInputs};
use crate::script_rng::ScriptRng;
use crate::verify::Parties;

/// The inputs of a sealed case's session message.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SessionInputs {
    /// The handshake (Alice initiates, Bob responds), as in `x3dh.json`.
    pub x3dh: X3dhInputs,
    /// The signed prekey id in the prekey message.
    pub signed_prekey_id: u32,
    /// The one-time prekey id in the prekey message (`null` exactly when
    /// the handshake has no one-time prekey).
    #[serde(deserialize_with = "required_nullable")]
    pub one_time_prekey_id: Option<u32>,
    /// Alice's first ratchet private key.
    pub alice_ratchet_private: Hex<32>,
    /// The names of the `contents` entries Alice sends, in order.
    pub contents: Vec<String>,
    /// The header nonce of each message.
    pub header_nonces: Vec<Hex<24>>,
    /// The index of the message the case seals.
    pub message: usize,
}

fn required_nullable<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d)
}

/// Alice's messages of the session, checked by Bob's decryption: the
/// padded content each must give.
pub(crate) fn recompute(
    session: &SessionInputs,
    contents: &[ContentCase],
) -> Result<Vec<SessionMessage>, String> {
    if session.contents.len() != session.header_nonces.len()
        || session.message >= session.contents.len()
    {
        return Err("session: contents, header_nonces and message disagree".into());
    }
    if session.one_time_prekey_id.is_some() != session.x3dh.bob_one_time_prekey_private.is_some() {
        return Err("session: one_time_prekey_id and the handshake disagree".into());
    }
    let parties = Parties::new(&session.x3dh);
    let (initiation, agreement) = parties.handshake()?;
    let mut rng = ScriptRng::new([session.alice_ratchet_private.0]);
    let mut alice = Ratchet::new_initiator(
        initiation.agreement.session_keys(),
        &parties.signed_prekey.public_key(),
        RatchetConfig::default(),
        &mut rng,
    )
    .map_err(|e| format!("session: {e}"))?;
    let mut bob = Ratchet::new_responder(
        agreement.session_keys(),
        parties.signed_prekey.clone(),
        RatchetConfig::default(),
    );
    let mut messages = Vec::new();
    for (i, (name, nonce)) in session
        .contents
        .iter()
        .zip(&session.header_nonces)
        .enumerate()
    {
        let case = contents
            .iter()
            .find(|c| &c.name == name)
            .ok_or(format!("session: no content {name}"))?;
        let padded = &case.expected.padded.0;
        rng.load_nonce(nonce.0);
        let encrypted = alice
            .encrypt(padded, &mut rng)
            .map_err(|e| format!("session: {e}"))?;
        if let Some(violation) = rng.take_violation() {
            return Err(format!("session randomness: {violation}"));
        }
        if rng.nonce_pending() {
            return Err(format!("session: message {i} drew no nonce"));
        }
        let decrypted = bob
            .decrypt(&encrypted, &mut rand_core::OsRng)
            .map_err(|e| format!("session: Bob cannot decrypt message {i}: {e}"))?;
        if decrypted.as_slice() != padded.as_slice() {
            return Err(format!("session: message {i} decrypts to other bytes"));
        }
        messages.push(if i == 0 {
            SessionMessage::PreKey(Box::new(PreKeyMessage {
                identity_key: parties.alice.public_key(),
                ephemeral_key: initiation.ephemeral_key,
                signed_prekey_id: session.signed_prekey_id,
                one_time_prekey_id: session.one_time_prekey_id,
                message: encrypted,
                kem: None,
            }))
        } else {
            SessionMessage::Ratchet(encrypted)
        });
    }
    if rng.keys_left() != 0 {
        return Err("session: alice_ratchet_private was not used".into());
    }
    Ok(messages)
}

/// A deterministic generator for the session inputs: a SHA-256 stream keyed
/// by a label, recording what it hands out so that the file can list it.
struct RecordingRng {
    label: String,
    counter: u64,
    draws: Vec<Vec<u8>>,
}

impl RngCore for RecordingRng {
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
        for block in dest.chunks_mut(32) {
            let bytes: [u8; 32] = Sha256::digest(format!("{}/{}", self.label, self.counter)).into();
            self.counter += 1;
            block.copy_from_slice(&bytes[..block.len()]);
        }
        self.draws.push(dest.to_vec());
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}

impl CryptoRng for RecordingRng {}

/// The inputs of a session in which Alice sends `contents` (name and
/// content), each message drawing from a SHA-256 stream labelled by `name`;
/// `message` is left at 0.
pub(crate) fn generate(name: &str, contents: &[(&str, &Content)]) -> Result<SessionInputs, String> {
    let x3dh = inputs(&format!("envelope/{name}"), true);
    let parties = Parties::new(&x3dh);
    let (initiation, _) = parties.handshake()?;
    let mut rng = RecordingRng {
        label: format!("tacit-v1 test vectors/envelope/{name}/rng"),
        counter: 0,
        draws: Vec::new(),
    };
    let mut alice = Ratchet::new_initiator(
        initiation.agreement.session_keys(),
        &parties.signed_prekey.public_key(),
        RatchetConfig::default(),
        &mut rng,
    )
    .map_err(|e| e.to_string())?;
    for (_, content) in contents {
        let padded = content.to_padded().map_err(|e| e.to_string())?;
        alice
            .encrypt(&padded, &mut rng)
            .map_err(|e| e.to_string())?;
    }
    let key = |draw: &Vec<u8>| <[u8; 32]>::try_from(draw.as_slice()).map(Hex);
    let nonce = |draw: &Vec<u8>| <[u8; 24]>::try_from(draw.as_slice()).map(Hex);
    let (first, rest) = rng.draws.split_first().ok_or("no draws")?;
    Ok(SessionInputs {
        x3dh,
        signed_prekey_id: 1,
        one_time_prekey_id: Some(2),
        alice_ratchet_private: key(first).map_err(|_| "the first draw is not a key")?,
        contents: contents.iter().map(|(n, _)| n.to_string()).collect(),
        header_nonces: rest
            .iter()
            .map(nonce)
            .collect::<Result<_, _>>()
            .map_err(|_| "a draw is not a nonce")?,
        message: 0,
    })
}
