//! Groups on the browser store (`docs/PROTOCOL.md` 16; the records in 11):
//! creating and changing a group, sending a group text, taking the group
//! controls that arrive pairwise and opening group envelopes, with the
//! rules of the native client:
//!
//! - a state is taken only from the device that signed it, and only if the
//!   state lists for the signer the user key this device trusts;
//! - a sender chain is taken only from a member of the state it names
//!   (under the trusted user key), for the current state or, from a member
//!   that stays, its parent, and only if its distribution proves that the
//!   pairwise sender owns it;
//! - a group message is encrypted under a chain of the current state; the
//!   advanced chain is committed with the pairwise distributions returned;
//! - a group envelope whose chain has not arrived is held (at most
//!   [`MAX_HELD`]) and read when a chain or a state arrives.
//!
//! Every function checks what can fail before it changes anything: on an
//! error nothing changed.

use rand_core::OsRng;
use tacit::envelope::{Content, ContentKind};
use tacit::error::GroupStateError;
use tacit::group::{
    apply_states, chain_state, check_states_sender, held_state, multi, ChainConfig, ChainRefusal,
    ControlSender, Group, GroupChange, GroupControl, GroupId, GroupMember, GroupMessage,
    GroupSigner, InboundChain, OutboundChain, Role, SenderChainDistribution, SessionControlBody,
    SignedGroupState, StatesRefusal,
};
use tacit::identity::{DeviceList, UserKey};
use tacit::keys::IdentityKey;
use tacit::session::{OutgoingEnvelope, Received, SessionManager};
use tacit::Address;
use zeroize::Zeroizing;

use crate::error::Error;
use crate::store::{decode_address, encode_address, BrowserStore, GroupTable};

/// The most group messages held waiting for their chain (the oldest is
/// dropped first).
pub const MAX_HELD: usize = 256;

type Manager = SessionManager<BrowserStore>;

/// What the application sees of a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupView {
    /// The group id.
    pub id: [u8; 32],
    /// The title.
    pub title: String,
    /// The epoch of the current state.
    pub epoch: u64,
    /// The members: user id and whether an admin.
    pub members: Vec<(String, bool)>,
    /// Whether the local user is a member of the current state.
    pub active: bool,
}

/// A group changed here: its new view and the pairwise envelopes carrying
/// the new state, to submit.
#[derive(Debug)]
pub struct GroupUpdate {
    /// The group.
    pub group: GroupView,
    /// The pairwise control envelopes.
    pub outgoing: Vec<OutgoingEnvelope>,
}

/// A group message sent here: the pairwise envelopes carrying this
/// device's chain (submit them first), then the multi-recipient envelope.
#[derive(Debug)]
pub struct GroupSend {
    /// The pairwise distributions of the chain (possibly none).
    pub outgoing: Vec<OutgoingEnvelope>,
    /// The group envelope for every recipient device.
    pub sealed: multi::MultiSealed,
    /// The content's message id.
    pub message_id: [u8; 16],
}

/// A group message read.
#[derive(Debug)]
pub struct GroupReceived {
    /// Its group.
    pub group_id: [u8; 32],
    /// The sending device (the owner of the chain).
    pub sender: Address,
    /// The content.
    pub content: Content,
}

/// What a pairwise group control did.
#[derive(Debug, Default)]
pub struct ControlOutcome {
    /// The group it named.
    pub group_id: Option<[u8; 32]>,
    /// A state was taken.
    pub changed: bool,
    /// A sender chain was stored.
    pub chain_stored: bool,
    /// Why (part of) it was refused.
    pub refused: Option<Error>,
    /// Held group messages it made readable, oldest first.
    pub released: Vec<GroupReceived>,
}

/// A group message tried against the stored chains.
enum Attempt {
    /// Its state or chain has not arrived.
    Wait,
    /// It cannot be read, now or later.
    Refused(Error),
    /// Read: the sender, its advanced chain and the content.
    Read(Address, Box<InboundChain>, Content),
}

fn state_error(e: GroupStateError) -> Error {
    Error::new("group-state", e.to_string())
}

fn corrupt(table: &str) -> Error {
    Error::new("corrupt", format!("a {table} record does not decode"))
}

fn about(mut e: Error, user_id: &str) -> Error {
    e.user_id = Some(user_id.into());
    e
}

fn view(group: &Group) -> GroupView {
    GroupView {
        id: group.group_id().to_bytes(),
        title: group.title().into(),
        epoch: group.epoch(),
        members: group
            .members()
            .iter()
            .map(|m| (m.user_id.clone(), m.role == Role::Admin))
            .collect(),
        active: group.is_member(),
    }
}

/// The group `id`, if held.
pub fn load(m: &Manager, id: &[u8; 32]) -> Result<Option<Group>, Error> {
    m.store()
        .group_record(GroupTable::Groups, id)
        .map(|b| Group::from_bytes(&b).map_err(|_| corrupt("group")))
        .transpose()
}

fn load_active(m: &Manager, id: &[u8; 32]) -> Result<Group, Error> {
    let group = load(m, id)?.ok_or_else(|| Error::new("unknown-group", "no such group"))?;
    if group.is_member() {
        Ok(group)
    } else {
        Err(Error::new(
            "not-group-member",
            "the local user is no longer a member of the group",
        ))
    }
}

fn put_group(m: &Manager, group: &Group) -> Result<(), Error> {
    let id = group.group_id().to_bytes();
    m.store()
        .put_group_record(GroupTable::Groups, &id, Some(&group.to_bytes()))?;
    Ok(())
}

/// Every group held, in the order of their ids.
pub fn list(m: &Manager) -> Result<Vec<GroupView>, Error> {
    m.store()
        .group_records(GroupTable::Groups, &[])
        .iter()
        .map(|(_, b)| {
            Group::from_bytes(b)
                .map(|g| view(&g))
                .map_err(|_| corrupt("group"))
        })
        .collect()
}

/// The group `id`, if held.
pub fn get(m: &Manager, id: &[u8; 32]) -> Result<Option<GroupView>, Error> {
    Ok(load(m, id)?.as_ref().map(view))
}

fn own_list(m: &Manager) -> Result<DeviceList, Error> {
    m.device_list(m.local_address().user_id())?
        .ok_or_else(|| Error::new("not-on-own-list", "no device list stored"))
}

/// The user key of `user`'s trusted list.
fn trusted_key(m: &Manager, user: &str) -> Result<UserKey, Error> {
    let list = m.device_list(user)?.ok_or_else(|| {
        about(
            Error::new("unknown-user", format!("no trusted device list of {user}")),
            user,
        )
    })?;
    Ok(*list.user_key())
}

/// Signs with this device's identity key and its certificate from the
/// local user's list.
fn sign_with<T>(
    m: &Manager,
    f: impl FnOnce(&GroupSigner<'_>) -> Result<T, GroupStateError>,
) -> Result<T, Error> {
    let list = own_list(m)?;
    let address = m.local_address();
    let identity = m.account().identity();
    let entry = list
        .device(address.device_id())
        .filter(|d| d.identity_key == identity.public_key())
        .ok_or_else(|| Error::new("not-on-own-list", "this device is not on its own list"))?;
    let signer = GroupSigner::new(identity, address, entry.certificate);
    f(&signer).map_err(state_error)
}

/// Refuses before anything changes if a device of one of `users` has no
/// session (`no-session`, naming the user: fetch its bundles first).
fn check_sessions<'a>(m: &Manager, users: impl IntoIterator<Item = &'a str>) -> Result<(), Error> {
    for user in users {
        if m.device_list(user)?.is_none() {
            return Err(about(
                Error::new("unknown-user", format!("no trusted device list of {user}")),
                user,
            ));
        }
        if !m.missing_sessions(user)?.is_empty() {
            return Err(about(
                Error::new("no-session", format!("a device of {user} has no session")),
                user,
            ));
        }
    }
    Ok(())
}

/// Seals `control` as a `SessionControl` content for every device of
/// `user` (and this user's other devices), with this device's delivery
/// token.
fn seal_control(
    m: &mut Manager,
    user: &str,
    control: &GroupControl,
    now: u64,
) -> Result<Vec<OutgoingEnvelope>, Error> {
    // With a chain, the body holds its key: wiped here, and in the content.
    let body = Zeroizing::new(
        SessionControlBody {
            group: control.clone(),
        }
        .to_wire(),
    );
    let content = Content::new(ContentKind::SessionControl, body.to_vec(), now, &mut OsRng)
        .map_err(|e| Error::new("content", e.to_string()))?;
    crate::tokens::seal_for_user(m, user, &content)
}

/// Creates a group with the local user as its admin and `members` (users
/// whose device lists are trusted) as members; returns the first state
/// sealed for every member.
pub fn create(
    m: &mut Manager,
    title: &str,
    members: &[String],
    now: u64,
) -> Result<GroupUpdate, Error> {
    let own_user = m.local_address().user_id().to_owned();
    let mut list = vec![GroupMember::new(
        own_user.clone(),
        *own_list(m)?.user_key(),
        Role::Admin,
    )];
    for user in members {
        if *user == own_user || list.iter().any(|m| m.user_id == *user) {
            continue;
        }
        let key = trusted_key(m, user)?;
        list.push(GroupMember::new(user.clone(), key, Role::Member));
    }
    let id = GroupId::generate(&mut OsRng);
    let group = sign_with(m, |signer| Group::create(id, title, list, signer))?;
    check_sessions(m, others(&group, &own_user))?;
    put_group(m, &group)?;
    let outgoing = distribute_state(m, &group, None, now)?;
    Ok(GroupUpdate {
        group: view(&group),
        outgoing,
    })
}

/// The users `group` sends to but the local one.
fn others<'a>(group: &'a Group, own_user: &'a str) -> impl Iterator<Item = &'a str> {
    group
        .recipients()
        .into_iter()
        .filter(move |u| *u != own_user)
}

/// Adds `user` (its key from its trusted list) to the group `id`.
pub fn add_member(
    m: &mut Manager,
    id: &[u8; 32],
    user: &str,
    now: u64,
) -> Result<GroupUpdate, Error> {
    let key = trusted_key(m, user)?;
    let member = GroupMember::new(user.to_owned(), key, Role::Member);
    change(m, id, &[GroupChange::Add(member)], now)
}

/// Signs `changes` to the group `id`, applies and stores the new state,
/// and seals it for every member of it and of its parent.
pub fn change(
    m: &mut Manager,
    id: &[u8; 32],
    changes: &[GroupChange],
    now: u64,
) -> Result<GroupUpdate, Error> {
    let group = load_active(m, id)?;
    let parent = group.current().clone();
    let new = sign_with(m, |signer| group.propose(changes, signer))?;
    let mut next = group.clone();
    next.apply(&new).map_err(state_error)?;
    let own_user = m.local_address().user_id().to_owned();
    check_sessions(m, others(&next, &own_user))?;
    put_group(m, &next)?;
    drop_old_chains(m, &next)?;
    let outgoing = distribute_state(m, &next, Some(&parent), now)?;
    Ok(GroupUpdate {
        group: view(&next),
        outgoing,
    })
}

/// Seals `group`'s current state for every other member: `[parent, new]`
/// to a member just added, `[new]` to the others (`[first]` for a new
/// group).
fn distribute_state(
    m: &mut Manager,
    group: &Group,
    parent: Option<&SignedGroupState>,
    now: u64,
) -> Result<Vec<OutgoingEnvelope>, Error> {
    let own_user = m.local_address().user_id().to_owned();
    let new = group.current();
    let users: Vec<String> = others(group, &own_user).map(str::to_owned).collect();
    let mut out = Vec::new();
    for user in &users {
        let states = match parent {
            Some(p) if p.state().member(user).is_none() => vec![p.clone(), new.clone()],
            _ => vec![new.clone()],
        };
        let control = GroupControl {
            states,
            chain: None,
        };
        out.extend(seal_control(m, user, &control, now)?);
    }
    Ok(out)
}

/// Deletes the inbound chains the current state no longer takes (all but
/// those of the current state and those of its parent from members that
/// stay), and this device's outbound chain once it is no longer a member.
fn drop_old_chains(m: &Manager, group: &Group) -> Result<(), Error> {
    let id = group.group_id().to_bytes();
    let current = group.current().hash().to_bytes();
    let parent = group.state().parent().map(|h| h.to_bytes());
    for (key, _) in m.store().group_records(GroupTable::In, &id) {
        let (sender, chain) = load_in(m, &key)?;
        let state = *chain.state_hash();
        let keep = state == current
            || (Some(state) == parent && group.state().member(sender.user_id()).is_some());
        if !keep {
            m.store().put_group_record(GroupTable::In, &key, None)?;
        }
    }
    if !group.is_member() {
        m.store().put_group_record(GroupTable::Out, &id, None)?;
    }
    Ok(())
}

/// This device's outbound chain of a group and the devices it was sealed
/// to.
struct OutRecord {
    chain: OutboundChain,
    distributed: Vec<Address>,
}

fn load_out(m: &Manager, id: &[u8; 32]) -> Result<Option<OutRecord>, Error> {
    let Some(bytes) = m.store().group_record(GroupTable::Out, id) else {
        return Ok(None);
    };
    let bad = || corrupt("group_out");
    let (n, mut rest) = bytes.split_first_chunk::<2>().ok_or_else(bad)?;
    let mut distributed = Vec::new();
    for _ in 0..u16::from_be_bytes(*n) {
        let (address, tail) = decode_address("group_out", rest).map_err(|_| bad())?;
        distributed.push(address);
        rest = tail;
    }
    let chain = OutboundChain::from_bytes(rest).map_err(|_| bad())?;
    Ok(Some(OutRecord { chain, distributed }))
}

fn put_out(m: &Manager, record: &OutRecord) -> Result<(), Error> {
    let n = u16::try_from(record.distributed.len())
        .map_err(|_| Error::invalid("too many devices for one chain"))?;
    let mut bytes = Zeroizing::new(n.to_be_bytes().to_vec());
    for address in &record.distributed {
        bytes.extend_from_slice(&encode_address(address, &[]));
    }
    bytes.extend_from_slice(&record.chain.to_bytes());
    let id = *record.chain.group_id();
    m.store()
        .put_group_record(GroupTable::Out, &id, Some(&bytes))?;
    Ok(())
}

fn in_key(group: &[u8; 32], signing_key: &[u8; 32]) -> [u8; 64] {
    let mut key = [0u8; 64];
    key[..32].copy_from_slice(group);
    key[32..].copy_from_slice(signing_key);
    key
}

fn load_in(m: &Manager, key: &[u8]) -> Result<(Address, InboundChain), Error> {
    let bytes = m
        .store()
        .group_record(GroupTable::In, key)
        .ok_or_else(|| corrupt("group_in"))?;
    let (sender, chain) = decode_address("group_in", &bytes).map_err(|_| corrupt("group_in"))?;
    let chain = InboundChain::from_bytes(chain).map_err(|_| corrupt("group_in"))?;
    Ok((sender, chain))
}

fn put_in(m: &Manager, sender: &Address, chain: &InboundChain) -> Result<(), Error> {
    let key = in_key(chain.group_id(), &chain.signing_key().to_bytes());
    let bytes = encode_address(sender, &chain.to_bytes());
    m.store()
        .put_group_record(GroupTable::In, &key, Some(&bytes))?;
    Ok(())
}

/// Every device on the trusted list of every member whose list is signed
/// by the user key the state lists, without this device.
fn member_devices(m: &Manager, group: &Group) -> Result<Vec<(Address, IdentityKey)>, Error> {
    let own = m.local_address();
    let mut devices = Vec::new();
    for member in group.members() {
        let Some(list) = m.device_list(&member.user_id)? else {
            continue;
        };
        if list.user_key() != &member.user_key {
            continue;
        }
        for d in list.devices() {
            let address =
                Address::new(list.user_id(), d.device_id).map_err(|_| corrupt("device list"))?;
            if address != *own {
                devices.push((address, d.identity_key));
            }
        }
    }
    Ok(devices)
}

/// Encrypts `text` for the group `id` at `now`: the chain of the current
/// state (a new one when the state changed), sealed pairwise to every
/// member user with a device that does not hold it yet, then the group
/// message sealed once for every member device.
pub fn send_text(m: &mut Manager, id: &[u8; 32], text: &str, now: u64) -> Result<GroupSend, Error> {
    let group = load_active(m, id)?;
    let hash = group.current().hash().to_bytes();
    let own = m.local_address().clone();
    let content = Content::new(ContentKind::Text, text.as_bytes().to_vec(), now, &mut OsRng)
        .map_err(|e| Error::new("content", e.to_string()))?;
    let devices = member_devices(m, &group)?;
    if devices.is_empty() {
        return Err(Error::new(
            "group-no-recipients",
            "no device of another member is trusted",
        ));
    }
    if devices.len() > multi::MAX_RECIPIENTS {
        return Err(Error::new(
            "group-no-recipients",
            "too many recipient devices",
        ));
    }
    let mut out = match load_out(m, id)? {
        Some(record) if record.chain.state_hash() == &hash => record,
        _ => OutRecord {
            chain: OutboundChain::new(*id, hash, &own, &mut OsRng),
            distributed: Vec::new(),
        },
    };
    let lacking = |out: &OutRecord, user: &str| {
        devices
            .iter()
            .any(|(a, _)| a.user_id() == user && !out.distributed.contains(a))
    };
    let users: Vec<&str> = group.members().iter().map(|m| m.user_id.as_str()).collect();
    let mut targets: Vec<String> = users
        .iter()
        .filter(|u| **u != own.user_id() && lacking(&out, u))
        .map(|u| (*u).to_owned())
        .collect();
    // This user's other devices get every pairwise send: one to any other
    // member reaches them.
    if targets.is_empty() && lacking(&out, own.user_id()) {
        targets.extend(
            users
                .iter()
                .find(|u| **u != own.user_id())
                .map(|u| (*u).to_owned()),
        );
    }
    check_sessions(m, targets.iter().map(String::as_str))?;
    let mut message_chain = out.chain.clone();
    let message = message_chain
        .encrypt(&content)
        .map_err(|e| Error::new("encrypt", e.to_string()))?;

    let control = GroupControl {
        states: Vec::new(),
        chain: Some(out.chain.distribution()),
    };
    let mut outgoing = Vec::new();
    for user in &targets {
        let sealed = seal_control(m, user, &control, now)?;
        for envelope in &sealed {
            if !out.distributed.contains(&envelope.recipient) {
                out.distributed.push(envelope.recipient.clone());
            }
        }
        outgoing.extend(sealed);
    }
    let recipients: Vec<(Address, IdentityKey)> = devices
        .into_iter()
        .filter(|(a, _)| out.distributed.contains(a))
        .collect();
    let sealed = multi::seal(&message.to_bytes(), &recipients, &mut OsRng)
        .map_err(|e| Error::new("group-envelope", e.to_string()))?;
    out.chain = message_chain;
    put_out(m, &out)?;
    Ok(GroupSend {
        outgoing,
        sealed,
        message_id: *content.message_id(),
    })
}

/// Takes the group control in a pairwise `SessionControl` content: its
/// states, then its chain; then reads the held messages it made readable.
/// A refusal is in the outcome; only the store's errors are returned.
pub fn control(m: &mut Manager, received: &Received) -> Result<ControlOutcome, Error> {
    let mut outcome = ControlOutcome::default();
    let control = match SessionControlBody::from_wire(received.content.body()) {
        Ok(body) => body.group,
        Err(e) => {
            outcome.refused = Some(Error::new("group-envelope", e.to_string()));
            return Ok(outcome);
        }
    };
    let mut updated = None;
    if let Some(new) = control.states.last() {
        outcome.group_id = Some(new.state().group_id().to_bytes());
        match accept_states(m, received, &control.states)? {
            Ok(group) => {
                put_group(m, &group)?;
                drop_old_chains(m, &group)?;
                updated = Some(group);
                outcome.changed = true;
            }
            Err(refusal) => {
                outcome.refused = Some(refusal);
                return Ok(outcome);
            }
        }
    }
    if let Some(chain) = &control.chain {
        outcome.group_id = Some(*chain.group_id());
        match accept_chain(m, received, chain, updated.as_ref())? {
            Ok(stored) => outcome.chain_stored = stored,
            Err(refusal) => outcome.refused = Some(refusal),
        }
    }
    if outcome.changed || outcome.chain_stored {
        outcome.released = retry_held(m)?;
    }
    Ok(outcome)
}

/// Applies (or joins with) `states` from their signer device.
fn accept_states(
    m: &Manager,
    received: &Received,
    states: &[SignedGroupState],
) -> Result<Result<Group, Error>, Error> {
    let Some(new) = states.last() else {
        return Ok(Err(Error::new("group-state", "no state")));
    };
    let id = new.state().group_id().to_bytes();
    let existing = load(m, &id)?;
    let sender = ControlSender {
        address: &received.sender,
        identity: &received.sender_identity,
        user_key: &received.sender_user_key,
    };
    match check_states_sender(states, existing.as_ref(), sender) {
        Ok(_) => {}
        Err(StatesRefusal::NotFromSigner) => {
            return Ok(Err(about(
                Error::new(
                    "group-not-from-signer",
                    "a group state not sent by the device that signed it",
                ),
                received.sender.user_id(),
            )))
        }
        Err(StatesRefusal::UserKeyMismatch) => {
            return Ok(Err(about(
                Error::new(
                    "group-user-key",
                    "the state lists another user key for its signer than the trusted one",
                ),
                new.signer().user_id(),
            )))
        }
        Err(other) => return Ok(Err(Error::new("group-state", other.to_string()))),
    }
    let group = match existing {
        // A state that lost to the current one counts as taken.
        Some(group) => match apply_states(group, states) {
            Ok((group, _lost)) => group,
            Err(e) => return Ok(Err(state_error(e))),
        },
        None => {
            let own_key = *own_list(m)?.user_key();
            match Group::join(
                m.local_address().user_id(),
                &own_key,
                states,
                &received.sender,
                &received.sender_identity,
            ) {
                Ok(group) => group,
                Err(e) => return Ok(Err(state_error(e))),
            }
        }
    };
    Ok(Ok(group))
}

/// Stores a sender chain from a member of the state it names; `Ok(false)`
/// when it is held already (never taken back to an earlier iteration).
fn accept_chain(
    m: &Manager,
    received: &Received,
    chain: &SenderChainDistribution,
    updated: Option<&Group>,
) -> Result<Result<bool, Error>, Error> {
    let id = *chain.group_id();
    let user = received.sender.user_id();
    let refuse =
        |code: &'static str, message: &str| Ok(Err(about(Error::new(code, message), user)));
    let group = match updated.filter(|g| g.group_id().to_bytes() == id) {
        Some(g) => g.clone(),
        None => match load(m, &id)? {
            Some(g) => g,
            None => return refuse("unknown-group", "a sender chain of an unknown group"),
        },
    };
    let local = m.local_address().user_id();
    let checked = chain_state(
        &group,
        chain.state_hash(),
        local,
        &received.sender,
        &received.sender_user_key,
    );
    match checked {
        Ok(_) => {}
        Err(ChainRefusal::ParentNotHeld) => {
            return refuse("unknown-group", "a sender chain of an unknown state")
        }
        Err(ChainRefusal::NotRecent | ChainRefusal::SenderLeft) => {
            return refuse("unknown-group", "a sender chain of a state no longer taken")
        }
        Err(ChainRefusal::LocalNotMember) => {
            return refuse(
                "not-group-member",
                "a sender chain of a state without this user",
            )
        }
        Err(ChainRefusal::NotMember) => {
            return refuse("not-group-member", "a sender chain from a non-member")
        }
        Err(ChainRefusal::UserKeyMismatch) => {
            return refuse(
                "group-user-key",
                "a sender chain from a user key the state does not list",
            )
        }
        Err(other) => return refuse("group-chain-refused", &other.to_string()),
    }
    let key = in_key(&id, &chain.signing_key().to_bytes());
    if m.store().group_record(GroupTable::In, &key).is_some() {
        return Ok(Ok(false));
    }
    // The distribution must prove that the chain is the pairwise sender's
    // own (16.5): a member forwarding another's chain is refused.
    let chain =
        match InboundChain::from_distribution(chain, &received.sender, ChainConfig::default()) {
            Ok(chain) => chain,
            Err(e) => return refuse("group-chain-refused", &e.to_string()),
        };
    put_in(m, &received.sender, &chain)?;
    Ok(Ok(true))
}

/// Opens a group envelope (a push of kind group) and reads the group
/// message in it: `Ok(None)` when it is held until its chain or state
/// arrives. A refusal changes nothing.
pub fn open(m: &mut Manager, envelope: &[u8]) -> Result<Option<GroupReceived>, Error> {
    let bytes = multi::open(m.account().identity(), m.local_address(), envelope)
        .map_err(|e| Error::new("group-envelope", e.to_string()))?;
    let message = GroupMessage::from_bytes(&bytes)
        .map_err(|e| Error::new("group-envelope", e.to_string()))?;
    match try_decrypt(m, &message)? {
        Attempt::Wait => {
            hold(m, &message)?;
            Ok(None)
        }
        Attempt::Refused(e) => Err(e),
        Attempt::Read(sender, chain, content) => {
            put_in(m, &sender, &chain)?;
            Ok(Some(GroupReceived {
                group_id: *message.group_id(),
                sender,
                content,
            }))
        }
    }
}

/// Finds the chain of `message` and decrypts with a copy of it.
fn try_decrypt(m: &Manager, message: &GroupMessage) -> Result<Attempt, Error> {
    let id = *message.group_id();
    let Some(group) = load(m, &id)? else {
        // The state that adds this device may still come.
        return Ok(Attempt::Wait);
    };
    let Some(state) = held_state(&group, message.state_hash()) else {
        return Ok(Attempt::Wait);
    };
    let key = in_key(&id, message.signing_key());
    if m.store().group_record(GroupTable::In, &key).is_none() {
        // A chain of the current state or its parent may still come; one
        // of an older state will not be taken.
        let recent =
            state.hash() == group.current().hash() || group.state().parent() == Some(state.hash());
        return Ok(if recent && group.is_member() {
            Attempt::Wait
        } else {
            Attempt::Refused(Error::new(
                "group-chain-missing",
                "the sender chain of this group message will not come",
            ))
        });
    }
    let (sender, mut chain) = load_in(m, &key)?;
    if state.state().member(sender.user_id()).is_none() {
        return Ok(Attempt::Refused(about(
            Error::new("not-group-member", "a group message from a non-member"),
            sender.user_id(),
        )));
    }
    match chain.decrypt_message(message) {
        Ok(content) => Ok(Attempt::Read(sender, Box::new(chain), content)),
        Err(e) => Ok(Attempt::Refused(Error::new("group-decrypt", e.to_string()))),
    }
}

/// A held message's id: group id, signing key and iteration.
fn held_key(message: &GroupMessage) -> Vec<u8> {
    let mut key = Vec::with_capacity(68);
    key.extend_from_slice(message.group_id());
    key.extend_from_slice(message.signing_key());
    key.extend_from_slice(&message.iteration().to_be_bytes());
    key
}

/// The held messages: id, sequence number and message bytes, by sequence.
fn held(m: &Manager) -> Vec<(Vec<u8>, u64, Vec<u8>)> {
    let mut out: Vec<(Vec<u8>, u64, Vec<u8>)> = m
        .store()
        .group_records(GroupTable::Held, &[])
        .into_iter()
        .filter_map(|(key, value)| {
            let (seq, message) = value.split_first_chunk::<8>()?;
            Some((key, u64::from_be_bytes(*seq), message.to_vec()))
        })
        .collect();
    out.sort_by_key(|(_, seq, _)| *seq);
    out
}

/// Holds `message` until its chain arrives; at most [`MAX_HELD`] (the
/// oldest is dropped).
fn hold(m: &Manager, message: &GroupMessage) -> Result<(), Error> {
    let key = held_key(message);
    if m.store().group_record(GroupTable::Held, &key).is_some() {
        return Ok(());
    }
    let held = held(m);
    let seq = held.last().map_or(0, |(_, seq, _)| seq.saturating_add(1));
    if held.len() >= MAX_HELD {
        m.store()
            .put_group_record(GroupTable::Held, &held[0].0, None)?;
    }
    let mut value = seq.to_be_bytes().to_vec();
    value.extend_from_slice(message.as_bytes());
    m.store()
        .put_group_record(GroupTable::Held, &key, Some(&value))?;
    Ok(())
}

/// How many group messages are held.
pub fn held_count(m: &Manager) -> usize {
    m.store().group_records(GroupTable::Held, &[]).len()
}

/// Reads the held messages whose chain has arrived, oldest first; drops
/// those that will never be read.
fn retry_held(m: &Manager) -> Result<Vec<GroupReceived>, Error> {
    let mut out = Vec::new();
    for (key, _, bytes) in held(m) {
        let Ok(message) = GroupMessage::from_bytes(&bytes) else {
            m.store().put_group_record(GroupTable::Held, &key, None)?;
            continue;
        };
        match try_decrypt(m, &message)? {
            Attempt::Wait => {}
            Attempt::Refused(_) => m.store().put_group_record(GroupTable::Held, &key, None)?,
            Attempt::Read(sender, chain, content) => {
                m.store().put_group_record(GroupTable::Held, &key, None)?;
                put_in(m, &sender, &chain)?;
                out.push(GroupReceived {
                    group_id: *message.group_id(),
                    sender,
                    content,
                });
            }
        }
    }
    Ok(out)
}
