//! `pqxdh.json` (profile `tacit-v2`, `docs/PROTOCOL.md` 15.12): its schema,
//! its generation, and its verification, which recomputes every output
//! from the inputs alone and replays every invalid entry against a
//! responder holding exactly the case's keys.

use std::collections::BTreeSet;

use rand_core::{RngCore, SeedableRng};
use serde::{Deserialize, Serialize};
use tacit::error::{KemError, PqxdhError, WireError, X3dhError};
use tacit::kem::{KemKeyPair, SignedKemPreKey, KEM_NAME};
use tacit::keys::{IdentityKey, IdentityKeyPair, KeyPair, PublicKey};
use tacit::pqxdh;
use tacit::ratchet::{Ratchet, RatchetConfig};
use tacit::wire::{PreKeyBundleMessage, PreKeyMessage, WireMessage};
use tacit::x3dh;
use tacit::PreKeyBundle;

use crate::schema::{required_nullable, Hex, HexBytes};
use crate::script_rng::ScriptRng;
use crate::verify::{check, CaseResult};

/// The profile `pqxdh.json` carries.
pub const PROFILE_V2: &str = "tacit-v2";

/// `pqxdh.json`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct PqxdhFile {
    /// Always `tacit-v2`.
    pub profile: String,
    /// Always `ML-KEM-1024`.
    pub kem: String,
    /// Valid handshakes with their expected outputs.
    pub cases: Vec<PqxdhCase>,
    /// Bundles and prekey messages that must be refused.
    pub invalid: Vec<PqxdhInvalid>,
}

/// One valid handshake and first message.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct PqxdhCase {
    /// The case's name.
    pub name: String,
    /// Alice's Ed25519 seed.
    pub alice_identity_seed: Hex<32>,
    /// Bob's Ed25519 seed.
    pub bob_identity_seed: Hex<32>,
    /// `SPK_B`'s id.
    pub bob_signed_prekey_id: u32,
    /// `SPK_B`'s private key.
    pub bob_signed_prekey_private: Hex<32>,
    /// `OPK_B`'s id, or null.
    #[serde(deserialize_with = "required_nullable")]
    pub bob_one_time_prekey_id: Option<u32>,
    /// `OPK_B`'s private key, null iff the id is.
    #[serde(deserialize_with = "required_nullable")]
    pub bob_one_time_prekey_private: Option<Hex<32>>,
    /// `PQPK_B`'s id.
    pub bob_kem_prekey_id: u32,
    /// Whether `PQPK_B` is a one-time (or the last-resort) KEM prekey.
    pub bob_kem_prekey_one_time: bool,
    /// Key generation seed `d`.
    pub bob_kem_prekey_d: Hex<32>,
    /// Key generation seed `z`.
    pub bob_kem_prekey_z: Hex<32>,
    /// `EK_A`'s private key.
    pub alice_ephemeral_private: Hex<32>,
    /// The encapsulation randomness `m`.
    pub kem_encapsulation_m: Hex<32>,
    /// Alice's first ratchet private key.
    pub alice_ratchet_private: Hex<32>,
    /// The first message's header nonce.
    pub header_nonce: Hex<24>,
    /// The first message's plaintext.
    pub plaintext: HexBytes,
    /// What the inputs give.
    pub expected: PqxdhExpected,
}

/// The outputs of a case.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct PqxdhExpected {
    /// `Enc(IK_A)`.
    pub alice_identity_public: Hex<32>,
    /// `Enc(IK_B)`.
    pub bob_identity_public: Hex<32>,
    /// `Enc(SPK_B)`.
    pub bob_signed_prekey_public: Hex<32>,
    /// Ed25519 over `Enc(SPK_B)`.
    pub bob_signed_prekey_signature: Hex<64>,
    /// `Enc(OPK_B)`, or null.
    #[serde(deserialize_with = "required_nullable")]
    pub bob_one_time_prekey_public: Option<Hex<32>>,
    /// `EncodeKEM(PQPK_B)`.
    pub bob_kem_prekey_encoded: HexBytes,
    /// Ed25519 over `EncodeKEM(PQPK_B)`.
    pub bob_kem_prekey_signature: Hex<64>,
    /// `Enc(EK_A)`.
    pub alice_ephemeral_public: Hex<32>,
    /// `CT`.
    pub kem_ciphertext: HexBytes,
    /// `SS`.
    pub kem_shared_secret: Hex<32>,
    /// `SK`.
    pub sk: Hex<32>,
    /// `AD`.
    pub ad: Hex<64>,
    /// `RK0`.
    pub root_key: Hex<32>,
    /// `HKA`.
    pub header_key_a: Hex<32>,
    /// `NHKB`.
    pub next_header_key_b: Hex<32>,
    /// The version-2 bundle's wire bytes.
    pub bundle: HexBytes,
    /// The version-2 prekey message's wire bytes.
    pub first_message: HexBytes,
}

/// A bundle or prekey message that must be refused.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct PqxdhInvalid {
    /// The entry's name.
    pub name: String,
    /// The case whose keys are used.
    pub case: String,
    /// `bundle` or `message`.
    pub kind: String,
    /// For a message: deliver the case's first message first.
    pub after_first_message: bool,
    /// The hostile bytes.
    pub bytes: HexBytes,
    /// The error name (15.12).
    pub error: String,
}

/// The keys of a case.
struct Keys {
    alice: IdentityKeyPair,
    bob: IdentityKeyPair,
    spk: KeyPair,
    opk: Option<KeyPair>,
    kem: KemKeyPair,
}

impl Keys {
    fn new(case: &PqxdhCase) -> Result<Self, String> {
        let mut seed = [0u8; 64];
        seed[..32].copy_from_slice(&case.bob_kem_prekey_d.0);
        seed[32..].copy_from_slice(&case.bob_kem_prekey_z.0);
        let opk = match (
            case.bob_one_time_prekey_id,
            case.bob_one_time_prekey_private,
        ) {
            (Some(_), Some(k)) => Some(KeyPair::from_private_bytes(k.0)),
            (None, None) => None,
            _ => return Err("one-time prekey id and private key must both be null or not".into()),
        };
        Ok(Self {
            alice: IdentityKeyPair::from_seed(&case.alice_identity_seed.0),
            bob: IdentityKeyPair::from_seed(&case.bob_identity_seed.0),
            spk: KeyPair::from_private_bytes(case.bob_signed_prekey_private.0),
            opk,
            kem: KemKeyPair::from_seed(&seed),
        })
    }

    fn bundle(&self, case: &PqxdhCase) -> PreKeyBundleMessage {
        PreKeyBundleMessage {
            identity_key: self.bob.public_key(),
            signed_prekey_id: case.bob_signed_prekey_id,
            signed_prekey: self.spk.public_key(),
            signed_prekey_signature: self.bob.sign_prekey(&self.spk.public_key()),
            one_time_prekey: case
                .bob_one_time_prekey_id
                .zip(self.opk.as_ref().map(KeyPair::public_key)),
            kem_prekey: Some(SignedKemPreKey {
                id: case.bob_kem_prekey_id,
                key: self.kem.public_key().clone(),
                signature: self.bob.sign_kem_prekey(self.kem.public_key()),
            }),
        }
    }
}

/// Alice's side of a case: the agreement and the first message.
fn alice_side(
    keys: &Keys,
    case: &PqxdhCase,
    bundle: &PreKeyBundleMessage,
) -> Result<(pqxdh::Initiation, PreKeyMessage), String> {
    let pq = bundle.bundle();
    if pq.kem_prekey.is_none() {
        return Err("the bundle offers no KEM prekey".into());
    }
    let mut rng = ScriptRng::new([
        case.alice_ephemeral_private.0,
        case.kem_encapsulation_m.0,
        case.alice_ratchet_private.0,
    ]);
    let init = pqxdh::initiate(&keys.alice, &pq, &mut rng)
        .map_err(|e| format!("initiator refused the bundle: {e}"))?;
    let mut ratchet = Ratchet::new_initiator(
        init.agreement.session_keys(),
        &bundle.signed_prekey,
        RatchetConfig::default(),
        &mut rng,
    )
    .map_err(|e| format!("ratchet: {e}"))?;
    rng.load_nonce(case.header_nonce.0);
    let message = ratchet
        .encrypt(&case.plaintext.0, &mut rng)
        .map_err(|e| format!("encrypt: {e}"))?;
    if let Some(v) = rng.take_violation() {
        return Err(format!("initiator randomness: {v}"));
    }
    if rng.keys_left() != 0 || rng.nonce_pending() {
        return Err("initiator randomness: not all recorded values were drawn".into());
    }
    let first = PreKeyMessage {
        identity_key: keys.alice.public_key(),
        ephemeral_key: init.ephemeral_key,
        signed_prekey_id: case.bob_signed_prekey_id,
        one_time_prekey_id: case.bob_one_time_prekey_id,
        message,
        kem: Some((case.bob_kem_prekey_id, init.kem_ciphertext.clone())),
    };
    Ok((init, first))
}

/// The session a responder stored from an accepted first message: its
/// base key `EK_A`, the initiator's identity, and the ratchet.
struct StoredSession {
    base_key: PublicKey,
    peer: IdentityKey,
    ratchet: Ratchet,
}

/// Bob, holding exactly the case's keys, with the policy on, and the
/// session of the first message he accepted (15.12).
struct Responder<'a> {
    case: &'a PqxdhCase,
    keys: &'a Keys,
    consumed_opk: bool,
    consumed_kem: bool,
    session: Option<StoredSession>,
}

impl<'a> Responder<'a> {
    fn new(case: &'a PqxdhCase, keys: &'a Keys) -> Self {
        Self {
            case,
            keys,
            consumed_opk: false,
            consumed_kem: false,
            session: None,
        }
    }

    /// Check 0 of 15.5, then the stored session for a message with its
    /// base key and identity (section 11), else checks 2 to 7 in order;
    /// `Ok` with the plaintext, or the error name. Nothing changes on an
    /// error; a new session consumes the one-time prekeys used.
    fn receive(&mut self, bytes: &[u8]) -> Result<Vec<u8>, String> {
        let m = PreKeyMessage::from_wire(bytes).map_err(|e| message_wire_error(&e))?;
        if let Some(s) = self
            .session
            .as_mut()
            .filter(|s| s.base_key == m.ephemeral_key && s.peer == m.identity_key)
        {
            return s
                .ratchet
                .decrypt(&m.message, &mut rand_core::OsRng)
                .map_err(|_| "decrypt".to_string());
        }
        let Some((kem_id, ct)) = &m.kem else {
            return Err("classical_refused".into());
        };
        if m.signed_prekey_id != self.case.bob_signed_prekey_id {
            return Err("unknown_signed_prekey".into());
        }
        let opk = match m.one_time_prekey_id {
            None => None,
            Some(id) if Some(id) == self.case.bob_one_time_prekey_id && !self.consumed_opk => {
                self.keys.opk.as_ref()
            }
            Some(_) => return Err("unknown_one_time_prekey".into()),
        };
        let kem_one_time = self.case.bob_kem_prekey_one_time;
        if *kem_id != self.case.bob_kem_prekey_id || (kem_one_time && self.consumed_kem) {
            return Err("unknown_kem_prekey".into());
        }
        let agreement = pqxdh::respond(
            &self.keys.bob,
            &self.keys.spk,
            opk,
            &self.keys.kem,
            &m.identity_key,
            &m.ephemeral_key,
            ct,
        )
        .map_err(|_| "small_order".to_string())?;
        let mut ratchet = Ratchet::new_responder(
            agreement.session_keys(),
            self.keys.spk.clone(),
            RatchetConfig::default(),
        );
        let plaintext = ratchet
            .decrypt(&m.message, &mut rand_core::OsRng)
            .map_err(|_| "decrypt".to_string())?;
        self.consumed_opk |= opk.is_some();
        self.consumed_kem |= kem_one_time;
        self.session = Some(StoredSession {
            base_key: m.ephemeral_key,
            peer: m.identity_key,
            ratchet,
        });
        Ok(plaintext)
    }
}

fn message_wire_error(e: &WireError) -> String {
    match e {
        WireError::UnknownVersion(_) | WireError::VersionMismatch => "version",
        WireError::InvalidLength {
            field: "kem_ciphertext",
            ..
        } => "kem_ciphertext_length",
        _ => "malformed",
    }
    .into()
}

fn bundle_error(bytes: &[u8], alice: &IdentityKeyPair) -> Result<(), String> {
    let bundle = PreKeyBundleMessage::from_wire(bytes).map_err(|e| {
        match e {
            WireError::UnknownVersion(_) | WireError::VersionMismatch => "version",
            WireError::InvalidLength {
                field: "kem_prekey",
                ..
            } => "kem_key_length",
            WireError::InvalidKemKey {
                error: KemError::InvalidEncoding,
                ..
            } => "kem_key_encoding",
            WireError::InvalidKemKey {
                error: KemError::InvalidPublicKey,
                ..
            } => "kem_key_invalid",
            _ => "malformed",
        }
        .to_string()
    })?;
    // Any randomness will do for a bundle that must be refused.
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(0);
    let pq = bundle.bundle();
    if pq.kem_prekey.is_none() {
        // A version-1 bundle starts a tacit-v1 session (15.8): X3DH.
        return x3dh::initiate(alice, &pq, &mut rng).map(drop).map_err(|e| {
            match e {
                X3dhError::InvalidSignature => "signature",
                X3dhError::SmallOrderKey => "small_order",
                _ => "unexpected",
            }
            .to_string()
        });
    }
    pqxdh::initiate(alice, &pq, &mut rng)
        .map(drop)
        .map_err(|e| {
            match e {
                PqxdhError::InvalidSignature => "signature",
                PqxdhError::InvalidKemSignature => "kem_signature",
                PqxdhError::SmallOrderKey => "small_order",
                _ => "unexpected",
            }
            .to_string()
        })
}

fn verify_case(case: &PqxdhCase) -> Result<(), String> {
    let keys = Keys::new(case)?;
    let e = &case.expected;
    check(
        "alice_identity_public",
        &keys.alice.public_key().to_bytes(),
        &e.alice_identity_public.0,
    )?;
    check(
        "bob_identity_public",
        &keys.bob.public_key().to_bytes(),
        &e.bob_identity_public.0,
    )?;
    check(
        "bob_signed_prekey_public",
        &keys.spk.public_key().to_bytes(),
        &e.bob_signed_prekey_public.0,
    )?;
    let bundle = keys.bundle(case);
    check(
        "bob_signed_prekey_signature",
        &bundle.signed_prekey_signature.to_bytes(),
        &e.bob_signed_prekey_signature.0,
    )?;
    match (&keys.opk, e.bob_one_time_prekey_public) {
        (Some(k), Some(x)) => check(
            "bob_one_time_prekey_public",
            &k.public_key().to_bytes(),
            &x.0,
        )?,
        (None, None) => {}
        _ => return Err("bob_one_time_prekey_public: null mismatch".into()),
    }
    let kem = bundle.kem_prekey.as_ref().ok_or("no KEM prekey")?;
    check(
        "bob_kem_prekey_encoded",
        &kem.key.to_encoded(),
        &e.bob_kem_prekey_encoded.0,
    )?;
    check(
        "bob_kem_prekey_signature",
        &kem.signature.to_bytes(),
        &e.bob_kem_prekey_signature.0,
    )?;
    check("bundle", &bundle.to_wire(), &e.bundle.0)?;
    let decoded =
        PreKeyBundleMessage::from_wire(&e.bundle.0).map_err(|x| format!("bundle: {x}"))?;
    if decoded != bundle {
        return Err("bundle: decodes to another bundle".into());
    }
    let (init, first) = alice_side(&keys, case, &bundle)?;
    check(
        "alice_ephemeral_public",
        &init.ephemeral_key.to_bytes(),
        &e.alice_ephemeral_public.0,
    )?;
    let (ct, ss) = kem
        .key
        .encapsulate_deterministic(&case.kem_encapsulation_m.0);
    check("kem_ciphertext", ct.as_bytes(), &e.kem_ciphertext.0)?;
    check(
        "kem_ciphertext (initiator)",
        init.kem_ciphertext.as_bytes(),
        &e.kem_ciphertext.0,
    )?;
    check("kem_shared_secret", ss.as_bytes(), &e.kem_shared_secret.0)?;
    check(
        "kem_shared_secret (decapsulated)",
        keys.kem.decapsulate(&ct).as_bytes(),
        &e.kem_shared_secret.0,
    )?;
    check("sk", init.agreement.shared_secret().as_bytes(), &e.sk.0)?;
    check("ad", init.agreement.associated_data(), &e.ad.0)?;
    let session = init.agreement.session_keys();
    check("root_key", session.root_key().as_bytes(), &e.root_key.0)?;
    check(
        "header_key_a",
        session.initiator_header_key().as_bytes(),
        &e.header_key_a.0,
    )?;
    check(
        "next_header_key_b",
        session.responder_next_header_key().as_bytes(),
        &e.next_header_key_b.0,
    )?;
    check("first_message", &first.to_wire(), &e.first_message.0)?;
    let mut bob = Responder::new(case, &keys);
    let plaintext = bob
        .receive(&e.first_message.0)
        .map_err(|x| format!("responder refused the first message: {x}"))?;
    check("plaintext (responder)", &plaintext, &case.plaintext.0)
}

fn verify_invalid(file: &PqxdhFile, entry: &PqxdhInvalid) -> Result<(), String> {
    let case = file
        .cases
        .iter()
        .find(|c| c.name == entry.case)
        .ok_or_else(|| format!("no case named {:?}", entry.case))?;
    let keys = Keys::new(case)?;
    let outcome = match entry.kind.as_str() {
        "bundle" if !entry.after_first_message => bundle_error(&entry.bytes.0, &keys.alice),
        "bundle" => return Err("after_first_message must be false for bundles".into()),
        "message" => {
            let mut bob = Responder::new(case, &keys);
            if entry.after_first_message {
                bob.receive(&case.expected.first_message.0)
                    .map_err(|x| format!("first message refused: {x}"))?;
            }
            bob.receive(&entry.bytes.0).map(drop)
        }
        other => return Err(format!("unknown kind {other:?}")),
    };
    match outcome {
        Ok(()) => Err(format!("accepted; expected {:?}", entry.error)),
        Err(name) if name == entry.error => Ok(()),
        Err(name) => Err(format!("refused with {name:?}; expected {:?}", entry.error)),
    }
}

/// Verifies every case and invalid entry of a `pqxdh.json` file.
pub fn verify_pqxdh(file: &PqxdhFile) -> Vec<CaseResult> {
    let mut out: Vec<CaseResult> = Vec::new();
    if file.profile != PROFILE_V2 || file.kem != KEM_NAME {
        out.push(CaseResult {
            name: "header".into(),
            outcome: Err(format!("profile {:?} / kem {:?}", file.profile, file.kem)),
        });
    }
    let names: BTreeSet<&str> = file.cases.iter().map(|c| c.name.as_str()).collect();
    if names.len() != file.cases.len() {
        out.push(CaseResult {
            name: "names".into(),
            outcome: Err("case names are not unique".into()),
        });
    }
    out.extend(file.cases.iter().map(|c| CaseResult {
        name: c.name.clone(),
        outcome: verify_case(c),
    }));
    out.extend(file.invalid.iter().map(|i| CaseResult {
        name: i.name.clone(),
        outcome: verify_invalid(file, i),
    }));
    out
}

// Generation.

fn draw<const N: usize>(rng: &mut impl RngCore) -> [u8; N] {
    let mut out = [0u8; N];
    rng.fill_bytes(&mut out);
    out
}

fn make_case(name: &str, seed: u64, opk: bool, one_time_kem: bool) -> Result<PqxdhCase, String> {
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(seed);
    let mut case = PqxdhCase {
        name: name.into(),
        alice_identity_seed: Hex(draw(&mut rng)),
        bob_identity_seed: Hex(draw(&mut rng)),
        bob_signed_prekey_id: 7,
        bob_signed_prekey_private: Hex(draw(&mut rng)),
        bob_one_time_prekey_id: opk.then_some(42),
        bob_one_time_prekey_private: opk.then(|| Hex(draw(&mut rng))),
        bob_kem_prekey_id: if one_time_kem { 9 } else { 1 },
        bob_kem_prekey_one_time: one_time_kem,
        bob_kem_prekey_d: Hex(draw(&mut rng)),
        bob_kem_prekey_z: Hex(draw(&mut rng)),
        alice_ephemeral_private: Hex(draw(&mut rng)),
        kem_encapsulation_m: Hex(draw(&mut rng)),
        alice_ratchet_private: Hex(draw(&mut rng)),
        header_nonce: Hex(draw(&mut rng)),
        plaintext: HexBytes(format!("first message of {name}").into_bytes()),
        expected: PqxdhExpected {
            alice_identity_public: Hex([0; 32]),
            bob_identity_public: Hex([0; 32]),
            bob_signed_prekey_public: Hex([0; 32]),
            bob_signed_prekey_signature: Hex([0; 64]),
            bob_one_time_prekey_public: None,
            bob_kem_prekey_encoded: HexBytes::default(),
            bob_kem_prekey_signature: Hex([0; 64]),
            alice_ephemeral_public: Hex([0; 32]),
            kem_ciphertext: HexBytes::default(),
            kem_shared_secret: Hex([0; 32]),
            sk: Hex([0; 32]),
            ad: Hex([0; 64]),
            root_key: Hex([0; 32]),
            header_key_a: Hex([0; 32]),
            next_header_key_b: Hex([0; 32]),
            bundle: HexBytes::default(),
            first_message: HexBytes::default(),
        },
    };
    let keys = Keys::new(&case)?;
    let bundle = keys.bundle(&case);
    let (init, first) = alice_side(&keys, &case, &bundle)?;
    let kem = bundle.kem_prekey.as_ref().ok_or("no KEM prekey")?;
    let (_, ss) = kem
        .key
        .encapsulate_deterministic(&case.kem_encapsulation_m.0);
    let session = init.agreement.session_keys();
    let mut ad = [0u8; 64];
    ad.copy_from_slice(init.agreement.associated_data());
    case.expected = PqxdhExpected {
        alice_identity_public: Hex(keys.alice.public_key().to_bytes()),
        bob_identity_public: Hex(keys.bob.public_key().to_bytes()),
        bob_signed_prekey_public: Hex(keys.spk.public_key().to_bytes()),
        bob_signed_prekey_signature: Hex(bundle.signed_prekey_signature.to_bytes()),
        bob_one_time_prekey_public: keys.opk.as_ref().map(|k| Hex(k.public_key().to_bytes())),
        bob_kem_prekey_encoded: HexBytes(kem.key.to_encoded()),
        bob_kem_prekey_signature: Hex(kem.signature.to_bytes()),
        alice_ephemeral_public: Hex(init.ephemeral_key.to_bytes()),
        kem_ciphertext: HexBytes(init.kem_ciphertext.as_bytes().to_vec()),
        kem_shared_secret: Hex(*ss.as_bytes()),
        sk: Hex(*init.agreement.shared_secret().as_bytes()),
        ad: Hex(ad),
        root_key: Hex(*session.root_key().as_bytes()),
        header_key_a: Hex(*session.initiator_header_key().as_bytes()),
        next_header_key_b: Hex(*session.responder_next_header_key().as_bytes()),
        bundle: HexBytes(bundle.to_wire()),
        first_message: HexBytes(first.to_wire()),
    };
    Ok(case)
}

/// Replaces the length-prefixed field whose contents are `old` (a
/// two-byte protobuf length) with `new`.
fn splice(wire: &[u8], old: &[u8], new: &[u8]) -> Result<Vec<u8>, String> {
    let at = wire
        .windows(old.len())
        .position(|w| w == old)
        .ok_or("field not found")?;
    let mut out = wire[..at - 2].to_vec();
    out.push((new.len() & 0x7f) as u8 | 0x80);
    out.push((new.len() >> 7) as u8);
    out.extend_from_slice(new);
    out.extend_from_slice(&wire[at + old.len()..]);
    Ok(out)
}

fn invalid(
    name: &str,
    case: &PqxdhCase,
    kind: &str,
    after: bool,
    bytes: Vec<u8>,
    error: &str,
) -> PqxdhInvalid {
    PqxdhInvalid {
        name: name.into(),
        case: case.name.clone(),
        kind: kind.into(),
        after_first_message: after,
        bytes: HexBytes(bytes),
        error: error.into(),
    }
}

fn invalid_entries(case: &PqxdhCase) -> Result<Vec<PqxdhInvalid>, String> {
    let keys = Keys::new(case)?;
    let bundle = keys.bundle(case);
    let wire = bundle.to_wire();
    let encoded = bundle
        .kem_prekey
        .as_ref()
        .ok_or("no KEM prekey")?
        .key
        .to_encoded();
    let mut out = Vec::new();
    let mut short = encoded.clone();
    short.pop();
    out.push(invalid(
        "KEM prekey of 1568 bytes",
        case,
        "bundle",
        false,
        splice(&wire, &encoded, &short)?,
        "kem_key_length",
    ));
    let mut long = encoded.clone();
    long.push(0);
    out.push(invalid(
        "KEM prekey of 1570 bytes",
        case,
        "bundle",
        false,
        splice(&wire, &encoded, &long)?,
        "kem_key_length",
    ));
    let mut wrong_type = encoded.clone();
    wrong_type[0] = 0x05;
    out.push(invalid(
        "KEM prekey with the EC type byte",
        case,
        "bundle",
        false,
        splice(&wire, &encoded, &wrong_type)?,
        "kem_key_encoding",
    ));
    let mut overflow = encoded.clone();
    overflow[1] = 0xff;
    overflow[2] |= 0x0f;
    out.push(invalid(
        "KEM prekey with a coefficient of 4095",
        case,
        "bundle",
        false,
        splice(&wire, &encoded, &overflow)?,
        "kem_key_invalid",
    ));
    let mallory = IdentityKeyPair::from_seed(&[0x4d; 32]);
    let mut other = bundle.clone();
    if let Some(k) = other.kem_prekey.as_mut() {
        k.signature = mallory.sign_kem_prekey(&k.key);
    }
    out.push(invalid(
        "KEM prekey signed by another identity",
        case,
        "bundle",
        false,
        other.to_wire(),
        "kem_signature",
    ));
    let mut swapped = bundle.clone();
    if let Some(k) = swapped.kem_prekey.as_mut() {
        k.signature = bundle.signed_prekey_signature;
    }
    out.push(invalid(
        "EC signature as the KEM prekey's",
        case,
        "bundle",
        false,
        swapped.to_wire(),
        "kem_signature",
    ));
    let mut swapped = bundle.clone();
    swapped.signed_prekey_signature = bundle.kem_prekey.as_ref().ok_or("no KEM prekey")?.signature;
    out.push(invalid(
        "KEM signature as the signed prekey's",
        case,
        "bundle",
        false,
        swapped.to_wire(),
        "signature",
    ));
    // A version-1 bundle runs X3DH (15.8), so its errors are X3DH's.
    let mut classical = bundle.clone();
    classical.kem_prekey = None;
    classical.signed_prekey_signature = mallory.sign_prekey(&classical.signed_prekey);
    out.push(invalid(
        "version-1 bundle with a signed prekey signed by another identity",
        case,
        "bundle",
        false,
        classical.to_wire(),
        "signature",
    ));
    let mut v1 = wire.clone();
    v1[1] = 1;
    out.push(invalid(
        "version-1 bundle with KEM fields",
        case,
        "bundle",
        false,
        v1,
        "version",
    ));

    let first = &case.expected.first_message.0;
    let ct = &case.expected.kem_ciphertext.0;
    out.push(invalid(
        "KEM ciphertext of 1567 bytes",
        case,
        "message",
        false,
        splice(first, ct, &ct[..1567])?,
        "kem_ciphertext_length",
    ));
    let mut long = ct.clone();
    long.push(0);
    out.push(invalid(
        "KEM ciphertext of 1569 bytes",
        case,
        "message",
        false,
        splice(first, ct, &long)?,
        "kem_ciphertext_length",
    ));
    let mut flipped = ct.clone();
    flipped[0] ^= 0x01;
    out.push(invalid(
        "KEM ciphertext with a flipped bit",
        case,
        "message",
        false,
        splice(first, ct, &flipped)?,
        "decrypt",
    ));
    let mut v1 = first.clone();
    v1[1] = 1;
    out.push(invalid(
        "version-1 prekey message with KEM fields",
        case,
        "message",
        false,
        v1,
        "version",
    ));

    // A classical first message (X3DH) made with Bob's keys.
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(0x7631);
    let classical = PreKeyBundle {
        kem_prekey: None,
        ..bundle.bundle()
    };
    let init = x3dh::initiate(&keys.alice, &classical, &mut rng).map_err(|e| e.to_string())?;
    let mut ratchet = Ratchet::new_initiator(
        init.agreement.session_keys(),
        &bundle.signed_prekey,
        RatchetConfig::default(),
        &mut rng,
    )
    .map_err(|e| e.to_string())?;
    let message = ratchet
        .encrypt(b"classical", &mut rng)
        .map_err(|e| e.to_string())?;
    let classical = PreKeyMessage {
        identity_key: keys.alice.public_key(),
        ephemeral_key: init.ephemeral_key,
        signed_prekey_id: case.bob_signed_prekey_id,
        one_time_prekey_id: case.bob_one_time_prekey_id,
        message,
        kem: None,
    };
    let classical_wire = classical.to_wire();
    out.push(invalid(
        "classical (tacit-v1) first message",
        case,
        "message",
        false,
        classical_wire.clone(),
        "classical_refused",
    ));
    let mut v2 = classical_wire;
    v2[1] = 2;
    out.push(invalid(
        "version-2 prekey message without KEM fields",
        case,
        "message",
        false,
        v2,
        "version",
    ));

    let first_message = PreKeyMessage::from_wire(first).map_err(|e| e.to_string())?;
    let mut unknown = first_message.clone();
    if let Some((id, _)) = unknown.kem.as_mut() {
        *id = 999;
    }
    out.push(invalid(
        "unknown KEM prekey id",
        case,
        "message",
        false,
        unknown.to_wire(),
        "unknown_kem_prekey",
    ));

    if case.bob_kem_prekey_one_time {
        // Another first message (another EK_A and m) naming the consumed
        // one-time KEM prekey, and no EC one-time prekey.
        let mut again = bundle.clone();
        again.one_time_prekey = None;
        let pq = again.bundle();
        let init = pqxdh::initiate(&keys.alice, &pq, &mut rng).map_err(|e| e.to_string())?;
        let mut ratchet = Ratchet::new_initiator(
            init.agreement.session_keys(),
            &again.signed_prekey,
            RatchetConfig::default(),
            &mut rng,
        )
        .map_err(|e| e.to_string())?;
        let message = ratchet
            .encrypt(b"again", &mut rng)
            .map_err(|e| e.to_string())?;
        let second = PreKeyMessage {
            identity_key: keys.alice.public_key(),
            ephemeral_key: init.ephemeral_key,
            signed_prekey_id: case.bob_signed_prekey_id,
            one_time_prekey_id: None,
            message,
            kem: Some((case.bob_kem_prekey_id, init.kem_ciphertext)),
        };
        out.push(invalid(
            "second first message on a consumed one-time KEM prekey",
            case,
            "message",
            true,
            second.to_wire(),
            "unknown_kem_prekey",
        ));
    }
    out.push(replayed(case));
    Ok(out)
}

/// The case's first message delivered again after it was accepted: it goes
/// through the stored session (15.12) and fails there.
fn replayed(case: &PqxdhCase) -> PqxdhInvalid {
    invalid(
        &format!("first message replayed ({})", case.name),
        case,
        "message",
        true,
        case.expected.first_message.0.clone(),
        "decrypt",
    )
}

/// The shipped `pqxdh.json`.
pub fn pqxdh_file() -> Result<PqxdhFile, String> {
    let cases = vec![
        make_case("opk and one-time KEM prekey", 0x0076_3201, true, true)?,
        make_case("no opk, last-resort KEM prekey", 0x0076_3202, false, false)?,
        make_case("opk and last-resort KEM prekey", 0x0076_3203, true, false)?,
        make_case("no opk, one-time KEM prekey", 0x0076_3204, false, true)?,
    ];
    let mut invalid = invalid_entries(&cases[0])?;
    invalid.push(replayed(&cases[1]));
    Ok(PqxdhFile {
        profile: PROFILE_V2.into(),
        kem: KEM_NAME.into(),
        cases,
        invalid,
    })
}
