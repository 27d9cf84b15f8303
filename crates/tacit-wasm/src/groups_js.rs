//! Groups for JavaScript ([`crate::groups`]): the methods of [`Tacit`]
//! and the objects they return.

use js_sys::Promise;
use tacit::group::{multi, GroupChange};
use tacit::session::OutgoingEnvelope;
use wasm_bindgen::prelude::*;

use crate::api::{millis, DeviceAddress, Outgoing, Tacit};
use crate::error::Error;
use crate::groups::{self, GroupSend, GroupView};

/// A member of a group.
#[wasm_bindgen(getter_with_clone)]
#[derive(Debug, Clone)]
pub struct GroupMemberInfo {
    /// The member's user.
    #[wasm_bindgen(js_name = userId)]
    pub user_id: String,
    /// Whether the member is an admin.
    pub admin: bool,
}

/// A group as this device holds it.
#[wasm_bindgen(getter_with_clone)]
#[derive(Debug, Clone)]
pub struct GroupInfo {
    /// The group id (32 bytes).
    #[wasm_bindgen(js_name = groupId)]
    pub group_id: Vec<u8>,
    /// The title.
    pub title: String,
    /// The epoch of the current state.
    pub epoch: f64,
    /// The members of the current state.
    pub members: Vec<GroupMemberInfo>,
    /// Whether the local user is a member of the current state.
    pub active: bool,
}

impl From<GroupView> for GroupInfo {
    fn from(v: GroupView) -> Self {
        Self {
            group_id: v.id.to_vec(),
            title: v.title,
            // Epochs count changes: far below 2^53.
            epoch: v.epoch as f64,
            members: v
                .members
                .into_iter()
                .map(|(user_id, admin)| GroupMemberInfo { user_id, admin })
                .collect(),
            active: v.active,
        }
    }
}

/// A group changed here: the group, and the pairwise envelopes carrying
/// its new state to submit.
#[wasm_bindgen(getter_with_clone)]
#[derive(Debug, Clone)]
pub struct GroupUpdate {
    /// The group after the change.
    pub group: GroupInfo,
    /// The pairwise envelopes to submit (`Tacit.submitFrame`).
    pub outgoing: Vec<Outgoing>,
}

/// A group message sealed here: submit `outgoing` (the pairwise
/// distributions of this device's sender chain) first, then the group
/// envelope (`Tacit.submitGroupFrame`).
#[wasm_bindgen]
#[derive(Debug)]
pub struct GroupSent {
    outgoing: Vec<Outgoing>,
    pub(crate) sealed: multi::MultiSealed,
    message_id: [u8; 16],
}

#[wasm_bindgen]
impl GroupSent {
    /// The pairwise envelopes to submit before the group envelope.
    #[wasm_bindgen(getter)]
    pub fn outgoing(&self) -> Vec<Outgoing> {
        self.outgoing.clone()
    }

    /// The message's 16-byte id.
    #[wasm_bindgen(getter, js_name = messageId)]
    pub fn message_id(&self) -> Vec<u8> {
        self.message_id.to_vec()
    }

    /// The devices the group envelope is for.
    #[wasm_bindgen(getter)]
    pub fn recipients(&self) -> Vec<DeviceAddress> {
        self.sealed
            .parts
            .iter()
            .map(|p| DeviceAddress::from(&p.address))
            .collect()
    }

    /// The group envelope as the relay delivers it to one recipient
    /// device (a push of kind group), or `undefined` for another device.
    #[wasm_bindgen(js_name = envelopeFor)]
    pub fn envelope_for(
        &self,
        #[wasm_bindgen(js_name = userId)] user_id: &str,
        #[wasm_bindgen(js_name = deviceId)] device_id: u32,
    ) -> Option<Vec<u8>> {
        self.sealed
            .parts
            .iter()
            .find(|p| p.address.user_id() == user_id && p.address.device_id() == device_id)
            .map(|p| self.sealed.shared.envelope_for(&p.wrapped_key).to_bytes())
    }
}

/// A group message read.
#[wasm_bindgen(getter_with_clone)]
#[derive(Debug, Clone)]
pub struct GroupReceived {
    /// The group id (32 bytes).
    #[wasm_bindgen(js_name = groupId)]
    pub group_id: Vec<u8>,
    /// The sender's user.
    #[wasm_bindgen(js_name = senderUserId)]
    pub sender_user_id: String,
    /// The sender's device.
    #[wasm_bindgen(js_name = senderDeviceId)]
    pub sender_device_id: u32,
    /// The content kind's code (1 text).
    pub kind: u32,
    /// The body (UTF-8 text for kind 1).
    pub body: Vec<u8>,
    /// The sender's timestamp, in milliseconds since the Unix epoch.
    pub timestamp: f64,
    /// The message's 16-byte id.
    #[wasm_bindgen(js_name = messageId)]
    pub message_id: Vec<u8>,
}

impl From<groups::GroupReceived> for GroupReceived {
    fn from(r: groups::GroupReceived) -> Self {
        Self {
            group_id: r.group_id.to_vec(),
            sender_user_id: r.sender.user_id().into(),
            sender_device_id: r.sender.device_id(),
            kind: r.content.kind().code(),
            body: r.content.body().to_vec(),
            // Timestamps below 2^53 ms are exact as numbers.
            timestamp: r.content.timestamp() as f64,
            message_id: r.content.message_id().to_vec(),
        }
    }
}

pub(crate) fn outgoing(envelopes: Vec<OutgoingEnvelope>, message_id: &[u8]) -> Vec<Outgoing> {
    envelopes
        .into_iter()
        .map(|o| Outgoing {
            user_id: o.recipient.user_id().into(),
            device_id: o.recipient.device_id(),
            envelope: o.envelope,
            message_id: message_id.to_vec(),
        })
        .collect()
}

fn group_id(id: &[u8]) -> Result<[u8; 32], Error> {
    <[u8; 32]>::try_from(id).map_err(|_| Error::invalid("a group id is 32 bytes"))
}

fn update(u: groups::GroupUpdate) -> JsValue {
    GroupUpdate {
        group: u.group.into(),
        // Controls carry no message id of their own to show.
        outgoing: outgoing(u.outgoing, &[]),
    }
    .into()
}

#[wasm_bindgen]
impl Tacit {
    /// Creates a group titled `title` with this user as its admin and
    /// `members` (users whose device lists are trusted, every device with a
    /// session) as members; resolves to the group and the pairwise
    /// envelopes carrying its first state, to submit.
    #[wasm_bindgen(js_name = createGroup, unchecked_return_type = "Promise<GroupUpdate>")]
    pub fn create_group(
        &mut self,
        title: &str,
        members: Vec<String>,
        #[wasm_bindgen(js_name = nowMs)] now_ms: f64,
    ) -> Result<Promise, JsValue> {
        self.check()?;
        let u = groups::create(&mut self.manager, title, &members, millis(now_ms)?)?;
        Ok(self.persist(update(u)))
    }

    /// Adds `userId` (its trusted device list's key) to the group
    /// `groupId` (an admin's change).
    #[wasm_bindgen(js_name = addGroupMember, unchecked_return_type = "Promise<GroupUpdate>")]
    pub fn add_group_member(
        &mut self,
        #[wasm_bindgen(js_name = groupId)] group_id_bytes: &[u8],
        #[wasm_bindgen(js_name = userId)] user_id: &str,
        #[wasm_bindgen(js_name = nowMs)] now_ms: f64,
    ) -> Result<Promise, JsValue> {
        self.check()?;
        let id = group_id(group_id_bytes)?;
        let u = groups::add_member(&mut self.manager, &id, user_id, millis(now_ms)?)?;
        Ok(self.persist(update(u)))
    }

    /// Removes `userId` from the group `groupId` (an admin's change).
    #[wasm_bindgen(js_name = removeGroupMember, unchecked_return_type = "Promise<GroupUpdate>")]
    pub fn remove_group_member(
        &mut self,
        #[wasm_bindgen(js_name = groupId)] group_id_bytes: &[u8],
        #[wasm_bindgen(js_name = userId)] user_id: &str,
        #[wasm_bindgen(js_name = nowMs)] now_ms: f64,
    ) -> Result<Promise, JsValue> {
        self.change(group_id_bytes, GroupChange::Remove(user_id.into()), now_ms)
    }

    /// Leaves the group `groupId`.
    #[wasm_bindgen(js_name = leaveGroup, unchecked_return_type = "Promise<GroupUpdate>")]
    pub fn leave_group(
        &mut self,
        #[wasm_bindgen(js_name = groupId)] group_id_bytes: &[u8],
        #[wasm_bindgen(js_name = nowMs)] now_ms: f64,
    ) -> Result<Promise, JsValue> {
        self.change(group_id_bytes, GroupChange::Leave, now_ms)
    }

    /// Sets the title of the group `groupId` (an admin's change).
    #[wasm_bindgen(js_name = retitleGroup, unchecked_return_type = "Promise<GroupUpdate>")]
    pub fn retitle_group(
        &mut self,
        #[wasm_bindgen(js_name = groupId)] group_id_bytes: &[u8],
        title: &str,
        #[wasm_bindgen(js_name = nowMs)] now_ms: f64,
    ) -> Result<Promise, JsValue> {
        self.change(group_id_bytes, GroupChange::Retitle(title.into()), now_ms)
    }

    /// Seals the text `text` for every member device of the group
    /// `groupId`: resolves once the advanced sender chain is stored.
    #[wasm_bindgen(js_name = sendGroupText, unchecked_return_type = "Promise<GroupSent>")]
    pub fn send_group_text(
        &mut self,
        #[wasm_bindgen(js_name = groupId)] group_id_bytes: &[u8],
        text: &str,
        #[wasm_bindgen(js_name = timestampMs)] timestamp_ms: f64,
    ) -> Result<Promise, JsValue> {
        self.check()?;
        let id = group_id(group_id_bytes)?;
        let GroupSend {
            outgoing: envelopes,
            sealed,
            message_id,
        } = groups::send_text(&mut self.manager, &id, text, millis(timestamp_ms)?)?;
        let sent = GroupSent {
            outgoing: outgoing(envelopes, &[]),
            sealed,
            message_id,
        };
        Ok(self.persist(sent.into()))
    }

    /// Opens a group envelope (a push of kind group) and reads its message;
    /// resolves to `undefined` when it is held until its sender chain
    /// arrives (then `openEnvelope` of the control returns it). A refused
    /// envelope throws and changes nothing.
    #[wasm_bindgen(
        js_name = openGroupEnvelope,
        unchecked_return_type = "Promise<GroupReceived | undefined>"
    )]
    pub fn open_group_envelope(&mut self, envelope: &[u8]) -> Result<Promise, JsValue> {
        self.check()?;
        let read = groups::open(&mut self.manager, envelope)?;
        Ok(self.persist(match read {
            Some(r) => GroupReceived::from(r).into(),
            None => JsValue::UNDEFINED,
        }))
    }

    /// Every group this device holds.
    pub fn groups(&self) -> Result<Vec<GroupInfo>, JsValue> {
        self.check()?;
        Ok(groups::list(&self.manager)?
            .into_iter()
            .map(GroupInfo::from)
            .collect())
    }

    /// The group `groupId`, or `undefined`.
    pub fn group(
        &self,
        #[wasm_bindgen(js_name = groupId)] group_id_bytes: &[u8],
    ) -> Result<Option<GroupInfo>, JsValue> {
        self.check()?;
        let id = group_id(group_id_bytes)?;
        Ok(groups::get(&self.manager, &id)?.map(GroupInfo::from))
    }

    /// How many group envelopes are held waiting for their chain.
    #[wasm_bindgen(js_name = heldGroupMessages)]
    pub fn held_group_messages(&self) -> u32 {
        u32::try_from(groups::held_count(&self.manager)).unwrap_or(u32::MAX)
    }
}

impl Tacit {
    fn change(&mut self, id: &[u8], change: GroupChange, now_ms: f64) -> Result<Promise, JsValue> {
        self.check()?;
        let id = group_id(id)?;
        let u = groups::change(&mut self.manager, &id, &[change], millis(now_ms)?)?;
        Ok(self.persist(update(u)))
    }
}
