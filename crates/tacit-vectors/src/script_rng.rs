//! A random number generator that hands out recorded values, so that a
//! vector file fixes every "random" byte a party uses.
//!
//! The core draws exactly 32 bytes in one call for each key pair and 24
//! bytes in one call for each header nonce. Requests of 32 bytes take the
//! next recorded private key, requests of 24 bytes take the nonce loaded for
//! the message being sent. Anything else is a violation the verifier reports.

use std::collections::VecDeque;

use rand_core::{CryptoRng, RngCore};

/// Recorded randomness of one party.
#[derive(Debug, Default)]
pub struct ScriptRng {
    keys: VecDeque<[u8; 32]>,
    keys_drawn: usize,
    nonce: Option<[u8; 24]>,
    violation: Option<String>,
}

impl ScriptRng {
    /// A generator that will hand out `keys` in order.
    pub fn new(keys: impl IntoIterator<Item = [u8; 32]>) -> Self {
        Self {
            keys: keys.into_iter().collect(),
            ..Self::default()
        }
    }

    /// Loads the nonce the next 24-byte request takes.
    pub fn load_nonce(&mut self, nonce: [u8; 24]) {
        self.nonce = Some(nonce);
    }

    /// Whether the loaded nonce is still unused.
    pub fn nonce_pending(&self) -> bool {
        self.nonce.is_some()
    }

    /// How many private keys have been drawn.
    pub fn keys_drawn(&self) -> usize {
        self.keys_drawn
    }

    /// How many private keys are left.
    pub fn keys_left(&self) -> usize {
        self.keys.len()
    }

    /// The first request that could not be served, if any; clears it.
    pub fn take_violation(&mut self) -> Option<String> {
        self.violation.take()
    }

    fn violate(&mut self, what: String) {
        self.violation.get_or_insert(what);
    }
}

impl RngCore for ScriptRng {
    fn next_u32(&mut self) -> u32 {
        self.violate("unexpected request for a u32".into());
        0
    }

    fn next_u64(&mut self) -> u64 {
        self.violate("unexpected request for a u64".into());
        0
    }

    fn fill_bytes(&mut self, dest: &mut [u8]) {
        dest.fill(0);
        match dest.len() {
            32 => match self.keys.pop_front() {
                Some(key) => {
                    dest.copy_from_slice(&key);
                    self.keys_drawn += 1;
                }
                None => self.violate("a private key was drawn but the list is exhausted".into()),
            },
            24 => match self.nonce.take() {
                Some(nonce) => dest.copy_from_slice(&nonce),
                None => self.violate("a header nonce was drawn outside a send".into()),
            },
            n => self.violate(format!("unexpected request for {n} random bytes")),
        }
    }

    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}

impl CryptoRng for ScriptRng {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serves_keys_and_nonces_by_length() {
        let mut rng = ScriptRng::new([[1; 32], [2; 32]]);
        let mut key = [0u8; 32];
        rng.fill_bytes(&mut key);
        assert_eq!(key, [1; 32]);
        rng.load_nonce([9; 24]);
        let mut nonce = [0u8; 24];
        rng.fill_bytes(&mut nonce);
        assert_eq!(nonce, [9; 24]);
        assert!(rng.take_violation().is_none());
        rng.fill_bytes(&mut nonce);
        assert!(
            rng.take_violation().is_some(),
            "second nonce without a send"
        );
        rng.fill_bytes(&mut key);
        rng.fill_bytes(&mut key);
        assert!(rng.take_violation().is_some(), "keys exhausted");
        assert_eq!(rng.keys_drawn(), 2);
    }
}
