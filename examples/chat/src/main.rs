//! `tacit-chat`: a line-based chat over tacit, interactive or scripted.
//!
//! ```text
//! tacit-chat --store alice.db --relay wss://relay.example.org/v1 register alice
//! tacit-chat --store alice.db send bob "hello"      # bob may be offline
//! tacit-chat --store bob.db recv --wait 5            # "alice: hello"
//! tacit-chat --store alice.db chat                   # interactive
//! ```
//!
//! The store key is read from `TACIT_STORE_KEY` (64 hex digits) if set,
//! otherwise from the key file `STORE.key`, created on first use with mode
//! 0600. See `docs/client.md` for what each choice protects.
//!
//! The relay is reached over TLS (`wss://`), checked against the platform's
//! root certificates or `--ca-file`; plain `ws://` is accepted only for a
//! relay on this machine. Logins are signed for `--server-name` (by
//! default the relay URL's host), which must match the relay's own
//! `--server-name`.
//!
//! Exit status: 0 on success, 1 on an error (printed on stderr), 2 on a
//! usage error.

use std::io::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context as _};
use clap::{Parser, Subcommand};
use tacit::identity::UserKey;
use tacit::Address;
use tacit_client::{
    register, Backoff, Client, ClientConfig, Direction, Event, MessageId, ReceiptKind, Status,
    StoreKey,
};
use tokio::io::AsyncBufReadExt as _;
use tokio::sync::mpsc;

/// A line-based chat over tacit: end-to-end encrypted, sealed sender,
/// through a tacit relay. Identity, sessions and history live in one
/// encrypted store file.
#[derive(Debug, Parser)]
#[command(name = "tacit-chat", version, about)]
struct Args {
    /// The store file (created by `register`).
    #[arg(long)]
    store: PathBuf,
    /// The relay's WebSocket URL: wss://, or ws:// to a relay on this
    /// machine (localhost, 127.0.0.0/8, ::1).
    #[arg(long, default_value = "wss://localhost:7878/v1")]
    relay: String,
    /// The relay's name (its --server-name), signed into every login; a
    /// relay announcing another name is refused. Default: the host of
    /// --relay.
    #[arg(long)]
    server_name: Option<String>,
    /// A PEM file of the certificates to trust for wss://, instead of the
    /// platform's root certificates.
    #[arg(long)]
    ca_file: Option<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Create the identity (or reuse the store's), register it with the
    /// relay and publish prekeys. Safe to repeat, also against a relay that
    /// lost its database.
    Register {
        /// The user name.
        name: String,
        /// The device number.
        #[arg(long, default_value_t = 1)]
        device: u32,
    },
    /// Send a message; it waits at the relay if PEER is offline.
    Send {
        /// The recipient's user name.
        peer: String,
        /// The text.
        text: String,
    },
    /// Print received messages, one `NAME: TEXT` line each.
    Recv {
        /// Keep listening this many seconds (default: stop once the queue
        /// is drained).
        #[arg(long)]
        wait: Option<u64>,
    },
    /// Interactive chat: /to PEER, /who, /safety PEER, /accept DEVICE,
    /// /history, /quit.
    Chat {
        /// The first peer to talk to.
        peer: Option<String>,
    },
    /// Print the safety number with each known device of PEER.
    Safety {
        /// The peer's user name.
        peer: String,
    },
    /// Print the message history.
    History,
}

fn key_for(store: &std::path::Path) -> anyhow::Result<StoreKey> {
    if let Ok(hex) = std::env::var("TACIT_STORE_KEY") {
        return StoreKey::from_hex(&hex).context("TACIT_STORE_KEY");
    }
    let mut path = store.as_os_str().to_owned();
    path.push(".key");
    StoreKey::load_or_create(PathBuf::from(path)).context("the store's key file")
}

fn config(args: &Args) -> anyhow::Result<ClientConfig> {
    let mut config = ClientConfig::new(&args.store, key_for(&args.store)?, &args.relay);
    if let Some(name) = &args.server_name {
        config.server_name.clone_from(name);
    }
    config.ca_file.clone_from(&args.ca_file);
    // A command line gives up after a few seconds without a relay.
    config.backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(2), 5);
    Ok(config)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    match run(args).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tacit-chat: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    match &args.command {
        Cmd::Register { name, device } => {
            let address = Address::new(name.as_str(), *device).context("the name")?;
            let config = config(&args)?;
            let r = register(&config, address).await?;
            eprintln!(
                "{} {} ({} one-time prekeys published)",
                if r.newly_registered {
                    "registered"
                } else {
                    "logged in again as"
                },
                r.address,
                r.one_time_prekeys
            );
            Ok(())
        }
        Cmd::Send { peer, text } => {
            let mut config = config(&args)?;
            config.receive = false;
            let client = start(config).await?;
            let result = client.send_text(peer, text).await;
            client.shutdown().await;
            let sent = result?;
            let devices: Vec<String> = sent.stored_for.iter().map(ToString::to_string).collect();
            eprintln!("sent to {}", devices.join(", "));
            for (address, e) in &sent.refused {
                eprintln!("not delivered to {address}: {e}");
            }
            Ok(())
        }
        Cmd::Recv { wait } => recv(config(&args)?, *wait).await,
        Cmd::Chat { peer } => chat(config(&args)?, peer.clone()).await,
        Cmd::Safety { peer } => {
            let mut config = config(&args)?;
            config.receive = false;
            let client = start(config).await?;
            let number = client.safety_number(peer).await;
            client.shutdown().await;
            println!("{peer}: {}", group_digits(&number?));
            Ok(())
        }
        Cmd::History => {
            let mut config = config(&args)?;
            config.receive = false;
            let client = start(config).await?;
            let history = client.history().await;
            client.shutdown().await;
            for entry in history? {
                println!("{}", history_line(&entry));
            }
            Ok(())
        }
    }
}

async fn start(config: ClientConfig) -> anyhow::Result<Client> {
    let path = config.store_path.display().to_string();
    Client::start(config)
        .await
        .with_context(|| format!("opening {path}"))
}

fn history_line(entry: &tacit_client::HistoryEntry) -> String {
    match entry.direction {
        Direction::Incoming => format!("{}: {}", entry.peer.user_id(), entry.text),
        Direction::Outgoing => format!(
            "you -> {}: {} [{}]",
            entry.peer.user_id(),
            entry.text,
            status_name(entry.status)
        ),
    }
}

fn status_name(status: Status) -> &'static str {
    match status {
        Status::Received => "received",
        Status::Sent => "sent",
        Status::Delivered => "delivered",
        Status::Read => "read",
    }
}

fn print_line(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

async fn recv(config: ClientConfig, wait: Option<u64>) -> anyhow::Result<()> {
    let mut client = start(config).await?;
    let deadline = wait.map(|s| tokio::time::Instant::now() + Duration::from_secs(s));
    // Without --wait, stop once the queue is drained (bounded anyway).
    let hard_deadline =
        deadline.unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(30));
    let mut outcome = Ok(());
    loop {
        let event = match tokio::time::timeout_at(hard_deadline, client.next_event()).await {
            Err(_) => {
                if deadline.is_none() {
                    outcome = Err(anyhow::anyhow!("the queue was not drained in time"));
                }
                break;
            }
            Ok(None) => break,
            Ok(Some(event)) => event,
        };
        match event {
            Event::Message(m) => print_line(&format!("{}: {}", m.sender.user_id(), m.text)),
            Event::QueueDrained { .. } if deadline.is_none() => break,
            Event::Stopped { error: Some(e) } => {
                outcome = Err(anyhow::anyhow!(e));
                break;
            }
            Event::Stopped { error: None } => break,
            other => note(&other),
        }
    }
    client.shutdown().await;
    outcome
}

/// Reports an event other than a message on stderr.
fn note(event: &Event) {
    match event {
        Event::Receipt {
            from,
            kind,
            message_ids,
        } => {
            let what = match kind {
                ReceiptKind::Delivered => "delivered to",
                ReceiptKind::Read => "read by",
            };
            eprintln!(
                "* {} message{} {what} {from}",
                message_ids.len(),
                if message_ids.len() == 1 { "" } else { "s" }
            );
        }
        Event::Disconnected { reason, retry_in } => {
            eprintln!("* disconnected ({reason}); retrying in {retry_in:.1?}");
        }
        Event::Dropped { reason, .. } => eprintln!("* a message could not be read: {reason}"),
        Event::Held { reason, .. } => eprintln!("* a message is held: {reason}"),
        Event::MessagesExpired { count } => eprintln!("* {count} messages expired at the relay"),
        _ => {}
    }
}

async fn chat(config: ClientConfig, mut peer: Option<String>) -> anyhow::Result<()> {
    let mut client = start(config).await?;
    let me = client.address().clone();
    eprintln!(
        "tacit-chat as {me}. Type a message, or /to PEER, /who, /safety PEER, /accept DEVICE, /history, /quit."
    );
    let (lines_tx, mut lines) = mpsc::channel::<String>(16);
    tokio::spawn(async move {
        let mut stdin = tokio::io::BufReader::new(tokio::io::stdin()).lines();
        while let Ok(Some(line)) = stdin.next_line().await {
            if lines_tx.send(line).await.is_err() {
                break;
            }
        }
    });
    // Messages sent in this session, for the receipt markers.
    let mut mine: Vec<(MessageId, String)> = Vec::new();
    // Users whose messages came under another user key, with that key.
    let mut held: Vec<(String, UserKey)> = Vec::new();
    let outcome = loop {
        tokio::select! {
            line = lines.recv() => {
                let Some(line) = line else { break Ok(()) };
                match command(&client, &mut peer, &mut mine, &mut held, line.trim()).await {
                    Ok(true) => {}
                    Ok(false) => break Ok(()),
                    Err(e) => eprintln!("! {e:#}"),
                }
            }
            event = client.next_event() => match event {
                None => break Ok(()),
                Some(Event::Message(m)) => {
                    print_line(&format!("{}: {}", m.sender.user_id(), m.text));
                    // Shown on screen: tell the sender it was read.
                    if let Err(e) = client
                        .send_read_receipt(m.sender.user_id(), vec![m.message_id])
                        .await
                    {
                        eprintln!("! read receipt not sent: {e}");
                    }
                    if peer.is_none() {
                        peer = Some(m.sender.user_id().to_owned());
                    }
                }
                Some(Event::Receipt { from, kind, message_ids }) => {
                    for id in message_ids {
                        if let Some((_, text)) = mine.iter().find(|(m, _)| *m == id) {
                            let mark = match kind {
                                ReceiptKind::Delivered => "delivered",
                                ReceiptKind::Read => "read",
                            };
                            print_line(&format!("  [{mark}] you -> {}: {text}", from.user_id()));
                        }
                    }
                }
                Some(Event::Held { user_id, user_key, safety_number, .. }) => {
                    eprintln!(
                        "* a message as {user_id} is held: it comes under another user key \
                         than the one trusted (an impersonation, or a new key). Safety number \
                         with that key: {}. Compare it with {user_id}'s, then /accept {user_id}",
                        group_digits(&safety_number)
                    );
                    if !held.iter().any(|(u, _)| *u == user_id) {
                        held.push((user_id, user_key));
                    }
                }
                Some(Event::Connected) => eprintln!("* connected"),
                Some(Event::Stopped { error: Some(e) }) => break Err(anyhow::anyhow!(e)),
                Some(Event::Stopped { error: None }) => break Ok(()),
                Some(other) => note(&other),
            },
        }
    };
    client.shutdown().await;
    outcome
}

/// Runs one input line; `Ok(false)` quits.
async fn command(
    client: &Client,
    peer: &mut Option<String>,
    mine: &mut Vec<(MessageId, String)>,
    held: &mut Vec<(String, UserKey)>,
    line: &str,
) -> anyhow::Result<bool> {
    if line.is_empty() {
        return Ok(true);
    }
    let (word, rest) = line.split_once(' ').unwrap_or((line, ""));
    let rest = rest.trim();
    match word {
        "/quit" | "/exit" => return Ok(false),
        "/to" => {
            if rest.is_empty() {
                bail!("usage: /to PEER");
            }
            *peer = Some(rest.to_owned());
            eprintln!("* talking to {rest}");
        }
        "/who" => {
            let mut users: Vec<String> = client
                .history()
                .await?
                .iter()
                .map(|h| h.peer.user_id().to_owned())
                .collect();
            users.sort();
            users.dedup();
            eprintln!(
                "* you are {}; talking to {}; known: {}",
                client.address(),
                peer.as_deref().unwrap_or("nobody (use /to PEER)"),
                if users.is_empty() {
                    "nobody yet".into()
                } else {
                    users.join(", ")
                }
            );
        }
        "/safety" => {
            let who = if rest.is_empty() {
                peer.clone().context("usage: /safety PEER")?
            } else {
                rest.to_owned()
            };
            let number = client.safety_number(&who).await?;
            eprintln!("* safety number with {who}: {}", group_digits(&number));
        }
        "/accept" => {
            let (user_id, user_key) = held
                .iter()
                .find(|(u, _)| u.as_str() == rest)
                .cloned()
                .context("usage: /accept USER, for a user whose held message was reported")?;
            let released = client.accept_user_key(&user_id, &user_key).await?;
            held.retain(|(u, _)| *u != user_id);
            eprintln!("* {user_id}'s new user key is trusted; {released} held message(s) released");
        }
        "/history" => {
            for entry in client.history().await? {
                eprintln!("  {}", history_line(&entry));
            }
        }
        _ if word.starts_with('/') => bail!("unknown command {word}"),
        _ => {
            let to = peer.clone().context("no peer yet: /to PEER first")?;
            let sent = client.send_text(&to, line).await?;
            print_line(&format!("  [sent] you -> {to}: {line}"));
            mine.push((sent.message_id, line.to_owned()));
        }
    }
    Ok(true)
}

/// A safety number as 12 groups of 5 digits.
fn group_digits(digits: &str) -> String {
    digits
        .as_bytes()
        .chunks(5)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}
