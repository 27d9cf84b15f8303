#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]
//! Backoff bounds and the store key's forms.

mod common;

use std::time::Duration;

use common::TempDir;
use tacit_client::{Backoff, ClientError, StoreKey};

#[test]
fn backoff_doubles_within_bounds_with_jitter() {
    let b = Backoff::new(Duration::from_millis(100), Duration::from_secs(2), 10);
    assert_eq!(b.delay(1, u32::MAX), Duration::from_millis(100));
    assert_eq!(b.delay(1, 0), Duration::from_millis(50));
    assert_eq!(b.delay(3, u32::MAX), Duration::from_millis(400));
    // Capped, also for absurd counts.
    assert_eq!(b.delay(40, u32::MAX), Duration::from_secs(2));
    assert_eq!(b.delay(u32::MAX, 0), Duration::from_secs(1));
    for failures in 1..50 {
        for jitter in [0, 1, u32::MAX / 2, u32::MAX] {
            let d = b.delay(failures, jitter);
            assert!(d >= Duration::from_millis(50) && d <= Duration::from_secs(2));
        }
    }
}

#[test]
fn the_key_file_is_created_once_and_read_back() {
    let dir = TempDir::new("key");
    let path = dir.path("store.db.key");
    let first = StoreKey::load_or_create(&path).unwrap();
    let again = StoreKey::load_or_create(&path).unwrap();
    assert_eq!(first.as_bytes(), again.as_bytes());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    // Debug output does not show it.
    assert_eq!(format!("{first:?}"), "StoreKey(<redacted>)");

    // A damaged key file is refused, not replaced.
    std::fs::write(&path, "not hex").unwrap();
    assert!(matches!(
        StoreKey::load_or_create(&path),
        Err(ClientError::Invalid(_))
    ));
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "not hex");
}

#[test]
fn hex_keys() {
    let hex = "00".repeat(31) + "ff";
    assert_eq!(
        StoreKey::from_hex(&format!(" {hex}\n")).unwrap().as_bytes()[31],
        0xff
    );
    for bad in ["", "00", &"zz".repeat(32), &"00".repeat(33)] {
        assert!(StoreKey::from_hex(bad).is_err(), "{bad}");
    }
}
