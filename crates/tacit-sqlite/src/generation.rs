//! The store's generation: a counter raised by every commit, a digest of
//! which rows exist at which generation, and the high-water mark kept
//! beside the file (`docs/PROTOCOL.md` 11, "SQLite at rest").

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Read, Seek as _, SeekFrom, Write as _};
use std::path::{Path, PathBuf};

use subtle::ConstantTimeEq as _;
use tacit::error::StoreError;
use zeroize::Zeroizing;

use crate::hmac;

/// The length of the counter file: the generation (u64 big-endian) and its
/// MAC.
const COUNTER_LEN: usize = 8 + 32;

/// The digest element of one row: `HMAC(index_key, "row" 0x00 table 0x00
/// row_key generation_be8)`. The digest is the XOR of the elements of
/// every row present.
pub(crate) fn element(index_key: &[u8; 32], table: &str, row: &[u8], generation: u64) -> [u8; 32] {
    let mut message = Vec::with_capacity(table.len() + row.len() + 13);
    message.extend_from_slice(b"row");
    message.push(0);
    message.extend_from_slice(table.as_bytes());
    message.push(0);
    message.extend_from_slice(row);
    message.extend_from_slice(&generation.to_be_bytes());
    *hmac(index_key, &message)
}

/// XORs `element` into `digest`.
pub(crate) fn toggle(digest: &mut [u8; 32], element: &[u8; 32]) {
    for (d, e) in digest.iter_mut().zip(element) {
        *d ^= e;
    }
}

/// Whether two digests are equal, in constant time.
pub(crate) fn digests_equal(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.ct_eq(b).into()
}

/// The high-water mark in a file beside the database (`PATH-generation`),
/// MAC'd under a key derived from the application's key and synced on every
/// write.
#[derive(Debug)]
pub(crate) struct CounterFile {
    path: PathBuf,
    key: Zeroizing<[u8; 32]>,
}

fn io(context: &str) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |e| StoreError::backend(context, e)
}

impl CounterFile {
    /// The counter file of the database at `db`.
    pub(crate) fn beside(db: &Path, app_key: &[u8; 32]) -> Self {
        let mut name = db.as_os_str().to_owned();
        name.push("-generation");
        Self {
            path: PathBuf::from(name),
            key: hmac(app_key, b"tacit-sqlite/v1/counter"),
        }
    }

    fn mac(&self, generation: u64) -> Zeroizing<[u8; 32]> {
        let mut message = b"tacit-sqlite/v1/generation".to_vec();
        message.extend_from_slice(&generation.to_be_bytes());
        hmac(&self.key, &message)
    }

    /// The high-water mark, or `None` when there is no counter file. A file
    /// that does not verify is [`StoreError::Tampered`].
    pub(crate) fn load(&self) -> Result<Option<u64>, StoreError> {
        let mut file = match File::open(&self.path) {
            Ok(file) => file,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io("reading the counter file")(e)),
        };
        let mut bytes = Vec::with_capacity(COUNTER_LEN);
        Read::by_ref(&mut file)
            .take(COUNTER_LEN as u64 + 1)
            .read_to_end(&mut bytes)
            .map_err(io("reading the counter file"))?;
        let tampered = || StoreError::Tampered {
            table: "counter",
            row: self.path.display().to_string(),
        };
        if bytes.len() != COUNTER_LEN {
            return Err(tampered());
        }
        let (value, mac) = bytes.split_at(8);
        let mut be = [0u8; 8];
        be.copy_from_slice(value);
        let generation = u64::from_be_bytes(be);
        if bool::from(self.mac(generation).as_slice().ct_eq(mac)) {
            Ok(Some(generation))
        } else {
            Err(tampered())
        }
    }

    /// Writes `generation` in place and syncs it to disk.
    pub(crate) fn store(&self, generation: u64) -> Result<(), StoreError> {
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&self.path)
            .map_err(io("opening the counter file"))?;
        let mut bytes = [0u8; COUNTER_LEN];
        bytes[..8].copy_from_slice(&generation.to_be_bytes());
        bytes[8..].copy_from_slice(self.mac(generation).as_slice());
        file.seek(SeekFrom::Start(0))
            .and_then(|_| file.write_all(&bytes))
            .and_then(|()| file.set_len(COUNTER_LEN as u64))
            .and_then(|()| file.sync_all())
            .map_err(io("writing the counter file"))
    }
}
