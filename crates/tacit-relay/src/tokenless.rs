//! The tokenless quota (`docs/relay.md`, "Delivery tokens"): how many
//! recipients that set a delivery token a logged-in account may reach
//! without presenting it. An anonymous sender has no quota: it must
//! present the token.

use std::sync::Arc;

use tacit_relay_proto::ErrorCode;

use crate::limits::{PerKey, Rate};
use crate::store::{refuse, Outcome};

/// The per-account buckets of the tokenless quota, held by this node.
#[derive(Debug)]
pub(crate) struct TokenlessQuota(PerKey<String>);

impl TokenlessQuota {
    /// A quota of `rate` per account.
    pub(crate) fn new(rate: Rate) -> Self {
        Self(PerKey::new(rate))
    }

    /// Forgets the buckets that have refilled.
    pub(crate) fn sweep(&self) {
        self.0.sweep();
    }
}

/// Who submits, as far as the token check cares. Nothing of it is stored.
#[derive(Debug, Clone)]
pub(crate) enum Sender {
    /// A connection that is not logged in.
    Anonymous,
    /// A logged-in account (its user id), with the quota it draws on.
    Account {
        user_id: String,
        quota: Arc<TokenlessQuota>,
    },
}

impl Sender {
    /// Whether the sender is logged in (and so may go without a token,
    /// within its quota).
    pub(crate) fn logged_in(&self) -> bool {
        matches!(self, Self::Account { .. })
    }

    /// Takes `n` units of the quota, all or none, for recipients whose
    /// token was not presented; `first` names the first of them in the
    /// refusal. Nothing to take is always accepted.
    pub(crate) fn charge(&self, n: u32, first: impl std::fmt::Display) -> Outcome<()> {
        if n == 0 {
            return Ok(());
        }
        let Self::Account { user_id, quota } = self else {
            return refuse(
                ErrorCode::DeliveryTokenRefused,
                format!("{first}: the recipient requires its delivery token"),
            );
        };
        match quota.0.take_exact(user_id.clone(), n) {
            Ok(()) => Ok(()),
            Err(wait) => {
                let mut reply = tacit_relay_proto::ErrorReply::new(
                    ErrorCode::DeliveryTokenRefused,
                    format!(
                        "{first}: the recipient requires its delivery token, and {n} \
                         submission(s) without it exceed this account's tokenless quota"
                    ),
                );
                reply.retry_after_ms =
                    wait.map(|w| u64::try_from(w.as_millis()).unwrap_or(u64::MAX).max(1));
                Err(reply)
            }
        }
    }
}
