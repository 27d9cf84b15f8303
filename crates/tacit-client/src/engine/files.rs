//! Files: attachment slots reserved at the relay, pointers sealed like
//! texts, and received pointers reported and downloaded in the background.

use std::sync::Arc;

use tacit::envelope::{AttachmentPointer, Content, ContentKind};
use tacit::Address;
use tacit_relay_proto::{AllocateAttachment, Reply, Request};
use tokio::sync::oneshot;

use crate::command::Slot;
use crate::conn::Conn;
use crate::files::{FileRefusal, IncomingFile, SavedFile};
use crate::{ClientError, Event, SentMessage};

use super::{Engine, PendingSend};

/// Reserves a slot for a blob of `size` bytes over the logged-in
/// connection.
pub(super) async fn allocate(conn: &mut Conn, size: u64) -> Result<Slot, ClientError> {
    let request = Request::AllocateAttachment(AllocateAttachment { size });
    match conn.request(request).await? {
        Ok(Reply::AttachmentAllocated {
            id, upload_token, ..
        }) => Ok((id, upload_token)),
        Ok(other) => Err(super::setup::unexpected(&other)),
        Err(e) => Err(ClientError::Relay(e)),
    }
}

impl Engine {
    /// Seals an uploaded file's pointer for `peer`'s devices and this
    /// user's others, `name` as the caption. The send then goes as a text
    /// does (resumed after a reconnect), without a history entry.
    pub(super) async fn seal_file(
        &mut self,
        peer: &str,
        pointer: AttachmentPointer,
        name: String,
        reply: oneshot::Sender<Result<SentMessage, ClientError>>,
    ) -> Result<PendingSend, ClientError> {
        let kind = ContentKind::AttachmentPointer;
        let mut pending = self
            .seal_with(peer, kind, name.into_bytes(), Some(pointer), Some(reply))
            .await?;
        pending.peer = Some(peer.to_owned());
        Ok(pending)
    }

    /// What a received attachment pointer content becomes: the
    /// [`Event::FileReceived`] to report, and the refusal to report after
    /// it when the pointer claims more than the configured maximum.
    pub(super) fn received_file(
        &self,
        sender: &Address,
        content: &Content,
        pointer: &AttachmentPointer,
        relay_id: u64,
    ) -> (IncomingFile, Option<FileRefusal>) {
        let max = self.config.max_attachment_len;
        let too_large = (pointer.size() > max).then_some(FileRefusal::TooLarge {
            size: pointer.size(),
            max,
        });
        let file = IncomingFile {
            sender: sender.clone(),
            message_id: *content.message_id(),
            timestamp_ms: content.timestamp(),
            name: String::from_utf8_lossy(content.body()).into_owned(),
            size: pointer.size(),
            content_type: pointer.content_type().to_owned(),
            relay_id,
            downloading: too_large.is_none() && self.config.download_dir.is_some(),
            pointer: pointer.clone(),
        };
        (file, too_large)
    }

    /// Reports a received file (after its content was committed) and, if
    /// it is to be downloaded, starts the download as a task of its own:
    /// the message loop does not wait for it. At most
    /// `concurrent_downloads` transfer at once.
    pub(super) async fn report_file(&mut self, file: IncomingFile, refusal: Option<FileRefusal>) {
        let download = file.downloading.then(|| {
            (
                file.sender.clone(),
                file.message_id,
                file.name.clone(),
                file.pointer.clone(),
            )
        });
        if let Some(reason) = refusal {
            let refused = Event::FileRefused {
                sender: file.sender.clone(),
                message_id: file.message_id,
                name: file.name.clone(),
                reason,
            };
            self.emit(Event::FileReceived(file)).await;
            self.emit(refused).await;
            return;
        }
        self.emit(Event::FileReceived(file)).await;
        let (Some((sender, message_id, name, pointer)), Some(dir)) =
            (download, self.config.download_dir.clone())
        else {
            return;
        };
        // Finished downloads are reaped here, so the set stays as small as
        // the downloads in progress.
        while self.downloads.try_join_next().is_some() {}
        let transfer = self.transfer.clone();
        let events = self.events.clone();
        let slots = Arc::clone(&self.download_slots);
        self.downloads.spawn(async move {
            let Ok(_slot) = slots.acquire_owned().await else {
                return;
            };
            let event = match transfer.download(&pointer, &dir, &name).await {
                Ok(path) => Event::FileSaved(SavedFile {
                    sender,
                    message_id,
                    path,
                }),
                Err(e) => {
                    tracing::warn!(error = %e, "received file refused");
                    Event::FileRefused {
                        sender,
                        message_id,
                        name,
                        reason: e.into(),
                    }
                }
            };
            let _ = events.send(event).await;
        });
    }
}
