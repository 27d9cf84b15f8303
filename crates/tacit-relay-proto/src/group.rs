//! The multi-recipient submission (`SubmitGroup`) and the relay's copy of
//! the layout of the group envelope (`docs/PROTOCOL.md` 16.7): the relay
//! composes each recipient's `GroupEnvelope` from the shared payload and
//! the recipient's part without depending on the core's internals.

use std::collections::BTreeSet;

use tacit::group::multi::MultiSealed;
use tacit::Address;

use crate::client::{address, DeliveryToken};
use crate::error::FrameError;
use crate::proto;
use crate::MAX_ENVELOPE_LEN;

/// The most recipient devices of one `SubmitGroup`.
pub const MAX_GROUP_RECIPIENTS: usize = 1000;
/// The length of a recipient's part of a group envelope.
pub const WRAPPED_KEY_LEN: usize = 32;
/// The longest encoded shared payload: the composed group envelope (34
/// bytes longer) stays within [`MAX_ENVELOPE_LEN`], so a push carries it.
pub const MAX_SHARED_PAYLOAD_LEN: usize = MAX_ENVELOPE_LEN - 64;
/// The most bytes one `SubmitGroup` may queue in all: the recipients times
/// the length of a composed group envelope. It bounds what one request
/// writes (1000 recipients of a 64 KiB message fit).
pub const MAX_GROUP_FANOUT_LEN: usize = 72 * 1024 * 1024;
/// The most bytes one recipient takes in a `SubmitGroup` frame (user id of
/// 64 bytes, device id, part, delivery token of 64 bytes, framing).
pub const MAX_GROUP_RECIPIENT_FRAME_LEN: usize = 176;

/// Length of the fixed head of a shared payload: `version` (2 bytes) and
/// `ephemeral_key` (2 + 32).
const HEAD_LEN: usize = 36;
/// What a group envelope adds to its shared payload: the `wrapped_key`
/// field (2 + 32).
const PART_FIELD_LEN: usize = 2 + WRAPPED_KEY_LEN;
/// The shortest payload: a Poly1305 tag.
const MIN_PAYLOAD_LEN: usize = 16;

/// A shared payload (`SharedPayload`, 16.7) whose layout is checked: it is
/// the canonical encoding of version 1, a 32-byte ephemeral key and a
/// payload of at least 16 bytes, at most [`MAX_SHARED_PAYLOAD_LEN`] bytes.
/// The relay cannot check anything else (it holds no key).
#[derive(Clone, PartialEq, Eq)]
pub struct SharedPayloadBytes(Vec<u8>);

impl SharedPayloadBytes {
    /// Checks the layout.
    pub fn new(bytes: Vec<u8>) -> Result<Self, FrameError> {
        Self::checked(None, bytes)
    }

    fn checked(id: Option<u64>, bytes: Vec<u8>) -> Result<Self, FrameError> {
        if bytes.is_empty() {
            return Err(FrameError::missing(id, "shared"));
        }
        if bytes.len() > MAX_SHARED_PAYLOAD_LEN || !layout_ok(&bytes) {
            return Err(FrameError::invalid(id, "shared"));
        }
        Ok(Self(bytes))
    }

    /// The bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The length of each composed group envelope.
    pub fn envelope_len(&self) -> usize {
        self.0.len() + PART_FIELD_LEN
    }

    /// The `GroupEnvelope` of the recipient whose part is `wrapped_key`:
    /// `version`, `ephemeral_key`, then `wrapped_key` (field 3), then the
    /// payload as field 4. The result is the canonical encoding the core's
    /// `GroupEnvelope` decodes.
    pub fn envelope_for(&self, wrapped_key: &[u8; WRAPPED_KEY_LEN]) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.envelope_len());
        out.extend_from_slice(&self.0[..HEAD_LEN]);
        out.extend_from_slice(&[(3 << 3) | 2, 32]);
        out.extend_from_slice(wrapped_key);
        // The payload field: tag 3 in the shared payload, 4 here; its length
        // prefix and bytes are the same.
        out.push((4 << 3) | 2);
        out.extend_from_slice(&self.0[HEAD_LEN + 1..]);
        out
    }
}

impl std::fmt::Debug for SharedPayloadBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SharedPayloadBytes({} bytes)", self.0.len())
    }
}

/// Whether `bytes` is exactly `08 01 | 12 20 <32> | 1a <varint n> <n>`
/// with `n >= 16`, the varint minimal and the payload ending the bytes.
fn layout_ok(bytes: &[u8]) -> bool {
    let Some((head, rest)) = bytes.split_at_checked(HEAD_LEN) else {
        return false;
    };
    if head[..4] != [0x08, 0x01, 0x12, 0x20] || rest.first() != Some(&0x1a) {
        return false;
    }
    let Some((len, used)) = varint(&rest[1..]) else {
        return false;
    };
    let payload = &rest[1 + used..];
    usize::try_from(len).is_ok_and(|len| len == payload.len() && len >= MIN_PAYLOAD_LEN)
}

/// A minimal protobuf varint of at most 5 bytes: its value and length.
fn varint(bytes: &[u8]) -> Option<(u64, usize)> {
    let mut value = 0u64;
    for (i, &byte) in bytes.iter().enumerate().take(5) {
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            // A last byte of 0 after the first is a non-minimal encoding.
            return (i == 0 || byte != 0).then_some((value, i + 1));
        }
    }
    None
}

/// One recipient device of a [`SubmitGroup`]: its address, its part, and
/// its delivery token if the submitter knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupRecipient {
    /// The recipient device.
    pub recipient: Address,
    /// Its part of the group envelope.
    pub wrapped_key: [u8; WRAPPED_KEY_LEN],
    /// Its delivery token, needed as for `Submit`.
    pub delivery_token: Option<DeliveryToken>,
}

/// One shared payload for many recipient devices: the relay queues, for
/// each, the group envelope composed of the shared payload and its part,
/// all or none. 1 to [`MAX_GROUP_RECIPIENTS`] recipients, no device twice,
/// at most [`MAX_GROUP_FANOUT_LEN`] bytes queued in all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubmitGroup {
    shared: SharedPayloadBytes,
    recipients: Vec<GroupRecipient>,
}

impl SubmitGroup {
    /// Checks the recipients (count, no repeated device, total size).
    pub fn new(
        shared: SharedPayloadBytes,
        recipients: Vec<GroupRecipient>,
    ) -> Result<Self, FrameError> {
        check_recipients(None, &shared, &recipients)?;
        Ok(Self { shared, recipients })
    }

    /// The submission of an envelope sealed with
    /// [`tacit::group::multi::seal`]: its shared payload and every part,
    /// with the delivery token `token` gives for each recipient.
    pub fn from_sealed(
        sealed: &MultiSealed,
        mut token: impl FnMut(&Address) -> Option<DeliveryToken>,
    ) -> Result<Self, FrameError> {
        let shared = SharedPayloadBytes::new(sealed.shared.to_bytes())?;
        let recipients = sealed
            .parts
            .iter()
            .map(|p| GroupRecipient {
                delivery_token: token(&p.address),
                recipient: p.address.clone(),
                wrapped_key: p.wrapped_key,
            })
            .collect();
        Self::new(shared, recipients)
    }

    /// The shared payload.
    pub fn shared(&self) -> &SharedPayloadBytes {
        &self.shared
    }

    /// The recipients, in the submitted order.
    pub fn recipients(&self) -> &[GroupRecipient] {
        &self.recipients
    }

    /// The shared payload and the recipients, by value.
    pub fn into_parts(self) -> (SharedPayloadBytes, Vec<GroupRecipient>) {
        (self.shared, self.recipients)
    }

    pub(crate) fn from_proto(id: Option<u64>, r: proto::SubmitGroup) -> Result<Self, FrameError> {
        let shared = SharedPayloadBytes::checked(id, r.shared)?;
        if r.recipients.is_empty() {
            return Err(FrameError::missing(id, "recipients"));
        }
        if r.recipients.len() > MAX_GROUP_RECIPIENTS {
            return Err(FrameError::invalid(id, "recipients"));
        }
        let recipients = r
            .recipients
            .into_iter()
            .map(|g| {
                Ok(GroupRecipient {
                    recipient: address(id, &g.user_id, g.device_id)?,
                    wrapped_key: g
                        .wrapped_key
                        .as_slice()
                        .try_into()
                        .map_err(|_| wrapped_key_error(id, g.wrapped_key.is_empty()))?,
                    delivery_token: g
                        .delivery_token
                        .map(|t| DeliveryToken::checked(id, "delivery_token", &t))
                        .transpose()?,
                })
            })
            .collect::<Result<Vec<_>, FrameError>>()?;
        check_recipients(id, &shared, &recipients)?;
        Ok(Self { shared, recipients })
    }

    pub(crate) fn to_proto(&self) -> proto::SubmitGroup {
        proto::SubmitGroup {
            shared: self.shared.0.clone(),
            recipients: self
                .recipients
                .iter()
                .map(|g| proto::GroupRecipient {
                    user_id: g.recipient.user_id().into(),
                    device_id: g.recipient.device_id(),
                    wrapped_key: g.wrapped_key.to_vec(),
                    delivery_token: g.delivery_token.as_ref().map(|t| t.as_bytes().to_vec()),
                })
                .collect(),
        }
    }
}

fn wrapped_key_error(id: Option<u64>, empty: bool) -> FrameError {
    if empty {
        FrameError::missing(id, "wrapped_key")
    } else {
        FrameError::invalid(id, "wrapped_key")
    }
}

fn check_recipients(
    id: Option<u64>,
    shared: &SharedPayloadBytes,
    recipients: &[GroupRecipient],
) -> Result<(), FrameError> {
    if recipients.is_empty() {
        return Err(FrameError::missing(id, "recipients"));
    }
    if recipients.len() > MAX_GROUP_RECIPIENTS {
        return Err(FrameError::invalid(id, "recipients"));
    }
    let mut seen = BTreeSet::new();
    if !recipients.iter().all(|g| seen.insert(&g.recipient)) {
        return Err(FrameError::invalid(id, "recipients.duplicate"));
    }
    if recipients.len().saturating_mul(shared.envelope_len()) > MAX_GROUP_FANOUT_LEN {
        return Err(FrameError::invalid(id, "shared"));
    }
    Ok(())
}

/// Which kind of envelope a push carries.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum EnvelopeKind {
    /// A sealed envelope (`Submit`; wire value 0, the field absent).
    #[default]
    Sealed,
    /// A group envelope (`SubmitGroup`; wire value 1).
    Group,
}

impl EnvelopeKind {
    /// The wire value.
    pub fn as_u32(self) -> u32 {
        match self {
            Self::Sealed => 0,
            Self::Group => 1,
        }
    }

    /// The kind of a wire value, if it is one.
    pub fn from_u32(value: u32) -> Option<Self> {
        match value {
            0 => Some(Self::Sealed),
            1 => Some(Self::Group),
            _ => None,
        }
    }
}
