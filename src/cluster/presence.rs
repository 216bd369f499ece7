//! Who is online on the other nodes, as this node learns it.
//!
//! Each node announces its own users as they come and go, in numbered
//! [`Presence`](super::wire::Presence) messages (one generation each), and
//! says its current generation in every heartbeat. Another node applies
//! the announcements in order; when it sees a number skipped (NATS core
//! may drop a message), a node it has never heard of, or a heartbeat
//! further on than what it has applied twice in a row, it asks that node
//! for its whole roster, buffers the announcements meanwhile, and replaces
//! what it knew. So every node's view converges on the truth within about
//! two heartbeats of the last change, whatever was lost.
//!
//! A node not heard from for `down_after` is taken for gone.
//!
//! Pure state: the actor feeds it what arrives and carries out the
//! [`Action`]s it returns.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use crate::messages::Name;
use crate::messages::cluster::{NodeId, RosterUpdate};

/// What the actor must do after a change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Tell the broker.
    Roster(NodeId, RosterUpdate),
    /// Ask the node for its whole roster.
    Ask(NodeId),
}

/// Every other node, as known here.
#[derive(Debug, Default)]
pub struct Nodes {
    nodes: HashMap<NodeId, NodeView>,
}

#[derive(Debug)]
struct NodeView {
    last_heard: Instant,
    /// The generation applied.
    generation: u64,
    /// The last heartbeat said a later generation than applied.
    behind: bool,
    names: HashSet<Name>,
    sync: Option<Sync>,
}

/// A roster asked for and not complete yet.
#[derive(Debug)]
struct Sync {
    asked: Instant,
    generation: u64,
    parts: Vec<Option<Vec<Name>>>,
    /// Announcements that arrived meanwhile.
    buffered: Vec<(u64, Vec<(bool, Name)>)>,
}

impl Nodes {
    fn view(&mut self, node: &NodeId, now: Instant, actions: &mut Vec<Action>) -> &mut NodeView {
        self.nodes.entry(node.clone()).or_insert_with(|| {
            actions.push(Action::Ask(node.clone()));
            NodeView {
                last_heard: now,
                generation: 0,
                behind: false,
                names: HashSet::new(),
                sync: Some(Sync::new(now)),
            }
        })
    }

    /// A heartbeat from `node`.
    pub fn beat(
        &mut self,
        node: &NodeId,
        generation: u64,
        leaving: bool,
        now: Instant,
    ) -> Vec<Action> {
        let mut actions = Vec::new();
        if leaving {
            if self.nodes.remove(node).is_some() {
                actions.push(Action::Roster(node.clone(), RosterUpdate::Down));
            }
            return actions;
        }
        let view = self.view(node, now, &mut actions);
        view.last_heard = now;
        if view.sync.is_none() {
            let behind = generation > view.generation;
            // Twice in a row: once may be an announcement still on its way.
            if behind && view.behind {
                view.sync = Some(Sync::new(now));
                actions.push(Action::Ask(node.clone()));
            }
            view.behind = behind;
        }
        actions
    }

    /// An announcement from `node`.
    pub fn presence(
        &mut self,
        node: &NodeId,
        generation: u64,
        changes: Vec<(bool, Name)>,
        now: Instant,
    ) -> Vec<Action> {
        let mut actions = Vec::new();
        let view = self.view(node, now, &mut actions);
        view.last_heard = now;
        if let Some(sync) = &mut view.sync {
            sync.buffered.push((generation, changes));
        } else if generation == view.generation + 1 {
            view.generation = generation;
            actions.push(Action::Roster(node.clone(), view.apply(changes)));
        } else if generation > view.generation {
            let mut sync = Sync::new(now);
            sync.buffered.push((generation, changes));
            view.sync = Some(sync);
            actions.push(Action::Ask(node.clone()));
        }
        actions
    }

    /// One part of `node`'s roster, answering a request.
    pub fn roster_part(
        &mut self,
        node: &NodeId,
        generation: u64,
        part: u32,
        parts: u32,
        names: Vec<Name>,
    ) -> Vec<Action> {
        let mut actions = Vec::new();
        let Some(view) = self.nodes.get_mut(node) else {
            return actions;
        };
        let Some(sync) = &mut view.sync else {
            return actions;
        };
        if sync.parts.len() != parts as usize || sync.generation != generation {
            // The first part of an answer (or a newer answer) sets the shape.
            sync.generation = generation;
            sync.parts = vec![None; parts as usize];
        }
        if let Some(slot) = sync.parts.get_mut(part as usize) {
            *slot = Some(names);
        }
        if sync.parts.iter().any(Option::is_none) {
            return actions;
        }
        let Some(sync) = view.sync.take() else {
            return actions;
        };
        view.names = sync.parts.into_iter().flatten().flatten().collect();
        view.generation = sync.generation;
        view.behind = false;
        actions.push(Action::Roster(
            node.clone(),
            RosterUpdate::Replace(view.names.iter().cloned().collect()),
        ));
        let mut buffered = sync.buffered;
        buffered.sort_by_key(|(generation, _)| *generation);
        for (generation, changes) in buffered {
            if generation == view.generation + 1 {
                view.generation = generation;
                actions.push(Action::Roster(node.clone(), view.apply(changes)));
            } else if generation > view.generation {
                // Still a hole: ask again.
                view.sync = Some(Sync::new(Instant::now()));
                actions.push(Action::Ask(node.clone()));
                break;
            }
        }
        actions
    }

    /// Nodes not heard from for `down_after` are gone; rosters asked for
    /// more than `retry_after` ago are asked for again.
    pub fn expire(
        &mut self,
        now: Instant,
        down_after: Duration,
        retry_after: Duration,
    ) -> Vec<Action> {
        let mut actions = Vec::new();
        self.nodes.retain(|node, view| {
            if now.duration_since(view.last_heard) > down_after {
                actions.push(Action::Roster(node.clone(), RosterUpdate::Down));
                return false;
            }
            if let Some(sync) = &mut view.sync
                && now.duration_since(sync.asked) > retry_after
            {
                sync.asked = now;
                actions.push(Action::Ask(node.clone()));
            }
            true
        });
        actions
    }

    /// Whether `node` is heard from.
    pub fn is_alive(&self, node: &str) -> bool {
        self.nodes.contains_key(node)
    }

    /// Whether `node` has `name` online, as far as known here.
    pub fn holds(&self, node: &str, name: &str) -> bool {
        self.nodes.get(node).is_some_and(|v| v.names.contains(name))
    }

    /// The nodes heard from.
    pub fn alive(&self) -> impl Iterator<Item = &NodeId> {
        self.nodes.keys()
    }
}

impl NodeView {
    fn apply(&mut self, changes: Vec<(bool, Name)>) -> RosterUpdate {
        for (online, name) in &changes {
            if *online {
                self.names.insert(name.clone());
            } else {
                self.names.remove(name);
            }
        }
        RosterUpdate::Changes(changes)
    }
}

impl Sync {
    fn new(now: Instant) -> Self {
        Sync {
            asked: now,
            generation: 0,
            parts: Vec::new(),
            buffered: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn n(s: &str) -> Name {
        Arc::from(s)
    }

    #[test]
    fn a_new_node_is_asked_for_its_roster_and_announcements_wait_for_it() {
        let mut nodes = Nodes::default();
        let b = n("b");
        let now = Instant::now();
        assert_eq!(nodes.beat(&b, 4, false, now), vec![Action::Ask(b.clone())]);
        assert!(
            nodes
                .presence(&b, 5, vec![(true, n("carol"))], now)
                .is_empty()
        );
        let actions = nodes.roster_part(&b, 4, 0, 1, vec![n("alice")]);
        assert_eq!(
            actions,
            vec![
                Action::Roster(b.clone(), RosterUpdate::Replace(vec![n("alice")])),
                Action::Roster(b.clone(), RosterUpdate::Changes(vec![(true, n("carol"))])),
            ]
        );
        assert!(nodes.holds("b", "carol") && nodes.holds("b", "alice"));
    }

    #[test]
    fn a_skipped_generation_asks_again_and_in_order_applies() {
        let mut nodes = Nodes::default();
        let b = n("b");
        let now = Instant::now();
        nodes.beat(&b, 0, false, now);
        nodes.roster_part(&b, 0, 0, 1, vec![]);
        let applied = nodes.presence(&b, 1, vec![(true, n("x"))], now);
        assert_eq!(applied.len(), 1);
        assert!(
            nodes.presence(&b, 1, vec![(true, n("x"))], now).is_empty(),
            "old"
        );
        assert_eq!(
            nodes.presence(&b, 3, vec![(false, n("x"))], now),
            vec![Action::Ask(b.clone())]
        );
    }

    #[test]
    fn a_heartbeat_ahead_twice_in_a_row_asks() {
        let mut nodes = Nodes::default();
        let b = n("b");
        let now = Instant::now();
        nodes.beat(&b, 0, false, now);
        nodes.roster_part(&b, 0, 0, 1, vec![]);
        assert!(nodes.beat(&b, 2, false, now).is_empty());
        assert_eq!(nodes.beat(&b, 2, false, now), vec![Action::Ask(b.clone())]);
    }

    #[test]
    fn silence_and_leaving_take_a_node_down() {
        let mut nodes = Nodes::default();
        let (b, c) = (n("b"), n("c"));
        let t0 = Instant::now();
        nodes.beat(&b, 0, false, t0);
        nodes.beat(&c, 0, false, t0);
        let later = t0 + Duration::from_secs(4);
        nodes.beat(&c, 0, false, later);
        let actions = nodes.expire(later, Duration::from_secs(3), Duration::from_secs(60));
        assert_eq!(actions, vec![Action::Roster(b.clone(), RosterUpdate::Down)]);
        assert!(!nodes.is_alive("b") && nodes.is_alive("c"));
        assert_eq!(
            nodes.beat(&c, 0, true, later),
            vec![Action::Roster(c.clone(), RosterUpdate::Down)]
        );
    }

    #[test]
    fn a_roster_in_parts_completes_when_all_are_in() {
        let mut nodes = Nodes::default();
        let b = n("b");
        nodes.beat(&b, 7, false, Instant::now());
        assert!(nodes.roster_part(&b, 7, 1, 2, vec![n("y")]).is_empty());
        let actions = nodes.roster_part(&b, 7, 0, 2, vec![n("x")]);
        assert_eq!(actions.len(), 1);
        assert!(nodes.holds("b", "x") && nodes.holds("b", "y"));
    }
}
