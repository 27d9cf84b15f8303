//! The browser store: the session state in memory, every change sealed
//! (`tacit-seal`, label `tacit-wasm/v1`) into writes for the page's
//! persistent storage (IndexedDB).
//!
//! ```text
//! storage key   table         row key                 record
//! "meta"        meta          "key_check"             a fixed constant
//! "local"       local         "local"                 user key seed (32) || device id (u32 BE) || user id
//! "account"     account       "account"               Account::to_bytes
//! "identity/" h identities    user_tag || device id   address || identity key (32)
//! "session/" h  sessions      user_tag || device id   address || SessionRecord::to_bytes
//! "list/" h     device_lists  user_tag                the list's wire bytes
//! "app/" h      app_records   name_tag                name length (u16 BE) || name || value
//! "group/" h     groups        id_tag                  id length (u16 BE) || id || value
//! "group-out/" h group_out     id_tag                  (the same)
//! "group-in/" h  group_in      id_tag                  (the same)
//! "group-held/" h group_held   id_tag                  (the same)
//! "token"       delivery_token "token"                this device's delivery token
//! "peer-token/" h peer_tokens  user_tag || device id   address || the device's token
//! address    = user id length (u16 BE) || user id || device id (u32 BE)
//! user_tag   = HMAC-SHA256(index_key, user id);  h = hex of the row key
//! name_tag   = HMAC-SHA256(index_key, "app/" || name)
//! id_tag     = HMAC-SHA256(index_key, prefix || id)   (prefix: "group/", ...)
//! ```
//!
//! App records are the page's own (a chat's history, say), sealed like the
//! rest: [`BrowserStore::put_app_record`]. Group records are the group
//! layer's ([`crate::groups`], `docs/PROTOCOL.md` 11):
//! [`BrowserStore::put_group_record`]. Delivery tokens, this device's and
//! its correspondents' (`docs/client.md`, "Delivery tokens"), are
//! kept by [`crate::tokens`].
//!
//! Storage keys show only tags, so the database does not list whom the
//! device talks to. Every record is sealed at generation 0: the browser
//! offers no place outside the database to keep a high-water mark, so a
//! database put back whole to an older copy is not detected (a record moved
//! to another row, or altered, is: [`StoreError::Tampered`]).

use std::cell::RefCell;
use std::collections::BTreeMap;

use rand_core::OsRng;
use tacit::error::{StateError, StoreError};
use tacit::identity::{DeviceList, UserKeyPair};
use tacit::keys::IdentityKey;
use tacit::session::{Account, SessionRecord};
use tacit::store::{Changes, IdentityStore, InMemoryStore, PreKeyStore, SessionStore, Store};
use tacit::{Address, DeviceId};
use tacit_relay_proto::DeliveryToken;
use tacit_seal::RecordSealer;
use zeroize::Zeroizing;

/// The label of the sealing construction for this store.
pub const SEAL_LABEL: &str = "tacit-wasm/v1";
const KEY_CHECK: &[u8] = b"tacit-wasm key check v1";

/// One write to the persistent storage: `value` (a sealed record) under
/// `key`, or the deletion of `key` when `value` is `None`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Write {
    /// The storage key.
    pub key: String,
    /// The sealed record, or `None` to delete.
    pub value: Option<Vec<u8>>,
}

/// The local device as stored: its user, the user's key pair and its
/// device id.
#[derive(Debug, Clone)]
pub struct Local {
    /// The local device's address.
    pub address: Address,
    /// The local user's key pair (it signs the user's device lists).
    pub user_key: UserKeyPair,
}

/// The session state of one device, in memory, with the sealed writes of
/// its changes waiting for [`take_writes`](Self::take_writes).
#[derive(Debug)]
pub struct BrowserStore {
    sealer: RecordSealer,
    inner: InMemoryStore,
    pub(crate) pending: RefCell<Vec<Write>>,
    app: RefCell<BTreeMap<String, Zeroizing<Vec<u8>>>>,
    grouped: RefCell<GroupRecords>,
    pub(crate) own_token: RefCell<Option<DeliveryToken>>,
    pub(crate) peer_tokens: RefCell<BTreeMap<Address, DeliveryToken>>,
}

/// The group records in memory, by table and id.
type GroupRecords = BTreeMap<(GroupTable, Vec<u8>), Zeroizing<Vec<u8>>>;

/// A table of group records, each a value under an id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum GroupTable {
    /// A group record, by group id.
    Groups,
    /// This device's outbound chain of a group, by group id.
    Out,
    /// An inbound chain, by group id and signing key.
    In,
    /// A group message waiting for its chain, by its position.
    Held,
}

impl GroupTable {
    const ALL: [Self; 4] = [Self::Groups, Self::Out, Self::In, Self::Held];

    /// The table's name (the sealing's table label).
    fn table(self) -> &'static str {
        match self {
            Self::Groups => "groups",
            Self::Out => "group_out",
            Self::In => "group_in",
            Self::Held => "group_held",
        }
    }

    /// The storage key's prefix, also the prefix of the tagged id.
    fn prefix(self) -> &'static str {
        match self {
            Self::Groups => "group",
            Self::Out => "group-out",
            Self::In => "group-in",
            Self::Held => "group-held",
        }
    }

    fn of_table(table: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.table() == table)
    }
}

/// The longest app record name, in bytes.
pub const MAX_APP_NAME_LEN: usize = 256;
/// The largest app record value, in bytes.
pub const MAX_APP_VALUE_LEN: usize = 64 * 1024;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub(crate) fn encode_address(address: &Address, payload: &[u8]) -> Zeroizing<Vec<u8>> {
    let user = address.user_id().as_bytes();
    let mut out = Vec::with_capacity(6 + user.len() + payload.len());
    // A user id is at most 64 bytes (`Address::new`).
    out.extend_from_slice(&(user.len() as u16).to_be_bytes());
    out.extend_from_slice(user);
    out.extend_from_slice(&address.device_id().to_be_bytes());
    out.extend_from_slice(payload);
    Zeroizing::new(out)
}

pub(crate) fn decode_address<'a>(
    table: &'static str,
    record: &'a [u8],
) -> Result<(Address, &'a [u8]), StoreError> {
    let corrupt = || StoreError::Corrupt {
        table,
        error: StateError::Corrupt,
    };
    let (len, rest) = record.split_first_chunk::<2>().ok_or_else(corrupt)?;
    let len = usize::from(u16::from_be_bytes(*len));
    if rest.len() < len + 4 {
        return Err(corrupt());
    }
    let (user, rest) = rest.split_at(len);
    let (device, payload) = rest.split_at(4);
    let user = core::str::from_utf8(user).map_err(|_| corrupt())?;
    let mut device_id = [0u8; 4];
    device_id.copy_from_slice(device);
    let address = Address::new(user, u32::from_be_bytes(device_id)).map_err(|_| corrupt())?;
    Ok((address, payload))
}

impl BrowserStore {
    /// An empty store sealing under `key`, whose first writes are its key
    /// check and `local`.
    pub fn create(key: &[u8; 32], local: &Local) -> Result<Self, StoreError> {
        let mut store = Self {
            sealer: RecordSealer::new(key, SEAL_LABEL),
            inner: InMemoryStore::new(),
            pending: RefCell::default(),
            app: RefCell::default(),
            grouped: RefCell::default(),
            own_token: RefCell::default(),
            peer_tokens: RefCell::default(),
        };
        let check = store.seal_write("meta", b"key_check", KEY_CHECK)?;
        let local = store.seal_write("local", b"local", &encode_local(local))?;
        store.pending.get_mut().extend([check, local]);
        Ok(store)
    }

    /// Opens the records `records` (storage key, sealed value) read from
    /// the persistent storage: [`StoreError::WrongKey`] under another key,
    /// [`StoreError::Tampered`] for a record that does not open where it
    /// is, [`StoreError::Corrupt`] for one that opens but does not decode.
    /// `Ok(None)` when the storage holds nothing.
    pub fn open(
        key: &[u8; 32],
        records: &BTreeMap<String, Vec<u8>>,
    ) -> Result<Option<(Self, Local)>, StoreError> {
        if records.is_empty() {
            return Ok(None);
        }
        let sealer = RecordSealer::new(key, SEAL_LABEL);
        match records
            .get("meta")
            .and_then(|v| sealer.open("meta", b"key_check", 0, v))
        {
            Some(check) if check.as_slice() == KEY_CHECK => {}
            _ => return Err(StoreError::WrongKey),
        }
        let store = Self {
            sealer,
            inner: InMemoryStore::new(),
            pending: RefCell::default(),
            app: RefCell::default(),
            grouped: RefCell::default(),
            own_token: RefCell::default(),
            peer_tokens: RefCell::default(),
        };
        let mut local = None;
        let mut app = BTreeMap::new();
        let mut grouped = BTreeMap::new();
        let mut own_token = None;
        let mut peer_tokens = BTreeMap::new();
        let mut changes = Changes::new();
        for (storage_key, value) in records {
            let (table, row) = parse_key(storage_key).ok_or_else(|| StoreError::Tampered {
                table: "records",
                row: storage_key.clone(),
            })?;
            let record = store.open_record(table, &row, value)?;
            match table {
                "meta" => {}
                "local" => local = Some(decode_local(&record)?),
                "app_records" => {
                    let (name, value) = decode_app(&record)?;
                    if row != store.app_row(&name) {
                        return Err(tampered(table, &row));
                    }
                    app.insert(name, Zeroizing::new(value.to_vec()));
                }
                _ if GroupTable::of_table(table).is_some() => {
                    let (id, value) = decode_named(table, &record)?;
                    let kind = GroupTable::of_table(table).ok_or_else(|| tampered(table, &row))?;
                    if row != store.group_row(kind, id) {
                        return Err(tampered(table, &row));
                    }
                    grouped.insert((kind, id.to_vec()), Zeroizing::new(value.to_vec()));
                }
                "delivery_token" => own_token = Some(decode_token(table, &record)?),
                "peer_tokens" => {
                    let (address, token) = decode_address(table, &record)?;
                    store.check_row(table, &row, &address)?;
                    peer_tokens.insert(address, decode_token(table, token)?);
                }
                "account" => {
                    let account = Account::from_bytes(&record)
                        .map_err(|error| StoreError::Corrupt { table, error })?;
                    changes = changes.with_account(account);
                }
                "identities" => {
                    let (address, key) = decode_address(table, &record)?;
                    let key = <&[u8; 32]>::try_from(key)
                        .ok()
                        .and_then(|k| IdentityKey::from_bytes(k).ok())
                        .ok_or(StoreError::Corrupt {
                            table,
                            error: StateError::Corrupt,
                        })?;
                    store.check_row(table, &row, &address)?;
                    changes = changes.with_identity(address, key);
                }
                "sessions" => {
                    let (address, bytes) = decode_address(table, &record)?;
                    let session = SessionRecord::from_bytes(bytes)
                        .map_err(|error| StoreError::Corrupt { table, error })?;
                    store.check_row(table, &row, &address)?;
                    changes = changes.with_session(address, Some(session));
                }
                _ => {
                    let list = DeviceList::from_wire(&record).map_err(|_| StoreError::Corrupt {
                        table,
                        error: StateError::Corrupt,
                    })?;
                    if row != store.sealer.tag(list.user_id().as_bytes()) {
                        // As in tacit-sqlite: a list that names another user.
                        return Err(StoreError::Corrupt {
                            table,
                            error: StateError::Corrupt,
                        });
                    }
                    changes = changes.with_device_list(list);
                }
            }
        }
        let local = local.ok_or(StoreError::Corrupt {
            table: "local",
            error: StateError::Corrupt,
        })?;
        let mut store = store;
        store.inner.commit(changes)?;
        store.app = RefCell::new(app);
        store.grouped = RefCell::new(grouped);
        store.own_token = RefCell::new(own_token);
        store.peer_tokens = RefCell::new(peer_tokens);
        Ok(Some((store, local)))
    }

    /// The sealed writes of every change since the last call, in order.
    pub fn take_writes(&self) -> Vec<Write> {
        self.pending.take()
    }

    /// The app record `name`.
    pub fn app_record(&self, name: &str) -> Option<Vec<u8>> {
        self.app.borrow().get(name).map(|v| v.to_vec())
    }

    /// The names of the app records that start with `prefix`, in order.
    pub fn app_names(&self, prefix: &str) -> Vec<String> {
        self.app
            .borrow()
            .range(prefix.to_owned()..)
            .take_while(|(name, _)| name.starts_with(prefix))
            .map(|(name, _)| name.clone())
            .collect()
    }

    /// Stores `value` as the app record `name` (or deletes it with `None`)
    /// and queues its sealed write. A name of 1 to [`MAX_APP_NAME_LEN`]
    /// bytes and a value of at most [`MAX_APP_VALUE_LEN`], or nothing
    /// changes.
    pub fn put_app_record(&self, name: &str, value: Option<&[u8]>) -> Result<(), StoreError> {
        let bad = || {
            StoreError::backend_message(
                "an app record: a name of 1 to 256 bytes, a value of at most 64 KiB",
            )
        };
        if name.is_empty() || name.len() > MAX_APP_NAME_LEN {
            return Err(bad());
        }
        let row = self.app_row(name);
        let write = match value {
            Some(value) if value.len() > MAX_APP_VALUE_LEN => return Err(bad()),
            Some(value) => {
                let mut record = Zeroizing::new(Vec::with_capacity(2 + name.len() + value.len()));
                // At most 256 bytes: fits.
                record.extend_from_slice(&(name.len() as u16).to_be_bytes());
                record.extend_from_slice(name.as_bytes());
                record.extend_from_slice(value);
                self.seal_write("app_records", &row, &record)?
            }
            None => Write {
                key: storage_key("app_records", &row),
                value: None,
            },
        };
        match value {
            Some(value) => self
                .app
                .borrow_mut()
                .insert(name.into(), Zeroizing::new(value.to_vec())),
            None => self.app.borrow_mut().remove(name),
        };
        self.pending.borrow_mut().push(write);
        Ok(())
    }

    /// The group record `id` of `table`.
    pub fn group_record(&self, table: GroupTable, id: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
        self.grouped
            .borrow()
            .get(&(table, id.to_vec()))
            .map(|v| Zeroizing::new(v.to_vec()))
    }

    /// The group records of `table` whose id starts with `prefix`, in the
    /// order of their ids.
    pub fn group_records(
        &self,
        table: GroupTable,
        prefix: &[u8],
    ) -> Vec<(Vec<u8>, Zeroizing<Vec<u8>>)> {
        self.grouped
            .borrow()
            .range((table, prefix.to_vec())..)
            .take_while(|((t, id), _)| *t == table && id.starts_with(prefix))
            .map(|((_, id), v)| (id.clone(), Zeroizing::new(v.to_vec())))
            .collect()
    }

    /// Stores `value` as the group record `id` of `table` (or deletes it
    /// with `None`) and queues its sealed write.
    pub fn put_group_record(
        &self,
        table: GroupTable,
        id: &[u8],
        value: Option<&[u8]>,
    ) -> Result<(), StoreError> {
        let row = self.group_row(table, id);
        let write = match value {
            Some(value) => {
                let len = u16::try_from(id.len())
                    .map_err(|_| StoreError::backend_message("a group record id is too long"))?;
                let mut record = Zeroizing::new(Vec::with_capacity(2 + id.len() + value.len()));
                record.extend_from_slice(&len.to_be_bytes());
                record.extend_from_slice(id);
                record.extend_from_slice(value);
                self.seal_write(table.table(), &row, &record)?
            }
            None => Write {
                key: storage_key(table.table(), &row),
                value: None,
            },
        };
        let key = (table, id.to_vec());
        match value {
            Some(value) => self
                .grouped
                .borrow_mut()
                .insert(key, Zeroizing::new(value.to_vec())),
            None => self.grouped.borrow_mut().remove(&key),
        };
        self.pending.borrow_mut().push(write);
        Ok(())
    }

    fn group_row(&self, table: GroupTable, id: &[u8]) -> Vec<u8> {
        let mut tagged = format!("{}/", table.prefix()).into_bytes();
        tagged.extend_from_slice(id);
        self.sealer.tag(&tagged).to_vec()
    }

    fn app_row(&self, name: &str) -> Vec<u8> {
        let mut tagged = b"app/".to_vec();
        tagged.extend_from_slice(name.as_bytes());
        self.sealer.tag(&tagged).to_vec()
    }

    pub(crate) fn address_row(&self, address: &Address) -> Vec<u8> {
        let mut row = self.sealer.tag(address.user_id().as_bytes()).to_vec();
        row.extend_from_slice(&address.device_id().to_be_bytes());
        row
    }

    /// Refuses a record whose address does not match its row.
    fn check_row(
        &self,
        table: &'static str,
        row: &[u8],
        address: &Address,
    ) -> Result<(), StoreError> {
        if self.address_row(address) == row {
            Ok(())
        } else {
            Err(tampered(table, row))
        }
    }

    pub(crate) fn seal_write(
        &self,
        table: &str,
        row: &[u8],
        record: &[u8],
    ) -> Result<Write, StoreError> {
        Ok(Write {
            key: storage_key(table, row),
            value: Some(
                self.sealer
                    .seal(table, row, 0, record, &mut OsRng)
                    .map_err(|e| StoreError::backend("sealing", e))?,
            ),
        })
    }

    fn open_record(
        &self,
        table: &'static str,
        row: &[u8],
        value: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, StoreError> {
        self.sealer
            .open(table, row, 0, value)
            .ok_or_else(|| tampered(table, row))
    }

    fn seal_changes(&self, changes: &Changes) -> Result<Vec<Write>, StoreError> {
        let mut out = Vec::new();
        if let Some(account) = &changes.account {
            out.push(self.seal_write("account", b"account", &account.to_bytes())?);
        }
        for (address, key) in &changes.identities {
            let record = encode_address(address, &key.to_bytes());
            out.push(self.seal_write("identities", &self.address_row(address), &record)?);
        }
        for (address, session) in &changes.sessions {
            let row = self.address_row(address);
            out.push(match session {
                Some(session) => {
                    let record = encode_address(address, &session.to_bytes());
                    self.seal_write("sessions", &row, &record)?
                }
                None => Write {
                    key: storage_key("sessions", &row),
                    value: None,
                },
            });
        }
        for list in &changes.device_lists {
            let row = self.sealer.tag(list.user_id().as_bytes());
            out.push(self.seal_write("device_lists", &row, &list.to_wire())?);
        }
        Ok(out)
    }
}

fn tampered(table: &'static str, row: &[u8]) -> StoreError {
    StoreError::Tampered {
        table,
        row: hex(row),
    }
}

/// The storage key of `row` in `table`.
fn storage_key(table: &str, row: &[u8]) -> String {
    match table {
        "meta" | "local" | "account" => table.into(),
        "delivery_token" => "token".into(),
        "peer_tokens" => format!("peer-token/{}", hex(row)),
        "identities" => format!("identity/{}", hex(row)),
        "sessions" => format!("session/{}", hex(row)),
        "app_records" => format!("app/{}", hex(row)),
        "device_lists" => format!("list/{}", hex(row)),
        other => match GroupTable::of_table(other) {
            Some(t) => format!("{}/{}", t.prefix(), hex(row)),
            None => format!("list/{}", hex(row)),
        },
    }
}

/// The table and row of a storage key.
fn parse_key(key: &str) -> Option<(&'static str, Vec<u8>)> {
    let (table, row_hex) = match key {
        "meta" => return Some(("meta", b"key_check".to_vec())),
        "local" => return Some(("local", b"local".to_vec())),
        "account" => return Some(("account", b"account".to_vec())),
        "token" => return Some(("delivery_token", b"token".to_vec())),
        _ => {
            let (prefix, row) = key.split_once('/')?;
            let table = match prefix {
                "identity" => "identities",
                "session" => "sessions",
                "list" => "device_lists",
                "app" => "app_records",
                "peer-token" => "peer_tokens",
                other => GroupTable::ALL
                    .into_iter()
                    .find(|t| t.prefix() == other)?
                    .table(),
            };
            (table, row)
        }
    };
    if row_hex.len() % 2 != 0 || !row_hex.is_ascii() {
        return None;
    }
    let row = (0..row_hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&row_hex[i..i + 2], 16).ok())
        .collect::<Option<Vec<u8>>>()?;
    Some((table, row))
}

fn decode_app(record: &[u8]) -> Result<(String, &[u8]), StoreError> {
    let (name, value) = decode_named("app_records", record)?;
    let name = core::str::from_utf8(name).map_err(|_| StoreError::Corrupt {
        table: "app_records",
        error: StateError::Corrupt,
    })?;
    Ok((name.into(), value))
}

/// `len (u16 BE) || name || value`: the name and the value.
fn decode_named<'a>(
    table: &'static str,
    record: &'a [u8],
) -> Result<(&'a [u8], &'a [u8]), StoreError> {
    let corrupt = || StoreError::Corrupt {
        table,
        error: StateError::Corrupt,
    };
    let (len, rest) = record.split_first_chunk::<2>().ok_or_else(corrupt)?;
    let len = usize::from(u16::from_be_bytes(*len));
    if rest.len() < len {
        return Err(corrupt());
    }
    Ok(rest.split_at(len))
}

/// A stored delivery token: 16 to 64 bytes, or the record is corrupt.
fn decode_token(table: &'static str, bytes: &[u8]) -> Result<DeliveryToken, StoreError> {
    DeliveryToken::new(bytes).map_err(|_| StoreError::Corrupt {
        table,
        error: StateError::Corrupt,
    })
}

fn encode_local(local: &Local) -> Zeroizing<Vec<u8>> {
    let mut out = Zeroizing::new(local.user_key.seed().as_bytes().to_vec());
    out.extend_from_slice(&local.address.device_id().to_be_bytes());
    out.extend_from_slice(local.address.user_id().as_bytes());
    out
}

fn decode_local(record: &[u8]) -> Result<Local, StoreError> {
    let corrupt = || StoreError::Corrupt {
        table: "local",
        error: StateError::Corrupt,
    };
    let (seed, rest) = record.split_first_chunk::<32>().ok_or_else(corrupt)?;
    let (device, user) = rest.split_first_chunk::<4>().ok_or_else(corrupt)?;
    let user = core::str::from_utf8(user).map_err(|_| corrupt())?;
    let address = Address::new(user, u32::from_be_bytes(*device)).map_err(|_| corrupt())?;
    Ok(Local {
        address,
        user_key: UserKeyPair::from_seed(seed),
    })
}

impl IdentityStore for BrowserStore {
    fn trusted_identity(&self, address: &Address) -> Result<Option<IdentityKey>, StoreError> {
        self.inner.trusted_identity(address)
    }

    fn device_list(&self, user_id: &str) -> Result<Option<DeviceList>, StoreError> {
        self.inner.device_list(user_id)
    }
}

impl PreKeyStore for BrowserStore {
    fn load_account(&self) -> Result<Option<Account>, StoreError> {
        self.inner.load_account()
    }
}

impl SessionStore for BrowserStore {
    fn load_session(&self, address: &Address) -> Result<Option<SessionRecord>, StoreError> {
        self.inner.load_session(address)
    }

    fn session_devices(&self, user_id: &str) -> Result<Vec<DeviceId>, StoreError> {
        self.inner.session_devices(user_id)
    }
}

impl Store for BrowserStore {
    /// Seals every change first (nothing changes if one fails), then applies
    /// them in memory and queues their writes.
    fn commit(&mut self, changes: Changes) -> Result<(), StoreError> {
        let writes = self.seal_changes(&changes)?;
        self.inner.commit(changes)?;
        self.pending.get_mut().extend(writes);
        Ok(())
    }
}
