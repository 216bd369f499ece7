//! Starting the accounts at server start: the backend chosen (the SQLite
//! file, or the cluster's JetStream in cluster mode), opened and checked,
//! and the [`Accounts`] actor started on an arbiter of its own.

use std::io;
use std::sync::Arc;

use actix::prelude::*;
use log::info;
use tokio::sync::oneshot;

use super::{
    Accounts, AccountsConfig, AccountsStore, KvStore, RegisteredNames, SqliteStore, Store,
    StoreError,
};
use crate::cluster::ClusterConfig;
use crate::messages::accounts::AccountRequest;

/// How sessions reach the accounts.
#[derive(Clone)]
pub struct AccountsLink {
    /// The accounts actor.
    pub actor: Recipient<AccountRequest>,
    /// The registered names, when this process alone writes the store:
    /// a session looks a name up here rather than asking the actor.
    pub registered: Option<Arc<RegisteredNames>>,
}

/// Opens the accounts store and starts the accounts actor on an arbiter
/// of its own, if registration is on: the SQLite file on a single node,
/// the cluster's JetStream in cluster mode (a node's own file would let a
/// name registered on one node be taken on another). A store that cannot
/// be used stops the start: a server that silently let anyone take
/// registered names would be worse than none.
pub async fn open(
    config: &AccountsConfig,
    cluster: Option<&ClusterConfig>,
) -> io::Result<Option<(Arbiter, AccountsLink)>> {
    let AccountsStore::File(path) = &config.store else {
        return Ok(None);
    };
    let arbiter = Arbiter::try_new()?;
    let opened = match cluster {
        None => SqliteStore::open(path).map(|s| Store::Sqlite(Arc::new(s))),
        Some(cluster) => {
            // On the accounts' arbiter: the NATS client's tasks live
            // where it is made.
            let (opened_tx, opened) = oneshot::channel();
            let (urls, name) = (cluster.urls.clone(), cluster.cluster_name.clone());
            arbiter.spawn(async move {
                let _ = opened_tx.send(
                    KvStore::open(&urls, &name)
                        .await
                        .map(|kv| Store::Kv(Box::new(kv))),
                );
            });
            opened
                .await
                .unwrap_or_else(|_| Err(StoreError::Cluster("the accounts' thread ended".into())))
        }
    };
    let opened = match opened {
        Ok(store) => store.local_index().await.map(|index| {
            (
                store,
                index.map(|names| Arc::new(RegisteredNames::new(names))),
            )
        }),
        Err(e) => Err(e),
    };
    match opened {
        Ok((store, index)) => {
            match &store {
                Store::Sqlite(_) => info!("registered names: in {}", path.display()),
                Store::Kv(_) => info!("registered names: in the cluster's JetStream"),
            }
            let actor = Accounts::start(store, index.clone(), config, &arbiter.handle());
            let link = AccountsLink {
                actor: actor.recipient(),
                registered: index,
            };
            Ok(Some((arbiter, link)))
        }
        Err(e) => {
            arbiter.stop();
            Err(io::Error::other(e))
        }
    }
}
