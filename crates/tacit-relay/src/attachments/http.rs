//! The HTTP side of attachments: `PUT` and `GET`
//! `/v1/attachments/{id}` (`docs/relay.md`, "Attachments").
//!
//! A transfer moves its connection's upgrade deadline to one of its own:
//! the upgrade timeout plus the time the blob takes at
//! [`Config::attachment_min_rate`](crate::Config::attachment_min_rate).
//! It bounds the socket's reads and writes alike, so a peer that stops
//! reading a download is cut at it too.
//! Every answer carries `Connection: close`, so a connection freed of the
//! upgrade deadline never idles as a kept-alive HTTP connection.

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Path, State};
use axum::http::header::{CONNECTION, CONTENT_LENGTH, CONTENT_TYPE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use tacit_relay_proto::{
    ErrorCode, ATTACHMENT_ID_LEN, ATTACHMENT_TOKEN_HEADER, ATTACHMENT_TOKEN_LEN,
};
use tokio::time::Instant;

use super::{Blobs, Id, TransferError, CHUNK_LEN};
use crate::listener::Upgraded;
use crate::{now_ms, Peer, Shared};

/// How long a transfer of `size` bytes may take.
pub(crate) fn transfer_time(shared: &Shared, size: u64) -> Duration {
    let rate = shared.config.attachment_min_rate.max(1);
    shared.config.upgrade_timeout + Duration::from_secs(size / rate + 1)
}

fn answer(status: StatusCode) -> Response {
    let mut response = status.into_response();
    response
        .headers_mut()
        .insert(CONNECTION, HeaderValue::from_static("close"));
    response
}

fn status_of(error: &TransferError) -> StatusCode {
    match error {
        TransferError::NotFound => StatusCode::NOT_FOUND,
        TransferError::BadToken => StatusCode::FORBIDDEN,
        TransferError::Busy => StatusCode::CONFLICT,
        TransferError::TooLong => StatusCode::PAYLOAD_TOO_LARGE,
        TransferError::Incomplete => StatusCode::BAD_REQUEST,
        TransferError::Storage(reply) if reply.code == ErrorCode::StorageFull => {
            StatusCode::INSUFFICIENT_STORAGE
        }
        TransferError::Storage(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// Reads `N` bytes of lowercase or uppercase hex.
fn hex_array<const N: usize>(text: &str) -> Option<[u8; N]> {
    let bytes = text.as_bytes();
    if bytes.len() != 2 * N {
        return None;
    }
    let mut out = [0u8; N];
    for (i, pair) in bytes.chunks_exact(2).enumerate() {
        let s = std::str::from_utf8(pair).ok()?;
        out[i] = u8::from_str_radix(s, 16).ok()?;
    }
    Some(out)
}

/// Deletes an upload's chunks unless it committed, even when the request
/// is dropped mid-transfer (the peer went away).
struct Unfinished {
    blobs: Blobs,
    id: Id,
    done: bool,
}

impl Drop for Unfinished {
    fn drop(&mut self) {
        if !self.done {
            let (blobs, id) = (self.blobs.clone(), self.id);
            tokio::spawn(async move {
                if let Err(e) = blobs.abort(id).await {
                    tracing::warn!(error = %e.message, "an unfinished upload was not cleaned");
                }
            });
        }
    }
}

/// `PUT /v1/attachments/{id}`: the blob, with its upload token.
pub(crate) async fn upload(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(Peer(_, upgraded)): ConnectInfo<Peer>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    match put(&shared, &upgraded, &id, &headers, body).await {
        Ok(()) => answer(StatusCode::CREATED),
        Err(error) => {
            tracing::debug!(?error, "attachment upload refused");
            answer(status_of(&error))
        }
    }
}

async fn put(
    shared: &Shared,
    upgraded: &Upgraded,
    id: &str,
    headers: &HeaderMap,
    body: Body,
) -> Result<(), TransferError> {
    let id = hex_array::<ATTACHMENT_ID_LEN>(id).ok_or(TransferError::NotFound)?;
    let token = headers
        .get(ATTACHMENT_TOKEN_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(hex_array::<ATTACHMENT_TOKEN_LEN>)
        .ok_or(TransferError::BadToken)?;
    let blobs = &shared.blobs;
    let now = now_ms();
    // A declared length over the reserved size is refused before any of
    // the body is read.
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let lease_of = |size| {
        let within = transfer_time(shared, size);
        now.saturating_add(u64::try_from(within.as_millis()).unwrap_or(u64::MAX))
    };
    let size = blobs.begin(id, token, now, lease_of).await?;
    let mut guard = Unfinished {
        blobs: blobs.clone(),
        id,
        done: false,
    };
    let received = receive(shared, upgraded, id, size, declared, body).await;
    if received.is_err() {
        // The slot is freed before the refusal is answered, so that a
        // retry finds it free (the guard covers a request dropped here).
        if let Err(e) = blobs.abort(id).await {
            tracing::warn!(error = %e.message, "an unfinished upload was not cleaned");
        }
    }
    guard.done = true;
    received
}

/// The body of an upload that holds the lease of slot `id` (`size`
/// bytes), streamed in and committed.
async fn receive(
    shared: &Shared,
    upgraded: &Upgraded,
    id: Id,
    size: u64,
    declared: Option<u64>,
    body: Body,
) -> Result<(), TransferError> {
    let blobs = &shared.blobs;
    if declared.is_some_and(|len| len > size) {
        return Err(TransferError::TooLong);
    }
    let deadline = Instant::now() + transfer_time(shared, size);
    upgraded.retime(deadline);
    let streamed = tokio::time::timeout_at(deadline, stream_in(blobs, id, size, body)).await;
    match streamed {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(e),
        Err(_) => return Err(TransferError::Incomplete),
    }
    // The body is in: the commit and the answer get an upgrade timeout
    // of their own.
    upgraded.retime(Instant::now() + shared.config.upgrade_timeout);
    if !blobs.commit(id).await? {
        return Err(TransferError::Busy);
    }
    Ok(())
}

/// Copies the body into chunks of `id`, refusing more or fewer than
/// `size` bytes; holds at most one chunk and one body frame.
async fn stream_in(blobs: &Blobs, id: Id, size: u64, body: Body) -> Result<(), TransferError> {
    let mut stream = body.into_data_stream();
    let mut buffer: Vec<u8> = Vec::with_capacity(CHUNK_LEN);
    let mut received: u64 = 0;
    let mut idx: u32 = 0;
    while let Some(frame) = stream.next().await {
        let frame = frame.map_err(|_| TransferError::Incomplete)?;
        received = received.saturating_add(frame.len() as u64);
        if received > size {
            return Err(TransferError::TooLong);
        }
        let mut rest: &[u8] = &frame;
        while !rest.is_empty() {
            let take = rest.len().min(CHUNK_LEN - buffer.len());
            buffer.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
            if buffer.len() == CHUNK_LEN {
                let full = std::mem::replace(&mut buffer, Vec::with_capacity(CHUNK_LEN));
                blobs.put_chunk(id, idx, full).await?;
                idx = idx.checked_add(1).ok_or(TransferError::TooLong)?;
            }
        }
    }
    if received != size {
        return Err(TransferError::Incomplete);
    }
    if !buffer.is_empty() {
        blobs.put_chunk(id, idx, buffer).await?;
    }
    Ok(())
}

/// `GET /v1/attachments/{id}`: the stored blob, streamed chunk by chunk.
pub(crate) async fn download(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(Peer(_, upgraded)): ConnectInfo<Peer>,
    Path(id): Path<String>,
) -> Response {
    let Some(id) = hex_array::<ATTACHMENT_ID_LEN>(&id) else {
        return answer(StatusCode::NOT_FOUND);
    };
    let size = match shared.blobs.stored_size(id, now_ms()).await {
        Ok(Some(size)) => size,
        Ok(None) => return answer(StatusCode::NOT_FOUND),
        Err(e) => return answer(status_of(&TransferError::Storage(e))),
    };
    let deadline = Instant::now() + transfer_time(&shared, size);
    upgraded.retime(deadline);
    let chunks = u32::try_from(size.div_ceil(CHUNK_LEN as u64)).unwrap_or(u32::MAX);
    let blobs = shared.blobs.clone();
    let stream = futures_util::stream::unfold(0u32, move |idx| {
        let blobs = blobs.clone();
        async move {
            if idx >= chunks {
                return None;
            }
            if Instant::now() > deadline {
                return Some((Err(std::io::Error::other("transfer deadline")), chunks));
            }
            match blobs.chunk(id, idx).await {
                Ok(Some(data)) => Some((Ok(Bytes::from(data)), idx + 1)),
                // Purged or failed mid-transfer: the response breaks off,
                // shorter than its Content-Length.
                Ok(None) | Err(_) => Some((Err(std::io::Error::other("chunk missing")), chunks)),
            }
        }
    });
    let mut response = Body::from_stream(stream).into_response();
    let headers = response.headers_mut();
    headers.insert(CONTENT_LENGTH, HeaderValue::from(size));
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    headers.insert(CONNECTION, HeaderValue::from_static("close"));
    response
}
