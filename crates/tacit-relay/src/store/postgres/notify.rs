//! What the nodes of one database tell each other, over `LISTEN`/`NOTIFY`
//! on the channel [`CHANNEL`].
//!
//! A batch's notifications are sent inside its transaction, so PostgreSQL
//! delivers them at its commit, to every listening node (the sender too).
//! A payload names a device, never a message: the mailbox stays the source
//! of truth. A notification lost (the listening connection dropped) only
//! delays a message: after it listens again a node reads every online
//! device's mailbox, and it does so every `mailbox_recheck` anyway.
//!
//! Payloads, one line each (`DEVICE` the device id, `USER` the user id,
//! last because it is the only field that may hold spaces):
//! - `m DEVICE USER`: the device has new mail;
//! - `r DEVICE USER`: the device was removed by its user's list;
//! - `p ONE_TIME KEM DEVICE USER`: the device's prekeys run low;
//! - `l NODE SINCE_MS DEVICE USER`: the device logged in on node `NODE`.

use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::Pool;
use futures_util::StreamExt;
use rand_core::RngCore;
use tacit::Address;
use tokio::sync::mpsc;
use tokio_postgres::{AsyncMessage, NoTls};

use super::CHANNEL;
use crate::kem::PreKeyCounts;
use crate::online::Online;
use crate::store::{Effects, StoreError};

/// The notifications of a batch's effects (the recipients deduplicated).
pub(super) fn payloads(effects: &mut Effects) -> Vec<String> {
    effects.mail.sort_unstable();
    effects.mail.dedup();
    let at = |a: &Address| format!("{} {}", a.device_id(), a.user_id());
    let mut out: Vec<String> = effects
        .mail
        .iter()
        .map(|a| format!("m {}", at(a)))
        .collect();
    out.extend(effects.removed.iter().map(|a| format!("r {}", at(a))));
    out.extend(
        effects
            .low
            .iter()
            .map(|(a, c)| format!("p {} {} {}", c.one_time, c.one_time_kem, at(a))),
    );
    out
}

/// Splits `n` leading numbers and the address off a payload's fields.
fn parse<const N: usize>(fields: &str) -> Option<([u64; N], Address)> {
    let mut rest = fields;
    let mut numbers = [0u64; N];
    for n in &mut numbers {
        let (number, tail) = rest.split_once(' ')?;
        *n = number.parse().ok()?;
        rest = tail;
    }
    let (device, user) = rest.split_once(' ')?;
    Some((numbers, Address::new(user, device.parse().ok()?).ok()?))
}

/// Acts on one notification; `node` is this node's id.
fn handle(online: &Online, node: u64, payload: &str) {
    let Some((kind, fields)) = payload.split_once(' ') else {
        return;
    };
    match kind {
        "m" => {
            if let Some(([], address)) = parse::<0>(fields) {
                online.wake(&address);
            }
        }
        "r" => {
            if let Some(([], address)) = parse::<0>(fields) {
                online.device_removed(&address);
            }
        }
        "p" => {
            if let Some(([one_time, kem], address)) = parse::<2>(fields) {
                let count = |n: u64| u32::try_from(n).unwrap_or(u32::MAX);
                let counts = PreKeyCounts {
                    one_time: count(one_time),
                    one_time_kem: count(kem),
                };
                online.prekeys_low(&address, counts);
            }
        }
        "l" => {
            if let Some(([from, since], address)) = parse::<2>(fields) {
                if from != node {
                    online.superseded(&address, since);
                }
            }
        }
        _ => tracing::debug!(payload, "unknown notification"),
    }
}

/// Starts listening (reconnecting as needed), announcing this node's
/// logins, and re-reading the online devices' mailboxes every `recheck`.
/// The task runs until aborted.
/// `ready` is told when the node first listens.
pub(crate) fn start_listener(
    url: &str,
    pool: Pool,
    online: Arc<Online>,
    recheck: Duration,
    ready: tokio::sync::oneshot::Sender<()>,
) -> Result<tokio::task::JoinHandle<()>, StoreError> {
    let config: tokio_postgres::Config = url.parse()?;
    let node = rand_core::OsRng.next_u64();
    let (announce, mut logins) = mpsc::unbounded_channel::<(Address, u64)>();
    online.announce_logins(announce);
    let mut ready = Some(ready);
    Ok(tokio::spawn(async move {
        let _announcer = AbortOnDrop(tokio::spawn(async move {
            while let Some((address, since)) = logins.recv().await {
                let payload = format!(
                    "l {node} {since} {} {}",
                    address.device_id(),
                    address.user_id()
                );
                let sent = match pool.get().await {
                    Ok(c) => c
                        .execute("SELECT pg_notify($1, $2)", &[&CHANNEL, &payload])
                        .await
                        .map(drop)
                        .map_err(|e| e.to_string()),
                    Err(e) => Err(e.to_string()),
                };
                if let Err(error) = sent {
                    tracing::warn!(error, "login not announced to the other nodes");
                }
            }
        }));
        loop {
            if let Err(error) = listen(&config, &online, node, recheck, &mut ready).await {
                tracing::warn!(%error, "listening for other nodes failed; trying again");
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }))
}

/// A task aborted when this is dropped (with the task that holds it).
pub(crate) struct AbortOnDrop(pub(crate) tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// One listening connection, until it fails.
async fn listen(
    config: &tokio_postgres::Config,
    online: &Online,
    node: u64,
    recheck: Duration,
    ready: &mut Option<tokio::sync::oneshot::Sender<()>>,
) -> Result<(), tokio_postgres::Error> {
    let (client, mut connection) = config.connect(NoTls).await?;
    let (tx, mut notifications) = mpsc::unbounded_channel::<String>();
    let _driver = AbortOnDrop(tokio::spawn(async move {
        let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(message) = messages.next().await {
            match message {
                Ok(AsyncMessage::Notification(n)) => {
                    if tx.send(n.payload().to_owned()).is_err() {
                        break;
                    }
                }
                Ok(_) => {}
                Err(error) => {
                    tracing::warn!(%error, "the listening connection failed");
                    break;
                }
            }
        }
    }));
    client.batch_execute(&format!("LISTEN {CHANNEL}")).await?;
    tracing::debug!("listening for other nodes");
    if let Some(ready) = ready.take() {
        let _ = ready.send(());
    }
    // Mail committed while no connection listened.
    online.wake_all();
    let mut tick = tokio::time::interval(recheck);
    tick.tick().await;
    loop {
        tokio::select! {
            payload = notifications.recv() => match payload {
                Some(payload) => handle(online, node, &payload),
                None => break,
            },
            _ = tick.tick() => online.wake_all(),
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn payloads_name_the_device_and_parse_back() {
        let alice = Address::new("alice with spaces", 7).unwrap();
        let mut effects = Effects {
            mail: vec![alice.clone(), alice.clone()],
            low: vec![(
                alice.clone(),
                PreKeyCounts {
                    one_time: 3,
                    one_time_kem: 4,
                },
            )],
            ..Effects::default()
        };
        let out = payloads(&mut effects);
        assert_eq!(out, ["m 7 alice with spaces", "p 3 4 7 alice with spaces"]);
        assert_eq!(parse::<0>("7 alice with spaces").unwrap().1, alice);
        assert_eq!(parse::<2>("3 4 7 alice with spaces").unwrap().0, [3, 4]);
        assert!(parse::<2>("3 x 7 alice").is_none());
        assert!(parse::<0>("notanumber alice").is_none());
    }
}
