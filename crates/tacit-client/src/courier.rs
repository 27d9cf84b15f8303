//! The connection that never logs in. It carries the client's sealed
//! envelopes (`Submit`) and its bundle fetches (`FetchBundles`), so that
//! the relay cannot tie either to the logged-in device by its connection
//! (it still sees the IP address; see `SECURITY.md`).

use std::time::Duration;

use tacit_relay_proto::{
    ErrorCode, ErrorReply, FetchBundles, FetchDeviceList, LinkTake, Reply, Request, Submit,
    SubmitGroup, LINK_SLOT_LEN,
};
use tokio::time::Instant;

use crate::conn::{Conn, Role};
use crate::endpoint::Endpoint;
use crate::ClientError;

/// How long the anonymous connection stays open with nothing to carry.
/// Well under the relay's keepalive (two ping intervals, 40 s by default),
/// which would close it because an idle connection is not read and so
/// does not answer pings.
pub(crate) const IDLE: Duration = Duration::from_secs(10);

/// How long one request waits in total on `RateLimited` answers before the
/// answer is returned as it is. A rate-limited request changed nothing at
/// the relay, so it is simply sent again after the relay's
/// `retry_after_ms`.
pub(crate) const RATE_LIMIT_PATIENCE: Duration = Duration::from_secs(30);

/// The longest single wait on a `RateLimited` answer.
const MAX_RATE_LIMIT_WAIT: Duration = Duration::from_secs(5);

/// The anonymous connection, opened when needed and closed when idle.
#[derive(Debug)]
pub(crate) struct Courier {
    endpoint: Endpoint,
    timeout: Duration,
    conn: Option<Conn>,
    last_used: Instant,
}

impl Courier {
    pub(crate) fn new(endpoint: Endpoint, timeout: Duration) -> Self {
        Self {
            endpoint,
            timeout,
            conn: None,
            last_used: Instant::now(),
        }
    }

    /// When the open connection should be closed for idleness, if one is
    /// open.
    pub(crate) fn idle_deadline(&self) -> Option<Instant> {
        self.conn.as_ref().map(|_| self.last_used + IDLE)
    }

    /// Closes the connection if one is open.
    pub(crate) async fn close(&mut self) {
        if let Some(conn) = self.conn.take() {
            conn.close().await;
        }
    }

    /// Submits a sealed envelope. `Ok(Err(_))` is the relay's refusal.
    pub(crate) async fn submit(
        &mut self,
        submit: Submit,
    ) -> Result<Result<Reply, ErrorReply>, ClientError> {
        self.request(Request::Submit(submit)).await
    }

    /// Submits a group envelope's shared payload and parts.
    /// `Ok(Err(_))` is the relay's refusal.
    pub(crate) async fn submit_group(
        &mut self,
        submit: SubmitGroup,
    ) -> Result<Result<Reply, ErrorReply>, ClientError> {
        self.request(Request::SubmitGroup(submit)).await
    }

    /// Fetches prekey bundles. `Ok(Err(_))` is the relay's refusal.
    pub(crate) async fn fetch_bundles(
        &mut self,
        fetch: FetchBundles,
    ) -> Result<Result<Reply, ErrorReply>, ClientError> {
        self.request(Request::FetchBundles(fetch)).await
    }

    /// Fetches a user's signed device list. `Ok(Err(_))` is the relay's
    /// refusal.
    pub(crate) async fn fetch_device_list(
        &mut self,
        fetch: FetchDeviceList,
    ) -> Result<Result<Reply, ErrorReply>, ClientError> {
        self.request(Request::FetchDeviceList(fetch)).await
    }

    /// Puts or takes a link slot's blob. `Ok(Err(_))` is the relay's
    /// refusal.
    pub(crate) async fn link(
        &mut self,
        request: Request,
    ) -> Result<Result<Reply, ErrorReply>, ClientError> {
        self.request(request).await
    }

    /// Takes the blob of a link slot, asking again every `poll` while the
    /// slot is empty, until `deadline`. `Ok(Err(_))` is the relay's last
    /// refusal (`LinkSlotUnavailable` when the deadline passed).
    pub(crate) async fn take_link_slot(
        &mut self,
        slot: [u8; LINK_SLOT_LEN],
        deadline: Instant,
        poll: Duration,
    ) -> Result<Result<Vec<u8>, ErrorReply>, ClientError> {
        loop {
            match self.link(Request::LinkTake(LinkTake { slot })).await? {
                Ok(Reply::LinkBlob(blob)) => return Ok(Ok(blob)),
                Ok(other) => {
                    return Err(ClientError::Protocol(format!(
                        "unexpected answer {other:?}"
                    )))
                }
                Err(e) if e.code == ErrorCode::LinkSlotUnavailable && Instant::now() < deadline => {
                    tokio::time::sleep(poll).await;
                }
                Err(e) => return Ok(Err(e)),
            }
        }
    }

    /// Sends `request` on the anonymous connection (opening one if needed)
    /// and returns the relay's answer.
    ///
    /// - `RateLimited` is retried after `retry_after_ms` for up to
    ///   [`RATE_LIMIT_PATIENCE`].
    /// - A connection that was reused and failed (the relay may have
    ///   closed it) is replaced once by a fresh one and the request sent
    ///   again. Both requests are idempotent for the client: a submission
    ///   stored twice is the same envelope, which the recipient recognises;
    ///   a second fetch only claims another one-time prekey.
    /// - A fresh connection that fails returns the error: the relay is
    ///   unreachable, and the caller reconnects with backoff.
    async fn request(
        &mut self,
        request: Request,
    ) -> Result<Result<Reply, ErrorReply>, ClientError> {
        let mut waited = Duration::ZERO;
        let mut replaced = false;
        loop {
            let reused = self.conn.is_some();
            let conn = match &mut self.conn {
                Some(conn) => conn,
                None => {
                    let conn = Conn::connect(&self.endpoint, self.timeout, Role::Anonymous).await?;
                    self.conn.insert(conn)
                }
            };
            let result = conn.request(request.clone()).await;
            self.last_used = Instant::now();
            match result {
                Ok(Err(e)) if e.code == ErrorCode::RateLimited && waited < RATE_LIMIT_PATIENCE => {
                    let wait = e
                        .retry_after_ms
                        .map_or(Duration::from_millis(100), Duration::from_millis)
                        .clamp(Duration::from_millis(1), MAX_RATE_LIMIT_WAIT);
                    waited += wait;
                    tracing::debug!(?wait, "rate limited; retrying");
                    tokio::time::sleep(wait).await;
                }
                Ok(answer) => return Ok(answer),
                Err(e) => {
                    // A broken or refused connection is not used again.
                    self.conn = None;
                    let e = match e {
                        // An error the relay sent for the connection as a
                        // whole (request id 0): this connection is done,
                        // the client is not.
                        ClientError::Relay(reply) => ClientError::Connection(format!(
                            "the relay ended the anonymous connection: {reply}"
                        )),
                        other => other,
                    };
                    if reused && !replaced {
                        replaced = true;
                        tracing::debug!(error = %e, "anonymous connection lost; opening another");
                        continue;
                    }
                    return Err(e);
                }
            }
        }
    }
}
