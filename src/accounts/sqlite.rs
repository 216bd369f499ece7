//! The accounts in an SQLite file (`--accounts PATH`), the store of a
//! single node.
//!
//! SQLite, through `rusqlite` with its `bundled` feature: an embedded
//! store with real transactions, durable writes (`synchronous=FULL`: a
//! commit is on disk before it returns) and a file format that is
//! checked for damage, compiled into the binary (no system library to
//! match). One table, keyed by the folded name
//! ([`crate::protocol::fold_name`]), so `Alice` and `alice` are one
//! account; the spelling registered is kept beside it.
//!
//! Every call blocks (disk I/O, fsync): [`super::Store`] makes them on the
//! blocking thread pool only, never on the broker's or a worker's thread.
//! The connection sits behind a mutex, so calls are serialized; SQLite
//! would serialize the writes anyway.

use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use rusqlite::{Connection, ErrorCode, OpenFlags, OptionalExtension, params};

use super::store::{Account, StoreError};

/// The schema this build writes (`PRAGMA user_version`).
pub(super) const SCHEMA_VERSION: i64 = 1;

/// How long a write waits for another process holding the file (a second
/// server on the same file) before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The accounts in an SQLite file.
#[derive(Debug)]
pub struct SqliteStore {
    db: Mutex<Connection>,
}

impl SqliteStore {
    /// Opens `path`, creating it if it does not exist, and checks that it
    /// is an intact accounts database this process can write to: a file
    /// that is not is reported now, at start, not at the first
    /// registration.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let owned = || path.to_path_buf();
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let db = Connection::open_with_flags(path, flags).map_err(|source| StoreError::Open {
            path: owned(),
            source,
        })?;
        let classify = |source: rusqlite::Error| match source.sqlite_error_code() {
            Some(ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt) => StoreError::Corrupt {
                path: owned(),
                why: source.to_string(),
            },
            Some(ErrorCode::CannotOpen) => StoreError::Open {
                path: owned(),
                source,
            },
            _ => StoreError::Unwritable {
                path: owned(),
                source,
            },
        };
        db.busy_timeout(BUSY_TIMEOUT).map_err(classify)?;
        // The write-ahead log: readers do not wait for a writer, and a
        // commit is one append and one fsync.
        db.pragma_update_and_check(None, "journal_mode", "WAL", |_| Ok(()))
            .map_err(classify)?;
        db.pragma_update(None, "synchronous", "FULL")
            .map_err(classify)?;
        let check: String = db
            .query_row("PRAGMA quick_check", [], |row| row.get(0))
            .map_err(classify)?;
        if check != "ok" {
            return Err(StoreError::Corrupt {
                path: owned(),
                why: check,
            });
        }
        let found: i64 = db
            .query_row("PRAGMA user_version", [], |row| row.get(0))
            .map_err(classify)?;
        if found > SCHEMA_VERSION {
            return Err(StoreError::NewerSchema {
                path: owned(),
                found,
            });
        }
        // Always a write, even when nothing changes: an unwritable file
        // shows here.
        db.execute_batch(&format!(
            "BEGIN IMMEDIATE;
             CREATE TABLE IF NOT EXISTS accounts (
                 folded  TEXT PRIMARY KEY NOT NULL,
                 name    TEXT NOT NULL,
                 hash    TEXT NOT NULL,
                 created INTEGER NOT NULL,
                 updated INTEGER NOT NULL
             ) WITHOUT ROWID;
             PRAGMA user_version = {SCHEMA_VERSION};
             COMMIT;"
        ))
        .map_err(classify)?;
        Ok(SqliteStore { db: Mutex::new(db) })
    }

    fn db(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A panic mid-call leaves SQLite's own state consistent (it rolls
        // back an open transaction): the connection is still good.
        self.db
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Every registered name's folded form: the accounts actor keeps them
    /// in memory (this process is the file's only writer), so the look-up
    /// every login makes costs no database call.
    pub(super) fn folded_names(&self) -> Result<Vec<String>, StoreError> {
        let db = self.db();
        let mut query = db.prepare("SELECT folded FROM accounts")?;
        let names = query.query_map([], |row| row.get(0))?;
        Ok(names.collect::<Result<_, _>>()?)
    }

    pub(super) fn get(&self, folded: &str) -> Result<Option<Account>, StoreError> {
        Ok(self
            .db()
            .query_row(
                "SELECT name, hash FROM accounts WHERE folded = ?1",
                [folded],
                |row| {
                    Ok(Account {
                        name: row.get(0)?,
                        hash: row.get(1)?,
                    })
                },
            )
            .optional()?)
    }

    pub(super) fn create(&self, folded: &str, account: &Account) -> Result<bool, StoreError> {
        let now = unix_now();
        // One statement is one transaction, committed (and synced) before
        // `execute` returns.
        let added = self.db().execute(
            "INSERT INTO accounts (folded, name, hash, created, updated)
             VALUES (?1, ?2, ?3, ?4, ?4) ON CONFLICT (folded) DO NOTHING",
            params![folded, account.name, account.hash, now],
        )?;
        Ok(added == 1)
    }

    pub(super) fn set_hash(&self, folded: &str, hash: &str) -> Result<bool, StoreError> {
        let changed = self.db().execute(
            "UPDATE accounts SET hash = ?2, updated = ?3 WHERE folded = ?1",
            params![folded, hash, unix_now()],
        )?;
        Ok(changed == 1)
    }

    pub(super) fn delete(&self, folded: &str) -> Result<bool, StoreError> {
        let removed = self
            .db()
            .execute("DELETE FROM accounts WHERE folded = ?1", [folded])?;
        Ok(removed == 1)
    }
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alice() -> Account {
        Account {
            name: "Alice".into(),
            hash: "$argon2id$x".into(),
        }
    }

    #[test]
    fn create_get_change_delete_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.sqlite3");
        let store = SqliteStore::open(&path).unwrap();
        assert_eq!(store.get("alice").unwrap(), None);
        assert!(store.create("alice", &alice()).unwrap());
        assert!(!store.create("alice", &alice()).unwrap(), "taken");
        assert!(store.set_hash("alice", "$argon2id$y").unwrap());
        assert!(!store.set_hash("bob", "$argon2id$y").unwrap());
        drop(store);
        let store = SqliteStore::open(&path).unwrap();
        let found = store.get("alice").unwrap().unwrap();
        assert_eq!(found.name, "Alice");
        assert_eq!(found.hash, "$argon2id$y");
        assert!(store.delete("alice").unwrap());
        assert!(!store.delete("alice").unwrap());
    }

    #[test]
    fn a_file_that_is_not_a_database_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("junk");
        std::fs::write(&path, vec![0x5a; 8192]).unwrap();
        let e = SqliteStore::open(&path).unwrap_err();
        assert!(matches!(e, StoreError::Corrupt { .. }), "{e}");
        assert!(e.to_string().contains("not an achat accounts database"));
    }

    #[test]
    fn a_path_that_cannot_be_created_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let e = SqliteStore::open(&dir.path().join("no/such/dir/a.sqlite3")).unwrap_err();
        assert!(matches!(e, StoreError::Open { .. }), "{e}");
        // A directory where the file should be.
        let e = SqliteStore::open(dir.path()).unwrap_err();
        assert!(
            matches!(e, StoreError::Open { .. } | StoreError::Unwritable { .. }),
            "{e}"
        );
    }
}
