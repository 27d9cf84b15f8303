//! The demo's file section: Alice sends a file, Bob's client downloads,
//! verifies and saves it, and the relay's database shows that it held
//! only ciphertext.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use tacit_client::{Client, Event};

use crate::{contains, found, wait_for};

/// The file's size: several of the stream's 64 KiB chunks.
const FILE_LEN: usize = 1_000_000;

/// A file whose every line is the same readable sentence, so that the
/// check for plaintext in the relay's database has something to find.
fn file_bytes() -> Vec<u8> {
    let line = b"Minutes of Friday's lunch: the blue folder, the usual place, 12:30.\n";
    line.iter().copied().cycle().take(FILE_LEN).collect()
}

/// What the relay holds of attachments: (blobs, chunks, bytes of chunks).
fn stored_blobs(db: &Path) -> anyhow::Result<(i64, i64, i64, Vec<u8>)> {
    let conn =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let (blobs,): (i64,) =
        conn.query_row("SELECT COUNT(*) FROM attachments", [], |r| Ok((r.get(0)?,)))?;
    let (chunks, bytes): (i64, i64) = conn.query_row(
        "SELECT COUNT(*), COALESCE(SUM(length(data)), 0) FROM attachment_chunks",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    let mut all = Vec::new();
    let mut stmt = conn.prepare("SELECT data FROM attachment_chunks ORDER BY id, idx")?;
    let mut rows = stmt.query([])?;
    while let Some(row) = rows.next()? {
        all.extend_from_slice(&row.get::<_, Vec<u8>>(0)?);
    }
    Ok((blobs, chunks, bytes, all))
}

/// Alice sends a file to Bob; Bob's client saves it into its download
/// directory once it verifies. Returns where it was saved.
pub(crate) async fn show(
    dir: &Path,
    relay_db: &Path,
    alice: &mut Client,
    bob: &mut Client,
) -> anyhow::Result<PathBuf> {
    let plain = file_bytes();
    let source = dir.join("minutes.txt");
    std::fs::write(&source, &plain).context("writing the file to send")?;
    alice.send_file("bob", &source).await?;
    println!(
        "Alice sends minutes.txt ({} bytes): encrypted as a stream of 64 KiB chunks",
        plain.len()
    );
    println!("(XChaCha20-Poly1305, a fresh key), uploaded to the relay, and the key sent");
    println!("to Bob inside a sealed message.");
    let received = wait_for(bob, "the file's pointer", |e| match e {
        Event::FileReceived(f) => Some((f.name.clone(), f.size)),
        _ => None,
    })
    .await?;
    println!(
        "Bob's client learns of {} ({} bytes)",
        received.0, received.1
    );
    let saved = wait_for(bob, "the file saved", |e| match e {
        Event::FileSaved(s) => Some(Ok(s.path.clone())),
        Event::FileRefused { reason, .. } => Some(Err(format!("{reason:?}"))),
        _ => None,
    })
    .await?;
    let saved = match saved {
        Ok(path) => path,
        Err(reason) => bail!("Bob's client refused the file: {reason}"),
    };
    let same = std::fs::read(&saved)? == plain;
    println!(
        "and saves it, verified, as {} ({})",
        saved.display(),
        if same {
            "the same bytes"
        } else {
            "DIFFERENT bytes"
        }
    );
    if !same {
        bail!("the saved file differs from the one sent");
    }
    let (blobs, chunks, bytes, stored) = stored_blobs(relay_db)?;
    println!(
        "The relay holds {blobs} blob in {chunks} chunks, {bytes} bytes; the file's text in them: {}",
        found(contains(&stored, &plain[..40]))
    );
    Ok(saved)
}
