//! `tacit-chat`: a line-based chat over tacit, interactive or scripted.
//!
//! ```text
//! tacit-chat --store alice.db --relay wss://relay.example.org/v1 register alice
//! tacit-chat --store alice.db send bob "hello"      # bob may be offline
//! tacit-chat --store bob.db recv --wait 5            # "alice: hello"
//! tacit-chat --store alice.db send-file bob photo.jpg
//! tacit-chat --store bob.db recv --download-dir ~/Downloads  # "alice: [file] photo.jpg (...)"
//! tacit-chat --store alice.db chat                   # interactive
//! tacit-chat --store alice2.db link alice --device 2 # shows a code, waits
//! tacit-chat --store alice.db devices add CODE       # approves it
//! tacit-chat --store alice.db devices                # alice.1 (this device), alice.2
//! tacit-chat --store alice.db devices remove 2
//! tacit-chat --store alice.db group create team bob carol
//! tacit-chat --store alice.db group send team "hello team"
//! tacit-chat --store bob.db recv                     # "[team] alice: hello team"
//! tacit-chat --store alice.db group remove team carol
//! tacit-chat --store alice.db group list             # team (epoch 1, ...): alice (admin), bob
//! ```
//!
//! Received names, texts and file names are printed with control characters (terminal
//! escapes among them) and bidirectional overrides replaced by U+FFFD. The
//! copy of a message sent from another device of this user is printed as
//! `you (on NAME.N): TEXT`.
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
use rand_core::OsRng;
use tacit::error::StoreError;
use tacit::identity::{LinkCode, UserKey};
use tacit::Address;
use tacit_client::{
    link, recover, register, Backoff, Client, ClientConfig, ClientError, DeviceInfo, Direction,
    Event, FileRefusal, IncomingFile, MessageId, ReceiptKind, RecoveryCode, Registration,
    SavedFile, Status, StoreKey,
};
use tokio::io::AsyncBufReadExt as _;

mod group;
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
    /// Send the file at PATH (encrypted as it is read, uploaded to the
    /// relay; the message carries its key); it waits at the relay if PEER
    /// is offline.
    SendFile {
        /// The recipient's user name.
        peer: String,
        /// The file.
        path: PathBuf,
    },
    /// Print received messages, one `NAME: TEXT` line each; a file as
    /// `NAME: [file] FILENAME (N bytes)`.
    Recv {
        /// Keep listening this many seconds (default: stop once the queue
        /// is drained and the files downloaded).
        #[arg(long)]
        wait: Option<u64>,
        /// Download received files into DIR: each is saved only once it
        /// verifies, under a safe name, never over an existing file
        /// (`saved PATH` is printed).
        #[arg(long)]
        download_dir: Option<PathBuf>,
    },
    /// Link this store, a new device, to user NAME: prints a one-time code
    /// to enter on the user's first device (`devices add CODE`), waits for
    /// the approval, then registers.
    Link {
        /// The user name.
        name: String,
        /// This device's number (not 1, which is the first device's).
        #[arg(long)]
        device: u32,
        /// How long to wait for the approval, in seconds.
        #[arg(long, default_value_t = 300)]
        wait_secs: u64,
    },
    /// Print the user key's recovery code (on the first device). Keep it
    /// offline: it restores the user on a new device if this one is lost.
    RecoveryCode,
    /// Restore the user key from its recovery code onto this new device,
    /// which replaces the lost first device, and register it.
    Recover {
        /// The user name.
        name: String,
        /// This device's number (1 to take the lost device's place).
        #[arg(long, default_value_t = 1)]
        device: u32,
        /// The recovery code (64 hex digits; spaces and dashes ignored).
        #[arg(long)]
        code: String,
    },
    /// List this user's devices (with no subcommand), or add or remove one.
    /// Adding and removing are done on the user's first device.
    Devices {
        /// What to do.
        #[command(subcommand)]
        action: Option<DevicesCmd>,
    },
    /// Interactive chat: /to PEER, /who, /safety PEER, /accept USER,
    /// /devices, /link CODE, /remove N, /group GROUP TEXT, /groups,
    /// /file PATH, /history, /help, /quit.
    Chat {
        /// The first peer to talk to.
        peer: Option<String>,
        /// Download received files into DIR (as `recv --download-dir`).
        #[arg(long)]
        download_dir: Option<PathBuf>,
    },
    /// Print the safety number with PEER (one per pair of users).
    Safety {
        /// The peer's user name.
        peer: String,
    },
    /// Print the message history.
    History,
    /// Register URL as this device's push endpoint (an https URL from a
    /// push gateway, UnifiedPush or Web Push style): while this device is
    /// offline, the relay posts an empty wake-up there when mail arrives.
    /// With --clear, remove it.
    PushEndpoint {
        /// The endpoint URL.
        #[arg(required_unless_present = "clear", conflicts_with = "clear")]
        url: Option<String>,
        /// Remove the endpoint instead.
        #[arg(long)]
        clear: bool,
    },
    /// Draw a new delivery token for this device and set it at the relay:
    /// correspondents learn it from this device's next text to them, and
    /// until then submit logged in, within their quota.
    RotateToken,
    /// Groups: create, add, remove, leave, send, list.
    Group {
        /// What to do.
        #[command(subcommand)]
        action: group::GroupCmd,
    },
}

#[derive(Debug, Subcommand)]
enum DevicesCmd {
    /// Approve the new device that shows CODE (`tacit-chat link`).
    Add {
        /// The code the new device shows, e.g. ABCD-EFGH-IJKL-MNOP.
        code: String,
    },
    /// Remove device N of this user: nothing new reaches it.
    Remove {
        /// The device number.
        device: u32,
    },
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
            let r = register(&config, address)
                .await
                .map_err(|e| opening_error(e, &config.store_path.display().to_string()))?;
            report_registration(&r);
            if r.newly_registered {
                eprintln!(
                    "on this first device, run `tacit-chat recovery-code` once and keep the \
                     code offline: it restores {} if this device is lost",
                    r.address.user_id()
                );
            }
            Ok(())
        }
        Cmd::Link {
            name,
            device,
            wait_secs,
        } => {
            let address = Address::new(name.as_str(), *device).context("the name")?;
            let config = config(&args)?;
            let code = LinkCode::generate(&mut OsRng);
            print_line(&format!("link code: {code}"));
            print_line(&format!(
                "On your first device, run: tacit-chat devices add {code}"
            ));
            eprintln!("waiting up to {wait_secs} s for the approval...");
            let r = link(&config, address, &code, Duration::from_secs(*wait_secs)).await?;
            print_line(&format!("linked {}", r.address));
            report_registration(&r);
            Ok(())
        }
        Cmd::RecoveryCode => {
            let mut config = config(&args)?;
            config.receive = false;
            let client = start(config).await?;
            let code = client.recovery_code().await;
            client.shutdown().await;
            print_line(&format!("recovery code: {}", code?));
            eprintln!("keep it offline: whoever has it can add devices to this user");
            Ok(())
        }
        Cmd::Recover { name, device, code } => {
            let address = Address::new(name.as_str(), *device).context("the name")?;
            let code = RecoveryCode::parse(code)?;
            let config = config(&args)?;
            let r = recover(&config, address, &code).await?;
            print_line(&format!("recovered {}", r.address));
            report_registration(&r);
            Ok(())
        }
        Cmd::Devices { action } => {
            let mut config = config(&args)?;
            config.receive = false;
            let mut client = start(config).await?;
            let result = devices_command(&mut client, action.as_ref()).await;
            client.shutdown().await;
            for line in result? {
                print_line(&line);
            }
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
        Cmd::SendFile { peer, path } => {
            let mut config = config(&args)?;
            config.receive = false;
            let client = start(config).await?;
            let result = client.send_file(peer, path).await;
            client.shutdown().await;
            let sent = result?;
            let devices: Vec<String> = sent.stored_for.iter().map(ToString::to_string).collect();
            eprintln!("sent {} to {}", path.display(), devices.join(", "));
            for (address, e) in &sent.refused {
                eprintln!("not delivered to {address}: {e}");
            }
            Ok(())
        }
        Cmd::Recv { wait, download_dir } => {
            let mut config = config(&args)?;
            config.download_dir = download_dir.clone();
            recv(config, *wait).await
        }
        Cmd::Chat { peer, download_dir } => {
            let mut config = config(&args)?;
            config.download_dir = download_dir.clone();
            chat(config, peer.clone()).await
        }
        Cmd::Safety { peer } => {
            let mut config = config(&args)?;
            config.receive = false;
            let client = start(config).await?;
            let number = client.safety_number(peer).await;
            let sessions = client.sessions(peer).await;
            client.shutdown().await;
            println!("{peer}: {}", group_digits(&number?));
            for line in session_lines(&sessions?) {
                println!("{line}");
            }
            Ok(())
        }
        Cmd::Group { action } => {
            let mut config = config(&args)?;
            config.receive = false;
            let client = start(config).await?;
            let result = group::run(&client, action).await;
            client.shutdown().await;
            for line in result? {
                print_line(&line);
            }
            Ok(())
        }
        Cmd::PushEndpoint { url, .. } => {
            let mut config = config(&args)?;
            config.receive = false;
            let mut client = start(config).await?;
            let result = match connected(&mut client).await {
                Ok(()) => client
                    .set_push_endpoint(url.as_deref())
                    .await
                    .map_err(anyhow::Error::from),
                Err(e) => Err(e),
            };
            client.shutdown().await;
            result?;
            print_line(match url {
                Some(_) => "push endpoint set",
                None => "push endpoint cleared",
            });
            Ok(())
        }
        Cmd::RotateToken => {
            let mut config = config(&args)?;
            config.receive = false;
            let mut client = start(config).await?;
            let result = match connected(&mut client).await {
                Ok(()) => client
                    .rotate_delivery_token()
                    .await
                    .map_err(anyhow::Error::from),
                Err(e) => Err(e),
            };
            client.shutdown().await;
            result?;
            print_line("delivery token rotated");
            Ok(())
        }
        Cmd::History => {
            let mut config = config(&args)?;
            config.receive = false;
            let client = start(config).await?;
            let me = client.address().clone();
            let history = client.history().await;
            client.shutdown().await;
            for entry in history? {
                println!("{}", history_line(&me, &entry));
            }
            Ok(())
        }
    }
}

fn report_registration(r: &Registration) {
    eprintln!(
        "{} {} ({} one-time prekeys and {} one-time ML-KEM-1024 prekeys published)",
        if r.newly_registered {
            "registered"
        } else {
            "logged in again as"
        },
        r.address,
        r.one_time_prekeys,
        r.one_time_kem_prekeys
    );
}

/// One line per session with a peer's device: which key agreement started
/// it.
fn session_lines(sessions: &[tacit_client::PeerSession]) -> Vec<String> {
    sessions
        .iter()
        .map(|s| {
            let profile = match s.profile {
                tacit_client::SessionProfile::V2 => {
                    "tacit-v2 (PQXDH: X25519 + ML-KEM-1024, post-quantum hybrid)"
                }
                tacit_client::SessionProfile::V1 => "tacit-v1 (X3DH: X25519 only)",
                _ => "another profile",
            };
            format!("session with {}: {profile}", s.address)
        })
        .collect()
}

/// Runs `devices [add CODE | remove N]`; returns the lines to print.
async fn devices_command(
    client: &mut Client,
    action: Option<&DevicesCmd>,
) -> anyhow::Result<Vec<String>> {
    match action {
        None => Ok(client.devices().await?.iter().map(device_line).collect()),
        Some(DevicesCmd::Add { code }) => {
            let code = parse_code(code)?;
            connected(client).await?;
            Ok(vec![approve(client, &code).await?])
        }
        Some(DevicesCmd::Remove { device }) => {
            connected(client).await?;
            Ok(vec![remove(client, *device).await?])
        }
    }
}

/// Waits until the client has logged in (approving and removing need the
/// connection), or fails with the reason it stopped.
async fn connected(client: &mut Client) -> anyhow::Result<()> {
    loop {
        match client.next_event().await {
            Some(Event::Connected) => return Ok(()),
            Some(Event::Stopped { error: Some(e) }) => bail!(e),
            Some(Event::Stopped { error: None }) | None => bail!("the client stopped"),
            Some(other) => note(&other),
        }
    }
}

/// A command that needs the relay failed because the client is not
/// connected (or has stopped): say so.
fn offline(e: ClientError) -> anyhow::Error {
    match e {
        ClientError::Stopped => {
            anyhow::anyhow!("not connected to the relay (or the client stopped); try again")
        }
        other => other.into(),
    }
}

fn parse_code(code: &str) -> anyhow::Result<LinkCode> {
    LinkCode::parse(code).context("the link code (16 letters and digits)")
}

/// Approves the device showing `code`; returns the line to print.
async fn approve(client: &Client, code: &LinkCode) -> anyhow::Result<String> {
    let address = client.approve_link(code).await.map_err(offline)?;
    Ok(format!("linked {address}"))
}

/// Removes device `device` of this user; returns the line to print.
async fn remove(client: &Client, device: u32) -> anyhow::Result<String> {
    if device == client.address().device_id() {
        bail!("this is this device; remove another one");
    }
    client.remove_device(device).await.map_err(offline)?;
    Ok(format!("removed {}.{device}", client.address().user_id()))
}

fn device_line(d: &DeviceInfo) -> String {
    if d.this_device {
        format!("{} (this device)", d.address)
    } else {
        d.address.to_string()
    }
}

/// `text` with control characters (terminal escapes among them) and
/// bidirectional formatting characters replaced by U+FFFD, for printing
/// what a peer chose.
fn sanitize(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_control()
                || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
            {
                '\u{fffd}'
            } else {
                c
            }
        })
        .collect()
}

/// A received message as printed, sanitized: `NAME: TEXT`, or
/// `you (on NAME.N): TEXT` for the copy of a message this user sent from
/// another of their devices (the copy does not say to whom).
fn message_line(me: &Address, sender: &Address, text: &str) -> String {
    if sender.user_id() == me.user_id() {
        format!(
            "you (on {}): {}",
            sanitize(&sender.to_string()),
            sanitize(text)
        )
    } else {
        format!("{}: {}", sanitize(sender.user_id()), sanitize(text))
    }
}

/// A received file as printed, sanitized:
/// `NAME: [file] FILENAME (N bytes)`.
fn file_line(me: &Address, file: &IncomingFile) -> String {
    file_text_line(me, &file.sender, &file.name, file.size)
}

fn file_text_line(me: &Address, sender: &Address, name: &str, size: u64) -> String {
    message_line(me, sender, &format!("[file] {name} ({size} bytes)"))
}

/// A received file saved: `saved PATH` (the path sanitized).
fn saved_line(saved: &SavedFile) -> String {
    format!("saved {}", sanitize(&saved.path.display().to_string()))
}

/// A received file refused, sanitized.
fn refused_line(sender: &Address, name: &str, reason: &FileRefusal) -> String {
    format!(
        "* the file {} from {} was not saved: {reason}",
        sanitize(name),
        sanitize(sender.user_id())
    )
}

async fn start(config: ClientConfig) -> anyhow::Result<Client> {
    let path = config.store_path.display().to_string();
    Client::start(config)
        .await
        .map_err(|e| opening_error(e, &path))
}

/// The error of opening the store at `path`: in plain words when another
/// tacit-chat holds it (nothing was sent to the relay).
fn opening_error(e: ClientError, path: &str) -> anyhow::Error {
    match e {
        ClientError::Store(StoreError::InUse) => anyhow::anyhow!(
            "the store is in use by another tacit-chat ({path}): use that one, or stop it first"
        ),
        e => anyhow::Error::new(e).context(format!("opening {path}")),
    }
}

fn history_line(me: &Address, entry: &tacit_client::HistoryEntry) -> String {
    match entry.direction {
        Direction::Incoming => message_line(me, &entry.peer, &entry.text),
        Direction::Outgoing => format!(
            "you -> {}: {} [{}]",
            sanitize(entry.peer.user_id()),
            sanitize(&entry.text),
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
        _ => "?",
    }
}

fn print_line(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

async fn recv(config: ClientConfig, wait: Option<u64>) -> anyhow::Result<()> {
    let config_downloads = config.download_dir.is_some();
    let mut client = start(config).await?;
    let deadline = wait.map(|s| tokio::time::Instant::now() + Duration::from_secs(s));
    // Without --wait, stop once the queue is drained (bounded anyway).
    let hard_deadline =
        deadline.unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(30));
    let hard_deadline = if deadline.is_none() && config_downloads {
        // Downloads take longer than messages.
        hard_deadline + Duration::from_secs(270)
    } else {
        hard_deadline
    };
    let mut outcome = Ok(());
    // Files being downloaded, and whether the queue has drained: without
    // --wait, stop once both are done.
    let mut downloading: Vec<MessageId> = Vec::new();
    let mut drained = false;
    loop {
        let event = match tokio::time::timeout_at(hard_deadline, client.next_event()).await {
            Err(_) => {
                if deadline.is_none() {
                    outcome = Err(anyhow::anyhow!(if drained {
                        "the files were not downloaded in time"
                    } else {
                        "the queue was not drained in time"
                    }));
                }
                break;
            }
            Ok(None) => break,
            Ok(Some(event)) => event,
        };
        match event {
            Event::Message(m) => {
                first_contact_notice(&m);
                print_line(&message_line(client.address(), &m.sender, &m.text));
            }
            Event::GroupMessage(m) => print_line(&group::message_line(client.address(), &m)),
            Event::FileReceived(f) => {
                print_line(&file_line(client.address(), &f));
                if f.downloading {
                    downloading.push(f.message_id);
                }
            }
            Event::FileSaved(saved) => {
                print_line(&saved_line(&saved));
                downloading.retain(|id| *id != saved.message_id);
                if drained && downloading.is_empty() && deadline.is_none() {
                    break;
                }
            }
            Event::FileRefused {
                sender,
                message_id,
                name,
                reason,
            } => {
                eprintln!("{}", refused_line(&sender, &name, &reason));
                downloading.retain(|id| *id != message_id);
                if drained && downloading.is_empty() && deadline.is_none() {
                    break;
                }
            }
            Event::QueueDrained { .. } if deadline.is_none() => {
                drained = true;
                if downloading.is_empty() {
                    break;
                }
            }
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
    if group::note(event) {
        return;
    }
    match event {
        Event::Receipt {
            from,
            kind,
            message_ids,
        } => {
            let what = match kind {
                ReceiptKind::Delivered => "delivered to",
                ReceiptKind::Read => "read by",
                _ => "acknowledged by",
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
        Event::Held {
            user_id, reason, ..
        } => eprintln!(
            "* a message as {} is held: {reason} (see /accept in chat)",
            sanitize(user_id)
        ),
        Event::MessagesExpired { count } => eprintln!("* {count} messages expired at the relay"),
        _ => {}
    }
}

/// Says so when a message is the first from a user this device had never
/// met: its user key is trusted from now on, unverified until the safety
/// numbers are compared.
fn first_contact_notice(m: &tacit_client::IncomingMessage) {
    if m.first_contact {
        eprintln!(
            "* first contact with {}: compare safety numbers to verify it (tacit-chat safety {})",
            sanitize(m.sender.user_id()),
            sanitize(m.sender.user_id())
        );
    }
}

async fn chat(config: ClientConfig, mut peer: Option<String>) -> anyhow::Result<()> {
    let mut client = start(config).await?;
    let me = client.address().clone();
    eprintln!("tacit-chat as {me}. Type a message, or /help for the commands.");
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
                    first_contact_notice(&m);
                    print_line(&message_line(&me, &m.sender, &m.text));
                    // A copy of this user's own message is not answered.
                    if m.sender.user_id() != me.user_id() {
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
                }
                Some(Event::GroupMessage(m)) => print_line(&group::message_line(&me, &m)),
                Some(Event::FileReceived(f)) => print_line(&file_line(&me, &f)),
                Some(Event::FileSaved(saved)) => print_line(&saved_line(&saved)),
                Some(Event::FileRefused { sender, name, reason, .. }) => {
                    eprintln!("{}", refused_line(&sender, &name, &reason));
                }
                Some(Event::Receipt { from, kind, message_ids }) => {
                    for id in message_ids {
                        if let Some((_, text)) = mine.iter().find(|(m, _)| *m == id) {
                            let mark = match kind {
                                ReceiptKind::Delivered => "delivered",
                                ReceiptKind::Read => "read",
                                _ => "receipt",
                            };
                            print_line(&format!(
                                "  [{mark}] you -> {}: {}",
                                sanitize(from.user_id()),
                                sanitize(text)
                            ));
                        }
                    }
                }
                Some(Event::Held { user_id, user_key, safety_number, .. }) => {
                    let shown = sanitize(&user_id);
                    eprintln!(
                        "* a message as {shown} is held: it comes under another user key \
                         than the one trusted (an impersonation, or a new key). Safety number \
                         with that key: {}. Compare it with {shown}'s, then /accept {shown}",
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
            for line in session_lines(&client.sessions(&who).await?) {
                eprintln!("* {line}");
            }
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
        "/group" => {
            let (name, text) = rest.split_once(' ').context("usage: /group GROUP TEXT")?;
            let sent = client.send_group_text(name, text.trim()).await?;
            print_line(&format!(
                "  [sent] you -> [{}]: {}",
                sanitize(name),
                sanitize(text.trim())
            ));
            mine.push((sent.message_id, text.trim().to_owned()));
        }
        "/file" => {
            if rest.is_empty() {
                bail!("usage: /file PATH");
            }
            let to = peer.clone().context("no peer yet: /to PEER first")?;
            let sent = client.send_file(&to, rest).await?;
            let shown = format!("[file] {rest}");
            print_line(&format!("  [sent] you -> {to}: {shown}"));
            mine.push((sent.message_id, shown));
        }
        "/groups" => {
            for g in client.groups().await? {
                eprintln!("  {}", group::info_line(&g));
            }
        }
        "/history" => {
            for entry in client.history().await? {
                eprintln!("  {}", history_line(client.address(), &entry));
            }
        }
        "/devices" => {
            for device in client.devices().await? {
                eprintln!("  {}", device_line(&device));
            }
        }
        "/link" => {
            if rest.is_empty() {
                bail!("usage: /link CODE (the code the new device shows)");
            }
            eprintln!("* {}", approve(client, &parse_code(rest)?).await?);
        }
        "/remove" => {
            let device: u32 = rest.parse().context("usage: /remove N (a device number)")?;
            eprintln!("* {}", remove(client, device).await?);
        }
        "/help" => eprint!("{HELP}"),
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

/// The interactive commands, for `/help`.
const HELP: &str = "\
  TEXT            send TEXT to the current peer
  /to PEER        talk to PEER
  /who            who you are, who you talk to, who you know
  /safety [PEER]  the safety number with PEER (one per pair of users)
  /accept USER    trust USER's new user key, after a held message was
                  reported and the safety numbers were compared
  /devices        this user's devices
  /link CODE      approve the new device showing CODE (on the first device)
  /remove N       remove device N of this user (on the first device)
  /group G TEXT   send TEXT to group G (its name or id)
  /file PATH      send the file at PATH to the current peer
  /groups         your groups, their members and roles
  /history        the message history
  /help           this list
  /quit           leave
";

/// A safety number as 12 groups of 5 digits.
fn group_digits(digits: &str) -> String {
    digits
        .as_bytes()
        .chunks(5)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn received_file_names_are_printed_sanitized() {
        let me = Address::new("bob", 1).unwrap();
        let alice = Address::new("alice", 1).unwrap();
        assert_eq!(
            file_text_line(&me, &alice, "evil\u{1b}[2J\u{202e}txt.exe", 5),
            "alice: [file] evil\u{fffd}[2J\u{fffd}txt.exe (5 bytes)"
        );
        let other = Address::new("bob", 2).unwrap();
        assert_eq!(
            file_text_line(&me, &other, "a\nb", 1),
            "you (on bob.2): [file] a\u{fffd}b (1 bytes)"
        );
    }
}
