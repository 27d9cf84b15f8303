//! The client's group records (`docs/client.md` "Groups"): the group
//! record, this device's outbound sender chain, the inbound chains, group
//! envelopes waiting for their chain, and the group history. All are
//! sealed at rest like every record, and written with [`Writes`], in the
//! transaction of the pairwise session change that carried them.

use serde::{Deserialize, Serialize};
use tacit::error::StoreError;
use tacit::group::{Group, InboundChain, OutboundChain};
use tacit::{Address, DeviceId};
use tacit_sqlite::AppWrite;
use zeroize::Zeroizing;

use super::{corrupt, decode, encode, status_code, status_from, ClientStore, Writes};
use crate::groups::GroupHistoryEntry;
use crate::Direction;

/// The group record (`Group::to_bytes`), by group id.
const GROUP: &str = "client/group";
/// This device's outbound chain of a group and the devices it reached.
const GROUP_OUT: &str = "client/group-out";
/// An inbound chain, by group id and signing key.
const GROUP_IN: &str = "client/group-in";
/// A group message waiting for its chain, by envelope digest.
const GROUP_PENDING: &str = "client/group-pending";
/// Group history entries.
const GROUP_HISTORY: &str = "client/group-history";

/// This device's outbound chain and the devices it was distributed to.
#[derive(Debug)]
pub(crate) struct OutboundRecord {
    /// The chain; its state hash names the state it belongs to.
    pub(crate) chain: OutboundChain,
    /// The devices whose mailbox holds the chain's distribution.
    pub(crate) distributed: Vec<Address>,
}

#[derive(Serialize, Deserialize)]
struct StoredOutbound {
    chain: Vec<u8>,
    distributed: Vec<(String, DeviceId)>,
}

impl Drop for StoredOutbound {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.chain);
    }
}

/// An inbound chain and the device that sent it.
#[derive(Debug)]
pub(crate) struct InboundRecord {
    /// The sending device.
    pub(crate) sender: Address,
    /// The chain (its group id, state hash and signing key name it).
    pub(crate) chain: InboundChain,
}

#[derive(Serialize, Deserialize)]
struct StoredInbound {
    sender_user: String,
    sender_device: DeviceId,
    chain: Vec<u8>,
}

impl Drop for StoredInbound {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.chain);
    }
}

/// A group message held until its chain (or its state) arrives.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct PendingGroupMessage {
    /// The group envelope's digest (the record's key).
    pub(crate) digest: [u8; 32],
    /// The relay's id of the envelope.
    pub(crate) relay_id: u64,
    /// When it was held (this device's clock).
    pub(crate) held_at_ms: u64,
    /// The decoded group message's bytes (the envelope opened).
    pub(crate) message: Vec<u8>,
}

#[derive(Serialize, Deserialize)]
struct StoredGroupEntry {
    group: [u8; 32],
    direction: u8,
    sender_user: String,
    sender_device: DeviceId,
    message_id: [u8; 16],
    timestamp_ms: u64,
    text: String,
    status: u8,
}

fn in_key(group: &[u8; 32], signing_key: &[u8; 32]) -> [u8; 64] {
    let mut key = [0u8; 64];
    key[..32].copy_from_slice(group);
    key[32..].copy_from_slice(signing_key);
    key
}

fn history_key(entry: &GroupHistoryEntry) -> Vec<u8> {
    let mut key = Vec::with_capacity(90);
    match entry.direction {
        // Found by id alone when receipts arrive.
        Direction::Outgoing => key.push(b'o'),
        Direction::Incoming => {
            key.push(b'i');
            key.extend_from_slice(&entry.group);
            key.extend_from_slice(&super::content_key(&entry.sender, &entry.message_id));
        }
    }
    key.extend_from_slice(&entry.message_id);
    key
}

impl Writes {
    /// Writes a group record.
    pub(crate) fn group(&mut self, group: &Group) {
        self.0.push(AppWrite::put(
            GROUP,
            &group.group_id().to_bytes(),
            group.to_bytes(),
        ));
    }

    /// Writes this device's outbound chain of its group.
    pub(crate) fn group_out(&mut self, record: &OutboundRecord) -> Result<(), StoreError> {
        let stored = StoredOutbound {
            chain: record.chain.to_bytes().to_vec(),
            distributed: record
                .distributed
                .iter()
                .map(|a| (a.user_id().to_owned(), a.device_id()))
                .collect(),
        };
        let bytes = Zeroizing::new(encode(&stored)?);
        self.0.push(AppWrite::put(
            GROUP_OUT,
            record.chain.group_id(),
            bytes.to_vec(),
        ));
        Ok(())
    }

    /// Deletes this device's outbound chain of `group`.
    pub(crate) fn delete_group_out(&mut self, group: &[u8; 32]) {
        self.0.push(AppWrite::delete(GROUP_OUT, group));
    }

    /// Writes an inbound chain.
    pub(crate) fn group_in(&mut self, record: &InboundRecord) -> Result<(), StoreError> {
        let stored = StoredInbound {
            sender_user: record.sender.user_id().to_owned(),
            sender_device: record.sender.device_id(),
            chain: record.chain.to_bytes().to_vec(),
        };
        let bytes = Zeroizing::new(encode(&stored)?);
        let key = in_key(
            record.chain.group_id(),
            &record.chain.signing_key().to_bytes(),
        );
        self.0.push(AppWrite::put(GROUP_IN, &key, bytes.to_vec()));
        Ok(())
    }

    /// Deletes an inbound chain.
    pub(crate) fn delete_group_in(&mut self, group: &[u8; 32], signing_key: &[u8; 32]) {
        self.0
            .push(AppWrite::delete(GROUP_IN, &in_key(group, signing_key)));
    }

    /// Holds a group message until its chain arrives.
    pub(crate) fn group_pending(
        &mut self,
        pending: &PendingGroupMessage,
    ) -> Result<(), StoreError> {
        self.0.push(AppWrite::put(
            GROUP_PENDING,
            &pending.digest,
            encode(pending)?,
        ));
        Ok(())
    }

    /// Deletes a held group message.
    pub(crate) fn delete_group_pending(&mut self, digest: &[u8; 32]) {
        self.0.push(AppWrite::delete(GROUP_PENDING, digest));
    }

    /// Writes a group history entry.
    pub(crate) fn group_history(&mut self, entry: &GroupHistoryEntry) -> Result<(), StoreError> {
        let stored = StoredGroupEntry {
            group: entry.group,
            direction: match entry.direction {
                Direction::Incoming => 0,
                Direction::Outgoing => 1,
            },
            sender_user: entry.sender.user_id().to_owned(),
            sender_device: entry.sender.device_id(),
            message_id: entry.message_id,
            timestamp_ms: entry.timestamp_ms,
            text: entry.text.clone(),
            status: status_code(entry.status),
        };
        self.0.push(AppWrite::put(
            GROUP_HISTORY,
            &history_key(entry),
            encode(&stored)?,
        ));
        Ok(())
    }
}

impl ClientStore {
    /// The record of `group`, if held.
    pub(crate) fn group(&self, group: &[u8; 32]) -> Result<Option<Group>, StoreError> {
        self.inner()?
            .app_record(GROUP, group)?
            .map(|b| Group::from_bytes(&b).map_err(|_| corrupt()))
            .transpose()
    }

    /// Every group record, in the order they were first written.
    pub(crate) fn groups(&self) -> Result<Vec<Group>, StoreError> {
        self.inner()?
            .app_records(GROUP)?
            .iter()
            .map(|b| Group::from_bytes(b).map_err(|_| corrupt()))
            .collect()
    }

    /// This device's outbound chain of `group`, if any.
    pub(crate) fn group_out(&self, group: &[u8; 32]) -> Result<Option<OutboundRecord>, StoreError> {
        let Some(bytes) = self.inner()?.app_record(GROUP_OUT, group)? else {
            return Ok(None);
        };
        let stored: StoredOutbound = decode(&bytes)?;
        let chain = OutboundChain::from_bytes(&stored.chain).map_err(|_| corrupt())?;
        let distributed = stored
            .distributed
            .iter()
            .map(|(u, d)| Address::new(u.as_str(), *d).map_err(|_| corrupt()))
            .collect::<Result<_, _>>()?;
        Ok(Some(OutboundRecord { chain, distributed }))
    }

    /// The inbound chain of `group` with `signing_key`, if held.
    pub(crate) fn group_in(
        &self,
        group: &[u8; 32],
        signing_key: &[u8; 32],
    ) -> Result<Option<InboundRecord>, StoreError> {
        self.inner()?
            .app_record(GROUP_IN, &in_key(group, signing_key))?
            .map(|b| inbound_from(&b))
            .transpose()
    }

    /// Every inbound chain of `group`.
    pub(crate) fn group_ins(&self, group: &[u8; 32]) -> Result<Vec<InboundRecord>, StoreError> {
        let mut out = Vec::new();
        for bytes in self.inner()?.app_records(GROUP_IN)? {
            let record = inbound_from(&bytes)?;
            if record.chain.group_id() == group {
                out.push(record);
            }
        }
        Ok(out)
    }

    /// Every held group message, oldest first.
    pub(crate) fn group_pending(&self) -> Result<Vec<PendingGroupMessage>, StoreError> {
        self.inner()?
            .app_records(GROUP_PENDING)?
            .iter()
            .map(|b| decode(b))
            .collect()
    }

    /// The outgoing group history entry of `message_id`, if any.
    pub(crate) fn group_outgoing(
        &self,
        message_id: &[u8; 16],
    ) -> Result<Option<GroupHistoryEntry>, StoreError> {
        let mut key = vec![b'o'];
        key.extend_from_slice(message_id);
        self.inner()?
            .app_record(GROUP_HISTORY, &key)?
            .map(|b| group_entry_from(&b))
            .transpose()
    }

    /// The group history, in the order entries were first written.
    pub(crate) fn group_history(&self) -> Result<Vec<GroupHistoryEntry>, StoreError> {
        self.inner()?
            .app_records(GROUP_HISTORY)?
            .iter()
            .map(|b| group_entry_from(b))
            .collect()
    }
}

fn inbound_from(bytes: &[u8]) -> Result<InboundRecord, StoreError> {
    let stored: StoredInbound = decode(bytes)?;
    let sender =
        Address::new(stored.sender_user.as_str(), stored.sender_device).map_err(|_| corrupt())?;
    let chain = InboundChain::from_bytes(&stored.chain).map_err(|_| corrupt())?;
    Ok(InboundRecord { sender, chain })
}

fn group_entry_from(bytes: &[u8]) -> Result<GroupHistoryEntry, StoreError> {
    let stored: StoredGroupEntry = decode(bytes)?;
    Ok(GroupHistoryEntry {
        group: stored.group,
        direction: if stored.direction == 0 {
            Direction::Incoming
        } else {
            Direction::Outgoing
        },
        sender: Address::new(stored.sender_user.as_str(), stored.sender_device)
            .map_err(|_| corrupt())?,
        message_id: stored.message_id,
        timestamp_ms: stored.timestamp_ms,
        text: stored.text.clone(),
        status: status_from(stored.status)?,
    })
}
