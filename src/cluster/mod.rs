//! Cluster mode: several achat servers sharing one name space over NATS
//! (core pub/sub for traffic, JetStream for the state all of them must
//! agree on). [`keys`] spells names and ids as NATS subject tokens;
//! [`names`] is the name service (who holds which login name, which nodes
//! are alive) on a JetStream stream shaped like a key-value bucket.

pub mod keys;
pub mod names;
