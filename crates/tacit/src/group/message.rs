//! The group message (`docs/PROTOCOL.md` 16.6): its strict codec and the
//! bytes its signature covers.

use alloc::vec::Vec;

use prost::Message as _;
use sha2::{Digest, Sha256};

use super::chain_proto as proto;
use crate::aead::TAG_LEN;
use crate::error::WireError;
use crate::keys::{IdentityKey, IdentityKeyPair, Signature, KEY_LEN, SIGNATURE_LEN};
use crate::wire::{check_version, decode_canonical, fixed, WIRE_VERSION};

/// Length of a group id.
pub const GROUP_ID_LEN: usize = 32;
/// Length of a group state hash.
pub const STATE_HASH_LEN: usize = 32;
/// The longest encoded group message accepted: the largest padded content
/// (128 KiB) with its tag and the other fields, rounded up.
pub const MAX_GROUP_MESSAGE_LEN: usize = 128 * 1024 + 512;

/// The prefix of the bytes a chain's signature covers.
const SIGNATURE_CONTEXT: &[u8] = b"tacit/group/v1/message";
/// The length of the bytes a chain signs: the context and a SHA-256 hash.
const SIGNED_LEN: usize = SIGNATURE_CONTEXT.len() + 32;
/// Field 7 (the signature) as encoded: tag, length, 64 bytes.
const SIGNATURE_FIELD_LEN: usize = 2 + SIGNATURE_LEN;
/// The tag byte of field 7, length-delimited.
const SIGNATURE_TAG: u8 = (7 << 3) | 2;

/// A group message, decoded strictly: every field of its length, the
/// iteration below `2^32 - 1`, a ciphertext at least a tag long. Its
/// signature is not checked here: that needs the chain
/// ([`InboundChain::decrypt`](super::InboundChain::decrypt)).
#[derive(Clone, PartialEq, Eq)]
pub struct GroupMessage {
    group_id: [u8; GROUP_ID_LEN],
    state_hash: [u8; STATE_HASH_LEN],
    signing_key: [u8; KEY_LEN],
    iteration: u32,
    signature: Signature,
    /// The signature context, then the whole encoding: what the signature
    /// covers is all but the last [`SIGNATURE_FIELD_LEN`] bytes, so it is
    /// verified without a copy.
    signed: Vec<u8>,
    /// Where the ciphertext starts in `signed`.
    ciphertext_at: usize,
    /// The ciphertext's length.
    ciphertext_len: usize,
}

impl core::fmt::Debug for GroupMessage {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("GroupMessage")
            .field("iteration", &self.iteration)
            .field("len", &self.as_bytes().len())
            .finish_non_exhaustive()
    }
}

/// The fields of a message before it is signed.
pub(crate) struct Unsigned<'a> {
    pub(crate) group_id: &'a [u8; GROUP_ID_LEN],
    pub(crate) state_hash: &'a [u8; STATE_HASH_LEN],
    pub(crate) signing_key: &'a IdentityKey,
    pub(crate) iteration: u32,
    pub(crate) ciphertext: Vec<u8>,
}

impl GroupMessage {
    /// Encodes fields 1 to 6, signs them with `signing` and appends the
    /// signature as field 7.
    pub(crate) fn sign(unsigned: Unsigned<'_>, signing: &IdentityKeyPair) -> Self {
        let signing_key = unsigned.signing_key.to_bytes();
        let body = proto::GroupMessage {
            version: WIRE_VERSION,
            group_id: unsigned.group_id.to_vec(),
            state_hash: unsigned.state_hash.to_vec(),
            signing_key: signing_key.to_vec(),
            iteration: unsigned.iteration,
            ciphertext: unsigned.ciphertext,
            signature: Vec::new(),
        };
        let ciphertext_len = body.ciphertext.len();
        let body_len = body.encoded_len();
        let mut signed =
            Vec::with_capacity(SIGNATURE_CONTEXT.len() + body_len + SIGNATURE_FIELD_LEN);
        signed.extend_from_slice(SIGNATURE_CONTEXT);
        body.encode_raw(&mut signed);
        let signature = signing.sign(&signed_digest(&signed[SIGNATURE_CONTEXT.len()..]));
        signed.push(SIGNATURE_TAG);
        signed.push(SIGNATURE_LEN as u8);
        signed.extend_from_slice(&signature.to_bytes());
        Self {
            group_id: *unsigned.group_id,
            state_hash: *unsigned.state_hash,
            signing_key,
            iteration: unsigned.iteration,
            signature,
            // The ciphertext is the last field before the signature.
            ciphertext_at: SIGNATURE_CONTEXT.len() + body_len - ciphertext_len,
            ciphertext_len,
            signed,
        }
    }

    /// The canonical encoding.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.as_bytes().to_vec()
    }

    /// The canonical encoding, borrowed.
    pub fn as_bytes(&self) -> &[u8] {
        &self.signed[SIGNATURE_CONTEXT.len()..]
    }

    /// Strict decoding (`docs/PROTOCOL.md` 16.6, step 1).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, WireError> {
        let m: proto::GroupMessage = decode_canonical(bytes, MAX_GROUP_MESSAGE_LEN)?;
        check_version(m.version)?;
        let group_id = fixed::<GROUP_ID_LEN>("group_id", &m.group_id)?;
        let state_hash = fixed::<STATE_HASH_LEN>("state_hash", &m.state_hash)?;
        let signing_key = fixed::<KEY_LEN>("signing_key", &m.signing_key)?;
        if m.iteration == u32::MAX {
            return Err(WireError::InvalidValue("iteration"));
        }
        if m.ciphertext.is_empty() {
            return Err(WireError::MissingField("ciphertext"));
        }
        if m.ciphertext.len() < TAG_LEN {
            return Err(WireError::InvalidValue("ciphertext"));
        }
        let signature = Signature::from_bytes(fixed::<SIGNATURE_LEN>("signature", &m.signature)?);
        // Canonical, with field 7 present: the encoding ends with field 7,
        // just after the ciphertext.
        let ciphertext_len = m.ciphertext.len();
        let ciphertext_at =
            SIGNATURE_CONTEXT.len() + bytes.len() - SIGNATURE_FIELD_LEN - ciphertext_len;
        let mut signed = Vec::with_capacity(SIGNATURE_CONTEXT.len() + bytes.len());
        signed.extend_from_slice(SIGNATURE_CONTEXT);
        signed.extend_from_slice(bytes);
        Ok(Self {
            group_id,
            state_hash,
            signing_key,
            iteration: m.iteration,
            signature,
            signed,
            ciphertext_at,
            ciphertext_len,
        })
    }

    /// The group id.
    pub fn group_id(&self) -> &[u8; GROUP_ID_LEN] {
        &self.group_id
    }

    /// The hash of the group state the chain belongs to.
    pub fn state_hash(&self) -> &[u8; STATE_HASH_LEN] {
        &self.state_hash
    }

    /// The chain's signing key as received (it names the chain; it is
    /// checked as a key only where the chain was created).
    pub fn signing_key(&self) -> &[u8; KEY_LEN] {
        &self.signing_key
    }

    /// The chain iteration of the message.
    pub fn iteration(&self) -> u32 {
        self.iteration
    }

    /// The padded content and its tag, encrypted.
    pub fn ciphertext(&self) -> &[u8] {
        &self.signed[self.ciphertext_at..self.ciphertext_at + self.ciphertext_len]
    }

    /// The signature (field 7).
    pub fn signature(&self) -> &Signature {
        &self.signature
    }

    /// Strictly verifies the signature under `key` over the context and
    /// the hash of the encoding without field 7.
    pub(crate) fn verify(&self, key: &IdentityKey) -> Result<(), crate::error::KeyError> {
        let unsigned =
            &self.signed[SIGNATURE_CONTEXT.len()..self.signed.len() - SIGNATURE_FIELD_LEN];
        key.verify(&signed_digest(unsigned), &self.signature)
    }
}

/// What a chain signs: `"tacit/group/v1/message" || SHA-256(Enc(fields 1
/// to 6))`. Hashing first keeps the signature's cost independent of the
/// message's length (Ed25519 hashes its input twice with SHA-512).
fn signed_digest(unsigned: &[u8]) -> [u8; SIGNED_LEN] {
    let digest = Sha256::digest(unsigned);
    let mut out = [0u8; SIGNED_LEN];
    out[..SIGNATURE_CONTEXT.len()].copy_from_slice(SIGNATURE_CONTEXT);
    out[SIGNATURE_CONTEXT.len()..].copy_from_slice(&digest[..]);
    out
}

/// `AD = group_id || state_hash || Enc(signing key) || u32be(iteration)`.
pub(crate) fn associated_data(
    group_id: &[u8; GROUP_ID_LEN],
    state_hash: &[u8; STATE_HASH_LEN],
    signing_key: &[u8; KEY_LEN],
    iteration: u32,
) -> [u8; 100] {
    let mut ad = [0u8; 100];
    ad[..32].copy_from_slice(group_id);
    ad[32..64].copy_from_slice(state_hash);
    ad[64..96].copy_from_slice(signing_key);
    ad[96..].copy_from_slice(&iteration.to_be_bytes());
    ad
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_encoding_is_the_canonical_protobuf() {
        let signing = IdentityKeyPair::from_seed(&[7; 32]);
        let message = GroupMessage::sign(
            Unsigned {
                group_id: &[1; 32],
                state_hash: &[2; 32],
                signing_key: &signing.public_key(),
                iteration: 300,
                ciphertext: alloc::vec![9; 40],
            },
            &signing,
        );
        let decoded = GroupMessage::from_bytes(message.as_bytes()).unwrap();
        assert_eq!(decoded, message);
        assert_eq!(decoded.ciphertext(), &[9; 40]);
        assert_eq!(decoded.iteration(), 300);
        decoded.verify(&signing.public_key()).unwrap();
        let other = IdentityKeyPair::from_seed(&[8; 32]).public_key();
        assert!(decoded.verify(&other).is_err());
    }
}
