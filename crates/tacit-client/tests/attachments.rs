#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]
//! Attachments through a real relay: a multi-megabyte file encrypted,
//! uploaded, downloaded and saved identical; a blob tampered with or
//! truncated in the relay's database is refused with a typed error and no
//! file is written.

use tacit::error::AttachmentError;
use tacit::identity::UserKeyPair;
use tacit::{Address, IdentityKeyPair};
use tacit_client::attachment::{download, upload, AttachmentFileError};
use tacit_relay::{Config, Relay};
use tacit_relay_proto::{AllocateAttachment, Reply, Request};
use tacit_testkit::relay::{connect, Device, TcpClient};

/// Registers `alice` (device 1) with the relay `server_name` and reserves a
/// slot of `size` bytes.
async fn reserve(
    relay: std::net::SocketAddr,
    server_name: &str,
    size: u64,
) -> (TcpClient, [u8; 16], [u8; 32]) {
    let alice = Device::signed(
        Address::new("alice", 1).unwrap(),
        IdentityKeyPair::from_seed(&[1; 32]),
        &UserKeyPair::from_seed(&[2; 32]),
    );
    let mut c = connect(relay).await.named(server_name);
    let registered = c.register(&alice).await;
    assert!(
        matches!(registered, Ok(Reply::LoggedIn(_))),
        "{registered:?}"
    );
    match c
        .request(Request::AllocateAttachment(AllocateAttachment { size }))
        .await
    {
        Ok(Reply::AttachmentAllocated {
            id, upload_token, ..
        }) => (c, id, upload_token),
        other => panic!("{other:?}"),
    }
}

fn files(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir).unwrap().count()
}

#[tokio::test]
async fn a_file_round_trips_and_altered_blobs_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("relay.db");
    let mut config = Config::new(&db);
    config.listen = "127.0.0.1:0".parse().unwrap();
    let server_name = config.server_name.clone();
    let relay = Relay::bind(config).await.unwrap();
    let at = relay.local_addr().to_string();
    let plain: Vec<u8> = (0..3 * 1024 * 1024 + 333u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let blob_len = tacit::envelope::attachment::encrypted_len(plain.len() as u64).unwrap();
    let (alice, id, token) = reserve(relay.local_addr(), &server_name, blob_len).await;
    let source = dir.path().join("photo.jpg");
    std::fs::write(&source, &plain).unwrap();
    let file = tokio::fs::File::open(&source).await.unwrap();
    let done = upload(&at, &id, &token, file, plain.len() as u64)
        .await
        .unwrap();
    let pointer = done.pointer(&id, "image/jpeg").unwrap();
    let downloads = dir.path().join("downloads");
    std::fs::create_dir(&downloads).unwrap();
    let saved = download(&at, &pointer, &downloads, "photo.jpg")
        .await
        .unwrap();
    assert!(
        std::fs::read(&saved).unwrap() == plain,
        "the saved file differs"
    );
    std::fs::remove_file(saved).unwrap();

    // One bit of the second chunk flipped in the relay's database.
    let db = rusqlite::Connection::open(&db).unwrap();
    let mut chunk: Vec<u8> = db
        .query_row(
            "SELECT data FROM attachment_chunks WHERE idx = 1",
            [],
            |r| r.get(0),
        )
        .unwrap();
    chunk[100] ^= 1;
    db.execute(
        "UPDATE attachment_chunks SET data = ?1 WHERE idx = 1",
        [&chunk],
    )
    .unwrap();
    let e = download(&at, &pointer, &downloads, "photo.jpg")
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            AttachmentFileError::Refused(AttachmentError::ChunkAuthentication(1))
        ),
        "{e:?}"
    );
    assert_eq!(files(&downloads), 0);

    // The last chunk gone: the relay's answer breaks off early.
    db.execute(
        "DELETE FROM attachment_chunks WHERE idx = (SELECT MAX(idx) FROM attachment_chunks)",
        [],
    )
    .unwrap();
    let e = download(&at, &pointer, &downloads, "photo.jpg")
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            AttachmentFileError::Refused(AttachmentError::Truncated)
                | AttachmentFileError::Refused(AttachmentError::ChunkAuthentication(_))
                | AttachmentFileError::Io(_)
        ),
        "{e:?}"
    );
    assert_eq!(files(&downloads), 0);
    drop(alice);
    relay.shutdown().await.unwrap();
}
