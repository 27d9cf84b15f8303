//! Logging in: the account's connection, and the prekeys kept in stock
//! at each login.

use tacit_relay_proto::{LoggedIn, Login, Reply, Request, UploadPreKeys};

use crate::conn::{Conn, Role};
use crate::endpoint::login_name;
use crate::{now_ms, ClientError, Event};

use super::prekeys::{self, Published, Stored};
use super::{challenge, unexpected, Counts, Engine};

impl Engine {
    pub(super) async fn connect(&mut self) -> Result<Conn, ClientError> {
        let mut conn =
            Conn::connect(&self.endpoint, self.config.request_timeout, Role::Account).await?;
        let challenge = challenge(&mut conn).await?;
        let server_name = login_name(&self.config.server_name, &challenge.server_name)?;
        let login = Login::sign(
            self.manager.account().identity(),
            server_name,
            &challenge.challenge,
            now_ms(),
            self.manager.local_address().clone(),
        );
        let info = match conn.request(Request::Login(login)).await? {
            Ok(Reply::LoggedIn(info)) => info,
            Ok(other) => return Err(unexpected(&other)),
            Err(e) => return Err(ClientError::Relay(e)),
        };
        self.counts = Counts::default();
        self.backlog = true;
        self.ensure_token(&mut conn).await?;
        self.emit(Event::Connected).await;
        self.maintain_prekeys(&mut conn, info).await?;
        Ok(conn)
    }

    /// At login: rotate an old signed prekey (and the last-resort KEM
    /// prekey with it), restore prekeys the relay lacks, top up one-time
    /// prekeys and one-time KEM prekeys below the low mark.
    async fn maintain_prekeys(
        &mut self,
        conn: &mut Conn,
        info: LoggedIn,
    ) -> Result<(), ClientError> {
        let now = now_ms();
        let max_age =
            u64::try_from(self.config.signed_prekey_max_age.as_millis()).unwrap_or(u64::MAX);
        let grace = u64::try_from(self.config.signed_prekey_grace.as_millis()).unwrap_or(u64::MAX);
        let age = now.saturating_sub(self.manager.account().signed_prekey().created_at());
        let rotated = age > max_age;
        if rotated {
            prekeys::rotate(&mut self.manager, now, grace)?;
        }
        let relay = Stored {
            one_time: info.one_time_prekeys,
            one_time_kem: info.one_time_kem_prekeys,
        };
        let has_kem = self.manager.account().has_kem_prekeys();
        let published = if !info.has_signed_prekey {
            Some(prekeys::publish_all(&mut self.manager, conn, &self.config).await?)
        } else if has_kem && !info.has_kem_prekey {
            // The relay has the classical prekeys but no KEM prekey: an
            // account upgraded to tacit-v2, or a relay from before it.
            let mut published =
                prekeys::publish_kem(&mut self.manager, conn, &self.config, relay.one_time).await?;
            if rotated {
                let first = self.replacing_keys();
                published.stored = prekeys::upload_batches(conn, first, &[], &[])
                    .await?
                    .unwrap_or(published.stored);
            }
            if relay.one_time < self.config.prekeys_low {
                let stock = Stored {
                    one_time: relay.one_time,
                    one_time_kem: published.stored.one_time_kem,
                };
                if let Some(p) = prekeys::top_up(
                    &mut self.manager,
                    conn,
                    &self.config,
                    stock,
                    UploadPreKeys::default(),
                )
                .await?
                {
                    published.uploaded = p.uploaded;
                    published.stored = p.stored;
                }
            }
            Some(published)
        } else {
            let low = relay.one_time < self.config.prekeys_low
                || (has_kem && relay.one_time_kem < self.config.prekeys_low);
            let first = if rotated {
                self.replacing_keys()
            } else {
                UploadPreKeys::default()
            };
            if low {
                prekeys::top_up(&mut self.manager, conn, &self.config, relay, first).await?
            } else {
                prekeys::upload_batches(conn, first, &[], &[])
                    .await?
                    .map(|stored| Published {
                        stored,
                        ..Published::default()
                    })
            }
        };
        if let Some(published) = published {
            self.emit(published.event(rotated)).await;
        }
        Ok(())
    }

    /// The signed, fallback and last-resort KEM prekeys, for upload after
    /// a rotation.
    fn replacing_keys(&self) -> UploadPreKeys {
        UploadPreKeys {
            signed_prekey: Some(prekeys::signed_prekey(&self.manager)),
            fallback_prekey: Some(prekeys::fallback(&self.manager)),
            kem_last_resort_prekey: prekeys::kem_last_resort(&self.manager),
            ..UploadPreKeys::default()
        }
    }
}
