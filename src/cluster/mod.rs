//! Cluster mode: several achat nodes, one chat namespace, over NATS.
//!
//! Placeholder while the pieces land; see docs/CLUSTER.md.

pub mod links;
pub mod wire;
