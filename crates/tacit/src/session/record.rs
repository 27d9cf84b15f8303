//! Session records: per peer device, the current session and up to
//! [`ARCHIVE_LIMIT`] archived ones.
//!
//! A record is serialized as one version byte and the postcard encoding of
//! its states, current first, then the archived states from the most to the
//! least recently used. Each state is its ratchet ([`Ratchet::to_bytes`]),
//! the peer's identity key, the session's base key (the initiator's X3DH
//! ephemeral key, which names the session on both sides), who initiated it,
//! and, for a session this side initiated and has not yet received a
//! message on, the prekey fields its messages must repeat (with the KEM
//! prekey id and ciphertext for a `tacit-v2` session), and the profile
//! that started it. Version 2 is written; version 1 (before `tacit-v2`) is
//! still read.

use alloc::collections::VecDeque;
use alloc::vec::Vec;
use core::fmt;

use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::error::StateError;
use crate::kem::KemCiphertext;
use crate::keys::{IdentityKey, PublicKey, KEY_LEN};
use crate::ratchet::Ratchet;
use crate::versioned;

/// The most archived sessions kept per peer device (as libsignal).
pub const ARCHIVE_LIMIT: usize = 40;
/// The current session record version.
pub const RECORD_VERSION: u8 = 2;
/// The session record version of before profile `tacit-v2`.
const RECORD_VERSION_V1: u8 = 1;

/// The key agreement that started a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Profile {
    /// `tacit-v1`: X3DH.
    V1,
    /// `tacit-v2`: PQXDH over X25519 and ML-KEM-1024.
    V2,
}

impl Profile {
    fn to_byte(self) -> u8 {
        match self {
            Self::V1 => 1,
            Self::V2 => 2,
        }
    }

    fn from_byte(byte: u8) -> Result<Self, StateError> {
        match byte {
            1 => Ok(Self::V1),
            2 => Ok(Self::V2),
            _ => Err(StateError::Corrupt),
        }
    }
}

/// What the initiator repeats in every message until the responder answers:
/// the fields of the prekey message that starts the session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingPreKey {
    /// The initiator's ephemeral key `EK_A` (the session's base key).
    pub ephemeral_key: PublicKey,
    /// The id of the responder's signed prekey used.
    pub signed_prekey_id: u32,
    /// The id of the responder's one-time or fallback prekey used, if any.
    pub one_time_prekey_id: Option<u32>,
    /// For a `tacit-v2` session: the id of the responder's KEM prekey used
    /// and the KEM ciphertext.
    pub kem: Option<(u32, KemCiphertext)>,
}

/// One session with a peer device.
#[derive(Clone)]
pub struct SessionState {
    pub(crate) ratchet: Ratchet,
    pub(crate) remote_identity: IdentityKey,
    pub(crate) base_key: PublicKey,
    pub(crate) initiator: bool,
    pub(crate) pending: Option<PendingPreKey>,
    pub(crate) profile: Profile,
}

impl SessionState {
    /// The peer's identity key, as bound into the session's associated data.
    pub fn remote_identity(&self) -> &IdentityKey {
        &self.remote_identity
    }

    /// The base key: the initiator's X3DH ephemeral key. Both sides of a
    /// session know it; it names the session.
    pub fn base_key(&self) -> &PublicKey {
        &self.base_key
    }

    /// The key agreement that started the session.
    pub fn profile(&self) -> Profile {
        self.profile
    }

    /// Whether this side started the session.
    pub fn is_initiator(&self) -> bool {
        self.initiator
    }

    /// Whether a message of the peer has been received on this session
    /// (always true on the responder's side). Until then the initiator sends
    /// prekey messages.
    pub fn is_acknowledged(&self) -> bool {
        self.pending.is_none()
    }

    /// The prekey fields still repeated in outgoing messages, if not yet
    /// acknowledged.
    pub fn pending_prekey(&self) -> Option<&PendingPreKey> {
        self.pending.as_ref()
    }

    /// The ratchet.
    pub fn ratchet(&self) -> &Ratchet {
        &self.ratchet
    }

    /// Whether this state is the initiator's unanswered side: the case where
    /// a prekey message from the same peer is a simultaneous initiation.
    fn is_unanswered_initiation(&self) -> bool {
        self.initiator && self.pending.is_some()
    }
}

impl fmt::Debug for SessionState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionState")
            .field("remote_identity", &self.remote_identity)
            .field("base_key", &self.base_key)
            .field("initiator", &self.initiator)
            .field("pending", &self.pending)
            .field("profile", &self.profile)
            .field("ratchet", &self.ratchet)
            .finish()
    }
}

/// Where a state sits in a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    /// The current session: the one messages are sent on.
    Current,
    /// An archived session, by index (0 is the most recently used).
    Archived(usize),
}

/// The sessions with one peer device: the current one (used to send) and
/// up to [`ARCHIVE_LIMIT`] archived ones (still used to decrypt late
/// messages), most recently used first.
#[derive(Clone, Default)]
pub struct SessionRecord {
    current: Option<SessionState>,
    archived: VecDeque<SessionState>,
}

impl SessionRecord {
    /// An empty record.
    pub fn new() -> Self {
        Self::default()
    }

    /// The current session, if any.
    pub fn current(&self) -> Option<&SessionState> {
        self.current.as_ref()
    }

    /// The archived sessions, most recently used first.
    pub fn archived(&self) -> impl Iterator<Item = &SessionState> {
        self.archived.iter()
    }

    /// The number of archived sessions.
    pub fn archived_len(&self) -> usize {
        self.archived.len()
    }

    /// Whether the record holds no session at all.
    pub fn is_empty(&self) -> bool {
        self.current.is_none() && self.archived.is_empty()
    }

    /// The states in the order decryption tries them: current, then the
    /// archive from the most recently used.
    pub(crate) fn states(&self) -> impl Iterator<Item = (Slot, &SessionState)> {
        self.current.iter().map(|s| (Slot::Current, s)).chain(
            self.archived
                .iter()
                .enumerate()
                .map(|(i, s)| (Slot::Archived(i), s)),
        )
    }

    /// The state with this base key and peer identity, if any.
    pub(crate) fn find_by_base_key(
        &self,
        base_key: &PublicKey,
        identity: &IdentityKey,
    ) -> Option<(Slot, &SessionState)> {
        self.states()
            .find(|(_, s)| &s.base_key == base_key && &s.remote_identity == identity)
    }

    /// Puts back a state that decrypted a message. The current state stays
    /// current; an archived state moves to the front of the archive (it is
    /// evicted last) but does not become current. See `docs/PROTOCOL.md` (section 11).
    pub(crate) fn put_back(&mut self, slot: Slot, state: SessionState) {
        match slot {
            Slot::Current => self.current = Some(state),
            Slot::Archived(i) => {
                self.archived.remove(i);
                self.archived.push_front(state);
            }
        }
    }

    /// A session this side just initiated: it becomes current and the
    /// previous current one is archived.
    pub(crate) fn insert_initiated(&mut self, state: SessionState) {
        if let Some(old) = self.current.replace(state) {
            self.archive(old);
        }
    }

    /// A session just created by the peer's prekey message. It becomes
    /// current, except on simultaneous initiation: when the current session
    /// is one this side initiated with the same peer identity and has not
    /// yet received a message on, the session with the greater base key
    /// (compared as 32-byte big-endian strings) is current and the other is
    /// archived. Both sides compare the same two keys, so they agree.
    pub(crate) fn insert_received(&mut self, state: SessionState) {
        let keep_current = self.current.as_ref().is_some_and(|current| {
            current.is_unanswered_initiation()
                && current.remote_identity == state.remote_identity
                && current.base_key.as_bytes() > state.base_key.as_bytes()
        });
        if keep_current {
            self.archive(state);
        } else if let Some(old) = self.current.replace(state) {
            self.archive(old);
        }
    }

    /// Moves the current session to the archive, if there is one.
    pub(crate) fn archive_current(&mut self) {
        if let Some(old) = self.current.take() {
            self.archive(old);
        }
    }

    fn archive(&mut self, state: SessionState) {
        self.archived.push_front(state);
        self.archived.truncate(ARCHIVE_LIMIT);
    }

    /// Serializes the record (see the module documentation). The bytes hold
    /// secrets: they are zeroized when dropped and must be stored
    /// encrypted.
    pub fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        let record = RecordV2 {
            current: self.current.as_ref().map(StateV2::from_state),
            archived: self.archived.iter().map(StateV2::from_state).collect(),
        };
        versioned::encode(RECORD_VERSION, &record)
    }

    /// Reads a record written by [`to_bytes`](Self::to_bytes), strictly: a
    /// known version, no trailing bytes, at most [`ARCHIVE_LIMIT`] archived
    /// states, valid identity keys and ratchets, prekey fields only on
    /// initiator states, and the canonical encoding of the record's own
    /// fields (no non-minimal varint). Each ratchet is read by
    /// [`Ratchet::from_bytes`], which also reads its older version (written
    /// back in the current one).
    ///
    /// Version 1 records (before `tacit-v2`) are read as `tacit-v1` states.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, StateError> {
        // Canonical without re-encoding: postcard's only freedom is the
        // length of a varint, which `decode_canonical` refuses by length.
        // The other fields are taken as read (identity and base keys, KEM
        // ciphertexts, ids) or have one valid encoding each (flags, option
        // tags, the profile); the ratchet bytes are checked by
        // `Ratchet::from_bytes`.
        if bytes.first() == Some(&RECORD_VERSION_V1) {
            let record: RecordV1 = versioned::decode_canonical(RECORD_VERSION_V1, bytes)?;
            return Self::from_states(&record.current, &record.archived, StateV1::to_state);
        }
        let record: RecordV2 = versioned::decode_canonical(RECORD_VERSION, bytes)?;
        Self::from_states(&record.current, &record.archived, StateV2::to_state)
    }

    fn from_states<T>(
        current: &Option<T>,
        archived: &[T],
        to_state: impl Fn(&T) -> Result<SessionState, StateError>,
    ) -> Result<Self, StateError> {
        if archived.len() > ARCHIVE_LIMIT {
            return Err(StateError::Corrupt);
        }
        Ok(Self {
            current: current.as_ref().map(&to_state).transpose()?,
            archived: archived.iter().map(&to_state).collect::<Result<_, _>>()?,
        })
    }
}

impl fmt::Debug for SessionRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionRecord")
            .field("current", &self.current)
            .field("archived", &self.archived.len())
            .finish()
    }
}

#[derive(Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
struct RecordV1 {
    current: Option<StateV1>,
    archived: Vec<StateV1>,
}

#[derive(Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
struct StateV1 {
    ratchet: Vec<u8>,
    remote_identity: [u8; KEY_LEN],
    base_key: [u8; KEY_LEN],
    initiator: bool,
    pending: Option<PendingV1>,
}

#[derive(Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
struct PendingV1 {
    signed_prekey_id: u32,
    one_time_prekey_id: Option<u32>,
}

impl StateV1 {
    fn to_state(&self) -> Result<SessionState, StateError> {
        let pending = self.pending.as_ref().map(|p| PendingV2 {
            signed_prekey_id: p.signed_prekey_id,
            one_time_prekey_id: p.one_time_prekey_id,
            kem: None,
        });
        state_from_parts(
            &self.ratchet,
            &self.remote_identity,
            self.base_key,
            self.initiator,
            pending.as_ref(),
            Profile::V1,
        )
    }
}

#[derive(Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
struct RecordV2 {
    current: Option<StateV2>,
    archived: Vec<StateV2>,
}

#[derive(Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
struct StateV2 {
    ratchet: Vec<u8>,
    remote_identity: [u8; KEY_LEN],
    base_key: [u8; KEY_LEN],
    initiator: bool,
    pending: Option<PendingV2>,
    profile: u8,
}

#[derive(Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
struct PendingV2 {
    signed_prekey_id: u32,
    one_time_prekey_id: Option<u32>,
    kem: Option<(u32, Vec<u8>)>,
}

impl StateV2 {
    fn from_state(s: &SessionState) -> Self {
        Self {
            ratchet: s.ratchet.to_bytes().to_vec(),
            remote_identity: s.remote_identity.to_bytes(),
            base_key: s.base_key.to_bytes(),
            initiator: s.initiator,
            pending: s.pending.as_ref().map(|p| PendingV2 {
                signed_prekey_id: p.signed_prekey_id,
                one_time_prekey_id: p.one_time_prekey_id,
                kem: p.kem.as_ref().map(|(id, ct)| (*id, ct.as_bytes().to_vec())),
            }),
            profile: s.profile.to_byte(),
        }
    }

    fn to_state(&self) -> Result<SessionState, StateError> {
        state_from_parts(
            &self.ratchet,
            &self.remote_identity,
            self.base_key,
            self.initiator,
            self.pending.as_ref(),
            Profile::from_byte(self.profile)?,
        )
    }
}

/// A state, checked: pending fields only on initiator states, and carrying
/// a KEM ciphertext exactly when the session is `tacit-v2`.
fn state_from_parts(
    ratchet: &[u8],
    remote_identity: &[u8; KEY_LEN],
    base_key: [u8; KEY_LEN],
    initiator: bool,
    pending: Option<&PendingV2>,
    profile: Profile,
) -> Result<SessionState, StateError> {
    if pending.is_some() && !initiator {
        return Err(StateError::Corrupt);
    }
    if pending.is_some_and(|p| p.kem.is_some() != (profile == Profile::V2)) {
        return Err(StateError::Corrupt);
    }
    let base_key = PublicKey::from_bytes(base_key);
    let pending = match pending {
        None => None,
        Some(p) => Some(PendingPreKey {
            ephemeral_key: base_key,
            signed_prekey_id: p.signed_prekey_id,
            one_time_prekey_id: p.one_time_prekey_id,
            kem: match &p.kem {
                None => None,
                Some((id, ct)) => Some((
                    *id,
                    KemCiphertext::try_from_slice(ct).map_err(|_| StateError::Corrupt)?,
                )),
            },
        }),
    };
    Ok(SessionState {
        ratchet: Ratchet::from_bytes(ratchet)?,
        remote_identity: IdentityKey::from_bytes(remote_identity)
            .map_err(|_| StateError::Corrupt)?,
        base_key,
        initiator,
        pending,
        profile,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by fuzzing (`session_record`): `[1, 0, 0x80, 0]` (no current
    /// state, an archive whose length 0 is written in two bytes) decoded,
    /// and was written back as `[1, 0, 0]`.
    #[test]
    fn non_minimal_varints_are_refused() {
        let empty = SessionRecord::new().to_bytes();
        assert_eq!(*empty, [RECORD_VERSION, 0, 0]);
        assert!(SessionRecord::from_bytes(&empty).is_ok());
        assert_eq!(
            SessionRecord::from_bytes(&[RECORD_VERSION, 0, 0x80, 0]).err(),
            Some(StateError::Corrupt)
        );
    }

    use crate::keys::{IdentityKeyPair, KeyPair};
    use crate::ratchet::{RatchetConfig, SessionKeys};

    /// An initiator's unanswered `tacit-v1` state (small config values, so
    /// that every varint of the ratchet takes one byte).
    fn state(signed_prekey_id: u32) -> SessionState {
        let keys = SessionKeys::new([1; 32], [2; 32], [3; 32], b"").unwrap();
        let config = RatchetConfig::new(100, 100).unwrap();
        let ratchet = Ratchet::new_responder(keys, KeyPair::from_private_bytes([4; 32]), config);
        let base_key = PublicKey::from_bytes([6; 32]);
        SessionState {
            ratchet,
            remote_identity: IdentityKeyPair::from_seed(&[5; 32]).public_key(),
            base_key,
            initiator: true,
            pending: Some(PendingPreKey {
                ephemeral_key: base_key,
                signed_prekey_id,
                one_time_prekey_id: None,
                kem: None,
            }),
            profile: Profile::V1,
        }
    }

    fn record(signed_prekey_id: u32) -> SessionRecord {
        let mut record = SessionRecord::new();
        record.insert_initiated(state(signed_prekey_id));
        record
    }

    /// `bytes` with the one-byte varint `5` at the first place where it
    /// differs from `other` written as the two bytes `0x85 0x00`.
    fn widen_varint(bytes: &[u8], other: &[u8]) -> Vec<u8> {
        let at = bytes.iter().zip(other).position(|(a, b)| a != b).unwrap();
        assert_eq!(bytes[at], 5);
        let mut out = bytes[..at].to_vec();
        out.extend_from_slice(&[0x85, 0x00]);
        out.extend_from_slice(&bytes[at + 1..]);
        out
    }

    /// A state's prekey id written in two bytes: it decodes to the same
    /// record, but is not what `to_bytes` writes, and is refused.
    #[test]
    fn a_non_minimal_varint_inside_a_state_is_refused() {
        let canonical = record(5).to_bytes();
        let loaded = SessionRecord::from_bytes(&canonical).unwrap();
        assert_eq!(*loaded.to_bytes(), *canonical);
        let wide = widen_varint(&canonical, &record(6).to_bytes());
        assert_eq!(wide.len(), canonical.len() + 1);
        assert_eq!(
            SessionRecord::from_bytes(&wide).err(),
            Some(StateError::Corrupt)
        );
    }

    /// The same in a version 1 record.
    #[test]
    fn a_non_minimal_varint_inside_a_version_1_state_is_refused() {
        let v1 = |id: u32| {
            let s = state(id);
            let pending = PendingV1 {
                signed_prekey_id: id,
                one_time_prekey_id: None,
            };
            let record = RecordV1 {
                current: Some(StateV1 {
                    ratchet: s.ratchet.to_bytes().to_vec(),
                    remote_identity: s.remote_identity.to_bytes(),
                    base_key: s.base_key.to_bytes(),
                    initiator: true,
                    pending: Some(pending),
                }),
                archived: Vec::new(),
            };
            versioned::encode(RECORD_VERSION_V1, &record)
        };
        let canonical = v1(5);
        let loaded = SessionRecord::from_bytes(&canonical).unwrap();
        assert_eq!(*loaded.to_bytes(), *record(5).to_bytes());
        let wide = widen_varint(&canonical, &v1(6));
        assert_eq!(
            SessionRecord::from_bytes(&wide).err(),
            Some(StateError::Corrupt)
        );
    }

    /// A record written before the ratchet's version 2 holds version 1
    /// ratchet bytes (no stored public key). It loads, and is written back
    /// with the ratchet in its current version. (Re-encoding the record to
    /// check its canonical form refused it.)
    #[test]
    fn a_record_holding_a_version_1_ratchet_loads() {
        let v2 = state(5).ratchet.to_bytes();
        // Version byte, the two config varints, the empty associated data
        // (one byte each), the root key and the private key: the public key
        // follows at 68.
        let mut v1 = vec![1u8];
        v1.extend_from_slice(&v2[1..68]);
        v1.extend_from_slice(&v2[100..]);
        assert_eq!(*Ratchet::from_bytes(&v1).unwrap().to_bytes(), *v2);
        let mut old = StateV2::from_state(&state(5));
        old.ratchet = v1;
        let bytes = versioned::encode(
            RECORD_VERSION,
            &RecordV2 {
                current: Some(old),
                archived: Vec::new(),
            },
        );
        let loaded = SessionRecord::from_bytes(&bytes).unwrap();
        assert_eq!(*loaded.to_bytes(), *record(5).to_bytes());
    }
}
