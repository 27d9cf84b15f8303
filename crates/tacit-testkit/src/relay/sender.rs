//! One request a connection, and a device whose every message a test
//! scripts.

use rand_core::OsRng;
use tacit::envelope::{Content, ContentKind};
use tacit::identity::{DeviceList, UserKeyPair};
use tacit::session::{Account, SessionConfig, SessionManager};
use tacit::store::InMemoryStore;
use tacit::Address;
use tacit_relay_proto::{ErrorReply, FetchBundles, FetchDeviceList, Reply, Request, Submit};

use super::client::{Client, WAIT};

/// Sends `request` over a new connection to the relay at `url` (which
/// never logs in) and returns the relay's answer.
pub async fn request(url: &str, request: Request) -> Result<Reply, ErrorReply> {
    let (ws, _) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(url))
        .await
        .expect("the relay accepts a connection in time")
        .expect("the relay accepts a connection");
    let mut client = Client::new(ws);
    let answer = client.request(request).await;
    client.close().await;
    answer
}

/// A device that is not a `tacit-client`: a session manager over an
/// in-memory store, with a one-device list signed by a user key of the
/// test's choice (the user's real one, or an impersonator's), that reaches
/// other devices through the relay as anyone can.
pub struct Sender {
    /// The device's session manager.
    pub manager: SessionManager<InMemoryStore>,
    /// The user key its own list is signed by.
    pub user_key: UserKeyPair,
    /// Its own list.
    pub list: DeviceList,
    url: String,
}

impl core::fmt::Debug for Sender {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Sender")
            .field("address", self.manager.local_address())
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl Sender {
    /// Device `address` under `user_key`, on the relay at `url`.
    pub fn new(url: &str, address: Address, user_key: UserKeyPair) -> Self {
        let mut manager = SessionManager::create(
            InMemoryStore::new(),
            address.clone(),
            Account::generate(0, &mut OsRng),
            SessionConfig::default(),
        )
        .expect("a new session manager");
        let own = manager.account().identity().public_key();
        let list = DeviceList::sign(
            &user_key,
            address.user_id(),
            1,
            &[(address.device_id(), own, 0)],
        )
        .expect("a one-device list");
        manager
            .update_device_list(&list)
            .expect("its own list is trusted");
        Self {
            manager,
            user_key,
            list,
            url: url.into(),
        }
    }

    /// Trusts the list the relay serves for `recipient`'s user and starts a
    /// session with `recipient` from one of its bundles. Returns the list.
    pub async fn reach(&mut self, recipient: &Address) -> DeviceList {
        let list = match self
            .request(Request::FetchDeviceList(
                FetchDeviceList::new(recipient.user_id()).expect("a valid user id"),
            ))
            .await
        {
            Ok(Reply::DeviceList(bytes)) => bytes.verify().expect("a list that verifies"),
            other => panic!("no list for {recipient}: {other:?}"),
        };
        self.manager
            .update_device_list(&list)
            .expect("the recipient's list is trusted");
        let bundles = match self
            .request(Request::FetchBundles(FetchBundles::device(recipient)))
            .await
        {
            Ok(Reply::Bundles(b)) => b.bundles,
            other => panic!("no bundle for {recipient}: {other:?}"),
        };
        let bundle = bundles.first().expect("one bundle");
        self.manager
            .process_bundle(recipient, &bundle.bundle, &mut OsRng)
            .expect("a session from the bundle");
        list
    }

    /// Seals a content of `kind` (time 0) for `recipient`, over the session
    /// [`reach`](Self::reach) started, and submits it; the relay must store
    /// it.
    pub async fn send(&mut self, recipient: &Address, kind: ContentKind, body: Vec<u8>) {
        let content = Content::new(kind, body, 0, &mut OsRng).expect("a valid content");
        let out = self
            .manager
            .seal_for_device(recipient, &content, &mut OsRng)
            .expect("sealed");
        let submit = Submit::new(out.recipient, out.envelope, None).expect("a valid submission");
        let answer = self.request(Request::Submit(submit)).await;
        assert!(
            matches!(answer, Ok(Reply::Submitted { .. })),
            "not stored: {answer:?}"
        );
    }

    async fn request(&self, req: Request) -> Result<Reply, ErrorReply> {
        request(&self.url, req).await
    }
}
