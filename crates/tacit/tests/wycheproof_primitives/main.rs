#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]
//! Every Wycheproof case that applies to a primitive, run through the
//! functions Tacit itself calls: ChaCha20-Poly1305 and XChaCha20-Poly1305
//! as composed in the crate (the `chacha20` keystream and orion's Poly1305),
//! X25519 with the all-zero refusal, Ed25519 with strict verification
//! (`IdentityKey::verify`), HKDF-SHA256 and HMAC-SHA256.
//!
//! Each test sorts every case of its file into a [`Tally`] and asserts the
//! whole tally, so a case skipped, added or judged differently fails the
//! test. Where Tacit is deliberately stricter than Wycheproof, the case is
//! counted as `stricter` and the rule is stated next to it (and in
//! `SECURITY.md`, "Hardening in place").

mod aead;
mod ed25519;
mod kdf;
mod x25519;

/// What the cases of one Wycheproof file came to.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Tally {
    /// `valid` cases that Tacit computes exactly as the file says.
    pub valid: usize,
    /// `invalid` cases that Tacit refuses at run time.
    pub invalid: usize,
    /// `acceptable` cases that Tacit accepts with the file's output.
    pub acceptable: usize,
    /// `valid` or `acceptable` cases that Tacit refuses on purpose.
    pub stricter: usize,
    /// `invalid` cases whose inputs the function's types cannot hold (a
    /// nonce of another length, an HKDF output over 8160 bytes): refused
    /// before any call, by the compiler.
    pub refused_by_type: usize,
    /// `valid` cases with inputs Tacit never uses and its functions cannot
    /// take (an HKDF salt or HMAC key longer than 32 bytes).
    pub not_applicable: usize,
}

impl Tally {
    /// Every case counted once.
    pub fn total(&self) -> usize {
        self.valid
            + self.invalid
            + self.acceptable
            + self.stricter
            + self.refused_by_type
            + self.not_applicable
    }
}

/// Asserts that `tally` is exactly `expected` and covers all the cases the
/// file announces (`numberOfTests`) and holds.
pub fn assert_tally(file: &str, tally: Tally, expected: Tally, announced: usize, held: usize) {
    assert_eq!(
        announced, held,
        "{file}: numberOfTests against the cases held"
    );
    assert_eq!(tally.total(), held, "{file}: every case counted once");
    assert_eq!(tally, expected, "{file}: the verdicts");
}
