//! The JavaScript API: [`Tacit`], one device.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::rc::Rc;

use js_sys::{Array, Object, Promise, Reflect, Uint8Array};
use rand_core::OsRng;
use tacit::envelope::{Content, ContentKind};
use tacit::identity::{DeviceList, UserKeyPair};
use tacit::session::{
    Account, BundlePreKey, DeviceListUpdate, Profile, SessionConfig, SessionManager,
};
use tacit::wire::{PreKeyBundleMessage, WireMessage};
use tacit::Address;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::{future_to_promise, JsFuture};

use crate::error::Error;
use crate::groups;
use crate::groups_js::GroupReceived;
use crate::store::{BrowserStore, Local, Write};

#[wasm_bindgen(typescript_custom_section)]
const TS_TYPES: &'static str = r#"
/** One record of the persistent storage: a sealed value under a key; a
 * `value` of `null` deletes the key. */
export interface StoredRecord { key: string; value: Uint8Array | null; }

/** Where a device's sealed records persist (`IdbStorage` in
 * `idb-storage.js` keeps them in IndexedDB). */
export interface TacitStorage {
  /** Every stored record. */
  load(): Promise<StoredRecord[]>;
  /** Applies the writes, in order, in one transaction: all or none. Calls
   * must be applied in the order they are made. */
  write(records: StoredRecord[]): Promise<void>;
}

/** The `code` of a `TacitError`. */
export type TacitErrorCode = "invalid-argument" | "storage-failed" | "wrong-key" | "tampered"
  | "corrupt" | "storage" | "no-account" | "account-exists" | "account" | "no-session"
  | "unknown-identity" | "own-address" | "untrusted-identity" | "identity-mismatch"
  | "unknown-prekey" | "classical-prekey-refused" | "handshake" | "decrypt" | "encrypt"
  | "envelope" | "content" | "unknown-user" | "user-key-changed" | "stale-device-list"
  | "conflicting-device-list" | "device-not-listed" | "not-on-own-list" | "identity" | "session" | "frame"
  | "unknown-group" | "not-group-member" | "group-state" | "group-not-from-signer" | "group-user-key"
  | "group-chain-refused" | "group-chain-missing" | "group-envelope" | "group-decrypt"
  | "group-no-recipients";
"#;

#[wasm_bindgen]
extern "C" {
    /// The persistent storage (`TacitStorage` in TypeScript).
    #[wasm_bindgen(typescript_type = "TacitStorage")]
    pub type Storage;

    #[wasm_bindgen(method, catch)]
    fn load(this: &Storage) -> Result<Promise, JsValue>;

    #[wasm_bindgen(method, catch)]
    fn write(this: &Storage, records: Array) -> Result<Promise, JsValue>;
}

/// A device: a user id and a device id.
#[wasm_bindgen(getter_with_clone)]
#[derive(Debug, Clone)]
pub struct DeviceAddress {
    /// The user.
    #[wasm_bindgen(js_name = userId)]
    pub user_id: String,
    /// The device.
    #[wasm_bindgen(js_name = deviceId)]
    pub device_id: u32,
}

impl From<&Address> for DeviceAddress {
    fn from(a: &Address) -> Self {
        Self {
            user_id: a.user_id().into(),
            device_id: a.device_id(),
        }
    }
}

/// A sealed envelope for one device, to hand to the relay.
#[wasm_bindgen(getter_with_clone)]
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// The recipient's user.
    #[wasm_bindgen(js_name = userId)]
    pub user_id: String,
    /// The recipient's device.
    #[wasm_bindgen(js_name = deviceId)]
    pub device_id: u32,
    /// The sealed envelope.
    pub envelope: Vec<u8>,
    /// The message's 16-byte id (the same in every device's copy).
    #[wasm_bindgen(js_name = messageId)]
    pub message_id: Vec<u8>,
}

/// A message opened from an envelope.
#[wasm_bindgen(getter_with_clone)]
#[derive(Debug, Clone)]
pub struct Received {
    /// The sender's user, as its certificate authenticated it.
    #[wasm_bindgen(js_name = senderUserId)]
    pub sender_user_id: String,
    /// The sender's device.
    #[wasm_bindgen(js_name = senderDeviceId)]
    pub sender_device_id: u32,
    /// The content kind's code (1 text, 3 delivery receipt, 4 read
    /// receipt, ...: `docs/PROTOCOL.md`).
    pub kind: u32,
    /// The body (UTF-8 text for kind 1; the 16-byte ids of the messages
    /// for receipts).
    pub body: Vec<u8>,
    /// The sender's timestamp, in milliseconds since the Unix epoch.
    pub timestamp: f64,
    /// The message's 16-byte id.
    #[wasm_bindgen(js_name = messageId)]
    pub message_id: Vec<u8>,
    /// The first message from this device.
    #[wasm_bindgen(js_name = firstContact)]
    pub first_contact: bool,
    /// The message started a new session.
    #[wasm_bindgen(js_name = newSession)]
    pub new_session: bool,
    /// The device's identity key changed (and the change was accepted).
    #[wasm_bindgen(js_name = identityChanged)]
    pub identity_changed: bool,
    /// For a group control (kind 6): the group it named.
    #[wasm_bindgen(js_name = groupId)]
    pub group_id: Option<Vec<u8>>,
    /// For a group control: a new state of the group was taken.
    #[wasm_bindgen(js_name = groupChanged)]
    pub group_changed: bool,
    /// For a group control: the code of the error it was refused with (a
    /// `TacitErrorCode`), the pairwise message itself being read.
    #[wasm_bindgen(js_name = groupRefusal)]
    pub group_refusal: Option<String>,
    /// Group messages held for their chain that this control made
    /// readable, oldest first.
    #[wasm_bindgen(js_name = groupMessages)]
    pub group_messages: Vec<GroupReceived>,
}

/// One device of a user, its state persisted through a `TacitStorage`.
#[wasm_bindgen]
pub struct Tacit {
    pub(crate) manager: SessionManager<BrowserStore>,
    pub(crate) local: Local,
    storage: Storage,
    /// Set when the storage refused a write: the state in memory is then
    /// ahead of the stored one, and the device must be opened again.
    failed: Rc<Cell<bool>>,
}

impl core::fmt::Debug for Tacit {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Tacit")
            .field("address", self.manager.local_address())
            .finish_non_exhaustive()
    }
}

fn storage_key(key: &[u8]) -> Result<[u8; 32], Error> {
    <[u8; 32]>::try_from(key).map_err(|_| Error::invalid("the storage key must be 32 bytes"))
}

pub(crate) fn millis(ms: f64) -> Result<u64, Error> {
    if ms.is_finite() && (0.0..9.0e15).contains(&ms) {
        // In range, so the conversion is exact for whole milliseconds.
        Ok(ms as u64)
    } else {
        Err(Error::invalid(
            "a timestamp must be milliseconds since 1970",
        ))
    }
}

fn records_array(writes: &[Write]) -> Array {
    writes
        .iter()
        .map(|w| {
            let record = Object::new();
            let value: JsValue = match &w.value {
                Some(v) => Uint8Array::from(v.as_slice()).into(),
                None => JsValue::NULL,
            };
            // Setting properties on a fresh object cannot fail.
            let _ = Reflect::set(&record, &"key".into(), &w.key.as_str().into());
            let _ = Reflect::set(&record, &"value".into(), &value);
            JsValue::from(record)
        })
        .collect()
}

async fn load_records(storage: &Storage) -> Result<BTreeMap<String, Vec<u8>>, JsValue> {
    let loaded = JsFuture::from(storage.load()?).await?;
    let mut out = BTreeMap::new();
    for record in Array::from(&loaded).iter() {
        let key = Reflect::get(&record, &"key".into())?
            .as_string()
            .ok_or_else(|| Error::invalid("a stored record's key is not a string"))?;
        let value = Reflect::get(&record, &"value".into())?;
        let value = value
            .dyn_ref::<Uint8Array>()
            .ok_or_else(|| Error::invalid("a stored record's value is not a Uint8Array"))?
            .to_vec();
        out.insert(key, value);
    }
    Ok(out)
}

async fn write_all(storage: &Storage, writes: &[Write]) -> Result<(), JsValue> {
    if !writes.is_empty() {
        JsFuture::from(storage.write(records_array(writes))?).await?;
    }
    Ok(())
}

#[wasm_bindgen]
impl Tacit {
    /// Creates a device: a new user key, account and device list (version
    /// 1, this device alone), stored in `storage` (which must be empty)
    /// under the 32-byte `key`.
    pub async fn create(
        storage: Storage,
        key: Vec<u8>,
        #[wasm_bindgen(js_name = userId)] user_id: String,
        #[wasm_bindgen(js_name = deviceId)] device_id: u32,
        #[wasm_bindgen(js_name = nowMs)] now_ms: f64,
    ) -> Result<Tacit, JsValue> {
        let key = storage_key(&key)?;
        let now = millis(now_ms)?;
        if !load_records(&storage).await?.is_empty() {
            return Err(Error::new("account-exists", "the storage already holds a device").into());
        }
        let address =
            Address::new(&user_id, device_id).map_err(|e| Error::invalid(e.to_string()))?;
        let local = Local {
            address: address.clone(),
            user_key: UserKeyPair::generate(&mut OsRng),
        };
        let account = Account::generate(now, &mut OsRng);
        let list = DeviceList::sign(
            &local.user_key,
            &user_id,
            1,
            &[(device_id, account.identity().public_key(), now)],
        )
        .map_err(|e| Error::new("identity", e.to_string()))?;
        let store = BrowserStore::create(&key, &local).map_err(Error::from)?;
        let mut manager = SessionManager::create(store, address, account, SessionConfig::default())
            .map_err(Error::from)?;
        manager.update_device_list(&list).map_err(Error::from)?;
        manager
            .generate_one_time_prekeys(20, &mut OsRng)
            .map_err(Error::from)?;
        write_all(&storage, &manager.store().take_writes()).await?;
        Ok(Tacit {
            manager,
            local,
            storage,
            failed: Rc::default(),
        })
    }

    /// Opens the device stored in `storage` under `key`, or `undefined`
    /// when the storage is empty.
    pub async fn open(storage: Storage, key: Vec<u8>) -> Result<Option<Tacit>, JsValue> {
        let key = storage_key(&key)?;
        let records = load_records(&storage).await?;
        let Some((store, local)) = BrowserStore::open(&key, &records).map_err(Error::from)? else {
            return Ok(None);
        };
        let manager = SessionManager::open(store, local.address.clone(), SessionConfig::default())
            .map_err(Error::from)?;
        Ok(Some(Tacit {
            manager,
            local,
            storage,
            failed: Rc::default(),
        }))
    }

    /// The local user.
    #[wasm_bindgen(getter, js_name = userId)]
    pub fn user_id(&self) -> String {
        self.local.address.user_id().into()
    }

    /// The local device.
    #[wasm_bindgen(getter, js_name = deviceId)]
    pub fn device_id(&self) -> u32 {
        self.local.address.device_id()
    }

    /// The device's identity key (32 bytes).
    #[wasm_bindgen(js_name = identityKey)]
    pub fn identity_key(&self) -> Vec<u8> {
        self.manager
            .account()
            .identity()
            .public_key()
            .to_bytes()
            .to_vec()
    }

    /// The local user's key (32 bytes).
    #[wasm_bindgen(js_name = userKey)]
    pub fn user_key(&self) -> Vec<u8> {
        self.local.user_key.public_key().to_bytes().to_vec()
    }

    /// The local user's signed device list, in its wire form, to publish.
    #[wasm_bindgen(js_name = deviceList)]
    pub fn device_list(&self) -> Result<Vec<u8>, JsValue> {
        self.check()?;
        Ok(self.own_list()?.to_wire())
    }

    /// The device's prekey bundle (wire form), with a one-time prekey when
    /// one is left.
    pub fn bundle(&self) -> Result<Vec<u8>, JsValue> {
        self.check()?;
        let bundle = self
            .manager
            .account()
            .bundle(BundlePreKey::Auto)
            .map_err(|e| Error::new("account", e.to_string()))?;
        Ok(bundle.to_wire())
    }

    /// How many one-time prekeys are left.
    #[wasm_bindgen(js_name = oneTimePrekeyCount)]
    pub fn one_time_prekey_count(&self) -> u32 {
        u32::try_from(self.manager.account().one_time_prekey_count()).unwrap_or(u32::MAX)
    }

    /// Generates `count` more one-time prekeys.
    #[wasm_bindgen(js_name = generateOneTimePrekeys, unchecked_return_type = "Promise<void>")]
    pub fn generate_one_time_prekeys(&mut self, count: u32) -> Result<Promise, JsValue> {
        self.check()?;
        let count = usize::try_from(count).map_err(|_| Error::invalid("count"))?;
        self.manager
            .generate_one_time_prekeys(count, &mut OsRng)
            .map_err(Error::from)?;
        Ok(self.persist(JsValue::UNDEFINED))
    }

    /// Rotates the signed prekey at `nowMs`, keeping the replaced one for
    /// `graceMs` for first messages still on their way; resolves to the new
    /// prekey's id. Publish the new `bundle()` afterwards.
    #[wasm_bindgen(js_name = rotateSignedPrekey, unchecked_return_type = "Promise<number>")]
    pub fn rotate_signed_prekey(
        &mut self,
        #[wasm_bindgen(js_name = nowMs)] now_ms: f64,
        #[wasm_bindgen(js_name = graceMs)] grace_ms: f64,
    ) -> Result<Promise, JsValue> {
        self.check()?;
        let id = self
            .manager
            .rotate_signed_prekey(millis(now_ms)?, millis(grace_ms)?, &mut OsRng)
            .map_err(Error::from)?;
        Ok(self.persist(id.into()))
    }

    /// The profile of the current session with a device (`"tacit-v2"`:
    /// PQXDH, `"tacit-v1"`: X3DH), or `undefined` without one.
    #[wasm_bindgen(js_name = sessionProfile, unchecked_return_type = "\"tacit-v1\" | \"tacit-v2\" | undefined")]
    pub fn session_profile(
        &self,
        #[wasm_bindgen(js_name = userId)] user_id: &str,
        #[wasm_bindgen(js_name = deviceId)] device_id: u32,
    ) -> Result<Option<String>, JsValue> {
        self.check()?;
        let address =
            Address::new(user_id, device_id).map_err(|e| Error::invalid(e.to_string()))?;
        let info = self.manager.session_info(&address).map_err(Error::from)?;
        Ok(info.and_then(|i| i.current_profile).map(|p| {
            match p {
                Profile::V1 => "tacit-v1",
                _ => "tacit-v2",
            }
            .into()
        }))
    }

    /// Trusts a user's signed device list (wire form): the first one of a
    /// user on first use, later ones only with the same user key and a
    /// higher version. Resolves to `"first-contact"`, `"unchanged"` or
    /// `"updated"`.
    #[wasm_bindgen(
        js_name = updateDeviceList,
        unchecked_return_type = "Promise<\"first-contact\" | \"unchanged\" | \"updated\">"
    )]
    pub fn update_device_list(&mut self, list: &[u8]) -> Result<Promise, JsValue> {
        self.check()?;
        let list =
            DeviceList::from_wire(list).map_err(|e| Error::new("identity", e.to_string()))?;
        let update = self
            .manager
            .update_device_list(&list)
            .map_err(Error::from)?;
        let update = match update {
            DeviceListUpdate::FirstContact => "first-contact",
            DeviceListUpdate::Unchanged => "unchanged",
            _ => "updated",
        };
        Ok(self.persist(update.into()))
    }

    /// Trusts `list` and its user key in place of the trusted one, after
    /// the user compared the new safety number.
    #[wasm_bindgen(js_name = acceptUserKey, unchecked_return_type = "Promise<void>")]
    pub fn accept_user_key(&mut self, list: &[u8]) -> Result<Promise, JsValue> {
        self.check()?;
        let list =
            DeviceList::from_wire(list).map_err(|e| Error::new("identity", e.to_string()))?;
        self.manager.accept_user_key(&list).map_err(Error::from)?;
        Ok(self.persist(JsValue::UNDEFINED))
    }

    /// The devices a message to `userId` goes to that have no session yet:
    /// fetch their bundles and `processBundle` them first.
    #[wasm_bindgen(js_name = missingSessions)]
    pub fn missing_sessions(
        &self,
        #[wasm_bindgen(js_name = userId)] user_id: &str,
    ) -> Result<Vec<DeviceAddress>, JsValue> {
        self.check()?;
        let missing = self
            .manager
            .missing_sessions(user_id)
            .map_err(Error::from)?;
        Ok(missing.iter().map(DeviceAddress::from).collect())
    }

    /// Starts a session with a device from its prekey bundle (wire form).
    /// The device must be on its user's trusted list. Resolves to whether
    /// the device's identity changed.
    #[wasm_bindgen(js_name = processBundle, unchecked_return_type = "Promise<boolean>")]
    pub fn process_bundle(
        &mut self,
        #[wasm_bindgen(js_name = userId)] user_id: &str,
        #[wasm_bindgen(js_name = deviceId)] device_id: u32,
        bundle: &[u8],
    ) -> Result<Promise, JsValue> {
        self.check()?;
        let address =
            Address::new(user_id, device_id).map_err(|e| Error::invalid(e.to_string()))?;
        let bundle = PreKeyBundleMessage::from_wire(bundle)
            .map_err(|e| Error::new("handshake", e.to_string()))?;
        let change = self
            .manager
            .process_bundle(&address, &bundle, &mut OsRng)
            .map_err(Error::from)?;
        Ok(self.persist(change.is_some().into()))
    }

    /// Seals a message of content kind `kind` with `body` for every device
    /// of `userId` (and the local user's other devices). Every kind but a
    /// delivery receipt carries this device's delivery token, once set
    /// (`deliveryTokenFrame`), in field 16.
    #[wasm_bindgen(unchecked_return_type = "Promise<Outgoing[]>")]
    pub fn seal(
        &mut self,
        #[wasm_bindgen(js_name = userId)] user_id: &str,
        kind: u32,
        body: Vec<u8>,
        #[wasm_bindgen(js_name = timestampMs)] timestamp_ms: f64,
    ) -> Result<Promise, JsValue> {
        self.check()?;
        let kind =
            ContentKind::from_code(kind).map_err(|e| Error::new("content", e.to_string()))?;
        let content = Content::new(kind, body, millis(timestamp_ms)?, &mut OsRng)
            .map_err(|e| Error::new("content", e.to_string()))?;
        let sealed = crate::tokens::seal_for_user(&mut self.manager, user_id, &content)?;
        let out: Array = sealed
            .into_iter()
            .map(|o| {
                JsValue::from(Outgoing {
                    user_id: o.recipient.user_id().into(),
                    device_id: o.recipient.device_id(),
                    envelope: o.envelope,
                    message_id: content.message_id().to_vec(),
                })
            })
            .collect();
        Ok(self.persist(out.into()))
    }

    /// Seals a text message for every device of `userId`.
    #[wasm_bindgen(js_name = sealText, unchecked_return_type = "Promise<Outgoing[]>")]
    pub fn seal_text(
        &mut self,
        #[wasm_bindgen(js_name = userId)] user_id: &str,
        text: &str,
        #[wasm_bindgen(js_name = timestampMs)] timestamp_ms: f64,
    ) -> Result<Promise, JsValue> {
        self.seal(
            user_id,
            ContentKind::Text.code(),
            text.as_bytes().to_vec(),
            timestamp_ms,
        )
    }

    /// Opens an envelope addressed to this device. An envelope that does not
    /// open, or a sender not on its user's trusted list, throws and changes
    /// nothing. A group control (kind 6) is taken here (`groupId`,
    /// `groupChanged`, `groupRefusal`, `groupMessages`). The sender's
    /// delivery token, when the content carries one, is recorded with the
    /// rest (`submitFrame` presents it).
    #[wasm_bindgen(js_name = openEnvelope, unchecked_return_type = "Promise<Received>")]
    pub fn open_envelope(&mut self, envelope: &[u8]) -> Result<Promise, JsValue> {
        self.check()?;
        let received = crate::tokens::open_envelope(&mut self.manager, envelope)?;
        let out = Received {
            sender_user_id: received.sender.user_id().into(),
            sender_device_id: received.sender.device_id(),
            kind: received.content.kind().code(),
            body: received.content.body().to_vec(),
            // Timestamps below 2^53 ms are exact as numbers.
            timestamp: received.content.timestamp() as f64,
            message_id: received.content.message_id().to_vec(),
            first_contact: received.first_contact,
            new_session: received.new_session,
            identity_changed: received.identity_change.is_some(),
            group_id: None,
            group_changed: false,
            group_refusal: None,
            group_messages: Vec::new(),
        };
        let out = if received.content.kind() == ContentKind::SessionControl {
            // The pairwise message is read either way: a refusal is reported.
            let outcome = groups::control(&mut self.manager, &received).unwrap_or_else(|e| {
                groups::ControlOutcome {
                    refused: Some(e),
                    ..Default::default()
                }
            });
            Received {
                group_id: outcome.group_id.map(|id| id.to_vec()),
                group_changed: outcome.changed,
                group_refusal: outcome.refused.map(|e| e.code.into()),
                group_messages: outcome.released.into_iter().map(Into::into).collect(),
                ..out
            }
        } else {
            out
        };
        Ok(self.persist(out.into()))
    }

    /// The safety number of the local user and `userId` (60 digits).
    #[wasm_bindgen(js_name = safetyNumber)]
    pub fn safety_number(
        &self,
        #[wasm_bindgen(js_name = userId)] user_id: &str,
    ) -> Result<String, JsValue> {
        self.check()?;
        let number = self.manager.safety_number(user_id).map_err(Error::from)?;
        Ok(number.as_str().into())
    }
}

impl Tacit {
    /// The local user's stored device list.
    pub(crate) fn own_list(&self) -> Result<DeviceList, Error> {
        self.manager
            .device_list(self.local.address.user_id())?
            .ok_or_else(|| Error::new("not-on-own-list", "no device list stored"))
    }

    /// Refuses every call once a write failed.
    pub(crate) fn check(&self) -> Result<(), Error> {
        if self.failed.get() {
            Err(Error::new(
                "storage-failed",
                "a write to the storage failed: open the device again",
            ))
        } else {
            Ok(())
        }
    }

    /// Hands the queued writes to the storage now (so writes reach it in
    /// the order of the calls) and resolves to `value` once they are
    /// written.
    pub(crate) fn persist(&self, value: JsValue) -> Promise {
        let writes = self.manager.store().take_writes();
        let write = if writes.is_empty() {
            None
        } else {
            Some(self.storage.write(records_array(&writes)))
        };
        let failed = self.failed.clone();
        future_to_promise(async move {
            let result = match write {
                None => Ok(JsValue::UNDEFINED),
                Some(Ok(promise)) => JsFuture::from(promise).await,
                Some(Err(e)) => Err(e),
            };
            match result {
                Ok(_) => Ok(value),
                Err(e) => {
                    failed.set(true);
                    let message = e
                        .dyn_ref::<js_sys::Error>()
                        .map(|e| String::from(e.message()))
                        .unwrap_or_else(|| "the storage refused a write".into());
                    Err(Error::new("storage-failed", message).into())
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::error::CODES;

    /// The TypeScript section as written in this file (the macro keeps no
    /// constant of it outside WebAssembly builds).
    const SOURCE: &str = include_str!("api.rs");

    #[test]
    fn the_typescript_error_codes_are_the_codes() {
        let declared: Vec<&str> = SOURCE
            .split("export type TacitErrorCode =")
            .nth(1)
            .unwrap_or_default()
            .split(';')
            .next()
            .unwrap_or_default()
            .split('|')
            .map(|c| c.trim().trim_matches('"'))
            .collect();
        assert_eq!(declared, CODES);
    }
}
