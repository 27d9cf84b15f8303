#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]
//! Files through the client's engine and a real relay: `send_file`
//! uploads and sends the pointer, the receiver's client downloads,
//! verifies and saves the file in the background; a blob tampered with in
//! the relay's database and a pointer over the configured maximum are
//! refused with typed errors and no file; over `wss://` the blob goes over
//! `https` with the same TLS settings.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use tacit::error::AttachmentError;
use tacit_client::{register, Client, ClientConfig, Event, FileRefusal, IncomingFile, SavedFile};
use tacit_relay::{Relay, TlsFiles};

/// `len` bytes that differ from chunk to chunk.
fn contents(len: usize) -> Vec<u8> {
    (0..len as u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect()
}

/// Every entry of `dir`, hidden ones included.
fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

async fn file_received(client: &mut Client) -> IncomingFile {
    wait_for(client, |e| match e {
        Event::FileReceived(f) => Some(f.clone()),
        _ => None,
    })
    .await
    .0
}

/// Waits for the outcome of a download: the saved file or the refusal.
async fn file_outcome(client: &mut Client) -> Result<SavedFile, FileRefusal> {
    wait_for(client, |e| match e {
        Event::FileSaved(saved) => Some(Ok(saved.clone())),
        Event::FileRefused { reason, .. } => Some(Err(reason.clone())),
        _ => None,
    })
    .await
    .0
}

/// Alice and Bob registered on a relay at `db`; Bob saves files into the
/// returned directory.
async fn pair(dir: &TempDir, relay: &Relay) -> (ClientConfig, ClientConfig, PathBuf) {
    let at = relay.local_addr();
    let alice = registered(dir, "alice", at).await;
    let mut bob = registered(dir, "bob", at).await;
    let downloads = dir.path("downloads");
    std::fs::create_dir(&downloads).unwrap();
    bob.download_dir = Some(downloads.clone());
    (alice, bob, downloads)
}

#[tokio::test]
async fn a_multi_megabyte_file_round_trips_through_the_relay() {
    let dir = TempDir::new("file-round-trip");
    let relay = start_relay(&dir.path("relay.db")).await;
    let (alice, bob, downloads) = pair(&dir, &relay).await;
    let mut alice = Client::start(alice).await.unwrap();
    let mut bob = Client::start(bob).await.unwrap();
    drained(&mut bob).await;

    let plain = contents(5 * 1024 * 1024 + 777);
    let source = dir.path("holiday photo.jpg");
    std::fs::write(&source, &plain).unwrap();
    let sent = alice.send_file("bob", &source).await.unwrap();
    assert_eq!(sent.stored_for, vec![addr("bob", 1)]);
    alice.send_text("bob", "sent you a photo").await.unwrap();

    let file = file_received(&mut bob).await;
    assert_eq!(file.sender, addr("alice", 1));
    assert_eq!(file.message_id, sent.message_id);
    assert_eq!(file.name, "holiday photo.jpg");
    assert_eq!(file.size, plain.len() as u64);
    assert!(file.downloading);
    // The text after the file is delivered whatever the download does.
    assert_eq!(next_text(&mut bob).await, "sent you a photo");
    let saved = file_outcome(&mut bob).await.unwrap();
    assert_eq!(saved.sender, addr("alice", 1));
    assert_eq!(saved.message_id, sent.message_id);
    assert_eq!(saved.path, downloads.join("holiday photo.jpg"));
    assert!(
        std::fs::read(&saved.path).unwrap() == plain,
        "the saved file differs"
    );
    assert_eq!(entries(&downloads), ["holiday photo.jpg"]);

    // Alice gets a delivery receipt for the file.
    let (ids, _) = wait_for(&mut alice, |e| match e {
        Event::Receipt {
            from, message_ids, ..
        } if *from == addr("bob", 1) && message_ids.contains(&sent.message_id) => {
            Some(message_ids.clone())
        }
        _ => None,
    })
    .await;
    assert!(ids.contains(&sent.message_id));

    // The same file again is saved beside the first, never over it.
    alice.send_file("bob", &source).await.unwrap();
    file_received(&mut bob).await;
    let again = file_outcome(&mut bob).await.unwrap();
    assert_eq!(again.path, downloads.join("holiday photo (1).jpg"));
    assert!(std::fs::read(&again.path).unwrap() == plain);
    alice.shutdown().await;
    bob.shutdown().await;
    relay.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_blob_tampered_with_at_the_relay_is_refused_and_no_file_is_written() {
    let dir = TempDir::new("file-tampered");
    let db = dir.path("relay.db");
    let relay = start_relay(&db).await;
    let (alice, bob, downloads) = pair(&dir, &relay).await;
    let alice = Client::start(alice).await.unwrap();
    let plain = contents(3 * 65536 + 5);
    let source = dir.path("report.pdf");
    std::fs::write(&source, &plain).unwrap();
    // Bob is offline: the file waits for him.
    alice.send_file("bob", &source).await.unwrap();
    alice.send_text("bob", "after the file").await.unwrap();

    // One bit of the second chunk flipped in the relay's database.
    let conn = rusqlite::Connection::open(&db).unwrap();
    let mut chunk: Vec<u8> = conn
        .query_row(
            "SELECT data FROM attachment_chunks WHERE idx = 1",
            [],
            |r| r.get(0),
        )
        .unwrap();
    chunk[100] ^= 1;
    conn.execute(
        "UPDATE attachment_chunks SET data = ?1 WHERE idx = 1",
        [&chunk],
    )
    .unwrap();

    let mut bob = Client::start(bob).await.unwrap();
    let file = file_received(&mut bob).await;
    assert_eq!(file.name, "report.pdf");
    assert!(file.downloading);
    assert_eq!(next_text(&mut bob).await, "after the file");
    let refused = file_outcome(&mut bob).await.unwrap_err();
    assert_eq!(
        refused,
        FileRefusal::Refused(AttachmentError::ChunkAuthentication(1))
    );
    // No file, not even a partial one.
    assert!(entries(&downloads).is_empty(), "{:?}", entries(&downloads));
    alice.shutdown().await;
    bob.shutdown().await;
    relay.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_pointer_over_the_maximum_is_not_downloaded() {
    let dir = TempDir::new("file-too-large");
    let relay = start_relay(&dir.path("relay.db")).await;
    let (alice, mut bob, downloads) = pair(&dir, &relay).await;
    bob.max_attachment_len = 1000;
    let alice = Client::start(alice).await.unwrap();
    let mut bob = Client::start(bob).await.unwrap();
    drained(&mut bob).await;
    let source = dir.path("big.bin");
    std::fs::write(&source, contents(1001)).unwrap();
    alice.send_file("bob", &source).await.unwrap();
    let file = file_received(&mut bob).await;
    assert!(!file.downloading);
    assert_eq!(
        file_outcome(&mut bob).await.unwrap_err(),
        FileRefusal::TooLarge {
            size: 1001,
            max: 1000
        }
    );
    assert!(entries(&downloads).is_empty());
    // The application may still fetch it on purpose.
    let fetched = dir.path("fetched");
    std::fs::create_dir(&fetched).unwrap();
    let path = bob.download_file(&file, &fetched).await.unwrap();
    assert_eq!(std::fs::read(path).unwrap(), contents(1001));
    alice.shutdown().await;
    bob.shutdown().await;
    relay.shutdown().await.unwrap();
}

#[tokio::test]
async fn without_a_download_directory_the_file_is_only_reported() {
    let dir = TempDir::new("file-no-dir");
    let relay = start_relay(&dir.path("relay.db")).await;
    let (alice, mut bob, _) = pair(&dir, &relay).await;
    bob.download_dir = None;
    let alice = Client::start(alice).await.unwrap();
    let mut bob = Client::start(bob).await.unwrap();
    drained(&mut bob).await;
    let source = dir.path("notes.txt");
    std::fs::write(&source, b"plain notes").unwrap();
    alice.send_file("bob", &source).await.unwrap();
    alice.send_text("bob", "next").await.unwrap();
    let (file, seen) = wait_for(&mut bob, |e| match e {
        Event::FileReceived(f) => Some(f.clone()),
        _ => None,
    })
    .await;
    assert!(!file.downloading);
    assert_eq!(file.size, 11);
    // Nothing else about the file follows: the next event is the text.
    let (text, between) = wait_for(&mut bob, |e| match e {
        Event::Message(m) => Some(m.text.clone()),
        _ => None,
    })
    .await;
    assert_eq!(text, "next");
    assert!(
        !between
            .iter()
            .chain(&seen)
            .any(|e| matches!(e, Event::FileSaved(_) | Event::FileRefused { .. })),
        "{between:?}"
    );
    alice.shutdown().await;
    bob.shutdown().await;
    relay.shutdown().await.unwrap();
}

#[tokio::test]
async fn sending_a_missing_file_fails_before_anything_is_reserved() {
    let dir = TempDir::new("file-missing");
    let relay = start_relay(&dir.path("relay.db")).await;
    let (alice, _, _) = pair(&dir, &relay).await;
    let alice = Client::start(alice).await.unwrap();
    let e = alice
        .send_file("bob", dir.path("no such file"))
        .await
        .unwrap_err();
    assert!(
        matches!(e, tacit_client::ClientError::Attachment(_)),
        "{e:?}"
    );
    let e = alice.send_file("bob", dir.path("")).await.unwrap_err();
    assert!(matches!(e, tacit_client::ClientError::Invalid(_)), "{e:?}");
    let reserved: u32 = rusqlite::Connection::open(dir.path("relay.db"))
        .unwrap()
        .query_row("SELECT count(*) FROM attachments", [], |r| r.get(0))
        .unwrap();
    assert_eq!(reserved, 0);
    alice.shutdown().await;
    relay.shutdown().await.unwrap();
}

#[tokio::test]
async fn over_wss_the_blob_goes_over_https() {
    let dir = TempDir::new("file-tls");
    let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into()]).unwrap();
    let cert_path = dir.path("relay-cert.pem");
    let key_path = dir.path("relay-key.pem");
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.key_pair.serialize_pem()).unwrap();
    let mut config = relay_config(&dir.path("relay.db"), "127.0.0.1:0".parse().unwrap());
    config.tls = Some(TlsFiles {
        cert: cert_path.clone(),
        key: key_path,
    });
    let relay = Relay::bind(config).await.unwrap();
    let tls = |name: &str| {
        let mut config = client_config(&dir, name, relay.local_addr());
        config.relay_url = format!("wss://{}/v1", relay.local_addr());
        config.ca_file = Some(cert_path.clone());
        config
    };
    let alice = tls("alice");
    let mut bob = tls("bob");
    let downloads = dir.path("downloads");
    std::fs::create_dir(&downloads).unwrap();
    bob.download_dir = Some(downloads.clone());
    register(&alice, addr("alice", 1)).await.unwrap();
    register(&bob, addr("bob", 1)).await.unwrap();
    let alice = Client::start(alice).await.unwrap();
    let mut bob = Client::start(bob).await.unwrap();
    drained(&mut bob).await;
    let plain = contents(2 * 65536 + 3);
    let source = dir.path("over-tls.bin");
    std::fs::write(&source, &plain).unwrap();
    alice.send_file("bob", &source).await.unwrap();
    file_received(&mut bob).await;
    let saved = file_outcome(&mut bob).await.unwrap();
    assert!(std::fs::read(&saved.path).unwrap() == plain);
    alice.shutdown().await;
    bob.shutdown().await;
    relay.shutdown().await.unwrap();
}
