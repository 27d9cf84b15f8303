//! Relay frames for JavaScript (`tacit-relay-proto`, `docs/relay.md`): the
//! requests a page sends over its WebSocket, encoded here, and the relay's
//! frames decoded into plain objects (`ServerMessage` in TypeScript). The
//! requests signed by the device (register, login) and those built from
//! its keys (prekey uploads) are methods of [`Tacit`](crate::Tacit).
//!
//! Request ids and relay message ids are JavaScript numbers: integers from
//! 1 to 2^53 - 1 (a relay counts its messages from 1, so its ids stay far
//! below). A request that cannot be encoded throws `invalid-argument`; a
//! server frame that does not decode strictly throws `frame`.

use js_sys::{Array, Object, Reflect, Uint8Array};
use tacit::wire::WireMessage;
use tacit::Address;
use tacit_relay_proto::{
    Ack, ClientFrame, DeviceListBytes, EnvelopeKind, ErrorReply, FetchBundles, FetchDeviceList,
    FrameError, PublishDeviceList, Reply, Request, ServerFrame, Submit, SubmitGroup,
};
use wasm_bindgen::prelude::*;

use crate::error::Error;
use crate::groups_js::GroupSent;

#[wasm_bindgen(typescript_custom_section)]
const TS_RELAY_TYPES: &'static str = r#"
/** A frame from the relay, decoded by `decodeServerFrame`. */
export type ServerMessage =
  | { type: "response"; requestId: number; ok: true; reply: RelayReply }
  | { type: "response"; requestId: number; ok: false; error: RelayError }
  | { type: "push"; messageId: number; serverTimeMs: number; envelope: Uint8Array; group: boolean }
  | { type: "queue-empty" }
  | { type: "prekeys-low"; remaining: number; kemRemaining: number }
  | { type: "messages-expired"; count: number }
  | { type: "unknown" };

/** A refused request: the relay's error code by name (`docs/relay.md`). */
export interface RelayError { code: string; codeNumber: number; message: string; retryAfterMs?: number; }

/** A successful answer. */
export type RelayReply =
  | { type: "challenge"; challenge: Uint8Array; serverName: string; serverTimeMs: number }
  | { type: "logged-in"; registered: boolean; oneTimePrekeys: number; hasSignedPrekey: boolean;
      oneTimeKemPrekeys: number; hasKemPrekey: boolean }
  | { type: "prekeys-stored"; oneTimePrekeys: number; oneTimeKemPrekeys: number }
  | { type: "bundles"; deviceList: Uint8Array; bundles: { deviceId: number; bundle: Uint8Array }[] }
  | { type: "submitted"; messageId: number }
  | { type: "submitted-group"; queued: number }
  | { type: "acked"; removed: number }
  | { type: "device-list-stored"; version: number }
  | { type: "device-list"; deviceList: Uint8Array }
  | { type: "other"; name: string };
"#;

/// The largest integer a JavaScript number holds exactly.
const MAX_SAFE: f64 = 9_007_199_254_740_991.0;

/// A request or message id from JavaScript: an integer, 1 to 2^53 - 1.
pub(crate) fn id(value: f64, what: &str) -> Result<u64, Error> {
    if value.fract() == 0.0 && (1.0..=MAX_SAFE).contains(&value) {
        // Whole and in range: the conversion is exact.
        Ok(value as u64)
    } else {
        Err(Error::invalid(format!(
            "{what} must be an integer from 1 to 2^53 - 1"
        )))
    }
}

/// `request` with id `request_id`, encoded.
pub(crate) fn frame(request_id: f64, request: Request) -> Result<Vec<u8>, Error> {
    Ok(ClientFrame {
        request_id: id(request_id, "a request id")?,
        request,
    }
    .encode())
}

fn invalid(e: FrameError) -> Error {
    Error::invalid(e.to_string())
}

/// Encodes a request for a login challenge.
#[wasm_bindgen(js_name = encodeGetChallenge)]
pub fn encode_get_challenge(
    #[wasm_bindgen(js_name = requestId)] request_id: f64,
) -> Result<Vec<u8>, JsValue> {
    Ok(frame(request_id, Request::GetChallenge)?)
}

/// Encodes a request for the prekey bundles of `userId`'s devices, or of
/// device `deviceId` alone.
#[wasm_bindgen(js_name = encodeFetchBundles)]
pub fn encode_fetch_bundles(
    #[wasm_bindgen(js_name = requestId)] request_id: f64,
    #[wasm_bindgen(js_name = userId)] user_id: &str,
    #[wasm_bindgen(js_name = deviceId)] device_id: Option<u32>,
) -> Result<Vec<u8>, JsValue> {
    let request = match device_id {
        Some(device) => FetchBundles::device(
            &Address::new(user_id, device).map_err(|e| Error::invalid(e.to_string()))?,
        ),
        None => FetchBundles::user(user_id).map_err(invalid)?,
    };
    Ok(frame(request_id, Request::FetchBundles(request))?)
}

/// Encodes a request for `userId`'s current signed device list.
#[wasm_bindgen(js_name = encodeFetchDeviceList)]
pub fn encode_fetch_device_list(
    #[wasm_bindgen(js_name = requestId)] request_id: f64,
    #[wasm_bindgen(js_name = userId)] user_id: &str,
) -> Result<Vec<u8>, JsValue> {
    let request = FetchDeviceList::new(user_id).map_err(invalid)?;
    Ok(frame(request_id, Request::FetchDeviceList(request))?)
}

/// Encodes the submission of a sealed envelope to a device's mailbox,
/// without a delivery token (`Tacit.submitFrame` presents the recorded one).
#[wasm_bindgen(js_name = encodeSubmit)]
pub fn encode_submit(
    #[wasm_bindgen(js_name = requestId)] request_id: f64,
    #[wasm_bindgen(js_name = userId)] user_id: &str,
    #[wasm_bindgen(js_name = deviceId)] device_id: u32,
    envelope: Vec<u8>,
) -> Result<Vec<u8>, JsValue> {
    let recipient = Address::new(user_id, device_id).map_err(|e| Error::invalid(e.to_string()))?;
    let request = Submit::new(recipient, envelope, None).map_err(invalid)?;
    Ok(frame(request_id, Request::Submit(request))?)
}

/// Encodes the submission of a group message's envelope (`sent` from
/// `sendGroupText`): its shared payload once and a part for every
/// recipient device, fanned out by the relay, without delivery tokens
/// (`Tacit.submitGroupFrame` presents the recorded ones). Submit
/// `sent.outgoing` first.
#[wasm_bindgen(js_name = encodeSubmitGroup)]
pub fn encode_submit_group(
    #[wasm_bindgen(js_name = requestId)] request_id: f64,
    sent: &GroupSent,
) -> Result<Vec<u8>, JsValue> {
    let request = SubmitGroup::from_sealed(&sent.sealed, |_| None).map_err(invalid)?;
    Ok(frame(request_id, Request::SubmitGroup(request))?)
}

/// Encodes the acknowledgement (and so deletion) of the logged-in device's
/// messages `messageIds` (1 to 1024 distinct ids).
#[wasm_bindgen(js_name = encodeAck)]
pub fn encode_ack(
    #[wasm_bindgen(js_name = requestId)] request_id: f64,
    #[wasm_bindgen(js_name = messageIds)] message_ids: Vec<f64>,
) -> Result<Vec<u8>, JsValue> {
    let ids = message_ids
        .iter()
        .map(|&m| id(m, "a message id"))
        .collect::<Result<Vec<u64>, Error>>()?;
    let request = Ack::new(ids).map_err(invalid)?;
    Ok(frame(request_id, Request::Ack(request))?)
}

/// Encodes the publication of a signed device list (wire form) of the
/// logged-in device's user.
#[wasm_bindgen(js_name = encodePublishDeviceList)]
pub fn encode_publish_device_list(
    #[wasm_bindgen(js_name = requestId)] request_id: f64,
    #[wasm_bindgen(js_name = deviceList)] device_list: Vec<u8>,
) -> Result<Vec<u8>, JsValue> {
    let device_list = DeviceListBytes::new(device_list).map_err(invalid)?;
    Ok(frame(
        request_id,
        Request::PublishDeviceList(PublishDeviceList { device_list }),
    )?)
}

/// An object under construction; setting a property on a fresh object
/// cannot fail.
struct Obj(Object);

impl Obj {
    fn new(kind: &str) -> Self {
        Self(Object::new()).set("type", kind)
    }

    fn set(self, key: &str, value: impl Into<JsValue>) -> Self {
        let _ = Reflect::set(&self.0, &key.into(), &value.into());
        self
    }

    fn bytes(self, key: &str, value: &[u8]) -> Self {
        self.set(key, Uint8Array::from(value))
    }
}

/// A relay count or id as a number (exact below 2^53).
fn num(value: u64) -> f64 {
    value as f64
}

fn reply_object(reply: &Reply) -> Obj {
    match reply {
        Reply::Challenge(c) => Obj::new("challenge")
            .bytes("challenge", &c.challenge)
            .set("serverName", c.server_name.as_str())
            .set("serverTimeMs", num(c.server_time_ms)),
        Reply::LoggedIn(l) => Obj::new("logged-in")
            .set("registered", l.registered)
            .set("oneTimePrekeys", l.one_time_prekeys)
            .set("hasSignedPrekey", l.has_signed_prekey)
            .set("oneTimeKemPrekeys", l.one_time_kem_prekeys)
            .set("hasKemPrekey", l.has_kem_prekey),
        Reply::PreKeysStored {
            one_time_prekeys,
            one_time_kem_prekeys,
        } => Obj::new("prekeys-stored")
            .set("oneTimePrekeys", *one_time_prekeys)
            .set("oneTimeKemPrekeys", *one_time_kem_prekeys),
        Reply::Bundles(b) => {
            let bundles: Array = b
                .bundles
                .iter()
                .map(|d| {
                    JsValue::from(
                        Obj(Object::new())
                            .set("deviceId", d.device_id)
                            .bytes("bundle", &d.bundle.to_wire())
                            .0,
                    )
                })
                .collect();
            Obj::new("bundles")
                .bytes("deviceList", b.device_list.as_bytes())
                .set("bundles", bundles)
        }
        Reply::Submitted { message_id } => Obj::new("submitted").set("messageId", num(*message_id)),
        Reply::Acked { removed } => Obj::new("acked").set("removed", *removed),
        Reply::DeviceListStored { version } => {
            Obj::new("device-list-stored").set("version", num(*version))
        }
        Reply::DeviceList(list) => Obj::new("device-list").bytes("deviceList", list.as_bytes()),
        Reply::SubmittedGroup { queued } => Obj::new("submitted-group").set("queued", *queued),
        Reply::DeliveryTokenSet => Obj::new("other").set("name", "delivery-token-set"),
        Reply::LinkStored => Obj::new("other").set("name", "link-stored"),
        Reply::LinkBlob(_) => Obj::new("other").set("name", "link-blob"),
        _ => Obj::new("other").set("name", "unknown"),
    }
}

fn error_object(e: &ErrorReply) -> Obj {
    let out = Obj(Object::new())
        .set("code", e.code.name())
        .set("codeNumber", e.code.as_u32())
        .set("message", e.message.as_str());
    match e.retry_after_ms {
        Some(ms) => out.set("retryAfterMs", num(ms)),
        None => out,
    }
}

/// Decodes a frame from the relay (strictly, as `tacit-relay-proto` does)
/// into a `ServerMessage`.
#[wasm_bindgen(js_name = decodeServerFrame, unchecked_return_type = "ServerMessage")]
pub fn decode_server_frame(bytes: &[u8]) -> Result<JsValue, JsValue> {
    let frame = ServerFrame::decode(bytes).map_err(|e| Error::new("frame", e.to_string()))?;
    let out = match &frame {
        ServerFrame::Response(r) => {
            let out = Obj::new("response").set("requestId", num(r.request_id));
            match &r.result {
                Ok(reply) => out.set("ok", true).set("reply", reply_object(reply).0),
                Err(e) => out.set("ok", false).set("error", error_object(e).0),
            }
        }
        ServerFrame::Push(p) => Obj::new("push")
            .set("messageId", num(p.message_id))
            .set("serverTimeMs", num(p.server_time_ms))
            .bytes("envelope", &p.envelope)
            .set("group", p.kind == EnvelopeKind::Group),
        ServerFrame::QueueEmpty => Obj::new("queue-empty"),
        ServerFrame::PreKeysLow {
            remaining,
            kem_remaining,
        } => Obj::new("prekeys-low")
            .set("remaining", *remaining)
            .set("kemRemaining", *kem_remaining),
        ServerFrame::MessagesExpired { count } => {
            Obj::new("messages-expired").set("count", num(*count))
        }
        _ => Obj::new("unknown"),
    };
    Ok(out.0.into())
}

#[cfg(test)]
mod tests {
    use super::id;

    #[test]
    fn ids_are_whole_numbers_in_the_safe_range() {
        assert_eq!(id(1.0, "x"), Ok(1));
        assert_eq!(id(9_007_199_254_740_991.0, "x"), Ok(9_007_199_254_740_991));
        for bad in [
            0.0,
            -1.0,
            1.5,
            f64::NAN,
            f64::INFINITY,
            9_007_199_254_740_992.0,
        ] {
            assert_eq!(id(bad, "x").map_err(|e| e.code), Err("invalid-argument"));
        }
    }
}
