//! Linking a device to its user (`docs/PROTOCOL.md` 14.7).
//!
//! The new device shows a one-time [`LinkCode`] (80 bits, 16 characters of
//! RFC 4648 base32); the user types it on the device that holds the user
//! key. Both derive two slot ids and a key from it:
//!
//! ```text
//! request_slot (32) || response_slot (32) || K (32) = HKDF(0^32, code (10 bytes), "tacit/link/v1", 96)
//! blob = n (24, random) || XChaCha20-Poly1305(K, n, payload, aad = slot id)
//! request payload  = "tacit/link/v1/request" || u8(len(user_id)) || user_id || u32(device_id) || Enc(IK)
//! response payload = the signed device list that adds the new device (its wire form)
//! ```
//!
//! The relay stores the two blobs under the two slot ids. Without the code
//! it can neither read nor forge them, and an offline search of 2^80 codes
//! is out of reach. The response is the list itself, so the new device
//! learns its user key through a channel authenticated by the code, not
//! from the relay.

use alloc::vec::Vec;
use core::fmt;

use rand_core::CryptoRngCore;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::address::{Address, MAX_USER_ID_LEN};
use crate::aead::{xchacha20poly1305_open, xchacha20poly1305_seal};
use crate::crypto::hkdf;
use crate::error::IdentityError;
use crate::identity::DeviceList;
use crate::keys::{IdentityKey, KEY_LEN};
use crate::ratchet::TAG_LEN;

/// The bytes of a link code.
pub const LINK_CODE_LEN: usize = 10;
/// The characters of a link code, without separators.
pub const LINK_CODE_CHARS: usize = 16;
/// The length of a link slot id.
pub const LINK_SLOT_LEN: usize = 32;
/// The nonce at the front of a link blob.
const NONCE_LEN: usize = 24;
/// The HKDF label of the link secrets.
const LINK_LABEL: &[u8] = b"tacit/link/v1";
/// The prefix of a link request's payload.
const REQUEST_LABEL: &[u8] = b"tacit/link/v1/request";
/// RFC 4648 base32.
const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

/// A one-time link code: 80 random bits, shown as 16 base32 characters in
/// four groups (`ABCD-EFGH-IJKL-MNOP`).
#[derive(Clone, PartialEq, Eq, Zeroize, ZeroizeOnDrop)]
pub struct LinkCode([u8; LINK_CODE_LEN]);

impl LinkCode {
    /// A new code from `rng`.
    pub fn generate(rng: &mut impl CryptoRngCore) -> Self {
        let mut bytes = [0u8; LINK_CODE_LEN];
        rng.fill_bytes(&mut bytes);
        Self(bytes)
    }

    /// Reads a code as a person types it: base32 letters and digits in any
    /// case, with spaces or dashes anywhere.
    pub fn parse(text: &str) -> Result<Self, IdentityError> {
        let mut value: u128 = 0;
        let mut count = 0;
        for c in text.chars().filter(|c| !matches!(c, ' ' | '-')) {
            let upper = c.to_ascii_uppercase();
            let digit = ALPHABET
                .iter()
                .position(|a| char::from(*a) == upper)
                .ok_or(IdentityError::InvalidLinkCode)?;
            count += 1;
            if count > LINK_CODE_CHARS {
                return Err(IdentityError::InvalidLinkCode);
            }
            value = (value << 5) | digit as u128;
        }
        if count != LINK_CODE_CHARS {
            return Err(IdentityError::InvalidLinkCode);
        }
        let mut bytes = [0u8; LINK_CODE_LEN];
        bytes.copy_from_slice(&value.to_be_bytes()[16 - LINK_CODE_LEN..]);
        value.zeroize();
        Ok(Self(bytes))
    }

    /// The slot ids and key this code gives.
    pub fn secrets(&self) -> LinkSecrets {
        let okm = hkdf::<96>(&[0u8; 32], &self.0, LINK_LABEL);
        let mut secrets = LinkSecrets {
            request_slot: [0; LINK_SLOT_LEN],
            response_slot: [0; LINK_SLOT_LEN],
            key: Zeroizing::new([0; KEY_LEN]),
        };
        secrets.request_slot.copy_from_slice(&okm[..32]);
        secrets.response_slot.copy_from_slice(&okm[32..64]);
        secrets.key.copy_from_slice(&okm[64..]);
        secrets
    }
}

impl fmt::Display for LinkCode {
    /// The 16 characters in four groups of four, separated by dashes.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut value = Zeroizing::new([0u8; 16]);
        value[16 - LINK_CODE_LEN..].copy_from_slice(&self.0);
        let number = u128::from_be_bytes(*value);
        for i in 0..LINK_CODE_CHARS {
            if i > 0 && i % 4 == 0 {
                f.write_str("-")?;
            }
            let shift = 5 * (LINK_CODE_CHARS - 1 - i);
            let digit = ((number >> shift) & 31) as usize;
            write!(f, "{}", char::from(ALPHABET[digit]))?;
        }
        Ok(())
    }
}

impl fmt::Debug for LinkCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LinkCode(..)")
    }
}

/// What a link code gives: where the two blobs go, and their key.
pub struct LinkSecrets {
    request_slot: [u8; LINK_SLOT_LEN],
    response_slot: [u8; LINK_SLOT_LEN],
    key: Zeroizing<[u8; KEY_LEN]>,
}

impl fmt::Debug for LinkSecrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LinkSecrets").finish_non_exhaustive()
    }
}

/// A new device's request to be linked: its address and identity key.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct LinkRequest {
    /// The address the new device asks for.
    pub address: Address,
    /// Its identity key.
    pub identity: IdentityKey,
}

impl LinkSecrets {
    /// The slot of the new device's request.
    pub fn request_slot(&self) -> [u8; LINK_SLOT_LEN] {
        self.request_slot
    }

    /// The slot of the signed list that answers it.
    pub fn response_slot(&self) -> [u8; LINK_SLOT_LEN] {
        self.response_slot
    }

    /// The blob of a request from the device `address` with `identity`.
    pub fn seal_request(
        &self,
        address: &Address,
        identity: &IdentityKey,
        rng: &mut impl CryptoRngCore,
    ) -> Result<Vec<u8>, IdentityError> {
        let user_id = address.user_id().as_bytes();
        let mut payload = Vec::with_capacity(REQUEST_LABEL.len() + 1 + user_id.len() + 4 + 32);
        payload.extend_from_slice(REQUEST_LABEL);
        // An address's user id is at most 64 bytes.
        payload.push(user_id.len() as u8);
        payload.extend_from_slice(user_id);
        payload.extend_from_slice(&address.device_id().to_be_bytes());
        payload.extend_from_slice(&identity.to_bytes());
        self.seal(&self.request_slot, payload, rng)
    }

    /// Opens and reads a request blob.
    pub fn open_request(&self, blob: &[u8]) -> Result<LinkRequest, IdentityError> {
        let payload = self.open(&self.request_slot, blob)?;
        parse_request(&payload).ok_or(IdentityError::MalformedLinkRequest)
    }

    /// The blob of the answer: the signed list with the new device on it.
    pub fn seal_response(
        &self,
        list: &DeviceList,
        rng: &mut impl CryptoRngCore,
    ) -> Result<Vec<u8>, IdentityError> {
        self.seal(&self.response_slot, list.to_wire(), rng)
    }

    /// Opens an answer blob and verifies the list in it.
    pub fn open_response(&self, blob: &[u8]) -> Result<DeviceList, IdentityError> {
        let payload = self.open(&self.response_slot, blob)?;
        DeviceList::from_wire(&payload)
    }

    fn seal(
        &self,
        slot: &[u8; LINK_SLOT_LEN],
        payload: Vec<u8>,
        rng: &mut impl CryptoRngCore,
    ) -> Result<Vec<u8>, IdentityError> {
        let mut nonce = [0u8; NONCE_LEN];
        rng.fill_bytes(&mut nonce);
        let mut body = Zeroizing::new(payload);
        let tag = xchacha20poly1305_seal(&self.key, &nonce, slot, &mut body)
            .map_err(|_| IdentityError::LinkBlobDoesNotOpen)?;
        let mut blob = Vec::with_capacity(NONCE_LEN + body.len() + TAG_LEN);
        blob.extend_from_slice(&nonce);
        blob.extend_from_slice(&body);
        blob.extend_from_slice(&tag);
        Ok(blob)
    }

    fn open(
        &self,
        slot: &[u8; LINK_SLOT_LEN],
        blob: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, IdentityError> {
        if blob.len() < NONCE_LEN + TAG_LEN {
            return Err(IdentityError::LinkBlobDoesNotOpen);
        }
        let (nonce, rest) = blob.split_at(NONCE_LEN);
        let (body, tag) = rest.split_at(rest.len() - TAG_LEN);
        let nonce: [u8; NONCE_LEN] = nonce
            .try_into()
            .map_err(|_| IdentityError::LinkBlobDoesNotOpen)?;
        let tag: [u8; TAG_LEN] = tag
            .try_into()
            .map_err(|_| IdentityError::LinkBlobDoesNotOpen)?;
        let mut out = Zeroizing::new(body.to_vec());
        xchacha20poly1305_open(&self.key, &nonce, slot, &mut out, &tag)
            .map_err(|_| IdentityError::LinkBlobDoesNotOpen)?;
        Ok(out)
    }
}

/// Reads a request payload; `None` unless it is exactly one well-formed
/// request.
fn parse_request(payload: &[u8]) -> Option<LinkRequest> {
    let rest = payload.strip_prefix(REQUEST_LABEL)?;
    let (&len, rest) = rest.split_first()?;
    let len = usize::from(len);
    if len == 0 || len > MAX_USER_ID_LEN || rest.len() != len + 4 + KEY_LEN {
        return None;
    }
    let user_id = core::str::from_utf8(&rest[..len]).ok()?;
    let device_id = u32::from_be_bytes(rest[len..len + 4].try_into().ok()?);
    let address = Address::new(user_id, device_id).ok()?;
    let identity = IdentityKey::try_from_slice(&rest[len + 4..]).ok()?;
    Some(LinkRequest { address, identity })
}

#[cfg(test)]
mod tests {
    use rand_chacha::rand_core::SeedableRng;
    use rand_chacha::ChaCha20Rng;

    use super::*;
    use crate::identity::UserKeyPair;
    use crate::keys::IdentityKeyPair;

    fn rng() -> ChaCha20Rng {
        ChaCha20Rng::seed_from_u64(7)
    }

    #[test]
    fn codes_print_and_parse_back() {
        let mut rng = rng();
        for _ in 0..50 {
            let code = LinkCode::generate(&mut rng);
            let text = code.to_string();
            assert_eq!(text.len(), 19);
            assert_eq!(LinkCode::parse(&text).unwrap(), code);
            assert_eq!(
                LinkCode::parse(&text.to_lowercase().replace('-', " ")).unwrap(),
                code
            );
        }
        for bad in [
            "",
            "ABCD",
            "ABCD-EFGH-IJKL-MNO1",
            "ABCD-EFGH-IJKL-MNOPQ",
            "ABCD-EFGH-IJKL-MNO!",
        ] {
            assert_eq!(
                LinkCode::parse(bad),
                Err(IdentityError::InvalidLinkCode),
                "{bad}"
            );
        }
        // All zeros and all ones round trip.
        assert_eq!(LinkCode([0; 10]).to_string(), "AAAA-AAAA-AAAA-AAAA");
        assert_eq!(LinkCode([0xff; 10]).to_string(), "7777-7777-7777-7777");
    }

    #[test]
    fn a_request_and_its_answer_round_trip_only_under_the_code() {
        let mut rng = rng();
        let code = LinkCode::generate(&mut rng);
        let secrets = code.secrets();
        assert_ne!(secrets.request_slot(), secrets.response_slot());
        let address = Address::new("alice", 2).unwrap();
        let identity = IdentityKeyPair::generate(&mut rng).public_key();
        let blob = secrets.seal_request(&address, &identity, &mut rng).unwrap();
        let request = code.secrets().open_request(&blob).unwrap();
        assert_eq!(request, LinkRequest { address, identity });

        // Another code opens nothing; neither does a changed byte, nor the
        // request read as an answer.
        let other = LinkCode::generate(&mut rng).secrets();
        assert_eq!(
            other.open_request(&blob),
            Err(IdentityError::LinkBlobDoesNotOpen)
        );
        for i in [0, 30, blob.len() - 1] {
            let mut b = blob.clone();
            b[i] ^= 1;
            assert_eq!(
                secrets.open_request(&b),
                Err(IdentityError::LinkBlobDoesNotOpen)
            );
        }
        assert_eq!(
            secrets.open_response(&blob),
            Err(IdentityError::LinkBlobDoesNotOpen)
        );
        assert_eq!(
            secrets.open_request(&blob[..39]),
            Err(IdentityError::LinkBlobDoesNotOpen)
        );

        let user = UserKeyPair::generate(&mut rng);
        let list = DeviceList::sign(
            &user,
            "alice",
            2,
            &[
                (1, IdentityKeyPair::generate(&mut rng).public_key(), 0),
                (2, identity, 0),
            ],
        )
        .unwrap();
        let answer = secrets.seal_response(&list, &mut rng).unwrap();
        assert_eq!(code.secrets().open_response(&answer).unwrap(), list);
        assert_eq!(
            secrets.open_request(&answer),
            Err(IdentityError::LinkBlobDoesNotOpen)
        );
    }

    #[test]
    fn malformed_request_payloads_are_refused() {
        let identity = IdentityKeyPair::from_seed(&[4; 32]).public_key().to_bytes();
        let good = [
            REQUEST_LABEL,
            &[5],
            b"alice",
            &2u32.to_be_bytes(),
            &identity,
        ]
        .concat();
        assert!(parse_request(&good).is_some());
        let cases: [Vec<u8>; 6] = [
            [&b"tacit/link/v1/requesT"[..], &good[REQUEST_LABEL.len()..]].concat(),
            [REQUEST_LABEL, &[0], &0u32.to_be_bytes(), &identity].concat(),
            [
                REQUEST_LABEL,
                &[5],
                b"alice",
                &0u32.to_be_bytes(),
                &identity,
            ]
            .concat(),
            [&good[..], &[0]].concat(),
            good[..good.len() - 1].to_vec(),
            [
                REQUEST_LABEL,
                &[5],
                b"al\nce",
                &2u32.to_be_bytes(),
                &identity,
            ]
            .concat(),
        ];
        for (i, c) in cases.iter().enumerate() {
            assert!(parse_request(c).is_none(), "case {i}");
        }
    }
}
