//! Profile `tacit-v2` (PQXDH, `docs/PROTOCOL.md` section 15) in the
//! comparison: the ML-KEM-1024 primitives at the sizes PQXDH uses them,
//! PQXDH on its own, and session setup by halves.
//!
//! The primitives are measured on `libcrux-ml-kem` directly, the crate
//! Tacit wraps, so the floor does not include the wrapper's copies.

use std::hint::black_box;

use libcrux_ml_kem::mlkem1024;
use rand_core::{CryptoRngCore, OsRng};
use tacit::kem::{KemCiphertext, KEM_CIPHERTEXT_LEN, KEM_ENCODED_PUBLIC_KEY_LEN};
use tacit::keys::PublicKey;
use tacit::pqxdh;
use tacit::ratchet::{EncryptedMessage, Ratchet};
use tacit::x3dh::Agreement;
use vodozemac::olm::{Account, PreKeyMessage, Session};

use super::{row, simple, timed, Fixture, Olm, Primitives, Row, PLAINTEXT_LEN};

// Row names: primitives.
pub(crate) const KEM_KEYGEN: &str = "ML-KEM-1024 key generation (from seed)";
pub(crate) const KEM_ENCAPS: &str = "ML-KEM-1024 encapsulation";
pub(crate) const KEM_DECAPS: &str = "ML-KEM-1024 decapsulation";
pub(crate) const VERIFY_KEM: &str = "Ed25519 strict verify 1569 B";
pub(crate) const HKDF_PQ: &str = "HKDF to 32 B (3329 B IKM)";

// Row names: Tacit and vodozemac.
pub(crate) const T_PQ_INIT: &str = "tacit PQXDH initiator, with OPK";
pub(crate) const T_PQ_RESP: &str = "tacit PQXDH responder, with OPK";
pub(crate) const T_SETUP_I: &str = "tacit session setup, initiator half";
pub(crate) const T_SETUP_R: &str = "tacit session setup, responder half";
pub(crate) const T2_SETUP: &str = "tacit-v2 session setup";
pub(crate) const T2_SETUP_I: &str = "tacit-v2 session setup, initiator half";
pub(crate) const T2_SETUP_R: &str = "tacit-v2 session setup, responder half";
pub(crate) const V_SETUP_I: &str = "vodozemac session setup, initiator half";
pub(crate) const V_SETUP_R: &str = "vodozemac session setup, responder half";

/// PQXDH's key material with a one-time prekey: `0xFF^32`, four DH
/// outputs, the KEM secret, `EncodeKEM(PQPK_B)` and the ciphertext.
const PQXDH_IKM_LEN: usize = 32 + 4 * 32 + 32 + KEM_ENCODED_PUBLIC_KEY_LEN + KEM_CIPHERTEXT_LEN;

/// What Alice sends in a `tacit-v2` first message, besides her identity.
pub(crate) struct FirstV2 {
    ephemeral: PublicKey,
    kem_ciphertext: KemCiphertext,
    message: EncryptedMessage,
}

impl Fixture {
    /// The initiator's half of a `tacit-v2` session setup: PQXDH on the
    /// bundle and Alice's first message.
    pub(crate) fn initiator_half_v2(&self, rng: &mut impl CryptoRngCore) -> (Ratchet, FirstV2) {
        let init = pqxdh::initiate(&self.alice, &self.pq_bundle, rng).unwrap();
        let (alice, message) = self.first_message(init.agreement.session_keys(), rng);
        let first = FirstV2 {
            ephemeral: init.ephemeral_key,
            kem_ciphertext: init.kem_ciphertext,
            message,
        };
        (alice, first)
    }

    fn respond_v2(&self, ephemeral: &PublicKey, kem_ciphertext: &KemCiphertext) -> Agreement {
        pqxdh::respond(
            &self.bob,
            &self.signed_prekey,
            Some(&self.one_time_prekey),
            &self.kem_prekey,
            &self.alice.public_key(),
            ephemeral,
            kem_ciphertext,
        )
        .unwrap()
    }

    /// The responder's half: PQXDH as the responder and Bob's decryption
    /// of the first message.
    pub(crate) fn responder_half_v2(
        &self,
        first: &FirstV2,
        rng: &mut impl CryptoRngCore,
    ) -> Ratchet {
        let agreement = self.respond_v2(&first.ephemeral, &first.kem_ciphertext);
        self.first_decryption(agreement.session_keys(), &first.message, rng)
    }

    /// Both halves of a `tacit-v2` session setup.
    pub(crate) fn setup_v2(&self, rng: &mut impl CryptoRngCore) -> (Ratchet, Ratchet) {
        let (alice, first) = self.initiator_half_v2(rng);
        let bob = self.responder_half_v2(&first, rng);
        (alice, bob)
    }
}

impl Olm {
    /// Alice's outbound session and her first (pre-key) message.
    pub(crate) fn initiator_half(&self) -> (Session, PreKeyMessage) {
        let mut alice = self
            .alice
            .create_outbound_session(
                super::olm_config(),
                self.bob_identity,
                self.bob_one_time_key,
            )
            .unwrap();
        let vodozemac::olm::OlmMessage::PreKey(first) =
            alice.encrypt([0x55; PLAINTEXT_LEN]).unwrap()
        else {
            panic!("a new session sends a pre-key message");
        };
        (alice, first)
    }

    /// Bob's inbound session from the first message (which it decrypts);
    /// consumes the one-time key of `bob`.
    pub(crate) fn responder_half(&self, bob: &mut Account, first: &PreKeyMessage) -> Session {
        let created = bob
            .create_inbound_session(super::olm_config(), self.alice.curve25519_key(), first)
            .unwrap();
        black_box(created.plaintext);
        created.session
    }
}

/// The KEM inputs of the primitive rows.
pub(crate) struct KemPrimitives {
    seed: [u8; 64],
    public: mlkem1024::MlKem1024PublicKey,
    private: mlkem1024::MlKem1024PrivateKey,
    ciphertext: mlkem1024::MlKem1024Ciphertext,
    encoded_kem_prekey: Vec<u8>,
    ikm: Vec<u8>,
}

impl KemPrimitives {
    pub(crate) fn new(f: &Fixture) -> Self {
        let seed = [0x4b; 64];
        let (private, public) = mlkem1024::generate_key_pair(seed).into_parts();
        let (ciphertext, _) = mlkem1024::encapsulate(&public, [7; 32]);
        Self {
            seed,
            public,
            private,
            ciphertext,
            encoded_kem_prekey: f
                .pq_bundle
                .kem_prekey
                .as_ref()
                .expect("the tacit-v2 bundle offers a KEM prekey")
                .key
                .to_encoded(),
            ikm: vec![0x5a; PQXDH_IKM_LEN],
        }
    }
}

pub(crate) fn primitive_rows<'a>(p: &'a Primitives, k: &'a KemPrimitives) -> Vec<Row<'a>> {
    let bundle = &p.fixture.pq_bundle;
    let kem_prekey_signature = bundle
        .kem_prekey
        .as_ref()
        .expect("the tacit-v2 bundle offers a KEM prekey")
        .signature;
    let mut m = [0u8; 32];
    vec![
        simple(KEM_KEYGEN, move || {
            mlkem1024::generate_key_pair(black_box(k.seed))
        }),
        simple(KEM_ENCAPS, move || {
            m[0] = m[0].wrapping_add(1);
            mlkem1024::encapsulate(&k.public, m)
        }),
        simple(KEM_DECAPS, move || {
            mlkem1024::decapsulate(&k.private, black_box(&k.ciphertext))
        }),
        simple(VERIFY_KEM, move || {
            bundle
                .identity_key
                .verify(&k.encoded_kem_prekey, &kem_prekey_signature)
                .unwrap()
        }),
        simple(HKDF_PQ, move || p.hkdf::<32>(&k.ikm, pqxdh::PQXDH_INFO)),
    ]
}

pub(crate) fn tacit_rows(f: &Fixture) -> Vec<Row<'_>> {
    let (_, ephemeral, first) = f.initiator_half(&mut OsRng);
    let (_, first_v2) = f.initiator_half_v2(&mut OsRng);
    let init_v2 = pqxdh::initiate(&f.alice, &f.pq_bundle, &mut OsRng).unwrap();
    vec![
        simple(T_PQ_INIT, || {
            pqxdh::initiate(&f.alice, &f.pq_bundle, &mut OsRng).unwrap()
        }),
        simple(T_PQ_RESP, move || {
            f.respond_v2(
                black_box(&init_v2.ephemeral_key),
                black_box(&init_v2.kem_ciphertext),
            )
        }),
        simple(T_SETUP_I, || f.initiator_half(&mut OsRng)),
        simple(T_SETUP_R, move || {
            f.responder_half(black_box(&ephemeral), &first, &mut OsRng)
        }),
        simple(T2_SETUP, || f.setup_v2(&mut OsRng)),
        simple(T2_SETUP_I, || f.initiator_half_v2(&mut OsRng)),
        simple(T2_SETUP_R, move || {
            f.responder_half_v2(black_box(&first_v2), &mut OsRng)
        }),
    ]
}

pub(crate) fn olm_rows(o: &Olm) -> Vec<Row<'_>> {
    let (_, first) = o.initiator_half();
    vec![
        simple(V_SETUP_I, || o.initiator_half()),
        row(V_SETUP_R, move |n| {
            let mut bobs: Vec<Account> = (0..n).map(|_| o.bob()).collect();
            timed(n, |i| o.responder_half(&mut bobs[i as usize], &first))
        }),
    ]
}
