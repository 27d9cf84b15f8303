//! The relay requests that come from the device's keys: registration and
//! login (signed by the identity key over the relay's challenge,
//! `docs/relay.md`), and prekey uploads (the signed, fallback and
//! last-resort KEM prekeys, one-time prekeys and one-time KEM prekeys, as
//! `tacit-client` publishes them).

use js_sys::{Promise, Uint8Array};
use rand_core::OsRng;
use tacit::kem::SignedKemPreKey;
use tacit::PublicKey;
use tacit_relay_proto::{
    Login, OneTimePreKey, Register, Request, SignedPreKey, UploadPreKeys, CHALLENGE_LEN,
    MAX_KEM_PREKEYS_PER_UPLOAD, MAX_PREKEYS_PER_UPLOAD, MAX_SERVER_NAME_LEN,
};
use wasm_bindgen::prelude::*;

use crate::api::millis;
use crate::error::Error;
use crate::relay::frame;
use crate::Tacit;

fn check_challenge(bytes: &[u8]) -> Result<[u8; CHALLENGE_LEN], Error> {
    <[u8; CHALLENGE_LEN]>::try_from(bytes)
        .map_err(|_| Error::invalid("a relay challenge is 32 bytes"))
}

fn check_server_name(name: &str) -> Result<&str, Error> {
    if name.is_empty() || name.len() > MAX_SERVER_NAME_LEN {
        Err(Error::invalid("a relay name is 1 to 255 bytes"))
    } else {
        Ok(name)
    }
}

/// An upload of `one_time` and `one_time_kem` (each cut to the most one
/// frame carries) beside `first`.
fn upload(
    mut first: UploadPreKeys,
    one_time: &[(u32, PublicKey)],
    one_time_kem: &[SignedKemPreKey],
) -> UploadPreKeys {
    first.one_time_prekeys = one_time
        .iter()
        .take(MAX_PREKEYS_PER_UPLOAD)
        .map(|&(id, key)| OneTimePreKey { id, key })
        .collect();
    first.one_time_kem_prekeys = one_time_kem
        .iter()
        .take(MAX_KEM_PREKEYS_PER_UPLOAD)
        .cloned()
        .collect();
    first
}

impl Tacit {
    /// A registration (`register`) or a login, signed by the identity key.
    fn signed_frame(
        &self,
        request_id: f64,
        server_name: &str,
        challenge: &[u8],
        timestamp_ms: f64,
        register: bool,
    ) -> Result<Vec<u8>, Error> {
        self.check()?;
        let identity = self.manager.account().identity();
        let server_name = check_server_name(server_name)?;
        let challenge = check_challenge(challenge)?;
        let timestamp_ms = millis(timestamp_ms)?;
        let address = self.local.address.clone();
        let request = if register {
            let list = self.own_list()?;
            Request::Register(Register::sign(
                identity,
                server_name,
                &challenge,
                timestamp_ms,
                address,
                &list,
            ))
        } else {
            Request::Login(Login::sign(
                identity,
                server_name,
                &challenge,
                timestamp_ms,
                address,
            ))
        };
        frame(request_id, request)
    }
}

#[wasm_bindgen]
impl Tacit {
    /// Encodes a registration of this device with the relay named
    /// `serverName` (from its challenge), signed over `challenge` at
    /// `timestampMs`, presenting the user's device list. Registering again
    /// with the same identity key is a login.
    #[wasm_bindgen(js_name = registerFrame)]
    pub fn register_frame(
        &self,
        #[wasm_bindgen(js_name = requestId)] request_id: f64,
        #[wasm_bindgen(js_name = serverName)] server_name: &str,
        challenge: &[u8],
        #[wasm_bindgen(js_name = timestampMs)] timestamp_ms: f64,
    ) -> Result<Vec<u8>, JsValue> {
        Ok(self.signed_frame(request_id, server_name, challenge, timestamp_ms, true)?)
    }

    /// Encodes a login of this device, signed over the relay's `challenge`
    /// at `timestampMs`.
    #[wasm_bindgen(js_name = loginFrame)]
    pub fn login_frame(
        &self,
        #[wasm_bindgen(js_name = requestId)] request_id: f64,
        #[wasm_bindgen(js_name = serverName)] server_name: &str,
        challenge: &[u8],
        #[wasm_bindgen(js_name = timestampMs)] timestamp_ms: f64,
    ) -> Result<Vec<u8>, JsValue> {
        Ok(self.signed_frame(request_id, server_name, challenge, timestamp_ms, false)?)
    }

    /// Encodes an upload of every prekey the device holds: the signed,
    /// fallback and last-resort KEM prekeys and the unused one-time prekeys
    /// and one-time KEM prekeys (at most 200 and 100: one frame). For a
    /// relay that lacks the device's prekeys (after registering).
    #[wasm_bindgen(js_name = uploadPreKeysFrame)]
    pub fn upload_prekeys_frame(
        &self,
        #[wasm_bindgen(js_name = requestId)] request_id: f64,
    ) -> Result<Vec<u8>, JsValue> {
        self.check()?;
        let account = self.manager.account();
        let spk = account.signed_prekey();
        let fallback = account.fallback_prekey();
        let first = UploadPreKeys {
            signed_prekey: Some(SignedPreKey {
                id: spk.id(),
                key: spk.public_key(),
                signature: spk.signature(),
            }),
            fallback_prekey: Some(OneTimePreKey {
                id: fallback.id(),
                key: fallback.public_key(),
            }),
            kem_last_resort_prekey: account.kem_last_resort_prekey().map(|k| k.signed()),
            ..UploadPreKeys::default()
        };
        let request = upload(
            first,
            &account.one_time_prekeys(),
            &account.one_time_kem_prekeys(),
        );
        Ok(frame(request_id, Request::UploadPreKeys(request))?)
    }

    /// Generates `count` one-time prekeys (at most 200) and `kemCount`
    /// one-time KEM prekeys (at most 100), stores them, and resolves to the
    /// encoded upload of the new keys, once stored: for the relay's
    /// `prekeys-low`.
    #[wasm_bindgen(js_name = replenishPreKeys, unchecked_return_type = "Promise<Uint8Array>")]
    pub fn replenish_prekeys(
        &mut self,
        #[wasm_bindgen(js_name = requestId)] request_id: f64,
        count: u32,
        #[wasm_bindgen(js_name = kemCount)] kem_count: u32,
    ) -> Result<Promise, JsValue> {
        self.check()?;
        crate::relay::id(request_id, "a request id")?;
        let count = usize::try_from(count).unwrap_or(usize::MAX);
        let kem_count = usize::try_from(kem_count).unwrap_or(usize::MAX);
        if count > MAX_PREKEYS_PER_UPLOAD
            || kem_count > MAX_KEM_PREKEYS_PER_UPLOAD
            || count + kem_count == 0
        {
            return Err(Error::invalid("1 to 200 one-time prekeys, 0 to 100 KEM prekeys").into());
        }
        let (one_time, one_time_kem) = self
            .manager
            .update_account(|a| {
                let ec = a.generate_one_time_prekeys(count, &mut OsRng)?;
                let kem = if kem_count > 0 && a.has_kem_prekeys() {
                    a.generate_one_time_kem_prekeys(kem_count, &mut OsRng)?
                } else {
                    Vec::new()
                };
                Ok((ec, kem))
            })
            .map_err(Error::from)?;
        let request = upload(UploadPreKeys::default(), &one_time, &one_time_kem);
        let bytes = frame(request_id, Request::UploadPreKeys(request))?;
        Ok(self.persist(Uint8Array::from(bytes.as_slice()).into()))
    }
}

#[wasm_bindgen]
impl Tacit {
    /// Stores `value` as the page's own record `name` (1 to 256 bytes),
    /// sealed like the session state, or deletes it with `null`: a chat's
    /// history, say. Values are at most 64 KiB.
    #[wasm_bindgen(js_name = putRecord, unchecked_return_type = "Promise<void>")]
    pub fn put_record(&self, name: &str, value: Option<Vec<u8>>) -> Result<Promise, JsValue> {
        self.check()?;
        if name.is_empty()
            || name.len() > crate::store::MAX_APP_NAME_LEN
            || value
                .as_ref()
                .is_some_and(|v| v.len() > crate::store::MAX_APP_VALUE_LEN)
        {
            return Err(Error::invalid(
                "a record name of 1 to 256 bytes, a value of at most 64 KiB",
            )
            .into());
        }
        self.manager
            .store()
            .put_app_record(name, value.as_deref())
            .map_err(Error::from)?;
        Ok(self.persist(JsValue::UNDEFINED))
    }

    /// The page's record `name`, or `undefined`.
    pub fn record(&self, name: &str) -> Option<Vec<u8>> {
        self.manager.store().app_record(name)
    }

    /// The names of the page's records that start with `prefix`, in order.
    #[wasm_bindgen(js_name = recordNames)]
    pub fn record_names(&self, prefix: &str) -> Vec<String> {
        self.manager.store().app_names(prefix)
    }
}
