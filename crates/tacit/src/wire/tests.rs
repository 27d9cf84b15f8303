use alloc::boxed::Box;
use alloc::vec;

use prost::Message as _;

use super::*;
use crate::keys::{IdentityKeyPair, KeyPair};

fn bundle(with_opk: bool) -> PreKeyBundleMessage {
    let identity = IdentityKeyPair::from_seed(&[1; 32]);
    let spk = KeyPair::from_private_bytes([2; 32]).public_key();
    PreKeyBundleMessage {
        identity_key: identity.public_key(),
        signed_prekey_id: 7,
        signed_prekey: spk,
        signed_prekey_signature: identity.sign_prekey(&spk),
        one_time_prekey: with_opk.then(|| (42, KeyPair::from_private_bytes([3; 32]).public_key())),
        kem_prekey: None,
    }
}

fn ratchet_message() -> EncryptedMessage {
    EncryptedMessage::new([5; ENCRYPTED_HEADER_LEN], vec![6; 40]).unwrap()
}

fn prekey_message() -> PreKeyMessage {
    PreKeyMessage {
        identity_key: IdentityKeyPair::from_seed(&[9; 32]).public_key(),
        ephemeral_key: PublicKey::from_bytes([8; 32]),
        signed_prekey_id: 7,
        one_time_prekey_id: Some(42),
        message: ratchet_message(),
        kem: None,
    }
}

#[test]
fn messages_round_trip() {
    for b in [bundle(true), bundle(false)] {
        assert_eq!(PreKeyBundleMessage::from_wire(&b.to_wire()), Ok(b));
    }
    let p = prekey_message();
    assert_eq!(PreKeyMessage::from_wire(&p.to_wire()), Ok(p.clone()));
    let r = ratchet_message();
    assert_eq!(EncryptedMessage::from_wire(&r.to_wire()), Ok(r.clone()));
    for s in [
        SessionMessage::PreKey(Box::new(p)),
        SessionMessage::Ratchet(r),
    ] {
        assert_eq!(SessionMessage::from_wire(&s.to_wire()), Ok(s));
    }
}

#[test]
fn unknown_version_is_refused() {
    let mut m = proto::RatchetMessage {
        version: 2,
        encrypted_header: vec![0; 80],
        ciphertext: vec![0; 16],
    };
    assert_eq!(
        EncryptedMessage::from_wire(&m.encode_to_vec()),
        Err(WireError::UnknownVersion(2))
    );
    m.version = 0;
    assert_eq!(
        EncryptedMessage::from_wire(&m.encode_to_vec()),
        Err(WireError::UnknownVersion(0))
    );
}

#[test]
fn wrong_lengths_and_missing_fields_are_refused() {
    let short_header = proto::RatchetMessage {
        version: 1,
        encrypted_header: vec![0; 79],
        ciphertext: vec![0; 16],
    };
    assert_eq!(
        EncryptedMessage::from_wire(&short_header.encode_to_vec()),
        Err(WireError::InvalidLength {
            field: "encrypted_header",
            expected: 80,
            actual: 79
        })
    );
    let no_tag = proto::RatchetMessage {
        version: 1,
        encrypted_header: vec![0; 80],
        ciphertext: vec![0; 15],
    };
    assert!(matches!(
        EncryptedMessage::from_wire(&no_tag.encode_to_vec()),
        Err(WireError::InvalidLength {
            field: "ciphertext",
            ..
        })
    ));
    let mut p = prekey_message().to_proto();
    p.message = None;
    assert_eq!(
        PreKeyMessage::from_wire(&p.encode_to_vec()),
        Err(WireError::MissingField("message"))
    );
    let mut p = prekey_message().to_proto();
    p.ephemeral_key.clear();
    assert_eq!(
        PreKeyMessage::from_wire(&p.encode_to_vec()),
        Err(WireError::MissingField("ephemeral_key"))
    );
    assert_eq!(
        SessionMessage::from_wire(&proto::SessionMessage { kind: None }.encode_to_vec()),
        Err(WireError::MissingField("kind"))
    );
}

#[test]
fn weak_identity_keys_are_refused() {
    let mut p = prekey_message().to_proto();
    let mut identity_point = vec![0u8; 32];
    identity_point[0] = 1;
    p.identity_key = identity_point;
    assert!(matches!(
        PreKeyMessage::from_wire(&p.encode_to_vec()),
        Err(WireError::InvalidKey {
            field: "identity_key",
            ..
        })
    ));
}

#[test]
fn half_a_one_time_prekey_is_refused() {
    let mut b = proto::PreKeyBundle::decode(bundle(true).to_wire().as_slice()).unwrap();
    b.one_time_prekey = None;
    assert_eq!(
        PreKeyBundleMessage::from_wire(&b.encode_to_vec()),
        Err(WireError::MissingField("one_time_prekey"))
    );
}

#[test]
fn non_canonical_encodings_are_refused() {
    let good = ratchet_message().to_wire();
    // An unknown field appended (field 15, varint 1).
    let mut unknown = good.clone();
    unknown.extend_from_slice(&[0x78, 0x01]);
    assert_eq!(
        EncryptedMessage::from_wire(&unknown),
        Err(WireError::NonCanonical)
    );
    // The version field repeated.
    let mut repeated = good.clone();
    repeated.extend_from_slice(&[0x08, 0x01]);
    assert_eq!(
        EncryptedMessage::from_wire(&repeated),
        Err(WireError::NonCanonical)
    );
    // A non-minimal varint for the version (0x81 0x00 = 1).
    let mut long_varint = vec![0x08, 0x81, 0x00];
    long_varint.extend_from_slice(&good[2..]);
    assert_eq!(
        EncryptedMessage::from_wire(&long_varint),
        Err(WireError::NonCanonical)
    );
}

#[test]
fn oversize_and_garbage_are_refused() {
    let big = vec![0u8; MAX_MESSAGE_LEN + 1];
    assert!(matches!(
        EncryptedMessage::from_wire(&big),
        Err(WireError::Oversize { .. })
    ));
    assert!(matches!(
        PreKeyBundleMessage::from_wire(&[0u8; MAX_BUNDLE_LEN + 1]),
        Err(WireError::Oversize { .. })
    ));
    assert_eq!(
        EncryptedMessage::from_wire(&[0xff, 0xff]),
        Err(WireError::Malformed)
    );
    assert!(EncryptedMessage::from_wire(&[]).is_err());
    // Every truncation of a valid message is refused.
    let wire = SessionMessage::PreKey(Box::new(prekey_message())).to_wire();
    for len in 0..wire.len() {
        assert!(SessionMessage::from_wire(&wire[..len]).is_err(), "{len}");
    }
}
