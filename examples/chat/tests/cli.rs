#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]
//! `tacit-chat` driven as a script against a relay on 127.0.0.1:
//! register, send while the peer is offline, recv --wait, safety numbers,
//! errors, and registering again against a fresh relay database with the
//! same stores; a second device linked with a code, then removed; and
//! strangers who register under or beside someone's name.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tacit_relay::{Config, Rate, Relay};

struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let dir = std::env::temp_dir().join(format!(
            "tacit-chat-test-{name}-{}-{nanos}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The test relay's name, passed to tacit-chat as `--server-name`.
const RELAY_NAME: &str = "chat-test-relay";

async fn relay(db: &Path) -> Relay {
    let mut c = Config::new(db);
    c.listen = "127.0.0.1:0".parse().unwrap();
    c.server_name = RELAY_NAME.into();
    c.unauthenticated_rate = Rate::new(10_000.0, 10_000);
    c.per_ip_rate = Rate::new(100_000.0, 100_000);
    c.authenticated_rate = Rate::new(10_000.0, 10_000);
    c.shutdown_grace = Duration::from_secs(2);
    Relay::bind(c).await.unwrap()
}

/// Runs tacit-chat with `args` against `relay`, off the async runtime.
async fn chat(dir: &Path, store: &str, relay: &Relay, args: &[&str]) -> Output {
    chat_at(dir, store, &format!("ws://{}/v1", relay.local_addr()), args).await
}

/// Runs tacit-chat with `args` against the relay at `url`.
async fn chat_at(dir: &Path, store: &str, url: &str, args: &[&str]) -> Output {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_tacit-chat"));
    command
        .arg("--store")
        .arg(dir.join(store))
        .arg("--relay")
        .arg(url)
        .arg("--server-name")
        .arg(RELAY_NAME)
        .args(args)
        .env_remove("TACIT_STORE_KEY");
    tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap()
}

/// Runs tacit-chat with `input` on its standard input.
async fn chat_with_input(
    dir: &Path,
    store: &str,
    relay: &Relay,
    args: &[&str],
    input: &str,
) -> Output {
    use std::io::Write as _;
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_tacit-chat"));
    command
        .arg("--store")
        .arg(dir.join(store))
        .arg("--relay")
        .arg(format!("ws://{}/v1", relay.local_addr()))
        .arg("--server-name")
        .arg(RELAY_NAME)
        .args(args)
        .env_remove("TACIT_STORE_KEY")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let input = input.to_owned();
    tokio::task::spawn_blocking(move || {
        let mut child = command.spawn().unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    })
    .await
    .unwrap()
}

/// Starts `tacit-chat ... link NAME --device N` in the background and
/// returns it with the code read from its first line of output.
async fn start_link(
    dir: &Path,
    store: &str,
    relay: &Relay,
    name: &str,
    device: u32,
) -> (
    std::process::Child,
    String,
    std::io::BufReader<std::process::ChildStdout>,
) {
    use std::io::BufRead as _;
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_tacit-chat"));
    command
        .arg("--store")
        .arg(dir.join(store))
        .arg("--relay")
        .arg(format!("ws://{}/v1", relay.local_addr()))
        .arg("--server-name")
        .arg(RELAY_NAME)
        .args([
            "link",
            name,
            "--device",
            &device.to_string(),
            "--wait-secs",
            "30",
        ])
        .env_remove("TACIT_STORE_KEY")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    tokio::task::spawn_blocking(move || {
        let mut child = command.spawn().unwrap();
        let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut first = String::new();
        stdout.read_line(&mut first).unwrap();
        let code = first
            .strip_prefix("link code: ")
            .unwrap_or_else(|| panic!("unexpected first line {first:?}"))
            .trim()
            .to_owned();
        let mut second = String::new();
        stdout.read_line(&mut second).unwrap();
        assert_eq!(
            second.trim(),
            format!("On your first device, run: tacit-chat devices add {code}")
        );
        (child, code, stdout)
    })
    .await
    .unwrap()
}

fn ok(output: &Output) -> String {
    assert!(
        output.status.success(),
        "status {:?}, stderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout.clone()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scripted_conversation_survives_a_fresh_relay_database() {
    let dir = TempDir::new("script");
    let d = dir.0.as_path();
    let relay1 = relay(&d.join("relay1.db")).await;

    ok(&chat(d, "alice.db", &relay1, &["register", "alice"]).await);
    ok(&chat(d, "bob.db", &relay1, &["register", "bob"]).await);
    // The key file is private to its owner.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(d.join("alice.db.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    // Bob is offline: the messages wait at the relay.
    ok(&chat(d, "alice.db", &relay1, &["send", "bob", "hello bob"]).await);
    ok(&chat(d, "alice.db", &relay1, &["send", "bob", "are you there?"]).await);
    let out = ok(&chat(d, "bob.db", &relay1, &["recv", "--wait", "1"]).await);
    assert_eq!(out, "alice: hello bob\nalice: are you there?\n");
    // Nothing is shown twice.
    let out = ok(&chat(d, "bob.db", &relay1, &["recv"]).await);
    assert_eq!(out, "");

    ok(&chat(d, "bob.db", &relay1, &["send", "alice", "yes, here"]).await);
    let out = ok(&chat(d, "alice.db", &relay1, &["recv"]).await);
    assert_eq!(out, "bob: yes, here\n");

    // Both sides compute the same safety number.
    let a = ok(&chat(d, "alice.db", &relay1, &["safety", "bob"]).await);
    let b = ok(&chat(d, "bob.db", &relay1, &["safety", "alice"]).await);
    let number = |s: &str| {
        let first = s.lines().next().unwrap();
        first.split_once(": ").unwrap().1.trim().to_owned()
    };
    assert_eq!(number(&a), number(&b));
    assert_eq!(number(&a).chars().filter(char::is_ascii_digit).count(), 60);
    // And name the profile of their session: tacit-v2 by default.
    assert!(a.contains("session with bob.1: tacit-v2"), "{a}");
    assert!(b.contains("session with alice.1: tacit-v2"), "{b}");

    // Shown as 12 groups of 5 digits.
    let shown = number(&a);
    let groups: Vec<&str> = shown.split(' ').collect();
    assert_eq!(groups.len(), 12, "{a}");
    assert!(groups
        .iter()
        .all(|g| g.len() == 5 && g.bytes().all(|b| b.is_ascii_digit())));

    // The relay's URL without its path (`/v1`) reaches it all the same.
    for url in [
        format!("ws://{}", relay1.local_addr()),
        format!("ws://{}/", relay1.local_addr()),
    ] {
        ok(&chat_at(d, "alice.db", &url, &["send", "bob", "no path"]).await);
    }
    let out = ok(&chat(d, "bob.db", &relay1, &["recv"]).await);
    assert_eq!(out, "alice: no path\nalice: no path\n");

    // Errors are clear and exit with status 1.
    let unknown = chat(d, "alice.db", &relay1, &["send", "carol", "hi"]).await;
    assert_eq!(unknown.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("unknown user: carol"));
    let unregistered = chat(d, "nobody.db", &relay1, &["recv"]).await;
    assert_eq!(unregistered.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&unregistered.stderr).contains("register first"));
    let usage = chat(d, "alice.db", &relay1, &["send", "bob"]).await;
    assert_eq!(usage.status.code(), Some(2));

    // The interactive mode, fed a few lines.
    let out = chat_with_input(
        d,
        "alice.db",
        &relay1,
        &["chat", "bob"],
        "typed interactively\n/who\n/nonsense\n/quit\n",
    )
    .await;
    let stdout = ok(&out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stdout.contains("[sent] you -> bob: typed interactively"),
        "{stdout}"
    );
    assert!(stderr.contains("talking to bob; known: bob"), "{stderr}");
    assert!(stderr.contains("unknown command /nonsense"), "{stderr}");
    let out = ok(&chat(d, "bob.db", &relay1, &["recv"]).await);
    assert_eq!(out, "alice: typed interactively\n");
    relay1.shutdown().await.unwrap();

    // A fresh relay database: register again with the same stores; the
    // identities and sessions carry on.
    let relay2 = relay(&d.join("relay2.db")).await;
    let again = chat(d, "alice.db", &relay2, &["register", "alice"]).await;
    ok(&again);
    assert!(String::from_utf8_lossy(&again.stderr).contains("registered alice.1"));
    ok(&chat(d, "bob.db", &relay2, &["register", "bob"]).await);
    ok(&chat(
        d,
        "alice.db",
        &relay2,
        &["send", "bob", "new relay, same us"],
    )
    .await);
    let out = ok(&chat(d, "bob.db", &relay2, &["recv", "--wait", "1"]).await);
    assert_eq!(out, "alice: new relay, same us\n");
    let history = ok(&chat(d, "alice.db", &relay2, &["history"]).await);
    assert!(
        history.contains("you -> bob: hello bob [delivered]"),
        "{history}"
    );
    assert!(history.contains("bob: yes, here"), "{history}");
    relay2.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_linked_device_receives_until_it_is_removed() {
    use std::io::Read as _;
    let dir = TempDir::new("link");
    let d = dir.0.as_path();
    let relay = relay(&d.join("relay.db")).await;
    ok(&chat(d, "alice.db", &relay, &["register", "alice"]).await);
    ok(&chat(d, "bob.db", &relay, &["register", "bob"]).await);

    // The new device shows a code and waits; the first device approves it.
    let (mut child, code, mut stdout) = start_link(d, "alice2.db", &relay, "alice", 2).await;
    assert_eq!(code.len(), 19, "{code}");
    let added = ok(&chat(d, "alice.db", &relay, &["devices", "add", &code]).await);
    assert_eq!(added, "linked alice.2\n");
    let (status, rest, stderr) = tokio::task::spawn_blocking(move || {
        let mut rest = String::new();
        stdout.read_to_string(&mut rest).unwrap();
        let mut stderr = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut stderr)
            .unwrap();
        (child.wait().unwrap(), rest, stderr)
    })
    .await
    .unwrap();
    assert!(status.success(), "{status:?}: {stderr}");
    assert_eq!(rest, "linked alice.2\n");
    assert!(stderr.contains("registered alice.2"), "{stderr}");
    // A code is used once.
    let again = chat(d, "alice.db", &relay, &["devices", "add", &code]).await;
    assert_eq!(again.status.code(), Some(1));
    let bad = chat(d, "alice.db", &relay, &["devices", "add", "not-a-code"]).await;
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("the link code"));

    // Both devices see the same list, each marking itself.
    let list = ok(&chat(d, "alice.db", &relay, &["devices"]).await);
    assert_eq!(list, "alice.1 (this device)\nalice.2\n");
    let list = ok(&chat(d, "alice2.db", &relay, &["devices"]).await);
    assert_eq!(list, "alice.1\nalice.2 (this device)\n");

    // Bob's message reaches both of Alice's devices; what a peer typed is
    // printed without its control characters.
    ok(&chat(d, "bob.db", &relay, &["send", "alice", "hi both"]).await);
    ok(&chat(
        d,
        "bob.db",
        &relay,
        &["send", "alice", "\x1b[2Jred\x07\u{202e}"],
    )
    .await);
    let expected = "bob: hi both\nbob: \u{fffd}[2Jred\u{fffd}\u{fffd}\n";
    assert_eq!(ok(&chat(d, "alice.db", &relay, &["recv"]).await), expected);
    assert_eq!(ok(&chat(d, "alice2.db", &relay, &["recv"]).await), expected);

    // What Alice sends from one device is copied to the other, which shows
    // it as hers.
    ok(&chat(d, "alice.db", &relay, &["send", "bob", "from the first"]).await);
    assert_eq!(
        ok(&chat(d, "bob.db", &relay, &["recv"]).await),
        "alice: from the first\n"
    );
    assert_eq!(
        ok(&chat(d, "alice2.db", &relay, &["recv"]).await),
        "you (on alice.1): from the first\n"
    );

    // The interactive commands.
    let out = chat_with_input(
        d,
        "alice.db",
        &relay,
        &["chat", "bob"],
        "/help\n/devices\n/link nonsense\n/remove x\n/quit\n",
    )
    .await;
    ok(&out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    for expected in [
        "/to PEER",
        "/who",
        "/safety [PEER]",
        "/accept USER",
        "/devices",
        "/link CODE",
        "/remove N",
        "/history",
        "/help",
        "/quit",
        "  alice.1 (this device)\n  alice.2\n",
        "the link code",
        "usage: /remove N",
    ] {
        assert!(
            stderr.contains(expected),
            "missing {expected:?} in {stderr}"
        );
    }
    assert!(!stderr.contains("/reject"), "{stderr}");

    // Removed: the first device still receives, the second nothing more.
    let removed = ok(&chat(d, "alice.db", &relay, &["devices", "remove", "2"]).await);
    assert_eq!(removed, "removed alice.2\n");
    assert_eq!(
        ok(&chat(d, "alice.db", &relay, &["devices"]).await),
        "alice.1 (this device)\n"
    );
    ok(&chat(d, "bob.db", &relay, &["send", "alice", "only the first"]).await);
    assert_eq!(
        ok(&chat(d, "alice.db", &relay, &["recv"]).await),
        "bob: only the first\n"
    );
    let gone = chat(d, "alice2.db", &relay, &["recv"]).await;
    assert_eq!(String::from_utf8_lossy(&gone.stdout), "");
    assert_eq!(gone.status.code(), Some(1), "{gone:?}");
    // The relay deleted its registration with the list that removed it.
    assert!(
        String::from_utf8_lossy(&gone.stderr).contains("UnknownDevice"),
        "{gone:?}"
    );
    relay.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strangers_cannot_join_a_user_or_a_fan_out() {
    let dir = TempDir::new("stranger");
    let d = dir.0.as_path();
    let relay = relay(&d.join("relay.db")).await;
    ok(&chat(d, "alice.db", &relay, &["register", "alice"]).await);
    ok(&chat(d, "bob.db", &relay, &["register", "bob"]).await);

    // A fresh store cannot register as another device of a taken name.
    let ghost = chat(
        d,
        "ghost.db",
        &relay,
        &["register", "alice", "--device", "2"],
    )
    .await;
    assert_eq!(ghost.status.code(), Some(1), "{ghost:?}");
    let stderr = String::from_utf8_lossy(&ghost.stderr);
    assert!(stderr.contains("UserKeyMismatch"), "{stderr}");
    let ghost = chat(
        d,
        "ghost-bob.db",
        &relay,
        &["register", "bob", "--device", "99"],
    )
    .await;
    assert_eq!(ghost.status.code(), Some(1), "{ghost:?}");

    // Bob writes to Alice: only Alice reads it.
    ok(&chat(d, "bob.db", &relay, &["send", "alice", "for alice"]).await);
    // The ghost's store is not registered anywhere: its recv fails.
    let out = chat(d, "ghost.db", &relay, &["recv"]).await;
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("for alice"),
        "{out:?}"
    );
    assert_eq!(
        ok(&chat(d, "alice.db", &relay, &["recv"]).await),
        "bob: for alice\n"
    );

    // A lookalike name is free to register and to write to Bob, but
    // writing does not put it among Bob's devices.
    ok(&chat(d, "lookalike.db", &relay, &["register", "bob.99"]).await);
    ok(&chat(d, "lookalike.db", &relay, &["send", "bob", "hello bob"]).await);
    let received = chat(d, "bob.db", &relay, &["recv"]).await;
    assert_eq!(ok(&received), "bob.99: hello bob\n");
    // ... reported as a first contact with a user never met before.
    assert!(
        String::from_utf8_lossy(&received.stderr).contains("first contact with bob.99"),
        "{}",
        String::from_utf8_lossy(&received.stderr)
    );
    ok(&chat(
        d,
        "bob.db",
        &relay,
        &["send", "alice", "after the lookalike"],
    )
    .await);
    let out = ok(&chat(d, "lookalike.db", &relay, &["recv", "--wait", "1"]).await);
    assert!(!out.contains("after the lookalike"), "{out}");
    assert_eq!(out, "");
    assert_eq!(
        ok(&chat(d, "alice.db", &relay, &["recv"]).await),
        "bob: after the lookalike\n"
    );
    relay.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_first_device_comes_back_from_its_recovery_code() {
    let dir = TempDir::new("recovery");
    let d = dir.0.as_path();
    let relay = relay(&d.join("relay.db")).await;
    let registered = chat(d, "alice.db", &relay, &["register", "alice"]).await;
    ok(&registered);
    assert!(
        String::from_utf8_lossy(&registered.stderr).contains("tacit-chat recovery-code"),
        "{registered:?}"
    );
    ok(&chat(d, "bob.db", &relay, &["register", "bob"]).await);
    let out = ok(&chat(d, "alice.db", &relay, &["recovery-code"]).await);
    let code = out
        .strip_prefix("recovery code: ")
        .and_then(|c| c.strip_suffix('\n'))
        .unwrap_or_else(|| panic!("{out}"))
        .to_owned();
    ok(&chat(d, "bob.db", &relay, &["send", "alice", "before"]).await);
    let safety = ok(&chat(d, "bob.db", &relay, &["safety", "alice"]).await);

    // alice.db is lost; a new store takes its place with the code.
    let wrong = chat(
        d,
        "new.db",
        &relay,
        &["recover", "alice", "--code", &"0".repeat(64)],
    )
    .await;
    assert_eq!(wrong.status.code(), Some(1), "{wrong:?}");
    let out = ok(&chat(
        d,
        "alice-new.db",
        &relay,
        &["recover", "alice", "--code", &code],
    )
    .await);
    assert_eq!(out, "recovered alice.1\n");
    ok(&chat(d, "bob.db", &relay, &["send", "alice", "after"]).await);
    assert_eq!(
        ok(&chat(d, "alice-new.db", &relay, &["recv"]).await),
        "bob: after\n"
    );
    // Same user key: the same safety number for Bob.
    assert_eq!(
        ok(&chat(d, "bob.db", &relay, &["safety", "alice"]).await),
        safety
    );
    relay.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_is_created_used_and_a_member_removed_from_the_command_line() {
    let dir = TempDir::new("group");
    let d = dir.0.as_path();
    let relay = relay(&d.join("relay.db")).await;
    for name in ["alice", "bob", "carol"] {
        ok(&chat(d, &format!("{name}.db"), &relay, &["register", name]).await);
    }
    let created = ok(&chat(
        d,
        "alice.db",
        &relay,
        &["group", "create", "team", "bob", "carol"],
    )
    .await);
    assert!(
        created.starts_with("created team (epoch 0, id "),
        "{created}"
    );
    assert!(
        created.ends_with("): alice (admin), bob, carol\n"),
        "{created}"
    );
    ok(&chat(
        d,
        "alice.db",
        &relay,
        &["group", "send", "team", "hello team"],
    )
    .await);
    for store in ["bob.db", "carol.db"] {
        let out = chat(d, store, &relay, &["recv"]).await;
        assert_eq!(ok(&out), "[team] alice: hello team\n");
        let notes = String::from_utf8_lossy(&out.stderr);
        assert!(
            notes.contains("[team] created with alice, bob, carol by alice.1"),
            "{notes}"
        );
    }
    ok(&chat(
        d,
        "bob.db",
        &relay,
        &["group", "send", "team", "hi from bob"],
    )
    .await);
    assert_eq!(
        ok(&chat(d, "carol.db", &relay, &["recv"]).await),
        "[team] bob: hi from bob\n"
    );

    // A plain member cannot remove; the admin can, and the removed member
    // reads nothing after it.
    let refused = chat(d, "bob.db", &relay, &["group", "remove", "team", "carol"]).await;
    assert_eq!(refused.status.code(), Some(1));
    ok(&chat(d, "alice.db", &relay, &["group", "remove", "team", "carol"]).await);
    ok(&chat(
        d,
        "alice.db",
        &relay,
        &["group", "send", "team", "carol is gone"],
    )
    .await);
    let out = chat(d, "carol.db", &relay, &["recv"]).await;
    assert_eq!(ok(&out), "");
    let notes = String::from_utf8_lossy(&out.stderr);
    assert!(
        notes.contains("removed carol by alice.1 (you are no longer a member)"),
        "{notes}"
    );
    let out = ok(&chat(d, "bob.db", &relay, &["recv"]).await);
    assert_eq!(
        out,
        "[team] alice: hi from bob\n".replace("alice: hi from bob", "alice: carol is gone")
    );
    let list = ok(&chat(d, "alice.db", &relay, &["group", "list"]).await);
    assert!(list.starts_with("team (epoch 1, id "), "{list}");
    assert!(list.ends_with("): alice (admin), bob\n"), "{list}");
    let list = ok(&chat(d, "carol.db", &relay, &["group", "list"]).await);
    assert!(list.contains(" [left]: alice (admin), bob\n"), "{list}");

    // A title with a terminal escape is refused at creation; one with a
    // bidirectional override is printed defused.
    let escape = chat(
        d,
        "alice.db",
        &relay,
        &["group", "create", "x\u{1b}[2Jy", "bob"],
    )
    .await;
    assert_eq!(escape.status.code(), Some(1));
    ok(&chat(
        d,
        "alice.db",
        &relay,
        &["group", "create", "x\u{202e}y", "bob"],
    )
    .await);
    ok(&chat(
        d,
        "alice.db",
        &relay,
        &["group", "send", "x\u{202e}y", "boo"],
    )
    .await);
    let out = ok(&chat(d, "bob.db", &relay, &["recv"]).await);
    assert_eq!(out, "[x\u{fffd}y] alice: boo\n");
}

/// A local push gateway: answers every request 201 and sends its head.
async fn gateway() -> (String, tokio::sync::mpsc::UnboundedReceiver<String>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/up/bob", listener.local_addr().unwrap());
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 1024];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let _ = tx.send(String::from_utf8_lossy(&buf).into_owned());
                let _ = s
                    .write_all(b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n")
                    .await;
            });
        }
    });
    (url, rx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offline_device_with_a_push_endpoint_is_woken() {
    let dir = TempDir::new("push");
    let d = dir.0.as_path();
    let mut c = Config::new(d.join("relay.db"));
    c.listen = "127.0.0.1:0".parse().unwrap();
    c.server_name = RELAY_NAME.into();
    c.shutdown_grace = Duration::from_secs(2);
    c.allow_http_push = true;
    c.allow_private_push = true;
    c.push_coalesce = Duration::from_millis(10);
    let relay = Relay::bind(c).await.unwrap();
    let (url, mut wakeups) = gateway().await;

    ok(&chat(d, "alice.db", &relay, &["register", "alice"]).await);
    ok(&chat(d, "bob.db", &relay, &["register", "bob"]).await);
    let out = ok(&chat(d, "bob.db", &relay, &["push-endpoint", &url]).await);
    assert_eq!(out, "push endpoint set\n");
    ok(&chat(d, "alice.db", &relay, &["send", "bob", "wake up"]).await);
    let head = tokio::time::timeout(Duration::from_secs(20), wakeups.recv())
        .await
        .expect("no wake-up")
        .unwrap();
    assert!(head.starts_with("POST /up/bob HTTP/1.1\r\n"), "{head}");
    assert!(!head.contains("alice"), "{head}");
    let out = ok(&chat(d, "bob.db", &relay, &["recv"]).await);
    assert_eq!(out, "alice: wake up\n");

    // Cleared, and refused when not https on a relay that wants https.
    let out = ok(&chat(d, "bob.db", &relay, &["push-endpoint", "--clear"]).await);
    assert_eq!(out, "push endpoint cleared\n");
    let refused = chat(d, "bob.db", &relay, &["push-endpoint", "ftp://x/y"]).await;
    assert!(!refused.status.success());
    relay.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_is_sent_and_saved_from_the_command_line() {
    let dir = TempDir::new("file");
    let d = dir.0.as_path();
    let relay = relay(&d.join("relay.db")).await;
    ok(&chat(d, "alice.db", &relay, &["register", "alice"]).await);
    ok(&chat(d, "bob.db", &relay, &["register", "bob"]).await);

    let plain: Vec<u8> = (0..300_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let source = d.join("notes.bin");
    std::fs::write(&source, &plain).unwrap();
    // Bob is offline: the file waits at the relay.
    ok(&chat(
        d,
        "alice.db",
        &relay,
        &["send-file", "bob", source.to_str().unwrap()],
    )
    .await);
    ok(&chat(d, "alice.db", &relay, &["send", "bob", "did you get it?"]).await);

    let downloads = d.join("downloads");
    std::fs::create_dir(&downloads).unwrap();
    let out = ok(&chat(
        d,
        "bob.db",
        &relay,
        &["recv", "--download-dir", downloads.to_str().unwrap()],
    )
    .await);
    let saved = downloads.join("notes.bin");
    // The download runs beside the messages: the saved line may come
    // before or after the text.
    let mut lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines.first(),
        Some(&"alice: [file] notes.bin (300000 bytes)"),
        "{out}"
    );
    lines.sort_unstable();
    let saved_line = format!("saved {}", saved.display());
    assert_eq!(
        lines,
        [
            "alice: [file] notes.bin (300000 bytes)",
            "alice: did you get it?",
            saved_line.as_str()
        ],
        "{out}"
    );
    assert!(
        std::fs::read(&saved).unwrap() == plain,
        "the saved file differs"
    );
    // Nothing is shown or saved twice.
    let out = ok(&chat(
        d,
        "bob.db",
        &relay,
        &["recv", "--download-dir", downloads.to_str().unwrap()],
    )
    .await);
    assert_eq!(out, "");
    assert_eq!(std::fs::read_dir(&downloads).unwrap().count(), 1);

    // A missing file is an error, and nothing is sent.
    let missing = chat(
        d,
        "alice.db",
        &relay,
        &["send-file", "bob", d.join("nope").to_str().unwrap()],
    )
    .await;
    assert_eq!(missing.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("attachment"),
        "{}",
        String::from_utf8_lossy(&missing.stderr)
    );
    let out = ok(&chat(d, "bob.db", &relay, &["recv"]).await);
    assert_eq!(out, "");
    relay.shutdown().await.unwrap();
}
