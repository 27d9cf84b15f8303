//! The PostgreSQL backend.

use std::sync::Arc;

use tacit::Address;

use super::{DeviceInfo, Outcome, QueueStats, StoreError, StoredMessage, Writer, WriterLimits};
use crate::metrics::Metrics;
use crate::online::Online;

/// Starts the writer task.
pub(crate) async fn start_writer(
    _url: &str,
    _limits: WriterLimits,
    _online: Arc<Online>,
    _metrics: Arc<Metrics>,
) -> Result<(Writer, tokio::task::JoinHandle<()>), StoreError> {
    Err(StoreError::msg("PostgreSQL is not supported yet"))
}

/// The pool's readers.
#[derive(Debug, Clone)]
pub(crate) struct Readers;

impl Readers {
    pub(crate) async fn open(_url: &str, _count: usize) -> Result<Self, StoreError> {
        Err(StoreError::msg("PostgreSQL is not supported yet"))
    }
    pub(crate) async fn device(&self, _address: &Address) -> Outcome<Option<DeviceInfo>> {
        unimplemented!()
    }
    pub(crate) async fn device_list(&self, _user_id: &str) -> Outcome<Option<Vec<u8>>> {
        unimplemented!()
    }
    pub(crate) async fn messages_after(
        &self,
        _address: &Address,
        _after: u64,
        _now_ms: u64,
        _limit: usize,
    ) -> Outcome<Vec<StoredMessage>> {
        unimplemented!()
    }
    pub(crate) async fn stats(&self) -> Outcome<QueueStats> {
        unimplemented!()
    }
}
