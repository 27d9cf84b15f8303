//! What storage gives back: session records, accounts and bare ratchet
//! states. No panic on any bytes, and an accepted record is canonical (it
//! re-encodes to exactly the input).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tacit::session::SessionRecord;
use tacit::{Account, Ratchet};

fuzz_target!(|data: &[u8]| {
    if let Ok(ratchet) = Ratchet::from_bytes(data) {
        assert_eq!(
            ratchet.to_bytes().as_slice(),
            data,
            "non-canonical ratchet state"
        );
    }
    if let Ok(record) = SessionRecord::from_bytes(data) {
        assert_eq!(
            record.to_bytes().as_slice(),
            data,
            "non-canonical session record"
        );
    }
    if let Ok(account) = Account::from_bytes(data) {
        assert_eq!(account.to_bytes().as_slice(), data, "non-canonical account");
    }
});
