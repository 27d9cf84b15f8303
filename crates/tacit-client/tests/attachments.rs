#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]
//! Attachments through a real relay: a multi-megabyte file encrypted,
//! uploaded, downloaded and saved identical; a blob tampered with or
//! truncated in the relay's database is refused with a typed error and no
//! file is written.

use futures_util::{SinkExt, StreamExt};
use tacit::error::AttachmentError;
use tacit::identity::{DeviceList, UserKeyPair};
use tacit::{Address, IdentityKeyPair};
use tacit_client::attachment::{download, upload, AttachmentFileError};
use tacit_relay::{Config, Relay};
use tacit_relay_proto::{
    AllocateAttachment, ClientFrame, Register, Reply, Request, Response, ServerFrame,
};
use tokio_tungstenite::tungstenite::Message;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn ask(ws: &mut Ws, request_id: u64, request: Request) -> Reply {
    let frame = ClientFrame {
        request_id,
        request,
    };
    ws.send(Message::binary(frame.encode())).await.unwrap();
    loop {
        let message = ws.next().await.unwrap().unwrap();
        if let Message::Binary(b) = message {
            if let ServerFrame::Response(Response { result, .. }) = ServerFrame::decode(&b).unwrap()
            {
                return result.unwrap();
            }
        }
    }
}

/// Registers `alice` (device 1) and reserves a slot of `size` bytes.
async fn reserve(relay: std::net::SocketAddr, size: u64) -> (Ws, [u8; 16], [u8; 32]) {
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{relay}/v1"))
        .await
        .unwrap();
    let identity = IdentityKeyPair::from_seed(&[1; 32]);
    let list = DeviceList::sign(
        &UserKeyPair::from_seed(&[2; 32]),
        "alice",
        1,
        &[(1, identity.public_key(), 0)],
    )
    .unwrap();
    let Reply::Challenge(challenge) = ask(&mut ws, 1, Request::GetChallenge).await else {
        panic!("no challenge");
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let register = Register::sign(
        &identity,
        &challenge.server_name,
        &challenge.challenge,
        now,
        Address::new("alice", 1).unwrap(),
        &list,
    );
    assert!(matches!(
        ask(&mut ws, 2, Request::Register(register)).await,
        Reply::LoggedIn(_)
    ));
    match ask(
        &mut ws,
        3,
        Request::AllocateAttachment(AllocateAttachment { size }),
    )
    .await
    {
        Reply::AttachmentAllocated {
            id, upload_token, ..
        } => (ws, id, upload_token),
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
    let relay = Relay::bind(config).await.unwrap();
    let at = relay.local_addr().to_string();
    let plain: Vec<u8> = (0..3 * 1024 * 1024 + 333u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let blob_len = tacit::envelope::attachment::encrypted_len(plain.len() as u64).unwrap();
    let (alice, id, token) = reserve(relay.local_addr(), blob_len).await;
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
