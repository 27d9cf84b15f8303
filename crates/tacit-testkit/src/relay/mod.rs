//! Talking to a relay outside `tacit-client`: the one frame client of the
//! workspace's tests and of the load generator, the devices they log in
//! as, the relay process they start, and a device whose every message a
//! test scripts.

mod account;
mod client;
mod process;
mod sender;

pub use account::{addr, identity, kem_prekey, now_ms, same_user, user_key, Device};
pub use client::{
    code, connect, registered, Client, ClientError, FrameSink, FrameStream, TcpClient, Ws,
    SERVER_NAME, WAIT,
};
pub use process::{spawn_relay, RelayProcess};
pub use sender::{request, Sender};
/// WebSocket settings, for [`Client::try_connect_with`].
pub use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
/// A WebSocket message, for [`Client::send_raw`].
pub use tokio_tungstenite::tungstenite::Message;
