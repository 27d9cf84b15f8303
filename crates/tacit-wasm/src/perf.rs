//! The workloads `docs/PERFORMANCE.md` times in WebAssembly (in the
//! browser, through `perfRun`) and natively (the `wasm_baseline` bench of
//! `tacit-bench`): the same code on both, with the operating system's or
//! the Web Crypto API's randomness.
//!
//! - session setup (`tacit-v1`): X3DH as initiator, the initiator's
//!   ratchet and first 256-byte message, X3DH as responder, the
//!   responder's ratchet and its decryption of that message;
//! - chain step: one side encrypts 256 bytes, the other decrypts, on one
//!   chain;
//! - ping-pong: the sides take turns, so every decryption is a DH ratchet
//!   step.

use rand_core::OsRng;
use tacit::keys::{IdentityKeyPair, KeyPair};
use tacit::ratchet::{Ratchet, RatchetConfig};
use tacit::x3dh;
use tacit::PreKeyBundle;

/// The plaintext length of every message.
pub const PLAINTEXT_LEN: usize = 256;

/// Why a workload stopped (it never should).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PerfError(pub &'static str);

/// Two devices' keys.
#[derive(Debug)]
struct Keys {
    alice: IdentityKeyPair,
    bob: IdentityKeyPair,
    signed_prekey: KeyPair,
    one_time_prekey: KeyPair,
    bundle: PreKeyBundle,
}

/// Two devices' keys and a session between them.
#[derive(Debug)]
pub struct Workloads {
    keys: Keys,
    /// `[next sender, next receiver]` of the established session.
    sides: [Ratchet; 2],
}

impl Workloads {
    /// Fixed keys, and a session where both sides have sent and received.
    pub fn new() -> Result<Self, PerfError> {
        let alice = IdentityKeyPair::from_seed(&[0xa1; 32]);
        let bob = IdentityKeyPair::from_seed(&[0xb0; 32]);
        let signed_prekey = KeyPair::from_private_bytes([0x5b; 32]);
        let one_time_prekey = KeyPair::from_private_bytes([0x0b; 32]);
        let bundle = PreKeyBundle {
            identity_key: bob.public_key(),
            signed_prekey: signed_prekey.public_key(),
            signed_prekey_signature: bob.sign_prekey(&signed_prekey.public_key()),
            one_time_prekey: Some(one_time_prekey.public_key()),
            kem_prekey: None,
        };
        let keys = Keys {
            alice,
            bob,
            signed_prekey,
            one_time_prekey,
            bundle,
        };
        let [mut a, mut b] = keys.setup_pair()?;
        let reply = b
            .encrypt(&[1; PLAINTEXT_LEN], &mut OsRng)
            .map_err(|_| PerfError("encrypt"))?;
        a.decrypt(&reply, &mut OsRng)
            .map_err(|_| PerfError("decrypt"))?;
        Ok(Self {
            keys,
            sides: [a, b],
        })
    }

    /// One session setup.
    pub fn session_setup(&self) -> Result<(), PerfError> {
        self.keys.setup_pair().map(|_| ())
    }
}

impl Keys {
    fn setup_pair(&self) -> Result<[Ratchet; 2], PerfError> {
        let init = x3dh::initiate(&self.alice, &self.bundle, &mut OsRng)
            .map_err(|_| PerfError("x3dh initiate"))?;
        let mut alice = Ratchet::new_initiator(
            init.agreement.session_keys(),
            &self.bundle.signed_prekey,
            RatchetConfig::default(),
            &mut OsRng,
        )
        .map_err(|_| PerfError("initiator"))?;
        let first = alice
            .encrypt(&[0x55; PLAINTEXT_LEN], &mut OsRng)
            .map_err(|_| PerfError("encrypt"))?;
        let agreement = x3dh::respond(
            &self.bob,
            &self.signed_prekey,
            Some(&self.one_time_prekey),
            &self.alice.public_key(),
            &init.ephemeral_key,
        )
        .map_err(|_| PerfError("x3dh respond"))?;
        let mut bob = Ratchet::new_responder(
            agreement.session_keys(),
            self.signed_prekey.clone(),
            RatchetConfig::default(),
        );
        bob.decrypt(&first, &mut OsRng)
            .map_err(|_| PerfError("decrypt"))?;
        Ok([alice, bob])
    }
}

impl Workloads {
    /// One chain step: the next sender encrypts, the receiver decrypts.
    pub fn chain_step(&mut self) -> Result<(), PerfError> {
        let [sender, receiver] = &mut self.sides;
        let m = sender
            .encrypt(&[0x42; PLAINTEXT_LEN], &mut OsRng)
            .map_err(|_| PerfError("encrypt"))?;
        receiver
            .decrypt(&m, &mut OsRng)
            .map_err(|_| PerfError("decrypt"))?;
        Ok(())
    }

    /// One ping-pong message: a chain step, then the sides swap.
    pub fn ping_pong(&mut self) -> Result<(), PerfError> {
        self.chain_step()?;
        self.sides.swap(0, 1);
        Ok(())
    }
}

/// Runs workload `name` (`"session-setup"`, `"chain-step"`,
/// `"ping-pong"`) `iterations` times on `w`.
pub fn run(w: &mut Workloads, name: &str, iterations: u32) -> Result<(), PerfError> {
    for _ in 0..iterations {
        match name {
            "session-setup" => w.session_setup()?,
            "chain-step" => w.chain_step()?,
            "ping-pong" => w.ping_pong()?,
            _ => return Err(PerfError("unknown workload")),
        }
    }
    Ok(())
}
