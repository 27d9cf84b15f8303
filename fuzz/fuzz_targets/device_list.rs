//! Signed device lists (`docs/PROTOCOL.md` 14.3), as a peer or the relay
//! receives them: no panic; an accepted list re-encodes to exactly the
//! input, and every certificate on it verifies under its user key.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tacit::identity::DeviceList;
use tacit::Address;

fuzz_target!(|data: &[u8]| {
    if let Ok(list) = DeviceList::from_wire(data) {
        assert_eq!(list.to_wire(), data, "accepted a non-canonical list");
        assert!(
            !list.devices().is_empty(),
            "accepted a list without devices"
        );
        for device in list.devices() {
            let address =
                Address::new(list.user_id(), device.device_id).expect("a listed address is valid");
            device
                .certificate
                .verify(list.user_key(), &address, &device.identity_key)
                .expect("accepted a list with a certificate that does not verify");
        }
        assert_eq!(
            DeviceList::from_wire(&list.to_wire()).as_ref(),
            Ok(&list),
            "the re-encoded list decodes to another list"
        );
    }
});
