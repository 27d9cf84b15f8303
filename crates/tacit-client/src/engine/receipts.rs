//! Delivery and read receipts: sent at once, or batched per sender while
//! the backlog drains.

use tacit::envelope::ContentKind;

use crate::{ClientError, MessageId, ReceiptKind};

use super::{Engine, Job};

/// The most message ids one delivery receipt carries (16 bytes each).
const RECEIPT_BATCH: usize = 256;

impl Engine {
    /// Sends the delivery receipts held while the backlog drained: one per
    /// sender user (per [`RECEIPT_BATCH`] ids) rather than one per message,
    /// which keeps a long backlog well within the relay's rate limits for
    /// connections that are not logged in. Receipts not yet sent when the
    /// connection drops are sent after the next backlog.
    pub(super) async fn flush_receipts(&mut self) -> Result<(), ClientError> {
        while let Some(mut due) = self.receipts_due.first_entry() {
            let user = due.key().clone();
            let ids = due.get_mut();
            let batch: Vec<MessageId> = ids.drain(..ids.len().min(RECEIPT_BATCH)).collect();
            if ids.is_empty() {
                due.remove();
            }
            self.send_receipt(&user, ReceiptKind::Delivered, &batch)
                .await?;
        }
        Ok(())
    }

    /// Sends a receipt; a refusal is logged, a lost connection returned.
    pub(super) async fn send_receipt(
        &mut self,
        user: &str,
        kind: ReceiptKind,
        ids: &[MessageId],
    ) -> Result<(), ClientError> {
        let content_kind = match kind {
            ReceiptKind::Delivered => ContentKind::DeliveryReceipt,
            ReceiptKind::Read => ContentKind::ReadReceipt,
        };
        let body = ids.concat();
        let pending = match self.seal(user, content_kind, body, None).await {
            Ok(p) => p,
            Err(e) if matches!(e, ClientError::Connection(_) | ClientError::Timeout(_)) => {
                return Err(e)
            }
            Err(e) => {
                tracing::warn!(error = %e, "receipt not sent");
                return Ok(());
            }
        };
        match self.submit(pending).await {
            Ok(()) => Ok(()),
            Err((e, pending)) => {
                // Resumed after the reconnection.
                self.waiting.push_back(Job::Resume(pending));
                Err(e)
            }
        }
    }
}
