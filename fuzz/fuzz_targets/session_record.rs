//! What storage gives back: session records, accounts and bare ratchet
//! states. No panic on any bytes; an accepted record in the current
//! version is canonical (it re-encodes to exactly the input), and one in
//! an older version (still read) is written in the current version, which
//! reads back to the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tacit::session::SessionRecord;
use tacit::{Account, Ratchet};

/// `encoded` is `data` if it has the same version byte; otherwise
/// `data` was an older version: `reencode(encoded)` must give `encoded`.
fn check(data: &[u8], encoded: &[u8], reencode: impl Fn(&[u8]) -> Option<Vec<u8>>, what: &str) {
    if encoded.first() == data.first() {
        assert_eq!(encoded, data, "non-canonical {what}");
    } else {
        let again = reencode(encoded).unwrap_or_else(|| panic!("upgraded {what} refused"));
        assert_eq!(again.as_slice(), encoded, "upgraded {what} not stable");
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok(ratchet) = Ratchet::from_bytes(data) {
        check(
            data,
            &ratchet.to_bytes(),
            |b| Ratchet::from_bytes(b).ok().map(|r| r.to_bytes().to_vec()),
            "ratchet state",
        );
    }
    if let Ok(record) = SessionRecord::from_bytes(data) {
        check(
            data,
            &record.to_bytes(),
            |b| {
                SessionRecord::from_bytes(b)
                    .ok()
                    .map(|r| r.to_bytes().to_vec())
            },
            "session record",
        );
    }
    if let Ok(account) = Account::from_bytes(data) {
        check(
            data,
            &account.to_bytes(),
            |b| Account::from_bytes(b).ok().map(|a| a.to_bytes().to_vec()),
            "account",
        );
    }
});
