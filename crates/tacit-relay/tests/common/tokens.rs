//! The tokenless quota's scenario, run on SQLite (`tests/tokens.rs`) and
//! on PostgreSQL (`tests/postgres.rs`), on a relay whose quota is a burst
//! of [`QUOTA`] that never refills.

use std::net::SocketAddr;

use tacit::group::multi;
use tacit::rand_core::OsRng;
use tacit::{Address, IdentityKey};
use tacit_relay::Rate;
use tacit_relay_proto::{
    DeliveryToken, ErrorCode, ErrorReply, Reply, Request, SetDeliveryToken, Submit, SubmitGroup,
};

use super::{connect, registered, same_user, Device, TcpClient};

/// The quota the scenario runs under: three units, no refill.
pub const QUOTA: Rate = Rate::new(0.0, 3);

fn token(n: u8) -> DeliveryToken {
    DeliveryToken::new(&[n; 24]).unwrap()
}

fn submit(to: &Device, t: Option<DeliveryToken>) -> Request {
    Request::Submit(Submit::new(to.address.clone(), b"m".to_vec(), t).unwrap())
}

fn group(to: &[(&Device, Option<DeliveryToken>)]) -> Request {
    let list: Vec<(Address, IdentityKey)> = to
        .iter()
        .map(|(d, _)| (d.address.clone(), d.identity.public_key()))
        .collect();
    let sealed = multi::seal(b"to the group", &list, &mut OsRng).unwrap();
    let request = SubmitGroup::from_sealed(&sealed, |a| {
        to.iter()
            .find(|(d, _)| &d.address == a)
            .and_then(|(_, t)| t.clone())
    })
    .unwrap();
    Request::SubmitGroup(request)
}

fn ok(r: Result<Reply, ErrorReply>) {
    assert!(
        matches!(
            r,
            Ok(Reply::Submitted { .. } | Reply::SubmittedGroup { .. })
        ),
        "{r:?}"
    );
}

fn refused(r: Result<Reply, ErrorReply>, code: ErrorCode) -> ErrorReply {
    let e = r.expect_err("expected a refusal");
    assert_eq!(e.code, code, "{e:?}");
    e
}

/// Registers `d` and sets its token to `t`.
async fn with_token(at: SocketAddr, d: &Device, t: Option<DeliveryToken>) {
    let mut c = registered(at, d).await;
    if t.is_some() {
        assert_eq!(
            c.request(Request::SetDeliveryToken(SetDeliveryToken { token: t }))
                .await,
            Ok(Reply::DeliveryTokenSet)
        );
    }
}

async fn mailbox(at: SocketAddr, d: &Device) -> usize {
    let mut c: TcpClient = connect(at).await;
    c.login(d).await.unwrap();
    c.drain().await.len()
}

/// Every submission path to a device with a token needs the token, or a
/// login and a unit of the account's quota: anonymous submissions without
/// it are refused, a logged-in account reaches at most [`QUOTA`]
/// token-holding recipients without their tokens (across its devices, in
/// `Submit` and `SubmitGroup` alike), presenting the token costs nothing,
/// a refused submission takes no unit, and each account has its own quota.
pub async fn tokenless_quota(at: SocketAddr) {
    let bob = Device::new("bob", 1, 2);
    let carol = Device::new("carol", 1, 3);
    let dave = Device::new("dave", 1, 4);
    let erin = Device::new("erin", 1, 5);
    with_token(at, &bob, Some(token(2))).await;
    with_token(at, &carol, Some(token(3))).await;
    with_token(at, &dave, Some(token(4))).await;
    with_token(at, &erin, None).await;
    let (_, mallory) = same_user(
        1,
        vec![Device::new("mallory", 1, 6), Device::new("mallory", 2, 7)],
    );
    let mut m1 = registered(at, &mallory[0]).await;
    let mut m2 = registered(at, &mallory[1]).await;

    // Anonymous: the token or nothing, for Submit and SubmitGroup.
    let mut anon = connect(at).await;
    refused(
        anon.request(submit(&bob, None)).await,
        ErrorCode::DeliveryTokenRefused,
    );
    refused(
        anon.request(submit(&bob, Some(token(9)))).await,
        ErrorCode::DeliveryTokenRefused,
    );
    let e = refused(
        anon.request(group(&[(&erin, None), (&carol, None)])).await,
        ErrorCode::DeliveryTokenRefused,
    );
    assert!(e.message.starts_with("recipient 1 "), "{e:?}");
    ok(anon.request(submit(&bob, Some(token(2)))).await);

    // Logged in: no token set, or the token presented, costs nothing.
    for _ in 0..5 {
        ok(m1.request(submit(&erin, None)).await);
        ok(m1.request(submit(&bob, Some(token(2)))).await);
    }
    ok(m1
        .request(group(&[(&erin, None), (&carol, Some(token(3)))]))
        .await);
    // A wrong token is no token: one unit; no token: another.
    ok(m1.request(submit(&bob, Some(token(9)))).await);
    ok(m2.request(submit(&bob, None)).await);
    // A group needing two units with one left is refused whole and takes
    // none; one refused for another reason takes none either.
    let e = refused(
        m1.request(group(&[(&erin, None), (&carol, None), (&dave, None)]))
            .await,
        ErrorCode::DeliveryTokenRefused,
    );
    assert!(e.message.starts_with("recipient 1 "), "{e:?}");
    assert!(e.retry_after_ms.is_some(), "{e:?}");
    let nobody = Device::new("nobody", 1, 8);
    refused(
        m1.request(group(&[(&carol, None), (&nobody, None)])).await,
        ErrorCode::UnknownDevice,
    );
    // The last unit, then the quota is used up, on every device of the
    // account.
    ok(m2.request(group(&[(&erin, None), (&carol, None)])).await);
    for m in [&mut m1, &mut m2] {
        let e = refused(
            m.request(submit(&dave, None)).await,
            ErrorCode::DeliveryTokenRefused,
        );
        assert!(e.retry_after_ms.is_some(), "{e:?}");
        refused(
            m.request(group(&[(&dave, None)])).await,
            ErrorCode::DeliveryTokenRefused,
        );
        // Presenting the token still works.
        ok(m.request(submit(&dave, Some(token(4)))).await);
        ok(m.request(group(&[(&dave, Some(token(4)))])).await);
    }
    // Another account has a quota of its own.
    let oscar = Device::new("oscar", 1, 10);
    let mut o = registered(at, &oscar).await;
    ok(o.request(submit(&dave, None)).await);

    // What was accepted, and only that, is queued.
    assert_eq!(mailbox(at, &bob).await, 1 + 5 + 2);
    assert_eq!(mailbox(at, &carol).await, 1 + 1);
    assert_eq!(mailbox(at, &dave).await, 4 + 1);
    assert_eq!(mailbox(at, &erin).await, 5 + 1 + 1);
}
