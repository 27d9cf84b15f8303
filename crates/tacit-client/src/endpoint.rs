//! Where the client connects, and how: the relay URL checked against the
//! policy (TLS, unless the relay is on this machine), the TLS settings, and
//! the relay name a login is signed for.
//!
//! Every connection the client opens, the account's and the anonymous one,
//! goes through an [`Endpoint`], so the policy is checked in one place.

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::CertificateDer;
use rustls::RootCertStore;
use tokio_tungstenite::tungstenite::http::Uri;

use crate::{ClientConfig, ClientError};

/// The parts of a relay URL the policy looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RelayUrl {
    /// `wss://` (TLS) rather than `ws://`.
    pub(crate) tls: bool,
    /// The host, without the brackets of an IPv6 address.
    pub(crate) host: String,
}

/// Checks `url` against the policy: `wss://` anywhere, `ws://` only to a
/// loopback host (`localhost`, 127.0.0.0/8, `::1`), anything else refused.
pub(crate) fn check_relay_url(url: &str) -> Result<RelayUrl, ClientError> {
    let bad = |why: &str| ClientError::RelayUrl(format!("{url:?}: {why}"));
    let uri: Uri = url.parse().map_err(|e| bad(&format!("{e}")))?;
    let tls = match uri.scheme_str() {
        Some(s) if s.eq_ignore_ascii_case("wss") => true,
        Some(s) if s.eq_ignore_ascii_case("ws") => false,
        _ => return Err(bad("the scheme must be wss:// (or ws:// to this machine)")),
    };
    let host = uri.host().ok_or_else(|| bad("no host"))?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if host.is_empty() {
        return Err(bad("no host"));
    }
    if !tls && !is_loopback(host) {
        return Err(ClientError::PlaintextRelay {
            host: host.to_owned(),
        });
    }
    Ok(RelayUrl {
        tls,
        host: host.to_owned(),
    })
}

/// `url` with the relay's WebSocket path
/// ([`WEBSOCKET_PATH`](tacit_relay_proto::WEBSOCKET_PATH)) when it names
/// none (`ws://HOST:PORT` or `ws://HOST:PORT/`, no query); a URL with a
/// path is kept as given (a relay behind a proxy may live under another).
pub(crate) fn with_default_path(url: &str) -> String {
    let bare = url
        .parse::<Uri>()
        .is_ok_and(|uri| matches!(uri.path(), "" | "/") && uri.query().is_none());
    if bare {
        let base = url.strip_suffix('/').unwrap_or(url);
        format!("{base}{}", tacit_relay_proto::WEBSOCKET_PATH)
    } else {
        url.to_owned()
    }
}

/// Whether `host` (an IPv6 address without brackets) names this machine:
/// `localhost`, an address in 127.0.0.0/8, or `::1`.
pub(crate) fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The relay name a client signs by default: the relay URL's host, in
/// lowercase (empty if the URL has none, which the policy refuses anyway).
pub(crate) fn default_server_name(url: &str) -> String {
    url.parse::<Uri>()
        .ok()
        .and_then(|uri| uri.host().map(str::to_owned))
        .map(|host| {
            host.trim_start_matches('[')
                .trim_end_matches(']')
                .to_ascii_lowercase()
        })
        .unwrap_or_default()
}

/// The name to sign a login with: the configured one, provided the relay
/// announces the same. A relay announcing another name may be relaying
/// the challenge of the relay it names; nothing is signed for it.
pub(crate) fn login_name<'a>(configured: &'a str, announced: &str) -> Result<&'a str, ClientError> {
    if configured == announced {
        Ok(configured)
    } else {
        Err(ClientError::ServerNameMismatch {
            configured: configured.to_owned(),
            announced: announced.to_owned(),
        })
    }
}

/// A relay URL that passed the policy, with the TLS settings to reach it.
#[derive(Clone)]
pub(crate) struct Endpoint {
    url: String,
    tls: Option<Arc<rustls::ClientConfig>>,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("url", &self.url)
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

impl Endpoint {
    /// Checks `config.relay_url` and, for `wss://`, loads the roots: the
    /// certificates of `config.ca_file` if set, otherwise the platform's.
    pub(crate) fn new(config: &ClientConfig) -> Result<Self, ClientError> {
        let url = check_relay_url(&config.relay_url)?;
        let tls = if url.tls {
            Some(tls_config(config.ca_file.as_deref())?)
        } else {
            None
        };
        Ok(Self {
            url: with_default_path(&config.relay_url),
            tls,
        })
    }

    /// The URL.
    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    /// The TLS settings, for a `wss://` URL.
    pub(crate) fn tls(&self) -> Option<Arc<rustls::ClientConfig>> {
        self.tls.clone()
    }
}

/// TLS 1.2 and 1.3 with the `ring` provider, trusting the certificates in
/// `ca_file` (PEM) if given, otherwise the platform's roots.
fn tls_config(ca_file: Option<&Path>) -> Result<Arc<rustls::ClientConfig>, ClientError> {
    let mut roots = RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let what = || format!("the CA file {}", path.display());
            let certs = CertificateDer::pem_file_iter(path)
                .and_then(Iterator::collect::<Result<Vec<_>, _>>)
                .map_err(|e| ClientError::Tls(format!("{}: {e}", what())))?;
            if certs.is_empty() {
                return Err(ClientError::Tls(format!("{}: no certificate", what())));
            }
            for cert in certs {
                roots
                    .add(cert)
                    .map_err(|e| ClientError::Tls(format!("{}: {e}", what())))?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            for e in &found.errors {
                tracing::warn!(error = %e, "loading the platform's root certificates");
            }
            let (added, _) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                return Err(ClientError::Tls(
                    "no platform root certificate found (configure a CA file)".into(),
                ));
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ClientError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn plaintext_only_to_loopback() {
        for url in [
            "ws://127.0.0.1:7878/v1",
            "ws://127.1.2.3/v1",
            "ws://localhost:7878/v1",
            "WS://LocalHost/v1",
            "ws://[::1]:7878/v1",
        ] {
            let checked = check_relay_url(url).unwrap();
            assert!(!checked.tls, "{url}");
        }
        for (url, host) in [
            ("ws://example.invalid/v1", "example.invalid"),
            ("ws://10.0.0.1:7878/v1", "10.0.0.1"),
            ("ws://128.0.0.1/v1", "128.0.0.1"),
            ("ws://[::2]/v1", "::2"),
            ("ws://[::ffff:127.0.0.1]/v1", "::ffff:127.0.0.1"),
            (
                "ws://localhost.example.invalid/v1",
                "localhost.example.invalid",
            ),
            ("ws://0.0.0.0/v1", "0.0.0.0"),
        ] {
            match check_relay_url(url) {
                Err(ClientError::PlaintextRelay { host: h }) => assert_eq!(h, host, "{url}"),
                other => panic!("{url}: {other:?}"),
            }
        }
    }

    #[test]
    fn tls_anywhere() {
        for (url, host) in [
            ("wss://relay.example.invalid/v1", "relay.example.invalid"),
            (
                "WSS://relay.example.invalid:443/v1",
                "relay.example.invalid",
            ),
            ("wss://127.0.0.1:7878/v1", "127.0.0.1"),
            ("wss://[2001:db8::1]/v1", "2001:db8::1"),
        ] {
            assert_eq!(
                check_relay_url(url).unwrap(),
                RelayUrl {
                    tls: true,
                    host: host.into()
                }
            );
        }
    }

    #[test]
    fn a_url_without_a_path_means_the_relays_path() {
        for (given, used) in [
            ("ws://127.0.0.1:7878", "ws://127.0.0.1:7878/v1"),
            ("ws://127.0.0.1:7878/", "ws://127.0.0.1:7878/v1"),
            (
                "wss://relay.example.invalid",
                "wss://relay.example.invalid/v1",
            ),
            ("ws://[::1]:7878/", "ws://[::1]:7878/v1"),
            // A path given is kept as it is (a relay behind a proxy).
            ("ws://127.0.0.1:7878/v1", "ws://127.0.0.1:7878/v1"),
            (
                "wss://example.invalid/chat/v1",
                "wss://example.invalid/chat/v1",
            ),
            ("ws://localhost/?x=1", "ws://localhost/?x=1"),
        ] {
            let config =
                ClientConfig::new("unused.db", crate::StoreKey::from_bytes([0; 32]), given);
            assert_eq!(Endpoint::new(&config).unwrap().url(), used, "{given}");
        }
    }

    #[test]
    fn other_schemes_and_malformed_urls_are_refused() {
        for url in [
            "http://127.0.0.1/v1",
            "https://relay.example.invalid/v1",
            "relay.example.invalid",
            "",
            "wss:///v1",
            "ws://",
            "not a url",
        ] {
            assert!(
                matches!(check_relay_url(url), Err(ClientError::RelayUrl(_))),
                "{url}: {:?}",
                check_relay_url(url)
            );
        }
    }

    #[test]
    fn the_default_name_is_the_host() {
        assert_eq!(
            default_server_name("wss://Relay.Example.invalid:443/v1"),
            "relay.example.invalid"
        );
        assert_eq!(default_server_name("ws://[::1]:7878/v1"), "::1");
        assert_eq!(default_server_name("ws://127.0.0.1:7878/v1"), "127.0.0.1");
        assert_eq!(default_server_name("not a url"), "");
    }

    #[test]
    fn only_the_configured_name_is_signed() {
        assert_eq!(login_name("relay-a", "relay-a").unwrap(), "relay-a");
        match login_name("relay-a", "relay-b") {
            Err(ClientError::ServerNameMismatch {
                configured,
                announced,
            }) => {
                assert_eq!(configured, "relay-a");
                assert_eq!(announced, "relay-b");
            }
            other => panic!("{other:?}"),
        }
        assert!(login_name("relay-a", "Relay-A").is_err());
        assert!(login_name("relay-a", "").is_err());
    }

    #[test]
    fn a_missing_or_empty_ca_file_is_refused() {
        let scratch = tempfile::tempdir().unwrap();
        let dir = scratch.path();
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "").unwrap();
        for path in [dir.join("missing.pem"), empty] {
            assert!(
                matches!(tls_config(Some(&path)), Err(ClientError::Tls(_))),
                "{}",
                path.display()
            );
        }
    }
}
