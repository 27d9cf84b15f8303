#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]
//! The relay over TLS, with a throwaway certificate.
#![cfg(feature = "tls")]

mod common;

use std::sync::Arc;

use common::*;
use tacit_relay::{Relay, TlsFiles};
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore};

#[tokio::test]
async fn clients_connect_over_tls() {
    let dir = TempDir::new("tls");
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let cert_path = dir.path("cert.pem");
    let key_path = dir.path("key.pem");
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.key_pair.serialize_pem()).unwrap();
    let mut config = config(&dir.db());
    config.tls = Some(TlsFiles {
        cert: cert_path,
        key: key_path,
    });
    let relay = Relay::bind(config).await.unwrap();

    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from(cert.cert.der().to_vec()))
        .unwrap();
    let client_config =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client_config));
    let tcp = tokio::net::TcpStream::connect(relay.local_addr())
        .await
        .unwrap();
    let tls = connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    let url = format!("wss://localhost:{}/v1", relay.local_addr().port());
    let mut c = Client::over(&url, tls).await.unwrap();
    let bob = Device::new("bob", 1, 2);
    c.register(&bob).await.unwrap();
    assert!(c.drain().await.is_empty());

    // A plain connection to the TLS port fails; the relay serves on.
    assert!(
        tokio::time::timeout(WAIT, TcpClient::try_connect(relay.local_addr()))
            .await
            .unwrap()
            .is_err()
    );
    relay.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_bad_certificate_file_is_a_startup_error() {
    let dir = TempDir::new("tls-bad");
    std::fs::write(dir.path("cert.pem"), "not a certificate").unwrap();
    std::fs::write(dir.path("key.pem"), "not a key").unwrap();
    let mut config = config(&dir.db());
    config.tls = Some(TlsFiles {
        cert: dir.path("cert.pem"),
        key: dir.path("key.pem"),
    });
    assert!(matches!(
        Relay::bind(config).await,
        Err(tacit_relay::RelayError::Tls(_))
    ));
}
