//! What a PostgreSQL batch holds in memory, as the SQLite writer does
//! (`store::sqlite::held`): for each device row the batch locks (those its
//! commands name, and every device of a user whose list or registration
//! it changes), the device's token hash and queue counters, read by the
//! statement that locks them ([`super::apply::lock_rows`]); its `Submit`
//! and `Ack` commands check and count them in memory, and they are written
//! back, one statement for all devices that changed, before the commit and
//! before any other command.
//!
//! Every other command reads or changes the counters through SQL, so it
//! finds the true ones; the rows held are dropped before it runs, and a
//! `Submit` or `Ack` after it reads its device's row again (one statement),
//! as it does for a device that did not exist when the batch took its
//! locks. A submission is then one round trip (its insert), where it was
//! four (its savepoint, the read of the device row, the insert with the
//! count, the savepoint's release); three in a batch run again with a
//! savepoint around each submission.

use std::collections::HashMap;

use tacit::Address;
use tokio_postgres::{Error, Row};

use super::apply::{execute, query_opt, Tx};

/// A device's token hash and queue counters, held.
#[derive(Debug)]
pub(super) struct HeldDevice {
    /// The hash of the delivery token the device set, if any.
    pub(super) token_hash: Option<Vec<u8>>,
    /// Messages queued.
    pub(super) queued: i64,
    /// Envelope bytes queued.
    pub(super) queued_bytes: i64,
    /// Whether the counters differ from the database's.
    changed: bool,
}

impl HeldDevice {
    /// The token hash and counters in `row`'s columns from `first` on.
    fn read(row: &Row, first: usize) -> Self {
        Self {
            token_hash: row.get(first),
            queued: row.get(first + 1),
            queued_bytes: row.get(first + 2),
            changed: false,
        }
    }

    /// Counts `messages` of `bytes` in all into the queue (negative:
    /// takes them off).
    pub(super) fn count(&mut self, messages: i64, bytes: i64) {
        self.queued = self.queued.saturating_add(messages);
        self.queued_bytes = self.queued_bytes.saturating_add(bytes);
        self.changed = true;
    }
}

/// The devices one batch holds; bounded by the rows it locks (the devices
/// its commands name, all the devices of the users they name).
#[derive(Debug, Default)]
pub(super) struct HeldDevices {
    rows: HashMap<Address, HeldDevice>,
}

impl HeldDevices {
    /// The devices of `rows` (`user_id, device_id, token_hash, queued,
    /// queued_bytes`), read under their row locks: the batch's locking
    /// statement ([`super::apply::lock_rows`]) returns them, so that no
    /// command reads its device again until a write-back drops them.
    pub(super) fn locked(rows: &[Row]) -> Self {
        let rows = rows
            .iter()
            .filter_map(|row| {
                let device = u32::try_from(row.get::<_, i64>(1)).ok()?;
                let address = Address::new(row.get::<_, &str>(0), device).ok()?;
                Some((address, HeldDevice::read(row, 2)))
            })
            .collect();
        Self { rows }
    }

    /// `address`'s row: the one held, or read now and held; `None` if
    /// there is no such device.
    pub(super) async fn row(
        &mut self,
        t: &Tx<'_>,
        address: &Address,
    ) -> Result<Option<&mut HeldDevice>, Error> {
        if !self.rows.contains_key(address) {
            let Some(row) = query_opt(
                t,
                "SELECT token_hash, queued, queued_bytes FROM devices WHERE user_id = $1 AND device_id = $2 FOR UPDATE",
                &[&address.user_id(), &i64::from(address.device_id())],
            )
            .await?
            else {
                return Ok(None);
            };
            self.rows.insert(address.clone(), HeldDevice::read(&row, 0));
        }
        Ok(self.rows.get_mut(address))
    }

    /// Writes the counters that changed to the database, in one
    /// statement, and drops every row held. On an error the caller
    /// abandons the transaction.
    pub(super) async fn write_back(&mut self, t: &Tx<'_>) -> Result<(), Error> {
        let mut changed: Vec<(Address, HeldDevice)> = std::mem::take(&mut self.rows)
            .into_iter()
            .filter(|(_, held)| held.changed)
            .collect();
        if changed.is_empty() {
            return Ok(());
        }
        // In key order, the order in which the batch locked the rows.
        changed.sort_unstable_by(|a, b| {
            (a.0.user_id(), a.0.device_id()).cmp(&(b.0.user_id(), b.0.device_id()))
        });
        let mut users = Vec::with_capacity(changed.len());
        let mut devices = Vec::with_capacity(changed.len());
        let mut queued = Vec::with_capacity(changed.len());
        let mut queued_bytes = Vec::with_capacity(changed.len());
        for (address, held) in changed {
            users.push(address.user_id().to_owned());
            devices.push(i64::from(address.device_id()));
            queued.push(held.queued);
            queued_bytes.push(held.queued_bytes);
        }
        execute(
            t,
            "UPDATE devices AS d SET queued = u.queued, queued_bytes = u.queued_bytes
             FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::bigint[])
                 AS u(user_id, device_id, queued, queued_bytes)
             WHERE d.user_id = u.user_id AND d.device_id = u.device_id",
            &[&users, &devices, &queued, &queued_bytes],
        )
        .await?;
        Ok(())
    }
}
