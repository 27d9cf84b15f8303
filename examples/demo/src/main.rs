//! `tacit-demo`: one command that shows tacit end to end.
//!
//! It starts a relay on a free loopback port with a temporary database,
//! creates Alice and Bob, has Alice write while Bob is offline, brings Bob
//! online to drain his queue, exchanges receipts and a reply, and prints
//! side by side what each client read and what the relay stored. Then
//! Alice links a second device with a one-time code, Bob's next message
//! reaches both, Alice removes the second device, and Bob's next message
//! reaches the first only. It shows that the sessions are `tacit-v2`
//! (PQXDH over X25519 and ML-KEM-1024), reading the profile from the
//! clients, and what that costs in bytes. Then Alice, Bob and Carol form a
//! group: each message is uploaded once for every member device (its cost
//! against pairwise fan-out is printed), Alice removes Carol, and Carol's
//! client shows it cannot read the next message even when a lying relay
//! hands her a copy. It takes no flags, stops by itself and removes its
//! temporary files.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context as _};
use rand_core::OsRng;
use tacit::identity::LinkCode;
use tacit::Address;
use tacit_client::{
    link, register, Client, ClientConfig, Event, IncomingMessage, MessageId, ReceiptKind,
    SentMessage, StoreKey,
};
use tacit_relay::{Config, Relay};

mod file;
mod group;
mod quantum;

/// How long the demo waits for any one step.
const STEP: Duration = Duration::from_secs(10);
const WIDTH: usize = 34;

/// A scratch directory, removed on drop (also when the demo fails).
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> anyhow::Result<Self> {
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH)?.as_nanos();
        let dir = std::env::temp_dir().join(format!("tacit-demo-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).context("creating the temporary directory")?;
        Ok(Self(dir))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn cut(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        return text.to_owned();
    }
    let mut out: String = text.chars().take(width.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// One transcript row: Alice's column, the relay's, Bob's.
fn row(alice: &str, relay: &str, bob: &str) {
    println!(
        "{:<w$} | {:<w$} | {}",
        cut(alice, WIDTH),
        cut(relay, WIDTH),
        cut(bob, WIDTH),
        w = WIDTH
    );
}

fn rule() {
    println!("{}", "-".repeat(WIDTH * 3 + 6));
}

pub(crate) fn heading(text: &str) {
    println!();
    println!("== {text}");
}

pub(crate) fn client_config(
    dir: &Path,
    name: &str,
    relay: &Relay,
    server_name: &str,
) -> anyhow::Result<ClientConfig> {
    let key = StoreKey::load_or_create(dir.join(format!("{name}.db.key")))?;
    let mut config = ClientConfig::new(
        dir.join(format!("{name}.db")),
        key,
        format!("ws://{}/v1", relay.local_addr()),
    );
    // Logins are signed for the relay's name, not the URL's host.
    config.server_name = server_name.to_owned();
    config.one_time_prekeys = 20;
    config.request_timeout = STEP;
    Ok(config)
}

/// Waits for the first event `pick` accepts.
pub(crate) async fn wait_for<T>(
    client: &mut Client,
    what: &str,
    mut pick: impl FnMut(&Event) -> Option<T>,
) -> anyhow::Result<T> {
    let deadline = tokio::time::Instant::now() + STEP;
    loop {
        let event = tokio::time::timeout_at(deadline, client.next_event())
            .await
            .with_context(|| format!("timed out waiting for {what}"))?
            .with_context(|| format!("the client stopped while waiting for {what}"))?;
        if let Event::Stopped { error } = &event {
            bail!("the client stopped while waiting for {what}: {error:?}");
        }
        if let Some(t) = pick(&event) {
            return Ok(t);
        }
    }
}

/// A row the relay stores for a message.
struct StoredRow {
    id: i64,
    recipient: String,
    size: usize,
    envelope: Vec<u8>,
}

fn stored_rows(db: &Path) -> anyhow::Result<(Vec<String>, Vec<StoredRow>)> {
    let conn =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let mut columns = Vec::new();
    let mut stmt = conn.prepare("PRAGMA table_info(messages)")?;
    let names = stmt.query_map([], |r| r.get::<_, String>(1))?;
    for name in names {
        columns.push(name?);
    }
    let mut stmt = conn.prepare(
        "SELECT m.id, d.user_id, d.device_id, m.envelope
             FROM messages m JOIN devices d ON d.mailbox = m.mailbox ORDER BY m.id",
    )?;
    let rows = stmt.query_map([], |r| {
        let envelope: Vec<u8> = r.get(3)?;
        Ok(StoredRow {
            id: r.get(0)?,
            recipient: format!("{}.{}", r.get::<_, String>(1)?, r.get::<_, u32>(2)?),
            size: envelope.len(),
            envelope,
        })
    })?;
    let mut out = Vec::new();
    for row in rows {
        out.push(row?);
    }
    Ok((columns, out))
}

/// What the relay holds for one device: (registrations, one-time
/// prekeys, queued messages).
fn held_for(db: &Path, user_id: &str, device_id: u32) -> anyhow::Result<(u32, u32, u32)> {
    let conn =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let count = |table: &str| -> anyhow::Result<u32> {
        Ok(conn.query_row(
            &format!("SELECT count(*) FROM {table} WHERE user_id = ?1 AND device_id = ?2"),
            rusqlite::params![user_id, device_id],
            |r| r.get(0),
        )?)
    };
    // Messages are keyed by the device's mailbox number; messages of a
    // removed device's mailbox would show as rows of no device at all.
    let messages = conn.query_row(
        "SELECT count(*) FROM messages WHERE mailbox IN
             (SELECT mailbox FROM devices WHERE user_id = ?1 AND device_id = ?2)
         OR mailbox NOT IN (SELECT mailbox FROM devices)",
        rusqlite::params![user_id, device_id],
        |r| r.get(0),
    )?;
    Ok((count("devices")?, count("one_time_prekeys")?, messages))
}

/// The devices the relay has registered, as `user.device`.
fn registered(db: &Path) -> anyhow::Result<Vec<String>> {
    let conn =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let mut stmt =
        conn.prepare("SELECT user_id, device_id FROM devices ORDER BY user_id, device_id")?;
    let rows = stmt.query_map([], |r| {
        Ok(format!(
            "{}.{}",
            r.get::<_, String>(0)?,
            r.get::<_, u32>(1)?
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        out.push(row?);
    }
    Ok(out)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

fn found(yes: bool) -> &'static str {
    if yes {
        "FOUND"
    } else {
        "not found"
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let result = match TempDir::new() {
        Ok(dir) => {
            let result = tokio::time::timeout(Duration::from_secs(60), demo(&dir.0)).await;
            let path = dir.0.clone();
            drop(dir);
            match result {
                Ok(r) => r.map(|()| {
                    if !path.exists() {
                        println!("Temporary files removed.");
                    }
                }),
                Err(_) => Err(anyhow::anyhow!("the demo took too long")),
            }
        }
        Err(e) => Err(e),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tacit-demo: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn demo(dir: &Path) -> anyhow::Result<()> {
    let relay_db = dir.join("relay.db");
    let mut relay_config = Config::new(&relay_db);
    relay_config.listen = "127.0.0.1:0".parse()?;
    relay_config.shutdown_grace = Duration::from_secs(2);
    let server_name = relay_config.server_name.clone();
    let relay = Relay::bind(relay_config)
        .await
        .context("starting the relay")?;

    println!("tacit demo: end-to-end encrypted messages through a relay that learns");
    println!("neither who sends nor what is said.");
    println!();
    println!("relay     ws://{}/v1", relay.local_addr());
    println!("database  {} (temporary)", relay_db.display());

    let alice_config = client_config(dir, "alice", &relay, &server_name)?;
    let mut bob_config = client_config(dir, "bob", &relay, &server_name)?;
    bob_config.download_dir = Some(dir.join("bob-downloads"));
    std::fs::create_dir_all(dir.join("bob-downloads"))?;
    register(&alice_config, Address::new("alice", 1)?).await?;
    register(&bob_config, Address::new("bob", 1)?).await?;

    heading("Alice writes while Bob is offline");
    println!();
    row("ALICE reads / does", "RELAY stores", "BOB reads");
    rule();
    row("registered as alice.1", "alice.1: identity + prekeys", "");
    row(
        "",
        "bob.1: identity + prekeys",
        "registered as bob.1, offline",
    );

    let mut alice = Client::start(alice_config).await?;
    let texts = [
        "Hi Bob! Lunch on Friday?",
        "The usual place, 12:30.",
        "Bring the blue folder.",
    ];
    let mut sent: Vec<(MessageId, &str)> = Vec::new();
    let mut first_envelope = 0;
    for text in texts {
        let s = alice.send_text("bob", text).await?;
        let (_, rows) = stored_rows(&relay_db)?;
        let last = rows.last().context("the relay stored nothing")?;
        if first_envelope == 0 {
            first_envelope = last.size;
        }
        row(
            &format!("sends \"{text}\""),
            &format!("#{} for {}, {} bytes", last.id, last.recipient, last.size),
            "",
        );
        sent.push((s.message_id, text));
    }

    heading("What the relay stored (read from its database)");
    let (columns, rows) = stored_rows(&relay_db)?;
    println!("columns of `messages`: {}", columns.join(", "));
    println!("(no sender column: a submission is not linked to who submitted it)");
    println!();
    println!(
        "{:>4}  {:<10} {:>6}  first bytes",
        "id", "recipient", "bytes"
    );
    for r in &rows {
        let head: String = r
            .envelope
            .iter()
            .take(12)
            .map(|b| format!("{b:02x}"))
            .collect();
        println!("{:>4}  {:<10} {:>6}  {head}…", r.id, r.recipient, r.size);
    }
    println!();
    let all: Vec<u8> = rows
        .iter()
        .flat_map(|r| r.envelope.iter().copied())
        .collect();
    let mut leaked = false;
    for text in texts {
        let hit = contains(&all, text.as_bytes());
        leaked |= hit;
        println!("search stored envelopes for \"{text}\": {}", found(hit));
    }
    for name in ["alice", "Alice"] {
        let hit = contains(&all, name.as_bytes());
        leaked |= hit;
        println!(
            "search stored envelopes for the sender's name \"{name}\": {}",
            found(hit)
        );
    }
    // The whole database file too (its WAL holds recent writes).
    let mut file = std::fs::read(&relay_db)?;
    if let Ok(wal) = std::fs::read(dir.join("relay.db-wal")) {
        file.extend_from_slice(&wal);
    }
    for text in texts {
        let hit = contains(&file, text.as_bytes());
        leaked |= hit;
        println!(
            "search the relay's whole database for \"{text}\": {}",
            found(hit)
        );
    }
    if leaked {
        bail!("the relay stored something it should not have");
    }

    heading("Bob comes online and drains his queue");
    println!();
    row("ALICE reads", "RELAY", "BOB reads");
    rule();
    let mut bob = Client::start(bob_config).await?;
    let mut received = Vec::new();
    loop {
        let event = wait_for(&mut bob, "Bob's queue", |e| match e {
            Event::Message(_) | Event::QueueDrained { .. } => Some(e.clone()),
            _ => None,
        })
        .await?;
        match event {
            Event::Message(m) => {
                row(
                    "",
                    &format!("pushes #{}", m.relay_id),
                    &format!("{}: {}", m.sender.user_id(), m.text),
                );
                received.push(m);
            }
            Event::QueueDrained {
                delivered,
                duplicates,
            } => {
                row(
                    "",
                    "queue empty",
                    &format!("{delivered} new, {duplicates} duplicates"),
                );
                break;
            }
            _ => {}
        }
    }
    if received.len() != texts.len() {
        bail!("Bob read {} messages, not {}", received.len(), texts.len());
    }

    // Bob has displayed them: read receipts.
    let ids: Vec<MessageId> = received.iter().map(|m| m.message_id).collect();
    bob.send_read_receipt("alice", ids).await?;
    let mut delivered = 0;
    let mut read = 0;
    while delivered < sent.len() || read < sent.len() {
        let (kind, message_ids) = wait_for(&mut alice, "receipts", |e| match e {
            Event::Receipt {
                kind, message_ids, ..
            } => Some((*kind, message_ids.clone())),
            _ => None,
        })
        .await?;
        for id in message_ids {
            let Some((_, text)) = sent.iter().find(|(m, _)| *m == id) else {
                continue;
            };
            let mark = match kind {
                ReceiptKind::Delivered => {
                    delivered += 1;
                    "delivered"
                }
                ReceiptKind::Read => {
                    read += 1;
                    "read"
                }
                _ => "receipt",
            };
            row(&format!("[{mark}] {text}"), "(a sealed receipt)", "");
        }
    }

    bob.send_text("alice", "Friday works. See you there!")
        .await?;
    let reply = wait_for(&mut alice, "Bob's reply", |e| match e {
        Event::Message(m) => Some(m.clone()),
        _ => None,
    })
    .await?;
    row(
        &format!("{}: {}", reply.sender.user_id(), reply.text),
        "stored, pushed, acked, deleted",
        "sends \"Friday works. See you…\"",
    );

    heading("Verification");
    let a = alice.safety_number("bob").await?;
    let b = bob.safety_number("alice").await?;
    let number = |n: &str| {
        let digits: Vec<char> = n.chars().collect();
        digits
            .chunks(5)
            .map(|c| c.iter().collect::<String>())
            .collect::<Vec<_>>()
            .join(" ")
    };
    println!("Alice's safety number for bob: {}", number(&a));
    println!("Bob's safety number for alice: {}", number(&b));
    println!(
        "They {}: compare them in person to rule out a relay in the middle.",
        if number(&a) == number(&b) {
            "match"
        } else {
            "DIFFER"
        }
    );

    heading("Post-quantum key agreement");
    quantum::show(&relay_db, &alice, &bob, first_envelope).await?;

    heading("A file");
    file::show(dir, &relay_db, &mut alice, &mut bob).await?;

    let alice2 = devices(dir, &relay, &server_name, &relay_db, &mut alice, &bob, &a).await?;
    let bob = group::show(dir, &relay, &server_name, &relay_db, &mut alice, bob).await?;

    alice.shutdown().await;
    bob.shutdown().await;
    alice2.shutdown().await;
    // Give the last acknowledgements a moment to commit, and the relay to
    // sweep the acknowledged rows, before counting.
    let mut left = stored_rows(&relay_db)?.1.len();
    for _ in 0..20 {
        if left == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        left = stored_rows(&relay_db)?.1.len();
    }
    println!("Messages left at the relay: {left} (each was deleted once acknowledged).");
    relay.shutdown().await?;
    println!("Relay stopped.");
    Ok(())
}

/// Bob's message while Alice has two devices.
const FOR_BOTH: &str = "Both devices get this.";
/// Bob's message after Alice removed her second device.
const FOR_ONE: &str = "Only alice.1 gets this.";

/// The next text message, skipping other events.
async fn next_message(client: &mut Client, what: &str) -> anyhow::Result<IncomingMessage> {
    wait_for(client, what, |e| match e {
        Event::Message(m) => Some(m.clone()),
        _ => None,
    })
    .await
}

fn copies(sent: &SentMessage) -> String {
    let to: Vec<String> = sent.stored_for.iter().map(ToString::to_string).collect();
    format!("copies for {}", to.join(", "))
}

/// Alice links a second device, Bob writes to both, Alice removes it, Bob
/// writes to the first only. Returns the removed device's client (stopped).
async fn devices(
    dir: &Path,
    relay: &Relay,
    server_name: &str,
    relay_db: &Path,
    alice: &mut Client,
    bob: &Client,
    safety_number: &str,
) -> anyhow::Result<Client> {
    heading("Alice links a second device with a one-time code");
    println!();
    let alice2_config = client_config(dir, "alice2", relay, server_name)?;
    // The new device makes the code and shows it; the user types it on the
    // first device, which holds Alice's user key.
    let code = LinkCode::generate(&mut OsRng);
    let shown = code.to_string();
    println!("alice.2 shows the code {shown} and waits");
    let linking = tokio::spawn(async move {
        link(&alice2_config, Address::new("alice", 2)?, &code, STEP).await?;
        anyhow::Ok(alice2_config)
    });
    let approved = alice.approve_link(&LinkCode::parse(&shown)?).await?;
    println!("alice.1 is given the code and approves {approved}: it signs the new device list");
    let alice2_config = linking.await??;
    let list: Vec<String> = alice
        .devices()
        .await?
        .iter()
        .map(|d| d.address.to_string())
        .collect();
    println!("Alice's devices: {}", list.join(", "));
    let mut alice2 = Client::start(alice2_config).await?;

    println!();
    row("ALICE.1 reads", "RELAY", "ALICE.2 reads");
    rule();
    let sent = bob.send_text("alice", "Both devices get this.").await?;
    let one = next_message(alice, "Bob's message on alice.1").await?;
    let two = next_message(&mut alice2, "Bob's message on alice.2").await?;
    row(
        &format!("{}: {}", one.sender.user_id(), one.text),
        &copies(&sent),
        &format!("{}: {}", two.sender.user_id(), two.text),
    );
    if one.text != two.text {
        bail!("alice.1 and alice.2 read different texts");
    }
    // One safety number per pair of users: the new device has the same.
    let same = alice2.safety_number("bob").await?;
    println!();
    println!(
        "alice.2's safety number for bob is {} alice.1's (one per pair of users).",
        if same == safety_number {
            "the same as"
        } else {
            "NOT"
        }
    );
    if same != safety_number {
        bail!("alice.2's safety number differs");
    }

    heading("Alice removes alice.2");
    println!();
    alice.remove_device(2).await?;
    let stopped = wait_stopped(&mut alice2).await?;
    println!("alice.2's client stops: {stopped}");
    let list: Vec<String> = alice
        .devices()
        .await?
        .iter()
        .map(|d| d.address.to_string())
        .collect();
    println!("Alice's devices: {}", list.join(", "));
    // The relay deletes the registration, prekeys and mailbox when the
    // list is published.
    let (devices, prekeys, messages) = held_for(relay_db, "alice", 2)?;
    println!(
        "relay rows for alice.2: registrations {devices}, one-time prekeys {prekeys}, messages {messages}"
    );
    println!(
        "relay's registered devices: {}",
        registered(relay_db)?.join(", ")
    );
    if devices + prekeys + messages != 0 {
        bail!("the relay still holds rows for alice.2");
    }

    println!();
    row("ALICE.1 reads", "RELAY", "ALICE.2 reads");
    rule();
    let sent = bob.send_text("alice", FOR_ONE).await?;
    let one = next_message(alice, "Bob's message on alice.1").await?;
    // alice.2 starts again: the relay no longer knows it.
    let mut again = Client::start(client_config(dir, "alice2", relay, server_name)?).await?;
    let refused = wait_stopped(&mut again).await?;
    row(
        &format!("{}: {}", one.sender.user_id(), one.text),
        &copies(&sent),
        "nothing new",
    );
    println!("alice.2 starting again: {refused}");
    if sent.stored_for.iter().any(|a| a.device_id() == 2) {
        bail!("a copy was made for the removed device");
    }
    println!();
    let mut file = std::fs::read(relay_db)?;
    if let Ok(wal) = std::fs::read(dir.join("relay.db-wal")) {
        file.extend_from_slice(&wal);
    }
    let mut leaked = false;
    for text in [FOR_BOTH, FOR_ONE] {
        let hit = contains(&file, text.as_bytes());
        leaked |= hit;
        println!(
            "search the relay's whole database for \"{text}\": {}",
            found(hit)
        );
    }
    if leaked {
        bail!("the relay stored something it should not have");
    }
    Ok(alice2)
}

/// Waits for the client to stop on its own; returns why.
async fn wait_stopped(client: &mut Client) -> anyhow::Result<String> {
    let deadline = tokio::time::Instant::now() + STEP;
    loop {
        let event = tokio::time::timeout_at(deadline, client.next_event())
            .await
            .context("timed out waiting for the client to stop")?;
        match event {
            Some(Event::Stopped { error: Some(e) }) => return Ok(e),
            Some(Event::Stopped { error: None }) | None => {
                bail!("the client stopped without error")
            }
            Some(_) => {}
        }
    }
}
