//! Cluster mode: the accounts in the cluster's JetStream, where every node
//! sees them, in a stream shaped like a key-value bucket beside the name
//! service's (`cluster/names.rs`), `KV_achat_<cluster>_accounts`:
//!
//! - `$KV.achat_<cluster>_accounts.a.<encoded folded name>`: the account,
//!   as JSON `{"name": <spelling>, "hash": <PHC string>}`; the subject's
//!   one message is the account, its stream sequence the revision.
//!
//! The stream is made by hand and used through the stream API for the
//! reasons `cluster/names.rs` gives for nats-server 2.9.10, and the same
//! rules hold:
//!
//! - **A registration is a publish expecting last-subject-sequence 0**,
//!   checked when the entry is applied: of two nodes registering one name
//!   at once, exactly one wins.
//! - **A password change expects the revision it read**, and that is *not*
//!   atomic on 2.9.10's replicated streams (nats-server #4320: an expected
//!   revision above 0 is checked before the proposal, not when it is
//!   applied). Two changes of one account at once may both be applied:
//!   the last one written wins. Both needed the right old password.
//! - **An unregistration deletes the account's message by its sequence**,
//!   leaving nothing on the subject (no delete marker), so a later
//!   registration's expected 0 works.
//! - **Reads go to the stream leader** (direct get off): a follower could
//!   answer before it has applied a registration just acknowledged.
//!
//! Its own NATS connection, made on the accounts actor's arbiter, so the
//! accounts never wait behind the cluster's traffic. Every call is bounded
//! by [`TIMEOUT`].

use std::time::{Duration, Instant};

use async_nats::jetstream::context::PublishErrorKind;
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::stream::LastRawMessageErrorKind;
use async_nats::jetstream::{self, ErrorCode};

use super::store::{Account, StoreError};
use crate::cluster::keys::{encode_name, validate_id};
use crate::cluster::names::{auto_replicas, kv_shaped_stream};

/// The bound on every call.
pub const TIMEOUT: Duration = Duration::from_secs(3);

/// How long the start may wait for the stream (just created by several
/// nodes at once, its leader may take seconds to be elected).
const SETUP_WAIT: Duration = Duration::from_secs(30);

/// The accounts in the cluster's JetStream.
#[derive(Debug)]
pub struct KvStore {
    js: jetstream::Context,
    stream: String,
    /// `$KV.achat_<cluster>_accounts.a.`, the prefix of every account.
    prefix: String,
}

fn cluster_error(e: impl std::fmt::Display) -> StoreError {
    StoreError::Cluster(e.to_string())
}

impl KvStore {
    /// Connects to `urls` (comma-separated) and gets or creates the
    /// accounts stream of cluster `cluster_name`.
    pub async fn open(urls: &str, cluster_name: &str) -> Result<Self, StoreError> {
        validate_id(cluster_name).map_err(cluster_error)?;
        let list: Vec<String> = urls.split(',').map(|u| u.trim().to_owned()).collect();
        let client = async_nats::ConnectOptions::new()
            .name("achat-accounts")
            .connection_timeout(TIMEOUT)
            .request_timeout(Some(TIMEOUT))
            .max_reconnects(None)
            .connect(list)
            .await
            .map_err(|e| StoreError::Cluster(format!("cannot connect to NATS at {urls}: {e}")))?;
        let replicas = auto_replicas(&client.server_info());
        let bucket = format!("achat_{cluster_name}_accounts");
        let mut js = jetstream::new(client);
        js.set_timeout(TIMEOUT);
        let store = KvStore {
            js,
            stream: format!("KV_{bucket}"),
            prefix: format!("$KV.{bucket}.a."),
        };
        let config = kv_shaped_stream(store.stream.clone(), &store.prefix, replicas);
        let deadline = Instant::now() + SETUP_WAIT;
        loop {
            // Made, and answering reads: a stream just made has no leader
            // for a moment, and reads go to the leader. (`=00` is the key
            // of no name: a name holds no NUL.)
            let ready = match bounded(store.js.get_or_create_stream(config.clone())).await {
                Ok(Ok(_)) => store
                    .last(&format!("{}=00", store.prefix))
                    .await
                    .map(|_| ()),
                Ok(Err(e)) => Err(cluster_error(e)),
                Err(e) => Err(e),
            };
            match ready {
                Ok(()) => return Ok(store),
                Err(e) if Instant::now() >= deadline => return Err(e),
                Err(e) => {
                    log::info!("cluster accounts: not ready yet ({e}); trying again");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    }

    fn subject(&self, folded: &str) -> String {
        format!("{}{}", self.prefix, encode_name(folded))
    }

    /// The account on `subject` and its revision, read from the leader.
    async fn last(&self, subject: &str) -> Result<Option<(Account, u64)>, StoreError> {
        let stream = bounded(self.js.get_stream_no_info(&self.stream))
            .await?
            .map_err(cluster_error)?;
        let message = match bounded(stream.get_last_raw_message_by_subject(subject)).await? {
            Ok(message) => message,
            Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => return Ok(None),
            Err(e) => return Err(cluster_error(e)),
        };
        let value: serde_json::Value =
            serde_json::from_slice(&message.payload).map_err(cluster_error)?;
        let field = |key: &str| {
            value
                .get(key)
                .and_then(serde_json::Value::as_str)
                .map(str::to_owned)
                .ok_or_else(|| StoreError::Cluster(format!("account without {key:?}: {value}")))
        };
        let account = Account {
            name: field("name")?,
            hash: field("hash")?,
        };
        Ok(Some((account, message.sequence)))
    }

    /// Publishes `account` on `subject` if its last sequence is `expected`;
    /// `false` if it is not.
    async fn put(
        &self,
        subject: String,
        account: &Account,
        expected: u64,
    ) -> Result<bool, StoreError> {
        let payload = serde_json::json!({ "name": account.name, "hash": account.hash });
        let publish = PublishMessage::build()
            .payload(payload.to_string().into())
            .expected_last_subject_sequence(expected);
        let acked = bounded(async {
            match self.js.send_publish(subject, publish).await {
                Ok(ack) => ack.await,
                Err(e) => Err(e),
            }
        })
        .await?;
        match acked {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == PublishErrorKind::WrongLastSequence => Ok(false),
            Err(e) => Err(cluster_error(e)),
        }
    }

    pub(super) async fn get(&self, folded: &str) -> Result<Option<Account>, StoreError> {
        Ok(self.last(&self.subject(folded)).await?.map(|(a, _)| a))
    }

    pub(super) async fn create(&self, folded: &str, account: &Account) -> Result<bool, StoreError> {
        self.put(self.subject(folded), account, 0).await
    }

    pub(super) async fn set_hash(&self, folded: &str, hash: &str) -> Result<bool, StoreError> {
        let subject = self.subject(folded);
        let Some((mut account, revision)) = self.last(&subject).await? else {
            return Ok(false);
        };
        account.hash = hash.to_owned();
        // Not atomic on 2.9.10 (module docs): a change racing this one may
        // be overwritten, or overwrite it.
        self.put(subject, &account, revision).await
    }

    pub(super) async fn delete(&self, folded: &str) -> Result<bool, StoreError> {
        let Some((_, revision)) = self.last(&self.subject(folded)).await? else {
            return Ok(false);
        };
        let request = serde_json::json!({ "seq": revision, "no_erase": true });
        let answer: serde_json::Value = bounded(
            self.js
                .request(format!("STREAM.MSG.DELETE.{}", self.stream), &request),
        )
        .await?
        .map_err(cluster_error)?;
        match answer.get("error") {
            None => Ok(true),
            // Deleted by someone else meanwhile.
            Some(error)
                if error.get("err_code").and_then(serde_json::Value::as_u64)
                    == Some(ErrorCode::SEQUENCE_NOT_FOUND.0) =>
            {
                Ok(false)
            }
            Some(error) => Err(StoreError::Cluster(format!("delete refused: {error}"))),
        }
    }
}

/// `call` within [`TIMEOUT`].
async fn bounded<T>(call: impl Future<Output = T>) -> Result<T, StoreError> {
    tokio::time::timeout(TIMEOUT, call)
        .await
        .map_err(|_| StoreError::Cluster(format!("no answer within {TIMEOUT:?}")))
}
