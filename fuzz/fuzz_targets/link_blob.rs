//! Link codes and link blobs (`docs/PROTOCOL.md` 14.7). The first byte of
//! the input is the length of a code string, which follows it; the rest
//! is the blob bytes.
//!
//! - `LinkCode::parse` never panics, and a code it accepts prints to a
//!   string that parses back to the same code.
//! - `open_request` and `open_response` under a fixed code never panic on
//!   the bytes.
//! - To reach what lies behind the AEAD, the harness seals the bytes
//!   itself, as the payload of a request (and of an answer) under the
//!   fixed code: the key, slot ids, nonce and associated data as in
//!   `tacit::identity::link`. `open_request` then either refuses the
//!   payload as `MalformedLinkRequest` or returns a request that, sealed
//!   again with `seal_request` and opened, is the same request, and whose
//!   payload is exactly the input (the request encoding is canonical);
//!   `open_response` either returns a list whose wire form is exactly the
//!   payload or refuses it as something else than a blob that does not
//!   open.
#![no_main]

use std::sync::OnceLock;

use chacha20poly1305::aead::{AeadInPlace, KeyInit};
use chacha20poly1305::{Tag, XChaCha20Poly1305, XNonce};
use hkdf::Hkdf;
use libfuzzer_sys::fuzz_target;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use sha2::Sha256;
use tacit::error::IdentityError;
use tacit::identity::{LinkCode, LinkSecrets, LINK_CODE_LEN, LINK_SLOT_LEN};

/// The code every blob is sealed and opened under (the seeds use it too).
const CODE: &str = "FUZZ-LINK-CODE-2345";
/// The HKDF label of the link secrets (PROTOCOL.md 14.7).
const LINK_LABEL: &[u8] = b"tacit/link/v1";
const NONCE_LEN: usize = 24;

struct Fixture {
    code: LinkCode,
    secrets: LinkSecrets,
    cipher: XChaCha20Poly1305,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let code = LinkCode::parse(CODE).expect("the fixed code parses");
        let secrets = code.secrets();
        // request_slot || response_slot || K = HKDF(0^32, code, label, 96),
        // with the code's 10 bytes as the base32 string spells them.
        let okm = {
            let mut value: u128 = 0;
            for c in CODE.chars().filter(|c| *c != '-') {
                let digit = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
                    .iter()
                    .position(|a| char::from(*a) == c)
                    .expect("base32");
                value = (value << 5) | digit as u128;
            }
            let bytes = &value.to_be_bytes()[16 - LINK_CODE_LEN..];
            let mut okm = [0u8; 96];
            Hkdf::<Sha256>::new(Some(&[0u8; 32]), bytes)
                .expand(LINK_LABEL, &mut okm)
                .expect("96 bytes");
            okm
        };
        assert_eq!(
            okm[..32],
            secrets.request_slot(),
            "the harness's request slot"
        );
        assert_eq!(
            okm[32..64],
            secrets.response_slot(),
            "the harness's response slot"
        );
        let cipher = XChaCha20Poly1305::new_from_slice(&okm[64..]).expect("32-byte key");
        Fixture {
            code,
            secrets,
            cipher,
        }
    })
}

/// `nonce || XChaCha20-Poly1305(K, nonce, payload, aad = slot)`.
fn seal(
    f: &Fixture,
    slot: &[u8; LINK_SLOT_LEN],
    nonce: [u8; NONCE_LEN],
    payload: &[u8],
) -> Vec<u8> {
    let mut body = payload.to_vec();
    let tag = f
        .cipher
        .encrypt_in_place_detached(XNonce::from_slice(&nonce), slot, &mut body)
        .expect("seal");
    [&nonce[..], &body, &tag].concat()
}

/// The payload of a blob sealed under the fixed code, or `None`.
fn open(f: &Fixture, slot: &[u8; LINK_SLOT_LEN], blob: &[u8]) -> Option<Vec<u8>> {
    let (nonce, rest) = blob.split_at_checked(NONCE_LEN)?;
    let (body, tag) = rest.split_at_checked(rest.len().checked_sub(16)?)?;
    let mut body = body.to_vec();
    f.cipher
        .decrypt_in_place_detached(
            XNonce::from_slice(nonce),
            slot,
            &mut body,
            Tag::from_slice(tag),
        )
        .ok()?;
    Some(body)
}

fuzz_target!(|data: &[u8]| {
    let f = fixture();
    let Some((&code_len, rest)) = data.split_first() else {
        return;
    };
    let (code_bytes, bytes) = rest.split_at(usize::from(code_len).min(rest.len()));

    // The code as a person types it.
    let text = String::from_utf8_lossy(code_bytes);
    if let Ok(code) = LinkCode::parse(&text) {
        let printed = code.to_string();
        assert_eq!(
            LinkCode::parse(&printed).as_ref(),
            Ok(&code),
            "a code does not parse back from {printed:?}"
        );
    }

    // Blobs from the relay, under the fixed code.
    let request = f.secrets.open_request(bytes);
    let response = f.secrets.open_response(bytes);
    if let Ok(request) = &request {
        let payload = open(f, &f.secrets.request_slot(), bytes).expect("an opened request opens");
        check_request(f, request, &payload);
    }
    if let Ok(list) = &response {
        let payload = open(f, &f.secrets.response_slot(), bytes).expect("an opened answer opens");
        assert_eq!(list.to_wire(), payload, "a non-canonical list in an answer");
    }

    // The bytes as a payload, sealed under the fixed code.
    let nonce = [0x5a; NONCE_LEN];
    let blob = seal(f, &f.secrets.request_slot(), nonce, bytes);
    match f.secrets.open_request(&blob) {
        Ok(request) => check_request(f, &request, bytes),
        Err(IdentityError::MalformedLinkRequest) => {}
        Err(e) => panic!("a request sealed under the code refused with {e:?}"),
    }
    let blob = seal(f, &f.secrets.response_slot(), nonce, bytes);
    match f.secrets.open_response(&blob) {
        Ok(list) => assert_eq!(list.to_wire(), bytes, "a non-canonical list in an answer"),
        Err(IdentityError::LinkBlobDoesNotOpen) => {
            panic!("an answer sealed under the code does not open")
        }
        Err(_) => {}
    }
});

/// A request that opened: canonical, and sealing it again gives a blob that
/// opens to the same request, under the code as parsed again.
fn check_request(f: &Fixture, request: &tacit::identity::LinkRequest, payload: &[u8]) {
    let mut rng = ChaCha20Rng::seed_from_u64(payload.len() as u64);
    let again = f
        .secrets
        .seal_request(&request.address, &request.identity, &mut rng)
        .expect("an opened request seals again");
    assert_eq!(
        open(f, &f.secrets.request_slot(), &again).as_deref(),
        Some(payload),
        "a request's payload is not canonical"
    );
    let secrets = LinkCode::parse(&f.code.to_string())
        .expect("the fixed code parses")
        .secrets();
    assert_eq!(
        secrets.open_request(&again).as_ref(),
        Ok(request),
        "a request sealed again opens to another request"
    );
}
