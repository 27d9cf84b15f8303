//! The delivery-token frames for JavaScript ([`crate::tokens`]): setting
//! this device's token after each login, and submissions that present the
//! recipients' recorded tokens.

use js_sys::{Promise, Uint8Array};
use tacit::Address;
use tacit_relay_proto::{Request, SetDeliveryToken};
use wasm_bindgen::prelude::*;

use crate::error::Error;
use crate::groups_js::GroupSent;
use crate::relay::frame;
use crate::store::BrowserStore;
use crate::{tokens, Tacit};

fn invalid(e: impl ToString) -> Error {
    Error::invalid(e.to_string())
}

impl Tacit {
    /// The `SetDeliveryToken` frame of the token `request` leaves stored,
    /// handed out once the store's writes are persisted.
    fn token_frame(
        &self,
        request_id: f64,
        request: fn(&BrowserStore) -> Result<SetDeliveryToken, Error>,
    ) -> Result<Promise, JsValue> {
        self.check()?;
        crate::relay::id(request_id, "a request id")?;
        let request = request(self.manager.store())?;
        let bytes = frame(request_id, Request::SetDeliveryToken(request))?;
        Ok(self.persist(Uint8Array::from(bytes.as_slice()).into()))
    }
}

#[wasm_bindgen]
impl Tacit {
    /// Resolves to the encoded `SetDeliveryToken` of this device's token,
    /// once stored: drawn (32 random bytes) the first time, the same one
    /// after. Send it on the logged-in connection after every login; from
    /// then on every content this device seals but delivery receipts
    /// carries the token.
    #[wasm_bindgen(js_name = deliveryTokenFrame, unchecked_return_type = "Promise<Uint8Array>")]
    pub fn delivery_token_frame(
        &self,
        #[wasm_bindgen(js_name = requestId)] request_id: f64,
    ) -> Result<Promise, JsValue> {
        self.token_frame(request_id, tokens::set_request)
    }

    /// Resolves to the encoded `SetDeliveryToken` of a new token for this
    /// device, drawn (32 random bytes) and stored in place of its token
    /// before the frame is handed out. Send it on the logged-in
    /// connection; the relay then refuses anonymous submissions that
    /// present the old token, and correspondents learn the new one from
    /// the next content this device seals. Later logins set the new one
    /// (`deliveryTokenFrame`).
    #[wasm_bindgen(
        js_name = rotateDeliveryTokenFrame,
        unchecked_return_type = "Promise<Uint8Array>"
    )]
    pub fn rotate_delivery_token_frame(
        &self,
        #[wasm_bindgen(js_name = requestId)] request_id: f64,
    ) -> Result<Promise, JsValue> {
        self.token_frame(request_id, tokens::rotate_request)
    }

    /// Encodes the submission of a sealed envelope to a device's mailbox,
    /// with the delivery token that device last sent, if any: for the
    /// anonymous connection (on `DeliveryTokenRefused`, the same frame goes
    /// on the logged-in one).
    #[wasm_bindgen(js_name = submitFrame)]
    pub fn submit_frame(
        &self,
        #[wasm_bindgen(js_name = requestId)] request_id: f64,
        #[wasm_bindgen(js_name = userId)] user_id: &str,
        #[wasm_bindgen(js_name = deviceId)] device_id: u32,
        envelope: Vec<u8>,
    ) -> Result<Vec<u8>, JsValue> {
        self.check()?;
        let recipient = Address::new(user_id, device_id).map_err(invalid)?;
        let request =
            tokens::submit(self.manager.store(), &recipient, envelope).map_err(invalid)?;
        Ok(frame(request_id, Request::Submit(request))?)
    }

    /// Encodes the submission of a group message's envelope (`sent` from
    /// `sendGroupText`), each recipient device with the delivery token it
    /// last sent, if any. Submit `sent.outgoing` first.
    #[wasm_bindgen(js_name = submitGroupFrame)]
    pub fn submit_group_frame(
        &self,
        #[wasm_bindgen(js_name = requestId)] request_id: f64,
        sent: &GroupSent,
    ) -> Result<Vec<u8>, JsValue> {
        self.check()?;
        let request = tokens::submit_group(self.manager.store(), &sent.sealed).map_err(invalid)?;
        Ok(frame(request_id, Request::SubmitGroup(request))?)
    }

    /// Whether a delivery token is recorded for a device (from a content it
    /// sent): submissions to it then go anonymously.
    #[wasm_bindgen(js_name = hasDeliveryToken)]
    pub fn has_delivery_token(
        &self,
        #[wasm_bindgen(js_name = userId)] user_id: &str,
        #[wasm_bindgen(js_name = deviceId)] device_id: u32,
    ) -> Result<bool, JsValue> {
        let address = Address::new(user_id, device_id).map_err(invalid)?;
        Ok(self.manager.store().peer_token(&address).is_some())
    }
}
