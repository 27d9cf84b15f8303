#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]
//! User keys, device certificates and signed device lists: what verifies,
//! and every forgery refused with its typed error.

use tacit::error::{IdentityError, WireError};
use tacit::identity::{DeviceCertificate, DeviceList, UserKeyPair, MAX_DEVICES};
use tacit::keys::{IdentityKey, IdentityKeyPair};
use tacit::Address;

fn user(seed: u8) -> UserKeyPair {
    UserKeyPair::from_seed(&[seed; 32])
}

fn device(seed: u8) -> IdentityKey {
    IdentityKeyPair::from_seed(&[seed; 32]).public_key()
}

fn alice_list() -> DeviceList {
    DeviceList::sign(
        &user(1),
        "alice",
        1,
        &[(1, device(11), 1000), (2, device(12), 2000)],
    )
    .unwrap()
}

#[test]
fn a_signed_list_round_trips_and_verifies() {
    let list = alice_list();
    let bytes = list.to_wire();
    let back = DeviceList::from_wire(&bytes).unwrap();
    assert_eq!(back, list);
    assert_eq!(back.to_wire(), bytes);
    assert_eq!(back.user_id(), "alice");
    assert_eq!(back.version(), 1);
    assert_eq!(back.user_key(), &user(1).public_key());
    assert!(back.lists(1, &device(11)));
    assert!(!back.lists(1, &device(12)));
    assert!(!back.lists(3, &device(11)));
    assert_eq!(
        back.addresses(),
        vec![
            Address::new("alice", 1).unwrap(),
            Address::new("alice", 2).unwrap()
        ]
    );
}

#[test]
fn devices_are_sorted_and_certified() {
    let list = DeviceList::sign(
        &user(1),
        "alice",
        5,
        &[(9, device(19), 0), (3, device(13), 0)],
    )
    .unwrap();
    let ids: Vec<u32> = list.devices().iter().map(|d| d.device_id).collect();
    assert_eq!(ids, [3, 9]);
    for d in list.devices() {
        let address = Address::new("alice", d.device_id).unwrap();
        d.certificate
            .verify(&user(1).public_key(), &address, &d.identity_key)
            .unwrap();
        // Not for another user key, another address, or another identity.
        assert_eq!(
            d.certificate
                .verify(&user(2).public_key(), &address, &d.identity_key),
            Err(IdentityError::InvalidCertificate(d.device_id))
        );
        let other = Address::new("alicf", d.device_id).unwrap();
        assert!(d
            .certificate
            .verify(&user(1).public_key(), &other, &d.identity_key)
            .is_err());
        assert!(d
            .certificate
            .verify(&user(1).public_key(), &address, &device(99))
            .is_err());
    }
}

#[test]
fn adding_and_removing_devices_raises_the_version() {
    let list = alice_list();
    let added = list.with_device(&user(1), 3, device(13), 3000).unwrap();
    assert_eq!(added.version(), 2);
    assert!(added.lists(3, &device(13)));
    let removed = added.without_device(&user(1), 2).unwrap();
    assert_eq!(removed.version(), 3);
    assert!(removed.device(2).is_none());
    assert_eq!(
        added.with_device(&user(1), 3, device(14), 0),
        Err(IdentityError::DeviceExists(3))
    );
    assert_eq!(
        list.without_device(&user(1), 7),
        Err(IdentityError::UnknownDevice(7))
    );
    assert_eq!(
        list.with_device(&user(2), 3, device(13), 0),
        Err(IdentityError::WrongUserKey)
    );
    // The last device cannot be removed: a list names at least one.
    let one = DeviceList::sign(&user(1), "alice", 1, &[(1, device(11), 0)]).unwrap();
    assert_eq!(
        one.without_device(&user(1), 1),
        Err(IdentityError::Wire(WireError::InvalidValue("devices")))
    );
}

#[test]
fn shape_rules_are_enforced_when_signing() {
    let u = user(1);
    let bad = |r: Result<DeviceList, IdentityError>, field| {
        assert_eq!(r, Err(IdentityError::Wire(WireError::InvalidValue(field))));
    };
    bad(
        DeviceList::sign(&u, "alice", 0, &[(1, device(11), 0)]),
        "version",
    );
    bad(DeviceList::sign(&u, "alice", 1, &[]), "devices");
    bad(
        DeviceList::sign(&u, "alice", 1, &[(0, device(11), 0)]),
        "devices",
    );
    bad(
        DeviceList::sign(&u, "alice", 1, &[(1, device(11), 0), (1, device(12), 0)]),
        "devices",
    );
    bad(
        DeviceList::sign(&u, "alice", 1, &[(1, device(11), 0), (2, device(11), 0)]),
        "devices",
    );
    bad(
        DeviceList::sign(&u, "", 1, &[(1, device(11), 0)]),
        "user_id",
    );
    bad(
        DeviceList::sign(&u, "a\nb", 1, &[(1, device(11), 0)]),
        "user_id",
    );
    let many: Vec<_> = (1..=MAX_DEVICES as u32 + 1)
        .map(|i| (i, device(i as u8 + 20), 0))
        .collect();
    bad(DeviceList::sign(&u, "alice", 1, &many), "devices");
    assert!(DeviceList::sign(&u, "alice", 1, &many[..MAX_DEVICES]).is_ok());
}

/// Re-encodes a list after `edit`, keeping its signature, to forge it.
fn forged(edit: impl FnOnce(&mut Vec<u8>)) -> Result<DeviceList, IdentityError> {
    let mut bytes = alice_list().to_wire();
    edit(&mut bytes);
    DeviceList::from_wire(&bytes)
}

#[test]
fn any_changed_byte_is_refused() {
    let bytes = alice_list().to_wire();
    for i in 0..bytes.len() {
        for flip in [0x01u8, 0x80] {
            let mut b = bytes.clone();
            b[i] ^= flip;
            assert!(
                DeviceList::from_wire(&b).is_err(),
                "byte {i} ^ {flip:#x} accepted"
            );
        }
    }
    assert!(forged(|b| b.push(0)).is_err());
    assert!(forged(|b| {
        b.pop();
    })
    .is_err());
}

#[test]
fn a_list_signed_by_another_user_key_is_refused() {
    // Mallory signs a list naming Alice's devices under his own key, then
    // swaps in Alice's user key: the certificates no longer verify.
    let mallory = DeviceList::sign(&user(2), "alice", 9, &[(1, device(11), 0)]).unwrap();
    let alice = alice_list();
    let mut bytes = mallory.to_wire();
    let (m, a) = (user(2).public_key().to_bytes(), alice.user_key().to_bytes());
    let at = bytes.windows(32).position(|w| w == m).unwrap();
    bytes[at..at + 32].copy_from_slice(&a);
    assert_eq!(
        DeviceList::from_wire(&bytes),
        Err(IdentityError::InvalidCertificate(1))
    );
}

#[test]
fn a_certificate_for_another_user_is_refused() {
    // A list for "alicf" whose device carries the certificate issued for
    // "alice": same key, same device, but the certificate names another user.
    let alice = alice_list();
    let cert = alice.devices()[0].certificate;
    let alicf = DeviceList::sign(&user(1), "alicf", 1, &[(1, device(11), 1000)]).unwrap();
    let mut bytes = alicf.to_wire();
    let own = alicf.devices()[0].certificate.to_bytes();
    let at = bytes.windows(64).position(|w| w == own).unwrap();
    bytes[at..at + 64].copy_from_slice(&cert.to_bytes());
    assert_eq!(
        DeviceList::from_wire(&bytes),
        Err(IdentityError::InvalidCertificate(1))
    );
}

#[test]
fn a_list_signature_over_other_devices_is_refused() {
    // Take version 2's signature and put it on version 1's bytes.
    let v1 = alice_list();
    let v2 = v1.with_device(&user(1), 3, device(13), 0).unwrap();
    let mut bytes = v1.to_wire();
    let sig = v1.signature().to_bytes();
    let at = bytes.windows(64).position(|w| w == sig).unwrap();
    bytes[at..at + 64].copy_from_slice(&v2.signature().to_bytes());
    assert_eq!(
        DeviceList::from_wire(&bytes),
        Err(IdentityError::InvalidListSignature)
    );
}

#[test]
fn oversize_and_garbage_are_refused() {
    assert!(matches!(
        DeviceList::from_wire(&[0u8; 5000]),
        Err(IdentityError::Wire(WireError::Oversize { .. }))
    ));
    assert!(DeviceList::from_wire(&[0xff, 0xff, 0xff]).is_err());
    assert!(DeviceList::from_wire(&[]).is_err());
}

#[test]
fn a_certificate_issued_verifies_only_for_its_device() {
    let address = Address::new("bob", 4).unwrap();
    let cert = DeviceCertificate::issue(&user(3), &address, &device(40));
    cert.verify(&user(3).public_key(), &address, &device(40))
        .unwrap();
    let mut bytes = cert.to_bytes();
    bytes[0] ^= 1;
    assert!(DeviceCertificate::from_bytes(bytes)
        .verify(&user(3).public_key(), &address, &device(40))
        .is_err());
}
