#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]
//! The demo runs with no flags, finishes by itself, exits 0, shows both
//! views and the relay's rows with nothing leaked, links and removes a
//! second device of Alice's, sends a file, and cleans up. Its steps have
//! deadlines of their own, so a hang fails it; how long it takes is not
//! asserted.

#[test]
fn the_demo_runs_to_completion_and_cleans_up() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_tacit-demo"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "stdout: {stdout}\nstderr: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    for expected in [
        "alice: Hi Bob! Lunch on Friday?",
        "alice: Bring the blue folder.",
        "3 new, 0 duplicates",
        "[delivered] Bring the blue folder.",
        "[read] Hi Bob! Lunch on Friday?",
        "bob: Friday works. See you there!",
        "#1 for bob.1",
        "They match",
        "Alice's session with bob.1: tacit-v2 (PQXDH: X25519 + ML-KEM-1024",
        "Bob's session with alice.1: tacit-v2",
        "with its signed ML-KEM-1024 prekey",
        "alice.1 is given the code and approves alice.2",
        "Alice's devices: alice.1, alice.2",
        "bob: Both devices get this.        | copies for alice.1, alice.2        | bob: Both devices get this.",
        "the same as alice.1's (one per pair of users)",
        "alice.2's client stops: relay refused: DeviceRemoved",
        "relay rows for alice.2: registrations 0, one-time prekeys 0, messages 0",
        "relay's registered devices: alice.1, bob.1",
        "bob: Only alice.1 gets this.       | copies for alice.1                 | nothing new",
        "Bob's client learns of minutes.txt (1000000 bytes)",
        "(the same bytes)",
        "The relay holds 1 blob in 16 chunks",
        "Messages left at the relay: 0",
        "Temporary files removed.",
    ] {
        assert!(
            stdout.contains(expected),
            "missing {expected:?} in:\n{stdout}"
        );
    }
    assert!(!stdout.contains("FOUND"), "{stdout}");
    assert!(stdout.matches(": not found").count() >= 10, "{stdout}");
    // The temporary directory is gone.
    let line = stdout.lines().find(|l| l.starts_with("database")).unwrap();
    let path = line
        .trim_start_matches("database")
        .trim()
        .trim_end_matches("(temporary)")
        .trim();
    let dir = std::path::Path::new(path).parent().unwrap();
    assert!(!dir.exists(), "{} still exists", dir.display());
}
