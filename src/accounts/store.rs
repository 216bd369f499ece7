//! Where registered names are kept: [`Store`], over one of two backends.
//!
//! - on one node, an SQLite file (`sqlite.rs`, `--accounts PATH`);
//! - in cluster mode, a stream of the cluster's JetStream shaped like a
//!   key-value bucket (`kv.rs`), which every node sees.
//!
//! Both keep one [`Account`] per folded name
//! ([`crate::protocol::fold_name`]). The calls are async: SQLite's, which
//! block, run on the blocking thread pool; the cluster's are requests to
//! NATS. None runs on the broker's or a worker's thread.

use std::path::PathBuf;
use std::sync::Arc;

use super::kv::KvStore;
use super::sqlite::{SCHEMA_VERSION, SqliteStore};

/// A registered name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// The spelling it was registered with.
    pub name: String,
    /// The Argon2id hash of its password, a PHC string.
    pub hash: String,
}

/// What went wrong with the accounts file.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The file cannot be opened or created (a missing directory, no
    /// permission, a directory in its place).
    #[error("accounts file {path}: cannot open or create it: {source}")]
    Open {
        /// The file.
        path: PathBuf,
        /// SQLite's word for it.
        source: rusqlite::Error,
    },
    /// The file is not an SQLite database, or a damaged one.
    #[error("accounts file {path}: not an achat accounts database, or damaged: {why}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What SQLite found.
        why: String,
    },
    /// The file opens but cannot be written.
    #[error("accounts file {path}: cannot write to it: {source}")]
    Unwritable {
        /// The file.
        path: PathBuf,
        /// SQLite's word for it.
        source: rusqlite::Error,
    },
    /// The file was made by a newer achat.
    #[error("accounts file {path}: schema version {found}, this achat knows {SCHEMA_VERSION}")]
    NewerSchema {
        /// The file.
        path: PathBuf,
        /// The version in it.
        found: i64,
    },
    /// A read or write failed while serving.
    #[error("accounts database: {0}")]
    Query(#[from] rusqlite::Error),
    /// Cluster mode: the accounts' stream could not be reached, or did
    /// not answer in time.
    #[error("cluster accounts: {0}")]
    Cluster(String),
    /// The blocking task running a call was lost (the runtime is
    /// stopping).
    #[error("accounts database: the call was cancelled")]
    Cancelled,
}

/// The store of registered names.
#[derive(Debug)]
pub enum Store {
    /// An SQLite file on this node.
    Sqlite(Arc<SqliteStore>),
    /// The cluster's key-value store.
    Kv(Box<KvStore>),
}

/// Runs a blocking SQLite call on the blocking pool.
async fn blocking<T: Send + 'static>(
    store: &Arc<SqliteStore>,
    call: impl FnOnce(&SqliteStore) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    let store = store.clone();
    tokio::task::spawn_blocking(move || call(&store))
        .await
        .unwrap_or(Err(StoreError::Cancelled))
}

impl Store {
    /// For a store only this process writes (the SQLite file), every
    /// registered name's folded form; `None` for the cluster's store,
    /// which other nodes write too.
    pub async fn local_index(&self) -> Result<Option<Vec<String>>, StoreError> {
        match self {
            Store::Sqlite(s) => blocking(s, |s| s.folded_names()).await.map(Some),
            Store::Kv(_) => Ok(None),
        }
    }

    /// The account registered under `folded`, if any.
    pub async fn get(&self, folded: &str) -> Result<Option<Account>, StoreError> {
        match self {
            Store::Sqlite(s) => {
                let folded = folded.to_owned();
                blocking(s, move |s| s.get(&folded)).await
            }
            Store::Kv(kv) => kv.get(folded).await,
        }
    }

    /// Registers `account` under `folded`; `false` if it already was.
    /// Atomic in both backends: of two racing registrations one wins.
    pub async fn create(&self, folded: &str, account: Account) -> Result<bool, StoreError> {
        match self {
            Store::Sqlite(s) => {
                let folded = folded.to_owned();
                blocking(s, move |s| s.create(&folded, &account)).await
            }
            Store::Kv(kv) => kv.create(folded, &account).await,
        }
    }

    /// Replaces the hash of `folded`; `false` if it is not registered.
    pub async fn set_hash(&self, folded: &str, hash: String) -> Result<bool, StoreError> {
        match self {
            Store::Sqlite(s) => {
                let folded = folded.to_owned();
                blocking(s, move |s| s.set_hash(&folded, &hash)).await
            }
            Store::Kv(kv) => kv.set_hash(folded, &hash).await,
        }
    }

    /// Removes `folded`; `false` if it was not registered.
    pub async fn delete(&self, folded: &str) -> Result<bool, StoreError> {
        match self {
            Store::Sqlite(s) => {
                let folded = folded.to_owned();
                blocking(s, move |s| s.delete(&folded)).await
            }
            Store::Kv(kv) => kv.delete(folded).await,
        }
    }
}
