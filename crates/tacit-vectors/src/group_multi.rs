//! The multi-recipient entries of `group.json` (`docs/PROTOCOL.md` 16.7,
//! 16.9): sealing from the 64 bytes drawn, each part and envelope, and the
//! refusals of the sender and of a recipient.

use rand_core::{CryptoRng, RngCore};
use tacit::group::multi;
use tacit::{Address, IdentityKey, IdentityKeyPair};

use crate::group::expect_error;
use crate::group_schema::{InvalidEnvelope, InvalidSeal, MultiCase, RecipientFields};
use crate::group_wire::{pb_bytes, pb_uint};
use crate::verify::check;

/// Hands out one fixed buffer for exactly one request of its length.
pub(crate) struct OnceRng {
    bytes: Vec<u8>,
    used: bool,
    violation: bool,
}

impl OnceRng {
    /// A generator holding `bytes`.
    pub(crate) fn new(bytes: Vec<u8>) -> Self {
        Self {
            bytes,
            used: false,
            violation: false,
        }
    }
}

impl RngCore for OnceRng {
    fn next_u32(&mut self) -> u32 {
        self.violation = true;
        0
    }
    fn next_u64(&mut self) -> u64 {
        self.violation = true;
        0
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        if self.used || dest.len() != self.bytes.len() {
            self.violation = true;
            return;
        }
        dest.copy_from_slice(&self.bytes);
        self.used = true;
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}

impl CryptoRng for OnceRng {}

fn recipients(list: &[RecipientFields]) -> Result<Vec<(Address, IdentityKey)>, String> {
    list.iter()
        .map(|r| {
            let address = Address::new(&r.user_id, r.device_id).map_err(|e| e.to_string())?;
            Ok((
                address,
                IdentityKeyPair::from_seed(&r.identity_seed.0).public_key(),
            ))
        })
        .collect()
}

pub(crate) fn verify_multi(c: &MultiCase) -> Result<(), String> {
    let list = recipients(&c.recipients)?;
    let mut rng = OnceRng::new(c.rng.0.to_vec());
    let sealed = multi::seal(&c.plaintext.0, &list, &mut rng).map_err(|e| format!("{e:?}"))?;
    if rng.violation || !rng.used {
        return Err("seal did not draw exactly 64 bytes in one call".into());
    }
    let e = &c.expected;
    check(
        "ephemeral_key",
        sealed.shared.ephemeral_key().as_bytes(),
        &e.ephemeral_key.0,
    )?;
    let mut shared = Vec::new();
    pb_uint(&mut shared, 1, 1);
    pb_bytes(&mut shared, 2, &e.ephemeral_key.0, false);
    pb_bytes(&mut shared, 3, sealed.shared.payload(), false);
    check("shared_payload (encoding)", &shared, &e.shared_payload.0)?;
    check(
        "shared_payload",
        &sealed.shared.to_bytes(),
        &e.shared_payload.0,
    )?;
    if e.parts.len() != list.len() || e.envelopes.len() != list.len() {
        return Err("one part and one envelope per recipient".into());
    }
    for (i, ((part, envelope), r)) in sealed
        .parts
        .iter()
        .zip(&e.envelopes)
        .zip(&c.recipients)
        .enumerate()
    {
        check(&format!("parts[{i}]"), &part.wrapped_key, &e.parts[i].0)?;
        let mut env = Vec::new();
        pb_uint(&mut env, 1, 1);
        pb_bytes(&mut env, 2, &e.ephemeral_key.0, false);
        pb_bytes(&mut env, 3, &part.wrapped_key, false);
        pb_bytes(&mut env, 4, sealed.shared.payload(), false);
        check(&format!("envelopes[{i}]"), &env, &envelope.0)?;
        let ik = IdentityKeyPair::from_seed(&r.identity_seed.0);
        let opened = multi::open(&ik, &list[i].0, &envelope.0)
            .map_err(|e| format!("recipient {i} cannot open: {e:?}"))?;
        check("plaintext", &opened, &c.plaintext.0)?;
    }
    Ok(())
}

pub(crate) fn verify_invalid_seal(c: &InvalidSeal) -> Result<(), String> {
    let list = recipients(&c.recipients)?;
    let mut rng = OnceRng::new(vec![0; 64]);
    let got = multi::seal(&c.plaintext.0, &list, &mut rng).map(|_| ());
    expect_error(got, &c.error)?;
    if rng.used || rng.violation {
        return Err("randomness drawn before the refusal".into());
    }
    Ok(())
}

pub(crate) fn verify_invalid_envelope(c: &InvalidEnvelope) -> Result<(), String> {
    let r = &c.recipient;
    let address = Address::new(&r.user_id, r.device_id).map_err(|e| e.to_string())?;
    let ik = IdentityKeyPair::from_seed(&r.identity_seed.0);
    let got = multi::open(&ik, &address, &c.bytes.0).map(|_| ());
    expect_error(got, &c.error)
}
