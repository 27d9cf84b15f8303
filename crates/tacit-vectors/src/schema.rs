//! The JSON schema of `x3dh.json` and `ratchet.json` (profile `tacit-v1`),
//! read strictly: unknown fields, missing fields, uppercase or odd-length
//! hex and wrong lengths are all refused.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The profile name every file carries.
pub const PROFILE: &str = "tacit-v1";

/// A byte string of exactly `N` bytes, as lowercase hex.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Hex<const N: usize>(pub [u8; N]);

/// A byte string of any length, as lowercase hex.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct HexBytes(pub Vec<u8>);

fn decode_lower_hex<E: serde::de::Error>(s: &str) -> Result<Vec<u8>, E> {
    if s.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(E::custom("hex must be lowercase"));
    }
    hex::decode(s).map_err(|e| E::custom(format!("bad hex: {e}")))
}

impl<const N: usize> Serialize for Hex<N> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(self.0))
    }
}

impl<'de, const N: usize> Deserialize<'de> for Hex<N> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let bytes = decode_lower_hex::<D::Error>(&s)?;
        let len = bytes.len();
        bytes
            .try_into()
            .map(Hex)
            .map_err(|_| serde::de::Error::custom(format!("expected {N} bytes of hex, got {len}")))
    }
}

impl Serialize for HexBytes {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(&self.0))
    }
}

impl<'de> Deserialize<'de> for HexBytes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        decode_lower_hex::<D::Error>(&s).map(HexBytes)
    }
}

/// A field that must be present but may be `null`: serde treats a missing
/// `Option` as `None` unless it is read through a function like this one.
pub(crate) fn required_nullable<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d)
}

/// `x3dh.json`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct X3dhFile {
    /// Always `tacit-v1`.
    pub profile: String,
    /// Valid handshakes with their expected outputs.
    pub cases: Vec<X3dhCase>,
    /// Bundles the initiator must refuse.
    pub invalid: Vec<InvalidBundle>,
}

/// The six inputs of a handshake.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct X3dhInputs {
    /// Alice's Ed25519 seed.
    pub alice_identity_seed: Hex<32>,
    /// Bob's Ed25519 seed.
    pub bob_identity_seed: Hex<32>,
    /// Bob's signed prekey, an X25519 private key.
    pub bob_signed_prekey_private: Hex<32>,
    /// Bob's signature over `Enc(SPK_B)` (or, in `invalid`, over whatever
    /// the entry says).
    pub bob_signed_prekey_signature: Hex<64>,
    /// Bob's one-time prekey, or `null` for a bundle without one.
    #[serde(deserialize_with = "required_nullable")]
    pub bob_one_time_prekey_private: Option<Hex<32>>,
    /// Alice's ephemeral X25519 private key.
    pub alice_ephemeral_private: Hex<32>,
}

/// One valid handshake.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct X3dhCase {
    /// The case's name.
    pub name: String,
    /// Alice's Ed25519 seed.
    pub alice_identity_seed: Hex<32>,
    /// Bob's Ed25519 seed.
    pub bob_identity_seed: Hex<32>,
    /// Bob's signed prekey, an X25519 private key.
    pub bob_signed_prekey_private: Hex<32>,
    /// Bob's signature over `Enc(SPK_B)`.
    pub bob_signed_prekey_signature: Hex<64>,
    /// Bob's one-time prekey, or `null` for a bundle without one.
    #[serde(deserialize_with = "required_nullable")]
    pub bob_one_time_prekey_private: Option<Hex<32>>,
    /// Alice's ephemeral X25519 private key.
    pub alice_ephemeral_private: Hex<32>,
    /// What the handshake must produce.
    pub expected: X3dhExpected,
}

/// The outputs of a valid handshake.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct X3dhExpected {
    /// `Enc(IK_A)`.
    pub alice_identity_public: Hex<32>,
    /// `Enc(IK_B)`.
    pub bob_identity_public: Hex<32>,
    /// `Enc(SPK_B)`.
    pub bob_signed_prekey_public: Hex<32>,
    /// `Enc(OPK_B)`, or `null`.
    #[serde(deserialize_with = "required_nullable")]
    pub bob_one_time_prekey_public: Option<Hex<32>>,
    /// `Enc(EK_A)`.
    pub alice_ephemeral_public: Hex<32>,
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
}

macro_rules! inputs_of {
    ($ty:ty) => {
        impl $ty {
            /// The six handshake inputs of this entry.
            pub fn inputs(&self) -> X3dhInputs {
                X3dhInputs {
                    alice_identity_seed: self.alice_identity_seed,
                    bob_identity_seed: self.bob_identity_seed,
                    bob_signed_prekey_private: self.bob_signed_prekey_private,
                    bob_signed_prekey_signature: self.bob_signed_prekey_signature,
                    bob_one_time_prekey_private: self.bob_one_time_prekey_private,
                    alice_ephemeral_private: self.alice_ephemeral_private,
                }
            }
        }
    };
}

inputs_of!(X3dhCase);
inputs_of!(InvalidBundle);

/// A bundle the initiator must refuse.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct InvalidBundle {
    /// The entry's name.
    pub name: String,
    /// Alice's Ed25519 seed.
    pub alice_identity_seed: Hex<32>,
    /// Bob's Ed25519 seed.
    pub bob_identity_seed: Hex<32>,
    /// Bob's signed prekey private key (not used: the bundle offers
    /// `bob_signed_prekey_public`).
    pub bob_signed_prekey_private: Hex<32>,
    /// Bob's signature over `Enc(SPK_B)`.
    pub bob_signed_prekey_signature: Hex<64>,
    /// Bob's one-time prekey, or `null` for a bundle without one.
    #[serde(deserialize_with = "required_nullable")]
    pub bob_one_time_prekey_private: Option<Hex<32>>,
    /// Alice's ephemeral X25519 private key.
    pub alice_ephemeral_private: Hex<32>,
    /// The signed prekey the bundle offers.
    pub bob_signed_prekey_public: Hex<32>,
    /// Why the initiator refuses it.
    pub error: InvalidReason,
}

/// Why a bundle is refused.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum InvalidReason {
    /// The strict signature check fails.
    Signature,
    /// The signature is valid but a DH output is all zeros.
    SmallOrder,
}

/// `ratchet.json`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RatchetFile {
    /// Always `tacit-v1`.
    pub profile: String,
    /// Conversations to replay.
    pub cases: Vec<RatchetCase>,
}

/// One conversation.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RatchetCase {
    /// The case's name.
    pub name: String,
    /// `MAX_SKIP` for both parties; 1000 when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_skip: Option<u32>,
    /// The handshake's inputs (a valid bundle).
    pub x3dh: X3dhInputs,
    /// Alice's ratchet private keys in the order she generates them, her
    /// initial pair first.
    pub alice_ratchet_privates: Vec<Hex<32>>,
    /// Bob's ratchet private keys in the order he generates them (not
    /// including his signed prekey).
    pub bob_ratchet_privates: Vec<Hex<32>>,
    /// The messages, in send order.
    pub messages: Vec<Message>,
    /// What happens, in order.
    pub events: Vec<Event>,
}

/// The party that sends a message.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Party {
    /// The initiator.
    Alice,
    /// The responder.
    Bob,
}

impl Party {
    /// The other party.
    pub fn peer(self) -> Self {
        match self {
            Self::Alice => Self::Bob,
            Self::Bob => Self::Alice,
        }
    }
}

/// One message of a conversation.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Message {
    /// Who sends it.
    pub sender: Party,
    /// The plaintext.
    pub plaintext: HexBytes,
    /// The 24-byte nonce of the header encryption.
    pub header_nonce: Hex<24>,
    /// What sending it must produce.
    pub expected: MessageExpected,
}

/// The outputs of sending a message.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct MessageExpected {
    /// The plaintext header, 40 bytes.
    pub header: Hex<40>,
    /// The encrypted header, 80 bytes.
    pub enc_header: Hex<80>,
    /// The message ciphertext with its tag.
    pub ciphertext: HexBytes,
}

/// The outcome a delivery must have.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Expect {
    /// The plaintext comes back.
    Ok,
    /// Decryption fails and the receiver's state is unchanged.
    Error,
}

/// One event, as it appears in the file.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Event {
    /// `send`, `deliver` or `deliver_tampered`.
    pub op: String,
    /// The message's index.
    pub message: usize,
    /// For deliveries: the expected outcome.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect: Option<Expect>,
    /// For `deliver_tampered`: the byte of `enc_header || ciphertext` whose
    /// bits are all flipped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub byte: Option<usize>,
}

/// An event checked against the schema's rules for its kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// The sender encrypts message `i`.
    Send(usize),
    /// Message `i` reaches the other party.
    Deliver(usize, Expect),
    /// Message `i` reaches the other party with byte `k` flipped.
    DeliverTampered(usize, usize),
}

impl Event {
    /// The event as an [`Op`], or why it does not fit the schema.
    pub fn op(&self) -> Result<Op, String> {
        match (self.op.as_str(), self.expect, self.byte) {
            ("send", None, None) => Ok(Op::Send(self.message)),
            ("deliver", Some(expect), None) => Ok(Op::Deliver(self.message, expect)),
            ("deliver_tampered", Some(Expect::Error), Some(byte)) => {
                Ok(Op::DeliverTampered(self.message, byte))
            }
            ("deliver_tampered", Some(Expect::Ok), _) => {
                Err("deliver_tampered must expect \"error\"".into())
            }
            (op, ..) => Err(format!("event {op:?} has a wrong set of fields")),
        }
    }

    /// A `send` event.
    pub fn send(message: usize) -> Self {
        Self {
            op: "send".into(),
            message,
            expect: None,
            byte: None,
        }
    }

    /// A `deliver` event.
    pub fn deliver(message: usize, expect: Expect) -> Self {
        Self {
            op: "deliver".into(),
            message,
            expect: Some(expect),
            byte: None,
        }
    }

    /// A `deliver_tampered` event.
    pub fn deliver_tampered(message: usize, byte: usize) -> Self {
        Self {
            op: "deliver_tampered".into(),
            message,
            expect: Some(Expect::Error),
            byte: Some(byte),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_is_strict() {
        assert!(serde_json::from_str::<Hex<2>>("\"abcd\"").is_ok());
        assert!(serde_json::from_str::<Hex<2>>("\"ABCD\"").is_err());
        assert!(serde_json::from_str::<Hex<2>>("\"abc\"").is_err());
        assert!(serde_json::from_str::<Hex<2>>("\"abcdef\"").is_err());
    }

    #[test]
    fn nullable_fields_are_required() {
        let h32 = "0".repeat(64);
        let h64 = "0".repeat(128);
        let missing_opk = format!(
            r#"{{"alice_identity_seed":"{h32}","bob_identity_seed":"{h32}","bob_signed_prekey_private":"{h32}",
            "bob_signed_prekey_signature":"{h64}","alice_ephemeral_private":"{h32}"}}"#
        );
        assert!(serde_json::from_str::<X3dhInputs>(&missing_opk).is_err());
        let null_opk = missing_opk.replace(
            "\"alice_ephemeral_private\"",
            "\"bob_one_time_prekey_private\":null,\"alice_ephemeral_private\"",
        );
        assert!(serde_json::from_str::<X3dhInputs>(&null_opk).is_ok());
        let extra = null_opk.replace("{", "{\"surprise\":1,");
        assert!(serde_json::from_str::<X3dhInputs>(&extra).is_err());
    }

    #[test]
    fn events_fit_their_kind() {
        assert_eq!(Event::send(3).op(), Ok(Op::Send(3)));
        assert_eq!(
            Event::deliver_tampered(1, 7).op(),
            Ok(Op::DeliverTampered(1, 7))
        );
        let mut bad = Event::send(0);
        bad.expect = Some(Expect::Ok);
        assert!(bad.op().is_err());
        let mut tampered_ok = Event::deliver_tampered(0, 1);
        tampered_ok.expect = Some(Expect::Ok);
        assert!(tampered_ok.op().is_err());
        let mut unknown = Event::send(0);
        unknown.op = "drop".into();
        assert!(unknown.op().is_err());
    }
}
