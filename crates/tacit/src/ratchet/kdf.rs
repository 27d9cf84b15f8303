//! The ratchet's key derivation functions: `KDF_RK`, `KDF_CK` and the
//! expansion of a message key into an AEAD key and nonce.

use crate::crypto::{hkdf, HmacSha256};
use zeroize::Zeroizing;

use crate::keys::SecretKey32;

const ROOT_INFO: &[u8] = b"tacit/ratchet/root/v1";
const MESSAGE_INFO: &[u8] = b"tacit/ratchet/message/v1";

/// The outputs of `KDF_RK`.
pub(crate) struct RootStep {
    /// The new root key.
    pub(crate) root_key: SecretKey32,
    /// The new chain key.
    pub(crate) chain_key: SecretKey32,
    /// The new next header key.
    pub(crate) next_header_key: SecretKey32,
}

/// `KDF_RK(rk, dh_out) = HKDF(rk, dh_out, "tacit/ratchet/root/v1", 96)`,
/// split into RK, CK and NHK.
pub(crate) fn kdf_rk(root_key: &SecretKey32, dh_out: &SecretKey32) -> RootStep {
    let okm = hkdf::<96>(root_key.as_bytes(), dh_out.as_bytes(), ROOT_INFO);
    RootStep {
        root_key: split(&okm, 0),
        chain_key: split(&okm, 1),
        next_header_key: split(&okm, 2),
    }
}

/// `KDF_CK(ck)`: the message key `HMAC(ck, 0x01)` and the next chain key
/// `HMAC(ck, 0x02)`, returned in that order.
pub(crate) fn kdf_ck(chain_key: &SecretKey32) -> (SecretKey32, SecretKey32) {
    let mac = HmacSha256::new(chain_key.as_bytes());
    let message_key = SecretKey32::from_bytes(*mac.mac(&[0x01]));
    let next_chain_key = SecretKey32::from_bytes(*mac.mac(&[0x02]));
    (message_key, next_chain_key)
}

/// The AEAD key and nonce of a message: `K (32) || NONCE (12) =
/// HKDF(0^32, MK, "tacit/ratchet/message/v1", 44)`.
pub(crate) struct MessageKeys {
    /// The ChaCha20-Poly1305 key `K`.
    pub(crate) key: Zeroizing<[u8; 32]>,
    /// The ChaCha20-Poly1305 nonce `NONCE`.
    pub(crate) nonce: Zeroizing<[u8; 12]>,
}

impl MessageKeys {
    /// Expands a message key.
    pub(crate) fn derive(message_key: &SecretKey32) -> Self {
        Self::derive_labelled(message_key, MESSAGE_INFO)
    }

    /// Expands a message key under another HKDF label (a group sender
    /// chain's, `docs/PROTOCOL.md` 16.5).
    pub(crate) fn derive_labelled(message_key: &SecretKey32, info: &[u8]) -> Self {
        let okm = hkdf::<44>(&[0u8; 32], message_key.as_bytes(), info);
        let mut key = Zeroizing::new([0u8; 32]);
        let mut nonce = Zeroizing::new([0u8; 12]);
        key.copy_from_slice(&okm[..32]);
        nonce.copy_from_slice(&okm[32..]);
        Self { key, nonce }
    }
}

/// The `index`-th 32-byte block of a 96-byte HKDF output.
fn split(okm: &[u8; 96], index: usize) -> SecretKey32 {
    let mut block = [0u8; 32];
    block.copy_from_slice(&okm[32 * index..32 * (index + 1)]);
    SecretKey32::from_bytes(block)
}
