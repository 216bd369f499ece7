//! Who is online: the roster of names, the answer to `/who` built from it
//! once per change, and what the sessions are told of both.
//!
//! `/who` is the one request whose answer depends on everyone online, so
//! it must not cost a walk over everyone: the roster is kept sorted as
//! peers come and go (O(log n) each), and the answer (at most
//! `WHO_MAX_NAMES` names) is built the first time it is asked for after a
//! change, or at the next flush, and copied for every asker until the
//! roster changes again.

use super::Broker;
use crate::messages::Name;
use crate::protocol;

impl Broker {
    /// A peer is online now: it joins the roster.
    pub(super) fn join_roster(&mut self, name: Name) {
        *self.roster.entry(name).or_insert(0) += 1;
        self.roster_changed();
    }

    /// A peer is no longer online (it left or was evicted).
    ///
    /// The roster counts each name: in cluster mode a name can be online
    /// on two nodes for a moment (it left one, the news has not arrived,
    /// and it logged in on another), and it must stay listed until both
    /// have gone.
    pub(super) fn leave_roster(&mut self, name: &Name) {
        if let Some(count) = self.roster.get_mut(name) {
            *count -= 1;
            if *count == 0 {
                self.roster.remove(name);
            }
            self.roster_changed();
        }
    }

    fn roster_changed(&mut self) {
        self.who_answer = None;
        self.gauge.set_online(self.roster.len());
    }

    /// The answer to `/who`, made anew: the first names of the roster in
    /// order (at most `WHO_MAX_NAMES` of them are shown, so this costs as
    /// much whoever is online).
    pub(super) fn who(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let names = self.roster.keys().map(|name| &**name);
        protocol::write_who(&mut out, self.roster.len(), names);
        self.gauge.set_who_bytes(out.len());
        out
    }
}
