#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]
//! Which relay the client talks to: plain `ws://` only to this machine,
//! `wss://` checked against the configured CA file, and logins signed only
//! for the configured relay name.

mod common;

use std::path::PathBuf;

use common::*;
use tacit_client::{register, Client, ClientConfig, ClientError, Event};
use tacit_relay::{Relay, TlsFiles};
use tacit_testkit::relay::TcpClient;

/// The next `Stopped` event's error, failing on a `Connected` before it:
/// the client must give up without logging in.
async fn stopped_without_login(client: &mut Client) -> String {
    loop {
        let event = tokio::time::timeout(WAIT, client.next_event())
            .await
            .expect("no event in time")
            .expect("no Stopped event");
        match event {
            Event::Stopped { error } => return error.expect("stopped with an error"),
            Event::Connected => panic!("logged in"),
            _ => {}
        }
    }
}

#[tokio::test]
async fn plain_ws_to_another_host_is_refused_before_connecting() {
    let dir = TempDir::new("plaintext");
    let relay_db = dir.path("relay.db");
    let relay = start_relay(&relay_db).await;
    let registered = registered(&dir, "alice", relay.local_addr()).await;
    relay.shutdown().await.unwrap();

    // `register` refuses before it creates a store.
    let mut config = client_config(&dir, "bob", "127.0.0.1:1".parse().unwrap());
    config.relay_url = "ws://example.invalid/v1".into();
    match register(&config, addr("bob", 1)).await {
        Err(ClientError::PlaintextRelay { host }) => assert_eq!(host, "example.invalid"),
        other => panic!("{other:?}"),
    }
    assert!(!config.store_path.exists());

    // `Client::start` refuses at once, with a registered store.
    let mut config = registered;
    config.relay_url = "ws://example.invalid/v1".into();
    match Client::start(config).await {
        Err(ClientError::PlaintextRelay { host }) => assert_eq!(host, "example.invalid"),
        other => panic!("{other:?}"),
    }

    // The default name is the URL's host.
    let config = ClientConfig::new(
        dir.path("carol.db"),
        tacit_client::StoreKey::load_or_create(dir.path("carol.db.key")).unwrap(),
        "wss://Relay.Example.invalid:8443/v1",
    );
    assert_eq!(config.server_name, "relay.example.invalid");
    assert_eq!(config.ca_file, None);
}

#[tokio::test]
async fn a_relay_announcing_another_name_gets_no_signature() {
    let dir = TempDir::new("server-name");
    let relay_db = dir.path("relay.db");
    let mut relay_config = relay_config(&relay_db, "127.0.0.1:0".parse().unwrap());
    relay_config.server_name = "relay-a".into();
    let relay = Relay::bind(relay_config).await.unwrap();

    // A client configured for relay B meets relay A: it asks for the
    // challenge, sees the name, and signs nothing.
    let mut config = client_config(&dir, "alice", relay.local_addr());
    config.server_name = "relay-b".into();
    match register(&config, addr("alice", 1)).await {
        Err(ClientError::ServerNameMismatch {
            configured,
            announced,
        }) => {
            assert_eq!(configured, "relay-b");
            assert_eq!(announced, "relay-a");
        }
        other => panic!("{other:?}"),
    }
    let page = metrics(&relay).await;
    assert_eq!(requests(&page, "get_challenge", false), 1, "{page}");
    assert_eq!(requests(&page, "register", false), 0, "{page}");

    // Registered under the right name, then started with the wrong one:
    // the client stops (retrying cannot help) without logging in.
    config.server_name = "relay-a".into();
    register(&config, addr("alice", 1)).await.unwrap();
    config.server_name = "relay-b".into();
    let mut client = Client::start(config).await.unwrap();
    let error = stopped_without_login(&mut client).await;
    assert!(
        error.contains("relay-a") && error.contains("relay-b"),
        "{error}"
    );
    let page = metrics(&relay).await;
    assert_eq!(requests(&page, "login", false), 0, "{page}");
    client.shutdown().await;
    relay.shutdown().await.unwrap();
}

/// A relay serving TLS only, with a fresh self-signed certificate for
/// 127.0.0.1, whose PEM file is returned.
async fn tls_relay(dir: &TempDir) -> (Relay, PathBuf) {
    let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into()]).unwrap();
    let cert_path = dir.path("relay-cert.pem");
    let key_path = dir.path("relay-key.pem");
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.key_pair.serialize_pem()).unwrap();
    let mut config = relay_config(&dir.path("relay.db"), "127.0.0.1:0".parse().unwrap());
    config.tls = Some(TlsFiles {
        cert: cert_path.clone(),
        key: key_path,
    });
    (Relay::bind(config).await.unwrap(), cert_path)
}

/// A client config for the TLS relay, trusting `ca_file` if given.
fn tls_config(dir: &TempDir, name: &str, relay: &Relay, ca_file: Option<PathBuf>) -> ClientConfig {
    let mut config = client_config(dir, name, relay.local_addr());
    config.relay_url = format!("wss://{}/v1", relay.local_addr());
    config.ca_file = ca_file;
    config
}

#[tokio::test]
async fn wss_round_trip_with_the_configured_ca() {
    let dir = TempDir::new("wss");
    let (relay, ca) = tls_relay(&dir).await;

    // The relay speaks only TLS: plain WebSocket on its port fails.
    assert!(
        tokio::time::timeout(WAIT, TcpClient::try_connect(relay.local_addr()))
            .await
            .unwrap()
            .is_err()
    );

    let alice = tls_config(&dir, "alice", &relay, Some(ca.clone()));
    let bob = tls_config(&dir, "bob", &relay, Some(ca));
    assert!(
        register(&alice, addr("alice", 1))
            .await
            .unwrap()
            .newly_registered
    );
    assert!(
        register(&bob, addr("bob", 1))
            .await
            .unwrap()
            .newly_registered
    );

    let mut alice = Client::start(alice).await.unwrap();
    let mut bob = Client::start(bob).await.unwrap();
    drained(&mut alice).await;
    drained(&mut bob).await;
    // Submissions and bundle fetches go over the anonymous connection,
    // also TLS.
    let sent = alice.send_text("bob", "over tls").await.unwrap();
    assert_eq!(sent.stored_for, vec![addr("bob", 1)]);
    assert_eq!(next_text(&mut bob).await, "over tls");
    bob.send_text("alice", "and back").await.unwrap();
    assert_eq!(next_text(&mut alice).await, "and back");
    alice.shutdown().await;
    bob.shutdown().await;
    relay.shutdown().await.unwrap();
}

#[tokio::test]
async fn wss_without_the_ca_fails_the_handshake() {
    let dir = TempDir::new("wss-untrusted");
    let (relay, ca) = tls_relay(&dir).await;

    // The platform's roots do not hold the test certificate.
    let config = tls_config(&dir, "alice", &relay, None);
    match register(&config, addr("alice", 1)).await {
        Err(ClientError::Tls(e)) => assert!(e.contains("certificate"), "{e}"),
        other => panic!("{other:?}"),
    }

    // Nor does another CA file.
    let other = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into()]).unwrap();
    let other_path = dir.path("other-ca.pem");
    std::fs::write(&other_path, other.cert.pem()).unwrap();
    let config = tls_config(&dir, "alice", &relay, Some(other_path));
    match register(&config, addr("alice", 1)).await {
        Err(ClientError::Tls(e)) => assert!(e.contains("certificate"), "{e}"),
        other => panic!("{other:?}"),
    }

    // A registered client that loses its CA file stops without logging in.
    let mut config = tls_config(&dir, "alice", &relay, Some(ca));
    register(&config, addr("alice", 1)).await.unwrap();
    config.ca_file = None;
    let mut client = Client::start(config).await.unwrap();
    let error = stopped_without_login(&mut client).await;
    assert!(error.starts_with("tls:"), "{error}");
    client.shutdown().await;
    relay.shutdown().await.unwrap();
}
