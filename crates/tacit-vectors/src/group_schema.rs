//! The schema of `group.json` (`docs/PROTOCOL.md` 16.9): closed, every
//! field required, nullable ones written as `null`.

use serde::{Deserialize, Serialize};

use crate::schema::{required_nullable, Hex, HexBytes};

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
    /// The user id of the device that owns the chain.
    pub owner_user_id: String,
    /// The device id of the device that owns the chain.
    pub owner_device_id: u32,
    /// The encoded `SenderChainDistribution`, its owner signature made
    /// over `RA(owner)`.
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
