//! Who is logged in here under which name, and what a name a sender typed
//! means.
//!
//! A name is unique by its folded form ([`Folded`]: case, look-alike
//! letters, Unicode forms), but shown and addressed in its spelling. Two
//! tables keep addressing as fast as a single one:
//! - `exact`, by spelling: a sender who types the name as it is spelled
//!   (the common case: clients complete names, people copy them from
//!   `/who`) finds it with one lookup and no folding;
//! - `folded`, by folded form: what a login must not collide with, and
//!   where a typed name is looked up when the exact lookup missed. Only
//!   then is the typed name folded.
//!
//! Folding is a function, so a name found by its spelling is the name its
//! folded form finds too: the fast path never disagrees with the rule.

use std::borrow::Cow;
use std::collections::HashSet;

use super::outbound::Peer;
use super::remote::Remote;
use super::{Table, shrink_when_sparse};
use crate::messages::cluster::NodeId;
use crate::messages::{ConnId, Name};
use crate::protocol::{Folded, LoginName};

/// The names logged in on this node.
#[derive(Default)]
pub(super) struct NameTable {
    /// By spelling; the folded form is kept for the removal.
    exact: Table<Name, (ConnId, Folded)>,
    /// By folded form.
    folded: Table<Folded, ConnId>,
}

impl NameTable {
    /// The connection logged in as exactly `spelling`.
    pub(super) fn exact(&self, spelling: &str) -> Option<ConnId> {
        self.exact.get(spelling).map(|&(id, _)| id)
    }

    /// The connection logged in under the name `folded` is, in any
    /// spelling.
    pub(super) fn holder(&self, folded: &Folded) -> Option<ConnId> {
        self.folded.get(folded).copied()
    }

    /// Registers `name` for `id` (the caller has checked it is free).
    pub(super) fn insert(&mut self, name: &LoginName, id: ConnId) {
        let spelling = name.spelling().clone();
        self.exact.insert(spelling, (id, name.folded().clone()));
        self.folded.insert(name.folded().clone(), id);
    }

    /// Removes `name` if it is `id`'s registration (never that of a newer
    /// connection that took the name since); returns its folded form if
    /// it was.
    pub(super) fn remove(&mut self, name: &str, id: ConnId) -> Option<Folded> {
        if self.exact.get(name).is_none_or(|&(holder, _)| holder != id) {
            return None;
        }
        let (_, folded) = self.exact.remove(name)?;
        if self.folded.get(&folded) == Some(&id) {
            self.folded.remove(&folded);
        }
        shrink_when_sparse(&mut self.exact);
        shrink_when_sparse(&mut self.folded);
        Some(folded)
    }

    /// How many names are logged in here.
    pub(super) fn len(&self) -> usize {
        self.exact.len()
    }
}

/// Where a typed recipient name leads.
pub(super) enum Target<'p> {
    /// A peer online on this node.
    Here(ConnId, &'p mut Peer),
    /// A user online on another node.
    There(NodeId),
    /// Nobody online by that name.
    Nowhere,
}

/// A typed recipient name, resolved: where it leads, and, when it was
/// found by its folded form only, the spelling it is registered under.
pub(super) struct Resolved<'p> {
    pub(super) target: Target<'p>,
    pub(super) respelled: Option<Name>,
}

/// Resolves `typed`: its exact spelling here, then on another node, and
/// only if both miss, its folded form here and then elsewhere. On the
/// exact path this is one lookup in `names` and one in `peers`, as before
/// names were folded.
pub(super) fn resolve<'p>(
    names: &NameTable,
    peers: &'p mut Table<ConnId, Peer>,
    remote: Option<&Remote>,
    typed: &str,
) -> Resolved<'p> {
    let (here, folded) = match names.exact(typed) {
        Some(id) => (Some(id), None),
        None => {
            if let Some(node) = remote.and_then(|r| r.node_of(typed)) {
                return Resolved::there(node, None);
            }
            let folded = Folded::of(typed);
            (names.holder(&folded), Some(folded))
        }
    };
    if let Some(id) = here
        && let Some(peer) = peers.get_mut(&id).filter(|peer| peer.is_online())
    {
        // Cloned only when found by fold: the exact path touches no
        // reference count.
        let respelled = folded.as_ref().and_then(|_| peer.name.clone());
        return Resolved {
            target: Target::Here(id, peer),
            respelled,
        };
    }
    // Not online here (or evicted, its name not yet given up): elsewhere?
    let Some(remote) = remote else {
        return Resolved::NOWHERE;
    };
    if folded.is_none()
        && let Some(node) = remote.node_of(typed)
    {
        return Resolved::there(node, None);
    }
    let folded = folded.unwrap_or_else(|| Folded::of(typed));
    match remote.spelling_of(&folded) {
        Some((spelling, node)) => Resolved::there(node, Some(spelling.clone())),
        None => Resolved::NOWHERE,
    }
}

impl Resolved<'_> {
    const NOWHERE: Self = Resolved {
        target: Target::Nowhere,
        respelled: None,
    };

    fn there(node: &NodeId, respelled: Option<Name>) -> Self {
        Resolved {
            target: Target::There(node.clone()),
            respelled,
        }
    }
}

/// The recipients of one line that were found by their folded form, so
/// that `alice, Alice: hi` reaches Alice once, as `alice, alice: hi` does
/// (the parser drops exact repeats). Empty until the line's first fold
/// hit: the exact path pays nothing for it.
#[derive(Default)]
pub(super) struct Respelled<'n>(Option<Seen<'n>>);

struct Seen<'n> {
    /// Every name as typed in the line.
    typed: HashSet<&'n str, foldhash::fast::RandomState>,
    /// The spellings reached through folding so far.
    reached: HashSet<Name, foldhash::fast::RandomState>,
}

impl<'n> Respelled<'n> {
    /// Whether `spelling`, reached through folding, is reached by another
    /// entry of the line (`typed` are all of them): its exact spelling is
    /// listed too, or an earlier entry folded to it already.
    pub(super) fn is_repeat(
        &mut self,
        spelling: &Name,
        typed: impl Iterator<Item = &'n str>,
    ) -> bool {
        let seen = self.0.get_or_insert_with(|| Seen {
            typed: typed.collect(),
            reached: HashSet::default(),
        });
        seen.typed.contains(&**spelling) || !seen.reached.insert(spelling.clone())
    }
}

/// A recipient on another node, by the spelling that node knows it under.
pub(super) type Elsewhere<'n> = (NodeId, Cow<'n, str>);

#[cfg(test)]
mod tests {
    use super::*;

    fn name(typed: &str) -> LoginName {
        LoginName::new(typed).unwrap()
    }

    #[test]
    fn both_tables_agree_and_only_the_owner_removes() {
        let mut names = NameTable::default();
        names.insert(&name("Alice"), 1);
        assert_eq!(names.exact("Alice"), Some(1));
        assert_eq!(names.exact("alice"), None, "the exact table is exact");
        assert_eq!(names.holder(name("\u{0430}lice").folded()), Some(1));
        // A stale removal (another connection) and a wrong spelling
        // remove nothing.
        assert_eq!(names.remove("Alice", 2), None);
        assert_eq!(names.remove("alice", 1), None);
        assert_eq!(names.len(), 1);
        assert_eq!(
            names.remove("Alice", 1).as_ref(),
            Some(name("alice").folded())
        );
        assert_eq!(names.holder(name("alice").folded()), None);
        assert_eq!(names.len(), 0);
    }
}
