#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]
//! Attachments over HTTP against the real relay: a multi-megabyte round
//! trip that survives a restart, the size cap and quota, tokens, unknown
//! ids, cut and overlong uploads leaving nothing, the TTL purge, chunked
//! storage, no trace of an expired one with `secure_delete`, transfers
//! longer than the upgrade deadline, stalled downloads
//! cut at theirs, one upload per slot at a time, and concurrent
//! reservations held to the quota.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use common::*;
use tacit_relay::{Config, Relay};
use tacit_relay_proto::{AllocateAttachment, ErrorCode, Reply, Request, ServerFrame};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A deterministic, incompressible-looking byte at `i`.
fn byte(seed: u64, i: u64) -> u8 {
    let x = (i ^ seed).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (x >> 56) as u8
}

fn blob(seed: u64, len: usize) -> Vec<u8> {
    (0..len as u64).map(|i| byte(seed, i)).collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Reserves a slot: `(id, token)` or the refusal.
async fn allocate(client: &mut TcpClient, size: u64) -> Result<([u8; 16], [u8; 32]), ErrorCode> {
    match client
        .request(Request::AllocateAttachment(AllocateAttachment { size }))
        .await
    {
        Ok(Reply::AttachmentAllocated {
            id, upload_token, ..
        }) => Ok((id, upload_token)),
        Ok(other) => panic!("{other:?}"),
        Err(e) => Err(e.code),
    }
}

/// Reads an HTTP/1.1 response to the end (the relay closes the
/// connection): the status and the body.
async fn read_response(mut tcp: TcpStream) -> (u16, Vec<u8>) {
    let mut all = Vec::new();
    let _ = tokio::time::timeout(WAIT, tcp.read_to_end(&mut all)).await;
    let head_end = all
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a response head");
    let head = String::from_utf8_lossy(&all[..head_end]).to_string();
    let status = head[9..12].parse().unwrap();
    (status, all[head_end + 4..].to_vec())
}

/// `PUT`s `pieces` (written one by one, `pause` apart) with `Content-Length:
/// length`, then answers the status.
async fn put(
    at: SocketAddr,
    id: &str,
    token: Option<&str>,
    length: usize,
    pieces: &[&[u8]],
    pause: Duration,
) -> u16 {
    let mut tcp = TcpStream::connect(at).await.unwrap();
    let token = token.map_or(String::new(), |t| format!("x-tacit-upload-token: {t}\r\n"));
    let head = format!(
        "PUT /v1/attachments/{id} HTTP/1.1\r\nhost: relay\r\n{token}content-length: {length}\r\n\r\n"
    );
    tcp.write_all(head.as_bytes()).await.unwrap();
    for piece in pieces {
        if tcp.write_all(piece).await.is_err() {
            break;
        }
        tokio::time::sleep(pause).await;
    }
    read_response(tcp).await.0
}

/// `PUT`s a whole body in pieces of 7000 bytes.
async fn put_all(at: SocketAddr, id: &[u8], token: &[u8], body: &[u8]) -> u16 {
    let pieces: Vec<&[u8]> = body.chunks(7000).collect();
    put(
        at,
        &hex(id),
        Some(&hex(token)),
        body.len(),
        &pieces,
        Duration::ZERO,
    )
    .await
}

async fn get(at: SocketAddr, id: &str) -> (u16, Vec<u8>) {
    let mut tcp = TcpStream::connect(at).await.unwrap();
    let head = format!("GET /v1/attachments/{id} HTTP/1.1\r\nhost: relay\r\n\r\n");
    tcp.write_all(head.as_bytes()).await.unwrap();
    read_response(tcp).await
}

/// `(attachment rows, chunk rows, largest chunk)` in the SQLite file.
fn stored(db: &Path) -> (i64, i64, i64) {
    let c = rusqlite::Connection::open(db).unwrap();
    let rows = c
        .query_row("SELECT COUNT(*) FROM attachments", [], |r| r.get(0))
        .unwrap();
    let (chunks, largest) = c
        .query_row(
            "SELECT COUNT(*), COALESCE(MAX(LENGTH(data)), 0) FROM attachment_chunks",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    (rows, chunks, largest)
}

/// What [`stored`] reads once the purge has emptied the tables, or after
/// ten seconds.
async fn purged(db: &Path) -> (i64, i64, i64) {
    let mut left = stored(db);
    for _ in 0..100 {
        if left == (0, 0, 0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        left = stored(db);
    }
    left
}

async fn relay_with(cfg: &Config) -> (Relay, TcpClient) {
    let relay = Relay::bind(cfg.clone()).await.unwrap();
    let client = registered(relay.local_addr(), &Device::new("alice", 1, 1)).await;
    (relay, client)
}

#[tokio::test]
async fn a_multi_megabyte_blob_round_trips_in_chunks_and_survives_a_restart() {
    let dir = TempDir::new("attach-round-trip");
    let cfg = config(&dir.db());
    let (relay, mut alice) = relay_with(&cfg).await;
    let at = relay.local_addr();
    let body = blob(1, 5 * 1024 * 1024 + 12_345);
    let (id, token) = allocate(&mut alice, body.len() as u64).await.unwrap();
    // Not served before it is uploaded.
    assert_eq!(get(at, &hex(&id)).await.0, 404);
    assert_eq!(put_all(at, &id, &token, &body).await, 201);
    let (status, got) = get(at, &hex(&id)).await;
    assert_eq!(status, 200);
    assert!(got == body, "the downloaded blob differs");
    // Stored in chunks of at most 64 KiB, never as one value.
    let (rows, chunks, largest) = stored(&dir.db());
    assert_eq!(rows, 1);
    assert_eq!(chunks, body.len().div_ceil(65536) as i64);
    assert_eq!(largest, 65536);
    // The slot takes one upload only.
    assert_eq!(put_all(at, &id, &token, &body).await, 409);
    drop(alice);
    relay.shutdown().await.unwrap();
    let relay = Relay::bind(cfg).await.unwrap();
    let (status, got) = get(relay.local_addr(), &hex(&id)).await;
    assert_eq!(status, 200);
    assert!(got == body, "the blob differs after a restart");
    relay.shutdown().await.unwrap();
}

#[tokio::test]
async fn the_size_cap_and_the_quota_refuse_with_nothing_stored() {
    let dir = TempDir::new("attach-quota");
    let mut cfg = config(&dir.db());
    cfg.attachment_max_len = 10_000;
    cfg.attachment_quota = 15_000;
    let (relay, mut alice) = relay_with(&cfg).await;
    assert_eq!(
        allocate(&mut alice, 10_001).await,
        Err(ErrorCode::AttachmentTooLarge)
    );
    assert_eq!(stored(&dir.db()).0, 0);
    allocate(&mut alice, 10_000).await.unwrap();
    assert_eq!(
        allocate(&mut alice, 5_001).await,
        Err(ErrorCode::AttachmentQuotaExceeded)
    );
    assert_eq!(stored(&dir.db()).0, 1);
    allocate(&mut alice, 5_000).await.unwrap();
    // Another account has a quota of its own.
    let mut other = registered(relay.local_addr(), &Device::new("bob", 1, 2)).await;
    allocate(&mut other, 10_000).await.unwrap();
    // Tiny slots count 4 KiB each: no flood of one-byte reservations.
    for _ in 0..(15_000 - 10_000) / 4096 {
        allocate(&mut other, 1).await.unwrap();
    }
    assert_eq!(
        allocate(&mut other, 1).await,
        Err(ErrorCode::AttachmentQuotaExceeded)
    );
    // Not logged in: refused.
    let mut anonymous = connect(relay.local_addr()).await;
    let refused = anonymous
        .request(Request::AllocateAttachment(AllocateAttachment { size: 10 }))
        .await;
    assert_eq!(code(refused), ErrorCode::NotAuthenticated);
    drop((alice, other, anonymous));
    relay.shutdown().await.unwrap();
}

#[tokio::test]
async fn tokens_ids_and_lengths_are_checked() {
    let dir = TempDir::new("attach-token");
    let cfg = config(&dir.db());
    let (relay, mut alice) = relay_with(&cfg).await;
    let at = relay.local_addr();
    let body = blob(2, 100_000);
    let (id, token) = allocate(&mut alice, body.len() as u64).await.unwrap();
    let pieces: Vec<&[u8]> = body.chunks(7000).collect();
    let n = body.len();
    let id_hex = hex(&id);
    let mut wrong = token;
    wrong[0] ^= 1;
    let none = Duration::ZERO;
    assert_eq!(put(at, &id_hex, None, n, &pieces, none).await, 403);
    assert_eq!(
        put(at, &id_hex, Some(&hex(&wrong)), n, &pieces, none).await,
        403
    );
    assert_eq!(put(at, &id_hex, Some("zz"), n, &pieces, none).await, 403);
    let unknown = hex(&[7u8; 16]);
    assert_eq!(
        put(at, &unknown, Some(&hex(&token)), n, &pieces, none).await,
        404
    );
    assert_eq!(get(at, &unknown).await.0, 404);
    assert_eq!(get(at, "not-an-id").await.0, 404);
    // A body longer than the reservation, declared or not.
    let longer = blob(2, n + 1);
    let long_pieces: Vec<&[u8]> = longer.chunks(7000).collect();
    let token_hex = hex(&token);
    assert_eq!(
        put(at, &id_hex, Some(&token_hex), n + 1, &long_pieces, none).await,
        413
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(stored(&dir.db()).1, 0);
    // A body shorter than the reservation.
    assert_eq!(
        put(at, &id_hex, Some(&token_hex), n - 1, &pieces[..], none).await,
        400
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(stored(&dir.db()).1, 0);
    assert_eq!(get(at, &id_hex).await.0, 404);
    // The slot is free again for a correct upload.
    assert_eq!(put_all(at, &id, &token, &body).await, 201);
    assert_eq!(get(at, &id_hex).await, (200, body));
    relay.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_cut_upload_leaves_nothing() {
    let dir = TempDir::new("attach-cut");
    let cfg = config(&dir.db());
    let (relay, mut alice) = relay_with(&cfg).await;
    let at = relay.local_addr();
    let body = blob(3, 1_000_000);
    let (id, token) = allocate(&mut alice, body.len() as u64).await.unwrap();
    // Half the body, then the connection closes.
    {
        let mut tcp = TcpStream::connect(at).await.unwrap();
        let head = format!(
            "PUT /v1/attachments/{} HTTP/1.1\r\nhost: relay\r\nx-tacit-upload-token: {}\r\ncontent-length: {}\r\n\r\n",
            hex(&id),
            hex(&token),
            body.len()
        );
        tcp.write_all(head.as_bytes()).await.unwrap();
        tcp.write_all(&body[..500_000]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let mut left = (1, 1, 1);
    for _ in 0..100 {
        left = stored(&dir.db());
        if left.1 == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(left.1, 0, "chunks of the cut upload remain");
    assert_eq!(get(at, &hex(&id)).await.0, 404);
    assert_eq!(put_all(at, &id, &token, &body).await, 201);
    relay.shutdown().await.unwrap();
}

#[tokio::test]
async fn expired_attachments_are_purged() {
    let dir = TempDir::new("attach-ttl");
    let mut cfg = config(&dir.db());
    cfg.attachment_ttl = Duration::from_millis(1500);
    cfg.purge_interval = Duration::from_millis(100);
    let (relay, mut alice) = relay_with(&cfg).await;
    let at = relay.local_addr();
    let body = blob(4, 200_000);
    let (id, token) = allocate(&mut alice, body.len() as u64).await.unwrap();
    assert_eq!(put_all(at, &id, &token, &body).await, 201);
    assert_eq!(get(at, &hex(&id)).await.0, 200);
    assert_eq!(purged(&dir.db()).await, (0, 0, 0));
    assert_eq!(get(at, &hex(&id)).await.0, 404);
    relay.shutdown().await.unwrap();
}

/// Whether any of `pieces` is in the database file or its log.
fn on_disk(db: &Path, pieces: &[&[u8]]) -> bool {
    let mut wal = db.as_os_str().to_owned();
    wal.push("-wal");
    [db.to_path_buf(), wal.into()]
        .iter()
        .filter_map(|p| std::fs::read(p).ok())
        .any(|bytes| {
            pieces
                .iter()
                .any(|piece| bytes.windows(piece.len()).any(|w| w == *piece))
        })
}

/// With `secure_delete`, an attachment's bytes are gone from the files
/// once it expired and the relay stopped (its last checkpoint); without
/// it, stretches of them are still there, in free space.
#[tokio::test]
async fn with_secure_delete_an_expired_attachment_leaves_no_trace() {
    let body = blob(9, 300_000);
    // A stretch of each chunk.
    let pieces: Vec<&[u8]> = body.chunks(64 * 1024).map(|c| &c[100..164]).collect();
    for secure_delete in [false, true] {
        let dir = TempDir::new("attach-secure-delete");
        let mut cfg = config(&dir.db());
        cfg.attachment_ttl = Duration::from_millis(1500);
        cfg.purge_interval = Duration::from_millis(100);
        cfg.secure_delete = secure_delete;
        let (relay, mut alice) = relay_with(&cfg).await;
        let at = relay.local_addr();
        let (id, token) = allocate(&mut alice, body.len() as u64).await.unwrap();
        assert_eq!(put_all(at, &id, &token, &body).await, 201);
        assert_eq!(purged(&dir.db()).await, (0, 0, 0));
        drop(alice);
        relay.shutdown().await.unwrap();
        assert_eq!(
            on_disk(&dir.db(), &pieces),
            !secure_delete,
            "secure_delete {secure_delete}"
        );
    }
}

#[tokio::test]
async fn an_upload_may_outlast_the_upgrade_deadline() {
    let dir = TempDir::new("attach-slow");
    let mut cfg = config(&dir.db());
    cfg.upgrade_timeout = Duration::from_millis(500);
    let (relay, mut alice) = relay_with(&cfg).await;
    let at = relay.local_addr();
    let body = blob(5, 200_000);
    let (id, token) = allocate(&mut alice, body.len() as u64).await.unwrap();
    // Four pieces 400 ms apart: 1.6 s, over three times the upgrade
    // deadline, well within the transfer's own.
    let pieces: Vec<&[u8]> = body.chunks(50_000).collect();
    let status = put(
        at,
        &hex(&id),
        Some(&hex(&token)),
        body.len(),
        &pieces,
        Duration::from_millis(400),
    )
    .await;
    assert_eq!(status, 201);
    assert_eq!(get(at, &hex(&id)).await, (200, body));
    relay.shutdown().await.unwrap();
}

/// Two nodes on one PostgreSQL database: an attachment uploaded through
/// one is downloaded through the other, and the
/// quota counts the account's reservations on both nodes.
#[tokio::test]
async fn nodes_sharing_postgres_serve_each_others_attachments() {
    let Some(pg) = pg::Postgres::start() else {
        return;
    };
    let mut cfg = Config::postgres(pg.url());
    let base = config(Path::new("unused"));
    cfg.listen = base.listen;
    cfg.server_name = base.server_name;
    cfg.authenticated_rate = base.authenticated_rate;
    cfg.unauthenticated_rate = base.unauthenticated_rate;
    cfg.per_ip_rate = base.per_ip_rate;
    cfg.attachment_quota = 3_000_000;
    let one = Relay::bind(cfg.clone()).await.unwrap();
    let two = Relay::bind(cfg).await.unwrap();
    let mut alice = registered(one.local_addr(), &Device::new("alice", 1, 1)).await;
    let body = blob(6, 2 * 1024 * 1024 + 7);
    let (id, token) = allocate(&mut alice, body.len() as u64).await.unwrap();
    assert_eq!(put_all(one.local_addr(), &id, &token, &body).await, 201);
    let (status, got) = get(two.local_addr(), &hex(&id)).await;
    assert_eq!(status, 200);
    assert!(got == body, "the blob differs on the other node");
    let mut alice_two = connect(two.local_addr()).await;
    alice_two.login(&Device::new("alice", 1, 1)).await.unwrap();
    assert_eq!(
        allocate(&mut alice_two, 1_000_000).await,
        Err(ErrorCode::AttachmentQuotaExceeded)
    );
    drop((alice, alice_two));
    one.shutdown().await.unwrap();
    two.shutdown().await.unwrap();
}

/// A downloader that stops reading is cut at the transfer deadline: it
/// does not hold its connection (and its network's connection slot)
/// for ever.
#[tokio::test]
async fn a_download_that_stops_reading_is_cut_at_its_deadline() {
    let dir = TempDir::new("attach-stall");
    let cfg = config(&dir.db());
    let (relay, mut alice) = relay_with(&cfg).await;
    // More than the socket buffers of both ends hold.
    let body = blob(6, 12 * 1024 * 1024);
    let (id, token) = allocate(&mut alice, body.len() as u64).await.unwrap();
    assert_eq!(put_all(relay.local_addr(), &id, &token, &body).await, 201);
    let small = blob(7, 1000);
    let (small_id, token) = allocate(&mut alice, small.len() as u64).await.unwrap();
    assert_eq!(
        put_all(relay.local_addr(), &small_id, &token, &small).await,
        201
    );
    drop(alice);
    relay.shutdown().await.unwrap();
    // One connection per network, and a transfer deadline of about 1.5 s.
    let mut cfg = cfg;
    cfg.max_connections_per_ip = 1;
    cfg.upgrade_timeout = Duration::from_millis(500);
    cfg.attachment_min_rate = u64::MAX;
    let relay = Relay::bind(cfg).await.unwrap();
    let at = relay.local_addr();
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stalled = socket.connect(at).await.unwrap();
    let head = format!(
        "GET /v1/attachments/{} HTTP/1.1\r\nhost: relay\r\n\r\n",
        hex(&id)
    );
    stalled.write_all(head.as_bytes()).await.unwrap();
    let mut first = [0u8; 12];
    stalled.read_exact(&mut first).await.unwrap();
    assert_eq!(&first, b"HTTP/1.1 200");
    // The stalled download holds the network's only slot until the relay
    // cuts it; then another download is served.
    let fetched = tokio::time::timeout(WAIT, async {
        loop {
            let (status, got) = get_if_accepted(at, &hex(&small_id)).await;
            if status == Some(200) {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the stalled download still holds its slot");
    assert_eq!(fetched, small);
    // What the stalled downloader gets when it reads on is cut short.
    let mut rest = Vec::new();
    let _ = stalled.read_to_end(&mut rest).await;
    assert!(rest.len() < body.len(), "the whole blob was sent");
    relay.shutdown().await.unwrap();
}

/// A `GET` on a connection the relay may drop on accept: the status (none
/// if dropped) and the body.
async fn get_if_accepted(at: SocketAddr, id: &str) -> (Option<u16>, Vec<u8>) {
    let Ok(mut tcp) = TcpStream::connect(at).await else {
        return (None, Vec::new());
    };
    let head = format!("GET /v1/attachments/{id} HTTP/1.1\r\nhost: relay\r\n\r\n");
    if tcp.write_all(head.as_bytes()).await.is_err() {
        return (None, Vec::new());
    }
    let mut all = Vec::new();
    let _ = tokio::time::timeout(WAIT, tcp.read_to_end(&mut all)).await;
    let Some(end) = all.windows(4).position(|w| w == b"\r\n\r\n") else {
        return (None, Vec::new());
    };
    let status = String::from_utf8_lossy(&all[9..12]).parse().ok();
    (status, all[end + 4..].to_vec())
}

/// While one upload of a slot runs, a second one (with the slot's token) is
/// refused, another account's token is refused, and the half-uploaded
/// blob is not served; a chunked body longer than the reservation (no
/// `Content-Length` to refuse early) is refused too.
#[tokio::test]
async fn a_slot_takes_one_upload_at_a_time_and_serves_nothing_half_done() {
    let dir = TempDir::new("attach-race");
    let cfg = config(&dir.db());
    let (relay, mut alice) = relay_with(&cfg).await;
    let at = relay.local_addr();
    let body = blob(8, 300_000);
    let (id, token) = allocate(&mut alice, body.len() as u64).await.unwrap();
    let mut bob = registered(at, &Device::new("bob", 1, 2)).await;
    let (_, bob_token) = allocate(&mut bob, body.len() as u64).await.unwrap();
    let mut first = TcpStream::connect(at).await.unwrap();
    let head = format!(
        "PUT /v1/attachments/{} HTTP/1.1\r\nhost: relay\r\nx-tacit-upload-token: {}\r\ncontent-length: {}\r\n\r\n",
        hex(&id),
        hex(&token),
        body.len()
    );
    first.write_all(head.as_bytes()).await.unwrap();
    first.write_all(&body[..200_000]).await.unwrap();
    // Wait until the first upload's chunks are landing: it holds the slot.
    tokio::time::timeout(WAIT, async {
        while stored(&dir.db()).1 == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap();
    assert_eq!(put_all(at, &id, &token, &body).await, 409);
    assert_eq!(put_all(at, &id, &bob_token, &body).await, 403);
    assert_eq!(get(at, &hex(&id)).await.0, 404);
    first.write_all(&body[200_000..]).await.unwrap();
    assert_eq!(read_response(first).await.0, 201);
    assert_eq!(get(at, &hex(&id)).await, (200, body.clone()));

    // A chunked body one byte over its reservation.
    let small = blob(9, 1000);
    let (id, token) = allocate(&mut alice, small.len() as u64).await.unwrap();
    let mut tcp = TcpStream::connect(at).await.unwrap();
    let head = format!(
        "PUT /v1/attachments/{} HTTP/1.1\r\nhost: relay\r\nx-tacit-upload-token: {}\r\ntransfer-encoding: chunked\r\n\r\n",
        hex(&id),
        hex(&token),
    );
    tcp.write_all(head.as_bytes()).await.unwrap();
    for piece in [&small[..600], &small[600..], &[0u8][..]] {
        let frame = format!("{:x}\r\n", piece.len());
        tcp.write_all(frame.as_bytes()).await.unwrap();
        tcp.write_all(piece).await.unwrap();
        tcp.write_all(b"\r\n").await.unwrap();
    }
    tcp.write_all(b"0\r\n\r\n").await.unwrap();
    assert_eq!(read_response(tcp).await.0, 413);
    assert_eq!(get(at, &hex(&id)).await.0, 404);
    assert_eq!(put_all(at, &id, &token, &small).await, 201);
    drop((alice, bob));
    relay.shutdown().await.unwrap();
}

/// Reservations sent all at once, from two devices of one account, pass
/// its quota no more than reservations sent one by one.
#[tokio::test]
async fn concurrent_reservations_do_not_pass_the_quota() {
    let dir = TempDir::new("attach-concurrent");
    let mut cfg = config(&dir.db());
    cfg.attachment_quota = 5 * 10_000;
    let relay = Relay::bind(cfg).await.unwrap();
    let (_, devices) = same_user(
        1,
        vec![Device::new("mallory", 1, 3), Device::new("mallory", 2, 4)],
    );
    let mut m1 = registered(relay.local_addr(), &devices[0]).await;
    let mut m2 = registered(relay.local_addr(), &devices[1]).await;
    let reserve = || Request::AllocateAttachment(AllocateAttachment { size: 10_000 });
    for _ in 0..10 {
        m1.send(reserve()).await;
        m2.send(reserve()).await;
    }
    let (mut allocated, mut refused) = (0, 0);
    for client in [&mut m1, &mut m2] {
        let mut answers = 0;
        while answers < 10 {
            match client.read().await {
                Some(ServerFrame::Response(r)) => {
                    answers += 1;
                    match r.result {
                        Ok(Reply::AttachmentAllocated { .. }) => allocated += 1,
                        Err(e) if e.code == ErrorCode::AttachmentQuotaExceeded => refused += 1,
                        other => panic!("{other:?}"),
                    }
                }
                Some(_) => {} // not an answer (a prekey notice)
                None => panic!("the connection closed"),
            }
        }
    }
    assert_eq!((allocated, refused), (5, 15));
    assert_eq!(stored(&dir.db()).0, 5);
    drop((m1, m2));
    relay.shutdown().await.unwrap();
}
