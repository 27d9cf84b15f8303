//! The protobuf forms of the relay frames, derived with prost on
//! hand-written structs. The equivalent `.proto` text is in `docs/relay.md`.

/// `ClientFrame`: a request with its id.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct ClientFrame {
    #[prost(uint64, tag = "1")]
    pub(crate) request_id: u64,
    #[prost(
        oneof = "client_frame::Request",
        tags = "2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 20"
    )]
    pub(crate) request: Option<client_frame::Request>,
}

/// The `request` of a [`ClientFrame`].
pub(crate) mod client_frame {
    /// Which request a `ClientFrame` carries.
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub(crate) enum Request {
        /// Ask for a login challenge.
        #[prost(message, tag = "2")]
        GetChallenge(super::Empty),
        /// Register a device and log in.
        #[prost(message, tag = "3")]
        Register(super::Register),
        /// Log in.
        #[prost(message, tag = "4")]
        Login(super::Login),
        /// Upload prekeys.
        #[prost(message, tag = "5")]
        UploadPreKeys(super::UploadPreKeys),
        /// Fetch prekey bundles.
        #[prost(message, tag = "6")]
        FetchBundles(super::FetchBundles),
        /// Submit a sealed envelope.
        #[prost(message, tag = "7")]
        Submit(super::Submit),
        /// Acknowledge delivered messages.
        #[prost(message, tag = "8")]
        Ack(super::Ack),
        /// Set or clear the delivery token.
        #[prost(message, tag = "9")]
        SetDeliveryToken(super::SetDeliveryToken),
        /// Publish a new signed device list of the logged-in user.
        #[prost(message, tag = "10")]
        PublishDeviceList(super::PublishDeviceList),
        /// Fetch a user's signed device list.
        #[prost(message, tag = "11")]
        FetchDeviceList(super::FetchDeviceList),
        /// Put a blob in a link slot.
        #[prost(message, tag = "12")]
        LinkPut(super::LinkPut),
        /// Take the blob of a link slot.
        #[prost(message, tag = "13")]
        LinkTake(super::LinkTake),
        /// Submit one shared payload for many recipient devices.
        #[prost(message, tag = "14")]
        SubmitGroup(super::SubmitGroup),
        /// Reserve an attachment upload slot.
        #[prost(message, tag = "15")]
        AllocateAttachment(super::AllocateAttachment),
        /// Set or clear the push endpoint.
        #[prost(message, tag = "20")]
        SetPushEndpoint(super::SetPushEndpoint),
    }
}

/// `AllocateAttachment`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct AllocateAttachment {
    #[prost(uint64, tag = "1")]
    pub(crate) size: u64,
}

/// `AttachmentAllocated`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct AttachmentAllocated {
    #[prost(bytes = "vec", tag = "1")]
    pub(crate) id: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    pub(crate) upload_token: Vec<u8>,
    #[prost(uint64, tag = "3")]
    pub(crate) expires_ms: u64,
}

/// A message with no fields.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct Empty {}

/// `Register`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct Register {
    #[prost(string, tag = "1")]
    pub(crate) user_id: String,
    #[prost(uint32, tag = "2")]
    pub(crate) device_id: u32,
    #[prost(bytes = "vec", tag = "3")]
    pub(crate) identity_key: Vec<u8>,
    #[prost(uint64, tag = "4")]
    pub(crate) timestamp_ms: u64,
    #[prost(bytes = "vec", tag = "5")]
    pub(crate) signature: Vec<u8>,
    #[prost(bytes = "vec", tag = "6")]
    pub(crate) device_list: Vec<u8>,
}

/// `PublishDeviceList`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct PublishDeviceList {
    #[prost(bytes = "vec", tag = "1")]
    pub(crate) device_list: Vec<u8>,
}

/// `FetchDeviceList`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct FetchDeviceList {
    #[prost(string, tag = "1")]
    pub(crate) user_id: String,
}

/// `LinkPut`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct LinkPut {
    #[prost(bytes = "vec", tag = "1")]
    pub(crate) slot: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    pub(crate) blob: Vec<u8>,
}

/// `LinkTake`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct LinkTake {
    #[prost(bytes = "vec", tag = "1")]
    pub(crate) slot: Vec<u8>,
}

/// `Login`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct Login {
    #[prost(string, tag = "1")]
    pub(crate) user_id: String,
    #[prost(uint32, tag = "2")]
    pub(crate) device_id: u32,
    #[prost(uint64, tag = "3")]
    pub(crate) timestamp_ms: u64,
    #[prost(bytes = "vec", tag = "4")]
    pub(crate) signature: Vec<u8>,
}

/// `SignedPreKey`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct SignedPreKey {
    #[prost(uint32, tag = "1")]
    pub(crate) id: u32,
    #[prost(bytes = "vec", tag = "2")]
    pub(crate) key: Vec<u8>,
    #[prost(bytes = "vec", tag = "3")]
    pub(crate) signature: Vec<u8>,
}

/// `PreKey`: a one-time or fallback prekey.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct PreKey {
    #[prost(uint32, tag = "1")]
    pub(crate) id: u32,
    #[prost(bytes = "vec", tag = "2")]
    pub(crate) key: Vec<u8>,
}

/// `UploadPreKeys`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct UploadPreKeys {
    #[prost(message, optional, tag = "1")]
    pub(crate) signed_prekey: Option<SignedPreKey>,
    #[prost(message, optional, tag = "2")]
    pub(crate) fallback_prekey: Option<PreKey>,
    #[prost(message, repeated, tag = "3")]
    pub(crate) one_time_prekeys: Vec<PreKey>,
    /// A KEM prekey has the fields of a signed prekey (`key` is
    /// `EncodeKEM`, 1569 bytes).
    #[prost(message, optional, tag = "4")]
    pub(crate) kem_last_resort_prekey: Option<SignedPreKey>,
    #[prost(message, repeated, tag = "5")]
    pub(crate) one_time_kem_prekeys: Vec<SignedPreKey>,
}

/// `FetchBundles`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct FetchBundles {
    #[prost(string, tag = "1")]
    pub(crate) user_id: String,
    #[prost(uint32, optional, tag = "2")]
    pub(crate) device_id: Option<u32>,
}

/// `Submit`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct Submit {
    #[prost(string, tag = "1")]
    pub(crate) user_id: String,
    #[prost(uint32, tag = "2")]
    pub(crate) device_id: u32,
    #[prost(bytes = "vec", tag = "3")]
    pub(crate) envelope: Vec<u8>,
    #[prost(bytes = "vec", optional, tag = "4")]
    pub(crate) delivery_token: Option<Vec<u8>>,
}

/// `GroupRecipient`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct GroupRecipient {
    #[prost(string, tag = "1")]
    pub(crate) user_id: String,
    #[prost(uint32, tag = "2")]
    pub(crate) device_id: u32,
    #[prost(bytes = "vec", tag = "3")]
    pub(crate) wrapped_key: Vec<u8>,
    #[prost(bytes = "vec", optional, tag = "4")]
    pub(crate) delivery_token: Option<Vec<u8>>,
}

/// `SubmitGroup`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct SubmitGroup {
    #[prost(bytes = "vec", tag = "1")]
    pub(crate) shared: Vec<u8>,
    #[prost(message, repeated, tag = "2")]
    pub(crate) recipients: Vec<GroupRecipient>,
}

/// `Ack`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct Ack {
    #[prost(uint64, repeated, tag = "1")]
    pub(crate) message_ids: Vec<u64>,
}

/// `SetDeliveryToken`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct SetDeliveryToken {
    #[prost(bytes = "vec", optional, tag = "1")]
    pub(crate) token: Option<Vec<u8>>,
}

/// `SetPushEndpoint`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct SetPushEndpoint {
    #[prost(string, tag = "1")]
    pub(crate) url: String,
}

/// `ServerFrame`: a response or a push.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct ServerFrame {
    #[prost(oneof = "server_frame::Kind", tags = "1, 2, 3, 4, 5")]
    pub(crate) kind: Option<server_frame::Kind>,
}

/// The `kind` of a [`ServerFrame`].
pub(crate) mod server_frame {
    /// Which frame a `ServerFrame` is.
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub(crate) enum Kind {
        /// The answer to a request.
        #[prost(message, tag = "1")]
        Response(super::Response),
        /// A message from the device's mailbox.
        #[prost(message, tag = "2")]
        Push(super::Push),
        /// The stored backlog has been pushed.
        #[prost(message, tag = "3")]
        QueueEmpty(super::Empty),
        /// The device's one-time prekeys run low.
        #[prost(message, tag = "4")]
        PreKeysLow(super::PreKeysLow),
        /// Messages expired before delivery.
        #[prost(message, tag = "5")]
        MessagesExpired(super::MessagesExpired),
    }
}

/// `Response`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct Response {
    #[prost(uint64, tag = "1")]
    pub(crate) request_id: u64,
    #[prost(
        oneof = "response::Outcome",
        tags = "2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 20"
    )]
    pub(crate) outcome: Option<response::Outcome>,
}

/// The `result` of a [`Response`].
pub(crate) mod response {
    /// Which outcome a `Response` carries.
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub(crate) enum Outcome {
        /// The request failed.
        #[prost(message, tag = "2")]
        Error(super::Error),
        /// A login challenge.
        #[prost(message, tag = "3")]
        Challenge(super::Challenge),
        /// Logged in (after `Login` or `Register`).
        #[prost(message, tag = "4")]
        LoggedIn(super::LoggedIn),
        /// Prekeys stored.
        #[prost(message, tag = "5")]
        PreKeysStored(super::PreKeysStored),
        /// Prekey bundles.
        #[prost(message, tag = "6")]
        Bundles(super::Bundles),
        /// An envelope is durably queued.
        #[prost(message, tag = "7")]
        Submitted(super::Submitted),
        /// Messages acknowledged and deleted.
        #[prost(message, tag = "8")]
        Acked(super::Acked),
        /// The delivery token is set or cleared.
        #[prost(message, tag = "9")]
        DeliveryTokenSet(super::Empty),
        /// A device list is stored.
        #[prost(message, tag = "10")]
        DeviceListStored(super::DeviceListStored),
        /// A user's signed device list.
        #[prost(message, tag = "11")]
        DeviceList(super::DeviceList),
        /// A link blob is stored.
        #[prost(message, tag = "12")]
        LinkStored(super::Empty),
        /// A link slot's blob, now deleted from the relay.
        #[prost(message, tag = "13")]
        LinkBlob(super::LinkBlob),
        /// A group submission is durably queued for every recipient.
        #[prost(message, tag = "14")]
        SubmittedGroup(super::SubmittedGroup),
        /// An attachment upload slot is reserved.
        #[prost(message, tag = "15")]
        AttachmentAllocated(super::AttachmentAllocated),
        /// The push endpoint is set or cleared.
        #[prost(message, tag = "20")]
        PushEndpointSet(super::Empty),
    }
}

/// `Error`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct Error {
    #[prost(uint32, tag = "1")]
    pub(crate) code: u32,
    #[prost(string, tag = "2")]
    pub(crate) message: String,
    #[prost(uint64, optional, tag = "3")]
    pub(crate) retry_after_ms: Option<u64>,
}

/// `Challenge`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct Challenge {
    #[prost(bytes = "vec", tag = "1")]
    pub(crate) challenge: Vec<u8>,
    #[prost(string, tag = "2")]
    pub(crate) server_name: String,
    #[prost(uint64, tag = "3")]
    pub(crate) server_time_ms: u64,
}

/// `LoggedIn`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct LoggedIn {
    #[prost(bool, tag = "1")]
    pub(crate) registered: bool,
    #[prost(uint32, tag = "2")]
    pub(crate) one_time_prekeys: u32,
    #[prost(bool, tag = "3")]
    pub(crate) has_signed_prekey: bool,
    #[prost(uint32, tag = "4")]
    pub(crate) one_time_kem_prekeys: u32,
    #[prost(bool, tag = "5")]
    pub(crate) has_kem_prekey: bool,
}

/// `PreKeysStored`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct PreKeysStored {
    #[prost(uint32, tag = "1")]
    pub(crate) one_time_prekeys: u32,
    #[prost(uint32, tag = "2")]
    pub(crate) one_time_kem_prekeys: u32,
}

/// `DeviceBundle`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct DeviceBundle {
    #[prost(uint32, tag = "1")]
    pub(crate) device_id: u32,
    #[prost(bytes = "vec", tag = "2")]
    pub(crate) bundle: Vec<u8>,
}

/// `Bundles`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct Bundles {
    #[prost(message, repeated, tag = "1")]
    pub(crate) bundles: Vec<DeviceBundle>,
    #[prost(bytes = "vec", tag = "2")]
    pub(crate) device_list: Vec<u8>,
}

/// `DeviceListStored`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct DeviceListStored {
    #[prost(uint64, tag = "1")]
    pub(crate) version: u64,
}

/// `DeviceList`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct DeviceList {
    #[prost(bytes = "vec", tag = "1")]
    pub(crate) device_list: Vec<u8>,
}

/// `LinkBlob`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct LinkBlob {
    #[prost(bytes = "vec", tag = "1")]
    pub(crate) blob: Vec<u8>,
}

/// `Submitted`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct Submitted {
    #[prost(uint64, tag = "1")]
    pub(crate) message_id: u64,
}

/// `SubmittedGroup`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct SubmittedGroup {
    #[prost(uint32, tag = "1")]
    pub(crate) queued: u32,
}

/// `Acked`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct Acked {
    #[prost(uint32, tag = "1")]
    pub(crate) removed: u32,
}

/// `Push`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct Push {
    #[prost(uint64, tag = "1")]
    pub(crate) message_id: u64,
    #[prost(uint64, tag = "2")]
    pub(crate) server_time_ms: u64,
    #[prost(bytes = "vec", tag = "3")]
    pub(crate) envelope: Vec<u8>,
    /// 0 (absent): a sealed envelope; 1: a group envelope.
    #[prost(uint32, tag = "4")]
    pub(crate) envelope_kind: u32,
}

/// `PreKeysLow`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct PreKeysLow {
    #[prost(uint32, tag = "1")]
    pub(crate) remaining: u32,
    #[prost(uint32, tag = "2")]
    pub(crate) kem_remaining: u32,
}

/// `MessagesExpired`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct MessagesExpired {
    #[prost(uint64, tag = "1")]
    pub(crate) count: u64,
}
