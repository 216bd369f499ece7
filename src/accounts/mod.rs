//! Registered names: the [`Accounts`] actor, which checks passwords and
//! keeps the registrations, off the broker and off the workers.
//!
//! A session asks it ([`AccountRequest`]) whether a name is registered,
//! whether a password is right, to register, change or unregister. The
//! actor runs on an arbiter of its own and does no slow work on it: every
//! store call and every Argon2 hash runs on the blocking thread pool
//! (`spawn_blocking`), at most [`HASHES_AT_ONCE`] hashes at once and at
//! most [`MAX_WAITING`] requests that hash waiting or running (and
//! [`MAX_LOOKUPS`] look-ups, apart), so a flood of logins
//! costs a bounded amount of CPU and memory and the rest are told to try
//! again. "Is this name registered?", which every login asks, is answered
//! from memory for the SQLite file (one server is its only writer). What
//! stays on its thread is the bookkeeping of wrong passwords
//! ([`backoff`]), which needs no lock because only the actor touches it.
//!
//! - `open.rs`: choosing, opening and checking the store at start;
//! - `password.rs`: the [`Password`] type and Argon2id hashing;
//! - `store.rs`: the [`Store`] over its two backends, `sqlite.rs` (the
//!   file of a single node) and `kv.rs` (the cluster's JetStream);
//! - `backoff.rs`: how wrong passwords slow the next attempt (pure);
//! - `rate.rs`: login attempts per source address (pure, plus the shared
//!   buckets the sessions use directly).

pub mod backoff;
pub mod kv;
mod open;
pub mod password;
pub mod rate;
mod registered;
pub mod sqlite;
pub mod store;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use actix::prelude::*;
use log::warn;
use tokio::sync::Semaphore;

pub use backoff::BackoffPolicy;
pub use kv::KvStore;
pub use open::{AccountsLink, open};
pub use password::Password;
pub use rate::{LoginRate, RatePolicy};
pub use registered::RegisteredNames;
pub use sqlite::SqliteStore;
pub use store::{Account, Store, StoreError};

use crate::messages::accounts::{AccountAnswer, AccountError, AccountOp, AccountRequest};
use crate::protocol::{fold_name, spelling};
use crate::sources::Source;
use backoff::Backoff;

/// The accounts file `achat-server` uses unless told otherwise, in its
/// working directory.
pub const DEFAULT_ACCOUNTS_FILE: &str = "achat-accounts.sqlite3";

/// Argon2 hashes running at once: two, each using one core and 19 MiB,
/// so password checks can never take more than two cores from chat.
pub const HASHES_AT_ONCE: usize = 2;

/// Requests that hash, waiting or running at once; past it such a request
/// is answered "unavailable" at once. At 30 ms a hash and two at a time,
/// the last waits about a second.
pub const MAX_WAITING: usize = 64;

/// Look-ups ("is this name registered?") waiting or running at once,
/// counted apart from the hashing requests: every login of every name
/// asks one, and guesses filling the hashing queue must not hold up the
/// logins of everyone else.
pub const MAX_LOOKUPS: usize = 256;

/// Where registrations are kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccountsStore {
    /// Registration is off: the commands say so, every name logs in
    /// without a password.
    Off,
    /// An SQLite file, created on first use. (In cluster mode the
    /// accounts are in the cluster's JetStream instead, and the path is
    /// not used.)
    File(PathBuf),
}

/// The accounts' settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountsConfig {
    /// Where registrations are kept.
    pub store: AccountsStore,
    /// The back-off of wrong passwords per name.
    pub per_name: BackoffPolicy,
    /// The back-off of wrong passwords per source address.
    pub per_address: BackoffPolicy,
}

impl Default for AccountsConfig {
    /// Off: a library user (a test, an embedding) gets no file in its
    /// working directory unless it asks; `achat-server` asks for
    /// [`DEFAULT_ACCOUNTS_FILE`].
    fn default() -> Self {
        AccountsConfig {
            store: AccountsStore::Off,
            per_name: BackoffPolicy::PER_NAME,
            per_address: BackoffPolicy::PER_ADDRESS,
        }
    }
}

/// The accounts actor. See the module documentation.
pub struct Accounts {
    store: Arc<Store>,
    /// The registered names (folded), when this process is the store's
    /// only writer: "is this name registered?" is then answered from
    /// memory (by the sessions themselves, see [`RegisteredNames`]), so a
    /// login costs no database call. `None` for the cluster's store.
    index: Option<Arc<RegisteredNames>>,
    per_name: Backoff<String>,
    per_address: Backoff<Source>,
    hashing: Arc<Semaphore>,
    waiting: Arc<Semaphore>,
    lookups: Arc<Semaphore>,
}

impl Accounts {
    /// Starts the actor over `store` on `arbiter`; `index` holds the
    /// store's registered names if this process is its only writer
    /// ([`Store::local_index`]), and is kept up to date by the actor.
    pub fn start(
        store: Store,
        index: Option<Arc<RegisteredNames>>,
        config: &AccountsConfig,
        arbiter: &ArbiterHandle,
    ) -> Addr<Accounts> {
        let (per_name, per_address) = (config.per_name, config.per_address);
        Accounts::start_in_arbiter(arbiter, move |_| Accounts {
            store: Arc::new(store),
            index,
            per_name: Backoff::new(per_name),
            per_address: Backoff::new(per_address),
            hashing: Arc::new(Semaphore::new(HASHES_AT_ONCE)),
            waiting: Arc::new(Semaphore::new(MAX_WAITING)),
            lookups: Arc::new(Semaphore::new(MAX_LOOKUPS)),
        })
    }

    /// Refuses a password check while the name or the address is backing
    /// off; otherwise counts it as a failure at once, refunded if the
    /// password turns out right: checks running side by side see each
    /// other, so a hundred connections guessing at once get no more free
    /// guesses than one.
    fn charge(&mut self, folded: &str, from: Source, now: Instant) -> Result<(), AccountError> {
        let name_wait = self.per_name.check(folded, now).err();
        let address_wait = self.per_address.check(&from, now).err();
        if let Some(wait) = name_wait.max(address_wait) {
            return Err(AccountError::TooManyFailures(wait));
        }
        self.per_name.fail(folded, now);
        self.per_address.fail(&from, now);
        Ok(())
    }

    /// Settles a charged check: a right password clears the name's
    /// failures and refunds the address's charge; anything but a wrong
    /// password refunds both.
    fn settle(
        &mut self,
        folded: &str,
        from: Source,
        outcome: &Result<AccountAnswer, AccountError>,
    ) {
        match outcome {
            Err(AccountError::WrongPassword) => {}
            Ok(_) => {
                self.per_name.clear(folded);
                self.per_address.refund(&from);
            }
            Err(_) => {
                self.per_name.refund(folded);
                self.per_address.refund(&from);
            }
        }
    }
}

impl Actor for Accounts {
    type Context = Context<Self>;
}

impl Handler<AccountRequest> for Accounts {
    type Result = ResponseActFuture<Self, Result<AccountAnswer, AccountError>>;

    fn handle(&mut self, msg: AccountRequest, _: &mut Context<Self>) -> Self::Result {
        let AccountRequest { from, name, op } = msg;
        let folded = fold_name(&name);
        let from = Source::from(from);
        let checks = op.checks_password();
        if let (AccountOp::Lookup, Some(index)) = (&op, &self.index) {
            return Box::pin(fut::ready(Ok(match index.contains(&folded) {
                true => AccountAnswer::Registered,
                false => AccountAnswer::NotRegistered,
            })));
        }
        let changes_index = match op {
            AccountOp::Register(_) => Some(true),
            AccountOp::Unregister(_) => Some(false),
            _ => None,
        };
        if checks && let Err(e) = self.charge(&folded, from, Instant::now()) {
            return Box::pin(fut::ready(Err(e)));
        }
        let queue = match op {
            AccountOp::Lookup => &self.lookups,
            _ => &self.waiting,
        };
        let Ok(slot) = queue.clone().try_acquire_owned() else {
            if checks {
                self.settle(&folded, from, &Err(AccountError::Unavailable));
            }
            return Box::pin(fut::ready(Err(AccountError::Unavailable)));
        };
        let store = self.store.clone();
        let hashing = self.hashing.clone();
        let key = folded.clone();
        let work = async move {
            let _slot = slot;
            perform(&store, &hashing, &key, &name, op).await
        };
        Box::pin(work.into_actor(self).map(move |outcome, accounts, _| {
            if checks {
                accounts.settle(&folded, from, &outcome);
            }
            if let (Some(registered), Ok(AccountAnswer::Done), Some(index)) =
                (changes_index, &outcome, &accounts.index)
            {
                index.set(folded, registered);
            }
            outcome
        }))
    }
}

/// Carries out one request: store calls (async, see [`Store`]) and, for
/// passwords, Argon2 on the blocking pool, [`HASHES_AT_ONCE`] at a time.
async fn perform(
    store: &Store,
    hashing: &Semaphore,
    folded: &str,
    name: &str,
    op: AccountOp,
) -> Result<AccountAnswer, AccountError> {
    let registered = async || store.get(folded).await?.ok_or(AccountError::NotRegistered);
    match op {
        AccountOp::Lookup => Ok(match store.get(folded).await? {
            Some(_) => AccountAnswer::Registered,
            None => AccountAnswer::NotRegistered,
        }),
        AccountOp::LogIn(password) => match store.get(folded).await? {
            Some(account) => right(hashing, password, account)
                .await
                .map(|()| AccountAnswer::Done),
            None => Ok(AccountAnswer::NotRegistered),
        },
        AccountOp::Register(password) => {
            if store.get(folded).await?.is_some() {
                return Err(AccountError::AlreadyRegistered);
            }
            let account = Account {
                name: spelling(name),
                hash: hash(hashing, password).await?,
            };
            match store.create(folded, account).await? {
                true => Ok(AccountAnswer::Done),
                false => Err(AccountError::AlreadyRegistered),
            }
        }
        AccountOp::Change { old, new } => {
            right(hashing, old, registered().await?).await?;
            match store.set_hash(folded, hash(hashing, new).await?).await? {
                true => Ok(AccountAnswer::Done),
                false => Err(AccountError::NotRegistered),
            }
        }
        AccountOp::Unregister(password) => {
            right(hashing, password, registered().await?).await?;
            match store.delete(folded).await? {
                true => Ok(AccountAnswer::Done),
                false => Err(AccountError::NotRegistered),
            }
        }
    }
}

/// Runs one Argon2 call on the blocking pool, holding a hashing permit.
async fn on_hashing_pool<T: Send + 'static>(
    hashing: &Semaphore,
    call: impl FnOnce() -> Result<T, password::HashError> + Send + 'static,
) -> Result<T, AccountError> {
    let _permit = hashing
        .acquire()
        .await
        .map_err(|_| AccountError::Unavailable)?;
    match tokio::task::spawn_blocking(call).await {
        Ok(result) => Ok(result?),
        Err(_) => Err(AccountError::Unavailable),
    }
}

/// The hash of a new password.
async fn hash(hashing: &Semaphore, password: Password) -> Result<String, AccountError> {
    on_hashing_pool(hashing, move || password::hash(&password)).await
}

/// `Ok` if `password` is `account`'s.
async fn right(
    hashing: &Semaphore,
    password: Password,
    account: Account,
) -> Result<(), AccountError> {
    match on_hashing_pool(hashing, move || password::verify(&password, &account.hash)).await? {
        true => Ok(()),
        false => Err(AccountError::WrongPassword),
    }
}

impl From<StoreError> for AccountError {
    fn from(e: StoreError) -> Self {
        warn!("accounts: {e}");
        AccountError::Unavailable
    }
}

impl From<password::HashError> for AccountError {
    fn from(e: password::HashError) -> Self {
        warn!("accounts: {e}");
        AccountError::Unavailable
    }
}

#[cfg(test)]
mod tests;
