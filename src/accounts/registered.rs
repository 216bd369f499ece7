//! The registered names, in memory, for a store this process alone
//! writes (the SQLite file).
//!
//! Every login asks "is this name registered?". Asking the accounts actor
//! costs a message and a wake-up of its thread per login, registered or
//! not; measured on the churn benchmark (2,000 sessions/s), that made the
//! server spend about 20% more CPU than with registration off. So the
//! sessions read this set themselves: a read lock held for one look-up,
//! on the login path only (never per line). The accounts actor is its one
//! writer, after a registration or an unregistration is durable.

use std::collections::HashSet;
use std::sync::RwLock;

/// The folded forms of the registered names. See the module documentation.
#[derive(Debug, Default)]
pub struct RegisteredNames {
    names: RwLock<HashSet<String>>,
}

impl RegisteredNames {
    /// The set, holding `folded` names.
    pub fn new(folded: impl IntoIterator<Item = String>) -> Self {
        RegisteredNames {
            names: RwLock::new(folded.into_iter().collect()),
        }
    }

    /// Whether the name whose folded form is `folded` is registered.
    pub fn contains(&self, folded: &str) -> bool {
        // A writer that panicked left the set as it was before or after
        // its one insert or remove: still a valid set.
        let names = self.names.read().unwrap_or_else(|e| e.into_inner());
        names.contains(folded)
    }

    /// Records that `folded` is registered (`true`) or not (`false`).
    pub(super) fn set(&self, folded: String, registered: bool) {
        let mut names = self.names.write().unwrap_or_else(|e| e.into_inner());
        match registered {
            true => names.insert(folded),
            false => names.remove(&folded),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follows_what_it_is_told() {
        let names = RegisteredNames::new(["alice".to_owned()]);
        assert!(names.contains("alice"));
        assert!(!names.contains("bob"));
        names.set("bob".into(), true);
        names.set("alice".into(), false);
        assert!(names.contains("bob"));
        assert!(!names.contains("alice"));
    }
}
