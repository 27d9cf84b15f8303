//! One WebSocket connection to the relay: requests with ids, answers
//! matched to them, and the frames that arrive meanwhile kept in order.
//!
//! A connection has a [`Role`] that fixes which requests it may carry: the
//! account's connection logs in and never fetches a bundle, and submits
//! an envelope only after the anonymous one was refused it for want of
//! the recipient's delivery token; the anonymous one never logs in and
//! submits and fetches.

use std::collections::VecDeque;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tacit_relay_proto::{ClientFrame, ErrorReply, Reply, Request, Response, ServerFrame};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{Connector, MaybeTlsStream, WebSocketStream};

use crate::endpoint::Endpoint;
use crate::ClientError;

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// What a connection is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// Registers or logs in as the device: prekeys, pushes, acks.
    Account,
    /// Never logs in: sealed envelopes and bundle fetches, so that the
    /// relay cannot tie them to the device.
    Anonymous,
}

impl Role {
    /// Whether a connection of this role may carry `request`.
    fn allows(self, request: &Request) -> bool {
        // Submissions go anonymously; the account's connection carries
        // one only when the relay refused it there for want of the
        // recipient's delivery token (`engine::tokens`).
        let submission = matches!(request, Request::Submit(_) | Request::SubmitGroup(_));
        let anonymous = matches!(
            request,
            Request::FetchBundles(_)
                | Request::FetchDeviceList(_)
                | Request::LinkPut(_)
                | Request::LinkTake(_)
        );
        submission || anonymous == (self == Self::Anonymous)
    }
}

/// A connection to the relay.
pub(crate) struct Conn {
    ws: Ws,
    role: Role,
    next_id: u64,
    /// Frames read while waiting for an answer, handled after it.
    pending: VecDeque<ServerFrame>,
    timeout: Duration,
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn")
            .field("role", &self.role)
            .field("next_id", &self.next_id)
            .field("pending", &self.pending.len())
            .finish_non_exhaustive()
    }
}

fn lost(e: impl std::fmt::Display) -> ClientError {
    ClientError::Connection(e.to_string())
}

/// A failed connection attempt: [`ClientError::Tls`] if TLS refused
/// (rustls reports a handshake failure as an I/O error wrapping it), else
/// [`ClientError::Connection`].
fn connect_error(e: tungstenite::Error) -> ClientError {
    let tls = match &e {
        tungstenite::Error::Tls(_) => true,
        tungstenite::Error::Io(io) => io
            .get_ref()
            .is_some_and(|inner| inner.downcast_ref::<rustls::Error>().is_some()),
        _ => false,
    };
    if tls {
        ClientError::Tls(e.to_string())
    } else {
        lost(e)
    }
}

impl Conn {
    /// Opens the WebSocket at `endpoint` (over TLS for `wss://`) for
    /// `role`.
    pub(crate) async fn connect(
        endpoint: &Endpoint,
        timeout: Duration,
        role: Role,
    ) -> Result<Self, ClientError> {
        let connect = tokio_tungstenite::connect_async_tls_with_config(
            endpoint.url(),
            None,
            false,
            endpoint.tls().map(Connector::Rustls),
        );
        let (ws, _) = tokio::time::timeout(timeout, connect)
            .await
            .map_err(|_| ClientError::Timeout("connecting to the relay"))?
            .map_err(connect_error)?;
        Ok(Self {
            ws,
            role,
            next_id: 1,
            pending: VecDeque::new(),
            timeout,
        })
    }

    /// Sends a request without waiting for its answer; returns its id.
    /// A request this connection's role does not allow is refused here
    /// and never sent (a bundle fetch on the logged-in connection would
    /// tell the relay who is about to write to whom; submissions go there
    /// only after the anonymous connection was refused them for want of
    /// a delivery token, `engine::tokens`).
    pub(crate) async fn send(&mut self, request: Request) -> Result<u64, ClientError> {
        if !self.role.allows(&request) {
            return Err(ClientError::Invalid(format!(
                "{} must not go on the {:?} connection",
                request.name(),
                self.role
            )));
        }
        let request_id = self.next_id;
        self.next_id += 1;
        let bytes = ClientFrame {
            request_id,
            request,
        }
        .encode();
        tokio::time::timeout(self.timeout, self.ws.send(Message::binary(bytes)))
            .await
            .map_err(|_| ClientError::Timeout("sending to the relay"))?
            .map_err(lost)?;
        Ok(request_id)
    }

    /// The next frame from the socket. Cancel safe.
    async fn read(&mut self) -> Result<ServerFrame, ClientError> {
        loop {
            match self.ws.next().await {
                None => return Err(ClientError::Connection("closed by the relay".into())),
                Some(Err(e)) => return Err(lost(e)),
                Some(Ok(Message::Binary(bytes))) => {
                    return ServerFrame::decode(&bytes)
                        .map_err(|e| ClientError::Protocol(format!("bad frame: {e}")))
                }
                Some(Ok(Message::Close(frame))) => {
                    let why = frame
                        .map(|f| format!("closed by the relay ({}: {})", f.code, f.reason))
                        .unwrap_or_else(|| "closed by the relay".into());
                    return Err(ClientError::Connection(why));
                }
                // Pings are answered by the WebSocket layer.
                Some(Ok(_)) => continue,
            }
        }
    }

    /// The next frame: one kept while waiting for an answer, or a new one.
    /// Cancel safe.
    pub(crate) async fn next_frame(&mut self) -> Result<ServerFrame, ClientError> {
        if let Some(frame) = self.pending.pop_front() {
            return Ok(frame);
        }
        self.read().await
    }

    /// Sends a request and waits for its answer (up to the timeout),
    /// keeping other frames for later. Answers to requests nobody waits
    /// for (acknowledgements) are dropped here.
    pub(crate) async fn request(
        &mut self,
        request: Request,
    ) -> Result<Result<Reply, ErrorReply>, ClientError> {
        let id = self.send(request).await?;
        let deadline = tokio::time::Instant::now() + self.timeout;
        loop {
            let frame = tokio::time::timeout_at(deadline, self.read())
                .await
                .map_err(|_| ClientError::Timeout("waiting for the relay's answer"))??;
            match frame {
                ServerFrame::Response(Response { request_id, result }) if request_id == id => {
                    return Ok(result)
                }
                ServerFrame::Response(Response {
                    request_id: 0,
                    result: Err(e),
                }) => return Err(ClientError::Relay(e)),
                ServerFrame::Response(other) => self.note_unawaited(other),
                other => self.pending.push_back(other),
            }
        }
    }

    /// An answer to a request sent with [`send`](Self::send).
    pub(crate) fn note_unawaited(&mut self, response: Response) {
        if let Err(e) = response.result {
            tracing::warn!(request_id = response.request_id, error = %e, "request refused");
        }
    }

    /// Closes the connection politely (best effort).
    pub(crate) async fn close(mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(1), self.ws.close(None)).await;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use tacit_relay_proto::{Ack, FetchBundles, Submit};

    #[test]
    fn only_the_anonymous_connection_fetches() {
        let bob = tacit::Address::new("bob", 1).unwrap();
        let submit = Request::Submit(Submit::new(bob.clone(), vec![1], None).unwrap());
        let fetch = Request::FetchBundles(FetchBundles::device(&bob));
        let ack = Request::Ack(Ack::new(vec![1]).unwrap());
        assert!(Role::Anonymous.allows(&fetch));
        assert!(!Role::Account.allows(&fetch));
        // Both carry submissions: the account's only those the relay
        // refused anonymously for want of a delivery token.
        assert!(Role::Anonymous.allows(&submit));
        assert!(Role::Account.allows(&submit));
        for account in [&Request::GetChallenge, &ack] {
            assert!(Role::Account.allows(account));
            assert!(!Role::Anonymous.allows(account));
        }
    }
}
