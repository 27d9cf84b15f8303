//! Attachment decryption fed arbitrary pieces: a real blob mutated (bytes
//! XORed at an offset, cut short or extended) or raw bytes, split into
//! pieces of arbitrary sizes. No panic; never more plaintext released than
//! the pointer's size; once a piece is refused every later call is; and
//! only the real blob, whole, decrypts (to the real plaintext).
#![no_main]

use std::sync::OnceLock;

use arbitrary::Unstructured;
use libfuzzer_sys::fuzz_target;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use tacit::envelope::attachment::{encrypt_attachment, CHUNK_LEN};
use tacit::envelope::{AttachmentDecryptor, AttachmentPointer};

struct Real {
    plaintext: Vec<u8>,
    blob: Vec<u8>,
    pointer: AttachmentPointer,
}

fn reals() -> &'static [Real] {
    static REALS: OnceLock<Vec<Real>> = OnceLock::new();
    REALS.get_or_init(|| {
        let mut rng = ChaCha20Rng::seed_from_u64(5);
        [0, 100, CHUNK_LEN, CHUNK_LEN + 50]
            .into_iter()
            .map(|len| {
                let plaintext: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
                let (blob, encrypted) =
                    encrypt_attachment(&plaintext, &mut rng).expect("encrypt");
                let pointer = encrypted
                    .pointer(b"id", "application/octet-stream")
                    .expect("pointer");
                Real {
                    plaintext,
                    blob,
                    pointer,
                }
            })
            .collect()
    })
}

fn run(u: &mut Unstructured<'_>) -> arbitrary::Result<()> {
    let reals = reals();
    let real = &reals[u.choose_index(reals.len())?];
    let mut pointer = real.pointer.clone();
    let blob = if u.arbitrary::<bool>()? {
        let mut blob = real.blob.clone();
        let offset = u.int_in_range(0..=blob.len())?;
        match u.int_in_range(0..=2u8)? {
            0 => blob.truncate(offset),
            1 => {
                let n = u.int_in_range(0..=64)?;
                blob.extend_from_slice(u.bytes(n)?);
            }
            _ => {}
        }
        let n = u.int_in_range(0..=32)?;
        let xor = u.bytes(n)?;
        for (dst, src) in blob.iter_mut().skip(offset).zip(xor) {
            *dst ^= src;
        }
        blob
    } else {
        let size = u.int_in_range(0..=(2 * CHUNK_LEN as u64 + 100))?;
        pointer = AttachmentPointer::new(b"id", pointer.key().clone(), *pointer.digest(), size, "")
            .expect("pointer");
        let len = u.arbitrary_len::<u8>()?;
        u.bytes(len)?.to_vec()
    };

    let mut decryptor = AttachmentDecryptor::new(&pointer);
    let mut out = Vec::new();
    let mut rest = &blob[..];
    let mut failed = false;
    while !rest.is_empty() {
        let take = if u.is_empty() {
            rest.len()
        } else {
            usize::from(u.arbitrary::<u16>()?).min(rest.len())
        };
        let (piece, tail) = rest.split_at(take);
        rest = tail;
        let result = decryptor.update(piece, &mut out);
        assert!(
            !(failed && result.is_ok()),
            "a refused decryptor took more input"
        );
        failed |= result.is_err();
        assert!(
            out.len() as u64 <= pointer.size(),
            "released more than the pointer's size"
        );
    }
    let finished = decryptor.finish(&mut out);
    assert!(
        out.len() as u64 <= pointer.size(),
        "released more than the pointer's size"
    );
    if finished.is_ok() {
        assert!(!failed, "finished after a refused piece");
        assert_eq!(blob, real.blob, "a blob that is not the real one decrypted");
        assert_eq!(
            out, real.plaintext,
            "the real blob decrypted to something else"
        );
    }
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    let _ = run(&mut Unstructured::new(data));
});
