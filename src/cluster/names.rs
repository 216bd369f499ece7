//! The name service: which node of the cluster holds which login name, and
//! which nodes are alive, agreed on by every node through JetStream.
//!
//! A login name must be unique across the cluster, so taking one is a
//! compare-and-set on shared state: one JetStream stream shaped like a
//! key-value bucket, `KV_achat_<cluster>`, one subject per key, the last
//! message of a subject being the key's value and its stream sequence the
//! key's revision:
//!
//! - `$KV.achat_<cluster>.n.<encoded name>`: the node id holding the name
//!   ([`super::keys::encode_name`]). The callers (`node/claims.rs`, the
//!   janitor) pass a name's folded form ([`crate::protocol::Folded`]), so
//!   `Alice` and `alice` are one key; this module takes any non-empty
//!   string and does not fold it itself;
//! - `$KV.achat_<cluster>.node.<node id>`: a node's lease (its last
//!   renewal time, in Unix milliseconds), renewed by the node while alive.
//!
//! The choices below are what nats-server 2.9.10 (Debian's) makes safe;
//! each was measured or read in the server's source:
//!
//! - **The stream is made by hand.** async-nats's `create_key_value` fails
//!   against servers before 2.10 (it expects `reserved_memory` in the
//!   account info), so [`NameService::open`] creates a stream with the
//!   bucket's shape itself and uses the stream API throughout.
//! - **A claim is a publish expecting last-subject-sequence 0.** Before
//!   2.9.21 (nats-server #4320) a replicated stream checks an expected
//!   revision greater than 0 only before proposing the message to raft, so
//!   two nodes racing `update(name, revision)` (a KV `create` over a delete
//!   marker is one) both won about one round in three. An expected 0 is
//!   checked when the entry is applied, in log order, and was safe in every
//!   race. So a claim only ever succeeds on a subject with no message at
//!   all, and no operation ever leaves a marker behind.
//! - **A release deletes the claim's message by its sequence.** That removes
//!   exactly that claim and leaves nothing on the subject, so the next
//!   claim (expected 0) works; a stale revision deletes nothing, never a
//!   newer claim by another node. The first design purged the subject up to
//!   `revision + 1` (a filtered purge), which a running server does right,
//!   but 2.9.10 *replays* a purge from its raft log on restart as "remove
//!   every message up to the stream's last sequence at the time"
//!   (`applyStreamEntries`, `isRecovering`, fixed only in 2.9.19): a server
//!   restarted within the two minutes before its next raft snapshot would
//!   lose every older claim of every name. A deletion is replayed as the
//!   deletion of one sequence. (This is why the stream allows deletion,
//!   where a KV bucket has `deny_delete`.)
//! - **Reads go to the stream leader.** Direct get is off (`allow_direct`
//!   false) and the holder of a name is read with `STREAM.MSG.GET`, which
//!   the leader answers: a direct get may be answered by a follower that
//!   has not applied the claim just acknowledged.
//! - **No per-key expiry.** Per-message TTLs arrive in 2.11, so a dead
//!   node's names are not freed by the server: the cluster layer watches
//!   the leases ([`NameService::leases`]) and releases for the dead.
//!
//! Every call is bounded by the service's timeout ([`DEFAULT_TIMEOUT`],
//! [`NameService::with_timeout`]); what the server could not be asked or did
//! not answer in time is `Unavailable` (a timeout, no responders, no
//! quorum). A claim that timed out may still have been applied: a retry
//! then reports the name [`ClaimError::Taken`] by the caller's own node.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_nats::jetstream::consumer::{DeliverPolicy, pull::OrderedConfig};
use async_nats::jetstream::context::PublishErrorKind;
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::stream::{self, DiscardPolicy, LastRawMessageErrorKind, StorageType};
use async_nats::jetstream::{self, ErrorCode};
use futures_util::StreamExt;

use super::keys::{IdError, decode_name, encode_name, validate_id};

/// The bound on every call of a [`NameService`] unless set otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(3);

/// The most replicas an automatic choice asks for: three survive the
/// loss of one server, more only slow every write.
const MAX_AUTO_REPLICAS: usize = 3;

/// How often a claim is tried again when the name was released between
/// its publish and the read of the holder.
const CLAIM_ATTEMPTS: usize = 3;

/// What went wrong with a call of the name service, other than a claim.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameServiceError {
    /// A cluster name or node id is not a valid id.
    #[error("invalid id: {0}")]
    InvalidId(#[from] IdError),
    /// The name is empty (it would make no key).
    #[error("a name may not be empty")]
    EmptyName,
    /// NATS did not answer in time, has no responders, no quorum, or
    /// refused the request.
    #[error("the name service is unavailable: {0}")]
    Unavailable(String),
}

/// Why a name could not be claimed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClaimError {
    /// Another claim holds the name: node `holder`, since `revision`.
    #[error("the name is held by node {holder} (revision {revision})")]
    Taken {
        /// The node id holding the name.
        holder: String,
        /// The holder's claim (what it releases with).
        revision: u64,
    },
    /// The name or node id is invalid (see [`NameServiceError`]).
    #[error(transparent)]
    Invalid(NameServiceError),
    /// NATS did not answer in time, has no responders or no quorum; the
    /// claim may or may not have been made.
    #[error("the name service is unavailable: {0}")]
    Unavailable(String),
}

impl From<NameServiceError> for ClaimError {
    fn from(error: NameServiceError) -> Self {
        match error {
            NameServiceError::Unavailable(why) => ClaimError::Unavailable(why),
            invalid => ClaimError::Invalid(invalid),
        }
    }
}

/// A name held, as [`NameService::holders`] lists it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Holder {
    /// The key the name was claimed under (in achat, its folded form).
    pub name: String,
    /// The node id holding it.
    pub node: String,
    /// The claim's revision (its stream sequence).
    pub revision: u64,
}

/// The cluster's name service over one JetStream stream; cheap to clone
/// (a clone shares the connection).
#[derive(Clone, Debug)]
pub struct NameService {
    js: jetstream::Context,
    /// `KV_achat_<cluster>`.
    stream: String,
    /// `$KV.achat_<cluster>.`, the prefix of every key's subject.
    prefix: String,
    timeout: Duration,
}

/// Maps anything a request can fail with to [`NameServiceError::Unavailable`].
fn unavailable(error: impl std::fmt::Display) -> NameServiceError {
    NameServiceError::Unavailable(error.to_string())
}

/// The replicas to ask for when none was given: 1 on a server outside a
/// NATS cluster, else as many servers as the cluster is known to have,
/// up to [`MAX_AUTO_REPLICAS`].
pub(crate) fn auto_replicas(info: &async_nats::ServerInfo) -> usize {
    if info.cluster.is_none() {
        return 1;
    }
    info.connect_urls.len().clamp(1, MAX_AUTO_REPLICAS)
}

/// A stream shaped like a key-value bucket, as 2.9.10 makes safe (module
/// docs): one message per subject under `prefix`, deletions by sequence
/// allowed, direct get off. The name service's, and the accounts' in
/// cluster mode (`accounts/kv.rs`).
pub(crate) fn kv_shaped_stream(name: String, prefix: &str, replicas: usize) -> stream::Config {
    stream::Config {
        name,
        subjects: vec![format!("{prefix}>")],
        max_messages_per_subject: 1,
        discard: DiscardPolicy::New,
        allow_rollup: true,
        // Releases delete a claim by sequence (module docs).
        deny_delete: false,
        deny_purge: false,
        // Reads must see the last acknowledged claim (module docs).
        allow_direct: false,
        mirror_direct: false,
        storage: StorageType::File,
        num_replicas: replicas,
        ..Default::default()
    }
}

impl NameService {
    /// Opens the service of cluster `cluster_name` on `client`: gets the
    /// stream `KV_achat_<cluster_name>`, or creates it with `replicas`
    /// replicas (`None`: automatic, see the module docs). An existing
    /// stream is used as it is, whatever its replicas. Bounded by
    /// [`DEFAULT_TIMEOUT`], as every later call (see [`Self::with_timeout`]).
    pub async fn open(
        client: async_nats::Client,
        cluster_name: &str,
        replicas: Option<usize>,
    ) -> Result<Self, NameServiceError> {
        validate_id(cluster_name)?;
        let replicas = replicas.unwrap_or_else(|| auto_replicas(&client.server_info()));
        let bucket = format!("achat_{cluster_name}");
        let service = NameService {
            js: jetstream::new(client),
            stream: format!("KV_{bucket}"),
            prefix: format!("$KV.{bucket}."),
            timeout: DEFAULT_TIMEOUT,
        }
        .with_timeout(DEFAULT_TIMEOUT);
        let config = kv_shaped_stream(service.stream.clone(), &service.prefix, replicas);
        service
            .bounded(async {
                service
                    .js
                    .get_or_create_stream(config)
                    .await
                    .map_err(unavailable)
            })
            .await?;
        Ok(service)
    }

    /// The same service with every call bounded by `timeout`.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        // The client's own waits (requests, publish acks) end with ours, so
        // nothing is left waiting after a call gave up.
        self.js.set_timeout(timeout);
        self
    }

    /// The bound on every call.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Runs `call` within the service's timeout.
    async fn bounded<T>(
        &self,
        call: impl Future<Output = Result<T, NameServiceError>>,
    ) -> Result<T, NameServiceError> {
        tokio::time::timeout(self.timeout, call)
            .await
            .unwrap_or_else(|_| Err(unavailable(format!("timed out after {:?}", self.timeout))))
    }

    fn name_subject(&self, name: &str) -> Result<String, NameServiceError> {
        if name.is_empty() {
            return Err(NameServiceError::EmptyName);
        }
        Ok(format!("{}n.{}", self.prefix, encode_name(name)))
    }

    fn lease_subject(&self, node: &str) -> Result<String, NameServiceError> {
        validate_id(node)?;
        Ok(format!("{}node.{node}", self.prefix))
    }

    /// Claims `name` for node `node`; the revision returned is what
    /// [`Self::release`] takes. Succeeds only if nobody holds the name, at
    /// the moment the claim is applied: of any number of racing claims,
    /// exactly one wins.
    pub async fn claim(&self, name: &str, node: &str) -> Result<u64, ClaimError> {
        let subject = self.name_subject(name)?;
        validate_id(node).map_err(NameServiceError::from)?;
        let attempts = async {
            for _ in 0..CLAIM_ATTEMPTS {
                let publish = PublishMessage::build()
                    .payload(node.to_owned().into())
                    .expected_last_subject_sequence(0);
                let acked = match self.js.send_publish(subject.clone(), publish).await {
                    Ok(ack) => ack.await,
                    Err(error) => Err(error),
                };
                match acked {
                    Ok(ack) => return Ok(ack.sequence),
                    Err(error) if error.kind() == PublishErrorKind::WrongLastSequence => {}
                    Err(error) => return Err(ClaimError::Unavailable(error.to_string())),
                }
                // Held: say by whom. Released since? Then try again.
                if let Some((holder, revision)) = self.last(&subject).await? {
                    return Err(ClaimError::Taken { holder, revision });
                }
            }
            Err(ClaimError::Unavailable(format!(
                "the name changed hands {CLAIM_ATTEMPTS} times during the claim"
            )))
        };
        tokio::time::timeout(self.timeout, attempts)
            .await
            .unwrap_or_else(|_| {
                Err(ClaimError::Unavailable(format!(
                    "timed out after {:?}",
                    self.timeout
                )))
            })
    }

    /// Releases the claim `revision` of `name`. A stale revision (released
    /// already, or of another name) releases nothing: a newer claim, by
    /// anybody, is never touched.
    pub async fn release(&self, name: &str, revision: u64) -> Result<(), NameServiceError> {
        let subject = self.name_subject(name)?;
        self.bounded(self.delete_claim(&subject, revision)).await
    }

    /// Renews node `node`'s lease (a plain write of the time); returns its
    /// revision.
    pub async fn renew_lease(&self, node: &str) -> Result<u64, NameServiceError> {
        let subject = self.lease_subject(node)?;
        let millis = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.as_millis());
        self.bounded(async {
            let ack = self
                .js
                .publish(subject, millis.to_string().into())
                .await
                .map_err(unavailable)?;
            Ok(ack.await.map_err(unavailable)?.sequence)
        })
        .await
    }

    /// Removes node `node`'s lease (a renewal racing this call may
    /// survive it).
    pub async fn drop_lease(&self, node: &str) -> Result<(), NameServiceError> {
        let subject = self.lease_subject(node)?;
        self.bounded(async {
            match self.last(&subject).await? {
                Some((_, revision)) => self.delete_claim(&subject, revision).await,
                None => Ok(()),
            }
        })
        .await
    }

    /// Every name held now, in no particular order.
    pub async fn holders(&self) -> Result<Vec<Holder>, NameServiceError> {
        let prefix = format!("{}n.", self.prefix);
        let entries = self.last_per_subject(&prefix).await?;
        Ok(entries
            .into_iter()
            .filter_map(|(key, node, revision)| match decode_name(&key) {
                Some(name) => Some(Holder {
                    name,
                    node,
                    revision,
                }),
                None => {
                    // Written by something else than this module.
                    log::warn!("name service: ignoring the key {key:?}, not an encoded name");
                    None
                }
            })
            .collect())
    }

    /// Every lease: (node id, revision of its last renewal).
    pub async fn leases(&self) -> Result<Vec<(String, u64)>, NameServiceError> {
        let prefix = format!("{}node.", self.prefix);
        let entries = self.last_per_subject(&prefix).await?;
        Ok(entries
            .into_iter()
            .map(|(node, _, revision)| (node, revision))
            .collect())
    }

    /// The value and revision of `subject`'s message, read from the stream
    /// leader; `None` if the subject has none.
    async fn last(&self, subject: &str) -> Result<Option<(String, u64)>, NameServiceError> {
        let stream = self.handle().await?;
        match stream.get_last_raw_message_by_subject(subject).await {
            Ok(message) => Ok(Some((
                String::from_utf8_lossy(&message.payload).into_owned(),
                message.sequence,
            ))),
            Err(error) if error.kind() == LastRawMessageErrorKind::NoMessageFound => Ok(None),
            Err(error) => Err(unavailable(error)),
        }
    }

    /// Deletes the message `revision` if it is on `subject`; nothing if it
    /// is gone or on another subject.
    async fn delete_claim(&self, subject: &str, revision: u64) -> Result<(), NameServiceError> {
        let stream = self.handle().await?;
        // The subject of a sequence never changes: checked once, it holds
        // when the deletion is applied, whatever happens in between.
        match stream.get_raw_message(revision).await {
            Ok(message) if message.subject.as_str() == subject => {}
            Ok(_) => return Ok(()),
            Err(error) if error.kind() == LastRawMessageErrorKind::NoMessageFound => return Ok(()),
            Err(error) => return Err(unavailable(error)),
        }
        let request = serde_json::json!({ "seq": revision, "no_erase": true });
        let answer: serde_json::Value = self
            .js
            .request(format!("STREAM.MSG.DELETE.{}", self.stream), &request)
            .await
            .map_err(unavailable)?;
        let Some(error) = answer.get("error") else {
            return Ok(());
        };
        // Deleted by someone else since the check: released all the same.
        let code = error.get("err_code").and_then(serde_json::Value::as_u64);
        if code == Some(ErrorCode::SEQUENCE_NOT_FOUND.0) || self.gone(revision).await? {
            return Ok(());
        }
        Err(unavailable(format!("message delete refused: {error}")))
    }

    /// Whether message `revision` is no longer in the stream.
    async fn gone(&self, revision: u64) -> Result<bool, NameServiceError> {
        match self.handle().await?.get_raw_message(revision).await {
            Ok(_) => Ok(false),
            Err(error) if error.kind() == LastRawMessageErrorKind::NoMessageFound => Ok(true),
            Err(error) => Err(unavailable(error)),
        }
    }

    async fn handle(&self) -> Result<stream::Stream<()>, NameServiceError> {
        self.js
            .get_stream_no_info(&self.stream)
            .await
            .map_err(unavailable)
    }

    /// The last message of every subject under `prefix`: (the subject's
    /// rest after `prefix`, the value, the revision). An ordered consumer
    /// delivering the last message per subject streams them all, so tens
    /// of thousands take one consumer and no request per key. Each message
    /// must come within the timeout (the whole listing may take longer).
    async fn last_per_subject(
        &self,
        prefix: &str,
    ) -> Result<Vec<(String, String, u64)>, NameServiceError> {
        let stream = self.handle().await?;
        let consumer = self
            .bounded(async {
                stream
                    .create_consumer(OrderedConfig {
                        filter_subject: format!("{prefix}>"),
                        deliver_policy: DeliverPolicy::LastPerSubject,
                        ..Default::default()
                    })
                    .await
                    .map_err(unavailable)
            })
            .await?;
        let pending = consumer.cached_info().num_pending;
        let mut entries = Vec::with_capacity(usize::try_from(pending).unwrap_or(0));
        if pending == 0 {
            return Ok(entries);
        }
        let mut messages = self
            .bounded(async { consumer.messages().await.map_err(unavailable) })
            .await?;
        loop {
            let next = self
                .bounded(async {
                    match messages.next().await {
                        Some(message) => message.map_err(unavailable),
                        None => Err(unavailable("the listing ended early")),
                    }
                })
                .await?;
            let info = next.info().map_err(unavailable)?;
            let (revision, left) = (info.stream_sequence, info.pending);
            let key = next
                .subject
                .as_str()
                .strip_prefix(prefix)
                .unwrap_or_default()
                .to_owned();
            let value = String::from_utf8_lossy(&next.payload).into_owned();
            entries.push((key, value, revision));
            if left == 0 {
                return Ok(entries);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replicas_follow_the_cluster() {
        let mut info = async_nats::ServerInfo::default();
        assert_eq!(auto_replicas(&info), 1);
        info.cluster = Some("c".to_owned());
        assert_eq!(auto_replicas(&info), 1);
        info.connect_urls = vec!["a".into(), "b".into()];
        assert_eq!(auto_replicas(&info), 2);
        info.connect_urls = vec!["a".into(); 5];
        assert_eq!(auto_replicas(&info), 3);
    }
}
