//! Writes `x3dh.json` and `ratchet.json`: every input derived from a fixed
//! label, every expected value computed by the core, every file verified
//! again before it is written.

use curve25519_dalek::edwards::CompressedEdwardsY;
use curve25519_dalek::scalar::Scalar;
use ed25519_dalek::SigningKey;
use rand_core::{CryptoRng, RngCore};
use sha2::{Digest, Sha256, Sha512};
use tacit::keys::{IdentityKeyPair, KeyPair, PublicKey};
use tacit::ratchet::{EncryptedMessage, Ratchet, RatchetConfig, DEFAULT_MAX_SKIP};

use crate::schema::{
    Event, Expect, Hex, HexBytes, InvalidBundle, InvalidReason, Message, MessageExpected, Party,
    RatchetCase, RatchetFile, X3dhCase, X3dhExpected, X3dhFile, X3dhInputs, PROFILE,
};
use crate::verify::Parties;
use Party::{Alice, Bob};

/// 32 bytes derived from a label.
pub(crate) fn derive(label: &str) -> [u8; 32] {
    Sha256::digest(format!("tacit-v1 test vectors/{label}")).into()
}

/// The six handshake inputs of a named case.
pub(crate) fn inputs(name: &str, one_time_prekey: bool) -> X3dhInputs {
    let bob = IdentityKeyPair::from_seed(&derive(&format!("{name}/bob_identity_seed")));
    let spk_private = derive(&format!("{name}/bob_signed_prekey_private"));
    let spk = KeyPair::from_private_bytes(spk_private);
    X3dhInputs {
        alice_identity_seed: Hex(derive(&format!("{name}/alice_identity_seed"))),
        bob_identity_seed: Hex(derive(&format!("{name}/bob_identity_seed"))),
        bob_signed_prekey_private: Hex(spk_private),
        bob_signed_prekey_signature: Hex(bob.sign_prekey(&spk.public_key()).to_bytes()),
        bob_one_time_prekey_private: one_time_prekey
            .then(|| Hex(derive(&format!("{name}/bob_one_time_prekey_private")))),
        alice_ephemeral_private: Hex(derive(&format!("{name}/alice_ephemeral_private"))),
    }
}

/// The x3dh.json file.
pub fn x3dh_file() -> Result<X3dhFile, String> {
    let cases = [
        ("x3dh_with_one_time_prekey", true),
        ("x3dh_without_one_time_prekey", false),
        ("x3dh_with_one_time_prekey_2", true),
    ]
    .into_iter()
    .map(|(name, opk)| x3dh_case(name, &inputs(name, opk)))
    .collect::<Result<Vec<_>, _>>()?;
    Ok(X3dhFile {
        profile: PROFILE.into(),
        cases,
        invalid: invalid_bundles()?,
    })
}

fn x3dh_case(name: &str, inputs: &X3dhInputs) -> Result<X3dhCase, String> {
    let parties = Parties::new(inputs);
    let (initiation, _) = parties.handshake()?;
    let keys = initiation.agreement.session_keys();
    Ok(X3dhCase {
        name: name.into(),
        alice_identity_seed: inputs.alice_identity_seed,
        bob_identity_seed: inputs.bob_identity_seed,
        bob_signed_prekey_private: inputs.bob_signed_prekey_private,
        bob_signed_prekey_signature: inputs.bob_signed_prekey_signature,
        bob_one_time_prekey_private: inputs.bob_one_time_prekey_private,
        alice_ephemeral_private: inputs.alice_ephemeral_private,
        expected: X3dhExpected {
            alice_identity_public: Hex(parties.alice.public_key().to_bytes()),
            bob_identity_public: Hex(parties.bob.public_key().to_bytes()),
            bob_signed_prekey_public: Hex(parties.signed_prekey.public_key().to_bytes()),
            bob_one_time_prekey_public: parties
                .one_time_prekey
                .as_ref()
                .map(|k| Hex(k.public_key().to_bytes())),
            alice_ephemeral_public: Hex(initiation.ephemeral_key.to_bytes()),
            sk: Hex(*initiation.agreement.shared_secret().as_bytes()),
            ad: Hex(*initiation.agreement.associated_data()),
            root_key: Hex(*keys.root_key().as_bytes()),
            header_key_a: Hex(*keys.initiator_header_key().as_bytes()),
            next_header_key_b: Hex(*keys.responder_next_header_key().as_bytes()),
        },
    })
}

/// The little-endian encoding of the group order L.
const ORDER_L: [u8; 32] = [
    0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
];

/// u-coordinates (little-endian) that give an all-zero X25519 output for
/// every clamped scalar.
fn small_order_points() -> Vec<(&'static str, [u8; 32])> {
    let mut p = [0xffu8; 32];
    p[0] = 0xed;
    p[31] = 0x7f;
    let mut p_minus_1 = p;
    p_minus_1[0] = 0xec;
    let mut p_plus_1 = p;
    p_plus_1[0] = 0xee;
    let mut one = [0u8; 32];
    one[0] = 1;
    let mut one_top_bit = one;
    one_top_bit[31] = 0x80;
    let order_8a = hex32("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800");
    let order_8b = hex32("5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157");
    vec![
        ("small_order_u_zero", [0u8; 32]),
        ("small_order_u_one", one),
        ("small_order_order_8_point", order_8a),
        ("small_order_other_order_8_point", order_8b),
        ("small_order_u_p_minus_one", p_minus_1),
        ("small_order_u_p_reduces_to_zero", p),
        ("small_order_u_p_plus_one_reduces_to_one", p_plus_1),
        ("small_order_u_one_with_top_bit_set", one_top_bit),
    ]
}

fn hex32(s: &str) -> [u8; 32] {
    let mut out = [0u8; 32];
    if let Ok(bytes) = hex::decode(s) {
        out.copy_from_slice(&bytes);
    }
    out
}

fn invalid_bundles() -> Result<Vec<InvalidBundle>, String> {
    let mut entries = Vec::new();
    let entry = |name: &str, inputs: X3dhInputs, offered: [u8; 32], error| InvalidBundle {
        name: name.into(),
        alice_identity_seed: inputs.alice_identity_seed,
        bob_identity_seed: inputs.bob_identity_seed,
        bob_signed_prekey_private: inputs.bob_signed_prekey_private,
        bob_signed_prekey_signature: inputs.bob_signed_prekey_signature,
        bob_one_time_prekey_private: inputs.bob_one_time_prekey_private,
        alice_ephemeral_private: inputs.alice_ephemeral_private,
        bob_signed_prekey_public: Hex(offered),
        error,
    };

    let base = inputs("invalid", true);
    let bob_seed = base.bob_identity_seed.0;
    let bob = IdentityKeyPair::from_seed(&bob_seed);
    let spk = KeyPair::from_private_bytes(base.bob_signed_prekey_private.0).public_key();

    // A valid signature, but over another key than the one offered.
    let other = KeyPair::from_private_bytes(derive("invalid/other_signed_prekey")).public_key();
    entries.push(entry(
        "signature_over_another_key",
        base.clone(),
        other.to_bytes(),
        InvalidReason::Signature,
    ));

    // One bit of S flipped.
    let mut flipped = base.clone();
    flipped.bob_signed_prekey_signature.0[40] ^= 0x01;
    entries.push(entry(
        "signature_bit_flipped",
        flipped,
        spk.to_bytes(),
        InvalidReason::Signature,
    ));

    // S + L: the same signature with a non-canonical S.
    let mut non_canonical = base.clone();
    let s_plus_l = add_le(&non_canonical.bob_signed_prekey_signature.0[32..], &ORDER_L);
    non_canonical.bob_signed_prekey_signature.0[32..].copy_from_slice(&s_plus_l);
    entries.push(entry(
        "signature_non_canonical_s",
        non_canonical,
        spk.to_bytes(),
        InvalidReason::Signature,
    ));

    // A signature by Alice's identity instead of Bob's.
    let mut by_alice = base.clone();
    let alice = IdentityKeyPair::from_seed(&base.alice_identity_seed.0);
    by_alice.bob_signed_prekey_signature = Hex(alice.sign_prekey(&spk).to_bytes());
    entries.push(entry(
        "signature_by_another_identity",
        by_alice,
        spk.to_bytes(),
        InvalidReason::Signature,
    ));

    // R the identity point (small order), S = k * a: the cofactorless
    // equation [S]B = R + [k]A holds, so only the strict small-order check
    // on R refuses it.
    let mut small_r = base.clone();
    small_r.bob_signed_prekey_signature = Hex(small_order_r_signature(&bob_seed, spk.as_bytes())?);
    entries.push(entry(
        "signature_small_order_r",
        small_r,
        spk.to_bytes(),
        InvalidReason::Signature,
    ));

    // Valid signatures over small-order keys: refused by the DH check.
    for (name, point) in small_order_points() {
        let mut signed = base.clone();
        signed.bob_signed_prekey_signature =
            Hex(bob.sign_prekey(&PublicKey::from_bytes(point)).to_bytes());
        entries.push(entry(name, signed, point, InvalidReason::SmallOrder));
    }
    Ok(entries)
}

/// `a + b` for 32-byte little-endian integers whose sum fits.
fn add_le(a: &[u8], b: &[u8; 32]) -> [u8; 32] {
    let mut out = [0u8; 32];
    let mut carry = 0u16;
    for ((o, x), y) in out.iter_mut().zip(a).zip(b) {
        let sum = u16::from(*x) + u16::from(*y) + carry;
        *o = sum.to_le_bytes()[0];
        carry = sum >> 8;
    }
    out
}

/// A signature `(R, S)` with `R` the identity point and `S = k * a`, which
/// satisfies `[S]B = R + [k]A` but has a small-order `R`.
fn small_order_r_signature(seed: &[u8; 32], message: &[u8]) -> Result<[u8; 64], String> {
    let signing = SigningKey::from_bytes(seed);
    let a = signing.to_scalar();
    let public = signing.verifying_key();
    let mut r = [0u8; 32];
    r[0] = 1; // the identity point, y = 1
    let k = Scalar::from_hash(
        Sha512::new()
            .chain_update(r)
            .chain_update(public.as_bytes())
            .chain_update(message),
    );
    let s = k * a;
    let mut signature = [0u8; 64];
    signature[..32].copy_from_slice(&r);
    signature[32..].copy_from_slice(s.as_bytes());
    // The case only tests strictness if the lax rule accepts it.
    let lax = public.verify_strict(message, &ed25519_dalek::Signature::from_bytes(&signature));
    let cofactorless = ed25519_dalek::Verifier::verify(
        &public,
        message,
        &ed25519_dalek::Signature::from_bytes(&signature),
    );
    if lax.is_ok() || cofactorless.is_err() || CompressedEdwardsY(r).decompress().is_none() {
        return Err("small-order R signature is not what it should be".into());
    }
    Ok(signature)
}

/// A randomness source for generation: hands out the loaded nonce for a
/// 24-byte request and a fresh labelled private key for a 32-byte one,
/// recording the keys.
struct RecordingRng {
    label: String,
    keys: Vec<[u8; 32]>,
    nonce: Option<[u8; 24]>,
    violation: Option<String>,
}

impl RecordingRng {
    fn new(label: String) -> Self {
        Self {
            label,
            keys: Vec::new(),
            nonce: None,
            violation: None,
        }
    }
}

impl RngCore for RecordingRng {
    fn next_u32(&mut self) -> u32 {
        self.violation = Some("u32 requested".into());
        0
    }
    fn next_u64(&mut self) -> u64 {
        self.violation = Some("u64 requested".into());
        0
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        match dest.len() {
            32 => {
                let key = derive(&format!("{}/{}", self.label, self.keys.len()));
                dest.copy_from_slice(&key);
                self.keys.push(key);
            }
            24 => match self.nonce.take() {
                Some(nonce) => dest.copy_from_slice(&nonce),
                None => self.violation = Some("nonce requested outside a send".into()),
            },
            n => self.violation = Some(format!("{n} bytes requested")),
        }
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}

impl CryptoRng for RecordingRng {}

/// A conversation being scripted: the core runs as events are added.
struct Conversation {
    name: String,
    max_skip: Option<u32>,
    inputs: X3dhInputs,
    alice: Ratchet,
    bob: Ratchet,
    alice_rng: RecordingRng,
    bob_rng: RecordingRng,
    messages: Vec<Message>,
    wires: Vec<EncryptedMessage>,
    events: Vec<Event>,
}

impl Conversation {
    fn new(name: &str, one_time_prekey: bool, max_skip: Option<u32>) -> Result<Self, String> {
        let inputs = inputs(name, one_time_prekey);
        let parties = Parties::new(&inputs);
        let (initiation, agreement) = parties.handshake()?;
        let config = RatchetConfig::default()
            .with_max_skip(max_skip.unwrap_or(DEFAULT_MAX_SKIP))
            .map_err(|e| e.to_string())?;
        let mut alice_rng = RecordingRng::new(format!("{name}/alice_ratchet_private"));
        let alice = Ratchet::new_initiator(
            initiation.agreement.session_keys(),
            &parties.signed_prekey.public_key(),
            config,
            &mut alice_rng,
        )
        .map_err(|e| e.to_string())?;
        let bob = Ratchet::new_responder(
            agreement.session_keys(),
            parties.signed_prekey.clone(),
            config,
        );
        Ok(Self {
            name: name.into(),
            max_skip,
            inputs,
            alice,
            bob,
            alice_rng,
            bob_rng: RecordingRng::new(format!("{name}/bob_ratchet_private")),
            messages: Vec::new(),
            wires: Vec::new(),
            events: Vec::new(),
        })
    }

    fn side(&mut self, party: Party) -> (&mut Ratchet, &mut RecordingRng) {
        match party {
            Alice => (&mut self.alice, &mut self.alice_rng),
            Bob => (&mut self.bob, &mut self.bob_rng),
        }
    }

    /// `sender` encrypts `plaintext`; returns the message's index.
    fn send(&mut self, sender: Party, plaintext: &[u8]) -> Result<usize, String> {
        let index = self.messages.len();
        let nonce: [u8; 24] = {
            let full = derive(&format!("{}/header_nonce/{index}", self.name));
            let mut n = [0u8; 24];
            n.copy_from_slice(&full[..24]);
            n
        };
        let (ratchet, rng) = self.side(sender);
        let header = ratchet.next_header().ok_or("sender cannot send yet")?;
        rng.nonce = Some(nonce);
        let wire = ratchet.encrypt(plaintext, rng).map_err(|e| e.to_string())?;
        if let Some(v) = rng.violation.take() {
            return Err(v);
        }
        self.messages.push(Message {
            sender,
            plaintext: HexBytes(plaintext.to_vec()),
            header_nonce: Hex(nonce),
            expected: MessageExpected {
                header: Hex(header.to_bytes()),
                enc_header: Hex(*wire.encrypted_header()),
                ciphertext: HexBytes(wire.ciphertext().to_vec()),
            },
        });
        self.wires.push(wire);
        self.events.push(Event::send(index));
        Ok(index)
    }

    fn sends(&mut self, sender: Party, count: usize, text: &str) -> Result<Vec<usize>, String> {
        (0..count)
            .map(|i| self.send(sender, format!("{text} {i}").as_bytes()))
            .collect()
    }

    fn receive(&mut self, index: usize, wire: &EncryptedMessage) -> Result<Vec<u8>, String> {
        let receiver = self
            .messages
            .get(index)
            .ok_or("no such message")?
            .sender
            .peer();
        let (ratchet, rng) = self.side(receiver);
        let result = ratchet.decrypt(wire, rng).map_err(|e| e.to_string());
        if let Some(v) = rng.violation.take() {
            return Err(v);
        }
        result
    }

    /// Delivers message `index`, which must decrypt.
    fn deliver(&mut self, index: usize) -> Result<(), String> {
        let wire = self.wires.get(index).cloned().ok_or("no such message")?;
        let plaintext = self
            .receive(index, &wire)
            .map_err(|e| format!("{}: message {index}: {e}", self.name))?;
        if self.messages.get(index).map(|m| &m.plaintext.0) != Some(&plaintext) {
            return Err(format!(
                "{}: message {index} decrypted to other bytes",
                self.name
            ));
        }
        self.events.push(Event::deliver(index, Expect::Ok));
        Ok(())
    }

    fn deliver_all(&mut self, indices: &[usize]) -> Result<(), String> {
        indices.iter().try_for_each(|i| self.deliver(*i))
    }

    /// Delivers message `index`, which must fail.
    fn deliver_fails(&mut self, index: usize) -> Result<(), String> {
        let wire = self.wires.get(index).cloned().ok_or("no such message")?;
        if self.receive(index, &wire).is_ok() {
            return Err(format!(
                "{}: message {index} decrypted but should fail",
                self.name
            ));
        }
        self.events.push(Event::deliver(index, Expect::Error));
        Ok(())
    }

    /// Delivers message `index` with byte `byte` flipped; it must fail.
    fn deliver_tampered(&mut self, index: usize, byte: usize) -> Result<(), String> {
        let mut bytes = self.wires.get(index).ok_or("no such message")?.to_bytes();
        *bytes.get_mut(byte).ok_or("byte out of range")? ^= 0xff;
        let wire = EncryptedMessage::from_bytes(&bytes).map_err(|e| e.to_string())?;
        if self.receive(index, &wire).is_ok() {
            return Err(format!("{}: tampered message {index} decrypted", self.name));
        }
        self.events.push(Event::deliver_tampered(index, byte));
        Ok(())
    }

    fn finish(self) -> RatchetCase {
        RatchetCase {
            name: self.name,
            max_skip: self.max_skip,
            x3dh: self.inputs,
            alice_ratchet_privates: self.alice_rng.keys.into_iter().map(Hex).collect(),
            bob_ratchet_privates: self.bob_rng.keys.into_iter().map(Hex).collect(),
            messages: self.messages,
            events: self.events,
        }
    }
}

/// The ratchet.json file.
pub fn ratchet_file() -> Result<RatchetFile, String> {
    let cases = vec![
        in_order("in_order_exchange", true)?,
        in_order("in_order_exchange_without_one_time_prekey", false)?,
        long_chain()?,
        ping_pong()?,
        out_of_order()?,
        delayed_past_max_skip()?,
        previous_chain_past_max_skip()?,
        replay()?,
        tampering()?,
        plaintext_sizes()?,
    ];
    Ok(RatchetFile {
        profile: PROFILE.into(),
        cases,
    })
}

fn in_order(name: &str, opk: bool) -> Result<RatchetCase, String> {
    let mut c = Conversation::new(name, opk, None)?;
    let a = c.sends(Alice, 3, "hello Bob")?;
    c.deliver_all(&a)?;
    let b = c.sends(Bob, 2, "hello Alice")?;
    c.deliver_all(&b)?;
    let a = c.sends(Alice, 2, "how are you")?;
    c.deliver_all(&a)?;
    Ok(c.finish())
}

fn long_chain() -> Result<RatchetCase, String> {
    let mut c = Conversation::new("long_one_way_chain", true, None)?;
    for i in 0..64 {
        let m = c.send(Alice, format!("message {i} of a long chain").as_bytes())?;
        c.deliver(m)?;
    }
    Ok(c.finish())
}

fn ping_pong() -> Result<RatchetCase, String> {
    let mut c = Conversation::new("ping_pong", true, None)?;
    for i in 0..16 {
        let sender = if i % 2 == 0 { Alice } else { Bob };
        let m = c.send(sender, format!("ping pong {i}").as_bytes())?;
        c.deliver(m)?;
    }
    Ok(c.finish())
}

fn out_of_order() -> Result<RatchetCase, String> {
    let mut c = Conversation::new("out_of_order_across_two_ratchet_steps", true, None)?;
    let a1 = c.sends(Alice, 3, "chain 1")?; // Alice's first chain
    c.deliver(a1[1])?; // skips a1[0]
    let b1 = c.sends(Bob, 2, "reply chain 1")?;
    c.deliver(b1[1])?; // Alice steps, skips b1[0]
    let a2 = c.sends(Alice, 2, "chain 2")?;
    c.deliver(a2[1])?; // Bob steps: skips a1[2] (PN = 3) and a2[0]
    let b2 = c.sends(Bob, 1, "reply chain 2")?;
    c.deliver(b2[0])?; // Alice steps
    let a3 = c.sends(Alice, 1, "chain 3")?;
    c.deliver(a3[0])?; // Bob steps again
                       // Late messages from two and one steps back.
    c.deliver(a1[0])?;
    c.deliver(a2[0])?;
    c.deliver(a1[2])?;
    c.deliver(b1[0])?;
    Ok(c.finish())
}

fn delayed_past_max_skip() -> Result<RatchetCase, String> {
    let mut c = Conversation::new("message_past_max_skip", true, Some(4))?;
    let a = c.sends(Alice, 7, "skip")?;
    c.deliver_fails(a[6])?; // would skip 6 > 4 keys
    c.deliver(a[4])?; // skips exactly 4
    c.deliver(a[6])?;
    c.deliver_all(&[a[0], a[1], a[2], a[3], a[5]])?;
    Ok(c.finish())
}

fn previous_chain_past_max_skip() -> Result<RatchetCase, String> {
    let mut c = Conversation::new("previous_chain_past_max_skip", true, Some(3))?;
    let a1 = c.sends(Alice, 6, "old chain")?;
    c.deliver(a1[0])?;
    let b = c.send(Bob, b"reply")?;
    c.deliver(b)?;
    let a2 = c.send(Alice, b"new chain, PN = 6")?;
    c.deliver_fails(a2)?; // Nr = 1, PN = 6: 1 + 3 < 6
    c.deliver_all(&a1[1..4])?;
    c.deliver(a2)?; // Nr = 4, PN = 6: skips 2
    c.deliver_all(&a1[4..])?;
    Ok(c.finish())
}

fn replay() -> Result<RatchetCase, String> {
    let mut c = Conversation::new("replay", true, None)?;
    let a = c.sends(Alice, 3, "once")?;
    c.deliver(a[0])?;
    c.deliver_fails(a[0])?; // replay in the current chain
    c.deliver(a[2])?;
    c.deliver(a[1])?; // from a skipped key
    c.deliver_fails(a[1])?; // its key is gone
    let b = c.send(Bob, b"reply")?;
    c.deliver(b)?;
    c.deliver_fails(b)?; // replay of a message that opened a chain
    let a2 = c.send(Alice, b"after")?;
    c.deliver(a2)?;
    c.deliver_fails(a[2])?; // replay from an old chain
    Ok(c.finish())
}

fn tampering() -> Result<RatchetCase, String> {
    let mut c = Conversation::new("tampering", true, None)?;
    let a = c.send(Alice, b"first, tampered in transit")?;
    // The header nonce, the encrypted header, its tag, the body, the body's tag.
    for byte in [0, 30, 79, 80, 80 + 25 + 15] {
        c.deliver_tampered(a, byte)?;
    }
    c.deliver(a)?;
    let a2 = c.send(Alice, b"second")?;
    c.deliver_tampered(a2, 50)?;
    c.deliver(a2)?;
    // A message that opens a new chain: the failed tries draw no key.
    let b = c.send(Bob, b"reply that ratchets")?;
    c.deliver_tampered(b, 40)?;
    c.deliver_tampered(b, 90)?;
    c.deliver(b)?;
    Ok(c.finish())
}

fn plaintext_sizes() -> Result<RatchetCase, String> {
    let mut c = Conversation::new("plaintext_sizes", false, None)?;
    let empty = c.send(Alice, b"")?;
    c.deliver(empty)?;
    let large: Vec<u8> = (0..4096u32).map(|i| (i % 251) as u8).collect();
    let big = c.send(Alice, &large)?;
    c.deliver(big)?;
    let reply = c.send(Bob, &[0xff])?;
    c.deliver(reply)?;
    Ok(c.finish())
}
