//! The demo's group section: Alice, Bob and Carol in a group, messages
//! both ways uploaded once each, what one upload costs against pairwise
//! fan-out (read from the relay's mailbox), then Carol's removal and the
//! proof that she cannot read the next message, even when the relay hands
//! her a copy.

use std::path::Path;

use anyhow::{bail, Context as _};
use tacit::Address;
use tacit_client::{register, Client, Event, GroupRefusal, IncomingGroupMessage, SentGroupMessage};
use tacit_relay::Relay;

use crate::{client_config, heading, wait_for};

const TITLE: &str = "demo-team";
const HELLO: &str = "Hello, group!";
const SECRET: &str = "Carol must not read this.";

async fn group_message(client: &mut Client, what: &str) -> anyhow::Result<IncomingGroupMessage> {
    wait_for(client, what, |e| match e {
        Event::GroupMessage(m) => Some(m.clone()),
        _ => None,
    })
    .await
}

async fn changed(client: &mut Client, what: &str) -> anyhow::Result<(String, bool)> {
    wait_for(client, what, |e| match e {
        Event::GroupChanged {
            description,
            active,
            ..
        } => Some((description.clone(), *active)),
        _ => None,
    })
    .await
}

/// The envelopes the relay holds for `user`, with their kind (0 sealed,
/// 1 group), oldest first.
fn mailbox(db: &Path, user: &str) -> anyhow::Result<Vec<(u32, Vec<u8>)>> {
    let conn = rusqlite::Connection::open(db)?;
    let mut stmt = conn.prepare(
        "SELECT m.kind, m.envelope FROM messages m JOIN devices d ON d.mailbox = m.mailbox
             WHERE d.user_id = ?1 ORDER BY m.id",
    )?;
    let rows = stmt.query_map([user], |r| Ok((r.get(0)?, r.get(1)?)))?;
    let mut out = Vec::new();
    for row in rows {
        out.push(row?);
    }
    Ok(out)
}

fn sent_line(sender: &str, sent: &SentGroupMessage, text: &str) -> String {
    let to: Vec<String> = sent.recipients.iter().map(ToString::to_string).collect();
    format!(
        "{sender} -> [{TITLE}] \"{text}\": one upload of {} bytes for {}",
        sent.uploaded_bytes,
        to.join(", ")
    )
}

/// Runs the section. Bob is shut down and started again on the way (the
/// returned client).
pub(crate) async fn show(
    dir: &Path,
    relay: &Relay,
    server_name: &str,
    relay_db: &Path,
    alice: &mut Client,
    mut bob: Client,
) -> anyhow::Result<Client> {
    heading("A group: Alice, Bob and Carol");
    let carol_config = client_config(dir, "carol", relay, server_name)?;
    register(&carol_config, Address::new("carol", 1)?).await?;
    println!("carol.1 registered; her client is offline for now.");

    let group = alice.create_group(TITLE, &["bob", "carol"]).await?;
    let (description, _) = changed(&mut bob, "the group at Bob").await?;
    println!(
        "alice creates \"{TITLE}\" (admin: alice); bob's client reports: {description}, by alice.1"
    );
    println!(
        "The membership (signed by alice.1, epoch {}) went to each member pairwise, sealed.",
        group.epoch
    );

    // One group message, uploaded once; Carol is offline, so her copy
    // stays at the relay to be measured.
    let sent = alice.send_group_text(TITLE, HELLO).await?;
    println!("{}", sent_line("alice", &sent, HELLO));
    let m = group_message(&mut bob, "Alice's group message at Bob").await?;
    println!("bob reads   [{}] {}: {}", m.title, m.sender, m.text);
    let mut carol = Client::start(carol_config.clone()).await?;
    let m = group_message(&mut carol, "Alice's group message at Carol").await?;
    println!();
    println!(
        "carol comes online and reads [{}] {}: {}",
        m.title, m.sender, m.text
    );
    let back = bob.send_group_text(TITLE, "Hi both, Bob here.").await?;
    println!("{}", sent_line("bob", &back, "Hi both, Bob here."));
    for (name, client) in [("alice", &mut *alice), ("carol", &mut carol)] {
        let m = group_message(client, "Bob's group message").await?;
        println!("{name} reads [{}] {}: {}", m.title, m.sender, m.text);
    }

    heading("Alice removes Carol");
    let after = alice.remove_group_member(TITLE, "carol").await?;
    let members: Vec<&str> = after.members.iter().map(|m| m.user_id.as_str()).collect();
    println!("epoch {}: members {}", after.epoch, members.join(", "));
    let (description, active) = changed(&mut carol, "the removal at Carol").await?;
    println!("carol's client reports: {description} (still a member: {active})");
    changed(&mut bob, "the removal at Bob").await?;

    // Bob goes offline, so that his copy of the next message waits at the
    // relay; a relay that lies then copies it into Carol's mailbox.
    bob.shutdown().await;
    let secret = alice.send_group_text(TITLE, SECRET).await?;
    println!("{}", sent_line("alice", &secret, SECRET));
    if secret.recipients.iter().any(|a| a.user_id() == "carol") {
        bail!("a copy was addressed to carol after her removal");
    }
    println!("No copy is addressed to carol: her device is not a recipient.");
    cost(alice, relay_db, &secret).await?;
    let bob_copy = mailbox(relay_db, "bob")?
        .into_iter()
        .rev()
        .find(|(kind, _)| *kind == 1)
        .context("no group envelope queued for bob")?
        .1;
    {
        let conn = rusqlite::Connection::open(relay_db)?;
        conn.execute(
            "INSERT INTO messages (mailbox, server_ms, expires_ms, envelope, kind)
             SELECT mailbox, 0, 9223372036854775807, ?1, 1 FROM devices
             WHERE user_id = 'carol' AND device_id = 1",
            [&bob_copy],
        )?;
    }
    println!("A lying relay puts a copy of Bob's envelope into Carol's mailbox.");
    carol.shutdown().await;
    let mut carol = Client::start(carol_config).await?;
    let refused = wait_for(&mut carol, "Carol's client on the copy", |e| match e {
        Event::GroupRefused { reason, .. } => Some(reason.clone()),
        Event::GroupMessage(m) => Some(GroupRefusal::Malformed(format!(
            "READ BY CAROL: {}",
            m.text
        ))),
        _ => None,
    })
    .await?;
    if !matches!(refused, GroupRefusal::Envelope(_)) {
        bail!("carol's client did not refuse the copy: {refused}");
    }
    println!("carol's client: {refused} (the key is wrapped for bob.1 only)");
    let groups = carol.groups().await?;
    let held = groups
        .iter()
        .find(|g| g.id == group.id)
        .map_or(0, |g| g.readable_from.len());
    if held != 0 {
        bail!("carol holds {held} sender chains of the state after her removal");
    }
    println!(
        "carol holds 0 sender chains of the new state: Alice's and Bob's next chains never reached her."
    );
    let history = carol.group_history().await?;
    if history.iter().any(|e| e.text == SECRET) {
        bail!("carol's history holds the message sent after her removal");
    }
    println!(
        "carol's history: {} group messages, none after her removal.",
        history.len()
    );
    carol.shutdown().await;

    let mut bob = Client::start(client_config(dir, "bob", relay, server_name)?).await?;
    let m = group_message(&mut bob, "the message at Bob").await?;
    println!(
        "bob comes back online and reads [{}] {}: {}",
        m.title, m.sender, m.text
    );
    // Bob's delivery receipt reaches Alice before anyone stops.
    wait_for(alice, "Bob's receipt", |e| match e {
        Event::Receipt { message_ids, .. } if message_ids.contains(&secret.message_id) => Some(()),
        _ => None,
    })
    .await?;
    Ok(bob)
}

/// What the group message `sent` (queued for Bob, offline) cost to upload,
/// against the same text sent pairwise to Bob on their established session,
/// read from Bob's mailbox at the relay; then both for more devices.
async fn cost(alice: &Client, relay_db: &Path, sent: &SentGroupMessage) -> anyhow::Result<()> {
    let group_copy = mailbox(relay_db, "bob")?
        .into_iter()
        .rev()
        .find(|(kind, _)| *kind == 1)
        .context("no group envelope queued for bob")?
        .1
        .len();
    alice.send_text("bob", SECRET).await?;
    let pairwise_copy = mailbox(relay_db, "bob")?
        .last()
        .map(|(_, e)| e.len())
        .context("no pairwise envelope queued for bob")?;
    let shared = sent.uploaded_bytes - 32 * sent.recipients.len();
    println!();
    println!("What \"{SECRET}\" costs to upload (sizes read from Bob's mailbox):");
    println!(
        "  group:    {shared} bytes of shared payload once + 32 bytes per device; Bob's copy is {group_copy} bytes"
    );
    println!(
        "  pairwise: one sealed envelope per device, {pairwise_copy} bytes each (the same text, sent to Bob for comparison)"
    );
    for devices in [2usize, 10, 100] {
        println!(
            "  {devices:>3} devices: group {:>6} bytes in 1 submission, pairwise {:>6} bytes in {devices}",
            shared + 32 * devices,
            pairwise_copy * devices
        );
    }
    println!();
    Ok(())
}
